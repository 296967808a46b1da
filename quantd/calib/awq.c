/*
 * awq.c - activation-aware weight quantization (include/qd/awq.h, docs/CALIB.md).
 *
 * Why Gram matrices: the search evaluates every alpha on every group of every block, and each evaluation needs
 * sum_t ||D x_t||^2 for a weight error D. With G = sum_t x_t x_t^T that is sum_r d_r^T G d_r: rows * cols^2 work
 * per evaluation instead of rows * cols * tokens, and the calibration activations need not be kept at all. G is
 * accumulated in double through the runtime's matmul observer, beside the qd_actstats the mean |x| comes from.
 *
 * The calibration pass runs on the float model once; the searches of all blocks use those activations, as
 * AutoAWQ does within a block (scaling keeps the float function; only clipping would change later inputs, and its
 * effect on them is not fed forward here).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/quant.h"

/* ---------------------------------------------------------------- grids */

static float f16_round(float x)
{
    uint16_t h;
    float r;
    qd_quantize_rows(QD_TYPE_F16, &x, &h, 1, 1, NULL);
    qd_dequantize_rows(QD_TYPE_F16, &h, &r, 1, 1);
    return r;
}

/* AutoAWQ's asymmetric int4 group: scale = (max - min) / 15 (rounded to f16, as stored), zero = clamp(-round(min /
 * scale), 0, 15), q = clamp(round(w / scale) + zero, 0, 15); round half to even like torch.round. */
static void int4_group(const float *w, int64_t n, float *scale, int *zero)
{
    float mx = w[0], mn = w[0];
    for (int64_t i = 1; i < n; i++) {
        mx = w[i] > mx ? w[i] : mx;
        mn = w[i] < mn ? w[i] : mn;
    }
    float s = (mx - mn) / 15.0f;
    if (s < 1e-5f)
        s = 1e-5f;
    s = f16_round(s);
    float z = -nearbyintf(mn / s);
    *scale = s;
    *zero = z < 0 ? 0 : z > 15 ? 15 : (int)z;
}

static int int4_code(float w, float s, int z)
{
    float q = nearbyintf(w / s) + (float)z;
    return q < 0 ? 0 : q > 15 ? 15 : (int)q;
}

int qd_awq_qdq(float *dst, const float *src, int64_t n, qd_awq_grid grid)
{
    if (grid == QD_AWQ_GRID_INT4) {
        float s;
        int z;
        int4_group(src, n, &s, &z);
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)(int4_code(src[i], s, z) - z) * s;
        return QD_OK;
    }
    qd_type t = grid == QD_AWQ_GRID_Q4_1 ? QD_TYPE_Q4_1 : QD_TYPE_Q4_0;
    uint8_t buf[20 * 64];
    for (int64_t i = 0; i < n; i += 32 * 64) {
        int64_t m = n - i < 32 * 64 ? n - i : 32 * 64;
        int rc = qd_quantize_rows(t, src + i, buf, 1, m, NULL);
        if (rc < 0 || (rc = qd_dequantize_rows(t, buf, dst + i, 1, m)) < 0)
            return rc;
    }
    return QD_OK;
}

/* the whole matrix, row by row, group by group */
static int qdq_matrix(float *dst, const float *w, int64_t rows, int64_t cols, qd_awq_grid grid, int group)
{
    int64_t g = grid == QD_AWQ_GRID_INT4 ? group : cols;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c += g) {
            int rc = qd_awq_qdq(dst + r * cols + c, w + r * cols + c, g, grid);
            if (rc < 0)
                return rc;
        }
    return QD_OK;
}

/* ---------------------------------------------------------------- calibration: mean |x| and Gram matrices */

enum { SITE_ATTN = 0, SITE_O, SITE_FFN, SITE_DOWN, N_SITES };

typedef struct gram {
    int64_t cols;
    double *g;       /* cols x cols, upper and lower filled at the end */
} gram;

typedef struct collector {
    qd_actstats *stats;
    gram *grams;     /* n_layers * N_SITES */
    int n_layers;
    int status;
} collector;

static int site_slot(qd_llama_site s)
{
    switch (s) {
    case QD_SITE_ATTN_Q: return SITE_ATTN;
    case QD_SITE_ATTN_OUT: return SITE_O;
    case QD_SITE_FFN_GATE: return SITE_FFN;
    case QD_SITE_FFN_DOWN: return SITE_DOWN;
    default: return -1; /* k, v, up: same input as q / gate; the classifier: not scaled */
    }
}

static void observe(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w, const float *x, int n)
{
    collector *c = user;
    qd_actstats_observe(c->stats, layer, site, w, x, n);
    int k = site_slot(site);
    if (c->status < 0 || k < 0 || layer < 0 || layer >= c->n_layers)
        return;
    gram *g = &c->grams[layer * N_SITES + k];
    int64_t cols = w->cols;
    if (!g->g) {
        g->g = qd_calloc((size_t)(cols * cols), sizeof(double));
        g->cols = cols;
        if (!g->g) {
            c->status = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "AWQ: out of memory for the Gram matrices");
            return;
        }
    }
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * cols;
        for (int64_t i = 0; i < cols; i++) {
            double xi = xr[i];
            double *gi = g->g + i * cols;
            for (int64_t j = i; j < cols; j++)
                gi[j] += xi * xr[j];
        }
    }
}

static void grams_free(gram *g, int n)
{
    for (int i = 0; g && i < n; i++)
        qd_free(g[i].g);
    qd_free(g);
}

/* Run the model over the set with the collector installed; the checks are qd_actstats_collect's. */
static int collect(collector *c, const qd_llama_model *m, const qd_valset *set, int max_seqs, int n_threads,
                   uint32_t *n_used)
{
    uint32_t n_seqs;
    int max_len;
    int rc = qd_calib_span(set, m, max_seqs, &n_seqs, &max_len);
    if (rc < 0)
        return rc;
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.n_threads = n_threads;
    co.n_ctx = max_len;
    qd_llama_ctx *ctx = NULL;
    float *last = NULL;
    if ((rc = qd_actstats_new(&c->stats)) < 0 || (rc = qd_llama_ctx_new(&ctx, m, &co)) < 0)
        goto done;
    c->n_layers = m->cfg.n_layers;
    c->grams = qd_calloc((size_t)c->n_layers * N_SITES, sizeof(gram));
    last = qd_mallocarray((size_t)m->cfg.vocab, sizeof(float));
    if (!c->grams || !last) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "calibration: out of memory");
        goto done;
    }
    qd_llama_ctx_set_observer(ctx, observe, c);
    for (uint32_t i = 0; i < n_seqs; i++) {
        qd_llama_reset(ctx);
        if ((rc = qd_llama_eval(ctx, set->tokens + set->offs[i], (int)set->lens[i], NULL, last)) < 0)
            goto done;
        if ((rc = c->status) < 0 || (rc = qd_actstats_status(c->stats)) < 0)
            goto done;
    }
    for (int i = 0; i < c->n_layers * N_SITES; i++) { /* mirror the upper triangle */
        gram *g = &c->grams[i];
        for (int64_t a = 0; g->g && a < g->cols; a++)
            for (int64_t b = 0; b < a; b++)
                g->g[a * g->cols + b] = g->g[b * g->cols + a];
    }
    *n_used = n_seqs;
done:
    qd_free(last);
    qd_llama_ctx_free(ctx);
    return rc;
}

/* ---------------------------------------------------------------- errors */

/* sum_r d_r^T G d_r, with G scaled as diag(1/s) G diag(1/s) when s is given (inputs X / s) */
static double quad_err(const float *d, int64_t rows, int64_t cols, const double *G, const float *inv_s)
{
    double tot = 0;
    double *ds = qd_mallocarray((size_t)cols, sizeof(double));
    if (!ds)
        return INFINITY;
    for (int64_t r = 0; r < rows; r++) {
        const float *dr = d + r * cols;
        for (int64_t i = 0; i < cols; i++)
            ds[i] = inv_s ? (double)dr[i] * inv_s[i] : (double)dr[i];
        double acc = 0;
        for (int64_t i = 0; i < cols; i++) {
            if (ds[i] == 0)
                continue;
            const double *gi = G + i * cols;
            double t = 0;
            for (int64_t j = 0; j < cols; j++)
                t += gi[j] * ds[j];
            acc += ds[i] * t;
        }
        tot += acc;
    }
    qd_free(ds);
    return tot;
}

/* Error of quantizing the group's matrices with column scales s (NULL: none): W' = Q(W s) / s. */
static int group_err(double *out, qd_llama_tensor *const *ws, int nw, const double *G, const float *s,
                     qd_awq_grid grid, int group, float *tmp, float *tq)
{
    double tot = 0;
    for (int k = 0; k < nw; k++) {
        int64_t rows = ws[k]->rows, cols = ws[k]->cols;
        const float *w = ws[k]->data;
        for (int64_t i = 0; i < rows * cols; i++)
            tmp[i] = s ? w[i] * s[i % cols] : w[i];
        int rc = qdq_matrix(tq, tmp, rows, cols, grid, group);
        if (rc < 0)
            return rc;
        for (int64_t i = 0; i < rows * cols; i++)
            tq[i] = s ? w[i] - tq[i] / s[i % cols] : w[i] - tq[i];
        tot += quad_err(tq, rows, cols, G, NULL);
    }
    *out = tot;
    return QD_OK;
}

/* ---------------------------------------------------------------- clipping (AutoAWQ auto_clip) */

/* Clip w (already scaled; its inputs are X / s) row by row and group by group: max |w| of the group times
 * 1 - i/20, i = 0..9, keep the one whose quantized output error (x_g . (w_g - Q(w_g)))^2 is least. */
static int clip_matrix(float *w, int64_t rows, int64_t cols, const double *G, const float *inv_s, qd_awq_grid grid,
                       int group)
{
    int64_t g = grid == QD_AWQ_GRID_INT4 ? group : 32;
    float *cand = qd_mallocarray((size_t)g * 2, sizeof(float));
    double *Gs = qd_mallocarray((size_t)(g * g), sizeof(double));
    if (!cand || !Gs) {
        qd_free(cand);
        qd_free(Gs);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "AWQ clip: out of memory");
    }
    float *q = cand + g;
    int rc = QD_OK;
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
        for (int64_t a = 0; a < g; a++)
            for (int64_t b = 0; b < g; b++)
                Gs[a * g + b] = G[(c0 + a) * cols + c0 + b] * inv_s[c0 + a] * inv_s[c0 + b];
        for (int64_t r = 0; r < rows; r++) {
            float *wr = w + r * cols + c0;
            float mx = 0;
            for (int64_t i = 0; i < g; i++)
                mx = fabsf(wr[i]) > mx ? fabsf(wr[i]) : mx;
            if (mx == 0)
                continue;
            double best = INFINITY;
            float best_max = mx;
            for (int it = 0; it < 10; it++) {
                float lim = mx * (1.0f - (float)it / 20.0f);
                for (int64_t i = 0; i < g; i++)
                    cand[i] = wr[i] > lim ? lim : wr[i] < -lim ? -lim : wr[i];
                if ((rc = qd_awq_qdq(q, cand, g, grid)) < 0)
                    goto done;
                for (int64_t i = 0; i < g; i++)
                    q[i] = wr[i] - q[i];
                double e = 0;
                for (int64_t a = 0; a < g; a++) {
                    double t = 0;
                    for (int64_t b = 0; b < g; b++)
                        t += Gs[a * g + b] * q[b];
                    e += q[a] * t;
                }
                if (e < best) {
                    best = e;
                    best_max = lim;
                }
            }
            for (int64_t i = 0; i < g; i++)
                wr[i] = wr[i] > best_max ? best_max : wr[i] < -best_max ? -best_max : wr[i];
        }
    }
done:
    qd_free(cand);
    qd_free(Gs);
    return rc;
}

/* ---------------------------------------------------------------- the method */

void qd_awq_report_free(qd_awq_report *r)
{
    if (!r)
        return;
    qd_free(r->blocks);
    memset(r, 0, sizeof(*r));
}

static void scale_cols(qd_llama_tensor *t, const float *s)
{
    float *w = t->data;
    for (int64_t i = 0; i < t->rows * t->cols; i++)
        w[i] *= s[i % t->cols];
}

static void unscale_rows(qd_llama_tensor *t, const float *s)
{
    float *w = t->data;
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t c = 0; c < t->cols; c++)
            w[r * t->cols + c] /= s[r];
}

/* best s for one group; s gets the chosen scales (all 1 when alpha = 0 wins) */
static int search(qd_awq_block *blk, float *s, qd_llama_tensor *const *ws, int nw, const gram *G,
                  const qd_actstats_entry *st, const qd_awq_options *o, float *tmp, float *tq)
{
    int64_t cols = G->cols;
    int n_grid = o->n_grid > 0 ? o->n_grid : 20;
    float *cand = qd_mallocarray((size_t)cols, sizeof(float));
    if (!cand)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "AWQ: out of memory");
    int rc = QD_OK;
    double best = INFINITY;
    for (int64_t j = 0; j < cols; j++)
        s[j] = 1.0f;
    for (int k = 0; k < n_grid; k++) {
        double alpha = (double)k / n_grid, mx = 0, mn = INFINITY, e;
        for (int64_t j = 0; j < cols; j++) {
            double m = st->n_rows ? st->sum_abs[j] / (double)st->n_rows : 0;
            double v = k == 0 ? 1.0 : pow(m, alpha);
            v = v < 1e-4 ? 1e-4 : v;
            cand[j] = (float)v;
            mx = v > mx ? v : mx;
            mn = v < mn ? v : mn;
        }
        double norm = sqrt(mx * mn);
        for (int64_t j = 0; j < cols && k > 0; j++)
            cand[j] = (float)(cand[j] / norm);
        if ((rc = group_err(&e, ws, nw, G->g, k == 0 ? NULL : cand, o->grid, o->group, tmp, tq)) < 0)
            goto done;
        if (k == 0)
            blk->err_rtn = e;
        if (e < best) {
            best = e;
            blk->alpha = alpha;
            memcpy(s, cand, sizeof(float) * (size_t)cols);
            if (k == 0)
                for (int64_t j = 0; j < cols; j++)
                    s[j] = 1.0f;
        }
    }
    blk->err_awq = best;
done:
    qd_free(cand);
    return rc;
}

int qd_awq_apply(qd_llama_model **out, qd_awq_report *rep, const qd_llama_model *ref, const qd_valset *calib,
                 const qd_awq_options *opts)
{
    qd_awq_options o = QD_AWQ_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (o.grid != QD_AWQ_GRID_INT4)
        o.group = 32;
    else if (o.group == 0)
        o.group = 128;
    *out = NULL;
    if (rep)
        memset(rep, 0, sizeof(*rep));
    if (o.group != 32 && o.group != 64 && o.group != 128)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ: group size %d (32, 64 or 128)", o.group);
    const qd_llama_config *cfg = &ref->cfg;
    if (cfg->dim % o.group)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ: dim %d must be a multiple of the group %d", cfg->dim,
                            o.group);
    collector c;
    memset(&c, 0, sizeof(c));
    qd_llama_model *m = NULL;
    float *tmp = NULL, *tq = NULL, *s = NULL, *inv = NULL;
    qd_awq_block *blocks = NULL;
    int nb = 0, rc;
    uint32_t used = 0;
    if ((rc = qd_llama_dequantize(&m, ref)) < 0)
        goto done;
    if ((rc = collect(&c, m, calib, o.max_seqs, o.n_threads, &used)) < 0)
        goto done;
    size_t big = (size_t)(cfg->hidden_dim > cfg->dim ? cfg->hidden_dim : cfg->dim) * (size_t)cfg->dim;
    int64_t wide = cfg->hidden_dim > cfg->dim ? cfg->hidden_dim : cfg->dim;
    tmp = qd_mallocarray(big, sizeof(float));
    tq = qd_mallocarray(big, sizeof(float));
    s = qd_mallocarray((size_t)wide * 4, sizeof(float));
    inv = qd_mallocarray((size_t)wide, sizeof(float));
    blocks = qd_calloc((size_t)cfg->n_layers * 4, sizeof(*blocks));
    if (!tmp || !tq || !s || !inv || !blocks) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "AWQ: out of memory");
        goto done;
    }
    bool vo = cfg->n_kv_heads == cfg->n_heads; /* AutoAWQ scales v -> o only when their shapes match */
    for (int l = 0; l < cfg->n_layers; l++) {
        qd_llama_layer *L = &m->layers[l];
        char nm[64];
        qd_llama_tensor *ws[4][3];
        int nws[4];
        const gram *Gs[4];
        /* 1. search every group on the original weights, 2. fold, 3. clip the final weights (AutoAWQ's order) */
        for (int grp = 0; grp < 4; grp++) {
            qd_llama_tensor **w = ws[grp];
            qd_llama_site site;
            int slot;
            const char *gname;
            switch (grp) {
            case 0: w[0] = &L->wq; w[1] = &L->wk; w[2] = &L->wv; nws[grp] = 3; site = QD_SITE_ATTN_Q;
                slot = SITE_ATTN; gname = "qkv"; break;
            case 1: w[0] = &L->wo; nws[grp] = 1; site = QD_SITE_ATTN_OUT; slot = SITE_O; gname = "o"; break;
            case 2: w[0] = &L->w1; w[1] = &L->w3; nws[grp] = 2; site = QD_SITE_FFN_GATE; slot = SITE_FFN;
                gname = "gate_up"; break;
            default: w[0] = &L->w2; nws[grp] = 1; site = QD_SITE_FFN_DOWN; slot = SITE_DOWN; gname = "down"; break;
            }
            const gram *G = Gs[grp] = &c.grams[l * N_SITES + slot];
            const qd_actstats_entry *st = qd_actstats_find(c.stats, qd_llama_site_name(nm, sizeof(nm), l, site));
            if (!G->g || !st) {
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ: no activations seen at %s", nm);
                goto done;
            }
            qd_awq_block *blk = &blocks[nb + grp];
            blk->layer = l;
            snprintf(blk->group, sizeof(blk->group), "%s", gname);
            float *sg = s + grp * wide;
            if (G->cols % o.group) { /* rows the grid cannot hold (ffn_down of 172 columns): stays f32, as in
                                      * qd_llama_quantize() */
                for (int64_t j = 0; j < G->cols; j++)
                    sg[j] = 1.0f;
                blk->skipped = true;
            } else if (grp != 1 || vo) {
                if ((rc = search(blk, sg, w, nws[grp], G, st, &o, tmp, tq)) < 0)
                    goto done;
            } else {
                for (int64_t j = 0; j < G->cols; j++)
                    sg[j] = 1.0f;
                if ((rc = group_err(&blk->err_rtn, w, nws[grp], G->g, NULL, o.grid, o.group, tmp, tq)) < 0)
                    goto done;
                blk->err_awq = blk->err_rtn;
            }
        }
        for (int grp = 0; grp < 4; grp++) {
            /* fold: the preceding op's output channel j is divided by s_j, the group's column j multiplied */
            const float *sg = s + grp * wide;
            if (!(blocks[nb + grp].alpha > 0))
                continue;
            if (grp == 0 || grp == 2) {
                float *nw_ = (grp == 0 ? L->attn_norm : L->ffn_norm).data;
                for (int64_t j = 0; j < Gs[grp]->cols; j++)
                    nw_[j] /= sg[j];
            } else
                unscale_rows(grp == 1 ? &L->wv : &L->w3, sg);
            for (int k = 0; k < nws[grp]; k++)
                scale_cols(ws[grp][k], sg);
        }
        for (int grp = 0; grp < 4; grp++) {
            /* clipping on the final weights, whose inputs are X / s; the stored error is measured in that frame:
             * sum_t ||W x/s - Q(clip(W)) x/s||^2 with W the folded weights before clipping */
            const gram *G = Gs[grp];
            const float *sg = s + grp * wide;
            for (int64_t j = 0; j < G->cols; j++)
                inv[j] = 1.0f / sg[j];
            double tot = 0;
            for (int k = 0; k < nws[grp]; k++) {
                qd_llama_tensor *t = ws[grp][k];
                int64_t rows = t->rows, cols = t->cols;
                memcpy(tmp, t->data, sizeof(float) * (size_t)(rows * cols));
                if (blocks[nb + grp].skipped)
                    continue;
                if (o.clip && !(grp == 0 && k < 2) && /* not q, k */
                    (rc = clip_matrix(t->data, rows, cols, G->g, inv, o.grid, o.group)) < 0)
                    goto done;
                if ((rc = qdq_matrix(tq, t->data, rows, cols, o.grid, o.group)) < 0)
                    goto done;
                for (int64_t i = 0; i < rows * cols; i++)
                    tq[i] = tmp[i] - tq[i];
                tot += quad_err(tq, rows, cols, G->g, inv);
            }
            blocks[nb + grp].err_final = tot;
        }
        nb += 4;
    }
    if (rep) {
        rep->blocks = blocks;
        rep->n_blocks = nb;
        rep->tokens = qd_actstats_tokens(c.stats);
        rep->seqs = used;
        blocks = NULL;
    }
    *out = m;
    m = NULL;
done:
    qd_free(blocks);
    qd_free(tmp);
    qd_free(tq);
    qd_free(s);
    qd_free(inv);
    grams_free(c.grams, c.n_layers * N_SITES);
    qd_actstats_free(c.stats);
    qd_llama_free(m);
    return rc;
}

/* ---------------------------------------------------------------- the quantized variant */

int qd_awq_quantize(qd_llama_model **out, const qd_llama_model *f32, const qd_awq_options *o)
{
    *out = NULL;
    if (o->grid != QD_AWQ_GRID_INT4) {
        qd_llama_quant_options qo = {o->grid == QD_AWQ_GRID_Q4_1 ? QD_TYPE_Q4_1 : QD_TYPE_Q4_0, false,
                                     QD_TYPE_COUNT};
        return qd_llama_quantize(out, f32, &qo);
    }
    int group = o->group ? o->group : 128;
    qd_llama_model *m = NULL;
    int rc = qd_llama_dequantize(&m, f32);
    if (rc < 0)
        return rc;
    for (int i = 0; i < qd_llama_tensor_count(m); i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        if (!qd_calib_is_block_linear(name))
            continue;
        if (!qd_awq_packable(t->rows, t->cols, group))
            continue; /* stays f32 (qd_awq_export writes it unconverted) */
        float *w = t->data;
        for (int64_t k = 0; k < t->rows * t->cols; k += group)
            qd_awq_qdq(w + k, w + k, group, QD_AWQ_GRID_INT4);
    }
    *out = m;
    return QD_OK;
}

/* ---------------------------------------------------------------- AutoAWQ packing */

bool qd_awq_packable(int64_t rows, int64_t cols, int group)
{
    return group > 0 && rows % 8 == 0 && cols % group == 0;
}

static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

int qd_awq_pack(int32_t **qweight, int32_t **qzeros, uint16_t **scales, float *deq, const float *w, int64_t rows,
                int64_t cols, int group)
{
    *qweight = NULL;
    *qzeros = NULL;
    *scales = NULL;
    if (rows % 8 || group <= 0 || cols % group)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ pack: [%lld, %lld] needs out %% 8 == 0 and in %% %d == 0",
                            (long long)rows, (long long)cols, group);
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ pack: value %lld is not finite", (long long)i);
    int64_t ng = cols / group;
    uint32_t *qw = qd_calloc((size_t)(cols * rows / 8), 4);
    uint32_t *qz = qd_calloc((size_t)(ng * rows / 8), 4);
    uint16_t *sc = qd_calloc((size_t)(ng * rows), 2);
    if (!qw || !qz || !sc) {
        qd_free(qw);
        qd_free(qz);
        qd_free(sc);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "AWQ pack: out of memory");
    }
    /* int32 word (i, j) holds outputs 8j .. 8j+7 of input i; output 8j + awq_order[k] sits in nibble k */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t gi = 0; gi < ng; gi++) {
            const float *wg = w + r * cols + gi * group;
            float s;
            int z;
            int4_group(wg, group, &s, &z);
            uint16_t h;
            qd_quantize_rows(QD_TYPE_F16, &s, &h, 1, 1, NULL);
            sc[gi * rows + r] = h;
            int64_t word = r / 8;
            int nib = 0;
            for (int k = 0; k < 8; k++)
                if (awq_order[k] == r % 8)
                    nib = k;
            qz[gi * (rows / 8) + word] |= (uint32_t)z << (4 * nib);
            for (int64_t c = 0; c < group; c++) {
                int q = int4_code(wg[c], s, z);
                int64_t i = gi * group + c;
                qw[i * (rows / 8) + word] |= (uint32_t)q << (4 * nib);
                if (deq)
                    deq[r * cols + i] = (float)(q - z) * s;
            }
        }
    *qweight = (int32_t *)qw;
    *qzeros = (int32_t *)qz;
    *scales = sc;
    return QD_OK;
}

int qd_awq_unpack(float *w, const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t rows,
                  int64_t cols, int group)
{
    if (rows % 8 || group <= 0 || cols % group)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "AWQ unpack: bad shape [%lld, %lld] group %d", (long long)rows,
                            (long long)cols, group);
    int64_t w8 = rows / 8;
    for (int64_t i = 0; i < cols; i++) {
        int64_t gi = i / group;
        for (int64_t j = 0; j < w8; j++) {
            uint32_t qv = (uint32_t)qweight[i * w8 + j], zv = (uint32_t)qzeros[gi * w8 + j];
            for (int k = 0; k < 8; k++) {
                int64_t r = 8 * j + awq_order[k];
                int q = (int)((qv >> (4 * k)) & 15), z = (int)((zv >> (4 * k)) & 15);
                float s;
                qd_dequantize_rows(QD_TYPE_F16, &scales[gi * rows + r], &s, 1, 1);
                w[r * cols + i] = (float)(q - z) * s;
            }
        }
    }
    return QD_OK;
}

/* ---------------------------------------------------------------- outliers */

int qd_llama_add_outliers(qd_llama_model **out, const qd_llama_model *src, int n_channels, float factor,
                          uint64_t seed)
{
    *out = NULL;
    int dim = src->cfg.dim;
    if (n_channels < 1 || n_channels > dim || !(factor > 0) || !isfinite(factor))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "outliers: %d channels of %d, factor %g", n_channels, dim,
                            (double)factor);
    qd_llama_model *m = NULL;
    int rc = qd_llama_dequantize(&m, src);
    if (rc < 0)
        return rc;
    bool *pick = qd_calloc((size_t)dim, sizeof(bool));
    if (!pick) {
        qd_llama_free(m);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "outliers: out of memory");
    }
    uint64_t st = seed ^ 0x0a7c1e5ull;
    for (int n = 0; n < n_channels;) {
        st += 0x9e3779b97f4a7c15ull;
        uint64_t z = st;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        int j = (int)(z % (uint64_t)dim);
        if (!pick[j]) {
            pick[j] = true;
            n++;
        }
    }
    for (int l = 0; l < m->cfg.n_layers; l++) {
        qd_llama_layer *L = &m->layers[l];
        qd_llama_tensor *att[3] = {&L->wq, &L->wk, &L->wv}, *ffn[2] = {&L->w1, &L->w3};
        for (int j = 0; j < dim; j++) {
            if (!pick[j])
                continue;
            ((float *)L->attn_norm.data)[j] *= factor;
            ((float *)L->ffn_norm.data)[j] *= factor;
            for (int k = 0; k < 3; k++)
                for (int64_t r = 0; r < att[k]->rows; r++)
                    ((float *)att[k]->data)[r * dim + j] /= factor;
            for (int k = 0; k < 2; k++)
                for (int64_t r = 0; r < ffn[k]->rows; r++)
                    ((float *)ffn[k]->data)[r * dim + j] /= factor;
        }
    }
    qd_free(pick);
    *out = m;
    return QD_OK;
}
