/*
 * pool.c - helper threads for rounds of numbered work items (include/qd/pool.h).
 */
#include <pthread.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/pool.h"

typedef struct helper {
    qd_pool *p;
    int idx; /* the item it runs each round: 1.. */
    pthread_t tid;
} helper;

struct qd_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    qd_pool_fn fn;
    void *payload;
    int k;         /* items in this round */
    int pending;   /* helpers not finished with this round */
    unsigned long round;
    int stop;
    int n;         /* helpers started */
    helper *h;
};

static void *helper_main(void *arg)
{
    helper *h = arg;
    qd_pool *p = h->p;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->round == seen && !p->stop)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop)
            break;
        seen = p->round;
        if (h->idx < p->k) {
            qd_pool_fn fn = p->fn;
            void *payload = p->payload;
            pthread_mutex_unlock(&p->mu);
            fn(payload, h->idx);
            pthread_mutex_lock(&p->mu);
            if (--p->pending == 0)
                pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int qd_pool_start(qd_pool **out, int n)
{
    qd_pool *p = qd_calloc(1, sizeof(*p));
    *out = NULL;
    if (!p || (n > 0 && !(p->h = qd_calloc((size_t)n, sizeof(*p->h))))) {
        qd_free(p);
        return QD_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < n; i++) {
        p->h[i] = (helper){p, i + 1, 0};
        if (pthread_create(&p->h[i].tid, NULL, helper_main, &p->h[i]) != 0)
            break;
        p->n++;
    }
    *out = p;
    return QD_OK;
}

int qd_pool_size(const qd_pool *p) { return p->n; }

void qd_pool_run(qd_pool *p, int k, qd_pool_fn fn, void *payload)
{
    int on_helpers = k - 1 < p->n ? k - 1 : p->n;
    if (k < 1)
        return;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->payload = payload;
    p->k = on_helpers + 1;
    p->pending = on_helpers;
    p->round++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(payload, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void qd_pool_stop(qd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++)
        pthread_join(p->h[i].tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    qd_free(p->h);
    qd_free(p);
}
