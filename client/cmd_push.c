/*
 * cmd_push.c - `quant push NAME[:TAG] FILE... [--sign KEY]`: blobs (monolithic or chunked and resumable), a
 * ModelPack image manifest, and with --sign a Sigstore bundle pushed as a referrer of that manifest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "registry.h"

static const char push_usage[] =
    "usage: quant push NAME[:TAG] FILE... [--sign KEY] [--predicate-type URI --predicate FILE.json] [--json]\n"
    "                  [--registry URL] [--cacert FILE] [--chunk-size BYTES]\n"
    "  Uploads each FILE as a blob (one request up to --chunk-size, default 16 MiB; chunked PATCH uploads above,\n"
    "  resumed after an interruption), then an OCI image manifest with the ModelPack media types, tagged TAG.\n"
    "  --sign KEY signs an in-toto statement over the files (predicate https://quantd.dev/checkpoint/v1 unless\n"
    "  --predicate-type is given) and pushes the Sigstore bundle as a referrer of the manifest.\n";

typedef struct push_file {
    const char *path;
    char name[256];
    qd_digest digest;
    char digest_str[QD_DIGEST_STR_LEN + 1];
    uint64_t size;
    int present; /* the registry had it already */
} push_file;

/* Where interrupted chunked uploads are remembered: $XDG_CACHE_HOME/quant/uploads or ~/.cache/quant/uploads. */
static int upload_state_path(char *out, size_t cap, const char *registry, const char *name, const char *digest)
{
    const char *base = getenv("XDG_CACHE_HOME");
    char dir[1024], key_src[2048], hex[65];
    qd_digest k;
    if (base && *base) {
        mkdir(base, 0700);
        snprintf(dir, sizeof(dir), "%s/quant", base);
    } else if ((base = getenv("HOME")) && *base) {
        snprintf(dir, sizeof(dir), "%s/.cache", base);
        mkdir(dir, 0700);
        snprintf(dir, sizeof(dir), "%s/.cache/quant", base);
    } else {
        return -1;
    }
    mkdir(dir, 0700);
    strncat(dir, "/uploads", sizeof(dir) - strlen(dir) - 1);
    mkdir(dir, 0700);
    /* not keyed by the registry URL: a session Location of another registry is simply unknown there (404) */
    (void)registry;
    snprintf(key_src, sizeof(key_src), "%s %s", name, digest);
    qd_sha256_buf(&k, key_src, strlen(key_src));
    snprintf(out, cap, "%s/%s", dir, qd_digest_hex(hex, &k));
    return 0;
}

static int put_blob_mem(http_client *c, const char *name, const void *data, size_t len, const char *digest)
{
    char path[1024];
    http_resp r;
    http_body b = {data, -1, 0, len};
    int rc;
    http_resp_init(&r, 64 * 1024);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", name, digest);
    rc = http_request(c, &r, "POST", path, NULL, "application/octet-stream", NULL, &b);
    if (!rc)
        rc = http_status_error(&r, "blob upload");
    http_resp_dispose(&r);
    return rc;
}

/* Upload one file: skip when present, one POST+PUT when small, else chunked PATCHes resumable from the status. */
static int push_blob(http_client *c, const quant_config *cfg, const char *name, push_file *f, int fd,
                     uint64_t chunk)
{
    char path[2048], state[1200], loc[1024] = "", hdr[128];
    http_resp r;
    uint64_t off = 0;
    int rc;
    FILE *sf;

    http_resp_init(&r, 64 * 1024);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", name, f->digest_str);
    if ((rc = http_request(c, &r, "HEAD", path, NULL, NULL, NULL, NULL)))
        goto cleanup;
    if (r.status == 200) {
        fprintf(stderr, "quant push: %s: already there\n", f->name);
        f->present = 1;
        goto cleanup;
    }
    if (upload_state_path(state, sizeof(state), cfg->registry, name, f->digest_str))
        state[0] = 0;
    /* an interrupted upload of this file: ask where it stands */
    if (state[0] && (sf = fopen(state, "r"))) {
        if (!fgets(loc, sizeof(loc), sf))
            loc[0] = 0;
        fclose(sf);
        loc[strcspn(loc, "\n")] = 0;
        if (loc[0]) {
            if ((rc = http_request(c, &r, "GET", loc, NULL, NULL, NULL, NULL)))
                goto cleanup;
            if (r.status == 204 && r.range[0]) {
                const char *dash = strchr(r.range, '-');
                off = dash ? strtoull(dash + 1, NULL, 10) + 1 : 0;
                if (off > f->size)
                    off = 0, loc[0] = 0;
                else
                    fprintf(stderr, "quant push: %s: resuming the upload at byte %llu\n", f->name,
                            (unsigned long long)off);
            } else if (r.status == 204) {
                off = 0;
            } else {
                loc[0] = 0; /* gone or expired: start again */
            }
        }
    }
    if (!loc[0]) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", name);
        if ((rc = http_request(c, &r, "POST", path, NULL, NULL, NULL, NULL)) ||
            (rc = http_status_error(&r, "start upload")))
            goto cleanup;
        if (!r.location[0]) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "start upload: no Location in the answer");
            goto cleanup;
        }
        snprintf(loc, sizeof(loc), "%s", r.location);
        if (state[0] && f->size > chunk && (sf = fopen(state, "w"))) {
            fprintf(sf, "%s\n", loc);
            fclose(sf);
        }
    }
    /* chunks until at most one chunk is left; that one goes with the PUT */
    while (f->size - off > chunk) {
        http_body b = {NULL, fd, off, chunk};
        snprintf(hdr, sizeof(hdr), "Content-Range: %llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + chunk - 1));
        if ((rc = http_request(c, &r, "PATCH", loc, NULL, "application/octet-stream", hdr, &b)) ||
            (rc = http_status_error(&r, "upload chunk")))
            goto cleanup;
        if (r.location[0])
            snprintf(loc, sizeof(loc), "%s", r.location);
        off += chunk;
    }
    {
        http_body b = {NULL, fd, off, f->size - off};
        snprintf(path, sizeof(path), "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", f->digest_str);
        if ((rc = http_request(c, &r, "PUT", path, NULL, "application/octet-stream", NULL, &b)) ||
            (rc = http_status_error(&r, "finish upload")))
            goto cleanup;
    }
    if (state[0])
        unlink(state);
    fprintf(stderr, "quant push: %s: %llu bytes\n", f->name, (unsigned long long)f->size);
cleanup:
    http_resp_dispose(&r);
    return rc;
}

static int put_manifest(http_client *c, const char *name, const char *ref, const char *json, char *digest_out)
{
    char path[1024];
    qd_digest d;
    http_resp r;
    http_body b = {json, -1, 0, strlen(json)};
    int rc;
    qd_sha256_buf(&d, json, strlen(json));
    qd_digest_format(digest_out, &d);
    http_resp_init(&r, 64 * 1024);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", name, ref ? ref : digest_out);
    rc = http_request(c, &r, "PUT", path, NULL, MT_MANIFEST, NULL, &b);
    if (!rc)
        rc = http_status_error(&r, "manifest PUT");
    http_resp_dispose(&r);
    return rc;
}

static json_t *descriptor(const char *mt, const char *digest, uint64_t size)
{
    return json_pack("{s:s, s:s, s:I}", "mediaType", mt, "digest", digest, "size", (json_int_t)size);
}

static int read_text_file(char **out, const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    *out = NULL;
    if (!f)
        return qd_error_set(QD_ENOTFOUND, QD_EC_OS, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (4 << 20) || !(*out = qd_malloc((size_t)n + 1)) || fread(*out, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        qd_free(*out);
        *out = NULL;
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: cannot read", path);
    }
    (*out)[n] = 0;
    fclose(f);
    return QD_OK;
}

int cmd_push(int argc, char **argv)
{
    static const struct option opts[] = {{"sign", required_argument, NULL, 's'},
                                         {"registry", required_argument, NULL, 'r'},
                                         {"cacert", required_argument, NULL, 'C'},
                                         {"chunk-size", required_argument, NULL, 'c'},
                                         {"predicate-type", required_argument, NULL, 't'},
                                         {"predicate", required_argument, NULL, 'p'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *key_path = NULL, *ptype = QD_PREDICATE_CHECKPOINT, *pred_path = NULL;
    quant_config cfg;
    image_ref ref;
    uint64_t chunk = 16ull << 20;
    push_file *files = NULL;
    size_t nf = 0;
    http_client *c = NULL;
    qd_key *key = NULL;
    json_t *man = NULL, *layers = NULL, *cfgj = NULL, *diffs = NULL, *pred = NULL;
    char *man_s = NULL, *cfg_s = NULL, *pred_text = NULL;
    char man_digest[QD_DIGEST_STR_LEN + 1], cfg_digest[QD_DIGEST_STR_LEN + 1];
    qd_buf stmt, bundle;
    qd_envelope *env = NULL;
    int rc = QD_OK, ch, ex = EXIT_OK_, json = 0;
    char ref_digest[QD_DIGEST_STR_LEN + 1] = "";

    qd_buf_init(&stmt, 0);
    qd_buf_init(&bundle, 0);
    if ((rc = quant_config_load(&cfg)))
        return qd_fail(rc, "push");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': key_path = optarg; break;
        case 'r': snprintf(cfg.registry, sizeof(cfg.registry), "%s", optarg); break;
        case 'C': snprintf(cfg.cacert, sizeof(cfg.cacert), "%s", optarg); break;
        case 'c': chunk = strtoull(optarg, NULL, 10); break;
        case 't': ptype = optarg; break;
        case 'p': pred_path = optarg; break;
        case 'J': json = 1; break;
        case 'h': fputs(push_usage, stdout); return EXIT_OK_;
        default: fputs(push_usage, stderr); return EXIT_USAGE;
        }
    }
    if (argc - optind < 2 || chunk < 1024) {
        fputs(push_usage, stderr);
        return EXIT_USAGE;
    }
    if ((rc = image_ref_parse(&ref, argv[optind])))
        return qd_fail(rc, "push");
    if (ref.by_digest) {
        fprintf(stderr, "quant push: push to a tag, not a digest\n");
        return EXIT_USAGE;
    }
    nf = (size_t)(argc - optind - 1);
    files = qd_calloc(nf, sizeof(*files));
    if (!files)
        return qd_fail(qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory"), "push");
    for (size_t i = 0; i < nf; i++) {
        struct stat st;
        files[i].path = argv[optind + 1 + i];
        if (stat(files[i].path, &st) || !S_ISREG(st.st_mode)) {
            rc = qd_error_set(QD_ENOTFOUND, QD_EC_OS, "%s: not a regular file", files[i].path);
            goto cleanup;
        }
        files[i].size = (uint64_t)st.st_size;
        if ((rc = subject_name(files[i].name, sizeof(files[i].name), files[i].path, NULL)))
            goto cleanup;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(files[k].name, files[i].name)) {
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "two files are named %s", files[i].name);
                goto cleanup;
            }
        if ((rc = qd_file_sha256(&files[i].digest, files[i].path)))
            goto cleanup;
        qd_digest_format(files[i].digest_str, &files[i].digest);
    }
    if (key_path) {
        if ((rc = qd_key_load(&key, key_path)))
            goto cleanup;
        if (!qd_key_can_sign(key)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "%s: a public key cannot sign", key_path);
            goto cleanup;
        }
    }
    if ((rc = registry_open(&c, &cfg)))
        goto cleanup;

    /* 1. the blobs */
    for (size_t i = 0; i < nf; i++) {
        int fd = open(files[i].path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = qd_error_set(QD_ENOTFOUND, QD_EC_OS, "%s: %s", files[i].path, strerror(errno));
            goto cleanup;
        }
        rc = push_blob(c, &cfg, ref.name, &files[i], fd, chunk);
        close(fd);
        if (rc) {
            qd_error_prefix("%s", files[i].name);
            goto cleanup;
        }
    }
    /* 2. the config blob and the manifest */
    layers = json_array();
    diffs = json_array();
    for (size_t i = 0; i < nf; i++) {
        json_t *d = descriptor(MT_MODEL_WEIGHT, files[i].digest_str, files[i].size);
        json_object_set_new(d, "annotations", json_pack("{s:s}", ANN_FILEPATH, files[i].name));
        json_array_append_new(layers, d);
        json_array_append_new(diffs, json_string(files[i].digest_str));
    }
    cfgj = json_pack("{s:{s:s}, s:{s:s, s:O}}", "descriptor", "name", ref.name, "modelfs", "type", "layers",
                     "diffIds", diffs);
    cfg_s = json_dumps(cfgj, JSON_COMPACT | JSON_SORT_KEYS);
    if (!cfg_s) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto cleanup;
    }
    {
        qd_digest d;
        qd_sha256_buf(&d, cfg_s, strlen(cfg_s));
        qd_digest_format(cfg_digest, &d);
    }
    if ((rc = put_blob_mem(c, ref.name, cfg_s, strlen(cfg_s), cfg_digest)))
        goto cleanup;
    man = json_pack("{s:i, s:s, s:s, s:o, s:O}", "schemaVersion", 2, "mediaType", MT_MANIFEST, "artifactType",
                    MT_MODEL_ARTIFACT, "config", descriptor(MT_MODEL_CONFIG, cfg_digest, strlen(cfg_s)), "layers",
                    layers);
    man_s = json_dumps(man, JSON_COMPACT);
    if (!man_s || (rc = put_manifest(c, ref.name, ref.ref, man_s, man_digest)))
        goto cleanup;
    if (!json)
        printf("%s:%s@%s\n", ref.name, ref.ref, man_digest);

    /* 3. the signature, as a referrer */
    if (key) {
        qd_subject *subs = qd_calloc(nf, sizeof(*subs));
        char bundle_digest[QD_DIGEST_STR_LEN + 1];
        char *ref_s;
        json_t *rm;
        if (!subs) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < nf; i++)
            subs[i] = (qd_subject){files[i].name, files[i].digest};
        if (!strcmp(ptype, QD_PREDICATE_MODEL_SIGNING)) {
            rc = qd_statement_build_model_signing(&stmt, ref.name, subs, nf);
        } else {
            if (pred_path) {
                rc = read_text_file(&pred_text, pred_path);
            } else if (!strcmp(ptype, QD_PREDICATE_CHECKPOINT)) {
                json_t *fl = json_array();
                char uri[1024];
                time_t now = time(NULL);
                char ts[32];
                strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
                if (snprintf(uri, sizeof(uri), "%s/%s:%s", cfg.registry, ref.name, ref.ref) < 0)
                    uri[0] = 0;
                for (size_t i = 0; i < nf; i++)
                    json_array_append_new(fl, json_pack("{s:s, s:s, s:I}", "name", files[i].name, "digest",
                                                        files[i].digest_str, "size", (json_int_t)files[i].size));
                pred = json_pack("{s:{s:s, s:s}, s:s, s:s, s:o, s:s, s:{s:s, s:s}}", "origin", "kind", "oci", "uri",
                                 uri, "license", "NOASSERTION", "precision", "f32", "files", fl, "created_at", ts,
                                 "builder", "id", "quant push", "key_id", qd_key_id(key));
                pred_text = pred ? json_dumps(pred, JSON_COMPACT) : NULL;
                if (!pred_text)
                    rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            } else {
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "--predicate FILE.json is required for %s", ptype);
            }
            if (!rc)
                rc = qd_statement_build(&stmt, subs, nf, ptype, pred_text);
        }
        qd_free(subs);
        if (rc || (rc = qd_envelope_new(&env, QD_INTOTO_PAYLOAD_TYPE, stmt.ptr, stmt.len)) ||
            (rc = qd_envelope_sign(env, key)) || (rc = qd_envelope_write_bundle(&bundle, env)))
            goto cleanup;
        {
            qd_digest d;
            qd_sha256_buf(&d, bundle.ptr, bundle.len);
            qd_digest_format(bundle_digest, &d);
        }
        if ((rc = put_blob_mem(c, ref.name, bundle.ptr, bundle.len, bundle_digest)) ||
            (rc = put_blob_mem(c, ref.name, "{}", 2, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")))
            goto cleanup;
        rm = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:i}, s:[o], s:o, s:{s:s}}", "schemaVersion", 2, "mediaType",
                       MT_MANIFEST, "artifactType", MT_BUNDLE, "config", "mediaType", MT_EMPTY, "digest",
                       "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size", 2,
                       "layers", descriptor(MT_BUNDLE, bundle_digest, bundle.len), "subject",
                       descriptor(MT_MANIFEST, man_digest, strlen(man_s)), "annotations",
                       "dev.sigstore.bundle.predicateType", ptype);
        ref_s = rm ? json_dumps(rm, JSON_COMPACT) : NULL;
        json_decref(rm);
        if (!ref_s) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            goto cleanup;
        }
        rc = put_manifest(c, ref.name, NULL, ref_s, ref_digest);
        free(ref_s);
        if (rc)
            goto cleanup;
        fprintf(stderr, "quant push: signed by %s (bundle %s)\n", qd_key_id(key), ref_digest);
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:[],s:b,s:s?,s:s?}", "name", ref.name, "tag", ref.ref, "manifest",
                              man_digest, "files", "signed", key != NULL, "key_id", key ? qd_key_id(key) : NULL,
                              "bundle_manifest", key ? ref_digest : NULL);
        char *text;
        for (size_t i = 0; o && i < nf; i++)
            json_array_append_new(json_object_get(o, "files"),
                                  json_pack("{s:s,s:s,s:I,s:b}", "name", files[i].name, "digest", files[i].digest_str,
                                            "size", (json_int_t)files[i].size, "already_present", files[i].present));
        if (o && !key) {
            json_object_set_new(o, "key_id", json_null());
            json_object_set_new(o, "bundle_manifest", json_null());
        }
        text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        if (text)
            printf("%s\n", text);
        free(text); /* jansson */
        json_decref(o);
    }
cleanup:
    if (rc)
        ex = qd_fail(rc, "push");
    json_decref(man);
    json_decref(layers);
    json_decref(cfgj);
    json_decref(diffs);
    json_decref(pred);
    free(man_s);
    free(cfg_s);
    if (pred && pred_text)
        free(pred_text);
    else
        qd_free(pred_text);
    qd_envelope_free(env);
    qd_key_free(key);
    qd_buf_dispose(&stmt);
    qd_buf_dispose(&bundle);
    http_close(c);
    qd_free(files);
    return ex;
}
