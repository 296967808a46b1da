/* fileio.c - small POSIX file helpers (include/qd/fileio.h). */
#include <errno.h>
#include <unistd.h>

#include "qd/fileio.h"

int qd_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const unsigned char *b = p;
    while (n) {
        ssize_t k = pwrite(fd, b, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        b += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}
