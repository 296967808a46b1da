# bench/lib.sh - sourced by the benchmark scripts: timing helpers. RUNS (default 3) runs per figure.
# t CMD...: wall seconds of one run of CMD (its output discarded); a failing CMD ends the script
t() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}'
}
# best OUT CMD...: best of RUNS wall seconds of CMD, each run after removing what the last one wrote (OUT) and a
# sync, so that no run pays for the write-back of the one before it
best() {
    local out=$1 b=1e9 x
    shift
    for _ in $(seq "${RUNS:-3}"); do
        rm -f "$out"
        sync
        x=$(t "$@") || exit 1
        b=$(awk -v a="$b" -v c="$x" 'BEGIN{print (c < a) ? c : a}')
    done
    echo "$b"
}
