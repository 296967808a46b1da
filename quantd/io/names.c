/*
 * names.c - tensor names across Hugging Face, GGUF and llama2.c (Meta) checkpoints, and the Q/K row permutation.
 *
 * Why the permutation: Meta's llama (and llama2.c) rotate pairs of adjacent dimensions (2i, 2i+1) in each head.
 * The Hugging Face conversion reordered the rows of wq and wk so that its "rotate_half" RoPE pairs dimension i with
 * i + hd/2. llama.cpp uses Meta's pairing, so its converter undoes that reordering for HF checkpoints; llama2.c
 * weights are already in Meta order and are taken as they are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/err.h"
#include "qd/model.h"

/* Per-layer names: GGUF suffix, HF suffix, llama2.c/Meta suffix, permutation (HF <-> GGUF). */
static const struct layer_name {
    const char *gguf, *hf, *meta;
    qd_name_permute permute;
} layer_names[] = {
    {"attn_norm.weight", "input_layernorm.weight", "attention_norm.weight", QD_PERMUTE_NONE},
    {"attn_q.weight", "self_attn.q_proj.weight", "attention.wq.weight", QD_PERMUTE_Q},
    {"attn_k.weight", "self_attn.k_proj.weight", "attention.wk.weight", QD_PERMUTE_K},
    {"attn_v.weight", "self_attn.v_proj.weight", "attention.wv.weight", QD_PERMUTE_NONE},
    {"attn_output.weight", "self_attn.o_proj.weight", "attention.wo.weight", QD_PERMUTE_NONE},
    {"ffn_norm.weight", "post_attention_layernorm.weight", "ffn_norm.weight", QD_PERMUTE_NONE},
    {"ffn_gate.weight", "mlp.gate_proj.weight", "feed_forward.w1.weight", QD_PERMUTE_NONE},
    {"ffn_down.weight", "mlp.down_proj.weight", "feed_forward.w2.weight", QD_PERMUTE_NONE},
    {"ffn_up.weight", "mlp.up_proj.weight", "feed_forward.w3.weight", QD_PERMUTE_NONE},
};

static const struct global_name {
    const char *gguf, *hf, *meta;
} global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight", "tok_embeddings.weight"},
    {"output_norm.weight", "model.norm.weight", "norm.weight"},
    {"output.weight", "lm_head.weight", "output.weight"},
};

static const char *layer_prefix(qd_name_scheme s)
{
    return s == QD_NAMES_GGUF ? "blk." : s == QD_NAMES_HF ? "model.layers." : "layers.";
}

static const char *pick(const char *gguf, const char *hf, const char *meta, qd_name_scheme s)
{
    return s == QD_NAMES_GGUF ? gguf : s == QD_NAMES_HF ? hf : meta;
}

int qd_name_map(char *out, size_t cap, qd_name_permute *permute, const char *name, qd_name_scheme from,
                qd_name_scheme to)
{
    int n;
    if (permute)
        *permute = QD_PERMUTE_NONE;
    for (size_t i = 0; i < sizeof(global_names) / sizeof(global_names[0]); i++) {
        const struct global_name *g = &global_names[i];
        if (!strcmp(name, pick(g->gguf, g->hf, g->meta, from))) {
            n = snprintf(out, cap, "%s", pick(g->gguf, g->hf, g->meta, to));
            goto check;
        }
    }
    const char *pre = layer_prefix(from);
    size_t pl = strlen(pre);
    if (!strncmp(name, pre, pl) && name[pl] >= '0' && name[pl] <= '9') {
        char *end;
        long layer = strtol(name + pl, &end, 10);
        if (*end == '.' && layer >= 0 && layer < 1000000) {
            for (size_t i = 0; i < sizeof(layer_names) / sizeof(layer_names[0]); i++) {
                const struct layer_name *l = &layer_names[i];
                if (!strcmp(end + 1, pick(l->gguf, l->hf, l->meta, from))) {
                    n = snprintf(out, cap, "%s%ld.%s", layer_prefix(to), layer, pick(l->gguf, l->hf, l->meta, to));
                    if (permute && ((from == QD_NAMES_HF) != (to == QD_NAMES_HF)))
                        *permute = l->permute;
                    goto check;
                }
            }
        }
    }
    return qd_error_set(QD_ENOTFOUND, QD_EC_INVALID, "no counterpart for tensor name '%s'", name);
check:
    if (n < 0 || (size_t)n >= cap)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "mapped name of '%s' is too long", name);
    return QD_OK;
}

int64_t qd_permute_src_row(int64_t r, int64_t rows, int64_t n_head)
{
    if (n_head <= 0 || rows <= 0 || rows % (2 * n_head) || r < 0 || r >= rows)
        return -1;
    int64_t hd = rows / n_head, h = r / hd, k = r % hd, i = k / 2, j = k % 2;
    return h * hd + j * (hd / 2) + i;
}

int64_t qd_permute_dst_row(int64_t s, int64_t rows, int64_t n_head)
{
    if (n_head <= 0 || rows <= 0 || rows % (2 * n_head) || s < 0 || s >= rows)
        return -1;
    int64_t hd = rows / n_head, h = s / hd, k = s % hd, j = k / (hd / 2), i = k % (hd / 2);
    return h * hd + 2 * i + j;
}
