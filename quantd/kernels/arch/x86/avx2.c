/*
 * avx2.c - the AVX2 (+F16C) kernel table: 8 blocks per lane group for the searches (lanes.h), 256-bit legacy
 * quantizers and conversions (legacy.h), vectorized dequantizers (deq.h). Built with -mavx2 -mf16c
 * -ffp-contract=off (quantd/module.mk); entries left NULL fall back to the reference.
 */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>

#define QD_LANES 8
#define LQ_SQRT(v) ((lq_vf)_mm256_sqrt_ps((__m256)(v)))
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

#include "../../kernels.h"
#include "deq.h"
#include "lanes.h"
#include "legacy.h"
#include "groups.h"

#define QD_SIMD_TABLE qd_kernels_avx2
#define QD_SIMD_VARIANT QD_KERNELS_AVX2
#define QD_SIMD_NAME "avx2"
#include "table.h"
#endif
