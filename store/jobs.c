/*
 * jobs.c - quantize-job records, deduplication and the one-transaction publish (see include/qd/registry.h).
 *
 * Layout:
 *   jobs     'J' id (16 hex)      -> the record (JSON text, owned by the daemon)
 *            'D' dedup (32 bytes) -> id
 *   lineage  child (32) parent (32) -> ""
 */
#include <string.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/registry.h"
#include "store_int.h"

static int check_id(const char *id)
{
    if (!id || strlen(id) != QD_JOB_ID_LEN || strspn(id, "0123456789abcdef") != QD_JOB_ID_LEN)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a job id is %d lowercase hex digits", QD_JOB_ID_LEN);
    return QD_OK;
}

static void job_key(uint8_t k[1 + QD_JOB_ID_LEN], const char *id)
{
    k[0] = 'J';
    memcpy(k + 1, id, QD_JOB_ID_LEN);
}

typedef struct put_ctx {
    const char *id, *json;
} put_ctx;

static int put_record(qd_store *s, MDB_txn *txn, const char *id, const char *json)
{
    uint8_t kb[1 + QD_JOB_ID_LEN];
    MDB_val k = {sizeof(kb), kb}, v = {strlen(json), (void *)json};
    int rc;
    job_key(kb, id);
    if ((rc = mdb_put(txn, s->db_jobs, &k, &v, 0)))
        return qd_store__err_mdb(rc, "write a job record");
    return QD_OK;
}

static int put_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    put_ctx *c = payload;
    return put_record(s, txn, c->id, c->json);
}

int qd_job_put(qd_store *s, const char *id, const char *json)
{
    put_ctx c = {id, json};
    int rc;
    if ((rc = check_id(id)) < 0)
        return rc;
    if (!json)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a job record is needed");
    return qd_store__write(s, put_txn, &c);
}

int qd_job_get(qd_buf *out, qd_store *s, const char *id)
{
    MDB_txn *txn;
    uint8_t kb[1 + QD_JOB_ID_LEN];
    MDB_val k = {sizeof(kb), kb}, v;
    int rc;
    if (check_id(id) < 0)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "job %s is unknown", id ? id : "(null)");
    job_key(kb, id);
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    rc = mdb_get(txn, s->db_jobs, &k, &v);
    if (rc == MDB_NOTFOUND)
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "job %s is unknown", id);
    else if (rc)
        rc = qd_store__err_mdb(rc, "read a job record");
    else
        rc = qd_buf_put(out, v.mv_data, v.mv_size);
    qd_store__txn_end(s, txn);
    return rc;
}

int qd_job_list(qd_store *s, int (*fn)(const char *id, const char *json, size_t len, void *payload), void *payload)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    uint8_t start = 'J';
    MDB_val k = {1, &start}, v;
    qd_buf text;
    int rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->db_jobs, &cur))) {
        qd_store__txn_end(s, txn);
        return qd_store__err_mdb(rc, "open a cursor");
    }
    qd_buf_init(&text, 0);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        char id[QD_JOB_ID_LEN + 1];
        if (k.mv_size != 1 + QD_JOB_ID_LEN || ((const uint8_t *)k.mv_data)[0] != 'J')
            break;
        memcpy(id, (const uint8_t *)k.mv_data + 1, QD_JOB_ID_LEN);
        id[QD_JOB_ID_LEN] = 0;
        /* a NUL-terminated copy: records are JSON text without NUL */
        qd_buf_clear(&text);
        if ((rc = qd_buf_put(&text, v.mv_data, v.mv_size)) < 0)
            break;
        if ((rc = fn(id, qd_buf_cstr(&text), v.mv_size, payload)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    qd_buf_dispose(&text);
    return rc == MDB_NOTFOUND ? QD_OK : rc > 0 ? qd_store__err_mdb(rc, "walk the jobs") : rc;
}

typedef struct submit_ctx {
    const qd_digest *dedup;
    const char *id, *json;
    bool (*keep)(const char *json, size_t len, void *payload);
    void *payload;
    char *existing;
} submit_ctx;

static int submit_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    submit_ctx *c = payload;
    uint8_t db[33];
    MDB_val dk = {sizeof(db), db}, dv, v = {QD_JOB_ID_LEN, (void *)c->id};
    int rc;
    db[0] = 'D';
    memcpy(db + 1, c->dedup->bytes, 32);
    rc = mdb_get(txn, s->db_jobs, &dk, &dv);
    if (rc == 0 && dv.mv_size == QD_JOB_ID_LEN) {
        uint8_t kb[1 + QD_JOB_ID_LEN];
        MDB_val k = {sizeof(kb), kb}, jv;
        char other[QD_JOB_ID_LEN + 1];
        memcpy(other, dv.mv_data, QD_JOB_ID_LEN);
        other[QD_JOB_ID_LEN] = 0;
        job_key(kb, other);
        if (mdb_get(txn, s->db_jobs, &k, &jv) == 0) {
            char *text = qd_malloc(jv.mv_size + 1);
            bool keep;
            if (!text)
                return QD_ENOMEM;
            memcpy(text, jv.mv_data, jv.mv_size);
            text[jv.mv_size] = 0;
            keep = c->keep(text, jv.mv_size, c->payload);
            qd_free(text);
            if (keep) {
                memcpy(c->existing, other, QD_JOB_ID_LEN + 1);
                return QD_EEXISTS; /* aborts the (empty) transaction */
            }
        }
    } else if (rc && rc != MDB_NOTFOUND) {
        return qd_store__err_mdb(rc, "read a dedup record");
    }
    if ((rc = mdb_put(txn, s->db_jobs, &dk, &v, 0)))
        return qd_store__err_mdb(rc, "write a dedup record");
    return put_record(s, txn, c->id, c->json);
}

int qd_job_submit(char *existing_id, qd_store *s, const qd_digest *dedup, const char *id, const char *json,
                  bool (*keep)(const char *json, size_t len, void *payload), void *payload)
{
    submit_ctx c = {dedup, id, json, keep, payload, existing_id};
    int rc;
    if ((rc = check_id(id)) < 0)
        return rc;
    existing_id[0] = 0;
    rc = qd_store__write(s, submit_txn, &c);
    if (rc == QD_EEXISTS)
        qd_error_set(QD_EEXISTS, QD_EC_STORE, "an identical job exists: %s", existing_id);
    return rc;
}

typedef struct pub_ctx {
    const char *repo;
    const qd_digest *blobs;
    size_t n_blobs;
    const qd_publish_item *items;
    size_t n_items;
    const qd_digest *child, *parent;
    const char *job_id, *job_json;
} pub_ctx;

static int pub_txn(qd_store *s, MDB_txn *txn, void *payload)
{
    pub_ctx *c = payload;
    int rc;
    for (size_t i = 0; i < c->n_blobs; i++)
        if ((rc = qd_registry__link_in_txn(s, txn, c->repo, &c->blobs[i])) < 0)
            return rc;
    for (size_t i = 0; i < c->n_items; i++)
        if ((rc = qd_registry__put_in_txn(s, txn, c->repo, c->items[i].tag, c->items[i].m, &c->items[i].digest)) <
            0)
            return rc;
    if (c->child && c->parent && (rc = qd_audit__edge_in_txn(s, txn, c->child, c->parent)) < 0)
        return rc;
    if (c->job_id && c->job_json)
        return put_record(s, txn, c->job_id, c->job_json);
    return QD_OK;
}

int qd_registry_publish(qd_store *s, const char *repo, const qd_digest *blobs, size_t n_blobs,
                        const qd_publish_item *items, size_t n_items, const qd_digest *child,
                        const qd_digest *parent, const char *job_id, const char *job_json)
{
    pub_ctx c = {repo, blobs, n_blobs, items, n_items, child, parent, job_id, job_json};
    int rc;
    if (job_id && (rc = check_id(job_id)) < 0)
        return rc;
    return qd_store__write(s, pub_txn, &c);
}

int qd_lineage_parent(qd_digest *parent, qd_store *s, const qd_digest *child)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k = {32, (void *)child->bytes}, v;
    int rc;
    if ((rc = qd_store__read_begin(s, &txn)) < 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, s->db_lineage, &cur))) {
        qd_store__txn_end(s, txn);
        return qd_store__err_mdb(rc, "open a cursor");
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == 64 && !memcmp(k.mv_data, child->bytes, 32)) {
        memcpy(parent->bytes, (const uint8_t *)k.mv_data + 32, 32);
        rc = QD_OK;
    } else {
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no lineage edge for this manifest");
    }
    mdb_cursor_close(cur);
    qd_store__txn_end(s, txn);
    return rc;
}
