/*
 * none.c - include/qd/cuda.h in a build without CUDA (make without CUDA=1): there is no GPU path, and every entry
 * point says so, so callers need no #ifdef.
 */
#include "qd/cuda.h"
#include "qd/err.h"

static int not_built(void)
{
    return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "CUDA: this build has no GPU path (build with make CUDA=1)");
}

bool qd_cuda_built(void) { return false; }

int qd_cuda_open(qd_cuda **out, size_t chunk_values)
{
    (void)chunk_values;
    *out = NULL;
    return not_built();
}

void qd_cuda_close(qd_cuda *c) { (void)c; }

const qd_cuda_info *qd_cuda_device(const qd_cuda *c)
{
    (void)c;
    return NULL;
}

const char *qd_cuda_kernel_name(const qd_cuda *c)
{
    (void)c;
    return "none";
}

bool qd_cuda_can_quantize(qd_type t, bool imatrix)
{
    (void)t;
    (void)imatrix;
    return false;
}

bool qd_cuda_can_read(qd_type src)
{
    (void)src;
    return false;
}

bool qd_cuda_can_dequantize(qd_type t)
{
    (void)t;
    return false;
}

int qd_cuda_quantize(qd_cuda *c, qd_type t, qd_type src_type, const void *src, void *dst, int64_t nrows,
                     int64_t ncols, const float *imatrix)
{
    (void)c, (void)t, (void)src_type, (void)src, (void)dst, (void)nrows, (void)ncols, (void)imatrix;
    return not_built();
}

int qd_cuda_quantize_file(qd_cuda *c, qd_type t, qd_type src_type, int fd, uint64_t offset, void *dst, int64_t nrows,
                          int64_t ncols, const float *imatrix)
{
    (void)c, (void)t, (void)src_type, (void)fd, (void)offset, (void)dst, (void)nrows, (void)ncols, (void)imatrix;
    return not_built();
}

int qd_cuda_dequantize(qd_cuda *c, qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    (void)c, (void)t, (void)src, (void)dst, (void)nrows, (void)ncols;
    return not_built();
}

int qd_cuda_register(qd_cuda *c, const void *p, size_t len, bool read_only)
{
    (void)c, (void)p, (void)len, (void)read_only;
    return not_built();
}

void qd_cuda_unregister(qd_cuda *c, const void *p) { (void)c, (void)p; }

int qd_cuda_copy_bandwidth(qd_cuda *c, size_t bytes, int reps, double *h2d, double *d2h)
{
    (void)c, (void)bytes, (void)reps, (void)h2d, (void)d2h;
    return not_built();
}
