/* exit.c - qd_err to exit code (the one mapping table the client uses), and writing output fully. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "qd/err.h"

int qd_exit_code(int err)
{
    /* a transport failure of the registry client (client/http.c): the registry could not be reached */
    if (err == QD_EIO && qd_error_last()->klass == QD_EC_NET)
        return EXIT_UNREACHABLE;
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
    case QD_ECANCELED: return EXIT_INTERRUPTED;
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

int qd_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return QD_OK;
}
