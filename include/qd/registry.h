/*
 * registry.h - registry records on top of the blob store: manifests, tags, referrers, repository membership
 * of blobs, and API tokens.
 *
 * Why: the daemon speaks the OCI Distribution API, whose objects are repositories (`<namespace>/<model>`), tags
 * and manifests that reference blobs. The store keeps the bytes; this module keeps the index that gives them names,
 * in the same LMDB environment, so that every change a user can observe is one transaction.
 *
 * What is kept (layout in store/registry.c):
 * - a manifest's raw bytes as an ordinary blob (so its digest is its blob name), plus an index record: media type,
 *   artifactType, subject, size, the blobs it references, the annotations as JSON text;
 * - which repositories hold each manifest and each blob (cross-repository mount and authorization use this);
 * - tags per repository, in byte order (the order the tags list pages through);
 * - the referrers index: subject -> manifests whose `subject` names it;
 * - store references (the refs database) from a manifest to its own bytes and to every blob it lists, so that a
 *   referenced layer cannot be removed while the manifest exists.
 * - API tokens, stored only as SHA-256 hashes, with their scopes.
 *
 * This module does not parse JSON: the caller (the daemon) parses a manifest and passes what it found.
 * Repository names and tags are checked by the caller against the OCI grammar; here they are opaque strings
 * without NUL bytes, at most QD_REPO_MAX / QD_TAG_MAX bytes.
 *
 * Threads: like the store, any thread may call any function; writes are serialised by LMDB.
 */
#ifndef QD_REGISTRY_H
#define QD_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"
#include "qd/digest.h"
#include "qd/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_REPO_MAX 255
#define QD_TAG_MAX 128
#define QD_MEDIA_TYPE_MAX 255

/** The OCI repository name grammar: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* components joined by '/', at most
 *  QD_REPO_MAX bytes. */
bool qd_registry_name_valid(const char *name);

/** The OCI tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
bool qd_registry_tag_valid(const char *tag);

/** What the caller found in a manifest it is about to store. */
typedef struct qd_manifest_desc {
    const void *data;            /**< the raw manifest bytes, stored as they are */
    size_t len;
    const char *media_type;      /**< mediaType (from the document or the Content-Type header); not NULL */
    const char *artifact_type;   /**< artifactType, else config.mediaType for image manifests, or NULL */
    const char *annotations;     /**< the annotations object as compact JSON text, or NULL */
    const qd_digest *subject;    /**< the subject descriptor's digest, or NULL */
    const qd_digest *blobs;      /**< config and layer digests: each must be a blob of the repository */
    size_t n_blobs;
    const qd_digest *children;   /**< for an index: manifests it lists, each must be a manifest of the repository */
    size_t n_children;
    /** when not NULL (a signature bundle whose statement has the variant predicate), the artifact it describes is
     *  indexed for audit in the same transaction (qd/audit.h): manifest, bundle, repo and created are filled in
     *  by the store (the subject, this manifest, the repository, the first push time) */
    const struct qd_audit_entry *audit;
} qd_manifest_desc;

/** The index record of a stored manifest. */
typedef struct qd_manifest_info {
    qd_digest digest;
    uint64_t size;                              /**< bytes of the raw manifest */
    int64_t created;                            /**< unix seconds of the first push */
    bool has_subject;
    qd_digest subject;
    char media_type[QD_MEDIA_TYPE_MAX + 1];
    char artifact_type[QD_MEDIA_TYPE_MAX + 1];  /**< "" when none */
    const char *annotations;                    /**< compact JSON or NULL; borrowed, valid only inside a callback */
} qd_manifest_info;

/**
 * Store a manifest in a repository, and when tag is not NULL point the tag at it, in one transaction.
 * The raw bytes become a blob first (invisible to the API until the transaction publishes the index record).
 * @param[out] out   the manifest's digest (may be NULL)
 * @param[in]  expect  when not NULL (a push by digest), the bytes must hash to it
 * @return QD_OK; QD_EDIGEST (expect does not match); QD_ENOTFOUND (a listed blob or child manifest is not in the
 *         repository: the message names it, and nothing is stored); QD_EINVAL; QD_EFULL
 */
int qd_registry_manifest_put(qd_digest *out, qd_store *s, const char *repo, const char *tag,
                             const qd_manifest_desc *m, const qd_digest *expect);

/**
 * Resolve a tag, or check a digest, in a repository. ref is a tag or "sha256:<hex>".
 * @param[out] info   the index record (annotations is NULL)
 * @param[out] bytes  when not NULL, the raw manifest is appended to it
 * @return QD_OK, QD_ENOTFOUND (no such tag, or the repository does not hold that manifest), QD_EINVAL
 */
int qd_registry_manifest_get(qd_manifest_info *info, qd_buf *bytes, qd_store *s, const char *repo, const char *ref);

/**
 * Remove a manifest from a repository, with every tag of the repository that points at it. When no repository
 * holds it any more, its index record, referrer entries and store references go too, and its raw blob is removed.
 * @return QD_OK, QD_ENOTFOUND
 */
int qd_registry_manifest_delete(qd_store *s, const char *repo, const qd_digest *d);

/** Remove one tag (the manifest stays). @return QD_OK, QD_ENOTFOUND */
int qd_registry_tag_delete(qd_store *s, const char *repo, const char *tag);

/**
 * List the tags of a repository in byte order, after `last` (exclusive; NULL or "" from the start), at most n
 * (0: no limit). fn is called per tag inside a read transaction; a non-zero return stops the walk.
 * @param[out] more  set to true when tags remain after the last one given (may be NULL)
 * @return QD_OK, QD_ENOTFOUND (the repository is unknown), or fn's return
 */
int qd_registry_tags_list(bool *more, qd_store *s, const char *repo, const char *last, size_t n,
                          int (*fn)(const char *tag, const qd_digest *d, void *payload), void *payload);

/**
 * The manifests of a repository whose subject is `subject`, optionally only those with the given artifactType.
 * fn is called per referrer inside a read transaction (info->annotations is valid during the call).
 * An unknown subject is not an error: fn is simply not called.
 * @return QD_OK or fn's non-zero return
 */
int qd_registry_referrers(qd_store *s, const char *repo, const qd_digest *subject, const char *artifact_type,
                          int (*fn)(const qd_manifest_info *info, void *payload), void *payload);

/** Record that a repository holds a blob (after an upload or a mount). @return QD_OK, QD_ENOTFOUND (no blob) */
int qd_registry_blob_link(qd_store *s, const char *repo, const qd_digest *d);

/** @return true when the repository holds the blob (and the store has it). */
bool qd_registry_blob_in_repo(qd_store *s, const char *repo, const qd_digest *d);

/**
 * Remove a blob from a repository. Refused while a manifest of that repository references it. When no repository
 * holds it any more and nothing references it, the blob is removed from the store.
 * @return QD_OK, QD_ENOTFOUND, QD_EREFERENCED
 */
int qd_registry_blob_unlink(qd_store *s, const char *repo, const qd_digest *d);

/** Whether any repository holds d, as a blob or as a manifest. *held is true when the lookup fails.
 *  @return QD_OK or a store error */
int qd_registry_blob_held(bool *held, qd_store *s, const qd_digest *d);

/** @return true when the repository holds at least one blob, manifest or tag. */
bool qd_registry_repo_exists(qd_store *s, const char *repo);

/* ---------------------------------------------------------------------------------------------------------------
 * API tokens: "qdt_" + 64 hex digits (256 random bits). Only SHA-256(token) is stored.
 * ------------------------------------------------------------------------------------------------------------- */

#define QD_TOKEN_LEN 68       /**< characters of a token, without the NUL */
#define QD_TOKEN_ID_LEN 16    /**< hex digits of a token id (the first 8 bytes of its hash) */
#define QD_TOKEN_SCOPES_MAX 1023
#define QD_TOKEN_NAME_MAX 63

typedef struct qd_token_info {
    char id[QD_TOKEN_ID_LEN + 1];            /**< public handle, used to revoke */
    char name[QD_TOKEN_NAME_MAX + 1];         /**< a label for people */
    char scopes[QD_TOKEN_SCOPES_MAX + 1];     /**< e.g. "pull:org/STAR,push:org/model": scope:pattern, comma separated (STAR = *) */
    int64_t created;
} qd_token_info;

/**
 * Create a token with the given scopes (the caller checks their syntax). The token itself is returned only here.
 * @param[out] token  QD_TOKEN_LEN + 1 bytes
 * @return QD_OK, QD_EINVAL (name or scopes too long), QD_EIO (no randomness)
 */
int qd_registry_token_create(char *token, qd_token_info *info, qd_store *s, const char *name, const char *scopes);

/** Look up a presented token. @return QD_OK, QD_ENOTFOUND (unknown or revoked) */
int qd_registry_token_lookup(qd_token_info *out, qd_store *s, const char *token);

/** Call fn for every token (by id order of their hashes). */
int qd_registry_token_list(qd_store *s, int (*fn)(const qd_token_info *t, void *payload), void *payload);

/** Revoke by id (or an unambiguous prefix of at least 6 digits). @return QD_OK, QD_ENOTFOUND, QD_EINVAL */
int qd_registry_token_revoke(qd_store *s, const char *id);

enum { QD_TOKEN_SCOPE_PULL = 1, QD_TOKEN_SCOPE_PUSH = 2, QD_TOKEN_SCOPE_QUANTIZE = 4, QD_TOKEN_SCOPE_ADMIN = 8 };

/**
 * Check a scope list: SCOPE:PATTERN[,SCOPE:PATTERN...], SCOPE one of pull, push, quantize, admin, PATTERN a shell
 * glob over repository names in which a star also matches a slash. @return QD_OK, QD_EINVAL
 */
int qd_token_scopes_validate(const char *scopes);

/** Does the scope list grant every bit of need on repo (NULL: on some repository)? push implies pull; admin
 *  implies everything. */
bool qd_token_scopes_allow(const char *scopes, const char *repo, unsigned need);

/* ---------------------------------------------------------------------------------------------------------------
 * Quantize jobs (store/jobs.c), in the `jobs` database, and lineage edges in the `lineage` database.
 * A job record is a JSON object text owned by the daemon (this module does not parse it); ids are 16 hex digits.
 *   jobs     'J' id          -> record JSON
 *            'D' dedup(32)   -> id      (an identical request: same source digest, recipe, calibration, converter)
 *   lineage  child(32) parent(32) -> "" (a variant manifest -> the manifest it was made from); the reverse
 *            direction is in the audit database (qd/audit.h, docs/STORE.md)
 * ------------------------------------------------------------------------------------------------------------- */

#define QD_JOB_ID_LEN 16

/** Write (create or replace) a job record. @return QD_OK, QD_EINVAL, QD_EFULL */
int qd_job_put(qd_store *s, const char *id, const char *json);

/** Append a job's record to out. @return QD_OK, QD_ENOTFOUND */
int qd_job_get(qd_buf *out, qd_store *s, const char *id);

/** Call fn for every job (id order) inside a read transaction; a non-zero return stops the walk. */
int qd_job_list(qd_store *s, int (*fn)(const char *id, const char *json, size_t len, void *payload), void *payload);

/**
 * Deduplicated submit, in one transaction: when dedup names a job for which keep(record) says true, its id is
 * copied to existing_id (QD_JOB_ID_LEN + 1 bytes) and nothing is written; otherwise the record is stored under id
 * and dedup points at it. @return QD_OK (stored), QD_EEXISTS (existing_id set), QD_EFULL
 */
int qd_job_submit(char *existing_id, qd_store *s, const qd_digest *dedup, const char *id, const char *json,
                  bool (*keep)(const char *json, size_t len, void *payload), void *payload);

/** One manifest to publish: its bytes must already be a blob (qd_store_put_buf); tag may be NULL. */
typedef struct qd_publish_item {
    const qd_manifest_desc *m;
    qd_digest digest;
    const char *tag;
} qd_publish_item;

/**
 * Publish a job's result in ONE transaction: link the blobs to repo, store the manifests (and their tags) in
 * order (with their audit entries, qd_manifest_desc.audit), record the lineage edge child -> parent and
 * parent -> child (when child is not NULL), and replace the job record.
 * @return QD_OK, QD_ENOTFOUND (a blob vanished), QD_EINVAL, QD_EFULL; nothing is visible unless QD_OK
 */
int qd_registry_publish(qd_store *s, const char *repo, const qd_digest *blobs, size_t n_blobs,
                        const qd_publish_item *items, size_t n_items, const qd_digest *child,
                        const qd_digest *parent, const char *job_id, const char *job_json);

/** The parent recorded for a child manifest. @return QD_OK, QD_ENOTFOUND */
int qd_lineage_parent(qd_digest *parent, qd_store *s, const qd_digest *child);

/** Totals for metrics. */
typedef struct qd_registry_stats {
    uint64_t manifests;
    uint64_t tags;
} qd_registry_stats;
int qd_registry_stats_get(qd_registry_stats *out, qd_store *s);

#ifdef __cplusplus
}
#endif
#endif
