/*
 * hf_load.c - quantized Hugging Face folders back into the runtime, so that `quant validate` runs exactly what was
 * published: compressed-tensors int-quantized (W8A8: int8 weights with f32 weight_scale per channel, activations
 * int8 per token, run by the runtime's W8A8 path), AutoAWQ GEMM (qweight/qzeros/scales, dequantized to f32 as
 * (q - z) * scale), and the layouts of quantd/formats/ (bitsandbytes NF4/FP4, compressed-tensors float-quantized FP8
 * and pack-quantized int4/int8), decoded as their loaders decode them (qd_hfq_dequantize). Other tensors: F32, F16
 * or BF16 as stored, made f32. Bits per weight (qd_llama_bpw) count the folder's stored bytes, not the decoded ones.
 *
 * The record of the method (quantd.json beside config.json: method, format, bits, group size, parameters,
 * calibration) becomes quantize.* keys of a metadata-only GGUF opened as the model's source, so the variant
 * predicate reads folders and GGUF files the same way (quantd/runtime/validate_json.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/model.h"

static json_t *read_json(const char *dir, const char *file)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

bool qd_calib_is_quant_folder(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return false;
    json_t *c = read_json(path, "config.json");
    json_t *qc = c ? json_object_get(c, "quantization_config") : NULL;
    const char *qm = json_string_value(json_object_get(qc, "quant_method"));
    bool yes = qm && (!strcmp(qm, "awq") || !strcmp(qm, "compressed-tensors") || !strcmp(qm, "bitsandbytes"));
    json_decref(c);
    return yes;
}

static int own(qd_llama_model *m, void *p)
{
    void **n = qd_reallocarray(m->owned_, m->n_owned_ + 1, sizeof(void *));
    if (!n) {
        qd_free(p);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load: out of memory");
    }
    m->owned_ = n;
    m->owned_[m->n_owned_++] = p;
    return QD_OK;
}

static int cfg_int(const json_t *c, const char *k, int *out, int def)
{
    json_t *v = json_object_get(c, k);
    if (!v) {
        if (def < 0)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "config.json: no %s", k);
        *out = def;
        return QD_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 24))
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "config.json: %s is not a positive integer", k);
    *out = (int)json_integer_value(v);
    return QD_OK;
}

/* one tensor as f32 (any float dtype) */
static int read_float(float *dst, const qd_st_entry *e, int64_t n)
{
    if ((int64_t)(e->nbytes / qd_st_dtype_size(e->dtype)) != n)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: %llu bytes for %lld values", e->name,
                            (unsigned long long)e->nbytes, (long long)n);
    switch (e->dtype) {
    case QD_ST_F32: memcpy(dst, e->data, (size_t)n * 4); return QD_OK;
    case QD_ST_F16: return qd_dequantize_rows(QD_TYPE_F16, e->data, dst, 1, n);
    case QD_ST_BF16: return qd_dequantize_rows(QD_TYPE_BF16, e->data, dst, 1, n);
    default: return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "%s: dtype %s", e->name, qd_st_dtype_name(e->dtype));
    }
}

static const qd_st_entry *find2(const qd_st_file *f, const char *prefix, const char *suffix)
{
    char n[300];
    snprintf(n, sizeof(n), "%.255s%.40s", prefix, suffix);
    return qd_st_find(f, n);
}

static bool shape2(const qd_st_entry *e, int64_t a, int64_t b)
{
    return e && e->rank == 2 && e->shape[0] == a && e->shape[1] == b;
}

/* A module stored in one of the Hugging Face layouts of quantd/formats/ (bitsandbytes, compressed-tensors), decoded
 * as its loader does (qd_hfq_dequantize) into dst [rows][cols] in HF order. */
static int dequant_layout(float *dst, const qd_st_file *f, const char *prefix, int64_t rows, int64_t cols,
                          const char *hf)
{
    float *v = NULL;
    int64_t r = 0, c = 0;
    int rc = qd_hfq_dequantize(&v, &r, &c, f, prefix);
    if (rc == QD_OK && (r != rows || c != cols))
        rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s decodes to [%lld, %lld], want [%lld, %lld]", hf,
                          (long long)r, (long long)c, (long long)rows, (long long)cols);
    if (rc == QD_OK)
        memcpy(dst, v, sizeof(float) * (size_t)(rows * cols));
    qd_free(v);
    return rc;
}

/* The GGUF tensor `gname` [rows, cols] from the folder, into t (owned by m). */
static int load_tensor(qd_llama_model *m, const qd_st_file *f, const char *gname, qd_llama_tensor *t, int64_t rows,
                       int64_t cols, int64_t heads, int group)
{
    char hf[256], prefix[256];
    qd_name_permute perm = QD_PERMUTE_NONE;
    int rc;
    if ((rc = qd_name_map(hf, sizeof(hf), &perm, gname, QD_NAMES_GGUF, QD_NAMES_HF)) < 0)
        return rc;
    snprintf(prefix, sizeof(prefix), "%.*s", (int)(strlen(hf) - strlen("weight")), hf);
    const qd_st_entry *w = qd_st_find(f, hf), *ws = find2(f, prefix, "weight_scale"), *qw = find2(f, prefix, "qweight");
    size_t n = (size_t)(rows * cols);
    float *fb = NULL;
    int8_t *q8 = NULL;
    float *sc = NULL;
    bool w8 = w && w->dtype == QD_ST_I8;
    if (w8) { /* W8A8 */
        if (!shape2(w, rows, cols) || !ws || ws->dtype != QD_ST_F32 || ws->nbytes != 4 * (uint64_t)rows)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: int8 weight or weight_scale has the wrong shape",
                                hf);
        size_t off = (n + 15) & ~(size_t)15;
        uint8_t *buf = qd_malloc(off + 4 * (size_t)rows);
        if (!buf)
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load: out of memory");
        q8 = (int8_t *)buf;
        sc = (float *)(buf + off);
        if ((rc = own(m, buf)) < 0)
            return rc;
        for (int64_t s = 0; s < rows; s++) {
            int64_t d = perm == QD_PERMUTE_NONE ? s : qd_permute_dst_row(s, rows, heads);
            if (d < 0)
                return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: rows do not split into heads", hf);
            memcpy(q8 + d * cols, w->data + s * cols, (size_t)cols);
            memcpy(&sc[d], ws->data + 4 * s, 4);
        }
        *t = (qd_llama_tensor){QD_TYPE_I8, q8, rows, cols, sc};
        return QD_OK;
    }
    float *hfv = qd_mallocarray(n + 1, sizeof(float));
    if (!hfv)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load: out of memory");
    if (qw) { /* AutoAWQ */
        const qd_st_entry *qz = find2(f, prefix, "qzeros"), *s = find2(f, prefix, "scales");
        if (group <= 0 || cols % group || rows % 8 || !shape2(qw, cols, rows / 8) || qw->dtype != QD_ST_I32 ||
            !shape2(qz, cols / group, rows / 8) || qz->dtype != QD_ST_I32 || !shape2(s, cols / group, rows) ||
            s->dtype != QD_ST_F16)
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: qweight/qzeros/scales do not match [%lld, %lld] "
                              "group %d", prefix, (long long)rows, (long long)cols, group);
        else
            rc = qd_awq_unpack(hfv, (const int32_t *)qw->data, (const int32_t *)qz->data,
                               (const uint16_t *)s->data, rows, cols, group);
    } else if (w && w->dtype != QD_ST_F32 && w->dtype != QD_ST_F16 && w->dtype != QD_ST_BF16 &&
               w->dtype != QD_ST_I8) { /* FP8 (compressed-tensors float-quantized) */
        rc = dequant_layout(hfv, f, prefix, rows, cols, hf);
    } else if (!w && !qd_st_find(f, hf) && find2(f, prefix, "weight_packed")) { /* pack-quantized int4/int8 */
        rc = dequant_layout(hfv, f, prefix, rows, cols, hf);
    } else if (w && w->dtype == QD_ST_U8 && find2(f, prefix, "weight.absmax")) { /* bitsandbytes NF4/FP4 */
        rc = dequant_layout(hfv, f, prefix, rows, cols, hf);
    } else if (w) {
        rc = (w->rank == 2 && !shape2(w, rows, cols)) || (w->rank == 1 && w->shape[0] != rows * cols)
                 ? qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s has the wrong shape", hf)
                 : read_float(hfv, w, (int64_t)n);
    } else
        rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "no tensor %s", hf);
    if (rc == QD_OK && !(fb = qd_mallocarray(n + 1, sizeof(float))))
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load: out of memory");
    for (int64_t s = 0; rc == QD_OK && s < rows; s++) {
        int64_t d = perm == QD_PERMUTE_NONE ? s : qd_permute_dst_row(s, rows, heads);
        if (d < 0)
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: rows do not split into heads", hf);
        else
            memcpy(fb + d * cols, hfv + s * cols, sizeof(float) * (size_t)cols);
    }
    qd_free(hfv);
    if (rc == QD_OK && (rc = own(m, fb)) == QD_OK)
        *t = (qd_llama_tensor){QD_TYPE_F32, fb, rows, cols, NULL};
    else if (rc != QD_OK)
        qd_free(fb);
    return rc;
}

/* quantd.json -> a metadata-only GGUF (quantize.* keys) opened as the model's source */
static int attach_record(qd_llama_model *m, const char *dir)
{
    json_t *r = read_json(dir, "quantd.json");
    if (!r)
        return QD_OK;
    qd_gguf_writer *w = NULL;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = qd_gguf_writer_new(&w, 0);
    const char *k;
    json_t *v;
    char key[128];
    json_object_foreach(r, k, v)
    {
        json_t *obj = v;
        const char *sub;
        json_t *sv;
        if (rc)
            break;
        if (json_is_object(obj)) {
            json_object_foreach(obj, sub, sv)
            {
                snprintf(key, sizeof(key), "quantize.%s.%s", !strcmp(k, "calibration") ? "calib" : k, sub);
                if (json_is_string(sv))
                    rc = qd_gguf_set_str(w, key, json_string_value(sv));
                else if (json_is_integer(sv))
                    rc = qd_gguf_set_u64(w, key, (uint64_t)json_integer_value(sv));
                else if (json_is_real(sv))
                    rc = qd_gguf_set_f32(w, key, (float)json_real_value(sv));
                else if (json_is_boolean(sv))
                    rc = qd_gguf_set_str(w, key, json_is_true(sv) ? "true" : "false");
                if (rc)
                    break;
            }
            continue;
        }
        snprintf(key, sizeof(key), "quantize.%s", k);
        if (json_is_string(v))
            rc = qd_gguf_set_str(w, key, json_string_value(v));
        else if (json_is_integer(v))
            rc = qd_gguf_set_u32(w, key, (uint32_t)json_integer_value(v));
        else if (json_is_boolean(v))
            rc = qd_gguf_set_str(w, key, json_is_true(v) ? "true" : "false");
    }
    json_decref(r);
    if (!rc)
        rc = qd_gguf_set_str(w, "general.architecture", "llama");
    if (!rc)
        rc = qd_gguf_writer_to_mem(w, NULL, &buf, &len);
    qd_gguf_writer_free(w);
    if (rc)
        return rc;
    if ((rc = own(m, buf)) < 0)
        return rc;
    return qd_model_open_mem(&m->src_, buf, len, QD_MODEL_GGUF);
}

int qd_calib_load_folder(qd_llama_model **out, const char *dir)
{
    *out = NULL;
    json_t *c = read_json(dir, "config.json");
    if (!c)
        return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "%s: no readable config.json", dir);
    qd_st_file *f = NULL;
    qd_llama_model *m = NULL;
    int rc, d = 0, ff = 0, L = 0, H = 0, KV = 0, V = 0, ctx = 0, group = 0;
    json_t *qc = json_object_get(c, "quantization_config");
    if ((rc = cfg_int(c, "hidden_size", &d, -1)) || (rc = cfg_int(c, "intermediate_size", &ff, -1)) ||
        (rc = cfg_int(c, "num_hidden_layers", &L, -1)) || (rc = cfg_int(c, "num_attention_heads", &H, -1)) ||
        (rc = cfg_int(c, "num_key_value_heads", &KV, H)) || (rc = cfg_int(c, "vocab_size", &V, -1)) ||
        (rc = cfg_int(c, "max_position_embeddings", &ctx, 2048)) || (qc && (rc = cfg_int(qc, "group_size", &group, 128))))
        goto done;
    if ((rc = qd_st_open(&f, dir)) < 0)
        goto done;
    if (!(m = qd_calloc(1, sizeof(*m))) || !(m->layers = qd_calloc((size_t)L, sizeof(qd_llama_layer)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load: out of memory");
        goto done;
    }
    json_t *eps = json_object_get(c, "rms_norm_eps"), *th = json_object_get(c, "rope_theta");
    m->cfg = (qd_llama_config){d, ff, L, H, KV, V, ctx, th ? (float)json_number_value(th) : 10000.0f,
                               eps ? (float)json_number_value(eps) : 1e-5f,
                               json_is_true(json_object_get(c, "tie_word_embeddings")) || !qd_st_find(f, "lm_head.weight")};
    int64_t kv = (int64_t)d / H * KV;
    rc = load_tensor(m, f, "token_embd.weight", &m->tok_embd, V, d, 0, group);
    for (int l = 0; l < L && rc == QD_OK; l++) {
        qd_llama_layer *Ly = &m->layers[l];
        struct {
            const char *n;
            qd_llama_tensor *t;
            int64_t rows, cols, heads;
        } w[9] = {{"attn_norm", &Ly->attn_norm, 1, d, 0}, {"attn_q", &Ly->wq, d, d, H}, {"attn_k", &Ly->wk, kv, d, KV},
                  {"attn_v", &Ly->wv, kv, d, 0}, {"attn_output", &Ly->wo, d, d, 0}, {"ffn_norm", &Ly->ffn_norm, 1, d, 0},
                  {"ffn_gate", &Ly->w1, ff, d, 0}, {"ffn_down", &Ly->w2, d, ff, 0}, {"ffn_up", &Ly->w3, ff, d, 0}};
        char nm[64];
        for (int k = 0; k < 9 && rc == QD_OK; k++) {
            snprintf(nm, sizeof(nm), "blk.%d.%s.weight", l, w[k].n);
            rc = load_tensor(m, f, nm, w[k].t, w[k].rows, w[k].cols, w[k].heads, group);
        }
    }
    if (rc == QD_OK)
        rc = load_tensor(m, f, "output_norm.weight", &m->final_norm, 1, d, 0, group);
    if (rc == QD_OK)
        rc = m->cfg.tied_output ? (m->output = m->tok_embd, QD_OK)
                                : load_tensor(m, f, "output.weight", &m->output, V, d, 0, group);
    if (rc == QD_OK)
        rc = qd_llama_check(m);
    if (rc == QD_OK)
        rc = attach_record(m, dir);
    for (size_t i = 0; rc == QD_OK && i < qd_st_count(f); i++) /* bits per weight: what the folder stores */
        m->stored_bits_ += 8.0 * (double)qd_st_at(f, i)->nbytes;
done:
    if (rc < 0) {
        qd_error_prefix("%s", dir);
        qd_llama_free(m);
    } else
        *out = m;
    qd_st_close(f);
    json_decref(c);
    return rc;
}
