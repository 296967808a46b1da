/*
 * calib.h - calibration: running a model over calibration sequences and collecting what the calibrated methods
 * need from the activations (quantd/calib/).
 *
 * A calibration set is a token-sequence set in the validation-set format (include/qd/validate.h, "QDVALSET"):
 * the same sampler makes both, with different seeds, and qd_calib_check_disjoint() proves that no calibration
 * sequence is also a validation sequence.
 *
 * Activation statistics (qd_actstats) hold, for every weight matrix the forward pass multiplies, per input column:
 * the sum of squares (llama.cpp's imatrix "in_sum2"), the sum of absolute values (AWQ's mean magnitude) and the
 * largest absolute value (SmoothQuant's max), with the number of rows (token positions) seen.
 */
#ifndef QD_CALIB_H
#define QD_CALIB_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "qd/runtime.h"
#include "qd/validate.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Statistics of one matmul input. */
typedef struct qd_actstats_entry {
    char name[64];        /**< GGUF name of the weight ("blk.0.attn_q.weight") */
    int layer;            /**< block index, -1 for the classifier */
    qd_llama_site site;
    int64_t cols;         /**< input width */
    int64_t n_rows;       /**< activation rows (token positions) accumulated */
    double *sum_sq;       /**< cols: sum over rows of x^2 */
    double *sum_abs;      /**< cols: sum over rows of |x| */
    float *max_abs;       /**< cols: max over rows of |x| */
} qd_actstats_entry;

typedef struct qd_actstats qd_actstats;

typedef struct qd_calib_options {
    int n_threads;        /**< per matmul; <= 0 means 2 */
    int max_seqs;         /**< use at most this many sequences; <= 0 means all */
    /** Called after each sequence (may be NULL): done of total sequences. */
    void (*progress)(uint32_t done, uint32_t total, void *payload);
    /** Asked after each sequence (may be NULL): true stops the collection with QD_ECANCELED. */
    bool (*cancel)(void *payload);
    void *payload;
} qd_calib_options;

#define QD_CALIB_OPTIONS_INIT {2, 0, NULL, NULL, NULL}

/**
 * Run m over every sequence of set (each from position 0, a fresh KV cache per sequence) and accumulate the
 * statistics of every matmul input.
 * @return QD_OK, QD_EINVAL (empty set, a sequence shorter than 2 tokens, a token outside the vocabulary, a
 *         sequence longer than the model's context: the message says which), QD_ENOMEM, QD_ECANCELED (opts->cancel)
 */
int qd_actstats_collect(qd_actstats **out, const qd_llama_model *m, const qd_valset *set,
                        const qd_calib_options *opts);

/** An empty collector, fed with qd_actstats_observe() installed as the runtime observer (for custom loops). */
int qd_actstats_new(qd_actstats **out);
/** The observer function itself: user is the qd_actstats. Allocation failure is kept and reported by
 *  qd_actstats_status(). */
void qd_actstats_observe(void *user, int layer, qd_llama_site site, const qd_llama_tensor *w, const float *x, int n);
/** QD_OK, or the first error the observer hit (QD_ENOMEM). */
int qd_actstats_status(const qd_actstats *s);

size_t qd_actstats_count(const qd_actstats *s);
const qd_actstats_entry *qd_actstats_at(const qd_actstats *s, size_t i);
/** By weight name; NULL when the forward pass never multiplied it. */
const qd_actstats_entry *qd_actstats_find(const qd_actstats *s, const char *name);
/** Total activation rows seen by the first entry (the number of calibration positions). */
int64_t qd_actstats_tokens(const qd_actstats *s);
void qd_actstats_free(qd_actstats *s);

/**
 * Calibration and validation must not share a sequence: QD_OK when no sequence of calib equals (same length,
 * same tokens) a sequence of val, else QD_EINVAL naming the pair.
 */
int qd_calib_check_disjoint(const qd_valset *calib, const qd_valset *val);

/**
 * Check a calibration set against the model it calibrates and measure what a forward pass over it needs: the set
 * is not empty, its tokens fit m (qd_valset_check), and each of the sequences used - the first max_seqs, or all
 * when max_seqs <= 0 - has at least 2 tokens. *n_seqs gets how many are used, *max_len the longest of them.
 * @return QD_OK or QD_EINVAL naming the sequence
 */
int qd_calib_span(const qd_valset *set, const qd_llama_model *m, int max_seqs, uint32_t *n_seqs, int *max_len);

/** The weights that calibrated methods transform: the linear layers of the blocks (blk.N.*, not the norms). */
int qd_calib_is_block_linear(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* QD_CALIB_H */
