# store/: the LMDB content-addressed store. The only folder that includes lmdb and zstd.
LIBQD_SRCS += store/store.c store/cdc.c store/blob_write.c store/blob_read.c store/maint.c store/registry.c store/jobs.c store/audit.c

