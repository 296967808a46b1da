/*
 * metrics.c - counters for GET /metrics in the Prometheus text format (version 0.0.4).
 *
 * Counters are touched only on the loop thread, so no locking. The store totals walk every blob and chunk
 * record, so a scrape gathers them on a worker (qd_metrics_store_gather) and renders on the loop afterwards. Requests are counted by (route, status) in a small table;
 * routes are a fixed set of labels chosen by the router, so the table stays small.
 */
#include <inttypes.h>
#include <string.h>

#include "daemon.h"

#define MAX_SERIES 256

typedef struct series {
    const char *route; /* static string */
    int status;
    uint64_t count;
    uint64_t dur_ns;
} series;

struct qd_metrics {
    series s[MAX_SERIES];
    size_t n;
    uint64_t bytes_served;
    uint64_t dropped; /* requests that did not fit the table */
    uint64_t started_ns;
};

int qd_metrics_new(qd_metrics **out)
{
    if (!(*out = qd_calloc(1, sizeof(**out))))
        return QD_ENOMEM;
    (*out)->started_ns = qd_now_ns();
    return QD_OK;
}

void qd_metrics_free(qd_metrics *m) { qd_free(m); }

void qd_metrics_request(qd_metrics *m, const char *route, int status, uint64_t bytes_out, uint64_t dur_ns)
{
    size_t i;
    m->bytes_served += bytes_out;
    for (i = 0; i < m->n; i++)
        if (m->s[i].status == status && !strcmp(m->s[i].route, route))
            break;
    if (i == m->n) {
        if (m->n == MAX_SERIES) {
            m->dropped++;
            return;
        }
        m->s[m->n++] = (series){route, status, 0, 0};
    }
    m->s[i].count++;
    m->s[i].dur_ns += dur_ns;
}

void qd_metrics_render(qd_metrics *m, qd_server *srv, const qd_metrics_store *ms, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP quantd_http_requests_total HTTP requests by route and status (499: client "
                             "went away).\n# TYPE quantd_http_requests_total counter\n");
    for (size_t i = 0; i < m->n; i++)
        evbuffer_add_printf(out, "quantd_http_requests_total{route=\"%s\",code=\"%d\"} %" PRIu64 "\n",
                            m->s[i].route, m->s[i].status, m->s[i].count);
    evbuffer_add_printf(out, "# HELP quantd_http_request_seconds_total Time spent serving requests.\n"
                             "# TYPE quantd_http_request_seconds_total counter\n");
    for (size_t i = 0; i < m->n; i++)
        evbuffer_add_printf(out, "quantd_http_request_seconds_total{route=\"%s\",code=\"%d\"} %.6f\n",
                            m->s[i].route, m->s[i].status, (double)m->s[i].dur_ns / 1e9);
    evbuffer_add_printf(out, "# HELP quantd_http_response_bytes_total Response body bytes sent.\n"
                             "# TYPE quantd_http_response_bytes_total counter\nquantd_http_response_bytes_total %"
                             PRIu64 "\n", m->bytes_served);
    evbuffer_add_printf(out, "# HELP quantd_http_requests_in_flight Requests being served.\n"
                             "# TYPE quantd_http_requests_in_flight gauge\nquantd_http_requests_in_flight %zu\n",
                        srv->in_flight);
    evbuffer_add_printf(out, "# HELP quantd_worker_queue_depth Jobs submitted to the worker pool, not finished.\n"
                             "# TYPE quantd_worker_queue_depth gauge\nquantd_worker_queue_depth %zu\n",
                        qd_pool_pending(srv->pool));
    if (ms->store_ok) {
        const qd_store_stats *sp = &ms->store;
        evbuffer_add_printf(out,
                            "# HELP quantd_store_blobs Blobs in the store.\n# TYPE quantd_store_blobs gauge\n"
                            "quantd_store_blobs %" PRIu64 "\n"
                            "# HELP quantd_store_logical_bytes Sum of blob sizes.\n"
                            "# TYPE quantd_store_logical_bytes gauge\nquantd_store_logical_bytes %" PRIu64 "\n"
                            "# HELP quantd_store_chunk_bytes Stored bytes of all chunks.\n"
                            "# TYPE quantd_store_chunk_bytes gauge\nquantd_store_chunk_bytes %" PRIu64 "\n"
                            "# HELP quantd_store_file_bytes Size of the store's data file.\n"
                            "# TYPE quantd_store_file_bytes gauge\nquantd_store_file_bytes %" PRIu64 "\n",
                            sp->blobs, sp->logical_bytes, sp->chunk_bytes, sp->file_bytes);
    }
    if (ms->registry_ok)
        evbuffer_add_printf(out,
                            "# HELP quantd_registry_manifests Manifests stored.\n"
                            "# TYPE quantd_registry_manifests gauge\nquantd_registry_manifests %" PRIu64 "\n"
                            "# HELP quantd_registry_tags Tags over all repositories.\n"
                            "# TYPE quantd_registry_tags gauge\nquantd_registry_tags %" PRIu64 "\n",
                            ms->registry.manifests, ms->registry.tags);
    qd_jobs_metrics(srv, out); /* jobs.c */
    evbuffer_add_printf(out, "# HELP quantd_uptime_seconds Seconds since start.\n# TYPE quantd_uptime_seconds gauge\n"
                             "quantd_uptime_seconds %.3f\n", (double)(qd_now_ns() - m->started_ns) / 1e9);
}

void qd_metrics_store_gather(qd_metrics_store *ms, qd_store *s)
{
    ms->store_ok = qd_store_stats_get(s, &ms->store) == QD_OK;
    ms->registry_ok = qd_registry_stats_get(&ms->registry, s) == QD_OK;
}
