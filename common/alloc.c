/*
 * alloc.c - the allocator of libqd, with failure injection for tests (the curl torture idea).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qd/alloc.h"
#include "qd/err.h"

static void *def_malloc(size_t size, void *payload) { (void)payload; return malloc(size); }
static void *def_realloc(void *p, size_t size, void *payload) { (void)payload; return realloc(p, size); }
static void def_free(void *p, void *payload) { (void)payload; free(p); }

static qd_allocator g_alloc = {def_malloc, def_realloc, def_free, NULL};
static atomic_ulong g_count;
static long g_fail_at = -2; /* -2: not read yet, -1: never fail */

void qd_allocator_set(const qd_allocator *a)
{
    if (a)
        g_alloc = *a;
    else
        g_alloc = (qd_allocator){def_malloc, def_realloc, def_free, NULL};
}

unsigned long qd_alloc_count(void) { return atomic_load(&g_count); }

static int should_fail(void)
{
    unsigned long n = atomic_fetch_add(&g_count, 1) + 1;
    if (g_fail_at == -2) {
        const char *s = getenv("QD_FAIL_ALLOC_AT");
        g_fail_at = (s && *s) ? strtol(s, NULL, 10) : -1;
    }
    return g_fail_at > 0 && (unsigned long)g_fail_at == n;
}

static void *oom(size_t size)
{
    qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory allocating %zu bytes", size);
    return NULL;
}

void *qd_malloc(size_t size)
{
    void *p;
    if (should_fail())
        return oom(size);
    p = g_alloc.malloc_fn(size ? size : 1, g_alloc.payload);
    return p ? p : oom(size);
}

void *qd_mallocarray(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return oom(SIZE_MAX);
    return qd_malloc(total);
}

void *qd_calloc(size_t n, size_t size)
{
    size_t total;
    void *p;
    if (__builtin_mul_overflow(n, size, &total))
        return oom(SIZE_MAX);
    p = qd_malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void *qd_reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    void *p;
    if (__builtin_mul_overflow(n, size, &total))
        return oom(SIZE_MAX);
    if (should_fail())
        return oom(total);
    p = g_alloc.realloc_fn(ptr, total ? total : 1, g_alloc.payload);
    return p ? p : oom(total);
}

char *qd_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = qd_malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *qd_strdup(const char *s) { return qd_strndup(s, SIZE_MAX - 1); }

void qd_free(void *ptr)
{
    if (ptr)
        g_alloc.free_fn(ptr, g_alloc.payload);
}

void *qd_big_alloc(size_t size)
{
    void *p;
    if (should_fail())
        return oom(size);
    p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return oom(size);
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

void qd_big_free(void *ptr, size_t size)
{
    if (ptr)
        munmap(ptr, size ? size : 1);
}
