/*
 * test_model_quantize.c - the quantize pipeline end to end: stories260K to GGUF (data, metadata, placeholder
 * vocabulary), identical bytes for any thread count and chunking, the HF permutation on the copy path, values a
 * type cannot hold, quantized recipes (real kernels or a clear "unsupported"), and imatrix files.
 */
#include "testutil.h"

#include <math.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/pipeline.h"

static char *sandbox;

static int setup(void **state)
{
    (void)state;
    sandbox = tu_sandbox();
    return sandbox ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmtree(sandbox);
    free(sandbox);
    return 0;
}

static const char *sp(const char *name)
{
    static char buf[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", sandbox ? sandbox : ".", name);
    return buf[k];
}

static const char *tools(void)
{
    const char *t = getenv("QD_TOOLS");
    return t && *t ? t : "build/release/tools";
}

static int gen(const char *args, const char *out)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s/gen_ckpt --out %s %s", tools(), out, args);
    return system(cmd);
}

static qd_quantize_opts opts(qd_ftype ft, int threads)
{
    qd_quantize_opts o;
    memset(&o, 0, sizeof(o));
    o.ftype = ft;
    o.threads = threads;
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    return o;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len + 1);
    if (fread(p, 1, *len, f) != *len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_model_quantize__stories_f32_is_the_source(void **state)
{
    (void)state;
    const char *src = tu_shared("models/stories260K.bin");
    qd_quantize_stats st;
    qd_model *a, *b;
    if (!src)
        TU_SKIP("../shared/models/stories260K.bin is absent");
    qd_quantize_opts o = opts(QD_FTYPE_ALL_F32, 2);
    assert_int_equal(qd_quantize_model(&st, src, sp("s.gguf"), &o), QD_OK);
    assert_int_equal(st.n_tensors, 48);
    assert_int_equal(st.n_elements, 292800);
    assert_int_equal(st.tensor_bytes, 292800 * 4);
    assert_int_equal(qd_model_open(&a, src), QD_OK);
    assert_int_equal(qd_model_open(&b, sp("s.gguf")), QD_OK);
    assert_int_equal(qd_model_tensor_count(b), 48);
    for (size_t i = 0; i < 48; i++) {
        const qd_tensor *x = qd_model_tensor_at(a, i), *y = qd_model_tensor_find(b, x->name);
        assert_non_null(y);
        assert_int_equal(y->type, QD_TYPE_F32);
        assert_memory_equal(x->ne, y->ne, sizeof(x->ne));
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    int64_t v;
    assert_int_equal(qd_kv_int(qd_model_kv_find(b, "general.file_type"), &v), QD_OK);
    assert_int_equal(v, 0);
    assert_int_equal(qd_kv_int(qd_model_kv_find(b, "general.quantization_version"), &v), QD_OK);
    assert_int_equal(v, 2);
    assert_non_null(strstr(qd_model_kv_find(b, "general.quantized_by")->str, "quantd"));
    assert_string_equal(qd_model_kv_find(b, "general.base_model.0.name")->str, "stories260K");
    assert_int_equal(qd_kv_int(qd_model_kv_find(b, "llama.context_length"), &v), QD_OK);
    assert_int_equal(v, 512);
    /* the placeholder vocabulary: right size, flagged, specials and a newline byte token */
    const qd_kv *toks = qd_model_kv_find(b, "tokenizer.ggml.tokens"), *ty = qd_model_kv_find(b, "tokenizer.ggml.token_type");
    assert_non_null(toks);
    assert_int_equal(toks->n, 512);
    assert_int_equal(ty->n, 512);
    assert_int_equal(qd_model_kv_find(b, "tokenizer.ggml.scores")->n, 512);
    assert_int_equal(qd_model_kv_find(b, "quantd.placeholder_vocab")->num.u, 1);
    char **s = toks->arr;
    int32_t *types = ty->arr;
    assert_string_equal(s[0], "<unk>");
    assert_string_equal(s[1], "<s>");
    assert_string_equal(s[2], "</s>");
    int nl = -1;
    for (int i = 0; i < 512; i++)
        if (!strcmp(s[i], "<0x0A>"))
            nl = i;
    assert_true(nl > 2);
    assert_int_equal(types[nl], 6);
    assert_int_equal(types[0], 2);
    assert_int_equal(types[1], 3);
    for (int i = 1; i < 512; i++) /* distinct */
        assert_true(strcmp(s[i - 1], s[i]) != 0 || i < 1);
    qd_hparams h;
    assert_int_equal(qd_model_hparams(b, &h), QD_OK);
    assert_true(h.has_tokenizer);
    assert_int_equal(h.n_vocab, 512);
    qd_model_free(a);
    qd_model_free(b);
}

static void test_model_quantize__same_bytes_for_any_thread_count(void **state)
{
    (void)state;
    qd_quantize_stats st;
    size_t l1, l3, l7;
    assert_int_equal(gen("--seed 5 --layers 2 --dim 64 --ff 96 --heads 4 --kv-heads 2", sp("t.gguf")), 0);
    for (int ft = 0; ft < 2; ft++) {
        qd_ftype f = ft ? QD_FTYPE_BF16 : QD_FTYPE_F16;
        qd_quantize_opts o = opts(f, 1);
        assert_int_equal(qd_quantize_model(&st, sp("t.gguf"), sp("t1.gguf"), &o), QD_OK);
        o.threads = 3;
        o.chunk_elems = 1000; /* many chunks, uneven splits */
        assert_int_equal(qd_quantize_model(&st, sp("t.gguf"), sp("t3.gguf"), &o), QD_OK);
        assert_int_equal(st.threads, 3);
        o.threads = 7;
        o.chunk_elems = 64;
        assert_int_equal(qd_quantize_model(&st, sp("t.gguf"), sp("t7.gguf"), &o), QD_OK);
        uint8_t *a = slurp(sp("t1.gguf"), &l1), *b = slurp(sp("t3.gguf"), &l3), *c = slurp(sp("t7.gguf"), &l7);
        assert_non_null(a);
        assert_int_equal(l1, l3);
        assert_int_equal(l1, l7);
        assert_memory_equal(a, b, l1);
        assert_memory_equal(a, c, l1);
        assert_int_equal(l1, st.file_bytes);
        free(a);
        free(b);
        free(c);
    }
}

/* The cancel hook is asked after every chunk: answering yes stops the run with QD_ECANCELED after exactly that
 * many chunks, and leaves neither the output nor its .part file. */
static int cancel_after;
static int cancel_asked;
static bool cancel_cb(void *payload)
{
    (void)payload;
    return ++cancel_asked >= cancel_after;
}

static void test_model_quantize__cancel_hook_stops_the_run(void **state)
{
    (void)state;
    qd_quantize_stats st;
    char part[800];
    assert_int_equal(gen("--seed 6 --layers 2 --dim 64 --ff 96 --heads 4 --kv-heads 2", sp("c.gguf")), 0);
    qd_quantize_opts o = opts(QD_FTYPE_F16, 1);
    o.chunk_elems = 1000;
    o.cancel = cancel_cb;
    cancel_after = 1000000;
    cancel_asked = 0;
    assert_int_equal(qd_quantize_model(&st, sp("c.gguf"), sp("c-all.gguf"), &o), QD_OK);
    assert_true(cancel_asked > 3); /* asked once per chunk */
    cancel_after = 3;
    cancel_asked = 0;
    assert_int_equal(qd_quantize_model(&st, sp("c.gguf"), sp("c-stop.gguf"), &o), QD_ECANCELED);
    assert_int_equal(cancel_asked, 3);
    assert_false(exists(sp("c-stop.gguf")));
    snprintf(part, sizeof(part), "%s.part", sp("c-stop.gguf"));
    assert_false(exists(part));
}

/* F16 safetensors (HF q/k row order) -> F16 GGUF goes through the permuting copy path; it must equal the GGUF
 * written from the same seed. */
static void test_model_quantize__hf_permutation_on_copy_path(void **state)
{
    (void)state;
    qd_quantize_stats st;
    qd_model *a, *b;
    char dir[800];
    snprintf(dir, sizeof(dir), "mkdir -p %s", sp("hf"));
    assert_int_equal(system(dir), 0);
    const char *args = "--seed 9 --dtype f16 --layers 2 --dim 128 --ff 256 --heads 8 --kv-heads 2";
    char full[256];
    snprintf(full, sizeof(full), "%s --format safetensors", args);
    assert_int_equal(gen(full, sp("hf/model.safetensors")), 0);
    assert_int_equal(gen(args, sp("g16.gguf")), 0);
    qd_quantize_opts o = opts(QD_FTYPE_F16, 2);
    assert_int_equal(qd_quantize_model(&st, sp("hf/model.safetensors"), sp("o1.gguf"), &o), QD_OK);
    assert_int_equal(st.n_quantized, 0); /* F16 -> F16: copies */
    assert_int_equal(qd_quantize_model(&st, sp("g16.gguf"), sp("o2.gguf"), &o), QD_OK);
    assert_int_equal(qd_model_open(&a, sp("o1.gguf")), QD_OK);
    assert_int_equal(qd_model_open(&b, sp("o2.gguf")), QD_OK);
    assert_int_equal(qd_model_tensor_count(a), qd_model_tensor_count(b));
    for (size_t i = 0; i < qd_model_tensor_count(a); i++) {
        const qd_tensor *x = qd_model_tensor_at(a, i), *y = qd_model_tensor_at(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->type, y->type);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    qd_model_free(a);
    qd_model_free(b);
}

static void write_tiny_typed(const char *path, float bad, uint32_t align, qd_type emb_type)
{
    qd_gguf_writer *w;
    float emb[32 * 8], norm[32];
    uint16_t emb16[32 * 8];
    for (int i = 0; i < 32 * 8; i++)
        emb[i] = (float)(i % 7) * 0.01f;
    for (int i = 0; i < 32; i++)
        norm[i] = 1.0f;
    emb[77] = bad;
    assert_int_equal(qd_gguf_writer_new(&w, align), QD_OK);
    assert_int_equal(qd_gguf_set_str(w, "general.architecture", "llama"), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.embedding_length", 32), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.block_count", 1), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.attention.head_count", 2), QD_OK);
    int64_t ne[2] = {32, 8};
    assert_int_equal(qd_gguf_add_tensor(w, "token_embd.weight", emb_type, 2, ne), QD_OK);
    assert_int_equal(qd_gguf_add_tensor(w, "output_norm.weight", QD_TYPE_F32, 1, ne), QD_OK);
    assert_int_equal(qd_gguf_writer_begin(w, path), QD_OK);
    if (emb_type == QD_TYPE_F16) { /* (F16 holds NaN and Inf: converted, not refused) */
        assert_int_equal(qd_quantize_rows(QD_TYPE_F16, emb, emb16, 8, 32, NULL), QD_OK);
        assert_int_equal(qd_gguf_writer_write(w, emb16, sizeof(emb16)), QD_OK);
    } else {
        assert_int_equal(qd_gguf_writer_write(w, emb, sizeof(emb)), QD_OK);
    }
    assert_int_equal(qd_gguf_writer_write(w, norm, sizeof(norm)), QD_OK);
    assert_int_equal(qd_gguf_writer_finish(w), QD_OK);
    qd_gguf_writer_free(w);
}

static void write_tiny_aligned(const char *path, float bad, uint32_t align)
{
    write_tiny_typed(path, bad, align, QD_TYPE_F32);
}

static void write_tiny(const char *path, float bad) { write_tiny_aligned(path, bad, 0); }

static void test_model_quantize__keeps_source_alignment_and_metadata_order(void **state)
{
    (void)state;
    qd_quantize_stats st;
    qd_model *a, *b;
    write_tiny_aligned(sp("a64.gguf"), 0.5f, 64);
    qd_quantize_opts o = opts(QD_FTYPE_F16, 1);
    assert_int_equal(qd_quantize_model(&st, sp("a64.gguf"), sp("a64-16.gguf"), &o), QD_OK);
    assert_int_equal(qd_model_open(&a, sp("a64.gguf")), QD_OK);
    assert_int_equal(qd_model_open(&b, sp("a64-16.gguf")), QD_OK);
    assert_int_equal(qd_model_alignment(b), 64);
    assert_int_equal(qd_model_data_offset(b) % 64, 0);
    /* the source's pairs come first, in their order, as llama-quantize copies them */
    for (size_t i = 0; i < qd_model_kv_count(a); i++)
        assert_string_equal(qd_model_kv_at(a, i)->key, qd_model_kv_at(b, i)->key);
    int64_t v;
    assert_int_equal(qd_kv_int(qd_model_kv_find(b, "general.file_type"), &v), QD_OK);
    assert_int_equal(v, 1);
    qd_model_free(a);
    qd_model_free(b);
}

static void test_model_quantize__values_a_type_cannot_hold(void **state)
{
    (void)state;
    qd_quantize_stats st;
    qd_quantize_opts o = opts(QD_FTYPE_F16, 2);
    const float bads[] = {NAN, INFINITY, -INFINITY, 70000.0f};
    for (size_t i = 0; i < 4; i++) {
        write_tiny(sp("bad.gguf"), bads[i]);
        assert_int_equal(qd_quantize_model(&st, sp("bad.gguf"), sp("bad16.gguf"), &o), QD_EINVAL);
        const char *msg = qd_error_last()->message;
        assert_non_null(strstr(msg, "token_embd.weight"));
        assert_non_null(strstr(msg, "row 2 col 13"));
        assert_non_null(strstr(msg, "f16"));
        assert_false(exists(sp("bad16.gguf")));
        assert_false(exists(sp("bad16.gguf.part")));
    }
    /* F32 holds all of them; BF16 holds 70000 */
    qd_quantize_opts o32 = opts(QD_FTYPE_ALL_F32, 1);
    assert_int_equal(qd_quantize_model(&st, sp("bad.gguf"), sp("ok32.gguf"), &o32), QD_OK);
    qd_quantize_opts ob = opts(QD_FTYPE_BF16, 1);
    assert_int_equal(qd_quantize_model(&st, sp("bad.gguf"), sp("okbf.gguf"), &ob), QD_OK);
    write_tiny(sp("bad.gguf"), NAN);
    assert_int_equal(qd_quantize_model(&st, sp("bad.gguf"), sp("nanbf.gguf"), &ob), QD_EINVAL);
    /* an F16 source (its conversion measures the magnitudes on the way, qd_dequantize_rows_bound): a NaN or an
     * infinity is refused by every block type, under every kernel variant, and the largest finite half is not */
    qd_quantize_opts o8 = opts(QD_FTYPE_Q8_0, 2);
    const float bads16[] = {NAN, INFINITY, -INFINITY, 65504.0f};
    for (int v = 0; v < 3; v++) {
        if (!qd_kernels_usable((qd_kernel_variant)v))
            continue;
        setenv("QD_KERNELS", qd_kernels_name((qd_kernel_variant)v), 1);
        assert_int_equal(qd_kernels_select(), QD_OK);
        for (size_t i = 0; i < 4; i++) {
            write_tiny_typed(sp("bad16src.gguf"), bads16[i], 0, QD_TYPE_F16);
            const int rc = qd_quantize_model(&st, sp("bad16src.gguf"), sp("bad8.gguf"), &o8);
            if (i == 3) {
                assert_int_equal(rc, QD_OK);
                continue;
            }
            assert_int_equal(rc, QD_EINVAL);
            const char *msg = qd_error_last()->message;
            assert_non_null(strstr(msg, "token_embd.weight"));
            assert_non_null(strstr(msg, "row 2 column 13"));
            assert_non_null(strstr(msg, i ? "is Inf" : "is NaN"));
            assert_false(exists(sp("bad8.gguf.part")));
        }
    }
    unsetenv("QD_KERNELS");
    assert_int_equal(qd_kernels_select(), QD_OK);
}

static void test_model_quantize__small_placeholder_vocab(void **state)
{
    (void)state;
    qd_gguf_writer *w;
    qd_model *m;
    uint8_t *p;
    size_t len;
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    assert_int_equal(qd_write_placeholder_vocab(w, 3), QD_EINVAL);
    assert_int_equal(qd_write_placeholder_vocab(w, 8), QD_OK);
    assert_int_equal(qd_gguf_writer_to_mem(w, NULL, &p, &len), QD_OK);
    qd_gguf_writer_free(w);
    assert_int_equal(qd_model_open_mem(&m, p, len, QD_MODEL_GGUF), QD_OK);
    const qd_kv *t = qd_model_kv_find(m, "tokenizer.ggml.tokens");
    assert_int_equal(t->n, 8);
    const char *want[4] = {"<unk>", "<s>", "</s>", "<0x0A>"};
    for (int i = 0; i < 4; i++)
        assert_string_equal(((char **)t->arr)[i], want[i]);
    assert_int_equal(((int32_t *)qd_model_kv_find(m, "tokenizer.ggml.token_type")->arr)[3], 6);
    /* 260 tokens and more: all 256 byte tokens, newline at 3 + 10 */
    qd_model_free(m);
    qd_free(p);
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    assert_int_equal(qd_write_placeholder_vocab(w, 40000), QD_OK);
    assert_int_equal(qd_gguf_writer_to_mem(w, NULL, &p, &len), QD_OK);
    qd_gguf_writer_free(w);
    assert_int_equal(qd_model_open_mem(&m, p, len, QD_MODEL_GGUF), QD_OK);
    t = qd_model_kv_find(m, "tokenizer.ggml.tokens");
    assert_string_equal(((char **)t->arr)[13], "<0x0A>");
    assert_string_equal(((char **)t->arr)[258], "<0xFF>");
    assert_string_equal(((char **)t->arr)[39999], "<qd39999>");
    qd_model_free(m);
    qd_free(p);
}

static void test_model_quantize__requantize_needs_permission(void **state)
{
    (void)state;
    qd_gguf_writer *w;
    qd_quantize_stats st;
    uint8_t q[34 * 8];
    memset(q, 0, sizeof(q));
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    assert_int_equal(qd_gguf_set_str(w, "general.architecture", "llama"), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.embedding_length", 32), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.block_count", 1), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "llama.attention.head_count", 2), QD_OK);
    int64_t ne[2] = {32, 8};
    assert_int_equal(qd_gguf_add_tensor(w, "token_embd.weight", QD_TYPE_Q8_0, 2, ne), QD_OK);
    assert_int_equal(qd_gguf_writer_begin(w, sp("q8.gguf")), QD_OK);
    assert_int_equal(qd_gguf_writer_write(w, q, sizeof(q)), QD_OK);
    assert_int_equal(qd_gguf_writer_finish(w), QD_OK);
    qd_gguf_writer_free(w);
    qd_quantize_opts o = opts(QD_FTYPE_F16, 1);
    assert_int_equal(qd_quantize_model(&st, sp("q8.gguf"), sp("q8-16.gguf"), &o), QD_EUNSUPPORTED);
    assert_non_null(strstr(qd_error_last()->message, "already q8_0"));
    assert_false(exists(sp("q8-16.gguf")));
    /* a recipe that keeps the type copies it without requantizing */
    qd_quantize_opts o8 = opts(QD_FTYPE_Q8_0, 1);
    int rc = qd_quantize_model(&st, sp("q8.gguf"), sp("q8-8.gguf"), &o8);
    assert_int_equal(rc, QD_OK);
    assert_int_equal(st.n_quantized, 0);
}

static void test_model_quantize__quantized_recipes_follow_the_plan(void **state)
{
    (void)state;
    const char *src = tu_shared("models/stories260K.bin");
    qd_quantize_stats st;
    if (!src)
        TU_SKIP("../shared/models/stories260K.bin is absent");
    const qd_ftype fts[] = {QD_FTYPE_Q8_0, QD_FTYPE_Q4_K_M, QD_FTYPE_Q6_K};
    for (size_t k = 0; k < 3; k++) {
        qd_quantize_opts o = opts(fts[k], 2);
        qd_model *in, *out;
        qd_hparams h;
        int rc = qd_quantize_model(&st, src, sp("q.gguf"), &o);
        if (rc == QD_EUNSUPPORTED) { /* kernels not in this build: a clear error, no file */
            assert_non_null(strstr(qd_error_last()->message, "tensor "));
            assert_false(exists(sp("q.gguf")));
            assert_false(exists(sp("q.gguf.part")));
            continue;
        }
        assert_int_equal(rc, QD_OK);
        assert_int_equal(qd_model_open(&in, src), QD_OK);
        assert_int_equal(qd_model_open(&out, sp("q.gguf")), QD_OK);
        assert_int_equal(qd_model_hparams(in, &h), QD_OK);
        size_t n = qd_model_tensor_count(in);
        qd_recipe_tensor *ts = calloc(n, sizeof(*ts));
        qd_recipe_choice *c = calloc(n, sizeof(*c));
        for (size_t i = 0; i < n; i++) {
            const qd_tensor *t = qd_model_tensor_at(in, i);
            ts[i] = (qd_recipe_tensor){t->name, t->n_dims, {t->ne[0], t->ne[1], t->ne[2], t->ne[3]}, t->type};
        }
        assert_int_equal(qd_recipe_plan(c, NULL, &h, fts[k], NULL, ts, n), QD_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(qd_model_tensor_find(out, ts[i].name)->type, c[i].type);
        free(ts);
        free(c);
        qd_model_free(in);
        qd_model_free(out);
    }
}

static void test_model_quantize__imatrix_legacy_file(void **state)
{
    (void)state;
    FILE *f = fopen(sp("im.dat"), "wb");
    int32_t n = 2, len, ncall, nval;
    const char *names[2] = {"blk.0.ffn_down.weight", "blk.0.attn_q.weight"};
    fwrite(&n, 4, 1, f);
    for (int e = 0; e < 2; e++) {
        len = (int32_t)strlen(names[e]);
        ncall = e == 0 ? 4 : 0;
        nval = 3;
        float v[3] = {4.0f, 8.0f, 2.0f};
        fwrite(&len, 4, 1, f);
        fwrite(names[e], 1, (size_t)len, f);
        fwrite(&ncall, 4, 1, f);
        fwrite(&nval, 4, 1, f);
        fwrite(v, 4, 3, f);
    }
    fclose(f);
    qd_imatrix *im;
    int64_t cnt;
    assert_int_equal(qd_imatrix_load(&im, sp("im.dat")), QD_OK);
    assert_int_equal(qd_imatrix_count(im), 2);
    const float *v = qd_imatrix_find(im, "blk.0.ffn_down.weight", &cnt);
    assert_non_null(v);
    assert_int_equal(cnt, 3);
    assert_true(v[0] == 1.0f && v[1] == 2.0f && v[2] == 0.5f); /* divided by ncall */
    v = qd_imatrix_find(im, "blk.0.attn_q.weight", &cnt);
    assert_true(v[1] == 8.0f);
    assert_null(qd_imatrix_find(im, "nope", &cnt));
    qd_imatrix_free(im);
    /* truncated */
    size_t l;
    uint8_t *p = slurp(sp("im.dat"), &l);
    f = fopen(sp("im2.dat"), "wb");
    fwrite(p, 1, l - 5, f);
    fclose(f);
    free(p);
    assert_int_not_equal(qd_imatrix_load(&im, sp("im2.dat")), QD_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_quantize__stories_f32_is_the_source),
        cmocka_unit_test(test_model_quantize__same_bytes_for_any_thread_count),
        cmocka_unit_test(test_model_quantize__cancel_hook_stops_the_run),
        cmocka_unit_test(test_model_quantize__hf_permutation_on_copy_path),
        cmocka_unit_test(test_model_quantize__keeps_source_alignment_and_metadata_order),
        cmocka_unit_test(test_model_quantize__values_a_type_cannot_hold),
        cmocka_unit_test(test_model_quantize__small_placeholder_vocab),
        cmocka_unit_test(test_model_quantize__requantize_needs_permission),
        cmocka_unit_test(test_model_quantize__quantized_recipes_follow_the_plan),
        cmocka_unit_test(test_model_quantize__imatrix_legacy_file),
    };
    tu_seed();
    return cmocka_run_group_tests(tests, setup, teardown);
}
