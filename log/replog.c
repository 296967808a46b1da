/*
 * replog.c - the log as a bare git repository: append (one signed commit per entry), open (with Merkle repair),
 * checkpoints, timestamps, the tag map, and the verifier for clones and mirrors. The only file with libgit2 calls
 * besides audit.c.
 */
#include <git2.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "log_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/log.h"
#include "qd/replog.h"

#define BRANCH "refs/heads/main"
#define ORIGIN_FILE "qd-origin"
#define MERKLE_DIR "qd-merkle"
#define ENTRY_MAX (64u * 1024u)
#define BUNDLE_MAX (16u * 1024u * 1024u)

int qd_log__timestamp_text(qd_buf *out, const qd_checkpoint *cp, const qd_digest *tagmap, int64_t issued,
                           int64_t expires);
int qd_log__err_git(int rc, const char *what);
int qd_log__entry_of_commit(qd_buf *out, const git_commit *c);
int qd_log__walk(git_oid **oids, size_t *n, git_repository *repo, qd_verify_failure *why);
int qd_log__blob_at(qd_buf *out, git_repository *repo, const git_commit *c, const char *path, size_t max);

struct qd_replog {
    git_repository *repo;
    char *dir;
    char origin[256];
    char head[41];
    qd_merkle *merkle;
    git_oid *oids; /* commit of entry i */
    size_t n, cap;
};

static int json_to_buf(const char *data, size_t n, void *payload)
{
    return qd_buf_put(payload, data, n) == QD_OK ? 0 : -1;
}

int qd_log__json_dump(qd_buf *out, const json_t *j, size_t flags);
int qd_log__json_dump(qd_buf *out, const json_t *j, size_t flags)
{
    if (json_dump_callback(j, json_to_buf, out, flags) != 0)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "JSON serialisation failed");
    return QD_OK;
}

int qd_log__err_git(int rc, const char *what)
{
    const git_error *e = git_error_last();
    int code = rc == GIT_ENOTFOUND ? QD_ENOTFOUND : rc == GIT_EEXISTS ? QD_EEXISTS : QD_EIO;
    return qd_error_set(code, QD_EC_STORE, "%s: %s", what, e && e->message ? e->message : "libgit2 error");
}

static void set_why(qd_verify_failure *why, const char *commit, const char *reason)
{
    if (!why)
        return;
    snprintf(why->key_id, sizeof(why->key_id), "-");
    snprintf(why->subject, sizeof(why->subject), "%s", commit ? commit : "-");
    snprintf(why->reason, sizeof(why->reason), "%s", reason);
}

static int push_oid(qd_replog *log, const git_oid *oid)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? 2 * log->cap : 64;
        git_oid *p = qd_reallocarray(log->oids, cap, sizeof(*p));
        if (!p)
            return QD_ENOMEM;
        log->oids = p;
        log->cap = cap;
    }
    git_oid_cpy(&log->oids[log->n++], oid);
    return QD_OK;
}

int qd_log__entry_of_commit(qd_buf *out, const git_commit *c)
{
    const char *msg = git_commit_message_raw(c), *body = strstr(msg, "\n\n");
    size_t n;
    if (!body)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "commit message has no entry");
    body += 2;
    n = strlen(body);
    while (n > 0 && body[n - 1] == '\n')
        n--;
    if (n == 0 || memchr(body, '\n', n))
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "commit message: the entry is not one JSON line");
    return qd_buf_put(out, body, n);
}

/* The first-parent chain from refs/heads/main, oldest first; history must be linear. */
int qd_log__walk(git_oid **oids, size_t *n, git_repository *repo, qd_verify_failure *why)
{
    git_oid cur, *v = NULL;
    size_t cap = 0, len = 0, i;
    git_commit *c = NULL;
    int rc, error = QD_OK;
    *oids = NULL;
    *n = 0;
    rc = git_reference_name_to_id(&cur, repo, BRANCH);
    if (rc == GIT_ENOTFOUND) {
        qd_error_clear();
        return QD_OK; /* empty log */
    }
    if (rc < 0)
        return qd_log__err_git(rc, "resolve " BRANCH);
    for (;;) {
        if (len == cap) {
            git_oid *p = qd_reallocarray(v, cap ? 2 * cap : 64, sizeof(*p));
            if (!p) {
                error = QD_ENOMEM;
                goto done;
            }
            v = p;
            cap = cap ? 2 * cap : 64;
        }
        git_oid_cpy(&v[len++], &cur);
        if ((rc = git_commit_lookup(&c, repo, &cur)) < 0) {
            error = qd_log__err_git(rc, "read commit");
            goto done;
        }
        if (git_commit_parentcount(c) > 1) {
            char hex[41];
            git_oid_tostr(hex, sizeof(hex), &cur);
            set_why(why, hex, "a merge commit: the log is linear");
            error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "commit %s is a merge: the log history must be linear",
                                 hex);
            goto done;
        }
        if (git_commit_parentcount(c) == 0)
            break;
        git_oid_cpy(&cur, git_commit_parent_id(c, 0));
        git_commit_free(c);
        c = NULL;
    }
    for (i = 0; i < len / 2; i++) {
        git_oid t = v[i];
        v[i] = v[len - 1 - i];
        v[len - 1 - i] = t;
    }
    *oids = v;
    *n = len;
    v = NULL;
done:
    git_commit_free(c);
    qd_free(v);
    return error;
}

int qd_log__blob_at(qd_buf *out, git_repository *repo, const git_commit *c, const char *path, size_t max)
{
    git_tree *tree = NULL;
    git_tree_entry *te = NULL;
    git_blob *blob = NULL;
    int rc, error = QD_OK;
    if ((rc = git_commit_tree(&tree, c)) < 0 || (rc = git_tree_entry_bypath(&te, tree, path)) < 0 ||
        (rc = git_blob_lookup(&blob, repo, git_tree_entry_id(te))) < 0) {
        error = qd_log__err_git(rc, path);
        goto done;
    }
    if ((size_t)git_blob_rawsize(blob) > max) {
        error = qd_error_set(QD_EFULL, QD_EC_STORE, "%s: larger than %zu bytes", path, max);
        goto done;
    }
    error = qd_buf_put(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
done:
    git_blob_free(blob);
    git_tree_entry_free(te);
    git_tree_free(tree);
    return error;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "path too long: %s", dir);
    return QD_OK;
}

static int rebuild_merkle(qd_replog *log)
{
    git_commit *c = NULL;
    qd_buf e = QD_BUF_INIT(ENTRY_MAX);
    uint8_t leaf[QD_HASH_LEN];
    size_t i;
    int rc, error;
    if ((error = qd_merkle_reset(log->merkle)) < 0)
        return error;
    for (i = 0; i < log->n; i++) {
        if ((rc = git_commit_lookup(&c, log->repo, &log->oids[i])) < 0) {
            error = qd_log__err_git(rc, "read commit");
            break;
        }
        qd_buf_clear(&e);
        if ((error = qd_log__entry_of_commit(&e, c)) < 0 || (error = qd_merkle_leaf_hash(leaf, e.ptr, e.len)) < 0 ||
            (error = qd_merkle_append(log->merkle, leaf)) < 0)
            break;
        git_commit_free(c);
        c = NULL;
    }
    git_commit_free(c);
    qd_buf_dispose(&e);
    return error;
}

static int log_load(qd_replog *log)
{
    char path[4096];
    qd_buf o = QD_BUF_INIT(255);
    int error;
    if ((error = path_join(path, sizeof(path), log->dir, ORIGIN_FILE)) < 0 ||
        (error = qd_log__read_file(&o, path, 255)) < 0)
        goto done;
    while (o.len > 0 && o.ptr[o.len - 1] == '\n')
        o.ptr[--o.len] = 0;
    snprintf(log->origin, sizeof(log->origin), "%s", qd_buf_cstr(&o));
    if ((error = qd_log__walk(&log->oids, &log->n, log->repo, NULL)) < 0)
        goto done;
    log->cap = log->n;
    log->head[0] = 0;
    if (log->n > 0)
        git_oid_tostr(log->head, sizeof(log->head), &log->oids[log->n - 1]);
    if ((error = path_join(path, sizeof(path), log->dir, MERKLE_DIR)) < 0 ||
        (error = qd_merkle_open(&log->merkle, path)) < 0)
        goto done;
    if (qd_merkle_size(log->merkle) != log->n)
        error = rebuild_merkle(log);
done:
    qd_buf_dispose(&o);
    return error;
}

static int log_new(qd_replog **out, const char *dir)
{
    qd_replog *log = qd_calloc(1, sizeof(*log));
    *out = NULL;
    if (!log || !(log->dir = qd_strdup(dir))) {
        qd_free(log);
        return QD_ENOMEM;
    }
    git_libgit2_init();
    *out = log;
    return QD_OK;
}

int qd_replog_init(qd_replog **out, const char *dir, const char *origin)
{
    qd_replog *log = NULL;
    git_repository_init_options io;
    char path[4096];
    struct stat st;
    int rc, error;
    *out = NULL;
    if (!qd_note_name_valid(origin) || strlen(origin) > 200)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "log origin \"%s\": must be a non-empty name without spaces "
                                                    "or '+' (200 bytes at most)", origin ? origin : "");
    if ((error = path_join(path, sizeof(path), dir, ORIGIN_FILE)) < 0)
        return error;
    if (stat(path, &st) == 0)
        return qd_error_set(QD_EEXISTS, QD_EC_STORE, "%s: a log is already there", dir);
    if ((error = log_new(&log, dir)) < 0)
        return error;
    git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    io.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
    io.initial_head = "main";
    io.description = "quantd signed log";
    if ((rc = git_repository_init_ext(&log->repo, dir, &io)) < 0) {
        error = qd_log__err_git(rc, dir);
        goto done;
    }
    if ((error = qd_log__write_file(path, origin, strlen(origin))) < 0)
        goto done;
    error = log_load(log);
done:
    if (error < 0) {
        qd_replog_free(log);
        return error;
    }
    *out = log;
    return QD_OK;
}

int qd_replog_open(qd_replog **out, const char *dir)
{
    qd_replog *log = NULL;
    int rc, error;
    *out = NULL;
    if ((error = log_new(&log, dir)) < 0)
        return error;
    if ((rc = git_repository_open_bare(&log->repo, dir)) < 0) {
        error = rc == GIT_ENOTFOUND ? qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s: not a log", dir)
                                    : qd_log__err_git(rc, dir);
        goto done;
    }
    error = log_load(log);
    if (error == QD_ENOTFOUND)
        error = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s: a git repository but not a quantd log", dir);
done:
    if (error < 0) {
        qd_replog_free(log);
        return error;
    }
    *out = log;
    return QD_OK;
}

void qd_replog_free(qd_replog *log)
{
    if (!log)
        return;
    qd_merkle_free(log->merkle);
    git_repository_free(log->repo);
    git_libgit2_shutdown();
    qd_free(log->oids);
    qd_free(log->dir);
    qd_free(log);
}

uint64_t qd_replog_size(const qd_replog *log) { return log ? log->n : 0; }
const char *qd_replog_origin(const qd_replog *log) { return log->origin; }
const char *qd_replog_head(const qd_replog *log) { return log->head; }
const qd_merkle *qd_replog_merkle(const qd_replog *log) { return log->merkle; }

/* ------------------------------------------------------------------------------------------------- append --- */

static const char *kind_name(qd_replog_kind k)
{
    switch (k) {
    case QD_REPLOG_PUBLISH: return "publish";
    case QD_REPLOG_TAG: return "tag";
    case QD_REPLOG_KEY_ADD: return "key-add";
    case QD_REPLOG_KEY_REVOKE: return "key-revoke";
    }
    return NULL;
}

static bool name_chars_ok(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || s[0] == '/' || s[n - 1] == '/' || s[0] == '.')
        return false;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
              ch == '/'))
            return false;
        if (ch == '/' && i + 1 < n && (s[i + 1] == '/' || s[i + 1] == '.'))
            return false;
    }
    return true;
}

/* "ns/model" (exactly one slash). */
static bool model_name_ok(const char *s, size_t n)
{
    const char *sl = memchr(s, '/', n);
    return name_chars_ok(s, n) && sl && !memchr(sl + 1, '/', n - (size_t)(sl + 1 - s));
}

static int check_bundle(const qd_policy *policy, const char *name, const void *bundle, size_t len,
                        qd_verify_failure *why)
{
    qd_envelope *env = NULL;
    qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
    int error;
    if ((error = qd_envelope_parse(&env, bundle, len, policy ? qd_policy_max_payload(policy) : 0)) < 0)
        return qd_error_prefix("bundle of %s", name);
    if (!policy) {
        qd_envelope_free(env); /* structure only */
        return QD_OK;
    }
    vo.namespace_name = name;
    vo.skip_subjects = true;
    error = qd_verify(NULL, why, policy, env, NULL, 0, &vo);
    qd_envelope_free(env);
    if (error < 0)
        return qd_error_prefix("bundle of %s", name);
    return QD_OK;
}

static int blob_from(git_oid *out, git_repository *repo, const void *data, size_t len)
{
    int rc = git_blob_create_from_buffer(out, repo, data, len);
    return rc < 0 ? qd_log__err_git(rc, "write blob") : QD_OK;
}

/* Take the writer lock (flock on qd-lock, held for one append) and catch up when another handle or process
 * appended since this one loaded: the Merkle files are then reopened at the true size. */
static int writer_lock(qd_replog *log, int *fd_out)
{
    char path[4096];
    git_oid cur;
    int fd, rc, error;
    bool moved;
    *fd_out = -1;
    if ((error = path_join(path, sizeof(path), log->dir, "qd-lock")) < 0)
        return error;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            error = qd_error_set(QD_EIO, QD_EC_OS, "lock %s: %s", path, strerror(errno));
            close(fd);
            return error;
        }
    }
    /* every writer holds the flock, so a ref lock file seen now was left by a writer that died (SIGKILL) in
     * the middle of a ref update: without removing it no append could ever succeed again */
    if (path_join(path, sizeof(path), log->dir, BRANCH ".lock") == QD_OK && unlink(path) == 0)
        qd_log(QD_LOG_WARN, "log", "req=0 removed a stale %s (a writer died during a ref update)", path);
    rc = git_reference_name_to_id(&cur, log->repo, BRANCH);
    if (rc == GIT_ENOTFOUND)
        moved = log->n != 0;
    else if (rc < 0) {
        close(fd);
        return qd_log__err_git(rc, "resolve " BRANCH);
    } else
        moved = log->n == 0 || !git_oid_equal(&cur, &log->oids[log->n - 1]);
    qd_error_clear();
    if (qd_merkle_size(log->merkle) != log->n)
        moved = true; /* an earlier append failed after its leaf was written: rebuild */
    if (moved) {
        qd_merkle_free(log->merkle);
        log->merkle = NULL;
        qd_free(log->oids);
        log->oids = NULL;
        log->n = log->cap = 0;
        if ((error = log_load(log)) < 0) {
            close(fd);
            return error;
        }
    }
    *fd_out = fd;
    return QD_OK;
}

int qd_replog_append(qd_replog *log, uint64_t *index_out, const qd_key *signer, const qd_replog_entry *e,
                     const qd_policy *policy)
{
    json_t *j = NULL;
    qd_buf ejb = QD_BUF_INIT(0);
    const char *ej;
    char dg[QD_DIGEST_STR_LEN + 1], hex[65], path[512], summary[400];
    qd_buf msg = QD_BUF_INIT(0), sig = QD_BUF_INIT(0), content = QD_BUF_INIT(0);
    git_buf cbuf = GIT_BUF_INIT;
    git_tree *base = NULL, *tree = NULL;
    git_commit *parent = NULL;
    git_signature *who = NULL;
    git_tree_update upd;
    git_oid blob_oid, tree_oid, commit_oid;
    uint8_t leaf[QD_HASH_LEN];
    int64_t t;
    int rc, error, lock_fd = -1;
    const char *kn;

    if (!log || !signer || !e || e->version != QD_REPLOG_ENTRY_VERSION || !(kn = kind_name(e->kind)))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "log append: bad arguments");
    if (!qd_key_can_sign(signer) || qd_key_algorithm(signer) != QD_KEY_ED25519)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "log append: the log key must be an Ed25519 private key");
    if ((error = writer_lock(log, &lock_fd)) < 0)
        return error;
    t = e->time ? e->time : (int64_t)time(NULL);
    j = json_pack("{s:i, s:s, s:I, s:s, s:I}", "v", 1, "origin", log->origin, "seq", (json_int_t)log->n, "kind", kn,
                  "time", (json_int_t)t);
    if (!j) {
        close(lock_fd);
        return QD_ENOMEM;
    }
    memset(&upd, 0, sizeof(upd));
    upd.action = GIT_TREE_UPDATE_UPSERT;
    upd.filemode = GIT_FILEMODE_BLOB;
    upd.path = path;
    switch (e->kind) {
    case QD_REPLOG_PUBLISH: {
        qd_digest bd;
        if (!e->name || !model_name_ok(e->name, strlen(e->name)) || !e->bundle || e->bundle_len == 0) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "publish: needs a name \"namespace/model\" ([a-z0-9._-]) "
                                                         "and a bundle");
            goto done;
        }
        if ((error = check_bundle(policy, e->name, e->bundle, e->bundle_len, NULL)) < 0 ||
            (error = qd_sha256_buf(&bd, e->bundle, e->bundle_len)) < 0)
            goto done;
        json_object_set_new(j, "name", json_string(e->name));
        json_object_set_new(j, "manifest", json_string(qd_digest_format(dg, &e->manifest)));
        json_object_set_new(j, "bundle", json_string(qd_digest_format(dg, &bd)));
        snprintf(path, sizeof(path), "manifests/sha256/%s.json", qd_digest_hex(hex, &e->manifest));
        if ((error = blob_from(&blob_oid, log->repo, e->bundle, e->bundle_len)) < 0)
            goto done;
        snprintf(summary, sizeof(summary), "publish %s %s", e->name, qd_digest_format(dg, &e->manifest));
        break;
    }
    case QD_REPLOG_TAG: {
        const char *colon = e->name ? strrchr(e->name, ':') : NULL;
        if (!colon || !model_name_ok(e->name, (size_t)(colon - e->name)) ||
            !name_chars_ok(colon + 1, strlen(colon + 1)) || strchr(colon + 1, '/')) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "tag: needs a name \"namespace/model:tag\" ([a-z0-9._-])");
            goto done;
        }
        json_object_set_new(j, "name", json_string(e->name));
        json_object_set_new(j, "manifest", json_string(qd_digest_format(dg, &e->manifest)));
        snprintf(path, sizeof(path), "tags/%.*s/%s", (int)(colon - e->name), e->name, colon + 1);
        if ((error = qd_buf_printf(&content, "%s\n", dg)) < 0 ||
            (error = blob_from(&blob_oid, log->repo, content.ptr, content.len)) < 0)
            goto done;
        snprintf(summary, sizeof(summary), "tag %s %s", e->name, dg);
        break;
    }
    case QD_REPLOG_KEY_ADD:
    case QD_REPLOG_KEY_REVOKE:
        if (!e->key) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "%s: needs a key", kn);
            goto done;
        }
        json_object_set_new(j, "key_id", json_string(qd_key_id(e->key)));
        if (e->name)
            json_object_set_new(j, "comment", json_string(e->name));
        if (e->kind == QD_REPLOG_KEY_ADD) {
            if ((error = qd_key_public_openssh(&content, e->key, NULL)) < 0)
                goto done;
            json_object_set_new(j, "public_key", json_string(qd_buf_cstr(&content)));
            qd_buf_puts(&content, "\n");
            snprintf(path, sizeof(path), "keys/%s.pub", qd_key_id(e->key));
        } else {
            qd_buf_printf(&content, "revoked %lld\n", (long long)t);
            snprintf(path, sizeof(path), "keys/revoked/%s", qd_key_id(e->key));
        }
        if ((error = blob_from(&blob_oid, log->repo, content.ptr, content.len)) < 0)
            goto done;
        snprintf(summary, sizeof(summary), "%s %s", kn, qd_key_id(e->key));
        break;
    }
    upd.id = blob_oid;
    if ((error = qd_log__json_dump(&ejb, j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)) < 0)
        goto done;
    ej = ejb.ptr;
    /* the tree: the parent's, updated; an empty tree for the first entry */
    if (log->n > 0) {
        if ((rc = git_commit_lookup(&parent, log->repo, &log->oids[log->n - 1])) < 0 ||
            (rc = git_commit_tree(&base, parent)) < 0) {
            error = qd_log__err_git(rc, "read head");
            goto done;
        }
    }
    /* libgit2 starts from an empty tree when the baseline is NULL (first entry) */
    if ((rc = git_tree_create_updated(&tree_oid, log->repo, base, 1, &upd)) < 0 ||
        (rc = git_tree_lookup(&tree, log->repo, &tree_oid)) < 0 ||
        (rc = git_signature_new(&who, "quantd", "quantd@log", (git_time_t)t, 0)) < 0) {
        error = qd_log__err_git(rc, "build tree");
        goto done;
    }
    if ((error = qd_buf_printf(&msg, "%s\n\n%s\n", summary, ej)) < 0)
        goto done;
    {
        const git_commit *parents[1] = {parent};
        if ((rc = git_commit_create_buffer(&cbuf, log->repo, who, who, NULL, msg.ptr, tree, parent ? 1 : 0,
                                           parents)) < 0) {
            error = qd_log__err_git(rc, "commit buffer");
            goto done;
        }
    }
    if ((error = qd_sshsig_sign(&sig, signer, "git", cbuf.ptr, cbuf.size)) < 0)
        goto done;
    if ((rc = git_commit_create_with_signature(&commit_oid, log->repo, cbuf.ptr, sig.ptr, NULL)) < 0) {
        error = qd_log__err_git(rc, "signed commit");
        goto done;
    }
    /* Merkle first, then the ref: a crash in between leaves the node files ahead, and open() rebuilds them */
    if ((error = qd_merkle_leaf_hash(leaf, ej, strlen(ej))) < 0 || (error = qd_merkle_append(log->merkle, leaf)) < 0)
        goto done;
    {
        git_reference *ref = NULL;
        if (log->n == 0)
            rc = git_reference_create(&ref, log->repo, BRANCH, &commit_oid, 0, "quantd log: first entry");
        else
            rc = git_reference_create_matching(&ref, log->repo, BRANCH, &commit_oid, 1, &log->oids[log->n - 1],
                                               "quantd log: append");
        git_reference_free(ref);
        if (rc < 0) {
            error = qd_log__err_git(rc, "update " BRANCH " (another writer?)");
            goto done;
        }
    }
    if ((error = push_oid(log, &commit_oid)) < 0)
        goto done;
    git_oid_tostr(log->head, sizeof(log->head), &commit_oid);
    if (index_out)
        *index_out = log->n - 1;
    error = QD_OK;
done:
    json_decref(j);
    qd_buf_dispose(&ejb);
    qd_buf_dispose(&msg);
    qd_buf_dispose(&sig);
    qd_buf_dispose(&content);
    git_buf_dispose(&cbuf);
    git_tree_free(base);
    git_tree_free(tree);
    git_commit_free(parent);
    git_signature_free(who);
    if (lock_fd >= 0)
        close(lock_fd); /* releases the flock */
    return error;
}

int qd_replog_entry_json(qd_buf *out, qd_replog *log, uint64_t i)
{
    git_commit *c = NULL;
    int rc, error;
    if (i >= log->n)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no entry %llu (the log has %zu)", (unsigned long long)i,
                            log->n);
    if ((rc = git_commit_lookup(&c, log->repo, &log->oids[i])) < 0)
        return qd_log__err_git(rc, "read commit");
    error = qd_log__entry_of_commit(out, c);
    git_commit_free(c);
    return error;
}

static int current_checkpoint(qd_checkpoint *cp, qd_replog *log)
{
    memset(cp, 0, sizeof(*cp));
    snprintf(cp->origin, sizeof(cp->origin), "%s", log->origin);
    cp->size = log->n;
    return qd_merkle_root(log->merkle, log->n, cp->root);
}

int qd_replog_checkpoint(qd_buf *out, qd_replog *log, const qd_key *key)
{
    qd_checkpoint cp;
    qd_buf text = QD_BUF_INIT(0);
    int error;
    if ((error = current_checkpoint(&cp, log)) == QD_OK && (error = qd_checkpoint_format(&text, &cp)) == QD_OK)
        error = qd_note_sign(out, text.ptr, text.len, log->origin, key);
    qd_buf_dispose(&text);
    return error;
}

typedef struct tagwalk {
    git_repository *repo;
    qd_buf *out;
    int error;
} tagwalk;

static int tag_cb(const char *root, const git_tree_entry *te, void *payload)
{
    tagwalk *w = payload;
    git_blob *b = NULL;
    const char *slash;
    size_t n;
    if (git_tree_entry_type(te) != GIT_OBJECT_BLOB)
        return 0;
    if (git_blob_lookup(&b, w->repo, git_tree_entry_id(te)) < 0) {
        w->error = qd_log__err_git(-1, "read tag");
        return -1;
    }
    n = (size_t)git_blob_rawsize(b);
    slash = root; /* "ns/model/" */
    n = n > 0 && ((const char *)git_blob_rawcontent(b))[n - 1] == '\n' ? n - 1 : n;
    w->error = qd_buf_printf(w->out, "%.*s:%s %.*s\n", (int)(strlen(slash) - 1), slash, git_tree_entry_name(te),
                             (int)n, (const char *)git_blob_rawcontent(b));
    git_blob_free(b);
    return w->error < 0 ? -1 : 0;
}

static int tagmap_of(qd_digest *out, git_repository *repo, const git_oid *head)
{
    qd_buf map = QD_BUF_INIT(0);
    git_commit *c = NULL;
    git_tree *tree = NULL, *tags = NULL;
    git_tree_entry *te = NULL;
    tagwalk w = {repo, &map, 0};
    int rc, error = QD_OK;
    if (head) {
        if ((rc = git_commit_lookup(&c, repo, head)) < 0 ||
            (rc = git_commit_tree(&tree, c)) < 0) {
            error = qd_log__err_git(rc, "read head");
            goto done;
        }
        rc = git_tree_entry_bypath(&te, tree, "tags");
        if (rc == 0) {
            if ((rc = git_tree_lookup(&tags, repo, git_tree_entry_id(te))) < 0 ||
                (rc = git_tree_walk(tags, GIT_TREEWALK_PRE, tag_cb, &w)) < 0) {
                error = w.error < 0 ? w.error : qd_log__err_git(rc, "walk tags");
                goto done;
            }
        } else {
            qd_error_clear();
        }
    }
    error = qd_sha256_buf(out, map.len ? map.ptr : "", map.len);
done:
    git_tree_entry_free(te);
    git_tree_free(tags);
    git_tree_free(tree);
    git_commit_free(c);
    qd_buf_dispose(&map);
    return error;
}

int qd_replog_tagmap_digest(qd_digest *out, qd_replog *log)
{
    return tagmap_of(out, log->repo, log->n > 0 ? &log->oids[log->n - 1] : NULL);
}

int qd_replog_timestamp(qd_buf *out, qd_replog *log, const qd_key *key, int64_t now, int64_t ttl_s)
{
    qd_checkpoint cp;
    qd_digest tm;
    qd_buf text = QD_BUF_INIT(0);
    int error;
    if (now == 0)
        now = (int64_t)time(NULL);
    if (ttl_s <= 0)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "timestamp: the lifetime must be positive");
    if ((error = current_checkpoint(&cp, log)) == QD_OK && (error = qd_replog_tagmap_digest(&tm, log)) == QD_OK &&
        (error = qd_log__timestamp_text(&text, &cp, &tm, now, now + ttl_s)) == QD_OK)
        error = qd_note_sign(out, text.ptr, text.len, log->origin, key);
    qd_buf_dispose(&text);
    return error;
}

/* ------------------------------------------------------------------------------------------------- verify --- */

/* MTH over leaf hashes in memory (verifier side: independent of the node files). */
static void mem_mth(const uint8_t *leaves, uint64_t a, uint64_t b, uint8_t out[QD_HASH_LEN])
{
    uint64_t n = b - a, k = 1;
    uint8_t l[QD_HASH_LEN], r[QD_HASH_LEN];
    if (n == 1) {
        memcpy(out, leaves + a * QD_HASH_LEN, QD_HASH_LEN);
        return;
    }
    while (k << 1 < n)
        k <<= 1;
    mem_mth(leaves, a, a + k, l);
    mem_mth(leaves, a + k, b, r);
    qd_merkle_node_hash(out, l, r);
}

static void mem_root(const uint8_t *leaves, uint64_t n, uint8_t out[QD_HASH_LEN])
{
    qd_digest d;
    if (n == 0) {
        qd_sha256_buf(&d, "", 0);
        memcpy(out, d.bytes, QD_HASH_LEN);
        return;
    }
    mem_mth(leaves, 0, n, out);
}

static int fail(qd_verify_failure *why, int code, const char *hex, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(qd_verify_failure *why, int code, const char *hex, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    set_why(why, hex, reason);
    return qd_error_set(code, QD_EC_VERIFY, "log commit %s: %s", hex ? hex : "-", reason);
}

/* The commit's tree must be its parent's tree (empty for the first) with exactly one blob at path upserted: a
 * commit cannot slip in changes its entry does not name (e.g. a bundle under a tag entry, which no one checks). */
static int check_single_change(qd_verify_failure *why, git_repository *repo, const git_commit *c, const char *hex,
                               const char *path)
{
    git_tree *tree = NULL, *ptree = NULL;
    git_commit *parent = NULL;
    git_tree_entry *te = NULL;
    git_tree_update u;
    git_oid want;
    int rc, error = QD_OK;
    if ((rc = git_commit_tree(&tree, c)) < 0 || (rc = git_tree_entry_bypath(&te, tree, path)) < 0) {
        error = fail(why, QD_ECORRUPT, hex, "%s missing from the tree", path);
        goto done;
    }
    if (git_tree_entry_filemode(te) != GIT_FILEMODE_BLOB) {
        error = fail(why, QD_ECORRUPT, hex, "%s is not a plain file", path);
        goto done;
    }
    if (git_commit_parentcount(c) > 0 &&
        ((rc = git_commit_parent(&parent, c, 0)) < 0 || (rc = git_commit_tree(&ptree, parent)) < 0)) {
        error = fail(why, QD_ECORRUPT, hex, "unreadable parent tree");
        goto done;
    }
    memset(&u, 0, sizeof(u));
    u.action = GIT_TREE_UPDATE_UPSERT;
    git_oid_cpy(&u.id, git_tree_entry_id(te));
    u.filemode = GIT_FILEMODE_BLOB;
    u.path = path;
    if ((rc = git_tree_create_updated(&want, repo, ptree, 1, &u)) < 0) {
        error = qd_log__err_git(rc, "rebuild tree");
        goto done;
    }
    if (!git_oid_equal(&want, git_commit_tree_id(c)))
        error = fail(why, QD_ECORRUPT, hex, "the commit changes more than its entry's path %s", path);
done:
    git_tree_entry_free(te);
    git_tree_free(tree);
    git_tree_free(ptree);
    git_commit_free(parent);
    return error;
}

static bool hex64(const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* The keys the log has revoked so far (key-revoke entries), in log order. */
typedef struct revset {
    struct revoked_key {
        char id[QD_KEY_ID_LEN + 1];
        uint64_t at;
    } *k;
    size_t n, cap;
} revset;

static int revset_add(revset *rs, const char *id, uint64_t at)
{
    if (rs->n == rs->cap) {
        size_t nc = rs->cap ? rs->cap * 2 : 8;
        struct revoked_key *nk = qd_reallocarray(rs->k, nc, sizeof(*nk));
        if (!nk)
            return QD_ENOMEM;
        rs->k = nk;
        rs->cap = nc;
    }
    snprintf(rs->k[rs->n].id, sizeof(rs->k[0].id), "%s", id);
    rs->k[rs->n++].at = at;
    return QD_OK;
}

static const struct revoked_key *revset_find(const revset *rs, const char *id)
{
    for (size_t i = 0; id && i < rs->n; i++)
        if (!strcmp(rs->k[i].id, id))
            return &rs->k[i];
    return NULL;
}

/* A bundle published after the log revoked one of its signers: the signature key ids it names and, under a
 * policy, the keys whose signatures counted (a signature without a key id is tried against every key). */
static const struct revoked_key *revoked_signer(const revset *rs, const qd_policy *policy, const char *name,
                                                const void *bundle, size_t len)
{
    const struct revoked_key *hit = NULL;
    qd_envelope *env = NULL;
    qd_verified *v = NULL;
    qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
    if (rs->n == 0 || qd_envelope_parse(&env, bundle, len, policy ? qd_policy_max_payload(policy) : 0) < 0)
        goto done;
    for (size_t k = 0; !hit && k < qd_envelope_signature_count(env); k++)
        hit = revset_find(rs, qd_envelope_signature_keyid(env, k));
    if (!hit && policy) {
        vo.namespace_name = name;
        vo.skip_subjects = true;
        if (qd_verify(&v, NULL, policy, env, NULL, 0, &vo) == QD_OK)
            for (size_t k = 0; !hit && k < qd_verified_key_count(v); k++)
                hit = revset_find(rs, qd_verified_key_id(v, k));
    }
done:
    qd_error_clear();
    qd_verified_free(v);
    qd_envelope_free(env);
    return hit;
}

static int verify_entry(qd_verify_failure *why, git_repository *repo, const git_commit *c, const char *hex,
                        const char *entry, size_t len, uint64_t seq, char *origin, const qd_policy *policy,
                        const char *log_key_id, bool *log_key_revoked, revset *rs, bool check_revoked)
{
    json_t *j;
    json_error_t je;
    const char *kind = NULL, *name = NULL, *manifest = NULL, *bundle = NULL, *org = NULL, *key_id = NULL;
    json_int_t s = -1, v = 0, t = 0;
    qd_buf blob = QD_BUF_INIT(0);
    qd_digest md, bd, got;
    char path[512], hx[65];
    int error = QD_OK;
    if (!(j = json_loadb(entry, len, JSON_REJECT_DUPLICATES, &je)) ||
        json_unpack(j, "{s:I, s:s, s:I, s:s, s:I, s?s, s?s, s?s, s?s}", "v", &v, "origin", &org, "seq", &s, "kind",
                    &kind, "time", &t, "name", &name, "manifest", &manifest, "bundle", &bundle, "key_id",
                    &key_id) != 0 ||
        v != 1) {
        error = fail(why, QD_ECORRUPT, hex, "malformed entry JSON");
        goto done;
    }
    if ((uint64_t)s != seq) {
        error = fail(why, QD_ECORRUPT, hex, "entry numbered out of order");
        goto done;
    }
    if (!*origin)
        snprintf(origin, 256, "%s", org);
    else if (strcmp(origin, org) != 0) {
        error = fail(why, QD_ECORRUPT, hex, "entry of another log (origin %s)", org);
        goto done;
    }
    if (!strcmp(kind, "publish") || !strcmp(kind, "tag")) {
        const char *colon = name ? strrchr(name, ':') : NULL;
        size_t base = !name ? 0 : !strcmp(kind, "tag") && colon ? (size_t)(colon - name) : strlen(name);
        if (!name || !manifest || qd_digest_parse(&md, manifest) < 0 || !model_name_ok(name, base) ||
            (!strcmp(kind, "tag") && (!colon || !name_chars_ok(colon + 1, strlen(colon + 1)) || strchr(colon + 1, '/')))) {
            error = fail(why, QD_ECORRUPT, hex, "%s entry without a valid name or manifest digest", kind);
            goto done;
        }
        if (!strcmp(kind, "publish")) {
            if (!bundle || qd_digest_parse(&bd, bundle) < 0) {
                error = fail(why, QD_ECORRUPT, hex, "publish entry without bundle digest");
                goto done;
            }
            snprintf(path, sizeof(path), "manifests/sha256/%s.json", qd_digest_hex(hx, &md));
            if ((error = qd_log__blob_at(&blob, repo, c, path, BUNDLE_MAX)) < 0) {
                error = fail(why, QD_ECORRUPT, hex, "bundle %s missing or unreadable: %s", path,
                             qd_error_last()->message);
                goto done;
            }
            qd_sha256_buf(&got, blob.ptr, blob.len);
            if (!qd_digest_equal(&got, &bd)) {
                error = fail(why, QD_ECORRUPT, hex, "bundle %s does not match the digest in the entry", path);
                goto done;
            }
            if (policy && (error = check_bundle(policy, name, blob.ptr, blob.len, NULL)) < 0) {
                error = fail(why, QD_EBADSIG, hex, "bundle refused by the trust policy: %s", qd_error_last()->message);
                goto done;
            }
            if (check_revoked) {
                const struct revoked_key *rk = revoked_signer(rs, policy, name, blob.ptr, blob.len);
                if (rk) {
                    error = fail(why, QD_EBADSIG, hex,
                                 "publish %s %s (entry %llu) is signed by key %s, which the log revoked at entry %llu",
                                 name, manifest, (unsigned long long)seq, rk->id, (unsigned long long)rk->at);
                    if (why)
                        snprintf(why->key_id, sizeof(why->key_id), "%s", rk->id);
                    goto done;
                }
            }
        } else {
            char want[QD_DIGEST_STR_LEN + 2];
            snprintf(path, sizeof(path), "tags/%.*s/%s", (int)(colon - name), name, colon + 1);
            snprintf(want, sizeof(want), "%s\n", manifest);
            if ((error = qd_log__blob_at(&blob, repo, c, path, 1024)) < 0 || blob.len != strlen(want) ||
                memcmp(blob.ptr, want, blob.len) != 0) {
                error = fail(why, QD_ECORRUPT, hex, "tag file %s does not hold the digest in the entry", path);
                goto done;
            }
        }
    } else if (!strcmp(kind, "key-add") || !strcmp(kind, "key-revoke")) {
        if (!key_id || !hex64(key_id)) {
            error = fail(why, QD_ECORRUPT, hex, "key entry without a valid key_id");
            goto done;
        }
        if (!strcmp(kind, "key-add"))
            snprintf(path, sizeof(path), "keys/%s.pub", key_id);
        else
            snprintf(path, sizeof(path), "keys/revoked/%s", key_id);
        if (!strcmp(kind, "key-revoke") && !strcmp(key_id, log_key_id))
            *log_key_revoked = true;
        if (!strcmp(kind, "key-revoke") && !revset_find(rs, key_id) && (error = revset_add(rs, key_id, seq)) < 0)
            goto done;
    } else {
        error = fail(why, QD_ECORRUPT, hex, "unknown entry kind %s", kind);
        goto done;
    }
    error = check_single_change(why, repo, c, hex, path);
done:
    json_decref(j);
    qd_buf_dispose(&blob);
    return error;
}

int qd_replog_verify(qd_replog_state *out, qd_verify_failure *why, const char *dir, const qd_key *log_key,
                     const qd_policy *policy, const qd_replog_state *prev)
{
    git_repository *repo = NULL;
    git_oid *oids = NULL;
    size_t n = 0, i;
    git_commit *c = NULL;
    git_buf sig = GIT_BUF_INIT, signed_data = GIT_BUF_INIT;
    qd_buf e = QD_BUF_INIT(ENTRY_MAX);
    uint8_t *leaves = NULL, root[QD_HASH_LEN];
    char hex[41], origin[256] = "";
    qd_replog_state st;
    bool revoked = false;
    revset rs = {NULL, 0, 0};
    int rc, error = QD_OK;
    git_libgit2_init();
    if (why)
        set_why(why, NULL, "-");
    if ((rc = git_repository_open_ext(&repo, dir, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL)) < 0) {
        error = rc == GIT_ENOTFOUND ? qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s: not a git repository", dir)
                                    : qd_log__err_git(rc, dir);
        goto done;
    }
    if ((error = qd_log__walk(&oids, &n, repo, why)) < 0)
        goto done;
    if (prev && prev->size > 0) {
        char want[41];
        if (n < prev->size) {
            error = fail(why, QD_EBADSIG, NULL, "rollback: the log has %zu entries, %llu were verified before", n,
                         (unsigned long long)prev->size);
            goto done;
        }
        git_oid_tostr(want, sizeof(want), &oids[prev->size - 1]);
        if (strcmp(want, prev->head) != 0) {
            error = fail(why, QD_EBADSIG, want, "history rewritten: not a fast-forward of the verified head %s",
                         prev->head);
            goto done;
        }
    }
    if (n > 0 && !(leaves = qd_mallocarray(n, QD_HASH_LEN))) {
        error = QD_ENOMEM;
        goto done;
    }
    for (i = 0; i < n; i++) {
        git_oid_tostr(hex, sizeof(hex), &oids[i]);
        if ((rc = git_commit_lookup(&c, repo, &oids[i])) < 0) {
            error = fail(why, QD_ECORRUPT, hex, "unreadable commit: %s",
                         git_error_last() ? git_error_last()->message : "");
            goto done;
        }
        git_buf_dispose(&sig);
        git_buf_dispose(&signed_data);
        rc = git_commit_extract_signature(&sig, &signed_data, repo, &oids[i], NULL);
        if (rc < 0) {
            error = fail(why, QD_EBADSIG, hex, "unsigned commit");
            goto done;
        }
        if (revoked) {
            error = fail(why, QD_EBADSIG, hex, "signed with the log key after the log revoked it");
            goto done;
        }
        /* the prefix already verified (same head commit, hence the same commits and trees) is not re-checked
         * for signatures and policy; its leaves still are, against prev->root, below */
        if (!(prev && i < prev->size) &&
            qd_sshsig_verify(sig.ptr, sig.size, log_key, "git", signed_data.ptr, signed_data.size) != QD_OK) {
            error = fail(why, QD_EBADSIG, hex, "commit signature: %s", qd_error_last()->message);
            goto done;
        }
        qd_buf_clear(&e);
        if ((error = qd_log__entry_of_commit(&e, c)) < 0) {
            error = fail(why, QD_ECORRUPT, hex, "%s", qd_error_last()->message);
            goto done;
        }
        if ((error = verify_entry(why, repo, c, hex, e.ptr, e.len, i, origin, prev && i < prev->size ? NULL : policy,
                                  qd_key_id(log_key), &revoked, &rs, !(prev && i < prev->size))) < 0)
            goto done;
        qd_merkle_leaf_hash(leaves + i * QD_HASH_LEN, e.ptr, e.len);
        git_commit_free(c);
        c = NULL;
    }
    if (prev && prev->size > 0) {
        mem_root(leaves, prev->size, root);
        if (memcmp(root, prev->root, QD_HASH_LEN) != 0) {
            error = fail(why, QD_EBADSIG, NULL, "history rewritten: the Merkle root of the verified prefix changed");
            goto done;
        }
    }
    memset(&st, 0, sizeof(st));
    st.size = n;
    if (n > 0)
        git_oid_tostr(st.head, sizeof(st.head), &oids[n - 1]);
    mem_root(leaves, n, st.root);
    if ((error = tagmap_of(&st.tagmap, repo, n > 0 ? &oids[n - 1] : NULL)) < 0)
        goto done;
    if (out)
        *out = st;
done:
    git_commit_free(c);
    git_buf_dispose(&sig);
    git_buf_dispose(&signed_data);
    qd_buf_dispose(&e);
    qd_free(leaves);
    qd_free(oids);
    qd_free(rs.k);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return error;
}

/* For audit.c: the blob at path in entry i's tree. */
int qd_log__blob_of_entry(qd_buf *out, qd_replog *log, uint64_t i, const char *path, size_t max);
int qd_log__blob_of_entry(qd_buf *out, qd_replog *log, uint64_t i, const char *path, size_t max)
{
    git_commit *c = NULL;
    int rc, error;
    if (i >= log->n)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no entry %llu", (unsigned long long)i);
    if ((rc = git_commit_lookup(&c, log->repo, &log->oids[i])) < 0)
        return qd_log__err_git(rc, "read commit");
    error = qd_log__blob_at(out, log->repo, c, path, max);
    git_commit_free(c);
    return error;
}

/* ------------------------------------------------------------------------------------------- daemon helpers --- */

bool qd_replog_name_ok(const char *name, bool tagged)
{
    const char *colon;
    if (!name)
        return false;
    if (!tagged)
        return model_name_ok(name, strlen(name));
    colon = strrchr(name, ':');
    return colon && model_name_ok(name, (size_t)(colon - name)) && name_chars_ok(colon + 1, strlen(colon + 1)) &&
           !strchr(colon + 1, '/');
}

int qd_replog_read_at(qd_buf *out, qd_replog *log, uint64_t i, const char *path, size_t max)
{
    return qd_log__blob_of_entry(out, log, i, path, max);
}

int qd_replog_read_head(qd_buf *out, qd_replog *log, const char *path, size_t max)
{
    int error;
    if (!log || log->n == 0)
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s: the log is empty", path);
    error = qd_log__blob_of_entry(out, log, log->n - 1, path, max);
    return error;
}
