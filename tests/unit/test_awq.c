/*
 * test_awq.c - AWQ on a small generated model with activation outliers (the real runtime, the real kernels):
 * folding keeps the float function, the search never loses to round to nearest and wins where outliers are,
 * the AutoAWQ packing round-trips, and the AutoAWQ folder reads back to exactly the values the runtime ran.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/calib.h"
#include "qd/err.h"
#include "qd/hfquant.h"

static qd_llama_model *outlier_model(int n_kv_heads)
{
    qd_llama_config cfg = {.dim = 64, .hidden_dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = n_kv_heads,
                           .vocab = 96, .seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f,
                           .tied_output = true};
    qd_llama_model *m = NULL, *o = NULL;
    assert_int_equal(qd_llama_synthetic(&m, &cfg, 5), QD_OK);
    assert_int_equal(qd_llama_add_outliers(&o, m, 3, 32.0f, 9), QD_OK);
    qd_llama_free(m);
    return o;
}

static double max_logit_diff(const qd_llama_model *a, const qd_llama_model *b, const qd_valset *set, double *scale)
{
    qd_llama_ctx *ca = NULL, *cb = NULL;
    int vocab = a->cfg.vocab, n = (int)set->lens[0];
    float *la = qd_mallocarray((size_t)vocab * n, sizeof(float)), *lb = qd_mallocarray((size_t)vocab * n, 4);
    assert_int_equal(qd_llama_ctx_new(&ca, a, NULL), QD_OK);
    assert_int_equal(qd_llama_ctx_new(&cb, b, NULL), QD_OK);
    assert_int_equal(qd_llama_eval(ca, set->tokens, n, la, NULL), QD_OK);
    assert_int_equal(qd_llama_eval(cb, set->tokens, n, lb, NULL), QD_OK);
    double d = 0, mx = 0;
    for (int i = 0; i < vocab * n; i++) {
        d = fmax(d, fabs((double)la[i] - lb[i]));
        mx = fmax(mx, fabs((double)la[i]));
    }
    *scale = mx;
    qd_free(la);
    qd_free(lb);
    qd_llama_ctx_free(ca);
    qd_llama_ctx_free(cb);
    return d;
}

/* the outlier model computes what the model it came from computes; activations really have outliers */
static void test_awq__outlier_model_same_function(void **state)
{
    (void)state;
    qd_llama_config cfg = {.dim = 64, .hidden_dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab = 96,
                           .seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_output = true};
    qd_llama_model *m = NULL, *o = NULL;
    qd_valset *set = NULL;
    assert_int_equal(qd_llama_synthetic(&m, &cfg, 5), QD_OK);
    assert_int_equal(qd_llama_add_outliers(&o, m, 3, 32.0f, 9), QD_OK);
    assert_int_equal(qd_valset_sample(&set, m, 4, 32, 1, 1), QD_OK);
    double scale, d = max_logit_diff(m, o, set, &scale);
    assert_true(d <= 1e-4 * scale);
    qd_actstats *a = NULL, *b = NULL;
    assert_int_equal(qd_actstats_collect(&a, m, set, NULL), QD_OK);
    assert_int_equal(qd_actstats_collect(&b, o, set, NULL), QD_OK);
    const qd_actstats_entry *ea = qd_actstats_find(a, "blk.1.ffn_gate.weight"),
                            *eb = qd_actstats_find(b, "blk.1.ffn_gate.weight");
    float ma = 0, mb = 0;
    for (int j = 0; j < 64; j++) {
        ma = fmaxf(ma, ea->max_abs[j]);
        mb = fmaxf(mb, eb->max_abs[j]);
    }
    assert_true(mb > 8 * ma); /* the outlier channels dominate */
    qd_llama_model *bad = NULL;
    assert_int_equal(qd_llama_add_outliers(&bad, m, 0, 2.0f, 1), QD_EINVAL);
    assert_null(bad);
    qd_actstats_free(a);
    qd_actstats_free(b);
    qd_valset_free(set);
    qd_llama_free(o);
    qd_llama_free(m);
}

/* without clipping, AWQ's folded float model is the same function (scales are folded exactly up to rounding) */
static void test_awq__fold_keeps_function(void **state)
{
    (void)state;
    for (int kvh = 2; kvh <= 4; kvh += 2) { /* GQA (no v->o fold) and MHA (v->o folded) */
        qd_llama_model *m = outlier_model(kvh), *a = NULL;
        qd_valset *cal = NULL;
        assert_int_equal(qd_valset_sample(&cal, m, 4, 32, 21, 1), QD_OK);
        qd_awq_options o = QD_AWQ_OPTIONS_INIT;
        o.clip = false;
        qd_awq_report rep;
        assert_int_equal(qd_awq_apply(&a, &rep, m, cal, &o), QD_OK);
        double scale, d = max_logit_diff(m, a, cal, &scale);
        assert_true(d <= 1e-4 * scale);
        int folded_o = 0;
        for (int i = 0; i < rep.n_blocks; i++)
            if (!strcmp(rep.blocks[i].group, "o") && rep.blocks[i].alpha > 0)
                folded_o++;
        if (kvh == 2)
            assert_int_equal(folded_o, 0);
        qd_awq_report_free(&rep);
        qd_valset_free(cal);
        qd_llama_free(a);
        qd_llama_free(m);
    }
}

/* each block's output error on the calibration activations: never above RTN on the same grid, clearly below it
 * where the outliers are (q/k/v and gate/up read the outlier channels) */
static void test_awq__beats_rtn_per_block(void **state)
{
    (void)state;
    qd_awq_grid grids[3] = {QD_AWQ_GRID_Q4_0, QD_AWQ_GRID_Q4_1, QD_AWQ_GRID_INT4};
    qd_llama_model *m = outlier_model(4);
    qd_valset *cal = NULL;
    assert_int_equal(qd_valset_sample(&cal, m, 6, 48, 21, 1), QD_OK);
    for (int g = 0; g < 3; g++) {
        qd_llama_model *a = NULL;
        qd_awq_options o = QD_AWQ_OPTIONS_INIT;
        o.grid = grids[g];
        o.group = 32;
        qd_awq_report rep;
        assert_int_equal(qd_awq_apply(&a, &rep, m, cal, &o), QD_OK);
        assert_int_equal(rep.n_blocks, 8);
        assert_int_equal(rep.tokens, 6 * 48);
        for (int i = 0; i < rep.n_blocks; i++) {
            const qd_awq_block *b = &rep.blocks[i];
            print_message("grid %d layer %d %-7s alpha %.2f rtn %.4g awq %.4g final %.4g\n", g, b->layer, b->group,
                          b->alpha, b->err_rtn, b->err_awq, b->err_final);
            assert_true(b->err_awq <= b->err_rtn);
            if (!strcmp(b->group, "qkv") || !strcmp(b->group, "gate_up")) {
                assert_true(b->alpha > 0);
                assert_true(b->err_awq < 0.8 * b->err_rtn);
            }
        }
        qd_awq_report_free(&rep);
        qd_llama_free(a);
    }
    qd_valset_free(cal);
    qd_llama_free(m);
}

static void test_awq__bad_input(void **state)
{
    (void)state;
    qd_llama_model *m = outlier_model(2), *a = NULL;
    qd_valset *cal = NULL;
    qd_awq_options o = QD_AWQ_OPTIONS_INIT;
    assert_int_equal(qd_awq_apply(&a, NULL, m, NULL, &o), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "empty"));
    assert_int_equal(qd_valset_sample(&cal, m, 2, 9, 3, 1), QD_OK);
    cal->tokens[3] = 96;
    assert_int_equal(qd_awq_apply(&a, NULL, m, cal, &o), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "out of range"));
    cal->tokens[3] = 5;
    cal->lens[1] = 1;
    assert_int_equal(qd_awq_apply(&a, NULL, m, cal, &o), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "at least 2"));
    o.grid = QD_AWQ_GRID_INT4;
    o.group = 48;
    assert_int_equal(qd_awq_apply(&a, NULL, m, cal, &o), QD_EINVAL);
    assert_null(a);
    qd_valset_free(cal);
    qd_llama_free(m);
}

/* AutoAWQ packing: unpack(pack(w)) is the dequantized grid bit for bit; nibble order and zero points as AutoAWQ */
static void test_awq__pack_roundtrip(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    int64_t rows = 16, cols = 64;
    for (int group = 32; group <= 64; group *= 2) {
        float w[16 * 64], deq[16 * 64], back[16 * 64], ref[64];
        for (int i = 0; i < rows * cols; i++)
            w[i] = (float)((double)(tu_next(&r) >> 11) / 9007199254740992.0 - 0.3);
        int32_t *qw, *qz;
        uint16_t *sc;
        assert_int_equal(qd_awq_pack(&qw, &qz, &sc, deq, w, rows, cols, group), QD_OK);
        assert_int_equal(qd_awq_unpack(back, qw, qz, sc, rows, cols, group), QD_OK);
        assert_memory_equal(back, deq, sizeof(deq));
        for (int64_t rr = 0; rr < rows; rr++) { /* the same values as the grid the search used */
            for (int64_t c = 0; c < cols; c += group)
                assert_int_equal(qd_awq_qdq(ref + c, w + rr * cols + c, group, QD_AWQ_GRID_INT4), QD_OK);
            assert_memory_equal(ref, deq + rr * cols, sizeof(ref));
        }
        /* output 2 of input 0 sits in nibble 1 (AWQ order 0 2 4 6 1 3 5 7) */
        int q_out2 = (int)(((uint32_t)qw[0] >> 4) & 15), z_out2 = (int)(((uint32_t)qz[0] >> 4) & 15);
        float s2;
        qd_dequantize_rows(QD_TYPE_F16, &sc[2], &s2, 1, 1);
        assert_true((float)(q_out2 - z_out2) * s2 == deq[2 * cols + 0]);
        qd_free(qw);
        qd_free(qz);
        qd_free(sc);
    }
    int32_t *qw, *qz;
    uint16_t *sc;
    float w[12 * 32] = {0};
    assert_int_equal(qd_awq_pack(&qw, &qz, &sc, NULL, w, 12, 32, 32), QD_EINVAL);
}

/* the AWQ variants as files: the GGUF (Q4_0 blocks) and the AutoAWQ folder read back to exactly what the runtime ran
 * (the folder through the runtime's loader: qweight/qzeros/scales dequantized bit for bit) */
static void test_awq__files_roundtrip(void **state)
{
    (void)state;
    char *dir = tu_sandbox();
    char gg[600], folder[600], path[700];
    snprintf(gg, sizeof(gg), "%s/awq.gguf", dir);
    snprintf(folder, sizeof(folder), "%s/awq", dir);
    qd_llama_model *m = outlier_model(2), *a = NULL, *v = NULL, *back = NULL;
    qd_valset *cal = NULL;
    assert_int_equal(qd_valset_sample(&cal, m, 4, 32, 21, 1), QD_OK);
    for (int g = 0; g < 2; g++) {
        qd_awq_options o = QD_AWQ_OPTIONS_INIT;
        o.grid = g ? QD_AWQ_GRID_INT4 : QD_AWQ_GRID_Q4_0;
        o.group = 64;
        assert_int_equal(qd_awq_apply(&a, NULL, m, cal, &o), QD_OK);
        assert_int_equal(qd_awq_quantize(&v, a, &o), QD_OK);
        if (g == 0) {
            qd_gguf_extra ex[] = {{"quantize.method", "awq", 0, false}, {"quantize.calib.tokens", NULL, 128, false}};
            assert_int_equal(qd_llama_write_gguf(v, gg, 2, ex, 2), QD_OK);
            assert_int_equal(qd_llama_load_model(&back, gg), QD_OK);
            assert_int_equal(back->layers[0].wq.type, QD_TYPE_Q4_0);
            /* the predicate reads the method's record from the GGUF */
            qd_validation_report *rep = NULL;
            qd_validation_policy pol;
            qd_validation_policy_default(&pol);
            assert_int_equal(qd_validate_run(&rep, m, back, cal, NULL), QD_OK);
            assert_int_equal(qd_validation_judge(rep, &pol, NULL), QD_OK);
            const char *hw[] = {"cpu-x86_64"};
            char dg[] = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
            qd_variant_predicate_info pi = {dg, NULL, dg, back, hw, 1, "test@host", 0};
            char *pj = NULL;
            assert_int_equal(qd_variant_predicate_json(&pj, rep, &pi), QD_OK);
            assert_non_null(strstr(pj, "\"method\":\"awq\""));
            assert_non_null(strstr(pj, "\"tokens\":128"));
            qd_free(pj);
            qd_validation_report_free(rep);
        } else {
            uint64_t bytes = 0;
            assert_int_equal(qd_awq_export(a, 64, folder, "synthetic", &bytes), QD_OK);
            assert_true(bytes > 0);
            assert_true(qd_calib_is_quant_folder(folder));
            assert_int_equal(qd_llama_load_model(&back, folder), QD_OK);
            assert_int_equal(back->layers[1].w2.type, QD_TYPE_F32);
            snprintf(path, sizeof(path), "%s/model.safetensors", folder);
            qd_st_file *f = NULL;
            assert_int_equal(qd_st_open(&f, path), QD_OK);
            const qd_st_entry *e = qd_st_find(f, "model.layers.0.self_attn.k_proj.qweight");
            assert_non_null(e);
            assert_int_equal(e->dtype, QD_ST_I32);
            assert_int_equal(e->shape[0], 64);     /* in */
            assert_int_equal(e->shape[1], 32 / 8); /* out / 8 */
            e = qd_st_find(f, "model.layers.0.mlp.down_proj.scales");
            assert_int_equal(e->dtype, QD_ST_F16);
            assert_int_equal(e->shape[0], 128 / 64);
            qd_st_close(f);
        }
        for (int i = 0; i < qd_llama_tensor_count(v); i++) {
            const char *name;
            qd_llama_tensor *x = qd_llama_tensor_at(v, i, &name), *y = qd_llama_tensor_at(back, i, NULL);
            assert_int_equal(x->type, y->type);
            assert_memory_equal(x->data, y->data, (size_t)x->rows * qd_row_size(x->type, x->cols));
        }
        qd_llama_free(back);
        qd_llama_free(v);
        qd_llama_free(a);
        back = v = a = NULL;
    }
    qd_valset_free(cal);
    qd_llama_free(m);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_awq__outlier_model_same_function),
        cmocka_unit_test(test_awq__fold_keeps_function),
        cmocka_unit_test(test_awq__beats_rtn_per_block),
        cmocka_unit_test(test_awq__bad_input),
        cmocka_unit_test(test_awq__pack_roundtrip),
        cmocka_unit_test(test_awq__files_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
