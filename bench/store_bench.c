/*
 * store_bench - put and get throughput of the store for one file, printed as MB/s.
 *
 *   store_bench STORE_DIR FILE
 *
 * put: qd_store_put_fd from the file (page cache warm), into a fresh store, durable commit included.
 * get: qd_store_get of the whole blob into a sink that copies every byte into a 1 MiB buffer, as read() does for
 *      cat (a sink that ignored the bytes would flatter a zero-copy read); then again with SHA-256 verification.
 * Each get is run 3 times and the best is printed (the first warms the map).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "qd/qd.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct sink {
    char *buf;
    size_t pos;
    qd_sha256 *h;
} sink;

static int copy_sink(const void *data, size_t len, void *payload)
{
    sink *s = payload;
    const char *p = data;
    while (len) {
        size_t n = len < (1u << 20) - s->pos ? len : (1u << 20) - s->pos;
        memcpy(s->buf + s->pos, p, n);
        s->pos = (s->pos + n) & ((1u << 20) - 1);
        p += n;
        len -= n;
    }
    if (s->h)
        return qd_sha256_update(s->h, data, (size_t)(p - (const char *)data));
    return QD_OK;
}

int main(int argc, char **argv)
{
    qd_store *s;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    qd_digest d, got;
    qd_blob_info info;
    sink sk = {malloc(1u << 20), 0, NULL};
    double t0, put_s, get_s = 1e9, ver_s = 1e9;
    int fd;
    struct rusage ru;

    if (argc != 3) {
        fprintf(stderr, "usage: store_bench STORE_DIR FILE\n");
        return 2;
    }
    o.flags = QD_STORE_CREATE;
    if (qd_store_open(&s, argv[1], &o) < 0 || (fd = open(argv[2], O_RDONLY)) < 0) {
        fprintf(stderr, "store_bench: %s\n", qd_error_last()->message);
        return 1;
    }
    t0 = now();
    if (qd_store_put_fd(s, fd, NULL, &d) < 0) {
        fprintf(stderr, "store_bench: put: %s\n", qd_error_last()->message);
        return 1;
    }
    put_s = now() - t0;
    getrusage(RUSAGE_SELF, &ru);
    close(fd);
    qd_store_stat(s, &d, &info);
    for (int i = 0; i < 3; i++) {
        t0 = now();
        if (qd_store_get(s, &d, 0, UINT64_MAX, copy_sink, &sk) < 0)
            return 1;
        if (now() - t0 < get_s)
            get_s = now() - t0;
    }
    for (int i = 0; i < 3; i++) {
        qd_sha256_new(&sk.h);
        t0 = now();
        if (qd_store_get(s, &d, 0, UINT64_MAX, copy_sink, &sk) < 0 || qd_sha256_final(sk.h, &got) < 0)
            return 1;
        if (now() - t0 < ver_s)
            ver_s = now() - t0;
        qd_sha256_free(sk.h);
        sk.h = NULL;
        if (!qd_digest_equal(&got, &d)) {
            fprintf(stderr, "store_bench: read back the wrong bytes\n");
            return 1;
        }
    }
    /* machine-readable: size put_s get_s verified_get_s stored_bytes chunks compressed_chunks put_maxrss_kb */
    printf("%llu %.4f %.4f %.4f %llu %u %u %ld\n", (unsigned long long)info.size, put_s, get_s, ver_s,
           (unsigned long long)info.stored_bytes, info.n_chunks, info.n_compressed, ru.ru_maxrss);
    qd_store_close(s);
    free(sk.buf);
    return 0;
}
