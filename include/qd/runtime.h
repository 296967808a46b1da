/*
 * runtime.h - the reference runtime: a llama-family forward pass in C over a small weights description.
 *
 * Why a description of our own: the runtime must run whatever the engine reads (GGUF, safetensors, llama2.c: through
 * include/qd/model.h, qd_llama_load_model), and it must run exactly the bytes that get published.
 * So the model is a config plus one qd_llama_tensor per weight: a ggml type, a pointer to the bytes as they sit in
 * the file (or in memory), and the row/column counts. Adapters fill it without copying where they can.
 *
 * Computation is f32 throughout (activations are never quantized; llama.cpp's CPU path rounds activations to
 * Q8_0/Q8_K for quantized matmuls, we do not: see docs/RUNTIME.md). Weights may be f32 or any type that
 * qd_dequantize_rows() knows. RoPE rotates adjacent pairs (2i, 2i+1) inside each head with angle
 * pos * theta^(-2i/head_size): llama2.c's convention and llama.cpp's LLAMA_ROPE_TYPE_NORM for LLM_ARCH_LLAMA.
 *
 * Threads: a qd_llama_ctx belongs to one thread at a time; it runs its own worker threads inside each matmul. A
 * qd_llama_model is read-only once built and may be shared by any number of contexts.
 */
#ifndef QD_RUNTIME_H
#define QD_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Hyper-parameters of a llama-family model. */
typedef struct qd_llama_config {
    int dim;          /**< residual width */
    int hidden_dim;   /**< feed-forward width (w1/w3 rows, w2 columns) */
    int n_layers;     /**< transformer blocks */
    int n_heads;      /**< query heads; dim % n_heads == 0 */
    int n_kv_heads;   /**< key/value heads; n_heads % n_kv_heads == 0 (grouped-query attention) */
    int vocab;        /**< vocabulary size */
    int seq_len;      /**< longest context the model was trained for (the KV cache's default size) */
    float rope_theta; /**< RoPE base (10000 for llama2.c) */
    float norm_eps;   /**< RMSNorm epsilon (1e-5 for llama2.c) */
    bool tied_output; /**< the classifier is the token embedding */
} qd_llama_config;

/** One weight matrix (or norm vector, rows == 1): row-major, rows x cols values of a ggml type. */
typedef struct qd_llama_tensor {
    qd_type type;  /**< QD_TYPE_F32 or any type qd_dequantize_rows() reads */
    void *data;    /**< rows * qd_row_size(type, cols) bytes; borrowed from the model's storage */
    int64_t rows;  /**< output features (matrix) or 1 (norm) */
    int64_t cols;  /**< input features; a multiple of the type's block size */
    const float *row_scale; /**< W8A8 (SmoothQuant, compressed-tensors int-quantized): with type QD_TYPE_I8, one
                                 f32 scale per row (w = q * row_scale[r]); the matmul then quantizes its input to
                                 int8 per token (dynamic, symmetric) and runs an int8 x int8 -> int32 dot
                                 (docs/RUNTIME.md, W8A8). NULL for every other tensor. Borrowed like data. */
} qd_llama_tensor;

/** The weights of one block. */
typedef struct qd_llama_layer {
    qd_llama_tensor attn_norm; /**< [1, dim] f32 */
    qd_llama_tensor wq;        /**< [dim, dim] */
    qd_llama_tensor wk;        /**< [kv_dim, dim] */
    qd_llama_tensor wv;        /**< [kv_dim, dim] */
    qd_llama_tensor wo;        /**< [dim, dim] */
    qd_llama_tensor ffn_norm;  /**< [1, dim] f32 */
    qd_llama_tensor w1;        /**< [hidden, dim] gate */
    qd_llama_tensor w2;        /**< [dim, hidden] down */
    qd_llama_tensor w3;        /**< [hidden, dim] up */
} qd_llama_layer;

/** A model: config, tensors, and what owns their bytes. Build with an adapter, free with qd_llama_free(). */
typedef struct qd_llama_model {
    qd_llama_config cfg;
    qd_llama_tensor tok_embd;   /**< [vocab, dim] */
    qd_llama_tensor final_norm; /**< [1, dim] f32 */
    qd_llama_tensor output;     /**< [vocab, dim]; when cfg.tied_output it views the same bytes as tok_embd */
    qd_llama_layer *layers;     /**< cfg.n_layers entries */
    /* storage (private): the opened model file (src_, its mapping read-only), owned buffers (copies, in-memory
     * models, a store blob), or an mmap (map_, unused by the adapters in this tree) */
    void *map_;
    size_t map_len_;
    void **owned_;
    size_t n_owned_;
    struct qd_model *src_;      /* the opened model file (include/qd/model.h) the tensors point into, or NULL */
    double stored_bits_;        /* a model read from a quantized Hugging Face folder: the bits its files store
                                 * (what qd_llama_bpw reports; the tensors here are decoded), else 0 */
} qd_llama_model;

/** Number of tensors qd_llama_tensor_at() enumerates: tok_embd, 9 per layer, final_norm, output (unless tied). */
int qd_llama_tensor_count(const qd_llama_model *m);

/**
 * The i-th tensor and its GGUF-style name ("token_embd.weight", "blk.3.attn_q.weight", "blk.0.ffn_down.weight",
 * "output_norm.weight", "output.weight"). @return the tensor, or NULL when i is out of range.
 * @note borrowed from the model; name points at a static or thread-local buffer valid until the next call.
 */
qd_llama_tensor *qd_llama_tensor_at(qd_llama_model *m, int i, const char **name);

/**
 * Open any model file the engine reads (include/qd/model.h: GGUF, a safetensors file or sharded directory /
 * model.safetensors.index.json, a llama2.c checkpoint) and describe it for the runtime, copying as little as
 * possible: GGUF tensors of any type qd_dequantize_rows() reads are used where they lie in the read-only mapping;
 * HF attn_q/attn_k rows are permuted into GGUF order as llama.cpp's converter does (docs/RUNTIME.md, RoPE); norms
 * become f32. Config from llama.* metadata (or config.json / the llama2.c header): rope freq_base, RMS epsilon,
 * head counts, context length; the output is tied when output.weight is absent.
 * @return QD_OK, QD_ENOTFOUND, QD_EIO, QD_ECORRUPT, QD_ETRUNCATED, QD_EUNSUPPORTED (not llama, partial RoPE, a
 *         type without dequantizer), QD_ENOMEM; the message names the file and the field or tensor
 */
int qd_llama_load_model(qd_llama_model **out, const char *path);

/**
 * The same over bytes in memory (e.g. a blob read from the store by digest: what is validated is what gets
 * published). On success the model takes buf (allocated with qd_malloc) and frees it; on failure buf stays the
 * caller's. what names the source in messages. A safetensors blob needs its config in metadata.
 */
int qd_llama_load_model_mem(qd_llama_model **out, void *buf, size_t len, const char *what);

/** qd_llama_load_model() that accepts only a llama2.c checkpoint (QD_EINVAL for another format). */
int qd_llama_load_llama2c(qd_llama_model **out, const char *path);
/** Same as qd_llama_load_model_mem() (kept for callers of the llama2.c-only loader). */
int qd_llama_load_llama2c_buf(qd_llama_model **out, void *buf, size_t len, const char *what);

/** The file a model was loaded from (include/qd/model.h), or NULL for a model built in memory. @note borrowed */
const struct qd_model *qd_llama_source(const qd_llama_model *m);

/** Check the config and that every tensor's shape and type fit it. @return QD_OK or QD_EINVAL naming the tensor. */
int qd_llama_check(const qd_llama_model *m);

/** Check that two models have the same config and tensor shapes. @return QD_OK or QD_EINVAL naming the difference. */
int qd_llama_same_shape(const qd_llama_model *a, const qd_llama_model *b);

/** Options of qd_llama_quantize(). */
typedef struct qd_llama_quant_options {
    qd_type type;            /**< target type of every 2-D tensor */
    bool llama_cpp_fallback; /**< when a row does not divide the block size, use llama.cpp's fallback type
                                  (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K/IQ4_XS->IQ4_NL) before f32 */
    qd_type output_type;     /**< type of output.weight when untied; QD_TYPE_COUNT = same as type */
} qd_llama_quant_options;

/**
 * A copy of src with every matrix quantized in memory through qd_quantize_rows() (norms stay f32; a tensor whose
 * row length does not fit the type's block size stays f32, or takes the fallback type). The copy owns its bytes.
 * @return QD_OK, QD_EINVAL, QD_EUNSUPPORTED (the type cannot be quantized, e.g. needs an imatrix), QD_ENOMEM
 */
int qd_llama_quantize(qd_llama_model **out, const qd_llama_model *src, const qd_llama_quant_options *opts);

/** A copy of src with every tensor dequantized to f32 (owned). @return QD_OK, QD_ENOMEM */
int qd_llama_dequantize(qd_llama_model **out, const qd_llama_model *src);

/** Bits per weight over all tensors (norms included), and the parameter count. */
double qd_llama_bpw(const qd_llama_model *m, int64_t *n_params);

void qd_llama_free(qd_llama_model *m);

/**
 * A generated model with f32 weights (owned): N(0, 0.02) with heavy tails (about 1 in 1000 values is an outlier
 * of 10-30 x, and a few input channels per matrix are 4 x wider, as in real LLM weights), norms near 1.
 * Deterministic for a seed. Used by tests and bench/runtime_bench.c. @return QD_OK, QD_EINVAL, QD_ENOMEM
 */
/**
 * An exactly equivalent f32 model with a wider residual (new_dim) and feed-forward (new_hidden), so that rows are
 * multiples of 256 and every ggml type really applies (FORMATS.md 2.2: zero padding; extra query heads with zero
 * Wq rows and Wo columns, real head h at (h / kv_mul) * kv_mul' + h % kv_mul' so it keeps its KV head; norms times
 * sqrt(dim / new_dim) and eps times dim / new_dim). Head size and KV heads are unchanged.
 * @return QD_OK, QD_EINVAL (new_dim not a multiple of the head size or smaller), QD_ENOMEM
 */
int qd_llama_widen(qd_llama_model **out, const qd_llama_model *src, int new_dim, int new_hidden);

int qd_llama_synthetic(qd_llama_model **out, const qd_llama_config *cfg, uint64_t seed);

/** Precision of the KV cache. Values are written into reports by name (qd_llama_kv_name). */
typedef enum qd_llama_kv_type {
    QD_KV_F32 = 0,
    QD_KV_F16,
    QD_KV_Q8_0,
    QD_KV_Q4_0,
    QD_KV_FP8_E4M3
} qd_llama_kv_type;

const char *qd_llama_kv_name(qd_llama_kv_type t);
/** @return QD_OK or QD_EINVAL for an unknown name ("f32", "f16", "q8_0", "q4_0", "fp8_e4m3"). */
int qd_llama_kv_from_name(const char *name, qd_llama_kv_type *out);

/** How quantized weights enter the matmul. Both must agree with a dequantized-f32 model within 1e-5 relative. */
typedef enum qd_llama_matmul {
    QD_MATMUL_AUTO = 0,      /**< QDOT where a type has one, else DEQUANT_ROW */
    QD_MATMUL_DEQUANT_ROW,   /**< dequantize one weight row into scratch, dot it with every position */
    QD_MATMUL_QDOT           /**< block-wise dot on the quantized bytes (Q8_0, Q4_0; others fall back) */
} qd_llama_matmul;

typedef struct qd_llama_ctx_options {
    int n_threads;            /**< worker threads per matmul; <= 0 means 2 */
    int n_ctx;                /**< KV cache positions; <= 0 means cfg.seq_len */
    qd_llama_kv_type kv_type; /**< cache precision */
    qd_llama_matmul matmul;   /**< quantized-weight path */
    int simd;                 /**< -1 scalar only, 0 best available, 1 AVX2 if the CPU has it */
} qd_llama_ctx_options;

#define QD_LLAMA_CTX_OPTIONS_INIT {2, 0, QD_KV_F32, QD_MATMUL_AUTO, 0}

typedef struct qd_llama_ctx qd_llama_ctx;

/**
 * A context: KV cache and scratch for one sequence at a time.
 * @return QD_OK, QD_EINVAL (model fails qd_llama_check, KV type does not fit kv_dim), QD_ENOMEM
 * @note the model must outlive the context.
 */
int qd_llama_ctx_new(qd_llama_ctx **out, const qd_llama_model *m, const qd_llama_ctx_options *opts);
void qd_llama_ctx_free(qd_llama_ctx *c);

/** Forget the cached positions (start a new sequence). */
void qd_llama_reset(qd_llama_ctx *c);

/** Where a matmul sits in the forward pass (the weight it multiplies). */
typedef enum qd_llama_site {
    QD_SITE_ATTN_Q = 0, QD_SITE_ATTN_K, QD_SITE_ATTN_V, QD_SITE_ATTN_OUT,
    QD_SITE_FFN_GATE, QD_SITE_FFN_UP, QD_SITE_FFN_DOWN,
    QD_SITE_OUTPUT /**< the classifier (layer -1); the tied token embedding when cfg.tied_output */
} qd_llama_site;

/**
 * Sees the input of every matmul before it runs: x holds n rows of w->cols floats (positions of the batch), in the
 * order the forward pass uses them. Calibration (imatrix, GPTQ, AWQ, SmoothQuant) collects activation statistics
 * through it. Called on the thread that runs qd_llama_eval; x is valid only during the call.
 */
typedef void (*qd_llama_observer)(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w,
                                  const float *x, int n);

/** Install (or with fn NULL remove) the matmul-input observer. */
void qd_llama_ctx_set_observer(qd_llama_ctx *c, qd_llama_observer fn, void *user);

/** The GGUF name of the weight at a site ("blk.3.ffn_down.weight", "output.weight"), written into buf. */
const char *qd_llama_site_name(char *buf, size_t cap, int layer, qd_llama_site site);

/** Positions already in the cache. */
int qd_llama_n_past(const qd_llama_ctx *c);

/**
 * Evaluate n tokens at positions n_past .. n_past+n-1 in one batch and append them to the cache.
 * @param[out] logits  n * vocab floats (row p holds the distribution after token p), or NULL for the last row only
 *                     in last_logits
 * @param[out] last_logits vocab floats for the last position, or NULL
 * @return QD_OK, QD_EINVAL (token id out of range, cache full), QD_ENOMEM
 */
int qd_llama_eval(qd_llama_ctx *c, const int32_t *tokens, int n, float *logits, float *last_logits);

/** Greedy decode: feed prompt (or BOS = 1 when n_prompt == 0), then pick argmax n_gen times. @return QD_OK, ... */
int qd_llama_generate_greedy(qd_llama_ctx *c, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out);

/**
 * The int8 dot product of the W8A8 path: sum of a[i] * b[i] in int32, values in [-127, 127], n <= 2^17.
 * simd -1 scalar, 0 best available (AVX2): integer arithmetic, so every path gives the same result.
 */
int32_t qd_w8a8_dot(const int8_t *a, const int8_t *b, int64_t n, int simd);

/**
 * The W8A8 activation quantizer: scale = max|x| / 127 (0 for a zero row), q = round-to-nearest-even(x * 127 /
 * max|x|). @return the scale.
 */
float qd_w8a8_quantize_row(int8_t *q, const float *x, int64_t n);

/** Any runtime tensor (W8A8 included) as f32 rows x cols. @return QD_OK, QD_EUNSUPPORTED */
int qd_llama_tensor_f32(const qd_llama_tensor *t, float *dst);

/** The SIMD path the matmul uses ("avx2" or "scalar"). */
const char *qd_llama_simd_name(const qd_llama_ctx *c);

/** fp8 e4m3 (OCP, saturating to +-448, round to nearest even) conversions used by the KV cache. */
uint8_t qd_fp8_e4m3_from_f32(float x);
float qd_fp8_e4m3_to_f32(uint8_t b);

#ifdef __cplusplus
}
#endif
#endif
