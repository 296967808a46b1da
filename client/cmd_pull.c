/*
 * cmd_pull.c - `quant pull NAME[:TAG|@DIGEST] [-o DIR] [--policy POLICY]`: the manifest, its Sigstore bundle found
 * through the referrers API and verified against the trust policy before any weight is fetched, then each layer
 * with parallel Range requests into DIR/.NAME.quant-part, renamed to DIR/NAME only when the whole file's SHA-256
 * equals the signed subject digest.
 *
 * Hashing: the ranges land in the part file at their offsets (pwrite); a hashing thread follows the contiguous
 * prefix that is complete, reading those bytes back from the file (the page cache) as the prefix grows, so the
 * whole file is hashed in order while it downloads, on another core than the transfers. With one range (the
 * stream path) the bytes arrive in order: they go into a ring of 4 buffers of 8 MiB, and one thread hashes each
 * buffer from memory while another writes it with O_DIRECT (no page cache copy, no read-back, no writeback work).
 *
 * Resume: DIR/.NAME.quant-state records the digest, the size and each range's (start, end, done), written after
 * the bytes it counts; a later pull of the same digest continues each range from done (with If-Range: the
 * digest), hashing the prefix already on disk again first. A state of another digest or size is discarded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "pull_log.h"
#include "registry.h"

static const char pull_usage[] =
    "usage: quant pull NAME[:TAG|@DIGEST] [-o DIR] [--policy POLICY] [--parallel N] [--registry URL]\n"
    "                  [--cacert FILE] [--json] [--allow-unsigned] [--require-log --log-key PUB]\n"
    "  Verifies the artifact's signature bundle (a referrer of the manifest) against the trust policy before any\n"
    "  weight is fetched, then downloads each file with N parallel Range requests (default 4), and renames it into\n"
    "  DIR (default .) only when its SHA-256 equals the signed digest. An interrupted pull resumes.\n"
    "  --allow-unsigned: an artifact with no signature bundle at all is pulled anyway (with a warning; its files\n"
    "  are checked against the manifest's digests only). A bundle that fails to verify is refused all the same.\n"
    "  Off by default, and only on the command line (never from the config file or the environment).\n"
    "  --json: a summary on stdout (schemas/client.schema.json#/$defs/pull).\n"
    "  --require-log: the manifest must be included in the registry's signed log, checked against its checkpoint\n"
    "  signed by the log key PUB (docs/LOG.md), before any weight is fetched.\n"
    "  exit codes: 0 ok, 2 usage, 3 not found, 4 verification failed (nothing left on disk), 5 registry unreachable\n";

/* What one layer's pull did (for --json). */
typedef struct layer_result {
    uint64_t fetched; /* bytes received for it */
    int resumed;      /* it continued a partial download */
    int present;      /* it was already in DIR with the right digest */
} layer_result;

#define RANGE_MIN (1ull << 20)
#define HASH_BUF (1u << 20)
#define STREAM_BUF (8u << 20) /* one buffer of the stream's ring */
#define SRING 4               /* buffers in the ring */
#define STREAM_ALIGN 4096u    /* O_DIRECT alignment of offsets, lengths and memory */


typedef struct pull_ctx {
    int fd;
    uint64_t size;
    http_range *ranges;
    size_t n;
    qd_sha256 *h;
    uint64_t hashed;
    uint8_t *buf;
    const char *state_path;
    const char *digest_str;
    uint64_t last_state_ns;
    uint64_t resumed_from;
    progress prog;
    /* the hashing thread: it alone touches h, hashed and buf while it runs */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t prefix; /* complete bytes from 0, published by on_tick */
    int finished;    /* no more bytes will come */
    int started;
    int herr;        /* the thread's error (qd_err) */
    char hmsg[256];
    /* stream mode (one range): the bytes arrive in order, so they are hashed from memory by one thread and
     * written with O_DIRECT by another, each taking the buffers of a ring in order while the transfer fills the
     * next free one; a buffer is free again once both have done with it */
    int stream;
    int dfd;                  /* the part file opened O_DIRECT, or -1 (then fd: no O_DIRECT here) */
    uint8_t *smem[SRING];     /* allocations */
    uint8_t *sbuf[SRING];     /* their STREAM_ALIGN-aligned starts */
    size_t slen[SRING];       /* bytes in each submitted buffer */
    uint64_t soff[SRING];     /* the file offset of each submitted buffer */
    size_t sbuf_cap;          /* bytes per buffer */
    size_t fill;              /* bytes in the buffer being filled (number filled_seq) */
    uint64_t cur_off;         /* the file offset of its first byte */
    uint64_t filled_seq;      /* buffers submitted so far */
    uint64_t hashed_seq;      /* buffers hashed so far */
    uint64_t written_seq;     /* buffers written so far */
    uint64_t durable;         /* bytes from 0 written (what the state may claim) */
    pthread_t th2;            /* the writer */
    int started2;
} pull_ctx;

/* Write len bytes of data at off: O_DIRECT when aligned (no page cache: no copy, no writeback work on this
 * machine's CPUs), else through the page cache. */
static int write_at(pull_ctx *p, const uint8_t *data, size_t len, uint64_t off)
{
    int fd = p->dfd >= 0 && off % STREAM_ALIGN == 0 && len % STREAM_ALIGN == 0 ? p->dfd : p->fd;
    while (len) {
        ssize_t w = pwrite(fd, data, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && fd == p->dfd && errno == EINVAL) { /* O_DIRECT refused after all: the page cache */
            fd = p->fd;
            continue;
        }
        if (w <= 0)
            return errno == ENOSPC ? QD_EFULL : QD_EIO;
        data += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return QD_OK;
}

/* The hashing (writer = 0) or the writing (writer = 1) thread of the stream: each submitted buffer in order. */
static void stream_stage(pull_ctx *p, int writer)
{
    uint64_t *seq = writer ? &p->written_seq : &p->hashed_seq;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (*seq == p->filled_seq && !p->finished && !p->herr)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->herr || *seq == p->filled_seq)
            break;
        {
            int k = (int)(*seq % SRING), rc = QD_OK;
            const uint8_t *b = p->sbuf[k];
            size_t len = p->slen[k];
            uint64_t off = p->soff[k];
            pthread_mutex_unlock(&p->mu);
            if (writer)
                rc = write_at(p, b, len, off);
            else
                qd_sha256_update(p->h, b, len);
            pthread_mutex_lock(&p->mu);
            if (rc) {
                p->herr = rc;
                snprintf(p->hmsg, sizeof(p->hmsg), "write: %s", strerror(errno));
            } else if (writer) {
                p->durable = off + len;
            } else {
                p->hashed += len;
            }
            (*seq)++;
            pthread_cond_broadcast(&p->cv);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

static void *stream_hasher(void *arg)
{
    stream_stage(arg, 0);
    return NULL;
}

static void *stream_writer(void *arg)
{
    stream_stage(arg, 1);
    return NULL;
}

/* Hand the filled buffer to both stages, then wait until the next buffer of the ring is free. */
static int stream_submit(pull_ctx *p)
{
    int err;
    pthread_mutex_lock(&p->mu);
    if (p->fill && !p->herr) {
        int k = (int)(p->filled_seq % SRING);
        p->slen[k] = p->fill;
        p->soff[k] = p->cur_off;
        p->filled_seq++;
        pthread_cond_broadcast(&p->cv);
    }
    while (!p->herr && (p->filled_seq - p->hashed_seq >= SRING || p->filled_seq - p->written_seq >= SRING))
        pthread_cond_wait(&p->cv, &p->mu);
    err = p->herr;
    pthread_mutex_unlock(&p->mu);
    if (err)
        return qd_error_set(err, QD_EC_OS, "%s", p->hmsg);
    p->cur_off += p->fill;
    p->fill = 0;
    return QD_OK;
}

static int on_bytes_stream(void *ctx, size_t i, uint64_t off, const void *data, size_t len)
{
    pull_ctx *p = ctx;
    const uint8_t *s = data;
    (void)i;
    if (off != p->cur_off + p->fill)
        return qd_error_set(QD_ECORRUPT, QD_EC_NET, "bytes out of order at %llu", (unsigned long long)off);
    while (len) {
        size_t take = p->sbuf_cap - p->fill < len ? p->sbuf_cap - p->fill : len;
        memcpy(p->sbuf[p->filled_seq % SRING] + p->fill, s, take);
        p->fill += take;
        s += take;
        len -= take;
        if (p->fill == p->sbuf_cap) {
            int rc = stream_submit(p);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static void *hasher(void *arg)
{
    pull_ctx *p = arg;
    for (;;) {
        uint64_t target;
        int fin;
        pthread_mutex_lock(&p->mu);
        while (p->prefix <= p->hashed && !p->finished)
            pthread_cond_wait(&p->cv, &p->mu);
        target = p->prefix;
        fin = p->finished;
        pthread_mutex_unlock(&p->mu);
        while (p->hashed < target) {
            size_t want = target - p->hashed > HASH_BUF ? HASH_BUF : (size_t)(target - p->hashed);
            ssize_t got = pread(p->fd, p->buf, want, (off_t)p->hashed);
            if (got <= 0) {
                p->herr = QD_EIO;
                snprintf(p->hmsg, sizeof(p->hmsg), "read back: %s", got < 0 ? strerror(errno) : "short file");
                return NULL;
            }
            qd_sha256_update(p->h, p->buf, (size_t)got);
#ifdef SYNC_FILE_RANGE_WRITE
            /* start writing back what is complete, so the fsync before the rename has little left to do */
            sync_file_range(p->fd, (off_t)p->hashed, (off_t)got, SYNC_FILE_RANGE_WRITE);
#endif
            p->hashed += (uint64_t)got;
        }
        if (fin && p->hashed >= target)
            return NULL;
    }
}

/* Tell the hashing thread that no more bytes come, and wait for it. @return its error or QD_OK */
static int hasher_join(pull_ctx *p)
{
    if (!p->started && !p->started2)
        return QD_OK;
    if (p->stream)
        stream_submit(p); /* what arrived is good data: write it, so a resume need not fetch it again */
    pthread_mutex_lock(&p->mu);
    p->finished = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->started)
        pthread_join(p->th, NULL);
    p->started = 0;
    if (p->started2) {
        pthread_join(p->th2, NULL);
        p->started2 = 0;
    }
    if (p->herr)
        return qd_error_set(p->herr, QD_EC_OS, "%s", p->hmsg);
    return QD_OK;
}

int fetch_small(http_client *c, qd_buf *out, const char *path, const char *accept, const char *expect_digest,
                       size_t max, const char *what)
{
    http_resp r;
    int rc;
    http_resp_init(&r, max);
    if ((rc = http_request(c, &r, "GET", path, accept, NULL, NULL, NULL)) || (rc = http_status_error(&r, what)))
        goto cleanup;
    if (r.body.len >= max && r.content_length > r.body.len) {
        rc = qd_error_set(QD_EFULL, QD_EC_NET, "%s: larger than %zu bytes", what, max);
        goto cleanup;
    }
    if (expect_digest) {
        qd_digest d;
        char s[QD_DIGEST_STR_LEN + 1];
        qd_sha256_buf(&d, r.body.ptr, r.body.len);
        if (strcmp(qd_digest_format(s, &d), expect_digest)) {
            rc = qd_error_set(QD_EDIGEST, QD_EC_VERIFY, "%s: the bytes hash to %s, not %s", what, s, expect_digest);
            goto cleanup;
        }
    }
    rc = qd_buf_put(out, r.body.ptr, r.body.len);
cleanup:
    http_resp_dispose(&r);
    return rc;
}

static int layer_name_ok(const char *s)
{
    return *s && *s != '.' && !strchr(s, '/') && strlen(s) < 200;
}

int parse_manifest(layer **out, size_t *n_out, const qd_buf *m)
{
    json_error_t je;
    json_t *j = json_loadb((const char *)m->ptr, m->len, JSON_REJECT_DUPLICATES, &je);
    json_t *ls = j ? json_object_get(j, "layers") : NULL;
    layer *L = NULL;
    size_t n;
    int rc = QD_OK;

    *out = NULL;
    *n_out = 0;
    if (!json_is_array(ls) || !(n = json_array_size(ls))) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "the manifest has no layers%s%s", j ? "" : ": ", j ? "" : je.text);
        goto cleanup;
    }
    if (!(L = qd_calloc(n, sizeof(*L)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(ls, i);
        const char *dg = json_string_value(json_object_get(d, "digest"));
        const char *nm = json_string_value(json_object_get(json_object_get(d, "annotations"), ANN_FILEPATH));
        json_t *sz = json_object_get(d, "size");
        if (!dg || !nm || !json_is_integer(sz) || json_integer_value(sz) < 0 || qd_digest_parse(&L[i].digest, dg)) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "manifest layer %zu: needs digest, size and %s", i,
                              ANN_FILEPATH);
            goto cleanup;
        }
        if (!layer_name_ok(nm)) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "manifest layer %zu: refusing the file path '%s'", i, nm);
            goto cleanup;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(L[k].name, nm)) {
                rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "manifest: two layers named %s", nm);
                goto cleanup;
            }
        snprintf(L[i].name, sizeof(L[i].name), "%s", nm);
        qd_digest_format(L[i].digest_str, &L[i].digest);
        L[i].size = (uint64_t)json_integer_value(sz);
    }
    *out = L;
    *n_out = n;
    L = NULL;
cleanup:
    qd_free(L);
    json_decref(j);
    return rc;
}

/* Find a bundle among the manifest's referrers that verifies against the policy and the layers. */
int verify_referrers(qd_verified **out, int *unsigned_out, http_client *c, const image_ref *ref,
                     const char *man_digest, const qd_policy *pol, const layer *L, size_t n)
{
    char path[1024];
    qd_buf idx, rm, bundle;
    json_t *j = NULL;
    qd_subject *subs = NULL;
    qd_verify_failure why;
    size_t tried = 0;
    int rc, last = QD_OK;
    char last_msg[1024] = "";

    qd_buf_init(&idx, 4u << 20);
    qd_buf_init(&rm, 1u << 20);
    qd_buf_init(&bundle, 0);
    snprintf(path, sizeof(path), "/v2/%s/referrers/%s?artifactType=%s", ref->name, man_digest,
             "application/vnd.dev.sigstore.bundle.v0.3%2Bjson");
    if ((rc = fetch_small(c, &idx, path, MT_INDEX, NULL, 4u << 20, "referrers")))
        goto cleanup;
    if (!(subs = qd_calloc(n, sizeof(*subs)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        subs[i] = (qd_subject){L[i].name, L[i].digest};
    j = json_loadb((const char *)idx.ptr, idx.len, 0, NULL);
    json_t *ms = j ? json_object_get(j, "manifests") : NULL;
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *d = json_array_get(ms, i), *rj, *l0;
        const char *at = json_string_value(json_object_get(d, "artifactType"));
        const char *dg = json_string_value(json_object_get(d, "digest"));
        const char *bd;
        qd_envelope *env = NULL;
        if (!at || strcmp(at, MT_BUNDLE) || !dg)
            continue;
        tried++;
        qd_buf_clear(&rm);
        qd_buf_clear(&bundle);
        snprintf(path, sizeof(path), "/v2/%s/manifests/%s", ref->name, dg);
        if ((rc = fetch_small(c, &rm, path, MT_MANIFEST, dg, 1u << 20, "bundle manifest")))
            goto cleanup;
        rj = json_loadb((const char *)rm.ptr, rm.len, 0, NULL);
        l0 = rj ? json_array_get(json_object_get(rj, "layers"), 0) : NULL;
        bd = json_string_value(json_object_get(l0, "digest"));
        if (!bd || qd_digest_parse(&(qd_digest){{0}}, bd)) {
            json_decref(rj);
            continue;
        }
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->name, bd);
        rc = fetch_small(c, &bundle, path, NULL, bd, qd_policy_max_payload(pol) * 2 + 65536, "bundle");
        json_decref(rj);
        if (rc)
            goto cleanup;
        qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
        vo.namespace_name = ref->name;
        memset(&why, 0, sizeof(why));
        rc = qd_envelope_parse(&env, bundle.ptr, bundle.len, qd_policy_max_payload(pol));
        if (!rc)
            rc = qd_verify(out, &why, pol, env, subs, n, &vo);
        qd_envelope_free(env);
        if (!rc)
            goto cleanup;
        last = rc;
        if (why.reason[0])
            snprintf(last_msg, sizeof(last_msg), "key %s, subject %s: %s", why.key_id, why.subject, why.reason);
        else
            snprintf(last_msg, sizeof(last_msg), "%s", qd_error_last()->message);
    }
    if (!tried && unsigned_out)
        *unsigned_out = 1;
    if (!tried)
        rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "%s: no signature bundle is attached (referrers of %s)",
                          ref->name, man_digest);
    else
        rc = qd_error_set(last == QD_EDIGEST ? QD_EDIGEST : QD_EBADSIG, QD_EC_VERIFY,
                          "%s: no bundle verifies against the policy (%zu tried; last: %s)", ref->name, tried,
                          last_msg);
cleanup:
    json_decref(j);
    qd_free(subs);
    qd_buf_dispose(&idx);
    qd_buf_dispose(&rm);
    qd_buf_dispose(&bundle);
    return rc;
}

static int write_state(pull_ctx *p)
{
    char tmp[1200];
    FILE *f;
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->state_path);
    if (!(f = fopen(tmp, "w")))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
    fprintf(f, "quant-pull 1 %s %llu %zu\n", p->digest_str, (unsigned long long)p->size, p->n);
    if (p->stream) {
        /* only what the worker has written counts: received bytes still in a buffer are not on disk */
        uint64_t durable;
        pthread_mutex_lock(&p->mu);
        durable = p->durable;
        pthread_mutex_unlock(&p->mu);
        fprintf(f, "0 %llu %llu\n", (unsigned long long)p->size, (unsigned long long)durable);
    }
    for (size_t i = 0; !p->stream && i < p->n; i++)
        fprintf(f, "%llu %llu %llu\n", (unsigned long long)p->ranges[i].start, (unsigned long long)p->ranges[i].end,
                (unsigned long long)p->ranges[i].done);
    if (fclose(f) || rename(tmp, p->state_path))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: cannot write", p->state_path);
    return QD_OK;
}

/* Load a state of this digest and size; 0 ranges when there is none (or it does not fit). */
static size_t read_state(pull_ctx *p, http_range *ranges, size_t cap)
{
    char dg[128];
    unsigned long long size, a, b, d;
    size_t n = 0;
    FILE *f = fopen(p->state_path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "quant-pull 1 %100s %llu %zu", dg, &size, &n) != 3 || strcmp(dg, p->digest_str) ||
        size != p->size || n == 0 || n > cap) {
        fclose(f);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (fscanf(f, "%llu %llu %llu", &a, &b, &d) != 3 || a > b || b > size || d > b - a ||
            (i && a != ranges[i - 1].end) || (!i && a != 0)) {
            fclose(f);
            return 0;
        }
        ranges[i] = (http_range){a, b, d};
    }
    fclose(f);
    return ranges[n - 1].end == size ? n : 0;
}

static int on_bytes(void *ctx, size_t i, uint64_t off, const void *data, size_t len)
{
    pull_ctx *p = ctx;
    const char *s = data;
    (void)i;
    while (len) {
        ssize_t w = pwrite(p->fd, s, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write: %s", strerror(errno));
        s += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return 0;
}

/* Hash the complete prefix, save the state now and then, draw the progress bar. */
static int on_tick(void *ctx)
{
    pull_ctx *p = ctx;
    uint64_t prefix = 0, done = 0, t;
    for (size_t i = 0; i < p->n; i++)
        done += p->ranges[i].done;
    for (size_t i = 0; i < p->n; i++) {
        prefix = p->ranges[i].start + p->ranges[i].done;
        if (prefix < p->ranges[i].end)
            break;
    }
    if (!p->stream) {
        pthread_mutex_lock(&p->mu);
        if (prefix > p->prefix) {
            p->prefix = prefix;
            pthread_cond_signal(&p->cv);
        }
        pthread_mutex_unlock(&p->mu);
    }
    t = now_ns();
    if (t - p->last_state_ns > 200000000ull) {
        p->last_state_ns = t;
        int rc = write_state(p);
        if (rc)
            return rc;
    }
    progress_update(done, p->size, &p->prog);
    return 0;
}

static int pull_layer(http_client *c, const image_ref *ref, const char *dir, const layer *L, size_t parallel,
                      layer_result *res)
{
    char target[1200], part[1200], state[1200], path[1024];
    http_range ranges[64];
    pull_ctx p;
    qd_digest got;
    struct stat st;
    int rc = QD_OK, keep = 1;

    memset(&p, 0, sizeof(p));
    p.fd = p.dfd = -1;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    snprintf(target, sizeof(target), "%s/%s", dir, L->name);
    snprintf(part, sizeof(part), "%s/.%s.quant-part", dir, L->name);
    snprintf(state, sizeof(state), "%s/.%s.quant-state", dir, L->name);
    if (!stat(target, &st) && (uint64_t)st.st_size == L->size && !qd_file_sha256(&got, target) &&
        qd_digest_equal(&got, &L->digest)) {
        fprintf(stderr, "quant pull: %s: already there\n", L->name);
        res->present = 1;
        return QD_OK;
    }
    p.size = L->size;
    p.state_path = state;
    p.digest_str = L->digest_str;
    p.ranges = ranges;
    if (parallel > 64)
        parallel = 64;
    p.n = read_state(&p, ranges, 64);
    if (p.n && stat(part, &st))
        p.n = 0; /* the state without its part file: start over */
    if (!p.n) {
        uint64_t per;
        p.n = (size_t)((L->size + RANGE_MIN - 1) / RANGE_MIN);
        if (p.n > parallel)
            p.n = parallel;
        if (!p.n)
            p.n = 1;
        per = (L->size + p.n - 1) / p.n;
        for (size_t i = 0; i < p.n; i++) {
            ranges[i].start = i * per < L->size ? i * per : L->size;
            ranges[i].end = (i + 1) * per < L->size ? (i + 1) * per : L->size;
            ranges[i].done = 0;
        }
        unlink(part);
    } else {
        if (p.n == 1) /* the stream writes whole aligned blocks: continue from a block boundary */
            ranges[0].done -= ranges[0].done % STREAM_ALIGN;
        for (size_t i = 0; i < p.n; i++)
            p.resumed_from += ranges[i].done;
        fprintf(stderr, "quant pull: %s: resuming (%llu of %llu bytes on disk)\n", L->name,
                (unsigned long long)p.resumed_from, (unsigned long long)L->size);
    }
    p.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (p.fd < 0) {
        rc = qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "%s: %s", part, strerror(errno));
        goto cleanup;
    }
    if (ftruncate(p.fd, (off_t)L->size)) {
        rc = qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "%s: %s", part, strerror(errno));
        goto cleanup;
    }
    if ((rc = qd_sha256_new(&p.h)))
        goto cleanup;
    if (!(p.buf = qd_malloc(HASH_BUF))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    p.stream = p.n == 1;
    if (p.stream) {
        /* one range: hash the prefix already on disk, then the rest from memory as it arrives */
        uint64_t cap = L->size - ranges[0].done < STREAM_BUF ? L->size - ranges[0].done : STREAM_BUF;
        p.sbuf_cap = (size_t)((cap + STREAM_ALIGN - 1) / STREAM_ALIGN * STREAM_ALIGN);
        if (!p.sbuf_cap)
            p.sbuf_cap = STREAM_ALIGN;
        for (int k = 0; k < SRING; k++) {
            if (!(p.smem[k] = qd_malloc(p.sbuf_cap + STREAM_ALIGN))) {
                rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
                goto cleanup;
            }
            p.sbuf[k] = p.smem[k] + (STREAM_ALIGN - (uintptr_t)p.smem[k] % STREAM_ALIGN) % STREAM_ALIGN;
        }
        while (p.hashed < ranges[0].done) {
            size_t want = ranges[0].done - p.hashed > HASH_BUF ? HASH_BUF : (size_t)(ranges[0].done - p.hashed);
            ssize_t got_n = pread(p.fd, p.buf, want, (off_t)p.hashed);
            if (got_n <= 0) {
                rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: read back: %s", part, got_n < 0 ? strerror(errno) : "short");
                goto cleanup;
            }
            qd_sha256_update(p.h, p.buf, (size_t)got_n);
            p.hashed += (uint64_t)got_n;
        }
        p.durable = p.cur_off = ranges[0].done;
        p.dfd = open(part, O_WRONLY | O_DIRECT | O_CLOEXEC); /* -1 (e.g. tmpfs): the page cache it is */
    }
    if ((rc = write_state(&p)))
        goto cleanup;
    if (p.stream && pthread_create(&p.th2, NULL, stream_writer, &p)) {
        rc = qd_error_set(QD_ERROR, QD_EC_OS, "cannot start the writing thread");
        goto cleanup;
    }
    p.started2 = p.stream;
    if (pthread_create(&p.th, NULL, p.stream ? stream_hasher : hasher, &p)) {
        rc = qd_error_set(QD_ERROR, QD_EC_OS, "cannot start the hashing thread");
        goto cleanup;
    }
    p.started = 1;
    progress_start(&p.prog, L->name, L->size);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->name, L->digest_str);
    uint64_t before = http_bytes_received(c);
    if (L->size)
        rc = http_get_ranges(c, path, L->digest_str, ranges, p.n, p.stream ? on_bytes_stream : on_bytes, on_tick,
                             &p);
    else
        rc = on_tick(&p);
    progress_end(&p.prog);
    res->fetched += http_bytes_received(c) - before;
    res->resumed = p.resumed_from > 0;
    {
        int hr = hasher_join(&p);
        if (!rc)
            rc = hr;
    }
    if (rc) {
        write_state(&p);
        if (rc == QD_ECORRUPT || rc == QD_EDIGEST)
            keep = 0;
        goto cleanup;
    }
    if (p.hashed != L->size) {
        rc = qd_error_set(QD_ETRUNCATED, QD_EC_NET, "%s: hashed %llu of %llu bytes", L->name,
                          (unsigned long long)p.hashed, (unsigned long long)L->size);
        keep = 0;
        goto cleanup;
    }
    qd_sha256_final(p.h, &got);
    if (!qd_digest_equal(&got, &L->digest)) {
        char s[QD_DIGEST_STR_LEN + 1];
        rc = qd_error_set(QD_EDIGEST, QD_EC_VERIFY, "%s: the downloaded bytes hash to %s, the signed digest is %s",
                          L->name, qd_digest_format(s, &got), L->digest_str);
        keep = 0;
        goto cleanup;
    }
    if (fsync(p.fd) || rename(part, target)) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", target, strerror(errno));
        keep = 0;
        goto cleanup;
    }
    unlink(state);
    fprintf(stderr, "quant pull: %s: %llu bytes, %s%s\n", L->name, (unsigned long long)L->size, L->digest_str,
            p.resumed_from ? " (resumed)" : "");
cleanup:
    hasher_join(&p);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    if (p.fd >= 0)
        close(p.fd);
    if (p.dfd >= 0)
        close(p.dfd);
    for (int k = 0; k < SRING; k++)
        qd_free(p.smem[k]);
    if (rc && !keep) {
        unlink(part);
        unlink(state);
    }
    qd_sha256_free(p.h);
    qd_free(p.buf);
    return rc;
}

int cmd_pull(int argc, char **argv)
{
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"policy", required_argument, NULL, 'P'},
                                         {"parallel", required_argument, NULL, 'j'},
                                         {"registry", required_argument, NULL, 'r'},
                                         {"cacert", required_argument, NULL, 'C'},
                                         {"no-verify", no_argument, NULL, 'N'},
                                         {"allow-unsigned", no_argument, NULL, 'U'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"require-log", no_argument, NULL, 'L'},
                                         {"log-key", required_argument, NULL, 'K'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = ".", *log_key = NULL;
    int require_log = 0;
    quant_config cfg;
    image_ref ref;
    long parallel = 4;
    int no_verify = 0, allow_unsigned = 0, is_unsigned = 0, json = 0, rc, ch, ex = EXIT_OK_;
    http_client *c = NULL;
    qd_policy *pol = NULL;
    qd_verified *ver = NULL;
    qd_buf man;
    layer *L = NULL;
    layer_result *R = NULL;
    size_t n = 0;
    char path[1024], man_digest[QD_DIGEST_STR_LEN + 1];
    uint64_t fetched = 0, total = 0, t0;
    struct stat st;

    qd_buf_init(&man, 4u << 20);
    if ((rc = quant_config_load(&cfg)))
        return qd_fail(rc, "pull");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "o:j:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'o': dir = optarg; break;
        case 'P': snprintf(cfg.policy, sizeof(cfg.policy), "%s", optarg); break;
        case 'j': parallel = strtol(optarg, NULL, 10); break;
        case 'r': snprintf(cfg.registry, sizeof(cfg.registry), "%s", optarg); break;
        case 'C': snprintf(cfg.cacert, sizeof(cfg.cacert), "%s", optarg); break;
        case 'N': no_verify = 1; break;
        case 'U': allow_unsigned = 1; break;
        case 'J': json = 1; break;
        case 'L': require_log = 1; break;
        case 'K': log_key = optarg; break;
        case 'h': fputs(pull_usage, stdout); return EXIT_OK_;
        default: fputs(pull_usage, stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind != 1 || parallel < 1 || parallel > 64) {
        fputs(pull_usage, stderr);
        return EXIT_USAGE;
    }
    if (require_log && !log_key) {
        fprintf(stderr, "quant pull: --require-log needs --log-key PUB (the registry's log key)\n");
        return EXIT_USAGE;
    }
    if (no_verify) {
        fprintf(stderr, "quant pull: --no-verify is refused: a signed artifact is always verified against the\n"
                        "  trust policy; --allow-unsigned pulls artifacts that carry no signature at all\n");
        return EXIT_USAGE;
    }
    if (!cfg.policy[0]) {
        fprintf(stderr, "quant pull: no trust policy: give --policy FILE, set QUANT_POLICY, or 'policy' in the "
                        "config file\n");
        return EXIT_USAGE;
    }
    if ((rc = image_ref_parse(&ref, argv[optind])))
        return qd_fail(rc, "pull");
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "quant pull: %s: not a directory\n", dir);
        return EXIT_NOTFOUND;
    }
    if ((rc = qd_policy_load(&pol, cfg.policy)) || (rc = registry_open(&c, &cfg)))
        goto cleanup;
    t0 = now_ns();
    /* 1. the manifest */
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", ref.name, ref.ref);
    if ((rc = fetch_small(c, &man, path, MT_MANIFEST, ref.by_digest ? ref.ref : NULL, 4u << 20, "manifest")))
        goto cleanup;
    {
        qd_digest d;
        qd_sha256_buf(&d, man.ptr, man.len);
        qd_digest_format(man_digest, &d);
    }
    if ((rc = parse_manifest(&L, &n, &man)))
        goto cleanup;
    if (!(R = qd_calloc(n, sizeof(*R)))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    /* 2. the signature, before any weight */
    rc = verify_referrers(&ver, &is_unsigned, c, &ref, man_digest, pol, L, n);
    if (rc && is_unsigned && allow_unsigned) {
        fprintf(stderr,
                "quant pull: WARNING: %s@%s IS NOT SIGNED. It is pulled only because of --allow-unsigned:\n"
                "quant pull: WARNING: nobody vouches for these files; they are checked against the manifest's\n"
                "quant pull: WARNING: digests only, and the manifest itself came unauthenticated from %s.\n",
                ref.name, man_digest, cfg.registry);
        rc = QD_OK;
    } else if (rc) {
        if (is_unsigned)
            qd_error_prefix("refused (to pull an unsigned artifact anyway, pass --allow-unsigned)");
        goto cleanup;
    } else {
        fprintf(stderr, "quant pull: %s@%s: verified (%s, %zu key%s)\n", ref.name, man_digest,
                qd_verified_predicate_type(ver), qd_verified_key_count(ver),
                qd_verified_key_count(ver) == 1 ? "" : "s");
    }
    /* 2b. the signed log (pull_log.c) */
    if (require_log && (rc = pull_check_log(c, man_digest, log_key)))
        goto cleanup;
    /* 3. the files */
    for (size_t i = 0; i < n; i++) {
        if ((rc = pull_layer(c, &ref, dir, &L[i], (size_t)parallel, &R[i]))) {
            qd_error_prefix("%s", L[i].name);
            goto cleanup;
        }
        total += L[i].size;
        fetched += R[i].fetched;
    }
    {
        double secs = (double)(now_ns() - t0) / 1e9;
        fprintf(stderr, "quant pull: %zu file%s, %llu bytes, %llu fetched in %.2f s (%.1f MB/s)\n", n,
                n == 1 ? "" : "s", (unsigned long long)total, (unsigned long long)fetched, secs,
                secs > 0 ? (double)fetched / secs / 1e6 : 0.0);
        if (json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:o,s:[],s:I,s:I,s:f}", "name", ref.name, "reference",
                                  argv[optind], "manifest", man_digest, "signed", !is_unsigned, "verified",
                                  ver ? json_pack("{s:s,s:I}", "predicate_type", qd_verified_predicate_type(ver),
                                                  "keys", (json_int_t)qd_verified_key_count(ver))
                                      : json_null(),
                                  "files", "bytes", (json_int_t)total, "fetched", (json_int_t)fetched, "seconds",
                                  secs);
            for (size_t i = 0; o && i < n; i++)
                json_array_append_new(json_object_get(o, "files"),
                                      json_pack("{s:s,s:s,s:I,s:I,s:b,s:b}", "name", L[i].name, "digest",
                                                L[i].digest_str, "size", (json_int_t)L[i].size, "fetched",
                                                (json_int_t)R[i].fetched, "resumed", R[i].resumed,
                                                "already_present", R[i].present));
            char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
            if (text)
                printf("%s\n", text);
            free(text); /* jansson */
            json_decref(o);
        }
    }
    if (!json)
        printf("%s@%s\n", ref.name, man_digest);
cleanup:
    if (rc) {
        ex = qd_fail(rc, "pull");
        if (ex == EXIT_UNREACHABLE && n)
            fprintf(stderr, "quant pull: the partial download is kept; run the same pull again to resume\n");
    }
    qd_verified_free(ver);
    qd_policy_free(pol);
    qd_buf_dispose(&man);
    qd_free(L);
    qd_free(R);
    http_close(c);
    return ex;
}
