/* pull_file.h - one layer of `quant pull`: chunked parallel Range requests, hashed and written as they complete,
 * renamed into place only when the SHA-256 matches; resumable (pull_file.c). */
#ifndef QUANT_PULL_FILE_H
#define QUANT_PULL_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* What one layer's pull did (for --json). */
typedef struct pull_result {
    uint64_t fetched; /* bytes received for it */
    int resumed;      /* it continued a partial download */
    int present;      /* it was already in DIR with the right digest */
} pull_result;

/* Fetch layer L (the blob at blob_path, "/v2/NAME/blobs/DIGEST") into dir/L->name with up to parallel requests at
 * once. @return QD_OK, QD_EDIGEST (the bytes do not match: nothing is kept), a network error (QD_EIO, class
 * QD_EC_NET: the partial download is kept for a resume), QD_EFULL or QD_EIO (the disk) */
int pull_file(http_client *c, const char *blob_path, const char *dir, const layer *L, size_t parallel,
              pull_result *res);

#endif
