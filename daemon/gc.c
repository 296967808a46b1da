/*
 * gc.c - POST /v1/gc (admin): remove orphan blobs.
 *
 * An orphan is a blob that the daemon stored and then never attached to anything: a crash between storing an
 * upload and linking it to its repository, a manifest transaction that failed after its raw bytes were stored.
 * Such a blob is invisible through the API and holds disk space. A blob is removed only when all of these hold:
 *   - no repository holds it, as a blob or as a manifest (the registry's reverse indexes);
 *   - nothing references it in the store (qd_store refs: a manifest's layers and config, its own bytes, anything
 *     another module pinned with qd_store_ref_add);
 *   - it was stored more than `grace` seconds ago (default 3600), so a blob being uploaded, just stored and about
 *     to be linked, is never taken;
 *   - no quantize job is running: a running job stores its variant and bundle before it publishes them in one
 *     transaction, so while any job runs the collection is refused (409) rather than racing it.
 * Upload sessions are files under <store>/uploads, not blobs: the collection never touches them (they expire
 * through upload-ttl). The chunks the removed blobs leave unreferenced are freed (qd_store_gc) in the same call.
 *
 *   POST /v1/gc?grace=SECONDS&dry_run=1
 *   200 {"dry_run":false,"grace":3600,"examined":N,"kept_held":N,"kept_referenced":N,"kept_recent":N,
 *        "removed":["sha256:..."],"removed_bytes":B,"chunks_freed":N,"chunk_bytes_freed":B}
 *
 * Blobs put into the store directly (`quant store put`) are held by nothing either: run the collection only on a
 * store that the daemon alone fills, or pin such blobs first.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "daemon.h"

typedef struct gc_work {
    int64_t grace;
    bool dry_run;
    bool jobs_running;
    uint64_t examined, kept_held, kept_referenced, kept_recent, removed_bytes;
    qd_digest *cand;
    size_t n_cand, cap_cand;
    qd_digest *removed;
    size_t n_removed;
    qd_gc_stats gc;
    qd_error_saved err;
} gc_work;

static void gc_work_free(void *p)
{
    gc_work *w = p;
    qd_free(w->cand);
    qd_free(w->removed);
    qd_free(w);
}

static int running_job(const char *id, const char *json, size_t len, void *payload)
{
    (void)id;
    (void)len;
    /* job records are compact JSON written by jobs.c: the state is a plain field */
    if (strstr(json, "\"state\":\"running\""))
        *(bool *)payload = true;
    return 0;
}

static int candidate(const qd_blob_info *info, void *payload)
{
    gc_work *w = payload;
    int64_t now = (int64_t)time(NULL);
    w->examined++;
    if (info->n_referrers) {
        w->kept_referenced++;
        return 0;
    }
    if (info->created > now - w->grace) {
        w->kept_recent++;
        return 0;
    }
    if (w->n_cand == w->cap_cand) {
        size_t cap = w->cap_cand ? 2 * w->cap_cand : 64;
        qd_digest *n = qd_reallocarray(w->cand, cap, sizeof(*n));
        if (!n)
            return QD_ENOMEM;
        w->cand = n;
        w->cap_cand = cap;
    }
    w->cand[w->n_cand++] = info->digest;
    return 0;
}

static void gc_run(void *p)
{
    qd_req *r = p;
    gc_work *w = r->work;
    qd_store *s = r->srv->store;
    int rc;

    if ((rc = qd_job_list(s, running_job, &w->jobs_running)) < 0)
        goto fail;
    if (w->jobs_running)
        return;
    if ((rc = qd_store_list(s, candidate, w)) < 0)
        goto fail;
    if (w->n_cand && !(w->removed = qd_mallocarray(w->n_cand, sizeof(qd_digest)))) {
        rc = QD_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < w->n_cand; i++) {
        const qd_digest *d = &w->cand[i];
        qd_blob_info info;
        bool held;
        char ds[QD_DIGEST_STR_LEN + 1];
        if (qd_registry_blob_held(&held, s, d) < 0 || held) {
            w->kept_held++;
            continue;
        }
        if (qd_store_stat(s, d, &info) < 0)
            continue; /* gone meanwhile */
        if (!w->dry_run) {
            /* refused (QD_EREFERENCED) when something referenced it meanwhile: then it stays */
            if (qd_store_remove(s, d) < 0) {
                w->kept_referenced++;
                continue;
            }
            qd_log(QD_LOG_INFO, "gc", "req=0 removed orphan blob %s size=%llu", qd_digest_format(ds, d),
                   (unsigned long long)info.size);
        }
        w->removed[w->n_removed++] = *d;
        w->removed_bytes += info.size;
    }
    if (!w->dry_run && w->n_removed && (rc = qd_store_gc(s, &w->gc)) < 0)
        goto fail;
    qd_error_clear();
    return;
fail:
    qd_error_save(&w->err, rc);
}

static void gc_done(void *p)
{
    qd_req *r = p;
    gc_work *w = r->work;
    json_t *o, *arr;
    char *text;
    if (r->dead) {
        qd_reply(r, 200, NULL);
        return;
    }
    if (qd_error_restore(&w->err) < 0) {
        qd_reply_err(r, w->err.code, "UNKNOWN");
        return;
    }
    if (w->jobs_running) {
        qd_reply_json(r, 409, "{\"errors\":[{\"code\":\"JOBS_RUNNING\",\"message\":\"a quantize job is running; "
                              "orphan collection waits until none is\",\"detail\":{}}]}");
        return;
    }
    arr = json_array();
    for (size_t i = 0; i < w->n_removed; i++) {
        char ds[QD_DIGEST_STR_LEN + 1];
        json_array_append_new(arr, json_string(qd_digest_format(ds, &w->removed[i])));
    }
    o = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I}", "dry_run", w->dry_run, "grace", (json_int_t)w->grace,
                  "examined", (json_int_t)w->examined, "kept_held", (json_int_t)w->kept_held, "kept_referenced",
                  (json_int_t)w->kept_referenced, "kept_recent", (json_int_t)w->kept_recent, "removed", arr,
                  "removed_bytes", (json_int_t)w->removed_bytes, "chunks_freed", (json_int_t)w->gc.chunks_freed,
                  "chunk_bytes_freed", (json_int_t)w->gc.bytes_freed);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    qd_reply_json(r, 200, text);
    free(text); /* jansson */
}

void qd_gc_handle(qd_req *r)
{
    gc_work *w;
    const char *g, *dry;
    char *end;
    r->route = "gc";
    if (r->method != EVHTTP_REQ_POST) {
        qd_reply_oci(r, "UNSUPPORTED", "POST /v1/gc", NULL);
        return;
    }
    if (!qd_auth_check(r, NULL, QD_SCOPE_ADMIN))
        return;
    if (!(w = qd_calloc(1, sizeof(*w)))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    r->work = w;
    r->work_free = gc_work_free;
    w->grace = 3600;
    if ((g = qd_req_query(r, "grace"))) {
        long long v = strtoll(g, &end, 10);
        if (!*g || *end || v < 0 || v > 100LL * 365 * 86400) {
            qd_reply_json(r, 400, "{\"errors\":[{\"code\":\"GRACE_INVALID\",\"message\":\"grace is a number of "
                                  "seconds\",\"detail\":{}}]}");
            return;
        }
        w->grace = v;
    }
    dry = qd_req_query(r, "dry_run");
    w->dry_run = dry && (!strcmp(dry, "1") || !strcmp(dry, "true"));
    if (qd_req_offload(r, gc_run, gc_done) < 0)
        qd_reply_oci(r, "UNAVAILABLE", "the worker pool is full", NULL);
}
