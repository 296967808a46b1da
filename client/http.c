/* http.c - the only file of the client that speaks HTTP (libcurl). See http.h. */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "qd/alloc.h"
#include "qd/err.h"

struct http_client {
    CURLSH *share;
    CURL *easy;   /* reused for single requests */
    CURLM *multi; /* parallel range downloads */
    char *base;
    char *auth_header;
    char *cacert;
    long connect_timeout;
    uint64_t received;
};

static int curl_ready;

static int net_error(CURLcode cc, const char *errbuf, const char *url)
{
    const char *msg = errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SEND_FAIL_REWIND:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return qd_error_set(QD_EIO, QD_EC_NET, "cannot reach the registry at %s: %s", url, msg);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
        return qd_error_set(QD_EBADSIG, QD_EC_NET, "TLS to %s failed: %s (a private CA needs --cacert)", url, msg);
    default:
        return qd_error_set(QD_ERROR, QD_EC_NET, "%s: %s", url, msg);
    }
}

int http_open(http_client **out, const http_options *o)
{
    http_client *c;
    size_t n;

    *out = NULL;
    if (!o->base_url || !*o->base_url)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG,
                            "no registry: give --registry URL, set QUANT_REGISTRY, or 'registry' in the config file");
    if (strncmp(o->base_url, "http://", 7) && strncmp(o->base_url, "https://", 8))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "registry URL %s: must start with http:// or https://",
                            o->base_url);
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return qd_error_set(QD_ERROR, QD_EC_NET, "libcurl initialisation failed");
        curl_ready = 1;
    }
    c = qd_calloc(1, sizeof(*c));
    if (!c)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    n = strlen(o->base_url);
    while (n && o->base_url[n - 1] == '/')
        n--;
    c->base = qd_malloc(n + 1);
    if (c->base) {
        memcpy(c->base, o->base_url, n);
        c->base[n] = 0;
    }
    if (o->token && *o->token) {
        size_t tl = strlen(o->token) + 32;
        c->auth_header = qd_malloc(tl);
        if (c->auth_header)
            snprintf(c->auth_header, tl, "Authorization: Bearer %s", o->token);
    }
    if (o->cacert) {
        c->cacert = qd_malloc(strlen(o->cacert) + 1);
        if (c->cacert)
            strcpy(c->cacert, o->cacert);
    }
    c->connect_timeout = o->connect_timeout_s ? o->connect_timeout_s : 10;
    c->share = curl_share_init();
    c->easy = curl_easy_init();
    c->multi = curl_multi_init();
    if (!c->base || (o->token && *o->token && !c->auth_header) || (o->cacert && !c->cacert) || !c->share ||
        !c->easy || !c->multi) {
        http_close(c);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    }
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    *out = c;
    return QD_OK;
}

void http_close(http_client *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->share)
        curl_share_cleanup(c->share);
    qd_free(c->base);
    qd_free(c->auth_header);
    qd_free(c->cacert);
    qd_free(c);
}

uint64_t http_bytes_received(const http_client *c) { return c->received; }

void http_resp_init(http_resp *r, size_t max_body)
{
    memset(r, 0, sizeof(*r));
    qd_buf_init(&r->body, max_body);
}

void http_resp_dispose(http_resp *r) { qd_buf_dispose(&r->body); }

/* Common options of every easy handle. */
static void setup_easy(http_client *c, CURL *e, const char *url, char *errbuf)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    /* a transfer that stalls below 1 byte/s for 30 s is a dead connection */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "quant/1");
    if (c->cacert)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->cacert);
    if (errbuf) {
        errbuf[0] = 0;
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    }
}

static int make_url(http_client *c, char *url, size_t cap, const char *path)
{
    int n;
    if (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8))
        n = snprintf(url, cap, "%s", path);
    else
        n = snprintf(url, cap, "%s%s", c->base, path);
    if (n < 0 || (size_t)n >= cap)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "URL too long");
    return QD_OK;
}

typedef struct body_reader {
    const http_body *b;
    uint64_t pos;
} body_reader;

static size_t read_body(char *buf, size_t size, size_t nitems, void *ud)
{
    body_reader *br = ud;
    uint64_t left = br->b->len - br->pos;
    size_t want = size * nitems;
    if (want > left)
        want = (size_t)left;
    if (!want)
        return 0;
    if (br->b->data) {
        memcpy(buf, (const char *)br->b->data + br->pos, want);
    } else {
        ssize_t got = pread(br->b->fd, buf, want, (off_t)(br->b->off + br->pos));
        if (got <= 0)
            return CURL_READFUNC_ABORT;
        want = (size_t)got;
    }
    br->pos += want;
    return want;
}

static int seek_body(void *ud, curl_off_t offset, int origin)
{
    body_reader *br = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > br->b->len)
        return CURL_SEEKFUNC_CANTSEEK;
    br->pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_body(char *data, size_t size, size_t nmemb, void *ud)
{
    http_resp *r = ud;
    size_t n = size * nmemb;
    /* a body over the bound is cut (error bodies and manifests are small); the transfer still completes */
    if (r->body.len + n <= r->body.max || r->body.max == 0)
        qd_buf_put(&r->body, data, n);
    return n;
}

static void copy_header_value(char *dst, size_t cap, const char *v, size_t len)
{
    while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
        len--;
    while (len && *v == ' ') {
        v++;
        len--;
    }
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = 0;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *ud)
{
    http_resp *r = ud;
    size_t n = size * nitems;
    const char *colon = memchr(data, ':', n);
    if (!strncmp(data, "HTTP/", 5)) { /* a new response (e.g. after 100 Continue): forget the old headers */
        r->location[0] = r->digest[0] = r->content_type[0] = r->range[0] = 0;
        return n;
    }
    if (!colon)
        return n;
    size_t kl = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
#define IS(name) (kl == sizeof(name) - 1 && !strncasecmp(data, name, kl))
    if (IS("Location"))
        copy_header_value(r->location, sizeof(r->location), v, vl);
    else if (IS("Docker-Content-Digest"))
        copy_header_value(r->digest, sizeof(r->digest), v, vl);
    else if (IS("Content-Type"))
        copy_header_value(r->content_type, sizeof(r->content_type), v, vl);
    else if (IS("Range"))
        copy_header_value(r->range, sizeof(r->range), v, vl);
    else if (IS("Content-Length")) {
        char tmp[32];
        copy_header_value(tmp, sizeof(tmp), v, vl);
        r->content_length = strtoull(tmp, NULL, 10);
    }
#undef IS
    return n;
}

int http_request(http_client *c, http_resp *r, const char *method, const char *path, const char *accept,
                 const char *content_type, const char *extra_header, const http_body *body)
{
    char url[2048], errbuf[CURL_ERROR_SIZE], hbuf[512];
    struct curl_slist *hdrs = NULL;
    body_reader br = {body, 0};
    CURL *e = c->easy;
    CURLcode cc;
    int rc;

    if ((rc = make_url(c, url, sizeof(url), path)))
        return rc;
    curl_easy_reset(e);
    setup_easy(c, e, url, errbuf);
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    if (accept) {
        snprintf(hbuf, sizeof(hbuf), "Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, hbuf);
    }
    if (content_type) {
        snprintf(hbuf, sizeof(hbuf), "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, hbuf);
    }
    if (extra_header)
        hdrs = curl_slist_append(hdrs, extra_header);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET"))
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(e, CURLOPT_READDATA, &br);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_body);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, &br);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body->len);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else if (!strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    qd_buf_clear(&r->body);
    r->content_length = 0;
    cc = curl_easy_perform(e);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK)
        return net_error(cc, errbuf, c->base);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    c->received += r->body.len;
    return QD_OK;
}

typedef struct stream_ctx {
    http_client *c;
    http_resp *r;
    http_data_cb cb;
    void *ctx;
    int stopped;
} stream_ctx;

static size_t stream_write(char *data, size_t size, size_t nmemb, void *ud)
{
    stream_ctx *s = ud;
    size_t n = size * nmemb;
    long st = 0;
    curl_easy_getinfo(s->c->easy, CURLINFO_RESPONSE_CODE, &st);
    s->c->received += n;
    if (st < 200 || st >= 300)
        return write_body(data, size, nmemb, s->r);
    if (s->cb(s->ctx, data, n)) {
        s->stopped = 1;
        return 0; /* abort the transfer: the caller has what it wanted */
    }
    return n;
}

int http_stream(http_client *c, http_resp *r, const char *path, const char *accept, long idle_s, http_data_cb cb,
                void *ctx)
{
    char url[2048], errbuf[CURL_ERROR_SIZE], hbuf[512];
    struct curl_slist *hdrs = NULL;
    stream_ctx s = {c, r, cb, ctx, 0};
    CURL *e = c->easy;
    CURLcode cc;
    int rc;

    if ((rc = make_url(c, url, sizeof(url), path)))
        return rc;
    curl_easy_reset(e);
    setup_easy(c, e, url, errbuf);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, idle_s > 0 ? idle_s : 30L);
    if (c->auth_header)
        hdrs = curl_slist_append(hdrs, c->auth_header);
    if (accept) {
        snprintf(hbuf, sizeof(hbuf), "Accept: %s", accept);
        hdrs = curl_slist_append(hdrs, hbuf);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, stream_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    qd_buf_clear(&r->body);
    r->content_length = 0;
    cc = curl_easy_perform(e);
    curl_slist_free_all(hdrs);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    if (cc == CURLE_WRITE_ERROR && s.stopped)
        return QD_OK;
    if (cc != CURLE_OK)
        return net_error(cc, errbuf, c->base);
    return QD_OK;
}

int http_status_error(const http_resp *r, const char *what)
{
    char detail[512] = "";
    int code;

    if (r->status >= 200 && r->status < 300)
        return QD_OK;
    if (r->body.len) {
        json_t *j = json_loadb((const char *)r->body.ptr, r->body.len, 0, NULL);
        json_t *errs = j ? json_object_get(j, "errors") : NULL;
        json_t *e0 = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
        const char *ec = json_string_value(json_object_get(e0, "code"));
        const char *em = json_string_value(json_object_get(e0, "message"));
        if (ec)
            snprintf(detail, sizeof(detail), ": %s%s%s", ec, em ? ": " : "", em ? em : "");
        json_decref(j);
    }
    switch (r->status) {
    case 401:
        return qd_error_set(QD_ERROR, QD_EC_NET,
                            "%s: 401 Unauthorized%s (set QUANT_TOKEN or 'token' in the config file to a valid token)",
                            what, detail);
    case 403:
        return qd_error_set(QD_ERROR, QD_EC_NET, "%s: 403 Forbidden%s (the token lacks the scope)", what, detail);
    case 404: code = QD_ENOTFOUND; break;
    case 409: code = QD_EEXISTS; break;
    case 400: code = QD_EINVAL; break;
    case 429: code = QD_EAGAIN; break;
    default: code = QD_ERROR; break;
    }
    return qd_error_set(code, QD_EC_NET, "%s: HTTP %ld%s", what, r->status, detail);
}

/* ------------------------------------------------------------------------------------ parallel ranges --- */

typedef struct range_job {
    http_client *c;
    CURL *e;
    struct curl_slist *hdrs;
    size_t idx;
    http_range *r;
    http_range_cb cb;
    void *ctx;
    long status;
    int failed; /* callback error or a bad response */
    int tries;  /* failed tries in a row without progress */
    int busy;   /* running a range */
    uint64_t asked;              /* the first byte this request asked for */
    int cr_seen, cr_checked;     /* a Content-Range came; it was checked against what was asked */
    unsigned long long cr_a, cr_b;
    char errbuf[CURL_ERROR_SIZE];
} range_job;

static size_t range_write(char *data, size_t size, size_t nmemb, void *ud)
{
    range_job *j = ud;
    size_t n = size * nmemb;
    long st = 0;
    curl_easy_getinfo(j->e, CURLINFO_RESPONSE_CODE, &st);
    if (st != 206) { /* an error body, or a 200 that ignored the Range: not ours to write */
        j->status = st;
        return n;
    }
    if (!j->cr_checked) { /* the bytes must be the ones asked for, or they land at the wrong offset */
        if (!j->cr_seen || j->cr_a != j->asked || j->cr_b + 1 != j->r->end) {
            j->failed = qd_error_set(QD_ECORRUPT, QD_EC_NET, "asked for bytes %llu-%llu, the server sent %s",
                                     (unsigned long long)j->asked, (unsigned long long)(j->r->end - 1),
                                     j->cr_seen ? "another range" : "no Content-Range");
            return 0;
        }
        j->cr_checked = 1;
    }
    if (j->r->start + j->r->done + n > j->r->end) {
        j->failed = qd_error_set(QD_ECORRUPT, QD_EC_NET, "the server sent more bytes than the range asked");
        return 0;
    }
    if (j->cb(j->ctx, j->idx, j->r->start + j->r->done, data, n)) {
        j->failed = qd_error_last()->code ? qd_error_last()->code : QD_ERROR;
        return 0;
    }
    j->r->done += n;
    j->c->received += n;
    j->tries = 0;
    return n;
}

/* Content-Range: bytes A-B/N of a 206 */
static size_t range_header(char *data, size_t size, size_t nitems, void *ud)
{
    range_job *j = ud;
    size_t n = size * nitems;
    char line[160];
    unsigned long long a, b;
    if (n >= sizeof(line))
        return n;
    memcpy(line, data, n);
    line[n] = 0;
    if (!strncmp(line, "HTTP/", 5))
        j->cr_seen = 0; /* a new response */
    else if (!strncasecmp(line, "Content-Range:", 14) && sscanf(line + 14, " bytes %llu-%llu/", &a, &b) == 2 &&
             a <= b) {
        j->cr_a = a;
        j->cr_b = b;
        j->cr_seen = 1;
    }
    return n;
}

static int range_start(range_job *j, const char *url, const char *if_range)
{
    char h[256];
    CURL *e = j->e;
    curl_easy_reset(e);
    setup_easy(j->c, e, url, j->errbuf);
    curl_slist_free_all(j->hdrs);
    j->hdrs = NULL;
    if (j->c->auth_header)
        j->hdrs = curl_slist_append(j->hdrs, j->c->auth_header);
    snprintf(h, sizeof(h), "Range: bytes=%llu-%llu", (unsigned long long)(j->r->start + j->r->done),
             (unsigned long long)(j->r->end - 1));
    j->hdrs = curl_slist_append(j->hdrs, h);
    if (if_range) {
        snprintf(h, sizeof(h), "If-Range: \"%s\"", if_range);
        j->hdrs = curl_slist_append(j->hdrs, h);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, range_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
    j->asked = j->r->start + j->r->done;
    j->cr_seen = j->cr_checked = 0;
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, range_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024L);
    j->status = 0;
    if (curl_multi_add_handle(j->c->multi, e) != CURLM_OK)
        return qd_error_set(QD_ERROR, QD_EC_NET, "curl_multi_add_handle failed");
    return QD_OK;
}

void http_wake(http_client *c) { curl_multi_wakeup(c->multi); }

/* Start job j on range i (from where the range stands). */
static int range_assign(range_job *j, http_range *ranges, size_t i, const char *url, const char *if_range)
{
    j->idx = i;
    j->r = &ranges[i];
    j->tries = 0;
    j->busy = 1;
    return range_start(j, url, if_range);
}

int http_get_ranges(http_client *c, const char *path, const char *if_range, http_range *ranges, size_t n,
                    size_t max_active, http_ready_cb ready, http_range_cb cb, http_tick_cb tick, void *ctx)
{
    char url[2048];
    range_job *jobs = NULL;
    size_t next = 0; /* the first range not yet handed out */
    int rc, running = 0, active = 0;

    if ((rc = make_url(c, url, sizeof(url), path)))
        return rc;
    if (!max_active)
        max_active = 1;
    jobs = qd_calloc(max_active, sizeof(*jobs));
    if (!jobs)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    for (size_t k = 0; k < max_active; k++) {
        jobs[k] = (range_job){.c = c, .cb = cb, .ctx = ctx};
        if (!(jobs[k].e = curl_easy_init())) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
            goto cleanup;
        }
    }
    for (;;) {
        CURLMsg *m;
        int left;
        /* hand out the next ranges, in order, while a job is free and the caller is ready for them */
        while (next < n && (size_t)active < max_active) {
            range_job *j = NULL;
            int go = ready ? ready(ctx, next) : 1;
            if (go < 0) {
                rc = qd_error_last()->code ? qd_error_last()->code : QD_ERROR;
                goto cleanup;
            }
            if (!go)
                break;
            if (ranges[next].start + ranges[next].done >= ranges[next].end) {
                next++; /* nothing left to fetch of it */
                continue;
            }
            for (size_t k = 0; k < max_active && !j; k++)
                if (!jobs[k].busy)
                    j = &jobs[k];
            if ((rc = range_assign(j, ranges, next++, url, if_range)))
                goto cleanup;
            active++;
        }
        if (!active && next >= n)
            break;
        if (curl_multi_perform(c->multi, &running) != CURLM_OK) {
            rc = qd_error_set(QD_ERROR, QD_EC_NET, "curl_multi_perform failed");
            goto cleanup;
        }
        int freed = 0;
        while ((m = curl_multi_info_read(c->multi, &left))) {
            range_job *j = NULL;
            long st = 0;
            if (m->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &st);
            curl_multi_remove_handle(c->multi, m->easy_handle);
            active--;
            freed = 1;
            j->busy = 0;
            if (j->failed) {
                rc = j->failed;
                goto cleanup;
            }
            if (m->data.result == CURLE_OK && st != 206) {
                if (st == 200)
                    rc = qd_error_set(QD_ECORRUPT, QD_EC_NET, "the server ignored the Range request (200)");
                else {
                    http_resp fake;
                    http_resp_init(&fake, 0);
                    fake.status = st;
                    rc = http_status_error(&fake, "blob GET");
                    http_resp_dispose(&fake);
                }
                goto cleanup;
            }
            if (j->r->start + j->r->done >= j->r->end)
                continue; /* complete */
            /* dropped or short: try again from where it stopped */
            if (++j->tries > 3) {
                rc = m->data.result != CURLE_OK ? net_error(m->data.result, j->errbuf, c->base)
                                                : qd_error_set(QD_ETRUNCATED, QD_EC_NET, "the blob ended early");
                if (rc == QD_ERROR)
                    rc = qd_error_set(QD_EIO, QD_EC_NET, "%s", qd_error_last()->message);
                goto cleanup;
            }
            j->busy = 1;
            if ((rc = range_start(j, url, if_range)))
                goto cleanup;
            active++;
        }
        if (tick && tick(ctx)) {
            rc = qd_error_last()->code ? qd_error_last()->code : QD_ERROR;
            goto cleanup;
        }
        if (freed)
            continue; /* a job is free: start the next range before waiting */
        /* wait for the network, or for http_wake() from a thread that freed room for the next range */
        if (curl_multi_poll(c->multi, NULL, 0, 200, NULL) != CURLM_OK) {
            rc = qd_error_set(QD_ERROR, QD_EC_NET, "curl_multi_poll failed");
            goto cleanup;
        }
    }
    rc = tick && tick(ctx) ? (qd_error_last()->code ? qd_error_last()->code : QD_ERROR) : QD_OK;
cleanup:
    for (size_t k = 0; jobs && k < max_active; k++) {
        if (jobs[k].e) {
            curl_multi_remove_handle(c->multi, jobs[k].e);
            curl_easy_cleanup(jobs[k].e);
        }
        curl_slist_free_all(jobs[k].hdrs);
    }
    qd_free(jobs);
    return rc;
}
