/*
 * recipe.c - per-tensor type choices of llama-quantize's recipes (llama architecture).
 *
 * Written from the description of llama.cpp's llama_tensor_get_type() and llama_model_quantize_impl() (see
 * docs/RECIPES.md): which tensors are quantized at all, the default type of each recipe, the special cases for
 * output/token_embd/attn_v/ffn_down/attn_output, and the block-size fallback table. Counters for attn_v and
 * ffn_down advance in file order, as in llama.cpp, so the tensor list must be given in file order.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "qd/err.h"
#include "qd/recipe.h"

static const struct {
    const char *name;
    qd_ftype ft;
    qd_type base;
} recipes[] = {
    {"F32", QD_FTYPE_ALL_F32, QD_TYPE_F32},   {"F16", QD_FTYPE_F16, QD_TYPE_F16},
    {"BF16", QD_FTYPE_BF16, QD_TYPE_BF16},    {"Q4_0", QD_FTYPE_Q4_0, QD_TYPE_Q4_0},
    {"Q4_1", QD_FTYPE_Q4_1, QD_TYPE_Q4_1},    {"Q5_0", QD_FTYPE_Q5_0, QD_TYPE_Q5_0},
    {"Q5_1", QD_FTYPE_Q5_1, QD_TYPE_Q5_1},    {"Q8_0", QD_FTYPE_Q8_0, QD_TYPE_Q8_0},
    {"Q2_K", QD_FTYPE_Q2_K, QD_TYPE_Q2_K},    {"Q3_K_S", QD_FTYPE_Q3_K_S, QD_TYPE_Q3_K},
    {"Q3_K_M", QD_FTYPE_Q3_K_M, QD_TYPE_Q3_K}, {"Q3_K_L", QD_FTYPE_Q3_K_L, QD_TYPE_Q3_K},
    {"Q4_K_S", QD_FTYPE_Q4_K_S, QD_TYPE_Q4_K}, {"Q4_K_M", QD_FTYPE_Q4_K_M, QD_TYPE_Q4_K},
    {"Q5_K_S", QD_FTYPE_Q5_K_S, QD_TYPE_Q5_K}, {"Q5_K_M", QD_FTYPE_Q5_K_M, QD_TYPE_Q5_K},
    {"Q6_K", QD_FTYPE_Q6_K, QD_TYPE_Q6_K},    {"IQ4_NL", QD_FTYPE_IQ4_NL, QD_TYPE_IQ4_NL},
    {"IQ4_XS", QD_FTYPE_IQ4_XS, QD_TYPE_IQ4_XS},
};
#define N_RECIPES (sizeof(recipes) / sizeof(recipes[0]))

int qd_recipe_from_name(const char *name, qd_ftype *out)
{
    for (size_t i = 0; name && i < N_RECIPES; i++) {
        if (!strcasecmp(recipes[i].name, name)) {
            *out = recipes[i].ft;
            return QD_OK;
        }
    }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown recipe '%s' (try Q4_K_M, Q8_0, F16, ...)",
                        name ? name : "(null)");
}

const char *qd_recipe_name(qd_ftype ft)
{
    for (size_t i = 0; i < N_RECIPES; i++)
        if (recipes[i].ft == ft)
            return recipes[i].name;
    return NULL;
}

qd_type qd_recipe_base_type(qd_ftype ft)
{
    for (size_t i = 0; i < N_RECIPES; i++)
        if (recipes[i].ft == ft)
            return recipes[i].base;
    return QD_TYPE_COUNT;
}

bool qd_recipe_at(size_t i, qd_ftype *out)
{
    if (i >= N_RECIPES)
        return false;
    *out = recipes[i].ft;
    return true;
}

static bool is_quantized(qd_type t)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    return tr && tr->quantized;
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* llama_model_quantize_impl's filter: which tensors are quantized at all. */
static bool wants_quantize(const qd_recipe_tensor *t)
{
    if (!ends_with(t->name, "weight"))
        return false;
    if (t->n_dims < 2)
        return false;
    if (strstr(t->name, "_norm.weight"))
        return false;
    if (strstr(t->name, "ffn_gate_inp.weight"))
        return false;
    if (!strcmp(t->name, "position_embd.weight") || !strcmp(t->name, "token_types.weight"))
        return false;
    return true;
}

typedef struct plan_state {
    int n_attn_v, i_attn_v;
    int n_ffn_down, i_ffn_down;
    bool has_output, has_imatrix;
    int64_t gqa;
    bool is_70b;
} plan_state;

/* The rule part of llama_tensor_get_type (before the block-size fallback). */
static qd_type rule_type(plan_state *s, qd_type t, const qd_recipe_tensor *x, qd_ftype ft, const qd_recipe_opts *o)
{
    const char *name = x->name;
    if (!strcmp(name, "output.weight") || (!s->has_output && !strcmp(name, "token_embd.weight"))) {
        if (o->output_type >= 0)
            return (qd_type)o->output_type;
        const qd_type_traits *tr = qd_type_traits_get(t);
        if (x->ne[0] % tr->block_size)
            return QD_TYPE_Q8_0;
        if (t != QD_TYPE_Q8_0)
            return QD_TYPE_Q6_K;
        return t;
    }
    if (!strcmp(name, "token_embd.weight")) {
        if (o->token_embd_type >= 0)
            return (qd_type)o->token_embd_type;
        return t; /* the special cases are for IQ1/IQ2/IQ3/TQ recipes, not offered here */
    }
    if (strstr(name, "attn_v.weight")) {
        if (ft == QD_FTYPE_Q2_K)
            t = s->gqa >= 4 ? QD_TYPE_Q4_K : QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_Q3_K_M)
            t = s->i_attn_v < 2 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K;
        else if (ft == QD_FTYPE_Q3_K_L)
            t = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_IQ4_NL || ft == QD_FTYPE_IQ4_XS) && s->gqa >= 4)
            t = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_Q4_K_M || ft == QD_FTYPE_Q5_K_M) && use_more_bits(s->i_attn_v, s->n_attn_v))
            t = QD_TYPE_Q6_K;
        else if (ft == QD_FTYPE_Q4_K_S && s->i_attn_v < 4)
            t = QD_TYPE_Q5_K;
        if (s->is_70b && (t == QD_TYPE_Q3_K || t == QD_TYPE_Q4_K))
            t = QD_TYPE_Q5_K;
        s->i_attn_v++;
        return t;
    }
    if (strstr(name, "ffn_down")) {
        int i = s->i_ffn_down, n = s->n_ffn_down;
        if (ft == QD_FTYPE_Q2_K)
            t = QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_Q3_K_M)
            t = i < n / 16 ? QD_TYPE_Q5_K : QD_TYPE_Q4_K; /* non-Falcon: use_more_bits || true -> Q4_K */
        else if (ft == QD_FTYPE_Q3_K_L)
            t = QD_TYPE_Q5_K;
        else if (ft == QD_FTYPE_Q4_K_M) {
            if (use_more_bits(i, n))
                t = QD_TYPE_Q6_K;
        } else if (i < n / 8 && (ft == QD_FTYPE_IQ4_NL || ft == QD_FTYPE_IQ4_XS) && !s->has_imatrix)
            t = QD_TYPE_Q5_K;
        else if (ft == QD_FTYPE_Q5_K_M && use_more_bits(i, n))
            t = QD_TYPE_Q6_K;
        else if (ft == QD_FTYPE_Q4_K_S && i < n / 8)
            t = QD_TYPE_Q5_K;
        else if ((ft == QD_FTYPE_Q4_0 || ft == QD_FTYPE_Q5_0) && s->has_imatrix && i < n / 8)
            t = ft == QD_FTYPE_Q4_0 ? QD_TYPE_Q4_1 : QD_TYPE_Q5_1;
        s->i_ffn_down++;
        return t;
    }
    if (strstr(name, "attn_output.weight")) {
        if (ft == QD_FTYPE_Q2_K)
            t = QD_TYPE_Q3_K;
        else if (ft == QD_FTYPE_Q3_K_M)
            t = QD_TYPE_Q4_K;
        else if (ft == QD_FTYPE_Q3_K_L)
            t = QD_TYPE_Q5_K;
        return t;
    }
    return t;
}

/* The block-size fallback table; QD_TYPE_COUNT when llama.cpp has none (it throws). */
static qd_type fallback_of(qd_type t)
{
    /* current llama.cpp (2026); b4747 (2025-02) sent Q2_K and Q3_K to IQ4_NL instead of Q4_0 */
    switch (t) {
    case QD_TYPE_Q2_K: case QD_TYPE_Q3_K: case QD_TYPE_TQ1_0: case QD_TYPE_TQ2_0: return QD_TYPE_Q4_0;
    case QD_TYPE_IQ2_XXS: case QD_TYPE_IQ2_XS: case QD_TYPE_IQ2_S: case QD_TYPE_IQ3_XXS: case QD_TYPE_IQ3_S:
    case QD_TYPE_IQ1_S: case QD_TYPE_IQ1_M: case QD_TYPE_IQ4_XS:
        return QD_TYPE_IQ4_NL;
    case QD_TYPE_Q4_K: return QD_TYPE_Q5_0;
    case QD_TYPE_Q5_K: return QD_TYPE_Q5_1;
    case QD_TYPE_Q6_K: return QD_TYPE_Q8_0;
    default: return QD_TYPE_COUNT;
    }
}

static bool fits(qd_type t, int64_t ne0)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    return tr && ne0 % tr->block_size == 0;
}

int qd_recipe_plan(qd_recipe_choice *out, size_t *n_fallback, const qd_hparams *hp, qd_ftype ft,
                   const qd_recipe_opts *opts, const qd_recipe_tensor *ts, size_t n)
{
    qd_recipe_opts defaults = QD_RECIPE_OPTS_INIT;
    const qd_recipe_opts *o = opts ? opts : &defaults;
    qd_type base = qd_recipe_base_type(ft);
    plan_state s;
    size_t nf = 0;

    if (base == QD_TYPE_COUNT)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "recipe: unknown file type %d", (int)ft);
    memset(&s, 0, sizeof(s));
    s.has_imatrix = o->has_imatrix;
    s.gqa = hp && hp->n_head_kv > 0 ? hp->n_head / hp->n_head_kv : 1;
    s.n_ffn_down = hp ? (int)hp->n_layer : 0;
    s.is_70b = hp && !strcmp(hp->arch, "llama") && hp->n_layer == 80 && hp->n_head_kv < hp->n_head;
    for (size_t i = 0; i < n; i++) {
        if (strstr(ts[i].name, "attn_v.weight") || strstr(ts[i].name, "attn_qkv.weight"))
            s.n_attn_v++;
        if (!strcmp(ts[i].name, "output.weight"))
            s.has_output = true;
    }
    if (hp && s.n_attn_v != 0 && s.n_attn_v != (int)hp->n_layer)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "recipe: %d attn_v tensors for %lld layers", s.n_attn_v,
                            (long long)hp->n_layer);

    for (size_t i = 0; i < n; i++) {
        const qd_recipe_tensor *x = &ts[i];
        qd_recipe_choice *c = &out[i];
        memset(c, 0, sizeof(*c));
        c->type = x->src_type;
        if (!wants_quantize(x))
            continue;
        qd_type t = base;
        /* --token-embedding-type / --output-tensor-type: taken as given, before any rule (llama.cpp's outer
         * llama_tensor_get_type returns them directly) */
        if (o->token_embd_type >= 0 && !strcmp(x->name, "token_embd.weight")) {
            t = (qd_type)o->token_embd_type;
        } else if (o->output_type >= 0 && !strcmp(x->name, "output.weight")) {
            t = (qd_type)o->output_type;
        } else if (is_quantized(base)) {
            if (!o->pure)
                t = rule_type(&s, t, x, ft, o);
            if (!fits(t, x->ne[0])) { /* llama.cpp: tensor_type_fallback, with or without --pure */
                qd_type f = fallback_of(t);
                if (f == QD_TYPE_COUNT) {
                    t = QD_TYPE_F16; /* llama.cpp throws: "no tensor type fallback is defined" */
                    c->beyond_llama = true;
                } else {
                    t = fits(f, x->ne[0]) ? f : QD_TYPE_F16;
                }
                c->fallback = true;
                nf++;
            }
        }
        if (!fits(t, x->ne[0]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "recipe: %s: row of %lld does not fit type %s", x->name,
                                (long long)x->ne[0], qd_type_traits_get(t) ? qd_type_traits_get(t)->name : "?");
        c->type = t;
        c->quantize = t != x->src_type;
    }
    if (n_fallback)
        *n_fallback = nf;
    return QD_OK;
}
