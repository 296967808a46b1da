#!/usr/bin/env bash
# Every kernel variant this CPU runs, with 1, 2 and 3 threads, writes the same bytes for a whole generated model:
# quant quantize under QD_KERNELS=ref|avx2|avx512 x -t 1|2|3 for Q8_0, Q4_0, Q4_K_M and Q6_K, all files
# cmp-identical; and the same bytes from each of the writer's paths: the page cache (the default), --fsync
# (O_DIRECT), and --fsync on a file system without O_DIRECT (tmpfs: the page cache with early write-back).
. "$(dirname "$0")/../lib/common.sh"
"$QD_TOOLS/gen_ckpt" --out "$WORK/m.gguf" --format gguf --dtype f16 --dim 512 --ff 1376 --layers 2 --heads 8 \
    --kv-heads 4 --vocab 2048 --seed 11 || fail "gen_ckpt"
variants=$("$QUANT" kernels | awk '/^built:/ {for (i = 2; i <= NF; i++) print $i}')
usable=""
for v in $variants; do
    QD_KERNELS=$v "$QUANT" kernels >/dev/null 2>&1 && usable="$usable $v"
done
echo "variants this CPU runs:$usable"
for recipe in Q8_0 Q4_0 Q4_K_M Q6_K; do
    first=""
    for v in $usable; do
        for t in 1 2 3; do
            out=$WORK/$recipe.$v.t$t.gguf
            QD_KERNELS=$v "$QUANT" quantize --in "$WORK/m.gguf" --type "$recipe" --out "$out" -t $t 2>/dev/null >"$WORK/summary" \
                || fail "quantize $recipe with $v, $t thread(s)"
            grep -q "kernels $v" "$WORK/summary" || { cat "$WORK/summary"; fail "the summary does not name kernel $v"; }
            if [ -z "$first" ]; then first=$out; else cmp "$first" "$out" || fail "$recipe: $v -t $t differs from $first"; fi
        done
    done
    echo "$recipe: identical across$usable x 1,2,3 threads ($(stat -c %s "$first") bytes)"
    "$QUANT" quantize --in "$WORK/m.gguf" --type "$recipe" --out "$WORK/durable.gguf" -t 2 --fsync >/dev/null 2>&1 ||
        fail "quantize $recipe --fsync"
    cmp "$first" "$WORK/durable.gguf" || fail "$recipe: the --fsync output differs"
    echo "$recipe: the same bytes with --fsync"
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        shm=$(mktemp /dev/shm/qd401.XXXXXX)
        "$QUANT" quantize --in "$WORK/m.gguf" --type "$recipe" --out "$shm" -t 2 --fsync >/dev/null 2>&1 ||
            { rm -f "$shm" "$shm.part"; fail "quantize $recipe to tmpfs"; }
        cmp "$first" "$shm" || { rm -f "$shm"; fail "$recipe: the tmpfs output differs"; }
        rm -f "$shm"
        echo "$recipe: the same bytes with --fsync on tmpfs (no O_DIRECT)"
    fi
done
