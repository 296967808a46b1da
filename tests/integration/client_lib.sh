# client_lib.sh - helpers for the client's integration tests (8NN_*.sh); sourced after daemon_lib.sh.
#
# client_setup            keys (good, other), a policy trusting good only, HOME and the cache under $T
# start_proxy MODE [N]    client_proxy.py in front of the daemon; sets PPORT, PURL, PPID_, COUNT (its count file)
# stop_proxy
# qrun EXPECT_RC ARGS...  run $QUANT, fail unless the exit status is EXPECT_RC; stderr in $T/err, stdout in $T/out
# push_random NAME:TAG FILE SIZE   SIZE random bytes into FILE, pushed signed with the good key (the daemon at $URL)
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

push_random() {
    head -c "$3" /dev/urandom >"$2"
    qrun 0 push "$1" "$2" --sign "$T/good" --registry "$URL"
}

qrun() {
    local want=$1 rc
    shift
    "$QUANT" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    [ "$rc" = "$want" ] || { echo "--- quant $*"; cat "$T/err"; fail "quant $1: exit $rc, expected $want"; }
}

# Schema checks in one python run (importing jsonschema costs about a second on a loaded machine):
# schema_keep DEF FILE   keep a copy of FILE to be checked against $defs/DEF of schemas/client.schema.json
# schema_check_all       check every kept file; fail on the first that does not match
SCHEMA_KEPT=0
schema_keep() {
    mkdir -p "$T/schema-kept"
    SCHEMA_KEPT=$((SCHEMA_KEPT + 1))
    cp "$2" "$T/schema-kept/$SCHEMA_KEPT.$1.json"
}
schema_check_all() {
    local py=$PYTHON
    /usr/bin/python3 -c 'import jsonschema' 2>/dev/null && py=/usr/bin/python3 # Debian's python3-jsonschema
    "$py" - "$(dirname "${BASH_SOURCE[0]}")/../../schemas/client.schema.json" "$T/schema-kept" <<'PY' ||
import json, os, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
n = 0
for f in sorted(os.listdir(sys.argv[2]), key=lambda s: int(s.split(".")[0])):
    d = f.split(".")[1]
    doc = json.load(open(os.path.join(sys.argv[2], f)))
    try:
        jsonschema.validate(doc, {"$ref": "#/$defs/" + d, "$defs": schema["$defs"]}, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        print("%s: schema violation of $defs/%s: %s at %s" % (f, d, e.message, list(e.absolute_path)))
        sys.exit(1)
    n += 1
print("%d outputs match schemas/client.schema.json" % n)
PY
        fail "an output does not match its schema"
}
