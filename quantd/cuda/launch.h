/*
 * launch.h - the kernels of kernels.cu, as C functions for host.c. Each enqueues its work on stream and returns
 * the launch's cudaError_t (cudaSuccess = 0); a failure inside a kernel shows at the stream's next sync.
 */
#ifndef QD_CUDA_LAUNCH_H
#define QD_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a unit of work starts: the first bad value's flat index, or this when none was seen. */
#define QD_CUDA_NO_BAD 0xffffffffffffffffull

/* The input checks of the CPU path, by target type (see host.c). */
enum {
    QD_CUDA_CHECK_NONE = 0,   /* F32 targets */
    QD_CUDA_CHECK_FINITE = 1, /* BF16 */
    QD_CUDA_CHECK_BELOW = 2,  /* F16: finite and |x| < limit */
    QD_CUDA_CHECK_WITHIN = 3  /* block types: finite and |x| <= limit */
};

/**
 * Convert n values of src_type (F32, F16, BF16: qd_type numbers) to f32 and record in *bad the smallest index of a
 * value that fails check (with limit). *bad must start at QD_CUDA_NO_BAD.
 */
int qd_cuda_k_convert(cudaStream_t stream, int src_type, const void *src, float *f32, int64_t n, int check,
                      float limit, unsigned long long *bad);

/** Quantize nrows rows of ncols f32 values on the device into dst (type t), with imatrix qw (ncols) or NULL.
 *  Nothing is done when bad[0] says the convert step found a bad value (the kernels assume finite input); after
 *  quantizing, bad[1] gets the smallest index of a block whose fp16 scale at byte offset fields[0] or fields[1]
 *  (-1: none) overflowed. bad[1] must start at QD_CUDA_NO_BAD. */
int qd_cuda_k_quantize(cudaStream_t stream, int t, const float *x, void *dst, int64_t nrows, int64_t ncols,
                       const float *qw, const int fields[2], unsigned long long *bad);

/** Dequantize nrows rows of ncols values of type t on the device into f32. */
int qd_cuda_k_dequantize(cudaStream_t stream, int t, const void *src, float *dst, int64_t nrows, int64_t ncols);

/** Whether this device can run the kernels (a build for another architecture cannot): a cudaError_t. */
int qd_cuda_k_probe(void);

/** Whether the device code has type t (quantize, with or without an importance matrix, and dequantize). */
bool qd_cuda_k_has(int t);

#ifdef __cplusplus
}
#endif
#endif
