/*
 * hfquant.h - quantized weights in the layouts Transformers and vLLM load: bitsandbytes NF4/FP4 and the
 * compressed-tensors INT8 / FP8 / packed INT4 layouts, written as safetensors beside a config.json whose
 * quantization_config names them. docs/HF_FORMATS.md describes every tensor and key.
 *
 * Pieces, bottom up:
 *   - the element codes: OCP FP8 E4M3 / E5M2 (encode with round to nearest even, decode), the 16 NF4 and FP4 values
 *     of bitsandbytes and its 8-bit "dynamic" map used for double quantization;
 *   - a safetensors writer (any dtype, `__metadata__`, optional shards with model.safetensors.index.json) and a raw
 *     reader for every dtype (the model reader in model.h only takes F32/F16/BF16);
 *   - qd_hfq_quantize(): one weight matrix [rows = out features, cols = in features] into the parts of one layout,
 *     plus the values a loader reconstructs from them; qd_hfq_dequantize(): the same values read back from a file;
 *   - qd_hfq_export(): a whole model into a Hugging Face folder (the `quant quantize --format` path).
 *
 * Method: round to nearest ("rtn"). The calibrated methods (GPTQ, AWQ, SmoothQuant) produce a different integer
 * grid and scales for the same layouts; they plug in by filling a qd_hfq_result (see qd_hfq_pack_int()).
 *
 * Threads: every function is reentrant; objects are not shared between threads by the library.
 */
#ifndef QD_HFQUANT_H
#define QD_HFQUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element codes -------------------------------------------------------------------------------------------- */

typedef enum qd_fp8_kind {
    QD_FP8_E4M3 = 0, /**< OCP E4M3 ("float8_e4m3fn"): bias 7, no Inf, NaN = S.1111.111, max 448 */
    QD_FP8_E5M2 = 1  /**< OCP E5M2: bias 15, Inf = S.11111.00, NaN = S.11111.{01,10,11}, max 57344 */
} qd_fp8_kind;

/**
 * f32 -> FP8, round to nearest, ties to even, subnormals kept. NaN gives S.1111.111 (E4M3) or S.11111.11 (E5M2),
 * keeping the sign. Overflow (a value that rounds above the largest finite) and +-Inf give +-max when saturate,
 * else NaN (E4M3, which has no Inf) or +-Inf (E5M2). -0 gives 0x80.
 */
uint8_t qd_fp8_from_f32(qd_fp8_kind k, float x, bool saturate);
/** FP8 -> f32 (exact: every FP8 value is an f32). */
float qd_fp8_to_f32(qd_fp8_kind k, uint8_t v);
/** Largest finite value: 448 or 57344. */
float qd_fp8_max(qd_fp8_kind k);

typedef enum qd_bnb4_kind {
    QD_BNB_NF4 = 0, /**< QLoRA NormalFloat4 */
    QD_BNB_FP4 = 1  /**< bitsandbytes' own 4-bit float (sign + 3 bits), not OCP E2M1 */
} qd_bnb4_kind;

/** The 16 code values by index, as bitsandbytes' get_4bit_type() builds them (f32). */
const float *qd_bnb4_code(qd_bnb4_kind k);
/** Index of the code nearest to x (x already divided by the block absmax); midpoints go to the lower code,
 * as in bitsandbytes' decision trees. NaN gives the code of 0. */
uint8_t qd_bnb4_encode(qd_bnb4_kind k, float x);
/** bitsandbytes' signed 8-bit dynamic map (create_dynamic_map(signed=True)): 256 sorted values in [-1, 1]. */
void qd_bnb_dynamic_map(float out[256]);

/* ---- safetensors ---------------------------------------------------------------------------------------------- */

typedef enum qd_st_dtype {
    QD_ST_F64 = 0,
    QD_ST_F32,
    QD_ST_F16,
    QD_ST_BF16,
    QD_ST_I64,
    QD_ST_I32,
    QD_ST_I16,
    QD_ST_I8,
    QD_ST_U8,
    QD_ST_BOOL,
    QD_ST_F8_E4M3,
    QD_ST_F8_E5M2,
    QD_ST_DTYPE_COUNT
} qd_st_dtype;

#define QD_ST_MAX_RANK 8

/** "F32", "I8", "F8_E4M3", ... */
const char *qd_st_dtype_name(qd_st_dtype t);
/** Bytes per element. */
size_t qd_st_dtype_size(qd_st_dtype t);
/** @return QD_OK or QD_EUNSUPPORTED */
int qd_st_dtype_from_name(const char *name, qd_st_dtype *out);

typedef struct qd_st_writer qd_st_writer;

/** An empty writer. @return QD_OK, QD_ENOMEM */
int qd_st_writer_new(qd_st_writer **out);
void qd_st_writer_free(qd_st_writer *w);
/** A `__metadata__` entry (string to string; replaces an earlier value). */
int qd_st_writer_meta(qd_st_writer *w, const char *key, const char *value);
/**
 * Add a tensor; the bytes are copied. nbytes must equal the product of shape times the dtype size.
 * @return QD_OK, QD_EINVAL (size, rank, name), QD_EEXISTS (duplicate name), QD_ENOMEM
 */
int qd_st_writer_add(qd_st_writer *w, const char *name, qd_st_dtype dtype, uint32_t rank, const int64_t *shape,
                     const void *data, size_t nbytes);
/**
 * Write dir/<stem>.safetensors, or when max_shard_bytes > 0 and the data does not fit one shard,
 * dir/<stem>-0000i-of-0000n.safetensors plus dir/<stem>.safetensors.index.json. Tensors go in order of decreasing
 * element size, then name (so every tensor's data is aligned to its element size); the JSON header is padded with
 * spaces to a multiple of 8 bytes. Each file is written as .part and renamed. @return QD_OK, QD_EIO, QD_EINVAL
 */
int qd_st_writer_write(qd_st_writer *w, const char *dir, const char *stem, uint64_t max_shard_bytes,
                       uint64_t *bytes_written);

/** One tensor of a raw safetensors file; pointers into the mapping. */
typedef struct qd_st_entry {
    const char *name;
    qd_st_dtype dtype;
    uint32_t rank;
    int64_t shape[QD_ST_MAX_RANK];
    const uint8_t *data;
    uint64_t nbytes;
} qd_st_entry;

typedef struct qd_st_file qd_st_file;

/**
 * Open a safetensors file, or a folder holding model.safetensors or model.safetensors.index.json (shards), with
 * every dtype. Same checks as the model reader: header bounded and valid JSON, known dtypes, sizes match shapes,
 * ranges inside the data section and not overlapping. @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT, QD_ETRUNCATED,
 * QD_EUNSUPPORTED (dtype)
 */
int qd_st_open(qd_st_file **out, const char *path);
void qd_st_close(qd_st_file *f);
size_t qd_st_count(const qd_st_file *f);
const qd_st_entry *qd_st_at(const qd_st_file *f, size_t i);
const qd_st_entry *qd_st_find(const qd_st_file *f, const char *name);
/** A `__metadata__` value of the (first) file, or NULL. */
const char *qd_st_meta(const qd_st_file *f, const char *key);

/* ---- one matrix ----------------------------------------------------------------------------------------------- */

typedef enum qd_hfq_format {
    QD_HFQ_BNB = 0, /**< bitsandbytes 4-bit, as Transformers saves it */
    QD_HFQ_CT = 1,  /**< compressed-tensors (llm-compressor, vLLM) */
    QD_HFQ_GPTQ = 2 /**< AutoGPTQ / GPTQModel "gptq" checkpoints (qweight, qzeros, scales, g_idx): GPTQ only */
} qd_hfq_format;

typedef enum qd_hfq_type {
    QD_HFQ_NF4 = 0,      /**< bnb */
    QD_HFQ_FP4 = 1,      /**< bnb */
    QD_HFQ_INT8 = 2,     /**< ct int-quantized (W8A8): int8 per output channel, symmetric, f32 scales; with
                              weight_only, pack-quantized 8-bit (W8A16, vLLM's weight-only int8 path) */
    QD_HFQ_FP8_E4M3 = 3, /**< ct float-quantized */
    QD_HFQ_FP8_E5M2 = 4, /**< ct float-quantized layout with E5M2 elements (a quantd extension; see the docs) */
    QD_HFQ_INT4 = 5      /**< ct pack-quantized: int4 symmetric per group, 8 per int32 */
} qd_hfq_type;

/** "nf4", "fp4", "int8", "fp8_e4m3", "fp8_e5m2", "int4" */
const char *qd_hfq_type_name(qd_hfq_type t);
int qd_hfq_type_from_name(const char *name, qd_hfq_type *out);
const char *qd_hfq_format_name(qd_hfq_format f);
int qd_hfq_format_from_name(const char *name, qd_hfq_format *out);

typedef struct qd_hfq_opts {
    qd_hfq_format format;
    qd_hfq_type type;
    int32_t group;       /**< bnb: blocksize (0 = 64); int4: group size (0 = 128); ignored otherwise */
    bool double_quant;   /**< bnb: quantize the absmax with the dynamic map in blocks of 256 */
    bool per_tensor;     /**< fp8: one scale for the tensor instead of one per output channel */
    const char *dtype;   /**< bnb quant state "dtype" (the original weight dtype): "float16", "bfloat16", "float32";
                              NULL = "float32" */
    bool weight_only;    /**< int8: W8A16 in pack-quantized (4 per int32), per channel or per group (group > 0) */
} qd_hfq_opts;

#define QD_HFQ_MAX_PARTS 6

/** One tensor of a layout: its name is the module prefix ("model.layers.0.mlp.up_proj.") followed by suffix. */
typedef struct qd_hfq_part {
    char suffix[64];
    qd_st_dtype dtype;
    uint32_t rank;
    int64_t shape[4];
    uint8_t *data; /**< qd_malloc'd */
    size_t nbytes;
} qd_hfq_part;

typedef struct qd_hfq_result {
    size_t n_parts;
    qd_hfq_part parts[QD_HFQ_MAX_PARTS];
    float *deq;    /**< rows * cols: the values a loader reconstructs, computed by the quantizer from its codes */
    int64_t rows, cols;
} qd_hfq_result;

/**
 * Quantize a row-major matrix w[rows][cols] (rows = output features). Checks: every value finite; bnb: rows*cols
 * even; int4: cols a multiple of the group and of 8.
 * @return QD_OK, QD_EINVAL (shape, non-finite values, format/type mismatch: the message names it), QD_ENOMEM
 */
int qd_hfq_quantize(qd_hfq_result *out, const qd_hfq_opts *o, const float *w, int64_t rows, int64_t cols);
void qd_hfq_result_free(qd_hfq_result *r);

/**
 * Build the pack-quantized parts from an integer grid q[rows][cols] in [-2^(bits-1), 2^(bits-1) - 1] and
 * scales[rows][cols/group] (group == cols: one scale per output channel, stored as [rows, 1]), and the values they
 * stand for: how GPTQ/AWQ results (symmetric) enter the same layout. bits: 4 or 8.
 * @return QD_OK, QD_EINVAL (bits, shape, a value out of range), QD_ENOMEM
 */
int qd_hfq_pack_int(qd_hfq_result *out, int bits, const int8_t *q, const float *scales, int64_t rows, int64_t cols,
                    int32_t group);

/**
 * Read the module with this prefix ("model.layers.0.mlp.up_proj.") back from a file and dequantize it. The layout is
 * found from the tensors present (weight.quant_state.bitsandbytes__*, weight_packed, weight I8 / F8_*).
 * @param[out] out  rows*cols floats, qd_malloc'd
 * @return QD_OK, QD_ENOTFOUND (no quantized weight under prefix), QD_ECORRUPT (parts inconsistent)
 */
int qd_hfq_dequantize(float **out, int64_t *rows, int64_t *cols, const qd_st_file *f, const char *prefix);

/* ---- whole models --------------------------------------------------------------------------------------------- */

/**
 * A quantization method for one linear layer: fill out (as qd_hfq_quantize does) from w[rows][cols] in HF order.
 * hf_name is the tensor's HF name ("model.layers.3.mlp.down_proj.weight"). Where calibrated methods plug in.
 * out arrives zeroed; on error the caller frees whatever parts it holds (qd_hfq_result_free).
 * @return QD_OK or an error (with its message set)
 */
typedef int (*qd_hfq_layer_fn)(qd_hfq_result *out, const char *hf_name, const float *w, int64_t rows, int64_t cols,
                               const qd_hfq_opts *o, void *payload);

typedef struct qd_hfq_export_opts {
    qd_hfq_opts q;
    const char *method;       /**< recorded in the metadata; without layer_fn only "rtn" (or NULL) is accepted */
    qd_hfq_layer_fn layer_fn; /**< NULL: round to nearest (qd_hfq_quantize) */
    void *payload;            /**< passed to layer_fn */
    uint64_t max_shard_bytes; /**< 0: one model.safetensors */
    const char *quant_config; /**< JSON object text: the method's own quantization_config (e.g. GPTQ's), or NULL */
} qd_hfq_export_opts;

typedef struct qd_hfq_export_stats {
    size_t n_tensors, n_quantized;
    uint64_t file_bytes;      /**< safetensors bytes */
    uint64_t q_elements;      /**< weights in quantized matrices */
    uint64_t q_bytes;         /**< bytes of their parts (codes, scales, states) */
    double max_rel_rmse;      /**< worst ||w - deq|| / ||w|| over the quantized matrices */
    double seconds;
} qd_hfq_export_stats;

/**
 * Quantize a model (any source qd_model_open takes) into out_dir: model.safetensors (HF names, HF row order),
 * config.json with quantization_config (the source's config.json updated, or one derived from the hyper-parameters),
 * and README.md whose front matter names base_model and base_model_relation: quantized. The linear layers of the
 * blocks are quantized; embeddings, norms and lm_head stay in their source dtype.
 * @return QD_OK, QD_EINVAL, QD_EUNSUPPORTED (not a llama-family model), QD_EIO
 */
int qd_hfq_export(qd_hfq_export_stats *st, const char *src, const char *out_dir, const qd_hfq_export_opts *o);

#ifdef __cplusplus
}
#endif
#endif
