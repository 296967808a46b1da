/*
 * ref_util.h - the scale searches the reference quantizers share (ref_util.c), and small inline helpers.
 *
 * These decide the bytes, so their float operations follow ggml's reference order exactly: float (not double)
 * accumulation, in index order, every product written in the order ggml evaluates it. The folder is compiled
 * with -ffp-contract=off (quantd/module.mk) so no multiply-add is fused.
 */
#ifndef QD_KERNELS_REF_UTIL_H
#define QD_KERNELS_REF_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "formats.h"

/* A sub-block whose largest magnitude is below this quantizes to all zeros. */
#define QD_GROUP_MAX_EPS 1e-15f

#define QD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QD_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round to nearest, ties to even, through the float mantissa (valid for |f| <= 4194303). */
QD_KFN static inline int qd_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
#ifdef __CUDA_ARCH__
    /* A NaN here comes from an invalid operation (0 * inf in a degenerate block). CPUs give that NaN the quiet bit
     * alone (x86 0xffc00000, Arm 0x7fc00000), which reads as 0 below: the reference's level. The GPU's NaN is
     * 0x7fffffff (4194303 below), so its bits are not used. */
    if (v != v)
        return 0;
#endif
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* Float to int8/uint8 by truncation, defined for every float: what x86's cvttss2si does (the low byte of the
 * 32-bit result, and 0 for NaN and out-of-range values, whose result is INT_MIN). ggml's reference relies on that
 * conversion; C leaves it undefined outside the target range, so the legacy quantizers use these instead. */
QD_KFN static inline int8_t qd_trunc_i8(float v)
{
    if (!(v > -2147483648.0f && v < 2147483648.0f))
        return 0;
    return (int8_t)(uint8_t)((uint32_t)(int32_t)v & 0xffu);
}

QD_KFN static inline uint8_t qd_trunc_u8(float v) { return (uint8_t)qd_trunc_i8(v); }

/* Index of the level in the sorted table vals[n] nearest to x; a value exactly between two levels takes the
 * upper one. */
QD_KFN static inline int qd_best_index_int8(int n, const int8_t *vals, float x)
{
    if (x <= vals[0])
        return 0;
    if (x >= vals[n - 1])
        return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < vals[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - vals[hi - 1] < vals[hi] - x ? hi - 1 : hi;
}

/* Symmetric search: L[i] in 0..2*nmax-1 (offset nmax), weights qw or x^2; returns the (signed) scale. */
QD_KFN float qd_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* Symmetric 3-bit search with coordinate descent (Q3_K without imatrix); L offset by nmax. */
QD_KFN float qd_make_q3_quants(int n, int nmax, const float *x, int8_t *L);

/* Asymmetric search with a min (Q4_K/Q5_K/Q2_K reference): weights required; *the_min gets -min (>= 0). */
QD_KFN float qd_make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                          float rmin, float rdelta, int nstep, bool use_mad);

/* As qkx2 with weights defaulting to x^2 when w is NULL (the importance-weighted paths). */
QD_KFN float qd_make_qkx3_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                          float rmin, float rdelta, int nstep);

/* Non-negative values to nmax levels with weights qw: returns the super-scale, levels in L. */
QD_KFN float qd_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw);

#endif
