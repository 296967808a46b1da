/*
 * daemon.h - private to daemon/: the configuration, the server state and the pieces shared by its files.
 *
 * Threads: one event-loop thread owns libevent, every HTTP request and the metrics; worker threads (pool.c) run
 * blocking work (hashing, LMDB writes) and hand results back to the loop through a pipe. The store is shared by
 * all threads (its own rules, store.h).
 */
#ifndef QD_DAEMON_H
#define QD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "qd/qd.h"
#include "qd/audit.h"
#include "qd/registry.h"
#include "qd/replog.h"

/* ---- config (config.c) ------------------------------------------------------------------------------------ */

typedef struct qd_config {
    char *listen;            /* host:port */
    char *store;             /* store directory */
    char *port_file;         /* write the bound port here */
    char *log_file;          /* "" or "-": stderr */
    char *log_level;
    int64_t workers;
    char *tls_cert, *tls_key;
    bool anonymous_pull;
    bool auth;               /* false: no token needed for anything (development only) */
    int64_t rate_limit;      /* requests per second per token/address; 0: off */
    int64_t rate_burst;
    int64_t max_header_bytes;
    int64_t max_body_bytes;
    int64_t max_manifest_bytes;
    int64_t timeout_s;
    int64_t upload_ttl_s;
    int64_t max_uploads;
    int64_t max_jobs;        /* quantize jobs at once; 0: queue only */
    int64_t job_threads;     /* quantizer threads per job */
    int64_t job_memory;      /* bytes one job may use */
    char *signing_key;       /* "" : <store>/signing-key.pem */
    char *validation_policy; /* "" : built-in */
    char *builder_id;        /* "" : quantd@<hostname> */
    int64_t ingest_sign_delay; /* seconds before an unsigned pushed checkpoint is signed by the daemon; -1: off */
    char *log_origin;        /* the signed log's origin (checkpoint key name) when the log is created */
    int64_t log_timestamp_interval; /* seconds between timestamp renewals; 0: only when an entry is appended */
    int64_t log_timestamp_ttl;      /* seconds a timestamp stays valid */
    char *mirror_of;         /* "URL[=ns1,ns2] ...": upstreams to mirror (mirror.c) */
    char *mirror_log_key;    /* "FILE ...": each upstream's log key, in the same order */
    char *trust;             /* the trust policy bundles must verify under (mirrors) */
    int64_t mirror_interval; /* seconds between syncs */
    int64_t mirror_parallel; /* blob downloads at once per entry */
} qd_config;

typedef enum { QD_CFG_STR, QD_CFG_INT, QD_CFG_SIZE, QD_CFG_BOOL } qd_cfg_type;
enum { QD_CFG_IMMUTABLE = 1 << 0, QD_CFG_RELOADABLE = 1 << 1 };

typedef struct qd_cfg_row {
    const char *name;
    qd_cfg_type type;
    const char *def;   /* default, in the syntax of the config file */
    int64_t min, max;  /* for INT and SIZE */
    size_t offset;     /* offsetof(qd_config, field) */
    unsigned flags;
    const char *help;
} qd_cfg_row;

extern const qd_cfg_row qd_cfg_table[];
extern const size_t qd_cfg_table_len;

/* Fill every field with its default. */
int qd_config_init(qd_config *c);
void qd_config_free(qd_config *c);
/* Set one option from text; `where` ("file:line" or "--flag") prefixes the error message. */
int qd_config_set(qd_config *c, const char *name, const char *value, const char *where);
int qd_config_load_file(qd_config *c, const char *path);
/* defaults < --config FILE < --key=value. Sets *dump for --dump-config. */
int qd_config_from_args(qd_config *c, int argc, char **argv, bool *dump);
/* One line per option: name, value, default, meaning. markdown: a table for docs/DAEMON.md. */
void qd_config_dump(FILE *f, const qd_config *c, bool markdown);
/* Split host:port. */
int qd_config_listen_split(const char *listen, char *host, size_t host_cap, int *port);

/* ---- worker pool (pool.c) --------------------------------------------------------------------------------- */

typedef struct qd_pool qd_pool;
/* work runs on a worker thread; done runs afterwards on the loop thread. */
typedef void (*qd_pool_fn)(void *payload);
int qd_pool_new(qd_pool **out, struct event_base *base, int n_threads);
int qd_pool_submit(qd_pool *p, qd_pool_fn work, qd_pool_fn done, void *payload);
size_t qd_pool_pending(qd_pool *p);
void qd_pool_free(qd_pool *p); /* waits for running work, runs pending done callbacks */

/* ---- server ---------------------------------------------------------------------------------------------- */

typedef struct qd_metrics qd_metrics;
typedef struct qd_auth qd_auth;
typedef struct qd_jobs qd_jobs;
typedef struct qd_dlog qd_dlog;
typedef struct qd_mirror qd_mirror;

typedef struct qd_server {
    qd_config *cfg;
    qd_store *store;
    qd_key *key;             /* the daemon's signing key: loaded (or made) once by main.c; the jobs sign with it,
                              * the log signs its commits and notes with it */
    struct event_base *base;
    struct evhttp *http;
    void *ssl_ctx;           /* SSL_CTX*, NULL without TLS */
    struct evhttp_bound_socket *bound;
    qd_pool *pool;
    qd_metrics *metrics;
    qd_auth *auth;
    qd_jobs *jobs;           /* the quantize-job runner (jobs.c) */
    struct qd_mcache *mcache; /* manifest bytes by digest (mcache.c) */
    qd_dlog *dlog;           /* the signed log (dlog.c) */
    qd_mirror *mirror;       /* the upstreams followed (mirror.c), NULL when not a mirror */
    char *uploads_dir;       /* <store>/uploads */
    uint64_t next_req_id;
    int port;
    bool stopping;
    size_t in_flight;        /* requests not yet answered */
} qd_server;

/* One HTTP request being served. Owned by the loop thread. */
typedef struct qd_req {
    qd_server *srv;
    struct evhttp_request *req;   /* NULL once the connection went away */
    struct evhttp_connection *evcon;
    uint64_t id;
    uint64_t t0_ns;
    const char *route;            /* metrics label */
    int method;
    char *path;                   /* decoded path, without the query */
    struct evkeyvalq query;
    bool query_parsed;
    bool dead;                    /* the client disconnected */
    bool replying;                /* evhttp is sending the reply (or a stream): finish when it is done */
    int status;
    uint64_t bytes_out;
    uint64_t bytes_in;
    char token_id[QD_TOKEN_ID_LEN + 1];
    /* streaming a blob */
    qd_blob_reader *reader;
    uint64_t remaining;
    struct evbuffer *chunk;
    /* for handlers' own state */
    void *work;
    void (*work_free)(void *work);
} qd_req;

int qd_server_run(qd_server *srv);
uint64_t qd_now_ns(void);

/* Answering (http.c). After any of these the qd_req may be gone. */
void qd_reply(qd_req *r, int status, struct evbuffer *body);           /* body may be NULL */
void qd_reply_json(qd_req *r, int status, const char *json);
/* An OCI error body {"errors":[{code,message,detail}]} with the status of code. detail may be NULL (JSON text). */
void qd_reply_oci(qd_req *r, const char *code, const char *message, const char *detail_json);
/* Map a qd_err (with the thread's message) to an OCI error (http_err.c). */
void qd_reply_err(qd_req *r, int err, const char *fallback_code);
int qd_oci_status(const char *code);
void qd_req_header(qd_req *r, const char *name, const char *value);
const char *qd_req_in_header(qd_req *r, const char *name);
const char *qd_req_query(qd_req *r, const char *name);
/* Run work on the pool, then done on the loop (done must reply). */
int qd_req_offload(qd_req *r, qd_pool_fn work, qd_pool_fn done);
/* Start streaming a blob range (status 200 or 206 already decided, headers set). Takes the reader. */
void qd_req_stream(qd_req *r, int status, qd_blob_reader *reader, uint64_t len);

/* ---- routes ---------------------------------------------------------------------------------------------- */

void qd_oci_handle(qd_req *r);      /* /v2/... */
void qd_v1_handle(qd_req *r);       /* /v1/... (v1.c) */
void qd_audit_api_handle(qd_req *r); /* /v1/audit/... (audit_api.c) */
/* A signature-bundle referrer (the bundle is its last layer) whose statement has the variant predicate: its audit
 * entry for qd_manifest_desc.audit (qd_free it after the transaction); NULL for anything else (stored unindexed). */
qd_audit_entry *qd_bundle_audit_entry(qd_store *s, bool has_subject, const char *artifact_type,
                                      const qd_digest *blobs, size_t n_blobs);
void qd_gc_handle(qd_req *r);       /* POST /v1/gc: orphan blobs (gc.c) */
/* A checkpoint manifest was pushed (loop thread): the daemon signs it after ingest-sign-delay unless the pusher
 * pushed a bundle referrer for it by then (ingest.c). qd_ingest_stop drops what is pending (before the base goes). */
void qd_ingest_pushed(qd_server *srv, const char *repo, const qd_digest *d);
void qd_ingest_stop(void);
int qd_oci_uploads_sweep(qd_server *srv);

/* ---- quantize jobs (jobs.c, jobs_run.c) ------------------------------------------------------------------- */

/* Load or make the signing key, recover jobs left running, start max-jobs runner threads. */
int qd_jobs_start(qd_server *srv);
/* Ask running jobs to stop at their next check (they stay "running" in the store and start again at the next
 * start), join the threads, free. */
void qd_jobs_stop(qd_server *srv);
void qd_jobs_handle(qd_req *r);   /* /v1/jobs... */
/* Job metrics in the Prometheus text format (queue depth, running, stage durations, verdicts, ends). */
void qd_jobs_metrics(qd_server *srv, struct evbuffer *out);
/* Server-sent events on a request (http.c): start a chunked text/event-stream reply, send chunks, end it. */
void qd_req_sse_start(qd_req *r);
void qd_req_sse_send(qd_req *r, const char *text, size_t len);
void qd_req_sse_end(qd_req *r);

/* ---- manifest bytes cache (mcache.c; loop thread only) ------------------------------------------------------ */

typedef struct qd_mcache qd_mcache;
int qd_mcache_new(qd_mcache **out);
void qd_mcache_free(qd_mcache *c);
/* The cached bytes of manifest d (borrowed until the next put). false when not cached (or c is NULL). */
bool qd_mcache_get(qd_mcache *c, const qd_digest *d, const void **data, size_t *len);
/* Remember the bytes of manifest d (they must hash to d); too large ones are not kept. */
void qd_mcache_put(qd_mcache *c, const qd_digest *d, const void *data, size_t len);
/* ---- the signed log (dlog.c) ----------------------------------------------------------------------------- */

/* One entry to append: a publish (the bundle blob names the bundle in the store) or a tag move. */
typedef struct qd_dlog_item {
    qd_replog_kind kind;                     /* QD_REPLOG_PUBLISH or QD_REPLOG_TAG */
    char name[QD_REPO_MAX + QD_TAG_MAX + 2]; /* "ns/model" (publish) or "ns/model:tag" */
    qd_digest manifest;
    qd_digest bundle;                        /* publish: the bundle's blob digest */
} qd_dlog_item;
/* Open (or create) <store>/log.git, add the daemon key when the log does not list it, settle a leftover intent,
 * sign the first checkpoint and timestamp. After qd_jobs_start (which makes the signing key). */
int qd_dlog_open(qd_server *srv);
void qd_dlog_close(qd_server *srv);
/* Renew the timestamp every log-timestamp-interval seconds (on the loop; the signing runs on the pool). */
int qd_dlog_start_timer(qd_server *srv);
void qd_dlog_stop_timer(qd_server *srv);
/* Around a store transaction: begin checks the names, takes the log lock and writes the intent; end appends
 * (store_rc == QD_OK) or drops it, and unlocks. begin failing means: do not run the transaction. end failing
 * means: the store changed but the log append failed (reported; retried before the next publish/at restart). */
int qd_dlog_begin(qd_dlog *d, const qd_dlog_item *items, size_t n);
/* Whether a blob is a Sigstore bundle or DSSE envelope the log can record (a referrer whose artifactType claims a
 * bundle but whose layer is not one is stored as an ordinary referrer: not logged, not indexed). */
bool qd_dlog_bundle_ok(qd_store *s, const qd_digest *bundle);
int qd_dlog_end(qd_dlog *d, const qd_dlog_item *items, size_t n, int store_rc);
void qd_dlog_handle(qd_req *r); /* /v1/log/... */
/* Key events (keys.c routes): add (a public key; comment names it), revoke (by id), or both (rotation) under one
 * hold of the log lock. first: the index of the first entry appended. QD_EINVAL, QD_ENOTFOUND (revoke: unknown
 * id), QD_EEXISTS (already listed / already revoked), QD_EREFERENCED (the daemon's own log key). */
int qd_dlog_key_event(qd_dlog *d, uint64_t *first, const qd_key *add, const char *comment, const char *revoke_id);
struct json_t;
/* Append to arr one {id, algorithm, added, revoked, comment, log_key} per key the log lists. */
int qd_dlog_keys_json(qd_dlog *d, struct json_t *arr);
void qd_keys_handle(qd_req *r); /* /v1/keys (keys.c) */
void qd_dlog_git_handle(qd_req *r); /* /log.git/... (git smart HTTP, upload-pack only) */

/* ---- mirrors (mirror.c) ------------------------------------------------------------------------------------ */

/* Start one sync thread per mirror-of upstream (after qd_dlog_open); nothing when mirror-of is empty. */
int qd_mirror_start(qd_server *srv);
/* Stop the threads (a sync in progress stops between entries) and free. */
void qd_mirror_stop(qd_server *srv);
void qd_mirror_handle(qd_req *r); /* GET /v1/mirror/status */

/* ---- auth (auth.c) --------------------------------------------------------------------------------------- */

enum { QD_SCOPE_PULL = QD_TOKEN_SCOPE_PULL, QD_SCOPE_PUSH = QD_TOKEN_SCOPE_PUSH, QD_SCOPE_ADMIN = QD_TOKEN_SCOPE_ADMIN };
int qd_auth_new(qd_auth **out, qd_server *srv);
void qd_auth_free(qd_auth *a);
/* Check that the request may do `need` on repo (NULL: any repository, e.g. /v2/). Replies 401/403/429 itself
 * and returns false when not. */
bool qd_auth_check(qd_req *r, const char *repo, unsigned need);
/* Like qd_auth_check without replying or rate limiting (e.g. the source of a mount). */
bool qd_auth_allows(qd_req *r, const char *repo, unsigned need);
/* The presented token's scopes (for checks on many repositories off the loop thread, with
 * qd_token_scopes_allow); *all when no check is needed (auth off, or anonymous pull allowed: then only pull).
 * false when the token is malformed or unknown. */
bool qd_auth_scopes(qd_req *r, char *scopes, size_t cap, bool *all);

/* ---- metrics --------------------------------------------------------------------------------------------- */

int qd_metrics_new(qd_metrics **out);
void qd_metrics_free(qd_metrics *m);
void qd_metrics_request(qd_metrics *m, const char *route, int status, uint64_t bytes_out, uint64_t dur_ns);
/* Store totals, gathered on a worker (they walk the store) and rendered on the loop. */
typedef struct qd_metrics_store {
    bool store_ok, registry_ok;
    qd_store_stats store;
    qd_registry_stats registry;
} qd_metrics_store;
void qd_metrics_store_gather(qd_metrics_store *ms, qd_store *s);
void qd_metrics_render(qd_metrics *m, qd_server *srv, const qd_metrics_store *ms, struct evbuffer *out);

#endif
