/*
 * test_tokenizer.c - Hugging Face tokenizers to GGUF tokenizer keys (quantd/io/tokenizer*.c): handmade
 * tokenizer.json files (byte-level BPE, SentencePiece-style BPE, Unigram) and a handmade tokenizer.model, written
 * through a real qd_gguf_writer and read back with our GGUF reader; malformed files give clear errors (every
 * truncation of a valid file included); the quantize pipeline picks the tokenizer of a safetensors folder.
 */
#include "testutil.h"

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/tokenizer.h"

static char *sandbox;
static int dir_no;

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

/* A fresh model folder in the sandbox. */
static const char *new_dir(void)
{
    static char buf[700];
    snprintf(buf, sizeof(buf), "%s/m%d", sandbox, ++dir_no);
    assert_int_equal(mkdir(buf, 0755), 0);
    return buf;
}

static void put(const char *dir, const char *name, const void *data, size_t len)
{
    char path[800];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void puts_(const char *dir, const char *name, const char *text) { put(dir, name, text, strlen(text)); }

/* The GGUF bytes the current model was opened from (qd_model_open_mem borrows them). */
static uint8_t *cur_mem;

/* Convert dir's tokenizer for n_vocab rows and read the result back as a GGUF model. */
static int convert(qd_model **out, qd_tokenizer_info *info, const char *dir, int64_t n_vocab)
{
    qd_gguf_writer *w = NULL;
    size_t len = 0;
    *out = NULL;
    assert_null(cur_mem);
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    int rc = qd_tokenizer_from_hf(info, w, dir, n_vocab);
    if (rc == QD_OK) {
        assert_int_equal(qd_gguf_writer_to_mem(w, NULL, &cur_mem, &len), QD_OK);
        assert_int_equal(qd_model_open_mem(out, cur_mem, len, QD_MODEL_GGUF), QD_OK);
    }
    qd_gguf_writer_free(w);
    return rc;
}

static void release(qd_model *m)
{
    qd_model_free(m);
    qd_free(cur_mem);
    cur_mem = NULL;
}

static const char *kv_str(const qd_model *m, const char *key)
{
    const qd_kv *kv = qd_model_kv_find(m, key);
    if (!kv || kv->type != QD_GGUF_STRING)
        return NULL;
    return kv->str;
}

static int64_t kv_int(const qd_model *m, const char *key)
{
    const qd_kv *kv = qd_model_kv_find(m, key);
    int64_t v = -1;
    if (!kv || qd_kv_int(kv, &v))
        return -1;
    return v;
}

static const char *tok(const qd_model *m, uint64_t i)
{
    const qd_kv *kv = qd_model_kv_find(m, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->arr_type, QD_GGUF_STRING);
    assert_true(i < kv->n);
    return ((char **)kv->arr)[i];
}

static int32_t ttype(const qd_model *m, uint64_t i)
{
    const qd_kv *kv = qd_model_kv_find(m, "tokenizer.ggml.token_type");
    int32_t v;
    assert_non_null(kv);
    assert_int_equal(kv->arr_type, QD_GGUF_I32);
    assert_true(i < kv->n);
    memcpy(&v, (const uint8_t *)kv->arr + 4 * i, 4);
    return v;
}

static float score(const qd_model *m, uint64_t i)
{
    const qd_kv *kv = qd_model_kv_find(m, "tokenizer.ggml.scores");
    float v;
    assert_non_null(kv);
    assert_int_equal(kv->arr_type, QD_GGUF_F32);
    assert_true(i < kv->n);
    memcpy(&v, (const uint8_t *)kv->arr + 4 * i, 4);
    return v;
}

static uint64_t arr_n(const qd_model *m, const char *key)
{
    const qd_kv *kv = qd_model_kv_find(m, key);
    return kv && kv->type == QD_GGUF_ARRAY ? kv->n : 0;
}

#define LLAMA3_RE                                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|" \
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* A byte-level BPE tokenizer.json in the Llama-3 layout. %s: the merges array. */
static char *bpe_json(const char *merges, const char *pre)
{
    static char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"version\": \"1.0\",\n"
             " \"added_tokens\": [\n"
             "  {\"id\": 7, \"content\": \"<|bos|>\", \"special\": true, \"normalized\": false},\n"
             "  {\"id\": 8, \"content\": \"<|eot|>\", \"special\": false, \"normalized\": false},\n"
             "  {\"id\": 9, \"content\": \"\xe2\x96\x81hi\", \"special\": false, \"normalized\": true}],\n"
             " \"normalizer\": null,\n"
             " \"pre_tokenizer\": %s,\n"
             " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": "
             "\"<|bos|>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]},\n"
             " \"decoder\": {\"type\": \"ByteLevel\"},\n"
             " \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"byte_fallback\": false,\n"
             "  \"vocab\": {\"a\": 0, \"b\": 1, \"\xc4\xa0\": 2, \"\xc4\x8a\": 3, \"ab\": 4, \"\xc4\xa0" "a\": 5, "
             "\"\xc4\xa0" "ab\": 6},\n"
             "  \"merges\": %s}}\n",
             pre, merges);
    return buf;
}

static const char *llama3_pre = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                                "{\"Regex\": \"" LLAMA3_RE "\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
                                "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}";

static void test_tokenizer__bpe_byte_level(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    qd_tokenizer_info info;
    puts_(d, "tokenizer.json", bpe_json("[\"a b\", \"\xc4\xa0 a\", \"\xc4\xa0" "a b\"]", llama3_pre));
    puts_(d, "tokenizer_config.json",
          "{\"bos_token\": \"<|bos|>\", \"eos_token\": {\"content\": \"<|eot|>\"}, \"chat_template\": "
          "\"{% for m in messages %}{{ m.content }}{% endfor %}\"}");
    assert_int_equal(convert(&m, &info, d, 12), QD_OK);
    assert_string_equal(info.source, "tokenizer.json");
    assert_string_equal(kv_str(m, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "llama-bpe");
    assert_true(info.pre_known);
    assert_int_equal(arr_n(m, "tokenizer.ggml.tokens"), 12);
    assert_int_equal(arr_n(m, "tokenizer.ggml.token_type"), 12);
    assert_null(qd_model_kv_find(m, "tokenizer.ggml.scores")); /* gpt2: no scores, like the converter */
    assert_string_equal(tok(m, 0), "a");
    assert_string_equal(tok(m, 3), "\xc4\x8a");
    assert_string_equal(tok(m, 6), "\xc4\xa0" "ab");
    for (int i = 0; i <= 6; i++)
        assert_int_equal(ttype(m, i), QD_TOKEN_NORMAL);
    assert_string_equal(tok(m, 7), "<|bos|>");
    assert_int_equal(ttype(m, 7), QD_TOKEN_CONTROL);      /* special: true */
    assert_string_equal(tok(m, 8), "<|eot|>");
    assert_int_equal(ttype(m, 8), QD_TOKEN_CONTROL);      /* not special but <|...|> looks special */
    assert_string_equal(tok(m, 9), " hi");                /* user-defined: U+2581 pre-normalised to ' ' */
    assert_int_equal(ttype(m, 9), QD_TOKEN_USER_DEFINED);
    assert_string_equal(tok(m, 10), "[PAD10]");
    assert_int_equal(ttype(m, 10), QD_TOKEN_UNUSED);
    assert_string_equal(tok(m, 11), "[PAD11]");
    assert_int_equal(info.n_padded, 2);
    assert_int_equal(arr_n(m, "tokenizer.ggml.merges"), 3);
    const qd_kv *mg = qd_model_kv_find(m, "tokenizer.ggml.merges");
    assert_string_equal(((char **)mg->arr)[1], "\xc4\xa0 a");
    assert_int_equal(kv_int(m, "tokenizer.ggml.bos_token_id"), 7);
    assert_int_equal(kv_int(m, "tokenizer.ggml.eos_token_id"), 8);
    assert_null(qd_model_kv_find(m, "tokenizer.ggml.unknown_token_id"));
    assert_int_equal(kv_int(m, "tokenizer.ggml.add_bos_token"), 1); /* from the TemplateProcessing */
    assert_string_equal(kv_str(m, "tokenizer.chat_template"), "{% for m in messages %}{{ m.content }}{% endfor %}");
    assert_true(info.chat_template);
    release(m);
}

static void test_tokenizer__merges_as_pairs(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    /* transformers >= 4.45 writes [a, b]; gguf-py joins with a space and writes spaces inside parts as U+0120 */
    char js[8192];
    snprintf(js, sizeof(js), "%s", bpe_json("[[\"a\", \"b\"], [\"\xc4\xa0\", \"a\"]]", llama3_pre));
    puts_(d, "tokenizer.json", js);
    assert_int_equal(convert(&m, NULL, d, 10), QD_OK);
    const qd_kv *mg = qd_model_kv_find(m, "tokenizer.ggml.merges");
    assert_non_null(mg);
    assert_int_equal(mg->n, 2);
    assert_string_equal(((char **)mg->arr)[0], "a b");
    release(m);

    /* a part holding a space */
    d = new_dir();
    const char *sp =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \" b\": 1, \"a b\": 2, \"\xc4\x8a\": 3}, \"merges\": "
        "[[\"a\", \" b\"]]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}";
    puts_(d, "tokenizer.json", sp);
    assert_int_equal(convert(&m, NULL, d, 4), QD_OK);
    mg = qd_model_kv_find(m, "tokenizer.ggml.merges");
    assert_string_equal(((char **)mg->arr)[0], "a \xc4\xa0" "b");
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "gpt-2"); /* ByteLevel with its own regex */
    release(m);
}

static void test_tokenizer__unknown_pre_tokenizer_is_default(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    qd_tokenizer_info info;
    puts_(d, "tokenizer.json",
          bpe_json("[\"a b\"]", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", "
                                "\"individual_digits\": true}, {\"type\": \"ByteLevel\", \"use_regex\": true}]}"));
    assert_int_equal(convert(&m, &info, d, 10), QD_OK);
    assert_false(info.pre_known);
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "default");
    release(m);
}

/* Llama-2 as exported by transformers: BPE with byte_fallback, Sequence decoder. */
static const char *spm_bpe_json =
    "{\"added_tokens\": [\n"
    "  {\"id\": 0, \"content\": \"<unk>\", \"special\": true},\n"
    "  {\"id\": 1, \"content\": \"<s>\", \"special\": true},\n"
    "  {\"id\": 2, \"content\": \"</s>\", \"special\": true},\n"
    "  {\"id\": 8, \"content\": \"<extra>\", \"special\": false}],\n"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"},"
    " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]},\n"
    " \"pre_tokenizer\": null,\n"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
    " {\"Sequence\": {\"id\": \"A\"}}]},\n"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\",\n"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x0A>\": 3, \"<0x41>\": 4, \"\xe2\x96\x81\": 5, "
    "\"\xe2\x96\x81" "a\": 6, \"a\": 7},\n"
    "  \"merges\": [\"\xe2\x96\x81 a\"]}}\n";

static void test_tokenizer__spm_style_bpe(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    qd_tokenizer_info info;
    puts_(d, "tokenizer.json", spm_bpe_json);
    puts_(d, "tokenizer_config.json",
          "{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": {\"content\": \"<s>\"}, "
          "\"eos_token\": \"</s>\", \"unk_token\": \"<unk>\", \"pad_token\": null}");
    assert_int_equal(convert(&m, &info, d, 10), QD_OK);
    assert_string_equal(kv_str(m, "tokenizer.ggml.model"), "llama");
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "default");
    assert_int_equal(arr_n(m, "tokenizer.ggml.tokens"), 10);
    assert_int_equal(arr_n(m, "tokenizer.ggml.scores"), 10);
    assert_null(qd_model_kv_find(m, "tokenizer.ggml.merges"));
    int32_t want[10] = {QD_TOKEN_CONTROL, QD_TOKEN_CONTROL, QD_TOKEN_CONTROL, QD_TOKEN_BYTE, QD_TOKEN_BYTE,
                        QD_TOKEN_NORMAL,  QD_TOKEN_NORMAL,  QD_TOKEN_NORMAL,  QD_TOKEN_USER_DEFINED, QD_TOKEN_UNUSED};
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ttype(m, i), want[i]);
        assert_true(score(m, i) == -1000.0f);
    }
    assert_string_equal(tok(m, 6), "\xe2\x96\x81" "a"); /* base tokens keep U+2581 */
    assert_string_equal(tok(m, 8), "<extra>");
    assert_string_equal(tok(m, 9), "[PAD9]");
    assert_int_equal(kv_int(m, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(kv_int(m, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(kv_int(m, "tokenizer.ggml.unknown_token_id"), 0);
    assert_null(qd_model_kv_find(m, "tokenizer.ggml.padding_token_id"));
    assert_int_equal(kv_int(m, "tokenizer.ggml.add_bos_token"), 1);
    assert_int_equal(kv_int(m, "tokenizer.ggml.add_eos_token"), 0);
    assert_null(qd_model_kv_find(m, "tokenizer.chat_template"));
    release(m);
}

static void test_tokenizer__config_json_ids_and_named_templates(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    puts_(d, "tokenizer.json", spm_bpe_json);
    /* no names in tokenizer_config.json: special_tokens_map.json names bos; config.json gives eos and pad */
    puts_(d, "tokenizer_config.json",
          "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool use\", \"template\": "
          "\"T\"}]}");
    puts_(d, "special_tokens_map.json", "{\"bos_token\": {\"content\": \"<s>\"}}");
    puts_(d, "config.json", "{\"eos_token_id\": 2, \"pad_token_id\": 0, \"bos_token_id\": 5, \"mask_token_id\": 99}");
    assert_int_equal(convert(&m, NULL, d, 10), QD_OK);
    assert_int_equal(kv_int(m, "tokenizer.ggml.bos_token_id"), 1); /* the name wins over config.json */
    assert_int_equal(kv_int(m, "tokenizer.ggml.eos_token_id"), 2);
    assert_int_equal(kv_int(m, "tokenizer.ggml.padding_token_id"), 0);
    assert_null(qd_model_kv_find(m, "tokenizer.ggml.mask_token_id")); /* 99: out of range, skipped */
    assert_string_equal(kv_str(m, "tokenizer.chat_template"), "D");
    assert_string_equal(kv_str(m, "tokenizer.chat_template.tool_use"), "T");
    assert_int_equal(arr_n(m, "tokenizer.chat_templates"), 1);
    release(m);

    /* chat_template.jinja beside tokenizer_config.json */
    d = new_dir();
    puts_(d, "tokenizer.json", spm_bpe_json);
    puts_(d, "tokenizer_config.json", "{\"bos_token\": \"<s>\"}");
    puts_(d, "chat_template.jinja", "{{ bos_token }}J");
    assert_int_equal(convert(&m, NULL, d, 9), QD_OK);
    assert_string_equal(kv_str(m, "tokenizer.chat_template"), "{{ bos_token }}J");
    release(m);
}

static void test_tokenizer__unigram(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    puts_(d, "tokenizer.json",
          "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": "
          "\"</s>\", \"special\": true}],"
          " \"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"byte_fallback\": true, \"vocab\": [[\"<unk>\", 0.0], "
          "[\"<s>\", 0.0], [\"</s>\", 0.0], [\"<0x0A>\", 0.0], [\"\xe2\x96\x81" "a\", -1.5], [\"b\", -2.25]]}}");
    puts_(d, "tokenizer_config.json", "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
    assert_int_equal(convert(&m, NULL, d, 7), QD_OK);
    assert_string_equal(kv_str(m, "tokenizer.ggml.model"), "llama");
    assert_int_equal(ttype(m, 0), QD_TOKEN_UNKNOWN);
    assert_int_equal(ttype(m, 1), QD_TOKEN_CONTROL);
    assert_int_equal(ttype(m, 3), QD_TOKEN_BYTE);
    assert_int_equal(ttype(m, 4), QD_TOKEN_NORMAL);
    assert_int_equal(ttype(m, 6), QD_TOKEN_UNUSED);
    assert_true(score(m, 4) == -1.5f);
    assert_true(score(m, 5) == -2.25f);
    assert_int_equal(kv_int(m, "tokenizer.ggml.unknown_token_id"), 0);
    assert_int_equal(kv_int(m, "tokenizer.ggml.bos_token_id"), 1);
    release(m);
}

/* ---- tokenizer.model --------------------------------------------------------------------------------------- */

typedef struct pbuf {
    uint8_t b[4096];
    size_t n;
} pbuf;

static void pb_varint(pbuf *p, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        p->b[p->n++] = (uint8_t)(c | (v ? 0x80 : 0));
    } while (v);
}

static void pb_piece(pbuf *p, const char *s, float sc, int type)
{
    pbuf m = {{0}, 0};
    uint32_t u;
    pb_varint(&m, (1 << 3) | 2);
    pb_varint(&m, strlen(s));
    memcpy(m.b + m.n, s, strlen(s));
    m.n += strlen(s);
    pb_varint(&m, (2 << 3) | 5);
    memcpy(&u, &sc, 4);
    for (int i = 0; i < 4; i++)
        m.b[m.n++] = (uint8_t)(u >> (8 * i));
    if (type) {
        pb_varint(&m, (3 << 3) | 0);
        pb_varint(&m, (uint64_t)type);
    }
    pb_varint(p, (1 << 3) | 2);
    pb_varint(p, m.n);
    memcpy(p->b + p->n, m.b, m.n);
    p->n += m.n;
}

static void spm_model(pbuf *p, int trainer_spec)
{
    p->n = 0;
    pb_piece(p, "<unk>", 0.0f, 2);
    pb_piece(p, "<s>", 0.0f, 3);
    pb_piece(p, "</s>", 0.0f, 3);
    pb_piece(p, "<0x0A>", 0.0f, 6);
    pb_piece(p, "\xe2\x96\x81t", -1.0f, 0); /* type absent: NORMAL */
    pb_piece(p, "he", -2.5f, 1);
    pb_piece(p, "<user>", 0.0f, 4);         /* USER_DEFINED: the converter writes NORMAL */
    if (trainer_spec) { /* a trainer_spec (field 2: {1: 1, 2: 1}) the reader skips */
        pb_varint(p, (2 << 3) | 2);
        pb_varint(p, 4);
        p->b[p->n++] = 0x08, p->b[p->n++] = 0x01, p->b[p->n++] = 0x10, p->b[p->n++] = 0x01;
    }
}

static void test_tokenizer__sentencepiece_model(void **state)
{
    (void)state;
    const char *d = new_dir();
    qd_model *m;
    qd_tokenizer_info info;
    pbuf p;
    spm_model(&p, 0);
    put(d, "tokenizer.model", p.b, p.n);
    puts_(d, "added_tokens.json", "{\"<pad>\": 8}");
    puts_(d, "config.json", "{\"bos_token_id\": 1, \"eos_token_id\": 2}");
    assert_int_equal(convert(&m, &info, d, 10), QD_OK);
    assert_string_equal(info.source, "tokenizer.model");
    assert_string_equal(kv_str(m, "tokenizer.ggml.model"), "llama");
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "default");
    int32_t want[10] = {QD_TOKEN_UNKNOWN, QD_TOKEN_CONTROL, QD_TOKEN_CONTROL, QD_TOKEN_BYTE, QD_TOKEN_NORMAL,
                        QD_TOKEN_NORMAL,  QD_TOKEN_NORMAL,  QD_TOKEN_UNUSED,  QD_TOKEN_USER_DEFINED, QD_TOKEN_UNUSED};
    for (int i = 0; i < 10; i++)
        assert_int_equal(ttype(m, i), want[i]);
    assert_string_equal(tok(m, 4), "\xe2\x96\x81t");
    assert_true(score(m, 4) == -1.0f);
    assert_true(score(m, 5) == -2.5f);
    assert_string_equal(tok(m, 7), "[PAD7]");
    assert_true(score(m, 7) == -10000.0f);
    assert_string_equal(tok(m, 8), "<pad>");
    assert_true(score(m, 8) == -1000.0f);
    assert_int_equal(kv_int(m, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(kv_int(m, "tokenizer.ggml.eos_token_id"), 2);
    release(m);

    /* with a trainer_spec to skip, and fewer rows than pieces (the rest dropped, as the converter does) */
    d = new_dir();
    spm_model(&p, 1);
    put(d, "tokenizer.model", p.b, p.n);
    assert_int_equal(convert(&m, &info, d, 5), QD_OK);
    assert_int_equal(arr_n(m, "tokenizer.ggml.tokens"), 5);
    release(m);

    /* every truncation of the protobuf is an error or a shorter valid model, never a crash */
    spm_model(&p, 1);
    int errors = 0;
    for (size_t cut = 0; cut < p.n; cut++) {
        d = new_dir();
        put(d, "tokenizer.model", p.b, cut);
        int rc = convert(&m, NULL, d, 10);
        if (rc == QD_OK)
            release(m);
        else
            errors++, assert_true(rc == QD_ECORRUPT || rc == QD_EUNSUPPORTED);
    }
    assert_true(errors > 0);
}

/* ---- malformed input ------------------------------------------------------------------------------------- */

static void expect_fail(const char *json, int64_t n_vocab, int want_rc, const char *want_msg)
{
    const char *d = new_dir();
    qd_model *m = NULL;
    puts_(d, "tokenizer.json", json);
    int rc = convert(&m, NULL, d, n_vocab);
    if (rc == QD_OK)
        release(m);
    assert_int_equal(rc, want_rc);
    if (!strstr(qd_error_last()->message, want_msg))
        fail_msg("message \"%s\" lacks \"%s\"", qd_error_last()->message, want_msg);
}

static void test_tokenizer__malformed_json(void **state)
{
    (void)state;
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {", 8, QD_ECORRUPT, "not valid JSON");
    expect_fail("[1, 2]", 8, QD_ECORRUPT, "not a JSON object");
    expect_fail("{\"version\": \"1.0\"}", 8, QD_ECORRUPT, "no \"model\"");
    expect_fail("{\"model\": {\"type\": \"BPE\"}}", 8, QD_ECORRUPT, "no \"vocab\"");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": [1]}}", 8, QD_ECORRUPT, "not an object");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc4\x8a\": 8}}}", 8, QD_ECORRUPT,
                "outside the model's 8");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}", 8, QD_ECORRUPT, "id -1");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}}}", 8, QD_ECORRUPT, "share id 0");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}}}", 8, QD_ECORRUPT, "duplicate");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}", 8, QD_ECORRUPT, "not an integer");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc4\x8a\": 1}, \"merges\": [\"a zz\"]}}", 8,
                QD_ECORRUPT, "not in model.vocab");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc4\x8a\": 1}, \"merges\": [\"a a\"]}}", 8,
                QD_ECORRUPT, "merged token");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"aa\"]}}", 8, QD_ECORRUPT,
                "one space");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", 8, QD_ECORRUPT,
                "neither");
    expect_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": {}}}", 8, QD_ECORRUPT,
                "not an array");
    expect_fail("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", 8, QD_EUNSUPPORTED, "WordPiece");
    expect_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0], [\"b\", 0.0]]}}", 8, QD_EUNSUPPORTED,
                "newline");
    expect_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0], [\"b\"]]}}", 8, QD_ECORRUPT,
                "[token, score]");
    expect_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0], [\"b\", 0], [\"c\", 0]]}}", 2,
                QD_ECORRUPT, "more than the model's 2");
    expect_fail("{\"added_tokens\": [{\"id\": 99, \"content\": \"<x>\"}], \"model\": {\"type\": \"BPE\", "
                "\"vocab\": {\"\xc4\x8a\": 0}}}",
                8, QD_ECORRUPT, "id 99");
    expect_fail("{\"added_tokens\": [{\"content\": \"<x>\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {}}}", 8,
                QD_ECORRUPT, "added_tokens[0]");

    /* a huge merge entry (100 KiB) and a huge token */
    size_t big = 100 * 1024;
    char *js = malloc(big + 256), *p = js;
    p += sprintf(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\xc4\x8a\": 1}, \"merges\": [\"a ");
    memset(p, 'a', big);
    p += big;
    strcpy(p, "\"]}}");
    expect_fail(js, 8, QD_ECORRUPT, "limit");
    p = js;
    p += sprintf(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xc4\x8a\": 1, \"");
    memset(p, 'b', big);
    p += big;
    strcpy(p, "\": 0}}}");
    expect_fail(js, 8, QD_ECORRUPT, "limit");
    free(js);

    /* a bad tokenizer_config.json is an error too, naming the file */
    const char *d = new_dir();
    qd_model *m = NULL;
    puts_(d, "tokenizer.json", spm_bpe_json);
    puts_(d, "tokenizer_config.json", "{\"bos_token\": ");
    assert_int_equal(convert(&m, NULL, d, 9), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "tokenizer_config.json"));

    /* no tokenizer at all, and a bad vocabulary size */
    d = new_dir();
    assert_int_equal(convert(&m, NULL, d, 9), QD_ENOTFOUND);
    qd_gguf_writer *w;
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    assert_int_equal(qd_tokenizer_from_hf(NULL, w, d, 0), QD_EINVAL);
    qd_gguf_writer_free(w);

    /* a garbage tokenizer.model */
    d = new_dir();
    puts_(d, "tokenizer.model", "{\"this\": \"is json\"}");
    assert_int_equal(convert(&m, NULL, d, 9), QD_ECORRUPT);
}

static void test_tokenizer__every_truncation_is_an_error(void **state)
{
    (void)state;
    char js[8192];
    snprintf(js, sizeof(js), "%s", bpe_json("[\"a b\", \"\xc4\xa0 a\"]", llama3_pre));
    size_t n = strlen(js);
    const char *d = new_dir();
    qd_model *m;
    int ok = 0;
    for (size_t cut = 0; cut < n; cut++) {
        put(d, "tokenizer.json", js, cut);
        int rc = convert(&m, NULL, d, 12);
        if (rc == QD_OK) {
            ok++;
            assert_int_equal(cut, n - 1); /* only dropping the final newline leaves valid JSON */
            release(m);
        } else {
            assert_int_equal(rc, QD_ECORRUPT);
        }
    }
    assert_int_equal(ok, 1);
    put(d, "tokenizer.json", js, n);
    assert_int_equal(convert(&m, NULL, d, 12), QD_OK);
    release(m);
}

/* Seeded random byte mutations of a valid tokenizer.json, tokenizer_config.json and tokenizer.model: every result
 * is a clean conversion or a clear error (ASan/UBSan builds check the "never a crash" part). */
static void test_tokenizer__random_mutations(void **state)
{
    (void)state;
    tu_rng r;
    char js[8192], cfg[512];
    pbuf p;
    const char *d = new_dir();
    qd_model *m;
    int ok = 0, bad = 0;
    tu_rng_seed(&r, tu_seed());
    snprintf(cfg, sizeof(cfg), "{\"bos_token\": \"<|bos|>\", \"eos_token\": {\"content\": \"<|eot|>\"}, "
                               "\"add_bos_token\": true, \"chat_template\": [{\"name\": \"default\", \"template\": \"x\"}]}");
    for (int it = 0; it < 300; it++) {
        int which = it % 3;
        size_t n;
        char *buf;
        snprintf(js, sizeof(js), "%s", which == 2 ? spm_bpe_json : bpe_json("[\"a b\", \"\xc4\xa0 a\"]", llama3_pre));
        char c2[512];
        snprintf(c2, sizeof(c2), "%s", cfg);
        spm_model(&p, 1);
        if (which == 0)
            buf = js, n = strlen(js);
        else if (which == 1)
            buf = c2, n = strlen(c2);
        else
            buf = (char *)p.b, n = p.n;
        int k = 1 + (int)(tu_next(&r) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(tu_next(&r) % n);
            static const char pool[] = "{}[]\",:0123456789- \\abzu";
            buf[at] = which == 2 && (tu_next(&r) & 1) ? (char)(tu_next(&r) & 0xff) : pool[tu_next(&r) % (sizeof(pool) - 1)];
        }
        char rm[800];
        snprintf(rm, sizeof(rm), "%s/tokenizer.model", d);
        unlink(rm);
        if (which == 2) {
            put(d, "tokenizer.model", p.b, p.n);
            puts_(d, "tokenizer_config.json", cfg);
        } else {
            put(d, "tokenizer.json", js, strlen(js));
            puts_(d, "tokenizer_config.json", which == 1 ? c2 : cfg);
        }
        int rc = convert(&m, NULL, d, 12);
        if (rc == QD_OK) {
            ok++;
            assert_int_equal(arr_n(m, "tokenizer.ggml.tokens"), 12);
            release(m);
        } else {
            bad++;
            if (rc != QD_ECORRUPT && rc != QD_EUNSUPPORTED)
                fail_msg("iteration %d: rc %d (%s)", it, rc, qd_error_last()->message);
            assert_true(strlen(qd_error_last()->message) > 0);
        }
    }
    printf("random mutations: %d converted, %d refused\n", ok, bad);
    assert_true(bad > 0);
}

/* ---- through the quantize pipeline ------------------------------------------------------------------------ */

static const char *tools(void)
{
    const char *t = getenv("QD_TOOLS");
    return t && *t ? t : "build/release/tools";
}

static void test_tokenizer__quantize_safetensors_with_tokenizer(void **state)
{
    (void)state;
    char cmd[2048], st[800], out[800];
    const char *d = new_dir();
    snprintf(st, sizeof(st), "%s/model.safetensors", d);
    snprintf(cmd, sizeof(cmd), "%s/gen_ckpt --format safetensors --vocab 320 --tokenizer --out %s", tools(), st);
    if (system(cmd) != 0)
        TU_SKIP("gen_ckpt not built at %s", tools());
    qd_quantize_opts o;
    qd_quantize_stats s;
    memset(&o, 0, sizeof(o));
    o.ftype = QD_FTYPE_F16;
    o.threads = 1;
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    snprintf(out, sizeof(out), "%s/out.gguf", d);
    assert_int_equal(qd_quantize_model(&s, st, out, &o), QD_OK);
    qd_model *m;
    assert_int_equal(qd_model_open(&m, out), QD_OK);
    assert_string_equal(kv_str(m, "tokenizer.ggml.model"), "gpt2");
    assert_string_equal(kv_str(m, "tokenizer.ggml.pre"), "llama-bpe");
    assert_int_equal(arr_n(m, "tokenizer.ggml.tokens"), 320);
    assert_true(arr_n(m, "tokenizer.ggml.merges") > 0);
    assert_null(qd_model_kv_find(m, "quantd.placeholder_vocab"));
    assert_true(kv_int(m, "tokenizer.ggml.bos_token_id") >= 256);
    assert_int_equal(ttype(m, (uint64_t)kv_int(m, "tokenizer.ggml.bos_token_id")), QD_TOKEN_CONTROL);
    qd_model_free(m);

    /* a broken tokenizer.json stops the quantize with its message */
    puts_(d, "tokenizer.json", "{\"model\": ");
    snprintf(out, sizeof(out), "%s/out2.gguf", d);
    assert_int_equal(qd_quantize_model(&s, st, out, &o), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "tokenizer.json"));

    /* without one, the placeholder vocabulary as before */
    snprintf(cmd, sizeof(cmd), "%s/tokenizer.json", d);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s/tokenizer_config.json", d);
    unlink(cmd);
    assert_int_equal(qd_quantize_model(&s, st, out, &o), QD_OK);
    assert_int_equal(qd_model_open(&m, out), QD_OK);
    assert_non_null(qd_model_kv_find(m, "quantd.placeholder_vocab"));
    qd_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer__bpe_byte_level),
        cmocka_unit_test(test_tokenizer__merges_as_pairs),
        cmocka_unit_test(test_tokenizer__unknown_pre_tokenizer_is_default),
        cmocka_unit_test(test_tokenizer__spm_style_bpe),
        cmocka_unit_test(test_tokenizer__config_json_ids_and_named_templates),
        cmocka_unit_test(test_tokenizer__unigram),
        cmocka_unit_test(test_tokenizer__sentencepiece_model),
        cmocka_unit_test(test_tokenizer__malformed_json),
        cmocka_unit_test(test_tokenizer__every_truncation_is_an_error),
        cmocka_unit_test(test_tokenizer__random_mutations),
        cmocka_unit_test(test_tokenizer__quantize_safetensors_with_tokenizer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
