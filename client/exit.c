/* exit.c - qd_err to exit code: the one mapping table the client uses. */
#include <stdio.h>

#include "client.h"
#include "qd/err.h"

int qd_exit_code(int err)
{
    switch (err) {
    case QD_OK: return EXIT_OK_;
    case QD_EINVAL: return EXIT_USAGE;
    case QD_ENOTFOUND: return EXIT_NOTFOUND;
    case QD_ECORRUPT:
    case QD_EDIGEST:
    case QD_EBADSIG:
    case QD_ETRUNCATED: return EXIT_VERIFY;
    case QD_EREFERENCED:
    case QD_EEXISTS:
    case QD_EBUSY: return EXIT_CONFLICT;
    case QD_ENOTSTORE:
    case QD_EVERSION: return EXIT_BADSTORE;
    case QD_EFULL: return EXIT_FULL;
    default: return EXIT_ERR;
    }
}

int qd_fail(int err, const char *context)
{
    const qd_error *e = qd_error_last();
    if (context && *context)
        fprintf(stderr, "quant: %s: %s\n", context, e->message[0] ? e->message : qd_strerror(err));
    else
        fprintf(stderr, "quant: %s\n", e->message[0] ? e->message : qd_strerror(err));
    return qd_exit_code(err);
}
