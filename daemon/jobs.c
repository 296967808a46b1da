/*
 * jobs.c - quantize on demand: /v1/jobs, the persistent queue and the runner threads.
 *
 *   POST   /v1/jobs              {"source":"org/m:tag"|"org/m@sha256:..","recipe":"Q4_K_M",
 *                                 "calibration":{"class":"none"}|"none","target_hardware":["x86_64-avx2"]|"..."}
 *                                 -> 202 {job} (new) or 200 {job, "deduplicated":true} (an identical job exists)
 *   GET    /v1/jobs              -> 200 [{job}...] (the jobs of repositories the caller may quantize)
 *   GET    /v1/jobs/ID           -> 200 {job}
 *   DELETE /v1/jobs/ID           -> 200 {job} (queued: cancelled now) or 202 (running: cancelled at its next check)
 *   GET    /v1/jobs/ID/events    -> text/event-stream: "event: job" with the record whenever it changes, then
 *                                   "event: end" once the job is done, failed or cancelled
 * All need the quantize scope on the source's repository.
 *
 * Threads: HTTP on the loop; writes (submit, cancel) on the pool; jobs on max-jobs runner threads of their own
 * (a job takes seconds to hours and must not hold a pool worker). Claims and cancels hold J->mu, so a job is
 * never both claimed and cancelled.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs_int.h"
#include "qd/gptq.h"
#include "qd/recipe.h"
#include "qd/version.h"

/* ---- records ------------------------------------------------------------------------------------------------ */

void qd_jobs__now_text(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *rec_state(json_t *rec) { return json_string_value(json_object_get(rec, "state")); }

static bool terminal(const char *state)
{
    return state && (!strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled"));
}

static int save_rec(qd_store *s, const char *id, json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT);
    int rc;
    if (!text)
        return QD_ENOMEM;
    rc = qd_job_put(s, id, text);
    free(text); /* jansson */
    return rc;
}

int qd_jobs__save(qd_jobs *J, qd_job_run *run) { return save_rec(J->srv->store, run->id, run->rec); }

static json_t *load_rec(qd_store *s, const char *id)
{
    qd_buf b = QD_BUF_INIT(0);
    json_t *rec = NULL;
    if (qd_job_get(&b, s, id) == QD_OK)
        rec = json_loadb(qd_buf_cstr(&b), b.len, 0, NULL);
    qd_buf_dispose(&b);
    return rec;
}

/* ---- claiming and recovery ---------------------------------------------------------------------------------- */

typedef struct scan_ctx {
    char best[QD_JOB_ID_LEN + 1];
    int64_t best_seq;
    uint64_t max_seq;
    int recovered;
    qd_store *store;
    bool recover;
} scan_ctx;

static int scan_one(const char *id, const char *json, size_t len, void *payload)
{
    scan_ctx *c = payload;
    json_t *rec = json_loadb(json, len, 0, NULL);
    const char *st;
    int64_t seq;
    if (!rec)
        return 0; /* a record we cannot read is left alone */
    st = rec_state(rec);
    seq = json_integer_value(json_object_get(rec, "seq"));
    if ((uint64_t)seq >= c->max_seq)
        c->max_seq = (uint64_t)seq + 1;
    if (st && !strcmp(st, "queued") && (c->best_seq < 0 || seq < c->best_seq)) {
        c->best_seq = seq;
        memcpy(c->best, id, QD_JOB_ID_LEN + 1);
    }
    json_decref(rec);
    return 0;
}

typedef struct recover_item {
    char id[QD_JOB_ID_LEN + 1];
    struct recover_item *next;
} recover_item;

static int find_running(const char *id, const char *json, size_t len, void *payload)
{
    recover_item **list = payload;
    json_t *rec = json_loadb(json, len, 0, NULL);
    const char *st = rec ? rec_state(rec) : NULL;
    if (st && !strcmp(st, "running")) {
        recover_item *it = qd_calloc(1, sizeof(*it));
        if (it) {
            memcpy(it->id, id, QD_JOB_ID_LEN + 1);
            it->next = *list;
            *list = it;
        }
    }
    json_decref(rec);
    return 0;
}

/* A job found running at start was interrupted with the daemon: queue it again (attempt + 1). */
static int recover(qd_jobs *J)
{
    recover_item *list = NULL;
    int rc = qd_job_list(J->srv->store, find_running, &list), n = 0;
    while (list) {
        recover_item *it = list;
        json_t *rec = load_rec(J->srv->store, it->id);
        list = it->next;
        if (rec) {
            json_object_set_new(rec, "state", json_string("queued"));
            json_object_set_new(rec, "progress", json_real(0));
            json_object_set_new(rec, "attempt", json_integer(json_integer_value(json_object_get(rec, "attempt")) + 1));
            if (rc == QD_OK && (rc = save_rec(J->srv->store, it->id, rec)) == QD_OK) {
                n++;
                qd_log(QD_LOG_INFO, "jobs", "req=0 job=%s requeued after a restart", it->id);
            }
            json_decref(rec);
        }
        qd_free(it);
    }
    return rc < 0 ? rc : n;
}

/* Under J->mu: the oldest queued job becomes running. */
static qd_job_run *claim(qd_jobs *J)
{
    scan_ctx c = {.best_seq = -1};
    qd_job_run *run;
    char now[32];
    if (qd_job_list(J->srv->store, scan_one, &c) < 0 || c.best_seq < 0)
        return NULL;
    if (!(run = qd_calloc(1, sizeof(*run))))
        return NULL;
    memcpy(run->id, c.best, sizeof(run->id));
    if (!(run->rec = load_rec(J->srv->store, run->id))) {
        qd_free(run);
        return NULL;
    }
    qd_jobs__now_text(now);
    json_object_set_new(run->rec, "state", json_string("running"));
    json_object_set_new(run->rec, "started", json_string(now));
    if (qd_jobs__save(J, run) < 0) {
        qd_log(QD_LOG_ERROR, "jobs", "req=0 job=%s cannot be claimed: %s", run->id, qd_error_last()->message);
        json_decref(run->rec);
        qd_free(run);
        return NULL;
    }
    run->next = J->running;
    J->running = run;
    return run;
}

static const char *const STAGE_NAMES[QD_JOB_STAGES] = {"load",     "calibrate", "quantize",
                                                       "validate", "sign",      "publish"};

/* Under J->mu: metrics of an ended run. */
static void count_end(qd_jobs *J, json_t *rec)
{
    const char *st = rec_state(rec), *v;
    json_t *t = json_object_get(rec, "timings");
    if (!terminal(st))
        return; /* interrupted by shutdown */
    for (int i = 0; i < QD_JOB_STAGES; i++) {
        json_t *x = json_object_get(t, STAGE_NAMES[i]);
        if (json_is_number(x)) {
            J->stage_seconds[i] += json_number_value(x);
            J->stage_count[i]++;
        }
    }
    J->ended[!strcmp(st, "done") ? 0 : !strcmp(st, "failed") ? 1 : 2]++;
    v = json_string_value(json_object_get(json_object_get(rec, "validation"), "verdict"));
    if (v)
        J->verdicts[strcmp(v, "pass") ? 1 : 0]++;
}

typedef struct depth_ctx {
    uint64_t queued, running;
} depth_ctx;

static int count_state(const char *id, const char *json, size_t len, void *payload)
{
    depth_ctx *c = payload;
    (void)id;
    (void)len;
    /* records are compact JSON written by this file: the state is a plain field */
    if (strstr(json, "\"state\":\"queued\""))
        c->queued++;
    else if (strstr(json, "\"state\":\"running\""))
        c->running++;
    return 0;
}

void qd_jobs_metrics(qd_server *srv, struct evbuffer *out)
{
    qd_jobs *J = srv->jobs;
    depth_ctx d = {0, 0};
    if (!J)
        return;
    qd_job_list(srv->store, count_state, &d);
    evbuffer_add_printf(out, "# HELP quantd_jobs_queued Quantize jobs waiting for a runner.\n"
                             "# TYPE quantd_jobs_queued gauge\nquantd_jobs_queued %llu\n"
                             "# HELP quantd_jobs_running Quantize jobs running.\n"
                             "# TYPE quantd_jobs_running gauge\nquantd_jobs_running %llu\n",
                        (unsigned long long)d.queued, (unsigned long long)d.running);
    pthread_mutex_lock(&J->mu);
    evbuffer_add_printf(out, "# HELP quantd_job_stage_seconds_total Time jobs spent per stage (ended jobs).\n"
                             "# TYPE quantd_job_stage_seconds_total counter\n");
    for (int i = 0; i < QD_JOB_STAGES; i++)
        evbuffer_add_printf(out, "quantd_job_stage_seconds_total{stage=\"%s\"} %.6f\n", STAGE_NAMES[i],
                            J->stage_seconds[i]);
    evbuffer_add_printf(out, "# HELP quantd_job_stage_runs_total Stages completed by ended jobs.\n"
                             "# TYPE quantd_job_stage_runs_total counter\n");
    for (int i = 0; i < QD_JOB_STAGES; i++)
        evbuffer_add_printf(out, "quantd_job_stage_runs_total{stage=\"%s\"} %llu\n", STAGE_NAMES[i],
                            (unsigned long long)J->stage_count[i]);
    evbuffer_add_printf(out,
                        "# HELP quantd_jobs_ended_total Jobs ended by this daemon, by state.\n"
                        "# TYPE quantd_jobs_ended_total counter\n"
                        "quantd_jobs_ended_total{state=\"done\"} %llu\nquantd_jobs_ended_total{state=\"failed\"} %llu\n"
                        "quantd_jobs_ended_total{state=\"cancelled\"} %llu\n"
                        "# HELP quantd_validation_verdicts_total Validation verdicts of jobs.\n"
                        "# TYPE quantd_validation_verdicts_total counter\n"
                        "quantd_validation_verdicts_total{verdict=\"pass\"} %llu\n"
                        "quantd_validation_verdicts_total{verdict=\"fail\"} %llu\n",
                        (unsigned long long)J->ended[0], (unsigned long long)J->ended[1],
                        (unsigned long long)J->ended[2], (unsigned long long)J->verdicts[0],
                        (unsigned long long)J->verdicts[1]);
    pthread_mutex_unlock(&J->mu);
}

static void *runner(void *arg)
{
    qd_jobs *J = arg;
    for (;;) {
        qd_job_run *run = NULL;
        pthread_mutex_lock(&J->mu);
        while (!J->stop && !(run = claim(J)))
            pthread_cond_wait(&J->cv, &J->mu);
        pthread_mutex_unlock(&J->mu);
        if (!run)
            return NULL;
        qd_log(QD_LOG_INFO, "jobs", "req=0 job=%s started", run->id);
        qd_jobs__execute(J, run);
        pthread_mutex_lock(&J->mu);
        count_end(J, run->rec);
        for (qd_job_run **pp = &J->running; *pp; pp = &(*pp)->next)
            if (*pp == run) {
                *pp = run->next;
                break;
            }
        pthread_mutex_unlock(&J->mu);
        json_decref(run->rec);
        qd_free(run);
    }
}

static void wake(qd_jobs *J)
{
    pthread_mutex_lock(&J->mu);
    pthread_cond_broadcast(&J->cv);
    pthread_mutex_unlock(&J->mu);
}

/* ---- start and stop ----------------------------------------------------------------------------------------- */

static int load_key(qd_jobs *J)
{
    if (!(J->key = J->srv->key))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "no daemon signing key");
    snprintf(J->key_id, sizeof(J->key_id), "%s", qd_key_id(J->key));
    return QD_OK;
}

static int load_policy(qd_jobs *J)
{
    const char *p = J->srv->cfg->validation_policy;
    FILE *f;
    char *text;
    long n;
    int rc;
    if (!p[0]) {
        qd_validation_policy_default(&J->policy);
        return QD_OK;
    }
    if (!(f = fopen(p, "rb")))
        return qd_error_set(QD_ENOTFOUND, QD_EC_CONFIG, "validation-policy %s: %s", p, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    if (n < 0 || n > (1 << 20) || !(text = qd_malloc((size_t)n + 1))) {
        fclose(f);
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "validation-policy %s: unreadable or over 1 MiB", p);
    }
    if (fread(text, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        qd_free(text);
        return qd_error_set(QD_EIO, QD_EC_CONFIG, "validation-policy %s: short read", p);
    }
    fclose(f);
    text[n] = 0;
    rc = qd_validation_policy_parse(&J->policy, text, (size_t)n);
    qd_free(text);
    return rc;
}

/* Temp files of jobs a killed daemon left behind (no job runs yet, so none is in use). */
static void clean_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4352];
    if (!d)
        return;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

int qd_jobs_start(qd_server *srv)
{
    qd_jobs *J = qd_calloc(1, sizeof(*J));
    scan_ctx c = {.best_seq = -1};
    size_t n;
    int rc;
    if (!J)
        return QD_ENOMEM;
    pthread_mutex_init(&J->mu, NULL);
    pthread_cond_init(&J->cv, NULL);
    J->srv = srv;
    srv->jobs = J;
    if ((rc = load_key(J)) < 0 || (rc = load_policy(J)) < 0)
        return rc;
    if (srv->cfg->builder_id[0]) {
        snprintf(J->builder_id, sizeof(J->builder_id), "%s", srv->cfg->builder_id);
    } else {
        char host[200] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(J->builder_id, sizeof(J->builder_id), "quantd@%s", host);
    }
    n = strlen(srv->cfg->store) + 16;
    if (!(J->tmp_dir = qd_malloc(n)))
        return QD_ENOMEM;
    snprintf(J->tmp_dir, n, "%s/jobs-tmp", srv->cfg->store);
    if (mkdir(J->tmp_dir, 0700) < 0 && errno != EEXIST)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", J->tmp_dir, strerror(errno));
    clean_tmp(J->tmp_dir);
    if ((rc = recover(J)) < 0)
        return rc;
    if ((rc = qd_job_list(srv->store, scan_one, &c)) < 0)
        return rc;
    J->seq = c.max_seq;
    if (!(J->threads = qd_calloc((size_t)srv->cfg->max_jobs + 1, sizeof(pthread_t))))
        return QD_ENOMEM;
    for (int i = 0; i < (int)srv->cfg->max_jobs; i++) {
        if (pthread_create(&J->threads[i], NULL, runner, J) != 0)
            return qd_error_set(QD_EIO, QD_EC_OS, "cannot start a job runner");
        J->n_threads++;
    }
    qd_log(QD_LOG_INFO, "jobs", "req=0 job runners=%d job-memory=%lld recovered=%d", J->n_threads,
           (long long)srv->cfg->job_memory, rc);
    return QD_OK;
}

void qd_jobs_stop(qd_server *srv)
{
    qd_jobs *J = srv->jobs;
    if (!J)
        return;
    pthread_mutex_lock(&J->mu);
    J->stop = true;
    for (qd_job_run *run = J->running; run; run = run->next)
        atomic_store(&run->cancel, QD_JOB_CANCEL_SHUTDOWN);
    pthread_cond_broadcast(&J->cv);
    pthread_mutex_unlock(&J->mu);
    for (int i = 0; i < J->n_threads; i++)
        pthread_join(J->threads[i], NULL);
    J->key = NULL; /* borrowed from the server */
    qd_free(J->threads);
    qd_free(J->tmp_dir);
    pthread_mutex_destroy(&J->mu);
    pthread_cond_destroy(&J->cv);
    qd_free(J);
    srv->jobs = NULL;
}

/* ---- HTTP ----------------------------------------------------------------------------------------------------- */

static void reply_error(qd_req *r, int status, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:[{s:s,s:s,s:{}}]}", "errors", "code", code, "message", msg, "detail");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    qd_reply_json(r, status, text ? text : "{}");
    free(text); /* jansson */
}

static void reply_rec(qd_req *r, int status, json_t *rec)
{
    char *text = json_dumps(rec, JSON_COMPACT);
    qd_reply_json(r, status, text ? text : "{}");
    free(text); /* jansson */
}

/* "org/m:tag", "org/m@sha256:..", "org/m" (tag latest) -> repo and ref. */
static int split_source(const char *src, char *repo, size_t repo_cap, char *ref, size_t ref_cap)
{
    const char *at = strchr(src, '@'), *slash = strrchr(src, '/'), *colon;
    size_t n;
    if (at) {
        n = (size_t)(at - src);
        snprintf(ref, ref_cap, "%s", at + 1);
    } else {
        colon = strrchr(src, ':');
        if (colon && (!slash || colon > slash)) {
            n = (size_t)(colon - src);
            snprintf(ref, ref_cap, "%s", colon + 1);
        } else {
            n = strlen(src);
            snprintf(ref, ref_cap, "latest");
        }
    }
    if (n == 0 || n >= repo_cap)
        return QD_EINVAL;
    memcpy(repo, src, n);
    repo[n] = 0;
    if (!qd_registry_name_valid(repo))
        return QD_EINVAL;
    if (at ? strncmp(ref, "sha256:", 7) != 0 : !qd_registry_tag_valid(ref))
        return QD_EINVAL;
    return QD_OK;
}

static bool hw_valid(const char *s)
{
    /* ^[a-z0-9_]+(-[a-z0-9_]+)*$ */
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/*
 * The "calibration" of a job request: absent, null, "none" or {"class": "none"}: none. {"dataset":
 * "sample:N:LEN:SEED"} (N 1..256, LEN 2..1024): an importance matrix collected on N sequences of LEN tokens that
 * the daemon samples from the source with SEED (the only data it has: it takes no uploads of calibration sets),
 * with "class" recorded as given (generic-text, code, multilingual, domain:NAME; default domain:self-sampled).
 * A class other than none without a dataset: QD_EUNSUPPORTED. *why says what is wrong.
 */
static int parse_calibration(json_t *jcal, const char **cls, const char **data, const char **why)
{
    json_t *jc = jcal, *jd = NULL;
    const char *k;
    json_t *v;
    *cls = "none";
    *data = NULL;
    if (!jcal || json_is_null(jcal))
        return QD_OK;
    if (json_is_object(jcal)) {
        json_object_foreach(jcal, k, v) {
            if (strcmp(k, "class") && strcmp(k, "dataset")) {
                *why = "calibration takes \"class\" and \"dataset\" only";
                return QD_EINVAL;
            }
        }
        jc = json_object_get(jcal, "class");
        jd = json_object_get(jcal, "dataset");
    }
    if (jc && !json_is_null(jc) && !json_is_string(jc)) {
        *why = "calibration must be \"none\" or {\"class\": C, \"dataset\": \"sample:N:LEN:SEED\"}";
        return QD_EINVAL;
    }
    if (jd && !json_is_null(jd)) {
        unsigned long long n = 0, len = 0, seed = 0;
        const char *d = json_string_value(jd);
        if (!d || strlen(d) > 48 || qd_calib_parse_sample(d, &n, &len, &seed) != 1 || n < 1 || n > 256 || len < 2 ||
            len > 1024) {
            *why = "calibration dataset must be \"sample:N:LEN:SEED\" (N 1..256 sequences of LEN 2..1024 tokens "
                   "sampled from the source)";
            return QD_EINVAL;
        }
        *data = d;
        *cls = "domain:self-sampled";
    }
    if (jc && json_is_string(jc))
        *cls = json_string_value(jc);
    if (!qd_calib_class_valid(*cls) || strlen(*cls) > 72) {
        *why = "calibration class must be none, generic-text, code, multilingual or domain:NAME (at most 72 "
               "characters)";
        return QD_EINVAL;
    }
    if (*data && !strcmp(*cls, "none")) {
        *why = "a calibration dataset needs a class other than none";
        return QD_EINVAL;
    }
    if (!*data && strcmp(*cls, "none")) {
        *why = "a calibration class needs a dataset: the daemon calibrates on sequences it samples from the source, "
               "{\"class\": C, \"dataset\": \"sample:N:LEN:SEED\"}";
        return QD_EUNSUPPORTED;
    }
    return QD_OK;
}

typedef struct submit_work {
    qd_server *srv;
    json_t *rec;
    qd_digest dedup;
    char id[QD_JOB_ID_LEN + 1];
    char existing[QD_JOB_ID_LEN + 1];
    json_t *existing_rec;
    int rc;
    qd_error_saved err; /* rc's message where it failed */
    /* cancel */
    bool cancel;
    int status;
} submit_work;

static void submit_free(void *p)
{
    submit_work *w = p;
    json_decref(w->rec);
    json_decref(w->existing_rec);
    qd_free(w);
}

/* An identical request joins a queued, running or done job; a failed or cancelled one is tried again. */
static bool keep_existing(const char *json, size_t len, void *payload)
{
    json_t *rec = json_loadb(json, len, 0, NULL);
    const char *st = rec ? rec_state(rec) : NULL;
    bool keep = st && (!strcmp(st, "queued") || !strcmp(st, "running") || !strcmp(st, "done"));
    (void)payload;
    json_decref(rec);
    return keep;
}

static void submit_work_fn(void *p)
{
    qd_req *r = p;
    submit_work *w = r->work;
    qd_jobs *J = w->srv->jobs;
    char *text;
    pthread_mutex_lock(&J->mu);
    json_object_set_new(w->rec, "seq", json_integer((json_int_t)J->seq++));
    pthread_mutex_unlock(&J->mu);
    if (!(text = json_dumps(w->rec, JSON_COMPACT))) {
        w->rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "cannot store the job: out of memory");
        qd_error_save(&w->err, w->rc);
        return;
    }
    w->rc = qd_job_submit(w->existing, w->srv->store, &w->dedup, w->id, text, keep_existing, NULL);
    free(text); /* jansson */
    if (w->rc == QD_EEXISTS)
        w->existing_rec = load_rec(w->srv->store, w->existing);
    else if (w->rc < 0)
        qd_error_save(&w->err, w->rc);
    else
        wake(J);
}

static void submit_done(void *p)
{
    qd_req *r = p;
    submit_work *w = r->work;
    if (w->rc == QD_EEXISTS && w->existing_rec) {
        json_object_set_new(w->existing_rec, "deduplicated", json_true());
        qd_log(QD_LOG_INFO, "jobs", "req=%llu job=%s deduplicated", (unsigned long long)r->id, w->existing);
        reply_rec(r, 200, w->existing_rec);
        return;
    }
    if (w->rc < 0) {
        reply_error(r, 500, "UNKNOWN", w->err.message);
        return;
    }
    qd_log(QD_LOG_INFO, "jobs", "req=%llu job=%s queued source=%s recipe=%s", (unsigned long long)r->id, w->id,
           json_string_value(json_object_get(json_object_get(w->rec, "source"), "name")),
           json_string_value(json_object_get(w->rec, "recipe")));
    {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/jobs/%s", w->id);
        qd_req_header(r, "Location", loc);
    }
    reply_rec(r, 202, w->rec);
}

static void handle_post(qd_req *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = evbuffer_get_length(in);
    json_t *body, *jsrc, *jrecipe, *jcal, *jhw, *hw = NULL, *rec;
    char repo[QD_REPO_MAX + 1], ref[QD_TAG_MAX + 80], cls[80], ds[QD_DIGEST_STR_LEN + 1], name[512], now[32];
    const char *recipe_name, *cal_class = "none", *cal_data = NULL;
    char cdata[64] = "";
    qd_ftype ft;
    qd_manifest_info info;
    submit_work *w;
    uint8_t rnd[8];
    qd_buf dk = QD_BUF_INIT(0);
    int rc;

    if (n > 65536 || !(body = json_loadb((const char *)evbuffer_pullup(in, -1), n, 0, NULL)) ||
        !json_is_object(body)) {
        reply_error(r, 400, "JOB_INVALID", "the body must be a JSON object {source, recipe, calibration, "
                                           "target_hardware}");
        return;
    }
    jsrc = json_object_get(body, "source");
    jrecipe = json_object_get(body, "recipe");
    jcal = json_object_get(body, "calibration");
    jhw = json_object_get(body, "target_hardware");
    if (!json_is_string(jsrc) || split_source(json_string_value(jsrc), repo, sizeof(repo), ref, sizeof(ref)) < 0) {
        json_decref(body);
        reply_error(r, 400, "NAME_INVALID", "source must be REPOSITORY:TAG or REPOSITORY@sha256:DIGEST");
        return;
    }
    if (!qd_auth_check(r, repo, QD_TOKEN_SCOPE_QUANTIZE)) {
        json_decref(body);
        return;
    }
    if (!json_is_string(jrecipe) || qd_recipe_from_name(json_string_value(jrecipe), &ft) < 0) {
        json_decref(body);
        reply_error(r, 400, "RECIPE_UNKNOWN", "recipe must be one of llama-quantize's names (Q4_K_M, Q8_0, ...)");
        return;
    }
    recipe_name = qd_recipe_name(ft);
    {
        const char *why = NULL;
        int crc = parse_calibration(jcal, &cal_class, &cal_data, &why);
        if (crc) {
            json_decref(body);
            reply_error(r, 400, crc == QD_EUNSUPPORTED ? "CALIBRATION_UNSUPPORTED" : "JOB_INVALID", why);
            return;
        }
    }
    snprintf(cls, sizeof(cls), "%s", cal_class);
    if (cal_data)
        snprintf(cdata, sizeof(cdata), "%s", cal_data);
    hw = json_array();
    if (json_is_string(jhw))
        json_array_append(hw, jhw);
    else if (json_is_array(jhw))
        json_array_extend(hw, jhw);
    else if (!jhw || json_is_null(jhw)) {
        const char *k = qd_kernels_name(qd_kernels_current());
        char def[64];
        snprintf(def, sizeof(def), "cpu-%s", !strcmp(k, "ref") ? "generic" : k);
        json_array_append_new(hw, json_string(def));
    }
    if (json_array_size(hw) == 0 || json_array_size(hw) > 16) {
        json_decref(hw);
        json_decref(body);
        reply_error(r, 400, "JOB_INVALID", "target_hardware must be a name or 1 to 16 names like x86_64-avx2");
        return;
    }
    for (size_t i = 0; i < json_array_size(hw); i++) {
        json_t *e = json_array_get(hw, i);
        if (!json_is_string(e) || !hw_valid(json_string_value(e))) {
            json_decref(hw);
            json_decref(body);
            reply_error(r, 400, "JOB_INVALID", "target_hardware names are lowercase [a-z0-9_] words joined by '-'");
            return;
        }
    }
    json_decref(body);
    if ((rc = qd_registry_manifest_get(&info, NULL, r->srv->store, repo, ref)) < 0) {
        json_decref(hw);
        reply_error(r, 404, "MANIFEST_UNKNOWN", qd_error_last()->message);
        return;
    }
    qd_digest_format(ds, &info.digest);
    /* dedup: sha256(source digest \0 recipe \0 calibration class \0 converter version [\0 calibration dataset]) */
    qd_buf_printf(&dk, "%s%c%s%c%s%c%s", ds, 0, recipe_name, 0, cls, 0, qd_version_string());
    if (cdata[0])
        qd_buf_printf(&dk, "%c%s", 0, cdata);
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd) || !(w = qd_calloc(1, sizeof(*w)))) {
        qd_buf_dispose(&dk);
        json_decref(hw);
        reply_error(r, 500, "UNKNOWN", "no randomness or memory for a job id");
        return;
    }
    qd_sha256_buf(&w->dedup, dk.ptr, dk.len);
    qd_buf_dispose(&dk);
    qd_hex(w->id, rnd, 8);
    w->srv = r->srv;
    r->work = w;
    r->work_free = submit_free;
    if (ref[0] == 's' && !strncmp(ref, "sha256:", 7))
        snprintf(name, sizeof(name), "%s@%s", repo, ref);
    else
        snprintf(name, sizeof(name), "%s:%s", repo, ref);
    qd_jobs__now_text(now);
    rec = json_pack("{s:s,s:s,s:n,s:f,s:i,s:{s:s,s:s,s:s,s:s},s:s,s:{s:s,s:s*},s:o,s:s,s:s,s:{},s:n,s:n}", "id",
                    w->id, "state", "queued", "stage", "progress", 0.0, "attempt", 1, "source", "repo", repo, "ref",
                    ref, "digest", ds, "name", name, "recipe", recipe_name, "calibration", "class", cls, "dataset",
                    cdata[0] ? cdata : NULL, "target_hardware", hw, "converter_version", qd_version_string(),
                    "created", now, "timings", "result", "error");
    if (!rec) {
        reply_error(r, 500, "UNKNOWN", "out of memory");
        return;
    }
    w->rec = rec;
    if ((rc = qd_req_offload(r, submit_work_fn, submit_done)) < 0)
        reply_error(r, 500, "UNKNOWN", "cannot queue the request");
}

/* ---- cancel ---- */

static void cancel_work_fn(void *p)
{
    qd_req *r = p;
    submit_work *w = r->work;
    qd_jobs *J = w->srv->jobs;
    json_t *rec;
    pthread_mutex_lock(&J->mu);
    rec = load_rec(w->srv->store, w->id);
    if (!rec) {
        w->status = 404;
    } else if (terminal(rec_state(rec))) {
        w->status = 409;
    } else if (!strcmp(rec_state(rec), "queued")) {
        char now[32];
        qd_jobs__now_text(now);
        json_object_set_new(rec, "state", json_string("cancelled"));
        json_object_set_new(rec, "finished", json_string(now));
        w->rc = save_rec(w->srv->store, w->id, rec);
        w->status = w->rc < 0 ? 500 : 200;
    } else {
        bool found = false;
        for (qd_job_run *run = J->running; run; run = run->next)
            if (!strcmp(run->id, w->id)) {
                atomic_store(&run->cancel, QD_JOB_CANCEL_USER);
                found = true;
            }
        json_object_set_new(rec, "cancel_requested", json_true());
        w->status = found ? 202 : 409;
    }
    pthread_mutex_unlock(&J->mu);
    w->existing_rec = rec;
}

static void cancel_done(void *p)
{
    qd_req *r = p;
    submit_work *w = r->work;
    if (w->status == 404) {
        reply_error(r, 404, "JOB_UNKNOWN", "no such job");
        return;
    }
    if (w->status == 409) {
        reply_error(r, 409, "JOB_FINISHED", "the job has already ended");
        return;
    }
    if (w->status == 500) {
        reply_error(r, 500, "UNKNOWN", "cannot write the job record");
        return;
    }
    qd_log(QD_LOG_INFO, "jobs", "req=%llu job=%s cancel=%s", (unsigned long long)r->id, w->id,
           w->status == 200 ? "done" : "requested");
    reply_rec(r, w->status, w->existing_rec);
}

/* ---- events ---- */

typedef struct sse_work {
    qd_req *r;
    struct event *timer;
    char *last;
    int ticks;
} sse_work;

static void sse_free(void *p)
{
    sse_work *w = p;
    if (w->timer)
        event_free(w->timer);
    free(w->last); /* jansson */
    qd_free(w);
}

static void sse_tick(evutil_socket_t fd, short what, void *arg)
{
    sse_work *w = arg;
    qd_req *r = w->r;
    json_t *rec;
    char *text;
    bool end;
    (void)fd;
    (void)what;
    if (r->dead || !r->req)
        return;
    rec = load_rec(r->srv->store, r->path + strlen("/v1/jobs/"));
    if (!rec) {
        qd_req_sse_send(r, "event: end\ndata: {}\n\n", 21);
        event_del(w->timer);
        qd_req_sse_end(r);
        return;
    }
    end = terminal(rec_state(rec));
    text = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    if (text && (!w->last || strcmp(text, w->last))) {
        qd_buf b = QD_BUF_INIT(0);
        qd_buf_printf(&b, "event: job\ndata: %s\n\n", text);
        qd_req_sse_send(r, b.ptr, b.len);
        qd_buf_dispose(&b);
        free(w->last); /* jansson */
        w->last = text;
        text = NULL;
    }
    free(text); /* jansson */
    if (++w->ticks % 50 == 0)
        qd_req_sse_send(r, ": keep-alive\n\n", 14);
    if (end || r->srv->stopping) {
        event_del(w->timer);
        qd_req_sse_send(r, end ? "event: end\ndata: {}\n\n" : "event: stopping\ndata: {}\n\n", end ? 21 : 26);
        qd_req_sse_end(r); /* r (and w) may be gone now */
    }
}

static void handle_events(qd_req *r)
{
    sse_work *w = qd_calloc(1, sizeof(*w));
    struct timeval every = {0, 100000};
    if (!w) {
        reply_error(r, 500, "UNKNOWN", "out of memory");
        return;
    }
    w->r = r;
    r->work = w;
    r->work_free = sse_free;
    /* r->path becomes /v1/jobs/ID (tick reads the id from it) */
    r->path[strlen("/v1/jobs/") + QD_JOB_ID_LEN] = 0;
    if (!(w->timer = event_new(r->srv->base, -1, EV_PERSIST, sse_tick, w)) || event_add(w->timer, &every) < 0) {
        reply_error(r, 500, "UNKNOWN", "cannot start the event stream");
        return;
    }
    qd_req_sse_start(r);
    sse_tick(-1, 0, w);
}

/* ---- routing ---- */

typedef struct list_ctx {
    qd_req *r;
    json_t *arr;
    const char *state;
} list_ctx;

static int list_one(const char *id, const char *json, size_t len, void *payload)
{
    list_ctx *c = payload;
    json_t *rec = json_loadb(json, len, 0, NULL);
    const char *repo = rec ? json_string_value(json_object_get(json_object_get(rec, "source"), "repo")) : NULL;
    (void)id;
    if (rec && repo && qd_auth_allows(c->r, repo, QD_TOKEN_SCOPE_QUANTIZE) &&
        (!c->state || !strcmp(c->state, rec_state(rec) ? rec_state(rec) : "")))
        json_array_append(c->arr, rec);
    json_decref(rec);
    return 0;
}

void qd_jobs_handle(qd_req *r)
{
    const char *p = r->path + strlen("/v1/jobs");
    char id[QD_JOB_ID_LEN + 1];
    json_t *rec;
    const char *repo;
    bool events = false;

    r->route = "jobs";
    if (!r->srv->jobs) {
        reply_error(r, 503, "UNAVAILABLE", "the job runner is not started");
        return;
    }
    if (*p == 0 || !strcmp(p, "/")) {
        if (r->method == EVHTTP_REQ_POST) {
            handle_post(r);
        } else if (r->method == EVHTTP_REQ_GET) {
            list_ctx c = {r, json_array(), qd_req_query(r, "state")};
            if (!qd_auth_check(r, NULL, QD_TOKEN_SCOPE_QUANTIZE)) {
                json_decref(c.arr);
                return;
            }
            if (qd_job_list(r->srv->store, list_one, &c) < 0) {
                json_decref(c.arr);
                reply_error(r, 500, "UNKNOWN", qd_error_last()->message);
                return;
            }
            reply_rec(r, 200, c.arr);
            json_decref(c.arr);
        } else {
            reply_error(r, 405, "UNSUPPORTED", "POST or GET here");
        }
        return;
    }
    if (*p != '/' || strlen(p + 1) < QD_JOB_ID_LEN || strspn(p + 1, "0123456789abcdef") != QD_JOB_ID_LEN ||
        (p[1 + QD_JOB_ID_LEN] && strcmp(p + 1 + QD_JOB_ID_LEN, "/events"))) {
        reply_error(r, 404, "JOB_UNKNOWN", "no such job");
        return;
    }
    memcpy(id, p + 1, QD_JOB_ID_LEN);
    id[QD_JOB_ID_LEN] = 0;
    events = p[1 + QD_JOB_ID_LEN] != 0;
    if (!(rec = load_rec(r->srv->store, id))) {
        /* the same answer whether or not a job exists in a repository the caller cannot see */
        if (qd_auth_check(r, NULL, QD_TOKEN_SCOPE_QUANTIZE))
            reply_error(r, 404, "JOB_UNKNOWN", "no such job");
        return;
    }
    repo = json_string_value(json_object_get(json_object_get(rec, "source"), "repo"));
    if (!qd_auth_check(r, repo ? repo : "", QD_TOKEN_SCOPE_QUANTIZE)) {
        json_decref(rec);
        return;
    }
    if (events && r->method == EVHTTP_REQ_GET) {
        json_decref(rec);
        r->route = "jobs_events";
        handle_events(r);
    } else if (!events && r->method == EVHTTP_REQ_GET) {
        reply_rec(r, 200, rec);
        json_decref(rec);
    } else if (!events && r->method == EVHTTP_REQ_DELETE) {
        submit_work *w = qd_calloc(1, sizeof(*w));
        json_decref(rec);
        if (!w) {
            reply_error(r, 500, "UNKNOWN", "out of memory");
            return;
        }
        w->srv = r->srv;
        memcpy(w->id, id, sizeof(id));
        w->cancel = true;
        r->work = w;
        r->work_free = submit_free;
        if (qd_req_offload(r, cancel_work_fn, cancel_done) < 0)
            reply_error(r, 500, "UNKNOWN", "cannot queue the request");
    } else {
        json_decref(rec);
        reply_error(r, 405, "UNSUPPORTED", "GET or DELETE here");
    }
}
