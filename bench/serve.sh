#!/usr/bin/env bash
# bench/serve.sh - quantd's serving path against nginx serving the same bytes, in the same run, as ratios.
#
#   bench/serve.sh [SIZE_MIB]      (default 1024: a 1 GiB blob)     env: DURATION (wrk seconds, 10), MIXED (60)
#
# 1. Manifest GET: a 4096-byte OCI manifest, `wrk -t2 -c64 --latency` (keep-alive), requests/s.
# 2. Blob GET: a SIZE_MIB random blob, `curl -o /dev/null` over 127.0.0.1, MB/s (best of 3; the first warms pages).
#    nginx 1.22 (Debian) is started here as an unprivileged process on 127.0.0.1 with its own prefix, config and
#    temp paths (no system service): one worker process (quantd serves from one event-loop thread), sendfile on,
#    tcp_nopush on, access log on (quantd logs one line per request too). It serves files laid out under the same
#    URL paths as quantd's, so the same wrk/curl command lines hit both. Rounds alternate nginx, quantd, nginx,
#    quantd; the best round of each is reported.
# 3. Mixed load for MIXED seconds against quantd: pulls (wrk, 16 connections, a Lua script cycling manifest GETs,
#    1 MiB blob range GETs and a small blob GET), pushes (a loop of monolithic blob + manifest pushes), and two
#    quantize jobs (Q8_0 and Q4_K_M of stories260K with each layer repeated 16 times, when ../shared/models has
#    it). Prints errors (non-2xx, socket errors, failed pushes, failed jobs: the bench exits 1 when any) and p50/p99 latencies.
# Not part of `make test`: it moves gigabytes and takes about two minutes. Needs curl, python3, wrk and nginx
# (DEB_PKGS). Absolute figures depend on the machine's load: compare the ratios.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SIZE_MIB=${1:-1024}
DURATION=${DURATION:-10}
MIXED=${MIXED:-60}
QUANTD=${QUANTD:-build/release/quantd}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$QUANTD" ] || { echo "build first: make"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (make deps)"; exit 1; }
[ -x "$NGINX" ] || { echo "nginx is not installed (make deps)"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/quantd-bench.XXXXXX")
chmod 755 "$T"
PID= NPID= PUSHPID=
cleanup() {
    [ -n "$PUSHPID" ] && kill "$PUSHPID" 2>/dev/null && wait "$PUSHPID" 2>/dev/null
    [ -n "$NPID" ] && kill -TERM "$NPID" 2>/dev/null && wait "$NPID" 2>/dev/null
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "making a ${SIZE_MIB} MiB random blob and a 4096-byte manifest"
mkdir -p "$T/files"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/files/blob"
head -c 65536 /dev/urandom >"$T/files/small"
printf '{"format":"bench"}' >"$T/files/config"
BLOB=$(sha "$T/files/blob")
SMALL=$(sha "$T/files/small")
CONFIG=$(sha "$T/files/config")
python3 - "$T/files/manifest" "$T/files" <<'PY'
import hashlib, json, os, sys
out, d = sys.argv[1], sys.argv[2]
def desc(name, mt):
    b = open(os.path.join(d, name), "rb").read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.cncf.model.manifest.v1+json",
     "config": desc("config", "application/vnd.cncf.model.config.v1+json"),
     "layers": [desc("blob", "application/vnd.cncf.model.weight.v1.raw"),
                desc("small", "application/vnd.cncf.model.weight.v1.raw")],
     "annotations": {"bench.pad": ""}}
pad = 4096 - len(json.dumps(m, separators=(",", ":")))
m["annotations"]["bench.pad"] = "x" * pad
s = json.dumps(m, separators=(",", ":"))
assert len(s) == 4096, len(s)
open(out, "w").write(s)
PY
MANIFEST=$(sha "$T/files/manifest")

# ---- nginx: the same bytes under the same paths
NPORT=$(free_port)
W="$T/www/v2/bench/model"
mkdir -p "$W/manifests" "$W/blobs" "$T/nginx/tmp"
ln "$T/files/manifest" "$W/manifests/v1"
ln "$T/files/blob" "$W/blobs/$BLOB"
ln "$T/files/small" "$W/blobs/$SMALL"
cat >"$T/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
http {
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log $T/nginx/access.log;
    client_body_temp_path $T/nginx/tmp/body;
    proxy_temp_path $T/nginx/tmp/proxy;
    fastcgi_temp_path $T/nginx/tmp/fastcgi;
    uwsgi_temp_path $T/nginx/tmp/uwsgi;
    scgi_temp_path $T/nginx/tmp/scgi;
    default_type application/octet-stream;
    types { application/vnd.oci.image.manifest.v1+json v1; }
    server {
        listen 127.0.0.1:$NPORT;
        root $T/www;
    }
}
EOF
chmod -R a+rX "$T/files" "$T/www"
NGINX_CMD=("$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf")
if [ "$(id -u)" = 0 ]; then
    # never as root: the same unprivileged user for the master and its worker
    chown -R nobody "$T/nginx"
    NGINX_CMD=(setpriv --reuid=nobody --regid=nogroup --clear-groups "${NGINX_CMD[@]}")
fi
"${NGINX_CMD[@]}" 2>"$T/nginx-stderr" &
NPID=$!
NURL="http://127.0.0.1:$NPORT"
for _ in $(seq 1 200); do curl -sf -o /dev/null "$NURL/v2/bench/model/manifests/v1" && break; sleep 0.05; done
curl -sf -o /dev/null "$NURL/v2/bench/model/manifests/v1" || { cat "$T/nginx-stderr" "$T/nginx/error.log"; exit 1; }

# ---- quantd
"$QUANTD" --store="$T/store" --listen=127.0.0.1:0 --port-file="$T/port" --auth=false --log-file="$T/quantd.log" \
    --max-jobs=2 --job-threads=1 --validation-policy="$T/vpolicy.json" 2>"$T/stderr" &
PID=$!
echo '{"version": 1, "classes": [{"name": "any", "min_bits": 0, "max_mean_kld": 10}]}' >"$T/vpolicy.json"
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || { cat "$T/stderr"; exit 1; }
QURL="http://127.0.0.1:$(cat "$T/port")"

push_mono() { # push_mono REPO FILE
    curl -sf -o /dev/null -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$2" \
        "$QURL/v2/$1/blobs/uploads/?digest=$(sha "$2")"
}
echo "pushing the blob to quantd in 64 MiB PATCH chunks"
LOC=$(curl -s -D - -o /dev/null -X POST "$QURL/v2/bench/model/blobs/uploads/" | sed -n 's/^Location: \(.*\)\r$/\1/p')
split -b 64M "$T/files/blob" "$T/part."
OFF=0
PUSH0=$(date +%s.%N)
for p in "$T"/part.*; do
    n=$(stat -c %s "$p")
    curl -sf -o /dev/null -X PATCH -H "Content-Range: $OFF-$((OFF + n - 1))" \
        -H 'Content-Type: application/octet-stream' --data-binary @"$p" "$QURL$LOC"
    OFF=$((OFF + n))
    rm -f "$p"
done
curl -sf -o /dev/null -X PUT "$QURL$LOC?digest=$BLOB"
PUSH1=$(date +%s.%N)
push_mono bench/model "$T/files/small"
push_mono bench/model "$T/files/config"
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$T/files/manifest" "$QURL/v2/bench/model/manifests/v1"

# the same bytes from both
MPATH=/v2/bench/model/manifests/v1
BPATH=/v2/bench/model/blobs/$BLOB
for u in "$NURL" "$QURL"; do
    [ "$(curl -sf "$u$MPATH" | sha256sum | cut -d' ' -f1)" = "${MANIFEST#sha256:}" ] || { echo "manifest differs at $u"; exit 1; }
    [ "$(curl -sf "$u$BPATH" | sha256sum | cut -d' ' -f1)" = "${BLOB#sha256:}" ] || { echo "blob differs at $u"; exit 1; }
done

wrk_rps() { # wrk_rps URL -> requests/s (fails on any error)
    local out
    out=$(wrk -t2 -c64 -d"${DURATION}s" --latency "$1")
    echo "$out" >>"$T/wrk.txt"
    if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then echo "$out" >&2; echo "wrk saw errors" >&2; return 1; fi
    echo "$out" | sed -n 's/^Requests\/sec: *//p'
}
curl_bps() { curl -sf -o /dev/null -w '%{speed_download}\n' "$1"; }
best() { sort -g | tail -n 1; }

echo "manifest GET: wrk -t2 -c64 -d${DURATION}s, two rounds each (nginx, quantd, nginx, quantd)"
NM=() QM=()
for _ in 1 2; do
    NM+=("$(wrk_rps "$NURL$MPATH")")
    QM+=("$(wrk_rps "$QURL$MPATH")")
done
echo "blob GET: curl, three rounds each"
NB=() QB=()
for _ in 1 2 3; do
    NB+=("$(curl_bps "$NURL$BPATH")")
    QB+=("$(curl_bps "$QURL$BPATH")")
done
NMB=$(printf '%s\n' "${NM[@]}" | best) QMB=$(printf '%s\n' "${QM[@]}" | best)
NBB=$(printf '%s\n' "${NB[@]}" | best) QBB=$(printf '%s\n' "${QB[@]}" | best)
python3 - "$SIZE_MIB" "$PUSH0" "$PUSH1" "$NMB" "$QMB" "$NBB" "$QBB" "${NM[*]}" "${QM[*]}" "${NB[*]}" "${QB[*]}" <<'PY'
import sys
mib, p0, p1, nm, qm, nb, qb = int(sys.argv[1]), *map(float, sys.argv[2:8])
rounds = sys.argv[8:12]
mb = lambda v: " ".join(f"{float(x)/1e6:.0f}" for x in v.split())
rq = lambda v: " ".join(f"{float(x):.0f}" for x in v.split())
print(f"manifest GET (4096 B, 64 conn)  nginx {nm:9.0f} req/s   quantd {qm:9.0f} req/s   ratio {qm/nm:.2f}  (target >= 0.80)")
print(f"    rounds: nginx {rq(rounds[0])}  quantd {rq(rounds[1])}")
print(f"blob GET ({mib} MiB, curl)        nginx {nb/1e6:9.0f} MB/s    quantd {qb/1e6:9.0f} MB/s    ratio {qb/nb:.2f}  (target >= 1.00)")
print(f"    rounds: nginx {mb(rounds[2])}  quantd {mb(rounds[3])}")
print(f"quantd push (64 MiB PATCH chunks + PUT, hashed and stored) {mib*1048576/(p1-p0)/1e6:.0f} MB/s")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (other work on the machine skews these figures)"

# ---- mixed load
echo "mixed load for ${MIXED}s: pulls (wrk, 16 connections), pushes (a loop), two quantize jobs"
MODEL=$ROOT/../shared/models/stories260K.bin
JOBS=
if [ -f "$MODEL" ]; then
    python3 tests/integration/tile_llama2c.py "$MODEL" "$T/files/ckpt.bin" 16
    printf '{"descriptor":{"name":"bench"},"config":{"format":"llama2c","precision":"f32"},"modelfs":{"type":"layers","diffIds":["%s"]}}' \
        "$(sha "$T/files/ckpt.bin")" >"$T/files/ckpt-config.json"
    push_mono bench/ckpt "$T/files/ckpt-config.json"
    push_mono bench/ckpt "$T/files/ckpt.bin"
    python3 - "$T/files/ckpt.json" "$T/files/ckpt-config.json" "$T/files/ckpt.bin" <<'PY'
import hashlib, json, sys
def desc(p, mt):
    b = open(p, "rb").read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.cncf.model.manifest.v1+json",
     "config": desc(sys.argv[2], "application/vnd.cncf.model.config.v1+json"),
     "layers": [dict(desc(sys.argv[3], "application/vnd.cncf.model.weight.v1.raw"),
                     annotations={"org.cncf.model.filepath": "ckpt.bin"})]}
open(sys.argv[1], "w").write(json.dumps(m, separators=(",", ":")))
PY
    curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary @"$T/files/ckpt.json" "$QURL/v2/bench/ckpt/manifests/ckpt"
    JOBS=yes
else
    echo "(../shared/models/stories260K.bin not found: the mixed load runs without jobs)"
fi

cat >"$T/mixed.lua" <<EOF
local paths = { "$MPATH", "/v2/bench/model/blobs/$SMALL", "$BPATH", "$MPATH" }
local i = 0
request = function()
    i = i + 1
    local k = (i % #paths) + 1
    if k == 3 then
        local off = (i * 1048576) % ($SIZE_MIB * 1048576 - 1048576)
        return wrk.format("GET", paths[k], { Range = "bytes=" .. off .. "-" .. (off + 1048575) })
    end
    return wrk.format("GET", paths[k])
end
EOF

# pushes: each a fresh 256 KiB blob (monolithic POST) and a manifest naming it, under its own tag; one line per
# push: "<status> <seconds>"
push_loop() {
    local i=0 t0 t1 ok
    while :; do
        i=$((i + 1))
        head -c 262144 /dev/urandom >"$T/push.bin"
        python3 - "$T/push.json" "$T/files/config" "$T/push.bin" <<'PY'
import hashlib, json, sys
def desc(p, mt):
    b = open(p, "rb").read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": desc(sys.argv[2], "application/vnd.cncf.model.config.v1+json"),
     "layers": [desc(sys.argv[3], "application/vnd.cncf.model.weight.v1.raw")]}
open(sys.argv[1], "w").write(json.dumps(m, separators=(",", ":")))
PY
        t0=$(date +%s.%N)
        ok=0
        push_mono bench/pushed "$T/push.bin" && push_mono bench/pushed "$T/files/config" &&
            curl -sf -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
                --data-binary @"$T/push.json" "$QURL/v2/bench/pushed/manifests/p$i" && ok=1
        t1=$(date +%s.%N)
        echo "$ok $t0 $t1" >>"$T/pushes.txt"
    done
}
: >"$T/pushes.txt"
if [ -n "$JOBS" ]; then
    for recipe in Q8_0 Q4_K_M; do
        curl -sf -X POST -H 'Content-Type: application/json' \
            --data-binary '{"source":"bench/ckpt:ckpt","recipe":"'$recipe'","calibration":"none"}' "$QURL/v1/jobs" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' >>"$T/jobs.txt"
    done
fi
push_loop &
PUSHPID=$!
MIX0=$(date +%s.%N)
wrk -t2 -c16 -d"${MIXED}s" --latency -s "$T/mixed.lua" "$QURL" >"$T/mixed.txt"
kill "$PUSHPID" 2>/dev/null
wait "$PUSHPID" 2>/dev/null || true
PUSHPID=
ERR=0
cat "$T/mixed.txt" | sed -n '/Latency Distribution/,/requests in/p'
if grep -q 'Non-2xx\|Socket errors' "$T/mixed.txt"; then grep 'Non-2xx\|Socket errors' "$T/mixed.txt"; ERR=1; fi
JOBSUM="no jobs"
if [ -n "$JOBS" ]; then
    JOBSUM=
    while read -r id; do
        st=
        for _ in $(seq 1 1200); do
            st=$(curl -sf "$QURL/v1/jobs/$id" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["state"])')
            case $st in done | failed | cancelled) break ;; esac
            sleep 0.5
        done
        [ "$st" = done ] || ERR=1
        JOBSUM="$JOBSUM $id=$st"
    done <"$T/jobs.txt"
    JOBEND=$(curl -sf "$QURL/v1/jobs" | python3 -c '
import json, sys
j = json.load(sys.stdin)
jobs = j["jobs"] if isinstance(j, dict) else j
print(" ".join("%s:%s" % (x.get("recipe"), x.get("state")) for x in jobs))')
    JOBSUM="$JOBSUM ($JOBEND)"
fi
python3 - "$T/mixed.txt" "$T/pushes.txt" "$MIX0" "$MIXED" "$JOBSUM" <<'PY' || ERR=1
import re, sys
txt = open(sys.argv[1]).read()
reqs = re.search(r"(\d+) requests in", txt).group(1)
p99 = re.search(r"^\s*99%\s+(\S+)", txt, re.M).group(1)
p50 = re.search(r"^\s*50%\s+(\S+)", txt, re.M).group(1)
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
ok = [float(b) - float(a) for s, a, b in rows if s == "1"]
bad = sum(1 for r in rows if r[0] != "1")
ok.sort()
pct = lambda q: ok[min(len(ok) - 1, int(q * len(ok)))] * 1000 if ok else float("nan")
print(f"pulls:  {reqs} requests in {sys.argv[4]} s, latency p50 {p50} p99 {p99} (wrk, 16 connections)")
print(f"pushes: {len(ok)} ok, {bad} failed; latency of one push (blob + config + manifest) p50 {pct(.5):.1f} ms p99 {pct(.99):.1f} ms")
print(f"jobs:  {sys.argv[5]}")
sys.exit(1 if bad else 0)
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
if [ "$ERR" = 0 ]; then echo "mixed load: 0 errors"; else echo "mixed load: ERRORS (see above)"; exit 1; fi
