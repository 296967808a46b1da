/*
 * mirror.c - `quantd --mirror-of URL --mirror-log-key PUB --trust POLICY`: follow upstream daemons' signed logs and
 * publish what they publish, locally, one entry at a time (docs/LOG.md, "Mirrors").
 *
 * One thread per upstream runs a sync every mirror-interval seconds:
 *
 *   1. timestamp   GET /v1/log/timestamp; its note must verify with the upstream's log key, must not be expired
 *                  (freeze: the mirror reports itself stale and applies nothing) and must not be older than the
 *                  last one seen (rollback) - qd_fresh_verify with the state file fresh.state
 *   2. fetch       libgit2 fetch of URL/log.git into staging.git (refs/heads/main there is the staging ref)
 *   3. verify      qd_replog_verify of the staging log against the last verified state (verified.state): linear,
 *                  every commit SSHSIG-signed by the log key, every entry well formed, every bundle verified under
 *                  the trust policy, and a fast-forward of the verified prefix (same head commit, same Merkle root:
 *                  a rewritten or shorter history is refused); the upstream's consistency proof from the last
 *                  verified size is checked too
 *   4. match       the timestamp must describe exactly the verified state (size, root, tag map digest): the tags
 *                  applied are those of one signed state (mix and match refused)
 *   5. apply       each entry not applied yet, in order: a tag or a publish fetches its manifest by digest over the
 *                  OCI API (the bytes must hash to the digest the log names), the missing blobs (a few in parallel,
 *                  resumable from a .part file, digest-checked), the bundle's referrer manifest (its bundle layer
 *                  must be the bundle in the log); then ONE store transaction (qd_registry_publish) wrapped by the
 *                  daemon's own log (dlog.c), so the mirror's log can be mirrored in turn (chains A -> B -> C);
 *                  the applied count (applied) moves after the transaction. Entries outside the upstream's
 *                  namespaces and key entries apply nothing.
 *
 * A crash anywhere leaves either the old state files or the new ones (each is replaced atomically); an entry whose
 * transaction committed but whose applied count did not move is applied again, which changes nothing (the store
 * and the log both skip what they hold already).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "daemon.h"
#include "qd/replog.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MAX_BLOBS 64
#define MANIFEST_MAX (4u << 20)

typedef struct upstream {
    qd_mirror *m;
    int idx;
    char url[1024];
    char ns[1024];          /* "ns1,ns2" or "" (every namespace) */
    char dir[2048];         /* <store>/mirror/<idx> */
    qd_key *log_key;
    pthread_t th;
    bool started;
    /* status, under m->mu */
    uint64_t upstream_size, verified, applied;
    int64_t last_sync, last_ok, ts_expires, lag_since;
    bool stale;
    uint64_t syncs, refusals;
    char last_error[1024];
    char origin[256];
} upstream;

struct qd_mirror {
    qd_server *srv;
    qd_policy *policy;
    upstream *ups;
    size_t n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

/* Prefix the thread's error message (copied first: qd_error_set must not format from its own buffer). */
static int wrap_error(int rc, const char *prefix)
{
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
    return qd_error_set(rc, QD_EC_VERIFY, "%s%s", prefix, msg);
}

/* ---- small files -------------------------------------------------------------------------------------------- */

static int write_atomic(const char *path, const char *text)
{
    char tmp[4200];
    int fd;
    size_t n = strlen(text);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
    if (write(fd, text, n) != (ssize_t)n || fsync(fd) < 0) {
        close(fd);
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rename(tmp, path) < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    return QD_OK;
}

static int read_small(char *out, size_t cap, const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n;
    out[0] = 0;
    if (!f)
        return QD_ENOTFOUND;
    n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = 0;
    return QD_OK;
}

static void upath(char *out, size_t cap, const upstream *u, const char *name)
{
    snprintf(out, cap, "%s/%s", u->dir, name);
}

/* Entries of the upstream's log applied here so far (its "applied" file; 0 when there is none yet). */
static uint64_t applied_count(const upstream *u)
{
    char path[2300], a[64];
    upath(path, sizeof(path), u, "applied");
    return read_small(a, sizeof(a), path) == QD_OK ? strtoull(a, NULL, 10) : 0;
}

/* ---- HTTP (libcurl) ------------------------------------------------------------------------------------------- */

typedef struct sink {
    qd_buf *buf;
    int fd;
    size_t max;
    bool over;
} sink;

static size_t on_data(char *p, size_t sz, size_t nm, void *payload)
{
    sink *s = payload;
    size_t n = sz * nm;
    if (s->buf) {
        if (s->buf->len + n > s->max || qd_buf_put(s->buf, p, n) < 0) {
            s->over = true;
            return 0;
        }
        return n;
    }
    return write(s->fd, p, n) == (ssize_t)n ? n : 0;
}

/* GET url into out (at most max bytes) or append to fd from offset `from` (Range). Sets *status. */
static int http_get(long *status, const char *url, qd_buf *out, size_t max, int fd, uint64_t from,
                    const char *accept)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    sink s = {out, fd, max, false};
    char range[64], hv[512];
    CURLcode cr;
    *status = 0;
    if (!c)
        return qd_error_set(QD_ENOMEM, QD_EC_NET, "curl init");
    if (accept) {
        snprintf(hv, sizeof(hv), "Accept: %s", accept);
        h = curl_slist_append(h, hv);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    if (h)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (from) {
        snprintf(range, sizeof(range), "%" PRIu64 "-", from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (s.over)
        return qd_error_set(QD_EFULL, QD_EC_NET, "GET %s: the answer is larger than %zu bytes", url, max);
    if (cr != CURLE_OK)
        return qd_error_set(QD_EIO, QD_EC_NET, "GET %s: %s", url, curl_easy_strerror(cr));
    return QD_OK;
}

static int get_ok(qd_buf *out, const char *url, size_t max, const char *accept)
{
    long st;
    int rc = http_get(&st, url, out, max, -1, 0, accept);
    if (rc == QD_OK && st != 200)
        rc = qd_error_set(st == 404 ? QD_ENOTFOUND : QD_EIO, QD_EC_NET, "GET %s: HTTP %ld", url, st);
    return rc;
}

/* ---- blobs: resumable, digest-checked, a few at once ------------------------------------------------------------ */

typedef struct blob_job {
    upstream *u;
    const char *repo;
    const qd_digest *d;
    size_t n;
    size_t next;
    pthread_mutex_t mu;
    int rc;
    char msg[512];
} blob_job;

static int fetch_blob(upstream *u, const char *repo, const qd_digest *d)
{
    qd_store *s = u->m->srv->store;
    char hex[65], part[2300], url[2048], ds[QD_DIGEST_STR_LEN + 1];
    struct stat st;
    qd_put_options po = QD_PUT_OPTIONS_INIT;
    long status;
    int fd, rc;
    if (qd_store_has(s, d))
        return QD_OK;
    snprintf(part, sizeof(part), "%s/blobs/%s.part", u->dir, qd_digest_hex(hex, d));
    if ((fd = open(part, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", part, strerror(errno));
    fstat(fd, &st);
    snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", u->url, repo, qd_digest_format(ds, d));
    rc = http_get(&status, url, NULL, 0, fd, (uint64_t)st.st_size, NULL);
    if (rc == QD_OK && status == 416) { /* the part is complete already */
        rc = QD_OK;
    } else if (rc == QD_OK && status == 200 && st.st_size > 0) {
        /* the server ignored the range: start again */
        close(fd);
        unlink(part);
        return fetch_blob(u, repo, d);
    } else if (rc == QD_OK && status != 200 && status != 206) {
        rc = qd_error_set(status == 404 ? QD_ENOTFOUND : QD_EIO, QD_EC_NET, "GET %s: HTTP %ld", url, status);
    }
    if (rc < 0) { /* keep the part: the next sync resumes it */
        close(fd);
        return rc;
    }
    lseek(fd, 0, SEEK_SET);
    po.expect = d;
    rc = qd_store_put_fd(s, fd, &po, NULL);
    close(fd);
    if (rc == QD_EDIGEST || rc == QD_ETRUNCATED || rc == QD_EINVAL)
        rc = qd_error_set(QD_EDIGEST, QD_EC_VERIFY, "blob %s from the upstream does not match its digest (tampered "
                                                    "or corrupt): refused", ds);
    unlink(part); /* stored, or wrong: fetch it whole next time */
    return rc;
}

static void *blob_worker(void *arg)
{
    blob_job *j = arg;
    for (;;) {
        size_t i;
        int rc;
        pthread_mutex_lock(&j->mu);
        i = j->next++;
        if (j->rc < 0)
            i = j->n;
        pthread_mutex_unlock(&j->mu);
        if (i >= j->n)
            return NULL;
        if ((rc = fetch_blob(j->u, j->repo, &j->d[i])) < 0) {
            pthread_mutex_lock(&j->mu);
            if (j->rc == QD_OK) {
                j->rc = rc;
                snprintf(j->msg, sizeof(j->msg), "%s", qd_error_last()->message);
            }
            pthread_mutex_unlock(&j->mu);
        }
    }
}

static int fetch_blobs(upstream *u, const char *repo, const qd_digest *d, size_t n)
{
    blob_job j;
    pthread_t th[8];
    size_t nt = (size_t)u->m->srv->cfg->mirror_parallel, started = 0;
    memset(&j, 0, sizeof(j));
    j.u = u;
    j.repo = repo;
    j.d = d;
    j.n = n;
    pthread_mutex_init(&j.mu, NULL);
    if (nt > n)
        nt = n;
    if (nt > 8)
        nt = 8;
    for (size_t i = 1; i < nt; i++)
        if (pthread_create(&th[i], NULL, blob_worker, &j) == 0)
            started = i;
    blob_worker(&j);
    for (size_t i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.rc < 0)
        return qd_error_set(j.rc, QD_EC_NET, "%s", j.msg);
    return QD_OK;
}

/* ---- manifests ------------------------------------------------------------------------------------------------ */

typedef struct man {
    qd_buf bytes;
    qd_digest digest;
    char media_type[QD_MEDIA_TYPE_MAX + 1];
    char artifact_type[QD_MEDIA_TYPE_MAX + 1];
    char *annotations; /* jansson */
    bool has_subject;
    qd_digest subject;
    qd_digest blobs[MAX_BLOBS];
    size_t n_blobs;
    qd_manifest_desc desc;
} man;

static void man_dispose(man *m)
{
    qd_buf_dispose(&m->bytes);
    free(m->annotations); /* jansson */
}

static int desc_digest(qd_digest *out, json_t *desc)
{
    const char *s = json_string_value(json_object_get(desc, "digest"));
    return s ? qd_digest_parse(out, s) : QD_EINVAL;
}

/* GET a manifest by digest from the upstream; its bytes must hash to d. */
static int fetch_manifest(man *m, upstream *u, const char *repo, const qd_digest *d)
{
    char url[2048], ds[QD_DIGEST_STR_LEN + 1];
    qd_digest got;
    json_t *j = NULL, *v, *l;
    size_t i;
    int rc;
    memset(m, 0, sizeof(*m));
    qd_buf_init(&m->bytes, 0);
    m->digest = *d;
    snprintf(url, sizeof(url), "%s/v2/%s/manifests/%s", u->url, repo, qd_digest_format(ds, d));
    if ((rc = get_ok(&m->bytes, url, MANIFEST_MAX, MT_MANIFEST)) < 0)
        return rc;
    if ((rc = qd_sha256_buf(&got, m->bytes.ptr, m->bytes.len)) < 0)
        return rc;
    if (!qd_digest_equal(&got, d))
        return qd_error_set(QD_EDIGEST, QD_EC_VERIFY, "the upstream served other bytes for manifest %s (mix and "
                                                      "match or tampering): refused", ds);
    if (!(j = json_loadb(m->bytes.ptr, m->bytes.len, 0, NULL)) || !json_is_object(j))
        goto bad;
    v = json_object_get(j, "mediaType");
    snprintf(m->media_type, sizeof(m->media_type), "%s", json_is_string(v) ? json_string_value(v) : MT_MANIFEST);
    v = json_object_get(j, "artifactType");
    if (!json_is_string(v))
        v = json_object_get(json_object_get(j, "config"), "mediaType");
    if (json_is_string(v))
        snprintf(m->artifact_type, sizeof(m->artifact_type), "%s", json_string_value(v));
    if (desc_digest(&m->blobs[m->n_blobs++], json_object_get(j, "config")) < 0 ||
        !json_is_array(json_object_get(j, "layers")) || json_array_size(json_object_get(j, "layers")) >= MAX_BLOBS)
        goto bad;
    json_array_foreach(json_object_get(j, "layers"), i, l)
    {
        if (desc_digest(&m->blobs[m->n_blobs++], l) < 0)
            goto bad;
    }
    if ((v = json_object_get(j, "subject"))) {
        if (desc_digest(&m->subject, v) < 0)
            goto bad;
        m->has_subject = true;
    }
    if (json_is_object(v = json_object_get(j, "annotations")))
        m->annotations = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    memset(&m->desc, 0, sizeof(m->desc));
    m->desc.data = m->bytes.ptr;
    m->desc.len = m->bytes.len;
    m->desc.media_type = m->media_type;
    m->desc.artifact_type = m->artifact_type[0] ? m->artifact_type : NULL;
    m->desc.annotations = m->annotations;
    m->desc.subject = m->has_subject ? &m->subject : NULL;
    m->desc.blobs = m->blobs;
    m->desc.n_blobs = m->n_blobs;
    return QD_OK;
bad:
    json_decref(j);
    return qd_error_set(QD_EINVAL, QD_EC_NET, "manifest %s from the upstream is not an image manifest we can mirror",
                        ds);
}

/* The bundle's referrer manifest on the upstream: artifactType bundle, first layer = the bundle in the log. */
static int fetch_referrer(man *r, upstream *u, const char *repo, const qd_digest *subject, const qd_digest *bundle)
{
    qd_buf idx = QD_BUF_INIT(0);
    char url[2048], ds[QD_DIGEST_STR_LEN + 1];
    json_t *j = NULL, *e;
    size_t i;
    int rc;
    snprintf(url, sizeof(url), "%s/v2/%s/referrers/%s", u->url, repo, qd_digest_format(ds, subject));
    if ((rc = get_ok(&idx, url, MANIFEST_MAX, "application/vnd.oci.image.index.v1+json")) < 0)
        goto done;
    rc = QD_ENOTFOUND;
    if ((j = json_loadb(idx.ptr, idx.len, 0, NULL)))
        json_array_foreach(json_object_get(j, "manifests"), i, e)
        {
            qd_digest d;
            const char *at = json_string_value(json_object_get(e, "artifactType"));
            if (!at || strcmp(at, QD_BUNDLE_MEDIA_TYPE) || desc_digest(&d, e) < 0)
                continue;
            if ((rc = fetch_manifest(r, u, repo, &d)) < 0)
                goto done;
            if (r->n_blobs >= 2 && qd_digest_equal(&r->blobs[1], bundle))
                goto done; /* found: rc == QD_OK */
            man_dispose(r);
            rc = QD_ENOTFOUND;
        }
    qd_error_set(QD_ENOTFOUND, QD_EC_NET, "the upstream lists no referrer of %s holding the bundle in its log", ds);
done:
    json_decref(j);
    qd_buf_dispose(&idx);
    return rc;
}

/* ---- applying one entry ------------------------------------------------------------------------------------------ */

static bool ns_served(const upstream *u, const char *repo)
{
    size_t nl = strcspn(repo, "/");
    const char *p = u->ns;
    if (!p[0])
        return true;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == nl && !strncmp(p, repo, n))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static int publish_locally(upstream *u, const char *repo, man *ms, size_t n_ms, const char *tag,
                           const qd_dlog_item *li, size_t nl)
{
    qd_server *srv = u->m->srv;
    qd_publish_item items[2];
    qd_digest blobs[2 * MAX_BLOBS];
    size_t nb = 0;
    int rc;
    memset(items, 0, sizeof(items));
    for (size_t i = 0; i < n_ms; i++) {
        items[i].m = &ms[i].desc;
        items[i].digest = ms[i].digest;
        items[i].tag = i == 0 ? tag : NULL;
        for (size_t k = 0; k < ms[i].n_blobs; k++)
            blobs[nb++] = ms[i].blobs[k];
        if ((rc = qd_store_put_buf(srv->store, ms[i].bytes.ptr, ms[i].bytes.len, &ms[i].digest, NULL)) < 0)
            return rc;
    }
    /* bundles with the variant predicate are indexed for audit in the same transaction, as on the origin */
    qd_audit_entry *ae[2] = {NULL, NULL};
    for (size_t i = 0; i < n_ms && i < 2; i++)
        ms[i].desc.audit = ae[i] = qd_bundle_audit_entry(srv->store, ms[i].has_subject,
                                                         ms[i].artifact_type[0] ? ms[i].artifact_type : NULL,
                                                         ms[i].blobs, ms[i].n_blobs);
    if ((rc = qd_dlog_begin(srv->dlog, li, nl)) < 0)
        goto out;
    rc = qd_registry_publish(srv->store, repo, blobs, nb, items, n_ms, ms[0].has_subject ? &ms[0].digest : NULL,
                             ms[0].has_subject ? &ms[0].subject : NULL, NULL, NULL);
    {
        int lrc = qd_dlog_end(srv->dlog, li, nl, rc);
        if (rc == QD_OK)
            rc = lrc;
    }
out:
    for (size_t i = 0; i < 2; i++) {
        if (i < n_ms)
            ms[i].desc.audit = NULL;
        qd_free(ae[i]);
    }
    return rc;
}

/* The manifests that have a publish entry (a bundle verified under the policy) in the first n entries. */
static int published_set(qd_digest **out, size_t *n_out, qd_replog *slog, uint64_t n)
{
    qd_digest *set = NULL;
    size_t k = 0;
    int rc = QD_OK;
    if (n && !(set = qd_calloc((size_t)n, sizeof(*set))))
        return QD_ENOMEM;
    for (uint64_t i = 0; i < n && rc == QD_OK; i++) {
        qd_buf e = QD_BUF_INIT(0);
        json_t *j;
        if ((rc = qd_replog_entry_json(&e, slog, i)) == QD_OK && (j = json_loadb(e.ptr, e.len, 0, NULL))) {
            const char *kd = json_string_value(json_object_get(j, "kind"));
            const char *ms = json_string_value(json_object_get(j, "manifest"));
            if (kd && ms && !strcmp(kd, "publish") && qd_digest_parse(&set[k], ms) == QD_OK)
                k++;
            json_decref(j);
        }
        qd_buf_dispose(&e);
    }
    *out = set;
    *n_out = k;
    return rc;
}

static bool in_set(const qd_digest *set, size_t n, const qd_digest *d)
{
    for (size_t i = 0; i < n; i++)
        if (qd_digest_equal(&set[i], d))
            return true;
    return false;
}

static int apply_entry(upstream *u, qd_replog *slog, uint64_t i, const qd_digest *pub, size_t n_pub)
{
    qd_buf e = QD_BUF_INIT(0), bundle = QD_BUF_INIT(0);
    json_t *j = NULL;
    const char *kind, *name, *mstr;
    char repo[QD_REPO_MAX + 1], tag[QD_TAG_MAX + 1] = "", path[256], hex[65];
    qd_digest md, bd;
    man ms[2];
    size_t n_ms = 0;
    qd_dlog_item li;
    int rc;

    memset(ms, 0, sizeof(ms));
    if ((rc = qd_replog_entry_json(&e, slog, i)) < 0)
        goto done;
    if (!(j = json_loadb(e.ptr, e.len, 0, NULL))) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "entry %" PRIu64 " is not JSON", i);
        goto done;
    }
    kind = json_string_value(json_object_get(j, "kind"));
    name = json_string_value(json_object_get(j, "name"));
    mstr = json_string_value(json_object_get(j, "manifest"));
    if (!kind || (strcmp(kind, "publish") && strcmp(kind, "tag"))) {
        rc = QD_OK; /* key entries: the mirror's own log has its own keys */
        goto done;
    }
    if (!name || !mstr || qd_digest_parse(&md, mstr) < 0) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "entry %" PRIu64 " lacks a name or manifest", i);
        goto done;
    }
    snprintf(repo, sizeof(repo), "%.*s", (int)strcspn(name, ":"), name);
    if (name[strcspn(name, ":")] == ':')
        snprintf(tag, sizeof(tag), "%s", name + strcspn(name, ":") + 1);
    if (!ns_served(u, repo)) {
        rc = QD_OK;
        goto done;
    }
    if (!strcmp(kind, "tag") && !in_set(pub, n_pub, &md)) {
        /* a tag is served only for a manifest whose signed bundle is in the verified log: wait for it */
        rc = qd_error_set(QD_EAGAIN, QD_EC_VERIFY, "waiting for the signed bundle of %s before applying tag %s",
                          mstr, name);
        goto done;
    }
    memset(&li, 0, sizeof(li));
    li.manifest = md;
    /* the manifest the log names, and its blobs */
    if ((rc = fetch_manifest(&ms[0], u, repo, &md)) < 0)
        goto done;
    n_ms = 1;
    if ((rc = fetch_blobs(u, repo, ms[0].blobs, ms[0].n_blobs)) < 0)
        goto done;
    if (!strcmp(kind, "tag")) {
        li.kind = QD_REPLOG_TAG;
        snprintf(li.name, sizeof(li.name), "%s", name);
        rc = publish_locally(u, repo, ms, 1, tag, &li, 1);
        goto done;
    }
    /* publish: the bundle is the one in the (verified) log; its referrer manifest comes from the upstream */
    snprintf(path, sizeof(path), "manifests/sha256/%s.json", qd_digest_hex(hex, &md));
    if ((rc = qd_replog_read_at(&bundle, slog, i, path, 16u << 20)) < 0 ||
        (rc = qd_store_put_buf(u->m->srv->store, bundle.ptr, bundle.len, NULL, &bd)) < 0)
        goto done;
    if ((rc = fetch_referrer(&ms[1], u, repo, &md, &bd)) < 0)
        goto done;
    n_ms = 2;
    if ((rc = fetch_blobs(u, repo, ms[1].blobs, ms[1].n_blobs)) < 0)
        goto done;
    li.kind = QD_REPLOG_PUBLISH;
    snprintf(li.name, sizeof(li.name), "%s", repo);
    li.bundle = bd;
    rc = publish_locally(u, repo, ms, 2, NULL, &li, 1);
done:
    if (rc < 0 && rc != QD_EAGAIN) {
        char pre[QD_REPO_MAX + QD_TAG_MAX + 64];
        snprintf(pre, sizeof(pre), "entry %" PRIu64 " (%s %s): ", i, json_string_value(json_object_get(j, "kind")),
                 json_string_value(json_object_get(j, "name")));
        wrap_error(rc, pre);
    }
    for (size_t k = 0; k < n_ms; k++)
        man_dispose(&ms[k]);
    json_decref(j);
    qd_buf_dispose(&e);
    qd_buf_dispose(&bundle);
    return rc;
}

/* ---- one sync ------------------------------------------------------------------------------------------------------ */

static void set_error(upstream *u, const char *msg, bool refusal)
{
    pthread_mutex_lock(&u->m->mu);
    snprintf(u->last_error, sizeof(u->last_error), "%s", msg);
    if (refusal)
        u->refusals++;
    pthread_mutex_unlock(&u->m->mu);
    qd_log(QD_LOG_WARN, "mirror", "req=0 upstream=%s %s", u->url, msg);
}

static int check_consistency(upstream *u, const qd_replog_state *prev, const qd_replog_state *st)
{
    qd_buf b = QD_BUF_INIT(0);
    char url[2048];
    json_t *j = NULL, *p;
    uint8_t proof[QD_MERKLE_PROOF_MAX * QD_HASH_LEN];
    size_t n, i;
    int rc;
    if (prev->size == 0 || prev->size == st->size)
        return QD_OK;
    snprintf(url, sizeof(url), "%s/v1/log/proof/consistency?from=%" PRIu64 "&size=%" PRIu64, u->url, prev->size,
             st->size);
    if ((rc = get_ok(&b, url, 1u << 20, NULL)) < 0)
        goto done;
    rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "the upstream's consistency proof from size %" PRIu64
                                                " does not verify (rollback or fork)", prev->size);
    if (!(j = json_loadb(b.ptr, b.len, 0, NULL)) || !json_is_array(p = json_object_get(j, "proof")) ||
        (n = json_array_size(p)) > QD_MERKLE_PROOF_MAX)
        goto done;
    for (i = 0; i < n; i++) {
        const char *h = json_string_value(json_array_get(p, i));
        if (!h || strlen(h) != 64)
            goto done;
        for (size_t k = 0; k < 32; k++) {
            unsigned v;
            if (sscanf(h + 2 * k, "%2x", &v) != 1)
                goto done;
            proof[i * 32 + k] = (uint8_t)v;
        }
    }
    if (qd_merkle_verify_consistency(prev->size, st->size, proof, n, prev->root, st->root) == QD_OK)
        rc = QD_OK;
done:
    json_decref(j);
    qd_buf_dispose(&b);
    return rc;
}

static int sync_once(upstream *u)
{
    char path[2300], url[2048], head[41], origin[256], applied_s[64];
    qd_buf note = QD_BUF_INIT(0);
    qd_timestamp ts;
    qd_fresh_verdict verdict = QD_FRESH_OK;
    qd_replog_state prev, st;
    qd_verify_failure why;
    qd_replog *slog = NULL;
    qd_digest *pub = NULL;
    size_t n_pub = 0;
    uint64_t applied = 0;
    int rc, attempt;
    int64_t now = (int64_t)time(NULL);

    pthread_mutex_lock(&u->m->mu);
    u->last_sync = now;
    u->syncs++;
    pthread_mutex_unlock(&u->m->mu);
    for (attempt = 0;; attempt++) {
        /* 1. the timestamp */
        qd_buf_clear(&note);
        snprintf(url, sizeof(url), "%s/v1/log/timestamp", u->url);
        if ((rc = get_ok(&note, url, 64 << 10, NULL)) < 0)
            goto fail;
        {
            /* the origin is pinned at the first sync */
            const char *nl = memchr(note.ptr, '\n', note.len);
            size_t k = nl ? strcspn(nl + 1, "\n") : 0;
            if (!nl || k == 0 || k >= sizeof(origin)) {
                rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "the upstream's timestamp is malformed");
                goto refuse;
            }
            snprintf(origin, sizeof(origin), "%.*s", (int)k, nl + 1);
            upath(path, sizeof(path), u, "origin");
            if (u->origin[0] && strcmp(u->origin, origin)) {
                rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "the upstream's log origin changed from %s to %s",
                                  u->origin, origin);
                goto refuse;
            }
        }
        upath(path, sizeof(path), u, "fresh.state");
        rc = qd_fresh_verify(&ts, &verdict, note.ptr, note.len, origin, u->log_key, path, 0);
        if (rc < 0) {
            if (verdict == QD_FRESH_EXPIRED) {
                pthread_mutex_lock(&u->m->mu);
                u->stale = true;
                pthread_mutex_unlock(&u->m->mu);
                wrap_error(rc, "stale: the upstream's timestamp expired (freeze); nothing applied: ");
            }
            goto refuse;
        }
        if (!u->origin[0]) {
            upath(path, sizeof(path), u, "origin");
            if ((rc = write_atomic(path, origin)) < 0)
                goto fail;
            snprintf(u->origin, sizeof(u->origin), "%s", origin);
        }
        pthread_mutex_lock(&u->m->mu);
        u->stale = false;
        u->ts_expires = ts.expires;
        u->upstream_size = ts.checkpoint.size;
        pthread_mutex_unlock(&u->m->mu);
        /* nothing new: the timestamp names the state verified and applied already */
        upath(path, sizeof(path), u, "verified.state");
        if ((rc = qd_replog_state_load(&prev, path)) < 0)
            goto fail;
        applied = applied_count(u);
        if (prev.size > 0 && applied == prev.size && qd_fresh_match(&ts, &prev) == QD_OK) {
            qd_error_clear();
            pthread_mutex_lock(&u->m->mu);
            u->verified = u->applied = applied;
            u->last_ok = (int64_t)time(NULL);
            u->last_error[0] = 0;
            u->lag_since = 0;
            pthread_mutex_unlock(&u->m->mu);
            rc = QD_OK;
            goto out;
        }
        qd_error_clear();
        /* 2. fetch into the staging repository */
        /* only this thread writes the staging repository: a lock file there was left by a SIGKILL */
        upath(path, sizeof(path), u, "staging.git/refs/heads/main.lock");
        unlink(path);
        upath(path, sizeof(path), u, "staging.git/packed-refs.lock");
        unlink(path);
        upath(path, sizeof(path), u, "staging.git");
        snprintf(url, sizeof(url), "%s/log.git", u->url);
        if ((rc = qd_replog_git_fetch(head, path, url, "refs/heads/main")) < 0)
            goto fail;
        /* 3. verify against the last verified state */
        upath(path, sizeof(path), u, "staging.git");
        memset(&why, 0, sizeof(why));
        if ((rc = qd_replog_verify(&st, &why, path, u->log_key, u->m->policy, &prev)) < 0) {
            qd_error_set(rc, QD_EC_VERIFY, "the upstream's log does not verify: %s%s%s", why.reason,
                         why.subject[0] && strcmp(why.subject, "-") ? " at " : "",
                         why.subject[0] && strcmp(why.subject, "-") ? why.subject : "");
            goto refuse;
        }
        if ((rc = check_consistency(u, &prev, &st)) < 0)
            goto refuse;
        /* 4. the timestamp must describe this state */
        if ((rc = qd_fresh_match(&ts, &st)) < 0) {
            if (st.size > ts.checkpoint.size && attempt < 3)
                continue; /* the upstream appended between the timestamp and the fetch: again */
            wrap_error(rc, "mix and match refused: the upstream's timestamp does not describe the log it serves: ");
            goto refuse;
        }
        break;
    }
    upath(path, sizeof(path), u, "verified.state");
    if ((rc = qd_replog_state_save(&st, path)) < 0)
        goto fail;
    /* 5. apply, in order */
    applied = applied_count(u);
    pthread_mutex_lock(&u->m->mu);
    u->verified = st.size;
    u->applied = applied;
    pthread_mutex_unlock(&u->m->mu);
    if (applied < st.size) {
        upath(path, sizeof(path), u, "staging.git/qd-origin");
        if ((rc = write_atomic(path, origin)) < 0)
            goto fail;
        upath(path, sizeof(path), u, "staging.git");
        if ((rc = qd_replog_open(&slog, path)) < 0)
            goto fail;
    }
    if (applied < st.size && (rc = published_set(&pub, &n_pub, slog, st.size)) < 0)
        goto fail;
    while (applied < st.size) {
        if (u->m->stop) {
            rc = QD_OK;
            goto out;
        }
        if ((rc = apply_entry(u, slog, applied, pub, n_pub)) == QD_EAGAIN) {
            set_error(u, qd_error_last()->message, false);
            goto out;
        }
        if (rc < 0)
            goto refuse;
        applied++;
        snprintf(applied_s, sizeof(applied_s), "%" PRIu64 "\n", applied);
        upath(path, sizeof(path), u, "applied");
        if ((rc = write_atomic(path, applied_s)) < 0)
            goto fail;
        pthread_mutex_lock(&u->m->mu);
        u->applied = applied;
        pthread_mutex_unlock(&u->m->mu);
    }
    pthread_mutex_lock(&u->m->mu);
    u->last_ok = (int64_t)time(NULL);
    u->last_error[0] = 0;
    u->lag_since = 0;
    pthread_mutex_unlock(&u->m->mu);
    rc = QD_OK;
    goto out;
refuse:
    set_error(u, qd_error_last()->message, true);
    goto out;
fail:
    set_error(u, qd_error_last()->message, false);
out:
    pthread_mutex_lock(&u->m->mu);
    if (u->applied < u->upstream_size && !u->lag_since)
        u->lag_since = now;
    pthread_mutex_unlock(&u->m->mu);
    qd_replog_free(slog);
    qd_free(pub);
    qd_buf_dispose(&note);
    return rc;
}

static void *mirror_thread(void *arg)
{
    upstream *u = arg;
    qd_mirror *m = u->m;
    for (;;) {
        struct timespec until;
        sync_once(u);
        pthread_mutex_lock(&m->mu);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += m->srv->cfg->mirror_interval;
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) != ETIMEDOUT)
            ;
        if (m->stop) {
            pthread_mutex_unlock(&m->mu);
            return NULL;
        }
        pthread_mutex_unlock(&m->mu);
    }
}

/* ---- start, stop, status ------------------------------------------------------------------------------------------ */

int qd_mirror_start(qd_server *srv)
{
    qd_config *c = srv->cfg;
    qd_mirror *m;
    char *specs = NULL, *keys = NULL, *s1 = NULL, *s2 = NULL, *tok, *ktok;
    char path[2300];
    int rc = QD_OK;
    if (!c->mirror_of[0])
        return QD_OK;
    if (!c->trust[0] || !c->mirror_log_key[0])
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "mirror-of needs trust (a trust policy file) and mirror-log-key "
                                                     "(the upstream's log key, one per upstream)");
    if (!(m = qd_calloc(1, sizeof(*m))))
        return QD_ENOMEM;
    srv->mirror = m;
    m->srv = srv;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if ((rc = qd_policy_load(&m->policy, c->trust)) < 0)
        return rc;
    if (!(specs = qd_strdup(c->mirror_of)) || !(keys = qd_strdup(c->mirror_log_key))) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (tok = strtok_r(specs, " ", &s1), ktok = strtok_r(keys, " ", &s2); tok;
         tok = strtok_r(NULL, " ", &s1), ktok = strtok_r(NULL, " ", &s2)) {
        upstream *u, *n2;
        char *eq = strchr(tok, '=');
        if (!ktok) {
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "mirror-log-key: give one key file per mirror-of upstream");
            goto done;
        }
        if (!(n2 = qd_reallocarray(m->ups, m->n + 1, sizeof(*u)))) {
            rc = QD_ENOMEM;
            goto done;
        }
        m->ups = n2;
        u = &m->ups[m->n];
        memset(u, 0, sizeof(*u));
        u->m = m;
        u->idx = (int)m->n;
        if (eq)
            *eq = 0;
        snprintf(u->url, sizeof(u->url), "%s", tok);
        while (strlen(u->url) && u->url[strlen(u->url) - 1] == '/')
            u->url[strlen(u->url) - 1] = 0;
        snprintf(u->ns, sizeof(u->ns), "%s", eq ? eq + 1 : "");
        snprintf(u->dir, sizeof(u->dir), "%s/mirror/%d", c->store, u->idx);
        m->n++;
        if ((rc = qd_key_load(&u->log_key, ktok)) < 0)
            goto done;
        snprintf(path, sizeof(path), "%s/mirror", c->store);
        mkdir(path, 0700);
        mkdir(u->dir, 0700);
        upath(path, sizeof(path), u, "blobs");
        mkdir(path, 0700);
        upath(path, sizeof(path), u, "origin");
        read_small(u->origin, sizeof(u->origin), path);
        {
            /* the status starts from the persisted state */
            qd_replog_state vs;
            upath(path, sizeof(path), u, "verified.state");
            if (qd_replog_state_load(&vs, path) == QD_OK)
                u->verified = u->upstream_size = vs.size;
            u->applied = applied_count(u);
            qd_error_clear();
        }
    }
    if (ktok) {
        rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "mirror-log-key: more keys than mirror-of upstreams");
        goto done;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (pthread_create(&m->ups[i].th, NULL, mirror_thread, &m->ups[i]) != 0) {
            rc = qd_error_set(QD_EIO, QD_EC_OS, "cannot start a mirror thread");
            goto done;
        }
        m->ups[i].started = true;
        qd_log(QD_LOG_INFO, "mirror", "req=0 following upstream=%s namespaces=%s", m->ups[i].url,
               m->ups[i].ns[0] ? m->ups[i].ns : "*");
    }
done:
    qd_free(specs);
    qd_free(keys);
    return rc;
}

void qd_mirror_stop(qd_server *srv)
{
    qd_mirror *m = srv->mirror;
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < m->n; i++) {
        if (m->ups[i].started)
            pthread_join(m->ups[i].th, NULL);
        qd_key_free(m->ups[i].log_key);
    }
    qd_free(m->ups);
    qd_policy_free(m->policy);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    qd_free(m);
    srv->mirror = NULL;
    curl_global_cleanup();
}

void qd_mirror_handle(qd_req *r)
{
    qd_mirror *m = r->srv->mirror;
    json_t *o = json_object(), *arr = json_array();
    int64_t now = (int64_t)time(NULL);
    char *t;
    r->route = "mirror_status";
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD) {
        json_decref(o);
        json_decref(arr);
        qd_reply_json(r, 405, "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"GET only\",\"detail\":{}}]}");
        return;
    }
    if (!qd_auth_check(r, NULL, QD_SCOPE_PULL)) {
        json_decref(o);
        json_decref(arr);
        return;
    }
    json_object_set_new(o, "mirror", json_boolean(m != NULL));
    if (m) {
        pthread_mutex_lock(&m->mu);
        for (size_t i = 0; i < m->n; i++) {
            upstream *u = &m->ups[i];
            uint64_t lag = u->upstream_size > u->applied ? u->upstream_size - u->applied : 0;
            json_array_append_new(
                arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:s?,s:I,s:I,s:I,s:I}", "upstream", u->url,
                               "namespaces", u->ns[0] ? u->ns : "*", "origin", u->origin, "upstream_size",
                               (json_int_t)u->upstream_size, "verified", (json_int_t)u->verified, "applied",
                               (json_int_t)u->applied, "lag_entries", (json_int_t)lag, "lag_seconds",
                               (json_int_t)(lag && u->lag_since ? now - u->lag_since : 0), "stale", u->stale,
                               "last_error", u->last_error[0] ? u->last_error : NULL, "last_sync",
                               (json_int_t)u->last_sync, "last_ok", (json_int_t)u->last_ok, "timestamp_expires",
                               (json_int_t)u->ts_expires, "refusals", (json_int_t)u->refusals));
        }
        pthread_mutex_unlock(&m->mu);
    }
    json_object_set_new(o, "upstreams", arr);
    t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    qd_reply_json(r, 200, t ? t : "{}");
    free(t); /* jansson */
}
