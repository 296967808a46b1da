/*
 * jobs_run.c - one quantize job, stage by stage: load, quantize, validate, sign, publish.
 *
 * load      resolve the source manifest, pick its weight layer, copy the blob from the store into a temp file
 *           under <store>/jobs-tmp (the engine maps files; the store may hold the blob compressed)
 * calibrate (jobs with a calibration dataset) the source's importance matrix on sequences sampled from it, none of
 *           them the validation stage's, as `quant quantize --method imatrix --calib sample:...` collects it
 * quantize  qd_quantize_model() into a GGUF temp file (with that importance matrix), then store it as a blob
 *           (invisible until published)
 * validate  job_validate(): the one call a better runtime adapter replaces (see there)
 * sign      an in-toto statement with the https://quantd.dev/variant/v1 predicate, DSSE-signed with the daemon
 *           key, packed as a Sigstore bundle
 * publish   ONE store transaction: blobs linked to the repository, the variant manifest (subject = source), the
 *           bundle as a referrer of it, the lineage edge, the job record "done"; the tag <repo>:<recipe> moves
 *           only when the verdict passes the validation policy
 *
 * Cancellation is checked between stages, inside the calibration after every sequence and inside
 * qd_quantize_model() after every chunk of rows (their cancel hooks), so DELETE /v1/jobs/ID stops a running job
 * within one sequence or one chunk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs_int.h"
#include "qd/audit.h"
#include "qd/gptq.h"
#include "qd/pipeline.h"
#include "qd/recipe.h"
#include "qd/runtime.h"
#include "qd/version.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_MODEL_ARTIFACT "application/vnd.cncf.model.manifest.v1+json"
#define MT_MODEL_CONFIG "application/vnd.cncf.model.config.v1+json"
#define MT_WEIGHT_RAW "application/vnd.cncf.model.weight.v1.raw"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"

/* Overall progress: where each stage starts, and its share (a job without calibration gives its share to quantize:
 * stage_range). */
static const struct {
    const char *name;
    double at, share;
} STAGES[QD_JOB_STAGES] = {{"load", 0.0, 0.1},     {"calibrate", 0.1, 0.25}, {"quantize", 0.35, 0.25},
                           {"validate", 0.6, 0.25}, {"sign", 0.85, 0.05},     {"publish", 0.9, 0.1}};
enum { ST_LOAD, ST_CALIBRATE, ST_QUANTIZE, ST_VALIDATE, ST_SIGN, ST_PUBLISH };

typedef struct job_ctx {
    qd_jobs *J;
    qd_job_run *run;
    qd_store *store;
    const char *repo;
    qd_digest src_manifest;
    qd_digest src_blob;
    uint64_t src_size;
    char src_file[64];
    char src_path[4200], out_path[4200];
    qd_ftype ft;
    const char *recipe;
    int stage;
    uint64_t stage_t0;
    double last_saved;
    qd_digest var_blob;
    uint64_t var_size;
    char var_file[128];
    char kernel[48];      /* the kernels that made the variant's bytes (qd_quantize_stats.kernel) */
    const char *cal_spec; /* the calibration dataset ("sample:N:LEN:SEED"), or NULL */
    qd_imatrix *im;       /* what the calibrate stage collected */
    /* made once, by the first stage that needs them (calibrate or validate): source_model, validation_set */
    qd_llama_model *ref;  /* the source loaded by the runtime */
    qd_valset *val;       /* the validation sequences */
} job_ctx;

static void stage_range(const job_ctx *c, int st, double *at, double *share)
{
    *at = STAGES[st].at;
    *share = STAGES[st].share;
    if (st == ST_QUANTIZE && !c->cal_spec) {
        *at = STAGES[ST_CALIBRATE].at;
        *share += STAGES[ST_CALIBRATE].share;
    }
}

static void stage_begin(job_ctx *c, int st)
{
    double at, share;
    stage_range(c, st, &at, &share);
    c->stage = st;
    c->stage_t0 = qd_now_ns();
    json_object_set_new(c->run->rec, "stage", json_string(STAGES[st].name));
    json_object_set_new(c->run->rec, "progress", json_real(at));
    c->last_saved = at;
    qd_jobs__save(c->J, c->run);
}

static void stage_end(job_ctx *c)
{
    json_t *t = json_object_get(c->run->rec, "timings");
    if (!json_is_object(t)) {
        t = json_object();
        json_object_set_new(c->run->rec, "timings", t);
    }
    json_object_set_new(t, STAGES[c->stage].name, json_real((double)(qd_now_ns() - c->stage_t0) / 1e9));
}

static void stage_progress(job_ctx *c, double frac)
{
    double at, share, p;
    stage_range(c, c->stage, &at, &share);
    p = at + share * (frac < 0 ? 0 : frac > 1 ? 1 : frac);
    if (p - c->last_saved < 0.02)
        return;
    json_object_set_new(c->run->rec, "progress", json_real(p));
    c->last_saved = p;
    qd_jobs__save(c->J, c->run);
}

static int cancelled(job_ctx *c)
{
    int v = atomic_load(&c->run->cancel);
    if (v == QD_JOB_CANCEL_USER)
        return qd_error_set(QD_EINVAL, QD_EC_NONE, "cancelled");
    if (v == QD_JOB_CANCEL_SHUTDOWN)
        return qd_error_set(QD_EINVAL, QD_EC_NONE, "daemon stopping");
    return 0;
}

/* The engine's cancel hook (qd_quantize_opts.cancel, qd_calib_options.cancel): a cancel of any kind was asked. */
static bool quantize_cancel(void *payload)
{
    job_ctx *c = payload;
    return atomic_load(&c->run->cancel) != 0;
}

/* ---- load ------------------------------------------------------------------------------------------------------- */

static int file_sink(const void *data, size_t len, void *payload)
{
    return fwrite(data, 1, len, payload) == len ? QD_OK : qd_error_set(QD_EIO, QD_EC_OS, "write: %s", strerror(errno));
}

static int stage_load(job_ctx *c)
{
    qd_buf bytes = QD_BUF_INIT(0);
    qd_manifest_info info;
    char ds[QD_DIGEST_STR_LEN + 1];
    json_t *m = NULL, *layers, *pick = NULL;
    const char *fp = NULL, *ext;
    FILE *f;
    int rc;

    qd_digest_format(ds, &c->src_manifest);
    if ((rc = qd_registry_manifest_get(&info, &bytes, c->store, c->repo, ds)) < 0)
        goto out;
    if (!(m = json_loadb(qd_buf_cstr(&bytes), bytes.len, 0, NULL)) || !json_is_array(layers = json_object_get(m, "layers"))) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "the source manifest %s has no layers", ds);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        const char *mt = json_string_value(json_object_get(l, "mediaType"));
        if (mt && !strncmp(mt, "application/vnd.cncf.model.weight", 33)) {
            if (pick) {
                rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID,
                                  "the source has several weight layers; jobs take one-file checkpoints so far");
                goto out;
            }
            pick = l;
        }
    }
    if (!pick && json_array_size(layers) == 1)
        pick = json_array_get(layers, 0);
    if (!pick || qd_digest_parse(&c->src_blob, json_string_value(json_object_get(pick, "digest")) ?
                                                   json_string_value(json_object_get(pick, "digest")) : "") < 0) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "the source manifest %s names no weight layer", ds);
        goto out;
    }
    fp = json_string_value(json_object_get(json_object_get(pick, "annotations"), "org.cncf.model.filepath"));
    ext = fp && strrchr(fp, '.') && strlen(strrchr(fp, '.')) < 16 ? strrchr(fp, '.') : ".bin";
    snprintf(c->src_file, sizeof(c->src_file), "source%s", ext);
    {
        qd_blob_info bi;
        if ((rc = qd_store_stat(c->store, &c->src_blob, &bi)) < 0)
            goto out;
        c->src_size = bi.size;
    }
    /* memory: the source and, for validation, an f32 copy and a quantized copy of it */
    if (c->src_size > (uint64_t)c->J->srv->cfg->job_memory / 3) {
        rc = qd_error_set(QD_EFULL, QD_EC_CONFIG, "the source has %llu bytes: a job needs about 3x that, over "
                          "job-memory (%lld bytes)", (unsigned long long)c->src_size,
                          (long long)c->J->srv->cfg->job_memory);
        goto out;
    }
    snprintf(c->src_path, sizeof(c->src_path), "%s/%s%s", c->J->tmp_dir, c->run->id, ext);
    if (!(f = fopen(c->src_path, "wb"))) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", c->src_path, strerror(errno));
        goto out;
    }
    rc = qd_store_get(c->store, &c->src_blob, 0, UINT64_MAX, file_sink, f);
    if (fclose(f) != 0 && rc == QD_OK)
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", c->src_path, strerror(errno));
out:
    json_decref(m);
    qd_buf_dispose(&bytes);
    return rc;
}

/* ---- calibrate -------------------------------------------------------------------------------------------------- */

/* The source loaded by the runtime (c->ref), once per job. */
static int source_model(job_ctx *c)
{
    return c->ref ? QD_OK : qd_llama_load_model(&c->ref, c->src_path);
}

/* The validation stage's sequences (c->val: 4 of 64 tokens sampled from the source with seed 1), once per job;
 * calibration sets must not share one with them. */
static int validation_set(job_ctx *c)
{
    return c->val ? QD_OK : qd_valset_sample(&c->val, c->ref, 4, 64, 1, (int)c->J->srv->cfg->job_threads);
}

static void on_calib_progress(uint32_t done, uint32_t total, void *payload)
{
    stage_progress(payload, 0.1 + 0.9 * (double)done / (double)(total ? total : 1));
}

static int stage_calibrate(job_ctx *c)
{
    qd_calibset cs;
    qd_actstats *s = NULL;
    qd_calib_options co = QD_CALIB_OPTIONS_INIT;
    int threads = (int)c->J->srv->cfg->job_threads, rc;
    json_t *cal = json_object_get(c->run->rec, "calibration");

    memset(&cs, 0, sizeof(cs));
    if ((rc = source_model(c)) < 0) {
        qd_error_prefix("calibration: the runtime cannot load the source");
        goto out;
    }
    if ((rc = validation_set(c)) < 0 || (rc = qd_calibset_open(&cs, c->cal_spec, c->ref, c->val, threads)) < 0) {
        qd_error_prefix("calibration %s", c->cal_spec);
        goto out;
    }
    stage_progress(c, 0.1);
    if ((rc = cancelled(c)) < 0)
        goto out;
    co.n_threads = threads;
    co.progress = on_calib_progress;
    co.cancel = quantize_cancel;
    co.payload = c;
    if ((rc = qd_actstats_collect(&s, c->ref, cs.set, &co)) < 0 ||
        (rc = qd_imatrix_from_actstats(&c->im, s, cs.name, (int32_t)cs.set->n_seqs)) < 0)
        goto out;
    json_object_set_new(cal, "dataset_digest", json_string(cs.digest));
    json_object_set_new(cal, "samples", json_integer((json_int_t)cs.set->n_seqs));
    json_object_set_new(cal, "tokens", json_integer((json_int_t)cs.set->n_tokens));
out:
    qd_actstats_free(s);
    qd_calibset_free(&cs);
    return rc;
}

/* ---- quantize --------------------------------------------------------------------------------------------------- */

static void on_progress(const qd_quantize_progress *p, void *payload)
{
    job_ctx *c = payload;
    if (p->bytes_in_total)
        stage_progress(c, 0.9 * (double)p->bytes_in_done / (double)p->bytes_in_total);
}

static int stage_quantize(job_ctx *c)
{
    qd_quantize_opts o;
    qd_quantize_stats st;
    qd_recipe_opts ro = QD_RECIPE_OPTS_INIT;
    int64_t chunk = c->J->srv->cfg->job_memory / 16 / 4;
    int fd, rc;
    char lower[32];

    memset(&o, 0, sizeof(o));
    o.ftype = c->ft;
    o.threads = (int)c->J->srv->cfg->job_threads;
    o.recipe = ro;
    o.chunk_elems = (size_t)(chunk > (16 << 20) ? (16 << 20) : chunk);
    o.progress = on_progress;
    o.cancel = quantize_cancel;
    o.payload = c;
    o.imatrix = c->im;
    snprintf(c->out_path, sizeof(c->out_path), "%s/%s.gguf", c->J->tmp_dir, c->run->id);
    if ((rc = qd_quantize_model(&st, c->src_path, c->out_path, &o)) < 0)
        return rc;
    if ((rc = cancelled(c)) < 0)
        return rc;
    if ((fd = open(c->out_path, O_RDONLY | O_CLOEXEC)) < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", c->out_path, strerror(errno));
    rc = qd_store_put_fd(c->store, fd, NULL, &c->var_blob);
    close(fd);
    if (rc < 0)
        return rc;
    c->var_size = st.file_bytes;
    snprintf(c->kernel, sizeof(c->kernel), "%s", st.kernel);
    snprintf(lower, sizeof(lower), "%s", c->recipe);
    for (char *q = lower; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    snprintf(c->var_file, sizeof(c->var_file), "model-%s.gguf", lower);
    {
        json_t *q = json_pack("{s:I,s:I,s:I,s:f}", "file_bytes", (json_int_t)st.file_bytes, "tensors",
                              (json_int_t)st.n_tensors, "quantized", (json_int_t)st.n_quantized, "seconds", st.seconds);
        json_object_set_new(c->run->rec, "quantize", q ? q : json_null());
    }
    return QD_OK;
}

/* ---- validate --------------------------------------------------------------------------------------------------- */

/*
 * The validation stage, behind one call: the source and the published GGUF file itself are loaded by the runtime's
 * model adapter (qd_llama_load_model: GGUF of any type run as stored, safetensors, llama2.c) and compared, so what is
 * validated is exactly what gets published. A source the runtime cannot load gets no verdict: the job fails and
 * nothing is published.
 */
#define PATH_FILE "gguf: the published GGUF file loaded and compared with the source"

static int job_validate(job_ctx *c, json_t **validation, json_t **report_out, bool *pass, const char **path_note)
{
    qd_llama_model *var = NULL;
    qd_validation_report *rep = NULL;
    qd_validate_options vo = QD_VALIDATE_OPTIONS_INIT;
    void *ser = NULL;
    size_t ser_len = 0;
    qd_digest set_d;
    char ds[QD_DIGEST_STR_LEN + 1], sd[QD_DIGEST_STR_LEN + 1], *rj = NULL;
    int rc;

    *validation = *report_out = NULL;
    *path_note = PATH_FILE;
    if ((rc = source_model(c)) < 0) {
        qd_error_prefix("validation unavailable: the runtime cannot load the source; no verdict, nothing published");
        goto out;
    }
    if ((rc = qd_llama_load_model(&var, c->out_path)) < 0)
        goto out;
    stage_progress(c, 0.2);
    if ((rc = cancelled(c)) < 0)
        goto out;
    if ((rc = validation_set(c)) < 0)
        goto out;
    if ((rc = qd_valset_serialize(&ser, &ser_len, c->val)) < 0)
        goto out;
    qd_sha256_buf(&set_d, ser, ser_len);
    stage_progress(c, 0.4);
    vo.n_threads = (int)c->J->srv->cfg->job_threads;
    if ((rc = qd_validate_run(&rep, c->ref, var, c->val, &vo)) < 0)
        goto out;
    if ((rc = qd_validation_judge(rep, &c->J->policy, NULL)) < 0)
        goto out;
    *pass = rep->pass;
    /* the predicate's validation object, as `quant validate --predicate` writes it */
    {
        char *vj = NULL;
        if ((rc = qd_validation_predicate_json(&vj, rep, qd_digest_format(ds, &c->src_manifest),
                                               qd_digest_format(sd, &set_d))) < 0)
            goto out;
        *validation = json_loads(vj, 0, NULL);
        qd_free(vj);
    }
    if ((rc = qd_validation_report_json(&rj, rep, NULL)) == QD_OK)
        *report_out = json_loads(rj, 0, NULL);
    qd_free(rj);
    rc = *validation ? QD_OK : QD_ENOMEM;
out:
    qd_validation_report_free(rep);
    qd_free(ser);
    qd_llama_free(var);
    return rc;
}

/* ---- sign ------------------------------------------------------------------------------------------------------- */

int qd_jobs__recipe_facts(json_t **out, const char *recipe)
{
    qd_ftype ft;
    const qd_type_traits *tr;
    const char *method = "rtn";
    int bits = 0;
    bool sym = true;
    if (qd_recipe_from_name(recipe, &ft) < 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown recipe %s", recipe);
    tr = qd_type_traits_get(qd_recipe_base_type(ft));
    if (strstr(recipe, "_K"))
        method = "k-quant";
    if (!strcmp(recipe, "F32"))
        bits = 32;
    else if (!strcmp(recipe, "F16") || !strcmp(recipe, "BF16"))
        bits = 16;
    else
        for (const char *p = recipe; *p; p++)
            if (*p >= '1' && *p <= '9') {
                bits = *p - '0';
                break;
            }
    /* asymmetric: the _1 types and the K-quants with block minimums */
    if (strstr(recipe, "_1") || !strncmp(recipe, "Q2_K", 4) || !strncmp(recipe, "Q4_K", 4) ||
        !strncmp(recipe, "Q5_K", 4))
        sym = false;
    *out = json_pack("{s:s,s:s,s:i,s:I,s:b,s:i}", "method", method, "format", recipe, "weight_bits", bits ? bits : 16,
                     "group_size", (json_int_t)(tr && tr->block_size > 0 ? tr->block_size : 1), "symmetric", sym,
                     "seed", 0);
    return *out ? QD_OK : QD_ENOMEM;
}

static int stage_sign(job_ctx *c, json_t *validation, qd_buf *bundle, json_t **predicate_out)
{
    json_t *rec = c->run->rec, *pred, *recipe = NULL, *cal;
    const char *k = c->kernel[0] ? c->kernel : qd_kernels_name(qd_kernels_current()), *plus = strchr(k, '+');
    char now[32], build[64], kbuf[64];
    const char *vs = qd_version_string(), *paren = strchr(vs, '(');
    qd_subject subj;
    qd_buf stmt = QD_BUF_INIT(0);
    qd_envelope *env = NULL;
    char *pj;
    int rc;

    if ((rc = qd_jobs__recipe_facts(&recipe, c->recipe)) < 0)
        return rc;
    if (c->im) /* importance-weighted: the calibrate stage's matrix */
        json_object_set_new(recipe, "method", json_string("imatrix"));
    /* the predicate's calibration: the record's, less the dataset spec (the digest, samples and tokens say it) */
    if (!(cal = json_deep_copy(json_object_get(rec, "calibration")))) {
        json_decref(recipe);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "cannot build the predicate");
    }
    json_object_del(cal, "dataset");
    if (paren) {
        snprintf(build, sizeof(build), "%s", paren + 1);
        build[strcspn(build, ")")] = 0;
    } else {
        snprintf(build, sizeof(build), "unknown");
    }
    /* the predicate names the scalar reference "scalar" (also after a GPU's name: "cuda-sm90+scalar") */
    if (!strcmp(k, "ref"))
        k = "scalar";
    else if (plus && !strcmp(plus + 1, "ref")) {
        snprintf(kbuf, sizeof(kbuf), "%.*s+scalar", (int)(plus - k), k);
        k = kbuf;
    }
    qd_jobs__now_text(now);
    pred = json_pack("{s:{s:s,s:s},s:o,s:o,s:{s:s,s:s,s:s,s:s},s:O,s:O,s:s,s:{s:s,s:s}}", "source", "digest",
                     json_string_value(json_object_get(json_object_get(rec, "source"), "digest")), "name",
                     json_string_value(json_object_get(json_object_get(rec, "source"), "name")), "recipe", recipe,
                     "calibration", cal, "converter", "name", "quantd", "version",
                     QD_VERSION, "build", build, "kernel", k, "target_hardware",
                     json_object_get(rec, "target_hardware"), "validation", validation, "created_at", now, "builder",
                     "id", c->J->builder_id, "key_id", c->J->key_id);
    if (!pred)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "cannot build the predicate");
    subj.name = c->var_file;
    subj.digest = c->var_blob;
    if (!(pj = json_dumps(pred, JSON_COMPACT))) {
        json_decref(pred);
        return QD_ENOMEM;
    }
    if ((rc = qd_statement_build(&stmt, &subj, 1, QD_PREDICATE_VARIANT, pj)) == QD_OK &&
        (rc = qd_envelope_new(&env, QD_INTOTO_PAYLOAD_TYPE, stmt.ptr, stmt.len)) == QD_OK &&
        (rc = qd_envelope_sign(env, c->J->key)) == QD_OK)
        rc = qd_envelope_write_bundle(bundle, env);
    free(pj); /* jansson */
    qd_envelope_free(env);
    qd_buf_dispose(&stmt);
    if (rc < 0)
        json_decref(pred);
    else
        *predicate_out = pred;
    return rc;
}

/* ---- publish ---------------------------------------------------------------------------------------------------- */

static json_t *descriptor(const char *mt, const qd_digest *d, uint64_t size)
{
    char ds[QD_DIGEST_STR_LEN + 1];
    return json_pack("{s:s,s:s,s:I}", "mediaType", mt, "digest", qd_digest_format(ds, d), "size", (json_int_t)size);
}

static int put_json(qd_store *s, json_t *o, qd_digest *d, uint64_t *size, char **text_out)
{
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    int rc;
    if (!text)
        return QD_ENOMEM;
    *size = strlen(text);
    rc = qd_store_put_buf(s, text, *size, NULL, d);
    if (rc == QD_OK && text_out)
        *text_out = text;
    else
        free(text); /* jansson */
    return rc;
}

static int stage_publish(job_ctx *c, const qd_buf *bundle, bool pass, const char *path_note)
{
    qd_store *s = c->store;
    json_t *rec = c->run->rec, *cfg, *man, *bman, *layer, *ann;
    qd_digest cfg_d, empty_d, bundle_d, blobs[4];
    uint64_t cfg_n, man_n = 0, bman_n = 0;
    char *man_text = NULL, *bman_text = NULL, *job_text = NULL, tag[64], now[32], ds[QD_DIGEST_STR_LEN + 1];
    qd_manifest_desc md, bd;
    qd_publish_item items[2];
    qd_manifest_info src_info;
    qd_digest var_blobs[2], bun_blobs[2];
    qd_audit_entry *audit = NULL;
    int rc;

    snprintf(tag, sizeof(tag), "%s", c->var_file + strlen("model-"));
    tag[strlen(tag) - strlen(".gguf")] = 0;
    qd_digest_format(ds, &c->src_manifest);
    if ((rc = qd_registry_manifest_get(&src_info, NULL, s, c->repo, ds)) < 0)
        return rc;
    qd_jobs__now_text(now);
    cfg = json_pack("{s:{s:s,s:[s]},s:{s:s,s:s,s:s},s:{s:s,s:[s]}}", "descriptor", "createdAt", now, "authors",
                    "quantd", "config", "format", "gguf", "precision", c->recipe, "quantization", c->recipe, "modelfs",
                    "type", "layers", "diffIds", qd_digest_format(ds, &c->var_blob));
    rc = cfg ? put_json(s, cfg, &cfg_d, &cfg_n, NULL) : QD_ENOMEM;
    json_decref(cfg);
    if (rc < 0)
        return rc;
    if ((rc = qd_store_put_buf(s, "{}", 2, NULL, &empty_d)) < 0 ||
        (rc = qd_store_put_buf(s, bundle->ptr, bundle->len, NULL, &bundle_d)) < 0)
        return rc;

    layer = descriptor(MT_WEIGHT_RAW, &c->var_blob, c->var_size);
    json_object_set_new(layer, "annotations", json_pack("{s:s}", "org.cncf.model.filepath", c->var_file));
    ann = json_pack("{s:s,s:s,s:s,s:s,s:s}", "org.opencontainers.image.created", now, "dev.quantd.recipe", c->recipe,
                    "dev.quantd.job", c->run->id, "dev.quantd.validation.verdict", pass ? "pass" : "fail",
                    "dev.quantd.validation.path", path_note);
    man = json_pack("{s:i,s:s,s:s,s:o,s:[o],s:o,s:o}", "schemaVersion", 2, "mediaType", MT_MANIFEST, "artifactType",
                    MT_MODEL_ARTIFACT, "config", descriptor(MT_MODEL_CONFIG, &cfg_d, cfg_n), "layers", layer,
                    "subject", descriptor(src_info.media_type, &src_info.digest, src_info.size), "annotations", ann);
    rc = man ? put_json(s, man, &items[0].digest, &man_n, &man_text) : QD_ENOMEM;
    json_decref(man);
    if (rc < 0)
        goto out;
    bman = json_pack("{s:i,s:s,s:s,s:o,s:[o],s:o,s:{s:s}}", "schemaVersion", 2, "mediaType", MT_MANIFEST,
                     "artifactType", QD_BUNDLE_MEDIA_TYPE, "config", descriptor(MT_EMPTY, &empty_d, 2), "layers",
                     descriptor(QD_BUNDLE_MEDIA_TYPE, &bundle_d, bundle->len), "subject",
                     descriptor(MT_MANIFEST, &items[0].digest, man_n), "annotations",
                     "org.opencontainers.image.created", now);
    rc = bman ? put_json(s, bman, &items[1].digest, &bman_n, &bman_text) : QD_ENOMEM;
    json_decref(bman);
    if (rc < 0)
        goto out;

    var_blobs[0] = cfg_d;
    var_blobs[1] = c->var_blob;
    bun_blobs[0] = empty_d;
    bun_blobs[1] = bundle_d;
    memset(&md, 0, sizeof(md));
    md.data = man_text;
    md.len = man_n;
    md.media_type = MT_MANIFEST;
    md.artifact_type = MT_MODEL_ARTIFACT;
    md.subject = &src_info.digest;
    md.blobs = var_blobs;
    md.n_blobs = 2;
    bd = md;
    bd.data = bman_text;
    bd.len = bman_n;
    bd.artifact_type = QD_BUNDLE_MEDIA_TYPE;
    bd.subject = &items[0].digest;
    bd.blobs = bun_blobs;
    /* the variant is indexed for audit in the publish transaction, from the very bundle published */
    if (!(audit = qd_malloc(sizeof(*audit)))) {
        rc = QD_ENOMEM;
        goto out;
    }
    if ((rc = qd_audit_entry_from_bundle(audit, bundle->ptr, bundle->len)) < 0)
        goto out;
    bd.audit = audit;
    items[0].m = &md;
    items[0].tag = pass ? tag : NULL;
    items[1].m = &bd;
    items[1].tag = NULL;
    blobs[0] = c->var_blob;
    blobs[1] = cfg_d;
    blobs[2] = empty_d;
    blobs[3] = bundle_d;

    /* the record as it will read once published */
    {
        char v[QD_DIGEST_STR_LEN + 1], b[QD_DIGEST_STR_LEN + 1], w[QD_DIGEST_STR_LEN + 1], tagged[QD_REPO_MAX + 80];
        snprintf(tagged, sizeof(tagged), "%s:%s", c->repo, tag);
        json_object_set_new(rec, "result",
                            json_pack("{s:s,s:s,s:s,s:s?,s:s,s:s}", "manifest", qd_digest_format(v, &items[0].digest),
                                      "bundle_manifest", qd_digest_format(b, &items[1].digest), "blob",
                                      qd_digest_format(w, &c->var_blob), "tag", pass ? tagged : NULL, "verdict",
                                      pass ? "pass" : "fail", "key_id", c->J->key_id));
        json_object_set_new(rec, "state", json_string("done"));
        json_object_set_new(rec, "progress", json_real(1.0));
        json_object_set_new(rec, "finished", json_string(now));
        stage_end(c);
    }
    if (!(job_text = json_dumps(rec, JSON_COMPACT))) {
        rc = QD_ENOMEM;
        goto out;
    }
    {
        /* the signed log (dlog.c): the bundle of the variant, and its tag when it passed, around the one store
         * transaction */
        qd_dlog_item li[2];
        size_t nl = 0;
        memset(li, 0, sizeof(li));
        li[nl].kind = QD_REPLOG_PUBLISH;
        snprintf(li[nl].name, sizeof(li[nl].name), "%s", c->repo);
        li[nl].manifest = items[0].digest;
        li[nl].bundle = bundle_d;
        nl++;
        if (pass) {
            li[nl].kind = QD_REPLOG_TAG;
            snprintf(li[nl].name, sizeof(li[nl].name), "%s:%s", c->repo, tag);
            li[nl].manifest = items[0].digest;
            nl++;
        }
        if ((rc = qd_dlog_begin(c->J->srv->dlog, li, nl)) < 0)
            goto out;
        rc = qd_registry_publish(s, c->repo, blobs, 4, items, 2, &items[0].digest, &c->src_manifest, c->run->id,
                                 job_text);
        {
            int lrc = qd_dlog_end(c->J->srv->dlog, li, nl, rc);
            if (rc == QD_OK && lrc < 0)
                rc = lrc; /* published in the store; the log append is retried (dlog.c) and the job says why */
        }
    }
out:
    qd_free(audit);
    free(man_text);  /* jansson */
    free(bman_text); /* jansson */
    free(job_text);  /* jansson */
    return rc;
}

/* ---- the job ---------------------------------------------------------------------------------------------------- */

static void finish_failed(job_ctx *c, int rc, const char *msg)
{
    char now[32];
    bool user_cancel = atomic_load(&c->run->cancel) == QD_JOB_CANCEL_USER;
    qd_jobs__now_text(now);
    json_object_set_new(c->run->rec, "state", json_string(user_cancel ? "cancelled" : "failed"));
    json_object_set_new(c->run->rec, "finished", json_string(now));
    json_object_set_new(c->run->rec, "error", user_cancel ? json_null() : json_pack("{s:i,s:s}", "code", rc, "message", msg));
    qd_jobs__save(c->J, c->run);
    qd_log(QD_LOG_INFO, "jobs", "req=0 job=%s %s stage=%s%s%s", c->run->id, user_cancel ? "cancelled" : "failed",
           STAGES[c->stage].name, user_cancel ? "" : " error=", user_cancel ? "" : msg);
}

void qd_jobs__execute(qd_jobs *J, qd_job_run *run)
{
    job_ctx c;
    json_t *rec = run->rec, *src = json_object_get(rec, "source"), *validation = NULL, *report = NULL,
           *predicate = NULL;
    qd_buf bundle = QD_BUF_INIT(0);
    bool pass = false;
    const char *path_note = "";
    int rc;

    memset(&c, 0, sizeof(c));
    c.J = J;
    c.run = run;
    c.store = J->srv->store;
    c.repo = json_string_value(json_object_get(src, "repo"));
    c.recipe = json_string_value(json_object_get(rec, "recipe"));
    json_object_set_new(rec, "error", json_null());
    if (!c.repo || !c.recipe || qd_recipe_from_name(c.recipe, &c.ft) < 0 ||
        qd_digest_parse(&c.src_manifest, json_string_value(json_object_get(src, "digest")) ?
                                             json_string_value(json_object_get(src, "digest")) : "") < 0) {
        finish_failed(&c, QD_ECORRUPT, "the job record is malformed");
        return;
    }
    c.cal_spec = json_string_value(json_object_get(json_object_get(rec, "calibration"), "dataset"));
    stage_begin(&c, ST_LOAD);
    if ((rc = stage_load(&c)) < 0 || (rc = cancelled(&c)) < 0)
        goto fail;
    stage_end(&c);
    if (c.cal_spec) {
        stage_begin(&c, ST_CALIBRATE);
        if ((rc = stage_calibrate(&c)) < 0 || (rc = cancelled(&c)) < 0)
            goto fail;
        stage_end(&c);
    }
    stage_begin(&c, ST_QUANTIZE);
    if ((rc = stage_quantize(&c)) < 0 || (rc = cancelled(&c)) < 0)
        goto fail;
    stage_end(&c);
    stage_begin(&c, ST_VALIDATE);
    if ((rc = job_validate(&c, &validation, &report, &pass, &path_note)) < 0 || (rc = cancelled(&c)) < 0)
        goto fail;
    json_object_set_new(rec, "validation", json_pack("{s:s,s:s,s:O?}", "verdict", pass ? "pass" : "fail", "path",
                                                     path_note, "report", report));
    stage_end(&c);
    stage_begin(&c, ST_SIGN);
    if ((rc = stage_sign(&c, validation, &bundle, &predicate)) < 0 || (rc = cancelled(&c)) < 0)
        goto fail;
    stage_end(&c);
    stage_begin(&c, ST_PUBLISH);
    if ((rc = stage_publish(&c, &bundle, pass, path_note)) < 0)
        goto fail;
    qd_log(QD_LOG_INFO, "jobs", "req=0 job=%s done verdict=%s tag=%s", run->id, pass ? "pass" : "fail",
           pass ? json_string_value(json_object_get(json_object_get(rec, "result"), "tag")) : "(none)");
    goto out;
fail:
    if (atomic_load(&run->cancel) == QD_JOB_CANCEL_SHUTDOWN) {
        /* left "running": the next start queues it again */
        qd_log(QD_LOG_INFO, "jobs", "req=0 job=%s interrupted by shutdown stage=%s", run->id, STAGES[c.stage].name);
    } else {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        finish_failed(&c, rc, msg);
    }
out:
    json_decref(validation);
    json_decref(report);
    json_decref(predicate);
    qd_buf_dispose(&bundle);
    qd_imatrix_free(c.im);
    qd_valset_free(c.val);
    qd_llama_free(c.ref);
    if (c.src_path[0])
        unlink(c.src_path);
    if (c.out_path[0])
        unlink(c.out_path);
}
