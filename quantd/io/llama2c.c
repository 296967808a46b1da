/*
 * llama2c.c - llama2.c checkpoints (the legacy version-0 export: seven int32 then float32 weights).
 *
 * Header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len (a negative vocab_size means a
 * separate classifier follows the weights). Weights in order: token embedding [vocab, dim]; rms_att [L, dim]; wq
 * [L, dim, dim]; wk, wv [L, kv_dim, dim]; wo [L, dim, dim]; rms_ffn [L, dim]; w1 [L, hidden, dim]; w2 [L, dim,
 * hidden]; w3 [L, hidden, dim]; rms_final [dim]; two legacy RoPE tables of seq_len * head_size / 2 floats; then the
 * classifier when unshared. The file size must be exactly that: a header that does not describe the file is refused.
 * Weights are in Meta's RoPE order already, so no Q/K permutation.
 */
#include <stdio.h>
#include <string.h>

#include "io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"

#define L2C_MAX_DIM (1 << 20)

static int add(qd_model *m, const char *name, uint32_t nd, int64_t ne0, int64_t ne1, uint64_t *off,
               const uint8_t *base, int advance)
{
    qd_tensor t;
    memset(&t, 0, sizeof(t));
    snprintf(t.name, sizeof(t.name), "%s", name);
    t.type = QD_TYPE_F32;
    t.n_dims = nd;
    t.ne[0] = ne0;
    t.ne[1] = nd > 1 ? ne1 : 1;
    t.ne[2] = t.ne[3] = 1;
    t.nbytes = (uint64_t)ne0 * (uint64_t)t.ne[1] * 4u;
    t.offset = *off;
    t.data = base + *off;
    if (advance)
        *off += t.nbytes;
    return io_model_add_tensor(m, &t);
}

int io_l2c_parse(qd_model *m, const uint8_t *p, size_t len)
{
    int32_t h[7];
    int rc;
    if (len < 28)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "llama2c: file shorter than its 28-byte header");
    if (!memcmp(p, "24ka", 4) || !memcmp(p, "ak42", 4))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "llama2c: versioned (ak42) exports are not supported");
    memcpy(h, p, 28);
    int64_t dim = h[0], hidden = h[1], nl = h[2], nh = h[3], nkv = h[4], vocab = h[5], seq = h[6];
    int shared = vocab > 0;
    if (vocab < 0)
        vocab = -vocab;
    if (dim <= 0 || hidden <= 0 || nl <= 0 || nh <= 0 || nkv <= 0 || vocab <= 0 || seq <= 0 || dim > L2C_MAX_DIM ||
        hidden > L2C_MAX_DIM || nl > 4096 || vocab > (1 << 24) || seq > (1 << 24) || nh > dim || nkv > nh ||
        dim % nh || nh % nkv || (dim / nh) % 2)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID,
                            "unrecognised model file: not GGUF, not safetensors, and not a plausible llama2.c header "
                            "(dim %d hidden %d layers %d heads %d/%d vocab %d seq %d)",
                            h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    int64_t hs = dim / nh, kv_dim = dim * nkv / nh;
    uint64_t floats = (uint64_t)vocab * dim + (uint64_t)nl * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim +
                                                               3 * hidden * dim) +
                      (uint64_t)dim + (uint64_t)seq * hs + (shared ? 0 : (uint64_t)vocab * dim);
    if (floats > (UINT64_MAX - 28) / 4 || 28 + floats * 4 != len)
        return qd_error_set(len < 28 + floats * 4 ? QD_ETRUNCATED : QD_ECORRUPT, QD_EC_INVALID,
                            "llama2c: header describes %llu bytes, the file has %zu",
                            (unsigned long long)(28 + floats * 4), len);

    const uint8_t *base = p;
    uint64_t off = 28, o_emb = off, o_rms_att, o_wq, o_wk, o_wv, o_wo, o_rms_ffn, o_w1, o_w2, o_w3, o_final, o_cls;
    off += (uint64_t)vocab * dim * 4;
    o_rms_att = off; off += (uint64_t)nl * dim * 4;
    o_wq = off; off += (uint64_t)nl * dim * dim * 4;
    o_wk = off; off += (uint64_t)nl * kv_dim * dim * 4;
    o_wv = off; off += (uint64_t)nl * kv_dim * dim * 4;
    o_wo = off; off += (uint64_t)nl * dim * dim * 4;
    o_rms_ffn = off; off += (uint64_t)nl * dim * 4;
    o_w1 = off; off += (uint64_t)nl * hidden * dim * 4;
    o_w2 = off; off += (uint64_t)nl * dim * hidden * 4;
    o_w3 = off; off += (uint64_t)nl * hidden * dim * 4;
    o_final = off; off += (uint64_t)dim * 4;
    off += (uint64_t)seq * hs * 4; /* freq_cis_real + freq_cis_imag */
    o_cls = shared ? o_emb : off;

    uint64_t o;
    char name[64];
    o = o_emb;
    if ((rc = add(m, "token_embd.weight", 2, dim, vocab, &o, base, 1)))
        return rc;
    for (int64_t l = 0; l < nl; l++) {
        struct {
            const char *n;
            uint32_t nd;
            int64_t ne0, ne1;
            uint64_t start;
        } per[] = {
            {"attn_norm", 1, dim, 1, o_rms_att + (uint64_t)l * dim * 4},
            {"attn_q", 2, dim, dim, o_wq + (uint64_t)l * dim * dim * 4},
            {"attn_k", 2, dim, kv_dim, o_wk + (uint64_t)l * kv_dim * dim * 4},
            {"attn_v", 2, dim, kv_dim, o_wv + (uint64_t)l * kv_dim * dim * 4},
            {"attn_output", 2, dim, dim, o_wo + (uint64_t)l * dim * dim * 4},
            {"ffn_norm", 1, dim, 1, o_rms_ffn + (uint64_t)l * dim * 4},
            {"ffn_gate", 2, dim, hidden, o_w1 + (uint64_t)l * hidden * dim * 4},
            {"ffn_up", 2, dim, hidden, o_w3 + (uint64_t)l * hidden * dim * 4},
            {"ffn_down", 2, hidden, dim, o_w2 + (uint64_t)l * dim * hidden * 4},
        };
        for (size_t i = 0; i < sizeof(per) / sizeof(per[0]); i++) {
            snprintf(name, sizeof(name), "blk.%lld.%s.weight", (long long)l, per[i].n);
            o = per[i].start;
            if ((rc = add(m, name, per[i].nd, per[i].ne0, per[i].ne1, &o, base, 0)))
                return rc;
        }
    }
    o = o_final;
    if ((rc = add(m, "output_norm.weight", 1, dim, 1, &o, base, 0)))
        return rc;
    o = o_cls;
    if ((rc = add(m, "output.weight", 2, dim, vocab, &o, base, 0)))
        return rc;

    if ((rc = io_model_set_str(m, "general.architecture", "llama")) ||
        (rc = io_model_set_u32(m, "llama.context_length", (uint32_t)seq)) ||
        (rc = io_model_set_u32(m, "llama.embedding_length", (uint32_t)dim)) ||
        (rc = io_model_set_u32(m, "llama.block_count", (uint32_t)nl)) ||
        (rc = io_model_set_u32(m, "llama.feed_forward_length", (uint32_t)hidden)) ||
        (rc = io_model_set_u32(m, "llama.attention.head_count", (uint32_t)nh)) ||
        (rc = io_model_set_u32(m, "llama.attention.head_count_kv", (uint32_t)nkv)) ||
        (rc = io_model_set_u32(m, "llama.rope.dimension_count", (uint32_t)hs)) ||
        (rc = io_model_set_f32(m, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (rc = io_model_set_f32(m, "llama.rope.freq_base", 10000.0f)) ||
        (rc = io_model_set_u32(m, "llama.vocab_size", (uint32_t)vocab)))
        return rc;
    {
        qd_kv kv;
        memset(&kv, 0, sizeof(kv));
        if (!(kv.key = qd_arena_strndup(&m->arena, "llama2c.shared_classifier", 25)))
            return QD_ENOMEM;
        kv.type = QD_GGUF_BOOL;
        kv.n = 1;
        kv.num.u = (uint64_t)shared;
        if ((rc = io_model_add_kv(m, &kv)))
            return rc;
    }
    return QD_OK;
}
