/*
 * tokenizer_spm.c - SentencePiece tokenizer.model as GGUF "llama" tokenizer keys (convert_hf_to_gguf.py
 * _create_vocab_sentencepiece).
 *
 * tokenizer.model is a protobuf ModelProto. We read only what the converter reads from it:
 *   ModelProto     field 1 (repeated, length-delimited): SentencePiece
 *   SentencePiece  field 1 string piece, field 2 float score (fixed32), field 3 enum type (varint;
 *                  1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE; default NORMAL)
 * Every other field is skipped by its wire type; groups (wire types 3, 4) and lengths past their message are
 * errors. Types map as the converter maps them: UNKNOWN, CONTROL, UNUSED and BYTE keep theirs, the rest
 * (NORMAL, USER_DEFINED) become NORMAL. Ids at or past the model's embedding rows are dropped with a warning (the
 * converter does the same); missing ids become "[PAD<id>]" (score -10000, UNUSED). added_tokens.json and
 * tokenizer_config.json's added_tokens_decoder then override ids with score -1000, USER_DEFINED or CONTROL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/log.h"
#include "tokenizer_int.h"

typedef struct pb {
    const uint8_t *p;
    size_t len, pos;
} pb;

static int pb_varint(pb *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->pos >= b->len)
            return -1;
        uint8_t c = b->p[b->pos++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Skip a field of wire type wt; -1 on a malformed or unsupported field. */
static int pb_skip(pb *b, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0:
        return pb_varint(b, &v);
    case 1:
        if (b->len - b->pos < 8)
            return -1;
        b->pos += 8;
        return 0;
    case 2:
        if (pb_varint(b, &v) || v > b->len - b->pos)
            return -1;
        b->pos += (size_t)v;
        return 0;
    case 5:
        if (b->len - b->pos < 4)
            return -1;
        b->pos += 4;
        return 0;
    default:
        return -1;
    }
}

static int read_file(uint8_t **out, size_t *len, const char *path)
{
    struct stat st;
    FILE *f;
    *out = NULL;
    if (stat(path, &st) != 0)
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    if ((uint64_t)st.st_size > QD_TOKENIZER_MAX_FILE)
        return tk_err(QD_ECORRUPT, "%s: %llu bytes, over the %u-byte limit for a tokenizer file", path,
                      (unsigned long long)st.st_size, QD_TOKENIZER_MAX_FILE);
    if (!(f = fopen(path, "rb")))
        return qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    *out = qd_malloc((size_t)st.st_size + 1);
    if (!*out) {
        fclose(f);
        return QD_ENOMEM;
    }
    *len = fread(*out, 1, (size_t)st.st_size, f);
    fclose(f);
    return QD_OK;
}

static int parse_piece(tk_state *t, pb *m, int64_t id)
{
    const uint8_t *s = NULL;
    size_t sl = 0;
    float score = 0.0f;
    uint64_t type = 1, key, v;
    while (m->pos < m->len) {
        if (pb_varint(m, &key))
            return tk_err(QD_ECORRUPT, "%s: piece %lld: truncated field key", t->what, (long long)id);
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(m, &v) || v > m->len - m->pos)
                return tk_err(QD_ECORRUPT, "%s: piece %lld: string runs past its message", t->what, (long long)id);
            s = m->p + m->pos, sl = (size_t)v;
            m->pos += (size_t)v;
        } else if (field == 2 && wt == 5) {
            uint32_t u;
            if (m->len - m->pos < 4)
                return tk_err(QD_ECORRUPT, "%s: piece %lld: truncated score", t->what, (long long)id);
            u = (uint32_t)m->p[m->pos] | (uint32_t)m->p[m->pos + 1] << 8 | (uint32_t)m->p[m->pos + 2] << 16 |
                (uint32_t)m->p[m->pos + 3] << 24;
            memcpy(&score, &u, 4);
            m->pos += 4;
        } else if (field == 3 && wt == 0) {
            if (pb_varint(m, &type))
                return tk_err(QD_ECORRUPT, "%s: piece %lld: truncated type", t->what, (long long)id);
        } else if (pb_skip(m, wt)) {
            return tk_err(QD_ECORRUPT, "%s: piece %lld: malformed field %u (wire type %u)", t->what, (long long)id,
                          field, wt);
        }
    }
    if (!s)
        return tk_err(QD_ECORRUPT, "%s: piece %lld has no text", t->what, (long long)id);
    if (sl > QD_TOKENIZER_MAX_TOKEN_BYTES || memchr(s, '\0', sl))
        return tk_err(QD_ECORRUPT, "%s: piece %lld is over %u bytes or holds a NUL byte", t->what, (long long)id,
                      QD_TOKENIZER_MAX_TOKEN_BYTES);
    if (id >= t->n)
        return 1; /* past the model's rows: dropped by the caller */
    char *c = tk_own(t, qd_strndup((const char *)s, sl));
    if (!c)
        return QD_ENOMEM;
    t->text[id] = c;
    t->scores[id] = score;
    t->types[id] = type == 2 ? QD_TOKEN_UNKNOWN : type == 3 ? QD_TOKEN_CONTROL : type == 5 ? QD_TOKEN_UNUSED
                 : type == 6 ? QD_TOKEN_BYTE : QD_TOKEN_NORMAL;
    t->flags[id] |= TK_F_DEFINED | TK_F_BASE;
    t->info->n_base++;
    return QD_OK;
}

static int set_added(tk_state *t, json_int_t id, const char *content, int control, const char *from)
{
    if (id < 0 || id >= t->n) {
        qd_log(QD_LOG_WARN, "tokenizer", "%s: token %lld \"%.64s\" is outside the %lld embedding rows - ignored",
               from, (long long)id, content, (long long)t->n);
        return QD_OK;
    }
    int rc = tk_check_token(t, content, from, (long long)id);
    if (rc)
        return rc;
    if (!(t->flags[id] & TK_F_ADDED))
        t->info->n_added++;
    t->text[id] = control ? content : tk_unspace(t, content);
    if (!t->text[id])
        return QD_ENOMEM;
    t->scores[id] = -1000.0f;
    t->types[id] = control ? QD_TOKEN_CONTROL : QD_TOKEN_USER_DEFINED;
    t->flags[id] |= TK_F_DEFINED | TK_F_ADDED;
    return QD_OK;
}

int tk_from_spm(tk_state *t, const char *path)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int64_t id = 0, dropped = 0;
    uint64_t key, v;
    int rc;
    json_t *at = NULL;
    if ((rc = read_file(&buf, &len, path)))
        return rc;
    pb b = {buf, len, 0};
    while (b.pos < b.len) {
        if (pb_varint(&b, &key)) {
            rc = tk_err(QD_ECORRUPT, "%s: truncated field key at byte %zu", path, b.pos);
            goto done;
        }
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1 && wt == 2) {
            if (pb_varint(&b, &v) || v > b.len - b.pos) {
                rc = tk_err(QD_ECORRUPT, "%s: piece %lld runs past the end of the file", path, (long long)id);
                goto done;
            }
            if (id >= QD_TOKENIZER_MAX_VOCAB) {
                rc = tk_err(QD_ECORRUPT, "%s: more than %d pieces", path, QD_TOKENIZER_MAX_VOCAB);
                goto done;
            }
            pb m = {b.p + b.pos, (size_t)v, 0};
            b.pos += (size_t)v;
            rc = parse_piece(t, &m, id);
            if (rc == 1) {
                dropped++;
                rc = QD_OK;
            }
            if (rc)
                goto done;
            id++;
        } else if (pb_skip(&b, wt)) {
            rc = tk_err(QD_ECORRUPT, "%s: malformed field %u (wire type %u) at byte %zu", path, field, wt, b.pos);
            goto done;
        }
    }
    if (!id) {
        rc = tk_err(QD_ECORRUPT, "%s: no pieces (not a SentencePiece model?)", path);
        goto done;
    }
    if (dropped)
        qd_log(QD_LOG_WARN, "tokenizer", "%s: %lld pieces past the model's %lld embedding rows ignored", path,
               (long long)dropped, (long long)t->n);
    /* added_tokens.json: {"text": id} */
    {
        char p2[4096];
        struct stat st;
        json_error_t jerr;
        snprintf(p2, sizeof(p2), "%s/added_tokens.json", t->dir);
        if (stat(p2, &st) == 0) {
            if ((uint64_t)st.st_size > QD_TOKENIZER_MAX_FILE) {
                rc = tk_err(QD_ECORRUPT, "%s: over the %u-byte limit", p2, QD_TOKENIZER_MAX_FILE);
                goto done;
            }
            if (!(at = json_load_file(p2, JSON_REJECT_DUPLICATES, &jerr)) || !json_is_object(at)) {
                rc = tk_err(QD_ECORRUPT, "%s: not a JSON object of token -> id%s%s", p2, at ? "" : ": ",
                            at ? "" : jerr.text);
                goto done;
            }
            const char *k;
            json_t *val;
            json_object_foreach(at, k, val) {
                if (!json_is_integer(val)) {
                    rc = tk_err(QD_ECORRUPT, "%s: \"%.64s\" has no integer id", p2, k);
                    goto done;
                }
                if ((rc = set_added(t, json_integer_value(val), k, 0, "added_tokens.json")))
                    goto done;
            }
        }
    }
    /* tokenizer_config.json added_tokens_decoder: {"id": {"content": ..., "special": ...}} */
    if (t->cfg) {
        json_t *atd = json_object_get(t->cfg, "added_tokens_decoder"), *val;
        const char *k;
        if (atd && !json_is_object(atd)) {
            rc = tk_err(QD_ECORRUPT, "tokenizer_config.json: added_tokens_decoder is not an object");
            goto done;
        }
        json_object_foreach(atd, k, val) {
            char *end;
            errno = 0;
            long long tid = strtoll(k, &end, 10);
            const char *c = json_string_value(json_object_get(val, "content"));
            if (!*k || *end || errno || !c) {
                rc = tk_err(QD_ECORRUPT, "tokenizer_config.json: added_tokens_decoder[\"%.32s\"] is not an id with "
                            "a \"content\" string", k);
                goto done;
            }
            int control = json_is_true(json_object_get(val, "special")) || tk_looks_special(c);
            if ((rc = set_added(t, (json_int_t)tid, c, control, "tokenizer_config.json")))
                goto done;
        }
    }
    snprintf(t->info->model, sizeof(t->info->model), "llama");
    snprintf(t->info->pre, sizeof(t->info->pre), "default");
    t->info->pre_known = true;
    t->write_scores = 1;
    if ((rc = tk_pad(t, -10000.0f)) || (rc = tk_load_specials(t)) || (rc = tk_check_newline(t, 0)))
        goto done;
done:
    json_decref(at);
    qd_free(buf);
    return rc;
}
