#!/usr/bin/env bash
# tests/run.sh - run the whole suite and end with one line: "N passed, N failed[, N skipped]".
#
#   1. cmocka unit tests (build/release/tests/test_*, from tests/unit/)
#   2. stress tests: crash and concurrency (build/release/tests/test_*, from tests/stress/)
#   3. where nvcc exists: the GPU path built (make CUDA=1, a test of its own) and its unit test (skips without a GPU)
#   4. integration tests (tests/integration/NNN_*.sh): exit 0 pass, 77 skip, anything else fail (402 also runs the
#      CUDA build's quant when there is one)
#   5. the unit tests again, built with clang ASan+UBSan (build/asan)
# T=name runs only the unit/stress binaries and scripts whose name contains it.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
export QD_ROOT=$ROOT
export QUANT=$ROOT/build/release/quant QUANTD=$ROOT/build/release/quantd QD_TOOLS=$ROOT/build/release/tools
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export CMOCKA_MESSAGE_OUTPUT=stdout
filter=${T:-}
passed=0 failed=0 skipped=0
failures=()
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/quantd-tests.XXXXXX")

run_cmocka() { # label binary
    local label=$1 bin=$2 out rc p f s
    out=$log_dir/$(echo "$label" | tr '/ ' '__').log
    local t0=$SECONDS
    "$bin" >"$out" 2>&1
    rc=$?
    p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$out" | awk '{s+=$4} END {print s+0}')
    f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$out" | awk '{s+=$4} END {print s+0}')
    s=$(grep -E '^\[  SKIPPED \] [0-9]+ test' "$out" | awk '{s+=$4} END {print s+0}')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    printf '%-44s %3d passed %3d failed %3d skipped  (%ds)\n' "$label" "$p" "$f" "$s" $((SECONDS - t0))
    if [ "$f" -ne 0 ]; then
        failures+=("$label")
        grep -E '^\[  (FAILED|ERROR) \]|error|Error|ERROR|seed=' "$out" | head -n 30
        echo "   (full log: $out)"
    fi
    grep -E '^\[  SKIPPED \] [a-z]|skip:' "$out" | head -n 5 | sed 's/^/   /'
}

run_script() { # label script
    local label=$1 script=$2 out rc t0=$SECONDS
    out=$log_dir/$(basename "$script").log
    timeout 900 bash "$script" >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1)); printf '%-44s pass  (%ds)\n' "$label" $((SECONDS - t0))
    elif [ "$rc" -eq 77 ]; then
        skipped=$((skipped + 1)); printf '%-44s skip: %s\n' "$label" "$(tail -n 1 "$out")"
    else
        failed=$((failed + 1)); failures+=("$label")
        printf '%-44s FAIL (exit %d, %ds)\n' "$label" "$rc" $((SECONDS - t0))
        tail -n 30 "$out" | sed 's/^/   /'
    fi
}

run_fuzz() { # label binary corpus-dir: replay every file; a crash or an abort fails
    local label=$1 bin=$2 dir=$3 out rc t0=$SECONDS
    out=$log_dir/$(echo "$label" | tr '/ ' '__').log
    "$bin" "$dir" >"$out" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1)); printf '%-44s pass  (%s, %ds)\n' "$label" "$(tail -n 1 "$out")" $((SECONDS - t0))
    else
        failed=$((failed + 1)); failures+=("$label")
        printf '%-44s FAIL (exit %d)\n' "$label" "$rc"
        tail -n 30 "$out" | sed 's/^/   /'
    fi
}

matches() { [ -z "$filter" ] || [[ "$1" == *"$filter"* ]]; }

echo "== unit tests (release)"
for src in tests/unit/test_*.c; do
    name=$(basename "$src" .c); matches "$name" || continue
    run_cmocka "unit/$name" "build/release/tests/$name"
done
echo "== stress tests (release)"
for src in tests/stress/test_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c); matches "$name" || continue
    run_cmocka "stress/$name" "build/release/tests/$name"
done
echo "== fuzz corpora (release)"
for src in tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c); matches "$name" || continue
    run_fuzz "fuzz/$name" "build/release/fuzz/$name" "tests/fuzz/corpus/$name"
done
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
# a toolchain that cannot build a trivial kernel for our target (an nvcc too old for sm_90, or one refusing this
# gcc) is this machine's limit, not our code's: skipped with its message
nvcc_probe() {
    printf '__global__ void k(int *p) { *p = 1; }\nint main(void) { return 0; }\n' >"$log_dir/probe.cu"
    "$nvcc" -std=c++17 -arch=sm_${CUDA_ARCH:-90} -o "$log_dir/probe" "$log_dir/probe.cu" >"$log_dir/probe.log" 2>&1
}
if matches cuda && [ -x "$nvcc" ] && ! nvcc_probe; then
    skipped=$((skipped + 1))
    printf '%-44s skip: %s cannot build for sm_%s here: %s\n' "cuda/build" "$nvcc" "${CUDA_ARCH:-90}" \
        "$(head -n 1 "$log_dir/probe.log")"
elif matches cuda && [ -x "$nvcc" ]; then
    echo "== GPU path (make CUDA=1 with $nvcc)"
    t0=$SECONDS
    if make --no-print-directory CUDA=1 NVCC="$nvcc" build/release-cuda/quant build/release-cuda/tests/test_cuda \
        >"$log_dir/cuda_build.log" 2>&1; then
        passed=$((passed + 1)); printf '%-44s pass  (%ds)\n' "cuda/build" $((SECONDS - t0))
        run_cmocka "cuda/test_cuda" "build/release-cuda/tests/test_cuda"
    else
        failed=$((failed + 1)); failures+=("cuda/build")
        printf '%-44s FAIL\n' "cuda/build"
        tail -n 30 "$log_dir/cuda_build.log" | sed 's/^/   /'
    fi
elif matches cuda; then
    echo "== GPU path: no nvcc here, not built (make CUDA=1 where CUDA is installed)"
fi
echo "== integration tests"
for script in tests/integration/[0-9]*.sh; do
    [ -e "$script" ] || continue
    name=$(basename "$script" .sh); matches "$name" || continue
    run_script "integration/$name" "$script"
done
if [ -z "${QD_SKIP_ASAN:-}" ]; then
    echo "== unit tests (clang ASan+UBSan)"
    for src in tests/unit/test_*.c; do
        name=$(basename "$src" .c); matches "$name" || continue
        QD_TOOLS=$ROOT/build/asan/tools run_cmocka "asan/$name" "build/asan/tests/$name"
    done
    for src in tests/fuzz/fuzz_*.c; do
        [ -e "$src" ] || continue
        name=$(basename "$src" .c); matches "$name" || continue
        run_fuzz "asan/fuzz/$name" "build/asan/fuzz/$name" "tests/fuzz/corpus/$name"
    done
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "failed: ${failures[*]}"
fi
[ "$failed" -eq 0 ] && rm -rf "$log_dir"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
