/*
 * key.c - Ed25519 and ECDSA P-256 keys through OpenSSL 3 EVP: generate, PEM and OpenSSH in and out, sign, verify.
 *
 * The key id is the hex SHA-256 of the canonical PEM SubjectPublicKeyInfo (see verify.h). Private key text passes through
 * buffers that are wiped with OPENSSL_cleanse before they are freed; the EVP_PKEY itself clears its secret when
 * freed (OpenSSL keeps Ed25519 and EC private scalars in cleared memory).
 */
#include <pthread.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"

#define KEY_FILE_MAX (64u * 1024u)

/*
 * Verification contexts are cached per key: in OpenSSL 3 setting up a context (provider lookup, key import into
 * the provider) costs more than an Ed25519 or P-256 verification itself. The cache is guarded by a mutex taken
 * with trylock, so a key shared by several verifying threads stays correct: a thread that finds the cache busy
 * builds a context of its own for that call.
 */
struct qd_key {
    EVP_PKEY *pkey;                /* the key; owns any private part */
    qd_key_alg alg;                /* QD_KEY_ED25519 or QD_KEY_P256 */
    bool priv;                     /* a private part is present */
    char id[QD_KEY_ID_LEN + 1];    /* hex SHA-256 of the canonical SPKI PEM text */
    pthread_mutex_t lock;          /* guards the two cached contexts below */
    EVP_MD_CTX *ed_ctx;            /* Ed25519: EVP_DigestVerifyInit done once, reused for one-shot verifies */
    EVP_PKEY_CTX *ec_ctx;          /* P-256: EVP_PKEY_verify_init done once, verifies SHA-256 digests */
};

void *qd_verify__key_pkey(const qd_key *key) { return key->pkey; }

const char *qd_key_alg_name(qd_key_alg alg)
{
    switch (alg) {
    case QD_KEY_ED25519: return "ed25519";
    case QD_KEY_P256: return "ecdsa-p256";
    default: return NULL;
    }
}

int qd_key_alg_parse(qd_key_alg *out, const char *name)
{
    if (name && !strcmp(name, "ed25519")) {
        *out = QD_KEY_ED25519;
        return QD_OK;
    }
    if (name && (!strcmp(name, "ecdsa-p256") || !strcmp(name, "p256") || !strcmp(name, "P-256"))) {
        *out = QD_KEY_P256;
        return QD_OK;
    }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown key algorithm '%.40s' (ed25519 or ecdsa-p256)",
                        name ? name : "");
}

/* Wrap an EVP_PKEY (taking ownership): check its type and compute the key id. */
static int key_wrap(qd_key **out, EVP_PKEY *pkey, bool priv)
{
    qd_key *k;
    BIO *bio;
    char *pem = NULL;
    long pem_len;
    qd_digest d;
    qd_key_alg alg;
    int rc;

    *out = NULL;
    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        alg = QD_KEY_ED25519;
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64] = "";
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &glen) ||
            (strcmp(group, "prime256v1") && strcmp(group, "P-256"))) {
            EVP_PKEY_free(pkey);
            return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                                "unsupported EC curve '%s' (only P-256 / prime256v1)", group[0] ? group : "?");
        }
        alg = QD_KEY_P256;
    } else {
        const char *t = EVP_PKEY_get0_type_name(pkey);
        EVP_PKEY_free(pkey);
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY, "unsupported key type %s (only Ed25519 and ECDSA P-256)",
                            t ? t : "?");
    }
    /* the PEM text as OpenSSL writes it (RFC 7468: 64-column base64, LF line ends), re-encoded from the key,
     * so the id never depends on how an input file was wrapped */
    bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1 || (pem_len = BIO_get_mem_data(bio, &pem)) <= 0) {
        BIO_free(bio);
        EVP_PKEY_free(pkey);
        return qd_verify__err_ssl(QD_EINVAL, "encode public key");
    }
    rc = qd_sha256_buf(&d, pem, (size_t)pem_len);
    BIO_free(bio);
    if (rc < 0) {
        EVP_PKEY_free(pkey);
        return rc;
    }
    if (!(k = qd_calloc(1, sizeof(*k)))) {
        EVP_PKEY_free(pkey);
        return QD_ENOMEM;
    }
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        qd_free(k);
        EVP_PKEY_free(pkey);
        return qd_error_set(QD_ERROR, QD_EC_OS, "pthread_mutex_init failed");
    }
    k->pkey = pkey;
    k->alg = alg;
    k->priv = priv;
    qd_digest_hex(k->id, &d);
    *out = k;
    return QD_OK;
}

int qd_key_generate(qd_key **out, qd_key_alg alg)
{
    EVP_PKEY *pkey;
    *out = NULL;
    if (alg == QD_KEY_ED25519)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else if (alg == QD_KEY_P256)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown key algorithm %d", (int)alg);
    if (!pkey)
        return qd_verify__err_ssl(QD_ERROR, "generate key");
    return key_wrap(out, pkey, true);
}

/* A PEM pass phrase callback that refuses: we never prompt, encrypted keys are an error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* ---------------------------------------------------------------------------------------------- OpenSSH --- */

static int ssh_get_string(const uint8_t **p, size_t *left, const uint8_t **s, size_t *len)
{
    uint32_t n;
    if (*left < 4)
        return -1;
    n = (uint32_t)(*p)[0] << 24 | (uint32_t)(*p)[1] << 16 | (uint32_t)(*p)[2] << 8 | (*p)[3];
    if (n > *left - 4)
        return -1;
    *s = *p + 4;
    *len = n;
    *p += 4 + n;
    *left -= 4 + n;
    return 0;
}

static bool str_eq(const uint8_t *s, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static EVP_PKEY *p256_from_point(const uint8_t *pt, size_t len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[3];
    char group[] = "prime256v1";

    if (!ctx)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, len);
    params[2] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static int parse_openssh(qd_key **out, const char *text, size_t len)
{
    const char *sp1, *b64, *end;
    qd_buf blob = QD_BUF_INIT(KEY_FILE_MAX);
    const uint8_t *p, *s;
    size_t left, slen;
    EVP_PKEY *pkey = NULL;
    int rc;

    sp1 = memchr(text, ' ', len);
    if (!sp1)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "OpenSSH key: expected '<type> <base64> [comment]'");
    b64 = sp1 + 1;
    end = b64;
    while (end < text + len && *end != ' ' && *end != '\n' && *end != '\r' && *end != '\t')
        end++;
    if ((rc = qd_base64_decode(&blob, b64, (size_t)(end - b64))) < 0) {
        qd_error_prefix("OpenSSH key");
        goto done;
    }
    p = (const uint8_t *)blob.ptr;
    left = blob.len;
    if (ssh_get_string(&p, &left, &s, &slen) < 0) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "OpenSSH key: truncated key blob");
        goto done;
    }
    if ((size_t)(sp1 - text) != slen || memcmp(text, s, slen) != 0) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "OpenSSH key: the type in the blob does not match '%.*s'",
                          (int)(sp1 - text > 40 ? 40 : sp1 - text), text);
        goto done;
    }
    if (str_eq(s, slen, "ssh-ed25519")) {
        if (ssh_get_string(&p, &left, &s, &slen) < 0 || slen != 32 || left != 0) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "OpenSSH key: malformed ssh-ed25519 blob");
            goto done;
        }
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, s, 32);
    } else if (str_eq(s, slen, "ecdsa-sha2-nistp256")) {
        if (ssh_get_string(&p, &left, &s, &slen) < 0 || !str_eq(s, slen, "nistp256") ||
            ssh_get_string(&p, &left, &s, &slen) < 0 || slen != 65 || s[0] != 4 || left != 0) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "OpenSSH key: malformed ecdsa-sha2-nistp256 blob");
            goto done;
        }
        pkey = p256_from_point(s, slen);
    } else {
        rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                          "OpenSSH key type '%.*s' is not supported (ssh-ed25519, ecdsa-sha2-nistp256)",
                          (int)(slen > 40 ? 40 : slen), (const char *)s);
        goto done;
    }
    if (!pkey) {
        rc = qd_verify__err_ssl(QD_EINVAL, "OpenSSH key: invalid public key");
        goto done;
    }
    rc = key_wrap(out, pkey, false);
done:
    qd_buf_dispose(&blob);
    return rc;
}

int qd_key_public_openssh(qd_buf *out, const qd_key *key, const char *comment)
{
    uint8_t blob[4 + 19 + 4 + 8 + 4 + 65];
    size_t n = 0, plen = 0;
    uint8_t pub[65];
    const char *type;
    int rc;

#define PUT_STR(s, l)                                                                                              \
    do {                                                                                                           \
        uint32_t L_ = (uint32_t)(l);                                                                               \
        blob[n++] = (uint8_t)(L_ >> 24);                                                                           \
        blob[n++] = (uint8_t)(L_ >> 16);                                                                           \
        blob[n++] = (uint8_t)(L_ >> 8);                                                                            \
        blob[n++] = (uint8_t)L_;                                                                                   \
        memcpy(blob + n, (s), L_);                                                                                 \
        n += L_;                                                                                                   \
    } while (0)

    if (key->alg == QD_KEY_ED25519) {
        type = "ssh-ed25519";
        plen = 32;
        if (EVP_PKEY_get_raw_public_key(key->pkey, pub, &plen) != 1 || plen != 32)
            return qd_verify__err_ssl(QD_ERROR, "read Ed25519 public key");
        PUT_STR(type, strlen(type));
        PUT_STR(pub, 32);
    } else {
        type = "ecdsa-sha2-nistp256";
        if (EVP_PKEY_get_octet_string_param(key->pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &plen) != 1 ||
            plen != 65 || pub[0] != 4)
            return qd_verify__err_ssl(QD_ERROR, "read P-256 public point");
        PUT_STR(type, strlen(type));
        PUT_STR("nistp256", 8);
        PUT_STR(pub, 65);
    }
#undef PUT_STR
    if ((rc = qd_buf_puts(out, type)) < 0 || (rc = qd_buf_puts(out, " ")) < 0 ||
        (rc = qd_base64_encode(out, blob, n)) < 0)
        return rc;
    if (comment && *comment && ((rc = qd_buf_puts(out, " ")) < 0 || (rc = qd_buf_puts(out, comment)) < 0))
        return rc;
    return QD_OK;
}

/* --------------------------------------------------------------------------------------------- PEM / load --- */

static const char *find_mem(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

int qd_key_parse(qd_key **out, const void *data, size_t len)
{
    const char *t = data;
    EVP_PKEY *pkey = NULL;
    BIO *bio;
    size_t skip = 0;

    *out = NULL;
    if (!data || !len)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "empty key");
    if (len > INT32_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "key text too large");
    while (skip < len && (t[skip] == ' ' || t[skip] == '\n' || t[skip] == '\r' || t[skip] == '\t'))
        skip++;
    if (len - skip > 12 && (!memcmp(t + skip, "ssh-ed25519 ", 12) || (len - skip > 20 &&
                                                                   !memcmp(t + skip, "ecdsa-sha2-nistp256 ", 20))))
        return parse_openssh(out, t + skip, len - skip);
    if (len - skip > 4 && !memcmp(t + skip, "ssh-", 4))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                            "OpenSSH key of an unsupported type (ssh-ed25519 and ecdsa-sha2-nistp256 only)");
    if (find_mem(t, len, "-----BEGIN ENCRYPTED PRIVATE KEY-----"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY, "encrypted private keys are not supported");
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio)
        return qd_verify__err_ssl(QD_ENOMEM, "BIO_new_mem_buf");
    if (find_mem(t, len, "-----BEGIN PRIVATE KEY-----")) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
        if (!pkey)
            return qd_verify__err_ssl(QD_EINVAL, "malformed PKCS#8 private key");
        return key_wrap(out, pkey, true);
    }
    if (find_mem(t, len, "-----BEGIN PUBLIC KEY-----")) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
        if (!pkey)
            return qd_verify__err_ssl(QD_EINVAL, "malformed SPKI public key");
        return key_wrap(out, pkey, false);
    }
    BIO_free(bio);
    if (find_mem(t, len, "-----BEGIN OPENSSH PRIVATE KEY-----") || find_mem(t, len, "-----BEGIN EC PRIVATE KEY-----"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                            "legacy private key format: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)");
    return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                        "not a key: expected PKCS#8 PEM, SPKI PEM or an OpenSSH public key line");
}

int qd_key_load(qd_key **out, const char *path)
{
    qd_buf b = QD_BUF_INIT(KEY_FILE_MAX);
    int rc;

    *out = NULL;
    rc = qd_verify__read_file(&b, path, KEY_FILE_MAX);
    if (rc == QD_OK)
        rc = qd_key_parse(out, b.ptr, b.len);
    qd_verify__buf_wipe(&b);
    if (rc < 0)
        qd_error_prefix("key %s", path);
    return rc;
}

/* Write the key through a PEM writer into a memory BIO and append the text; the BIO is wiped afterwards. */
static int pem_out(qd_buf *out, const qd_key *key, bool priv)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    int ok, rc;

    if (!bio)
        return qd_verify__err_ssl(QD_ENOMEM, "BIO_new");
    if (priv)
        ok = PEM_write_bio_PKCS8PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL);
    else
        ok = PEM_write_bio_PUBKEY(bio, key->pkey);
    if (ok != 1) {
        BIO_free(bio);
        return qd_verify__err_ssl(QD_ERROR, priv ? "write private key" : "write public key");
    }
    n = BIO_get_mem_data(bio, &p);
    rc = n > 0 ? qd_buf_put(out, p, (size_t)n) : qd_error_set(QD_ERROR, QD_EC_VERIFY, "empty PEM output");
    if (n > 0)
        OPENSSL_cleanse(p, (size_t)n);
    BIO_free(bio);
    return rc;
}

int qd_key_public_pem(qd_buf *out, const qd_key *key) { return pem_out(out, key, false); }

int qd_key_save_private(const qd_key *key, const char *path)
{
    qd_buf b = QD_BUF_INIT(KEY_FILE_MAX);
    int rc;

    if (!key->priv)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "key %s has no private part to save", key->id);
    if ((rc = qd_buf_reserve(&b, 4096)) < 0) /* one allocation: no stale copy left by growth */
        return rc;
    if ((rc = pem_out(&b, key, true)) == QD_OK)
        rc = qd_verify__write_file(path, b.ptr, b.len, 0600, 1);
    qd_verify__buf_wipe(&b);
    return rc;
}

int qd_key_save_public(const qd_key *key, const char *path, bool openssh)
{
    qd_buf b = QD_BUF_INIT(KEY_FILE_MAX);
    int rc = openssh ? qd_key_public_openssh(&b, key, NULL) : qd_key_public_pem(&b, key);
    if (rc == QD_OK && openssh)
        rc = qd_buf_puts(&b, "\n");
    if (rc == QD_OK)
        rc = qd_verify__write_file(path, b.ptr, b.len, 0644, 0);
    qd_buf_dispose(&b);
    return rc;
}

const char *qd_key_id(const qd_key *key) { return key->id; }
qd_key_alg qd_key_algorithm(const qd_key *key) { return key->alg; }
bool qd_key_can_sign(const qd_key *key) { return key->priv; }

/* --------------------------------------------------------------------------------------------- sign/verify --- */

int qd_key_sign(uint8_t *sig, size_t *sig_len, const qd_key *key, const void *msg, size_t msg_len)
{
    EVP_MD_CTX *ctx;
    size_t n = QD_SIG_MAX;
    int rc = QD_OK;

    *sig_len = 0;
    if (!key->priv)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "key %s is a public key: it cannot sign", key->id);
    if (!(ctx = EVP_MD_CTX_new()))
        return qd_verify__err_ssl(QD_ENOMEM, "EVP_MD_CTX_new");
    if (EVP_DigestSignInit(ctx, NULL, key->alg == QD_KEY_P256 ? qd_verify__sha256_md() : NULL, NULL, key->pkey) != 1 ||
        EVP_DigestSign(ctx, sig, &n, msg, msg_len) != 1)
        rc = qd_verify__err_ssl(QD_ERROR, "sign");
    else
        *sig_len = n;
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* One verification with the given (possibly cached) contexts; builds them when NULL. 1 good, 0 bad, -1 error. */
static int verify_with(const qd_key *key, EVP_MD_CTX **ed, EVP_PKEY_CTX **ec, const void *msg, size_t msg_len,
                       const void *sig, size_t sig_len)
{
    if (key->alg == QD_KEY_ED25519) {
        if (!*ed) {
            if (!(*ed = EVP_MD_CTX_new()))
                return -1;
            if (EVP_DigestVerifyInit(*ed, NULL, NULL, NULL, key->pkey) != 1) {
                EVP_MD_CTX_free(*ed);
                *ed = NULL;
                return -1;
            }
        }
        return EVP_DigestVerify(*ed, sig, sig_len, msg, msg_len) == 1 ? 1 : 0;
    } else {
        unsigned char dgst[32];
        unsigned int dlen = 0;
        int r;
        if (EVP_Digest(msg, msg_len, dgst, &dlen, qd_verify__sha256_md(), NULL) != 1 || dlen != 32)
            return -1;
        if (!*ec) {
            if (!(*ec = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL)))
                return -1;
            if (EVP_PKEY_verify_init(*ec) != 1 || EVP_PKEY_CTX_set_signature_md(*ec, qd_verify__sha256_md()) != 1) {
                EVP_PKEY_CTX_free(*ec);
                *ec = NULL;
                return -1;
            }
        }
        r = EVP_PKEY_verify(*ec, sig, sig_len, dgst, dlen);
        return r == 1 ? 1 : r == 0 ? 0 : 0; /* a malformed DER signature (r < 0) is simply a bad signature */
    }
}

int qd_key_verify(const qd_key *key, const void *msg, size_t msg_len, const void *sig, size_t sig_len)
{
    qd_key *k = (qd_key *)key; /* only the context cache changes, under its lock */
    int r;

    if (key->alg == QD_KEY_ED25519 && sig_len != 64)
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "Ed25519 signature is %zu bytes, expected 64", sig_len);
    if (pthread_mutex_trylock(&k->lock) == 0) {
        r = verify_with(key, &k->ed_ctx, &k->ec_ctx, msg, msg_len, sig, sig_len);
        if (r <= 0) {
            /* never reuse a context after a failure: start clean next time */
            EVP_MD_CTX_free(k->ed_ctx);
            EVP_PKEY_CTX_free(k->ec_ctx);
            k->ed_ctx = NULL;
            k->ec_ctx = NULL;
        }
        pthread_mutex_unlock(&k->lock);
    } else {
        EVP_MD_CTX *ed = NULL;
        EVP_PKEY_CTX *ec = NULL;
        r = verify_with(key, &ed, &ec, msg, msg_len, sig, sig_len);
        EVP_MD_CTX_free(ed);
        EVP_PKEY_CTX_free(ec);
    }
    if (r < 0)
        return qd_verify__err_ssl(QD_ERROR, "verify: OpenSSL failure");
    if (r == 0) {
        ERR_clear_error();
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "signature does not verify");
    }
    return QD_OK;
}

void qd_key_free(qd_key *key)
{
    if (!key)
        return;
    EVP_MD_CTX_free(key->ed_ctx);
    EVP_PKEY_CTX_free(key->ec_ctx);
    pthread_mutex_destroy(&key->lock);
    EVP_PKEY_free(key->pkey);
    qd_free(key);
}
