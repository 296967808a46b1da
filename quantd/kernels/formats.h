/*
 * formats.h - the ggml block layouts, byte for byte, and the scalar conversions every variant shares.
 *
 * Plain C with no libqd dependency, so SIMD files and (later) .cu files include it as is. Every struct is
 * little-endian, packed by construction (only uint8_t/uint16_t/float fields in an order with no padding) and
 * checked with _Static_assert against the size ggml gives it. Field order follows ggml-common.h: the bytes are
 * the GGUF tensor bytes.
 */
#ifndef QD_KERNELS_FORMATS_H
#define QD_KERNELS_FORMATS_H

#include <stdint.h>
#include <string.h>

/*
 * QD_KFN marks a function of the scalar reference and QD_KTAB a table it reads. In C both are empty. quantd/cuda/
 * compiles the same reference sources as CUDA C++, where they make the functions and tables device code: the GPU
 * runs the reference itself, so its bytes cannot drift from it (nvcc -fmad=false matches -ffp-contract=off).
 */
#ifdef __CUDACC__
#define QD_KFN __device__
#define QD_KTAB __device__
#define QD_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define QD_KFN
#define QD_KTAB
#define QD_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#define QD_QK4_0 32
#define QD_QK4_1 32
#define QD_QK5_0 32
#define QD_QK5_1 32
#define QD_QK8_0 32
#define QD_QK4_NL 32
#define QD_QK_MXFP4 32
#define QD_QK_K 256
#define QD_K_SCALE_SIZE 12

typedef uint16_t qd_fp16; /* IEEE binary16 bits */
typedef uint16_t qd_bf16; /* bfloat16 bits */

/* Q4_0: x = d * (q - 8); element j < 16 in the low nibble of qs[j], element j + 16 in the high nibble. */
typedef struct qd_block_q4_0 {
    qd_fp16 d;
    uint8_t qs[QD_QK4_0 / 2];
} qd_block_q4_0;
QD_STATIC_ASSERT(sizeof(qd_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* Q4_1: x = d * q + m. */
typedef struct qd_block_q4_1 {
    qd_fp16 d;
    qd_fp16 m;
    uint8_t qs[QD_QK4_1 / 2];
} qd_block_q4_1;
QD_STATIC_ASSERT(sizeof(qd_block_q4_1) == 20, "q4_1 block is 20 bytes");

/* Q5_0: x = d * (q - 16); bit 4 of element j is bit j of qh (a little-endian u32). */
typedef struct qd_block_q5_0 {
    qd_fp16 d;
    uint8_t qh[4];
    uint8_t qs[QD_QK5_0 / 2];
} qd_block_q5_0;
QD_STATIC_ASSERT(sizeof(qd_block_q5_0) == 22, "q5_0 block is 22 bytes");

/* Q5_1: x = d * q + m. */
typedef struct qd_block_q5_1 {
    qd_fp16 d;
    qd_fp16 m;
    uint8_t qh[4];
    uint8_t qs[QD_QK5_1 / 2];
} qd_block_q5_1;
QD_STATIC_ASSERT(sizeof(qd_block_q5_1) == 24, "q5_1 block is 24 bytes");

/* Q8_0: x = d * q. */
typedef struct qd_block_q8_0 {
    qd_fp16 d;
    int8_t qs[QD_QK8_0];
} qd_block_q8_0;
QD_STATIC_ASSERT(sizeof(qd_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* MXFP4: an E8M0 shared exponent and 32 E2M1 codes (nibble order as Q4_0). */
typedef struct qd_block_mxfp4 {
    uint8_t e;
    uint8_t qs[QD_QK_MXFP4 / 2];
} qd_block_mxfp4;
QD_STATIC_ASSERT(sizeof(qd_block_mxfp4) == 17, "mxfp4 block is 17 bytes");

/* NVFP4: 64 values in 4 sub-blocks of 16, each with a UE4M3 scale, and E2M1 codes (per sub-block: element j < 8
 * in the low nibble of byte j, element j + 8 in the high nibble). */
#define QD_QK_NVFP4 64
#define QD_QK_NVFP4_SUB 16
typedef struct qd_block_nvfp4 {
    uint8_t d[QD_QK_NVFP4 / QD_QK_NVFP4_SUB];
    uint8_t qs[QD_QK_NVFP4 / 2];
} qd_block_nvfp4;
QD_STATIC_ASSERT(sizeof(qd_block_nvfp4) == 36, "nvfp4 block is 36 bytes");

/* Q2_K: 16 sub-blocks of 16; scales[j] = sc | m << 4; x = d * sc * q - dmin * m. */
typedef struct qd_block_q2_K {
    uint8_t scales[QD_QK_K / 16];
    uint8_t qs[QD_QK_K / 4];
    qd_fp16 d;
    qd_fp16 dmin;
} qd_block_q2_K;
QD_STATIC_ASSERT(sizeof(qd_block_q2_K) == 84, "q2_K block is 84 bytes");

/* Q3_K: 16 sub-blocks of 16 with 6-bit signed scales; the third bit of each quant in hmask. */
typedef struct qd_block_q3_K {
    uint8_t hmask[QD_QK_K / 8];
    uint8_t qs[QD_QK_K / 4];
    uint8_t scales[12];
    qd_fp16 d;
} qd_block_q3_K;
QD_STATIC_ASSERT(sizeof(qd_block_q3_K) == 110, "q3_K block is 110 bytes");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in scales[12]. */
typedef struct qd_block_q4_K {
    qd_fp16 d;
    qd_fp16 dmin;
    uint8_t scales[QD_K_SCALE_SIZE];
    uint8_t qs[QD_QK_K / 2];
} qd_block_q4_K;
QD_STATIC_ASSERT(sizeof(qd_block_q4_K) == 144, "q4_K block is 144 bytes");

/* Q5_K: as Q4_K plus the fifth bit of every quant in qh. */
typedef struct qd_block_q5_K {
    qd_fp16 d;
    qd_fp16 dmin;
    uint8_t scales[QD_K_SCALE_SIZE];
    uint8_t qh[QD_QK_K / 8];
    uint8_t qs[QD_QK_K / 2];
} qd_block_q5_K;
QD_STATIC_ASSERT(sizeof(qd_block_q5_K) == 176, "q5_K block is 176 bytes");

/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * sc * (q - 32). */
typedef struct qd_block_q6_K {
    uint8_t ql[QD_QK_K / 2];
    uint8_t qh[QD_QK_K / 4];
    int8_t scales[QD_QK_K / 16];
    qd_fp16 d;
} qd_block_q6_K;
QD_STATIC_ASSERT(sizeof(qd_block_q6_K) == 210, "q6_K block is 210 bytes");

/* Q8_K: activations of the K-quant dot products (not a storage type). */
typedef struct qd_block_q8_K {
    float d;
    int8_t qs[QD_QK_K];
    int16_t bsums[QD_QK_K / 16];
} qd_block_q8_K;
QD_STATIC_ASSERT(sizeof(qd_block_q8_K) == 292, "q8_K block is 292 bytes");

/* IQ4_NL: x = d * K[q] with the fixed non-linear table; nibble order as Q4_0. */
typedef struct qd_block_iq4_nl {
    qd_fp16 d;
    uint8_t qs[QD_QK4_NL / 2];
} qd_block_iq4_nl;
QD_STATIC_ASSERT(sizeof(qd_block_iq4_nl) == 18, "iq4_nl block is 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32 sharing IQ4_NL's table, 6-bit sub-scales (low 4 bits in scales_l, high 2 in
 * scales_h). */
typedef struct qd_block_iq4_xs {
    qd_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[QD_QK_K / 64];
    uint8_t qs[QD_QK_K / 2];
} qd_block_iq4_xs;
QD_STATIC_ASSERT(sizeof(qd_block_iq4_xs) == 136, "iq4_xs block is 136 bytes");

/* TQ1_0: ternary, 5 trits per byte in qs (base-3 fixed point), 4 per byte in qh. */
typedef struct qd_block_tq1_0 {
    uint8_t qs[(QD_QK_K - 4 * QD_QK_K / 64) / 5];
    uint8_t qh[QD_QK_K / 64];
    qd_fp16 d;
} qd_block_tq1_0;
QD_STATIC_ASSERT(sizeof(qd_block_tq1_0) == 54, "tq1_0 block is 54 bytes");

/* TQ2_0: ternary, 2 bits per value. */
typedef struct qd_block_tq2_0 {
    uint8_t qs[QD_QK_K / 4];
    qd_fp16 d;
} qd_block_tq2_0;
QD_STATIC_ASSERT(sizeof(qd_block_tq2_0) == 66, "tq2_0 block is 66 bytes");

/* The 16 levels of IQ4_NL and IQ4_XS. */
static QD_KTAB const int8_t qd_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                           1,    13,   25,  38,  53,  69,  89,  113};

/* E2M1 values, doubled (so they are integers), shared by MXFP4 and NVFP4. */
static QD_KTAB const int8_t qd_fp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

QD_KFN static inline uint32_t qd_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

QD_KFN static inline float qd_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* binary16 -> binary32, exact. */
QD_KFN static inline float qd_fp16_to_fp32(qd_fp16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in binary32 */
        float v = (float)mant * 0x1p-24f;
        return qd_f32_from_bits(qd_f32_bits(v) | sign);
    }
    if (exp == 31)
        return qd_f32_from_bits(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    return qd_f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* binary32 -> binary16, round to nearest, ties to even; overflow gives +-Inf, NaN gives a quiet NaN (0x7e00). */
QD_KFN static inline qd_fp16 qd_fp32_to_fp16(float f)
{
    uint32_t x = qd_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (qd_fp16)(sign | 0x7e00u);
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return (qd_fp16)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* normal binary16 */
        uint32_t h = ((((ax >> 23) - 112) << 10) | ((ax & 0x7fffffu) >> 13));
        uint32_t rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (qd_fp16)(sign | h);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero */
        return sign;
    /* subnormal binary16: count units of 2^-24 */
    uint32_t e = ax >> 23;
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u)))
        h++;
    return (qd_fp16)(sign | h);
}

/* binary32 -> bfloat16, round to nearest even, NaN made quiet (ggml's rule). */
QD_KFN static inline qd_bf16 qd_fp32_to_bf16(float f)
{
    uint32_t u = qd_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (qd_bf16)((u >> 16) | 64u);
    return (qd_bf16)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

QD_KFN static inline float qd_bf16_to_fp32(qd_bf16 h) { return qd_f32_from_bits((uint32_t)h << 16); }

/* E8M0 exponent -> 2^(e-128) (half the OCP value, matching the doubled E2M1 table). */
QD_KFN static inline float qd_e8m0_to_fp32_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return qd_f32_from_bits(bits);
}

/* UE4M3 (unsigned, 4 exponent bits with bias 7, 3 mantissa bits) -> half its value, matching the doubled E2M1
 * table. 0 and the NaN code 0x7f read as 0. Exact. */
QD_KFN static inline float qd_ue4m3_to_fp32_half(uint8_t x)
{
    if (x == 0 || x == 0x7F)
        return 0.0f;
    int exp = (x >> 3) & 0xF, man = x & 0x7;
    /* subnormal: man * 2^-9; normal: (1 + man/8) * 2^(exp-7); then halved */
    uint32_t bits = exp == 0 ? (uint32_t)(117 << 23) : (uint32_t)((exp + 116) << 23);
    float unit = qd_f32_from_bits(bits); /* 2^-10, or 2^(exp-11) */
    return exp == 0 ? (float)man * unit : (float)(8 + man) * unit;
}

/* A positive scale -> UE4M3, mantissa rounded half up, saturating at 448 (0x7e); <= 0 and NaN give 0. */
QD_KFN static inline uint8_t qd_fp32_to_ue4m3(float x)
{
    if (!(x > 0.0f))
        return 0;
    if (x > 448.0f)
        x = 448.0f;
    uint32_t bits = qd_f32_bits(x);
    int exp = (int)((bits >> 23) & 0xFF) - 127 + 7;
    if (exp <= 0) {
        int man = (int)(x * 512.0f + 0.5f);
        if (man > 7)
            man = 7;
        return man < 1 ? 0 : (uint8_t)man;
    }
    if (exp >= 15)
        return 0x7E;
    int man = (int)((bits >> 20) & 0x7) + (int)((bits >> 19) & 1);
    if (man > 7) {
        man = 0;
        if (++exp >= 15)
            return 0x7E;
    }
    return (uint8_t)((exp << 3) | man);
}

#endif
