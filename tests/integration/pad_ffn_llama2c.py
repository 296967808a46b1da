#!/usr/bin/env python3
"""pad_ffn_llama2c.py IN OUT HIDDEN: an exactly equivalent llama2.c checkpoint whose feed-forward width is HIDDEN.

w1 and w3 get zero rows and w2 zero columns: silu(0) * 0 = 0, so the extra hidden units contribute nothing and the
logits are those of IN. Used to give stories260K (ff 172) rows that split into ggml blocks of 32 (ff 192), so that
Q4_0 applies to ffn_down too (FORMATS.md 1.3); the zero columns are also "dead" inputs for GPTQ.
"""
import struct
import sys

src, dst, new_h = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, "rb").read()
dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", b[:28])
assert new_h >= hidden, (new_h, hidden)
kv_dim = dim * kv_heads // heads
head = dim // heads
f = 4
off = 28
out = [struct.pack("<7i", dim, new_h, layers, heads, kv_heads, vocab, seq)]


def take(n):
    global off
    blk = b[off:off + n * f]
    assert len(blk) == n * f
    off += n * f
    return blk


out.append(take(abs(vocab) * dim))
for name, n in [("rms_att", dim), ("wq", dim * dim), ("wk", kv_dim * dim), ("wv", kv_dim * dim),
                ("wo", dim * dim), ("rms_ffn", dim)]:
    out.append(take(n * layers))
zero_row = b"\0" * (dim * f)
for _ in range(layers):  # w1 [hidden][dim]: zero rows appended
    out.append(take(hidden * dim) + zero_row * (new_h - hidden))
for _ in range(layers):  # w2 [dim][hidden]: zero columns appended to every row
    for _r in range(dim):
        out.append(take(hidden) + b"\0" * ((new_h - hidden) * f))
for _ in range(layers):  # w3
    out.append(take(hidden * dim) + zero_row * (new_h - hidden))
out.append(b[off:])  # final norm, freq tables, optional classifier: unchanged
open(dst, "wb").write(b"".join(out))
