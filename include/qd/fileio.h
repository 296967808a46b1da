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
