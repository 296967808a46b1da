/*
 * test_calib.c - activation statistics through the runtime observer, checked against the forward pass computed by
 * hand for the first block's input, and the calibration set checks.
 */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "qd/alloc.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/gptq.h"

static qd_llama_model *small_model(void)
{
    qd_llama_config cfg = {.dim = 64, .hidden_dim = 96, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab = 80,
                           .seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_output = true};
    qd_llama_model *m = NULL;
    assert_int_equal(qd_llama_synthetic(&m, &cfg, 7), QD_OK);
    return m;
}

/* The first block's attention input is rmsnorm(embedding(token)) * attn_norm: independent of position and of
 * every other token, so its statistics can be computed without the runtime. */
static void test_layer0_matches_hand(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = NULL;
    assert_int_equal(qd_valset_sample(&set, m, 3, 17, 11, 1), QD_OK);
    qd_actstats *s = NULL;
    assert_int_equal(qd_actstats_collect(&s, m, set, NULL), QD_OK);
    assert_int_equal(qd_actstats_tokens(s), 3 * 17);
    const qd_actstats_entry *q = qd_actstats_find(s, "blk.0.attn_q.weight");
    const qd_actstats_entry *k = qd_actstats_find(s, "blk.0.attn_k.weight");
    assert_non_null(q);
    assert_non_null(k);
    assert_int_equal(q->cols, 64);
    int dim = m->cfg.dim;
    double want_sq[64] = {0}, want_abs[64] = {0};
    float want_max[64] = {0};
    const float *emb = m->tok_embd.data, *nw = m->layers[0].attn_norm.data;
    for (uint64_t t = 0; t < set->n_tokens; t++) {
        const float *e = emb + (size_t)set->tokens[t] * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)e[j] * e[j];
        double inv = 1.0 / sqrt(ss / dim + m->cfg.norm_eps);
        for (int j = 0; j < dim; j++) {
            double v = e[j] * inv * nw[j];
            want_sq[j] += v * v;
            want_abs[j] += fabs(v);
            if (fabs(v) > want_max[j])
                want_max[j] = (float)fabs(v);
        }
    }
    for (int j = 0; j < dim; j++) {
        assert_true(fabs(q->sum_sq[j] - want_sq[j]) <= 1e-4 * (want_sq[j] + 1e-6));
        assert_true(fabs(q->sum_abs[j] - want_abs[j]) <= 1e-4 * (want_abs[j] + 1e-6));
        assert_true(fabsf(q->max_abs[j] - want_max[j]) <= 1e-4f * (want_max[j] + 1e-6f));
        /* q, k and v see the same input */
        assert_true(q->sum_sq[j] == k->sum_sq[j]);
    }
    /* every weight matrix of every block was seen, with its input width */
    for (int l = 0; l < 2; l++) {
        char name[64];
        snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
        const qd_actstats_entry *d = qd_actstats_find(s, name);
        assert_non_null(d);
        assert_int_equal(d->cols, 96);
        assert_int_equal(d->n_rows, 3 * 17);
    }
    assert_null(qd_actstats_find(s, "blk.2.attn_q.weight"));
    qd_actstats_free(s);
    qd_valset_free(set);
    qd_llama_free(m);
}

static void test_bad_sets(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = NULL, *val = NULL;
    qd_actstats *s = NULL;
    assert_int_equal(qd_actstats_collect(&s, m, NULL, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "empty"));
    assert_int_equal(qd_valset_sample(&set, m, 2, 9, 3, 1), QD_OK);
    set->tokens[set->offs[1] + 4] = 80; /* out of the vocabulary */
    assert_int_equal(qd_actstats_collect(&s, m, set, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "out of range"));
    assert_null(s);
    set->tokens[set->offs[1] + 4] = 5;
    /* disjointness: another seed is disjoint, the same set is not */
    assert_int_equal(qd_valset_sample(&val, m, 2, 9, 4, 1), QD_OK);
    assert_int_equal(qd_calib_check_disjoint(set, val), QD_OK);
    assert_int_equal(qd_calib_check_disjoint(set, set), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "disjoint"));
    qd_valset_free(val);
    qd_valset_free(set);
    qd_llama_free(m);
}

/* Progress after every sequence, and a cancel asked after the second of four stops the collection there with
 * QD_ECANCELED and no statistics; without a cancel the same options collect all four. */
typedef struct calib_watch {
    uint32_t calls, last_done, last_total, cancel_after;
} calib_watch;

static void watch_progress(uint32_t done, uint32_t total, void *payload)
{
    calib_watch *w = payload;
    w->calls++;
    w->last_done = done;
    w->last_total = total;
}

static bool watch_cancel(void *payload)
{
    calib_watch *w = payload;
    return w->cancel_after && w->last_done >= w->cancel_after;
}

static void test_progress_and_cancel(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = NULL;
    qd_actstats *s = NULL;
    calib_watch w = {0, 0, 0, 2};
    qd_calib_options co = QD_CALIB_OPTIONS_INIT;
    co.n_threads = 1;
    co.progress = watch_progress;
    co.cancel = watch_cancel;
    co.payload = &w;
    assert_int_equal(qd_valset_sample(&set, m, 4, 9, 5, 1), QD_OK);
    assert_int_equal(qd_actstats_collect(&s, m, set, &co), QD_ECANCELED);
    assert_null(s);
    assert_int_equal(w.calls, 2);
    assert_non_null(strstr(qd_error_last()->message, "2 of 4"));
    w = (calib_watch){0, 0, 0, 0};
    assert_int_equal(qd_actstats_collect(&s, m, set, &co), QD_OK);
    assert_non_null(s);
    assert_int_equal(w.calls, 4);
    assert_int_equal(w.last_done, 4);
    assert_int_equal(w.last_total, 4);
    qd_actstats_free(s);
    qd_valset_free(set);
    qd_llama_free(m);
}

/* The calibration spec grammar: sample:N:LEN:SEED in decimal digits only; a path is not a spec; anything else
 * that starts like one is refused. And the classes the predicate accepts. */
static void test_spec_and_class(void **state)
{
    (void)state;
    unsigned long long n, len, seed;
    assert_int_equal(qd_calib_parse_sample("sample:8:32:7", &n, &len, &seed), 1);
    assert_true(n == 8 && len == 32 && seed == 7);
    assert_int_equal(qd_calib_parse_sample("sample:1:2:18446744073", &n, &len, &seed), 1);
    assert_int_equal(qd_calib_parse_sample("calib.qdvalset", &n, &len, &seed), 0);
    static const char *const bad[] = {"sample:",         "sample:8:32",    "sample: 8:32:7",
                                      "sample:+8:32:7",  "sample:-1:32:7", "sample:8:32:7x",
                                      "sample:8::7",     "sample:8:32:7:1", "sample:99999999999999999999:2:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (qd_calib_parse_sample(bad[i], &n, &len, &seed) != QD_EINVAL)
            fail_msg("%s was not refused", bad[i]);
    static const char *const good[] = {"none",         "generic-text",        "code",
                                       "multilingual", "domain:self-sampled", "domain:A.b_c-9"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(qd_calib_class_valid(good[i]));
    static const char *const nope[] = {"", "Code", "domain:", "domain:a b", "domain:x/y", "text"};
    for (size_t i = 0; i < sizeof(nope) / sizeof(nope[0]); i++)
        if (qd_calib_class_valid(nope[i]))
            fail_msg("class '%s' was accepted", nope[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer0_matches_hand),
        cmocka_unit_test(test_bad_sets),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_spec_and_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
