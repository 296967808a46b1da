/*
 * test_hfquant_codes.c - element codes of the HF layouts: NF4 / FP4 tables against the published values (and NF4
 * against the normal quantiles it is built from), the 4-bit encoders against brute-force nearest search, the
 * bitsandbytes dynamic map, OCP FP8 E4M3 / E5M2 decode over all 256 codes and encode on crafted edge cases (NaN,
 * saturation, subnormals, ties to even, negative zero) and on random values against brute force.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>

#include "qd/hfquant.h"
#include "qd/quant.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- NF4 / FP4 ------------------------------------------------------------------------------------------------ */

/* The 16 NF4 values as printed in the QLoRA paper (appendix E) and bitsandbytes' functional.py, index 0..15. */
static const char *const nf4_published[16] = {
    "-1.0",
    "-0.6961928009986877",
    "-0.5250730514526367",
    "-0.39491748809814453",
    "-0.28444138169288635",
    "-0.18477343022823334",
    "-0.09105003625154495",
    "0.0",
    "0.07958029955625534",
    "0.16093020141124725",
    "0.24611230194568634",
    "0.33791524171829224",
    "0.44070982933044434",
    "0.5626170039176941",
    "0.7229568362236023",
    "1.0",
};

/* inverse standard normal CDF by bisection on erfc (double): independent of the table */
static double norm_ppf(double p)
{
    double lo = -10, hi = 10;
    for (int i = 0; i < 200; i++) {
        double mid = (lo + hi) / 2, c = 0.5 * erfc(-mid / sqrt(2.0));
        if (c < p)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}

static void test_hfquant__nf4_table_published_and_normal_quantiles(void **state)
{
    (void)state;
    const float *c = qd_bnb4_code(QD_BNB_NF4);
    for (int i = 0; i < 16; i++)
        assert_int_equal(bits(c[i]), bits((float)strtod(nf4_published[i], NULL)));
    /* QLoRA: 8 positive quantiles of linspace(offset, 0.5, 9)[:-1], 7 negative of linspace(offset, 0.5, 8)[:-1],
     * offset = 0.9677083, plus an exact 0; normalized by the largest. */
    const double off = 0.9677083;
    double v[16];
    int n = 0;
    for (int i = 0; i < 7; i++) /* negatives, ascending */
        v[n++] = -norm_ppf(off + (0.5 - off) * (double)i / 7.0);
    v[n++] = 0;
    for (int i = 7; i >= 0; i--)
        v[n++] = norm_ppf(off + (0.5 - off) * (double)i / 8.0);
    double mx = v[15];
    for (int i = 0; i < 16; i++)
        assert_true(fabs(v[i] / mx - (double)c[i]) < 2e-6);
    /* strictly increasing by index */
    for (int i = 1; i < 16; i++)
        assert_true(c[i] > c[i - 1]);
}

static void test_hfquant__fp4_table_published(void **state)
{
    (void)state;
    static const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
    const float *c = qd_bnb4_code(QD_BNB_FP4);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(bits(c[i]), bits(raw[i] / 12.0f));
        assert_int_equal(!!signbit(c[i]), i >= 8); /* bit 3 is the sign */
    }
    assert_int_equal(bits(c[3]), bits(1.0f));
}

/* brute-force nearest code; at an exact midpoint the lower value wins (bitsandbytes' strict ">" trees) */
static int nearest4(const float *c, float x, int fp4)
{
    int best = -1;
    double bd = INFINITY;
    for (int i = 0; i < 16; i++) {
        if (fp4 && i >= 8 && !(x < 0)) /* fp4: sign from x; -0 codes only for negative x */
            continue;
        if (fp4 && i < 8 && x < 0)
            continue;
        double d = fabs((double)x - (double)c[i]);
        if (d < bd || (d == bd && fabs((double)c[i]) < fabs((double)c[best]) && fp4) ||
            (d == bd && !fp4 && c[i] < c[best])) {
            bd = d;
            best = i;
        }
    }
    return best;
}

static void test_hfquant__bnb4_encode_is_nearest(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    for (int k = 0; k < 2; k++) {
        qd_bnb4_kind kind = k ? QD_BNB_FP4 : QD_BNB_NF4;
        const float *c = qd_bnb4_code(kind);
        for (int i = 0; i < 16; i++) {
            if (kind == QD_BNB_FP4 && i == 8)
                continue; /* -0: x < 0 is false, so 0 encodes as index 0 */
            assert_int_equal(qd_bnb4_encode(kind, c[i]), i);
        }
        for (int it = 0; it < 20000; it++) {
            float x = (float)((double)(tu_next(&r) >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
            int got = qd_bnb4_encode(kind, x), want = nearest4(c, x, k);
            if (got != want) {
                /* bitsandbytes' thresholds are f32 midpoints, and x > threshold picks the next code up (NF4: the next
                 * index; FP4: the next magnitude): an x equal to a midpoint that f32 rounded past the exact one is
                 * nearer that next code yet takes the one below */
                float mid = (float)(((double)c[got] + (double)c[want]) / 2.0);
                if (x != mid || !(k ? fabsf(c[got]) < fabsf(c[want]) : got < want))
                    fail_msg("%s encode(%a) = %d, the nearest code is %d", k ? "fp4" : "nf4", (double)x, got, want);
            }
        }
    }
    /* NF4 midpoint between index 13 and 14 */
    const float *n = qd_bnb4_code(QD_BNB_NF4);
    float m = (float)(((double)n[13] + (double)n[14]) / 2.0);
    assert_int_equal(qd_bnb4_encode(QD_BNB_NF4, m), 13);
    assert_int_equal(qd_bnb4_encode(QD_BNB_NF4, nextafterf(m, 2.0f)), 14);
    assert_int_equal(qd_bnb4_encode(QD_BNB_NF4, NAN), 7);
    assert_int_equal(qd_bnb4_encode(QD_BNB_NF4, 5.0f), 15);
    assert_int_equal(qd_bnb4_encode(QD_BNB_NF4, -5.0f), 0);
    /* FP4: 0.0859375 is bnb's threshold between 1/12*0.0625*... (index 1) and 2/12 (index 6) */
    assert_int_equal(qd_bnb4_encode(QD_BNB_FP4, 0.0859375f), 1);
    assert_int_equal(qd_bnb4_encode(QD_BNB_FP4, 0.0860f), 6);
    assert_int_equal(qd_bnb4_encode(QD_BNB_FP4, -0.0860f), 14);
    assert_int_equal(qd_bnb4_encode(QD_BNB_FP4, -1.0f), 11);
    assert_int_equal(qd_bnb4_encode(QD_BNB_FP4, -0.0f), 0);
}

static void test_hfquant__bnb_dynamic_map(void **state)
{
    (void)state;
    float m[256];
    qd_bnb_dynamic_map(m);
    int neg = 0, pos = 0, zero = 0;
    for (int i = 0; i < 256; i++) {
        if (i)
            assert_true(m[i] > m[i - 1]); /* sorted, no duplicates */
        neg += m[i] < 0;
        pos += m[i] > 0;
        zero += m[i] == 0;
    }
    assert_int_equal(neg, 127);
    assert_int_equal(zero, 1);
    assert_int_equal(pos, 128);
    assert_int_equal(bits(m[255]), bits(1.0f));
    /* smallest magnitude: 1e-6 * mean(0.1, 1) = 5.5e-7; largest below 1: 1 - 0.9/128 = 0.99296875 */
    assert_true(fabsf(m[128] - 5.5e-7f) < 1e-12f);
    assert_true(fabsf(m[126] + 5.5e-7f) < 1e-12f);
    assert_true(m[127] == 0.0f);
    assert_true(fabsf(m[254] - 0.99296875f) < 1e-6f);
    assert_true(fabsf(m[0] + 0.99296875f) < 1e-6f);
}

/* ---- FP8 ------------------------------------------------------------------------------------------------------ */

/* E4M3 from the OCP definition with integer arithmetic only */
static float e4m3_ref(uint8_t c)
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7)
        return NAN;
    float v = e == 0 ? (float)m / 512.0f : (float)(8 + m) / 8.0f * (float)(1u << e) / 128.0f;
    return s ? -v : v;
}

static void test_hfquant__fp8_decode_all_codes(void **state)
{
    (void)state;
    int nan4 = 0, nan5 = 0, inf5 = 0;
    for (int c = 0; c < 256; c++) {
        float a = qd_fp8_to_f32(QD_FP8_E4M3, (uint8_t)c), ra = e4m3_ref((uint8_t)c);
        if (isnan(ra)) {
            assert_true(isnan(a));
            nan4++;
        } else {
            assert_int_equal(bits(a), bits(ra));
        }
        /* E5M2 is the high byte of an IEEE binary16: decode through ggml's fp16 converter */
        uint16_t h = (uint16_t)(c << 8);
        float b = qd_fp8_to_f32(QD_FP8_E5M2, (uint8_t)c), rb;
        assert_int_equal(qd_dequantize_rows(QD_TYPE_F16, &h, &rb, 1, 1), 0);
        if (isnan(rb)) {
            assert_true(isnan(b));
            nan5++;
        } else {
            assert_int_equal(bits(b), bits(rb));
            inf5 += isinf(b) ? 1 : 0;
        }
        /* every non-NaN code survives encode(decode(c)) in both modes */
        if (!isnan(a)) {
            assert_int_equal(qd_fp8_from_f32(QD_FP8_E4M3, a, true), c);
            assert_int_equal(qd_fp8_from_f32(QD_FP8_E4M3, a, false), c);
        }
        if (!isnan(b) && !isinf(b)) {
            assert_int_equal(qd_fp8_from_f32(QD_FP8_E5M2, b, true), c);
            assert_int_equal(qd_fp8_from_f32(QD_FP8_E5M2, b, false), c);
        }
    }
    assert_int_equal(nan4, 2); /* S.1111.111 only */
    assert_int_equal(nan5, 6); /* S.11111.{01,10,11} */
    assert_int_equal(inf5, 2);
    assert_true(qd_fp8_to_f32(QD_FP8_E4M3, 0x7E) == 448.0f);
    assert_true(qd_fp8_to_f32(QD_FP8_E4M3, 0xFE) == -448.0f);
    assert_true(qd_fp8_to_f32(QD_FP8_E4M3, 0x08) == ldexpf(1, -6));
    assert_true(qd_fp8_to_f32(QD_FP8_E4M3, 0x01) == ldexpf(1, -9));
    assert_true(qd_fp8_to_f32(QD_FP8_E5M2, 0x7B) == 57344.0f);
    assert_true(qd_fp8_to_f32(QD_FP8_E5M2, 0x04) == ldexpf(1, -14));
    assert_true(qd_fp8_to_f32(QD_FP8_E5M2, 0x01) == ldexpf(1, -16));
    assert_true(isinf(qd_fp8_to_f32(QD_FP8_E5M2, 0xFC)) && qd_fp8_to_f32(QD_FP8_E5M2, 0xFC) < 0);
    assert_int_equal(bits(qd_fp8_to_f32(QD_FP8_E4M3, 0x80)), 0x80000000u); /* -0 */
    assert_int_equal(bits(qd_fp8_to_f32(QD_FP8_E5M2, 0x80)), 0x80000000u);
    assert_true(qd_fp8_max(QD_FP8_E4M3) == 448.0f && qd_fp8_max(QD_FP8_E5M2) == 57344.0f);
}

static void test_hfquant__fp8_encode_edges(void **state)
{
    (void)state;
    const qd_fp8_kind E4 = QD_FP8_E4M3, E5 = QD_FP8_E5M2;
    /* NaN keeps its sign; Inf saturates or becomes NaN (E4M3) / Inf (E5M2) */
    assert_int_equal(qd_fp8_from_f32(E4, NAN, true), 0x7F);
    assert_int_equal(qd_fp8_from_f32(E4, -NAN, false), 0xFF);
    assert_int_equal(qd_fp8_from_f32(E5, NAN, true), 0x7F);
    assert_int_equal(qd_fp8_from_f32(E4, INFINITY, true), 0x7E);
    assert_int_equal(qd_fp8_from_f32(E4, -INFINITY, true), 0xFE);
    assert_int_equal(qd_fp8_from_f32(E4, INFINITY, false), 0x7F);
    assert_int_equal(qd_fp8_from_f32(E5, INFINITY, false), 0x7C);
    assert_int_equal(qd_fp8_from_f32(E5, -INFINITY, false), 0xFC);
    assert_int_equal(qd_fp8_from_f32(E5, INFINITY, true), 0x7B);
    /* saturation: E4M3 max 448 = 1.110b x 2^8; 464 is the tie with the missing 480 -> even (448); above -> over */
    assert_int_equal(qd_fp8_from_f32(E4, 448.0f, false), 0x7E);
    assert_int_equal(qd_fp8_from_f32(E4, 464.0f, false), 0x7E);
    assert_int_equal(qd_fp8_from_f32(E4, 464.5f, false), 0x7F);
    assert_int_equal(qd_fp8_from_f32(E4, 464.5f, true), 0x7E);
    assert_int_equal(qd_fp8_from_f32(E4, -1e30f, true), 0xFE);
    assert_int_equal(qd_fp8_from_f32(E4, FLT_MAX, false), 0x7F);
    /* E5M2 max 57344 = 1.11b x 2^15 (odd mantissa): the tie 61440 rounds to even, i.e. up, to Inf */
    assert_int_equal(qd_fp8_from_f32(E5, 61439.0f, false), 0x7B);
    assert_int_equal(qd_fp8_from_f32(E5, 61440.0f, false), 0x7C);
    assert_int_equal(qd_fp8_from_f32(E5, 61440.0f, true), 0x7B);
    assert_int_equal(qd_fp8_from_f32(E5, -70000.0f, false), 0xFC);
    /* ties to even in the normal range */
    assert_int_equal(qd_fp8_from_f32(E4, 1.0625f, true), 0x38);   /* 1 + 1/16: between 1.0 (m=0) and 1.125 */
    assert_int_equal(qd_fp8_from_f32(E4, 1.1875f, true), 0x3A);   /* between 1.125 (m=1) and 1.25 (m=2) */
    assert_int_equal(qd_fp8_from_f32(E4, nextafterf(1.0625f, 2), true), 0x39);
    assert_int_equal(qd_fp8_from_f32(E5, 1.125f, true), 0x3C);    /* between 1.0 and 1.25 */
    assert_int_equal(qd_fp8_from_f32(E5, 1.375f, true), 0x3E);    /* between 1.25 and 1.5 */
    assert_int_equal(qd_fp8_from_f32(E4, 15.5f, true), 0x58);     /* 15 (1.111b x 2^3) .. 16 (2^4): tie -> 16 */
    /* subnormals: E4M3 step 2^-9, E5M2 step 2^-16 */
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(1, -9), true), 0x01);
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(1, -10), true), 0x00);            /* tie 0 / 1 -> 0 */
    assert_int_equal(qd_fp8_from_f32(E4, -ldexpf(1, -10), true), 0x80);           /* to -0 */
    assert_int_equal(qd_fp8_from_f32(E4, nextafterf(ldexpf(1, -10), 1), true), 0x01);
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(3, -10), true), 0x02);            /* tie 1 / 2 -> 2 */
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(5, -10), true), 0x02);            /* tie 2 / 3 -> 2 */
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(7, -9), true), 0x07);             /* largest subnormal */
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(15, -10), true), 0x08);           /* tie 7 / 8 -> min normal */
    assert_int_equal(qd_fp8_from_f32(E4, ldexpf(1, -30), true), 0x00);
    assert_int_equal(qd_fp8_from_f32(E4, FLT_TRUE_MIN, true), 0x00);
    assert_int_equal(qd_fp8_from_f32(E5, ldexpf(1, -16), true), 0x01);
    assert_int_equal(qd_fp8_from_f32(E5, ldexpf(1, -17), true), 0x00);
    assert_int_equal(qd_fp8_from_f32(E5, ldexpf(3, -17), true), 0x02);
    assert_int_equal(qd_fp8_from_f32(E5, ldexpf(7, -17), true), 0x04);            /* tie 3 / 4 -> min normal */
    /* negative zero */
    assert_int_equal(qd_fp8_from_f32(E4, -0.0f, true), 0x80);
    assert_int_equal(qd_fp8_from_f32(E5, -0.0f, false), 0x80);
    assert_int_equal(qd_fp8_from_f32(E4, 0.0f, true), 0x00);
}

/* brute force: the nearest finite code, ties to the even code (mantissa LSB 0), overflow saturates */
static uint8_t fp8_brute(qd_fp8_kind k, float x)
{
    int best = -1;
    double bd = INFINITY;
    for (int c = 0; c < 256; c++) {
        float v = qd_fp8_to_f32(k, (uint8_t)c);
        if (isnan(v) || isinf(v) || (!!signbit(v) != !!signbit(x)))
            continue;
        double d = fabs((double)x - (double)v);
        if (d < bd || (d == bd && (c & 1) == 0)) {
            bd = d;
            best = c;
        }
    }
    return (uint8_t)best;
}

static void test_hfquant__fp8_encode_random_vs_brute_force(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 1);
    for (int k = 0; k < 2; k++) {
        qd_fp8_kind kind = (qd_fp8_kind)k;
        float mx = qd_fp8_max(kind);
        for (int it = 0; it < 20000; it++) {
            uint64_t u = tu_next(&r);
            /* log-uniform magnitudes across the whole range incl. subnormals, random sign */
            float lo = k ? -18.0f : -11.0f, hi = log2f(mx);
            float e = lo + (hi - lo) * (float)((u >> 11) & 0xFFFFF) / 1048576.0f;
            float x = exp2f(e) * ((u & 1) ? -1.0f : 1.0f);
            assert_int_equal(qd_fp8_from_f32(kind, x, true), fp8_brute(kind, x));
        }
        /* exact ties between every pair of neighbouring finite positive codes */
        int top = k ? 0x7B : 0x7E;
        for (int c = 0; c < top; c++) {
            float a = qd_fp8_to_f32(kind, (uint8_t)c), b = qd_fp8_to_f32(kind, (uint8_t)(c + 1));
            float mid = (float)(((double)a + (double)b) / 2.0);
            assert_int_equal(qd_fp8_from_f32(kind, mid, true), (c & 1) ? c + 1 : c);
            assert_int_equal(qd_fp8_from_f32(kind, -mid, true), ((c & 1) ? c + 1 : c) | 0x80);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hfquant__nf4_table_published_and_normal_quantiles),
        cmocka_unit_test(test_hfquant__fp4_table_published),
        cmocka_unit_test(test_hfquant__bnb4_encode_is_nearest),
        cmocka_unit_test(test_hfquant__bnb_dynamic_map),
        cmocka_unit_test(test_hfquant__fp8_decode_all_codes),
        cmocka_unit_test(test_hfquant__fp8_encode_edges),
        cmocka_unit_test(test_hfquant__fp8_encode_random_vs_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
