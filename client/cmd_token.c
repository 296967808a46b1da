/*
 * cmd_token.c - `quant token create|list|revoke`: manage API tokens, offline, directly on a store directory.
 *
 *   quant token create --scopes SCOPES [--name NAME] [--store DIR] [--json]   prints the token once
 *   quant token list [--store DIR] [--json]
 *   quant token revoke ID [--store DIR]
 *
 * These open the store for writing, so they run while the daemon is stopped (a running quantd holds the store's
 * writer lock: the command then exits 6, conflict). `list` opens the store read-only and works at any time.
 * The daemon looks tokens up in the store on every request, so tokens created or revoked here apply as soon as
 * the daemon starts again.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "qd/qd.h"
#include "qd/registry.h"

static const char *token_usage =
    "usage: quant token <subcommand> [--store DIR] [--json]\n"
    "\n"
    "  create --scopes SCOPES [--name NAME]  make a token; it is printed once and stored only as a hash\n"
    "  list                                  every token: id, name, scopes, creation time\n"
    "  revoke ID                             revoke a token by id (or a unique prefix of 6+ digits)\n"
    "\n"
    "SCOPES is SCOPE:PATTERN[,...]: SCOPE pull, push (implies pull), quantize or admin (implies all);\n"
    "PATTERN a glob over repository names where a star also matches '/', e.g. push:org/*,pull:*\n"
    "--store DIR defaults to $QUANT_STORE, else ./var/quantd. create and revoke need the daemon stopped.\n";

static int print_token(const qd_token_info *t, void *payload)
{
    json_t *arr = payload;
    if (arr) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(t->id));
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "scopes", json_string(t->scopes));
        json_object_set_new(o, "created", json_integer(t->created));
        json_array_append_new(arr, o);
    } else {
        char when[32];
        time_t c = (time_t)t->created;
        struct tm tm;
        gmtime_r(&c, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%s  %-16s  %s  %s\n", t->id, t->name[0] ? t->name : "-", when, t->scopes);
    }
    return 0;
}

static void dump_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) {
        puts(s);
        free(s); /* jansson */
    }
    json_decref(j);
}

int cmd_token(int argc, char **argv)
{
    static const struct option longopts[] = {{"store", required_argument, NULL, 's'},
                                             {"scopes", required_argument, NULL, 'S'},
                                             {"name", required_argument, NULL, 'n'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *dir = getenv("QUANT_STORE"), *scopes = NULL, *name = "", *sub;
    bool json = false;
    qd_store *s = NULL;
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    int c, rc, ret = 0;

    if (!dir || !*dir)
        dir = "./var/quantd";
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(token_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    sub = argv[1];
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': dir = optarg; break;
        case 'S': scopes = optarg; break;
        case 'n': name = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(token_usage, stdout); return 0;
        default: fputs(token_usage, stderr); return EXIT_USAGE;
        }
    }
    argc -= optind + 1;
    argv += optind + 1;
    if (!strcmp(sub, "create")) {
        char tok[QD_TOKEN_LEN + 1];
        qd_token_info info;
        if (argc != 0 || !scopes) {
            fprintf(stderr, "quant token create: --scopes is required\n%s", token_usage);
            return EXIT_USAGE;
        }
        if ((rc = qd_token_scopes_validate(scopes)) < 0)
            return qd_fail(rc, "token create");
        so.flags = QD_STORE_CREATE;
        if ((rc = qd_store_open(&s, dir, &so)) < 0)
            return qd_fail(rc, "open store");
        if ((rc = qd_registry_token_create(tok, &info, s, name, scopes)) < 0) {
            ret = qd_fail(rc, "token create");
        } else if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "token", json_string(tok));
            json_object_set_new(o, "id", json_string(info.id));
            json_object_set_new(o, "scopes", json_string(info.scopes));
            dump_json(o);
        } else {
            printf("%s\n", tok);
            fprintf(stderr, "token id %s, scopes %s (shown once: keep it secret)\n", info.id, info.scopes);
        }
        memset(tok, 0, sizeof(tok));
    } else if (!strcmp(sub, "list")) {
        json_t *arr = json ? json_array() : NULL;
        if (argc != 0) {
            fputs(token_usage, stderr);
            return EXIT_USAGE;
        }
        so.flags = QD_STORE_RDONLY;
        if ((rc = qd_store_open(&s, dir, &so)) < 0)
            return qd_fail(rc, "open store");
        if ((rc = qd_registry_token_list(s, print_token, arr)) < 0)
            ret = qd_fail(rc, "token list");
        if (arr) {
            if (ret == 0)
                dump_json(arr);
            else
                json_decref(arr);
        }
    } else if (!strcmp(sub, "revoke")) {
        if (argc != 1) {
            fprintf(stderr, "quant token revoke: give one token id\n");
            return EXIT_USAGE;
        }
        if ((rc = qd_store_open(&s, dir, &so)) < 0)
            return qd_fail(rc, "open store");
        if ((rc = qd_registry_token_revoke(s, argv[0])) < 0)
            ret = qd_fail(rc, "token revoke");
        else
            if (json)
                dump_json(json_pack("{s:s}", "revoked", argv[0]));
            else
                printf("revoked %s\n", argv[0]);
    } else {
        fprintf(stderr, "quant token: unknown subcommand '%s'\n%s", sub, token_usage);
        return EXIT_USAGE;
    }
    qd_store_close(s);
    return ret;
}
