/*
 * deq.h - dequantizers shared by avx2.c and avx512.c: the reference's per-element expressions (the same float
 * operations, in the same order), arranged as branch-free loops of 16 or 32 lanes that the compiler vectorizes
 * for the including file's ISA (those files are built with -O3 and -ffp-contract=off; no reassociation is ever
 * allowed without -ffast-math, so every value keeps the reference's rounding). The tests compare bits.
 */
#ifndef QD_KERNELS_ARCH_X86_DEQ_H
#define QD_KERNELS_ARCH_X86_DEQ_H

#include <stdint.h>
#include <string.h>

#include "../../formats.h"

static void dq_dequantize_q8_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q8_0 *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        float *y = dst + 32 * i;
        for (int j = 0; j < 32; ++j)
            y[j] = (float)x[i].qs[j] * d;
    }
}

static void dq_dequantize_q4_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_0 *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        float *y = dst + 32 * i;
        for (int j = 0; j < 16; ++j) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dq_dequantize_q4_1(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_1 *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const float m = qd_fp16_to_fp32(x[i].m);
        float *y = dst + 32 * i;
        for (int j = 0; j < 16; ++j) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t dq_u32le(const uint8_t b[4])
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void dq_dequantize_q5_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_0 *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const uint32_t qh = dq_u32le(x[i].qh);
        float *y = dst + 32 * i;
        for (int j = 0; j < 16; ++j) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (float)(((x[i].qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (float)(((x[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void dq_dequantize_q5_1(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_1 *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        const float m = qd_fp16_to_fp32(x[i].m);
        const uint32_t qh = dq_u32le(x[i].qh);
        float *y = dst + 32 * i;
        for (int j = 0; j < 16; ++j) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (float)((x[i].qs[j] & 0x0F) | h0) * d + m;
            y[j + 16] = (float)((x[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

static inline void dq_k4_scale(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dq_dequantize_q4_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q4_K *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d = qd_fp16_to_fp32(x[i].d), min = qd_fp16_to_fp32(x[i].dmin);
        float *y = dst + QD_QK_K * i;
        for (int j = 0; j < 4; j++) {
            uint8_t sc, m;
            dq_k4_scale(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            dq_k4_scale(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            const uint8_t *q = x[i].qs + 32 * j;
            for (int l = 0; l < 32; ++l) {
                y[64 * j + l] = d1 * (float)(q[l] & 0xF) - m1;
                y[64 * j + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
            }
        }
    }
}

static void dq_dequantize_q5_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q5_K *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d = qd_fp16_to_fp32(x[i].d), min = qd_fp16_to_fp32(x[i].dmin);
        float *y = dst + QD_QK_K * i;
        for (int j = 0; j < 4; j++) {
            uint8_t sc, m;
            dq_k4_scale(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            dq_k4_scale(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            const uint8_t *ql = x[i].qs + 32 * j, *qh = x[i].qh;
            const int s1 = 2 * j, s2 = 2 * j + 1;
            for (int l = 0; l < 32; ++l) {
                y[64 * j + l] = d1 * (float)((ql[l] & 0xF) + (((qh[l] >> s1) & 1) << 4)) - m1;
                y[64 * j + 32 + l] = d2 * (float)((ql[l] >> 4) + (((qh[l] >> s2) & 1) << 4)) - m2;
            }
        }
    }
}

static void dq_dequantize_q6_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q6_K *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int n = 0; n < 2; n++) {
            float *y = dst + QD_QK_K * i + 128 * n;
            const uint8_t *ql = x[i].ql + 64 * n, *qh = x[i].qh + 32 * n;
            const int8_t *sc = x[i].scales + 8 * n;
            for (int h = 0; h < 2; h++) {
                const float s0 = d * sc[h + 0], s2 = d * sc[h + 2], s4 = d * sc[h + 4], s6 = d * sc[h + 6];
                for (int l = 16 * h; l < 16 * h + 16; ++l) {
                    const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l + 0] = s0 * (float)q1;
                    y[l + 32] = s2 * (float)q2;
                    y[l + 64] = s4 * (float)q3;
                    y[l + 96] = s6 * (float)q4;
                }
            }
        }
    }
}

static void dq_dequantize_q2_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q2_K *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d = qd_fp16_to_fp32(x[i].d), min = qd_fp16_to_fp32(x[i].dmin);
        float *y = dst + QD_QK_K * i;
        int is = 0;
        for (int n = 0; n < 2; n++) {
            const uint8_t *q = x[i].qs + 32 * n;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l)
                        y[l] = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                    y += 16;
                }
            }
        }
    }
}

static void dq_dequantize_q3_K(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_q3_K *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d_all = qd_fp16_to_fp32(x[i].d);
        const uint8_t *sc = x[i].scales;
        float *y = dst + QD_QK_K * i;
        int is = 0, bit = 0;
        for (int n = 0; n < 2; n++) {
            const uint8_t *q = x[i].qs + 32 * n;
            for (int shift = 0; shift < 8; shift += 2, bit++) {
                for (int half = 0; half < 2; half++, is++) {
                    const int s = is < 8 ? sc[is] & 0xF : sc[is - 8] >> 4;
                    const float dl = d_all * ((s | (((sc[8 + is % 4] >> (2 * (is / 4))) & 3) << 4)) - 32);
                    for (int l = 0; l < 16; ++l) {
                        const int k = l + 16 * half;
                        y[l] = dl * (float)(((q[k] >> shift) & 3) - (((x[i].hmask[k] >> bit) & 1) ^ 1) * 4);
                    }
                    y += 16;
                }
            }
        }
    }
}

static void dq_dequantize_iq4_nl(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_iq4_nl *x = src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        float *y = dst + 32 * i;
        for (int j = 0; j < 16; ++j) {
            y[j] = d * (float)qd_iq4nl_values[x[i].qs[j] & 0xf];
            y[j + 16] = d * (float)qd_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

static void dq_dequantize_iq4_xs(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_iq4_xs *x = src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            float *y = dst + QD_QK_K * i + 32 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * (float)qd_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * (float)qd_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

#endif
