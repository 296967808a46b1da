/*
 * imatrix.c - importance matrices as llama.cpp's llama-imatrix writes them.
 *
 * Legacy .dat: i32 n_entries, then per entry i32 name_len, name, i32 ncall, i32 nval, f32 values[nval]; optionally
 * a trailing i32 chunk count and dataset name. llama-quantize divides the values by ncall; so do we.
 * GGUF form: tensors "<name>.in_sum2" (f32, per column) and "<name>.counts"; the weight is in_sum2 / count.
 */
#include <stdio.h>
#include <string.h>

#include "../io/io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/pipeline.h"

typedef struct im_entry {
    char *name;
    int64_t n;
    float *v;
} im_entry;

struct qd_imatrix {
    im_entry *e;
    size_t n, cap;
    char *dataset;   /* imatrix.datasets[0] / the legacy trailer's name */
    int32_t chunks;  /* imatrix.chunk_count / the legacy trailer's count */
};

void qd_imatrix_free(qd_imatrix *im)
{
    if (!im)
        return;
    for (size_t i = 0; i < im->n; i++) {
        qd_free(im->e[i].name);
        qd_free(im->e[i].v);
    }
    qd_free(im->e);
    qd_free(im->dataset);
    qd_free(im);
}

int qd_imatrix_new(qd_imatrix **out)
{
    *out = qd_calloc(1, sizeof(**out));
    return *out ? QD_OK : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
}

int qd_imatrix_add(qd_imatrix *im, const char *name, const float *v, int64_t n)
{
    int64_t nn;
    if (qd_imatrix_find(im, name, &nn))
        return qd_error_set(QD_EEXISTS, QD_EC_INVALID, "imatrix: %s twice", name);
    if (im->n == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 32;
        im_entry *ne = qd_reallocarray(im->e, cap, sizeof(*ne));
        if (!ne)
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
        im->e = ne;
        im->cap = cap;
    }
    im_entry *e = &im->e[im->n];
    e->name = qd_strdup(name);
    e->n = n;
    e->v = qd_mallocarray((size_t)(n > 0 ? n : 1), sizeof(float));
    if (!e->name || !e->v) {
        qd_free(e->name);
        qd_free(e->v);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
    }
    memcpy(e->v, v, sizeof(float) * (size_t)n);
    im->n++;
    return QD_OK;
}

void qd_imatrix_info(const qd_imatrix *im, const char **dataset, int32_t *chunks)
{
    *dataset = im ? im->dataset : NULL;
    *chunks = im ? im->chunks : 0;
}

int qd_imatrix_set_info(qd_imatrix *im, const char *dataset, int32_t chunks)
{
    char *d = dataset ? qd_strdup(dataset) : NULL;
    if (dataset && !d)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
    qd_free(im->dataset);
    im->dataset = d;
    im->chunks = chunks;
    return QD_OK;
}

size_t qd_imatrix_count(const qd_imatrix *im) { return im ? im->n : 0; }

const float *qd_imatrix_find(const qd_imatrix *im, const char *name, int64_t *n)
{
    for (size_t i = 0; im && i < im->n; i++) {
        if (!strcmp(im->e[i].name, name)) {
            *n = im->e[i].n;
            return im->e[i].v;
        }
    }
    return NULL;
}

static int rd_i32(const uint8_t *p, size_t len, size_t *pos, int32_t *v)
{
    if (len - *pos < 4)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "imatrix: truncated at offset %zu", *pos);
    memcpy(v, p + *pos, 4);
    *pos += 4;
    return QD_OK;
}

static int load_gguf(qd_imatrix *im, const char *path)
{
    qd_model *m;
    int rc = qd_model_open(&m, path);
    if (rc)
        return rc;
    size_t nt = qd_model_tensor_count(m);
    const qd_kv *kc = qd_model_kv_find(m, "imatrix.chunk_count");
    const qd_kv *kd = qd_model_kv_find(m, "imatrix.datasets");
    int64_t cc;
    if (kc && qd_kv_int(kc, &cc) == QD_OK)
        im->chunks = (int32_t)cc;
    if (kd && kd->type == QD_GGUF_ARRAY && kd->arr_type == QD_GGUF_STRING && kd->n > 0 && kd->arr)
        im->dataset = qd_strdup(((char *const *)kd->arr)[0]);
    im->e = qd_calloc(nt ? nt : 1, sizeof(im_entry));
    if (!im->e) {
        qd_model_free(m);
        return QD_ENOMEM;
    }
    for (size_t i = 0; i < nt; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        size_t l = strlen(t->name);
        if (l < 9 || strcmp(t->name + l - 8, ".in_sum2") || t->type != QD_TYPE_F32)
            continue;
        char cname[QD_GGUF_MAX_NAME + 8];
        snprintf(cname, sizeof(cname), "%.*s.counts", (int)(l - 8), t->name);
        const qd_tensor *c = qd_model_tensor_find(m, cname);
        if (!c || c->type != QD_TYPE_F32 || qd_tensor_nelements(c) < 1) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "imatrix %s: %s has no counts", path, t->name);
            break;
        }
        im_entry *e = &im->e[im->n];
        e->name = qd_strndup(t->name, l - 8);
        e->n = t->ne[0];
        e->v = qd_mallocarray((size_t)qd_tensor_nelements(t), sizeof(float));
        if (!e->name || !e->v) {
            qd_free(e->name);
            qd_free(e->v);
            rc = QD_ENOMEM;
            break;
        }
        im->n++;
        float cnt;
        memcpy(&cnt, c->data, 4);
        memcpy(e->v, t->data, (size_t)e->n * 4);
        for (int64_t j = 0; j < e->n; j++)
            e->v[j] = cnt > 0 ? e->v[j] / cnt : e->v[j];
    }
    qd_model_free(m);
    return rc;
}

int qd_imatrix_load(qd_imatrix **out, const char *path)
{
    io_map map;
    qd_imatrix *im;
    int rc;
    size_t pos = 0;
    int32_t n_entries = 0;

    *out = NULL;
    im = qd_calloc(1, sizeof(*im));
    if (!im)
        return QD_ENOMEM;
    if ((rc = io_map_file(&map, path))) {
        qd_free(im);
        return rc;
    }
    if (map.size >= 4 && !memcmp(map.base, "GGUF", 4)) {
        io_unmap(&map);
        rc = load_gguf(im, path);
        goto out;
    }
    if ((rc = rd_i32(map.base, map.size, &pos, &n_entries)))
        goto out_unmap;
    if (n_entries < 0 || (size_t)n_entries > map.size / 12) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "imatrix %s: bad entry count %d", path, n_entries);
        goto out_unmap;
    }
    im->e = qd_calloc(n_entries ? (size_t)n_entries : 1, sizeof(im_entry));
    if (!im->e) {
        rc = QD_ENOMEM;
        goto out_unmap;
    }
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len = 0, ncall = 0, nval = 0;
        if ((rc = rd_i32(map.base, map.size, &pos, &len)))
            goto out_unmap;
        if (len <= 0 || (size_t)len > map.size - pos || len > 4096) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "imatrix %s: entry %d: bad name length", path, i);
            goto out_unmap;
        }
        im_entry *e = &im->e[im->n];
        e->name = qd_strndup((const char *)map.base + pos, (size_t)len);
        if (!e->name) {
            rc = QD_ENOMEM;
            goto out_unmap;
        }
        im->n++;
        pos += (size_t)len;
        if ((rc = rd_i32(map.base, map.size, &pos, &ncall)) || (rc = rd_i32(map.base, map.size, &pos, &nval)))
            goto out_unmap;
        if (nval <= 0 || (size_t)nval > (map.size - pos) / 4) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "imatrix %s: %s: bad value count", path, e->name);
            goto out_unmap;
        }
        e->n = nval;
        e->v = qd_mallocarray((size_t)nval, sizeof(float));
        if (!e->v) {
            rc = QD_ENOMEM;
            goto out_unmap;
        }
        memcpy(e->v, map.base + pos, (size_t)nval * 4);
        pos += (size_t)nval * 4;
        if (ncall > 0)
            for (int32_t j = 0; j < nval; j++)
                e->v[j] /= (float)ncall;
    }
    /* optional trailer: i32 chunk count, i32 name length, dataset name */
    {
        int32_t chunks = 0, dl = 0;
        if (map.size - pos >= 8 && !rd_i32(map.base, map.size, &pos, &chunks) &&
            !rd_i32(map.base, map.size, &pos, &dl)) {
            im->chunks = chunks;
            if (dl > 0 && (size_t)dl <= map.size - pos && dl <= 4096)
                im->dataset = qd_strndup((const char *)map.base + pos, (size_t)dl);
        }
    }
out_unmap:
    io_unmap(&map);
out:
    if (rc) {
        qd_imatrix_free(im);
        return rc;
    }
    *out = im;
    return QD_OK;
}
