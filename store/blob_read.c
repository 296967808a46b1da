/*
 * blob_read.c - reading blobs: stat, list, readers and ranged gets.
 *
 * A reader holds one read transaction, so what it reads is one consistent snapshot. Raw chunks are handed out as
 * pointers into LMDB's map (no copy); compressed chunks are decompressed once into the reader's buffer.
 */
#include <stddef.h>
#include <string.h>

#include <zstd.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "store_int.h"

struct qd_blob_reader {
    qd_store *s;
    MDB_txn *txn;
    qd_digest digest;
    const blob_hdr *hdr;
    const blob_chunk *chunks;
    uint64_t pos;
    uint32_t ci;           /* the chunk holding pos (== n_chunks at the end) */
    ZSTD_DCtx *dctx;
    uint8_t *dbuf;         /* QD_CHUNK_MAX bytes, allocated on the first compressed chunk */
    int64_t dbuf_chunk;    /* which chunk dbuf holds, -1 none */
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
    return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "chunk record has unknown codec %u", h.codec);
}

static int blob_lookup(qd_store *s, MDB_txn *txn, const qd_digest *d, const blob_hdr **h, const blob_chunk **c)
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
    const blob_hdr *h;
    const blob_chunk *c;
    int rc = qd_store__read_begin(s, &txn);
    if (rc < 0)
        return rc;
    rc = blob_lookup(s, txn, d, &h, &c);
    if (rc == QD_OK) {
        qd_store__blob_info(d, h, out);
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
        const blob_hdr *h;
        const blob_chunk *c;
        qd_blob_info info;
        if (k.mv_size != 32) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed blob key");
            break;
        }
        memcpy(d.bytes, k.mv_data, 32);
        if ((rc = qd_store__blob_parse(&d, &v, &h, &c)) < 0)
            break;
        qd_store__blob_info(&d, h, &info);
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
    r->dbuf_chunk = -1;
    if ((rc = qd_store__read_begin(s, &r->txn)) < 0) {
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

uint64_t qd_blob_reader_size(const qd_blob_reader *r) { return r->hdr->size; }

int qd_blob_reader_seek(qd_blob_reader *r, uint64_t off)
{
    uint32_t lo = 0, hi = r->hdr->n_chunks;
    if (off > r->hdr->size)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "offset %llu is past the end of the blob (%llu bytes)",
                            (unsigned long long)off, (unsigned long long)r->hdr->size);
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

int qd_blob_reader_next(qd_blob_reader *r, size_t max, const void **data, size_t *len)
{
    const blob_chunk *c;
    MDB_val k, v;
    const uint8_t *raw;
    size_t raw_len;
    uint64_t start;
    int rc;

    *data = NULL;
    *len = 0;
    if (r->pos >= r->hdr->size || max == 0)
        return QD_OK;
    c = &r->chunks[r->ci];
    start = r->ci ? r->chunks[r->ci - 1].end : 0;
    if (r->dbuf_chunk == (int64_t)r->ci) {
        raw = r->dbuf;
        raw_len = (size_t)(c->end - start);
    } else {
        k = (MDB_val){32, (void *)c->hash};
        rc = mdb_get(r->txn, r->s->db_chunks, &k, &v);
        if (rc == MDB_NOTFOUND) {
            char ds[QD_DIGEST_STR_LEN + 1];
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob %s: chunk %u is missing from the store",
                                qd_digest_format(ds, &r->digest), r->ci);
        }
        if (rc)
            return qd_store__err_mdb(rc, "read a chunk");
        /* LMDB values are only 2-byte aligned: read the codec byte, never through a chunk_hdr pointer */
        if (v.mv_size >= sizeof(chunk_hdr) && ((const uint8_t *)v.mv_data)[offsetof(chunk_hdr, codec)] == CODEC_ZSTD) {
            if (!r->dctx && !(r->dctx = ZSTD_createDCtx()))
                return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "zstd: cannot create a decompression context");
            if (!r->dbuf && !(r->dbuf = qd_big_alloc(QD_CHUNK_MAX)))
                return QD_ENOMEM;
        }
        if ((rc = qd_store__chunk_decode(&v, r->dctx, r->dbuf, &raw, &raw_len)) < 0)
            return rc;
        if (raw_len != c->end - start) {
            char ds[QD_DIGEST_STR_LEN + 1];
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob %s: chunk %u holds %zu bytes, the blob expects %llu",
                                qd_digest_format(ds, &r->digest), r->ci, raw_len,
                                (unsigned long long)(c->end - start));
        }
        if (raw == r->dbuf)
            r->dbuf_chunk = r->ci;
    }
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

void qd_blob_reader_close(qd_blob_reader *r)
{
    if (!r)
        return;
    qd_store__txn_end(r->s, r->txn);
    ZSTD_freeDCtx(r->dctx);
    qd_big_free(r->dbuf, QD_CHUNK_MAX);
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
