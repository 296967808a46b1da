/*
 * legacy.h - 256-bit (AVX2 + F16C) kernels shared by avx2.c and avx512.c: the legacy 32-blocks without an
 * importance matrix (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), vectorized within a block, and the F16/BF16 conversions.
 * Everything is static; the including file's -m flags decide the encoding (VEX or EVEX).
 *
 * Bit-identity with ref_legacy.c, step by step:
 *  - the block maximum (|x| or signed) is order-independent; where the reference keeps the first value that
 *    reaches it (signed absmax; min/max when the extreme is a zero that may carry either sign), the first lane
 *    equal to it is taken, which is the value the reference keeps;
 *  - products and sums are the same single IEEE operations (no FMA, -ffp-contract=off);
 *  - qd_trunc_i8/qd_trunc_u8 are the low byte of cvttps2dq, which returns INT_MIN (low byte 0) for NaN and
 *    out-of-range values exactly as the scalar definition asks;
 *  - roundf (half away from zero) is trunc(v) plus sign(v) when |v - trunc(v)| >= 0.5 (the difference is exact);
 *  - the fp16 block scales go through F16C's vcvtps2ph (lg_fp16), which gives qd_fp32_to_fp16's bits for every
 *    non-NaN float (all 2^32 checked); a NaN takes the scalar conversion.
 * F16 uses F16C: vcvtph2ps is exact and quiets NaNs as qd_fp16_to_fp32 does; vcvtps2ph with round-to-nearest-even
 * agrees with qd_fp32_to_fp16 on every non-NaN float, and NaN inputs are patched to the reference's 0x7e00.
 * The test checks all 2^16 halves and edge floats against the reference.
 */
#ifndef QD_KERNELS_ARCH_X86_LEGACY_H
#define QD_KERNELS_ARCH_X86_LEGACY_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../../formats.h"

/* qd_fp32_to_fp16 through F16C: the same bits for every non-NaN float (checked on all 2^32 inputs). */
static inline qd_fp16 lg_fp16(float f)
{
    if (f != f)
        return qd_fp32_to_fp16(f);
    return (qd_fp16)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline __m256 lg_abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float lg_hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

static inline float lg_hmin(__m256 v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* Index of the first of 32 values equal (==) to v. */
static inline int lg_first_eq(const __m256 *x, float v)
{
    const __m256 b = _mm256_set1_ps(v);
    uint32_t m = 0;
    for (int k = 0; k < 4; k++)
        m |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(x[k], b, _CMP_EQ_OQ)) << (8 * k);
    return m ? __builtin_ctz(m) : 0;
}

static inline void lg_load32(const float *x, __m256 *v)
{
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_loadu_ps(x + 8 * k);
}

/* The low byte of cvttps2dq, sign-extended (qd_trunc_i8). */
static inline __m256i lg_trunc_i8(__m256 v)
{
    __m256i t = _mm256_cvttps_epi32(v);
    return _mm256_srai_epi32(_mm256_slli_epi32(t, 24), 24);
}

/* 4 x 8 int32 (each in int8 range) to 32 int8 in order. */
static inline void lg_store_i8x32(void *dst, __m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = _mm256_packs_epi16(ab, cd);
    r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, r);
}

/* 2 x 8 int32 (each 0..255) to 16 bytes in order. */
static inline void lg_store_u8x16(void *dst, __m256i a, __m256i b)
{
    __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    __m128i r = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)dst, r);
}

/* The signed value of largest magnitude, first on ties; +0 when all are zero (as the reference). */
static inline float lg_signed_absmax(const __m256 *x)
{
    __m256 m = _mm256_max_ps(_mm256_max_ps(lg_abs(x[0]), lg_abs(x[1])), _mm256_max_ps(lg_abs(x[2]), lg_abs(x[3])));
    const float amax = lg_hmax(m);
    if (amax == 0.0f)
        return 0.0f;
    const __m256 b = _mm256_set1_ps(amax);
    uint32_t mask = 0;
    for (int k = 0; k < 4; k++)
        mask |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(lg_abs(x[k]), b, _CMP_EQ_OQ)) << (8 * k);
    float xs[32];
    memcpy(xs, x, sizeof(xs));
    return xs[__builtin_ctz(mask)];
}

/* min and max of 32 values as the reference's strict-compare scan keeps them (first of equal values). */
static inline void lg_minmax(const __m256 *x, float *min_out, float *max_out)
{
    __m256 mn = _mm256_min_ps(_mm256_min_ps(x[0], x[1]), _mm256_min_ps(x[2], x[3]));
    __m256 mx = _mm256_max_ps(_mm256_max_ps(x[0], x[1]), _mm256_max_ps(x[2], x[3]));
    float min = lg_hmin(mn), max = lg_hmax(mx);
    float xs[32];
    memcpy(xs, x, sizeof(xs));
    if (min == 0.0f)
        min = xs[lg_first_eq(x, 0.0f)];
    if (max == 0.0f)
        max = xs[lg_first_eq(x, 0.0f)];
    *min_out = min;
    *max_out = max;
}

/* ---- Q8_0 ---- */

static void lg_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q8_0 *y = dst;
    const __m256 sgn = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        __m256 x[4];
        lg_load32(src + 32 * i, x);
        __m256 m = _mm256_max_ps(_mm256_max_ps(lg_abs(x[0]), lg_abs(x[1])), _mm256_max_ps(lg_abs(x[2]), lg_abs(x[3])));
        const float amax = lg_hmax(m);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lg_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_mul_ps(x[k], vid);
            __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 frac = lg_abs(_mm256_sub_ps(v, t));
            __m256 away =
                _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ), _mm256_or_ps(one, _mm256_and_ps(v, sgn)));
            q[k] = lg_trunc_i8(_mm256_add_ps(t, away));
        }
        lg_store_i8x32(y[i].qs, q[0], q[1], q[2], q[3]);
    }
}

/* ---- Q4_0, Q5_0 (symmetric) and Q4_1, Q5_1 (with a min) ---- */

/* Levels of a Q4_0/Q5_0 block: min(top, trunc_i8(x * id + bias)) as uint8 values in 4 x 8 int32. */
static inline void lg_levels_sym(const __m256 *x, float id, float bias, int top, __m256i *q)
{
    const __m256 vid = _mm256_set1_ps(id), vb = _mm256_set1_ps(bias);
    const __m256i vt = _mm256_set1_epi32(top), ff = _mm256_set1_epi32(0xff);
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_and_si256(_mm256_min_epi32(vt, lg_trunc_i8(_mm256_add_ps(_mm256_mul_ps(x[k], vid), vb))), ff);
}

static inline void lg_pack_nibbles(const __m256i *q, uint8_t *qs)
{
    const __m256i ff = _mm256_set1_epi32(0xff);
    __m256i a = _mm256_and_si256(_mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)), ff);
    __m256i b = _mm256_and_si256(_mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)), ff);
    lg_store_u8x16(qs, a, b);
}

/* Q5 bit packing: low nibbles as Q4, bit 4 of element j to bit j of qh. */
static inline void lg_pack_q5(const __m256i *q, uint8_t *qs, uint8_t *qh)
{
    const __m256i lo = _mm256_set1_epi32(0x0f);
    __m256i n[4];
    uint32_t h = 0;
    for (int k = 0; k < 4; k++) {
        n[k] = _mm256_and_si256(q[k], lo);
        h |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q[k], 27))) << (8 * k);
    }
    lg_pack_nibbles(n, qs);
    for (int b = 0; b < 4; b++)
        qh[b] = (uint8_t)(h >> (8 * b));
}

static void lg_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_0 *y = dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        __m256 x[4];
        __m256i q[4];
        lg_load32(src + 32 * i, x);
        const float max = lg_signed_absmax(x);
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lg_fp16(d);
        lg_levels_sym(x, id, 8.5f, 15, q);
        lg_pack_nibbles(q, y[i].qs);
    }
}

static void lg_quantize_q5_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q5_0 *y = dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        __m256 x[4];
        __m256i q[4];
        lg_load32(src + 32 * i, x);
        const float max = lg_signed_absmax(x);
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lg_fp16(d);
        lg_levels_sym(x, id, 16.5f, 31, q);
        lg_pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Levels of a Q4_1/Q5_1 block: trunc_i8((x - min) * id + 0.5f), clamped to top (Q4_1) or not (Q5_1, as u8). */
static inline void lg_levels_min(const __m256 *x, float min, float id, int top, __m256i *q)
{
    const __m256 vid = _mm256_set1_ps(id), vm = _mm256_set1_ps(min), h = _mm256_set1_ps(0.5f);
    const __m256i vt = _mm256_set1_epi32(top), ff = _mm256_set1_epi32(0xff);
    for (int k = 0; k < 4; k++) {
        __m256i t = lg_trunc_i8(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(x[k], vm), vid), h));
        if (top < 255)
            t = _mm256_min_epi32(vt, t);
        q[k] = _mm256_and_si256(t, ff);
    }
}

static void lg_quantize_q4_1(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_1 *y = dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        __m256 x[4];
        __m256i q[4];
        lg_load32(src + 32 * i, x);
        float min, max;
        lg_minmax(x, &min, &max);
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lg_fp16(d);
        y[i].m = lg_fp16(min);
        lg_levels_min(x, min, id, 15, q);
        lg_pack_nibbles(q, y[i].qs);
    }
}

static void lg_quantize_q5_1(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q5_1 *y = dst;
    for (int64_t i = 0; i < nrows * ncols / 32; i++) {
        __m256 x[4];
        __m256i q[4];
        lg_load32(src + 32 * i, x);
        float min, max;
        lg_minmax(x, &min, &max);
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = lg_fp16(d);
        y[i].m = lg_fp16(min);
        lg_levels_min(x, min, id, 255, q);
        lg_pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* ---- F16 / BF16 ---- */

static void lg_quantize_f16(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    uint8_t *out = dst;
    const int64_t n = nrows * ncols;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; k++) {
                qd_fp16 h = qd_fp32_to_fp16(src[i + k]);
                memcpy(out + 2 * (i + k), &h, 2);
            }
            continue;
        }
        _mm_storeu_si128((__m128i *)(out + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; i++) {
        qd_fp16 h = qd_fp32_to_fp16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

/* F16 -> F32 of n values (vcvtph2ps: exact, NaNs quieted as qd_fp16_to_fp32 does), returning the largest magnitude
 * among them: the unsigned maximum of the halves' magnitude bits (NaN's above Inf's above every finite one),
 * converted. Two more instructions per 16 values, where the input check of qd_quantize_rows would read the floats
 * again (dispatch.c calls it for every F16 conversion: the table's f16_bound). */
static float lg_f16_bound(const void *src, float *dst, int64_t n)
{
    const uint8_t *in = src;
    const __m128i mag = _mm_set1_epi16(0x7fff);
    __m128i m = _mm_setzero_si128();
    int64_t i = 0;
#ifdef __AVX512F__
    __m256i m2 = _mm256_setzero_si256();
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(in + 2 * i));
        m2 = _mm256_max_epu16(m2, _mm256_and_si256(h, _mm256_broadcastsi128_si256(mag)));
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    m = _mm_max_epu16(_mm256_castsi256_si128(m2), _mm256_extracti128_si256(m2, 1));
#endif
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(in + 2 * i));
        m = _mm_max_epu16(m, _mm_and_si128(h, mag));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    /* the largest of the 8 lanes: the complement of the smallest complement (phminposuw) */
    uint16_t top = (uint16_t)~_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(m, _mm_set1_epi16(-1))));
    for (; i < n; i++) {
        qd_fp16 h;
        memcpy(&h, in + 2 * i, 2);
        dst[i] = qd_fp16_to_fp32(h);
        if ((h & 0x7fffu) > top)
            top = (uint16_t)(h & 0x7fffu);
    }
    return qd_fp16_to_fp32(top);
}

/* The table's F16 dequantizer: the same conversion (qd_dequantize_rows takes the bound's path for F16 itself). */
static void lg_dequantize_f16(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    (void)lg_f16_bound(src, dst, nrows * ncols);
}

static void lg_quantize_bf16(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    uint8_t *out = dst;
    const int64_t n = nrows * ncols;
    int64_t i = 0;
    const __m256i abs = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1), rb = _mm256_set1_epi32(0x7fff), q = _mm256_set1_epi32(64);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(src + i + 8 * k));
            __m256i hi = _mm256_srli_epi32(u, 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), inf);
            __m256i rounded = _mm256_srli_epi32(
                _mm256_add_epi32(u, _mm256_add_epi32(rb, _mm256_and_si256(hi, one))), 16);
            r[k] = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, q), nan);
        }
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xD8);
        _mm256_storeu_si256((__m256i *)(out + 2 * i), p);
    }
    for (; i < n; i++) {
        qd_bf16 h = qd_fp32_to_bf16(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

static void lg_dequantize_bf16(const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    const uint8_t *in = src;
    const int64_t n = nrows * ncols;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(h, 16));
    }
    for (; i < n; i++) {
        qd_bf16 h;
        memcpy(&h, in + 2 * i, 2);
        dst[i] = qd_bf16_to_fp32(h);
    }
}

#endif
