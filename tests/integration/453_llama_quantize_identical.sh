#!/usr/bin/env bash
# 453_llama_quantize_identical.sh - `quant quantize` writes the same tensors, byte for byte, as llama.cpp's own
# quantizer (llama_model_quantize in node-llama-cpp 3.21.1's prebuilt libllama, run through tests/tools/llama_quantize)
# for every recipe both offer, on three models that take different paths through the recipes' rules:
#   - a generated F16 llama whose rows are multiples of 256 (dim 256, 2 layers, GQA 2:1);
#   - a generated F16 llama whose rows are not (dim 320, ff 864: the K-quants' and IQ4s' fallbacks), 8 layers
#     (the layer-position rules of the _M recipes) and GQA 5:1;
#   - ../shared/models/stories260K.bin written as an F32 GGUF by quant (dim 64: every K-quant falls back).
# Names, types, shapes and data of every tensor must agree (tests/integration/gguf_same.py); the metadata may differ.
# Skips (77) without tests/llama/node_modules (make deps) or python3; the stories model is skipped alone where
# ../shared is absent.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
LIB=$(find "$ROOT/tests/llama/node_modules/@node-llama-cpp/linux-x64/bins" -name 'libllama.*so' 2>/dev/null | head -n 1)
[ "$(uname -m)" = x86_64 ] || { echo "skip: the prebuilt libllama used here is x86-64's"; exit 77; }
[ -n "$LIB" ] || { echo "skip: tests/llama/node_modules has no libllama (make deps)"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 is not installed"; exit 77; }
export LLAMA_LIB=$LIB

work=$(mktemp -d "${TMPDIR:-/tmp}/qd453.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$TOOLS/gen_ckpt" --out "$work/even.gguf" --dtype f16 --dim 256 --ff 768 --layers 2 --heads 4 --kv-heads 2 \
    --vocab 1024 --tokenizer --seed 7 >/dev/null || { echo "FAIL: gen_ckpt even"; exit 1; }
"$TOOLS/gen_ckpt" --out "$work/odd.gguf" --dtype f16 --dim 320 --ff 864 --layers 8 --heads 5 --kv-heads 1 \
    --vocab 1000 --tokenizer --seed 9 >/dev/null || { echo "FAIL: gen_ckpt odd"; exit 1; }
models="even odd"
if [ -f "$ROOT/../shared/models/stories260K.bin" ]; then
    "$QUANT" quantize --in "$ROOT/../shared/models/stories260K.bin" --type F32 --out "$work/stories.gguf" >/dev/null ||
        { echo "FAIL: stories260K.bin to an F32 GGUF"; exit 1; }
    models="$models stories"
else
    echo "note: ../shared/models/stories260K.bin is absent: that model is not compared"
fi

# a tampered copy must be told apart: the check itself can fail
"$QUANT" quantize --in "$work/even.gguf" --type Q4_0 --out "$work/a.gguf" -t 2 >/dev/null ||
    { echo "FAIL: Q4_0"; exit 1; }
cp "$work/a.gguf" "$work/b.gguf"
size=$(stat -c %s "$work/b.gguf")
byte=$(od -An -tu1 -j $((size - 7)) -N 1 "$work/b.gguf")
# shellcheck disable=SC2059 # (the format is the octal escape of the flipped byte)
printf "\\$(printf %03o $((byte ^ 0xff)))" | dd of="$work/b.gguf" bs=1 seek=$((size - 7)) conv=notrunc status=none
if python3 "$ROOT/tests/integration/gguf_same.py" "$QUANT" "$work/a.gguf" "$work/b.gguf" >"$work/same.txt"; then
    echo "FAIL: a changed byte in the last tensor went unnoticed: $(cat "$work/same.txt")"; exit 1
fi

recipes="F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS"
n=0 failed=0
for m in $models; do
    pairs=()
    for r in $recipes; do
        if ! "$QUANT" quantize --in "$work/$m.gguf" --type "$r" --out "$work/$m-$r-ours.gguf" -t 2 \
            >"$work/q.log" 2>&1; then
            echo "FAIL $m $r: quant quantize failed: $(tail -n 1 "$work/q.log")"; failed=$((failed + 1)); continue
        fi
        if ! "$TOOLS/llama_quantize" "$work/$m.gguf" "$work/$m-$r-llama.gguf" "$r" 2 >"$work/l.log" 2>&1; then
            echo "FAIL $m $r: llama.cpp's quantizer failed: $(tail -n 1 "$work/l.log")"
            failed=$((failed + 1))
            continue
        fi
        pairs+=("$work/$m-$r-ours.gguf" "$work/$m-$r-llama.gguf")
    done
    # one comparison process per model (a python start costs more than a small model's quantization)
    python3 "$ROOT/tests/integration/gguf_same.py" "$QUANT" "${pairs[@]}" >"$work/same.txt"
    while read -r a _ res; do
        case $res in
            yes*) n=$((n + 1)) ;;
            *) echo "FAIL $(basename "$a" -ours.gguf): $res"; failed=$((failed + 1)) ;;
        esac
    done <"$work/same.txt"
    rm -f "$work/$m"-*.gguf
done
[ "$failed" -eq 0 ] || { echo "FAIL: $failed of $((n + failed)) differ from llama.cpp's quantizer"; exit 1; }
# shellcheck disable=SC2086 # word-split on purpose
set -- $models
nm=$#
# shellcheck disable=SC2086
set -- $recipes
echo "ok: $n model x recipe outputs hold llama.cpp's tensors byte for byte ($nm models, $# recipes)"
