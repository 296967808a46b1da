/*
 * auth.c - tokens, scopes and the per-client rate limit.
 *
 * A client presents a token as `Authorization: Bearer qdt_...`, or as the password of HTTP Basic auth (any user
 * name), which is what docker/skopeo send after a `Basic` challenge. Tokens are looked up by their SHA-256 in the
 * store (qd_registry_token_lookup); the token itself is never stored or logged, only its id.
 *
 * Scopes: "pull:PATTERN,push:PATTERN,quantize:PATTERN,admin:PATTERN", PATTERN a shell glob over repository
 * names in which a star also matches a slash (org/STAR, STAR). push implies pull; admin implies everything (store/registry.c checks the grammar and matches).
 *
 * Rate limit: a token bucket per token id (per client address for anonymous requests): rate-limit requests per
 * second, bursts up to rate-burst. Over the limit: 429 TOOMANYREQUESTS with Retry-After.
 */
#include <string.h>

#include <openssl/evp.h>

#include "daemon.h"

#define BUCKETS 4096

typedef struct bucket {
    char key[72];
    double tokens;
    uint64_t last_ns;
} bucket;

struct qd_auth {
    qd_server *srv;
    bucket b[BUCKETS];
    size_t used;
};

int qd_auth_new(qd_auth **out, qd_server *srv)
{
    if (!(*out = qd_calloc(1, sizeof(**out))))
        return QD_ENOMEM;
    (*out)->srv = srv;
    return QD_OK;
}

void qd_auth_free(qd_auth *a) { qd_free(a); }

/* ---- rate limit ---------------------------------------------------------------------------------------------- */

static bool rate_ok(qd_auth *a, const char *key, double *retry_s)
{
    qd_config *c = a->srv->cfg;
    uint64_t now = qd_now_ns(), h = 1469598103934665603ull;
    size_t i;
    bucket *b = NULL;
    if (c->rate_limit <= 0)
        return true;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (size_t probe = 0; probe < BUCKETS; probe++) {
        i = (size_t)((h + probe) % BUCKETS);
        if (!a->b[i].key[0] || !strcmp(a->b[i].key, key)) {
            b = &a->b[i];
            break;
        }
    }
    if (!b || (!b->key[0] && a->used > BUCKETS * 3 / 4)) {
        /* full: forget everyone (a rare reset costs at most one burst per client) */
        memset(a->b, 0, sizeof(a->b));
        a->used = 0;
        b = &a->b[h % BUCKETS];
    }
    if (!b->key[0]) {
        snprintf(b->key, sizeof(b->key), "%s", key);
        b->tokens = (double)c->rate_burst;
        b->last_ns = now;
        a->used++;
    }
    b->tokens += (double)(now - b->last_ns) / 1e9 * (double)c->rate_limit;
    if (b->tokens > (double)c->rate_burst)
        b->tokens = (double)c->rate_burst;
    b->last_ns = now;
    if (b->tokens < 1.0) {
        *retry_s = (1.0 - b->tokens) / (double)c->rate_limit;
        return false;
    }
    b->tokens -= 1.0;
    return true;
}

/* ---- the check ------------------------------------------------------------------------------------------------ */

/* The token presented, copied into out (empty when none). false when the header is malformed. */
static bool presented_token(qd_req *r, char *out, size_t cap)
{
    const char *h = qd_req_in_header(r, "Authorization");
    out[0] = 0;
    if (!h)
        return true;
    if (!strncasecmp(h, "Bearer ", 7)) {
        snprintf(out, cap, "%s", h + 7);
        return true;
    }
    if (!strncasecmp(h, "Basic ", 6)) {
        unsigned char dec[256];
        const char *b64 = h + 6, *colon;
        size_t n = strlen(b64);
        int len;
        if (n == 0 || n > 4 * ((sizeof(dec) - 1) / 3) || n % 4)
            return false;
        len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
        if (len < 0)
            return false;
        while (len > 0 && b64[n - 1] == '=' && dec[len - 1] == 0) { /* padding decodes to NULs */
            len--;
            n--;
        }
        dec[len] = 0;
        if (!(colon = memchr(dec, ':', (size_t)len)))
            return false;
        snprintf(out, cap, "%s", colon + 1);
        return true;
    }
    return false;
}

bool qd_auth_check(qd_req *r, const char *repo, unsigned need)
{
    qd_server *srv = r->srv;
    char tok[QD_TOKEN_LEN + 8], rkey[64];
    qd_token_info info;
    double retry;
    int rc;

    if (!presented_token(r, tok, sizeof(tok))) {
        qd_reply_oci(r, "UNAUTHORIZED", "malformed Authorization header", NULL);
        return false;
    }
    if (tok[0]) {
        if ((rc = qd_registry_token_lookup(&info, srv->store, tok)) < 0) {
            qd_reply_oci(r, "UNAUTHORIZED", "unknown or revoked token", NULL);
            return false;
        }
        snprintf(r->token_id, sizeof(r->token_id), "%s", info.id);
        snprintf(rkey, sizeof(rkey), "t:%s", info.id);
    } else {
        char *addr = NULL;
        ev_uint16_t port;
        if (r->evcon)
            evhttp_connection_get_peer(r->evcon, &addr, &port);
        snprintf(rkey, sizeof(rkey), "a:%s", addr ? addr : "?");
    }
    if (!rate_ok(srv->auth, rkey, &retry)) {
        char ra[32];
        snprintf(ra, sizeof(ra), "%d", (int)retry + 1);
        qd_req_header(r, "Retry-After", ra);
        qd_reply_oci(r, "TOOMANYREQUESTS", "rate limit exceeded", NULL);
        return false;
    }
    if (!srv->cfg->auth)
        return true;
    if (!tok[0]) {
        if (need == QD_SCOPE_PULL && srv->cfg->anonymous_pull)
            return true;
        qd_reply_oci(r, "UNAUTHORIZED", "authentication required", NULL);
        return false;
    }
    if (!qd_token_scopes_allow(info.scopes, repo, need)) {
        char detail[512];
        snprintf(detail, sizeof(detail), "{\"repository\":\"%s\",\"need\":\"%s\"}", repo ? repo : "",
                 need & QD_SCOPE_ADMIN ? "admin" : need & QD_SCOPE_PUSH ? "push" : "pull");
        qd_reply_oci(r, "DENIED", "the token's scopes do not allow this", detail);
        return false;
    }
    return true;
}

bool qd_auth_allows(qd_req *r, const char *repo, unsigned need)
{
    char tok[QD_TOKEN_LEN + 8];
    qd_token_info info;
    if (!r->srv->cfg->auth)
        return true;
    if (!presented_token(r, tok, sizeof(tok)))
        return false;
    if (!tok[0])
        return need == QD_SCOPE_PULL && r->srv->cfg->anonymous_pull;
    return qd_registry_token_lookup(&info, r->srv->store, tok) == QD_OK && qd_token_scopes_allow(info.scopes, repo, need);
}

bool qd_auth_scopes(qd_req *r, char *scopes, size_t cap, bool *all)
{
    char tok[QD_TOKEN_LEN + 8];
    qd_token_info info;
    scopes[0] = 0;
    *all = !r->srv->cfg->auth;
    if (*all)
        return true;
    if (!presented_token(r, tok, sizeof(tok)))
        return false;
    if (!tok[0]) {
        *all = r->srv->cfg->anonymous_pull; /* anonymous: pull everything, or nothing */
        return true;
    }
    if (qd_registry_token_lookup(&info, r->srv->store, tok) < 0)
        return false;
    snprintf(scopes, cap, "%s", info.scopes);
    return true;
}
