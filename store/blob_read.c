/*
 * blob_read.c - reading blobs: stat, list, readers and ranged gets.
 *
 * A reader holds one read transaction, so what it reads is one consistent snapshot. Raw chunks are handed out as
 * pointers into LMDB's map (no copy); compressed chunks are decompressed into one of the reader's two decode slots.
 * While the caller consumes chunk i (hashes it, sends it), a read-ahead thread decompresses chunk i+1 into the other
 * slot, so decompression and consumption use both cores. LMDB is only called from the reader's own thread: the
 * read-ahead thread gets the value's address in the map, which stays valid while the transaction lasts.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <zstd.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "store_int.h"

typedef struct decode_slot {
    uint8_t *buf;          /* QD_CHUNK_DECODE_BUF bytes, allocated on first use */
    ZSTD_DCtx *dctx;
    int64_t chunk;         /* the chunk it holds, -1 none */
} decode_slot;

struct qd_blob_reader {
    qd_store *s;
    MDB_txn *txn;
    qd_digest digest;
    blob_hdr hdr;
    blob_chunk *chunks;    /* an aligned copy of the record's chunk list */
    uint64_t pos;
    uint32_t ci;           /* the chunk holding pos (== n_chunks at the end) */
    int last_mapped;       /* the last piece handed out points into the map (a raw chunk) */
    decode_slot slot[2];
    /* read-ahead (fields under mu while the thread runs) */
    pthread_t ra;
    int ra_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ra_busy, ra_stop;
    int ra_slot;           /* the slot it decodes into */
    MDB_val ra_val;        /* the value it decodes (an address in the map) */
};

int qd_store__chunk_decode(const MDB_val *v, void *dctx, uint8_t *dst, const uint8_t **raw, size_t *raw_len)
{
    chunk_hdr h;
    const uint8_t *body;
    size_t blen;

    if (v->mv_size < sizeof(h))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed chunk record (%zu bytes)", v->mv_size);
    memcpy(&h, v->mv_data, sizeof(h));
    body = (const uint8_t *)v->mv_data + sizeof(h);
    blen = v->mv_size - sizeof(h);
    if (h.raw_len > QD_CHUNK_MAX)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "chunk record claims %u bytes", h.raw_len);
    if (h.codec == CODEC_RAW) {
        if (blen != h.raw_len)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "raw chunk holds %zu bytes, its header says %u", blen,
                                h.raw_len);
        *raw = body;
        *raw_len = blen;
        return QD_OK;
    }
    if (h.codec == CODEC_ZSTD) {
        size_t n = ZSTD_decompressDCtx(dctx, dst, QD_CHUNK_MAX, body, blen);
        if (ZSTD_isError(n))
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "compressed chunk: %s", ZSTD_getErrorName(n));
        if (n != h.raw_len)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "compressed chunk decodes to %zu bytes, expected %u", n,
                                h.raw_len);
        *raw = dst;
        *raw_len = n;
        return QD_OK;
    }
    if (h.codec == CODEC_PLANES) {
        size_t nlo = PLANE_LO_LEN((size_t)h.raw_len, h.phase), nhi = h.raw_len - nlo, n;
        uint8_t *hi = dst + QD_CHUNK_MAX;
        const uint8_t *lo = body;
        if (h.phase > 1 || blen <= nlo)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "plane-split chunk of %u bytes is malformed", h.raw_len);
        n = ZSTD_decompressDCtx(dctx, hi, QD_CHUNK_MAX / 2, body + nlo, blen - nlo);
        if (ZSTD_isError(n))
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "compressed chunk plane: %s", ZSTD_getErrorName(n));
        if (n != nhi)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "chunk plane decodes to %zu bytes, expected %zu", n, nhi);
        if (h.phase == 0) {
            /* the common case: whole little-endian words from the start */
            uint16_t *out = (uint16_t *)(void *)dst;
            for (size_t i = 0; i < nhi; i++)
                out[i] = (uint16_t)(lo[i] | (uint16_t)hi[i] << 8);
            if (nlo > nhi)
                dst[h.raw_len - 1] = lo[nlo - 1];
        } else {
            for (size_t i = 0; i < nlo; i++)
                dst[2 * i + 1] = lo[i];
            for (size_t i = 0; i < nhi; i++)
                dst[2 * i] = hi[i];
        }
        *raw = dst;
        *raw_len = h.raw_len;
        return QD_OK;
    }
    return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "chunk record has unknown codec %u", h.codec);
}

static int blob_lookup(qd_store *s, MDB_txn *txn, const qd_digest *d, blob_hdr *h, blob_chunk **c)
{
    MDB_val k = {32, (void *)d->bytes}, v;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc = mdb_get(txn, s->db_blobs, &k, &v);
    if (rc == MDB_NOTFOUND)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no blob %s in the store", qd_digest_format(ds, d));
    if (rc)
        return qd_store__err_mdb(rc, "look up a blob");
    return qd_store__blob_parse(d, &v, h, c);
}

int qd_store_stat(qd_store *s, const qd_digest *d, qd_blob_info *out)
{
    MDB_txn *txn;
    blob_hdr h;
    int rc = qd_store__read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = blob_lookup(s, txn, d, &h, NULL);
    if (rc == QD_OK) {
        qd_store__blob_info(d, &h, out);
        rc = qd_store__count_referrers(s, txn, d, &out->n_referrers);
    }
    qd_store__txn_end(s, txn);
    return rc;
}

bool qd_store_has(qd_store *s, const qd_digest *d)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)d->bytes}, v;
    bool found;
    if (qd_store__read_begin(s, &txn) < 0)
        return false;
    found = mdb_get(txn, s->db_blobs, &k, &v) == 0;
    qd_store__txn_end(s, txn);
    return found;
}

int qd_store_list(qd_store *s, int (*fn)(const qd_blob_info *info, void *payload), void *payload)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = qd_store__read_begin(s, &txn), mrc;
    if (rc < 0)
        return rc;
    if ((mrc = mdb_cursor_open(txn, s->db_blobs, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        qd_digest d;
        blob_hdr h;
        qd_blob_info info;
        if (k.mv_size != 32) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed blob key");
            break;
        }
        memcpy(d.bytes, k.mv_data, 32);
        if ((rc = qd_store__blob_parse(&d, &v, &h, NULL)) < 0)
            break;
        qd_store__blob_info(&d, &h, &info);
        if ((rc = qd_store__count_referrers(s, txn, &d, &info.n_referrers)) < 0)
            break;
        if ((rc = fn(&info, payload)) != 0)
            break;
    }
    if (mrc && mrc != MDB_NOTFOUND && rc == QD_OK)
        rc = qd_store__err_mdb(mrc, "list blobs");
    mdb_cursor_close(cur);
done:
    qd_store__txn_end(s, txn);
    return rc;
}

int qd_blob_reader_open(qd_blob_reader **out, qd_store *s, const qd_digest *d)
{
    qd_blob_reader *r;
    int rc;

    *out = NULL;
    if (!(r = qd_calloc(1, sizeof(*r))))
        return QD_ENOMEM;
    r->s = s;
    r->digest = *d;
    r->slot[0].chunk = r->slot[1].chunk = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if ((rc = qd_store__read_begin(s, &r->txn)) < 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        qd_free(r);
        return rc;
    }
    if ((rc = blob_lookup(s, r->txn, d, &r->hdr, &r->chunks)) < 0) {
        qd_blob_reader_close(r);
        return rc;
    }
    *out = r;
    return QD_OK;
}

uint64_t qd_blob_reader_size(const qd_blob_reader *r) { return r->hdr.size; }

int qd_blob_reader_seek(qd_blob_reader *r, uint64_t off)
{
    uint32_t lo = 0, hi = r->hdr.n_chunks;
    if (off > r->hdr.size)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "offset %llu is past the end of the blob (%llu bytes)",
                            (unsigned long long)off, (unsigned long long)r->hdr.size);
    /* first chunk whose end is past off */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->chunks[mid].end <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    r->ci = lo;
    r->pos = off;
    return QD_OK;
}

static int slot_ready(decode_slot *sl)
{
    if (!sl->dctx && !(sl->dctx = ZSTD_createDCtx()))
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "zstd: cannot create a decompression context");
    if (!sl->buf && !(sl->buf = qd_big_alloc(QD_CHUNK_DECODE_BUF)))
        return QD_ENOMEM;
    return QD_OK;
}

static void *readahead_main(void *arg)
{
    qd_blob_reader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        decode_slot *sl;
        MDB_val v;
        const uint8_t *raw;
        size_t raw_len;
        int rc;
        while (!r->ra_busy && !r->ra_stop)
            pthread_cond_wait(&r->cv, &r->mu);
        if (!r->ra_busy)
            break;
        sl = &r->slot[r->ra_slot];
        v = r->ra_val;
        pthread_mutex_unlock(&r->mu);
        rc = qd_store__chunk_decode(&v, sl->dctx, sl->buf, &raw, &raw_len);
        pthread_mutex_lock(&r->mu);
        if (rc < 0 || raw != sl->buf)
            sl->chunk = -1;
        r->ra_busy = 0;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Wait until the read-ahead thread is idle. A chunk it failed to decode is left out of its slot: reading that
 * chunk then decodes it again here and reports the error where it belongs. */
static void readahead_wait(qd_blob_reader *r)
{
    if (!r->ra_started)
        return;
    pthread_mutex_lock(&r->mu);
    while (r->ra_busy)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static int chunk_value(qd_blob_reader *r, uint32_t ci, MDB_val *v)
{
    MDB_val k = {32, (void *)r->chunks[ci].hash};
    int rc = mdb_get(r->txn, r->s->db_chunks, &k, v);
    if (rc == MDB_NOTFOUND) {
        char ds[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob %s: chunk %u is missing from the store",
                            qd_digest_format(ds, &r->digest), ci);
    }
    return rc ? qd_store__err_mdb(rc, "read a chunk") : QD_OK;
}

static int is_compressed(const MDB_val *v)
{
    return v->mv_size >= sizeof(chunk_hdr) && ((const uint8_t *)v->mv_data)[offsetof(chunk_hdr, codec)] != CODEC_RAW;
}

/* Start decoding chunk ci into the slot other than `keep` (the one just handed out), when it is compressed. */
static void readahead(qd_blob_reader *r, uint32_t ci, int keep)
{
    MDB_val v;
    int other = !keep;
    if (ci >= r->hdr.n_chunks || r->slot[0].chunk == ci || r->slot[1].chunk == ci)
        return;
    if (chunk_value(r, ci, &v) < 0 || !is_compressed(&v) || slot_ready(&r->slot[other]) < 0) {
        qd_error_clear(); /* a failure shows again, synchronously, when the chunk is read */
        return;
    }
    if (!r->ra_started) {
        if (pthread_create(&r->ra, NULL, readahead_main, r) != 0)
            return;
        r->ra_started = 1;
    }
    pthread_mutex_lock(&r->mu);
    r->slot[other].chunk = ci;
    r->ra_slot = other;
    r->ra_val = v;
    r->ra_busy = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int qd_blob_reader_next(qd_blob_reader *r, size_t max, const void **data, size_t *len)
{
    const blob_chunk *c;
    MDB_val v;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    uint64_t start;
    int rc, used = -1;

    *data = NULL;
    *len = 0;
    if (r->pos >= r->hdr.size || max == 0)
        return QD_OK;
    c = &r->chunks[r->ci];
    start = r->ci ? r->chunks[r->ci - 1].end : 0;
    /* the slots may only be read or reused once the read-ahead thread has let go of them */
    readahead_wait(r);
    for (int i = 0; i < 2; i++) {
        if (r->slot[i].chunk == (int64_t)r->ci) {
            used = i;
            raw = r->slot[i].buf;
            raw_len = (size_t)(c->end - start);
        }
    }
    if (used < 0) {
        if ((rc = chunk_value(r, r->ci, &v)) < 0)
            return rc;
        if (is_compressed(&v)) {
            /* decode into the slot not holding the next chunk, if the read-ahead already has it */
            used = r->slot[0].chunk == (int64_t)r->ci + 1 ? 1 : 0;
            if ((rc = slot_ready(&r->slot[used])) < 0)
                return rc;
            r->slot[used].chunk = -1;
        }
        if ((rc = qd_store__chunk_decode(&v, used >= 0 ? r->slot[used].dctx : NULL,
                                         used >= 0 ? r->slot[used].buf : NULL, &raw, &raw_len)) < 0)
            return rc;
        if (raw_len != c->end - start) {
            char ds[QD_DIGEST_STR_LEN + 1];
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob %s: chunk %u holds %zu bytes, the blob expects %llu",
                                qd_digest_format(ds, &r->digest), r->ci, raw_len,
                                (unsigned long long)(c->end - start));
        }
        if (used >= 0)
            r->slot[used].chunk = r->ci;
    }
    r->last_mapped = used < 0; /* no decode slot: the bytes are the map's */
    if (r->hdr.n_chunks > 2)
        readahead(r, r->ci + 1, used >= 0 ? used : 0);
    raw += r->pos - start;
    raw_len = (size_t)(c->end - r->pos);
    if (raw_len > max)
        raw_len = max;
    *data = raw;
    *len = raw_len;
    r->pos += raw_len;
    if (r->pos == c->end)
        r->ci++;
    return QD_OK;
}

bool qd_blob_reader_mapped(const qd_blob_reader *r) { return r->last_mapped; }

void qd_blob_reader_close(qd_blob_reader *r)
{
    if (!r)
        return;
    if (r->ra_started) {
        pthread_mutex_lock(&r->mu);
        while (r->ra_busy)
            pthread_cond_wait(&r->cv, &r->mu);
        r->ra_stop = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->ra, NULL);
    }
    qd_store__txn_end(r->s, r->txn);
    for (int i = 0; i < 2; i++) {
        ZSTD_freeDCtx(r->slot[i].dctx);
        qd_big_free(r->slot[i].buf, QD_CHUNK_DECODE_BUF);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    qd_free(r->chunks);
    qd_free(r);
}

int qd_store_get(qd_store *s, const qd_digest *d, uint64_t off, uint64_t len, qd_write_fn sink, void *payload)
{
    qd_blob_reader *r;
    uint64_t size, left;
    int rc = qd_blob_reader_open(&r, s, d);
    if (rc < 0)
        return rc;
    size = qd_blob_reader_size(r);
    if (off > size || (off == size && size > 0 && len)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_STORE, "range starts at %llu, past the end of the blob (%llu bytes)",
                          (unsigned long long)off, (unsigned long long)size);
        goto done;
    }
    if (len == UINT64_MAX)
        len = size - off;
    if (len > size - off) {
        rc = qd_error_set(QD_EINVAL, QD_EC_STORE, "range %llu+%llu runs past the end of the blob (%llu bytes)",
                          (unsigned long long)off, (unsigned long long)len, (unsigned long long)size);
        goto done;
    }
    if ((rc = qd_blob_reader_seek(r, off)) < 0)
        goto done;
    for (left = len; left;) {
        const void *p;
        size_t n;
        if ((rc = qd_blob_reader_next(r, left > SIZE_MAX ? SIZE_MAX : (size_t)left, &p, &n)) < 0)
            goto done;
        if (!n) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob ended early");
            goto done;
        }
        if ((rc = sink(p, n, payload)) < 0)
            goto done;
        left -= n;
    }
done:
    qd_blob_reader_close(r);
    return rc;
}
