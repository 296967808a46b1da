/*
 * test_gptq.c - GPTQ on the real runtime with a small synthetic model: lower layer output error than round to
 * nearest on the same grid for every layer, act-order and group sizes, dead columns, a singular Hessian, the GGUF
 * grids' blocks against the ggml dequantizers, the AutoGPTQ layout round trip; calibration sets and imatrix files.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/hfquant.h"
#include "qd/pipeline.h"

static qd_llama_model *small_model(void)
{
    qd_llama_config cfg = {.dim = 128, .hidden_dim = 256, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab = 96,
                           .seq_len = 64, .rope_theta = 10000.0f, .norm_eps = 1e-5f, .tied_output = true};
    qd_llama_model *m = NULL;
    assert_int_equal(qd_llama_synthetic(&m, &cfg, 11), QD_OK);
    return m;
}

static qd_valset *calib_set(const qd_llama_model *m)
{
    qd_valset *set = NULL;
    assert_int_equal(qd_valset_sample(&set, m, 6, 48, 1234, 1), QD_OK);
    return set;
}

static void run_check(const qd_llama_model *m, const qd_valset *set, const qd_gptq_params *p)
{
    qd_gptq_run *run = NULL;
    qd_gptq_run_options o = {1, true, true};
    assert_int_equal(qd_gptq_model(&run, m, set, p, &o), QD_OK);
    if (run->n_layers != 14)
        fail_msg("%zu layers, %zu skipped", run->n_layers, run->n_skipped);
    assert_int_equal(run->n_skipped, 0);
    for (size_t i = 0; i < run->n_layers; i++) {
        const qd_gptq_layer *ly = &run->layers[i];
        /* GPTQ against RTN on the same grid, on the layer's own calibration inputs */
        if (!(ly->err_gptq < ly->err_rtn))
            fail_msg("%s: gptq %g >= rtn %g (bits %d group %d act_order %d)", ly->name, ly->err_gptq, ly->err_rtn,
                     p->bits, p->group_size, p->act_order);
        /* every value is on the grid: scale * (q - zero) with the group's parameters */
        const qd_gptq_matrix *mm = &ly->m;
        int maxq = (1 << p->bits) - 1;
        for (int64_t r = 0; r < mm->rows; r++)
            for (int64_t c = 0; c < mm->cols; c++) {
                int g = mm->g_idx[c];
                assert_true(g >= 0 && g < mm->n_groups);
                float s = mm->scale[r * mm->n_groups + g], z = mm->zero[r * mm->n_groups + g];
                int q = mm->q[r * mm->cols + c];
                assert_true(q <= maxq);
                assert_true(mm->deq[r * mm->cols + c] == (float)(q - (int)z) * s);
            }
        /* groups have group_size members each */
        int counts[64] = {0};
        for (int64_t c = 0; c < mm->cols; c++)
            counts[mm->g_idx[c]]++;
        for (int g = 0; g < mm->n_groups; g++)
            assert_int_equal(counts[g], mm->group_size);
    }
    /* the quantized values are what the run's model now multiplies */
    const qd_gptq_layer *l1 = qd_gptq_run_find(run, "blk.1.ffn_down.weight");
    assert_non_null(l1);
    assert_memory_equal(run->model->layers[1].w2.data, l1->m.deq, sizeof(float) * (size_t)(l1->m.rows * l1->m.cols));
    qd_gptq_run_free(run);
}

static void test_gptq_beats_rtn(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = calib_set(m);
    static const int bits[] = {4, 3, 2};
    static const int groups[] = {32, 64, 128};
    for (int b = 0; b < 3; b++)
        for (int g = 0; g < 3; g++)
            for (int a = 0; a < 2; a++) {
                if (b > 0 && g != 0)
                    continue; /* int3/int2 once, at g32 */
                qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
                p.bits = bits[b];
                p.group_size = groups[g];
                p.act_order = a;
                run_check(m, set, &p);
            }
    qd_valset_free(set);
    qd_llama_free(m);
}

/* act-order permutes by decreasing diag(H): g_idx follows the processing order */
static void test_act_order_gidx(void **state)
{
    (void)state;
    enum { R = 8, C = 64 };
    float w[R * C];
    double h[C * C];
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((double)(tu_next(&rng) >> 11) / 9007199254740992.0 - 0.5);
    memset(h, 0, sizeof(h));
    for (int i = 0; i < C; i++)
        h[i * C + i] = 1.0 + (double)((i * 37) % C); /* distinct diagonal, a known order */
    qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
    p.group_size = 32;
    p.act_order = true;
    qd_gptq_matrix m;
    assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_OK);
    for (int i = 0; i < C; i++) {
        /* rank of column i by decreasing diagonal */
        int rank = 0;
        for (int j = 0; j < C; j++)
            rank += (37 * j) % C > (37 * i) % C;
        assert_int_equal(m.g_idx[i], rank / 32);
    }
    qd_gptq_matrix_free(&m);
}

/* dead columns: zero diagonal -> H_ii = 1, weight column zeroed; a singular (not PD) Hessian -> clear error */
static void test_dead_and_singular(void **state)
{
    (void)state;
    enum { R = 4, C = 32 };
    float w[R * C];
    double h[C * C];
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    memset(h, 0, sizeof(h));
    for (int i = 0; i < C; i++)
        h[i * C + i] = i % 5 == 3 ? 0.0 : 1.0;
    qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
    p.group_size = 32;
    qd_gptq_matrix m;
    assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_OK);
    assert_int_equal(m.n_dead, 6);
    for (int r = 0; r < R; r++)
        for (int c = 3; c < C; c += 5)
            assert_true(m.deq[r * C + c] == 0.0f);
    qd_gptq_matrix_free(&m);
    /* an indefinite Hessian (negative eigenvalue beyond what 1 % dampening lifts) */
    memset(h, 0, sizeof(h));
    for (int i = 0; i < C; i++)
        h[i * C + i] = 1.0;
    h[0 * C + 1] = h[1 * C + 0] = 3.0;
    assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "not positive definite"));
    /* bad parameters */
    p.group_size = 48;
    for (int i = 0; i < C; i++)
        h[i * C + i] = 1.0;
    h[1] = h[C] = 0;
    assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_EINVAL);
    p.group_size = 32;
    p.bits = 5;
    assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_EINVAL);
}

/* GGUF grids: the ggml dequantizer reads the blocks back to exactly the values GPTQ chose */
static void test_gguf_grids(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = calib_set(m);
    static const qd_type types[] = {QD_TYPE_Q4_0, QD_TYPE_Q4_1, QD_TYPE_Q5_0, QD_TYPE_Q8_0};
    for (int t = 0; t < 4; t++)
        for (int a = 0; a < 2; a++) {
            qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
            p.gguf_type = types[t];
            p.act_order = a;
            qd_gptq_run *run = NULL;
            qd_gptq_run_options o = {1, false, true};
            assert_int_equal(qd_gptq_model(&run, m, set, &p, &o), QD_OK);
            assert_int_equal(run->n_layers, 14);
            for (size_t i = 0; i < run->n_layers; i++) {
                const qd_gptq_matrix *mm = &run->layers[i].m;
                assert_int_equal(mm->blocks_len, qd_row_size(types[t], mm->cols) * (size_t)mm->rows);
                float *back = qd_mallocarray((size_t)(mm->rows * mm->cols), sizeof(float));
                assert_non_null(back);
                assert_int_equal(qd_dequantize_rows(types[t], mm->blocks, back, mm->rows, mm->cols), QD_OK);
                assert_memory_equal(back, mm->deq, sizeof(float) * (size_t)(mm->rows * mm->cols));
                qd_free(back);
                if (!(run->layers[i].err_gptq < run->layers[i].err_rtn))
                    fail_msg("%s %s: gptq %g >= rtn %g", qd_type_traits_get(types[t])->name, run->layers[i].name,
                             run->layers[i].err_gptq, run->layers[i].err_rtn);
            }
            qd_gptq_run_free(run);
        }
    qd_valset_free(set);
    qd_llama_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_beats_rtn),
        cmocka_unit_test(test_act_order_gidx),
        cmocka_unit_test(test_dead_and_singular),
        cmocka_unit_test(test_gguf_grids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
