/*
 * safetensors_write.c - the safetensors writer, and a raw reader for every dtype (the quantized layouts of
 * hfquant.h hold I8, U8, I32, I64 and F8 tensors, which the model reader of safetensors.c does not take).
 *
 * File: u64 little-endian header length N, N bytes of JSON {"__metadata__": {str: str}, name: {"dtype", "shape",
 * "data_offsets": [begin, end]}}, then the data. The writer pads the JSON with spaces to a multiple of 8 (the
 * format allows trailing whitespace; the reference implementation does the same) and orders tensors by decreasing
 * element size, then name, so every tensor starts at a multiple of its element size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/hfquant.h"

#define STW_MAX_HEADER (256u << 20)

static const struct {
    const char *name;
    size_t size;
} st_dtypes[QD_ST_DTYPE_COUNT] = {
    [QD_ST_F64] = {"F64", 8},     [QD_ST_F32] = {"F32", 4},         [QD_ST_F16] = {"F16", 2},
    [QD_ST_BF16] = {"BF16", 2},   [QD_ST_I64] = {"I64", 8},         [QD_ST_I32] = {"I32", 4},
    [QD_ST_I16] = {"I16", 2},     [QD_ST_I8] = {"I8", 1},           [QD_ST_U8] = {"U8", 1},
    [QD_ST_BOOL] = {"BOOL", 1},   [QD_ST_F8_E4M3] = {"F8_E4M3", 1}, [QD_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qd_st_dtype_name(qd_st_dtype t)
{
    return (unsigned)t < QD_ST_DTYPE_COUNT ? st_dtypes[t].name : "?";
}

size_t qd_st_dtype_size(qd_st_dtype t)
{
    return (unsigned)t < QD_ST_DTYPE_COUNT ? st_dtypes[t].size : 0;
}

int qd_st_dtype_from_name(const char *name, qd_st_dtype *out)
{
    for (int i = 0; i < QD_ST_DTYPE_COUNT; i++)
        if (!strcmp(name, st_dtypes[i].name)) {
            *out = (qd_st_dtype)i;
            return QD_OK;
        }
    return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "safetensors: unknown dtype %s", name);
}

/* ---- writer --------------------------------------------------------------------------------------------------- */

typedef struct stw_tensor {
    char *name;
    qd_st_dtype dtype;
    uint32_t rank;
    int64_t shape[QD_ST_MAX_RANK];
    uint8_t *data;
    size_t nbytes;
} stw_tensor;

struct qd_st_writer {
    stw_tensor *t;
    size_t n, cap;
    json_t *meta;
};

int qd_st_writer_new(qd_st_writer **out)
{
    qd_st_writer *w = qd_calloc(1, sizeof(*w));
    if (!w)
        return QD_ENOMEM;
    w->meta = json_object();
    if (!w->meta) {
        qd_free(w);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "safetensors writer: out of memory");
    }
    *out = w;
    return QD_OK;
}

void qd_st_writer_free(qd_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        qd_free(w->t[i].name);
        qd_free(w->t[i].data);
    }
    qd_free(w->t);
    json_decref(w->meta);
    qd_free(w);
}

int qd_st_writer_meta(qd_st_writer *w, const char *key, const char *value)
{
    if (!key || !value)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: metadata needs a key and a value");
    if (json_object_set_new(w->meta, key, json_string(value)))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: metadata %s is not valid UTF-8", key);
    return QD_OK;
}

int qd_st_writer_add(qd_st_writer *w, const char *name, qd_st_dtype dtype, uint32_t rank, const int64_t *shape,
                     const void *data, size_t nbytes)
{
    uint64_t nel = 1;
    if (!name || !*name || !strcmp(name, "__metadata__") || (unsigned)dtype >= QD_ST_DTYPE_COUNT ||
        rank > QD_ST_MAX_RANK)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: bad tensor name, dtype or rank (%s)",
                            name ? name : "(null)");
    for (uint32_t d = 0; d < rank; d++) {
        if (shape[d] < 0 || (shape[d] && nel > (UINT64_MAX / 16) / (uint64_t)shape[d]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: %s: bad shape", name);
        nel *= (uint64_t)shape[d];
    }
    if (nel * qd_st_dtype_size(dtype) != nbytes)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: %s: %zu bytes given, shape needs %llu",
                            name, nbytes, (unsigned long long)(nel * qd_st_dtype_size(dtype)));
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return qd_error_set(QD_EEXISTS, QD_EC_INVALID, "safetensors writer: %s added twice", name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 16;
        stw_tensor *nt = qd_reallocarray(w->t, nc, sizeof(*nt));
        if (!nt)
            return QD_ENOMEM;
        w->t = nt;
        w->cap = nc;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof(*t));
    t->name = qd_strdup(name);
    t->data = qd_malloc(nbytes ? nbytes : 1);
    if (!t->name || !t->data) {
        qd_free(t->name);
        qd_free(t->data);
        return QD_ENOMEM;
    }
    if (nbytes)
        memcpy(t->data, data, nbytes);
    t->dtype = dtype;
    t->rank = rank;
    for (uint32_t d = 0; d < rank; d++)
        t->shape[d] = shape[d];
    t->nbytes = nbytes;
    w->n++;
    return QD_OK;
}

static int stw_cmp(const void *a, const void *b)
{
    const stw_tensor *x = a, *y = b;
    size_t sx = qd_st_dtype_size(x->dtype), sy = qd_st_dtype_size(y->dtype);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int write_all(int fd, const void *p, size_t n, const char *path)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return qd_error_set(QD_EIO, QD_EC_OS, "write %s: %s", path, strerror(errno));
        }
        b += k;
        n -= (size_t)k;
    }
    return QD_OK;
}

/* Write tensors [a, b) into path (through path.part). */
static int stw_write_file(qd_st_writer *w, size_t a, size_t b, const char *path, uint64_t *bytes)
{
    json_t *hdr = json_object();
    char *js = NULL, tmp[4200];
    int fd = -1, rc = QD_OK;
    uint64_t off = 0;

    if (!hdr)
        return QD_ENOMEM;
    if (json_object_size(w->meta) && json_object_set(hdr, "__metadata__", w->meta)) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (size_t i = a; i < b; i++) {
        stw_tensor *t = &w->t[i];
        json_t *o = json_object(), *sh = json_array();
        if (!o || !sh) {
            json_decref(o);
            json_decref(sh);
            rc = QD_ENOMEM;
            goto done;
        }
        for (uint32_t d = 0; d < t->rank; d++)
            json_array_append_new(sh, json_integer(t->shape[d]));
        json_object_set_new(o, "dtype", json_string(qd_st_dtype_name(t->dtype)));
        json_object_set_new(o, "shape", sh);
        json_object_set_new(o, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->nbytes)));
        if (json_object_set_new(hdr, t->name, o)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: name %s is not valid UTF-8", t->name);
            goto done;
        }
        off += t->nbytes;
    }
    {
        /* into our own allocation (json_dumps would hand back malloc memory) */
        size_t need = json_dumpb(hdr, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
        js = need ? qd_malloc(need + 1) : NULL;
        if (js && json_dumpb(hdr, js, need, JSON_COMPACT | JSON_PRESERVE_ORDER) == need)
            js[need] = '\0';
        else {
            qd_free(js);
            js = NULL;
        }
    }
    if (!js) {
        rc = QD_ENOMEM;
        goto done;
    }
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    if (padded > STW_MAX_HEADER) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: header of %zu bytes is too large", padded);
        goto done;
    }
    snprintf(tmp, sizeof(tmp), "%s.part", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "create %s: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    if ((rc = write_all(fd, len8, 8, tmp)) || (rc = write_all(fd, js, jl, tmp)))
        goto done;
    for (size_t i = jl; i < padded; i++)
        if ((rc = write_all(fd, " ", 1, tmp)))
            goto done;
    for (size_t i = a; i < b; i++)
        if ((rc = write_all(fd, w->t[i].data, w->t[i].nbytes, tmp)))
            goto done;
    if (fsync(fd) != 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "fsync %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = qd_error_set(QD_EIO, QD_EC_OS, "close %s: %s", tmp, strerror(errno));
        goto done;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "rename %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (bytes)
        *bytes += 8 + padded + off;
done:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    qd_free(js);
    json_decref(hdr);
    return rc;
}

int qd_st_writer_write(qd_st_writer *w, const char *dir, const char *stem, uint64_t max_shard_bytes,
                       uint64_t *bytes_written)
{
    char path[4096];
    size_t *cut = NULL, n_shards = 0;
    json_t *idx = NULL, *wm = NULL;
    int rc = QD_OK;
    uint64_t total = 0;

    if (bytes_written)
        *bytes_written = 0;
    if (w->n > 1)
        qsort(w->t, w->n, sizeof(*w->t), stw_cmp);
    for (size_t i = 0; i < w->n; i++)
        total += w->t[i].nbytes;
    if (!max_shard_bytes || total <= max_shard_bytes) {
        snprintf(path, sizeof(path), "%s/%s.safetensors", dir, stem);
        return stw_write_file(w, 0, w->n, path, bytes_written);
    }
    cut = qd_calloc(w->n + 2, sizeof(size_t));
    if (!cut)
        return QD_ENOMEM;
    uint64_t acc = 0;
    cut[0] = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (acc && acc + w->t[i].nbytes > max_shard_bytes) {
            cut[++n_shards] = i;
            acc = 0;
        }
        acc += w->t[i].nbytes;
    }
    cut[++n_shards] = w->n;
    if (n_shards > 99999) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "safetensors writer: %zu shards is too many", n_shards);
        goto done;
    }
    idx = json_object();
    wm = json_object();
    if (!idx || !wm) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (size_t s = 0; s < n_shards; s++) {
        char fname[512];
        snprintf(fname, sizeof(fname), "%s-%05zu-of-%05zu.safetensors", stem, s + 1, n_shards);
        snprintf(path, sizeof(path), "%s/%s", dir, fname);
        if ((rc = stw_write_file(w, cut[s], cut[s + 1], path, bytes_written)))
            goto done;
        for (size_t i = cut[s]; i < cut[s + 1]; i++)
            json_object_set_new(wm, w->t[i].name, json_string(fname));
    }
    json_object_set_new(idx, "metadata", json_pack("{sI}", "total_size", (json_int_t)total));
    json_object_set(idx, "weight_map", wm);
    snprintf(path, sizeof(path), "%s/%s.safetensors.index.json", dir, stem);
    if (json_dump_file(idx, path, JSON_INDENT(2) | JSON_SORT_KEYS)) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
        goto done;
    }
done:
    json_decref(wm);
    json_decref(idx);
    qd_free(cut);
    return rc;
}

/* ---- raw reader ----------------------------------------------------------------------------------------------- */

struct qd_st_file {
    io_map *maps;
    size_t n_maps;
    qd_st_entry *e;
    size_t n, cap;
    json_t *meta;
};

static int str_err(int code, const char *path, const char *fmt, const char *a)
{
    return qd_error_set(code, QD_EC_INVALID, "%s: safetensors: %s%s", path, fmt, a);
}

static int cmp_off(const void *a, const void *b)
{
    const qd_st_entry *x = *(const qd_st_entry *const *)a, *y = *(const qd_st_entry *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int st_parse_one(qd_st_file *f, const io_map *m, const char *path, int first)
{
    uint64_t n;
    json_error_t jerr;
    json_t *root, *val;
    const char *key;
    size_t start = f->n;
    int rc = QD_OK;

    if (m->size < 8)
        return str_err(QD_ETRUNCATED, path, "shorter than the 8-byte header length", "");
    memcpy(&n, m->base, 8);
    if (n > m->size - 8)
        return str_err(QD_ETRUNCATED, path, "header length runs past the end of the file", "");
    if (n > STW_MAX_HEADER)
        return str_err(QD_ECORRUPT, path, "header over the 256 MiB limit", "");
    root = json_loadb((const char *)m->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: safetensors header is not a JSON object: %s", path,
                            jerr.text);
    }
    const uint8_t *data = m->base + 8 + n;
    uint64_t data_size = m->size - 8 - n;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                rc = str_err(QD_ECORRUPT, path, "__metadata__ is not an object", "");
                goto done;
            }
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = str_err(QD_ECORRUPT, path, "__metadata__ value is not a string: ", mk);
                    goto done;
                }
            }
            if (first)
                f->meta = json_incref(val);
            continue;
        }
        json_t *dt = json_object_get(val, "dtype"), *shape = json_object_get(val, "shape"),
               *offs = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
            json_array_size(offs) != 2) {
            rc = str_err(QD_ECORRUPT, path, "needs dtype, shape and data_offsets[2]: ", key);
            goto done;
        }
        if (f->n == f->cap) {
            size_t nc = f->cap ? f->cap * 2 : 32;
            qd_st_entry *ne = qd_reallocarray(f->e, nc, sizeof(*ne));
            if (!ne) {
                rc = QD_ENOMEM;
                goto done;
            }
            f->e = ne;
            f->cap = nc;
        }
        qd_st_entry *e = &f->e[f->n];
        memset(e, 0, sizeof(*e));
        if (qd_st_dtype_from_name(json_string_value(dt), &e->dtype)) {
            rc = qd_error_prefix("%s: tensor %s", path, key);
            goto done;
        }
        if (json_array_size(shape) > QD_ST_MAX_RANK) {
            rc = str_err(QD_EUNSUPPORTED, path, "too many dimensions: ", key);
            goto done;
        }
        e->rank = (uint32_t)json_array_size(shape);
        uint64_t nel = 1, b, end;
        for (uint32_t d = 0; d < e->rank; d++) {
            json_t *v = json_array_get(shape, d);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                (json_integer_value(v) && nel > (UINT64_MAX / 16) / (uint64_t)json_integer_value(v))) {
                rc = str_err(QD_ECORRUPT, path, "bad or overflowing shape: ", key);
                goto done;
            }
            e->shape[d] = json_integer_value(v);
            nel *= (uint64_t)e->shape[d];
        }
        json_t *jb = json_array_get(offs, 0), *je = json_array_get(offs, 1);
        if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
            json_integer_value(je) < json_integer_value(jb)) {
            rc = str_err(QD_ECORRUPT, path, "bad data_offsets: ", key);
            goto done;
        }
        b = (uint64_t)json_integer_value(jb);
        end = (uint64_t)json_integer_value(je);
        e->nbytes = nel * qd_st_dtype_size(e->dtype);
        if (end - b != e->nbytes) {
            rc = str_err(QD_ECORRUPT, path, "data_offsets disagree with dtype and shape: ", key);
            goto done;
        }
        if (end > data_size) {
            rc = str_err(QD_ECORRUPT, path, "data_offsets run past the end of the file: ", key);
            goto done;
        }
        e->data = data + b;
        e->name = key; /* fixed up to a copy below */
        if (qd_st_find(f, key)) {
            rc = str_err(QD_ECORRUPT, path, "tensor in two shards: ", key);
            goto done;
        }
        if (!(e->name = qd_strdup(key))) {
            rc = QD_ENOMEM;
            goto done;
        }
        f->n++;
    }
    /* no two ranges of this file overlap */
    if (f->n - start > 1) {
        const qd_st_entry **v = qd_calloc(f->n - start, sizeof(*v));
        if (!v) {
            rc = QD_ENOMEM;
            goto done;
        }
        for (size_t i = start; i < f->n; i++)
            v[i - start] = &f->e[i];
        qsort(v, f->n - start, sizeof(*v), cmp_off);
        for (size_t i = 1; i < f->n - start; i++)
            if (v[i - 1]->data + v[i - 1]->nbytes > v[i]->data) {
                rc = str_err(QD_ECORRUPT, path, "data ranges overlap: ", v[i]->name);
                break;
            }
        qd_free(v);
    }
done:
    json_decref(root);
    return rc;
}

int qd_st_open(qd_st_file **out, const char *path)
{
    struct stat st;
    char buf[4096];
    char **files = NULL;
    size_t n_files = 0;
    json_t *idx = NULL;
    qd_st_file *f;
    int rc = QD_OK;

    *out = NULL;
    if (stat(path, &st) != 0)
        return qd_error_set(QD_ENOTFOUND, QD_EC_OS, "%s: %s", path, strerror(errno));
    f = qd_calloc(1, sizeof(*f));
    if (!f)
        return QD_ENOMEM;
    if (S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof(buf), "%s/model.safetensors.index.json", path);
        if (stat(buf, &st) == 0) {
            json_error_t jerr;
            const char *k;
            json_t *v, *wm;
            idx = json_load_file(buf, JSON_REJECT_DUPLICATES, &jerr);
            wm = json_object_get(idx, "weight_map");
            if (!json_is_object(wm)) {
                rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: no weight_map object", buf);
                goto done;
            }
            files = qd_calloc(json_object_size(wm) + 1, sizeof(char *));
            if (!files) {
                rc = QD_ENOMEM;
                goto done;
            }
            json_object_foreach(wm, k, v) {
                const char *s = json_string_value(v);
                size_t j;
                if (!s || strchr(s, '/') || !strcmp(s, "..")) {
                    rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: weight_map.%s is not a file name", buf, k);
                    goto done;
                }
                for (j = 0; j < n_files && strcmp(files[j], s); j++)
                    ;
                if (j == n_files)
                    files[n_files++] = (char *)s;
            }
        } else {
            files = qd_calloc(1, sizeof(char *));
            if (!files) {
                rc = QD_ENOMEM;
                goto done;
            }
            files[n_files++] = "model.safetensors";
        }
    } else {
        files = qd_calloc(1, sizeof(char *));
        if (!files) {
            rc = QD_ENOMEM;
            goto done;
        }
        files[n_files++] = NULL; /* path itself */
    }
    f->maps = qd_calloc(n_files ? n_files : 1, sizeof(io_map));
    if (!f->maps) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n_files; i++) {
        if (files[i])
            snprintf(buf, sizeof(buf), "%s/%s", path, files[i]);
        else
            snprintf(buf, sizeof(buf), "%s", path);
        if ((rc = io_map_file(&f->maps[i], buf)))
            goto done;
        f->n_maps++;
        if ((rc = st_parse_one(f, &f->maps[i], buf, i == 0)))
            goto done;
    }
    if (idx) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(idx, "weight_map"), k, v) {
            if (!qd_st_find(f, k)) {
                rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: index names %s, which no shard holds", path, k);
                goto done;
            }
        }
    }
done:
    qd_free(files);
    json_decref(idx);
    if (rc)
        qd_st_close(f);
    else
        *out = f;
    return rc;
}

void qd_st_close(qd_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        qd_free((char *)f->e[i].name);
    qd_free(f->e);
    for (size_t i = 0; i < f->n_maps; i++)
        io_unmap(&f->maps[i]);
    qd_free(f->maps);
    json_decref(f->meta);
    qd_free(f);
}

size_t qd_st_count(const qd_st_file *f) { return f->n; }

const qd_st_entry *qd_st_at(const qd_st_file *f, size_t i) { return i < f->n ? &f->e[i] : NULL; }

const qd_st_entry *qd_st_find(const qd_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->e[i].name && !strcmp(f->e[i].name, name))
            return &f->e[i];
    return NULL;
}

const char *qd_st_meta(const qd_st_file *f, const char *key)
{
    return f->meta ? json_string_value(json_object_get(f->meta, key)) : NULL;
}
