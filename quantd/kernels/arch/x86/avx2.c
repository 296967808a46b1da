/*
 * avx2.c - the AVX2 (+F16C) kernel table: 8 blocks per lane group for the searches (lanes.h), 256-bit legacy
 * quantizers and conversions (legacy.h), vectorized dequantizers (deq.h). Built with -mavx2 -mf16c
 * -ffp-contract=off (quantd/module.mk); entries left NULL fall back to the reference.
 */
#if defined(__x86_64__) && defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>

#define QD_LANES 8
#define LQ_SQRT(v) ((lq_vf)_mm256_sqrt_ps((__m256)(v)))
#define LQ_ANY(m) (_mm256_movemask_ps((__m256)(m)) != 0)

#include "../../kernels.h"
#include "deq.h"
#include "lanes.h"
#include "legacy.h"

#define QD_SIMD_TABLE qd_kernels_avx2
#define QD_SIMD_VARIANT QD_KERNELS_AVX2
#define QD_SIMD_NAME "avx2"
#include "table.h"
#endif
