/*
 * avx2.c - the AVX2 (+F16C) kernel table: 8 blocks per lane group for the searches (lanes.h), 256-bit legacy
 * quantizers and conversions (legacy.h), vectorized dequantizers (deq.h). Built with -mavx2 -mf16c
 * -ffp-contract=off (quantd/module.mk); entries left NULL fall back to the reference.
 */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define QD_LANES 8
#define LQ_SQRT(v) ((lq_vf)_mm256_sqrt_ps((__m256)(v)))
#define LQ_RINT(v) ((lq_vf)_mm256_round_ps((__m256)(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
#define LQ_MINF(a, b) ((lq_vf)_mm256_min_ps((__m256)(a), (__m256)(b)))
#define LQ_MAXF(a, b) ((lq_vf)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define LQ_ANY(m) (_mm256_movemask_ps((__m256)(m)) != 0)
/* 16-entry lane lookup from two 8-entry permutes */
#define LQ_LOOKUP16(tab, idx)                                                                                      \
    ((lq_vf)_mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(tab), (__m256i)(idx)),                       \
                             _mm256_permutevar8x32_ps(_mm256_loadu_ps((tab) + 8), (__m256i)(idx)),                 \
                             _mm256_castsi256_ps(_mm256_slli_epi32((__m256i)(idx), 28))))
/* sub-blocks searched together: 16 ymm registers hold two sub-blocks' state */
#define LQ_MAXNS 2
/* make_qx candidates per sweep: 2 x 5 sums with the constants are one more than the 16 ymm registers (gcc keeps one
 * sum on the stack); 4 and 6 measured the same as 5 on Q6_K */
#define LQ_QX_BATCH 5

#include "../../kernels.h"
#include "deq.h"
#include "lanes.h"
#include "legacy.h"
#include "groups.h"

/* lanes.h's 8 x 8 transpose: unpack, shuffle, then the 128-bit halves. */
static inline void lq_arch_transpose(lq_vf rv[8])
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++)
        r[i] = (__m256)rv[i];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int q = 0; q < 8; q += 4) { /* r[q + j]: rows q..q+3, column 4 * half + j */
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x20);
        t[4 + j] = _mm256_permute2f128_ps(r[j], r[4 + j], 0x31);
    }
    for (int i = 0; i < 8; i++)
        rv[i] = (lq_vf)t[i];
}

static inline void lq_arch_store_low_bytes(uint8_t *dst, lq_vi v)
{
    /* bytes 0, 4, 8, 12 of each 128-bit half, then the two halves' words side by side */
    const __m256i low = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12, -1,
                                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8((__m256i)v, low),
                                                  _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
    _mm_storel_epi64((__m128i *)dst, _mm256_castsi256_si128(b));
}

#define QD_SIMD_TABLE qd_kernels_avx2
#define QD_SIMD_VARIANT QD_KERNELS_AVX2
#define QD_SIMD_NAME "avx2"
#include "table.h"
#endif
