/*
 * buf.h - growable byte buffers with a hard maximum (the curl dynbuf idea).
 *
 * Every buffer fed from the network or disk is a qd_buf with a limit: appending past it fails with QD_EFULL
 * instead of growing without bound. The content is always NUL-terminated (not counted in len), so text can be
 * used as a C string.
 */
#ifndef QD_BUF_H
#define QD_BUF_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_buf {
    char *ptr;  /**< the bytes, NUL-terminated; NULL until the first append */
    size_t len; /**< bytes in use */
    size_t cap; /**< bytes allocated */
    size_t max; /**< hard limit on len; 0 means SIZE_MAX/2 */
} qd_buf;

#define QD_BUF_INIT(limit) {NULL, 0, 0, (limit)}

void qd_buf_init(qd_buf *b, size_t max);
/** Make room for at least n more bytes. @return QD_OK, QD_EFULL (over the limit) or QD_ENOMEM. */
int qd_buf_reserve(qd_buf *b, size_t n);
int qd_buf_put(qd_buf *b, const void *data, size_t n);
int qd_buf_puts(qd_buf *b, const char *s);
/** A sink for readers that stream bytes to a callback (qd_store_get, ...): payload is the qd_buf to append to. */
int qd_buf_sink(const void *data, size_t n, void *payload);
int qd_buf_printf(qd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qd_buf_vprintf(qd_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void qd_buf_clear(qd_buf *b);
/** Free the memory; the buffer can be used again afterwards. Accepts a zeroed buffer. */
void qd_buf_dispose(qd_buf *b);
/** Hand the bytes to the caller (free with qd_free); the buffer is left empty. */
char *qd_buf_detach(qd_buf *b);
/** A pointer to the content, "" when empty. */
const char *qd_buf_cstr(const qd_buf *b);

#ifdef __cplusplus
}
#endif
#endif
