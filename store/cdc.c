/*
 * cdc.c - content-defined chunking (FastCDC, Xia et al., USENIX ATC 2016) with normalized chunking.
 *
 * Why these parameters: a chunk is the unit of dedup, of compression and of an LMDB value. About 1 MiB on
 * average keeps the chunk list of a 100 GB checkpoint near 100k entries (4 MB of records) while an insertion
 * or edit near the start of a file changes only the one or two chunks around it: boundaries depend only on the
 * 64 bytes before them, so they re-synchronise right after the edit. The minimum (256 KiB) skips hashing a quarter
 * of each chunk and bounds per-chunk overhead; the maximum (4 MiB) bounds the memory of a reader's decompression
 * buffer and of an LMDB value. Normalization (a harder mask before the average size, an easier one after) narrows
 * the size distribution around 1 MiB.
 *
 * The gear table is generated from a fixed seed: it is part of the on-disk contract only in that changing it
 * would stop new chunks from deduplicating against old ones.
 */
#include <pthread.h>
#include <stdint.h>

#include "store_int.h"

/* 22 one-bits in the top of the word before the average size, 18 after (normalization level 2). */
#define MASK_S (((1ull << 22) - 1) << 42)
#define MASK_L (((1ull << 18) - 1) << 46)

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_init(void)
{
    uint64_t x = 0x71756e7464636463ull; /* "quntdcdc" */
    for (int i = 0; i < 256; i++) {
        uint64_t z;
        x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
        z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        gear[i] = z ^ (z >> 31);
    }
}

size_t qd_store__cdc_cut(const uint8_t *p, size_t n, int final)
{
    size_t i, limit, normal;
    uint64_t fp = 0;

    pthread_once(&gear_once, gear_init);
    if (n <= QD_CHUNK_MIN)
        return n; /* only reached with final set: the tail is one chunk */
    (void)final;
    limit = n < QD_CHUNK_MAX ? n : QD_CHUNK_MAX;
    normal = limit < QD_CHUNK_AVG ? limit : QD_CHUNK_AVG;
    for (i = QD_CHUNK_MIN; i < normal; i++) {
        fp = (fp << 1) + gear[p[i]];
        if (!(fp & MASK_S))
            return i + 1;
    }
    for (; i < limit; i++) {
        fp = (fp << 1) + gear[p[i]];
        if (!(fp & MASK_L))
            return i + 1;
    }
    return limit;
}
