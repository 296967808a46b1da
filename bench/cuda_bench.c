/*
 * cuda_bench.c - the GPU path's throughput (include/qd/cuda.h), host memory to host memory, against the card's copy
 * bandwidth and against the CPU kernels, all measured in the same run (run by bench/cuda.sh).
 *
 * A buffer of generated heavy-tailed F16 weights (rows of 4096) is quantized per type: on the GPU (qd_cuda_quantize:
 * pinned staging, copies in and out overlapped with the kernels) and on the CPU (T threads over row ranges, F16 ->
 * F32 in a small buffer, then qd_quantize_rows, the pipeline's own loop). Reported in GB/s of F16 input, best of
 * --reps; the GPU's figure also as a fraction of the pinned host-to-device copy rate. Both outputs are compared
 * byte for byte. The copy rate: cudaMemcpyAsync from pinned memory, timed with events, best of 5.
 *
 *   cuda_bench [--mb N] [--threads T] [--types q8_0,q4_0,...] [--reps R]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "qd/cuda.h"
#include "bench.h"
#include "qd/err.h"
#include "qd/quant.h"

#define NCOLS 4096
#define CHUNK_ROWS 16

typedef struct job {
    qd_type t;
    const uint16_t *in;
    uint8_t *out;
    int64_t r0, r1;
    int rc;
} job;

static void *cpu_main(void *arg)
{
    job *j = arg;
    j->rc = bench_quantize_f16_rows(j->t, j->in, j->out, j->r0, j->r1, NCOLS, CHUNK_ROWS, NULL);
    return NULL;
}

static int cpu_quantize(qd_type t, const uint16_t *in, uint8_t *out, int64_t rows, int nth)
{
    pthread_t tid[256];
    job jobs[256];
    for (int i = 0; i < nth; i++) {
        jobs[i] = (job){t, in, out, rows * i / nth, rows * (i + 1) / nth, 0};
        pthread_create(&tid[i], NULL, cpu_main, &jobs[i]);
    }
    int rc = QD_OK;
    for (int i = 0; i < nth; i++) {
        pthread_join(tid[i], NULL);
        if (jobs[i].rc)
            rc = jobs[i].rc;
    }
    return rc;
}

/* Heavy-tailed weights as F16 (xorshift, a normal over a small uniform now and then, outlier columns). */
static void fill(uint16_t *x, size_t n)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    float *f = malloc(NCOLS * sizeof(float));
    for (size_t r = 0; r < n / NCOLS; r++) {
        for (int c = 0; c < NCOLS; c++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            double u = (double)(s >> 11) * 0x1p-53, v = (double)((s >> 20) & 0xffff) / 65536.0;
            double g = (u + v - 1.0) * 0.05;
            if ((s & 1023) == 0)
                g *= 20;
            if (c % 512 == 7)
                g *= 8;
            f[c] = (float)g;
        }
        qd_quantize_rows(QD_TYPE_F16, f, x + r * NCOLS, 1, NCOLS, NULL);
    }
    free(f);
}

int main(int argc, char **argv)
{
    size_t mb = 1024;
    int nth = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 3;
    const char *types = "q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k,iq4_nl,f16,bf16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mb") && i + 1 < argc)
            mb = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: cuda_bench [--mb N] [--threads T] [--types a,b] [--reps R]\n");
            return 2;
        }
    }
    if (nth < 1 || nth > 256 || reps < 1 || mb < 8) {
        fprintf(stderr, "cuda_bench: bad --threads, --reps or --mb\n");
        return 2;
    }
    qd_cuda *c = NULL;
    if (qd_cuda_open(&c, 0)) {
        printf("cuda_bench: %s\n", qd_error_last()->message);
        return 77;
    }
    const qd_cuda_info *d = qd_cuda_device(c);
    printf("device: %s, sm_%d, %d SMs, %.0f GiB, %d copy engines; host: %d threads\n", d->name, d->sm,
           d->multiprocessors, (double)d->memory / (1 << 30), d->copy_engines, nth);
    double h2d, d2h;
    if (qd_cuda_copy_bandwidth(c, (size_t)256 << 20, 5, &h2d, &d2h)) {
        printf("copy bandwidth: %s\n", qd_error_last()->message);
        return 1;
    }
    printf("copy bandwidth (pinned, 256 MiB, best of 5): host->device %.1f GB/s, device->host %.1f GB/s\n", h2d, d2h);

    const int64_t rows = (int64_t)(mb << 20) / 2 / NCOLS;
    const size_t nvals = (size_t)rows * NCOLS, in_bytes = nvals * 2;
    uint16_t *in = big_alloc(in_bytes, false);
    uint8_t *og = big_alloc(nvals * 2, false), *og2 = big_alloc(nvals * 2, false);
    uint8_t *oc = big_alloc(nvals * 2, false);
    fill(in, nvals);
    printf("input: %.2f GB of F16, %lld rows of %d (pageable host memory)\n", (double)in_bytes / 1e9,
           (long long)rows, NCOLS);
    /* the same buffers pinned for the copy engines (qd_cuda_register): the cost once, then direct copies */
    double t_reg = now_s();
    int reg_rc = qd_cuda_register(c, in, in_bytes, true);
    if (!reg_rc)
        reg_rc = qd_cuda_register(c, og2, nvals * 2, false);
    t_reg = now_s() - t_reg;
    if (reg_rc)
        printf("registered mode not run: %s\n", qd_error_last()->message);
    else
        printf("registering input and output (%.2f GB): %.3f s (%.1f GB/s)\n", (double)(in_bytes + nvals * 2) / 1e9,
               t_reg, (double)(in_bytes + nvals * 2) / t_reg / 1e9);
    printf("staged: through qd_cuda's pinned buffers; direct: the registered buffers; GB/s of F16 input, best of %d\n",
           reps);
    printf("%-8s %10s %10s %10s %9s %10s %10s  %s\n", "type", "staged", "direct", "cpu", "direct/cpu", "staged/h2d",
           "direct/h2d", "bytes");
    char list[512];
    snprintf(list, sizeof(list), "%s", types);
    int bad = 0;
    for (char *save = NULL, *tn = strtok_r(list, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
        qd_type t;
        if (qd_type_from_name(tn, &t) || !qd_cuda_can_quantize(t, false)) {
            printf("%-8s not on the GPU path\n", tn);
            continue;
        }
        const size_t ob = qd_row_size(t, NCOLS) * (size_t)rows;
        double best_g = 1e30, best_d = 1e30, best_c = 1e30;
        memset(og2, 0, ob);
        for (int r = 0; r < reps; r++) {
            for (int direct = 0; direct < 2; direct++) {
                if (direct && reg_rc)
                    continue;
                double t0 = now_s();
                if (qd_cuda_quantize(c, t, QD_TYPE_F16, in, direct ? og2 : og, rows, NCOLS, NULL)) {
                    printf("%s: GPU: %s\n", tn, qd_error_last()->message);
                    return 1;
                }
                double dt = now_s() - t0, *best = direct ? &best_d : &best_g;
                if (dt < *best)
                    *best = dt;
            }
        }
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            if (cpu_quantize(t, in, oc, rows, nth)) {
                printf("%s: CPU: %s\n", tn, qd_error_last()->message);
                return 1;
            }
            double t1 = now_s();
            if (t1 - t0 < best_c)
                best_c = t1 - t0;
        }
        const int same = !memcmp(og, oc, ob) && (reg_rc || !memcmp(og2, oc, ob));
        bad += !same;
        const double g = (double)in_bytes / best_g / 1e9, cg = (double)in_bytes / best_c / 1e9;
        const double dg = reg_rc ? 0 : (double)in_bytes / best_d / 1e9;
        printf("%-8s %10.2f %10.2f %10.2f %9.2fx %9.0f%% %9.0f%%  %s\n", qd_type_traits_get(t)->name, g, dg, cg,
               dg / cg, 100.0 * g / h2d, 100.0 * dg / h2d, same ? "identical" : "DIFFER");
    }
    if (!reg_rc) {
        qd_cuda_unregister(c, in);
        qd_cuda_unregister(c, og2);
    }
    qd_cuda_close(c);
    if (bad)
        printf("MISMATCH: %d type(s) differ between GPU and CPU\n", bad);
    return bad ? 1 : 0;
}
