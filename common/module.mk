# common/: error messages, allocation, buffers, logging, version, file helpers, a thread pool. No third-party includes.
LIBQD_SRCS += common/err.c common/alloc.c common/buf.c common/log.c common/version.c common/fileio.c common/pool.c
