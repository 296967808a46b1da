#!/usr/bin/env bash
# Ctrl-C during a pull: a proxy holds the transfer after 3 MB of an 8 MB layer; SIGINT makes the client stop within
# a round of its transfer loop, write out what it received (no chunk is complete by then, so without that the
# state would hold nothing), say how to resume and exit 130. The next pull requests exactly the bytes the state
# does not hold (the Range headers add up to size minus the kept bytes) and ends verified.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false

SIZE=8000000
push_random org/r:v1 "$T/big.bin" $SIZE

mkdir "$T/dl"
mkfifo "$T/stalled"
exec 3<>"$T/stalled" # read-write: opening does not block, and the read below has its own timeout
start_proxy stall 3000000 "$T/stalled"
"$QUANT" pull org/r:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json" --parallel 4 >"$T/out" 2>"$T/err" &
QPID=$!
# a bound, not a synchronisation: a client that ignored the signal would otherwise wait on the stalled proxy forever
(sleep 120; kill -9 $QPID 2>/dev/null) &
WATCHDOG=$!
read -r -t 60 _ <&3 || { kill -9 $QPID; fail "the transfer never reached the stall: $(cat "$T/err")"; }
FIRST=$(cat "$COUNT")
kill -INT $QPID
rc=0
wait $QPID || rc=$?
kill $WATCHDOG 2>/dev/null
[ "$rc" -eq 130 ] || fail "exit $rc after SIGINT, not 130: $(cat "$T/err")"
grep -q "interrupted" "$T/err" || fail "no word of the interruption: $(cat "$T/err")"
grep -q "resume" "$T/err" || fail "no resume hint: $(cat "$T/err")"
[ ! -e "$T/dl/big.bin" ] || fail "an interrupted pull left the final file"
STATE="$T/dl/.big.bin.quant-state"
[ -e "$T/dl/.big.bin.quant-part" ] && [ -e "$STATE" ] || fail "no partial state kept"
KEPT=$(awk 'NR > 1 {s += $2} END {print s + 0}' "$STATE")
echo "proxy forwarded $FIRST bytes before the stall; the state keeps $KEPT"
[ "$KEPT" -gt 0 ] || fail "the interrupted pull kept nothing of the $FIRST bytes it was sent"
[ "$KEPT" -le "$FIRST" ] || fail "the state claims $KEPT bytes, more than the $FIRST sent"
stop_proxy
exec 3<&-

start_proxy pass
qrun 0 pull org/r:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json" --parallel 4
grep -q "resuming" "$T/err" || fail "the second pull did not resume: $(cat "$T/err")"
cmp "$T/big.bin" "$T/dl/big.bin" || fail "the resumed file differs"
[ -z "$(ls -A "$T/dl" | grep quant-)" ] || fail "partial state left behind"
ASKED=$(awk -F'|' '$1 ~ /^bytes=/ {split(substr($1, 7), r, "-"); s += r[2] - r[1] + 1} END {print s + 0}' "$COUNT.req")
echo "resumed pull asked for $ASKED bytes of $SIZE"
[ "$ASKED" -eq $((SIZE - KEPT)) ] || fail "the resumed pull asked for $ASKED bytes, not $SIZE - $KEPT"
stop_proxy
stop_daemon
echo ok
