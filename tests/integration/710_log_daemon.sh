#!/usr/bin/env bash
# The daemon's signed log: every publish and tag move of a push lands in STORE/log.git as a signed commit; the
# /v1/log routes serve a checkpoint, a freshness timestamp, entries and proofs that verify offline; quant pull
# --require-log checks inclusion (and refuses another log key); a crash between the store commit and the log
# commit (simulated: the log's ref put back one entry, the intent file left behind) is settled at restart, and an
# intent the store never committed is dropped.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false --log-origin=origin.test/log

echo '{"dim":8}' >"$T/config.json"
head -c 20000 /dev/urandom >"$T/w.bin"
qrun 0 push org/m:v1 "$T/w.bin" "$T/config.json" --sign "$T/good" --registry "$URL"
MD1=$(sed 's/.*@//' "$T/out")
qrun 0 push org/m:v2 "$T/config.json" --sign "$T/good" --registry "$URL"
MD2=$(sed 's/.*@//' "$T/out")

# the log key, as served (the test takes it from the daemon's own key file to compare)
req GET /v1/log/key; expect 200 "log key"
jq_py "j['public_key']" >"$T/logkey.pub"
[ "$(jq_py "j['origin']")" = origin.test/log ] || fail "origin"
# entries: key-add, then per push a tag and a publish
LOG="$T/store/log.git"
n=$(git --git-dir="$LOG" rev-list --count main) || fail "git rev-list"
[ "$n" = 5 ] || fail "5 log entries expected, got $n"
git --git-dir="$LOG" log --format=%s main >"$T/subjects"
grep -q "^publish org/m $MD1" "$T/subjects" || fail "no publish entry for v1: $(cat "$T/subjects")"
grep -q "^tag org/m:v2 $MD2" "$T/subjects" || fail "no tag entry for v2"
grep -q "^key-add " "$T/subjects" || fail "no key-add entry"
# the whole log verifies offline with the served key (signatures, entries, bundles)
qrun 0 log verify "$LOG" --log-key "$T/logkey.pub" --policy "$T/policy.json" --state "$T/vstate"
# stock git accepts every commit signature
if command -v ssh-keygen >/dev/null; then
    qrun 0 log allowed-signers --key "$T/logkey.pub"
    cp "$T/out" "$T/allowed"
    for c in $(git --git-dir="$LOG" rev-list main); do
        git --git-dir="$LOG" -c gpg.format=ssh -c gpg.ssh.allowedSignersFile="$T/allowed" verify-commit "$c" \
            2>/dev/null || fail "git verify-commit $c"
    done
fi

# checkpoint and timestamp: signed notes that the offline tools accept; the timestamp matches the verified state
req GET /v1/log/checkpoint; expect 200 checkpoint
[ "$(sed -n 2p "$T/body")" = 5 ] || fail "checkpoint size"
req GET /v1/log/timestamp; expect 200 timestamp
cp "$T/body" "$T/ts"
qrun 0 log check-timestamp "$T/ts" --log-key "$T/logkey.pub" --origin origin.test/log --state "$T/fstate" \
    --match "$T/vstate"
qrun 4 log check-timestamp "$T/ts" --log-key "$T/other.pub" --origin origin.test/log --state "$T/fstate2"

# proofs: the inclusion proof of v1's manifest and a consistency proof, checked in Python (RFC 9162)
req GET "/v1/log/proof/inclusion?manifest=$MD1"; expect 200 "inclusion proof"
cp "$T/body" "$T/incl.json"
req GET "/v1/log/proof/consistency?from=2&size=5"; expect 200 "consistency proof"
cp "$T/body" "$T/cons.json"
python3 - "$T/incl.json" "$T/cons.json" "$MD1" <<'PY' || fail "proofs do not verify in Python"
import hashlib, json, sys
H = lambda b: hashlib.sha256(b).digest()
incl, cons = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
e = json.loads(incl['entry'])
assert e['manifest'] == sys.argv[3] and e['kind'] == 'publish' and e['seq'] == incl['index'], e
leaf = H(b'\0' + incl['entry'].encode())
assert leaf.hex() == incl['leaf']
fn, sn, r = incl['index'], incl['size'] - 1, leaf
for p in map(bytes.fromhex, incl['proof']):
    assert sn != 0
    if fn & 1 or fn == sn:
        r = H(b'\1' + p + r)
        while not fn & 1 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        r = H(b'\1' + r + p)
    fn >>= 1; sn >>= 1
assert sn == 0 and r.hex() == incl['root'], 'inclusion'
# consistency (RFC 9162 2.1.4.2)
n1, n2, proof = cons['from'], cons['size'], [bytes.fromhex(x) for x in cons['proof']]
if n1 & (n1 - 1) == 0:
    proof = [bytes.fromhex(cons['from_root'])] + proof
fn, sn = n1 - 1, n2 - 1
while fn & 1:
    fn >>= 1; sn >>= 1
fr = sr = proof[0]
for c in proof[1:]:
    assert sn != 0
    if fn & 1 or fn == sn:
        fr = H(b'\1' + c + fr); sr = H(b'\1' + c + sr)
        while not fn & 1 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        sr = H(b'\1' + sr + c)
    fn >>= 1; sn >>= 1
assert sn == 0 and fr.hex() == cons['from_root'] and sr.hex() == cons['root'], 'consistency'
PY
req GET "/v1/log/proof/inclusion?manifest=sha256:$(printf '%064d' 0)"; expect 404 "unknown manifest"
req GET "/v1/log/proof/inclusion?index=99"; expect 404 "index past the end"
req GET "/v1/log/proof/consistency?from=x"; expect 400 "bad from"
req GET /v1/log/entries/1; expect 200 "entry 1"
[ "$(jq_py "j['seq']")" = 1 ] || fail "entry 1 seq"
req PUT /v1/log/checkpoint; expect 405 "the log is read-only"

# quant pull --require-log: included -> ok; another log key -> refused (exit 4), nothing written
mkdir "$T/dl" "$T/dl2"
qrun 0 pull org/m:v1 -o "$T/dl" --policy "$T/policy.json" --registry "$URL" --require-log --log-key "$T/logkey.pub"
grep -q "in the signed log origin.test/log" "$T/err" || fail "pull did not report the log check: $(cat "$T/err")"
cmp "$T/w.bin" "$T/dl/w.bin" || fail "pulled file differs"
# the verified timestamp is remembered (rollback protection): one state file for this origin and log key
[ "$(ls "$HOME/.local/state/quant/logs" | wc -l)" = 1 ] || fail "no remembered log timestamp"
grep -Eq "^[0-9]+ [1-9][0-9]* [0-9a-f]{64}$" "$HOME/.local/state/quant/logs"/* ||
    fail "the remembered timestamp (issued size root)"
qrun 4 pull org/m:v1 -o "$T/dl2" --policy "$T/policy.json" --registry "$URL" --require-log --log-key "$T/other.pub"
grep -q "does not verify" "$T/err" || fail "wrong log key message: $(cat "$T/err")"
[ -z "$(ls -A "$T/dl2")" ] || fail "a refused pull left files"
qrun 2 pull org/m:v1 -o "$T/dl2" --policy "$T/policy.json" --registry "$URL" --require-log

# a name the log cannot record is refused before the store changes (upper case tag)
qrun 2 push org/m:Upper "$T/config.json" --sign "$T/good" --registry "$URL"
grep -qi "signed log" "$T/err" || fail "refusal message: $(cat "$T/err")"
req GET /v2/org/m/manifests/Upper; expect 404 "the refused tag must not exist"

# crash between the store commit and the log commit: put the log ref back before v2's publish entry and leave
# the intent file as the daemon writes it; add an intent the store never committed (dropped at restart)
stop_daemon
size_before=$(git --git-dir="$LOG" rev-list --count main)
BUNDLE2=$(git --git-dir="$LOG" show main:"manifests/sha256/${MD2#sha256:}.json" | sha256sum | cut -d' ' -f1)
git --git-dir="$LOG" update-ref refs/heads/main main~1
printf 'publish org/m %s sha256:%s\ntag org/m:ghost sha256:%064d\n' "$MD2" "$BUNDLE2" 0 >"$T/store/log-pending"
start_daemon --auth=false --log-origin=origin.test/log
[ ! -e "$T/store/log-pending" ] || fail "the intent was not settled"
[ "$(git --git-dir="$LOG" rev-list --count main)" = "$size_before" ] || fail "the lost entry was not re-appended"
git --git-dir="$LOG" log -1 --format=%s main | grep -q "^publish org/m $MD2" || fail "head after settling"
git --git-dir="$LOG" log --format=%s main | grep -q ghost && fail "an uncommitted intent was appended"
qrun 0 log verify "$LOG" --log-key "$T/logkey.pub" --policy "$T/policy.json"
req GET /v1/log/checkpoint; expect 200 checkpoint
[ "$(sed -n 2p "$T/body")" = "$size_before" ] || fail "checkpoint size after settling"
stop_daemon
echo "ok"
