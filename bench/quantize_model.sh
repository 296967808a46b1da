#!/usr/bin/env bash
# bench/quantize_model.sh - the whole pipeline: a generated ~1.5 GB F16 llama checkpoint (dim 2048, vocab 32000,
# tests/tools/gen_ckpt --preset bench) quantized by `quant quantize` to Q8_0, Q4_0, Q4_K_M and Q6_K with 2 threads,
# per kernel variant: GB/s of F16 input and peak RSS. In the same run, the bound the machine sets (the issue's): reading
# the input from the page cache (cat) and writing a file of each output's size (dd, same filesystem, no fsync), as
# F16-input GB/s of the two together; and, since quant's output is durable when it is renamed into place (fsync), the
# disk's durable bound for the same: cat, then dd oflag=direct conv=fsync.
# LLAMA_QUANTIZE=/path/to/llama-quantize runs it on the same GGUF too and prints the ratios.
#   RECIPES="Q8_0 Q4_K_M" VARIANTS="avx2 avx512" THREADS=2 bench/quantize_model.sh
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
t() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'; }
best3() { local b=1e9 x; for _ in 1 2 3; do x=$(t "$@"); rm -f "$dir/dd.bin"; b=$(awk -v a="$b" -v c="$x" 'BEGIN{print (c < a) ? c : a}'); done; echo "$b"; }
gbs() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.3f", n / 1e9 / s}'; }
read_s=$(best3 sh -c "cat '$src' >/dev/null")
echo "quantize benchmark: $(awk -v n="$in_bytes" 'BEGIN{printf "%.2f GB", n / 1e9}') F16 input, $THREADS threads, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "bound: read input from page cache $(gbs "$in_bytes" "$read_s") GB/s"
# llama-quantize's anchors (FORMATS.md 1.5: another run, same kind of machine, 2 threads), GB/s of F16 input
anchor() { case $1 in Q8_0) echo 0.23 ;; Q4_0) echo 0.36 ;; Q4_K_M) echo 0.057 ;; *) echo "" ;; esac; }
printf '%-8s %-8s %8s %8s %6s %9s %7s %9s %8s %9s %10s\n' recipe kernels seconds "GB/s in" "cpu s" "peak RSS" bound \
    "vs bound" durable "vs dur." "vs anchor"
for r in $RECIPES; do
    for v in $VARIANTS; do
        out=$dir/out-$r.gguf
        rm -f "$out"
        /usr/bin/time -o "$dir/time.txt" -f "%e %M %U %S" env QD_KERNELS=$v $Q quantize --in "$src" --type "$r" --out "$out" \
            -t "$THREADS" >/dev/null 2>&1
        s=$(tail -n 1 "$dir/time.txt")
        read -r secs rss usr sys <<<"$s"
        cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN{printf "%.2f", u + s}')
        ob=$(stat -c %s "$out")
        rm -f "$dir/dd.bin"
        # best of 3: a bound is what the machine can do, and a page-cache dd moves by 4x with the writeback left
        # over from the run before it
        ws=$(best3 dd if=/dev/zero of="$dir/dd.bin" bs=1M count=$(( (ob + 1048575) / 1048576 )))
        ds=$(best3 dd if=/dev/zero of="$dir/dd.bin" bs=8M count=$(( (ob + 8388607) / 8388608 )) oflag=direct conv=fsync)
        # the bounds as F16-input GB/s: read the input (read_s), then write this output (ws, or ds durably)
        bs=$(awk -v a="$read_s" -v b="$ws" 'BEGIN{print a + b}')
        bd=$(awk -v a="$read_s" -v b="$ds" 'BEGIN{print a + b}')
        a=$(anchor "$r")
        va=$([ -n "$a" ] && awk -v g="$(gbs "$in_bytes" "$secs")" -v a="$a" 'BEGIN{printf "%.2fx", g / a}' || echo -)
        printf '%-8s %-8s %8.2f %8s %6s %5d MiB %7s %8sx %8s %8sx %10s\n' "$r" "$v" "$secs" "$(gbs "$in_bytes" "$secs")" \
            "$cpu" $((rss / 1024)) "$(gbs "$in_bytes" "$bs")" "$(awk -v a="$secs" -v b="$bs" 'BEGIN{printf "%.2f", b / a}')" \
            "$(gbs "$in_bytes" "$bd")" "$(awk -v a="$secs" -v b="$bd" 'BEGIN{printf "%.2f", b / a}')" "$va"
        if [ -n "${LLAMA_QUANTIZE:-}" ] && [ "$v" = "$(echo $VARIANTS | awk '{print $NF}')" ]; then
            ls=$(t "$LLAMA_QUANTIZE" "$src" "$dir/llama-$r.gguf" "$r" "$THREADS")
            printf '%-8s %-8s %9.2f %10s   (ours is %sx)\n' "$r" llama "$ls" "$(gbs "$in_bytes" "$ls")" \
                "$(awk -v a="$secs" -v b="$ls" 'BEGIN{printf "%.2f", b / a}')"
            rm -f "$dir/llama-$r.gguf"
        fi
        rm -f "$out"
    done
done
[ -n "${LLAMA_QUANTIZE:-}" ] || echo "LLAMA_QUANTIZE not given: 'vs anchor' uses llama-quantize's figures from FORMATS.md 1.5 (another run, same kind of machine): Q8_0 0.23, Q4_0 0.36, Q4_K_M 0.057 GB/s"
echo "cpu s = user + system CPU seconds of the run: on a shared machine the wall figures depend on the load, this less so"
echo "bound: cat of the input + dd of the output's size (page cache, no fsync); durable: cat + dd oflag=direct conv=fsync"
echo "vs bound >= 0.77 is 'within 1.3x of the bound'"
echo "targets: Q8_0, Q4_0 >= 1.5x llama-quantize and within 1.3x of the write bound; K-quants >= 4x llama-quantize"
