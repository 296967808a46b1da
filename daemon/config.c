/*
 * config.c - every option of quantd in one table (the redis static_configs idea).
 *
 * Layering: the table's defaults < the config file (--config FILE: `key value` lines, `#` comments, errors
 * reported as file:line) < `--key=value` flags. `quantd --dump-config` and the reference in docs/DAEMON.md come
 * from this table. Options are read-only after start; the RELOADABLE one (log-file) is reopened on SIGHUP, so log
 * rotation works; the configuration itself is not re-read.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define OFF(f) offsetof(qd_config, f)
#define KiB 1024ll
#define MiB (1024ll * 1024)
#define GiB (1024ll * 1024 * 1024)

const qd_cfg_row qd_cfg_table[] = {
    {"listen", QD_CFG_STR, "127.0.0.1:8420", 0, 0, OFF(listen), QD_CFG_IMMUTABLE,
     "address and port to listen on (host:port; port 0 picks a free port)"},
    {"store", QD_CFG_STR, "./var/quantd", 0, 0, OFF(store), QD_CFG_IMMUTABLE,
     "store directory (created when absent)"},
    {"port-file", QD_CFG_STR, "", 0, 0, OFF(port_file), QD_CFG_IMMUTABLE,
     "write the bound port to this file once listening (for tests with listen port 0)"},
    {"log-file", QD_CFG_STR, "", 0, 0, OFF(log_file), QD_CFG_RELOADABLE,
     "append log lines here (empty: stderr); reopened on SIGHUP"},
    {"log-level", QD_CFG_STR, "info", 0, 0, OFF(log_level), QD_CFG_IMMUTABLE, "error, warn, info or debug"},
    {"workers", QD_CFG_INT, "2", 1, 256, OFF(workers), QD_CFG_IMMUTABLE,
     "worker threads for hashing and store writes"},
    {"tls-cert", QD_CFG_STR, "", 0, 0, OFF(tls_cert), QD_CFG_IMMUTABLE,
     "PEM certificate chain; with tls-key, serve HTTPS only"},
    {"tls-key", QD_CFG_STR, "", 0, 0, OFF(tls_key), QD_CFG_IMMUTABLE, "PEM private key for tls-cert"},
    {"auth", QD_CFG_BOOL, "true", 0, 1, OFF(auth), QD_CFG_IMMUTABLE,
     "require tokens (false: everything is open; development only)"},
    {"anonymous-pull", QD_CFG_BOOL, "true", 0, 1, OFF(anonymous_pull), QD_CFG_IMMUTABLE,
     "allow pulls without a token"},
    {"rate-limit", QD_CFG_INT, "0", 0, 1000000, OFF(rate_limit), QD_CFG_IMMUTABLE,
     "requests per second per token (anonymous: per client address); 0: no limit"},
    {"rate-burst", QD_CFG_INT, "100", 1, 1000000, OFF(rate_burst), QD_CFG_IMMUTABLE,
     "token-bucket size for rate-limit"},
    {"max-header-bytes", QD_CFG_SIZE, "16K", 1024, 1 * MiB, OFF(max_header_bytes), QD_CFG_IMMUTABLE,
     "largest request line plus headers; larger requests are refused"},
    {"max-body-bytes", QD_CFG_SIZE, "256M", 4 * KiB, 16 * GiB, OFF(max_body_bytes), QD_CFG_IMMUTABLE,
     "largest request body (one PATCH chunk or monolithic upload; evhttp holds it in memory): 413 beyond"},
    {"max-manifest-bytes", QD_CFG_SIZE, "4M", 1 * KiB, 64 * MiB, OFF(max_manifest_bytes), QD_CFG_IMMUTABLE,
     "largest manifest accepted"},
    {"timeout", QD_CFG_INT, "60", 1, 86400, OFF(timeout_s), QD_CFG_IMMUTABLE,
     "seconds a connection may stay idle or stall while reading or writing"},
    {"upload-ttl", QD_CFG_INT, "3600", 1, 30 * 86400, OFF(upload_ttl_s), QD_CFG_IMMUTABLE,
     "seconds an unfinished upload session survives without activity"},
    {"max-uploads", QD_CFG_INT, "1024", 1, 1000000, OFF(max_uploads), QD_CFG_IMMUTABLE,
     "open upload sessions at most"},
    {"max-jobs", QD_CFG_INT, "1", 0, 64, OFF(max_jobs), QD_CFG_IMMUTABLE,
     "quantize jobs running at once (0: jobs are accepted and queued but none runs)"},
    {"job-threads", QD_CFG_INT, "2", 1, 256, OFF(job_threads), QD_CFG_IMMUTABLE,
     "quantizer threads per job"},
    {"job-memory", QD_CFG_SIZE, "4G", 16 * MiB, 1024 * GiB, OFF(job_memory), QD_CFG_IMMUTABLE,
     "memory one job may use (source and in-memory validation copies, quantizer chunks); larger sources fail"},
    {"signing-key", QD_CFG_STR, "", 0, 0, OFF(signing_key), QD_CFG_IMMUTABLE,
     "PEM private key that signs variant statements (empty: STORE/signing-key.pem, made at first start, mode 0600)"},
    {"validation-policy", QD_CFG_STR, "", 0, 0, OFF(validation_policy), QD_CFG_IMMUTABLE,
     "validation policy JSON file deciding which variants get their tag (empty: the built-in policy)"},
    {"builder-id", QD_CFG_STR, "", 0, 0, OFF(builder_id), QD_CFG_IMMUTABLE,
     "builder.id written into statements (empty: quantd@HOSTNAME)"},
    {"ingest-sign-delay", QD_CFG_INT, "10", -1, 86400, OFF(ingest_sign_delay), QD_CFG_IMMUTABLE,
     "seconds after a checkpoint push before the daemon signs it, unless the pusher pushed a signature; -1: never"},
    {"log-origin", QD_CFG_STR, "quantd.local/log", 0, 0, OFF(log_origin), QD_CFG_IMMUTABLE,
     "origin line of the signed log (STORE/log.git) when it is created: a note key name, no spaces or '+'"},
    {"log-timestamp-interval", QD_CFG_INT, "180", 0, 86400, OFF(log_timestamp_interval), QD_CFG_IMMUTABLE,
     "seconds between renewals of the log's signed freshness timestamp (0: only when an entry is appended)"},
    {"log-timestamp-ttl", QD_CFG_INT, "600", 1, 30 * 86400, OFF(log_timestamp_ttl), QD_CFG_IMMUTABLE,
     "seconds a freshness timestamp stays valid; clients and mirrors refuse it after that (freeze)"},
    {"mirror-of", QD_CFG_STR, "", 0, 0, OFF(mirror_of), QD_CFG_IMMUTABLE,
     "mirror these upstream daemons: space-separated URL or URL=ns1,ns2 (only those namespaces); needs trust and "
     "mirror-log-key"},
    {"mirror-log-key", QD_CFG_STR, "", 0, 0, OFF(mirror_log_key), QD_CFG_IMMUTABLE,
     "space-separated public key files: each mirror-of upstream's log key, in the same order"},
    {"trust", QD_CFG_STR, "", 0, 0, OFF(trust), QD_CFG_IMMUTABLE,
     "trust policy (JSON) every mirrored bundle must verify under; a pushed checkpoint's own bundle counts only "
     "when it verifies under it (else the daemon signs too)"},
    {"mirror-interval", QD_CFG_INT, "10", 1, 86400, OFF(mirror_interval), QD_CFG_IMMUTABLE,
     "seconds between syncs with each upstream"},
    {"mirror-parallel", QD_CFG_INT, "4", 1, 8, OFF(mirror_parallel), QD_CFG_IMMUTABLE,
     "blob downloads at once while applying one mirrored entry"},
};
const size_t qd_cfg_table_len = sizeof(qd_cfg_table) / sizeof(qd_cfg_table[0]);

static const qd_cfg_row *find_row(const char *name, size_t len)
{
    for (size_t i = 0; i < qd_cfg_table_len; i++)
        if (strlen(qd_cfg_table[i].name) == len && !strncmp(qd_cfg_table[i].name, name, len))
            return &qd_cfg_table[i];
    return NULL;
}

static int parse_int(const qd_cfg_row *row, const char *v, int64_t *out, const char *where)
{
    char *end;
    long long n;
    int64_t mul = 1;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (end == v || errno)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: %s: '%s' is not a number", where, row->name, v);
    if (row->type == QD_CFG_SIZE && *end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = KiB; break;
        case 'M': mul = MiB; break;
        case 'G': mul = GiB; break;
        default: mul = 0;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if ((*end == 'B' || *end == 'b'))
            end++;
    }
    if (*end || mul == 0 || __builtin_mul_overflow((int64_t)n, mul, out))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: %s: '%s' is not a %s", where, row->name, v,
                            row->type == QD_CFG_SIZE ? "size (N, NK, NM or NG)" : "whole number");
    if (*out < row->min || *out > row->max)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: %s: %s is outside %" PRId64 "..%" PRId64, where,
                            row->name, v, row->min, row->max);
    return QD_OK;
}

int qd_config_set(qd_config *c, const char *name, const char *value, const char *where)
{
    const qd_cfg_row *row = find_row(name, strlen(name));
    char *base = (char *)c;
    int rc;
    if (!row)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: unknown option '%s' (quantd --dump-config lists them)",
                            where, name);
    switch (row->type) {
    case QD_CFG_STR: {
        char **slot = (char **)(base + row->offset);
        char *dup = qd_strdup(value);
        if (!dup)
            return QD_ENOMEM;
        qd_free(*slot);
        *slot = dup;
        return QD_OK;
    }
    case QD_CFG_INT:
    case QD_CFG_SIZE: {
        int64_t n = 0;
        if ((rc = parse_int(row, value, &n, where)) < 0)
            return rc;
        *(int64_t *)(base + row->offset) = n;
        return QD_OK;
    }
    case QD_CFG_BOOL: {
        bool *slot = (bool *)(base + row->offset);
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on") || !strcmp(value, "1"))
            *slot = true;
        else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off") || !strcmp(value, "0"))
            *slot = false;
        else
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: %s: '%s' is not true or false", where, name, value);
        return QD_OK;
    }
    }
    return QD_EINVAL;
}

int qd_config_init(qd_config *c)
{
    int rc;
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < qd_cfg_table_len; i++)
        if ((rc = qd_config_set(c, qd_cfg_table[i].name, qd_cfg_table[i].def, "default")) < 0)
            return rc;
    return QD_OK;
}

void qd_config_free(qd_config *c)
{
    for (size_t i = 0; i < qd_cfg_table_len; i++)
        if (qd_cfg_table[i].type == QD_CFG_STR) {
            char **slot = (char **)((char *)c + qd_cfg_table[i].offset);
            qd_free(*slot);
            *slot = NULL;
        }
}

int qd_config_load_file(qd_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096], where[512];
    int lineno = 0, rc = QD_OK;
    if (!f)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_CONFIG, "%s: %s", path,
                            strerror(errno));
    while (fgets(line, sizeof(line), f)) {
        char *p = line, *k, *v, *e;
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: line too long", where);
            break;
        }
        if ((e = strchr(p, '#')))
            *e = 0;
        while (isspace((unsigned char)*p))
            p++;
        e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = 0;
        if (!*p)
            continue;
        k = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (!*p) {
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: '%s' has no value (write: key value)", where, k);
            break;
        }
        *p++ = 0;
        while (isspace((unsigned char)*p))
            p++;
        v = p;
        if ((rc = qd_config_set(c, k, v, where)) < 0)
            break;
    }
    fclose(f);
    return rc;
}

int qd_config_from_args(qd_config *c, int argc, char **argv, bool *dump)
{
    int rc;
    *dump = false;
    /* the file first, wherever --config appears */
    for (int i = 1; i < argc; i++) {
        const char *file = NULL;
        if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[++i];
        if (file && (rc = qd_config_load_file(c, file)) < 0)
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq;
        char where[128];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (!strcmp(a, "--dump-config")) {
            *dump = true;
            continue;
        }
        if (strncmp(a, "--", 2))
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "unexpected argument '%s'", a);
        a += 2;
        eq = strchr(a, '=');
        snprintf(where, sizeof(where), "--%.*s", (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
        if (!eq) {
            /* --key value */
            const qd_cfg_row *row = find_row(a, strlen(a));
            if (row && row->type == QD_CFG_BOOL && (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))) {
                if ((rc = qd_config_set(c, a, "true", where)) < 0)
                    return rc;
                continue;
            }
            if (!row || i + 1 >= argc)
                return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: %s", where,
                                    row ? "needs a value" : "unknown option (quantd --dump-config lists them)");
            if ((rc = qd_config_set(c, a, argv[++i], where)) < 0)
                return rc;
            continue;
        }
        {
            char name[64];
            size_t n = (size_t)(eq - a);
            if (n >= sizeof(name))
                return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s: unknown option", where);
            memcpy(name, a, n);
            name[n] = 0;
            if ((rc = qd_config_set(c, name, eq + 1, where)) < 0)
                return rc;
        }
    }
    return QD_OK;
}

static void value_text(char *out, size_t cap, const qd_config *c, const qd_cfg_row *row)
{
    const char *base = (const char *)c;
    switch (row->type) {
    case QD_CFG_STR: {
        const char *s = *(char *const *)(base + row->offset);
        snprintf(out, cap, "%s", s ? s : "");
        break;
    }
    case QD_CFG_INT:
    case QD_CFG_SIZE:
        snprintf(out, cap, "%" PRId64, *(const int64_t *)(base + row->offset));
        break;
    case QD_CFG_BOOL:
        snprintf(out, cap, "%s", *(const bool *)(base + row->offset) ? "true" : "false");
        break;
    }
}

void qd_config_dump(FILE *f, const qd_config *c, bool markdown)
{
    static const char *types[] = {"string", "integer", "size", "bool"};
    if (markdown) {
        fprintf(f, "| option | type | default | range | reload | meaning |\n|---|---|---|---|---|---|\n");
        for (size_t i = 0; i < qd_cfg_table_len; i++) {
            const qd_cfg_row *r = &qd_cfg_table[i];
            char range[64] = "";
            if (r->type == QD_CFG_INT || r->type == QD_CFG_SIZE)
                snprintf(range, sizeof(range), "%" PRId64 "..%" PRId64, r->min, r->max);
            fprintf(f, "| `%s` | %s | %s%s%s | %s | %s | %s |\n", r->name, types[r->type], *r->def ? "`" : "",
                    *r->def ? r->def : "(empty)", *r->def ? "`" : "", range,
                    (r->flags & QD_CFG_RELOADABLE) ? "reopened on SIGHUP" : "restart", r->help);
        }
        return;
    }
    fprintf(f, "# quantd configuration: `key value` in a file (--config FILE), or --key=value on the command line\n");
    for (size_t i = 0; i < qd_cfg_table_len; i++) {
        const qd_cfg_row *r = &qd_cfg_table[i];
        char v[1024];
        value_text(v, sizeof(v), c, r);
        fprintf(f, "\n# %s\n# type %s, default \"%s\"", r->help, types[r->type], r->def);
        if (r->type == QD_CFG_INT || r->type == QD_CFG_SIZE)
            fprintf(f, ", range %" PRId64 "..%" PRId64, r->min, r->max);
        fprintf(f, "%s\n%s%s %s\n", (r->flags & QD_CFG_RELOADABLE) ? ", reopened on SIGHUP" : "", *v ? "" : "# ",
                r->name, *v ? v : "(unset)");
    }
}

int qd_config_listen_split(const char *listen, char *host, size_t host_cap, int *port)
{
    const char *colon = strrchr(listen, ':');
    char *end;
    long p;
    size_t hl;
    if (!colon)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "listen: '%s' is not host:port", listen);
    hl = (size_t)(colon - listen);
    if (hl >= 2 && listen[0] == '[' && listen[hl - 1] == ']') {
        listen++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_cap)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "listen: '%s' has no usable host", listen);
    memcpy(host, listen, hl);
    host[hl] = 0;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || errno || p < 0 || p > 65535)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "listen: '%s' has no valid port", colon + 1);
    *port = (int)p;
    return QD_OK;
}
