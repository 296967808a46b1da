/*
 * smoothquant.h - SmoothQuant W8A8 (Xiao et al. 2022): migrate activation outliers into the weights, then INT8
 * weights per output channel and INT8 activations per token, run by the runtime's W8A8 path (include/qd/runtime.h,
 * qd_llama_tensor.row_scale) and written as compressed-tensors int-quantized safetensors (docs/CALIB.md).
 *
 * Smoothing: for the inputs behind each RMSNorm (q/k/v behind attn_norm, gate/up behind ffn_norm), per input
 * channel j: s_j = max|X_j|^alpha / max|W_j|^(1 - alpha), max|X_j| from the calibration activations (qd_actstats
 * max_abs), max|W_j| over the column j of all the matrices sharing that input. The norm weight j is divided by s_j
 * and the columns j multiplied by it: the float model computes the same function. o_proj and down_proj are not
 * smoothed (their inputs have no norm to fold into), but are W8A8 too.
 */
#ifndef QD_SMOOTHQUANT_H
#define QD_SMOOTHQUANT_H

#include "qd/runtime.h"
#include "qd/validate.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_sq_options {
    double alpha;     /**< migration strength in [0, 1]; 0.5 by default */
    int max_seqs;     /**< calibration sequences used (<= 0: all) */
    int n_threads;    /**< runtime threads (<= 0: 2) */
} qd_sq_options;

#define QD_SQ_OPTIONS_INIT {0.5, 0, 2}

/**
 * Smooth: an f32 copy of ref with the scales folded into attn_norm / ffn_norm and the q/k/v and gate/up columns.
 * @param[out] tokens  calibration positions used (may be NULL)
 * @return QD_OK, QD_EINVAL (alpha outside [0, 1], empty or bad calibration set), QD_ENOMEM
 */
int qd_sq_smooth(qd_llama_model **out, int64_t *tokens, const qd_llama_model *ref, const qd_valset *calib,
                 const qd_sq_options *o);

/**
 * The W8A8 variant of an f32 model: every block linear as QD_TYPE_I8 with per-row f32 scales (symmetric,
 * scale = max|w_r| / 127, the compressed-tensors int8 channel quantizer of include/qd/hfquant.h), embeddings,
 * norms and the classifier f32 (compressed-tensors ignores lm_head). @return QD_OK, QD_EINVAL, QD_ENOMEM
 */
int qd_w8a8_quantize(qd_llama_model **out, const qd_llama_model *f32);

/**
 * Write an f32 (smoothed) model as a compressed-tensors W8A8 folder: format int-quantized, weights int8 per
 * channel (symmetric, static, weight_scale f32 [out, 1]), input_activations int8 per token (dynamic, symmetric);
 * lm_head ignored; the int8 codes and scales are those of qd_w8a8_quantize() (the same quantizer). base_name (the
 * source's file name, recorded as base_model) names an intermediate GGUF inside out_dir, removed at the end.
 * @return QD_OK, QD_EIO, QD_EINVAL, QD_ENOMEM
 */
int qd_sq_export(const qd_llama_model *f32, const char *out_dir, const char *base_name, const char *method);

#ifdef __cplusplus
}
#endif
#endif
