/*
 * kernels.h - the engine-internal kernel table (quantd/kernels/ only; callers use include/qd/quant.h).
 *
 * A kernel is a pure function over whole rows: no allocation, no threads, no global state, no error paths.
 * qd_quantize_rows()/qd_dequantize_rows() validate arguments and input (NaN/Inf, ncols) before calling one, so
 * kernels may assume ncols is a positive multiple of the block size and every value is finite.
 */
#ifndef QD_KERNELS_KERNELS_H
#define QD_KERNELS_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/quant.h"

#include "formats.h" /* QD_KFN */

/** Quantize nrows rows of ncols values into dst (rows packed back to back). */
typedef void (*qd_quantize_fn)(const float *src, void *dst, int64_t nrows, int64_t ncols);
/** The importance-weighted quantizer: imatrix holds ncols weights, applied to every row. */
typedef void (*qd_quantize_imatrix_fn)(const float *src, void *dst, int64_t nrows, int64_t ncols,
                                       const float *imatrix);
/** Dequantize nrows rows. */
typedef void (*qd_dequantize_fn)(const void *src, float *dst, int64_t nrows, int64_t ncols);

/**
 * One type's kernels in one variant. quantize_imatrix is NULL where ggml ignores the importance matrix for the
 * type (F16, BF16, Q8_0, MXFP4, NVFP4, TQ1_0, TQ2_0): quantize is used then. quantize is NULL where only an
 * imatrix quantizer exists (IQ2_XXS, IQ2_XS, IQ1_S, which ggml refuses to quantize without one).
 */
typedef struct qd_kernel_ops {
    qd_quantize_fn quantize;
    qd_quantize_imatrix_fn quantize_imatrix;
    qd_dequantize_fn dequantize;
} qd_kernel_ops;

/** Whether every one of n values is finite with |x| <= max_abs (the input check of qd_quantize_rows). */
typedef bool (*qd_within_fn)(const float *x, int64_t n, float max_abs);

/** F16 to f32 of n values, returning the largest magnitude among them (+Inf for an infinity, NaN for a NaN). */
typedef float (*qd_f16_bound_fn)(const void *src, float *dst, int64_t n);

/** A variant: a name, an ops entry per type (all-NULL for a type it lacks), its input check (every table has
 *  one) and optionally an F16 conversion that measures its output's magnitude on the way. */
typedef struct qd_kernel_table {
    qd_kernel_variant variant;
    const char *name;
    qd_kernel_ops ops[QD_TYPE_COUNT];
    qd_within_fn within;
    qd_f16_bound_fn f16_bound;
} qd_kernel_table;

/** The scalar reference (ref.c): complete, and the definition every other variant must match. */
extern const qd_kernel_table qd_kernels_ref;

/** The x86 SIMD variants (arch/x86/; x86-64 builds only). Each is only ever selected where the CPU has its
 *  features; entries it lacks are NULL and fall back to the reference. */
extern const qd_kernel_table qd_kernels_avx2;
extern const qd_kernel_table qd_kernels_avx512;

/** The largest magnitude qd_quantize_rows accepts for block type t (a bound no block can exceed in range). */
float qd_kernels_max_abs(qd_type t);

/* The checks qd_quantize_rows makes around a kernel, for other paths to the same kernels (quantd/cuda/). */
/** Importance weights finite and non-negative. @return QD_OK or QD_EINVAL (the message names the column) */
int qd_kernels_check_imatrix(qd_type t, const float *imatrix, int64_t ncols);
/** Byte offsets of a block's fp16 scales, -1 for none: each must be finite after quantizing (an overflowed scale
 *  means the input was too large for the type). */
void qd_kernels_fp16_fields(qd_type t, int out[2]);
/** The error for a block scale that overflowed in row. @return QD_EINVAL */
int qd_kernels_scale_error(qd_type t, int64_t row);

/** The table chosen by qd_kernels_select() (selecting implicitly on first use). */
const qd_kernel_table *qd_kernels_table(void);

/* Reference kernels, by file. */
/* ref_legacy.c */
QD_KFN void qd_ref_quantize_f32(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_f32(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_f16(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_f16(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_bf16(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_bf16(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_0(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_0_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q4_0(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_1(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_1_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q4_1(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_0(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_0_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q5_0(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_1(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_1_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q5_1(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q8_0(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_q8_0(const void *src, float *dst, int64_t nrows, int64_t ncols);
/* ref_kquants.c */
QD_KFN void qd_ref_quantize_q2_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q2_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q2_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q3_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q3_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q3_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q4_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q4_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q5_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q5_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q6_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q6_K_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_q6_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_q8_K(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_q8_K(const void *src, float *dst, int64_t nrows, int64_t ncols);
/* ref_other.c: non-linear, microscaling and ternary formats */
QD_KFN void qd_ref_quantize_iq4_nl(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_iq4_nl_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_iq4_nl(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_iq4_xs(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_iq4_xs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
QD_KFN void qd_ref_dequantize_iq4_xs(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_mxfp4(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_mxfp4(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_nvfp4(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_nvfp4(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_tq1_0(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_tq1_0(const void *src, float *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_quantize_tq2_0(const float *src, void *dst, int64_t nrows, int64_t ncols);
QD_KFN void qd_ref_dequantize_tq2_0(const void *src, float *dst, int64_t nrows, int64_t ncols);
/* ref_iquants.c: grid quants (their tables are built on first use; prepare them before calling a kernel) */
int qd_ref_iq_prepare(qd_type t);
void qd_ref_quantize_iq1_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq1_s(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq1_m(const float *src, void *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq1_m_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq1_m(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq2_xxs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq2_xxs(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq2_xs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq2_xs(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq2_s(const float *src, void *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq2_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq2_s(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq3_xxs(const float *src, void *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq3_xxs_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq3_xxs(const void *src, float *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq3_s(const float *src, void *dst, int64_t nrows, int64_t ncols);
void qd_ref_quantize_iq3_s_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols, const float *qw);
void qd_ref_dequantize_iq3_s(const void *src, float *dst, int64_t nrows, int64_t ncols);

#endif
