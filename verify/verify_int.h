/* verify_int.h - private to verify/: helpers shared by its files. Nothing outside verify/ includes this. */
#ifndef QD_VERIFY_INT_H
#define QD_VERIFY_INT_H

#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"
#include "qd/verify.h"

/** Drain OpenSSL's error queue into the thread's qd error. @return code */
int qd_verify__err_ssl(int code, const char *what);

/**
 * Read a whole file into out (which is cleared first), refusing files over max bytes. The buffer is reserved to
 * the file's size up front, so no partial copy of a secret is left behind by a reallocation.
 * @return QD_OK, QD_ENOTFOUND, QD_EFULL (too large) or QD_EIO
 */
int qd_verify__read_file(qd_buf *out, const char *path, size_t max);

/** Wipe a buffer's bytes (OPENSSL_cleanse) and free it. */
void qd_verify__buf_wipe(qd_buf *b);

/** Write data to path atomically (temp file + rename) with the given mode, or exclusively when excl. */
int qd_verify__write_file(const char *path, const void *data, size_t len, int mode, int excl);

/**
 * Append a jansson value as JSON text (json_dump_callback flags) to out, without a temporary copy.
 * @return QD_OK, QD_EFULL or QD_ENOMEM
 */
int qd_verify__json_dump(qd_buf *out, const void *json, size_t flags);

/** The process-wide fetched SHA-256 EVP_MD (as void * so that this header needs no OpenSSL include). */
const void *qd_verify__sha256_md(void);

/** The EVP_PKEY inside a key (as void * so that this header needs no OpenSSL include). */
void *qd_verify__key_pkey(const qd_key *key);

/** Signature i of an envelope (borrowed). @return QD_OK or QD_EINVAL (no such signature) */
int qd_verify__envelope_sig(const qd_envelope *env, size_t i, const uint8_t **sig, size_t *len);

/** Format Unix seconds as RFC 3339 UTC ("2026-01-31T12:00:00Z"). */
void qd_verify__format_time(char out[32], int64_t t);

#endif
