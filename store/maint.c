/*
 * maint.c - references between objects and blobs, removal, garbage collection, fsck and totals.
 */
#include <stdio.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include <zstd.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "store_int.h"

/* ---- references ------------------------------------------------------------------------------------------------ */

typedef struct ref_ctx {
    const qd_digest *from, *to;
} ref_ctx;

static void ref_key(uint8_t key[64], const ref_ctx *rc)
{
    memcpy(key, rc->to->bytes, 32);
    memcpy(key + 32, rc->from->bytes, 32);
}

static int ref_add_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    ref_ctx *c = payload;
    uint8_t key[64];
    MDB_val k = {32, (void *)c->to->bytes}, v;
    int rc = mdb_get(txn, s->db_blobs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        char ds[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "cannot reference %s: no such blob",
                            qd_digest_format(ds, c->to));
    }
    if (rc)
        return qd_store__err_mdb(rc, "look up a blob");
    ref_key(key, c);
    k = (MDB_val){64, key};
    v = (MDB_val){0, ""};
    if ((rc = mdb_put(txn, s->db_refs, &k, &v, 0)))
        return qd_store__err_mdb(rc, "write a reference");
    return QD_OK;
}

int qd_store_ref_add(qd_store *s, const qd_digest *from, const qd_digest *to)
{
    ref_ctx c = {from, to};
    return qd_store__write(s, ref_add_txn, &c);
}

static int ref_del_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    uint8_t key[64];
    MDB_val k = {64, key};
    int rc;
    ref_key(key, payload);
    rc = mdb_del(txn, s->db_refs, &k, NULL);
    if (rc == MDB_NOTFOUND)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no such reference");
    return rc ? qd_store__err_mdb(rc, "drop a reference") : QD_OK;
}

int qd_store_ref_del(qd_store *s, const qd_digest *from, const qd_digest *to)
{
    ref_ctx c = {from, to};
    return qd_store__write(s, ref_del_txn, &c);
}

/* ---- removal and GC -------------------------------------------------------------------------------------------- */

typedef struct remove_ctx {
    const qd_digest *d;
    int free_now; /* no writer in flight: free chunks whose count reaches zero */
} remove_ctx;

static int drop_chunk(qd_store *s, MDB_txn *txn, const uint8_t hash[32])
{
    MDB_val k = {32, (void *)hash};
    int rc = mdb_del(txn, s->db_chunks, &k, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return qd_store__err_mdb(rc, "drop a chunk");
    return QD_OK;
}

static int remove_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    remove_ctx *c = payload;
    MDB_val k = {32, (void *)c->d->bytes}, v;
    const blob_hdr *h;
    const blob_chunk *ch;
    blob_chunk *copy = NULL;
    uint64_t refs;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc = mdb_get(txn, s->db_blobs, &k, &v);

    if (rc == MDB_NOTFOUND)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no blob %s in the store", qd_digest_format(ds, c->d));
    if (rc)
        return qd_store__err_mdb(rc, "look up a blob");
    if ((rc = qd_store__blob_parse(c->d, &v, &h, &ch)) < 0)
        return rc;
    if ((rc = qd_store__count_referrers(s, txn, c->d, &refs)) < 0)
        return rc;
    if (refs)
        return qd_error_set(QD_EREFERENCED, QD_EC_STORE, "blob %s is referenced by %llu object(s): remove them first",
                            qd_digest_format(ds, c->d), (unsigned long long)refs);
    /* the record lives in the map; copy the chunk list before we modify the tree */
    if (h->n_chunks && !(copy = qd_mallocarray(h->n_chunks, sizeof(*copy))))
        return QD_ENOMEM;
    uint32_t n = h->n_chunks;
    if (n)
        memcpy(copy, ch, n * sizeof(*copy));
    if ((rc = mdb_del(txn, s->db_blobs, &k, NULL))) {
        rc = qd_store__err_mdb(rc, "drop a blob record");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint64_t left;
        if ((rc = qd_store__chunk_refs_add(s, txn, copy[i].hash, -1, &left)) < 0)
            goto done;
        if (!left && c->free_now && (rc = drop_chunk(s, txn, copy[i].hash)) < 0)
            goto done;
    }
done:
    qd_free(copy);
    return rc;
}

int qd_store_remove(qd_store *s, const qd_digest *d)
{
    remove_ctx c = {d, 0};
    int rc;
    if (s->flags & QD_STORE_RDONLY)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "the store %s is open read-only", s->path);
    c.free_now = pthread_rwlock_trywrlock(&s->put_lock) == 0;
    rc = qd_store__write(s, remove_txn, &c);
    if (c.free_now)
        pthread_rwlock_unlock(&s->put_lock);
    return rc;
}

typedef struct gc_ctx {
    qd_gc_stats st;
    uint8_t resume[32];
    int has_resume;
    int done;
} gc_ctx;

/* One bounded transaction: scan chunks from the resume point and drop up to 4096 unreferenced ones. */
static int gc_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    gc_ctx *g = payload;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc, mrc, dropped = 0;

    if ((mrc = mdb_cursor_open(txn, s->db_chunks, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    if (g->has_resume) {
        k = (MDB_val){32, g->resume};
        mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    rc = QD_OK;
    while (mrc == 0) {
        uint64_t refs;
        if (k.mv_size != 32) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed chunk key");
            break;
        }
        if ((rc = qd_store__chunk_refs_get(s, txn, k.mv_data, &refs)) < 0)
            break;
        if (!refs) {
            g->st.chunks_freed++;
            g->st.bytes_freed += v.mv_size > sizeof(chunk_hdr) ? v.mv_size - sizeof(chunk_hdr) : 0;
            if ((mrc = mdb_cursor_del(cur, 0))) {
                rc = qd_store__err_mdb(mrc, "drop a chunk");
                break;
            }
            if (++dropped >= 4096) {
                mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
                if (mrc == 0 && k.mv_size == 32) {
                    memcpy(g->resume, k.mv_data, 32);
                    g->has_resume = 1;
                    mdb_cursor_close(cur);
                    return QD_OK;
                }
                break;
            }
            mrc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
            if (mrc == EINVAL) /* deleted the last item */
                mrc = MDB_NOTFOUND;
            continue;
        }
        mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc == QD_OK && mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "scan chunks");
    if (rc == QD_OK)
        g->done = 1;
    return rc;
}

int qd_store_gc(qd_store *s, qd_gc_stats *out)
{
    gc_ctx g;
    int rc = QD_OK;
    if (s->flags & QD_STORE_RDONLY)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "the store %s is open read-only", s->path);
    memset(&g, 0, sizeof(g));
    pthread_rwlock_wrlock(&s->put_lock);
    while (!g.done) {
        gc_ctx before = g;
        rc = qd_store__write(s, gc_txn, &g);
        if (rc < 0) {
            g = before;
            break;
        }
        if (!g.done && g.st.chunks_freed == before.st.chunks_freed)
            break;
    }
    pthread_rwlock_unlock(&s->put_lock);
    if (out)
        *out = g.st;
    return rc;
}

/* ---- fsck ------------------------------------------------------------------------------------------------------ */

/* An open-addressing map from chunk hash to the number of blob chunk-list entries naming it. */
typedef struct tally_ent {
    uint8_t hash[32];
    uint64_t expected;
    uint8_t used;
    uint8_t seen; /* the chunk exists */
} tally_ent;

typedef struct tally {
    tally_ent *e;
    size_t cap, n;
} tally;

static uint64_t hash_of(const uint8_t h[32])
{
    uint64_t x;
    memcpy(&x, h, 8); /* the key is already a cryptographic hash */
    return x;
}

static int tally_get(tally *t, const uint8_t h[32], tally_ent **out)
{
    size_t i;
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 1024;
        tally_ent *ne = qd_calloc(ncap, sizeof(*ne));
        if (!ne)
            return QD_ENOMEM;
        for (size_t j = 0; j < t->cap; j++) {
            if (!t->e[j].used)
                continue;
            for (i = hash_of(t->e[j].hash) & (ncap - 1); ne[i].used; i = (i + 1) & (ncap - 1))
                ;
            ne[i] = t->e[j];
        }
        qd_free(t->e);
        t->e = ne;
        t->cap = ncap;
    }
    for (i = hash_of(h) & (t->cap - 1); t->e[i].used; i = (i + 1) & (t->cap - 1)) {
        if (!memcmp(t->e[i].hash, h, 32)) {
            *out = &t->e[i];
            return QD_OK;
        }
    }
    memcpy(t->e[i].hash, h, 32);
    t->e[i].used = 1;
    t->n++;
    *out = &t->e[i];
    return QD_OK;
}

typedef struct fsck_ctx {
    qd_fsck_fn fn;
    void *payload;
    qd_fsck_stats st;
} fsck_ctx;

static void finding(fsck_ctx *f, qd_fsck_kind kind, const uint8_t *obj, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void finding(fsck_ctx *f, qd_fsck_kind kind, const uint8_t *obj, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    qd_digest d;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (kind == QD_FSCK_PROBLEM)
        f->st.problems++;
    if (obj)
        memcpy(d.bytes, obj, 32);
    if (f->fn)
        f->fn(kind, obj ? &d : NULL, msg, f->payload);
}

static int fsck_chunks(qd_store *s, MDB_txn *txn, fsck_ctx *f, tally *t, ZSTD_DCtx *dctx, uint8_t *dbuf)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc, rc = QD_OK;

    if ((mrc = mdb_cursor_open(txn, s->db_chunks, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *raw;
        size_t raw_len;
        qd_digest h;
        tally_ent *te;
        f->st.chunks++;
        if (k.mv_size != 32) {
            finding(f, QD_FSCK_PROBLEM, NULL, "a chunk key of %zu bytes (expected 32)", k.mv_size);
            continue;
        }
        if ((rc = tally_get(t, k.mv_data, &te)) < 0)
            break;
        te->seen = 1;
        if (qd_store__chunk_decode(&v, dctx, dbuf, &raw, &raw_len) < 0) {
            finding(f, QD_FSCK_PROBLEM, k.mv_data, "chunk cannot be decoded: %s", qd_error_last()->message);
            continue;
        }
        if ((rc = qd_sha256_buf(&h, raw, raw_len)) < 0)
            break;
        f->st.bytes_hashed += raw_len;
        if (memcmp(h.bytes, k.mv_data, 32))
            finding(f, QD_FSCK_PROBLEM, k.mv_data, "chunk content does not match its hash (%zu bytes)", raw_len);
    }
    if (rc == QD_OK && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "scan chunks");
    mdb_cursor_close(cur);
    return rc;
}

static int fsck_blobs(qd_store *s, MDB_txn *txn, fsck_ctx *f, tally *t, ZSTD_DCtx *dctx, uint8_t *dbuf)
{
    MDB_cursor *cur;
    MDB_val k, v;
    qd_sha256 *sh = NULL;
    int mrc, rc;

    if ((rc = qd_sha256_new(&sh)) < 0)
        return rc;
    if ((mrc = mdb_cursor_open(txn, s->db_blobs, &cur))) {
        qd_sha256_free(sh);
        return qd_store__err_mdb(mrc, "open a cursor");
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        qd_digest d, got;
        const blob_hdr *h;
        const blob_chunk *c;
        int broken = 0;
        uint64_t prev = 0;

        f->st.blobs++;
        if (k.mv_size != 32) {
            finding(f, QD_FSCK_PROBLEM, NULL, "a blob key of %zu bytes (expected 32)", k.mv_size);
            continue;
        }
        memcpy(d.bytes, k.mv_data, 32);
        if (qd_store__blob_parse(&d, &v, &h, &c) < 0) {
            finding(f, QD_FSCK_PROBLEM, d.bytes, "blob record is malformed");
            continue;
        }
        if ((rc = qd_sha256_reset(sh)) < 0)
            break;
        for (uint32_t i = 0; i < h->n_chunks; i++) {
            MDB_val ck = {32, (void *)c[i].hash}, cv;
            tally_ent *te;
            const uint8_t *raw;
            size_t raw_len;
            if ((rc = tally_get(t, c[i].hash, &te)) < 0)
                goto out;
            te->expected++;
            if (broken)
                continue;
            if (mdb_get(txn, s->db_chunks, &ck, &cv)) {
                finding(f, QD_FSCK_PROBLEM, d.bytes, "blob is missing its chunk %u", i);
                broken = 1;
                continue;
            }
            if (qd_store__chunk_decode(&cv, dctx, dbuf, &raw, &raw_len) < 0 || raw_len != c[i].end - prev) {
                finding(f, QD_FSCK_PROBLEM, d.bytes, "blob chunk %u is unreadable or of the wrong size", i);
                broken = 1;
                continue;
            }
            prev = c[i].end;
            if ((rc = qd_sha256_update(sh, raw, raw_len)) < 0)
                goto out;
            f->st.bytes_hashed += raw_len;
        }
        if (broken)
            continue;
        if ((rc = qd_sha256_final(sh, &got)) < 0)
            break;
        if (!qd_digest_equal(&got, &d))
            finding(f, QD_FSCK_PROBLEM, d.bytes, "blob content does not match its digest");
    }
    rc = mrc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(mrc, "scan blobs");
out:
    mdb_cursor_close(cur);
    qd_sha256_free(sh);
    return rc;
}

static int fsck_counts(qd_store *s, MDB_txn *txn, fsck_ctx *f, tally *t)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc, rc = QD_OK;

    /* every stored count must equal the recomputed one, and name an existing chunk */
    if ((mrc = mdb_cursor_open(txn, s->db_chunk_refs, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        tally_ent *te;
        uint64_t n;
        if (k.mv_size != 32 || v.mv_size != 8) {
            finding(f, QD_FSCK_PROBLEM, NULL, "a malformed chunk reference count");
            continue;
        }
        memcpy(&n, v.mv_data, 8);
        if ((rc = tally_get(t, k.mv_data, &te)) < 0)
            break;
        if (!te->seen)
            finding(f, QD_FSCK_PROBLEM, k.mv_data, "reference count %llu for a chunk that does not exist",
                    (unsigned long long)n);
        else if (n != te->expected)
            finding(f, QD_FSCK_PROBLEM, k.mv_data, "chunk reference count is %llu, blobs name it %llu time(s)",
                    (unsigned long long)n, (unsigned long long)te->expected);
        te->expected |= 1ull << 63; /* mark: count checked */
    }
    mdb_cursor_close(cur);
    if (rc < 0)
        return rc;
    if (mrc != MDB_NOTFOUND)
        return qd_store__err_mdb(mrc, "scan reference counts");
    for (size_t i = 0; i < t->cap; i++) {
        tally_ent *te = &t->e[i];
        uint64_t expected;
        if (!te->used)
            continue;
        expected = te->expected & ~(1ull << 63);
        if (te->expected >> 63)
            continue;
        if (expected && te->seen)
            finding(f, QD_FSCK_PROBLEM, te->hash, "chunk has no reference count, blobs name it %llu time(s)",
                    (unsigned long long)expected);
        else if (!expected && te->seen) {
            MDB_val ck = {32, te->hash}, cv;
            f->st.garbage_chunks++;
            if (mdb_get(txn, s->db_chunks, &ck, &cv) == 0 && cv.mv_size > sizeof(chunk_hdr))
                f->st.garbage_bytes += cv.mv_size - sizeof(chunk_hdr);
            finding(f, QD_FSCK_GARBAGE, te->hash, "chunk is not referenced by any blob (gc removes it)");
        }
        /* expected && !seen: reported as a missing chunk while checking its blob */
    }
    return QD_OK;
}

static int fsck_refs(qd_store *s, MDB_txn *txn, fsck_ctx *f)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc;
    if ((mrc = mdb_cursor_open(txn, s->db_refs, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        MDB_val bk = {32, k.mv_data}, bv;
        f->st.references++;
        if (k.mv_size != 64) {
            finding(f, QD_FSCK_PROBLEM, NULL, "a malformed reference key");
            continue;
        }
        if (mdb_get(txn, s->db_blobs, &bk, &bv))
            finding(f, QD_FSCK_PROBLEM, k.mv_data, "a reference names this blob, which does not exist");
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(mrc, "scan references");
}

int qd_store_fsck(qd_store *s, unsigned flags, qd_fsck_fn fn, void *payload, qd_fsck_stats *out)
{
    fsck_ctx f;
    tally t = {NULL, 0, 0};
    MDB_txn *txn = NULL;
    ZSTD_DCtx *dctx = NULL;
    uint8_t *dbuf = NULL;
    int rc;

    memset(&f, 0, sizeof(f));
    f.fn = fn;
    f.payload = payload;
    if ((flags & QD_FSCK_REPAIR) && (s->flags & QD_STORE_RDONLY))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "cannot repair a store opened read-only");
    if (!(dctx = ZSTD_createDCtx()) || !(dbuf = qd_big_alloc(QD_CHUNK_MAX))) {
        rc = dctx ? QD_ENOMEM : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "zstd: cannot create a context");
        goto done;
    }
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        goto done;
    if ((rc = fsck_chunks(s, txn, &f, &t, dctx, dbuf)) < 0 || (rc = fsck_blobs(s, txn, &f, &t, dctx, dbuf)) < 0 ||
        (rc = fsck_counts(s, txn, &f, &t)) < 0 || (rc = fsck_refs(s, txn, &f)) < 0)
        goto done;
    qd_store__txn_end(s, txn);
    txn = NULL;
    if ((flags & QD_FSCK_REPAIR) && f.st.garbage_chunks) {
        qd_gc_stats g;
        if ((rc = qd_store_gc(s, &g)) < 0)
            goto done;
        f.st.repaired = g.chunks_freed;
    }
    rc = f.st.problems ? qd_error_set(QD_ECORRUPT, QD_EC_STORE, "fsck found %llu problem(s)",
                                      (unsigned long long)f.st.problems)
                       : QD_OK;
done:
    qd_store__txn_end(s, txn);
    ZSTD_freeDCtx(dctx);
    qd_big_free(dbuf, QD_CHUNK_MAX);
    qd_free(t.e);
    if (out)
        *out = f.st;
    return rc;
}

/* ---- totals ---------------------------------------------------------------------------------------------------- */

int qd_store_stats_get(qd_store *s, qd_store_stats *out)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_envinfo info;
    MDB_stat ms;
    struct stat st;
    char dp[4096];
    int rc, mrc;

    memset(out, 0, sizeof(*out));
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((mrc = mdb_cursor_open(txn, s->db_blobs, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        out->blobs++;
        if (v.mv_size >= sizeof(blob_hdr)) { /* LMDB values are only 2-byte aligned: copy, never dereference */
            uint64_t size;
            memcpy(&size, (const uint8_t *)v.mv_data + offsetof(blob_hdr, size), sizeof(size));
            out->logical_bytes += size;
        }
    }
    mdb_cursor_close(cur);
    if ((mrc = mdb_cursor_open(txn, s->db_chunks, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        out->chunks++;
        if (v.mv_size > sizeof(chunk_hdr))
            out->chunk_bytes += v.mv_size - sizeof(chunk_hdr);
    }
    mdb_cursor_close(cur);
    mdb_stat(txn, s->db_meta, &ms);
    {
        MDB_val mk = {6, "schema"}, mv;
        if (mdb_get(txn, s->db_meta, &mk, &mv) == 0 && mv.mv_size == 4)
            memcpy(&out->schema_version, mv.mv_data, 4);
    }
    mdb_env_info(s->env, &info);
    out->map_size = info.me_mapsize;
    snprintf(dp, sizeof(dp), "%s/data.mdb", s->path);
    if (stat(dp, &st) == 0)
        out->file_bytes = (uint64_t)st.st_size;
done:
    qd_store__txn_end(s, txn);
    return rc;
}
