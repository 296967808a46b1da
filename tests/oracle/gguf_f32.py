#!/usr/bin/env python3
"""gguf_f32.py - a stand-in F32 GGUF writer for a llama2.c checkpoint, to develop the oracle harness before
`quant quantize --type F32` (the engine's GGUF writer, another branch) exists. Not used by the tests.

    python3 gguf_f32.py stories260K.bin out.gguf

Writes GGUF v3: llama architecture keys, a stand-in vocabulary (0/1/2 are <unk>/<s>/</s>, ids 3..258 the byte
tokens <0x00>..<0xFF> so that llama.cpp's byte fallback never fails, the rest distinct single characters U+4E00+id;
the oracle feeds token ids, so the text of a token does not matter),
and every tensor in f32 with output.weight written even when tied (as convert-llama2c-to-ggml does). Wq/Wk are
not permuted: llama2.c already uses llama.cpp's adjacent-pair (NORM) RoPE.
"""
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
raw = open(src, "rb").read()
dim, hid, nl, nh, nkv, vocab, seq = struct.unpack("<7i", raw[:28])
tied = vocab > 0
vocab = abs(vocab)
hs, kvd = dim // nh, dim * nkv // nh
off = 28


def take(n):
    global off
    b = raw[off:off + 4 * n]
    off += 4 * n
    return b


emb = take(vocab * dim)
per = {k: [] for k in ["ra", "wq", "wk", "wv", "wo", "rf", "w1", "w2", "w3"]}
for k, n in [("ra", dim), ("wq", dim * dim), ("wk", kvd * dim), ("wv", kvd * dim), ("wo", dim * dim), ("rf", dim),
             ("w1", hid * dim), ("w2", dim * hid), ("w3", hid * dim)]:
    per[k] = [take(n) for _ in range(nl)]
fin = take(dim)
take(seq * hs)  # legacy RoPE tables
out = emb if tied else take(vocab * dim)

tensors = [("token_embd.weight", [dim, vocab], emb)]
names = {"ra": ("attn_norm", [dim]), "wq": ("attn_q", [dim, dim]), "wk": ("attn_k", [dim, kvd]),
         "wv": ("attn_v", [dim, kvd]), "wo": ("attn_output", [dim, dim]), "rf": ("ffn_norm", [dim]),
         "w1": ("ffn_gate", [dim, hid]), "w2": ("ffn_down", [hid, dim]), "w3": ("ffn_up", [dim, hid])}
for i in range(nl):
    for k in ["ra", "wq", "wk", "wv", "wo", "rf", "w1", "w2", "w3"]:
        nm, ne = names[k]
        tensors.append((f"blk.{i}.{nm}.weight", ne, per[k][i]))
tensors.append(("output_norm.weight", [dim], fin))
tensors.append(("output.weight", [dim, vocab], out))


def s(x):
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


kv = []


def put(key, typ, payload):
    kv.append(s(key) + struct.pack("<I", typ) + payload)


U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
put("general.architecture", STR, s("llama"))
put("general.name", STR, s("stories260K (quantd oracle stand-in)"))
put("general.file_type", U32, struct.pack("<I", 0))
put("llama.context_length", U32, struct.pack("<I", seq))
put("llama.embedding_length", U32, struct.pack("<I", dim))
put("llama.block_count", U32, struct.pack("<I", nl))
put("llama.feed_forward_length", U32, struct.pack("<I", hid))
put("llama.rope.dimension_count", U32, struct.pack("<I", hs))
put("llama.rope.freq_base", F32, struct.pack("<f", 10000.0))
put("llama.attention.head_count", U32, struct.pack("<I", nh))
put("llama.attention.head_count_kv", U32, struct.pack("<I", nkv))
put("llama.attention.layer_norm_rms_epsilon", F32, struct.pack("<f", 1e-5))
nbyte = min(256, vocab - 3)
toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(nbyte)] + \
    [chr(0x4E00 + i) for i in range(3 + nbyte, vocab)]
types = [2, 3, 3] + [6] * nbyte + [1] * (vocab - 3 - nbyte)
put("tokenizer.ggml.model", STR, s("llama"))
put("tokenizer.ggml.tokens", ARR, struct.pack("<IQ", STR, vocab) + b"".join(s(t) for t in toks))
put("tokenizer.ggml.scores", ARR, struct.pack("<IQ", F32, vocab) + struct.pack("<%df" % vocab, *([0.0] * vocab)))
put("tokenizer.ggml.token_type", ARR, struct.pack("<IQ", I32, vocab) + struct.pack("<%di" % vocab, *types))
put("tokenizer.ggml.unknown_token_id", U32, struct.pack("<I", 0))
put("tokenizer.ggml.bos_token_id", U32, struct.pack("<I", 1))
put("tokenizer.ggml.eos_token_id", U32, struct.pack("<I", 2))
put("tokenizer.ggml.add_bos_token", BOOL, b"\x00")
put("tokenizer.ggml.add_space_prefix", BOOL, b"\x00")

ALIGN = 32
infos, data, pos = [], b"", 0
for name, ne, b in tensors:
    pad = (-pos) % ALIGN
    data += b"\x00" * pad
    pos += pad
    infos.append(s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne) +
                 struct.pack("<IQ", 0, pos))
    data += b
    pos += len(b)
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
head += b"\x00" * ((-len(head)) % ALIGN)
open(dst, "wb").write(head + data)
print(f"{dst}: {len(tensors)} tensors, {len(head) + len(data)} bytes")
