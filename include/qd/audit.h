/*
 * audit.h - LMDB audit indexes over published artifacts: who made what, from what, with which converter, for which
 * hardware, signed by which key, with which verdict (store/audit.c; layout in docs/STORE.md).
 *
 * Why: an auditor asks "which published variants did converter version V make?" or "what did key K sign?" and
 * expects an answer in milliseconds from a store holding millions of artifacts. The signed statements hold the
 * answer but reading them all is a scan. So each publish writes, in the SAME LMDB transaction that makes the
 * artifact visible, one record per artifact and one index key per (field, value), ordered so that every query is
 * a cursor range scan: field, value, created time, digest. A query drives from the most selective of its fields
 * (a count per (field, value) is kept beside the keys) and checks the other fields by point lookups of their
 * keys. Lineage is indexed both ways: child -> parent (the `lineage` database) and parent -> child (here).
 *
 * What is indexed, per artifact (the variant manifest named by a bundle's statement):
 *   method, format, bits, calibration class, converter name, converter version, target hardware (each entry of the
 *   list), signing key id (each signature), validation verdict, namespace (every '/'-prefix of the repository,
 *   and the repository itself) and the publish time (unix seconds).
 *
 * The index is derived data: qd_audit_index_rebuild() makes it again from the stored bundle manifests and their
 * bundles, and gives the same bytes as the incremental writes did (the tests check this).
 *
 * Threads: any thread may call any function; writes are serialised by LMDB like the rest of the store.
 */
#ifndef QD_AUDIT_H
#define QD_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"
#include "qd/digest.h"
#include "qd/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_AUDIT_STR_MAX 127  /**< bytes of one indexed text value (method, format, ...) */
#define QD_AUDIT_LIST_MAX 8   /**< hardware targets and signing keys kept per artifact */
#define QD_AUDIT_KEY_MAX 64   /**< bytes of a signing key id (hex sha256 of the public key) */
#define QD_AUDIT_DEPTH_MAX 16 /**< deepest lineage walk */
#define QD_AUDIT_LIMIT_MAX 1000 /**< most results per query page */
#define QD_AUDIT_CURSOR_LEN 96 /**< most bytes of a page cursor ("CREATED.HEX"), without the NUL */

/** One published artifact as the index keeps it. Strings are NUL-terminated, "" when absent. */
typedef struct qd_audit_entry {
    qd_digest manifest;                  /**< the artifact: the variant manifest the statement names */
    bool has_bundle;
    qd_digest bundle;                    /**< the bundle manifest (referrer) that carried the statement */
    bool has_source;
    qd_digest source;                    /**< predicate.source: the checkpoint it was made from (a lineage edge) */
    int64_t created;                     /**< publish time, unix seconds (the bundle manifest's first push) */
    int bits;                            /**< recipe.weight_bits; 0 when unknown */
    char repo[256];                      /**< the repository it was published in (namespace/model) */
    char method[QD_AUDIT_STR_MAX + 1];
    char format[QD_AUDIT_STR_MAX + 1];
    char calibration[QD_AUDIT_STR_MAX + 1];
    char converter[QD_AUDIT_STR_MAX + 1];
    char converter_version[QD_AUDIT_STR_MAX + 1];
    char verdict[QD_AUDIT_STR_MAX + 1];
    char created_at[40];                 /**< predicate.created_at as written (not indexed) */
    size_t n_hardware;
    char hardware[QD_AUDIT_LIST_MAX][QD_AUDIT_STR_MAX + 1];
    size_t n_keys;
    char keys[QD_AUDIT_LIST_MAX][QD_AUDIT_KEY_MAX + 1]; /**< signing key ids of the bundle's signatures */
} qd_audit_entry;

/**
 * Fill an entry from a Sigstore bundle (or a bare DSSE envelope) whose statement has the
 * https://quantd.dev/variant/v1 predicate: subject manifest, source, recipe, calibration, converter, hardware,
 * verdict, key ids. manifest, bundle, repo and created are left for the caller (the bundle does not know them).
 * @return QD_OK; QD_EINVAL (not a bundle, not a variant statement, or a value too long: the message says which)
 */
int qd_audit_entry_from_bundle(qd_audit_entry *out, const void *bundle, size_t len);

/**
 * Index one artifact in its own write transaction (the benchmark and tests use this; publishes use the form
 * inside their transaction, store-internal). An artifact indexed before is replaced.
 * @return QD_OK, QD_EINVAL (an empty repository, a bad value), QD_EFULL
 */
int qd_audit_index_put(qd_store *s, const qd_audit_entry *e);

/**
 * Index many artifacts in one write transaction (bulk loads). @return as qd_audit_index_put
 */
int qd_audit_index_put_many(qd_store *s, const qd_audit_entry *e, size_t n);

/** Remove an artifact's index entries (not its lineage edges). @return QD_OK, QD_ENOTFOUND */
int qd_audit_index_remove(qd_store *s, const qd_digest *manifest);

/** The indexed record of an artifact. @return QD_OK, QD_ENOTFOUND */
int qd_audit_index_get(qd_audit_entry *out, qd_store *s, const qd_digest *manifest);

/** A query: NULL / 0 fields match anything; all given fields must match (a conjunction). */
typedef struct qd_audit_filter {
    const char *method, *format, *calibration, *converter, *converter_version, *hardware, *key, *verdict;
    const char *namespace_name; /**< a repository or a '/'-prefix of one ("org", "org/model") */
    int bits;                   /**< 0: any */
    int64_t since, until;       /**< publish time bounds, inclusive; until 0: open */
    size_t limit;               /**< 1..QD_AUDIT_LIMIT_MAX */
    const char *cursor;         /**< from a previous page's next_cursor, or NULL / "" from the start */
    /** when not NULL, only entries it returns true for are given (and counted against limit) */
    bool (*allow)(const char *repo, void *payload);
    void *allow_payload;
} qd_audit_filter;

/** What a query did. */
typedef struct qd_audit_page {
    size_t returned;                       /**< entries given to fn */
    size_t scanned;                        /**< index keys read */
    char driver[24];                       /**< the field whose index drove the scan ("time" with no field) */
    bool more;                             /**< more results may follow: call again with next_cursor */
    char next_cursor[QD_AUDIT_CURSOR_LEN + 1];
} qd_audit_page;

/**
 * Run a query: results come in (created, digest) order, each given to fn inside a read transaction.
 * @return QD_OK, QD_EINVAL (bad limit, bits, time bounds or cursor) or fn's non-zero return
 */
int qd_audit_index_query(qd_audit_page *page, qd_store *s, const qd_audit_filter *f,
                         int (*fn)(const qd_audit_entry *e, void *payload), void *payload);

/** One node of a lineage walk. */
typedef struct qd_audit_node {
    qd_digest digest;
    unsigned depth;         /**< 0 for the start */
    bool has_from;
    qd_digest from;         /**< the node it was reached from (the edge: from -> digest in walk order) */
    bool indexed;           /**< entry is valid (the digest is an indexed artifact) */
    qd_audit_entry entry;
} qd_audit_node;

/**
 * Walk the lineage of a manifest: up (what it was made from, to the root) or down (what was made from it),
 * breadth first to depth (1..QD_AUDIT_DEPTH_MAX), each node once. fn gets every node, the start first.
 * @param[out] truncated  set when more than max_nodes nodes were reachable (may be NULL)
 * @return QD_OK, QD_ENOTFOUND (the digest is neither indexed nor in any lineage edge), QD_EINVAL, fn's return
 */
int qd_audit_index_lineage(bool *truncated, qd_store *s, const qd_digest *start, bool down, unsigned depth,
                           size_t max_nodes, int (*fn)(const qd_audit_node *n, void *payload), void *payload);

/**
 * Rebuild the indexes from the stored manifests: every manifest whose artifactType is the Sigstore bundle type and
 * whose subject is set has its bundle read and indexed (those that are not variant statements are skipped and
 * counted); parent -> child edges are rebuilt from the lineage database. Runs in batches of write transactions;
 * afterwards the index reads as if every publish had written it.
 * @param[out] indexed  artifacts indexed (may be NULL)
 * @param[out] skipped  bundle manifests that carried no variant statement (may be NULL)
 * @return QD_OK, QD_EFULL, QD_ECORRUPT
 */
int qd_audit_index_rebuild(qd_store *s, size_t *indexed, size_t *skipped);

/** Rebuild when the store has no index yet (made by a quantd without one). @return as rebuild */
int qd_audit_index_ensure(qd_store *s);

/** SHA-256 over every key and value of the audit index in order (tests compare rebuilds with it). */
int qd_audit_index_checksum(qd_digest *out, qd_store *s);

/** Append an entry as a JSON object (schemas/audit-entry.schema.json). @return QD_OK, QD_ENOMEM */
int qd_audit_entry_json(qd_buf *out, const qd_audit_entry *e);

#ifdef __cplusplus
}
#endif
#endif
