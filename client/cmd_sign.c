/*
 * cmd_sign.c - `quant sign`: hash files, build an in-toto statement, sign it in a DSSE envelope, write a
 * Sigstore bundle v0.3.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "qd/qd.h"
#include "qd/verify.h"

#define MAX_KEYS 16
#define PREDICATE_MAX (1u << 20)

static const char *sign_usage =
    "usage: quant sign --key KEY [--key KEY2 ...] --predicate-type URI [--predicate FILE.json]\n"
    "                  [--name MODEL] [--root DIR] [--dsse] [--json] --out BUNDLE FILE...\n"
    "\n"
    "Hashes each FILE (SHA-256), writes an in-toto Statement v1 whose subjects are the files by base name,\n"
    "signs it (DSSE, PAE v1.0.2) with every KEY and writes a Sigstore bundle v0.3 to BUNDLE.\n"
    "  --predicate-type https://model_signing/signature/v1.0 writes the OpenSSF model-signing layout instead:\n"
    "      one subject MODEL (default 'model') over the per-file digests; --predicate is then not used.\n"
    "  Several --key options put several signatures in one envelope (for a threshold); Sigstore verifiers\n"
    "  accept only one signature per bundle, so for them sign with one key per bundle instead.\n"
    "  --root DIR names each file by its path relative to DIR (a model directory) instead of its base name.\n"
    "  --dsse writes the bare DSSE envelope instead of a bundle.\n";

int subject_name(char *out, size_t cap, const char *path, const char *root)
{
    char rp[PATH_MAX], rr[PATH_MAX];
    size_t n;

    if (!root) {
        snprintf(rp, sizeof(rp), "%s", path);
        if ((size_t)snprintf(out, cap, "%s", basename(rp)) >= cap)
            goto too_long;
        return 0;
    }
    if (!realpath(path, rp) || !realpath(root, rr)) {
        fprintf(stderr, "quant: %s: %s\n", realpath(root, rr) ? path : root, strerror(errno));
        return errno == ENOENT ? EXIT_NOTFOUND : EXIT_ERR;
    }
    n = strlen(rr);
    if (n == 1)
        n = 0; /* root is "/" */
    if (strncmp(rp, rr, n) || rp[n] != '/') {
        fprintf(stderr, "quant: %s is not inside --root %s\n", path, root);
        return EXIT_USAGE;
    }
    if ((size_t)snprintf(out, cap, "%s", rp + n + 1) >= cap)
        goto too_long;
    return 0;
too_long:
    fprintf(stderr, "quant: %s: name too long\n", path);
    return EXIT_USAGE;
}

static int read_text(qd_buf *out, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    char chunk[65536];
    size_t n;
    if (!f) {
        perror(path);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (qd_buf_put(out, chunk, n) < 0) {
            fprintf(stderr, "quant sign: %s: larger than %u bytes\n", path, PREDICATE_MAX);
            if (f != stdin)
                fclose(f);
            return -1;
        }
    }
    if (f != stdin)
        fclose(f);
    return 0;
}

int cmd_sign(int argc, char **argv)
{
    static const struct option longopts[] = {{"key", required_argument, NULL, 'k'},
                                             {"predicate-type", required_argument, NULL, 't'},
                                             {"predicate", required_argument, NULL, 'p'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"dsse", no_argument, NULL, 'd'},
                                             {"root", required_argument, NULL, 'r'},
                                             {"json", no_argument, NULL, 'J'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *key_paths[MAX_KEYS], *ptype = NULL, *pred_path = NULL, *name = "model", *out = NULL, *root = NULL;
    qd_key *keys[MAX_KEYS] = {0};
    size_t n_keys = 0, n_files = 0;
    qd_subject *files = NULL;
    char (*names)[1024] = NULL;
    qd_buf pred = QD_BUF_INIT(PREDICATE_MAX), stmt = QD_BUF_INIT(0), bundle = QD_BUF_INIT(0);
    qd_envelope *env = NULL;
    bool dsse = false, json = false;
    int c, rc, ret = EXIT_OK_;

    optind = 1;
    while ((c = getopt_long(argc, argv, "k:t:p:n:o:dh", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (n_keys == MAX_KEYS) {
                fprintf(stderr, "quant sign: at most %d keys\n", MAX_KEYS);
                return EXIT_USAGE;
            }
            key_paths[n_keys++] = optarg;
            break;
        case 't': ptype = optarg; break;
        case 'p': pred_path = optarg; break;
        case 'n': name = optarg; break;
        case 'o': out = optarg; break;
        case 'd': dsse = true; break;
        case 'r': root = optarg; break;
        case 'J': json = true; break;
        case 'h': fputs(sign_usage, stdout); return EXIT_OK_;
        default: fputs(sign_usage, stderr); return EXIT_USAGE;
        }
    }
    n_files = (size_t)(argc - optind);
    if (!n_keys || !ptype || !out || !n_files) {
        fprintf(stderr, "quant sign: needs --key, --predicate-type, --out and at least one FILE\n%s", sign_usage);
        return EXIT_USAGE;
    }
    if (json && !strcmp(out, "-")) {
        fprintf(stderr, "quant sign: --json prints a summary on stdout; write the bundle to a file (--out)\n");
        return EXIT_USAGE;
    }
    if (strcmp(ptype, QD_PREDICATE_MODEL_SIGNING) && !pred_path) {
        fprintf(stderr, "quant sign: --predicate FILE.json is required for predicate type %s\n", ptype);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < n_keys; i++) {
        if ((rc = qd_key_load(&keys[i], key_paths[i])) < 0) {
            ret = qd_fail(rc, "sign");
            goto done;
        }
        if (!qd_key_can_sign(keys[i])) {
            fprintf(stderr, "quant sign: %s is a public key; signing needs the private key file\n", key_paths[i]);
            ret = EXIT_USAGE;
            goto done;
        }
    }
    files = calloc(n_files, sizeof(*files));
    names = calloc(n_files, sizeof(*names));
    if (!files || !names) {
        ret = EXIT_ERR;
        goto done;
    }
    for (size_t i = 0; i < n_files; i++) {
        const char *path = argv[optind + (int)i];
        if ((ret = subject_name(names[i], sizeof(names[i]), path, root)) != 0)
            goto done;
        files[i].name = names[i];
        if ((rc = qd_file_sha256(&files[i].digest, path)) < 0) {
            ret = qd_fail(rc, "sign");
            goto done;
        }
    }
    if (!strcmp(ptype, QD_PREDICATE_MODEL_SIGNING)) {
        rc = qd_statement_build_model_signing(&stmt, name, files, n_files);
    } else {
        if (read_text(&pred, pred_path) < 0) {
            ret = EXIT_USAGE;
            goto done;
        }
        rc = qd_statement_build(&stmt, files, n_files, ptype, qd_buf_cstr(&pred));
    }
    if (rc < 0) {
        ret = qd_fail(rc, "sign");
        goto done;
    }
    if ((rc = qd_envelope_new(&env, QD_INTOTO_PAYLOAD_TYPE, stmt.ptr, stmt.len)) < 0) {
        ret = qd_fail(rc, "sign");
        goto done;
    }
    for (size_t i = 0; i < n_keys; i++) {
        if ((rc = qd_envelope_sign(env, keys[i])) < 0) {
            ret = qd_fail(rc, "sign");
            goto done;
        }
    }
    rc = dsse ? qd_envelope_write_dsse(&bundle, env) : qd_envelope_write_bundle(&bundle, env);
    if (rc == QD_OK)
        rc = qd_buf_puts(&bundle, "\n");
    if (rc < 0) {
        ret = qd_fail(rc, "sign");
        goto done;
    }
    {
        FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
        if (!f || fwrite(bundle.ptr, 1, bundle.len, f) != bundle.len || (f != stdout && fclose(f) != 0)) {
            perror("quant sign: write bundle");
            ret = EXIT_ERR;
            goto done;
        }
    }
    for (size_t i = 0; i < n_keys; i++)
        fprintf(stderr, "signed %zu file(s) with key %s (%s)\n", n_files, qd_key_id(keys[i]),
                qd_key_alg_name(qd_key_algorithm(keys[i])));
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:[],s:[]}", "out", out, "format", dsse ? "dsse" : "bundle",
                              "predicate_type", ptype, "files", "keys");
        char *text;
        for (size_t i = 0; o && i < n_files; i++) {
            char ds[QD_DIGEST_STR_LEN + 1];
            json_array_append_new(json_object_get(o, "files"),
                                  json_pack("{s:s,s:s}", "name", files[i].name, "digest",
                                            qd_digest_format(ds, &files[i].digest)));
        }
        for (size_t i = 0; o && i < n_keys; i++)
            json_array_append_new(json_object_get(o, "keys"),
                                  json_pack("{s:s,s:s}", "id", qd_key_id(keys[i]), "algorithm",
                                            qd_key_alg_name(qd_key_algorithm(keys[i]))));
        text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        json_decref(o);
        if (text)
            printf("%s\n", text);
        free(text); /* jansson */
    }
done:
    qd_envelope_free(env);
    for (size_t i = 0; i < n_keys; i++)
        qd_key_free(keys[i]);
    free(files);
    free(names);
    qd_buf_dispose(&pred);
    qd_buf_dispose(&stmt);
    qd_buf_dispose(&bundle);
    return ret;
}
