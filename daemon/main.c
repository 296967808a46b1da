/*
 * main.c - `quantd`: read the configuration, open the store, serve until SIGTERM.
 *
 *   quantd [--config FILE] [--key=value ...]   serve
 *   quantd --dump-config [...]                  print every option (after layering) with default and meaning
 *   quantd --dump-config-markdown               the option table for docs/DAEMON.md
 *   quantd --version | --help
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "qd/audit.h"
#include "qd/version.h"

/* ---- the log sink: `ts level module msg`, to stderr or a file reopened on SIGHUP ----------------------------- */

static FILE *g_log;
static char *g_log_path;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_sink(int level, const char *module, const char *line, void *payload)
{
    struct timespec ts;
    struct tm tm;
    char t[40];
    (void)payload;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&g_log_mu);
    fprintf(g_log ? g_log : stderr, "%s.%03ldZ %s %s %s\n", t, ts.tv_nsec / 1000000, qd_log_level_name(level),
            module, line);
    fflush(g_log ? g_log : stderr);
    pthread_mutex_unlock(&g_log_mu);
}

void qd_daemon_reopen_log(void);
void qd_daemon_reopen_log(void)
{
    FILE *f;
    if (!g_log_path)
        return;
    pthread_mutex_lock(&g_log_mu);
    f = fopen(g_log_path, "a");
    if (f) {
        if (g_log)
            fclose(g_log);
        g_log = f;
    }
    pthread_mutex_unlock(&g_log_mu);
}

static int parse_level(const char *s)
{
    for (int l = QD_LOG_ERROR; l <= QD_LOG_DEBUG; l++)
        if (!strcmp(s, qd_log_level_name(l)))
            return l;
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd [--config FILE] [--key=value ...] | --dump-config | --version | --help\n\n"
               "quantd serves model artifacts over the OCI Distribution API (/v2/) from a content-addressed store.\n"
               "Every option can be set in the config file (`key value` lines) or as --key=value;\n"
               "`quantd --dump-config` lists them all with their defaults and meaning.\n");
}

/* The daemon's signing key (signing-key, default STORE/signing-key.pem), loaded once; made on first start (Ed25519,
 * mode 0600). The jobs sign statements with it and the signed log its commits and notes. */
static int load_signing_key(qd_server *srv)
{
    qd_config *c = srv->cfg;
    char path[4096];
    int rc;
    if (c->signing_key[0])
        snprintf(path, sizeof(path), "%s", c->signing_key);
    else
        snprintf(path, sizeof(path), "%s/signing-key.pem", c->store);
    rc = qd_key_load(&srv->key, path);
    if (rc == QD_ENOTFOUND || (rc < 0 && access(path, F_OK) != 0)) {
        mode_t old = umask(077);
        qd_error_clear();
        if ((rc = qd_key_generate(&srv->key, QD_KEY_ED25519)) == QD_OK)
            rc = qd_key_save_private(srv->key, path);
        umask(old);
        if (rc < 0)
            return rc;
        chmod(path, 0600);
        qd_log(QD_LOG_INFO, "daemon", "req=0 signing key generated path=%s key_id=%s", path, qd_key_id(srv->key));
    } else if (rc < 0) {
        return rc;
    } else {
        qd_log(QD_LOG_INFO, "daemon", "req=0 signing key loaded path=%s key_id=%s", path, qd_key_id(srv->key));
    }
    if (!qd_key_can_sign(srv->key))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "signing-key %s holds no private key", path);
    return QD_OK;
}

int main(int argc, char **argv)
{
    qd_config cfg;
    qd_server srv;
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    bool dump = false;
    int rc, level;
    char path[4096];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version")) {
            printf("quantd %s\n", qd_version_string());
            return 0;
        }
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--dump-config-markdown")) {
            qd_config_init(&cfg);
            qd_config_dump(stdout, &cfg, true);
            qd_config_free(&cfg);
            return 0;
        }
    }
    if ((rc = qd_config_init(&cfg)) < 0 || (rc = qd_config_from_args(&cfg, argc, argv, &dump)) < 0) {
        fprintf(stderr, "quantd: %s\n", qd_error_last()->message);
        qd_config_free(&cfg);
        return 2;
    }
    if (dump) {
        qd_config_dump(stdout, &cfg, false);
        qd_config_free(&cfg);
        return 0;
    }
    if ((level = parse_level(cfg.log_level)) < 0) {
        fprintf(stderr, "quantd: --log-level: '%s' is not error, warn, info or debug\n", cfg.log_level);
        qd_config_free(&cfg);
        return 2;
    }
    if (cfg.log_file[0] && strcmp(cfg.log_file, "-")) {
        g_log_path = cfg.log_file;
        qd_daemon_reopen_log();
        if (!g_log) {
            fprintf(stderr, "quantd: cannot open the log file %s: %s\n", cfg.log_file, strerror(errno));
            qd_config_free(&cfg);
            return 1;
        }
    }
    qd_log_set_sink(log_sink, NULL);
    qd_log_set_level(level);

    memset(&srv, 0, sizeof(srv));
    srv.cfg = &cfg;
    so.flags = QD_STORE_CREATE;
    if ((rc = qd_store_open(&srv.store, cfg.store, &so)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 cannot open the store: %s", qd_error_last()->message);
        fprintf(stderr, "quantd: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    /* a store made before the audit indexes gets them now, from its bundles (qd/audit.h) */
    if ((rc = qd_audit_index_ensure(srv.store)) < 0) {
        fprintf(stderr, "quantd: audit index: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/uploads", cfg.store);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "quantd: cannot create %s: %s\n", path, strerror(errno));
        rc = 1;
        goto out;
    }
    if (!(srv.uploads_dir = qd_strdup(path)) || qd_metrics_new(&srv.metrics) < 0 ||
        qd_mcache_new(&srv.mcache) < 0 || qd_auth_new(&srv.auth, &srv) < 0) {
        fprintf(stderr, "quantd: out of memory\n");
        rc = 1;
        goto out;
    }
    qd_oci_uploads_sweep(&srv);
    if ((rc = load_signing_key(&srv)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 signing key: %s", qd_error_last()->message);
        fprintf(stderr, "quantd: signing key: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    /* the log before the jobs: a recovered job may publish as soon as its runner starts */
    if ((rc = qd_dlog_open(&srv)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 signed log: %s", qd_error_last()->message);
        fprintf(stderr, "quantd: signed log: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    if ((rc = qd_jobs_start(&srv)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 jobs: %s", qd_error_last()->message);
        fprintf(stderr, "quantd: jobs: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    if ((rc = qd_mirror_start(&srv)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 mirror: %s", qd_error_last()->message);
        fprintf(stderr, "quantd: mirror: %s\n", qd_error_last()->message);
        rc = 1;
        goto out;
    }
    if ((rc = qd_server_run(&srv)) < 0) {
        qd_log(QD_LOG_ERROR, "daemon", "req=0 %s", qd_error_last()->message);
        fprintf(stderr, "quantd: %s\n", qd_error_last()->message);
        rc = 1;
    }
out:
    qd_mirror_stop(&srv);
    qd_jobs_stop(&srv); /* running jobs stop at their next check and stay queued for the next start */
    qd_dlog_close(&srv);
    qd_key_free(srv.key);
    qd_auth_free(srv.auth);
    qd_metrics_free(srv.metrics);
    qd_mcache_free(srv.mcache);
    qd_free(srv.uploads_dir);
    qd_store_close(srv.store);
    qd_log_set_sink(NULL, NULL);
    if (g_log)
        fclose(g_log);
    qd_config_free(&cfg);
    return rc < 0 ? 1 : rc;
}
