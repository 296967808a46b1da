/*
 * cmd_key.c - `quant key gen|show|export|import`: signing keys (Ed25519 by default, ECDSA P-256).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
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
    "--json (every subcommand): gen, show and import print {id, algorithm, private}; export without --out prints\n"
    "{id, algorithm, format, public_key} (schemas/client.schema.json#/$defs/key_show, key_export).\n"
    "The key id is the hex SHA-256 of the SPKI PEM text (the Sigstore publicKey.hint), e.g.\n"
    "  openssl pkey -pubin -in KEY.pub -pubout | sha256sum\n";

typedef struct key_opts {
    const char *out;
    const char *type;
    const char *format;
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
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    key_opts o = {0};
    const key_sub *sub = NULL;
    int c;

    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(key_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (!strcmp(argv[1], subs[i].name))
            sub = &subs[i];
    if (!sub) {
        fprintf(stderr, "quant key: unknown subcommand '%s'\n%s", argv[1], key_usage);
        return EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:f:jh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 't': o.type = optarg; break;
        case 'f': o.format = optarg; break;
        case 'j': o.json = true; break;
        case 'h': fputs(key_usage, stdout); return EXIT_OK_;
        default: fputs(key_usage, stderr); return EXIT_USAGE;
        }
    }
    return sub->fn(&o, argc - optind, argv + optind);
}
