/*
 * digest.h - SHA-256 content digests (OpenSSL EVP underneath) and their text form "sha256:<64 lowercase hex>".
 */
#ifndef QD_DIGEST_H
#define QD_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QD_DIGEST_LEN 32
/** Length of "sha256:" + 64 hex digits, without the NUL. */
#define QD_DIGEST_STR_LEN 71

typedef struct qd_digest {
    uint8_t bytes[QD_DIGEST_LEN];
} qd_digest;

/**
 * Parse "sha256:<hex>" (exactly 64 lowercase hex digits, as the OCI digest grammar requires for sha256).
 * @return QD_OK, or QD_EINVAL with a message saying what is wrong (other algorithm, length, character).
 */
int qd_digest_parse(qd_digest *out, const char *s);

/** Write the text form into out (QD_DIGEST_STR_LEN + 1 bytes). @return out */
char *qd_digest_format(char out[QD_DIGEST_STR_LEN + 1], const qd_digest *d);

/** Write the 64 hex digits only into out (65 bytes). @return out */
char *qd_digest_hex(char out[2 * QD_DIGEST_LEN + 1], const qd_digest *d);

/** Write n bytes as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). @return out */
char *qd_hex(char *out, const void *bytes, size_t n);

bool qd_digest_equal(const qd_digest *a, const qd_digest *b);

/** An incremental SHA-256. */
typedef struct qd_sha256 qd_sha256;

/** @return QD_OK or QD_ENOMEM / QD_ERROR (OpenSSL failure). */
int qd_sha256_new(qd_sha256 **out);
/** Start over (after final, or to discard). */
int qd_sha256_reset(qd_sha256 *h);
int qd_sha256_update(qd_sha256 *h, const void *data, size_t len);
/** Finish: write the digest; the context must be reset before reuse. */
int qd_sha256_final(qd_sha256 *h, qd_digest *out);
void qd_sha256_free(qd_sha256 *h);

/** One-shot SHA-256 of a buffer. */
int qd_sha256_buf(qd_digest *out, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
