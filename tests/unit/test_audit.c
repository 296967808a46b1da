/*
 * test_audit.c - the LMDB audit indexes (store/audit.c) on a real store: every query against a brute-force answer
 * over a seeded random set (with pagination), replacement and removal, lineage walks against a brute-force walk,
 * bad input, and a rebuild from real signed bundles that gives the same bytes as the incremental writes.
 */
#include "testutil.h"

#include "qd/audit.h"
#include "qd/qd.h"
#include "qd/registry.h"
#include "qd/verify.h"

#include "store_fixture.h"

#define N_RAND 400

static const char *METHODS[] = {"rtn", "k-quant", "gptq"};
static const char *FORMATS[] = {"Q4_0", "Q8_0", "Q4_K_M", "nf4"};
static const char *CALIBS[] = {"none", "code", "generic-text"};
static const char *CONVS[] = {"quantd", "llama-quantize"};
static const char *VERS[] = {"0.1.0", "0.2.0", "0.3.0"};
static const char *HWS[] = {"x86_64-avx2", "cuda-sm90", "arm64-neon"};
static const char *KEYS[] = {"aaaa", "bbbb", "cccc"};
static const char *VERDICTS[] = {"pass", "fail"};
static const char *REPOS[] = {"org/a", "org/b", "team/x/y", "orgx/c"};
static const int BITS[] = {4, 8};

#define PICK(rng, arr) (arr)[tu_next(rng) % (sizeof(arr) / sizeof((arr)[0]))]

static void rand_entry(tu_rng *r, qd_audit_entry *e)
{
    memset(e, 0, sizeof(*e));
    tu_fill(r, e->manifest.bytes, 32);
    e->created = 1000 + (int64_t)(tu_next(r) % 60); /* many share a second: ties order by digest */
    snprintf(e->repo, sizeof(e->repo), "%s", PICK(r, REPOS));
    snprintf(e->method, sizeof(e->method), "%s", PICK(r, METHODS));
    snprintf(e->format, sizeof(e->format), "%s", PICK(r, FORMATS));
    if (tu_next(r) % 5)
        snprintf(e->calibration, sizeof(e->calibration), "%s", PICK(r, CALIBS));
    snprintf(e->converter, sizeof(e->converter), "%s", PICK(r, CONVS));
    snprintf(e->converter_version, sizeof(e->converter_version), "%s", PICK(r, VERS));
    snprintf(e->verdict, sizeof(e->verdict), "%s", PICK(r, VERDICTS));
    e->bits = PICK(r, BITS);
    for (size_t i = 0; i < 3; i++)
        if (tu_next(r) % 2)
            snprintf(e->hardware[e->n_hardware++], QD_AUDIT_STR_MAX + 1, "%s", HWS[i]);
    e->n_keys = 1 + tu_next(r) % 2;
    snprintf(e->keys[0], QD_AUDIT_KEY_MAX + 1, "%s", PICK(r, KEYS));
    if (e->n_keys == 2)
        snprintf(e->keys[1], QD_AUDIT_KEY_MAX + 1, "%s", PICK(r, KEYS));
}

static bool in_list(const char (*list)[QD_AUDIT_STR_MAX + 1], size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], v))
            return true;
    return false;
}

static bool brute_match(const qd_audit_entry *e, const qd_audit_filter *f)
{
    bool key = !f->key;
    if ((f->method && strcmp(f->method, e->method)) || (f->format && strcmp(f->format, e->format)) ||
        (f->calibration && strcmp(f->calibration, e->calibration)) ||
        (f->converter && strcmp(f->converter, e->converter)) ||
        (f->converter_version && strcmp(f->converter_version, e->converter_version)) ||
        (f->verdict && strcmp(f->verdict, e->verdict)) || (f->bits && f->bits != e->bits))
        return false;
    if (f->hardware && !in_list(e->hardware, e->n_hardware, f->hardware))
        return false;
    for (size_t i = 0; i < e->n_keys && !key; i++)
        key = !strcmp(e->keys[i], f->key);
    if (!key)
        return false;
    if (f->namespace_name) {
        size_t n = strlen(f->namespace_name);
        if (strncmp(e->repo, f->namespace_name, n) || (e->repo[n] != '/' && e->repo[n] != 0))
            return false;
    }
    if (e->created < f->since || (f->until && e->created > f->until))
        return false;
    return true;
}

static int order(const void *a, const void *b)
{
    const qd_audit_entry *x = *(qd_audit_entry *const *)a, *y = *(qd_audit_entry *const *)b;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return memcmp(x->manifest.bytes, y->manifest.bytes, 32);
}

typedef struct collect {
    qd_digest d[N_RAND + 8];
    size_t n;
} collect;

static int collect_cb(const qd_audit_entry *e, void *payload)
{
    collect *c = payload;
    assert_true(c->n < N_RAND + 8);
    c->d[c->n++] = e->manifest;
    return 0;
}

/* Run f over every page (random page size); compare with the brute-force answer. */
static void check_query(fixture *f, qd_audit_entry *all, size_t n, qd_audit_filter *q)
{
    qd_audit_entry **want = calloc(n, sizeof(*want));
    size_t nw = 0;
    collect *got = calloc(1, sizeof(*got));
    char cursor[QD_AUDIT_CURSOR_LEN + 1] = "";
    qd_audit_page page;
    int pages = 0;
    for (size_t i = 0; i < n; i++)
        if (brute_match(&all[i], q))
            want[nw++] = &all[i];
    qsort(want, nw, sizeof(*want), order);
    q->limit = 1 + tu_next(&f->rng) % 40;
    do {
        q->cursor = cursor;
        assert_int_equal(qd_audit_index_query(&page, f->s, q, collect_cb, got), QD_OK);
        snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
        assert_true(page.returned <= q->limit);
        assert_true(++pages < 1000);
    } while (page.more);
    assert_int_equal(got->n, nw);
    for (size_t i = 0; i < nw; i++)
        assert_memory_equal(got->d[i].bytes, want[i]->manifest.bytes, 32);
    free(want);
    free(got);
}

static void test_audit__queries_match_brute_force(void **state)
{
    fixture *f = *state;
    qd_audit_entry *all = calloc(N_RAND, sizeof(*all));
    qd_audit_filter q;
    for (size_t i = 0; i < N_RAND; i++)
        rand_entry(&f->rng, &all[i]);
    /* half one by one, half in one transaction */
    for (size_t i = 0; i < N_RAND / 2; i++)
        assert_int_equal(qd_audit_index_put(f->s, &all[i]), QD_OK);
    assert_int_equal(qd_audit_index_put_many(f->s, all + N_RAND / 2, N_RAND - N_RAND / 2), QD_OK);

    /* no filter: everything in (created, digest) order */
    memset(&q, 0, sizeof(q));
    check_query(f, all, N_RAND, &q);
    for (int round = 0; round < 300; round++) {
        tu_rng *r = &f->rng;
        memset(&q, 0, sizeof(q));
#define MAYBE(field, arr)                                                                                              \
    if (tu_next(r) % 4 == 0)                                                                                           \
    q.field = PICK(r, arr)
        MAYBE(method, METHODS);
        MAYBE(format, FORMATS);
        MAYBE(calibration, CALIBS);
        MAYBE(converter, CONVS);
        MAYBE(converter_version, VERS);
        MAYBE(hardware, HWS);
        MAYBE(key, KEYS);
        MAYBE(verdict, VERDICTS);
        MAYBE(namespace_name, REPOS);
#undef MAYBE
        if (tu_next(r) % 6 == 0)
            q.namespace_name = tu_next(r) % 2 ? "org" : "team/x";
        if (tu_next(r) % 4 == 0)
            q.bits = PICK(r, BITS);
        if (tu_next(r) % 4 == 0)
            q.since = 1000 + (int64_t)(tu_next(r) % 60);
        if (tu_next(r) % 4 == 0)
            q.until = q.since + (int64_t)(tu_next(r) % 30) + (q.since ? 0 : 1000);
        check_query(f, all, N_RAND, &q);
    }
    /* a value nobody has */
    memset(&q, 0, sizeof(q));
    q.method = "awq";
    check_query(f, all, N_RAND, &q);
    free(all);
}

static void test_audit__replace_and_remove(void **state)
{
    fixture *f = *state;
    qd_audit_entry e, back;
    qd_audit_filter q;
    qd_audit_page page;
    collect *got = calloc(1, sizeof(*got));
    rand_entry(&f->rng, &e);
    snprintf(e.method, sizeof(e.method), "rtn");
    assert_int_equal(qd_audit_index_put(f->s, &e), QD_OK);
    /* indexed again with another method: the old key is gone */
    snprintf(e.method, sizeof(e.method), "gptq");
    assert_int_equal(qd_audit_index_put(f->s, &e), QD_OK);
    memset(&q, 0, sizeof(q));
    q.limit = 10;
    q.method = "rtn";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, collect_cb, got), QD_OK);
    assert_int_equal(got->n, 0);
    q.method = "gptq";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, collect_cb, got), QD_OK);
    assert_int_equal(got->n, 1);
    assert_string_equal(page.driver, "method");
    assert_int_equal(qd_audit_index_get(&back, f->s, &e.manifest), QD_OK);
    assert_string_equal(back.method, "gptq");
    assert_string_equal(back.repo, e.repo);
    assert_int_equal(back.n_keys, e.n_keys);
    assert_int_equal(qd_audit_index_remove(f->s, &e.manifest), QD_OK);
    assert_int_equal(qd_audit_index_remove(f->s, &e.manifest), QD_ENOTFOUND);
    got->n = 0;
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, collect_cb, got), QD_OK);
    assert_int_equal(got->n, 0);
    free(got);
}

/* ---- lineage ----------------------------------------------------------------------------------------------- */

#define N_LIN 120

typedef struct lin_ctx {
    qd_digest d[N_LIN + 1];
    unsigned depth[N_LIN + 1];
    size_t n;
} lin_ctx;

static int lin_cb(const qd_audit_node *node, void *payload)
{
    lin_ctx *c = payload;
    assert_true(c->n <= N_LIN);
    c->d[c->n] = node->digest;
    c->depth[c->n++] = node->depth;
    return 0;
}

/* Brute force: BFS depth of every node from start over parent[] (up) or children (down); -1 when unreached. */
static void brute_lineage(const qd_audit_entry *e, const int *parent, size_t n, size_t start, bool down,
                          unsigned depth, int *dist)
{
    bool changed = true;
    for (size_t i = 0; i < n; i++)
        dist[i] = -1;
    dist[start] = 0;
    while (changed) {
        changed = false;
        for (size_t i = 0; i < n; i++) {
            if (parent[i] < 0)
                continue;
            size_t from = down ? (size_t)parent[i] : i, to = down ? i : (size_t)parent[i];
            if (dist[from] >= 0 && dist[from] < (int)depth && (dist[to] < 0 || dist[to] > dist[from] + 1)) {
                dist[to] = dist[from] + 1;
                changed = true;
            }
        }
    }
    (void)e;
}

static void test_audit__lineage_matches_brute_force(void **state)
{
    fixture *f = *state;
    qd_audit_entry *e = calloc(N_LIN, sizeof(*e));
    int parent[N_LIN], dist[N_LIN];
    lin_ctx *c = calloc(1, sizeof(*c));
    bool trunc;
    /* a forest: each node's parent is an earlier node (or none) */
    for (size_t i = 0; i < N_LIN; i++) {
        rand_entry(&f->rng, &e[i]);
        parent[i] = i == 0 || tu_next(&f->rng) % 8 == 0 ? -1 : (int)(tu_next(&f->rng) % i);
        if (parent[i] >= 0) {
            e[i].has_source = true;
            e[i].source = e[parent[i]].manifest;
        }
        assert_int_equal(qd_audit_index_put(f->s, &e[i]), QD_OK);
    }
    for (int round = 0; round < 200; round++) {
        size_t start = tu_next(&f->rng) % N_LIN, want = 0;
        bool down = tu_next(&f->rng) % 2;
        unsigned depth = 1 + (unsigned)(tu_next(&f->rng) % 5);
        brute_lineage(e, parent, N_LIN, start, down, depth, dist);
        c->n = 0;
        assert_int_equal(qd_audit_index_lineage(&trunc, f->s, &e[start].manifest, down, depth, 0, lin_cb, c), QD_OK);
        assert_false(trunc);
        for (size_t i = 0; i < N_LIN; i++)
            want += dist[i] >= 0;
        assert_int_equal(c->n, want);
        assert_memory_equal(c->d[0].bytes, e[start].manifest.bytes, 32);
        for (size_t k = 0; k < c->n; k++) {
            size_t i;
            for (i = 0; i < N_LIN && memcmp(e[i].manifest.bytes, c->d[k].bytes, 32); i++)
                ;
            assert_true(i < N_LIN);
            assert_int_equal((int)c->depth[k], dist[i]);
        }
    }
    /* a source that is not itself indexed is still reached, and can start a walk */
    {
        qd_audit_entry x;
        qd_digest root;
        rand_entry(&f->rng, &x);
        tu_fill(&f->rng, root.bytes, 32);
        x.has_source = true;
        x.source = root;
        assert_int_equal(qd_audit_index_put(f->s, &x), QD_OK);
        c->n = 0;
        assert_int_equal(qd_audit_index_lineage(NULL, f->s, &root, true, 3, 0, lin_cb, c), QD_OK);
        assert_int_equal(c->n, 2);
        tu_fill(&f->rng, root.bytes, 32);
        assert_int_equal(qd_audit_index_lineage(NULL, f->s, &root, true, 3, 0, lin_cb, c), QD_ENOTFOUND);
    }
    free(e);
    free(c);
}

static int never(const qd_audit_entry *e, void *payload)
{
    (void)e;
    (void)payload;
    fail();
    return 0;
}

static void test_audit__bad_input(void **state)
{
    fixture *f = *state;
    qd_audit_filter q;
    qd_audit_page page;
    qd_digest d;
    memset(&q, 0, sizeof(q));
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL); /* limit 0 */
    q.limit = QD_AUDIT_LIMIT_MAX + 1;
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    q.limit = 10;
    q.cursor = "12.zz";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    q.cursor = "99999999999999999999.0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL); /* over 2^64 */
    q.cursor = "12.00000000000000000000000000000000000000000000000000000000000000000"; /* 65 digits */
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    q.cursor = "18446744073709551615.0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_OK); /* well formed: nothing after */
    assert_false(page.more);
    q.cursor = NULL;
    q.since = 10;
    q.until = 5;
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    q.since = q.until = 0;
    q.method = "";
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    q.method = NULL;
    q.bits = -1;
    assert_int_equal(qd_audit_index_query(&page, f->s, &q, never, NULL), QD_EINVAL);
    memset(d.bytes, 7, 32);
    assert_int_equal(qd_audit_index_lineage(NULL, f->s, &d, false, 0, 0, NULL, NULL), QD_EINVAL);
    assert_int_equal(qd_audit_index_lineage(NULL, f->s, &d, false, QD_AUDIT_DEPTH_MAX + 1, 0, NULL, NULL), QD_EINVAL);
    assert_int_equal(qd_audit_index_lineage(NULL, f->s, &d, false, 3, 0, NULL, NULL), QD_ENOTFOUND);
    /* bundles that are not variant statements */
    assert_int_equal(qd_audit_entry_from_bundle(&(qd_audit_entry){0}, "{}", 2), QD_EINVAL);
    assert_int_equal(qd_audit_entry_from_bundle(&(qd_audit_entry){0}, "not json", 8), QD_EINVAL);
}

/* ---- rebuild from real bundles --------------------------------------------------------------------------- */

static qd_digest put_blob(fixture *f, const char *repo, const void *data, size_t len)
{
    qd_digest d;
    assert_int_equal(qd_store_put_buf(f->s, data, len, NULL, &d), QD_OK);
    assert_int_equal(qd_registry_blob_link(f->s, repo, &d), QD_OK);
    return d;
}

static qd_digest put_man(fixture *f, const char *repo, const qd_digest *blobs, size_t n, const qd_digest *subject,
                         const char *atype, const qd_audit_entry *audit)
{
    char text[1024];
    qd_digest d;
    qd_manifest_desc m = {0};
    int len = snprintf(text, sizeof(text), "{\"schemaVersion\":2,\"n\":%llu}", (unsigned long long)tu_next(&f->rng));
    m.data = text;
    m.len = (size_t)len;
    m.media_type = "application/vnd.oci.image.manifest.v1+json";
    m.artifact_type = atype;
    m.subject = subject;
    m.blobs = blobs;
    m.n_blobs = n;
    m.audit = audit;
    assert_int_equal(qd_registry_manifest_put(&d, f->s, repo, NULL, &m, NULL), QD_OK);
    return d;
}

/* A signed bundle of a variant statement: returns its bytes in out. */
static void make_bundle(fixture *f, qd_key *key, qd_buf *out, const qd_digest *file, const qd_digest *source,
                        const char *method, const char *version)
{
    char pred[1024], ds[QD_DIGEST_STR_LEN + 1];
    qd_buf st = QD_BUF_INIT(0);
    qd_envelope *env = NULL;
    qd_subject subj = {"model.gguf", *file};
    (void)f;
    snprintf(pred, sizeof(pred),
             "{\"source\":{\"digest\":\"%s\"},\"recipe\":{\"method\":\"%s\",\"format\":\"Q4_0\",\"weight_bits\":4,"
             "\"symmetric\":true,\"seed\":0},\"calibration\":{\"class\":\"none\"},\"converter\":{\"name\":\"quantd\","
             "\"version\":\"%s\",\"build\":\"x\",\"kernel\":\"scalar\"},\"target_hardware\":[\"x86_64-avx2\"],"
             "\"validation\":{\"verdict\":\"pass\"},\"created_at\":\"2026-01-01T00:00:00Z\",\"builder\":\"t\"}",
             qd_digest_format(ds, source), method, version);
    assert_int_equal(qd_statement_build(&st, &subj, 1, QD_PREDICATE_VARIANT, pred), QD_OK);
    assert_int_equal(qd_envelope_new(&env, "application/vnd.in-toto+json", st.ptr, st.len), QD_OK);
    assert_int_equal(qd_envelope_sign(env, key), QD_OK);
    assert_int_equal(qd_envelope_write_bundle(out, env), QD_OK);
    qd_envelope_free(env);
    qd_buf_dispose(&st);
}

static void test_audit__rebuild_equals_incremental(void **state)
{
    fixture *f = *state;
    qd_key *key = NULL;
    qd_digest ck, inc, reb, prev;
    size_t indexed = 0, skipped = 0;
    const char *repo = "org/model";
    uint8_t w[64];
    assert_int_equal(qd_key_generate(&key, QD_KEY_ED25519), QD_OK);
    /* a checkpoint, then a chain of variants, each pushed as manifest + bundle referrer */
    tu_fill(&f->rng, w, sizeof(w));
    {
        qd_digest b[2] = {put_blob(f, repo, "{}", 2), put_blob(f, repo, w, sizeof(w))};
        ck = put_man(f, repo, b, 2, NULL, "application/vnd.cncf.model.manifest.v1+json", NULL);
    }
    prev = ck;
    for (int i = 0; i < 6; i++) {
        qd_buf bundle = QD_BUF_INIT(0);
        qd_audit_entry e;
        qd_digest vb[2], bb[2], var;
        tu_fill(&f->rng, w, sizeof(w));
        vb[0] = put_blob(f, repo, "{}", 2);
        vb[1] = put_blob(f, repo, w, sizeof(w));
        var = put_man(f, repo, vb, 2, &prev, "application/vnd.cncf.model.manifest.v1+json", NULL);
        make_bundle(f, key, &bundle, &vb[1], &prev, i % 2 ? "rtn" : "gptq", i < 3 ? "0.1.0" : "0.2.0");
        assert_int_equal(qd_audit_entry_from_bundle(&e, bundle.ptr, bundle.len), QD_OK);
        assert_int_equal(e.n_keys, 1);
        assert_string_equal(e.keys[0], qd_key_id(key));
        bb[0] = vb[0];
        bb[1] = put_blob(f, repo, bundle.ptr, bundle.len);
        put_man(f, repo, bb, 2, &var, QD_BUNDLE_MEDIA_TYPE, &e);
        qd_buf_dispose(&bundle);
        prev = var;
    }
    /* a bundle that is not a variant statement is stored but not indexed */
    {
        qd_digest bb[2] = {put_blob(f, repo, "{}", 2), put_blob(f, repo, "{\"x\":1}", 7)};
        put_man(f, repo, bb, 2, &ck, QD_BUNDLE_MEDIA_TYPE, NULL);
    }
    /* what did the key sign, what did 0.2.0 make: from the incremental index */
    {
        qd_audit_filter q;
        qd_audit_page page;
        collect *got = calloc(1, sizeof(*got));
        memset(&q, 0, sizeof(q));
        q.limit = 100;
        q.key = qd_key_id(key);
        assert_int_equal(qd_audit_index_query(&page, f->s, &q, collect_cb, got), QD_OK);
        assert_int_equal(got->n, 6);
        got->n = 0;
        q.key = NULL;
        q.converter_version = "0.2.0";
        assert_int_equal(qd_audit_index_query(&page, f->s, &q, collect_cb, got), QD_OK);
        assert_int_equal(got->n, 3);
        free(got);
    }
    /* lineage up from the last variant reaches the checkpoint at depth 6 */
    {
        lin_ctx *c = calloc(1, sizeof(*c));
        assert_int_equal(qd_audit_index_lineage(NULL, f->s, &prev, false, 16, 0, lin_cb, c), QD_OK);
        assert_int_equal(c->n, 7);
        assert_memory_equal(c->d[6].bytes, ck.bytes, 32);
        c->n = 0;
        assert_int_equal(qd_audit_index_lineage(NULL, f->s, &ck, true, 3, 0, lin_cb, c), QD_OK);
        assert_int_equal(c->n, 4);
        free(c);
    }
    assert_int_equal(qd_audit_index_checksum(&inc, f->s), QD_OK);
    assert_int_equal(qd_audit_index_rebuild(f->s, &indexed, &skipped), QD_OK);
    assert_int_equal(indexed, 6);
    assert_int_equal(skipped, 1);
    assert_int_equal(qd_audit_index_checksum(&reb, f->s), QD_OK);
    assert_memory_equal(inc.bytes, reb.bytes, 32);
    /* deleting a variant's bundle manifest drops its entry; a rebuild agrees again */
    {
        qd_audit_entry e;
        assert_int_equal(qd_audit_index_get(&e, f->s, &prev), QD_OK);
        assert_true(e.has_bundle);
        assert_int_equal(qd_registry_manifest_delete(f->s, repo, &e.bundle), QD_OK);
        assert_int_equal(qd_audit_index_get(&e, f->s, &prev), QD_ENOTFOUND);
        assert_int_equal(qd_audit_index_checksum(&inc, f->s), QD_OK);
        assert_int_equal(qd_audit_index_rebuild(f->s, &indexed, &skipped), QD_OK);
        assert_int_equal(indexed, 5);
        assert_int_equal(qd_audit_index_checksum(&reb, f->s), QD_OK);
        assert_memory_equal(inc.bytes, reb.bytes, 32);
    }
    qd_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_audit__queries_match_brute_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit__replace_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit__lineage_matches_brute_force, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit__bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit__rebuild_equals_incremental, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
