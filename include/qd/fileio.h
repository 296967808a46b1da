/*
 * fileio.h - small POSIX file helpers shared by the library and the programs.
 */
#ifndef QD_FILEIO_H
#define QD_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Write all n bytes of p at file offset off (pwrite; short writes continued, EINTR retried). The file position is
 * not used, so threads may write one descriptor at different offsets. @return 0, or -1 with errno set (EIO when
 * the file took no byte)
 */
int qd_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

/** Read all n bytes at file offset off into p (pread; short reads continued, EINTR retried). @return 0, or -1
 * with errno set (EIO at the end of the file) */
int qd_pread_all(int fd, void *p, size_t n, uint64_t off);

/**
 * A thread that makes a file durable behind its writer: once the writer has reported step bytes written
 * (qd_syncer_wrote) since the last flush, it calls fdatasync(fd) while the writer goes on, so the device's flush
 * overlaps the writing instead of following it and the final fsync has only the last stretch left (what piles up
 * during one flush goes with the next). fd may be a buffered descriptor of a file written through another one
 * opened O_DIRECT: fdatasync covers both.
 */
typedef struct qd_syncer qd_syncer;

/** Start the thread. @return 0, or -1 with errno set (no thread: the caller's final fsync does it all) */
int qd_syncer_start(qd_syncer **out, int fd, uint64_t step);
/** Report n more bytes written. @return 0, or the errno of a flush that failed (the file is not durable) */
int qd_syncer_wrote(qd_syncer *s, uint64_t n);
/** Stop and free the thread (NULL: nothing). @return 0, or the errno of a flush that failed */
int qd_syncer_stop(qd_syncer *s);

/**
 * Make a directory's entries durable (fsync of the directory: after a rename into it). File systems that cannot
 * sync a directory (EINVAL) count as done. @return 0, or -1 with errno set
 */
int qd_fsync_dir(const char *dir);

/** qd_fsync_dir of the directory that holds path ("." for a bare name). @return as qd_fsync_dir */
int qd_fsync_parent(const char *path);

#ifdef __cplusplus
}
#endif
#endif
