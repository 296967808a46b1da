/*
 * test_common.c - errors, bounded buffers, digests and SHA-256 known answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "testutil.h"

#include "qd/fileio.h"
#include "qd/pool.h"
#include "qd/qd.h"

static void test_common__sha256_known_answers(void **state)
{
    /* FIPS 180-2 examples plus the empty string */
    static const struct {
        const char *msg;
        const char *hex;
    } kat[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65];
    qd_digest d;
    (void)state;
    for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
        assert_int_equal(qd_sha256_buf(&d, kat[i].msg, strlen(kat[i].msg)), QD_OK);
        assert_string_equal(qd_digest_hex(hex, &d), kat[i].hex);
    }
    /* one million 'a', fed incrementally in odd-sized pieces */
    {
        qd_sha256 *h;
        char buf[997];
        size_t left = 1000000;
        memset(buf, 'a', sizeof(buf));
        assert_int_equal(qd_sha256_new(&h), QD_OK);
        while (left) {
            size_t n = left < sizeof(buf) ? left : sizeof(buf);
            assert_int_equal(qd_sha256_update(h, buf, n), QD_OK);
            left -= n;
        }
        assert_int_equal(qd_sha256_final(h, &d), QD_OK);
        assert_string_equal(qd_digest_hex(hex, &d), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
        qd_sha256_free(h);
    }
}

static void test_common__digest_parse_and_format(void **state)
{
    const char *good = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    char out[QD_DIGEST_STR_LEN + 1];
    qd_digest d;
    (void)state;
    assert_int_equal(qd_digest_parse(&d, good), QD_OK);
    assert_string_equal(qd_digest_format(out, &d), good);
    /* each malformed form is refused with a message naming the problem */
    assert_int_equal(qd_digest_parse(&d, NULL), QD_EINVAL);
    assert_int_equal(qd_digest_parse(&d, "sha512:abcd"), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "unsupported digest algorithm"));
    assert_int_equal(qd_digest_parse(&d, "sha256:abc"), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "hex digits"));
    assert_int_equal(qd_digest_parse(&d, "sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                     QD_EINVAL);
    assert_int_equal(qd_digest_parse(&d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0"),
                     QD_EINVAL);
    assert_int_equal(qd_digest_parse(&d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), QD_EINVAL);
    assert_int_equal(qd_digest_parse(&d, "sha256:../../etc/passwd"), QD_EINVAL);
}

static void test_common__buf_respects_its_limit(void **state)
{
    qd_buf b = QD_BUF_INIT(16);
    (void)state;
    assert_int_equal(qd_buf_puts(&b, "0123456789"), QD_OK);
    assert_int_equal(qd_buf_printf(&b, "%d", 12345), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "012345678912345");
    assert_int_equal(qd_buf_puts(&b, "ab"), QD_EFULL);
    assert_int_equal(b.len, 15); /* a refused append changes nothing */
    assert_int_equal(qd_buf_puts(&b, "a"), QD_OK);
    qd_buf_dispose(&b);
    assert_null(b.ptr);
}

static void test_common__errors_are_thread_local_and_prefixable(void **state)
{
    (void)state;
    assert_int_equal(qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no blob %s", "x"), QD_ENOTFOUND);
    assert_int_equal(qd_error_prefix("get"), QD_ENOTFOUND);
    assert_string_equal(qd_error_last()->message, "get: no blob x");
    qd_error_clear();
    assert_string_equal(qd_error_last()->message, "");
    assert_string_equal(qd_strerror(QD_EDIGEST), "digest mismatch");
}

/* An error saved on a worker thread comes back on another thread with its code, class and message; a success saves
 * nothing, and a failure without a message gets the code's name. */
static void *save_on_worker(void *arg)
{
    qd_error_saved *s = arg;
    qd_error_save(&s[0], qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "blob %s is not here", "sha256:00"));
    qd_error_save(&s[1], 3);
    qd_error_clear();
    qd_error_save(&s[2], QD_EIO);
    return NULL;
}

static void test_common__errors_cross_threads_saved(void **state)
{
    (void)state;
    qd_error_saved s[3];
    pthread_t t;
    memset(s, 0x5a, sizeof(s));
    qd_error_set(QD_EINVAL, QD_EC_INVALID, "this thread's own");
    assert_int_equal(pthread_create(&t, NULL, save_on_worker, s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(qd_error_last()->message, "this thread's own"); /* saving did not touch this thread */
    assert_int_equal(qd_error_restore(&s[0]), QD_ENOTFOUND);
    assert_int_equal(qd_error_last()->code, QD_ENOTFOUND);
    assert_int_equal(qd_error_last()->klass, QD_EC_STORE);
    assert_string_equal(qd_error_last()->message, "blob sha256:00 is not here");
    assert_int_equal(s[1].code, 0);
    assert_string_equal(s[1].message, "");
    assert_int_equal(qd_error_restore(&s[1]), 0);
    assert_int_equal(qd_error_last()->code, QD_ENOTFOUND); /* a success restores nothing */
    assert_int_equal(qd_error_restore(&s[2]), QD_EIO);
    assert_string_equal(qd_error_last()->message, qd_strerror(QD_EIO));
}

/* qd_fsync_parent syncs the folder that holds a path: a nested path, a bare name (the current folder), and a
 * missing folder refused with ENOENT; qd_pread_all reads a whole range or fails. */
static void test_common__fsync_parent(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), path[700];
    snprintf(path, sizeof(path), "%s/file.bin", dir);
    assert_int_equal(qd_fsync_parent(path), 0);
    assert_int_equal(qd_fsync_dir(dir), 0);
    assert_int_equal(qd_fsync_parent("bare-name"), 0);
    /* qd_pread_all: the whole range, and EIO past the end of the file */
    {
        char buf[16];
        int fd;
        snprintf(path, sizeof(path), "%s/ten", dir);
        fd = open(path, O_RDWR | O_CREAT, 0644);
        assert_true(fd >= 0);
        assert_int_equal(qd_pwrite_all(fd, "0123456789", 10, 0), 0);
        assert_int_equal(qd_pread_all(fd, buf, 6, 4), 0);
        assert_memory_equal(buf, "456789", 6);
        errno = 0;
        assert_int_equal(qd_pread_all(fd, buf, 8, 4), -1);
        assert_int_equal(errno, EIO);
        close(fd);
    }
    snprintf(path, sizeof(path), "%s/missing/file.bin", dir);
    errno = 0;
    assert_int_equal(qd_fsync_parent(path), -1);
    assert_int_equal(errno, ENOENT);
    tu_rmtree(dir);
    free(dir);
}

static void test_common__alloc_checks_overflow(void **state)
{
    (void)state;
    assert_null(qd_mallocarray(SIZE_MAX / 2, 4));
    assert_int_equal(qd_error_last()->code, QD_ENOMEM);
    assert_null(qd_calloc(SIZE_MAX, SIZE_MAX));
}

/* Whether [p, p + n) is mapped in this process (madvise refuses an unmapped range with ENOMEM). */
static bool mapped(const void *p, size_t n) { return madvise((void *)p, n, MADV_NORMAL) == 0; }

/* This process's mapped bytes (VmSize), read without allocating (a stdio buffer could move the heap's break). */
static size_t vm_size(void)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = 0;
    const char *v = strstr(buf, "VmSize:");
    assert_non_null(v);
    return (size_t)strtoull(v + 7, NULL, 10) * 1024;
}

/* qd_big_alloc: whole 2 MiB pages, 2 MiB-aligned, nothing of the over-mapping left behind (the process maps exactly
 * the rounded size more, whatever lies beside it); qd_big_free with the caller's size unmaps all of it; a size that
 * cannot be rounded is refused. */
static void test_common__big_alloc_whole_huge_pages(void **state)
{
    (void)state;
    const size_t mb2 = (size_t)2 << 20;
    const size_t sizes[] = {1, 4096, mb2 - 1, mb2, mb2 + 1, (size_t)3400 << 10, (size_t)8 << 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i], len = (n + mb2 - 1) / mb2 * mb2;
        const size_t before = vm_size();
        uint8_t *p = qd_big_alloc(n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % mb2, 0);
        p[0] = 1;
        p[n - 1] = 2;
        assert_true(mapped(p, len));
        assert_int_equal(vm_size() - before, len); /* the head and tail of the over-mapping were cut off */
        qd_big_free(p, n);
        assert_false(mapped(p, 4096));
        assert_false(mapped(p + len - 4096, 4096));
        assert_int_equal(vm_size(), before);
    }
    assert_null(qd_big_alloc(SIZE_MAX - 4096));
    assert_int_equal(qd_error_last()->code, QD_ENOMEM);
}

/* qd_arena: every allocation 16-aligned and distinct, contents kept across chunks (a run of small ones, then one
 * larger than a chunk, then small ones again), strndup keeps NUL bytes and ends in one; free empties it and it can be
 * used again. */
static void test_common__arena_keeps_every_allocation(void **state)
{
    (void)state;
    qd_arena a = {0};
    enum { N = 200000 };
    uint32_t **p = calloc(N, sizeof(*p));
    assert_non_null(p);
    for (int round = 0; round < 2; round++) {
        for (uint32_t i = 0; i < N; i++) {
            size_t n = i == N / 2 ? ((size_t)5 << 20) : 4 + 4 * (i % 7); /* ~3.4 MiB of small ones: several chunks */
            p[i] = qd_arena_alloc(&a, n);
            assert_non_null(p[i]);
            assert_int_equal((uintptr_t)p[i] % 16, 0);
            p[i][0] = i * 2654435761u;
            if (i == N / 2)
                p[i][((size_t)5 << 20) / 4 - 1] = ~i;
        }
        for (uint32_t i = 0; i < N; i++)
            assert_int_equal(p[i][0], i * 2654435761u);
        assert_int_equal(p[N / 2][((size_t)5 << 20) / 4 - 1], ~(uint32_t)(N / 2));
        char *s = qd_arena_strndup(&a, "ab\0cd", 5);
        assert_non_null(s);
        assert_memory_equal(s, "ab\0cd", 6);
        char *e = qd_arena_strndup(&a, NULL, 0);
        assert_non_null(e);
        assert_int_equal(e[0], '\0');
        assert_non_null(qd_arena_alloc(&a, 0));
        qd_arena_free(&a);
        assert_null(a.chunks);
        assert_int_equal(a.left, 0);
    }
    assert_null(qd_arena_alloc(&a, SIZE_MAX - 16));
    assert_int_equal(qd_error_last()->code, QD_ENOMEM);
    qd_arena_free(&a);
    free(p);
}

/* qd_pool: each item of a round runs once, on a helper unless it is item 0 (the caller's), and a round returns only
 * when every item has; k beyond size + 1 runs size + 1; a pool of no helpers runs item 0 here. */
typedef struct pool_round {
    int count[8];
    pthread_t who[8];
} pool_round;

static void pool_item(void *arg, int i)
{
    pool_round *r = arg;
    r->who[i] = pthread_self();
    __atomic_add_fetch(&r->count[i], 1, __ATOMIC_SEQ_CST);
}

static void test_common__pool_runs_each_item_once(void **state)
{
    (void)state;
    qd_pool *p;
    assert_int_equal(qd_pool_start(&p, 3), QD_OK);
    assert_int_equal(qd_pool_size(p), 3);
    for (int round = 0; round < 200; round++) {
        pool_round r;
        memset(&r, 0, sizeof(r));
        int k = 1 + round % 6; /* up to 6: more than size + 1 */
        qd_pool_run(p, k, pool_item, &r);
        int ran = k < 4 ? k : 4;
        for (int i = 0; i < 8; i++)
            assert_int_equal(r.count[i], i < ran ? 1 : 0);
        assert_true(pthread_equal(r.who[0], pthread_self()));
        for (int i = 1; i < ran; i++)
            assert_false(pthread_equal(r.who[i], pthread_self()));
    }
    qd_pool_stop(p);
    assert_int_equal(qd_pool_start(&p, 0), QD_OK);
    pool_round r;
    memset(&r, 0, sizeof(r));
    qd_pool_run(p, 3, pool_item, &r);
    assert_int_equal(r.count[0], 1);
    assert_int_equal(r.count[1], 0);
    qd_pool_stop(p);
    qd_pool_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common__sha256_known_answers),
        cmocka_unit_test(test_common__digest_parse_and_format),
        cmocka_unit_test(test_common__buf_respects_its_limit),
        cmocka_unit_test(test_common__errors_are_thread_local_and_prefixable),
        cmocka_unit_test(test_common__errors_cross_threads_saved),
        cmocka_unit_test(test_common__fsync_parent),
        cmocka_unit_test(test_common__alloc_checks_overflow),
        cmocka_unit_test(test_common__big_alloc_whole_huge_pages),
        cmocka_unit_test(test_common__arena_keeps_every_allocation),
        cmocka_unit_test(test_common__pool_runs_each_item_once),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
