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
# for the write-back of the one before it (on these VMs a page-cache dd moves by 5x with what is left to flush).
# LLAMA_QUANTIZE=/path/to/llama-quantize runs it on the same GGUF too and prints the ratios.
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
read_s=$(best "$dir/none" sh -c "cat '$src' >/dev/null")
echo "quantize benchmark: $(awk -v n="$in_bytes" 'BEGIN{printf "%.2f GB", n / 1e9}') F16 input, $THREADS threads, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ), best of $RUNS"
echo "read the input from the page cache (cat): $(gbs "$in_bytes" "$read_s") GB/s"
# llama-quantize's anchors (FORMATS.md 1.5: another run, same kind of machine, 2 threads), GB/s of F16 input
anchor() { case $1 in Q8_0) echo 0.23 ;; Q4_0) echo 0.36 ;; Q4_K_M) echo 0.057 ;; *) echo "" ;; esac; }
printf '%-7s %-7s %6s %8s %6s %8s %8s %8s | %7s %8s %8s %8s | %9s\n' recipe kernels s "GB/s in" "cpu s" "RSS MiB" \
    bound "vs bound" "fsync s" "GB/s in" durable "vs dur." "vs anchor"
for r in $RECIPES; do
    type=${r%+pure}
    pure=$([ "$type" != "$r" ] && echo --pure || true)
    for v in $VARIANTS; do
        out=$dir/out-$r.gguf
        # shellcheck disable=SC2086 # $pure: nothing or --pure
        read -r secs cpu rss <<<"$(bestq "$out" env QD_KERNELS="$v" "$Q" quantize --in "$src" --type "$type" $pure --out "$out" -t "$THREADS")"
        # shellcheck disable=SC2086
        read -r fsecs _ _ <<<"$(bestq "$out" env QD_KERNELS="$v" "$Q" quantize --in "$src" --type "$type" $pure --out "$out" -t "$THREADS" --fsync)"
        ob=$(stat -c %s "$out")
        rm -f "$out"
        ws=$(best "$dir/dd.bin" dd if=/dev/zero of="$dir/dd.bin" bs=1M count=$(( (ob + 1048575) / 1048576 )))
        ds=$(best "$dir/dd.bin" dd if=/dev/zero of="$dir/dd.bin" bs=8M count=$(( (ob + 8388607) / 8388608 )) oflag=direct conv=fsync)
        rm -f "$dir/dd.bin"
        # the bounds as F16-input GB/s: read the input (read_s), then write this output (ws, or ds durably)
        bs=$(awk -v a="$read_s" -v b="$ws" 'BEGIN{print a + b}')
        bd=$(awk -v a="$read_s" -v b="$ds" 'BEGIN{print a + b}')
        a=$([ -z "$pure" ] && anchor "$r" || true)
        va=$([ -n "$a" ] && awk -v g="$(gbs "$in_bytes" "$secs")" -v a="$a" 'BEGIN{printf "%.2fx", g / a}' || echo -)
        printf '%-7s %-7s %6.2f %8s %6s %8d %8s %8s | %7.2f %8s %8s %8s | %9s\n' "$r" "$v" "$secs" "$(gbs "$in_bytes" "$secs")" \
            "$cpu" $((rss / 1024)) "$(gbs "$in_bytes" "$bs")" "$(ratio "$secs" "$bs")" "$fsecs" "$(gbs "$in_bytes" "$fsecs")" \
            "$(gbs "$in_bytes" "$bd")" "$(ratio "$fsecs" "$bd")" "$va"
        if [ -n "${LLAMA_QUANTIZE:-}" ] && [ "$v" = "$(echo $VARIANTS | awk '{print $NF}')" ]; then
            ls=$(best "$dir/llama-$r.gguf" "$LLAMA_QUANTIZE" "$src" "$dir/llama-$r.gguf" "$r" "$THREADS")
            printf '%-7s %-7s %6.2f %8s   (ours is %s)\n' "$r" llama "$ls" "$(gbs "$in_bytes" "$ls")" "$(ratio "$secs" "$ls")"
            rm -f "$dir/llama-$r.gguf"
        fi
    done
done
[ -n "${LLAMA_QUANTIZE:-}" ] || echo "LLAMA_QUANTIZE not given: 'vs anchor' uses llama-quantize's figures from FORMATS.md 1.5 (another run, same kind of machine): Q8_0 0.23, Q4_0 0.36, Q4_K_M 0.057 GB/s"
echo "s, GB/s in: the default (page cache); fsync s: with --fsync; cpu s: user + system CPU seconds of the fastest default run"
echo "bound: cat of the input + dd of the output's size (page cache, no fsync); durable: cat + dd oflag=direct conv=fsync"
echo "vs bound >= 0.77x is 'within 1.3x of the bound'"
echo "targets: Q8_0, Q4_0 >= 1.5x llama-quantize and within 1.3x of the write bound; K-quants >= 4x llama-quantize"
