/*
 * test_kernels.c - the row kernels against ggml's golden vectors (../shared/vectors/ggml), plus edge cases:
 * NaN/Inf rejection, bad shapes, type names, kernel selection, row independence and round-trip error bounds.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "testutil.h"

#include "qd/err.h"
#include "qd/quant.h"

/* The types issue 4 requires to match; every other type in index.tsv is a stretch and only reported. */
static const char *const required_types[] = {"f16",  "bf16", "q8_0", "q4_0", "q4_1", "q5_0",   "q5_1",   "q2_K",  "q3_K",
                                             "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs", "mxfp4", "tq1_0", "tq2_0"};

static bool is_required(const char *name)
{
    for (size_t i = 0; i < sizeof(required_types) / sizeof(required_types[0]); i++)
        if (!strcmp(required_types[i], name))
            return true;
    return false;
}

typedef struct type_stats {
    char name[32];
    int q_total, q_ok, dq_total, dq_ok, unsupported;
    double seconds;
    int64_t values;
} type_stats;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The vectors under the kernel variant currently selected. */
static void golden_vectors_run(void)
{
    char dir[4096];
    FILE *f = tu_vectors_open(dir, sizeof(dir));
    if (!f)
        TU_SKIP("../shared/vectors/ggml is absent: golden vector test not run");
    type_stats stats[64];
    int nstats = 0;
    int req_total = 0, req_ok = 0, stretch_total = 0, stretch_ok = 0, failures = 0;
    tu_vector v;
    while (tu_vector_next(f, &v)) {
        const char *cs = v.cs, *tn = v.tn;
        const int imat = v.imat;
        const long long nrows = v.nrows, ncols = v.ncols, bytes = v.bytes;
        type_stats *st = NULL;
        for (int i = 0; i < nstats; i++)
            if (!strcmp(stats[i].name, tn))
                st = &stats[i];
        if (!st) {
            assert_true(nstats < 64);
            st = &stats[nstats++];
            memset(st, 0, sizeof(*st));
            snprintf(st->name, sizeof(st->name), "%s", tn);
        }
        const bool required = is_required(tn);
        st->q_total++;
        if (required)
            req_total++;
        else
            stretch_total++;

        qd_type t;
        const qd_type_traits *tr = NULL;
        if (qd_type_from_name(tn, &t) == QD_OK)
            tr = qd_type_traits_get(t);
        if (!tr || !tr->can_quantize) {
            st->unsupported++;
            if (required) {
                printf("MISMATCH %s %s: type not supported\n", cs, tn);
                failures++;
            }
            continue;
        }
        float *in, *im;
        uint8_t *gold;
        tu_vector_load(dir, &v, &in, &im, &gold);
        assert_int_equal(qd_row_size(t, ncols) * (size_t)nrows, (size_t)bytes);

        uint8_t *out = malloc((size_t)bytes);
        double t0 = now_s();
        int rc = qd_quantize_rows(t, in, out, nrows, ncols, im);
        st->seconds += now_s() - t0;
        st->values += nrows * ncols;
        assert_int_equal(rc, QD_OK);
        if (!memcmp(out, gold, (size_t)bytes)) {
            st->q_ok++;
            if (required)
                req_ok++;
            else
                stretch_ok++;
        } else {
            size_t k = 0;
            while (out[k] == gold[k])
                k++;
            printf("%s %s %s%s: first differing byte %zu (block %zu): ours 0x%02x, ggml 0x%02x\n",
                   required ? "MISMATCH" : "stretch mismatch", cs, tn, imat ? " imatrix" : "", k,
                   k / tr->type_size, out[k], gold[k]);
            if (required)
                failures++;
        }
        float *want = tu_vector_deq(dir, &v);
        if (want) {
            const size_t dq_len = (size_t)(nrows * ncols) * sizeof(float);
            st->dq_total++;
            float *got = malloc(dq_len);
            assert_int_equal(qd_dequantize_rows(t, gold, got, nrows, ncols), QD_OK);
            if (!memcmp(got, want, dq_len)) {
                st->dq_ok++;
            } else {
                printf("%s %s %s: dequantized values differ\n", required ? "MISMATCH" : "stretch mismatch", cs, tn);
                if (required)
                    failures++;
            }
            free(got);
            free(want);
        }
        free(out);
        free(gold);
        free(im);
        free(in);
    }
    fclose(f);

    printf("%-8s %-10s %-10s %s\n", "type", "quantize", "dequant", "quantize speed");
    for (int i = 0; i < nstats; i++) {
        type_stats *st = &stats[i];
        if (st->unsupported == st->q_total) {
            printf("%-8s %-10s %-10s (stretch: not implemented)\n", st->name, "-", "-");
            continue;
        }
        char q[32], d[32];
        snprintf(q, sizeof(q), "%d/%d", st->q_ok, st->q_total);
        snprintf(d, sizeof(d), "%d/%d", st->dq_ok, st->dq_total);
        printf("%-8s %-10s %-10s %.1f Mvalues/s%s\n", st->name, q, d,
               st->seconds > 0 ? st->values / st->seconds / 1e6 : 0.0, is_required(st->name) ? "" : " (stretch)");
    }
    const char *vn = qd_kernels_name(qd_kernels_current());
    printf("vectors [%s]: %d/%d matched (required types)\n", vn, req_ok, req_total);
    printf("stretch vectors [%s]: %d/%d matched\n", vn, stretch_ok, stretch_total);
    assert_int_equal(failures, 0);
    assert_int_equal(req_ok, req_total);
    assert_true(req_total > 0);
}

/* The golden vectors under every kernel variant this build has and this CPU runs (ref, avx2, avx512). */
static void test_kernels__golden_vectors(void **state)
{
    (void)state;
    if (!tu_shared("vectors/ggml/index.tsv"))
        TU_SKIP("../shared/vectors/ggml is absent: golden vector test not run");
    static const qd_kernel_variant vs[] = {QD_KERNELS_REF, QD_KERNELS_AVX2, QD_KERNELS_AVX512};
    int ran = 0;
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        const char *vn = qd_kernels_name(vs[i]);
        if (!qd_kernels_usable(vs[i])) {
            printf("== kernel variant %s: %s, not run\n", vn, qd_kernels_built(vs[i]) ? "not supported by this CPU" :
                   "not in this build");
            continue;
        }
        setenv("QD_KERNELS", vn, 1);
        assert_int_equal(qd_kernels_select(), QD_OK);
        assert_int_equal(qd_kernels_current(), vs[i]);
        printf("== kernel variant %s\n", vn);
        golden_vectors_run();
        ran++;
    }
    unsetenv("QD_KERNELS");
    assert_int_equal(qd_kernels_select(), QD_OK);
    assert_true(ran >= 1);
}

static const char *last_msg(void) { return qd_error_last()->message; }

static void test_kernels__nan_and_inf_rejected(void **state)
{
    (void)state;
    float x[256];
    for (int i = 0; i < 256; i++)
        x[i] = (float)i / 256.0f - 0.5f;
    uint8_t out[4 * 256];
    static const qd_type blocky[] = {QD_TYPE_Q4_0, QD_TYPE_Q8_0, QD_TYPE_Q4_K, QD_TYPE_Q6_K, QD_TYPE_IQ4_NL,
                                     QD_TYPE_MXFP4, QD_TYPE_TQ2_0};
    for (size_t k = 0; k < sizeof(blocky) / sizeof(blocky[0]); k++) {
        x[77] = NAN;
        assert_int_equal(qd_quantize_rows(blocky[k], x, out, 1, 256, NULL), QD_EINVAL);
        assert_non_null(strstr(last_msg(), "NaN"));
        x[77] = -INFINITY;
        assert_int_equal(qd_quantize_rows(blocky[k], x, out, 1, 256, NULL), QD_EINVAL);
        assert_non_null(strstr(last_msg(), "Inf"));
        x[77] = 0.25f;
        assert_int_equal(qd_quantize_rows(blocky[k], x, out, 1, 256, NULL), QD_OK);
    }
    /* F16/BF16/F32 can hold them: converted as ggml converts them */
    x[0] = INFINITY;
    x[1] = NAN;
    x[2] = 1e6f; /* overflows binary16 */
    uint16_t h[256];
    assert_int_equal(qd_quantize_rows(QD_TYPE_F16, x, h, 1, 256, NULL), QD_OK);
    assert_int_equal(h[0], 0x7c00);
    assert_int_equal(h[1] & 0x7e00, 0x7e00);
    assert_int_equal(h[2], 0x7c00);
    assert_int_equal(qd_quantize_rows(QD_TYPE_BF16, x, h, 1, 256, NULL), QD_OK);
    assert_int_equal(h[0], 0x7f80);
    /* a bad importance matrix */
    float im[256];
    for (int i = 0; i < 256; i++)
        im[i] = 1.0f;
    x[0] = x[1] = x[2] = 0.1f;
    im[5] = NAN;
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_K, x, out, 1, 256, im), QD_EINVAL);
    im[5] = -1.0f;
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_K, x, out, 1, 256, im), QD_EINVAL);
    im[5] = 2.0f;
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_K, x, out, 1, 256, im), QD_OK);
}

/*
 * Values a type's range admits but whose block scale overflows fp16 are refused after quantizing, naming the row,
 * under every variant: a large value (the first fp16 field, d), and for Q4_1 / Q4_K a block offset far from zero
 * with a small spread (only the second field, the min, overflows).
 */
static void test_kernels__scale_overflow_named(void **state)
{
    (void)state;
    enum { R = 4, C = 512 };
    static float x[R * C];
    static uint8_t out[R * C * 2];
    static const qd_kernel_variant vs[] = {QD_KERNELS_REF, QD_KERNELS_AVX2, QD_KERNELS_AVX512};
    static const qd_type types[] = {QD_TYPE_Q4_0, QD_TYPE_Q8_0, QD_TYPE_Q4_1, QD_TYPE_Q5_0, QD_TYPE_Q2_K,
                                    QD_TYPE_Q4_K, QD_TYPE_Q6_K, QD_TYPE_IQ4_NL};
    for (size_t v = 0; v < sizeof(vs) / sizeof(vs[0]); v++) {
        if (!qd_kernels_usable(vs[v]))
            continue;
        setenv("QD_KERNELS", qd_kernels_name(vs[v]), 1);
        assert_int_equal(qd_kernels_select(), QD_OK);
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
            const qd_type t = types[k];
            for (int shape = 0; shape < 2; shape++) {
                if (shape == 1 && t != QD_TYPE_Q4_1 && t != QD_TYPE_Q4_K)
                    continue;
                for (int i = 0; i < R * C; i++)
                    x[i] = (float)((i * 7919) % 200) / 1000.0f - 0.1f;
                assert_int_equal(qd_quantize_rows(t, x, out, R, C, NULL), QD_OK);
                if (shape == 0)
                    x[2 * C + 300] = 2.9e8f;
                else
                    for (int i = 2 * C + 256; i < 2 * C + 512; i++)
                        x[i] = -2.9e8f - (float)(i % 3) * 32.0f;
                if (qd_quantize_rows(t, x, out, R, C, NULL) != QD_EINVAL ||
                    !strstr(last_msg(), "row 2 holds values too large"))
                    fail_msg("%s %s shape %d: %s", qd_kernels_name(vs[v]), qd_type_traits_get(t)->name, shape,
                             last_msg());
            }
        }
    }
    unsetenv("QD_KERNELS");
    assert_int_equal(qd_kernels_select(), QD_OK);
}

static void test_kernels__bad_shapes(void **state)
{
    (void)state;
    float x[512] = {0};
    uint8_t out[1024];
    assert_int_equal(qd_row_size(QD_TYPE_Q4_K, 172), 0);
    assert_int_equal(qd_row_size(QD_TYPE_Q4_0, 64), 36);
    assert_int_equal(qd_row_size(QD_TYPE_Q6_K, 512), 420);
    assert_int_equal(qd_row_size(QD_TYPE_F16, 3), 6);
    assert_int_equal(qd_row_size(QD_TYPE_Q4_0, 0), 0);
    assert_int_equal(qd_row_size((qd_type)4, 32), 0); /* unused number */
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_K, x, out, 1, 172, NULL), QD_EINVAL);
    assert_non_null(strstr(last_msg(), "not a multiple of the block size 256"));
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_0, x, out, 1, 33, NULL), QD_EINVAL);
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_0, x, out, 1, 0, NULL), QD_EINVAL);
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_0, x, out, -1, 32, NULL), QD_EINVAL);
    assert_int_equal(qd_dequantize_rows(QD_TYPE_Q5_K, out, x, 1, 100), QD_EINVAL);
    assert_int_equal(qd_quantize_rows((qd_type)5, x, out, 1, 32, NULL), QD_EINVAL);
    assert_int_equal(qd_quantize_rows((qd_type)99, x, out, 1, 32, NULL), QD_EINVAL);
    /* zero rows is a no-op */
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q4_0, x, out, 0, 32, NULL), QD_OK);
    /* types this build does not quantize */
    assert_int_equal(qd_quantize_rows(QD_TYPE_Q8_1, x, out, 1, 256, NULL), QD_EUNSUPPORTED);
    assert_int_equal(qd_dequantize_rows(QD_TYPE_Q8_1, out, x, 1, 256), QD_EUNSUPPORTED);
    /* types that need an imatrix refuse to go without one (as ggml refuses) */
    assert_int_not_equal(qd_quantize_rows(QD_TYPE_IQ2_XXS, x, out, 1, 256, NULL), QD_OK);
}

static void test_kernels__type_names(void **state)
{
    (void)state;
    qd_type t;
    assert_int_equal(qd_type_from_name("q4_K", &t), QD_OK);
    assert_int_equal(t, QD_TYPE_Q4_K);
    assert_int_equal(qd_type_from_name("Q4_K", &t), QD_OK);
    assert_int_equal(t, QD_TYPE_Q4_K);
    assert_int_equal(qd_type_from_name("IQ4_nl", &t), QD_OK);
    assert_int_equal(t, QD_TYPE_IQ4_NL);
    assert_int_equal(qd_type_from_name("bf16", &t), QD_OK);
    assert_int_equal(t, QD_TYPE_BF16);
    assert_int_equal(qd_type_from_name("MXFP4", &t), QD_OK);
    assert_int_equal(t, 39);
    assert_int_equal(qd_type_from_name("q4_k_m", &t), QD_EINVAL);
    assert_non_null(strstr(last_msg(), "unknown tensor type 'q4_k_m'"));
    assert_int_equal(qd_type_from_name("", &t), QD_EINVAL);
    assert_int_equal(qd_type_from_name("q4", &t), QD_EINVAL);
    /* every named type round-trips through its name, with ggml's sizes */
    for (int i = 0; i < QD_TYPE_COUNT; i++) {
        const qd_type_traits *tr = qd_type_traits_get((qd_type)i);
        if (!tr)
            continue;
        assert_int_equal(qd_type_from_name(tr->name, &t), QD_OK);
        assert_int_equal(t, i);
        assert_true(tr->block_size >= 1 && tr->type_size >= 1);
    }
    assert_null(qd_type_traits_get((qd_type)4));
    assert_null(qd_type_traits_get(QD_TYPE_COUNT));
    assert_int_equal(qd_type_traits_get(QD_TYPE_Q2_K)->type_size, 84);
    assert_int_equal(qd_type_traits_get(QD_TYPE_TQ1_0)->type_size, 54);
    assert_true(qd_type_traits_get(QD_TYPE_IQ2_XXS)->needs_imatrix);
    assert_false(qd_type_traits_get(QD_TYPE_Q4_K)->needs_imatrix);
}

static void test_kernels__selection(void **state)
{
    (void)state;
    setenv("QD_KERNELS", "bogus", 1);
    assert_int_equal(qd_kernels_select(), QD_EINVAL);
    assert_non_null(strstr(last_msg(), "QD_KERNELS=bogus"));
    setenv("QD_KERNELS", "cuda", 1);
    assert_int_equal(qd_kernels_select(), QD_EUNSUPPORTED);
    assert_non_null(strstr(last_msg(), "QD_KERNELS=cuda"));
    /* a forced x86 variant works exactly where the CPU has its features, and is a clear error elsewhere */
    static const qd_kernel_variant x86[] = {QD_KERNELS_AVX2, QD_KERNELS_AVX512};
    for (size_t i = 0; i < 2; i++) {
        setenv("QD_KERNELS", qd_kernels_name(x86[i]), 1);
        if (qd_kernels_usable(x86[i])) {
            assert_int_equal(qd_kernels_select(), QD_OK);
            assert_int_equal(qd_kernels_current(), x86[i]);
            assert_true(qd_kernels_accelerated(QD_TYPE_Q4_K));
            assert_false(qd_kernels_accelerated(QD_TYPE_IQ2_XXS)); /* falls back to the reference */
        } else {
            assert_int_equal(qd_kernels_select(), QD_EUNSUPPORTED);
            assert_non_null(strstr(last_msg(), "lacks"));
        }
    }
#if defined(__x86_64__)
    assert_true(qd_kernels_built(QD_KERNELS_AVX2) && qd_kernels_built(QD_KERNELS_AVX512));
#endif
    setenv("QD_KERNELS", "ref", 1);
    assert_int_equal(qd_kernels_select(), QD_OK);
    assert_int_equal(qd_kernels_current(), QD_KERNELS_REF);
    assert_string_equal(qd_kernels_name(qd_kernels_current()), "ref");
    assert_false(qd_kernels_accelerated(QD_TYPE_Q4_K));
    unsetenv("QD_KERNELS");
    assert_int_equal(qd_kernels_select(), QD_OK);
    /* unforced, the best usable variant is chosen */
    qd_kernel_variant best = qd_kernels_usable(QD_KERNELS_AVX512) ? QD_KERNELS_AVX512
                             : qd_kernels_usable(QD_KERNELS_AVX2) ? QD_KERNELS_AVX2 : QD_KERNELS_REF;
    assert_int_equal(qd_kernels_current(), best);
    assert_string_equal(qd_kernels_name(QD_KERNELS_AVX2), "avx2");
    assert_non_null(qd_kernels_cpu_features());
}

/* Rows are independent: quantizing row by row gives the bytes of the whole (what threading relies on), and the
 * same input always gives the same bytes. Dequantized values stay within each format's error bound. */
static void test_kernels__rows_independent_and_bounded(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    enum { NR = 4, NC = 512 };
    static float x[NR * NC], back[NR * NC], im[NC];
    for (int i = 0; i < NR * NC; i++) {
        uint64_t u = tu_next(&r);
        x[i] = (float)((double)(u >> 11) / 9007199254740992.0 * 2.0 - 1.0) * 0.05f;
    }
    for (int i = 0; i < NC; i++)
        im[i] = (float)(tu_next(&r) % 1000) / 100.0f + 0.01f;
    /* bounds on the row's RMS error relative to its RMS value: about 1.5 x the worst seen over 200 seeds */
    static const struct {
        qd_type t;
        float rms_bound;
    } cases[] = {{QD_TYPE_F16, 0.001f},    {QD_TYPE_BF16, 0.005f},   {QD_TYPE_Q8_0, 0.01f},    {QD_TYPE_Q4_0, 0.1f},
                 {QD_TYPE_Q4_1, 0.1f},     {QD_TYPE_Q5_0, 0.05f},    {QD_TYPE_Q5_1, 0.05f},    {QD_TYPE_Q2_K, 0.4f},
                 {QD_TYPE_Q3_K, 0.2f},     {QD_TYPE_Q4_K, 0.09f},    {QD_TYPE_Q5_K, 0.045f},   {QD_TYPE_Q6_K, 0.025f},
                 {QD_TYPE_IQ4_NL, 0.1f},   {QD_TYPE_IQ4_XS, 0.1f},   {QD_TYPE_MXFP4, 0.16f},   {QD_TYPE_NVFP4, 0.16f},
                 {QD_TYPE_TQ1_0, 0.7f},    {QD_TYPE_TQ2_0, 0.7f},    {QD_TYPE_IQ3_XXS, 0.35f}, {QD_TYPE_IQ3_S, 0.25f},
                 {QD_TYPE_IQ2_XXS, 0.6f},  {QD_TYPE_IQ2_XS, 0.55f},  {QD_TYPE_IQ2_S, 0.4f},    {QD_TYPE_IQ1_S, 0.75f},
                 {QD_TYPE_IQ1_M, 0.8f}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const qd_type t = cases[k].t;
        const size_t rs = qd_row_size(t, NC);
        assert_true(rs > 0);
        for (int with_im = 0; with_im < 2; with_im++) {
            const float *w = with_im ? im : NULL;
            if (!w && qd_type_traits_get(t)->needs_imatrix)
                continue;
            uint8_t *all = malloc(rs * NR), *one = malloc(rs * NR), *again = malloc(rs * NR);
            assert_int_equal(qd_quantize_rows(t, x, all, NR, NC, w), QD_OK);
            for (int row = 0; row < NR; row++)
                assert_int_equal(qd_quantize_rows(t, x + row * NC, one + row * rs, 1, NC, w), QD_OK);
            assert_memory_equal(all, one, rs * NR);
            assert_int_equal(qd_quantize_rows(t, x, again, NR, NC, w), QD_OK);
            assert_memory_equal(all, again, rs * NR);
            assert_int_equal(qd_dequantize_rows(t, all, back, NR, NC), QD_OK);
            for (int row = 0; row < NR; row++) {
                double se = 0, sx = 0;
                float amax = 0, emax = 0;
                for (int j = 0; j < NC; j++) {
                    const float v = x[row * NC + j], e = v - back[row * NC + j];
                    se += (double)e * e;
                    sx += (double)v * v;
                    amax = fmaxf(amax, fabsf(v));
                    emax = fmaxf(emax, fabsf(e));
                }
                const double rel = sqrt(se / sx);
                if (rel > cases[k].rms_bound || emax > 2.5f * amax)
                    fail_msg("%s%s row %d: relative RMS error %g (bound %g), max error %g (max |x| %g)",
                             qd_type_traits_get(t)->name, with_im ? " imatrix" : "", row, rel,
                             (double)cases[k].rms_bound, (double)emax, (double)amax);
            }
            free(all);
            free(one);
            free(again);
        }
    }
}

/* All-zero input quantizes to blocks that dequantize to exact zeros in every type. */
static void test_kernels__zeros(void **state)
{
    (void)state;
    static float x[512], back[512];
    memset(x, 0, sizeof(x));
    for (int i = 0; i < QD_TYPE_COUNT; i++) {
        const qd_type_traits *tr = qd_type_traits_get((qd_type)i);
        if (!tr || !tr->can_quantize)
            continue;
        uint8_t *q = malloc(qd_row_size((qd_type)i, 512));
        static float ones[512];
        for (int j = 0; j < 512; j++)
            ones[j] = 1.0f;
        assert_int_equal(qd_quantize_rows((qd_type)i, x, q, 1, 512, tr->needs_imatrix ? ones : NULL), QD_OK);
        assert_int_equal(qd_dequantize_rows((qd_type)i, q, back, 1, 512), QD_OK);
        for (int j = 0; j < 512; j++)
            if (back[j] != 0.0f)
                fail_msg("%s: zero input came back as %g at %d", tr->name, (double)back[j], j);
        free(q);
    }
}

/* Enormous finite values, denormals, mixed extremes and arbitrary bit patterns: every type either quantizes them
 * to finite values or refuses with QD_EINVAL naming the type; never undefined behaviour (the ASan/UBSan run). */
static void test_kernels__extremes(void **state)
{
    (void)state;
    static float x[512], back[512], ones[512];
    static const float patterns[][4] = {{3.0e38f, -3.0e38f, 1.0f, 0.0f},
                                        {3.4028235e38f, 3.4028235e38f, 3.4028235e38f, 3.4028235e38f},
                                        {1e-42f, -1e-45f, 1e-40f, 0.0f},
                                        {7e4f, -7e4f, 1e-30f, 123.0f},
                                        {1e9f, 1e9f, -1e9f, 5.0f}};
    for (int j = 0; j < 512; j++)
        ones[j] = 1.0f;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 2);
    const size_t npat = sizeof(patterns) / sizeof(patterns[0]);
    for (size_t p = 0; p < npat + 3; p++) {
        for (int j = 0; j < 512; j++) {
            if (p < npat) {
                x[j] = patterns[p][j % 4] * (j % 7 == 3 ? -0.5f : 1.0f);
            } else {
                /* arbitrary finite bit patterns up to the accepted magnitude */
                uint32_t u;
                float f;
                do {
                    u = (uint32_t)tu_next(&r);
                    memcpy(&f, &u, 4);
                } while (!isfinite(f) || fabsf(f) > (p == npat ? 3e8f : p == npat + 1 ? 1e5f : 1e37f));
                x[j] = f;
            }
        }
        for (int i = 0; i < QD_TYPE_COUNT; i++) {
            const qd_type_traits *tr = qd_type_traits_get((qd_type)i);
            if (!tr || !tr->can_quantize)
                continue;
            for (int with_im = 0; with_im < 2; with_im++) {
                if (!with_im && tr->needs_imatrix)
                    continue;
                uint8_t *q = malloc(qd_row_size((qd_type)i, 512));
                int rc = qd_quantize_rows((qd_type)i, x, q, 1, 512, with_im ? ones : NULL);
                if (rc != QD_OK && rc != QD_EINVAL)
                    fail_msg("%s pattern %zu: rc %d", tr->name, p, rc);
                if (rc == QD_OK) {
                    assert_int_equal(qd_dequantize_rows((qd_type)i, q, back, 1, 512), QD_OK);
                    if (tr->quantized)
                        for (int j = 0; j < 512; j++)
                            if (!isfinite(back[j]))
                                fail_msg("%s pattern %zu: accepted, but value %d dequantizes to %g", tr->name, p, j,
                                         (double)back[j]);
                } else {
                    assert_non_null(strstr(last_msg(), tr->name));
                }
                free(q);
            }
        }
    }
}

/* Threads quantizing at once (the i-quant tables are built lazily on first use) get the single-thread bytes. */
enum { MT_THREADS = 4, MT_ROWS = 8, MT_COLS = 512 };
static float mt_x[MT_ROWS * MT_COLS], mt_im[MT_COLS];
static qd_type mt_type;

static void *mt_worker(void *arg)
{
    uint8_t *out = arg;
    const size_t rs = qd_row_size(mt_type, MT_COLS);
    for (int r = 0; r < MT_ROWS; r++)
        if (qd_quantize_rows(mt_type, mt_x + r * MT_COLS, out + r * rs, 1, MT_COLS, mt_im) != QD_OK)
            return (void *)1;
    return NULL;
}

static void test_kernels__threads_agree(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 3);
    for (int i = 0; i < MT_ROWS * MT_COLS; i++)
        mt_x[i] = (float)((int64_t)(tu_next(&r) % 20001) - 10000) * 1e-5f;
    for (int i = 0; i < MT_COLS; i++)
        mt_im[i] = 0.5f + (float)(tu_next(&r) % 100) / 50.0f;
    static const qd_type types[] = {QD_TYPE_IQ2_S, QD_TYPE_IQ3_XXS, QD_TYPE_IQ1_M, QD_TYPE_Q4_K, QD_TYPE_IQ4_XS};
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        mt_type = types[k];
        const size_t bytes = qd_row_size(mt_type, MT_COLS) * MT_ROWS;
        uint8_t *outs[MT_THREADS];
        pthread_t th[MT_THREADS];
        for (int t = 0; t < MT_THREADS; t++) {
            outs[t] = malloc(bytes);
            assert_int_equal(pthread_create(&th[t], NULL, mt_worker, outs[t]), 0);
        }
        for (int t = 0; t < MT_THREADS; t++) {
            void *ret;
            assert_int_equal(pthread_join(th[t], &ret), 0);
            assert_null(ret);
        }
        uint8_t *one = malloc(bytes);
        assert_int_equal(qd_quantize_rows(mt_type, mt_x, one, MT_ROWS, MT_COLS, mt_im), QD_OK);
        for (int t = 0; t < MT_THREADS; t++) {
            assert_memory_equal(outs[t], one, bytes);
            free(outs[t]);
        }
        free(one);
    }
}

#if defined(__FLT16_MAX__) && defined(__GNUC__) && !defined(__clang__)
/* Our binary16 conversion agrees with the compiler's (IEEE round to nearest even) on random and edge bits. */
static void test_kernels__fp16_conversion(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 1);
    static const uint32_t edges[] = {0x00000000, 0x80000000, 0x33000000, 0x33000001, 0x387fffff, 0x38800000,
                                     0x477fe000, 0x477fefff, 0x477ff000, 0x7f800000, 0x3f800000, 0x00000001};
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = i < (int)(sizeof(edges) / sizeof(edges[0])) ? edges[i] : (uint32_t)tu_next(&r);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f))
            continue;
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, 2);
        uint16_t got;
        assert_int_equal(qd_quantize_rows(QD_TYPE_F16, &f, &got, 1, 1, NULL), QD_OK);
        if (got != want)
            fail_msg("fp16(0x%08x): got 0x%04x, want 0x%04x", u, got, want);
        float back;
        assert_int_equal(qd_dequantize_rows(QD_TYPE_F16, &got, &back, 1, 1), QD_OK);
        assert_true(back == (float)h);
    }
}
#endif

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        /* first, so that its threads race to build the lazily made i-quant tables */
        cmocka_unit_test(test_kernels__threads_agree),
        cmocka_unit_test(test_kernels__golden_vectors),
        cmocka_unit_test(test_kernels__nan_and_inf_rejected),
        cmocka_unit_test(test_kernels__bad_shapes),
        cmocka_unit_test(test_kernels__scale_overflow_named),
        cmocka_unit_test(test_kernels__type_names),
        cmocka_unit_test(test_kernels__selection),
        cmocka_unit_test(test_kernels__rows_independent_and_bounded),
        cmocka_unit_test(test_kernels__zeros),
        cmocka_unit_test(test_kernels__extremes),
#if defined(__FLT16_MAX__) && defined(__GNUC__) && !defined(__clang__)
        cmocka_unit_test(test_kernels__fp16_conversion),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
