/*
 * test_gptq.c - GPTQ on the real runtime with a small synthetic model: lower layer output error than round to
 * nearest on the same grid for every layer, act-order and group sizes, dead columns, a singular Hessian, the GGUF
 * grids' blocks against the ggml dequantizers, the AutoGPTQ layout round trip; calibration sets and imatrix files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/hfquant.h"
#include "qd/pipeline.h"
#include "qd/recipe.h"

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
                p.true_sequential = !(g == 1 && a == 0); /* once the whole block from one pass */
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

/* the AutoGPTQ layout: written with the safetensors writer, read back and dequantized as the loaders do: bit for
 * bit the values GPTQ chose (2, 3, 4 and 8 bits, with act-order, rows reordered as for HF q_proj) */
static void test_autogptq_round_trip(void **state)
{
    (void)state;
    enum { R = 64, C = 128 };
    static float w[R * C];
    static double h[C * C];
    tu_rng rng;
    tu_rng_seed(&rng, tu_seed());
    for (int i = 0; i < R * C; i++)
        w[i] = (float)((double)(tu_next(&rng) >> 11) / 9007199254740992.0 - 0.5) * (i % 17 == 0 ? 8.0f : 1.0f);
    char *dir = tu_sandbox();
    static const int bits[] = {2, 3, 4, 8};
    for (int b = 0; b < 4; b++) {
        /* a Hessian from random inputs */
        memset(h, 0, sizeof(h));
        for (int n = 0; n < 200; n++) {
            double x[C];
            for (int i = 0; i < C; i++)
                x[i] = (double)(tu_next(&rng) >> 11) / 9007199254740992.0 - 0.5;
            for (int i = 0; i < C; i++)
                for (int j = 0; j < C; j++)
                    h[i * C + j] += 2.0 * x[i] * x[j] / 200.0;
        }
        qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
        p.bits = bits[b];
        p.group_size = 32;
        p.act_order = b % 2 == 1;
        qd_gptq_matrix m;
        assert_int_equal(qd_gptq_quantize_matrix(&m, w, R, C, h, &p), QD_OK);
        int64_t map[R];
        for (int r = 0; r < R; r++)
            map[r] = (r * 5) % R; /* a permutation of the output rows */
        qd_hfq_result hr;
        assert_int_equal(qd_gptq_pack(&hr, &m, bits[b], map), QD_OK);
        assert_int_equal(hr.n_parts, 4);
        assert_int_equal(hr.parts[0].shape[0], C * bits[b] / 32);
        assert_int_equal(hr.parts[0].shape[1], R);
        assert_int_equal(hr.parts[1].shape[0], C / 32);
        assert_int_equal(hr.parts[1].shape[1], R * bits[b] / 32);
        qd_st_writer *sw;
        assert_int_equal(qd_st_writer_new(&sw), QD_OK);
        for (size_t k = 0; k < hr.n_parts; k++) {
            char nm[128];
            snprintf(nm, sizeof(nm), "model.layers.0.mlp.up_proj.%s", hr.parts[k].suffix);
            assert_int_equal(qd_st_writer_add(sw, nm, hr.parts[k].dtype, hr.parts[k].rank, hr.parts[k].shape,
                                              hr.parts[k].data, hr.parts[k].nbytes), QD_OK);
        }
        assert_int_equal(qd_st_writer_write(sw, dir, "model", 0, NULL), QD_OK);
        qd_st_writer_free(sw);
        qd_st_file *f;
        char path[700];
        snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        assert_int_equal(qd_st_open(&f, path), QD_OK);
        float *back;
        int64_t rows, cols;
        assert_int_equal(qd_gptq_unpack(&back, &rows, &cols, f, "model.layers.0.mlp.up_proj.", bits[b]), QD_OK);
        assert_int_equal(rows, R);
        assert_int_equal(cols, C);
        for (int r = 0; r < R; r++)
            assert_memory_equal(back + r * C, m.deq + map[r] * C, sizeof(float) * C);
        assert_memory_equal(back, hr.deq, sizeof(float) * R * C);
        /* g_idx as stored */
        const qd_st_entry *gi = qd_st_find(f, "model.layers.0.mlp.up_proj.g_idx");
        assert_non_null(gi);
        assert_memory_equal(gi->data, m.g_idx, sizeof(int32_t) * C);
        qd_free(back);
        qd_st_close(f);
        qd_hfq_result_free(&hr);
        qd_gptq_matrix_free(&m);
    }
    tu_rmtree(dir);
    free(dir);
}

/* calibration sets: sampled, from a file; empty, too short, out of vocabulary, overlapping the validation set */
static void test_calibset(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_calibset cs;
    assert_int_equal(qd_calibset_open(&cs, "sample:3:20:9", m, NULL, 1), QD_OK);
    assert_int_equal(cs.set->n_seqs, 3);
    assert_int_equal(cs.set->n_tokens, 60);
    assert_true(cs.sampled);
    assert_int_equal(strncmp(cs.digest, "sha256:", 7), 0);
    assert_int_equal(strlen(cs.digest), 71);
    char *dir = tu_sandbox(), path[700];
    snprintf(path, sizeof(path), "%s/set.bin", dir);
    void *blob;
    size_t len;
    assert_int_equal(qd_valset_serialize(&blob, &len, cs.set), QD_OK);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(blob, 1, len, fp), len);
    fclose(fp);
    qd_calibset c2;
    assert_int_equal(qd_calibset_open(&c2, path, m, NULL, 1), QD_OK);
    assert_string_equal(c2.digest, cs.digest); /* the file's digest is the sample's */
    assert_string_equal(c2.name, "set.bin");
    /* overlapping the validation set: the same set as --val */
    qd_calibset c3;
    assert_int_equal(qd_calibset_open(&c3, path, m, cs.set, 1), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "disjoint"));
    /* a disjoint validation set is fine */
    qd_valset *val;
    assert_int_equal(qd_calibset_load_set(&val, "sample:4:20:10", m, 1), QD_OK);
    assert_int_equal(qd_calibset_open(&c3, path, m, val, 1), QD_OK);
    qd_calibset_free(&c3);
    qd_valset_free(val);
    /* bad specs */
    assert_int_equal(qd_calibset_open(&c3, "sample:0:20:1", m, NULL, 1), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "empty"));
    assert_int_equal(qd_calibset_open(&c3, "sample:2:1:1", m, NULL, 1), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "too short"));
    assert_int_equal(qd_calibset_open(&c3, "sample:2:1000:1", m, NULL, 1), QD_EINVAL);
    assert_int_equal(qd_calibset_open(&c3, "sample:2:x:1", m, NULL, 1), QD_EINVAL);
    assert_int_equal(qd_calibset_open(&c3, "", m, NULL, 1), QD_EINVAL);
    snprintf(path, sizeof(path), "%s/none.bin", dir);
    assert_int_equal(qd_calibset_open(&c3, path, m, NULL, 1), QD_ENOTFOUND);
    /* an empty file; a set with a token outside the vocabulary; a set with a 1-token sequence */
    snprintf(path, sizeof(path), "%s/empty.bin", dir);
    fp = fopen(path, "wb");
    fclose(fp);
    assert_int_equal(qd_calibset_open(&c3, path, m, NULL, 1), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "empty"));
    cs.set->tokens[5] = m->cfg.vocab + 3;
    qd_free(blob);
    assert_int_equal(qd_valset_serialize(&blob, &len, cs.set), QD_OK);
    snprintf(path, sizeof(path), "%s/oov.bin", dir);
    fp = fopen(path, "wb");
    fwrite(blob, 1, len, fp);
    fclose(fp);
    assert_int_equal(qd_calibset_open(&c3, path, m, NULL, 1), QD_EINVAL);
    /* GPTQ refuses the same set directly */
    qd_gptq_run *run = NULL;
    qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
    assert_int_equal(qd_gptq_model(&run, m, cs.set, &p, NULL), QD_EINVAL);
    cs.set->tokens[5] = 1;
    cs.set->lens[1] = 1; /* (lengths still add up in memory: shorter sequence, tokens unused) */
    assert_int_equal(qd_gptq_model(&run, m, cs.set, &p, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "at least 2"));
    qd_free(blob);
    qd_calibset_free(&c2);
    qd_calibset_free(&cs);
    tu_rmtree(dir);
    free(dir);
    qd_llama_free(m);
}

/* imatrix files: both formats read back through qd_imatrix_load to the mean squared activation */
static void test_imatrix_files(void **state)
{
    (void)state;
    qd_llama_model *m = small_model();
    qd_valset *set = calib_set(m);
    qd_actstats *s = NULL;
    assert_int_equal(qd_actstats_collect(&s, m, set, NULL), QD_OK);
    char *dir = tu_sandbox(), path[700];
    for (int f = 0; f < 2; f++) {
        for (int with_out = 0; with_out < 2; with_out++) {
            snprintf(path, sizeof(path), "%s/im%d%d.%s", dir, f, with_out, f ? "gguf" : "dat");
            assert_int_equal(qd_imatrix_write(s, path, f ? QD_IMATRIX_GGUF : QD_IMATRIX_DAT, "calib-x",
                                              (int32_t)set->n_seqs, 48, with_out), QD_OK);
            qd_imatrix *im;
            assert_int_equal(qd_imatrix_load(&im, path), QD_OK);
            assert_int_equal(qd_imatrix_count(im), with_out ? 15 : 14);
            const char *ds;
            int32_t chunks;
            qd_imatrix_info(im, &ds, &chunks);
            assert_non_null(ds);
            assert_string_equal(ds, "calib-x");
            assert_int_equal(chunks, (int32_t)set->n_seqs);
            for (size_t i = 0; i < qd_actstats_count(s); i++) {
                const qd_actstats_entry *e = qd_actstats_at(s, i);
                int64_t n = 0;
                const float *v = qd_imatrix_find(im, e->name, &n);
                if (e->site == QD_SITE_OUTPUT && !with_out) {
                    assert_null(v);
                    continue;
                }
                assert_non_null(v);
                assert_int_equal(n, e->cols);
                for (int64_t j = 0; j < n; j++) {
                    double want = e->sum_sq[j] / (double)e->n_rows;
                    if (f) /* GGUF: in_sum2 / counts in f32, exactly as the collector's in-memory matrix */
                        assert_true(v[j] == (float)e->sum_sq[j] / (float)e->n_rows);
                    else
                        assert_true(fabs(v[j] - want) <= 1e-6 * want + 1e-30);
                }
            }
            qd_imatrix_free(im);
        }
    }
    /* nothing collected: refused */
    qd_actstats *empty;
    assert_int_equal(qd_actstats_new(&empty), QD_OK);
    snprintf(path, sizeof(path), "%s/none.gguf", dir);
    assert_int_equal(qd_imatrix_write(empty, path, QD_IMATRIX_GGUF, "x", 1, 1, false), QD_EINVAL);
    qd_actstats_free(empty);
    qd_actstats_free(s);
    tu_rmtree(dir);
    free(dir);
    qd_valset_free(set);
    qd_llama_free(m);
}

static const char *tools(void)
{
    const char *t = getenv("QD_TOOLS");
    return t && *t ? t : "build/release/tools";
}

typedef struct file_ctx {
    const qd_gptq_run *run;
    size_t n_supplied;
} file_ctx;

static const void *supply(void *payload, const char *name, qd_type type, int64_t rows, int64_t cols)
{
    file_ctx *fc = payload;
    const qd_gptq_layer *ly = qd_gptq_run_find(fc->run, name);
    if (!ly || type != QD_TYPE_Q4_0 || ly->m.rows != rows || ly->m.cols != cols)
        return NULL;
    fc->n_supplied++;
    return ly->m.blocks;
}

/* GPTQ's Q4_0 blocks go into a GGUF through the pipeline's tensor hook: the file holds those bytes, and the runtime
 * running the file computes what the in-memory GPTQ model computes */
static void test_gguf_file_holds_gptq_blocks(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), src[600], out[600], cmd[1600];
    snprintf(src, sizeof(src), "%s/m.gguf", dir);
    snprintf(out, sizeof(out), "%s/q.gguf", dir);
    snprintf(cmd, sizeof(cmd), "%s/gen_ckpt --out %s --seed 6 --layers 2 --dim 128 --ff 256 --heads 4 --kv-heads 2 "
             "--vocab 96 --ctx 64 --act-outliers 20 > /dev/null", tools(), src);
    if (system(cmd) != 0) {
        tu_rmtree(dir);
        free(dir);
        TU_SKIP("gen_ckpt not built at %s", tools());
    }
    qd_llama_model *m = NULL, *q = NULL;
    assert_int_equal(qd_llama_load_model(&m, src), QD_OK);
    qd_valset *set = calib_set(m);
    qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
    p.gguf_type = QD_TYPE_Q4_0;
    p.act_order = true;
    qd_gptq_run *run = NULL;
    assert_int_equal(qd_gptq_model(&run, m, set, &p, NULL), QD_OK);
    file_ctx fc = {run, 0};
    qd_quantize_opts o;
    qd_quantize_stats st;
    memset(&o, 0, sizeof(o));
    o.ftype = QD_FTYPE_Q4_0;
    o.threads = 1;
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    o.recipe.pure = true;
    o.tensor_fn = supply;
    o.method_payload = &fc;
    assert_int_equal(qd_quantize_model(&st, src, out, &o), QD_OK);
    assert_int_equal(fc.n_supplied, 14);
    assert_int_equal(st.n_method, 14);
    assert_int_equal(qd_llama_load_model(&q, out), QD_OK);
    for (size_t i = 0; i < run->n_layers; i++) {
        const qd_gptq_layer *ly = &run->layers[i];
        const char *nm;
        const qd_llama_tensor *t = NULL;
        for (int k = 0; k < qd_llama_tensor_count(q); k++) {
            const qd_llama_tensor *c = qd_llama_tensor_at(q, k, &nm);
            if (!strcmp(nm, ly->name))
                t = c;
        }
        assert_non_null(t);
        assert_int_equal(t->type, QD_TYPE_Q4_0);
        assert_memory_equal(t->data, ly->m.blocks, ly->m.blocks_len);
    }
    /* read back through the runtime's loader and dequantized, the file's matrices are the values the GPTQ run
     * multiplied (its model with the quantized matrices swapped in) */
    qd_llama_model *deq = NULL;
    assert_int_equal(qd_llama_dequantize(&deq, q), QD_OK);
    for (int l = 0; l < deq->cfg.n_layers; l++) {
        const float *a = deq->layers[l].w2.data, *b = run->model->layers[l].w2.data;
        assert_memory_equal(a, b, sizeof(float) * (size_t)(deq->layers[l].w2.rows * deq->layers[l].w2.cols));
        a = deq->layers[l].wq.data;
        b = run->model->layers[l].wq.data;
        assert_memory_equal(a, b, sizeof(float) * (size_t)(deq->layers[l].wq.rows * deq->layers[l].wq.cols));
    }
    qd_llama_free(deq);
    qd_llama_free(q);
    qd_gptq_run_free(run);
    qd_valset_free(set);
    qd_llama_free(m);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gptq_beats_rtn),
        cmocka_unit_test(test_act_order_gidx),
        cmocka_unit_test(test_dead_and_singular),
        cmocka_unit_test(test_gguf_grids),
        cmocka_unit_test(test_autogptq_round_trip),
        cmocka_unit_test(test_calibset),
        cmocka_unit_test(test_imatrix_files),
        cmocka_unit_test(test_gguf_file_holds_gptq_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
