/*
 * recipe.h - whole-model quantization recipes with llama-quantize's names and per-tensor type choices.
 *
 * A recipe (llama.cpp calls it a file type, llama_ftype) names a default tensor type plus rules that move some
 * tensors to other types by name, layer position and GQA ratio (attn_v, ffn_down, output, token_embd), and the
 * fallbacks llama.cpp applies when a row is not a multiple of the chosen type's block size. docs/RECIPES.md lists
 * the rules. The numbers are llama.cpp's and are written as general.file_type.
 */
#ifndef QD_RECIPE_H
#define QD_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/model.h"
#include "qd/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_ftype {
    QD_FTYPE_ALL_F32 = 0,
    QD_FTYPE_F16 = 1,
    QD_FTYPE_Q4_0 = 2,
    QD_FTYPE_Q4_1 = 3,
    QD_FTYPE_Q8_0 = 7,
    QD_FTYPE_Q5_0 = 8,
    QD_FTYPE_Q5_1 = 9,
    QD_FTYPE_Q2_K = 10,
    QD_FTYPE_Q3_K_S = 11,
    QD_FTYPE_Q3_K_M = 12,
    QD_FTYPE_Q3_K_L = 13,
    QD_FTYPE_Q4_K_S = 14,
    QD_FTYPE_Q4_K_M = 15,
    QD_FTYPE_Q5_K_S = 16,
    QD_FTYPE_Q5_K_M = 17,
    QD_FTYPE_Q6_K = 18,
    QD_FTYPE_IQ4_NL = 25,
    QD_FTYPE_IQ4_XS = 30,
    QD_FTYPE_BF16 = 32
} qd_ftype;

/** Find a recipe by llama-quantize's name ("Q4_K_M", "q8_0", "F16", "F32", "BF16"), case-insensitively.
 * @return QD_OK or QD_EINVAL */
int qd_recipe_from_name(const char *name, qd_ftype *out);
/** llama-quantize's name of a recipe, or NULL. */
const char *qd_recipe_name(qd_ftype ft);
/** The default tensor type of a recipe. */
qd_type qd_recipe_base_type(qd_ftype ft);
/** The n-th recipe (0..), for listing; false past the end. */
bool qd_recipe_at(size_t i, qd_ftype *out);

/** Options as llama-quantize has them. */
typedef struct qd_recipe_opts {
    bool pure;              /**< --pure: every quantized tensor gets the default type */
    bool has_imatrix;       /**< an importance matrix is given (changes IQ4_*, Q4_0/Q5_0 ffn_down rules) */
    int output_type;        /**< --output-tensor-type as a qd_type, or -1 */
    int token_embd_type;    /**< --token-embedding-type as a qd_type, or -1 */
} qd_recipe_opts;

#define QD_RECIPE_OPTS_INIT {false, false, -1, -1}

/** One input tensor, in file order. */
typedef struct qd_recipe_tensor {
    const char *name;       /**< GGUF name */
    uint32_t n_dims;
    int64_t ne[4];
    qd_type src_type;
} qd_recipe_tensor;

/** The decision for one tensor. */
typedef struct qd_recipe_choice {
    qd_type type;           /**< type to write */
    bool quantize;          /**< false: copied unchanged (norms, 1-D tensors, already of the type) */
    bool fallback;          /**< the rule's type did not fit the row and a fallback was used */
    bool beyond_llama;      /**< llama.cpp refuses this tensor; quantd wrote the F16 fallback instead */
} qd_recipe_choice;

/**
 * Choose the type of every tensor, as llama-quantize's llama_tensor_get_type() does for the llama architecture.
 * Where llama.cpp refuses (a legacy type, or --pure, on a row that no block size divides) quantd writes F16 and
 * flags the tensor beyond_llama.
 * @param[out] out      n choices
 * @param[out] n_fallback  how many tensors needed a fallback (may be NULL)
 * @return QD_OK, QD_EINVAL (a tensor shape, or an attn_v count that does not match the layer count)
 */
int qd_recipe_plan(qd_recipe_choice *out, size_t *n_fallback, const qd_hparams *hp, qd_ftype ft,
                   const qd_recipe_opts *opts, const qd_recipe_tensor *ts, size_t n);

#ifdef __cplusplus
}
#endif
#endif
