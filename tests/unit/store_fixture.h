/*
 * store_fixture.h - the cmocka fixture shared by tests that need a fresh store: a sandbox directory with a new
 * store in it, and a generator seeded with the run's seed. Include after testutil.h.
 */
#ifndef QD_STORE_FIXTURE_H
#define QD_STORE_FIXTURE_H

#include "qd/store.h"

typedef struct fixture {
    char *dir;
    qd_store *s;
    tu_rng rng;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    qd_store_options o = QD_STORE_OPTIONS_INIT;
    o.flags = QD_STORE_CREATE;
    f->dir = tu_sandbox();
    assert_non_null(f->dir);
    assert_int_equal(qd_store_open(&f->s, f->dir, &o), QD_OK);
    tu_rng_seed(&f->rng, tu_seed());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    qd_store_close(f->s);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

#endif
