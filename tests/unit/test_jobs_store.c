/*
 * test_jobs_store.c - job records in the store (store/jobs.c): put/get/list, deduplicated submit, and the
 * one-transaction publish (blobs linked, manifests + tag, lineage edge, job record) that stores all or nothing.
 */
#include "testutil.h"

#include <string.h>

#include "qd/qd.h"
#include "qd/registry.h"

#include "store_fixture.h"

static int count(const char *id, const char *json, size_t len, void *payload)
{
    (void)id;
    assert_int_equal(strlen(json), len);
    (*(int *)payload)++;
    return 0;
}

static void test_jobs__put_get_list(void **state)
{
    fixture *f = *state;
    qd_buf b = QD_BUF_INIT(0);
    int n = 0;
    assert_int_equal(qd_job_put(f->s, "0123456789abcdef", "{\"state\":\"queued\"}"), QD_OK);
    assert_int_equal(qd_job_put(f->s, "fedcba9876543210", "{\"state\":\"done\"}"), QD_OK);
    assert_int_equal(qd_job_put(f->s, "0123456789abcdef", "{\"state\":\"running\"}"), QD_OK);
    assert_int_equal(qd_job_get(&b, f->s, "0123456789abcdef"), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "{\"state\":\"running\"}");
    assert_int_equal(qd_job_get(&b, f->s, "0000000000000000"), QD_ENOTFOUND);
    assert_int_equal(qd_job_get(&b, f->s, "../../etc"), QD_ENOTFOUND);
    assert_int_equal(qd_job_put(f->s, "XYZ", "{}"), QD_EINVAL);
    assert_int_equal(qd_job_list(f->s, count, &n), QD_OK);
    assert_int_equal(n, 2);
    qd_buf_dispose(&b);
}

static bool keep_unless_failed(const char *json, size_t len, void *payload)
{
    (void)len;
    (void)payload;
    return strstr(json, "failed") == NULL;
}

static void test_jobs__submit_dedup(void **state)
{
    fixture *f = *state;
    qd_digest d;
    char existing[QD_JOB_ID_LEN + 1];
    qd_sha256_buf(&d, "same request", 12);
    assert_int_equal(qd_job_submit(existing, f->s, &d, "aaaaaaaaaaaaaaaa", "{\"state\":\"queued\"}", keep_unless_failed,
                                   NULL), QD_OK);
    assert_int_equal(qd_job_submit(existing, f->s, &d, "bbbbbbbbbbbbbbbb", "{\"state\":\"queued\"}", keep_unless_failed,
                                   NULL), QD_EEXISTS);
    assert_string_equal(existing, "aaaaaaaaaaaaaaaa");
    /* the duplicate wrote nothing */
    {
        qd_buf b = QD_BUF_INIT(0);
        assert_int_equal(qd_job_get(&b, f->s, "bbbbbbbbbbbbbbbb"), QD_ENOTFOUND);
        qd_buf_dispose(&b);
    }
    /* once the first failed, an identical request makes a new job and the dedup key moves to it */
    assert_int_equal(qd_job_put(f->s, "aaaaaaaaaaaaaaaa", "{\"state\":\"failed\"}"), QD_OK);
    assert_int_equal(qd_job_submit(existing, f->s, &d, "cccccccccccccccc", "{\"state\":\"queued\"}", keep_unless_failed,
                                   NULL), QD_OK);
    assert_int_equal(qd_job_submit(existing, f->s, &d, "dddddddddddddddd", "{\"state\":\"queued\"}", keep_unless_failed,
                                   NULL), QD_EEXISTS);
    assert_string_equal(existing, "cccccccccccccccc");
}

static void test_jobs__publish_all_or_nothing(void **state)
{
    fixture *f = *state;
    uint8_t data[4096];
    qd_digest layer, parent, child, missing, got;
    const char *pm = "{\"parent\":1}", *cm = "{\"child\":1}";
    qd_manifest_desc pd = {0}, cd = {0};
    qd_publish_item item;
    qd_manifest_info info;
    qd_buf b = QD_BUF_INIT(0);

    tu_fill(&f->rng, data, sizeof(data));
    assert_int_equal(qd_store_put_buf(f->s, data, sizeof(data), NULL, &layer), QD_OK);
    assert_int_equal(qd_registry_blob_link(f->s, "org/m", &layer), QD_OK);
    pd.data = pm;
    pd.len = strlen(pm);
    pd.media_type = "application/vnd.oci.image.manifest.v1+json";
    pd.blobs = &layer;
    pd.n_blobs = 1;
    assert_int_equal(qd_registry_manifest_put(&parent, f->s, "org/m", "base", &pd, NULL), QD_OK);
    assert_int_equal(qd_job_put(f->s, "0123456789abcdef", "{\"state\":\"running\"}"), QD_OK);

    /* a variant manifest whose layer is not stored: nothing of the publish is visible */
    tu_fill(&f->rng, data, sizeof(data));
    qd_sha256_buf(&missing, data, sizeof(data));
    assert_int_equal(qd_store_put_buf(f->s, cm, strlen(cm), NULL, &child), QD_OK);
    cd = pd;
    cd.data = cm;
    cd.len = strlen(cm);
    cd.subject = &parent;
    cd.blobs = &missing;
    item = (qd_publish_item){&cd, child, "q8_0"};
    assert_int_equal(qd_registry_publish(f->s, "org/m", &missing, 1, &item, 1, &child, &parent, "0123456789abcdef",
                                         "{\"state\":\"done\"}"), QD_ENOTFOUND);
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", "q8_0"), QD_ENOTFOUND);
    assert_int_equal(qd_lineage_parent(&got, f->s, &child), QD_ENOTFOUND);
    assert_int_equal(qd_job_get(&b, f->s, "0123456789abcdef"), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "{\"state\":\"running\"}");

    /* with the layer stored it all lands together */
    assert_int_equal(qd_store_put_buf(f->s, data, sizeof(data), NULL, &missing), QD_OK);
    assert_int_equal(qd_registry_publish(f->s, "org/m", &missing, 1, &item, 1, &child, &parent, "0123456789abcdef",
                                         "{\"state\":\"done\"}"), QD_OK);
    assert_int_equal(qd_registry_manifest_get(&info, NULL, f->s, "org/m", "q8_0"), QD_OK);
    assert_true(qd_digest_equal(&info.digest, &child));
    assert_true(info.has_subject && qd_digest_equal(&info.subject, &parent));
    assert_true(qd_registry_blob_in_repo(f->s, "org/m", &missing));
    assert_int_equal(qd_lineage_parent(&got, f->s, &child), QD_OK);
    assert_true(qd_digest_equal(&got, &parent));
    qd_buf_clear(&b);
    assert_int_equal(qd_job_get(&b, f->s, "0123456789abcdef"), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "{\"state\":\"done\"}");
    qd_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobs__put_get_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs__submit_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs__publish_all_or_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
