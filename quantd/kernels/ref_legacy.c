/*
 * ref_legacy.c - reference kernels of the plain types (F32, F16, BF16) and the legacy 32-blocks (Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0), with and without an importance matrix. Algorithms: ../shared/FORMATS.md 3.2 and 3.6.
 */
#include <float.h>
#include <math.h>

#include "kernels.h"
#include "ref_util.h"

/* ---- plain types ---- */

QD_KFN void qd_ref_quantize_f32(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    memcpy(dst, src, (size_t)(nrows * ncols) * sizeof(float));
}

QD_KFN void qd_ref_dequantize_f32(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    memcpy(dst, src, (size_t)(nrows * ncols) * sizeof(float));
}

QD_KFN void qd_ref_quantize_f16(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    uint8_t *out = (uint8_t *)dst;
    for (int64_t i = 0; i < nrows * ncols; i++) {
        qd_fp16 h = qd_fp32_to_fp16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

QD_KFN void qd_ref_dequantize_f16(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const uint8_t *in = (const uint8_t *)src;
    for (int64_t i = 0; i < nrows * ncols; i++) {
        qd_fp16 h;
        memcpy(&h, in + 2 * i, 2);
        dst[i] = qd_fp16_to_fp32(h);
    }
}

QD_KFN void qd_ref_quantize_bf16(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    uint8_t *out = (uint8_t *)dst;
    for (int64_t i = 0; i < nrows * ncols; i++) {
        qd_bf16 h = qd_fp32_to_bf16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

QD_KFN void qd_ref_dequantize_bf16(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const uint8_t *in = (const uint8_t *)src;
    for (int64_t i = 0; i < nrows * ncols; i++) {
        qd_bf16 h;
        memcpy(&h, in + 2 * i, 2);
        dst[i] = qd_bf16_to_fp32(h);
    }
}

/* ---- helpers ---- */

/* The value with the largest magnitude (the first one on ties). */
QD_KFN static inline float signed_absmax(const float *x, int n, float *amax_out)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax_out)
        *amax_out = amax;
    return max;
}

/* Per-row importance weights of the legacy types: qw * sqrt(sigma2 + x^2), sigma2 the row's mean square. */
QD_KFN static float row_sigma2(const float *x, int64_t n)
{
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j)
        sum_x2 += x[j] * x[j];
    return sum_x2 / n;
}

QD_KFN static void pack_q5_bits(const uint8_t *L, uint8_t qs[16], uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        uint8_t lo = L[j], hi = L[j + 16];
        qs[j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
        qh |= ((lo & 0x10u) >> 4) << j;
        qh |= ((hi & 0x10u) >> 4) << (j + 16);
    }
    for (int b = 0; b < 4; b++)
        qh_out[b] = (uint8_t)(qh >> (8 * b));
}

QD_KFN static inline uint32_t load_u32le(const uint8_t b[4])
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* ---- Q4_0 ---- */

QD_KFN static void q4_0_block(const float *x, qd_block_q4_0 *y)
{
    const float max = signed_absmax(x, 32, NULL);
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = qd_fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
        const float x0 = x[j] * id;
        const float x1 = x[j + 16] * id;
        const uint8_t q0 = (uint8_t)QD_MIN(15, qd_trunc_i8(x0 + 8.5f));
        const uint8_t q1 = (uint8_t)QD_MIN(15, qd_trunc_i8(x1 + 8.5f));
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

QD_KFN void qd_ref_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_0 *y = (qd_block_q4_0 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++)
        q4_0_block(src + 32 * i, y + i);
}

QD_KFN void qd_ref_quantize_q4_0_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q4_0 *y = (qd_block_q4_0 *)dst;
    float weight[32];
    int8_t L[32];
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * ncols;
        const float sigma2 = row_sigma2(x, ncols);
        for (int64_t ib = 0; ib < ncols / 32; ++ib) {
            const float *xb = x + 32 * ib;
            const float *wb = qw + 32 * ib;
            for (int j = 0; j < 32; ++j)
                weight[j] = wb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
            float d = qd_make_qx_quants(32, 8, xb, L, weight);
            qd_block_q4_0 *b = y + r * (ncols / 32) + ib;
            b->d = qd_fp32_to_fp16(d);
            for (int j = 0; j < 16; ++j)
                b->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
    }
}

QD_KFN void qd_ref_dequantize_q4_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_0 *x = (const qd_block_q4_0 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            const int v0 = (x[i].qs[j] & 0x0F) - 8;
            const int v1 = (x[i].qs[j] >> 4) - 8;
            dst[32 * i + j] = v0 * d;
            dst[32 * i + j + 16] = v1 * d;
        }
    }
}

/* ---- Q4_1 ---- */

QD_KFN static void q4_1_block(const float *x, qd_block_q4_1 *y)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y->d = qd_fp32_to_fp16(d);
    y->m = qd_fp32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
        const float x0 = (x[j] - min) * id;
        const float x1 = (x[j + 16] - min) * id;
        const uint8_t q0 = (uint8_t)QD_MIN(15, qd_trunc_i8(x0 + 0.5f));
        const uint8_t q1 = (uint8_t)QD_MIN(15, qd_trunc_i8(x1 + 0.5f));
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

QD_KFN void qd_ref_quantize_q4_1(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_1 *y = (qd_block_q4_1 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++)
        q4_1_block(src + 32 * i, y + i);
}

QD_KFN void qd_ref_quantize_q4_1_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q4_1 *y = (qd_block_q4_1 *)dst;
    float weight[32];
    uint8_t L[32], Laux[32];
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * ncols;
        const float sigma2 = row_sigma2(x, ncols);
        for (int64_t ib = 0; ib < ncols / 32; ++ib) {
            const float *xb = x + 32 * ib;
            const float *wb = qw + 32 * ib;
            for (int j = 0; j < 32; ++j)
                weight[j] = wb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
            float min;
            float d = qd_make_qkx3_quants(32, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
            qd_block_q4_1 *b = y + r * (ncols / 32) + ib;
            b->d = qd_fp32_to_fp16(d);
            b->m = qd_fp32_to_fp16(-min);
            for (int j = 0; j < 16; ++j)
                b->qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
        }
    }
}

QD_KFN void qd_ref_dequantize_q4_1(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_1 *x = (const qd_block_q4_1 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const float m = qd_fp16_to_fp32(x[i].m);
        for (int j = 0; j < 16; ++j) {
            const int v0 = x[i].qs[j] & 0x0F;
            const int v1 = x[i].qs[j] >> 4;
            dst[32 * i + j] = v0 * d + m;
            dst[32 * i + j + 16] = v1 * d + m;
        }
    }
}

/* ---- Q5_0 ---- */

QD_KFN static void q5_0_block(const float *x, qd_block_q5_0 *y)
{
    const float max = signed_absmax(x, 32, NULL);
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    uint8_t L[32];
    y->d = qd_fp32_to_fp16(d);
    for (int j = 0; j < 32; ++j)
        L[j] = (uint8_t)QD_MIN(31, qd_trunc_i8(x[j] * id + 16.5f));
    pack_q5_bits(L, y->qs, y->qh);
}

QD_KFN void qd_ref_quantize_q5_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q5_0 *y = (qd_block_q5_0 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++)
        q5_0_block(src + 32 * i, y + i);
}

QD_KFN void qd_ref_quantize_q5_0_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q5_0 *y = (qd_block_q5_0 *)dst;
    float weight[32];
    int8_t L[32];
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * ncols;
        const float sigma2 = row_sigma2(x, ncols);
        for (int64_t ib = 0; ib < ncols / 32; ++ib) {
            const float *xb = x + 32 * ib;
            const float *wb = qw + 32 * ib;
            for (int j = 0; j < 32; ++j)
                weight[j] = wb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
            float d = qd_make_qx_quants(32, 16, xb, L, weight);
            qd_block_q5_0 *b = y + r * (ncols / 32) + ib;
            b->d = qd_fp32_to_fp16(d);
            pack_q5_bits((const uint8_t *)L, b->qs, b->qh);
        }
    }
}

QD_KFN void qd_ref_dequantize_q5_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_0 *x = (const qd_block_q5_0 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            const int v0 = ((x[i].qs[j] & 0x0F) | h0) - 16;
            const int v1 = ((x[i].qs[j] >> 4) | h1) - 16;
            dst[32 * i + j] = v0 * d;
            dst[32 * i + j + 16] = v1 * d;
        }
    }
}

/* ---- Q5_1 ---- */

QD_KFN static void q5_1_block(const float *x, qd_block_q5_1 *y)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    uint8_t L[32];
    y->d = qd_fp32_to_fp16(d);
    y->m = qd_fp32_to_fp16(min);
    for (int j = 0; j < 32; ++j)
        L[j] = qd_trunc_u8((x[j] - min) * id + 0.5f);
    pack_q5_bits(L, y->qs, y->qh);
}

QD_KFN void qd_ref_quantize_q5_1(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q5_1 *y = (qd_block_q5_1 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++)
        q5_1_block(src + 32 * i, y + i);
}

QD_KFN void qd_ref_quantize_q5_1_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_q5_1 *y = (qd_block_q5_1 *)dst;
    float weight[32];
    uint8_t L[32], Laux[32];
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * ncols;
        const float sigma2 = row_sigma2(x, ncols);
        for (int64_t ib = 0; ib < ncols / 32; ++ib) {
            const float *xb = x + 32 * ib;
            const float *wb = qw + 32 * ib;
            for (int j = 0; j < 32; ++j)
                weight[j] = wb[j] * sqrtf(sigma2 + xb[j] * xb[j]);
            float min;
            float d = qd_make_qkx3_quants(32, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
            qd_block_q5_1 *b = y + r * (ncols / 32) + ib;
            b->d = qd_fp32_to_fp16(d);
            b->m = qd_fp32_to_fp16(-min);
            pack_q5_bits(L, b->qs, b->qh);
        }
    }
}

QD_KFN void qd_ref_dequantize_q5_1(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_1 *x = (const qd_block_q5_1 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const float m = qd_fp16_to_fp32(x[i].m);
        const uint32_t qh = load_u32le(x[i].qh);
        for (int j = 0; j < 16; ++j) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            const int v0 = (x[i].qs[j] & 0x0F) | h0;
            const int v1 = (x[i].qs[j] >> 4) | h1;
            dst[32 * i + j] = v0 * d + m;
            dst[32 * i + j + 16] = v1 * d + m;
        }
    }
}

/* ---- Q8_0 (the importance matrix is ignored, as in ggml) ---- */

QD_KFN void qd_ref_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q8_0 *y = (qd_block_q8_0 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float *x = src + 32 * i;
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = QD_MAX(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qd_fp32_to_fp16(d);
        for (int j = 0; j < 32; ++j)
            y[i].qs[j] = qd_trunc_i8(roundf(x[j] * id));
    }
}

QD_KFN void qd_ref_dequantize_q8_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q8_0 *x = (const qd_block_q8_0 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 32; ++j)
            dst[32 * i + j] = x[i].qs[j] * d;
    }
}
