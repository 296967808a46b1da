/*
 * pipeline.h - quantize a whole model into a GGUF file, tensor by tensor, with a pool of threads over row ranges.
 *
 * The source (any file qd_model_open reads) is read one chunk of rows at a time (with pread where the file allows,
 * else through its mapping); N threads claim the chunk's row blocks as they come free, convert each to f32 and
 * quantize it with qd_quantize_rows() into its own place in the output (so the bytes do not depend on N), and a
 * writer thread appends the chunk while the next one is computed. Peak memory is a few blocks in f32 plus two
 * chunks of output, not the model.
 */
#ifndef QD_PIPELINE_H
#define QD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Progress report, called on the caller's thread after each chunk. */
typedef struct qd_quantize_progress {
    size_t tensor;          /**< index of the tensor being written (0-based) */
    size_t n_tensors;
    const char *name;       /**< its GGUF name */
    uint64_t bytes_in_done; /**< source bytes consumed so far */
    uint64_t bytes_in_total;
} qd_quantize_progress;

/** Where tensors are quantized (qd_quantize_opts.device). */
typedef enum qd_device {
    QD_DEVICE_AUTO = 0, /**< the GPU (include/qd/cuda.h) for large tensors whose scale search dominates the work
                             (K-quants, IQ4, any importance-weighted type), where this build has the GPU path and a
                             device answers; the CPU for the rest (the plain and legacy types run at memory
                             bandwidth on the CPU, where the GPU's copies only add host traffic) */
    QD_DEVICE_CPU = 1,  /**< never the GPU */
    QD_DEVICE_CUDA = 2  /**< the GPU for every tensor it can take (a source it reads, a type it has); QD_EUNSUPPORTED
                             when there is no GPU path or device */
} qd_device;

typedef struct qd_quantize_opts {
    qd_ftype ftype;                 /**< the recipe */
    int threads;                    /**< 0: one per online CPU */
    const char *imatrix_path;       /**< llama.cpp imatrix (legacy .dat or GGUF), or NULL */
    qd_recipe_opts recipe;          /**< --pure, type overrides (has_imatrix is set from imatrix_path) */
    size_t chunk_elems;             /**< source elements per chunk (0: 4 Mi) */
    bool allow_requantize;          /**< convert tensors that are already quantized (refused otherwise, as
                                         llama-quantize refuses without --allow-requantize) */
    qd_device device;               /**< CPU, GPU or the choice per tensor (the default) */
    int64_t cuda_min_elems;         /**< AUTO: smallest tensor (values) sent to the GPU (0: 1 Mi) */
    bool durable;                   /**< make the output durable (fsync, written with O_DIRECT where the file
                                         system allows) before it is renamed into place; false (the default, as
                                         llama-quantize and cp) leaves the flush to the kernel */
    void (*progress)(const qd_quantize_progress *p, void *payload);
    /** Asked after every chunk (may be NULL): true stops the run, which returns QD_ECANCELED and leaves no
     *  output file. The daemon's job cancel (DELETE /v1/jobs/ID) uses it. */
    bool (*cancel)(void *payload);
    void *payload;
    /* calibrated methods (include/qd/gptq.h, docs/CALIBRATION.md) */
    const struct qd_imatrix *imatrix; /**< an importance matrix in memory (instead of imatrix_path), or NULL */
    /** A method's own bytes for a tensor the recipe quantizes to type: rows * qd_row_size(type, cols) bytes that
     *  stay valid until qd_quantize_model returns, or NULL to let the pipeline quantize it. */
    const void *(*tensor_fn)(void *method_payload, const char *name, qd_type type, int64_t rows, int64_t cols);
    /** Extra metadata keys (method, recipe, calibration), written after the standard ones. */
    int (*meta_fn)(void *method_payload, struct qd_gguf_writer *w);
    void *method_payload;
} qd_quantize_opts;

struct qd_imatrix;
struct qd_gguf_writer;

typedef struct qd_quantize_stats {
    uint64_t file_bytes;    /**< size of the written file */
    uint64_t tensor_bytes;  /**< bytes of tensor data */
    uint64_t n_elements;    /**< weights */
    size_t n_tensors;
    size_t n_quantized;     /**< tensors converted (the others were copied) */
    size_t n_fallback;      /**< tensors that needed a fallback type */
    size_t n_beyond_llama;  /**< of those, tensors llama.cpp refuses (written as F16) */
    size_t n_imatrix;       /**< tensors quantized with importance weights */
    size_t n_method;        /**< tensors whose bytes the method's tensor_fn supplied */
    int threads;
    size_t n_cuda;          /**< tensors quantized on the GPU */
    char kernel[48];        /**< the kernels that made the bytes: "avx512", "cuda-sm90", or both as "cuda-sm90+avx512"
                                 when the tensors were split between them */
    double seconds;
    uint64_t type_bytes[QD_TYPE_COUNT]; /**< tensor bytes per written type */
} qd_quantize_stats;

/**
 * Quantize in_path into a GGUF at out_path (written to out_path.part, renamed at the end).
 * @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT (bad source), QD_EUNSUPPORTED (a type the kernels lack, not a llama
 *         model), QD_EINVAL (NaN/Inf or out-of-range values a target type cannot hold), QD_EIO, QD_ECANCELED
 *         (opts->cancel said so)
 */
int qd_quantize_model(qd_quantize_stats *stats, const char *in_path, const char *out_path,
                      const qd_quantize_opts *opts);

/** An importance matrix: per tensor name, one weight per column. */
typedef struct qd_imatrix qd_imatrix;
/** Read llama.cpp's legacy imatrix.dat (values divided by their call count, as llama-quantize does) or a GGUF
 * imatrix (in_sum2 / counts). @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT */
int qd_imatrix_load(qd_imatrix **out, const char *path);
void qd_imatrix_free(qd_imatrix *im);
/** The weights for a tensor, or NULL; *n gets their count. */
const float *qd_imatrix_find(const qd_imatrix *im, const char *name, int64_t *n);
size_t qd_imatrix_count(const qd_imatrix *im);
/** An empty importance matrix, filled with qd_imatrix_add (in-memory collection, include/qd/gptq.h). */
int qd_imatrix_new(qd_imatrix **out);
/** Add (a copy of) the weights of one tensor. @return QD_OK, QD_EEXISTS, QD_ENOMEM */
int qd_imatrix_add(qd_imatrix *im, const char *name, const float *v, int64_t n);
/** What the file says it was computed on: the dataset name (or NULL) and the chunk count (0 when unknown); set
 * by the loaders, or by the collector through qd_imatrix_set_info. */
void qd_imatrix_info(const qd_imatrix *im, const char **dataset, int32_t *chunks);
int qd_imatrix_set_info(qd_imatrix *im, const char *dataset, int32_t chunks);

/** Write the llama.cpp-acceptable placeholder vocabulary of n_vocab tokens (<unk>, <s>, </s>, <0x0A>, then
 * distinct single characters) and flag it with quantd.placeholder_vocab = true. */
struct qd_gguf_writer;
int qd_write_placeholder_vocab(struct qd_gguf_writer *w, int64_t n_vocab);

#ifdef __cplusplus
}
#endif
#endif
