/*
 * model.c - the weights description: enumeration with GGUF-style names, shape checks, in-memory quantization.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/runtime.h"

int qd_llama_tensor_count(const qd_llama_model *m)
{
    return 1 + 9 * m->cfg.n_layers + 1 + (m->cfg.tied_output ? 0 : 1);
}

static const char *const layer_names[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                           "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"};

qd_llama_tensor *qd_llama_tensor_at(qd_llama_model *m, int i, const char **name)
{
    static _Thread_local char buf[64];
    int n = qd_llama_tensor_count(m);
    if (i < 0 || i >= n)
        return NULL;
    if (i == 0) {
        if (name)
            *name = "token_embd.weight";
        return &m->tok_embd;
    }
    i -= 1;
    if (i < 9 * m->cfg.n_layers) {
        int l = i / 9, k = i % 9;
        qd_llama_layer *L = &m->layers[l];
        qd_llama_tensor *t[9] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                                 &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        if (name) {
            snprintf(buf, sizeof(buf), "blk.%d.%s.weight", l, layer_names[k]);
            *name = buf;
        }
        return t[k];
    }
    i -= 9 * m->cfg.n_layers;
    if (i == 0) {
        if (name)
            *name = "output_norm.weight";
        return &m->final_norm;
    }
    if (name)
        *name = "output.weight";
    return &m->output;
}

static int check_tensor(const qd_llama_tensor *t, const char *name, int64_t rows, int64_t cols, bool f32_only)
{
    if (t->rows != rows || t->cols != cols)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "tensor %s is [%lld, %lld], the config needs [%lld, %lld]", name,
                            (long long)t->rows, (long long)t->cols, (long long)rows, (long long)cols);
    const qd_type_traits *tr = qd_type_traits_get(t->type);
    if (!tr || (f32_only && t->type != QD_TYPE_F32))
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "tensor %s has type %d, which the runtime cannot read here",
                            name, (int)t->type);
    if (qd_row_size(t->type, cols) == 0)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "tensor %s: %lld columns do not fit %s blocks of %lld", name,
                            (long long)cols, tr->name, (long long)tr->block_size);
    if (!t->data)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "tensor %s has no data", name);
    return QD_OK;
}

int qd_llama_check(const qd_llama_model *cm)
{
    qd_llama_model *m = (qd_llama_model *)cm;
    const qd_llama_config *c = &m->cfg;
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab <= 0 || c->seq_len <= 0 || c->dim % c->n_heads || c->n_heads % c->n_kv_heads ||
        (c->dim / c->n_heads) % 2 || !(c->rope_theta > 0) || !(c->norm_eps >= 0))
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "bad llama config: dim=%d hidden=%d layers=%d heads=%d "
                            "kv_heads=%d vocab=%d seq_len=%d", c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                            c->n_kv_heads, c->vocab, c->seq_len);
    int64_t kv = (int64_t)c->dim * c->n_kv_heads / c->n_heads;
    int n = qd_llama_tensor_count(m);
    for (int i = 0; i < n; i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        int64_t rows = c->dim, cols = c->dim;
        bool norm = strstr(name, "norm") != NULL;
        if (norm)
            rows = 1;
        else if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight"))
            rows = c->vocab;
        else if (strstr(name, "attn_k.") || strstr(name, "attn_v."))
            rows = kv;
        else if (strstr(name, "ffn_gate") || strstr(name, "ffn_up"))
            rows = c->hidden_dim;
        else if (strstr(name, "ffn_down"))
            cols = c->hidden_dim;
        char nm[64];
        snprintf(nm, sizeof(nm), "%s", name);
        int rc = check_tensor(t, nm, rows, cols, norm);
        if (rc < 0)
            return rc;
    }
    return QD_OK;
}

int qd_llama_same_shape(const qd_llama_model *a, const qd_llama_model *b)
{
    const qd_llama_config *x = &a->cfg, *y = &b->cfg;
    if (x->dim != y->dim || x->hidden_dim != y->hidden_dim || x->n_layers != y->n_layers || x->n_heads != y->n_heads ||
        x->n_kv_heads != y->n_kv_heads || x->vocab != y->vocab)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "shape mismatch: reference dim=%d hidden=%d layers=%d heads=%d/%d "
                            "vocab=%d, variant dim=%d hidden=%d layers=%d heads=%d/%d vocab=%d", x->dim, x->hidden_dim,
                            x->n_layers, x->n_heads, x->n_kv_heads, x->vocab, y->dim, y->hidden_dim, y->n_layers,
                            y->n_heads, y->n_kv_heads, y->vocab);
    int n = qd_llama_tensor_count(a) < qd_llama_tensor_count(b) ? qd_llama_tensor_count(a) : qd_llama_tensor_count(b);
    for (int i = 0; i < n; i++) {
        const char *name;
        qd_llama_tensor *ta = qd_llama_tensor_at((qd_llama_model *)a, i, &name);
        qd_llama_tensor *tb = qd_llama_tensor_at((qd_llama_model *)b, i, NULL);
        if (ta->rows != tb->rows || ta->cols != tb->cols)
            return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "shape mismatch: %s is [%lld, %lld] in the reference, "
                                "[%lld, %lld] in the variant", name, (long long)ta->rows, (long long)ta->cols,
                                (long long)tb->rows, (long long)tb->cols);
    }
    return QD_OK;
}

void qd_llama_free(qd_llama_model *m)
{
    if (!m)
        return;
    qd_model_free(m->src_); /* before the owned buffers: a model opened from memory reads one of them */
    for (size_t i = 0; i < m->n_owned_; i++)
        qd_free(m->owned_[i]);
    qd_free(m->owned_);
    if (m->map_)
        munmap(m->map_, m->map_len_);
    qd_free(m->layers);
    qd_free(m);
}

/* A shell with the same config and no tensors' bytes; tensors are filled by the caller. */
static int model_shell(qd_llama_model **out, const qd_llama_model *src)
{
    qd_llama_model *m = qd_calloc(1, sizeof(*m));
    if (!m)
        return QD_ENOMEM;
    m->cfg = src->cfg;
    m->layers = qd_calloc((size_t)src->cfg.n_layers, sizeof(qd_llama_layer));
    m->owned_ = qd_calloc((size_t)qd_llama_tensor_count(src), sizeof(void *));
    if (!m->layers || !m->owned_) {
        qd_llama_free(m);
        return QD_ENOMEM;
    }
    *out = m;
    return QD_OK;
}

static qd_type fallback_type(qd_type t)
{
    switch (t) {
    case QD_TYPE_Q4_K: return QD_TYPE_Q5_0;
    case QD_TYPE_Q5_K: return QD_TYPE_Q5_1;
    case QD_TYPE_Q6_K: return QD_TYPE_Q8_0;
    case QD_TYPE_Q2_K:
    case QD_TYPE_Q3_K:
    case QD_TYPE_IQ4_XS: return QD_TYPE_IQ4_NL;
    default: return QD_TYPE_F32;
    }
}

static int convert(qd_llama_model *dst, const qd_llama_model *src, const qd_llama_quant_options *o)
{
    int n = qd_llama_tensor_count(src), rc = QD_OK;
    float *tmp = NULL;
    for (int i = 0; i < n; i++) {
        const char *name;
        qd_llama_tensor *s = qd_llama_tensor_at((qd_llama_model *)src, i, &name);
        qd_llama_tensor *d = qd_llama_tensor_at(dst, i, NULL);
        qd_type t = QD_TYPE_F32;
        if (o && s->rows > 1) {
            t = (!strcmp(name, "output.weight") && o->output_type != QD_TYPE_COUNT) ? o->output_type : o->type;
            if (qd_row_size(t, s->cols) == 0)
                t = o->llama_cpp_fallback ? fallback_type(t) : QD_TYPE_F32;
            if (qd_row_size(t, s->cols) == 0)
                t = QD_TYPE_F32;
        }
        size_t n_el = (size_t)(s->rows * s->cols);
        tmp = qd_mallocarray(n_el, sizeof(float));
        size_t bytes = (size_t)s->rows * qd_row_size(t, s->cols);
        void *buf = qd_malloc(bytes ? bytes : 1);
        if (!tmp || !buf) {
            qd_free(buf);
            rc = QD_ENOMEM;
            goto done;
        }
        dst->owned_[dst->n_owned_++] = buf;
        rc = qd_llama_tensor_f32(s, tmp); /* W8A8 tensors too */
        if (rc == QD_OK)
            rc = t == QD_TYPE_F32 ? (memcpy(buf, tmp, bytes), QD_OK)
                                  : qd_quantize_rows(t, tmp, buf, s->rows, s->cols, NULL);
        if (rc < 0) {
            qd_error_prefix("quantize %s to %s", name, qd_type_traits_get(t)->name);
            goto done;
        }
        *d = (qd_llama_tensor){t, buf, s->rows, s->cols, NULL};
        qd_free(tmp);
        tmp = NULL;
    }
done:
    qd_free(tmp);
    return rc;
}

int qd_llama_quantize(qd_llama_model **out, const qd_llama_model *src, const qd_llama_quant_options *opts)
{
    *out = NULL;
    const qd_type_traits *tr = qd_type_traits_get(opts->type);
    if (!tr || !tr->can_quantize)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "type %d cannot be quantized by this build", (int)opts->type);
    if (tr->needs_imatrix)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "%s needs an importance matrix", tr->name);
    qd_llama_model *m;
    int rc = model_shell(&m, src);
    if (rc < 0)
        return qd_error_set(rc, QD_EC_NOMEM, "quantize: out of memory");
    rc = convert(m, src, opts);
    if (rc == QD_OK && m->cfg.tied_output)
        m->output = m->tok_embd;
    if (rc < 0) {
        qd_llama_free(m);
        return rc;
    }
    *out = m;
    return QD_OK;
}

int qd_llama_dequantize(qd_llama_model **out, const qd_llama_model *src)
{
    *out = NULL;
    qd_llama_model *m;
    int rc = model_shell(&m, src);
    if (rc < 0)
        return qd_error_set(rc, QD_EC_NOMEM, "dequantize: out of memory");
    if (src->cfg.tied_output)
        m->cfg.tied_output = false; /* materialize output separately; same values */
    rc = convert(m, src, NULL);
    if (rc == QD_OK && src->cfg.tied_output) {
        m->cfg.tied_output = true;
        m->output = m->tok_embd;
    }
    if (rc < 0) {
        qd_llama_free(m);
        return rc;
    }
    *out = m;
    return QD_OK;
}

double qd_llama_bpw(const qd_llama_model *m, int64_t *n_params)
{
    double bits = 0;
    int64_t n = 0;
    int cnt = qd_llama_tensor_count(m);
    for (int i = 0; i < cnt; i++) {
        qd_llama_tensor *t = qd_llama_tensor_at((qd_llama_model *)m, i, NULL);
        bits += 8.0 * (double)t->rows * (double)qd_row_size(t->type, t->cols);
        if (t->row_scale) /* W8A8: an f32 scale per row */
            bits += 32.0 * (double)t->rows;
        n += t->rows * t->cols;
    }
    if (n_params)
        *n_params = n;
    if (m->stored_bits_ > 0) /* decoded from a quantized folder: the published bytes count */
        bits = m->stored_bits_;
    return n ? bits / (double)n : 0;
}

/* ---- KV cache type names and fp8 e4m3 ---- */

static const char *const kv_names[] = {"f32", "f16", "q8_0", "q4_0", "fp8_e4m3"};

const char *qd_llama_kv_name(qd_llama_kv_type t)
{
    return (unsigned)t < sizeof(kv_names) / sizeof(kv_names[0]) ? kv_names[t] : "?";
}

int qd_llama_kv_from_name(const char *name, qd_llama_kv_type *out)
{
    for (unsigned i = 0; i < sizeof(kv_names) / sizeof(kv_names[0]); i++)
        if (!strcasecmp(name, kv_names[i])) {
            *out = (qd_llama_kv_type)i;
            return QD_OK;
        }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown KV cache type '%s' (f32, f16, q8_0, q4_0, fp8_e4m3)", name);
}

float qd_fp8_e4m3_to_f32(uint8_t b)
{
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m, -9); /* subnormal: m/8 * 2^-6 */
    else
        v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -v : v;
}

uint8_t qd_fp8_e4m3_from_f32(float x)
{
    uint8_t sign = signbit(x) ? 0x80 : 0;
    float a = fabsf(x);
    if (isnan(x))
        return 0x7f;
    if (a >= 448.0f)
        return sign | 0x7e; /* saturate to the largest finite value */
    /* search the 127 non-negative finite codes for the nearest, ties to the even code */
    int lo = 0, hi = 126;
    while (lo < hi) { /* largest code with value <= a */
        int mid = (lo + hi + 1) / 2;
        if (qd_fp8_e4m3_to_f32((uint8_t)mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    int best = lo;
    if (lo < 126) {
        float d0 = a - qd_fp8_e4m3_to_f32((uint8_t)lo), d1 = qd_fp8_e4m3_to_f32((uint8_t)(lo + 1)) - a;
        if (d1 < d0 || (d1 == d0 && (lo & 1)))
            best = lo + 1;
    }
    return sign | (uint8_t)best;
}

/* ---- a generated model ---- */

static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return ((double)(sm64(s) >> 11) + 0.5) * 0x1.0p-53; }

int qd_llama_synthetic(qd_llama_model **out, const qd_llama_config *cfg, uint64_t seed)
{
    qd_llama_model shape = {0}, *m = NULL;
    *out = NULL;
    shape.cfg = *cfg;
    shape.cfg.tied_output = cfg->tied_output;
    if (cfg->n_layers <= 0 || cfg->n_layers > 4096)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "synthetic: bad layer count %d", cfg->n_layers);
    int rc = model_shell(&m, &shape);
    if (rc < 0)
        return qd_error_set(rc, QD_EC_NOMEM, "synthetic: out of memory");
    int64_t kv = cfg->n_heads > 0 ? (int64_t)cfg->dim * cfg->n_kv_heads / cfg->n_heads : 0;
    uint64_t st = seed;
    int n = qd_llama_tensor_count(m);
    for (int i = 0; i < n; i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        int64_t rows = cfg->dim, cols = cfg->dim;
        bool norm = strstr(name, "norm") != NULL;
        if (norm)
            rows = 1;
        else if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight"))
            rows = cfg->vocab;
        else if (strstr(name, "attn_k.") || strstr(name, "attn_v."))
            rows = kv;
        else if (strstr(name, "ffn_gate") || strstr(name, "ffn_up"))
            rows = cfg->hidden_dim;
        else if (strstr(name, "ffn_down"))
            cols = cfg->hidden_dim;
        float *d = qd_mallocarray((size_t)(rows * cols), sizeof(float));
        if (!d || rows <= 0 || cols <= 0) {
            qd_free(d);
            qd_llama_free(m);
            return rows <= 0 || cols <= 0 ? qd_error_set(QD_EINVAL, QD_EC_ENGINE, "synthetic: bad config")
                                          : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "synthetic: out of memory");
        }
        m->owned_[m->n_owned_++] = d;
        uint64_t wide = sm64(&st);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                float v;
                if (norm)
                    v = (float)(1.0 + 0.1 * (unif(&st) - 0.5));
                else {
                    double g = sqrt(-2.0 * log(unif(&st))) * cos(6.283185307179586 * unif(&st));
                    v = (float)(0.02 * g);
                    if ((((uint64_t)c * 0x9e3779b97f4a7c15ull) ^ wide) % 97 == 0) /* wide input channels */
                        v *= 4.0f;
                    if (unif(&st) < 0.001) /* outliers */
                        v *= (float)(10.0 + 20.0 * unif(&st));
                }
                d[r * cols + c] = v;
            }
        *t = (qd_llama_tensor){QD_TYPE_F32, d, rows, cols, NULL};
    }
    if (cfg->tied_output)
        m->output = m->tok_embd;
    *out = m;
    return QD_OK;
}

/* ---- exact widening ---- */

int qd_llama_widen(qd_llama_model **out, const qd_llama_model *src, int nd, int nh2)
{
    const qd_llama_config *c = &src->cfg;
    int hs = c->dim / c->n_heads, kvmul = c->n_heads / c->n_kv_heads;
    *out = NULL;
    if (nd < c->dim || nh2 < c->hidden_dim || nd % hs || (nd / hs) % c->n_kv_heads)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "widen: %d/%d cannot hold dim %d, hidden %d, head size %d", nd,
                            nh2, c->dim, c->hidden_dim, hs);
    qd_llama_model *f = NULL, *m = NULL;
    int rc = qd_llama_dequantize(&f, src); /* f32 source */
    if (rc < 0)
        return rc;
    qd_llama_model shape = {0};
    shape.cfg = *c;
    shape.cfg.dim = nd;
    shape.cfg.hidden_dim = nh2;
    shape.cfg.n_heads = nd / hs;
    shape.cfg.norm_eps = c->norm_eps * (float)c->dim / (float)nd;
    if ((rc = model_shell(&m, &shape)) < 0) {
        qd_llama_free(f);
        return qd_error_set(rc, QD_EC_NOMEM, "widen: out of memory");
    }
    int kvmul2 = shape.cfg.n_heads / c->n_kv_heads, kv = hs * c->n_kv_heads;
    float nscale = sqrtf((float)c->dim / (float)nd);
    int n = qd_llama_tensor_count(m);
    for (int i = 0; i < n && rc == QD_OK; i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at(m, i, &name);
        const qd_llama_tensor *s = qd_llama_tensor_at(f, i, NULL);
        const float *sv = s->data;
        int64_t rows = s->rows == 1 ? 1 : s->rows == c->dim ? nd : s->rows == c->hidden_dim ? nh2 : s->rows;
        int64_t cols = s->cols == c->dim ? nd : nh2;
        bool is_q = strstr(name, "attn_q.") != NULL, is_o = strstr(name, "attn_output.") != NULL;
        if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight") || strstr(name, "attn_k.") ||
            strstr(name, "attn_v."))
            rows = s->rows;
        (void)kv;
        float *d = qd_calloc((size_t)(rows * cols), sizeof(float));
        if (!d) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "widen: out of memory");
            break;
        }
        m->owned_[m->n_owned_++] = d;
        for (int64_t r = 0; r < s->rows; r++)
            for (int64_t k = 0; k < s->cols; k++) {
                int64_t rr = r, kk = k;
                if (is_q) { /* row r belongs to head r / hs */
                    int64_t h = r / hs;
                    rr = ((h / kvmul) * kvmul2 + h % kvmul) * hs + r % hs;
                }
                if (is_o) { /* column k belongs to head k / hs */
                    int64_t h = k / hs;
                    kk = ((h / kvmul) * kvmul2 + h % kvmul) * hs + k % hs;
                }
                float v = sv[r * s->cols + k];
                d[rr * cols + kk] = s->rows == 1 ? v * nscale : v;
            }
        *t = (qd_llama_tensor){QD_TYPE_F32, d, rows, cols, NULL};
    }
    if (rc == QD_OK && m->cfg.tied_output)
        m->output = m->tok_embd;
    qd_llama_free(f);
    if (rc == QD_OK && (rc = qd_llama_check(m)) == QD_OK) {
        *out = m;
        return QD_OK;
    }
    qd_llama_free(m);
    return rc;
}
