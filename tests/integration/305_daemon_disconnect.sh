#!/usr/bin/env bash
# Clients that misbehave: drop the connection in the middle of an upload body, in the middle of a blob download,
# or stall inside their headers. The daemon keeps serving, nothing half-written becomes visible, the store stays
# fsck-clean, and stalled connections are closed after the configured timeout.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false --timeout=2

head -c 40000000 /dev/urandom >"$T/big"
push_blob org/m "$T/big"
req POST /v2/org/m/blobs/uploads/; expect 202 "session"; LOC=$(hdr Location)

python3 - "$PORT" "$LOC" "$(sha "$T/big")" <<'PY' || fail "client script"
import socket, sys, time
port, loc, digest = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s

# 1. PATCH that promises 50000 bytes and sends 10000
s = conn()
s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
          f"Content-Length: 50000\r\n\r\n".encode() + b"x" * 10000)
s.close()
# 2. a monolithic POST cut short
s = conn()
s.sendall(f"POST /v2/org/m/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n"
          f"Content-Length: 40000000\r\n\r\n".encode() + b"y" * 100000)
s.close()
# 3. downloads abandoned after the first bytes, 20 times
for i in range(20):
    s = conn()
    s.sendall(f"GET /v2/org/m/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    s.close()
# 4. a client stalled in its headers is cut off after --timeout (2 s); we wait for EOF, bounded by 10 s
s = conn()
s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
data = s.recv(1024)  # returns b"" at EOF, raises on our 10 s timeout
assert time.time() - t0 < 9, "stalled connection not closed"
s.close()
# 5. malformed requests of every kind, then random junk (seeded): each gets an error or a closed connection
import random
bad = [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\xff\r\n\r\n",
       b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
       b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
       b"PATCH " + loc.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       b"PATCH " + loc.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
       b"GET /v2/" + b"a/" * 3000 + b"tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /v2/ HTTP/1.1\r\n" + b"X-H: v\r\n" * 5000 + b"\r\n",
       b"GET /v2/org/m/blobs/" + digest.encode() + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=5-2\r\n\r\n",
       b"GET /v2/org/m/blobs/" + digest.encode() + b" HTTP/1.1\r\nHost: x\r\nRange: bytes=--1\r\n\r\n",
       b"GET /v2/org/m/tags/list?n=1&n=2&last=%ff HTTP/1.1\r\nHost: x\r\n\r\n",
       b"GET /v2/?%%%%= HTTP/1.1\r\nHost: x\r\n\r\n",
       b"DELETE /v2/org/m/manifests/ HTTP/1.1\r\nHost: x\r\n\r\n",
       b"PUT /v2/org/m/manifests/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nnull"]
rng = random.Random(20261127)
for i in range(60):
    n = rng.randrange(1, 400)
    junk = bytes(rng.randrange(256) for _ in range(n))
    bad.append(rng.choice([b"GET ", b"PUT /v2/", b"POST /v2/a/blobs/uploads/?", b""]) + junk + b"\r\n\r\n")
for req in bad:
    s = conn()
    try:
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:  # the daemon may drop a bad request before we finish sending it
        pass
    s.close()
print("clients done")
PY

# the daemon is fine and nothing half-received was stored or appended
req GET /v2/; expect 200 "still serving"
req GET "$LOC"; expect 204 "session status"; [ "$(hdr Range)" = "0-0" ] || fail "partial body appended: $(hdr Range)"
req GET "/v2/org/m/blobs/$(sha "$T/big")"; expect 200 "full download still works"
cmp -s "$T/body" "$T/big" || fail "download bytes"
# finish the session properly after all that
req PUT "$LOC?digest=$(sha "$T/big")" --data-binary @"$T/big" -H 'Content-Type: application/octet-stream'
expect 201 "finish the session"
req GET /metrics; expect 200 "metrics"
grep -q 'quantd_http_requests_total{route="blob_get",code="499"}' "$T/body" || fail "abandoned downloads not counted"
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck after stop"; }
grep -q 'client=gone' "$T/log" || fail "no log line for a vanished client"
echo ok
