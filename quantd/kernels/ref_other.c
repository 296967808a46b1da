/*
 * ref_other.c - reference kernels of the non-linear and ternary formats: IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0.
 * Algorithms: ../shared/FORMATS.md 3.5 (IQ4), and docs/FORMATS.md for MXFP4 and the ternary types.
 */
#include <math.h>

#include "kernels.h"
#include "ref_util.h"

/* ---- IQ4_NL / IQ4_XS ---- */

/*
 * One super-block of sb values in sub-blocks of 32 (sb = 32: IQ4_NL, one fp16 scale; sb = 256: IQ4_XS, an fp16
 * super-scale and 6-bit sub-scales). qw: sb importance weights or NULL. Writes *dh, q4[sb/2] and, for IQ4_XS,
 * scales_h/scales_l. Both types search with ntry = 7 (what ggml's row quantizer uses with or without an imatrix).
 */
QD_KFN static void iq4_block(int sb, const float *x, const float *qw, qd_fp16 *dh, uint8_t *q4, uint16_t *scales_h,
                      uint8_t *scales_l)
{
    const int8_t *values = qd_iq4nl_values;
    const int ntry = 7;
    uint8_t L[QD_QK_K];
    float weight[32], scales[QD_QK_K / 32];

    float sigma2 = 0;
    for (int j = 0; j < sb; ++j)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sb;

    memset(q4, 0, (size_t)sb / 2);
    *dh = qd_fp32_to_fp16(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ++ib) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        if (qw) {
            const float *w = qw + ib * 32;
            for (int j = 0; j < 32; ++j)
                weight[j] = w[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < 32; ++j)
                weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < 32; ++j) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < QD_GROUP_MAX_EPS) {
            scales[ib] = 0;
            memset(Lb, 0, 32);
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; ++j) {
            float al = id * xb[j];
            int l = qd_best_index_int8(16, values, al);
            Lb[j] = (uint8_t)l;
            float q = values[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; ++j) {
                float al = id * xb[j];
                int l = qd_best_index_int8(16, values, al);
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (sb > 32) {
        *scales_h = 0;
        float d = -max_scale / 32;
        *dh = qd_fp32_to_fp16(d);
        float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < sb / 32; ++ib) {
            int l = qd_nearest_int(id * scales[ib]);
            l = QD_MAX(-32, QD_MIN(31, l));
            float dl = d * l;
            float idl = dl ? 1 / dl : 0.f;
            uint8_t *Lb = L + ib * 32;
            const float *xb = x + ib * 32;
            for (int j = 0; j < 32; ++j)
                Lb[j] = (uint8_t)qd_best_index_int8(16, values, idl * xb[j]);
            l += 32;
            uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0)
                scales_l[ib / 2] = l_l;
            else
                scales_l[ib / 2] = (uint8_t)(scales_l[ib / 2] | (l_l << 4));
            *scales_h = (uint16_t)(*scales_h | (l_h << 2 * (ib % 8)));
        }
    } else {
        *dh = qd_fp32_to_fp16(scales[0]);
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; ++j)
            L[j] = (uint8_t)qd_best_index_int8(16, values, id * x[j]);
    }

    for (int i = 0; i < sb / 32; ++i)
        for (int j = 0; j < 16; ++j)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

QD_KFN static void iq4_nl_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_iq4_nl *y = (qd_block_iq4_nl *)dst;
    const int64_t nb = ncols / QD_QK4_NL;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++) {
            qd_block_iq4_nl *b = y + r * nb + i;
            qd_fp16 d;
            iq4_block(32, src + r * ncols + 32 * i, qw ? qw + 32 * i : NULL, &d, b->qs, NULL, NULL);
            b->d = d;
        }
}

QD_KFN void qd_ref_quantize_iq4_nl(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq4_nl_rows(src, dst, nrows, ncols, NULL);
}

QD_KFN void qd_ref_quantize_iq4_nl_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq4_nl_rows(src, dst, nrows, ncols, qw);
}

QD_KFN void qd_ref_dequantize_iq4_nl(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_iq4_nl *x = (const qd_block_iq4_nl *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; ++j) {
            dst[32 * i + j] = d * qd_iq4nl_values[x[i].qs[j] & 0xf];
            dst[32 * i + j + 16] = d * qd_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

QD_KFN static void iq4_xs_rows(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    qd_block_iq4_xs *y = (qd_block_iq4_xs *)dst;
    const int64_t nb = ncols / QD_QK_K;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t i = 0; i < nb; i++) {
            qd_block_iq4_xs *b = y + r * nb + i;
            qd_fp16 d;
            uint16_t sh;
            iq4_block(QD_QK_K, src + r * ncols + QD_QK_K * i, qw ? qw + QD_QK_K * i : NULL, &d, b->qs, &sh,
                      b->scales_l);
            b->d = d;
            b->scales_h = sh;
        }
}

QD_KFN void qd_ref_quantize_iq4_xs(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    iq4_xs_rows(src, dst, nrows, ncols, NULL);
}

QD_KFN void qd_ref_quantize_iq4_xs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw)
{
    iq4_xs_rows(src, dst, nrows, ncols, qw);
}

QD_KFN void qd_ref_dequantize_iq4_xs(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_iq4_xs *x = (const qd_block_iq4_xs *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const float d = qd_fp16_to_fp32(x[i].d);
        for (int ib = 0; ib < QD_QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; ++j) {
                y[j + 0] = dl * qd_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * qd_iq4nl_values[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

/* ---- MXFP4 (the importance matrix is ignored, as in ggml) ---- */

/* The E2M1 code whose value times e is nearest x (the first on ties). */
QD_KFN static inline int fp4_best_index(float x, float e)
{
    int best = 0;
    float best_err = fabsf(qd_fp4_values[0] * e - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(qd_fp4_values[i] * e - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

QD_KFN void qd_ref_quantize_mxfp4(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_mxfp4 *y = (qd_block_mxfp4 *)dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float *x = src + 32 * i;
        float amax = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j]))
                amax = fabsf(x[j]);
        /* shared exponent: floor(log2(amax)) - 2 (the largest E2M1 magnitude is 6 = 1.5 * 2^2), biased by 127;
         * the float-to-integer conversion then keeps the low byte, as a C cast does on the platforms we build */
        const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = qd_e8m0_to_fp32_half(e);
        y[i].e = e;
        for (int j = 0; j < 16; ++j) {
            const uint8_t q0 = (uint8_t)fp4_best_index(x[j], d);
            const uint8_t q1 = (uint8_t)fp4_best_index(x[j + 16], d);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

QD_KFN void qd_ref_dequantize_mxfp4(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_mxfp4 *x = (const qd_block_mxfp4 *)src;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        const float d = qd_e8m0_to_fp32_half(x[i].e);
        for (int j = 0; j < 16; ++j) {
            const int8_t v0 = qd_fp4_values[x[i].qs[j] & 0x0F];
            const int8_t v1 = qd_fp4_values[x[i].qs[j] >> 4];
            dst[32 * i + j] = v0 * d;
            dst[32 * i + j + 16] = v1 * d;
        }
    }
}

/* ---- NVFP4 (the importance matrix is ignored, as in ggml) ---- */

QD_KFN void qd_ref_quantize_nvfp4(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_nvfp4 *y = (qd_block_nvfp4 *)dst;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_NVFP4; i++) {
        for (int s = 0; s < QD_QK_NVFP4 / QD_QK_NVFP4_SUB; s++) {
            const float *xb = src + QD_QK_NVFP4 * i + QD_QK_NVFP4_SUB * s;
            float amax = 0;
            for (int j = 0; j < QD_QK_NVFP4_SUB; j++)
                if (amax < fabsf(xb[j]))
                    amax = fabsf(xb[j]);
            /* the largest E2M1 magnitude is 6 */
            const uint8_t ue = qd_fp32_to_ue4m3(amax / 6.0f);
            y[i].d[s] = ue;
            const float d = qd_ue4m3_to_fp32_half(ue);
            for (int j = 0; j < QD_QK_NVFP4_SUB / 2; ++j) {
                const uint8_t q0 = (uint8_t)fp4_best_index(xb[j], d);
                const uint8_t q1 = (uint8_t)fp4_best_index(xb[j + QD_QK_NVFP4_SUB / 2], d);
                y[i].qs[s * (QD_QK_NVFP4_SUB / 2) + j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
    }
}

QD_KFN void qd_ref_dequantize_nvfp4(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_nvfp4 *x = (const qd_block_nvfp4 *)src;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_NVFP4; i++) {
        for (int s = 0; s < QD_QK_NVFP4 / QD_QK_NVFP4_SUB; s++) {
            const float d = qd_ue4m3_to_fp32_half(x[i].d[s]);
            float *yb = dst + QD_QK_NVFP4 * i + QD_QK_NVFP4_SUB * s;
            for (int j = 0; j < QD_QK_NVFP4_SUB / 2; ++j) {
                const uint8_t b = x[i].qs[s * (QD_QK_NVFP4_SUB / 2) + j];
                yb[j] = qd_fp4_values[b & 0x0F] * d;
                yb[j + QD_QK_NVFP4_SUB / 2] = qd_fp4_values[b >> 4] * d;
            }
        }
    }
}

/* ---- TQ1_0 / TQ2_0 (ternary; the importance matrix is ignored, as in ggml) ---- */

QD_KFN static float ternary_scale(const float *x, qd_fp16 *dh)
{
    float amax = 0;
    for (int j = 0; j < QD_QK_K; j++)
        amax = QD_MAX(amax, fabsf(x[j]));
    *dh = qd_fp32_to_fp16(amax);
    return amax ? 1.0f / amax : 0.0f;
}

/* Trit of x: -1, 0, 1 -> 0, 1, 2 (lroundf: halves away from zero). */
QD_KFN static inline int trit(float x, float id) { return (int)lroundf(x * id) + 1; }

/* n trits (most significant first) as a base-3 fraction of 256, rounded up, so that the top trit can be read
 * back as (byte * 3) >> 8 after each multiply by 3. */
QD_KFN static inline uint8_t trits_to_byte(uint8_t q) { return (uint8_t)(((uint16_t)q * 256 + (243 - 1)) / 243); }

QD_KFN void qd_ref_quantize_tq1_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_tq1_0 *y = (qd_block_tq1_0 *)dst;
    const size_t nqs = sizeof(y->qs), nqh = sizeof(y->qh);
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float *x = src + QD_QK_K * i;
        const float id = ternary_scale(x, &y[i].d);
        /* 5 trits per byte: first 32 bytes (160 values), then 16 bytes (80 values) */
        size_t j = 0;
        for (; j < nqs - nqs % 32; j += 32) {
            for (size_t m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 5; ++n)
                    q = (uint8_t)(q * 3 + trit(x[m + n * 32], id));
                y[i].qs[j + m] = trits_to_byte(q);
            }
            x += 5 * 32;
        }
        for (; j < nqs; j += 16) {
            for (size_t m = 0; m < 16; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 5; ++n)
                    q = (uint8_t)(q * 3 + trit(x[m + n * 16], id));
                y[i].qs[j + m] = trits_to_byte(q);
            }
            x += 5 * 16;
        }
        /* 4 trits per byte in qh, shifted up to the top trit */
        for (size_t k = 0; k < nqh; ++k) {
            uint8_t q = 0;
            for (size_t m = 0; m < 4; ++m)
                q = (uint8_t)(q * 3 + trit(x[k + m * nqh], id));
            q = (uint8_t)(q * 3);
            y[i].qh[k] = trits_to_byte(q);
        }
    }
}

QD_KFN static inline float trit_value(uint8_t byte, uint8_t pow3, float d)
{
    uint8_t q = (uint8_t)(byte * pow3);
    int16_t xi = (int16_t)(((uint16_t)q * 3) >> 8);
    return (float)(xi - 1) * d;
}

QD_KFN void qd_ref_dequantize_tq1_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    static const uint8_t pow3[6] = {1, 3, 9, 27, 81, 243};
    const qd_block_tq1_0 *x = (const qd_block_tq1_0 *)src;
    float *y = (float *)dst;
    const size_t nqs = sizeof(x->qs), nqh = sizeof(x->qh);
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; ++i) {
        const float d = qd_fp16_to_fp32(x[i].d);
        size_t j = 0;
        for (; j < nqs - nqs % 32; j += 32)
            for (size_t n = 0; n < 5; ++n)
                for (size_t m = 0; m < 32; ++m)
                    *y++ = trit_value(x[i].qs[j + m], pow3[n], d);
        for (; j < nqs; j += 16)
            for (size_t n = 0; n < 5; ++n)
                for (size_t m = 0; m < 16; ++m)
                    *y++ = trit_value(x[i].qs[j + m], pow3[n], d);
        for (size_t n = 0; n < 4; ++n)
            for (size_t k = 0; k < nqh; ++k)
                *y++ = trit_value(x[i].qh[k], pow3[n], d);
    }
}

QD_KFN void qd_ref_quantize_tq2_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_tq2_0 *y = (qd_block_tq2_0 *)dst;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; i++) {
        const float *x = src + QD_QK_K * i;
        const float id = ternary_scale(x, &y[i].d);
        for (size_t j = 0; j < sizeof(y->qs); j += 32) {
            for (size_t m = 0; m < 32; ++m) {
                uint8_t q = 0;
                for (size_t n = 0; n < 4; ++n)
                    q = (uint8_t)(q + ((trit(x[m + n * 32], id) & 3) << (2 * n)));
                y[i].qs[j + m] = q;
            }
            x += 4 * 32;
        }
    }
}

QD_KFN void qd_ref_dequantize_tq2_0(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const qd_block_tq2_0 *x = (const qd_block_tq2_0 *)src;
    float *y = (float *)dst;
    for (int64_t i = 0; i < nrows * ncols / QD_QK_K; ++i) {
        const float d = qd_fp16_to_fp32(x[i].d);
        for (size_t j = 0; j < sizeof(x->qs); j += 32)
            for (size_t l = 0; l < 4; ++l)
                for (size_t m = 0; m < 32; ++m) {
                    int8_t q = (int8_t)((x[i].qs[j + m] >> (l * 2)) & 3);
                    *y++ = (float)(q - 1) * d;
                }
    }
}
