/*
 * test_store.c - the content-addressed store on a real LMDB environment in a fresh directory per test.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>

#include <lmdb.h>
#include <zstd.h>

#include "testutil.h"

#include "qd/qd.h"

/* internal: the chunker, tested directly as well as through the store */
size_t qd_store__cdc_cut(const uint8_t *p, size_t n, int final);

#include "store_fixture.h"

static uint8_t *random_bytes(tu_rng *r, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    tu_fill(r, p, n);
    return p;
}

/* fp16 encodings of N(0, 0.02) weights: compresses by about 9% with zstd, like real checkpoints */
static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff, m = x & 0x7fffff;
    int ne = (int)e - 127 + 15;
    if (ne <= 0)
        return (uint16_t)sign;
    if (ne >= 31)
        return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (uint32_t)ne << 10 | (m >> 13));
}

static uint8_t *fp16_bytes(tu_rng *r, size_t n)
{
    uint8_t *p = malloc(n);
    for (size_t i = 0; i + 1 < n; i += 2) {
        double u1 = ((double)(tu_next(r) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(tu_next(r) >> 11) / 9007199254740992.0;
        float g = (float)(0.02 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
        uint16_t h = f32_to_f16(g);
        memcpy(p + i, &h, 2);
    }
    if (n & 1)
        p[n - 1] = 0;
    return p;
}

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static int to_mem(const void *data, size_t len, void *payload)
{
    membuf *m = payload;
    if (m->len + len > m->cap)
        return QD_EFULL;
    memcpy(m->p + m->len, data, len);
    m->len += len;
    return QD_OK;
}

static void assert_reads_back(qd_store *s, const qd_digest *d, const uint8_t *want, size_t n)
{
    membuf m = {malloc(n + 1), 0, n + 1};
    assert_int_equal(qd_store_get(s, d, 0, UINT64_MAX, to_mem, &m), QD_OK);
    assert_int_equal(m.len, n);
    assert_memory_equal(m.p, want, n);
    free(m.p);
}

static void test_store__put_get_sizes_around_chunk_bounds(void **state)
{
    fixture *f = *state;
    const size_t sizes[] = {0, 1, 4095, QD_CHUNK_MIN - 1, QD_CHUNK_MIN, QD_CHUNK_MIN + 1, QD_CHUNK_MAX - 1,
                            QD_CHUNK_MAX, QD_CHUNK_MAX + 1, 3 * QD_CHUNK_MAX + 12345};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = random_bytes(&f->rng, sizes[i]);
        qd_digest d, want;
        qd_blob_info info;
        assert_int_equal(qd_store_put_buf(f->s, p, sizes[i], NULL, &d), QD_OK);
        qd_sha256_buf(&want, p, sizes[i]);
        assert_true(qd_digest_equal(&d, &want));
        assert_true(qd_store_has(f->s, &d));
        assert_int_equal(qd_store_stat(f->s, &d, &info), QD_OK);
        assert_int_equal(info.size, sizes[i]);
        assert_true(info.n_chunks == 0 ? sizes[i] == 0 : info.n_chunks >= (sizes[i] + QD_CHUNK_MAX - 1) / QD_CHUNK_MAX);
        assert_reads_back(f->s, &d, p, sizes[i]);
        free(p);
    }
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, NULL), QD_OK);
}

static void test_store__ranges_read_the_right_bytes(void **state)
{
    fixture *f = *state;
    size_t n = 9 * 1024 * 1024 + 77;
    uint8_t *p = fp16_bytes(&f->rng, n); /* compressed chunks exercise the decompressing path */
    qd_digest d;
    qd_blob_info info;
    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &d), QD_OK);
    assert_int_equal(qd_store_stat(f->s, &d, &info), QD_OK);
    assert_true(info.n_compressed > 0);
    assert_true(info.stored_bytes < n);
    for (int i = 0; i < 200; i++) {
        uint64_t off = tu_next(&f->rng) % n, len = tu_next(&f->rng) % (n - off) + 1;
        if (i % 4 == 0) { /* tiny ranges (one draw, within the blob; the buffer is sized after the choice) */
            uint64_t tiny = tu_next(&f->rng) % 64 + 1;
            len = tiny <= n - off ? tiny : 1;
        }
        membuf m = {malloc(len), 0, len};
        assert_int_equal(qd_store_get(f->s, &d, off, len, to_mem, &m), QD_OK);
        assert_int_equal(m.len, len);
        assert_memory_equal(m.p, p + off, len);
        free(m.p);
    }
    /* the very end, and ranges outside the blob */
    {
        membuf m = {malloc(1), 0, 1};
        assert_int_equal(qd_store_get(f->s, &d, n - 1, 1, to_mem, &m), QD_OK);
        assert_int_equal(m.p[0], p[n - 1]);
        assert_int_equal(qd_store_get(f->s, &d, n, 1, to_mem, &m), QD_EINVAL);
        assert_int_equal(qd_store_get(f->s, &d, n - 1, 2, to_mem, &m), QD_EINVAL);
        free(m.p);
    }
    free(p);
}

/* fp16 weights compress well only when split into byte planes, and content-defined chunks start at odd offsets as
 * often as at even ones: every chunk must still be split along the blob's words (the saving) and read back exactly.
 * A blob whose words are themselves misaligned (shift 1) must read back exactly too. */
static void test_store__fp16_weights_split_along_words_at_any_chunk_offset(void **state)
{
    fixture *f = *state;
    size_t n = 8u << 20;
    uint8_t *p = fp16_bytes(&f->rng, n + 1);
    for (int shift = 0; shift < 2; shift++) {
        qd_digest d;
        qd_blob_info info;
        assert_int_equal(qd_store_put_buf(f->s, p + shift, n - (size_t)shift, NULL, &d), QD_OK);
        assert_int_equal(qd_store_stat(f->s, &d, &info), QD_OK);
        print_message("shift %d: stored %.1f%% of %zu bytes, %u of %u chunks compressed\n", shift,
                      100.0 * (double)info.stored_bytes / (double)info.size, (size_t)info.size, info.n_compressed,
                      info.n_chunks);
        if (shift == 0) {
            /* what plain zstd would keep, for comparison */
            size_t cap = ZSTD_compressBound(n), plain;
            void *z = malloc(cap);
            plain = ZSTD_compress(z, cap, p, n, 1);
            free(z);
            print_message("         plain zstd would keep %.1f%%\n", 100.0 * (double)plain / (double)n);
            assert_int_equal(info.n_compressed, info.n_chunks);
            assert_true(info.stored_bytes * 100 < plain * 97);
        }
        assert_reads_back(f->s, &d, p + shift, n - (size_t)shift);
    }
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, NULL), QD_OK);
    free(p);
}

static void test_store__reader_hands_out_raw_chunks_without_copy(void **state)
{
    fixture *f = *state;
    size_t n = 6 * 1024 * 1024;
    uint8_t *p = random_bytes(&f->rng, n);
    qd_digest d;
    qd_blob_reader *r;
    const void *data;
    size_t len, total = 0;
    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &d), QD_OK);
    assert_int_equal(qd_blob_reader_open(&r, f->s, &d), QD_OK);
    assert_int_equal(qd_blob_reader_size(r), n);
    /* pieces are whole chunks (>= the minimum chunk size but for the tail), pointing at the stored bytes */
    while (qd_blob_reader_next(r, SIZE_MAX, &data, &len) == QD_OK && len) {
        assert_memory_equal(data, p + total, len);
        assert_true(len <= QD_CHUNK_MAX);
        assert_true((const uint8_t *)data < p || (const uint8_t *)data >= p + n);
        assert_true(qd_blob_reader_mapped(r)); /* random bytes are stored raw: the piece is the map's */
        total += len;
    }
    assert_int_equal(total, n);
    assert_int_equal(qd_blob_reader_seek(r, n + 1), QD_EINVAL);
    qd_blob_reader_close(r);
    free(p);
}

/* A compressed chunk's piece lives in the reader's decode buffer, which the next call overwrites: not mapped. */
static void test_store__reader_says_when_a_piece_is_decoded(void **state)
{
    fixture *f = *state;
    size_t n = 3 * 1024 * 1024, total = 0;
    char *p = malloc(n);
    qd_digest d;
    qd_blob_reader *r;
    const void *data;
    size_t len;
    qd_blob_info info;
    assert_non_null(p);
    static const char line[] = "{\"name\": \"tensor\", \"shape\": [4096, 4096]}\n";
    for (size_t i = 0; i < n; i++)
        p[i] = line[i % (sizeof(line) - 1)];
    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &d), QD_OK);
    assert_int_equal(qd_store_stat(f->s, &d, &info), QD_OK);
    assert_int_equal(info.n_compressed, info.n_chunks);
    assert_int_equal(qd_blob_reader_open(&r, f->s, &d), QD_OK);
    while (qd_blob_reader_next(r, 65536, &data, &len) == QD_OK && len) {
        assert_memory_equal(data, p + total, len);
        assert_false(qd_blob_reader_mapped(r));
        total += len;
    }
    assert_int_equal(total, n);
    qd_blob_reader_close(r);
    free(p);
}

static void test_store__same_blob_twice_is_stored_once(void **state)
{
    fixture *f = *state;
    size_t n = 5 * 1024 * 1024;
    uint8_t *p = random_bytes(&f->rng, n);
    qd_digest a, b;
    qd_store_stats st1, st2;
    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &a), QD_OK);
    assert_int_equal(qd_store_stats_get(f->s, &st1), QD_OK);
    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &b), QD_OK);
    assert_int_equal(qd_store_stats_get(f->s, &st2), QD_OK);
    assert_true(qd_digest_equal(&a, &b));
    assert_int_equal(st1.blobs, 1);
    assert_int_equal(st2.blobs, 1);
    assert_int_equal(st1.chunk_bytes, st2.chunk_bytes);
    assert_int_equal(st1.chunks, st2.chunks);
    free(p);
}

/* A 64 MiB file with one byte inserted at the start shares at least 90% of its chunks with the original. */
static void test_store__insertion_at_start_keeps_chunks_shared(void **state)
{
    fixture *f = *state;
    size_t n = 64u << 20;
    uint8_t *p = malloc(n + 1);
    size_t na = 0, nb = 0, shared = 0;
    qd_digest *ha = malloc(sizeof(qd_digest) * 512), *hb = malloc(sizeof(qd_digest) * 512);
    qd_digest da, db;
    qd_store_stats st;

    tu_fill(&f->rng, p + 1, n);
    p[0] = 0x5a;
    /* chunk both directly */
    for (size_t off = 1; off < n + 1;) {
        size_t cut = qd_store__cdc_cut(p + off, n + 1 - off, n + 1 - off < QD_CHUNK_MAX);
        qd_sha256_buf(&ha[na++], p + off, cut);
        off += cut;
    }
    for (size_t off = 0; off < n + 1;) {
        size_t cut = qd_store__cdc_cut(p + off, n + 1 - off, n + 1 - off < QD_CHUNK_MAX);
        qd_sha256_buf(&hb[nb++], p + off, cut);
        off += cut;
    }
    for (size_t i = 0; i < nb; i++)
        for (size_t j = 0; j < na; j++)
            if (qd_digest_equal(&hb[i], &ha[j])) {
                shared++;
                break;
            }
    print_message("chunks: original %zu, modified %zu, shared %zu (%.1f%%), average %.0f KiB\n", na, nb, shared,
                  100.0 * (double)shared / (double)na, (double)n / (double)na / 1024);
    assert_true(shared * 10 >= na * 9);
    assert_true(na > 32 && na < 128); /* about 1 MiB on average */
    /* and through the store: the second file costs only its first chunk or two */
    assert_int_equal(qd_store_put_buf(f->s, p + 1, n, NULL, &da), QD_OK);
    assert_int_equal(qd_store_put_buf(f->s, p, n + 1, NULL, &db), QD_OK);
    assert_int_equal(qd_store_stats_get(f->s, &st), QD_OK);
    assert_true(st.chunk_bytes <= n + n / 10);
    free(ha);
    free(hb);
    free(p);
}

static void test_store__remove_keeps_shared_chunks_and_frees_the_rest(void **state)
{
    fixture *f = *state;
    size_t n = 12u << 20;
    uint8_t *p = random_bytes(&f->rng, n + (4u << 20));
    qd_digest a, b;
    qd_store_stats st;
    qd_fsck_stats fs;

    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &a), QD_OK);
    assert_int_equal(qd_store_put_buf(f->s, p, n + (4u << 20), NULL, &b), QD_OK); /* shares a's chunks */
    assert_int_equal(qd_store_remove(f->s, &a), QD_OK);
    assert_false(qd_store_has(f->s, &a));
    assert_int_equal(qd_store_remove(f->s, &a), QD_ENOTFOUND);
    assert_reads_back(f->s, &b, p, n + (4u << 20));
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK);
    assert_int_equal(fs.garbage_chunks, 0);
    assert_int_equal(qd_store_remove(f->s, &b), QD_OK);
    assert_int_equal(qd_store_stats_get(f->s, &st), QD_OK);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(st.chunks, 0); /* nothing in flight: freed at once */
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK);
    free(p);
}

static void test_store__referenced_blob_cannot_be_removed(void **state)
{
    fixture *f = *state;
    uint8_t *p = random_bytes(&f->rng, 1000);
    qd_digest d, manifest, missing;
    qd_blob_info info;
    qd_fsck_stats fs;

    assert_int_equal(qd_store_put_buf(f->s, p, 1000, NULL, &d), QD_OK);
    memset(manifest.bytes, 0xab, 32);
    memset(missing.bytes, 0xcd, 32);
    assert_int_equal(qd_store_ref_add(f->s, &manifest, &d), QD_OK);
    assert_int_equal(qd_store_ref_add(f->s, &manifest, &d), QD_OK); /* idempotent */
    assert_int_equal(qd_store_ref_add(f->s, &manifest, &missing), QD_ENOTFOUND);
    assert_int_equal(qd_store_stat(f->s, &d, &info), QD_OK);
    assert_int_equal(info.n_referrers, 1);
    assert_int_equal(qd_store_remove(f->s, &d), QD_EREFERENCED);
    assert_non_null(strstr(qd_error_last()->message, "referenced"));
    assert_true(qd_store_has(f->s, &d));
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK);
    assert_int_equal(fs.references, 1);
    assert_int_equal(qd_store_ref_del(f->s, &manifest, &d), QD_OK);
    assert_int_equal(qd_store_ref_del(f->s, &manifest, &d), QD_ENOTFOUND);
    assert_int_equal(qd_store_remove(f->s, &d), QD_OK);
    free(p);
}

static void test_store__wrong_expected_digest_stores_nothing(void **state)
{
    fixture *f = *state;
    size_t n = 3u << 20;
    uint8_t *p = random_bytes(&f->rng, n);
    qd_digest wrong, d;
    qd_store_stats st;
    qd_fsck_stats fs;
    memset(wrong.bytes, 0x11, 32);
    assert_int_equal(qd_store_put_buf(f->s, p, n, &wrong, &d), QD_EDIGEST);
    assert_non_null(strstr(qd_error_last()->message, "expected sha256:1111"));
    assert_int_equal(qd_store_stats_get(f->s, &st), QD_OK);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK);
    assert_int_equal(fs.garbage_chunks, 0); /* the abandoned chunks were dropped */
    /* with the right digest it goes in */
    qd_sha256_buf(&d, p, n);
    assert_int_equal(qd_store_put_buf(f->s, p, n, &d, NULL), QD_OK);
    free(p);
}

typedef struct short_src {
    tu_rng *r;
    size_t left;
} short_src;

static int short_read(void *buf, size_t cap, size_t *got, void *payload)
{
    short_src *s = payload;
    size_t n = cap < s->left ? cap : s->left;
    tu_fill(s->r, buf, n);
    s->left -= n;
    *got = n;
    return QD_OK;
}

static void test_store__truncated_or_overlong_stream_is_refused(void **state)
{
    fixture *f = *state;
    qd_put_options o = QD_PUT_OPTIONS_INIT;
    short_src src = {&f->rng, 5u << 20};
    qd_store_stats st;
    o.expect_size = 6u << 20;
    assert_int_equal(qd_store_put_cb(f->s, short_read, &src, &o, NULL), QD_ETRUNCATED);
    assert_non_null(strstr(qd_error_last()->message, "ended after"));
    src.left = 7u << 20;
    assert_int_equal(qd_store_put_cb(f->s, short_read, &src, &o, NULL), QD_EINVAL);
    assert_int_equal(qd_store_stats_get(f->s, &st), QD_OK);
    assert_int_equal(st.blobs, 0);
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, NULL), QD_OK);
}

static void test_store__missing_blob_is_not_found(void **state)
{
    fixture *f = *state;
    qd_digest d;
    qd_blob_info info;
    qd_blob_reader *r;
    membuf m = {NULL, 0, 0};
    memset(d.bytes, 7, 32);
    assert_false(qd_store_has(f->s, &d));
    assert_int_equal(qd_store_stat(f->s, &d, &info), QD_ENOTFOUND);
    assert_int_equal(qd_blob_reader_open(&r, f->s, &d), QD_ENOTFOUND);
    assert_int_equal(qd_store_get(f->s, &d, 0, UINT64_MAX, to_mem, &m), QD_ENOTFOUND);
    assert_int_equal(qd_store_remove(f->s, &d), QD_ENOTFOUND);
}

static void test_store__abandoned_writer_leaves_garbage_for_gc(void **state)
{
    fixture *f = *state;
    size_t n = 16u << 20; /* all but the last few MiB (held back for chunking) reach the store */
    uint8_t *p = random_bytes(&f->rng, n);
    qd_blob_writer *w1, *w2;
    qd_fsck_stats fs;
    qd_gc_stats gs;
    qd_store_options o = QD_STORE_OPTIONS_INIT;

    qd_store_close(f->s);
    o.batch_bytes = 1u << 20; /* flush chunks early so they reach the store */
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_OK);
    /* w2 in flight keeps w1's chunks from being dropped when w1 is abandoned */
    assert_int_equal(qd_blob_writer_open(&w2, f->s), QD_OK);
    assert_int_equal(qd_blob_writer_open(&w1, f->s), QD_OK);
    assert_int_equal(qd_blob_writer_write(w1, p, n), QD_OK);
    qd_blob_writer_free(w1);
    qd_blob_writer_free(w2);
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK); /* garbage is not a problem */
    assert_true(fs.garbage_chunks >= 2);
    assert_int_equal(qd_store_gc(f->s, &gs), QD_OK);
    assert_int_equal(gs.chunks_freed, fs.garbage_chunks);
    assert_true(gs.bytes_freed >= n / 2);
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_OK);
    assert_int_equal(fs.garbage_chunks, 0);
    free(p);
}

static void test_store__map_grows_and_a_full_map_is_a_clean_error(void **state)
{
    fixture *f = *state;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    char *dir = tu_sandbox();
    qd_store *s;
    size_t n = 24u << 20;
    uint8_t *p = random_bytes(&f->rng, n);
    qd_digest small, big;
    qd_store_stats st;

    o.flags = QD_STORE_CREATE;
    o.map_size = 1u << 20;
    o.batch_bytes = 4u << 20;
    assert_int_equal(qd_store_open(&s, dir, &o), QD_OK);
    assert_int_equal(qd_store_put_buf(s, p, n, NULL, &big), QD_OK); /* grew from 1 MiB */
    assert_int_equal(qd_store_stats_get(s, &st), QD_OK);
    assert_true(st.map_size >= n);
    qd_store_close(s);
    tu_rmtree(dir);

    o.map_max = 8u << 20;
    assert_int_equal(qd_store_open(&s, dir, &o), QD_OK);
    assert_int_equal(qd_store_put_buf(s, p, 1000, NULL, &small), QD_OK);
    assert_int_equal(qd_store_put_buf(s, p, n, NULL, &big), QD_EFULL);
    assert_non_null(strstr(qd_error_last()->message, "full"));
    assert_false(qd_store_has(s, &big));
    assert_reads_back(s, &small, p, 1000);
    assert_int_equal(qd_store_fsck(s, 0, NULL, NULL, NULL), QD_OK);
    qd_store_close(s);
    tu_rmtree(dir);
    free(dir);
    free(p);
}

static void test_store__bad_directories_are_refused(void **state)
{
    fixture *f = *state;
    char *dir = tu_sandbox(), path[600];
    qd_store *s;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    FILE *fp;
    (void)f;

    /* absent, without create */
    snprintf(path, sizeof(path), "%s/absent", dir);
    assert_int_equal(qd_store_open(&s, path, NULL), QD_ENOTFOUND);
    o.flags = QD_STORE_RDONLY | QD_STORE_CREATE;
    assert_int_equal(qd_store_open(&s, path, &o), QD_ENOTFOUND);
    /* a directory with other files */
    snprintf(path, sizeof(path), "%s/notes.txt", dir);
    fp = fopen(path, "w");
    fputs("hello", fp);
    fclose(fp);
    o.flags = QD_STORE_CREATE;
    assert_int_equal(qd_store_open(&s, dir, &o), QD_ENOTSTORE);
    assert_non_null(strstr(qd_error_last()->message, "not a quantd store"));
    /* a data.mdb that is not LMDB */
    unlink(path);
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    fp = fopen(path, "w");
    for (int i = 0; i < 4096; i++)
        fputc('x', fp);
    fclose(fp);
    assert_int_equal(qd_store_open(&s, dir, &o), QD_ENOTSTORE);
    /* the file is untouched */
    {
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 4096);
    }
    tu_rmtree(dir);
    free(dir);
}

static void test_store__newer_schema_is_refused(void **state)
{
    fixture *f = *state;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint32_t schema = QD_STORE_SCHEMA_VERSION + 1;
    MDB_val k = {6, "schema"}, v = {4, &schema};
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    uint8_t data[100] = {1};
    qd_digest d;

    assert_int_equal(qd_store_put_buf(f->s, data, sizeof(data), NULL, &d), QD_OK);
    qd_store_close(f->s);
    f->s = NULL;
    /* what a future quantd would write */
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_EVERSION);
    assert_non_null(strstr(qd_error_last()->message, "newer quantd"));
    o.flags = QD_STORE_RDONLY;
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_EVERSION);
    f->s = NULL;
}

static void test_store__second_writer_is_busy_readers_are_not(void **state)
{
    fixture *f = *state;
    qd_store *other = NULL;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    /* the lock is per open file description, so a second open in this process stands for another process */
    assert_int_equal(qd_store_open(&other, f->dir, &o), QD_EBUSY);
    assert_non_null(strstr(qd_error_last()->message, "another process"));
    assert_null(other);
}

static void test_store__fsck_finds_a_flipped_byte(void **state)
{
    fixture *f = *state;
    size_t n = 2u << 20;
    uint8_t *p = random_bytes(&f->rng, n);
    char path[600];
    int fd;
    struct stat st;
    uint8_t *map;
    qd_digest d;
    qd_fsck_stats fs;
    qd_store_options o = QD_STORE_OPTIONS_INIT;

    assert_int_equal(qd_store_put_buf(f->s, p, n, NULL, &d), QD_OK);
    qd_store_close(f->s);
    f->s = NULL;
    snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    fstat(fd, &st);
    map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    {
        uint8_t *hit = memmem(map, (size_t)st.st_size, p + n / 2, 64);
        assert_non_null(hit);
        hit[10] ^= 0x40;
    }
    munmap(map, (size_t)st.st_size);
    close(fd);
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_OK);
    assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &fs), QD_ECORRUPT);
    assert_int_equal(fs.problems, 2); /* the chunk's hash and its blob's digest */
    free(p);
}

static int walk(const qd_blob_info *info, void *payload)
{
    static qd_digest prev;
    int *count = payload;
    if (*count)
        assert_true(memcmp(prev.bytes, info->digest.bytes, 32) < 0);
    prev = info->digest;
    assert_int_equal(info->size, 10);
    (*count)++;
    return 0;
}

static void test_store__list_walks_every_blob_in_order(void **state)
{
    fixture *f = *state;
    qd_digest ds[5];
    int count = 0;
    for (int i = 0; i < 5; i++) {
        uint8_t b[10] = {(uint8_t)i};
        assert_int_equal(qd_store_put_buf(f->s, b, sizeof(b), NULL, &ds[i]), QD_OK);
    }
    assert_int_equal(qd_store_list(f->s, walk, &count), QD_OK);
    assert_int_equal(count, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store__put_get_sizes_around_chunk_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__ranges_read_the_right_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__fp16_weights_split_along_words_at_any_chunk_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__reader_hands_out_raw_chunks_without_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__same_blob_twice_is_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__insertion_at_start_keeps_chunks_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__remove_keeps_shared_chunks_and_frees_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__referenced_blob_cannot_be_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__wrong_expected_digest_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__truncated_or_overlong_stream_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__missing_blob_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__abandoned_writer_leaves_garbage_for_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__map_grows_and_a_full_map_is_a_clean_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__bad_directories_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__second_writer_is_busy_readers_are_not, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__fsck_finds_a_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__list_walks_every_blob_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store__reader_says_when_a_piece_is_decoded, setup, teardown),
    };
    tu_seed();
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
