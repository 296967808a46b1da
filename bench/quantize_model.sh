#!/usr/bin/env bash
# bench/quantize_model.sh - the whole pipeline: a generated ~1.5 GB F16 llama checkpoint (dim 2048, vocab 32000,
# tests/tools/gen_ckpt --preset bench) quantized by `quant quantize` to Q8_0, Q4_0, Q4_K_M and Q6_K with 2 threads,
# per kernel variant: GB/s of F16 input and peak RSS, in both of the writer's modes, each against its bound measured
# in the same run:
#   default (page cache, as llama-quantize and cp) against the issue's bound: reading the input from the page cache
#     (cat) plus writing a file of the output's size (dd, same filesystem, no fsync);
#   --fsync (durable before the rename) against the disk's durable bound: the same cat, then dd oflag=direct
#     conv=fsync.
# Every figure is the best of 3 (ours as well as the bounds), each timed command after a `sync`, so that no run pays
# for the write-back of the one before it (on these VMs a page-cache dd moves by 5x with what is left to flush). The
# read half of the bound is measured before every recipe and once more at the end, and every ratio uses the run's
# best of them: a page-cache read here moves by 2-5x within minutes, and a bound taken in a slow minute would
# flatter us.
# LLAMA_QUANTIZE=/path/to/llama-quantize runs it on the same GGUF too and prints the ratios; without it, where the
# runtime tests' npm packages are installed (make deps), llama.cpp's own quantizer in their libllama runs through
# tests/tools/llama_quantize.c instead (LLAMA_QUANTIZE=none: neither). LLAMA_RUNS (default 1: a run takes seconds,
# far above the noise) of it, and its output's tensor data is compared with ours, tensor by tensor.
#   RECIPES="Q8_0 Q4_K_M Q4_0+pure" VARIANTS="avx2 avx512" THREADS=2 RUNS=3 bench/quantize_model.sh
# (RECIPE+pure: quant quantize --pure, every tensor in the recipe's base type)
set -eu
cd "$(dirname "$0")/.."
B=build/release
Q=${QUANT_BIN:-$B/quant} # QUANT_BIN: another build of quant, e.g. the one before a change, for a before/after
dir=var/bench
mkdir -p "$dir"
src=${SRC:-$dir/ckpt-bench-f16.gguf} # SRC: another F16 GGUF (e.g. a smaller one for quick iteration)
THREADS=${THREADS:-2}
RECIPES=${RECIPES:-Q8_0 Q4_0 Q4_K_M Q6_K}
all_variants=$($Q kernels | awk '/^built:/ {for (i = 2; i <= NF; i++) print $i}')
VARIANTS=${VARIANTS:-$(for v in $all_variants; do QD_KERNELS=$v $Q kernels >/dev/null 2>&1 && [ "$v" != ref ] && echo "$v"; done)}
[ -f "$src" ] || $B/tools/gen_ckpt --preset bench --out "$src" >/dev/null
in_bytes=$(stat -c %s "$src")
cat "$src" >/dev/null; cat "$src" >/dev/null # warm the page cache
RUNS=${RUNS:-3}
. bench/lib.sh
if [ "${LLAMA_QUANTIZE:-}" = none ]; then
    LLAMA_QUANTIZE=""
elif [ -z "${LLAMA_QUANTIZE:-}" ]; then
    lib=$(find tests/llama/node_modules/@node-llama-cpp/linux-x64/bins -name 'libllama.*so' 2>/dev/null | head -n 1)
    if [ -n "$lib" ] && [ -x "$B/tools/llama_quantize" ]; then
        export LLAMA_LIB=$lib
        LLAMA_QUANTIZE=$B/tools/llama_quantize
        echo "llama.cpp: llama_model_quantize of $lib (tests/tools/llama_quantize.c)"
    fi
fi
# same A B: whether two GGUFs hold the same tensors with the same bytes (tests/integration/gguf_same.py)
same() { python3 tests/integration/gguf_same.py "$Q" "$1" "$2" || true; }
# best of RUNS of quant quantize: "wall cpu rss" of the fastest run (cpu = user + system seconds)
bestq() {
    local out=$1 b=1e9 line="" w u s m
    shift
    for _ in $(seq "$RUNS"); do
        rm -f "$out"
        sync
        /usr/bin/time -o "$dir/time.txt" -f "%e %U %S %M" "$@" >/dev/null 2>&1 || { echo "quantize failed: $*" >&2; exit 1; }
        read -r w u s m <<<"$(tail -n 1 "$dir/time.txt")"
        if awk -v a="$w" -v c="$b" 'BEGIN{exit !(a < c)}'; then
            b=$w
            line="$w $(awk -v u="$u" -v s="$s" 'BEGIN{printf "%.2f", u + s}') $m"
        fi
    done
    echo "$line"
}
gbs() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.3f", n / 1e9 / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2fx", b / a}'; }
# The read half of the bound (see the top): best of RUNS cats, again before each recipe; rows print at the end.
read_s=1e9
measure_read() {
    local r
    r=$(best "$dir/none" sh -c "cat '$src' >/dev/null")
    reads="$reads $r"
    read_s=$(awk -v a="$read_s" -v b="$r" 'BEGIN{print (b < a) ? b : a}')
}
reads=""
measure_read
echo "quantize benchmark: $(awk -v n="$in_bytes" 'BEGIN{printf "%.2f GB", n / 1e9}') F16 input, $THREADS threads, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), best of $RUNS"
# llama-quantize's anchors (FORMATS.md 1.5: another run, same kind of machine, 2 threads), GB/s of F16 input
anchor() { case $1 in Q8_0) echo 0.23 ;; Q4_0) echo 0.36 ;; Q4_K_M) echo 0.057 ;; *) echo "" ;; esac; }
# shellcheck disable=SC2086 # (VARIANTS is a word list, one per line when detected)
last_variant=$(printf '%s\n' $VARIANTS | tail -n 1) # llama.cpp runs once per recipe, beside this variant's row
rows=() # recipe variant secs cpu rss fsecs ws ds llama_s
for r in $RECIPES; do
    type=${r%+pure}
    pure=$([ "$type" != "$r" ] && echo --pure || true)
    measure_read
    for v in $VARIANTS; do
        out=$dir/out-$r.gguf
        # shellcheck disable=SC2086 # $pure: nothing or --pure
        read -r secs cpu rss <<<"$(bestq "$out" env QD_KERNELS="$v" "$Q" quantize --in "$src" --type "$type" $pure --out "$out" -t "$THREADS")"
        # shellcheck disable=SC2086
        read -r fsecs _ _ <<<"$(bestq "$out" env QD_KERNELS="$v" "$Q" quantize --in "$src" --type "$type" $pure --out "$out" -t "$THREADS" --fsync)"
        ob=$(stat -c %s "$out")
        ls=- llsame=-
        if [ -n "${LLAMA_QUANTIZE:-}" ] && [ -z "$pure" ] && [ "$v" = "$last_variant" ]; then
            ls=$(RUNS=${LLAMA_RUNS:-1} best "$dir/llama-$r.gguf" "$LLAMA_QUANTIZE" "$src" "$dir/llama-$r.gguf" "$type" \
                "$THREADS")
            llsame=$(same "$out" "$dir/llama-$r.gguf" | tr ' ' '_')
            rm -f "$dir/llama-$r.gguf"
        fi
        rm -f "$out"
        ws=$(best "$dir/dd.bin" dd if=/dev/zero of="$dir/dd.bin" bs=1M count=$(( (ob + 1048575) / 1048576 )))
        ds=$(best "$dir/dd.bin" dd if=/dev/zero of="$dir/dd.bin" bs=8M count=$(( (ob + 8388607) / 8388608 )) oflag=direct conv=fsync)
        rm -f "$dir/dd.bin"
        rows+=("$r $v $secs $cpu $rss $fsecs $ws $ds $ls $llsame")
    done
done
measure_read
echo "read the input from the page cache (cat, best of $RUNS, before each recipe and at the end):$(for x in $reads; do printf ' %s' "$(gbs "$in_bytes" "$x")"; done) GB/s; the bounds below use the best, $(gbs "$in_bytes" "$read_s") GB/s"
printf '%-7s %-7s %6s %8s %6s %8s %8s %8s | %7s %8s %8s %8s | %9s\n' recipe kernels s "GB/s in" "cpu s" "RSS MiB" \
    bound "vs bound" "fsync s" "GB/s in" durable "vs dur." "vs anchor"
for row in "${rows[@]}"; do
    read -r r v secs cpu rss fsecs ws ds ls llsame <<<"$row"
    pure=$([ "${r%+pure}" != "$r" ] && echo --pure || true)
    # the bounds as F16-input GB/s: read the input (read_s), then write this output (ws, or ds durably)
    bs=$(awk -v a="$read_s" -v b="$ws" 'BEGIN{print a + b}')
    bd=$(awk -v a="$read_s" -v b="$ds" 'BEGIN{print a + b}')
    a=$([ -z "$pure" ] && anchor "$r" || true)
    va=$([ -n "$a" ] && awk -v g="$(gbs "$in_bytes" "$secs")" -v a="$a" 'BEGIN{printf "%.2fx", g / a}' || echo -)
    printf '%-7s %-7s %6.2f %8s %6s %8d %8s %8s | %7.2f %8s %8s %8s | %9s\n' "$r" "$v" "$secs" "$(gbs "$in_bytes" "$secs")" \
        "$cpu" $((rss / 1024)) "$(gbs "$in_bytes" "$bs")" "$(ratio "$secs" "$bs")" "$fsecs" "$(gbs "$in_bytes" "$fsecs")" \
        "$(gbs "$in_bytes" "$bd")" "$(ratio "$fsecs" "$bd")" "$va"
    if [ "$ls" != - ]; then
        printf '%-7s %-7s %6.2f %8s   (ours is %s; same tensor bytes as ours: %s)\n' "$r" llama "$ls" \
            "$(gbs "$in_bytes" "$ls")" "$(ratio "$secs" "$ls")" "$(echo "$llsame" | tr '_' ' ')"
    fi
done
[ -n "${LLAMA_QUANTIZE:-}" ] || echo "LLAMA_QUANTIZE not given: 'vs anchor' uses llama-quantize's figures from FORMATS.md 1.5 (another run, same kind of machine): Q8_0 0.23, Q4_0 0.36, Q4_K_M 0.057 GB/s"
echo "s, GB/s in: the default (page cache); fsync s: with --fsync; cpu s: user + system CPU seconds of the fastest default run"
echo "bound: cat of the input + dd of the output's size (page cache, no fsync); durable: cat + dd oflag=direct conv=fsync"
echo "vs bound >= 0.77x is 'within 1.3x of the bound'"
echo "targets: Q8_0, Q4_0 >= 1.5x llama-quantize and within 1.3x of the write bound; K-quants >= 4x llama-quantize"
