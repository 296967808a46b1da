/*
 * job_put.c - write a job record into a stopped daemon's store, for tests that need the state a crash leaves
 * behind (a job recorded as "running" with no daemon running it) without racing a real job.
 *
 *   job_put STORE_DIR JOB_ID RECORD_JSON_FILE
 */
#include <stdio.h>
#include <stdlib.h>

#include "qd/qd.h"
#include "qd/registry.h"

int main(int argc, char **argv)
{
    qd_store *s = NULL;
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    char text[1 << 16];
    size_t n;
    FILE *f;
    int rc;
    if (argc != 4) {
        fprintf(stderr, "usage: job_put STORE_DIR JOB_ID RECORD_JSON_FILE\n");
        return 2;
    }
    if (!(f = fopen(argv[3], "rb"))) {
        perror(argv[3]);
        return 1;
    }
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    if ((rc = qd_store_open(&s, argv[1], &so)) < 0 || (rc = qd_job_put(s, argv[2], text)) < 0) {
        fprintf(stderr, "job_put: %s\n", qd_error_last()->message);
        qd_store_close(s);
        return 1;
    }
    qd_store_close(s);
    return 0;
}
