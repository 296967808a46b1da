/*
 * awq.h - activation-aware weight quantization (AWQ, Lin et al. 2023), its outputs (GGUF blocks llama.cpp runs,
 * AutoAWQ-layout safetensors), and a generated model with activation outliers for the calibrated methods' tests.
 *
 * What AWQ does here (docs/CALIB.md has the details and the differences from AutoAWQ):
 *   1. Run the f32 model over a calibration set (include/qd/calib.h) and collect, per matmul input site, the mean
 *      |x| per column (qd_actstats sum_abs / n_rows) and the Gram matrix G = sum_t x_t x_t^T (so that a weight
 *      error D costs sum_t ||D x_t||^2 = tr(D G D^T) without keeping the activations).
 *   2. For each scaling group of each block (q/k/v behind attn_norm; o behind v when n_kv_heads == n_heads;
 *      gate/up behind ffn_norm; down behind up) search alpha = k/n_grid, k = 0..n_grid-1: s = mean|x|^alpha
 *      (floored at 1e-4, normalized by sqrt(max s * min s)), error = sum over the group's matrices of
 *      ||W X - Q(W diag(s)) diag(s)^-1 X||^2; keep the best (k = 0 is plain round to nearest, so AWQ never does
 *      worse than RTN on the calibration activations).
 *   3. Fold: the preceding op's output channels are divided by s (norm weights, or v's / up's rows), the group's
 *      columns multiplied by s: the float model computes the same function.
 *   4. Optional clipping (AutoAWQ auto_clip): per output row and group, the largest |w| shrunk by 1 - i/20,
 *      i = 0..9, the one with least output error kept (not for q and k, as AutoAWQ).
 *   5. Quantize on the chosen grid.
 */
#ifndef QD_AWQ_H
#define QD_AWQ_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/runtime.h"
#include "qd/validate.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The quantization grid the search optimizes for and the result is stored in. */
typedef enum qd_awq_grid {
    QD_AWQ_GRID_Q4_0 = 0, /**< ggml Q4_0 (symmetric, f16 scale per 32): GGUF */
    QD_AWQ_GRID_Q4_1 = 1, /**< ggml Q4_1 (f16 scale and min per 32): GGUF */
    QD_AWQ_GRID_INT4 = 2  /**< AutoAWQ: asymmetric int4, f16 scale and 4-bit zero per group (32/64/128) */
} qd_awq_grid;

typedef struct qd_awq_options {
    qd_awq_grid grid;
    int group;        /**< INT4 group size: 32, 64 or 128 (0 = 128); the ggml grids are 32 */
    int n_grid;       /**< alpha points in [0, 1) (0 = 20); 1 means alpha = 0 only: plain round to nearest */
    bool clip;        /**< AutoAWQ's weight clipping search */
    int max_seqs;     /**< calibration sequences used (<= 0: all) */
    int n_threads;    /**< runtime threads (<= 0: 2) */
} qd_awq_options;

#define QD_AWQ_OPTIONS_INIT {QD_AWQ_GRID_Q4_0, 0, 20, true, 0, 2}

/** One scaling group's search result. */
typedef struct qd_awq_block {
    int layer;
    char group[8];    /**< "qkv", "o", "gate_up", "down" */
    double alpha;     /**< chosen */
    double err_rtn;   /**< sum_t ||W x - Q(W) x||^2 over the group's matrices (alpha = 0, no clipping) */
    double err_awq;   /**< the same with the chosen scales (before clipping) */
    double err_final; /**< with the chosen scales and clipping (what is stored), in the folded frame */
    bool skipped;     /**< the grid cannot hold these rows (columns not a multiple of the group): left f32 */
} qd_awq_block;

typedef struct qd_awq_report {
    int n_blocks;
    qd_awq_block *blocks; /**< qd_malloc'd */
    int64_t tokens;       /**< calibration positions */
    uint32_t seqs;        /**< calibration sequences */
} qd_awq_report;

void qd_awq_report_free(qd_awq_report *r);

/**
 * AWQ: from a reference model (any types: dequantized to f32 first) and a calibration set, an f32 model with the
 * scales folded and the weights clipped (the float function is unchanged except for clipping), ready for the grid.
 * @param[out] out  the f32 model (owned)
 * @param[out] rep  per-group alphas and errors (may be NULL)
 * @return QD_OK, QD_EINVAL (empty or too short calibration set, token outside the vocabulary, group size, a row
 *         length that does not divide the group), QD_ENOMEM
 */
int qd_awq_apply(qd_llama_model **out, qd_awq_report *rep, const qd_llama_model *ref, const qd_valset *calib,
                 const qd_awq_options *o);

/**
 * The quantized variant of an AWQ (or any f32) model on the grid, as the runtime runs it. Q4_0 / Q4_1: every
 * matrix in that ggml type (as `quant validate --variant-type` quantizes). INT4: the block linears hold the AutoAWQ
 * dequantized values ((q - z) * scale in f32) as f32 tensors, the embeddings and the classifier stay f32.
 * @return QD_OK, QD_EINVAL, QD_ENOMEM
 */
int qd_awq_quantize(qd_llama_model **out, const qd_llama_model *f32, const qd_awq_options *o);

/**
 * Round-trip one row segment of n values through the grid (INT4: one group of n; Q4_x: n a multiple of 32).
 * What both the search and qd_awq_quantize use. @return QD_OK, QD_EINVAL
 */
int qd_awq_qdq(float *dst, const float *src, int64_t n, qd_awq_grid grid);

/* ---- AutoAWQ layout ------------------------------------------------------------------------------------------- */

/**
 * AutoAWQ GEMM packing of one matrix w[rows = out][cols = in] on the INT4 grid: qweight int32 [in, out/8] and
 * qzeros int32 [in/group, out/8] packed along the output dimension in AWQ's nibble order (0, 2, 4, 6, 1, 3, 5, 7),
 * scales f16 [in/group, out]. deq (rows * cols, may be NULL) gets (q - z) * scale in f32, row-major [out][in].
 * @return QD_OK, QD_EINVAL (out not a multiple of 8, in not a multiple of group, non-finite values), QD_ENOMEM
 */
int qd_awq_pack(int32_t **qweight, int32_t **qzeros, uint16_t **scales, float *deq, const float *w, int64_t rows,
                int64_t cols, int group);

/** Whether a [rows, cols] matrix fits the AutoAWQ layout (rows % 8 == 0, cols % group == 0). */
bool qd_awq_packable(int64_t rows, int64_t cols, int group);

/** Unpack AutoAWQ GEMM tensors back to w[out][in] = (q - z) * f32(scale). @return QD_OK, QD_EINVAL */
int qd_awq_unpack(float *w, const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales, int64_t rows,
                  int64_t cols, int group);

/**
 * Write an AWQ f32 model (qd_awq_apply) as an AutoAWQ folder: model.safetensors (HF names and row order;
 * model.layers.N.{self_attn,mlp}.*.{qweight,qzeros,scales}; embeddings, norms, lm_head f32), config.json with
 * quantization_config {quant_method: awq, bits: 4, group_size, zero_point: true, version: gemm}, README.md.
 * @return QD_OK, QD_EINVAL, QD_EIO, QD_ENOMEM
 */
int qd_awq_export(const qd_llama_model *awq_f32, int group, const char *out_dir, const char *base_name,
                  uint64_t *bytes_written);

/* ---- the calibrated methods' folders back into the runtime ---------------------------------------------------- */

/** Whether path is a folder whose config.json names AutoAWQ (quant_method awq) or compressed-tensors
 *  int-quantized (W8A8): the layouts qd_calib_load_folder() reads. */
bool qd_calib_is_quant_folder(const char *path);

/**
 * Load such a folder for the runtime: W8A8 weights as QD_TYPE_I8 tensors with row_scale (the runtime's W8A8 path),
 * AutoAWQ weights dequantized to f32 ((q - z) * scale), q/k rows permuted into GGUF order; quantd.json (the method's
 * record) becomes the quantize.* keys of the model's source (qd_llama_source), read by the variant predicate.
 * qd_llama_load_model() calls it for such folders. @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT, QD_EUNSUPPORTED,
 * QD_ENOMEM
 */
int qd_calib_load_folder(qd_llama_model **out, const char *dir);

/* ---- an f32 model as a GGUF llama.cpp reads ------------------------------------------------------------------- */

/** One extra metadata pair for qd_llama_write_gguf(): a string or a float or an integer. */
typedef struct qd_gguf_extra {
    const char *key;
    const char *str; /**< when non-NULL: a string value */
    double num;      /**< otherwise: a number */
    bool is_float;   /**< f32 when true, else u32/u64 */
} qd_gguf_extra;

/**
 * Write a runtime model as a GGUF (llama architecture, placeholder vocabulary, tensors in their types as they are,
 * general.file_type ftype) plus the extra pairs. @return QD_OK, QD_EINVAL, QD_EIO, QD_ENOMEM
 */
int qd_llama_write_gguf(const qd_llama_model *m, const char *path, int ftype, const qd_gguf_extra *extra,
                        int n_extra);

/* ---- a model with activation outliers --------------------------------------------------------------------------- */

/**
 * The same function as src (f32 copy) with a few residual channels carrying large activations, as real LLMs have:
 * for n_channels channels j (chosen from seed) the attn_norm and ffn_norm weights are multiplied by factor and
 * the matching input columns of wq/wk/wv and w1/w3 divided by it (exactly in f32 when factor is a power of two),
 * so the matmul inputs see |x_j| about factor times larger while the outputs are unchanged. What makes RTN and
 * plain W8A8 hard and AWQ / SmoothQuant worthwhile. @return QD_OK, QD_EINVAL, QD_ENOMEM
 */
int qd_llama_add_outliers(qd_llama_model **out, const qd_llama_model *src, int n_channels, float factor,
                          uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
