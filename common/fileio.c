/* fileio.c - small POSIX file helpers (include/qd/fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qd/alloc.h"
#include "qd/fileio.h"

/* pread or pwrite of all n bytes at off, short transfers continued, EINTR retried; EIO when the file gives or takes
 * no byte. */
static int rw_all(int fd, unsigned char *b, size_t n, uint64_t off, int wr)
{
    while (n) {
        ssize_t k = wr ? pwrite(fd, b, n, (off_t)off) : pread(fd, b, n, (off_t)off);
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

int qd_pwrite_all(int fd, const void *p, size_t n, uint64_t off) { return rw_all(fd, (unsigned char *)p, n, off, 1); }

int qd_pread_all(int fd, void *p, size_t n, uint64_t off) { return rw_all(fd, p, n, off, 0); }

struct qd_syncer {
    int fd;
    uint64_t step;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t written; /* reported by the writer (under mu) */
    int stop, err;    /* (under mu) */
};

static void *syncer_main(void *arg)
{
    qd_syncer *s = arg;
    uint64_t synced = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->written - synced < s->step)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        uint64_t upto = s->written;
        pthread_mutex_unlock(&s->mu);
        int rc = fdatasync(s->fd), e = errno;
        pthread_mutex_lock(&s->mu);
        if (rc) {
            s->err = e;
            break;
        }
        synced = upto;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int qd_syncer_start(qd_syncer **out, int fd, uint64_t step)
{
    qd_syncer *s = qd_calloc(1, sizeof(*s));
    *out = NULL;
    if (!s) {
        errno = ENOMEM;
        return -1;
    }
    s->fd = fd;
    s->step = step ? step : 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if ((errno = pthread_create(&s->tid, NULL, syncer_main, s)) != 0) {
        int e = errno;
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        qd_free(s);
        errno = e;
        return -1;
    }
    *out = s;
    return 0;
}

int qd_syncer_wrote(qd_syncer *s, uint64_t n)
{
    int err;
    pthread_mutex_lock(&s->mu);
    s->written += n;
    err = s->err;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return err;
}

int qd_syncer_stop(qd_syncer *s)
{
    int err;
    if (!s)
        return 0;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->tid, NULL);
    err = s->err;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    qd_free(s);
    return err;
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
