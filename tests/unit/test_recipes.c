/*
 * test_recipes.c - per-tensor type choices of the llama-quantize recipes on a stories260K-shaped tensor list (rows
 * of 64 and 172: the fallbacks) and on 7B-, 8B-GQA- and 70B-shaped lists (the layer-position rules).
 */
#include "testutil.h"

#include "qd/err.h"
#include "qd/recipe.h"

typedef struct model_list {
    qd_hparams hp;
    qd_recipe_tensor *ts;
    char (*names)[64];
    size_t n;
} model_list;

static model_list make_list(int64_t dim, int64_t ff, int64_t layers, int64_t heads, int64_t kv_heads, int64_t vocab,
                            int with_output)
{
    model_list m;
    memset(&m, 0, sizeof(m));
    snprintf(m.hp.arch, sizeof(m.hp.arch), "llama");
    m.hp.n_embd = dim, m.hp.n_ff = ff, m.hp.n_layer = layers, m.hp.n_head = heads, m.hp.n_head_kv = kv_heads;
    m.hp.n_vocab = vocab;
    size_t cap = (size_t)layers * 9 + 3;
    m.ts = calloc(cap, sizeof(*m.ts));
    m.names = calloc(cap, 64);
    int64_t kv = dim / heads * kv_heads;
#define T(nm, nd, a, b)                                                                                            \
    do {                                                                                                           \
        snprintf(m.names[m.n], 64, "%s", nm);                                                                      \
        m.ts[m.n] = (qd_recipe_tensor){m.names[m.n], nd, {a, b, 1, 1}, QD_TYPE_F32};                               \
        m.n++;                                                                                                     \
    } while (0)
    char b[64];
    T("token_embd.weight", 2, dim, vocab);
    for (int64_t l = 0; l < layers; l++) {
        const struct {
            const char *s;
            uint32_t nd;
            int64_t a, b;
        } per[] = {{"attn_norm", 1, dim, 1}, {"attn_q", 2, dim, dim},      {"attn_k", 2, dim, kv},
                   {"attn_v", 2, dim, kv},   {"attn_output", 2, dim, dim}, {"ffn_norm", 1, dim, 1},
                   {"ffn_gate", 2, dim, ff}, {"ffn_up", 2, dim, ff},       {"ffn_down", 2, ff, dim}};
        for (int i = 0; i < 9; i++) {
            snprintf(b, sizeof(b), "blk.%lld.%s.weight", (long long)l, per[i].s);
            T(b, per[i].nd, per[i].a, per[i].b);
        }
    }
    T("output_norm.weight", 1, dim, 1);
    if (with_output)
        T("output.weight", 2, dim, vocab);
#undef T
    return m;
}

static void free_list(model_list *m)
{
    free(m->ts);
    free(m->names);
}

/* The expected type of one tensor, as a function of (kind, layer). */
typedef qd_type (*expect_fn)(const char *kind, int layer, int n_layer);

static void check(model_list *m, qd_ftype ft, const qd_recipe_opts *o, expect_fn f, size_t want_fallback)
{
    qd_recipe_choice *c = calloc(m->n, sizeof(*c));
    size_t nf = 99;
    assert_int_equal(qd_recipe_plan(c, &nf, &m->hp, ft, o, m->ts, m->n), QD_OK);
    for (size_t i = 0; i < m->n; i++) {
        const char *name = m->ts[i].name;
        char kind[32];
        int layer = -1;
        if (sscanf(name, "blk.%d.%31[a-z_]", &layer, kind) != 2) {
            snprintf(kind, sizeof(kind), "%.*s", (int)(strchr(name, '.') - name), name);
            layer = -1;
        }
        qd_type want = f(kind, layer, (int)m->hp.n_layer);
        if (c[i].type != want)
            fail_msg("%s %s: got %s, want %s", qd_recipe_name(ft), name, qd_type_traits_get(c[i].type)->name,
                     qd_type_traits_get(want)->name);
        assert_int_equal(c[i].quantize, c[i].type != QD_TYPE_F32);
    }
    if (want_fallback != (size_t)-1)
        assert_int_equal(nf, want_fallback);
    free(c);
}

static int more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }
static int is_norm(const char *k) { return strstr(k, "norm") != NULL; }

/* ---- stories260K shape: dim 64, ff 172, 5 layers, 8/4 heads, vocab 512 -------------------------------------- */

static qd_type st_q4km(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q8_0;                       /* 64 % 256: Q8_0 */
    if (!strcmp(k, "ffn_down")) return QD_TYPE_F16;                      /* 172: Q6_K/Q4_K -> Q8_0/Q5_0 -> F16 */
    if (!strcmp(k, "attn_v") && more_bits(l, n)) return QD_TYPE_Q8_0;    /* Q6_K -> Q8_0 */
    return QD_TYPE_Q5_0;                                                 /* Q4_K -> Q5_0 */
}
static qd_type st_q6k(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "ffn_down")) return QD_TYPE_F16;
    return QD_TYPE_Q8_0;
}
static qd_type st_q80(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "ffn_down")) return QD_TYPE_F16; /* llama.cpp refuses; quantd writes F16 */
    return QD_TYPE_Q8_0;
}
static qd_type st_q3km(const char *k, int l, int n)
{
    (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q8_0;
    if (!strcmp(k, "ffn_down")) return QD_TYPE_F16;                     /* Q4_K -> Q5_0 -> F16 */
    if (!strcmp(k, "attn_v")) return l < 2 ? QD_TYPE_Q5_1 : QD_TYPE_Q5_0; /* Q5_K -> Q5_1, Q4_K -> Q5_0 */
    if (!strcmp(k, "attn_output")) return QD_TYPE_Q5_0;
    return QD_TYPE_Q4_0;                                                 /* Q3_K -> Q4_0 (current llama.cpp) */
}
static qd_type st_f16(const char *k, int l, int n)
{
    (void)l, (void)n;
    return is_norm(k) ? QD_TYPE_F32 : QD_TYPE_F16;
}

static void test_recipes__stories_shape_fallbacks(void **state)
{
    (void)state;
    model_list m = make_list(64, 172, 5, 8, 4, 512, 1);
    qd_recipe_opts o = QD_RECIPE_OPTS_INIT;
    check(&m, QD_FTYPE_Q4_K_M, &o, st_q4km, 5 * 7 + 1 - 0); /* every 2-D tensor but output falls back */
    check(&m, QD_FTYPE_Q6_K, &o, st_q6k, (size_t)-1);
    check(&m, QD_FTYPE_Q8_0, &o, st_q80, 5);
    check(&m, QD_FTYPE_Q3_K_M, &o, st_q3km, (size_t)-1);
    check(&m, QD_FTYPE_F16, &o, st_f16, 0);
    /* beyond_llama marks exactly the tensors llama.cpp refuses */
    qd_recipe_choice c[64];
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_0, &o, m.ts, m.n), QD_OK);
    for (size_t i = 0; i < m.n; i++)
        assert_int_equal(c[i].beyond_llama, strstr(m.ts[i].name, "ffn_down") != NULL);
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    for (size_t i = 0; i < m.n; i++)
        assert_false(c[i].beyond_llama);
    /* --pure: every 2-D tensor gets the base type, through the same block-size fallback */
    o.pure = true;
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q8_0, &o, m.ts, m.n), QD_OK);
    for (size_t i = 0; i < m.n; i++)
        if (m.ts[i].n_dims == 2) {
            assert_int_equal(c[i].type, strstr(m.ts[i].name, "ffn_down") ? QD_TYPE_F16 : QD_TYPE_Q8_0);
            assert_int_equal(c[i].beyond_llama, strstr(m.ts[i].name, "ffn_down") != NULL);
        }
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    for (size_t i = 0; i < m.n; i++)
        if (m.ts[i].n_dims == 2) { /* no attn_v/output rules: Q4_K -> Q5_0 everywhere, ffn_down -> F16 */
            assert_int_equal(c[i].type, strstr(m.ts[i].name, "ffn_down") ? QD_TYPE_F16 : QD_TYPE_Q5_0);
            assert_false(c[i].beyond_llama);
        }
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q2_K, &o, m.ts, m.n), QD_OK);
    assert_int_equal(c[0].type, QD_TYPE_Q4_0); /* Q2_K falls back to Q4_0 */
    free_list(&m);
}

/* ---- 7B shape: dim 4096, ff 11008, 32 layers, 32/32 heads, vocab 32000 ----------------------------------------- */

static qd_type b7_q4km(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if ((!strcmp(k, "attn_v") || !strcmp(k, "ffn_down")) && more_bits(l, n)) return QD_TYPE_Q6_K;
    return QD_TYPE_Q4_K;
}
static qd_type b7_q5km(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if ((!strcmp(k, "attn_v") || !strcmp(k, "ffn_down")) && more_bits(l, n)) return QD_TYPE_Q6_K;
    return QD_TYPE_Q5_K;
}
static qd_type b7_q4ks(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "attn_v") && l < 4) return QD_TYPE_Q5_K;
    if (!strcmp(k, "ffn_down") && l < n / 8) return QD_TYPE_Q5_K;
    return QD_TYPE_Q4_K;
}
static qd_type b7_q3km(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "attn_v")) return l < 2 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K;
    if (!strcmp(k, "ffn_down")) return l < n / 16 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K;
    if (!strcmp(k, "attn_output")) return QD_TYPE_Q4_K;
    return QD_TYPE_Q3_K;
}
static qd_type b7_q3kl(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "attn_v") || !strcmp(k, "ffn_down") || !strcmp(k, "attn_output")) return QD_TYPE_Q5_K;
    return QD_TYPE_Q3_K;
}
static qd_type b7_q3ks(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    return QD_TYPE_Q3_K;
}
static qd_type b7_q2k(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "attn_v") || !strcmp(k, "ffn_down") || !strcmp(k, "attn_output")) return QD_TYPE_Q3_K;
    return QD_TYPE_Q2_K;
}
static qd_type b7_q80(const char *k, int l, int n)
{
    (void)l, (void)n;
    return is_norm(k) ? QD_TYPE_F32 : QD_TYPE_Q8_0; /* output stays Q8_0 */
}
static qd_type b7_q40(const char *k, int l, int n)
{
    (void)l, (void)n;
    if (is_norm(k)) return QD_TYPE_F32;
    return !strcmp(k, "output") ? QD_TYPE_Q6_K : QD_TYPE_Q4_0;
}
static qd_type b7_q40_imatrix(const char *k, int l, int n)
{
    if (!strcmp(k, "ffn_down") && l < n / 8) return QD_TYPE_Q4_1;
    return b7_q40(k, l, n);
}
static qd_type b7_q6k(const char *k, int l, int n)
{
    (void)l, (void)n;
    return is_norm(k) ? QD_TYPE_F32 : QD_TYPE_Q6_K;
}
static qd_type b7_iq4xs(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "ffn_down") && l < n / 8) return QD_TYPE_Q5_K;
    return QD_TYPE_IQ4_XS;
}
static qd_type b7_iq4xs_imatrix(const char *k, int l, int n)
{
    if (!strcmp(k, "ffn_down")) return QD_TYPE_IQ4_XS;
    return b7_iq4xs(k, l, n);
}

static void test_recipes__7b_shape_layer_rules(void **state)
{
    (void)state;
    model_list m = make_list(4096, 11008, 32, 32, 32, 32000, 1);
    qd_recipe_opts o = QD_RECIPE_OPTS_INIT;
    check(&m, QD_FTYPE_Q4_K_M, &o, b7_q4km, 0);
    check(&m, QD_FTYPE_Q5_K_M, &o, b7_q5km, 0);
    check(&m, QD_FTYPE_Q4_K_S, &o, b7_q4ks, 0);
    check(&m, QD_FTYPE_Q3_K_S, &o, b7_q3ks, 0);
    check(&m, QD_FTYPE_Q3_K_M, &o, b7_q3km, 0);
    check(&m, QD_FTYPE_Q3_K_L, &o, b7_q3kl, 0);
    check(&m, QD_FTYPE_Q2_K, &o, b7_q2k, 0);
    check(&m, QD_FTYPE_Q8_0, &o, b7_q80, 0);
    check(&m, QD_FTYPE_Q4_0, &o, b7_q40, 0);
    check(&m, QD_FTYPE_Q6_K, &o, b7_q6k, 0);
    check(&m, QD_FTYPE_IQ4_XS, &o, b7_iq4xs, 0);
    o.has_imatrix = true;
    check(&m, QD_FTYPE_Q4_0, &o, b7_q40_imatrix, 0);
    check(&m, QD_FTYPE_IQ4_XS, &o, b7_iq4xs_imatrix, 0);
    /* the attn_v layers Q4_K_M upgrades: 0-3, 28-31 and every third from 6 */
    int n6 = 0;
    for (int i = 0; i < 32; i++)
        n6 += more_bits(i, 32);
    assert_int_equal(n6, 16);
    free_list(&m);
}

static qd_type gqa_iq4nl(const char *k, int l, int n)
{
    if (is_norm(k)) return QD_TYPE_F32;
    if (!strcmp(k, "output")) return QD_TYPE_Q6_K;
    if (!strcmp(k, "attn_v")) return QD_TYPE_Q5_K; /* GQA 4 */
    if (!strcmp(k, "ffn_down") && l < n / 8) return QD_TYPE_Q5_K;
    return QD_TYPE_IQ4_NL;
}
static qd_type gqa_q2k(const char *k, int l, int n)
{
    if (!strcmp(k, "attn_v")) return QD_TYPE_Q4_K; /* GQA >= 4 */
    return b7_q2k(k, l, n);
}
static qd_type b70_q4ks(const char *k, int l, int n)
{
    if (!strcmp(k, "attn_v")) return QD_TYPE_Q5_K; /* 70B: Q4_K attn_v bumped to Q5_K */
    return b7_q4ks(k, l, n);
}

static void test_recipes__gqa_and_70b(void **state)
{
    (void)state;
    qd_recipe_opts o = QD_RECIPE_OPTS_INIT;
    model_list m = make_list(4096, 14336, 32, 32, 8, 128256, 1);
    check(&m, QD_FTYPE_IQ4_NL, &o, gqa_iq4nl, 0);
    check(&m, QD_FTYPE_Q2_K, &o, gqa_q2k, 0);
    free_list(&m);
    m = make_list(8192, 28672, 80, 64, 8, 32000, 1);
    check(&m, QD_FTYPE_Q4_K_S, &o, b70_q4ks, 0);
    free_list(&m);
}

static void test_recipes__tied_embedding_and_overrides(void **state)
{
    (void)state;
    qd_recipe_opts o = QD_RECIPE_OPTS_INIT;
    model_list m = make_list(4096, 11008, 32, 32, 32, 32000, 0); /* no output.weight */
    qd_recipe_choice *c = calloc(m.n, sizeof(*c));
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    assert_int_equal(c[0].type, QD_TYPE_Q6_K); /* token_embd takes the output rule */
    o.output_type = QD_TYPE_F16;
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    assert_int_equal(c[0].type, QD_TYPE_F16); /* tied: --output-tensor-type reaches token_embd */
    o.token_embd_type = QD_TYPE_Q8_0;
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    assert_int_equal(c[0].type, QD_TYPE_Q8_0); /* --token-embedding-type is applied last, as in llama.cpp */
    free(c);
    free_list(&m);
    m = make_list(4096, 11008, 32, 32, 32, 32000, 1);
    c = calloc(m.n, sizeof(*c));
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_OK);
    assert_int_equal(c[0].type, QD_TYPE_Q8_0);
    assert_int_equal(c[m.n - 1].type, QD_TYPE_F16);
    /* a layer count that does not match the attn_v tensors is refused, as llama.cpp does */
    m.hp.n_layer = 30;
    assert_int_equal(qd_recipe_plan(c, NULL, &m.hp, QD_FTYPE_Q4_K_M, &o, m.ts, m.n), QD_EINVAL);
    free(c);
    free_list(&m);
}

static void test_recipes__names(void **state)
{
    (void)state;
    qd_ftype ft;
    const char *names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
                           "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32"};
    const int ids[] = {2, 3, 8, 9, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 25, 30, 1, 32, 0};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(qd_recipe_from_name(names[i], &ft), QD_OK);
        assert_int_equal((int)ft, ids[i]);
        assert_string_equal(qd_recipe_name(ft), names[i]);
    }
    assert_int_equal(qd_recipe_from_name("q4_k_m", &ft), QD_OK);
    assert_int_equal(ft, QD_FTYPE_Q4_K_M);
    assert_int_equal(qd_recipe_from_name("Q4_K_X", &ft), QD_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recipes__stories_shape_fallbacks),
        cmocka_unit_test(test_recipes__7b_shape_layer_rules),
        cmocka_unit_test(test_recipes__gqa_and_70b),
        cmocka_unit_test(test_recipes__tied_embedding_and_overrides),
        cmocka_unit_test(test_recipes__names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
