/*
 * buf.c - bounded growable buffers.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/buf.h"
#include "qd/err.h"

static size_t buf_max(const qd_buf *b) { return b->max ? b->max : SIZE_MAX / 2; }

void qd_buf_init(qd_buf *b, size_t max)
{
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

int qd_buf_reserve(qd_buf *b, size_t n)
{
    size_t need, cap;
    char *p;

    if (n > buf_max(b) || b->len > buf_max(b) - n)
        return qd_error_set(QD_EFULL, QD_EC_INVALID, "buffer limit of %zu bytes exceeded", buf_max(b));
    need = b->len + n + 1;
    if (need <= b->cap)
        return QD_OK;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = qd_reallocarray(b->ptr, cap, 1);
    if (!p)
        return QD_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    b->ptr[b->len] = '\0';
    return QD_OK;
}

int qd_buf_put(qd_buf *b, const void *data, size_t n)
{
    int rc = qd_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return QD_OK;
}

int qd_buf_puts(qd_buf *b, const char *s) { return qd_buf_put(b, s, strlen(s)); }

int qd_buf_sink(const void *data, size_t n, void *payload) { return qd_buf_put(payload, data, n); }

int qd_buf_vprintf(qd_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n, rc;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bad format string");
    if ((rc = qd_buf_reserve(b, (size_t)n)) < 0)
        return rc;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return QD_OK;
}

int qd_buf_printf(qd_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = qd_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void qd_buf_clear(qd_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void qd_buf_dispose(qd_buf *b)
{
    qd_free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

char *qd_buf_detach(qd_buf *b)
{
    char *p = b->ptr;
    if (!p)
        p = qd_strdup("");
    b->ptr = NULL;
    b->len = b->cap = 0;
    return p;
}

const char *qd_buf_cstr(const qd_buf *b) { return b->ptr ? b->ptr : ""; }
