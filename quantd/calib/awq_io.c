/*
 * awq_io.c - writing what the calibrated methods made: a runtime model as a GGUF (llama architecture, the
 * placeholder vocabulary, the method's record in quantize.* keys), and AWQ's AutoAWQ folder.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/version.h"

int qd_llama_write_gguf(const qd_llama_model *cm, const char *path, int ftype, const qd_gguf_extra *extra,
                        int n_extra)
{
    qd_llama_model *m = (qd_llama_model *)cm;
    const qd_llama_config *c = &m->cfg;
    qd_gguf_writer *w = NULL;
    int rc;
    if ((rc = qd_gguf_writer_new(&w, 0)) < 0)
        return rc;
    if ((rc = qd_gguf_set_str(w, "general.architecture", "llama")) ||
        (rc = qd_gguf_set_u32(w, "llama.context_length", (uint32_t)c->seq_len)) ||
        (rc = qd_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim)) ||
        (rc = qd_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers)) ||
        (rc = qd_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim)) ||
        (rc = qd_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->n_heads))) ||
        (rc = qd_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads)) ||
        (rc = qd_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads)) ||
        (rc = qd_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps)) ||
        (rc = qd_gguf_set_f32(w, "llama.rope.freq_base", c->rope_theta)) ||
        (rc = qd_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab)) ||
        (rc = qd_gguf_set_u32(w, "general.file_type", (uint32_t)ftype)) ||
        (rc = qd_gguf_set_u32(w, "general.quantization_version", 2)) ||
        (rc = qd_gguf_set_str(w, "general.quantized_by", "quantd " QD_VERSION)))
        goto done;
    for (int i = 0; i < n_extra; i++) {
        const qd_gguf_extra *e = &extra[i];
        rc = e->str ? qd_gguf_set_str(w, e->key, e->str)
             : e->is_float ? qd_gguf_set_f32(w, e->key, (float)e->num)
             : e->num <= 4294967295.0 ? qd_gguf_set_u32(w, e->key, (uint32_t)e->num)
                                      : qd_gguf_set_u64(w, e->key, (uint64_t)e->num);
        if (rc)
            goto done;
    }
    if ((rc = qd_write_placeholder_vocab(w, c->vocab)))
        goto done;
    int n = qd_llama_tensor_count(m);
    for (int i = 0; i < n; i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        int64_t ne[2] = {t->cols, t->rows};
        char nm[64];
        snprintf(nm, sizeof(nm), "%s", name);
        if ((rc = qd_gguf_add_tensor(w, nm, t->type, t->rows == 1 && strstr(nm, "norm") ? 1 : 2, ne)))
            goto done;
    }
    if ((rc = qd_gguf_writer_begin(w, path)))
        goto done;
    for (int i = 0; i < n; i++) {
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, NULL);
        if ((rc = qd_gguf_writer_write(w, t->data, (size_t)t->rows * qd_row_size(t->type, t->cols))))
            goto done;
    }
    rc = qd_gguf_writer_finish(w);
done:
    qd_gguf_writer_free(w);
    return rc;
}

/* ---------------------------------------------------------------- AutoAWQ folder */

static const char *hf_name(char *buf, size_t cap, const char *gguf)
{
    qd_name_permute p;
    if (qd_name_map(buf, cap, &p, gguf, QD_NAMES_GGUF, QD_NAMES_HF) != QD_OK) {
        qd_error_clear();
        snprintf(buf, cap, "%s", gguf);
    }
    return buf;
}

/* rows of a GGUF-order q/k matrix in HF order (llama.cpp's converter permutes them; undo it) */
static int to_hf_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t heads)
{
    for (int64_t s = 0; s < rows; s++) {
        int64_t d = qd_permute_dst_row(s, rows, heads);
        if (d < 0)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ export: %lld rows do not split into %lld heads",
                                (long long)rows, (long long)heads);
        memcpy(dst + s * cols, src + d * cols, sizeof(float) * (size_t)cols);
    }
    return QD_OK;
}

int qd_awq_export(const qd_llama_model *cm, int group, const char *out_dir, const char *base_name,
                  uint64_t *bytes_written)
{
    qd_llama_model *m = (qd_llama_model *)cm;
    const qd_llama_config *c = &m->cfg;
    qd_st_writer *w = NULL;
    json_t *cfg = NULL, *skip = NULL;
    float *hf = NULL;
    char name[160], full[200], path[4096];
    int rc;
    if ((rc = qd_st_writer_new(&w)) < 0)
        return rc;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", out_dir, strerror(errno));
        goto done;
    }
    skip = json_array(); /* block linears the layout cannot hold: Transformers keeps them unconverted */
    int n = qd_llama_tensor_count(m);
    for (int i = 0; i < n && skip; i++) {
        const char *gname;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &gname);
        if (t->type != QD_TYPE_F32) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ export: %s is not f32", gname);
            goto done;
        }
        bool q = strstr(gname, "attn_q.") != NULL, k = strstr(gname, "attn_k.") != NULL;
        hf_name(name, sizeof(name), gname);
        hf = qd_mallocarray((size_t)(t->rows * t->cols), sizeof(float));
        if (!hf) {
            rc = QD_ENOMEM;
            goto done;
        }
        if (q || k)
            rc = to_hf_rows(hf, t->data, t->rows, t->cols, q ? c->n_heads : c->n_kv_heads);
        else
            memcpy(hf, t->data, sizeof(float) * (size_t)(t->rows * t->cols));
        if (rc)
            goto done;
        if (!strncmp(gname, "blk.", 4) && !strstr(gname, "norm") && qd_awq_packable(t->rows, t->cols, group)) {
            int32_t *qw = NULL, *qz = NULL;
            uint16_t *sc = NULL;
            if ((rc = qd_awq_pack(&qw, &qz, &sc, NULL, hf, t->rows, t->cols, group))) {
                qd_error_prefix("%s", gname);
                goto done;
            }
            size_t pl = strlen(name) - strlen("weight");
            int64_t s1[2] = {t->cols, t->rows / 8}, s2[2] = {t->cols / group, t->rows / 8},
                    s3[2] = {t->cols / group, t->rows};
            snprintf(full, sizeof(full), "%.*sqweight", (int)pl, name);
            rc = qd_st_writer_add(w, full, QD_ST_I32, 2, s1, qw, (size_t)(s1[0] * s1[1]) * 4);
            snprintf(full, sizeof(full), "%.*sqzeros", (int)pl, name);
            if (!rc)
                rc = qd_st_writer_add(w, full, QD_ST_I32, 2, s2, qz, (size_t)(s2[0] * s2[1]) * 4);
            snprintf(full, sizeof(full), "%.*sscales", (int)pl, name);
            if (!rc)
                rc = qd_st_writer_add(w, full, QD_ST_F16, 2, s3, sc, (size_t)(s3[0] * s3[1]) * 2);
            qd_free(qw);
            qd_free(qz);
            qd_free(sc);
        } else {
            int64_t shape[2] = {t->rows, t->cols};
            bool vec = strstr(gname, "norm") != NULL;
            if (!strncmp(gname, "blk.", 4) && !vec)
                json_array_append_new(skip, json_stringn(name, strlen(name) - strlen(".weight")));
            rc = qd_st_writer_add(w, name, QD_ST_F32, vec ? 1 : 2, vec ? shape + 1 : shape, hf,
                                  (size_t)(t->rows * t->cols) * 4);
        }
        qd_free(hf);
        hf = NULL;
        if (rc)
            goto done;
    }
    if ((rc = qd_st_writer_meta(w, "format", "pt")) || (rc = qd_st_writer_meta(w, "quantd.method", "awq")) ||
        (rc = qd_st_writer_meta(w, "quantd.base_model", base_name)))
        goto done;
    if ((rc = qd_st_writer_write(w, out_dir, "model", 0, bytes_written)))
        goto done;
    cfg = json_pack("{s[s] ss sI sI sI sI sI sI sf sf sI ss sb ss s{ss si si sb ss}}", "architectures",
                    "LlamaForCausalLM", "model_type", "llama", "hidden_size", (json_int_t)c->dim,
                    "intermediate_size", (json_int_t)c->hidden_dim, "num_hidden_layers", (json_int_t)c->n_layers,
                    "num_attention_heads", (json_int_t)c->n_heads, "num_key_value_heads",
                    (json_int_t)c->n_kv_heads, "max_position_embeddings", (json_int_t)c->seq_len, "rms_norm_eps",
                    (double)c->norm_eps, "rope_theta", (double)c->rope_theta, "vocab_size", (json_int_t)c->vocab,
                    "hidden_act", "silu", "tie_word_embeddings", c->tied_output, "torch_dtype", "float16",
                    "quantization_config", "quant_method", "awq", "bits", 4, "group_size", group, "zero_point", 1,
                    "version", "gemm");
    if (cfg && json_array_size(skip))
        json_object_set(json_object_get(cfg, "quantization_config"), "modules_to_not_convert", skip);
    snprintf(path, sizeof(path), "%s/config.json", out_dir);
    if (!cfg || json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9))) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
        goto done;
    }
    snprintf(path, sizeof(path), "%s/README.md", out_dir);
    FILE *rf = fopen(path, "w");
    if (!rf || fprintf(rf, "---\nbase_model: %s\nbase_model_relation: quantized\nlibrary_name: transformers\ntags:\n"
                           "- quantd\n- awq\n---\n\n%s quantized by quantd with AWQ (int4, group %d, zero points) "
                           "into the AutoAWQ GEMM layout.\n", base_name, base_name, group) < 0) {
        if (rf)
            fclose(rf);
        rc = qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
        goto done;
    }
    if (fclose(rf) != 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
        goto done;
    }
done:
    qd_free(hf);
    json_decref(skip);
    json_decref(cfg);
    qd_st_writer_free(w);
    return rc;
}
