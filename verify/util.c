/*
 * util.c - base64 (both alphabets in, standard out), whole-file reads with a limit, atomic writes, file hashing.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"

/* ================================================================================================== base64 === */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int qd_base64_encode(qd_buf *out, const void *src, size_t len)
{
    const uint8_t *s = src;
    size_t n4, i;
    char *d;
    int rc;

    if (len > (SIZE_MAX / 4) * 3 - 3)
        return qd_error_set(QD_EFULL, QD_EC_INVALID, "base64: input too large");
    n4 = (len + 2) / 3 * 4;
    if ((rc = qd_buf_reserve(out, n4)) < 0)
        return rc;
    d = out->ptr + out->len;
    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = b64_std[v >> 18];
        *d++ = b64_std[(v >> 12) & 63];
        *d++ = b64_std[(v >> 6) & 63];
        *d++ = b64_std[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *d++ = b64_std[v >> 18];
        *d++ = b64_std[(v >> 12) & 63];
        *d++ = '=';
        *d++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *d++ = b64_std[v >> 18];
        *d++ = b64_std[(v >> 12) & 63];
        *d++ = b64_std[(v >> 6) & 63];
        *d++ = '=';
    }
    out->len += n4;
    out->ptr[out->len] = '\0';
    return QD_OK;
}

/* Base64 characters of either alphabet: value + 1 in the low byte (0: not base64), and B64_STD / B64_URL for the
 * characters only one alphabet has. Built once (pthread_once). */
#define B64_STD 0x100
#define B64_URL 0x200
static uint16_t b64_table[256];
static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

static void b64_build(void)
{
    for (int c = 0; c < 26; c++) {
        b64_table['A' + c] = (uint16_t)(c + 1);
        b64_table['a' + c] = (uint16_t)(c + 26 + 1);
    }
    for (int c = 0; c < 10; c++)
        b64_table['0' + c] = (uint16_t)(c + 52 + 1);
    b64_table['+'] = B64_STD | 63;
    b64_table['/'] = B64_STD | 64;
    b64_table['-'] = B64_URL | 63;
    b64_table['_'] = B64_URL | 64;
}

/* One character that the quad path did not take: value, alphabet, and the bits it adds. */
static int b64_one(const char *src, size_t i, int *alphabet, uint32_t *acc, unsigned *bits, uint8_t **d)
{
    unsigned t = b64_table[(unsigned char)src[i]];
    if (!(t & 0xFF))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bad base64: character %zu is %s", i,
                            src[i] == '=' ? "'=' before the end" : "not in the base64 alphabet");
    if (t & (B64_STD | B64_URL)) {
        int kind = t & B64_STD ? 1 : 2;
        if (*alphabet && *alphabet != kind)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                                "bad base64: character %zu mixes the standard and URL-safe alphabets", i);
        *alphabet = kind;
    }
    *acc = *acc << 6 | ((t & 0xFF) - 1);
    *bits += 6;
    if (*bits >= 8) {
        *bits -= 8;
        *(*d)++ = (uint8_t)(*acc >> *bits);
    }
    return QD_OK;
}

int qd_base64_decode(qd_buf *out, const char *src, size_t len)
{
    size_t n = len, i, pad = 0;
    int alphabet = 0, rc;
    uint32_t acc = 0;
    unsigned bits = 0;
    uint8_t *d;

    while (n > 0 && src[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (pad && len % 4 != 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bad base64: padded text of length %zu is not a multiple of 4",
                            len);
    if (n % 4 == 1)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bad base64: %zu characters cannot encode whole bytes", n);
    if ((rc = qd_buf_reserve(out, n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0))) < 0)
        return rc;
    pthread_once(&b64_once, b64_build);
    d = (uint8_t *)out->ptr + out->len;
    for (i = 0; i < n;) {
        /* a whole quad of characters both alphabets share: 3 bytes at once (quads keep bits at 0) */
        if (n - i >= 4) {
            const unsigned char *q = (const unsigned char *)src + i;
            unsigned a = b64_table[q[0]], b = b64_table[q[1]], c = b64_table[q[2]], e = b64_table[q[3]];
            if (!((a | b | c | e) & (B64_STD | B64_URL)) && (a & 0xFF) && (b & 0xFF) && (c & 0xFF) && (e & 0xFF)) {
                uint32_t v = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (e - 1);
                d[0] = (uint8_t)(v >> 16);
                d[1] = (uint8_t)(v >> 8);
                d[2] = (uint8_t)v;
                d += 3;
                i += 4;
                continue;
            }
        }
        /* otherwise this quad (or the tail) one character at a time */
        for (size_t end = n - i >= 4 ? i + 4 : n; i < end; i++)
            if ((rc = b64_one(src, i, &alphabet, &acc, &bits, &d)) < 0)
                return rc;
    }
    /* the leftover bits must be zero (canonical encoding), else two texts would decode to the same bytes */
    if (bits && (acc & ((1u << bits) - 1)))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bad base64: non-zero trailing bits");
    out->len = (size_t)((char *)d - out->ptr);
    out->ptr[out->len] = '\0';
    return QD_OK;
}

/* =================================================================================================== files === */

int qd_verify__read_file(qd_buf *out, const char *path, size_t max)
{
    struct stat st;
    int fd, rc = QD_OK;

    qd_buf_clear(out);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > max) {
        rc = qd_error_set(QD_EFULL, QD_EC_INVALID, "%s: %lld bytes, over the limit of %zu", path,
                          (long long)st.st_size, max);
        goto done;
    }
    if ((rc = qd_buf_reserve(out, (size_t)st.st_size + 1)) < 0)
        goto done;
    for (;;) {
        ssize_t n;
        if (out->len > max) { /* the file grew while we read it */
            rc = qd_error_set(QD_EFULL, QD_EC_INVALID, "%s: over the limit of %zu bytes", path, max);
            goto done;
        }
        if (out->cap - out->len <= 1 && (rc = qd_buf_reserve(out, 4096)) < 0)
            goto done;
        n = read(fd, out->ptr + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = qd_error_set(QD_EIO, QD_EC_OS, "read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
    }
    out->ptr[out->len] = '\0';
    if (out->len > max)
        rc = qd_error_set(QD_EFULL, QD_EC_INVALID, "%s: over the limit of %zu bytes", path, max);
done:
    close(fd);
    return rc;
}

void qd_verify__buf_wipe(qd_buf *b)
{
    if (b->ptr)
        OPENSSL_cleanse(b->ptr, b->cap);
    qd_buf_dispose(b);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int qd_verify__write_file(const char *path, const void *data, size_t len, int mode, int excl)
{
    char tmp[4096];
    int fd;

    if (excl) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd < 0)
            return qd_error_set(errno == EEXIST ? QD_EEXISTS : QD_EIO, QD_EC_OS, "create %s: %s", path,
                                errno == EEXIST ? "file exists (refusing to overwrite a key)" : strerror(errno));
        if (fchmod(fd, (mode_t)mode) < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
            int e = errno;
            close(fd);
            unlink(path);
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", path, strerror(e));
        }
        if (close(fd) < 0)
            return qd_error_set(QD_EIO, QD_EC_OS, "close %s: %s", path, strerror(errno));
        return QD_OK;
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "path too long: %.80s...", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "create %s: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "rename to %s: %s", path, strerror(e));
    }
    return QD_OK;
}

int qd_file_sha256(qd_digest *out, const char *path)
{
    static const size_t chunk = 1u << 20;
    qd_sha256 *h = NULL;
    uint8_t *buf = NULL;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    if ((rc = qd_sha256_new(&h)) < 0)
        goto done;
    if (!(buf = qd_malloc(chunk))) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (;;) {
        ssize_t n = read(fd, buf, chunk);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = qd_error_set(QD_EIO, QD_EC_OS, "read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        if ((rc = qd_sha256_update(h, buf, (size_t)n)) < 0)
            goto done;
    }
    rc = qd_sha256_final(h, out);
done:
    qd_free(buf);
    qd_sha256_free(h);
    close(fd);
    return rc;
}

/* ==================================================================================================== JSON === */

static int json_to_buf(const char *data, size_t len, void *payload)
{
    return qd_buf_put(payload, data, len) == QD_OK ? 0 : -1;
}

int qd_verify__json_dump(qd_buf *out, const void *json, size_t flags)
{
    if (json_dump_callback(json, json_to_buf, out, flags) != 0)
        return qd_error_last()->code == QD_EFULL ? QD_EFULL
                                                  : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory writing JSON");
    return QD_OK;
}
