/*
 * gen_ckpt.c - a seeded synthetic llama-shaped checkpoint, as safetensors (HF names, Q/K rows in HF order,
 * config.json beside it, optionally sharded) or GGUF (F32 or F16), for tests and benchmarks.
 *
 *   gen_ckpt --out PATH [--format gguf|safetensors] [--dtype f32|f16|bf16] [--dim 64] [--ff 172] [--layers 2]
 *            [--heads 4] [--kv-heads 2] [--vocab 256] [--ctx 256] [--seed 1] [--shards N] [--tied] [--tokenizer]
 *
 * Statistics: weights are Student-t (5 degrees of freedom: heavy tails) scaled to std 1/sqrt(fan_in), and in
 * every matrix a few input channels (about 1 in 128, at least 1) are outliers scaled by 8; norm weights are
 * 1 + N(0, 0.05). Every tensor's values depend only on the seed and the tensor's GGUF name, never on the format,
 * so the GGUF and the safetensors written from one seed hold the same model (the Q/K permutation undone).
 * --tokenizer: GGUF gets the placeholder vocabulary; safetensors gets a byte-level BPE tokenizer.json (Llama-3
 * layout: 256 byte tokens, merges trained on a fixed English text, three special tokens; ids up to --vocab past
 * them left undefined) and a tokenizer_config.json with bos/eos and a chat template.
 * --act-outliers F: activation outliers as in real LLMs: a few residual channels (dim / 64, at least 1, the same in
 * every block) get norm weights F times larger, and the input columns of the matrices behind those norms (q, k, v;
 * gate, up; the untied classifier) are divided by F, so the model computes the same function but the inputs of
 * those matmuls carry channels F times larger than the rest (what AWQ and SmoothQuant exploit, and what hurts RTN).
 * Preset --preset bench: dim 2048, ff 5632, 14 layers, 32/4 heads, vocab 32000, F16 GGUF (about 1.5 GB).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "qd/err.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/quant.h"

typedef struct cfg {
    const char *out, *format;
    qd_type dtype;
    int64_t dim, ff, layers, heads, kv_heads, vocab, ctx;
    uint64_t seed;
    int shards, tied, tokenizer;
    double act_outliers; /* 0: none */
} cfg;

/* xoshiro256** */
typedef struct rng {
    uint64_t s[4];
} rng;
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}
static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}
static double rng_unit(rng *r) { return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0; }
static double rng_normal(rng *r) { return sqrt(-2.0 * log(rng_unit(r))) * cos(6.283185307179586 * rng_unit(r)); }

/* 65536 Student-t(5) samples with unit variance: a table indexed by 16 random bits is fast enough for GBs. */
static float t_table[65536];
static void init_table(void)
{
    rng r;
    rng_seed(&r, 0x5eed7ab1e);
    double ss = 0;
    for (int i = 0; i < 65536; i++) {
        double chi = 0;
        for (int k = 0; k < 5; k++) {
            double z = rng_normal(&r);
            chi += z * z;
        }
        t_table[i] = (float)(rng_normal(&r) / sqrt(chi / 5.0));
        ss += (double)t_table[i] * t_table[i];
    }
    float sc = (float)(1.0 / sqrt(ss / 65536.0));
    for (int i = 0; i < 65536; i++)
        t_table[i] *= sc;
}

static uint64_t name_hash(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef struct tdesc {
    char name[64];
    char hf[96];
    uint32_t n_dims;
    int64_t ne[2];
    int permute; /* heads for the HF row order, 0 none */
} tdesc;

static size_t list_tensors(const cfg *c, tdesc *out)
{
    size_t n = 0;
    int64_t hd = c->dim / c->heads, kv = hd * c->kv_heads;
#define ADD(nm, nd, a, b, p)                                                                                       \
    do {                                                                                                           \
        snprintf(out[n].name, sizeof(out[n].name), "%s", nm);                                                      \
        out[n].n_dims = nd;                                                                                        \
        out[n].ne[0] = a;                                                                                          \
        out[n].ne[1] = b;                                                                                          \
        out[n].permute = p;                                                                                        \
        if (qd_name_map(out[n].hf, sizeof(out[n].hf), NULL, nm, QD_NAMES_GGUF, QD_NAMES_HF))                        \
            snprintf(out[n].hf, sizeof(out[n].hf), "%s", nm);                                                      \
        n++;                                                                                                       \
    } while (0)
    char b[64];
    ADD("token_embd.weight", 2, c->dim, c->vocab, 0);
    for (int64_t l = 0; l < c->layers; l++) {
        snprintf(b, sizeof(b), "blk.%lld.attn_norm.weight", (long long)l);
        ADD(b, 1, c->dim, 1, 0);
        snprintf(b, sizeof(b), "blk.%lld.attn_q.weight", (long long)l);
        ADD(b, 2, c->dim, c->dim, (int)c->heads);
        snprintf(b, sizeof(b), "blk.%lld.attn_k.weight", (long long)l);
        ADD(b, 2, c->dim, kv, (int)c->kv_heads);
        snprintf(b, sizeof(b), "blk.%lld.attn_v.weight", (long long)l);
        ADD(b, 2, c->dim, kv, 0);
        snprintf(b, sizeof(b), "blk.%lld.attn_output.weight", (long long)l);
        ADD(b, 2, c->dim, c->dim, 0);
        snprintf(b, sizeof(b), "blk.%lld.ffn_norm.weight", (long long)l);
        ADD(b, 1, c->dim, 1, 0);
        snprintf(b, sizeof(b), "blk.%lld.ffn_gate.weight", (long long)l);
        ADD(b, 2, c->dim, c->ff, 0);
        snprintf(b, sizeof(b), "blk.%lld.ffn_up.weight", (long long)l);
        ADD(b, 2, c->dim, c->ff, 0);
        snprintf(b, sizeof(b), "blk.%lld.ffn_down.weight", (long long)l);
        ADD(b, 2, c->ff, c->dim, 0);
    }
    ADD("output_norm.weight", 1, c->dim, 1, 0);
    if (!c->tied)
        ADD("output.weight", 2, c->dim, c->vocab, 0);
#undef ADD
    return n;
}

/* --act-outliers: is residual channel col one of the outlier channels? */
static bool outlier_channel(const cfg *c, int64_t col)
{
    int64_t n = c->dim / 64 > 0 ? c->dim / 64 : 1;
    uint64_t h = name_hash("act-outliers", c->seed);
    for (int64_t k = 0; k < n; k++)
        if ((int64_t)((h + (uint64_t)k * 0x9e3779b97f4a7c15ull) % (uint64_t)c->dim) == col)
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void gen_row_base(const cfg *c, const tdesc *t, int64_t r, float *dst);

/* Row r (GGUF/Meta order) of a tensor into dst[ne0] f32. Deterministic in (seed, name, r). */
static void gen_row(const cfg *c, const tdesc *t, int64_t r, float *dst)
{
    gen_row_base(c, t, r, dst);
    if (c->act_outliers <= 0)
        return;
    float f = (float)c->act_outliers;
    bool norm = ends_with(t->name, "attn_norm.weight") || ends_with(t->name, "ffn_norm.weight") ||
                (!c->tied && !strcmp(t->name, "output_norm.weight"));
    bool behind = ends_with(t->name, "attn_q.weight") || ends_with(t->name, "attn_k.weight") ||
                  ends_with(t->name, "attn_v.weight") || ends_with(t->name, "ffn_gate.weight") ||
                  ends_with(t->name, "ffn_up.weight") || (!c->tied && !strcmp(t->name, "output.weight"));
    if (!norm && !behind)
        return;
    for (int64_t i = 0; i < t->ne[0]; i++)
        if (outlier_channel(c, i))
            dst[i] = norm ? dst[i] * f : dst[i] / f;
}

static void gen_row_base(const cfg *c, const tdesc *t, int64_t r, float *dst)
{
    rng g;
    int64_t nc = t->ne[0];
    rng_seed(&g, name_hash(t->name, c->seed) + (uint64_t)r * 0x9e3779b97f4a7c15ull);
    if (t->n_dims == 1) {
        for (int64_t i = 0; i < nc; i++)
            dst[i] = 1.0f + 0.05f * t_table[rng_next(&g) & 0xffff];
        return;
    }
    float sc = (float)(1.0 / sqrt((double)nc));
    uint64_t oh = name_hash(t->name, c->seed ^ 0x0071e5ull);
    for (int64_t i = 0; i < nc; i += 4) {
        uint64_t x = rng_next(&g);
        for (int k = 0; k < 4 && i + k < nc; k++)
            dst[i + k] = sc * t_table[(x >> (16 * k)) & 0xffff];
    }
    /* outlier input channels: a fixed set per tensor */
    int64_t n_out = nc / 128 > 0 ? nc / 128 : 1;
    for (int64_t k = 0; k < n_out; k++) {
        int64_t col = (int64_t)((oh + (uint64_t)k * 0x9e3779b97f4a7c15ull) % (uint64_t)nc);
        dst[col] *= 8.0f;
    }
}

static int emit_tensor(const cfg *c, const tdesc *t, int hf_order, int (*sink)(const void *, size_t, void *),
                       void *payload)
{
    int64_t nc = t->ne[0], rows = t->ne[1];
    size_t rs = qd_row_size(c->dtype, nc);
    int64_t chunk = (int64_t)((4u << 20) / (size_t)nc);
    if (chunk < 1)
        chunk = 1;
    float *f = malloc((size_t)nc * sizeof(float) * (size_t)chunk);
    uint8_t *o = malloc(rs * (size_t)chunk);
    int rc = 0;
    if (!f || !o) {
        free(f);
        free(o);
        return QD_ENOMEM;
    }
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += chunk) {
        int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        for (int64_t r = 0; r < nr; r++) {
            int64_t src = r0 + r; /* file row */
            if (hf_order && t->permute) /* HF file row s holds Meta row dst(s) */
                src = qd_permute_dst_row(r0 + r, rows, t->permute);
            gen_row(c, t, src, f + (size_t)r * (size_t)nc);
        }
        if ((rc = qd_quantize_rows(c->dtype, f, o, nr, nc, NULL)))
            break;
        rc = sink(o, (size_t)nr * rs, payload);
    }
    free(f);
    free(o);
    return rc;
}

static int sink_gguf(const void *d, size_t n, void *p) { return qd_gguf_writer_write(p, d, n); }

static int sink_fd(const void *d, size_t n, void *p)
{
    int fd = *(int *)p;
    const uint8_t *b = d;
    while (n) {
        ssize_t k = write(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return qd_error_set(QD_EIO, QD_EC_OS, "write: %s", strerror(errno));
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_gguf(const cfg *c, tdesc *ts, size_t n)
{
    qd_gguf_writer *w;
    int rc = qd_gguf_writer_new(&w, 0);
    if (rc)
        return rc;
    rc = qd_gguf_set_str(w, "general.architecture", "llama");
    if (!rc) rc = qd_gguf_set_str(w, "general.name", "gen_ckpt synthetic");
    if (!rc) /* llama.cpp's file types: ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32 */
        rc = qd_gguf_set_u32(w, "general.file_type", c->dtype == QD_TYPE_F16 ? 1 : c->dtype == QD_TYPE_BF16 ? 32 : 0);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.context_length", (uint32_t)c->ctx);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.block_count", (uint32_t)c->layers);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->ff);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->heads);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->kv_heads);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->heads));
    if (!rc) rc = qd_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (!rc) rc = qd_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
    if (!rc) rc = qd_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab);
    if (!rc && c->tokenizer)
        rc = qd_write_placeholder_vocab(w, c->vocab);
    for (size_t i = 0; !rc && i < n; i++) {
        qd_type t = ts[i].n_dims == 1 ? QD_TYPE_F32 : c->dtype;
        rc = qd_gguf_add_tensor(w, ts[i].name, t, ts[i].n_dims, ts[i].ne);
    }
    if (!rc)
        rc = qd_gguf_writer_begin(w, c->out);
    for (size_t i = 0; !rc && i < n; i++) {
        cfg c1 = *c;
        if (ts[i].n_dims == 1)
            c1.dtype = QD_TYPE_F32;
        rc = emit_tensor(&c1, &ts[i], 0, sink_gguf, w);
    }
    if (!rc)
        rc = qd_gguf_writer_finish(w);
    qd_gguf_writer_free(w);
    return rc;
}

/* ---- a byte-level BPE tokenizer.json (--tokenizer with --format safetensors) ---------------------------------- */

/* GPT-2's byte-level alphabet: printable bytes stand for themselves, the others map to U+0100 onwards in order. */
static int byte_printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

static size_t byte_utf8(int b, char *o)
{
    unsigned cp = (unsigned)b;
    if (!byte_printable(b)) {
        cp = 256;
        for (int x = 0; x < b; x++)
            cp += !byte_printable(x);
    }
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

#define TK_WORDS 512
#define TK_SYMS 48

/* Train byte-level BPE merges on a fixed English text (most frequent pair first, ties to the first seen), so the
 * vocabulary and merges look like a real tokenizer's and llama.cpp can tokenize with them. */
static int write_tokenizer(const cfg *c, const char *dir)
{
    static const char *text =
        "Once upon a time there was a little girl who lived in a village near the forest. Whenever she went out, "
        "the little girl wore a red riding cloak, so everyone in the village called her Little Red Riding Hood. "
        "One morning she asked her mother if she could go to visit her grandmother as it had been a while since "
        "they had seen each other. That is a good idea, her mother said. So they packed a nice basket for her to "
        "take to her grandmother. The quick brown fox jumps over the lazy dog.\nHello world! 123 456 7890\n";
    static char syms[TK_WORDS][TK_SYMS][64];
    static int nsym[TK_WORDS];
    int nw = 0, n_special = 3;
    int64_t n_merges = c->vocab - 256 - n_special, done = 0;
    char path[4200];
    if (n_merges < 0)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "--tokenizer with safetensors needs --vocab >= 259");
    /* pre-split: a word is [space]letters or [space]other; each byte becomes one byte-level symbol */
    for (const char *p = text; *p && nw < TK_WORDS;) {
        int n = 0;
        const char *q = p;
        if (*q == ' ')
            q++;
        int alpha = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z');
        while (*q && *q != ' ' && (((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')) == alpha))
            q++;
        if (q == p)
            q++;
        for (const char *r = p; r < q && n < TK_SYMS; r++) {
            size_t l = byte_utf8((unsigned char)*r, syms[nw][n]);
            syms[nw][n++][l] = '\0';
        }
        nsym[nw++] = n;
        p = q;
    }
    json_t *vocab = json_object(), *merges = json_array();
    for (int b = 0; b < 256; b++) {
        char u[4];
        u[byte_utf8(b, u)] = '\0';
        json_object_set_new(vocab, u, json_integer(b));
    }
    while (done < n_merges) {
        /* count pairs */
        int best_w = -1, best_i = -1, best_n = 1;
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < nsym[w]; i++) {
                int cnt = 0;
                for (int w2 = 0; w2 < nw; w2++)
                    for (int j = 0; j + 1 < nsym[w2]; j++)
                        cnt += !strcmp(syms[w][i], syms[w2][j]) && !strcmp(syms[w][i + 1], syms[w2][j + 1]);
                if (cnt > best_n && strlen(syms[w][i]) + strlen(syms[w][i + 1]) < 63)
                    best_n = cnt, best_w = w, best_i = i;
            }
        if (best_w < 0)
            break;
        char a[64], b[64], ab[128], m[130];
        snprintf(a, sizeof(a), "%s", syms[best_w][best_i]);
        snprintf(b, sizeof(b), "%s", syms[best_w][best_i + 1]);
        snprintf(ab, sizeof(ab), "%s%s", a, b);
        snprintf(m, sizeof(m), "%s %s", a, b);
        json_object_set_new(vocab, ab, json_integer(256 + done));
        json_array_append_new(merges, json_string(m));
        done++;
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < nsym[w]; i++)
                if (!strcmp(syms[w][i], a) && !strcmp(syms[w][i + 1], b)) {
                    memcpy(syms[w][i], ab, strlen(ab) + 1); /* < 63 bytes: checked when the pair was chosen */
                    memmove(syms[w][i + 1], syms[w][i + 2], (size_t)(nsym[w] - i - 2) * 64);
                    nsym[w]--;
                }
    }
    /* the special tokens follow the merges; ids up to --vocab past them stay undefined (the converter pads) */
    const char *specials[3] = {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"};
    json_t *added = json_array();
    for (int k = 0; k < n_special; k++)
        json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                                               (json_int_t)(256 + done + k), "content", specials[k], "single_word", 0,
                                               "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    json_t *tj = json_pack(
        "{s:s, s:n, s:n, s:o, s:n, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]},"
        " s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}]}, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer", "type",
        "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
        "use_regex", 0, "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id",
        specials[0], "type_id", 0, "Sequence", "id", "A", "type_id", 0, "decoder", "type", "ByteLevel",
        "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "dropout", "unk_token",
        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 1,
        "vocab", vocab, "merges", merges);
    json_t *tc = json_pack("{s:s, s:s, s:s, s:I}", "bos_token", specials[0], "eos_token", specials[1],
                           "chat_template",
                           "{{ bos_token }}{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}"
                           "<|eot_id|>{% endfor %}",
                           "model_max_length", (json_int_t)c->ctx);
    if (!tj || !tc) {
        json_decref(tj);
        json_decref(tc);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "tokenizer json");
    }
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    int rc = json_dump_file(tj, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    if (!rc)
        rc = json_dump_file(tc, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(tj);
    json_decref(tc);
    return rc ? qd_error_set(QD_EIO, QD_EC_OS, "write %s", path) : 0;
}

static int write_config(const cfg *c, const char *dir)
{
    char path[4096];
    json_t *j = json_pack("{s:s, s:[s], s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b}", "model_type", "llama",
                          "architectures", "LlamaForCausalLM", "hidden_size", (json_int_t)c->dim,
                          "intermediate_size", (json_int_t)c->ff, "num_hidden_layers", (json_int_t)c->layers,
                          "num_attention_heads", (json_int_t)c->heads, "num_key_value_heads",
                          (json_int_t)c->kv_heads, "vocab_size", (json_int_t)c->vocab, "max_position_embeddings",
                          (json_int_t)c->ctx, "rms_norm_eps", 1e-5, "rope_theta", 10000.0, "tie_word_embeddings",
                          c->tied);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (rc)
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s", path);
    return c->tokenizer ? write_tokenizer(c, dir) : 0;
}

/* One safetensors file holding tensors [a, b). */
static int write_st_file(const cfg *c, tdesc *ts, size_t a, size_t b, const char *path)
{
    json_t *h = json_object();
    uint64_t off = 0;
    int fd, rc = 0;
    for (size_t i = a; i < b; i++) {
        qd_type t = ts[i].n_dims == 1 ? QD_TYPE_F32 : c->dtype;
        uint64_t bytes = (uint64_t)ts[i].ne[0] * (uint64_t)ts[i].ne[1] * (t == QD_TYPE_F32 ? 4u : 2u);
        json_t *shape = ts[i].n_dims == 1 ? json_pack("[I]", (json_int_t)ts[i].ne[0])
                                          : json_pack("[I,I]", (json_int_t)ts[i].ne[1], (json_int_t)ts[i].ne[0]);
        const char *dt = t == QD_TYPE_F32 ? "F32" : t == QD_TYPE_F16 ? "F16" : "BF16";
        json_object_set_new(h, ts[i].hf,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", dt, "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!js)
        return QD_ENOMEM;
    size_t jl = strlen(js), pad = (8 - jl % 8) % 8;
    uint64_t hl = jl + pad;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(js);
        return qd_error_set(QD_EIO, QD_EC_OS, "create %s: %s", path, strerror(errno));
    }
    rc = sink_fd(&hl, 8, &fd);
    if (!rc)
        rc = sink_fd(js, jl, &fd);
    if (!rc && pad)
        rc = sink_fd("        ", pad, &fd);
    free(js);
    for (size_t i = a; !rc && i < b; i++) {
        cfg c1 = *c;
        if (ts[i].n_dims == 1)
            c1.dtype = QD_TYPE_F32;
        rc = emit_tensor(&c1, &ts[i], 1, sink_fd, &fd);
    }
    close(fd);
    return rc;
}

static int write_safetensors(const cfg *c, tdesc *ts, size_t n)
{
    char dir[4096], path[4200];
    int rc;
    if (c->shards <= 1) {
        snprintf(dir, sizeof(dir), "%s", c->out);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = '\0';
        else
            strcpy(dir, ".");
        if ((rc = write_st_file(c, ts, 0, n, c->out)))
            return rc;
        return write_config(c, dir);
    }
    if (mkdir(c->out, 0755) != 0 && errno != EEXIST)
        return qd_error_set(QD_EIO, QD_EC_OS, "mkdir %s: %s", c->out, strerror(errno));
    json_t *wm = json_object();
    for (int s = 0; s < c->shards; s++) {
        size_t a = n * (size_t)s / (size_t)c->shards, b = n * (size_t)(s + 1) / (size_t)c->shards;
        char fname[128];
        snprintf(fname, sizeof(fname), "model-%05d-of-%05d.safetensors", s + 1, c->shards);
        snprintf(path, sizeof(path), "%s/%s", c->out, fname);
        if ((rc = write_st_file(c, ts, a, b, path))) {
            json_decref(wm);
            return rc;
        }
        for (size_t i = a; i < b; i++)
            json_object_set_new(wm, ts[i].hf, json_string(fname));
    }
    json_t *idx = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)0, "weight_map", wm);
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", c->out);
    rc = json_dump_file(idx, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(idx);
    if (rc)
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s", path);
    return write_config(c, c->out);
}

static void usage(void)
{
    fprintf(stderr, "usage: gen_ckpt --out PATH [--format gguf|safetensors] [--dtype f32|f16|bf16] [--dim N] [--ff N]\n"
                    "                [--layers N] [--heads N] [--kv-heads N] [--vocab N] [--ctx N] [--seed N]\n"
                    "                [--shards N] [--tied] [--tokenizer] [--act-outliers F] [--preset bench]\n");
}

int main(int argc, char **argv)
{
    cfg c = {NULL, "gguf", QD_TYPE_F32, 64, 172, 2, 4, 2, 256, 256, 1, 1, 0, 0, 0.0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tied")) {
            c.tied = 1;
            continue;
        }
        if (!strcmp(a, "--tokenizer")) {
            c.tokenizer = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--out")) c.out = v;
        else if (!strcmp(a, "--format")) c.format = v;
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) c.dtype = QD_TYPE_F32;
            else if (!strcmp(v, "f16")) c.dtype = QD_TYPE_F16;
            else if (!strcmp(v, "bf16")) c.dtype = QD_TYPE_BF16;
            else {
                fprintf(stderr, "gen_ckpt: --dtype %s: f32, f16 or bf16\n", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--dim")) c.dim = atoll(v);
        else if (!strcmp(a, "--ff")) c.ff = atoll(v);
        else if (!strcmp(a, "--layers")) c.layers = atoll(v);
        else if (!strcmp(a, "--heads")) c.heads = atoll(v);
        else if (!strcmp(a, "--kv-heads")) c.kv_heads = atoll(v);
        else if (!strcmp(a, "--vocab")) c.vocab = atoll(v);
        else if (!strcmp(a, "--ctx")) c.ctx = atoll(v);
        else if (!strcmp(a, "--seed")) c.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--shards")) c.shards = atoi(v);
        else if (!strcmp(a, "--act-outliers")) c.act_outliers = strtod(v, NULL);
        else if (!strcmp(a, "--preset") && !strcmp(v, "bench")) {
            c.dim = 2048, c.ff = 5632, c.layers = 14, c.heads = 32, c.kv_heads = 4, c.vocab = 32000;
            c.ctx = 2048, c.dtype = QD_TYPE_F16, c.format = "gguf";
        } else {
            usage();
            return 2;
        }
    }
    if (!c.out || c.dim <= 0 || c.ff <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.vocab < 4 ||
        c.dim % c.heads || c.heads % c.kv_heads || (c.dim / c.heads) % 2 || c.shards < 1 || c.layers > 10000) {
        usage();
        return 2;
    }
    init_table();
    size_t cap = (size_t)c.layers * 9 + 3;
    tdesc *ts = calloc(cap, sizeof(tdesc));
    if (!ts)
        return 1;
    size_t n = list_tensors(&c, ts);
    int rc = !strcmp(c.format, "safetensors") ? write_safetensors(&c, ts, n) : write_gguf(&c, ts, n);
    free(ts);
    if (rc) {
        fprintf(stderr, "gen_ckpt: %s\n", qd_error_last()->message);
        return 1;
    }
    return 0;
}
