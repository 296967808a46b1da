/*
 * oci.c - the OCI Distribution API v1.1 under /v2/: manifests, blobs, uploads, tags, referrers.
 *
 * Reads (manifests, tags, referrers, blob streaming) run on the loop thread: LMDB reads never wait for writers.
 * Everything that hashes or writes (blob uploads, manifest puts, deletes) runs on the worker pool; the loop only
 * parses, checks names and permissions, and answers.
 *
 * Upload sessions live as files under <store>/uploads/: <uuid> holds the bytes received so far, <uuid>.repo the
 * repository the session belongs to. A session survives daemon restarts until PUT (the bytes become a blob,
 * digest checked), DELETE, or upload-ttl seconds without activity (swept every minute and at start).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "daemon.h"
#include "qd/audit.h"
#include "qd/verify.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MAX_DESCRIPTORS 65536

/* ---- work handed to the pool ---------------------------------------------------------------------------------- */

enum {
    W_MANIFEST_PUT,
    W_MANIFEST_DEL,
    W_TAG_DEL,
    W_BLOB_DEL,
    W_BLOB_MONOLITHIC,
    W_MOUNT,
    W_UPLOAD_PATCH,
    W_UPLOAD_PUT
};

typedef struct oci_work {
    int kind;
    qd_server *srv;
    char repo[QD_REPO_MAX + 1];
    char tag[QD_TAG_MAX + 1];
    bool has_tag;
    qd_digest digest;
    bool has_digest;
    char uuid[33];
    struct evbuffer *body;      /* moved out of the request: no copy */
    int64_t range_start;        /* PATCH Content-Range start, -1 when absent */
    int64_t range_end;
    /* a manifest */
    char *mbytes;
    size_t mlen;
    char *media_type, *artifact_type, *annotations;
    qd_digest subject;
    bool has_subject;
    qd_digest *blobs, *children;
    size_t n_blobs, n_children;
    /* result */
    int rc;
    qd_error_saved err;         /* rc's class and message where it failed */
    bool log_refused;           /* the signed log could not take the entry: nothing stored */
    bool log_failed;            /* stored, but the log append failed (dlog.c keeps the intent) */
    uint64_t size;              /* upload: bytes received */
    int upload_err;             /* UP_* */
} oci_work;

enum { UP_OK = 0, UP_UNKNOWN, UP_RANGE, UP_BUSY };

static void work_free(void *p)
{
    oci_work *w = p;
    if (w->body)
        evbuffer_free(w->body);
    qd_free(w->mbytes);
    qd_free(w->media_type);
    qd_free(w->artifact_type);
    free(w->annotations); /* jansson json_dumps */
    qd_free(w->blobs);
    qd_free(w->children);
    qd_free(w);
}

static oci_work *work_new(qd_req *r, int kind, const char *repo)
{
    oci_work *w = qd_calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->kind = kind;
    w->srv = r->srv;
    w->range_start = w->range_end = -1;
    snprintf(w->repo, sizeof(w->repo), "%s", repo);
    r->work = w;
    r->work_free = work_free;
    return w;
}

static void work_result(oci_work *w, int rc)
{
    w->rc = rc;
    qd_error_save(&w->err, rc);
}

/* Back on the loop thread: make the worker's error this thread's error. */
static int work_error(oci_work *w)
{
    qd_error_restore(&w->err);
    return w->rc;
}

static void location(qd_req *r, const char *repo, const char *what, const char *id)
{
    char loc[QD_REPO_MAX + 128];
    snprintf(loc, sizeof(loc), "/v2/%s/%s/%s", repo, what, id);
    qd_req_header(r, "Location", loc);
}

/* ---- manifests ------------------------------------------------------------------------------------------------- */

static bool ref_kind(qd_req *r, const char *ref, qd_digest *d, bool *is_digest)
{
    *is_digest = strchr(ref, ':') != NULL;
    if (*is_digest) {
        if (qd_digest_parse(d, ref) < 0) {
            qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
            return false;
        }
        return true;
    }
    if (!qd_registry_tag_valid(ref)) {
        qd_reply_oci(r, "TAG_INVALID", "the tag does not match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", NULL);
        return false;
    }
    return true;
}

static void manifest_get(qd_req *r, const char *repo, const char *ref)
{
    qd_manifest_info info;
    qd_buf b = QD_BUF_INIT(0);
    qd_digest d;
    bool is_digest;
    char ds[QD_DIGEST_STR_LEN + 1];
    struct evbuffer *body;
    const void *cached = NULL;
    size_t cached_len = 0;
    int rc;

    r->route = r->method == EVHTTP_REQ_HEAD ? "manifest_head" : "manifest_get";
    if (!ref_kind(r, ref, &d, &is_digest) || !qd_auth_check(r, repo, QD_SCOPE_PULL))
        return;
    /* the registry resolves the reference on every request; the bytes of a digest never change (mcache.c) */
    if ((rc = qd_registry_manifest_get(&info, NULL, r->srv->store, repo, ref)) < 0) {
        qd_reply_err(r, rc, "MANIFEST_UNKNOWN");
        return;
    }
    if (!qd_mcache_get(r->srv->mcache, &info.digest, &cached, &cached_len)) {
        b.max = (size_t)r->srv->cfg->max_manifest_bytes + 1;
        if ((rc = qd_store_get(r->srv->store, &info.digest, 0, UINT64_MAX, qd_buf_sink, &b)) < 0) {
            qd_buf_dispose(&b);
            qd_reply_err(r, rc, "MANIFEST_UNKNOWN");
            return;
        }
        qd_mcache_put(r->srv->mcache, &info.digest, b.ptr, b.len);
        cached = b.ptr;
        cached_len = b.len;
    }
    qd_req_header(r, "Content-Type", info.media_type);
    qd_req_header(r, "Docker-Content-Digest", qd_digest_format(ds, &info.digest));
    body = evbuffer_new();
    if (body && cached_len)
        evbuffer_add(body, cached, cached_len);
    qd_buf_dispose(&b);
    qd_reply(r, 200, body);
}

static int parse_descriptor_digest(json_t *desc, qd_digest *out, const char *what, char *err, size_t cap)
{
    json_t *d = json_is_object(desc) ? json_object_get(desc, "digest") : NULL;
    if (!json_is_string(d)) {
        snprintf(err, cap, "%s: a descriptor without a digest", what);
        return QD_EINVAL;
    }
    if (qd_digest_parse(out, json_string_value(d)) < 0) {
        snprintf(err, cap, "%s: %s", what, qd_error_last()->message);
        return QD_EINVAL;
    }
    return QD_OK;
}

static int parse_list(json_t *arr, qd_digest **out, size_t *n, const char *what, char *err, size_t cap)
{
    size_t i;
    json_t *v;
    if (!json_is_array(arr)) {
        snprintf(err, cap, "%s must be an array", what);
        return QD_EINVAL;
    }
    if (json_array_size(arr) > MAX_DESCRIPTORS) {
        snprintf(err, cap, "%s has too many entries", what);
        return QD_EINVAL;
    }
    if (!(*out = qd_calloc(json_array_size(arr) + 1, sizeof(qd_digest))))
        return QD_ENOMEM;
    json_array_foreach(arr, i, v)
    {
        if (parse_descriptor_digest(v, &(*out)[*n], what, err, cap) < 0)
            return QD_EINVAL;
        (*n)++;
    }
    return QD_OK;
}

/* Parse and check the manifest in w->mbytes; fill the descriptor fields. err gets the reason. */
static int manifest_parse(oci_work *w, const char *content_type, char *err, size_t cap)
{
    json_error_t je;
    json_t *root = json_loadb(w->mbytes, w->mlen, JSON_REJECT_DUPLICATES, &je), *v;
    const char *mt = NULL;
    int rc = QD_EINVAL;
    bool is_index;

    if (!root) {
        snprintf(err, cap, "malformed JSON at line %d column %d: %s", je.line, je.column, je.text);
        return QD_EINVAL;
    }
    if (!json_is_object(root)) {
        snprintf(err, cap, "a manifest is a JSON object");
        goto done;
    }
    v = json_object_get(root, "schemaVersion");
    if (!json_is_integer(v) || json_integer_value(v) != 2) {
        snprintf(err, cap, "schemaVersion must be 2");
        goto done;
    }
    v = json_object_get(root, "mediaType");
    if (v && !json_is_string(v)) {
        snprintf(err, cap, "mediaType must be a string");
        goto done;
    }
    mt = v ? json_string_value(v) : NULL;
    if (content_type && *content_type) {
        char ct[QD_MEDIA_TYPE_MAX + 1];
        size_t n = strcspn(content_type, ";");
        while (n && content_type[n - 1] == ' ')
            n--;
        snprintf(ct, sizeof(ct), "%.*s", (int)n, content_type);
        if (mt && strcmp(mt, ct)) {
            snprintf(err, cap, "Content-Type %s differs from the manifest's mediaType %s", ct, mt);
            goto done;
        }
        if (!mt)
            w->media_type = qd_strdup(ct);
    }
    if (mt)
        w->media_type = qd_strdup(mt);
    if (!w->media_type) {
        snprintf(err, cap, "no mediaType in the manifest and no Content-Type header");
        goto done;
    }
    is_index = !strcmp(w->media_type, MT_OCI_INDEX) || !strcmp(w->media_type, MT_DOCKER_LIST);
    if (!is_index && strcmp(w->media_type, MT_OCI_MANIFEST) && strcmp(w->media_type, MT_DOCKER_MANIFEST)) {
        snprintf(err, cap, "unsupported manifest media type %s", w->media_type);
        goto done;
    }
    if (strlen(w->media_type) > QD_MEDIA_TYPE_MAX) {
        snprintf(err, cap, "mediaType too long");
        goto done;
    }
    if (is_index) {
        if (parse_list(json_object_get(root, "manifests"), &w->children, &w->n_children, "manifests", err, cap) < 0)
            goto done;
    } else {
        json_t *cfg = json_object_get(root, "config");
        if (!(w->blobs = qd_calloc(json_array_size(json_object_get(root, "layers")) + 2, sizeof(qd_digest))))
            goto done;
        if (parse_descriptor_digest(cfg, &w->blobs[0], "config", err, cap) < 0)
            goto done;
        w->n_blobs = 1;
        {
            json_t *layers = json_object_get(root, "layers"), *l;
            size_t i;
            if (!json_is_array(layers)) {
                snprintf(err, cap, "layers must be an array");
                goto done;
            }
            if (json_array_size(layers) > MAX_DESCRIPTORS) {
                snprintf(err, cap, "too many layers");
                goto done;
            }
            json_array_foreach(layers, i, l)
            {
                if (parse_descriptor_digest(l, &w->blobs[w->n_blobs], "layers", err, cap) < 0)
                    goto done;
                w->n_blobs++;
            }
        }
        v = json_object_get(json_object_get(root, "config"), "mediaType");
        if (json_is_string(v) && !json_object_get(root, "artifactType"))
            w->artifact_type = qd_strdup(json_string_value(v));
    }
    v = json_object_get(root, "artifactType");
    if (v) {
        if (!json_is_string(v) || json_string_length(v) > QD_MEDIA_TYPE_MAX) {
            snprintf(err, cap, "artifactType must be a media type string");
            goto done;
        }
        qd_free(w->artifact_type);
        w->artifact_type = qd_strdup(json_string_value(v));
    }
    if (w->artifact_type && strlen(w->artifact_type) > QD_MEDIA_TYPE_MAX) {
        snprintf(err, cap, "config.mediaType too long");
        goto done;
    }
    v = json_object_get(root, "subject");
    if (v) {
        if (parse_descriptor_digest(v, &w->subject, "subject", err, cap) < 0)
            goto done;
        w->has_subject = true;
    }
    v = json_object_get(root, "annotations");
    if (v) {
        if (!json_is_object(v)) {
            snprintf(err, cap, "annotations must be an object");
            goto done;
        }
        w->annotations = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    }
    rc = QD_OK;
done:
    json_decref(root);
    return rc;
}

static void manifest_put_work(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    qd_audit_entry *ae = qd_bundle_audit_entry(w->srv->store, w->has_subject, w->artifact_type, w->blobs, w->n_blobs);
    qd_manifest_desc m = {w->mbytes,        w->mlen,       w->media_type, w->artifact_type,
                          w->annotations,   w->has_subject ? &w->subject : NULL,
                          w->blobs,         w->n_blobs,    w->children,   w->n_children,
                          ae};
    qd_digest out;
    qd_dlog_item items[2];
    size_t n = 0;
    int rc;
    /* the log entries this manifest makes (dlog.c): a tag move, and a publish when it is a Sigstore bundle
     * attached to its subject (the bundle is its first layer) */
    memset(items, 0, sizeof(items));
    if (w->has_tag) {
        items[n].kind = QD_REPLOG_TAG;
        snprintf(items[n].name, sizeof(items[n].name), "%s:%s", w->repo, w->tag);
        if ((rc = qd_sha256_buf(&items[n].manifest, w->mbytes, w->mlen)) < 0)
            goto done;
        n++;
    }
    if (w->has_subject && w->artifact_type && !strcmp(w->artifact_type, QD_BUNDLE_MEDIA_TYPE) && w->n_blobs >= 2 &&
        qd_dlog_bundle_ok(w->srv->store, &w->blobs[1])) {
        items[n].kind = QD_REPLOG_PUBLISH;
        snprintf(items[n].name, sizeof(items[n].name), "%s", w->repo);
        items[n].manifest = w->subject;
        items[n].bundle = w->blobs[1];
        n++;
    }
    if (n && (rc = qd_dlog_begin(w->srv->dlog, items, n)) < 0) {
        w->log_refused = true;
        goto done;
    }
    rc = qd_registry_manifest_put(&out, w->srv->store, w->repo, w->has_tag ? w->tag : NULL, &m,
                                  w->has_digest ? &w->digest : NULL);
    if (rc == QD_OK)
        w->digest = out;
    if (n) {
        int lrc = qd_dlog_end(w->srv->dlog, items, n, rc);
        if (rc == QD_OK && lrc < 0) {
            rc = lrc;
            w->log_failed = true;
        }
    }
done:
    qd_free(ae);
    work_result(w, rc);
}

static void manifest_put_done(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc = work_error(w);
    if (w->log_refused && rc == QD_EINVAL) {
        qd_reply_oci(r, "NAME_INVALID", w->err.message, NULL);
        return;
    }
    if (w->log_refused && rc == QD_EBADSIG) { /* signed by a key the log has revoked */
        qd_reply_oci(r, "DENIED", w->err.message, NULL);
        return;
    }
    if (w->log_refused || w->log_failed) {
        qd_reply_oci(r, "UNKNOWN", w->err.message, NULL);
        return;
    }
    if (rc == QD_ENOTFOUND) {
        qd_reply_oci(r, "MANIFEST_BLOB_UNKNOWN", w->err.message, NULL);
        return;
    }
    if (rc < 0) {
        qd_reply_err(r, rc, "MANIFEST_INVALID");
        return;
    }
    qd_digest_format(ds, &w->digest);
    location(r, w->repo, "manifests", ds);
    qd_req_header(r, "Docker-Content-Digest", ds);
    if (w->has_subject) {
        char ss[QD_DIGEST_STR_LEN + 1];
        qd_req_header(r, "OCI-Subject", qd_digest_format(ss, &w->subject));
    } else if (w->artifact_type && !strcmp(w->artifact_type, "application/vnd.cncf.model.manifest.v1+json")) {
        qd_ingest_pushed(r->srv, w->repo, &w->digest); /* a checkpoint: signed later unless its pusher signs */
    }
    qd_reply(r, 201, NULL);
}

static void manifest_put(qd_req *r, const char *repo, const char *ref)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t n = evbuffer_get_length(in);
    oci_work *w;
    bool is_digest;
    char err[512];
    int rc;

    r->route = "manifest_put";
    if (!(w = work_new(r, W_MANIFEST_PUT, repo))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    if (!ref_kind(r, ref, &w->digest, &is_digest) || !qd_auth_check(r, repo, QD_SCOPE_PUSH))
        return;
    w->has_digest = is_digest;
    if (!is_digest) {
        snprintf(w->tag, sizeof(w->tag), "%s", ref);
        w->has_tag = true;
    }
    if ((int64_t)n > r->srv->cfg->max_manifest_bytes) {
        qd_reply_oci(r, "TOO_LARGE", "the manifest is larger than max-manifest-bytes", NULL);
        return;
    }
    if (!(w->mbytes = qd_malloc(n + 1))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    w->mlen = n;
    evbuffer_remove(in, w->mbytes, n);
    if ((rc = manifest_parse(w, qd_req_in_header(r, "Content-Type"), err, sizeof(err))) < 0) {
        qd_reply_oci(r, "MANIFEST_INVALID", err, NULL);
        return;
    }
    if ((rc = qd_req_offload(r, manifest_put_work, manifest_put_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}

static void simple_work(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    qd_store *s = w->srv->store;
    int rc;
    switch (w->kind) {
    case W_MANIFEST_DEL: rc = qd_registry_manifest_delete(s, w->repo, &w->digest); break;
    case W_TAG_DEL: rc = qd_registry_tag_delete(s, w->repo, w->tag); break;
    case W_BLOB_DEL: rc = qd_registry_blob_unlink(s, w->repo, &w->digest); break;
    case W_MOUNT: rc = qd_registry_blob_link(s, w->repo, &w->digest); break;
    default: rc = qd_error_set(QD_ERROR, QD_EC_NET, "unknown work");
    }
    work_result(w, rc);
}

static void simple_done(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc = work_error(w);
    if (rc < 0) {
        qd_reply_err(r, rc, w->kind == W_MANIFEST_DEL || w->kind == W_TAG_DEL ? "MANIFEST_UNKNOWN" : "BLOB_UNKNOWN");
        return;
    }
    if (w->kind == W_MOUNT) {
        qd_digest_format(ds, &w->digest);
        location(r, w->repo, "blobs", ds);
        qd_req_header(r, "Docker-Content-Digest", ds);
        qd_reply(r, 201, NULL);
        return;
    }
    qd_reply(r, 202, NULL);
}

static void manifest_delete(qd_req *r, const char *repo, const char *ref)
{
    oci_work *w;
    bool is_digest;
    int rc;
    r->route = "manifest_delete";
    if (!(w = work_new(r, W_MANIFEST_DEL, repo))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    if (!ref_kind(r, ref, &w->digest, &is_digest) || !qd_auth_check(r, repo, QD_SCOPE_PUSH))
        return;
    if (!is_digest) {
        w->kind = W_TAG_DEL;
        snprintf(w->tag, sizeof(w->tag), "%s", ref);
    }
    if ((rc = qd_req_offload(r, simple_work, simple_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}

/* ---- blobs ------------------------------------------------------------------------------------------------------ */

/* Parse "bytes=A-B", "bytes=A-", "bytes=-N" against size. 0 ok, -1 malformed (ignored per RFC 9110), -2 unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    unsigned long long a, b;
    char *end;
    const char *p;
    if (strncmp(h, "bytes=", 6))
        return -1;
    p = h + 6;
    if (strchr(p, ','))
        return -1; /* multiple ranges: not supported, serve the whole blob */
    if (*p == '-') {
        errno = 0;
        b = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end || errno)
            return -1;
        if (b == 0 || size == 0)
            return -2;
        if (b > size)
            b = size;
        *off = size - b;
        *len = b;
        return 0;
    }
    errno = 0;
    a = strtoull(p, &end, 10);
    if (end == p || *end != '-' || errno)
        return -1;
    p = end + 1;
    if (*p == 0)
        b = size ? size - 1 : 0;
    else {
        b = strtoull(p, &end, 10);
        if (end == p || *end || errno || b < a)
            return -1;
    }
    if (a >= size)
        return -2;
    if (b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 0;
}

/* If-Range (RFC 9110 13.1.5): the Range applies only when the validator is our strong entity tag, the quoted
 * digest (a blob never changes, so its ETag is its name). A weak tag or a date never matches: the whole blob. */
static bool if_range_matches(const char *v, const char *etag)
{
    size_t n = strlen(etag);
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncmp(v, etag, n))
        return false;
    v += n;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v == 0;
}

static void blob_get(qd_req *r, const char *repo, const char *dstr)
{
    qd_digest d;
    qd_blob_reader *rd = NULL;
    uint64_t size, off = 0, len;
    const char *range;
    int status = 200, rc;
    char buf[128], etag[QD_DIGEST_STR_LEN + 3];

    r->route = r->method == EVHTTP_REQ_HEAD ? "blob_head" : "blob_get";
    if (qd_digest_parse(&d, dstr) < 0) {
        qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
        return;
    }
    if (!qd_auth_check(r, repo, QD_SCOPE_PULL))
        return;
    if (!qd_registry_blob_in_repo(r->srv->store, repo, &d)) {
        qd_reply_oci(r, "BLOB_UNKNOWN", "the repository has no such blob", NULL);
        return;
    }
    if ((rc = qd_blob_reader_open(&rd, r->srv->store, &d)) < 0) {
        qd_reply_err(r, rc, "BLOB_UNKNOWN");
        return;
    }
    size = len = qd_blob_reader_size(rd);
    qd_req_header(r, "Docker-Content-Digest", dstr);
    qd_req_header(r, "Accept-Ranges", "bytes");
    qd_req_header(r, "Content-Type", "application/octet-stream");
    snprintf(etag, sizeof(etag), "\"%s\"", qd_digest_format(buf, &d));
    qd_req_header(r, "ETag", etag);
    if ((range = qd_req_in_header(r, "Range")) && qd_req_in_header(r, "If-Range") &&
        !if_range_matches(qd_req_in_header(r, "If-Range"), etag))
        range = NULL; /* the client's copy is of something else: send the whole blob (200) */
    if (range) {
        int pr = parse_range(range, size, &off, &len);
        if (pr == -2) {
            qd_blob_reader_close(rd);
            snprintf(buf, sizeof(buf), "bytes */%llu", (unsigned long long)size);
            qd_req_header(r, "Content-Range", buf);
            qd_reply_oci(r, "RANGE_INVALID", "the range is outside the blob", NULL);
            return;
        }
        if (pr == 0) {
            status = 206;
            snprintf(buf, sizeof(buf), "bytes %llu-%llu/%llu", (unsigned long long)off,
                     (unsigned long long)(off + len - 1), (unsigned long long)size);
            qd_req_header(r, "Content-Range", buf);
        } else {
            off = 0;
            len = size;
        }
    }
    if (off && (rc = qd_blob_reader_seek(rd, off)) < 0) {
        qd_blob_reader_close(rd);
        qd_reply_err(r, rc, "BLOB_UNKNOWN");
        return;
    }
    qd_req_stream(r, status, rd, len);
}

static void blob_delete(qd_req *r, const char *repo, const char *dstr)
{
    oci_work *w;
    int rc;
    r->route = "blob_delete";
    if (!(w = work_new(r, W_BLOB_DEL, repo))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    if (qd_digest_parse(&w->digest, dstr) < 0) {
        qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
        return;
    }
    if (!qd_auth_check(r, repo, QD_SCOPE_PUSH))
        return;
    if ((rc = qd_req_offload(r, simple_work, simple_done)) < 0)
        qd_reply_err(r, rc, "UNKNOWN");
}

/* ---- uploads ---------------------------------------------------------------------------------------------------- */

static bool uuid_valid(const char *u)
{
    return strlen(u) == 32 && strspn(u, "0123456789abcdef") == 32;
}

static void upload_path(char *out, size_t cap, qd_server *srv, const char *uuid, const char *suffix)
{
    snprintf(out, cap, "%s/%s%s", srv->uploads_dir, uuid, suffix);
}

/* Does the session exist and belong to repo? */
static bool upload_owned(qd_server *srv, const char *uuid, const char *repo)
{
    char path[4096], owner[QD_REPO_MAX + 2];
    FILE *f;
    size_t n;
    upload_path(path, sizeof(path), srv, uuid, ".repo");
    if (!(f = fopen(path, "r")))
        return false;
    n = fread(owner, 1, sizeof(owner) - 1, f);
    fclose(f);
    owner[n] = 0;
    return !strcmp(owner, repo);
}

static void upload_remove(qd_server *srv, const char *uuid)
{
    char path[4096];
    upload_path(path, sizeof(path), srv, uuid, "");
    unlink(path);
    upload_path(path, sizeof(path), srv, uuid, ".repo");
    unlink(path);
}

static int count_uploads(qd_server *srv)
{
    DIR *d = opendir(srv->uploads_dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".repo"))
            n++;
    closedir(d);
    return n;
}

int qd_oci_uploads_sweep(qd_server *srv)
{
    DIR *d = opendir(srv->uploads_dir);
    struct dirent *e;
    time_t now = time(NULL);
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d))) {
        char path[4096], uuid[33];
        struct stat st, st2;
        if (strlen(e->d_name) != 37 || strcmp(e->d_name + 32, ".repo"))
            continue;
        memcpy(uuid, e->d_name, 32);
        uuid[32] = 0;
        upload_path(path, sizeof(path), srv, uuid, "");
        if (stat(path, &st) < 0) {
            upload_path(path, sizeof(path), srv, uuid, ".repo");
            if (stat(path, &st2) == 0 && now - st2.st_mtime > srv->cfg->upload_ttl_s)
                unlink(path);
            continue;
        }
        if (now - st.st_mtime > srv->cfg->upload_ttl_s) {
            upload_remove(srv, uuid);
            n++;
        }
    }
    closedir(d);
    if (n)
        qd_log(QD_LOG_INFO, "upload", "req=0 expired=%d", n);
    return n;
}

static void upload_headers(qd_req *r, const char *repo, const char *uuid, uint64_t size)
{
    char range[64];
    location(r, repo, "blobs/uploads", uuid);
    qd_req_header(r, "Docker-Upload-UUID", uuid);
    snprintf(range, sizeof(range), "0-%llu", (unsigned long long)(size ? size - 1 : 0));
    qd_req_header(r, "Range", range);
}

/* Append w->body to the session file (holding an exclusive lock), checking the Content-Range start. Leaves the
 * file open in *fd_out when not NULL. */
static int upload_append(oci_work *w, int *fd_out)
{
    char path[4096];
    struct stat st;
    int fd, rc = QD_OK;
    upload_path(path, sizeof(path), w->srv, w->uuid, "");
    if ((fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC)) < 0) {
        w->upload_err = UP_UNKNOWN;
        return qd_error_set(QD_ENOTFOUND, QD_EC_NET, "upload %s is unknown or expired", w->uuid);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        w->upload_err = UP_BUSY;
        rc = qd_error_set(QD_EAGAIN, QD_EC_NET, "upload %s is busy with another request", w->uuid);
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "stat %s: %s", path, strerror(errno));
        goto done;
    }
    w->size = (uint64_t)st.st_size;
    if (w->range_start >= 0 && (uint64_t)w->range_start != w->size) {
        w->upload_err = UP_RANGE;
        rc = qd_error_set(QD_EINVAL, QD_EC_NET, "chunk starts at %lld but the upload has %llu bytes",
                          (long long)w->range_start, (unsigned long long)w->size);
        goto done;
    }
    while (w->body && evbuffer_get_length(w->body) > 0) {
        int n = evbuffer_write(w->body, fd);
        if (n < 0) {
            rc = qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write %s: %s", path, strerror(errno));
            goto done;
        }
        w->size += (uint64_t)n;
    }
done:
    if (rc == QD_OK && fd_out)
        *fd_out = fd;
    else
        close(fd);
    return rc;
}

static int put_evbuffer(qd_store *s, struct evbuffer *b, const qd_digest *expect, qd_digest *out)
{
    qd_blob_writer *bw;
    int rc, n;
    struct evbuffer_iovec v[16];
    if ((rc = qd_blob_writer_open(&bw, s)) < 0)
        return rc;
    while (b && evbuffer_get_length(b) > 0) {
        n = evbuffer_peek(b, -1, NULL, v, 16);
        if (n > 16)
            n = 16;
        for (int i = 0; i < n; i++)
            if ((rc = qd_blob_writer_write(bw, v[i].iov_base, v[i].iov_len)) < 0)
                goto done;
        for (int i = 0; i < n; i++)
            evbuffer_drain(b, v[i].iov_len);
    }
    rc = qd_blob_writer_commit(bw, expect, out);
done:
    qd_blob_writer_free(bw);
    return rc;
}

static void upload_work(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    qd_store *s = w->srv->store;
    qd_digest out;
    int rc, fd = -1;

    switch (w->kind) {
    case W_BLOB_MONOLITHIC:
        if ((rc = put_evbuffer(s, w->body, &w->digest, &out)) == QD_OK)
            rc = qd_registry_blob_link(s, w->repo, &out);
        break;
    case W_UPLOAD_PATCH:
        rc = upload_append(w, NULL);
        break;
    case W_UPLOAD_PUT: {
        qd_put_options po = QD_PUT_OPTIONS_INIT;
        if ((rc = upload_append(w, &fd)) < 0)
            break;
        po.expect = &w->digest;
        if (lseek(fd, 0, SEEK_SET) < 0) {
            rc = qd_error_set(QD_EIO, QD_EC_OS, "seek: %s", strerror(errno));
            break;
        }
        rc = qd_store_put_fd(s, fd, &po, &out);
        if (rc == QD_OK)
            rc = qd_registry_blob_link(s, w->repo, &out);
        if (rc == QD_OK || rc == QD_EDIGEST)
            upload_remove(w->srv, w->uuid); /* finished, or its bytes can never be right */
        break;
    }
    default:
        rc = qd_error_set(QD_ERROR, QD_EC_NET, "unknown work");
    }
    if (fd >= 0)
        close(fd);
    work_result(w, rc);
}

static void upload_done(void *p)
{
    qd_req *r = p;
    oci_work *w = r->work;
    char ds[QD_DIGEST_STR_LEN + 1];
    int rc = work_error(w);
    if (rc < 0) {
        switch (w->upload_err) {
        case UP_UNKNOWN: qd_reply_oci(r, "BLOB_UPLOAD_UNKNOWN", w->err.message, NULL); return;
        case UP_BUSY: qd_reply_oci(r, "TOOMANYREQUESTS", w->err.message, NULL); return;
        case UP_RANGE:
            upload_headers(r, w->repo, w->uuid, w->size);
            qd_reply_oci(r, "RANGE_INVALID", w->err.message, NULL);
            return;
        default: qd_reply_err(r, rc, "BLOB_UPLOAD_INVALID"); return;
        }
    }
    if (w->kind == W_UPLOAD_PATCH) {
        upload_headers(r, w->repo, w->uuid, w->size);
        qd_reply(r, 202, NULL);
        return;
    }
    qd_digest_format(ds, &w->digest);
    location(r, w->repo, "blobs", ds);
    qd_req_header(r, "Docker-Content-Digest", ds);
    qd_reply(r, 201, NULL);
}

/* Move the request body into w->body (no copy). */
static int take_body(qd_req *r, oci_work *w)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    if (!(w->body = evbuffer_new()))
        return QD_ENOMEM;
    r->bytes_in = evbuffer_get_length(in);
    return evbuffer_add_buffer(w->body, in) == 0 ? QD_OK : QD_ENOMEM;
}

static void upload_start(qd_req *r, const char *repo)
{
    const char *mount = qd_req_query(r, "mount"), *from = qd_req_query(r, "from");
    const char *dstr = qd_req_query(r, "digest");
    oci_work *w;
    int rc;

    r->route = "upload_start";
    if (!qd_auth_check(r, repo, QD_SCOPE_PUSH))
        return;
    if (!(w = work_new(r, W_BLOB_MONOLITHIC, repo))) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    if (mount) {
        /* cross-repository mount: only when the source holds the blob and the caller may pull from it;
         * otherwise the spec says to fall back to an ordinary upload session */
        r->route = "blob_mount";
        if (qd_digest_parse(&w->digest, mount) < 0) {
            qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
            return;
        }
        if (from && qd_registry_name_valid(from) && qd_registry_blob_in_repo(r->srv->store, from, &w->digest)) {
            bool may = qd_auth_allows(r, from, QD_SCOPE_PULL);
            if (may) {
                w->kind = W_MOUNT;
                if ((rc = qd_req_offload(r, simple_work, simple_done)) < 0)
                    qd_reply_err(r, rc, "UNKNOWN");
                return;
            }
        }
    } else if (dstr) {
        r->route = "blob_put_monolithic";
        if (qd_digest_parse(&w->digest, dstr) < 0) {
            qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
            return;
        }
        if ((rc = take_body(r, w)) < 0 || (rc = qd_req_offload(r, upload_work, upload_done)) < 0)
            qd_reply_err(r, rc, "UNKNOWN");
        return;
    }
    /* a new session */
    {
        uint8_t raw[16];
        char path[4096];
        FILE *f;
        int fd;
        if (count_uploads(r->srv) >= r->srv->cfg->max_uploads) {
            qd_reply_oci(r, "TOOMANYREQUESTS", "too many open upload sessions", NULL);
            return;
        }
        if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
            qd_reply_oci(r, "UNKNOWN", "no randomness", NULL);
            return;
        }
        qd_hex(w->uuid, raw, 16);
        upload_path(path, sizeof(path), r->srv, w->uuid, "");
        if ((fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600)) < 0) {
            qd_reply_oci(r, "UNKNOWN", "cannot create the upload session", NULL);
            return;
        }
        close(fd);
        upload_path(path, sizeof(path), r->srv, w->uuid, ".repo");
        if (!(f = fopen(path, "w")) || fputs(repo, f) < 0 || fclose(f) != 0) {
            upload_remove(r->srv, w->uuid);
            qd_reply_oci(r, "UNKNOWN", "cannot create the upload session", NULL);
            return;
        }
        qd_log(QD_LOG_DEBUG, "upload", "req=%llu session=%s repo=%s", (unsigned long long)r->id, w->uuid, repo);
        upload_headers(r, repo, w->uuid, 0);
        qd_reply(r, 202, NULL);
    }
}

/* Content-Range: "A-B" (the OCI form) or "bytes A-B/TOTAL". */
static int parse_content_range(const char *h, int64_t *a, int64_t *b)
{
    long long x, y;
    int n = 0;
    if (!strncmp(h, "bytes ", 6))
        h += 6;
    if (sscanf(h, "%lld-%lld%n", &x, &y, &n) != 2 || x < 0 || y < x)
        return -1;
    if (h[n] && h[n] != '/')
        return -1;
    *a = x;
    *b = y;
    return 0;
}

static void upload_session(qd_req *r, const char *repo, const char *uuid)
{
    oci_work *w;
    int rc;
    char path[4096];
    struct stat st;

    r->route = r->method == EVHTTP_REQ_PATCH ? "upload_patch"
               : r->method == EVHTTP_REQ_PUT ? "upload_put"
               : r->method == EVHTTP_REQ_DELETE ? "upload_delete"
                                                : "upload_status";
    if (!qd_auth_check(r, repo, QD_SCOPE_PUSH))
        return;
    if (!uuid_valid(uuid) || !upload_owned(r->srv, uuid, repo)) {
        qd_reply_oci(r, "BLOB_UPLOAD_UNKNOWN", "no such upload session in this repository", NULL);
        return;
    }
    upload_path(path, sizeof(path), r->srv, uuid, "");
    if (stat(path, &st) < 0) {
        qd_reply_oci(r, "BLOB_UPLOAD_UNKNOWN", "the upload session has expired", NULL);
        return;
    }
    switch (r->method) {
    case EVHTTP_REQ_GET:
    case EVHTTP_REQ_HEAD:
        upload_headers(r, repo, uuid, (uint64_t)st.st_size);
        qd_reply(r, 204, NULL);
        return;
    case EVHTTP_REQ_DELETE:
        upload_remove(r->srv, uuid);
        qd_reply(r, 204, NULL);
        return;
    case EVHTTP_REQ_PATCH:
    case EVHTTP_REQ_PUT: {
        const char *cr = qd_req_in_header(r, "Content-Range");
        size_t blen = evbuffer_get_length(evhttp_request_get_input_buffer(r->req));
        if (!(w = work_new(r, r->method == EVHTTP_REQ_PATCH ? W_UPLOAD_PATCH : W_UPLOAD_PUT, repo))) {
            qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
            return;
        }
        snprintf(w->uuid, sizeof(w->uuid), "%s", uuid);
        if (cr) {
            if (parse_content_range(cr, &w->range_start, &w->range_end) < 0 ||
                (uint64_t)(w->range_end - w->range_start + 1) != blen) {
                upload_headers(r, repo, uuid, (uint64_t)st.st_size);
                qd_reply_oci(r, "RANGE_INVALID", "Content-Range must be START-END matching the body's length",
                             NULL);
                return;
            }
        }
        if (r->method == EVHTTP_REQ_PUT) {
            const char *dstr = qd_req_query(r, "digest");
            if (!dstr || qd_digest_parse(&w->digest, dstr) < 0) {
                qd_reply_oci(r, "DIGEST_INVALID", dstr ? qd_error_last()->message : "PUT needs ?digest=", NULL);
                return;
            }
        }
        if ((rc = take_body(r, w)) < 0 || (rc = qd_req_offload(r, upload_work, upload_done)) < 0)
            qd_reply_err(r, rc, "UNKNOWN");
        return;
    }
    default:
        qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
    }
}

/* ---- tags and referrers ------------------------------------------------------------------------------------------ */

typedef struct tags_ctx {
    json_t *arr;
    char last[QD_TAG_MAX + 1];
} tags_ctx;

static int tags_one(const char *tag, const qd_digest *d, void *payload)
{
    tags_ctx *c = payload;
    (void)d;
    json_array_append_new(c->arr, json_string(tag));
    snprintf(c->last, sizeof(c->last), "%s", tag);
    return 0;
}

static void reply_json_obj(qd_req *r, json_t *root, const char *content_type)
{
    char *text = json_dumps(root, JSON_COMPACT);
    struct evbuffer *b = evbuffer_new();
    json_decref(root);
    if (b && text)
        evbuffer_add(b, text, strlen(text));
    free(text); /* jansson */
    qd_req_header(r, "Content-Type", content_type);
    qd_reply(r, 200, b);
}

static void tags_list(qd_req *r, const char *repo)
{
    const char *ns = qd_req_query(r, "n"), *last = qd_req_query(r, "last");
    tags_ctx c;
    json_t *root;
    bool more = false;
    long long n = 0;
    int rc;

    r->route = "tags_list";
    if (!qd_auth_check(r, repo, QD_SCOPE_PULL))
        return;
    if (ns) {
        char *end;
        errno = 0;
        n = strtoll(ns, &end, 10);
        if (end == ns || *end || errno || n < 0 || n > 100000) {
            qd_reply_oci(r, "PAGINATION_NUMBER_INVALID", "n must be a whole number from 0 to 100000", NULL);
            return;
        }
    }
    if (last && *last && !qd_registry_tag_valid(last)) {
        qd_reply_oci(r, "TAG_INVALID", "last is not a tag", NULL);
        return;
    }
    c.arr = json_array();
    c.last[0] = 0;
    if (ns && n == 0) {
        /* an empty page, but the repository must exist */
        rc = qd_registry_repo_exists(r->srv->store, repo) ? QD_OK
             : qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "repository %s is unknown", repo);
    } else
        rc = qd_registry_tags_list(&more, r->srv->store, repo, last, (size_t)n, tags_one, &c);
    if (rc < 0) {
        json_decref(c.arr);
        qd_reply_err(r, rc, "NAME_UNKNOWN");
        return;
    }
    if (more) {
        char link[QD_REPO_MAX + QD_TAG_MAX + 96];
        snprintf(link, sizeof(link), "</v2/%s/tags/list?n=%lld&last=%s>; rel=\"next\"", repo, n, c.last);
        qd_req_header(r, "Link", link);
    }
    root = json_object();
    json_object_set_new(root, "name", json_string(repo));
    json_object_set_new(root, "tags", c.arr);
    reply_json_obj(r, root, "application/json");
}

static int referrer_one(const qd_manifest_info *info, void *payload)
{
    json_t *d = json_object();
    char ds[QD_DIGEST_STR_LEN + 1];
    json_object_set_new(d, "mediaType", json_string(info->media_type));
    json_object_set_new(d, "digest", json_string(qd_digest_format(ds, &info->digest)));
    json_object_set_new(d, "size", json_integer((json_int_t)info->size));
    if (info->artifact_type[0])
        json_object_set_new(d, "artifactType", json_string(info->artifact_type));
    if (info->annotations) {
        json_t *a = json_loads(info->annotations, 0, NULL);
        if (a)
            json_object_set_new(d, "annotations", a);
    }
    json_array_append_new(payload, d);
    return 0;
}

static void referrers(qd_req *r, const char *repo, const char *dstr)
{
    const char *atype = qd_req_query(r, "artifactType");
    qd_digest d;
    json_t *root, *arr;
    int rc;

    r->route = "referrers";
    if (qd_digest_parse(&d, dstr) < 0) {
        qd_reply_oci(r, "DIGEST_INVALID", qd_error_last()->message, NULL);
        return;
    }
    if (!qd_auth_check(r, repo, QD_SCOPE_PULL))
        return;
    arr = json_array();
    if ((rc = qd_registry_referrers(r->srv->store, repo, &d, atype, referrer_one, arr)) < 0) {
        json_decref(arr);
        qd_reply_err(r, rc, "UNKNOWN");
        return;
    }
    root = json_object();
    json_object_set_new(root, "schemaVersion", json_integer(2));
    json_object_set_new(root, "mediaType", json_string(MT_OCI_INDEX));
    json_object_set_new(root, "manifests", arr);
    if (atype && *atype)
        qd_req_header(r, "OCI-Filters-Applied", "artifactType");
    reply_json_obj(r, root, MT_OCI_INDEX);
}

/* ---- the router ------------------------------------------------------------------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

void qd_oci_handle(qd_req *r)
{
    const char *path = r->path;
    char name[QD_REPO_MAX + 1];
    const char *rest, *seg;
    size_t n, nl;
    int m = r->method;

    qd_req_header(r, "Docker-Distribution-API-Version", "registry/2.0");
    r->route = "v2";
    if (!strcmp(path, "/v2") || !strcmp(path, "/v2/")) {
        r->route = "base";
        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
            return;
        }
        if (qd_auth_check(r, NULL, QD_SCOPE_PULL))
            qd_reply_json(r, 200, "{}");
        return;
    }
    rest = path + 4;
    n = strlen(rest);
    /* path tricks: nothing in a valid name or reference needs escapes, dot segments or empty segments */
    if (strchr(rest, '%') || strstr(rest, "//") || strstr(rest, "/./") || strstr(rest, "/../") ||
        !strncmp(rest, "../", 3) || !strncmp(rest, "./", 2) || strchr(rest, '\\') || n > 1024) {
        qd_reply_oci(r, "NAME_INVALID", "malformed path", NULL);
        return;
    }
    /* find the endpoint from the right: the name is everything before it */
    if (ends_with(rest, n, "/tags/list")) {
        nl = n - 10;
        seg = "tags";
    } else if (ends_with(rest, n, "/blobs/uploads") || ends_with(rest, n, "/blobs/uploads/")) {
        nl = n - (rest[n - 1] == '/' ? 15 : 14);
        seg = "uploads";
    } else {
        const char *last = strrchr(rest, '/'), *prev;
        if (!last || last == rest) {
            qd_reply_oci(r, "NAME_INVALID", "no such endpoint", NULL);
            return;
        }
        for (prev = last - 1; prev > rest && *prev != '/'; prev--)
            ;
        if (*prev != '/') {
            qd_reply_oci(r, "NAME_INVALID", "no such endpoint", NULL);
            return;
        }
        seg = prev + 1;
        nl = (size_t)(prev - rest);
        if (!strncmp(seg, "manifests/", 10))
            seg = "manifests";
        else if (!strncmp(seg, "referrers/", 10))
            seg = "referrers";
        else if (!strncmp(seg, "uploads/", 8) && ends_with(rest, nl, "/blobs")) {
            nl -= 6;
            seg = "session";
        } else if (!strncmp(seg, "blobs/", 6))
            seg = "blobs";
        else {
            qd_reply_oci(r, "NAME_INVALID", "no such endpoint", NULL);
            return;
        }
    }
    if (nl == 0 || nl > QD_REPO_MAX) {
        qd_reply_oci(r, "NAME_INVALID", "the repository name is empty or too long", NULL);
        return;
    }
    memcpy(name, rest, nl);
    name[nl] = 0;
    if (!qd_registry_name_valid(name)) {
        qd_reply_oci(r, "NAME_INVALID", "the repository name does not match the OCI name grammar", NULL);
        return;
    }
    {
        const char *arg = strrchr(rest, '/') + 1;
        if (!strcmp(seg, "tags")) {
            if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
                tags_list(r, name);
            else
                qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        } else if (!strcmp(seg, "uploads")) {
            if (m == EVHTTP_REQ_POST)
                upload_start(r, name);
            else
                qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        } else if (!strcmp(seg, "session")) {
            upload_session(r, name, arg);
        } else if (!strcmp(seg, "manifests")) {
            if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
                manifest_get(r, name, arg);
            else if (m == EVHTTP_REQ_PUT)
                manifest_put(r, name, arg);
            else if (m == EVHTTP_REQ_DELETE)
                manifest_delete(r, name, arg);
            else
                qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        } else if (!strcmp(seg, "referrers")) {
            if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
                referrers(r, name, arg);
            else
                qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        } else { /* blobs */
            if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
                blob_get(r, name, arg);
            else if (m == EVHTTP_REQ_DELETE)
                blob_delete(r, name, arg);
            else
                qd_reply_oci(r, "UNSUPPORTED", "method not allowed here", NULL);
        }
    }
}
