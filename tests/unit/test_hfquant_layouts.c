/*
 * test_hfquant_layouts.c - the safetensors writer and raw reader; every HF layout written, read back through our
 * reader and dequantized bit for bit to the values the quantizer used; per-element error bounds; bnb double
 * quantization; packing orders; the bnb quant-state JSON; whole-model export (names, Q/K row order, config.json,
 * untouched tensors exact); bad input.
 */
#include "testutil.h"

#include <float.h>
#include <math.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/model.h"

/* heavy-tailed weights with a few outlier columns, like tests/tools/gen_ckpt */
static float *weights(tu_rng *r, int64_t rows, int64_t cols)
{
    float *w = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) {
        double s = 0;
        for (int k = 0; k < 6; k++)
            s += (double)(tu_next(r) >> 11) / 9007199254740992.0 - 0.5;
        double t = s * s * s * 4.0 + s; /* heavier tails than a sum of uniforms */
        w[i] = (float)(t / sqrt((double)cols));
        if (i % cols == 5)
            w[i] *= 8.0f;
    }
    return w;
}

static const struct {
    qd_hfq_opts o;
    const char *what;
} layouts[] = {
    {{QD_HFQ_BNB, QD_HFQ_NF4, 0, false, false, "float16", false}, "nf4"},
    {{QD_HFQ_BNB, QD_HFQ_NF4, 0, true, false, "bfloat16", false}, "nf4 double quant"},
    {{QD_HFQ_BNB, QD_HFQ_FP4, 128, false, false, NULL, false}, "fp4 block 128"},
    {{QD_HFQ_BNB, QD_HFQ_FP4, 0, true, false, NULL, false}, "fp4 double quant"},
    {{QD_HFQ_CT, QD_HFQ_INT8, 0, false, false, NULL, false}, "int8"},
    {{QD_HFQ_CT, QD_HFQ_INT8, 0, false, false, NULL, true}, "int8 w8a16 channel"},
    {{QD_HFQ_CT, QD_HFQ_INT8, 64, false, false, NULL, true}, "int8 w8a16 g64"},
    {{QD_HFQ_CT, QD_HFQ_FP8_E4M3, 0, false, false, NULL, false}, "fp8 e4m3 channel"},
    {{QD_HFQ_CT, QD_HFQ_FP8_E4M3, 0, false, true, NULL, false}, "fp8 e4m3 tensor"},
    {{QD_HFQ_CT, QD_HFQ_FP8_E5M2, 0, false, false, NULL, false}, "fp8 e5m2 channel"},
    {{QD_HFQ_CT, QD_HFQ_INT4, 32, false, false, NULL, false}, "int4 g32"},
    {{QD_HFQ_CT, QD_HFQ_INT4, 0, false, false, NULL, false}, "int4 g128"},
};

static int write_result(const char *dir, const char *prefix, const qd_hfq_result *r)
{
    qd_st_writer *w;
    char name[256];
    int rc = qd_st_writer_new(&w);
    for (size_t p = 0; !rc && p < r->n_parts; p++) {
        snprintf(name, sizeof(name), "%s%s", prefix, r->parts[p].suffix);
        rc = qd_st_writer_add(w, name, r->parts[p].dtype, r->parts[p].rank, r->parts[p].shape, r->parts[p].data,
                              r->parts[p].nbytes);
    }
    if (!rc)
        rc = qd_st_writer_meta(w, "format", "pt");
    if (!rc)
        rc = qd_st_writer_write(w, dir, "model", 0, NULL);
    qd_st_writer_free(w);
    return rc;
}

/* the largest error a round-to-nearest element can have, from the layout's own scale */
static double absmax_of(const float *w, int64_t n)
{
    double m = 0;
    for (int64_t k = 0; k < n; k++)
        m = fmax(m, fabs(w[k]));
    return m;
}

/* wmax: the largest |w| of the whole matrix */
static double bound(const qd_hfq_opts *o, const float *w, int64_t rows, int64_t cols, int64_t i, double wmax)
{
    double m = 0;
    switch (o->type) {
    case QD_HFQ_NF4:
    case QD_HFQ_FP4: {
        int64_t bs = o->group ? o->group : 64, b0 = i / bs * bs;
        for (int64_t k = b0; k < b0 + bs && k < rows * cols; k++)
            m = fmax(m, fabs(w[k]));
        /* half the widest gap between neighbouring codes: NF4 (1 - 0.6961928)/2, FP4 (1 - 8/12)/2. Double quant
         * adds the absmax error: half the widest step of the dynamic map (0.9/64/2) times the nested absmax, which
         * is at most the largest |w| of the matrix */
        double g = o->type == QD_HFQ_NF4 ? (1 - 0.6961928009986877) / 2 : (1 - 8.0 / 12) / 2;
        return m * g * 1.000001 + (o->double_quant ? wmax * (0.9 / 128) * 1.01 : 0);
    }
    case QD_HFQ_INT8: {
        int64_t g = o->weight_only && o->group ? o->group : cols, c0 = i / g * g;
        for (int64_t k = c0; k < c0 + g; k++)
            m = fmax(m, fabs(w[k]));
        return m / 127.5 * 0.5 * 1.0001; /* f32 rounding of the scale and of x / scale */
    }
    case QD_HFQ_INT4: {
        int64_t g = o->group ? o->group : 128, c0 = i / g * g;
        for (int64_t k = c0; k < c0 + g; k++)
            m = fmax(m, fabs(w[k]));
        return m / 7.5 * 0.5 * 1.0001;
    }
    default: {
        /* fp8: half an ulp relative (2^-4 E4M3, 2^-3 E5M2) or half the subnormal step, in scaled units */
        int64_t a = o->per_tensor ? 0 : i / cols * cols, b = o->per_tensor ? rows * cols : a + cols;
        for (int64_t k = a; k < b; k++)
            m = fmax(m, fabs(w[k]));
        bool e5 = o->type == QD_HFQ_FP8_E5M2;
        double s = m / (e5 ? 57344.0 : 448.0);
        return fabs(w[i]) * (e5 ? 0.125 : 0.0625) * 1.000001 + s * ldexp(1, e5 ? -17 : -10);
    }
    }
}

static void test_hfquant__each_layout_round_trips_bit_for_bit(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    const int64_t rows = 48, cols = 256;
    float *w = weights(&r, rows, cols);
    char *dir = tu_sandbox();
    for (size_t l = 0; l < sizeof(layouts) / sizeof(layouts[0]); l++) {
        const qd_hfq_opts *o = &layouts[l].o;
        qd_hfq_result res;
        qd_st_file *f = NULL;
        float *back = NULL;
        int64_t br = 0, bc = 0;
        char path[600];
        assert_int_equal(qd_hfq_quantize(&res, o, w, rows, cols), QD_OK);
        assert_int_equal(write_result(dir, "model.layers.0.mlp.up_proj.", &res), QD_OK);
        snprintf(path, sizeof(path), "%s/model.safetensors", dir);
        assert_int_equal(qd_st_open(&f, path), QD_OK);
        assert_string_equal(qd_st_meta(f, "format"), "pt");
        assert_int_equal(qd_st_count(f), res.n_parts);
        assert_int_equal(qd_hfq_dequantize(&back, &br, &bc, f, "model.layers.0.mlp.up_proj."), QD_OK);
        assert_int_equal(br, rows);
        assert_int_equal(bc, cols);
        /* bit for bit: what the loader computes from the file is what the quantizer used */
        if (memcmp(back, res.deq, (size_t)(rows * cols) * sizeof(float)) != 0)
            fail_msg("%s: read-back values differ from the quantizer's", layouts[l].what);
        double se = 0, sw = 0, wmax = absmax_of(w, rows * cols);
        for (int64_t i = 0; i < rows * cols; i++) {
            double e = fabs((double)w[i] - (double)back[i]);
            if (e > bound(o, w, rows, cols, i, wmax))
                fail_msg("%s: element %lld: |%g - %g| over the bound %g", layouts[l].what, (long long)i,
                         (double)w[i], (double)back[i], bound(o, w, rows, cols, i, wmax));
            se += e * e;
            sw += (double)w[i] * w[i];
        }
        printf("  %-18s relative RMS error %.5f\n", layouts[l].what, sqrt(se / sw));
        qd_free(back);
        qd_st_close(f);
        qd_hfq_result_free(&res);
    }
    tu_rmtree(dir);
    free(dir);
    free(w);
}

static void test_hfquant__bnb_state_json_and_packing(void **state)
{
    (void)state;
    /* a block whose first element is -absmax (NF4 index 0) and second +absmax (index 15): first in the high nibble */
    float w[128] = {0};
    w[0] = -2.0f;
    w[1] = 2.0f;
    w[2] = 0.0f;
    w[3] = -2.0f;
    qd_hfq_opts o = {QD_HFQ_BNB, QD_HFQ_NF4, 64, false, false, "float16", false};
    qd_hfq_result r;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 64), QD_OK);
    assert_string_equal(r.parts[0].suffix, "weight");
    assert_int_equal(r.parts[0].dtype, QD_ST_U8);
    assert_int_equal(r.parts[0].shape[0], 64);
    assert_int_equal(r.parts[0].shape[1], 1);
    assert_int_equal(r.parts[0].data[0], 0x0F);
    assert_int_equal(r.parts[0].data[1], 0x70);
    const qd_hfq_part *qs = &r.parts[r.n_parts - 1];
    assert_string_equal(qs->suffix, "weight.quant_state.bitsandbytes__nf4");
    const char *want = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [2, 64]}";
    assert_int_equal(qs->nbytes, strlen(want));
    assert_memory_equal(qs->data, want, strlen(want));
    /* absmax per block (the second block is all zero) */
    const qd_hfq_part *am = &r.parts[2];
    assert_string_equal(am->suffix, "weight.absmax");
    float a0, a1;
    memcpy(&a0, am->data, 4);
    memcpy(&a1, am->data + 4, 4);
    assert_true(a0 == 2.0f && a1 == 0.0f);
    qd_hfq_result_free(&r);

    /* double quant: the JSON carries nested_offset as Python's repr of the f32 mean of the absmax values */
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    float *x = weights(&rng, 64, 640); /* 640 blocks of 64 -> 3 nested blocks of 256 (the last partial) */
    qd_hfq_opts d = {QD_HFQ_BNB, QD_HFQ_NF4, 64, true, false, "bfloat16", false};
    assert_int_equal(qd_hfq_quantize(&r, &d, x, 64, 640), QD_OK);
    qs = &r.parts[r.n_parts - 1];
    json_error_t je;
    json_t *j = json_loadb((const char *)qs->data, qs->nbytes, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "nested_blocksize")), 256);
    assert_string_equal(json_string_value(json_object_get(j, "nested_dtype")), "float32");
    assert_string_equal(json_string_value(json_object_get(j, "dtype")), "bfloat16");
    double off = json_number_value(json_object_get(j, "nested_offset"));
    double sum = 0, maxdev = 0;
    float *am2 = malloc(640 * sizeof(float));
    for (int b = 0; b < 640; b++) {
        float m = 0;
        for (int k = 0; k < 64; k++)
            m = fmaxf(m, fabsf(x[b * 64 + k]));
        am2[b] = m;
        sum += m;
    }
    assert_true((float)off == (float)(sum / 640)); /* the f32 mean, exactly */
    const char *names[] = {"weight", "weight.quant_map", "weight.absmax", "weight.nested_absmax",
                           "weight.nested_quant_map", "weight.quant_state.bitsandbytes__nf4"};
    assert_int_equal(r.n_parts, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(r.parts[i].suffix, names[i]);
    assert_int_equal(r.parts[2].dtype, QD_ST_U8);
    assert_int_equal(r.parts[2].shape[0], 640);
    assert_int_equal(r.parts[3].shape[0], 3);
    assert_int_equal(r.parts[4].shape[0], 256);
    /* the reconstructed absmax stays close: dynamic map step near 1 is under 1% of the nested absmax */
    float nmap[256], nabs[3];
    memcpy(nmap, r.parts[4].data, sizeof(nmap));
    memcpy(nabs, r.parts[3].data, sizeof(nabs));
    for (int b = 0; b < 640; b++) {
        float rec = nmap[r.parts[2].data[b]] * nabs[b / 256] + (float)off;
        /* within half the widest step of the dynamic map (0.9/64 between 0.1 and 1) of the nested absmax */
        double dev = fabs((double)rec - am2[b]) / nabs[b / 256];
        maxdev = fmax(maxdev, dev);
    }
    printf("  double quant: worst absmax error %.5f of the nested absmax\n", maxdev);
    assert_true(maxdev <= 0.9 / 128 * 1.0001);
    free(am2);
    json_decref(j);
    qd_hfq_result_free(&r);
    free(x);
}

static void test_hfquant__ct_packing_and_shapes(void **state)
{
    (void)state;
    /* int4: q = -8..-1 then 0..7 per group of 16 -> words 0x76543210 and 0xFEDCBA98 */
    int8_t q[16];
    float sc[1] = {0.5f};
    for (int i = 0; i < 16; i++)
        q[i] = (int8_t)(i - 8);
    qd_hfq_result r;
    assert_int_equal(qd_hfq_pack_int(&r, 4, q, sc, 1, 16, 16), QD_OK);
    assert_string_equal(r.parts[0].suffix, "weight_packed");
    assert_int_equal(r.parts[0].dtype, QD_ST_I32);
    uint32_t wd[2];
    memcpy(wd, r.parts[0].data, 8);
    assert_int_equal(wd[0], 0x76543210u);
    assert_int_equal(wd[1], 0xFEDCBA98u);
    assert_string_equal(r.parts[2].suffix, "weight_shape");
    assert_int_equal(r.parts[2].dtype, QD_ST_I64);
    assert_true(r.deq[0] == -4.0f && r.deq[15] == 3.5f);
    qd_hfq_result_free(&r);
    q[3] = 8;
    assert_int_equal(qd_hfq_pack_int(&r, 4, q, sc, 1, 16, 16), QD_EINVAL);
    /* int8 packing: offset 128, four per int32, low byte first; per-channel scale stored as [rows, 1] */
    int8_t q8[4] = {-128, -1, 0, 127};
    assert_int_equal(qd_hfq_pack_int(&r, 8, q8, sc, 1, 4, 4), QD_OK);
    memcpy(wd, r.parts[0].data, 4);
    assert_int_equal(wd[0], 0xFF807F00u);
    assert_int_equal(r.parts[1].shape[0], 1);
    assert_int_equal(r.parts[1].shape[1], 1);
    assert_true(r.deq[0] == -64.0f && r.deq[3] == 63.5f);
    qd_hfq_result_free(&r);
    assert_int_equal(qd_hfq_pack_int(&r, 3, q8, sc, 1, 4, 4), QD_EINVAL);

    /* int8: symmetric per channel, scale = absmax / 127.5, ties to even, clamp to 127 */
    float w[4] = {-127.5f, 127.5f, 2.5f, 3.5f}; /* scale exactly 1 */
    qd_hfq_opts o = {QD_HFQ_CT, QD_HFQ_INT8, 0, false, false, NULL, false};
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 1, 4), QD_OK);
    assert_string_equal(r.parts[0].suffix, "weight");
    assert_int_equal(r.parts[0].dtype, QD_ST_I8);
    assert_string_equal(r.parts[1].suffix, "weight_scale");
    assert_int_equal(r.parts[1].shape[0], 1);
    assert_int_equal(r.parts[1].shape[1], 1);
    int8_t *i8 = (int8_t *)r.parts[0].data;
    assert_int_equal(i8[0], -128); /* -127.5 -> -128 (even) */
    assert_int_equal(i8[1], 127);  /* 127.5 -> 128 -> clamped */
    assert_int_equal(i8[2], 2);    /* ties to even */
    assert_int_equal(i8[3], 4);
    qd_hfq_result_free(&r);

    /* fp8 per tensor: one scale of shape [1]; max maps to 448 */
    o.type = QD_HFQ_FP8_E4M3;
    o.per_tensor = true;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 2), QD_OK);
    assert_int_equal(r.parts[0].dtype, QD_ST_F8_E4M3);
    assert_int_equal(r.parts[1].rank, 1);
    assert_int_equal(r.parts[1].shape[0], 1);
    assert_int_equal(r.parts[0].data[1], 0x7E);
    assert_int_equal(r.parts[0].data[0], 0xFE);
    qd_hfq_result_free(&r);
}

static void test_hfquant__safetensors_writer_reader(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), path[600];
    qd_st_writer *w;
    int64_t s1[1] = {3}, s2[2] = {2, 3}, s0[1] = {5};
    uint8_t u8[5] = {1, 2, 3, 4, 5};
    int64_t i64[3] = {-1, 0, 1};
    float f32[6] = {1, 2, 3, 4, 5, 6};
    assert_int_equal(qd_st_writer_new(&w), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "b.u8", QD_ST_U8, 1, s0, u8, 5), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "a.f32", QD_ST_F32, 2, s2, f32, 24), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "c.i64", QD_ST_I64, 1, s1, i64, 24), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "c.i64", QD_ST_I64, 1, s1, i64, 24), QD_EEXISTS);
    assert_int_equal(qd_st_writer_add(w, "d", QD_ST_I64, 1, s1, i64, 23), QD_EINVAL);
    assert_int_equal(qd_st_writer_add(w, "__metadata__", QD_ST_U8, 1, s0, u8, 5), QD_EINVAL);
    assert_int_equal(qd_st_writer_meta(w, "format", "pt"), QD_OK);
    uint64_t bytes = 0;
    assert_int_equal(qd_st_writer_write(w, dir, "model", 0, &bytes), QD_OK);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    FILE *fp = fopen(path, "rb");
    uint64_t hl;
    assert_int_equal(fread(&hl, 8, 1, fp), 1);
    fseek(fp, 0, SEEK_END);
    assert_int_equal((uint64_t)ftell(fp), bytes);
    fclose(fp);
    assert_int_equal(hl % 8, 0); /* header padded so the data section starts 8-aligned */
    qd_st_file *f;
    assert_int_equal(qd_st_open(&f, dir), QD_OK);
    assert_int_equal(qd_st_count(f), 3);
    const qd_st_entry *e = qd_st_find(f, "c.i64");
    assert_non_null(e);
    assert_int_equal(e->dtype, QD_ST_I64);
    assert_memory_equal(e->data, i64, 24);
    assert_int_equal(((uintptr_t)e->data - (uintptr_t)qd_st_find(f, "a.f32")->data) % 8, 0);
    assert_memory_equal(qd_st_find(f, "a.f32")->data, f32, 24);
    assert_int_equal(qd_st_find(f, "a.f32")->shape[1], 3);
    assert_memory_equal(qd_st_find(f, "b.u8")->data, u8, 5);
    assert_string_equal(qd_st_meta(f, "format"), "pt");
    qd_st_close(f);

    /* sharded: with a 30-byte limit the two 24-byte tensors go apart, the 5-byte one joins the second */
    assert_int_equal(qd_st_writer_write(w, dir, "sh", 30, &bytes), QD_OK);
    snprintf(path, sizeof(path), "%s/sh-00002-of-00002.safetensors", dir);
    assert_int_equal(access(path, F_OK), 0);
    qd_st_writer_free(w);
    char sub[700], cmd[4096];
    snprintf(sub, sizeof(sub), "%s/shards", dir);
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && mv '%s'/sh-* '%s'/ && mv '%s/sh.safetensors.index.json' "
             "'%s/model.safetensors.index.json'", sub, dir, sub, dir, sub);
    assert_int_equal(system(cmd), 0);
    /* the index names the shard files as written (sh-...), which we moved unchanged */
    assert_int_equal(qd_st_open(&f, sub), QD_OK);
    assert_int_equal(qd_st_count(f), 3);
    assert_memory_equal(qd_st_find(f, "a.f32")->data, f32, 24);
    qd_st_close(f);

    /* hostile files: truncated, header past the end, overlapping ranges, unknown dtype */
    struct {
        const char *hdr;
        int rc;
    } bad[] = {
        {"{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"y\":{\"dtype\":\"U8\",\"shape\":[4],"
         "\"data_offsets\":[2,6]}}",
         QD_ECORRUPT},
        {"{\"x\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,4]}}", QD_EUNSUPPORTED},
        {"{\"x\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,5]}}", QD_ECORRUPT},
        {"{\"x\":{\"dtype\":\"U8\",\"shape\":[40],\"data_offsets\":[0,40]}}", QD_ECORRUPT},
        {"[1]", QD_ECORRUPT},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(path, sizeof(path), "%s/bad.safetensors", dir);
        fp = fopen(path, "wb");
        uint64_t n = strlen(bad[i].hdr);
        fwrite(&n, 8, 1, fp);
        fwrite(bad[i].hdr, 1, n, fp);
        fwrite("0123456789", 1, 8, fp);
        fclose(fp);
        assert_int_equal(qd_st_open(&f, path), bad[i].rc);
        assert_true(strlen(qd_error_last()->message) > 0);
    }
    fp = fopen(path, "wb");
    uint64_t big = 1000;
    fwrite(&big, 8, 1, fp);
    fwrite("{}", 1, 2, fp);
    fclose(fp);
    assert_int_equal(qd_st_open(&f, path), QD_ETRUNCATED);
    tu_rmtree(dir);
    free(dir);
}

static void test_hfquant__bad_input(void **state)
{
    (void)state;
    float w[256];
    for (int i = 0; i < 256; i++)
        w[i] = (float)i / 256.0f - 0.5f;
    qd_hfq_result r;
    qd_hfq_opts o = {QD_HFQ_CT, QD_HFQ_INT4, 128, false, false, NULL, false};
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 96), QD_EINVAL); /* 96 columns, group 128 */
    assert_non_null(strstr(qd_error_last()->message, "group size 128"));
    o.group = 12;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 36), QD_EINVAL); /* group divides, 8 does not */
    o.group = 0;
    w[77] = NAN;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 128), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "not finite"));
    w[77] = INFINITY;
    o.type = QD_HFQ_FP8_E4M3;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 128), QD_EINVAL);
    w[77] = 0;
    o.type = QD_HFQ_NF4; /* nf4 is not a compressed-tensors type */
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 128), QD_EINVAL);
    assert_non_null(strstr(qd_error_last()->message, "does not hold"));
    o.format = QD_HFQ_BNB;
    o.group = 100; /* not a power of two */
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 128), QD_EINVAL);
    o.group = 0;
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 0, 128), QD_EINVAL);
    /* an odd element count packs into a last half byte, as bitsandbytes does */
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 3, 33), QD_OK);
    assert_int_equal(r.parts[0].shape[0], 50);
    qd_hfq_result_free(&r);
    qd_hfq_type t;
    qd_hfq_format fm;
    assert_int_equal(qd_hfq_type_from_name("int3", &t), QD_EINVAL);
    assert_int_equal(qd_hfq_format_from_name("gptq", &fm), QD_EINVAL);

    /* dequantize: no such module; parts inconsistent */
    char *dir = tu_sandbox(), path[600];
    o = (qd_hfq_opts){QD_HFQ_BNB, QD_HFQ_NF4, 64, true, false, NULL, false};
    assert_int_equal(qd_hfq_quantize(&r, &o, w, 2, 128), QD_OK);
    r.parts[3].shape[0] = 0; /* nested_absmax emptied */
    r.parts[3].nbytes = 0;
    assert_int_equal(write_result(dir, "m.", &r), QD_OK);
    qd_hfq_result_free(&r);
    qd_st_file *f;
    float *out;
    int64_t rr, cc;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    assert_int_equal(qd_st_open(&f, path), QD_OK);
    assert_int_equal(qd_hfq_dequantize(&out, &rr, &cc, f, "x."), QD_ENOTFOUND);
    assert_int_equal(qd_hfq_dequantize(&out, &rr, &cc, f, "m."), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "nested_absmax"));
    qd_st_close(f);
    tu_rmtree(dir);
    free(dir);
}

/* Files as other writers make them: F16/BF16 scales, a scalar per-tensor scale; zero points refused. */
static void test_hfquant__reads_other_writers_scales(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), path[600];
    qd_st_writer *w;
    int8_t q[8] = {-128, -1, 0, 1, 2, 3, 127, -5};
    uint16_t f16[2] = {0x3800, 0x4000};  /* 0.5, 2.0 */
    uint16_t bf16[2] = {0x3F00, 0x4040}; /* 0.5, 3.0 */
    uint32_t packed[2] = {0x76543210u, 0x89ABCDEFu};
    int64_t s24[2] = {2, 4}, s21[2] = {2, 1}, s28[2] = {2, 8}, s1[1] = {2}, s0[1] = {0};
    int64_t shp[2] = {2, 8};
    uint16_t one = 0x4000; /* 2.0 as a 0-d F16 per-tensor scale */
    assert_int_equal(qd_st_writer_new(&w), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "a.weight", QD_ST_I8, 2, s24, q, 8), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "a.weight_scale", QD_ST_F16, 2, s21, f16, 4), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "b.weight_packed", QD_ST_I32, 2, s21, packed, 8), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "b.weight_scale", QD_ST_BF16, 2, s21, bf16, 4), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "b.weight_shape", QD_ST_I64, 1, s1, shp, 16), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "c.weight", QD_ST_I8, 2, s24, q, 8), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "c.weight_scale", QD_ST_F16, 0, s0, &one, 2), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "d.weight", QD_ST_I8, 2, s24, q, 8), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "d.weight_scale", QD_ST_F32, 2, s28, q, 0), QD_EINVAL); /* size */
    assert_int_equal(qd_st_writer_add(w, "d.weight_scale", QD_ST_F16, 2, s21, f16, 4), QD_OK);
    assert_int_equal(qd_st_writer_add(w, "d.weight_zero_point", QD_ST_I8, 2, s21, q, 2), QD_OK);
    assert_int_equal(qd_st_writer_write(w, dir, "model", 0, NULL), QD_OK);
    qd_st_writer_free(w);
    qd_st_file *f;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    assert_int_equal(qd_st_open(&f, path), QD_OK);
    float *out;
    int64_t r, c;
    assert_int_equal(qd_hfq_dequantize(&out, &r, &c, f, "a."), QD_OK);
    assert_true(out[0] == -64.0f && out[3] == 0.5f && out[4] == 4.0f && out[6] == 254.0f && out[7] == -10.0f);
    qd_free(out);
    assert_int_equal(qd_hfq_dequantize(&out, &r, &c, f, "b."), QD_OK);
    assert_int_equal(c, 8);
    assert_true(out[0] == -4.0f && out[7] == -0.5f); /* row 0: nibbles 0..7 (low first) -> -8..-1, times 0.5 */
    assert_true(out[8] == 21.0f && out[15] == 0.0f); /* row 1: 0xF .. 0x8 -> 7 .. 0, times 3 */
    qd_free(out);
    assert_int_equal(qd_hfq_dequantize(&out, &r, &c, f, "c."), QD_OK);
    assert_true(out[0] == -256.0f && out[7] == -10.0f);
    qd_free(out);
    assert_int_equal(qd_hfq_dequantize(&out, &r, &c, f, "d."), QD_EUNSUPPORTED);
    assert_non_null(strstr(qd_error_last()->message, "weight_zero_point"));
    qd_st_close(f);
    tu_rmtree(dir);
    free(dir);
}

/* Mutated files (bytes flipped in the header and the data) are refused or decoded, never a crash (ASan run). */
static void test_hfquant__mutated_files_never_crash(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 11);
    char *dir = tu_sandbox(), path[600];
    float *w = weights(&r, 8, 64);
    static const qd_hfq_opts os[] = {{QD_HFQ_BNB, QD_HFQ_NF4, 64, true, false, NULL, false},
                                     {QD_HFQ_CT, QD_HFQ_INT4, 32, false, false, NULL, false},
                                     {QD_HFQ_CT, QD_HFQ_FP8_E4M3, 0, false, false, NULL, false}};
    int decoded = 0, refused = 0;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    for (size_t k = 0; k < sizeof(os) / sizeof(os[0]); k++) {
        qd_hfq_result res;
        assert_int_equal(qd_hfq_quantize(&res, &os[k], w, 8, 64), QD_OK);
        assert_int_equal(write_result(dir, "p.", &res), QD_OK);
        qd_hfq_result_free(&res);
        FILE *fp = fopen(path, "rb");
        uint8_t orig[8192];
        size_t len = fread(orig, 1, sizeof(orig), fp);
        fclose(fp);
        uint64_t hl;
        memcpy(&hl, orig, 8);
        for (int it = 0; it < 600; it++) {
            uint8_t buf[8192];
            memcpy(buf, orig, len);
            int nflip = 1 + (int)(tu_next(&r) % 3);
            for (int j = 0; j < nflip; j++) {
                uint64_t u = tu_next(&r);
                /* mostly the JSON header (digits, quotes, names), sometimes the data */
                size_t at = (u & 3) ? 8 + (size_t)((u >> 8) % hl) : (size_t)((u >> 8) % len);
                buf[at] = (u & 4) ? (uint8_t)('0' + (u >> 40) % 10) : (uint8_t)(u >> 48);
            }
            fp = fopen(path, "wb");
            fwrite(buf, 1, len - ((tu_next(&r) & 7) == 0 ? 1 + tu_next(&r) % 16 : 0), fp);
            fclose(fp);
            qd_st_file *f;
            if (qd_st_open(&f, path) != QD_OK) {
                refused++;
                continue;
            }
            float *out = NULL;
            int64_t rr, cc;
            int rc = qd_hfq_dequantize(&out, &rr, &cc, f, "p.");
            if (rc == QD_OK) {
                decoded++;
                assert_true(rr > 0 && cc > 0);
                qd_free(out);
            } else {
                refused++;
                assert_true(rc == QD_ECORRUPT || rc == QD_ENOTFOUND || rc == QD_ENOMEM);
            }
            qd_st_close(f);
        }
    }
    printf("  mutated files: %d decoded, %d refused\n", decoded, refused);
    assert_true(refused > 0 && decoded > 0);
    free(w);
    tu_rmtree(dir);
    free(dir);
}

/* ---- whole model ---------------------------------------------------------------------------------------------- */

static int grid_fn(qd_hfq_result *out, const char *hf_name, const float *w, int64_t rows, int64_t cols,
                   const qd_hfq_opts *o, void *payload)
{
    (void)hf_name;
    (void)o;
    ++*(int *)payload;
    int8_t *q = malloc((size_t)(rows * cols));
    float *sc = malloc((size_t)rows * sizeof(float));
    for (int64_t i = 0; i < rows; i++) {
        float m = 0;
        for (int64_t j = 0; j < cols; j++)
            m = fmaxf(m, fabsf(w[i * cols + j]));
        sc[i] = m > 0 ? m / 7.0f : 1.0f;
        for (int64_t j = 0; j < cols; j++)
            q[i * cols + j] = (int8_t)lrintf(w[i * cols + j] / sc[i]);
    }
    int rc = qd_hfq_pack_int(out, 4, q, sc, rows, cols, (int32_t)cols);
    free(q);
    free(sc);
    return rc;
}

static int wrong_fn(qd_hfq_result *out, const char *hf_name, const float *w, int64_t rows, int64_t cols,
                    const qd_hfq_opts *o, void *payload)
{
    (void)hf_name;
    (void)payload;
    return qd_hfq_quantize(out, o, w, rows / 2, cols);
}

static void test_hfquant__export_model(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed() + 3);
    char *dir = tu_sandbox(), src[600], out[600], path[700];
    snprintf(src, sizeof(src), "%s/src", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    assert_int_equal(mkdir(src, 0755), 0);
    /* a 1-layer llama, dim 64, 4 heads / 2 KV heads, ff 128, vocab 32, F32, written with our writer */
    const int64_t D = 64, F = 128, V = 32, KV = 32;
    struct {
        const char *name;
        int64_t r, c;
    } ts[] = {{"model.embed_tokens.weight", V, D}, {"model.norm.weight", 0, D}, {"lm_head.weight", V, D},
              {"model.layers.0.input_layernorm.weight", 0, D},
              {"model.layers.0.post_attention_layernorm.weight", 0, D},
              {"model.layers.0.self_attn.q_proj.weight", D, D}, {"model.layers.0.self_attn.k_proj.weight", KV, D},
              {"model.layers.0.self_attn.v_proj.weight", KV, D}, {"model.layers.0.self_attn.o_proj.weight", D, D},
              {"model.layers.0.mlp.gate_proj.weight", F, D}, {"model.layers.0.mlp.up_proj.weight", F, D},
              {"model.layers.0.mlp.down_proj.weight", D, F}};
    const size_t nt = sizeof(ts) / sizeof(ts[0]);
    float *data[16];
    qd_st_writer *w;
    assert_int_equal(qd_st_writer_new(&w), QD_OK);
    for (size_t i = 0; i < nt; i++) {
        int64_t rows = ts[i].r ? ts[i].r : 1, shape[2] = {ts[i].r, ts[i].c};
        data[i] = weights(&r, rows, ts[i].c);
        if (ts[i].r)
            assert_int_equal(qd_st_writer_add(w, ts[i].name, QD_ST_F32, 2, shape, data[i],
                                              (size_t)(rows * ts[i].c) * 4), QD_OK);
        else
            assert_int_equal(qd_st_writer_add(w, ts[i].name, QD_ST_F32, 1, &shape[1], data[i],
                                              (size_t)ts[i].c * 4), QD_OK);
    }
    assert_int_equal(qd_st_writer_write(w, src, "model", 0, NULL), QD_OK);
    qd_st_writer_free(w);
    snprintf(path, sizeof(path), "%s/config.json", src);
    FILE *fp = fopen(path, "w");
    fprintf(fp, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64, "
                "\"intermediate_size\": 128, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                "\"num_key_value_heads\": 2, \"vocab_size\": 32, \"rms_norm_eps\": 1e-5, "
                "\"max_position_embeddings\": 128, \"torch_dtype\": \"float32\"}\n");
    fclose(fp);

    for (int variant = 0; variant < 2; variant++) {
        qd_hfq_export_opts eo;
        qd_hfq_export_stats st;
        memset(&eo, 0, sizeof(eo));
        eo.q.format = variant ? QD_HFQ_CT : QD_HFQ_BNB;
        eo.q.type = variant ? QD_HFQ_INT8 : QD_HFQ_NF4;
        eo.q.double_quant = true;
        eo.method = "rtn";
        eo.max_shard_bytes = variant ? 20000 : 0; /* the int8 export is sharded */
        assert_int_equal(qd_hfq_export(&st, src, out, &eo), QD_OK);
        assert_int_equal(st.n_tensors, nt);
        assert_int_equal(st.n_quantized, 7);
        qd_st_file *f;
        assert_int_equal(qd_st_open(&f, out), QD_OK);
        assert_string_equal(qd_st_meta(f, "format"), "pt");
        for (size_t i = 0; i < nt; i++) {
            int64_t rows = ts[i].r ? ts[i].r : 1, cols = ts[i].c;
            if (strstr(ts[i].name, "_proj")) {
                char prefix[128];
                float *back;
                int64_t br, bc;
                snprintf(prefix, sizeof(prefix), "%.*s", (int)(strlen(ts[i].name) - 6), ts[i].name);
                assert_int_equal(qd_hfq_dequantize(&back, &br, &bc, f, prefix), QD_OK);
                assert_int_equal(br, rows);
                assert_int_equal(bc, cols);
                /* HF row order kept (q_proj/k_proj went through GGUF order and back): check the error per row */
                qd_hfq_opts o = eo.q;
                double wmax = absmax_of(data[i], rows * cols);
                for (int64_t k = 0; k < rows * cols; k++)
                    if (fabs((double)back[k] - data[i][k]) > bound(&o, data[i], rows, cols, k, wmax))
                        fail_msg("%s: element %lld off by %g", ts[i].name, (long long)k,
                                 fabs((double)back[k] - data[i][k]));
                qd_free(back);
            } else {
                const qd_st_entry *e = qd_st_find(f, ts[i].name);
                assert_non_null(e);
                assert_int_equal(e->dtype, QD_ST_F32);
                assert_memory_equal(e->data, data[i], (size_t)(rows * cols) * 4); /* untouched, exact */
            }
        }
        qd_st_close(f);
        snprintf(path, sizeof(path), "%s/config.json", out);
        json_error_t je;
        json_t *cfg = json_load_file(path, 0, &je), *qc = json_object_get(cfg, "quantization_config");
        assert_non_null(qc);
        assert_int_equal(json_integer_value(json_object_get(cfg, "num_key_value_heads")), 2); /* source kept */
        if (variant) {
            assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "compressed-tensors");
            assert_string_equal(json_string_value(json_object_get(qc, "format")), "int-quantized");
            json_t *g = json_object_get(json_object_get(qc, "config_groups"), "group_0");
            assert_string_equal(json_string_value(json_array_get(json_object_get(g, "targets"), 0)), "Linear");
            assert_string_equal(json_string_value(json_object_get(json_object_get(g, "weights"), "strategy")),
                                "channel");
            assert_string_equal(json_string_value(json_array_get(json_object_get(qc, "ignore"), 0)), "lm_head");
            snprintf(path, sizeof(path), "%s/model.safetensors.index.json", out);
            assert_int_equal(access(path, F_OK), 0);
        } else {
            assert_string_equal(json_string_value(json_object_get(qc, "quant_method")), "bitsandbytes");
            assert_true(json_is_true(json_object_get(qc, "load_in_4bit")));
            assert_true(json_is_true(json_object_get(qc, "bnb_4bit_use_double_quant")));
            assert_string_equal(json_string_value(json_object_get(qc, "bnb_4bit_quant_type")), "nf4");
        }
        json_decref(cfg);
        snprintf(path, sizeof(path), "rm -rf '%s'", out);
        assert_int_equal(system(path), 0);
    }
    /* a method plugged in through layer_fn: its own grid (per-channel int4, scale max/7) in the same layout */
    {
        qd_hfq_export_opts eo;
        qd_hfq_export_stats st;
        int calls = 0;
        memset(&eo, 0, sizeof(eo));
        eo.q.format = QD_HFQ_CT;
        eo.q.type = QD_HFQ_INT4;
        eo.method = "test-grid";
        eo.layer_fn = grid_fn;
        eo.payload = &calls;
        assert_int_equal(qd_hfq_export(&st, src, out, &eo), QD_OK);
        assert_int_equal(calls, 7);
        qd_st_file *f;
        assert_int_equal(qd_st_open(&f, out), QD_OK);
        assert_string_equal(qd_st_meta(f, "quantd.method"), "test-grid");
        float *back;
        int64_t br, bc;
        assert_int_equal(qd_hfq_dequantize(&back, &br, &bc, f, "model.layers.0.mlp.down_proj."), QD_OK);
        qd_hfq_result mine;
        assert_int_equal(grid_fn(&mine, "x", data[11], D, F, &eo.q, &calls), QD_OK);
        assert_memory_equal(back, mine.deq, (size_t)(D * F) * sizeof(float)); /* the method's values, exactly */
        assert_int_equal(qd_st_find(f, "model.layers.0.mlp.down_proj.weight_scale")->shape[1], 1);
        qd_hfq_result_free(&mine);
        qd_free(back);
        qd_st_close(f);
        eo.layer_fn = wrong_fn; /* a result of the wrong shape is refused */
        eo.q.group = 32;
        assert_int_equal(qd_hfq_export(&st, src, out, &eo), QD_EINVAL);
        assert_non_null(strstr(qd_error_last()->message, "test-grid returned"));
    }
    /* a calibrated method is refused clearly until it exists */
    qd_hfq_export_opts eo;
    qd_hfq_export_stats st;
    memset(&eo, 0, sizeof(eo));
    eo.q.format = QD_HFQ_CT;
    eo.q.type = QD_HFQ_INT4;
    eo.method = "gptq";
    assert_int_equal(qd_hfq_export(&st, src, out, &eo), QD_EUNSUPPORTED);
    for (size_t i = 0; i < nt; i++)
        free(data[i]);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hfquant__each_layout_round_trips_bit_for_bit),
        cmocka_unit_test(test_hfquant__bnb_state_json_and_packing),
        cmocka_unit_test(test_hfquant__ct_packing_and_shapes),
        cmocka_unit_test(test_hfquant__safetensors_writer_reader),
        cmocka_unit_test(test_hfquant__bad_input),
        cmocka_unit_test(test_hfquant__reads_other_writers_scales),
        cmocka_unit_test(test_hfquant__mutated_files_never_crash),
        cmocka_unit_test(test_hfquant__export_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
