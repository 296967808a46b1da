/*
 * registry.c - manifests, tags, referrers, repository membership and tokens (see include/qd/registry.h).
 *
 * Layout (all in the environment opened by store.c; integers little-endian, digests as 32 raw bytes):
 *
 *   manifests  'M' d                      -> mrec_hdr, n_blobs * 32 bytes, media_type NUL artifact_type NUL
 *                                            annotations NUL                       (the index record)
 *              'P' repo NUL d             -> ""   repository holds manifest d
 *              'p' d repo                 -> ""   the same, reversed (does anyone still hold d?)
 *              'S' subject d              -> ""   d's subject is `subject` (the referrers index)
 *              'B' repo NUL d             -> ""   repository holds blob d
 *              'b' d repo                 -> ""   the same, reversed
 *   tags       repo NUL tag               -> d    (byte order = the order the tags list pages through)
 *   refs       to || from                 -> ""   written here with the layout store_int.h documents: a manifest
 *                                                 references its own raw blob and every blob it lists
 *   meta       "token:" sha256(token)     -> created (i64) name NUL scopes NUL
 *
 * Repository names never contain NUL, so 'P' repo NUL is an exact prefix for one repository.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "qd/alloc.h"
#include "qd/audit.h"
#include "qd/err.h"
#include "qd/registry.h"
#include "store_int.h"

#define MREC_MAGIC 0x314d4451u /* "QDM1" */
#define TOKEN_PREFIX "token:"
#define TOKEN_PREFIX_LEN 6
#define KEY_MAX (1 + QD_REPO_MAX + 1 + QD_DIGEST_LEN + QD_TAG_MAX + 1)

typedef struct mrec_hdr {
    uint32_t magic;
    uint32_t n_blobs;
    uint64_t size;
    int64_t created;
    uint8_t has_subject;
    uint8_t pad[7];
    uint8_t subject[32];
} mrec_hdr;
_Static_assert(sizeof(mrec_hdr) == 64, "mrec_hdr layout");

/* ---- keys ------------------------------------------------------------------------------------------------------ */

typedef struct key {
    uint8_t b[KEY_MAX];
    size_t n;
} key;

static int check_repo(const char *repo)
{
    size_t n = repo ? strlen(repo) : 0;
    if (n == 0 || n > QD_REPO_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "repository name must have 1 to %d bytes", QD_REPO_MAX);
    return QD_OK;
}

static int check_tag(const char *tag)
{
    size_t n = tag ? strlen(tag) : 0;
    if (n == 0 || n > QD_TAG_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "tag must have 1 to %d bytes", QD_TAG_MAX);
    return QD_OK;
}

/* prefix repo NUL [d] */
static void key_repo(key *k, char prefix, const char *repo, const qd_digest *d)
{
    size_t rl = strlen(repo);
    k->n = 0;
    if (prefix)
        k->b[k->n++] = (uint8_t)prefix;
    memcpy(k->b + k->n, repo, rl);
    k->n += rl;
    k->b[k->n++] = 0;
    if (d) {
        memcpy(k->b + k->n, d->bytes, 32);
        k->n += 32;
    }
}

/* prefix d [repo] */
static void key_rev(key *k, char prefix, const qd_digest *d, const char *repo)
{
    k->b[0] = (uint8_t)prefix;
    memcpy(k->b + 1, d->bytes, 32);
    k->n = 33;
    if (repo) {
        size_t rl = strlen(repo);
        memcpy(k->b + k->n, repo, rl);
        k->n += rl;
    }
}

static void key_tag(key *k, const char *repo, const char *tag)
{
    size_t tl = strlen(tag);
    key_repo(k, 0, repo, NULL);
    memcpy(k->b + k->n, tag, tl);
    k->n += tl;
}

static MDB_val kv(const key *k) { return (MDB_val){k->n, (void *)k->b}; }

static int db_has(MDB_txn *txn, MDB_dbi db, const key *k, bool *out)
{
    MDB_val mk = kv(k), v;
    int rc = mdb_get(txn, db, &mk, &v);
    *out = rc == 0;
    return rc == 0 || rc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(rc, "look up a registry record");
}

static int db_put_empty(MDB_txn *txn, MDB_dbi db, const key *k)
{
    MDB_val mk = kv(k), v = {0, ""};
    int rc = mdb_put(txn, db, &mk, &v, 0);
    return rc ? qd_store__err_mdb(rc, "write a registry record") : QD_OK;
}

static int db_del(MDB_txn *txn, MDB_dbi db, const key *k)
{
    MDB_val mk = kv(k);
    int rc = mdb_del(txn, db, &mk, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(rc, "delete a registry record");
}

/* Is there any key starting with k? */
static int db_has_prefix(MDB_txn *txn, MDB_dbi db, const key *k, bool *out)
{
    MDB_cursor *cur;
    MDB_val mk = kv(k), v;
    int rc = mdb_cursor_open(txn, db, &cur);
    if (rc)
        return qd_store__err_mdb(rc, "open a cursor");
    rc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE);
    *out = rc == 0 && mk.mv_size >= k->n && memcmp(mk.mv_data, k->b, k->n) == 0;
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(rc, "scan the registry");
}

static char *fmt_digest(char buf[QD_DIGEST_STR_LEN + 1], const qd_digest *d) { return qd_digest_format(buf, d); }

/* ---- manifest records ------------------------------------------------------------------------------------------ */

/* Parse a record; the strings point into the map (valid while txn lives). */
static int mrec_parse(const MDB_val *v, const mrec_hdr **h, const uint8_t **blobs, const char **media,
                      const char **atype, const char **annot)
{
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    const char *s[3];
    mrec_hdr hh;
    if (v->mv_size < sizeof(mrec_hdr))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "a manifest record is truncated");
    memcpy(&hh, p, sizeof(hh));
    if (hh.magic != MREC_MAGIC || (uint64_t)hh.n_blobs * 32 > (uint64_t)(v->mv_size - sizeof(mrec_hdr)))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "a manifest record is malformed");
    *h = (const mrec_hdr *)p;
    *blobs = p + sizeof(mrec_hdr);
    p += sizeof(mrec_hdr) + (size_t)hh.n_blobs * 32;
    for (int i = 0; i < 3; i++) {
        const uint8_t *z = memchr(p, 0, (size_t)(end - p));
        if (!z)
            return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "a manifest record is malformed");
        s[i] = (const char *)p;
        p = z + 1;
    }
    *media = s[0];
    *atype = s[1];
    *annot = s[2];
    return QD_OK;
}

static int mrec_info(MDB_txn *txn, qd_store *s, const qd_digest *d, qd_manifest_info *info, const uint8_t **blobs,
                     uint32_t *n_blobs)
{
    key k;
    MDB_val mk, v;
    const mrec_hdr *h = NULL;
    const uint8_t *bl = NULL;
    const char *media = "", *atype = "", *annot = "";
    mrec_hdr hh;
    int rc;

    key_rev(&k, 'M', d, NULL);
    mk = kv(&k);
    if ((rc = mdb_get(txn, s->db_manifests, &mk, &v))) {
        char ds[QD_DIGEST_STR_LEN + 1];
        if (rc == MDB_NOTFOUND)
            return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "manifest %s is unknown", fmt_digest(ds, d));
        return qd_store__err_mdb(rc, "read a manifest record");
    }
    if ((rc = mrec_parse(&v, &h, &bl, &media, &atype, &annot)) < 0)
        return rc;
    memcpy(&hh, h, sizeof(hh));
    if (info) {
        memset(info, 0, sizeof(*info));
        info->digest = *d;
        info->size = hh.size;
        info->created = hh.created;
        info->has_subject = hh.has_subject != 0;
        memcpy(info->subject.bytes, hh.subject, 32);
        snprintf(info->media_type, sizeof(info->media_type), "%s", media);
        snprintf(info->artifact_type, sizeof(info->artifact_type), "%s", atype);
        info->annotations = *annot ? annot : NULL;
    }
    if (blobs)
        *blobs = bl;
    if (n_blobs)
        *n_blobs = hh.n_blobs;
    return QD_OK;
}

static int ref_put(MDB_txn *txn, qd_store *s, const qd_digest *from, const qd_digest *to, bool del)
{
    uint8_t kb[64];
    MDB_val k = {64, kb}, v = {0, ""};
    int rc;
    memcpy(kb, to->bytes, 32);
    memcpy(kb + 32, from->bytes, 32);
    if (del) {
        rc = mdb_del(txn, s->db_refs, &k, NULL);
        return rc == 0 || rc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(rc, "drop a reference");
    }
    rc = mdb_put(txn, s->db_refs, &k, &v, 0);
    return rc ? qd_store__err_mdb(rc, "write a reference") : QD_OK;
}

static bool blob_exists(MDB_txn *txn, qd_store *s, const qd_digest *d)
{
    MDB_val k = {32, (void *)d->bytes}, v;
    return mdb_get(txn, s->db_blobs, &k, &v) == 0;
}

typedef struct put_ctx {
    const char *repo, *tag;
    const qd_manifest_desc *m;
    qd_digest d;
} put_ctx;

/* Index the artifact a bundle manifest describes: its subject, published in this repository at the bundle
 * manifest's first push (the same values qd_audit_index_rebuild reads back). */
static int audit_txn(qd_store *s, MDB_txn *txn, const put_ctx *c)
{
    qd_audit_entry *e = qd_malloc(sizeof(*e));
    qd_manifest_info info;
    const uint8_t *blobs;
    uint32_t n_blobs;
    int rc;
    if (!e)
        return QD_ENOMEM;
    *e = *c->m->audit;
    if ((rc = mrec_info(txn, s, &c->d, &info, &blobs, &n_blobs)) == QD_OK) {
        e->manifest = *c->m->subject;
        e->bundle = c->d;
        e->has_bundle = true;
        e->created = info.created;
        snprintf(e->repo, sizeof(e->repo), "%s", c->repo);
        rc = qd_audit__index_in_txn(s, txn, e);
    }
    qd_free(e);
    return rc;
}

static int put_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    put_ctx *c = payload;
    const qd_manifest_desc *m = c->m;
    char ds[QD_DIGEST_STR_LEN + 1];
    key k;
    bool has;
    int rc;

    for (size_t i = 0; i < m->n_blobs; i++) {
        key_repo(&k, 'B', c->repo, &m->blobs[i]);
        if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
            return rc;
        if (!has || !blob_exists(txn, s, &m->blobs[i]))
            return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "blob %s is not in repository %s",
                                fmt_digest(ds, &m->blobs[i]), c->repo);
    }
    for (size_t i = 0; i < m->n_children; i++) {
        key_repo(&k, 'P', c->repo, &m->children[i]);
        if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
            return rc;
        if (!has)
            return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "manifest %s is not in repository %s",
                                fmt_digest(ds, &m->children[i]), c->repo);
    }
    if (!blob_exists(txn, s, &c->d))
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "the manifest's bytes vanished while it was stored");

    /* The index record: written once; the same digest means the same bytes, hence the same fields. */
    key_rev(&k, 'M', &c->d, NULL);
    if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
        return rc;
    if (!has) {
        const char *atype = m->artifact_type ? m->artifact_type : "";
        const char *annot = m->annotations ? m->annotations : "";
        size_t ml = strlen(m->media_type) + 1, al = strlen(atype) + 1, nl = strlen(annot) + 1;
        size_t total = sizeof(mrec_hdr) + m->n_blobs * 32 + ml + al + nl;
        mrec_hdr h;
        MDB_val mk = kv(&k), v = {total, NULL};
        uint8_t *p;
        memset(&h, 0, sizeof(h));
        h.magic = MREC_MAGIC;
        h.n_blobs = (uint32_t)m->n_blobs;
        h.size = m->len;
        h.created = qd_store__now();
        if (m->subject) {
            h.has_subject = 1;
            memcpy(h.subject, m->subject->bytes, 32);
        }
        if ((rc = mdb_put(txn, s->db_manifests, &mk, &v, MDB_RESERVE)))
            return qd_store__err_mdb(rc, "write a manifest record");
        p = v.mv_data;
        memcpy(p, &h, sizeof(h));
        p += sizeof(h);
        for (size_t i = 0; i < m->n_blobs; i++, p += 32)
            memcpy(p, m->blobs[i].bytes, 32);
        memcpy(p, m->media_type, ml);
        p += ml;
        memcpy(p, atype, al);
        p += al;
        memcpy(p, annot, nl);
        for (size_t i = 0; i < m->n_blobs; i++)
            if ((rc = ref_put(txn, s, &c->d, &m->blobs[i], false)) < 0)
                return rc;
        if ((rc = ref_put(txn, s, &c->d, &c->d, false)) < 0)
            return rc;
        if (m->subject) {
            k.b[0] = 'S';
            memcpy(k.b + 1, m->subject->bytes, 32);
            memcpy(k.b + 33, c->d.bytes, 32);
            k.n = 65;
            if ((rc = db_put_empty(txn, s->db_manifests, &k)) < 0)
                return rc;
        }
    }
    key_repo(&k, 'P', c->repo, &c->d);
    if ((rc = db_put_empty(txn, s->db_manifests, &k)) < 0)
        return rc;
    key_rev(&k, 'p', &c->d, c->repo);
    if ((rc = db_put_empty(txn, s->db_manifests, &k)) < 0)
        return rc;
    if (c->tag) {
        MDB_val mk, v = {32, c->d.bytes};
        key_tag(&k, c->repo, c->tag);
        mk = kv(&k);
        if ((rc = mdb_put(txn, s->db_tags, &mk, &v, 0)))
            return qd_store__err_mdb(rc, "write a tag");
    }
    if (m->audit && m->subject)
        return audit_txn(s, txn, c);
    return QD_OK;
}

/* For store/jobs.c: the same record writes inside a caller's transaction (the bytes are already a blob). */
int qd_registry__put_in_txn(qd_store *s, MDB_txn *txn, const char *repo, const char *tag, const qd_manifest_desc *m,
                            const qd_digest *d)
{
    put_ctx c = {repo, tag, m, *d};
    int rc;
    if ((rc = check_repo(repo)) < 0 || (tag && (rc = check_tag(tag)) < 0))
        return rc;
    return put_txn(s, txn, &c);
}

int qd_registry_manifest_put(qd_digest *out, qd_store *s, const char *repo, const char *tag,
                             const qd_manifest_desc *m, const qd_digest *expect)
{
    put_ctx c;
    bool was_there;
    int rc;

    if ((rc = check_repo(repo)) < 0 || (tag && (rc = check_tag(tag)) < 0))
        return rc;
    if (!m || !m->data || !m->media_type || strlen(m->media_type) > QD_MEDIA_TYPE_MAX ||
        (m->artifact_type && strlen(m->artifact_type) > QD_MEDIA_TYPE_MAX) || m->n_blobs > UINT32_MAX / 64)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a manifest needs its bytes and a media type of at most %d "
                            "bytes", QD_MEDIA_TYPE_MAX);
    c = (put_ctx){repo, tag, m, {{0}}};
    if ((rc = qd_sha256_buf(&c.d, m->data, m->len)) < 0)
        return rc;
    if (expect && !qd_digest_equal(expect, &c.d)) {
        char a[QD_DIGEST_STR_LEN + 1], b[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_EDIGEST, QD_EC_INVALID, "the manifest is %s, not %s", fmt_digest(a, &c.d),
                            fmt_digest(b, expect));
    }
    was_there = qd_store_has(s, &c.d);
    if (!was_there && (rc = qd_store_put_buf(s, m->data, m->len, &c.d, NULL)) < 0)
        return rc;
    rc = qd_store__write(s, put_txn, &c);
    if (rc < 0 && !was_there) {
        qd_error keep = *qd_error_last();
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", keep.message);
        qd_store_remove(s, &c.d); /* nothing stored: drop the bytes again (refused if someone took a reference) */
        qd_error_set(keep.code, keep.klass, "%s", msg);
    }
    if (rc == QD_OK && out)
        *out = c.d;
    return rc;
}

static int resolve(MDB_txn *txn, qd_store *s, const char *repo, const char *ref, qd_digest *d)
{
    key k;
    MDB_val mk, v;
    bool has;
    int rc;
    if (!strncmp(ref, "sha256:", 7) || strchr(ref, ':')) {
        if ((rc = qd_digest_parse(d, ref)) < 0)
            return rc;
        key_repo(&k, 'P', repo, d);
        if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
            return rc;
        if (!has)
            return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "manifest %s is not in repository %s", ref, repo);
        return QD_OK;
    }
    if ((rc = check_tag(ref)) < 0)
        return rc;
    key_tag(&k, repo, ref);
    mk = kv(&k);
    rc = mdb_get(txn, s->db_tags, &mk, &v);
    if (rc == MDB_NOTFOUND)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "tag %s:%s is unknown", repo, ref);
    if (rc)
        return qd_store__err_mdb(rc, "read a tag");
    if (v.mv_size != 32)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "tag %s:%s has a malformed record", repo, ref);
    memcpy(d->bytes, v.mv_data, 32);
    return QD_OK;
}

int qd_registry_manifest_get(qd_manifest_info *info, qd_buf *bytes, qd_store *s, const char *repo, const char *ref)
{
    MDB_txn *txn = NULL;
    qd_manifest_info tmp;
    qd_digest d;
    int rc;

    if (!info)
        info = &tmp;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((rc = resolve(txn, s, repo, ref, &d)) == QD_OK)
        rc = mrec_info(txn, s, &d, info, NULL, NULL);
    info->annotations = NULL;
    qd_store__txn_end(s, txn);
    if (rc == QD_OK && bytes)
        rc = qd_store_get(s, &d, 0, UINT64_MAX, qd_buf_sink, bytes);
    return rc;
}

/* ---- deletes ----------------------------------------------------------------------------------------------------- */

typedef struct del_ctx {
    const char *repo;
    const char *tag;
    qd_digest d;
    bool gone; /* no repository holds the manifest any more */
} del_ctx;

/* Delete the tags of repo that point at d. */
static int drop_tags_to(MDB_txn *txn, qd_store *s, const char *repo, const qd_digest *d)
{
    MDB_cursor *cur;
    key k;
    MDB_val mk, v;
    int rc;
    key_repo(&k, 0, repo, NULL);
    mk = kv(&k);
    if ((rc = mdb_cursor_open(txn, s->db_tags, &cur)))
        return qd_store__err_mdb(rc, "open a cursor");
    for (rc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT)) {
        if (mk.mv_size < k.n || memcmp(mk.mv_data, k.b, k.n))
            break;
        if (v.mv_size == 32 && !memcmp(v.mv_data, d->bytes, 32) && (rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? QD_OK : qd_store__err_mdb(rc, "drop tags");
}

static int mdel_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    del_ctx *c = payload;
    key k;
    bool has;
    int rc;
    const uint8_t *blobs;
    uint32_t n_blobs;
    qd_manifest_info info;

    key_repo(&k, 'P', c->repo, &c->d);
    if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
        return rc;
    if (!has) {
        char ds[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "manifest %s is not in repository %s",
                            fmt_digest(ds, &c->d), c->repo);
    }
    if ((rc = db_del(txn, s->db_manifests, &k)) < 0)
        return rc;
    key_rev(&k, 'p', &c->d, c->repo);
    if ((rc = db_del(txn, s->db_manifests, &k)) < 0 || (rc = drop_tags_to(txn, s, c->repo, &c->d)) < 0)
        return rc;
    key_rev(&k, 'p', &c->d, NULL);
    if ((rc = db_has_prefix(txn, s->db_manifests, &k, &has)) < 0)
        return rc;
    c->gone = !has;
    if (has)
        return QD_OK;
    if ((rc = mrec_info(txn, s, &c->d, &info, &blobs, &n_blobs)) < 0)
        return rc;
    for (uint32_t i = 0; i < n_blobs; i++) {
        qd_digest b;
        memcpy(b.bytes, blobs + (size_t)i * 32, 32);
        if ((rc = ref_put(txn, s, &c->d, &b, true)) < 0)
            return rc;
    }
    if ((rc = ref_put(txn, s, &c->d, &c->d, true)) < 0)
        return rc;
    if (info.has_subject) {
        k.b[0] = 'S';
        memcpy(k.b + 1, info.subject.bytes, 32);
        memcpy(k.b + 33, c->d.bytes, 32);
        k.n = 65;
        if ((rc = db_del(txn, s->db_manifests, &k)) < 0)
            return rc;
    }
    /* the audit entry of this manifest, or of the artifact this bundle manifest described, goes with it */
    if ((rc = qd_audit__forget_in_txn(s, txn, &c->d, info.has_subject ? &info.subject : NULL)) < 0)
        return rc;
    key_rev(&k, 'M', &c->d, NULL);
    return db_del(txn, s->db_manifests, &k);
}

int qd_registry__manifest_record(MDB_txn *txn, qd_store *s, const qd_digest *d, qd_manifest_info *info,
                                 const uint8_t **blobs, uint32_t *n_blobs)
{
    return mrec_info(txn, s, d, info, blobs, n_blobs);
}

int qd_registry__first_repo(MDB_txn *txn, qd_store *s, const qd_digest *d, char *repo, size_t cap)
{
    MDB_cursor *cur;
    MDB_val mk, v;
    key k;
    int rc;
    key_rev(&k, 'p', d, NULL);
    mk = kv(&k);
    if ((rc = mdb_cursor_open(txn, s->db_manifests, &cur)))
        return qd_store__err_mdb(rc, "open a cursor");
    rc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE);
    if (rc == 0 && mk.mv_size > 33 && !memcmp(mk.mv_data, k.b, 33)) {
        size_t n = mk.mv_size - 33 < cap - 1 ? mk.mv_size - 33 : cap - 1;
        memcpy(repo, (const uint8_t *)mk.mv_data + 33, n);
        repo[n] = 0;
        rc = QD_OK;
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no repository holds the manifest");
    } else {
        rc = qd_store__err_mdb(rc, "read the registry");
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Remove a blob from the store when no repository holds it and nothing references it; errors are ignored (the
 * blob then stays, harmlessly, until an operator removes it). */
static void maybe_remove_blob(qd_store *s, const qd_digest *d)
{
    MDB_txn *txn;
    key k;
    bool held = true;
    qd_error keep = *qd_error_last();
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", keep.message);
    if (qd_store__read_begin(s, &txn) == QD_OK) {
        key_rev(&k, 'b', d, NULL);
        if (db_has_prefix(txn, s->db_manifests, &k, &held) < 0)
            held = true;
        if (!held) {
            key_rev(&k, 'p', d, NULL);
            if (db_has_prefix(txn, s->db_manifests, &k, &held) < 0)
                held = true;
        }
        qd_store__txn_end(s, txn);
    }
    if (!held)
        qd_store_remove(s, d);
    qd_error_set(keep.code, keep.klass, "%s", msg);
}

int qd_registry_blob_held(bool *held, qd_store *s, const qd_digest *d)
{
    MDB_txn *txn;
    key k;
    int rc;
    *held = true;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    key_rev(&k, 'b', d, NULL);
    if ((rc = db_has_prefix(txn, s->db_manifests, &k, held)) == QD_OK && !*held) {
        key_rev(&k, 'p', d, NULL);
        rc = db_has_prefix(txn, s->db_manifests, &k, held);
    }
    qd_store__txn_end(s, txn);
    if (rc < 0)
        *held = true;
    return rc;
}

int qd_registry_manifest_delete(qd_store *s, const char *repo, const qd_digest *d)
{
    del_ctx c = {repo, NULL, *d, false};
    int rc;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    if ((rc = qd_store__write(s, mdel_txn, &c)) < 0)
        return rc;
    if (c.gone)
        maybe_remove_blob(s, d);
    return QD_OK;
}

static int tdel_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    del_ctx *c = payload;
    key k;
    MDB_val mk;
    int rc;
    key_tag(&k, c->repo, c->tag);
    mk = kv(&k);
    rc = mdb_del(txn, s->db_tags, &mk, NULL);
    if (rc == MDB_NOTFOUND)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "tag %s:%s is unknown", c->repo, c->tag);
    return rc ? qd_store__err_mdb(rc, "delete a tag") : QD_OK;
}

int qd_registry_tag_delete(qd_store *s, const char *repo, const char *tag)
{
    del_ctx c = {repo, tag, {{0}}, false};
    int rc;
    if ((rc = check_repo(repo)) < 0 || (rc = check_tag(tag)) < 0)
        return rc;
    return qd_store__write(s, tdel_txn, &c);
}

/* ---- listing ------------------------------------------------------------------------------------------------------ */

static int repo_exists_txn(MDB_txn *txn, qd_store *s, const char *repo, bool *out)
{
    key k;
    int rc;
    key_repo(&k, 'P', repo, NULL);
    if ((rc = db_has_prefix(txn, s->db_manifests, &k, out)) < 0 || *out)
        return rc;
    key_repo(&k, 'B', repo, NULL);
    if ((rc = db_has_prefix(txn, s->db_manifests, &k, out)) < 0 || *out)
        return rc;
    key_repo(&k, 0, repo, NULL);
    return db_has_prefix(txn, s->db_tags, &k, out);
}

bool qd_registry_repo_exists(qd_store *s, const char *repo)
{
    MDB_txn *txn;
    bool has = false;
    if (check_repo(repo) < 0 || qd_store__read_begin(s, &txn) < 0)
        return false;
    if (repo_exists_txn(txn, s, repo, &has) < 0)
        has = false;
    qd_store__txn_end(s, txn);
    return has;
}

int qd_registry_tags_list(bool *more, qd_store *s, const char *repo, const char *last, size_t n,
                          int (*fn)(const char *tag, const qd_digest *d, void *payload), void *payload)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    key k, start;
    MDB_val mk, v;
    size_t given = 0;
    char tag[QD_TAG_MAX + 1];
    bool exists;
    int rc, mrc;

    if (more)
        *more = false;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    if (last && *last && strlen(last) > QD_TAG_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "'last' is longer than a tag can be");
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((rc = repo_exists_txn(txn, s, repo, &exists)) < 0)
        goto done;
    if (!exists) {
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "repository %s is unknown", repo);
        goto done;
    }
    key_repo(&k, 0, repo, NULL);
    if (last && *last)
        key_tag(&start, repo, last);
    else
        start = k;
    if ((mrc = mdb_cursor_open(txn, s->db_tags, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    mk = kv(&start);
    for (mrc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE); mrc == 0; mrc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT)) {
        qd_digest d;
        size_t tl;
        if (mk.mv_size < k.n || memcmp(mk.mv_data, k.b, k.n))
            break;
        tl = mk.mv_size - k.n;
        if (tl == 0 || tl > QD_TAG_MAX || v.mv_size != 32)
            continue;
        memcpy(tag, (const char *)mk.mv_data + k.n, tl);
        tag[tl] = 0;
        if (last && *last && !strcmp(tag, last))
            continue;
        if (n && given == n) {
            if (more)
                *more = true;
            break;
        }
        memcpy(d.bytes, v.mv_data, 32);
        given++;
        if ((rc = fn(tag, &d, payload)) != 0)
            goto done;
    }
    if (mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "list tags");
done:
    if (cur)
        mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    return rc;
}

int qd_registry_referrers(qd_store *s, const char *repo, const qd_digest *subject, const char *artifact_type,
                          int (*fn)(const qd_manifest_info *info, void *payload), void *payload)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    key k, pk;
    MDB_val mk, v;
    int rc, mrc;

    if ((rc = check_repo(repo)) < 0)
        return rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    k.b[0] = 'S';
    memcpy(k.b + 1, subject->bytes, 32);
    k.n = 33;
    if ((mrc = mdb_cursor_open(txn, s->db_manifests, &cur))) {
        rc = qd_store__err_mdb(mrc, "open a cursor");
        goto done;
    }
    mk = kv(&k);
    for (mrc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE); mrc == 0; mrc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT)) {
        qd_digest d;
        qd_manifest_info info;
        bool held;
        if (mk.mv_size != 65 || memcmp(mk.mv_data, k.b, 33))
            break;
        memcpy(d.bytes, (const uint8_t *)mk.mv_data + 33, 32);
        key_repo(&pk, 'P', repo, &d);
        if ((rc = db_has(txn, s->db_manifests, &pk, &held)) < 0)
            goto done;
        if (!held)
            continue;
        if ((rc = mrec_info(txn, s, &d, &info, NULL, NULL)) < 0)
            goto done;
        if (artifact_type && *artifact_type && strcmp(artifact_type, info.artifact_type))
            continue;
        if ((rc = fn(&info, payload)) != 0)
            goto done;
    }
    if (mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "list referrers");
done:
    if (cur)
        mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    return rc;
}

/* ---- blob membership ------------------------------------------------------------------------------------------- */

typedef struct blob_ctx {
    const char *repo;
    const qd_digest *d;
    bool orphan; /* after unlink: no repository holds it and nothing references it */
} blob_ctx;

static int link_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    blob_ctx *c = payload;
    key k;
    int rc;
    if (!blob_exists(txn, s, c->d)) {
        char ds[QD_DIGEST_STR_LEN + 1];
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "blob %s is unknown", fmt_digest(ds, c->d));
    }
    key_repo(&k, 'B', c->repo, c->d);
    if ((rc = db_put_empty(txn, s->db_manifests, &k)) < 0)
        return rc;
    key_rev(&k, 'b', c->d, c->repo);
    return db_put_empty(txn, s->db_manifests, &k);
}

int qd_registry__link_in_txn(qd_store *s, MDB_txn *txn, const char *repo, const qd_digest *d)
{
    blob_ctx c = {repo, d, false};
    int rc;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    return link_txn(s, txn, &c);
}

int qd_registry_blob_link(qd_store *s, const char *repo, const qd_digest *d)
{
    blob_ctx c = {repo, d, false};
    int rc;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    return qd_store__write(s, link_txn, &c);
}

bool qd_registry_blob_in_repo(qd_store *s, const char *repo, const qd_digest *d)
{
    MDB_txn *txn;
    key k;
    bool has = false;
    if (check_repo(repo) < 0 || qd_store__read_begin(s, &txn) < 0)
        return false;
    key_repo(&k, 'B', repo, d);
    if (db_has(txn, s->db_manifests, &k, &has) < 0)
        has = false;
    has = has && blob_exists(txn, s, d);
    qd_store__txn_end(s, txn);
    return has;
}

static int unlink_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    blob_ctx *c = payload;
    MDB_cursor *cur;
    MDB_val mk, v;
    key k;
    bool has, referenced = false;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc, mrc;

    key_repo(&k, 'B', c->repo, c->d);
    if ((rc = db_has(txn, s->db_manifests, &k, &has)) < 0)
        return rc;
    if (!has)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "blob %s is not in repository %s", fmt_digest(ds, c->d),
                            c->repo);
    /* Refused while a manifest of this repository references it. */
    if ((mrc = mdb_cursor_open(txn, s->db_refs, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    mk = (MDB_val){32, (void *)c->d->bytes};
    for (mrc = mdb_cursor_get(cur, &mk, &v, MDB_SET_RANGE); mrc == 0; mrc = mdb_cursor_get(cur, &mk, &v, MDB_NEXT)) {
        qd_digest from;
        key pk;
        bool held;
        if (mk.mv_size != 64 || memcmp(mk.mv_data, c->d->bytes, 32))
            break;
        referenced = true;
        memcpy(from.bytes, (const uint8_t *)mk.mv_data + 32, 32);
        key_repo(&pk, 'P', c->repo, &from);
        if ((rc = db_has(txn, s->db_manifests, &pk, &held)) < 0) {
            mdb_cursor_close(cur);
            return rc;
        }
        if (held) {
            char fs[QD_DIGEST_STR_LEN + 1];
            mdb_cursor_close(cur);
            return qd_error_set(QD_EREFERENCED, QD_EC_STORE, "blob %s is referenced by manifest %s of %s",
                                fmt_digest(ds, c->d), fmt_digest(fs, &from), c->repo);
        }
    }
    mdb_cursor_close(cur);
    if (mrc && mrc != MDB_NOTFOUND)
        return qd_store__err_mdb(mrc, "scan references");
    if ((rc = db_del(txn, s->db_manifests, &k)) < 0)
        return rc;
    key_rev(&k, 'b', c->d, c->repo);
    if ((rc = db_del(txn, s->db_manifests, &k)) < 0)
        return rc;
    key_rev(&k, 'b', c->d, NULL);
    if ((rc = db_has_prefix(txn, s->db_manifests, &k, &has)) < 0)
        return rc;
    c->orphan = !has && !referenced;
    return QD_OK;
}

int qd_registry_blob_unlink(qd_store *s, const char *repo, const qd_digest *d)
{
    blob_ctx c = {repo, d, false};
    int rc;
    if ((rc = check_repo(repo)) < 0)
        return rc;
    if ((rc = qd_store__write(s, unlink_txn, &c)) < 0)
        return rc;
    if (c.orphan)
        maybe_remove_blob(s, d);
    return QD_OK;
}

/* ---- tokens ------------------------------------------------------------------------------------------------------ */

static void token_key(uint8_t kb[TOKEN_PREFIX_LEN + 32], const qd_digest *h)
{
    memcpy(kb, TOKEN_PREFIX, TOKEN_PREFIX_LEN);
    memcpy(kb + TOKEN_PREFIX_LEN, h->bytes, 32);
}

static int token_parse(const MDB_val *k, const MDB_val *v, qd_token_info *out)
{
    const char *p = (const char *)v->mv_data + 8, *end = (const char *)v->mv_data + v->mv_size;
    const char *z1, *z2;
    static const char hex[] = "0123456789abcdef";
    if (v->mv_size < 10 || !(z1 = memchr(p, 0, (size_t)(end - p))) || !(z2 = memchr(z1 + 1, 0, (size_t)(end - z1 - 1))))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "a token record is malformed");
    memset(out, 0, sizeof(*out));
    memcpy(&out->created, v->mv_data, 8);
    snprintf(out->name, sizeof(out->name), "%s", p);
    snprintf(out->scopes, sizeof(out->scopes), "%s", z1 + 1);
    for (int i = 0; i < QD_TOKEN_ID_LEN / 2; i++) {
        uint8_t b = ((const uint8_t *)k->mv_data)[TOKEN_PREFIX_LEN + i];
        out->id[2 * i] = hex[b >> 4];
        out->id[2 * i + 1] = hex[b & 15];
    }
    return QD_OK;
}

typedef struct tok_ctx {
    qd_digest h;
    const char *name, *scopes;
    int64_t created;
    const char *id;
    qd_token_info *info;
} tok_ctx;

static int tok_put_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    tok_ctx *c = payload;
    uint8_t kb[TOKEN_PREFIX_LEN + 32];
    size_t nl = strlen(c->name) + 1, sl = strlen(c->scopes) + 1;
    MDB_val k = {sizeof(kb), kb}, v = {8 + nl + sl, NULL};
    int rc;
    token_key(kb, &c->h);
    if ((rc = mdb_put(txn, s->db_meta, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE)))
        return qd_store__err_mdb(rc, "write a token");
    memcpy(v.mv_data, &c->created, 8);
    memcpy((char *)v.mv_data + 8, c->name, nl);
    memcpy((char *)v.mv_data + 8 + nl, c->scopes, sl);
    return token_parse(&k, &v, c->info);
}

int qd_registry_token_create(char *token, qd_token_info *info, qd_store *s, const char *name, const char *scopes)
{
    uint8_t raw[32];
    qd_token_info tmp;
    tok_ctx c;
    static const char hex[] = "0123456789abcdef";
    int rc;

    if (!name)
        name = "";
    if (strlen(name) > QD_TOKEN_NAME_MAX || !scopes || strlen(scopes) > QD_TOKEN_SCOPES_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "token name (max %d) or scopes (max %d) too long",
                            QD_TOKEN_NAME_MAX, QD_TOKEN_SCOPES_MAX);
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return qd_error_set(QD_EIO, QD_EC_OS, "getrandom: %s", strerror(errno));
    memcpy(token, "qdt_", 4);
    for (int i = 0; i < 32; i++) {
        token[4 + 2 * i] = hex[raw[i] >> 4];
        token[5 + 2 * i] = hex[raw[i] & 15];
    }
    token[QD_TOKEN_LEN] = 0;
    memset(raw, 0, sizeof(raw));
    c = (tok_ctx){{{0}}, name, scopes, qd_store__now(), NULL, info ? info : &tmp};
    if ((rc = qd_sha256_buf(&c.h, token, QD_TOKEN_LEN)) < 0)
        return rc;
    if ((rc = qd_store__write(s, tok_put_txn, &c)) < 0)
        memset(token, 0, QD_TOKEN_LEN);
    return rc;
}

int qd_registry_token_lookup(qd_token_info *out, qd_store *s, const char *token)
{
    MDB_txn *txn;
    qd_digest h;
    uint8_t kb[TOKEN_PREFIX_LEN + 32];
    MDB_val k = {sizeof(kb), kb}, v;
    int rc, mrc;
    if (!token || strlen(token) != QD_TOKEN_LEN || strncmp(token, "qdt_", 4))
        return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "not a quantd token");
    if ((rc = qd_sha256_buf(&h, token, QD_TOKEN_LEN)) < 0)
        return rc;
    token_key(kb, &h);
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    mrc = mdb_get(txn, s->db_meta, &k, &v);
    if (mrc == MDB_NOTFOUND)
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "unknown or revoked token");
    else if (mrc)
        rc = qd_store__err_mdb(mrc, "read a token");
    else
        rc = token_parse(&k, &v, out);
    qd_store__txn_end(s, txn);
    return rc;
}

/* Walk the token records; fn returns non-zero to stop. For revoke, the callback deletes through the cursor. */
static int token_walk(MDB_txn *txn, qd_store *s, int (*fn)(MDB_cursor *cur, const qd_token_info *t, void *payload),
                      void *payload)
{
    MDB_cursor *cur;
    MDB_val k = {TOKEN_PREFIX_LEN, (void *)TOKEN_PREFIX}, v;
    int rc = QD_OK, mrc;
    if ((mrc = mdb_cursor_open(txn, s->db_meta, &cur)))
        return qd_store__err_mdb(mrc, "open a cursor");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        qd_token_info t;
        if (k.mv_size != TOKEN_PREFIX_LEN + 32 || memcmp(k.mv_data, TOKEN_PREFIX, TOKEN_PREFIX_LEN))
            break;
        if ((rc = token_parse(&k, &v, &t)) < 0 || (rc = fn(cur, &t, payload)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    if (rc == QD_OK && mrc && mrc != MDB_NOTFOUND)
        rc = qd_store__err_mdb(mrc, "list tokens");
    return rc;
}

typedef struct list_ctx {
    int (*fn)(const qd_token_info *t, void *payload);
    void *payload;
} list_ctx;

static int list_one(MDB_cursor *cur, const qd_token_info *t, void *payload)
{
    list_ctx *c = payload;
    (void)cur;
    return c->fn(t, c->payload);
}

int qd_registry_token_list(qd_store *s, int (*fn)(const qd_token_info *t, void *payload), void *payload)
{
    MDB_txn *txn;
    list_ctx c = {fn, payload};
    int rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    rc = token_walk(txn, s, list_one, &c);
    qd_store__txn_end(s, txn);
    return rc;
}

typedef struct revoke_ctx {
    const char *id;
    int matches;
} revoke_ctx;

static int count_match(MDB_cursor *cur, const qd_token_info *t, void *payload)
{
    revoke_ctx *c = payload;
    (void)cur;
    if (!strncmp(t->id, c->id, strlen(c->id)))
        c->matches++;
    return 0;
}

static int del_match(MDB_cursor *cur, const qd_token_info *t, void *payload)
{
    revoke_ctx *c = payload;
    if (strncmp(t->id, c->id, strlen(c->id)))
        return 0;
    int rc = mdb_cursor_del(cur, 0);
    return rc ? qd_store__err_mdb(rc, "revoke a token") : 1;
}

static int revoke_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    revoke_ctx *c = payload;
    int rc;
    c->matches = 0;
    if ((rc = token_walk(txn, s, count_match, c)) < 0)
        return rc;
    if (c->matches == 0)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no token has id %s", c->id);
    if (c->matches > 1)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "id %s is ambiguous: give more digits", c->id);
    rc = token_walk(txn, s, del_match, c);
    return rc < 0 ? rc : QD_OK;
}

int qd_registry_token_revoke(qd_store *s, const char *id)
{
    revoke_ctx c = {id, 0};
    size_t n = id ? strlen(id) : 0;
    if (n < 6 || n > QD_TOKEN_ID_LEN || strspn(id, "0123456789abcdef") != n)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a token id is 6 to %d lowercase hex digits",
                            QD_TOKEN_ID_LEN);
    return qd_store__write(s, revoke_txn, &c);
}

/* ---- the OCI name and tag grammar --------------------------------------------------------------------------------------------------- */

static bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*; returns the length consumed, 0 when invalid. */
static size_t name_component(const char *s)
{
    size_t i = 0;
    if (!is_lower_alnum(s[0]))
        return 0;
    for (;;) {
        while (is_lower_alnum(s[i]))
            i++;
        if (s[i] == '.' || (s[i] == '_' && s[i + 1] != '_'))
            i++;
        else if (s[i] == '_' && s[i + 1] == '_')
            i += 2;
        else if (s[i] == '-') {
            while (s[i] == '-')
                i++;
        } else
            return i;
        if (!is_lower_alnum(s[i]))
            return 0;
    }
}

bool qd_registry_name_valid(const char *name)
{
    size_t n = strlen(name);
    const char *p = name;
    if (n == 0 || n > QD_REPO_MAX)
        return false;
    for (;;) {
        size_t c = name_component(p);
        if (!c)
            return false;
        p += c;
        if (*p == 0)
            return true;
        if (*p != '/')
            return false;
        p++;
    }
}

bool qd_registry_tag_valid(const char *tag)
{
    size_t n = strlen(tag);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = tag[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  (i > 0 && (c == '.' || c == '-'));
        if (!ok)
            return false;
    }
    return true;
}

/* ---- scopes ------------------------------------------------------------------------------------------------------ */

static unsigned scope_bits(const char *s, size_t n)
{
    if (n == 4 && !strncmp(s, "pull", 4))
        return QD_TOKEN_SCOPE_PULL;
    if (n == 4 && !strncmp(s, "push", 4))
        return QD_TOKEN_SCOPE_PUSH | QD_TOKEN_SCOPE_PULL;
    if (n == 8 && !strncmp(s, "quantize", 8))
        return QD_TOKEN_SCOPE_QUANTIZE;
    if (n == 5 && !strncmp(s, "admin", 5))
        return QD_TOKEN_SCOPE_ADMIN | QD_TOKEN_SCOPE_PUSH | QD_TOKEN_SCOPE_PULL | QD_TOKEN_SCOPE_QUANTIZE;
    return 0;
}

/* Walk "scope:pattern" items; fn returns true to stop. */
static bool walk_scopes(const char *scopes, bool (*fn)(unsigned bits, const char *pat, void *p), void *p, bool *bad)
{
    const char *s = scopes;
    *bad = false;
    while (*s) {
        const char *end = strchr(s, ','), *colon;
        size_t n = end ? (size_t)(end - s) : strlen(s);
        char pat[QD_TOKEN_SCOPES_MAX + 1];
        unsigned bits;
        colon = memchr(s, ':', n);
        if (!colon || colon == s || (size_t)(colon - s) + 1 >= n) {
            *bad = true;
            return false;
        }
        bits = scope_bits(s, (size_t)(colon - s));
        if (!bits) {
            *bad = true;
            return false;
        }
        memcpy(pat, colon + 1, n - (size_t)(colon - s) - 1);
        pat[n - (size_t)(colon - s) - 1] = 0;
        if (fn && fn(bits, pat, p))
            return true;
        s += n;
        if (*s == ',')
            s++;
    }
    return false;
}

typedef struct allow_ctx {
    const char *repo;
    unsigned need;
} allow_ctx;

static bool allow_one(unsigned bits, const char *pat, void *p)
{
    allow_ctx *c = p;
    if ((bits & c->need) != c->need)
        return false;
    return c->repo == NULL || fnmatch(pat, c->repo, 0) == 0;
}

bool qd_token_scopes_allow(const char *scopes, const char *repo, unsigned need)
{
    allow_ctx c = {repo, need};
    bool bad;
    return walk_scopes(scopes, allow_one, &c, &bad);
}

int qd_token_scopes_validate(const char *scopes)
{
    bool bad;
    if (!scopes || !*scopes)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "no scopes given");
    walk_scopes(scopes, NULL, NULL, &bad);
    if (bad)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "scopes are SCOPE:PATTERN[,...] with SCOPE pull, push, quantize or admin: '%s'", scopes);
    return QD_OK;
}

int qd_registry_stats_get(qd_registry_stats *out, qd_store *s)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_stat st;
    MDB_val k = {1, "M"}, v;
    int rc, mrc;
    memset(out, 0, sizeof(*out));
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((mrc = mdb_stat(txn, s->db_tags, &st)) == 0)
        out->tags = st.ms_entries;
    if (mrc == 0 && (mrc = mdb_cursor_open(txn, s->db_manifests, &cur)) == 0) {
        for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
             mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (((const uint8_t *)k.mv_data)[0] != 'M')
                break;
            out->manifests++;
        }
        mdb_cursor_close(cur);
    }
    qd_store__txn_end(s, txn);
    return mrc && mrc != MDB_NOTFOUND ? qd_store__err_mdb(mrc, "count manifests") : QD_OK;
}
