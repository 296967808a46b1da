/* fileio.c - small POSIX file helpers (include/qd/fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
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

int qd_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0, e;
    if (fd < 0)
        return -1;
    if (fsync(fd) && errno != EINVAL)
        rc = -1;
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

int qd_fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *sl = strrchr(path, '/');
    if (!sl)
        return qd_fsync_dir(".");
    if (sl == path)
        return qd_fsync_dir("/");
    if ((size_t)(sl - path) >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, (size_t)(sl - path));
    dir[sl - path] = '\0';
    return qd_fsync_dir(dir);
}
