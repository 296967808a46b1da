/*
 * pull_file.c - one layer of `quant pull`: fetched into DIR/.NAME.quant-part and renamed to DIR/NAME only when the
 * whole file's SHA-256 equals the signed digest (and the bytes are on the device).
 *
 * The file is cut into chunks (at most 8 MiB, a multiple of 4 KiB). Each chunk is one Range request (with
 * If-Range: "DIGEST"); N of them run at once (--parallel), and each lands in its own buffer of a ring of slots
 * (chunk i in slot i % nslots). Two threads follow the chunks in order as they complete: one hashes each from
 * memory, the other writes it to the part file with O_DIRECT (no page-cache copy, no read-back, no writeback work),
 * and a syncer thread (qd_syncer) asks the device every 16 MiB written to make it durable (fdatasync), so that the
 * device's flush overlaps the transfer instead of following it: the fsync before the rename has only the last
 * stretch left. A slot is handed to a later chunk once both threads are done with it, so memory stays at nslots
 * chunks whatever the file's size, and the transfers never run further ahead of the hash than the ring.
 *
 * Resume: DIR/.NAME.quant-state says, per chunk, how many bytes from its start are in the part file: every chunk
 * the writer finished, and, when a pull stops on an error, the bytes each unfinished chunk had received (written
 * out then). A later pull of the same digest reads those bytes back into the chunk's slot (so they are hashed in
 * order with the rest) and fetches only what is missing. A state of another digest, size or format is discarded.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "pull_file.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/fileio.h"

#define CHUNK_MAX (8ull << 20)   /* bytes per chunk: one Range request, one slot */
#define CHUNK_MIN (64ull << 10)  /* smaller files are one chunk */
#define DIRECT_ALIGN 4096u       /* O_DIRECT alignment of offsets, lengths and memory */
#define SLOTS_MEM (128ull << 20) /* at most this much memory in slots */
#define SYNC_EVERY (16ull << 20) /* the syncer asks for durability after this many bytes written */
#define STATE_EVERY_NS 200000000ull

typedef struct pull_ctx {
    http_client *c;
    int fd;  /* the part file */
    int dfd; /* the same, opened O_DIRECT, or -1 (then fd: e.g. tmpfs) */
    uint64_t size, chunk;
    size_t nchunks, nslots;
    http_range *ranges; /* one per chunk; done: bytes of it in its slot (or in the file, before it is loaded) */
    uint64_t *disk;     /* bytes from each chunk's start that are in the part file */
    uint8_t *complete;  /* 1 when all of a chunk's bytes are in its slot (set by the transfer thread) */
    uint8_t *slots;
    size_t slots_bytes;
    size_t loaded; /* chunks handed to the transfers so far (their slot taken): the transfer thread's */
    uint64_t received, on_disk_before;
    const char *part, *state_path, *digest_str;
    uint64_t last_state_ns;
    progress prog;
    qd_sha256 *h;
    qd_syncer *syncer; /* fdatasync every SYNC_EVERY bytes the writer reports, or NULL (the final fsync does it) */
    /* the two threads: mu guards complete[], hashed, written, finished, err */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th[2];
    int started[2];
    size_t hashed, written; /* chunks done by each, in order */
    int finished;           /* no more chunks will complete */
    int err;                /* a thread's error (qd_err), with msg */
    char msg[256];
} pull_ctx;

static uint64_t chunk_start(const pull_ctx *p, size_t i) { return (uint64_t)i * p->chunk; }

static uint64_t chunk_len(const pull_ctx *p, size_t i)
{
    uint64_t s = chunk_start(p, i);
    return p->size - s < p->chunk ? p->size - s : p->chunk;
}

static uint8_t *slot(const pull_ctx *p, size_t i) { return p->slots + (i % p->nslots) * p->chunk; }

/* Write chunk i from its slot: the aligned part with O_DIRECT when the file has it, the tail (the file's last
 * partial block) through the page cache. */
static int write_chunk(pull_ctx *p, size_t i)
{
    const uint8_t *b = slot(p, i);
    uint64_t off = chunk_start(p, i), len = chunk_len(p, i), head = len - len % DIRECT_ALIGN;
    if (p->dfd >= 0 && head) {
        if (qd_pwrite_all(p->dfd, b, head, off)) {
            if (errno != EINVAL)
                return -1;
            close(p->dfd); /* O_DIRECT refused after all: the page cache from now on */
            p->dfd = -1;
            head = 0;
        }
    } else {
        head = 0;
    }
    return qd_pwrite_all(p->fd, b + head, len - head, off + head);
}

/* The hashing (k = 0) or the writing (k = 1) thread: each complete chunk, in order. */
static void *follow(void *arg, int k)
{
    pull_ctx *p = arg;
    size_t *seq = k ? &p->written : &p->hashed;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (*seq < p->nchunks && !p->complete[*seq] && !p->finished && !p->err)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->err || *seq >= p->nchunks || !p->complete[*seq])
            break;
        size_t i = *seq;
        int failed = 0, e;
        const char *what = "write";
        pthread_mutex_unlock(&p->mu);
        if (!k) {
            qd_sha256_update(p->h, slot(p, i), chunk_len(p, i));
        } else if (p->disk[i] < chunk_len(p, i)) {
            failed = write_chunk(p, i);
            if (!failed && p->syncer && (e = qd_syncer_wrote(p->syncer, chunk_len(p, i)))) { /* an earlier flush */
                errno = e;
                failed = -1;
                what = "fdatasync";
            }
        }
        pthread_mutex_lock(&p->mu);
        if (failed) {
            p->err = errno == ENOSPC ? QD_EFULL : QD_EIO;
            snprintf(p->msg, sizeof(p->msg), "%s: %s: %s", p->part, what, strerror(errno));
        } else {
            (*seq)++;
        }
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        http_wake(p->c); /* a slot may be free for the next chunk */
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    http_wake(p->c);
    return NULL;
}

static void *hasher(void *arg) { return follow(arg, 0); }
static void *writer(void *arg) { return follow(arg, 1); }


static void mark_complete(pull_ctx *p, size_t i)
{
    pthread_mutex_lock(&p->mu);
    p->complete[i] = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* http_get_ranges asks before chunk i starts: its slot must be free (both threads done with chunk i - nslots).
 * Bytes of it already in the part file are read into the slot first. */
static int on_ready(void *ctx, size_t i)
{
    pull_ctx *p = ctx;
    size_t behind;
    int err;
    pthread_mutex_lock(&p->mu);
    behind = p->hashed < p->written ? p->hashed : p->written;
    err = p->err;
    pthread_mutex_unlock(&p->mu);
    if (err || i >= behind + p->nslots)
        return 0; /* an error is reported by the next tick */
    if (p->disk[i] && qd_pread_all(p->fd, slot(p, i), p->disk[i], chunk_start(p, i))) {
        qd_error_set(QD_EIO, QD_EC_OS, "%s: read back: %s", p->part, strerror(errno));
        return -1;
    }
    p->loaded = i + 1;
    if (p->ranges[i].done >= chunk_len(p, i))
        mark_complete(p, i);
    return 1;
}

static int on_bytes(void *ctx, size_t i, uint64_t off, const void *data, size_t len)
{
    pull_ctx *p = ctx;
    uint64_t at = off - chunk_start(p, i);
    memcpy(slot(p, i) + at, data, len);
    p->received += len;
    if (at + len == chunk_len(p, i))
        mark_complete(p, i);
    return 0;
}

/* quant-pull 2 DIGEST SIZE CHUNK NCHUNKS, then "I BYTES" for each chunk with bytes in the part file. Only what the
 * writer has finished (or what an interrupted pull wrote out) is claimed. */
static int write_state(pull_ctx *p)
{
    char tmp[1200];
    size_t written;
    FILE *f;
    pthread_mutex_lock(&p->mu);
    written = p->written;
    pthread_mutex_unlock(&p->mu);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_path);
    if (!(f = fopen(tmp, "w")))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
    fprintf(f, "quant-pull 2 %s %llu %llu %zu\n", p->digest_str, (unsigned long long)p->size,
            (unsigned long long)p->chunk, p->nchunks);
    for (size_t i = 0; i < p->nchunks; i++) {
        uint64_t b = i < written ? chunk_len(p, i) : p->disk[i];
        if (b)
            fprintf(f, "%zu %llu\n", i, (unsigned long long)b);
    }
    if (fclose(f) || rename(tmp, p->state_path))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: cannot write", p->state_path);
    return QD_OK;
}

/* Load a state of this digest and size into chunk and disk[]; 0 when there is none or it does not fit. */
static uint64_t read_state(pull_ctx *p, uint64_t **disk_out, size_t *n_out)
{
    char dg[128];
    unsigned long long size, chunk, b;
    size_t n, i, last = 0;
    int first = 1;
    uint64_t *disk = NULL;
    FILE *f = fopen(p->state_path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "quant-pull 2 %100s %llu %llu %zu", dg, &size, &chunk, &n) != 4 || strcmp(dg, p->digest_str) ||
        size != p->size || chunk < DIRECT_ALIGN || chunk > CHUNK_MAX || chunk % DIRECT_ALIGN ||
        n != (size + chunk - 1) / chunk || !(disk = qd_calloc(n ? n : 1, sizeof(*disk))))
        goto bad;
    while (fscanf(f, "%zu %llu", &i, &b) == 2) {
        uint64_t len = size - i * chunk < chunk ? size - i * chunk : chunk;
        if (i >= n || (!first && i <= last) || !b || b > len)
            goto bad;
        disk[i] = b;
        last = i;
        first = 0;
    }
    if (!feof(f))
        goto bad;
    fclose(f);
    *disk_out = disk;
    *n_out = n;
    return chunk;
bad:
    fclose(f);
    qd_free(disk);
    return 0;
}

/* Between rounds of the transfer loop: a thread's error, the state now and then, the progress bar. */
static int on_tick(void *ctx)
{
    pull_ctx *p = ctx;
    uint64_t t = now_ns();
    int err;
    pthread_mutex_lock(&p->mu);
    err = p->err;
    pthread_mutex_unlock(&p->mu);
    if (err)
        return qd_error_set(err, QD_EC_OS, "%s", p->msg);
    if (interrupted())
        return qd_error_set(QD_ECANCELED, QD_EC_NET, "interrupted (signal %d)", interrupted());
    if (t - p->last_state_ns > STATE_EVERY_NS) {
        int rc;
        p->last_state_ns = t;
        if ((rc = write_state(p)))
            return rc;
    }
    progress_update(p->on_disk_before + p->received, p->size, &p->prog);
    return 0;
}

/* Stop the threads once they have followed every complete chunk, and the syncer. @return a thread's error or
 * QD_OK */
static int threads_join(pull_ctx *p)
{
    int e;
    pthread_mutex_lock(&p->mu);
    p->finished = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int k = 0; k < 2; k++)
        if (p->started[k]) {
            pthread_join(p->th[k], NULL);
            p->started[k] = 0;
        }
    if ((e = qd_syncer_stop(p->syncer)) && !p->err) {
        p->err = QD_EIO;
        snprintf(p->msg, sizeof(p->msg), "%s: fdatasync: %s", p->part, strerror(e));
    }
    p->syncer = NULL;
    return p->err ? qd_error_set(p->err, QD_EC_OS, "%s", p->msg) : QD_OK;
}

/* The pull stopped early: write out what the unfinished chunks received, so a resume need not fetch it again. */
static void keep_received(pull_ctx *p)
{
    for (size_t i = p->written; i < p->loaded; i++) {
        uint64_t have = p->ranges[i].done;
        if (have > p->disk[i] && !qd_pwrite_all(p->fd, slot(p, i), have, chunk_start(p, i)))
            p->disk[i] = have;
    }
}

static int os_error(const char *what)
{
    return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "%s: %s", what, strerror(errno));
}

int pull_file(http_client *c, const char *blob_path, const char *dir, const layer *L, size_t parallel,
              pull_result *res)
{
    char target[1200], part[1200], state[1200];
    pull_ctx p;
    qd_digest got;
    struct stat st;
    int rc = QD_OK, keep = 1;

    memset(&p, 0, sizeof(p));
    p.c = c;
    p.fd = p.dfd = -1;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    snprintf(target, sizeof(target), "%s/%s", dir, L->name);
    snprintf(part, sizeof(part), "%s/.%s.quant-part", dir, L->name);
    snprintf(state, sizeof(state), "%s/.%s.quant-state", dir, L->name);
    if (!stat(target, &st) && (uint64_t)st.st_size == L->size && !qd_file_sha256(&got, target) &&
        qd_digest_equal(&got, &L->digest)) {
        fprintf(stderr, "quant pull: %s: already there\n", L->name);
        res->present = 1;
        return QD_OK;
    }
    p.size = L->size;
    p.part = part;
    p.state_path = state;
    p.digest_str = L->digest_str;
    if (parallel < 1)
        parallel = 1;

    /* the chunks: those of a state this pull can continue, or new ones */
    if (stat(part, &st) || !(p.chunk = read_state(&p, &p.disk, &p.nchunks))) {
        uint64_t per = (L->size + parallel - 1) / parallel;
        per = (per + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
        p.chunk = per < CHUNK_MIN ? CHUNK_MIN : per > CHUNK_MAX ? CHUNK_MAX : per;
        p.nchunks = (size_t)((L->size + p.chunk - 1) / p.chunk);
        if (!(p.disk = qd_calloc(p.nchunks ? p.nchunks : 1, sizeof(*p.disk)))) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            goto cleanup;
        }
        unlink(part);
    }
    p.nslots = 2 * parallel < 8 ? 8 : 2 * parallel;
    if (p.nslots > SLOTS_MEM / p.chunk)
        p.nslots = (size_t)(SLOTS_MEM / p.chunk);
    if (p.nslots > p.nchunks)
        p.nslots = p.nchunks ? p.nchunks : 1;
    if (!(p.ranges = qd_calloc(p.nchunks ? p.nchunks : 1, sizeof(*p.ranges))) ||
        !(p.complete = qd_calloc(p.nchunks ? p.nchunks : 1, 1))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < p.nchunks; i++) {
        p.ranges[i] = (http_range){chunk_start(&p, i), chunk_start(&p, i) + chunk_len(&p, i), p.disk[i]};
        p.on_disk_before += p.disk[i];
    }
    if (p.on_disk_before)
        fprintf(stderr, "quant pull: %s: resuming (%llu of %llu bytes on disk)\n", L->name,
                (unsigned long long)p.on_disk_before, (unsigned long long)L->size);

    p.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (p.fd < 0 || ftruncate(p.fd, (off_t)L->size)) {
        rc = os_error(part);
        goto cleanup;
    }
    p.dfd = open(part, O_WRONLY | O_DIRECT | O_CLOEXEC); /* -1 (e.g. tmpfs): the page cache it is */
    if ((rc = qd_sha256_new(&p.h)))
        goto cleanup;
    if (p.nchunks) {
        p.slots_bytes = p.nslots * (size_t)p.chunk;
        if (!(p.slots = qd_big_alloc(p.slots_bytes))) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory (%zu bytes of buffers)", p.slots_bytes);
            goto cleanup;
        }
    }
    if ((rc = write_state(&p)))
        goto cleanup;
    (void)qd_syncer_start(&p.syncer, p.fd, SYNC_EVERY); /* (fd: it covers the O_DIRECT writes through dfd too) */
    for (int k = 0; k < 2; k++) {
        if (pthread_create(&p.th[k], NULL, k == 0 ? hasher : writer, &p)) {
            rc = qd_error_set(QD_ERROR, QD_EC_OS, "cannot start a thread");
            goto cleanup;
        }
        p.started[k] = 1;
    }
    progress_start(&p.prog, L->name, L->size);
    uint64_t before = http_bytes_received(c);
    rc = http_get_ranges(c, blob_path, L->digest_str, p.ranges, p.nchunks, parallel, on_ready, on_bytes, on_tick,
                         &p);
    progress_end(&p.prog);
    res->fetched += http_bytes_received(c) - before;
    res->resumed = p.on_disk_before > 0;
    {
        int tr = threads_join(&p);
        if (!rc)
            rc = tr;
    }
    if (rc) {
        keep_received(&p);
        write_state(&p);
        if (rc == QD_ECORRUPT || rc == QD_EDIGEST)
            keep = 0;
        goto cleanup;
    }
    if (p.hashed != p.nchunks || p.written != p.nchunks) {
        rc = qd_error_set(QD_ETRUNCATED, QD_EC_NET, "%s: %zu of %zu chunks complete", L->name, p.hashed, p.nchunks);
        keep = 0;
        goto cleanup;
    }
    qd_sha256_final(p.h, &got);
    if (!qd_digest_equal(&got, &L->digest)) {
        char s[QD_DIGEST_STR_LEN + 1];
        rc = qd_error_set(QD_EDIGEST, QD_EC_VERIFY, "%s: the downloaded bytes hash to %s, the signed digest is %s",
                          L->name, qd_digest_format(s, &got), L->digest_str);
        keep = 0;
        goto cleanup;
    }
    /* the bytes on the device before the name appears, and the name on the device before we say so */
    if (fsync(p.fd) || rename(part, target) || qd_fsync_dir(dir)) {
        rc = os_error(target);
        keep = 0;
        goto cleanup;
    }
    unlink(state);
    fprintf(stderr, "quant pull: %s: %llu bytes, %s%s\n", L->name, (unsigned long long)L->size, L->digest_str,
            p.on_disk_before ? " (resumed)" : "");
cleanup:
    threads_join(&p);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    if (p.fd >= 0)
        close(p.fd);
    if (p.dfd >= 0)
        close(p.dfd);
    if (p.slots)
        qd_big_free(p.slots, p.slots_bytes);
    if (rc && !keep) {
        unlink(part);
        unlink(state);
    }
    qd_sha256_free(p.h);
    qd_free(p.ranges);
    qd_free(p.disk);
    qd_free(p.complete);
    return rc;
}
