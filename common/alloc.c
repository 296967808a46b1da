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

/*
 * Big buffers are whole, aligned 2 MiB huge pages: the kernel backs a MADV_HUGEPAGE range with huge pages only
 * where a whole aligned 2 MiB lies inside it, and every 4 KiB page of an unaligned head or tail is a fault of its
 * own (about 13 us each on these VMs, where a huge page's first touch costs about 150 us: a 3.4 MiB buffer mapped
 * as it comes took ~350 small faults, 4.5 ms). So the size is rounded up to 2 MiB and the mapping aligned to it
 * (mapped 2 MiB larger, the ends cut off). Only what is touched is ever backed.
 */
#define BIG_PAGE ((size_t)2 << 20)

/* the mapped length for a request of size bytes, 0 when it cannot be represented */
static size_t big_len(size_t size)
{
    if (size > SIZE_MAX - 2 * BIG_PAGE)
        return 0;
    return (size ? size + BIG_PAGE - 1 : BIG_PAGE) / BIG_PAGE * BIG_PAGE;
}

void *qd_big_alloc(size_t size)
{
    size_t len = big_len(size);
    if (!len)
        return oom(SIZE_MAX);
    if (should_fail())
        return oom(size);
    uint8_t *p = mmap(NULL, len + BIG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return oom(size);
    uint8_t *a = p + ((BIG_PAGE - (uintptr_t)p % BIG_PAGE) % BIG_PAGE);
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (p + len + BIG_PAGE > a + len)
        munmap(a + len, (size_t)(p + len + BIG_PAGE - (a + len)));
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE);
#endif
    return a;
}

void qd_big_free(void *ptr, size_t size)
{
    if (ptr)
        munmap(ptr, big_len(size));
}

/* ---- arena ---- */

#define ARENA_CHUNK BIG_PAGE
#define ARENA_ALIGN 16u

struct qd_arena_chunk { /* at the start of each chunk; the allocations follow it (its size is a multiple of 16) */
    _Alignas(ARENA_ALIGN) struct qd_arena_chunk *next;
    size_t size; /* as given to qd_big_alloc */
};

void *qd_arena_alloc(qd_arena *a, size_t n)
{
    if (n > SIZE_MAX - 2 * ARENA_CHUNK)
        return oom(n);
    size_t need = n ? (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN : ARENA_ALIGN;
    if (need > a->left) {
        size_t size = need + sizeof(struct qd_arena_chunk) > ARENA_CHUNK ? need + sizeof(struct qd_arena_chunk)
                                                                          : ARENA_CHUNK;
        struct qd_arena_chunk *c = qd_big_alloc(size);
        if (!c)
            return NULL;
        c->next = a->chunks;
        c->size = size;
        a->chunks = c;
        a->cur = (unsigned char *)(c + 1);
        a->left = size - sizeof(*c);
    }
    void *p = a->cur;
    a->cur += need;
    a->left -= need;
    return p;
}

char *qd_arena_strndup(qd_arena *a, const char *p, size_t n)
{
    char *s = n < SIZE_MAX ? qd_arena_alloc(a, n + 1) : oom(n);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

void qd_arena_free(qd_arena *a)
{
    struct qd_arena_chunk *c = a->chunks;
    while (c) {
        struct qd_arena_chunk *next = c->next;
        qd_big_free(c, c->size);
        c = next;
    }
    memset(a, 0, sizeof(*a));
}
