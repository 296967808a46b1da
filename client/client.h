/* client.h - shared pieces of the `quant` command line. */
#ifndef QUANT_CLIENT_H
#define QUANT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes: fixed, documented in the README. */
enum {
    EXIT_OK_ = 0,
    EXIT_ERR = 1,        /* any other failure */
    EXIT_USAGE = 2,      /* bad arguments or a malformed digest */
    EXIT_NOTFOUND = 3,   /* no such blob, store or file */
    EXIT_VERIFY = 4,     /* a digest, hash or signature did not check out; fsck found problems; truncated input */
    EXIT_UNREACHABLE = 5,/* the daemon could not be reached */
    EXIT_CONFLICT = 6,   /* the object is referenced, or the store is held by another writer */
    EXIT_BADSTORE = 7,   /* the directory is not a store, or a newer quantd made it */
    EXIT_FULL = 8,       /* the store or the disk is full */
    EXIT_VALIDATION = 9, /* quant validate: the variant failed its validation policy */
    EXIT_INTERRUPTED = 130 /* stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report it) */
};

/* Map a qd_err to an exit code (the one table in that direction). */
int qd_exit_code(int err);

/* Print "quant: <context>: <last error message>" to stderr and return the exit code for err. */
int qd_fail(int err, const char *context);

/* Write all of data to fd (retrying short writes and EINTR). @return QD_OK, QD_EFULL (ENOSPC), QD_EIO */
int qd_write_all(int fd, const void *data, size_t len);

/* A progress bar on stderr, drawn only when stderr is a terminal and the transfer is large. */
typedef struct progress {
    const char *label;
    uint64_t total;
    uint64_t last_draw_ns;
    uint64_t start_ns;
    bool active;
} progress;

/* interrupt.c: between interrupt_catch() and interrupt_release(), SIGINT and SIGTERM are noted instead of ending
 * the process (a second one still does); interrupted() is the signal number, or 0. */
void interrupt_catch(void);
void interrupt_release(void);
int interrupted(void);

void progress_start(progress *p, const char *label, uint64_t total);
void progress_update(uint64_t done, uint64_t total, void *payload);
void progress_end(progress *p);
uint64_t now_ns(void);

int cmd_store(int argc, char **argv);
int cmd_rows(int argc, char **argv);
int cmd_kernels(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_quantize_calib(int argc, char **argv); /* --method awq|smoothquant (client/cmd_quantize_calib.c) */
int cmd_imatrix(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
/* signed attestations (docs/VERIFY.md) */
int cmd_key(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
/* the signed log (docs/LOG.md) */
int cmd_log(int argc, char **argv);
int cmd_audit(int argc, char **argv);      /* offline, over a log directory (cmd_log.c) */
int cmd_audit_main(int argc, char **argv); /* against a daemon's audit indexes, else cmd_audit (cmd_audit.c) */
/* The statement name of a file: its base name, or its path relative to root when root is given. 0 or an exit code. */
int subject_name(char *out, size_t cap, const char *path, const char *root);
int cmd_run(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_token(int argc, char **argv);
/* registry client (docs/CLIENT.md) */
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_card(int argc, char **argv);
/* quantize on demand against a registry (cmd_jobs.c) */
int cmd_quantize_remote(int argc, char **argv);
int cmd_jobs(int argc, char **argv);

#endif
