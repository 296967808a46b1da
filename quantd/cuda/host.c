/*
 * host.c - the GPU path's host side (include/qd/cuda.h): the device, its buffers, and rows streamed through it.
 *
 * Chunks of rows go round QD_CUDA_SLOTS slots. Each slot has a stream, a pinned input and output buffer on the
 * host and input, f32 and output buffers on the device. For chunk i in slot s the host waits for slot s's previous
 * chunk (i - SLOTS), copies that chunk's result out of pinned memory, copies chunk i's rows into pinned memory,
 * and enqueues copy in, convert and check, quantize, copy out on stream s; so while the host copies, the GPU
 * works on the chunks before, and the copy engines move one slot's input while another slot's output returns.
 * Host copies are split over a few threads of a qd_pool (one core does not keep up with PCIe).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "qd/alloc.h"
#include "qd/cuda.h"
#include "qd/err.h"
#include "qd/fileio.h"
#include "qd/log.h"
#include "qd/pool.h"

#include "../kernels/kernels.h"
#include "launch.h"

#define QD_CUDA_SLOTS 3
#define QD_CUDA_CHUNK_DEFAULT ((size_t)4 << 20) /* values: 8 MiB of F16 in, enough to keep the copies at full rate */
#define QD_CUDA_MAX_COPIERS 16

/* ---- host copies split over the pool's threads (this one included): memcpy, or pread from a file ---- */

typedef struct copier {
    qd_pool *pool;
    uint8_t *dst;
    const uint8_t *src; /* a memcpy from here, or when NULL, a pread from fd at off */
    int fd;
    uint64_t off;
    size_t len;
    int n;              /* slices this round */
    qd_error_saved err[QD_CUDA_MAX_COPIERS]; /* each slice's result */
} copier;

/* Read n bytes at off into p. @return QD_OK or QD_EIO (set) */
static int read_at(int fd, void *p, size_t n, uint64_t off)
{
    if (qd_pread_all(fd, p, n, off) == 0)
        return QD_OK;
    return qd_error_set(QD_EIO, QD_EC_OS, "reading %zu bytes at offset %llu: %s", n, (unsigned long long)off,
                        strerror(errno));
}

/* The pool's item i: slice i of the copy, on 4 KiB boundaries so no two threads share a page. */
static void copy_slice(void *arg, int i)
{
    copier *cp = arg;
    size_t per = (cp->len / (size_t)cp->n + 4095) & ~(size_t)4095, b = per * (size_t)i;
    int rc = QD_OK;
    if (b < cp->len) {
        size_t n = cp->len - b < per ? cp->len - b : per;
        if (cp->src)
            memcpy(cp->dst + b, cp->src + b, n);
        else
            rc = read_at(cp->fd, cp->dst + b, n, cp->off + b);
    }
    qd_error_save(&cp->err[i], rc);
}

/* dst <- len bytes of src, or when src is NULL, of the file fd at off. @return QD_OK or the first slice's error */
static int copier_copy(copier *cp, void *dst, const void *src, int fd, uint64_t off, size_t len)
{
    if (len < ((size_t)1 << 20) || !cp->pool) { /* small: not worth waking anyone */
        if (src)
            memcpy(dst, src, len);
        return src ? QD_OK : read_at(fd, dst, len, off);
    }
    cp->dst = dst;
    cp->src = src;
    cp->fd = fd;
    cp->off = off;
    cp->len = len;
    cp->n = qd_pool_size(cp->pool) + 1;
    qd_pool_run(cp->pool, cp->n, copy_slice, cp);
    for (int i = 0; i < cp->n; i++)
        if (cp->err[i].code)
            return qd_error_restore(&cp->err[i]);
    return QD_OK;
}

/* ---- the device ---- */

typedef struct slot {
    cudaStream_t stream;
    uint8_t *h_in, *h_out;           /* pinned */
    unsigned long long *h_bad;       /* pinned: [0] the first bad input value, [1] the first overflowed block */
    uint8_t *d_in, *d_out;
    float *d_f32;
    unsigned long long *d_bad;
    int64_t row0, nrows;             /* the chunk in flight, nrows 0 when none */
    const uint8_t *h_src;            /* where its copy in reads: h_in, or the caller's registered source */
    uint8_t *h_dst;                  /* where its copy out writes: h_out, or the caller's registered destination */
} slot;

#define QD_CUDA_MAX_REGISTERED 16

typedef struct registration {
    uintptr_t base, end; /* the pages pinned */
    const void *p;       /* as the caller gave it */
} registration;

struct qd_cuda {
    qd_cuda_info info;
    char kname[32];
    size_t chunk_values;
    size_t cap;                      /* bytes of every h_in/h_out/d_in/d_out/d_f32 */
    slot s[QD_CUDA_SLOTS];
    float *d_qw;
    size_t qw_cap;                   /* values */
    copier cp;
    registration reg[QD_CUDA_MAX_REGISTERED];
    /* where the host's time went (logged at close): copying or reading rows in, waiting for the GPU, copying out */
    double t_in, t_wait, t_out;
    uint64_t calls, chunks;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cuda_fail(cudaError_t e, const char *what)
{
    int rc = e == cudaErrorMemoryAllocation ? QD_ENOMEM : QD_ERROR;
    return qd_error_set(rc, rc == QD_ENOMEM ? QD_EC_NOMEM : QD_EC_ENGINE, "CUDA %s: %s", what, cudaGetErrorString(e));
}

#define CU(call, what)                                                                                                 \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            return cuda_fail(e_, what);                                                                                \
    } while (0)

bool qd_cuda_built(void) { return true; }

static void free_buffers(qd_cuda *c)
{
    for (int i = 0; i < QD_CUDA_SLOTS; i++) {
        slot *s = &c->s[i];
        cudaFreeHost(s->h_in);
        cudaFreeHost(s->h_out);
        cudaFree(s->d_in);
        cudaFree(s->d_out);
        cudaFree(s->d_f32);
        s->h_in = s->h_out = s->d_in = s->d_out = NULL;
        s->d_f32 = NULL;
    }
    c->cap = 0;
}

/* Every slot's buffers at least bytes long (all streams idle). */
static int ensure_cap(qd_cuda *c, size_t bytes)
{
    if (bytes <= c->cap)
        return QD_OK;
    free_buffers(c);
    for (int i = 0; i < QD_CUDA_SLOTS; i++) {
        slot *s = &c->s[i];
        CU(cudaHostAlloc((void **)&s->h_in, bytes, cudaHostAllocDefault), "pinned input buffer");
        CU(cudaHostAlloc((void **)&s->h_out, bytes, cudaHostAllocDefault), "pinned output buffer");
        CU(cudaMalloc((void **)&s->d_in, bytes), "device input buffer");
        CU(cudaMalloc((void **)&s->d_out, bytes), "device output buffer");
        CU(cudaMalloc((void **)&s->d_f32, bytes), "device f32 buffer");
    }
    c->cap = bytes;
    return QD_OK;
}

/* Host copy threads, this one included. */
static int copy_threads(void)
{
    const char *e = getenv("QD_CUDA_COPY_THREADS");
    long n = e ? strtol(e, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN) / 2;
    if (n < 1)
        n = 1;
    if (n > 8 && !e)
        n = 8;
    return n > QD_CUDA_MAX_COPIERS ? QD_CUDA_MAX_COPIERS : (int)n;
}

static int open_device(qd_cuda *c)
{
    int n = 0, dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorInsufficientDriver)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "CUDA: no usable driver (%s)", cudaGetErrorString(e));
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "CUDA: no device");
    if (e != cudaSuccess)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "CUDA: %s", cudaGetErrorString(e));
    struct cudaDeviceProp p;
    CU(cudaSetDevice(dev), "select device");
    CU(cudaGetDeviceProperties(&p, dev), "device properties");
    snprintf(c->info.name, sizeof(c->info.name), "%s", p.name);
    c->info.sm = p.major * 10 + p.minor;
    c->info.multiprocessors = p.multiProcessorCount;
    c->info.memory = p.totalGlobalMem;
    c->info.copy_engines = p.asyncEngineCount;
    snprintf(c->kname, sizeof(c->kname), "cuda-sm%d", c->info.sm);
    if ((e = (cudaError_t)qd_cuda_k_probe()) != cudaSuccess)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "CUDA: %s (sm_%d) cannot run this build's kernels: %s",
                            p.name, c->info.sm, cudaGetErrorString(e));
    for (int i = 0; i < QD_CUDA_SLOTS; i++) {
        CU(cudaStreamCreateWithFlags(&c->s[i].stream, cudaStreamNonBlocking), "stream");
        CU(cudaHostAlloc((void **)&c->s[i].h_bad, 2 * sizeof(unsigned long long), cudaHostAllocDefault),
           "pinned flags");
        CU(cudaMalloc((void **)&c->s[i].d_bad, 2 * sizeof(unsigned long long)), "device flags");
    }
    return ensure_cap(c, c->chunk_values * sizeof(float));
}

int qd_cuda_open(qd_cuda **out, size_t chunk_values)
{
    *out = NULL;
    qd_cuda *c = qd_calloc(1, sizeof(*c));
    if (!c)
        return QD_ENOMEM;
    c->chunk_values = chunk_values ? chunk_values : QD_CUDA_CHUNK_DEFAULT;
    const int nt = copy_threads();
    int rc = nt > 1 ? qd_pool_start(&c->cp.pool, nt - 1) : QD_OK;
    if (!rc)
        rc = open_device(c);
    if (rc) {
        qd_cuda_close(c);
        return rc;
    }
    *out = c;
    return QD_OK;
}

void qd_cuda_close(qd_cuda *c)
{
    if (!c)
        return;
    if (c->calls)
        qd_log(QD_LOG_INFO, "cuda", "%llu calls, %llu chunks: host copying in %.3f s, waiting for the GPU %.3f s, "
               "copying out %.3f s", (unsigned long long)c->calls, (unsigned long long)c->chunks, c->t_in, c->t_wait,
               c->t_out);
    free_buffers(c);
    for (int i = 0; i < QD_CUDA_MAX_REGISTERED; i++)
        if (c->reg[i].p)
            cudaHostUnregister((void *)c->reg[i].base);
    for (int i = 0; i < QD_CUDA_SLOTS; i++) {
        if (c->s[i].stream)
            cudaStreamDestroy(c->s[i].stream);
        cudaFreeHost(c->s[i].h_bad);
        cudaFree(c->s[i].d_bad);
    }
    cudaFree(c->d_qw);
    qd_pool_stop(c->cp.pool);
    qd_free(c);
}

const qd_cuda_info *qd_cuda_device(const qd_cuda *c) { return &c->info; }
const char *qd_cuda_kernel_name(const qd_cuda *c) { return c->kname; }

/* ---- caller memory the copy engines read and write directly ---- */

int qd_cuda_register(qd_cuda *c, const void *p, size_t len, bool read_only)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t base = (uintptr_t)p & ~(pg - 1), end = ((uintptr_t)p + len + pg - 1) & ~(pg - 1);
    int k = -1;
    for (int i = 0; i < QD_CUDA_MAX_REGISTERED; i++) {
        if (c->reg[i].p && base < c->reg[i].end && c->reg[i].base < end)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "CUDA register: the range shares a page with one registered "
                                "before (pinning is by whole pages)");
        if (!c->reg[i].p && k < 0)
            k = i;
    }
    if (k < 0)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "CUDA register: %d ranges registered already",
                            QD_CUDA_MAX_REGISTERED);
    unsigned flags = cudaHostRegisterPortable | (read_only ? cudaHostRegisterReadOnly : 0);
    cudaError_t e = cudaHostRegister((void *)base, end - base, flags);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* not sticky: clear it */
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "CUDA register of %zu bytes: %s", len,
                            cudaGetErrorString(e));
    }
    c->reg[k] = (registration){base, end, p};
    return QD_OK;
}

void qd_cuda_unregister(qd_cuda *c, const void *p)
{
    for (int i = 0; i < QD_CUDA_MAX_REGISTERED; i++) {
        if (c->reg[i].p == p) {
            cudaHostUnregister((void *)c->reg[i].base);
            c->reg[i] = (registration){0, 0, NULL};
            return;
        }
    }
}

static bool registered(const qd_cuda *c, const void *p, size_t len)
{
    for (int i = 0; i < QD_CUDA_MAX_REGISTERED; i++)
        if (c->reg[i].p && (uintptr_t)p >= c->reg[i].base && (uintptr_t)p + len <= c->reg[i].end)
            return true;
    return false;
}

bool qd_cuda_can_quantize(qd_type t, bool imatrix)
{
    (void)imatrix; /* every type the device code has takes one or ignores it, as the reference does */
    return qd_cuda_k_has((int)t);
}
bool qd_cuda_can_read(qd_type src) { return src == QD_TYPE_F32 || src == QD_TYPE_F16 || src == QD_TYPE_BF16; }
bool qd_cuda_can_dequantize(qd_type t) { return qd_cuda_k_has((int)t); }

/* ---- streaming rows through the slots ---- */

typedef struct op {
    bool quantize;        /* else dequantize */
    qd_type t;            /* target (quantize) or source (dequantize) type */
    qd_type src_type;     /* quantize: the source's plain type */
    int64_t ncols;
    size_t in_row, out_row;
    const float *d_qw;
    int check;
    float limit;
    int fields[2];        /* the fp16 scales each block must hold finite */
    const uint8_t *src;   /* the rows in memory, or NULL: in the file src_fd from src_off */
    int src_fd;
    uint64_t src_off;
    uint8_t *dst;
} op;

static int enqueue(const op *o, slot *s)
{
    size_t in = (size_t)s->nrows * o->in_row, out = (size_t)s->nrows * o->out_row;
    int64_t n = s->nrows * o->ncols;
    cudaStream_t st = s->stream;
    CU(cudaMemcpyAsync(s->d_in, s->h_src, in, cudaMemcpyHostToDevice, st), "copy to device");
    if (o->quantize) {
        CU(cudaMemsetAsync(s->d_bad, 0xff, 2 * sizeof(*s->d_bad), st), "reset flags");
        CU((cudaError_t)qd_cuda_k_convert(st, (int)o->src_type, s->d_in, s->d_f32, n, o->check, o->limit, s->d_bad),
           "convert kernel");
        CU((cudaError_t)qd_cuda_k_quantize(st, (int)o->t, s->d_f32, s->d_out, s->nrows, o->ncols, o->d_qw, o->fields,
                                           s->d_bad),
           "quantize kernel");
        CU(cudaMemcpyAsync(s->h_bad, s->d_bad, 2 * sizeof(*s->h_bad), cudaMemcpyDeviceToHost, st), "copy flags");
    } else {
        CU((cudaError_t)qd_cuda_k_dequantize(st, (int)o->t, s->d_in, (float *)s->d_out, s->nrows, o->ncols),
           "dequantize kernel");
    }
    CU(cudaMemcpyAsync(s->h_dst, s->d_out, out, cudaMemcpyDeviceToHost, st), "copy to host");
    return QD_OK;
}

/* Wait for the slot's chunk, check it and copy its result out. */
static int finish(qd_cuda *c, const op *o, slot *s)
{
    if (!s->nrows)
        return QD_OK;
    int64_t row0 = s->row0, nrows = s->nrows;
    s->nrows = 0;
    double t0 = now_s();
    cudaError_t e = cudaStreamSynchronize(s->stream);
    c->t_wait += now_s() - t0;
    if (e != cudaSuccess)
        return cuda_fail(e, o->quantize ? "quantize" : "dequantize");
    if (o->quantize && s->h_bad[0] != QD_CUDA_NO_BAD) {
        int64_t i = (int64_t)s->h_bad[0];
        float v;
        uint8_t p[4];
        size_t es = qd_row_size(o->src_type, 1), at = (size_t)row0 * o->in_row + (size_t)i * es;
        if (o->src)
            memcpy(p, o->src + at, es);
        else if (read_at(o->src_fd, p, es, o->src_off + at))
            return qd_error_prefix("reading back a bad value");
        qd_dequantize_rows(o->src_type, p, &v, 1, 1); /* F32, F16, BF16 to f32: exact */
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "row %lld col %lld: value %g cannot be stored as %s",
                            (long long)(row0 + i / o->ncols), (long long)(i % o->ncols), (double)v,
                            qd_type_traits_get(o->t)->name);
    }
    if (o->quantize && s->h_bad[1] != QD_CUDA_NO_BAD)
        return qd_kernels_scale_error(o->t, row0 + (int64_t)s->h_bad[1] /
                                                      (o->ncols / (int64_t)qd_type_traits_get(o->t)->block_size));
    int rc = QD_OK;
    if (s->h_dst == s->h_out) {
        t0 = now_s();
        rc = copier_copy(&c->cp, o->dst + (size_t)row0 * o->out_row, s->h_out, -1, 0, (size_t)nrows * o->out_row);
        c->t_out += now_s() - t0;
    }
    return rc;
}

static int run(qd_cuda *c, const op *o, int64_t nrows)
{
    size_t widest = o->in_row > o->out_row ? o->in_row : o->out_row, f32_row = (size_t)o->ncols * sizeof(float);
    if (f32_row > widest)
        widest = f32_row;
    int64_t rpc = (int64_t)(c->chunk_values / (size_t)o->ncols);
    if (rpc < 1)
        rpc = 1;
    if (rpc > nrows)
        rpc = nrows;
    int rc = ensure_cap(c, (size_t)rpc * widest);
    if (rc)
        return rc;
    c->calls++;
    /* caller memory registered with qd_cuda_register: the copy engines use it directly, no staging */
    const bool src_direct = o->src && registered(c, o->src, (size_t)nrows * o->in_row);
    const bool dst_direct = registered(c, o->dst, (size_t)nrows * o->out_row);
    int k = 0;
    for (int64_t r0 = 0; r0 < nrows && !rc; r0 += rpc, k = (k + 1) % QD_CUDA_SLOTS) {
        slot *s = &c->s[k];
        if ((rc = finish(c, o, s)))
            break;
        s->row0 = r0;
        s->nrows = nrows - r0 < rpc ? nrows - r0 : rpc;
        s->h_src = src_direct ? o->src + (size_t)r0 * o->in_row : s->h_in;
        s->h_dst = dst_direct ? o->dst + (size_t)r0 * o->out_row : s->h_out;
        if (!src_direct) {
            size_t at = (size_t)r0 * o->in_row;
            double t0 = now_s();
            rc = copier_copy(&c->cp, s->h_in, o->src ? o->src + at : NULL, o->src_fd, o->src_off + at,
                             (size_t)s->nrows * o->in_row);
            c->t_in += now_s() - t0;
        }
        c->chunks++;
        if (!rc)
            rc = enqueue(o, s);
        else
            s->nrows = 0; /* nothing was enqueued */
    }
    /* the remaining chunks in order (after an error: wait for them all, report the first error) */
    for (int i = 0; i < QD_CUDA_SLOTS; i++, k = (k + 1) % QD_CUDA_SLOTS) {
        if (rc) {
            cudaStreamSynchronize(c->s[k].stream);
            c->s[k].nrows = 0;
        } else {
            rc = finish(c, o, &c->s[k]);
        }
    }
    return rc;
}

static int check_shape(qd_type t, int64_t nrows, int64_t ncols, const char *what)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    if (!tr)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: unknown type %d", what, (int)t);
    if (nrows < 0 || ncols <= 0 || ncols % (int64_t)tr->block_size)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s %s: %lld columns (a positive multiple of %zu needed)", what,
                            tr->name, (long long)ncols, tr->block_size);
    return QD_OK;
}

static int quantize(qd_cuda *c, qd_type t, qd_type src_type, const void *src, int fd, uint64_t off, void *dst,
                    int64_t nrows, int64_t ncols, const float *imatrix)
{
    int rc;
    if ((rc = check_shape(t, nrows, ncols, "CUDA quantize")))
        return rc;
    if (!qd_cuda_can_quantize(t, imatrix != NULL) || !qd_cuda_can_read(src_type))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "CUDA quantize: %s from %s is not on the GPU path",
                            qd_type_traits_get(t)->name,
                            qd_type_traits_get(src_type) ? qd_type_traits_get(src_type)->name : "?");
    if (nrows == 0)
        return QD_OK;
    op o = {.quantize = true, .t = t, .src_type = src_type, .ncols = ncols, .in_row = qd_row_size(src_type, ncols),
            .out_row = qd_row_size(t, ncols), .src = src, .src_fd = fd, .src_off = off, .dst = dst};
    if (t == QD_TYPE_F32) {
        o.check = QD_CUDA_CHECK_NONE;
    } else if (t == QD_TYPE_BF16) {
        o.check = QD_CUDA_CHECK_FINITE;
    } else if (t == QD_TYPE_F16) {
        o.check = QD_CUDA_CHECK_BELOW;
        o.limit = 65520.0f;
    } else {
        o.check = QD_CUDA_CHECK_WITHIN;
        o.limit = qd_kernels_max_abs(t);
    }
    if (imatrix && (rc = qd_kernels_check_imatrix(t, imatrix, ncols)))
        return rc;
    qd_kernels_fp16_fields(t, o.fields);
    if (imatrix) {
        if ((size_t)ncols > c->qw_cap) {
            cudaFree(c->d_qw);
            c->d_qw = NULL;
            c->qw_cap = 0;
            CU(cudaMalloc((void **)&c->d_qw, (size_t)ncols * sizeof(float)), "device imatrix");
            c->qw_cap = (size_t)ncols;
        }
        CU(cudaMemcpy(c->d_qw, imatrix, (size_t)ncols * sizeof(float), cudaMemcpyHostToDevice), "copy imatrix");
        o.d_qw = c->d_qw;
    }
    return run(c, &o, nrows);
}

int qd_cuda_quantize(qd_cuda *c, qd_type t, qd_type src_type, const void *src, void *dst, int64_t nrows,
                     int64_t ncols, const float *imatrix)
{
    return quantize(c, t, src_type, src, -1, 0, dst, nrows, ncols, imatrix);
}

int qd_cuda_quantize_file(qd_cuda *c, qd_type t, qd_type src_type, int fd, uint64_t offset, void *dst, int64_t nrows,
                          int64_t ncols, const float *imatrix)
{
    if (fd < 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "CUDA quantize: no file");
    return quantize(c, t, src_type, NULL, fd, offset, dst, nrows, ncols, imatrix);
}

int qd_cuda_dequantize(qd_cuda *c, qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    int rc;
    if ((rc = check_shape(t, nrows, ncols, "CUDA dequantize")))
        return rc;
    if (!qd_cuda_can_dequantize(t))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "CUDA dequantize: %s is not on the GPU path",
                            qd_type_traits_get(t)->name);
    if (nrows == 0)
        return QD_OK;
    op o = {.quantize = false, .t = t, .ncols = ncols, .in_row = qd_row_size(t, ncols),
            .out_row = (size_t)ncols * sizeof(float), .src = src, .src_fd = -1, .dst = (uint8_t *)dst};
    return run(c, &o, nrows);
}

int qd_cuda_copy_bandwidth(qd_cuda *c, size_t bytes, int reps, double *h2d, double *d2h)
{
    int rc = ensure_cap(c, bytes);
    if (rc)
        return rc;
    slot *s = &c->s[0];
    cudaEvent_t a, b;
    CU(cudaEventCreate(&a), "event");
    CU(cudaEventCreate(&b), "event");
    memset(s->h_in, 1, bytes);
    *h2d = *d2h = 0;
    for (int dir = 0; dir < 2; dir++) {
        for (int r = 0; r < reps; r++) {
            float ms = 0;
            cudaEventRecord(a, s->stream);
            if (dir == 0)
                cudaMemcpyAsync(s->d_in, s->h_in, bytes, cudaMemcpyHostToDevice, s->stream);
            else
                cudaMemcpyAsync(s->h_out, s->d_in, bytes, cudaMemcpyDeviceToHost, s->stream);
            cudaEventRecord(b, s->stream);
            cudaError_t e = cudaEventSynchronize(b);
            if (e == cudaSuccess)
                e = cudaEventElapsedTime(&ms, a, b);
            if (e != cudaSuccess) {
                cudaEventDestroy(a);
                cudaEventDestroy(b);
                return cuda_fail(e, "timed copy");
            }
            double gbps = (double)bytes / (ms * 1e-3) / 1e9;
            double *best = dir == 0 ? h2d : d2h;
            if (gbps > *best)
                *best = gbps;
        }
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return QD_OK;
}
