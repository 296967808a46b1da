#!/usr/bin/env bash
# calib_figures.sh - the docs/CALIBRATION.md table: bits per weight (of the published file), mean/p99 KLD and top-1
# of RTN Q4_0, RTN Q4_K_M, imatrix Q4_K_M, GPTQ int4 g32 and AWQ int4 g32 (Q4_0 blocks), bitsandbytes NF4,
# compressed-tensors INT8 (W8A8, round to nearest), FP8 E4M3 and SmoothQuant W8A8, for stories260K (as shipped,
# ff 172; and padded exactly to ff 192 so that Q4_0 covers ffn_down) and for a generated model with activation
# outliers, measured by
# `quant validate` on 64 x 256 tokens (seed 42) with a calibration set of 64 x 256 tokens (seed 7) proven disjoint.
# usage: scripts/calib_figures.sh [OUT_DIR]   (needs the build and ../shared/models/stories260K.bin)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
T=${1:-$(mktemp -d "${TMPDIR:-/tmp}/calibfig.XXXXXX")}
mkdir -p "$T"
CAL=sample:64:256:7
python3 "$ROOT/tests/integration/pad_ffn_llama2c.py" "$ROOT/../shared/models/stories260K.bin" "$T/stories192.bin" 192
cp "$ROOT/../shared/models/stories260K.bin" "$T/stories260K.bin"
"$TOOLS/gen_ckpt" --out "$T/outliers.gguf" --seed 11 --layers 4 --dim 256 --ff 768 --heads 8 --kv-heads 4 \
    --vocab 512 --ctx 256 --act-outliers 30 > /dev/null
for m in stories260K stories192 outliers; do
    src=$T/$m.bin
    [ -f "$src" ] || src=$T/$m.gguf
    "$QUANT" validate --ref "$src" --variant-type f32 --save-set "$T/$m.val" --json > /dev/null 2>&1 || true
    "$QUANT" quantize --in "$src" --type q4_0 --out "$T/$m.rtn_q4_0.gguf" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --type q4_k_m --out "$T/$m.rtn_q4_k_m.gguf" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --type q4_k_m --method imatrix --calib "$CAL" --val "$T/$m.val" \
        --out "$T/$m.imatrix_q4_k_m.gguf" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --type q4_0 --method gptq --act-order --calib "$CAL" --val "$T/$m.val" \
        --out "$T/$m.gptq_q4_0.gguf" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --type q4_0 --method awq --calib "$CAL" --val "$T/$m.val" \
        --out "$T/$m.awq_q4_0.gguf" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --format bnb --type nf4 --out "$T/$m.nf4" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --format compressed-tensors --type int8 --out "$T/$m.int8_w8a8" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --format compressed-tensors --type fp8_e4m3 --out "$T/$m.fp8_e4m3" > /dev/null 2>&1
    "$QUANT" quantize --in "$src" --method smoothquant --format compressed-tensors --calib "$CAL" --val "$T/$m.val" \
        --out "$T/$m.smoothquant_w8a8" > /dev/null 2>&1
    for v in rtn_q4_0 rtn_q4_k_m imatrix_q4_k_m gptq_q4_0 awq_q4_0 nf4 int8_w8a8 fp8_e4m3 smoothquant_w8a8; do
        var=$T/$m.$v
        [ -e "$var" ] || var=$var.gguf
        "$QUANT" validate --ref "$src" --variant "$var" --set "$T/$m.val" --json > "$T/$m.$v.json" \
            2> "$T/$m.$v.err" || true
    done
done
python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
print("| model | variant | bpw | mean KLD | p99 KLD | top-1 | mean KLD / RTN Q4_0 | / RTN INT8 W8A8 |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for m in ["stories260K", "stories192", "outliers"]:
    base = json.load(open(f"{t}/{m}.rtn_q4_0.json"))["kld"]["mean"]
    base8 = json.load(open(f"{t}/{m}.int8_w8a8.json"))["kld"]["mean"]
    for v in ["rtn_q4_0", "rtn_q4_k_m", "imatrix_q4_k_m", "gptq_q4_0", "awq_q4_0", "nf4", "int8_w8a8", "fp8_e4m3",
              "smoothquant_w8a8"]:
        try:
            r = json.load(open(f"{t}/{m}.{v}.json"))
        except ValueError:
            print(f"| {m} | {v} | failed: {open(f'{t}/{m}.{v}.err').read().strip()[:100]} | | | | | |")
            continue
        w8 = v in ("int8_w8a8", "smoothquant_w8a8", "fp8_e4m3")
        print(f"| {m} | {v} | {r['variant_bpw']:.3f} | {r['kld']['mean']:.4f} | {r['kld']['p99']:.3f} | "
              f"{100 * r['same_top']['fraction']:.2f} % | {r['kld']['mean'] / base:.3f} | "
              f"{r['kld']['mean'] / base8:.3f} |" if w8 else
              f"| {m} | {v} | {r['variant_bpw']:.3f} | {r['kld']['mean']:.4f} | {r['kld']['p99']:.3f} | "
              f"{100 * r['same_top']['fraction']:.2f} % | {r['kld']['mean'] / base:.3f} | |")
PY
