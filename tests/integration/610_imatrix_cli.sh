#!/usr/bin/env bash
# 610_imatrix_cli: `quant imatrix` on a generated model writes llama.cpp's legacy .dat and GGUF imatrix files (field
# layout checked by an independent reader here); `quant quantize --method imatrix` with --imatrix FILE and with
# --calib SET (collected on the fly) give the same tensors; bad calibration input gets clear errors (exit 2/3).
. "$(dirname "$0")/../lib/common.sh"
T=$WORK
TOOLS=$QD_TOOLS
"$TOOLS/gen_ckpt" --out "$T/m.gguf" --seed 3 --layers 2 --dim 256 --ff 512 --heads 4 --kv-heads 2 --vocab 128 \
    --ctx 64 > /dev/null || fail "gen_ckpt"
CAL=sample:6:32:5
"$QUANT" imatrix --model "$T/m.gguf" --calib "$CAL" --out "$T/im.dat" > "$T/o" || fail "imatrix dat"
grep -q "legacy .dat imatrix, 14 matrices, 6 sequences, 192 tokens" "$T/o" || fail "dat summary: $(cat "$T/o")"
"$QUANT" imatrix --model "$T/m.gguf" --calib "$CAL" --out "$T/im.gguf" > "$T/o" || fail "imatrix gguf"
"$QUANT" imatrix --model "$T/m.gguf" --calib "$CAL" --out "$T/im2.bin" --format gguf --process-output > /dev/null ||
    fail "imatrix gguf --process-output"
python3 - "$T" <<'PY' || fail "file layout"
import struct, sys
t = sys.argv[1]
# legacy .dat: i32 n; per entry i32 len, name, i32 ncall, i32 nval, f32[nval]; trailer i32 chunks, i32 len, name
b = open(f"{t}/im.dat", "rb").read()
n, = struct.unpack_from("<i", b, 0); o = 4
dat = {}
for _ in range(n):
    l, = struct.unpack_from("<i", b, o); o += 4
    name = b[o:o + l].decode(); o += l
    ncall, nval = struct.unpack_from("<ii", b, o); o += 8
    v = struct.unpack_from(f"<{nval}f", b, o); o += 4 * nval
    dat[name] = [x / ncall for x in v]
    assert ncall == 6, ncall
chunks, l = struct.unpack_from("<ii", b, o); o += 8
assert chunks == 6 and b[o:o + l] == b"sample:6:32:5" and o + l == len(b), (chunks, b[o:])
assert n == 14 and "blk.1.ffn_down.weight" in dat and len(dat["blk.1.ffn_down.weight"]) == 512
assert "output.weight" not in dat

# GGUF v3: header, kvs, tensor infos, aligned data
def gguf(path):
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF"
    ver, nt, nkv = struct.unpack_from("<IQQ", b, 4); o = 24
    def s(o):
        l, = struct.unpack_from("<Q", b, o); return b[o + 8:o + 8 + l].decode(), o + 8 + l
    def val(t, o):
        if t == 8: return s(o)
        if t == 9:
            at, cnt = struct.unpack_from("<IQ", b, o); o += 12; out = []
            for _ in range(cnt):
                v, o = val(at, o); out.append(v)
            return out, o
        fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[t]
        return struct.unpack_from("<" + fmt, b, o)[0], o + struct.calcsize(fmt)
    kv = {}
    for _ in range(nkv):
        k, o = s(o); t, = struct.unpack_from("<I", b, o); o += 4
        kv[k], o = val(t, o)
    ti = []
    for _ in range(nt):
        name, o = s(o); nd, = struct.unpack_from("<I", b, o); o += 4
        ne = struct.unpack_from(f"<{nd}Q", b, o); o += 8 * nd
        typ, off = struct.unpack_from("<IQ", b, o); o += 12
        ti.append((name, ne, typ, off))
    align = kv.get("general.alignment", 32)
    base = (o + align - 1) // align * align
    data = {name: struct.unpack_from(f"<{ne[0] * ne[1]}f", b, base + off) for name, ne, typ, off in ti}
    assert all(typ == 0 for _, _, typ, _ in ti)
    return ver, kv, ti, data
ver, kv, ti, data = gguf(f"{t}/im.gguf")
assert ver == 3 and kv["general.type"] == "imatrix" and kv["imatrix.datasets"] == ["sample:6:32:5"], kv
assert kv["imatrix.chunk_count"] == 6 and kv["imatrix.chunk_size"] == 32, kv
names = [x[0] for x in ti]
# per matrix in name order: <name>.in_sum2 then <name>.counts (llama.cpp's order)
assert names[0::2] == [x + ".in_sum2" for x in sorted(dat)] and names[1::2] == [x + ".counts" for x in sorted(dat)]
for name, ne, typ, off in ti:
    if name.endswith(".counts"):
        assert ne == (1, 1) and data[name][0] == 192.0, (name, data[name])
    else:
        base = name[:-len(".in_sum2")]
        mean = [x / data[base + ".counts"][0] for x in data[name]]
        ref = dat[base]
        assert ne[0] == len(ref) and ne[1] == 1
        assert all(abs(a - r) <= 1e-5 * abs(r) + 1e-30 for a, r in zip(mean, ref)), base
_, kv2, ti2, _ = gguf(f"{t}/im2.bin")
assert len(ti2) == 30 and "output.weight.in_sum2" in [x[0] for x in ti2]
print("imatrix .dat and GGUF layouts check out;", n, "matrices")
PY
# quantize with the file and on the fly: the same tensors, so the same validation numbers
"$QUANT" quantize --in "$T/m.gguf" --type q4_k_m --imatrix "$T/im.gguf" --out "$T/a.gguf" > "$T/o" 2>&1 ||
    fail "quantize --imatrix: $(cat "$T/o")"
grep -q "14 with imatrix" "$T/o" || fail "imatrix not used: $(cat "$T/o")"
"$QUANT" quantize --in "$T/m.gguf" --type q4_k_m --method imatrix --calib "$CAL" --out "$T/b.gguf" > "$T/o" 2>&1 ||
    fail "quantize --method imatrix: $(cat "$T/o")"
"$QUANT" quantize --in "$T/m.gguf" --type q4_k_m --out "$T/r.gguf" > /dev/null 2>&1 || fail "rtn"
for v in a b r; do
    "$QUANT" validate --ref "$T/m.gguf" --variant "$T/$v.gguf" --seqs 4 --len 32 --seed 9 --json > "$T/$v.json" \
        2> /dev/null
    [ -s "$T/$v.json" ] || fail "validate $v"
done
python3 - "$T" <<'PY' || fail "file vs on the fly"
import json, sys
t = sys.argv[1]
a, b, r = (json.load(open(f"{t}/{v}.json")) for v in "abr")
assert a["kld"] == b["kld"], (a["kld"]["mean"], b["kld"]["mean"])
assert a["kld"] != r["kld"], "the imatrix changed nothing"
print("imatrix from the file and on the fly: mean KLD", a["kld"]["mean"], "(rtn", r["kld"]["mean"], ")")
PY
# bad input
: > "$T/empty.bin"
expect_stderr 2 "empty" "$QUANT" imatrix --model "$T/m.gguf" --calib "$T/empty.bin" --out "$T/x.dat"
expect_stderr 2 "empty" "$QUANT" imatrix --model "$T/m.gguf" --calib sample:0:32:1 --out "$T/x.dat"
expect_stderr 2 "too short" "$QUANT" imatrix --model "$T/m.gguf" --calib sample:4:1:1 --out "$T/x.dat"
expect_stderr 2 "context" "$QUANT" imatrix --model "$T/m.gguf" --calib sample:4:1000:1 --out "$T/x.dat"
expect_stderr 2 "sample:N:LEN:SEED" "$QUANT" imatrix --model "$T/m.gguf" --calib sample:4:x --out "$T/x.dat"
expect_stderr 3 "No such file" "$QUANT" imatrix --model "$T/m.gguf" --calib "$T/none.bin" --out "$T/x.dat"
expect_stderr 2 "required" "$QUANT" imatrix --model "$T/m.gguf" --out "$T/x.dat"
# a set with a token outside the vocabulary (128): a QDVALSET written here
python3 - "$T/oov.bin" <<'PY'
import struct, sys
toks = [1, 5, 7, 500, 9]
b = b"QDVALSET" + struct.pack("<IIII", 1, 1, 0, 0) + struct.pack("<I", len(toks)) + struct.pack(f"<{len(toks)}I", *toks)
open(sys.argv[1], "wb").write(b)
PY
expect_stderr 2 "vocabulary" "$QUANT" imatrix --model "$T/m.gguf" --calib "$T/oov.bin" --out "$T/x.dat"
expect_stderr 2 "needs --calib" "$QUANT" quantize --in "$T/m.gguf" --type q4_k_m --method imatrix --out "$T/x.gguf"
expect_stderr 2 "unknown --method" "$QUANT" quantize --in "$T/m.gguf" --type q4_k_m --method nope --out "$T/x.gguf"
[ ! -e "$T/x.dat" ] && [ ! -e "$T/x.gguf" ] || fail "an output was written for bad input"
echo "610 ok"
