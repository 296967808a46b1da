/* tokenizer_int.h - private to quantd/io/tokenizer*.c: the state of one tokenizer conversion. */
#ifndef QD_TOKENIZER_INT_H
#define QD_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qd/tokenizer.h"

/* special token kinds, in gguf-py SpecialVocab's order (eot only through the post-processor rule) */
enum { TK_BOS, TK_EOS, TK_UNK, TK_SEP, TK_PAD, TK_CLS, TK_MASK, TK_EOT, TK_NSPECIAL };

/* flags per id */
#define TK_F_DEFINED 1u /* some file gives this id a token */
#define TK_F_BASE 2u    /* from the base vocabulary (model.vocab / SentencePiece pieces) */
#define TK_F_ADDED 4u   /* from added tokens */
#define TK_F_SPECIAL 8u /* an added token marked "special": true */

typedef struct tk_state {
    const char *dir;
    const char *what;        /* the file being converted, for messages */
    int64_t n;               /* tokens to write: the model's embedding rows */
    const char **text;       /* [n] token text: borrowed from the JSON or owned (own[]) */
    float *scores;           /* [n] */
    int32_t *types;          /* [n] qd_token_type */
    uint8_t *flags;          /* [n] TK_F_* */
    const char **merges;     /* [n_merges] "a b" */
    size_t n_merges;
    int write_scores;        /* tokenizer.ggml.scores is written (llama) */
    int64_t special[TK_NSPECIAL]; /* ids, -1 unset */
    int add[TK_NSPECIAL];    /* add_<typ>_token: -1 unset, 0, 1 */
    char **own;              /* strings freed with the state */
    size_t n_own, cap_own;
    json_t *tj;              /* tokenizer.json or NULL */
    json_t *cfg;             /* tokenizer_config.json or NULL */
    json_t *stmap;           /* special_tokens_map.json or NULL */
    json_t *config;          /* config.json or NULL */
    qd_tokenizer_info *info;
} tk_state;

extern const char *const tk_special_names[TK_NSPECIAL];

int tk_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *tk_own(tk_state *t, char *s);
char *tk_unspace(tk_state *t, const char *s);
int tk_looks_special(const char *s);
int tk_is_byte_token(const char *s);
int tk_is_special_id(const tk_state *t, int64_t id);
int tk_check_token(const tk_state *t, const char *s, const char *what, long long id);
int tk_pad(tk_state *t, float score);
int tk_load_specials(tk_state *t);
int tk_check_newline(tk_state *t, int byte_level); /* llama.cpp needs a newline token */

/* tokenizer.model (tokenizer_spm.c): fills text/scores/types, applies added tokens, pads. */
int tk_from_spm(tk_state *t, const char *path);

#endif
