#!/usr/bin/env bash
# quant quantize --device: cpu and auto write the same bytes; cuda in a build without the GPU path is refused with a
# message that says so (exit 1), a misspelt device is a usage error (exit 2). With a CUDA build (QUANT_CUDA, default
# build/release-cuda/quant, from make CUDA=1): where a device answers, every recipe below is quantized on the GPU
# (the summary says how many tensors went there and names kernel cuda-smNN) and the file is cmp-identical to the
# CPU's, with and without an importance matrix; where none answers, --device cuda is refused naming the reason.
. "$(dirname "$0")/../lib/common.sh"
"$QD_TOOLS/gen_ckpt" --out "$WORK/m.gguf" --format gguf --dtype f16 --dim 512 --ff 1376 --layers 2 --heads 8 \
    --kv-heads 4 --vocab 2048 --seed 21 || fail "gen_ckpt"
M=$WORK/m.gguf
expect_stderr 2 "auto, cpu or cuda" "$QUANT" quantize --in "$M" --type Q4_K_M --out "$WORK/x.gguf" --device gpu
"$QUANT" quantize --in "$M" --type Q4_K_M --out "$WORK/cpu.gguf" --device cpu >/dev/null 2>&1 || fail "--device cpu"
"$QUANT" quantize --in "$M" --type Q4_K_M --out "$WORK/auto.gguf" >/dev/null 2>&1 || fail "--device auto"
cmp "$WORK/cpu.gguf" "$WORK/auto.gguf" || fail "auto and cpu differ"
# where quant kernels names no GPU, --device cuda must be refused (exit 1), naming why, before any output
if "$QUANT" kernels | grep -q '^gpu: none'; then
    expect_stderr 1 "quantize on the GPU: CUDA: " "$QUANT" quantize --in "$M" --type Q4_K_M --out "$WORK/x.gguf" \
        --device cuda
    [ ! -e "$WORK/x.gguf" ] && [ ! -e "$WORK/x.gguf.part" ] || fail "a refused run left an output file"
    echo "--device cuda refused: $(tail -n 1 "$WORK/err")"
fi

QC=${QUANT_CUDA:-$ROOT/build/release-cuda/quant}
if [ ! -x "$QC" ]; then
    echo "no CUDA build ($QC): the GPU part not run"
    exit 0
fi
"$QC" imatrix --model "$M" --calib sample:4:32:7 --out "$WORK/im.dat" >/dev/null || fail "imatrix"
if ! "$QC" quantize --in "$M" --type Q8_0 --out "$WORK/probe.gguf" --device cuda >/dev/null 2>"$WORK/err"; then
    grep -q "CUDA:" "$WORK/err" || fail "CUDA build: --device cuda failed, not naming CUDA: $(cat "$WORK/err")"
    echo "CUDA build, no device: $(tail -n 1 "$WORK/err")"
    exit 0
fi
n=0
for recipe in Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_M Q5_K_M Q6_K IQ4_NL BF16 Q2_K Q3_K_M IQ4_XS; do
    for im in "" "$WORK/im.dat"; do
        case $recipe in BF16|Q8_0) [ -n "$im" ] && continue ;; esac
        args=(); [ -n "$im" ] && args=(--imatrix "$im")
        "$QUANT" quantize --in "$M" --type $recipe --out "$WORK/c.gguf" --device cpu "${args[@]}" >/dev/null 2>&1 ||
            fail "$recipe on the CPU"
        "$QC" quantize --in "$M" --type $recipe --out "$WORK/g.gguf" --device cuda "${args[@]}" >"$WORK/s" 2>&1 ||
            fail "$recipe on the GPU: $(cat "$WORK/s")"
        grep -q "on the GPU" "$WORK/s" && grep -q "kernels cuda-sm" "$WORK/s" ||
            fail "$recipe: summary: $(cat "$WORK/s")"
        cmp "$WORK/c.gguf" "$WORK/g.gguf" || fail "$recipe${im:+ with imatrix}: the GPU's file differs from the CPU's"
        echo "$recipe${im:+ imatrix}: identical ($(grep -o '[0-9]* on the GPU' "$WORK/s"), $(grep -o 'kernels .*' \
            "$WORK/s"))"
        n=$((n + 1))
    done
done
echo "$n recipes identical on the GPU and the CPU"
