/*
 * test_smoothquant.c - the runtime's W8A8 path and SmoothQuant (the real runtime on a small generated model with
 * activation outliers): the int8 dot is exact on every path, a W8A8 matmul is exactly (float)(xq . wq) * (xs * ws),
 * smoothing keeps the float function, smoothing beats plain W8A8 on outliers, and the compressed-tensors folder
 * reads back to the very bytes the runtime ran.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "testutil.h"
#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/smoothquant.h"

static qd_llama_model *outlier_model(void)
{
    qd_llama_config cfg = {.dim = 64, .hidden_dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
                           .vocab = 96, .seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                           .tied_output = true};
    qd_llama_model *m = NULL, *o = NULL;
    assert_int_equal(qd_llama_synthetic(&m, &cfg, 5), QD_OK);
    assert_int_equal(qd_llama_add_outliers(&o, m, 3, 64.0f, 9), QD_OK);
    qd_llama_free(m);
    return o;
}

static float *logits_of(const qd_llama_model *m, const qd_valset *set, int simd)
{
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.simd = simd;
    qd_llama_ctx *c = NULL;
    int n = (int)set->lens[0];
    float *l = qd_mallocarray((size_t)m->cfg.vocab * n, sizeof(float));
    assert_int_equal(qd_llama_ctx_new(&c, m, &co), QD_OK);
    assert_int_equal(qd_llama_eval(c, set->tokens, n, l, NULL), QD_OK);
    qd_llama_ctx_free(c);
    return l;
}

static void test_sq__int8_dot_exact(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    int8_t a[1000], b[1000];
    for (int n = 0; n <= 1000; n += (n < 70 ? 1 : 131)) {
        for (int i = 0; i < n; i++) {
            a[i] = (int8_t)((int)(tu_next(&r) % 255) - 127);
            b[i] = (int8_t)((int)(tu_next(&r) % 255) - 127);
        }
        if (n > 40) /* extremes: every product at +-127 * 127 */
            for (int i = 0; i < 40; i++) {
                a[i] = 127;
                b[i] = (int8_t)(i % 2 ? -127 : 127);
            }
        int64_t want = 0;
        for (int i = 0; i < n; i++)
            want += (int64_t)a[i] * b[i];
        assert_int_equal(qd_w8a8_dot(a, b, n, -1), want);
        assert_int_equal(qd_w8a8_dot(a, b, n, 0), want);
    }
    /* the activation quantizer: symmetric, scale max|x| / 127, ties to even, a zero row gives scale 0 */
    float x[4] = {1.0f, -0.5f, 0.25f, 127.0f / 254.0f}, z[3] = {0, 0, 0};
    int8_t q[4];
    float s = qd_w8a8_quantize_row(q, x, 4);
    assert_true(s == 1.0f / 127.0f);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -64); /* -63.5 to even */
    assert_int_equal(q[2], 32);  /* 31.75 */
    assert_int_equal(q[3], 64);  /* 63.5 to even */
    assert_true(qd_w8a8_quantize_row(q, z, 3) == 0.0f);
    assert_int_equal(q[0] | q[1] | q[2], 0);
}

typedef struct cap {
    float *x;
    int n, cols;
} cap;

static void grab_output_input(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w, const float *x,
                              int n)
{
    cap *c = user;
    (void)layer;
    if (site != QD_SITE_OUTPUT)
        return;
    c->x = qd_mallocarray((size_t)n * w->cols, sizeof(float));
    memcpy(c->x, x, sizeof(float) * (size_t)n * w->cols);
    c->n = n;
    c->cols = (int)w->cols;
}

/* A W8A8 classifier: the logits are exactly (float)(xq_p . wq_r) * (xs_p * ws_r), on the scalar and AVX2 paths */
static void test_sq__w8a8_matmul_exact(void **state)
{
    (void)state;
    qd_llama_model *m = outlier_model(), *w8 = NULL;
    qd_valset *set = NULL;
    assert_int_equal(qd_valset_sample(&set, m, 1, 20, 3, 1), QD_OK);
    assert_int_equal(qd_w8a8_quantize(&w8, m), QD_OK);
    assert_int_equal(w8->layers[1].w2.type, QD_TYPE_I8);
    assert_non_null(w8->layers[1].w2.row_scale);
    /* make the classifier W8A8 too: an untied output holding the embedding in int8 per row */
    int vocab = m->cfg.vocab, dim = m->cfg.dim;
    int8_t *wq = qd_malloc((size_t)vocab * dim);
    float *ws = qd_mallocarray((size_t)vocab, sizeof(float));
    const float *emb = m->tok_embd.data;
    for (int r = 0; r < vocab; r++)
        ws[r] = qd_w8a8_quantize_row(wq + (size_t)r * dim, emb + (size_t)r * dim, dim);
    w8->cfg.tied_output = false;
    w8->output = (qd_llama_tensor){QD_TYPE_I8, wq, vocab, dim, ws};
    for (int simd = -1; simd <= 0; simd++) {
        qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
        co.simd = simd;
        qd_llama_ctx *c = NULL;
        cap cp = {0};
        int n = (int)set->lens[0];
        float *lg = qd_mallocarray((size_t)vocab * n, sizeof(float));
        assert_int_equal(qd_llama_ctx_new(&c, w8, &co), QD_OK);
        qd_llama_ctx_set_observer(c, grab_output_input, &cp);
        assert_int_equal(qd_llama_eval(c, set->tokens, n, lg, NULL), QD_OK);
        assert_int_equal(cp.n, n);
        int8_t xq[64];
        for (int p = 0; p < n; p++) {
            float xs = qd_w8a8_quantize_row(xq, cp.x + (size_t)p * dim, dim);
            for (int r = 0; r < vocab; r++) {
                int32_t acc = 0;
                for (int j = 0; j < dim; j++)
                    acc += (int32_t)xq[j] * wq[(size_t)r * dim + j];
                float want = (float)acc * (xs * ws[r]);
                assert_true(lg[(size_t)p * vocab + r] == want);
            }
        }
        qd_free(cp.x);
        qd_free(lg);
        qd_llama_ctx_free(c);
    }
    w8->output = w8->tok_embd;
    w8->cfg.tied_output = true;
    qd_free(wq);
    qd_free(ws);
    qd_llama_free(w8);
    qd_valset_free(set);
    qd_llama_free(m);
}

/* smoothing is an identity before quantization, and it flattens the activation outliers */
static void test_sq__smoothing_is_identity(void **state)
{
    (void)state;
    qd_llama_model *m = outlier_model(), *s = NULL;
    qd_valset *cal = NULL, *val = NULL;
    assert_int_equal(qd_valset_sample(&cal, m, 4, 32, 21, 1), QD_OK);
    assert_int_equal(qd_valset_sample(&val, m, 1, 32, 22, 1), QD_OK);
    int64_t tokens = 0;
    assert_int_equal(qd_sq_smooth(&s, &tokens, m, cal, NULL), QD_OK);
    assert_int_equal(tokens, 4 * 32);
    float *a = logits_of(m, val, 0), *b = logits_of(s, val, 0);
    double d = 0, mx = 0;
    for (int i = 0; i < m->cfg.vocab * 32; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)a[i]));
    }
    assert_true(d <= 1e-4 * mx);
    qd_free(a);
    qd_free(b);
    /* max |x| over channels / median channel: much smaller after smoothing at the q/k/v input */
    qd_actstats *sa = NULL, *sb = NULL;
    assert_int_equal(qd_actstats_collect(&sa, m, cal, NULL), QD_OK);
    assert_int_equal(qd_actstats_collect(&sb, s, cal, NULL), QD_OK);
    const qd_actstats_entry *ea = qd_actstats_find(sa, "blk.0.attn_q.weight"),
                            *eb = qd_actstats_find(sb, "blk.0.attn_q.weight");
    float ma = 0, mb = 0, sum_a = 0, sum_b = 0;
    for (int j = 0; j < 64; j++) {
        ma = fmaxf(ma, ea->max_abs[j]);
        mb = fmaxf(mb, eb->max_abs[j]);
        sum_a += ea->max_abs[j];
        sum_b += eb->max_abs[j];
    }
    assert_true(mb / (sum_b / 64) < 0.5f * (ma / (sum_a / 64)));
    qd_sq_options o = QD_SQ_OPTIONS_INIT;
    o.alpha = 1.5;
    qd_llama_model *bad = NULL;
    assert_int_equal(qd_sq_smooth(&bad, NULL, m, cal, &o), QD_EINVAL);
    assert_int_equal(qd_sq_smooth(&bad, NULL, m, NULL, NULL), QD_EINVAL);
    qd_actstats_free(sa);
    qd_actstats_free(sb);
    qd_valset_free(cal);
    qd_valset_free(val);
    qd_llama_free(s);
    qd_llama_free(m);
}

/* on the outlier model, SmoothQuant W8A8 has a lower mean KLD than W8A8 without smoothing */
static void test_sq__beats_plain_w8a8(void **state)
{
    (void)state;
    qd_llama_model *m = outlier_model(), *s = NULL, *plain = NULL, *smooth = NULL;
    qd_valset *cal = NULL, *val = NULL;
    assert_int_equal(qd_valset_sample(&cal, m, 8, 32, 21, 1), QD_OK);
    assert_int_equal(qd_valset_sample(&val, m, 8, 32, 42, 1), QD_OK);
    assert_int_equal(qd_calib_check_disjoint(cal, val), QD_OK);
    assert_int_equal(qd_sq_smooth(&s, NULL, m, cal, NULL), QD_OK);
    assert_int_equal(qd_w8a8_quantize(&plain, m), QD_OK);
    assert_int_equal(qd_w8a8_quantize(&smooth, s), QD_OK);
    qd_validation_report *rp = NULL, *rs = NULL;
    assert_int_equal(qd_validate_run(&rp, m, plain, val, NULL), QD_OK);
    assert_int_equal(qd_validate_run(&rs, m, smooth, val, NULL), QD_OK);
    print_message("outlier model: W8A8 mean KLD %.6f, SmoothQuant W8A8 %.6f\n", rp->overall.mean, rs->overall.mean);
    assert_true(rs->overall.mean < 0.7 * rp->overall.mean);
    qd_validation_report_free(rp);
    qd_validation_report_free(rs);
    qd_valset_free(cal);
    qd_valset_free(val);
    qd_llama_free(smooth);
    qd_llama_free(plain);
    qd_llama_free(s);
    qd_llama_free(m);
}

/* the compressed-tensors W8A8 folder reads back to the bytes and scales the runtime ran, and runs the same logits */
static void test_sq__ct_folder_roundtrip(void **state)
{
    (void)state;
    char *dir = tu_sandbox();
    char out[600], path[700];
    snprintf(out, sizeof(out), "%s/w8a8", dir);
    qd_llama_model *m = outlier_model(), *s = NULL, *w8 = NULL, *back = NULL;
    qd_valset *cal = NULL;
    assert_int_equal(qd_valset_sample(&cal, m, 4, 32, 21, 1), QD_OK);
    assert_int_equal(qd_sq_smooth(&s, NULL, m, cal, NULL), QD_OK);
    assert_int_equal(qd_w8a8_quantize(&w8, s), QD_OK);
    assert_int_equal(qd_sq_export(s, out, "synthetic", "smoothquant"), QD_OK);
    assert_true(qd_calib_is_quant_folder(out));
    assert_int_equal(qd_llama_load_model(&back, out), QD_OK); /* through the runtime's loader */
    for (int i = 0; i < qd_llama_tensor_count(w8); i++) {
        const char *name;
        qd_llama_tensor *a = qd_llama_tensor_at(w8, i, &name), *b = qd_llama_tensor_at(back, i, NULL);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->rows, b->rows);
        assert_memory_equal(a->data, b->data, (size_t)a->rows * qd_row_size(a->type, a->cols));
        assert_true((a->row_scale == NULL) == (b->row_scale == NULL));
        if (a->row_scale)
            assert_memory_equal(a->row_scale, b->row_scale, sizeof(float) * (size_t)a->rows);
    }
    float *la = logits_of(w8, cal, 0), *lb = logits_of(back, cal, 0);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)m->cfg.vocab * cal->lens[0]);
    qd_free(la);
    qd_free(lb);
    /* the config vLLM reads */
    snprintf(path, sizeof(path), "%s/config.json", out);
    json_error_t je;
    json_t *c = json_load_file(path, 0, &je), *qc = json_object_get(c, "quantization_config");
    assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "compressed-tensors");
    assert_string_equal(json_string_value(json_object_get(qc, "format")), "int-quantized");
    json_t *g = json_object_get(json_object_get(qc, "config_groups"), "group_0");
    json_t *wcfg = json_object_get(g, "weights"), *acfg = json_object_get(g, "input_activations");
    assert_string_equal(json_string_value(json_object_get(wcfg, "strategy")), "channel");
    assert_int_equal(json_integer_value(json_object_get(wcfg, "num_bits")), 8);
    assert_true(json_is_true(json_object_get(acfg, "dynamic")));
    assert_string_equal(json_string_value(json_object_get(acfg, "strategy")), "token");
    /* a folder whose config does not fit its tensors is refused with a message, not run */
    json_object_set_new(c, "hidden_size", json_integer(32));
    assert_int_equal(json_dump_file(c, path, 0), 0);
    qd_llama_model *bad = NULL;
    assert_int_equal(qd_llama_load_model(&bad, out), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "shape"));
    assert_null(bad);
    json_decref(c);
    qd_llama_free(back);
    qd_llama_free(w8);
    qd_llama_free(s);
    qd_llama_free(m);
    qd_valset_free(cal);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sq__int8_dot_exact),
        cmocka_unit_test(test_sq__w8a8_matmul_exact),
        cmocka_unit_test(test_sq__smoothing_is_identity),
        cmocka_unit_test(test_sq__beats_plain_w8a8),
        cmocka_unit_test(test_sq__ct_folder_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
