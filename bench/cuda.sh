#!/usr/bin/env bash
# bench/cuda.sh - `make CUDA=1 bench-quantize`: the GPU path against the CPU and against the card's copy bandwidth,
# all measured in the same run, on this machine's threads.
#   1. bench/cuda_bench.c: host memory to host memory per type (staged through qd_cuda's pinned buffers, and direct
#      from registered memory), the pinned copy rates, and the CPU kernels on the same rows with every thread;
#   2. the whole pipeline: a generated ~4.6 GB F16 llama checkpoint (dim 4096, ff 11008, 10 layers, vocab 32000)
#      quantized by `quant quantize --device cpu` and `--device cuda` per recipe, best of RUNS after a sync each, in
#      GB/s of F16 input, the two files cmp-identical; with the page-cache read rate of the same file (cat) beside.
#   RECIPES="Q8_0 Q4_K_M" RUNS=2 KERNEL_MB=2048 bench/cuda.sh
set -eu -o pipefail
cd "$(dirname "$0")/.."
B=${B:-build/release-cuda}
Q=$B/quant
dir=var/bench
mkdir -p "$dir"
src=${SRC:-$dir/ckpt-cuda-f16.gguf}
RUNS=${RUNS:-2}
RECIPES=${RECIPES:-Q8_0 Q4_0 Q4_K_M Q6_K}
rc=0
"$B/bench/cuda_bench" --mb "${KERNEL_MB:-2048}" | tee "$dir/cuda_bench.txt" || rc=$?
if [ "$rc" -eq 77 ]; then
    echo "skip: no GPU here"
    exit 0
fi
[ "$rc" -eq 0 ] || exit "$rc"
h2d=$(awk '/^copy bandwidth/ {for (i = 1; i <= NF; i++) if ($i == "host->device") print $(i + 1)}' "$dir/cuda_bench.txt")
[ -f "$src" ] || "$B/tools/gen_ckpt" --out "$src" --format gguf --dtype f16 --dim 4096 --ff 11008 --layers 10 \
    --heads 32 --kv-heads 8 --vocab 32000 --seed 5 >/dev/null
in_bytes=$(stat -c %s "$src")
cat "$src" >/dev/null
. bench/lib.sh
gbs() { awk -v n="$in_bytes" -v s="$1" 'BEGIN{printf "%.2f", n / s / 1e9}'; }
rd=$(best /dev/null sh -c "cat '$src' >/dev/null")
echo "whole pipeline: $src, $(awk -v n="$in_bytes" 'BEGIN{printf "%.2f", n / 1e9}') GB F16, $(nproc) threads;" \
    "page-cache read (cat) $(gbs "$rd") GB/s; pinned host->device copy $h2d GB/s; best of $RUNS"
printf '%-8s %9s %9s %9s %9s %8s %8s  %s\n' recipe "cpu s" "cpu GB/s" "gpu s" "gpu GB/s" gpu/cpu "of h2d" bytes
for r in $RECIPES; do
    c=$(best "$dir/cpu.gguf" "$Q" quantize --in "$src" --type "$r" --out "$dir/cpu.gguf" --device cpu)
    g=$(best "$dir/gpu.gguf" "$Q" quantize --in "$src" --type "$r" --out "$dir/gpu.gguf" --device cuda)
    same=identical
    cmp -s "$dir/cpu.gguf" "$dir/gpu.gguf" || { same=DIFFER; rc=1; }
    ratio=$(awk -v a="$c" -v b="$g" 'BEGIN{print a / b}')
    of_copy=$(awk -v n="$in_bytes" -v s="$g" -v h="$h2d" 'BEGIN{print 100 * n / s / 1e9 / h}')
    printf '%-8s %9.3f %9s %9.3f %9s %7.2fx %7.0f%%  %s\n' "$r" "$c" "$(gbs "$c")" "$g" "$(gbs "$g")" "$ratio" \
        "$of_copy" "$same"
done
# where a GPU run's time goes (QUANT_VERBOSE=1: the pipeline's and the GPU path's own accounts)
for r in $RECIPES; do
    rm -f "$dir/gpu.gguf"
    sync
    QUANT_VERBOSE=1 "$Q" quantize --in "$src" --type "$r" --out "$dir/gpu.gguf" --device cuda 2>&1 |
        grep -E "GPU: [0-9]+ tensors|cuda: .* calls|kernels" | sed "s/^/$r: /"
done
rm -f "$dir/cpu.gguf" "$dir/gpu.gguf"
exit "$rc"
