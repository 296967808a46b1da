/*
 * pool.h - a fixed set of helper threads that run one round of numbered work items at a time.
 *
 * qd_pool_run(p, k, fn, payload) runs fn(payload, 0) on the calling thread and fn(payload, 1..k-1) on the helpers,
 * and returns when all have returned. The helpers are started once and wait between rounds, so a round costs a
 * wake-up rather than a thread start (about 1 ms of a 3 ms chunk when the quantize pipeline started threads per
 * chunk). Users: the quantize pipeline's workers (jobs that claim row blocks) and the GPU path's host copies.
 */
#ifndef QD_POOL_H
#define QD_POOL_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_pool qd_pool;
typedef void (*qd_pool_fn)(void *payload, int i);

/** Start up to n helper threads (fewer when the system refuses some: qd_pool_size says how many; the caller's
 *  thread is the one more). @return QD_OK or QD_ENOMEM */
int qd_pool_start(qd_pool **out, int n);
/** Helpers started. */
int qd_pool_size(const qd_pool *p);
/** Run fn(payload, i) for i in 0..k-1 (k at most qd_pool_size + 1; more are not run): 0 here, the rest on the
 *  helpers. One thread runs rounds at a time. */
void qd_pool_run(qd_pool *p, int k, qd_pool_fn fn, void *payload);
/** Stop the helpers and free the pool (NULL: nothing). */
void qd_pool_stop(qd_pool *p);

#ifdef __cplusplus
}
#endif
#endif
