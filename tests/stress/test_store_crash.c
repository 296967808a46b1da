/*
 * test_store_crash.c - a child process writes random blobs and is killed with SIGKILL at random moments, 30 times.
 *
 * After each kill: fsck finds no problem; every blob the child reported stored reads back intact; the only blob
 * that may be visible without a report is the one whose commit raced the kill, and it too must be complete; GC
 * then removes whatever the dead writer left behind.
 *
 * Blob i's content is generated from (seed, i), so the parent knows every byte without being told.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "testutil.h"

#include "qd/qd.h"

#define KILLS 30
#define MAX_BLOB (64u << 20)

static uint64_t g_seed;

static size_t blob_size(uint64_t i)
{
    tu_rng r;
    tu_rng_seed(&r, g_seed ^ (i * 0x9e3779b97f4a7c15ull) ^ 0x51e5ull);
    /* log-uniform from 1 byte to 64 MiB: many small blobs, some huge */
    double e = (double)(tu_next(&r) % 1000) / 1000.0 * 26.0;
    size_t n = (size_t)1 << (int)e;
    n += tu_next(&r) % n;
    return n > MAX_BLOB ? MAX_BLOB : n;
}

static void blob_fill(uint64_t i, uint8_t *p, size_t n)
{
    tu_rng r;
    tu_rng_seed(&r, g_seed + i);
    tu_fill(&r, p, n);
    /* make every other blob compressible so both codecs are in play */
    if (i & 1)
        for (size_t k = 0; k < n; k += 2)
            p[k] &= 0x0f;
}

static void digest_of(uint64_t i, qd_digest *d, uint8_t *scratch)
{
    size_t n = blob_size(i);
    blob_fill(i, scratch, n);
    qd_sha256_buf(d, scratch, n);
}

/* The child: write blobs first, first+1, ... forever, reporting "i\n" after each commit returns. */
static void child(const char *dir, uint64_t first, int fd)
{
    qd_store *s;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    uint8_t *buf = malloc(MAX_BLOB);
    o.flags = QD_STORE_CREATE;
    o.batch_bytes = 8u << 20; /* several intermediate transactions per large blob */
    if (qd_store_open(&s, dir, &o) < 0)
        _exit(3);
    for (uint64_t i = first;; i++) {
        size_t n = blob_size(i);
        char line[32];
        int len;
        blob_fill(i, buf, n);
        if (qd_store_put_buf(s, buf, n, NULL, NULL) < 0)
            _exit(4);
        len = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)i);
        if (write(fd, line, (size_t)len) != len)
            _exit(5);
    }
}

/* Read what the child reported from fd into buf (have bytes pending); consume complete lines "i\n". Returns false at
 * end of file or on an error. */
static bool drain_reports(int fd, char *buf, size_t cap, size_t *have, uint64_t *last, uint64_t *reported)
{
    ssize_t n = read(fd, buf + *have, cap - 1 - *have);
    char *nl, *start = buf;
    if (n <= 0)
        return false;
    *have += (size_t)n;
    buf[*have] = '\0';
    while ((nl = strchr(start, '\n'))) {
        *last = strtoull(start, NULL, 10);
        (*reported)++;
        start = nl + 1;
    }
    memmove(buf, start, *have - (size_t)(start - buf));
    *have -= (size_t)(start - buf);
    return true;
}

static void test_store_crash__sigkill_30_times(void **state)
{
    char *dir = tu_sandbox();
    uint8_t *scratch = malloc(MAX_BLOB);
    uint64_t next = 0;
    tu_rng r;
    (void)state;

    g_seed = tu_seed();
    tu_rng_seed(&r, g_seed);
    for (int kill_no = 0; kill_no < KILLS; kill_no++) {
        int p[2];
        pid_t pid;
        int status, ms = 30 + (int)(tu_next(&r) % 400);
        char buf[4096];
        size_t have = 0;
        uint64_t last = UINT64_MAX, reported = 0;
        qd_store *s;
        qd_store_options o = QD_STORE_OPTIONS_INIT;
        qd_fsck_stats fs;
        qd_gc_stats gs;
        qd_store_stats st;
        uint64_t first = next;

        assert_int_equal(pipe(p), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(dir, first, p[1]);
        }
        close(p[1]);
        /* let it run for a random time while collecting reports, then kill it mid-flight */
        {
            uint64_t deadline_ms = (uint64_t)ms;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (;;) {
                struct pollfd pf = {p[0], POLLIN, 0};
                uint64_t el;
                clock_gettime(CLOCK_MONOTONIC, &t1);
                el = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
                if (el >= deadline_ms)
                    break;
                if (poll(&pf, 1, (int)(deadline_ms - el)) > 0 &&
                    !drain_reports(p[0], buf, sizeof(buf), &have, &last, &reported))
                    break;
            }
        }
        kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* it was still writing, not dead of an error */
        /* reports written before the kill */
        while (drain_reports(p[0], buf, sizeof(buf), &have, &last, &reported))
            ;
        close(p[0]);

        o.flags = 0;
        assert_int_equal(qd_store_open(&s, dir, &o), QD_OK);
        assert_int_equal(qd_store_fsck(s, 0, NULL, NULL, &fs), QD_OK);
        assert_int_equal(fs.problems, 0);
        /* every reported blob is there and intact; the one in flight is there whole or not at all */
        {
            uint64_t upto = reported ? last + 1 : first;
            /* the round's blobs by content: two tiny blobs can be equal (1-byte blobs of one seed repeat), and the
             * store keeps such a pair once */
            size_t nb = (size_t)(upto - first + 1), distinct_reported = 0;
            qd_digest *ds = calloc(nb, sizeof(*ds));
            bool *repeat = calloc(nb, sizeof(*repeat));
            assert_true(ds && repeat);
            for (size_t k = 0; k < nb; k++) {
                digest_of(first + k, &ds[k], scratch);
                for (size_t j = 0; j < k && !repeat[k]; j++)
                    repeat[k] = qd_digest_equal(&ds[j], &ds[k]);
                if (k + 1 < nb && !repeat[k])
                    distinct_reported++;
            }
            for (uint64_t i = first; i <= upto; i++) {
                const qd_digest *d = &ds[i - first];
                qd_blob_info info;
                if (i == upto) {
                    if (qd_store_has(s, d)) { /* committed, killed before it could report */
                        assert_int_equal(qd_store_stat(s, d, &info), QD_OK);
                        assert_int_equal(info.size, blob_size(i));
                    }
                    continue;
                }
                assert_true(qd_store_has(s, d));
                assert_int_equal(qd_store_stat(s, d, &info), QD_OK);
                assert_int_equal(info.size, blob_size(i));
            }
            /* fsck re-hashed every visible blob against its digest, so every visible blob is complete; the
             * visible ones must be exactly the reported ones (by content) plus at most the one in flight */
            assert_int_equal(qd_store_stats_get(s, &st), QD_OK);
            assert_true(st.blobs >= distinct_reported && st.blobs <= distinct_reported + !repeat[nb - 1]);
            next = upto + 1;
            /* start the next round from an empty store: remove them all (each content once), then collect the
             * garbage */
            for (size_t k = 0; k < nb; k++) {
                if (repeat[k])
                    continue;
                int rc = qd_store_remove(s, &ds[k]);
                assert_true(rc == QD_OK || (k + 1 == nb && rc == QD_ENOTFOUND));
            }
            free(ds);
            free(repeat);
        }
        assert_int_equal(qd_store_gc(s, &gs), QD_OK);
        assert_int_equal(qd_store_fsck(s, 0, NULL, NULL, &fs), QD_OK);
        assert_int_equal(fs.garbage_chunks, 0);
        assert_int_equal(qd_store_stats_get(s, &st), QD_OK);
        assert_int_equal(st.blobs, 0);
        assert_int_equal(st.chunks, 0);
        print_message("kill %2d after %3d ms: %llu blob(s) reported, %llu garbage chunk(s) collected\n", kill_no + 1,
                      ms, (unsigned long long)reported, (unsigned long long)gs.chunks_freed);
        qd_store_close(s);
    }
    tu_rmtree(dir);
    free(dir);
    free(scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_crash__sigkill_30_times),
    };
    tu_seed();
    return cmocka_run_group_tests_name("store_crash", tests, NULL, NULL);
}
