/*
 * mcache.c - the manifest bytes cache of the serving path (loop thread only).
 *
 * A manifest GET resolves the tag or digest through the registry (one short read transaction) and then needs the
 * manifest's raw bytes. Reading those from the store opens a blob reader, which for a compressed chunk (JSON
 * compresses, so every manifest is one) sets up a zstd context and a chunk-sized decode buffer: several MiB of
 * fresh pages per request, which capped manifest GETs at a few thousand per second. Manifest bytes are named by
 * their digest and never change, so the daemon keeps the bytes of recently served manifests here: a direct-mapped
 * table of MCACHE_SLOTS slots indexed by the digest's first bytes (a colliding manifest replaces the older one),
 * manifests up to MCACHE_MAX_ONE bytes each, so the cache holds at most MCACHE_SLOTS * MCACHE_MAX_ONE bytes.
 *
 * Correctness does not depend on the cache: the registry lookup runs on every request (a deleted manifest or a
 * moved tag is seen at once); only the bytes for a digest the registry returned come from here.
 */
#include <string.h>

#include "daemon.h"

#define MCACHE_SLOTS 1024u
#define MCACHE_MAX_ONE (64u << 10)

typedef struct mslot {
    qd_digest d;
    uint8_t *data; /* NULL: empty */
    size_t len;
} mslot;

struct qd_mcache {
    mslot s[MCACHE_SLOTS];
    uint64_t hits, misses;
};

int qd_mcache_new(qd_mcache **out)
{
    if (!(*out = qd_calloc(1, sizeof(**out))))
        return QD_ENOMEM;
    return QD_OK;
}

void qd_mcache_free(qd_mcache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < MCACHE_SLOTS; i++)
        qd_free(c->s[i].data);
    qd_free(c);
}

static mslot *slot_of(qd_mcache *c, const qd_digest *d)
{
    uint32_t h;
    memcpy(&h, d->bytes, sizeof(h));
    return &c->s[h % MCACHE_SLOTS];
}

bool qd_mcache_get(qd_mcache *c, const qd_digest *d, const void **data, size_t *len)
{
    mslot *s;
    if (!c)
        return false;
    s = slot_of(c, d);
    if (s->data && !memcmp(s->d.bytes, d->bytes, sizeof(d->bytes))) {
        *data = s->data;
        *len = s->len;
        c->hits++;
        return true;
    }
    c->misses++;
    return false;
}

void qd_mcache_put(qd_mcache *c, const qd_digest *d, const void *data, size_t len)
{
    mslot *s;
    uint8_t *copy;
    if (!c || len > MCACHE_MAX_ONE || !(copy = qd_malloc(len ? len : 1)))
        return;
    memcpy(copy, data, len);
    s = slot_of(c, d);
    qd_free(s->data);
    s->d = *d;
    s->data = copy;
    s->len = len;
}
