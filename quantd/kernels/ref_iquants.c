/*
 * ref_iquants.c - reference kernels of the grid ("i-") quants: IQ3_XXS and IQ3_S (IQ2 and IQ1 follow).
 *
 * A sub-block of 32 values is coded as signs plus magnitudes rounded to a point of a fixed grid (iq_tables.h).
 * The search tries a range of scales; for each, it rounds every group of 4 magnitudes to levels and, when the
 * pattern is not a grid point, takes the weighted-nearest of its precomputed neighbours; the scale with the best
 * weighted least-squares fit wins. Float operation order follows ggml's reference (see ref_util.h).
 */
#include <float.h>
#include <math.h>

#include "iq_tables.h"
#include "kernels.h"
#include "ref_util.h"

#define QK QD_QK_K
#define IQ3_KMAXQ 8
#define GROUP_MAX_EPS_IQ3_XXS 1e-8f

typedef struct qd_block_iq3_xxs {
    qd_fp16 d;
    uint8_t qs[3 * QK / 8]; /* 64 grid indices, then 8 little-endian u32: 4 x 7 sign bits and a 4-bit scale */
} qd_block_iq3_xxs;
_Static_assert(sizeof(qd_block_iq3_xxs) == 98, "iq3_xxs block is 98 bytes");

typedef struct qd_block_iq3_s {
    qd_fp16 d;
    uint8_t qs[QK / 4];     /* low 8 bits of 64 grid indices */
    uint8_t qh[QK / 32];    /* their ninth bits */
    uint8_t signs[QK / 8];  /* one bit per value */
    uint8_t scales[QK / 64]; /* two 4-bit sub-block scales per byte */
} qd_block_iq3_s;
_Static_assert(sizeof(qd_block_iq3_s) == 110, "iq3_s block is 110 bytes");

int qd_ref_iq_prepare(qd_type t)
{
    qd_iq_grid_id id;
    switch (t) {
    case QD_TYPE_IQ1_S:
    case QD_TYPE_IQ1_M: id = QD_IQ_GRID_1S; break;
    case QD_TYPE_IQ2_XXS: id = QD_IQ_GRID_2XXS; break;
    case QD_TYPE_IQ2_XS: id = QD_IQ_GRID_2XS; break;
    case QD_TYPE_IQ2_S: id = QD_IQ_GRID_2S; break;
    case QD_TYPE_IQ3_XXS: id = QD_IQ_GRID_3XXS; break;
    case QD_TYPE_IQ3_S: id = QD_IQ_GRID_3S; break;
    default: return 0;
    }
    return qd_iq_grid_get(id) ? 0 : -1;
}

/* The grid point of 4 values nearest (weighted) at this scale among a pattern's neighbours; sets L (levels). */
static int iq3_best_neighbour(const qd_iq_grid *g, int32_t code, const float *xval, const float *weight, float scale,
                              int8_t *L)
{
    const uint16_t *nb = g->neighbours - code - 1;
    const int n = nb[0];
    float best_d2 = FLT_MAX;
    int best = nb[1]; /* kept only if every distance is NaN or Inf, which the input limits rule out */
    for (int j = 1; j <= n; ++j) {
        const int8_t *pg = g->points + 4 * nb[j];
        float d2 = 0;
        for (int i = 0; i < 4; ++i) {
            float q = pg[i];
            float diff = scale * q - xval[i];
            d2 += weight[i] * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            best = nb[j];
        }
    }
    const int8_t *pg = g->points + 4 * best;
    for (int i = 0; i < 4; ++i)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return best;
}

static inline int iq3_pattern(const int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 4; ++i)
        u |= L[i] << (3 * i);
    return u;
}

/*
 * Search the scale of one 32-sub-block of magnitudes xval. ntry: candidates -ntry..ntry around 15. xxs: IQ3_XXS's
 * variant (groups start as on-grid, the refit skips groups that were on the grid). Returns the scale; L holds
 * levels that are all grid points.
 */
static float iq3_search(const qd_iq_grid *g, const float *xval, const float *weight, const float *waux, float max,
                        int ntry, bool xxs, int8_t *L)
{
    int8_t Laux[32];
    bool on_grid[8], on_grid_aux[8];
    float best = 0;
    float scale = max / (2 * IQ3_KMAXQ - 1);
    for (int k = 0; k < 8; ++k)
        on_grid[k] = xxs;
    for (int is = -ntry; is <= ntry; ++is) {
        float id = (2 * IQ3_KMAXQ - 1 + is * 0.2f) / max;
        float this_scale = 1 / id;
        for (int k = 0; k < 8; ++k) {
            for (int i = 0; i < 4; ++i) {
                int l = qd_nearest_int(0.5f * (id * xval[4 * k + i] - 1));
                Laux[4 * k + i] = (int8_t)QD_MAX(0, QD_MIN(IQ3_KMAXQ - 1, l));
            }
            int32_t code = g->map[iq3_pattern(Laux + 4 * k)];
            on_grid_aux[k] = code >= 0;
            if (code < 0)
                iq3_best_neighbour(g, code, xval + 4 * k, waux + 4 * k, this_scale, Laux + 4 * k);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; ++i) {
            float w = weight[i];
            float q = 2 * Laux[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 32);
            memcpy(on_grid, on_grid_aux, sizeof(on_grid));
        }
    }
    int off_grid = 0;
    for (int k = 0; k < 8; ++k)
        off_grid += !on_grid[k];
    if (off_grid > 0 && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 8; ++k) {
            if (xxs && on_grid[k])
                continue;
            int8_t Lg[4];
            for (int i = 0; i < 4; ++i) {
                int l = qd_nearest_int(0.5f * (id * xval[4 * k + i] - 1));
                Lg[i] = (int8_t)QD_MAX(0, QD_MIN(IQ3_KMAXQ - 1, l));
            }
            int32_t code = g->map[iq3_pattern(Lg)];
            if (code < 0)
                code = iq3_best_neighbour(g, code, xval + 4 * k, waux + 4 * k, scale, L + 4 * k);
            const int8_t *pg = g->points + 4 * code;
            for (int i = 0; i < 4; ++i)
                L[4 * k + i] = (int8_t)((pg[i] - 1) / 2);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; ++i) {
            float w = weight[i];
            float q = 2 * L[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

/* Weights of a sub-block: qw * sqrt(sigma2 + x^2) with an imatrix, else x^2; waux = sqrt(weight). */
static void iq_weights(const float *xb, const float *qw, float sigma2, int n, float *weight, float *waux)
{
    if (qw) {
        for (int i = 0; i < n; ++i)
            weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
    } else {
        for (int i = 0; i < n; ++i)
            weight[i] = xb[i] * xb[i];
    }
    if (waux)
        for (int i = 0; i < n; ++i)
            waux[i] = sqrtf(weight[i]);
}

static float block_sigma2(const float *x)
{
    float sumx2 = 0;
    for (int i = 0; i < QK; ++i)
        sumx2 += x[i] * x[i];
    return 2 * sumx2 / QK;
}

/* ---- IQ3_XXS ---- */

static void iq3_xxs_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq3_xxs *y)
{
    float scales[QK / 32], weight[32], waux[32], xval[32];
    int8_t L[32];
    uint8_t q3[3 * QK / 8];
    uint32_t sas[QK / 32];
    memset(q3, 0, sizeof(q3));
    memset(sas, 0, sizeof(sas));
    y->d = qd_fp32_to_fp16(0.f);
    float max_scale = 0;
    const float sigma2 = block_sigma2(x);
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float *xb = x + 32 * ib;
        iq_weights(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, weight, waux);
        uint8_t block_signs[4];
        for (int k = 0; k < 4; ++k) {
            int nflip = 0;
            uint8_t s = 0;
            for (int i = 0; i < 8; ++i) {
                if (xb[8 * k + i] >= 0) {
                    xval[8 * k + i] = xb[8 * k + i];
                } else {
                    xval[8 * k + i] = -xb[8 * k + i];
                    ++nflip;
                    s |= (uint8_t)(1 << i);
                }
            }
            if (nflip % 2) {
                /* an odd count of minus signs cannot be stored: flip the least important value */
                int imin = 0;
                float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
                for (int i = 1; i < 8; ++i) {
                    float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                    if (ax < min) {
                        min = ax;
                        imin = i;
                    }
                }
                xval[8 * k + imin] = -xval[8 * k + imin];
                s ^= (uint8_t)(1 << imin);
            }
            block_signs[k] = s & 127;
        }
        float max = xval[0];
        for (int i = 1; i < 32; ++i)
            max = QD_MAX(max, xval[i]);
        if (max < GROUP_MAX_EPS_IQ3_XXS) {
            scales[ib] = 0;
            continue;
        }
        float scale = iq3_search(g, xval, weight, waux, max, 15, true, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                block_signs[k] = (uint8_t)((~block_signs[k]) & 127);
        }
        for (int k = 0; k < 8; ++k)
            q3[8 * ib + k] = (uint8_t)g->map[iq3_pattern(L + 4 * k)];
        sas[ib] = (uint32_t)block_signs[0] | ((uint32_t)block_signs[1] << 7) | ((uint32_t)block_signs[2] << 14) |
                  ((uint32_t)block_signs[3] << 21);
        scales[ib] = scale;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof(y->qs));
        return;
    }
    float d = max_scale / 31;
    y->d = qd_fp32_to_fp16(d * 1.0125f);
    float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        int l = qd_nearest_int(0.5f * (id * scales[ib] - 1));
        l = QD_MAX(0, QD_MIN(15, l));
        sas[ib] |= (uint32_t)l << 28;
    }
    memcpy(y->qs, q3, QK / 4);
    for (int ib = 0; ib < QK / 32; ++ib)
        for (int b = 0; b < 4; ++b)
            y->qs[QK / 4 + 4 * ib + b] = (uint8_t)(sas[ib] >> (8 * b));
}

static void iq3_xxs_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_3XXS);
    qd_block_iq3_xxs *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq3_xxs_block(g, src + r * ncols + QK * i, qw ? qw + QK * i : NULL, y + r * nb + i);
}

void qd_ref_quantize_iq3_xxs(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq3_xxs_rows(src, dst, nrows, ncols, NULL);
}

void qd_ref_quantize_iq3_xxs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq3_xxs_rows(src, dst, nrows, ncols, qw);
}

void qd_ref_dequantize_iq3_xxs(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_3XXS);
    const qd_block_iq3_xxs *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *sas = x[i].qs + QK / 4;
        for (int ib = 0; ib < QK / 32; ++ib) {
            const uint32_t aux = (uint32_t)sas[4 * ib] | (uint32_t)sas[4 * ib + 1] << 8 |
                                 (uint32_t)sas[4 * ib + 2] << 16 | (uint32_t)sas[4 * ib + 3] << 24;
            const float db = d * (0.5f + (aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; ++l) {
                const uint8_t signs = qd_iq_signs((aux >> (7 * l)) & 127);
                const int8_t *g1 = g->deq + 4 * qs[2 * l];
                const int8_t *g2 = g->deq + 4 * qs[2 * l + 1];
                for (int j = 0; j < 4; ++j) {
                    y[j] = db * (uint8_t)g1[j] * (signs & (1 << j) ? -1.f : 1.f);
                    y[j + 4] = db * (uint8_t)g2[j] * (signs & (1 << (j + 4)) ? -1.f : 1.f);
                }
                y += 8;
            }
            qs += 8;
        }
    }
}

/* ---- IQ3_S ---- */

static void iq3_s_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq3_s *y)
{
    float scales[QK / 32], weight[32], waux[32], xval[32];
    int8_t L[32];
    memset(y, 0, sizeof(*y));
    y->d = qd_fp32_to_fp16(0.f);
    uint8_t *qs = y->qs, *signs = y->signs;
    float max_scale = 0;
    const float sigma2 = block_sigma2(x);
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float *xb = x + 32 * ib;
        iq_weights(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, weight, waux);
        uint8_t block_signs[4];
        for (int k = 0; k < 4; ++k) {
            uint8_t s = 0;
            for (int i = 0; i < 8; ++i) {
                if (xb[8 * k + i] >= 0) {
                    xval[8 * k + i] = xb[8 * k + i];
                } else {
                    xval[8 * k + i] = -xb[8 * k + i];
                    s |= (uint8_t)(1 << i);
                }
            }
            block_signs[k] = s;
        }
        float max = xval[0];
        for (int i = 1; i < 32; ++i)
            max = QD_MAX(max, xval[i]);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        float scale = iq3_search(g, xval, weight, waux, max, 9, false, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                block_signs[k] = (uint8_t)~block_signs[k];
        }
        for (int k = 0; k < 8; ++k) {
            int idx = g->map[iq3_pattern(L + 4 * k)];
            qs[k] = (uint8_t)(idx & 255);
            y->qh[(ib * 8 + k) / 8] |= (uint8_t)((idx >> 8) << ((ib * 8 + k) % 8));
        }
        qs += 8;
        memcpy(signs, block_signs, 4);
        signs += 4;
        scales[ib] = scale;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    y->d = qd_fp32_to_fp16(d * 1.033f);
    float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ib += 2) {
        int l1 = QD_MAX(0, QD_MIN(15, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
        int l2 = QD_MAX(0, QD_MIN(15, qd_nearest_int(0.5f * (id * scales[ib + 1] - 1))));
        y->scales[ib / 2] = (uint8_t)(l1 | (l2 << 4));
    }
}

static void iq3_s_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_3S);
    qd_block_iq3_s *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq3_s_block(g, src + r * ncols + QK * i, qw ? qw + QK * i : NULL, y + r * nb + i);
}

void qd_ref_quantize_iq3_s(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq3_s_rows(src, dst, nrows, ncols, NULL);
}

void qd_ref_quantize_iq3_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq3_s_rows(src, dst, nrows, ncols, qw);
}

void qd_ref_dequantize_iq3_s(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_3S);
    const qd_block_iq3_s *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs, *qh = x[i].qh, *signs = x[i].signs;
        for (int ib = 0; ib < QK / 32; ib += 2) {
            for (int half = 0; half < 2; half++) {
                const int sc = half ? x[i].scales[ib / 2] >> 4 : x[i].scales[ib / 2] & 0xf;
                const float db = d * (1 + 2 * sc);
                for (int l = 0; l < 4; ++l) {
                    const int i1 = qs[2 * l] | ((qh[half] << (8 - 2 * l)) & 256);
                    const int i2 = qs[2 * l + 1] | ((qh[half] << (7 - 2 * l)) & 256);
                    const int8_t *g1 = g->deq + 4 * i1, *g2 = g->deq + 4 * i2;
                    for (int j = 0; j < 4; ++j) {
                        y[j] = db * g1[j] * (signs[l] & (1 << j) ? -1.f : 1.f);
                        y[j + 4] = db * g2[j] * (signs[l] & (1 << (j + 4)) ? -1.f : 1.f);
                    }
                    y += 8;
                }
                qs += 8;
                signs += 4;
            }
            qh += 2;
        }
    }
}

/* ---- IQ2_XXS, IQ2_XS, IQ2_S ---- */

#define IQ2_KMAXQ 3

typedef struct qd_block_iq2_xxs {
    qd_fp16 d;
    uint8_t qs[QK / 4]; /* per 32-sub-block: 4 grid indices (bytes), then a u32 of 4 x 7 sign bits and a 4-bit scale */
} qd_block_iq2_xxs;
_Static_assert(sizeof(qd_block_iq2_xxs) == 66, "iq2_xxs block is 66 bytes");

typedef struct qd_block_iq2_xs {
    qd_fp16 d;
    uint8_t qs[QK / 4];      /* 32 little-endian u16: 9-bit grid index | 7 sign bits << 9 */
    uint8_t scales[QK / 32]; /* two 4-bit 16-sub-block scales per byte */
} qd_block_iq2_xs;
_Static_assert(sizeof(qd_block_iq2_xs) == 74, "iq2_xs block is 74 bytes");

typedef struct qd_block_iq2_s {
    qd_fp16 d;
    uint8_t qs[QK / 4];      /* low 8 bits of 32 grid indices, then 32 bytes of signs (one bit per value) */
    uint8_t qh[QK / 32];     /* bits 8-9 of the grid indices, 2 per index */
    uint8_t scales[QK / 32];
} qd_block_iq2_s;
_Static_assert(sizeof(qd_block_iq2_s) == 82, "iq2_s block is 82 bytes");

static int iq2_best_neighbour(const qd_iq_grid *g, int32_t code, const float *xval, const float *weight, float scale,
                              int8_t *L)
{
    const uint16_t *nb = g->neighbours - code - 1;
    const int n = nb[0];
    float best_d2 = FLT_MAX;
    int best = nb[1]; /* kept only if every distance is NaN or Inf, which the input limits rule out */
    for (int j = 1; j <= n; ++j) {
        const int8_t *pg = g->points + 8 * nb[j];
        float d2 = 0;
        for (int i = 0; i < 8; ++i) {
            float q = pg[i];
            float diff = scale * q - xval[i];
            d2 += weight[i] * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            best = nb[j];
        }
    }
    const int8_t *pg = g->points + 8 * best;
    for (int i = 0; i < 8; ++i)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return best;
}

static inline int iq2_pattern(const int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 8; ++i)
        u |= L[i] << (2 * i);
    return u;
}

/* Round 8 magnitudes to levels at inverse scale id; L gets the levels, returns the pattern. */
static inline int iq2_round8(const float *xval, float id, int8_t *L)
{
    for (int i = 0; i < 8; ++i) {
        int l = qd_nearest_int(0.5f * (id * xval[i] - 1));
        L[i] = (int8_t)QD_MAX(0, QD_MIN(IQ2_KMAXQ - 1, l));
    }
    return iq2_pattern(L);
}

static void fit_q(const float *xval, const float *weight, const int8_t *L, int n, float *sumqx, float *sumq2)
{
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
        float w = weight[i];
        float q = 2 * L[i] + 1;
        sx += w * xval[i] * q;
        s2 += w * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

/* Signs of 8 values, made even (IQ2_XXS/IQ2_XS store 7 bits) by flipping the least important one; fills xval. */
static uint8_t even_signs(const float *xb, const float *weight, float *xval)
{
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            ++nflip;
            s |= (uint8_t)(1 << i);
        }
    }
    if (nflip % 2) {
        int imin = 0;
        float min = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; ++i) {
            float ax = weight[i] * xb[i] * xb[i];
            if (ax < min) {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1 << imin);
    }
    return s & 127;
}

/* The 16-sub-block search of IQ2_XS and IQ2_S (two groups of 8). Returns the scale; L on the grid. */
static float iq2_search16(const qd_iq_grid *g, const float *xval, const float *weight, const float *waux, float max,
                          int8_t *L)
{
    int8_t Laux[16];
    bool on_grid[2] = {true, true}, on_grid_aux[2];
    float best = 0;
    float scale = max / (2 * IQ2_KMAXQ - 1);
    for (int is = -9; is <= 9; ++is) {
        float id = (2 * IQ2_KMAXQ - 1 + is * 0.1f) / max;
        float this_scale = 1 / id;
        for (int k = 0; k < 2; ++k) {
            int32_t code = g->map[iq2_round8(xval + 8 * k, id, Laux + 8 * k)];
            on_grid_aux[k] = code >= 0;
            if (code < 0)
                iq2_best_neighbour(g, code, xval + 8 * k, waux + 8 * k, this_scale, Laux + 8 * k);
        }
        float sumqx, sumq2;
        fit_q(xval, weight, Laux, 16, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 16);
            on_grid[0] = on_grid_aux[0];
            on_grid[1] = on_grid_aux[1];
        }
    }
    if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 2; ++k) {
            if (on_grid[k])
                continue;
            int32_t code = g->map[iq2_round8(xval + 8 * k, id, L + 8 * k)];
            if (code < 0)
                iq2_best_neighbour(g, code, xval + 8 * k, waux + 8 * k, scale, L + 8 * k);
        }
        float sumqx, sumq2;
        fit_q(xval, weight, L, 16, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

static void iq2_xxs_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq2_xxs *y)
{
    float scales[QK / 32], weight[32], waux[32], xval[32];
    int8_t L[32], Laux[32];
    uint32_t q2[2 * (QK / 32)];
    memset(q2, 0, sizeof(q2));
    y->d = qd_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < QK; ++i)
        sumx2 += x[i] * x[i];
    const float sigma2 = sumx2 / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float *xb = x + 32 * ib;
        iq_weights(xb, qw + 32 * ib, sigma2, 32, weight, waux);
        uint8_t block_signs[4];
        for (int k = 0; k < 4; ++k)
            block_signs[k] = even_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; ++i)
            max = QD_MAX(max, xval[i]);
        if (max < QD_GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float scale = qd_make_qp_quants(32, IQ2_KMAXQ + 1, xval, (uint8_t *)L, weight);
        float eff_max = scale * IQ2_KMAXQ;
        if (eff_max <= 0) {
            scales[ib] = 0;
            continue;
        }
        float best = 0;
        for (int is = -6; is <= 6; ++is) {
            float id = (2 * IQ2_KMAXQ - 1 + is * 0.1f) / eff_max;
            float this_scale = 1 / id;
            for (int k = 0; k < 4; ++k) {
                int32_t code = g->map[iq2_round8(xval + 8 * k, id, Laux + 8 * k)];
                if (code < 0)
                    iq2_best_neighbour(g, code, xval + 8 * k, waux + 8 * k, this_scale, Laux + 8 * k);
            }
            float sumqx, sumq2;
            fit_q(xval, weight, Laux, 32, &sumqx, &sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                memcpy(L, Laux, 32);
            }
        }
        if (scale > 0) {
            float id = 1 / scale;
            for (int k = 0; k < 4; ++k) {
                int8_t Lg[8];
                int32_t code = g->map[iq2_round8(xval + 8 * k, id, Lg)];
                if (code < 0)
                    code = iq2_best_neighbour(g, code, xval + 8 * k, waux + 8 * k, scale, L + 8 * k);
                const int8_t *pg = g->points + 8 * code;
                for (int i = 0; i < 8; ++i)
                    L[8 * k + i] = (int8_t)((pg[i] - 1) / 2);
            }
            float sumqx, sumq2;
            fit_q(xval, weight, L, 32, &sumqx, &sumq2);
            if (sumq2 > 0)
                scale = sumqx / sumq2;
        }
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                block_signs[k] = (uint8_t)((~block_signs[k]) & 127);
        }
        for (int k = 0; k < 4; ++k) {
            const uint32_t idx = (uint32_t)g->map[iq2_pattern(L + 8 * k)];
            q2[2 * ib] |= idx << (8 * k);
            q2[2 * ib + 1] |= (uint32_t)block_signs[k] << (7 * k);
        }
        scales[ib] = scale;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof(y->qs));
        return;
    }
    float d = max_scale / 31;
    y->d = qd_fp32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        int l = QD_MAX(0, QD_MIN(15, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
        q2[2 * ib + 1] |= (uint32_t)l << 28;
    }
    for (int w = 0; w < 2 * (QK / 32); ++w)
        for (int b = 0; b < 4; ++b)
            y->qs[4 * w + b] = (uint8_t)(q2[w] >> (8 * b));
}

void qd_ref_quantize_iq2_xxs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2XXS);
    qd_block_iq2_xxs *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq2_xxs_block(g, src + r * ncols + QK * i, qw + QK * i, y + r * nb + i);
}

void qd_ref_dequantize_iq2_xxs(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2XXS);
    const qd_block_iq2_xxs *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK / 32; ++ib) {
            const uint8_t *q = x[i].qs + 8 * ib;
            const uint32_t aux1 = (uint32_t)q[4] | (uint32_t)q[5] << 8 | (uint32_t)q[6] << 16 | (uint32_t)q[7] << 24;
            const float db = d * (0.5f + (aux1 >> 28)) * 0.25f;
            for (int l = 0; l < 4; ++l) {
                const int8_t *gp = g->deq + 8 * q[l];
                const uint8_t signs = qd_iq_signs((aux1 >> (7 * l)) & 127);
                for (int j = 0; j < 8; ++j)
                    y[j] = db * gp[j] * (signs & (1 << j) ? -1.f : 1.f);
                y += 8;
            }
        }
    }
}

static void iq2_xs_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq2_xs *y)
{
    float scales[QK / 16], weight[16], waux[16], xval[16];
    int8_t L[16];
    uint16_t q2[2 * (QK / 16)];
    memset(q2, 0, sizeof(q2));
    memset(y->scales, 0, sizeof(y->scales));
    y->d = qd_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < QK; ++i)
        sumx2 += x[i] * x[i];
    const float sigma2 = sumx2 / QK;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float *xb = x + 16 * ib;
        iq_weights(xb, qw + 16 * ib, sigma2, 16, weight, waux);
        uint8_t block_signs[2];
        for (int k = 0; k < 2; ++k)
            block_signs[k] = even_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 16; ++i)
            max = QD_MAX(max, xval[i]);
        memset(L, 0, 16);
        if (max < QD_GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float scale = iq2_search16(g, xval, weight, waux, max, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                block_signs[k] = (uint8_t)((~block_signs[k]) & 127);
        }
        for (int k = 0; k < 2; ++k)
            q2[2 * ib + k] = (uint16_t)(g->map[iq2_pattern(L + 8 * k)] | (block_signs[k] << 9));
        scales[ib] = scale;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof(y->qs));
        return;
    }
    float d = max_scale / 31;
    y->d = qd_fp32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        int l = QD_MAX(0, QD_MIN(15, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
        if (ib % 2 == 0)
            y->scales[ib / 2] = (uint8_t)l;
        else
            y->scales[ib / 2] = (uint8_t)(y->scales[ib / 2] | (l << 4));
    }
    for (int w = 0; w < 2 * (QK / 16); ++w) {
        y->qs[2 * w] = (uint8_t)q2[w];
        y->qs[2 * w + 1] = (uint8_t)(q2[w] >> 8);
    }
}

void qd_ref_quantize_iq2_xs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2XS);
    qd_block_iq2_xs *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq2_xs_block(g, src + r * ncols + QK * i, qw + QK * i, y + r * nb + i);
}

void qd_ref_dequantize_iq2_xs(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2XS);
    const qd_block_iq2_xs *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QK / 32; ++ib) {
            float db[2];
            db[0] = d * (0.5f + (x[i].scales[ib] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; ++l) {
                const uint16_t v = (uint16_t)(x[i].qs[2 * (4 * ib + l)] | x[i].qs[2 * (4 * ib + l) + 1] << 8);
                const int8_t *gp = g->deq + 8 * (v & 511);
                const uint8_t signs = qd_iq_signs(v >> 9);
                for (int j = 0; j < 8; ++j)
                    y[j] = db[l / 2] * gp[j] * (signs & (1 << j) ? -1.f : 1.f);
                y += 8;
            }
        }
    }
}

static void iq2_s_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq2_s *y)
{
    float scales[QK / 16], weight[16], waux[16], xval[16];
    int8_t L[16];
    memset(y, 0, sizeof(*y));
    y->d = qd_fp32_to_fp16(0.f);
    float max_scale = 0;
    const float sigma2 = block_sigma2(x);
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float *xb = x + 16 * ib;
        if (qw) {
            iq_weights(xb, qw + 16 * ib, sigma2, 16, weight, waux);
        } else {
            for (int i = 0; i < 16; ++i)
                weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
            for (int i = 0; i < 16; ++i)
                waux[i] = sqrtf(weight[i]);
        }
        uint8_t block_signs[2];
        for (int k = 0; k < 2; ++k) {
            uint8_t s = 0;
            for (int i = 0; i < 8; ++i) {
                if (xb[8 * k + i] >= 0) {
                    xval[8 * k + i] = xb[8 * k + i];
                } else {
                    xval[8 * k + i] = -xb[8 * k + i];
                    s |= (uint8_t)(1 << i);
                }
            }
            block_signs[k] = s;
        }
        float max = xval[0];
        for (int i = 1; i < 16; ++i)
            max = QD_MAX(max, xval[i]);
        memset(L, 0, 16);
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        float scale = iq2_search16(g, xval, weight, waux, max, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                block_signs[k] = (uint8_t)~block_signs[k];
        }
        for (int k = 0; k < 2; ++k) {
            const int idx = g->map[iq2_pattern(L + 8 * k)];
            const int i8 = 2 * ib + k;
            y->qs[i8] = (uint8_t)(idx & 255);
            y->qh[i8 / 4] = (uint8_t)(y->qh[i8 / 4] | ((idx >> 8) << 2 * (i8 % 4)));
            y->qs[QK / 8 + i8] = block_signs[k];
        }
        scales[ib] = scale;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    y->d = qd_fp32_to_fp16(d * 0.9875f);
    float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        int l = QD_MAX(0, QD_MIN(15, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
        if (ib % 2 == 0)
            y->scales[ib / 2] = (uint8_t)l;
        else
            y->scales[ib / 2] = (uint8_t)(y->scales[ib / 2] | (l << 4));
    }
}

static void iq2_s_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2S);
    qd_block_iq2_s *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq2_s_block(g, src + r * ncols + QK * i, qw ? qw + QK * i : NULL, y + r * nb + i);
}

void qd_ref_quantize_iq2_s(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq2_s_rows(src, dst, nrows, ncols, NULL);
}

void qd_ref_quantize_iq2_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq2_s_rows(src, dst, nrows, ncols, qw);
}

void qd_ref_dequantize_iq2_s(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_2S);
    const qd_block_iq2_s *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs, *qh = x[i].qh, *signs = x[i].qs + QK / 8;
        for (int ib = 0; ib < QK / 32; ++ib) {
            float db[2];
            db[0] = d * (0.5f + (x[i].scales[ib] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f;
            for (int l = 0; l < 4; ++l) {
                const float dl = db[l / 2];
                const int8_t *gp = g->deq + 8 * (qs[l] | ((qh[ib] << (8 - 2 * l)) & 0x300));
                for (int j = 0; j < 8; ++j)
                    y[j] = dl * gp[j] * (signs[l] & (1 << j) ? -1.f : 1.f);
                y += 8;
            }
            qs += 4;
            signs += 4;
        }
    }
}

/* ---- IQ1_S, IQ1_M ---- */

#define IQ1_DELTA 0.125f
#define GROUP_MAX_EPS_IQ1_S 1e-12f
#define GROUP_MAX_EPS_IQ1_M 1e-7f

typedef struct qd_block_iq1_s {
    qd_fp16 d;
    uint8_t qs[QK / 8]; /* low 8 bits of 32 grid indices */
    uint8_t qh[QK / 16]; /* 8 little-endian u16: 4 x 3 high index bits, a 3-bit scale, the sign of the shift */
} qd_block_iq1_s;
_Static_assert(sizeof(qd_block_iq1_s) == 50, "iq1_s block is 50 bytes");

typedef struct qd_block_iq1_m {
    uint8_t qs[QK / 8];      /* low 8 bits of 32 grid indices */
    uint8_t qh[QK / 16];     /* per pair of groups: 3 high index bits and a shift-sign bit each */
    uint8_t scales[QK / 32]; /* 4 little-endian u16: 3-bit sub-scales, and the fp16 super-scale in the top nibbles */
} qd_block_iq1_m;
_Static_assert(sizeof(qd_block_iq1_m) == 56, "iq1_m block is 56 bytes");

/*
 * Order the indices 0..n-1 of xb by value, equal values keeping their order (a stable sort: what glibc's qsort,
 * a merge sort, does with ggml's value-only comparison).
 */
static void sort_by_value(const float *xb, int n, int *order)
{
    for (int j = 0; j < n; ++j) {
        int k = j;
        while (k > 0 && xb[order[k - 1]] > xb[j]) {
            order[k] = order[k - 1];
            --k;
        }
        order[k] = j;
    }
}

/* The grid point (among a pattern's neighbours) nearest the signed values xb for levels xx[] at this scale. */
static int iq1_best_neighbour(const qd_iq_grid *g, int32_t code, const float *xb, const float *weight, float scale,
                              const float *xx, int8_t *L)
{
    const uint16_t *nb = g->neighbours - code - 1;
    const int n = nb[0];
    float best_d2 = FLT_MAX;
    int best = nb[1]; /* (only reachable with non-finite distances, which finite input cannot produce) */
    for (int j = 1; j <= n; ++j) {
        const int8_t *pg = g->points + 8 * nb[j];
        float d2 = 0;
        for (int i = 0; i < 8; ++i) {
            float q = xx[(pg[i] - 1) / 2];
            float w = weight[i];
            float diff = scale * q - xb[i];
            d2 += w * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            best = nb[j];
        }
    }
    const int8_t *pg = g->points + 8 * best;
    for (int i = 0; i < 8; ++i)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return best;
}

static const float iq1_xp[3] = {-1 + IQ1_DELTA, IQ1_DELTA, 1 + IQ1_DELTA};
static const float iq1_xm[3] = {-1 - IQ1_DELTA, -IQ1_DELTA, 1 - IQ1_DELTA};

static void iq1_s_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq1_s *y)
{
    enum { BS = 32 };
    float scales[QK / BS], weight[BS], sumx[BS + 1], sumw[BS + 1];
    int8_t L[BS], shifts[QK / BS];
    int order[BS];
    uint16_t index[BS / 8], qh[QK / 32];
    y->d = qd_fp32_to_fp16(0.f);
    memset(y->qs, 0, sizeof(y->qs));
    memset(qh, 0, sizeof(qh));
    float max_scale = 0;
    const float sigma2 = block_sigma2(x);
    for (int ib = 0; ib < QK / BS; ++ib) {
        const float *xb = x + BS * ib;
        iq_weights(xb, qw + BS * ib, sigma2, BS, weight, NULL);
        float max = fabsf(xb[0]);
        for (int i = 1; i < BS; ++i)
            max = QD_MAX(max, fabsf(xb[i]));
        if (max < GROUP_MAX_EPS_IQ1_S) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        /* three levels: try every split of the sorted values into (-1, 0, +1) groups, with either shift */
        sort_by_value(xb, BS, order);
        sumx[0] = sumw[0] = 0;
        for (int j = 0; j < BS; ++j) {
            int i = order[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        float best_score = -FLT_MAX, scale = max;
        int besti1 = -1, besti2 = -1, best_shift = 0;
        for (int i1 = 0; i1 <= BS; ++i1) {
            for (int i2 = i1; i2 <= BS; ++i2) {
                for (int sh = 0; sh < 2; sh++) {
                    const float *xs = sh ? iq1_xm : iq1_xp;
                    float sumqx = (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] +
                                  (sumx[BS] - sumx[i2]) * xs[2];
                    float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] + (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                                  (sumw[BS] - sumw[i2]) * xs[2] * xs[2];
                    if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
                        scale = sumqx / sumq2;
                        best_score = scale * sumqx;
                        besti1 = i1;
                        besti2 = i2;
                        best_shift = sh ? -1 : 1;
                    }
                }
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_shift == 0) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        for (int j = 0; j < besti1; ++j)
            L[order[j]] = 0;
        for (int j = besti1; j < besti2; ++j)
            L[order[j]] = 1;
        for (int j = besti2; j < BS; ++j)
            L[order[j]] = 2;
        if (scale < 0) {
            for (int j = 0; j < BS; ++j)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_shift = -best_shift;
        }
        bool all_on_grid = true;
        const float *xx = best_shift == 1 ? iq1_xp : iq1_xm;
        for (int k = 0; k < BS / 8; ++k) {
            int32_t code = g->map[iq2_pattern(L + 8 * k)];
            if (code < 0) {
                all_on_grid = false;
                code = iq1_best_neighbour(g, code, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k);
            }
            index[k] = (uint16_t)code;
        }
        if (!all_on_grid) {
            float sumqx = 0, sumq2 = 0;
            for (int k = 0; k < BS / 8; ++k) {
                const int8_t *pg = g->points + 8 * index[k];
                for (int j = 0; j < 8; ++j) {
                    float w = weight[8 * k + j];
                    float q = xx[(pg[j] - 1) / 2];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if (sumqx > 0 && sumq2 > 0)
                scale = sumqx / sumq2;
        }
        uint16_t h = 0;
        for (int k = 0; k < BS / 8; ++k) {
            y->qs[(BS / 8) * ib + k] = (uint8_t)(index[k] & 255);
            h = (uint16_t)(h | ((index[k] >> 8) << 3 * k));
        }
        qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = (int8_t)best_shift;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (max_scale) {
        float d = max_scale / 15;
        y->d = qd_fp32_to_fp16(d * 1.125f);
        float id = 1 / d;
        for (int ib = 0; ib < QK / BS; ++ib) {
            int l = QD_MAX(0, QD_MIN(7, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
            if (shifts[ib] == -1)
                l |= 8;
            qh[ib] = (uint16_t)(qh[ib] | (l << 12));
        }
    }
    for (int ib = 0; ib < QK / 32; ++ib) {
        y->qh[2 * ib] = (uint8_t)qh[ib];
        y->qh[2 * ib + 1] = (uint8_t)(qh[ib] >> 8);
    }
}

void qd_ref_quantize_iq1_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_1S);
    qd_block_iq1_s *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq1_s_block(g, src + r * ncols + QK * i, qw + QK * i, y + r * nb + i);
}

void qd_ref_dequantize_iq1_s(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_1S);
    const qd_block_iq1_s *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK / 32; ++ib) {
            const uint16_t qh = (uint16_t)(x[i].qh[2 * ib] | x[i].qh[2 * ib + 1] << 8);
            const float dl = d * (2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -IQ1_DELTA : IQ1_DELTA;
            for (int l = 0; l < 4; ++l) {
                const int8_t *gp = g->deq + 8 * (qs[l] | (((qh >> 3 * l) & 7) << 8));
                for (int j = 0; j < 8; ++j)
                    y[j] = dl * (gp[j] + delta);
                y += 8;
            }
            qs += 4;
        }
    }
}

static void iq1_m_block(const qd_iq_grid *g, const float *x, const float *qw, qd_block_iq1_m *y)
{
    enum { BS = 16 };
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[QK / BS], weight[BS];
    int8_t L[BS], shifts[QK / BS];
    int order[BS];
    uint16_t index[BS / 8], sc[4] = {0, 0, 0, 0};
    memset(y, 0, sizeof(*y));
    float max_scale = 0;
    const float sigma2 = block_sigma2(x);
    for (int ib = 0; ib < QK / BS; ++ib) {
        const float *xb = x + BS * ib;
        iq_weights(xb, qw ? qw + BS * ib : NULL, sigma2, BS, weight, NULL);
        float max = fabsf(xb[0]);
        for (int i = 1; i < BS; ++i)
            max = QD_MAX(max, fabsf(xb[i]));
        if (max < GROUP_MAX_EPS_IQ1_M) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        sort_by_value(xb, BS, order);
        float best_score = -FLT_MAX, scale = max;
        int besti1 = -1, besti2 = -1, best_k = -1;
        /* k: the shift signs of the two groups of 8 (0: +,+  1: +,-  2: -,+  3: -,-) */
        for (int i1 = 0; i1 <= BS; ++i1) {
            for (int i2 = i1; i2 <= BS; ++i2) {
                float sumqx[4] = {0, 0, 0, 0}, sumq2[4] = {0, 0, 0, 0};
                for (int j = 0; j < BS; ++j) {
                    const int lev = j < i1 ? 0 : j < i2 ? 1 : 2;
                    const int i = order[j];
                    const float p = iq1_xp[lev], m = iq1_xm[lev];
                    /* the first group's shift is k's first sign, the second group's its second */
                    const int a = i < BS / 2 ? 1 : 2, b = i < BS / 2 ? 2 : 1;
                    sumqx[0] += weight[i] * p * xb[i];
                    sumqx[a] += weight[i] * p * xb[i];
                    sumqx[b] += weight[i] * m * xb[i];
                    sumqx[3] += weight[i] * m * xb[i];
                    sumq2[0] += weight[i] * p * p;
                    sumq2[a] += weight[i] * p * p;
                    sumq2[b] += weight[i] * m * m;
                    sumq2[3] += weight[i] * m * m;
                }
                for (int k = 0; k < 4; ++k) {
                    if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
                        scale = sumqx[k] / sumq2[k];
                        best_score = scale * sumqx[k];
                        besti1 = i1;
                        besti2 = i2;
                        best_k = k;
                    }
                }
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_k < 0) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        for (int j = 0; j < besti1; ++j)
            L[order[j]] = 0;
        for (int j = besti1; j < besti2; ++j)
            L[order[j]] = 1;
        for (int j = besti2; j < BS; ++j)
            L[order[j]] = 2;
        if (scale < 0) {
            for (int j = 0; j < BS; ++j)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_k = 3 - best_k;
        }
        bool all_on_grid = true;
        for (int k = 0; k < BS / 8; ++k) {
            const float *xx = (k == 0 ? best_k < 2 : best_k % 2 == 0) ? iq1_xp : iq1_xm;
            int32_t code = g->map[iq2_pattern(L + 8 * k)];
            if (code < 0) {
                all_on_grid = false;
                code = iq1_best_neighbour(g, code, xb + 8 * k, weight + 8 * k, scale, xx, L + 8 * k);
            }
            index[k] = (uint16_t)code;
        }
        if (!all_on_grid) {
            float sumqx = 0, sumq2 = 0;
            for (int k = 0; k < BS / 8; ++k) {
                const float *xx = (k == 0 ? best_k < 2 : best_k % 2 == 0) ? iq1_xp : iq1_xm;
                const int8_t *pg = g->points + 8 * index[k];
                for (int j = 0; j < 8; ++j) {
                    float w = weight[8 * k + j];
                    float q = xx[(pg[j] - 1) / 2];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if (sumqx > 0 && sumq2 > 0)
                scale = sumqx / sumq2;
        }
        y->qs[2 * ib] = (uint8_t)(index[0] & 255);
        y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
        y->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
        scales[ib] = scale;
        shifts[ib] = (int8_t)best_k;
        max_scale = QD_MAX(max_scale, scale);
    }
    if (!max_scale)
        return;
    float d = max_scale / 15;
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < QK / BS; ++ib) {
        int l = QD_MAX(0, QD_MIN(7, qd_nearest_int(0.5f * (id * scales[ib] - 1))));
        sc[ib / 4] = (uint16_t)(sc[ib / 4] | (l << 3 * (ib % 4)));
        y->qh[ib] |= masks[shifts[ib]];
        /* refit the super-scale to the chosen points and sub-scales */
        const float *xb = x + BS * ib;
        iq_weights(xb, qw ? qw + BS * ib : NULL, sigma2, BS, weight, NULL);
        for (int k = 0; k < BS / 8; ++k) {
            const float *xx = (k == 0 ? shifts[ib] < 2 : shifts[ib] % 2 == 0) ? iq1_xp : iq1_xm;
            const int8_t *pg = g->points + 8 * (y->qs[2 * ib + k] + ((y->qh[ib] << (8 - 4 * k)) & 0x700));
            for (int j = 0; j < 8; ++j) {
                float w = weight[8 * k + j];
                float q = xx[(pg[j] - 1) / 2] * (2 * l + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    if (sumq2 > 0)
        d = sumqx / sumq2;
    const uint16_t s = qd_fp32_to_fp16(d * 1.1125f);
    sc[0] = (uint16_t)(sc[0] | ((s & 0x000f) << 12));
    sc[1] = (uint16_t)(sc[1] | ((s & 0x00f0) << 8));
    sc[2] = (uint16_t)(sc[2] | ((s & 0x0f00) << 4));
    sc[3] = (uint16_t)(sc[3] | (s & 0xf000));
    for (int k = 0; k < 4; ++k) {
        y->scales[2 * k] = (uint8_t)sc[k];
        y->scales[2 * k + 1] = (uint8_t)(sc[k] >> 8);
    }
}

static void iq1_m_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_1S);
    qd_block_iq1_m *y = dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            iq1_m_block(g, src + r * ncols + QK * i, qw ? qw + QK * i : NULL, y + r * nb + i);
}

void qd_ref_quantize_iq1_m(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq1_m_rows(src, dst, nrows, ncols, NULL);
}

void qd_ref_quantize_iq1_m_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq1_m_rows(src, dst, nrows, ncols, qw);
}

void qd_ref_dequantize_iq1_m(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_iq_grid *g = qd_iq_grid_get(QD_IQ_GRID_1S);
    const qd_block_iq1_m *x = src;
    float *y = dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        uint16_t sc[4];
        for (int k = 0; k < 4; ++k)
            sc[k] = (uint16_t)(x[i].scales[2 * k] | x[i].scales[2 * k + 1] << 8);
        const uint16_t s = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                      (sc[3] & 0xf000));
        const float d = qd_fp16_to_fp32(s);
        const uint8_t *qs = x[i].qs, *qh = x[i].qh;
        for (int ib = 0; ib < QK / 32; ++ib) {
            const float dl1 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
            const float dl2 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
            const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                                qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
            const float delta[4] = {qh[0] & 0x08 ? -IQ1_DELTA : IQ1_DELTA, qh[0] & 0x80 ? -IQ1_DELTA : IQ1_DELTA,
                                    qh[1] & 0x08 ? -IQ1_DELTA : IQ1_DELTA, qh[1] & 0x80 ? -IQ1_DELTA : IQ1_DELTA};
            for (int l = 0; l < 4; ++l) {
                const int8_t *gp = g->deq + 8 * idx[l];
                const float dl = l < 2 ? dl1 : dl2;
                for (int j = 0; j < 8; ++j)
                    y[j] = dl * (gp[j] + delta[l]);
                y += 8;
            }
            qs += 4;
            qh += 2;
        }
    }
}
