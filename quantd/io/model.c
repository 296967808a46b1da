/*
 * model.c - the format-independent model object: open by sniffing, mmap, metadata and tensor tables, llama
 * hyper-parameters, and conversion of row ranges to f32.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/fileio.h"

/* ---- kv and tensor tables -------------------------------------------------------------------------------------- */

int io_model_add_kv(qd_model *m, const qd_kv *kv)
{
    if ((m->n_kv & (m->n_kv - 1)) == 0) { /* grow at powers of two */
        size_t cap = m->n_kv ? m->n_kv * 2 : 16;
        qd_kv *n = qd_reallocarray(m->kvs, cap, sizeof(qd_kv));
        if (!n)
            return QD_ENOMEM;
        m->kvs = n;
    }
    m->kvs[m->n_kv++] = *kv;
    return QD_OK;
}

static int set_scalar(qd_model *m, const char *key, qd_gguf_type t, uint64_t u, double f)
{
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    if (!(kv.key = qd_arena_strndup(&m->arena, key, strlen(key))))
        return QD_ENOMEM;
    kv.type = t;
    kv.n = 1;
    if (t == QD_GGUF_F32)
        kv.num.f = f;
    else
        kv.num.u = u;
    return io_model_add_kv(m, &kv);
}

int io_model_set_u32(qd_model *m, const char *key, uint32_t v) { return set_scalar(m, key, QD_GGUF_U32, v, 0); }
int io_model_set_f32(qd_model *m, const char *key, float v) { return set_scalar(m, key, QD_GGUF_F32, 0, v); }

int io_model_set_str(qd_model *m, const char *key, const char *v)
{
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.str_len = strlen(v);
    if (!(kv.key = qd_arena_strndup(&m->arena, key, strlen(key))) ||
        !(kv.str = qd_arena_strndup(&m->arena, v, (size_t)kv.str_len)))
        return QD_ENOMEM;
    kv.type = QD_GGUF_STRING;
    kv.n = 1;
    return io_model_add_kv(m, &kv);
}

int io_model_add_tensor(qd_model *m, const qd_tensor *t)
{
    if ((m->n_tensors & (m->n_tensors - 1)) == 0) {
        size_t cap = m->n_tensors ? m->n_tensors * 2 : 16;
        qd_tensor *n = qd_reallocarray(m->tensors, cap, sizeof(qd_tensor));
        if (!n) {
            qd_free(t->src_name);
            return QD_ENOMEM;
        }
        m->tensors = n;
    }
    m->tensors[m->n_tensors++] = *t;
    return QD_OK;
}

/* ---- layout check: data ranges inside the data section and disjoint --------------------------------------------- */

typedef struct span {
    uint64_t off, end;
    size_t idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

int io_check_layout(qd_model *m, size_t first, uint64_t data_size, const char *what)
{
    span *s;
    int rc = QD_OK;
    size_t n = m->n_tensors - first;
    if (!n)
        return QD_OK;
    s = qd_mallocarray(n, sizeof(span));
    if (!s)
        return QD_ENOMEM;
    for (size_t i = first; i < m->n_tensors; i++) {
        const qd_tensor *t = &m->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            rc = qd_error_set(t->offset > data_size ? QD_ECORRUPT : QD_ETRUNCATED, QD_EC_INVALID,
                              "%s: tensor %s: data [%llu, +%llu) runs past the end of the data (%llu bytes)", what,
                              t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                              (unsigned long long)data_size);
            goto done;
        }
        s[i - first].off = t->offset;
        s[i - first].end = t->offset + t->nbytes;
        s[i - first].idx = i;
    }
    qsort(s, n, sizeof(span), cmp_span);
    for (size_t i = 1; i < n; i++) {
        if (s[i].off < s[i - 1].end && s[i].end > s[i].off) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: tensors %s and %s overlap", what,
                              m->tensors[s[i - 1].idx].name, m->tensors[s[i].idx].name);
            goto done;
        }
    }
done:
    qd_free(s);
    return rc;
}

/* Canonical GGUF order for converted sources: token_embd, blocks in order, output_norm, output. */
static int rank_of(const char *name, long *layer)
{
    static const char *const per_layer[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                            "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
    *layer = -1;
    if (!strcmp(name, "token_embd.weight"))
        return 0;
    if (!strncmp(name, "blk.", 4)) {
        char *end;
        *layer = strtol(name + 4, &end, 10);
        if (*end == '.') {
            for (int i = 0; i < 9; i++) {
                size_t l = strlen(per_layer[i]);
                if (!strncmp(end + 1, per_layer[i], l) && end[1 + l] == '.')
                    return 10 + i;
            }
        }
        return 30;
    }
    if (!strcmp(name, "output_norm.weight"))
        return 1000;
    if (!strcmp(name, "output.weight"))
        return 1001;
    return 2000;
}

static int cmp_canon(const void *a, const void *b)
{
    const qd_tensor *x = a, *y = b;
    long lx, ly;
    int rx = rank_of(x->name, &lx), ry = rank_of(y->name, &ly);
    if (lx != ly && rx < 1000 && ry < 1000 && lx >= 0 && ly >= 0)
        return lx < ly ? -1 : 1;
    if (rx != ry)
        return rx < ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

void io_sort_tensors_canonical(qd_model *m)
{
    if (m->n_tensors > 1)
        qsort(m->tensors, m->n_tensors, sizeof(qd_tensor), cmp_canon);
}

/* ---- files ------------------------------------------------------------------------------------------------------ */

int io_map_file(io_map *out, const char *path)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "open %s: %s", path,
                            strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qd_error_set(QD_EINVAL, QD_EC_OS, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return qd_error_set(QD_EIO, QD_EC_OS, "mmap %s: %s", path, strerror(errno));
        }
        out->base = p;
        out->mapped = 1;
        out->fd = fd; /* kept: tensors are streamed with pread (qd_tensor_read_f32_staged) */
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        return QD_OK;
    }
    out->base = (const uint8_t *)"";
    close(fd);
    return QD_OK;
}

void io_unmap(io_map *m)
{
    if (m->mapped && m->size)
        munmap((void *)m->base, m->size);
    if (m->fd >= 0 && m->mapped)
        close(m->fd);
    memset(m, 0, sizeof(*m));
    m->fd = -1;
}

void io_bind_tensor_files(qd_model *m)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        qd_tensor *t = &m->tensors[i];
        t->file_readable = false;
        for (size_t k = 0; k < m->n_maps && t->data; k++) {
            const io_map *mp = &m->maps[k];
            if (mp->mapped && mp->fd >= 0 && t->data >= mp->base && t->nbytes <= mp->size &&
                (size_t)(t->data - mp->base) <= mp->size - t->nbytes) {
                t->file_readable = true;
                t->file_fd = mp->fd;
                t->file_pos = (uint64_t)(t->data - mp->base);
                break;
            }
        }
    }
}

void qd_model_free(qd_model *m)
{
    if (!m)
        return;
    qd_arena_free(&m->arena);
    qd_free(m->kvs);
    for (size_t i = 0; i < m->n_tensors; i++)
        qd_free(m->tensors[i].src_name);
    qd_free(m->tensors);
    for (size_t i = 0; i < m->n_maps; i++)
        io_unmap(&m->maps[i]);
    qd_free(m->maps);
    qd_free(m);
}

static qd_model_format sniff(const uint8_t *p, size_t len)
{
    if (len >= 4 && !memcmp(p, "GGUF", 4))
        return QD_MODEL_GGUF;
    if (len >= 10) {
        uint64_t n;
        memcpy(&n, p, 8);
        size_t i = 8;
        while (i < len && i < 64 && (p[i] == ' ' || p[i] == '\n' || p[i] == '\t' || p[i] == '\r'))
            i++;
        if (n >= 2 && n <= len - 8 && p[i] == '{')
            return QD_MODEL_SAFETENSORS;
    }
    if (len >= 28)
        return QD_MODEL_LLAMA2C;
    return QD_MODEL_UNKNOWN;
}

static int parse_one(qd_model *m, const uint8_t *p, size_t len, const char *dir)
{
    switch (m->format) {
    case QD_MODEL_GGUF: return io_gguf_parse(m, p, len);
    case QD_MODEL_SAFETENSORS: {
        int rc = io_st_parse(m, p, len, dir, 0);
        return rc ? rc : io_st_finish(m, dir);
    }
    case QD_MODEL_LLAMA2C: return io_l2c_parse(m, p, len);
    default: return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "unrecognised model file (too short)");
    }
}

int qd_model_open_mem(qd_model **out, const void *data, size_t size, qd_model_format format)
{
    qd_model *m;
    int rc;
    *out = NULL;
    m = qd_calloc(1, sizeof(*m));
    if (!m)
        return QD_ENOMEM;
    m->format = format == QD_MODEL_UNKNOWN ? sniff(data, size) : format;
    rc = parse_one(m, data, size, NULL);
    if (rc) {
        qd_model_free(m);
        return rc;
    }
    *out = m;
    return QD_OK;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int qd_model_open(qd_model **out, const char *path)
{
    qd_model *m;
    struct stat st;
    char *dir = NULL, *index = NULL;
    int rc;

    *out = NULL;
    if (stat(path, &st) != 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    m = qd_calloc(1, sizeof(*m));
    if (!m)
        return QD_ENOMEM;
    /* a directory or an index file: sharded safetensors */
    if (S_ISDIR(st.st_mode) || has_suffix(path, ".safetensors.index.json")) {
        if (S_ISDIR(st.st_mode)) {
            dir = qd_strdup(path);
            index = qd_malloc(strlen(path) + 40);
            if (!dir || !index) {
                rc = QD_ENOMEM;
                goto fail;
            }
            snprintf(index, strlen(path) + 40, "%s/model.safetensors.index.json", path);
            if (stat(index, &st) != 0) { /* a directory with one model.safetensors */
                snprintf(index, strlen(path) + 40, "%s/model.safetensors", path);
                qd_free(dir);
                dir = NULL;
                qd_model_free(m);
                rc = qd_model_open(out, index);
                qd_free(index);
                return rc;
            }
        } else {
            index = qd_strdup(path);
            dir = qd_strdup(path);
            if (!dir || !index) {
                rc = QD_ENOMEM;
                goto fail;
            }
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
            else
                strcpy(dir, ".");
        }
        m->format = QD_MODEL_SAFETENSORS;
        rc = io_st_open_sharded(m, dir, index);
        if (rc)
            goto fail;
        for (size_t i = 0; i < m->n_tensors; i++)
            m->tensors[i].file_mapped = true;
        io_bind_tensor_files(m);
        qd_free(dir);
        qd_free(index);
        *out = m;
        return QD_OK;
    }
    m->maps = qd_calloc(1, sizeof(io_map));
    if (!m->maps) {
        rc = QD_ENOMEM;
        goto fail;
    }
    if ((rc = io_map_file(&m->maps[0], path)))
        goto fail;
    m->n_maps = 1;
    m->format = sniff(m->maps[0].base, m->maps[0].size);
    dir = qd_strdup(path);
    if (!dir) {
        rc = QD_ENOMEM;
        goto fail;
    }
    {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            strcpy(dir, ".");
    }
    rc = parse_one(m, m->maps[0].base, m->maps[0].size, dir);
    if (rc) {
        qd_error_prefix("%s", path);
        goto fail;
    }
    qd_free(dir);
    for (size_t i = 0; i < m->n_tensors; i++)
        m->tensors[i].file_mapped = m->maps[0].mapped != 0;
    io_bind_tensor_files(m);
    *out = m;
    return QD_OK;
fail:
    qd_free(dir);
    qd_free(index);
    qd_model_free(m);
    return rc;
}

/* ---- getters ---------------------------------------------------------------------------------------------------- */

qd_model_format qd_model_format_of(const qd_model *m) { return m->format; }

const char *qd_model_format_name(qd_model_format f)
{
    switch (f) {
    case QD_MODEL_GGUF: return "gguf";
    case QD_MODEL_SAFETENSORS: return "safetensors";
    case QD_MODEL_LLAMA2C: return "llama2c";
    default: return "unknown";
    }
}

size_t qd_model_kv_count(const qd_model *m) { return m->n_kv; }
const qd_kv *qd_model_kv_at(const qd_model *m, size_t i) { return i < m->n_kv ? &m->kvs[i] : NULL; }

const qd_kv *qd_model_kv_find(const qd_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_kv; i++)
        if (!strcmp(m->kvs[i].key, key))
            return &m->kvs[i];
    return NULL;
}

size_t qd_model_tensor_count(const qd_model *m) { return m->n_tensors; }
const qd_tensor *qd_model_tensor_at(const qd_model *m, size_t i) { return i < m->n_tensors ? &m->tensors[i] : NULL; }

const qd_tensor *qd_model_tensor_find(const qd_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

uint32_t qd_model_gguf_version(const qd_model *m) { return m->gguf_version; }
uint32_t qd_model_alignment(const qd_model *m) { return m->alignment; }
uint64_t qd_model_data_offset(const qd_model *m) { return m->data_offset; }

int64_t qd_tensor_nelements(const qd_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

static int kv_int(const qd_model *m, const char *arch, const char *suffix, int64_t *out, int required)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    const qd_kv *kv = qd_model_kv_find(m, key);
    if (kv && kv->type == QD_GGUF_ARRAY && kv->n > 0 && qd_gguf_type_size(kv->arr_type) &&
        kv->arr_type != QD_GGUF_F32 && kv->arr_type != QD_GGUF_F64) {
        /* per-layer arrays: take the first entry */
        qd_kv tmp = *kv;
        tmp.type = kv->arr_type;
        memset(&tmp.num, 0, sizeof(tmp.num));
        memcpy(&tmp.num, kv->arr, qd_gguf_type_size(kv->arr_type));
        if (kv->arr_type == QD_GGUF_I8)
            tmp.num.i = *(int8_t *)kv->arr;
        else if (kv->arr_type == QD_GGUF_I16)
            tmp.num.i = *(int16_t *)kv->arr;
        else if (kv->arr_type == QD_GGUF_I32)
            tmp.num.i = *(int32_t *)kv->arr;
        return qd_kv_int(&tmp, out);
    }
    if (!kv || qd_kv_int(kv, out)) {
        if (required)
            return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "model: metadata %s is missing or not an integer",
                                key);
        return QD_ENOTFOUND;
    }
    return QD_OK;
}

int qd_model_hparams(const qd_model *m, qd_hparams *h)
{
    const qd_kv *a = qd_model_kv_find(m, "general.architecture");
    const qd_tensor *te;
    int rc;
    memset(h, 0, sizeof(*h));
    if (!a || a->type != QD_GGUF_STRING || a->str_len == 0 || a->str_len >= sizeof(h->arch))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "model: general.architecture is missing");
    memcpy(h->arch, a->str, (size_t)a->str_len + 1);
    if ((rc = kv_int(m, h->arch, "embedding_length", &h->n_embd, 1)) ||
        (rc = kv_int(m, h->arch, "block_count", &h->n_layer, 1)) ||
        (rc = kv_int(m, h->arch, "attention.head_count", &h->n_head, 1)))
        return rc;
    if (kv_int(m, h->arch, "feed_forward_length", &h->n_ff, 0))
        h->n_ff = 0;
    if (kv_int(m, h->arch, "attention.head_count_kv", &h->n_head_kv, 0))
        h->n_head_kv = h->n_head;
    if (kv_int(m, h->arch, "context_length", &h->n_ctx, 0))
        h->n_ctx = 0;
    if (h->n_embd <= 0 || h->n_layer <= 0 || h->n_head <= 0 || h->n_head_kv <= 0 || h->n_head % h->n_head_kv ||
        h->n_embd % h->n_head || h->n_layer > 100000)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID,
                            "model: inconsistent hyper-parameters (embd %lld, layers %lld, heads %lld/%lld)",
                            (long long)h->n_embd, (long long)h->n_layer, (long long)h->n_head,
                            (long long)h->n_head_kv);
    if (kv_int(m, h->arch, "rope.dimension_count", &h->n_rot, 0))
        h->n_rot = h->n_embd / h->n_head;
    char key[128];
    const qd_kv *kv;
    snprintf(key, sizeof(key), "%s.attention.layer_norm_rms_epsilon", h->arch);
    h->rms_eps = 1e-5;
    if ((kv = qd_model_kv_find(m, key)))
        qd_kv_float(kv, &h->rms_eps);
    snprintf(key, sizeof(key), "%s.rope.freq_base", h->arch);
    h->rope_theta = 10000.0;
    if ((kv = qd_model_kv_find(m, key)))
        qd_kv_float(kv, &h->rope_theta);
    te = qd_model_tensor_find(m, "token_embd.weight");
    if (kv_int(m, h->arch, "vocab_size", &h->n_vocab, 0)) {
        const qd_kv *toks = qd_model_kv_find(m, "tokenizer.ggml.tokens");
        h->n_vocab = te ? te->ne[1] : toks ? (int64_t)toks->n : 0;
    }
    h->has_tokenizer = qd_model_kv_find(m, "tokenizer.ggml.tokens") != NULL;
    h->tied_output = qd_model_tensor_find(m, "output.weight") == NULL;
    const qd_kv *tied = qd_model_kv_find(m, "llama2c.shared_classifier");
    if (tied && tied->type == QD_GGUF_BOOL && tied->num.u)
        h->tied_output = true;
    return QD_OK;
}

/* ---- rows ------------------------------------------------------------------------------------------------------- */

static int row_range_ok(const qd_tensor *t, int64_t row0, int64_t nrows)
{
    int64_t rows = t->ne[0] ? qd_tensor_nelements(t) / t->ne[0] : 0;
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "tensor %s: rows [%lld, +%lld) out of range", t->name,
                            (long long)row0, (long long)nrows);
    return QD_OK;
}

/* Source row index for GGUF row r. */
static int64_t src_row(const qd_tensor *t, int64_t r)
{
    if (t->permute_heads > 0) {
        int64_t rows_per_mat = t->ne[1];
        int64_t base = r - r % rows_per_mat;
        int64_t s = qd_permute_src_row(r % rows_per_mat, rows_per_mat, t->permute_heads);
        return s < 0 ? r : base + s;
    }
    return r;
}

int qd_tensor_read_rows(const qd_tensor *t, int64_t row0, int64_t nrows, void *dst)
{
    int rc;
    size_t rs = qd_row_size(t->type, t->ne[0]);
    if ((rc = row_range_ok(t, row0, nrows)))
        return rc;
    if (t->permute_heads <= 0) {
        memcpy(dst, t->data + (size_t)row0 * rs, (size_t)nrows * rs);
        return QD_OK;
    }
    for (int64_t r = 0; r < nrows; r++)
        memcpy((uint8_t *)dst + (size_t)r * rs, t->data + (size_t)src_row(t, row0 + r) * rs, rs);
    return QD_OK;
}

/* Data at an address not aligned for its type (safetensors promises no alignment; a GGUF may declare
 * general.alignment 1): bounce each row through an aligned buffer so that kernels never see a misaligned pointer. */
static int read_rows_bounced(const qd_tensor *t, const uint8_t *src, float *dst, int64_t nrows)
{
    size_t rs = qd_row_size(t->type, t->ne[0]);
    void *buf = qd_malloc(rs ? rs : 1); /* malloc alignment suits every block type */
    int rc = QD_OK;
    if (!buf)
        return QD_ENOMEM;
    for (int64_t r = 0; r < nrows && !rc; r++) {
        memcpy(buf, src + (size_t)r * rs, rs);
        rc = qd_dequantize_rows(t->type, buf, dst + (size_t)r * (size_t)t->ne[0], 1, t->ne[0]);
    }
    qd_free(buf);
    return rc;
}

#define MISALIGNED(p) (((uintptr_t)(p) & 7u) != 0)

int qd_tensor_read_f32(const qd_tensor *t, int64_t row0, int64_t nrows, float *dst)
{
    int rc;
    int64_t nc = t->ne[0];
    size_t rs = qd_row_size(t->type, nc);
    if ((rc = row_range_ok(t, row0, nrows)))
        return rc;
    if (t->permute_heads <= 0) {
        const uint8_t *src = t->data + (size_t)row0 * rs;
        if (t->type == QD_TYPE_F32) {
            memcpy(dst, src, (size_t)nrows * rs);
            return QD_OK;
        }
        if (MISALIGNED(src))
            return read_rows_bounced(t, src, dst, nrows);
        return qd_dequantize_rows(t->type, src, dst, nrows, nc);
    }
    for (int64_t r = 0; r < nrows; r++) {
        const uint8_t *s = t->data + (size_t)src_row(t, row0 + r) * rs;
        float *d = dst + (size_t)r * (size_t)nc;
        if (t->type == QD_TYPE_F32) {
            memcpy(d, s, (size_t)nc * 4);
        } else if (MISALIGNED(s)) {
            if ((rc = read_rows_bounced(t, s, d, 1)))
                return rc;
        } else if ((rc = qd_dequantize_rows(t->type, s, d, 1, nc))) {
            return rc;
        }
    }
    return QD_OK;
}

int qd_tensor_read_f32_staged(const qd_tensor *t, int64_t row0, int64_t nrows, float *dst, void *stage,
                              size_t stage_cap, float *amax)
{
    int rc;
    size_t rs = qd_row_size(t->type, t->ne[0]), len;
    uint8_t *buf;
    uint64_t pos;
    float bound;
    if (!amax)
        amax = &bound;
    *amax = NAN;
    if (!t->file_readable || t->permute_heads > 0 || !rs)
        return qd_tensor_read_f32(t, row0, nrows, dst);
    if ((rc = row_range_ok(t, row0, nrows)))
        return rc;
    len = (size_t)nrows * rs;
    buf = t->type == QD_TYPE_F32 ? (uint8_t *)dst : stage;
    if (t->type != QD_TYPE_F32 && (!stage || len > stage_cap))
        return qd_tensor_read_f32(t, row0, nrows, dst);
    pos = t->file_pos + (uint64_t)row0 * rs;
    if (qd_pread_all(t->file_fd, buf, len, pos))
        return qd_error_set(QD_EIO, QD_EC_OS, "tensor %s: read: %s", t->name, strerror(errno));
    if (t->type == QD_TYPE_F32)
        return QD_OK;
    return qd_dequantize_rows_bound(t->type, buf, dst, nrows, t->ne[0], amax);
}

void qd_tensor_drop_pages(const qd_tensor *t)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data, e = b + t->nbytes;
    if (pg <= 0 || !t->file_mapped)
        return;
    b = (b + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    e = e / (uintptr_t)pg * (uintptr_t)pg;
    if (e > b)
        madvise((void *)b, e - b, MADV_DONTNEED);
}
