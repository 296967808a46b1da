/*
 * codes.c - element codes of the Hugging Face quantized layouts: OCP FP8 (E4M3, E5M2), bitsandbytes NF4 / FP4
 * and bitsandbytes' 8-bit dynamic map. Written from the OCP OFP8 v1.0 spec and the descriptions in
 * ../shared/FORMATS.md section 5; docs/HF_FORMATS.md has the details.
 */
#include <math.h>
#include <string.h>

#include "qd/hfquant.h"

/* ---- FP8 ------------------------------------------------------------------------------------------------------ */

typedef struct fp8_fmt {
    int mbits, bias;
    double maxval;
    uint8_t max_code, nan_code, inf_code; /* inf_code 0: no infinity */
} fp8_fmt;

static const fp8_fmt fp8_fmts[2] = {
    [QD_FP8_E4M3] = {3, 7, 448.0, 0x7E, 0x7F, 0},
    [QD_FP8_E5M2] = {2, 15, 57344.0, 0x7B, 0x7F, 0x7C},
};

float qd_fp8_max(qd_fp8_kind k) { return (float)fp8_fmts[k & 1].maxval; }

uint8_t qd_fp8_from_f32(qd_fp8_kind k, float x, bool saturate)
{
    const fp8_fmt *f = &fp8_fmts[k & 1];
    uint8_t sign = signbit(x) ? 0x80 : 0;
    if (isnan(x))
        return sign | f->nan_code;
    double a = fabs((double)x);
    if (isinf(a))
        return sign | (saturate ? f->max_code : f->inf_code ? f->inf_code : f->nan_code);
    if (a == 0)
        return sign;
    /* the quantum (distance between neighbours) at a's binade; below the normal range it is the subnormal step */
    int e;
    (void)frexp(a, &e);
    e -= 1; /* a = m * 2^e, 1 <= m < 2 */
    int emin = 1 - f->bias;
    if (e < emin)
        e = emin;
    double quantum = ldexp(1.0, e - f->mbits);
    double r = nearbyint(a / quantum); /* exact division (power of two); nearbyint rounds ties to even */
    double v = r * quantum;
    if (v > f->maxval)
        return sign | (saturate ? f->max_code : f->inf_code ? f->inf_code : f->nan_code);
    if (v == 0)
        return sign;
    (void)frexp(v, &e);
    e -= 1;
    if (e < emin) /* subnormal: exponent field 0, mantissa = v / 2^(emin - mbits) */
        return sign | (uint8_t)(v / ldexp(1.0, emin - f->mbits));
    unsigned mant = (unsigned)(v / ldexp(1.0, e - f->mbits)) - (1u << f->mbits);
    return sign | (uint8_t)((unsigned)(e + f->bias) << f->mbits) | (uint8_t)mant;
}

float qd_fp8_to_f32(qd_fp8_kind k, uint8_t v)
{
    const fp8_fmt *f = &fp8_fmts[k & 1];
    int neg = v & 0x80, ebits = 7 - f->mbits;
    unsigned e = (v & 0x7F) >> f->mbits, m = v & ((1u << f->mbits) - 1);
    unsigned emax_field = (1u << ebits) - 1;
    float r;
    if (k == QD_FP8_E4M3 && e == emax_field && m == (1u << f->mbits) - 1)
        r = NAN;
    else if (k == QD_FP8_E5M2 && e == emax_field)
        r = m ? NAN : INFINITY;
    else if (e == 0)
        r = (float)ldexp((double)m, 1 - f->bias - f->mbits);
    else
        r = (float)ldexp(1.0 + (double)m / (double)(1u << f->mbits), (int)e - f->bias);
    return neg ? -r : r;
}

/* ---- bitsandbytes 4-bit --------------------------------------------------------------------------------------- */

/* NF4 as published in the QLoRA paper's appendix and bitsandbytes' get_4bit_type("nf4"), index 0..15 */
static const float nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* bnb FP4: {0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3}, divided (in f32) by the max, 12 */
static const float fp4_code[16] = {
    0.0f / 12.0f,  0.0625f / 12.0f,  8.0f / 12.0f,  12.0f / 12.0f,  4.0f / 12.0f,  6.0f / 12.0f,  2.0f / 12.0f,
    3.0f / 12.0f,  -0.0f / 12.0f,    -0.0625f / 12.0f, -8.0f / 12.0f, -12.0f / 12.0f, -4.0f / 12.0f, -6.0f / 12.0f,
    -2.0f / 12.0f, -3.0f / 12.0f,
};
/* magnitude order of the low three index bits */
static const uint8_t fp4_order[8] = {0, 1, 6, 7, 4, 5, 2, 3};

const float *qd_bnb4_code(qd_bnb4_kind k) { return k == QD_BNB_FP4 ? fp4_code : nf4_code; }

static float midpoint(float a, float b) { return (float)(((double)a + (double)b) / 2.0); }

uint8_t qd_bnb4_encode(qd_bnb4_kind k, float x)
{
    if (k == QD_BNB_NF4) {
        uint8_t idx = 0;
        if (isnan(x))
            return 7;
        for (int i = 0; i < 15; i++)
            if (x > midpoint(nf4_code[i], nf4_code[i + 1]))
                idx = (uint8_t)(i + 1);
        return idx;
    }
    if (isnan(x))
        return 0;
    uint8_t sign = x < 0 ? 8 : 0;
    float a = fabsf(x);
    int pos = 0;
    for (int i = 0; i < 7; i++)
        if (a > midpoint(fp4_code[fp4_order[i]], fp4_code[fp4_order[i + 1]]))
            pos = i + 1;
    return (uint8_t)(sign | fp4_order[pos]);
}

/*
 * create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i = 0..6, the midpoints of
 * linspace(0.1, 1, 2^i + 1) (computed in f32 as torch does: the first half from the start, the second half from the
 * end) scaled by +-10^(i-6); then 0 and 1; sorted.
 */
void qd_bnb_dynamic_map(float out[256])
{
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int steps = (1 << i) + 1;
        float b[65];
        float start = 0.1f, end = 1.0f, step = (end - start) / (float)(steps - 1);
        int half = steps / 2;
        for (int j = 0; j < steps; j++)
            b[j] = j < half ? start + step * (float)j : end - step * (float)(steps - j - 1);
        float scale = (float)pow(10.0, (double)(i - 6));
        for (int j = 0; j + 1 < steps; j++)
            out[n++] = scale * ((b[j] + b[j + 1]) / 2.0f);
        for (int j = 0; j + 1 < steps; j++)
            out[n++] = -scale * ((b[j] + b[j + 1]) / 2.0f);
    }
    out[n++] = 0.0f;
    out[n++] = 1.0f;
    /* n == 256; insertion sort (small, done once per tensor) */
    for (int i = 1; i < 256; i++) {
        float v = out[i];
        int j = i - 1;
        while (j >= 0 && out[j] > v) {
            out[j + 1] = out[j];
            j--;
        }
        out[j + 1] = v;
    }
}
