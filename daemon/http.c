/*
 * http.c - the HTTP side of quantd: libevent's evhttp on one loop thread, TLS through bufferevent_openssl, one
 * log line per request, replies, streaming of blobs, hand-off of blocking work to the pool, graceful shutdown.
 *
 * Request lifetime: on_request() makes a qd_req, routes it, and the handler answers either at once (qd_reply*)
 * or later (qd_req_offload, qd_req_stream). While a request waits, a close callback on its connection marks it
 * dead when the client goes away; the late answer is then dropped and the request freed. finish() logs the line,
 * counts the metrics and frees the qd_req.
 *
 * Limits (from the config table): request line + headers (max-header-bytes, 400 beyond... evhttp answers 400 or
 * closes), body (max-body-bytes, 413), idle/stalled connections (timeout). evhttp reads a whole request body into
 * memory before the handler runs, so max-body-bytes bounds memory per connection: large blobs must be pushed as
 * several PATCH chunks (each at most max-body-bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "daemon.h"

#define STREAM_PIECE (4u << 20)
#define STREAM_LOW (4u << 20)
#define STREAM_HIGH (8u << 20)

uint64_t qd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *method_name(int m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "?";
    }
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Status";
    }
}

/* ---- finishing a request ---------------------------------------------------------------------------------- */

static void finish(qd_req *r)
{
    qd_server *srv = r->srv;
    uint64_t dur = qd_now_ns() - r->t0_ns;
    qd_log(QD_LOG_INFO, "http", "req=%llu %s %s status=%d bytes_in=%llu bytes_out=%llu ms=%.3f route=%s%s%s%s",
           (unsigned long long)r->id, method_name(r->method), r->path ? r->path : "?", r->status,
           (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out, (double)dur / 1e6, r->route,
           r->token_id[0] ? " token=" : "", r->token_id, r->dead ? " client=gone" : "");
    qd_metrics_request(srv->metrics, r->route, r->dead ? 499 : r->status, r->bytes_out, dur);
    if (r->reader)
        qd_blob_reader_close(r->reader);
    if (r->chunk)
        evbuffer_free(r->chunk);
    if (r->work_free && r->work)
        r->work_free(r->work);
    if (r->query_parsed)
        evhttp_clear_headers(&r->query);
    qd_free(r->path);
    qd_free(r);
    srv->in_flight--;
    if (srv->stopping && srv->in_flight == 0)
        event_base_loopexit(srv->base, NULL);
}

/* The client went away while we were working on its request. */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    qd_req *r = arg;
    (void)evcon;
    r->dead = true;
    if (r->req && evhttp_request_get_connection(r->req) == NULL) {
        /* evhttp detached the request and left it to us */
        evhttp_request_free(r->req);
    }
    r->req = NULL;
    r->evcon = NULL;
    if (r->replying) {
        /* a reply or a stream was under way: nothing more will be sent */
        finish(r);
    }
    /* otherwise a worker still holds r: its done callback sees r->dead and finishes */
}

/* The last byte of the reply was handed to the kernel: the request is done. (Called by evhttp before it frees
 * the request and, for Connection: close, the connection; so the close callback is dropped first.) */
static void on_complete(struct evhttp_request *req, void *arg)
{
    qd_req *r = arg;
    (void)req;
    if (r->evcon)
        evhttp_connection_set_closecb(r->evcon, NULL, NULL);
    finish(r);
}

/* From now on evhttp owns the sending: finish() runs once it is complete (on_complete) or the client is gone
 * (on_conn_close). Graceful shutdown waits for in_flight to reach 0, so it waits for replies to be written. */
static void replying(qd_req *r)
{
    r->replying = true;
    evhttp_request_set_on_complete_cb(r->req, on_complete, r);
    evhttp_connection_set_closecb(r->evcon, on_conn_close, r);
}

void qd_req_header(qd_req *r, const char *name, const char *value)
{
    if (r->req)
        evhttp_add_header(evhttp_request_get_output_headers(r->req), name, value);
}

const char *qd_req_in_header(qd_req *r, const char *name)
{
    return r->req ? evhttp_find_header(evhttp_request_get_input_headers(r->req), name) : NULL;
}

const char *qd_req_query(qd_req *r, const char *name)
{
    if (!r->query_parsed) {
        const struct evhttp_uri *u = r->req ? evhttp_request_get_evhttp_uri(r->req) : NULL;
        const char *q = u ? evhttp_uri_get_query(u) : NULL;
        r->query.tqh_first = NULL;
        r->query.tqh_last = &r->query.tqh_first;
        r->query_parsed = true;
        if (q && evhttp_parse_query_str(q, &r->query) < 0)
            evhttp_clear_headers(&r->query);
    }
    return evhttp_find_header(&r->query, name);
}

void qd_reply(qd_req *r, int status, struct evbuffer *body)
{
    r->status = status;
    if (r->dead || !r->req) {
        if (body)
            evbuffer_free(body);
        finish(r);
        return;
    }
    {
        struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
        char id[32];
        snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
        evhttp_add_header(h, "X-Request-Id", id);
        if (body && !evhttp_find_header(h, "Content-Length")) {
            char len[32];
            snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
            evhttp_add_header(h, "Content-Length", len);
        }
        if (!body && !evhttp_find_header(h, "Content-Length"))
            evhttp_add_header(h, "Content-Length", "0");
    }
    if (body) {
        if (r->method == EVHTTP_REQ_HEAD)
            evbuffer_drain(body, evbuffer_get_length(body));
        r->bytes_out += evbuffer_get_length(body);
    }
    {
        /* r may be finished (freed) by the time evhttp_send_reply returns: touch nothing of it afterwards */
        struct evhttp_request *req = r->req;
        replying(r);
        r->req = NULL;
        evhttp_send_reply(req, status, reason(status), body);
        if (body)
            evbuffer_free(body);
    }
}

void qd_reply_json(qd_req *r, int status, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    if (b)
        evbuffer_add(b, json, strlen(json));
    qd_req_header(r, "Content-Type", "application/json");
    qd_reply(r, status, b);
}

/* ---- offloading --------------------------------------------------------------------------------------------- */

int qd_req_offload(qd_req *r, qd_pool_fn work, qd_pool_fn done)
{
    int rc;
    evhttp_connection_set_closecb(r->evcon, on_conn_close, r);
    if ((rc = qd_pool_submit(r->srv->pool, work, done, r)) < 0)
        evhttp_connection_set_closecb(r->evcon, NULL, NULL);
    return rc;
}

/* ---- server-sent events (jobs.c) ----------------------------------------------------------------------- */

void qd_req_sse_start(qd_req *r)
{
    char id[32];
    struct evkeyvalq *h;
    if (r->dead || !r->req)
        return;
    h = evhttp_request_get_output_headers(r->req);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Request-Id", id);
    r->status = 200;
    replying(r);
    evhttp_send_reply_start(r->req, 200, reason(200));
}

void qd_req_sse_send(qd_req *r, const char *text, size_t len)
{
    struct evbuffer *b;
    if (r->dead || !r->req || !(b = evbuffer_new()))
        return;
    evbuffer_add(b, text, len);
    r->bytes_out += len;
    evhttp_send_reply_chunk(r->req, b);
    evbuffer_free(b);
}

/* r may be gone afterwards (the reply completes at once when the output is empty). */
void qd_req_sse_end(qd_req *r)
{
    struct evhttp_request *req = r->req;
    if (r->dead || !req)
        return;
    r->req = NULL;
    evhttp_send_reply_end(req);
}

/* ---- streaming -------------------------------------------------------------------------------------------- */

static void pump(struct evhttp_connection *evcon, void *arg);

void qd_req_stream(qd_req *r, int status, qd_blob_reader *reader, uint64_t len)
{
    char lens[32], id[32];
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    r->reader = reader;
    r->remaining = len;
    r->status = status;
    snprintf(lens, sizeof(lens), "%llu", (unsigned long long)len);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)r->id);
    evhttp_add_header(h, "Content-Length", lens);
    evhttp_add_header(h, "X-Request-Id", id);
    if (len == 0 || r->method == EVHTTP_REQ_HEAD) {
        struct evhttp_request *req = r->req;
        r->remaining = 0;
        replying(r);
        r->req = NULL;
        evhttp_send_reply(req, status, reason(status), NULL); /* r may be gone after this */
        return;
    }
    if (!(r->chunk = evbuffer_new())) {
        qd_reply_oci(r, "UNKNOWN", "out of memory", NULL);
        return;
    }
    replying(r);
    evhttp_send_reply_start(r->req, status, reason(status));
    bufferevent_setwatermark(evhttp_connection_get_bufferevent(r->evcon), EV_WRITE, STREAM_LOW, 0);
    pump(r->evcon, r);
}

/* Called when the connection's output has drained below the low watermark: top it up to the high watermark from
 * the blob. A piece of a raw chunk is a pointer into LMDB's map, valid while the reader's read transaction lasts
 * (until finish(), after the last byte is written or the client is gone): it goes into the connection's buffer
 * by reference (evbuffer_add_reference), so no byte is copied in user space. A piece of a compressed chunk lives
 * in the reader's decode buffer, overwritten by the next qd_blob_reader_next(): it is copied. Keeping
 * STREAM_LOW..STREAM_HIGH bytes queued keeps the socket busy without holding more than STREAM_HIGH per client
 * (referenced bytes count toward it too). */
static void pump(struct evhttp_connection *evcon, void *arg)
{
    qd_req *r = arg;
    struct evbuffer *out;
    int rc = QD_OK;
    (void)evcon;
    if (r->dead || !r->req)
        return;
    out = bufferevent_get_output(evhttp_connection_get_bufferevent(r->evcon));
    if (r->remaining == 0) {
        /* everything is queued: back to evhttp's own watermark, and finish once it is written (on_complete) */
        struct evhttp_request *req = r->req;
        bufferevent_setwatermark(evhttp_connection_get_bufferevent(r->evcon), EV_WRITE, 0, 0);
        r->req = NULL;
        evhttp_send_reply_end(req); /* completes at once when the output is empty: r is gone then */
        return;
    }
    while (r->remaining && evbuffer_get_length(out) + evbuffer_get_length(r->chunk) < STREAM_HIGH) {
        const void *data;
        size_t n;
        rc = qd_blob_reader_next(r->reader, r->remaining < STREAM_PIECE ? (size_t)r->remaining : STREAM_PIECE,
                                 &data, &n);
        if (rc < 0 || n == 0) {
            rc = rc < 0 ? rc : QD_ETRUNCATED;
            break;
        }
        /* a raw chunk's piece stays valid in the map while the reader (its read transaction) is open, which it
         * is until finish(): reference it; a decoded piece is overwritten by the next call: copy it */
        if ((qd_blob_reader_mapped(r->reader) ? evbuffer_add_reference(r->chunk, data, n, NULL, NULL)
                                              : evbuffer_add(r->chunk, data, n)) < 0) {
            rc = QD_ENOMEM;
            break;
        }
        r->remaining -= n;
        r->bytes_out += n;
    }
    if (rc < 0) {
        /* the headers are gone already: all we can do is cut the connection short */
        qd_log(QD_LOG_ERROR, "http", "req=%llu blob read failed: %s", (unsigned long long)r->id,
               qd_error_last()->message);
        r->status = 500;
        r->remaining = 0;
        /* shut the socket: the loop sees the connection fail, evhttp drops it, on_conn_close finishes r; the
         * client sees a body shorter than Content-Length */
        shutdown(bufferevent_getfd(evhttp_connection_get_bufferevent(r->evcon)), SHUT_RDWR);
        return;
    }
    evhttp_send_reply_chunk_with_cb(r->req, r->chunk, pump, r);
}

/* ---- routing ---------------------------------------------------------------------------------------------- */

static void handle_health(qd_req *r)
{
    r->route = "healthz";
    qd_req_header(r, "Content-Type", "text/plain");
    {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add_printf(b, "%s\n", r->srv->stopping ? "stopping" : "ok");
        qd_reply(r, r->srv->stopping ? 503 : 200, b);
    }
}

static void metrics_work(void *p)
{
    qd_req *r = p;
    qd_metrics_store_gather(r->work, r->srv->store);
}

static void metrics_done(void *p)
{
    qd_req *r = p;
    struct evbuffer *b;
    if (r->dead) {
        qd_reply(r, 200, NULL);
        return;
    }
    b = evbuffer_new();
    qd_metrics_render(r->srv->metrics, r->srv, r->work, b);
    qd_req_header(r, "Content-Type", "text/plain; version=0.0.4");
    qd_reply(r, 200, b);
}

static void handle_metrics(qd_req *r)
{
    r->route = "metrics";
    if (!(r->work = qd_calloc(1, sizeof(qd_metrics_store)))) {
        qd_reply(r, 503, NULL);
        return;
    }
    r->work_free = qd_free;
    if (qd_req_offload(r, metrics_work, metrics_done) < 0)
        qd_reply(r, 503, NULL);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    qd_server *srv = arg;
    qd_req *r = qd_calloc(1, sizeof(*r));
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    if (!r) {
        evhttp_send_error(req, 503, "out of memory");
        return;
    }
    srv->in_flight++;
    r->srv = srv;
    r->req = req;
    r->evcon = evhttp_request_get_connection(req);
    r->id = ++srv->next_req_id;
    r->t0_ns = qd_now_ns();
    r->route = "other";
    r->method = (int)evhttp_request_get_command(req);
    r->bytes_in = in ? evbuffer_get_length(in) : 0;
    r->path = qd_strdup(path && *path ? path : "/");
    if (!r->path) {
        qd_reply(r, 503, NULL);
        return;
    }
    if (srv->stopping) {
        qd_req_header(r, "Connection", "close");
        qd_reply_oci(r, "UNAVAILABLE", "the server is shutting down", NULL);
        return;
    }
    if (!strcmp(r->path, "/healthz") && (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD))
        handle_health(r);
    else if (!strcmp(r->path, "/metrics") && (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD))
        handle_metrics(r);
    else if (!strcmp(r->path, "/v2") || !strncmp(r->path, "/v2/", 4))
        qd_oci_handle(r);
    else if (!strncmp(r->path, "/v1/", 4))
        qd_v1_handle(r);
    else if (!strncmp(r->path, "/log.git/", 9))
        qd_dlog_git_handle(r); /* dlog.c: the signed log over git smart HTTP */
    else {
        r->route = "unknown";
        qd_reply_json(r, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"no such endpoint\"}]}");
    }
}

/* ---- TLS -------------------------------------------------------------------------------------------------- */

/* Every connection's bufferevent is made here. libevent moves at most 16 KiB per read or write call by default,
 * which caps a blob GET at a few hundred MB/s on this VM (a system call costs about 1.3 us); raise both. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    struct bufferevent *bev;
    if (arg) {
        SSL *ssl = SSL_new(arg);
        if (!ssl)
            return NULL;
        bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    } else
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev) {
        bufferevent_set_max_single_read(bev, 1 << 20);
        bufferevent_set_max_single_write(bev, 16 << 20);
    }
    return bev;
}

static int tls_setup(qd_server *srv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    unsigned long e;
    char msg[256];
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, srv->cfg->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, srv->cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    srv->ssl_ctx = ctx;
    return QD_OK;
fail:
    e = ERR_get_error();
    ERR_error_string_n(e, msg, sizeof(msg));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "TLS: cannot use %s / %s: %s", srv->cfg->tls_cert,
                        srv->cfg->tls_key, msg);
}

/* ---- signals and timers ----------------------------------------------------------------------------------- */

extern void qd_daemon_reopen_log(void);

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    qd_server *srv = arg;
    struct timeval grace = {10, 0};
    (void)what;
    if (srv->stopping)
        return;
    qd_log(QD_LOG_INFO, "daemon", "req=0 signal=%d stopping in_flight=%zu", (int)sig, srv->in_flight);
    srv->stopping = true;
    /* no new connections; running requests finish (at most `grace`), idle keep-alive connections are closed */
    if (srv->bound) {
        evhttp_del_accept_socket(srv->http, srv->bound);
        srv->bound = NULL;
    }
    if (srv->in_flight == 0)
        event_base_loopexit(srv->base, NULL);
    else
        event_base_loopexit(srv->base, &grace);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    qd_daemon_reopen_log();
    qd_log(QD_LOG_INFO, "daemon", "req=0 log reopened");
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    qd_oci_uploads_sweep(arg);
}

/* ---- the server ------------------------------------------------------------------------------------------- */

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!(f = fopen(tmp, "w")))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    return QD_OK;
}

int qd_server_run(qd_server *srv)
{
    qd_config *c = srv->cfg;
    char host[256];
    int port, rc = QD_OK;
    struct event *ev_term = NULL, *ev_int = NULL, *ev_hup = NULL, *ev_sweep = NULL;
    struct timeval sweep_every = {60, 0};

    if ((rc = qd_config_listen_split(c->listen, host, sizeof(host), &port)) < 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    if (!(srv->base = event_base_new()) || !(srv->http = evhttp_new(srv->base))) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NET, "cannot create the event loop");
        goto done;
    }
    evhttp_set_max_headers_size(srv->http, c->max_header_bytes);
    evhttp_set_max_body_size(srv->http, c->max_body_bytes);
    /* A body over max-body-bytes is read and thrown away (never held) and then answered 413, so the client reads
     * the 413 instead of a reset connection in the middle of its upload. */
    evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_timeout(srv->http, (int)c->timeout_s);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
    evhttp_set_default_content_type(srv->http, "application/json");
    evhttp_set_gencb(srv->http, on_request, srv);
    if (c->tls_cert[0] || c->tls_key[0]) {
        if (!c->tls_cert[0] || !c->tls_key[0]) {
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "TLS needs both tls-cert and tls-key");
            goto done;
        }
        if ((rc = tls_setup(srv)) < 0)
            goto done;
    }
    evhttp_set_bevcb(srv->http, make_bev, srv->ssl_ctx);
    if (!(srv->bound = evhttp_bind_socket_with_handle(srv->http, host, (ev_uint16_t)port))) {
        rc = qd_error_set(QD_EIO, QD_EC_NET, "cannot listen on %s: %s", c->listen, strerror(errno));
        goto done;
    }
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(srv->bound);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
    }
    if ((rc = qd_pool_new(&srv->pool, srv->base, (int)c->workers)) < 0 || (rc = qd_dlog_start_timer(srv)) < 0)
        goto done;
    ev_term = evsignal_new(srv->base, SIGTERM, on_term, srv);
    ev_int = evsignal_new(srv->base, SIGINT, on_term, srv);
    ev_hup = evsignal_new(srv->base, SIGHUP, on_hup, srv);
    ev_sweep = event_new(srv->base, -1, EV_PERSIST, on_sweep, srv);
    if (!ev_term || !ev_int || !ev_hup || !ev_sweep || evsignal_add(ev_term, NULL) || evsignal_add(ev_int, NULL) ||
        evsignal_add(ev_hup, NULL) || event_add(ev_sweep, &sweep_every)) {
        rc = qd_error_set(QD_ENOMEM, QD_EC_NET, "cannot set up signal handling");
        goto done;
    }
    if (c->port_file[0] && (rc = write_port_file(c->port_file, srv->port)) < 0)
        goto done;
    qd_log(QD_LOG_INFO, "daemon", "req=0 listening addr=%s port=%d tls=%s store=%s workers=%lld", host, srv->port,
           srv->ssl_ctx ? "on" : "off", c->store, (long long)c->workers);
    event_base_dispatch(srv->base);
    qd_log(QD_LOG_INFO, "daemon", "req=0 stopped in_flight=%zu", srv->in_flight);
done:
    if (ev_term)
        event_free(ev_term);
    if (ev_int)
        event_free(ev_int);
    if (ev_hup)
        event_free(ev_hup);
    if (ev_sweep)
        event_free(ev_sweep);
    /* workers finish what they run; their done callbacks answer (into closing connections) and free */
    qd_ingest_stop(); /* checkpoints not yet handed to a worker stay unsigned */
    qd_pool_free(srv->pool);
    srv->pool = NULL;
    qd_dlog_stop_timer(srv);
    if (srv->http)
        evhttp_free(srv->http);
    if (srv->ssl_ctx)
        SSL_CTX_free(srv->ssl_ctx);
    if (srv->base)
        event_base_free(srv->base);
    return rc;
}
