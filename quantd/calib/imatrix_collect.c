/*
 * imatrix_collect.c - write the importance matrix of a calibration run in llama.cpp's two imatrix file formats.
 *
 * Both store, per weight matrix, the sum over calibration positions of x_j^2 for every input column j and how many
 * positions that sum covers; the importance is their quotient (the mean squared activation), which is what
 * llama-quantize hands the quantizers.
 *
 * Legacy imatrix.dat (llama.cpp's format before the GGUF imatrix, still written by `llama-imatrix --output-format
 * dat`): i32 n_entries; per entry i32 name_len, the name (no NUL), i32 ncall, i32 nval, f32 values[nval] with
 * values = (sum / count) * ncall; then i32 chunk count, i32 dataset name length and the name. ncall is the number
 * of calibration chunks (we evaluate one sequence per chunk); readers divide by it.
 *
 * GGUF imatrix (llama.cpp since mid-2025): general.type = "imatrix", imatrix.datasets (string array),
 * imatrix.chunk_count (u32), imatrix.chunk_size (u32); per matrix the F32 tensors "<name>.in_sum2" [nval, 1]
 * (the raw sums) and "<name>.counts" [1, 1] (positions), in name order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/model.h"
#include "qd/pipeline.h"

static bool keep(const qd_actstats_entry *e, bool with_output)
{
    return e->n_rows > 0 && (with_output || e->site != QD_SITE_OUTPUT);
}

static _Thread_local const qd_actstats *cmp_stats; /* qsort has no payload argument */
static int cmp_name(const void *a, const void *b)
{
    return strcmp(qd_actstats_at(cmp_stats, *(const size_t *)a)->name,
                  qd_actstats_at(cmp_stats, *(const size_t *)b)->name);
}

static int write_dat(const qd_actstats *s, const size_t *idx, size_t n, const char *path, const char *dataset,
                     int32_t n_chunks)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.part", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return qd_error_set(QD_EIO, QD_EC_OS, "imatrix: cannot create %s", tmp);
    int32_t ne = (int32_t)n, ncall = n_chunks > 0 ? n_chunks : 1;
    bool ok = fwrite(&ne, 4, 1, f) == 1;
    float *v = NULL;
    for (size_t k = 0; k < n && ok; k++) {
        const qd_actstats_entry *e = qd_actstats_at(s, idx[k]);
        int32_t len = (int32_t)strlen(e->name), nval = (int32_t)e->cols;
        qd_free(v);
        v = qd_mallocarray((size_t)nval, sizeof(float));
        if (!v) {
            fclose(f);
            remove(tmp);
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
        }
        for (int32_t j = 0; j < nval; j++)
            v[j] = (float)(e->sum_sq[j] / (double)e->n_rows) * (float)ncall;
        ok = fwrite(&len, 4, 1, f) == 1 && fwrite(e->name, 1, (size_t)len, f) == (size_t)len &&
             fwrite(&ncall, 4, 1, f) == 1 && fwrite(&nval, 4, 1, f) == 1 &&
             fwrite(v, 4, (size_t)nval, f) == (size_t)nval;
    }
    qd_free(v);
    int32_t dl = (int32_t)strlen(dataset ? dataset : "");
    ok = ok && fwrite(&ncall, 4, 1, f) == 1 && fwrite(&dl, 4, 1, f) == 1 &&
         (dl == 0 || fwrite(dataset, 1, (size_t)dl, f) == (size_t)dl);
    if (fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return qd_error_set(QD_EIO, QD_EC_OS, "imatrix: writing %s failed", path);
    }
    return QD_OK;
}

static int write_gguf(const qd_actstats *s, const size_t *idx, size_t n, const char *path, const char *dataset,
                      int32_t n_chunks, int32_t chunk_size)
{
    qd_gguf_writer *w = NULL;
    float *buf = NULL;
    int rc;
    const char *ds[1] = {dataset ? dataset : ""};
    if ((rc = qd_gguf_writer_new(&w, 0)) || (rc = qd_gguf_set_str(w, "general.type", "imatrix")) ||
        (rc = qd_gguf_set_str_arr(w, "imatrix.datasets", ds, 1)) ||
        (rc = qd_gguf_set_u32(w, "imatrix.chunk_count", (uint32_t)(n_chunks > 0 ? n_chunks : 0))) ||
        (rc = qd_gguf_set_u32(w, "imatrix.chunk_size", (uint32_t)(chunk_size > 0 ? chunk_size : 0))))
        goto done;
    char name[128];
    for (size_t k = 0; k < n; k++) {
        const qd_actstats_entry *e = qd_actstats_at(s, idx[k]);
        int64_t ne_s[2] = {e->cols, 1}, ne_c[2] = {1, 1};
        snprintf(name, sizeof(name), "%s.in_sum2", e->name);
        if ((rc = qd_gguf_add_tensor(w, name, QD_TYPE_F32, 2, ne_s)))
            goto done;
        snprintf(name, sizeof(name), "%s.counts", e->name);
        if ((rc = qd_gguf_add_tensor(w, name, QD_TYPE_F32, 2, ne_c)))
            goto done;
    }
    if ((rc = qd_gguf_writer_begin(w, path)))
        goto done;
    for (size_t k = 0; k < n; k++) {
        const qd_actstats_entry *e = qd_actstats_at(s, idx[k]);
        qd_free(buf);
        buf = qd_mallocarray((size_t)e->cols, sizeof(float));
        if (!buf) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
            goto done;
        }
        for (int64_t j = 0; j < e->cols; j++)
            buf[j] = (float)e->sum_sq[j];
        float cnt = (float)e->n_rows;
        if ((rc = qd_gguf_writer_write(w, buf, (size_t)e->cols * 4)) || (rc = qd_gguf_writer_write(w, &cnt, 4)))
            goto done;
    }
    rc = qd_gguf_writer_finish(w);
done:
    qd_free(buf);
    qd_gguf_writer_free(w);
    if (rc)
        qd_error_prefix("imatrix %s", path);
    return rc;
}

int qd_imatrix_write(const qd_actstats *s, const char *path, qd_imatrix_format f, const char *dataset,
                     int32_t n_chunks, int32_t chunk_size, bool with_output)
{
    size_t cnt = qd_actstats_count(s), n = 0;
    size_t *idx = qd_calloc(cnt ? cnt : 1, sizeof(size_t));
    if (!idx)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
    for (size_t i = 0; i < cnt; i++)
        if (keep(qd_actstats_at(s, i), with_output))
            idx[n++] = i;
    if (n == 0) {
        qd_free(idx);
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "imatrix: no activations were collected");
    }
    cmp_stats = s;
    qsort(idx, n, sizeof(*idx), cmp_name);
    cmp_stats = NULL;
    int rc = f == QD_IMATRIX_GGUF ? write_gguf(s, idx, n, path, dataset, n_chunks, chunk_size)
                                  : write_dat(s, idx, n, path, dataset, n_chunks);
    qd_free(idx);
    return rc;
}

int qd_imatrix_from_actstats(qd_imatrix **out, const qd_actstats *s, const char *dataset, int32_t chunks)
{
    qd_imatrix *im = NULL;
    float *v = NULL;
    int rc = qd_imatrix_new(&im);
    *out = NULL;
    for (size_t i = 0; !rc && i < qd_actstats_count(s); i++) {
        const qd_actstats_entry *e = qd_actstats_at(s, i);
        if (!keep(e, false))
            continue;
        qd_free(v);
        v = qd_mallocarray((size_t)e->cols, sizeof(float));
        if (!v) {
            rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "imatrix: out of memory");
            break;
        }
        float cnt = (float)e->n_rows;
        for (int64_t j = 0; j < e->cols; j++)
            v[j] = (float)e->sum_sq[j] / cnt;
        rc = qd_imatrix_add(im, e->name, v, e->cols);
    }
    qd_free(v);
    if (!rc)
        rc = qd_imatrix_set_info(im, dataset, chunks);
    if (rc) {
        qd_imatrix_free(im);
        return rc;
    }
    *out = im;
    return QD_OK;
}
