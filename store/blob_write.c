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
    uint16_t codec;
    uint16_t phase;
    size_t off; /* into the batch buffer */
    size_t len; /* stored bytes */
} pending;

/* A batch of new chunks waiting to be written in one transaction. */
typedef struct batch {
    uint8_t *buf;
    size_t len, cap;
    pending *pend;
    size_t n_pend, cap_pend;
} batch;

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
    /* Two batches: one filling here while the flusher thread writes the other, so hashing, chunking and
     * compressing overlap the LMDB write and its fsync. */
    batch b[2];
    int cur;
    pthread_t flusher;
    int flusher_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch *inflight;       /* handed to the flusher; NULL when it is idle (under mu) */
    int stop;              /* the flusher should exit (under mu) */
    int flush_rc;          /* the first error the flusher met (under mu) */
    char flush_msg[512];
    /* The whole-blob SHA-256 runs on a hasher thread over each large write while this thread chunks the same
     * bytes, so the two hash passes use both cores. */
    pthread_t hasher;
    int hasher_started;
    pthread_cond_t hcv;
    const void *h_data;    /* the write being hashed (under mu) */
    size_t h_len;
    int h_busy, h_stop, h_rc;
    /* chunks this writer wrote (to free them again if it is abandoned); appended by whoever flushes */
    uint8_t (*fresh)[32];
    size_t n_fresh, cap_fresh;
    ZSTD_CCtx *cctx;
    uint8_t *plane;  /* QD_CHUNK_MAX / 2 bytes: the high-byte plane of the chunk being compressed */
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
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->hcv, NULL);
    pthread_rwlock_rdlock(&s->put_lock);
    w->holds_put_lock = 1;
    if ((rc = qd_sha256_new(&w->whole)) < 0 || (rc = qd_sha256_new(&w->chunk_h)) < 0)
        goto fail;
    if (!(w->stage = qd_big_alloc(STAGE_CAP))) {
        rc = QD_ENOMEM;
        goto fail;
    }
    if (!(w->plane = qd_big_alloc(QD_CHUNK_MAX / 2))) {
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

    batch *cb = &w->b[w->cur], *ib;
    for (size_t i = 0; i < cb->n_pend; i++) {
        if (!memcmp(cb->pend[i].hash, hash, 32)) {
            *known = 1;
            return QD_OK;
        }
    }
    pthread_mutex_lock(&w->mu);
    ib = w->inflight;
    for (size_t i = 0; ib && i < ib->n_pend; i++) {
        if (!memcmp(ib->pend[i].hash, hash, 32)) {
            pthread_mutex_unlock(&w->mu);
            *known = 1;
            return QD_OK;
        }
    }
    pthread_mutex_unlock(&w->mu);
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
    batch *b;
    size_t fresh_mark;
} flush_ctx;

static int flush_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    flush_ctx *fc = payload;
    qd_blob_writer *w = fc->w;
    batch *b = fc->b;
    int rc;

    w->n_fresh = fc->fresh_mark; /* a retried transaction starts over */
    for (size_t i = 0; i < b->n_pend; i++) {
        pending *p = &b->pend[i];
        MDB_val k = {32, p->hash}, v;
        chunk_hdr h = {p->raw_len, (uint8_t)p->codec, (uint8_t)p->phase, {0, 0}};

        rc = mdb_get(txn, s->db_chunks, &k, &v);
        if (rc == 0)
            continue;
        if (rc != MDB_NOTFOUND)
            return qd_store__err_mdb(rc, "look up a chunk");
        v.mv_size = sizeof(h) + p->len;
        if ((rc = mdb_put(txn, s->db_chunks, &k, &v, MDB_RESERVE)))
            return qd_store__err_mdb(rc, "write a chunk");
        memcpy(v.mv_data, &h, sizeof(h));
        memcpy((char *)v.mv_data + sizeof(h), b->buf + p->off, p->len);
        if ((rc = grow((void **)&w->fresh, &w->cap_fresh, w->n_fresh + 1, 32)) < 0)
            return rc;
        memcpy(w->fresh[w->n_fresh++], p->hash, 32);
    }
    return QD_OK;
}

/* Write one batch in one transaction (on whichever thread calls it). */
static int write_batch(qd_blob_writer *w, batch *b)
{
    flush_ctx fc = {w, b, w->n_fresh};
    int rc;
    if (!b->n_pend)
        return QD_OK;
    rc = qd_store__write(w->s, flush_txn, &fc);
    if (rc < 0)
        return rc;
    b->n_pend = 0;
    b->len = 0;
    return QD_OK;
}

static void *flusher_main(void *arg)
{
    qd_blob_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        batch *b;
        int rc, failed;
        while (!w->inflight && !w->stop)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->inflight)
            break;
        b = w->inflight;
        failed = w->flush_rc != 0;
        pthread_mutex_unlock(&w->mu);
        rc = failed ? QD_OK : write_batch(w, b); /* after an error, drop what follows */
        pthread_mutex_lock(&w->mu);
        if (rc < 0 && !w->flush_rc) {
            w->flush_rc = rc;
            snprintf(w->flush_msg, sizeof(w->flush_msg), "%s", qd_error_last()->message);
        }
        b->n_pend = 0;
        b->len = 0;
        w->inflight = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Wait until the flusher is idle; report its error, if any, as this thread's. */
static int flusher_wait(qd_blob_writer *w)
{
    int rc;
    pthread_mutex_lock(&w->mu);
    while (w->inflight)
        pthread_cond_wait(&w->cv, &w->mu);
    rc = w->flush_rc;
    pthread_mutex_unlock(&w->mu);
    if (rc < 0)
        return qd_error_set(rc, QD_EC_STORE, "%s", w->flush_msg);
    return QD_OK;
}

/* The filling batch is full: hand it to the flusher (started on first use) and fill the other one. */
static int flush_batch(qd_blob_writer *w)
{
    int rc;
    if (!w->flusher_started) {
        if (pthread_create(&w->flusher, NULL, flusher_main, w) != 0)
            return write_batch(w, &w->b[w->cur]); /* no thread: write it here */
        w->flusher_started = 1;
    }
    if ((rc = flusher_wait(w)) < 0)
        return rc;
    pthread_mutex_lock(&w->mu);
    w->inflight = &w->b[w->cur];
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    w->cur ^= 1;
    return QD_OK;
}

/* Everything written: the last batch is written here, after the flusher's. */
static int flush_all(qd_blob_writer *w)
{
    int rc;
    if (w->flusher_started && (rc = flusher_wait(w)) < 0)
        return rc;
    return write_batch(w, &w->b[w->cur]);
}

/* Split n bytes into the low plane (indices of parity ph) and the high plane (the others). */
static void split_planes(const uint8_t *p, size_t n, int ph, uint8_t *lo, uint8_t *hi)
{
    size_t nlo = PLANE_LO_LEN(n, (size_t)ph), nhi = n - nlo;
    if (ph == 0) {
        for (size_t i = 0; i < nhi; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            lo[i] = (uint8_t)v;
            hi[i] = (uint8_t)(v >> 8);
        }
        if (nlo > nhi)
            lo[nlo - 1] = p[n - 1];
    } else {
        for (size_t i = 0; i < nlo; i++)
            lo[i] = p[2 * i + 1];
        for (size_t i = 0; i < nhi; i++)
            hi[i] = p[2 * i];
    }
}

/* Pick a codec from a 64 KiB sample, so that incompressible data (random bytes, quantized weights) costs one small
 * compression, not a full one: plain zstd, or the plane split (fp16/bf16 weights: the high bytes compress, the low
 * ones are noise). A candidate must save at least 3% on the sample. scratch has room for a compressed sample. */
static int choose_codec(qd_blob_writer *w, uint8_t *scratch, size_t cap, const uint8_t *p, size_t n, int ph)
{
    size_t whole, planes = SIZE_MAX, best, h;
    int codec;
    if (n < 4 * SAMPLE_LEN)
        return CODEC_ZSTD; /* small: just try */
    whole = ZSTD_compress2(w->cctx, scratch, cap, p, SAMPLE_LEN);
    if (ZSTD_isError(whole))
        whole = SIZE_MAX;
    split_planes(p, SAMPLE_LEN, ph, scratch, w->plane);
    h = ZSTD_compress2(w->cctx, scratch, cap, w->plane, SAMPLE_LEN / 2);
    if (!ZSTD_isError(h))
        planes = SAMPLE_LEN / 2 + h;
    codec = planes < whole ? CODEC_PLANES : CODEC_ZSTD;
    best = planes < whole ? planes : whole;
    return best <= SAMPLE_LEN - SAMPLE_LEN / 32 ? codec : CODEC_RAW;
}

/* Decide how to store a new chunk and append it to the batch. */
static int batch_add(qd_blob_writer *w, const uint8_t hash[32], const uint8_t *p, size_t n, uint64_t start)
{
    int ph = (int)(start & 1); /* low bytes of the blob's 16-bit words sit at even offsets of the blob */
    batch *b = &w->b[w->cur];
    size_t bound = ZSTD_compressBound(n), need;
    pending *pe;
    int rc, codec;
    size_t clen = 0;

    need = b->len + (bound > n ? bound : n) + 64;
    if (need > b->cap) {
        size_t ncap = w->s->batch_bytes + ZSTD_compressBound(QD_CHUNK_MAX);
        uint8_t *nb;
        if (ncap < need)
            ncap = need;
        nb = qd_big_alloc(ncap);
        if (!nb)
            return QD_ENOMEM;
        if (b->len)
            memcpy(nb, b->buf, b->len);
        qd_big_free(b->buf, b->cap);
        b->buf = nb;
        b->cap = ncap;
    }
    if ((rc = grow((void **)&b->pend, &b->cap_pend, b->n_pend + 1, sizeof(pending))) < 0)
        return rc;

    codec = choose_codec(w, b->buf + b->len, bound, p, n, ph);
    if (codec == CODEC_ZSTD) {
        clen = ZSTD_compress2(w->cctx, b->buf + b->len, bound, p, n);
        if (ZSTD_isError(clen))
            codec = CODEC_RAW;
    } else if (codec == CODEC_PLANES) {
        size_t nlo = PLANE_LO_LEN(n, (size_t)ph), hl;
        uint8_t *lo = b->buf + b->len;
        split_planes(p, n, ph, lo, w->plane);
        hl = ZSTD_compress2(w->cctx, lo + nlo, ZSTD_compressBound(n - nlo), w->plane, n - nlo);
        if (ZSTD_isError(hl))
            codec = CODEC_RAW;
        else
            clen = nlo + hl;
    }
    /* keep a compressed form only when it saves at least 5% */
    if (codec != CODEC_RAW && clen * 20 > n * 19)
        codec = CODEC_RAW;
    pe = &b->pend[b->n_pend++];
    memcpy(pe->hash, hash, 32);
    pe->raw_len = (uint32_t)n;
    pe->off = b->len;
    pe->codec = (uint16_t)codec;
    pe->phase = codec == CODEC_PLANES ? (uint16_t)ph : 0;
    if (codec != CODEC_RAW) {
        pe->len = clen;
    } else {
        pe->len = n;
        memcpy(b->buf + b->len, p, n);
    }
    b->len += pe->len;
    if (b->len >= w->s->batch_bytes)
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
    return batch_add(w, h.bytes, p, n, bc->end - n);
}

static void *hasher_main(void *arg)
{
    qd_blob_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        const void *data;
        size_t len;
        int rc;
        while (!w->h_busy && !w->h_stop)
            pthread_cond_wait(&w->hcv, &w->mu);
        if (!w->h_busy)
            break;
        data = w->h_data;
        len = w->h_len;
        pthread_mutex_unlock(&w->mu);
        rc = qd_sha256_update(w->whole, data, len);
        pthread_mutex_lock(&w->mu);
        if (rc < 0 && !w->h_rc)
            w->h_rc = rc;
        w->h_busy = 0;
        pthread_cond_broadcast(&w->hcv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Hash data on the hasher thread (started on first use); returns 1 if it was handed over, 0 if the caller must
 * hash it itself. */
static int hash_async(qd_blob_writer *w, const void *data, size_t len)
{
    if (len < (256u << 10))
        return 0;
    if (!w->hasher_started) {
        if (pthread_create(&w->hasher, NULL, hasher_main, w) != 0)
            return 0;
        w->hasher_started = 1;
    }
    pthread_mutex_lock(&w->mu);
    w->h_data = data;
    w->h_len = len;
    w->h_busy = 1;
    pthread_cond_broadcast(&w->hcv);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

static int hash_wait(qd_blob_writer *w)
{
    int rc;
    pthread_mutex_lock(&w->mu);
    while (w->h_busy)
        pthread_cond_wait(&w->hcv, &w->mu);
    rc = w->h_rc;
    pthread_mutex_unlock(&w->mu);
    return rc < 0 ? qd_error_set(rc, QD_EC_STORE, "hashing the blob failed") : QD_OK;
}

int qd_blob_writer_write(qd_blob_writer *w, const void *data, size_t len)
{
    const uint8_t *src = data;
    int rc = QD_OK, hrc, async;

    if (w->finished || w->failed)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "write on a finished blob writer");
    async = hash_async(w, data, len);
    if (!async && (rc = qd_sha256_update(w->whole, data, len)) < 0)
        goto done;
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
                goto done;
            w->stage_off += cut;
        }
    }
done:
    /* the caller may reuse data as soon as we return: the hasher must be done with it */
    if (async && (hrc = hash_wait(w)) < 0 && rc == QD_OK)
        rc = hrc;
    if (rc < 0)
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
        if (w->flusher_started)
            flusher_wait(w);
        return qd_error_set(QD_EDIGEST, QD_EC_STORE, "content is %s, expected %s: nothing was stored",
                            qd_digest_format(a, &d), qd_digest_format(b, expect));
    }
    if ((rc = flush_all(w)) < 0)
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
    if (w->hasher_started) {
        pthread_mutex_lock(&w->mu);
        while (w->h_busy)
            pthread_cond_wait(&w->hcv, &w->mu);
        w->h_stop = 1;
        pthread_cond_broadcast(&w->hcv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->hasher, NULL);
    }
    if (w->flusher_started) {
        pthread_mutex_lock(&w->mu);
        while (w->inflight)
            pthread_cond_wait(&w->cv, &w->mu);
        w->stop = 1;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->flusher, NULL);
    }
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
    for (int i = 0; i < 2; i++) {
        qd_big_free(w->b[i].buf, w->b[i].cap);
        qd_free(w->b[i].pend);
    }
    ZSTD_freeCCtx(w->cctx);
    qd_big_free(w->plane, QD_CHUNK_MAX / 2);
    qd_free(w->list);
    qd_free(w->fresh);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->hcv);
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
