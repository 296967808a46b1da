/*
 * ingest.c - ingest signing: a pushed checkpoint the pusher did not sign gets a checkpoint statement signed by
 * the daemon key.
 *
 * A checkpoint is a ModelPack manifest (artifactType application/vnd.cncf.model.manifest.v1+json) pushed without
 * a subject. OCI clients push a signature after the manifest it signs (as a referrer), so at manifest PUT time the
 * daemon cannot know whether one is coming: it waits `ingest-sign-delay` seconds, then looks at the referrers of
 * the manifest. When the repository holds a Sigstore bundle referrer for it (the pusher signed, e.g. `quant push
 * --sign`), nothing is done. Otherwise the daemon builds an in-toto statement with the
 * https://quantd.dev/checkpoint/v1 predicate (origin oci <repo>@<digest>, license NOASSERTION, precision from the
 * ModelPack config when it names one, else f32, the layer files with their digests and sizes, created_at, builder
 * id and key id), signs it with the daemon key (the one that signs variants), and pushes it as a referrer of the
 * checkpoint manifest: the bundle blob, the empty config, and a manifest with artifactType
 * application/vnd.dev.sigstore.bundle.v0.3+json and annotation dev.sigstore.bundle.predicateType, exactly what
 * `quant push --sign` makes. `quant pull` and `quant verify` then check it against a policy trusting the daemon key.
 *
 * The pending list lives in memory (loop thread): a checkpoint pushed shortly before a restart is not signed
 * after it. The signing runs on a worker (store reads and writes).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs_int.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_BUNDLE "application/vnd.dev.sigstore.bundle.v0.3+json"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"

typedef struct pending {
    char repo[QD_REPO_MAX + 1];
    qd_digest d;
    uint64_t due_ns;
    struct pending *next;
    /* result of the worker */
    int rc;
    bool signed_by_pusher;
    qd_digest ref;
    qd_error_saved err; /* rc's message where it failed */
    char pusher_why[512]; /* why the pusher's bundle did not count (trust policy), or "" */
} pending;

static pending *g_head;  /* loop thread only; in push order, so in due order */
static struct event *g_timer;
static qd_server *g_srv;

static void arm(void);

/* ---- the worker: look for the pusher's bundle, else sign ------------------------------------------------------- */

#define MAX_PUSHER_BUNDLES 8

typedef struct found_bundles {
    qd_digest d[MAX_PUSHER_BUNDLES]; /* the bundle referrer manifests (the first few) */
    size_t n, total;
} found_bundles;

static int has_bundle(const qd_manifest_info *info, void *payload)
{
    found_bundles *f = payload;
    if (f->n < MAX_PUSHER_BUNDLES)
        f->d[f->n++] = info->digest;
    f->total++;
    return 0;
}

/* Does one of the pusher's bundle referrers verify under the trust policy, for exactly the checkpoint's files?
 * QD_OK when one does; otherwise an error whose message says why the last one did not. */
static int pusher_bundle_ok(qd_store *s, const char *repo, const found_bundles *f, const qd_policy *pol,
                            const qd_subject *subs, size_t n_subs)
{
    int rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "no bundle referrer");
    for (size_t i = 0; i < f->n; i++) {
        qd_buf man = QD_BUF_INIT(1u << 20), b = QD_BUF_INIT(16u << 20);
        qd_manifest_info info;
        qd_envelope *env = NULL;
        qd_verify_failure why;
        qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
        char ds[QD_DIGEST_STR_LEN + 1];
        json_t *j = NULL;
        qd_digest bd;
        const char *bs;
        vo.namespace_name = repo;
        if ((rc = qd_registry_manifest_get(&info, &man, s, repo, qd_digest_format(ds, &f->d[i]))) == QD_OK) {
            j = json_loadb((const char *)man.ptr, man.len, 0, NULL);
            bs = json_string_value(json_object_get(json_array_get(json_object_get(j, "layers"), 0), "digest"));
            if (!bs || qd_digest_parse(&bd, bs) < 0)
                rc = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "bundle referrer %s has no bundle layer", ds);
            else if ((rc = qd_store_get(s, &bd, 0, UINT64_MAX, qd_buf_sink, &b)) == QD_OK &&
                     (rc = qd_envelope_parse(&env, b.ptr, b.len, qd_policy_max_payload(pol))) == QD_OK &&
                     (rc = qd_verify(NULL, &why, pol, env, subs, n_subs, &vo)) < 0)
                rc = qd_error_set(rc, QD_EC_VERIFY, "bundle referrer %s: key %s, subject %s: %s", ds, why.key_id,
                                  why.subject, why.reason);
        }
        json_decref(j);
        qd_envelope_free(env);
        qd_buf_dispose(&man);
        qd_buf_dispose(&b);
        if (rc == QD_OK)
            return QD_OK;
    }
    return rc;
}

static int put_linked(qd_store *s, const char *repo, const void *data, size_t len, qd_digest *d)
{
    int rc = qd_store_put_buf(s, data, len, NULL, d);
    return rc < 0 ? rc : qd_registry_blob_link(s, repo, d);
}

/* The checkpoint predicate from the manifest and its config. */
static json_t *predicate(qd_store *s, const char *repo, const qd_digest *d, json_t *man, qd_subject **subs,
                         size_t *n_subs)
{
    qd_jobs *J = g_srv->jobs;
    json_t *layers = json_object_get(man, "layers"), *files = json_array(), *cfgdesc, *pred;
    const char *precision = "f32";
    char uri[QD_REPO_MAX + QD_DIGEST_STR_LEN + 8], ds[QD_DIGEST_STR_LEN + 1], now[32];
    size_t n = json_array_size(layers);
    qd_digest cd;

    *subs = NULL;
    *n_subs = 0;
    if (!files || !n || !(*subs = qd_calloc(n, sizeof(**subs)))) {
        json_decref(files);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        const char *dg = json_string_value(json_object_get(l, "digest"));
        const char *name = json_string_value(json_object_get(json_object_get(l, "annotations"),
                                                             "org.cncf.model.filepath"));
        json_int_t size = json_integer_value(json_object_get(l, "size"));
        if (!dg || qd_digest_parse(&(*subs)[i].digest, dg) < 0) {
            json_decref(files);
            return NULL;
        }
        /* a file without a name is named by its digest; names must be distinct in a statement */
        for (size_t j = 0; name && j < i; j++)
            if (!strcmp((*subs)[j].name, name))
                name = NULL;
        (*subs)[i].name = name ? name : dg;
        json_array_append_new(files, json_pack("{s:s,s:s,s:I}", "name", (*subs)[i].name, "digest", dg, "size",
                                               size));
    }
    *n_subs = n;
    cfgdesc = json_object_get(man, "config");
    if (json_string_value(json_object_get(cfgdesc, "digest")) &&
        qd_digest_parse(&cd, json_string_value(json_object_get(cfgdesc, "digest"))) == QD_OK) {
        qd_buf b = QD_BUF_INIT(0);
        b.max = 1 << 20;
        if (qd_store_get(s, &cd, 0, UINT64_MAX, qd_buf_sink, &b) == QD_OK) {
            json_t *c = json_loadb((const char *)b.ptr, b.len, 0, NULL);
            const char *p = json_string_value(json_object_get(json_object_get(c, "config"), "precision"));
            if (p && (!strcmp(p, "f16") || !strcmp(p, "bf16") || !strcmp(p, "f32")))
                precision = !strcmp(p, "f16") ? "f16" : !strcmp(p, "bf16") ? "bf16" : "f32";
            json_decref(c);
        }
        qd_buf_dispose(&b);
        qd_error_clear();
    }
    snprintf(uri, sizeof(uri), "%s@%s", repo, qd_digest_format(ds, d));
    qd_jobs__now_text(now);
    pred = json_pack("{s:{s:s,s:s},s:s,s:s,s:o,s:s,s:{s:s,s:s}}", "origin", "kind", "oci", "uri", uri, "license",
                     "NOASSERTION", "precision", precision, "files", files, "created_at", now, "builder", "id",
                     J->builder_id, "key_id", J->key_id);
    return pred;
}

static void sign_work(void *p)
{
    pending *it = p;
    qd_store *s = g_srv->store;
    qd_jobs *J = g_srv->jobs;
    qd_buf man = QD_BUF_INIT(0), stmt = QD_BUF_INIT(0), bundle = QD_BUF_INIT(0);
    qd_manifest_info info;
    json_t *root = NULL, *pred = NULL, *rm = NULL;
    qd_subject *subs = NULL;
    size_t n_subs = 0;
    qd_envelope *env = NULL;
    char *pj = NULL, *rtext = NULL, ds[QD_DIGEST_STR_LEN + 1], bs[QD_DIGEST_STR_LEN + 1], es[QD_DIGEST_STR_LEN + 1];
    qd_digest blobs[2];
    found_bundles found;
    qd_policy *pol = NULL;
    int rc;

    if (!J || !J->key) {
        rc = qd_error_set(QD_EINVAL, QD_EC_NONE, "no daemon signing key");
        goto done;
    }
    memset(&found, 0, sizeof(found));
    if ((rc = qd_registry_referrers(s, it->repo, &it->d, MT_BUNDLE, has_bundle, &found)) < 0)
        goto done;
    if (found.total && (!g_srv->cfg->trust || !*g_srv->cfg->trust)) { /* no trust policy: the pusher's signature is left as it is */
        it->signed_by_pusher = true;
        goto done;
    }
    qd_digest_format(ds, &it->d);
    man.max = 64u << 20;
    if ((rc = qd_registry_manifest_get(&info, &man, s, it->repo, ds)) < 0)
        goto done; /* deleted meanwhile */
    if (!(root = json_loadb((const char *)man.ptr, man.len, 0, NULL)) ||
        !(pred = predicate(s, it->repo, &it->d, root, &subs, &n_subs)) || !(pj = json_dumps(pred, JSON_COMPACT))) {
        rc = qd_error_set(QD_EINVAL, QD_EC_NONE, "cannot build a checkpoint statement from the manifest");
        goto done;
    }
    /* with a trust policy, the pusher's bundle counts only when it verifies for exactly these files */
    if (found.total) {
        if ((rc = qd_policy_load(&pol, g_srv->cfg->trust)) < 0)
            goto done;
        if (pusher_bundle_ok(s, it->repo, &found, pol, subs, n_subs) == QD_OK) {
            it->signed_by_pusher = true;
            goto done;
        }
        snprintf(it->pusher_why, sizeof(it->pusher_why), "%s", qd_error_last()->message);
        qd_error_clear();
    }
    if ((rc = qd_statement_build(&stmt, subs, n_subs, QD_PREDICATE_CHECKPOINT, pj)) < 0 ||
        (rc = qd_envelope_new(&env, QD_INTOTO_PAYLOAD_TYPE, stmt.ptr, stmt.len)) < 0 ||
        (rc = qd_envelope_sign(env, J->key)) < 0 || (rc = qd_envelope_write_bundle(&bundle, env)) < 0)
        goto done;
    if ((rc = put_linked(s, it->repo, "{}", 2, &blobs[0])) < 0 ||
        (rc = put_linked(s, it->repo, bundle.ptr, bundle.len, &blobs[1])) < 0)
        goto done;
    rm = json_pack("{s:i,s:s,s:s,s:{s:s,s:s,s:i},s:[{s:s,s:s,s:I}],s:{s:s,s:s,s:I},s:{s:s,s:s}}", "schemaVersion",
                   2, "mediaType", MT_MANIFEST, "artifactType", MT_BUNDLE, "config", "mediaType", MT_EMPTY, "digest",
                   qd_digest_format(es, &blobs[0]), "size", 2, "layers", "mediaType", MT_BUNDLE, "digest",
                   qd_digest_format(ds, &blobs[1]), "size", (json_int_t)bundle.len, "subject", "mediaType",
                   info.media_type, "digest", qd_digest_format(bs, &it->d), "size", (json_int_t)info.size,
                   "annotations", "dev.sigstore.bundle.predicateType", QD_PREDICATE_CHECKPOINT,
                   "dev.quantd.signed-by", "daemon");
    if (!rm || !(rtext = json_dumps(rm, JSON_COMPACT))) {
        rc = QD_ENOMEM;
        goto done;
    }
    {
        qd_manifest_desc m = {rtext, strlen(rtext), MT_MANIFEST, MT_BUNDLE,
                              "{\"dev.sigstore.bundle.predicateType\":\"" QD_PREDICATE_CHECKPOINT
                              "\",\"dev.quantd.signed-by\":\"daemon\"}",
                              &it->d, blobs, 2, NULL, 0, NULL};
        /* a publish entry of the signed log around the store transaction, as for a pushed bundle (dlog.c) */
        qd_dlog_item li;
        memset(&li, 0, sizeof(li));
        li.kind = QD_REPLOG_PUBLISH;
        snprintf(li.name, sizeof(li.name), "%s", it->repo);
        li.manifest = it->d;
        li.bundle = blobs[1];
        if ((rc = qd_dlog_begin(g_srv->dlog, &li, 1)) < 0)
            goto done;
        rc = qd_registry_manifest_put(&it->ref, s, it->repo, NULL, &m, NULL);
        int lrc = qd_dlog_end(g_srv->dlog, &li, 1, rc);
        if (rc == QD_OK && lrc < 0)
            rc = lrc;
    }
done:
    it->rc = rc;
    qd_error_save(&it->err, rc);
    free(pj);    /* jansson */
    free(rtext); /* jansson */
    json_decref(rm);
    json_decref(pred);
    json_decref(root);
    qd_free(subs);
    qd_envelope_free(env);
    qd_policy_free(pol);
    qd_buf_dispose(&man);
    qd_buf_dispose(&stmt);
    qd_buf_dispose(&bundle);
}

static void sign_done(void *p)
{
    pending *it = p;
    char ds[QD_DIGEST_STR_LEN + 1], rs[QD_DIGEST_STR_LEN + 1];
    qd_digest_format(ds, &it->d);
    if (it->rc < 0)
        qd_log(QD_LOG_WARN, "ingest", "req=0 checkpoint %s@%s not signed: %s", it->repo, ds, it->err.message);
    else if (it->signed_by_pusher)
        qd_log(QD_LOG_INFO, "ingest", "req=0 checkpoint %s@%s signed by its pusher", it->repo, ds);
    else {
        if (it->pusher_why[0])
            qd_log(QD_LOG_WARN, "ingest", "req=0 checkpoint %s@%s: the pusher's bundle is not accepted by the trust "
                   "policy (%s)", it->repo, ds, it->pusher_why);
        qd_log(QD_LOG_INFO, "ingest", "req=0 checkpoint %s@%s signed by the daemon referrer=%s", it->repo, ds,
               qd_digest_format(rs, &it->ref));
    }
    qd_free(it);
}

/* ---- the pending list (loop thread) ------------------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    uint64_t now = qd_now_ns();
    (void)fd;
    (void)what;
    (void)arg;
    while (g_head && g_head->due_ns <= now) {
        pending *it = g_head;
        g_head = it->next;
        if (qd_pool_submit(g_srv->pool, sign_work, sign_done, it) < 0) {
            qd_log(QD_LOG_WARN, "ingest", "req=0 checkpoint %s not signed: the worker pool refused", it->repo);
            qd_free(it);
        }
    }
    arm();
}

static void arm(void)
{
    uint64_t now = qd_now_ns(), wait;
    struct timeval tv;
    if (!g_head || !g_timer)
        return;
    wait = g_head->due_ns > now ? g_head->due_ns - now : 0;
    tv.tv_sec = (time_t)(wait / 1000000000u);
    tv.tv_usec = (suseconds_t)(wait % 1000000000u / 1000u);
    evtimer_add(g_timer, &tv);
}

void qd_ingest_pushed(qd_server *srv, const char *repo, const qd_digest *d)
{
    pending *it, **tail;
    if (srv->cfg->ingest_sign_delay < 0 || !srv->jobs || srv->stopping)
        return;
    if (!g_timer) {
        g_srv = srv;
        if (!(g_timer = evtimer_new(srv->base, on_timer, NULL)))
            return;
    }
    if (!(it = qd_calloc(1, sizeof(*it))))
        return;
    snprintf(it->repo, sizeof(it->repo), "%s", repo);
    it->d = *d;
    it->due_ns = qd_now_ns() + (uint64_t)srv->cfg->ingest_sign_delay * 1000000000u;
    for (tail = &g_head; *tail; tail = &(*tail)->next)
        ;
    *tail = it;
    if (g_head == it)
        arm();
}

void qd_ingest_stop(void)
{
    while (g_head) {
        pending *it = g_head;
        g_head = it->next;
        qd_free(it);
    }
    if (g_timer)
        event_free(g_timer);
    g_timer = NULL;
    g_srv = NULL;
}
