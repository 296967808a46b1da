/*
 * audit.c - audit queries over what the log records: every PUBLISH entry's bundle is read once, its statement's
 * predicate fields (recipe, calibration, converter, hardware, validation, source) and signing key ids are kept in
 * memory, and queries and lineage walks run over that table. This is the offline form of the audit (a store dir +
 * a log dir); the daemon's LMDB indexes are a later step (docs/LOG.md).
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/replog.h"

int qd_log__json_dump(qd_buf *out, const json_t *j, size_t flags);
int qd_log__blob_of_entry(qd_buf *out, qd_replog *log, uint64_t i, const char *path, size_t max);

struct qd_audit {
    qd_audit_record *r;
    size_t n, cap;
    struct audit_revoked {     /* key-revoke entries, in log order */
        char id[QD_KEY_ID_LEN + 1];
        uint64_t at;
    } *rev;
    size_t n_rev, cap_rev;
};

static void cpy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static const char *jstr(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    if (b)
        v = json_object_get(v, b);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void fill_predicate(qd_audit_record *r, json_t *st)
{
    json_t *p = json_object_get(st, "predicate"), *hw, *v;
    size_t i;
    cpy(r->predicate_type, sizeof(r->predicate_type), jstr(st, "predicateType", NULL));
    cpy(r->source, sizeof(r->source), jstr(p, "source", "digest"));
    cpy(r->method, sizeof(r->method), jstr(p, "recipe", "method"));
    cpy(r->format, sizeof(r->format), jstr(p, "recipe", "format"));
    cpy(r->calibration, sizeof(r->calibration), jstr(p, "calibration", "class"));
    cpy(r->converter, sizeof(r->converter), jstr(p, "converter", "name"));
    cpy(r->converter_version, sizeof(r->converter_version), jstr(p, "converter", "version"));
    cpy(r->verdict, sizeof(r->verdict), jstr(p, "validation", "verdict"));
    cpy(r->created_at, sizeof(r->created_at), jstr(p, "created_at", NULL));
    v = json_object_get(json_object_get(p, "recipe"), "weight_bits");
    r->weight_bits = json_is_integer(v) ? (int)json_integer_value(v) : 0;
    hw = json_object_get(p, "target_hardware");
    json_array_foreach(hw, i, v)
    {
        size_t l = strlen(r->hardware);
        if (json_is_string(v))
            snprintf(r->hardware + l, sizeof(r->hardware) - l, "%s%s", l ? "," : "", json_string_value(v));
    }
}

int qd_audit_load(qd_audit **out, qd_replog *log)
{
    qd_audit *a = qd_calloc(1, sizeof(*a));
    qd_buf e = QD_BUF_INIT(64 * 1024), b = QD_BUF_INIT(16u << 20);
    qd_envelope *env = NULL;
    json_t *j = NULL, *st = NULL;
    uint64_t i, n = qd_replog_size(log);
    int error = QD_OK;
    *out = NULL;
    if (!a)
        return QD_ENOMEM;
    for (i = 0; i < n; i++) {
        qd_audit_record *r;
        const char *kind, *name, *manifest;
        json_int_t t = 0;
        char path[512];
        const uint8_t *pl;
        size_t pl_len, k;
        qd_buf_clear(&e);
        json_decref(j);
        j = NULL;
        if ((error = qd_replog_entry_json(&e, log, i)) < 0)
            goto done;
        if (!(j = json_loadb(e.ptr, e.len, 0, NULL)) ||
            json_unpack(j, "{s:s, s?s, s?s, s?I}", "kind", &kind, "name", &name, "manifest", &manifest, "time", &t)) {
            error = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "entry %llu: malformed", (unsigned long long)i);
            goto done;
        }
        if (!strcmp(kind, "key-revoke")) {
            const char *kid = json_string_value(json_object_get(j, "key_id"));
            if (kid && strlen(kid) == QD_KEY_ID_LEN) {
                if (a->n_rev == a->cap_rev) {
                    size_t cap = a->cap_rev ? 2 * a->cap_rev : 8;
                    struct audit_revoked *p = qd_reallocarray(a->rev, cap, sizeof(*p));
                    if (!p) {
                        error = QD_ENOMEM;
                        goto done;
                    }
                    a->rev = p;
                    a->cap_rev = cap;
                }
                memcpy(a->rev[a->n_rev].id, kid, QD_KEY_ID_LEN + 1);
                a->rev[a->n_rev++].at = i;
            }
            continue;
        }
        if (strcmp(kind, "publish") != 0)
            continue;
        if (a->n == a->cap) {
            size_t cap = a->cap ? 2 * a->cap : 64;
            qd_audit_record *p = qd_reallocarray(a->r, cap, sizeof(*p));
            if (!p) {
                error = QD_ENOMEM;
                goto done;
            }
            a->r = p;
            a->cap = cap;
        }
        r = &a->r[a->n];
        memset(r, 0, sizeof(*r));
        r->index = i;
        r->time = (int64_t)t;
        cpy(r->name, sizeof(r->name), name);
        cpy(r->manifest, sizeof(r->manifest), manifest);
        snprintf(path, sizeof(path), "manifests/sha256/%s.json", manifest && strlen(manifest) > 7 ? manifest + 7 : "");
        qd_buf_clear(&b);
        qd_envelope_free(env);
        env = NULL;
        if ((error = qd_log__blob_of_entry(&b, log, i, path, b.max)) < 0) {
            error = qd_error_prefix("entry %llu", (unsigned long long)i);
            goto done;
        }
        if (qd_envelope_parse(&env, b.ptr, b.len, 0) < 0) {
            /* kept with its name and digest only: a verified log never holds one (qd_replog_verify) */
            qd_error_clear();
            a->n++;
            continue;
        }
        for (k = 0; k < qd_envelope_signature_count(env) && k < 2; k++) {
            size_t l = strlen(r->key_ids);
            snprintf(r->key_ids + l, sizeof(r->key_ids) - l, "%s%s", l ? "," : "",
                     qd_envelope_signature_keyid(env, k));
        }
        for (k = 0; !r->revoked_key[0] && k < qd_envelope_signature_count(env); k++) {
            const char *kid = qd_envelope_signature_keyid(env, k);
            for (size_t v = 0; kid && v < a->n_rev; v++)
                if (!strcmp(a->rev[v].id, kid)) {
                    memcpy(r->revoked_key, kid, QD_KEY_ID_LEN + 1);
                    r->revoked_at = a->rev[v].at;
                    break;
                }
        }
        pl = qd_envelope_payload(env, &pl_len);
        json_decref(st);
        if ((st = json_loadb((const char *)pl, pl_len, 0, NULL)) != NULL)
            fill_predicate(r, st);
        a->n++;
    }
done:
    json_decref(j);
    json_decref(st);
    qd_envelope_free(env);
    qd_buf_dispose(&e);
    qd_buf_dispose(&b);
    if (error < 0) {
        qd_audit_free(a);
        return error;
    }
    *out = a;
    return QD_OK;
}

void qd_audit_free(qd_audit *a)
{
    if (!a)
        return;
    qd_free(a->r);
    qd_free(a->rev);
    qd_free(a);
}

size_t qd_audit_count(const qd_audit *a) { return a ? a->n : 0; }
const qd_audit_record *qd_audit_get(const qd_audit *a, size_t i) { return i < a->n ? &a->r[i] : NULL; }

static bool in_list(const char *list, const char *item)
{
    size_t n = strlen(item);
    const char *p = list;
    while ((p = strstr(p, item)) != NULL) {
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return true;
        p += n;
    }
    return false;
}

static bool matches(const qd_audit_record *r, const qd_audit_query *q)
{
    if ((q->method && strcmp(q->method, r->method)) || (q->format && strcmp(q->format, r->format)) ||
        (q->calibration && strcmp(q->calibration, r->calibration)) ||
        (q->converter && strcmp(q->converter, r->converter)) ||
        (q->converter_version && strcmp(q->converter_version, r->converter_version)) ||
        (q->verdict && strcmp(q->verdict, r->verdict)) || (q->bits && q->bits != r->weight_bits))
        return false;
    if (q->hardware && !in_list(r->hardware, q->hardware))
        return false;
    if (q->key && !in_list(r->key_ids, q->key))
        return false;
    if (q->namespace_name) {
        size_t n = strlen(q->namespace_name);
        if (strncmp(r->name, q->namespace_name, n) != 0 || r->name[n] != '/')
            return false;
    }
    if ((q->since && r->time < q->since) || (q->until && r->time > q->until))
        return false;
    return true;
}

int qd_audit_query_run(const qd_audit *a, const qd_audit_query *q, int (*fn)(const qd_audit_record *r, void *payload),
                       void *payload)
{
    size_t i;
    for (i = 0; i < a->n; i++)
        if (matches(&a->r[i], q)) {
            int rc = fn(&a->r[i], payload);
            if (rc)
                return rc;
        }
    return QD_OK;
}

int qd_audit_record_json(qd_buf *out, const qd_audit_record *r)
{
    json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "index",
                          (json_int_t)r->index, "time", (json_int_t)r->time, "name", r->name, "manifest", r->manifest,
                          "source", r->source, "predicate_type", r->predicate_type, "method", r->method, "format",
                          r->format, "calibration", r->calibration, "converter", r->converter, "converter_version",
                          r->converter_version, "verdict", r->verdict, "created_at", r->created_at, "bits",
                          r->weight_bits);
    json_t *hw = json_array(), *keys = json_array();
    char tmp[sizeof(r->key_ids) > sizeof(r->hardware) ? sizeof(r->key_ids) : sizeof(r->hardware)];
    char *save = NULL, *tok;
    int error;
    if (!o || !hw || !keys) {
        json_decref(o);
        json_decref(hw);
        json_decref(keys);
        return QD_ENOMEM;
    }
    snprintf(tmp, sizeof(tmp), "%s", r->hardware);
    for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        json_array_append_new(hw, json_string(tok));
    snprintf(tmp, sizeof(tmp), "%s", r->key_ids);
    for (tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        json_array_append_new(keys, json_string(tok));
    json_object_set_new(o, "target_hardware", hw);
    json_object_set_new(o, "key_ids", keys);
    if (r->revoked_key[0]) /* published after the log revoked this signer (qd_replog_verify refuses such a log) */
        json_object_set_new(o, "signed_after_revocation",
                            json_pack("{s:s, s:I}", "key_id", r->revoked_key, "revoked_at", (json_int_t)r->revoked_at));
    error = qd_log__json_dump(out, o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return error;
}

static const qd_audit_record *by_manifest(const qd_audit *a, const char *digest)
{
    size_t i;
    for (i = a->n; i-- > 0;) /* the latest publish of a manifest wins */
        if (!strcmp(a->r[i].manifest, digest))
            return &a->r[i];
    return NULL;
}

typedef struct walk {
    const qd_audit *a;
    qd_buf *out;
    qd_audit_format fmt;
    bool down;
    unsigned max_depth;
    int first;
} walk;

static int emit_node(walk *w, const char *digest, const qd_audit_record *r, unsigned depth)
{
    int error = QD_OK;
    switch (w->fmt) {
    case QD_AUDIT_JSON:
        if ((error = qd_buf_printf(w->out, "%s{\"depth\":%u,\"digest\":\"%s\",\"record\":", w->first ? "" : ",",
                                   depth, digest)) < 0)
            return error;
        error = r ? qd_audit_record_json(w->out, r) : qd_buf_puts(w->out, "null");
        if (error == QD_OK)
            error = qd_buf_puts(w->out, "}");
        break;
    case QD_AUDIT_DOT:
        error = qd_buf_printf(w->out, "  \"%s\" [label=\"%s\\n%s %s %s\\n%.19s\"];\n", digest, r ? r->name : "?",
                              r ? r->method : "", r ? r->format : "", r ? r->verdict : "", digest);
        break;
    case QD_AUDIT_TREE:
        for (unsigned i = 0; i < depth && error == QD_OK; i++)
            error = qd_buf_puts(w->out, "  ");
        if (error == QD_OK)
            error = qd_buf_printf(w->out, "%s%s %s%s%s%s%s\n", depth ? (w->down ? "└─ " : "↑ ") : "", digest,
                                  r ? r->name : "(not in the log)", r && *r->method ? " " : "", r ? r->method : "",
                                  r && *r->format ? " " : "", r ? r->format : "");
        break;
    }
    w->first = 0;
    return error;
}

static int emit_edge(walk *w, const char *child, const char *parent)
{
    if (w->fmt != QD_AUDIT_DOT)
        return QD_OK;
    return qd_buf_printf(w->out, "  \"%s\" -> \"%s\";\n", child, parent);
}

static int visit(walk *w, const char *digest, unsigned depth)
{
    const qd_audit_record *r = by_manifest(w->a, digest);
    size_t i;
    int error;
    if (depth > 64)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "lineage deeper than 64: a cycle?");
    if ((error = emit_node(w, digest, r, depth)) < 0)
        return error;
    if (w->max_depth && depth >= w->max_depth)
        return QD_OK;
    if (!w->down) {
        if (r && *r->source) {
            if ((error = emit_edge(w, digest, r->source)) < 0)
                return error;
            return visit(w, r->source, depth + 1);
        }
        return QD_OK;
    }
    for (i = 0; i < w->a->n; i++) {
        const qd_audit_record *c = &w->a->r[i];
        if (!strcmp(c->source, digest) && by_manifest(w->a, c->manifest) == c) {
            if ((error = emit_edge(w, c->manifest, digest)) < 0 || (error = visit(w, c->manifest, depth + 1)) < 0)
                return error;
        }
    }
    return QD_OK;
}

int qd_audit_lineage(qd_buf *out, const qd_audit *a, const qd_digest *digest, bool down, unsigned depth,
                     qd_audit_format fmt)
{
    char d[QD_DIGEST_STR_LEN + 1];
    walk w = {a, out, fmt, down, depth, 1};
    size_t i;
    bool known = false;
    int error;
    qd_digest_format(d, digest);
    for (i = 0; i < a->n && !known; i++)
        known = !strcmp(a->r[i].manifest, d) || !strcmp(a->r[i].source, d);
    if (!known)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s is in no log entry", d);
    if (fmt == QD_AUDIT_JSON)
        error = qd_buf_printf(out, "{\"digest\":\"%s\",\"direction\":\"%s\",\"nodes\":[", d, down ? "down" : "up");
    else if (fmt == QD_AUDIT_DOT)
        error = qd_buf_puts(out, "digraph lineage {\n  rankdir=BT;\n  node [shape=box];\n");
    else
        error = QD_OK;
    if (error == QD_OK)
        error = visit(&w, d, 0);
    if (error == QD_OK && fmt == QD_AUDIT_JSON)
        error = qd_buf_puts(out, "]}\n");
    else if (error == QD_OK && fmt == QD_AUDIT_DOT)
        error = qd_buf_puts(out, "}\n");
    return error;
}
