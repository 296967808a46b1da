/*
 * model.h - model files: GGUF v3, safetensors (single or sharded) and llama2.c checkpoints, read through mmap.
 *
 * qd_model_open() sniffs the format and builds one view of the model whatever the file: metadata as GGUF key/value
 * pairs (a safetensors or llama2.c source gets the llama.* keys derived from its config or header), and a tensor
 * table with GGUF names ("blk.0.attn_q.weight"), ggml shapes (ne[0] is the row length), the ggml type and a pointer
 * into the mapped file. Nothing reads a whole model into memory: tensor data stays in the page cache and is
 * converted row range by row range (qd_tensor_read_f32).
 *
 * Every structural check happens in qd_model_open(): counts bounded by the file size, strings and arrays inside the
 * file, known types, shapes whose byte size does not overflow, offsets aligned, in range and not overlapping. A file
 * that fails one is refused with QD_ECORRUPT (or QD_ETRUNCATED, QD_EUNSUPPORTED) and a message naming the field.
 *
 * Threads: a qd_model is read-only after open; any number of threads may call the getters and qd_tensor_read_f32.
 */
#ifndef QD_MODEL_H
#define QD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_model_format {
    QD_MODEL_UNKNOWN = 0,
    QD_MODEL_GGUF = 1,
    QD_MODEL_SAFETENSORS = 2,
    QD_MODEL_LLAMA2C = 3
} qd_model_format;

/** GGUF metadata value types (the numbers are GGUF's). */
typedef enum qd_gguf_type {
    QD_GGUF_U8 = 0,
    QD_GGUF_I8 = 1,
    QD_GGUF_U16 = 2,
    QD_GGUF_I16 = 3,
    QD_GGUF_U32 = 4,
    QD_GGUF_I32 = 5,
    QD_GGUF_F32 = 6,
    QD_GGUF_BOOL = 7,
    QD_GGUF_STRING = 8,
    QD_GGUF_ARRAY = 9,
    QD_GGUF_U64 = 10,
    QD_GGUF_I64 = 11,
    QD_GGUF_F64 = 12,
    QD_GGUF_TYPE_COUNT = 13
} qd_gguf_type;

#define QD_GGUF_DEFAULT_ALIGNMENT 32u
#define QD_GGUF_MAX_NAME 63 /**< longest tensor name llama.cpp accepts (GGML_MAX_NAME - 1) */

/** One metadata pair. All memory belongs to the model (or writer) that holds it. */
typedef struct qd_kv {
    char *key;              /**< NUL-terminated key */
    qd_gguf_type type;      /**< value type */
    qd_gguf_type arr_type;  /**< element type when type == QD_GGUF_ARRAY */
    uint64_t n;             /**< element count when type == QD_GGUF_ARRAY, else 1 */
    union {
        uint64_t u;         /**< unsigned integers and bool */
        int64_t i;          /**< signed integers */
        double f;           /**< F32 and F64 */
    } num;                  /**< scalar value, widened */
    char *str;              /**< STRING: the bytes, NUL-terminated for convenience (may contain NUL) */
    uint64_t str_len;       /**< STRING: byte length */
    void *arr;              /**< ARRAY of numbers: n packed little-endian elements; ARRAY of strings: char *[n] */
    uint64_t *arr_lens;     /**< ARRAY of strings: byte length of each */
} qd_kv;

/** Byte size of one scalar of a numeric GGUF type, 0 for STRING/ARRAY/unknown. */
size_t qd_gguf_type_size(qd_gguf_type t);
/** "u8", "i32", "f32", "bool", "string", "array", ... or "?" */
const char *qd_gguf_type_name(qd_gguf_type t);

/** The value of an integer or bool kv (any width) as int64. @return QD_OK or QD_EINVAL (not an integer) */
int qd_kv_int(const qd_kv *kv, int64_t *out);
/** The value of a numeric kv as double. @return QD_OK or QD_EINVAL */
int qd_kv_float(const qd_kv *kv, double *out);

/** One tensor of a model. */
typedef struct qd_tensor {
    char name[QD_GGUF_MAX_NAME + 1]; /**< GGUF name */
    char *src_name;          /**< the name in the source file (HF name for safetensors), owned by the model */
    qd_type type;            /**< element type */
    uint32_t n_dims;         /**< 1..4 */
    int64_t ne[4];           /**< ggml order: ne[0] = row length; unused dims are 1 */
    uint64_t nbytes;         /**< bytes of data */
    uint64_t offset;         /**< offset of the data inside its file's data section */
    const uint8_t *data;     /**< into the mapping; not necessarily aligned for safetensors */
    int32_t permute_heads;   /**< >0: rows are stored in HF order and are reordered to GGUF (Meta) order for this
                                  many heads when read (qd_tensor_read_f32, qd_tensor_read_rows) */
    bool file_mapped;        /**< data lies in a read-only file mapping (qd_tensor_drop_pages may release it) */
    bool file_readable;      /**< file_fd and file_pos are set: the bytes can also be read with pread */
    int file_fd;             /**< the open file holding data (owned by the model) */
    uint64_t file_pos;       /**< absolute offset of data in that file */
} qd_tensor;

/** Hyper-parameters of a llama-family model, from metadata or the checkpoint header. */
typedef struct qd_hparams {
    char arch[32];           /**< general.architecture ("llama") */
    int64_t n_vocab;         /**< vocabulary size (rows of token_embd) */
    int64_t n_embd;          /**< model width */
    int64_t n_ff;            /**< FFN hidden size */
    int64_t n_layer;         /**< blocks */
    int64_t n_head;          /**< query heads */
    int64_t n_head_kv;       /**< key/value heads (GQA when < n_head) */
    int64_t n_ctx;           /**< training context length */
    int64_t n_rot;           /**< RoPE dimensions */
    double rms_eps;          /**< RMSNorm epsilon */
    double rope_theta;       /**< RoPE base frequency */
    bool has_tokenizer;      /**< tokenizer.ggml.* keys are present */
    bool tied_output;        /**< the source has no separate classifier (output.weight aliases token_embd) */
} qd_hparams;

typedef struct qd_model qd_model;

/**
 * Open a model: a .gguf file, a .safetensors file, a directory or model.safetensors.index.json of a sharded
 * safetensors model, or a llama2.c .bin checkpoint. The format is found by content (GGUF magic, safetensors header,
 * else a plausible llama2.c header).
 * @param[out] out  the model; free with qd_model_free()
 * @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT, QD_ETRUNCATED (file too short), QD_EUNSUPPORTED (dtype, version)
 */
int qd_model_open(qd_model **out, const char *path);

/** Parse a model from memory (the bytes stay owned by the caller and must outlive the model). Used by the fuzz
 * targets and tests; same checks as qd_model_open. @return as qd_model_open */
int qd_model_open_mem(qd_model **out, const void *data, size_t size, qd_model_format format);

void qd_model_free(qd_model *m);

qd_model_format qd_model_format_of(const qd_model *m);
const char *qd_model_format_name(qd_model_format f);

size_t qd_model_kv_count(const qd_model *m);
const qd_kv *qd_model_kv_at(const qd_model *m, size_t i);
/** The kv with this key, or NULL. */
const qd_kv *qd_model_kv_find(const qd_model *m, const char *key);

size_t qd_model_tensor_count(const qd_model *m);
const qd_tensor *qd_model_tensor_at(const qd_model *m, size_t i);
/** The tensor with this GGUF name, or NULL. */
const qd_tensor *qd_model_tensor_find(const qd_model *m, const char *name);

/** GGUF only: file version, alignment and data section offset (0 for other formats). */
uint32_t qd_model_gguf_version(const qd_model *m);
uint32_t qd_model_alignment(const qd_model *m);
uint64_t qd_model_data_offset(const qd_model *m);

/** Derive the llama hyper-parameters. @return QD_OK, QD_EUNSUPPORTED (not a llama-family model / keys missing) */
int qd_model_hparams(const qd_model *m, qd_hparams *out);

/** Elements of a tensor. */
int64_t qd_tensor_nelements(const qd_tensor *t);

/**
 * Convert rows [row0, row0 + nrows) of a tensor (rows of ne[0] values, in GGUF order) to f32.
 * F32/F16/BF16 are converted here; quantized types go through qd_dequantize_rows().
 * @return QD_OK, QD_EINVAL (range), QD_EUNSUPPORTED (no dequantizer for the type)
 */
int qd_tensor_read_f32(const qd_tensor *t, int64_t row0, int64_t nrows, float *dst);

/**
 * qd_tensor_read_f32, reading the source bytes with pread into stage (stage_cap bytes) instead of through the
 * mapping when the tensor allows it (file_readable, no head permutation, the rows fit): on VMs with nested paging
 * streaming a large mapping costs a TLB miss per 4 KiB page, several times what the kernel's copy into a small
 * buffer that stays in cache costs. Falls back to qd_tensor_read_f32 otherwise. Same bytes out either way.
 * amax (NULL: not wanted) gets the largest magnitude read where the conversion measured it on the way
 * (qd_dequantize_rows_bound), else NaN: the bound qd_quantize_rows_bounded takes.
 * @return as qd_tensor_read_f32, or QD_EIO when the read fails
 */
int qd_tensor_read_f32_staged(const qd_tensor *t, int64_t row0, int64_t nrows, float *dst, void *stage,
                              size_t stage_cap, float *amax);

/** Drop the mapped pages of a tensor from this process (they stay in the page cache): keeps resident memory small
 * while streaming a model. The data stays readable (it is faulted in again on access). */
void qd_tensor_drop_pages(const qd_tensor *t);

/** Copy the raw bytes of rows [row0, row0 + nrows) in GGUF row order (applies the HF Q/K permutation). */
int qd_tensor_read_rows(const qd_tensor *t, int64_t row0, int64_t nrows, void *dst);

/* ---- names ---------------------------------------------------------------------------------------------------- */

typedef enum qd_name_scheme {
    QD_NAMES_GGUF = 0,    /**< blk.N.attn_q.weight */
    QD_NAMES_HF = 1,      /**< model.layers.N.self_attn.q_proj.weight */
    QD_NAMES_LLAMA2C = 2  /**< layers.N.attention.wq.weight (Meta / llama2.c model.py names) */
} qd_name_scheme;

/** What a name mapping implies for the rows of the tensor. */
typedef enum qd_name_permute {
    QD_PERMUTE_NONE = 0,
    QD_PERMUTE_Q = 1,     /**< HF <-> GGUF attn_q: rows reordered over n_head heads */
    QD_PERMUTE_K = 2      /**< HF <-> GGUF attn_k: rows reordered over n_head_kv heads */
} qd_name_permute;

/**
 * Map a tensor name between schemes.
 * @param[out] out      the mapped name (NUL-terminated)
 * @param[in]  cap      size of out
 * @param[out] permute  what the mapping implies for the rows (may be NULL)
 * @return QD_OK, QD_ENOTFOUND (no counterpart: e.g. rotary_emb.inv_freq), QD_EINVAL (cap too small)
 */
int qd_name_map(char *out, size_t cap, qd_name_permute *permute, const char *name, qd_name_scheme from,
                qd_name_scheme to);

/**
 * The HF -> GGUF row permutation llama.cpp's converter applies to attn_q/attn_k (the inverse of the one the HF
 * conversion script applied to Meta's weights): GGUF row r of head h (r = h*hd + 2*i + j, i < hd/2, j < 2) is HF
 * row h*hd + j*hd/2 + i. @return the source row for GGUF row r, or -1 when rows is not a multiple of 2*n_head.
 */
int64_t qd_permute_src_row(int64_t r, int64_t rows, int64_t n_head);
/** The inverse: the GGUF row that holds HF row s. */
int64_t qd_permute_dst_row(int64_t s, int64_t rows, int64_t n_head);

/* ---- GGUF writer ---------------------------------------------------------------------------------------------- */

typedef struct qd_gguf_writer qd_gguf_writer;

/** A writer with an empty key set. alignment 0 means 32 (written as general.alignment only if not 32). */
int qd_gguf_writer_new(qd_gguf_writer **out, uint32_t alignment);
void qd_gguf_writer_free(qd_gguf_writer *w);

/** Set a key (replacing any earlier value). Strings are copied. @return QD_OK, QD_EINVAL, QD_ENOMEM */
int qd_gguf_set_u32(qd_gguf_writer *w, const char *key, uint32_t v);
int qd_gguf_set_i32(qd_gguf_writer *w, const char *key, int32_t v);
int qd_gguf_set_u64(qd_gguf_writer *w, const char *key, uint64_t v);
int qd_gguf_set_f32(qd_gguf_writer *w, const char *key, float v);
int qd_gguf_set_bool(qd_gguf_writer *w, const char *key, bool v);
int qd_gguf_set_str(qd_gguf_writer *w, const char *key, const char *v);
/** A numeric array of n elements of elem_type, packed little-endian. */
int qd_gguf_set_arr(qd_gguf_writer *w, const char *key, qd_gguf_type elem_type, const void *data, uint64_t n);
/** A string array. */
int qd_gguf_set_str_arr(qd_gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/** Copy a kv read from a model (any type). */
int qd_gguf_set_kv(qd_gguf_writer *w, const qd_kv *kv);
/** Remove a key if present. */
void qd_gguf_del(qd_gguf_writer *w, const char *key);

/** Declare the next tensor (data is written later, in the same order). @return QD_OK, QD_EINVAL (name, shape,
 * row not a multiple of the block size), QD_EEXISTS (duplicate name) */
int qd_gguf_add_tensor(qd_gguf_writer *w, const char *name, qd_type type, uint32_t n_dims, const int64_t *ne);

/** Whether qd_gguf_writer_finish makes the file durable (fsync) before renaming it into place; call before
 * qd_gguf_writer_begin. Default true. false writes through the page cache and leaves the flush to the kernel (a
 * temporary file that is copied elsewhere, or a tool writing as cp does): after a crash the file may be missing or
 * short, never another file's bytes. */
void qd_gguf_writer_set_durable(qd_gguf_writer *w, bool durable);
/** Create path.part, write the header, metadata and tensor infos. @return QD_OK, QD_EIO */
int qd_gguf_writer_begin(qd_gguf_writer *w, const char *path);
/** Append data of tensor i; the tensors must come in declaration order, each with exactly its byte size (given in
 * one or several calls). @return QD_OK, QD_EINVAL (order/size), QD_EIO */
int qd_gguf_writer_write(qd_gguf_writer *w, const void *data, size_t len);
/** Check every tensor was written, fsync, rename path.part to path. @return QD_OK, QD_EINVAL, QD_EIO */
int qd_gguf_writer_finish(qd_gguf_writer *w);
/** Bytes of the file once finished (valid after begin). */
uint64_t qd_gguf_writer_file_size(const qd_gguf_writer *w);
/** Write a whole GGUF into memory (tests, fuzz corpora): every tensor's data from datas[i]. Free with qd_free. */
int qd_gguf_writer_to_mem(qd_gguf_writer *w, const void *const *datas, uint8_t **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
