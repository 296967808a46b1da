/*
 * quant.h - tensor types (ggml's numbering) and the row kernels of the engine.
 *
 * A row is ncols values; a quantized row is ncols / block_size blocks of type_size bytes, laid out exactly as
 * ggml lays them out in a GGUF tensor. Quantize results are bit-identical to ggml's reference quantizer
 * (../shared/vectors/ggml is the oracle); every SIMD or CUDA variant must produce the same bytes.
 */
#ifndef QD_QUANT_H
#define QD_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Tensor types, numbered as ggml numbers them (the values are written into GGUF files). */
typedef enum qd_type {
    QD_TYPE_F32 = 0,
    QD_TYPE_F16 = 1,
    QD_TYPE_Q4_0 = 2,
    QD_TYPE_Q4_1 = 3,
    QD_TYPE_Q5_0 = 6,
    QD_TYPE_Q5_1 = 7,
    QD_TYPE_Q8_0 = 8,
    QD_TYPE_Q8_1 = 9,
    QD_TYPE_Q2_K = 10,
    QD_TYPE_Q3_K = 11,
    QD_TYPE_Q4_K = 12,
    QD_TYPE_Q5_K = 13,
    QD_TYPE_Q6_K = 14,
    QD_TYPE_Q8_K = 15,
    QD_TYPE_IQ2_XXS = 16,
    QD_TYPE_IQ2_XS = 17,
    QD_TYPE_IQ3_XXS = 18,
    QD_TYPE_IQ1_S = 19,
    QD_TYPE_IQ4_NL = 20,
    QD_TYPE_IQ3_S = 21,
    QD_TYPE_IQ2_S = 22,
    QD_TYPE_IQ4_XS = 23,
    QD_TYPE_I8 = 24,
    QD_TYPE_I16 = 25,
    QD_TYPE_I32 = 26,
    QD_TYPE_I64 = 27,
    QD_TYPE_F64 = 28,
    QD_TYPE_IQ1_M = 29,
    QD_TYPE_BF16 = 30,
    QD_TYPE_TQ1_0 = 34,
    QD_TYPE_TQ2_0 = 35,
    QD_TYPE_MXFP4 = 39,
    QD_TYPE_NVFP4 = 40,
    QD_TYPE_COUNT = 41
} qd_type;

typedef struct qd_type_traits {
    const char *name;     /**< ggml's spelling: "f32", "q4_0", "q4_K", "iq4_nl", ... */
    int64_t block_size;   /**< values per block (1 for plain types) */
    size_t type_size;     /**< bytes per block */
    bool quantized;       /**< a block format */
    bool can_quantize;    /**< this build can quantize to it */
    bool needs_imatrix;   /**< quantizing without an importance matrix is refused (as ggml refuses) */
} qd_type_traits;

/** Traits of a type, or NULL for an unknown or unused number. @note static storage. */
const qd_type_traits *qd_type_traits_get(qd_type t);

/** Find a type by name, case-insensitively ("Q4_K", "q4_k", "iq4_nl"). @return QD_OK or QD_EINVAL */
int qd_type_from_name(const char *name, qd_type *out);

/** Bytes of one row of ncols values; 0 when ncols is not a multiple of the block size. */
size_t qd_row_size(qd_type t, int64_t ncols);

/**
 * Quantize nrows rows of ncols f32 values into dst (nrows * qd_row_size(t, ncols) bytes), with per-column
 * importance imatrix (ncols values) or NULL. Uses the kernel variant chosen by qd_kernels_select().
 * @return QD_OK, QD_EINVAL (ncols not a multiple of the block size, NaN/Inf input), QD_EUNSUPPORTED
 */
int qd_quantize_rows(qd_type t, const float *src, void *dst, int64_t nrows, int64_t ncols, const float *imatrix);

/**
 * qd_quantize_rows for a caller that knows a bound on the input: amax the largest magnitude of src (as
 * qd_dequantize_rows_bound reports it). Where amax is within what t accepts, the input check is skipped (it is
 * the same check, already made); otherwise (NaN: not known) it is made as qd_quantize_rows makes it.
 */
int qd_quantize_rows_bounded(qd_type t, const float *src, void *dst, int64_t nrows, int64_t ncols,
                             const float *imatrix, float amax);

/** Dequantize nrows rows into f32. @return QD_OK, QD_EINVAL, QD_EUNSUPPORTED */
int qd_dequantize_rows(qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols);

/**
 * qd_dequantize_rows, and *amax the largest magnitude of the values written: +Inf when one is infinite, NaN
 * when one is NaN or when the variant does not measure it on the way for this type (F16 sources are measured in
 * the same pass, at the cost of two instructions per 16 values). @return as qd_dequantize_rows
 */
int qd_dequantize_rows_bound(qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols, float *amax);

/** Kernel variants. The reference defines the result; the others must match it byte for byte. */
typedef enum qd_kernel_variant {
    QD_KERNELS_REF = 0,
    QD_KERNELS_AVX2 = 1,
    QD_KERNELS_AVX512 = 2,
    QD_KERNELS_CUDA = 3
} qd_kernel_variant;

/**
 * Choose the kernel variant: the best this CPU supports, or the one QD_KERNELS (ref|avx2|avx512) forces.
 * Called implicitly on first use. @return QD_OK, QD_EUNSUPPORTED (forced variant not available here)
 */
int qd_kernels_select(void);
qd_kernel_variant qd_kernels_current(void);
const char *qd_kernels_name(qd_kernel_variant v);
/** Whether this build has variant v, and whether this CPU can run it too. */
bool qd_kernels_built(qd_kernel_variant v);
bool qd_kernels_usable(qd_kernel_variant v);
/** Whether the current variant has its own (non-reference) quantizer for type t. */
bool qd_kernels_accelerated(qd_type t);

/** The CPU features this process sees that matter to kernel selection ("sse2 avx avx2 fma ..."). @note a
 *  thread-local buffer, valid until the next call on this thread. */
const char *qd_kernels_cpu_features(void);

#ifdef __cplusplus
}
#endif
#endif
