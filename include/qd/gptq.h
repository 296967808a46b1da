/*
 * gptq.h - calibration sets, imatrix collection and GPTQ (quantd/calib/: calibset.c, imatrix_collect.c, gptq.c;
 * the AutoGPTQ safetensors layout in quantd/formats/gptq_layout.c). docs/CALIBRATION.md describes all of it.
 *
 * Calibration set: a QDVALSET file (include/qd/validate.h) or the spec "sample:N:LEN:SEED": N sequences of LEN
 * tokens sampled from the reference model from BOS with SEED (qd_valset_sample). Its digest is the sha256 of the
 * QDVALSET serialization, which is what the predicate records.
 *
 * imatrix: llama.cpp's llama-imatrix quantity: per weight matrix and input column j, the mean over calibration
 * positions of x_j^2 (in_sum2 / count). Written as llama.cpp's legacy imatrix.dat or its GGUF imatrix (see
 * qd_imatrix_write); read back by qd_imatrix_load (include/qd/pipeline.h).
 *
 * GPTQ (Frantar et al. 2022): per linear layer H = (2/N) sum x x^T over the N calibration positions of its input,
 * dampened, then columns quantized one by one with the error spread over the remaining columns through the upper
 * Cholesky factor of H^-1, in lazy blocks. The Hessian math is in double.
 */
#ifndef QD_GPTQ_H
#define QD_GPTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/calib.h"
#include "qd/quant.h"
#include "qd/runtime.h"
#include "qd/validate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- calibration sets ------------------------------------------------------------------------------------------ */

typedef struct qd_calibset {
    qd_valset *set;
    char digest[80];     /**< "sha256:<hex>" of the QDVALSET bytes */
    char name[128];      /**< the spec, or the file's base name (imatrix.datasets) */
    bool sampled;
} qd_calibset;

/**
 * Open a calibration set for model m: a QDVALSET file path or "sample:N:LEN:SEED" (N >= 1, 2 <= LEN <= the
 * model's context). Checks: not empty, every sequence at least 2 tokens, every token inside the vocabulary, no
 * sequence longer than the context. When val is not NULL, also that no calibration sequence is a validation one.
 * @return QD_OK, QD_EINVAL (the message says which check failed), QD_ENOTFOUND, QD_EIO, QD_ENOMEM
 */
int qd_calibset_open(qd_calibset *out, const char *spec, const qd_llama_model *m, const qd_valset *val,
                     int n_threads);
void qd_calibset_free(qd_calibset *c);

/** "sample:N:LEN:SEED" (decimal digits only): 1 and the numbers; 0 when spec is not a sample spec (a file path);
 *  QD_EINVAL when it starts like one and is malformed. The bounds are the caller's. */
int qd_calib_parse_sample(const char *spec, unsigned long long *n, unsigned long long *len, unsigned long long *seed);

/** A calibration class the variant predicate accepts: none, generic-text, code, multilingual, domain:NAME (NAME of
 *  [A-Za-z0-9._-]). */
bool qd_calib_class_valid(const char *c);

/** Read a QDVALSET file or sample by the same spec grammar (for --val). */
int qd_calibset_load_set(qd_valset **out, const char *spec, const qd_llama_model *m, int n_threads);

struct qd_imatrix;

/* ---- imatrix ------------------------------------------------------------------------------------------------- */

typedef enum qd_imatrix_format {
    QD_IMATRIX_DAT = 0,  /**< llama.cpp's legacy imatrix.dat */
    QD_IMATRIX_GGUF = 1  /**< llama.cpp's GGUF imatrix (general.type = imatrix, <name>.in_sum2, <name>.counts) */
} qd_imatrix_format;

/**
 * Write the importance matrix of every matmul in s (the classifier "output.weight" only when with_output, as
 * llama-imatrix --process-output). n_chunks: calibration chunks (sequences) seen; chunk_size: tokens per chunk.
 * @return QD_OK, QD_EINVAL (empty statistics), QD_EIO, QD_ENOMEM
 */
int qd_imatrix_write(const qd_actstats *s, const char *path, qd_imatrix_format f, const char *dataset,
                     int32_t n_chunks, int32_t chunk_size, bool with_output);

/**
 * The importance matrix of s in memory, with the values a GGUF imatrix file of the same statistics reads back to
 * (in_sum2 / count; the classifier left out, as llama-imatrix without --process-output), for qd_quantize_opts.imatrix.
 * dataset and chunks are recorded as qd_imatrix_info reports them. @return QD_OK, QD_ENOMEM
 */
int qd_imatrix_from_actstats(struct qd_imatrix **out, const qd_actstats *s, const char *dataset, int32_t chunks);

/* ---- GPTQ ----------------------------------------------------------------------------------------------------- */

typedef struct qd_gptq_params {
    int bits;            /**< 2, 3, 4 or 8 for the integer grid (ignored with a GGUF grid) */
    int group_size;      /**< 32, 64, 128, ...; <= 0: one group per row; GGUF grids force 32 */
    bool sym;            /**< symmetric integer grid (zero = 2^(bits-1)); default asymmetric as AutoGPTQ */
    bool act_order;      /**< desc_act: columns by decreasing diag(H) */
    double damp;         /**< dampening, fraction of the mean diagonal (0.01) */
    int block;           /**< lazy batch width (128) */
    qd_type gguf_type;   /**< QD_TYPE_COUNT: the integer grid; or Q4_0, Q4_1, Q5_0, Q8_0 (group 32 along the row) */
    bool true_sequential;/**< within a block: q/k/v, then attn output, then gate/up, then down, each step's inputs
                              from the earlier steps quantized (AutoGPTQ's default); false: one pass per block */
} qd_gptq_params;

#define QD_GPTQ_PARAMS_INIT {4, 128, false, false, 0.01, 128, QD_TYPE_COUNT, true}

/** One quantized matrix [rows = out features][cols = in features]. */
typedef struct qd_gptq_matrix {
    int64_t rows, cols;
    int n_groups;          /**< groups per row */
    int group_size;
    float *deq;            /**< rows*cols: the values the quantized matrix stands for (what the runtime multiplies) */
    uint8_t *q;            /**< rows*cols: integer levels 0 .. 2^bits-1 (integer grid), or the block's own codes */
    float *scale;          /**< rows*n_groups, each an f16 value */
    float *zero;           /**< rows*n_groups: integer zero point (integer grid), or Q4_1's min m (f16 value) */
    int32_t *g_idx;        /**< cols: group of each input column */
    uint8_t *blocks;       /**< GGUF grid: rows * qd_row_size(type, cols) bytes, else NULL */
    size_t blocks_len;
    int n_dead;            /**< columns with a zero Hessian diagonal (zeroed, as the reference does) */
} qd_gptq_matrix;

void qd_gptq_matrix_free(qd_gptq_matrix *m);

/**
 * GPTQ of one matrix. w: rows*cols f32 (row-major, rows = output features). h: cols*cols, the symmetric Hessian
 * 2/N sum x x^T (modified: dead columns and dampening are applied in place).
 * @return QD_OK, QD_EINVAL (shape, group does not divide cols, bits, a non-finite value, a Hessian that is not
 *         positive definite after dampening), QD_ENOMEM
 */
int qd_gptq_quantize_matrix(qd_gptq_matrix *out, const float *w, int64_t rows, int64_t cols, double *h,
                            const qd_gptq_params *p);

/** Round to nearest on the same grid, groups and scales rule (the baseline GPTQ improves on). */
int qd_gptq_rtn_matrix(qd_gptq_matrix *out, const float *w, int64_t rows, int64_t cols, const qd_gptq_params *p);

/** ||W X - Q X||^2 summed over the calibration positions, from the Hessian: (N/2) tr((W-Q) H (W-Q)^T) / (N/2),
 *  i.e. sum_r (w_r - q_r)^T H (w_r - q_r). h is the undampened Hessian. */
double qd_gptq_output_error(const float *w, const float *q, int64_t rows, int64_t cols, const double *h);

/** One layer of a GPTQ run. */
typedef struct qd_gptq_layer {
    char name[64];         /**< GGUF name ("blk.0.attn_q.weight") */
    int layer;
    qd_llama_site site;
    qd_gptq_matrix m;
    double err_gptq;       /**< output error on its own calibration inputs (undampened H) */
    double err_rtn;        /**< the same for round to nearest on the same grid */
    double *h;             /**< when keep_hessian: cols*cols, the undampened Hessian */
} qd_gptq_layer;

typedef struct qd_gptq_run {
    qd_llama_model *model;   /**< f32 copy with every GPTQ'd matrix replaced by its quantized values */
    qd_gptq_layer *layers;
    size_t n_layers;
    int64_t tokens;          /**< calibration positions */
    uint32_t samples;        /**< calibration sequences */
    size_t n_skipped;        /**< matrices left alone: the row does not fit the grid */
} qd_gptq_run;

typedef struct qd_gptq_run_options {
    int n_threads;
    bool keep_hessian;       /**< keep each layer's H (tests) */
    bool compare_rtn;        /**< fill err_rtn */
} qd_gptq_run_options;

/**
 * GPTQ of every block matmul of src (attn_q/k/v/output, ffn_gate/up/down; not the classifier), block by block:
 * block l's inputs come from running the calibration set through blocks 0..l-1 already quantized (and with
 * true_sequential through the block's earlier steps). A matrix whose
 * row does not fit the grid (cols not a multiple of the group, or of 32 for GGUF grids) is left unquantized and
 * counted in n_skipped. @return QD_OK, QD_EINVAL (set, params, singular Hessian: the message names the layer), ...
 */
int qd_gptq_model(qd_gptq_run **out, const qd_llama_model *src, const qd_valset *calib, const qd_gptq_params *p,
                  const qd_gptq_run_options *o);
void qd_gptq_run_free(qd_gptq_run *r);
/** The layer by GGUF name, or NULL. */
const qd_gptq_layer *qd_gptq_run_find(const qd_gptq_run *r, const char *name);

/* ---- the AutoGPTQ layout (quantd/formats/gptq_layout.c) ---------------------------------------------------------- */

struct qd_hfq_result;
struct qd_st_file;

/**
 * The AutoGPTQ ("gptq" checkpoint format, v1) parts of one matrix from an integer-grid result, with rows in the
 * order given (row_map[r] = the row of m that becomes row r; NULL = same order): qweight int32 [cols*bits/32,
 * rows] (consecutive input rows packed low bits first), qzeros int32 [n_groups, rows*bits/32] (zero - 1, the v1
 * quirk), scales f16 [n_groups, rows], g_idx int32 [cols]. out->deq gets the values (scale * (q - zero)).
 * @return QD_OK, QD_EINVAL (a GGUF-grid result, cols*bits or rows*bits not a multiple of 32), QD_ENOMEM
 */
int qd_gptq_pack(struct qd_hfq_result *out, const qd_gptq_matrix *m, int bits, const int64_t *row_map);

/**
 * Read the AutoGPTQ module with this prefix ("model.layers.0.mlp.up_proj.") back and dequantize it as the loaders
 * do: w[o][i] = scales[g_idx[i]][o] * (q[i][o] - (qzeros[g_idx[i]][o] + 1)). bits from the packing.
 * @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT
 */
int qd_gptq_unpack(float **out, int64_t *rows, int64_t *cols, const struct qd_st_file *f, const char *prefix,
                   int bits);

#ifdef __cplusplus
}
#endif
#endif
