# tests/lib/common.sh - sourced by integration tests: a sandbox, assertions, schema checks.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
QUANTD=${QUANTD:-$ROOT/build/release/quantd}
QD_TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
SHARED=$ROOT/../shared
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qdit.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE cmd...: run cmd, require its exit code
expect_exit() {
    local want=$1; shift
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    [ "$got" -eq "$want" ] || { cat "$WORK/err" >&2; fail "'$*' exited $got, expected $want"; }
}
# expect_stderr CODE PATTERN cmd...: run cmd, require its exit code and PATTERN (grep) in what it wrote to stderr
expect_stderr() {
    local want=$1 pat=$2; shift 2
    "$@" >"$WORK/out" 2>"$WORK/err"
    local got=$?
    [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$WORK/err")"
    grep -q -- "$pat" "$WORK/err" || fail "'$*': stderr lacks '$pat': $(cat "$WORK/err")"
}
# a python that has jsonschema (Debian's python3-jsonschema)
schema_python() {
    for py in /usr/bin/python3 python3; do
        if "$py" -c 'import jsonschema' 2>/dev/null; then echo "$py"; return 0; fi
    done
    return 1
}
# check_schema SCHEMA DEF < json
check_schema() {
    local py
    py=$(schema_python) || fail "python3-jsonschema is not installed (make deps)"
    "$py" "$ROOT/tests/lib/check_schema.py" "$ROOT/schemas/$1" "${2:-}" || fail "output does not match schemas/$1 ${2:-}"
}
