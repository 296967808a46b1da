/*
 * audit.c - the audit indexes (see include/qd/audit.h for the why; docs/STORE.md for the layout).
 *
 * Layout of the `audit` database (integers big-endian inside keys so that byte order is numeric order; digests as
 * 32 raw bytes):
 *
 *   'R' d                                  -> record: rec_hdr, then NUL-terminated strings (repo, method, format,
 *                                             calibration, converter, converter_version, verdict, created_at,
 *                                             n_hardware hardware targets, n_keys key ids)
 *   'I' field value NUL created(8) d       -> ""   one per indexed (field, value) of artifact d
 *   'C' field value                        -> u64 LE: how many 'I' keys share (field, value) (the selectivity)
 *   'T' created(8) d                       -> ""   every artifact by publish time
 *   'D' parent child                       -> ""   lineage, parent -> child (child -> parent is the `lineage` db)
 *
 * field is one byte: m method, f format, b bits (decimal text), c calibration class, v converter name,
 * V converter version, h hardware target, k signing key id, r verdict, n namespace (each '/'-prefix of the
 * repository and the repository itself). Values never contain NUL, so 'I' field value NUL is an exact prefix.
 *
 * A query with fields picks the (field, value) with the smallest count as its driver, seeks to
 * 'I' field value NUL since and walks forward; for each key it checks the other fields by mdb_get of their exact
 * keys (same created and digest), then reads 'R' d. All results come in (created, digest) order whichever index
 * drives, so a page cursor is just (created, digest).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/audit.h"
#include "qd/err.h"
#include "qd/registry.h"
#include "qd/verify.h"
#include "store_int.h"

#define REC_MAGIC 0x31414451u /* "QDA1" */
#define IKEY_MAX (2 + QD_REPO_MAX + 1 + 8 + 32)
#define SCAN_MAX 200000       /* index keys one query page may read before it returns with a cursor */
#define REBUILD_BATCH 512

typedef struct rec_hdr {
    uint32_t magic;
    int32_t bits;
    int64_t created;
    uint8_t has_bundle, has_source, n_hardware, n_keys;
    uint8_t pad[4];
    uint8_t bundle[32];
    uint8_t source[32];
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == 88, "rec_hdr layout");

enum {
    F_METHOD = 'm',
    F_FORMAT = 'f',
    F_BITS = 'b',
    F_CALIB = 'c',
    F_CONV = 'v',
    F_CONVVER = 'V',
    F_HW = 'h',
    F_KEY = 'k',
    F_VERDICT = 'r',
    F_NS = 'n'
};

static const char *field_name(int f)
{
    switch (f) {
    case F_METHOD: return "method";
    case F_FORMAT: return "format";
    case F_BITS: return "bits";
    case F_CALIB: return "calibration";
    case F_CONV: return "converter";
    case F_CONVVER: return "converter_version";
    case F_HW: return "hardware";
    case F_KEY: return "key";
    case F_VERDICT: return "verdict";
    case F_NS: return "namespace";
    default: return "time";
    }
}

/* ---- keys ------------------------------------------------------------------------------------------------------ */

typedef struct ikey {
    uint8_t b[IKEY_MAX];
    size_t n;
} ikey;

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t rd_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint64_t tkey(int64_t t) { return t < 0 ? 0 : (uint64_t)t; }

/* 'C' field value, or 'I' field value NUL (the index prefix) when index */
static int key_fv(ikey *k, char kind, int field, const char *value)
{
    size_t vl = strlen(value);
    if (vl == 0 || vl > QD_REPO_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "audit %s: a value must have 1 to %d bytes", field_name(field),
                            QD_REPO_MAX);
    k->b[0] = (uint8_t)kind;
    k->b[1] = (uint8_t)field;
    memcpy(k->b + 2, value, vl);
    k->n = 2 + vl;
    if (kind == 'I')
        k->b[k->n++] = 0;
    return QD_OK;
}

static void key_tail(ikey *k, int64_t created, const qd_digest *d)
{
    be64(k->b + k->n, tkey(created));
    memcpy(k->b + k->n + 8, d->bytes, 32);
    k->n += 40;
}

static MDB_val kv(const ikey *k) { return (MDB_val){k->n, (void *)k->b}; }

/* ---- the (field, value) pairs of an entry ------------------------------------------------------------------- */

typedef struct fv {
    int field;
    char value[QD_REPO_MAX + 1];
} fv;

#define FV_MAX (8 + 2 * QD_AUDIT_LIST_MAX + 32)

static void fv_add(fv *a, size_t *n, int field, const char *value)
{
    if (!value || !*value || *n >= FV_MAX)
        return;
    for (size_t i = 0; i < *n; i++) /* a value listed twice is indexed once */
        if (a[i].field == field && !strcmp(a[i].value, value))
            return;
    a[*n].field = field;
    snprintf(a[*n].value, sizeof(a[*n].value), "%s", value);
    (*n)++;
}

static size_t entry_fvs(fv *a, const qd_audit_entry *e)
{
    size_t n = 0;
    char bits[16], ns[QD_REPO_MAX + 1];
    fv_add(a, &n, F_METHOD, e->method);
    fv_add(a, &n, F_FORMAT, e->format);
    if (e->bits > 0) {
        snprintf(bits, sizeof(bits), "%d", e->bits);
        fv_add(a, &n, F_BITS, bits);
    }
    fv_add(a, &n, F_CALIB, e->calibration);
    fv_add(a, &n, F_CONV, e->converter);
    fv_add(a, &n, F_CONVVER, e->converter_version);
    fv_add(a, &n, F_VERDICT, e->verdict);
    for (size_t i = 0; i < e->n_hardware && i < QD_AUDIT_LIST_MAX; i++)
        fv_add(a, &n, F_HW, e->hardware[i]);
    for (size_t i = 0; i < e->n_keys && i < QD_AUDIT_LIST_MAX; i++)
        fv_add(a, &n, F_KEY, e->keys[i]);
    snprintf(ns, sizeof(ns), "%s", e->repo);
    for (char *p = ns; *p; p++)
        if (*p == '/') {
            *p = 0;
            fv_add(a, &n, F_NS, ns);
            *p = '/';
        }
    fv_add(a, &n, F_NS, ns);
    return n;
}

/* ---- records ------------------------------------------------------------------------------------------------- */

static size_t rec_size(const qd_audit_entry *e)
{
    size_t n = sizeof(rec_hdr);
    n += strlen(e->repo) + strlen(e->method) + strlen(e->format) + strlen(e->calibration) + strlen(e->converter) +
         strlen(e->converter_version) + strlen(e->verdict) + strlen(e->created_at) + 8;
    for (size_t i = 0; i < e->n_hardware; i++)
        n += strlen(e->hardware[i]) + 1;
    for (size_t i = 0; i < e->n_keys; i++)
        n += strlen(e->keys[i]) + 1;
    return n;
}

static uint8_t *put_str(uint8_t *p, const char *s)
{
    size_t l = strlen(s) + 1;
    memcpy(p, s, l);
    return p + l;
}

static void rec_write(uint8_t *p, const qd_audit_entry *e)
{
    rec_hdr h;
    memset(&h, 0, sizeof(h));
    h.magic = REC_MAGIC;
    h.bits = e->bits;
    h.created = e->created;
    h.has_bundle = e->has_bundle;
    h.has_source = e->has_source;
    h.n_hardware = (uint8_t)e->n_hardware;
    h.n_keys = (uint8_t)e->n_keys;
    if (e->has_bundle)
        memcpy(h.bundle, e->bundle.bytes, 32);
    if (e->has_source)
        memcpy(h.source, e->source.bytes, 32);
    memcpy(p, &h, sizeof(h));
    p += sizeof(h);
    p = put_str(p, e->repo);
    p = put_str(p, e->method);
    p = put_str(p, e->format);
    p = put_str(p, e->calibration);
    p = put_str(p, e->converter);
    p = put_str(p, e->converter_version);
    p = put_str(p, e->verdict);
    p = put_str(p, e->created_at);
    for (size_t i = 0; i < e->n_hardware; i++)
        p = put_str(p, e->hardware[i]);
    for (size_t i = 0; i < e->n_keys; i++)
        p = put_str(p, e->keys[i]);
}

static int get_str(char *dst, size_t cap, const uint8_t **p, const uint8_t *end)
{
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    size_t l;
    if (!z)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "an audit record is malformed");
    l = (size_t)(z - *p);
    if (l >= cap)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "an audit record holds an over-long value");
    memcpy(dst, *p, l + 1);
    *p = z + 1;
    return QD_OK;
}

static int rec_parse(qd_audit_entry *e, const qd_digest *d, const MDB_val *v)
{
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    rec_hdr h;
    int rc = QD_OK;
    if (v->mv_size < sizeof(h))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "an audit record is truncated");
    memcpy(&h, p, sizeof(h));
    if (h.magic != REC_MAGIC || h.n_hardware > QD_AUDIT_LIST_MAX || h.n_keys > QD_AUDIT_LIST_MAX)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "an audit record is malformed");
    memset(e, 0, sizeof(*e));
    e->manifest = *d;
    e->bits = h.bits;
    e->created = h.created;
    e->has_bundle = h.has_bundle;
    e->has_source = h.has_source;
    memcpy(e->bundle.bytes, h.bundle, 32);
    memcpy(e->source.bytes, h.source, 32);
    e->n_hardware = h.n_hardware;
    e->n_keys = h.n_keys;
    p += sizeof(h);
    if ((rc = get_str(e->repo, sizeof(e->repo), &p, end)) < 0 ||
        (rc = get_str(e->method, sizeof(e->method), &p, end)) < 0 ||
        (rc = get_str(e->format, sizeof(e->format), &p, end)) < 0 ||
        (rc = get_str(e->calibration, sizeof(e->calibration), &p, end)) < 0 ||
        (rc = get_str(e->converter, sizeof(e->converter), &p, end)) < 0 ||
        (rc = get_str(e->converter_version, sizeof(e->converter_version), &p, end)) < 0 ||
        (rc = get_str(e->verdict, sizeof(e->verdict), &p, end)) < 0 ||
        (rc = get_str(e->created_at, sizeof(e->created_at), &p, end)) < 0)
        return rc;
    for (size_t i = 0; i < e->n_hardware; i++)
        if ((rc = get_str(e->hardware[i], sizeof(e->hardware[i]), &p, end)) < 0)
            return rc;
    for (size_t i = 0; i < e->n_keys; i++)
        if ((rc = get_str(e->keys[i], sizeof(e->keys[i]), &p, end)) < 0)
            return rc;
    return QD_OK;
}

static int no_index(qd_store *s)
{
    if (s->has_audit_db)
        return QD_OK;
    return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "the store has no audit index yet (open it read-write once)");
}

static int rec_get(MDB_txn *txn, qd_store *s, const qd_digest *d, qd_audit_entry *e)
{
    uint8_t kb[33];
    MDB_val k = {33, kb}, v;
    int rc;
    kb[0] = 'R';
    memcpy(kb + 1, d->bytes, 32);
    if ((rc = mdb_get(txn, s->db_audit, &k, &v)) == MDB_NOTFOUND)
        return QD_ENOTFOUND;
    if (rc)
        return qd_store__err_mdb(rc, "read an audit record");
    return e ? rec_parse(e, d, &v) : QD_OK;
}

/* ---- writes inside a transaction ---------------------------------------------------------------------------- */

static int count_add(MDB_txn *txn, qd_store *s, int field, const char *value, int64_t delta)
{
    ikey k;
    MDB_val mk, v;
    uint64_t n = 0;
    int rc;
    if ((rc = key_fv(&k, 'C', field, value)) < 0)
        return rc;
    mk = kv(&k);
    rc = mdb_get(txn, s->db_audit, &mk, &v);
    if (rc == 0 && v.mv_size == 8)
        memcpy(&n, v.mv_data, 8);
    else if (rc && rc != MDB_NOTFOUND)
        return qd_store__err_mdb(rc, "read an audit count");
    n = delta < 0 && n < (uint64_t)-delta ? 0 : n + (uint64_t)delta;
    if (n == 0) {
        rc = mdb_del(txn, s->db_audit, &mk, NULL);
        return rc && rc != MDB_NOTFOUND ? qd_store__err_mdb(rc, "delete an audit count") : QD_OK;
    }
    v = (MDB_val){8, &n};
    rc = mdb_put(txn, s->db_audit, &mk, &v, 0);
    return rc ? qd_store__err_mdb(rc, "write an audit count") : QD_OK;
}

static int put_empty(MDB_txn *txn, qd_store *s, MDB_dbi db, const uint8_t *kb, size_t n)
{
    MDB_val k = {n, (void *)kb}, v = {0, (void *)""};
    int rc = mdb_put(txn, db, &k, &v, 0);
    (void)s;
    return rc ? qd_store__err_mdb(rc, "write an audit key") : QD_OK;
}

static int del_key(MDB_txn *txn, qd_store *s, MDB_dbi db, const uint8_t *kb, size_t n)
{
    MDB_val k = {n, (void *)kb};
    int rc = mdb_del(txn, db, &k, NULL);
    (void)s;
    return rc && rc != MDB_NOTFOUND ? qd_store__err_mdb(rc, "delete an audit key") : QD_OK;
}

/* Remove the index keys of e (as stored). */
static int unindex(MDB_txn *txn, qd_store *s, const qd_audit_entry *e)
{
    fv a[FV_MAX];
    size_t n = entry_fvs(a, e);
    uint8_t tk[41];
    ikey k;
    int rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = key_fv(&k, 'I', a[i].field, a[i].value)) < 0)
            return rc;
        key_tail(&k, e->created, &e->manifest);
        if ((rc = del_key(txn, s, s->db_audit, k.b, k.n)) < 0 ||
            (rc = count_add(txn, s, a[i].field, a[i].value, -1)) < 0)
            return rc;
    }
    tk[0] = 'T';
    be64(tk + 1, tkey(e->created));
    memcpy(tk + 9, e->manifest.bytes, 32);
    if ((rc = del_key(txn, s, s->db_audit, tk, 41)) < 0)
        return rc;
    tk[0] = 'R';
    memcpy(tk + 1, e->manifest.bytes, 32);
    return del_key(txn, s, s->db_audit, tk, 33);
}

static int check_entry(const qd_audit_entry *e)
{
    if (!e->repo[0])
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "an audit entry needs its repository");
    if (e->n_hardware > QD_AUDIT_LIST_MAX || e->n_keys > QD_AUDIT_LIST_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "an audit entry lists too many targets or keys");
    if (e->bits < 0 || e->bits > 64)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "an audit entry's bits must be 0..64");
    return QD_OK;
}

int qd_audit__index_in_txn(qd_store *s, MDB_txn *txn, const qd_audit_entry *e)
{
    qd_audit_entry *old = NULL;
    fv a[FV_MAX];
    size_t n, len;
    uint8_t kb[65];
    ikey k;
    MDB_val mk, v;
    int rc;

    if ((rc = check_entry(e)) < 0)
        return rc;
    if (!(old = qd_malloc(sizeof(*old))))
        return QD_ENOMEM;
    rc = rec_get(txn, s, &e->manifest, old);
    if (rc == QD_OK)
        rc = unindex(txn, s, old);
    else if (rc == QD_ENOTFOUND)
        rc = QD_OK;
    qd_free(old);
    if (rc < 0)
        return rc;

    n = entry_fvs(a, e);
    for (size_t i = 0; i < n; i++) {
        if ((rc = key_fv(&k, 'I', a[i].field, a[i].value)) < 0)
            return rc;
        key_tail(&k, e->created, &e->manifest);
        if ((rc = put_empty(txn, s, s->db_audit, k.b, k.n)) < 0 ||
            (rc = count_add(txn, s, a[i].field, a[i].value, 1)) < 0)
            return rc;
    }
    kb[0] = 'T';
    be64(kb + 1, tkey(e->created));
    memcpy(kb + 9, e->manifest.bytes, 32);
    if ((rc = put_empty(txn, s, s->db_audit, kb, 41)) < 0)
        return rc;
    kb[0] = 'R';
    memcpy(kb + 1, e->manifest.bytes, 32);
    len = rec_size(e);
    mk = (MDB_val){33, kb};
    v = (MDB_val){len, NULL};
    if ((rc = mdb_put(txn, s->db_audit, &mk, &v, MDB_RESERVE)))
        return qd_store__err_mdb(rc, "write an audit record");
    rec_write(v.mv_data, e);
    if (e->has_source)
        return qd_audit__edge_in_txn(s, txn, &e->manifest, &e->source);
    return QD_OK;
}

int qd_audit__edge_in_txn(qd_store *s, MDB_txn *txn, const qd_digest *child, const qd_digest *parent)
{
    uint8_t kb[65];
    int rc;
    memcpy(kb, child->bytes, 32);
    memcpy(kb + 32, parent->bytes, 32);
    if ((rc = put_empty(txn, s, s->db_lineage, kb, 64)) < 0)
        return rc;
    kb[0] = 'D';
    memcpy(kb + 1, parent->bytes, 32);
    memcpy(kb + 33, child->bytes, 32);
    return put_empty(txn, s, s->db_audit, kb, 65);
}

int qd_audit__forget_in_txn(qd_store *s, MDB_txn *txn, const qd_digest *manifest, const qd_digest *subject)
{
    qd_audit_entry *e = qd_malloc(sizeof(*e));
    int rc;
    if (!e)
        return QD_ENOMEM;
    rc = rec_get(txn, s, manifest, e);
    if (rc == QD_OK)
        rc = unindex(txn, s, e);
    /* a bundle manifest going away takes the entry it carried */
    if ((rc == QD_OK || rc == QD_ENOTFOUND) && subject) {
        rc = rec_get(txn, s, subject, e);
        if (rc == QD_OK && e->has_bundle && !memcmp(e->bundle.bytes, manifest->bytes, 32))
            rc = unindex(txn, s, e);
    }
    qd_free(e);
    return rc == QD_ENOTFOUND ? QD_OK : rc;
}

/* ---- public writes ------------------------------------------------------------------------------------------- */

typedef struct many_ctx {
    const qd_audit_entry *e;
    size_t n;
} many_ctx;

static int many_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    many_ctx *c = payload;
    int rc;
    for (size_t i = 0; i < c->n; i++)
        if ((rc = qd_audit__index_in_txn(s, txn, &c->e[i])) < 0)
            return rc;
    return QD_OK;
}

int qd_audit_index_put_many(qd_store *s, const qd_audit_entry *e, size_t n)
{
    many_ctx c = {e, n};
    return qd_store__write(s, many_txn, &c);
}

int qd_audit_index_put(qd_store *s, const qd_audit_entry *e) { return qd_audit_index_put_many(s, e, 1); }

static int remove_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    qd_audit_entry *e = qd_malloc(sizeof(*e));
    int rc;
    if (!e)
        return QD_ENOMEM;
    rc = rec_get(txn, s, payload, e);
    if (rc == QD_OK)
        rc = unindex(txn, s, e);
    else if (rc == QD_ENOTFOUND)
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "the artifact is not indexed");
    qd_free(e);
    return rc;
}

int qd_audit_index_remove(qd_store *s, const qd_digest *manifest)
{
    return qd_store__write(s, remove_txn, (void *)manifest);
}

int qd_audit_index_get(qd_audit_entry *out, qd_store *s, const qd_digest *manifest)
{
    MDB_txn *txn;
    int rc;
    if ((rc = no_index(s)) < 0 || (rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    rc = rec_get(txn, s, manifest, out);
    if (rc == QD_ENOTFOUND)
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "the artifact is not indexed");
    qd_store__txn_end(s, txn);
    return rc;
}

/* ---- queries ------------------------------------------------------------------------------------------------- */

typedef struct cond {
    int field;
    const char *value;
    uint64_t count;
} cond;

static int cursor_parse(const char *c, uint64_t *t, qd_digest *d)
{
    char *end;
    unsigned long long v;
    if (strlen(c) < 2 + 64 || strlen(c) > 20 + 1 + 64 || c[0] < '0' || c[0] > '9')
        goto bad;
    errno = 0;
    v = strtoull(c, &end, 10);
    if (errno || end == c || *end != '.' || strlen(end + 1) != 64)
        goto bad;
    for (int i = 0; i < 32; i++) {
        unsigned b;
        if (sscanf(end + 1 + 2 * i, "%2x", &b) != 1)
            goto bad;
        d->bytes[i] = (uint8_t)b;
    }
    for (const char *p = end + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            goto bad;
    *t = v;
    return QD_OK;
bad:
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "cursor: not one this server gave (TIME.HEX)");
}

static void cursor_make(char *out, uint64_t t, const uint8_t *d)
{
    int n = snprintf(out, QD_AUDIT_CURSOR_LEN + 1, "%" PRIu64 ".", t);
    for (int i = 0; i < 32; i++)
        n += snprintf(out + n, (size_t)(QD_AUDIT_CURSOR_LEN + 1 - n), "%02x", d[i]);
}

static int check_value(const char *what, const char *v)
{
    if (v && (!*v || strlen(v) > QD_REPO_MAX))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: a value must have 1 to %d bytes", what, QD_REPO_MAX);
    return QD_OK;
}

int qd_audit_index_query(qd_audit_page *page, qd_store *s, const qd_audit_filter *f,
                         int (*fn)(const qd_audit_entry *e, void *payload), void *payload)
{
    cond cs[10];
    size_t nc = 0, drv = 0;
    char bits[16];
    uint64_t lo = tkey(f->since), hi = f->until > 0 ? (uint64_t)f->until : UINT64_MAX, ct = 0;
    qd_digest cd;
    bool has_cursor = f->cursor && *f->cursor;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL, *pc[10] = {NULL};
    qd_audit_entry *e = NULL;
    ikey start, pre;
    MDB_val mk, v;
    int rc = QD_OK, mrc;

    memset(page, 0, sizeof(*page));
    if ((rc = no_index(s)) < 0)
        return rc;
    if (f->limit < 1 || f->limit > QD_AUDIT_LIMIT_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "limit must be 1 to %d", QD_AUDIT_LIMIT_MAX);
    if (f->bits < 0 || f->bits > 64)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bits must be 1 to 64");
    if (f->since < 0 || f->until < 0 || (f->until > 0 && f->until < f->since))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "since and until must be unix seconds with since <= until");
    if (has_cursor && (rc = cursor_parse(f->cursor, &ct, &cd)) < 0)
        return rc;
#define COND(fld, val)                                                                                                 \
    do {                                                                                                               \
        if ((val) != NULL) {                                                                                           \
            if ((rc = check_value(field_name(fld), (val))) < 0)                                                        \
                return rc;                                                                                             \
            cs[nc].field = (fld);                                                                                      \
            cs[nc].value = (val);                                                                                      \
            cs[nc++].count = 0;                                                                                        \
        }                                                                                                              \
    } while (0)
    COND(F_METHOD, f->method);
    COND(F_FORMAT, f->format);
    COND(F_CALIB, f->calibration);
    COND(F_CONV, f->converter);
    COND(F_CONVVER, f->converter_version);
    COND(F_HW, f->hardware);
    COND(F_KEY, f->key);
    COND(F_VERDICT, f->verdict);
    COND(F_NS, f->namespace_name);
    if (f->bits > 0) {
        snprintf(bits, sizeof(bits), "%d", f->bits);
        COND(F_BITS, bits);
    }
#undef COND

    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if (!(e = qd_malloc(sizeof(*e)))) {
        rc = QD_ENOMEM;
        goto done;
    }
    /* the most selective condition drives */
    for (size_t i = 0; i < nc; i++) {
        ikey k;
        key_fv(&k, 'C', cs[i].field, cs[i].value);
        mk = kv(&k);
        mrc = mdb_get(txn, s->db_audit, &mk, &v);
        if (mrc == 0 && v.mv_size == 8)
            memcpy(&cs[i].count, v.mv_data, 8);
        else if (mrc && mrc != MDB_NOTFOUND) {
            rc = qd_store__err_mdb(mrc, "read an audit count");
            goto done;
        }
        if (cs[i].count < cs[drv].count)
            drv = i;
    }
    if (nc) {
        snprintf(page->driver, sizeof(page->driver), "%s", field_name(cs[drv].field));
        if (cs[drv].count == 0)
            goto done; /* nothing has that value */
        key_fv(&pre, 'I', cs[drv].field, cs[drv].value);
    } else {
        snprintf(page->driver, sizeof(page->driver), "time");
        pre.b[0] = 'T';
        pre.n = 1;
    }
    start = pre;
    if (has_cursor && ct >= lo) {
        be64(start.b + start.n, ct);
        memcpy(start.b + start.n + 8, cd.bytes, 32);
        start.n += 40;
    } else {
        has_cursor = false;
        be64(start.b + start.n, lo);
        start.n += 8;
    }
    if ((mrc = mdb_cursor_open(txn, s->db_audit, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    /* one cursor per other condition: candidates come in key order, so each probe lands on or near the page of
     * the last one (LMDB's cursor stays on its leaf when it can) */
    for (size_t i = 0; i < nc; i++) {
        if (i != drv && (mrc = mdb_cursor_open(txn, s->db_audit, &pc[i]))) {
            rc = qd_store__err_mdb(mrc, "open a cursor");
            goto done;
        }
    }
    mk = kv(&start);
    mrc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE);
    while (mrc == 0) {
        const uint8_t *kp = mk.mv_data;
        uint64_t t;
        qd_digest d;
        bool ok = true, jump = false;
        ikey to;
        if (mk.mv_size != pre.n + 40 || memcmp(kp, pre.b, pre.n))
            break;
        t = rd_be64(kp + pre.n);
        if (t > hi)
            break;
        memcpy(d.bytes, kp + pre.n + 8, 32);
        if (has_cursor && t == ct && !memcmp(d.bytes, cd.bytes, 32)) {
            mrc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT); /* the last one of the previous page */
            continue;
        }
        if (page->scanned >= SCAN_MAX) {
            /* bounded work per page: the cursor names the last key examined, the next page goes on after it */
            page->more = true;
            break;
        }
        page->scanned++;
        /* intersection: every other condition must hold the same (created, digest) key; when one holds a later
         * key instead, no key of the driver before that one can match: leap there (a leapfrog join) */
        for (size_t i = 0; i < nc && ok; i++) {
            ikey k;
            MDB_val pk, pv;
            size_t pn;
            if (i == drv)
                continue;
            key_fv(&k, 'I', cs[i].field, cs[i].value);
            pn = k.n;
            key_tail(&k, (int64_t)t, &d);
            pk = kv(&k);
            mrc = mdb_cursor_get(pc[i], &pk, &pv, MDB_SET_RANGE);
            if (mrc && mrc != MDB_NOTFOUND) {
                rc = qd_store__err_mdb(mrc, "read an audit key");
                goto done;
            }
            if (mrc == MDB_NOTFOUND || pk.mv_size != pn + 40 || memcmp(pk.mv_data, k.b, pn) ||
                rd_be64((const uint8_t *)pk.mv_data + pn) > hi) {
                mrc = MDB_NOTFOUND; /* this condition has no more keys in range: nothing after this can match */
                goto finish;
            }
            mrc = 0;
            if (!memcmp(pk.mv_data, k.b, k.n))
                continue;
            ok = false;
            to = pre;
            memcpy(to.b + to.n, (const uint8_t *)pk.mv_data + pn, 40);
            to.n += 40;
            jump = true;
        }
        cursor_make(page->next_cursor, t, d.bytes);
        if (ok) {
            if ((rc = rec_get(txn, s, &d, e)) < 0) {
                if (rc == QD_ENOTFOUND)
                    rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "an audit index key has no record");
                goto done;
            }
            if (!f->allow || f->allow(e->repo, f->allow_payload)) {
                if ((rc = fn(e, payload)) != 0)
                    goto done;
                if (++page->returned == f->limit) {
                    page->more = true;
                    break;
                }
            }
        }
        if (jump) {
            mk = kv(&to);
            mrc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE);
        } else {
            mrc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT);
        }
    }
finish:
    if (mrc && mrc != MDB_NOTFOUND) {
        rc = qd_store__err_mdb(mrc, "scan an audit index");
        goto done;
    }
    if (!page->more)
        page->next_cursor[0] = 0;
done:
    for (size_t i = 0; i < nc; i++)
        if (pc[i])
            mdb_cursor_close(pc[i]);
    if (cur)
        mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    qd_free(e);
    return rc;
}

/* ---- lineage ------------------------------------------------------------------------------------------------- */

/* A set of digests (open addressing on the first 8 bytes, which are uniformly random). */
typedef struct dset {
    qd_digest *slot;
    uint8_t *used;
    size_t cap;
} dset;

static int dset_init(dset *ds, size_t n)
{
    ds->cap = 64;
    while (ds->cap < 2 * n + 2)
        ds->cap *= 2;
    ds->slot = qd_calloc(ds->cap, sizeof(qd_digest));
    ds->used = qd_calloc(ds->cap, 1);
    return ds->slot && ds->used ? QD_OK : QD_ENOMEM;
}

static void dset_free(dset *ds)
{
    qd_free(ds->slot);
    qd_free(ds->used);
}

/* true when d was added (not there before) */
static bool dset_add(dset *ds, const qd_digest *d)
{
    uint64_t h;
    memcpy(&h, d->bytes, 8);
    for (size_t i = (size_t)h & (ds->cap - 1);; i = (i + 1) & (ds->cap - 1)) {
        if (!ds->used[i]) {
            ds->used[i] = 1;
            ds->slot[i] = *d;
            return true;
        }
        if (!memcmp(ds->slot[i].bytes, d->bytes, 32))
            return false;
    }
}

typedef struct qitem {
    qd_digest d, from;
    bool has_from;
    unsigned depth;
} qitem;

/* Neighbours of d: up (db_lineage, d || parent) or down (db_audit, 'D' d || child). */
static int neighbours(MDB_txn *txn, qd_store *s, const qd_digest *d, bool down, qd_digest *out, size_t cap,
                      size_t *n)
{
    MDB_cursor *cur;
    uint8_t kb[33];
    size_t pl = down ? 33 : 32;
    MDB_val k, v;
    int mrc;
    *n = 0;
    if (down) {
        kb[0] = 'D';
        memcpy(kb + 1, d->bytes, 32);
    } else {
        memcpy(kb, d->bytes, 32);
    }
    if ((mrc = mdb_cursor_open(txn, down ? s->db_audit : s->db_lineage, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    k = (MDB_val){pl, kb};
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && *n < cap;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != pl + 32 || memcmp(k.mv_data, kb, pl))
            break;
        memcpy(out[(*n)++].bytes, (const uint8_t *)k.mv_data + pl, 32);
    }
    mdb_cursor_close(cur);
    return mrc == 0 || mrc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(mrc, "walk the lineage");
}

#define NB_MAX 4096

int qd_audit_index_lineage(bool *truncated, qd_store *s, const qd_digest *start, bool down, unsigned depth,
                           size_t max_nodes, int (*fn)(const qd_audit_node *n, void *payload), void *payload)
{
    MDB_txn *txn = NULL;
    qitem *q = NULL;
    qd_digest *nb = NULL;
    qd_audit_node *node = NULL;
    dset seen = {0};
    size_t head = 0, tail = 0, nn;
    int rc;

    if (truncated)
        *truncated = false;
    if ((rc = no_index(s)) < 0)
        return rc;
    if (depth < 1 || depth > QD_AUDIT_DEPTH_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "depth must be 1 to %d", QD_AUDIT_DEPTH_MAX);
    if (max_nodes < 1)
        max_nodes = 10000;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    q = qd_calloc(max_nodes, sizeof(*q));
    nb = qd_calloc(NB_MAX, sizeof(*nb));
    node = qd_malloc(sizeof(*node));
    if (!q || !nb || !node || (rc = dset_init(&seen, max_nodes)) < 0) {
        rc = QD_ENOMEM;
        goto done;
    }
    /* the start must be known somewhere */
    if ((rc = rec_get(txn, s, start, NULL)) == QD_ENOTFOUND) {
        size_t a = 0, b = 0;
        if ((rc = neighbours(txn, s, start, false, nb, 1, &a)) < 0 ||
            (rc = neighbours(txn, s, start, true, nb, 1, &b)) < 0)
            goto done;
        if (!a && !b) {
            char ds[QD_DIGEST_STR_LEN + 1];
            rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s is neither an indexed artifact nor in a lineage edge",
                              qd_digest_format(ds, start));
            goto done;
        }
    } else if (rc < 0) {
        goto done;
    }
    q[tail].d = *start;
    q[tail].depth = 0;
    q[tail++].has_from = false;
    dset_add(&seen, start);
    while (head < tail) {
        qitem it = q[head++];
        memset(node, 0, sizeof(*node));
        node->digest = it.d;
        node->depth = it.depth;
        node->has_from = it.has_from;
        node->from = it.from;
        rc = rec_get(txn, s, &it.d, &node->entry);
        if (rc < 0 && rc != QD_ENOTFOUND)
            goto done;
        node->indexed = rc == QD_OK;
        if ((rc = fn(node, payload)) != 0)
            goto done;
        if (it.depth >= depth)
            continue;
        if ((rc = neighbours(txn, s, &it.d, down, nb, NB_MAX, &nn)) < 0)
            goto done;
        if (nn == NB_MAX && truncated)
            *truncated = true; /* a node with more children than one walk step reads */
        for (size_t i = 0; i < nn; i++) {
            if (!dset_add(&seen, &nb[i]))
                continue;
            if (tail == max_nodes) {
                if (truncated)
                    *truncated = true;
                break;
            }
            q[tail].d = nb[i];
            q[tail].from = it.d;
            q[tail].has_from = true;
            q[tail++].depth = it.depth + 1;
        }
    }
    rc = QD_OK;
done:
    qd_store__txn_end(s, txn);
    dset_free(&seen);
    qd_free(q);
    qd_free(nb);
    qd_free(node);
    return rc;
}

/* ---- from a bundle ------------------------------------------------------------------------------------------- */

static int cp(char *dst, size_t cap, json_t *o, const char *a, const char *b, const char *what)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    dst[0] = 0;
    if (!v || json_is_null(v))
        return QD_OK;
    if (!json_is_string(v))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate %s must be a string", what);
    if (json_string_length(v) >= cap || strlen(json_string_value(v)) != json_string_length(v))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate %s is longer than %zu bytes", what, cap - 1);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return QD_OK;
}

int qd_audit_entry_from_bundle(qd_audit_entry *out, const void *bundle, size_t len)
{
    qd_envelope *env = NULL;
    json_t *st = NULL, *p, *v;
    const uint8_t *pl;
    size_t pl_len, i;
    const char *pt;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = qd_envelope_parse(&env, bundle, len, 0)) < 0)
        return qd_error_prefix("not a signature bundle");
    pl = qd_envelope_payload(env, &pl_len);
    if (!(st = json_loadb((const char *)pl, pl_len, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(st)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "the bundle's payload is not a JSON statement");
        goto done;
    }
    pt = json_string_value(json_object_get(st, "predicateType"));
    if (!pt || strcmp(pt, QD_PREDICATE_VARIANT)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "the statement's predicate is not %s", QD_PREDICATE_VARIANT);
        goto done;
    }
    p = json_object_get(st, "predicate");
    if (!json_is_object(p)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "the statement has no predicate object");
        goto done;
    }
    {
        char src[QD_DIGEST_STR_LEN + 1];
        if ((rc = cp(src, sizeof(src), p, "source", "digest", "source.digest")) < 0)
            goto done;
        if (src[0]) {
            if ((rc = qd_digest_parse(&out->source, src)) < 0)
                goto done;
            out->has_source = true;
        }
    }
    if ((rc = cp(out->method, sizeof(out->method), p, "recipe", "method", "recipe.method")) < 0 ||
        (rc = cp(out->format, sizeof(out->format), p, "recipe", "format", "recipe.format")) < 0 ||
        (rc = cp(out->calibration, sizeof(out->calibration), p, "calibration", "class", "calibration.class")) < 0 ||
        (rc = cp(out->converter, sizeof(out->converter), p, "converter", "name", "converter.name")) < 0 ||
        (rc = cp(out->converter_version, sizeof(out->converter_version), p, "converter", "version",
                 "converter.version")) < 0 ||
        (rc = cp(out->verdict, sizeof(out->verdict), p, "validation", "verdict", "validation.verdict")) < 0 ||
        (rc = cp(out->created_at, sizeof(out->created_at), p, "created_at", NULL, "created_at")) < 0)
        goto done;
    v = json_object_get(json_object_get(p, "recipe"), "weight_bits");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 64)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate recipe.weight_bits must be 1 to 64");
        goto done;
    }
    out->bits = v ? (int)json_integer_value(v) : 0;
    v = json_object_get(p, "target_hardware");
    if (v && !json_is_array(v)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate target_hardware must be a list");
        goto done;
    }
    for (i = 0; i < json_array_size(v) && out->n_hardware < QD_AUDIT_LIST_MAX; i++) {
        json_t *h = json_array_get(v, i);
        if (!json_is_string(h) || json_string_length(h) == 0 || json_string_length(h) > QD_AUDIT_STR_MAX ||
            strlen(json_string_value(h)) != json_string_length(h)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate target_hardware[%zu] must be a short string", i);
            goto done;
        }
        snprintf(out->hardware[out->n_hardware++], QD_AUDIT_STR_MAX + 1, "%s", json_string_value(h));
    }
    for (i = 0; i < qd_envelope_signature_count(env) && out->n_keys < QD_AUDIT_LIST_MAX; i++) {
        const char *k = qd_envelope_signature_keyid(env, i);
        if ((!k || !*k) && i == 0)
            k = qd_envelope_hint(env);
        if (k && *k && strlen(k) <= QD_AUDIT_KEY_MAX)
            snprintf(out->keys[out->n_keys++], QD_AUDIT_KEY_MAX + 1, "%s", k);
    }
    rc = QD_OK;
done:
    json_decref(st);
    qd_envelope_free(env);
    return rc;
}

static int dump_cb(const char *buffer, size_t size, void *data)
{
    return qd_buf_put(data, buffer, size) == QD_OK ? 0 : -1;
}

int qd_audit_entry_json(qd_buf *out, const qd_audit_entry *e)
{
    char m[QD_DIGEST_STR_LEN + 1], b[QD_DIGEST_STR_LEN + 1], src[QD_DIGEST_STR_LEN + 1];
    json_t *o, *hw = json_array(), *keys = json_array();
    int rc;
    for (size_t i = 0; i < e->n_hardware; i++)
        json_array_append_new(hw, json_string(e->hardware[i]));
    for (size_t i = 0; i < e->n_keys; i++)
        json_array_append_new(keys, json_string(e->keys[i]));
    o = json_pack("{s:s,s:s?,s:s?,s:s,s:I,s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:s,s:o,s:o}", "manifest",
                  qd_digest_format(m, &e->manifest), "bundle", e->has_bundle ? qd_digest_format(b, &e->bundle) : NULL,
                  "source", e->has_source ? qd_digest_format(src, &e->source) : NULL, "repository", e->repo,
                  "created", (json_int_t)e->created, "created_at", e->created_at, "method", e->method, "bits",
                  e->bits, "format", e->format, "calibration", e->calibration, "converter", e->converter,
                  "converter_version", e->converter_version, "verdict", e->verdict, "target_hardware", hw, "key_ids",
                  keys);
    if (!o)
        return QD_ENOMEM;
    rc = json_dump_callback(o, dump_cb, out, JSON_COMPACT | JSON_SORT_KEYS) == 0 ? QD_OK : QD_ENOMEM;
    json_decref(o);
    return rc;
}

/* ---- rebuild ------------------------------------------------------------------------------------------------- */

#define META_KEY "audit_index"

typedef struct bman {
    qd_digest d, subject, blob;
    int64_t created;
    char repo[QD_REPO_MAX + 1];
} bman;

static int clear_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int mrc;
    (void)payload;
    if ((mrc = mdb_drop(txn, s->db_audit, 0)))
        return qd_store__err_mdb(mrc, "empty the audit index");
    /* parent -> child from every child -> parent edge */
    if ((mrc = mdb_cursor_open(txn, s->db_lineage, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint8_t kb[65];
        int rc;
        if (k.mv_size != 64)
            continue;
        kb[0] = 'D';
        memcpy(kb + 1, (const uint8_t *)k.mv_data + 32, 32);
        memcpy(kb + 33, k.mv_data, 32);
        if ((rc = put_empty(txn, s, s->db_audit, kb, 65)) < 0) {
            mdb_cursor_close(cur);
            return rc;
        }
    }
    mdb_cursor_close(cur);
    return mrc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(mrc, "read the lineage");
}

/* Collect up to cap bundle manifests after `after` (exclusive; NULL from the start). */
static int collect(qd_store *s, const qd_digest *after, bman *out, size_t cap, size_t *n, bool *end)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint8_t kb[34];
    MDB_val k, v;
    int mrc, rc = QD_OK;
    *n = 0;
    *end = false;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((mrc = mdb_cursor_open(txn, s->db_manifests, &cur))) {
        qd_store__txn_end(s, txn);
        return qd_store__err_mdb(mrc, "open a cursor");
    }
    kb[0] = 'M';
    k = (MDB_val){1, kb};
    if (after) {
        memcpy(kb + 1, after->bytes, 32);
        kb[33] = 0; /* just after `after` */
        k.mv_size = 34;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0 && *n < cap;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        qd_digest d;
        qd_manifest_info info;
        const uint8_t *blobs;
        uint32_t nb;
        if (k.mv_size != 33 || ((const uint8_t *)k.mv_data)[0] != 'M')
            break;
        memcpy(d.bytes, (const uint8_t *)k.mv_data + 1, 32);
        if ((rc = qd_registry__manifest_record(txn, s, &d, &info, &blobs, &nb)) < 0)
            break;
        if (strcmp(info.artifact_type, QD_BUNDLE_MEDIA_TYPE) || !info.has_subject || nb < 2)
            continue;
        out[*n].d = d;
        out[*n].subject = info.subject;
        memcpy(out[*n].blob.bytes, blobs + 32 * (size_t)(nb - 1), 32); /* the bundle: the last layer */
        out[*n].created = info.created;
        if ((rc = qd_registry__first_repo(txn, s, &d, out[*n].repo, sizeof(out[*n].repo))) < 0)
            break;
        (*n)++;
    }
    if (rc == QD_OK && mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "scan the manifests");
    if (rc == QD_OK && (mrc == MDB_NOTFOUND || (mrc == 0 && (k.mv_size != 33 || ((const uint8_t *)k.mv_data)[0] != 'M'))))
        *end = true;
    mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    return rc;
}

static int meta_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    MDB_val k = {sizeof(META_KEY) - 1, (void *)META_KEY}, v = {1, (void *)"1"};
    int mrc;
    (void)payload;
    if ((mrc = mdb_put(txn, s->db_meta, &k, &v, 0)))
        return qd_store__err_mdb(mrc, "write meta");
    return QD_OK;
}

int qd_audit_index_rebuild(qd_store *s, size_t *indexed, size_t *skipped)
{
    bman *bm = qd_calloc(REBUILD_BATCH, sizeof(*bm));
    qd_audit_entry *ents = qd_calloc(REBUILD_BATCH, sizeof(*ents));
    qd_buf b = QD_BUF_INIT(16u << 20);
    qd_digest last;
    bool have_last = false, end = false;
    size_t n_ok = 0, n_skip = 0;
    int rc;

    if (!bm || !ents) {
        rc = QD_ENOMEM;
        goto done;
    }
    if ((rc = qd_store__write(s, clear_txn, NULL)) < 0)
        goto done;
    while (!end) {
        size_t n, ne = 0;
        if ((rc = collect(s, have_last ? &last : NULL, bm, REBUILD_BATCH, &n, &end)) < 0)
            goto done;
        for (size_t i = 0; i < n; i++) {
            qd_audit_entry *e = &ents[ne];
            qd_buf_clear(&b);
            if (qd_store_get(s, &bm[i].blob, 0, UINT64_MAX, qd_buf_sink, &b) < 0 ||
                qd_audit_entry_from_bundle(e, b.ptr, b.len) < 0) {
                qd_error_clear();
                n_skip++;
                continue;
            }
            e->manifest = bm[i].subject;
            e->bundle = bm[i].d;
            e->has_bundle = true;
            e->created = bm[i].created;
            snprintf(e->repo, sizeof(e->repo), "%s", bm[i].repo);
            ne++;
        }
        if (n) {
            last = bm[n - 1].d;
            have_last = true;
        }
        if (ne && (rc = qd_audit_index_put_many(s, ents, ne)) < 0)
            goto done;
        n_ok += ne;
    }
    rc = qd_store__write(s, meta_txn, NULL);
done:
    if (indexed)
        *indexed = n_ok;
    if (skipped)
        *skipped = n_skip;
    qd_buf_dispose(&b);
    qd_free(bm);
    qd_free(ents);
    return rc;
}

int qd_audit_index_ensure(qd_store *s)
{
    MDB_txn *txn;
    MDB_val k = {sizeof(META_KEY) - 1, (void *)META_KEY}, v;
    int rc, mrc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    mrc = mdb_get(txn, s->db_meta, &k, &v);
    qd_store__txn_end(s, txn);
    if (mrc == 0)
        return QD_OK;
    if (mrc != MDB_NOTFOUND)
        return qd_store__err_mdb(mrc, "read meta");
    return qd_audit_index_rebuild(s, NULL, NULL);
}

int qd_audit_index_checksum(qd_digest *out, qd_store *s)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    qd_sha256 *h = NULL;
    int rc, mrc;
    if ((rc = no_index(s)) < 0 || (rc = qd_sha256_new(&h)) < 0)
        return rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0) {
        qd_sha256_free(h);
        return rc;
    }
    if ((mrc = mdb_cursor_open(txn, s->db_audit, &cur))) {
        qd_store__txn_end(s, txn);
        qd_sha256_free(h);
        return qd_store__err_mdb(mrc, "open a cursor");
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == QD_OK;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t kl = k.mv_size, vl = v.mv_size;
        if ((rc = qd_sha256_update(h, &kl, 8)) == QD_OK && (rc = qd_sha256_update(h, k.mv_data, k.mv_size)) == QD_OK &&
            (rc = qd_sha256_update(h, &vl, 8)) == QD_OK)
            rc = qd_sha256_update(h, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    if (rc == QD_OK && mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "read the audit index");
    if (rc == QD_OK)
        rc = qd_sha256_final(h, out);
    qd_sha256_free(h);
    return rc;
}
