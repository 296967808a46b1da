/*
 * validate_json.c - the validation policy (parsed) and the report (written) as JSON, with jansson.
 * Schemas: schemas/validation-policy.schema.json and schemas/validation-report.schema.json.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
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
