/*
 * cmd_jobs.c - quantize on demand from the command line: `quant quantize NAME[:TAG|@DIGEST] --recipe R` asks a
 * registry for a variant (POST /v1/jobs) and, with --follow, follows the job to its end; `quant jobs ls|show|
 * cancel|follow` list, show, cancel and follow jobs. The daemon side is daemon/jobs.c (its record is what --json
 * prints, schemas/client-jobs.schema.json).
 *
 * Following: GET /v1/jobs/ID/events is a text/event-stream ("event: job" + the record whenever it changes, then
 * "event: end"); it is read through libcurl as it arrives (http_stream). A dropped stream is opened again (the
 * daemon sends the current record first, so nothing is lost); after 3 failures in a row without an event the
 * client gives up with exit 5 and says how to follow the job again (it keeps running on the daemon).
 * Progress: a bar (stage and overall fraction) when stderr is a terminal, else one line per state or stage change.
 *
 * The verdict decides the exit code: a job that ends with a passing verdict exits 0 (stdout: NAME:TAG@DIGEST of
 * the published variant); a failing verdict exits 9 (the variant is kept for audit, untagged); a failed or
 * cancelled job exits 1.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/buf.h"
#include "qd/err.h"
#include "registry.h"

#define JOB_ID_LEN 16
#define JOB_BODY_MAX (4u << 20)
#define SSE_LINE_MAX (4u << 20)

static const char quantize_remote_usage[] =
    "usage: quant quantize NAME[:TAG|@DIGEST] --recipe RECIPE [--calib sample:N:LEN:SEED [--calib-class C]]\n"
    "                      [--hardware H[,H...]] [--follow] [--json] [--registry URL] [--cacert FILE]\n"
    "  Asks the registry for a variant of NAME quantized with RECIPE (one of llama-quantize's names, e.g. Q4_K_M):\n"
    "  POST /v1/jobs. An identical request (same source, recipe, calibration, converter) returns the existing job.\n"
    "  stdout: the job id (--json: the job record). --follow: follow the job to its end (a progress bar when\n"
    "  stderr is a terminal), then print NAME:TAG@DIGEST of the published variant.\n"
    "  --calib sample:N:LEN:SEED: an importance-weighted variant (method imatrix): the registry samples N sequences\n"
    "  of LEN tokens from the source with SEED (N <= 256, LEN <= 1024), none of them its validation sequences,\n"
    "  and records the set's digest; --calib-class C: what the set stands for (generic-text, code, multilingual,\n"
    "  domain:NAME; default domain:self-sampled). --hardware: target hardware names (x86_64-avx2, ...).\n"
    "  The token comes from QUANT_TOKEN or 'token' in the config file (it needs the quantize scope).\n"
    "  exit codes: 0 ok (with --follow: the verdict passed), 1 the job failed or was cancelled, 2 usage, 3 not\n"
    "  found, 5 registry unreachable, 9 the variant failed validation (kept for audit, untagged)\n"
    "  Local form: quant quantize --in SRC --type RECIPE --out OUT.gguf (see quant quantize --help).\n";

static const char jobs_usage[] =
    "usage: quant jobs [ls] [--state STATE] [--json]     the jobs you may see (newest last)\n"
    "       quant jobs show ID [--json]                  one job's record\n"
    "       quant jobs cancel ID [--json]                cancel a queued or running job\n"
    "       quant jobs follow ID [--json]                follow a job to its end (as quantize --follow)\n"
    "  common options: --registry URL, --cacert FILE. STATE: queued, running, done, failed, cancelled.\n"
    "  exit codes: 0 ok, 1 error or (follow) the job failed or was cancelled, 2 usage, 3 no such job,\n"
    "  5 registry unreachable, 6 (cancel) the job has already ended, 9 (follow) the variant failed validation\n";

/* ---- helpers ----------------------------------------------------------------------------------------------- */

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) {
        printf("%s\n", s);
        free(s); /* jansson */
    }
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static bool id_ok(const char *id)
{
    return strlen(id) == JOB_ID_LEN && strspn(id, "0123456789abcdef") == JOB_ID_LEN;
}

/* One request whose answer is a JSON document; *out is the parsed body (2xx only). */
static int request_json(json_t **out, long *status, http_client *c, const char *method, const char *path,
                        const char *body, const char *what)
{
    http_resp r;
    http_body b;
    json_error_t je;
    int rc;

    *out = NULL;
    http_resp_init(&r, JOB_BODY_MAX);
    memset(&b, 0, sizeof(b));
    if (body) {
        b.data = body;
        b.len = strlen(body);
    }
    if ((rc = http_request(c, &r, method, path, "application/json", body ? "application/json" : NULL, NULL,
                           body ? &b : NULL)))
        goto cleanup;
    if (status)
        *status = r.status;
    if ((rc = http_status_error(&r, what)))
        goto cleanup;
    if (!(*out = json_loadb((const char *)r.body.ptr, r.body.len, 0, &je)))
        rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "%s: the answer is not JSON: %s", what, je.text);
cleanup:
    http_resp_dispose(&r);
    return rc;
}

/* What the registry commands share: the config (registry, token, cacert; --registry and --cacert override) and
 * --json. */
typedef struct reg_opts {
    quant_config cfg;
    bool json;
} reg_opts;

/* ---- following a job ---------------------------------------------------------------------------------------- */

typedef struct follow_ctx {
    const char *id;
    qd_buf line;       /* the line being read */
    qd_buf data;       /* the data lines of the event being read */
    char event[32];    /* its event name */
    json_t *last;      /* the newest record seen */
    int ended;         /* "event: end" seen */
    int events;        /* events seen on this connection */
    int err;           /* a parse error (qd_err) */
    bool tty;
    char shown[96];    /* the state/stage last reported as a line */
} follow_ctx;

static void report(follow_ctx *f, json_t *rec)
{
    const char *state = jstr(rec, "state"), *stage = jstr(rec, "stage");
    double p = json_number_value(json_object_get(rec, "progress"));
    char now[96];

    if (p < 0)
        p = 0;
    if (p > 1)
        p = 1;
    if (f->tty) {
        char bar[31];
        int fill = (int)(30.0 * p);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[30] = 0;
        fprintf(stderr, "\r\033[Kjob %s %-8s %-9s [%s] %5.1f%%", f->id, state, *stage ? stage : "-", bar,
                100.0 * p);
        return;
    }
    snprintf(now, sizeof(now), "%s%s%s", state, *stage && !strcmp(state, "running") ? ": " : "",
             !strcmp(state, "running") ? stage : "");
    if (strcmp(now, f->shown)) {
        fprintf(stderr, "quant: job %s: %s\n", f->id, now);
        snprintf(f->shown, sizeof(f->shown), "%s", now);
    }
}

/* One complete event: a record, the end, or the daemon stopping. @return 1 to stop reading */
static int dispatch(follow_ctx *f)
{
    int stop = 0;
    if (!strcmp(f->event, "job") && f->data.len) {
        json_t *rec = json_loadb((const char *)f->data.ptr, f->data.len, 0, NULL);
        if (!json_is_object(rec)) {
            json_decref(rec);
            f->err = qd_error_set(QD_ECORRUPT, QD_EC_NET, "job %s: an event that is not a job record", f->id);
            return 1;
        }
        json_decref(f->last);
        f->last = rec;
        f->events++;
        report(f, rec);
    } else if (!strcmp(f->event, "end")) {
        f->ended = 1;
        stop = 1;
    } else if (!strcmp(f->event, "stopping")) {
        stop = 1; /* the daemon is going down: the job goes on when it is back */
    }
    f->event[0] = 0;
    qd_buf_clear(&f->data);
    return stop;
}

static int sse_line(follow_ctx *f, const char *s, size_t n)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (!n)
        return dispatch(f);
    if (s[0] == ':')
        return 0; /* a comment (keep-alive) */
    if (n >= 6 && !memcmp(s, "event:", 6)) {
        size_t k = 6 + (n > 6 && s[6] == ' ');
        snprintf(f->event, sizeof(f->event), "%.*s", (int)(n - k), s + k);
    } else if (n >= 5 && !memcmp(s, "data:", 5)) {
        size_t k = 5 + (n > 5 && s[5] == ' ');
        if ((f->data.len && qd_buf_put(&f->data, "\n", 1)) || qd_buf_put(&f->data, s + k, n - k)) {
            f->err = qd_error_set(QD_EFULL, QD_EC_NET, "job %s: an event over %u bytes", f->id, SSE_LINE_MAX);
            return 1;
        }
    }
    return 0;
}

static int on_sse(void *ctx, const char *data, size_t len)
{
    follow_ctx *f = ctx;
    while (len) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (qd_buf_put(&f->line, data, take)) {
            f->err = qd_error_set(QD_EFULL, QD_EC_NET, "job %s: an event line over %u bytes", f->id, SSE_LINE_MAX);
            return 1;
        }
        if (!nl)
            break;
        int stop = sse_line(f, (const char *)f->line.ptr, f->line.len);
        qd_buf_clear(&f->line);
        if (stop)
            return 1;
        data = nl + 1;
        len -= take + 1;
    }
    return 0;
}

static bool terminal(const char *state)
{
    return !strcmp(state, "done") || !strcmp(state, "failed") || !strcmp(state, "cancelled");
}

/* The exit code of a finished job, with its human lines (or its record with --json). */
static int job_outcome(json_t *rec, bool json)
{
    const char *state = jstr(rec, "state");
    json_t *res = json_object_get(rec, "result");
    const char *verdict = jstr(res, "verdict");

    if (json)
        print_json(rec);
    if (!strcmp(state, "done") && !strcmp(verdict, "pass")) {
        if (!json)
            printf("%s@%s\n", jstr(res, "tag"), jstr(res, "manifest"));
        return EXIT_OK_;
    }
    if (!strcmp(state, "done")) {
        if (!json)
            printf("%s@%s\n", jstr(json_object_get(rec, "source"), "repo"), jstr(res, "manifest"));
        fprintf(stderr, "quant: job %s: validation failed (verdict %s): the variant %s is kept for audit, untagged\n",
                jstr(rec, "id"), *verdict ? verdict : "none", jstr(res, "manifest"));
        return EXIT_VALIDATION;
    }
    if (!strcmp(state, "cancelled")) {
        fprintf(stderr, "quant: job %s: cancelled\n", jstr(rec, "id"));
        return EXIT_ERR;
    }
    fprintf(stderr, "quant: job %s: %s: %s\n", jstr(rec, "id"), state,
            jstr(json_object_get(rec, "error"), "message"));
    return EXIT_ERR;
}

/* Follow job id to its end. @return an exit code */
static int follow(http_client *c, const char *id, bool json)
{
    char path[128];
    follow_ctx f;
    int fails = 0, ex = EXIT_ERR, rc = QD_OK;

    memset(&f, 0, sizeof(f));
    f.id = id;
    f.tty = isatty(2) != 0;
    qd_buf_init(&f.line, SSE_LINE_MAX);
    qd_buf_init(&f.data, SSE_LINE_MAX);
    snprintf(path, sizeof(path), "/v1/jobs/%s/events", id);
    while (!f.ended) {
        http_resp r;
        http_resp_init(&r, 65536);
        f.events = 0;
        f.event[0] = 0;
        qd_buf_clear(&f.line);
        qd_buf_clear(&f.data);
        rc = http_stream(c, &r, path, "text/event-stream", 30, on_sse, &f);
        if (!rc && !f.err)
            rc = http_status_error(&r, "job events");
        http_resp_dispose(&r);
        if (f.err) {
            rc = f.err;
            break;
        }
        if (rc && rc != QD_EIO)
            break; /* an HTTP error (404, 401, ...): not worth trying again */
        if (f.ended)
            break;
        /* the stream dropped, or the daemon is stopping: open it again, unless it keeps failing */
        fails = f.events ? 1 : fails + 1;
        if (fails > 3) {
            if (!rc)
                rc = qd_error_set(QD_EIO, QD_EC_NET, "the event stream of job %s keeps ending", id);
            break;
        }
        if (f.last && terminal(jstr(f.last, "state")))
            break;
        usleep(200000u * (unsigned)fails); /* back off before asking again */
    }
    if (f.tty)
        fprintf(stderr, "\r\033[K");
    if (rc) {
        ex = qd_fail(rc, "job");
        if (ex == EXIT_UNREACHABLE)
            fprintf(stderr, "quant: the job goes on on the registry: follow it again with 'quant jobs follow %s'\n",
                    id);
        goto cleanup;
    }
    if (!f.last || !terminal(jstr(f.last, "state"))) {
        /* the stream ended without a final record: ask for it */
        json_t *rec = NULL;
        snprintf(path, sizeof(path), "/v1/jobs/%s", id);
        if ((rc = request_json(&rec, NULL, c, "GET", path, NULL, "job"))) {
            ex = qd_fail(rc, "job");
            goto cleanup;
        }
        json_decref(f.last);
        f.last = rec;
    }
    if (!terminal(jstr(f.last, "state"))) {
        fprintf(stderr, "quant: job %s: the event stream ended while the job is %s\n", id, jstr(f.last, "state"));
        goto cleanup;
    }
    if (!f.tty)
        report(&f, f.last);
    ex = job_outcome(f.last, json);
cleanup:
    json_decref(f.last);
    qd_buf_dispose(&f.line);
    qd_buf_dispose(&f.data);
    return ex;
}

/* ---- quant quantize NAME:TAG ------------------------------------------------------------------------------- */

int cmd_quantize_remote(int argc, char **argv)
{
    static const struct option opts[] = {{"recipe", required_argument, NULL, 'R'},
                                         {"calib", required_argument, NULL, 'c'},
                                         {"calib-class", required_argument, NULL, 'k'},
                                         {"hardware", required_argument, NULL, 'H'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"registry", required_argument, NULL, 'r'},
                                         {"cacert", required_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    reg_opts o;
    const char *recipe = NULL, *calib = NULL, *calib_class = NULL;
    bool do_follow = false;
    image_ref ref;
    json_t *req = NULL, *hw = NULL, *rec = NULL;
    http_client *c = NULL;
    char source[512], *body = NULL;
    long status = 0;
    int ch, rc, ex = EXIT_OK_;

    memset(&o, 0, sizeof(o));
    if ((rc = quant_config_load(&o.cfg)))
        return qd_fail(rc, "quantize");
    if (!(hw = json_array()))
        return qd_fail(qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory"), "quantize");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'R': recipe = optarg; break;
        case 'c': calib = optarg; break;
        case 'k': calib_class = optarg; break;
        case 'H': {
            char *dup = qd_strdup(optarg), *save = NULL;
            for (char *t = dup ? strtok_r(dup, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(hw, json_string(t));
            qd_free(dup);
            break;
        }
        case 'f': do_follow = true; break;
        case 'J': o.json = true; break;
        case 'r': snprintf(o.cfg.registry, sizeof(o.cfg.registry), "%s", optarg); break;
        case 'C': snprintf(o.cfg.cacert, sizeof(o.cfg.cacert), "%s", optarg); break;
        case 'h': fputs(quantize_remote_usage, stdout); json_decref(hw); return EXIT_OK_;
        default: fputs(quantize_remote_usage, stderr); json_decref(hw); return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || !recipe) {
        fprintf(stderr, "quant quantize: %s\n", !recipe ? "--recipe RECIPE is required" : "one NAME:TAG");
        fputs(quantize_remote_usage, stderr);
        json_decref(hw);
        return EXIT_USAGE;
    }
    if ((rc = image_ref_parse(&ref, argv[optind]))) {
        json_decref(hw);
        return qd_fail(rc, "quantize");
    }
    if (!o.cfg.registry[0]) {
        fprintf(stderr, "quant quantize: %s is not a local file, and no registry is configured: give --registry "
                        "URL (or QUANT_REGISTRY, or 'registry' in the config file) to quantize on a registry, or "
                        "--in SRC --type RECIPE --out OUT.gguf to quantize a local file\n",
                argv[optind]);
        json_decref(hw);
        return EXIT_USAGE;
    }
    snprintf(source, sizeof(source), "%s%s%s", ref.name, ref.by_digest ? "@" : ":", ref.ref);
    /* --calib is a dataset (sample:...); a bare class (the older form) is passed as it is, and the registry says
     * that a class needs a dataset */
    if (calib && strncmp(calib, "sample:", 7) && !calib_class) {
        calib_class = calib;
        calib = NULL;
    }
    req = json_pack("{s:s,s:s,s:{s:s,s:s*}}", "source", source, "recipe", recipe, "calibration", "class",
                    calib_class ? calib_class : calib ? "domain:self-sampled" : "none", "dataset", calib);
    if (req && json_array_size(hw))
        json_object_set(req, "target_hardware", hw);
    if (!req || !(body = json_dumps(req, JSON_COMPACT))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    if ((rc = registry_open(&c, &o.cfg)))
        goto cleanup;
    if ((rc = request_json(&rec, &status, c, "POST", "/v1/jobs", body, "quantize")))
        goto cleanup;
    if (!id_ok(jstr(rec, "id"))) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "quantize: the registry answered without a job id");
        goto cleanup;
    }
    if (json_is_true(json_object_get(rec, "deduplicated")))
        fprintf(stderr, "quant quantize: an identical request exists: job %s (%s)\n", jstr(rec, "id"),
                jstr(rec, "state"));
    else
        fprintf(stderr, "quant quantize: job %s queued: %s -> %s\n", jstr(rec, "id"), source, jstr(rec, "recipe"));
    if (do_follow) {
        char id[JOB_ID_LEN + 1];
        snprintf(id, sizeof(id), "%s", jstr(rec, "id"));
        ex = follow(c, id, o.json);
        goto cleanup;
    }
    if (o.json)
        print_json(rec);
    else
        printf("%s\n", jstr(rec, "id"));
cleanup:
    if (rc)
        ex = qd_fail(rc, "quantize");
    free(body); /* jansson */
    json_decref(req);
    json_decref(hw);
    json_decref(rec);
    http_close(c);
    return ex;
}

/* ---- quant jobs ---------------------------------------------------------------------------------------------- */

static void show_human(json_t *rec)
{
    json_t *src = json_object_get(rec, "source"), *res = json_object_get(rec, "result"),
           *err = json_object_get(rec, "error"), *hw = json_object_get(rec, "target_hardware"), *x;
    size_t i;
    printf("id           %s\n", jstr(rec, "id"));
    printf("state        %s\n", jstr(rec, "state"));
    printf("stage        %s\n", json_is_string(json_object_get(rec, "stage")) ? jstr(rec, "stage") : "-");
    printf("progress     %.1f%%\n", 100.0 * json_number_value(json_object_get(rec, "progress")));
    printf("source       %s (%s)\n", jstr(src, "name"), jstr(src, "digest"));
    printf("recipe       %s\n", jstr(rec, "recipe"));
    {
        json_t *cal = json_object_get(rec, "calibration");
        printf("calibration  %s", jstr(cal, "class"));
        if (json_is_string(json_object_get(cal, "dataset")))
            printf(" on %s", jstr(cal, "dataset"));
        if (json_is_string(json_object_get(cal, "dataset_digest")))
            printf(" (%lld sequences, %lld tokens, %s)", (long long)json_integer_value(json_object_get(cal, "samples")),
                   (long long)json_integer_value(json_object_get(cal, "tokens")), jstr(cal, "dataset_digest"));
        printf("\n");
    }
    printf("hardware    ");
    json_array_foreach(hw, i, x) printf(" %s", json_string_value(x) ? json_string_value(x) : "?");
    printf("\n");
    printf("converter    %s\n", jstr(rec, "converter_version"));
    printf("created      %s\n", jstr(rec, "created"));
    if (json_is_string(json_object_get(rec, "started")))
        printf("started      %s\n", jstr(rec, "started"));
    if (json_is_string(json_object_get(rec, "finished")))
        printf("finished     %s\n", jstr(rec, "finished"));
    if (json_is_object(res)) {
        printf("verdict      %s\n", jstr(res, "verdict"));
        printf("manifest     %s\n", jstr(res, "manifest"));
        printf("tag          %s\n", json_is_string(json_object_get(res, "tag")) ? jstr(res, "tag") : "(none)");
        printf("signed by    %s\n", jstr(res, "key_id"));
    }
    if (json_is_object(err))
        printf("error        %s\n", jstr(err, "message"));
}

int cmd_jobs(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"registry", required_argument, NULL, 'r'},
                                         {"cacert", required_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    reg_opts o;
    const char *sub = "ls", *state = NULL, *id = NULL;
    http_client *c = NULL;
    json_t *rec = NULL;
    char path[256];
    long status = 0;
    int ch, rc, ex = EXIT_OK_, first = 1;

    memset(&o, 0, sizeof(o));
    if ((rc = quant_config_load(&o.cfg)))
        return qd_fail(rc, "jobs");
    if (argc > 1 && argv[1][0] != '-') {
        sub = argv[1];
        first = 2;
    }
    optind = first;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': state = optarg; break;
        case 'J': o.json = true; break;
        case 'r': snprintf(o.cfg.registry, sizeof(o.cfg.registry), "%s", optarg); break;
        case 'C': snprintf(o.cfg.cacert, sizeof(o.cfg.cacert), "%s", optarg); break;
        case 'h': fputs(jobs_usage, stdout); return EXIT_OK_;
        default: fputs(jobs_usage, stderr); return EXIT_USAGE;
        }
    }
    if (!strcmp(sub, "ls") || !strcmp(sub, "list")) {
        if (argc - optind != 0 || (state && !terminal(state) && strcmp(state, "queued") && strcmp(state, "running"))) {
            fputs(jobs_usage, stderr);
            return EXIT_USAGE;
        }
    } else if (!strcmp(sub, "show") || !strcmp(sub, "cancel") || !strcmp(sub, "follow")) {
        if (argc - optind != 1 || state) {
            fputs(jobs_usage, stderr);
            return EXIT_USAGE;
        }
        id = argv[optind];
        if (!id_ok(id)) {
            fprintf(stderr, "quant jobs: %s: a job id is 16 lowercase hex digits\n", id);
            return EXIT_USAGE;
        }
    } else {
        fprintf(stderr, "quant jobs: unknown subcommand '%s'\n", sub);
        fputs(jobs_usage, stderr);
        return EXIT_USAGE;
    }
    if ((rc = registry_open(&c, &o.cfg)))
        goto cleanup;
    if (!id) {
        size_t i;
        json_t *x;
        snprintf(path, sizeof(path), "/v1/jobs%s%s", state ? "?state=" : "", state ? state : "");
        if ((rc = request_json(&rec, NULL, c, "GET", path, NULL, "jobs")))
            goto cleanup;
        if (!json_is_array(rec)) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "jobs: the answer is not a list");
            goto cleanup;
        }
        if (o.json) {
            print_json(rec);
            goto cleanup;
        }
        printf("%-16s  %-9s  %-8s  %6s  %-8s  %-7s  %s\n", "ID", "STATE", "STAGE", "DONE", "RECIPE", "VERDICT",
               "SOURCE");
        json_array_foreach(rec, i, x) {
            json_t *res = json_object_get(x, "result");
            printf("%-16s  %-9s  %-8s  %5.1f%%  %-8s  %-7s  %s\n", jstr(x, "id"), jstr(x, "state"),
                   json_is_string(json_object_get(x, "stage")) ? jstr(x, "stage") : "-",
                   100.0 * json_number_value(json_object_get(x, "progress")), jstr(x, "recipe"),
                   json_is_object(res) ? jstr(res, "verdict") : "-", jstr(json_object_get(x, "source"), "name"));
        }
    } else if (!strcmp(sub, "show")) {
        snprintf(path, sizeof(path), "/v1/jobs/%s", id);
        if ((rc = request_json(&rec, NULL, c, "GET", path, NULL, "job")))
            goto cleanup;
        if (o.json)
            print_json(rec);
        else
            show_human(rec);
    } else if (!strcmp(sub, "cancel")) {
        snprintf(path, sizeof(path), "/v1/jobs/%s", id);
        if ((rc = request_json(&rec, &status, c, "DELETE", path, NULL, "cancel"))) {
            if (rc == QD_EEXISTS) /* 409: it has ended */
                qd_error_prefix("job %s has already ended", id);
            goto cleanup;
        }
        if (o.json)
            print_json(rec);
        else
            printf("%s %s\n", id, status == 200 ? "cancelled" : "cancel requested (it stops at its next check)");
    } else {
        ex = follow(c, id, o.json);
    }
cleanup:
    if (rc)
        ex = qd_fail(rc, "jobs");
    json_decref(rec);
    http_close(c);
    return ex;
}
