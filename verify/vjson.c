/*
 * vjson.c - the JSON reader of the verification path (bundles, envelopes, signed statements).
 *
 * Why not jansson here, as everywhere else: a verification parses two small JSON texts (the bundle, then the signed
 * statement) and jansson, which lexes through a per-character stream and builds a hash table per object, spent
 * about 36 us on the two of a typical bundle, as much as a third of an Ed25519 check. Debian's cJSON reads the
 * same texts in about 4.5 us. cJSON is lenient where a signature checker must not be, so it is held here to the
 * rules that matter for a reader of signed data (where two readers of the same bytes must never see different
 * values):
 *   - the text is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) and holds no control
 *     character other than tab, LF and CR (so none inside a string, and no NUL that would cut a C string short);
 *   - no \u0000 escape (cJSON's strings are C strings: "a\u0000b" would read as "a");
 *   - nothing but white space after the value (cJSON stops at the end of the first value);
 *   - no object has the same member name twice (cJSON keeps both and finds the first; other readers take the
 *     last: a signed statement must mean one thing);
 *   - no byte-order mark (cJSON skips one; RFC 8259 forbids emitting it, and jansson refuses it).
 * What cJSON still accepts that jansson refuses - a number such as 01 or 1. - cannot change what a field means,
 * and a statement that jansson refuses fails later wherever quantd reads it. Member lookups are case-sensitive.
 * cJSON's allocations come from a per-parse arena on the caller's stack, then qd_malloc (cJSON_InitHooks, once per
 * process; only this file uses cJSON).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "vjson.h"

/* cJSON's allocations: from the arena of the parse running on this thread while there is room (a bump pointer:
 * a statement is ~100 small allocations, and their malloc/free pairs were a fifth of the reader's time), else
 * qd_malloc. Freeing an arena block is a no-op; the arena goes away with its owner (qd_vjson_free). */
static _Thread_local qd_vjson_arena *tls_arena;

/* Sanitizer builds (and so the fuzzers) give cJSON every block from the allocator, where overruns are seen. */
#if defined(__SANITIZE_ADDRESS__)
#define VJSON_ARENA 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VJSON_ARENA 0
#endif
#endif
#ifndef VJSON_ARENA
#define VJSON_ARENA 1
#endif

static void *hook_malloc(size_t n)
{
    qd_vjson_arena *a = VJSON_ARENA ? tls_arena : NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (a && need >= n && sizeof(a->mem) - a->used >= need) {
        void *p = a->mem + a->used;
        a->used += need;
        return p;
    }
    return qd_malloc(n);
}

static void hook_free(void *p)
{
    qd_vjson_arena *a = tls_arena;
    uintptr_t u = (uintptr_t)p, m = a ? (uintptr_t)a->mem : 0;
    if (a && u >= m && u - m < sizeof(a->mem))
        return;
    qd_free(p);
}

static void hooks_once(void)
{
    cJSON_Hooks h = {hook_malloc, hook_free};
    cJSON_InitHooks(&h);
}

/* UTF-8 (RFC 3629) without control characters other than tab, LF, CR; *nul_escape is set when the text holds the
 * six characters \u0000. @return 0, or the offset + 1 of the first bad byte. Plain ASCII goes 8 bytes at a time. */
static size_t bad_text_at(const uint8_t *s, size_t n, int *nul_escape)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    *nul_escape = 0;
    while (i < n) {
        uint64_t w;
        /* 8 bytes at once while none is >= 0x80, < 0x20 or a backslash */
        while (n - i >= 8) {
            memcpy(&w, s + i, 8);
            uint64_t bs = w ^ (ones * '\\');
            if ((w | ((w - ones * 0x20) & ~w) | ((bs - ones) & ~bs)) & highs)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c == '\\') {
            if (n - i >= 6 && !memcmp(s + i, "\\u0000", 6))
                *nul_escape = 1;
            /* step over the escaped character too (so that \\u0000, an escaped backslash, is not taken for the
             * escape), unless it needs the checks below */
            i += n - i >= 2 && s[i + 1] >= 0x20 && s[i + 1] < 0x80 ? 2 : 1;
            continue;
        }
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return i + 1;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            len = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return i + 1;
        if (n - i < len)
            return i + 1;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i + 1;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i + 1;
        i += len;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first member name used twice in an object of v or below, or NULL. Small objects are compared pairwise,
 * large ones sorted (a hostile object of 100k members costs n log n, not n^2). */
static const char *duplicate_name(const cJSON *v, int depth, int *oom)
{
    if (depth > CJSON_NESTING_LIMIT)
        return NULL; /* cJSON refused deeper texts already */
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
        if (n > 1 && n <= 16) {
            for (const cJSON *a = v->child; a; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (!strcmp(a->string, b->string))
                        return a->string;
        } else if (n > 16) {
            const char **names = qd_malloc(n * sizeof(*names));
            const char *dup = NULL;
            size_t i = 0;
            if (!names) {
                *oom = 1;
                return NULL;
            }
            for (const cJSON *c = v->child; c; c = c->next)
                names[i++] = c->string;
            qsort(names, n, sizeof(*names), cmp_names);
            for (i = 1; i < n && !dup; i++)
                if (!strcmp(names[i - 1], names[i]))
                    dup = names[i];
            qd_free(names);
            if (dup)
                return dup;
        }
    }
    if (cJSON_IsObject(v) || cJSON_IsArray(v))
        for (const cJSON *c = v->child; c; c = c->next) {
            const char *d = duplicate_name(c, depth + 1, oom);
            if (d || *oom)
                return d;
        }
    return NULL;
}

void qd_vjson_free(cJSON *root, qd_vjson_arena *arena)
{
    qd_vjson_arena *prev = tls_arena;
    tls_arena = arena;
    cJSON_Delete(root); /* frees what did not fit the arena */
    tls_arena = prev;
    arena->used = 0;
}

int qd_vjson_parse(cJSON **out, qd_vjson_arena *arena, const void *text, size_t len, const char *what)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const uint8_t *s = text;
    const char *end = NULL, *dup;
    cJSON *root;
    size_t bad;
    int oom = 0, nul_escape;

    *out = NULL;
    pthread_once(&once, hooks_once);
    if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: invalid JSON: starts with a byte-order mark", what);
    if ((bad = bad_text_at(s, len, &nul_escape)))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "%s: invalid JSON: byte %zu is not UTF-8 text (or is a control character)", what, bad - 1);
    if (nul_escape)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: invalid JSON: a \\u0000 escape (NUL) is refused", what);
    arena->used = 0;
    tls_arena = arena;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    tls_arena = NULL;
    if (!root)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: invalid JSON near byte %zu", what,
                            end && end >= (const char *)s && end <= (const char *)s + len ? (size_t)(end - (const char *)s)
                                                                                        : len);
    for (const char *p = end; p && p < (const char *)s + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            qd_vjson_free(root, arena);
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: invalid JSON: text after the value at byte %zu", what,
                                (size_t)(p - (const char *)s));
        }
    if ((dup = duplicate_name(root, 0, &oom)) || oom) {
        int rc = oom ? QD_ENOMEM
                     : qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: invalid JSON: duplicate member '%.60s'",
                                    what, dup);
        qd_vjson_free(root, arena);
        return rc;
    }
    *out = root;
    return QD_OK;
}
