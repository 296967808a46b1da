/*
 * method_gptq.c - `quant quantize --method imatrix|gptq` and `quant imatrix` (docs/CALIBRATION.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "methods.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/hfquant.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/recipe.h"

/* What the variant records about the method and its calibration (GGUF keys quantd.*; read by the predicate). */
typedef struct method_meta {
    const char *method;
    int bits, group;
    bool sym, act_order, has_gptq, true_sequential;
    double damp;
    const char *calib_class;
    const char *digest;    /* NULL when unknown (an imatrix file made elsewhere) */
    uint32_t samples;
    uint64_t tokens;
} method_meta;

static int write_meta(void *payload, qd_gguf_writer *w)
{
    const method_meta *mm = payload;
    int rc;
    if ((rc = qd_gguf_set_str(w, "quantize.method", mm->method)) ||
        (rc = qd_gguf_set_str(w, "quantize.calib.class", mm->calib_class)))
        return rc;
    if (mm->digest && ((rc = qd_gguf_set_str(w, "quantize.calib.dataset_digest", mm->digest)) ||
                       (rc = qd_gguf_set_u32(w, "quantize.calib.samples", mm->samples)) ||
                       (rc = qd_gguf_set_u64(w, "quantize.calib.tokens", mm->tokens))))
        return rc;
    if (mm->has_gptq && ((rc = qd_gguf_set_u32(w, "quantize.weight_bits", (uint32_t)mm->bits)) ||
                         (rc = qd_gguf_set_u32(w, "quantize.group_size", (uint32_t)mm->group)) ||
                         (rc = qd_gguf_set_bool(w, "quantize.symmetric", mm->sym)) ||
                         (rc = qd_gguf_set_bool(w, "quantize.params.act_order", mm->act_order)) ||
                         (rc = qd_gguf_set_f32(w, "quantize.params.damp", (float)mm->damp)) ||
                         (rc = qd_gguf_set_bool(w, "quantize.params.true_sequential", mm->true_sequential))))
        return rc;
    return QD_OK;
}

static const char *calib_class(const qmethod_args *a, bool sampled)
{
    if (a->calib_class)
        return a->calib_class;
    return sampled ? "domain:self-sampled" : "generic-text";
}

/* The reference model and the calibration set (checked against --val when given). */
static int open_calib(qd_llama_model **m, qd_calibset *cs, const char *model, const qmethod_args *a)
{
    qd_valset *val = NULL;
    int rc;
    *m = NULL;
    if (!a->calib) {
        fprintf(stderr, "quant: --method %s needs --calib SET (a QDVALSET file or sample:N:LEN:SEED)\n", a->method);
        return EXIT_USAGE;
    }
    if (a->calib_class && !qd_calib_class_valid(a->calib_class)) {
        fprintf(stderr, "quant: --calib-class %s: want none, generic-text, code, multilingual or domain:NAME\n",
                a->calib_class);
        return EXIT_USAGE;
    }
    if ((rc = qd_llama_load_model(m, model)) < 0)
        return qd_fail(rc, "calibration: load model");
    if (a->val && (rc = qd_calibset_load_set(&val, a->val, *m, a->threads)) < 0) {
        qd_error_prefix("--val");
        goto fail;
    }
    rc = qd_calibset_open(cs, a->calib, *m, val, a->threads);
    qd_valset_free(val);
    if (rc < 0)
        goto fail;
    return EXIT_OK_;
fail:
    qd_llama_free(*m);
    *m = NULL;
    return qd_fail(rc, "calibration");
}

int method_imatrix(const qmethod_args *a)
{
    if (a->format && strcmp(a->format, "gguf")) {
        fprintf(stderr, "quant quantize: --method imatrix writes GGUF (K-quants/IQ with importance weights)\n");
        return EXIT_USAGE;
    }
    if (qd_recipe_from_name(a->type, &a->o->ftype))
        return qd_fail(QD_EINVAL, "quantize");
    method_meta mm = {"imatrix", 0, 0, false, false, false, false, 0, NULL, NULL, 0, 0};
    a->o->meta_fn = write_meta;
    a->o->method_payload = &mm;
    if (a->imatrix_path && !a->calib) { /* a file made earlier (by quant imatrix or llama-imatrix) */
        if (a->calib_class && !qd_calib_class_valid(a->calib_class)) {
            fprintf(stderr, "quant: --calib-class %s: want none, generic-text, code, multilingual or "
                            "domain:NAME\n", a->calib_class);
            return EXIT_USAGE;
        }
        mm.calib_class = calib_class(a, false);
        a->o->imatrix_path = a->imatrix_path;
        return quantize_gguf_run(a, a->o);
    }
    if (a->imatrix_path) {
        fprintf(stderr, "quant quantize: give --calib SET or --imatrix FILE, not both\n");
        return EXIT_USAGE;
    }
    qd_llama_model *m = NULL;
    qd_calibset cs;
    qd_actstats *s = NULL;
    qd_imatrix *im = NULL;
    int ec = open_calib(&m, &cs, a->in, a), rc;
    if (ec)
        return ec;
    qd_calib_options co = QD_CALIB_OPTIONS_INIT;
    co.n_threads = a->threads;
    if ((rc = qd_actstats_collect(&s, m, cs.set, &co)) < 0 ||
        (rc = qd_imatrix_from_actstats(&im, s, cs.name, (int32_t)cs.set->n_seqs)) < 0) {
        ec = qd_fail(rc, "imatrix");
        goto done;
    }
    fprintf(stderr, "imatrix: %zu matrices from %u calibration sequences, %llu tokens (%s)\n", qd_imatrix_count(im),
            cs.set->n_seqs, (unsigned long long)cs.set->n_tokens, cs.digest);
    mm.calib_class = calib_class(a, cs.sampled);
    mm.digest = cs.digest;
    mm.samples = cs.set->n_seqs;
    mm.tokens = cs.set->n_tokens;
    a->o->imatrix = im;
    ec = quantize_gguf_run(a, a->o);
done:
    qd_imatrix_free(im);
    qd_actstats_free(s);
    qd_calibset_free(&cs);
    qd_llama_free(m);
    return ec;
}

/* ---- GPTQ ------------------------------------------------------------------------------------------------------ */

typedef struct gptq_ctx {
    method_meta meta;
    const qd_gptq_run *run;
    const qd_llama_model *src;
    qd_type type;          /* GGUF grid */
    int bits;
    size_t n_refused;
} gptq_ctx;

static int gptq_meta(void *payload, qd_gguf_writer *w) { return write_meta(&((gptq_ctx *)payload)->meta, w); }

static const void *gptq_tensor(void *payload, const char *name, qd_type type, int64_t rows, int64_t cols)
{
    gptq_ctx *g = payload;
    const qd_gptq_layer *ly = qd_gptq_run_find(g->run, name);
    if (!ly)
        return NULL;
    if (type != g->type || ly->m.rows != rows || ly->m.cols != cols) {
        g->n_refused++;
        fprintf(stderr, "quant: warning: %s: the recipe wants %s, GPTQ ran on %s: round to nearest instead\n", name,
                qd_type_traits_get(type)->name, qd_type_traits_get(g->type)->name);
        return NULL;
    }
    return ly->m.blocks;
}

static const qd_llama_tensor *src_tensor(const qd_llama_model *m, const char *gguf)
{
    const char *nm;
    for (int i = 0; i < qd_llama_tensor_count(m); i++) {
        const qd_llama_tensor *t = qd_llama_tensor_at((qd_llama_model *)m, i, &nm);
        if (!strcmp(nm, gguf))
            return t;
    }
    return NULL;
}

/* export's layer hook: the GPTQ result of this HF module, rows in HF order */
static int gptq_layer(qd_hfq_result *out, const char *hf_name, const float *w, int64_t rows, int64_t cols,
                      const qd_hfq_opts *o, void *payload)
{
    gptq_ctx *g = payload;
    char gguf[128];
    qd_name_permute perm = QD_PERMUTE_NONE;
    (void)o;
    int rc = qd_name_map(gguf, sizeof(gguf), &perm, hf_name, QD_NAMES_HF, QD_NAMES_GGUF);
    if (rc)
        return rc;
    const qd_gptq_layer *ly = qd_gptq_run_find(g->run, gguf);
    if (!ly)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: %s (%lld inputs) was not quantized: its row does not "
                            "split into groups of the chosen size", hf_name, (long long)cols);
    if (ly->m.rows != rows || ly->m.cols != cols)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: %s is %lldx%lld here and %lldx%lld in the run",
                            hf_name, (long long)rows, (long long)cols, (long long)ly->m.rows, (long long)ly->m.cols);
    int64_t *map = qd_mallocarray((size_t)rows, sizeof(int64_t));
    if (!map)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gptq: out of memory");
    int64_t heads = perm == QD_PERMUTE_Q ? g->src->cfg.n_heads : g->src->cfg.n_kv_heads;
    for (int64_t s = 0; s < rows; s++)
        map[s] = perm == QD_PERMUTE_NONE ? s : qd_permute_dst_row(s, rows, heads);
    /* the runtime's rows are GGUF rows: check that the HF matrix is the one GPTQ saw, row for row */
    const qd_llama_tensor *t = src_tensor(g->src, gguf);
    if (t && t->type == QD_TYPE_F32) {
        const float *sw = t->data;
        for (int64_t s = 0; s < rows && !rc; s++)
            if (map[s] < 0 || memcmp(w + s * cols, sw + map[s] * cols, sizeof(float) * (size_t)cols))
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "gptq: %s row %lld does not match the runtime's row "
                                  "%lld", hf_name, (long long)s, (long long)map[s]);
    }
    if (!rc)
        rc = qd_gptq_pack(out, &ly->m, g->bits, map);
    qd_free(map);
    return rc;
}

int method_gptq(const qmethod_args *a)
{
    qd_gptq_params p = QD_GPTQ_PARAMS_INIT;
    bool hf = a->format && strcmp(a->format, "gguf");
    if (hf && strcmp(a->format, "autogptq") && strcmp(a->format, "gptq")) {
        fprintf(stderr, "quant quantize: --method gptq (with calibration: --calib SET) writes --format gguf or "
                        "autogptq, not %s\n", a->format);
        return EXIT_USAGE;
    }
    if (hf) {
        int tb = 0;
        if (!strcmp(a->type, "int4"))
            tb = 4;
        else if (!strcmp(a->type, "int3"))
            tb = 3;
        else if (!strcmp(a->type, "int2"))
            tb = 2;
        else if (!strcmp(a->type, "int8"))
            tb = 8;
        if (!tb) {
            fprintf(stderr, "quant quantize: --format autogptq takes --type int2|int3|int4|int8\n");
            return EXIT_USAGE;
        }
        if (a->bits && a->bits != tb) {
            fprintf(stderr, "quant quantize: --bits %d contradicts --type %s\n", a->bits, a->type);
            return EXIT_USAGE;
        }
        p.bits = tb;
        p.group_size = a->group ? (int)a->group : 128;
    } else {
        if (qd_recipe_from_name(a->type, &a->o->ftype))
            return qd_fail(QD_EINVAL, "quantize");
        p.gguf_type = qd_recipe_base_type(a->o->ftype);
        if (p.gguf_type != QD_TYPE_Q4_0 && p.gguf_type != QD_TYPE_Q4_1 && p.gguf_type != QD_TYPE_Q5_0 &&
            p.gguf_type != QD_TYPE_Q8_0) {
            fprintf(stderr, "quant quantize: --method gptq into GGUF takes the Q4_0, Q4_1, Q5_0 or Q8_0 recipe (the "
                            "grids GPTQ fills); %s is not one\n", a->type);
            return EXIT_USAGE;
        }
        if (a->group && a->group != 32) {
            fprintf(stderr, "quant quantize: GGUF blocks hold groups of 32 (--group %ld)\n", a->group);
            return EXIT_USAGE;
        }
        if (a->sym) {
            fprintf(stderr, "quant quantize: --sym applies to the integer grid (--format autogptq)\n");
            return EXIT_USAGE;
        }
        p.bits = p.gguf_type == QD_TYPE_Q8_0 ? 8 : p.gguf_type == QD_TYPE_Q5_0 ? 5 : 4;
        p.group_size = 32;
    }
    p.sym = a->sym || (!hf && p.gguf_type != QD_TYPE_Q4_1);
    p.act_order = a->act_order;
    p.true_sequential = !a->no_true_sequential;
    if (a->damp >= 0)
        p.damp = a->damp;

    qd_llama_model *m = NULL;
    qd_calibset cs;
    qd_gptq_run *run = NULL;
    int ec = open_calib(&m, &cs, a->in, a), rc;
    if (ec)
        return ec;
    qd_gptq_run_options ro = {a->threads, false, true};
    if ((rc = qd_gptq_model(&run, m, cs.set, &p, &ro)) < 0) {
        ec = qd_fail(rc, "gptq");
        goto done;
    }
    double lsum = 0, lo = INFINITY, hi = 0;
    size_t nr = 0;
    for (size_t i = 0; i < run->n_layers; i++) {
        const qd_gptq_layer *ly = &run->layers[i];
        if (!(ly->err_rtn > 0))
            continue;
        double r = ly->err_gptq / ly->err_rtn;
        lsum += log(r);
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
        nr++;
    }
    fprintf(stderr, "gptq: %zu matrices (%zu left alone: row not a multiple of the group), %u calibration sequences, "
                    "%lld tokens (%s); layer output error against round to nearest on the same grid: geometric mean "
                    "%.3f (best %.3f, worst %.3f)\n",
            run->n_layers, run->n_skipped, run->samples, (long long)run->tokens, cs.digest,
            nr ? exp(lsum / (double)nr) : 1.0, nr ? lo : 1.0, nr ? hi : 1.0);
    method_meta mm = {"gptq", p.bits, p.group_size, p.sym, p.act_order, true, p.true_sequential, p.damp,
                      calib_class(a, cs.sampled),
                      cs.digest, cs.set->n_seqs, cs.set->n_tokens};
    gptq_ctx g = {mm, run, m, p.gguf_type, p.bits, 0};
    if (!hf) {
        a->o->tensor_fn = gptq_tensor;
        a->o->meta_fn = gptq_meta;
        a->o->method_payload = &g;
        ec = quantize_gguf_run(a, a->o);
        goto done;
    }
    char qc[512];
    snprintf(qc, sizeof(qc),
             "{\"quant_method\": \"gptq\", \"bits\": %d, \"group_size\": %d, \"desc_act\": %s, \"sym\": %s, "
             "\"damp_percent\": %g, \"true_sequential\": %s, \"static_groups\": false, \"checkpoint_format\": "
             "\"gptq\", \"model_file_base_name\": \"model\"}",
             p.bits, p.group_size, p.act_order ? "true" : "false", p.sym ? "true" : "false", p.damp,
             p.true_sequential ? "true" : "false");
    qd_hfq_export_opts eo;
    qd_hfq_export_stats st;
    memset(&eo, 0, sizeof(eo));
    eo.q.format = QD_HFQ_GPTQ;
    eo.q.type = p.bits == 8 ? QD_HFQ_INT8 : QD_HFQ_INT4;
    eo.q.group = p.group_size;
    eo.method = "gptq";
    eo.layer_fn = gptq_layer;
    eo.payload = &g;
    eo.quant_config = qc;
    if ((rc = qd_hfq_export(&st, a->in, a->out, &eo)) < 0) {
        ec = qd_fail(rc, "quantize");
        goto done;
    }
    printf("%s: autogptq int%d g%d%s (method gptq) %llu bytes, %zu tensors (%zu quantized, %.4f bits per quantized "
           "weight), %.2f s\n",
           a->out, p.bits, p.group_size, p.act_order ? " act-order" : "", (unsigned long long)st.file_bytes,
           st.n_tensors, st.n_quantized, st.q_elements ? (double)st.q_bytes * 8.0 / (double)st.q_elements : 0.0,
           st.seconds);
done:
    qd_gptq_run_free(run);
    qd_calibset_free(&cs);
    qd_llama_free(m);
    return ec;
}
