/*
 * groups.h - Q8_0 and Q4_0 a group of blocks at a time: 8 blocks (AVX2) or 16 (AVX-512) share one reduction of
 * their block maxima, one vector division for their scales and one fp16 conversion, where legacy.h spends a
 * horizontal maximum and two scalar divisions on every block. Included by avx2.c and avx512.c after legacy.h
 * (whose per-block kernels take the tail of a row range and any group with a subnormal scale). Also here: the
 * input check of qd_quantize_rows (gr_within), 8 or 16 values an instruction. Each width supplies the same few
 * primitives (gr_block_max, gr_hmax, gr_inverse, gr_q8_block, ...); the kernels are written once, at the end.
 *
 * Bit-identity with ref_legacy.c:
 *  - the block maximum is order-independent, and the scales are the reference's single IEEE operations, lane-wise
 *    (d = amax / 127 or max / -8, id = 1.0f / d, or 0 where d is 0); the fp16 scale is vcvtps2ph, as lg_fp16
 *    (finite inputs: the kernels never see NaN or Inf);
 *  - Q8_0 rounds x * id half away from zero as trunc(v + copysign(0x1.fffffep-2f, v)): equal to roundf(v) for every
 *    float of magnitude up to 2^22 (checked once over all of them; test_kernels_simd checks the half-integers'
 *    neighbourhoods), and |x * id| <= 127 * (1 + 2^-23)^2 here, so the result fits an int8 and the saturating
 *    narrowing (vpmovsdb / packs) is the reference's (int8_t) store;
 *  - Q4_0 is min(15, trunc(x * id + 8.5f)) as in the reference, with x * id + 8.5f within a few ulps of [0.5, 16.5],
 *    where the truncation to int32 and the reference's (int8_t) agree;
 *  - Q4_0's signed maximum is the first value of the block's largest magnitude (the reference's strict-compare
 *    scan), or +0 when every value is zero: the block's maximum and minimum (reduced 16 or 8 blocks at a time, as
 *    the magnitudes are for Q8_0) say which sign holds that magnitude, and only a block where both signs hold it
 *    is scanned for the first;
 *  - both bounds on x * id need 1 / d to be accurate, i.e. d a normal float: a group where some d is subnormal
 *    (amax below about 1.5e-36) goes through legacy.h's per-block path, which follows the reference to the byte
 *    whatever the magnitudes (tests/unit/test_kernels_simd.c has such blocks, alone and mixed into groups).
 */
#ifndef QD_KERNELS_ARCH_X86_GROUPS_H
#define QD_KERNELS_ARCH_X86_GROUPS_H

#include <float.h>
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../../formats.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)

#define GR_N 16 /* blocks per group */
typedef __m512 gr_vf;

/* Whether none of 1024 values has magnitude bits (sign shifted out) above lim2 (see gr_within). */
static inline bool gr_run_ok(const float *x, uint32_t lim2)
{
    __m512i m0 = _mm512_setzero_si512(), m1 = m0, m2 = m0, m3 = m0;
    for (int j = 0; j < 1024; j += 64) {
        m0 = _mm512_max_epu32(m0, _mm512_slli_epi32(_mm512_loadu_si512(x + j), 1));
        m1 = _mm512_max_epu32(m1, _mm512_slli_epi32(_mm512_loadu_si512(x + j + 16), 1));
        m2 = _mm512_max_epu32(m2, _mm512_slli_epi32(_mm512_loadu_si512(x + j + 32), 1));
        m3 = _mm512_max_epu32(m3, _mm512_slli_epi32(_mm512_loadu_si512(x + j + 48), 1));
    }
    __m512i m = _mm512_max_epu32(_mm512_max_epu32(m0, m1), _mm512_max_epu32(m2, m3));
    return !_mm512_cmpgt_epu32_mask(m, _mm512_set1_epi32((int)lim2));
}

/* |x| of the block's 32 values, maximum lane-wise: 16 partial maxima */
static inline __m512 gr_block_max(const float *x)
{
    const __m512i mag = _mm512_set1_epi32(0x7fffffff);
    __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x), mag));
    __m512 b = _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(x + 16), mag));
    return _mm512_max_ps(a, b);
}

/* The block's 32 values, maximum and minimum lane-wise: 16 partials of each (Q4_0's signed maximum, below). */
static inline void gr_block_maxmin(const float *x, __m512 *mx, __m512 *mn)
{
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    *mx = _mm512_max_ps(a, b);
    *mn = _mm512_min_ps(a, b);
}

/* 16 vectors of partials -> one vector whose lane b is OP (max or min) of m[b]'s lanes: gr_hmax, gr_hmin. */
#define GR_HREDUCE(name, OP)                                                                                           \
    static inline __m512 name(const __m512 *m)                                                                         \
    {                                                                                                                  \
        __m512 r1[8], r2[4];                                                                                           \
        for (int p = 0; p < 8; p++) /* 128-bit chunks: block 2p in chunks 0-1, block 2p+1 in chunks 2-3 */             \
            r1[p] = OP(_mm512_shuffle_f32x4(m[2 * p], m[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),                          \
                       _mm512_shuffle_f32x4(m[2 * p], m[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));                         \
        for (int q = 0; q < 4; q++) /* chunk c: block 4q + c, 4 partials */                                            \
            r2[q] = OP(_mm512_shuffle_f32x4(r1[2 * q], r1[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),                        \
                       _mm512_shuffle_f32x4(r1[2 * q], r1[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));                       \
        /* a 4x4 reduction within each chunk: lane j of chunk c ends as the result of block 4j + c */                  \
        __m512 u0 = OP(_mm512_unpacklo_ps(r2[0], r2[1]), _mm512_unpackhi_ps(r2[0], r2[1]));                            \
        __m512 u1 = OP(_mm512_unpacklo_ps(r2[2], r2[3]), _mm512_unpackhi_ps(r2[2], r2[3]));                            \
        __m512 v = OP(_mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(1, 0, 1, 0)),                                            \
                     _mm512_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 2, 3, 2)));                                           \
        return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), v);     \
    }
GR_HREDUCE(gr_hmax, _mm512_max_ps)
GR_HREDUCE(gr_hmin, _mm512_min_ps)
#undef GR_HREDUCE

/* lane-wise d ? 1 / d : 0; *bad gets whether some d is subnormal (see above) */
static inline __m512 gr_inverse(__m512 d, int *bad)
{
    const __m512 zero = _mm512_setzero_ps();
    __mmask16 nz = _mm512_cmp_ps_mask(d, zero, _CMP_NEQ_OQ);
    __m512 ad = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(d), _mm512_set1_epi32(0x7fffffff)));
    *bad = (nz & _mm512_cmp_ps_mask(ad, _mm512_set1_ps(FLT_MIN), _CMP_LT_OQ)) != 0;
    return _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d);
}

static inline void gr_halves(__m512 d, qd_fp16 *h)
{
    _mm256_storeu_si256((__m256i *)h, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* d / c for a constant c, lane-wise */
static inline gr_vf gr_divc(gr_vf d, float c) { return _mm512_div_ps(d, _mm512_set1_ps(c)); }

static inline void gr_store(float *p, gr_vf v) { _mm512_storeu_ps(p, v); }
static inline gr_vf gr_load(const float *p) { return _mm512_loadu_ps(p); }

/* Lane-wise from the blocks' maxima and minima: the maximum where only it has the largest magnitude (-mn < mx),
 * the minimum where only it has (-mn > mx), +0 where both are zeros; *tie gets the lanes where +amax and -amax
 * both occur (amax != 0), left +0 here. */
static inline gr_vf gr_signed_max(gr_vf mx, gr_vf mn, uint32_t *tie)
{
    const __m512 nmn = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(mn), _mm512_set1_epi32(INT32_MIN)));
    const __mmask16 neg = _mm512_cmp_ps_mask(nmn, mx, _CMP_GT_OQ), pos = _mm512_cmp_ps_mask(mx, nmn, _CMP_GT_OQ);
    *tie = _mm512_cmp_ps_mask(nmn, mx, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_NEQ_OQ);
    return _mm512_mask_mov_ps(_mm512_maskz_mov_ps(pos, mx), neg, mn);
}

/* The 32 values of a Q8_0 block times id, rounded half away from zero (|x * id| <= 127.00004), into qs. */
static inline void gr_q8_block(const float *x, float id, int8_t *qs)
{
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i sgn = _mm512_set1_epi32((int)0x80000000u), h = _mm512_castps_si512(_mm512_set1_ps(0x1.fffffep-2f));
    for (int k = 0; k < 2; k++) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + 16 * k), vid);
        __m512 a = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), sgn), h));
        _mm_storeu_si128((__m128i *)(qs + 16 * k), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(v, a))));
    }
}

/* Whether the first of the block's values of magnitude amax (!= 0) is negative. */
static inline uint32_t gr_first_negative(const float *x, float amax)
{
    const __m512i a = _mm512_castps_si512(_mm512_set1_ps(amax)), mag = _mm512_set1_epi32(0x7fffffff);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 16);
    uint32_t eq = _mm512_cmpeq_epi32_mask(_mm512_and_si512(x0, mag), a) |
                  (uint32_t)_mm512_cmpeq_epi32_mask(_mm512_and_si512(x1, mag), a) << 16;
    uint32_t sg = _mm512_cmplt_epi32_mask(x0, zero) | (uint32_t)_mm512_cmplt_epi32_mask(x1, zero) << 16;
    return (sg >> __builtin_ctz(eq)) & 1u;
}

/* Q4_0 levels min(15, trunc(x * id + 8.5f)) of a block, two to a byte (element j low, j + 16 high), into qs. */
static inline void gr_q4_block(const float *x, float id, uint8_t *qs)
{
    const __m512 vid = _mm512_set1_ps(id), bias = _mm512_set1_ps(8.5f);
    const __m512i top = _mm512_set1_epi32(15);
    __m512i q[2];
    for (int k = 0; k < 2; k++) {
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * k), vid), bias);
        q[k] = _mm512_min_epi32(_mm512_cvttps_epi32(v), top);
    }
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtepi32_epi8(_mm512_or_si512(q[0], _mm512_slli_epi32(q[1], 4))));
}

#else /* AVX2 */

#define GR_N 8
typedef __m256 gr_vf;

static inline bool gr_run_ok(const float *x, uint32_t lim2)
{
    __m256i m0 = _mm256_setzero_si256(), m1 = m0, m2 = m0, m3 = m0;
    for (int j = 0; j < 1024; j += 32) {
        m0 = _mm256_max_epu32(m0, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + j)), 1));
        m1 = _mm256_max_epu32(m1, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + j + 8)), 1));
        m2 = _mm256_max_epu32(m2, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + j + 16)), 1));
        m3 = _mm256_max_epu32(m3, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(x + j + 24)), 1));
    }
    __m256i m = _mm256_max_epu32(_mm256_max_epu32(m0, m1), _mm256_max_epu32(m2, m3));
    const __m256i vl = _mm256_set1_epi32((int)lim2);
    /* unsigned m <= vl in every lane: max(m, vl) is vl */
    return _mm256_testc_si256(_mm256_cmpeq_epi32(_mm256_max_epu32(m, vl), vl), _mm256_set1_epi32(-1));
}

/* |x| of the block's 32 values, maximum lane-wise: 8 partial maxima */
static inline __m256 gr_block_max(const float *x)
{
    __m256 a = _mm256_max_ps(lg_abs(_mm256_loadu_ps(x)), lg_abs(_mm256_loadu_ps(x + 8)));
    __m256 b = _mm256_max_ps(lg_abs(_mm256_loadu_ps(x + 16)), lg_abs(_mm256_loadu_ps(x + 24)));
    return _mm256_max_ps(a, b);
}

static inline void gr_block_maxmin(const float *x, __m256 *mx, __m256 *mn)
{
    __m256 v[4];
    lg_load32(x, v);
    *mx = _mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3]));
    *mn = _mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3]));
}

/* 8 vectors of partials -> one vector whose lane b is OP (max or min) of m[b]'s lanes: gr_hmax, gr_hmin. */
#define GR_HREDUCE(name, OP)                                                                                           \
    static inline __m256 name(const __m256 *m)                                                                         \
    {                                                                                                                  \
        __m256 r[4];                                                                                                   \
        for (int p = 0; p < 4; p++) /* 128-bit halves: block 2p in the low, block 2p+1 in the high, 4 partials */      \
            r[p] = OP(_mm256_permute2f128_ps(m[2 * p], m[2 * p + 1], 0x20),                                            \
                      _mm256_permute2f128_ps(m[2 * p], m[2 * p + 1], 0x31));                                           \
        /* a 4x4 reduction within each half: lane j of half c ends as the result of block 2j + c */                    \
        __m256 u0 = OP(_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));                                \
        __m256 u1 = OP(_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));                                \
        __m256 v = OP(_mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(1, 0, 1, 0)),                                            \
                     _mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 2, 3, 2)));                                           \
        return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));                                \
    }
GR_HREDUCE(gr_hmax, _mm256_max_ps)
GR_HREDUCE(gr_hmin, _mm256_min_ps)
#undef GR_HREDUCE

static inline __m256 gr_inverse(__m256 d, int *bad)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 nz = _mm256_cmp_ps(d, zero, _CMP_NEQ_OQ);
    *bad = _mm256_movemask_ps(_mm256_and_ps(nz, _mm256_cmp_ps(lg_abs(d), _mm256_set1_ps(FLT_MIN), _CMP_LT_OQ))) != 0;
    return _mm256_and_ps(nz, _mm256_div_ps(_mm256_set1_ps(1.0f), d)); /* (1/0 = inf where d is 0: masked out) */
}

static inline void gr_halves(__m256 d, qd_fp16 *h)
{
    _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static inline gr_vf gr_divc(gr_vf d, float c) { return _mm256_div_ps(d, _mm256_set1_ps(c)); }

static inline void gr_store(float *p, gr_vf v) { _mm256_storeu_ps(p, v); }
static inline gr_vf gr_load(const float *p) { return _mm256_loadu_ps(p); }

static inline gr_vf gr_signed_max(gr_vf mx, gr_vf mn, uint32_t *tie)
{
    const __m256 nmn = _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f));
    const __m256 neg = _mm256_cmp_ps(nmn, mx, _CMP_GT_OQ), pos = _mm256_cmp_ps(mx, nmn, _CMP_GT_OQ);
    *tie = (uint32_t)_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(nmn, mx, _CMP_EQ_OQ),
                                                      _mm256_cmp_ps(mx, _mm256_setzero_ps(), _CMP_NEQ_OQ)));
    return _mm256_blendv_ps(_mm256_and_ps(pos, mx), mn, neg);
}

static inline void gr_q8_block(const float *x, float id, int8_t *qs)
{
    const __m256 vid = _mm256_set1_ps(id), sgn = _mm256_set1_ps(-0.0f), h = _mm256_set1_ps(0x1.fffffep-2f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid);
        q[k] = _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_or_ps(_mm256_and_ps(v, sgn), h)));
    }
    __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i *)qs, _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

static inline uint32_t gr_first_negative(const float *x, float amax)
{
    __m256 xv[4];
    const __m256 a = _mm256_set1_ps(amax);
    uint32_t eq = 0, sg = 0;
    lg_load32(x, xv);
    for (int k = 0; k < 4; k++) {
        eq |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(lg_abs(xv[k]), a, _CMP_EQ_OQ)) << (8 * k);
        sg |= (uint32_t)_mm256_movemask_ps(xv[k]) << (8 * k);
    }
    return (sg >> __builtin_ctz(eq)) & 1u;
}

/* (x * id + 8.5f lies in [0.5, 16.5] here, see the top: the truncation needs no sign extension and the levels
 * no masking, unlike legacy.h's lg_levels_sym, which takes any block) */
static inline void gr_q4_block(const float *x, float id, uint8_t *qs)
{
    const __m256 vid = _mm256_set1_ps(id), bias = _mm256_set1_ps(8.5f);
    const __m256i top = _mm256_set1_epi32(15);
    __m256i q[4];
    for (int k = 0; k < 4; k++) {
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid), bias);
        q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(v), top);
    }
    /* element j low, j + 16 high: bytes 0-7 from q[0] | q[2] << 4, 8-15 from q[1] | q[3] << 4 */
    lg_store_u8x16(qs, _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)),
                   _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)));
}

#endif

/* ---- the kernels, written once over the width's primitives above ---- */

/* The input check (dispatch.c all_within): with the sign shifted out, the magnitude bits order as unsigned
 * integers like the magnitudes, NaN and Inf above every finite value; the running maximum of 1024 values is
 * compared once. */
static bool gr_within(const float *x, int64_t n, float max_abs)
{
    uint32_t lim;
    memcpy(&lim, &max_abs, sizeof(lim));
    int64_t i = 0;
    for (; i + 1024 <= n; i += 1024)
        if (!gr_run_ok(x + i, lim << 1))
            return false;
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof(u));
        if ((u << 1) > (lim << 1))
            return false;
    }
    return true;
}

static void gr_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q8_0 *y = dst;
    const int64_t nb = nrows * ncols / 32;
    int64_t i = 0;
    for (; i + GR_N <= nb; i += GR_N) {
        const float *x = src + 32 * i;
        gr_vf m[GR_N];
        float id[GR_N];
        qd_fp16 h[GR_N];
        int bad;
        for (int b = 0; b < GR_N; b++)
            m[b] = gr_block_max(x + 32 * b);
        const gr_vf d = gr_divc(gr_hmax(m), 127.0f);
        gr_store(id, gr_inverse(d, &bad));
        if (bad) {
            lg_quantize_q8_0(x, y + i, 1, 32 * GR_N);
            continue;
        }
        gr_halves(d, h);
        for (int b = 0; b < GR_N; b++) {
            y[i + b].d = h[b];
            gr_q8_block(x + 32 * b, id[b], y[i + b].qs);
        }
    }
    if (i < nb)
        lg_quantize_q8_0(src + 32 * i, y + i, 1, 32 * (nb - i));
}

static void gr_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t ncols)
{
    qd_block_q4_0 *y = dst;
    const int64_t nb = nrows * ncols / 32;
    int64_t i = 0;
    for (; i + GR_N <= nb; i += GR_N) {
        const float *x = src + 32 * i;
        gr_vf pmx[GR_N], pmn[GR_N];
        float id[GR_N];
        qd_fp16 h[GR_N];
        uint32_t tie; /* bit b: block b holds both +amax and -amax */
        int bad;
        for (int b = 0; b < GR_N; b++)
            gr_block_maxmin(x + 32 * b, &pmx[b], &pmn[b]);
        /* the reference's max, the first value of the largest magnitude: the maximum where only a positive value
         * has it, the minimum where only a negative one has it, +0 where every value is a zero; where both signs
         * have it (rare in weights), the first of them decides */
        const gr_vf mx = gr_hmax(pmx), mn = gr_hmin(pmn);
        gr_vf smax = gr_signed_max(mx, mn, &tie);
        if (tie) {
            float a[GR_N], lo[GR_N], sm[GR_N];
            gr_store(a, mx);
            gr_store(lo, mn);
            gr_store(sm, smax);
            for (; tie; tie &= tie - 1) {
                const int b = __builtin_ctz(tie);
                sm[b] = gr_first_negative(x + 32 * b, a[b]) ? lo[b] : a[b];
            }
            smax = gr_load(sm);
        }
        const gr_vf d = gr_divc(smax, -8.0f);
        gr_store(id, gr_inverse(d, &bad));
        if (bad) {
            lg_quantize_q4_0(x, y + i, 1, 32 * GR_N);
            continue;
        }
        gr_halves(d, h);
        for (int b = 0; b < GR_N; b++) {
            y[i + b].d = h[b];
            gr_q4_block(x + 32 * b, id[b], y[i + b].qs);
        }
    }
    if (i < nb)
        lg_quantize_q4_0(src + 32 * i, y + i, 1, 32 * (nb - i));
}

#endif
