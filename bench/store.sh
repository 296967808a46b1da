#!/usr/bin/env bash
# bench/store.sh - `make bench-store`: put and get of a 1 GiB random file and a 1 GiB fp16-like file, against
# `cat FILE >/dev/null` and `cp` of the same file measured in the same run, as ratios; and stored size vs file size.
# The files live under var/bench/ (same filesystem as the store) and are warmed in the page cache first.
# SIZE_MB=256 bench/store.sh for a quicker run.
set -eu
cd "$(dirname "$0")/.."
B=build/release
SIZE_MB=${SIZE_MB:-1024}
dir=var/bench
mkdir -p "$dir"
bytes=$((SIZE_MB * 1024 * 1024))
t() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'; }
best() { local b=1e9 x; for _ in 1 2 3; do x=$(t "$@"); b=$(awk -v x="$x" -v b="$b" 'BEGIN{print (x < b) ? x : b}'); done; echo "$b"; }
mbs() { awk -v n="$bytes" -v s="$1" 'BEGIN{printf "%.1f", n / 1048576 / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b / a}'; }

printf '%s\n' "store benchmark: ${SIZE_MB} MiB files, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
printf '%-8s %10s %10s %10s %10s | %9s %9s %9s %8s %8s %10s\n' kind "cat MB/s" "cp MB/s" "cp+sync" "put MB/s" \
    "get MB/s" "get/cat" "put/cp" "put/cpS" "stored%" "put RSS"
for kind in random fp16; do
    f=$dir/$kind-$SIZE_MB.bin
    [ -f "$f" ] && [ "$(stat -c %s "$f")" = "$bytes" ] || $B/tools/gen_blob --kind $kind --size $bytes --seed 7 "$f"
    cat "$f" >/dev/null; cat "$f" >/dev/null # warm
    cat_s=$(best sh -c "cat '$f' >/dev/null")
    cp_s=$(best sh -c "cp '$f' '$dir/copy.bin'; rm -f '$dir/copy.bin'")
    cps_s=$(t sh -c "cp '$f' '$dir/copy.bin' && sync '$dir/copy.bin'"); rm -f "$dir/copy.bin"
    rm -rf "$dir/store"
    read -r size put_s get_s ver_s stored chunks comp rss < <($B/bench/store_bench "$dir/store" "$f")
    rm -rf "$dir/store"
    printf '%-8s %10s %10s %10s %10s | %9s %9s %9s %8s %7s%% %7s MiB\n' $kind "$(mbs "$cat_s")" "$(mbs "$cp_s")" \
        "$(mbs "$cps_s")" "$(mbs "$put_s")" "$(mbs "$get_s")" "$(ratio "$get_s" "$cat_s")x" \
        "$(ratio "$put_s" "$cp_s")x" "$(ratio "$put_s" "$cps_s")x" "$(awk -v a="$stored" -v b="$size" 'BEGIN{printf "%.1f", 100 * a / b}')" \
        $((rss / 1024))
    printf '         verified get (SHA-256 while reading): %s MB/s; %s chunks, %s stored compressed\n' \
        "$(mbs "$ver_s")" "$chunks" "$comp"
done
echo "targets: get >= 0.8x cat (page cache), put >= 0.5x cp. cp+sync is a durable copy (put commits durably)."
