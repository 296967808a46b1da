/*
 * tokenizer.h - a Hugging Face tokenizer (tokenizer.json, tokenizer.model) as GGUF tokenizer metadata, the way
 * llama.cpp's convert_hf_to_gguf.py writes it, so that a GGUF quantd makes from a safetensors folder carries the
 * model's real vocabulary instead of the placeholder one.
 *
 * What is read (all beside the weights, in one directory):
 *   tokenizer.model        SentencePiece ModelProto: pieces, scores, types (preferred when present, as the
 *                          converter prefers it); added_tokens.json and tokenizer_config.json added_tokens_decoder
 *                          override pieces
 *   tokenizer.json         HF "fast" tokenizer: model BPE (byte-level GPT-2/Llama-3 style -> "gpt2"; with
 *                          byte_fallback and a Sequence decoder, Llama-2 style -> "llama") or Unigram (-> "llama"),
 *                          added_tokens, pre_tokenizer (for tokenizer.ggml.pre), post_processor (add_bos/add_eos)
 *   tokenizer_config.json  bos/eos/unk/sep/pad/cls/mask token names, add_bos_token/add_eos_token, chat_template
 *   special_tokens_map.json  token names tokenizer_config.json lacks
 *   chat_template.jinja / chat_template.json  the chat template when tokenizer_config.json has none
 *   config.json            {bos,eos,...}_token_id when the files above name none
 * docs/MODELS.md ("Tokenizers") lists the keys written and where quantd differs from the converter.
 */
#ifndef QD_TOKENIZER_H
#define QD_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/** GGUF token types (llama.cpp's llama_token_type / gguf-py TokenType). */
typedef enum qd_token_type {
    QD_TOKEN_NORMAL = 1,
    QD_TOKEN_UNKNOWN = 2,
    QD_TOKEN_CONTROL = 3,
    QD_TOKEN_USER_DEFINED = 4,
    QD_TOKEN_UNUSED = 5,
    QD_TOKEN_BYTE = 6
} qd_token_type;

/** Upper bounds on what a tokenizer may hold (each a clear QD_ECORRUPT beyond). */
#define QD_TOKENIZER_MAX_VOCAB (1 << 24)          /**< tokens (ids 0..16M-1) */
#define QD_TOKENIZER_MAX_MERGES (1 << 24)         /**< BPE merges */
#define QD_TOKENIZER_MAX_FILE (256u << 20)        /**< bytes of one tokenizer file */
#define QD_TOKENIZER_MAX_TOKEN_BYTES (64u << 10)  /**< bytes of one token or merge */

/** What was written. */
typedef struct qd_tokenizer_info {
    const char *source;   /**< "tokenizer.json" or "tokenizer.model" (static string) */
    char model[16];       /**< tokenizer.ggml.model: "gpt2" or "llama" */
    char pre[32];         /**< tokenizer.ggml.pre */
    bool pre_known;       /**< false: the pre-tokenizer was not recognised and "default" was written */
    uint64_t n_tokens;    /**< tokens written (= n_vocab) */
    uint64_t n_base;      /**< ids taken from the base vocabulary */
    uint64_t n_added;     /**< ids taken from added tokens */
    uint64_t n_padded;    /**< [PADn] tokens written for ids nothing defines */
    uint64_t n_merges;    /**< merges written (gpt2 only) */
    bool chat_template;   /**< tokenizer.chat_template written */
} qd_tokenizer_info;

/**
 * Read the Hugging Face tokenizer in dir and set the tokenizer.* keys on w, for a model of n_vocab token
 * embedding rows (ids nothing defines become "[PAD<id>]" tokens of type UNUSED, as the converter pads).
 * @param[out] info  what was written (may be NULL)
 * @param[in]  w     the writer that receives the keys
 * @param[in]  dir   the model's directory
 * @param[in]  n_vocab  token embedding rows (1..QD_TOKENIZER_MAX_VOCAB)
 * @return QD_OK; QD_ENOTFOUND (neither tokenizer.json nor tokenizer.model in dir: the caller falls back to the
 *         placeholder vocabulary); QD_ECORRUPT (malformed file: bad JSON, no model, ids out of range or
 *         duplicated, merges naming unknown tokens, limits exceeded; the message names the file and field);
 *         QD_EUNSUPPORTED (a tokenizer type llama.cpp has no GGUF form for here: WordPiece, WordLevel; a
 *         vocabulary without a newline token, which llama.cpp aborts on); QD_EINVAL (n_vocab); QD_EIO; QD_ENOMEM
 * @note On error, keys already set on w may remain; callers discard the writer.
 */
int qd_tokenizer_from_hf(qd_tokenizer_info *info, qd_gguf_writer *w, const char *dir, int64_t n_vocab);

#ifdef __cplusplus
}
#endif
#endif
