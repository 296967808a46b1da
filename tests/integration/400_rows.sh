#!/usr/bin/env bash
# 400_rows: `quant rows` round-trips golden vectors through the CLI: quantize (with and without an importance
# matrix) must give ggml's bytes, dequantize must give ggml's floats; bad input gets a clear error and exit code.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
V=$ROOT/../shared/vectors/ggml
if [ ! -f "$V/index.tsv" ]; then
    echo "../shared/vectors/ggml is absent"
    exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/qd400.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

n=0
# one vector per required type and case family, both quantize paths, plus dequantize
while IFS=$'\t' read -r case type imat nrows ncols bytes file; do
    [ "$case" = case ] && continue
    case "$case" in stories) ;; *) continue ;; esac
    # every type in the index: the required ones, NVFP4 and the i-quants
    # the CLI takes any capitalisation
    name=$(echo "$type" | tr 'a-z' 'A-Z')
    args=(--type "$name" --cols "$ncols" -q)
    [ "$imat" = 1 ] && args+=(--imatrix "$V/cases/$case.imatrix.f32")
    "$QUANT" rows quantize "${args[@]}" "$V/cases/$case.f32" "$T/out.bin" || fail "quantize $case $type"
    cmp "$T/out.bin" "$V/$file" || fail "quantize $case $type imatrix=$imat: bytes differ from ggml"
    if [ "$imat" = 0 ]; then
        "$QUANT" rows dequantize --type "$type" --cols "$ncols" -q "$V/$file" "$T/out.f32" || fail "dequantize $case $type"
        cmp "$T/out.f32" "$V/deq/$case.$type.f32" || fail "dequantize $case $type: floats differ from ggml"
    fi
    n=$((n + 1))
done < "$V/index.tsv"
[ "$n" -ge 45 ] || fail "only $n vectors checked"
echo "cli vectors: $n matched"

# stdin/stdout and the summary line
"$QUANT" rows quantize --type q8_0 --cols 512 - - < "$V/cases/gauss.f32" > "$T/pipe.bin" 2>"$T/err" || fail "pipe"
cmp "$T/pipe.bin" "$V/q/gauss.q8_0.bin" || fail "pipe bytes"
out=$("$QUANT" rows quantize --type q4_0 --cols 512 "$V/cases/gauss.f32" "$T/s.bin") || fail "summary run"
echo "$out" | grep -q "quantized 16 rows x 512 to q4_0: 32768 -> 4608 bytes, 4.5000 bits/value" || fail "summary: $out"

expect() { # exit-code pattern-in-stderr command...
    local want=$1 pat=$2; shift 2
    "$@" >"$T/o" 2>"$T/e"
    local rc=$?
    [ "$rc" = "$want" ] || fail "$* exited $rc, want $want: $(cat "$T/e")"
    grep -q -- "$pat" "$T/e" || fail "$*: stderr lacks '$pat': $(cat "$T/e")"
}
# a file that is not a whole number of rows
head -c 1000 "$V/cases/gauss.f32" > "$T/short.f32"
expect 4 "not a whole number of rows" "$QUANT" rows quantize --type q4_0 --cols 512 "$T/short.f32" "$T/x.bin"
[ ! -e "$T/x.bin" ] || fail "output left behind after an error"
head -c 1000 "$V/cases/gauss.f32" | expect 4 "ends inside a row" "$QUANT" rows quantize --type q4_0 --cols 512 - "$T/x.bin"
expect 4 "not a whole number of rows" "$QUANT" rows dequantize --type q6_K --cols 512 "$V/q/gauss.q4_0.bin" "$T/x.f32"
# cols that do not fit the block size, unknown types, missing files, bad imatrix, NaN
expect 2 "not a multiple of the block size 256" "$QUANT" rows quantize --type q4_K --cols 172 "$V/cases/gauss.f32" "$T/x.bin"
expect 2 "unknown tensor type 'q4_k_m'" "$QUANT" rows quantize --type q4_k_m --cols 512 "$V/cases/gauss.f32" "$T/x.bin"
expect 2 "positive number" "$QUANT" rows quantize --type q4_0 --cols -3 "$V/cases/gauss.f32" "$T/x.bin"
expect 2 "are required" "$QUANT" rows quantize --cols 512 "$V/cases/gauss.f32" "$T/x.bin"
expect 3 "No such file" "$QUANT" rows quantize --type q4_0 --cols 512 "$T/missing.f32" "$T/x.bin"
expect 2 "must be 2048 bytes" "$QUANT" rows quantize --type q4_K --cols 512 --imatrix "$T/short.f32" "$V/cases/gauss.f32" "$T/x.bin"
expect 1 "cannot quantize to q8_1" "$QUANT" rows quantize --type q8_1 --cols 512 "$V/cases/gauss.f32" "$T/x.bin"
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<64f", *([0.5]*40 + [float("nan")] + [0.1]*23)))' > "$T/nan.f32"
expect 2 "row 1 column 8 is NaN" "$QUANT" rows quantize --type q8_0 --cols 32 "$T/nan.f32" "$T/x.bin"
[ ! -e "$T/x.bin" ] || fail "output left behind after NaN"
# magnitudes a type cannot hold: refused before quantizing, or when a block scale would overflow fp16
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<32f", *([1e9] + [0.1]*31)))' > "$T/big.f32"
expect 2 "too large for q8_0" "$QUANT" rows quantize --type q8_0 --cols 32 "$T/big.f32" "$T/x.bin"
python3 -c 'import struct,sys; sys.stdout.buffer.write(struct.pack("<32f", *([1e7] + [0.1]*31)))' > "$T/big.f32"
expect 2 "block scale overflows fp16" "$QUANT" rows quantize --type q8_0 --cols 32 "$T/big.f32" "$T/x.bin"
"$QUANT" rows quantize --type mxfp4 --cols 32 -q "$T/big.f32" "$T/x.bin" || fail "mxfp4 holds 1e7"
rm -f "$T/x.bin"
# f16 can hold NaN: converted, not refused
"$QUANT" rows quantize --type f16 --cols 32 -q "$T/nan.f32" "$T/nan.f16" || fail "f16 with NaN"
[ "$(stat -c %s "$T/nan.f16")" = 128 ] || fail "f16 size"

# kernels: the variant chosen (the best this CPU runs), and a clear error for one this build lacks
"$QUANT" kernels > "$T/k" || fail "quant kernels"
grep -qE '^kernels: (ref|avx2|avx512)$' "$T/k" || fail "kernels output: $(cat "$T/k")"
grep -q '^built: ref' "$T/k" || fail "no built line: $(cat "$T/k")"
grep -q '^cpu: ' "$T/k" || fail "no cpu line"
QD_KERNELS=cuda expect 1 "no cuda kernels" "$QUANT" kernels
QD_KERNELS=nonsense expect 2 "unknown kernel variant" "$QUANT" kernels
QD_KERNELS=ref "$QUANT" kernels | grep -q '^kernels: ref$' || fail "forced ref not shown"
# every variant this machine runs gives ggml's bytes through the CLI (the full vector set per variant is in
# tests/unit/test_kernels.c)
for v in ref avx2 avx512; do
    if ! QD_KERNELS=$v "$QUANT" kernels > "$T/kv" 2>"$T/ke"; then
        grep -q "lacks the features" "$T/ke" || fail "QD_KERNELS=$v: $(cat "$T/ke")"
        echo "variant $v: not on this CPU"
        continue
    fi
    grep -q "^kernels: $v\$" "$T/kv" || fail "QD_KERNELS=$v shows $(head -1 "$T/kv")"
    for t in q6_K q4_K q8_0 iq4_xs q5_0; do
        QD_KERNELS=$v "$QUANT" rows quantize --type $t --cols 512 -q "$V/cases/heavy.f32" "$T/h.bin" || fail "$v $t"
        cmp "$T/h.bin" "$V/q/heavy.$t.bin" || fail "QD_KERNELS=$v $t bytes"
    done
    QD_KERNELS=$v "$QUANT" rows quantize --type q4_K --cols 512 -q --imatrix "$V/cases/heavy.imatrix.f32" \
        "$V/cases/heavy.f32" "$T/h.bin" || fail "$v q4_K imatrix"
    cmp "$T/h.bin" "$V/q/heavy.q4_K.imatrix.bin" || fail "QD_KERNELS=$v q4_K imatrix bytes"
    echo "variant $v: cli bytes match"
done
echo ok
