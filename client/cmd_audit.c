/*
 * cmd_audit.c - `quant audit query|lineage` against a daemon (GET /v1/audit/..., answered from its LMDB audit
 * indexes), and `quant audit reindex` on a stopped daemon's store. Given a log directory instead
 * (`quant audit query LOGDIR ...`), the offline audit over the signed log runs (cmd_log.c, docs/LOG.md).
 *
 * "Which published variants did converter version V make?"  quant audit query --converter-version V
 * "What did key K sign?"                                      quant audit query --key K
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "client.h"
#include "qd/audit.h"
#include "qd/qd.h"
#include "registry.h"

static const char *usage =
    "usage: quant audit query [filters] [--format table|json | --json] [--limit N] [--registry URL] [--cacert FILE]\n"
    "       quant audit lineage DIGEST [--down] [--depth N] [--format tree|table|json|dot | --json] [--registry URL]\n"
    "       quant audit reindex --store DIR [--json]  rebuild the store's audit indexes (daemon stopped)\n"
    "       quant audit query|lineage LOGDIR ...  the offline audit over a signed log (quant audit --help-log)\n"
    "\n"
    "filters (all given must match): --method M  --type FORMAT (Q4_0, nf4, ...)  --bits N  --calibration C\n"
    "  --converter NAME  --converter-version V  --hardware H  --key KEYID  --verdict pass|fail\n"
    "  --namespace NS  --since UNIX  --until UNIX\n"
    "The registry and token come from --registry, QUANT_REGISTRY / QUANT_TOKEN or the config file. --limit is the\n"
    "most results to print (default 100; pages of up to 1000 are fetched). Exit 3 when a lineage digest is unknown.\n"
    "--json is --format json (query: schemas/client.schema.json $defs/audit_query; lineage: the daemon's answer,\n"
    "schemas/audit-lineage.schema.json; reindex: $defs/audit_reindex).\n";

enum {
    O_METHOD = 256,
    O_TYPE,
    O_BITS,
    O_CALIB,
    O_CONV,
    O_CONVVER,
    O_HW,
    O_KEY,
    O_VERDICT,
    O_NS,
    O_SINCE,
    O_UNTIL,
    O_LIMIT,
    O_FORMAT,
    O_REGISTRY,
    O_CACERT,
    O_DOWN,
    O_UP,
    O_DEPTH,
    O_STORE,
    O_HELP,
    O_JSON
};

typedef struct aopts {
    const char *param[12]; /* query parameters, in the order of NAMES */
    const char *format, *store;
    long limit, depth;
    bool down;
} aopts;

static const char *const NAMES[12] = {"method", "format",   "bits", "calibration", "converter", "converter_version",
                                      "hardware", "key",    "verdict", "namespace", "since",     "until"};

/* Append s percent-encoded (RFC 3986 unreserved characters kept). */
static int put_enc(qd_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = QD_OK;
    for (; *s && rc == QD_OK; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c))
            rc = qd_buf_put(b, s, 1);
        else
            rc = qd_buf_printf(b, "%%%c%c", hex[c >> 4], hex[c & 15]);
    }
    return rc;
}

static int get_json(http_client *c, const char *path, json_t **out, const char *what)
{
    http_resp r;
    json_error_t je;
    int rc;
    *out = NULL;
    http_resp_init(&r, 64u << 20);
    if ((rc = http_request(c, &r, "GET", path, "application/json", NULL, NULL, NULL)) == QD_OK &&
        (rc = http_status_error(&r, what)) == QD_OK) {
        if (!(*out = json_loadb((const char *)r.body.ptr, r.body.len, 0, &je)))
            rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "%s: the daemon's answer is not JSON: %s", what, je.text);
    }
    http_resp_dispose(&r);
    return rc;
}

static const char *js(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && *v ? v : "-";
}

static void short_digest(char *out, size_t cap, const char *d)
{
    snprintf(out, cap, "%.19s", d && !strncmp(d, "sha256:", 7) ? d : "-");
}

static void time_text(char *out, size_t cap, json_int_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_row(json_t *e)
{
    char m[24], created[32], key[16];
    json_t *keys = json_object_get(e, "key_ids"), *hw = json_object_get(e, "target_hardware");
    short_digest(m, sizeof(m), js(e, "manifest"));
    time_text(created, sizeof(created), json_integer_value(json_object_get(e, "created")));
    snprintf(key, sizeof(key), "%.12s", json_array_size(keys) ? json_string_value(json_array_get(keys, 0)) : "-");
    printf("%-20s %-19s %-20s %-8s %-8s %-4" JSON_INTEGER_FORMAT " %-12s %-10s %-9s %-7s %-12s %s\n", created, m,
           js(e, "repository"), js(e, "method"), js(e, "format"), json_integer_value(json_object_get(e, "bits")),
           js(e, "calibration"), js(e, "converter"), js(e, "converter_version"), js(e, "verdict"), key,
           json_array_size(hw) ? json_string_value(json_array_get(hw, 0)) : "-");
}

static int do_query(http_client *c, const aopts *o)
{
    json_t *all = json_array(), *page = NULL;
    char cursor[QD_AUDIT_CURSOR_LEN + 1] = "", *text;
    bool json = o->format && !strcmp(o->format, "json");
    long want = o->limit > 0 ? o->limit : 100;
    int rc = QD_OK;
    bool more = true;
    while (more && (long)json_array_size(all) < want) {
        qd_buf path = QD_BUF_INIT(0);
        long n = want - (long)json_array_size(all);
        json_t *res, *e;
        size_t i;
        rc = qd_buf_printf(&path, "/v1/audit/query?limit=%ld", n > QD_AUDIT_LIMIT_MAX ? QD_AUDIT_LIMIT_MAX : n);
        for (int k = 0; k < 12 && rc == QD_OK; k++)
            if (o->param[k] && (rc = qd_buf_printf(&path, "&%s=", NAMES[k])) == QD_OK)
                rc = put_enc(&path, o->param[k]);
        if (rc == QD_OK && cursor[0] && (rc = qd_buf_puts(&path, "&cursor=")) == QD_OK)
            rc = put_enc(&path, cursor);
        if (rc == QD_OK && (rc = qd_buf_put(&path, "", 1)) == QD_OK)
            rc = get_json(c, (const char *)path.ptr, &page, "audit query");
        qd_buf_dispose(&path);
        if (rc)
            break;
        res = json_object_get(page, "results");
        json_array_foreach(res, i, e) json_array_append(all, e);
        more = json_is_string(json_object_get(page, "next_cursor"));
        snprintf(cursor, sizeof(cursor), "%s", more ? json_string_value(json_object_get(page, "next_cursor")) : "");
        json_decref(page);
        page = NULL;
    }
    if (rc == QD_OK) {
        if (json) {
            json_t *o2 = json_pack("{s:O,s:I,s:s?}", "results", all, "count", (json_int_t)json_array_size(all),
                                   "next_cursor", more ? cursor : NULL);
            text = o2 ? json_dumps(o2, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
            json_decref(o2);
            if (text)
                puts(text);
            free(text); /* jansson */
        } else {
            json_t *e;
            size_t i;
            printf("%-20s %-19s %-20s %-8s %-8s %-4s %-12s %-10s %-9s %-7s %-12s %s\n", "CREATED", "MANIFEST",
                   "REPOSITORY", "METHOD", "FORMAT", "BITS", "CALIBRATION", "CONVERTER", "VERSION", "VERDICT", "KEY",
                   "HARDWARE");
            json_array_foreach(all, i, e) print_row(e);
            if (more)
                fprintf(stderr, "quant: more results follow (raise --limit)\n");
        }
    }
    json_decref(all);
    return rc;
}

/* ---- lineage ----------------------------------------------------------------------------------------------- */

static void label(char *out, size_t cap, json_t *rec)
{
    if (!json_is_object(rec))
        snprintf(out, cap, "(not indexed)");
    else
        snprintf(out, cap, "%s %s %s %s@%s %s", js(rec, "repository"), js(rec, "method"), js(rec, "format"),
                 js(rec, "converter"), js(rec, "converter_version"), js(rec, "verdict"));
}

/* Print the subtree of node index i (nodes reached from it), indented. */
static void tree(json_t *nodes, size_t i, int indent, bool down)
{
    json_t *n = json_array_get(nodes, i), *m;
    const char *d = js(n, "digest");
    char lab[600];
    size_t k;
    label(lab, sizeof(lab), json_object_get(n, "record"));
    printf("%*s%s%s  %s\n", indent * 2, "", indent ? (down ? "└─ " : "↑  ") : "", d, lab);
    json_array_foreach(nodes, k, m)
    {
        const char *from = json_string_value(json_object_get(m, "from"));
        if (k != i && from && !strcmp(from, d) &&
            json_integer_value(json_object_get(m, "depth")) == json_integer_value(json_object_get(n, "depth")) + 1)
            tree(nodes, k, indent + 1, down);
    }
}

static int do_lineage(http_client *c, const char *digest, const aopts *o)
{
    qd_buf path = QD_BUF_INIT(0);
    json_t *j = NULL, *nodes, *edges, *n;
    const char *fmt = o->format ? o->format : "tree";
    size_t i;
    int rc;
    qd_digest d;
    if ((rc = qd_digest_parse(&d, digest)) < 0)
        return rc;
    if ((rc = qd_buf_puts(&path, "/v1/audit/lineage/")) == QD_OK && (rc = qd_buf_puts(&path, digest)) == QD_OK &&
        (rc = qd_buf_printf(&path, "?direction=%s&depth=%ld", o->down ? "down" : "up", o->depth ? o->depth : 3)) ==
            QD_OK &&
        (rc = qd_buf_put(&path, "", 1)) == QD_OK)
        rc = get_json(c, (const char *)path.ptr, &j, "audit lineage");
    qd_buf_dispose(&path);
    if (rc)
        return rc;
    nodes = json_object_get(j, "nodes");
    edges = json_object_get(j, "edges");
    if (!strcmp(fmt, "json")) {
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (text)
            puts(text);
        free(text); /* jansson */
    } else if (!strcmp(fmt, "dot")) {
        printf("digraph lineage {\n  rankdir=BT;\n  node [shape=box, fontname=\"monospace\"];\n");
        json_array_foreach(nodes, i, n)
        {
            char lab[600], sd[24];
            json_t *rec = json_object_get(n, "record");
            label(lab, sizeof(lab), rec);
            short_digest(sd, sizeof(sd), js(n, "digest"));
            printf("  \"%s\" [label=\"%s\\n%s\"%s];\n", js(n, "digest"), sd, lab,
                   json_is_object(rec) ? "" : ", style=dashed");
        }
        json_array_foreach(edges, i, n) printf("  \"%s\" -> \"%s\";\n", js(n, "child"), js(n, "parent"));
        printf("}\n");
    } else if (!strcmp(fmt, "table")) {
        printf("%-5s %-71s %-71s %s\n", "DEPTH", "DIGEST", o->down ? "PARENT" : "CHILD", "RECORD");
        json_array_foreach(nodes, i, n)
        {
            char lab[600];
            const char *from = json_string_value(json_object_get(n, "from"));
            label(lab, sizeof(lab), json_object_get(n, "record"));
            printf("%-5" JSON_INTEGER_FORMAT " %-71s %-71s %s\n", json_integer_value(json_object_get(n, "depth")),
                   js(n, "digest"), from ? from : "-", lab);
        }
    } else {
        if (json_array_size(nodes))
            tree(nodes, 0, 0, o->down);
    }
    if (json_is_true(json_object_get(j, "truncated")))
        fprintf(stderr, "quant: the lineage was truncated (too many nodes)\n");
    json_decref(j);
    return QD_OK;
}

static int do_reindex(const char *dir, bool json)
{
    qd_store *s = NULL;
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    qd_digest before, after;
    char b[QD_DIGEST_STR_LEN + 1], a[QD_DIGEST_STR_LEN + 1];
    size_t indexed = 0, skipped = 0;
    int rc;
    if ((rc = qd_store_open(&s, dir, &so)) < 0)
        return rc;
    if ((rc = qd_audit_index_checksum(&before, s)) == QD_OK && (rc = qd_audit_index_rebuild(s, &indexed, &skipped)) ==
                                                                    QD_OK &&
        (rc = qd_audit_index_checksum(&after, s)) == QD_OK) {
        qd_digest_format(b, &before);
        qd_digest_format(a, &after);
        if (json) {
            json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:b}", "indexed", (json_int_t)indexed, "skipped",
                                  (json_int_t)skipped, "before", b, "after", a, "rebuilt",
                                  !qd_digest_equal(&before, &after));
            char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
            json_decref(j);
            if (text)
                puts(text);
            else
                rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            free(text); /* jansson */
        } else {
            printf("indexed %zu artifacts (%zu bundles without a variant statement skipped)\n", indexed, skipped);
            printf("index before %s\nindex after  %s\n%s\n", b, a,
                   qd_digest_equal(&before, &after) ? "the index was already complete"
                                                    : "the index differed from the stored bundles and was rebuilt");
        }
    }
    qd_store_close(s);
    return rc;
}

/* ---- entry ------------------------------------------------------------------------------------------------- */

/* A log directory among the positional arguments means the offline audit over the signed log. */
static bool names_logdir(int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        struct stat st;
        if (!strcmp(argv[i], "--registry") || !strcmp(argv[i], "--store"))
            return false;
        if (argv[i][0] != '-' && stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            return true;
    }
    return false;
}

int cmd_audit_main(int argc, char **argv)
{
    static const struct option lo[] = {{"method", required_argument, NULL, O_METHOD},
                                       {"type", required_argument, NULL, O_TYPE},
                                       {"bits", required_argument, NULL, O_BITS},
                                       {"calibration", required_argument, NULL, O_CALIB},
                                       {"converter", required_argument, NULL, O_CONV},
                                       {"converter-version", required_argument, NULL, O_CONVVER},
                                       {"hardware", required_argument, NULL, O_HW},
                                       {"key", required_argument, NULL, O_KEY},
                                       {"verdict", required_argument, NULL, O_VERDICT},
                                       {"namespace", required_argument, NULL, O_NS},
                                       {"since", required_argument, NULL, O_SINCE},
                                       {"until", required_argument, NULL, O_UNTIL},
                                       {"limit", required_argument, NULL, O_LIMIT},
                                       {"format", required_argument, NULL, O_FORMAT},
                                       {"output", required_argument, NULL, O_FORMAT},
                                       {"registry", required_argument, NULL, O_REGISTRY},
                                       {"cacert", required_argument, NULL, O_CACERT},
                                       {"down", no_argument, NULL, O_DOWN},
                                       {"up", no_argument, NULL, O_UP},
                                       {"depth", required_argument, NULL, O_DEPTH},
                                       {"store", required_argument, NULL, O_STORE},
                                       {"help", no_argument, NULL, O_HELP},
                                       {"json", no_argument, NULL, O_JSON},
                                       {NULL, 0, NULL, 0}};
    aopts o;
    quant_config cfg;
    http_client *c = NULL;
    const char *sub;
    int ch, rc;

    if (argc >= 2 && !strcmp(argv[1], "--help-log"))
        return cmd_audit(2, (char *[]){argv[0], (char *)"--help", NULL});
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK_;
    }
    sub = argv[1];
    if (strcmp(sub, "reindex") && names_logdir(argc, argv))
        return cmd_audit(argc, argv); /* the offline audit over a log directory (cmd_log.c) */
    memset(&o, 0, sizeof(o));
    if ((rc = quant_config_load(&cfg)))
        return qd_fail(rc, "audit");
    optind = 2;
    while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (ch >= O_METHOD && ch <= O_UNTIL) {
            o.param[ch - O_METHOD] = optarg;
            continue;
        }
        switch (ch) {
        case O_LIMIT: o.limit = strtol(optarg, NULL, 10); if (o.limit < 1) goto bad; break;
        case O_DEPTH: o.depth = strtol(optarg, NULL, 10); if (o.depth < 1 || o.depth > QD_AUDIT_DEPTH_MAX) goto bad; break;
        case O_FORMAT: o.format = optarg; break;
        case O_JSON: o.format = "json"; break;
        case O_REGISTRY: snprintf(cfg.registry, sizeof(cfg.registry), "%s", optarg); break;
        case O_CACERT: snprintf(cfg.cacert, sizeof(cfg.cacert), "%s", optarg); break;
        case O_DOWN: o.down = true; break;
        case O_UP: o.down = false; break;
        case O_STORE: o.store = optarg; break;
        case 'h':
        case O_HELP: fputs(usage, stdout); return EXIT_OK_;
        default: goto bad;
        }
    }
    if (!strcmp(sub, "reindex")) {
        if (!o.store || optind != argc)
            goto bad;
        rc = do_reindex(o.store, o.format && !strcmp(o.format, "json"));
        return rc ? qd_fail(rc, "audit reindex") : EXIT_OK_;
    }
    if (strcmp(sub, "query") && strcmp(sub, "lineage")) {
        fprintf(stderr, "quant audit: unknown subcommand '%s'\n", sub);
        goto bad;
    }
    if (!strcmp(sub, "query") ? optind != argc : optind != argc - 1)
        goto bad;
    if (o.format && strcmp(o.format, "json") && strcmp(o.format, "table") &&
        (!strcmp(sub, "query") || (strcmp(o.format, "tree") && strcmp(o.format, "dot")))) {
        fprintf(stderr, "quant audit %s: --format is %s\n", sub,
                strcmp(sub, "query") ? "tree, table, json or dot" : "table or json");
        return EXIT_USAGE;
    }
    if (!cfg.registry[0]) {
        fprintf(stderr, "quant audit: no registry: give --registry URL (or QUANT_REGISTRY, or the config file)\n");
        return EXIT_USAGE;
    }
    if ((rc = registry_open(&c, &cfg)) == QD_OK)
        rc = !strcmp(sub, "query") ? do_query(c, &o) : do_lineage(c, argv[optind], &o);
    http_close(c);
    return rc ? qd_fail(rc, !strcmp(sub, "query") ? "audit query" : "audit lineage") : EXIT_OK_;
bad:
    fputs(usage, stderr);
    return EXIT_USAGE;
}
