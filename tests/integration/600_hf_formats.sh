#!/usr/bin/env bash
# 600_hf_formats.sh - `quant quantize --format bnb|compressed-tensors` on a gen_ckpt model, checked by a reader we
# did not write in C: Python + numpy parse the safetensors files by the format's definition, decode every layout
# from its own tables (NF4/FP4 values, FP8 bit fields, int4 nibbles, the bnb quant-state JSON), and compare with the
# source weights (per-element bounds) and the untouched tensors (exact). Also the CLI's errors for bad requests.
# Skips (77) without python3 + numpy (Debian: python3-numpy).
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
# the first python3 that has numpy: the one on PATH (may be a pyenv or venv one), else Debian's
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "skip: no python3 with numpy (apt-get install python3-numpy)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/qd600.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$work/src"
"$TOOLS/gen_ckpt" --out "$work/src/model.safetensors" --format safetensors --seed 5 --layers 2 --dim 64 --ff 128 \
    --heads 4 --kv-heads 2 --dtype f16 >/dev/null || fail "gen_ckpt"
"$TOOLS/gen_ckpt" --out "$work/m.gguf" --seed 5 --layers 2 --dim 64 --ff 128 --heads 4 --kv-heads 2 --dtype f16 \
    >/dev/null || fail "gen_ckpt gguf"

run() { # name format type [options...]
    local name=$1; shift
    "$QUANT" quantize --in "$work/src" --out "$work/$name" "$@" >"$work/$name.log" 2>&1 ||
        fail "quantize $*: $(cat "$work/$name.log")"
}
run nf4 --format bnb --type nf4
run nf4dq --format bnb --type nf4 --double-quant
run fp4 --format bnb --type fp4 --group 128
run int8 --format compressed-tensors --type int8
run e4m3 --format compressed-tensors --type fp8_e4m3
run e4m3t --format compressed-tensors --type fp8_e4m3 --per-tensor
run e5m2 --format compressed-tensors --type fp8_e5m2
run int4 --format compressed-tensors --type int4 --group 32
run w8a16 --format compressed-tensors --type int8 --weight-only
# a GGUF source (GGUF row order, no config.json) gives the same weights back in HF order
"$QUANT" quantize --in "$work/m.gguf" --out "$work/gg" --format compressed-tensors --type int8 >/dev/null ||
    fail "quantize gguf source"

"$PY" - "$work" <<'EOF' || fail "independent check"
import json, math, struct, sys
import numpy as np

work = sys.argv[1]
DT = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "U8": np.uint8, "I32": np.int32, "I64": np.int64,
      "F8_E4M3": np.uint8, "F8_E5M2": np.uint8}

def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    assert n % 8 == 0, "header length not a multiple of 8"
    hdr = json.loads(b[8:8 + n].decode("utf-8"))
    meta = hdr.pop("__metadata__", {})
    data = b[8 + n:]
    spans, out = [], {}
    for k, v in hdr.items():
        s, e = v["data_offsets"]
        a = np.frombuffer(data[s:e], dtype=DT[v["dtype"]])
        assert a.size == int(np.prod(v["shape"], dtype=np.int64)), k
        assert s % a.itemsize == 0, "unaligned " + k
        out[k] = (v["dtype"], a.reshape(v["shape"]))
        spans.append((s, e))
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 == b0, "gap or overlap"
    return meta, out

_, src = load(work + "/src/model.safetensors")

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
FP4 = (np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3], dtype=np.float32)
       / np.float32(12))

def fp8(codes, e5):
    c = codes.astype(np.int64)
    s = np.where(c & 0x80, -1.0, 1.0)
    if e5:
        e, m, bias, mb = (c >> 2) & 31, c & 3, 15, 2
    else:
        e, m, bias, mb = (c >> 3) & 15, c & 7, 7, 3
    v = np.where(e == 0, m * 2.0 ** (1 - bias - mb), (1 + m / 2.0 ** mb) * 2.0 ** (e - bias))
    nan = (e == 31) & (m != 0) if e5 else (e == 15) & (m == 7)
    assert not nan.any(), "NaN code in weights"
    return (s * v).astype(np.float32)

def check(name, cfg_expect, deq_fn, bound_fn):
    meta, t = load(work + "/" + name + "/model.safetensors")
    assert meta.get("format") == "pt", meta
    cfg = json.load(open(work + "/" + name + "/config.json"))
    qc = cfg["quantization_config"]
    for k, v in cfg_expect.items():
        assert qc.get(k) == v, (name, k, qc.get(k))
    assert cfg["num_key_value_heads"] == 2 and cfg["model_type"] == "llama"
    worst = 0.0
    for k, (dt, w) in src.items():
        w = w.astype(np.float32)
        if k.endswith("_proj.weight"):
            p = k[:-len("weight")]
            d = deq_fn(t, p, w.shape)
            err = np.abs(d - w)
            b = bound_fn(w, t, p)
            assert (err <= b).all(), (name, k, float((err - b).max()))
            worst = max(worst, float(np.sqrt((err ** 2).sum() / (w ** 2).sum())))
        else:
            assert k in t, (name, k)
            assert t[k][0] == dt and np.array_equal(t[k][1], src[k][1]), (name, k)  # untouched, same dtype
    print("  %-6s worst relative RMS error %.4f" % (name, worst))

def deq_bnb(t, p, shape):
    qs = [k for k in t if k.startswith(p + "weight.quant_state.bitsandbytes__")]
    assert len(qs) == 1
    st = json.loads(bytes(t[qs[0]][1]).decode())
    assert st["shape"] == list(shape) and st["dtype"] == "float16"
    code = t[p + "weight.quant_map"][1]
    assert np.array_equal(code, NF4 if st["quant_type"] == "nf4" else FP4)
    assert t[p + "weight"][1].shape == (shape[0] * shape[1] // 2, 1)
    packed = t[p + "weight"][1].reshape(-1)
    q = np.empty(packed.size * 2, dtype=np.uint8)
    q[0::2] = packed >> 4  # first element in the high nibble
    q[1::2] = packed & 15
    bs = st["blocksize"]
    if "nested_offset" in st:
        assert t[p + "weight.absmax"][0] == "U8" and st["nested_blocksize"] == 256
        nm, na = t[p + "weight.nested_quant_map"][1], t[p + "weight.nested_absmax"][1]
        qa = t[p + "weight.absmax"][1].astype(np.int64)
        absmax = (nm[qa] * na[np.arange(qa.size) // 256]).astype(np.float32) + np.float32(st["nested_offset"])
    else:
        absmax = t[p + "weight.absmax"][1]
    return (code[q] * absmax[np.arange(q.size) // bs]).reshape(shape)

def bnb_bound(gap, dq, bs=64):
    def f(w, t, p):
        flat = np.abs(w.reshape(-1, bs)).max(axis=1)
        b = np.repeat(flat, bs).reshape(w.shape) * gap * 1.000001
        return b + (np.abs(w).max() * 0.9 / 128 * 1.01 if dq else 0)
    return f

def deq_int8(t, p, shape):
    assert t[p + "weight"][0] == "I8" and t[p + "weight_scale"][1].shape == (shape[0], 1)
    return t[p + "weight"][1].astype(np.float32) * t[p + "weight_scale"][1]

def deq_fp8(e5):
    def f(t, p, shape):
        assert t[p + "weight"][0] == ("F8_E5M2" if e5 else "F8_E4M3")
        return fp8(t[p + "weight"][1], e5) * t[p + "weight_scale"][1]
    return f

def deq_packed(bits):
    def f(t, p, shape):
        pf = 32 // bits
        pk = t[p + "weight_packed"][1].view(np.uint32)
        assert tuple(t[p + "weight_shape"][1]) == shape and pk.shape == (shape[0], shape[1] // pf)
        q = np.empty(shape, dtype=np.int64)
        for i in range(pf):
            q[:, i::pf] = ((pk >> np.uint32(bits * i)) & np.uint32((1 << bits) - 1)).astype(np.int64) - (1 << (bits - 1))
        sc = t[p + "weight_scale"][1]
        g = shape[1] // sc.shape[1]
        return q.astype(np.float32) * np.repeat(sc, g, axis=1)
    return f

def rowmax(w):
    return np.abs(w).max(axis=1, keepdims=True)

bnb = {"quant_method": "bitsandbytes", "load_in_4bit": True}
check("nf4", dict(bnb, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=False), deq_bnb,
      bnb_bound((1 - 0.6961928009986877) / 2, False))
check("nf4dq", dict(bnb, bnb_4bit_use_double_quant=True), deq_bnb, bnb_bound((1 - 0.6961928009986877) / 2, True))
check("fp4", dict(bnb, bnb_4bit_quant_type="fp4"), deq_bnb, bnb_bound((1 - 8 / 12) / 2, False, 128))
ct = {"quant_method": "compressed-tensors", "quantization_status": "compressed", "ignore": ["lm_head"]}
check("int8", dict(ct, format="int-quantized"), deq_int8, lambda w, t, p: rowmax(w) / 127.5 * 0.5 * 1.0001)
check("e4m3", dict(ct, format="float-quantized"), deq_fp8(False),
      lambda w, t, p: np.abs(w) / 16 * 1.000001 + rowmax(w) / 448 * 2.0 ** -10)
check("e4m3t", dict(ct, format="float-quantized"), deq_fp8(False),
      lambda w, t, p: np.abs(w) / 16 * 1.000001 + np.abs(w).max() / 448 * 2.0 ** -10)
check("e5m2", dict(ct, format="quantd-float-quantized-e5m2"), deq_fp8(True),
      lambda w, t, p: np.abs(w) / 8 * 1.000001 + rowmax(w) / 57344 * 2.0 ** -17)
check("int4", dict(ct, format="pack-quantized"), deq_packed(4),
      lambda w, t, p: np.repeat(np.abs(w).reshape(w.shape[0], -1, 32).max(axis=2), 32, axis=1) / 7.5 * 0.5 * 1.0001)
check("w8a16", dict(ct, format="pack-quantized"), deq_packed(8), lambda w, t, p: rowmax(w) / 127.5 * 0.5 * 1.0001)
g = json.load(open(work + "/w8a16/config.json"))["quantization_config"]["config_groups"]["group_0"]
assert g["weights"]["num_bits"] == 8 and g["weights"]["strategy"] == "channel" and g["input_activations"] is None
g = json.load(open(work + "/int4/config.json"))["quantization_config"]["config_groups"]["group_0"]
assert g["targets"] == ["Linear"] and g["weights"]["group_size"] == 32 and g["weights"]["num_bits"] == 4
# the GGUF source: same model, so the same int8 tensors, in HF order
_, a = load(work + "/int8/model.safetensors")
_, b = load(work + "/gg/model.safetensors")
for k in a:
    if k.endswith("_proj.weight"):
        assert np.array_equal(a[k][1], b[k][1]), k
EOF

# the folder reads back through quant's own model reader only where it holds plain dtypes: not the point here;
# bad requests get clear errors and usage exit codes
out=$("$QUANT" quantize --in "$work/src" --out "$work/x" --format bnb --type int8 2>&1) && fail "bnb int8 accepted"
echo "$out" | grep -q "does not hold type int8" || fail "bnb int8 message: $out"
out=$("$QUANT" quantize --in "$work/src" --out "$work/x" --format compressed-tensors --type int4 --group 48 2>&1) &&
    fail "group 48 accepted"
echo "$out" | grep -q "not a multiple of the group size 48" || fail "group message: $out"
out=$("$QUANT" quantize --in "$work/src" --out "$work/x" --format compressed-tensors --type int4 --method gptq 2>&1) &&
    fail "gptq accepted"
echo "$out" | grep -q "calibration" || fail "gptq message: $out"
out=$("$QUANT" quantize --in "$work/src" --out "$work/x" --format autogptq --type int4 2>&1) && fail "autogptq accepted"
echo "$out" | grep -q "written by --method gptq" || fail "format message: $out" # the layout holds GPTQ results only
out=$("$QUANT" quantize --in "$work/src" --out "$work/x" --format nope --type int4 2>&1) && fail "format nope accepted"
echo "$out" | grep -q "unknown format" || fail "format message: $out"
echo "ok"
