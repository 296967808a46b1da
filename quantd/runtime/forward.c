/*
 * forward.c - the llama forward pass: batched over positions, threaded over output rows, f32 compute.
 *
 * One eval call takes n tokens at positions n_past .. n_past+n-1 and runs every layer on the whole batch: the
 * matmuls see an [n, in] activation block, so each weight row is read (and, for quantized weights, dequantized)
 * once per batch instead of once per token. Rows are cut into tiles of TILE rows per thread; a tile is dequantized
 * into the thread's scratch and dotted with every position.
 *
 * KV cache: positions are kept as f32 after a round trip through the cache type (quantize, then dequantize the
 * row of kv_dim values). The numbers are exactly those of a cache stored in that type and dequantized on read;
 * this reference runtime does not realize the memory saving (docs/RUNTIME.md).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/runtime.h"

#define TILE 8
#define MAX_BATCH 256
#define MAX_THREADS 64

typedef float (*dot_fn)(const float *a, const float *b, int64_t n);

struct qd_llama_ctx {
    const qd_llama_model *m;
    qd_llama_ctx_options o;
    int n_ctx, n_past, kv_dim, hs, nth;
    dot_fn dot;
    const char *simd;
    float *kc, *vc;       /* [layers][n_ctx][kv_dim] */
    float *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2, *rope; /* batch scratch, MAX_BATCH rows */
    float *wtile;         /* per thread: TILE * max_cols */
    float *scores;        /* per thread: n_ctx */
    void *kvq;            /* one quantized kv row */
    int64_t max_cols;
    int8_t *xq;           /* W8A8: the batch's activations in int8, MAX_BATCH * max_cols */
    float *xs;            /* W8A8: their per-token scales */
    qd_llama_observer obs; /* sees each matmul's input (calibration), or NULL */
    void *obs_user;
};

/* ---------------------------------------------------------------- dots */

static float dot_scalar(const float *a, const float *b, int64_t n)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[k + j] * b[k + j];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; k < n; k++)
        r += a[k] * b[k];
    return r;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(b + k + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(b + k + 24), s3);
    }
    for (; k + 8 <= n; k += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; k < n; k++)
        r += a[k] * b[k];
    return r;
}
#endif

static float h2f(const uint8_t *p)
{
    uint32_t h = (uint32_t)(p[0] | p[1] << 8), sign = (h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 1023, bits;
    if (e == 0) { /* zero or subnormal: exact in f32 */
        float f = (float)m * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    bits = e == 31 ? sign | 0x7f800000u | (m << 13) : sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Quantized dot products on the bytes: sum over blocks of d * sum(q * x), eight partial sums per block. */
static float qdot_q8_0(const uint8_t *w, const float *x, int64_t n)
{
    float r = 0;
    for (int64_t b = 0; b < n / 32; b++, w += 34, x += 32) {
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int j = 0; j < 32; j += 8)
            for (int k = 0; k < 8; k++)
                s[k] += (float)(int8_t)w[2 + j + k] * x[j + k];
        r += h2f(w) * (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])));
    }
    return r;
}

static float qdot_q4_0(const uint8_t *w, const float *x, int64_t n)
{
    float r = 0;
    for (int64_t b = 0; b < n / 32; b++, w += 18, x += 32) {
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int j = 0; j < 16; j += 8)
            for (int k = 0; k < 8; k++)
                s[k] += (float)((w[2 + j + k] & 15) - 8) * x[j + k] + (float)((w[2 + j + k] >> 4) - 8) * x[j + k + 16];
        r += h2f(w) * (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])));
    }
    return r;
}

typedef float (*qdot_fn)(const uint8_t *w, const float *x, int64_t n);

static qdot_fn qdot_for(qd_type t)
{
    return t == QD_TYPE_Q8_0 ? qdot_q8_0 : t == QD_TYPE_Q4_0 ? qdot_q4_0 : NULL;
}

/* ---------------------------------------------------------------- W8A8: int8 x int8 -> int32 */

static int32_t dot_i8_scalar(const int8_t *a, const int8_t *b, int64_t n)
{
    int32_t s = 0;
    for (int64_t k = 0; k < n; k++)
        s += (int32_t)a[k] * (int32_t)b[k];
    return s;
}

#if defined(__x86_64__)
/* |a| (unsigned) times b with a's sign (signed), pairs summed in int16 (at most 2 * 127 * 127: no saturation),
 * then widened to int32 */
__attribute__((target("avx2"))) static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, int64_t n)
{
    __m256i acc = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        __m256i va = _mm256_loadu_si256((const __m256i *)(a + k)), vb = _mm256_loadu_si256((const __m256i *)(b + k));
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
    }
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    int32_t s = _mm_cvtsi128_si32(h);
    for (; k < n; k++)
        s += (int32_t)a[k] * (int32_t)b[k];
    return s;
}
#endif

static bool have_avx2(void)
{
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

int32_t qd_w8a8_dot(const int8_t *a, const int8_t *b, int64_t n, int simd)
{
#if defined(__x86_64__)
    if (simd >= 0 && have_avx2())
        return dot_i8_avx2(a, b, n);
#endif
    (void)simd;
    return dot_i8_scalar(a, b, n);
}

float qd_w8a8_quantize_row(int8_t *q, const float *x, int64_t n)
{
    float amax = 0;
    for (int64_t i = 0; i < n; i++)
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    if (!(amax > 0)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    float inv = 127.0f / amax;
    for (int64_t i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * inv);
        q[i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v);
    }
    return amax / 127.0f;
}

int qd_llama_tensor_f32(const qd_llama_tensor *t, float *dst)
{
    if (t->type == QD_TYPE_I8 && t->row_scale) {
        const int8_t *q = t->data;
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t c = 0; c < t->cols; c++)
                dst[r * t->cols + c] = (float)q[r * t->cols + c] * t->row_scale[r];
        return QD_OK;
    }
    return qd_dequantize_rows(t->type, t->data, dst, t->rows, t->cols);
}

/* ---------------------------------------------------------------- threads */

typedef void (*job_fn)(void *arg, int64_t i0, int64_t i1, int tid);

typedef struct job {
    job_fn fn;
    void *arg;
    int64_t i0, i1;
    int tid;
} job;

static void *job_main(void *p)
{
    job *j = p;
    j->fn(j->arg, j->i0, j->i1, j->tid);
    return NULL;
}

/* Run fn over [0, n) split in nth contiguous ranges; the caller's thread takes the first. */
static void parallel_for(int nth, int64_t n, job_fn fn, void *arg)
{
    if (nth > n)
        nth = (int)n;
    if (nth <= 1) {
        fn(arg, 0, n, 0);
        return;
    }
    pthread_t th[MAX_THREADS];
    job jobs[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (int t = 0; t < nth; t++)
        jobs[t] = (job){fn, arg, n * t / nth, n * (t + 1) / nth, t};
    for (int t = 1; t < nth; t++)
        started[t] = pthread_create(&th[t], NULL, job_main, &jobs[t]) == 0;
    fn(arg, jobs[0].i0, jobs[0].i1, 0);
    for (int t = 1; t < nth; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn(arg, jobs[t].i0, jobs[t].i1, t); /* could not start a thread: do its share here */
    }
}

/* ---------------------------------------------------------------- matmul: y[n][rows] = x[n][cols] . W^T */

typedef struct mm_arg {
    qd_llama_ctx *c;
    float *y;
    const float *x;
    int n;
    const qd_llama_tensor *w;
} mm_arg;

static void mm_job(void *p, int64_t t0, int64_t t1, int tid)
{
    mm_arg *a = p;
    const qd_llama_tensor *w = a->w;
    int64_t rows = w->rows, cols = w->cols;
    size_t rs = qd_row_size(w->type, cols);
    /* AUTO: block dots for one position (decode); for a batch, one dequantized tile serves every position */
    qd_llama_matmul mode = a->c->o.matmul;
    qdot_fn qd = (mode == QD_MATMUL_QDOT || (mode == QD_MATMUL_AUTO && a->n == 1)) ? qdot_for(w->type) : NULL;
    float *scratch = a->c->wtile + (size_t)tid * TILE * a->c->max_cols;
    for (int64_t tile = t0; tile < t1; tile++) {
        int64_t r0 = tile * TILE, r1 = r0 + TILE < rows ? r0 + TILE : rows;
        const uint8_t *bytes = (const uint8_t *)w->data + (size_t)r0 * rs;
        if (w->type == QD_TYPE_F32 || qd == NULL) {
            const float *wf = (const float *)w->data + r0 * cols;
            if (w->type != QD_TYPE_F32) {
                qd_dequantize_rows(w->type, bytes, scratch, r1 - r0, cols);
                wf = scratch;
            }
            for (int p2 = 0; p2 < a->n; p2++) {
                const float *xp = a->x + (size_t)p2 * cols;
                float *yp = a->y + (size_t)p2 * rows;
                for (int64_t r = r0; r < r1; r++)
                    yp[r] = a->c->dot(wf + (r - r0) * cols, xp, cols);
            }
        } else {
            for (int p2 = 0; p2 < a->n; p2++) {
                const float *xp = a->x + (size_t)p2 * cols;
                float *yp = a->y + (size_t)p2 * rows;
                for (int64_t r = r0; r < r1; r++)
                    yp[r] = qd(bytes + (size_t)(r - r0) * rs, xp, cols);
            }
        }
    }
}

/* W8A8: y[p][r] = (float)(xq_p . wq_r) * (xs_p * ws_r) */
static void w8a8_job(void *p, int64_t t0, int64_t t1, int tid)
{
    (void)tid;
    mm_arg *a = p;
    const qd_llama_tensor *w = a->w;
    int64_t rows = w->rows, cols = w->cols;
    const int8_t *wq = w->data;
    for (int64_t r = t0 * TILE; r < t1 * TILE && r < rows; r++)
        for (int p2 = 0; p2 < a->n; p2++) {
            int32_t acc = qd_w8a8_dot(wq + r * cols, a->c->xq + (size_t)p2 * cols, cols, a->c->o.simd);
            a->y[(size_t)p2 * rows + r] = (float)acc * (a->c->xs[p2] * w->row_scale[r]);
        }
}

static void matmul_at(qd_llama_ctx *c, int layer, qd_llama_site site, float *y, const float *x, int n,
                      const qd_llama_tensor *w)
{
    if (c->obs)
        c->obs(c->obs_user, layer, site, w, x, n);
    mm_arg a = {c, y, x, n, w};
    if (w->type == QD_TYPE_I8 && w->row_scale) { /* W8A8: activations to int8 per token, then integer dots */
        for (int p = 0; p < n; p++)
            c->xs[p] = qd_w8a8_quantize_row(c->xq + (size_t)p * w->cols, x + (size_t)p * w->cols, w->cols);
        int64_t tiles = (w->rows + TILE - 1) / TILE;
        parallel_for((double)w->rows * (double)w->cols * n < 65536.0 ? 1 : c->nth, tiles, w8a8_job, &a);
        return;
    }
    int64_t tiles = (w->rows + TILE - 1) / TILE;
    double work = (double)w->rows * (double)w->cols * n;
    parallel_for(work < 65536.0 ? 1 : c->nth, tiles, mm_job, &a);
}

/* ---------------------------------------------------------------- pieces */

static void rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps)
{
    for (int p = 0; p < n; p++) {
        const float *xp = x + (size_t)p * dim;
        float *op = out + (size_t)p * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)xp[i] * xp[i];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++)
            op[i] = xp[i] * scale * w[i];
    }
}

/* rotate adjacent pairs (2i, 2i+1) of every head of width hs in v (width w) by pos * theta^(-2i/hs) */
static void rope_apply(float *v, int w, int hs, const float *cs)
{
    for (int h = 0; h < w; h += hs)
        for (int i = 0; i < hs; i += 2) {
            float co = cs[i], si = cs[i + 1], a = v[h + i], b = v[h + i + 1];
            v[h + i] = a * co - b * si;
            v[h + i + 1] = a * si + b * co;
        }
}

static int kv_round(qd_llama_ctx *c, float *row)
{
    int n = c->kv_dim;
    switch (c->o.kv_type) {
    case QD_KV_F32: return QD_OK;
    case QD_KV_FP8_E4M3:
        for (int i = 0; i < n; i++)
            row[i] = qd_fp8_e4m3_to_f32(qd_fp8_e4m3_from_f32(row[i]));
        return QD_OK;
    default: {
        qd_type t = c->o.kv_type == QD_KV_F16 ? QD_TYPE_F16 : c->o.kv_type == QD_KV_Q8_0 ? QD_TYPE_Q8_0 : QD_TYPE_Q4_0;
        int rc = qd_quantize_rows(t, row, c->kvq, 1, n, NULL);
        return rc < 0 ? rc : qd_dequantize_rows(t, c->kvq, row, 1, n);
    }
    }
}

typedef struct att_arg {
    qd_llama_ctx *c;
    int layer, n;
} att_arg;

static void att_job(void *p, int64_t i0, int64_t i1, int tid)
{
    att_arg *a = p;
    qd_llama_ctx *c = a->c;
    const qd_llama_config *cfg = &c->m->cfg;
    int hs = c->hs, kvmul = cfg->n_heads / cfg->n_kv_heads, dim = cfg->dim;
    float *sc = c->scores + (size_t)tid * c->n_ctx;
    float inv = 1.0f / sqrtf((float)hs);
    const float *kc = c->kc + (size_t)a->layer * c->n_ctx * c->kv_dim;
    const float *vc = c->vc + (size_t)a->layer * c->n_ctx * c->kv_dim;
    for (int64_t it = i0; it < i1; it++) {
        int i = (int)(it / cfg->n_heads), h = (int)(it % cfg->n_heads);
        int pos = c->n_past + i, kvh = h / kvmul;
        const float *q = c->q + (size_t)i * dim + h * hs;
        float mx = -INFINITY;
        /* caches are transposed per head: [layer][kv head][d][position], so these loops run along positions */
        const float *kt = kc + (size_t)kvh * hs * c->n_ctx;
        int np = pos + 1;
        for (int t = 0; t < np; t++)
            sc[t] = 0;
        for (int d = 0; d < hs; d++) {
            float qd = q[d] * inv;
            const float *kr = kt + (size_t)d * c->n_ctx;
            for (int t = 0; t < np; t++)
                sc[t] += qd * kr[t];
        }
        for (int t = 0; t < np; t++)
            mx = sc[t] > mx ? sc[t] : mx;
        float sum = 0;
        for (int t = 0; t <= pos; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        float *o = c->att + (size_t)i * dim + h * hs;
        float is = 1.0f / sum;
        const float *vt = vc + (size_t)kvh * hs * c->n_ctx;
        for (int d = 0; d < hs; d++)
            o[d] = c->dot(sc, vt + (size_t)d * c->n_ctx, np) * is;
    }
}

/* ---------------------------------------------------------------- context */

void qd_llama_ctx_free(qd_llama_ctx *c)
{
    if (!c)
        return;
    float *bufs[] = {c->kc, c->vc, c->x, c->xb, c->xb2, c->q, c->k, c->v, c->att, c->hb, c->hb2, c->rope,
                     c->wtile, c->scores};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
        qd_free(bufs[i]);
    qd_free(c->kvq);
    qd_free(c->xq);
    qd_free(c->xs);
    qd_free(c);
}

int qd_llama_ctx_new(qd_llama_ctx **out, const qd_llama_model *m, const qd_llama_ctx_options *opts)
{
    qd_llama_ctx_options def = QD_LLAMA_CTX_OPTIONS_INIT;
    *out = NULL;
    int rc = qd_llama_check(m);
    if (rc < 0)
        return rc;
    qd_llama_ctx *c = qd_calloc(1, sizeof(*c));
    if (!c)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "runtime context: out of memory");
    c->m = m;
    c->o = opts ? *opts : def;
    const qd_llama_config *cfg = &m->cfg;
    c->nth = c->o.n_threads > 0 ? (c->o.n_threads > MAX_THREADS ? MAX_THREADS : c->o.n_threads) : 2;
    c->n_ctx = c->o.n_ctx > 0 ? c->o.n_ctx : cfg->seq_len;
    c->hs = cfg->dim / cfg->n_heads;
    c->kv_dim = cfg->dim / cfg->n_heads * cfg->n_kv_heads;
    if ((c->o.kv_type == QD_KV_Q8_0 || c->o.kv_type == QD_KV_Q4_0) && c->kv_dim % 32) {
        qd_llama_ctx_free(c);
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "KV cache %s needs kv_dim %% 32 == 0 (kv_dim is %d)",
                            qd_llama_kv_name(c->o.kv_type), c->kv_dim);
    }
    c->dot = dot_scalar;
    c->simd = "scalar";
#if defined(__x86_64__)
    if (c->o.simd >= 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        c->dot = dot_avx2;
        c->simd = "avx2";
    }
#endif
    c->max_cols = cfg->dim > cfg->hidden_dim ? cfg->dim : cfg->hidden_dim;
    size_t B = MAX_BATCH, kvn = (size_t)cfg->n_layers * c->n_ctx * c->kv_dim;
    size_t wide = (size_t)(cfg->hidden_dim > cfg->dim ? cfg->hidden_dim : cfg->dim);
    c->kc = qd_calloc(kvn, sizeof(float));
    c->vc = qd_calloc(kvn, sizeof(float));
    c->x = qd_mallocarray(B * cfg->dim, sizeof(float));
    c->xb = qd_mallocarray(B * cfg->dim, sizeof(float));
    c->xb2 = qd_mallocarray(B * wide, sizeof(float));
    c->q = qd_mallocarray(B * cfg->dim, sizeof(float));
    c->k = qd_mallocarray(B * c->kv_dim, sizeof(float));
    c->v = qd_mallocarray(B * c->kv_dim, sizeof(float));
    c->att = qd_mallocarray(B * cfg->dim, sizeof(float));
    c->hb = qd_mallocarray(B * wide, sizeof(float));
    c->hb2 = qd_mallocarray(B * wide, sizeof(float));
    c->rope = qd_mallocarray((size_t)c->hs, sizeof(float));
    c->wtile = qd_mallocarray((size_t)c->nth * TILE * c->max_cols, sizeof(float));
    c->scores = qd_mallocarray((size_t)c->nth * c->n_ctx, sizeof(float));
    c->kvq = qd_malloc((size_t)c->kv_dim * 4 + 64);
    c->xq = qd_malloc(B * (size_t)c->max_cols);
    c->xs = qd_mallocarray(B, sizeof(float));
    if (!c->kc || !c->vc || !c->x || !c->xb || !c->xb2 || !c->q || !c->k || !c->v || !c->att || !c->hb || !c->hb2 ||
        !c->rope || !c->wtile || !c->scores || !c->kvq || !c->xq || !c->xs) {
        qd_llama_ctx_free(c);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "runtime context (n_ctx %d): out of memory", c->n_ctx);
    }
    *out = c;
    return QD_OK;
}

void qd_llama_reset(qd_llama_ctx *c) { c->n_past = 0; }
int qd_llama_n_past(const qd_llama_ctx *c) { return c->n_past; }
const char *qd_llama_simd_name(const qd_llama_ctx *c) { return c->simd; }

void qd_llama_ctx_set_observer(qd_llama_ctx *c, qd_llama_observer fn, void *user)
{
    c->obs = fn;
    c->obs_user = user;
}

const char *qd_llama_site_name(char *buf, size_t cap, int layer, qd_llama_site site)
{
    static const char *const names[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                        "ffn_down"};
    if (site == QD_SITE_OUTPUT)
        snprintf(buf, cap, "output.weight");
    else if ((unsigned)site < sizeof(names) / sizeof(names[0]))
        snprintf(buf, cap, "blk.%d.%s.weight", layer, names[site]);
    else
        snprintf(buf, cap, "?");
    return buf;
}

static int embed(qd_llama_ctx *c, float *dst, int32_t tok)
{
    const qd_llama_tensor *e = &c->m->tok_embd;
    return qd_dequantize_rows(e->type, (const uint8_t *)e->data + (size_t)tok * qd_row_size(e->type, e->cols), dst, 1,
                              e->cols);
}

/* one batch of n <= MAX_BATCH tokens */
static int eval_batch(qd_llama_ctx *c, const int32_t *tokens, int n, float *logits, float *last)
{
    const qd_llama_model *m = c->m;
    const qd_llama_config *cfg = &m->cfg;
    int dim = cfg->dim, kv = c->kv_dim, hid = cfg->hidden_dim, rc;
    for (int p = 0; p < n; p++)
        if ((rc = embed(c, c->x + (size_t)p * dim, tokens[p])) < 0)
            return rc;
    for (int l = 0; l < cfg->n_layers; l++) {
        const qd_llama_layer *L = &m->layers[l];
        rmsnorm(c->xb, c->x, L->attn_norm.data, n, dim, cfg->norm_eps);
        matmul_at(c, l, QD_SITE_ATTN_Q, c->q, c->xb, n, &L->wq);
        matmul_at(c, l, QD_SITE_ATTN_K, c->k, c->xb, n, &L->wk);
        matmul_at(c, l, QD_SITE_ATTN_V, c->v, c->xb, n, &L->wv);
        for (int p = 0; p < n; p++) {
            int pos = c->n_past + p;
            for (int i = 0; i < c->hs; i += 2) {
                float ang = (float)pos * powf(cfg->rope_theta, -(float)i / (float)c->hs);
                c->rope[i] = cosf(ang);
                c->rope[i + 1] = sinf(ang);
            }
            rope_apply(c->q + (size_t)p * dim, dim, c->hs, c->rope);
            rope_apply(c->k + (size_t)p * kv, kv, c->hs, c->rope);
            float *kr = c->k + (size_t)p * kv, *vr = c->v + (size_t)p * kv;
            if ((rc = kv_round(c, kr)) < 0 || (rc = kv_round(c, vr)) < 0)
                return rc;
            float *kd = c->kc + (size_t)l * c->n_ctx * kv, *vd = c->vc + (size_t)l * c->n_ctx * kv;
            for (int j = 0; j < kv; j++) { /* element j = head j / hs, d = j % hs: row j of the transposed cache */
                kd[(size_t)j * c->n_ctx + pos] = kr[j];
                vd[(size_t)j * c->n_ctx + pos] = vr[j];
            }
        }
        att_arg aa = {c, l, n};
        int64_t items = (int64_t)n * cfg->n_heads;
        parallel_for((double)items * (c->n_past + n) * c->hs < 65536.0 ? 1 : c->nth, items, att_job, &aa);
        matmul_at(c, l, QD_SITE_ATTN_OUT, c->xb2, c->att, n, &L->wo);
        for (size_t i = 0; i < (size_t)n * dim; i++)
            c->x[i] += c->xb2[i];
        rmsnorm(c->xb, c->x, L->ffn_norm.data, n, dim, cfg->norm_eps);
        matmul_at(c, l, QD_SITE_FFN_GATE, c->hb, c->xb, n, &L->w1);
        matmul_at(c, l, QD_SITE_FFN_UP, c->hb2, c->xb, n, &L->w3);
        for (size_t i = 0; i < (size_t)n * hid; i++) {
            float g = c->hb[i];
            c->hb[i] = g / (1.0f + expf(-g)) * c->hb2[i];
        }
        matmul_at(c, l, QD_SITE_FFN_DOWN, c->xb2, c->hb, n, &L->w2);
        for (size_t i = 0; i < (size_t)n * dim; i++)
            c->x[i] += c->xb2[i];
    }
    c->n_past += n;
    if (logits) {
        rmsnorm(c->xb, c->x, m->final_norm.data, n, dim, cfg->norm_eps);
        matmul_at(c, -1, QD_SITE_OUTPUT, logits, c->xb, n, cfg->tied_output ? &m->tok_embd : &m->output);
        if (last)
            memcpy(last, logits + (size_t)(n - 1) * cfg->vocab, sizeof(float) * (size_t)cfg->vocab);
    } else if (last) {
        rmsnorm(c->xb, c->x + (size_t)(n - 1) * dim, m->final_norm.data, 1, dim, cfg->norm_eps);
        matmul_at(c, -1, QD_SITE_OUTPUT, last, c->xb, 1, cfg->tied_output ? &m->tok_embd : &m->output);
    }
    return QD_OK;
}

int qd_llama_eval(qd_llama_ctx *c, const int32_t *tokens, int n, float *logits, float *last_logits)
{
    const qd_llama_config *cfg = &c->m->cfg;
    if (n <= 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "eval: no tokens");
    if (n > c->n_ctx - c->n_past)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "eval: %d tokens after %d do not fit the context of %d", n,
                            c->n_past, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "eval: token id %d at position %d is out of range "
                                "[0, %d)", (int)tokens[i], i, cfg->vocab);
    for (int done = 0; done < n;) {
        int b = n - done < MAX_BATCH ? n - done : MAX_BATCH;
        bool final = done + b == n;
        int rc = eval_batch(c, tokens + done, b, logits ? logits + (size_t)done * cfg->vocab : NULL,
                            final ? last_logits : NULL);
        if (rc < 0)
            return rc;
        done += b;
    }
    return QD_OK;
}

static int32_t argmax(const float *v, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

int qd_llama_generate_greedy(qd_llama_ctx *c, const int32_t *prompt, int n_prompt, int n_gen, int32_t *out)
{
    int vocab = c->m->cfg.vocab, rc;
    int32_t bos = 1;
    float *lg = qd_mallocarray((size_t)vocab, sizeof(float));
    if (!lg)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "generate: out of memory");
    if (n_prompt == 0) {
        prompt = &bos;
        n_prompt = 1;
    }
    rc = qd_llama_eval(c, prompt, n_prompt, NULL, lg);
    for (int i = 0; rc == QD_OK && i < n_gen; i++) {
        out[i] = argmax(lg, vocab);
        if (i + 1 < n_gen)
            rc = qd_llama_eval(c, &out[i], 1, NULL, lg);
    }
    qd_free(lg);
    return rc;
}
