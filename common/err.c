/*
 * err.c - thread-local error messages (the libgit2 model).
 */
#include <stdio.h>
#include <string.h>

#include "qd/err.h"

#define ERR_MSG_MAX 1024

static _Thread_local char tl_msg[ERR_MSG_MAX];
static _Thread_local qd_error tl_err = {0, 0, ""};

int qd_error_vset(int code, int klass, const char *fmt, va_list ap)
{
    vsnprintf(tl_msg, sizeof(tl_msg), fmt, ap);
    tl_err.code = code;
    tl_err.klass = klass;
    tl_err.message = tl_msg;
    return code;
}

int qd_error_set(int code, int klass, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qd_error_vset(code, klass, fmt, ap);
    va_end(ap);
    return code;
}

int qd_error_prefix(const char *fmt, ...)
{
    char prefix[ERR_MSG_MAX / 2];
    char old[ERR_MSG_MAX / 2 - 4];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(old, sizeof(old), "%s", tl_err.message ? tl_err.message : "");
    snprintf(tl_msg, sizeof(tl_msg), "%s: %s", prefix, old);
    tl_err.message = tl_msg;
    return tl_err.code;
}

const qd_error *qd_error_last(void)
{
    if (!tl_err.message)
        tl_err.message = "";
    return &tl_err;
}

void qd_error_clear(void)
{
    tl_msg[0] = '\0';
    tl_err.code = 0;
    tl_err.klass = 0;
    tl_err.message = tl_msg;
}

void qd_error_save(qd_error_saved *s, int code)
{
    const qd_error *e = qd_error_last();
    s->code = code < 0 ? code : 0;
    s->klass = code < 0 ? e->klass : 0;
    snprintf(s->message, sizeof(s->message), "%s", code >= 0 ? "" : e->message[0] ? e->message : qd_strerror(code));
}

int qd_error_restore(const qd_error_saved *s)
{
    if (s->code < 0)
        qd_error_set(s->code, s->klass, "%s", s->message);
    return s->code;
}

const char *qd_strerror(int code)
{
    switch (code) {
    case QD_OK: return "ok";
    case QD_ERROR: return "error";
    case QD_ENOTFOUND: return "not found";
    case QD_EEXISTS: return "already exists";
    case QD_EINVAL: return "invalid argument";
    case QD_ECORRUPT: return "corrupt data";
    case QD_EBADSIG: return "bad signature";
    case QD_ENOMEM: return "out of memory";
    case QD_EFULL: return "store or disk full";
    case QD_EIO: return "I/O error";
    case QD_EAGAIN: return "try again";
    case QD_EUNSUPPORTED: return "unsupported";
    case QD_EBUSY: return "busy";
    case QD_EVERSION: return "made by a newer version";
    case QD_ENOTSTORE: return "not a quantd store";
    case QD_EDIGEST: return "digest mismatch";
    case QD_ETRUNCATED: return "truncated";
    case QD_EREFERENCED: return "still referenced";
    case QD_ECANCELED: return "cancelled";
    default: return "unknown error";
    }
}
