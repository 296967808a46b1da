#!/usr/bin/env python3
"""gguf_same.py QUANT A.gguf B.gguf [A2.gguf B2.gguf ...] - whether each pair of GGUF files holds the same tensors
with the same bytes.

Names, types, shapes and every tensor's data are compared (the metadata may differ: each writer records itself).
Prints a line per pair, "yes (N tensors)" or "no: <the first difference>", and exits 1 when any pair differs. The
tensor tables come from `quant inspect --json`.
"""
import json
import subprocess
import sys


def table(quant, path):
    out = subprocess.run([quant, "inspect", "--json", path], capture_output=True, check=True).stdout
    d = json.loads(out)
    return d["data_offset"], {t["name"]: t for t in d["tensors"]}


def compare(quant, a, b):
    (oa, ta), (ob, tb) = table(quant, a), table(quant, b)
    if ta.keys() != tb.keys():
        return "no: the tensor names differ: only in the first %s, only in the second %s" % (
            sorted(ta.keys() - tb.keys())[:3], sorted(tb.keys() - ta.keys())[:3])
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for name, t in ta.items():
            u = tb[name]
            if (t["type"], t["shape"], t["bytes"]) != (u["type"], u["shape"], u["bytes"]):
                return "no: %s is %s %s in the first, %s %s in the second" % (name, t["type"], t["shape"], u["type"],
                                                                             u["shape"])
            fa.seek(oa + t["offset"])
            fb.seek(ob + u["offset"])
            x, y = fa.read(t["bytes"]), fb.read(u["bytes"])
            if x != y:
                i = next(k for k in range(len(x)) if x[k] != y[k]) if len(x) == len(y) else -1
                return "no: %s (%s) differs%s" % (name, t["type"], " at byte %d" % i if i >= 0 else " in length")
    return "yes (%d tensors)" % len(ta)


def main():
    quant, files = sys.argv[1], sys.argv[2:]
    if not files or len(files) % 2:
        print("usage: gguf_same.py QUANT A.gguf B.gguf [A2.gguf B2.gguf ...]", file=sys.stderr)
        return 2
    differ = 0
    for a, b in zip(files[::2], files[1::2]):
        res = compare(quant, a, b)
        print(res if len(files) == 2 else "%s %s: %s" % (a, b, res))
        differ += not res.startswith("yes")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
