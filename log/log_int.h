/* log_int.h - shared pieces of log/ (private). */
#ifndef QD_LOG_INT_H
#define QD_LOG_INT_H

#include <stdint.h>

#include "qd/buf.h"
#include "qd/verify.h"

/** The raw 32-byte public key of an Ed25519 key (from its OpenSSH form). @return QD_OK or QD_EINVAL */
int qd_log__ed25519_raw(uint8_t out[32], const qd_key *key);
/** A public Ed25519 key from its raw 32 bytes. */
int qd_log__ed25519_from_raw(qd_key **out, const uint8_t raw[32]);
/** SSH wire helpers: append a uint32 length and the bytes. */
int qd_log__ssh_string(qd_buf *b, const void *data, size_t len);
/** Read a whole file into out (at most max bytes). QD_ENOTFOUND, QD_EIO, QD_EFULL */
int qd_log__read_file(qd_buf *out, const char *path, size_t max);
/** Write a file atomically (temp file, fsync, rename). QD_EIO */
int qd_log__write_file(const char *path, const void *data, size_t len);

#endif
