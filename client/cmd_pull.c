/*
 * cmd_pull.c - `quant pull NAME[:TAG|@DIGEST] [-o DIR] [--policy POLICY]`: the manifest, its Sigstore bundle found
 * through the referrers API and verified against the trust policy before any weight is fetched (and, when asked,
 * the manifest's inclusion in the registry's signed log: pull_log.c), then each layer through pull_file.c:
 * chunked parallel Range requests, hashed and written as they complete, renamed into DIR only when the whole
 * file's SHA-256 equals the signed subject digest; an interrupted pull resumes.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
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
#include "pull_file.h"
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
    pull_result *R = NULL;
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
    /* 3. the files (Ctrl-C stops at the next round of the transfer, keeping what arrived) */
    interrupt_catch();
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/%s", ref.name, L[i].digest_str);
        if ((rc = pull_file(c, path, dir, &L[i], (size_t)parallel, &R[i]))) {
            qd_error_prefix("%s", L[i].name);
            break;
        }
        total += L[i].size;
        fetched += R[i].fetched;
    }
    interrupt_release();
    if (rc)
        goto cleanup;
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
        if ((ex == EXIT_UNREACHABLE || ex == EXIT_INTERRUPTED) && n)
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
