/*
 * test_runtime_load.c - the runtime's adapter over model.h: safetensors (HF q/k row order), GGUF of any type and
 * llama2.c give one and the same model; GGUF tensors are used zero-copy; bad files get clear errors.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/recipe.h"
#include "qd/runtime.h"
#include "qd/validate.h"

#include <jansson.h>

static const char *tools(void)
{
    const char *t = getenv("QD_TOOLS");
    return t && *t ? t : "build/release/tools";
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int quantize(const char *in, const char *out, qd_ftype ft)
{
    qd_quantize_opts o;
    qd_quantize_stats st;
    memset(&o, 0, sizeof(o));
    o.ftype = ft;
    o.threads = 2;
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    return qd_quantize_model(&st, in, out, &o);
}

/* Logits of all positions of a fixed token sequence (caller frees). */
static float *logits_of(const qd_llama_model *m, const int32_t *toks, int n)
{
    qd_llama_ctx *c = NULL;
    qd_llama_ctx_options o = QD_LLAMA_CTX_OPTIONS_INIT;
    o.n_ctx = n;
    assert_int_equal(qd_llama_ctx_new(&c, m, &o), QD_OK);
    float *lg = qd_mallocarray((size_t)n * (size_t)m->cfg.vocab, sizeof(float));
    assert_non_null(lg);
    assert_int_equal(qd_llama_eval(c, toks, n, lg, NULL), QD_OK);
    qd_llama_ctx_free(c);
    return lg;
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    if (scale)
        *scale = s;
    return d;
}

static bool owns(const qd_llama_model *m, const void *p)
{
    for (size_t i = 0; i < m->n_owned_; i++)
        if (m->owned_[i] == p)
            return true;
    return false;
}

/* A gen_ckpt safetensors model (HF names, q/k rows in HF order) and the F32 GGUF our quantize pipeline writes from
 * it (llama.cpp's converter permutation applied) must compute the same logits: the adapter puts the safetensors
 * q/k rows into GGUF order, so the runtime's adjacent-pair RoPE pairs the same dimensions in both. */
static void test_runtime_load__safetensors_matches_its_f32_gguf(void **state)
{
    (void)state;
    char *dir = tu_sandbox();
    char st[600], gg[600], gg2[600];
    snprintf(st, sizeof(st), "%s/m.safetensors", dir);
    snprintf(gg, sizeof(gg), "%s/m-f32.gguf", dir);
    snprintf(gg2, sizeof(gg2), "%s/gen.gguf", dir);
    if (run("%s/gen_ckpt --out %s --format safetensors --seed 5 --layers 2 --dim 64 --ff 128 --heads 4 "
            "--kv-heads 2 --vocab 256 --ctx 64", tools(), st) != 0) {
        tu_rmtree(dir);
        free(dir);
        TU_SKIP("gen_ckpt not built (QD_TOOLS)");
    }
    assert_int_equal(run("%s/gen_ckpt --out %s --seed 5 --layers 2 --dim 64 --ff 128 --heads 4 --kv-heads 2 "
                         "--vocab 256 --ctx 64", tools(), gg2), 0);
    assert_int_equal(quantize(st, gg, QD_FTYPE_ALL_F32), QD_OK);

    qd_llama_model *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(qd_llama_load_model(&a, st), QD_OK);
    assert_int_equal(qd_llama_load_model(&b, gg), QD_OK);
    assert_int_equal(qd_llama_load_model(&c, gg2), QD_OK);
    assert_int_equal(a->cfg.dim, 64);
    assert_int_equal(a->cfg.hidden_dim, 128);
    assert_int_equal(a->cfg.n_heads, 4);
    assert_int_equal(a->cfg.n_kv_heads, 2);
    assert_int_equal(a->cfg.vocab, 256);
    assert_int_equal(a->cfg.seq_len, 64);
    assert_int_equal(qd_llama_same_shape(a, b), QD_OK);
    assert_true(a->cfg.rope_theta == b->cfg.rope_theta && a->cfg.norm_eps == b->cfg.norm_eps);
    assert_true(a->cfg.tied_output == b->cfg.tied_output);
    /* safetensors q/k were permuted into owned buffers; the GGUF's tensors are the file's bytes */
    assert_true(owns(a, a->layers[0].wq.data) && owns(a, a->layers[1].wk.data));
    assert_int_equal(b->n_owned_, 0);

    int32_t toks[24];
    for (int i = 0; i < 24; i++)
        toks[i] = (int32_t)((i * 37 + 1) % 256);
    size_t n = 24 * 256;
    float *la = logits_of(a, toks, 24), *lb = logits_of(b, toks, 24), *lc = logits_of(c, toks, 24);
    double scale, d_ab = max_abs_diff(la, lb, n, &scale), d_ac = max_abs_diff(la, lc, n, NULL);
    printf("safetensors vs F32 GGUF from it: max |dlogit| %.3g, vs gen_ckpt's GGUF %.3g (logit scale %.3g)\n", d_ab,
           d_ac, scale);
    assert_true(scale > 0.1);
    assert_true(d_ab <= 1e-5);
    assert_true(d_ac <= 1e-5);

    /* the same model as a 2-shard safetensors directory */
    char sh[600];
    snprintf(sh, sizeof(sh), "%s/sharded", dir);
    assert_int_equal(run("%s/gen_ckpt --out %s --format safetensors --shards 2 --seed 5 --layers 2 --dim 64 --ff 128 "
                         "--heads 4 --kv-heads 2 --vocab 256 --ctx 64", tools(), sh), 0);
    qd_llama_model *d = NULL;
    assert_int_equal(qd_llama_load_model(&d, sh), QD_OK);
    float *ld = logits_of(d, toks, 24);
    assert_true(max_abs_diff(la, ld, n, NULL) == 0.0);
    qd_free(ld);
    qd_llama_free(d);

    /* control: the same model with attn_q left in HF row order computes something else */
    int64_t rows = a->layers[0].wq.rows, cols = a->layers[0].wq.cols;
    float *hf = qd_mallocarray((size_t)(rows * cols), sizeof(float));
    const float *gq = a->layers[0].wq.data;
    for (int64_t s = 0; s < rows; s++)
        memcpy(hf + s * cols, gq + qd_permute_dst_row(s, rows, a->cfg.n_heads) * cols, (size_t)cols * sizeof(float));
    void *keep = a->layers[0].wq.data;
    a->layers[0].wq.data = hf;
    float *lh = logits_of(a, toks, 24);
    double d_h = max_abs_diff(la, lh, n, NULL);
    printf("attn_q in HF row order instead: max |dlogit| %.3g\n", d_h);
    assert_true(d_h > 1e-3);
    a->layers[0].wq.data = keep;
    qd_free(hf);
    qd_free(la);
    qd_free(lb);
    qd_free(lc);
    qd_free(lh);
    qd_llama_free(a);
    qd_llama_free(b);
    qd_llama_free(c);
    tu_rmtree(dir);
    free(dir);
}

/* stories260K as a llama2.c checkpoint, as the F32 GGUF and as a Q8_0 / Q4_K_M GGUF written from it: F32 is
 * exact, quantized GGUFs are read zero-copy in their types and agree with their own dequantized copy. */
static void test_runtime_load__llama2c_and_gguf_variants(void **state)
{
    (void)state;
    const char *path = tu_shared("models/stories260K.bin");
    if (!path)
        TU_SKIP("stories260K.bin not found");
    char *dir = tu_sandbox();
    char f32[600], q8[600], q4km[600];
    snprintf(f32, sizeof(f32), "%s/f32.gguf", dir);
    snprintf(q8, sizeof(q8), "%s/q8.gguf", dir);
    snprintf(q4km, sizeof(q4km), "%s/q4km.gguf", dir);
    assert_int_equal(quantize(path, f32, QD_FTYPE_ALL_F32), QD_OK);
    assert_int_equal(quantize(path, q8, QD_FTYPE_Q8_0), QD_OK);
    assert_int_equal(quantize(path, q4km, QD_FTYPE_Q4_K_M), QD_OK);
    qd_llama_model *r = NULL, *g = NULL, *v8 = NULL, *v4 = NULL, *d4 = NULL;
    assert_int_equal(qd_llama_load_model(&r, path), QD_OK);
    assert_int_equal(qd_llama_load_model(&g, f32), QD_OK);
    assert_int_equal(qd_llama_load_model(&v8, q8), QD_OK);
    assert_int_equal(qd_llama_load_model(&v4, q4km), QD_OK);
    assert_int_equal(qd_model_format_of(qd_llama_source(r)), QD_MODEL_LLAMA2C);
    assert_int_equal(qd_model_format_of(qd_llama_source(v4)), QD_MODEL_GGUF);
    assert_true(r->cfg.tied_output && !v8->cfg.tied_output); /* the writer spells output.weight out */
    assert_true(r->cfg.rope_theta == 10000.0f && g->cfg.rope_theta == 10000.0f);
    assert_true(fabsf(g->cfg.norm_eps - 1e-5f) < 1e-9f);
    assert_int_equal(g->cfg.seq_len, r->cfg.seq_len);
    assert_int_equal(qd_llama_same_shape(r, v4), QD_OK);
    assert_int_equal(v8->layers[0].wq.type, QD_TYPE_Q8_0);
    assert_int_equal(v8->n_owned_, 0);
    assert_int_equal(v4->n_owned_, 0);
    int nq = 0;
    for (int i = 0; i < qd_llama_tensor_count(v4); i++)
        nq += qd_llama_tensor_at(v4, i, NULL)->type != QD_TYPE_F32;
    assert_true(nq >= 5 * 7);

    int32_t toks[32];
    for (int i = 0; i < 32; i++)
        toks[i] = i == 0 ? 1 : (int32_t)((i * 53 + 7) % 512);
    size_t n = 32 * 512;
    float *lr = logits_of(r, toks, 32), *lg = logits_of(g, toks, 32);
    assert_true(max_abs_diff(lr, lg, n, NULL) == 0.0);
    assert_int_equal(qd_llama_dequantize(&d4, v4), QD_OK);
    float *l4 = logits_of(v4, toks, 32), *ld = logits_of(d4, toks, 32), *l8 = logits_of(v8, toks, 32);
    double scale, d = max_abs_diff(ld, l4, n, &scale);
    double e8 = max_abs_diff(lr, l8, n, NULL), e4 = max_abs_diff(lr, l4, n, NULL);
    printf("Q4_K_M GGUF vs its dequantized copy: %.3g (scale %.3g); vs reference: Q8_0 %.3g, Q4_K_M %.3g\n", d,
           scale, e8, e4);
    assert_true(d <= 1e-5 * scale);
    assert_true(e8 > 0 && e8 < e4);
    qd_free(lr);
    qd_free(lg);
    qd_free(l4);
    qd_free(ld);
    qd_free(l8);
    qd_llama_free(r);
    qd_llama_free(g);
    qd_llama_free(v8);
    qd_llama_free(v4);
    qd_llama_free(d4);
    tu_rmtree(dir);
    free(dir);
}

static void test_runtime_load__bad_files(void **state)
{
    (void)state;
    char *dir = tu_sandbox();
    char p[600], gg[600];
    qd_llama_model *m = NULL;
    snprintf(p, sizeof(p), "%s/none.gguf", dir);
    assert_int_equal(qd_llama_load_model(&m, p), QD_ENOTFOUND);
    assert_null(m);
    snprintf(gg, sizeof(gg), "%s/g.gguf", dir);
    if (run("%s/gen_ckpt --out %s --seed 3 --layers 2 --dim 64 --ff 128 --heads 4 --kv-heads 2 --vocab 256",
            tools(), gg) != 0) {
        tu_rmtree(dir);
        free(dir);
        TU_SKIP("gen_ckpt not built (QD_TOOLS)");
    }
    /* truncated: refused by the parser with a message naming the file */
    FILE *f = fopen(gg, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = qd_malloc((size_t)len);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    f = fopen(p, "wb");
    fwrite(b, 1, (size_t)len / 2, f);
    fclose(f);
    int rc = qd_llama_load_model(&m, p);
    assert_true(rc == QD_ETRUNCATED || rc == QD_ECORRUPT);
    assert_null(m);
    /* garbage from memory: refused, buffer stays ours */
    uint8_t *junk = qd_malloc(4096);
    for (int i = 0; i < 4096; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    memcpy(junk, "GGUF", 4);
    assert_true(qd_llama_load_model_mem(&m, junk, 4096, "sha256:junk") < 0);
    assert_non_null(strstr(qd_error_last()->message, "sha256:junk"));
    qd_free(junk);
    /* a whole GGUF from memory: the model takes the buffer */
    assert_int_equal(qd_llama_load_model_mem(&m, b, (size_t)len, "blob"), QD_OK);
    assert_int_equal(m->cfg.n_layers, 2);
    qd_llama_free(m);
    /* the llama2.c-only loader refuses a GGUF */
    assert_int_equal(qd_llama_load_llama2c(&m, gg), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "not a llama2c checkpoint"));
    tu_rmtree(dir);
    free(dir);
}

/* A real GGUF variant's report turned into the variant predicate: fields from the GGUF and the report; refusals. */
static void test_runtime_load__variant_predicate(void **state)
{
    (void)state;
    const char *path = tu_shared("models/stories260K.bin");
    if (!path)
        TU_SKIP("stories260K.bin not found");
    char *dir = tu_sandbox();
    char q4[600];
    snprintf(q4, sizeof(q4), "%s/q4km.gguf", dir);
    assert_int_equal(quantize(path, q4, QD_FTYPE_Q4_K_M), QD_OK);
    qd_llama_model *r = NULL, *v = NULL;
    qd_valset *set = NULL;
    qd_validation_report *rep = NULL;
    qd_validation_policy pol;
    assert_int_equal(qd_llama_load_model(&r, path), QD_OK);
    assert_int_equal(qd_llama_load_model(&v, q4), QD_OK);
    assert_int_equal(qd_valset_sample(&set, r, 4, 64, 3, 2), QD_OK);
    assert_int_equal(qd_validate_run(&rep, r, v, set, NULL), QD_OK);
    const char *dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const char *hw[] = {"cpu-x86_64"};
    qd_variant_predicate_info pi = {dg, NULL, dg, v, hw, 1, "quantd@test", 0};
    char *out = NULL;
    assert_int_equal(qd_variant_predicate_json(&out, rep, &pi), QD_EINVAL); /* not judged yet */
    assert_non_null(strstr(qd_error_last()->message, "judge"));
    qd_validation_policy_default(&pol);
    assert_int_equal(qd_validation_judge(rep, &pol, NULL), QD_OK);
    pi.source_digest = "sha256:xyz";
    assert_int_equal(qd_variant_predicate_json(&out, rep, &pi), QD_EINVAL);
    pi.source_digest = dg;
    const char *bad_hw[] = {"CPU x86"};
    pi.target_hardware = bad_hw;
    assert_int_equal(qd_variant_predicate_json(&out, rep, &pi), QD_EINVAL);
    pi.target_hardware = hw;
    assert_int_equal(qd_variant_predicate_json(&out, rep, &pi), QD_OK);
    json_error_t je;
    json_t *p = json_loads(out, 0, &je);
    assert_non_null(p);
    json_t *rc = json_object_get(p, "recipe"), *val = json_object_get(p, "validation");
    assert_string_equal(json_string_value(json_object_get(rc, "format")), "Q4_K_M");
    assert_string_equal(json_string_value(json_object_get(rc, "method")), "k-quant");
    assert_int_equal(json_integer_value(json_object_get(rc, "weight_bits")), 4);
    assert_int_equal(json_integer_value(json_object_get(rc, "group_size")), 256);
    assert_true(json_array_size(json_object_get(rc, "overrides")) > 0); /* 64-wide rows take fallback types */
    assert_string_equal(json_string_value(json_object_get(val, "verdict")), rep->pass ? "pass" : "fail");
    json_t *m = json_object_get(val, "metrics");
    assert_true(fabs(json_real_value(json_object_get(m, "kld_mean")) - rep->overall.mean) <= 1e-9 * rep->overall.mean);
    assert_int_equal(json_integer_value(json_object_get(m, "tokens")), rep->overall.n);
    assert_string_equal(json_string_value(json_object_get(p, "created_at")), "1970-01-01T00:00:00Z");
    json_decref(p);
    qd_free(out);
    assert_int_equal(qd_validation_predicate_json(&out, rep, dg, dg), QD_OK);
    assert_non_null(strstr(out, "\"reference_digest\""));
    qd_free(out);
    qd_validation_report_free(rep);
    qd_valset_free(set);
    qd_llama_free(r);
    qd_llama_free(v);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime_load__safetensors_matches_its_f32_gguf),
        cmocka_unit_test(test_runtime_load__llama2c_and_gguf_variants),
        cmocka_unit_test(test_runtime_load__bad_files),
        cmocka_unit_test(test_runtime_load__variant_predicate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
