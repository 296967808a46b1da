/*
 * cmd_verify.c - `quant verify`: check bundles against a trust policy and the files they name.
 *
 * Exit codes: 0 everything checks; 4 the verification failed (one line on stderr: which key, which subject, why);
 * 2 bad arguments or a malformed policy; 3 a file, bundle or policy that does not exist; 1 anything else.
 */
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

#define MAX_BUNDLES 16

static const char *verify_usage =
    "usage: quant verify --policy POLICY --bundle BUNDLE [--bundle BUNDLE2 ...] [--namespace NAME]\n"
    "                    [--root DIR] [--json] [--print-payload] FILE...\n"
    "\n"
    "Checks the bundle's signatures with the policy's keys (threshold, validity, revocations, required predicate\n"
    "types and validation verdict) and every signed subject against the FILEs, matched by base name\n"
    "(or by path relative to --root DIR, as `quant sign --root` names them).\n"
    "Signatures of several bundles over the same statement count together toward a threshold.\n"
    "Exit: 0 verified; 4 verification failed; 2 usage or bad policy; 3 not found; 1 other error.\n";

static int failed(const char *key, const char *subject, const char *why)
{
    fprintf(stderr, "quant: verify: FAILED key %s subject %s: %s\n", key, subject, why);
    return EXIT_VERIFY;
}

int cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {{"policy", required_argument, NULL, 'P'},
                                             {"bundle", required_argument, NULL, 'b'},
                                             {"namespace", required_argument, NULL, 'n'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"print-payload", no_argument, NULL, 'x'},
                                             {"root", required_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *policy_path = NULL, *bundles[MAX_BUNDLES], *root = NULL;
    size_t n_bundles = 0, n_files;
    bool json = false, print_payload = false;
    qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
    qd_verify_failure why;
    qd_policy *policy = NULL;
    qd_envelope *env = NULL;
    qd_verified *v = NULL;
    qd_subject *files = NULL;
    char (*names)[1024] = NULL;
    int c, rc, ret = EXIT_OK_;

    optind = 1;
    while ((c = getopt_long(argc, argv, "P:b:n:jh", longopts, NULL)) != -1) {
        switch (c) {
        case 'P': policy_path = optarg; break;
        case 'b':
            if (n_bundles == MAX_BUNDLES) {
                fprintf(stderr, "quant verify: at most %d bundles\n", MAX_BUNDLES);
                return EXIT_USAGE;
            }
            bundles[n_bundles++] = optarg;
            break;
        case 'n': vo.namespace_name = optarg; break;
        case 'j': json = true; break;
        case 'x': print_payload = true; break;
        case 'r': root = optarg; break;
        case 'h': fputs(verify_usage, stdout); return EXIT_OK_;
        default: fputs(verify_usage, stderr); return EXIT_USAGE;
        }
    }
    n_files = (size_t)(argc - optind);
    if (!policy_path || !n_bundles || !n_files) {
        fprintf(stderr, "quant verify: needs --policy, --bundle and at least one FILE\n%s", verify_usage);
        return EXIT_USAGE;
    }
    if ((rc = qd_policy_load(&policy, policy_path)) < 0) {
        fprintf(stderr, "quant: verify: %s\n", qd_error_last()->message);
        return rc == QD_ENOTFOUND ? EXIT_NOTFOUND : EXIT_USAGE;
    }
    for (size_t i = 0; i < n_bundles; i++) {
        qd_envelope *e = NULL;
        if ((rc = qd_envelope_load(&e, bundles[i], qd_policy_max_payload(policy))) < 0) {
            ret = rc == QD_ENOTFOUND ? qd_fail(rc, "verify") : failed("-", "-", qd_error_last()->message);
            goto done;
        }
        if (!env) {
            env = e;
            continue;
        }
        rc = qd_envelope_merge(env, e);
        qd_envelope_free(e);
        if (rc < 0) {
            ret = failed("-", "-", qd_error_last()->message);
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
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) {
                fprintf(stderr, "quant verify: two files are named %s\n", names[i]);
                ret = EXIT_USAGE;
                goto done;
            }
        if ((rc = qd_file_sha256(&files[i].digest, path)) < 0) {
            ret = qd_fail(rc, "verify");
            goto done;
        }
    }
    rc = qd_verify(&v, &why, policy, env, files, n_files, &vo);
    if (rc < 0) {
        if (rc == QD_ENOMEM)
            ret = qd_fail(rc, "verify");
        else
            ret = failed(why.key_id, why.subject, why.reason);
        goto done;
    }
    if (print_payload) {
        size_t len;
        const uint8_t *p = qd_verified_payload(v, &len);
        fwrite(p, 1, len, stdout);
        fputc('\n', stdout);
    } else if (json) {
        size_t len;
        const uint8_t *p = qd_verified_payload(v, &len);
        json_t *keys = json_array(), *st = json_loadb((const char *)p, len, 0, NULL);
        json_t *j = json_pack("{s:b, s:s, s:o, s:o}", "verified", 1, "predicate_type",
                              qd_verified_predicate_type(v), "keys", keys, "statement", st ? st : json_null());
        char *s;
        for (size_t i = 0; i < qd_verified_key_count(v); i++)
            json_array_append_new(keys, json_string(qd_verified_key_id(v, i)));
        s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            puts(s);
        free(s); /* jansson's allocator */
        json_decref(j);
    } else {
        printf("verified: %zu file(s), predicate %s, key(s)", n_files, qd_verified_predicate_type(v));
        for (size_t i = 0; i < qd_verified_key_count(v); i++)
            printf("%s%s", i ? "," : " ", qd_verified_key_id(v, i));
        printf("\n");
    }
done:
    qd_verified_free(v);
    qd_envelope_free(env);
    qd_policy_free(policy);
    free(files);
    free(names);
    return ret;
}
