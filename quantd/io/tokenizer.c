/*
 * tokenizer.c - a Hugging Face tokenizer folder as GGUF tokenizer metadata (the tokenizer.* keys llama.cpp reads).
 *
 * We follow what llama.cpp's convert_hf_to_gguf.py writes for a llama-family model, in its order of preference:
 *
 *   1. tokenizer.model (SentencePiece)      -> "llama": pieces, scores, types (tokenizer_spm.c)
 *   2. tokenizer.json, model BPE with byte_fallback and a Sequence decoder (Llama-2 style HF export)
 *                                           -> "llama": the converter's LlamaHfVocab: score -1000 for every token,
 *                                              <0xNN> typed BYTE, the special tokens CONTROL, later added tokens
 *                                              USER_DEFINED
 *   3. tokenizer.json, any other BPE (GPT-2 / Llama-3 byte-level) -> "gpt2": the converter's get_vocab_base():
 *                                              tokens by id, added tokens CONTROL (special, or looking special) or
 *                                              USER_DEFINED, merges, and tokenizer.ggml.pre
 *   4. tokenizer.json, model Unigram        -> "llama" with the Unigram scores (what the SentencePiece path would
 *                                              write for the same vocabulary; the converter has no such path)
 *
 * Every id below the model's embedding rows that nothing defines becomes "[PAD<id>]" of type UNUSED, as the
 * converter pads. Special token ids, add_bos/add_eos and the chat template follow gguf-py's SpecialVocab: names
 * from tokenizer_config.json resolved through tokenizer.json's added_tokens, the post-processor template for
 * add_bos/add_eos, then config.json's *_token_id.
 *
 * tokenizer.ggml.pre: the converter hashes the token ids the real tokenizer gives for a fixed text. We cannot run
 * the tokenizer, so we recognise the pre-tokenizer by its definition in tokenizer.json (the Split regex, or a
 * ByteLevel pre-tokenizer with its built-in GPT-2 regex) and name the llama.cpp pre-tokenizer that implements that
 * regex; anything else is logged and written as "default".
 *
 * Robustness: every file is size-bounded and parsed with duplicate keys rejected; every id is range-checked,
 * duplicates refused, token and merge lengths bounded, every merge must name tokens of the vocabulary.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/log.h"
#include "qd/model.h"
#include "qd/tokenizer.h"
#include "tokenizer_int.h"

/* ---- errors and small helpers ------------------------------------------------------------------------------- */

int tk_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = qd_error_vset(code, QD_EC_INVALID, fmt, ap);
    va_end(ap);
    return rc;
}

/* Keep s (qd_malloc'ed) until the tokenizer is freed; returns s or NULL. */
char *tk_own(tk_state *t, char *s)
{
    if (!s)
        return NULL;
    if (t->n_own == t->cap_own) {
        size_t nc = t->cap_own ? t->cap_own * 2 : 64;
        char **no = qd_reallocarray(t->own, nc, sizeof(char *));
        if (!no) {
            qd_free(s);
            return NULL;
        }
        t->own = no;
        t->cap_own = nc;
    }
    t->own[t->n_own++] = s;
    return s;
}

/* Load dir/name as JSON; absent -> *out NULL and QD_OK (or QD_ENOTFOUND when required). */
static int load_json(json_t **out, const char *dir, const char *name, int required)
{
    char path[4096];
    struct stat st;
    json_error_t jerr;
    *out = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return required ? qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "%s: not found", path) : QD_OK;
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return tk_err(QD_ECORRUPT, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > QD_TOKENIZER_MAX_FILE)
        return tk_err(QD_ECORRUPT, "%s: %llu bytes, over the %u-byte limit for a tokenizer file", path,
                      (unsigned long long)st.st_size, QD_TOKENIZER_MAX_FILE);
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return tk_err(QD_ECORRUPT, "%s: not valid JSON: %s (line %d column %d)", path, jerr.text, jerr.line,
                      jerr.column);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return tk_err(QD_ECORRUPT, "%s: the top level is not a JSON object", path);
    }
    return QD_OK;
}

static int read_text_file(char **out, const char *dir, const char *name)
{
    char path[4096];
    struct stat st;
    *out = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return QD_OK;
    if ((uint64_t)st.st_size > QD_TOKENIZER_MAX_FILE)
        return tk_err(QD_ECORRUPT, "%s: %llu bytes, over the %u-byte limit", path, (unsigned long long)st.st_size,
                      QD_TOKENIZER_MAX_FILE);
    FILE *f = fopen(path, "rb");
    if (!f)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    char *b = qd_malloc((size_t)st.st_size + 1);
    if (!b) {
        fclose(f);
        return QD_ENOMEM;
    }
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    fclose(f);
    b[n] = '\0';
    if (memchr(b, '\0', n)) {
        qd_free(b);
        return tk_err(QD_ECORRUPT, "%s: holds a NUL byte", path);
    }
    *out = b;
    return QD_OK;
}

/* convert_hf_to_gguf.py does_token_look_special(): added tokens that should be CONTROL though not marked special */
int tk_looks_special(const char *s)
{
    size_t n = strlen(s);
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (!strcmp(s, exact[i]))
            return 1;
#define PRE(p) (n >= sizeof(p) - 1 && !memcmp(s, p, sizeof(p) - 1))
#define SUF(p) (n >= sizeof(p) - 1 && !memcmp(s + n - (sizeof(p) - 1), p, sizeof(p) - 1))
    if (PRE("<|") && SUF("|>"))
        return 1;
    if (PRE("<\xef\xbd\x9c") && SUF("\xef\xbd\x9c>")) /* fullwidth vertical bar (deepseek-coder) */
        return 1;
    if (PRE("<unused") && SUF(">"))
        return 1;
#undef PRE
#undef SUF
    return 0;
}

/* "<0xNN>" with two hex digits */
int tk_is_byte_token(const char *s)
{
    const char *hex = "0123456789abcdefABCDEF";
    return strlen(s) == 6 && !memcmp(s, "<0x", 3) && strchr(hex, s[3]) && strchr(hex, s[4]) && s[5] == '>' &&
           s[3] && s[4];
}

/* Replace each U+2581 (lower one eighth block, SentencePiece's space) by ' ': the converter pre-normalises
 * user-defined tokens this way. Returns an owned copy or NULL (ENOMEM). */
char *tk_unspace(tk_state *t, const char *s)
{
    size_t n = strlen(s);
    char *o = qd_malloc(n + 1), *p = o;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            *p++ = ' ';
            i += 3;
        } else {
            *p++ = s[i++];
        }
    }
    *p = '\0';
    return tk_own(t, o);
}

/* ---- special tokens (gguf-py SpecialVocab) ------------------------------------------------------------------ */

const char *const tk_special_names[TK_NSPECIAL] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot"};
static const char *const special_keys[TK_NSPECIAL] = {
    "tokenizer.ggml.bos_token_id",     "tokenizer.ggml.eos_token_id",     "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
    "tokenizer.ggml.mask_token_id",    "tokenizer.ggml.eot_token_id"};

static void set_special(tk_state *t, int typ, json_int_t id, const char *from)
{
    if (id < 0) {
        qd_log(QD_LOG_WARN, "tokenizer", "%s: %s token id %lld is negative - skipped", from,
               tk_special_names[typ], (long long)id);
        return;
    }
    if (id >= t->n) {
        qd_log(QD_LOG_WARN, "tokenizer", "%s: %s token id %lld out of range (vocabulary of %lld) - skipped", from,
               tk_special_names[typ], (long long)id, (long long)t->n);
        return;
    }
    if (t->special[typ] < 0)
        t->special[typ] = (int64_t)id;
}

/* The token text a tokenizer_config.json entry names: "x" or {"content": "x", ...}. */
static const char *entry_content(json_t *e)
{
    if (json_is_string(e))
        return json_string_value(e);
    if (json_is_object(e) && json_is_string(json_object_get(e, "content")))
        return json_string_value(json_object_get(e, "content"));
    return NULL;
}

static const char *cfg_content(tk_state *t, json_t *cfg, int typ)
{
    char key[32];
    snprintf(key, sizeof(key), "%s_token", tk_special_names[typ]);
    const char *c = cfg ? entry_content(json_object_get(cfg, key)) : NULL;
    if (!c && t->stmap) /* extension: transformers reads special_tokens_map.json too */
        c = entry_content(json_object_get(t->stmap, key));
    return c;
}

static int same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

static const char *template_special(json_t *item)
{
    json_t *st = json_object_get(item, "SpecialToken");
    json_t *id = st ? json_object_get(st, "id") : NULL;
    return json_is_string(id) && *json_string_value(id) ? json_string_value(id) : NULL;
}

/* SpecialVocab._try_load_from_tokenizer_json + _try_load_from_config_json. */
int tk_load_specials(tk_state *t)
{
    json_t *cfg = t->cfg, *added = t->tj ? json_object_get(t->tj, "added_tokens") : NULL;
    const char *content[TK_NSPECIAL] = {0};
    int have_cfg = cfg != NULL || t->stmap != NULL;

    for (int k = 0; k < TK_NSPECIAL - 1; k++)
        content[k] = cfg_content(t, cfg, k);
    if (have_cfg) {
        if (!content[TK_BOS] && content[TK_CLS])
            content[TK_BOS] = content[TK_CLS];
        if (!content[TK_EOS] && content[TK_SEP])
            content[TK_EOS] = content[TK_SEP];
    }
    json_t *pp = t->tj ? json_object_get(t->tj, "post_processor") : NULL;
    if (json_is_object(pp)) {
        json_t *procs = json_object_get(pp, "processors"), *proc;
        size_t i, np = json_is_array(procs) ? json_array_size(procs) : 1;
        for (i = 0; i < np; i++) {
            proc = json_is_array(procs) ? json_array_get(procs, i) : pp;
            const char *type = json_string_value(json_object_get(proc, "type"));
            if (same(type, "RobertaProcessing")) {
                t->add[TK_BOS] = t->add[TK_EOS] = t->add[TK_SEP] = 1;
                continue;
            }
            if (!same(type, "TemplateProcessing"))
                continue;
            json_t *single = json_object_get(proc, "single");
            size_t ns = json_is_array(single) ? json_array_size(single) : 0;
            if (ns <= 1)
                continue;
            const char *first = template_special(json_array_get(single, 0));
            const char *last = template_special(json_array_get(single, ns - 1));
            if (first) {
                if (!have_cfg)
                    content[TK_BOS] = first;
                t->add[TK_BOS] = same(first, content[TK_BOS]) || same(first, content[TK_CLS]);
                if (!t->add[TK_BOS])
                    qd_log(QD_LOG_WARN, "tokenizer", "unknown leading special token '%s' in the post-processor",
                           first);
            }
            if (last) {
                if (!have_cfg) {
                    content[TK_EOS] = last;
                } else if (!same(last, content[TK_EOS])) {
                    /* the template ends a text with another token: that one is EOS, the named one EOT */
                    if (!content[TK_EOT])
                        content[TK_EOT] = content[TK_EOS];
                    content[TK_EOS] = last;
                }
                t->add[TK_EOS] = 1;
            }
        }
    }
    if (have_cfg) {
        for (int k = 0; k < TK_NSPECIAL; k++) {
            char key[32];
            snprintf(key, sizeof(key), "add_%s_token", tk_special_names[k]);
            json_t *a = cfg ? json_object_get(cfg, key) : NULL;
            if (json_is_boolean(a))
                t->add[k] = json_is_true(a);
            if (!content[k] || !json_is_array(added))
                continue;
            for (size_t i = 0; i < json_array_size(added); i++) {
                json_t *at = json_array_get(added, i);
                if (same(json_string_value(json_object_get(at, "content")), content[k])) {
                    json_t *id = json_object_get(at, "id");
                    if (json_is_integer(id))
                        set_special(t, k, json_integer_value(id), "tokenizer_config.json");
                    break;
                }
            }
        }
    }
    if (t->config) {
        json_t *tc = json_object_get(t->config, "text_config");
        for (int k = 0; k < TK_NSPECIAL; k++) {
            char key[32];
            snprintf(key, sizeof(key), "%s_token_id", tk_special_names[k]);
            json_t *v = json_object_get(t->config, key);
            if (!v && json_is_object(tc))
                v = json_object_get(tc, key);
            if (json_is_integer(v))
                set_special(t, k, json_integer_value(v), "config.json");
        }
    }
    return QD_OK;
}

/* ---- the vocabulary arrays --------------------------------------------------------------------------------- */

static int alloc_vocab(tk_state *t)
{
    size_t n = (size_t)t->n;
    t->text = qd_calloc(n, sizeof(char *));
    t->scores = qd_calloc(n, sizeof(float));
    t->types = qd_calloc(n, sizeof(int32_t));
    t->flags = qd_calloc(n, 1);
    return t->text && t->scores && t->types && t->flags ? QD_OK : QD_ENOMEM;
}

int tk_check_token(const tk_state *t, const char *s, const char *what, long long id)
{
    if (strlen(s) > QD_TOKENIZER_MAX_TOKEN_BYTES)
        return tk_err(QD_ECORRUPT, "%s: %s token %lld is %zu bytes, over the %u-byte limit", t->what, what, id,
                      strlen(s), QD_TOKENIZER_MAX_TOKEN_BYTES);
    return QD_OK;
}

/* ids nothing defined -> "[PAD<id>]", UNUSED */
int tk_pad(tk_state *t, float score)
{
    for (int64_t i = 0; i < t->n; i++) {
        if (t->text[i])
            continue;
        char b[32];
        snprintf(b, sizeof(b), "[PAD%lld]", (long long)i);
        if (!(t->text[i] = tk_own(t, qd_strdup(b))))
            return QD_ENOMEM;
        t->types[i] = QD_TOKEN_UNUSED;
        t->scores[i] = score;
        t->info->n_padded++;
    }
    return QD_OK;
}

/* llama.cpp finds the newline token at load (tested with node-llama-cpp 3.21.1: a "llama" vocabulary without one
 * aborts the process; a "gpt2" one loads and drops newlines). */
int tk_check_newline(tk_state *t, int byte_level)
{
    for (int64_t i = 0; i < t->n; i++) {
        const char *s = t->text[i];
        if (byte_level ? !strcmp(s, "\xc4\x8a") /* U+010A, byte-level '\n' */
                       : (!strcmp(s, "<0x0A>") || !strcmp(s, "\n")))
            return QD_OK;
    }
    if (byte_level) { /* llama.cpp loads it (the newline is then lost when tokenizing): warn */
        qd_log(QD_LOG_WARN, "tokenizer", "%s: the vocabulary has no byte-level newline token \"\\u010a\"", t->what);
        return QD_OK;
    }
    /* llama.cpp's SentencePiece vocabulary looks the newline up at load and aborts the process without one */
    return tk_err(QD_EUNSUPPORTED,
                  "%s: the vocabulary has no newline token (\"<0x0A>\" or \"\\n\"); llama.cpp aborts on such a file",
                  t->what);
}

/* ---- tokenizer.json: BPE / Unigram ------------------------------------------------------------------------- */

/* added_tokens: [{id, content, special, normalized, ...}] -> text/flags by id. */
static int take_added(tk_state *t)
{
    json_t *added = json_object_get(t->tj, "added_tokens");
    if (!added)
        return QD_OK;
    if (!json_is_array(added))
        return tk_err(QD_ECORRUPT, "%s: \"added_tokens\" is not an array", t->what);
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(c))
            return tk_err(QD_ECORRUPT, "%s: added_tokens[%zu] lacks an integer \"id\" or a string \"content\"",
                          t->what, i);
        json_int_t v = json_integer_value(id);
        if (v < 0 || v >= t->n)
            return tk_err(QD_ECORRUPT,
                          "%s: added token \"%.64s\" has id %lld, outside the model's %lld token embedding rows",
                          t->what, json_string_value(c), (long long)v, (long long)t->n);
        int rc = tk_check_token(t, json_string_value(c), "added", (long long)v);
        if (rc)
            return rc;
        if ((t->flags[v] & TK_F_ADDED) && strcmp(t->text[v], json_string_value(c)))
            return tk_err(QD_ECORRUPT, "%s: added tokens \"%.64s\" and \"%.64s\" share id %lld", t->what,
                          t->text[v], json_string_value(c), (long long)v);
        t->text[v] = json_string_value(c);
        t->flags[v] |= TK_F_ADDED | TK_F_DEFINED;
        if (json_is_true(json_object_get(a, "special")))
            t->flags[v] |= TK_F_SPECIAL;
        t->info->n_added++;
    }
    return QD_OK;
}

static int take_bpe_vocab(tk_state *t, json_t *vocab)
{
    const char *key;
    json_t *val;
    if (!json_is_object(vocab))
        return tk_err(QD_ECORRUPT, "%s: model.vocab is not an object of token -> id", t->what);
    if (json_object_size(vocab) > QD_TOKENIZER_MAX_VOCAB)
        return tk_err(QD_ECORRUPT, "%s: model.vocab has %zu tokens, over the limit of %d", t->what,
                      json_object_size(vocab), QD_TOKENIZER_MAX_VOCAB);
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val))
            return tk_err(QD_ECORRUPT, "%s: model.vocab[\"%.64s\"] is not an integer id", t->what, key);
        json_int_t id = json_integer_value(val);
        if (id < 0 || id >= t->n)
            return tk_err(QD_ECORRUPT,
                          "%s: model.vocab token \"%.64s\" has id %lld, outside the model's %lld token embedding "
                          "rows",
                          t->what, key, (long long)id, (long long)t->n);
        if (t->flags[id] & TK_F_BASE)
            return tk_err(QD_ECORRUPT, "%s: model.vocab tokens \"%.64s\" and \"%.64s\" share id %lld", t->what,
                          t->text[id], key, (long long)id);
        int rc = tk_check_token(t, key, "model.vocab", (long long)id);
        if (rc)
            return rc;
        t->text[id] = key;
        t->flags[id] |= TK_F_BASE | TK_F_DEFINED;
        t->info->n_base++;
    }
    return QD_OK;
}

static int take_unigram_vocab(tk_state *t, json_t *vocab)
{
    if (!json_is_array(vocab))
        return tk_err(QD_ECORRUPT, "%s: model.vocab of a Unigram model is not an array of [token, score]", t->what);
    size_t n = json_array_size(vocab);
    if ((int64_t)n > t->n)
        return tk_err(QD_ECORRUPT, "%s: model.vocab has %zu tokens, more than the model's %lld token embedding rows",
                      t->what, n, (long long)t->n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(vocab, i), *s = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(s) || !json_is_number(sc))
            return tk_err(QD_ECORRUPT, "%s: model.vocab[%zu] is not [token, score]", t->what, i);
        int rc = tk_check_token(t, json_string_value(s), "model.vocab", (long long)i);
        if (rc)
            return rc;
        t->text[i] = json_string_value(s);
        t->scores[i] = (float)json_number_value(sc);
        t->flags[i] |= TK_F_BASE | TK_F_DEFINED;
        t->info->n_base++;
    }
    return QD_OK;
}

/* ---- tokenizer.ggml.pre ------------------------------------------------------------------------------------ */

/* The Split regexes of tokenizer.json files, and the llama.cpp pre-tokenizer implementing each (llama-vocab.cpp
 * keeps the original regex beside its rewrite). */
static const struct {
    const char *regex;
    const char *pre;
} k_pre_regex[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
     "\\s+(?!\\S)|\\s+",
     "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
     "\\s+(?!\\S)|\\s+",
     "qwen2"},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt-2"},
};

static void scan_pre(json_t *p, const char **regex, int *n_split, int *bytelevel_regex, int *other)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (same(type, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers");
        for (size_t i = 0; i < json_array_size(list); i++)
            scan_pre(json_array_get(list, i), regex, n_split, bytelevel_regex, other);
    } else if (same(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *r = json_string_value(json_object_get(pat, "Regex"));
        (*n_split)++;
        if (r)
            *regex = r;
        else
            (*other)++;
    } else if (same(type, "ByteLevel")) {
        json_t *ur = json_object_get(p, "use_regex");
        if (!json_is_false(ur))
            (*bytelevel_regex)++;
    } else {
        (*other)++;
    }
}

static void detect_pre(tk_state *t)
{
    json_t *p = json_object_get(t->tj, "pre_tokenizer");
    const char *regex = NULL, *pre = NULL;
    int n_split = 0, bl = 0, other = 0;
    if (json_is_object(p))
        scan_pre(p, &regex, &n_split, &bl, &other);
    if (!other && n_split == 1 && !bl && regex) {
        for (size_t i = 0; i < sizeof(k_pre_regex) / sizeof(k_pre_regex[0]); i++)
            if (!strcmp(regex, k_pre_regex[i].regex))
                pre = k_pre_regex[i].pre;
    } else if (!other && n_split == 0 && bl == 1) {
        pre = "gpt-2"; /* ByteLevel's built-in regex is GPT-2's */
    }
    t->info->pre_known = pre != NULL;
    if (!pre) {
        qd_log(QD_LOG_WARN, "tokenizer",
               "%s: pre-tokenizer not recognised (%d Split, %d ByteLevel with regex, %d other%s%.80s): writing "
               "tokenizer.ggml.pre = \"default\"; llama.cpp may split text differently from the original tokenizer",
               t->what, n_split, bl, other, regex ? "; regex " : "", regex ? regex : "");
        pre = "default";
    }
    snprintf(t->info->pre, sizeof(t->info->pre), "%s", pre);
}

/* ---- merges ------------------------------------------------------------------------------------------------- */

static int merge_part_ok(json_t *vocab, const char *s, size_t n) { return json_object_getn(vocab, s, n) != NULL; }

static int take_merges(tk_state *t, json_t *model, json_t *vocab)
{
    json_t *merges = json_object_get(model, "merges");
    const char *prefix = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    int check_join = !prefix || !*prefix;
    char *join = NULL;
    size_t join_cap = 0;
    int rc = QD_OK;
    if (!merges || json_is_null(merges))
        return QD_OK;
    if (!json_is_array(merges))
        return tk_err(QD_ECORRUPT, "%s: model.merges is not an array", t->what);
    size_t n = json_array_size(merges);
    if (n > QD_TOKENIZER_MAX_MERGES)
        return tk_err(QD_ECORRUPT, "%s: model.merges has %zu entries, over the limit of %d", t->what, n,
                      QD_TOKENIZER_MAX_MERGES);
    if (!n)
        return QD_OK;
    t->merges = qd_calloc(n, sizeof(char *));
    if (!t->merges)
        return QD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        char *own = NULL;
        if (json_is_string(m)) {
            /* "a b": exactly one space splits the two parts (as tokenizers reads merges) */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (strlen(s) > QD_TOKENIZER_MAX_TOKEN_BYTES) {
                rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu] is %zu bytes, over the %u-byte limit", t->what, i,
                            strlen(s), QD_TOKENIZER_MAX_TOKEN_BYTES);
                goto done;
            }
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu] \"%.64s\" is not two tokens separated by one space",
                            t->what, i, s);
                goto done;
            }
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
            t->merges[i] = s;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            /* [a, b] (transformers >= 4.45): spaces inside a part are written as U+0120, like gguf-py does */
            a = json_string_value(json_array_get(m, 0)), la = strlen(a);
            b = json_string_value(json_array_get(m, 1)), lb = strlen(b);
            if (!la || !lb || la + lb > QD_TOKENIZER_MAX_TOKEN_BYTES) {
                rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu]: empty part or over the %u-byte limit", t->what, i,
                            QD_TOKENIZER_MAX_TOKEN_BYTES);
                goto done;
            }
            own = qd_malloc(2 * (la + lb) + 2);
            if (!own || !tk_own(t, own)) {
                rc = QD_ENOMEM;
                goto done;
            }
            char *o = own;
            for (size_t k = 0; k < la; k++)
                a[k] == ' ' ? (void)(*o++ = '\xc4', *o++ = '\xa0') : (void)(*o++ = a[k]);
            *o++ = ' ';
            for (size_t k = 0; k < lb; k++)
                b[k] == ' ' ? (void)(*o++ = '\xc4', *o++ = '\xa0') : (void)(*o++ = b[k]);
            *o = '\0';
            t->merges[i] = own;
        } else {
            rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", t->what, i);
            goto done;
        }
        if (!merge_part_ok(vocab, a, la) || !merge_part_ok(vocab, b, lb)) {
            rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu] \"%.*s\" + \"%.*s\" names a token not in model.vocab",
                        t->what, i, (int)(la > 64 ? 64 : la), a, (int)(lb > 64 ? 64 : lb), b);
            goto done;
        }
        if (check_join) {
            if (la + lb + 1 > join_cap) {
                qd_free(join);
                join_cap = 2 * (la + lb + 1);
                if (!(join = qd_malloc(join_cap))) {
                    rc = QD_ENOMEM;
                    goto done;
                }
            }
            memcpy(join, a, la);
            memcpy(join + la, b, lb);
            if (!merge_part_ok(vocab, join, la + lb)) {
                rc = tk_err(QD_ECORRUPT, "%s: model.merges[%zu]: the merged token \"%.*s\" is not in model.vocab",
                            t->what, i, (int)(la + lb > 64 ? 64 : la + lb), join);
                goto done;
            }
        }
    }
    t->n_merges = n;
done:
    qd_free(join);
    return rc;
}

/* ---- the three tokenizer.json paths ------------------------------------------------------------------------ */

/* convert_hf_to_gguf.py get_vocab_base() + _set_vocab_gpt2() */
static int json_gpt2(tk_state *t, json_t *model, json_t *vocab)
{
    int rc;
    snprintf(t->info->model, sizeof(t->info->model), "gpt2");
    detect_pre(t);
    for (int64_t i = 0; i < t->n; i++) {
        if (!(t->flags[i] & TK_F_DEFINED))
            continue;
        if (t->flags[i] & TK_F_ADDED) {
            if ((t->flags[i] & TK_F_SPECIAL) || tk_looks_special(t->text[i])) {
                t->types[i] = QD_TOKEN_CONTROL;
            } else {
                t->types[i] = QD_TOKEN_USER_DEFINED;
                if (!(t->text[i] = tk_unspace(t, t->text[i])))
                    return QD_ENOMEM;
            }
        } else {
            t->types[i] = QD_TOKEN_NORMAL;
        }
    }
    if ((rc = tk_pad(t, 0.0f)) || (rc = take_merges(t, model, vocab)) || (rc = tk_check_newline(t, 1)))
        return rc;
    t->write_scores = 0;
    return QD_OK;
}

/* gguf-py LlamaHfVocab + _set_vocab_llama_hf(): a SentencePiece-style BPE exported by transformers */
static int json_llama_bpe(tk_state *t)
{
    int64_t n_base = (int64_t)t->info->n_base;
    snprintf(t->info->model, sizeof(t->info->model), "llama");
    snprintf(t->info->pre, sizeof(t->info->pre), "default");
    t->info->pre_known = true;
    for (int64_t i = 0; i < t->n; i++) {
        if (!(t->flags[i] & TK_F_DEFINED))
            continue;
        t->scores[i] = -1000.0f;
        int special = (t->flags[i] & TK_F_SPECIAL) || tk_is_special_id(t, i);
        if (i < n_base || !(t->flags[i] & TK_F_ADDED))
            t->types[i] = tk_is_byte_token(t->text[i]) ? QD_TOKEN_BYTE : special ? QD_TOKEN_CONTROL : QD_TOKEN_NORMAL;
        else
            t->types[i] = special ? QD_TOKEN_CONTROL : QD_TOKEN_USER_DEFINED;
    }
    t->write_scores = 1;
    int rc = tk_pad(t, -1000.0f);
    return rc ? rc : tk_check_newline(t, 0);
}

/* Unigram: the SentencePiece path's output for the same pieces (scores kept; unk_id UNKNOWN; <0xNN> BYTE when
 * byte_fallback). */
static int json_unigram(tk_state *t, json_t *model)
{
    json_t *unk = json_object_get(model, "unk_id");
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    snprintf(t->info->model, sizeof(t->info->model), "llama");
    snprintf(t->info->pre, sizeof(t->info->pre), "default");
    t->info->pre_known = true;
    if (json_is_integer(unk) && json_integer_value(unk) >= 0 && json_integer_value(unk) < (json_int_t)t->info->n_base)
        set_special(t, TK_UNK, json_integer_value(unk), "tokenizer.json");
    for (int64_t i = 0; i < t->n; i++) {
        if (!(t->flags[i] & TK_F_DEFINED))
            continue;
        if (t->flags[i] & TK_F_ADDED) {
            if (!(t->flags[i] & TK_F_BASE))
                t->scores[i] = -1000.0f;
            if ((t->flags[i] & TK_F_SPECIAL) || tk_looks_special(t->text[i])) {
                t->types[i] = QD_TOKEN_CONTROL;
            } else {
                t->types[i] = QD_TOKEN_USER_DEFINED;
                if (!(t->text[i] = tk_unspace(t, t->text[i])))
                    return QD_ENOMEM;
            }
        } else if (json_is_integer(unk) && json_integer_value(unk) == i) {
            t->types[i] = QD_TOKEN_UNKNOWN;
        } else if (byte_fallback && tk_is_byte_token(t->text[i])) {
            t->types[i] = QD_TOKEN_BYTE;
        } else {
            t->types[i] = QD_TOKEN_NORMAL;
        }
    }
    t->write_scores = 1;
    int rc = tk_pad(t, -10000.0f);
    return rc ? rc : tk_check_newline(t, 0);
}

int tk_is_special_id(const tk_state *t, int64_t id)
{
    for (int k = 0; k < TK_NSPECIAL; k++)
        if (t->special[k] == id)
            return 1;
    return 0;
}

static int from_json(tk_state *t)
{
    json_t *model = json_object_get(t->tj, "model"), *vocab;
    int rc;
    if (!json_is_object(model))
        return tk_err(QD_ECORRUPT, "%s: no \"model\" object", t->what);
    vocab = json_object_get(model, "vocab");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type) /* old files leave the type out: tell by the vocab's shape */
        type = json_is_array(vocab) ? "Unigram" : json_object_get(model, "merges") ? "BPE" : "";
    if (!vocab)
        return tk_err(QD_ECORRUPT, "%s: model has no \"vocab\"", t->what);
    if (strcmp(type, "BPE") && strcmp(type, "Unigram"))
        return tk_err(QD_EUNSUPPORTED, "%s: model type \"%.32s\" has no llama-family GGUF form here (BPE and Unigram "
                      "are supported)", t->what, type);
    int unigram = !strcmp(type, "Unigram");
    if ((rc = unigram ? take_unigram_vocab(t, vocab) : take_bpe_vocab(t, vocab)) || (rc = take_added(t)) ||
        (rc = tk_load_specials(t)))
        return rc;
    if (unigram)
        return json_unigram(t, model);
    json_t *dec = json_object_get(t->tj, "decoder");
    int byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    if (byte_fallback && same(json_string_value(json_object_get(dec, "type")), "Sequence"))
        return json_llama_bpe(t);
    return json_gpt2(t, model, vocab);
}

/* ---- writing ------------------------------------------------------------------------------------------------ */

static int write_chat_template(tk_state *t, qd_gguf_writer *w)
{
    json_t *ct = t->cfg ? json_object_get(t->cfg, "chat_template") : NULL, *ctj = NULL;
    char *jinja = NULL;
    int rc = QD_OK;
    if (!t->cfg)
        return QD_OK;
    if (!ct || json_is_null(ct)) {
        if ((rc = read_text_file(&jinja, t->dir, "chat_template.jinja")))
            return rc;
        if (jinja) {
            rc = qd_gguf_set_str(w, "tokenizer.chat_template", jinja);
            t->info->chat_template = rc == QD_OK;
            qd_free(jinja);
            return rc;
        }
        if ((rc = load_json(&ctj, t->dir, "chat_template.json", 0)))
            return rc;
        ct = ctj ? json_object_get(ctj, "chat_template") : NULL;
    }
    if (json_is_string(ct)) {
        rc = qd_gguf_set_str(w, "tokenizer.chat_template", json_string_value(ct));
        t->info->chat_template = rc == QD_OK;
    } else if (json_is_array(ct)) {
        /* [{name, template}]: "default" is tokenizer.chat_template, the others tokenizer.chat_template.<name>
         * (name with characters other than [A-Za-z0-9] replaced by '_'), listed in tokenizer.chat_templates */
        const char **names = qd_calloc(json_array_size(ct) + 1, sizeof(char *));
        size_t nn = 0;
        if (!names)
            rc = QD_ENOMEM;
        for (size_t i = 0; !rc && i < json_array_size(ct); i++) {
            json_t *e = json_array_get(ct, i);
            const char *nm = json_string_value(json_object_get(e, "name"));
            const char *tp = json_string_value(json_object_get(e, "template"));
            if (!nm || !*nm || !tp || strlen(nm) > 200)
                continue;
            char clean[208], key[256];
            size_t k;
            for (k = 0; nm[k]; k++) {
                char c = nm[k];
                clean[k] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c : '_';
            }
            clean[k] = '\0';
            if (!strcmp(clean, "default")) {
                rc = qd_gguf_set_str(w, "tokenizer.chat_template", tp);
                t->info->chat_template = rc == QD_OK;
                continue;
            }
            snprintf(key, sizeof(key), "tokenizer.chat_template.%s", clean);
            if (!(rc = qd_gguf_set_str(w, key, tp))) {
                size_t j;
                for (j = 0; j < nn && strcmp(names[j], clean); j++)
                    ;
                if (j == nn && !(names[nn++] = tk_own(t, qd_strdup(clean))))
                    rc = QD_ENOMEM;
            }
        }
        if (!rc && nn)
            rc = qd_gguf_set_str_arr(w, "tokenizer.chat_templates", names, nn);
        qd_free(names);
    } else if (ct && !json_is_null(ct)) {
        qd_log(QD_LOG_WARN, "tokenizer", "tokenizer_config.json: chat_template is neither a string nor a list - "
                                         "ignored");
    }
    json_decref(ctj);
    return rc;
}

static int write_keys(tk_state *t, qd_gguf_writer *w)
{
    int rc;
    size_t n = (size_t)t->n;
    if ((rc = qd_gguf_set_str(w, "tokenizer.ggml.model", t->info->model)) ||
        (rc = qd_gguf_set_str(w, "tokenizer.ggml.pre", t->info->pre)) ||
        (rc = qd_gguf_set_str_arr(w, "tokenizer.ggml.tokens", t->text, n)))
        return rc;
    if (t->write_scores && (rc = qd_gguf_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_F32, t->scores, n)))
        return rc;
    if ((rc = qd_gguf_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_I32, t->types, n)))
        return rc;
    if (t->n_merges && (rc = qd_gguf_set_str_arr(w, "tokenizer.ggml.merges", t->merges, t->n_merges)))
        return rc;
    t->info->n_merges = t->n_merges;
    for (int k = 0; k < TK_NSPECIAL; k++)
        if (t->special[k] >= 0 && (rc = qd_gguf_set_u32(w, special_keys[k], (uint32_t)t->special[k])))
            return rc;
    if (t->add[TK_BOS] >= 0 && (rc = qd_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add[TK_BOS] != 0)))
        return rc;
    if (t->add[TK_EOS] >= 0 && (rc = qd_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", t->add[TK_EOS] != 0)))
        return rc;
    if (t->add[TK_SEP] >= 0 && (rc = qd_gguf_set_bool(w, "tokenizer.ggml.add_sep_token", t->add[TK_SEP] != 0)))
        return rc;
    t->info->n_tokens = n;
    return write_chat_template(t, w);
}

int qd_tokenizer_from_hf(qd_tokenizer_info *info, qd_gguf_writer *w, const char *dir, int64_t n_vocab)
{
    tk_state t;
    qd_tokenizer_info dummy;
    char path[4096], spm_path[4096];
    struct stat st;
    int rc;
    memset(&t, 0, sizeof(t));
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    t.info = info;
    t.dir = dir;
    t.n = n_vocab;
    for (int k = 0; k < TK_NSPECIAL; k++) {
        t.special[k] = -1;
        t.add[k] = -1;
    }
    if (!w || !dir)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "tokenizer: no writer or directory");
    if (n_vocab < 1 || n_vocab > QD_TOKENIZER_MAX_VOCAB)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "tokenizer: vocabulary of %lld tokens (need 1..%d)",
                            (long long)n_vocab, QD_TOKENIZER_MAX_VOCAB);
    snprintf(spm_path, sizeof(spm_path), "%s/tokenizer.model", dir);
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    int have_spm = stat(spm_path, &st) == 0 && S_ISREG(st.st_mode);
    int have_json = stat(path, &st) == 0;
    if (!have_spm && !have_json)
        return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "%s: no tokenizer.json or tokenizer.model", dir);
    if ((rc = load_json(&t.cfg, dir, "tokenizer_config.json", 0)) ||
        (rc = load_json(&t.stmap, dir, "special_tokens_map.json", 0)) ||
        (rc = load_json(&t.config, dir, "config.json", 0)))
        goto done;
    if (have_json && (rc = load_json(&t.tj, dir, "tokenizer.json", 1))) {
        if (rc == QD_ENOTFOUND) /* a dangling link: report it as a broken file, not as "no tokenizer" */
            rc = tk_err(QD_ECORRUPT, "%s: cannot be read", path);
        goto done;
    }
    if ((rc = alloc_vocab(&t)))
        goto done;
    if (have_spm) {
        t.what = spm_path;
        info->source = "tokenizer.model";
        rc = tk_from_spm(&t, spm_path);
    } else {
        t.what = path;
        info->source = "tokenizer.json";
        rc = from_json(&t);
    }
    if (!rc)
        rc = write_keys(&t, w);
    if (!rc)
        qd_log(QD_LOG_INFO, "tokenizer",
               "%s: %s model, pre %s, %llu tokens (%llu base, %llu added, %llu padding), %llu merges%s", t.what,
               info->model, info->pre, (unsigned long long)info->n_tokens, (unsigned long long)info->n_base,
               (unsigned long long)info->n_added, (unsigned long long)info->n_padded,
               (unsigned long long)info->n_merges, info->chat_template ? ", chat template" : "");
done:
    for (size_t i = 0; i < t.n_own; i++)
        qd_free(t.own[i]);
    qd_free(t.own);
    qd_free(t.text);
    qd_free(t.scores);
    qd_free(t.types);
    qd_free(t.flags);
    qd_free(t.merges);
    json_decref(t.tj);
    json_decref(t.cfg);
    json_decref(t.stmap);
    json_decref(t.config);
    return rc;
}
