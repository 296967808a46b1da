/*
 * store_int.h - private to store/: the layout of the LMDB databases and the helpers shared by its files.
 *
 * Databases (one environment, named DBs):
 *   meta        "magic" -> "quantd-store", "schema" -> u32 LE, "created_by" -> version string
 *   chunks      sha256(raw chunk) -> chunk_hdr + data (raw or one zstd frame)
 *   chunk_refs  sha256(raw chunk) -> u64 LE count of blob chunk-list entries naming it (absent: 0)
 *   blobs       sha256(blob) -> blob_hdr + n_chunks * blob_chunk
 *   refs        to(32) || from(32) -> "" : blob `to` is referenced by object `from`
 *   tags, manifests, lineage, jobs: filled by later modules (registry.c, jobs.c).
 *   audit       the audit indexes (store/audit.c): records, (field, value) keys, counts, time, parent -> child.
 * All integers are little-endian (this build only runs on little-endian hosts; checked at compile time).
 */
#ifndef QD_STORE_INT_H
#define QD_STORE_INT_H

#include <pthread.h>
#include <stdint.h>

#include <lmdb.h>

#include "qd/store.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the store layout is little-endian; this host is not"
#endif

/* How a chunk's bytes are kept:
 *   CODEC_RAW    the bytes
 *   CODEC_ZSTD   one zstd frame of the bytes
 *   CODEC_PLANES the bytes seen as 16-bit little-endian words (fp16/bf16 weights), split into two planes: the
 *                low bytes raw (the low mantissa bits are noise), then one zstd frame of the high bytes (sign,
 *                exponent, top mantissa bits: these compress). A chunk may start at an odd offset of its blob, so
 *                the header's `phase` says which bytes are low ones: those at indices i with i % 2 == phase. */
enum { CODEC_RAW = 0, CODEC_ZSTD = 1, CODEC_PLANES = 2 };

/* Bytes a decode buffer needs: a chunk, plus room for the high plane of a CODEC_PLANES chunk. */
#define QD_CHUNK_DECODE_BUF (QD_CHUNK_MAX + QD_CHUNK_MAX / 2)

typedef struct chunk_hdr {
    uint32_t raw_len; /* bytes of content */
    uint8_t codec;    /* CODEC_* */
    uint8_t phase;    /* CODEC_PLANES: index parity of the low bytes; 0 otherwise */
    uint8_t pad[2];
} chunk_hdr;

/* Bytes in the low plane of n bytes split with phase ph. */
#define PLANE_LO_LEN(n, ph) (((n) + 1 - (ph)) / 2)
_Static_assert(sizeof(chunk_hdr) == 8, "chunk_hdr layout");

#define BLOB_MAGIC 0x31424451u /* "QDB1" */

typedef struct blob_hdr {
    uint32_t magic;
    uint32_t n_chunks;
    uint64_t size;
    uint64_t stored;
    int64_t created;
    uint32_t n_compressed;
    uint32_t pad;
} blob_hdr;
_Static_assert(sizeof(blob_hdr) == 40, "blob_hdr layout");

typedef struct blob_chunk {
    uint8_t hash[32];
    uint64_t end; /* offset one past the chunk's last byte in the blob */
} blob_chunk;
_Static_assert(sizeof(blob_chunk) == 40, "blob_chunk layout");

struct qd_store {
    char *path;
    MDB_env *env;
    MDB_dbi db_meta, db_chunks, db_chunk_refs, db_blobs, db_refs;
    MDB_dbi db_tags, db_manifests, db_lineage, db_jobs;
    MDB_dbi db_audit;            /* a read-only open of a store made before it existed gets an empty one: see store.c */
    bool has_audit_db;
    unsigned flags;
    int lock_fd;                 /* the writer lock file, -1 when read-only */
    uint64_t map_max;
    uint64_t batch_bytes;
    int zstd_level;
    /* Every transaction holds map_lock shared; growing the map takes it exclusively (LMDB requires that no
     * transaction of this process be active while mdb_env_set_mapsize runs). */
    pthread_rwlock_t map_lock;
    /* Writers hold put_lock shared from open to commit or free; freeing unreferenced chunks takes it
     * exclusively, so a chunk a writer has counted on cannot disappear under it. */
    pthread_rwlock_t put_lock;
};

/* Set by qd_store__err_mdb when LMDB reported MDB_MAP_FULL on this thread (so the write loop grows the map). */
extern _Thread_local int qd_store__map_full;

/* Translate an LMDB return code into a qd_err with a message. */
int qd_store__err_mdb(int rc, const char *what);

/* Begin a read transaction (takes map_lock shared; qd_store__txn_end releases it). */
int qd_store__read_begin(qd_store *s, MDB_txn **out);
void qd_store__txn_end(qd_store *s, MDB_txn *txn);

/* Run fn inside a write transaction and commit; when the map fills, grow it and run fn again from the start.
 * fn returns QD_OK to commit, anything else to abort. */
typedef int (*qd_store__write_fn)(qd_store *s, MDB_txn *txn, void *payload);
int qd_store__write(qd_store *s, qd_store__write_fn fn, void *payload);

/* Check a blob record and copy out its header and, when chunks is not NULL, its chunk list (free it with qd_free).
 * LMDB values are not aligned, hence the copies. @return QD_OK, QD_ECORRUPT, QD_ENOMEM */
int qd_store__blob_parse(const qd_digest *d, const MDB_val *v, blob_hdr *hdr, blob_chunk **chunks);
void qd_store__blob_info(const qd_digest *d, const blob_hdr *h, qd_blob_info *out);
/* Count the references held on blob d within txn. */
int qd_store__count_referrers(qd_store *s, MDB_txn *txn, const qd_digest *d, uint64_t *out);

/* Chunk reference counts. */
int qd_store__chunk_refs_get(qd_store *s, MDB_txn *txn, const uint8_t hash[32], uint64_t *out);
int qd_store__chunk_refs_add(qd_store *s, MDB_txn *txn, const uint8_t hash[32], int64_t delta, uint64_t *out);

/* Content-defined chunking: the length of the first chunk of p[0..n). `final` says no more data follows; when it
 * is false n must be at least QD_CHUNK_MAX. */
size_t qd_store__cdc_cut(const uint8_t *p, size_t n, int final);

/* Decode a stored chunk value into dst (QD_CHUNK_DECODE_BUF bytes). Sets *raw to the content (dst or into the
 * map). */
int qd_store__chunk_decode(const MDB_val *v, void *dctx, uint8_t *dst, const uint8_t **raw, size_t *raw_len);

int64_t qd_store__now(void);

/* A chunk is kept compressed only when that saves at least 5%, so a stored value shorter than its content (plus
 * the header) is compressed: the codec is known from the value's size without reading the value, which would fault
 * in the chunk's pages (a whole large folio on recent kernels) and count them in our RSS. */
#define CHUNK_IS_COMPRESSED(value_size, raw_len) ((value_size) - sizeof(chunk_hdr) < (raw_len))

/* registry.c, for store/jobs.c: a manifest put and a blob link inside the caller's write transaction. */
struct qd_manifest_desc;
int qd_registry__put_in_txn(qd_store *s, MDB_txn *txn, const char *repo, const char *tag,
                            const struct qd_manifest_desc *m, const qd_digest *d);
int qd_registry__link_in_txn(qd_store *s, MDB_txn *txn, const char *repo, const qd_digest *d);

/* registry.c, for store/audit.c: a manifest's index record (strings point into the map; valid during txn), and the
 * first repository (byte order) that holds a manifest. */
struct qd_manifest_info;
int qd_registry__manifest_record(MDB_txn *txn, qd_store *s, const qd_digest *d, struct qd_manifest_info *info,
                                 const uint8_t **blobs, uint32_t *n_blobs);
int qd_registry__first_repo(MDB_txn *txn, qd_store *s, const qd_digest *d, char *repo, size_t cap);

/* audit.c, inside a caller's write transaction: index an artifact (replacing an older entry; writes its lineage
 * edge both ways when it names a source), record a lineage edge both ways, and drop the entry of a manifest that
 * goes away (or of the artifact whose bundle manifest goes away: subject names it). */
struct qd_audit_entry;
int qd_audit__index_in_txn(qd_store *s, MDB_txn *txn, const struct qd_audit_entry *e);
int qd_audit__edge_in_txn(qd_store *s, MDB_txn *txn, const qd_digest *child, const qd_digest *parent);
int qd_audit__forget_in_txn(qd_store *s, MDB_txn *txn, const qd_digest *manifest, const qd_digest *subject);

#endif
