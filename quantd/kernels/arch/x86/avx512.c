/*
 * avx512.c - the AVX-512 (F, BW, VL) kernel table: 16 blocks per lane group for the searches (lanes.h); the
 * legacy quantizers, conversions and dequantizers are the shared 256-bit code, EVEX-encoded here. Built with
 * -mavx512f -mavx512bw -mavx512vl -mavx2 -mf16c -ffp-contract=off (quantd/module.mk).
 */
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define QD_LANES 16
#define LQ_SQRT(v) ((lq_vf)_mm512_sqrt_ps((__m512)(v)))
#define LQ_RINT(v) ((lq_vf)_mm512_roundscale_ps((__m512)(v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
#define LQ_MINF(a, b) ((lq_vf)_mm512_min_ps((__m512)(a), (__m512)(b)))
#define LQ_MAXF(a, b) ((lq_vf)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define LQ_ANY(m) (_mm512_test_epi32_mask((__m512i)(m), (__m512i)(m)) != 0)
#define LQ_LOOKUP16(tab, idx) ((lq_vf)_mm512_permutexvar_ps((__m512i)(idx), _mm512_loadu_ps(tab)))

#include "../../kernels.h"
#include "deq.h"
#include "lanes.h"
#include "legacy.h"
#include "groups.h"

/* lanes.h's 16 x 16 transpose: unpack, shuffle, then two rounds of 128-bit chunk shuffles. */
static inline void lq_arch_transpose(lq_vf rv[16])
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = (__m512)rv[i];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int q = 0; q < 16; q += 4) { /* r[q + j]: rows q..q+3, column 4 * lane + j */
        r[q] = _mm512_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm512_shuffle_ps(t[q], t[q + 2], 0xEE);
        r[q + 2] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm512_shuffle_ps(t[q + 1], t[q + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
        t[j] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[4 + j] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        rv[i] = (lq_vf)t[i];
}

static inline void lq_arch_store_low_bytes(uint8_t *dst, lq_vi v)
{
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtepi32_epi8((__m512i)v));
}

#define QD_SIMD_TABLE qd_kernels_avx512
#define QD_SIMD_VARIANT QD_KERNELS_AVX512
#define QD_SIMD_NAME "avx512"
#include "table.h"
#endif
