/*
 * sshsig.c - SSH signatures (openssh PROTOCOL.sshsig) as git uses them for gpg.format=ssh, Ed25519 only, plus the
 * small helpers of log/ (raw Ed25519 keys, files).
 *
 * The signed data is  "SSHSIG" || string(namespace) || string(reserved "") || string(hash alg) || string(H(msg))
 * and the signature blob  "SSHSIG" || uint32(1) || string(public key blob) || string(namespace) ||
 * string(reserved) || string(hash alg) || string(signature blob), armored in base64 lines of 70 columns between
 * "-----BEGIN SSH SIGNATURE-----" and "-----END SSH SIGNATURE-----". We hash with sha256 (the spec allows sha256
 * and sha512; digest.h gives us SHA-256 without OpenSSL in this folder).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log_int.h"
#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/replog.h"

#define ARMOR_BEGIN "-----BEGIN SSH SIGNATURE-----"
#define ARMOR_END "-----END SSH SIGNATURE-----"
#define ED_NAME "ssh-ed25519"

int qd_log__ssh_string(qd_buf *b, const void *data, size_t len)
{
    uint8_t l[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    int error = qd_buf_put(b, l, 4);
    if (error == QD_OK && len > 0)
        error = qd_buf_put(b, data, len);
    return error;
}

int qd_log__ed25519_raw(uint8_t out[32], const qd_key *key)
{
    qd_buf line = QD_BUF_INIT(0), blob = QD_BUF_INIT(0);
    int error;
    const char *sp;
    if (!key || qd_key_algorithm(key) != QD_KEY_ED25519)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "the log needs an Ed25519 key");
    if ((error = qd_key_public_openssh(&line, key, NULL)) < 0)
        goto done;
    sp = strchr(qd_buf_cstr(&line), ' ');
    if (!sp || (error = qd_base64_decode(&blob, sp + 1, strlen(sp + 1))) < 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "cannot read the OpenSSH form of the key");
        goto done;
    }
    /* string "ssh-ed25519" (4 + 11) then string key (4 + 32) */
    if (blob.len != 4 + 11 + 4 + 32 || memcmp(blob.ptr + 4, ED_NAME, 11) != 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "unexpected OpenSSH key blob");
        goto done;
    }
    memcpy(out, blob.ptr + 19, 32);
done:
    qd_buf_dispose(&line);
    qd_buf_dispose(&blob);
    return error;
}

int qd_log__ed25519_from_raw(qd_key **out, const uint8_t raw[32])
{
    qd_buf blob = QD_BUF_INIT(0), line = QD_BUF_INIT(0);
    int error;
    if ((error = qd_log__ssh_string(&blob, ED_NAME, 11)) < 0 || (error = qd_log__ssh_string(&blob, raw, 32)) < 0 ||
        (error = qd_buf_puts(&line, ED_NAME " ")) < 0 || (error = qd_base64_encode(&line, blob.ptr, blob.len)) < 0)
        goto done;
    error = qd_key_parse(out, line.ptr, line.len);
done:
    qd_buf_dispose(&blob);
    qd_buf_dispose(&line);
    return error;
}

int qd_log__read_file(qd_buf *out, const char *path, size_t max)
{
    char tmp[65536];
    ssize_t n;
    int error = QD_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            error = qd_error_set(QD_EIO, QD_EC_OS, "read %s: %s", path, strerror(errno));
            break;
        }
        if (out->len + (size_t)n > max) {
            error = qd_error_set(QD_EFULL, QD_EC_OS, "%s: larger than %zu bytes", path, max);
            break;
        }
        if ((error = qd_buf_put(out, tmp, (size_t)n)) < 0)
            break;
    }
    close(fd);
    return error;
}

int qd_log__write_file(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    const uint8_t *p = data;
    int fd;
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
        return qd_error_set(QD_EINVAL, QD_EC_OS, "path too long: %s", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "create %s: %s", tmp, strerror(errno));
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", tmp, strerror(e));
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        unlink(tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "sync %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "rename %s: %s", path, strerror(errno));
    }
    return QD_OK;
}

/* The bytes the key signs. */
static int signed_data(qd_buf *out, const char *ns, const void *msg, size_t msg_len)
{
    qd_digest h;
    int error;
    if ((error = qd_sha256_buf(&h, msg, msg_len)) < 0 || (error = qd_buf_put(out, "SSHSIG", 6)) < 0 ||
        (error = qd_log__ssh_string(out, ns, strlen(ns))) < 0 || (error = qd_log__ssh_string(out, "", 0)) < 0 ||
        (error = qd_log__ssh_string(out, "sha256", 6)) < 0 || (error = qd_log__ssh_string(out, h.bytes, 32)) < 0)
        return error;
    return QD_OK;
}

static int pubkey_blob(qd_buf *out, const uint8_t raw[32])
{
    int error = qd_log__ssh_string(out, ED_NAME, 11);
    return error < 0 ? error : qd_log__ssh_string(out, raw, 32);
}

int qd_sshsig_sign(qd_buf *out, const qd_key *key, const char *ns, const void *msg, size_t msg_len)
{
    qd_buf sd = QD_BUF_INIT(0), blob = QD_BUF_INIT(0), pk = QD_BUF_INIT(0), sg = QD_BUF_INIT(0), b64 = QD_BUF_INIT(0);
    uint8_t raw[32], sig[QD_SIG_MAX];
    size_t sig_len = 0, off;
    static const uint8_t ver[4] = {0, 0, 0, 1};
    int error;
    if (!key || !qd_key_can_sign(key) || !ns || !*ns)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "sshsig: need a private Ed25519 key and a namespace");
    if ((error = qd_log__ed25519_raw(raw, key)) < 0 || (error = signed_data(&sd, ns, msg, msg_len)) < 0 ||
        (error = qd_key_sign(sig, &sig_len, key, sd.ptr, sd.len)) < 0)
        goto done;
    if ((error = pubkey_blob(&pk, raw)) < 0 || (error = qd_log__ssh_string(&sg, ED_NAME, 11)) < 0 ||
        (error = qd_log__ssh_string(&sg, sig, sig_len)) < 0 || (error = qd_buf_put(&blob, "SSHSIG", 6)) < 0 ||
        (error = qd_buf_put(&blob, ver, 4)) < 0 || (error = qd_log__ssh_string(&blob, pk.ptr, pk.len)) < 0 ||
        (error = qd_log__ssh_string(&blob, ns, strlen(ns))) < 0 || (error = qd_log__ssh_string(&blob, "", 0)) < 0 ||
        (error = qd_log__ssh_string(&blob, "sha256", 6)) < 0 ||
        (error = qd_log__ssh_string(&blob, sg.ptr, sg.len)) < 0)
        goto done;
    if ((error = qd_base64_encode(&b64, blob.ptr, blob.len)) < 0 || (error = qd_buf_puts(out, ARMOR_BEGIN "\n")) < 0)
        goto done;
    for (off = 0; off < b64.len; off += 70) {
        size_t n = b64.len - off < 70 ? b64.len - off : 70;
        if ((error = qd_buf_put(out, b64.ptr + off, n)) < 0 || (error = qd_buf_puts(out, "\n")) < 0)
            goto done;
    }
    error = qd_buf_puts(out, ARMOR_END);
done:
    qd_buf_dispose(&sd);
    qd_buf_dispose(&blob);
    qd_buf_dispose(&pk);
    qd_buf_dispose(&sg);
    qd_buf_dispose(&b64);
    return error;
}

/* A reader over SSH wire data. */
typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static int rd_string(rd *r, const uint8_t **s, size_t *n)
{
    uint32_t l;
    if (r->left < 4)
        return -1;
    l = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    if (r->left - 4 < l)
        return -1;
    *s = r->p + 4;
    *n = l;
    r->p += 4 + l;
    r->left -= 4 + (size_t)l;
    return 0;
}

static bool str_is(const uint8_t *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

int qd_sshsig_verify(const char *armored, size_t len, const qd_key *key, const char *ns, const void *msg,
                     size_t msg_len)
{
    qd_buf b64 = QD_BUF_INIT(1u << 20), blob = QD_BUF_INIT(1u << 20), sd = QD_BUF_INIT(0);
    const char *p = armored, *end = armored + len, *b, *e;
    const uint8_t *pk, *sns, *res, *alg, *sg, *t, *sigb;
    size_t pk_n, sns_n, res_n, alg_n, sg_n, t_n, sigb_n;
    uint8_t raw[32];
    rd r, k;
    int error;
    b = memmem(p, len, ARMOR_BEGIN, strlen(ARMOR_BEGIN));
    e = b ? memmem(b, (size_t)(end - b), ARMOR_END, strlen(ARMOR_END)) : NULL;
    if (!b || !e) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "not an armored SSH signature");
        goto done;
    }
    for (p = b + strlen(ARMOR_BEGIN); p < e; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ' && (error = qd_buf_put(&b64, p, 1)) < 0)
            goto done;
    if ((error = qd_base64_decode(&blob, qd_buf_cstr(&b64), b64.len)) < 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "SSH signature: bad base64");
        goto done;
    }
    r.p = (const uint8_t *)blob.ptr;
    r.left = blob.len;
    if (r.left < 10 || memcmp(r.p, "SSHSIG", 6) != 0 || memcmp(r.p + 6, "\0\0\0\1", 4) != 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "SSH signature: bad magic or version");
        goto done;
    }
    r.p += 10;
    r.left -= 10;
    if (rd_string(&r, &pk, &pk_n) || rd_string(&r, &sns, &sns_n) || rd_string(&r, &res, &res_n) ||
        rd_string(&r, &alg, &alg_n) || rd_string(&r, &sg, &sg_n) || r.left != 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "SSH signature: truncated or trailing data");
        goto done;
    }
    (void)res;
    (void)res_n;
    if ((error = qd_log__ed25519_raw(raw, key)) < 0)
        goto done;
    k.p = pk;
    k.left = pk_n;
    if (rd_string(&k, &t, &t_n) || !str_is(t, t_n, ED_NAME) || rd_string(&k, &t, &t_n) || t_n != 32 ||
        memcmp(t, raw, 32) != 0 || k.left != 0) {
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "SSH signature: made by another key");
        goto done;
    }
    if (!str_is(sns, sns_n, ns)) {
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "SSH signature: namespace is not \"%s\"", ns);
        goto done;
    }
    if (!str_is(alg, alg_n, "sha256")) {
        error = qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY, "SSH signature: hash %.*s not supported", (int)alg_n,
                             (const char *)alg);
        goto done;
    }
    k.p = sg;
    k.left = sg_n;
    if (rd_string(&k, &t, &t_n) || !str_is(t, t_n, ED_NAME) || rd_string(&k, &sigb, &sigb_n) || k.left != 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "SSH signature: malformed signature blob");
        goto done;
    }
    if ((error = signed_data(&sd, ns, msg, msg_len)) < 0)
        goto done;
    if (qd_key_verify(key, sd.ptr, sd.len, sigb, sigb_n) != QD_OK) {
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "SSH signature does not verify");
        goto done;
    }
    error = QD_OK;
done:
    qd_buf_dispose(&b64);
    qd_buf_dispose(&blob);
    qd_buf_dispose(&sd);
    return error;
}
