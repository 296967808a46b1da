/*
 * load_model.c - the runtime's adapter over include/qd/model.h: any model file the engine reads (GGUF,
 * safetensors single or sharded, llama2.c) becomes a qd_llama_model.
 *
 * Zero copy where it can: a tensor whose bytes sit in the file in GGUF row order and aligned for its type is used
 * where it lies (GGUF of any ggml type qd_dequantize_rows() reads, F16/BF16/quantized as is; llama2.c f32). Copies
 * are made only for (a) HF attn_q/attn_k rows, which are stored in HF order and are permuted into GGUF (Meta) order
 * as llama.cpp's converter does, so the runtime's adjacent-pair (NORM) RoPE sees the same rotation pairs as in a
 * converted GGUF; (b) data that is not 4-byte aligned (safetensors does not align); (c) norm vectors that are not
 * f32 (the runtime keeps norms in f32). The qd_model stays open (its mapping is read-only) for the model's lifetime.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/runtime.h"

static int own(qd_llama_model *m, void *p)
{
    void **n = qd_reallocarray(m->owned_, m->n_owned_ + 1, sizeof(void *));
    if (!n)
        return QD_ENOMEM;
    m->owned_ = n;
    m->owned_[m->n_owned_++] = p;
    return QD_OK;
}

/* Point dst at the GGUF tensor `name`, which must be [rows, cols] (ne = {cols, rows}). */
static int take(qd_llama_model *m, const qd_model *src, const char *name, qd_llama_tensor *dst, int64_t rows,
                int64_t cols, bool norm, const char *what)
{
    const qd_tensor *t = qd_model_tensor_find(src, name);
    if (!t)
        return qd_error_set(QD_ECORRUPT, QD_EC_ENGINE, "%s: no tensor %s", what, name);
    if (t->ne[0] != cols || qd_tensor_nelements(t) != rows * cols)
        return qd_error_set(QD_ECORRUPT, QD_EC_ENGINE, "%s: tensor %s is [%lld, %lld], the config needs [%lld, %lld]",
                            what, name, (long long)(t->ne[0] ? qd_tensor_nelements(t) / t->ne[0] : 0),
                            (long long)t->ne[0], (long long)rows, (long long)cols);
    const qd_type_traits *tr = qd_type_traits_get(t->type);
    if (!tr || qd_row_size(t->type, cols) == 0)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "%s: tensor %s has a type the runtime cannot read", what,
                            name);
    void *buf = NULL;
    int rc = QD_OK;
    if (norm && t->type != QD_TYPE_F32) {
        if (!(buf = qd_mallocarray((size_t)(rows * cols), sizeof(float))) || (rc = own(m, buf)) < 0) {
            qd_free(buf);
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", what);
        }
        if ((rc = qd_tensor_read_f32(t, 0, rows, buf)) < 0)
            return rc;
        *dst = (qd_llama_tensor){QD_TYPE_F32, buf, rows, cols, NULL};
        return QD_OK;
    }
    if (t->permute_heads > 0 || ((uintptr_t)t->data & 3u) != 0) {
        size_t bytes = (size_t)rows * qd_row_size(t->type, cols);
        if (!(buf = qd_malloc(bytes ? bytes : 1)) || (rc = own(m, buf)) < 0) {
            qd_free(buf);
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", what);
        }
        if ((rc = qd_tensor_read_rows(t, 0, rows, buf)) < 0)
            return rc;
        *dst = (qd_llama_tensor){t->type, buf, rows, cols, NULL};
        return QD_OK;
    }
    *dst = (qd_llama_tensor){t->type, (void *)(uintptr_t)t->data, rows, cols, NULL};
    return QD_OK;
}

static bool fits_int(int64_t v, int64_t max) { return v > 0 && v <= max; }

/* Build over an open qd_model; on success the llama model owns src. */
static int from_model(qd_llama_model **out, qd_model *src, const char *what)
{
    qd_hparams h;
    qd_llama_model *m = NULL;
    int rc;
    *out = NULL;
    if ((rc = qd_model_hparams(src, &h)) < 0)
        return qd_error_prefix("%s", what), rc;
    if (strcmp(h.arch, "llama"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "%s: architecture '%s' is not llama", what, h.arch);
    if (h.n_ff <= 0) { /* derive from the gate when the metadata lacks it */
        const qd_tensor *g = qd_model_tensor_find(src, "blk.0.ffn_gate.weight");
        if (g && g->ne[0] > 0)
            h.n_ff = qd_tensor_nelements(g) / g->ne[0];
    }
    if (h.n_ctx <= 0)
        h.n_ctx = 2048;
    if (!fits_int(h.n_embd, 1 << 16) || !fits_int(h.n_ff, 1 << 18) || !fits_int(h.n_layer, 1024) ||
        !fits_int(h.n_head, 1024) || !fits_int(h.n_head_kv, 1024) || !fits_int(h.n_vocab, 1 << 22) ||
        !fits_int(h.n_ctx, 1 << 22) || h.n_embd % h.n_head || h.n_head % h.n_head_kv || (h.n_embd / h.n_head) % 2)
        return qd_error_set(QD_ECORRUPT, QD_EC_ENGINE, "%s: not a llama model the runtime can run (dim=%lld ff=%lld "
                            "layers=%lld heads=%lld kv_heads=%lld vocab=%lld ctx=%lld)", what, (long long)h.n_embd,
                            (long long)h.n_ff, (long long)h.n_layer, (long long)h.n_head, (long long)h.n_head_kv,
                            (long long)h.n_vocab, (long long)h.n_ctx);
    if (h.n_rot > 0 && h.n_rot != h.n_embd / h.n_head)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "%s: partial RoPE (%lld of %lld dimensions) is not "
                            "supported", what, (long long)h.n_rot, (long long)(h.n_embd / h.n_head));
    if (!(m = qd_calloc(1, sizeof(*m))) || !(m->layers = qd_calloc((size_t)h.n_layer, sizeof(qd_llama_layer)))) {
        qd_free(m);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", what);
    }
    m->cfg = (qd_llama_config){(int)h.n_embd, (int)h.n_ff, (int)h.n_layer, (int)h.n_head, (int)h.n_head_kv,
                               (int)h.n_vocab, (int)h.n_ctx, (float)h.rope_theta, (float)h.rms_eps, h.tied_output};
    int64_t d = h.n_embd, ff = h.n_ff, kv = h.n_embd / h.n_head * h.n_head_kv, V = h.n_vocab;
    char nm[QD_GGUF_MAX_NAME + 1];
    rc = take(m, src, "token_embd.weight", &m->tok_embd, V, d, false, what);
    for (int l = 0; l < h.n_layer && rc == QD_OK; l++) {
        qd_llama_layer *L = &m->layers[l];
        struct {
            const char *n;
            qd_llama_tensor *t;
            int64_t rows, cols;
        } w[9] = {{"attn_norm", &L->attn_norm, 1, d}, {"attn_q", &L->wq, d, d},     {"attn_k", &L->wk, kv, d},
                  {"attn_v", &L->wv, kv, d},          {"attn_output", &L->wo, d, d}, {"ffn_norm", &L->ffn_norm, 1, d},
                  {"ffn_gate", &L->w1, ff, d},        {"ffn_down", &L->w2, d, ff},   {"ffn_up", &L->w3, ff, d}};
        for (int k = 0; k < 9 && rc == QD_OK; k++) {
            snprintf(nm, sizeof(nm), "blk.%d.%s.weight", l, w[k].n);
            rc = take(m, src, nm, w[k].t, w[k].rows, w[k].cols, w[k].rows == 1, what);
        }
    }
    if (rc == QD_OK)
        rc = take(m, src, "output_norm.weight", &m->final_norm, 1, d, true, what);
    if (rc == QD_OK)
        rc = h.tied_output ? (m->output = m->tok_embd, QD_OK)
                           : take(m, src, "output.weight", &m->output, V, d, false, what);
    if (rc == QD_OK)
        rc = qd_llama_check(m);
    if (rc < 0) {
        qd_llama_free(m);
        return rc;
    }
    m->src_ = src;
    *out = m;
    return QD_OK;
}

static int load_path(qd_llama_model **out, const char *path, qd_model_format need)
{
    qd_model *src = NULL;
    *out = NULL;
    if (need == QD_MODEL_UNKNOWN && qd_calib_is_quant_folder(path)) /* W8A8 / AutoAWQ folders (quantd/calib/) */
        return qd_calib_load_folder(out, path);
    int rc = qd_model_open(&src, path);
    if (rc < 0)
        return rc;
    if (need != QD_MODEL_UNKNOWN && qd_model_format_of(src) != need) {
        rc = qd_error_set(QD_EINVAL, QD_EC_ENGINE, "%s: a %s file, not a %s checkpoint", path,
                          qd_model_format_name(qd_model_format_of(src)), qd_model_format_name(need));
        qd_model_free(src);
        return rc;
    }
    if ((rc = from_model(out, src, path)) < 0)
        qd_model_free(src);
    return rc;
}

int qd_llama_load_model(qd_llama_model **out, const char *path) { return load_path(out, path, QD_MODEL_UNKNOWN); }

int qd_llama_load_llama2c(qd_llama_model **out, const char *path) { return load_path(out, path, QD_MODEL_LLAMA2C); }

int qd_llama_load_model_mem(qd_llama_model **out, void *buf, size_t len, const char *what)
{
    qd_model *src = NULL;
    *out = NULL;
    what = what ? what : "buffer";
    int rc = qd_model_open_mem(&src, buf, len, QD_MODEL_UNKNOWN);
    if (rc < 0)
        return qd_error_prefix("%s", what), rc;
    if ((rc = from_model(out, src, what)) < 0) {
        qd_model_free(src);
        return rc;
    }
    if (own(*out, buf) < 0) {
        (*out)->src_ = NULL;
        qd_llama_free(*out);
        qd_model_free(src);
        *out = NULL;
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", what);
    }
    return QD_OK;
}

int qd_llama_load_llama2c_buf(qd_llama_model **out, void *buf, size_t len, const char *what)
{
    return qd_llama_load_model_mem(out, buf, len, what);
}

const qd_model *qd_llama_source(const qd_llama_model *m) { return m->src_; }
