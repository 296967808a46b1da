/*
 * validate.h - the validation pass: a variant against its reference on a set of token sequences.
 *
 * Metrics follow llama.cpp's `llama-perplexity --kl-divergence` so that numbers compare (docs/VALIDATION.md):
 * each sequence is one context window that starts with BOS; positions first .. n-2 are scored (first = n/2 as in
 * llama.cpp, or 0 when score_all is set), each against the next token. Per scored position:
 *   KLD = sum_i p_ref(i) * (log p_ref(i) - log p_var(i))     (log-softmax of the logits, in double)
 *   same top = argmax(ref) == argmax(var);  nll = -log p(next token)
 * mean KLD +- sqrt(var / (n - 1)); percentiles by linear interpolation on the sorted values at fraction * (n - 1)
 * (llama.cpp's formula; the median is the 0.5 percentile); PPL = exp(mean nll); PPL ratio = exp(mean(nll_var -
 * nll_ref)). Unlike llama.cpp we keep the reference log-probabilities in double, not 16-bit.
 *
 * Validation-set blob ("QDVALSET" v1, little-endian): magic[8] "QDVALSET"; u32 version = 1; u32 n_seqs;
 * u32 n_slices; u32 reserved = 0; u32 length[n_seqs] (each >= 2); n_slices x {u32 first_seq; u32 n_seqs;
 * u32 name_len (1..63); name bytes [A-Za-z0-9_.:-]; zero padding to a multiple of 4}; then u32 tokens, the
 * sequences one after another. Nothing may follow. A slice is a named range of sequences.
 */
#ifndef QD_VALIDATE_H
#define QD_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_VALSET_NAME_MAX 64

typedef struct qd_valset_slice {
    char name[QD_VALSET_NAME_MAX]; /**< e.g. "code", "multilingual" */
    uint32_t first;                /**< first sequence */
    uint32_t count;                /**< number of sequences */
} qd_valset_slice;

/** A validation set in memory. */
typedef struct qd_valset {
    uint32_t n_seqs;
    uint32_t *lens;          /**< n_seqs lengths */
    uint64_t *offs;          /**< n_seqs offsets into tokens */
    int32_t *tokens;         /**< all tokens */
    uint64_t n_tokens;
    uint32_t n_slices;
    qd_valset_slice *slices;
} qd_valset;

/** Parse a QDVALSET blob. @return QD_OK, QD_EINVAL (malformed or empty, with the reason), QD_ENOMEM */
int qd_valset_parse(qd_valset **out, const void *buf, size_t len);

/** Serialize into a new buffer (free with qd_free). @return QD_OK, QD_ENOMEM */
int qd_valset_serialize(void **out, size_t *out_len, const qd_valset *v);

/**
 * Sample n_seqs sequences of seq_len tokens from the model: BOS (1), then seq_len - 1 tokens drawn from the
 * softmax at temperature 1 with a splitmix64 generator seeded by seed. One slice "sampled" covers them all.
 * @return QD_OK, QD_EINVAL, QD_ENOMEM
 */
int qd_valset_sample(qd_valset **out, const qd_llama_model *m, uint32_t n_seqs, uint32_t seq_len, uint64_t seed,
                     int n_threads);

/** Check every token id against a vocabulary size. @return QD_OK or QD_EINVAL naming sequence and position. */
int qd_valset_check(const qd_valset *v, int vocab, int max_len);

void qd_valset_free(qd_valset *v);

/** KLD and friends over a group of scored positions. */
typedef struct qd_kld_stats {
    int64_t n;                  /**< scored positions */
    double mean, mean_err;      /**< mean KLD and its standard error */
    double median, p90, p95, p99, p999, max, min;
    double same_top, same_top_err; /**< fraction of positions whose argmax agrees */
    double ppl_ref, ppl_var;    /**< exp(mean nll) */
    double ln_ratio, ppl_ratio; /**< mean(nll_var - nll_ref) and its exp */
} qd_kld_stats;

typedef struct qd_tensor_metrics {
    char name[64];     /**< GGUF-style name */
    qd_type ref_type, var_type;
    int64_t n;         /**< elements */
    double rel_rmse;   /**< ||a-b|| / ||a|| */
    double sqnr_db;    /**< 10 log10(||a||^2 / ||a-b||^2); INFINITY when identical */
    double cosine;     /**< a.b / (||a|| ||b||) */
    double scale;      /**< least-squares b ~ scale * a */
    char diagnosis[192]; /**< what the variant looks like when it is off: a swap, a transpose, a scale */
} qd_tensor_metrics;

typedef struct qd_slice_result {
    char name[QD_VALSET_NAME_MAX];
    qd_kld_stats s;
} qd_slice_result;

typedef struct qd_validate_options {
    int n_threads;              /**< per matmul; <= 0 means 2 */
    qd_llama_kv_type kv_type;   /**< the variant's KV cache precision (the reference always uses f32) */
    bool score_all;             /**< score every position instead of llama.cpp's second half */
} qd_validate_options;

#define QD_VALIDATE_OPTIONS_INIT {2, QD_KV_F32, false}

#define QD_VALIDATION_MAX_REASONS 16

/** The result of a validation run; filled further by qd_validation_judge(). */
typedef struct qd_validation_report {
    qd_kld_stats overall;
    uint32_t n_slices;
    qd_slice_result *slices;
    int n_tensors;
    qd_tensor_metrics *tensors;  /**< in model order */
    int worst[8];                /**< indices of the (up to) 8 lowest-SQNR tensors, worst first; -1 unused */
    double bpw;                  /**< variant bits per weight, norms included */
    int64_t n_params;
    qd_type dominant_type;       /**< the type holding most of the variant's weights */
    uint64_t tokens_evaluated;   /**< per model */
    double seconds;              /**< wall time of the forward passes and metrics */
    const char *simd;
    qd_validate_options opts;
    /* verdict (qd_validation_judge) */
    bool judged, pass;
    char class_name[32];
    double thr_mean_kld, thr_p99_kld, thr_same_top, thr_slice_factor, thr_sqnr_db; /**< < 0: not set */
    int n_reasons;
    char reasons[QD_VALIDATION_MAX_REASONS][512];
} qd_validation_report;

/**
 * Run both models over the set and compute all metrics (no verdict).
 * @return QD_OK, QD_EINVAL (shapes differ, token out of range, empty set), QD_ENOMEM
 */
int qd_validate_run(qd_validation_report **out, const qd_llama_model *ref, const qd_llama_model *var,
                    const qd_valset *set, const qd_validate_options *opts);

void qd_validation_report_free(qd_validation_report *r);

/** One class of a policy: which variants it covers and their thresholds (< 0 means "not checked"). */
typedef struct qd_validation_class {
    char name[32];
    double min_bits;          /**< covers variants whose dominant type has at least this many bits per weight */
    double max_mean_kld;
    double max_p99_kld;
    double min_same_top;
    double max_slice_factor;  /**< no slice's mean KLD above this times the overall mean */
    double min_tensor_sqnr_db;
} qd_validation_class;

#define QD_POLICY_MAX_CLASSES 16

typedef struct qd_validation_policy {
    int n_classes;
    qd_validation_class classes[QD_POLICY_MAX_CLASSES];
} qd_validation_policy;

/** The built-in policy (docs/VALIDATION.md): 16/8/6/5/4/3/2-bit classes. */
void qd_validation_policy_default(qd_validation_policy *out);

/** Parse a policy document (schemas/validation-policy.schema.json). @return QD_OK or QD_EINVAL with the reason. */
int qd_validation_policy_parse(qd_validation_policy *out, const char *json, size_t len);

/**
 * Apply a policy: pick the class (by name, or by the bits of the variant's dominant type when class_name is NULL),
 * compare, and write pass/fail and the reasons into the report. @return QD_OK or QD_EINVAL (no such class)
 */
int qd_validation_judge(qd_validation_report *r, const qd_validation_policy *p, const char *class_name);

/**
 * The report as JSON (schemas/validation-report.schema.json); extra is a JSON object text merged at the top
 * (reference, variant and set names/digests) or NULL. @return QD_OK, QD_ENOMEM; *out is freed with qd_free.
 */
int qd_validation_report_json(char **out, const qd_validation_report *r, const char *extra);

/* ---- the variant predicate (https://quantd.dev/variant/v1, schemas/predicate-variant-v1.schema.json) ---- */

/**
 * The predicate's `validation` object from a judged report: reference and set digests ("sha256:<hex>"), metrics
 * (kld_mean, kld_p99, top1_agreement, ppl_ratio, tokens, the worst tensors by SQNR, per-slice numbers), the
 * thresholds the policy class applied, and the verdict. @return QD_OK, QD_EINVAL (not judged, bad digest), QD_ENOMEM;
 * *out (compact JSON text) is freed with qd_free.
 */
int qd_validation_predicate_json(char **out, const qd_validation_report *r, const char *ref_digest,
                                 const char *set_digest);

/** What a whole variant predicate records beyond the report. */
typedef struct qd_variant_predicate_info {
    const char *source_digest;             /**< "sha256:<hex>" of the reference checkpoint (the lineage edge) */
    const char *source_name;               /**< namespace/model:tag, or NULL */
    const char *set_digest;                /**< "sha256:<hex>" of the validation set */
    const qd_llama_model *variant;         /**< the validated variant: its recipe is read from the GGUF it was loaded
                                                from (general.file_type, tensor types) */
    const char *const *target_hardware;    /**< e.g. "cpu-x86_64"; at least one */
    size_t n_target_hardware;
    const char *builder_id;                /**< e.g. quant@host */
    int64_t created_at;                    /**< Unix seconds (UTC) */
} qd_variant_predicate_info;

/**
 * A complete https://quantd.dev/variant/v1 predicate: source, recipe (method, format = llama-quantize recipe name,
 * weight bits, group size, symmetric, overrides = tensors whose type differs from the recipe's base type, KV and
 * activation bits of the measured path, seed 0), calibration {class: none} (or generic-text when the GGUF records
 * an importance matrix), converter (quantd, version, build commit, kernel variant), target_hardware, validation
 * (qd_validation_predicate_json), created_at, builder. @return QD_OK, QD_EINVAL, QD_ENOMEM; free *out with qd_free.
 */
int qd_variant_predicate_json(char **out, const qd_validation_report *r, const qd_variant_predicate_info *info);

#ifdef __cplusplus
}
#endif
#endif
