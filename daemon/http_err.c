/*
 * http_err.c - the one mapping from errors to HTTP: OCI error codes to statuses, and qd_err to OCI codes.
 *
 * The body is the OCI Distribution error body: {"errors":[{"code":..., "message":..., "detail":...}]}.
 *
 *   qd_err            OCI code (caller's fallback where the meaning depends on the route)   status
 *   QD_ENOTFOUND      fallback (BLOB_UNKNOWN, MANIFEST_UNKNOWN, NAME_UNKNOWN, ...)          404
 *   QD_EINVAL         fallback (NAME_INVALID, TAG_INVALID, MANIFEST_INVALID, ...)           400
 *   QD_EDIGEST        DIGEST_INVALID                                                         400
 *   QD_ETRUNCATED     SIZE_INVALID                                                           400
 *   QD_EREFERENCED    DENIED (still referenced)                                               409
 *   QD_EFULL          UNAVAILABLE (store full)                                               507
 *   QD_EAGAIN/EBUSY   TOOMANYREQUESTS                                                        429
 *   anything else     UNKNOWN                                                                500
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "daemon.h"

static const struct {
    const char *code;
    int status;
} oci_codes[] = {
    {"BLOB_UNKNOWN", 404},        {"BLOB_UPLOAD_INVALID", 400}, {"BLOB_UPLOAD_UNKNOWN", 404},
    {"DIGEST_INVALID", 400},      {"MANIFEST_BLOB_UNKNOWN", 400}, {"MANIFEST_INVALID", 400},
    {"MANIFEST_UNKNOWN", 404},    {"NAME_INVALID", 400},         {"NAME_UNKNOWN", 404},
    {"SIZE_INVALID", 400},        {"TAG_INVALID", 400},          {"UNAUTHORIZED", 401},
    {"DENIED", 403},              {"UNSUPPORTED", 405},          {"TOOMANYREQUESTS", 429},
    {"RANGE_INVALID", 416},       {"REFERENCED", 409},           {"TOO_LARGE", 413},
    {"UNAVAILABLE", 503},         {"PAGINATION_NUMBER_INVALID", 400},         {"STORE_FULL", 507},           {"UNKNOWN", 500},
};

int qd_oci_status(const char *code)
{
    for (size_t i = 0; i < sizeof(oci_codes) / sizeof(oci_codes[0]); i++)
        if (!strcmp(oci_codes[i].code, code))
            return oci_codes[i].status;
    return 500;
}

void qd_reply_oci(qd_req *r, const char *code, const char *message, const char *detail_json)
{
    json_t *root = json_object(), *arr = json_array(), *e = json_object(), *detail = NULL;
    char *text;
    int status = qd_oci_status(code);
    /* codes of our own map onto the spec's set in the body; the status keeps the finer meaning */
    const char *body_code = !strcmp(code, "REFERENCED") ? "DENIED"
                            : !strcmp(code, "RANGE_INVALID") ? "BLOB_UPLOAD_INVALID"
                            : !strcmp(code, "TOO_LARGE") ? "SIZE_INVALID"
                            : !strcmp(code, "STORE_FULL") ? "UNKNOWN"
                            : code;
    if (detail_json)
        detail = json_loads(detail_json, JSON_DECODE_ANY, NULL);
    json_object_set_new(e, "code", json_string(body_code));
    json_object_set_new(e, "message", json_string(message ? message : ""));
    json_object_set_new(e, "detail", detail ? detail : json_object());
    json_array_append_new(arr, e);
    json_object_set_new(root, "errors", arr);
    text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (status == 401 && r->req) {
        qd_req_header(r, "WWW-Authenticate", "Basic realm=\"quantd\", charset=\"UTF-8\"");
    }
    qd_log(QD_LOG_DEBUG, "http", "req=%llu error code=%s msg=\"%s\"", (unsigned long long)r->id, code,
           message ? message : "");
    qd_req_header(r, "Content-Type", "application/json");
    qd_req_header(r, "Docker-Distribution-API-Version", "registry/2.0");
    {
        struct evbuffer *b = evbuffer_new();
        if (b && text)
            evbuffer_add(b, text, strlen(text));
        free(text); /* allocated by jansson */
        qd_reply(r, status, b);
    }
}

void qd_reply_err(qd_req *r, int err, const char *fallback_code)
{
    const char *msg = qd_error_last()->message;
    const char *code;
    switch (err) {
    case QD_ENOTFOUND:
    case QD_EINVAL: code = fallback_code; break;
    case QD_EDIGEST: code = "DIGEST_INVALID"; break;
    case QD_ETRUNCATED: code = "SIZE_INVALID"; break;
    case QD_EREFERENCED: code = "REFERENCED"; break;
    case QD_EFULL: code = "STORE_FULL"; break;
    case QD_EAGAIN:
    case QD_EBUSY: code = "TOOMANYREQUESTS"; break;
    default: code = "UNKNOWN"; break;
    }
    if (!strcmp(code, "UNKNOWN"))
        qd_log(QD_LOG_ERROR, "http", "req=%llu internal error: %s (%s)", (unsigned long long)r->id, msg,
               qd_strerror(err));
    qd_reply_oci(r, code, msg && *msg ? msg : qd_strerror(err), NULL);
}
