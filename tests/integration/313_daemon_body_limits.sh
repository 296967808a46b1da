#!/usr/bin/env bash
# Request bodies are bounded by max-body-bytes: a body over it is read and thrown away (never held: the daemon's
# peak RSS does not grow by the body's size) and answered 413, which the client reads; nothing is stored and an
# upload session keeps its offset. A blob larger than max-body-bytes goes in as several PATCH chunks, the
# documented way. A client that disconnects in the middle of a chunk changes nothing, and the daemon keeps serving.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false --max-body-bytes=1M

head -c 3500000 /dev/urandom >"$T/big"
D=$(sha "$T/big")
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$PID/status"; }

# ---- monolithic upload over the limit: 413, nothing stored
req POST "/v2/org/m/blobs/uploads/?digest=$D" --data-binary @"$T/big" -H 'Content-Type: application/octet-stream'
expect 413 "a monolithic upload over max-body-bytes"
req GET "/v2/org/m/blobs/$D"
expect 404 "the refused blob is not there"

# ---- a 64 MiB body is refused without being held in memory
H0=$(hwm)
head -c 67108864 /dev/zero >"$T/huge"
req POST "/v2/org/m/blobs/uploads/?digest=$D" --data-binary @"$T/huge" -H 'Content-Type: application/octet-stream'
expect 413 "a 64 MiB body over max-body-bytes"
rm -f "$T/huge"
H1=$(hwm)
[ $((H1 - H0)) -lt 32768 ] || fail "peak RSS grew by $((H1 - H0)) kB for a refused 64 MiB body"

# ---- a session: one PATCH over the limit is refused and changes nothing
req POST /v2/org/m/blobs/uploads/
expect 202 "start a session"
LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/big" -H 'Content-Type: application/octet-stream'
expect 413 "a PATCH chunk over max-body-bytes"
req GET "$LOC"
expect 204 "the session survives a refused chunk"
[ "$(hdr Range)" = "0-0" ] || fail "the refused chunk moved the session to $(hdr Range)"

# ---- the same bytes in chunks of at most max-body-bytes
split -b 1048576 "$T/big" "$T/part."
OFF=0
for p in "$T"/part.*; do
    n=$(stat -c %s "$p")
    req PATCH "$LOC" --data-binary @"$p" -H 'Content-Type: application/octet-stream' \
        -H "Content-Range: $OFF-$((OFF + n - 1))"
    expect 202 "PATCH chunk at $OFF"
    OFF=$((OFF + n))
    [ "$(hdr Range)" = "0-$((OFF - 1))" ] || fail "Range after the chunk at $OFF: $(hdr Range)"
    # after the first chunk: a client that disconnects in the middle of the next one changes nothing
    if [ "$OFF" = 1048576 ]; then
        python3 - "$PORT" "$LOC" <<'PY' || fail "client script"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(f"PATCH {sys.argv[2]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
          f"Content-Range: 1048576-2097151\r\nContent-Length: 1048576\r\n\r\n".encode() + b"z" * 300000)
s.close()
PY
        req GET /healthz
        expect 200 "the daemon serves after a client vanished mid-chunk"
        req GET "$LOC"
        expect 204 "session status after the vanished chunk"
        [ "$(hdr Range)" = "0-1048575" ] || fail "a vanished chunk moved the session to $(hdr Range)"
    fi
done
# a final chunk over the limit on the closing PUT is refused too, and the session stays open
head -c 1100000 /dev/urandom >"$T/tail"
req PUT "$LOC?digest=$D" --data-binary @"$T/tail" -H 'Content-Type: application/octet-stream'
expect 413 "a closing PUT with a body over max-body-bytes"
req PUT "$LOC?digest=$D"
expect 201 "close the session"
req GET "/v2/org/m/blobs/$D"
expect 200 "GET the chunked blob"
cmp -s "$T/body" "$T/big" || fail "the chunked blob differs"
[ "$(stat -c %s "$T/big")" -gt 1048576 ] || fail "the blob should be larger than max-body-bytes"

stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck after the uploads"; }
echo "ok"
