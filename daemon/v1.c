/*
 * v1.c - quantd's own API under /v1/. For now: token management for admins, so tokens can be made and revoked
 * while the daemon runs (the `quant token` command works offline on a stopped daemon's store).
 *
 *   POST   /v1/tokens        {"name": "...", "scopes": "push:org/STAR"} -> 201 {"token","id","name","scopes","created"}
 *   GET    /v1/tokens                                                  -> 200 [{"id","name","scopes","created"}...]
 *   DELETE /v1/tokens/<id>                                             -> 204
 *
 * All need a token with the admin scope (admin:PATTERN; PATTERN is not consulted here). Errors use the OCI error
 * body like /v2/. The first admin token is made offline: quant token create --scopes 'admin:*'.
 */
#include <string.h>

#include <jansson.h>

#include "daemon.h"

typedef struct tok_work {
    qd_server *srv;
    char name[QD_TOKEN_NAME_MAX + 1];
    char scopes[QD_TOKEN_SCOPES_MAX + 1];
    char id[QD_TOKEN_ID_LEN + 1];
    bool create;
    char token[QD_TOKEN_LEN + 1];
    qd_token_info info;
    qd_error_saved err;
} tok_work;

static void tok_free(void *p)
{
    tok_work *w = p;
    memset(w->token, 0, sizeof(w->token));
    qd_free(w);
}

static void tok_work_fn(void *p)
{
    qd_req *r = p;
    tok_work *w = r->work;
    qd_error_save(&w->err, w->create ? qd_registry_token_create(w->token, &w->info, w->srv->store, w->name, w->scopes)
                                     : qd_registry_token_revoke(w->srv->store, w->id));
}

static void tok_done(void *p)
{
    qd_req *r = p;
    tok_work *w = r->work;
    if (qd_error_restore(&w->err) < 0) {
        qd_reply_err(r, w->err.code, w->err.code == QD_ENOTFOUND ? "NAME_UNKNOWN" : "UNSUPPORTED");
        return;
    }
    if (w->create) {
        json_t *o = json_object();
        char *text;
        json_object_set_new(o, "token", json_string(w->token));
        json_object_set_new(o, "id", json_string(w->info.id));
        json_object_set_new(o, "name", json_string(w->info.name));
        json_object_set_new(o, "scopes", json_string(w->info.scopes));
        json_object_set_new(o, "created", json_integer(w->info.created));
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        qd_log(QD_LOG_INFO, "auth", "req=%llu token created id=%s scopes=%s", (unsigned long long)r->id,
               w->info.id, w->info.scopes);
        qd_req_header(r, "Cache-Control", "no-store");
        qd_reply_json(r, 201, text ? text : "{}");
        free(text); /* jansson */
        return;
    }
    qd_log(QD_LOG_INFO, "auth", "req=%llu token revoked id=%s", (unsigned long long)r->id, w->id);
    qd_reply(r, 204, NULL);
}

static int list_one(const qd_token_info *t, void *payload)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "scopes", json_string(t->scopes));
    json_object_set_new(o, "created", json_integer(t->created));
    json_array_append_new(payload, o);
    return 0;
}

void qd_v1_handle(qd_req *r)
{
    const char *p = r->path;
    tok_work *w;
    int rc;

    if (!strcmp(p, "/v1/jobs") || !strncmp(p, "/v1/jobs/", 9)) {
        qd_jobs_handle(r); /* jobs.c */
        return;
    }
    if (!strncmp(p, "/v1/audit/", 10)) {
        qd_audit_api_handle(r); /* audit_api.c */
        return;
    }
    if (!strcmp(p, "/v1/gc")) {
        qd_gc_handle(r); /* gc.c */
        return;
    }
    if (!strcmp(p, "/v1/mirror/status")) {
        qd_mirror_handle(r); /* mirror.c */
        return;
    }
    if (!strcmp(p, "/v1/keys") || !strncmp(p, "/v1/keys/", 9)) {
        qd_keys_handle(r); /* keys.c */
        return;
    }
    if (!strncmp(p, "/v1/log/", 8)) {
        qd_dlog_handle(r); /* dlog.c */
        return;
    }
    r->route = "tokens";
    if (strcmp(p, "/v1/tokens") && strncmp(p, "/v1/tokens/", 11)) {
        r->route = "unknown";
        qd_reply_json(r, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"no such endpoint\",\"detail\":{}}]}");
        return;
    }
    if (!qd_auth_check(r, NULL, QD_SCOPE_ADMIN))
        return;
    if (!strcmp(p, "/v1/tokens") && r->method == EVHTTP_REQ_GET) {
        json_t *arr = json_array();
        char *text;
        if ((rc = qd_registry_token_list(r->srv->store, list_one, arr)) < 0) {
            json_decref(arr);
            qd_reply_err(r, rc, "UNKNOWN");
            return;
        }
        text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        qd_reply_json(r, 200, text ? text : "[]");
        free(text); /* jansson */
        return;
    }
    if (!(w = qd_calloc(1, sizeof(*w)))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    w->srv = r->srv;
    r->work = w;
    r->work_free = tok_free;
    if (!strcmp(p, "/v1/tokens") && r->method == EVHTTP_REQ_POST) {
        struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
        size_t n = evbuffer_get_length(in);
        json_t *body, *name, *scopes;
        if (n > 16384 || !(body = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, NULL))) {
            qd_reply_oci(r, "UNSUPPORTED", "the body must be a JSON object {\"name\",\"scopes\"}", NULL);
            return;
        }
        name = json_object_get(body, "name");
        scopes = json_object_get(body, "scopes");
        if (!json_is_string(scopes) || (name && !json_is_string(name)) ||
            qd_token_scopes_validate(json_string_value(scopes)) < 0 ||
            json_string_length(scopes) > QD_TOKEN_SCOPES_MAX ||
            (name && json_string_length(name) > QD_TOKEN_NAME_MAX)) {
            json_decref(body);
            qd_reply_oci(r, "UNSUPPORTED",
                         "scopes must be SCOPE:PATTERN[,...] (pull, push, quantize, admin); name at most 63 bytes",
                         NULL);
            return;
        }
        snprintf(w->scopes, sizeof(w->scopes), "%s", json_string_value(scopes));
        snprintf(w->name, sizeof(w->name), "%s", name ? json_string_value(name) : "");
        json_decref(body);
        w->create = true;
    } else if (!strncmp(p, "/v1/tokens/", 11) && r->method == EVHTTP_REQ_DELETE) {
        snprintf(w->id, sizeof(w->id), "%s", p + 11);
    } else {
        qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        return;
    }
    if ((rc = qd_req_offload(r, tok_work_fn, tok_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}
