/*
 * actstats.c - per-column activation statistics of every matmul input, collected through the runtime's observer.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/calib.h"
#include "qd/err.h"

struct qd_actstats {
    qd_actstats_entry *e;
    size_t n, cap;
    int status;
};

int qd_actstats_new(qd_actstats **out)
{
    *out = qd_calloc(1, sizeof(**out));
    return *out ? QD_OK : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "activation statistics: out of memory");
}

void qd_actstats_free(qd_actstats *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        qd_free(s->e[i].sum_sq);
        qd_free(s->e[i].sum_abs);
        qd_free(s->e[i].max_abs);
    }
    qd_free(s->e);
    qd_free(s);
}

size_t qd_actstats_count(const qd_actstats *s) { return s ? s->n : 0; }
const qd_actstats_entry *qd_actstats_at(const qd_actstats *s, size_t i) { return s && i < s->n ? &s->e[i] : NULL; }
int qd_actstats_status(const qd_actstats *s) { return s->status; }
int64_t qd_actstats_tokens(const qd_actstats *s) { return s && s->n ? s->e[0].n_rows : 0; }

const qd_actstats_entry *qd_actstats_find(const qd_actstats *s, const char *name)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->e[i].name, name))
            return &s->e[i];
    return NULL;
}

static qd_actstats_entry *entry_for(qd_actstats *s, int layer, qd_llama_site site, int64_t cols)
{
    /* the forward pass visits sites in a fixed order, so the entry is usually the next one after the last hit */
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].layer == layer && s->e[i].site == site)
            return s->e[i].cols == cols ? &s->e[i] : NULL;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        qd_actstats_entry *ne = qd_reallocarray(s->e, cap, sizeof(*ne));
        if (!ne)
            return NULL;
        s->e = ne;
        s->cap = cap;
    }
    qd_actstats_entry *e = &s->e[s->n];
    memset(e, 0, sizeof(*e));
    e->layer = layer;
    e->site = site;
    e->cols = cols;
    qd_llama_site_name(e->name, sizeof(e->name), layer, site);
    e->sum_sq = qd_calloc((size_t)cols, sizeof(double));
    e->sum_abs = qd_calloc((size_t)cols, sizeof(double));
    e->max_abs = qd_calloc((size_t)cols, sizeof(float));
    if (!e->sum_sq || !e->sum_abs || !e->max_abs) {
        qd_free(e->sum_sq);
        qd_free(e->sum_abs);
        qd_free(e->max_abs);
        return NULL;
    }
    s->n++;
    return e;
}

void qd_actstats_observe(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w, const float *x, int n)
{
    qd_actstats *s = user;
    if (s->status < 0)
        return;
    qd_actstats_entry *e = entry_for(s, layer, site, w->cols);
    if (!e) {
        s->status = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "activation statistics for %s: out of memory or width "
                                 "changed", qd_llama_site_name((char[64]){0}, 64, layer, site));
        return;
    }
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * w->cols;
        for (int64_t j = 0; j < w->cols; j++) {
            float v = xr[j], a = fabsf(v);
            e->sum_sq[j] += (double)v * v;
            e->sum_abs[j] += a;
            if (a > e->max_abs[j])
                e->max_abs[j] = a;
        }
    }
    e->n_rows += n;
}

int qd_actstats_collect(qd_actstats **out, const qd_llama_model *m, const qd_valset *set,
                        const qd_calib_options *opts)
{
    qd_calib_options def = QD_CALIB_OPTIONS_INIT;
    if (!opts)
        opts = &def;
    *out = NULL;
    uint32_t n_seqs;
    int max_len;
    int rc = qd_calib_span(set, m, opts->max_seqs, &n_seqs, &max_len);
    if (rc < 0)
        return rc;
    qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
    co.n_threads = opts->n_threads;
    co.n_ctx = max_len;
    qd_llama_ctx *ctx = NULL;
    qd_actstats *s = NULL;
    float *last = NULL;
    if ((rc = qd_actstats_new(&s)) < 0 || (rc = qd_llama_ctx_new(&ctx, m, &co)) < 0)
        goto fail;
    last = qd_mallocarray((size_t)m->cfg.vocab, sizeof(float));
    if (!last) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "calibration: out of memory");
        goto fail;
    }
    qd_llama_ctx_set_observer(ctx, qd_actstats_observe, s);
    for (uint32_t i = 0; i < n_seqs; i++) {
        qd_llama_reset(ctx);
        if ((rc = qd_llama_eval(ctx, set->tokens + set->offs[i], (int)set->lens[i], NULL, last)) < 0)
            goto fail;
        if ((rc = s->status) < 0)
            goto fail;
        if (opts->progress)
            opts->progress(i + 1, n_seqs, opts->payload);
        if (opts->cancel && i + 1 < n_seqs && opts->cancel(opts->payload)) {
            rc = qd_error_set(QD_ECANCELED, QD_EC_ENGINE, "calibration cancelled after %u of %u sequences", i + 1,
                              n_seqs);
            goto fail;
        }
    }
    qd_free(last);
    qd_llama_ctx_free(ctx);
    *out = s;
    return QD_OK;
fail:
    qd_free(last);
    qd_llama_ctx_free(ctx);
    qd_actstats_free(s);
    return rc;
}

int qd_calib_span(const qd_valset *set, const qd_llama_model *m, int max_seqs, uint32_t *n_seqs, int *max_len)
{
    int rc;
    if (!set || set->n_seqs == 0 || set->n_tokens == 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration set is empty");
    if ((rc = qd_valset_check(set, m->cfg.vocab, m->cfg.seq_len)) < 0)
        return rc;
    *n_seqs = max_seqs > 0 && (uint32_t)max_seqs < set->n_seqs ? (uint32_t)max_seqs : set->n_seqs;
    *max_len = 0;
    for (uint32_t i = 0; i < *n_seqs; i++) {
        if (set->lens[i] < 2)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration sequence %u has %u token(s) (at least 2)", i,
                                set->lens[i]);
        if ((int)set->lens[i] > *max_len)
            *max_len = (int)set->lens[i];
    }
    return QD_OK;
}

int qd_calib_is_block_linear(const char *name) { return !strncmp(name, "blk.", 4) && !strstr(name, "norm"); }

int qd_calib_check_disjoint(const qd_valset *calib, const qd_valset *val)
{
    for (uint32_t i = 0; i < calib->n_seqs; i++)
        for (uint32_t j = 0; j < val->n_seqs; j++)
            if (calib->lens[i] == val->lens[j] &&
                !memcmp(calib->tokens + calib->offs[i], val->tokens + val->offs[j], sizeof(int32_t) * calib->lens[i]))
                return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                                    "calibration sequence %u is validation sequence %u: the sets must be disjoint", i,
                                    j);
    return QD_OK;
}
