/*
 * ref_kquants.c - reference kernels of the K-quants (256-value super-blocks): Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, and
 * Q8_K (activations). Algorithms: ../shared/FORMATS.md 3.3, 3.4 and 3.6. The stored fp16 super-scales are read
 * back before the final requantization, so the levels agree with what a reader reconstructs.
 */
#include <math.h>

#include "kernels.h"
#include "ref_util.h"

#define QK QD_QK_K

/* Four 2-bit planes: byte l of each 32-byte group holds elements l, l+32, l+64, l+96 of a 128-chunk. */
QD_KFN static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Requantize the 16-sub-blocks of Q2_K with the stored scales. */
QD_KFN static void q2_K_requantize(const float *x, const qd_block_q2_K *y, uint8_t *L)
{
    const float dall = qd_fp16_to_fp32(y->d), mall = qd_fp16_to_fp32(y->dmin);
    for (int j = 0; j < QK / 16; ++j) {
        const float d = dall * (y->scales[j] & 0xF);
        if (!d)
            continue;
        const float m = mall * (y->scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            int l = qd_nearest_int((x[16 * j + ii] + m) / d);
            L[16 * j + ii] = (uint8_t)QD_MAX(0, QD_MIN(3, l));
        }
    }
}

/* ---- Q2_K ---- */

QD_KFN void qd_ref_quantize_q2_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q2_K *y = (qd_block_q2_K *)dst;
    uint8_t L[QK], Laux[16];
    float weights[16], mins[QK / 16], scales[QK / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float *x = src + QK * i;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK / 16; ++j) {
            for (int l = 0; l < 16; ++l)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = qd_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15,
                                            true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK / 16; ++j)
                y[i].scales[j] = (uint8_t)qd_nearest_int(iscale * scales[j]);
            y[i].d = qd_fp32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = qd_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK / 16; ++j) {
                int l = qd_nearest_int(iscale * mins[j]);
                y[i].scales[j] = (uint8_t)(y[i].scales[j] | ((unsigned)l << 4));
            }
            y[i].dmin = qd_fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = qd_fp32_to_fp16(0.f);
        }
        q2_K_requantize(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

QD_KFN void qd_ref_quantize_q2_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q2_K *y = (qd_block_q2_K *)dst;
    uint8_t L[QK], Laux[16], Ls[QK / 16], Lm[QK / 16];
    float mins[QK / 16], scales[QK / 16], sw[QK / 16], weight[16];
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb; i++) {
            const float *x = src + r * ncols + QK * i;
            qd_block_q2_K *b = y + r * nb + i;
            memset(sw, 0, sizeof(sw));
            float sumx2 = 0;
            for (int j = 0; j < QK; ++j)
                sumx2 += x[j] * x[j];
            float sigma2 = sumx2 / QK;
            for (int j = 0; j < QK / 16; ++j) {
                const float *w = qw + QK * i + 16 * j;
                for (int l = 0; l < 16; ++l)
                    weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
                for (int l = 0; l < 16; ++l)
                    sw[j] += weight[l];
                scales[j] = qd_make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                                36);
            }
            float dm = qd_make_qp_quants(QK / 16, 15, scales, Ls, sw);
            float mm = qd_make_qp_quants(QK / 16, 15, mins, Lm, sw);
            b->d = qd_fp32_to_fp16(dm);
            b->dmin = qd_fp32_to_fp16(mm);
            for (int j = 0; j < QK / 16; ++j)
                b->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
            q2_K_requantize(x, b, L);
            pack_2bit(L, b->qs);
        }
    }
}

QD_KFN void qd_ref_dequantize_q2_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q2_K *x = (const qd_block_q2_K *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const float min = qd_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < QK; n += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        *y++ = dl * ((int8_t)((q[l + 16 * half] >> shift) & 3)) - ml;
                }
            }
            q += 32;
        }
    }
}

/* ---- Q3_K ---- */

QD_KFN static void q3_K_set_scale(uint8_t *scales, int j, int l)
{
    if (j < 8)
        scales[j] = (uint8_t)(l & 0xF);
    else
        scales[j - 8] = (uint8_t)(scales[j - 8] | ((l & 0xF) << 4));
    scales[j % 4 + 8] = (uint8_t)(scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
}

QD_KFN static int q3_K_get_scale(const uint8_t *scales, int j)
{
    int sc = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return (sc | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* Requantize with the stored scales, then split the third bit into hmask and pack the low two bits. */
QD_KFN static void q3_K_finish(const float *x, qd_block_q3_K *y, int8_t *L)
{
    const float dall = qd_fp16_to_fp32(y->d);
    for (int j = 0; j < QK / 16; ++j) {
        const int8_t sc = (int8_t)q3_K_get_scale(y->scales, j);
        const float d = dall * sc;
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = qd_nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(QD_MAX(-4, QD_MIN(3, l)) + 4);
        }
    }
    memset(y->hmask, 0, sizeof(y->hmask));
    int m = 0;
    uint8_t hm = 1;
    for (int j = 0; j < QK; ++j) {
        if (L[j] > 3) {
            y->hmask[m] |= hm;
            L[j] -= 4;
        }
        if (++m == QK / 8) {
            m = 0;
            hm = (uint8_t)(hm << 1);
        }
    }
    pack_2bit((const uint8_t *)L, y->qs);
}

QD_KFN void qd_ref_quantize_q3_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q3_K *y = (qd_block_q3_K *)dst;
    int8_t L[QK];
    float scales[QK / 16];
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float *x = src + QK * i;
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK / 16; ++j) {
            scales[j] = qd_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK / 16; ++j) {
                int8_t l = (int8_t)qd_nearest_int(iscale * scales[j]);
                l = (int8_t)(QD_MAX(-32, QD_MIN(31, l)) + 32);
                q3_K_set_scale(y[i].scales, j, l);
            }
            y[i].d = qd_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = qd_fp32_to_fp16(0.f);
        }
        q3_K_finish(x, &y[i], L);
    }
}

QD_KFN void qd_ref_quantize_q3_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q3_K *y = (qd_block_q3_K *)dst;
    int8_t L[QK], Ls[QK / 16];
    float scales[QK / 16], weight[16], sw[QK / 16];
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb; i++) {
            const float *x = src + r * ncols + QK * i;
            qd_block_q3_K *b = y + r * nb + i;
            float sumx2 = 0;
            for (int j = 0; j < QK; ++j)
                sumx2 += x[j] * x[j];
            float sigma2 = 2 * sumx2 / QK;
            for (int j = 0; j < QK / 16; ++j) {
                const float *w = qw + QK * i + 16 * j;
                for (int l = 0; l < 16; ++l)
                    weight[l] = w[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
                float sumw = 0;
                for (int l = 0; l < 16; ++l)
                    sumw += weight[l];
                sw[j] = sumw;
                scales[j] = qd_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
            }
            memset(b->scales, 0, 12);
            float d_block = qd_make_qx_quants(QK / 16, 32, scales, Ls, sw);
            for (int j = 0; j < QK / 16; ++j)
                q3_K_set_scale(b->scales, j, Ls[j]);
            b->d = qd_fp32_to_fp16(d_block);
            q3_K_finish(x, b, L);
        }
    }
}

QD_KFN void qd_ref_dequantize_q3_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q3_K *x = (const qd_block_q3_K *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d_all = qd_fp16_to_fp32(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK; n += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * q3_K_get_scale(x[i].scales, is++);
                    for (int l = 0; l < 16; ++l) {
                        const int k = l + 16 * half;
                        *y++ = dl * ((int8_t)((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
                    }
                }
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* ---- Q4_K and Q5_K ---- */

QD_KFN static void k4_set_scales(uint8_t *scales, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] = (uint8_t)(scales[j - 4] | ((ls >> 4) << 6));
        scales[j] = (uint8_t)(scales[j] | ((lm >> 4) << 6));
    }
}

QD_KFN static void k4_get_scales(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Requantize the 32-sub-blocks of Q4_K/Q5_K (nmax 15 or 31) with the stored d, dmin and 6-bit scales. */
QD_KFN static void k45_requantize(const float *x, qd_fp16 dh, qd_fp16 dminh, const uint8_t *scales, int nmax, uint8_t *L)
{
    for (int j = 0; j < QK / 32; ++j) {
        uint8_t sc, m;
        k4_get_scales(j, scales, &sc, &m);
        const float d = qd_fp16_to_fp32(dh) * sc;
        if (!d)
            continue;
        const float dm = qd_fp16_to_fp32(dminh) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = qd_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)QD_MAX(0, QD_MIN(nmax, l));
        }
    }
}

/* The reference (no imatrix) sub-block search of Q4_K/Q5_K and the 6-bit scale coding; fills scales, d, dmin. */
QD_KFN static void k45_ref_scales(const float *x, int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                           uint8_t *scales_out, qd_fp16 *d_out, qd_fp16 *dmin_out)
{
    uint8_t Laux[32];
    float weights[32], mins[QK / 32], scales[QK / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qd_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta, nstep,
                                        false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK / 32; ++j) {
        uint8_t ls = (uint8_t)qd_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)qd_nearest_int(inv_min * mins[j]);
        ls = QD_MIN(63, ls);
        lm = QD_MIN(63, lm);
        k4_set_scales(scales_out, j, ls, lm);
    }
    *d_out = qd_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = qd_fp32_to_fp16(max_min / 63.f);
}

/* The importance-weighted sub-block search of Q4_K/Q5_K. */
QD_KFN static void k45_imatrix_scales(const float *x, const float *qw, int nmax, uint8_t *L, uint8_t *scales_out,
                               qd_fp16 *d_out, qd_fp16 *dmin_out)
{
    uint8_t Laux[32], Ls[QK / 32], Lm[QK / 32];
    float weights[32], sw[QK / 32], mins[QK / 32], scales[QK / 32];
    float sum_x2 = 0;
    for (int l = 0; l < QK; ++l)
        sum_x2 += x[l] * x[l];
    float sigma2 = 2 * sum_x2 / QK;
    for (int j = 0; j < QK / 32; ++j) {
        const float *w = qw + 32 * j;
        for (int l = 0; l < 32; ++l)
            weights[l] = w[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l)
            sumw += weights[l];
        sw[j] = sumw;
        scales[j] = qd_make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
    }
    float d_block = qd_make_qp_quants(QK / 32, 63, scales, Ls, sw);
    float m_block = qd_make_qp_quants(QK / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK / 32; ++j)
        k4_set_scales(scales_out, j, QD_MIN(63, Ls[j]), QD_MIN(63, Lm[j]));
    *d_out = qd_fp32_to_fp16(d_block);
    *dmin_out = qd_fp32_to_fp16(m_block);
}

QD_KFN static void q4_K_pack(const uint8_t *L, uint8_t *q)
{
    for (int j = 0; j < QK; j += 64) {
        for (int l = 0; l < 32; ++l)
            q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
        q += 32;
    }
}

QD_KFN static void q5_K_pack(const uint8_t *L, uint8_t *ql, uint8_t *qh)
{
    memset(qh, 0, QK / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < QK; n += 64) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[n + j];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            int l2 = L[n + j + 32];
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
        ql += 32;
    }
}

QD_KFN void qd_ref_quantize_q4_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_K *y = (qd_block_q4_K *)dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float *x = src + QK * i;
        memset(y[i].scales, 0, sizeof(y[i].scales));
        k45_ref_scales(x, 15, -1.f, 0.1f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        k45_requantize(x, y[i].d, y[i].dmin, y[i].scales, 15, L);
        q4_K_pack(L, y[i].qs);
    }
}

QD_KFN void qd_ref_quantize_q4_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q4_K *y = (qd_block_q4_K *)dst;
    uint8_t L[QK];
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb; i++) {
            const float *x = src + r * ncols + QK * i;
            qd_block_q4_K *b = y + r * nb + i;
            memset(b->scales, 0, sizeof(b->scales));
            k45_imatrix_scales(x, qw + QK * i, 15, L, b->scales, &b->d, &b->dmin);
            k45_requantize(x, b->d, b->dmin, b->scales, 15, L);
            q4_K_pack(L, b->qs);
        }
    }
}

QD_KFN void qd_ref_dequantize_q4_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_K *x = (const qd_block_q4_K *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const uint8_t *q = x[i].qs;
        const float d = qd_fp16_to_fp32(x[i].d);
        const float min = qd_fp16_to_fp32(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK; j += 64) {
            k4_get_scales(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            k4_get_scales(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

QD_KFN void qd_ref_quantize_q5_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q5_K *y = (qd_block_q5_K *)dst;
    uint8_t L[QK];
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float *x = src + QK * i;
        memset(y[i].scales, 0, sizeof(y[i].scales));
        k45_ref_scales(x, 31, -0.5f, 0.1f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        k45_requantize(x, y[i].d, y[i].dmin, y[i].scales, 31, L);
        q5_K_pack(L, y[i].qs, y[i].qh);
    }
}

QD_KFN void qd_ref_quantize_q5_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q5_K *y = (qd_block_q5_K *)dst;
    uint8_t L[QK];
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++) {
        for (int64_t i = 0; i < nb; i++) {
            const float *x = src + r * ncols + QK * i;
            qd_block_q5_K *b = y + r * nb + i;
            memset(b->scales, 0, sizeof(b->scales));
            k45_imatrix_scales(x, qw + QK * i, 31, L, b->scales, &b->d, &b->dmin);
            k45_requantize(x, b->d, b->dmin, b->scales, 31, L);
            q5_K_pack(L, b->qs, b->qh);
        }
    }
}

QD_KFN void qd_ref_dequantize_q5_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_K *x = (const qd_block_q5_K *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const float d = qd_fp16_to_fp32(x[i].d);
        const float min = qd_fp16_to_fp32(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK; j += 64) {
            k4_get_scales(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            k4_get_scales(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l)
                *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l)
                *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* ---- Q6_K ---- */

QD_KFN static void q6_K_block(const float *x, qd_block_q6_K *y, const float *qw)
{
    int8_t L[QK];
    float scales[QK / 16];
    float max_scale = 0, max_abs_scale = 0;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float scale = qd_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : NULL);
        scales[ib] = scale;
        const float a = fabsf(scale);
        if (a > max_abs_scale) {
            max_abs_scale = a;
            max_scale = scale;
        }
    }
    if (max_abs_scale < QD_GROUP_MAX_EPS) {
        memset(y, 0, sizeof(*y));
        y->d = qd_fp32_to_fp16(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = qd_fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < QK / 16; ++ib)
        y->scales[ib] = (int8_t)QD_MIN(127, qd_nearest_int(iscale * scales[ib]));
    for (int j = 0; j < QK / 16; ++j) {
        float d = qd_fp16_to_fp32(y->d) * y->scales[j];
        if (!d)
            continue;
        for (int ii = 0; ii < 16; ++ii) {
            int l = qd_nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(QD_MAX(-32, QD_MIN(31, l)) + 32);
        }
    }
    uint8_t *ql = y->ql, *qh = y->qh;
    for (int j = 0; j < QK; j += 128) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = L[j + l + 0] & 0xF;
            const uint8_t q2 = L[j + l + 32] & 0xF;
            const uint8_t q3 = L[j + l + 64] & 0xF;
            const uint8_t q4 = L[j + l + 96] & 0xF;
            ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
        ql += 64;
        qh += 32;
    }
}

QD_KFN void qd_ref_quantize_q6_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q6_K *y = (qd_block_q6_K *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++)
        q6_K_block(src + QK * i, y + i, NULL);
}

QD_KFN void qd_ref_quantize_q6_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q6_K *y = (qd_block_q6_K *)dst;
    const int64_t nb = ncols / QK;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++)
            q6_K_block(src + r * ncols + QK * i, y + r * nb + i, qw + QK * i);
}

QD_KFN void qd_ref_dequantize_q6_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q6_K *x = (const qd_block_q6_K *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK; n += 128) {
            for (int l = 0; l < 32; ++l) {
                int is = l / 16;
                const int8_t q1 = (int8_t)(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                const int8_t q2 = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                const int8_t q3 = (int8_t)(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                const int8_t q4 = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

/* ---- Q8_K (activations of K-quant dot products; not a storage type) ---- */

QD_KFN void qd_ref_quantize_q8_K(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q8_K *y = (qd_block_q8_K *)dst;
    for (int64_t i = 0; i < nrows * ncols / QK; i++) {
        const float *x = src + QK * i;
        float max = 0, amax = 0;
        for (int j = 0; j < QK; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        memset(&y[i], 0, sizeof(y[i]));
        if (!amax)
            continue;
        const float iscale = -127.f / max;
        for (int j = 0; j < QK; ++j)
            y[i].qs[j] = (int8_t)QD_MIN(127, qd_nearest_int(iscale * x[j]));
        for (int j = 0; j < QK / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii)
                sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

QD_KFN void qd_ref_dequantize_q8_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q8_K *x = (const qd_block_q8_K *)src;
    for (int64_t i = 0; i < nrows * ncols / QK; i++)
        for (int j = 0; j < QK; ++j)
            dst[QK * i + j] = x[i].d * x[i].qs[j];
}
