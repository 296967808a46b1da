/*
 * audit.c - `make bench-audit`: the audit indexes at scale. N generated artifacts (default one million; AUDIT_N
 * overrides) in lineage trees are written through qd_audit_index_put_many (the function publishes use, in batches
 * of one transaction each) into a fresh store in a temporary directory; then the latency of
 *   - a depth-3 lineage walk up from a random artifact and down from a random root,
 *   - a query by method, by converter version, and by method AND converter version (first page, limit 100),
 *   - a point lookup of one record (the floor: one read transaction and one mdb_get),
 * each as p50 and p99 over Q runs (AUDIT_Q, default 2000), and as a baseline measured in the same run, a full scan of
 * every record filtering by converter version (what answering without the index costs). The target is p99 < 5 ms.
 * Absolute times move with the machine's load: compare the ratios. AUDIT_DIR=DIR keeps the generated store in DIR
 * (and reuses it when a run with the same AUDIT_N made it), so the queries can be timed again without the write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/alloc.h"
#include "qd/audit.h"
#include "qd/err.h"
#include "qd/store.h"

#define GROUP 12 /* artifacts per lineage tree: node k > 0 was made from node (k - 1) / 2, node 0 from the root */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void digest_of(qd_digest *d, uint64_t i, uint64_t salt)
{
    for (int k = 0; k < 4; k++) {
        uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ (salt + (uint64_t)k) * 0xbf58476d1ce4e5b9ull;
        x ^= x >> 31;
        x *= 0x94d049bb133111ebull;
        x ^= x >> 29;
        memcpy(d->bytes + 8 * k, &x, 8);
    }
}

static const char *METHODS[] = {"rtn", "k-quant", "imatrix", "gptq", "awq", "smoothquant", "nf4", "fp4", "int8", "fp8"};
static const char *FORMATS[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K",
                                "nf4", "fp8_e4m3"};
static const char *HW[] = {"x86_64-avx2", "x86_64-avx512", "cuda-sm90", "arm64-neon"};

static void make_entry(qd_audit_entry *e, uint64_t i, uint64_t N)
{
    uint64_t g = i / GROUP, k = i % GROUP;
    memset(e, 0, sizeof(*e));
    digest_of(&e->manifest, i, 1);
    e->has_source = true;
    if (k == 0)
        digest_of(&e->source, g, 2); /* the tree's root checkpoint (not itself indexed) */
    else
        digest_of(&e->source, g * GROUP + (k - 1) / 2, 1);
    e->created = 1700000000 + (int64_t)i;
    e->bits = (int)(2 + next() % 7);
    snprintf(e->repo, sizeof(e->repo), "ns%02u/model%03u", (unsigned)(g % 50), (unsigned)(g % 997));
    snprintf(e->method, sizeof(e->method), "%s", METHODS[next() % 10]);
    snprintf(e->format, sizeof(e->format), "%s", FORMATS[next() % 12]);
    snprintf(e->calibration, sizeof(e->calibration), "%s", next() % 2 ? "none" : "generic-text");
    snprintf(e->converter, sizeof(e->converter), "quantd");
    snprintf(e->converter_version, sizeof(e->converter_version), "0.%u.%u", (unsigned)(i * 50 / (N ? N : 1)),
             (unsigned)(next() % 2));
    snprintf(e->verdict, sizeof(e->verdict), "%s", next() % 5 ? "pass" : "fail");
    e->n_hardware = 1;
    snprintf(e->hardware[0], sizeof(e->hardware[0]), "%s", HW[next() % 4]);
    e->n_keys = 1;
    snprintf(e->keys[0], sizeof(e->keys[0]), "%064x", (unsigned)(next() % 16));
}

/* CPU time of this thread: excludes the time spent waiting for a core on a loaded machine */
static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double *cpu_lat; /* per query, beside the wall-clock latencies */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *t, size_t n, double base_p50)
{
    qsort(t, n, sizeof(*t), cmp_d);
    qsort(cpu_lat, n, sizeof(*cpu_lat), cmp_d);
    printf("%-40s wall p50 %7.3f p99 %7.3f ms %-11s on-CPU p50 %7.3f p99 %7.3f ms", what, t[n / 2], t[n * 99 / 100],
           t[n * 99 / 100] < 5.0 ? "(<5 ms)" : "(NOT <5 ms)", cpu_lat[n / 2], cpu_lat[n * 99 / 100]);
    if (base_p50 > 0)
        printf("  scan/this %.0fx", base_p50 / t[n / 2]);
    printf("\n");
    fflush(stdout);
}

static int count_node(const qd_audit_node *n, void *payload)
{
    (void)n;
    ++*(size_t *)payload;
    return 0;
}

static int count_entry(const qd_audit_entry *e, void *payload)
{
    (void)e;
    ++*(size_t *)payload;
    return 0;
}

static bool scan_allow(const char *repo, void *payload)
{
    (void)repo;
    (void)payload;
    return true;
}

int main(void)
{
    const char *ns = getenv("AUDIT_N"), *qs = getenv("AUDIT_Q");
    size_t N = ns ? strtoull(ns, NULL, 10) : 1000000, Q = qs ? strtoull(qs, NULL, 10) : 2000, batch = 20000;
    char dir[512] = "/tmp/qd-bench-audit.XXXXXX", cmd[1100], marker[600];
    const char *keep;
    bool reuse = false;
    qd_store *s = NULL;
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    qd_audit_entry *buf;
    double t0, c0, *lat, scan_p50;
    size_t nodes_total = 0, hits = 0;
    int rc;

    if (N < GROUP * 10 || Q < 100) {
        fprintf(stderr, "AUDIT_N must be at least %d and AUDIT_Q at least 100\n", GROUP * 10);
        return 2;
    }
    keep = getenv("AUDIT_DIR");
    if (keep && *keep) {
        FILE *m;
        snprintf(dir, sizeof(dir), "%s", keep);
        snprintf(marker, sizeof(marker), "%s/bench-n", dir);
        if ((m = fopen(marker, "r"))) {
            unsigned long long have = 0;
            reuse = fscanf(m, "%llu", &have) == 1 && have == N;
            fclose(m);
        }
        if (!reuse && (snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", dir, dir), system(cmd) != 0))
            return 1;
    } else if (snprintf(dir, sizeof(dir), "%s/qd-bench-audit.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"),
               !mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    so.flags = QD_STORE_CREATE;
    so.map_max = 64ull << 30;
    if ((rc = qd_store_open(&s, dir, &so)) < 0) {
        fprintf(stderr, "open: %s\n", qd_error_last()->message);
        return 1;
    }
    buf = qd_calloc(batch, sizeof(*buf));
    lat = qd_calloc(Q, sizeof(*lat));
    cpu_lat = qd_calloc(Q, sizeof(*cpu_lat));
    printf("bench-audit: %zu artifacts in lineage trees of %d, written through qd_audit_index_put_many in "
           "transactions of %zu\n",
           N, GROUP, batch);
    t0 = now_ms();
    for (size_t i = 0; i < N && !reuse; i += batch) {
        size_t n = N - i < batch ? N - i : batch;
        for (size_t k = 0; k < n; k++)
            make_entry(&buf[k], i + k, N);
        if ((rc = qd_audit_index_put_many(s, buf, n)) < 0) {
            fprintf(stderr, "index: %s\n", qd_error_last()->message);
            return 1;
        }
    }
    if (reuse) {
        printf("  reusing the store in %s\n", dir);
    } else {
        FILE *m;
        printf("  written in %.1f s (%.0f artifacts/s)\n", (now_ms() - t0) / 1e3,
               (double)N / ((now_ms() - t0) / 1e3));
        if (keep && *keep && (m = fopen(marker, "w"))) {
            fprintf(m, "%zu\n", N);
            fclose(m);
        }
    }
    fflush(stdout);

    /* the baseline: what a query costs without the index (every record read and filtered), a few runs */
    {
        double ts[3];
        for (int r = 0; r < 3; r++) {
            qd_audit_filter f;
            qd_audit_page page;
            size_t got = 0;
            char cursor[QD_AUDIT_CURSOR_LEN + 1] = "";
            memset(&f, 0, sizeof(f));
            f.limit = QD_AUDIT_LIMIT_MAX;
            f.allow = scan_allow;
            t0 = now_ms();
            /* the time index pages through every record; filtering by hand stands for a scan */
            do {
                f.cursor = cursor;
                if (qd_audit_index_query(&page, s, &f, count_entry, &got) < 0)
                    return 1;
                snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
            } while (page.more);
            ts[r] = now_ms() - t0;
            hits = got;
        }
        qsort(ts, 3, sizeof(double), cmp_d);
        scan_p50 = ts[1];
        printf("  baseline: reading all %zu records (no index) p50 %.1f ms\n", hits, scan_p50);
    }

    /* point lookup: the floor */
    for (size_t q = 0; q < Q; q++) {
        qd_digest d;
        digest_of(&d, next() % N, 1);
        c0 = cpu_ms();
        t0 = now_ms();
        if (qd_audit_index_get(buf, s, &d) < 0)
            return 1;
        lat[q] = now_ms() - t0;
        cpu_lat[q] = cpu_ms() - c0;
    }
    report("record lookup (one mdb_get)", lat, Q, scan_p50);

    for (int down = 0; down < 2; down++) {
        nodes_total = 0;
        for (size_t q = 0; q < Q; q++) {
            qd_digest d;
            if (down)
                digest_of(&d, next() % (N / GROUP), 2);
            else
                digest_of(&d, next() % N, 1);
            c0 = cpu_ms();
            t0 = now_ms();
            if (qd_audit_index_lineage(NULL, s, &d, down, 3, 0, count_node, &nodes_total) < 0) {
                fprintf(stderr, "lineage: %s\n", qd_error_last()->message);
                return 1;
            }
            lat[q] = now_ms() - t0;
            cpu_lat[q] = cpu_ms() - c0;
        }
        printf("  (%.1f nodes per walk)\n", (double)nodes_total / (double)Q);
        report(down ? "lineage depth 3, down from a root" : "lineage depth 3, up from an artifact", lat, Q, scan_p50);
    }

    for (int kind = 0; kind < 3; kind++) {
        size_t got_total = 0;
        for (size_t q = 0; q < Q; q++) {
            qd_audit_filter f;
            qd_audit_page page;
            char ver[32];
            size_t got = 0;
            memset(&f, 0, sizeof(f));
            f.limit = 100;
            snprintf(ver, sizeof(ver), "0.%u.%u", (unsigned)(next() % 50), (unsigned)(next() % 2));
            if (kind != 1)
                f.method = METHODS[next() % 10];
            if (kind != 0)
                f.converter_version = ver;
            c0 = cpu_ms();
            t0 = now_ms();
            if (qd_audit_index_query(&page, s, &f, count_entry, &got) < 0) {
                fprintf(stderr, "query: %s\n", qd_error_last()->message);
                return 1;
            }
            lat[q] = now_ms() - t0;
            cpu_lat[q] = cpu_ms() - c0;
            got_total += got;
        }
        printf("  (%.1f results per page of at most 100)\n", (double)got_total / (double)Q);
        report(kind == 0   ? "query method=M (limit 100)"
               : kind == 1 ? "query converter_version=V (limit 100)"
                           : "query method=M & converter_version=V",
               lat, Q, scan_p50);
    }
    printf("(the machine is shared: absolute times are noisy; the ratios to the scan are the figure to compare)\n");
    qd_free(buf);
    qd_free(lat);
    qd_free(cpu_lat);
    qd_store_close(s);
    if (keep && *keep)
        return 0;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
