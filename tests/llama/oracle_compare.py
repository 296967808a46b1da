#!/usr/bin/env python3
"""compare.py OURS.json LLAMA.json [TOL] - compare `quant run --probs` with probs.mjs (llama.cpp).

Both files: {"tokens": [...], "probs": [[V floats] per position], "greedy": [...]}. Passes (exit 0) when every
probability agrees within TOL (default 1e-4) absolute and the greedy continuations are identical; prints the
largest difference and where it is. Exit 1 on a disagreement, 2 on malformed input.
"""
import json
import sys

try:
    a = json.load(open(sys.argv[1]))
    b = json.load(open(sys.argv[2]))
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    if a["tokens"] != b["tokens"] or len(a["probs"]) != len(b["probs"]):
        raise ValueError("the two runs did not evaluate the same tokens")
except (OSError, ValueError, KeyError, IndexError) as e:
    print(f"compare: {e}")
    sys.exit(2)
worst, where = 0.0, None
for p, (ra, rb) in enumerate(zip(a["probs"], b["probs"])):
    if len(ra) != len(rb):
        print(f"compare: position {p}: vocabulary {len(ra)} vs {len(rb)}")
        sys.exit(2)
    for i, (x, y) in enumerate(zip(ra, rb)):
        if abs(x - y) > worst:
            worst, where = abs(x - y), (p, i, x, y)
print(f"positions {len(a['probs'])}, vocabulary {len(a['probs'][0])}: max |ours - llama.cpp| = {worst:.3g}"
      + (f" at position {where[0]} token {where[1]} ({where[2]:.6g} vs {where[3]:.6g})" if where else ""))
print(f"greedy ours     {a['greedy']}\ngreedy llama.cpp {b['greedy']}")
ok = worst <= tol and a["greedy"] == b["greedy"]
print("agree" if ok else f"DISAGREE (tolerance {tol:g}, greedy {'same' if a['greedy'] == b['greedy'] else 'different'})")
sys.exit(0 if ok else 1)
