/*
 * bench.h - helpers the C benchmarks share: a wall clock, large touched buffers, and the CPU's way through F16 rows.
 */
#ifndef QD_BENCH_H
#define QD_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "qd/err.h"
#include "qd/quant.h"

/* Wall-clock seconds (CLOCK_MONOTONIC). */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n bytes of anonymous memory, touched (zeroed) so that no timed run pays for its page faults; huge: ask for
 * transparent huge pages. Exits on failure. */
static inline void *big_alloc(size_t n, bool huge)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
#ifdef MADV_HUGEPAGE
    if (huge)
        madvise(p, n, MADV_HUGEPAGE);
#endif
    memset(p, 0, n);
    return p;
}

/* Rows r0..r1 of an F16 matrix of ncols columns quantized to t (with imatrix, or NULL) into out (rows of
 * qd_row_size(t, ncols) bytes), as a thread of the quantize pipeline does it: chunk rows at a time converted to F32
 * in a small buffer, the conversion's magnitude bound sparing the quantizer its input check, then quantized.
 * @return QD_OK or the first error */
static inline int bench_quantize_f16_rows(qd_type t, const uint16_t *in, uint8_t *out, int64_t r0, int64_t r1,
                                          int64_t ncols, int64_t chunk, const float *imatrix)
{
    float *f = malloc(sizeof(float) * (size_t)(chunk * ncols));
    const size_t ors = qd_row_size(t, ncols);
    int rc = f ? QD_OK : QD_ENOMEM;
    for (int64_t r = r0; r < r1 && !rc; r += chunk) {
        const int64_t n = r1 - r < chunk ? r1 - r : chunk;
        float amax;
        rc = qd_dequantize_rows_bound(QD_TYPE_F16, in + r * ncols, f, n, ncols, &amax);
        if (!rc)
            rc = qd_quantize_rows_bounded(t, f, out + (size_t)r * ors, n, ncols, imatrix, amax);
    }
    free(f);
    return rc;
}

#endif
