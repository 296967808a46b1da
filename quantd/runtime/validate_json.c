/*
 * validate_json.c - the validation policy (parsed) and the report (written) as JSON, with jansson.
 * Schemas: schemas/validation-policy.schema.json and schemas/validation-report.schema.json.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/recipe.h"
#include "qd/version.h"
#include "qd/validate.h"

static int num_field(json_t *o, const char *key, double *out, const char *cls)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = -1;
        return QD_OK;
    }
    if (!json_is_number(v) || json_number_value(v) < 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: class '%s': %s must be a non-negative number", cls, key);
    *out = json_number_value(v);
    return QD_OK;
}

int qd_validation_policy_parse(qd_validation_policy *out, const char *text, size_t len)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    int rc = QD_OK;
    memset(out, 0, sizeof(*out));
    if (!root)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: not JSON (line %d: %s)", je.line, je.text);
    json_t *ver = json_object_get(root, "version"), *classes = json_object_get(root, "classes");
    if (!json_is_object(root) || !json_is_integer(ver) || json_integer_value(ver) != 1) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: \"version\": 1 is required");
        goto done;
    }
    if (!json_is_array(classes) || json_array_size(classes) == 0 || json_array_size(classes) > QD_POLICY_MAX_CLASSES) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: \"classes\" must be an array of 1..%d classes",
                          QD_POLICY_MAX_CLASSES);
        goto done;
    }
    size_t i;
    json_t *c;
    json_array_foreach(classes, i, c) {
        qd_validation_class *k = &out->classes[i];
        json_t *name = json_object_get(c, "name"), *mb = json_object_get(c, "min_bits");
        if (!json_is_object(c) || !json_is_string(name) || strlen(json_string_value(name)) == 0 ||
            strlen(json_string_value(name)) >= sizeof(k->name) || !json_is_number(mb)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: class %zu needs a \"name\" (1..31 characters) and "
                              "a numeric \"min_bits\"", i);
            goto done;
        }
        snprintf(k->name, sizeof(k->name), "%s", json_string_value(name));
        k->min_bits = json_number_value(mb);
        if ((rc = num_field(c, "max_mean_kld", &k->max_mean_kld, k->name)) < 0 ||
            (rc = num_field(c, "max_p99_kld", &k->max_p99_kld, k->name)) < 0 ||
            (rc = num_field(c, "min_same_top", &k->min_same_top, k->name)) < 0 ||
            (rc = num_field(c, "max_slice_factor", &k->max_slice_factor, k->name)) < 0)
            goto done;
        json_t *sq = json_object_get(c, "min_tensor_sqnr_db");
        k->min_tensor_sqnr_db = -1e18;
        if (sq && !json_is_null(sq)) {
            if (!json_is_number(sq)) {
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "policy: class '%s': min_tensor_sqnr_db must be a number",
                                  k->name);
                goto done;
            }
            k->min_tensor_sqnr_db = json_number_value(sq);
        }
        out->n_classes++;
    }
done:
    json_decref(root);
    return rc;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *stats_json(const qd_kld_stats *s)
{
    json_t *kld = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "mean", num(s->mean), "mean_err", num(s->mean_err),
                            "median", num(s->median), "p90", num(s->p90), "p95", num(s->p95), "p99", num(s->p99),
                            "p999", num(s->p999), "max", num(s->max), "min", num(s->min));
    return json_pack("{s:I,s:o,s:{s:o,s:o},s:{s:o,s:o,s:o,s:o}}", "tokens", (json_int_t)s->n, "kld", kld, "same_top",
                     "fraction", num(s->same_top), "err", num(s->same_top_err), "ppl", "reference", num(s->ppl_ref),
                     "variant", num(s->ppl_var), "ratio", num(s->ppl_ratio), "ln_ratio", num(s->ln_ratio));
}

static const char *tname(qd_type t)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    return tr ? tr->name : "?";
}

int qd_validation_report_json(char **out, const qd_validation_report *r, const char *extra)
{
    *out = NULL;
    json_t *root = stats_json(&r->overall);
    if (!root)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "report: out of memory");
    json_object_set_new(root, "schema", json_string("https://quantd.dev/validation-report/v1"));
    json_t *slices = json_array(), *tensors = json_array(), *worst = json_array();
    for (uint32_t i = 0; i < r->n_slices; i++) {
        json_t *s = stats_json(&r->slices[i].s);
        json_object_set_new(s, "name", json_string(r->slices[i].name));
        json_array_append_new(slices, s);
    }
    for (int i = 0; i < r->n_tensors; i++) {
        const qd_tensor_metrics *t = &r->tensors[i];
        json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:o}", "name", t->name, "reference_type", tname(t->ref_type),
                              "variant_type", tname(t->var_type), "elements", (json_int_t)t->n, "rel_rmse",
                              num(t->rel_rmse), "sqnr_db", num(t->sqnr_db), "cosine", num(t->cosine), "scale",
                              num(t->scale));
        if (t->diagnosis[0])
            json_object_set_new(o, "diagnosis", json_string(t->diagnosis));
        json_array_append_new(tensors, o);
    }
    for (int w = 0; w < 8 && r->worst[w] >= 0; w++)
        json_array_append_new(worst, json_string(r->tensors[r->worst[w]].name));
    json_object_set_new(root, "slices", slices);
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "worst_tensors", worst);
    json_object_set_new(root, "variant_bpw", num(r->bpw));
    json_object_set_new(root, "params", json_integer((json_int_t)r->n_params));
    json_object_set_new(root, "dominant_type", json_string(tname(r->dominant_type)));
    json_object_set_new(root, "activation_path",
                        json_string("f32 activations (llama.cpp's CPU path rounds activations to Q8_0/Q8_K for "
                                    "quantized matmuls; ours does not)"));
    json_object_set_new(root, "kv_cache", json_string(qd_llama_kv_name(r->opts.kv_type)));
    json_object_set_new(root, "scored_positions", json_string(r->opts.score_all ? "all" : "second-half"));
    json_object_set_new(root, "timing", json_pack("{s:o,s:I,s:o,s:s}", "seconds", num(r->seconds), "tokens_per_model",
                                                  (json_int_t)r->tokens_evaluated, "tokens_per_second",
                                                  num(r->seconds > 0 ? 2.0 * (double)r->tokens_evaluated / r->seconds : 0),
                                                  "simd", r->simd ? r->simd : "?"));
    if (r->judged) {
        json_t *reasons = json_array();
        for (int i = 0; i < r->n_reasons; i++)
            json_array_append_new(reasons, json_string(r->reasons[i]));
        json_t *thr = json_object();
        if (r->thr_mean_kld >= 0)
            json_object_set_new(thr, "max_mean_kld", json_real(r->thr_mean_kld));
        if (r->thr_p99_kld >= 0)
            json_object_set_new(thr, "max_p99_kld", json_real(r->thr_p99_kld));
        if (r->thr_same_top >= 0)
            json_object_set_new(thr, "min_same_top", json_real(r->thr_same_top));
        if (r->thr_slice_factor >= 0)
            json_object_set_new(thr, "max_slice_factor", json_real(r->thr_slice_factor));
        if (r->thr_sqnr_db > -1e9)
            json_object_set_new(thr, "min_tensor_sqnr_db", json_real(r->thr_sqnr_db));
        json_object_set_new(root, "verdict", json_pack("{s:s,s:s,s:o,s:o}", "result", r->pass ? "pass" : "fail",
                                                       "class", r->class_name, "thresholds", thr, "reasons", reasons));
    }
    if (extra) {
        json_t *x = json_loads(extra, 0, NULL);
        if (json_is_object(x))
            json_object_update(root, x);
        json_decref(x);
    }
    size_t flags = JSON_INDENT(2) | JSON_REAL_PRECISION(17), n = json_dumpb(root, NULL, 0, flags);
    *out = n ? qd_malloc(n + 2) : NULL;
    if (*out) {
        json_dumpb(root, *out, n, flags);
        (*out)[n] = '\n';
        (*out)[n + 1] = 0;
    }
    json_decref(root);
    if (!*out)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "report: out of memory");
    return *out ? QD_OK : QD_ENOMEM;
}

/* ---- the variant predicate ----------------------------------------------------------------------------------- */


static bool is_digest(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) || strlen(s) != 71)
        return false;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* json_real that refuses non-finite values (JSON has none) by clamping to 0; callers pass finite metrics. */
static json_t *pnum(double v) { return json_real(isfinite(v) ? v : 0.0); }

static double ratio01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

static json_t *validation_obj(const qd_validation_report *r, const char *ref_digest, const char *set_digest)
{
    json_t *v = json_object(), *m = json_object(), *thr = json_object(), *worst = json_array(), *sl = json_array();
    if (!v || !m || !thr || !worst || !sl) {
        json_decref(v);
        json_decref(m);
        json_decref(thr);
        json_decref(worst);
        json_decref(sl);
        return NULL;
    }
    const qd_kld_stats *s = &r->overall;
    json_object_set_new(m, "kld_mean", pnum(fmax(0, s->mean)));
    json_object_set_new(m, "kld_p99", pnum(fmax(0, s->p99)));
    json_object_set_new(m, "top1_agreement", pnum(ratio01(s->same_top)));
    json_object_set_new(m, "ppl_ratio", pnum(fmax(0, s->ppl_ratio)));
    json_object_set_new(m, "tokens", json_integer((json_int_t)s->n));
    for (int w = 0; w < 8 && r->worst[w] >= 0; w++) {
        const qd_tensor_metrics *t = &r->tensors[r->worst[w]];
        if (!isfinite(t->sqnr_db))
            continue; /* identical tensors are not "worst" */
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "sqnr_db", pnum(t->sqnr_db));
        json_array_append_new(worst, o);
    }
    json_object_set_new(m, "worst_tensors", worst);
    for (uint32_t i = 0; i < r->n_slices; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(r->slices[i].name));
        json_object_set_new(o, "kld_mean", pnum(fmax(0, r->slices[i].s.mean)));
        json_object_set_new(o, "kld_p99", pnum(fmax(0, r->slices[i].s.p99)));
        json_object_set_new(o, "top1_agreement", pnum(ratio01(r->slices[i].s.same_top)));
        json_object_set_new(o, "ppl_ratio", pnum(fmax(0, r->slices[i].s.ppl_ratio)));
        json_array_append_new(sl, o);
    }
    json_object_set_new(m, "slices", sl);
    if (r->thr_mean_kld >= 0)
        json_object_set_new(thr, "kld_mean_max", pnum(r->thr_mean_kld));
    if (r->thr_p99_kld >= 0)
        json_object_set_new(thr, "kld_p99_max", pnum(r->thr_p99_kld));
    if (r->thr_same_top >= 0)
        json_object_set_new(thr, "top1_agreement_min", pnum(ratio01(r->thr_same_top)));
    json_object_set_new(v, "reference_digest", json_string(ref_digest));
    json_object_set_new(v, "set_digest", json_string(set_digest));
    json_object_set_new(v, "metrics", m);
    json_object_set_new(v, "thresholds", thr);
    json_object_set_new(v, "verdict", json_string(r->pass ? "pass" : "fail"));
    return v;
}

static int dump(char **out, json_t *o)
{
    size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10), n = json_dumpb(o, NULL, 0, flags);
    *out = n ? qd_malloc(n + 1) : NULL;
    if (*out) {
        json_dumpb(o, *out, n, flags);
        (*out)[n] = 0;
    }
    json_decref(o);
    return *out ? QD_OK : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "predicate: out of memory");
}

int qd_validation_predicate_json(char **out, const qd_validation_report *r, const char *ref_digest,
                                 const char *set_digest)
{
    *out = NULL;
    if (!r->judged)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: the report has no verdict (judge it first)");
    if (!is_digest(ref_digest) || !is_digest(set_digest))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: reference and set digests must be sha256:<64 hex>");
    json_t *v = validation_obj(r, ref_digest, set_digest);
    if (!v)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "predicate: out of memory");
    return dump(out, v);
}

/* An f32 value as the short decimal it was written from (0.01, not 0.009999999776). */
static double short_real(double v)
{
    char b[32];
    snprintf(b, sizeof(b), "%.7g", v);
    return strtod(b, NULL);
}

/* Quantization method, weight bits and symmetry of a ggml type, for the recipe. */
static void type_recipe(qd_type t, const char **method, int *bits, bool *symmetric)
{
    *method = "rtn";
    *symmetric = true;
    switch (t) {
    case QD_TYPE_Q4_1: *bits = 4; *symmetric = false; break;
    case QD_TYPE_Q5_1: *bits = 5; *symmetric = false; break;
    case QD_TYPE_Q4_0: case QD_TYPE_IQ4_NL: *bits = 4; break;
    case QD_TYPE_Q5_0: *bits = 5; break;
    case QD_TYPE_Q8_0: *bits = 8; break;
    case QD_TYPE_Q2_K: *method = "k-quant"; *bits = 2; *symmetric = false; break;
    case QD_TYPE_Q3_K: *method = "k-quant"; *bits = 3; break;
    case QD_TYPE_Q4_K: *method = "k-quant"; *bits = 4; *symmetric = false; break;
    case QD_TYPE_Q5_K: *method = "k-quant"; *bits = 5; *symmetric = false; break;
    case QD_TYPE_Q6_K: *method = "k-quant"; *bits = 6; break;
    case QD_TYPE_IQ4_XS: *method = "k-quant"; *bits = 4; break;
    case QD_TYPE_F16: case QD_TYPE_BF16: *bits = 16; break;
    default: *bits = 32; break;
    }
}

static int kv_bits(qd_llama_kv_type k)
{
    switch (k) {
    case QD_KV_F16: return 16;
    case QD_KV_Q8_0: case QD_KV_FP8_E4M3: return 8;
    case QD_KV_Q4_0: return 4;
    default: return 32;
    }
}

static void upper(char *dst, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        dst[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
    dst[i] = 0;
}

/* Tensors whose type is not the base type, with all-layer groups written as blk.*.<name>. */
static json_t *overrides(const qd_llama_model *v, qd_type base)
{
    json_t *a = json_array();
    int n = qd_llama_tensor_count(v), L = v->cfg.n_layers;
    char tn[32], pat[80];
    for (int i = 0; a && i < n; i++) {
        const char *name;
        const qd_llama_tensor *t = qd_llama_tensor_at((qd_llama_model *)v, i, &name);
        if (t->rows == 1 || t->type == base)
            continue;
        upper(tn, sizeof(tn), qd_type_traits_get(t->type)->name);
        if (!strncmp(name, "blk.", 4) && i >= 1 && i < 1 + 9 * L) {
            int k = (i - 1) % 9, l = (i - 1) / 9;
            bool all = true;
            for (int o = 0; o < L && all; o++)
                all = qd_llama_tensor_at((qd_llama_model *)v, 1 + 9 * o + k, NULL)->type == t->type;
            if (all) {
                if (l != 0)
                    continue; /* written once, at layer 0 */
                snprintf(pat, sizeof(pat), "blk.*%s", strchr(name + 4, '.'));
                name = pat;
            }
        }
        json_t *o = json_object();
        json_object_set_new(o, "tensor", json_string(name));
        json_object_set_new(o, "format", json_string(tn));
        json_array_append_new(a, o);
    }
    return a;
}

/* A calibrated method's record (quantize.* keys: written by quant quantize --method awq|smoothquant into a GGUF, or
 * read from a folder's quantd.json by quantd/calib/hf_load.c) overrides what the tensor types say: method, format,
 * bits, group size, symmetry, the method's parameters (recipe.params) and the calibration. */
static json_t *kv_value(const qd_kv *kv)
{
    if (kv->type == QD_GGUF_STRING)
        return !strcmp(kv->str, "true") ? json_true() : !strcmp(kv->str, "false") ? json_false()
                                                                                  : json_string(kv->str);
    if (kv->type == QD_GGUF_F32)
        return json_real(short_real(kv->num.f));
    if (kv->type == QD_GGUF_F64)
        return json_real(kv->num.f);
    if (kv->type == QD_GGUF_BOOL)
        return json_boolean(kv->num.u != 0);
    int64_t v;
    return qd_kv_int(kv, &v) == QD_OK ? json_integer((json_int_t)v) : NULL;
}

static void apply_record(const qd_model *src, json_t *recipe, json_t *calib)
{
    static const char *const rk[] = {"method", "format", "weight_bits", "activation_bits", "group_size", "symmetric"};
    for (size_t i = 0; src && i < qd_model_kv_count(src); i++) {
        const qd_kv *kv = qd_model_kv_at(src, i);
        if (strncmp(kv->key, "quantize.", 9))
            continue;
        const char *k = kv->key + 9;
        json_t *v = kv_value(kv);
        if (!v)
            continue;
        bool used = false;
        for (size_t j = 0; j < sizeof(rk) / sizeof(rk[0]) && !used; j++)
            if (!strcmp(k, rk[j])) {
                json_object_set(recipe, k, v);
                used = true;
            }
        if (!used && !strncmp(k, "params.", 7) && k[7]) {
            json_t *p = json_object_get(recipe, "params");
            if (!p) {
                p = json_object();
                json_object_set_new(recipe, "params", p);
            }
            json_object_set(p, k + 7, v);
        } else if (!used && !strncmp(k, "calib.", 6) && k[6])
            json_object_set(calib, k + 6, v);
        json_decref(v);
    }
}

int qd_variant_predicate_json(char **out, const qd_validation_report *r, const qd_variant_predicate_info *info)
{
    *out = NULL;
    if (!r->judged)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: the report has no verdict (judge it first)");
    if (!is_digest(info->source_digest) || !is_digest(info->set_digest))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: source and set digests must be sha256:<64 hex>");
    if (!info->variant || !info->n_target_hardware || !info->builder_id || !*info->builder_id)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: needs the variant, a target and a builder id");
    for (size_t i = 0; i < info->n_target_hardware; i++) {
        const char *h = info->target_hardware[i];
        bool ok = h && *h && *h != '-' && h[strlen(h) - 1] != '-' && !strstr(h, "--");
        for (const char *p = h; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
        if (!ok)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: target hardware '%s' must be lower-case words "
                                "joined by '-' (e.g. cpu-x86_64)", h ? h : "");
    }
    /* recipe: from the GGUF's general.file_type when the variant came from one, else its dominant type */
    const qd_model *src = qd_llama_source(info->variant);
    const qd_kv *ft_kv = src ? qd_model_kv_find(src, "general.file_type") : NULL;
    int64_t ft = -1;
    qd_type base = r->dominant_type;
    char format[32];
    if (ft_kv && qd_kv_int(ft_kv, &ft) == QD_OK && qd_recipe_name((qd_ftype)ft)) {
        snprintf(format, sizeof(format), "%s", qd_recipe_name((qd_ftype)ft));
        base = qd_recipe_base_type((qd_ftype)ft);
    } else
        upper(format, sizeof(format), qd_type_traits_get(base)->name);
    const char *method;
    int bits;
    bool sym;
    type_recipe(base, &method, &bits, &sym);
    bool imatrix = src && (qd_model_kv_find(src, "quantize.imatrix.file") ||
                           qd_model_kv_find(src, "quantize.imatrix.dataset"));
    if (imatrix)
        method = "imatrix";
    json_t *p = json_object(), *o;
    if (!p)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "predicate: out of memory");
    o = json_object();
    json_object_set_new(o, "digest", json_string(info->source_digest));
    if (info->source_name && *info->source_name)
        json_object_set_new(o, "name", json_string(info->source_name));
    json_object_set_new(p, "source", o);

    o = json_object();
    json_object_set_new(o, "method", json_string(method));
    json_object_set_new(o, "format", json_string(format));
    json_object_set_new(o, "weight_bits", json_integer(bits));
    json_object_set_new(o, "activation_bits", json_integer(32)); /* the runtime keeps activations in f32 */
    json_object_set_new(o, "kv_bits", json_integer(kv_bits(r->opts.kv_type)));
    if (qd_type_traits_get(base)->block_size > 1)
        json_object_set_new(o, "group_size", json_integer((json_int_t)qd_type_traits_get(base)->block_size));
    json_object_set_new(o, "symmetric", json_boolean(sym));
    json_object_set_new(o, "overrides", overrides(info->variant, base));
    json_object_set_new(o, "seed", json_integer(0));
    for (int i = 0; i < qd_llama_tensor_count(info->variant); i++) /* W8A8: activations int8 per token */
        if (qd_llama_tensor_at((qd_llama_model *)info->variant, i, NULL)->row_scale) {
            json_object_set_new(o, "activation_bits", json_integer(8));
            break;
        }
    json_t *cal = json_object();
    json_object_set_new(cal, "class", json_string(imatrix ? "generic-text" : "none"));
    apply_record(src, o, cal);
    json_object_set_new(p, "recipe", o);
    json_object_set_new(p, "calibration", cal);

    /* converter: "0.1.0 (abc1234)" -> version 0.1.0, build abc1234 */
    const char *vs = qd_version_string(), *lp = strchr(vs, '(');
    char build[64] = "unknown";
    if (lp) {
        snprintf(build, sizeof(build), "%s", lp + 1);
        char *rp = strchr(build, ')');
        if (rp)
            *rp = 0;
        if (!build[0])
            snprintf(build, sizeof(build), "unknown");
    }
    const char *kn = qd_kernels_name(qd_kernels_current());
    const char *kernel = !strcmp(kn, "avx2") || !strcmp(kn, "avx512") || !strcmp(kn, "cuda") ? kn : "scalar";
    o = json_object();
    json_object_set_new(o, "name", json_string("quantd"));
    json_object_set_new(o, "version", json_string(QD_VERSION));
    json_object_set_new(o, "build", json_string(build));
    json_object_set_new(o, "kernel", json_string(kernel));
    json_object_set_new(p, "converter", o);

    o = json_array();
    for (size_t i = 0; i < info->n_target_hardware; i++)
        json_array_append_new(o, json_string(info->target_hardware[i]));
    json_object_set_new(p, "target_hardware", o);

    json_t *v = validation_obj(r, info->source_digest, info->set_digest);
    if (!v) {
        json_decref(p);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "predicate: out of memory");
    }
    json_object_set_new(p, "validation", v);

    char ts[32];
    time_t t = (time_t)info->created_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_set_new(p, "created_at", json_string(ts));
    o = json_object();
    json_object_set_new(o, "id", json_string(info->builder_id));
    json_object_set_new(p, "builder", o);
    return dump(out, p);
}
