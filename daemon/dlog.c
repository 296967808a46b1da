/*
 * dlog.c - the daemon's signed log: every publish, tag move and key event of this daemon is appended to the log in
 * <store>/log.git (log/replog.c), in the same flow as the store transaction that makes it visible; the routes
 * under /v1/log/ serve its checkpoint, freshness timestamp, entries and Merkle proofs (docs/LOG.md, "The daemon").
 *
 * Why an intent file: the store (LMDB) and the log (git) are two databases, so no single commit covers both. The
 * flow is
 *
 *     qd_dlog_begin   lock the log; settle a leftover intent; write <store>/log-pending (fsync) naming the entries
 *     (store txn)     the caller's one LMDB transaction
 *     qd_dlog_end     store committed: append each entry (signed commit), renew checkpoint and timestamp,
 *                     remove the intent; store failed: remove the intent; unlock
 *
 * A crash between the LMDB commit and the git commit leaves the intent file. At the next start (and before the
 * next publish) every intent line is settled: when the store holds what it names and the log does not, the entry
 * is appended; when the store does not hold it (the crash came before the LMDB commit), it is dropped. So the log
 * never misses a change the store made visible, and never records one the store did not make. An append that
 * fails while the daemon runs is reported to the request (HTTP 500 naming the entry) and stays in the intent file;
 * further publishes are refused until it is settled.
 *
 * Threads: one mutex guards the qd_replog handle, the intent file and the cached checkpoint/timestamp notes. Store
 * workers and job runners call begin/end; routes read the cached notes on the loop thread or run proofs on the pool.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon.h"
#include "qd/verify.h"
#include "qd/replog.h"

typedef struct mf_ent {
    qd_digest manifest; /* zero for key entries */
    unsigned char kind;
} mf_ent;

struct qd_dlog {
    qd_server *srv;
    pthread_mutex_t mu;
    qd_replog *log;
    qd_key *key;
    char *dir;
    char *pending;         /* <store>/log-pending */
    qd_buf checkpoint;     /* the signed note of the current size */
    qd_buf timestamp;      /* the latest signed timestamp */
    int64_t ts_issued;
    mf_ent *mf;            /* per entry: the manifest it names */
    size_t n_mf, cap_mf;
    struct event *timer;
    bool renewing;         /* a renewal is on the pool */
    uint64_t appended;     /* entries appended by this process (metrics, tests) */
    uint64_t append_failures;
};

/* ---- the manifest index (entry -> manifest), rebuilt at open ----------------------------------------------- */

static int mf_push(qd_dlog *d, qd_replog_kind kind, const qd_digest *m)
{
    if (d->n_mf == d->cap_mf) {
        size_t nc = d->cap_mf ? d->cap_mf * 2 : 256;
        mf_ent *n = qd_reallocarray(d->mf, nc, sizeof(*n));
        if (!n)
            return QD_ENOMEM;
        d->mf = n;
        d->cap_mf = nc;
    }
    memset(&d->mf[d->n_mf], 0, sizeof(d->mf[0]));
    d->mf[d->n_mf].kind = (unsigned char)kind;
    if (m)
        d->mf[d->n_mf].manifest = *m;
    d->n_mf++;
    return QD_OK;
}

static int mf_load_entry(qd_dlog *d, uint64_t i)
{
    qd_buf e = QD_BUF_INIT(0);
    json_t *j;
    qd_digest m;
    const char *k, *ms;
    int rc;
    if ((rc = qd_replog_entry_json(&e, d->log, i)) < 0)
        goto done;
    if (!(j = json_loadb(e.ptr, e.len, 0, NULL))) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "log entry %" PRIu64 " is not JSON", i);
        goto done;
    }
    k = json_string_value(json_object_get(j, "kind"));
    ms = json_string_value(json_object_get(j, "manifest"));
    if (ms && qd_digest_parse(&m, ms) == QD_OK)
        rc = mf_push(d, k && !strcmp(k, "publish") ? QD_REPLOG_PUBLISH : QD_REPLOG_TAG, &m);
    else
        rc = mf_push(d, QD_REPLOG_KEY_ADD, NULL);
    json_decref(j);
done:
    qd_buf_dispose(&e);
    return rc;
}

/* Entries appended since the index was built (by this handle or another process). */
static int mf_catch_up_locked(qd_dlog *d)
{
    int rc;
    while (d->n_mf < qd_replog_size(d->log))
        if ((rc = mf_load_entry(d, d->n_mf)) < 0)
            return rc;
    return QD_OK;
}

/* ---- notes ------------------------------------------------------------------------------------------------- */

static int refresh_locked(qd_dlog *d)
{
    qd_buf cp = QD_BUF_INIT(0), ts = QD_BUF_INIT(0);
    int64_t now = (int64_t)time(NULL);
    int rc;
    if ((rc = qd_replog_checkpoint(&cp, d->log, d->key)) < 0 ||
        (rc = qd_replog_timestamp(&ts, d->log, d->key, now, d->srv->cfg->log_timestamp_ttl)) < 0) {
        qd_buf_dispose(&cp);
        qd_buf_dispose(&ts);
        return rc;
    }
    qd_buf_dispose(&d->checkpoint);
    qd_buf_dispose(&d->timestamp);
    d->checkpoint = cp;
    d->timestamp = ts;
    d->ts_issued = now;
    return QD_OK;
}

/* ---- appending ----------------------------------------------------------------------------------------------- */

bool qd_dlog_bundle_ok(qd_store *s, const qd_digest *bundle)
{
    qd_buf b = QD_BUF_INIT(64u << 20);
    qd_envelope *env = NULL;
    bool ok = qd_store_get(s, bundle, 0, UINT64_MAX, qd_buf_sink, &b) == QD_OK &&
              qd_envelope_parse(&env, b.ptr, b.len, 0) == QD_OK;
    qd_envelope_free(env);
    qd_buf_dispose(&b);
    if (!ok)
        qd_error_clear();
    return ok;
}

static void item_path(char *out, size_t cap, const qd_dlog_item *it)
{
    char hex[65];
    if (it->kind == QD_REPLOG_PUBLISH) {
        snprintf(out, cap, "manifests/sha256/%s.json", qd_digest_hex(hex, &it->manifest));
    } else {
        const char *colon = strrchr(it->name, ':');
        snprintf(out, cap, "tags/%.*s/%s", (int)(colon ? colon - it->name : 0), it->name, colon ? colon + 1 : "");
    }
}

/* Does the head of the log already say what the item says? */
static bool log_has_locked(qd_dlog *d, const qd_dlog_item *it, const qd_buf *bundle)
{
    qd_buf cur = QD_BUF_INIT(0);
    char path[QD_REPO_MAX + QD_TAG_MAX + 64], ds[QD_DIGEST_STR_LEN + 1];
    bool same = false;
    item_path(path, sizeof(path), it);
    if (qd_replog_read_head(&cur, d->log, path, 64u << 20) == QD_OK) {
        if (it->kind == QD_REPLOG_PUBLISH)
            same = bundle && cur.len == bundle->len && !memcmp(cur.ptr, bundle->ptr, cur.len);
        else
            same = cur.len == strlen(qd_digest_format(ds, &it->manifest)) + 1 && !memcmp(cur.ptr, ds, cur.len - 1);
    }
    qd_error_clear();
    qd_buf_dispose(&cur);
    return same;
}

/* Does the store hold what the item names (after a crash: did the transaction commit)? */
static bool store_has(qd_dlog *d, const qd_dlog_item *it)
{
    qd_manifest_info info;
    char repo[QD_REPO_MAX + 1], ds[QD_DIGEST_STR_LEN + 1];
    const char *colon = strrchr(it->name, ':');
    bool ok;
    if (it->kind == QD_REPLOG_PUBLISH) {
        ok = qd_store_has(d->srv->store, &it->bundle) &&
             qd_registry_manifest_get(&info, NULL, d->srv->store, it->name, qd_digest_format(ds, &it->manifest)) ==
                 QD_OK;
    } else {
        snprintf(repo, sizeof(repo), "%.*s", (int)(colon ? colon - it->name : 0), it->name);
        ok = colon && qd_registry_manifest_get(&info, NULL, d->srv->store, repo, colon + 1) == QD_OK &&
             qd_digest_equal(&info.digest, &it->manifest);
    }
    qd_error_clear();
    return ok;
}

static int append_locked(qd_dlog *d, const qd_dlog_item *it)
{
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    qd_buf bundle = QD_BUF_INIT(0);
    char ds[QD_DIGEST_STR_LEN + 1];
    uint64_t index;
    int rc;
    if (it->kind == QD_REPLOG_PUBLISH &&
        (rc = qd_store_get(d->srv->store, &it->bundle, 0, UINT64_MAX, qd_buf_sink, &bundle)) < 0)
        goto done;
    if (log_has_locked(d, it, &bundle)) {
        rc = QD_OK;
        goto done;
    }
    e.kind = it->kind;
    e.name = it->name;
    e.manifest = it->manifest;
    e.bundle = bundle.ptr;
    e.bundle_len = bundle.len;
    if ((rc = qd_replog_append(d->log, &index, d->key, &e, NULL)) < 0 || (rc = mf_catch_up_locked(d)) < 0)
        goto done;
    d->appended++;
    qd_log(QD_LOG_INFO, "log", "req=0 appended index=%" PRIu64 " kind=%s name=%s manifest=%s", index,
           it->kind == QD_REPLOG_PUBLISH ? "publish" : "tag", it->name, qd_digest_format(ds, &it->manifest));
done:
    if (rc < 0) {
        d->append_failures++;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        qd_error_set(rc, QD_EC_STORE, "log append of %s %s failed: %s",
                     it->kind == QD_REPLOG_PUBLISH ? "publish" : "tag", it->name, msg);
    }
    qd_buf_dispose(&bundle);
    return rc;
}

/* ---- the intent file ---------------------------------------------------------------------------------------- */

static int intent_write(qd_dlog *d, const qd_dlog_item *items, size_t n)
{
    qd_buf b = QD_BUF_INIT(0);
    char tmp[4096], m[QD_DIGEST_STR_LEN + 1], bd[QD_DIGEST_STR_LEN + 1];
    int fd = -1, rc = QD_OK;
    for (size_t i = 0; i < n && rc == QD_OK; i++)
        rc = items[i].kind == QD_REPLOG_PUBLISH
                 ? qd_buf_printf(&b, "publish %s %s %s\n", items[i].name, qd_digest_format(m, &items[i].manifest),
                                 qd_digest_format(bd, &items[i].bundle))
                 : qd_buf_printf(&b, "tag %s %s\n", items[i].name, qd_digest_format(m, &items[i].manifest));
    if (rc < 0)
        goto done;
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->pending);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        write(fd, b.ptr, b.len) != (ssize_t)b.len || fsync(fd) < 0 || close(fd) < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto done;
    }
    if (rename(tmp, d->pending) < 0)
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", d->pending, strerror(errno));
done:
    qd_buf_dispose(&b);
    return rc;
}

static int parse_intent_line(qd_dlog_item *it, char *line)
{
    char *save = NULL, *k = strtok_r(line, " ", &save), *name = strtok_r(NULL, " ", &save),
         *m = strtok_r(NULL, " ", &save), *b = strtok_r(NULL, " ", &save);
    memset(it, 0, sizeof(*it));
    if (!k || !name || !m || strlen(name) >= sizeof(it->name) || qd_digest_parse(&it->manifest, m) < 0)
        return QD_EINVAL;
    snprintf(it->name, sizeof(it->name), "%s", name);
    if (!strcmp(k, "publish") && b && qd_digest_parse(&it->bundle, b) == QD_OK)
        it->kind = QD_REPLOG_PUBLISH;
    else if (!strcmp(k, "tag"))
        it->kind = QD_REPLOG_TAG;
    else
        return QD_EINVAL;
    return QD_OK;
}

/* Settle a leftover intent (a crash, or a failed append): append what the store holds, drop the rest. */
static int settle_locked(qd_dlog *d)
{
    qd_buf b = QD_BUF_INIT(0);
    char *p, *nl;
    int rc = QD_OK;
    size_t appended = 0, dropped = 0;
    FILE *f = fopen(d->pending, "r");
    if (!f)
        return errno == ENOENT ? QD_OK : qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", d->pending, strerror(errno));
    {
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0 && rc == QD_OK)
            rc = qd_buf_put(&b, chunk, got);
    }
    fclose(f);
    if (rc < 0 || (rc = qd_buf_put(&b, "", 1)) < 0)
        goto done;
    for (p = b.ptr; *p; p = nl + 1) {
        qd_dlog_item it;
        if (!(nl = strchr(p, '\n')))
            break; /* a torn last line: its transaction cannot have started (the intent is fsynced first) */
        *nl = 0;
        if (parse_intent_line(&it, p) < 0) {
            qd_log(QD_LOG_WARN, "log", "req=0 intent: unreadable line skipped: %s", p);
            continue;
        }
        if (!store_has(d, &it)) {
            dropped++;
            continue;
        }
        if ((rc = append_locked(d, &it)) < 0)
            goto done;
        appended++;
    }
    if ((rc = refresh_locked(d)) < 0)
        goto done;
    if (unlink(d->pending) < 0 && errno != ENOENT)
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", d->pending, strerror(errno));
    qd_log(QD_LOG_INFO, "log", "req=0 intent settled appended=%zu dropped=%zu size=%" PRIu64, appended,
           dropped, qd_replog_size(d->log));
done:
    qd_buf_dispose(&b);
    return rc;
}

static bool key_id_ok(const char *s);

/* A publish whose bundle names (by signature key id) a signer the log has revoked is refused before the store
 * changes: appended, it would make every verifier (mirrors included) refuse the log from that entry on. */
static int revoked_signer_locked(qd_dlog *d, const qd_dlog_item *it)
{
    qd_buf bundle = QD_BUF_INIT(0), tmp = QD_BUF_INIT(0);
    qd_envelope *env = NULL;
    char path[128];
    int rc = QD_OK;
    if (it->kind != QD_REPLOG_PUBLISH || qd_replog_size(d->log) == 0 ||
        qd_store_get(d->srv->store, &it->bundle, 0, UINT64_MAX, qd_buf_sink, &bundle) < 0 ||
        qd_envelope_parse(&env, bundle.ptr, bundle.len, 0) < 0)
        goto done; /* unreadable here: the store transaction and the append report it */
    for (size_t k = 0; rc == QD_OK && k < qd_envelope_signature_count(env); k++) {
        const char *id = qd_envelope_signature_keyid(env, k);
        if (!id || !key_id_ok(id))
            continue;
        snprintf(path, sizeof(path), "keys/revoked/%s", id);
        qd_buf_clear(&tmp);
        if (qd_replog_read_head(&tmp, d->log, path, 1 << 16) == QD_OK)
            rc = qd_error_set(QD_EBADSIG, QD_EC_STORE,
                              "the bundle for %s is signed by key %s, which the signed log has revoked", it->name,
                              id);
    }
done:
    if (rc == QD_OK)
        qd_error_clear();
    qd_envelope_free(env);
    qd_buf_dispose(&tmp);
    qd_buf_dispose(&bundle);
    return rc;
}

int qd_dlog_begin(qd_dlog *d, const qd_dlog_item *items, size_t n)
{
    int rc;
    for (size_t i = 0; i < n; i++)
        if (!qd_replog_name_ok(items[i].name, items[i].kind == QD_REPLOG_TAG))
            return qd_error_set(QD_EINVAL, QD_EC_STORE,
                                "the signed log records only names namespace/model[:tag] of [a-z0-9._-] (one "
                                "slash); '%s' cannot be published here",
                                items[i].name);
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < n; i++)
        if ((rc = revoked_signer_locked(d, &items[i])) < 0) {
            pthread_mutex_unlock(&d->mu);
            return rc;
        }
    if ((rc = settle_locked(d)) < 0 || (rc = intent_write(d, items, n)) < 0) {
        pthread_mutex_unlock(&d->mu);
        return rc;
    }
    return QD_OK; /* still locked: qd_dlog_end unlocks */
}

int qd_dlog_end(qd_dlog *d, const qd_dlog_item *items, size_t n, int store_rc)
{
    int rc = QD_OK;
    if (store_rc == QD_OK) {
        for (size_t i = 0; i < n && rc == QD_OK; i++)
            rc = append_locked(d, &items[i]);
        if (rc == QD_OK)
            rc = refresh_locked(d);
    }
    if (rc == QD_OK && unlink(d->pending) < 0 && errno != ENOENT)
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", d->pending, strerror(errno));
    if (rc < 0)
        qd_log(QD_LOG_ERROR, "log", "req=0 %s (kept in %s; retried before the next publish and at restart)",
               qd_error_last()->message, d->pending);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* ---- key events ---------------------------------------------------------------------------------------------- */

static bool key_id_ok(const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == QD_KEY_ID_LEN;
}

/* What the head of the log says about a key: listed (keys/<id>.pub, its OpenSSH line in pub) and revoked. */
static int key_state_locked(qd_dlog *d, const char *id, qd_buf *pub, bool *listed, bool *revoked)
{
    char path[128];
    qd_buf tmp = QD_BUF_INIT(0);
    int rc;
    snprintf(path, sizeof(path), "keys/%s.pub", id);
    rc = qd_replog_read_head(pub, d->log, path, 1 << 16);
    *listed = rc == QD_OK;
    if (rc < 0 && rc != QD_ENOTFOUND)
        return rc;
    snprintf(path, sizeof(path), "keys/revoked/%s", id);
    rc = qd_replog_read_head(&tmp, d->log, path, 1 << 16);
    *revoked = rc == QD_OK;
    qd_buf_dispose(&tmp);
    qd_error_clear();
    return rc < 0 && rc != QD_ENOTFOUND ? rc : QD_OK;
}

static int key_append_locked(qd_dlog *d, uint64_t *index, qd_replog_kind kind, const qd_key *k, const char *comment)
{
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    int rc;
    e.kind = kind;
    e.key = k;
    e.name = comment;
    if ((rc = qd_replog_append(d->log, index, d->key, &e, NULL)) < 0 || (rc = mf_catch_up_locked(d)) < 0) {
        d->append_failures++;
        return rc;
    }
    d->appended++;
    qd_log(QD_LOG_INFO, "log", "req=0 appended index=%" PRIu64 " kind=%s key_id=%s", *index,
           kind == QD_REPLOG_KEY_ADD ? "key-add" : "key-revoke", qd_key_id(k));
    return QD_OK;
}

int qd_dlog_key_event(qd_dlog *d, uint64_t *first, const qd_key *add, const char *comment, const char *revoke_id)
{
    qd_buf pub = QD_BUF_INIT(0);
    qd_key *old = NULL;
    bool listed, revoked;
    uint64_t idx = 0;
    char why[96];
    int rc;
    if (revoke_id && !key_id_ok(revoke_id))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "a key id is %d lowercase hex digits", QD_KEY_ID_LEN);
    if (add && qd_key_can_sign(add))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "send the public key only (SPKI PEM), never the private key");
    if (add && revoke_id && !strcmp(qd_key_id(add), revoke_id))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "a key cannot be rotated to itself");
    pthread_mutex_lock(&d->mu);
    if ((rc = settle_locked(d)) < 0 || (rc = mf_catch_up_locked(d)) < 0)
        goto done;
    if (add) {
        if ((rc = key_state_locked(d, qd_key_id(add), &pub, &listed, &revoked)) < 0)
            goto done;
        if (listed || revoked) {
            rc = qd_error_set(QD_EEXISTS, QD_EC_STORE, "key %s is already in the log%s", qd_key_id(add),
                              revoked ? " (revoked: a revoked key never comes back)" : "");
            goto done;
        }
    }
    if (revoke_id) {
        qd_buf_clear(&pub);
        if ((rc = key_state_locked(d, revoke_id, &pub, &listed, &revoked)) < 0)
            goto done;
        if (!listed) {
            rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "key %s is not in the log", revoke_id);
            goto done;
        }
        if (revoked) {
            rc = qd_error_set(QD_EEXISTS, QD_EC_STORE, "key %s is already revoked", revoke_id);
            goto done;
        }
        if (!strcmp(revoke_id, qd_key_id(d->key))) {
            rc = qd_error_set(QD_EREFERENCED, QD_EC_STORE,
                              "key %s is this daemon's log key: it signs every entry and cannot be revoked here",
                              revoke_id);
            goto done;
        }
        if ((rc = qd_key_parse(&old, pub.ptr, pub.len)) < 0)
            goto done;
    }
    /* both entries under one hold of the lock: no other entry comes between the add and the revoke */
    if (add && (rc = key_append_locked(d, &idx, QD_REPLOG_KEY_ADD, add, comment)) < 0)
        goto done;
    if (first)
        *first = idx;
    if (old) {
        if (add)
            snprintf(why, sizeof(why), "rotated to %.16s", qd_key_id(add));
        else
            snprintf(why, sizeof(why), "revoked");
        if ((rc = key_append_locked(d, &idx, QD_REPLOG_KEY_REVOKE, old, why)) < 0)
            goto done;
        if (first && !add)
            *first = idx;
    }
    rc = refresh_locked(d);
done:
    pthread_mutex_unlock(&d->mu);
    qd_key_free(old);
    qd_buf_dispose(&pub);
    return rc;
}

int qd_dlog_keys_json(qd_dlog *d, struct json_t *arr)
{
    qd_buf e = QD_BUF_INIT(0);
    int rc = QD_OK;
    pthread_mutex_lock(&d->mu);
    if ((rc = mf_catch_up_locked(d)) < 0)
        goto done;
    for (uint64_t i = 0; i < d->n_mf && rc == QD_OK; i++) {
        json_t *j, *o;
        const char *k, *id;
        size_t ai;
        if (d->mf[i].kind != QD_REPLOG_KEY_ADD)
            continue; /* key-add and key-revoke both index as key entries */
        qd_buf_clear(&e);
        if ((rc = qd_replog_entry_json(&e, d->log, i)) < 0)
            break;
        if (!(j = json_loadb(e.ptr, e.len, 0, NULL)))
            continue;
        k = json_string_value(json_object_get(j, "kind"));
        id = json_string_value(json_object_get(j, "key_id"));
        if (k && id && !strcmp(k, "key-add")) {
            const char *pk = json_string_value(json_object_get(j, "public_key"));
            qd_key *key = NULL;
            o = json_object();
            json_object_set_new(o, "id", json_string(id));
            if (pk && qd_key_parse(&key, pk, strlen(pk)) == QD_OK)
                json_object_set_new(o, "algorithm", json_string(qd_key_alg_name(qd_key_algorithm(key))));
            qd_error_clear();
            qd_key_free(key);
            json_object_set_new(o, "added", json_integer((json_int_t)i));
            json_object_set_new(o, "revoked", json_null());
            json_object_set_new(o, "comment", json_string(json_string_value(json_object_get(j, "comment"))
                                                              ? json_string_value(json_object_get(j, "comment"))
                                                              : ""));
            json_object_set_new(o, "log_key", json_boolean(!strcmp(id, qd_key_id(d->key))));
            json_array_append_new(arr, o);
        } else if (k && id && !strcmp(k, "key-revoke")) {
            json_array_foreach(arr, ai, o)
                if (!strcmp(json_string_value(json_object_get(o, "id")), id))
                    json_object_set_new(o, "revoked", json_integer((json_int_t)i));
        }
        json_decref(j);
    }
done:
    pthread_mutex_unlock(&d->mu);
    qd_buf_dispose(&e);
    return rc;
}

/* ---- open, close, renewal ------------------------------------------------------------------------------------ */

void qd_dlog_close(qd_server *srv)
{
    qd_dlog *d = srv->dlog;
    if (!d)
        return;
    if (d->timer)
        event_free(d->timer);
    qd_replog_free(d->log);
    qd_buf_dispose(&d->checkpoint);
    qd_buf_dispose(&d->timestamp);
    qd_free(d->mf);
    qd_free(d->dir);
    qd_free(d->pending);
    pthread_mutex_destroy(&d->mu);
    qd_free(d);
    srv->dlog = NULL;
}

int qd_dlog_open(qd_server *srv)
{
    qd_dlog *d = qd_calloc(1, sizeof(*d));
    char path[4096], kp[512];
    int rc;
    if (!d)
        return QD_ENOMEM;
    srv->dlog = d;
    d->srv = srv;
    pthread_mutex_init(&d->mu, NULL);
    qd_buf_init(&d->checkpoint, 0);
    qd_buf_init(&d->timestamp, 0);
    snprintf(path, sizeof(path), "%s/log.git", srv->cfg->store);
    if (!(d->dir = qd_strdup(path)))
        return QD_ENOMEM;
    snprintf(path, sizeof(path), "%s/log-pending", srv->cfg->store);
    if (!(d->pending = qd_strdup(path)))
        return QD_ENOMEM;
    if (!(d->key = srv->key)) /* borrowed: main.c loads the daemon key once */
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "no daemon signing key");
    if (qd_key_algorithm(d->key) != QD_KEY_ED25519)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "the signed log needs an Ed25519 signing key");
    rc = qd_replog_open(&d->log, d->dir);
    if (rc == QD_ENOTFOUND) {
        qd_error_clear();
        if ((rc = qd_replog_init(&d->log, d->dir, srv->cfg->log_origin)) < 0)
            return rc;
        qd_log(QD_LOG_INFO, "log", "req=0 created log=%s origin=%s", d->dir, srv->cfg->log_origin);
    } else if (rc < 0) {
        return rc;
    } else if (strcmp(qd_replog_origin(d->log), srv->cfg->log_origin)) {
        qd_log(QD_LOG_WARN, "log", "req=0 the log's origin is %s (log-origin %s is ignored for an existing log)",
               qd_replog_origin(d->log), srv->cfg->log_origin);
    }
    pthread_mutex_lock(&d->mu);
    rc = mf_catch_up_locked(d);
    /* the key event: the daemon key enters the log when the log does not list it yet (a new log, a new key) */
    if (rc == QD_OK) {
        qd_buf cur = QD_BUF_INIT(0);
        snprintf(kp, sizeof(kp), "keys/%s.pub", qd_key_id(d->key));
        if (qd_replog_read_head(&cur, d->log, kp, 1 << 16) == QD_ENOTFOUND) {
            qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
            qd_error_clear();
            e.kind = QD_REPLOG_KEY_ADD;
            e.key = d->key;
            e.name = "daemon signing key";
            if ((rc = qd_replog_append(d->log, NULL, d->key, &e, NULL)) == QD_OK)
                rc = mf_catch_up_locked(d);
            if (rc == QD_OK)
                qd_log(QD_LOG_INFO, "log", "req=0 appended key-add key_id=%s", qd_key_id(d->key));
        }
        qd_buf_dispose(&cur);
    }
    if (rc == QD_OK)
        rc = settle_locked(d); /* also makes the first checkpoint and timestamp */
    if (rc == QD_OK && !d->checkpoint.len)
        rc = refresh_locked(d);
    pthread_mutex_unlock(&d->mu);
    if (rc == QD_OK)
        qd_log(QD_LOG_INFO, "log", "req=0 log open size=%" PRIu64 " origin=%s head=%s", qd_replog_size(d->log),
               qd_replog_origin(d->log), qd_replog_head(d->log));
    return rc;
}

static void renew_work(void *p)
{
    qd_dlog *d = p;
    pthread_mutex_lock(&d->mu);
    if (mf_catch_up_locked(d) < 0 || refresh_locked(d) < 0)
        qd_log(QD_LOG_ERROR, "log", "req=0 timestamp renewal failed: %s", qd_error_last()->message);
    pthread_mutex_unlock(&d->mu);
}

static void renew_done(void *p)
{
    qd_dlog *d = p;
    d->renewing = false;
}

static void on_renew(evutil_socket_t fd, short what, void *arg)
{
    qd_dlog *d = arg;
    (void)fd;
    (void)what;
    if (d->renewing || d->srv->stopping)
        return;
    d->renewing = true;
    if (qd_pool_submit(d->srv->pool, renew_work, renew_done, d) < 0)
        d->renewing = false;
}

int qd_dlog_start_timer(qd_server *srv)
{
    qd_dlog *d = srv->dlog;
    struct timeval every;
    if (!d || srv->cfg->log_timestamp_interval <= 0)
        return QD_OK; /* 0: renewed only when an entry is appended (tests of a frozen upstream) */
    every.tv_sec = (time_t)srv->cfg->log_timestamp_interval;
    every.tv_usec = 0;
    if (!(d->timer = event_new(srv->base, -1, EV_PERSIST, on_renew, d)) || event_add(d->timer, &every) < 0)
        return qd_error_set(QD_ENOMEM, QD_EC_NET, "cannot start the timestamp timer");
    return QD_OK;
}

void qd_dlog_stop_timer(qd_server *srv)
{
    if (srv->dlog && srv->dlog->timer) {
        event_free(srv->dlog->timer);
        srv->dlog->timer = NULL;
    }
}

/* ---- routes ----------------------------------------------------------------------------------------------------- */

static void reply_text(qd_req *r, const qd_buf *b)
{
    struct evbuffer *out = evbuffer_new();
    if (out)
        evbuffer_add(out, b->ptr, b->len);
    qd_req_header(r, "Content-Type", "text/plain; charset=utf-8");
    qd_req_header(r, "Cache-Control", "no-store");
    qd_reply(r, 200, out);
}

static void reply_error(qd_req *r, int status, const char *code, const char *msg)
{
    json_t *o = json_pack("{s:[{s:s,s:s,s:{}}]}", "errors", "code", code, "message", msg, "detail");
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    qd_reply_json(r, status, t ? t : "{}");
    free(t); /* jansson */
}

typedef struct proof_work {
    qd_dlog *d;
    bool inclusion;
    bool by_manifest;
    qd_digest manifest;
    int64_t index, from, size; /* -1: not given */
    int status;
    qd_error_saved err;
    qd_buf out;
} proof_work;

static void proof_free(void *p)
{
    proof_work *w = p;
    qd_buf_dispose(&w->out);
    qd_free(w);
}

static void proof_work_fn(void *p)
{
    qd_req *r = p;
    proof_work *w = r->work;
    qd_dlog *d = w->d;
    uint8_t proof[QD_MERKLE_PROOF_MAX * QD_HASH_LEN], root[QD_HASH_LEN], leaf[QD_HASH_LEN], r1[QD_HASH_LEN];
    size_t n = 0;
    uint64_t size, index = 0;
    qd_buf e = QD_BUF_INIT(0);
    char h[65];
    int rc;
    json_t *o = NULL, *arr;

    pthread_mutex_lock(&d->mu);
    if ((rc = mf_catch_up_locked(d)) < 0)
        goto done;
    size = w->size >= 0 ? (uint64_t)w->size : qd_replog_size(d->log);
    if (size > qd_replog_size(d->log)) {
        w->status = 404;
        rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "the log has %" PRIu64 " entries, not %" PRIu64,
                          qd_replog_size(d->log), size);
        goto done;
    }
    if (w->inclusion) {
        if (w->by_manifest) {
            /* the latest entry below size naming the manifest, a publish preferred over a tag */
            bool found = false;
            for (uint64_t i = size; i-- > 0 && !found;)
                if (d->mf[i].kind == QD_REPLOG_PUBLISH && qd_digest_equal(&d->mf[i].manifest, &w->manifest))
                    found = true, index = i;
            for (uint64_t i = size; i-- > 0 && !found;)
                if (d->mf[i].kind == QD_REPLOG_TAG && qd_digest_equal(&d->mf[i].manifest, &w->manifest))
                    found = true, index = i;
            if (!found) {
                w->status = 404;
                rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no entry of the first %" PRIu64 " names %s", size,
                                  qd_digest_format((char[QD_DIGEST_STR_LEN + 1]){0}, &w->manifest));
                goto done;
            }
        } else {
            index = (uint64_t)w->index;
        }
        if (index >= size) {
            w->status = 404;
            rc = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "index %" PRIu64 " is not below size %" PRIu64, index, size);
            goto done;
        }
        if ((rc = qd_merkle_inclusion_proof(qd_replog_merkle(d->log), index, size, proof, &n)) < 0 ||
            (rc = qd_replog_entry_json(&e, d->log, index)) < 0)
            goto done;
        qd_merkle_leaf_hash(leaf, e.ptr, e.len);
    } else {
        if (w->from < 0 || (uint64_t)w->from > size) {
            w->status = 400;
            rc = qd_error_set(QD_EINVAL, QD_EC_STORE, "from must be between 0 and size");
            goto done;
        }
        if ((rc = qd_merkle_consistency_proof(qd_replog_merkle(d->log), (uint64_t)w->from, size, proof, &n)) < 0 ||
            (rc = qd_merkle_root(qd_replog_merkle(d->log), (uint64_t)w->from, r1)) < 0)
            goto done;
    }
    if ((rc = qd_merkle_root(qd_replog_merkle(d->log), size, root)) < 0)
        goto done;
    o = json_object();
    json_object_set_new(o, "origin", json_string(qd_replog_origin(d->log)));
    json_object_set_new(o, "size", json_integer((json_int_t)size));
    json_object_set_new(o, "root", json_string(qd_hex(h, root, QD_HASH_LEN)));
    if (w->inclusion) {
        json_object_set_new(o, "index", json_integer((json_int_t)index));
        json_object_set_new(o, "leaf", json_string(qd_hex(h, leaf, QD_HASH_LEN)));
        json_object_set_new(o, "entry", json_stringn(e.ptr, e.len));
    } else {
        json_object_set_new(o, "from", json_integer(w->from));
        json_object_set_new(o, "from_root", json_string(qd_hex(h, r1, QD_HASH_LEN)));
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(qd_hex(h, proof + i * QD_HASH_LEN, QD_HASH_LEN)));
    json_object_set_new(o, "proof", arr);
    {
        char *t = json_dumps(o, JSON_COMPACT);
        rc = t ? qd_buf_puts(&w->out, t) : QD_ENOMEM;
        free(t); /* jansson */
    }
done:
    pthread_mutex_unlock(&d->mu);
    json_decref(o);
    qd_buf_dispose(&e);
    qd_error_save(&w->err, rc);
    if (rc < 0 && !w->status)
        w->status = rc == QD_EINVAL ? 400 : rc == QD_ENOTFOUND ? 404 : 500;
}

static void proof_done(void *p)
{
    qd_req *r = p;
    proof_work *w = r->work;
    if (w->err.code < 0) {
        reply_error(r, w->status, w->status == 404 ? "NOT_FOUND" : w->status == 400 ? "INVALID" : "UNKNOWN",
                    w->err.message);
        return;
    }
    qd_reply_json(r, 200, qd_buf_cstr(&w->out));
}

static bool int_arg(qd_req *r, const char *name, int64_t *out)
{
    const char *v = qd_req_query(r, name);
    char *end;
    long long x;
    *out = -1;
    if (!v)
        return true;
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0)
        return false;
    *out = x;
    return true;
}

typedef struct entry_work {
    qd_dlog *d;
    uint64_t index;
    qd_error_saved err;
    qd_buf out;
} entry_work;

static void entry_free(void *p)
{
    entry_work *w = p;
    qd_buf_dispose(&w->out);
    qd_free(w);
}

static void entry_work_fn(void *p)
{
    qd_req *r = p;
    entry_work *w = r->work;
    pthread_mutex_lock(&w->d->mu);
    int rc = qd_replog_entry_json(&w->out, w->d->log, w->index);
    qd_error_save(&w->err, rc);
    pthread_mutex_unlock(&w->d->mu);
}

static void entry_done(void *p)
{
    qd_req *r = p;
    entry_work *w = r->work;
    int rc = w->err.code;
    if (rc < 0) {
        reply_error(r, rc == QD_ENOTFOUND ? 404 : 500, rc == QD_ENOTFOUND ? "NOT_FOUND" : "UNKNOWN", w->err.message);
        return;
    }
    qd_reply_json(r, 200, qd_buf_cstr(&w->out));
}

void qd_dlog_handle(qd_req *r)
{
    qd_dlog *d = r->srv->dlog;
    const char *p = r->path + strlen("/v1/log");
    int rc;

    r->route = "log";
    if (r->method != EVHTTP_REQ_GET && r->method != EVHTTP_REQ_HEAD) {
        reply_error(r, 405, "UNSUPPORTED", "the log is read-only");
        return;
    }
    if (!qd_auth_check(r, NULL, QD_SCOPE_PULL))
        return;
    if (!d) {
        reply_error(r, 503, "UNAVAILABLE", "the log is not open");
        return;
    }
    if (!strcmp(p, "/checkpoint") || !strcmp(p, "/timestamp")) {
        qd_buf copy = QD_BUF_INIT(0);
        pthread_mutex_lock(&d->mu);
        rc = qd_buf_put(&copy, p[1] == 'c' ? d->checkpoint.ptr : d->timestamp.ptr,
                        p[1] == 'c' ? d->checkpoint.len : d->timestamp.len);
        pthread_mutex_unlock(&d->mu);
        if (rc < 0)
            reply_error(r, 500, "UNKNOWN", "out of memory");
        else
            reply_text(r, &copy);
        qd_buf_dispose(&copy);
        return;
    }
    if (!strcmp(p, "/key")) {
        qd_buf vk = QD_BUF_INIT(0), pub = QD_BUF_INIT(0);
        json_t *o;
        char *t;
        pthread_mutex_lock(&d->mu);
        rc = qd_note_verifier_key(&vk, qd_replog_origin(d->log), d->key);
        if (rc == QD_OK)
            rc = qd_key_public_openssh(&pub, d->key, NULL);
        o = json_pack("{s:s,s:s,s:s,s:s}", "origin", qd_replog_origin(d->log), "key_id", qd_key_id(d->key),
                      "public_key", rc == QD_OK ? qd_buf_cstr(&pub) : "", "verifier_key",
                      rc == QD_OK ? qd_buf_cstr(&vk) : "");
        pthread_mutex_unlock(&d->mu);
        t = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        qd_reply_json(r, rc == QD_OK && t ? 200 : 500, t ? t : "{}");
        free(t); /* jansson */
        qd_buf_dispose(&vk);
        qd_buf_dispose(&pub);
        return;
    }
    if (!strncmp(p, "/entries/", 9)) {
        entry_work *w = qd_calloc(1, sizeof(*w));
        char *end;
        unsigned long long i;
        if (!w) {
            reply_error(r, 500, "UNKNOWN", "out of memory");
            return;
        }
        r->work = w;
        r->work_free = entry_free;
        w->d = d;
        qd_buf_init(&w->out, 0);
        errno = 0;
        i = strtoull(p + 9, &end, 10);
        if (errno || end == p + 9 || *end) {
            reply_error(r, 400, "INVALID", "the entry index must be a decimal number");
            return;
        }
        w->index = i;
        if ((rc = qd_req_offload(r, entry_work_fn, entry_done)) < 0)
            reply_error(r, 503, "UNAVAILABLE", "cannot queue the request");
        return;
    }
    if (!strcmp(p, "/proof/inclusion") || !strcmp(p, "/proof/consistency")) {
        proof_work *w = qd_calloc(1, sizeof(*w));
        const char *m;
        if (!w) {
            reply_error(r, 500, "UNKNOWN", "out of memory");
            return;
        }
        r->work = w;
        r->work_free = proof_free;
        w->d = d;
        qd_buf_init(&w->out, 0);
        w->inclusion = p[7] == 'i';
        if (!int_arg(r, "index", &w->index) || !int_arg(r, "from", &w->from) || !int_arg(r, "size", &w->size)) {
            reply_error(r, 400, "INVALID", "index, from and size must be non-negative decimal numbers");
            return;
        }
        m = qd_req_query(r, "manifest");
        if (w->inclusion) {
            if (m) {
                if (qd_digest_parse(&w->manifest, m) < 0) {
                    reply_error(r, 400, "INVALID", "manifest must be sha256:<64 hex>");
                    return;
                }
                w->by_manifest = true;
            } else if (w->index < 0) {
                reply_error(r, 400, "INVALID", "give index=N or manifest=sha256:...");
                return;
            }
        } else if (w->from < 0) {
            reply_error(r, 400, "INVALID", "give from=N");
            return;
        }
        if ((rc = qd_req_offload(r, proof_work_fn, proof_done)) < 0)
            reply_error(r, 503, "UNAVAILABLE", "cannot queue the request");
        return;
    }
    reply_error(r, 404, "NOT_FOUND", "no such log endpoint");
}

/* ---- git smart HTTP, read-only (log/upload.c does the protocol; here: HTTP and the worker thread) ------------- */

typedef struct git_work {
    qd_dlog *d;
    bool advertise;
    bool gzipped;
    char *body;
    size_t len;
    qd_error_saved err;
    qd_buf out;
} git_work;

static void git_free(void *p)
{
    git_work *w = p;
    qd_free(w->body);
    qd_buf_dispose(&w->out);
    qd_free(w);
}

static void git_work_fn(void *p)
{
    qd_req *r = p;
    git_work *w = r->work;
    /* no lock: upload.c opens its own repository handle, and git readers never see a half-written ref */
    qd_error_save(&w->err, w->advertise ? qd_replog_git_advertise(&w->out, w->d->dir)
                                        : qd_replog_git_upload_pack(&w->out, w->d->dir, w->body, w->len, w->gzipped));
}

static void git_done(void *p)
{
    qd_req *r = p;
    git_work *w = r->work;
    struct evbuffer *b;
    int rc = w->err.code;
    if (rc < 0) {
        qd_log(QD_LOG_WARN, "log", "req=%llu git %s: %s", (unsigned long long)r->id,
               w->advertise ? "info/refs" : "upload-pack", w->err.message);
        reply_error(r, rc == QD_ENOTFOUND ? 404 : rc == QD_EIO ? 500 : 400,
                    rc == QD_ENOTFOUND ? "NOT_FOUND" : rc == QD_EIO ? "UNKNOWN" : "INVALID", w->err.message);
        return;
    }
    if (!(b = evbuffer_new())) {
        reply_error(r, 500, "UNKNOWN", "out of memory");
        return;
    }
    evbuffer_add(b, w->out.ptr, w->out.len);
    qd_req_header(r, "Content-Type", w->advertise ? "application/x-git-upload-pack-advertisement"
                                                  : "application/x-git-upload-pack-result");
    qd_req_header(r, "Cache-Control", "no-cache");
    qd_reply(r, 200, b);
}

void qd_dlog_git_handle(qd_req *r)
{
    qd_dlog *d = r->srv->dlog;
    const char *p = r->path + strlen("/log.git");
    git_work *w;
    r->route = "log_git";
    if (!qd_auth_check(r, NULL, QD_SCOPE_PULL))
        return;
    if (!d) {
        reply_error(r, 503, "UNAVAILABLE", "the log is not open");
        return;
    }
    if (!(w = qd_calloc(1, sizeof(*w)))) {
        reply_error(r, 500, "UNKNOWN", "out of memory");
        return;
    }
    r->work = w;
    r->work_free = git_free;
    w->d = d;
    qd_buf_init(&w->out, 0);
    if (!strcmp(p, "/info/refs") && (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD)) {
        const char *svc = qd_req_query(r, "service");
        if (!svc || strcmp(svc, "git-upload-pack")) {
            reply_error(r, 403, "DENIED", "only service=git-upload-pack (smart HTTP, read-only) is served");
            return;
        }
        w->advertise = true;
    } else if (!strcmp(p, "/git-upload-pack") && r->method == EVHTTP_REQ_POST) {
        struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
        const char *ce = qd_req_in_header(r, "Content-Encoding");
        w->len = evbuffer_get_length(in);
        if (!(w->body = qd_malloc(w->len + 1))) {
            reply_error(r, 500, "UNKNOWN", "out of memory");
            return;
        }
        evbuffer_remove(in, w->body, w->len);
        w->gzipped = ce && (!strcasecmp(ce, "gzip") || !strcasecmp(ce, "x-gzip"));
    } else if (!strcmp(p, "/git-receive-pack") || (!strcmp(p, "/info/refs") && r->method != EVHTTP_REQ_GET)) {
        reply_error(r, 403, "DENIED", "the log is read-only");
        return;
    } else {
        reply_error(r, 404, "NOT_FOUND", "the log serves only git smart HTTP upload-pack");
        return;
    }
    if (qd_req_offload(r, git_work_fn, git_done) < 0)
        reply_error(r, 503, "UNAVAILABLE", "cannot queue the request");
}
