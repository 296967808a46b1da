/*
 * alloc.h - the one allocator of libqd.
 *
 * All allocation in libqd goes through these functions. They never abort: on failure they set QD_ENOMEM as the
 * thread's error and return NULL. Size arithmetic is overflow-checked (qd_reallocarray, qd_mallocarray).
 * Tests can make the N-th allocation fail with the environment variable QD_FAIL_ALLOC_AT=N.
 */
#ifndef QD_ALLOC_H
#define QD_ALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A pluggable allocator. All three must be set. */
typedef struct qd_allocator {
    void *(*malloc_fn)(size_t size, void *payload);
    void *(*realloc_fn)(void *ptr, size_t size, void *payload);
    void (*free_fn)(void *ptr, void *payload);
    void *payload;
} qd_allocator;

/** Replace the allocator (NULL restores the default). Call before any other libqd function. */
void qd_allocator_set(const qd_allocator *a);

void *qd_malloc(size_t size);
void *qd_calloc(size_t n, size_t size);
void *qd_mallocarray(size_t n, size_t size);
void *qd_reallocarray(void *ptr, size_t n, size_t size);
char *qd_strdup(const char *s);
char *qd_strndup(const char *s, size_t n);
void qd_free(void *ptr);

/**
 * Large anonymous buffers (megabytes) mapped directly: whole 2 MiB pages, 2 MiB-aligned, with MADV_HUGEPAGE, so
 * that first touch costs one fault per 2 MiB instead of per 4 KiB (the size is rounded up to a multiple of 2 MiB;
 * only the pages touched are backed). Free with qd_big_free() and the same size. Sets QD_ENOMEM on failure.
 */
void *qd_big_alloc(size_t size);
void qd_big_free(void *ptr, size_t size);

/**
 * An arena: many small allocations (metadata keys, vocabularies: tens of thousands of strings) bumped out of
 * qd_big_alloc chunks and freed together. No per-allocation header, and a first touch costs one fault per 2 MiB
 * instead of per 4 KiB. Zero-initialise; not thread-safe.
 */
typedef struct qd_arena {
    struct qd_arena_chunk *chunks;
    unsigned char *cur; /* the next free byte of the newest chunk */
    size_t left;        /* bytes left there */
} qd_arena;

/** n bytes, 16-aligned, uninitialised (n may be 0). NULL and QD_ENOMEM on failure. */
void *qd_arena_alloc(qd_arena *a, size_t n);
/** A copy of n bytes of p followed by a NUL (p may hold NUL bytes; p may be NULL when n is 0). */
char *qd_arena_strndup(qd_arena *a, const char *p, size_t n);
/** Everything the arena handed out, unmapped; the arena is empty (reusable) after. */
void qd_arena_free(qd_arena *a);

/** Allocations made so far (for the OOM loop in tests). */
unsigned long qd_alloc_count(void);

#ifdef __cplusplus
}
#endif
#endif
