# verify_lib.sh - shared by the 2NN verify tests: a sandbox and an assertion helper. Sourced, not run.
set -u
Q=${QUANT:?QUANT must point at the quant binary}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/qdverify.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
n_fail=0
n_ok=0
# The system Python starts in tens of milliseconds; a version-manager shim found first on PATH can take seconds.
# Prefer the one that has what a test needs (jsonschema for 203): the system one first, then PATH's.
PY=python3
for cand in /usr/bin/python3 "$(command -v python3)"; do
    if [ -x "$cand" ] && "$cand" -c "import ${PY_NEEDS:-json}" 2>/dev/null; then PY=$cand; break; fi
done

# expect RC PATTERN CMD... : CMD must exit with RC and its output (stdout+stderr) must match the grep -E PATTERN.
expect() {
    local want=$1 pat=$2 out rc
    shift 2
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL (exit $rc, wanted $want): $*"
        echo "$out" | head -n 5 | sed 's/^/    /'
        n_fail=$((n_fail + 1))
        return 1
    fi
    if [ -n "$pat" ] && ! grep -qE -- "$pat" <<<"$out"; then
        echo "FAIL (output does not match /$pat/): $*"
        echo "$out" | head -n 5 | sed 's/^/    /'
        n_fail=$((n_fail + 1))
        return 1
    fi
    n_ok=$((n_ok + 1))
    return 0
}

finish() {
    echo "$n_ok checks passed, $n_fail failed"
    [ "$n_fail" -eq 0 ]
    exit $?
}
