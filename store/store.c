/*
 * store.c - opening and closing a store, its meta database, the writer lock and the transaction helpers.
 *
 * The map: LMDB reserves address space for the whole map but the file only grows as pages are written (we never
 * use MDB_WRITEMAP, so nothing is preallocated). We open with a map of 64 GiB of address space and double it
 * whenever a write transaction reports MDB_MAP_FULL, up to map_max. Growing needs every transaction of this process
 * to pause (an LMDB rule), so it takes map_lock exclusively; the lock prefers writers, so a steady stream of readers
 * cannot starve a growth, and the wait is bounded: a thread that holds a reader while it writes would otherwise
 * wait on itself. A real full disk shows up as ENOSPC from the commit: the transaction is aborted, the store is
 * unchanged, and the caller gets QD_EFULL.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <stddef.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/version.h"
#include "store_int.h"

#define STORE_MAGIC "quantd-store"
#define DEFAULT_MAP (64ull << 30)
#define GROW_WAIT_SECONDS 30
#define DEFAULT_MAP_MAX (16ull << 40)
#define DEFAULT_BATCH (32ull << 20)
#define N_DBS 9

_Thread_local int qd_store__map_full;

int qd_store__err_mdb(int rc, const char *what)
{
    switch (rc) {
    case 0:
        return QD_OK;
    case MDB_NOTFOUND:
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "%s: not found", what);
    case MDB_MAP_FULL:
        qd_store__map_full = 1;
        return qd_error_set(QD_EFULL, QD_EC_STORE, "%s: the store's map is full", what);
    case ENOSPC:
    case EDQUOT:
        return qd_error_set(QD_EFULL, QD_EC_STORE, "%s: no space left on the device", what);
    case ENOMEM:
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", what);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "%s: %s", what, mdb_strerror(rc));
    case EACCES:
    case EROFS:
        return qd_error_set(QD_EIO, QD_EC_STORE, "%s: %s", what, mdb_strerror(rc));
    case MDB_READERS_FULL:
        return qd_error_set(QD_EAGAIN, QD_EC_STORE, "%s: too many readers", what);
    default:
        return qd_error_set(rc > 0 ? QD_EIO : QD_ERROR, QD_EC_STORE, "%s: %s", what, mdb_strerror(rc));
    }
}

int64_t qd_store__now(void)
{
    return (int64_t)time(NULL);
}

const char *qd_store_path(const qd_store *s) { return s->path; }

/* ---- transactions -------------------------------------------------------------------------------------------- */

static int grow_map(qd_store *s)
{
    MDB_envinfo info;
    uint64_t next;
    int rc;

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += GROW_WAIT_SECONDS;
    if (pthread_rwlock_timedwrlock(&s->map_lock, &deadline) != 0)
        return qd_error_set(QD_EFULL, QD_EC_STORE,
                            "the store's map is full and open readers did not pause for %d s to let it grow",
                            GROW_WAIT_SECONDS);
    mdb_env_info(s->env, &info);
    next = (uint64_t)info.me_mapsize * 2;
    if ((uint64_t)info.me_mapsize >= s->map_max) {
        pthread_rwlock_unlock(&s->map_lock);
        return qd_error_set(QD_EFULL, QD_EC_STORE, "the store is full: its map reached the limit of %llu bytes",
                            (unsigned long long)s->map_max);
    }
    if (next > s->map_max)
        next = s->map_max;
    rc = mdb_env_set_mapsize(s->env, (size_t)next);
    pthread_rwlock_unlock(&s->map_lock);
    if (rc)
        return qd_store__err_mdb(rc, "grow the map");
    return QD_OK;
}

/* Another process grew the map: adopt its size. */
static int adopt_map(qd_store *s)
{
    int rc;
    pthread_rwlock_wrlock(&s->map_lock);
    rc = mdb_env_set_mapsize(s->env, 0);
    pthread_rwlock_unlock(&s->map_lock);
    return rc ? qd_store__err_mdb(rc, "adopt the map size") : QD_OK;
}

int qd_store__read_begin(qd_store *s, MDB_txn **out)
{
    int rc;
    for (int tries = 0;; tries++) {
        pthread_rwlock_rdlock(&s->map_lock);
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);
        if (rc == 0)
            return QD_OK;
        pthread_rwlock_unlock(&s->map_lock);
        if (rc == MDB_MAP_RESIZED && tries < 3) {
            if ((rc = adopt_map(s)) < 0)
                return rc;
            continue;
        }
        return qd_store__err_mdb(rc, "begin a read transaction");
    }
}

void qd_store__txn_end(qd_store *s, MDB_txn *txn)
{
    if (!txn)
        return;
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->map_lock);
}

/* LMDB reports a short write of its pages as EIO ("which error code?" says its source): when the device holding
 * the store has no room left, say so. */
static int commit_error(qd_store *s, int mrc)
{
    struct statvfs vfs;
    if ((mrc == EIO || mrc == ENOSPC || mrc == EDQUOT) && statvfs(s->path, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < (64ull << 20))
        return qd_error_set(QD_EFULL, QD_EC_STORE,
                            "no space left on the device holding %s (%llu bytes free): nothing was stored", s->path,
                            (unsigned long long)vfs.f_bavail * vfs.f_frsize);
    return qd_store__err_mdb(mrc, "commit");
}

int qd_store__write(qd_store *s, qd_store__write_fn fn, void *payload)
{
    MDB_txn *txn;
    int rc;

    if (s->flags & QD_STORE_RDONLY)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "the store %s is open read-only", s->path);
    for (int tries = 0; tries < 64; tries++) {
        pthread_rwlock_rdlock(&s->map_lock);
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc) {
            pthread_rwlock_unlock(&s->map_lock);
            if (rc == MDB_MAP_RESIZED) {
                if ((rc = adopt_map(s)) < 0)
                    return rc;
                continue;
            }
            return qd_store__err_mdb(rc, "begin a write transaction");
        }
        qd_store__map_full = 0;
        rc = fn(s, txn, payload);
        if (rc == QD_OK) {
            int mrc = mdb_txn_commit(txn);
            pthread_rwlock_unlock(&s->map_lock);
            if (mrc == 0)
                return QD_OK;
            if (mrc == MDB_MAP_FULL) {
                if ((rc = grow_map(s)) < 0)
                    return rc;
                continue;
            }
            return commit_error(s, mrc);
        }
        mdb_txn_abort(txn);
        pthread_rwlock_unlock(&s->map_lock);
        if (rc == QD_EFULL && qd_store__map_full) {
            if ((rc = grow_map(s)) < 0)
                return rc;
            continue;
        }
        return rc;
    }
    return qd_error_set(QD_EFULL, QD_EC_STORE, "the map could not grow enough for one transaction");
}

/* ---- open / close -------------------------------------------------------------------------------------------- */

/* What is in dir: -1 absent, 0 empty, 1 has data.mdb, 2 has other things. */
static int dir_state(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int state = 0;
    if (!d)
        return errno == ENOENT ? -1 : 2;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!strcmp(e->d_name, "data.mdb"))
            state = 1;
        else if (state == 0 && strcmp(e->d_name, "lock.mdb") && strcmp(e->d_name, "writer.lock"))
            state = 2;
    }
    closedir(d);
    return state;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path);
    if (len >= sizeof(tmp))
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "path too long: %.64s...", path);
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", tmp, strerror(errno));
    return QD_OK;
}

static int take_writer_lock(qd_store *s)
{
    char lp[4096], pidbuf[32];
    int fd, n;

    snprintf(lp, sizeof(lp), "%s/writer.lock", s->path);
    fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "open %s: %s", lp, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        long pid = 0;
        n = (int)pread(fd, pidbuf, sizeof(pidbuf) - 1, 0);
        if (n > 0) {
            pidbuf[n] = '\0';
            pid = strtol(pidbuf, NULL, 10);
        }
        close(fd);
        if (err == EWOULDBLOCK)
            return qd_error_set(QD_EBUSY, QD_EC_STORE,
                                "the store %s is being written by another process (pid %ld); stop it or go through it",
                                s->path, pid);
        return qd_error_set(QD_EIO, QD_EC_OS, "lock %s: %s", lp, strerror(err));
    }
    n = snprintf(pidbuf, sizeof(pidbuf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pidbuf, (size_t)n, 0) != n) {
        /* The pid is informative only; the flock is what excludes. */
    }
    s->lock_fd = fd;
    return QD_OK;
}

typedef struct init_ctx {
    int created;
    uint32_t found_schema;
} init_ctx;

static int open_dbs(qd_store *s, MDB_txn *txn, unsigned flags)
{
    static const char *names[N_DBS] = {"meta", "chunks", "chunk_refs", "blobs", "refs",
                                       "tags", "manifests", "lineage", "jobs"};
    MDB_dbi *dbis[N_DBS] = {&s->db_meta,  &s->db_chunks,    &s->db_chunk_refs, &s->db_blobs, &s->db_refs,
                            &s->db_tags, &s->db_manifests, &s->db_lineage,    &s->db_jobs};
    for (int i = 0; i < N_DBS; i++) {
        int rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
        if (rc == MDB_NOTFOUND)
            return qd_error_set(QD_ENOTSTORE, QD_EC_STORE, "%s: database '%s' is missing: not a quantd store",
                                s->path, names[i]);
        if (rc)
            return qd_store__err_mdb(rc, "open database");
    }
    /* the audit indexes came later: a store made before them gets the database at its next read-write open (and
     * qd_audit_index_ensure fills it); a read-only open of such a store has none */
    {
        int rc = mdb_dbi_open(txn, "audit", flags, &s->db_audit);
        if (rc && rc != MDB_NOTFOUND)
            return qd_store__err_mdb(rc, "open database");
        s->has_audit_db = rc == 0;
    }
    return QD_OK;
}

static int meta_get(qd_store *s, MDB_txn *txn, const char *key, MDB_val *out)
{
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, s->db_meta, &k, out);
}

static int check_meta(qd_store *s, MDB_txn *txn, init_ctx *ic)
{
    MDB_val v;
    uint32_t schema;
    if (meta_get(s, txn, "magic", &v) || v.mv_size != strlen(STORE_MAGIC) ||
        memcmp(v.mv_data, STORE_MAGIC, v.mv_size) != 0)
        return qd_error_set(QD_ENOTSTORE, QD_EC_STORE, "%s holds an LMDB environment that is not a quantd store",
                            s->path);
    if (meta_get(s, txn, "schema", &v) || v.mv_size != 4)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "%s: the schema version is missing", s->path);
    memcpy(&schema, v.mv_data, 4);
    ic->found_schema = schema;
    if (schema > QD_STORE_SCHEMA_VERSION)
        return qd_error_set(QD_EVERSION, QD_EC_STORE,
                            "%s was made by a newer quantd (store schema %u; this build reads up to %u): upgrade quantd",
                            s->path, schema, QD_STORE_SCHEMA_VERSION);
    return QD_OK;
}

static int init_write(qd_store *s, MDB_txn *txn, void *payload)
{
    init_ctx *ic = payload;
    MDB_val probe;
    int rc;

    if ((rc = open_dbs(s, txn, MDB_CREATE)) < 0)
        return rc;
    if (meta_get(s, txn, "magic", &probe) == MDB_NOTFOUND) {
        uint32_t schema = QD_STORE_SCHEMA_VERSION;
        const char *ver = qd_version_string();
        MDB_val k, v;
        k = (MDB_val){5, "magic"};
        v = (MDB_val){strlen(STORE_MAGIC), STORE_MAGIC};
        if ((rc = mdb_put(txn, s->db_meta, &k, &v, 0)))
            return qd_store__err_mdb(rc, "write meta");
        k = (MDB_val){6, "schema"};
        v = (MDB_val){4, &schema};
        if ((rc = mdb_put(txn, s->db_meta, &k, &v, 0)))
            return qd_store__err_mdb(rc, "write meta");
        k = (MDB_val){10, "created_by"};
        v = (MDB_val){strlen(ver), (void *)ver};
        if ((rc = mdb_put(txn, s->db_meta, &k, &v, 0)))
            return qd_store__err_mdb(rc, "write meta");
        ic->created = 1;
    }
    return check_meta(s, txn, ic);
}

/* LMDB allocates a write transaction's dirty pages with malloc (a chunk is one allocation of up to 4 MiB) and
 * frees them at commit. glibc would serve those from fresh mmaps and return them at free, and on these VMs the
 * first touch of every fresh 4 KiB page costs more than the copy into it (put ran 4x slower). Keep such blocks in
 * the heap for reuse: allocations up to 16 MiB come from the heap, and up to 256 MiB of free heap is kept.
 * Process-wide, set once, before the first store opens; QD_NO_MALLOPT=1 leaves the allocator alone. */
static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;

static void tune_malloc(void)
{
    const char *no = getenv("QD_NO_MALLOPT");
    if (no && *no == '1')
        return;
    mallopt(M_MMAP_THRESHOLD, 16 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

int qd_store_open(qd_store **out, const char *dir, const qd_store_options *opts)
{
    qd_store_options def = QD_STORE_OPTIONS_INIT;
    qd_store *s;
    int rc, state, dead;
    unsigned envflags = MDB_NOTLS;
    char dp[4096];
    struct stat st;
    init_ctx ic = {0, 0};

    *out = NULL;
    pthread_once(&malloc_once, tune_malloc);
    if (!opts)
        opts = &def;
    if (opts->version != QD_STORE_OPTIONS_VERSION)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "store options version %u not supported", opts->version);
    if (!dir || !*dir)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "no store directory given");

    state = dir_state(dir);
    if (state == 2)
        return qd_error_set(QD_ENOTSTORE, QD_EC_STORE, "%s is not a quantd store (it holds other files)", dir);
    if (state <= 0 && !(opts->flags & QD_STORE_CREATE))
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no store at %s", dir);
    if (state <= 0 && (opts->flags & QD_STORE_RDONLY))
        return qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "no store at %s (cannot create it read-only)", dir);
    if (state == -1 && (rc = mkdir_p(dir)) < 0)
        return rc;
    snprintf(dp, sizeof(dp), "%s/data.mdb", dir);
    if (state == 1 && (stat(dp, &st) < 0 || !S_ISREG(st.st_mode)))
        return qd_error_set(QD_ENOTSTORE, QD_EC_STORE, "%s is not a quantd store (data.mdb is not a file)", dir);

    s = qd_calloc(1, sizeof(*s));
    if (!s)
        return QD_ENOMEM;
    s->lock_fd = -1;
    s->flags = opts->flags;
    s->map_max = opts->map_max ? opts->map_max : DEFAULT_MAP_MAX;
    s->batch_bytes = opts->batch_bytes ? opts->batch_bytes : DEFAULT_BATCH;
    s->zstd_level = opts->zstd_level ? opts->zstd_level : 1;
    {
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&s->map_lock, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    pthread_rwlock_init(&s->put_lock, NULL);
    if (!(s->path = qd_strdup(dir))) {
        rc = QD_ENOMEM;
        goto fail;
    }
    if (!(opts->flags & QD_STORE_RDONLY) && (rc = take_writer_lock(s)) < 0)
        goto fail;

    if ((rc = mdb_env_create(&s->env))) {
        rc = qd_store__err_mdb(rc, "create the environment");
        goto fail;
    }
    mdb_env_set_maxdbs(s->env, 16);
    mdb_env_set_maxreaders(s->env, 512);
    {
        uint64_t map = opts->map_size ? opts->map_size : DEFAULT_MAP;
        if (state == 1 && (uint64_t)st.st_size > map)
            map = (uint64_t)st.st_size; /* never open smaller than the file */
        if (map > s->map_max)
            map = s->map_max;
        if (state == 1 && (uint64_t)st.st_size > map)
            map = (uint64_t)st.st_size;
        mdb_env_set_mapsize(s->env, (size_t)map);
    }
    if (opts->flags & QD_STORE_RDONLY)
        envflags |= MDB_RDONLY;
    if ((rc = mdb_env_open(s->env, dir, envflags, 0644))) {
        if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
            rc = qd_error_set(QD_ENOTSTORE, QD_EC_STORE, "%s: data.mdb is not an LMDB environment: not a quantd store", dir);
        else
            rc = qd_store__err_mdb(rc, "open the environment");
        goto fail;
    }
    /* Clear reader slots left by processes that died holding a read transaction. */
    mdb_reader_check(s->env, &dead);

    if (opts->flags & QD_STORE_RDONLY) {
        MDB_txn *txn;
        if ((rc = qd_store__read_begin(s, &txn)) < 0)
            goto fail;
        rc = open_dbs(s, txn, 0);
        if (rc == QD_OK)
            rc = check_meta(s, txn, &ic);
        if (rc == QD_OK) {
            /* dbi handles opened in a read txn become visible to the env only if the txn commits */
            int mrc = mdb_txn_commit(txn);
            pthread_rwlock_unlock(&s->map_lock);
            rc = mrc ? qd_store__err_mdb(mrc, "open databases") : QD_OK;
        } else {
            qd_store__txn_end(s, txn);
        }
        if (rc < 0)
            goto fail;
    } else if ((rc = qd_store__write(s, init_write, &ic)) < 0) {
        goto fail;
    }
    *out = s;
    return QD_OK;

fail:
    qd_store_close(s);
    return rc;
}

void qd_store_close(qd_store *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_rwlock_destroy(&s->map_lock);
    pthread_rwlock_destroy(&s->put_lock);
    qd_free(s->path);
    qd_free(s);
}

/* ---- shared record helpers ----------------------------------------------------------------------------------- */

int qd_store__blob_parse(const qd_digest *d, const MDB_val *v, blob_hdr *h, blob_chunk **chunks)
{
    const uint8_t *raw = v->mv_data;
    char ds[QD_DIGEST_STR_LEN + 1];
    uint64_t prev = 0;
    blob_chunk *c = NULL;

    if (chunks)
        *chunks = NULL;
    /* LMDB values are not aligned: copy before reading wider than a byte */
    if (v->mv_size < sizeof(blob_hdr))
        goto bad;
    memcpy(h, raw, sizeof(*h));
    if (h->magic != BLOB_MAGIC || v->mv_size != sizeof(blob_hdr) + (size_t)h->n_chunks * sizeof(blob_chunk))
        goto bad;
    if (chunks && h->n_chunks) {
        if (!(c = qd_mallocarray(h->n_chunks, sizeof(*c))))
            return QD_ENOMEM;
        memcpy(c, raw + sizeof(blob_hdr), (size_t)h->n_chunks * sizeof(*c));
    }
    for (uint32_t i = 0; i < h->n_chunks; i++) {
        uint64_t end;
        memcpy(&end, raw + sizeof(blob_hdr) + (size_t)i * sizeof(blob_chunk) + offsetof(blob_chunk, end), 8);
        if (end <= prev || end - prev > QD_CHUNK_MAX)
            goto bad;
        prev = end;
    }
    if (prev != h->size)
        goto bad;
    if (chunks)
        *chunks = c;
    return QD_OK;
bad:
    qd_free(c);
    return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "blob %s: malformed record", qd_digest_format(ds, d));
}

void qd_store__blob_info(const qd_digest *d, const blob_hdr *h, qd_blob_info *out)
{
    memset(out, 0, sizeof(*out));
    out->digest = *d;
    out->size = h->size;
    out->stored_bytes = h->stored;
    out->n_chunks = h->n_chunks;
    out->n_compressed = h->n_compressed;
    out->created = h->created;
}

int qd_store__count_referrers(qd_store *s, MDB_txn *txn, const qd_digest *d, uint64_t *out)
{
    MDB_cursor *cur;
    uint8_t key[64];
    MDB_val k = {sizeof(key), key}, v;
    int rc;
    uint64_t n = 0;

    memcpy(key, d->bytes, 32);
    memset(key + 32, 0, 32);
    if ((rc = mdb_cursor_open(txn, s->db_refs, &cur)))
        return qd_store__err_mdb(rc, "open a cursor");
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == 64 && memcmp(k.mv_data, d->bytes, 32) == 0) {
        n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return qd_store__err_mdb(rc, "read references");
    *out = n;
    return QD_OK;
}

int qd_store__chunk_refs_get(qd_store *s, MDB_txn *txn, const uint8_t hash[32], uint64_t *out)
{
    MDB_val k = {32, (void *)hash}, v;
    int rc = mdb_get(txn, s->db_chunk_refs, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return QD_OK;
    }
    if (rc)
        return qd_store__err_mdb(rc, "read a chunk reference count");
    if (v.mv_size != 8)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "malformed chunk reference count");
    memcpy(out, v.mv_data, 8);
    return QD_OK;
}

int qd_store__chunk_refs_add(qd_store *s, MDB_txn *txn, const uint8_t hash[32], int64_t delta, uint64_t *out)
{
    uint64_t n;
    MDB_val k = {32, (void *)hash}, v;
    int rc = qd_store__chunk_refs_get(s, txn, hash, &n);
    if (rc < 0)
        return rc;
    if (delta < 0 && n < (uint64_t)-delta)
        return qd_error_set(QD_ECORRUPT, QD_EC_STORE, "chunk reference count would go below zero");
    n = (uint64_t)((int64_t)n + delta);
    if (n == 0) {
        rc = mdb_del(txn, s->db_chunk_refs, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return qd_store__err_mdb(rc, "drop a chunk reference count");
    } else {
        v = (MDB_val){8, &n};
        if ((rc = mdb_put(txn, s->db_chunk_refs, &k, &v, 0)))
            return qd_store__err_mdb(rc, "write a chunk reference count");
    }
    if (out)
        *out = n;
    return QD_OK;
}
