/*
 * validate.c - validation sets, the KLD pass, per-tensor error metrics and the policy verdict.
 *
 * Definitions are in include/qd/validate.h and docs/VALIDATION.md (llama.cpp's --kl-divergence statistics).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/validate.h"

/* ================================================================ validation sets */

void qd_valset_free(qd_valset *v)
{
    if (!v)
        return;
    qd_free(v->lens);
    qd_free(v->offs);
    qd_free(v->tokens);
    qd_free(v->slices);
    qd_free(v);
}

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= QD_VALSET_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

#define BAD(...) qd_error_set(QD_EINVAL, QD_EC_INVALID, "validation set: " __VA_ARGS__)

int qd_valset_parse(qd_valset **out, const void *buf, size_t len)
{
    const uint8_t *p = buf, *end = p + len;
    qd_valset *v = NULL;
    int rc = QD_OK;
    *out = NULL;
    if (len == 0)
        return BAD("empty (0 bytes)");
    if (len < 24 || memcmp(p, "QDVALSET", 8) != 0)
        return BAD("not a QDVALSET blob (bad magic)");
    if (rd32(p + 8) != 1)
        return BAD("version %u is not supported (1 is)", rd32(p + 8));
    uint32_t ns = rd32(p + 12), nsl = rd32(p + 16);
    if (ns == 0)
        return BAD("empty (no sequences)");
    if ((uint64_t)ns * 4 > len - 24 || nsl > 4096)
        return BAD("truncated: %u sequences announced in %zu bytes", ns, len);
    v = qd_calloc(1, sizeof(*v));
    if (!v || !(v->lens = qd_mallocarray(ns, 4)) || !(v->offs = qd_mallocarray(ns, 8)) ||
        (nsl && !(v->slices = qd_calloc(nsl, sizeof(qd_valset_slice))))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validation set: out of memory");
        goto done;
    }
    v->n_seqs = ns;
    v->n_slices = nsl;
    p += 24;
    uint64_t total = 0;
    for (uint32_t i = 0; i < ns; i++, p += 4) {
        v->lens[i] = rd32(p);
        if (v->lens[i] < 2) {
            rc = BAD("sequence %u has %u tokens (at least 2 are needed)", i, v->lens[i]);
            goto done;
        }
        v->offs[i] = total;
        total += v->lens[i];
    }
    for (uint32_t i = 0; i < nsl; i++) {
        if (end - p < 12) {
            rc = BAD("truncated in slice %u", i);
            goto done;
        }
        uint32_t first = rd32(p), cnt = rd32(p + 4), nl = rd32(p + 8);
        p += 12;
        if ((size_t)(end - p) < ((nl + 3u) & ~3u) || !name_ok((const char *)p, nl)) {
            rc = BAD("slice %u has a bad name (1..63 characters of A-Za-z0-9_.:-)", i);
            goto done;
        }
        memcpy(v->slices[i].name, p, nl);
        p += (nl + 3u) & ~3u;
        if (cnt == 0 || first >= ns || cnt > ns - first) {
            rc = BAD("slice '%s' covers sequences %u..%u of %u", v->slices[i].name, first, first + cnt, ns);
            goto done;
        }
        v->slices[i].first = first;
        v->slices[i].count = cnt;
    }
    if ((uint64_t)(end - p) != total * 4) {
        rc = BAD("%llu token bytes present, the lengths need %llu", (unsigned long long)(end - p),
                 (unsigned long long)(total * 4));
        goto done;
    }
    if (!(v->tokens = qd_mallocarray(total, 4))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validation set: out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < total; i++, p += 4) {
        uint32_t t = rd32(p);
        if (t > INT32_MAX) {
            rc = BAD("token %llu has id %u (out of range)", (unsigned long long)i, t);
            goto done;
        }
        v->tokens[i] = (int32_t)t;
    }
    v->n_tokens = total;
    *out = v;
    v = NULL;
done:
    qd_valset_free(v);
    return rc;
}

int qd_valset_serialize(void **out, size_t *out_len, const qd_valset *v)
{
    size_t n = 24 + 4 * (size_t)v->n_seqs + 4 * (size_t)v->n_tokens;
    for (uint32_t i = 0; i < v->n_slices; i++)
        n += 12 + ((strlen(v->slices[i].name) + 3) & ~(size_t)3);
    uint8_t *b = qd_calloc(1, n), *p = b;
    if (!b)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validation set: out of memory");
    memcpy(p, "QDVALSET", 8);
    wr32(p + 8, 1);
    wr32(p + 12, v->n_seqs);
    wr32(p + 16, v->n_slices);
    p += 24;
    for (uint32_t i = 0; i < v->n_seqs; i++, p += 4)
        wr32(p, v->lens[i]);
    for (uint32_t i = 0; i < v->n_slices; i++) {
        size_t nl = strlen(v->slices[i].name);
        wr32(p, v->slices[i].first);
        wr32(p + 4, v->slices[i].count);
        wr32(p + 8, (uint32_t)nl);
        memcpy(p + 12, v->slices[i].name, nl);
        p += 12 + ((nl + 3) & ~(size_t)3);
    }
    for (uint64_t i = 0; i < v->n_tokens; i++, p += 4)
        wr32(p, (uint32_t)v->tokens[i]);
    *out = b;
    *out_len = n;
    return QD_OK;
}

int qd_valset_check(const qd_valset *v, int vocab, int max_len)
{
    if (!v || v->n_seqs == 0)
        return BAD("empty (no sequences)");
    for (uint32_t s = 0; s < v->n_seqs; s++) {
        if ((int64_t)v->lens[s] > max_len)
            return BAD("sequence %u has %u tokens, more than the model's context of %d", s, v->lens[s], max_len);
        for (uint32_t i = 0; i < v->lens[s]; i++) {
            int32_t t = v->tokens[v->offs[s] + i];
            if (t < 0 || t >= vocab)
                return BAD("sequence %u position %u: token id %d is out of range [0, %d)", s, i, (int)t, vocab);
        }
    }
    return QD_OK;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int qd_valset_sample(qd_valset **out, const qd_llama_model *m, uint32_t n_seqs, uint32_t seq_len, uint64_t seed,
                     int n_threads)
{
    *out = NULL;
    if (n_seqs == 0 || seq_len < 2 || (int64_t)seq_len > m->cfg.seq_len || n_seqs > (1u << 20))
        return BAD("cannot sample %u sequences of %u tokens (the model's context is %d)", n_seqs, seq_len,
                   m->cfg.seq_len);
    int vocab = m->cfg.vocab, rc;
    qd_llama_ctx *c = NULL;
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.n_threads = n_threads;
    co.n_ctx = (int)seq_len;
    qd_valset *v = qd_calloc(1, sizeof(*v));
    float *lg = qd_mallocarray((size_t)vocab, sizeof(float));
    if (!v || !lg || !(v->lens = qd_mallocarray(n_seqs, 4)) || !(v->offs = qd_mallocarray(n_seqs, 8)) ||
        !(v->tokens = qd_mallocarray((size_t)n_seqs * seq_len, 4)) || !(v->slices = qd_calloc(1, sizeof(*v->slices)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "sample: out of memory");
        goto done;
    }
    if ((rc = qd_llama_ctx_new(&c, m, &co)) < 0)
        goto done;
    v->n_seqs = n_seqs;
    v->n_tokens = (uint64_t)n_seqs * seq_len;
    v->n_slices = 1;
    snprintf(v->slices[0].name, sizeof(v->slices[0].name), "sampled");
    v->slices[0].count = n_seqs;
    uint64_t st = seed;
    for (uint32_t s = 0; s < n_seqs; s++) {
        int32_t *t = v->tokens + (size_t)s * seq_len;
        v->lens[s] = seq_len;
        v->offs[s] = (uint64_t)s * seq_len;
        t[0] = 1;
        qd_llama_reset(c);
        for (uint32_t i = 1; i < seq_len; i++) {
            if ((rc = qd_llama_eval(c, &t[i - 1], 1, NULL, lg)) < 0)
                goto done;
            double mx = lg[0], sum = 0;
            for (int k = 1; k < vocab; k++)
                mx = lg[k] > mx ? lg[k] : mx;
            for (int k = 0; k < vocab; k++)
                sum += exp(lg[k] - mx);
            double u = (double)(splitmix(&st) >> 11) * 0x1.0p-53 * sum, acc = 0;
            int pick = vocab - 1;
            for (int k = 0; k < vocab; k++) {
                acc += exp(lg[k] - mx);
                if (u < acc) {
                    pick = k;
                    break;
                }
            }
            t[i] = pick;
        }
    }
    *out = v;
    v = NULL;
done:
    qd_llama_ctx_free(c);
    qd_free(lg);
    qd_valset_free(v);
    return rc;
}

/* ================================================================ the KLD pass */

typedef struct tok_stat {
    float kld;
    float nll_ref, nll_var;
    bool same;
} tok_stat;

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double pct(const float *sorted, int64_t n, double f)
{
    if (f <= 0)
        return sorted[0];
    if (f >= 1)
        return sorted[n - 1];
    double p = f * (double)(n - 1);
    int64_t ip = (int64_t)p;
    p -= (double)ip;
    return (1 - p) * sorted[ip] + p * sorted[ip + 1 < n ? ip + 1 : n - 1];
}

static int stats_of(qd_kld_stats *o, const tok_stat *ts, int64_t n)
{
    memset(o, 0, sizeof(*o));
    o->n = n;
    if (n == 0)
        return QD_OK;
    float *k = qd_mallocarray((size_t)n, sizeof(float));
    if (!k)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validate: out of memory");
    double s = 0, s2 = 0, nr = 0, nv = 0, lr = 0, same = 0;
    for (int64_t i = 0; i < n; i++) {
        k[i] = ts[i].kld;
        s += ts[i].kld;
        s2 += (double)ts[i].kld * ts[i].kld;
        nr += ts[i].nll_ref;
        nv += ts[i].nll_var;
        lr += (double)ts[i].nll_var - ts[i].nll_ref;
        same += ts[i].same;
    }
    qsort(k, (size_t)n, sizeof(float), cmp_float);
    o->mean = s / (double)n;
    double var = s2 / (double)n - o->mean * o->mean;
    o->mean_err = n > 1 && var > 0 ? sqrt(var / (double)(n - 1)) : 0;
    o->median = pct(k, n, 0.5);
    o->p90 = pct(k, n, 0.90);
    o->p95 = pct(k, n, 0.95);
    o->p99 = pct(k, n, 0.99);
    o->p999 = pct(k, n, 0.999);
    o->max = k[n - 1];
    o->min = k[0];
    o->same_top = same / (double)n;
    o->same_top_err = n > 1 ? sqrt(o->same_top * (1 - o->same_top) / (double)(n - 1)) : 0;
    o->ppl_ref = exp(nr / (double)n);
    o->ppl_var = exp(nv / (double)n);
    o->ln_ratio = lr / (double)n;
    o->ppl_ratio = exp(o->ln_ratio);
    qd_free(k);
    return QD_OK;
}

/* log-softmax in double; returns the argmax */
static int log_softmax(double *out, const float *lg, int n)
{
    int am = 0;
    for (int i = 1; i < n; i++)
        if (lg[i] > lg[am])
            am = i;
    double mx = lg[am], sum = 0;
    for (int i = 0; i < n; i++)
        sum += exp((double)lg[i] - mx);
    double ls = log(sum);
    for (int i = 0; i < n; i++)
        out[i] = (double)lg[i] - mx - ls;
    return am;
}

/* ================================================================ per-tensor metrics */

typedef struct sums {
    double aa, bb, ab, dd;
} sums;

static sums compare(const float *a, const float *b, int64_t n, int64_t rows, int64_t cols, bool transpose_b)
{
    sums s = {0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        double x = a[i];
        double y = transpose_b ? b[(i % cols) * rows + i / cols] : b[i];
        s.aa += x * x;
        s.bb += y * y;
        s.ab += x * y;
        s.dd += (x - y) * (x - y);
    }
    return s;
}

static double sqnr_of(sums s) { return s.dd > 0 ? 10.0 * log10(s.aa / s.dd) : INFINITY; }

static int deq(float **out, const qd_llama_tensor *t)
{
    size_t n = (size_t)(t->rows * t->cols);
    *out = qd_mallocarray(n, sizeof(float));
    if (!*out)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validate: out of memory");
    return qd_llama_tensor_f32(t, *out); /* W8A8 tensors too */
}

/* Tensor i of m; a tied model's classifier (the one index it lacks, last) is its token embedding, so a tied
 * reference compares with a variant that writes output.weight (as our GGUF writer does for llama2.c sources). */
static const qd_llama_tensor *tensor_or_tied(const qd_llama_model *m, int i, const char **name)
{
    if (i < qd_llama_tensor_count(m))
        return qd_llama_tensor_at((qd_llama_model *)m, i, name);
    if (name)
        *name = "output.weight";
    return &m->tok_embd;
}

static int tensor_metrics(qd_validation_report *r, const qd_llama_model *ref, const qd_llama_model *var)
{
    int n = qd_llama_tensor_count(ref), rc = QD_OK;
    if (qd_llama_tensor_count(var) > n)
        n = qd_llama_tensor_count(var);
    float *a = NULL, *b = NULL, *c = NULL;
    r->tensors = qd_calloc((size_t)n, sizeof(qd_tensor_metrics));
    if (!r->tensors)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validate: out of memory");
    r->n_tensors = n;
    for (int i = 0; i < n; i++) {
        const char *name;
        const qd_llama_tensor *tr = tensor_or_tied(ref, i, &name);
        const qd_llama_tensor *tv = tensor_or_tied(var, i, NULL);
        qd_tensor_metrics *tm = &r->tensors[i];
        snprintf(tm->name, sizeof(tm->name), "%s", name);
        tm->ref_type = tr->type;
        tm->var_type = tv->type;
        tm->n = tr->rows * tr->cols;
        if ((rc = deq(&a, tr)) < 0 || (rc = deq(&b, tv)) < 0)
            goto done;
        sums s = compare(a, b, tm->n, tr->rows, tr->cols, false);
        tm->sqnr_db = sqnr_of(s);
        tm->rel_rmse = s.aa > 0 ? sqrt(s.dd / s.aa) : (s.dd > 0 ? INFINITY : 0);
        tm->cosine = s.aa > 0 && s.bb > 0 ? s.ab / sqrt(s.aa * s.bb) : (s.aa == s.bb ? 1 : 0);
        tm->scale = s.aa > 0 ? s.ab / s.aa : 0;
        /* diagnosis for a tensor far off: is it another layer's tensor, the transpose, or a scaled copy? */
        /* (cheap for norms, so they are checked below 30 dB; matrices below 10 dB, to keep big models fast) */
        if (tm->sqnr_db < (tr->rows == 1 ? 30 : 10)) {
            const char *dot = strchr(name + 4, '.');
            if (!strncmp(name, "blk.", 4) && dot) {
                char suffix[64];
                snprintf(suffix, sizeof(suffix), "%s", dot);
                double best = tm->sqnr_db;
                int best_l = -1;
                for (int l = 0; l < ref->cfg.n_layers; l++) {
                    const char *on;
                    int j = 1 + 9 * l + (i - 1) % 9;
                    const qd_llama_tensor *to = qd_llama_tensor_at((qd_llama_model *)ref, j, &on);
                    if (j == i || to->rows != tr->rows || to->cols != tr->cols)
                        continue;
                    qd_free(c);
                    c = NULL;
                    if ((rc = deq(&c, to)) < 0)
                        goto done;
                    double q = sqnr_of(compare(c, b, tm->n, tr->rows, tr->cols, false));
                    if (q > best + 10) {
                        best = q;
                        best_l = l;
                    }
                }
                if (best_l >= 0) {
                    char q[32];
                    snprintf(q, sizeof(q), isinf(best) ? "identical" : "SQNR %.1f dB", best);
                    snprintf(tm->diagnosis, sizeof(tm->diagnosis),
                             "matches the reference's blk.%d%.40s (%s): layers swapped?", best_l, suffix, q);
                }
            }
            if (!tm->diagnosis[0] && tr->rows == tr->cols) {
                double q = sqnr_of(compare(a, b, tm->n, tr->rows, tr->cols, true));
                if (q > tm->sqnr_db + 10)
                    snprintf(tm->diagnosis, sizeof(tm->diagnosis),
                             "matches the transpose of the reference (SQNR %.1f dB): transposed?", q);
            }
            if (!tm->diagnosis[0] && tm->cosine > 0.95 && fabs(tm->scale - 1) > 0.2)
                snprintf(tm->diagnosis, sizeof(tm->diagnosis),
                         "values scaled by %.2f (cosine %.4f): block scales off?", tm->scale, tm->cosine);
        }
        qd_free(a);
        qd_free(b);
        a = b = NULL;
    }
    /* the worst 8 by SQNR (identical tensors never count) */
    for (int w = 0; w < 8; w++) {
        r->worst[w] = -1;
        for (int i = 0; i < n; i++) {
            bool used = false;
            for (int u = 0; u < w; u++)
                used |= r->worst[u] == i;
            if (used || isinf(r->tensors[i].sqnr_db))
                continue;
            if (r->worst[w] < 0 || r->tensors[i].sqnr_db < r->tensors[r->worst[w]].sqnr_db)
                r->worst[w] = i;
        }
    }
done:
    qd_free(a);
    qd_free(b);
    qd_free(c);
    return rc;
}

void qd_validation_report_free(qd_validation_report *r)
{
    if (!r)
        return;
    qd_free(r->slices);
    qd_free(r->tensors);
    qd_free(r);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int qd_validate_run(qd_validation_report **out, const qd_llama_model *ref, const qd_llama_model *var,
                    const qd_valset *set, const qd_validate_options *opts)
{
    qd_validate_options o = QD_VALIDATE_OPTIONS_INIT;
    if (opts)
        o = *opts;
    *out = NULL;
    int rc, vocab = ref->cfg.vocab;
    if ((rc = qd_llama_check(ref)) < 0)
        return qd_error_prefix("reference");
    if ((rc = qd_llama_check(var)) < 0)
        return qd_error_prefix("variant");
    if ((rc = qd_llama_same_shape(ref, var)) < 0)
        return rc;
    uint32_t maxlen = 0;
    for (uint32_t s = 0; set && s < set->n_seqs; s++)
        maxlen = set->lens[s] > maxlen ? set->lens[s] : maxlen;
    if ((rc = qd_valset_check(set, vocab, ref->cfg.seq_len > (int)maxlen ? ref->cfg.seq_len : (int)maxlen)) < 0)
        return rc;
    double t0 = now_s();
    qd_validation_report *r = qd_calloc(1, sizeof(*r));
    qd_llama_ctx *cr = NULL, *cv = NULL;
    float *lr = NULL, *lv = NULL;
    double *pr = NULL, *pv = NULL;
    tok_stat *ts = NULL;
    int64_t *seq_first = NULL;
    uint64_t scored = 0;
    for (uint32_t s = 0; s < set->n_seqs; s++) {
        uint32_t first = o.score_all ? 0 : set->lens[s] / 2;
        scored += set->lens[s] - 1 - first;
    }
    if (!r || !(lr = qd_mallocarray((size_t)maxlen * vocab, sizeof(float))) ||
        !(lv = qd_mallocarray((size_t)maxlen * vocab, sizeof(float))) || !(pr = qd_mallocarray((size_t)vocab, 8)) ||
        !(pv = qd_mallocarray((size_t)vocab, 8)) || !(ts = qd_mallocarray(scored ? scored : 1, sizeof(tok_stat))) ||
        !(seq_first = qd_mallocarray((size_t)set->n_seqs + 1, sizeof(int64_t)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validate: out of memory");
        goto done;
    }
    r->opts = o;
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.n_threads = o.n_threads;
    co.n_ctx = (int)maxlen;
    if ((rc = qd_llama_ctx_new(&cr, ref, &co)) < 0)
        goto done;
    co.kv_type = o.kv_type;
    if ((rc = qd_llama_ctx_new(&cv, var, &co)) < 0)
        goto done;
    r->simd = qd_llama_simd_name(cr);
    int64_t k = 0;
    for (uint32_t s = 0; s < set->n_seqs; s++) {
        const int32_t *t = set->tokens + set->offs[s];
        int n = (int)set->lens[s];
        seq_first[s] = k;
        qd_llama_reset(cr);
        qd_llama_reset(cv);
        if ((rc = qd_llama_eval(cr, t, n, lr, NULL)) < 0 || (rc = qd_llama_eval(cv, t, n, lv, NULL)) < 0)
            goto done;
        r->tokens_evaluated += (uint64_t)n;
        int first = o.score_all ? 0 : n / 2;
        for (int p = first; p < n - 1; p++, k++) {
            int ar = log_softmax(pr, lr + (size_t)p * vocab, vocab);
            int av = log_softmax(pv, lv + (size_t)p * vocab, vocab);
            double kl = 0;
            for (int i = 0; i < vocab; i++)
                kl += exp(pr[i]) * (pr[i] - pv[i]);
            ts[k].kld = (float)kl;
            ts[k].nll_ref = (float)-pr[t[p + 1]];
            ts[k].nll_var = (float)-pv[t[p + 1]];
            ts[k].same = ar == av;
        }
    }
    seq_first[set->n_seqs] = k;
    if ((rc = stats_of(&r->overall, ts, k)) < 0)
        goto done;
    if (set->n_slices) {
        if (!(r->slices = qd_calloc(set->n_slices, sizeof(qd_slice_result)))) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "validate: out of memory");
            goto done;
        }
        r->n_slices = set->n_slices;
        for (uint32_t i = 0; i < set->n_slices; i++) {
            const qd_valset_slice *sl = &set->slices[i];
            memcpy(r->slices[i].name, sl->name, sizeof(sl->name));
            int64_t a = seq_first[sl->first], b = seq_first[sl->first + sl->count];
            if ((rc = stats_of(&r->slices[i].s, ts + a, b - a)) < 0)
                goto done;
        }
    }
    if ((rc = tensor_metrics(r, ref, var)) < 0)
        goto done;
    r->bpw = qd_llama_bpw(var, &r->n_params);
    /* the dominant type: the one holding most weights */
    int64_t by_type[QD_TYPE_COUNT] = {0};
    for (int i = 0; i < qd_llama_tensor_count(var); i++) {
        qd_llama_tensor *t = qd_llama_tensor_at((qd_llama_model *)var, i, NULL);
        if (t->rows > 1 && (unsigned)t->type < QD_TYPE_COUNT)
            by_type[t->type] += t->rows * t->cols;
    }
    r->dominant_type = QD_TYPE_F32;
    for (int t = 0; t < QD_TYPE_COUNT; t++)
        if (by_type[t] > by_type[r->dominant_type])
            r->dominant_type = (qd_type)t;
    r->seconds = now_s() - t0;
    *out = r;
    r = NULL;
done:
    qd_llama_ctx_free(cr);
    qd_llama_ctx_free(cv);
    qd_free(lr);
    qd_free(lv);
    qd_free(pr);
    qd_free(pv);
    qd_free(ts);
    qd_free(seq_first);
    qd_validation_report_free(r);
    return rc;
}

/* ================================================================ policy and verdict */

void qd_validation_policy_default(qd_validation_policy *p)
{
    static const qd_validation_class def[] = {
        /* name, min_bits, mean KLD, p99 KLD, same top, slice factor, tensor SQNR floor (dB) */
        {"16bit", 15.5, 0.0005, -1, -1, 3, 45},
        {"8bit", 7.5, 0.005, -1, -1, 3, 30},
        {"6bit", 6.0, 0.02, -1, -1, 3, 24},
        {"5bit", 5.0, 0.05, -1, -1, 3, 20},
        {"4bit", 4.0, 0.1, -1, -1, 3, 14},
        {"3bit", 3.0, 0.3, -1, -1, 3, 9},
        {"2bit", 0.0, 0.6, -1, -1, 3, 4},
    };
    memset(p, 0, sizeof(*p));
    p->n_classes = (int)(sizeof(def) / sizeof(def[0]));
    memcpy(p->classes, def, sizeof(def));
}

static void reason(qd_validation_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(qd_validation_report *r, const char *fmt, ...)
{
    if (r->n_reasons >= QD_VALIDATION_MAX_REASONS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reasons[r->n_reasons++], sizeof(r->reasons[0]), fmt, ap);
    va_end(ap);
}

static double type_bits(qd_type t)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    return tr ? 8.0 * (double)tr->type_size / (double)tr->block_size : 32;
}

int qd_validation_judge(qd_validation_report *r, const qd_validation_policy *p, const char *class_name)
{
    const qd_validation_class *c = NULL;
    if (class_name) {
        for (int i = 0; i < p->n_classes; i++)
            if (!strcmp(p->classes[i].name, class_name))
                c = &p->classes[i];
        if (!c)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy has no class '%s'", class_name);
    } else {
        double bits = type_bits(r->dominant_type);
        for (int i = 0; i < p->n_classes; i++)
            if (p->classes[i].min_bits <= bits && (!c || p->classes[i].min_bits > c->min_bits))
                c = &p->classes[i];
        if (!c)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy has no class for %.2f-bit variants", bits);
    }
    snprintf(r->class_name, sizeof(r->class_name), "%s", c->name);
    r->thr_mean_kld = c->max_mean_kld;
    r->thr_p99_kld = c->max_p99_kld;
    r->thr_same_top = c->min_same_top;
    r->thr_slice_factor = c->max_slice_factor;
    r->thr_sqnr_db = c->min_tensor_sqnr_db;
    r->n_reasons = 0;
    /* localize first: name the tensors that are off, so that every failing verdict points at a place */
    char where[320] = "";
    if (r->worst[0] >= 0) {
        const qd_tensor_metrics *w = &r->tensors[r->worst[0]];
        snprintf(where, sizeof(where), "; worst tensor %.63s (SQNR %.1f dB%s%.192s)", w->name, w->sqnr_db,
                 w->diagnosis[0] ? ": " : "", w->diagnosis);
    }
    if (c->max_mean_kld >= 0 && r->overall.mean > c->max_mean_kld)
        reason(r, "mean KLD %.6f exceeds the %s limit %.6f%s", r->overall.mean, c->name, c->max_mean_kld, where);
    if (c->max_p99_kld >= 0 && r->overall.p99 > c->max_p99_kld)
        reason(r, "p99 KLD %.6f exceeds the %s limit %.6f", r->overall.p99, c->name, c->max_p99_kld);
    if (c->min_same_top >= 0 && r->overall.same_top < c->min_same_top)
        reason(r, "top-1 agreement %.2f%% is below the %s floor %.2f%%", 100 * r->overall.same_top, c->name,
               100 * c->min_same_top);
    if (c->max_slice_factor > 0 && r->n_slices > 1)
        for (uint32_t i = 0; i < r->n_slices; i++)
            if (r->slices[i].s.mean > c->max_slice_factor * r->overall.mean && r->slices[i].s.n > 0)
                reason(r, "slice '%s' mean KLD %.6f is more than %.1f x the overall mean %.6f", r->slices[i].name,
                       r->slices[i].s.mean, c->max_slice_factor, r->overall.mean);
    if (c->min_tensor_sqnr_db > -1e9) {
        int bad = 0, weights = 0;
        for (int i = 0; i < r->n_tensors; i++) {
            const qd_tensor_metrics *t = &r->tensors[i];
            if (strstr(t->name, "norm"))
                continue;
            weights++;
            if (t->sqnr_db < c->min_tensor_sqnr_db)
                bad++;
        }
        if (weights && bad * 4 >= weights * 3)
            reason(r, "%d of %d weight tensors are below the %s SQNR floor of %.0f dB: the variant does not derive "
                   "from this reference (wrong reference?) or the recipe is not %s", bad, weights, c->name,
                   c->min_tensor_sqnr_db, c->name);
        else
            for (int i = 0; i < r->n_tensors; i++) {
                const qd_tensor_metrics *t = &r->tensors[i];
                if (t->sqnr_db < c->min_tensor_sqnr_db)
                    reason(r, "tensor %s: SQNR %.1f dB is below the %s floor of %.0f dB%s%s", t->name, t->sqnr_db,
                           c->name, c->min_tensor_sqnr_db, t->diagnosis[0] ? "; " : "", t->diagnosis);
            }
    }
    r->judged = true;
    r->pass = r->n_reasons == 0;
    return QD_OK;
}
