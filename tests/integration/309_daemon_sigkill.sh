#!/usr/bin/env bash
# A daemon killed with SIGKILL in the middle of finishing an upload (hashing and storing on a worker) comes back
# on the same store: the blob is either fully there with the right bytes, or absent with the upload session
# still resumable; the store has no problems (fsck), and the daemon serves again.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false
head -c 60000000 /dev/urandom >"$T/big"
D=$(sha "$T/big")
req POST /v2/org/m/blobs/uploads/; expect 202 "session"; LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/big" -H 'Content-Type: application/octet-stream'; expect 202 "patch"
# PUT in the background; kill the daemon while a worker stores the 60 MB (it holds a flock on the session file
# then: /proc/locks shows it)
INODE=$(stat -c %i "$T/store/uploads/${LOC##*/}")
curl -sS -o /dev/null -X PUT "$URL$LOC?digest=$D" 2>/dev/null &
CURL=$!
for _ in $(seq 1 500); do grep -q ":$INODE " /proc/locks && break; sleep 0.01; done
kill -KILL "$PID"; wait "$PID" 2>/dev/null; PID=
wait $CURL 2>/dev/null
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck after SIGKILL"; }
start_daemon --auth=false
req GET "/v2/org/m/blobs/$D"
if [ "$STATUS" = 200 ]; then
    cmp -s "$T/body" "$T/big" || fail "the blob is there but its bytes differ"
    echo "the PUT had finished before the kill"
else
    expect 404 "blob absent"
    req GET "$LOC"; expect 204 "the session survived the kill"
    [ "$(hdr Range)" = "0-59999999" ] || fail "session Range $(hdr Range)"
    req PUT "$LOC?digest=$D"; expect 201 "finish after restart"
    req GET "/v2/org/m/blobs/$D"; expect 200 "blob after restart"; cmp -s "$T/body" "$T/big" || fail "bytes"
    echo "the PUT was interrupted and resumed"
fi
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
echo ok
