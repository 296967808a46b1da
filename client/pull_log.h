/* pull_log.h - `quant pull --require-log`: the pulled manifest must be in the registry's signed log. */
#ifndef QUANT_PULL_LOG_H
#define QUANT_PULL_LOG_H

#include "http.h"

/*
 * Fetch the registry's checkpoint (GET /v1/log/checkpoint) and check its signed note with the log key in
 * log_key_path; fetch an inclusion proof for man_digest (GET /v1/log/proof/inclusion?manifest=&size=) and check
 * that its entry names man_digest under the checkpoint's origin and that the proof leads to the checkpoint's root.
 * @return QD_OK, QD_EBADSIG (bad note, entry or proof: the message says which), QD_ENOTFOUND (not in the log)
 */
int pull_check_log(http_client *c, const char *man_digest, const char *log_key_path);

#endif
