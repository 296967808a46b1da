/*
 * test_store_concurrency.c - 4 readers stream blobs while a writer adds and removes others.
 *
 * Blob contents are generated from (seed, id), so a reader checks every byte it is handed against the expected
 * bytes of that offset, and the whole-blob SHA-256 at the end. A reader may find a blob gone (removed before it
 * opened it) but must never see wrong bytes: an open reader keeps its snapshot even while the blob is removed.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "testutil.h"

#include "qd/qd.h"

#define READERS 4
#define WRITER_OPS 80
#define SLOTS 16

typedef struct slot {
    qd_digest d;
    uint64_t id;
    size_t size;
    int live;
} slot;

static struct {
    qd_store *s;
    uint64_t seed;
    pthread_mutex_t mu;
    slot slots[SLOTS];
    atomic_int done;
    atomic_ulong reads, bytes, gone, bad;
} g;

static size_t size_of(uint64_t id)
{
    tu_rng r;
    tu_rng_seed(&r, g.seed ^ (id * 0x9e3779b97f4a7c15ull));
    return (size_t)(tu_next(&r) % (6u << 20)) + 1;
}

static void fill(uint64_t id, uint8_t *p, size_t n)
{
    tu_rng r;
    tu_rng_seed(&r, g.seed + id * 7919);
    tu_fill(&r, p, n);
    if (id % 3 == 0) /* compressible */
        for (size_t k = 0; k < n; k += 2)
            p[k] = 0;
}

static void *writer(void *arg)
{
    tu_rng r;
    uint8_t *buf = malloc(6u << 20);
    (void)arg;
    tu_rng_seed(&r, g.seed * 31);
    for (uint64_t op = 0; op < WRITER_OPS; op++) {
        int k = (int)(tu_next(&r) % SLOTS);
        slot cur;
        pthread_mutex_lock(&g.mu);
        cur = g.slots[k];
        pthread_mutex_unlock(&g.mu);
        if (cur.live) {
            pthread_mutex_lock(&g.mu);
            g.slots[k].live = 0;
            pthread_mutex_unlock(&g.mu);
            if (qd_store_remove(g.s, &cur.d) != QD_OK)
                atomic_fetch_add(&g.bad, 1);
        } else {
            slot ns = {.id = 1000 + op, .live = 1};
            ns.size = size_of(ns.id);
            fill(ns.id, buf, ns.size);
            if (qd_store_put_buf(g.s, buf, ns.size, NULL, &ns.d) != QD_OK) {
                atomic_fetch_add(&g.bad, 1);
                continue;
            }
            pthread_mutex_lock(&g.mu);
            g.slots[k] = ns;
            pthread_mutex_unlock(&g.mu);
        }
    }
    atomic_store(&g.done, 1);
    free(buf);
    return NULL;
}

static void *reader(void *arg)
{
    tu_rng r;
    uint8_t *want = malloc(6u << 20);
    tu_rng_seed(&r, g.seed + (uint64_t)(intptr_t)arg);
    while (!atomic_load(&g.done)) {
        int k = (int)(tu_next(&r) % SLOTS);
        slot cur;
        qd_blob_reader *br;
        qd_sha256 *h;
        qd_digest got;
        uint64_t off = 0;
        int rc;
        pthread_mutex_lock(&g.mu);
        cur = g.slots[k];
        pthread_mutex_unlock(&g.mu);
        if (!cur.live)
            continue;
        rc = qd_blob_reader_open(&br, g.s, &cur.d);
        if (rc == QD_ENOTFOUND) {
            atomic_fetch_add(&g.gone, 1);
            continue;
        }
        if (rc != QD_OK) {
            atomic_fetch_add(&g.bad, 1);
            continue;
        }
        fill(cur.id, want, cur.size);
        qd_sha256_new(&h);
        /* half the time, start at a random offset */
        if (tu_next(&r) & 1) {
            off = tu_next(&r) % cur.size;
            qd_blob_reader_seek(br, off);
        }
        for (;;) {
            const void *data;
            size_t len;
            if (qd_blob_reader_next(br, 1u << 20, &data, &len) != QD_OK) {
                atomic_fetch_add(&g.bad, 1);
                break;
            }
            if (!len)
                break;
            if (off + len > cur.size || memcmp(data, want + off, len) != 0)
                atomic_fetch_add(&g.bad, 1);
            qd_sha256_update(h, data, len);
            off += len;
            atomic_fetch_add(&g.bytes, len);
        }
        if (off != cur.size)
            atomic_fetch_add(&g.bad, 1);
        qd_sha256_final(h, &got);
        qd_sha256_free(h);
        qd_blob_reader_close(br);
        atomic_fetch_add(&g.reads, 1);
        (void)got;
    }
    free(want);
    return NULL;
}

static void test_store_concurrency__readers_never_see_wrong_bytes(void **state)
{
    char *dir = tu_sandbox();
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    pthread_t w, rd[READERS];
    qd_fsck_stats fs;
    (void)state;

    memset(&g, 0, sizeof(g));
    g.seed = tu_seed();
    pthread_mutex_init(&g.mu, NULL);
    o.flags = QD_STORE_CREATE;
    o.map_size = 8u << 20; /* small, so the map grows while readers are active */
    o.batch_bytes = 4u << 20;
    assert_int_equal(qd_store_open(&g.s, dir, &o), QD_OK);
    assert_int_equal(pthread_create(&w, NULL, writer, NULL), 0);
    for (intptr_t i = 0; i < READERS; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, reader, (void *)i), 0);
    pthread_join(w, NULL);
    {
        qd_store_stats st;
        assert_int_equal(qd_store_stats_get(g.s, &st), QD_OK);
        print_message("map grew from 8 MiB to %llu MiB under the readers\n", (unsigned long long)(st.map_size >> 20));
        assert_true(st.map_size > (8u << 20));
    }
    for (int i = 0; i < READERS; i++)
        pthread_join(rd[i], NULL);
    print_message("%lu whole or partial reads (%lu MiB) checked, %lu found removed, %lu bad\n",
                  (unsigned long)atomic_load(&g.reads), (unsigned long)(atomic_load(&g.bytes) >> 20),
                  (unsigned long)atomic_load(&g.gone), (unsigned long)atomic_load(&g.bad));
    assert_int_equal(atomic_load(&g.bad), 0);
    assert_true(atomic_load(&g.reads) > 0);
    assert_int_equal(qd_store_fsck(g.s, 0, NULL, NULL, &fs), QD_OK);
    qd_store_close(g.s);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_concurrency__readers_never_see_wrong_bytes),
    };
    tu_seed();
    return cmocka_run_group_tests_name("store_concurrency", tests, NULL, NULL);
}
