# daemon_lib.sh - helpers for the daemon's integration tests (3NN_*.sh); sourced, not run.
#
# start_daemon [--flag=value ...]   start $QUANTD on 127.0.0.1 port 0 with a fresh store under $T; sets PORT, PID, URL
# stop_daemon                       SIGTERM and wait (fails the test when the exit status is not 0)
# req METHOD PATH [curl args...]    one request; sets STATUS, body in $T/body, headers in $T/hdr
# hdr NAME                          a response header's value
# expect WANT MSG                   fail unless STATUS == WANT
# jq_py EXPR                        evaluate a python expression over the JSON body bound to `j`
set -u
: "${QUANTD:?QUANTD must point at the quantd binary}" "${QUANT:?QUANT must point at the quant binary}"
command -v curl >/dev/null || { echo "curl is not installed (make deps)"; exit 77; }
command -v python3 >/dev/null || { echo "python3 is not installed (make deps)"; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/quantd-it.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" 2>/dev/null; fi
    rm -rf "$T"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*"
    [ -f "$T/body" ] && { echo "--- last body:"; head -c 2000 "$T/body"; echo; }
    [ -f "$T/log" ] && { echo "--- daemon log (tail):"; tail -n 20 "$T/log"; }
    [ -s "$T/stderr" ] && { echo "--- daemon stderr (tail):"; tail -n 60 "$T/stderr"; }
    exit 1
}

start_daemon() {
    rm -f "$T/port"
    "$QUANTD" --store="$T/store" --listen=127.0.0.1:0 --port-file="$T/port" --log-file="$T/log" "$@" \
        2>>"$T/stderr" &
    PID=$!
    # bounded wait for the port file (the daemon writes it once it listens)
    for _ in $(seq 1 200); do
        [ -s "$T/port" ] && break
        kill -0 "$PID" 2>/dev/null || { cat "$T/stderr"; fail "quantd exited during start"; }
        sleep 0.05
    done
    [ -s "$T/port" ] || fail "quantd did not write its port file within 10 s"
    PORT=$(cat "$T/port")
    URL="http://127.0.0.1:$PORT"
}

stop_daemon() {
    kill -TERM "$PID"
    wait "$PID"
    local rc=$?
    PID=
    [ "$rc" -eq 0 ] || fail "quantd exited with $rc after SIGTERM"
}

req() {
    local method=$1 path=$2
    shift 2
    STATUS=$(curl -sS -X "$method" -o "$T/body" -D "$T/hdr" -w '%{http_code}' --max-time 30 "$@" "$URL$path") ||
        fail "curl failed: $method $path"
}

hdr() { grep -i "^$1:" "$T/hdr" | head -n 1 | cut -d: -f2- | sed 's/^ *//; s/\r$//'; }

expect() { [ "$STATUS" = "$1" ] || fail "$2: status $STATUS, expected $1"; }

jq_py() { python3 -c "import json,sys; j=json.load(open('$T/body')); print($1)"; }

# expect_code CODE: the body is an OCI error body whose first code is CODE
expect_code() {
    local got
    got=$(jq_py "j['errors'][0]['code']" 2>/dev/null) || fail "not an OCI error body"
    [ "$got" = "$1" ] || fail "error code $got, expected $1"
}

sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

# push_blob REPO FILE: monolithic POST ?digest=
push_blob() {
    req POST "/v2/$1/blobs/uploads/?digest=$(sha "$2")" --data-binary @"$2" -H 'Content-Type: application/octet-stream' \
        ${AUTH:+-H "$AUTH"}
    expect 201 "push blob $2 to $1"
}

# make_manifest OUT CONFIG_FILE LAYER_FILE... : an OCI image manifest (ModelPack media types)
make_manifest() {
    local out=$1 cfg=$2
    shift 2
    python3 - "$out" "$cfg" "$@" <<'PY'
import hashlib, json, os, sys
out, cfg, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
def desc(p, mt):
    b = open(p, 'rb').read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.cncf.model.manifest.v1+json",
     "config": desc(cfg, "application/vnd.cncf.model.config.v1+json"),
     "layers": [dict(desc(l, "application/vnd.cncf.model.weight.v1.raw"),
                     annotations={"org.cncf.model.filepath": os.path.basename(l)}) for l in layers]}
subj = os.environ.get("SUBJECT")
if subj:
    d, size = subj.split(",")
    m["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": int(size)}
    m["artifactType"] = os.environ.get("ARTIFACT_TYPE", "application/vnd.dev.sigstore.bundle.v0.3+json")
    m["annotations"] = {"org.opencontainers.image.created": "2026-11-27T00:00:00Z"}
open(out, 'w').write(json.dumps(m, separators=(",", ":")))
PY
}
