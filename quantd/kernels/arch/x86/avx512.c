/*
 * avx512.c - the AVX-512 (F, BW, VL) kernel table: 16 blocks per lane group for the searches (lanes.h); the
 * legacy quantizers, conversions and dequantizers are the shared 256-bit code, EVEX-encoded here. Built with
 * -mavx512f -mavx512bw -mavx512vl -mavx2 -mf16c -ffp-contract=off (quantd/module.mk).
 */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#define QD_LANES 16
#define LQ_SQRT(v) ((lq_vf)_mm512_sqrt_ps((__m512)(v)))
#define LQ_MINF(a, b) ((lq_vf)_mm512_min_ps((__m512)(a), (__m512)(b)))
#define LQ_MAXF(a, b) ((lq_vf)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define LQ_ANY(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#define LQ_LOOKUP16(tab, idx) ((lq_vf)_mm512_permutexvar_ps((__m512i)(idx), _mm512_loadu_ps(tab)))

#include "../../kernels.h"
#include "deq.h"
#include "lanes.h"
#include "legacy.h"
#include "groups.h"

#define QD_SIMD_TABLE qd_kernels_avx512
#define QD_SIMD_VARIANT QD_KERNELS_AVX512
#define QD_SIMD_NAME "avx512"
#include "table.h"
#endif
