/*
 * bench.h - helpers the C benchmarks share: a wall clock and large touched buffers.
 */
#ifndef QD_BENCH_H
#define QD_BENCH_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

#endif
