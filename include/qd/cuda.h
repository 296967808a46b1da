/*
 * cuda.h - the engine's GPU path: quantize and dequantize rows on an NVIDIA GPU (quantd/cuda/).
 *
 * The GPU runs the scalar reference itself: quantd/cuda/kernels.cu compiles quantd/kernels/ref_*.c as device
 * code (nvcc -fmad=false, IEEE division and square root, no flush to zero), so its bytes are the reference's by
 * construction, and the golden vectors check it (tests/unit/test_cuda.c). Built with `make CUDA=1` where nvcc
 * exists; in other builds every function here is present and reports QD_EUNSUPPORTED, so callers never #ifdef.
 *
 * A qd_cuda is one device with its streams, pinned host buffers and device buffers. Rows stream through it in
 * chunks: while the GPU copies in, converts, quantizes and copies out one chunk, host threads copy the next one
 * into pinned memory and the last one out of it. One thread uses a qd_cuda at a time.
 */
#ifndef QD_CUDA_H
#define QD_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_cuda qd_cuda;

typedef struct qd_cuda_info {
    char name[256];      /**< "NVIDIA H200" */
    int sm;              /**< compute capability as major * 10 + minor (90 for Hopper) */
    int multiprocessors;
    uint64_t memory;     /**< bytes of device memory */
    int copy_engines;    /**< asynchronous copy engines (2: copies in and out overlap) */
} qd_cuda_info;

/** Whether this build has the CUDA path (make CUDA=1). */
bool qd_cuda_built(void);

/**
 * Open the first CUDA device (or the one CUDA_VISIBLE_DEVICES leaves first) with buffers for chunks of up to
 * chunk_values source values (0: 4 Mi). @return QD_OK, QD_EUNSUPPORTED (no CUDA in this build, no device, a
 * driver older than the runtime; the message says which), QD_ENOMEM
 */
int qd_cuda_open(qd_cuda **out, size_t chunk_values);
void qd_cuda_close(qd_cuda *c);

const qd_cuda_info *qd_cuda_device(const qd_cuda *c);
/** The kernel name recorded in summaries and statements: "cuda-sm90". @note lives as long as c. */
const char *qd_cuda_kernel_name(const qd_cuda *c);

/** Whether the GPU path quantizes to type t (with an importance matrix when imatrix), and reads source type src
 *  (F32, F16, BF16). */
bool qd_cuda_can_quantize(qd_type t, bool imatrix);
bool qd_cuda_can_read(qd_type src);
bool qd_cuda_can_dequantize(qd_type t);

/**
 * Quantize nrows rows of ncols values of src_type (host memory, rows back to back) into dst (host memory,
 * nrows * qd_row_size(t, ncols) bytes), with per-column importance imatrix (ncols values) or NULL. The same
 * checks as qd_quantize_rows: ncols a multiple of the block size; every value finite and within what the type
 * holds (F16: below 65520), else QD_EINVAL naming the first bad value's row and column.
 * @return QD_OK, QD_EINVAL, QD_EUNSUPPORTED (a type the GPU path lacks), QD_ENOMEM, QD_ERROR (a CUDA error; the
 *         message names the call)
 */
int qd_cuda_quantize(qd_cuda *c, qd_type t, qd_type src_type, const void *src, void *dst, int64_t nrows,
                     int64_t ncols, const float *imatrix);

/** As qd_cuda_quantize, with the rows read from the file fd at offset (pread, straight into pinned memory, split
 *  over the copy threads: no mapping to fault through). @return as qd_cuda_quantize, and QD_EIO (a read failed) */
int qd_cuda_quantize_file(qd_cuda *c, qd_type t, qd_type src_type, int fd, uint64_t offset, void *dst, int64_t nrows,
                          int64_t ncols, const float *imatrix);

/** Dequantize nrows rows of type t (host memory) into f32 (host memory). @return as qd_cuda_quantize */
int qd_cuda_dequantize(qd_cuda *c, qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols);

/**
 * Pin len bytes of the caller's memory at p for the device's copy engines (read_only: a read-only mapping, such as
 * a model file's). Calls whose source or destination lie inside a registered range copy it directly, without the
 * staging copy through qd_cuda's own pinned buffers: on a host whose memory bandwidth is the limit that halves the
 * host traffic. Pinning costs time (it is measured by bench/cuda_bench.c); register what is used many times.
 * @return QD_OK, QD_EINVAL (overlaps a registered range), QD_EUNSUPPORTED (the driver refused; the staging path
 *         still works)
 */
int qd_cuda_register(qd_cuda *c, const void *p, size_t len, bool read_only);
/** Unpin a range registered at p (no effect for another pointer). Ranges still registered are unpinned by
 *  qd_cuda_close. */
void qd_cuda_unregister(qd_cuda *c, const void *p);

/** Time the copies alone, for benchmarks: bytes from pinned host memory to the device and back, best of reps.
 *  @return QD_OK (GB/s in *h2d and *d2h), QD_EUNSUPPORTED, QD_ENOMEM, QD_ERROR */
int qd_cuda_copy_bandwidth(qd_cuda *c, size_t bytes, int reps, double *h2d, double *d2h);

#ifdef __cplusplus
}
#endif
#endif
