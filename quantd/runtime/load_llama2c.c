/*
 * load_llama2c.c - map a llama2.c checkpoint into a qd_llama_model (f32, zero copy).
 *
 * Layout (Karpathy's llama2.c "version 0" export): seven little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; a negative vocab_size means a separate classifier follows), then f32 tensors:
 * token_embedding [vocab, dim]; rms_att [L, dim]; wq [L, dim, dim]; wk [L, kv_dim, dim]; wv [L, kv_dim, dim];
 * wo [L, dim, dim]; rms_ffn [L, dim]; w1 [L, hidden, dim]; w2 [L, dim, hidden]; w3 [L, hidden, dim];
 * rms_final [dim]; two legacy RoPE tables of seq_len * head_size / 2 floats (unused); [classifier [vocab, dim]].
 *
 * The file is mapped MAP_PRIVATE with write permission: tests may plant edits in a loaded model and the file on
 * disk never changes (copy-on-write pages).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/runtime.h"

static qd_llama_tensor f32_view(float *p, int64_t rows, int64_t cols)
{
    qd_llama_tensor t = {QD_TYPE_F32, p, rows, cols};
    return t;
}

/* Build the description over bytes at base (size bytes) that stay valid as long as the model. */
static int from_bytes(qd_llama_model **out, void *base, size_t size, const char *what)
{
    qd_llama_model *m = NULL;
    *out = NULL;
    if (size < 28)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE, "%s: %zu bytes is too short for a llama2.c header", what, size);
    int32_t h[7];
    memcpy(h, base, sizeof(h));
    int dim = h[0], hidden = h[1], nl = h[2], nh = h[3], nkv = h[4], vocab = h[5], seq = h[6];
    bool tied = vocab > 0;
    if (vocab < 0 && vocab != INT32_MIN)
        vocab = -vocab;
    if (dim <= 0 || hidden <= 0 || nl <= 0 || nh <= 0 || nkv <= 0 || vocab <= 0 || seq <= 0 || dim > (1 << 16) ||
        hidden > (1 << 18) || nl > 1024 || vocab > (1 << 22) || seq > (1 << 22) || dim % nh != 0 || nh % nkv != 0 ||
        (dim / nh) % 2 != 0)
        return qd_error_set(QD_EINVAL, QD_EC_ENGINE,
                            "%s: not a llama2.c checkpoint (header dim=%d hidden=%d layers=%d heads=%d kv_heads=%d "
                            "vocab=%d seq_len=%d)", what, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    int64_t kv_dim = (int64_t)dim * nkv / nh, hs = dim / nh;
    int64_t nfloat = (int64_t)vocab * dim + nl * (2 * (int64_t)dim + 2 * (int64_t)dim * dim + 2 * kv_dim * dim +
                                                   3 * (int64_t)hidden * dim) + dim + seq * hs;
    if (!tied)
        nfloat += (int64_t)vocab * dim;
    if ((int64_t)size != 28 + 4 * nfloat)
        return qd_error_set(QD_ECORRUPT, QD_EC_ENGINE, "%s: %zu bytes, but its header (dim=%d hidden=%d layers=%d "
                            "vocab=%d seq_len=%d) needs %lld", what, size, dim, hidden, nl, vocab, seq,
                            (long long)(28 + 4 * nfloat));
    m = qd_calloc(1, sizeof(*m));
    if (!m || !(m->layers = qd_calloc((size_t)nl, sizeof(qd_llama_layer)))) {
        qd_free(m);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load %s: out of memory", what);
    }
    m->cfg = (qd_llama_config){dim, hidden, nl, nh, nkv, vocab, seq, 10000.0f, 1e-5f, tied};
    float *p = (float *)((char *)base + 28);
    m->tok_embd = f32_view(p, vocab, dim);
    p += (int64_t)vocab * dim;
#define EACH(field, rows, cols)                                                                                    \
    for (int l = 0; l < nl; l++) {                                                                                 \
        m->layers[l].field = f32_view(p, rows, cols);                                                              \
        p += (int64_t)(rows) * (cols);                                                                             \
    }
    EACH(attn_norm, 1, dim)
    EACH(wq, dim, dim)
    EACH(wk, kv_dim, dim)
    EACH(wv, kv_dim, dim)
    EACH(wo, dim, dim)
    EACH(ffn_norm, 1, dim)
    EACH(w1, hidden, dim)
    EACH(w2, dim, hidden)
    EACH(w3, hidden, dim)
#undef EACH
    m->final_norm = f32_view(p, 1, dim);
    p += dim;
    p += seq * hs; /* the two legacy RoPE tables */
    m->output = tied ? m->tok_embd : f32_view(p, vocab, dim);
    *out = m;
    return QD_OK;
}

int qd_llama_load_llama2c(qd_llama_model **out, const char *path)
{
    int fd = -1, rc = QD_OK;
    void *map = MAP_FAILED;
    struct stat st;
    *out = NULL;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (st.st_size < 28) {
        rc = qd_error_set(QD_EINVAL, QD_EC_ENGINE, "%s: %lld bytes is too short for a llama2.c header", path,
                          (long long)st.st_size);
        goto done;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "mmap %s: %s", path, strerror(errno));
        goto done;
    }
    if ((rc = from_bytes(out, map, (size_t)st.st_size, path)) < 0)
        goto done;
    (*out)->map_ = map;
    (*out)->map_len_ = (size_t)st.st_size;
    map = MAP_FAILED;
done:
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return rc;
}

int qd_llama_load_llama2c_buf(qd_llama_model **out, void *buf, size_t len, const char *what)
{
    int rc = from_bytes(out, buf, len, what ? what : "buffer");
    if (rc < 0)
        return rc;
    (*out)->owned_ = qd_calloc(1, sizeof(void *));
    if (!(*out)->owned_) {
        qd_free((*out)->layers);
        qd_free(*out);
        *out = NULL;
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "load %s: out of memory", what ? what : "buffer");
    }
    (*out)->owned_[0] = buf;
    (*out)->n_owned_ = 1;
    return QD_OK;
}
