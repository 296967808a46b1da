#!/usr/bin/env python3
"""tile_llama2c.py IN OUT K: a llama2.c checkpoint with every layer repeated K times (K x n_layers layers).

For tests that need a job that runs for seconds (so a daemon can be killed in the middle of it) from the one small
real model available, without downloading anything. The layout is the one ../shared/models/README.md documents.
"""
import struct
import sys

src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = open(src, "rb").read()
dim, hidden, layers, heads, kv_heads, vocab, seq = struct.unpack("<7i", b[:28])
kv_dim = dim * kv_heads // heads
head = dim // heads
f = 4
sizes = [("tok", abs(vocab) * dim, False), ("rms_att", dim, True), ("wq", dim * dim, True),
         ("wk", kv_dim * dim, True), ("wv", kv_dim * dim, True), ("wo", dim * dim, True), ("rms_ffn", dim, True),
         ("w1", hidden * dim, True), ("w2", dim * hidden, True), ("w3", hidden * dim, True),
         ("rms_final", dim, False), ("freq", seq * head, False)]
if vocab < 0:
    sizes.append(("wcls", -vocab * dim, False))
out = [struct.pack("<7i", dim, hidden, layers * k, heads, kv_heads, vocab, seq)]
off = 28
for name, n, per_layer in sizes:
    total = n * layers if per_layer else n
    block = b[off:off + total * f]
    assert len(block) == total * f, name
    out.append(block * k if per_layer else block)
    off += total * f
assert off == len(b), (off, len(b))
open(dst, "wb").write(b"".join(out))
