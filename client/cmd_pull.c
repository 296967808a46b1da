/*
 * cmd_pull.c - `quant pull NAME[:TAG|@DIGEST] [-o DIR] [--policy POLICY]`: the manifest, its Sigstore bundle found
 * through the referrers API and verified against the trust policy before any weight is fetched, then each layer
 * with parallel Range requests into DIR/.NAME.quant-part, renamed to DIR/NAME only when the whole file's SHA-256
 * equals the signed subject digest.
 *
 * Hashing: the ranges land in the part file at their offsets (pwrite); a hashing thread follows the contiguous
 * prefix that is complete, reading those bytes back from the file (the page cache) as the prefix grows, so the
 * whole file is hashed in order while it downloads, on another core than the transfers.
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
    "                  [--cacert FILE] [--require-log --log-key PUB]\n"
    "  Verifies the artifact's signature bundle (a referrer of the manifest) against the trust policy before any\n"
    "  weight is fetched, then downloads each file with N parallel Range requests (default 4), and renames it into\n"
    "  DIR (default .) only when its SHA-256 equals the signed digest. An interrupted pull resumes.\n"
    "  --require-log: the manifest must be included in the registry's signed log, checked against its checkpoint\n"
    "  signed by the log key PUB (docs/LOG.md), before any weight is fetched.\n"
    "  exit codes: 0 ok, 2 usage, 3 not found, 4 verification failed (nothing left on disk), 5 registry unreachable\n";

#define RANGE_MIN (1ull << 20)
#define HASH_BUF (1u << 20)


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
} pull_ctx;

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
    if (!p->started)
        return QD_OK;
    pthread_mutex_lock(&p->mu);
    p->finished = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    p->started = 0;
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
int verify_referrers(qd_verified **out, http_client *c, const image_ref *ref, const char *man_digest,
                            const qd_policy *pol, const layer *L, size_t n)
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
    for (size_t i = 0; i < p->n; i++)
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
    pthread_mutex_lock(&p->mu);
    if (prefix > p->prefix) {
        p->prefix = prefix;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
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
                      uint64_t *fetched)
{
    char target[1200], part[1200], state[1200], path[1024];
    http_range ranges[64];
    pull_ctx p;
    qd_digest got;
    struct stat st;
    int rc = QD_OK, keep = 1;

    memset(&p, 0, sizeof(p));
    p.fd = -1;
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    snprintf(target, sizeof(target), "%s/%s", dir, L->name);
    snprintf(part, sizeof(part), "%s/.%s.quant-part", dir, L->name);
    snprintf(state, sizeof(state), "%s/.%s.quant-state", dir, L->name);
    if (!stat(target, &st) && (uint64_t)st.st_size == L->size && !qd_file_sha256(&got, target) &&
        qd_digest_equal(&got, &L->digest)) {
        fprintf(stderr, "quant pull: %s: already there\n", L->name);
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
    if ((rc = write_state(&p)))
        goto cleanup;
    if (pthread_create(&p.th, NULL, hasher, &p)) {
        rc = qd_error_set(QD_ERROR, QD_EC_OS, "cannot start the hashing thread");
        goto cleanup;
    }
    p.started = 1;
    progress_start(&p.prog, L->name, L->size);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref->name, L->digest_str);
    uint64_t before = http_bytes_received(c);
    if (L->size)
        rc = http_get_ranges(c, path, L->digest_str, ranges, p.n, on_bytes, on_tick, &p);
    else
        rc = on_tick(&p);
    progress_end(&p.prog);
    *fetched += http_bytes_received(c) - before;
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
                                         {"require-log", no_argument, NULL, 'L'},
                                         {"log-key", required_argument, NULL, 'K'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = ".", *log_key = NULL;
    int require_log = 0;
    quant_config cfg;
    image_ref ref;
    long parallel = 4;
    int no_verify = 0, rc, ch, ex = EXIT_OK_;
    http_client *c = NULL;
    qd_policy *pol = NULL;
    qd_verified *ver = NULL;
    qd_buf man;
    layer *L = NULL;
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
        fprintf(stderr, "quant pull: --no-verify is refused: trust policies (schemas/policy.schema.json) have no\n"
                        "  setting that allows unsigned artifacts, so every pull is verified\n");
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
    /* 2. the signature, before any weight */
    if ((rc = verify_referrers(&ver, c, &ref, man_digest, pol, L, n)))
        goto cleanup;
    fprintf(stderr, "quant pull: %s@%s: verified (%s, %zu key%s)\n", ref.name, man_digest,
            qd_verified_predicate_type(ver), qd_verified_key_count(ver), qd_verified_key_count(ver) == 1 ? "" : "s");
    /* 2b. the signed log (pull_log.c) */
    if (require_log && (rc = pull_check_log(c, man_digest, log_key)))
        goto cleanup;
    /* 3. the files */
    for (size_t i = 0; i < n; i++) {
        if ((rc = pull_layer(c, &ref, dir, &L[i], (size_t)parallel, &fetched))) {
            qd_error_prefix("%s", L[i].name);
            goto cleanup;
        }
        total += L[i].size;
    }
    {
        double secs = (double)(now_ns() - t0) / 1e9;
        fprintf(stderr, "quant pull: %zu file%s, %llu bytes, %llu fetched in %.2f s (%.1f MB/s)\n", n,
                n == 1 ? "" : "s", (unsigned long long)total, (unsigned long long)fetched, secs,
                secs > 0 ? (double)fetched / secs / 1e6 : 0.0);
    }
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
    http_close(c);
    return ex;
}
