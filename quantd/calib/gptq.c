/*
 * gptq.c - GPTQ (Frantar et al. 2022) over the reference runtime's matmul inputs.
 *
 * Per matrix W [rows = out][cols = in] with Hessian H = (2/N) sum x x^T (double):
 *   1. dead columns (H_ii == 0): H_ii = 1 and W[:, i] = 0 (as the reference gptq.py does);
 *   2. act-order: columns by decreasing diag(H) (stable on ties), H and W permuted alike;
 *   3. dampening H_ii += damp * mean(diag H);
 *   4. U = the upper Cholesky factor of H^-1 (H^-1 = U^T U), via cholesky(H), its inverse, cholesky again;
 *   5. columns in lazy blocks of `block`: q_i = quant(w_i); e = (w_i - q_i) / U_ii; the block's later columns
 *      -= e U[i, j]; after the block, the columns to its right -= E U[block, right].
 * Group parameters are found when a group's first column comes up, from W as it stands then (earlier blocks'
 * updates included, the current block's not: the reference's behaviour). Groups are consecutive in processing order
 * for the integer grid (AutoGPTQ's g_idx = position // group), and the natural 32-column blocks of the row for the
 * GGUF grids (so that with act-order each ggml block still holds one scale).
 *
 * Difference from the reference: scales (and Q4_1's min) are rounded to f16 before the columns are quantized, so
 * the error fed forward is the error of the values actually stored; and values are computed exactly as the ggml
 * dequantizers and the AutoGPTQ loaders compute them (this file has no multiply-add contraction).
 */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/gptq.h"

/* ---- f16 ------------------------------------------------------------------------------------------------------ */

static uint16_t f16_bits(float x)
{
    uint16_t h = 0;
    qd_quantize_rows(QD_TYPE_F16, &x, &h, 1, 1, NULL);
    return h;
}

static float f16_value(uint16_t h)
{
    float f = 0;
    qd_dequantize_rows(QD_TYPE_F16, &h, &f, 1, 1);
    return f;
}

static float f16_round(float x) { return f16_value(f16_bits(x)); }

/* ---- grids ---------------------------------------------------------------------------------------------------- */

typedef struct grid {
    qd_type type;   /* QD_TYPE_COUNT: integer grid */
    int maxq;       /* largest level */
    bool sym;
} grid;

/* The parameters of one group of one row from its values. */
static void find_params(const grid *g, const double *x, int n, float *scale, float *zero)
{
    if (g->type == QD_TYPE_COUNT) {
        double xmin = 0, xmax = 0;
        for (int k = 0; k < n; k++) {
            if (x[k] < xmin)
                xmin = x[k];
            if (x[k] > xmax)
                xmax = x[k];
        }
        if (g->sym) {
            if (-xmin > xmax)
                xmax = -xmin;
            if (xmin < 0)
                xmin = -xmax;
        }
        if (xmin == 0 && xmax == 0) {
            xmin = -1;
            xmax = 1;
        }
        float s = f16_round((float)((xmax - xmin) / g->maxq));
        if (!(s > 0))
            s = f16_value(1); /* the smallest f16 subnormal: a group whose range underflows f16 */
        double z = g->sym ? (g->maxq + 1) / 2 : nearbyint(-xmin / s);
        if (z > g->maxq)
            z = g->maxq;
        if (z < 1) {
            /* AutoGPTQ's v1 checkpoints store zero - 1 and cannot hold a zero point of 0 (a group with no negative
             * value): keep zero = 1 and stretch the scale so the group's maximum stays on the grid */
            z = 1;
            s = f16_round((float)(xmax / (g->maxq - 1)));
            if (!(s > 0))
                s = f16_value(1);
        }
        *scale = s;
        *zero = (float)z;
        return;
    }
    if (g->type == QD_TYPE_Q4_1) { /* min/max, as quantize_row_q4_1_ref */
        double mn = x[0], mx = x[0];
        for (int k = 1; k < n; k++) {
            if (x[k] < mn)
                mn = x[k];
            if (x[k] > mx)
                mx = x[k];
        }
        *scale = f16_round((float)((mx - mn) / 15.0));
        *zero = f16_round((float)mn);
        return;
    }
    /* Q4_0, Q5_0: the signed value of largest magnitude (first wins) maps to the lowest level; Q8_0: amax / 127 */
    double amax = 0, max = 0;
    for (int k = 0; k < n; k++)
        if (fabs(x[k]) > amax) {
            amax = fabs(x[k]);
            max = x[k];
        }
    float d = g->type == QD_TYPE_Q8_0 ? (float)(amax / 127.0) : (float)(max / (g->type == QD_TYPE_Q4_0 ? -8.0 : -16.0));
    *scale = f16_round(d);
    *zero = g->type == QD_TYPE_Q8_0 ? 128.0f : (float)((g->maxq + 1) / 2);
}

/* Level of x and the value it stands for, computed as the dequantizer computes it. */
static inline int quant1(const grid *g, double x, float scale, float zero, float *val)
{
    int q;
    if (g->type == QD_TYPE_Q4_1) {
        q = scale > 0 ? (int)nearbyint((x - (double)zero) / scale) : 0;
        q = q < 0 ? 0 : q > 15 ? 15 : q;
        float t = scale * (float)q; /* ggml: x = d*q + m, two roundings */
        *val = t + zero;
        return q;
    }
    int z = (int)zero;
    q = scale != 0 ? (int)nearbyint(x / scale) + z : z;
    q = q < 0 ? 0 : q > g->maxq ? g->maxq : q;
    *val = (float)(q - z) * scale;
    return q;
}

void qd_gptq_matrix_free(qd_gptq_matrix *m)
{
    if (!m)
        return;
    qd_free(m->deq);
    qd_free(m->q);
    qd_free(m->scale);
    qd_free(m->zero);
    qd_free(m->g_idx);
    qd_free(m->blocks);
    memset(m, 0, sizeof(*m));
}

static int check_params(grid *g, int *group, const qd_gptq_params *p, int64_t cols)
{
    g->type = p->gguf_type;
    g->sym = p->sym;
    switch (p->gguf_type) {
    case QD_TYPE_COUNT:
        if (p->bits != 2 && p->bits != 3 && p->bits != 4 && p->bits != 8)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: %d bits (2, 3, 4 or 8)", p->bits);
        g->maxq = (1 << p->bits) - 1;
        *group = p->group_size > 0 ? p->group_size : (int)cols;
        break;
    case QD_TYPE_Q4_0: g->maxq = 15; *group = 32; break;
    case QD_TYPE_Q4_1: g->maxq = 15; *group = 32; break;
    case QD_TYPE_Q5_0: g->maxq = 31; *group = 32; break;
    case QD_TYPE_Q8_0: g->maxq = 255; *group = 32; break;
    default:
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: GGUF grid %s is not supported (Q4_0, Q4_1, Q5_0, Q8_0)",
                            qd_type_traits_get(p->gguf_type) ? qd_type_traits_get(p->gguf_type)->name : "?");
    }
    if (cols < 1 || *group < 1 || cols % *group)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: a row of %lld does not split into groups of %d",
                            (long long)cols, *group);
    return QD_OK;
}

static int alloc_matrix(qd_gptq_matrix *m, int64_t rows, int64_t cols, int group)
{
    memset(m, 0, sizeof(*m));
    m->rows = rows;
    m->cols = cols;
    m->group_size = group;
    m->n_groups = (int)(cols / group);
    size_t n = (size_t)rows * (size_t)cols, ng = (size_t)rows * (size_t)m->n_groups;
    m->deq = qd_mallocarray(n, sizeof(float));
    m->q = qd_mallocarray(n, 1);
    m->scale = qd_calloc(ng, sizeof(float));
    m->zero = qd_calloc(ng, sizeof(float));
    m->g_idx = qd_mallocarray((size_t)cols, sizeof(int32_t));
    if (!m->deq || !m->q || !m->scale || !m->zero || !m->g_idx) {
        qd_gptq_matrix_free(m);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory for a %lldx%lld matrix", (long long)rows,
                            (long long)cols);
    }
    return QD_OK;
}

/* The ggml blocks of a GGUF-grid result (layouts of FORMATS.md 3.1). */
static int pack_blocks(qd_gptq_matrix *m, qd_type t)
{
    size_t rs = qd_row_size(t, m->cols);
    m->blocks_len = rs * (size_t)m->rows;
    m->blocks = qd_calloc(m->blocks_len ? m->blocks_len : 1, 1);
    if (!m->blocks)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory");
    for (int64_t r = 0; r < m->rows; r++) {
        uint8_t *o = m->blocks + (size_t)r * rs;
        for (int b = 0; b < m->n_groups; b++) {
            const uint8_t *q = m->q + (size_t)r * (size_t)m->cols + (size_t)b * 32;
            uint16_t d = f16_bits(m->scale[(size_t)r * (size_t)m->n_groups + (size_t)b]);
            memcpy(o, &d, 2);
            o += 2;
            if (t == QD_TYPE_Q4_1) {
                uint16_t mm = f16_bits(m->zero[(size_t)r * (size_t)m->n_groups + (size_t)b]);
                memcpy(o, &mm, 2);
                o += 2;
            }
            if (t == QD_TYPE_Q8_0) {
                for (int j = 0; j < 32; j++)
                    o[j] = (uint8_t)(int8_t)(q[j] - 128);
                o += 32;
                continue;
            }
            if (t == QD_TYPE_Q5_0) {
                uint32_t qh = 0;
                for (int j = 0; j < 32; j++)
                    qh |= (uint32_t)((q[j] >> 4) & 1) << j;
                memcpy(o, &qh, 4);
                o += 4;
            }
            for (int j = 0; j < 16; j++)
                o[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
            o += 16;
        }
    }
    return QD_OK;
}

/* ---- Cholesky ------------------------------------------------------------------------------------------------- */

/* In place: a (n x n, symmetric) -> its lower Cholesky factor L (a = L L^T), upper part zeroed. -1 if not PD. */
static int cholesky_lower(double *a, int64_t n)
{
    for (int64_t j = 0; j < n; j++) {
        double s = a[j * n + j];
        for (int64_t k = 0; k < j; k++)
            s -= a[j * n + k] * a[j * n + k];
        if (!(s > 0) || !isfinite(s))
            return -1;
        double d = sqrt(s);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double t = a[i * n + j];
            for (int64_t k = 0; k < j; k++)
                t -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = t / d;
        }
        for (int64_t i = 0; i < j; i++)
            a[i * n + j] = 0;
    }
    return 0;
}

/* h (n x n, PD) -> u, upper with h^-1 = u^T u. Scratch: t (n x n). -1 if h is not PD. */
static int upper_chol_of_inverse(double *h, double *t, int64_t n)
{
    if (cholesky_lower(h, n))
        return -1;
    /* t = L^-1 (lower), column by column by forward substitution */
    memset(t, 0, sizeof(double) * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) {
        t[j * n + j] = 1.0 / h[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0;
            for (int64_t k = j; k < i; k++)
                s -= h[i * n + k] * t[k * n + j];
            t[i * n + j] = s / h[i * n + i];
        }
    }
    /* h = H^-1 = L^-T L^-1 = t^T t */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t k = i; k < n; k++) /* t[k][i], t[k][j] nonzero for k >= max(i, j) = i */
                s += t[k * n + i] * t[k * n + j];
            h[i * n + j] = s;
            h[j * n + i] = s;
        }
    if (cholesky_lower(h, n))
        return -1;
    /* u = M^T where H^-1 = M M^T */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            h[i * n + j] = h[j * n + i];
            h[j * n + i] = 0;
        }
    return 0;
}

/* ---- one matrix ----------------------------------------------------------------------------------------------- */

typedef struct gctx {
    grid g;
    int group;
    bool natural;          /* GGUF: groups are the natural 32-column blocks */
    int64_t rows, cols;
    int32_t *perm, *invperm;
    bool *have;            /* group params found */
} gctx;

/* group of processing position pos */
static inline int group_of(const gctx *c, int64_t pos)
{
    return (int)((c->natural ? c->perm[pos] : pos) / c->group);
}

/* Find the params of group G for every row from W (permuted space, rows x cols). */
static void group_params(gctx *c, qd_gptq_matrix *m, const double *W, int G, double *tmp)
{
    for (int64_t r = 0; r < c->rows; r++) {
        const double *w = W + r * c->cols;
        for (int k = 0; k < c->group; k++) {
            int64_t col = (int64_t)G * c->group + k;
            tmp[k] = c->natural ? w[c->invperm[col]] : w[col];
        }
        find_params(&c->g, tmp, c->group, &m->scale[r * m->n_groups + G], &m->zero[r * m->n_groups + G]);
    }
    c->have[G] = true;
}

static int run_gptq(qd_gptq_matrix *out, const float *w, int64_t rows, int64_t cols, double *h,
                    const qd_gptq_params *p, bool feedback)
{
    gctx c;
    int rc;
    memset(&c, 0, sizeof(c));
    if (rows < 1 || cols < 1)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: empty matrix");
    if ((rc = check_params(&c.g, &c.group, p, cols)))
        return rc;
    c.rows = rows;
    c.cols = cols;
    c.natural = p->gguf_type != QD_TYPE_COUNT;
    int bs = p->block > 0 ? p->block : 128;
    for (int64_t k = 0; k < rows * cols; k++)
        if (!isfinite(w[k]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: non-finite weight at row %lld column %lld",
                                (long long)(k / cols), (long long)(k % cols));
    if ((rc = alloc_matrix(out, rows, cols, c.group)))
        return rc;
    size_t n = (size_t)rows * (size_t)cols;
    double *W = qd_mallocarray(n, sizeof(double));
    double *W1 = qd_mallocarray((size_t)rows * (size_t)bs, sizeof(double));
    double *E = qd_mallocarray((size_t)rows * (size_t)bs, sizeof(double));
    double *T = feedback ? qd_mallocarray((size_t)(cols * cols), sizeof(double)) : NULL;
    double *HP = feedback ? qd_mallocarray((size_t)(cols * cols), sizeof(double)) : NULL;
    double *tmp = qd_mallocarray((size_t)c.group, sizeof(double));
    float *Qv = qd_mallocarray(n, sizeof(float));
    uint8_t *Ql = qd_mallocarray(n, 1);
    c.perm = qd_mallocarray((size_t)cols, sizeof(int32_t));
    c.invperm = qd_mallocarray((size_t)cols, sizeof(int32_t));
    c.have = qd_calloc((size_t)out->n_groups, sizeof(bool));
    if (!W || !W1 || !E || (feedback && (!T || !HP)) || !tmp || !Qv || !Ql || !c.perm || !c.invperm || !c.have) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory for a %lldx%lld matrix", (long long)rows,
                          (long long)cols);
        goto done;
    }
    for (size_t k = 0; k < n; k++)
        W[k] = w[k];
    for (int64_t i = 0; i < cols; i++)
        c.perm[i] = (int32_t)i;
    if (feedback) {
        /* dead columns */
        for (int64_t i = 0; i < cols; i++) {
            if (h[i * cols + i] == 0) {
                h[i * cols + i] = 1;
                for (int64_t r = 0; r < rows; r++)
                    W[r * cols + i] = 0;
                out->n_dead++;
            }
        }
        if (p->act_order) { /* decreasing diag(H), stable (insertion sort on ranks; cols is modest) */
            for (int64_t i = 1; i < cols; i++) {
                int32_t v = c.perm[i];
                int64_t j = i - 1;
                while (j >= 0 && h[(int64_t)c.perm[j] * cols + c.perm[j]] < h[(int64_t)v * cols + v]) {
                    c.perm[j + 1] = c.perm[j];
                    j--;
                }
                c.perm[j + 1] = v;
            }
        }
        /* permuted copies: HP = H[perm][perm], W columns permuted */
        for (int64_t i = 0; i < cols; i++)
            for (int64_t j = 0; j < cols; j++)
                HP[i * cols + j] = h[(int64_t)c.perm[i] * cols + c.perm[j]];
        for (int64_t r = 0; r < rows; r++) {
            double *wr = W + r * cols;
            for (int64_t i = 0; i < cols; i++)
                T[i] = wr[c.perm[i]];
            memcpy(wr, T, sizeof(double) * (size_t)cols);
        }
        double mean = 0;
        for (int64_t i = 0; i < cols; i++)
            mean += HP[i * cols + i];
        mean /= (double)cols;
        double damp = (p->damp >= 0 ? p->damp : 0.01) * mean;
        for (int64_t i = 0; i < cols; i++)
            HP[i * cols + i] += damp;
        if (upper_chol_of_inverse(HP, T, cols)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: the Hessian is not positive definite after dampening "
                              "(%g of the mean diagonal %g): raise the dampening or use more calibration data",
                              p->damp, mean);
            goto done;
        }
    }
    for (int64_t i = 0; i < cols; i++)
        c.invperm[c.perm[i]] = (int32_t)i;
    for (int64_t i1 = 0; i1 < cols; i1 += bs) {
        int64_t i2 = i1 + bs < cols ? i1 + bs : cols, cnt = i2 - i1;
        for (int64_t r = 0; r < rows; r++)
            memcpy(W1 + r * bs, W + r * cols + i1, sizeof(double) * (size_t)cnt);
        for (int64_t i = 0; i < cnt; i++) {
            int64_t pos = i1 + i;
            int G = group_of(&c, pos);
            if (!c.have[G])
                group_params(&c, out, W, G, tmp);
            double d = feedback ? HP[pos * cols + pos] : 1;
            for (int64_t r = 0; r < rows; r++) {
                double x = W1[r * bs + i];
                float v;
                size_t gi = (size_t)r * (size_t)out->n_groups + (size_t)G;
                int q = quant1(&c.g, x, out->scale[gi], out->zero[gi], &v);
                Ql[r * cols + pos] = (uint8_t)q;
                Qv[r * cols + pos] = v;
                if (!feedback)
                    continue;
                double err = (x - (double)v) / d;
                E[r * bs + i] = err;
                const double *u = HP + pos * cols;
                double *w1 = W1 + r * bs;
                for (int64_t j = i + 1; j < cnt; j++)
                    w1[j] -= err * u[i1 + j];
            }
        }
        if (!feedback)
            continue;
        /* the columns right of the block: W[:, i2:] -= E U[i1:i2, i2:] */
        for (int64_t r = 0; r < rows; r++) {
            double *wr = W + r * cols;
            const double *er = E + r * bs;
            for (int64_t k = 0; k < cnt; k++) {
                double e = er[k];
                if (e == 0)
                    continue;
                const double *u = HP + (i1 + k) * cols;
                for (int64_t j = i2; j < cols; j++)
                    wr[j] -= e * u[j];
            }
        }
    }
    /* back to the natural column order */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < cols; i++) {
            out->deq[r * cols + c.perm[i]] = Qv[r * cols + i];
            out->q[r * cols + c.perm[i]] = Ql[r * cols + i];
        }
    for (int64_t col = 0; col < cols; col++)
        out->g_idx[col] = c.natural ? (int32_t)(col / c.group) : (int32_t)(c.invperm[col] / c.group);
    if (c.natural)
        rc = pack_blocks(out, p->gguf_type);
done:
    qd_free(W);
    qd_free(W1);
    qd_free(E);
    qd_free(T);
    qd_free(HP);
    qd_free(tmp);
    qd_free(Qv);
    qd_free(Ql);
    qd_free(c.perm);
    qd_free(c.invperm);
    qd_free(c.have);
    if (rc)
        qd_gptq_matrix_free(out);
    return rc;
}

int qd_gptq_quantize_matrix(qd_gptq_matrix *out, const float *w, int64_t rows, int64_t cols, double *h,
                            const qd_gptq_params *p)
{
    return run_gptq(out, w, rows, cols, h, p, true);
}

int qd_gptq_rtn_matrix(qd_gptq_matrix *out, const float *w, int64_t rows, int64_t cols, const qd_gptq_params *p)
{
    qd_gptq_params q = *p;
    q.act_order = false;
    return run_gptq(out, w, rows, cols, NULL, &q, false);
}

double qd_gptq_output_error(const float *w, const float *q, int64_t rows, int64_t cols, const double *h)
{
    double total = 0;
    double *d = qd_mallocarray((size_t)cols, sizeof(double));
    if (!d)
        return NAN;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            d[i] = (double)w[r * cols + i] - (double)q[r * cols + i];
        for (int64_t i = 0; i < cols; i++) {
            if (d[i] == 0)
                continue;
            double s = 0;
            const double *hi = h + i * cols;
            for (int64_t j = 0; j < cols; j++)
                s += hi[j] * d[j];
            total += d[i] * s;
        }
    }
    qd_free(d);
    return total;
}

/* ---- whole model ---------------------------------------------------------------------------------------------- */

/* the Hessians of one block: one per distinct input (q/k/v share one, gate/up share one) */
enum { H_ATTN_IN, H_ATTN_OUT, H_FFN_IN, H_FFN_DOWN, H_COUNT };

typedef struct hcollect {
    int layer;
    int only;              /* collect this slot only (true sequential), or -1 */
    double *h[H_COUNT];
    int64_t cols[H_COUNT];
    int64_t n[H_COUNT];
    int status;
} hcollect;

static int h_slot(qd_llama_site s)
{
    switch (s) {
    case QD_SITE_ATTN_Q: return H_ATTN_IN;
    case QD_SITE_ATTN_OUT: return H_ATTN_OUT;
    case QD_SITE_FFN_GATE: return H_FFN_IN;
    case QD_SITE_FFN_DOWN: return H_FFN_DOWN;
    default: return -1; /* K, V, UP see the same input as Q or GATE; the classifier is not GPTQ'd */
    }
}

static void observe(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w, const float *x, int n)
{
    hcollect *hc = user;
    int s = h_slot(site);
    if (layer != hc->layer || s < 0 || hc->status < 0 || (hc->only >= 0 && s != hc->only))
        return;
    int64_t c = w->cols;
    if (!hc->h[s]) {
        hc->h[s] = qd_calloc((size_t)(c * c), sizeof(double));
        hc->cols[s] = c;
        if (!hc->h[s]) {
            hc->status = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory for a %lldx%lld Hessian",
                                      (long long)c, (long long)c);
            return;
        }
    }
    double *H = hc->h[s];
    for (int p = 0; p < n; p++) {
        const float *xp = x + (size_t)p * (size_t)c;
        for (int64_t i = 0; i < c; i++) {
            double xi = xp[i];
            if (xi == 0)
                continue;
            double *hi = H + i * c;
            for (int64_t j = i; j < c; j++)
                hi[j] += xi * (double)xp[j];
        }
    }
    hc->n[s] += n;
}

void qd_gptq_run_free(qd_gptq_run *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_layers; i++) {
        qd_gptq_matrix_free(&r->layers[i].m);
        qd_free(r->layers[i].h);
    }
    qd_free(r->layers);
    qd_llama_free(r->model);
    qd_free(r);
}

const qd_gptq_layer *qd_gptq_run_find(const qd_gptq_run *r, const char *name)
{
    for (size_t i = 0; r && i < r->n_layers; i++)
        if (!strcmp(r->layers[i].name, name))
            return &r->layers[i];
    return NULL;
}

static qd_llama_tensor *site_tensor(qd_llama_layer *L, qd_llama_site s)
{
    switch (s) {
    case QD_SITE_ATTN_Q: return &L->wq;
    case QD_SITE_ATTN_K: return &L->wk;
    case QD_SITE_ATTN_V: return &L->wv;
    case QD_SITE_ATTN_OUT: return &L->wo;
    case QD_SITE_FFN_GATE: return &L->w1;
    case QD_SITE_FFN_UP: return &L->w3;
    case QD_SITE_FFN_DOWN: return &L->w2;
    default: return NULL;
    }
}

static int slot_of_site(qd_llama_site s)
{
    switch (s) {
    case QD_SITE_ATTN_Q: case QD_SITE_ATTN_K: case QD_SITE_ATTN_V: return H_ATTN_IN;
    case QD_SITE_ATTN_OUT: return H_ATTN_OUT;
    case QD_SITE_FFN_GATE: case QD_SITE_FFN_UP: return H_FFN_IN;
    default: return H_FFN_DOWN;
    }
}

int qd_gptq_model(qd_gptq_run **out, const qd_llama_model *src, const qd_valset *calib, const qd_gptq_params *p,
                  const qd_gptq_run_options *o)
{
    qd_gptq_run_options defo = {2, false, false};
    qd_gptq_run *run = NULL;
    qd_llama_ctx *ctx = NULL;
    float *last = NULL;
    double *hw = NULL;
    hcollect hc;
    int rc;
    grid gtmp;
    int gtmp_group;

    *out = NULL;
    memset(&hc, 0, sizeof(hc));
    if (!o)
        o = &defo;
    uint32_t n_seqs;
    int max_len;
    if ((rc = qd_calib_span(calib, src, 0, &n_seqs, &max_len)) < 0)
        return qd_error_prefix("gptq");
    /* parameters checked once against a row that fits any group */
    if ((rc = check_params(&gtmp, &gtmp_group, p, p->gguf_type == QD_TYPE_COUNT && p->group_size > 0
                                                      ? p->group_size : 32)))
        return rc;
    run = qd_calloc(1, sizeof(*run));
    int L = src->cfg.n_layers;
    if (!run || !(run->layers = qd_calloc((size_t)L * 7 + 1, sizeof(qd_gptq_layer)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory");
        goto fail;
    }
    if ((rc = qd_llama_dequantize(&run->model, src)) < 0)
        goto fail;
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.n_threads = o->n_threads;
    co.n_ctx = max_len;
    if ((rc = qd_llama_ctx_new(&ctx, run->model, &co)) < 0)
        goto fail;
    last = qd_mallocarray((size_t)run->model->cfg.vocab, sizeof(float));
    if (!last) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory");
        goto fail;
    }
    run->samples = calib->n_seqs;
    run->tokens = (int64_t)calib->n_tokens;
    qd_llama_ctx_set_observer(ctx, observe, &hc);
    static const qd_llama_site sites[7] = {QD_SITE_ATTN_Q, QD_SITE_ATTN_K, QD_SITE_ATTN_V, QD_SITE_ATTN_OUT,
                                           QD_SITE_FFN_GATE, QD_SITE_FFN_UP, QD_SITE_FFN_DOWN};
    /* true sequential (AutoGPTQ's default): q/k/v, then the attention output, then gate/up, then down, each step
     * seeing the block's earlier steps quantized; otherwise the whole block from one pass */
    const int n_steps = p->true_sequential ? H_COUNT : 1;
    for (int step = 0; step < L * n_steps; step++) {
        int l = step / n_steps, only = p->true_sequential ? step % n_steps : -1;
        for (int s = 0; s < H_COUNT; s++) {
            qd_free(hc.h[s]);
            hc.h[s] = NULL;
            hc.n[s] = 0;
        }
        hc.layer = l;
        hc.only = only;
        hc.status = 0;
        /* block l's inputs with blocks 0..l-1 already quantized (their values are in run->model) */
        for (uint32_t i = 0; i < calib->n_seqs; i++) {
            qd_llama_reset(ctx);
            if ((rc = qd_llama_eval(ctx, calib->tokens + calib->offs[i], (int)calib->lens[i], NULL, last)) < 0)
                goto fail;
            if ((rc = hc.status) < 0)
                goto fail;
        }
        for (int s = 0; s < H_COUNT; s++) { /* symmetrize and scale: H = 2/N sum x x^T */
            double *H = hc.h[s];
            int64_t c = hc.cols[s];
            if (!H || hc.n[s] == 0)
                continue;
            double f = 2.0 / (double)hc.n[s];
            for (int64_t i = 0; i < c; i++)
                for (int64_t j = i; j < c; j++) {
                    double v = H[i * c + j] * f;
                    H[i * c + j] = v;
                    H[j * c + i] = v;
                }
        }
        size_t first = run->n_layers;
        for (int k = 0; k < 7; k++) {
            qd_llama_tensor *t = site_tensor(&run->model->layers[l], sites[k]);
            int slot = slot_of_site(sites[k]);
            if (only >= 0 && slot != only)
                continue;
            int64_t rows = t->rows, cols = t->cols;
            int group = p->gguf_type != QD_TYPE_COUNT ? 32 : p->group_size > 0 ? p->group_size : (int)cols;
            if (!hc.h[slot] || hc.cols[slot] != cols || cols % group) {
                run->n_skipped++;
                continue;
            }
            qd_gptq_layer *ly = &run->layers[run->n_layers];
            ly->layer = l;
            ly->site = sites[k];
            qd_llama_site_name(ly->name, sizeof(ly->name), l, sites[k]);
            qd_free(hw);
            hw = qd_mallocarray((size_t)(cols * cols), sizeof(double));
            if (!hw) {
                rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory");
                goto fail;
            }
            memcpy(hw, hc.h[slot], sizeof(double) * (size_t)(cols * cols));
            const float *w = t->data;
            if ((rc = qd_gptq_quantize_matrix(&ly->m, w, rows, cols, hw, p)) < 0) {
                qd_error_prefix("%s", ly->name);
                goto fail;
            }
            run->n_layers++;
            ly->err_gptq = qd_gptq_output_error(w, ly->m.deq, rows, cols, hc.h[slot]);
            if (o->compare_rtn) {
                qd_gptq_matrix rt;
                if ((rc = qd_gptq_rtn_matrix(&rt, w, rows, cols, p)) < 0)
                    goto fail;
                ly->err_rtn = qd_gptq_output_error(w, rt.deq, rows, cols, hc.h[slot]);
                qd_gptq_matrix_free(&rt);
            }
            if (o->keep_hessian) {
                ly->h = hw;
                memcpy(hw, hc.h[slot], sizeof(double) * (size_t)(cols * cols));
                hw = NULL;
            }
        }
        /* swap the quantized values in: later steps and blocks see them (after the step, so that the matrices of
         * one step, which share an input, are quantized against the same inputs) */
        for (size_t i = first; i < run->n_layers; i++) {
            qd_gptq_layer *ly = &run->layers[i];
            qd_llama_tensor *t = site_tensor(&run->model->layers[l], ly->site);
            memcpy(t->data, ly->m.deq, sizeof(float) * (size_t)(t->rows * t->cols));
        }
    }
    qd_free(hw);
    qd_free(last);
    qd_llama_ctx_free(ctx);
    for (int s = 0; s < H_COUNT; s++)
        qd_free(hc.h[s]);
    *out = run;
    return QD_OK;
fail:
    qd_free(hw);
    qd_free(last);
    qd_llama_ctx_free(ctx);
    for (int s = 0; s < H_COUNT; s++)
        qd_free(hc.h[s]);
    qd_gptq_run_free(run);
    return rc;
}
