#!/usr/bin/env bash
# An interrupted pull resumes: a proxy cuts the connection after 3 MB of an 8 MB layer (the client exits 5 and keeps
# its partial state); the next pull, through a counting proxy, fetches fewer bytes than the whole and ends verified.
# A push interrupted halfway resumes from the upload status without sending the finished chunks again.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false

SIZE=8000000
push_random org/r:v1 "$T/big.bin" $SIZE

mkdir "$T/dl"
start_proxy drop 3000000
qrun 5 pull org/r:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json"
grep -q "resume" "$T/err" || fail "no resume hint: $(cat "$T/err")"
[ ! -e "$T/dl/big.bin" ] || fail "an interrupted pull left the final file"
[ -e "$T/dl/.big.bin.quant-part" ] && [ -e "$T/dl/.big.bin.quant-state" ] || fail "no partial state kept"
FIRST=$(cat "$COUNT")
stop_proxy

start_proxy pass
qrun 0 pull org/r:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json"
grep -q "resuming" "$T/err" || fail "the second pull did not resume: $(cat "$T/err")"
SECOND=$(cat "$COUNT")
cmp "$T/big.bin" "$T/dl/big.bin" || fail "the resumed file differs"
[ -z "$(ls -A "$T/dl" | grep quant-)" ] || fail "partial state left behind"
echo "first pull: $FIRST bytes before the cut; resumed pull: $SECOND bytes of $SIZE"
[ "$SECOND" -lt "$SIZE" ] || fail "the resumed pull fetched $SECOND bytes, not fewer than $SIZE"
[ $((FIRST + SECOND)) -le $((SIZE + 4 * 262144)) ] || fail "the resumed pull fetched again what it had"
stop_proxy

# daemon gone mid-way: exit 5, and the pull after a restart completes
stop_daemon

# push cut after 3 of 7 chunks (1 MiB each): exit 5; the next push asks the upload status and sends only the rest
start_daemon --auth=false
head -c 7340032 /dev/urandom >"$T/up.bin"
start_proxy droppatch 3
qrun 5 push org/up:v1 "$T/up.bin" --registry "$PURL" --chunk-size 1048576
stop_proxy
start_proxy pass
qrun 0 push org/up:v1 "$T/up.bin" --registry "$PURL" --chunk-size 1048576
grep -q "resuming the upload at byte 3145728" "$T/err" || fail "the push did not resume: $(cat "$T/err")"
SENT=$(cat "$COUNT")
echo "resumed push sent $SENT of 7340032 bytes"
[ "$SENT" -eq $((7340032 - 3145728)) ] || fail "the resumed push sent $SENT bytes"
stop_proxy
req GET "/v2/org/up/blobs/$(sha "$T/up.bin")"; expect 200 "pushed blob"
cmp -s "$T/body" "$T/up.bin" || fail "the resumed upload stored other bytes"
stop_daemon
echo ok
