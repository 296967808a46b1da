/*
 * kernels.cu - the GPU kernels: the scalar reference compiled as device code, one thread per independent unit.
 *
 * quantd/kernels/ref_*.c are included here as CUDA C++; QD_KFN/QD_KTAB (formats.h) make their functions and
 * tables device code. A thread quantizes one unit with the reference's own row function, called for a "row" that
 * is exactly that unit: one block for every type whose blocks depend only on their own values (and their slice of
 * the importance matrix), one whole row for the legacy types with an importance matrix (their weights use the
 * row's mean square), one value for F32/F16/BF16. The bytes are therefore the reference's, provided the compiler
 * keeps every float operation as written: -fmad=false (no contraction), -prec-div=true, -prec-sqrt=true,
 * -ftz=false (quantd/module.mk), the same discipline as -ffp-contract=off on the host.
 *
 * Each (type, imatrix) pair is its own template instance, so a kernel holds only its type's code (registers and
 * stack frame sized for it, no switch in the loop).
 */
#include <cuda_runtime.h>

#include "../kernels/ref_util.c"
#include "../kernels/ref_legacy.c"
#include "../kernels/ref_kquants.c"
#include "../kernels/ref_other.c"

#include "launch.h"

namespace {

/* ---- conversion and the input check ---- */

__global__ void k_convert(int src_type, const void *src, float *f32, int64_t n, int check, float limit,
                          unsigned long long *bad)
{
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v;
        if (src_type == QD_TYPE_F16)
            v = qd_fp16_to_fp32(((const qd_fp16 *)src)[i]);
        else if (src_type == QD_TYPE_BF16)
            v = qd_bf16_to_fp32(((const qd_bf16 *)src)[i]);
        else
            v = ((const float *)src)[i];
        f32[i] = v;
        bool ok = true;
        if (check != QD_CUDA_CHECK_NONE) {
            ok = isfinite(v);
            if (ok && check == QD_CUDA_CHECK_BELOW)
                ok = fabsf(v) < limit;
            else if (ok && check == QD_CUDA_CHECK_WITHIN)
                ok = fabsf(v) <= limit;
        }
        if (!ok)
            atomicMin(bad, (unsigned long long)i);
    }
}

/* ---- per-type units ---- */

/* The reference row functions, by type: quantize without and with an importance matrix, dequantize. */
template <int T> struct ops;
#define QD_OPS_(T, q, qi_call, dq, bs, ts, row, im)                                                                    \
    template <> struct ops<T> {                                                                                        \
        static constexpr int block = bs;      /* values per block */                                                   \
        static constexpr int bytes = ts;      /* bytes per block */                                                    \
        static constexpr bool row_unit = row; /* the imatrix quantizer needs the whole row */                          \
        static constexpr bool imatrix = im;   /* false: the reference ignores an importance matrix */                  \
        __device__ static void quantize(const float *x, void *y, int64_t n) { q(x, y, 1, n); }                         \
        __device__ static void quantize_imatrix(const float *x, void *y, int64_t n, const float *w)                    \
        {                                                                                                              \
            (void)w;                                                                                                   \
            qi_call;                                                                                                   \
        }                                                                                                              \
        __device__ static void dequantize(const void *x, float *y, int64_t n) { dq(x, y, 1, n); }                     \
    };
/* a type with an importance-weighted quantizer (row: it needs the whole row), and one without */
#define QD_OPS(T, q, qi, dq, bs, ts, row) QD_OPS_(T, q, qi(x, y, 1, n, w), dq, bs, ts, row, true)
#define QD_OPS_PLAIN(T, q, dq, bs, ts) QD_OPS_(T, q, q(x, y, 1, n), dq, bs, ts, false, false)

QD_OPS_PLAIN(QD_TYPE_F32, qd_ref_quantize_f32, qd_ref_dequantize_f32, 1, 4)
QD_OPS_PLAIN(QD_TYPE_F16, qd_ref_quantize_f16, qd_ref_dequantize_f16, 1, 2)
QD_OPS_PLAIN(QD_TYPE_BF16, qd_ref_quantize_bf16, qd_ref_dequantize_bf16, 1, 2)
QD_OPS(QD_TYPE_Q4_0, qd_ref_quantize_q4_0, qd_ref_quantize_q4_0_imatrix, qd_ref_dequantize_q4_0, 32,
       (int)sizeof(qd_block_q4_0), true)
QD_OPS(QD_TYPE_Q4_1, qd_ref_quantize_q4_1, qd_ref_quantize_q4_1_imatrix, qd_ref_dequantize_q4_1, 32,
       (int)sizeof(qd_block_q4_1), true)
QD_OPS(QD_TYPE_Q5_0, qd_ref_quantize_q5_0, qd_ref_quantize_q5_0_imatrix, qd_ref_dequantize_q5_0, 32,
       (int)sizeof(qd_block_q5_0), true)
QD_OPS(QD_TYPE_Q5_1, qd_ref_quantize_q5_1, qd_ref_quantize_q5_1_imatrix, qd_ref_dequantize_q5_1, 32,
       (int)sizeof(qd_block_q5_1), true)
QD_OPS_PLAIN(QD_TYPE_Q8_0, qd_ref_quantize_q8_0, qd_ref_dequantize_q8_0, 32, (int)sizeof(qd_block_q8_0))
QD_OPS(QD_TYPE_Q2_K, qd_ref_quantize_q2_K, qd_ref_quantize_q2_K_imatrix, qd_ref_dequantize_q2_K, 256,
       (int)sizeof(qd_block_q2_K), false)
QD_OPS(QD_TYPE_Q3_K, qd_ref_quantize_q3_K, qd_ref_quantize_q3_K_imatrix, qd_ref_dequantize_q3_K, 256,
       (int)sizeof(qd_block_q3_K), false)
QD_OPS(QD_TYPE_Q4_K, qd_ref_quantize_q4_K, qd_ref_quantize_q4_K_imatrix, qd_ref_dequantize_q4_K, 256,
       (int)sizeof(qd_block_q4_K), false)
QD_OPS(QD_TYPE_Q5_K, qd_ref_quantize_q5_K, qd_ref_quantize_q5_K_imatrix, qd_ref_dequantize_q5_K, 256,
       (int)sizeof(qd_block_q5_K), false)
QD_OPS(QD_TYPE_Q6_K, qd_ref_quantize_q6_K, qd_ref_quantize_q6_K_imatrix, qd_ref_dequantize_q6_K, 256,
       (int)sizeof(qd_block_q6_K), false)
QD_OPS(QD_TYPE_IQ4_NL, qd_ref_quantize_iq4_nl, qd_ref_quantize_iq4_nl_imatrix, qd_ref_dequantize_iq4_nl, 32,
       (int)sizeof(qd_block_iq4_nl), false)
QD_OPS(QD_TYPE_IQ4_XS, qd_ref_quantize_iq4_xs, qd_ref_quantize_iq4_xs_imatrix, qd_ref_dequantize_iq4_xs, 256,
       (int)sizeof(qd_block_iq4_xs), false)

/* The fp16 scales a block must hold finite (byte offsets, -1 for none): qd_kernels_fp16_fields. */
struct fields {
    int f[2];
};

/* One thread per unit of unit_vals values: unit u is row u / per_row, values (u % per_row) * unit_vals onwards. */
template <int T, bool IM>
__global__ void k_quantize(const float *x, uint8_t *y, int64_t nunits, int64_t per_row, int64_t unit_vals,
                           int64_t ncols, const float *qw, fields fs, unsigned long long *bad)
{
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= nunits || bad[0] != QD_CUDA_NO_BAD)
        return;
    const int64_t r = u / per_row, c = (u % per_row) * unit_vals, nb = unit_vals / ops<T>::block;
    const float *xu = x + r * ncols + c;
    uint8_t *yu = y + u * nb * ops<T>::bytes;
    if (IM)
        ops<T>::quantize_imatrix(xu, yu, unit_vals, qw + c);
    else
        ops<T>::quantize(xu, yu, unit_vals);
    for (int64_t b = 0; b < nb; b++) {
        for (int k = 0; k < 2; k++) {
            if (fs.f[k] < 0)
                continue;
            const uint8_t *h = yu + b * ops<T>::bytes + fs.f[k];
            if (((h[0] | h[1] << 8) & 0x7c00) == 0x7c00)
                atomicMin(&bad[1], (unsigned long long)(u * nb + b));
        }
    }
}

template <int T> __global__ void k_dequantize(const uint8_t *x, float *y, int64_t nblocks)
{
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= nblocks)
        return;
    ops<T>::dequantize(x + u * ops<T>::bytes, y + u * ops<T>::block, ops<T>::block);
}

/* Threads per CUDA block: the block-search types keep arrays of a whole super-block on each thread's stack. */
template <int T> constexpr int threads_for() { return ops<T>::block == 256 ? 64 : 256; }

template <int T> int launch_quantize(cudaStream_t s, const float *x, void *y, int64_t nrows, int64_t ncols,
                                     const float *qw, fields fs, unsigned long long *bad)
{
    if (!ops<T>::imatrix)
        qw = NULL; /* the reference ignores it for this type */
    const bool row = qw && ops<T>::row_unit;
    const int64_t unit_vals = row ? ncols : ops<T>::block, per_row = ncols / unit_vals, nunits = nrows * per_row;
    const int threads = row ? 32 : threads_for<T>();
    const int64_t grid = (nunits + threads - 1) / threads;
    if (nunits == 0)
        return cudaSuccess;
    if (qw)
        k_quantize<T, true><<<(unsigned)grid, threads, 0, s>>>(x, (uint8_t *)y, nunits, per_row, unit_vals, ncols,
                                                                qw, fs, bad);
    else
        k_quantize<T, false><<<(unsigned)grid, threads, 0, s>>>(x, (uint8_t *)y, nunits, per_row, unit_vals, ncols,
                                                                 qw, fs, bad);
    return (int)cudaGetLastError();
}

template <int T> int launch_dequantize(cudaStream_t s, const void *x, float *y, int64_t nrows, int64_t ncols)
{
    const int64_t nblocks = nrows * (ncols / ops<T>::block);
    const int threads = 256;
    if (nblocks == 0)
        return cudaSuccess;
    k_dequantize<T><<<(unsigned)((nblocks + threads - 1) / threads), threads, 0, s>>>((const uint8_t *)x, y,
                                                                                      nblocks);
    return (int)cudaGetLastError();
}

} // namespace

/* The one list of types the device code has (each with its ops above). */
#define QD_CUDA_TYPES(X)                                                                                               \
    X(QD_TYPE_F32) X(QD_TYPE_F16) X(QD_TYPE_BF16) X(QD_TYPE_Q4_0) X(QD_TYPE_Q4_1) X(QD_TYPE_Q5_0) X(QD_TYPE_Q5_1)     \
    X(QD_TYPE_Q8_0) X(QD_TYPE_Q2_K) X(QD_TYPE_Q3_K) X(QD_TYPE_Q4_K) X(QD_TYPE_Q5_K) X(QD_TYPE_Q6_K)                  \
    X(QD_TYPE_IQ4_NL) X(QD_TYPE_IQ4_XS)

extern "C" int qd_cuda_k_convert(cudaStream_t stream, int src_type, const void *src, float *f32, int64_t n,
                                 int check, float limit, unsigned long long *bad)
{
    if (n == 0)
        return cudaSuccess;
    const int threads = 256;
    int64_t grid = (n + threads * 8 - 1) / (threads * 8); /* a few values per thread */
    if (grid > 65535)
        grid = 65535;
    k_convert<<<(unsigned)grid, threads, 0, stream>>>(src_type, src, f32, n, check, limit, bad);
    return (int)cudaGetLastError();
}

extern "C" int qd_cuda_k_quantize(cudaStream_t stream, int t, const float *x, void *dst, int64_t nrows,
                                  int64_t ncols, const float *qw, const int fields_[2], unsigned long long *bad)
{
    const fields fs = {{fields_[0], fields_[1]}};
    switch (t) {
#define X(T)                                                                                                           \
    case T:                                                                                                            \
        return launch_quantize<T>(stream, x, dst, nrows, ncols, qw, fs, bad);
        QD_CUDA_TYPES(X)
#undef X
    default:
        return (int)cudaErrorInvalidValue;
    }
}

extern "C" int qd_cuda_k_dequantize(cudaStream_t stream, int t, const void *src, float *dst, int64_t nrows,
                                    int64_t ncols)
{
    switch (t) {
#define X(T)                                                                                                           \
    case T:                                                                                                            \
        return launch_dequantize<T>(stream, src, dst, nrows, ncols);
        QD_CUDA_TYPES(X)
#undef X
    default:
        return (int)cudaErrorInvalidValue;
    }
}

extern "C" int qd_cuda_k_probe(void)
{
    cudaFuncAttributes a;
    return (int)cudaFuncGetAttributes(&a, k_convert);
}

extern "C" bool qd_cuda_k_has(int t)
{
    switch (t) {
#define X(T)                                                                                                           \
    case T:                                                                                                            \
        return true;
        QD_CUDA_TYPES(X)
#undef X
    default:
        return false;
    }
}
