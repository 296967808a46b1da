/*
 * test_cuda.c - the GPU path (include/qd/cuda.h) against the golden vectors and the CPU reference, byte for byte.
 *
 * Without CUDA in the build, or without a device, the entry points must say so (QD_EUNSUPPORTED, a message that
 * names the reason) and the GPU cases skip with that message. With a device: every golden vector of every type the
 * GPU path has (quantize with and without imatrix, dequantize); seeded rows of every edge family from F32, F16 and
 * BF16 sources against qd_quantize_rows on the CPU, through small chunks (many slots in flight, a row wider than
 * a chunk) and one large call; dequantize of the reference's blocks and of random block bytes; bad input.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "kernel_data.h"

#include "qd/cuda.h"
#include "qd/err.h"
#include "qd/quant.h"

/* The types the issue asks the GPU path for, then those it has besides. */
static const qd_type gpu_types[] = {QD_TYPE_F16,  QD_TYPE_BF16, QD_TYPE_Q8_0, QD_TYPE_Q4_0,   QD_TYPE_Q4_1,
                                    QD_TYPE_Q5_0, QD_TYPE_Q5_1, QD_TYPE_Q4_K, QD_TYPE_Q5_K,   QD_TYPE_Q6_K,
                                    QD_TYPE_IQ4_NL, QD_TYPE_Q2_K, QD_TYPE_Q3_K, QD_TYPE_IQ4_XS};
#define N_GPU_TYPES (sizeof(gpu_types) / sizeof(gpu_types[0]))

static qd_cuda *open_or_skip(size_t chunk_values)
{
    qd_cuda *c = NULL;
    int rc = qd_cuda_open(&c, chunk_values);
    if (rc == QD_EUNSUPPORTED)
        TU_SKIP("GPU path not run: %s", qd_error_last()->message);
    if (rc != QD_OK)
        fail_msg("qd_cuda_open: %d (%s)", rc, qd_error_last()->message);
    return c;
}

static void test_cuda__open_reports(void **state)
{
    (void)state;
    qd_cuda *c = NULL;
    int rc = qd_cuda_open(&c, 0);
    if (!qd_cuda_built()) {
        assert_int_equal(rc, QD_EUNSUPPORTED);
        assert_null(c);
        assert_non_null(strstr(qd_error_last()->message, "CUDA=1"));
        assert_false(qd_cuda_can_quantize(QD_TYPE_Q8_0, false));
        printf("   this build has no GPU path (make CUDA=1 builds it)\n");
        return;
    }
    if (rc == QD_EUNSUPPORTED) {
        assert_null(c);
        assert_non_null(strstr(qd_error_last()->message, "CUDA"));
        printf("   built with CUDA; %s\n", qd_error_last()->message);
        for (size_t i = 0; i < N_GPU_TYPES; i++)
            assert_true(qd_cuda_can_quantize(gpu_types[i], true));
        assert_false(qd_cuda_can_quantize(QD_TYPE_IQ2_XXS, true));
        return;
    }
    OK(rc);
    const qd_cuda_info *d = qd_cuda_device(c);
    printf("   %s, sm_%d, %d multiprocessors, %.1f GiB, %d copy engines: kernels %s\n", d->name, d->sm,
           d->multiprocessors, (double)d->memory / (1 << 30), d->copy_engines, qd_cuda_kernel_name(c));
    char want[32];
    snprintf(want, sizeof(want), "cuda-sm%d", d->sm);
    assert_string_equal(qd_cuda_kernel_name(c), want);
    qd_cuda_close(c);
}

/* ---- golden vectors ---- */

static void test_cuda__golden_vectors(void **state)
{
    (void)state;
    char dir[4096];
    if (!tu_shared("vectors/ggml/index.tsv"))
        TU_SKIP("../shared/vectors/ggml is absent: golden vector test not run");
    qd_cuda *c = open_or_skip(0);
    FILE *f = tu_vectors_open(dir, sizeof(dir));
    assert_non_null(f);
    int qn[QD_TYPE_COUNT] = {0}, qok[QD_TYPE_COUNT] = {0}, dn[QD_TYPE_COUNT] = {0}, dok[QD_TYPE_COUNT] = {0};
    tu_vector v;
    while (tu_vector_next(f, &v)) {
        const char *cs = v.cs, *tn = v.tn;
        const int imat = v.imat;
        const long long nrows = v.nrows, ncols = v.ncols;
        const size_t q_len = (size_t)v.bytes, dq_len = (size_t)(nrows * ncols) * 4;
        qd_type t;
        if (qd_type_from_name(tn, &t) != QD_OK || !qd_cuda_can_quantize(t, imat))
            continue;
        float *in, *im;
        uint8_t *want;
        tu_vector_load(dir, &v, &in, &im, &want);
        uint8_t *got = malloc(q_len);
        assert_non_null(got);
        memset(got, 0xa5, q_len);
        qn[t]++;
        int rc = qd_cuda_quantize(c, t, QD_TYPE_F32, in, got, nrows, ncols, im);
        if (rc == QD_OK && !memcmp(got, want, q_len))
            qok[t]++;
        else
            printf("MISMATCH cuda %s %s%s: rc %d\n", cs, tn, imat ? " imatrix" : "", rc);
        /* the dequantize vector of this block file (one per case and type) */
        float *dwant = tu_vector_deq(dir, &v);
        if (dwant) {
            float *dgot = malloc(dq_len);
            assert_non_null(dgot);
            dn[t]++;
            rc = qd_cuda_dequantize(c, t, want, dgot, nrows, ncols);
            if (rc == QD_OK && !memcmp(dgot, dwant, dq_len))
                dok[t]++;
            else
                printf("MISMATCH cuda dequantize %s %s: rc %d\n", cs, tn, rc);
            free(dgot);
            free(dwant);
        }
        free(in);
        free(im);
        free(want);
        free(got);
    }
    fclose(f);
    int total = 0, good = 0;
    for (int t = 0; t < QD_TYPE_COUNT; t++) {
        if (!qn[t])
            continue;
        printf("   cuda %-7s quantize %d/%d identical, dequantize %d/%d\n", qd_type_traits_get((qd_type)t)->name,
               qok[t], qn[t], dok[t], dn[t]);
        total += qn[t] + dn[t];
        good += qok[t] + dok[t];
    }
    printf("   cuda golden vectors: %d/%d identical\n", good, total);
    for (size_t i = 0; i < N_GPU_TYPES; i++)
        assert_true(qn[gpu_types[i]] > 0);
    assert_int_equal(good, total);
    qd_cuda_close(c);
}

/* ---- against the CPU ---- */

static uint16_t to_half(float v, qd_type src)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if (src == QD_TYPE_BF16)
        return (uint16_t)(u >> 16); /* truncation: any bf16 will do as input */
    float a = fabsf(v);
    uint16_t s = (uint16_t)((u >> 16) & 0x8000u);
    if (a >= 65504.f)
        return s | 0x7bffu;
    if (a < 6.1e-5f)
        return s | (uint16_t)(a / 5.9604645e-8f);
    int e;
    float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    return s | (uint16_t)((e + 14) << 10) | (uint16_t)((m * 2.f - 1.f) * 1024.f);
}

static void widen(const void *src, qd_type st, float *x, int64_t n)
{
    if (st == QD_TYPE_F32)
        memcpy(x, src, (size_t)n * 4);
    else
        OK(qd_dequantize_rows(st, src, x, 1, n));
}

/* One shape from one source type: the GPU's bytes against qd_quantize_rows on the CPU (same rc, same bytes), with
 * and without an importance matrix; then the dequantizers. */
/* mode: every 32 values from that edge family of kernel_data.h (fill_chunk), or -1 for rows mixing them */
static void check_shape(qd_cuda *c, tu_rng *r, qd_type t, qd_type st, int64_t nrows, int64_t ncols, bool reg,
                        int mode, long *cases)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    const size_t n = (size_t)(nrows * ncols), rs = qd_row_size(t, ncols), qb = rs * (size_t)nrows;
    const size_t es = st == QD_TYPE_F32 ? 4 : 2;
    /* page-aligned: registration pins whole pages, and two ranges may not share one */
    uint8_t *src = aligned_alloc(4096, (n * es + 4095) & ~(size_t)4095);
    uint8_t *qg = aligned_alloc(4096, (qb + 4095) & ~(size_t)4095);
    uint8_t *qc = malloc(qb), *rnd = malloc(qb);
    float *x = malloc(n * 4), *im = malloc((size_t)ncols * 4), *dc = malloc(n * 4), *dg = malloc(n * 4);
    assert_true(src && qc && qg && rnd && x && im && dc && dg);
    g_max = t == QD_TYPE_F16 ? 6e4 : max_for(t);
    const int chunk = tu_next(r) & 1 ? 32 : (int)tr->block_size;
    for (int64_t row = 0; row < nrows; row++) {
        if (mode < 0)
            fill_row(r, x + row * ncols, ncols, chunk);
        else
            for (int64_t k = 0; k < ncols; k += 32)
                fill_chunk(r, x + row * ncols + k, 32, mode);
    }
    if (st != QD_TYPE_F32)
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)src)[i] = to_half(x[i], st);
    else
        memcpy(src, x, n * 4);
    widen(src, st, x, (int64_t)n);
    fill_imatrix(r, im, ncols);
    /* registered: the copy engines read the source and write the result in place, no staging */
    if (reg) {
        OK(qd_cuda_register(c, src, n * es, true));
        OK(qd_cuda_register(c, qg, qb, false));
    }
    for (int with_im = 0; with_im < 2; with_im++) {
        const float *w = with_im ? im : NULL;
        const int rc_cpu = qd_quantize_rows(t, x, qc, nrows, ncols, w);
        if (rc_cpu != QD_OK && rc_cpu != QD_EINVAL)
            fail_msg("CPU quantize %s: %d (%s)", tr->name, rc_cpu, qd_error_last()->message);
        memset(qg, 0xa5, qb);
        const int rc_gpu = qd_cuda_quantize(c, t, st, src, qg, nrows, ncols, w);
        if (rc_gpu != rc_cpu)
            fail_msg("%s from %s (%lld x %lld%s): CPU rc %d, GPU rc %d (%s)", tr->name,
                     qd_type_traits_get(st)->name, (long long)nrows, (long long)ncols, w ? ", imatrix" : "", rc_cpu,
                     rc_gpu, rc_gpu ? qd_error_last()->message : "");
        if (rc_cpu == QD_OK && memcmp(qc, qg, qb)) {
            size_t k = 0;
            while (qc[k] == qg[k])
                k++;
            fail_msg("%s from %s (%lld x %lld%s): first differing byte %zu (block %zu): CPU 0x%02x, GPU 0x%02x",
                     tr->name, qd_type_traits_get(st)->name, (long long)nrows, (long long)ncols, w ? ", imatrix" : "",
                     k, k / tr->type_size, qc[k], qg[k]);
        }
        ++*cases;
    }
    if (reg) {
        qd_cuda_unregister(c, src);
        qd_cuda_unregister(c, qg);
    }
    /* dequantize the CPU's blocks (when they exist) and random block bytes: NaN/Inf scales included */
    tu_fill(r, rnd, qb);
    for (int pass = 0; pass < 2; pass++) {
        const uint8_t *q = pass ? rnd : qc;
        if (!pass && qd_quantize_rows(t, x, qc, nrows, ncols, NULL) != QD_OK)
            continue;
        OK(qd_dequantize_rows(t, q, dc, nrows, ncols));
        OK(qd_cuda_dequantize(c, t, q, dg, nrows, ncols));
        for (size_t i = 0; i < n; i++) /* bit for bit, except that a NaN's payload is the hardware's own */
            if (memcmp(&dc[i], &dg[i], 4) && !(isnan(dc[i]) && isnan(dg[i])))
                fail_msg("dequantize %s (%s bytes): value %zu: CPU %a, GPU %a", tr->name, pass ? "random" : "reference",
                         i, (double)dc[i], (double)dg[i]);
    }
    free(src);
    free(qc);
    free(qg);
    free(rnd);
    free(x);
    free(im);
    free(dc);
    free(dg);
}

static void test_cuda__matches_cpu(void **state)
{
    (void)state;
    /* chunks of 4096 values: rows of 1024 stream 4 to a chunk through all slots; rows of 8192 are wider than a
     * chunk (a chunk is then one row) */
    qd_cuda *c = open_or_skip(4096);
    tu_rng r;
    uint64_t seed = tu_seed();
    tu_rng_seed(&r, seed);
    static const qd_type srcs[] = {QD_TYPE_F32, QD_TYPE_F16, QD_TYPE_BF16};
    long cases = 0;
    for (size_t i = 0; i < N_GPU_TYPES; i++) {
        const qd_type t = gpu_types[i];
        const int64_t bs = (int64_t)qd_type_traits_get(t)->block_size;
        const int64_t shapes[][2] = {{1, bs > 1 ? bs : 32}, {37, 1024}, {5, 8192}, {3, 256 * 7}};
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            check_shape(c, &r, t, srcs[(i + s) % 3], shapes[s][0], shapes[s][1], (i + s) % 2, -1, &cases);
        /* each edge family alone: degenerate blocks (denormal ranges, where a scale search meets 0 * inf and its
         * NaN, which reads differently on the GPU than on a CPU), constants, ties, spikes */
        for (int mode = 0; mode < NMODES; mode++)
            check_shape(c, &r, t, QD_TYPE_F32, 4, 512, false, mode, &cases);
    }
    printf("   %ld GPU cases identical to the CPU (seed %llu), half of them through registered memory\n", cases,
           (unsigned long long)seed);
    /* registration: overlapping ranges are refused; an unknown pointer is ignored */
    uint8_t *buf = malloc(1 << 16);
    assert_non_null(buf);
    OK(qd_cuda_register(c, buf, 1 << 16, false));
    assert_int_equal(qd_cuda_register(c, buf + 100, 10, false), QD_EINVAL);
    qd_cuda_unregister(c, buf + 1);
    qd_cuda_unregister(c, buf);
    OK(qd_cuda_register(c, buf + 100, 10, true));
    qd_cuda_unregister(c, buf + 100);
    free(buf);
    qd_cuda_close(c);
    /* one large call with the default chunk: 64 Mi values, several chunks through every slot */
    c = open_or_skip(0);
    for (int k = 0; k < 2; k++)
        check_shape(c, &r, k ? QD_TYPE_Q4_K : QD_TYPE_Q8_0, QD_TYPE_F16, 16384, 4096, k, -1, &cases);
    qd_cuda_close(c);
}

static void test_cuda__bad_input(void **state)
{
    (void)state;
    qd_cuda *c = open_or_skip(4096);
    const int64_t nrows = 9, ncols = 1024;
    float *x = calloc((size_t)(nrows * ncols), 4);
    uint8_t *y = malloc(qd_row_size(QD_TYPE_F32, ncols) * (size_t)nrows);
    assert_true(x && y);
    for (int64_t i = 0; i < nrows * ncols; i++)
        x[i] = (float)((i * 7919) % 1000) / 500.f - 1.f;
    x[6 * ncols + 7] = NAN;
    x[7 * ncols + 3] = INFINITY; /* a later one: the first is reported */
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_Q4_K, QD_TYPE_F32, x, y, nrows, ncols, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "row 6 col 7"));
    x[6 * ncols + 7] = 0;
    x[7 * ncols + 3] = 70000.f; /* fine for Q8_0, not for F16 */
    OK(qd_cuda_quantize(c, QD_TYPE_Q8_0, QD_TYPE_F32, x, y, nrows, ncols, NULL));
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_F16, QD_TYPE_F32, x, y, nrows, ncols, NULL), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "row 7 col 3"));
    x[7 * ncols + 3] = 4e8f; /* beyond what any block holds */
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_Q8_0, QD_TYPE_F32, x, y, nrows, ncols, NULL), QD_EINVAL);
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_Q4_K, QD_TYPE_F32, x, y, nrows, 1000, NULL), QD_EINVAL);
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_IQ2_XXS, QD_TYPE_F32, x, y, nrows, ncols, x), QD_EUNSUPPORTED);
    assert_int_equal(qd_cuda_quantize(c, QD_TYPE_Q8_0, QD_TYPE_Q8_0, x, y, nrows, ncols, NULL), QD_EUNSUPPORTED);
    /* after the refusals the device still works */
    x[7 * ncols + 3] = 1.f;
    OK(qd_cuda_quantize(c, QD_TYPE_Q4_0, QD_TYPE_F32, x, y, nrows, ncols, NULL));
    free(x);
    free(y);
    qd_cuda_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda__open_reports),
        cmocka_unit_test(test_cuda__golden_vectors),
        cmocka_unit_test(test_cuda__matches_cpu),
        cmocka_unit_test(test_cuda__bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
