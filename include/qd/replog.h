/*
 * replog.h - the signed append-only log (docs/LOG.md).
 *
 * The log is a bare git repository (libgit2, SHA-1 object ids) with one commit per entry. Each commit's tree holds
 * the state after the entry: `manifests/sha256/<hex>.json` (the bundles), `tags/<namespace>/<model>/<tag>` (a
 * manifest digest) and `keys/<key id>.pub` / `keys/revoked/<key id>`. The commit message is a summary line, a blank
 * line and the entry as one line of JSON; that JSON line is the Merkle leaf. Every commit is signed by the daemon
 * key in git's SSH signature format (SSHSIG, Ed25519, namespace "git"), so `git verify-commit` with gpg.format=ssh
 * and an allowed-signers file accepts it.
 *
 * Security does not rest on git's SHA-1: it rests on the SHA-256 digests inside the entries and on an RFC 6962
 * Merkle tree over the entries, whose signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note) let clients
 * check inclusion and mirrors check consistency. Freshness is a signed note over (checkpoint, tag map digest) with
 * an expiry.
 *
 * Threads: a qd_replog belongs to one thread at a time. The free functions (qd_merkle_*, qd_note_*, qd_sshsig_*)
 * are reentrant.
 */
#ifndef QD_REPLOG_H
#define QD_REPLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"
#include "qd/digest.h"
#include "qd/verify.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================================================== merkle === */

#define QD_HASH_LEN 32
/** Proofs are at most this many hashes (tree sizes are below 2^63). */
#define QD_MERKLE_PROOF_MAX 64

/** RFC 6962 leaf hash: SHA-256(0x00 || data). @return QD_OK or QD_ERROR */
int qd_merkle_leaf_hash(uint8_t out[QD_HASH_LEN], const void *data, size_t len);
/** RFC 6962 interior node: SHA-256(0x01 || left || right). @return QD_OK or QD_ERROR */
int qd_merkle_node_hash(uint8_t out[QD_HASH_LEN], const uint8_t left[QD_HASH_LEN], const uint8_t right[QD_HASH_LEN]);
/**
 * Check an inclusion proof (RFC 9162 section 2.1.3.2).
 * @return QD_OK, or QD_EBADSIG (the proof does not lead to root), QD_EINVAL (index >= size, wrong proof length)
 */
int qd_merkle_verify_inclusion(const uint8_t leaf[QD_HASH_LEN], uint64_t index, uint64_t size, const uint8_t *proof,
                               size_t n_proof, const uint8_t root[QD_HASH_LEN]);
/**
 * Check a consistency proof between an older tree (size1, root1) and a newer one (RFC 9162 section 2.1.4.2).
 * size1 == size2 needs an empty proof and equal roots; size1 == 0 is always consistent (empty proof).
 * @return QD_OK, QD_EBADSIG (not consistent) or QD_EINVAL (size1 > size2, wrong proof length)
 */
int qd_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t *proof, size_t n_proof,
                                 const uint8_t root1[QD_HASH_LEN], const uint8_t root2[QD_HASH_LEN]);

/**
 * The persisted tree: the hash of every complete, aligned subtree (2^k leaves starting at a multiple of 2^k), one
 * append-only file per level under dir. Roots and proofs read O(log n) stored nodes and hash O(log^2 n) at most;
 * appending writes O(log n) nodes. Everything in it can be rebuilt from the entries (qd_replog_open does).
 */
typedef struct qd_merkle qd_merkle;
/** Open or create the node files under dir. @return QD_OK, QD_EIO, QD_ECORRUPT (levels disagree) */
int qd_merkle_open(qd_merkle **out, const char *dir);
void qd_merkle_free(qd_merkle *m);
uint64_t qd_merkle_size(const qd_merkle *m);
/** Append one leaf hash. @return QD_OK or QD_EIO */
int qd_merkle_append(qd_merkle *m, const uint8_t leaf[QD_HASH_LEN]);
/** Drop everything (before a rebuild). @return QD_OK or QD_EIO */
int qd_merkle_reset(qd_merkle *m);
/** Root of the first size leaves (size 0: SHA-256 of ""). @return QD_OK, QD_EINVAL (size > stored) or QD_EIO */
int qd_merkle_root(const qd_merkle *m, uint64_t size, uint8_t out[QD_HASH_LEN]);
/** Inclusion proof of leaf index in the tree of size leaves. proof holds QD_MERKLE_PROOF_MAX hashes. */
int qd_merkle_inclusion_proof(const qd_merkle *m, uint64_t index, uint64_t size, uint8_t *proof, size_t *n_proof);
/** Consistency proof from size1 to size2 (RFC 6962 section 2.1.2). proof holds QD_MERKLE_PROOF_MAX hashes. */
int qd_merkle_consistency_proof(const qd_merkle *m, uint64_t size1, uint64_t size2, uint8_t *proof, size_t *n_proof);

/* ============================================================================================ signed notes === */

/**
 * C2SP signed note, Ed25519 only. The key hash is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey);
 * a signature line is "\u2014 <name> <base64(keyhash || sig)>\n" after a blank line that ends the text.
 */
/** Key name rules of the spec: non-empty, no whitespace, no '+'. */
bool qd_note_name_valid(const char *name);
/** The 32-bit key hash of an Ed25519 key under a name. @return QD_OK, QD_EINVAL (not Ed25519, bad name) */
int qd_note_key_hash(uint32_t *out, const char *name, const qd_key *key);
/** Append the verifier key text "<name>+<hash hex 8>+<base64(0x01 || pubkey)>". */
int qd_note_verifier_key(qd_buf *out, const char *name, const qd_key *key);
/** Parse a verifier key text into a public key and its name (name_cap bytes). @return QD_OK or QD_EINVAL */
int qd_note_verifier_parse(qd_key **out, char *name, size_t name_cap, const char *vkey);
/**
 * Append the signed note: text (must end with "\n", no blank-line-only ambiguity rules broken), a blank line and
 * one signature line. @return QD_OK, QD_EINVAL (text does not end in a newline, bad name, not Ed25519)
 */
int qd_note_sign(qd_buf *out, const char *text, size_t text_len, const char *name, const qd_key *key);
/**
 * Verify a note: find the signature line of (name, key) and check it. Lines of other keys are ignored.
 * @param[out] text_len  length of the signed text (the note up to and including its last text newline)
 * @return QD_OK, QD_EBADSIG (no line for this key, or a bad signature) or QD_EINVAL (malformed note)
 */
int qd_note_verify(size_t *text_len, const char *note, size_t note_len, const char *name, const qd_key *key);

/** A parsed checkpoint body (C2SP tlog-checkpoint). */
typedef struct qd_checkpoint {
    char origin[256];
    uint64_t size;
    uint8_t root[QD_HASH_LEN];
} qd_checkpoint;
/** Append "<origin>\n<size>\n<base64 root>\n". */
int qd_checkpoint_format(qd_buf *out, const qd_checkpoint *cp);
/** Parse the first three lines of a checkpoint text (extension lines are allowed and ignored). QD_EINVAL */
int qd_checkpoint_parse(qd_checkpoint *out, const char *text, size_t len);

/* ================================================================================================== sshsig === */

/**
 * Append an armored SSH signature (openssh PROTOCOL.sshsig, hash sha256) of msg by an Ed25519 key under namespace,
 * wrapped at 70 columns like ssh-keygen, without a trailing newline.
 * @return QD_OK, QD_EINVAL (no private key, not Ed25519) or QD_ERROR
 */
int qd_sshsig_sign(qd_buf *out, const qd_key *key, const char *namespace_name, const void *msg, size_t msg_len);
/**
 * Check an armored SSH signature over msg: the embedded public key must be key, the namespace must match.
 * @return QD_OK, QD_EBADSIG (wrong key, namespace or signature) or QD_EINVAL (malformed)
 */
int qd_sshsig_verify(const char *armored, size_t len, const qd_key *key, const char *namespace_name, const void *msg,
                     size_t msg_len);

/* ===================================================================================================== log === */

typedef enum qd_replog_kind {
    QD_REPLOG_PUBLISH = 1,    /**< a bundle for a manifest under a name */
    QD_REPLOG_TAG = 2,        /**< a tag moves to a manifest */
    QD_REPLOG_KEY_ADD = 3,    /**< a key is added (also used for rotation: add the new, revoke the old) */
    QD_REPLOG_KEY_REVOKE = 4  /**< a key is revoked */
} qd_replog_kind;

/** What to append. */
typedef struct qd_replog_entry {
    unsigned version;      /**< QD_REPLOG_ENTRY_VERSION */
    qd_replog_kind kind;
    const char *name;      /**< PUBLISH: "ns/model"; TAG: "ns/model:tag"; KEY_*: a comment or NULL */
    qd_digest manifest;    /**< PUBLISH, TAG */
    const void *bundle;    /**< PUBLISH: the Sigstore bundle bytes */
    size_t bundle_len;
    const qd_key *key;     /**< KEY_ADD, KEY_REVOKE: the key concerned (public part used) */
    int64_t time;          /**< Unix seconds; 0: the clock */
} qd_replog_entry;
#define QD_REPLOG_ENTRY_VERSION 1
#define QD_REPLOG_ENTRY_INIT {QD_REPLOG_ENTRY_VERSION, 0, NULL, {{0}}, NULL, 0, NULL, 0}

typedef struct qd_replog qd_replog;

/**
 * Create a new log: a bare git repository at dir (must not exist or be empty).
 * @param[in] origin  the checkpoint origin line, e.g. "quantd.example/log"; a valid note key name
 * @return QD_OK, QD_EEXISTS (a log is already there), QD_EINVAL (origin) or QD_EIO
 */
int qd_replog_init(qd_replog **out, const char *dir, const char *origin);
/**
 * Open a log. The Merkle node files are checked against the commit count and rebuilt from the entries when
 * they lag (a crash between the git ref update and the node write).
 * @return QD_OK, QD_ENOTFOUND (not a log) or QD_ECORRUPT
 */
int qd_replog_open(qd_replog **out, const char *dir);
void qd_replog_free(qd_replog *log);
uint64_t qd_replog_size(const qd_replog *log);
/** @note Borrowed. */
const char *qd_replog_origin(const qd_replog *log);
/** @note Borrowed: the 40-hex commit id of the head, "" for an empty log. */
const char *qd_replog_head(const qd_replog *log);
/** The persisted Merkle tree. @note Borrowed. */
const qd_merkle *qd_replog_merkle(const qd_replog *log);

/**
 * Append one entry as one signed commit. A PUBLISH bundle must parse as a Sigstore bundle or DSSE envelope and,
 * when policy is non-NULL, verify under it for the entry's name (signatures and rules only: the files are not in
 * the log). Appends hold an exclusive lock on the log directory and first catch up with appends made elsewhere.
 * @param[out] index_out  the entry's index (may be NULL)
 * @return QD_OK, QD_EINVAL (missing field, bad name), QD_EBADSIG (bundle refused by the policy), QD_EIO
 */
int qd_replog_append(qd_replog *log, uint64_t *index_out, const qd_key *signer, const qd_replog_entry *entry,
                     const qd_policy *policy);
/** Append entry i's JSON (the Merkle leaf bytes). @return QD_OK, QD_ENOTFOUND (i >= size) or QD_EIO */
int qd_replog_entry_json(qd_buf *out, qd_replog *log, uint64_t i);
/**
 * Append a signed checkpoint note for the current size, signed with key under the origin as key name.
 * @return QD_OK, QD_EINVAL (not Ed25519) or QD_EIO
 */
int qd_replog_checkpoint(qd_buf *out, qd_replog *log, const qd_key *key);
/** SHA-256 over the tag map at the head: sorted lines "<ns>/<model>:<tag> sha256:<hex>\n". */
int qd_replog_tagmap_digest(qd_digest *out, qd_replog *log);

/**
 * Can the log record this name? tagged false: "namespace/model"; true: "namespace/model:tag"; the characters
 * [a-z0-9._-] only (stricter than OCI: no upper case, exactly one slash).
 */
bool qd_replog_name_ok(const char *name, bool tagged);
/**
 * Append the blob at path (e.g. "tags/ns/model/v1") in the head commit's tree.
 * @return QD_OK, QD_ENOTFOUND (empty log, or no such path), QD_EFULL (larger than max) or QD_EIO
 */
int qd_replog_read_head(qd_buf *out, qd_replog *log, const char *path, size_t max);
/** Like qd_replog_read_head, in entry i's tree. @return QD_OK, QD_ENOTFOUND, QD_EFULL or QD_EIO */
int qd_replog_read_at(qd_buf *out, qd_replog *log, uint64_t i, const char *path, size_t max);

/* ============================================================================== git smart HTTP (upload.c) === */

/**
 * The body of GET info/refs?service=git-upload-pack for the log at dir (protocol v0: the service line, a flush,
 * HEAD and refs/heads/main with the capabilities, a flush).
 * @return QD_OK, QD_ENOTFOUND (no repository) or QD_EIO
 */
int qd_replog_git_advertise(qd_buf *out, const char *dir);
/**
 * Answer one stateless upload-pack request (the body of POST git-upload-pack, gzip-decoded first when gzipped):
 * ACK/NAK lines of the negotiation and, after "done" (or when ready under no-done), the pack of what the wants
 * reach and the common haves do not, through side-band(-64k) when asked. Safe from any thread (opens its own
 * repository handle).
 * @return QD_OK, QD_EINVAL (malformed request), QD_ENOTFOUND (a want that is not ours), QD_EUNSUPPORTED (shallow,
 *         filter), QD_EFULL (request too large) or QD_EIO
 */
int qd_replog_git_upload_pack(qd_buf *out, const char *dir, const void *body, size_t len, bool gzipped);
/**
 * Fetch refs/heads/main of the log at url (smart HTTP, libgit2's client) into the ref staging_ref of the bare
 * repository at dir (created when absent, with no HEAD branch of its own). Nothing else in dir changes.
 * @param[out] head  the fetched commit, 40 hex + NUL
 * @return QD_OK, QD_ENOTFOUND (the upstream has no log), QD_EIO (network or protocol error: the message says)
 */
int qd_replog_git_fetch(char head[41], const char *dir, const char *url, const char *staging_ref);

/* ============================================================================================== freshness === */

/** A parsed timestamp. */
typedef struct qd_timestamp {
    qd_checkpoint checkpoint;
    qd_digest tagmap;
    int64_t issued;
    int64_t expires;
} qd_timestamp;
/**
 * Append a signed timestamp note over the current checkpoint and tag map:
 * "quantd-timestamp/v1\n<origin>\n<size>\n<base64 root>\n<sha256:tagmap>\n<issued>\n<expires>\n" + signature.
 * @param[in] now  Unix seconds (0: the clock); expires = now + ttl_s
 */
int qd_replog_timestamp(qd_buf *out, qd_replog *log, const qd_key *key, int64_t now, int64_t ttl_s);

/** Why a timestamp was refused. */
typedef enum qd_fresh_verdict {
    QD_FRESH_OK = 0,
    QD_FRESH_BADSIG,   /**< malformed, or not signed by the key */
    QD_FRESH_EXPIRED,  /**< freeze: the timestamp is past its expiry */
    QD_FRESH_ROLLBACK  /**< older than (or a different tree at the same size as) the last one seen */
} qd_fresh_verdict;
/**
 * Verify a timestamp note and advance the verifier's "last seen" state kept in the file state_path (created when
 * absent; replaced atomically). Refused: a bad signature, expires <= now (freeze), issued or size below the last
 * seen, or the same size with another root (rollback / fork). The state moves forward only on success.
 * @param[in] now  Unix seconds (0: the clock)
 * @return QD_OK, QD_EBADSIG (verdict says why) or QD_EIO (state file)
 */
int qd_fresh_verify(qd_timestamp *out, qd_fresh_verdict *verdict, const char *note, size_t note_len,
                    const char *origin, const qd_key *key, const char *state_path, int64_t now);

/* ========================================================================================= verifying a log === */

struct qd_replog_state;
/**
 * Does a verified timestamp describe exactly the verified log (size, root and tag map)? A client takes tags only
 * from a state that matches a fresh timestamp, so a manifest of one state cannot be paired with the tag map of
 * another (mix and match).
 * @return QD_OK or QD_EBADSIG (the message says which part differs)
 */
int qd_fresh_match(const qd_timestamp *ts, const struct qd_replog_state *st);

/** What a verifier remembers between runs: the last verified size, head, root and tag map digest. */
typedef struct qd_replog_state {
    uint64_t size;
    char head[41];
    uint8_t root[QD_HASH_LEN];
    qd_digest tagmap; /**< of the head tree, as qd_replog_tagmap_digest() */
} qd_replog_state;
/** Read / write a state file ("size head hexroot hextagmap\n"); a missing file reads as the empty state. */
int qd_replog_state_load(qd_replog_state *out, const char *path);
int qd_replog_state_save(const qd_replog_state *st, const char *path);

/**
 * Verify a log (e.g. a fresh clone or a fetched mirror) from scratch: history is linear; every commit carries a
 * valid SSHSIG by log_key under namespace "git"; its entry JSON is well formed and numbered in order; a PUBLISH's
 * bundle blob in the commit's tree has the digest the entry names and verifies under policy; a TAG's file holds
 * the digest the entry names. When prev (the state of an earlier run) is non-NULL and non-empty, the log must
 * extend it: the commit at index prev->size - 1 must be prev->head (fast-forward only) and the Merkle root of the
 * first prev->size entries must be prev->root. A KEY_REVOKE entry naming log_key ends what log_key may sign: a
 * later commit is refused (rotation: the verifier is then given the successor key). A KEY_REVOKE of any other key
 * ends what it may publish: a later PUBLISH whose bundle names it (a signature key id, or under a policy a key
 * whose signature counted) is refused, and why->key_id names it. On success *out is the new
 * state (may alias prev).
 * @param[in] dir  a git repository (bare or not) holding the log on branch "refs/heads/main"
 * @return QD_OK, QD_EBADSIG (signature, rewritten or rolled-back history; why says which commit and why),
 *         QD_ECORRUPT (bad entry, blob digest mismatch) or QD_ENOTFOUND
 */
int qd_replog_verify(qd_replog_state *out, qd_verify_failure *why, const char *dir, const qd_key *log_key,
                     const qd_policy *policy, const qd_replog_state *prev);

/* =================================================================================================== audit === */

/** One published variant as the log records it. Strings are NUL-terminated ("" when absent). */
typedef struct qd_audit_record {
    uint64_t index;            /**< log entry */
    int64_t time;              /**< entry time */
    char name[256];            /**< ns/model */
    char manifest[QD_DIGEST_STR_LEN + 1];
    char source[QD_DIGEST_STR_LEN + 1];
    char predicate_type[128];
    char method[64], format[64], calibration[128], converter[64], converter_version[64], verdict[16];
    char created_at[40];
    int weight_bits;           /**< 0 when absent */
    char hardware[256];        /**< comma-separated */
    char key_ids[2 * (QD_KEY_ID_LEN + 1)]; /**< comma-separated signing key ids (at most two kept) */
    char revoked_key[QD_KEY_ID_LEN + 1]; /**< a signer the log revoked before this entry, "" when none */
    uint64_t revoked_at;       /**< the key-revoke entry of revoked_key */
} qd_audit_record;

/** A query: NULL / 0 fields match anything. */
typedef struct qd_audit_query {
    const char *method, *format, *calibration, *converter, *converter_version, *hardware, *key, *verdict,
        *namespace_name;
    int bits;
    int64_t since, until;      /**< entry time bounds, inclusive; 0: open */
} qd_audit_query;

/** The records of a log, indexed in memory (built by reading every PUBLISH entry once). */
typedef struct qd_audit qd_audit;
int qd_audit_load(qd_audit **out, qd_replog *log);
void qd_audit_free(qd_audit *a);
size_t qd_audit_count(const qd_audit *a);
/** @note Borrowed. */
const qd_audit_record *qd_audit_get(const qd_audit *a, size_t i);
/** Call fn for every record matching q, in log order; fn returning non-zero stops with that value. */
int qd_audit_query_run(const qd_audit *a, const qd_audit_query *q, int (*fn)(const qd_audit_record *r, void *payload),
                       void *payload);
/** Output forms of qd_audit_lineage(). */
typedef enum qd_audit_format { QD_AUDIT_JSON = 0, QD_AUDIT_DOT = 1, QD_AUDIT_TREE = 2 } qd_audit_format;
/**
 * Append the lineage of a manifest digest: up (its sources, to the root) or down (what was derived from it),
 * to depth (0: unlimited). @return QD_OK, QD_ENOTFOUND (the digest is in no entry) or QD_ENOMEM
 */
int qd_audit_lineage(qd_buf *out, const qd_audit *a, const qd_digest *digest, bool down, unsigned depth,
                     qd_audit_format fmt);
/** Append one record as a JSON object. */
int qd_audit_record_json(qd_buf *out, const qd_audit_record *r);

#ifdef __cplusplus
}
#endif

#endif
