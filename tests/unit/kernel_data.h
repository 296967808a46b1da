/*
 * kernel_data.h - seeded rows for the kernel tests (test_kernels_simd.c, test_cuda.c): heavy tails, zeros and
 * signed zeros, denormals, +-max, exact ties, constant blocks, huge and tiny scales (around the 1e-15 all-zero
 * threshold too), and importance matrices with zero weights and wide ranges.
 */
#ifndef QD_TEST_KERNEL_DATA_H
#define QD_TEST_KERNEL_DATA_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

#include "qd/err.h"
#include "qd/quant.h"

/* A call that must return QD_OK; else the test fails with its code and message. */
#define OK(call)                                                                                                   \
    do {                                                                                                           \
        int rc_ = (call);                                                                                          \
        if (rc_ != QD_OK)                                                                                          \
            fail_msg("%s: %d (%s)", #call, rc_, qd_error_last()->message);                                         \
    } while (0)

/* The largest magnitude the current type's block scales still hold in fp16 (with headroom); Q4_1 and Q5_1 store
 * the block minimum itself as fp16. Set per type before generating its rows. */
static double g_max = 6e4;

static double max_for(qd_type t)
{
    switch (t) {
    case QD_TYPE_Q4_1:
    case QD_TYPE_Q5_1: return 3e4;
    case QD_TYPE_Q2_K: return 4e5; /* dmin = (largest sub-block min) / 15 */
    case QD_TYPE_Q8_0: return 8e6;
    case QD_TYPE_Q4_0: return 4e5; /* the imatrix search may pick d = max / 7.1 */
    case QD_TYPE_Q5_0: return 7e5;
    default: return 1e6;
    }
}

static double unif(tu_rng *r) { return (double)(tu_next(r) >> 11) * 0x1p-53; }

static double gauss(tu_rng *r)
{
    double u = unif(r), v = unif(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One chunk of n values in one of the edge-case modes. */
static void fill_chunk(tu_rng *r, float *x, int n, int mode)
{
    const double scale = pow(10.0, -6.0 + 9.0 * unif(r));
    for (int i = 0; i < n; i++) {
        double v;
        switch (mode) {
        case 0: v = gauss(r) * scale; break;
        case 1: { /* heavy tail: a normal over a small uniform */
            double u = unif(r) + 1e-3;
            v = gauss(r) * scale * 0.01 / (u * u);
            break;
        }
        case 2: v = (tu_next(r) & 1) ? 0.0 : -0.0; break;
        case 3: x[i] = from_bits((uint32_t)(tu_next(r) & 0x807fffffu)); continue; /* denormals and zeros */
        case 4: v = (tu_next(r) % 4 == 0) ? ((tu_next(r) & 1) ? g_max : -g_max) : gauss(r) * 1e3; break;
        case 5: v = ldexp((double)((int)(tu_next(r) % 33) - 16), (int)(tu_next(r) % 5) - 2); break; /* ties */
        case 6: v = i ? (double)x[0] : gauss(r) * scale; break;                                    /* constant */
        case 7: v = gauss(r) * pow(10.0, -30.0 + 15.0 * unif(r)); break;                          /* tiny */
        case 8: v = (i == (int)(tu_next(r) % (uint64_t)n)) ? gauss(r) * scale : 0.0; break;       /* spike */
        case 9: v = gauss(r) * g_max / 3; break;                                                        /* huge */
        case 10: x[i] = from_bits(0x26901d7du + (uint32_t)(tu_next(r) % 7) - 3u) * ((tu_next(r) & 1) ? 1 : -1);
            continue; /* around 1e-15 */
        case 11: v = fabs(gauss(r)) * scale + scale; break; /* all positive: min > 0 */
        default: v = -fabs(gauss(r)) * scale; break;       /* all non-positive */
        }
        if (v > g_max)
            v = g_max;
        if (v < -g_max)
            v = -g_max;
        x[i] = (float)v;
    }
}

#define NMODES 13

static void fill_row(tu_rng *r, float *x, int64_t n, int chunk)
{
    for (int64_t i = 0; i < n; i += chunk)
        fill_chunk(r, x + i, (int)(n - i < chunk ? n - i : chunk), (int)(tu_next(r) % (NMODES + 3)) % NMODES);
}

static void fill_imatrix(tu_rng *r, float *w, int64_t n)
{
    const int kind = (int)(tu_next(r) % 5);
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: w[i] = (float)(unif(r) * 10); break;
        case 1: w[i] = (tu_next(r) % 3 == 0) ? 0.f : (float)unif(r); break;
        case 2: w[i] = (float)pow(10.0, -8.0 + 14.0 * unif(r)); break;
        case 3: w[i] = (i / 32) % 3 == 1 ? 0.f : 1.f; break; /* whole zero-weight sub-blocks */
        default: w[i] = 1.f; break;
        }
    }
}

#endif
