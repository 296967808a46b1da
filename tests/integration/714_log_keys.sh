#!/usr/bin/env bash
# Publisher keys in the signed log: /v1/keys (admin) and `quant key publish|rotate|revoke|list` append key-add and
# key-revoke entries to STORE/log.git; a push signed by a published key verifies; rotation is a key-add of the new
# key directly followed by a key-revoke of the old; `quant log verify` passes on that log and reports a bundle
# signed by a key after the log revoked it; bad input (malformed PEM, a private key, unknown or malformed id, a
# revoked key added again, no admin token) is a 4xx with the OCI error body and appends nothing.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
. "$(dirname "$0")/mirror_lib.sh"
client_setup
ADMIN=$("$QUANT" token create --store "$T/store" --name root --scopes 'admin:*' 2>/dev/null) || fail "token create"
PUSHER=$("$QUANT" token create --store "$T/store" --name ci --scopes 'push:org/*,pull:org/*' 2>/dev/null) ||
    fail "token create"
start_daemon --log-origin=origin.test/log
LOG="$T/store/log.git"
count() { git --git-dir="$LOG" rev-list --count main; }
for k in k1 k2 k3; do "$QUANT" key gen --out "$T/$k" >/dev/null || fail "key gen $k"; done
id_of() { "$QUANT" key show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
ID1=$(id_of "$T/k1.pub"); ID2=$(id_of "$T/k2.pub"); ID3=$(id_of "$T/k3.pub")
LOGKEY_ID=$(id_of "$T/store/signing-key.pem")
N0=$(count)
[ "$N0" = 1 ] || fail "a new log holds the daemon's key-add only, got $N0 entries"

# --- bad input: 4xx with the OCI error body, nothing appended
A="Authorization: Bearer $ADMIN"
req POST /v1/keys --data-binary @"$T/k1.pub"; expect 401 "no token"; expect_code UNAUTHORIZED
req POST /v1/keys --data-binary @"$T/k1.pub" -H "Authorization: Bearer $PUSHER"; expect 403 "push token"
expect_code DENIED
req GET /v1/keys -H "Authorization: Bearer $PUSHER"; expect 403 "push token lists keys"
printf -- '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n' >"$T/bad.pem"
req POST /v1/keys -H "$A" --data-binary @"$T/bad.pem"; expect 400 "malformed PEM"; expect_code NAME_INVALID
req POST /v1/keys -H "$A" --data-binary @"$T/k1"; expect 400 "a private key"; expect_code NAME_INVALID
grep -q "public key only" "$T/body" || fail "private key message"
req POST /v1/keys -H "$A" --data-binary '{"pem": 5}'; expect 400 "JSON without pem"; expect_code NAME_INVALID
req POST /v1/keys -H "$A" --data-binary "{\"pem\": \"x\", \"namespaces\": [\"Org/Bad Name\"]}"
expect 400 "bad namespace"; expect_code NAME_INVALID
req POST /v1/keys -H "$A"; expect 400 "empty body"; expect_code NAME_INVALID
req POST "/v1/keys/$ID1/revoke" -H "$A"; expect 404 "unknown id"; expect_code NAME_UNKNOWN
req POST /v1/keys/abc/revoke -H "$A"; expect 400 "malformed id"; expect_code NAME_INVALID
req POST "/v1/keys/$ID1/rotate" -H "$A" --data-binary @"$T/k2.pub"; expect 404 "rotate an unknown id"
req POST "/v1/keys/$LOGKEY_ID/revoke" -H "$A"; expect 409 "revoke the log key"
req DELETE "/v1/keys/$ID1/revoke" -H "$A"; expect 405 "wrong method"
[ "$(count)" = "$N0" ] || fail "bad input appended entries: $(count)"
QUANT_TOKEN=$PUSHER qrun 1 key publish "$T/k1.pub" --registry "$URL"
grep -q "403" "$T/err" || fail "quant key publish without admin: $(cat "$T/err")"
QUANT_TOKEN=$ADMIN qrun 3 key revoke "$ID1" --registry "$URL"
QUANT_TOKEN=$ADMIN qrun 2 key revoke nothex --registry "$URL"
[ "$(count)" = "$N0" ] || fail "refused CLI calls appended entries"

# --- add k1 (the CLI sends only the public part even when given the private key file), publish with it
export QUANT_TOKEN=$ADMIN
qrun 0 key publish "$T/k1" --namespace 'org/*' --registry "$URL"
grep -q "added $ID1 at log entry $N0" "$T/out" || fail "publish output: $(cat "$T/out")"
[ "$(count)" = $((N0 + 1)) ] || fail "key-add: one entry"
req POST /v1/keys -H "$A" --data-binary @"$T/k1.pub"; expect 409 "k1 again"
echo '{"dim":8}' >"$T/config.json"
QUANT_TOKEN=$PUSHER qrun 0 push org/m:v1 "$T/config.json" --sign "$T/k1" --registry "$URL"
N1=$(count)

# --- rotate k1 -> k2: two adjacent entries, key-add of k2 then key-revoke of k1
qrun 0 key rotate "$ID1" "$T/k2.pub" --registry "$URL"
grep -q "rotated to $ID2 at log entry $N1; revoked $ID1 at entry $((N1 + 1))" "$T/out" ||
    fail "rotate output: $(cat "$T/out")"
[ "$(count)" = $((N1 + 2)) ] || fail "rotation: two entries"
git --git-dir="$LOG" log --format=%s -n 2 main >"$T/subjects"
[ "$(sed -n 2p "$T/subjects")" = "key-add $ID2" ] && [ "$(sed -n 1p "$T/subjects")" = "key-revoke $ID1" ] ||
    fail "rotation entries: $(cat "$T/subjects")"
git --git-dir="$LOG" show "main:keys/revoked/$ID1" | grep -q '^revoked ' || fail "keys/revoked/$ID1 in the tree"
req POST /v1/keys -H "$A" --data-binary @"$T/k1.pub"; expect 409 "a revoked key added again"
grep -q "never comes back" "$T/body" || fail "revoked-again message"
req POST "/v1/keys/$ID1/revoke" -H "$A"; expect 409 "revoked twice"
# the daemon refuses a bundle signed by the revoked key (before its store transaction: nothing appended)
echo '{"dim":9}' >"$T/config9.json"
QUANT_TOKEN=$PUSHER qrun 0 push org/m:v9 "$T/config9.json" --registry "$URL"
NB=$(count)
QUANT_TOKEN=$PUSHER "$QUANT" push org/m:v9 "$T/config9.json" --sign "$T/k1" --registry "$URL" >"$T/out" 2>"$T/err" &&
    fail "a push signed by the revoked key was accepted"
grep -q "signed by key $ID1, which the signed log has revoked" "$T/err" || fail "revoked push message: $(cat "$T/err")"
[ "$(count)" = "$NB" ] || fail "the refused push appended entries"
QUANT_TOKEN=$PUSHER qrun 0 push org/m:v2 "$T/config.json" "$T/k2.pub" --sign "$T/k2" --registry "$URL"

# --- add and revoke k3 with `quant key revoke`
qrun 0 key publish "$T/k3.pub" --registry "$URL"
N3=$(count)
qrun 0 key revoke "$ID3" --registry "$URL"
grep -q "revoked $ID3 at log entry $N3" "$T/out" || fail "revoke output: $(cat "$T/out")"
[ "$(git --git-dir="$LOG" log --format=%s -n 1 main)" = "key-revoke $ID3" ] || fail "revoke entry"

# --- the list: every key with the entries that added and revoked it
qrun 0 key list --json --registry "$URL"
python3 - "$T/out" "$ID1" "$ID2" "$ID3" "$LOGKEY_ID" "$N0" "$N1" "$N3" <<'PY' || fail "key list: $(cat "$T/out")"
import json, sys
ks = {k["id"]: k for k in json.load(open(sys.argv[1]))}
id1, id2, id3, lk = sys.argv[2:6]
n0, n1, n3 = map(int, sys.argv[6:9])
assert set(ks) == {id1, id2, id3, lk}, ks
assert ks[lk]["log_key"] and ks[lk]["added"] == 0 and ks[lk]["revoked"] is None
assert ks[id1]["added"] == n0 and ks[id1]["revoked"] == n1 + 1 and ks[id1]["algorithm"] == "ed25519", ks[id1]
assert "org/*" in ks[id1]["comment"]
assert ks[id2]["added"] == n1 and ks[id2]["revoked"] is None
assert ks[id3]["added"] == n3 - 1 and ks[id3]["revoked"] == n3
PY
qrun 0 key list --registry "$URL"
grep -q "(log key)" "$T/out" || fail "key list table"

# --- the log verifies, revocations and all
req GET /v1/log/key; expect 200 "log key"
jq_py "j['public_key']" >"$T/logkey.pub"
"$QUANT" policy new --trust "$T/k1.pub" --trust "$T/k2.pub" --out "$T/p12.json" >/dev/null || fail "policy new"
qrun 0 log verify "$LOG" --log-key "$T/logkey.pub" --policy "$T/p12.json"
qrun 0 log verify "$LOG" --log-key "$T/logkey.pub"
stop_daemon

# --- appended offline with the daemon's own key: a bundle signed by k2 (not revoked) verifies; one signed by k1
# after its revocation is reported, with and without a policy (the signature key ids name the key)
sign() { "$QUANT" sign --key "$1" --predicate-type https://model_signing/signature/v1.0 --out "$2" "$3" \
    >/dev/null 2>&1 || fail "quant sign $1"; }
echo ok >"$T/ok.txt"
echo late >"$T/late.txt"
sign "$T/k2" "$T/ok.bundle" "$T/ok.txt"
sign "$T/k1" "$T/late.bundle" "$T/late.txt"
qrun 0 log publish "$LOG" --key "$T/store/signing-key.pem" --name org/ok --manifest "$(sha "$T/ok.txt")" \
    --bundle "$T/ok.bundle"
qrun 0 log verify "$LOG" --log-key "$T/logkey.pub" --policy "$T/p12.json"
qrun 0 log publish "$LOG" --key "$T/store/signing-key.pem" --name org/late --manifest "$(sha "$T/late.txt")" \
    --bundle "$T/late.bundle"
# the offline audit marks the late record (and only it) as signed after its key's revocation
qrun 0 audit query "$LOG" --key "$ID1" --json
python3 - "$T/out" "$ID1" "$((N1 + 1))" <<'PY' || fail "audit query: $(cat "$T/out")"
import json, sys
recs = json.load(open(sys.argv[1]))
late = [r for r in recs if r["name"] == "org/late"]
assert len(late) == 1 and late[0]["signed_after_revocation"] == {"key_id": sys.argv[2], "revoked_at": int(sys.argv[3])}
early = [r for r in recs if r["name"] == "org/m"]
assert early and all("signed_after_revocation" not in r for r in early), early
PY
schema_keep audit_log_query "$T/out"
schema_check_all
for pol in "--policy $T/p12.json" ""; do
    # shellcheck disable=SC2086
    qrun 4 log verify "$LOG" --log-key "$T/logkey.pub" $pol
    grep -q "signed by key $ID1, which the log revoked at entry $((N1 + 1))" "$T/err" ||
        fail "late bundle report ($pol): $(cat "$T/err")"
done

# --- a mirror refuses a publish signed by a key its upstream's log revoked before that entry (the policy trusts
# the key: only the log's revocation refuses it), and applies nothing of it
unset QUANT_TOKEN
# (a lying origin: the publish is appended to its stopped log offline, with its own key)
start_node O
node_logkey O
start_node M --mirror-of="$O_URL" --mirror-log-key="$T/O.logkey" --trust="$T/p12.json" --mirror-interval=1
qrun 0 key publish "$T/k1.pub" --registry "$O_URL"
qrun 0 push org/ok:v1 "$T/config.json" --sign "$T/k1" --registry "$O_URL"
qrun 0 key rotate "$ID1" "$T/k2.pub" --registry "$O_URL"
wait_synced "$M_URL" "$O_URL"
s0=$(log_size "$M_URL"); a0=$(mstatus "$M_URL" "j['applied']")
kill_node O
qrun 0 log publish "$T/O/store/log.git" --key "$T/O/store/signing-key.pem" --name org/rev \
    --manifest "$(sha "$T/late.txt")" --bundle "$T/late.bundle"
port=$(cat "$T/O/port")
start_node O --listen="127.0.0.1:$port"
for _ in $(seq 1 600); do
    msg=$(mstatus "$M_URL" "j['last_error'] or ''" 2>/dev/null)
    echo "$msg" | grep -q "which the log revoked at entry" && break
    sleep 0.1
done
echo "$msg" | grep -q "signed by key $ID1, which the log revoked at entry" || fail "mirror refusal: $msg"
[ "$(log_size "$M_URL")" = "$s0" ] || fail "the mirror's log grew"
[ "$(mstatus "$M_URL" "j['applied']")" = "$a0" ] || fail "the mirror applied entries"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$M_URL/v2/org/rev/manifests/v1")" = 404 ] || fail "org/rev:v1 on the mirror"
echo "ok"
