/*
 * blob_write.c - streaming a blob into the store.
 *
 * Data flows: caller -> whole-blob SHA-256 -> stage buffer -> content-defined cut -> chunk SHA-256 -> (known
 * chunk? skip) -> compress or not -> batch -> one write transaction per batch -> final transaction that publishes
 * the blob record and counts the chunk references. Until that final transaction the new chunks have no
 * references: a crash leaves them as garbage for qd_store_gc(), never a half-visible blob.
 *
 * Memory is bounded by the stage (16 MiB) plus one batch (batch_bytes plus one chunk), whatever the blob's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "store_int.h"

#define STAGE_CAP (16u << 20)
#define SAMPLE_LEN (64u << 10)

typedef struct pending {
    uint8_t hash[32];
    uint32_t raw_len;
    uint32_t codec;
    size_t off; /* into the batch buffer */
    size_t len; /* stored bytes */
} pending;

struct qd_blob_writer {
    qd_store *s;
    qd_sha256 *whole;
    qd_sha256 *chunk_h;
    uint8_t *stage;
    size_t stage_off, stage_len;
    uint64_t size;
    /* the blob's chunk list */
    blob_chunk *list;
    size_t n_list, cap_list;
    /* the batch of new chunks not yet written */
    uint8_t *batch;
    size_t batch_len, batch_cap;
    pending *pend;
    size_t n_pend, cap_pend;
    /* chunks this writer wrote (to free them again if it is abandoned) */
    uint8_t (*fresh)[32];
    size_t n_fresh, cap_fresh;
    ZSTD_CCtx *cctx;
    MDB_txn *rtxn; /* a reset read transaction, renewed for each existence check */
    int finished;
    int holds_put_lock;
    int failed; /* a write failed: the writer can only be freed */
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t ncap;
    void *np;
    if (need <= *cap)
        return QD_OK;
    ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    np = qd_reallocarray(*p, ncap, elem);
    if (!np)
        return QD_ENOMEM;
    *p = np;
    *cap = ncap;
    return QD_OK;
}

int qd_blob_writer_open(qd_blob_writer **out, qd_store *s)
{
    qd_blob_writer *w;
    int rc;

    *out = NULL;
    if (s->flags & QD_STORE_RDONLY)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "the store %s is open read-only", s->path);
    if (!(w = qd_calloc(1, sizeof(*w))))
        return QD_ENOMEM;
    w->s = s;
    pthread_rwlock_rdlock(&s->put_lock);
    w->holds_put_lock = 1;
    if ((rc = qd_sha256_new(&w->whole)) < 0 || (rc = qd_sha256_new(&w->chunk_h)) < 0)
        goto fail;
    if (!(w->stage = qd_big_alloc(STAGE_CAP))) {
        rc = QD_ENOMEM;
        goto fail;
    }
    if (!(w->cctx = ZSTD_createCCtx())) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "zstd: cannot create a compression context");
        goto fail;
    }
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, s->zstd_level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    *out = w;
    return QD_OK;
fail:
    qd_blob_writer_free(w);
    return rc;
}

uint64_t qd_blob_writer_size(const qd_blob_writer *w) { return w->size; }

/* Is the chunk already stored, or already waiting in this batch? */
static int chunk_known(qd_blob_writer *w, const uint8_t hash[32], int *known)
{
    qd_store *s = w->s;
    MDB_val k = {32, (void *)hash}, v;
    int rc;

    for (size_t i = 0; i < w->n_pend; i++) {
        if (!memcmp(w->pend[i].hash, hash, 32)) {
            *known = 1;
            return QD_OK;
        }
    }
    pthread_rwlock_rdlock(&s->map_lock);
    if (w->rtxn)
        rc = mdb_txn_renew(w->rtxn);
    else
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &w->rtxn);
    if (rc) {
        pthread_rwlock_unlock(&s->map_lock);
        if (rc == MDB_MAP_RESIZED) {
            *known = 0; /* writing it again is harmless: the batch transaction checks once more */
            return QD_OK;
        }
        return qd_store__err_mdb(rc, "begin a read transaction");
    }
    rc = mdb_get(w->rtxn, s->db_chunks, &k, &v);
    mdb_txn_reset(w->rtxn);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc && rc != MDB_NOTFOUND)
        return qd_store__err_mdb(rc, "look up a chunk");
    *known = rc == 0;
    return QD_OK;
}

typedef struct flush_ctx {
    qd_blob_writer *w;
    size_t fresh_mark;
} flush_ctx;

static int flush_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    flush_ctx *fc = payload;
    qd_blob_writer *w = fc->w;
    int rc;

    w->n_fresh = fc->fresh_mark; /* a retried transaction starts over */
    for (size_t i = 0; i < w->n_pend; i++) {
        pending *p = &w->pend[i];
        MDB_val k = {32, p->hash}, v;
        chunk_hdr h = {p->raw_len, (uint8_t)p->codec, {0, 0, 0}};

        rc = mdb_get(txn, s->db_chunks, &k, &v);
        if (rc == 0)
            continue;
        if (rc != MDB_NOTFOUND)
            return qd_store__err_mdb(rc, "look up a chunk");
        v.mv_size = sizeof(h) + p->len;
        if ((rc = mdb_put(txn, s->db_chunks, &k, &v, MDB_RESERVE)))
            return qd_store__err_mdb(rc, "write a chunk");
        memcpy(v.mv_data, &h, sizeof(h));
        memcpy((char *)v.mv_data + sizeof(h), w->batch + p->off, p->len);
        if ((rc = grow((void **)&w->fresh, &w->cap_fresh, w->n_fresh + 1, 32)) < 0)
            return rc;
        memcpy(w->fresh[w->n_fresh++], p->hash, 32);
    }
    return QD_OK;
}

static int flush_batch(qd_blob_writer *w)
{
    flush_ctx fc = {w, w->n_fresh};
    int rc;
    if (!w->n_pend)
        return QD_OK;
    rc = qd_store__write(w->s, flush_txn, &fc);
    if (rc < 0)
        return rc;
    w->n_pend = 0;
    w->batch_len = 0;
    return QD_OK;
}

/* Decide how to store a new chunk and append it to the batch. */
static int batch_add(qd_blob_writer *w, const uint8_t hash[32], const uint8_t *p, size_t n)
{
    size_t bound = ZSTD_compressBound(n), need;
    pending *pe;
    int rc, compressed = 0;
    size_t clen = 0;

    need = w->batch_len + (bound > n ? bound : n);
    if (need > w->batch_cap) {
        size_t ncap = w->s->batch_bytes + ZSTD_compressBound(QD_CHUNK_MAX);
        uint8_t *nb;
        if (ncap < need)
            ncap = need;
        nb = qd_big_alloc(ncap);
        if (!nb)
            return QD_ENOMEM;
        if (w->batch_len)
            memcpy(nb, w->batch, w->batch_len);
        qd_big_free(w->batch, w->batch_cap);
        w->batch = nb;
        w->batch_cap = ncap;
    }
    if ((rc = grow((void **)&w->pend, &w->cap_pend, w->n_pend + 1, sizeof(pending))) < 0)
        return rc;

    /* A sample first: random or already-quantized data is rejected after compressing 64 KiB, not 1 MiB. */
    if (n >= 4 * SAMPLE_LEN) {
        size_t sl = ZSTD_compress2(w->cctx, w->batch + w->batch_len, bound, p, SAMPLE_LEN);
        if (!ZSTD_isError(sl) && sl <= SAMPLE_LEN - SAMPLE_LEN / 32)
            compressed = 1;
    } else {
        compressed = 1;
    }
    if (compressed) {
        clen = ZSTD_compress2(w->cctx, w->batch + w->batch_len, bound, p, n);
        /* keep the compressed form only when it saves at least 5% */
        compressed = !ZSTD_isError(clen) && clen * 20 <= n * 19;
    }
    pe = &w->pend[w->n_pend++];
    memcpy(pe->hash, hash, 32);
    pe->raw_len = (uint32_t)n;
    pe->off = w->batch_len;
    if (compressed) {
        pe->codec = CODEC_ZSTD;
        pe->len = clen;
    } else {
        pe->codec = CODEC_RAW;
        pe->len = n;
        memcpy(w->batch + w->batch_len, p, n);
    }
    w->batch_len += pe->len;
    if (w->batch_len >= w->s->batch_bytes)
        return flush_batch(w);
    return QD_OK;
}

static int emit_chunk(qd_blob_writer *w, const uint8_t *p, size_t n)
{
    qd_digest h;
    blob_chunk *bc;
    int rc, known = 0;

    if ((rc = qd_sha256_reset(w->chunk_h)) < 0 || (rc = qd_sha256_update(w->chunk_h, p, n)) < 0 ||
        (rc = qd_sha256_final(w->chunk_h, &h)) < 0)
        return rc;
    if ((rc = grow((void **)&w->list, &w->cap_list, w->n_list + 1, sizeof(blob_chunk))) < 0)
        return rc;
    bc = &w->list[w->n_list++];
    memcpy(bc->hash, h.bytes, 32);
    bc->end = (w->n_list > 1 ? w->list[w->n_list - 2].end : 0) + n;
    if ((rc = chunk_known(w, h.bytes, &known)) < 0)
        return rc;
    if (known)
        return QD_OK;
    return batch_add(w, h.bytes, p, n);
}

int qd_blob_writer_write(qd_blob_writer *w, const void *data, size_t len)
{
    const uint8_t *src = data;
    int rc;

    if (w->finished || w->failed)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "write on a finished blob writer");
    if ((rc = qd_sha256_update(w->whole, data, len)) < 0)
        goto fail;
    w->size += len;
    while (len) {
        size_t n;
        if (w->stage_len == STAGE_CAP) {
            memmove(w->stage, w->stage + w->stage_off, w->stage_len - w->stage_off);
            w->stage_len -= w->stage_off;
            w->stage_off = 0;
        }
        n = STAGE_CAP - w->stage_len;
        if (n > len)
            n = len;
        memcpy(w->stage + w->stage_len, src, n);
        w->stage_len += n;
        src += n;
        len -= n;
        while (w->stage_len - w->stage_off >= QD_CHUNK_MAX) {
            size_t cut = qd_store__cdc_cut(w->stage + w->stage_off, w->stage_len - w->stage_off, 0);
            if ((rc = emit_chunk(w, w->stage + w->stage_off, cut)) < 0)
                goto fail;
            w->stage_off += cut;
        }
    }
    return QD_OK;
fail:
    w->failed = 1;
    return rc;
}

typedef struct commit_ctx {
    qd_blob_writer *w;
    const qd_digest *d;
    int existed;
} commit_ctx;

static int commit_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    commit_ctx *cc = payload;
    qd_blob_writer *w = cc->w;
    MDB_val k = {32, (void *)cc->d->bytes}, v;
    blob_hdr h;
    int rc;

    cc->existed = 0;
    rc = mdb_get(txn, s->db_blobs, &k, &v);
    if (rc == 0) {
        cc->existed = 1;
        return QD_OK;
    }
    if (rc != MDB_NOTFOUND)
        return qd_store__err_mdb(rc, "look up a blob");
    memset(&h, 0, sizeof(h));
    h.magic = BLOB_MAGIC;
    h.n_chunks = (uint32_t)w->n_list;
    h.size = w->size;
    h.created = qd_store__now();
    for (size_t i = 0; i < w->n_list; i++) {
        MDB_val ck = {32, w->list[i].hash}, cv;
        uint64_t raw_len = w->list[i].end - (i ? w->list[i - 1].end : 0);
        rc = mdb_get(txn, s->db_chunks, &ck, &cv);
        if (rc == MDB_NOTFOUND)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "a chunk of the new blob vanished before it was published");
        if (rc)
            return qd_store__err_mdb(rc, "look up a chunk");
        if (cv.mv_size < sizeof(chunk_hdr))
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed chunk record");
        h.stored += cv.mv_size - sizeof(chunk_hdr);
        h.n_compressed += CHUNK_IS_COMPRESSED(cv.mv_size, raw_len);
        if ((rc = qd_store__chunk_refs_add(s, txn, w->list[i].hash, 1, NULL)) < 0)
            return rc;
    }
    v.mv_size = sizeof(h) + w->n_list * sizeof(blob_chunk);
    if ((rc = mdb_put(txn, s->db_blobs, &k, &v, MDB_RESERVE)))
        return qd_store__err_mdb(rc, "write a blob record");
    memcpy(v.mv_data, &h, sizeof(h));
    if (w->n_list)
        memcpy((char *)v.mv_data + sizeof(h), w->list, w->n_list * sizeof(blob_chunk));
    return QD_OK;
}

int qd_blob_writer_commit(qd_blob_writer *w, const qd_digest *expect, qd_digest *out)
{
    qd_digest d;
    commit_ctx cc;
    int rc;

    if (w->finished || w->failed)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "commit on a finished blob writer");
    w->finished = 1;
    while (w->stage_len > w->stage_off) {
        size_t cut = qd_store__cdc_cut(w->stage + w->stage_off, w->stage_len - w->stage_off, 1);
        if ((rc = emit_chunk(w, w->stage + w->stage_off, cut)) < 0)
            return rc;
        w->stage_off += cut;
    }
    if ((rc = qd_sha256_final(w->whole, &d)) < 0)
        return rc;
    if (expect && !qd_digest_equal(expect, &d)) {
        char a[QD_DIGEST_STR_LEN + 1], b[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_EDIGEST, QD_EC_STORE, "content is %s, expected %s: nothing was stored",
                            qd_digest_format(a, &d), qd_digest_format(b, expect));
    }
    if ((rc = flush_batch(w)) < 0)
        return rc;
    cc = (commit_ctx){w, &d, 0};
    if ((rc = qd_store__write(w->s, commit_txn, &cc)) < 0)
        return rc;
    w->n_fresh = 0; /* published: nothing to clean up */
    if (out)
        *out = d;
    return QD_OK;
}

typedef struct cleanup_ctx {
    qd_blob_writer *w;
} cleanup_ctx;

static int cleanup_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    qd_blob_writer *w = ((cleanup_ctx *)payload)->w;
    for (size_t i = 0; i < w->n_fresh; i++) {
        uint64_t refs;
        MDB_val k = {32, w->fresh[i]};
        int rc = qd_store__chunk_refs_get(s, txn, w->fresh[i], &refs);
        if (rc < 0)
            return rc;
        if (refs)
            continue;
        rc = mdb_del(txn, s->db_chunks, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return qd_store__err_mdb(rc, "drop a chunk");
    }
    return QD_OK;
}

void qd_blob_writer_free(qd_blob_writer *w)
{
    if (!w)
        return;
    if (w->rtxn)
        mdb_txn_abort(w->rtxn);
    if (w->holds_put_lock) {
        pthread_rwlock_unlock(&w->s->put_lock);
        /* An abandoned blob: drop the chunks it wrote, unless another writer is in flight (it may have counted
         * on them); then they wait for qd_store_gc(). */
        if (w->n_fresh && pthread_rwlock_trywrlock(&w->s->put_lock) == 0) {
            cleanup_ctx cc = {w};
            qd_error err = *qd_error_last();
            char msg[1024];
            snprintf(msg, sizeof(msg), "%s", err.message);
            qd_store__write(w->s, cleanup_txn, &cc);
            pthread_rwlock_unlock(&w->s->put_lock);
            qd_error_set(err.code, err.klass, "%s", msg); /* keep the error that made the caller give up */
        }
    }
    qd_sha256_free(w->whole);
    qd_sha256_free(w->chunk_h);
    qd_big_free(w->stage, STAGE_CAP);
    qd_big_free(w->batch, w->batch_cap);
    ZSTD_freeCCtx(w->cctx);
    qd_free(w->list);
    qd_free(w->pend);
    qd_free(w->fresh);
    qd_free(w);
}

/* ---- put helpers ----------------------------------------------------------------------------------------------- */

int qd_store_put_cb(qd_store *s, qd_read_fn readfn, void *payload, const qd_put_options *opts, qd_digest *out)
{
    qd_put_options def = QD_PUT_OPTIONS_INIT;
    qd_blob_writer *w = NULL;
    uint8_t *buf = NULL;
    const size_t bufsz = 4u << 20;
    uint64_t total = 0;
    int rc;

    if (!opts)
        opts = &def;
    if ((rc = qd_blob_writer_open(&w, s)) < 0)
        return rc;
    if (!(buf = qd_big_alloc(bufsz))) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (;;) {
        size_t got = 0;
        if ((rc = readfn(buf, bufsz, &got, payload)) < 0)
            goto done;
        if (!got)
            break;
        total += got;
        if (opts->expect_size >= 0 && total > (uint64_t)opts->expect_size) {
            rc = qd_error_set(QD_EINVAL, QD_EC_STORE, "the stream is longer than the expected %lld bytes",
                              (long long)opts->expect_size);
            goto done;
        }
        if ((rc = qd_blob_writer_write(w, buf, got)) < 0)
            goto done;
        if (opts->progress)
            opts->progress(total, opts->expect_size >= 0 ? (uint64_t)opts->expect_size : 0, opts->progress_payload);
    }
    if (opts->expect_size >= 0 && total != (uint64_t)opts->expect_size) {
        rc = qd_error_set(QD_ETRUNCATED, QD_EC_STORE, "the stream ended after %llu of %lld bytes: nothing was stored",
                          (unsigned long long)total, (long long)opts->expect_size);
        goto done;
    }
    rc = qd_blob_writer_commit(w, opts->expect, out);
done:
    qd_big_free(buf, bufsz);
    qd_blob_writer_free(w);
    return rc;
}

static int read_fd(void *buf, size_t cap, size_t *got, void *payload)
{
    int fd = *(int *)payload;
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, (char *)buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return qd_error_set(QD_EIO, QD_EC_OS, "read: %s", strerror(errno));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *got = n;
    return QD_OK;
}

int qd_store_put_fd(qd_store *s, int fd, const qd_put_options *opts, qd_digest *out)
{
    qd_put_options o = QD_PUT_OPTIONS_INIT;
    struct stat st;
    if (opts)
        o = *opts;
    if (o.expect_size < 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = lseek(fd, 0, SEEK_CUR);
        o.expect_size = (int64_t)(st.st_size - (pos > 0 ? pos : 0));
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    return qd_store_put_cb(s, read_fd, &fd, &o, out);
}


int qd_store_put_buf(qd_store *s, const void *data, size_t len, const qd_digest *expect, qd_digest *out)
{
    qd_blob_writer *w;
    int rc;
    if ((rc = qd_blob_writer_open(&w, s)) < 0)
        return rc;
    rc = qd_blob_writer_write(w, data, len);
    if (rc == QD_OK)
        rc = qd_blob_writer_commit(w, expect, out);
    qd_blob_writer_free(w);
    return rc;
}
