/*
 * cmd_policy.c - `quant policy new|check`: write and check trust policies (schemas/policy.schema.json).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "qd/qd.h"
#include "qd/verify.h"

#define MAX_LIST 64

static const char *policy_usage =
    "usage: quant policy <subcommand> ...\n"
    "\n"
    "  new --trust KEY.pub [--trust KEY2.pub ...] [--namespace PATTERN] [--threshold N]\n"
    "      [--valid-from T] [--valid-until T] [--require-predicate URI ...] [--require-validation-pass]\n"
    "      --out POLICY [--json]\n"
    "        a policy trusting the keys for names matching PATTERN (default '*'), t of n signatures\n"
    "        (default 1); times are RFC 3339 UTC (2026-01-31T12:00:00Z)\n"
    "  check POLICY [--json]\n"
    "        parse a policy and report the first problem (exit 2) or 'ok'\n"
    "  --json: a summary object on stdout (schemas/client.schema.json#/$defs/policy_new, policy_check)\n";

static int parse_time_arg(int64_t *out, const char *s)
{
    struct tm tm;
    char *end;
    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        fprintf(stderr, "quant policy: bad time '%s' (expected 2026-01-31T12:00:00Z)\n", s);
        return -1;
    }
    *out = (int64_t)timegm(&tm);
    return 0;
}

static int do_new(int argc, char **argv)
{
    static const struct option longopts[] = {{"trust", required_argument, NULL, 'k'},
                                             {"namespace", required_argument, NULL, 'n'},
                                             {"threshold", required_argument, NULL, 't'},
                                             {"valid-from", required_argument, NULL, 'F'},
                                             {"valid-until", required_argument, NULL, 'U'},
                                             {"require-predicate", required_argument, NULL, 'p'},
                                             {"require-validation-pass", no_argument, NULL, 'V'},
                                             {"out", required_argument, NULL, 'o'},
                                             {"json", no_argument, NULL, 'J'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    qd_policy_build_options bo = QD_POLICY_BUILD_OPTIONS_INIT;
    const char *trust[MAX_LIST], *preds[MAX_LIST + 1], *out = NULL;
    qd_key *keys[MAX_LIST] = {0};
    size_t n_trust = 0, n_preds = 0;
    qd_buf b = QD_BUF_INIT(0);
    qd_policy *check = NULL;
    int c, rc, ret = EXIT_OK_, json = 0;
    char *end;
    long th;

    optind = 1;
    while ((c = getopt_long(argc, argv, "k:n:t:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (n_trust == MAX_LIST)
                goto usage;
            trust[n_trust++] = optarg;
            break;
        case 'n': bo.namespace_pattern = optarg; break;
        case 't':
            th = strtol(optarg, &end, 10);
            if (*end || th < 1 || th > MAX_LIST) {
                fprintf(stderr, "quant policy new: --threshold must be a positive integer\n");
                return EXIT_USAGE;
            }
            bo.threshold = (unsigned)th;
            break;
        case 'F':
            if (parse_time_arg(&bo.valid_from, optarg) < 0)
                return EXIT_USAGE;
            break;
        case 'U':
            if (parse_time_arg(&bo.valid_until, optarg) < 0)
                return EXIT_USAGE;
            break;
        case 'p':
            if (n_preds == MAX_LIST)
                goto usage;
            preds[n_preds++] = optarg;
            break;
        case 'V': bo.require_validation_pass = true; break;
        case 'o': out = optarg; break;
        case 'J': json = 1; break;
        case 'h': fputs(policy_usage, stdout); return EXIT_OK_;
        default: goto usage;
        }
    }
    if (!n_trust || !out || optind != argc)
        goto usage;
    if (json && !strcmp(out, "-")) {
        fprintf(stderr, "quant policy new: --json prints a summary on stdout; write the policy to a file (--out)\n");
        return EXIT_USAGE;
    }
    preds[n_preds] = NULL;
    bo.predicate_types = n_preds ? preds : NULL;
    for (size_t i = 0; i < n_trust; i++) {
        if ((rc = qd_key_load(&keys[i], trust[i])) < 0) {
            ret = qd_fail(rc, "policy new");
            goto done;
        }
    }
    if ((rc = qd_policy_build(&b, (const qd_key *const *)keys, n_trust, &bo)) < 0) {
        ret = qd_fail(rc, "policy new");
        goto done;
    }
    /* what we write must load: the same parser verify uses */
    if ((rc = qd_policy_parse(&check, b.ptr, b.len)) < 0) {
        ret = qd_fail(rc, "policy new (internal check)");
        goto done;
    }
    {
        FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
        if (!f || fwrite(b.ptr, 1, b.len, f) != b.len || (f != stdout && fclose(f) != 0)) {
            perror("quant policy new: write");
            ret = EXIT_ERR;
            goto done;
        }
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:[],s:i}", "out", out, "keys", "threshold", bo.threshold ? (int)bo.threshold : 1);
        char *text;
        for (size_t i = 0; o && i < n_trust; i++)
            json_array_append_new(json_object_get(o, "keys"), json_string(qd_key_id(keys[i])));
        text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        json_decref(o);
        if (text)
            printf("%s\n", text);
        free(text); /* jansson */
    }
done:
    qd_policy_free(check);
    for (size_t i = 0; i < n_trust; i++)
        qd_key_free(keys[i]);
    qd_buf_dispose(&b);
    return ret;
usage:
    fprintf(stderr, "quant policy new: needs --trust KEY.pub (one or more) and --out POLICY\n%s", policy_usage);
    return EXIT_USAGE;
}

static int do_check(int argc, char **argv)
{
    qd_policy *p = NULL;
    int rc, json = argc == 3 && !strcmp(argv[2], "--json");
    if (argc != 2 && !json) {
        fprintf(stderr, "quant policy check: expected one POLICY [--json]\n");
        return EXIT_USAGE;
    }
    if ((rc = qd_policy_load(&p, argv[1])) < 0) {
        const qd_error *e = qd_error_last();
        fprintf(stderr, "quant: %s\n", e->message);
        return rc == QD_ENOTFOUND ? EXIT_NOTFOUND : EXIT_USAGE;
    }
    if (json) {
        json_t *o = json_pack("{s:s,s:b}", "policy", argv[1], "ok", 1);
        char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
        json_decref(o);
        if (text)
            printf("%s\n", text);
        free(text); /* jansson */
    } else {
        printf("ok\n");
    }
    qd_policy_free(p);
    return EXIT_OK_;
}

int cmd_policy(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(policy_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    if (!strcmp(argv[1], "new"))
        return do_new(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check"))
        return do_check(argc - 1, argv + 1);
    fprintf(stderr, "quant policy: unknown subcommand '%s'\n%s", argv[1], policy_usage);
    return EXIT_USAGE;
}
