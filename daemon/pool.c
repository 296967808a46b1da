/*
 * pool.c - a small worker pool for blocking work, with a completion queue back to the event loop.
 *
 * Workers take jobs from a FIFO (mutex + condition variable), run `work`, and put the job on the done list; a
 * byte written to a pipe wakes the loop, which runs each job's `done` on the loop thread. So libevent is only ever
 * touched from the loop thread and needs no locking of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

typedef struct job {
    qd_pool_fn work, done;
    void *payload;
    struct job *next;
} job;

struct qd_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;      /* waiting */
    job *done_head, *done_tail;
    size_t pending;        /* submitted, done not yet run */
    bool stop;
    int n_threads;
    pthread_t *threads;
    int pipe_fd[2];
    struct event *ev;
};

static void *worker(void *arg)
{
    qd_pool *p = arg;
    for (;;) {
        job *j;
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);

        j->work(j->payload);

        pthread_mutex_lock(&p->mu);
        j->next = NULL;
        if (p->done_tail)
            p->done_tail->next = j;
        else
            p->done_head = j;
        p->done_tail = j;
        pthread_mutex_unlock(&p->mu);
        {
            char b = 1;
            ssize_t w;
            do
                w = write(p->pipe_fd[1], &b, 1);
            while (w < 0 && errno == EINTR);
            /* EAGAIN: the pipe is full of wake-ups already; the loop will drain the list anyway */
        }
    }
}

static void run_done(qd_pool *p)
{
    job *list;
    pthread_mutex_lock(&p->mu);
    list = p->done_head;
    p->done_head = p->done_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        job *j = list;
        list = j->next;
        p->pending--;
        j->done(j->payload);
        qd_free(j);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    char buf[256];
    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    run_done(arg);
}

int qd_pool_new(qd_pool **out, struct event_base *base, int n_threads)
{
    qd_pool *p = qd_calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return QD_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->pipe_fd[0] = p->pipe_fd[1] = -1;
    if (pipe2(p->pipe_fd, O_NONBLOCK | O_CLOEXEC) < 0) {
        qd_pool_free(p);
        return qd_error_set(QD_EIO, QD_EC_OS, "pipe: %s", strerror(errno));
    }
    p->ev = event_new(base, p->pipe_fd[0], EV_READ | EV_PERSIST, on_wake, p);
    if (!p->ev || event_add(p->ev, NULL) < 0) {
        qd_pool_free(p);
        return qd_error_set(QD_ENOMEM, QD_EC_OS, "cannot create the pool's wake-up event");
    }
    if (!(p->threads = qd_calloc((size_t)n_threads, sizeof(pthread_t)))) {
        qd_pool_free(p);
        return QD_ENOMEM;
    }
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
            qd_pool_free(p);
            return qd_error_set(QD_EIO, QD_EC_OS, "cannot start a worker thread");
        }
        p->n_threads++;
    }
    *out = p;
    return QD_OK;
}

int qd_pool_submit(qd_pool *p, qd_pool_fn work, qd_pool_fn done, void *payload)
{
    job *j = qd_calloc(1, sizeof(*j));
    if (!j)
        return QD_ENOMEM;
    *j = (job){work, done, payload, NULL};
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->pending++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return QD_OK;
}

size_t qd_pool_pending(qd_pool *p) { return p ? p->pending : 0; }

void qd_pool_free(qd_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    run_done(p);
    if (p->ev)
        event_free(p->ev);
    if (p->pipe_fd[0] >= 0)
        close(p->pipe_fd[0]);
    if (p->pipe_fd[1] >= 0)
        close(p->pipe_fd[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    qd_free(p->threads);
    qd_free(p);
}
