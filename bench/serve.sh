#!/usr/bin/env bash
# bench/serve.sh - blob GET throughput of quantd against the machine's own baselines, printed as ratios.
#
#   bench/serve.sh [SIZE_MIB]      (default 1024: a 1 GiB blob)
#
# Baselines on the same file, after warming the page cache: `cat FILE >/dev/null` (memory bandwidth of a read),
# `curl file://FILE -o /dev/null` (the same client reading without a network), and a minimal HTTP server in python
# that answers with sendfile(2) over 127.0.0.1 (the nginx-with-sendfile bar, without installing nginx). quantd is started on
# 127.0.0.1 port 0 with a temporary store; the blob is pushed in 128 MiB PATCH chunks, then fetched with
# `curl -o /dev/null` three times (the first warms the store's pages); the best of three is reported.
# Not part of `make test`: it moves gigabytes. Needs curl and python3.
set -eu
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
QUANTD=${QUANTD:-build/release/quantd}
[ -x "$QUANTD" ] || { echo "build first: make"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/quantd-bench.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

echo "making a ${SIZE_MIB} MiB random blob"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/blob"
DIGEST="sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)"

best() { sort -g | tail -n 1; }
mbs() { python3 -c "print(f'{$SIZE_MIB * 1048576 / $1 / 1e6:.0f}')"; }
timeit() { # command... -> seconds
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}

cat "$T/blob" >/dev/null # warm
CAT=$(for _ in 1 2 3; do timeit cat "$T/blob"; done | sort -g | head -n 1)
CURLF=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{speed_download}\n' "file://$T/blob"; done | best)

cat >"$T/sendfile.py" <<'PY'
import os, socket, sys
path, portfile, n = sys.argv[1], sys.argv[2], os.path.getsize(sys.argv[1])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open(portfile + ".tmp", "w").write(str(s.getsockname()[1])); os.rename(portfile + ".tmp", portfile)
for _ in range(3):
    c, _ = s.accept(); c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
    with open(path, "rb") as f:
        c.sendfile(f)
    c.close()
PY
python3 "$T/sendfile.py" "$T/blob" "$T/sfport" &
SFPID=$!
for _ in $(seq 1 200); do [ -s "$T/sfport" ] && break; sleep 0.05; done
SF=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{speed_download}\n' "http://127.0.0.1:$(cat "$T/sfport")/blob"; done | best)
wait $SFPID

"$QUANTD" --store="$T/store" --listen=127.0.0.1:0 --port-file="$T/port" --auth=false --log-level=warn \
    --max-body-bytes=256M 2>"$T/stderr" &
PID=$!
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat "$T/port")"

echo "pushing it in 128 MiB chunks"
LOC=$(curl -s -D - -o /dev/null -X POST "$URL/v2/bench/blob/blobs/uploads/" | sed -n 's/^Location: \(.*\)\r$/\1/p')
split -b 128M "$T/blob" "$T/part."
OFF=0
PUSH0=$(date +%s.%N)
for p in "$T"/part.*; do
    n=$(stat -c %s "$p")
    curl -sf -o /dev/null -X PATCH -H "Content-Range: $OFF-$((OFF + n - 1))" -H 'Content-Type: application/octet-stream' \
        --data-binary @"$p" "$URL$LOC"
    OFF=$((OFF + n))
done
curl -sf -o /dev/null -X PUT "$URL$LOC?digest=$DIGEST"
PUSH1=$(date +%s.%N)
rm -f "$T"/part.*

QD=$(for _ in 1 2 3; do curl -s -o /dev/null -w '%{speed_download}\n' "$URL/v2/bench/blob/blobs/$DIGEST"; done | best)
# check the bytes once
curl -s "$URL/v2/bench/blob/blobs/$DIGEST" | sha256sum | grep -q "${DIGEST#sha256:}" || { echo "digest mismatch"; exit 1; }

python3 - "$SIZE_MIB" "$CAT" "$CURLF" "$QD" "$PUSH0" "$PUSH1" "$SF" <<'PY'
import sys
mib, cat_s, curlf, qd, p0, p1, sf = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
size = mib * 1048576
cat_bps = size / cat_s
print(f"blob size            {mib} MiB")
print(f"cat FILE >/dev/null  {cat_bps/1e6:8.0f} MB/s")
print(f"curl file://FILE     {curlf/1e6:8.0f} MB/s")
print(f"sendfile server      {sf/1e6:8.0f} MB/s  (python, sendfile(2), curl over 127.0.0.1, best of 3)")
print(f"quantd blob GET      {qd/1e6:8.0f} MB/s  (curl over 127.0.0.1, best of 3)")
print(f"quantd push (PATCH+PUT, hashed and chunked) {size/(p1-p0)/1e6:.0f} MB/s")
print(f"ratio quantd / sendfile     {qd/sf:.2f}")
print(f"ratio quantd / curl file://  {qd/curlf:.2f}")
print(f"ratio quantd / cat           {qd/cat_bps:.2f}")
PY
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (other work on the machine skews the ratios)"
