/*
 * layouts.c - one weight matrix into the tensors of a bitsandbytes or compressed-tensors layout (round to nearest),
 * and back from a safetensors file. docs/HF_FORMATS.md names every tensor, dtype and shape.
 *
 * Every float operation that decides a stored value or a reconstructed value is a single f32 operation in the
 * order the reference loaders use (this folder is built without multiply-add contraction), so that the values the
 * quantizer reports in qd_hfq_result.deq are the values a loader computes from the file, bit for bit.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/quant.h"

#define CT_EPS FLT_EPSILON /* compressed-tensors clamps scales to torch.finfo(float32).eps */

static const char *type_names[] = {"nf4", "fp4", "int8", "fp8_e4m3", "fp8_e5m2", "int4"};

const char *qd_hfq_type_name(qd_hfq_type t) { return (unsigned)t < 6 ? type_names[t] : "?"; }

int qd_hfq_type_from_name(const char *name, qd_hfq_type *out)
{
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, type_names[i])) {
            *out = (qd_hfq_type)i;
            return QD_OK;
        }
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown type %s (nf4, fp4, int8, fp8_e4m3, fp8_e5m2, int4)", name);
}

const char *qd_hfq_format_name(qd_hfq_format f)
{
    return f == QD_HFQ_BNB ? "bnb" : f == QD_HFQ_GPTQ ? "autogptq" : "compressed-tensors";
}

int qd_hfq_format_from_name(const char *name, qd_hfq_format *out)
{
    if (!strcmp(name, "bnb") || !strcmp(name, "bitsandbytes"))
        *out = QD_HFQ_BNB;
    else if (!strcmp(name, "compressed-tensors"))
        *out = QD_HFQ_CT;
    else if (!strcmp(name, "autogptq"))
        *out = QD_HFQ_GPTQ;
    else
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "unknown format %s (bnb, compressed-tensors, autogptq)", name);
    return QD_OK;
}

void qd_hfq_result_free(qd_hfq_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_parts; i++)
        qd_free(r->parts[i].data);
    qd_free(r->deq);
    memset(r, 0, sizeof(*r));
}

/* Append a part with a zeroed buffer; returns the buffer or NULL (ENOMEM). */
static void *add_part(qd_hfq_result *r, const char *suffix, qd_st_dtype dt, uint32_t rank, int64_t d0, int64_t d1)
{
    qd_hfq_part *p = &r->parts[r->n_parts];
    memset(p, 0, sizeof(*p));
    snprintf(p->suffix, sizeof(p->suffix), "%s", suffix);
    p->dtype = dt;
    p->rank = rank;
    p->shape[0] = d0;
    p->shape[1] = d1;
    size_t nel = rank == 0 ? 1 : rank == 1 ? (size_t)d0 : (size_t)d0 * (size_t)d1;
    p->nbytes = nel * qd_st_dtype_size(dt);
    p->data = qd_calloc(p->nbytes ? p->nbytes : 1, 1);
    if (!p->data) {
        qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory for %s", suffix);
        return NULL;
    }
    r->n_parts++;
    return p->data;
}

/* ---- bitsandbytes 4-bit --------------------------------------------------------------------------------------- */

static uint8_t dyn_nearest(const float map[256], float x)
{
    int lo = 0, hi = 255;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (map[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    /* map[lo] <= x < map[hi] unless x is outside the map */
    if (x <= map[lo])
        return (uint8_t)lo;
    if (x >= map[hi])
        return (uint8_t)hi;
    return (uint8_t)(x - map[lo] <= map[hi] - x ? lo : hi);
}

/* Python's repr of a double: the shortest %.17g-style string that reads back to the same value. */
static void repr_double(char *buf, size_t cap, double v)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn")) /* Python prints floats with a dot: 1.0 */
        snprintf(buf + strlen(buf), cap - strlen(buf), ".0");
}

static int bnb_quantize(qd_hfq_result *r, const qd_hfq_opts *o, const float *w, int64_t rows, int64_t cols)
{
    qd_bnb4_kind kind = o->type == QD_HFQ_FP4 ? QD_BNB_FP4 : QD_BNB_NF4;
    const float *code = qd_bnb4_code(kind);
    int64_t n = rows * cols, bs = o->group ? o->group : 64;
    float *absmax = NULL, *used = NULL;
    int rc = QD_OK;

    if (bs < 64 || bs > 4096 || (bs & (bs - 1)))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "bnb: blocksize %lld is not a power of two in 64..4096",
                            (long long)bs);
    int64_t nb = (n + bs - 1) / bs;
    uint8_t *packed = add_part(r, "weight", QD_ST_U8, 2, (n + 1) / 2, 1);
    float *qmap = add_part(r, "weight.quant_map", QD_ST_F32, 1, 16, 0);
    absmax = qd_mallocarray((size_t)nb, sizeof(float));
    used = qd_mallocarray((size_t)nb, sizeof(float));
    if (!packed || !qmap || !absmax || !used) {
        rc = QD_ENOMEM;
        goto done;
    }
    memcpy(qmap, code, 16 * sizeof(float));
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * bs, i1 = i0 + bs < n ? i0 + bs : n;
        float m = 0.0f;
        for (int64_t i = i0; i < i1; i++)
            if (fabsf(w[i]) > m)
                m = fabsf(w[i]);
        absmax[b] = m;
        float inv = m > 0.0f ? 1.0f / m : 0.0f; /* bnb multiplies by the reciprocal */
        for (int64_t i = i0; i < i1; i++) {
            uint8_t q = qd_bnb4_encode(kind, w[i] * inv);
            packed[i / 2] |= (uint8_t)(i % 2 == 0 ? q << 4 : q); /* first element in the high nibble */
        }
    }
    const char *dtype = o->dtype ? o->dtype : "float32";
    char js[512];
    if (o->double_quant) {
        int64_t nb2 = (nb + 255) / 256;
        float dmap[256];
        qd_bnb_dynamic_map(dmap);
        uint8_t *qabs = add_part(r, "weight.absmax", QD_ST_U8, 1, nb, 0);
        float *abs2 = add_part(r, "weight.nested_absmax", QD_ST_F32, 1, nb2, 0);
        float *nmap = add_part(r, "weight.nested_quant_map", QD_ST_F32, 1, 256, 0);
        if (!qabs || !abs2 || !nmap) {
            rc = QD_ENOMEM;
            goto done;
        }
        memcpy(nmap, dmap, sizeof(dmap));
        double sum = 0;
        for (int64_t b = 0; b < nb; b++)
            sum += absmax[b];
        float offset = (float)(sum / (double)nb);
        for (int64_t b2 = 0; b2 < nb2; b2++) {
            int64_t i0 = b2 * 256, i1 = i0 + 256 < nb ? i0 + 256 : nb;
            float m = 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                float c = absmax[i] - offset;
                if (fabsf(c) > m)
                    m = fabsf(c);
            }
            abs2[b2] = m;
            float inv = m > 0.0f ? 1.0f / m : 0.0f;
            for (int64_t i = i0; i < i1; i++) {
                qabs[i] = dyn_nearest(dmap, (absmax[i] - offset) * inv);
                float d = dmap[qabs[i]] * m; /* dequantize_blockwise */
                used[i] = d + offset;        /* absmax += offset */
            }
        }
        char off[40];
        repr_double(off, sizeof(off), (double)offset);
        snprintf(js, sizeof(js),
                 "{\"quant_type\": \"%s\", \"blocksize\": %lld, \"dtype\": \"%s\", \"shape\": [%lld, %lld], "
                 "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %s}",
                 kind == QD_BNB_NF4 ? "nf4" : "fp4", (long long)bs, dtype, (long long)rows, (long long)cols, off);
    } else {
        float *abs = add_part(r, "weight.absmax", QD_ST_F32, 1, nb, 0);
        if (!abs) {
            rc = QD_ENOMEM;
            goto done;
        }
        memcpy(abs, absmax, (size_t)nb * sizeof(float));
        memcpy(used, absmax, (size_t)nb * sizeof(float));
        snprintf(js, sizeof(js),
                 "{\"quant_type\": \"%s\", \"blocksize\": %lld, \"dtype\": \"%s\", \"shape\": [%lld, %lld]}",
                 kind == QD_BNB_NF4 ? "nf4" : "fp4", (long long)bs, dtype, (long long)rows, (long long)cols);
    }
    uint8_t *qs = add_part(r, kind == QD_BNB_NF4 ? "weight.quant_state.bitsandbytes__nf4"
                                                  : "weight.quant_state.bitsandbytes__fp4",
                           QD_ST_U8, 1, (int64_t)strlen(js), 0);
    if (!qs) {
        rc = QD_ENOMEM;
        goto done;
    }
    memcpy(qs, js, strlen(js));
    for (int64_t i = 0; i < n; i++) {
        uint8_t q = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 15;
        r->deq[i] = code[q] * used[i / bs];
    }
done:
    qd_free(absmax);
    qd_free(used);
    return rc;
}

/* ---- compressed-tensors --------------------------------------------------------------------------------------- */

static int ct_int8(qd_hfq_result *r, const float *w, int64_t rows, int64_t cols)
{
    int8_t *q = add_part(r, "weight", QD_ST_I8, 2, rows, cols);
    float *sc = add_part(r, "weight_scale", QD_ST_F32, 2, rows, 1);
    if (!q || !sc)
        return QD_ENOMEM;
    for (int64_t i = 0; i < rows; i++) {
        const float *x = w + i * cols;
        float m = 0.0f;
        for (int64_t j = 0; j < cols; j++)
            if (fabsf(x[j]) > m)
                m = fabsf(x[j]);
        float s = m / 127.5f; /* max / ((q_max - q_min) / 2) */
        if (s < CT_EPS)
            s = CT_EPS;
        sc[i] = s;
        for (int64_t j = 0; j < cols; j++) {
            float v = nearbyintf(x[j] / s);
            v = v < -128.0f ? -128.0f : v > 127.0f ? 127.0f : v;
            q[i * cols + j] = (int8_t)v;
            r->deq[i * cols + j] = (float)q[i * cols + j] * s;
        }
    }
    return QD_OK;
}

static int ct_fp8(qd_hfq_result *r, const qd_hfq_opts *o, const float *w, int64_t rows, int64_t cols)
{
    qd_fp8_kind k = o->type == QD_HFQ_FP8_E5M2 ? QD_FP8_E5M2 : QD_FP8_E4M3;
    float fmax = qd_fp8_max(k);
    uint8_t *q = add_part(r, "weight", k == QD_FP8_E5M2 ? QD_ST_F8_E5M2 : QD_ST_F8_E4M3, 2, rows, cols);
    float *sc = o->per_tensor ? add_part(r, "weight_scale", QD_ST_F32, 1, 1, 0)
                              : add_part(r, "weight_scale", QD_ST_F32, 2, rows, 1);
    if (!q || !sc)
        return QD_ENOMEM;
    int64_t per = o->per_tensor ? rows * cols : cols, ng = o->per_tensor ? 1 : rows;
    for (int64_t g = 0; g < ng; g++) {
        const float *x = w + g * per;
        float m = 0.0f;
        for (int64_t j = 0; j < per; j++)
            if (fabsf(x[j]) > m)
                m = fabsf(x[j]);
        float s = m / fmax;
        if (s < CT_EPS)
            s = CT_EPS;
        sc[g] = s;
        for (int64_t j = 0; j < per; j++) {
            float v = x[j] / s;
            v = v < -fmax ? -fmax : v > fmax ? fmax : v;
            uint8_t c = qd_fp8_from_f32(k, v, true);
            q[g * per + j] = c;
            r->deq[g * per + j] = qd_fp8_to_f32(k, c) * s;
        }
    }
    return QD_OK;
}

int qd_hfq_pack_int(qd_hfq_result *out, int bits, const int8_t *q, const float *scales, int64_t rows, int64_t cols,
                    int32_t group)
{
    int rc, pf = bits == 8 ? 4 : 8, lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    memset(out, 0, sizeof(*out));
    if (bits != 4 && bits != 8)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "pack-quantized: %d bits (4 or 8)", bits);
    if (rows <= 0 || cols <= 0 || group <= 0 || cols % group || cols % pf)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "int%d: %lld columns are not a multiple of the group size %d and of %d", bits,
                            (long long)cols, (int)group, pf);
    int64_t ng = cols / group, nw = cols / pf;
    out->rows = rows;
    out->cols = cols;
    out->deq = qd_mallocarray((size_t)(rows * cols), sizeof(float));
    uint32_t *pk = add_part(out, "weight_packed", QD_ST_I32, 2, rows, nw);
    float *sc = add_part(out, "weight_scale", QD_ST_F32, 2, rows, ng);
    int64_t *shape = add_part(out, "weight_shape", QD_ST_I64, 1, 2, 0);
    if (!out->deq || !pk || !sc || !shape) {
        rc = QD_ENOMEM;
        goto fail;
    }
    shape[0] = rows;
    shape[1] = cols;
    memcpy(sc, scales, (size_t)(rows * ng) * sizeof(float));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int v = q[i * cols + j];
            if (v < lo || v > hi) {
                rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "int%d: value %d at [%lld, %lld] is outside %d..%d", bits,
                                  v, (long long)i, (long long)j, lo, hi);
                goto fail;
            }
            /* offset by 2^(bits-1), pf per int32 along the input dimension, low bits first */
            pk[i * nw + j / pf] |= (uint32_t)(v - lo) << (bits * (j % pf));
            out->deq[i * cols + j] = (float)v * sc[i * ng + j / group];
        }
    return QD_OK;
fail:
    qd_hfq_result_free(out);
    return rc;
}

/* symmetric integer grid per group (group == cols: per channel), compressed-tensors' scale rule, then packed */
static int ct_packed(qd_hfq_result *r, int bits, int32_t g, const float *w, int64_t rows, int64_t cols)
{
    int8_t *q = NULL;
    float *sc = NULL;
    int rc, pf = bits == 8 ? 4 : 8;
    float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f, half = (qmax - qmin) / 2.0f;
    if (g <= 0 || cols % g || cols % pf)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "int%d: %lld columns are not a multiple of the group size %d (and of %d)", bits,
                            (long long)cols, (int)g, pf);
    q = qd_mallocarray((size_t)(rows * cols), 1);
    sc = qd_mallocarray((size_t)(rows * (cols / g)), sizeof(float));
    if (!q || !sc) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t gi = 0; gi < cols / g; gi++) {
            const float *x = w + i * cols + gi * g;
            float m = 0.0f;
            for (int32_t j = 0; j < g; j++)
                if (fabsf(x[j]) > m)
                    m = fabsf(x[j]);
            float s = m / half; /* max / ((q_max - q_min) / 2): 7.5 for int4, 127.5 for int8 */
            if (s < CT_EPS)
                s = CT_EPS;
            sc[i * (cols / g) + gi] = s;
            for (int32_t j = 0; j < g; j++) {
                float v = nearbyintf(x[j] / s);
                v = v < qmin ? qmin : v > qmax ? qmax : v;
                q[i * cols + gi * g + j] = (int8_t)v;
            }
        }
    qd_free(r->deq);
    r->deq = NULL;
    rc = qd_hfq_pack_int(r, bits, q, sc, rows, cols, g);
done:
    qd_free(q);
    qd_free(sc);
    return rc;
}

int qd_hfq_quantize(qd_hfq_result *out, const qd_hfq_opts *o, const float *w, int64_t rows, int64_t cols)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if (rows <= 0 || cols <= 0 || cols > INT32_MAX || rows > (INT64_C(1) << 40) / cols)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize: bad shape [%lld, %lld]", (long long)rows,
                            (long long)cols);
    if (o->format == QD_HFQ_GPTQ)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "the autogptq layout holds GPTQ results (qd_gptq_pack, "
                            "--method gptq), not round to nearest");
    bool bnb_type = o->type == QD_HFQ_NF4 || o->type == QD_HFQ_FP4;
    if ((o->format == QD_HFQ_BNB) != bnb_type)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "format %s does not hold type %s (bnb: nf4, fp4; "
                            "compressed-tensors: int8, fp8_e4m3, fp8_e5m2, int4)",
                            qd_hfq_format_name(o->format), qd_hfq_type_name(o->type));
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(w[i]))
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize: value %g at [%lld, %lld] is not finite",
                                (double)w[i], (long long)(i / cols), (long long)(i % cols));
    out->rows = rows;
    out->cols = cols;
    out->deq = qd_mallocarray((size_t)(rows * cols), sizeof(float));
    if (!out->deq)
        return QD_ENOMEM;
    switch (o->type) {
    case QD_HFQ_NF4:
    case QD_HFQ_FP4:
        rc = bnb_quantize(out, o, w, rows, cols);
        break;
    case QD_HFQ_INT8:
        rc = o->weight_only ? ct_packed(out, 8, o->group ? o->group : (int32_t)cols, w, rows, cols)
                            : ct_int8(out, w, rows, cols);
        break;
    case QD_HFQ_FP8_E4M3:
    case QD_HFQ_FP8_E5M2:
        rc = ct_fp8(out, o, w, rows, cols);
        break;
    case QD_HFQ_INT4:
        rc = ct_packed(out, 4, o->group ? o->group : 128, w, rows, cols);
        break;
    default:
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "quantize: unknown type %d", (int)o->type);
    }
    if (rc)
        qd_hfq_result_free(out);
    return rc;
}

/* ---- reading back --------------------------------------------------------------------------------------------- */

static const qd_st_entry *part(const qd_st_file *f, const char *prefix, const char *suffix)
{
    char name[512];
    snprintf(name, sizeof(name), "%s%s", prefix, suffix);
    return qd_st_find(f, name);
}

static int bad(const char *prefix, const char *what)
{
    return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: %s", prefix, what);
}

static float rd_f32(const uint8_t *p, int64_t i)
{
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

/* a scale tensor as f32 (F32, or F16/BF16 as other writers store them); NULL on a bad dtype or ENOMEM */
static float *scales_f32(const qd_st_entry *e)
{
    size_t n = e->nbytes / qd_st_dtype_size(e->dtype);
    float *out = qd_mallocarray(n + 1, sizeof(float));
    if (!out)
        return NULL;
    if (e->dtype == QD_ST_F32)
        memcpy(out, e->data, n * 4);
    else if ((e->dtype != QD_ST_F16 && e->dtype != QD_ST_BF16) ||
             qd_dequantize_rows(e->dtype == QD_ST_F16 ? QD_TYPE_F16 : QD_TYPE_BF16, e->data, out, 1, (int64_t)n)) {
        qd_free(out);
        return NULL;
    }
    return out;
}

static int deq_bnb(float *dst, int64_t n, const qd_st_file *f, const char *prefix, const qd_st_entry *qs,
                   bool fp4)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)qs->data, qs->nbytes, JSON_REJECT_DUPLICATES, &jerr);
    int rc = QD_OK;
    const qd_st_entry *w = part(f, prefix, "weight"), *am = part(f, prefix, "weight.absmax"),
                      *qm = part(f, prefix, "weight.quant_map");
    float *absmax = NULL;
    if (!j || !json_is_object(j)) {
        rc = bad(prefix, "bnb quant_state is not a JSON object");
        goto done;
    }
    json_t *qt = json_object_get(j, "quant_type"), *bsj = json_object_get(j, "blocksize");
    if (!json_is_string(qt) || strcmp(json_string_value(qt), fp4 ? "fp4" : "nf4") || !json_is_integer(bsj) ||
        json_integer_value(bsj) <= 0 || json_integer_value(bsj) > (1 << 20)) {
        rc = bad(prefix, "bnb quant_state: quant_type or blocksize wrong");
        goto done;
    }
    int64_t bs = json_integer_value(bsj), nb = (n + bs - 1) / bs;
    if (!w || w->dtype != QD_ST_U8 || w->nbytes != (uint64_t)(n + 1) / 2 || !qm || qm->dtype != QD_ST_F32 ||
        qm->nbytes != 64 || !am || am->rank != 1 || am->shape[0] != nb) {
        rc = bad(prefix, "bnb: weight, weight.quant_map or weight.absmax missing or of the wrong size");
        goto done;
    }
    absmax = qd_mallocarray((size_t)nb, sizeof(float));
    if (!absmax) {
        rc = QD_ENOMEM;
        goto done;
    }
    json_t *off = json_object_get(j, "nested_offset");
    if (off) {
        json_t *nbsj = json_object_get(j, "nested_blocksize");
        const qd_st_entry *na = part(f, prefix, "weight.nested_absmax"),
                          *nm = part(f, prefix, "weight.nested_quant_map");
        if (!json_is_number(off) || !json_is_integer(nbsj) || json_integer_value(nbsj) <= 0 ||
            json_integer_value(nbsj) > (1 << 20) || am->dtype != QD_ST_U8 ||
            !nm || nm->dtype != QD_ST_F32 || nm->nbytes != 1024 || !na || na->dtype != QD_ST_F32) {
            rc = bad(prefix, "bnb: nested quant state incomplete");
            goto done;
        }
        int64_t nbs = json_integer_value(nbsj);
        if (na->nbytes != (uint64_t)((nb + nbs - 1) / nbs) * 4) {
            rc = bad(prefix, "bnb: weight.nested_absmax has the wrong size");
            goto done;
        }
        if (!(fabs(json_number_value(off)) <= FLT_MAX)) {
            rc = bad(prefix, "bnb: nested_offset out of the f32 range");
            goto done;
        }
        float offset = (float)json_number_value(off); /* torch.tensor(float) -> f32 */
        for (int64_t i = 0; i < nb; i++) {
            float d = rd_f32(nm->data, am->data[i]) * rd_f32(na->data, i / nbs);
            absmax[i] = d + offset;
        }
    } else {
        if (am->dtype != QD_ST_F32) {
            rc = bad(prefix, "bnb: weight.absmax is not F32 and there is no nested state");
            goto done;
        }
        for (int64_t i = 0; i < nb; i++)
            absmax[i] = rd_f32(am->data, i);
    }
    for (int64_t i = 0; i < n; i++) {
        uint8_t b = w->data[i / 2], q = i % 2 == 0 ? b >> 4 : b & 15;
        dst[i] = rd_f32(qm->data, q) * absmax[i / bs];
    }
done:
    qd_free(absmax);
    json_decref(j);
    return rc;
}

int qd_hfq_dequantize(float **out, int64_t *rows, int64_t *cols, const qd_st_file *f, const char *prefix)
{
    const qd_st_entry *qs4 = part(f, prefix, "weight.quant_state.bitsandbytes__nf4"),
                      *qsf = part(f, prefix, "weight.quant_state.bitsandbytes__fp4"),
                      *pk = part(f, prefix, "weight_packed"), *w = part(f, prefix, "weight"),
                      *sc = part(f, prefix, "weight_scale");
    float *dst = NULL, *scale = NULL;
    int64_t r = 0, c = 0;
    int rc = QD_OK;

    *out = NULL;
    if (part(f, prefix, "weight_zero_point") || part(f, prefix, "weight_g_idx"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID,
                            "%s: asymmetric (weight_zero_point) or act-order (weight_g_idx) layouts are not read yet",
                            prefix);
    if (qs4 || qsf) {
        const qd_st_entry *qs = qs4 ? qs4 : qsf;
        json_t *j = json_loadb((const char *)qs->data, qs->nbytes, 0, NULL), *shape = json_object_get(j, "shape");
        if (!json_is_array(shape) || json_array_size(shape) != 2 || !json_is_integer(json_array_get(shape, 0)) ||
            !json_is_integer(json_array_get(shape, 1))) {
            json_decref(j);
            return bad(prefix, "bnb quant_state has no 2-D shape");
        }
        r = json_integer_value(json_array_get(shape, 0));
        c = json_integer_value(json_array_get(shape, 1));
        json_decref(j);
        const qd_st_entry *wq = part(f, prefix, "weight");
        if (r <= 0 || c <= 0 || r > (INT64_C(1) << 40) / c)
            return bad(prefix, "bnb quant_state shape out of range");
        if (!wq || wq->dtype != QD_ST_U8 || wq->nbytes != (uint64_t)(r * c + 1) / 2)
            return bad(prefix, "bnb: weight (U8, one byte per two values of the quant_state shape) missing or of the "
                               "wrong size");
        if (!(dst = qd_mallocarray((size_t)(r * c), sizeof(float))))
            return QD_ENOMEM;
        rc = deq_bnb(dst, r * c, f, prefix, qs, qs == qsf);
    } else if (pk) {
        const qd_st_entry *ws = part(f, prefix, "weight_shape");
        int64_t shp[2];
        if (!ws || ws->dtype != QD_ST_I64 || ws->nbytes != 16 || !sc || sc->rank != 2 || pk->dtype != QD_ST_I32 ||
            pk->rank != 2)
            return bad(prefix, "pack-quantized: weight_shape (I64[2]), weight_scale (2-D) or weight_packed "
                               "(I32 2-D) missing or of the wrong type");
        memcpy(shp, ws->data, 16);
        r = shp[0];
        c = shp[1];
        if (r <= 0 || c <= 0 || pk->shape[0] != r || pk->shape[1] <= 0 || c % pk->shape[1] || sc->shape[0] != r ||
            sc->shape[1] <= 0 || c % sc->shape[1])
            return bad(prefix, "pack-quantized: shapes disagree with weight_shape");
        int64_t pf = c / pk->shape[1], bits = 32 / pf, g = c / sc->shape[1];
        if (pf * bits != 32 || (bits != 4 && bits != 8))
            return bad(prefix, "pack-quantized: only 4- and 8-bit packing is read");
        if (!(scale = scales_f32(sc)))
            return bad(prefix, "weight_scale is not F32, F16 or BF16");
        if (!(dst = qd_mallocarray((size_t)(r * c), sizeof(float)))) {
            qd_free(scale);
            return QD_ENOMEM;
        }
        uint32_t mask = (1u << bits) - 1;
        int32_t offs = 1 << (bits - 1);
        for (int64_t i = 0; i < r; i++)
            for (int64_t jx = 0; jx < c; jx++) {
                uint32_t word;
                memcpy(&word, pk->data + 4 * (i * pk->shape[1] + jx / pf), 4);
                int32_t v = (int32_t)((word >> (bits * (jx % pf))) & mask) - offs;
                dst[i * c + jx] = (float)v * scale[i * sc->shape[1] + jx / g];
            }
    } else if (w && (w->dtype == QD_ST_I8 || w->dtype == QD_ST_F8_E4M3 || w->dtype == QD_ST_F8_E5M2)) {
        if (w->rank != 2 || !sc)
            return bad(prefix, "weight is not 2-D or weight_scale is missing");
        r = w->shape[0];
        c = w->shape[1];
        bool per_tensor = sc->nbytes == qd_st_dtype_size(sc->dtype) && !(sc->rank == 2 && r == 1);
        if (!per_tensor && (sc->rank != 2 || sc->shape[0] != r || sc->shape[1] != 1))
            return bad(prefix, "weight_scale is neither [rows, 1] nor one value");
        if (!(scale = scales_f32(sc)))
            return bad(prefix, "weight_scale is not F32, F16 or BF16");
        if (!(dst = qd_mallocarray((size_t)(r * c) + 1, sizeof(float)))) {
            qd_free(scale);
            return QD_ENOMEM;
        }
        for (int64_t i = 0; i < r; i++) {
            float s = scale[per_tensor ? 0 : i];
            for (int64_t jx = 0; jx < c; jx++) {
                uint8_t b = w->data[i * c + jx];
                qd_fp8_kind k = w->dtype == QD_ST_F8_E4M3 ? QD_FP8_E4M3 : QD_FP8_E5M2;
                float v = w->dtype == QD_ST_I8 ? (float)(int8_t)b : qd_fp8_to_f32(k, b);
                dst[i * c + jx] = v * s;
            }
        }
    } else {
        return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "%s: no quantized weight (bnb, pack-quantized, int8 or fp8)",
                            prefix);
    }
    qd_free(scale);
    if (rc) {
        qd_free(dst);
        return rc;
    }
    *out = dst;
    *rows = r;
    *cols = c;
    return QD_OK;
}
