/*
 * gptq_layout.c - the AutoGPTQ checkpoint layout ("gptq" format v1, as AutoGPTQ's QuantLinear.pack writes it and
 * Transformers/optimum, vLLM and GPTQModel load it):
 *   qweight int32 [in * bits / 32, out]: for each output column, the input rows' levels as one little-endian bit
 *           stream over consecutive words (level of input row i at bit bits*i; 3-bit levels straddle words);
 *   qzeros  int32 [n_groups, out * bits / 32]: the zero points minus 1 (the v1 quirk), packed the same way along
 *           the output dimension;
 *   scales  f16 [n_groups, out];  g_idx int32 [in]: the group of each input row.
 * Dequantized: w[o][i] = scales[g][o] * (q[i][o] - (qzeros[g][o] + 1)) with g = g_idx[i].
 */
#include <stdio.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/hfquant.h"
#include "qd/quant.h"

static void put_bits(uint32_t *words, int64_t k, int bits, uint32_t v)
{
    int64_t bit = k * bits;
    int64_t w = bit / 32;
    int sh = (int)(bit % 32);
    words[w] |= v << sh;
    if (sh + bits > 32)
        words[w + 1] |= v >> (32 - sh);
}

static uint32_t get_bits(const uint32_t *words, int64_t k, int bits)
{
    int64_t bit = k * bits;
    int64_t w = bit / 32;
    int sh = (int)(bit % 32);
    uint64_t v = words[w] >> sh;
    if (sh + bits > 32)
        v |= (uint64_t)words[w + 1] << (32 - sh);
    return (uint32_t)(v & ((1u << bits) - 1));
}

static qd_hfq_part *add_part(qd_hfq_result *r, const char *suffix, qd_st_dtype dt, int64_t d0, int64_t d1)
{
    qd_hfq_part *p = &r->parts[r->n_parts];
    snprintf(p->suffix, sizeof(p->suffix), "%s", suffix);
    p->dtype = dt;
    p->rank = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->nbytes = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) * qd_st_dtype_size(dt);
    p->data = qd_calloc(p->nbytes ? p->nbytes : 1, 1);
    if (!p->data)
        return NULL;
    r->n_parts++;
    return p;
}

int qd_gptq_pack(qd_hfq_result *out, const qd_gptq_matrix *m, int bits, const int64_t *row_map)
{
    memset(out, 0, sizeof(*out));
    int64_t in = m->cols, outf = m->rows, ng = m->n_groups;
    if (m->blocks)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "autogptq: a GGUF-grid result has no integer zero points");
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "autogptq: %d bits (2, 3, 4, 8)", bits);
    if ((in * bits) % 32 || (outf * bits) % 32)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "autogptq: %lld inputs x %lld outputs do not pack into "
                            "32-bit words at %d bits", (long long)in, (long long)outf, bits);
    qd_hfq_part *qw = add_part(out, "qweight", QD_ST_I32, in * bits / 32, outf);
    qd_hfq_part *qz = qw ? add_part(out, "qzeros", QD_ST_I32, ng, outf * bits / 32) : NULL;
    qd_hfq_part *sc = qz ? add_part(out, "scales", QD_ST_F16, ng, outf) : NULL;
    qd_hfq_part *gi = sc ? add_part(out, "g_idx", QD_ST_I32, in, 0) : NULL;
    out->deq = gi ? qd_mallocarray((size_t)(in * outf), sizeof(float)) : NULL;
    uint32_t *col = gi ? qd_calloc((size_t)(in * bits / 32), sizeof(uint32_t)) : NULL;
    if (!col) {
        qd_hfq_result_free(out);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "autogptq: out of memory");
    }
    out->rows = outf;
    out->cols = in;
    int64_t words = in * bits / 32, zwords = outf * bits / 32;
    uint32_t *qwd = (uint32_t *)qw->data, *qzd = (uint32_t *)qz->data;
    uint32_t *zrow = qd_calloc((size_t)zwords, sizeof(uint32_t));
    if (!zrow) {
        qd_free(col);
        qd_hfq_result_free(out);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "autogptq: out of memory");
    }
    uint32_t mask = (1u << bits) - 1;
    for (int64_t o = 0; o < outf; o++) {
        int64_t r = row_map ? row_map[o] : o;
        memset(col, 0, sizeof(uint32_t) * (size_t)words);
        for (int64_t i = 0; i < in; i++)
            put_bits(col, i, bits, m->q[r * in + i] & mask);
        for (int64_t w = 0; w < words; w++)
            qwd[w * outf + o] = col[w];
        for (int64_t i = 0; i < in; i++)
            out->deq[o * in + i] = m->deq[r * in + i];
    }
    uint16_t *scd = (uint16_t *)sc->data;
    for (int64_t g = 0; g < ng; g++) {
        memset(zrow, 0, sizeof(uint32_t) * (size_t)zwords);
        for (int64_t o = 0; o < outf; o++) {
            int64_t r = row_map ? row_map[o] : o;
            float s = m->scale[r * ng + g];
            int z = (int)m->zero[r * ng + g];
            put_bits(zrow, o, bits, (uint32_t)(z - 1) & mask);
            qd_quantize_rows(QD_TYPE_F16, &s, &scd[g * outf + o], 1, 1, NULL);
        }
        memcpy(qzd + g * zwords, zrow, sizeof(uint32_t) * (size_t)zwords);
    }
    memcpy(gi->data, m->g_idx, sizeof(int32_t) * (size_t)in);
    qd_free(zrow);
    qd_free(col);
    return QD_OK;
}

int qd_gptq_unpack(float **out, int64_t *rows, int64_t *cols, const qd_st_file *f, const char *prefix, int bits)
{
    char name[320];
    const qd_st_entry *e[4];
    static const char *const suf[4] = {"qweight", "qzeros", "scales", "g_idx"};
    *out = NULL;
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof(name), "%s%s", prefix, suf[k]);
        e[k] = qd_st_find(f, name);
        if (!e[k])
            return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "autogptq: no %s", name);
    }
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "autogptq: %d bits", bits);
    const qd_st_entry *qw = e[0], *qz = e[1], *sc = e[2], *gi = e[3];
    if (qw->dtype != QD_ST_I32 || qz->dtype != QD_ST_I32 || sc->dtype != QD_ST_F16 || gi->dtype != QD_ST_I32 ||
        qw->rank != 2 || qz->rank != 2 || sc->rank != 2 || gi->rank != 1)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "autogptq %s: unexpected dtypes or ranks", prefix);
    int64_t outf = qw->shape[1], in = qw->shape[0] * 32 / bits, ng = sc->shape[0];
    if (gi->shape[0] != in || sc->shape[1] != outf || qz->shape[0] != ng || qz->shape[1] * 32 != outf * bits ||
        (qw->shape[0] * 32) % bits)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "autogptq %s: shapes do not agree", prefix);
    const int32_t *g_idx = (const int32_t *)gi->data;
    for (int64_t i = 0; i < in; i++)
        if (g_idx[i] < 0 || g_idx[i] >= ng)
            return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "autogptq %s: g_idx[%lld] = %d outside 0..%lld", prefix,
                                (long long)i, g_idx[i], (long long)ng - 1);
    float *w = qd_mallocarray((size_t)(in * outf) + 1, sizeof(float));
    uint32_t *words = qd_mallocarray((size_t)qw->shape[0] + 1, sizeof(uint32_t));
    uint32_t *zw = qd_mallocarray((size_t)qz->shape[1] + 1, sizeof(uint32_t));
    float *s = qd_mallocarray((size_t)(ng * outf) + 1, sizeof(float));
    int32_t *z = qd_mallocarray((size_t)(ng * outf) + 1, sizeof(int32_t));
    if (!w || !words || !zw || !s || !z) {
        qd_free(w);
        qd_free(words);
        qd_free(zw);
        qd_free(s);
        qd_free(z);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "autogptq: out of memory");
    }
    qd_dequantize_rows(QD_TYPE_F16, sc->data, s, 1, ng * outf);
    uint32_t mask = (1u << bits) - 1;
    for (int64_t g = 0; g < ng; g++) {
        memcpy(zw, qz->data + (size_t)(g * qz->shape[1]) * 4, (size_t)qz->shape[1] * 4);
        for (int64_t o = 0; o < outf; o++)
            z[g * outf + o] = (int32_t)((get_bits(zw, o, bits) + 1) & mask);
    }
    const uint32_t *qwd = (const uint32_t *)qw->data;
    for (int64_t o = 0; o < outf; o++) {
        for (int64_t k = 0; k < qw->shape[0]; k++)
            memcpy(&words[k], &qwd[k * outf + o], 4);
        for (int64_t i = 0; i < in; i++) {
            int64_t g = g_idx[i];
            int q = (int)get_bits(words, i, bits);
            w[o * in + i] = (float)(q - z[g * outf + o]) * s[g * outf + o];
        }
    }
    qd_free(words);
    qd_free(zw);
    qd_free(s);
    qd_free(z);
    *out = w;
    *rows = outf;
    *cols = in;
    return QD_OK;
}
