/*
 * pull_log.c - `quant pull --require-log` (docs/LOG.md, "Clients"): inclusion of the pulled manifest in the
 * registry's signed log, checked against a checkpoint verified with the log key given out of band.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <jansson.h>

#include "pull_log.h"
#include "qd/qd.h"
#include "qd/replog.h"

static int unhex(uint8_t *out, const char *s)
{
    if (!s || strlen(s) != 2 * QD_HASH_LEN)
        return QD_EINVAL;
    for (size_t i = 0; i < QD_HASH_LEN; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return QD_EINVAL;
        out[i] = (uint8_t)v;
    }
    return QD_OK;
}

static int get(http_client *c, qd_buf *out, const char *path, const char *what)
{
    http_resp r;
    int rc;
    http_resp_init(&r, 4u << 20);
    if ((rc = http_request(c, &r, "GET", path, NULL, NULL, NULL, NULL)) == QD_OK &&
        (rc = http_status_error(&r, what)) == QD_OK)
        rc = qd_buf_put(out, r.body.ptr, r.body.len);
    http_resp_dispose(&r);
    return rc;
}

/* Where the last verified timestamp of a log is remembered (rollback protection), one file per log origin and log
 * key: $XDG_STATE_HOME/quant/logs/<sha256(origin key-id)> or ~/.local/state/quant/logs/... */
static int seen_path(char *out, size_t cap, const char *origin, const qd_key *key)
{
    const char *base = getenv("XDG_STATE_HOME");
    char dir[1024], src[1024], hex[65];
    qd_digest k;
    if (base && *base) {
        mkdir(base, 0700);
        snprintf(dir, sizeof(dir), "%s/quant", base);
    } else if ((base = getenv("HOME")) && *base) {
        snprintf(dir, sizeof(dir), "%s/.local", base);
        mkdir(dir, 0700);
        snprintf(dir, sizeof(dir), "%s/.local/state", base);
        mkdir(dir, 0700);
        snprintf(dir, sizeof(dir), "%s/.local/state/quant", base);
    } else {
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "--require-log: neither XDG_STATE_HOME nor HOME is set (where "
                            "the last verified log timestamp is kept)");
    }
    mkdir(dir, 0700);
    strncat(dir, "/logs", sizeof(dir) - strlen(dir) - 1);
    mkdir(dir, 0700);
    snprintf(src, sizeof(src), "%s %s", origin, qd_key_id(key));
    qd_sha256_buf(&k, src, strlen(src));
    snprintf(out, cap, "%s/%s", dir, qd_digest_hex(hex, &k));
    return QD_OK;
}

int pull_check_log(http_client *c, const char *man_digest, const char *log_key_path)
{
    qd_key *key = NULL;
    qd_buf note = QD_BUF_INIT(0), pj = QD_BUF_INIT(0), tsn = QD_BUF_INIT(0);
    qd_timestamp ts;
    qd_fresh_verdict verdict = QD_FRESH_OK;
    char seen[1200];
    qd_checkpoint cp;
    size_t text_len;
    json_t *j = NULL, *e = NULL, *proof;
    uint8_t leaf[QD_HASH_LEN], hashes[QD_MERKLE_PROOF_MAX * QD_HASH_LEN];
    char path[512];
    const char *entry;
    size_t n = 0, i;
    int rc;

    if ((rc = qd_key_load(&key, log_key_path)) < 0)
        goto done;
    if ((rc = get(c, &note, "/v1/log/checkpoint", "log checkpoint")) < 0)
        goto done;
    if ((rc = qd_checkpoint_parse(&cp, note.ptr, note.len)) < 0 ||
        (rc = qd_note_verify(&text_len, note.ptr, note.len, cp.origin, key)) < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "the registry's log checkpoint does not verify with %s: %s",
                          log_key_path, msg);
        goto done;
    }
    /* freshness: the signed timestamp must not be expired (freeze) nor older than the last one this client verified
     * for this log (rollback); the inclusion proof is then checked against the timestamp's own checkpoint */
    if ((rc = seen_path(seen, sizeof(seen), cp.origin, key)) < 0 ||
        (rc = get(c, &tsn, "/v1/log/timestamp", "log timestamp")) < 0)
        goto done;
    if ((rc = qd_fresh_verify(&ts, &verdict, tsn.ptr, tsn.len, cp.origin, key, seen, 0)) < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        rc = qd_error_set(rc == QD_EIO ? QD_EIO : QD_EBADSIG, QD_EC_VERIFY, "the registry's log timestamp is refused "
                          "(%s): %s", verdict == QD_FRESH_EXPIRED ? "expired: the log may be frozen"
                          : verdict == QD_FRESH_ROLLBACK ? "older than one seen before: a rollback"
                          : "bad signature", msg);
        goto done;
    }
    cp = ts.checkpoint;
    snprintf(path, sizeof(path), "/v1/log/proof/inclusion?manifest=%s&size=%" PRIu64, man_digest, cp.size);
    if ((rc = get(c, &pj, path, "log inclusion proof")) < 0)
        goto done;
    if (!(j = json_loadb(pj.ptr, pj.len, 0, NULL)) || !(entry = json_string_value(json_object_get(j, "entry"))) ||
        !json_is_array(proof = json_object_get(j, "proof")) || json_array_size(proof) > QD_MERKLE_PROOF_MAX ||
        !json_is_integer(json_object_get(j, "index")) ||
        (uint64_t)json_integer_value(json_object_get(j, "size")) != cp.size) {
        rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "malformed inclusion proof from the registry");
        goto done;
    }
    /* the entry itself must name this manifest in this log */
    if (!(e = json_loads(entry, 0, NULL)) || !json_is_string(json_object_get(e, "manifest")) ||
        strcmp(json_string_value(json_object_get(e, "manifest")), man_digest) ||
        !json_is_string(json_object_get(e, "origin")) || strcmp(json_string_value(json_object_get(e, "origin")), cp.origin) ||
        json_integer_value(json_object_get(e, "seq")) != json_integer_value(json_object_get(j, "index"))) {
        rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "the log entry offered for %s does not name it", man_digest);
        goto done;
    }
    n = json_array_size(proof);
    for (i = 0; i < n; i++)
        if (unhex(hashes + i * QD_HASH_LEN, json_string_value(json_array_get(proof, i))) < 0) {
            rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "malformed inclusion proof from the registry");
            goto done;
        }
    qd_merkle_leaf_hash(leaf, entry, strlen(entry));
    if ((rc = qd_merkle_verify_inclusion(leaf, (uint64_t)json_integer_value(json_object_get(j, "index")), cp.size,
                                         hashes, n, cp.root)) < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        rc = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "%s is not included in the log checkpoint (%s, size %" PRIu64
                          "): %s", man_digest, cp.origin, cp.size, msg);
        goto done;
    }
    fprintf(stderr, "quant pull: %s: in the signed log %s at entry %" PRId64 " of %" PRIu64 "\n", man_digest,
            cp.origin, (int64_t)json_integer_value(json_object_get(j, "index")), cp.size);
done:
    json_decref(e);
    json_decref(j);
    qd_buf_dispose(&note);
    qd_buf_dispose(&pj);
    qd_buf_dispose(&tsn);
    qd_key_free(key);
    return rc;
}
