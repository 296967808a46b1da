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

#ifdef __cplusplus
}
#endif
#endif
