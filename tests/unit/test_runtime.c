/*
 * test_runtime.c - the reference runtime: stories260K against an independent naive forward pass written here
 * (double precision, one token at a time, read straight from the file), greedy determinism, quantized paths
 * against dequantize-then-f32 (1e-5 relative), KV cache precisions, bad input.
 */
#include <math.h>

#include "testutil.h"

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/runtime.h"

static const char *stories(void) { return tu_shared("models/stories260K.bin"); }

#define NEED_STORIES(p)                                                                                            \
    const char *p = stories();                                                                                     \
    if (!p) {                                                                                                      \
        TU_SKIP("../shared/models/stories260K.bin is absent");                                                     \
        return;                                                                                                    \
    }

/* ---- an independent naive llama2.c forward (llama2.c's run.c semantics), in double ---- */
typedef struct naive {
    int dim, hid, nl, nh, nkv, vocab, seq;
    float *w;
    double *kc, *vc;
} naive;

static float *nf(naive *n, size_t off) { return n->w + off; }

static void naive_logits(naive *n, const int32_t *toks, int ntok, double *out /* vocab, after last token */)
{
    int dim = n->dim, hid = n->hid, hs = dim / n->nh, kvd = dim * n->nkv / n->nh;
    size_t o_emb = 0, o_ra = o_emb + (size_t)n->vocab * dim, o_wq = o_ra + (size_t)n->nl * dim,
           o_wk = o_wq + (size_t)n->nl * dim * dim, o_wv = o_wk + (size_t)n->nl * kvd * dim,
           o_wo = o_wv + (size_t)n->nl * kvd * dim, o_rf = o_wo + (size_t)n->nl * dim * dim,
           o_w1 = o_rf + (size_t)n->nl * dim, o_w2 = o_w1 + (size_t)n->nl * hid * dim,
           o_w3 = o_w2 + (size_t)n->nl * dim * hid, o_fin = o_w3 + (size_t)n->nl * hid * dim;
    double *x = calloc(dim, 8), *xb = calloc(dim, 8), *q = calloc(dim, 8), *k = calloc(kvd, 8), *v = calloc(kvd, 8),
           *att = calloc(dim, 8), *h1 = calloc(hid, 8), *h3 = calloc(hid, 8), *sc = calloc(n->seq, 8);
    for (int pos = 0; pos < ntok; pos++) {
        for (int i = 0; i < dim; i++)
            x[i] = nf(n, o_emb)[(size_t)toks[pos] * dim + i];
        for (int l = 0; l < n->nl; l++) {
            double ss = 0;
            for (int i = 0; i < dim; i++)
                ss += x[i] * x[i];
            ss = 1.0 / sqrt(ss / dim + 1e-5);
            for (int i = 0; i < dim; i++)
                xb[i] = x[i] * ss * nf(n, o_ra)[(size_t)l * dim + i];
            for (int r = 0; r < dim; r++) {
                q[r] = 0;
                for (int c = 0; c < dim; c++)
                    q[r] += nf(n, o_wq)[((size_t)l * dim + r) * dim + c] * xb[c];
            }
            for (int r = 0; r < kvd; r++) {
                k[r] = v[r] = 0;
                for (int c = 0; c < dim; c++) {
                    k[r] += nf(n, o_wk)[((size_t)l * kvd + r) * dim + c] * xb[c];
                    v[r] += nf(n, o_wv)[((size_t)l * kvd + r) * dim + c] * xb[c];
                }
            }
            for (int i = 0; i < dim; i += 2) {
                double f = 1.0 / pow(10000.0, (double)(i % hs) / hs), a = pos * f, co = cos(a), si = sin(a);
                double q0 = q[i], q1 = q[i + 1];
                q[i] = q0 * co - q1 * si;
                q[i + 1] = q0 * si + q1 * co;
                if (i < kvd) {
                    double k0 = k[i], k1 = k[i + 1];
                    k[i] = k0 * co - k1 * si;
                    k[i + 1] = k0 * si + k1 * co;
                }
            }
            memcpy(n->kc + ((size_t)l * n->seq + pos) * kvd, k, 8 * (size_t)kvd);
            memcpy(n->vc + ((size_t)l * n->seq + pos) * kvd, v, 8 * (size_t)kvd);
            for (int h = 0; h < n->nh; h++) {
                int kh = h / (n->nh / n->nkv);
                double mx = -1e300, sum = 0;
                for (int t = 0; t <= pos; t++) {
                    double s = 0;
                    for (int d = 0; d < hs; d++)
                        s += q[h * hs + d] * n->kc[((size_t)l * n->seq + t) * kvd + kh * hs + d];
                    sc[t] = s / sqrt((double)hs);
                    mx = sc[t] > mx ? sc[t] : mx;
                }
                for (int t = 0; t <= pos; t++)
                    sum += (sc[t] = exp(sc[t] - mx));
                for (int d = 0; d < hs; d++) {
                    double a = 0;
                    for (int t = 0; t <= pos; t++)
                        a += sc[t] / sum * n->vc[((size_t)l * n->seq + t) * kvd + kh * hs + d];
                    att[h * hs + d] = a;
                }
            }
            for (int r = 0; r < dim; r++) {
                double s = 0;
                for (int c = 0; c < dim; c++)
                    s += nf(n, o_wo)[((size_t)l * dim + r) * dim + c] * att[c];
                x[r] += s;
            }
            ss = 0;
            for (int i = 0; i < dim; i++)
                ss += x[i] * x[i];
            ss = 1.0 / sqrt(ss / dim + 1e-5);
            for (int i = 0; i < dim; i++)
                xb[i] = x[i] * ss * nf(n, o_rf)[(size_t)l * dim + i];
            for (int r = 0; r < hid; r++) {
                h1[r] = h3[r] = 0;
                for (int c = 0; c < dim; c++) {
                    h1[r] += nf(n, o_w1)[((size_t)l * hid + r) * dim + c] * xb[c];
                    h3[r] += nf(n, o_w3)[((size_t)l * hid + r) * dim + c] * xb[c];
                }
                h1[r] = h1[r] / (1 + exp(-h1[r])) * h3[r];
            }
            for (int r = 0; r < dim; r++) {
                double s = 0;
                for (int c = 0; c < hid; c++)
                    s += nf(n, o_w2)[((size_t)l * dim + r) * hid + c] * h1[c];
                x[r] += s;
            }
        }
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += x[i] * x[i];
        ss = 1.0 / sqrt(ss / dim + 1e-5);
        for (int i = 0; i < dim; i++)
            xb[i] = x[i] * ss * nf(n, o_fin)[i];
        for (int r = 0; r < n->vocab; r++) {
            double s = 0;
            for (int c = 0; c < dim; c++)
                s += nf(n, o_emb)[(size_t)r * dim + c] * xb[c];
            out[r] = s;
        }
    }
    free(x), free(xb), free(q), free(k), free(v), free(att), free(h1), free(h3), free(sc);
}

static naive *naive_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    int32_t h[7];
    assert_non_null(f);
    assert_int_equal(fread(h, 4, 7, f), 7);
    naive *n = calloc(1, sizeof(*n));
    n->dim = h[0], n->hid = h[1], n->nl = h[2], n->nh = h[3], n->nkv = h[4], n->vocab = h[5], n->seq = h[6];
    fseek(f, 0, SEEK_END);
    long sz = ftell(f) - 28;
    fseek(f, 28, SEEK_SET);
    n->w = malloc((size_t)sz);
    assert_int_equal(fread(n->w, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    int kvd = n->dim * n->nkv / n->nh;
    n->kc = calloc((size_t)n->nl * n->seq * kvd, 8);
    n->vc = calloc((size_t)n->nl * n->seq * kvd, 8);
    return n;
}

static void naive_free(naive *n)
{
    free(n->w), free(n->kc), free(n->vc), free(n);
}

static double max_abs_diff(const float *a, const float *b, size_t n, double *scale)
{
    double m = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        m = fmax(m, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    if (scale)
        *scale = s;
    return m;
}

static void test_runtime__stories_matches_naive_forward(void **state)
{
    (void)state;
    NEED_STORIES(path);
    qd_llama_model *m;
    assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
    assert_int_equal(m->cfg.dim, 64);
    assert_int_equal(m->cfg.n_kv_heads, 4);
    assert_true(m->cfg.tied_output);
    naive *n = naive_load(path);
    /* a fixed prompt of 24 tokens drawn from the test seed, evaluated as one batch */
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    int32_t toks[24];
    toks[0] = 1;
    for (int i = 1; i < 24; i++)
        toks[i] = (int32_t)(tu_next(&r) % 512);
    qd_llama_ctx *c;
    assert_int_equal(qd_llama_ctx_new(&c, m, NULL), QD_OK);
    float *lg = malloc(sizeof(float) * 24 * 512);
    assert_int_equal(qd_llama_eval(c, toks, 24, lg, NULL), QD_OK);
    double *ref = malloc(8 * 512);
    float ref_f[512];
    for (int p = 1; p <= 24; p += 23) { /* after the first and after the last token */
        naive_logits(n, toks, p, ref);
        for (int i = 0; i < 512; i++)
            ref_f[i] = (float)ref[i];
        double scale, d = max_abs_diff(lg + (size_t)(p - 1) * 512, ref_f, 512, &scale);
        printf("position %d: max |ours - naive| = %.3g (logit scale %.3g)\n", p - 1, d, scale);
        assert_true(d < 1e-4 * scale);
    }
    free(ref);
    free(lg);
    naive_free(n);
    qd_llama_ctx_free(c);
    qd_llama_free(m);
}

static void test_runtime__greedy_32_deterministic(void **state)
{
    (void)state;
    NEED_STORIES(path);
    qd_llama_model *m;
    assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
    int32_t a[32], b[32], s[32];
    for (int run = 0; run < 3; run++) {
        qd_llama_ctx_options o = QD_LLAMA_CTX_OPTIONS_INIT;
        o.n_threads = run == 0 ? 1 : 2;
        o.simd = run == 2 ? -1 : 0;
        qd_llama_ctx *c;
        assert_int_equal(qd_llama_ctx_new(&c, m, &o), QD_OK);
        assert_int_equal(qd_llama_generate_greedy(c, NULL, 0, 32, run == 0 ? a : run == 1 ? b : s), QD_OK);
        assert_int_equal(qd_llama_n_past(c), 32);
        qd_llama_ctx_free(c);
    }
    assert_memory_equal(a, b, sizeof(a)); /* thread count does not change a single bit */
    assert_memory_equal(a, s, sizeof(a)); /* scalar and AVX2 dots pick the same tokens */
    for (int i = 0; i < 32; i++)
        assert_true(a[i] >= 0 && a[i] < 512);
    /* batched prompt evaluation and token-by-token decoding agree: replay the greedy tokens as one batch */
    qd_llama_ctx *c;
    assert_int_equal(qd_llama_ctx_new(&c, m, NULL), QD_OK);
    int32_t seq[32];
    seq[0] = 1;
    memcpy(seq + 1, a, 31 * sizeof(int32_t));
    float *lg = malloc(sizeof(float) * 32 * 512);
    assert_int_equal(qd_llama_eval(c, seq, 32, lg, NULL), QD_OK);
    for (int p = 0; p < 32; p++) {
        int best = 0;
        for (int i = 1; i < 512; i++)
            if (lg[p * 512 + i] > lg[p * 512 + best])
                best = i;
        assert_int_equal(best, a[p]);
    }
    free(lg);
    qd_llama_ctx_free(c);
    qd_llama_free(m);
}

/* logits of a model over a fixed sequence */
static float *logits_of(const qd_llama_model *m, qd_llama_matmul mm, qd_llama_kv_type kv, const int32_t *t, int n)
{
    qd_llama_ctx_options o = QD_LLAMA_CTX_OPTIONS_INIT;
    o.matmul = mm;
    o.kv_type = kv;
    qd_llama_ctx *c;
    assert_int_equal(qd_llama_ctx_new(&c, m, &o), QD_OK);
    float *lg = malloc(sizeof(float) * (size_t)n * m->cfg.vocab);
    assert_int_equal(qd_llama_eval(c, t, n, lg, NULL), QD_OK);
    qd_llama_ctx_free(c);
    return lg;
}

static void check_paths(qd_llama_model *base, qd_type type, const int32_t *t, int n, bool expect_quantized)
{
    qd_llama_quant_options qo = {type, false, QD_TYPE_COUNT};
    qd_llama_model *q, *d;
    assert_int_equal(qd_llama_quantize(&q, base, &qo), QD_OK);
    assert_int_equal(qd_llama_dequantize(&d, q), QD_OK);
    if (expect_quantized)
        assert_int_equal(q->layers[0].wq.type, type);
    size_t nv = (size_t)n * base->cfg.vocab;
    float *ld = logits_of(d, QD_MATMUL_AUTO, QD_KV_F32, t, n);
    float *lr = logits_of(q, QD_MATMUL_DEQUANT_ROW, QD_KV_F32, t, n);
    float *lq = logits_of(q, QD_MATMUL_QDOT, QD_KV_F32, t, n);
    double scale, d1 = max_abs_diff(lr, ld, nv, &scale), d2 = max_abs_diff(lq, ld, nv, NULL);
    printf("%-7s dequant-row %.2e, qdot %.2e relative to dequantize-then-f32 (scale %.3g)\n",
           qd_type_traits_get(type)->name, d1 / scale, d2 / scale, scale);
    assert_true(d1 <= 1e-5 * scale);
    assert_true(d2 <= 1e-5 * scale);
    /* and the quantized model really differs from the f32 one */
    float *lf = logits_of(base, QD_MATMUL_AUTO, QD_KV_F32, t, n);
    if (expect_quantized)
        assert_true(max_abs_diff(lf, ld, nv, NULL) > 1e-4 * scale);
    free(ld), free(lr), free(lq), free(lf);
    qd_llama_free(q);
    qd_llama_free(d);
}

static void test_runtime__quantized_paths_agree_with_dequantized(void **state)
{
    (void)state;
    int32_t t[40];
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    /* a generated model whose rows are multiples of 256, so K-quants and i-quants are really used */
    qd_llama_config cfg = {256, 512, 2, 4, 2, 300, 64, 10000.0f, 1e-5f, false};
    qd_llama_model *g;
    assert_int_equal(qd_llama_synthetic(&g, &cfg, tu_next(&r)), QD_OK);
    assert_int_equal(qd_llama_check(g), QD_OK);
    for (int i = 0; i < 40; i++)
        t[i] = (int32_t)(tu_next(&r) % 300);
    static const qd_type types[] = {QD_TYPE_Q8_0, QD_TYPE_Q4_0, QD_TYPE_Q5_0, QD_TYPE_Q4_K, QD_TYPE_Q6_K,
                                    QD_TYPE_Q2_K, QD_TYPE_IQ4_XS, QD_TYPE_F16};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        check_paths(g, types[i], t, 40, true);
    qd_llama_free(g);
    const char *path = stories();
    if (path) {
        qd_llama_model *m;
        assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
        t[0] = 1;
        check_paths(m, QD_TYPE_Q8_0, t, 40, true);
        check_paths(m, QD_TYPE_Q4_0, t, 40, true);
        qd_llama_free(m);
    }
}

static void test_runtime__quantize_keeps_norms_and_odd_rows_f32(void **state)
{
    (void)state;
    NEED_STORIES(path);
    qd_llama_model *m, *q, *fb;
    assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
    qd_llama_quant_options qo = {QD_TYPE_Q4_K, false, QD_TYPE_COUNT};
    assert_int_equal(qd_llama_quantize(&q, m, &qo), QD_OK);
    /* rows of 64 and 172 do not fit Q4_K's 256 blocks: everything stays f32 */
    assert_int_equal(q->layers[0].wq.type, QD_TYPE_F32);
    qo.llama_cpp_fallback = true;
    assert_int_equal(qd_llama_quantize(&fb, m, &qo), QD_OK);
    assert_int_equal(fb->layers[0].wq.type, QD_TYPE_Q5_0); /* llama.cpp's fallback for Q4_K */
    assert_int_equal(fb->layers[0].w2.type, QD_TYPE_F32);  /* 172 columns fit no 32-block */
    assert_int_equal(fb->layers[0].attn_norm.type, QD_TYPE_F32);
    assert_true(fb->output.data == fb->tok_embd.data);     /* still tied */
    int64_t np;
    double bpw = qd_llama_bpw(fb, &np);
    /* all weights incl. norms (the tied classifier once), excl. the RoPE tables */
    assert_int_equal(np, 512 * 64 + 5 * (2 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64) + 64);
    assert_true(bpw > 5.5 && bpw < 32);
    qd_llama_free(q);
    qd_llama_free(fb);
    /* a type that needs an importance matrix is refused */
    qo.type = QD_TYPE_IQ2_XXS;
    assert_int_equal(qd_llama_quantize(&q, m, &qo), QD_EUNSUPPORTED);
    qd_llama_free(m);
}

static void test_runtime__widened_model_is_equivalent(void **state)
{
    (void)state;
    NEED_STORIES(path);
    qd_llama_model *m, *w;
    assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
    assert_int_equal(qd_llama_widen(&w, m, 256, 256), QD_OK);
    assert_int_equal(w->cfg.n_heads, 32);
    assert_int_equal(w->cfg.n_kv_heads, 4);
    int32_t t[48];
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 2);
    t[0] = 1;
    for (int i = 1; i < 48; i++)
        t[i] = (int32_t)(tu_next(&r) % 512);
    float *a = logits_of(m, QD_MATMUL_AUTO, QD_KV_F32, t, 48), *b = logits_of(w, QD_MATMUL_AUTO, QD_KV_F32, t, 48);
    double scale, d = max_abs_diff(b, a, 48 * 512, &scale);
    printf("widened d256 vs original: max logit difference %.3g (scale %.3g)\n", d, scale);
    assert_true(d < 1e-4 * scale);
    /* and now Q4_K really applies to every matrix */
    qd_llama_quant_options qo = {QD_TYPE_Q4_K, false, QD_TYPE_COUNT};
    qd_llama_model *q;
    assert_int_equal(qd_llama_quantize(&q, w, &qo), QD_OK);
    assert_int_equal(q->layers[4].w2.type, QD_TYPE_Q4_K);
    assert_int_equal(q->tok_embd.type, QD_TYPE_Q4_K);
    free(a), free(b);
    qd_llama_free(q);
    qd_llama_free(w);
    qd_llama_free(m);
}

static void test_runtime__kv_cache_precisions(void **state)
{
    (void)state;
    NEED_STORIES(path);
    qd_llama_model *m;
    assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
    int32_t t[64];
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 1);
    t[0] = 1;
    for (int i = 1; i < 64; i++)
        t[i] = (int32_t)(tu_next(&r) % 512);
    float *base = logits_of(m, QD_MATMUL_AUTO, QD_KV_F32, t, 64);
    double err[5] = {0};
    for (int k = 1; k < 5; k++) {
        float *lg = logits_of(m, QD_MATMUL_AUTO, (qd_llama_kv_type)k, t, 64);
        err[k] = max_abs_diff(lg, base, 64 * 512, NULL);
        printf("kv %-8s max logit change %.4g\n", qd_llama_kv_name((qd_llama_kv_type)k), err[k]);
        free(lg);
    }
    assert_true(err[QD_KV_F16] > 0 && err[QD_KV_F16] < err[QD_KV_Q8_0]);
    assert_true(err[QD_KV_Q8_0] < err[QD_KV_Q4_0]);
    assert_true(err[QD_KV_FP8_E4M3] > err[QD_KV_F16]);
    free(base);
    qd_llama_kv_type kt;
    assert_int_equal(qd_llama_kv_from_name("Q8_0", &kt), QD_OK);
    assert_int_equal(kt, QD_KV_Q8_0);
    assert_int_equal(qd_llama_kv_from_name("q3", &kt), QD_EINVAL);
    qd_llama_free(m);
}

static void test_runtime__fp8_e4m3(void **state)
{
    (void)state;
    /* every finite code round-trips; values saturate at 448; rounding is to nearest, ties to even */
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7f) == 0x7f)
            continue;
        float v = qd_fp8_e4m3_to_f32((uint8_t)b);
        assert_int_equal(qd_fp8_e4m3_from_f32(v), b == 0x80 ? 0x80 : b);
    }
    assert_true(qd_fp8_e4m3_to_f32(qd_fp8_e4m3_from_f32(1e6f)) == 448.0f);
    assert_true(qd_fp8_e4m3_to_f32(qd_fp8_e4m3_from_f32(1.0625f)) == 1.0f);  /* tie between 1 and 1.125 -> even */
    assert_true(qd_fp8_e4m3_to_f32(qd_fp8_e4m3_from_f32(1.1875f)) == 1.25f); /* tie between 1.125 and 1.25 */
    assert_true(qd_fp8_e4m3_to_f32(0x01) == 0x1p-9f);                          /* smallest subnormal */
}

static void test_runtime__bad_input(void **state)
{
    (void)state;
    char *dir = tu_sandbox();
    char p[600];
    qd_llama_model *m = NULL;
    snprintf(p, sizeof(p), "%s/none.bin", dir);
    assert_int_equal(qd_llama_load_llama2c(&m, p), QD_ENOTFOUND);
    /* a header that is not a llama2.c one */
    FILE *f = fopen(p, "wb");
    int32_t h[7] = {64, 172, 5, 7, 4, 512, 512}; /* 64 % 7 != 0 */
    fwrite(h, 4, 7, f);
    fclose(f);
    assert_int_equal(qd_llama_load_llama2c(&m, p), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "not a plausible llama2.c header"));
    const char *path = stories();
    if (path) {
        /* a truncated checkpoint */
        FILE *in = fopen(path, "rb");
        char *buf = malloc(1056540);
        assert_int_equal(fread(buf, 1, 1056540, in), 1056540);
        fclose(in);
        f = fopen(p, "wb");
        fwrite(buf, 1, 1000000, f);
        fclose(f);
        free(buf);
        assert_int_equal(qd_llama_load_llama2c(&m, p), QD_ETRUNCATED);
        assert_non_null(strstr(qd_error_last()->message, "describes 1056540 bytes"));
        /* the same from memory: refused, the buffer stays ours; whole, the model takes it */
        char *mem = qd_malloc(1056540);
        in = fopen(path, "rb");
        assert_int_equal(fread(mem, 1, 1056540, in), 1056540);
        fclose(in);
        assert_int_equal(qd_llama_load_llama2c_buf(&m, mem, 1000000, "blob"), QD_ETRUNCATED);
        assert_non_null(strstr(qd_error_last()->message, "blob: "));
        assert_non_null(strstr(qd_error_last()->message, "the file has 1000000"));
        assert_int_equal(qd_llama_load_llama2c_buf(&m, mem, 1056540, "blob"), QD_OK);
        assert_int_equal(m->cfg.n_layers, 5);
        qd_llama_free(m);
        assert_int_equal(qd_llama_load_llama2c(&m, path), QD_OK);
        qd_llama_ctx *c;
        assert_int_equal(qd_llama_ctx_new(&c, m, NULL), QD_OK);
        int32_t t[3] = {1, 512, 3};
        float lg[512];
        assert_int_equal(qd_llama_eval(c, t, 3, NULL, lg), QD_EINVAL);
        assert_non_null(strstr(qd_error_last()->message, "token id 512 at position 1 is out of range"));
        t[1] = -1;
        assert_int_equal(qd_llama_eval(c, t, 3, NULL, lg), QD_EINVAL);
        assert_int_equal(qd_llama_n_past(c), 0);
        qd_llama_ctx_free(c);
        /* a context too small for the tokens */
        qd_llama_ctx_options o = QD_LLAMA_CTX_OPTIONS_INIT;
        o.n_ctx = 2;
        assert_int_equal(qd_llama_ctx_new(&c, m, &o), QD_OK);
        t[1] = 5;
        assert_int_equal(qd_llama_eval(c, t, 3, NULL, lg), QD_EINVAL);
        assert_non_null(strstr(qd_error_last()->message, "do not fit the context"));
        qd_llama_ctx_free(c);
        /* a model whose tensor does not fit its config */
        m->layers[2].wk.rows = 64;
        assert_int_equal(qd_llama_check(m), QD_EINVAL);
        assert_non_null(strstr(qd_error_last()->message, "blk.2.attn_k.weight is [64, 64]"));
        assert_int_equal(qd_llama_ctx_new(&c, m, NULL), QD_EINVAL);
        qd_llama_free(m);
    }
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime__stories_matches_naive_forward),
        cmocka_unit_test(test_runtime__greedy_32_deterministic),
        cmocka_unit_test(test_runtime__quantized_paths_agree_with_dequantized),
        cmocka_unit_test(test_runtime__quantize_keeps_norms_and_odd_rows_f32),
        cmocka_unit_test(test_runtime__widened_model_is_equivalent),
        cmocka_unit_test(test_runtime__kv_cache_precisions),
        cmocka_unit_test(test_runtime__fp8_e4m3),
        cmocka_unit_test(test_runtime__bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
