/*
 * testutil.h - helpers shared by the cmocka tests: sandboxes, a seeded generator, ../shared lookup.
 *
 * Seeds: every test binary prints "seed=N" once; QD_TEST_SEED=N replays it.
 */
#ifndef QD_TESTUTIL_H
#define QD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* xoshiro256** seeded through splitmix64: fast, good enough for test data */
typedef struct tu_rng {
    uint64_t s[4];
} tu_rng;

static inline uint64_t tu_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline void tu_rng_seed(tu_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}

static inline uint64_t tu_next(tu_rng *r)
{
    uint64_t *s = r->s, res = tu_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = tu_rotl(s[3], 45);
    return res;
}

static inline void tu_fill(tu_rng *r, void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n >= 8) {
        uint64_t x = tu_next(r);
        memcpy(p, &x, 8);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t x = tu_next(r);
        memcpy(p, &x, n);
    }
}

/* The run's seed: QD_TEST_SEED or the clock, printed once. */
static inline uint64_t tu_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *s = getenv("QD_TEST_SEED");
        seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        printf("seed=%llu (replay with QD_TEST_SEED=%llu)\n", (unsigned long long)seed, (unsigned long long)seed);
        done = 1;
    }
    return seed;
}

/* A fresh temporary directory; remove it with tu_rmtree. */
static inline char *tu_sandbox(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(512);
    snprintf(p, 512, "%s/qdtest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static inline void tu_rmtree(const char *path)
{
    char cmd[1024];
    if (!path)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    if (system(cmd) != 0) {
        /* best effort */
    }
}

/* Path of a file under ../shared (relative to the project root, found from QD_ROOT or the cwd), or NULL when
 * the shared folder is absent; the caller skips with a message then. */
static inline const char *tu_shared(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("QD_ROOT");
    struct stat st;
    snprintf(buf, sizeof(buf), "%s/../shared/%s", root && *root ? root : ".", rel);
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* The whole file dir/rel in a malloc'd buffer (its length in *len), or NULL when it cannot be read. */
static inline void *tu_read_in(const char *dir, const char *rel, size_t *len)
{
    char path[4096];
    int k = snprintf(path, sizeof(path), "%s/%s", dir, rel);
    if (len)
        *len = 0;
    FILE *f = k > 0 && (size_t)k < sizeof(path) ? fopen(path, "rb") : NULL;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (len)
        *len = (size_t)n;
    return p;
}

/* One case of the golden vectors' index (../shared/vectors/ggml/index.tsv). */
typedef struct tu_vector {
    char cs[128], tn[32], file[512]; /* case, type name, block file (relative to the index's folder) */
    int imat;                        /* quantized with cases/<case>.imatrix.f32 */
    long long nrows, ncols, bytes;
} tu_vector;

/* The index opened past its header, its folder in dir (dirlen bytes), or NULL where ../shared is absent. */
static inline FILE *tu_vectors_open(char *dir, size_t dirlen)
{
    const char *index = tu_shared("vectors/ggml/index.tsv");
    char line[1024];
    FILE *f = index ? fopen(index, "r") : NULL;
    if (!f)
        return NULL;
    snprintf(dir, dirlen, "%s", index);
    *strrchr(dir, '/') = 0;
    if (!fgets(line, sizeof(line), f)) { /* the header */
        fclose(f);
        return NULL;
    }
    return f;
}

/* The next case into v; false at the end. A malformed line fails the test. */
static inline bool tu_vector_next(FILE *f, tu_vector *v)
{
    char line[1024];
    if (!fgets(line, sizeof(line), f))
        return false;
    if (sscanf(line, "%127s %31s %d %lld %lld %lld %511s", v->cs, v->tn, &v->imat, &v->nrows, &v->ncols, &v->bytes,
               v->file) != 7)
        fail_msg("bad index line: %s", line);
    return true;
}

/* A case's files, every length checked: its input (nrows x ncols floats) in *in, its importance matrix (ncols floats)
 * in *im where the case has one (else NULL), ggml's block bytes in *blocks. The caller frees the three. */
static inline void tu_vector_load(const char *dir, const tu_vector *v, float **in, float **im, uint8_t **blocks)
{
    char rel[1024];
    size_t n;
    snprintf(rel, sizeof(rel), "cases/%s.f32", v->cs);
    *in = tu_read_in(dir, rel, &n);
    assert_non_null(*in);
    assert_int_equal(n, (size_t)(v->nrows * v->ncols) * sizeof(float));
    *im = NULL;
    if (v->imat) {
        snprintf(rel, sizeof(rel), "cases/%s.imatrix.f32", v->cs);
        *im = tu_read_in(dir, rel, &n);
        assert_non_null(*im);
        assert_int_equal(n, (size_t)v->ncols * sizeof(float));
    }
    *blocks = tu_read_in(dir, v->file, &n);
    assert_non_null(*blocks);
    assert_int_equal(n, (size_t)v->bytes);
}

/* ggml's dequantization of the case's block file (nrows x ncols floats, length checked), or NULL where the vectors
 * have none (cases quantized with an importance matrix have none). The caller frees it. */
static inline float *tu_vector_deq(const char *dir, const tu_vector *v)
{
    char rel[1024];
    size_t n;
    if (v->imat)
        return NULL;
    snprintf(rel, sizeof(rel), "deq/%s.%s.f32", v->cs, v->tn);
    float *p = tu_read_in(dir, rel, &n);
    if (p)
        assert_int_equal(n, (size_t)(v->nrows * v->ncols) * sizeof(float));
    return p;
}

#define TU_SKIP(...)                                                                                               \
    do {                                                                                                           \
        printf("skip: " __VA_ARGS__);                                                                              \
        printf("\n");                                                                                              \
        skip();                                                                                                    \
    } while (0)

#endif
