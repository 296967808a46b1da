/*
 * gguf.c - GGUF v3 reader and writer.
 *
 * The reader trusts nothing in the header: every count is bounded by the bytes left (a string needs at least its
 * 8-byte length, an array element at least its own size), every string and array lies inside the file, keys and
 * tensor names are unique, types are known, shapes do not overflow, the row length is a multiple of the block size,
 * offsets are multiples of general.alignment, and tensor data ranges are inside the file and do not overlap.
 *
 * The writer keeps keys and tensor infos in memory, writes header + infos, then streams tensor data in declaration
 * order with zero padding to the alignment, into path.part renamed on finish, so a crash leaves no half file.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/fileio.h"

#define GGUF_MAGIC "GGUF"

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = qd_error_vset(QD_ECORRUPT, QD_EC_INVALID, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- cursor ---------------------------------------------------------------------------------------------------- */

static int cur_need(io_cur *c, size_t n, const char *what)
{
    if (c->len - c->pos < n)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "gguf: truncated while reading %s (offset %zu)", what,
                            c->pos);
    return QD_OK;
}

static int cur_u32(io_cur *c, uint32_t *v, const char *what)
{
    int rc = cur_need(c, 4, what);
    if (rc)
        return rc;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return QD_OK;
}

static int cur_u64(io_cur *c, uint64_t *v, const char *what)
{
    int rc = cur_need(c, 8, what);
    if (rc)
        return rc;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return QD_OK;
}

/* A GGUF string where it lies: u64 length + bytes (*s points into the buffer, not NUL-terminated). */
static int cur_strview(io_cur *c, const char **s, uint64_t *len, const char *what)
{
    int rc = cur_u64(c, len, what);
    if (rc)
        return rc;
    if (*len > c->len - c->pos)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: %s length %llu runs past the end of the file", what,
                            (unsigned long long)*len);
    *s = (const char *)c->p + c->pos;
    c->pos += (size_t)*len;
    return QD_OK;
}

/* A GGUF string copied out NUL-terminated into the arena. */
static int cur_str(io_cur *c, qd_arena *a, char **out, uint64_t *out_len, const char *what)
{
    const char *s = NULL;
    uint64_t n = 0;
    int rc = cur_strview(c, &s, &n, what);
    if (rc)
        return rc;
    if (!(*out = qd_arena_strndup(a, s, (size_t)n)))
        return QD_ENOMEM;
    if (out_len)
        *out_len = n;
    return QD_OK;
}

size_t qd_gguf_type_size(qd_gguf_type t)
{
    switch (t) {
    case QD_GGUF_U8: case QD_GGUF_I8: case QD_GGUF_BOOL: return 1;
    case QD_GGUF_U16: case QD_GGUF_I16: return 2;
    case QD_GGUF_U32: case QD_GGUF_I32: case QD_GGUF_F32: return 4;
    case QD_GGUF_U64: case QD_GGUF_I64: case QD_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *qd_gguf_type_name(qd_gguf_type t)
{
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                        "u64", "i64", "f64"};
    return (unsigned)t < QD_GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Widen one scalar at p into kv->num. */
static void scalar_load(qd_kv *kv, qd_gguf_type t, const uint8_t *p)
{
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; uint64_t u64;
    int64_t i64; double f64;
    switch (t) {
    case QD_GGUF_U8: case QD_GGUF_BOOL: memcpy(&u8, p, 1); kv->num.u = u8; break;
    case QD_GGUF_I8: memcpy(&i8, p, 1); kv->num.i = i8; break;
    case QD_GGUF_U16: memcpy(&u16, p, 2); kv->num.u = u16; break;
    case QD_GGUF_I16: memcpy(&i16, p, 2); kv->num.i = i16; break;
    case QD_GGUF_U32: memcpy(&u32, p, 4); kv->num.u = u32; break;
    case QD_GGUF_I32: memcpy(&i32, p, 4); kv->num.i = i32; break;
    case QD_GGUF_F32: memcpy(&f32, p, 4); kv->num.f = f32; break;
    case QD_GGUF_U64: memcpy(&u64, p, 8); kv->num.u = u64; break;
    case QD_GGUF_I64: memcpy(&i64, p, 8); kv->num.i = i64; break;
    case QD_GGUF_F64: memcpy(&f64, p, 8); kv->num.f = f64; break;
    default: break;
    }
}

int qd_kv_int(const qd_kv *kv, int64_t *out)
{
    switch (kv->type) {
    case QD_GGUF_U8: case QD_GGUF_U16: case QD_GGUF_U32: case QD_GGUF_BOOL: *out = (int64_t)kv->num.u; return 0;
    case QD_GGUF_U64:
        if (kv->num.u > INT64_MAX)
            break;
        *out = (int64_t)kv->num.u;
        return 0;
    case QD_GGUF_I8: case QD_GGUF_I16: case QD_GGUF_I32: case QD_GGUF_I64: *out = kv->num.i; return 0;
    default: break;
    }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "metadata %s: not an integer", kv->key);
}

int qd_kv_float(const qd_kv *kv, double *out)
{
    int64_t i = 0;
    if (kv->type == QD_GGUF_F32 || kv->type == QD_GGUF_F64) {
        *out = kv->num.f;
        return 0;
    }
    if (qd_kv_int(kv, &i))
        return QD_EINVAL;
    *out = (double)i;
    return 0;
}

/* One value of kv (its members in the arena a). */
static int read_value(io_cur *c, qd_arena *a, qd_kv *kv, const char *key)
{
    int rc;
    uint32_t t;
    if ((rc = cur_u32(c, &t, "value type")))
        return rc;
    if (t >= QD_GGUF_TYPE_COUNT)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s has unknown value type %u", key, t);
    kv->type = (qd_gguf_type)t;
    kv->n = 1;
    if (t == QD_GGUF_STRING)
        return cur_str(c, a, &kv->str, &kv->str_len, key);
    if (t != QD_GGUF_ARRAY) {
        size_t sz = qd_gguf_type_size(kv->type);
        if ((rc = cur_need(c, sz, key)))
            return rc;
        scalar_load(kv, kv->type, c->p + c->pos);
        c->pos += sz;
        if (t == QD_GGUF_BOOL && kv->num.u > 1)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: bool value %llu", key,
                                (unsigned long long)kv->num.u);
        return QD_OK;
    }
    /* array */
    uint32_t et;
    uint64_t n;
    if ((rc = cur_u32(c, &et, "array type")) || (rc = cur_u64(c, &n, "array length")))
        return rc;
    if (et >= QD_GGUF_TYPE_COUNT)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: unknown array element type %u", key, et);
    if (et == QD_GGUF_ARRAY)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: arrays of arrays are not allowed", key);
    kv->arr_type = (qd_gguf_type)et;
    kv->n = n;
    if (et == QD_GGUF_STRING) {
        if (n > (c->len - c->pos) / 8)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: %llu strings cannot fit in the file", key,
                                (unsigned long long)n);
        char **strs = qd_arena_alloc(a, (size_t)n * sizeof(char *));
        uint64_t *lens = qd_arena_alloc(a, (size_t)n * sizeof(uint64_t));
        kv->arr = strs;
        kv->arr_lens = lens;
        if (!strs || !lens)
            return QD_ENOMEM;
        for (uint64_t i = 0; i < n; i++)
            if ((rc = cur_str(c, a, &strs[i], &lens[i], key)))
                return rc;
        return QD_OK;
    }
    size_t sz = qd_gguf_type_size(kv->arr_type);
    if (n > (c->len - c->pos) / sz)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: array of %llu %s runs past the end", key,
                            (unsigned long long)n, qd_gguf_type_name(kv->arr_type));
    kv->arr = qd_arena_alloc(a, (size_t)(n * sz));
    if (!kv->arr)
        return QD_ENOMEM;
    memcpy(kv->arr, c->p + c->pos, (size_t)(n * sz));
    c->pos += (size_t)(n * sz);
    if (et == QD_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((uint8_t *)kv->arr)[i] > 1)
                return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: key %s: bool element %llu is not 0 or 1",
                                    key, (unsigned long long)i);
    return QD_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reject duplicate strings among n pointers (sorted copy). */
static int check_unique(char **names, size_t n, const char *what)
{
    int rc = QD_OK;
    if (n < 2)
        return QD_OK;
    char **s = qd_mallocarray(n, sizeof(char *));
    if (!s)
        return QD_ENOMEM;
    memcpy(s, names, n * sizeof(char *));
    qsort(s, n, sizeof(char *), cmp_str_ptr);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(s[i - 1], s[i])) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: duplicate %s '%s'", what, s[i]);
            break;
        }
    }
    qd_free(s);
    return rc;
}

int io_gguf_parse(qd_model *m, const uint8_t *p, size_t len)
{
    io_cur c = {p, len, 0};
    uint32_t version;
    uint64_t n_tensors, n_kv;
    char **names = NULL;
    int rc;

    if (len < 4 || memcmp(p, GGUF_MAGIC, 4))
        return bad("%s: not a GGUF file (bad magic)", "gguf");
    c.pos = 4;
    if ((rc = cur_u32(&c, &version, "version")))
        return rc;
    if (version == 1)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "gguf: version 1 files are not supported");
    if (version == 0x02000000u || version == 0x03000000u)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "gguf: big-endian files are not supported");
    if (version < 2 || version > 3)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "gguf: unsupported version %u", version);
    if ((rc = cur_u64(&c, &n_tensors, "tensor count")) || (rc = cur_u64(&c, &n_kv, "kv count")))
        return rc;
    /* each kv needs at least a key length (8) + a type (4); each tensor info at least 8+4+8+4+8 bytes */
    if (n_kv > (len - c.pos) / 12)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: %llu metadata pairs cannot fit in %zu bytes",
                            (unsigned long long)n_kv, len);
    if (n_tensors > (len - c.pos) / 32)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: %llu tensors cannot fit in %zu bytes",
                            (unsigned long long)n_tensors, len);
    m->gguf_version = version;
    m->alignment = QD_GGUF_DEFAULT_ALIGNMENT;

    for (uint64_t i = 0; i < n_kv; i++) {
        qd_kv kv;
        memset(&kv, 0, sizeof(kv));
        uint64_t kl = 0;
        /* (on failure, what was read stays in the model's arena until the model is freed) */
        if ((rc = cur_str(&c, &m->arena, &kv.key, &kl, "metadata key")))
            return rc;
        if (kl == 0 || memchr(kv.key, 0, (size_t)kl))
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: metadata key %llu is empty or holds a NUL byte",
                                (unsigned long long)i);
        if ((rc = read_value(&c, &m->arena, &kv, kv.key)))
            return rc;
        if ((rc = io_model_add_kv(m, &kv)))
            return rc;
    }
    names = qd_mallocarray(m->n_kv ? m->n_kv : 1, sizeof(char *));
    if (!names)
        return QD_ENOMEM;
    for (size_t i = 0; i < m->n_kv; i++)
        names[i] = m->kvs[i].key;
    rc = check_unique(names, m->n_kv, "metadata key");
    qd_free(names);
    if (rc)
        return rc;

    const qd_kv *al = qd_model_kv_find(m, "general.alignment");
    if (al) {
        if (al->type != QD_GGUF_U32)
            return bad("gguf: general.alignment must be a u32, not %s", qd_gguf_type_name(al->type));
        if (al->num.u == 0 || (al->num.u & (al->num.u - 1)) || al->num.u > (1u << 20))
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: general.alignment %llu is not a power of two",
                                (unsigned long long)al->num.u);
        m->alignment = (uint32_t)al->num.u;
    }

    for (uint64_t i = 0; i < n_tensors; i++) {
        qd_tensor t;
        const char *name = NULL;
        uint64_t name_len = 0, off;
        uint32_t nd, ty;
        memset(&t, 0, sizeof(t));
        if ((rc = cur_strview(&c, &name, &name_len, "tensor name")))
            return rc;
        if (name_len == 0 || name_len > QD_GGUF_MAX_NAME || memchr(name, 0, (size_t)name_len))
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: tensor %llu: bad name (length %llu, at most %d)",
                                (unsigned long long)i, (unsigned long long)name_len, QD_GGUF_MAX_NAME);
        memcpy(t.name, name, (size_t)name_len); /* (t was zeroed: the name ends in a NUL) */
        if ((rc = cur_u32(&c, &nd, "tensor dims")))
            return rc;
        if (nd < 1 || nd > 4)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: tensor %s has %u dimensions (1..4)", t.name, nd);
        t.n_dims = nd;
        int64_t nel = 1;
        for (int d = 0; d < 4; d++)
            t.ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if ((rc = cur_u64(&c, &v, "tensor shape")))
                return rc;
            if (v > (uint64_t)INT64_MAX || (v && (uint64_t)nel > (uint64_t)INT64_MAX / v))
                return bad("gguf: tensor %s: shape overflows", t.name);
            t.ne[d] = (int64_t)v;
            nel *= (int64_t)v;
        }
        if ((rc = cur_u32(&c, &ty, "tensor type")))
            return rc;
        const qd_type_traits *tr = qd_type_traits_get((qd_type)ty);
        if (!tr)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "gguf: tensor %s has unknown type %u", t.name, ty);
        t.type = (qd_type)ty;
        if (t.ne[0] % tr->block_size)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID,
                                "gguf: tensor %s: row of %lld values is not a multiple of the %s block size %lld",
                                t.name, (long long)t.ne[0], tr->name, (long long)tr->block_size);
        uint64_t blocks = (uint64_t)nel / (uint64_t)tr->block_size;
        if (blocks > UINT64_MAX / tr->type_size)
            return bad("gguf: tensor %s: byte size overflows", t.name);
        t.nbytes = blocks * tr->type_size;
        if ((rc = cur_u64(&c, &off, "tensor offset")))
            return rc;
        if (off % m->alignment)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID,
                                "gguf: tensor %s: data offset %llu is not a multiple of the alignment %u", t.name,
                                (unsigned long long)off, m->alignment);
        t.offset = off;
        if ((rc = io_model_add_tensor(m, &t)))
            return rc;
    }
    names = qd_mallocarray(m->n_tensors ? m->n_tensors : 1, sizeof(char *));
    if (!names)
        return QD_ENOMEM;
    for (size_t i = 0; i < m->n_tensors; i++)
        names[i] = m->tensors[i].name;
    rc = check_unique(names, m->n_tensors, "tensor name");
    qd_free(names);
    if (rc)
        return rc;

    uint64_t data = ((uint64_t)c.pos + m->alignment - 1) / m->alignment * m->alignment;
    if (m->n_tensors && data > len)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "gguf: file ends before its data section");
    m->data_offset = data;
    if ((rc = io_check_layout(m, 0, data <= len ? len - data : 0, "gguf")))
        return rc;
    for (size_t i = 0; i < m->n_tensors; i++)
        m->tensors[i].data = p + data + m->tensors[i].offset;
    return QD_OK;
}

/* ---- writer ---------------------------------------------------------------------------------------------------- */

typedef struct w_tensor {
    char name[QD_GGUF_MAX_NAME + 1];
    qd_type type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    uint64_t offset;
} w_tensor;

struct qd_gguf_writer {
    uint32_t alignment;
    qd_kv *kvs;
    size_t n_kv, cap_kv;
    qd_arena arena; /* every kv's keys, strings and arrays (a vocabulary is tens of thousands of strings) */
    w_tensor *ts;
    size_t n_ts, cap_ts;
    uint64_t data_size; /* sum of padded tensor sizes */
    /* streaming state */
    int fd;
    char *path, *tmp;
    uint64_t header_size;
    size_t cur;           /* tensor being written */
    uint64_t cur_written; /* bytes of it so far */
    uint8_t *mem;         /* to_mem target */
    size_t mem_pos;
    uint64_t file_pos;    /* bytes written to fd */
    uint64_t wb_started;  /* writeback was started for [0, wb_started) */
    uint64_t wb_waited;   /* writeback finished for [0, wb_waited) */
    /* direct I/O (see below) */
    int dfd;              /* the output opened O_DIRECT, or -1: buffered writes with write-back */
    uint8_t *stage;       /* DIRECT_BLOCK bytes: the output gathered into whole aligned blocks for dfd */
    size_t stage_len;     /* bytes in it; they belong at file offset file_pos - stage_len */
    qd_syncer *syncer;    /* fdatasync every DIRECT_SYNC_STEP written with dfd, while the writer goes on */
    bool durable;         /* fsync before the rename (qd_gguf_writer_set_durable) */
};

/*
 * Durability: a durable writer (the default) makes the file durable before it is renamed into place, so a crash
 * never leaves a torn file under the final name; one that is not (qd_gguf_writer_set_durable false: a temporary
 * file that is copied elsewhere, or a tool that writes as cp and llama-quantize do) writes through the page cache
 * and leaves the flush to the kernel, which is several times faster where the disk is slower than memory.
 *
 * Direct I/O (durable writers): where the file system allows O_DIRECT, the output is gathered into 8 MiB aligned
 * blocks and each is written straight to the device: no copy into fresh page-cache pages, nothing dirty for the
 * final fsync. Every 16 MiB written, the writer's syncer thread asks the device to make it durable (fdatasync)
 * while the writer goes on, so the device's flush overlaps the writes and the computation instead of following
 * them (what piles up during one flush goes with the next). The last block is padded to the alignment and the file
 * cut to its size. Where O_DIRECT is refused (tmpfs, some network file systems) the output goes through the page
 * cache with early write-back, as below.
 */
#define DIRECT_BLOCK (8u << 20)
#define DIRECT_ALIGN 4096u
#define DIRECT_SYNC_STEP (16ull << 20) /* the syncer's step */

/*
 * Write-back while writing (durable writers without O_DIRECT): the final fsync used to find the whole output
 * dirty. Instead writeback of every WB_STEP written is started at once (sync_file_range WRITE: queues the I/O, does
 * not wait), so the disk works while the next chunks are computed and the final fsync finds little left; and once
 * more than WB_DIRTY_MAX is in flight the writer waits for the older part, so a large output never holds gigabytes
 * of dirty page cache.
 */
#define WB_STEP (8ull << 20)
#define WB_DIRTY_MAX (256ull << 20)

int qd_gguf_writer_new(qd_gguf_writer **out, uint32_t alignment)
{
    qd_gguf_writer *w;
    *out = NULL;
    if (alignment == 0)
        alignment = QD_GGUF_DEFAULT_ALIGNMENT;
    if (alignment & (alignment - 1))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: alignment %u is not a power of two", alignment);
    w = qd_calloc(1, sizeof(*w));
    if (!w)
        return QD_ENOMEM;
    w->alignment = alignment;
    w->fd = w->dfd = -1;
    w->durable = true;
    *out = w;
    if (alignment != QD_GGUF_DEFAULT_ALIGNMENT)
        return qd_gguf_set_u32(w, "general.alignment", alignment);
    return QD_OK;
}

void qd_gguf_writer_free(qd_gguf_writer *w)
{
    if (!w)
        return;
    qd_arena_free(&w->arena);
    qd_free(w->kvs);
    qd_free(w->ts);
    qd_syncer_stop(w->syncer);
    if (w->dfd >= 0)
        close(w->dfd);
    if (w->fd >= 0) {
        close(w->fd);
        if (w->tmp)
            unlink(w->tmp);
    }
    if (w->stage)
        qd_big_free(w->stage, DIRECT_BLOCK);
    qd_free(w->path);
    qd_free(w->tmp);
    qd_free(w);
}

void qd_gguf_del(qd_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, key)) { /* (its bytes stay in the arena until the writer is freed) */
            memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof(qd_kv));
            w->n_kv--;
            return;
        }
    }
}

/* Take over kv, whose members are in the arena (replacing an existing key in place, so key order is kept). */
static int w_put(qd_gguf_writer *w, const qd_kv *kv)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kvs[i].key, kv->key)) {
            w->kvs[i] = *kv;
            return QD_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        qd_kv *n = qd_reallocarray(w->kvs, cap, sizeof(qd_kv));
        if (!n)
            return QD_ENOMEM;
        w->kvs = n;
        w->cap_kv = cap;
    }
    w->kvs[w->n_kv++] = *kv;
    return QD_OK;
}

static int w_scalar(qd_gguf_writer *w, const char *key, qd_gguf_type t, uint64_t u, double f)
{
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    if (!key || !*key)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: empty key");
    if (!(kv.key = qd_arena_strndup(&w->arena, key, strlen(key))))
        return QD_ENOMEM;
    kv.type = t;
    kv.n = 1;
    if (t == QD_GGUF_F32 || t == QD_GGUF_F64)
        kv.num.f = f;
    else
        kv.num.u = u;
    return w_put(w, &kv);
}

int qd_gguf_set_u32(qd_gguf_writer *w, const char *key, uint32_t v) { return w_scalar(w, key, QD_GGUF_U32, v, 0); }
int qd_gguf_set_i32(qd_gguf_writer *w, const char *key, int32_t v)
{
    return w_scalar(w, key, QD_GGUF_I32, (uint64_t)(int64_t)v, 0);
}
int qd_gguf_set_u64(qd_gguf_writer *w, const char *key, uint64_t v) { return w_scalar(w, key, QD_GGUF_U64, v, 0); }
int qd_gguf_set_f32(qd_gguf_writer *w, const char *key, float v) { return w_scalar(w, key, QD_GGUF_F32, 0, v); }
int qd_gguf_set_bool(qd_gguf_writer *w, const char *key, bool v) { return w_scalar(w, key, QD_GGUF_BOOL, v, 0); }

int qd_gguf_set_str(qd_gguf_writer *w, const char *key, const char *v)
{
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.str_len = strlen(v);
    if (!(kv.key = qd_arena_strndup(&w->arena, key, strlen(key))) ||
        !(kv.str = qd_arena_strndup(&w->arena, v, (size_t)kv.str_len)))
        return QD_ENOMEM;
    kv.type = QD_GGUF_STRING;
    kv.n = 1;
    return w_put(w, &kv);
}

int qd_gguf_set_arr(qd_gguf_writer *w, const char *key, qd_gguf_type et, const void *data, uint64_t n)
{
    qd_kv kv;
    size_t sz = qd_gguf_type_size(et);
    memset(&kv, 0, sizeof(kv));
    if (!sz)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: %s: not a numeric array type", key);
    if (n > SIZE_MAX / sz)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gguf: %s: %llu elements", key, (unsigned long long)n);
    if (!(kv.key = qd_arena_strndup(&w->arena, key, strlen(key))) ||
        !(kv.arr = qd_arena_alloc(&w->arena, (size_t)n * sz)))
        return QD_ENOMEM;
    if (n)
        memcpy(kv.arr, data, (size_t)n * sz);
    kv.type = QD_GGUF_ARRAY;
    kv.arr_type = et;
    kv.n = n;
    return w_put(w, &kv);
}

static int w_str_arr(qd_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n)
{
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.type = QD_GGUF_ARRAY;
    kv.arr_type = QD_GGUF_STRING;
    if (n > SIZE_MAX / sizeof(char *) / 2)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "gguf: %s: %llu strings", key, (unsigned long long)n);
    if (!(kv.key = qd_arena_strndup(&w->arena, key, strlen(key))) ||
        !(kv.arr = qd_arena_alloc(&w->arena, (size_t)n * sizeof(char *))) ||
        !(kv.arr_lens = qd_arena_alloc(&w->arena, (size_t)n * sizeof(uint64_t))))
        return QD_ENOMEM;
    kv.n = n;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : strlen(strs[i]);
        char *s = qd_arena_strndup(&w->arena, strs[i], (size_t)l);
        if (!s)
            return QD_ENOMEM;
        ((char **)kv.arr)[i] = s;
        kv.arr_lens[i] = l;
    }
    return w_put(w, &kv);
}

int qd_gguf_set_str_arr(qd_gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
    return w_str_arr(w, key, strs, NULL, n);
}

int qd_gguf_set_kv(qd_gguf_writer *w, const qd_kv *kv)
{
    switch (kv->type) {
    case QD_GGUF_STRING: {
        qd_kv c;
        memset(&c, 0, sizeof(c));
        /* (the string may hold NUL bytes: copied by its length) */
        if (!(c.key = qd_arena_strndup(&w->arena, kv->key, strlen(kv->key))) ||
            !(c.str = qd_arena_strndup(&w->arena, kv->str, (size_t)kv->str_len)))
            return QD_ENOMEM;
        c.type = QD_GGUF_STRING;
        c.n = 1;
        c.str_len = kv->str_len;
        return w_put(w, &c);
    }
    case QD_GGUF_ARRAY:
        if (kv->arr_type == QD_GGUF_STRING)
            return w_str_arr(w, kv->key, (const char *const *)kv->arr, kv->arr_lens, kv->n);
        return qd_gguf_set_arr(w, kv->key, kv->arr_type, kv->arr, kv->n);
    default:
        if ((unsigned)kv->type >= QD_GGUF_TYPE_COUNT)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: key %s: bad type", kv->key);
        return w_scalar(w, kv->key, kv->type, kv->num.u, kv->num.f);
    }
}

int qd_gguf_add_tensor(qd_gguf_writer *w, const char *name, qd_type type, uint32_t n_dims, const int64_t *ne)
{
    const qd_type_traits *tr = qd_type_traits_get(type);
    w_tensor t;
    size_t nl = name ? strlen(name) : 0;
    if (!tr)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor %s: unknown type %d", name, (int)type);
    if (nl == 0 || nl > QD_GGUF_MAX_NAME)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor name '%s' is empty or longer than %d", name,
                            QD_GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > 4)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor %s: %u dimensions", name, n_dims);
    for (size_t i = 0; i < w->n_ts; i++)
        if (!strcmp(w->ts[i].name, name))
            return qd_error_set(QD_EEXISTS, QD_EC_INVALID, "gguf: duplicate tensor %s", name);
    memset(&t, 0, sizeof(t));
    memcpy(t.name, name, nl + 1);
    t.type = type;
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) {
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
        if (t.ne[d] < 0 || (t.ne[d] && nel > (uint64_t)INT64_MAX / (uint64_t)t.ne[d]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor %s: bad shape", name);
        nel *= (uint64_t)t.ne[d];
    }
    if (t.ne[0] % tr->block_size)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor %s: row of %lld is not a multiple of %s's %lld",
                            name, (long long)t.ne[0], tr->name, (long long)tr->block_size);
    t.nbytes = nel / (uint64_t)tr->block_size * tr->type_size;
    t.offset = w->data_size;
    w->data_size += (t.nbytes + w->alignment - 1) / w->alignment * w->alignment;
    if (w->n_ts == w->cap_ts) {
        size_t cap = w->cap_ts ? w->cap_ts * 2 : 64;
        w_tensor *n = qd_reallocarray(w->ts, cap, sizeof(w_tensor));
        if (!n)
            return QD_ENOMEM;
        w->ts = n;
        w->cap_ts = cap;
    }
    w->ts[w->n_ts++] = t;
    return QD_OK;
}

/* The serialized header: measured by a first pass (p NULL: only len counts), then written into a buffer of
 * exactly that size in the writer's arena (a vocabulary makes it hundreds of KiB: no realloc, one fault per 2 MiB). */
typedef struct hbuf {
    uint8_t *p;
    size_t len;
} hbuf;

static void hb_put(hbuf *b, const void *d, size_t n)
{
    if (b->p && n) /* (the measuring pass counted exactly these bytes) */
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void hb_u32(hbuf *b, uint32_t v) { hb_put(b, &v, 4); }
static void hb_u64(hbuf *b, uint64_t v) { hb_put(b, &v, 8); }
static void hb_str(hbuf *b, const char *s, uint64_t n)
{
    hb_u64(b, n);
    hb_put(b, s, (size_t)n);
}

static void hb_scalar(hbuf *b, const qd_kv *kv)
{
    uint8_t u8 = (uint8_t)kv->num.u;
    uint16_t u16 = (uint16_t)kv->num.u;
    uint32_t u32 = (uint32_t)kv->num.u;
    float f32 = (float)kv->num.f;
    switch (kv->type) {
    case QD_GGUF_U8: case QD_GGUF_I8: case QD_GGUF_BOOL: hb_put(b, &u8, 1); break;
    case QD_GGUF_U16: case QD_GGUF_I16: hb_put(b, &u16, 2); break;
    case QD_GGUF_U32: case QD_GGUF_I32: hb_put(b, &u32, 4); break;
    case QD_GGUF_F32: hb_put(b, &f32, 4); break;
    case QD_GGUF_U64: case QD_GGUF_I64: hb_u64(b, kv->num.u); break;
    case QD_GGUF_F64: hb_put(b, &kv->num.f, 8); break;
    default: break;
    }
}

static void header_bytes(const qd_gguf_writer *w, hbuf *b)
{
    hb_put(b, GGUF_MAGIC, 4);
    hb_u32(b, 3);
    hb_u64(b, w->n_ts);
    hb_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        const qd_kv *kv = &w->kvs[i];
        hb_str(b, kv->key, strlen(kv->key));
        hb_u32(b, kv->type);
        if (kv->type == QD_GGUF_STRING) {
            hb_str(b, kv->str, kv->str_len);
        } else if (kv->type == QD_GGUF_ARRAY) {
            hb_u32(b, kv->arr_type);
            hb_u64(b, kv->n);
            if (kv->arr_type == QD_GGUF_STRING)
                for (uint64_t j = 0; j < kv->n; j++)
                    hb_str(b, ((char **)kv->arr)[j], kv->arr_lens[j]);
            else
                hb_put(b, kv->arr, (size_t)kv->n * qd_gguf_type_size(kv->arr_type));
        } else {
            hb_scalar(b, kv);
        }
    }
    for (size_t i = 0; i < w->n_ts; i++) {
        const w_tensor *t = &w->ts[i];
        hb_str(b, t->name, strlen(t->name));
        hb_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            hb_u64(b, (uint64_t)t->ne[d]);
        hb_u32(b, (uint32_t)t->type);
        hb_u64(b, t->offset);
    }
    static const uint8_t zeros[64];
    while (b->len % w->alignment)
        hb_put(b, zeros, (w->alignment - b->len % w->alignment) > 64 ? 64 : w->alignment - b->len % w->alignment);
}

static int build_header(qd_gguf_writer *w, hbuf *b)
{
    memset(b, 0, sizeof(*b));
    header_bytes(w, b);
    if (!(b->p = qd_arena_alloc(&w->arena, b->len)))
        return QD_ENOMEM;
    b->len = 0;
    header_bytes(w, b);
    w->header_size = b->len;
    return QD_OK;
}

uint64_t qd_gguf_writer_file_size(const qd_gguf_writer *w) { return w->header_size + w->data_size; }

void qd_gguf_writer_set_durable(qd_gguf_writer *w, bool durable) { w->durable = durable; }

/* Write the staged bytes at their offset: whole aligned blocks with O_DIRECT (the last one padded with zeros: the
 * file is cut to size by qd_gguf_writer_finish), or through the page cache when O_DIRECT is refused after all. */
static int w_flush_stage(qd_gguf_writer *w)
{
    uint64_t at = w->file_pos - w->stage_len;
    size_t len = w->stage_len, padded = (len + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
    if (!len)
        return QD_OK;
    memset(w->stage + len, 0, padded - len);
    if (qd_pwrite_all(w->dfd, w->stage, padded, at)) {
        if (errno != EINVAL)
            return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write %s: %s", w->tmp,
                                strerror(errno));
        close(w->dfd); /* refused after all: the page cache from here on */
        w->dfd = -1;
        if (qd_pwrite_all(w->fd, w->stage, len, at))
            return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write %s: %s", w->tmp,
                                strerror(errno));
    } else if (w->syncer) {
        int err = qd_syncer_wrote(w->syncer, padded);
        if (err)
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", w->tmp, strerror(err));
    }
    w->stage_len = 0;
    return QD_OK;
}

static int w_emit(qd_gguf_writer *w, const void *d, size_t n)
{
    const uint8_t *p = d;
    if (w->mem) {
        memcpy(w->mem + w->mem_pos, d, n);
        w->mem_pos += n;
        return QD_OK;
    }
    while (n && w->dfd >= 0) {
        size_t k = DIRECT_BLOCK - w->stage_len < n ? DIRECT_BLOCK - w->stage_len : n;
        int rc;
        memcpy(w->stage + w->stage_len, p, k);
        w->stage_len += k;
        w->file_pos += k;
        p += k;
        n -= k;
        if (w->stage_len == DIRECT_BLOCK && (rc = w_flush_stage(w)))
            return rc;
    }
    if (!n)
        return QD_OK;
    if (qd_pwrite_all(w->fd, p, n, w->file_pos))
        return qd_error_set(errno == ENOSPC ? QD_EFULL : QD_EIO, QD_EC_OS, "write %s: %s", w->tmp, strerror(errno));
    w->file_pos += n;
    /* best effort: an I/O error also shows in the final fsync, which is checked */
    if (w->durable && w->file_pos - w->wb_started >= WB_STEP) {
        (void)sync_file_range(w->fd, (off_t)w->wb_started, (off_t)(w->file_pos - w->wb_started),
                              SYNC_FILE_RANGE_WRITE);
        w->wb_started = w->file_pos;
        if (w->wb_started - w->wb_waited > WB_DIRTY_MAX) {
            uint64_t upto = w->wb_started - WB_DIRTY_MAX / 2;
            (void)sync_file_range(w->fd, (off_t)w->wb_waited, (off_t)(upto - w->wb_waited),
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
            w->wb_waited = upto;
        }
    }
    return QD_OK;
}

int qd_gguf_writer_begin(qd_gguf_writer *w, const char *path)
{
    hbuf b;
    int rc;
    if (w->fd >= 0 || w->mem)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: writer already started");
    if ((rc = build_header(w, &b)))
        return rc;
    w->path = qd_strdup(path);
    w->tmp = qd_malloc(strlen(path) + 8);
    if (!w->path || !w->tmp)
        return QD_ENOMEM;
    snprintf(w->tmp, strlen(path) + 8, "%s.part", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "create %s: %s", w->tmp,
                            strerror(errno));
    /* -1 (not durable, or e.g. tmpfs): the page cache it is */
    w->dfd = w->durable ? open(w->tmp, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
    if (w->dfd >= 0 && !(w->stage = qd_big_alloc(DIRECT_BLOCK))) {
        close(w->dfd);
        w->dfd = -1;
    }
    /* (fd, not dfd: the writer drops dfd if O_DIRECT is refused late; without a thread the final fsync does it) */
    if (w->dfd >= 0)
        (void)qd_syncer_start(&w->syncer, w->fd, DIRECT_SYNC_STEP);
    rc = w_emit(w, b.p, b.len);
    w->cur = 0;
    w->cur_written = 0;
    return rc;
}

int qd_gguf_writer_write(qd_gguf_writer *w, const void *data, size_t len)
{
    static const uint8_t zeros[256];
    const uint8_t *p = data;
    int rc;
    while (len) {
        if (w->cur >= w->n_ts)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: more data than the declared tensors hold");
        const w_tensor *t = &w->ts[w->cur];
        uint64_t left = t->nbytes - w->cur_written;
        size_t k = len < left ? len : (size_t)left;
        if ((rc = w_emit(w, p, k)))
            return rc;
        p += k;
        len -= k;
        w->cur_written += k;
        if (w->cur_written == t->nbytes) {
            uint64_t pad = (w->alignment - t->nbytes % w->alignment) % w->alignment;
            while (pad) {
                size_t z = pad > sizeof(zeros) ? sizeof(zeros) : (size_t)pad;
                if ((rc = w_emit(w, zeros, z)))
                    return rc;
                pad -= z;
            }
            w->cur++;
            w->cur_written = 0;
        }
    }
    /* zero-size tensors complete without data */
    while (w->cur < w->n_ts && w->ts[w->cur].nbytes == 0)
        w->cur++;
    return QD_OK;
}

int qd_gguf_writer_finish(qd_gguf_writer *w)
{
    int rc;
    if ((rc = qd_gguf_writer_write(w, NULL, 0)))
        return rc;
    if (w->cur != w->n_ts)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "gguf: tensor %s was not fully written",
                            w->ts[w->cur].name);
    if (w->mem)
        return QD_OK;
    if (w->stage) { /* direct I/O: the last block goes out padded, then the file is cut to its size */
        int e;
        if ((rc = w_flush_stage(w)))
            return rc;
        e = qd_syncer_stop(w->syncer);
        w->syncer = NULL;
        if (e)
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", w->tmp, strerror(e));
        if (ftruncate(w->fd, (off_t)w->file_pos) != 0)
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", w->tmp, strerror(errno));
    }
    if (w->dfd >= 0) {
        close(w->dfd);
        w->dfd = -1;
    }
    if ((w->durable && fsync(w->fd) != 0) || close(w->fd) != 0) {
        w->fd = -1;
        unlink(w->tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", w->tmp, strerror(errno));
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "rename %s: %s", w->tmp, strerror(errno));
        unlink(w->tmp);
        return rc;
    }
    /* durable: the new name too */
    if (w->durable && qd_fsync_parent(w->path) != 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "sync the folder of %s: %s", w->path, strerror(errno));
    return QD_OK;
}

int qd_gguf_writer_to_mem(qd_gguf_writer *w, const void *const *datas, uint8_t **out, size_t *out_len)
{
    hbuf b;
    int rc;
    *out = NULL;
    *out_len = 0;
    if ((rc = build_header(w, &b)))
        return rc;
    size_t total = b.len + (size_t)w->data_size;
    w->mem = qd_malloc(total ? total : 1);
    if (!w->mem)
        return QD_ENOMEM;
    memcpy(w->mem, b.p, b.len);
    w->mem_pos = b.len;
    w->cur = 0;
    w->cur_written = 0;
    for (size_t i = 0; i < w->n_ts; i++)
        if ((rc = qd_gguf_writer_write(w, datas[i], (size_t)w->ts[i].nbytes)))
            goto fail;
    if ((rc = qd_gguf_writer_finish(w)))
        goto fail;
    *out = w->mem;
    *out_len = w->mem_pos;
    w->mem = NULL;
    return QD_OK;
fail:
    qd_free(w->mem);
    w->mem = NULL;
    return rc;
}
