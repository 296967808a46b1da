/*
 * http.h - the client's one door to HTTP (libcurl underneath; only client/http.c includes curl).
 *
 * One http_client holds one CURLSH (connection cache, DNS, TLS sessions) shared by a reusable easy handle for
 * single requests and by the easy handles of a CURLM for parallel Range downloads, so every request to the
 * registry reuses the open connections. HTTP/2 is negotiated over TLS when the server offers it (ALPN); TLS peers
 * are verified (a CA bundle may be named); proxies come from the usual environment variables (libcurl).
 *
 * Errors: a connection failure returns QD_EIO with error class QD_EC_NET (exit code EXIT_UNREACHABLE); an HTTP
 * error status is turned by http_status_error() into a qd_err (404 QD_ENOTFOUND, 400 QD_EINVAL, 401/403 and others
 * QD_ERROR) with the OCI error body ("CODE: message") in the message. Not thread-safe: one client per thread.
 */
#ifndef QUANT_HTTP_H
#define QUANT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "qd/buf.h"

typedef struct http_client http_client;

typedef struct http_options {
    const char *base_url; /* "http://127.0.0.1:5000" or "https://host" (no trailing slash needed) */
    const char *token;    /* bearer token, or NULL */
    const char *cacert;   /* CA bundle file, or NULL for the system store */
    long connect_timeout_s; /* 0: 10 s */
} http_options;

/* A response: status, body (bounded) and the headers the client needs. */
typedef struct http_resp {
    long status;
    qd_buf body;
    char location[1024];
    char digest[96];       /* Docker-Content-Digest */
    char content_type[128];
    char range[64];        /* Range (upload status) */
    uint64_t content_length;
} http_resp;

/* Where a request body comes from: memory, or len bytes of fd from off. */
typedef struct http_body {
    const void *data;
    int fd;
    uint64_t off;
    uint64_t len;
} http_body;

int http_open(http_client **out, const http_options *o);
void http_close(http_client *c);

void http_resp_init(http_resp *r, size_t max_body);
void http_resp_dispose(http_resp *r);

/*
 * One request. path is absolute ("/v2/...") or a full URL (an upload Location). accept and content_type may be
 * NULL. body may be NULL. Any status is returned in r (QD_OK); only transport failures return an error.
 */
int http_request(http_client *c, http_resp *r, const char *method, const char *path, const char *accept,
                 const char *content_type, const char *extra_header, const http_body *body);

/* Turn an error status into a qd_err with a clear message naming what was asked (what). 2xx gives QD_OK. */
int http_status_error(const http_resp *r, const char *what);

/* One byte range of a parallel download; done grows as bytes arrive. end is exclusive. */
typedef struct http_range {
    uint64_t start, end, done;
} http_range;

/* Called with the bytes of range i that start at absolute offset off; non-zero aborts the download. */
typedef int (*http_range_cb)(void *ctx, size_t i, uint64_t off, const void *data, size_t len);
/* Called between rounds of the transfer loop (progress, hashing, state); non-zero aborts. */
typedef int (*http_tick_cb)(void *ctx);

/* Asked before range i is started (in order): 1 when the caller has room for its bytes now; 0 and the transfer
 * loop asks again after the next network event or http_wake(); -1 stops the download with the error set. */
typedef int (*http_ready_cb)(void *ctx, size_t i);

/*
 * GET path as the n ranges, in order, at most max_active at a time, each continuing its range from done (a
 * complete range is skipped); ready (or NULL) gates each start; if_range (or NULL) is sent as If-Range. A range
 * whose connection drops is retried from where it stopped (up to 3 tries in a row without progress). A server
 * that answers 200 to a range request, or a Content-Range that is not the one asked for, is an error
 * (QD_ECORRUPT). @return QD_OK when every range is complete, or the error of the first that failed.
 */
int http_get_ranges(http_client *c, const char *path, const char *if_range, http_range *ranges, size_t n,
                    size_t max_active, http_ready_cb ready, http_range_cb cb, http_tick_cb tick, void *ctx);

/* Wake http_get_ranges() from another thread (it then asks ready() again at once). The one thread-safe call. */
void http_wake(http_client *c);

/* Called with each piece of a streamed 2xx body as it arrives; non-zero stops the stream (http_stream then
 * returns QD_OK: the caller chose to stop). */
typedef int (*http_data_cb)(void *ctx, const char *data, size_t len);

/*
 * GET path and hand the body to cb as it arrives (text/event-stream and other long bodies); no overall time limit,
 * but a connection silent for idle_s seconds counts as dropped. A non-2xx answer is kept in r (body bounded by r's
 * maximum) and not passed to cb. @return QD_OK when the body ended or cb stopped it, or a transport error (QD_EIO,
 * class QD_EC_NET, when the connection dropped or could not be made)
 */
int http_stream(http_client *c, http_resp *r, const char *path, const char *accept, long idle_s, http_data_cb cb,
                void *ctx);

/* Bytes received in bodies by this client so far (for reports and tests). */
uint64_t http_bytes_received(const http_client *c);

#endif
