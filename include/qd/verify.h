/*
 * verify.h - signed attestations: keys, DSSE envelopes, Sigstore bundles, in-toto statements and the trust policy.
 *
 * Why this shape. What quantd signs must be checkable by verifiers we did not write, so every format here is an
 * existing one: an in-toto Statement v1 (the claim: these files, by SHA-256, plus a typed predicate) inside a DSSE
 * envelope (the signature over PAE(payloadType, payload), DSSE v1.0.2) packed as a Sigstore bundle v0.3 keyed by a
 * public-key hint (no certificate, no transparency log). Keys are Ed25519 (default) or ECDSA P-256, handled only
 * through OpenSSL 3 EVP inside verify/.
 *
 * Key id. A key is named by the lowercase hex SHA-256 of its SubjectPublicKeyInfo as PEM text in the canonical
 * form OpenSSL and Python's cryptography write ("-----BEGIN PUBLIC KEY-----\n", base64 in 64-column lines,
 * "-----END PUBLIC KEY-----\n"), always re-encoded from the key itself. That is the publicKey.hint that the OpenSSF
 * model-signing verifier recomputes and insists on; docs/VERIFY.md explains why not the DER bytes of RFC 6962.
 *
 * Verification never trusts the bundle: the key comes from the policy (looked up by the key id each signature
 * names), the payload is checked byte for byte, and qd_verify() hands back exactly the bytes that were verified
 * so that callers never parse the envelope a second time.
 *
 * Threads: every object here belongs to one thread at a time, except that a qd_policy and the qd_key objects it
 * holds may be shared read-only by any number of verifying threads once loaded.
 */
#ifndef QD_VERIFY_H
#define QD_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"
#include "qd/digest.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================================================== keys === */

/** Signature algorithms. Values are stable. */
typedef enum qd_key_alg {
    QD_KEY_ED25519 = 1, /**< Ed25519 (RFC 8032, pure): signatures are the raw 64 bytes */
    QD_KEY_P256 = 2     /**< ECDSA over NIST P-256 with SHA-256: signatures are ASN.1 DER (at most 72 bytes) */
} qd_key_alg;

/** The most bytes a signature of any supported algorithm takes (ECDSA P-256 DER). */
#define QD_SIG_MAX 72
/** Length of a key id: 64 lowercase hex digits (no NUL). */
#define QD_KEY_ID_LEN 64

/** A public key, or a key pair when it was generated or loaded from a private key. */
typedef struct qd_key qd_key;

/**
 * Generate a new key pair.
 * @param[out] out  the key; free with qd_key_free()
 * @param[in]  alg  QD_KEY_ED25519 or QD_KEY_P256
 * @return QD_OK, QD_EINVAL (unknown algorithm) or QD_ERROR (OpenSSL failure)
 */
int qd_key_generate(qd_key **out, qd_key_alg alg);

/**
 * Read a key from memory. Accepted: a PKCS#8 PEM private key ("BEGIN PRIVATE KEY"), an SPKI PEM public key
 * ("BEGIN PUBLIC KEY"), or one OpenSSH public key line ("ssh-ed25519 ..." or "ecdsa-sha2-nistp256 ...").
 * @param[out] out   the key; free with qd_key_free()
 * @param[in]  data  the text (need not be NUL-terminated)
 * @param[in]  len   its length in bytes
 * @return QD_OK, QD_EINVAL (not a key, or a malformed one) or QD_EUNSUPPORTED (a key of another type, e.g. RSA)
 * @note The caller should wipe data afterwards when it held a private key.
 */
int qd_key_parse(qd_key **out, const void *data, size_t len);

/**
 * Read a key file (any format qd_key_parse() accepts). The file buffer is wiped before it is freed.
 * @return QD_OK, QD_ENOTFOUND (no such file), QD_EINVAL or QD_EUNSUPPORTED
 */
int qd_key_load(qd_key **out, const char *path);

/**
 * Write the private key as unencrypted PKCS#8 PEM to a new file created with mode 0600 (never overwritten).
 * @return QD_OK, QD_EEXISTS (the file exists), QD_EINVAL (a public key only) or QD_EIO
 */
int qd_key_save_private(const qd_key *key, const char *path);

/**
 * Write the public key to a file (mode 0644, replaced atomically when it exists).
 * @param[in] openssh  true: one OpenSSH line; false: SPKI PEM
 * @return QD_OK or QD_EIO
 */
int qd_key_save_public(const qd_key *key, const char *path, bool openssh);

/** Append the public key as SPKI PEM ("-----BEGIN PUBLIC KEY-----...") to out. @return QD_OK or QD_ENOMEM */
int qd_key_public_pem(qd_buf *out, const qd_key *key);

/**
 * Append the public key as one OpenSSH line ("ssh-ed25519 AAAA... comment", no newline) to out.
 * @param[in] comment  appended after a space when non-NULL and non-empty
 * @return QD_OK or QD_ENOMEM
 */
int qd_key_public_openssh(qd_buf *out, const qd_key *key, const char *comment);

/** The key id (QD_KEY_ID_LEN hex digits). @note Borrowed: valid as long as the key. */
const char *qd_key_id(const qd_key *key);

qd_key_alg qd_key_algorithm(const qd_key *key);

/** True when the key holds a private part and can sign. */
bool qd_key_can_sign(const qd_key *key);

/** "ed25519" or "ecdsa-p256" (the names used in policies and on the command line); NULL for an unknown value. */
const char *qd_key_alg_name(qd_key_alg alg);

/** Parse "ed25519" / "ecdsa-p256" (also "p256"). @return QD_OK or QD_EINVAL */
int qd_key_alg_parse(qd_key_alg *out, const char *name);

/**
 * Sign msg. Ed25519 signs the message itself; P-256 signs its SHA-256 and writes DER.
 * @param[out] sig      at least QD_SIG_MAX bytes
 * @param[out] sig_len  bytes written
 * @return QD_OK, QD_EINVAL (a public key only) or QD_ERROR
 * @note Does not allocate memory of libqd (OpenSSL may).
 */
int qd_key_sign(uint8_t *sig, size_t *sig_len, const qd_key *key, const void *msg, size_t msg_len);

/**
 * Check a signature over msg.
 * @return QD_OK, or QD_EBADSIG (it does not verify, including a malformed signature)
 * @note Safe to call from several threads on one key: the key caches one OpenSSL verification context behind a
 *       trylock, and a thread that finds it busy uses a context of its own for that call.
 */
int qd_key_verify(const qd_key *key, const void *msg, size_t msg_len, const void *sig, size_t sig_len);

/** Free a key; private key material is wiped by OpenSSL when the key is freed. Accepts NULL. */
void qd_key_free(qd_key *key);

/* ================================================================================================== base64 === */

/** Append the standard base64 (RFC 4648 section 4, padded) of src to out. @return QD_OK, QD_EFULL or QD_ENOMEM */
int qd_base64_encode(qd_buf *out, const void *src, size_t len);

/**
 * Append the decoded bytes of a base64 text to out. Both alphabets are accepted (standard "+/" and URL-safe "-_",
 * RFC 4648 sections 4 and 5, not mixed), with or without '=' padding; whitespace is not.
 * @return QD_OK, QD_EINVAL (with the offending offset in the message), QD_EFULL or QD_ENOMEM
 */
int qd_base64_decode(qd_buf *out, const char *src, size_t len);

/* ==================================================================================================== DSSE === */

/** The DSSE payloadType of an in-toto statement. */
#define QD_INTOTO_PAYLOAD_TYPE "application/vnd.in-toto+json"
/** The media type of the Sigstore bundles we write. */
#define QD_BUNDLE_MEDIA_TYPE "application/vnd.dev.sigstore.bundle.v0.3+json"
/** Default upper bound on a decoded payload (and 4/3 of it plus slack on a whole bundle). */
#define QD_PAYLOAD_MAX_DEFAULT (4u * 1024u * 1024u)

/**
 * Append PAE(type, body) as DSSE v1.0.2 defines it:
 * "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, with LEN as ASCII decimal without leading zeros.
 * @return QD_OK, QD_EFULL or QD_ENOMEM
 */
int qd_dsse_pae(qd_buf *out, const char *payload_type, const void *payload, size_t payload_len);

/** A DSSE envelope: payloadType, payload bytes and zero or more signatures, each with an optional key id. */
typedef struct qd_envelope qd_envelope;

/**
 * Make an unsigned envelope over a copy of payload.
 * @return QD_OK, QD_EINVAL (empty payload type) or QD_ENOMEM
 */
int qd_envelope_new(qd_envelope **out, const char *payload_type, const void *payload, size_t payload_len);

/**
 * Read a Sigstore bundle (v0.1-v0.3, publicKey material, dsseEnvelope content) or a bare DSSE envelope JSON.
 * Structure is checked strictly (types, required fields, base64, duplicate object keys); signatures are not
 * checked here.
 * @param[in] max_payload  decoded payloads larger than this are refused; 0 means QD_PAYLOAD_MAX_DEFAULT
 * @return QD_OK, QD_EINVAL (malformed: the message names the field), QD_EUNSUPPORTED (message signatures,
 *         certificates) or QD_EFULL (over the size limit)
 */
int qd_envelope_parse(qd_envelope **out, const void *json, size_t len, size_t max_payload);

/**
 * Read and parse a bundle or envelope file (as qd_envelope_parse()).
 * @return as qd_envelope_parse(), or QD_ENOTFOUND (no such file)
 */
int qd_envelope_load(qd_envelope **out, const char *path, size_t max_payload);

/**
 * Sign PAE(payloadType, payload) with key and append the signature, with the key id as DSSE keyid.
 * @return QD_OK, QD_EINVAL (no private key) or QD_ERROR
 */
int qd_envelope_sign(qd_envelope *env, const qd_key *key);

/**
 * Append src's signatures to dst. Both must carry the same payloadType and payload bytes.
 * @return QD_OK, QD_EINVAL (different payloads) or QD_ENOMEM
 */
int qd_envelope_merge(qd_envelope *dst, const qd_envelope *src);

/** Append the bare DSSE envelope JSON (standard base64, no trailing newline). @return QD_OK or QD_ENOMEM */
int qd_envelope_write_dsse(qd_buf *out, const qd_envelope *env);

/**
 * Append a Sigstore bundle v0.3 JSON: mediaType, verificationMaterial {publicKey {hint}, tlogEntries []},
 * dsseEnvelope. The hint is the key id of the first signature.
 * @return QD_OK, QD_EINVAL (no signature yet) or QD_ENOMEM
 * @note Sigstore verifiers require exactly one signature per bundle; an envelope with several (for a threshold)
 *       is still written, and qd_envelope_parse() reads it, but other verifiers will refuse it.
 */
int qd_envelope_write_bundle(qd_buf *out, const qd_envelope *env);

const char *qd_envelope_payload_type(const qd_envelope *env);
/** @note Borrowed: valid as long as env. */
const uint8_t *qd_envelope_payload(const qd_envelope *env, size_t *len_out);
size_t qd_envelope_signature_count(const qd_envelope *env);
/** Key id of signature i ("" when the envelope did not name one). @note Borrowed. */
const char *qd_envelope_signature_keyid(const qd_envelope *env, size_t i);
/** The bundle's publicKey.hint ("" for a bare envelope). @note Borrowed. */
const char *qd_envelope_hint(const qd_envelope *env);

void qd_envelope_free(qd_envelope *env);

/* ============================================================================================== statements === */

#define QD_STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define QD_PREDICATE_VARIANT "https://quantd.dev/variant/v1"
#define QD_PREDICATE_CHECKPOINT "https://quantd.dev/checkpoint/v1"
#define QD_PREDICATE_MODEL_SIGNING "https://model_signing/signature/v1.0"

/** A named file and its SHA-256: one statement subject, or one file given to verify. */
typedef struct qd_subject {
    const char *name;  /**< the file's name as written in the statement (quant uses the base name) */
    qd_digest digest;  /**< its SHA-256 */
} qd_subject;

/**
 * Append an in-toto Statement v1 (compact JSON) to out.
 * @param[in] subjects        at least one; names must be distinct and non-empty
 * @param[in] predicate_type  a URI
 * @param[in] predicate_json  a JSON object (text)
 * @return QD_OK, QD_EINVAL (no subject, duplicate name, predicate not an object) or QD_ENOMEM
 */
int qd_statement_build(qd_buf *out, const qd_subject *subjects, size_t n_subjects, const char *predicate_type,
                       const char *predicate_json);

/**
 * Append an OpenSSF model-signing v1.0 statement: one subject named model_name whose sha256 is the SHA-256 of the
 * concatenated 32-byte file digests in name order, and predicate {serialization, resources[]} listing the files
 * sorted by name.
 * @return QD_OK, QD_EINVAL (no file, duplicate name) or QD_ENOMEM
 */
int qd_statement_build_model_signing(qd_buf *out, const char *model_name, const qd_subject *files, size_t n_files);

/* ============================================================================================ trust policy === */

/** A trust policy: trusted keys with validity windows, per-namespace thresholds, revocations, requirements. */
typedef struct qd_policy qd_policy;

/**
 * Parse a policy (schemas/policy.schema.json). Unknown fields, wrong types, a key whose id does not match its
 * public key, a threshold above the number of keys listed, and references to unknown keys are all refused.
 * @return QD_OK, QD_EINVAL (the message names the field) or QD_EUNSUPPORTED (policy version)
 */
int qd_policy_parse(qd_policy **out, const void *json, size_t len);

/** Read and parse a policy file. @return as qd_policy_parse(), or QD_ENOTFOUND */
int qd_policy_load(qd_policy **out, const char *path);

void qd_policy_free(qd_policy *policy);

/** The largest payload the policy accepts (max_payload_bytes; default QD_PAYLOAD_MAX_DEFAULT). */
size_t qd_policy_max_payload(const qd_policy *policy);

/** Options of qd_policy_build(). */
typedef struct qd_policy_build_options {
    unsigned version;             /**< QD_POLICY_BUILD_OPTIONS_VERSION */
    const char *namespace_pattern; /**< NULL: "*" */
    unsigned threshold;           /**< 0: 1 */
    int64_t valid_from;           /**< Unix seconds; 0: no start (not "now": clocks of signer and verifier differ) */
    int64_t valid_until;          /**< Unix seconds; 0: no end */
    const char *const *predicate_types; /**< NULL-terminated list of required predicate types, or NULL */
    bool require_validation_pass; /**< a variant's predicate must carry validation.verdict "pass" */
} qd_policy_build_options;

#define QD_POLICY_BUILD_OPTIONS_VERSION 1
#define QD_POLICY_BUILD_OPTIONS_INIT {QD_POLICY_BUILD_OPTIONS_VERSION, NULL, 0, 0, 0, NULL, false}

/**
 * Append a new policy JSON that trusts keys for one namespace pattern.
 * @return QD_OK, QD_EINVAL (no key, threshold above the key count, duplicate key) or QD_ENOMEM
 */
int qd_policy_build(qd_buf *out, const qd_key *const *keys, size_t n_keys, const qd_policy_build_options *opts);

/* ============================================================================================ verification === */

typedef struct qd_verify_options {
    unsigned version;       /**< QD_VERIFY_OPTIONS_VERSION */
    const char *namespace_name; /**< the name being verified, matched against the policy patterns; NULL: "" */
    int64_t now;            /**< Unix seconds for key validity; 0: the clock */
    bool skip_subjects;     /**< do not require files for the subjects (signature and policy only) */
} qd_verify_options;

#define QD_VERIFY_OPTIONS_VERSION 1
#define QD_VERIFY_OPTIONS_INIT {QD_VERIFY_OPTIONS_VERSION, NULL, 0, false}

/** Why a verification failed: which key, which subject, and the reason (all NUL-terminated; "-" when n/a). */
typedef struct qd_verify_failure {
    char key_id[QD_KEY_ID_LEN + 1]; /**< the key concerned, or "-" */
    char subject[256];              /**< the subject concerned, or "-" */
    char reason[512];               /**< one sentence */
} qd_verify_failure;

/** What a successful verification hands back. */
typedef struct qd_verified qd_verified;

/**
 * Verify an envelope against a policy and the files given.
 *
 * In order: payloadType is in-toto; each signature is checked with the policy key its keyid names (signatures
 * without a keyid are tried against every key of the matching rule); revoked, expired and not-yet-valid keys do
 * not count; unique key ids of good signatures must reach the threshold of the first namespace rule whose pattern
 * matches opts->namespace_name; the statement must have subjects with sha256 digests; its predicate type must be
 * one the policy requires; a required validation verdict must be "pass"; every subject must equal, by name and
 * digest, one of the files, and every file must be a subject (for model-signing statements: the resources, and
 * their root digest must match the subject).
 *
 * @param[out] out      on success the verified result; free with qd_verified_free(). May be NULL.
 * @param[out] why      on failure, which key, which subject and why. May be NULL.
 * @return QD_OK, QD_EBADSIG (payload type, signatures, keys, threshold, policy requirements), QD_EDIGEST (a
 *         subject does not match the files) or QD_ECORRUPT (a malformed statement inside a good signature)
 */
int qd_verify(qd_verified **out, qd_verify_failure *why, const qd_policy *policy, const qd_envelope *env,
              const qd_subject *files, size_t n_files, const qd_verify_options *opts);

/** The verified payload bytes (exactly what the signatures cover). @note Borrowed: valid as long as v. */
const uint8_t *qd_verified_payload(const qd_verified *v, size_t *len_out);
/** The statement's predicateType. @note Borrowed. */
const char *qd_verified_predicate_type(const qd_verified *v);
/** Number of distinct keys whose signatures counted. */
size_t qd_verified_key_count(const qd_verified *v);
/** Key id i of the keys that counted. @note Borrowed. */
const char *qd_verified_key_id(const qd_verified *v, size_t i);
void qd_verified_free(qd_verified *v);

/** Hash a file with SHA-256 (streaming). @return QD_OK, QD_ENOTFOUND or QD_EIO */
int qd_file_sha256(qd_digest *out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
