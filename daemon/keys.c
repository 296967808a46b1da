/*
 * keys.c - publisher keys in the signed log (docs/LOG.md, "Keys"). Every change is an entry appended to the log
 * (dlog.c, qd_dlog_key_event), signed by the daemon's log key; the log is the only record of which keys exist.
 *
 *   GET  /v1/keys                 -> 200 [{"id","algorithm","added","revoked","comment","log_key"}...]
 *   POST /v1/keys                 body: SPKI PEM, or {"pem": "...", "namespaces": ["org/STAR", ...]}
 *                                 -> 201 {"id","algorithm","index"}          (one key-add entry)
 *   POST /v1/keys/<id>/revoke     -> 200 {"id","index"}                      (one key-revoke entry)
 *   POST /v1/keys/<id>/rotate     body: the new key as for POST /v1/keys
 *                                 -> 201 {"id","algorithm","index","revoked","revoke_index"}
 *                                 (key-add of the new key, then key-revoke of <id>, under one hold of the log lock)
 *
 * All need the admin scope. Errors use the OCI error body: 400 NAME_INVALID (malformed key or id, a private key),
 * 404 NAME_UNKNOWN (no such key in the log), 409 DENIED (already listed, already revoked, the log key itself).
 */
#include <string.h>

#include <jansson.h>

#include "daemon.h"

#define KEY_BODY_MAX 16384
#define NS_MAX 16

typedef struct key_work {
    qd_server *srv;
    qd_key *add;
    char comment[512];
    char revoke[QD_KEY_ID_LEN + 8];
    bool list;
    uint64_t first;
    qd_error_saved err;
    json_t *out;
} key_work;

static void key_work_free(void *p)
{
    key_work *w = p;
    qd_key_free(w->add);
    json_decref(w->out);
    qd_free(w);
}

static void key_work_fn(void *p)
{
    qd_req *r = p;
    key_work *w = r->work;
    int rc;
    if (w->list) {
        w->out = json_array();
        rc = w->out ? qd_dlog_keys_json(w->srv->dlog, w->out) : QD_ENOMEM;
    } else {
        rc = qd_dlog_key_event(w->srv->dlog, &w->first, w->add, w->comment, w->revoke[0] ? w->revoke : NULL);
    }
    qd_error_save(&w->err, rc);
}

static void key_done(void *p)
{
    qd_req *r = p;
    key_work *w = r->work;
    json_t *o;
    char *text;
    if (qd_error_restore(&w->err) < 0) {
        switch (w->err.code) {
        case QD_EINVAL: qd_reply_oci(r, "NAME_INVALID", w->err.message, NULL); break;
        case QD_ENOTFOUND: qd_reply_oci(r, "NAME_UNKNOWN", w->err.message, NULL); break;
        case QD_EEXISTS:
        case QD_EREFERENCED: qd_reply_oci(r, "REFERENCED", w->err.message, NULL); break;
        default: qd_reply_err(r, w->err.code, "UNKNOWN"); break;
        }
        return;
    }
    if (w->list) {
        text = json_dumps(w->out, JSON_COMPACT);
        qd_reply_json(r, 200, text ? text : "[]");
        free(text); /* jansson */
        return;
    }
    o = json_object();
    if (w->add) {
        json_object_set_new(o, "id", json_string(qd_key_id(w->add)));
        json_object_set_new(o, "algorithm", json_string(qd_key_alg_name(qd_key_algorithm(w->add))));
        json_object_set_new(o, "index", json_integer((json_int_t)w->first));
        if (w->revoke[0]) {
            json_object_set_new(o, "revoked", json_string(w->revoke));
            json_object_set_new(o, "revoke_index", json_integer((json_int_t)w->first + 1));
        }
    } else {
        json_object_set_new(o, "id", json_string(w->revoke));
        json_object_set_new(o, "index", json_integer((json_int_t)w->first));
    }
    text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    qd_log(QD_LOG_INFO, "log", "req=%llu key event add=%s revoke=%s index=%llu", (unsigned long long)r->id,
           w->add ? qd_key_id(w->add) : "-", w->revoke[0] ? w->revoke : "-", (unsigned long long)w->first);
    qd_reply_json(r, w->add ? 201 : 200, text ? text : "{}");
    free(text); /* jansson */
}

static bool ns_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("._-/*", s[i])))
            return false;
    return true;
}

/* The new key from the body: SPKI PEM, or {"pem", "namespaces"?}. Replies and returns false on bad input. */
static bool parse_key_body(qd_req *r, key_work *w)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = evbuffer_get_length(in), i;
    const char *body = n ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *pem = body;
    size_t pem_len = n;
    json_t *j = NULL, *ns = NULL, *x;
    bool ok = false;
    int len;
    if (n == 0 || n > KEY_BODY_MAX) {
        qd_reply_oci(r, "NAME_INVALID", "the body must be a public key (SPKI PEM, at most 16 KiB) or {\"pem\", "
                                        "\"namespaces\"}", NULL);
        return false;
    }
    len = snprintf(w->comment, sizeof(w->comment), "publisher key");
    if (body[0] == '{') {
        if (!(j = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL)) || !json_is_string(json_object_get(j, "pem"))) {
            qd_reply_oci(r, "NAME_INVALID", "the JSON body must be {\"pem\": \"<SPKI PEM>\", \"namespaces\": [...]}",
                         NULL);
            goto done;
        }
        pem = json_string_value(json_object_get(j, "pem"));
        pem_len = json_string_length(json_object_get(j, "pem"));
        ns = json_object_get(j, "namespaces");
        if (ns && (!json_is_array(ns) || json_array_size(ns) > NS_MAX)) {
            qd_reply_oci(r, "NAME_INVALID", "namespaces must be a list of at most 16 patterns", NULL);
            goto done;
        }
        json_array_foreach(ns, i, x) {
            if (!json_is_string(x) || !ns_ok(json_string_value(x))) {
                qd_reply_oci(r, "NAME_INVALID", "a namespace pattern is 1-128 characters of [a-z0-9._-/*]", NULL);
                goto done;
            }
            len += snprintf(w->comment + len, sizeof(w->comment) - (size_t)len, "%s%s", i ? "," : "; namespaces ",
                            json_string_value(x));
            if (len >= (int)sizeof(w->comment)) {
                qd_reply_oci(r, "NAME_INVALID", "the namespace list is too long", NULL);
                goto done;
            }
        }
    }
    if (qd_key_parse(&w->add, pem, pem_len) < 0) {
        qd_reply_oci(r, "NAME_INVALID", "the body is not a public key (SPKI PEM, Ed25519 or ECDSA P-256)", NULL);
        goto done;
    }
    if (qd_key_can_sign(w->add)) {
        qd_reply_oci(r, "NAME_INVALID", "send the public key only (SPKI PEM), never the private key", NULL);
        goto done;
    }
    ok = true;
done:
    json_decref(j);
    return ok;
}

void qd_keys_handle(qd_req *r)
{
    const char *p = r->path, *id, *slash;
    key_work *w;
    int rc;
    r->route = "keys";
    if (!qd_auth_check(r, NULL, QD_SCOPE_ADMIN))
        return;
    if (!r->srv->dlog) {
        qd_reply_oci(r, "UNAVAILABLE", "this daemon keeps no signed log", NULL);
        return;
    }
    if (!(w = qd_calloc(1, sizeof(*w)))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    w->srv = r->srv;
    r->work = w;
    r->work_free = key_work_free;
    if (!strcmp(p, "/v1/keys")) {
        if (r->method == EVHTTP_REQ_GET)
            w->list = true;
        else if (r->method != EVHTTP_REQ_POST) {
            qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
            return;
        } else if (!parse_key_body(r, w))
            return;
    } else {
        id = p + strlen("/v1/keys/");
        slash = strchr(id, '/');
        if (r->method != EVHTTP_REQ_POST || !slash || (strcmp(slash, "/revoke") && strcmp(slash, "/rotate"))) {
            qd_reply_oci(r, "UNSUPPORTED", "use POST /v1/keys/<id>/revoke or POST /v1/keys/<id>/rotate", NULL);
            return;
        }
        if ((size_t)(slash - id) != QD_KEY_ID_LEN) {
            qd_reply_oci(r, "NAME_INVALID", "a key id is 64 lowercase hex digits", NULL);
            return;
        }
        snprintf(w->revoke, sizeof(w->revoke), "%.*s", (int)(slash - id), id);
        if (!strcmp(slash, "/rotate") && !parse_key_body(r, w))
            return;
        if (!strcmp(slash, "/rotate"))
            snprintf(w->comment + strlen(w->comment), sizeof(w->comment) - strlen(w->comment), "; rotated from %.16s",
                     w->revoke);
    }
    if ((rc = qd_req_offload(r, key_work_fn, key_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}
