/*
 * cmd_key.c - `quant key gen|show|export|import`: signing keys (Ed25519 by default, ECDSA P-256); `quant key
 * list|publish|revoke|rotate`: publisher keys in a registry's signed log (the daemon's /v1/keys routes, admin scope).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "http.h"
#include "registry.h"
#include "qd/qd.h"
#include "qd/verify.h"

static const char *key_usage =
    "usage: quant key <subcommand> ...\n"
    "\n"
    "  gen --out KEY [--type ed25519|ecdsa-p256]   new key pair: KEY (PKCS#8 PEM, mode 0600) and KEY.pub (SPKI PEM)\n"
    "  show KEY [--json]                            key id, algorithm, whether it can sign\n"
    "  export KEY [--format pem|openssh] [--out F]  the public key as SPKI PEM (default) or an OpenSSH line\n"
    "  import FILE --out KEY                        read a PKCS#8/SPKI PEM key or an OpenSSH public key line;\n"
    "                                               a private key becomes KEY + KEY.pub, a public key KEY (PEM)\n"
    "\n"
    "  list [--registry URL]                        the keys the registry's signed log lists (id, added, revoked)\n"
    "  publish KEY.pub [--namespace NS[,NS]]        add a publisher key to the registry's log (one key-add entry)\n"
    "  revoke ID                                    revoke a key (one key-revoke entry)\n"
    "  rotate ID NEW.pub [--namespace NS[,NS]]      add NEW.pub and revoke ID, as two adjacent entries\n"
    "  (registry subcommands: --registry URL, --cacert FILE; the token (admin scope) comes from QUANT_TOKEN or\n"
    "  'token' in the config file; exit 3 unknown key, 5 registry unreachable)\n"
    "\n"
    "--json (every subcommand): gen, show and import print {id, algorithm, private}; export without --out prints\n"
    "{id, algorithm, format, public_key} (schemas/client.schema.json#/$defs/key_show, key_export).\n"
    "The key id is the hex SHA-256 of the SPKI PEM text (the Sigstore publicKey.hint), e.g.\n"
    "  openssl pkey -pubin -in KEY.pub -pubout | sha256sum\n";

typedef struct key_opts {
    const char *out;
    const char *type;
    const char *format;
    const char *registry;
    const char *cacert;
    const char *namespaces;
    bool json;
} key_opts;

static int write_pair(const qd_key *k, const char *out)
{
    char pub[4096];
    int rc;
    if ((size_t)snprintf(pub, sizeof(pub), "%s.pub", out) >= sizeof(pub)) {
        fprintf(stderr, "quant key: path too long\n");
        return EXIT_USAGE;
    }
    if ((rc = qd_key_save_private(k, out)) < 0)
        return qd_fail(rc, "key");
    if ((rc = qd_key_save_public(k, pub, false)) < 0)
        return qd_fail(rc, "key");
    return EXIT_OK_;
}

/* {id, algorithm, private} on stdout (schemas/client.schema.json#/$defs/key_show) */
static void print_key_json(const qd_key *k)
{
    json_t *j = json_pack("{s:s, s:s, s:b}", "id", qd_key_id(k), "algorithm", qd_key_alg_name(qd_key_algorithm(k)),
                          "private", qd_key_can_sign(k));
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s)
        puts(s);
    free(s); /* jansson's allocator */
    json_decref(j);
}

static int do_gen(key_opts *o, int argc, char **argv)
{
    qd_key_alg alg = QD_KEY_ED25519;
    qd_key *k = NULL;
    int rc, ret;
    (void)argv;

    if (!o->out || argc) {
        fprintf(stderr, "quant key gen: --out KEY is required and takes no other argument\n");
        return EXIT_USAGE;
    }
    if (o->type && (rc = qd_key_alg_parse(&alg, o->type)) < 0)
        return qd_fail(rc, "key gen");
    if ((rc = qd_key_generate(&k, alg)) < 0)
        return qd_fail(rc, "key gen");
    ret = write_pair(k, o->out);
    if (ret == EXIT_OK_ && o->json)
        print_key_json(k);
    else if (ret == EXIT_OK_)
        printf("%s %s\n", qd_key_id(k), qd_key_alg_name(alg));
    qd_key_free(k);
    return ret;
}

static int load(qd_key **k, const char *path)
{
    int rc = qd_key_load(k, path);
    return rc < 0 ? qd_fail(rc, NULL) : EXIT_OK_;
}

static int do_show(key_opts *o, int argc, char **argv)
{
    qd_key *k = NULL;
    int ret;
    if (argc != 1) {
        fprintf(stderr, "quant key show: expected one KEY\n");
        return EXIT_USAGE;
    }
    if ((ret = load(&k, argv[0])))
        return ret;
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:b}", "id", qd_key_id(k), "algorithm",
                              qd_key_alg_name(qd_key_algorithm(k)), "private", qd_key_can_sign(k));
        char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            puts(s);
        free(s); /* jansson's allocator */
        json_decref(j);
    } else {
        printf("id:        %s\nalgorithm: %s\nprivate:   %s\n", qd_key_id(k), qd_key_alg_name(qd_key_algorithm(k)),
               qd_key_can_sign(k) ? "yes" : "no");
    }
    qd_key_free(k);
    return EXIT_OK_;
}

static int do_export(key_opts *o, int argc, char **argv)
{
    qd_buf b = QD_BUF_INIT(0);
    qd_key *k = NULL;
    bool ssh;
    int rc, ret = EXIT_OK_;

    if (argc != 1) {
        fprintf(stderr, "quant key export: expected one KEY\n");
        return EXIT_USAGE;
    }
    if (o->format && strcmp(o->format, "pem") && strcmp(o->format, "openssh")) {
        fprintf(stderr, "quant key export: --format is pem or openssh\n");
        return EXIT_USAGE;
    }
    ssh = o->format && !strcmp(o->format, "openssh");
    if ((ret = load(&k, argv[0])))
        return ret;
    if (o->out) {
        if ((rc = qd_key_save_public(k, o->out, ssh)) < 0)
            ret = qd_fail(rc, "key export");
    } else {
        rc = ssh ? qd_key_public_openssh(&b, k, NULL) : qd_key_public_pem(&b, k);
        if (rc < 0) {
            ret = qd_fail(rc, "key export");
        } else if (o->json) {
            json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "id", qd_key_id(k), "algorithm",
                                  qd_key_alg_name(qd_key_algorithm(k)), "format", ssh ? "openssh" : "pem",
                                  "public_key", qd_buf_cstr(&b));
            char *t = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
            if (t)
                puts(t);
            free(t); /* jansson's allocator */
            json_decref(j);
        } else {
            printf("%s%s", qd_buf_cstr(&b), ssh ? "\n" : "");
        }
    }
    qd_buf_dispose(&b);
    qd_key_free(k);
    return ret;
}

static int do_import(key_opts *o, int argc, char **argv)
{
    qd_key *k = NULL;
    int rc, ret;

    if (argc != 1 || !o->out) {
        fprintf(stderr, "quant key import: expected FILE and --out KEY\n");
        return EXIT_USAGE;
    }
    if ((ret = load(&k, argv[0])))
        return ret;
    if (qd_key_can_sign(k)) {
        ret = write_pair(k, o->out);
    } else if ((rc = qd_key_save_public(k, o->out, false)) < 0) {
        ret = qd_fail(rc, "key import");
    }
    if (ret == EXIT_OK_ && o->json)
        print_key_json(k);
    else if (ret == EXIT_OK_)
        printf("%s %s%s\n", qd_key_id(k), qd_key_alg_name(qd_key_algorithm(k)),
               qd_key_can_sign(k) ? " private" : " public");
    qd_key_free(k);
    return ret;
}


/* ---- registry subcommands: the daemon's /v1/keys ------------------------------------------------------------ */

static int key_request(key_opts *o, json_t **out, const char *method, const char *path, const char *body)
{
    quant_config cfg;
    http_client *c = NULL;
    http_resp r;
    http_body b;
    int rc;
    *out = NULL;
    http_resp_init(&r, 1 << 20);
    if ((rc = quant_config_load(&cfg)) < 0)
        goto done;
    if (o->registry)
        snprintf(cfg.registry, sizeof(cfg.registry), "%s", o->registry);
    if (o->cacert)
        snprintf(cfg.cacert, sizeof(cfg.cacert), "%s", o->cacert);
    if (!cfg.registry[0]) {
        rc = qd_error_set(QD_EINVAL, QD_EC_NET, "no registry: give --registry URL (or QUANT_REGISTRY)");
        goto done;
    }
    if ((rc = registry_open(&c, &cfg)) < 0)
        goto done;
    memset(&b, 0, sizeof(b));
    if (body) {
        b.data = body;
        b.len = strlen(body);
    }
    if ((rc = http_request(c, &r, method, path, "application/json", body ? "application/json" : NULL, NULL,
                           body ? &b : NULL)) < 0 ||
        (rc = http_status_error(&r, path)) < 0)
        goto done;
    if (!(*out = json_loadb((const char *)r.body.ptr, r.body.len, 0, NULL)))
        rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "%s: the answer is not JSON", path);
done:
    http_resp_dispose(&r);
    http_close(c);
    return rc;
}

/* {"pem": <the public key of file>, "namespaces": [...]} (a private key file: only its public part is sent) */
static int key_body(char **out, key_opts *o, const char *file)
{
    qd_key *k = NULL;
    qd_buf pem = QD_BUF_INIT(0);
    json_t *j = NULL, *ns;
    int rc;
    *out = NULL;
    if ((rc = qd_key_load(&k, file)) < 0 || (rc = qd_key_public_pem(&pem, k)) < 0)
        goto done;
    j = json_object();
    json_object_set_new(j, "pem", json_string(qd_buf_cstr(&pem)));
    if (o->namespaces) {
        const char *p = o->namespaces, *comma;
        ns = json_array();
        for (; *p; p = comma ? comma + 1 : p + strlen(p)) {
            comma = strchr(p, ',');
            json_array_append_new(ns, json_stringn(p, comma ? (size_t)(comma - p) : strlen(p)));
        }
        json_object_set_new(j, "namespaces", ns);
    }
    if (!(*out = json_dumps(j, JSON_COMPACT)))
        rc = QD_ENOMEM;
done:
    json_decref(j);
    qd_buf_dispose(&pem);
    qd_key_free(k);
    return rc;
}

static int key_report(key_opts *o, json_t *res, const char *what)
{
    if (o->json) {
        char *s = json_dumps(res, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s)
            printf("%s\n", s);
        free(s); /* jansson */
        return EXIT_OK_;
    }
    if (json_is_array(res)) {
        size_t i;
        json_t *x;
        printf("%-64s  %-10s  %6s  %7s  %s\n", "ID", "ALGORITHM", "ADDED", "REVOKED", "COMMENT");
        json_array_foreach(res, i, x) {
            json_t *rv = json_object_get(x, "revoked");
            char rvs[32] = "-";
            if (json_is_integer(rv))
                snprintf(rvs, sizeof(rvs), "%lld", (long long)json_integer_value(rv));
            printf("%-64s  %-10s  %6lld  %7s  %s%s\n", json_string_value(json_object_get(x, "id")),
                   json_string_value(json_object_get(x, "algorithm")) ? json_string_value(json_object_get(x, "algorithm"))
                                                                       : "?",
                   (long long)json_integer_value(json_object_get(x, "added")), rvs,
                   json_string_value(json_object_get(x, "comment")) ? json_string_value(json_object_get(x, "comment"))
                                                                     : "",
                   json_is_true(json_object_get(x, "log_key")) ? " (log key)" : "");
        }
        return EXIT_OK_;
    }
    printf("%s %s at log entry %lld", what, json_string_value(json_object_get(res, "id")),
           (long long)json_integer_value(json_object_get(res, "index")));
    if (json_is_string(json_object_get(res, "revoked")))
        printf("; revoked %s at entry %lld", json_string_value(json_object_get(res, "revoked")),
               (long long)json_integer_value(json_object_get(res, "revoke_index")));
    printf("\n");
    return EXIT_OK_;
}

static bool key_id_arg(const char *id)
{
    if (strlen(id) == QD_KEY_ID_LEN && strspn(id, "0123456789abcdef") == QD_KEY_ID_LEN)
        return true;
    fprintf(stderr, "quant key: %s: a key id is 64 lowercase hex digits (quant key show KEY)\n", id);
    return false;
}

static int do_registry(key_opts *o, const char *sub, int argc, char **argv)
{
    json_t *res = NULL;
    char *body = NULL, path[256];
    int rc = QD_OK, ret;
    if (!strcmp(sub, "list")) {
        if (argc != 0)
            goto usage;
        rc = key_request(o, &res, "GET", "/v1/keys", NULL);
    } else if (!strcmp(sub, "publish")) {
        if (argc != 1)
            goto usage;
        if ((rc = key_body(&body, o, argv[0])) == QD_OK)
            rc = key_request(o, &res, "POST", "/v1/keys", body);
    } else if (!strcmp(sub, "revoke")) {
        if (argc != 1)
            goto usage;
        if (!key_id_arg(argv[0]))
            return EXIT_USAGE;
        snprintf(path, sizeof(path), "/v1/keys/%s/revoke", argv[0]);
        rc = key_request(o, &res, "POST", path, NULL);
    } else {
        if (argc != 2)
            goto usage;
        if (!key_id_arg(argv[0]))
            return EXIT_USAGE;
        snprintf(path, sizeof(path), "/v1/keys/%s/rotate", argv[0]);
        if ((rc = key_body(&body, o, argv[1])) == QD_OK)
            rc = key_request(o, &res, "POST", path, body);
    }
    free(body); /* jansson */
    if (rc < 0) {
        json_decref(res);
        return qd_fail(rc, "key");
    }
    ret = key_report(o, res, !strcmp(sub, "revoke") ? "revoked" : !strcmp(sub, "rotate") ? "rotated to" : "added");
    json_decref(res);
    return ret;
usage:
    fputs(key_usage, stderr);
    return EXIT_USAGE;
}

typedef struct key_sub {
    const char *name;
    int (*fn)(key_opts *o, int argc, char **argv);
} key_sub;

int cmd_key(int argc, char **argv)
{
    static const key_sub subs[] = {{"gen", do_gen}, {"show", do_show}, {"export", do_export}, {"import", do_import}};
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'}, {"type", required_argument, NULL, 't'},
        {"format", required_argument, NULL, 'f'}, {"json", no_argument, NULL, 'j'},
        {"registry", required_argument, NULL, 'r'}, {"cacert", required_argument, NULL, 'c'},
        {"namespace", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    key_opts o = {0};
    const key_sub *sub = NULL;
    int c;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(key_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    bool reg = false;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (!strcmp(argv[1], subs[i].name))
            sub = &subs[i];
    reg = !strcmp(argv[1], "list") || !strcmp(argv[1], "publish") || !strcmp(argv[1], "revoke") ||
          !strcmp(argv[1], "rotate");
    if (!sub && !reg) {
        fprintf(stderr, "quant key: unknown subcommand '%s'\n%s", argv[1], key_usage);
        return EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:f:jhr:c:n:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 't': o.type = optarg; break;
        case 'f': o.format = optarg; break;
        case 'j': o.json = true; break;
        case 'r': o.registry = optarg; break;
        case 'c': o.cacert = optarg; break;
        case 'n': o.namespaces = optarg; break;
        case 'h': fputs(key_usage, stdout); return EXIT_OK_;
        default: fputs(key_usage, stderr); return EXIT_USAGE;
        }
    }
    if (reg)
        return do_registry(&o, argv[0], argc - optind, argv + optind);
    return sub->fn(&o, argc - optind, argv + optind);
}
