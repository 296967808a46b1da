/*
 * iq_tables.h - the codebooks of the i-quants and the tables derived from them once per process.
 *
 * A grid is a set of points (8 coordinates of 2-bit levels, or 4 of 3-bit levels). The quantizers round a group of
 * values to levels, look the level pattern up in `map` (its grid index, or -(offset + 1) into `neighbours` when the
 * pattern is not a grid point: neighbours[offset] = count, then the indices of the grid points at the nwant
 * smallest distinct squared distances, nearest first, ties by index). Dequantizers read `deq`.
 */
#ifndef QD_KERNELS_IQ_TABLES_H
#define QD_KERNELS_IQ_TABLES_H

#include <stdint.h>

typedef enum qd_iq_grid_id {
    QD_IQ_GRID_2XXS = 0, /* 256 points, IQ2_XXS */
    QD_IQ_GRID_2XS,      /* 512 points, IQ2_XS */
    QD_IQ_GRID_2S,       /* 1024 points, IQ2_S */
    QD_IQ_GRID_1S,       /* 2048 points, IQ1_S and IQ1_M */
    QD_IQ_GRID_3XXS,     /* 256 points, IQ3_XXS */
    QD_IQ_GRID_3S,       /* 512 points, IQ3_S */
    QD_IQ_GRID_COUNT
} qd_iq_grid_id;

typedef struct qd_iq_grid {
    int n;                  /* grid points */
    int dim;                /* coordinates per point: 8 or 4 */
    const int8_t *points;   /* n * dim levels as 2l + 1 (what the searches measure distances in) */
    const int8_t *deq;      /* n * dim dequantization values */
    const int32_t *map;     /* level pattern -> grid index, or -(offset + 1) into neighbours */
    const uint16_t *neighbours;
} qd_iq_grid;

extern const uint16_t qd_iq2xxs_kgrid[256];
extern const uint16_t qd_iq2xs_kgrid[512];
extern const uint16_t qd_iq2s_kgrid[1024];
extern const uint16_t qd_iq1s_kgrid[2048];
extern const uint16_t qd_iq3xxs_kgrid[256];
extern const uint16_t qd_iq3s_kgrid[512];

/** The grid with its derived tables, building them on first use (thread-safe). @return NULL when out of memory. */
const qd_iq_grid *qd_iq_grid_get(qd_iq_grid_id id);

/** Signs of IQ2/IQ3 groups: 7 stored bits, the eighth makes the count of minus signs even. */
static inline uint8_t qd_iq_signs(unsigned i)
{
    return (uint8_t)(i | ((unsigned)__builtin_parity(i) << 7));
}

#endif
