#!/usr/bin/env bash
# 204_fuzz_replay.sh - replay every fuzz corpus: tests/fuzz/fuzz_<target>.c built with tests/fuzz/driver.c runs
# every file of tests/fuzz/corpus/<target>/, in the release build and, when built, the ASan+UBSan build.
# Generic: a new fuzz_<target>.c with a corpus/<target>/ folder is picked up without changing this script.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
fail=0 ran=0
for src in "$ROOT"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    target=${name#fuzz_}
    corpus=$ROOT/tests/fuzz/corpus/$target
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        echo "FAIL: $name has no corpus in tests/fuzz/corpus/$target/"
        fail=1
        continue
    fi
    for flavour in release asan; do
        bin=$ROOT/build/$flavour/fuzz/$name
        if [ ! -x "$bin" ]; then
            [ "$flavour" = release ] && { echo "FAIL: $bin is not built (make tests)"; fail=1; }
            continue
        fi
        if ! "$bin" "$corpus"; then
            echo "FAIL: $flavour $name on $corpus"
            fail=1
        fi
        ran=$((ran + 1))
    done
done
[ "$ran" -gt 0 ] || { echo "FAIL: nothing replayed"; fail=1; }
exit $fail
