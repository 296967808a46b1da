/*
 * audit_api.c - audit queries over HTTP, answered from the store's LMDB audit indexes (qd/audit.h), never by a scan.
 *
 *   GET /v1/audit/lineage/<digest>?direction=up|down&depth=N        -> 200 schemas/audit-lineage.schema.json
 *   GET /v1/audit/query?method=&format=&bits=&calibration=&converter=&converter_version=&hardware=&key=
 *                      &verdict=&since=&until=&namespace=&limit=&cursor=  -> 200 schemas/audit-query.schema.json
 *
 * Auth: a pull scope on some repository to ask at all; then every artifact is checked against the token's pull
 * scopes on its own repository: a query gives only those the token may pull (a page holds up to `limit` of them),
 * and a lineage walk shows the others as bare digests without their record.
 *
 * Bad input (an unknown or repeated parameter, a bad digest, depth outside 1..16, limit outside 1..1000, a
 * malformed number or cursor) gets 400 with the OCI error body; the work runs on the worker pool.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon.h"
#include "qd/audit.h"

#define DEFAULT_LIMIT 100
#define DEFAULT_DEPTH 3
#define MAX_NODES 10000

static const char *const QUERY_KEYS[] = {"method",    "format",  "bits",      "calibration", "converter",
                                         "converter_version", "hardware", "key", "verdict", "since",
                                         "until",     "namespace", "limit",   "cursor",      NULL};
static const char *const LINEAGE_KEYS[] = {"direction", "depth", NULL};

typedef struct audit_work {
    bool lineage;
    /* scopes of the caller */
    bool all;
    char scopes[QD_TOKEN_SCOPES_MAX + 1];
    /* query: values copied out of the request */
    char vals[12][QD_REPO_MAX + 1];
    bool has[12];
    qd_audit_filter f;
    char cursor[QD_AUDIT_CURSOR_LEN + 1];
    /* lineage */
    qd_digest start;
    bool down;
    unsigned depth;
    /* result */
    qd_server *srv;
    qd_buf out;
    qd_error_saved err;
} audit_work;

static void work_free(void *p)
{
    audit_work *w = p;
    qd_buf_dispose(&w->out);
    qd_free(w);
}

/* 400 with the OCI error body. */
static void bad(qd_req *r, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:[{s:s,s:s,s:{}}]}", "errors", "code", code, "message", msg, "detail");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    qd_reply_json(r, 400, text ? text : "{\"errors\":[{\"code\":\"QUERY_INVALID\",\"message\":\"bad request\"}]}");
    free(text); /* jansson */
}

/* Every parameter must be known and given once. */
static bool params_ok(qd_req *r, const char *const *known)
{
    struct evkeyval *kv;
    char msg[256];
    (void)qd_req_query(r, "");
    for (kv = r->query.tqh_first; kv; kv = kv->next.tqe_next) {
        size_t i;
        struct evkeyval *o;
        for (i = 0; known[i] && strcmp(known[i], kv->key); i++)
            ;
        if (!known[i]) {
            snprintf(msg, sizeof(msg), "unknown query parameter '%.64s'", kv->key);
            bad(r, "QUERY_INVALID", msg);
            return false;
        }
        for (o = kv->next.tqe_next; o; o = o->next.tqe_next)
            if (!strcmp(o->key, kv->key)) {
                snprintf(msg, sizeof(msg), "query parameter '%s' given twice", kv->key);
                bad(r, "QUERY_INVALID", msg);
                return false;
            }
    }
    return true;
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !*s || *s == ' ' || *s == '+')
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool allow_repo(const char *repo, void *payload)
{
    audit_work *w = payload;
    return w->all || qd_token_scopes_allow(w->scopes, repo, QD_TOKEN_SCOPE_PULL);
}

/* ---- query ------------------------------------------------------------------------------------------------- */

typedef struct qout {
    qd_buf *out;
    size_t n;
} qout;

static int query_one(const qd_audit_entry *e, void *payload)
{
    qout *q = payload;
    int rc;
    if ((rc = qd_buf_puts(q->out, q->n++ ? "," : "")) < 0)
        return rc;
    return qd_audit_entry_json(q->out, e);
}

static void query_work(void *p)
{
    qd_req *r = p;
    audit_work *w = r->work;
    qd_audit_page page;
    qout q = {&w->out, 0};
    int rc;
    w->f.allow = allow_repo;
    w->f.allow_payload = w;
    if ((rc = qd_buf_puts(&w->out, "{\"results\":[")) == QD_OK &&
        (rc = qd_audit_index_query(&page, w->srv->store, &w->f, query_one, &q)) == QD_OK) {
        json_t *tail = json_pack("{s:I,s:s?,s:s,s:I}", "count", (json_int_t)page.returned, "next_cursor",
                                 page.more ? page.next_cursor : NULL, "driver", page.driver, "scanned",
                                 (json_int_t)page.scanned);
        char *text = tail ? json_dumps(tail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(tail);
        if (!text)
            rc = QD_ENOMEM;
        else
            rc = qd_buf_printf(&w->out, "],%s", text + 1); /* the tail object's members after the results */
        free(text); /* jansson */
    }
    qd_error_save(&w->err, rc);
}

/* ---- lineage ----------------------------------------------------------------------------------------------- */

typedef struct lout {
    audit_work *w;
    qd_buf nodes, edges;
    size_t n, ne;
} lout;

static int lineage_one(const qd_audit_node *n, void *payload)
{
    lout *l = payload;
    char d[QD_DIGEST_STR_LEN + 1], f[QD_DIGEST_STR_LEN + 1];
    bool show = n->indexed && allow_repo(n->entry.repo, l->w);
    int rc;
    qd_digest_format(d, &n->digest);
    if (n->has_from)
        qd_digest_format(f, &n->from);
    if ((rc = qd_buf_printf(&l->nodes, "%s{\"digest\":\"%s\",\"depth\":%u,\"from\":%s%s%s,\"record\":", l->n++ ? "," : "",
                            d, n->depth, n->has_from ? "\"" : "", n->has_from ? f : "null", n->has_from ? "\"" : "")) <
        0)
        return rc;
    if ((rc = show ? qd_audit_entry_json(&l->nodes, &n->entry) : qd_buf_puts(&l->nodes, "null")) < 0 ||
        (rc = qd_buf_puts(&l->nodes, "}")) < 0)
        return rc;
    if (n->has_from) /* edges always point child -> parent */
        rc = qd_buf_printf(&l->edges, "%s{\"child\":\"%s\",\"parent\":\"%s\"}", l->ne++ ? "," : "",
                           l->w->down ? d : f, l->w->down ? f : d);
    return rc;
}

static void lineage_work(void *p)
{
    qd_req *r = p;
    audit_work *w = r->work;
    lout l = {w, QD_BUF_INIT(0), QD_BUF_INIT(0), 0, 0};
    bool trunc = false;
    char d[QD_DIGEST_STR_LEN + 1];
    int rc = qd_audit_index_lineage(&trunc, w->srv->store, &w->start, w->down, w->depth, MAX_NODES, lineage_one, &l);
    if (rc == QD_OK)
        rc = qd_buf_printf(&w->out,
                           "{\"digest\":\"%s\",\"direction\":\"%s\",\"depth\":%u,\"truncated\":%s,\"nodes\":[%.*s],"
                           "\"edges\":[%.*s]}",
                           qd_digest_format(d, &w->start), w->down ? "down" : "up", w->depth,
                           trunc ? "true" : "false", (int)l.nodes.len, l.nodes.ptr ? (const char *)l.nodes.ptr : "",
                           (int)l.edges.len, l.edges.ptr ? (const char *)l.edges.ptr : "");
    qd_buf_dispose(&l.nodes);
    qd_buf_dispose(&l.edges);
    qd_error_save(&w->err, rc);
}

static void audit_done(void *p)
{
    qd_req *r = p;
    audit_work *w = r->work;
    int rc = qd_error_restore(&w->err);
    if (rc < 0) {
        if (rc == QD_EINVAL) {
            bad(r, "QUERY_INVALID", w->err.message);
            return;
        }
        qd_reply_err(r, rc, rc == QD_ENOTFOUND ? "MANIFEST_UNKNOWN" : "UNKNOWN");
        return;
    }
    qd_req_header(r, "Cache-Control", "no-store");
    if (qd_buf_put(&w->out, "", 1) < 0) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    qd_reply_json(r, 200, (const char *)w->out.ptr);
}

/* ---- routing ----------------------------------------------------------------------------------------------- */

static bool copy_param(qd_req *r, audit_work *w, int i, const char *name, const char **dst)
{
    const char *v = qd_req_query(r, name);
    char msg[160];
    if (!v)
        return true;
    if (!*v || strlen(v) > QD_REPO_MAX) {
        snprintf(msg, sizeof(msg), "%s must have 1 to %d bytes", name, QD_REPO_MAX);
        bad(r, "QUERY_INVALID", msg);
        return false;
    }
    snprintf(w->vals[i], sizeof(w->vals[i]), "%s", v);
    *dst = w->vals[i];
    return true;
}

static bool parse_query(qd_req *r, audit_work *w)
{
    qd_audit_filter *f = &w->f;
    const char *v;
    int64_t n;
    if (!params_ok(r, QUERY_KEYS))
        return false;
    if (!copy_param(r, w, 0, "method", &f->method) || !copy_param(r, w, 1, "format", &f->format) ||
        !copy_param(r, w, 2, "calibration", &f->calibration) || !copy_param(r, w, 3, "converter", &f->converter) ||
        !copy_param(r, w, 4, "converter_version", &f->converter_version) ||
        !copy_param(r, w, 5, "hardware", &f->hardware) || !copy_param(r, w, 6, "key", &f->key) ||
        !copy_param(r, w, 7, "verdict", &f->verdict) || !copy_param(r, w, 8, "namespace", &f->namespace_name))
        return false;
    if ((v = qd_req_query(r, "bits"))) {
        if (!parse_i64(v, 1, 64, &n)) {
            bad(r, "QUERY_INVALID", "bits must be an integer from 1 to 64");
            return false;
        }
        f->bits = (int)n;
    }
    if ((v = qd_req_query(r, "since"))) {
        if (!parse_i64(v, 0, INT64_MAX / 2, &n)) {
            bad(r, "QUERY_INVALID", "since must be unix seconds");
            return false;
        }
        f->since = n;
    }
    if ((v = qd_req_query(r, "until"))) {
        if (!parse_i64(v, 1, INT64_MAX / 2, &n)) {
            bad(r, "QUERY_INVALID", "until must be unix seconds (at least 1)");
            return false;
        }
        f->until = n;
    }
    if (f->until && f->until < f->since) {
        bad(r, "QUERY_INVALID", "until is before since");
        return false;
    }
    f->limit = DEFAULT_LIMIT;
    if ((v = qd_req_query(r, "limit"))) {
        if (!parse_i64(v, 1, QD_AUDIT_LIMIT_MAX, &n)) {
            bad(r, "PAGINATION_NUMBER_INVALID", "limit must be an integer from 1 to 1000");
            return false;
        }
        f->limit = (size_t)n;
    }
    if ((v = qd_req_query(r, "cursor"))) {
        if (!*v || strlen(v) > QD_AUDIT_CURSOR_LEN) {
            bad(r, "QUERY_INVALID", "cursor: not one this server gave");
            return false;
        }
        snprintf(w->cursor, sizeof(w->cursor), "%s", v);
        f->cursor = w->cursor;
    }
    return true;
}

static bool parse_lineage(qd_req *r, audit_work *w, const char *digest)
{
    const char *v;
    int64_t n;
    char msg[256];
    if (!params_ok(r, LINEAGE_KEYS))
        return false;
    if (qd_digest_parse(&w->start, digest) < 0) {
        snprintf(msg, sizeof(msg), "not a digest: %s", qd_error_last()->message);
        bad(r, "DIGEST_INVALID", msg);
        return false;
    }
    v = qd_req_query(r, "direction");
    if (v && strcmp(v, "up") && strcmp(v, "down")) {
        bad(r, "QUERY_INVALID", "direction must be up or down");
        return false;
    }
    w->down = v && !strcmp(v, "down");
    w->depth = DEFAULT_DEPTH;
    if ((v = qd_req_query(r, "depth"))) {
        if (!parse_i64(v, 1, QD_AUDIT_DEPTH_MAX, &n)) {
            snprintf(msg, sizeof(msg), "depth must be an integer from 1 to %d", QD_AUDIT_DEPTH_MAX);
            bad(r, "QUERY_INVALID", msg);
            return false;
        }
        w->depth = (unsigned)n;
    }
    return true;
}

void qd_audit_api_handle(qd_req *r)
{
    const char *p = r->path;
    audit_work *w;
    int rc;
    bool lineage = !strncmp(p, "/v1/audit/lineage/", 18), query = !strcmp(p, "/v1/audit/query");

    r->route = lineage ? "audit_lineage" : query ? "audit_query" : "unknown";
    if (!lineage && !query) {
        qd_reply_json(r, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"no such endpoint\",\"detail\":{}}]}");
        return;
    }
    if (r->method != EVHTTP_REQ_GET) {
        qd_reply_oci(r, "UNSUPPORTED", "method not allowed here: use GET", NULL);
        return;
    }
    if (!qd_auth_check(r, NULL, QD_SCOPE_PULL))
        return;
    if (!(w = qd_calloc(1, sizeof(*w)))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    w->srv = r->srv;
    w->lineage = lineage;
    w->out = (qd_buf)QD_BUF_INIT(64u << 20);
    r->work = w;
    r->work_free = work_free;
    if (!qd_auth_scopes(r, w->scopes, sizeof(w->scopes), &w->all)) {
        qd_reply_oci(r, "UNAUTHORIZED", "unknown or revoked token", NULL);
        return;
    }
    if (lineage ? !parse_lineage(r, w, p + 18) : !parse_query(r, w))
        return;
    if ((rc = qd_req_offload(r, lineage ? lineage_work : query_work, audit_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}

qd_audit_entry *qd_bundle_audit_entry(qd_store *s, bool has_subject, const char *artifact_type,
                                      const qd_digest *blobs, size_t n_blobs)
{
    qd_buf b = QD_BUF_INIT(16u << 20);
    qd_audit_entry *e;
    if (!has_subject || !artifact_type || strcmp(artifact_type, QD_BUNDLE_MEDIA_TYPE) || n_blobs < 2)
        return NULL;
    if (!(e = qd_malloc(sizeof(*e))))
        return NULL;
    if (qd_store_get(s, &blobs[n_blobs - 1], 0, UINT64_MAX, qd_buf_sink, &b) < 0 ||
        qd_audit_entry_from_bundle(e, b.ptr, b.len) < 0) {
        qd_log(QD_LOG_DEBUG, "audit", "a bundle is not indexed: %s", qd_error_last()->message);
        qd_error_clear();
        qd_free(e);
        e = NULL;
    }
    qd_buf_dispose(&b);
    return e;
}
