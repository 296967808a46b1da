/*
 * iq_tables.c - derive the i-quant lookup tables from the codebooks (iq_grids.c), once per process.
 *
 * Built lazily under pthread_once and never freed (they are constants of the formats). The kernels only read
 * them; qd_quantize_rows() makes sure a kernel's grid exists before calling it.
 */
#include <pthread.h>
#include <string.h>

#include "iq_tables.h"
#include "qd/alloc.h"

typedef struct grid_spec {
    const uint16_t *kgrid;
    int n, dim, bits, nwant;
    int8_t levels[8]; /* dequantization value of each level */
} grid_spec;

static const grid_spec specs[QD_IQ_GRID_COUNT] = {
    [QD_IQ_GRID_2XXS] = {qd_iq2xxs_kgrid, 256, 8, 2, 2, {8, 25, 43}},
    [QD_IQ_GRID_2XS] = {qd_iq2xs_kgrid, 512, 8, 2, 2, {8, 25, 43}},
    [QD_IQ_GRID_2S] = {qd_iq2s_kgrid, 1024, 8, 2, 1, {8, 25, 43}},
    [QD_IQ_GRID_1S] = {qd_iq1s_kgrid, 2048, 8, 2, 3, {-1, 0, 1}},
    [QD_IQ_GRID_3XXS] = {qd_iq3xxs_kgrid, 256, 4, 3, 2, {4, 12, 20, 28, 36, 44, 52, 62}},
    [QD_IQ_GRID_3S] = {qd_iq3s_kgrid, 512, 4, 3, 3, {1, 3, 5, 7, 9, 11, 13, 15}},
};

static qd_iq_grid grids[QD_IQ_GRID_COUNT];
static int grid_ok[QD_IQ_GRID_COUNT];
static pthread_once_t grid_once[QD_IQ_GRID_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                                     PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

/* The quantizers clamp every level to 0..2 (2-bit grids) or 0..7 (3-bit grids): only those patterns get
 * neighbour lists (2-bit patterns with a level 3 are never looked up). */
static int pattern_valid(const grid_spec *s, int pattern)
{
    if (s->bits == 3)
        return 1;
    for (int k = 0; k < s->dim; k++)
        if (((pattern >> (2 * k)) & 3) == 3)
            return 0;
    return 1;
}

/* Write the neighbour list of a pattern (count, then indices) into out (or only count when out is NULL). */
static int neighbours_of(const grid_spec *s, const int8_t *points, int pattern, int *d2buf, uint16_t *out)
{
    int8_t pos[8];
    const int mask = (1 << s->bits) - 1;
    for (int k = 0; k < s->dim; k++)
        pos[k] = (int8_t)(2 * ((pattern >> (s->bits * k)) & mask) + 1);
    for (int j = 0; j < s->n; j++) {
        int d2 = 0;
        for (int k = 0; k < s->dim; k++) {
            int diff = points[j * s->dim + k] - pos[k];
            d2 += diff * diff;
        }
        d2buf[j] = d2;
    }
    /* the nwant smallest distinct distances, then every point at one of them: nearest first, ties by index */
    int count = 0, prev = -1;
    for (int want = 0; want < s->nwant; want++) {
        int next = -1;
        for (int j = 0; j < s->n; j++)
            if (d2buf[j] > prev && (next < 0 || d2buf[j] < next))
                next = d2buf[j];
        if (next < 0)
            break;
        for (int j = 0; j < s->n; j++) {
            if (d2buf[j] == next) {
                if (out)
                    out[1 + count] = (uint16_t)j;
                count++;
            }
        }
        prev = next;
    }
    if (out)
        out[0] = (uint16_t)count;
    return count;
}

static void build(qd_iq_grid_id id)
{
    const grid_spec *s = &specs[id];
    const int map_size = 1 << (s->bits * s->dim);
    const int mask = (1 << s->bits) - 1;
    int8_t *points = qd_malloc((size_t)s->n * (size_t)s->dim);
    int8_t *deq = qd_malloc((size_t)s->n * (size_t)s->dim);
    int32_t *map = qd_mallocarray((size_t)map_size, sizeof(int32_t));
    int *d2buf = qd_mallocarray((size_t)s->n, sizeof(int));
    uint16_t *nb = NULL;
    if (!points || !deq || !map || !d2buf)
        goto fail;
    for (int j = 0; j < s->n; j++) {
        for (int k = 0; k < s->dim; k++) {
            int l = (s->kgrid[j] >> (s->bits * k)) & mask;
            points[j * s->dim + k] = (int8_t)(2 * l + 1);
            deq[j * s->dim + k] = s->levels[l];
        }
    }
    for (int p = 0; p < map_size; p++)
        map[p] = -1;
    for (int j = 0; j < s->n; j++)
        map[s->kgrid[j]] = j;
    size_t total = 0;
    for (int p = 0; p < map_size; p++)
        if (map[p] < 0 && pattern_valid(s, p))
            total += 1 + (size_t)neighbours_of(s, points, p, d2buf, NULL);
    if (!(nb = qd_mallocarray(total ? total : 1, sizeof(uint16_t))))
        goto fail;
    size_t off = 0;
    for (int p = 0; p < map_size; p++) {
        if (map[p] >= 0)
            continue;
        if (!pattern_valid(s, p)) {
            map[p] = INT32_MIN; /* never looked up */
            continue;
        }
        map[p] = -(int32_t)off - 1;
        off += 1 + (size_t)neighbours_of(s, points, p, d2buf, nb + off);
    }
    qd_free(d2buf);
    grids[id] = (qd_iq_grid){s->n, s->dim, points, deq, map, nb};
    grid_ok[id] = 1;
    return;
fail:
    qd_free(points);
    qd_free(deq);
    qd_free(map);
    qd_free(d2buf);
    qd_free(nb);
}

#define ONCE_FN(ID)                                                                                                \
    static void build_##ID(void) { build(ID); }
ONCE_FN(QD_IQ_GRID_2XXS)
ONCE_FN(QD_IQ_GRID_2XS)
ONCE_FN(QD_IQ_GRID_2S)
ONCE_FN(QD_IQ_GRID_1S)
ONCE_FN(QD_IQ_GRID_3XXS)
ONCE_FN(QD_IQ_GRID_3S)

static void (*const builders[QD_IQ_GRID_COUNT])(void) = {
    build_QD_IQ_GRID_2XXS, build_QD_IQ_GRID_2XS,   build_QD_IQ_GRID_2S,
    build_QD_IQ_GRID_1S,   build_QD_IQ_GRID_3XXS, build_QD_IQ_GRID_3S,
};

const qd_iq_grid *qd_iq_grid_get(qd_iq_grid_id id)
{
    if ((int)id < 0 || id >= QD_IQ_GRID_COUNT)
        return NULL;
    pthread_once(&grid_once[id], builders[id]);
    return grid_ok[id] ? &grids[id] : NULL;
}
