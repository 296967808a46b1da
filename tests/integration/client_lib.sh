# client_lib.sh - helpers for the client's integration tests (8NN_*.sh); sourced after daemon_lib.sh.
#
# client_setup            keys (good, other), a policy trusting good only, HOME and the cache under $T
# start_proxy MODE [N]    client_proxy.py in front of the daemon; sets PPORT, PURL, PPID_, COUNT (its count file)
# stop_proxy
# qrun EXPECT_RC ARGS...  run $QUANT, fail unless the exit status is EXPECT_RC; stderr in $T/err, stdout in $T/out
client_setup() {
    export HOME="$T/home" XDG_CACHE_HOME="$T/home/.cache"
    unset QUANT_TOKEN QUANT_REGISTRY QUANT_POLICY QUANT_CONFIG XDG_CONFIG_HOME
    mkdir -p "$HOME"
    "$QUANT" key gen --out "$T/good" >/dev/null || fail "key gen"
    "$QUANT" key gen --out "$T/other" >/dev/null || fail "key gen"
    "$QUANT" policy new --trust "$T/good.pub" --out "$T/policy.json" >/dev/null || fail "policy new"
}

PPID_=
# the real interpreter, not a wrapper script (a pyenv shim would leave the proxy behind when killed)
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
trap 'stop_proxy; cleanup' EXIT
start_proxy() {
    rm -f "$T/pport"
    COUNT="$T/count.$RANDOM"
    "$PYTHON" "$(dirname "$0")/client_proxy.py" "$PORT" "$T/pport" "$COUNT" "$@" 2>>"$T/proxy.err" &
    PPID_=$!
    for _ in $(seq 1 200); do
        [ -s "$T/pport" ] && break
        kill -0 "$PPID_" 2>/dev/null || fail "the proxy exited: $(cat "$T/proxy.err")"
        sleep 0.05
    done
    [ -s "$T/pport" ] || fail "the proxy did not start within 10 s"
    PPORT=$(cat "$T/pport")
    PURL="http://127.0.0.1:$PPORT"
}

stop_proxy() {
    [ -n "$PPID_" ] && { kill "$PPID_" 2>/dev/null; wait "$PPID_" 2>/dev/null; }
    PPID_=
}

qrun() {
    local want=$1 rc
    shift
    "$QUANT" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ "$rc" = "$want" ] || { echo "--- quant $*"; cat "$T/err"; fail "quant $1: exit $rc, expected $want"; }
}
