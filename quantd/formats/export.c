/*
 * export.c - a whole model into a Hugging Face folder in one of the hfquant.h layouts: model.safetensors (HF names,
 * HF row order for q_proj/k_proj), config.json with quantization_config where Transformers and vLLM look for it,
 * README.md with base_model / base_model_relation front matter.
 *
 * Which tensors: the linear layers of the blocks (model.layers.N.self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj);
 * embeddings, norms and lm_head keep the source dtype (F16/BF16 as read, anything else as F32), which is what both
 * loaders expect ("ignore": ["lm_head"], bitsandbytes skips lm_head by default).
 *
 * Method: round to nearest. A calibrated method (GPTQ, AWQ, SmoothQuant) plugs in where quantize_one() calls
 * qd_hfq_quantize(): it gets the same f32 matrix in HF order and returns a qd_hfq_result in the same layout.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/model.h"
#include "qd/quant.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool is_block_linear(const char *hf)
{
    static const char *const lin[] = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                                      "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
                                      "mlp.down_proj.weight"};
    if (strncmp(hf, "model.layers.", 13))
        return false;
    const char *p = strchr(hf + 13, '.');
    if (!p)
        return false;
    for (size_t i = 0; i < sizeof(lin) / sizeof(lin[0]); i++)
        if (!strcmp(p + 1, lin[i]))
            return true;
    return false;
}

static const char *torch_dtype_of(qd_type t)
{
    return t == QD_TYPE_F16 ? "float16" : t == QD_TYPE_BF16 ? "bfloat16" : "float32";
}

/* quantization_config for the chosen format and type */
static json_t *quant_config(const qd_hfq_opts *o, const char *compute_dtype)
{
    if (o->format == QD_HFQ_BNB)
        return json_pack("{sb sb ss ss ss sb sb sb sn sf sb sb ss}", "_load_in_4bit", 1, "_load_in_8bit", 0,
                         "bnb_4bit_compute_dtype", compute_dtype, "bnb_4bit_quant_storage", "uint8",
                         "bnb_4bit_quant_type", o->type == QD_HFQ_FP4 ? "fp4" : "nf4", "bnb_4bit_use_double_quant",
                         o->double_quant, "llm_int8_enable_fp32_cpu_offload", 0, "llm_int8_has_fp16_weight", 0,
                         "llm_int8_skip_modules", "llm_int8_threshold", 6.0, "load_in_4bit", 1, "load_in_8bit", 0,
                         "quant_method", "bitsandbytes");
    json_t *weights, *acts, *group;
    const char *format;
    switch (o->type) {
    case QD_HFQ_INT8:
        if (o->weight_only) { /* W8A16: vLLM takes weight-only int8 through pack-quantized */
            format = "pack-quantized";
            weights = o->group ? json_pack("{si ss sb ss si sb sn ss}", "num_bits", 8, "type", "int", "symmetric", 1,
                                           "strategy", "group", "group_size", o->group, "dynamic", 0, "actorder",
                                           "observer", "minmax")
                               : json_pack("{si ss sb ss sn sb sn ss}", "num_bits", 8, "type", "int", "symmetric", 1,
                                           "strategy", "channel", "group_size", "dynamic", 0, "actorder",
                                           "observer", "minmax");
            acts = json_null();
            break;
        }
        format = "int-quantized";
        weights = json_pack("{si ss sb ss sn sb sn ss}", "num_bits", 8, "type", "int", "symmetric", 1, "strategy",
                            "channel", "group_size", "dynamic", 0, "actorder", "observer", "minmax");
        acts = json_pack("{si ss sb ss sn sb sn sn}", "num_bits", 8, "type", "int", "symmetric", 1, "strategy",
                         "token", "group_size", "dynamic", 1, "actorder", "observer");
        break;
    case QD_HFQ_FP8_E4M3:
    case QD_HFQ_FP8_E5M2:
        format = "float-quantized";
        weights = json_pack("{si ss sb ss sn sb sn ss}", "num_bits", 8, "type", "float", "symmetric", 1, "strategy",
                            o->per_tensor ? "tensor" : "channel", "group_size", "dynamic", 0, "actorder", "observer",
                            "minmax");
        acts = json_pack("{si ss sb ss sn sb sn sn}", "num_bits", 8, "type", "float", "symmetric", 1, "strategy",
                         "token", "group_size", "dynamic", 1, "actorder", "observer");
        /* compressed-tensors' float 8 means E4M3: E5M2 weights get a format name no loader knows, so that a loader
         * refuses the folder instead of reading E5M2 codes with E4M3 scales (docs/HF_FORMATS.md) */
        if (o->type == QD_HFQ_FP8_E5M2)
            format = "quantd-float-quantized-e5m2";
        break;
    default:
        format = "pack-quantized";
        weights = json_pack("{si ss sb ss si sb sn ss}", "num_bits", 4, "type", "int", "symmetric", 1, "strategy",
                            "group", "group_size", o->group ? o->group : 128, "dynamic", 0, "actorder", "observer",
                            "minmax");
        acts = json_null();
    }
    group = json_pack("{s[s] so so sn}", "targets", "Linear", "weights", weights, "input_activations", acts,
                      "output_activations");
    return json_pack("{ss ss s{so} s[s] sn ss}", "quant_method", "compressed-tensors", "format", format,
                     "config_groups", "group_0", group, "ignore", "lm_head", "kv_cache_scheme", "quantization_status",
                     "compressed");
}

static json_t *load_source_config(const char *src)
{
    char path[4096];
    struct stat st;
    json_error_t jerr;
    if (stat(src, &st) != 0)
        return NULL;
    if (S_ISDIR(st.st_mode))
        snprintf(path, sizeof(path), "%s/config.json", src);
    else {
        const char *slash = strrchr(src, '/');
        if (slash)
            snprintf(path, sizeof(path), "%.*s/config.json", (int)(slash - src), src);
        else
            snprintf(path, sizeof(path), "config.json");
        /* a safetensors file's folder only: a GGUF or llama2c file has no config beside it that belongs to it */
        size_t l = strlen(src);
        if (l < 12 || strcmp(src + l - 12, ".safetensors"))
            return NULL;
    }
    if (stat(path, &st) != 0)
        return NULL;
    json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (c && !json_is_object(c)) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* an f32 hyper-parameter as the shortest decimal that reads back to it (1e-05, not 9.9999997473787516e-06) */
static double short_f32(double v)
{
    char buf[40];
    float f = (float)v;
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f)
            break;
    }
    return strtod(buf, NULL);
}

static json_t *synth_config(const qd_hparams *h, bool tied)
{
    return json_pack("{s[s] ss sI sI sI sI sI sI sf sf sI ss sb}", "architectures", "LlamaForCausalLM", "model_type",
                     "llama", "hidden_size", (json_int_t)h->n_embd, "intermediate_size", (json_int_t)h->n_ff,
                     "num_hidden_layers", (json_int_t)h->n_layer, "num_attention_heads", (json_int_t)h->n_head,
                     "num_key_value_heads", (json_int_t)h->n_head_kv, "max_position_embeddings",
                     (json_int_t)h->n_ctx, "rms_norm_eps", short_f32(h->rms_eps), "rope_theta",
                     short_f32(h->rope_theta), "vocab_size",
                     (json_int_t)h->n_vocab, "hidden_act", "silu", "tie_word_embeddings", tied);
}

/* One tensor: f32 in HF row order. */
static int read_hf(float **out, const qd_tensor *t, qd_name_permute perm, const qd_hparams *h)
{
    int64_t cols = t->ne[0], rows = qd_tensor_nelements(t) / (cols ? cols : 1);
    float *g = qd_mallocarray((size_t)(rows * cols) + 1, sizeof(float)), *hf = NULL;
    int rc;
    if (!g)
        return QD_ENOMEM;
    if ((rc = qd_tensor_read_f32(t, 0, rows, g))) {
        qd_free(g);
        return rc;
    }
    if (perm == QD_PERMUTE_NONE) {
        *out = g;
        return QD_OK;
    }
    int64_t heads = perm == QD_PERMUTE_Q ? h->n_head : h->n_head_kv;
    hf = qd_mallocarray((size_t)(rows * cols) + 1, sizeof(float));
    if (!hf) {
        qd_free(g);
        return QD_ENOMEM;
    }
    for (int64_t s = 0; s < rows; s++) {
        int64_t d = qd_permute_dst_row(s, rows, heads); /* the GGUF row holding HF row s */
        if (d < 0) {
            qd_free(g);
            qd_free(hf);
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: %lld rows do not split into %lld heads", t->name,
                                (long long)rows, (long long)heads);
        }
        memcpy(hf + s * cols, g + d * cols, (size_t)cols * sizeof(float));
    }
    qd_free(g);
    *out = hf;
    return QD_OK;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return qd_error_set(QD_EIO, QD_EC_OS, "create %s: %s", path, strerror(errno));
    int ok = fputs(text, f) >= 0;
    if (fclose(f) != 0 || !ok)
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
    return QD_OK;
}

int qd_hfq_export(qd_hfq_export_stats *st, const char *src, const char *out_dir, const qd_hfq_export_opts *o)
{
    qd_model *m = NULL;
    qd_st_writer *w = NULL;
    json_t *cfg = NULL;
    qd_hparams h;
    float *x = NULL;
    uint16_t *half = NULL;
    char path[4096], name[256];
    qd_hfq_opts q = o->q;
    int rc;
    double t0 = now_s();
    qd_type main_type = QD_TYPE_F32;

    memset(st, 0, sizeof(*st));
    const char *method = o->method ? o->method : "rtn";
    if (!o->layer_fn && o->q.format == QD_HFQ_GPTQ)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "the autogptq layout is written by --method gptq (with --calib)");
    if (!o->layer_fn && strcmp(method, "rtn"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID,
                            "method %s needs calibration activations (not yet here); only rtn writes these formats",
                            method);
    if ((rc = qd_model_open(&m, src)))
        return rc;
    if ((rc = qd_model_hparams(m, &h)))
        goto done;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", out_dir, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < qd_model_tensor_count(m); i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        if (t->n_dims == 2 && (t->type == QD_TYPE_F16 || t->type == QD_TYPE_BF16)) {
            main_type = t->type;
            break;
        }
    }
    if (!q.dtype)
        q.dtype = torch_dtype_of(main_type);
    if ((rc = qd_st_writer_new(&w)))
        goto done;
    bool has_lm_head = false;
    for (size_t i = 0; i < qd_model_tensor_count(m); i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        qd_name_permute perm = QD_PERMUTE_NONE;
        if (qd_name_map(name, sizeof(name), &perm, t->name, QD_NAMES_GGUF, QD_NAMES_HF)) {
            qd_error_clear();
            snprintf(name, sizeof(name), "%s", t->src_name ? t->src_name : t->name);
            perm = QD_PERMUTE_NONE;
        }
        if (!strcmp(name, "lm_head.weight"))
            has_lm_head = true;
        if ((rc = read_hf(&x, t, perm, &h))) {
            qd_error_prefix("%s", t->name);
            goto done;
        }
        int64_t cols = t->ne[0], rows = qd_tensor_nelements(t) / (cols ? cols : 1);
        st->n_tensors++;
        if (t->n_dims == 2 && is_block_linear(name)) {
            qd_hfq_result r;
            char prefix[256], full[320];
            snprintf(prefix, sizeof(prefix), "%.*s", (int)(strlen(name) - strlen("weight")), name);
            /* calibrated methods plug in here (layer_fn): same matrix (HF order), same result layout */
            memset(&r, 0, sizeof(r));
            rc = o->layer_fn ? o->layer_fn(&r, name, x, rows, cols, &q, o->payload)
                             : qd_hfq_quantize(&r, &q, x, rows, cols);
            if (!rc && (r.rows != rows || r.cols != cols || !r.deq))
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "method %s returned a %lldx%lld result for a %lldx%lld "
                                  "matrix", method, (long long)r.rows, (long long)r.cols, (long long)rows,
                                  (long long)cols);
            if (rc) {
                qd_hfq_result_free(&r); /* whatever a failing method left behind */
                qd_error_prefix("%s", name);
                goto done;
            }
            double se = 0, sw = 0;
            for (int64_t k = 0; k < rows * cols; k++) {
                double d = (double)x[k] - (double)r.deq[k];
                se += d * d;
                sw += (double)x[k] * (double)x[k];
            }
            double rel = sw > 0 ? sqrt(se / sw) : 0;
            if (rel > st->max_rel_rmse)
                st->max_rel_rmse = rel;
            for (size_t p = 0; p < r.n_parts && !rc; p++) {
                snprintf(full, sizeof(full), "%s%s", prefix, r.parts[p].suffix);
                rc = qd_st_writer_add(w, full, r.parts[p].dtype, r.parts[p].rank, r.parts[p].shape, r.parts[p].data,
                                      r.parts[p].nbytes);
                st->q_bytes += r.parts[p].nbytes;
            }
            qd_hfq_result_free(&r);
            if (rc)
                goto done;
            st->n_quantized++;
            st->q_elements += (uint64_t)(rows * cols);
        } else {
            int64_t shape[2] = {rows, cols};
            uint32_t rank = t->n_dims == 1 ? 1 : 2;
            if (rank == 1)
                shape[0] = cols;
            if (t->type == QD_TYPE_F16 || t->type == QD_TYPE_BF16) {
                half = qd_mallocarray((size_t)(rows * cols) + 1, 2);
                if (!half) {
                    rc = QD_ENOMEM;
                    goto done;
                }
                if ((rc = qd_quantize_rows(t->type, x, half, rows, cols, NULL)))
                    goto done;
                rc = qd_st_writer_add(w, name, t->type == QD_TYPE_F16 ? QD_ST_F16 : QD_ST_BF16, rank, shape, half,
                                      (size_t)(rows * cols) * 2);
                qd_free(half);
                half = NULL;
            } else {
                rc = qd_st_writer_add(w, name, QD_ST_F32, rank, shape, x, (size_t)(rows * cols) * 4);
            }
            if (rc)
                goto done;
        }
        qd_free(x);
        x = NULL;
        qd_tensor_drop_pages(t);
    }
    const char *base = strrchr(src, '/');
    base = base && base[1] ? base + 1 : src;
    if ((rc = qd_st_writer_meta(w, "format", "pt")) || (rc = qd_st_writer_meta(w, "quantd.method", method)) ||
        (rc = qd_st_writer_meta(w, "quantd.format", qd_hfq_format_name(q.format))) ||
        (rc = qd_st_writer_meta(w, "quantd.type", qd_hfq_type_name(q.type))) ||
        (rc = qd_st_writer_meta(w, "quantd.base_model", base)))
        goto done;
    if ((rc = qd_st_writer_write(w, out_dir, "model", o->max_shard_bytes, &st->file_bytes)))
        goto done;

    cfg = load_source_config(src);
    size_t precision = 17; /* a source config's numbers keep every digit jansson has */
    if (!cfg) {
        cfg = synth_config(&h, !has_lm_head);
        precision = 9; /* ours come from f32 values: 9 digits round-trip them and print 1e-05 as such */
    }
    if (!cfg) {
        rc = QD_ENOMEM;
        goto done;
    }
    json_object_set_new(cfg, "torch_dtype", json_string(torch_dtype_of(main_type)));
    json_t *qc = o->quant_config ? json_loads(o->quant_config, 0, NULL) : quant_config(&q, torch_dtype_of(main_type));
    if (!qc && o->quant_config) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantization_config from method %s is not JSON", method);
        goto done;
    }
    if (!qc) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "quantization_config: out of memory");
        goto done;
    }
    json_object_set_new(cfg, "quantization_config", qc);
    snprintf(path, sizeof(path), "%s/config.json", out_dir);
    if (json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(precision))) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
        goto done;
    }
    char readme[1024];
    snprintf(readme, sizeof(readme),
             "---\nbase_model: %s\nbase_model_relation: quantized\nlibrary_name: transformers\ntags:\n- quantd\n- %s\n"
             "- %s\n---\n\n%s quantized by quantd (method %s) into the %s layout, type %s.\n",
             base, q.format == QD_HFQ_BNB ? "bitsandbytes" : q.format == QD_HFQ_GPTQ ? "gptq" : "compressed-tensors",
             qd_hfq_type_name(q.type), base,
             method, qd_hfq_format_name(q.format), qd_hfq_type_name(q.type));
    snprintf(path, sizeof(path), "%s/README.md", out_dir);
    rc = write_text(path, readme);
done:
    st->seconds = now_s() - t0;
    qd_free(x);
    qd_free(half);
    json_decref(cfg);
    qd_st_writer_free(w);
    qd_model_free(m);
    return rc;
}
