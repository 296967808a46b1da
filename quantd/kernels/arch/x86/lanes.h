/*
 * lanes.h - the K-quant, IQ4 and importance-weighted scale searches run across blocks: one block per SIMD lane.
 *
 * Included by avx2.c (QD_LANES 8) and avx512.c (QD_LANES 16), each compiled with its own -m flags; everything
 * here is static, so no SIMD code reaches generic objects. The including file defines QD_LANES, LQ_SQRT(v)
 * (a correctly rounded lane-wise square root), LQ_MINF/LQ_MAXF(a, b) (lane-wise minimum and maximum of floats;
 * only ever given non-NaN values where the result is kept), LQ_RINT(v) (lane-wise round to nearest even),
 * LQ_ANY(mask) (nonzero when any lane of an int mask is set) and LQ_LOOKUP16(tab, idx); and, after including this
 * header, the two functions declared below it from its own intrinsics: lq_arch_transpose (LN x LN, in registers)
 * and lq_arch_store_low_bytes.
 *
 * Every lane runs the reference's exact sequence of float operations (ref_util.c, ref_kquants.c, ref_other.c,
 * ref_legacy.c): the same operands in the same order, IEEE single precision add/sub/mul/div/sqrt (which are
 * lane-wise identical to the scalar instructions), no multiply-add (this folder is built with -ffp-contract=off),
 * the same nearest-int bit trick and the same integer truncations. Where the reference branches per block, the
 * lanes compute both sides and select; where it stops early (the coordinate-descent passes), a lane that has
 * stopped changing would not change on a further pass either, so running the remaining lanes on is harmless.
 * The bytes are therefore those of the reference, which tests/unit/test_kernels.c checks with memcmp.
 */
#ifndef QD_KERNELS_ARCH_X86_LANES_H
#define QD_KERNELS_ARCH_X86_LANES_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../../formats.h"
#include "../../ref_util.h"

#ifndef QD_LANES
#error "define QD_LANES before including lanes.h"
#endif

#define LN QD_LANES
#define QK QD_QK_K

typedef float lq_vf __attribute__((vector_size(4 * LN)));
typedef int32_t lq_vi __attribute__((vector_size(4 * LN)));
typedef float lq_vf_u __attribute__((vector_size(4 * LN), aligned(4))); /* an unaligned lq_vf in memory */

/* Defined by the including file: r[i] element k becomes r[k] element i (32-bit values, i, k < LN); dst[i] = the low
 * byte of lane i of v (i < LN). */
static inline void lq_arch_transpose(lq_vf r[LN]);
static inline void lq_arch_store_low_bytes(uint8_t *dst, lq_vi v);

/* ---- lane-wise helpers ---- */

static inline lq_vf lq_splat(float c)
{
    lq_vf z = {0};
    return z + c;
}
static inline lq_vi lq_splati(int32_t c)
{
    lq_vi z = {0};
    return z + c;
}
static inline lq_vf lq_self(lq_vi m, lq_vf a, lq_vf b) { return (lq_vf)((m & (lq_vi)a) | (~m & (lq_vi)b)); }
static inline lq_vi lq_seli(lq_vi m, lq_vi a, lq_vi b) { return (m & a) | (~m & b); }
static inline lq_vi lq_mini(lq_vi a, lq_vi b) { return lq_seli(a < b, a, b); }
static inline lq_vi lq_maxi(lq_vi a, lq_vi b) { return lq_seli(a > b, a, b); }
static inline lq_vi lq_clampi(lq_vi v, int lo, int hi) { return lq_maxi(lq_splati(lo), lq_mini(lq_splati(hi), v)); }
static inline lq_vf lq_abs(lq_vf x) { return (lq_vf)((lq_vi)x & 0x7fffffff); }
static inline lq_vf lq_tof(lq_vi v) { return __builtin_convertvector(v, lq_vf); }
/* qd_nearest_int, lane-wise: the same add and the same bit extraction. */
static inline lq_vi lq_nearest(lq_vf f)
{
    lq_vf v = f + 12582912.f;
    return ((lq_vi)v & 0x007fffff) - 0x00400000;
}
/*
 * QD_MAX(lo, QD_MIN(hi, qd_nearest_int(f))) for integer bounds, with the level also as a float (*fl): clamping
 * before rounding gives the same level (rounding is monotone and the bounds are integers), and after the same add
 * as lq_nearest the float level is that sum minus 12582912 exactly (|level| < 2^22). NaN lanes (discarded ones,
 * e.g. an all-zero sub-block's infinite inverse scale) get some level; they are never stored.
 */
static inline lq_vi lq_level(lq_vf f, float lo, float hi, lq_vf *fl)
{
    lq_vf v = LQ_MINF(LQ_MAXF(f, lq_splat(lo)), lq_splat(hi)) + 12582912.f;
    *fl = v - 12582912.f;
    return (lq_vi)v - 0x4B400000; /* the bits of 12582912.f */
}
/*
 * The float level alone, as lq_level's *fl: the same clamp, then LQ_RINT (round to nearest even, which is what the
 * add and subtract of 12582912 do below 2^22; it may give -0 where they give +0, which no sum or product of the
 * searches can tell apart).
 */
static inline lq_vf lq_levelf(lq_vf f, float lo, float hi)
{
    return LQ_RINT(LQ_MINF(LQ_MAXF(f, lq_splat(lo)), lq_splat(hi)));
}
/*
 * Whether lq_level may stand for the reference's nearest-then-clamp on iscale * (x - min) for every x of a block
 * within [dmin, max]: |x - min| <= span = max(max - min, min - dmin), so the products stay below 2^21 when
 * |iscale| * span does (the float operations are monotone), where qd_nearest_int is the true rounding. Beyond that
 * (an overflowing inverse scale over a subnormal range, a fitted min far from the data) the reference's magic-add
 * rounding gives other levels, so those passes take lq_nearest and lq_clampi as the reference does. Lanes in skip
 * are discarded by the caller.
 */
static inline bool lq_level_ok(lq_vf iscale, lq_vf max, lq_vf min, lq_vf dmin, lq_vi skip)
{
    lq_vf span = LQ_MAXF(max - min, min - dmin);
    lq_vi ok = lq_abs(iscale) * span < 2097152.f; /* (false for NaN) */
    return !LQ_ANY(~(ok | skip));
}

/* (int8_t) and (uint8_t) casts of an int. */
static inline lq_vi lq_i8(lq_vi v) { return (v << 24) >> 24; }
static inline lq_vi lq_u8(lq_vi v) { return v & 0xff; }

static inline float lq_getf(lq_vf v, int k)
{
    float a[LN];
    memcpy(a, &v, sizeof(a));
    return a[k];
}
static inline int32_t lq_geti(lq_vi v, int k)
{
    int32_t a[LN];
    memcpy(a, &v, sizeof(a));
    return a[k];
}

/* fp16 rounding of each lane: the stored bits in h[], the value a reader gets back as the result. */
static inline lq_vf lq_fp16(lq_vf v, qd_fp16 *h)
{
    float a[LN];
    memcpy(a, &v, sizeof(a));
    for (int k = 0; k < LN; k++) {
        h[k] = qd_fp32_to_fp16(a[k]);
        a[k] = qd_fp16_to_fp32(h[k]);
    }
    memcpy(&v, a, sizeof(v));
    return v;
}

/* Transpose n values (a multiple of LN) of each lane's block into X[i] (lane k = block k), LN x LN at a time. */
static inline void lq_load(lq_vf *X, const float *const *xp, int n)
{
    for (int i = 0; i < n; i += LN) {
        lq_vf r[LN];
        for (int k = 0; k < LN; k++)
            r[k] = *(const lq_vf_u *)(xp[k] + i);
        lq_arch_transpose(r);
        for (int k = 0; k < LN; k++)
            X[i + k] = r[k];
    }
}

/*
 * Every lane's n levels (a multiple of LN) back out as bytes, lane k's at out + k * n: the low byte of each int, as
 * the reference's uint8_t stores; LN x LN at a time.
 */
static inline void lq_lanes_bytes(const lq_vi *L, int n, uint8_t *out)
{
    for (int i = 0; i < n; i += LN) {
        lq_vf r[LN];
        for (int k = 0; k < LN; k++)
            r[k] = (lq_vf)L[i + k];
        lq_arch_transpose(r);
        for (int k = 0; k < LN; k++)
            lq_arch_store_low_bytes(out + (size_t)k * (size_t)n + (size_t)i, (lq_vi)r[k]);
    }
}

/* Sequential sum of x^2 over n values (the reference's order). */
static inline lq_vf lq_sumsq(const lq_vf *x, int n)
{
    lq_vf s = lq_splat(0.f);
    for (int i = 0; i < n; i++)
        s += x[i] * x[i];
    return s;
}

/* The value of largest magnitude, first on ties (max) and the magnitude (amax). */
static inline void lq_signed_absmax(const lq_vf *x, int n, lq_vf *max_out, lq_vf *amax_out)
{
    lq_vf max = lq_splat(0.f), amax = lq_splat(0.f);
    for (int i = 0; i < n; i++) {
        lq_vf ax = lq_abs(x[i]);
        lq_vi gt = ax > amax;
        amax = lq_self(gt, ax, amax);
        max = lq_self(gt, x[i], max);
    }
    *max_out = max;
    *amax_out = amax;
}

/* ---- the scale searches (ref_util.c), lane-wise ---- */

/* How many independent sub-block searches run interleaved (the including file may lower it). */
#ifndef LQ_MAXNS
#define LQ_MAXNS 4
#endif

/*
 * How many of make_qx's 19 candidate scales one sweep over a sub-block's values evaluates: each candidate carries
 * two independent sums, so a sweep keeps 2 * LQ_QX_BATCH chains in flight, from registers where they fit (the
 * including file may lower it where there are fewer registers).
 */
#ifndef LQ_QX_BATCH
#define LQ_QX_BATCH 10
#endif

/* The reference's (sumlx, suml2) of P candidate inverse scales isc[] over n values, in index order each. */
static inline __attribute__((always_inline)) void lq_qx_sums(const int P, int n, int nmax, const lq_vf *x,
                                                             const lq_vf *w, const lq_vf *wx, const lq_vf *isc,
                                                             lq_vf *sumlx, lq_vf *suml2)
{
    lq_vf a[LQ_QX_BATCH], b[LQ_QX_BATCH];
#pragma GCC unroll 16
    for (int p = 0; p < P; p++)
        a[p] = b[p] = lq_splat(0.f);
    for (int i = 0; i < n; ++i) {
        const lq_vf xi = x[i], wi = w[i], wxi = wx[i];
#pragma GCC unroll 16
        for (int p = 0; p < P; p++) {
            const lq_vf fl = lq_levelf(isc[p] * xi, (float)-nmax, (float)(nmax - 1));
            a[p] += wxi * fl;
            b[p] += wi * fl * fl;
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; p++) {
        sumlx[p] = a[p];
        suml2[p] = b[p];
    }
}

/*
 * qd_make_qx_quants with weights w (never NULL here: pass x^2 for the unweighted form), on NS sub-blocks (x, w, L:
 * NS runs of n; scales in scale_out[s]). The reference's passes are independent until their comparison: every
 * candidate's sums are computed first, LQ_QX_BATCH at a time in one sweep, then compared in the reference's order,
 * and the levels are computed once, with the inverse scale of the pass that won last (the reference recomputes
 * them from that same product whenever a pass wins).
 */
static inline __attribute__((always_inline)) void lq_make_qx_n(const int NS, int n, int nmax, const lq_vf *x,
                                                               lq_vi *L, const lq_vf *w, lq_vf *scale_out)
{
    enum { NC = 19 };
    lq_vf isc[LQ_MAXNS][NC], S1[LQ_MAXNS][NC], S2[LQ_MAXNS][NC], scale[LQ_MAXNS], best[LQ_MAXNS], win[LQ_MAXNS];
    lq_vi small[LQ_MAXNS];
    for (int s = 0; s < NS; s++) {
        const lq_vf *xs = x + s * n, *ws = w + s * n;
        lq_vf wx[32]; /* w * x: the reference's w * x[i] * l is (w * x[i]) * l, the same in every pass */
        lq_vf max, amax;
        lq_signed_absmax(xs, n, &max, &amax);
        small[s] = amax < QD_GROUP_MAX_EPS;
        isc[s][0] = (float)(-nmax) / max;
        for (int is = -9, c = 1; is <= 9; ++is)
            if (is != 0)
                isc[s][c++] = -(nmax + 0.1f * is) / max;
        for (int i = 0; i < n; ++i)
            wx[i] = ws[i] * xs[i];
        for (int c = 0; c + LQ_QX_BATCH <= NC; c += LQ_QX_BATCH)
            lq_qx_sums(LQ_QX_BATCH, n, nmax, xs, ws, wx, isc[s] + c, S1[s] + c, S2[s] + c);
        if (NC % LQ_QX_BATCH) {
            const int c = NC - NC % LQ_QX_BATCH;
            lq_qx_sums(NC % LQ_QX_BATCH, n, nmax, xs, ws, wx, isc[s] + c, S1[s] + c, S2[s] + c);
        }
    }
    /* the comparisons, a serial chain per sub-block: the NS chains interleaved */
    for (int s = 0; s < NS; s++) {
        scale[s] = lq_self(S2[s][0] != 0.f, S1[s][0] / S2[s][0], lq_splat(0.f));
        best[s] = scale[s] * S1[s][0];
        win[s] = isc[s][0];
    }
    for (int c = 1; c < NC; c++) {
        for (int s = 0; s < NS; s++) {
            const lq_vi upd = (S2[s][c] > 0.f) & (S1[s][c] * S1[s][c] > best[s] * S2[s][c]);
            const lq_vf sc = S1[s][c] / S2[s][c];
            scale[s] = lq_self(upd, sc, scale[s]);
            best[s] = lq_self(upd, sc * S1[s][c], best[s]);
            win[s] = lq_self(upd, isc[s][c], win[s]);
        }
    }
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < n; ++i) {
            lq_vf fl;
            L[s * n + i] = lq_seli(small[s], lq_splati(0),
                                   lq_level(win[s] * x[s * n + i], (float)-nmax, (float)(nmax - 1), &fl) + nmax);
        }
        scale_out[s] = lq_self(small[s], lq_splat(0.f), scale[s]);
    }
}

static lq_vf lq_make_qx(int n, int nmax, const lq_vf *x, lq_vi *L, const lq_vf *w)
{
    lq_vf scale;
    lq_make_qx_n(1, n, nmax, x, L, w, &scale);
    return scale;
}

/*
 * qd_make_q3_quants (weights x^2, coordinate descent; L offset by nmax) on NS independent sub-blocks at once,
 * interleaved: each pass is a chain of dependent divisions and compares per sub-block, so several overlap. A
 * sub-block whose last pass changed nothing would change nothing on another, so all run until none changes.
 */
static inline __attribute__((always_inline)) void lq_make_q3_n(const int NS, int n, int nmax, const lq_vf *x,
                                                               lq_vi *L, lq_vf *scale_out)
{
    lq_vf max[LQ_MAXNS], amax[LQ_MAXNS], sumlx[LQ_MAXNS], suml2[LQ_MAXNS];
    lq_vi small[LQ_MAXNS];
    for (int s = 0; s < NS; s++) {
        lq_signed_absmax(x + s * n, n, &max[s], &amax[s]);
        small[s] = amax[s] < QD_GROUP_MAX_EPS;
        const lq_vf iscale = (float)(-nmax) / max[s];
        sumlx[s] = suml2[s] = lq_splat(0.f);
        for (int i = 0; i < n; ++i) {
            const lq_vf xi = x[s * n + i];
            lq_vi l = lq_i8(lq_clampi(lq_nearest(iscale * xi), -nmax, nmax - 1));
            L[s * n + i] = l;
            lq_vf w = xi * xi;
            lq_vf fl = lq_tof(l);
            sumlx[s] += w * xi * fl;
            suml2[s] += w * fl * fl;
        }
    }
    for (int pass = 0; pass < 5; ++pass) {
        lq_vi changed = lq_splati(0);
        for (int i = 0; i < n; ++i) {
            for (int s = 0; s < NS; s++) {
                const lq_vf xi = x[s * n + i];
                lq_vf w = xi * xi;
                lq_vf fL = lq_tof(L[s * n + i]);
                lq_vf slx = sumlx[s] - w * xi * fL;
                lq_vi c = slx > 0.f;
                lq_vf sl2 = suml2[s] - w * fL * fL;
                lq_vi nl = lq_clampi(lq_nearest(xi * sl2 / slx), -nmax, nmax - 1);
                c &= nl != L[s * n + i];
                lq_vf fn = lq_tof(nl);
                slx += w * xi * fn;
                sl2 += w * fn * fn;
                c &= (sl2 > 0.f) & (slx * slx * suml2[s] > sumlx[s] * sumlx[s] * sl2);
                L[s * n + i] = lq_seli(c, lq_i8(nl), L[s * n + i]);
                sumlx[s] = lq_self(c, slx, sumlx[s]);
                suml2[s] = lq_self(c, sl2, suml2[s]);
                changed |= c;
            }
        }
        if (!LQ_ANY(changed))
            break;
    }
    for (int s = 0; s < NS; s++) {
        for (int i = 0; i < n; ++i)
            L[s * n + i] = lq_seli(small[s], lq_splati(0), lq_i8(L[s * n + i] + nmax));
        lq_vf scale = lq_self(suml2[s] > 0.f, sumlx[s] / suml2[s], lq_splat(0.f));
        scale_out[s] = lq_self(small[s], lq_splat(0.f), scale);
    }
}

/*
 * make_qkx (qkx2 when !v3, qkx3 when v3) on NS independent sub-blocks at once (x, w, L: NS runs of n; results
 * per sub-block in scale_out[s], the_min[s]). Each sub-block keeps the reference's own order of operations; the
 * NS of them are interleaved only so that their serial sums overlap in the pipeline.
 */
static inline __attribute__((always_inline)) void lq_make_qkx_n(const int NS, int n, int nmax, const lq_vf *x,
                                                                const lq_vf *w, lq_vi *L, lq_vf *scale_out,
                                                                lq_vf *the_min, float rmin, float rdelta, int nstep,
                                                                bool use_mad, bool v3)
{
    lq_vf Laux[LQ_MAXNS * 32]; /* a pass's levels, as floats (lq_level) */
    lq_vf min[LQ_MAXNS], max[LQ_MAXNS], sum_w[LQ_MAXNS], sum_x[LQ_MAXNS], min0[LQ_MAXNS], scale[LQ_MAXNS],
        best_err[LQ_MAXNS], range[LQ_MAXNS], dmin[LQ_MAXNS];
    bool fast = true; /* lq_level for this pass (lq_level_ok) */
    lq_vi degenerate[LQ_MAXNS];
    for (int s = 0; s < NS; s++) {
        const lq_vf *xs = x + s * n, *ws = w + s * n;
        min[s] = xs[0];
        max[s] = xs[0];
        sum_w[s] = ws[0];
        sum_x[s] = sum_w[s] * xs[0];
    }
    for (int i = 1; i < n; ++i) {
        for (int s = 0; s < NS; s++) {
            const lq_vf xi = x[s * n + i], wi = w[s * n + i];
            min[s] = lq_self(xi < min[s], xi, min[s]);
            max[s] = lq_self(xi > max[s], xi, max[s]);
            sum_w[s] += wi;
            sum_x[s] += wi * xi;
        }
    }
    lq_vf iscale[LQ_MAXNS];
    for (int s = 0; s < NS; s++) {
        dmin[s] = min[s];
        min[s] = lq_self(min[s] > 0.f, lq_splat(0.f), min[s]);
        min0[s] = min[s];
        degenerate[s] = v3 ? (max[s] <= min[s]) : (max[s] == min[s]);
        iscale[s] = (float)nmax / (max[s] - min[s]);
        scale[s] = 1.f / iscale[s];
        best_err[s] = lq_splat(0.f);
        fast = fast && lq_level_ok(iscale[s], max[s], min[s], dmin[s], degenerate[s]);
    }
    for (int i = 0; i < n; ++i) {
        for (int s = 0; s < NS; s++) {
            const lq_vf xi = x[s * n + i];
            lq_vf fl, f = iscale[s] * (xi - min[s]);
            if (fast) {
                L[s * n + i] = lq_level(f, 0.f, (float)nmax, &fl);
            } else {
                L[s * n + i] = lq_clampi(lq_nearest(f), 0, nmax);
                fl = lq_tof(L[s * n + i]);
            }
            lq_vf diff = scale[s] * fl + min[s] - xi;
            diff = use_mad ? lq_abs(diff) : diff * diff;
            best_err[s] += w[s * n + i] * diff;
        }
    }
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * is + nmax;
        lq_vf sum_l[LQ_MAXNS], sum_l2[LQ_MAXNS], sum_xl[LQ_MAXNS];
        fast = true;
        for (int s = 0; s < NS; s++) {
            range[s] = max[s] - min[s];
            iscale[s] = num / range[s];
            sum_l[s] = sum_l2[s] = sum_xl[s] = lq_splat(0.f);
            fast = fast && lq_level_ok(iscale[s], max[s], min[s], dmin[s], degenerate[s]);
        }
        for (int i = 0; i < n; ++i) {
            for (int s = 0; s < NS; s++) {
                const lq_vf xi = x[s * n + i], wi = w[s * n + i];
                lq_vf fl, f = iscale[s] * (xi - min[s]);
                if (fast)
                    (void)lq_level(f, 0.f, (float)nmax, &fl);
                else
                    fl = lq_tof(lq_clampi(lq_nearest(f), 0, nmax));
                Laux[s * n + i] = fl;
                sum_l[s] += wi * fl;
                sum_l2[s] += wi * fl * fl;
                sum_xl[s] += wi * fl * xi;
            }
        }
        lq_vf this_scale[LQ_MAXNS], this_min[LQ_MAXNS], err[LQ_MAXNS];
        lq_vi ok[LQ_MAXNS];
        for (int s = 0; s < NS; s++) {
            lq_vf D = sum_w[s] * sum_l2[s] - sum_l[s] * sum_l[s];
            ok[s] = D > 0.f;
            this_scale[s] = (sum_w[s] * sum_xl[s] - sum_x[s] * sum_l[s]) / D;
            this_min[s] = (sum_l2[s] * sum_x[s] - sum_l[s] * sum_xl[s]) / D;
            lq_vi pos = this_min[s] > 0.f;
            this_min[s] = lq_self(pos, lq_splat(0.f), this_min[s]);
            this_scale[s] = lq_self(pos, sum_xl[s] / sum_l2[s], this_scale[s]);
            err[s] = lq_splat(0.f);
        }
        for (int i = 0; i < n; ++i) {
            for (int s = 0; s < NS; s++) {
                lq_vf diff = this_scale[s] * Laux[s * n + i] + this_min[s] - x[s * n + i];
                diff = use_mad ? lq_abs(diff) : diff * diff;
                err[s] += w[s * n + i] * diff;
            }
        }
        for (int s = 0; s < NS; s++) {
            lq_vi upd = ok[s] & (err[s] < best_err[s]);
            if (LQ_ANY(upd)) {
                for (int i = 0; i < n; ++i)
                    L[s * n + i] = lq_seli(upd, __builtin_convertvector(Laux[s * n + i], lq_vi), L[s * n + i]);
                best_err[s] = lq_self(upd, err[s], best_err[s]);
                scale[s] = lq_self(upd, this_scale[s], scale[s]);
                min[s] = lq_self(upd, this_min[s], min[s]);
            }
        }
    }
    for (int s = 0; s < NS; s++) {
        if (LQ_ANY(degenerate[s])) {
            for (int i = 0; i < n; ++i)
                L[s * n + i] = lq_seli(degenerate[s], lq_splati(0), L[s * n + i]);
            scale[s] = lq_self(degenerate[s], lq_splat(0.f), scale[s]);
            min[s] = lq_self(degenerate[s], min0[s], min[s]);
        }
        the_min[s] = -min[s];
        scale_out[s] = scale[s];
    }
}

/* qd_make_qp_quants: L holds the uint8_t levels. */
static lq_vf lq_make_qp(int n, int nmax, const lq_vf *x, lq_vi *L, const lq_vf *qw)
{
    lq_vf max = lq_splat(0.f);
    for (int i = 0; i < n; ++i)
        max = lq_self(max > x[i], max, x[i]);
    const lq_vi small = max < QD_GROUP_MAX_EPS;
    lq_vf iscale = (float)nmax / max;
    for (int i = 0; i < n; ++i)
        L[i] = lq_u8(lq_nearest(iscale * x[i]));
    lq_vf scale = 1.f / iscale;
    lq_vf best_mse = lq_splat(0.f);
    for (int i = 0; i < n; ++i) {
        lq_vf diff = x[i] - scale * lq_tof(L[i]);
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0)
            continue;
        const float num = 0.1f * is + nmax;
        lq_vf iscale_is = num / max;
        lq_vf scale_is = 1.f / iscale_is;
        lq_vf mse = lq_splat(0.f);
        for (int i = 0; i < n; ++i) {
            lq_vi l = lq_mini(lq_splati(nmax), lq_nearest(iscale_is * x[i]));
            lq_vf diff = x[i] - scale_is * lq_tof(l);
            mse += qw[i] * diff * diff;
        }
        lq_vi upd = mse < best_mse;
        best_mse = lq_self(upd, mse, best_mse);
        iscale = lq_self(upd, iscale_is, iscale);
    }
    lq_vf sumlx = lq_splat(0.f), suml2 = lq_splat(0.f);
    for (int i = 0; i < n; ++i) {
        lq_vi l = lq_mini(lq_splati(nmax), lq_nearest(iscale * x[i]));
        L[i] = lq_u8(l);
        lq_vf fl = lq_tof(l);
        sumlx += qw[i] * x[i] * fl;
        suml2 += qw[i] * fl * fl;
    }
    for (int pass = 0; pass < 5; ++pass) {
        lq_vi changed = lq_splati(0);
        for (int i = 0; i < n; ++i) {
            lq_vf w = qw[i];
            lq_vf fL = lq_tof(L[i]);
            lq_vf slx = sumlx - w * x[i] * fL;
            lq_vf sl2 = suml2 - w * fL * fL;
            lq_vi c = (slx > 0.f) & (sl2 > 0.f);
            if (!LQ_ANY(c))
                continue;
            lq_vi nl = lq_mini(lq_splati(nmax), lq_nearest(x[i] * sl2 / slx));
            c &= nl != L[i];
            lq_vf fn = lq_tof(nl);
            slx += w * x[i] * fn;
            sl2 += w * fn * fn;
            c &= slx * slx * suml2 > sumlx * sumlx * sl2;
            L[i] = lq_seli(c, lq_u8(nl), L[i]);
            sumlx = lq_self(c, slx, sumlx);
            suml2 = lq_self(c, sl2, suml2);
            changed |= c;
        }
        if (!LQ_ANY(changed))
            break;
    }
    lq_vf r = lq_self(suml2 > 0.f, sumlx / suml2, lq_splat(0.f));
    if (LQ_ANY(small)) {
        for (int i = 0; i < n; ++i)
            L[i] = lq_seli(small, lq_splati(0), L[i]);
        r = lq_self(small, lq_splat(0.f), r);
    }
    return r;
}

/* weights[i] = qw[i] * sqrt(sigma2 + x[i]^2) for n values (the importance-weighted paths). */
static inline void lq_imatrix_weights(const lq_vf *qw, const lq_vf *x, lq_vf sigma2, int n, lq_vf *w)
{
    for (int i = 0; i < n; i++)
        w[i] = qw[i] * LQ_SQRT(sigma2 + x[i] * x[i]);
}

/* ---- block packing (per lane, from the levels) ---- */

static inline void lq_pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static inline void lq_k4_set_scales(uint8_t *scales, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] = (uint8_t)(scales[j - 4] | ((ls >> 4) << 6));
        scales[j] = (uint8_t)(scales[j] | ((lm >> 4) << 6));
    }
}

static inline void lq_q3_set_scale(uint8_t *scales, int j, int l)
{
    if (j < 8)
        scales[j] = (uint8_t)(l & 0xF);
    else
        scales[j - 8] = (uint8_t)(scales[j - 8] | ((l & 0xF) << 4));
    scales[j % 4 + 8] = (uint8_t)(scales[j % 4 + 8] | ((l >> 4) << (2 * (j / 4))));
}

/* ---- Q4_K / Q5_K ---- */

/* Requantize with the stored d, dmin and 6-bit levels (ls, lm per sub-block); lanes whose d is 0 keep L. */
static inline void lq_k45_requantize(const lq_vf *X, lq_vf dall, lq_vf mall, const lq_vi *ls, const lq_vi *lm,
                                     int nmax, lq_vi *L)
{
    for (int j = 0; j < QK / 32; ++j) {
        lq_vf d = dall * lq_tof(ls[j]);
        lq_vf dm = mall * lq_tof(lm[j]);
        lq_vi nz = d != 0.f;
        for (int ii = 0; ii < 32; ++ii) {
            lq_vi l = lq_clampi(lq_nearest((X[32 * j + ii] + dm) / d), 0, nmax);
            L[32 * j + ii] = lq_seli(nz, l, L[32 * j + ii]);
        }
    }
}

/* A group of LN Q4_K (nmax 15) or Q5_K (nmax 31) blocks; qwp NULL for the reference search. */
static void lq_k45_group(const float *const *xp, const float *const *qwp, uint8_t *const *yp, int nmax)
{
    lq_vf X[QK], WA[QK], scales[8], mins[8], sw[8];
    lq_vi L[QK], ls[8], lm[8];
    lq_load(X, xp, QK);
    lq_vf d_val, m_val;
    if (!qwp) {
        const float rmin = nmax == 15 ? -1.f : -0.5f;
        const int nstep = nmax == 15 ? 20 : 15;
        lq_vf max_scale = lq_splat(0.f), max_min = lq_splat(0.f);
        for (int j = 0; j < 8; ++j) {
            const lq_vf *x = X + 32 * j;
            lq_vf av_x = LQ_SQRT(lq_sumsq(x, 32) / 32.f);
            for (int l = 0; l < 32; ++l)
                WA[32 * j + l] = av_x + lq_abs(x[l]);
        }
        for (int j = 0; j < 8; j += LQ_MAXNS)
            lq_make_qkx_n(LQ_MAXNS, 32, nmax, X + 32 * j, WA + 32 * j, L + 32 * j, scales + j, mins + j, rmin, 0.1f,
                          nstep, false, false);
        for (int j = 0; j < 8; ++j) {
            max_scale = lq_self(scales[j] > max_scale, scales[j], max_scale);
            max_min = lq_self(mins[j] > max_min, mins[j], max_min);
        }
        lq_vf inv_scale = lq_self(max_scale > 0.f, 63.f / max_scale, lq_splat(0.f));
        lq_vf inv_min = lq_self(max_min > 0.f, 63.f / max_min, lq_splat(0.f));
        for (int j = 0; j < 8; ++j) {
            ls[j] = lq_mini(lq_splati(63), lq_u8(lq_nearest(inv_scale * scales[j])));
            lm[j] = lq_mini(lq_splati(63), lq_u8(lq_nearest(inv_min * mins[j])));
        }
        d_val = max_scale / 63.f;
        m_val = max_min / 63.f;
    } else {
        lq_vf sigma2 = 2.f * lq_sumsq(X, QK) / (float)QK;
        lq_vi Ls[8], Lm[8];
        lq_load(WA, qwp, QK);
        for (int j = 0; j < 8; ++j) {
            lq_imatrix_weights(WA + 32 * j, X + 32 * j, sigma2, 32, WA + 32 * j);
            lq_vf sumw = lq_splat(0.f);
            for (int l = 0; l < 32; ++l)
                sumw += WA[32 * j + l];
            sw[j] = sumw;
        }
        for (int j = 0; j < 8; j += LQ_MAXNS)
            lq_make_qkx_n(LQ_MAXNS, 32, nmax, X + 32 * j, WA + 32 * j, L + 32 * j, scales + j, mins + j, -0.9f,
                          0.05f, 36, false, true);
        d_val = lq_make_qp(8, 63, scales, Ls, sw);
        m_val = lq_make_qp(8, 63, mins, Lm, sw);
        for (int j = 0; j < 8; ++j) {
            ls[j] = lq_mini(lq_splati(63), Ls[j]);
            lm[j] = lq_mini(lq_splati(63), Lm[j]);
        }
    }
    qd_fp16 dh[LN], mh[LN];
    lq_vf dall = lq_fp16(d_val, dh);
    lq_vf mall = lq_fp16(m_val, mh);
    lq_k45_requantize(X, dall, mall, ls, lm, nmax, L);
    uint8_t Lb[LN * QK];
    lq_lanes_bytes(L, QK, Lb);
    for (int k = 0; k < LN; k++) {
        const uint8_t *Lk = Lb + k * QK;
        uint8_t sc[QD_K_SCALE_SIZE];
        memset(sc, 0, sizeof(sc));
        for (int j = 0; j < 8; ++j)
            lq_k4_set_scales(sc, j, (uint8_t)lq_geti(ls[j], k), (uint8_t)lq_geti(lm[j], k));
        if (nmax == 15) {
            qd_block_q4_K *y = (qd_block_q4_K *)yp[k];
            y->d = dh[k];
            y->dmin = mh[k];
            memcpy(y->scales, sc, sizeof(sc));
            uint8_t *q = y->qs;
            for (int j = 0; j < QK; j += 64, q += 32)
                for (int l = 0; l < 32; ++l)
                    q[l] = (uint8_t)(Lk[j + l] | (Lk[j + l + 32] << 4));
        } else {
            qd_block_q5_K *y = (qd_block_q5_K *)yp[k];
            y->d = dh[k];
            y->dmin = mh[k];
            memcpy(y->scales, sc, sizeof(sc));
            uint8_t *ql = y->qs, *qh = y->qh;
            memset(qh, 0, QK / 8);
            uint8_t m1 = 1, m2 = 2;
            for (int n = 0; n < QK; n += 64) {
                for (int j = 0; j < 32; ++j) { /* branch-free form of the reference's packing */
                    const int l1 = Lk[n + j], l2 = Lk[n + j + 32];
                    const int h1 = l1 > 15, h2 = l2 > 15;
                    qh[j] = (uint8_t)(qh[j] | (m1 * h1) | (m2 * h2));
                    ql[j] = (uint8_t)((l1 - 16 * h1) | ((l2 - 16 * h2) << 4));
                }
                m1 = (uint8_t)(m1 << 2);
                m2 = (uint8_t)(m2 << 2);
                ql += 32;
            }
        }
    }
}

/* ---- Q6_K ---- */

static void lq_q6_K_group(const float *const *xp, const float *const *qwp, uint8_t *const *yp)
{
    lq_vf X[QK], W[QK], scales[16];
    lq_vi L[QK];
    lq_load(X, xp, QK);
    if (qwp)
        lq_load(W, qwp, QK);
    else
        for (int i = 0; i < QK; i++)
            W[i] = X[i] * X[i];
    lq_vf max_scale = lq_splat(0.f), max_abs_scale = lq_splat(0.f);
    for (int ib = 0; ib < 16; ib += LQ_MAXNS)
        lq_make_qx_n(LQ_MAXNS, 16, 32, X + 16 * ib, L + 16 * ib, W + 16 * ib, scales + ib);
    for (int ib = 0; ib < 16; ++ib) {
        lq_vf a = lq_abs(scales[ib]);
        lq_vi gt = a > max_abs_scale;
        max_abs_scale = lq_self(gt, a, max_abs_scale);
        max_scale = lq_self(gt, scales[ib], max_scale);
    }
    const lq_vi zero = max_abs_scale < QD_GROUP_MAX_EPS;
    lq_vf iscale = -128.f / max_scale;
    qd_fp16 dh[LN];
    lq_vf dall = lq_fp16(1.f / iscale, dh);
    lq_vi sc[16];
    for (int ib = 0; ib < 16; ++ib)
        sc[ib] = lq_i8(lq_mini(lq_splati(127), lq_nearest(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
        lq_vf d = dall * lq_tof(sc[j]);
        lq_vi nz = d != 0.f;
        for (int ii = 0; ii < 16; ++ii) {
            lq_vi l = lq_clampi(lq_nearest(X[16 * j + ii] / d), -32, 31) + 32;
            L[16 * j + ii] = lq_seli(nz, l, L[16 * j + ii]);
        }
    }
    uint8_t Lb[LN * QK];
    lq_lanes_bytes(L, QK, Lb);
    for (int k = 0; k < LN; k++) {
        qd_block_q6_K *y = (qd_block_q6_K *)yp[k];
        if (lq_geti(zero, k)) {
            memset(y, 0, sizeof(*y));
            y->d = qd_fp32_to_fp16(0.f);
            continue;
        }
        const uint8_t *Lk = Lb + k * QK;
        y->d = dh[k];
        for (int ib = 0; ib < 16; ++ib)
            y->scales[ib] = (int8_t)lq_geti(sc[ib], k);
        uint8_t *ql = y->ql, *qh = y->qh;
        for (int j = 0; j < QK; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = Lk[j + l + 0] & 0xF;
                const uint8_t q2 = Lk[j + l + 32] & 0xF;
                const uint8_t q3 = Lk[j + l + 64] & 0xF;
                const uint8_t q4 = Lk[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((Lk[j + l] >> 4) | ((Lk[j + l + 32] >> 4) << 2) | ((Lk[j + l + 64] >> 4) << 4) |
                                  ((Lk[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* ---- Q2_K ---- */

static void lq_q2_K_group(const float *const *xp, const float *const *qwp, uint8_t *const *yp)
{
    lq_vf X[QK], WA[QK], scales[16], mins[16], sw[16];
    lq_vi L[QK], sb[16];
    lq_load(X, xp, QK);
    lq_vf d_val, m_val;
    if (!qwp) {
        lq_vf max_scale = lq_splat(0.f), max_min = lq_splat(0.f);
        for (int i = 0; i < QK; ++i)
            WA[i] = lq_abs(X[i]);
        for (int j = 0; j < 16; j += LQ_MAXNS)
            lq_make_qkx_n(LQ_MAXNS, 16, 3, X + 16 * j, WA + 16 * j, L + 16 * j, scales + j, mins + j, -0.5f, 0.1f, 15,
                          true, false);
        for (int j = 0; j < 16; ++j) {
            max_scale = lq_self(scales[j] > max_scale, scales[j], max_scale);
            max_min = lq_self(mins[j] > max_min, mins[j], max_min);
        }
        const lq_vi has_s = max_scale > 0.f, has_m = max_min > 0.f;
        lq_vf is_s = 15.f / max_scale, is_m = 15.f / max_min;
        for (int j = 0; j < 16; ++j) {
            lq_vi s = lq_seli(has_s, lq_u8(lq_nearest(is_s * scales[j])), lq_splati(0));
            lq_vi m = lq_nearest(is_m * mins[j]);
            sb[j] = lq_seli(has_m, lq_u8(s | (m << 4)), s);
        }
        d_val = lq_self(has_s, max_scale / 15.f, lq_splat(0.f));
        m_val = lq_self(has_m, max_min / 15.f, lq_splat(0.f));
    } else {
        lq_vf sigma2 = lq_sumsq(X, QK) / (float)QK;
        lq_vi Ls[16], Lm[16];
        lq_load(WA, qwp, QK);
        for (int j = 0; j < 16; ++j) {
            lq_imatrix_weights(WA + 16 * j, X + 16 * j, sigma2, 16, WA + 16 * j);
            lq_vf s = lq_splat(0.f);
            for (int l = 0; l < 16; ++l)
                s += WA[16 * j + l];
            sw[j] = s;
        }
        for (int j = 0; j < 16; j += LQ_MAXNS)
            lq_make_qkx_n(LQ_MAXNS, 16, 3, X + 16 * j, WA + 16 * j, L + 16 * j, scales + j, mins + j, -0.9f, 0.05f,
                          36, false, true);
        d_val = lq_make_qp(16, 15, scales, Ls, sw);
        m_val = lq_make_qp(16, 15, mins, Lm, sw);
        for (int j = 0; j < 16; ++j)
            sb[j] = lq_u8(Ls[j] | (Lm[j] << 4));
    }
    qd_fp16 dh[LN], mh[LN];
    lq_vf dall = lq_fp16(d_val, dh);
    lq_vf mall = lq_fp16(m_val, mh);
    for (int j = 0; j < 16; ++j) {
        lq_vf d = dall * lq_tof(sb[j] & 0xF);
        lq_vf m = mall * lq_tof(sb[j] >> 4);
        lq_vi nz = d != 0.f;
        for (int ii = 0; ii < 16; ++ii) {
            lq_vi l = lq_clampi(lq_nearest((X[16 * j + ii] + m) / d), 0, 3);
            L[16 * j + ii] = lq_seli(nz, l, L[16 * j + ii]);
        }
    }
    uint8_t Lb[LN * QK];
    lq_lanes_bytes(L, QK, Lb);
    for (int k = 0; k < LN; k++) {
        qd_block_q2_K *y = (qd_block_q2_K *)yp[k];
        const uint8_t *Lk = Lb + k * QK;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)lq_geti(sb[j], k);
        y->d = dh[k];
        y->dmin = mh[k];
        lq_pack_2bit(Lk, y->qs);
    }
}

/* ---- Q3_K ---- */

static void lq_q3_K_group(const float *const *xp, const float *const *qwp, uint8_t *const *yp)
{
    lq_vf X[QK], W[16], QW[16], scales[16], sw[16];
    lq_vi L[QK], sb[16]; /* sb: the 6-bit stored scale (0..63), 0 where none was set */
    lq_load(X, xp, QK);
    lq_vf d_val;
    if (!qwp) {
        lq_vf max_scale = lq_splat(0.f), amax = lq_splat(0.f);
        for (int j = 0; j < 16; j += LQ_MAXNS)
            lq_make_q3_n(LQ_MAXNS, 16, 4, X + 16 * j, L + 16 * j, scales + j);
        for (int j = 0; j < 16; ++j) {
            lq_vf a = lq_abs(scales[j]);
            lq_vi gt = a > amax;
            amax = lq_self(gt, a, amax);
            max_scale = lq_self(gt, scales[j], max_scale);
        }
        const lq_vi nz = max_scale != 0.f;
        lq_vf iscale = -32.f / max_scale;
        for (int j = 0; j < 16; ++j) {
            lq_vi l = lq_i8(lq_nearest(iscale * scales[j]));
            l = lq_i8(lq_clampi(l, -32, 31) + 32);
            sb[j] = lq_seli(nz, l, lq_splati(0));
        }
        d_val = lq_self(nz, 1.f / iscale, lq_splat(0.f));
    } else {
        lq_vf sigma2 = 2.f * lq_sumsq(X, QK) / (float)QK;
        lq_vi Ls[16];
        for (int j = 0; j < 16; ++j) {
            const float *qp[LN];
            for (int k = 0; k < LN; k++)
                qp[k] = qwp[k] + 16 * j;
            lq_load(QW, qp, 16);
            lq_imatrix_weights(QW, X + 16 * j, sigma2, 16, W);
            lq_vf s = lq_splat(0.f);
            for (int l = 0; l < 16; ++l)
                s += W[l];
            sw[j] = s;
            scales[j] = lq_make_qx(16, 4, X + 16 * j, L + 16 * j, W);
        }
        d_val = lq_make_qx(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; ++j)
            sb[j] = Ls[j];
    }
    qd_fp16 dh[LN];
    lq_vf dall = lq_fp16(d_val, dh);
    for (int j = 0; j < 16; ++j) {
        /* what q3_K_get_scale reads back: the low 6 bits of the stored value, minus 32 */
        lq_vf d = dall * lq_tof(lq_i8((sb[j] & 63) - 32));
        lq_vi nz = d != 0.f;
        for (int ii = 0; ii < 16; ++ii) {
            lq_vi l = lq_clampi(lq_nearest(X[16 * j + ii] / d), -4, 3) + 4;
            L[16 * j + ii] = lq_seli(nz, l, L[16 * j + ii]);
        }
    }
    uint8_t Lb[LN * QK];
    lq_lanes_bytes(L, QK, Lb);
    for (int k = 0; k < LN; k++) {
        qd_block_q3_K *y = (qd_block_q3_K *)yp[k];
        uint8_t *Lk = Lb + k * QK;
        memset(y->scales, 0, 12);
        for (int j = 0; j < 16; ++j)
            lq_q3_set_scale(y->scales, j, (int8_t)lq_geti(sb[j], k));
        y->d = dh[k];
        memset(y->hmask, 0, sizeof(y->hmask));
        int m = 0;
        uint8_t hm = 1;
        /* branch-free form of the reference's loop (its branch is a coin flip per value) */
        for (int j = 0; j < QK; ++j) {
            const uint8_t hi = (int8_t)Lk[j] > 3;
            y->hmask[m] |= (uint8_t)(hm * hi);
            Lk[j] = (uint8_t)(Lk[j] - 4 * hi);
            if (++m == QK / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        lq_pack_2bit(Lk, y->qs);
    }
}

/* ---- IQ4_NL / IQ4_XS ---- */

/*
 * qd_best_index_int8 over the IQ4 table, lane-wise: a branch-free binary search for the bracketing pair
 * (lo = the largest k <= 14 with table[k] <= x, 0 if none), then the reference's comparison
 * x - table[lo] < table[lo+1] - x. The table is strictly increasing, so this is the index the scalar search
 * returns, including x at or beyond either end; NaN (which the scalar search sends to 15) is patched.
 * *q gets the table value of the index. LQ_LOOKUP16(tab, idx) is the including file's 16-entry lane lookup.
 */
typedef struct lq_iq4_tables {
    float tab[16];  /* the levels as floats */
    float srch[16]; /* the same with NaN at 15, so the search never goes past 14 */
} lq_iq4_tables;

static inline void lq_iq4_tables_init(lq_iq4_tables *t)
{
    for (int k = 0; k < 16; k++) {
        t->tab[k] = (float)qd_iq4nl_values[k];
        t->srch[k] = k < 15 ? t->tab[k] : __builtin_nanf("");
    }
}

static inline lq_vi lq_iq4_index(const lq_iq4_tables *t, lq_vf x, lq_vf *q)
{
    const int8_t *v = qd_iq4nl_values;
    const float *tab = t->tab, *srch = t->srch;
    lq_vi lo = lq_splati(0);
    for (int step = 8; step >= 1; step >>= 1) {
        lq_vi c = lo + step;
        lq_vi ge = x >= LQ_LOOKUP16(srch, c);
        lo = lq_seli(ge, c, lo);
    }
    const lq_vf vlo = LQ_LOOKUP16(tab, lo), vhi = LQ_LOOKUP16(tab, lo + 1);
    const lq_vi take_lo = x - vlo < vhi - x;
    const lq_vi nan = x != x;
    *q = lq_self(nan, lq_splat((float)v[15]), lq_self(take_lo, vlo, vhi));
    return lq_seli(nan, lq_splati(15), lq_seli(take_lo, lo, lo + 1));
}

/* A group of IQ4 super-blocks of sb values (32: IQ4_NL, 256: IQ4_XS). */
static void lq_iq4_group(int sb, const float *const *xp, const float *const *qwp, uint8_t *const *yp)
{
    const float v0 = (float)qd_iq4nl_values[0];
    const int ntry = 7;
    lq_iq4_tables T;
    lq_iq4_tables_init(&T);
    lq_vf X[QK], W[32], QW[32], scales[8];
    lq_vi L[QK];
    lq_load(X, xp, sb);
    lq_vf sigma2 = lq_sumsq(X, sb);
    sigma2 *= 2.f / sb;
    lq_vf max_scale = lq_splat(0.f), amax_scale = lq_splat(0.f);
    for (int ib = 0; ib < sb / 32; ++ib) {
        const lq_vf *xb = X + ib * 32;
        if (qwp) {
            const float *qp[LN];
            for (int k = 0; k < LN; k++)
                qp[k] = qwp[k] + 32 * ib;
            lq_load(QW, qp, 32);
            lq_imatrix_weights(QW, xb, sigma2, 32, W);
        } else {
            for (int j = 0; j < 32; ++j)
                W[j] = xb[j] * xb[j];
        }
        lq_vf max, amax;
        lq_signed_absmax(xb, 32, &max, &amax);
        const lq_vi small = amax < QD_GROUP_MAX_EPS;
        lq_vf d = -max / v0;
        lq_vf id = 1.f / d;
        lq_vf sumqx = lq_splat(0.f), sumq2 = lq_splat(0.f);
        for (int j = 0; j < 32; ++j) {
            lq_vf q;
            lq_iq4_index(&T, id * xb[j], &q);
            sumqx += W[j] * q * xb[j];
            sumq2 += W[j] * q * q;
        }
        d = lq_self(sumq2 > 0.f, sumqx / sumq2, lq_splat(0.f));
        lq_vf best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (float)(itry + qd_iq4nl_values[0]) / max;
            sumqx = sumq2 = lq_splat(0.f);
            for (int j = 0; j < 32; ++j) {
                lq_vf q;
                lq_iq4_index(&T, id * xb[j], &q);
                sumqx += W[j] * q * xb[j];
                sumq2 += W[j] * q * q;
            }
            lq_vi upd = (sumq2 > 0.f) & (sumqx * sumqx > best * sumq2);
            d = lq_self(upd, sumqx / sumq2, d);
            best = lq_self(upd, d * sumqx, best);
        }
        d = lq_self(small, lq_splat(0.f), d);
        scales[ib] = d;
        lq_vf abs_d = lq_abs(d);
        lq_vi gt = abs_d > amax_scale;
        amax_scale = lq_self(gt, abs_d, amax_scale);
        max_scale = lq_self(gt, d, max_scale);
    }
    qd_fp16 dh[LN];
    lq_vi ls[8];
    if (sb > 32) {
        lq_vf d = -max_scale / 32.f;
        lq_fp16(d, dh);
        lq_vf id = lq_self(d != 0.f, 1.f / d, lq_splat(0.f));
        for (int ib = 0; ib < sb / 32; ++ib) {
            lq_vi l = lq_clampi(lq_nearest(id * scales[ib]), -32, 31);
            lq_vf dl = d * lq_tof(l);
            lq_vf idl = lq_self(dl != 0.f, 1.f / dl, lq_splat(0.f));
            for (int j = 0; j < 32; ++j)
            {
                lq_vf q;
                L[32 * ib + j] = lq_iq4_index(&T, idl * X[32 * ib + j], &q);
            }
            ls[ib] = l + 32;
        }
    } else {
        lq_fp16(scales[0], dh);
        lq_vf id = lq_self(scales[0] != 0.f, 1.f / scales[0], lq_splat(0.f));
        for (int j = 0; j < sb; ++j)
        {
            lq_vf q;
            L[j] = lq_iq4_index(&T, id * X[j], &q);
        }
    }
    uint8_t Lb[LN * QK];
    lq_lanes_bytes(L, sb, Lb);
    for (int k = 0; k < LN; k++) {
        const uint8_t *Lk = Lb + k * sb;
        uint8_t *q4;
        if (sb > 32) {
            qd_block_iq4_xs *y = (qd_block_iq4_xs *)yp[k];
            y->d = dh[k];
            uint16_t sh = 0;
            for (int ib = 0; ib < sb / 32; ++ib) {
                int l = lq_geti(ls[ib], k);
                uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
                if (ib % 2 == 0)
                    y->scales_l[ib / 2] = l_l;
                else
                    y->scales_l[ib / 2] = (uint8_t)(y->scales_l[ib / 2] | (l_l << 4));
                sh = (uint16_t)(sh | (l_h << 2 * (ib % 8)));
            }
            y->scales_h = sh;
            q4 = y->qs;
        } else {
            qd_block_iq4_nl *y = (qd_block_iq4_nl *)yp[k];
            y->d = dh[k];
            q4 = y->qs;
        }
        for (int i = 0; i < sb / 32; ++i)
            for (int j = 0; j < 16; ++j)
                q4[16 * i + j] = (uint8_t)(Lk[32 * i + j] | (Lk[32 * i + 16 + j] << 4));
    }
}

/* ---- legacy types with an importance matrix (the row's mean square comes in per lane) ---- */

/*
 * Q4_0 (nmax 8), Q5_0 (nmax 16) via qx; Q4_1 (15), Q5_1 (31) via qkx3, on LQ_MAXNS lane groups at once (block
 * g * LN + k is lane k of group g; sigma2[g] holds each lane's row mean square), interleaved like the K-quant
 * sub-blocks. Writes each block.
 */
static void lq_legacy_imatrix_group(qd_type t, const float *const *xp, const float *const *qwp, const lq_vf *sigma2,
                                    uint8_t *const *yp)
{
    lq_vf X[LQ_MAXNS * 32], W[LQ_MAXNS * 32], d[LQ_MAXNS], min[LQ_MAXNS];
    lq_vi L[LQ_MAXNS * 32];
    for (int g = 0; g < LQ_MAXNS; g++) {
        lq_load(X + 32 * g, xp + g * LN, 32);
        lq_load(W + 32 * g, qwp + g * LN, 32);
        lq_imatrix_weights(W + 32 * g, X + 32 * g, sigma2[g], 32, W + 32 * g);
    }
    const bool sym = t == QD_TYPE_Q4_0 || t == QD_TYPE_Q5_0;
    if (sym)
        lq_make_qx_n(LQ_MAXNS, 32, t == QD_TYPE_Q4_0 ? 8 : 16, X, L, W, d);
    else
        lq_make_qkx_n(LQ_MAXNS, 32, t == QD_TYPE_Q4_1 ? 15 : 31, X, W, L, d, min, -0.9f, 0.05f, 36, false, true);
    for (int g = 0; g < LQ_MAXNS; g++) {
        qd_fp16 dh[LN], mh[LN];
        lq_fp16(d[g], dh);
        if (!sym)
            lq_fp16(-min[g], mh);
        uint8_t Lb[LN * 32];
        lq_lanes_bytes(L + 32 * g, 32, Lb);
        for (int k = 0; k < LN; k++) {
            const uint8_t *Lk = Lb + k * 32;
            uint8_t *y = yp[g * LN + k], *qs;
            memcpy(y, &dh[k], 2);
            if (!sym)
                memcpy(y + 2, &mh[k], 2);
            if (t == QD_TYPE_Q4_0 || t == QD_TYPE_Q4_1) {
                qs = y + (t == QD_TYPE_Q4_0 ? 2 : 4);
                for (int j = 0; j < 16; ++j)
                    qs[j] = (uint8_t)(Lk[j] | (Lk[j + 16] << 4));
            } else {
                uint8_t *qh = y + (t == QD_TYPE_Q5_0 ? 2 : 4);
                qs = qh + 4;
                uint32_t h = 0;
                for (int j = 0; j < 16; ++j) {
                    uint8_t lo = Lk[j], hi = Lk[j + 16];
                    qs[j] = (uint8_t)((lo & 0x0F) | ((hi & 0x0F) << 4));
                    h |= ((lo & 0x10u) >> 4) << j;
                    h |= ((hi & 0x10u) >> 4) << (j + 16);
                }
                for (int b = 0; b < 4; b++)
                    qh[b] = (uint8_t)(h >> (8 * b));
            }
        }
    }
}

/* ---- drivers: rows of blocks in groups of LN, the last group padded with copies of its first block ---- */

static void lq_group_k(qd_type t, const float *const *xp, const float *const *qwp, uint8_t *const *yp)
{
    switch (t) {
    case QD_TYPE_Q2_K: lq_q2_K_group(xp, qwp, yp); break;
    case QD_TYPE_Q3_K: lq_q3_K_group(xp, qwp, yp); break;
    case QD_TYPE_Q4_K: lq_k45_group(xp, qwp, yp, 15); break;
    case QD_TYPE_Q5_K: lq_k45_group(xp, qwp, yp, 31); break;
    case QD_TYPE_Q6_K: lq_q6_K_group(xp, qwp, yp); break;
    case QD_TYPE_IQ4_NL: lq_iq4_group(32, xp, qwp, yp); break;
    case QD_TYPE_IQ4_XS: lq_iq4_group(QK, xp, qwp, yp); break;
    default: break;
    }
}

/*
 * The row mean square of the legacy importance weights, ggml's order (a float sum in index order, divided by the
 * count), for up to 8 consecutive rows at once: each row's sum is its own serial chain, so they overlap.
 */
static void lq_rows_sigma2(const float *x, int64_t ncols, int nr, float *out)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (nr == 8) {
        for (int64_t j = 0; j < ncols; ++j)
            for (int r = 0; r < 8; r++)
                s[r] += x[r * ncols + j] * x[r * ncols + j];
    } else {
        for (int r = 0; r < nr; r++)
            for (int64_t j = 0; j < ncols; ++j)
                s[r] += x[r * ncols + j] * x[r * ncols + j];
    }
    for (int r = 0; r < nr; r++)
        out[r] = s[r] / ncols;
}

/* Groups of LN blocks (LQ_MAXNS groups at a time for the legacy imatrix types), the last padded. */
static void lq_run(qd_type t, int bs, size_t bytes, const float *src, void *dst, int64_t nrows, int64_t ncols,
                   const float *qw, bool legacy)
{
    enum { G = LN * LQ_MAXNS };
    const int64_t nb = ncols / bs, total = nrows * nb;
    const int span = legacy ? G : LN;
    uint8_t scratch[G][292];
    const float *xp[G], *qp[G];
    uint8_t *yp[G];
    float s2[G], cache[8];
    int64_t cache_row = -1; /* cache[i] is the mean square of row cache_row + i */
    for (int64_t g = 0; g < total; g += span) {
        for (int k = 0; k < span; k++) {
            const int64_t b = g + k < total ? g + k : g;
            xp[k] = src + b * bs;
            qp[k] = qw ? qw + (b % nb) * bs : NULL;
            yp[k] = g + k < total ? (uint8_t *)dst + b * bytes : scratch[k];
            if (legacy) {
                const int64_t r = b / nb;
                if (cache_row < 0 || r < cache_row || r >= cache_row + 8) {
                    const int nr = nrows - r < 8 ? (int)(nrows - r) : 8;
                    lq_rows_sigma2(src + r * ncols, ncols, nr, cache);
                    cache_row = r;
                }
                s2[k] = cache[r - cache_row];
            }
        }
        if (legacy) {
            lq_vf sigma2[LQ_MAXNS];
            memcpy(sigma2, s2, sizeof(sigma2));
            lq_legacy_imatrix_group(t, xp, qp, sigma2, yp);
        } else {
            lq_group_k(t, xp, qw ? qp : NULL, yp);
        }
    }
}

#define LQ_WRAP(name, type, bs, st)                                                                                \
    static void lq_quantize_##name(const float *src, void *dst, int64_t nrows, int64_t ncols)                      \
    {                                                                                                              \
        lq_run(type, bs, sizeof(st), src, dst, nrows, ncols, NULL, false);                                         \
    }                                                                                                              \
    static void lq_quantize_##name##_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols,            \
                                             const float *qw)                                                      \
    {                                                                                                              \
        lq_run(type, bs, sizeof(st), src, dst, nrows, ncols, qw, false);                                           \
    }

LQ_WRAP(q2_K, QD_TYPE_Q2_K, QK, qd_block_q2_K)
LQ_WRAP(q3_K, QD_TYPE_Q3_K, QK, qd_block_q3_K)
LQ_WRAP(q4_K, QD_TYPE_Q4_K, QK, qd_block_q4_K)
LQ_WRAP(q5_K, QD_TYPE_Q5_K, QK, qd_block_q5_K)
LQ_WRAP(q6_K, QD_TYPE_Q6_K, QK, qd_block_q6_K)
LQ_WRAP(iq4_nl, QD_TYPE_IQ4_NL, 32, qd_block_iq4_nl)
LQ_WRAP(iq4_xs, QD_TYPE_IQ4_XS, QK, qd_block_iq4_xs)

#define LQ_WRAP_LEGACY(name, type, st)                                                                             \
    static void lq_quantize_##name##_imatrix(const float *src, void *dst, int64_t nrows, int64_t ncols,            \
                                             const float *qw)                                                      \
    {                                                                                                              \
        lq_run(type, 32, sizeof(st), src, dst, nrows, ncols, qw, true);                                            \
    }

LQ_WRAP_LEGACY(q4_0, QD_TYPE_Q4_0, qd_block_q4_0)
LQ_WRAP_LEGACY(q4_1, QD_TYPE_Q4_1, qd_block_q4_1)
LQ_WRAP_LEGACY(q5_0, QD_TYPE_Q5_0, qd_block_q5_0)
LQ_WRAP_LEGACY(q5_1, QD_TYPE_Q5_1, qd_block_q5_1)

#undef QK
#undef LN
#endif
