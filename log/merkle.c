/*
 * merkle.c - RFC 6962 / RFC 9162 Merkle tree hashing, proofs and their verification, and the persisted node files.
 *
 * Storage: level k holds, in the file "level-KK", the hash of every complete subtree of 2^k leaves that starts at a
 * multiple of 2^k, 32 bytes each, in order; level 0 is the leaf hashes. Every subtree the RFC recursion names is
 * either such a complete subtree (one pread) or splits at the largest power of two below its size, so a root or a
 * proof reads O(log n) nodes and hashes at most O(log^2 n) times. An append writes one leaf plus one node per
 * level it completes. A crash can leave a level short or long by a node: qd_merkle_open() trims the long ones and
 * recomputes the missing upper nodes from the level below.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/replog.h"

#define LEVELS 64

struct qd_merkle {
    char *dir;
    int fd[LEVELS];
    uint64_t size;
};

int qd_merkle_leaf_hash(uint8_t out[QD_HASH_LEN], const void *data, size_t len)
{
    qd_sha256 *h = NULL;
    qd_digest d;
    static const uint8_t zero = 0;
    int error;
    if ((error = qd_sha256_new(&h)) < 0)
        return error;
    if ((error = qd_sha256_update(h, &zero, 1)) == QD_OK && (error = qd_sha256_update(h, data, len)) == QD_OK &&
        (error = qd_sha256_final(h, &d)) == QD_OK)
        memcpy(out, d.bytes, QD_HASH_LEN);
    qd_sha256_free(h);
    return error;
}

int qd_merkle_node_hash(uint8_t out[QD_HASH_LEN], const uint8_t left[QD_HASH_LEN], const uint8_t right[QD_HASH_LEN])
{
    uint8_t b[1 + 2 * QD_HASH_LEN];
    qd_digest d;
    int error;
    b[0] = 1;
    memcpy(b + 1, left, QD_HASH_LEN);
    memcpy(b + 1 + QD_HASH_LEN, right, QD_HASH_LEN);
    if ((error = qd_sha256_buf(&d, b, sizeof(b))) == QD_OK)
        memcpy(out, d.bytes, QD_HASH_LEN);
    return error;
}

int qd_merkle_verify_inclusion(const uint8_t leaf[QD_HASH_LEN], uint64_t index, uint64_t size, const uint8_t *proof,
                               size_t n_proof, const uint8_t root[QD_HASH_LEN])
{
    uint64_t fn = index, sn;
    uint8_t r[QD_HASH_LEN];
    size_t i;
    if (index >= size)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "inclusion: index %llu is not below size %llu",
                            (unsigned long long)index, (unsigned long long)size);
    sn = size - 1;
    memcpy(r, leaf, QD_HASH_LEN);
    for (i = 0; i < n_proof; i++) {
        const uint8_t *p = proof + i * QD_HASH_LEN;
        if (sn == 0)
            return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "inclusion: proof longer than the tree is deep");
        if ((fn & 1) || fn == sn) {
            qd_merkle_node_hash(r, p, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            qd_merkle_node_hash(r, r, p);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "inclusion: proof too short");
    if (memcmp(r, root, QD_HASH_LEN) != 0)
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "inclusion proof does not lead to the root");
    return QD_OK;
}

int qd_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t *proof, size_t n_proof,
                                 const uint8_t root1[QD_HASH_LEN], const uint8_t root2[QD_HASH_LEN])
{
    uint64_t fn, sn;
    uint8_t fr[QD_HASH_LEN], sr[QD_HASH_LEN];
    size_t i = 0;
    if (size1 > size2)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "consistency: old size %llu above new size %llu",
                            (unsigned long long)size1, (unsigned long long)size2);
    if (size1 == 0 || size1 == size2) {
        if (n_proof != 0)
            return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "consistency: the proof must be empty");
        if (size1 == size2 && memcmp(root1, root2, QD_HASH_LEN) != 0)
            return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "consistency: same size, different roots (a fork)");
        return QD_OK;
    }
    if (n_proof == 0)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "consistency: empty proof");
    fn = size1 - 1;
    sn = size2 - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    if ((size1 & (size1 - 1)) == 0) {
        /* size1 is a power of two: the old root is the first node of the path */
        memcpy(fr, root1, QD_HASH_LEN);
    } else {
        memcpy(fr, proof, QD_HASH_LEN);
        i = 1;
    }
    memcpy(sr, fr, QD_HASH_LEN);
    for (; i < n_proof; i++) {
        const uint8_t *c = proof + i * QD_HASH_LEN;
        if (sn == 0)
            return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "consistency: proof too long");
        if ((fn & 1) || fn == sn) {
            qd_merkle_node_hash(fr, c, fr);
            qd_merkle_node_hash(sr, c, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            qd_merkle_node_hash(sr, sr, c);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "consistency: proof too short");
    if (memcmp(fr, root1, QD_HASH_LEN) != 0 || memcmp(sr, root2, QD_HASH_LEN) != 0)
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "consistency proof does not match the roots");
    return QD_OK;
}

/* ------------------------------------------------------------------------------------------------ storage --- */

static int level_fd(qd_merkle *m, int k)
{
    char path[4096];
    if (m->fd[k] >= 0)
        return m->fd[k];
    snprintf(path, sizeof(path), "%s/level-%02d", m->dir, k);
    m->fd[k] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m->fd[k] < 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    return m->fd[k];
}

static int node_read(const qd_merkle *m, int k, uint64_t i, uint8_t out[QD_HASH_LEN])
{
    int fd = level_fd((qd_merkle *)m, k);
    if (fd < 0)
        return fd;
    if (pread(fd, out, QD_HASH_LEN, (off_t)(i * QD_HASH_LEN)) != QD_HASH_LEN)
        return qd_error_set(QD_EIO, QD_EC_OS, "merkle: read node %d/%llu: %s", k, (unsigned long long)i,
                            strerror(errno));
    return QD_OK;
}

static int node_write(qd_merkle *m, int k, uint64_t i, const uint8_t h[QD_HASH_LEN])
{
    int fd = level_fd(m, k);
    if (fd < 0)
        return fd;
    if (pwrite(fd, h, QD_HASH_LEN, (off_t)(i * QD_HASH_LEN)) != QD_HASH_LEN)
        return qd_error_set(QD_EIO, QD_EC_OS, "merkle: write node %d/%llu: %s", k, (unsigned long long)i,
                            strerror(errno));
    return QD_OK;
}

static uint64_t level_len(qd_merkle *m, int k)
{
    struct stat st;
    int fd = level_fd(m, k);
    if (fd < 0 || fstat(fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_size / QD_HASH_LEN;
}

int qd_merkle_open(qd_merkle **out, const char *dir)
{
    qd_merkle *m;
    int k, error = QD_OK;
    *out = NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", dir, strerror(errno));
    if (!(m = qd_calloc(1, sizeof(*m))))
        return QD_ENOMEM;
    for (k = 0; k < LEVELS; k++)
        m->fd[k] = -1;
    if (!(m->dir = qd_strdup(dir))) {
        qd_free(m);
        return QD_ENOMEM;
    }
    if (level_fd(m, 0) < 0) {
        error = qd_error_last()->code;
        goto done;
    }
    m->size = level_len(m, 0);
    /* repair upper levels after a crash: trim extra nodes, recompute missing ones from the level below */
    for (k = 1; k < LEVELS && (m->size >> k) > 0; k++) {
        uint64_t want = m->size >> k, have = level_len(m, k), i;
        if (have > want && ftruncate(m->fd[k], (off_t)(want * QD_HASH_LEN)) != 0) {
            error = qd_error_set(QD_EIO, QD_EC_OS, "merkle: truncate level %d: %s", k, strerror(errno));
            goto done;
        }
        for (i = have < want ? have : want; i < want; i++) {
            uint8_t l[QD_HASH_LEN], r[QD_HASH_LEN], h[QD_HASH_LEN];
            if ((error = node_read(m, k - 1, 2 * i, l)) < 0 || (error = node_read(m, k - 1, 2 * i + 1, r)) < 0 ||
                (error = qd_merkle_node_hash(h, l, r)) < 0 || (error = node_write(m, k, i, h)) < 0)
                goto done;
        }
    }
done:
    if (error < 0) {
        qd_merkle_free(m);
        return error;
    }
    *out = m;
    return QD_OK;
}

void qd_merkle_free(qd_merkle *m)
{
    int k;
    if (!m)
        return;
    for (k = 0; k < LEVELS; k++)
        if (m->fd[k] >= 0)
            close(m->fd[k]);
    qd_free(m->dir);
    qd_free(m);
}

uint64_t qd_merkle_size(const qd_merkle *m) { return m ? m->size : 0; }

int qd_merkle_reset(qd_merkle *m)
{
    int k;
    for (k = 0; k < LEVELS; k++) {
        int fd = level_fd(m, k);
        if (fd < 0)
            return fd;
        if (ftruncate(fd, 0) != 0)
            return qd_error_set(QD_EIO, QD_EC_OS, "merkle: truncate: %s", strerror(errno));
    }
    m->size = 0;
    return QD_OK;
}

int qd_merkle_append(qd_merkle *m, const uint8_t leaf[QD_HASH_LEN])
{
    uint8_t h[QD_HASH_LEN], l[QD_HASH_LEN];
    uint64_t i = m->size;
    int k = 0, error;
    if ((error = node_write(m, 0, i, leaf)) < 0)
        return error;
    memcpy(h, leaf, QD_HASH_LEN);
    while (i & 1) {
        if ((error = node_read(m, k, i - 1, l)) < 0 || (error = qd_merkle_node_hash(h, l, h)) < 0 ||
            (error = node_write(m, k + 1, i >> 1, h)) < 0)
            return error;
        i >>= 1;
        k++;
    }
    m->size++;
    return QD_OK;
}

static uint64_t split_point(uint64_t n)
{
    uint64_t k = 1;
    while (k << 1 < n)
        k <<= 1;
    return k; /* largest power of two strictly below n (n >= 2) */
}

/* MTH(D[a:b]), b > a */
static int mth(const qd_merkle *m, uint64_t a, uint64_t b, uint8_t out[QD_HASH_LEN])
{
    uint64_t n = b - a, k;
    uint8_t l[QD_HASH_LEN], r[QD_HASH_LEN];
    int error;
    if ((n & (n - 1)) == 0 && a % n == 0)
        return node_read(m, __builtin_ctzll(n), a / n, out);
    k = split_point(n);
    if ((error = mth(m, a, a + k, l)) < 0 || (error = mth(m, a + k, b, r)) < 0)
        return error;
    return qd_merkle_node_hash(out, l, r);
}

int qd_merkle_root(const qd_merkle *m, uint64_t size, uint8_t out[QD_HASH_LEN])
{
    qd_digest d;
    int error;
    if (size > m->size)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "merkle: size %llu above the %llu stored",
                            (unsigned long long)size, (unsigned long long)m->size);
    if (size == 0) {
        if ((error = qd_sha256_buf(&d, "", 0)) == QD_OK)
            memcpy(out, d.bytes, QD_HASH_LEN);
        return error;
    }
    return mth(m, 0, size, out);
}

static int push(uint8_t *proof, size_t *n, const qd_merkle *m, uint64_t a, uint64_t b)
{
    if (*n >= QD_MERKLE_PROOF_MAX)
        return qd_error_set(QD_ERROR, QD_EC_VERIFY, "merkle: proof too long");
    return mth(m, a, b, proof + (*n)++ * QD_HASH_LEN);
}

/* PATH(index - a, D[a:b]) */
static int path(const qd_merkle *m, uint64_t index, uint64_t a, uint64_t b, uint8_t *proof, size_t *n)
{
    uint64_t k;
    int error;
    if (b - a <= 1)
        return QD_OK;
    k = split_point(b - a);
    if (index < a + k) {
        if ((error = path(m, index, a, a + k, proof, n)) < 0)
            return error;
        return push(proof, n, m, a + k, b);
    }
    if ((error = path(m, index, a + k, b, proof, n)) < 0)
        return error;
    return push(proof, n, m, a, a + k);
}

int qd_merkle_inclusion_proof(const qd_merkle *m, uint64_t index, uint64_t size, uint8_t *proof, size_t *n_proof)
{
    *n_proof = 0;
    if (size > m->size || index >= size)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "merkle: no leaf %llu in a tree of %llu (%llu stored)",
                            (unsigned long long)index, (unsigned long long)size, (unsigned long long)m->size);
    return path(m, index, 0, size, proof, n_proof);
}

/* SUBPROOF(mm, D[a:b], whole) */
static int subproof(const qd_merkle *m, uint64_t mm, uint64_t a, uint64_t b, bool whole, uint8_t *proof, size_t *n)
{
    uint64_t k;
    int error;
    if (mm == b - a)
        return whole ? QD_OK : push(proof, n, m, a, b);
    k = split_point(b - a);
    if (mm <= k) {
        if ((error = subproof(m, mm, a, a + k, whole, proof, n)) < 0)
            return error;
        return push(proof, n, m, a + k, b);
    }
    if ((error = subproof(m, mm - k, a + k, b, false, proof, n)) < 0)
        return error;
    return push(proof, n, m, a, a + k);
}

int qd_merkle_consistency_proof(const qd_merkle *m, uint64_t size1, uint64_t size2, uint8_t *proof, size_t *n_proof)
{
    *n_proof = 0;
    if (size1 > size2 || size2 > m->size)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "merkle: no consistency proof from %llu to %llu (%llu stored)",
                            (unsigned long long)size1, (unsigned long long)size2, (unsigned long long)m->size);
    if (size1 == 0 || size1 == size2)
        return QD_OK;
    return subproof(m, size1, 0, size2, true, proof, n_proof);
}
