/*
 * quantize_bench.c - `make bench-quantize` (run through bench/quantize.sh): kernel-level quantize throughput per
 * kernel variant, in GB/s of F16 input, with the machine's bound measured in the same run.
 *
 * A large buffer of generated heavy-tailed F16 weights (rows of 2048, like a llama dim-2048 model) is quantized
 * with T threads (default 2), each over its own range of rows: F16 -> F32 into a small per-thread buffer with
 * the variant's F16 converter, then qd_quantize_rows(). Buffers are allocated once, with MADV_HUGEPAGE, and
 * touched before timing. Every variant's output is compared byte for byte: the SIMD variants over the whole
 * buffer, the reference over the whole buffer for the fast types and over a prefix (--ref-mb) for the slow ones.
 * The bound: reading the input buffer (sum, same threads) and memcpy of it, measured here; the write bound
 * (dd of a file of the output's size) is measured by bench/quantize.sh and passed in with --write TYPE=SECONDS.
 *
 *   quantize_bench [--mb N] [--threads T] [--types q8_0,q4_0,...] [--ref-mb N] [--write TYPE=SEC,...]
 *   quantize_bench --sizes [--mb N] [--types ...]      (output bytes per type, for the dd runs)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench.h"
#include "qd/err.h"
#include "qd/quant.h"

#define NCOLS 2048
#define CHUNK_ROWS 32

/* ---- threads over row ranges ---- */

typedef struct job {
    int mode; /* 0 quantize, 1 read, 2 memcpy */
    qd_type t;
    const uint16_t *in;
    uint8_t *out;
    int64_t r0, r1;
    uint64_t sum;
    const float *imatrix; /* NULL: plain quantization */
    double cpu_s;         /* this thread's CPU time */
    int rc;
} job;

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(job *j);

static void *worker(void *arg)
{
    job *j = arg;
    const double c0 = thread_cpu_s();
    work(j);
    j->cpu_s = thread_cpu_s() - c0;
    return NULL;
}

static void *work(job *j)
{
    if (j->mode == 1) {
        const uint64_t *p = (const uint64_t *)(j->in + j->r0 * NCOLS), *e = (const uint64_t *)(j->in + j->r1 * NCOLS);
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (; p + 4 <= e; p += 4) {
            s0 += p[0];
            s1 += p[1];
            s2 += p[2];
            s3 += p[3];
        }
        j->sum = s0 + s1 + s2 + s3;
        return NULL;
    }
    if (j->mode == 2) {
        memcpy(j->out + j->r0 * NCOLS * 2, j->in + j->r0 * NCOLS, (size_t)(j->r1 - j->r0) * NCOLS * 2);
        return NULL;
    }
    j->rc = bench_quantize_f16_rows(j->t, j->in, j->out, j->r0, j->r1, NCOLS, CHUNK_ROWS, j->imatrix);
    return NULL;
}

/* Run mode over rows [0, nrows) on nt threads; returns wall seconds, and in *cpu the largest thread CPU time
 * (what the wall time would be on otherwise idle cores: this VM's cores are shared with other jobs). */
static const float *g_imatrix;

static double run(int mode, qd_type t, const uint16_t *in, uint8_t *out, int64_t nrows, int nt, double *cpu)
{
    pthread_t th[16];
    job jobs[16];
    const double t0 = now_s();
    for (int i = 0; i < nt; i++) {
        jobs[i] = (job){.mode = mode, .t = t, .in = in, .out = out, .r0 = nrows * i / nt, .r1 = nrows * (i + 1) / nt,
                        .imatrix = g_imatrix};
        pthread_create(&th[i], NULL, worker, &jobs[i]);
    }
    int rc = 0;
    double cmax = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        rc |= jobs[i].rc;
        cmax = jobs[i].cpu_s > cmax ? jobs[i].cpu_s : cmax;
    }
    if (cpu)
        *cpu = cmax;
    const double dt = now_s() - t0;
    if (rc) {
        fprintf(stderr, "quantize_bench: %s\n", qd_error_last()->message);
        exit(1);
    }
    return dt;
}

/* ---- data: heavy-tailed weights (a normal with rare large outliers), as F16 ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void generate(uint16_t *in, int64_t nrows)
{
    float *f = malloc(sizeof(float) * NCOLS);
    for (int64_t r = 0; r < nrows; r++) {
        const float row_scale = 0.01f + 0.04f * (float)(rng() >> 40) / (float)(1 << 24);
        for (int c = 0; c < NCOLS; c++) {
            const uint64_t u = rng();
            /* sum of four uniforms ~ normal; 1 in 256 values scaled up 8-30x (the heavy tail) */
            float g = ((float)(u & 0xffff) + (float)((u >> 16) & 0xffff) + (float)((u >> 32) & 0xffff) +
                       (float)((u >> 48) & 0xffff)) / 65536.f - 2.f;
            if ((rng() & 255) == 0)
                g *= 8.f + (float)(rng() % 23);
            f[c] = g * row_scale;
        }
        if (qd_quantize_rows(QD_TYPE_F16, f, in + r * NCOLS, 1, NCOLS, NULL)) {
            fprintf(stderr, "quantize_bench: %s\n", qd_error_last()->message);
            exit(1);
        }
    }
    free(f);
}

/* ---- main ---- */

static const struct {
    const char *name;
    double gbps;
    const char *what;
} anchors[] = {
    {"q8_0", 0.235, "Q8_0"},
    {"q4_0", 0.357, "Q4_0"},
    {"q4_K", 0.057, "Q4_K_M (Q4_K+Q6_K mix)"},
    {"q6_K", 0.057, "Q4_K_M (Q4_K+Q6_K mix)"},
};

static int select_variant(qd_kernel_variant v)
{
    setenv("QD_KERNELS", qd_kernels_name(v), 1);
    return qd_kernels_select();
}

int main(int argc, char **argv)
{
    int64_t mb = 256, ref_mb = 64;
    int nt = 2, sizes_only = 0;
    char types_arg[256] = "q8_0,q4_0,q4_K,q6_K,q5_K,iq4_nl";
    char write_arg[1024] = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--ref-mb") && i + 1 < argc)
            ref_mb = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            snprintf(types_arg, sizeof(types_arg), "%s", argv[++i]);
        else if (!strcmp(argv[i], "--write") && i + 1 < argc)
            snprintf(write_arg, sizeof(write_arg), "%s", argv[++i]);
        else if (!strcmp(argv[i], "--sizes"))
            sizes_only = 1;
        else if (!strcmp(argv[i], "--imatrix")) {
            /* a generated importance matrix (positive, spread over 3 decades) for every type that uses one */
            static float im[NCOLS];
            for (int c = 0; c < NCOLS; c++)
                im[c] = 0.01f + (float)(rng() % 1000) / 10.f;
            g_imatrix = im;
        }
        else {
            fprintf(stderr, "usage: quantize_bench [--mb N] [--ref-mb N] [--threads T] [--types a,b] [--write T=S,...] "
                            "[--sizes] [--imatrix]\n");
            return 2;
        }
    }
    if (mb < 1 || nt < 1 || nt > 16) {
        fprintf(stderr, "quantize_bench: bad --mb or --threads\n");
        return 2;
    }
    const int64_t nrows = (mb << 20) / (NCOLS * 2);
    const size_t in_bytes = (size_t)nrows * NCOLS * 2;
    int64_t ref_rows = (ref_mb << 20) / (NCOLS * 2);
    if (ref_rows > nrows)
        ref_rows = nrows;

    qd_type types[16];
    int ntypes = 0;
    for (char *save = NULL, *tok = strtok_r(types_arg, ",", &save); tok && ntypes < 16;
         tok = strtok_r(NULL, ",", &save)) {
        if (qd_type_from_name(tok, &types[ntypes])) {
            fprintf(stderr, "quantize_bench: %s\n", qd_error_last()->message);
            return 2;
        }
        ntypes++;
    }
    if (sizes_only) {
        for (int i = 0; i < ntypes; i++)
            printf("%s %zu\n", qd_type_traits_get(types[i])->name, qd_row_size(types[i], NCOLS) * (size_t)nrows);
        return 0;
    }

    uint16_t *in = big_alloc(in_bytes, true);
    uint8_t *copy = big_alloc(in_bytes, true);
    generate(in, nrows);
    printf("quantize bench: %.0f MiB of F16 (%lld rows x %d), %d threads, %s, kernels: ref avx2 avx512 (as usable); "
           "cpu: %s\n", (double)in_bytes / 1048576, (long long)nrows, NCOLS, nt,
           g_imatrix ? "WITH a generated importance matrix" : "no importance matrix", qd_kernels_cpu_features());

    /* the bound, same buffer, same threads: read (sum) and memcpy, best of 3 */
    double t_read = 1e9, t_copy = 1e9;
    for (int k = 0; k < 3; k++) {
        double a = run(1, QD_TYPE_F16, in, NULL, nrows, nt, NULL), b = run(2, QD_TYPE_F16, in, copy, nrows, nt, NULL);
        t_read = a < t_read ? a : t_read;
        t_copy = b < t_copy ? b : t_copy;
    }
    printf("bound: read %.2f GB/s, memcpy %.2f GB/s (of F16 input; %d threads)\n", in_bytes / t_read / 1e9,
           in_bytes / t_copy / 1e9, nt);
    munmap(copy, in_bytes);

    printf("GB/s: F16 input bytes over wall time (best of 3); cpuGB/s: over the busiest thread's CPU time (steadier on\n"
           "this shared VM); vs ref/anchor use wall GB/s, (cpu) the CPU-time figure; vs read/write: fraction of the bound\n");
    printf("%-7s %-7s %8s %8s %9s %8s %8s %8s %8s %10s %10s %s\n", "type", "kernels", "GB/s", "cpuGB/s", "Mval/s",
           "vs ref", "(cpu)", "vs read", "vs write", "vs anchor", "(cpu)", "bytes");
    int failures = 0;
    for (int ti = 0; ti < ntypes; ti++) {
        const qd_type t = types[ti];
        const char *tn = qd_type_traits_get(t)->name;
        const size_t out_bytes = qd_row_size(t, NCOLS) * (size_t)nrows;
        /* the reference is slow on the searched types: measured on a prefix there */
        const bool slow = t != QD_TYPE_Q8_0 && t != QD_TYPE_Q4_0 && t != QD_TYPE_Q4_1 && t != QD_TYPE_Q5_0 &&
                          t != QD_TYPE_Q5_1;
        const int64_t rrows = slow ? ref_rows : nrows;
        double write_s = 0;
        const char *w = strstr(write_arg, tn);
        while (w && (w[strlen(tn)] != '=' || (w != write_arg && w[-1] != ',')))
            w = strstr(w + 1, tn);
        if (w)
            write_s = atof(w + strlen(tn) + 1);
        uint8_t *outs[3] = {NULL, NULL, NULL};
        double gbps[3] = {0, 0, 0}, cgbps[3] = {0, 0, 0};
        for (int v = QD_KERNELS_REF; v <= QD_KERNELS_AVX512; v++) {
            if (!qd_kernels_usable((qd_kernel_variant)v) || select_variant((qd_kernel_variant)v))
                continue;
            const int64_t rows = v == QD_KERNELS_REF ? rrows : nrows;
            outs[v] = big_alloc(out_bytes, true);
            double best = 1e9, best_cpu = 1e9;
            const int reps = v == QD_KERNELS_REF ? 1 : 3;
            for (int k = 0; k < reps; k++) {
                double c, s = run(0, t, in, outs[v], rows, nt, &c);
                best = s < best ? s : best;
                best_cpu = c < best_cpu ? c : best_cpu;
            }
            const double bytes = (double)rows * NCOLS * 2;
            gbps[v] = bytes / best / 1e9;
            cgbps[v] = bytes / best_cpu / 1e9;
            char vs_ref[16] = "-", vs_refc[16] = "-", vs_write[16] = "-", vs_anchor[40] = "-", vs_anchorc[40] = "-";
            if (v != QD_KERNELS_REF && gbps[0] > 0) {
                snprintf(vs_ref, sizeof(vs_ref), "%.1fx", gbps[v] / gbps[0]);
                snprintf(vs_refc, sizeof(vs_refc), "%.1fx", cgbps[v] / cgbps[0]);
            }
            if (write_s > 0)
                snprintf(vs_write, sizeof(vs_write), "%.2f", gbps[v] / (in_bytes / write_s / 1e9));
            for (size_t a = 0; a < sizeof(anchors) / sizeof(anchors[0]); a++)
                if (!strcmp(anchors[a].name, tn)) {
                    snprintf(vs_anchor, sizeof(vs_anchor), "%.1fx", gbps[v] / anchors[a].gbps);
                    snprintf(vs_anchorc, sizeof(vs_anchorc), "%.1fx", cgbps[v] / anchors[a].gbps);
                }
            printf("%-7s %-7s %8.3f %8.3f %9.1f %8s %8s %8.3f %8s %10s %10s %s\n", tn,
                   qd_kernels_name((qd_kernel_variant)v), gbps[v], cgbps[v], gbps[v] / 2 * 1e3, vs_ref, vs_refc,
                   gbps[v] / (in_bytes / t_read / 1e9), vs_write, vs_anchor, vs_anchorc,
                   rows == nrows ? "all" : "prefix (ref timed on a prefix)");
        }
        /* identical bytes: SIMD variants over everything, the reference over what it quantized */
        const size_t ref_bytes = qd_row_size(t, NCOLS) * (size_t)rrows;
        for (int v = QD_KERNELS_AVX2; v <= QD_KERNELS_AVX512; v++) {
            if (!outs[v])
                continue;
            if (outs[0] && memcmp(outs[0], outs[v], ref_bytes)) {
                printf("MISMATCH %s: %s differs from ref\n", tn, qd_kernels_name((qd_kernel_variant)v));
                failures++;
            }
            if (v == QD_KERNELS_AVX512 && outs[QD_KERNELS_AVX2] && memcmp(outs[QD_KERNELS_AVX2], outs[v], out_bytes)) {
                printf("MISMATCH %s: avx512 differs from avx2\n", tn);
                failures++;
            }
        }
        printf("%-7s identical output: %s (ref on %s)\n", tn, failures ? "NO" : "yes",
               rrows == nrows ? "everything" : "a prefix");
        for (int v = 0; v < 3; v++)
            if (outs[v])
                munmap(outs[v], out_bytes);
    }
    printf("anchors: llama-quantize b4747 on this kind of machine, 2 threads, a 1.43 GB F16 llama model, whole "
           "pipeline (../shared/FORMATS.md 1.5; ANOTHER RUN, not measured here): Q8_0 0.235, Q4_0 0.357, Q4_K_M "
           "0.057 GB/s\n");
    munmap(in, in_bytes);
    return failures ? 1 : 0;
}
