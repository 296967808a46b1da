/*
 * store.h - the content-addressed store: blobs named by SHA-256, kept as content-defined chunks in one LMDB
 * environment.
 *
 * A store is a directory holding one LMDB environment (data.mdb, lock.mdb) and a writer lock file. Blobs are
 * immutable byte strings named by their SHA-256. Each blob is cut into content-defined chunks (FastCDC, about
 * 1 MiB on average); each distinct chunk is stored once, zstd-compressed only when that saves at least 5%.
 *
 * Guarantees
 * - A blob becomes visible in exactly one write transaction, after its digest is known (and matched the expected
 *   one, when given). A crash at any moment leaves either the whole blob or no trace of it except unreferenced
 *   chunks, which qd_store_gc() removes.
 * - One writing process at a time (a lock file; a second writer gets QD_EBUSY). Inside that process any number of
 *   threads may write; LMDB serialises their transactions. Readers never wait for writers.
 * - Blob references (qd_store_ref_add) are counted: a referenced blob cannot be removed.
 *
 * Threads: a qd_store may be shared by all threads of a process. A qd_blob_writer or qd_blob_reader belongs to one
 * thread at a time. Open a store at most once per process (an LMDB rule), and never use it across fork().
 */
#ifndef QD_STORE_H
#define QD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/digest.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_store qd_store;
typedef struct qd_blob_writer qd_blob_writer;
typedef struct qd_blob_reader qd_blob_reader;

/** The schema version this build writes; a store with a larger one is refused (QD_EVERSION). */
#define QD_STORE_SCHEMA_VERSION 1

/** Content-defined chunking parameters (bytes). Changing them never breaks a store, only dedup with old chunks. */
#define QD_CHUNK_MIN (256u * 1024u)
#define QD_CHUNK_AVG (1024u * 1024u)
#define QD_CHUNK_MAX (4u * 1024u * 1024u)

enum {
    QD_STORE_RDONLY = 1 << 0, /**< open for reading only; no writer lock is taken */
    QD_STORE_CREATE = 1 << 1  /**< create the store when the directory is absent or empty */
};

#define QD_STORE_OPTIONS_VERSION 1

typedef struct qd_store_options {
    unsigned version;   /**< QD_STORE_OPTIONS_VERSION */
    unsigned flags;     /**< QD_STORE_RDONLY, QD_STORE_CREATE */
    uint64_t map_size;  /**< initial LMDB map size (address space, not disk); 0: 64 GiB */
    uint64_t map_max;   /**< the map never grows past this; 0: 16 TiB */
    uint64_t batch_bytes; /**< new chunk bytes per intermediate write transaction; 0: 32 MiB */
    int zstd_level;     /**< 0: 1 (fastest) */
} qd_store_options;

#define QD_STORE_OPTIONS_INIT {QD_STORE_OPTIONS_VERSION, 0, 0, 0, 0, 0}

/**
 * Open (and with QD_STORE_CREATE, create) the store in dir.
 * @param[out] out   the store; close with qd_store_close()
 * @param[in]  dir   the store directory
 * @param[in]  opts  options, or NULL for the defaults (read-write, no create)
 * @return QD_OK; QD_ENOTFOUND (no store there and no QD_STORE_CREATE); QD_ENOTSTORE (the directory holds
 *         something else); QD_EVERSION (made by a newer quantd); QD_EBUSY (another process is writing it);
 *         QD_EIO.
 */
int qd_store_open(qd_store **out, const char *dir, const qd_store_options *opts);

/** Close the store. Every reader and writer must be closed first. Accepts NULL. */
void qd_store_close(qd_store *s);

/** The directory the store was opened on. @note borrowed for the store's lifetime. */
const char *qd_store_path(const qd_store *s);

/* ---------------------------------------------------------------------------------------------------------------
 * Writing blobs
 * ------------------------------------------------------------------------------------------------------------- */

/**
 * Start writing a new blob. Data is chunked, hashed and stored as it arrives; nothing is visible until
 * qd_blob_writer_commit().
 * @return QD_OK, QD_EINVAL (read-only store), QD_ENOMEM
 */
int qd_blob_writer_open(qd_blob_writer **out, qd_store *s);

/** Append bytes. @return QD_OK, QD_EFULL (map or disk full), QD_EIO */
int qd_blob_writer_write(qd_blob_writer *w, const void *data, size_t len);

/** Bytes written so far. */
uint64_t qd_blob_writer_size(const qd_blob_writer *w);

/**
 * Finish: compute the digest, check it against expect (when not NULL), and publish the blob in one transaction.
 * Committing a blob that already exists succeeds and stores nothing new.
 * @param[in]  expect  the digest the content must have, or NULL
 * @param[out] out     the blob's digest (may be NULL)
 * @return QD_OK, QD_EDIGEST (content does not match expect; nothing is published), QD_EFULL, QD_EIO
 * @note Whatever the result, the writer is finished: free it with qd_blob_writer_free().
 */
int qd_blob_writer_commit(qd_blob_writer *w, const qd_digest *expect, qd_digest *out);

/** Free the writer; an uncommitted blob is abandoned (its new chunks become garbage). Accepts NULL. */
void qd_blob_writer_free(qd_blob_writer *w);

typedef void (*qd_progress_fn)(uint64_t done, uint64_t total, void *payload);

#define QD_PUT_OPTIONS_VERSION 1
typedef struct qd_put_options {
    unsigned version;          /**< QD_PUT_OPTIONS_VERSION */
    const qd_digest *expect;   /**< content must have this digest, or NULL */
    int64_t expect_size;       /**< the stream must have exactly this many bytes; -1: unknown */
    qd_progress_fn progress;   /**< called as bytes are consumed, or NULL */
    void *progress_payload;
} qd_put_options;
#define QD_PUT_OPTIONS_INIT {QD_PUT_OPTIONS_VERSION, NULL, -1, NULL, NULL}

/**
 * Store everything read from fd (a file, pipe or socket) as one blob.
 * For a regular file the size is taken from fstat() and a file that ends early is QD_ETRUNCATED.
 * @return QD_OK, QD_EDIGEST, QD_ETRUNCATED (fewer bytes than expect_size), QD_EINVAL (more bytes than
 *         expect_size), QD_EFULL, QD_EIO
 */
int qd_store_put_fd(qd_store *s, int fd, const qd_put_options *opts, qd_digest *out);

/** A pull source: fill buf with up to cap bytes, set *got (0 at end of stream). @return QD_OK or an error. */
typedef int (*qd_read_fn)(void *buf, size_t cap, size_t *got, void *payload);

/** Store everything a callback yields as one blob. Same results as qd_store_put_fd(). */
int qd_store_put_cb(qd_store *s, qd_read_fn read, void *payload, const qd_put_options *opts, qd_digest *out);

/** Store a buffer as one blob. */
int qd_store_put_buf(qd_store *s, const void *data, size_t len, const qd_digest *expect, qd_digest *out);

/* ---------------------------------------------------------------------------------------------------------------
 * Reading blobs
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct qd_blob_info {
    qd_digest digest;
    uint64_t size;          /**< bytes of content */
    uint64_t stored_bytes;  /**< bytes its chunks occupy in the store (shared chunks counted in each blob) */
    uint32_t n_chunks;      /**< chunks, counting repeats */
    uint32_t n_compressed;  /**< of which stored zstd-compressed */
    uint64_t n_referrers;   /**< references held on it (qd_store_ref_add) */
    int64_t created;        /**< unix seconds of the commit that published it */
} qd_blob_info;

/** @return QD_OK, QD_ENOTFOUND */
int qd_store_stat(qd_store *s, const qd_digest *d, qd_blob_info *out);

/** @return true when the blob is there. */
bool qd_store_has(qd_store *s, const qd_digest *d);

/** Call fn for every blob in digest order; a non-zero return from fn stops the walk and is returned. */
int qd_store_list(qd_store *s, int (*fn)(const qd_blob_info *info, void *payload), void *payload);

/**
 * Open a reader on a blob. The reader holds one read transaction (a consistent snapshot): the blob stays
 * readable until qd_blob_reader_close() even if it is removed meanwhile. Keep readers short-lived: an open
 * reader keeps LMDB from reusing pages.
 * @return QD_OK, QD_ENOTFOUND, QD_ECORRUPT (malformed record)
 */
int qd_blob_reader_open(qd_blob_reader **out, qd_store *s, const qd_digest *d);

uint64_t qd_blob_reader_size(const qd_blob_reader *r);

/** Move to byte offset off (<= size). @return QD_OK, QD_EINVAL */
int qd_blob_reader_seek(qd_blob_reader *r, uint64_t off);

/**
 * The next piece of the blob from the current offset, up to max bytes: *data points into the store's map for a
 * raw chunk (no copy) or into the reader's buffer for a compressed one. *len is 0 at the end.
 * @note *data is valid until the next call on this reader or its close.
 * @return QD_OK, QD_ECORRUPT (missing or malformed chunk)
 */
int qd_blob_reader_next(qd_blob_reader *r, size_t max, const void **data, size_t *len);

/**
 * Whether the last piece qd_blob_reader_next() gave points into the store's map (a raw chunk). Such a piece stays
 * valid until qd_blob_reader_close(), not only until the next call, so it may be referenced rather than copied
 * (the daemon hands it to the socket's buffer by reference).
 */
bool qd_blob_reader_mapped(const qd_blob_reader *r);

/** Close the reader and end its transaction. Accepts NULL. */
void qd_blob_reader_close(qd_blob_reader *r);

/** A push sink: consume len bytes. @return QD_OK, or an error that stops the read. */
typedef int (*qd_write_fn)(const void *data, size_t len, void *payload);

/**
 * Stream bytes [off, off+len) of a blob to sink (len UINT64_MAX: to the end).
 * @return QD_OK, QD_ENOTFOUND, QD_EINVAL (range outside the blob), QD_ECORRUPT, or the sink's error
 */
int qd_store_get(qd_store *s, const qd_digest *d, uint64_t off, uint64_t len, qd_write_fn sink, void *payload);

/* ---------------------------------------------------------------------------------------------------------------
 * References, removal, garbage collection and checking
 * ------------------------------------------------------------------------------------------------------------- */

/**
 * Record that object `from` (a manifest, a job, another blob...) references blob `to`. Idempotent.
 * @return QD_OK, QD_ENOTFOUND (no blob `to`)
 */
int qd_store_ref_add(qd_store *s, const qd_digest *from, const qd_digest *to);

/** Drop a reference. @return QD_OK, QD_ENOTFOUND (no such reference) */
int qd_store_ref_del(qd_store *s, const qd_digest *from, const qd_digest *to);

/**
 * Remove a blob. Its chunks lose a reference each; chunks nobody references are freed at once when no write is
 * in flight, otherwise by the next qd_store_gc().
 * @return QD_OK, QD_ENOTFOUND, QD_EREFERENCED (something still references it)
 */
int qd_store_remove(qd_store *s, const qd_digest *d);

typedef struct qd_gc_stats {
    uint64_t chunks_freed;
    uint64_t bytes_freed;   /**< stored bytes of the freed chunks */
} qd_gc_stats;

/** Free every chunk that no blob references. Waits for in-flight writes of this process to finish. */
int qd_store_gc(qd_store *s, qd_gc_stats *out);

enum { QD_FSCK_REPAIR = 1 << 0 };

/** What fsck found: a problem (the store is damaged) or garbage (unreferenced chunks, harmless). */
typedef enum qd_fsck_kind {
    QD_FSCK_PROBLEM = 0,
    QD_FSCK_GARBAGE = 1
} qd_fsck_kind;

typedef struct qd_fsck_stats {
    uint64_t chunks;          /**< chunks re-hashed */
    uint64_t blobs;           /**< blobs re-hashed */
    uint64_t references;      /**< blob references checked */
    uint64_t bytes_hashed;
    uint64_t problems;
    uint64_t garbage_chunks;
    uint64_t garbage_bytes;
    uint64_t repaired;        /**< garbage chunks dropped with QD_FSCK_REPAIR */
} qd_fsck_stats;

/** One finding: kind, the object's digest (or NULL), and a sentence. */
typedef void (*qd_fsck_fn)(qd_fsck_kind kind, const qd_digest *object, const char *what, void *payload);

/**
 * Re-hash every chunk and every blob, check every chunk reference count and every blob reference; report each
 * finding through fn. With QD_FSCK_REPAIR, drop unreferenced chunks afterwards.
 * @return QD_OK when no problem was found (garbage is not a problem), QD_ECORRUPT when some were, or an error
 *         that stopped the check.
 */
int qd_store_fsck(qd_store *s, unsigned flags, qd_fsck_fn fn, void *payload, qd_fsck_stats *out);

typedef struct qd_store_stats {
    uint64_t blobs;
    uint64_t chunks;
    uint64_t logical_bytes;   /**< sum of blob sizes */
    uint64_t chunk_bytes;     /**< stored bytes of all chunks (each distinct chunk once) */
    uint64_t map_size;        /**< current LMDB map size */
    uint64_t file_bytes;      /**< size of data.mdb */
    uint32_t schema_version;
} qd_store_stats;

/** Totals over the whole store. */
int qd_store_stats_get(qd_store *s, qd_store_stats *out);

#ifdef __cplusplus
}
#endif
#endif
