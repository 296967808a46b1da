/*
 * dispatch.c - type traits, the kernel tables and their selection, and the checked entry points of quant.h.
 *
 * The reference table is complete for the types this build quantizes; SIMD variants (the next issue) add tables
 * with the same layout, and a NULL entry there falls back to the reference. qd_kernels_select() picks the table
 * once (QD_KERNELS=ref|avx2|avx512 forces one); call sites never contain an #ifdef.
 */
#include <math.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels.h"
#include "qd/err.h"
#include "qd/log.h"

/* ---- type traits (ggml's names, block sizes and bytes per block) ---- */

#define PLAIN(nm, sz, q) {nm, 1, sz, false, q, false}
#define BLOCK(nm, bs, sz, q, imat) {nm, bs, sz, true, q, imat}

static const qd_type_traits traits[QD_TYPE_COUNT] = {
    [QD_TYPE_F32] = PLAIN("f32", 4, true),
    [QD_TYPE_F16] = PLAIN("f16", 2, true),
    [QD_TYPE_BF16] = PLAIN("bf16", 2, true),
    [QD_TYPE_F64] = PLAIN("f64", 8, false),
    [QD_TYPE_I8] = PLAIN("i8", 1, false),
    [QD_TYPE_I16] = PLAIN("i16", 2, false),
    [QD_TYPE_I32] = PLAIN("i32", 4, false),
    [QD_TYPE_I64] = PLAIN("i64", 8, false),
    [QD_TYPE_Q4_0] = BLOCK("q4_0", 32, 18, true, false),
    [QD_TYPE_Q4_1] = BLOCK("q4_1", 32, 20, true, false),
    [QD_TYPE_Q5_0] = BLOCK("q5_0", 32, 22, true, false),
    [QD_TYPE_Q5_1] = BLOCK("q5_1", 32, 24, true, false),
    [QD_TYPE_Q8_0] = BLOCK("q8_0", 32, 34, true, false),
    [QD_TYPE_Q8_1] = BLOCK("q8_1", 32, 36, false, false),
    [QD_TYPE_Q2_K] = BLOCK("q2_K", 256, 84, true, false),
    [QD_TYPE_Q3_K] = BLOCK("q3_K", 256, 110, true, false),
    [QD_TYPE_Q4_K] = BLOCK("q4_K", 256, 144, true, false),
    [QD_TYPE_Q5_K] = BLOCK("q5_K", 256, 176, true, false),
    [QD_TYPE_Q6_K] = BLOCK("q6_K", 256, 210, true, false),
    [QD_TYPE_Q8_K] = BLOCK("q8_K", 256, 292, false, false), /* activations only: kernels exist, not offered */
    [QD_TYPE_IQ2_XXS] = BLOCK("iq2_xxs", 256, 66, true, true),
    [QD_TYPE_IQ2_XS] = BLOCK("iq2_xs", 256, 74, true, true),
    [QD_TYPE_IQ3_XXS] = BLOCK("iq3_xxs", 256, 98, true, false),
    [QD_TYPE_IQ1_S] = BLOCK("iq1_s", 256, 50, true, true),
    [QD_TYPE_IQ4_NL] = BLOCK("iq4_nl", 32, 18, true, false),
    [QD_TYPE_IQ3_S] = BLOCK("iq3_s", 256, 110, true, false),
    [QD_TYPE_IQ2_S] = BLOCK("iq2_s", 256, 82, true, false),
    [QD_TYPE_IQ4_XS] = BLOCK("iq4_xs", 256, 136, true, false),
    [QD_TYPE_IQ1_M] = BLOCK("iq1_m", 256, 56, true, false),
    [QD_TYPE_TQ1_0] = BLOCK("tq1_0", 256, 54, true, false),
    [QD_TYPE_TQ2_0] = BLOCK("tq2_0", 256, 66, true, false),
    [QD_TYPE_MXFP4] = BLOCK("mxfp4", 32, 17, true, false),
    [QD_TYPE_NVFP4] = BLOCK("nvfp4", 64, 36, true, false),
};

const qd_type_traits *qd_type_traits_get(qd_type t)
{
    if ((int)t < 0 || t >= QD_TYPE_COUNT || !traits[t].name)
        return NULL;
    return &traits[t];
}

int qd_type_from_name(const char *name, qd_type *out)
{
    if (!name || !*name)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "empty tensor type name");
    for (int t = 0; t < QD_TYPE_COUNT; t++) {
        if (traits[t].name && !strcasecmp(traits[t].name, name)) {
            *out = (qd_type)t;
            return QD_OK;
        }
    }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown tensor type '%s' (ggml names: f32, f16, bf16, q4_0, q8_0, "
                        "q4_K, iq4_nl, mxfp4, tq1_0, ...)", name);
}

size_t qd_row_size(qd_type t, int64_t ncols)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    if (!tr || ncols <= 0 || ncols % tr->block_size)
        return 0;
    return (size_t)(ncols / tr->block_size) * tr->type_size;
}

/* ---- the tables ---- */

#define OPS(q, qi, dq) {q, qi, dq}

static bool all_within(const float *x, int64_t n, float max_abs);

const qd_kernel_table qd_kernels_ref = {
    .variant = QD_KERNELS_REF,
    .name = "ref",
    .ops = {
        [QD_TYPE_F32] = OPS(qd_ref_quantize_f32, NULL, qd_ref_dequantize_f32),
        [QD_TYPE_F16] = OPS(qd_ref_quantize_f16, NULL, qd_ref_dequantize_f16),
        [QD_TYPE_BF16] = OPS(qd_ref_quantize_bf16, NULL, qd_ref_dequantize_bf16),
        [QD_TYPE_Q4_0] = OPS(qd_ref_quantize_q4_0, qd_ref_quantize_q4_0_imatrix, qd_ref_dequantize_q4_0),
        [QD_TYPE_Q4_1] = OPS(qd_ref_quantize_q4_1, qd_ref_quantize_q4_1_imatrix, qd_ref_dequantize_q4_1),
        [QD_TYPE_Q5_0] = OPS(qd_ref_quantize_q5_0, qd_ref_quantize_q5_0_imatrix, qd_ref_dequantize_q5_0),
        [QD_TYPE_Q5_1] = OPS(qd_ref_quantize_q5_1, qd_ref_quantize_q5_1_imatrix, qd_ref_dequantize_q5_1),
        [QD_TYPE_Q8_0] = OPS(qd_ref_quantize_q8_0, NULL, qd_ref_dequantize_q8_0),
        [QD_TYPE_Q2_K] = OPS(qd_ref_quantize_q2_K, qd_ref_quantize_q2_K_imatrix, qd_ref_dequantize_q2_K),
        [QD_TYPE_Q3_K] = OPS(qd_ref_quantize_q3_K, qd_ref_quantize_q3_K_imatrix, qd_ref_dequantize_q3_K),
        [QD_TYPE_Q4_K] = OPS(qd_ref_quantize_q4_K, qd_ref_quantize_q4_K_imatrix, qd_ref_dequantize_q4_K),
        [QD_TYPE_Q5_K] = OPS(qd_ref_quantize_q5_K, qd_ref_quantize_q5_K_imatrix, qd_ref_dequantize_q5_K),
        [QD_TYPE_Q6_K] = OPS(qd_ref_quantize_q6_K, qd_ref_quantize_q6_K_imatrix, qd_ref_dequantize_q6_K),
        [QD_TYPE_Q8_K] = OPS(qd_ref_quantize_q8_K, NULL, qd_ref_dequantize_q8_K),
        [QD_TYPE_IQ4_NL] = OPS(qd_ref_quantize_iq4_nl, qd_ref_quantize_iq4_nl_imatrix, qd_ref_dequantize_iq4_nl),
        [QD_TYPE_IQ4_XS] = OPS(qd_ref_quantize_iq4_xs, qd_ref_quantize_iq4_xs_imatrix, qd_ref_dequantize_iq4_xs),
        [QD_TYPE_MXFP4] = OPS(qd_ref_quantize_mxfp4, NULL, qd_ref_dequantize_mxfp4),
        [QD_TYPE_IQ1_S] = OPS(NULL, qd_ref_quantize_iq1_s_imatrix, qd_ref_dequantize_iq1_s),
        [QD_TYPE_IQ1_M] = OPS(qd_ref_quantize_iq1_m, qd_ref_quantize_iq1_m_imatrix, qd_ref_dequantize_iq1_m),
        [QD_TYPE_IQ2_XXS] = OPS(NULL, qd_ref_quantize_iq2_xxs_imatrix, qd_ref_dequantize_iq2_xxs),
        [QD_TYPE_IQ2_XS] = OPS(NULL, qd_ref_quantize_iq2_xs_imatrix, qd_ref_dequantize_iq2_xs),
        [QD_TYPE_IQ2_S] = OPS(qd_ref_quantize_iq2_s, qd_ref_quantize_iq2_s_imatrix, qd_ref_dequantize_iq2_s),
        [QD_TYPE_IQ3_XXS] = OPS(qd_ref_quantize_iq3_xxs, qd_ref_quantize_iq3_xxs_imatrix, qd_ref_dequantize_iq3_xxs),
        [QD_TYPE_IQ3_S] = OPS(qd_ref_quantize_iq3_s, qd_ref_quantize_iq3_s_imatrix, qd_ref_dequantize_iq3_s),
        [QD_TYPE_NVFP4] = OPS(qd_ref_quantize_nvfp4, NULL, qd_ref_dequantize_nvfp4),
        [QD_TYPE_TQ1_0] = OPS(qd_ref_quantize_tq1_0, NULL, qd_ref_dequantize_tq1_0),
        [QD_TYPE_TQ2_0] = OPS(qd_ref_quantize_tq2_0, NULL, qd_ref_dequantize_tq2_0),
    },
    .within = all_within,
};

/* Every variant this build has, best first (arch/x86/avx512.c, avx2.c). */
#if defined(__x86_64__)
static const qd_kernel_table *const variants[] = {&qd_kernels_avx512, &qd_kernels_avx2, &qd_kernels_ref};
#else
static const qd_kernel_table *const variants[] = {&qd_kernels_ref};
#endif

static const char *const variant_names[] = {
    [QD_KERNELS_REF] = "ref", [QD_KERNELS_AVX2] = "avx2", [QD_KERNELS_AVX512] = "avx512", [QD_KERNELS_CUDA] = "cuda"};

const char *qd_kernels_name(qd_kernel_variant v)
{
    if ((int)v < 0 || (size_t)v >= sizeof(variant_names) / sizeof(variant_names[0]))
        return "unknown";
    return variant_names[v];
}

#if defined(__x86_64__) || defined(__i386__)
/* F16C (CPUID leaf 1, ECX bit 29): both x86 variants convert fp16 with it; clang's __builtin_cpu_supports does
 * not know the name. */
static bool has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

/* Whether this CPU could run a variant (independently of whether the build has it). */
static bool cpu_supports(qd_kernel_variant v)
{
    switch (v) {
    case QD_KERNELS_REF:
        return true;
#if defined(__x86_64__) || defined(__i386__)
    case QD_KERNELS_AVX2:
        return __builtin_cpu_supports("avx2") && has_f16c();
    case QD_KERNELS_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") && has_f16c();
#endif
    default:
        return false;
    }
}

bool qd_kernels_built(qd_kernel_variant v)
{
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
        if (variants[i]->variant == v)
            return true;
    return false;
}

bool qd_kernels_usable(qd_kernel_variant v) { return qd_kernels_built(v) && cpu_supports(v); }

const char *qd_kernels_cpu_features(void)
{
    static _Thread_local char buf[256];
    size_t off = 0;
    buf[0] = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* __builtin_cpu_supports takes a literal, hence the macro */
#define FEATURE(s)                                                                                                 \
    if (__builtin_cpu_supports(s) && off < sizeof(buf)) {                                                          \
        int n = snprintf(buf + off, sizeof(buf) - off, "%s%s", off ? " " : "", s);                                \
        if (n > 0)                                                                                                 \
            off += (size_t)n;                                                                                      \
    }
    FEATURE("sse2")
    FEATURE("sse4.1")
    FEATURE("sse4.2")
    FEATURE("popcnt")
    FEATURE("avx")
    FEATURE("fma")
    FEATURE("avx2")
    FEATURE("bmi2")
    FEATURE("avx512f")
    FEATURE("avx512bw")
    FEATURE("avx512vl")
    FEATURE("avx512vnni")
    FEATURE("avx512bf16")
#undef FEATURE
#else
    (void)off;
    snprintf(buf, sizeof(buf), "(feature detection not implemented for this architecture)");
#endif
    return buf;
}

static const qd_kernel_table *active;
static pthread_once_t select_once = PTHREAD_ONCE_INIT;
static int select_rc;

int qd_kernels_select(void)
{
    const char *force = getenv("QD_KERNELS");
    if (force && *force && strcasecmp(force, "auto") != 0) {
        int want = -1;
        for (size_t v = 0; v < sizeof(variant_names) / sizeof(variant_names[0]); v++)
            if (!strcasecmp(force, variant_names[v]))
                want = (int)v;
        if (want < 0)
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "QD_KERNELS=%s: unknown kernel variant (ref, avx2, avx512, "
                                "cuda or auto)", force);
        for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
            if ((int)variants[i]->variant != want)
                continue;
            if (!cpu_supports(variants[i]->variant))
                return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "QD_KERNELS=%s: this CPU lacks the features it "
                                    "needs", force);
            __atomic_store_n(&active, variants[i], __ATOMIC_RELEASE);
            qd_log(QD_LOG_INFO, "kernels", "kernel variant %s (forced by QD_KERNELS)", variants[i]->name);
            return QD_OK;
        }
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "QD_KERNELS=%s: this build has no %s kernels",
                            force, variant_names[want]);
    }
    const qd_kernel_table *best = &qd_kernels_ref;
    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
        if (cpu_supports(variants[i]->variant)) {
            best = variants[i];
            break;
        }
    }
    __atomic_store_n(&active, best, __ATOMIC_RELEASE);
    qd_log(QD_LOG_INFO, "kernels", "kernel variant %s", best->name);
    return QD_OK;
}

static void select_default(void)
{
    select_rc = qd_kernels_select();
}

/* The active table; selects on first use. A failed implicit selection (a bad QD_KERNELS) leaves no table. */
const qd_kernel_table *qd_kernels_table(void)
{
    if (!__atomic_load_n(&active, __ATOMIC_ACQUIRE))
        pthread_once(&select_once, select_default);
    return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

qd_kernel_variant qd_kernels_current(void)
{
    const qd_kernel_table *t = qd_kernels_table();
    return t ? t->variant : QD_KERNELS_REF;
}

bool qd_kernels_accelerated(qd_type t)
{
    const qd_kernel_table *tab = qd_kernels_table();
    if (!tab || tab == &qd_kernels_ref || (int)t < 0 || t >= QD_TYPE_COUNT)
        return false;
    return tab->ops[t].quantize != NULL || tab->ops[t].quantize_imatrix != NULL;
}

/* ---- checked entry points ---- */

/*
 * Larger magnitudes are refused before quantizing. No fp16-scaled block can represent more than about 2.7e8
 * (Q6_K and IQ4_XS: 65504 x 128 x 32), and beyond that the reference's float sums (of x^2, and weights x^2 times
 * squared errors) start to overflow. MXFP4's shared exponent reaches much further; NVFP4 saturates.
 */
float qd_kernels_max_abs(qd_type t) { return t == QD_TYPE_MXFP4 ? 1e37f : 3e8f; }

/*
 * The reference's input check (qd_kernels_ref.within): whether every value is finite and within max_abs. The
 * magnitude bits of a float order like its value, and NaN and Inf sit above every finite one, so one integer compare
 * per value, OR-ed over 1024 values, decides (a loop the compiler vectorizes for the baseline ISA; the SIMD variants
 * bring their own, arch/x86/groups.h gr_within). The value-by-value scan that names the culprit runs only when this
 * fails.
 */
static bool all_within(const float *x, int64_t n, float max_abs)
{
    uint32_t lim;
    memcpy(&lim, &max_abs, sizeof(lim));
    const int32_t slim = (int32_t)lim; /* magnitudes are below 2^31: a signed compare orders them */
    int64_t i = 0;
    for (; i + 1024 <= n; i += 1024) {
        int32_t bad = 0;
        for (int j = 0; j < 1024; j++) {
            uint32_t u;
            memcpy(&u, x + i + j, sizeof(u));
            bad |= (int32_t)(u & 0x7fffffffu) > slim;
        }
        if (bad)
            return false;
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, sizeof(u));
        if ((u & 0x7fffffffu) > lim)
            return false;
    }
    return true;
}

/* Where a block keeps its fp16 scales (byte offsets; -1 for none). */
static const int16_t fp16_fields[QD_TYPE_COUNT][2] = {
    [QD_TYPE_Q4_0] = {0, -1},    [QD_TYPE_Q4_1] = {0, 2},     [QD_TYPE_Q5_0] = {0, -1},   [QD_TYPE_Q5_1] = {0, 2},
    [QD_TYPE_Q8_0] = {0, -1},    [QD_TYPE_Q2_K] = {80, 82},   [QD_TYPE_Q3_K] = {108, -1}, [QD_TYPE_Q4_K] = {0, 2},
    [QD_TYPE_Q5_K] = {0, 2},     [QD_TYPE_Q6_K] = {208, -1},  [QD_TYPE_IQ4_NL] = {0, -1}, [QD_TYPE_IQ4_XS] = {0, -1},
    [QD_TYPE_TQ1_0] = {52, -1},  [QD_TYPE_TQ2_0] = {64, -1},  [QD_TYPE_IQ2_XXS] = {0, -1}, [QD_TYPE_IQ2_XS] = {0, -1},
    [QD_TYPE_IQ2_S] = {0, -1},   [QD_TYPE_IQ3_XXS] = {0, -1}, [QD_TYPE_IQ3_S] = {0, -1},  [QD_TYPE_IQ1_S] = {0, -1},
};

static bool fp16_finite(const uint8_t *p) { return ((p[0] | p[1] << 8) & 0x7c00) != 0x7c00; }

/*
 * The output check of ggml_validate_row_data: a block scale that overflowed fp16 (input too large for the type)
 * makes the tensor unusable, so it is an error here rather than a file llama.cpp would refuse.
 */
void qd_kernels_fp16_fields(qd_type t, int out[2])
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    out[0] = out[1] = -1;
    /* (as check_scales: MXFP4/NVFP4 have no fp16 scale, IQ1_M's is split over four words and checked there) */
    if (tr && tr->quantized && t != QD_TYPE_MXFP4 && t != QD_TYPE_NVFP4 && t != QD_TYPE_IQ1_M) {
        out[0] = fp16_fields[t][0];
        out[1] = fp16_fields[t][1];
    }
}

int qd_kernels_scale_error(qd_type t, int64_t row)
{
    const char *n = qd_type_traits_get(t)->name;
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: row %lld holds values too large for %s (a block scale "
                        "overflows fp16)", n, (long long)row, n);
}

/* Whether one block's fp16 scale fields are finite. */
static bool block_scales_finite(qd_type t, const uint8_t *b)
{
    if (t == QD_TYPE_IQ1_M) {
        /* the fp16 super-scale sits in the top nibbles of the four u16 scale words */
        const uint8_t *sc = b + 48;
        uint8_t h[2] = {(uint8_t)((sc[1] >> 4) | (sc[3] & 0xf0)), (uint8_t)((sc[5] >> 4) | (sc[7] & 0xf0))};
        return fp16_finite(h);
    }
    for (int k = 0; k < 2; k++)
        if (fp16_fields[t][k] >= 0 && !fp16_finite(b + fp16_fields[t][k]))
            return false;
    return true;
}

static int check_scales(qd_type t, const void *dst, int64_t nrows, int64_t ncols)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    if (!tr->quantized || t == QD_TYPE_MXFP4 || t == QD_TYPE_NVFP4)
        return QD_OK;
    const uint8_t *b = dst;
    const int64_t nb = nrows * (ncols / tr->block_size);
    const size_t ts = tr->type_size;
    /* the common case first: each fp16 field of every block OR-ed without a branch ((e & 0x7c00) + 0x400 carries
     * into bit 15 exactly when the exponent is all ones: Inf or NaN), a pass per field; then the block-by-block walk
     * only where one failed */
    if (t != QD_TYPE_IQ1_M) {
        unsigned acc = 0;
        for (int k = 0; k < 2; k++) {
            const int f = fp16_fields[t][k];
            for (int64_t i = 0; f >= 0 && i < nb; i++) {
                uint16_t h;
                memcpy(&h, b + (size_t)i * ts + f, 2);
                acc |= (h & 0x7c00u) + 0x400u;
            }
        }
        if (!(acc & 0x8000u))
            return QD_OK;
    }
    for (int64_t i = 0; i < nb; i++, b += ts)
        if (!block_scales_finite(t, b))
            return qd_kernels_scale_error(t, i / (ncols / tr->block_size));
    return QD_OK;
}

int qd_kernels_check_imatrix(qd_type t, const float *imatrix, int64_t ncols)
{
    for (int64_t j = 0; j < ncols; j++) {
        if (!isfinite(imatrix[j]) || imatrix[j] < 0)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: importance matrix column %lld is %g; weights "
                                "must be finite and non-negative", qd_type_traits_get(t)->name, (long long)j,
                                (double)imatrix[j]);
    }
    return QD_OK;
}

static int resolve(qd_type t, int64_t nrows, int64_t ncols, const char *what, const qd_type_traits **tr_out,
                   const qd_kernel_ops **ops_out, const qd_kernel_ops **ref_out)
{
    const qd_type_traits *tr = qd_type_traits_get(t);
    if (!tr)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: unknown tensor type %d", what, (int)t);
    if (nrows < 0 || ncols <= 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s %s: bad shape %lld x %lld", what, tr->name,
                            (long long)nrows, (long long)ncols);
    if (ncols % tr->block_size)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s %s: a row of %lld values is not a multiple of the block "
                            "size %lld", what, tr->name, (long long)ncols, (long long)tr->block_size);
    if (nrows > 0 && ncols > INT64_MAX / 8 / nrows)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s %s: %lld x %lld values is too large", what, tr->name,
                            (long long)nrows, (long long)ncols);
    const qd_kernel_table *tab = qd_kernels_table();
    if (!tab)
        return qd_error_set(select_rc ? select_rc : QD_ERROR, QD_EC_CONFIG, "%s: no kernel variant: QD_KERNELS=%s "
                            "names none this build can use (ref, or unset)", what, getenv("QD_KERNELS") ?
                            getenv("QD_KERNELS") : "");
    *tr_out = tr;
    *ops_out = &tab->ops[t];
    *ref_out = &qd_kernels_ref.ops[t];
    return QD_OK;
}

int qd_quantize_rows(qd_type t, const float *src, void *dst, int64_t nrows, int64_t ncols, const float *imatrix)
{
    return qd_quantize_rows_bounded(t, src, dst, nrows, ncols, imatrix, NAN);
}

int qd_quantize_rows_bounded(qd_type t, const float *src, void *dst, int64_t nrows, int64_t ncols,
                             const float *imatrix, float amax)
{
    const qd_type_traits *tr;
    const qd_kernel_ops *ops, *ref;
    int rc = resolve(t, nrows, ncols, "quantize", &tr, &ops, &ref);
    if (rc)
        return rc;
    qd_quantize_fn q = ops->quantize ? ops->quantize : ref->quantize;
    qd_quantize_imatrix_fn qi = ops->quantize_imatrix ? ops->quantize_imatrix : ref->quantize_imatrix;
    if (!tr->can_quantize || (!q && !qi))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "quantize %s: this build cannot quantize to %s", tr->name,
                            tr->name);
    if (tr->needs_imatrix && !imatrix)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: this type needs an importance matrix", tr->name);
    if (nrows == 0)
        return QD_OK;
    if (!src || !dst)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: NULL buffer", tr->name);
    if (qd_ref_iq_prepare(t) < 0)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "quantize %s: out of memory building its grid tables", tr->name);
    /* (!(amax <= max): NaN, an amax not known, is checked here) */
    if (tr->quantized && !(amax <= qd_kernels_max_abs(t)) &&
        !qd_kernels_table()->within(src, nrows * ncols, qd_kernels_max_abs(t))) {
        const int64_t n = nrows * ncols;
        const float max_abs = qd_kernels_max_abs(t);
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(src[i]))
                return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: row %lld column %lld is %s; %s cannot "
                                    "hold NaN or Inf", tr->name, (long long)(i / ncols), (long long)(i % ncols),
                                    isnan(src[i]) ? "NaN" : "Inf", tr->name);
            if (fabsf(src[i]) > max_abs)
                return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: row %lld column %lld is %g, too large "
                                    "for %s (at most +-%g)", tr->name, (long long)(i / ncols), (long long)(i % ncols),
                                    (double)src[i], tr->name, (double)max_abs);
        }
    }
    if (imatrix && qi) {
        if ((rc = qd_kernels_check_imatrix(t, imatrix, ncols)))
            return rc;
        qi(src, dst, nrows, ncols, imatrix);
        return check_scales(t, dst, nrows, ncols);
    }
    if (!q)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize %s: this type needs an importance matrix", tr->name);
    q(src, dst, nrows, ncols);
    return check_scales(t, dst, nrows, ncols);
}

int qd_dequantize_rows(qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols)
{
    float amax;
    return qd_dequantize_rows_bound(t, src, dst, nrows, ncols, &amax);
}

int qd_dequantize_rows_bound(qd_type t, const void *src, float *dst, int64_t nrows, int64_t ncols, float *amax)
{
    *amax = NAN;
    const qd_type_traits *tr;
    const qd_kernel_ops *ops, *ref;
    int rc = resolve(t, nrows, ncols, "dequantize", &tr, &ops, &ref);
    if (rc)
        return rc;
    qd_dequantize_fn dq = ops->dequantize ? ops->dequantize : ref->dequantize;
    if (!dq)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "dequantize %s: this build cannot dequantize %s", tr->name,
                            tr->name);
    if (nrows == 0)
        return QD_OK;
    if (!src || !dst)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "dequantize %s: NULL buffer", tr->name);
    if (qd_ref_iq_prepare(t) < 0)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "dequantize %s: out of memory building its grid tables", tr->name);
    if (t == QD_TYPE_F16 && qd_kernels_table()->f16_bound) {
        *amax = qd_kernels_table()->f16_bound(src, dst, nrows * ncols);
        return QD_OK;
    }
    dq(src, dst, nrows, ncols);
    return QD_OK;
}
