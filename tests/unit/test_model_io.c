/*
 * test_model_io.c - safetensors (single, sharded, hostile headers), llama2.c (stories260K, bad headers), name
 * mapping HF <-> GGUF <-> llama2.c and the Q/K row permutation, sniffing.
 */
#include "testutil.h"

#include <math.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"

/* ---- safetensors built in memory ------------------------------------------------------------------------------- */

static uint8_t *st_build(const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t hl = strlen(header);
    uint64_t n = hl;
    uint8_t *p = malloc(8 + hl + dlen + 1);
    memcpy(p, &n, 8);
    memcpy(p + 8, header, hl);
    if (dlen)
        memcpy(p + 8 + hl, data, dlen);
    *len = 8 + hl + dlen;
    return p;
}

static int st_open(const char *header, const void *data, size_t dlen)
{
    size_t len;
    uint8_t *p = st_build(header, data, dlen, &len);
    qd_model *m = NULL;
    int rc = qd_model_open_mem(&m, p, len, QD_MODEL_SAFETENSORS);
    qd_model_free(m);
    free(p);
    return rc;
}

static void test_model_io__safetensors_names_shapes_data(void **state)
{
    (void)state;
    float d[6 * 4 + 4];
    for (int i = 0; i < 28; i++)
        d[i] = (float)i;
    const char *h = "{\"model.layers.0.mlp.down_proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,6],"
                    "\"data_offsets\":[0,96]},\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[4],"
                    "\"data_offsets\":[96,112]},\"__metadata__\":{\"format\":\"pt\"}}";
    size_t len;
    uint8_t *p = st_build(h, d, sizeof(d), &len);
    qd_model *m;
    assert_int_equal(qd_model_open_mem(&m, p, len, QD_MODEL_UNKNOWN), QD_OK);
    assert_int_equal(qd_model_format_of(m), QD_MODEL_SAFETENSORS);
    const qd_tensor *t = qd_model_tensor_find(m, "blk.0.ffn_down.weight");
    assert_non_null(t);
    assert_string_equal(t->src_name, "model.layers.0.mlp.down_proj.weight");
    assert_int_equal(t->ne[0], 6);
    assert_int_equal(t->ne[1], 4);
    float row[6];
    assert_int_equal(qd_tensor_read_f32(t, 2, 1, row), QD_OK);
    assert_true(row[0] == 12.0f && row[5] == 17.0f);
    assert_int_equal(qd_tensor_read_f32(t, 3, 2, row), QD_EINVAL);
    assert_non_null(qd_model_tensor_find(m, "output_norm.weight"));
    assert_string_equal(qd_model_kv_find(m, "safetensors.format")->str, "pt");
    qd_model_free(m);
    free(p);
}

static void test_model_io__safetensors_hostile_headers(void **state)
{
    (void)state;
    uint8_t d[64] = {0};
    struct {
        const char *h;
        int rc;
        const char *needle;
    } cases[] = {
        {"[1,2]", QD_ECORRUPT, "not a JSON object"},
        {"{\"a\":", QD_ECORRUPT, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", QD_EUNSUPPORTED, "dtype I64"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", QD_ECORRUPT, "the shape needs"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[60,76]}}", QD_ETRUNCATED, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,0]}}", QD_ECORRUPT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", QD_ECORRUPT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}", QD_ECORRUPT,
         "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,4],\"data_offsets\":[0,16]}}", QD_EUNSUPPORTED,
         "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
         QD_ECORRUPT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
         QD_ECORRUPT, "JSON"},
        {"{\"a\":{\"shape\":[4],\"data_offsets\":[0,16]}}", QD_ECORRUPT, "needs dtype"},
        {"{\"__metadata__\":{\"k\":5}}", QD_ECORRUPT, "not a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = st_open(cases[i].h, d, sizeof(d));
        if (rc != cases[i].rc || !strstr(qd_error_last()->message, cases[i].needle))
            fail_msg("case %zu: rc %d want %d, message '%s' want '%s'", i, rc, cases[i].rc,
                     qd_error_last()->message, cases[i].needle);
    }
    /* header length past the end of the file, and absurd */
    uint8_t small[16];
    uint64_t n = 1000;
    memcpy(small, &n, 8);
    memcpy(small + 8, "{}      ", 8);
    qd_model *m = NULL;
    assert_int_equal(qd_model_open_mem(&m, small, sizeof(small), QD_MODEL_SAFETENSORS), QD_ETRUNCATED);
    assert_int_equal(qd_model_open_mem(&m, small, 5, QD_MODEL_SAFETENSORS), QD_ETRUNCATED);
    /* data at an odd offset is read correctly (safetensors does not promise alignment) */
    float f[5] = {0, 1, 2, 3, 4};
    assert_int_equal(st_open("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[1,17]}}", f, 20), QD_OK);
    uint8_t raw[1 + 2 * 1500];
    raw[0] = 0xee;
    for (int i = 0; i < 1500; i++) { /* f16 of i % 7 */
        static const uint16_t h[7] = {0x0000, 0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
        memcpy(raw + 1 + 2 * i, &h[i % 7], 2);
    }
    size_t len;
    /* header of even length, so the data section starts at an even address and the tensor at offset 1 is odd */
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "{\"model.norm.weight\":{\"dtype\":\"F16\",\"shape\":[1500],\"data_offsets\":[1,3001]}}");
    if (strlen(hdr) % 2)
        strcat(hdr, " ");
    uint8_t *p = st_build(hdr, raw, sizeof(raw), &len);
    qd_model *mm;
    assert_int_equal(qd_model_open_mem(&mm, p, len, QD_MODEL_SAFETENSORS), QD_OK);
    const qd_tensor *t = qd_model_tensor_find(mm, "output_norm.weight");
    assert_true(((uintptr_t)t->data & 1) == 1);
    float out[1500];
    assert_int_equal(qd_tensor_read_f32(t, 0, 1, out), QD_OK);
    for (int i = 0; i < 1500; i++)
        assert_true(out[i] == (float)(i % 7));
    qd_model_free(mm);
    free(p);
}

static const char *tools(void)
{
    const char *t = getenv("QD_TOOLS");
    return t && *t ? t : "build/release/tools";
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Same seed, three files: a GGUF, a single safetensors (HF row order for q/k) and a 3-shard safetensors. Every
 * tensor must read back identical in GGUF row order. */
static void test_model_io__safetensors_sharded_and_permuted_match_gguf(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), a[600], b[600], c[600];
    qd_model *mg, *ms, *mh;
    snprintf(a, sizeof(a), "%s/g.gguf", dir);
    snprintf(b, sizeof(b), "%s/one/model.safetensors", dir);
    snprintf(c, sizeof(c), "%s/sharded", dir);
    assert_int_equal(run("mkdir -p %s/one", dir), 0);
    assert_int_equal(run("%s/gen_ckpt --out %s --seed 11 --layers 2 --heads 4 --kv-heads 2", tools(), a), 0);
    assert_int_equal(
        run("%s/gen_ckpt --out %s --format safetensors --seed 11 --layers 2 --heads 4 --kv-heads 2", tools(), b),
        0);
    assert_int_equal(run("%s/gen_ckpt --out %s --format safetensors --seed 11 --layers 2 --heads 4 --kv-heads 2 "
                         "--shards 3",
                         tools(), c),
                     0);
    assert_int_equal(qd_model_open(&mg, a), QD_OK);
    assert_int_equal(qd_model_open(&ms, b), QD_OK);
    assert_int_equal(qd_model_open(&mh, c), QD_OK);
    assert_int_equal(qd_model_tensor_count(mg), 21);
    assert_int_equal(qd_model_tensor_count(ms), 21);
    assert_int_equal(qd_model_tensor_count(mh), 21);
    qd_hparams hs;
    assert_int_equal(qd_model_hparams(mh, &hs), QD_OK);
    assert_int_equal(hs.n_head, 4);
    assert_int_equal(hs.n_head_kv, 2);
    assert_int_equal(hs.n_ff, 172);
    int permuted = 0;
    for (size_t i = 0; i < 21; i++) {
        const qd_tensor *tg = qd_model_tensor_at(mg, i);
        const qd_tensor *ts = qd_model_tensor_find(ms, tg->name), *th = qd_model_tensor_find(mh, tg->name);
        assert_non_null(ts);
        assert_non_null(th);
        assert_string_equal(qd_model_tensor_at(ms, i)->name, tg->name); /* same canonical order */
        int64_t nel = qd_tensor_nelements(tg);
        float *x = malloc((size_t)nel * 4), *y = malloc((size_t)nel * 4), *z = malloc((size_t)nel * 4);
        int64_t rows = nel / tg->ne[0];
        assert_int_equal(qd_tensor_read_f32(tg, 0, rows, x), QD_OK);
        assert_int_equal(qd_tensor_read_f32(ts, 0, rows, y), QD_OK);
        assert_int_equal(qd_tensor_read_f32(th, 0, rows, z), QD_OK);
        assert_memory_equal(x, y, (size_t)nel * 4);
        assert_memory_equal(x, z, (size_t)nel * 4);
        if (ts->permute_heads > 0) {
            permuted++;
            /* the raw file rows really are in another order */
            assert_memory_not_equal(ts->data, x, (size_t)nel * 4);
        }
        free(x);
        free(y);
        free(z);
    }
    assert_int_equal(permuted, 4); /* attn_q and attn_k of 2 layers */
    qd_model_free(mg);
    qd_model_free(ms);
    qd_model_free(mh);
    /* a shard missing from disk, and an index naming a tensor its shard lacks */
    assert_int_equal(run("rm %s/sharded/model-00002-of-00003.safetensors", dir), 0);
    assert_int_equal(qd_model_open(&mh, c), QD_ENOTFOUND);
    tu_rmtree(dir);
    free(dir);
}

/* qd_tensor_read_f32_staged (pread into a staging buffer, the quantize pipeline's way) gives the same floats as the
 * mapping, a few rows at a time, for F16, BF16 and F32 GGUF, single and sharded safetensors (with the HF q/k rows,
 * which fall back to the mapping); a stage too small for the rows falls back too. */
static void test_model_io__staged_reads_match_the_mapping(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), path[5][600];
    static const char *const gen[5] = {"--dtype f16", "--dtype bf16", "--dtype f32",
                                       "--format safetensors --dtype bf16", "--format safetensors --shards 2 --dtype f16"};
    static const char *const name[5] = {"h.gguf", "b.gguf", "f.gguf", "one.safetensors", "sharded"};
    for (int k = 0; k < 5; k++) {
        qd_model *m;
        int readable = 0, small_stage = 0;
        snprintf(path[k], sizeof(path[k]), "%s/%s", dir, name[k]);
        assert_int_equal(run("%s/gen_ckpt --out %s %s --seed 5 --layers 1 --heads 4 --kv-heads 2", tools(), path[k],
                             gen[k]),
                         0);
        assert_int_equal(qd_model_open(&m, path[k]), QD_OK);
        for (size_t i = 0; i < qd_model_tensor_count(m); i++) {
            const qd_tensor *t = qd_model_tensor_at(m, i);
            int64_t nel = qd_tensor_nelements(t), nc = t->ne[0], rows = nel / nc;
            size_t rs = qd_row_size(t->type, nc), cap = 3 * rs;
            float *x = malloc((size_t)nel * 4), *y = malloc((size_t)nel * 4);
            uint8_t *stage = malloc(cap);
            assert_int_equal(qd_tensor_read_f32(t, 0, rows, x), QD_OK);
            memset(y, 0xAB, (size_t)nel * 4);
            for (int64_t r = 0; r < rows; r += 3) {
                int64_t n = rows - r < 3 ? rows - r : 3;
                assert_int_equal(qd_tensor_read_f32_staged(t, r, n, y + r * nc, stage, cap, NULL), QD_OK);
            }
            assert_memory_equal(x, y, (size_t)nel * 4);
            /* a stage of one row for four rows: the mapping answers, same floats (y is scrambled first, so a
             * read that wrote nothing would fail) */
            if (rows >= 4) {
                memset(y, 0xAB, (size_t)(4 * nc) * 4);
                assert_int_equal(qd_tensor_read_f32_staged(t, 0, 4, y, stage, rs, NULL), QD_OK);
                assert_memory_equal(x, y, (size_t)(4 * nc) * 4);
                small_stage++;
            }
            readable += t->file_readable;
            assert_int_equal(qd_tensor_read_f32_staged(t, rows, 1, y, stage, cap, NULL), QD_EINVAL); /* out of range */
            free(x);
            free(y);
            free(stage);
        }
        assert_int_equal(readable, (int)qd_model_tensor_count(m)); /* every tensor can be read with pread */
        assert_true(small_stage > 0);
        qd_model_free(m);
    }
    tu_rmtree(dir);
    free(dir);
}

/* ---- llama2.c ----------------------------------------------------------------------------------------------- */

static void test_model_io__llama2c_stories260k(void **state)
{
    (void)state;
    const char *path = tu_shared("models/stories260K.bin");
    qd_model *m;
    qd_hparams h;
    if (!path)
        TU_SKIP("../shared/models/stories260K.bin is absent");
    assert_int_equal(qd_model_open(&m, path), QD_OK);
    assert_int_equal(qd_model_format_of(m), QD_MODEL_LLAMA2C);
    assert_int_equal(qd_model_tensor_count(m), 48);
    assert_int_equal(qd_model_hparams(m, &h), QD_OK);
    assert_int_equal(h.n_embd, 64);
    assert_int_equal(h.n_ff, 172);
    assert_int_equal(h.n_layer, 5);
    assert_int_equal(h.n_head, 8);
    assert_int_equal(h.n_head_kv, 4);
    assert_int_equal(h.n_vocab, 512);
    assert_int_equal(h.n_ctx, 512);
    assert_false(h.has_tokenizer);
    assert_true(h.tied_output);
    /* offsets from the layout in models/README.md, checked against the file bytes */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t file[1056540];
    assert_int_equal(fread(file, 1, sizeof(file), f), sizeof(file));
    fclose(f);
    const qd_tensor *emb = qd_model_tensor_find(m, "token_embd.weight");
    const qd_tensor *w2 = qd_model_tensor_find(m, "blk.4.ffn_down.weight");
    const qd_tensor *wk = qd_model_tensor_find(m, "blk.1.attn_k.weight");
    const qd_tensor *fin = qd_model_tensor_find(m, "output_norm.weight");
    const qd_tensor *out = qd_model_tensor_find(m, "output.weight");
    assert_int_equal(emb->offset, 28);
    assert_int_equal(w2->ne[0], 172);
    assert_int_equal(w2->ne[1], 64);
    size_t L = 5, dim = 64, kv = 32, hid = 172, voc = 512;
    size_t o_wk = 28 + 4 * (voc * dim + L * dim + L * dim * dim);
    assert_int_equal(wk->offset, o_wk + 4 * kv * dim);
    size_t o_w2 = o_wk + 4 * (2 * L * kv * dim + L * dim * dim + L * dim + L * hid * dim);
    assert_int_equal(w2->offset, o_w2 + 4 * 4 * dim * hid);
    assert_int_equal(fin->offset + 4 * dim + 4 * 512 * 8, sizeof(file)); /* then the two RoPE tables */
    assert_memory_equal(w2->data, file + w2->offset, w2->nbytes);
    assert_ptr_equal(out->data, emb->data); /* shared classifier */
    float x[64];
    assert_int_equal(qd_tensor_read_f32(fin, 0, 1, x), QD_OK);
    assert_memory_equal(x, file + fin->offset, 256);
    for (int i = 0; i < 64; i++)
        assert_true(isfinite(x[i]) && x[i] > 0);
    qd_model_free(m);

    /* one float short, one float long, and a nonsense header */
    qd_model *bad = NULL;
    assert_int_equal(qd_model_open_mem(&bad, file, sizeof(file) - 4, QD_MODEL_LLAMA2C), QD_ETRUNCATED);
    uint8_t *longer = malloc(sizeof(file) + 4);
    memcpy(longer, file, sizeof(file));
    assert_int_equal(qd_model_open_mem(&bad, longer, sizeof(file) + 4, QD_MODEL_UNKNOWN), QD_ECORRUPT);
    int32_t zero = 0;
    memcpy(longer, &zero, 4);
    assert_int_equal(qd_model_open_mem(&bad, longer, sizeof(file), QD_MODEL_UNKNOWN), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "llama2.c"));
    int32_t huge = 0x7fffffff;
    memcpy(longer, file, 28);
    memcpy(longer + 4 * 5, &huge, 4); /* vocab */
    assert_int_equal(qd_model_open_mem(&bad, longer, sizeof(file), QD_MODEL_UNKNOWN), QD_ECORRUPT);
    free(longer);
}

/* ---- names ------------------------------------------------------------------------------------------------- */

static void test_model_io__name_mapping_three_ways(void **state)
{
    (void)state;
    static const char *const triples[][3] = {
        {"token_embd.weight", "model.embed_tokens.weight", "tok_embeddings.weight"},
        {"output_norm.weight", "model.norm.weight", "norm.weight"},
        {"output.weight", "lm_head.weight", "output.weight"},
        {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight", "layers.0.attention_norm.weight"},
        {"blk.12.attn_q.weight", "model.layers.12.self_attn.q_proj.weight", "layers.12.attention.wq.weight"},
        {"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight", "layers.3.attention.wk.weight"},
        {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight", "layers.3.attention.wv.weight"},
        {"blk.31.attn_output.weight", "model.layers.31.self_attn.o_proj.weight", "layers.31.attention.wo.weight"},
        {"blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight", "layers.1.ffn_norm.weight"},
        {"blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight", "layers.1.feed_forward.w1.weight"},
        {"blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight", "layers.1.feed_forward.w2.weight"},
        {"blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight", "layers.1.feed_forward.w3.weight"},
    };
    char out[128];
    qd_name_permute p;
    for (size_t i = 0; i < sizeof(triples) / sizeof(triples[0]); i++) {
        for (int from = 0; from < 3; from++) {
            for (int to = 0; to < 3; to++) {
                assert_int_equal(qd_name_map(out, sizeof(out), &p, triples[i][from], (qd_name_scheme)from,
                                             (qd_name_scheme)to),
                                 QD_OK);
                assert_string_equal(out, triples[i][to]);
                int crosses_hf = (from == QD_NAMES_HF) != (to == QD_NAMES_HF);
                qd_name_permute want = QD_PERMUTE_NONE;
                if (crosses_hf && strstr(triples[i][0], "attn_q"))
                    want = QD_PERMUTE_Q;
                if (crosses_hf && strstr(triples[i][0], "attn_k"))
                    want = QD_PERMUTE_K;
                assert_int_equal(p, want);
            }
        }
    }
    assert_int_equal(qd_name_map(out, sizeof(out), &p, "model.layers.0.self_attn.rotary_emb.inv_freq",
                                 QD_NAMES_HF, QD_NAMES_GGUF),
                     QD_ENOTFOUND);
    assert_int_equal(qd_name_map(out, sizeof(out), &p, "blk.x.attn_q.weight", QD_NAMES_GGUF, QD_NAMES_HF),
                     QD_ENOTFOUND);
    assert_int_equal(qd_name_map(out, 8, &p, "blk.1.attn_q.weight", QD_NAMES_GGUF, QD_NAMES_HF), QD_EINVAL);
}

static void test_model_io__qk_permutation(void **state)
{
    (void)state;
    /* one head of 8 rows: GGUF row 2i+j is HF row j*4+i */
    const int64_t want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    for (int64_t r = 0; r < 8; r++)
        assert_int_equal(qd_permute_src_row(r, 8, 1), want[r]);
    /* two heads of 4 rows: per-head */
    const int64_t want2[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int64_t r = 0; r < 8; r++)
        assert_int_equal(qd_permute_src_row(r, 8, 2), want2[r]);
    /* a bijection, and dst is its inverse, for several shapes */
    const int64_t shapes[][2] = {{64, 8}, {32, 4}, {4096, 32}, {1024, 8}, {6, 3}};
    for (size_t s = 0; s < 5; s++) {
        int64_t rows = shapes[s][0], nh = shapes[s][1];
        char *seen = calloc((size_t)rows, 1);
        for (int64_t r = 0; r < rows; r++) {
            int64_t src = qd_permute_src_row(r, rows, nh);
            assert_true(src >= 0 && src < rows);
            assert_false(seen[src]);
            seen[src] = 1;
            assert_int_equal(qd_permute_dst_row(src, rows, nh), r);
            assert_int_equal(src / (rows / nh), r / (rows / nh)); /* stays in its head */
        }
        free(seen);
    }
    assert_int_equal(qd_permute_src_row(0, 10, 3), -1); /* 10 rows cannot be 3 heads of pairs */
}

static void test_model_io__sniff_and_open_errors(void **state)
{
    (void)state;
    qd_model *m = NULL;
    assert_int_equal(qd_model_open(&m, "/nonexistent/model.gguf"), QD_ENOTFOUND);
    uint8_t junk[10] = {1, 2, 3};
    assert_int_not_equal(qd_model_open_mem(&m, junk, sizeof(junk), QD_MODEL_UNKNOWN), QD_OK);
    assert_null(m);
    char *dir = tu_sandbox(), p[600];
    snprintf(p, sizeof(p), "%s/empty.gguf", dir ? dir : ".");
    FILE *f = fopen(p, "wb");
    fclose(f);
    assert_int_not_equal(qd_model_open(&m, p), QD_OK);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_io__safetensors_names_shapes_data),
        cmocka_unit_test(test_model_io__safetensors_hostile_headers),
        cmocka_unit_test(test_model_io__safetensors_sharded_and_permuted_match_gguf),
        cmocka_unit_test(test_model_io__staged_reads_match_the_mapping),
        cmocka_unit_test(test_model_io__llama2c_stories260k),
        cmocka_unit_test(test_model_io__name_mapping_three_ways),
        cmocka_unit_test(test_model_io__qk_permutation),
        cmocka_unit_test(test_model_io__sniff_and_open_errors),
    };
    tu_seed();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
