/*
 * smoothquant.c - SmoothQuant smoothing and the W8A8 variant (include/qd/smoothquant.h, docs/CALIB.md).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/smoothquant.h"

static void smooth_group(float *norm, qd_llama_tensor *const *ws, int nw, const float *xmax, double alpha)
{
    int64_t cols = ws[0]->cols;
    for (int64_t j = 0; j < cols; j++) {
        float wmax = 0;
        for (int k = 0; k < nw; k++) {
            const float *w = ws[k]->data;
            for (int64_t r = 0; r < ws[k]->rows; r++)
                wmax = fabsf(w[r * cols + j]) > wmax ? fabsf(w[r * cols + j]) : wmax;
        }
        if (!(xmax[j] > 0) || !(wmax > 0))
            continue; /* a dead channel: leave it */
        double s = pow(xmax[j], alpha) / pow(wmax, 1.0 - alpha);
        s = s < 1e-5 ? 1e-5 : s;
        float sf = (float)s;
        norm[j] /= sf;
        for (int k = 0; k < nw; k++) {
            float *w = ws[k]->data;
            for (int64_t r = 0; r < ws[k]->rows; r++)
                w[r * cols + j] *= sf;
        }
    }
}

int qd_sq_smooth(qd_llama_model **out, int64_t *tokens, const qd_llama_model *ref, const qd_valset *calib,
                 const qd_sq_options *opts)
{
    qd_sq_options o = QD_SQ_OPTIONS_INIT;
    if (opts)
        o = *opts;
    *out = NULL;
    if (!(o.alpha >= 0 && o.alpha <= 1))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "SmoothQuant: alpha %g is outside [0, 1]", o.alpha);
    qd_llama_model *m = NULL;
    qd_actstats *st = NULL;
    qd_calib_options co = QD_CALIB_OPTIONS_INIT;
    co.n_threads = o.n_threads;
    co.max_seqs = o.max_seqs;
    int rc;
    if ((rc = qd_llama_dequantize(&m, ref)) < 0 || (rc = qd_actstats_collect(&st, m, calib, &co)) < 0)
        goto done;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qd_llama_layer *L = &m->layers[l];
        char nm[64];
        const qd_actstats_entry *a = qd_actstats_find(st, qd_llama_site_name(nm, sizeof(nm), l, QD_SITE_ATTN_Q));
        const qd_actstats_entry *f = qd_actstats_find(st, qd_llama_site_name(nm, sizeof(nm), l, QD_SITE_FFN_GATE));
        if (!a || !f) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "SmoothQuant: no activations seen in block %d", l);
            goto done;
        }
        qd_llama_tensor *att[3] = {&L->wq, &L->wk, &L->wv}, *ffn[2] = {&L->w1, &L->w3};
        smooth_group(L->attn_norm.data, att, 3, a->max_abs, o.alpha);
        smooth_group(L->ffn_norm.data, ffn, 2, f->max_abs, o.alpha);
    }
    if (tokens)
        *tokens = qd_actstats_tokens(st);
    *out = m;
    m = NULL;
done:
    qd_actstats_free(st);
    qd_llama_free(m);
    return rc;
}

int qd_w8a8_quantize(qd_llama_model **out, const qd_llama_model *f32)
{
    *out = NULL;
    qd_llama_model *m = NULL;
    int rc = qd_llama_dequantize(&m, f32);
    if (rc < 0)
        return rc;
    /* owned_ has one slot per tensor; the codes and scales of a linear replace its f32 buffer */
    for (int i = 0; i < qd_llama_tensor_count(m); i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        if (!qd_calib_is_block_linear(name))
            continue;
        qd_hfq_opts ho = {QD_HFQ_CT, QD_HFQ_INT8, 0, false, false, NULL, false};
        qd_hfq_result r;
        memset(&r, 0, sizeof(r));
        if ((rc = qd_hfq_quantize(&r, &ho, t->data, t->rows, t->cols)) < 0) {
            qd_hfq_result_free(&r);
            qd_error_prefix("W8A8 %s", name);
            goto fail;
        }
        const qd_hfq_part *wq = NULL, *ws = NULL;
        for (size_t p = 0; p < r.n_parts; p++) {
            if (!strcmp(r.parts[p].suffix, "weight") && r.parts[p].dtype == QD_ST_I8)
                wq = &r.parts[p];
            else if (!strcmp(r.parts[p].suffix, "weight_scale"))
                ws = &r.parts[p];
        }
        size_t nq = (size_t)(t->rows * t->cols);
        /* one buffer: int8 codes, then (aligned) the f32 row scales; replaces the f32 data in the owned list */
        size_t off = (nq + 15) & ~(size_t)15;
        uint8_t *buf = qd_malloc(off + sizeof(float) * (size_t)t->rows);
        if (!wq || !ws || ws->dtype != QD_ST_F32 || wq->nbytes != nq || ws->nbytes != 4 * (size_t)t->rows || !buf) {
            qd_free(buf);
            qd_hfq_result_free(&r);
            rc = qd_error_set(buf ? QD_EINVAL : QD_ENOMEM, QD_EC_INVALID, "W8A8 %s: unexpected int8 layout", name);
            goto fail;
        }
        memcpy(buf, wq->data, nq);
        memcpy(buf + off, ws->data, ws->nbytes);
        qd_hfq_result_free(&r);
        for (size_t k = 0; k < m->n_owned_; k++)
            if (m->owned_[k] == t->data) {
                qd_free(m->owned_[k]);
                m->owned_[k] = buf;
            }
        t->type = QD_TYPE_I8;
        t->data = buf;
        t->row_scale = (const float *)(buf + off);
    }
    *out = m;
    return QD_OK;
fail:
    qd_llama_free(m);
    return rc;
}

static int identity_layer(qd_hfq_result *out, const char *hf_name, const float *w, int64_t rows, int64_t cols,
                          const qd_hfq_opts *o, void *payload)
{
    (void)hf_name;
    (void)payload;
    return qd_hfq_quantize(out, o, w, rows, cols); /* the smoothing is already in the weights */
}

int qd_sq_export(const qd_llama_model *f32, const char *out_dir, const char *base_name, const char *method)
{
    char tmp[4096];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", out_dir, strerror(errno));
    const char *base = base_name && *base_name && !strchr(base_name, '/') ? base_name : "model";
    /* the intermediate GGUF is named after the source, since the export records its file name as base_model */
    snprintf(tmp, sizeof(tmp), "%s/%s", out_dir, base);
    int rc = qd_llama_write_gguf(f32, tmp, 0, NULL, 0);
    if (rc < 0)
        return rc;
    qd_hfq_export_opts eo;
    qd_hfq_export_stats st;
    memset(&eo, 0, sizeof(eo));
    eo.q.format = QD_HFQ_CT;
    eo.q.type = QD_HFQ_INT8;
    eo.method = method ? method : "smoothquant";
    eo.layer_fn = identity_layer;
    rc = qd_hfq_export(&st, tmp, out_dir, &eo);
    unlink(tmp);
    return rc;
}
