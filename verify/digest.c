/*
 * digest.c - SHA-256 through OpenSSL 3 EVP (SHA-NI where the CPU has it) and the sha256:<hex> text form.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "verify_int.h"

struct qd_sha256 {
    EVP_MD_CTX *ctx;
};

int qd_verify__err_ssl(int code, const char *what)
{
    char buf[256] = "unknown OpenSSL error";
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return qd_error_set(code, QD_EC_VERIFY, "%s: %s", what, buf);
}

/*
 * OpenSSL 3 re-fetches the implementation of a legacy EVP_sha256() handle on every EVP_DigestInit_ex (a global
 * lock and a table lookup: about as long as hashing a kilobyte). Fetch it once for the process instead.
 */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) { g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL); }

static const EVP_MD *sha256_md(void)
{
    pthread_once(&g_sha256_once, sha256_fetch);
    return g_sha256 ? g_sha256 : EVP_sha256();
}

const void *qd_verify__sha256_md(void) { return sha256_md(); }

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int qd_digest_parse(qd_digest *out, const char *s)
{
    size_t i;
    if (!s)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "missing digest");
    if (strncmp(s, "sha256:", 7) != 0) {
        const char *colon = strchr(s, ':');
        if (colon)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unsupported digest algorithm '%.*s' (only sha256)",
                                (int)(colon - s > 32 ? 32 : colon - s), s);
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed digest '%.80s': expected sha256:<64 hex digits>", s);
    }
    s += 7;
    for (i = 0; i < 2 * QD_DIGEST_LEN; i++) {
        int hi;
        if (!s[i])
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed digest: %zu hex digits, expected 64", i);
        hi = hexval((unsigned char)s[i]);
        if (hi < 0)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                                "malformed digest: character %zu is '%c', expected a lowercase hex digit", i + 8,
                                s[i] >= 32 && s[i] < 127 ? s[i] : '?');
        if (i & 1) {
            out->bytes[i / 2] |= (uint8_t)hi;
        } else {
            out->bytes[i / 2] = (uint8_t)(hi << 4);
        }
    }
    if (s[i])
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed digest: more than 64 hex digits");
    return QD_OK;
}

char *qd_hex(char *out, const void *bytes, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *b = bytes;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
    return out;
}

char *qd_digest_hex(char out[2 * QD_DIGEST_LEN + 1], const qd_digest *d)
{
    return qd_hex(out, d->bytes, QD_DIGEST_LEN);
}

char *qd_digest_format(char out[QD_DIGEST_STR_LEN + 1], const qd_digest *d)
{
    memcpy(out, "sha256:", 7);
    qd_digest_hex(out + 7, d);
    return out;
}

bool qd_digest_equal(const qd_digest *a, const qd_digest *b)
{
    return memcmp(a->bytes, b->bytes, QD_DIGEST_LEN) == 0;
}

int qd_sha256_new(qd_sha256 **out)
{
    qd_sha256 *h = qd_calloc(1, sizeof(*h));
    int rc;
    *out = NULL;
    if (!h)
        return QD_ENOMEM;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx) {
        qd_free(h);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "EVP_MD_CTX_new failed");
    }
    if ((rc = qd_sha256_reset(h)) < 0) {
        qd_sha256_free(h);
        return rc;
    }
    *out = h;
    return QD_OK;
}

int qd_sha256_reset(qd_sha256 *h)
{
    if (EVP_DigestInit_ex(h->ctx, sha256_md(), NULL) != 1)
        return qd_verify__err_ssl(QD_ERROR, "sha256 init");
    return QD_OK;
}

int qd_sha256_update(qd_sha256 *h, const void *data, size_t len)
{
    if (len && EVP_DigestUpdate(h->ctx, data, len) != 1)
        return qd_verify__err_ssl(QD_ERROR, "sha256 update");
    return QD_OK;
}

int qd_sha256_final(qd_sha256 *h, qd_digest *out)
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(h->ctx, out->bytes, &n) != 1 || n != QD_DIGEST_LEN)
        return qd_verify__err_ssl(QD_ERROR, "sha256 final");
    return QD_OK;
}

void qd_sha256_free(qd_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    qd_free(h);
}

int qd_sha256_buf(qd_digest *out, const void *data, size_t len)
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out->bytes, &n, sha256_md(), NULL) != 1 || n != QD_DIGEST_LEN)
        return qd_verify__err_ssl(QD_ERROR, "sha256");
    return QD_OK;
}
