/*
 * test_loggit.c - the server side of git's upload-pack for the log (log/upload.c), driven with hand-made
 * protocol requests: the advertisement, a full pack, the negotiation (ACK common / ready / NAK, no-done), a pack
 * that excludes what the client has, gzip bodies, and malformed or unsupported requests. The stock-git and libgit2
 * clients are exercised against the daemon in tests/integration/711_log_git_http.sh.
 */
#include "testutil.h"

#include <zlib.h>

#include "qd/qd.h"
#include "qd/replog.h"
#include "qd/verify.h"

typedef struct fx {
    char *dir;
    char logdir[600];
    char oid[4][41]; /* commits of entries 0..3 */
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    qd_replog *log = NULL;
    qd_key *k = NULL;
    f->dir = tu_sandbox();
    snprintf(f->logdir, sizeof(f->logdir), "%s/log.git", f->dir);
    assert_int_equal(qd_key_generate(&k, QD_KEY_ED25519), QD_OK);
    assert_int_equal(qd_replog_init(&log, f->logdir, "test/log"), QD_OK);
    for (int i = 0; i < 4; i++) {
        qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
        char name[64];
        snprintf(name, sizeof(name), "org/m:t%d", i);
        e.kind = QD_REPLOG_TAG;
        e.name = name;
        e.manifest.bytes[0] = (uint8_t)i;
        e.time = 1700000000 + i;
        assert_int_equal(qd_replog_append(log, NULL, k, &e, NULL), QD_OK);
        snprintf(f->oid[i], sizeof(f->oid[i]), "%s", qd_replog_head(log));
    }
    qd_replog_free(log);
    qd_key_free(k);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void pkt(qd_buf *b, const char *line)
{
    assert_int_equal(qd_buf_printf(b, "%04zx%s", strlen(line) + 4, line), QD_OK);
}

/* Split a response into its pkt-lines (text) and the side-band-1 pack bytes. */
typedef struct resp {
    char lines[16][128];
    size_t n_lines;
    qd_buf pack;
} resp;

static void parse(resp *r, const qd_buf *b)
{
    size_t i = 0;
    memset(r, 0, sizeof(*r));
    qd_buf_init(&r->pack, 0);
    while (i + 4 <= b->len) {
        char h[5];
        unsigned long n;
        memcpy(h, b->ptr + i, 4);
        h[4] = 0;
        n = strtoul(h, NULL, 16);
        if (n == 0) {
            i += 4;
            continue;
        }
        assert_true(n >= 5 && i + n <= b->len);
        if (b->ptr[i + 4] == 1)
            assert_int_equal(qd_buf_put(&r->pack, b->ptr + i + 5, n - 5), QD_OK);
        else if (b->ptr[i + 4] != 2) {
            assert_true(r->n_lines < 16);
            snprintf(r->lines[r->n_lines++], 128, "%.*s", (int)(n - 4), b->ptr + i + 4);
        }
        i += n;
    }
    assert_int_equal(i, b->len);
}

static uint32_t pack_objects(const resp *r)
{
    const uint8_t *p = (const uint8_t *)r->pack.ptr;
    assert_true(r->pack.len >= 32);
    assert_memory_equal(p, "PACK", 4);
    return (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
}

static void test_loggit_advertise(void **state)
{
    fx *f = *state;
    qd_buf b = QD_BUF_INIT(0);
    char want[200];
    assert_int_equal(qd_replog_git_advertise(&b, f->logdir), QD_OK);
    assert_memory_equal(b.ptr, "001e# service=git-upload-pack\n0000", 34);
    snprintf(want, sizeof(want), "%s HEAD", f->oid[3]);
    assert_non_null(memmem(b.ptr, b.len, want, strlen(want)));
    assert_non_null(memmem(b.ptr, b.len, "multi_ack_detailed", 18));
    assert_non_null(memmem(b.ptr, b.len, "side-band-64k", 13));
    assert_non_null(memmem(b.ptr, b.len, "no-done", 7));
    snprintf(want, sizeof(want), "%s refs/heads/main\n0000", f->oid[3]);
    assert_int_equal(b.len - strlen(want) - 4, (size_t)(memmem(b.ptr, b.len, want, strlen(want)) - (void *)b.ptr) - 4);
    qd_buf_dispose(&b);
    assert_int_equal(qd_replog_git_advertise(&b, "/nonexistent/log.git"), QD_ENOTFOUND);
    qd_buf_dispose(&b);
}

static void test_loggit_full_and_incremental(void **state)
{
    fx *f = *state;
    qd_buf req = QD_BUF_INIT(0), out = QD_BUF_INIT(0);
    char line[200];
    resp r;
    uint32_t full;
    /* a clone: want, flush, done -> NAK and every object */
    snprintf(line, sizeof(line), "want %s multi_ack_detailed side-band-64k ofs-delta no-done\n", f->oid[3]);
    pkt(&req, line);
    qd_buf_puts(&req, "0000");
    pkt(&req, "done\n");
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_OK);
    parse(&r, &out);
    assert_int_equal(r.n_lines, 1);
    assert_string_equal(r.lines[0], "NAK\n");
    full = pack_objects(&r);
    assert_true(full >= 4 * 3); /* per entry at least a commit, trees and a blob */
    qd_buf_dispose(&r.pack);

    /* a negotiation round: have entry 1 (known), have an unknown commit, flush -> common, ready, NAK, and with
     * no-done the final ACK and a pack of entries 2..3 only */
    qd_buf_clear(&req);
    qd_buf_clear(&out);
    pkt(&req, line);
    qd_buf_puts(&req, "0000");
    snprintf(line, sizeof(line), "have %s\n", f->oid[1]);
    pkt(&req, line);
    pkt(&req, "have 1111111111111111111111111111111111111111\n");
    qd_buf_puts(&req, "0000");
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_OK);
    parse(&r, &out);
    assert_int_equal(r.n_lines, 4);
    snprintf(line, sizeof(line), "ACK %s common\n", f->oid[1]);
    assert_string_equal(r.lines[0], line);
    snprintf(line, sizeof(line), "ACK %s ready\n", f->oid[1]);
    assert_string_equal(r.lines[1], line);
    assert_string_equal(r.lines[2], "NAK\n");
    snprintf(line, sizeof(line), "ACK %s\n", f->oid[1]);
    assert_string_equal(r.lines[3], line);
    assert_true(pack_objects(&r) < full);
    assert_true(pack_objects(&r) >= 2);
    qd_buf_dispose(&r.pack);

    /* without no-done a round ends after NAK (stateless): no pack until "done" */
    qd_buf_clear(&req);
    qd_buf_clear(&out);
    snprintf(line, sizeof(line), "want %s multi_ack_detailed side-band-64k\n", f->oid[3]);
    pkt(&req, line);
    qd_buf_puts(&req, "0000");
    snprintf(line, sizeof(line), "have %s\n", f->oid[2]);
    pkt(&req, line);
    qd_buf_puts(&req, "0000");
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_OK);
    parse(&r, &out);
    assert_int_equal(r.n_lines, 3);
    assert_int_equal(r.pack.len, 0);
    qd_buf_dispose(&r.pack);
    qd_buf_dispose(&req);
    qd_buf_dispose(&out);
}

static void test_loggit_gzip_and_bad_requests(void **state)
{
    fx *f = *state;
    qd_buf req = QD_BUF_INIT(0), out = QD_BUF_INIT(0);
    char line[200];
    uint8_t gz[4096];
    z_stream z;
    resp r;
    snprintf(line, sizeof(line), "want %s side-band-64k\n", f->oid[3]);
    pkt(&req, line);
    qd_buf_puts(&req, "0000");
    snprintf(line, sizeof(line), "have %s\n", f->oid[2]);
    pkt(&req, line);
    pkt(&req, "done\n");
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (uint8_t *)req.ptr;
    z.avail_in = (uInt)req.len;
    z.next_out = gz;
    z.avail_out = sizeof(gz);
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, gz, sizeof(gz) - z.avail_out, true), QD_OK);
    deflateEnd(&z);
    parse(&r, &out);
    snprintf(line, sizeof(line), "ACK %s\n", f->oid[2]); /* plain (no multi_ack): one ACK, none after done */
    assert_int_equal(r.n_lines, 1);
    assert_string_equal(r.lines[0], line);
    assert_true(pack_objects(&r) >= 1);
    qd_buf_dispose(&r.pack);

    qd_buf_clear(&out);
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, "zzzz", 4, false), QD_EINVAL);
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, "garbage", 7, true), QD_EINVAL);
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, "0000", 4, false), QD_EINVAL); /* no want */
    qd_buf_clear(&req);
    pkt(&req, "want 2222222222222222222222222222222222222222\n");
    qd_buf_puts(&req, "0000");
    pkt(&req, "done\n");
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_ENOTFOUND);
    qd_buf_clear(&req);
    snprintf(line, sizeof(line), "want %s\n", f->oid[3]);
    pkt(&req, line);
    pkt(&req, "deepen 1\n");
    qd_buf_puts(&req, "0000");
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_EUNSUPPORTED);
    qd_buf_clear(&req);
    qd_buf_puts(&req, "00ffwant"); /* a length past the end */
    assert_int_equal(qd_replog_git_upload_pack(&out, f->logdir, req.ptr, req.len, false), QD_EINVAL);
    qd_buf_dispose(&req);
    qd_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loggit_advertise, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_loggit_full_and_incremental, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_loggit_gzip_and_bad_requests, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
