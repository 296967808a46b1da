/*
 * jobs_int.h - private to daemon/jobs*.c: the job runner's state.
 *
 * jobs.c owns the HTTP side (/v1/jobs), the queue and the runner threads; jobs_run.c runs one job's stages
 * (load, calibrate when the job has a calibration dataset, quantize, validate, sign, publish). The job record (JSON, in the store's `jobs` database) is the truth:
 * state changes are written there before anyone is told.
 */
#ifndef QD_JOBS_INT_H
#define QD_JOBS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

#include "daemon.h"
#include "qd/validate.h"
#include "qd/verify.h"

enum { QD_JOB_CANCEL_NONE = 0, QD_JOB_CANCEL_USER = 1, QD_JOB_CANCEL_SHUTDOWN = 2 };

#define QD_JOB_STAGES 6 /* load, calibrate, quantize, validate, sign, publish */

typedef struct qd_job_run {
    char id[QD_JOB_ID_LEN + 1];
    json_t *rec;                 /* the record, owned by the runner thread while it runs */
    atomic_int cancel;           /* QD_JOB_CANCEL_* */
    struct qd_job_run *next;
} qd_job_run;

struct qd_jobs {
    qd_server *srv;
    pthread_mutex_t mu;          /* claims, cancels, the running list */
    pthread_cond_t cv;
    bool stop;
    int n_threads;
    pthread_t *threads;
    qd_job_run *running;
    uint64_t seq;                /* next queue position (max seen + 1) */
    qd_key *key;
    char key_id[QD_KEY_ID_LEN + 1];
    qd_validation_policy policy;
    char builder_id[256];
    char *tmp_dir;               /* <store>/jobs-tmp */
    /* metrics, under mu */
    double stage_seconds[QD_JOB_STAGES];
    uint64_t stage_count[QD_JOB_STAGES];
    uint64_t ended[3];           /* done, failed, cancelled (by a runner) */
    uint64_t verdicts[2];        /* pass, fail */
};

/* Write the run's record to the store (the runner's own updates). */
int qd_jobs__save(qd_jobs *J, qd_job_run *run);
/* Run a claimed job to its end; the record says how it ended (done, failed, cancelled), or stays running when the
 * daemon is stopping. */
void qd_jobs__execute(qd_jobs *J, qd_job_run *run);
/* UTC time as 2026-01-01T00:00:00Z */
void qd_jobs__now_text(char out[32]);
/* A recipe's predicate facts. */
int qd_jobs__recipe_facts(json_t **out, const char *recipe);

#endif
