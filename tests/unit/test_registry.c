/*
 * test_registry.c - the registry records in the store: manifests, tags, referrers, repository membership,
 * references that keep layers alive, deletes, and tokens.
 */
#include "testutil.h"

#include "qd/qd.h"
#include "qd/registry.h"

#include "store_fixture.h"

/* A random blob, linked into repo. */
static qd_digest blob(fixture *f, const char *repo, size_t n)
{
    uint8_t *buf = malloc(n);
    qd_digest d;
    tu_fill(&f->rng, buf, n);
    assert_int_equal(qd_store_put_buf(f->s, buf, n, NULL, &d), QD_OK);
    free(buf);
    assert_int_equal(qd_registry_blob_link(f->s, repo, &d), QD_OK);
    return d;
}

/* A manifest document naming the blobs (its bytes only need to be unique here: the registry does not parse). */
static int put_manifest(fixture *f, qd_digest *out, const char *repo, const char *tag, const qd_digest *blobs,
                        size_t n, const qd_digest *subject, const char *atype)
{
    char text[4096];
    size_t len = 0;
    qd_manifest_desc m = {0};
    len += (size_t)snprintf(text + len, sizeof(text) - len, "{\"schemaVersion\":2,\"n\":%llu,\"layers\":[",
                            (unsigned long long)tu_next(&f->rng));
    for (size_t i = 0; i < n; i++) {
        char ds[QD_DIGEST_STR_LEN + 1];
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"%s\"", i ? "," : "",
                                qd_digest_format(ds, &blobs[i]));
    }
    len += (size_t)snprintf(text + len, sizeof(text) - len, "]}");
    m.data = text;
    m.len = len;
    m.media_type = "application/vnd.oci.image.manifest.v1+json";
    m.artifact_type = atype;
    m.annotations = subject ? "{\"k\":\"v\"}" : NULL;
    m.subject = subject;
    m.blobs = blobs;
    m.n_blobs = n;
    return qd_registry_manifest_put(out, f->s, repo, tag, &m, NULL);
}

static void test_registry__manifest_roundtrip_by_tag_and_digest(void **state)
{
    fixture *f = *state;
    qd_digest b[2] = {blob(f, "org/m", 1000), blob(f, "org/m", 300000)}, md;
    qd_manifest_info info;
    qd_buf bytes = QD_BUF_INIT(0);
    char ds[QD_DIGEST_STR_LEN + 1], again[QD_DIGEST_STR_LEN + 1];
    qd_digest check;

    assert_int_equal(put_manifest(f, &md, "org/m", "v1", b, 2, NULL, "application/vnd.cncf.model.manifest.v1+json"),
                     QD_OK);
    assert_int_equal(qd_registry_manifest_get(&info, &bytes, f->s, "org/m", "v1"), QD_OK);
    assert_true(qd_digest_equal(&info.digest, &md));
    assert_int_equal(info.size, bytes.len);
    assert_string_equal(info.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_string_equal(info.artifact_type, "application/vnd.cncf.model.manifest.v1+json");
    assert_false(info.has_subject);
    /* the bytes hash to the digest */
    assert_int_equal(qd_sha256_buf(&check, bytes.ptr, bytes.len), QD_OK);
    assert_true(qd_digest_equal(&check, &md));
    qd_buf_dispose(&bytes);
    /* by digest */
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", qd_digest_format(ds, &md)), QD_OK);
    assert_string_equal(qd_digest_format(again, &info.digest), ds);
    /* another repository does not hold it */
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/other", ds), QD_ENOTFOUND);
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", "v2"), QD_ENOTFOUND);
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", "sha256:12"), QD_EINVAL);
}

static void test_registry__missing_blob_refuses_and_stores_nothing(void **state)
{
    fixture *f = *state;
    qd_digest b[2] = {blob(f, "org/m", 100), blob(f, "org/elsewhere", 100)}, md;
    qd_store_stats before, after;
    assert_int_equal(qd_store_stats_get(f->s, &before), QD_OK);
    /* b[1] exists in the store, but not in org/m */
    assert_int_equal(put_manifest(f, &md, "org/m", "v1", b, 2, NULL, NULL), QD_ENOTFOUND);
    assert_non_null(strstr(qd_error_last()->message, "not in repository org/m"));
    assert_int_equal(qd_store_stats_get(f->s, &after), QD_OK);
    assert_int_equal(after.blobs, before.blobs); /* the manifest's own bytes were dropped again */
    assert_int_equal(qd_registry_manifest_get(NULL, NULL, f->s, "org/m", "v1"), QD_ENOTFOUND);
}

static void test_registry__digest_expectation(void **state)
{
    fixture *f = *state;
    qd_manifest_desc m = {0};
    qd_digest wrong = {{1}}, out;
    m.data = "{}";
    m.len = 2;
    m.media_type = "application/vnd.oci.image.manifest.v1+json";
    assert_int_equal(qd_registry_manifest_put(&out, f->s, "org/m", NULL, &m, &wrong), QD_EDIGEST);
    assert_int_equal(qd_sha256_buf(&wrong, "{}", 2), QD_OK);
    assert_int_equal(qd_registry_manifest_put(&out, f->s, "org/m", NULL, &m, &wrong), QD_OK);
    assert_true(qd_digest_equal(&out, &wrong));
}

static void test_registry__references_keep_layers(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/m", 5000), md;
    qd_blob_info bi;
    assert_int_equal(put_manifest(f, &md, "org/m", "v1", &b, 1, NULL, NULL), QD_OK);
    assert_int_equal(qd_store_stat(f->s, &b, &bi), QD_OK);
    assert_int_equal(bi.n_referrers, 1);
    assert_int_equal(qd_store_remove(f->s, &b), QD_EREFERENCED);
    assert_int_equal(qd_registry_blob_unlink(f->s, "org/m", &b), QD_EREFERENCED);
    /* deleting the manifest drops its tag and its references; then the blob can go */
    assert_int_equal(qd_registry_manifest_delete(f->s, "org/m", &md), QD_OK);
    assert_int_equal(qd_registry_manifest_get(NULL, NULL, f->s, "org/m", "v1"), QD_ENOTFOUND);
    assert_false(qd_store_has(f->s, &md)); /* its raw bytes too */
    assert_int_equal(qd_store_stat(f->s, &b, &bi), QD_OK);
    assert_int_equal(bi.n_referrers, 0);
    assert_int_equal(qd_registry_blob_unlink(f->s, "org/m", &b), QD_OK);
    assert_false(qd_store_has(f->s, &b));
    assert_int_equal(qd_registry_blob_unlink(f->s, "org/m", &b), QD_ENOTFOUND);
    {
        qd_fsck_stats st;
        assert_int_equal(qd_store_fsck(f->s, 0, NULL, NULL, &st), QD_OK);
        assert_int_equal(st.problems, 0);
    }
}

/* qd_registry_blob_held: a blob of a repository, a manifest's own bytes: held; a blob put into the store only: not. */
static void test_registry__blob_held(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/m", 3000), md, lone;
    uint8_t buf[2000];
    bool held = false;
    tu_fill(&f->rng, buf, sizeof(buf));
    assert_int_equal(qd_store_put_buf(f->s, buf, sizeof(buf), NULL, &lone), QD_OK);
    assert_int_equal(put_manifest(f, &md, "org/m", "v1", &b, 1, NULL, NULL), QD_OK);
    assert_int_equal(qd_registry_blob_held(&held, f->s, &b), QD_OK);
    assert_true(held);
    assert_int_equal(qd_registry_blob_held(&held, f->s, &md), QD_OK);
    assert_true(held);
    assert_int_equal(qd_registry_blob_held(&held, f->s, &lone), QD_OK);
    assert_false(held);
    /* once a repository links it, it is held */
    assert_int_equal(qd_registry_blob_link(f->s, "org/n", &lone), QD_OK);
    assert_int_equal(qd_registry_blob_held(&held, f->s, &lone), QD_OK);
    assert_true(held);
}

static void test_registry__shared_manifest_survives_one_repo(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/a", 100), md, md2;
    char ds[QD_DIGEST_STR_LEN + 1];
    qd_manifest_desc m = {0};
    char text[] = "{\"shared\":true}";
    assert_int_equal(qd_registry_blob_link(f->s, "org/b", &b), QD_OK);
    m.data = text;
    m.len = strlen(text);
    m.media_type = "application/vnd.oci.image.manifest.v1+json";
    m.blobs = &b;
    m.n_blobs = 1;
    assert_int_equal(qd_registry_manifest_put(&md, f->s, "org/a", "x", &m, NULL), QD_OK);
    assert_int_equal(qd_registry_manifest_put(&md2, f->s, "org/b", "y", &m, NULL), QD_OK);
    assert_true(qd_digest_equal(&md, &md2));
    assert_int_equal(qd_registry_manifest_delete(f->s, "org/a", &md), QD_OK);
    assert_int_equal(qd_registry_manifest_get(NULL, NULL, f->s, "org/b", qd_digest_format(ds, &md)), QD_OK);
    assert_int_equal(qd_registry_manifest_get(NULL, NULL, f->s, "org/a", ds), QD_ENOTFOUND);
    assert_int_equal(qd_store_remove(f->s, &b), QD_EREFERENCED); /* org/b's manifest still references it */
    /* org/a may drop the blob (its manifest is gone); org/b may not */
    assert_int_equal(qd_registry_blob_unlink(f->s, "org/a", &b), QD_OK);
    assert_true(qd_store_has(f->s, &b));
    assert_int_equal(qd_registry_blob_unlink(f->s, "org/b", &b), QD_EREFERENCED);
}

typedef struct tag_list {
    char tags[64][QD_TAG_MAX + 1];
    int n;
} tag_list;

static int collect_tag(const char *tag, const qd_digest *d, void *payload)
{
    tag_list *l = payload;
    (void)d;
    snprintf(l->tags[l->n++], QD_TAG_MAX + 1, "%s", tag);
    return 0;
}

static void test_registry__tags_pagination(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/m", 100), md;
    const char *names[] = {"v2", "alpha", "v10", "beta", "zeta", "a"};
    tag_list l;
    bool more;
    assert_int_equal(put_manifest(f, &md, "org/m", "v1", &b, 1, NULL, NULL), QD_OK);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        qd_manifest_desc m = {0};
        char text[64];
        snprintf(text, sizeof(text), "{\"i\":%zu}", i);
        m.data = text;
        m.len = strlen(text);
        m.media_type = "application/vnd.oci.image.manifest.v1+json";
        assert_int_equal(qd_registry_manifest_put(NULL, f->s, "org/m", names[i], &m, NULL), QD_OK);
    }
    /* a tag in a repository whose name is a prefix of this one must not show up */
    assert_int_equal(put_manifest(f, &md, "org/mm", "intruder", NULL, 0, NULL, NULL), QD_OK);
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_tags_list(&more, f->s, "org/m", NULL, 0, collect_tag, &l), QD_OK);
    assert_int_equal(l.n, 7);
    assert_false(more);
    assert_string_equal(l.tags[0], "a");
    assert_string_equal(l.tags[6], "zeta");
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_tags_list(&more, f->s, "org/m", NULL, 3, collect_tag, &l), QD_OK);
    assert_int_equal(l.n, 3);
    assert_true(more);
    assert_string_equal(l.tags[2], "beta");
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_tags_list(&more, f->s, "org/m", "beta", 3, collect_tag, &l), QD_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.tags[0], "v1");
    assert_string_equal(l.tags[1], "v10");
    assert_string_equal(l.tags[2], "v2");
    assert_true(more);
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_tags_list(&more, f->s, "org/m", "v2", 3, collect_tag, &l), QD_OK);
    assert_int_equal(l.n, 1);
    assert_false(more);
    assert_int_equal(qd_registry_tags_list(&more, f->s, "org/none", NULL, 0, collect_tag, &l), QD_ENOTFOUND);
    assert_true(qd_registry_repo_exists(f->s, "org/mm"));
    assert_false(qd_registry_repo_exists(f->s, "org"));
    assert_int_equal(qd_registry_tag_delete(f->s, "org/m", "alpha"), QD_OK);
    assert_int_equal(qd_registry_tag_delete(f->s, "org/m", "alpha"), QD_ENOTFOUND);
}

typedef struct ref_list {
    qd_digest d[8];
    char atype[8][QD_MEDIA_TYPE_MAX + 1];
    bool annotated[8];
    int n;
} ref_list;

static int collect_ref(const qd_manifest_info *info, void *payload)
{
    ref_list *l = payload;
    l->d[l->n] = info->digest;
    snprintf(l->atype[l->n], QD_MEDIA_TYPE_MAX + 1, "%s", info->artifact_type);
    l->annotated[l->n] = info->annotations && !strcmp(info->annotations, "{\"k\":\"v\"}");
    l->n++;
    return 0;
}

static void test_registry__referrers(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/m", 100), base, sig, var, other;
    ref_list l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(put_manifest(f, &base, "org/m", "base", &b, 1, NULL, NULL), QD_OK);
    /* nothing refers to it yet: no callback, no error */
    assert_int_equal(qd_registry_referrers(f->s, "org/m", &base, NULL, collect_ref, &l), QD_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(put_manifest(f, &sig, "org/m", NULL, &b, 1, &base, "application/vnd.dev.sigstore.bundle.v0.3+json"),
                     QD_OK);
    assert_int_equal(put_manifest(f, &var, "org/m", "q4", &b, 1, &base, "application/vnd.cncf.model.manifest.v1+json"),
                     QD_OK);
    /* a subject may be absent (pushed before its subject) */
    assert_int_equal(put_manifest(f, &other, "org/m", NULL, &b, 1, &b, "x/y"), QD_OK);
    assert_int_equal(qd_registry_referrers(f->s, "org/m", &base, NULL, collect_ref, &l), QD_OK);
    assert_int_equal(l.n, 2);
    assert_true(l.annotated[0] && l.annotated[1]);
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_referrers(f->s, "org/m", &base, "application/vnd.dev.sigstore.bundle.v0.3+json",
                                           collect_ref, &l),
                     QD_OK);
    assert_int_equal(l.n, 1);
    assert_true(qd_digest_equal(&l.d[0], &sig));
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_referrers(f->s, "org/x", &base, NULL, collect_ref, &l), QD_OK);
    assert_int_equal(l.n, 0);
    /* deleting a referrer removes it from the index */
    assert_int_equal(qd_registry_manifest_delete(f->s, "org/m", &sig), QD_OK);
    memset(&l, 0, sizeof(l));
    assert_int_equal(qd_registry_referrers(f->s, "org/m", &base, NULL, collect_ref, &l), QD_OK);
    assert_int_equal(l.n, 1);
    assert_true(qd_digest_equal(&l.d[0], &var));
    {
        qd_registry_stats rs;
        assert_int_equal(qd_registry_stats_get(&rs, f->s), QD_OK);
        assert_int_equal(rs.manifests, 3);
        assert_int_equal(rs.tags, 2);
    }
}

static int count_tok(const qd_token_info *t, void *payload)
{
    (void)t;
    (*(int *)payload)++;
    return 0;
}

static void test_registry__tokens(void **state)
{
    fixture *f = *state;
    char tok[QD_TOKEN_LEN + 1], tok2[QD_TOKEN_LEN + 1], bad[QD_TOKEN_LEN + 1];
    qd_token_info info, got;
    int n = 0;
    assert_int_equal(qd_registry_token_create(tok, &info, f->s, "ci", "push:org/*"), QD_OK);
    assert_int_equal(strlen(tok), QD_TOKEN_LEN);
    assert_int_equal(strncmp(tok, "qdt_", 4), 0);
    assert_int_equal(qd_registry_token_create(tok2, NULL, f->s, "r", "pull:*"), QD_OK);
    assert_string_not_equal(tok, tok2);
    assert_int_equal(qd_registry_token_lookup(&got, f->s, tok), QD_OK);
    assert_string_equal(got.id, info.id);
    assert_string_equal(got.scopes, "push:org/*");
    assert_string_equal(got.name, "ci");
    memcpy(bad, tok, sizeof(bad));
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    assert_int_equal(qd_registry_token_lookup(&got, f->s, bad), QD_ENOTFOUND);
    assert_int_equal(qd_registry_token_lookup(&got, f->s, "qdt_short"), QD_ENOTFOUND);
    assert_int_equal(qd_registry_token_list(f->s, count_tok, &n), QD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(qd_registry_token_revoke(f->s, "xyz"), QD_EINVAL);
    assert_int_equal(qd_registry_token_revoke(f->s, info.id), QD_OK);
    assert_int_equal(qd_registry_token_lookup(&got, f->s, tok), QD_ENOTFOUND);
    assert_int_equal(qd_registry_token_lookup(&got, f->s, tok2), QD_OK);
    assert_int_equal(qd_registry_token_revoke(f->s, info.id), QD_ENOTFOUND);
}

static void test_registry__scopes(void **state)
{
    (void)state;
    assert_int_equal(qd_token_scopes_validate("pull:*"), QD_OK);
    assert_int_equal(qd_token_scopes_validate("push:org/*,admin:ops/x"), QD_OK);
    assert_int_equal(qd_token_scopes_validate("fly:*"), QD_EINVAL);
    assert_int_equal(qd_token_scopes_validate("pull"), QD_EINVAL);
    assert_int_equal(qd_token_scopes_validate("pull:"), QD_EINVAL);
    assert_int_equal(qd_token_scopes_validate(""), QD_EINVAL);
    assert_true(qd_token_scopes_allow("push:org/*", "org/a/b", QD_TOKEN_SCOPE_PUSH));
    assert_true(qd_token_scopes_allow("push:org/*", "org/a", QD_TOKEN_SCOPE_PULL)); /* push implies pull */
    assert_false(qd_token_scopes_allow("push:org/*", "other/a", QD_TOKEN_SCOPE_PULL));
    assert_false(qd_token_scopes_allow("pull:org/*", "org/a", QD_TOKEN_SCOPE_PUSH));
    assert_true(qd_token_scopes_allow("pull:x,admin:*", "any/thing", QD_TOKEN_SCOPE_PUSH));
    assert_true(qd_token_scopes_allow("pull:org/m", NULL, QD_TOKEN_SCOPE_PULL));
    assert_false(qd_token_scopes_allow("pull:org/m", "org/mm", QD_TOKEN_SCOPE_PULL));
}

static void test_registry__name_and_tag_grammar(void **state)
{
    const char *good[] = {"a", "org/model", "a.b/c_d/e__f/g--h", "x0/y1/z2", "a-b-c", "a---b", "0"};
    const char *bad[] = {"", "A", "org/", "/org", "org//m", "-a", "a-", "a_", "a___b", "a..b", "a._b", "org/../x",
                         "org/./x", "a%2fb", "a b", "a\\b", "org/M"};
    char long_name[300];
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(qd_registry_name_valid(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (qd_registry_name_valid(bad[i]))
            fail_msg("name '%s' was accepted", bad[i]);
    }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    assert_false(qd_registry_name_valid(long_name));
    long_name[QD_REPO_MAX] = 0;
    assert_true(qd_registry_name_valid(long_name));
    assert_true(qd_registry_tag_valid("v1"));
    assert_true(qd_registry_tag_valid("_x.Y-z"));
    assert_true(qd_registry_tag_valid("Q4_K_M"));
    assert_false(qd_registry_tag_valid("-v1"));
    assert_false(qd_registry_tag_valid(".v1"));
    assert_false(qd_registry_tag_valid("v:1"));
    assert_false(qd_registry_tag_valid("v/1"));
    assert_false(qd_registry_tag_valid(""));
    memset(long_name, 'a', 129);
    long_name[129] = 0;
    assert_false(qd_registry_tag_valid(long_name));
    long_name[128] = 0;
    assert_true(qd_registry_tag_valid(long_name));
}

static void test_registry__survives_reopen(void **state)
{
    fixture *f = *state;
    qd_digest b = blob(f, "org/m", 100), md;
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    qd_manifest_info info;
    assert_int_equal(put_manifest(f, &md, "org/m", "keep", &b, 1, NULL, NULL), QD_OK);
    qd_store_close(f->s);
    o.flags = QD_STORE_RDONLY;
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_OK);
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", "keep"), QD_OK);
    assert_true(qd_digest_equal(&info.digest, &md));
    assert_true(qd_registry_blob_in_repo(f->s, "org/m", &b));
    /* read-only: writes are refused, nothing changes */
    assert_int_equal(qd_registry_tag_delete(f->s, "org/m", "keep"), QD_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry__manifest_roundtrip_by_tag_and_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__missing_blob_refuses_and_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__digest_expectation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__references_keep_layers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__shared_manifest_survives_one_repo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__blob_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__tags_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__referrers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry__tokens, setup, teardown),
        cmocka_unit_test(test_registry__scopes),
        cmocka_unit_test(test_registry__name_and_tag_grammar),
        cmocka_unit_test_setup_teardown(test_registry__survives_reopen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
