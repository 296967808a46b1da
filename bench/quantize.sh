#!/usr/bin/env bash
# bench/quantize.sh - `make bench-quantize`: kernel-level quantize throughput per variant (bench/quantize_bench.c)
# with the machine's bound from the same run: read/memcpy of the input (in the program) and dd writing a file of
# each output's size to the build directory's filesystem (page cache, no fsync, as a quantizer writing a file).
#   MB=512 THREADS=2 TYPES=q8_0,q4_0,q4_K,q6_K REF_MB=64 bench/quantize.sh
set -eu
cd "$(dirname "$0")/.."
B=build/release
MB=${MB:-256} THREADS=${THREADS:-2} TYPES=${TYPES:-q8_0,q4_0,q4_K,q6_K,q5_K,iq4_nl} REF_MB=${REF_MB:-64}
dir=$B/bench-tmp
mkdir -p "$dir"
write=""
while read -r t bytes; do
    mib=$(( (bytes + 1048575) / 1048576 ))
    best=1e9
    for _ in 1 2 3; do
        rm -f "$dir/out.bin"
        s=$( { LC_ALL=C dd if=/dev/zero of="$dir/out.bin" bs=1M count="$mib" 2>&1 >/dev/null; } | awk '/copied/ {print $(NF-3)}')
        best=$(awk -v x="$s" -v b="$best" 'BEGIN{print (x < b) ? x : b}')
    done
    rm -f "$dir/out.bin"
    echo "write bound $t: dd of $mib MiB in $best s"
    write="$write${write:+,}$t=$best"
done < <($B/bench/quantize_bench --sizes --mb "$MB" --types "$TYPES")
rmdir "$dir" 2>/dev/null || true
echo "(vs write: our GB/s over the F16-input GB/s at which dd writes that type's output; below 1 = slower than the write)"
exec $B/bench/quantize_bench --mb "$MB" --threads "$THREADS" --types "$TYPES" --ref-mb "$REF_MB" --write "$write"
