#!/usr/bin/env bash
# Pulls that must be refused, leaving nothing on disk: a blob tampered in transit (a proxy flips one byte) fails
# its signed digest (exit 4); a bundle signed by an untrusted key is refused before any weight is fetched; a
# bundle that names other files than the manifest's layers is refused.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false

head -c 2000000 /dev/urandom >"$T/w.bin"
qrun 0 push org/m:good "$T/w.bin" --sign "$T/good" --registry "$URL"
head -c 2000000 /dev/urandom >"$T/e.bin"
qrun 0 push org/m:evil "$T/e.bin" --sign "$T/other" --registry "$URL"

# 1. tampered in transit: one byte flipped at offset 1000 of every weight body
start_proxy flip 1000
mkdir "$T/a"
qrun 4 pull org/m:good -o "$T/a" --registry "$PURL" --policy "$T/policy.json"
grep -q "hash to" "$T/err" || fail "tamper message: $(cat "$T/err")"
[ -z "$(ls -A "$T/a")" ] || fail "a tampered pull left files: $(ls -A "$T/a")"
[ "$(cat "$COUNT")" -gt 0 ] || fail "the proxy saw no weight bytes (the test proves nothing)"
stop_proxy

# 2. signed by a key the policy does not trust: refused before any weight byte moves
start_proxy pass
qrun 4 pull org/m:evil -o "$T/a" --registry "$PURL" --policy "$T/policy.json"
grep -q "no bundle verifies" "$T/err" || fail "untrusted-key message: $(cat "$T/err")"
[ "$(cat "$COUNT")" = 0 ] || fail "weights were fetched before the signature was checked ($(cat "$COUNT") bytes)"
[ -z "$(ls -A "$T/a")" ] || fail "an untrusted pull left files"

# 3. an expired key: a policy whose validity ended
"$QUANT" policy new --trust "$T/good.pub" --valid-until 2020-01-01T00:00:00Z --out "$T/expired.json" >/dev/null ||
    fail "policy new"
qrun 4 pull org/m:good -o "$T/a" --registry "$PURL" --policy "$T/expired.json"
[ "$(cat "$COUNT")" = 0 ] || fail "weights were fetched under an expired key"
[ -z "$(ls -A "$T/a")" ] || fail "an expired-key pull left files"

# 4. a good signature over other files: the subject digests do not equal the layer digests
head -c 1000 /dev/urandom >"$T/x.bin"
cp "$T/x.bin" "$T/w2.bin"
qrun 0 push org/m:swap "$T/w2.bin" --sign "$T/good" --registry "$URL"
MD=$(sed 's/.*@//' "$T/out")
# re-point the tag at a manifest with another layer under the same name, keeping the signed one as the subject
head -c 3000 /dev/urandom >"$T/w2.bin"
qrun 0 push org/m:other "$T/w2.bin" --registry "$URL"
MD2=$(sed 's/.*@//' "$T/out")
# attach the first bundle's referrer manifest to the second manifest
req GET "/v2/org/m/referrers/$MD"; expect 200 "referrers"
RD=$(jq_py "j['manifests'][0]['digest']")
req GET "/v2/org/m/manifests/$RD" -H 'Accept: application/vnd.oci.image.manifest.v1+json'; expect 200 "referrer"
python3 - "$T/body" "$MD2" "$(stat -c %s "$T/body")" >"$T/ref2" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["subject"]["digest"] = sys.argv[2]
sys.stdout.write(json.dumps(m, separators=(",", ":")))
PY
req PUT "/v2/org/m/manifests/$(sha "$T/ref2")" --data-binary @"$T/ref2" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "re-attached referrer"
qrun 4 pull org/m:other -o "$T/a" --registry "$PURL" --policy "$T/policy.json"
grep -q "w2.bin" "$T/err" || fail "mismatch message does not name the subject: $(cat "$T/err")"
[ "$(cat "$COUNT")" = 0 ] || fail "weights were fetched although the subjects did not match"
[ -z "$(ls -A "$T/a")" ] || fail "a mismatched pull left files"
stop_proxy

# 5. the bytes of another range than asked (Content-Range says so): refused, nothing left on disk
start_proxy shift
qrun 4 pull org/m:good -o "$T/a" --registry "$PURL" --policy "$T/policy.json"
grep -q "asked for bytes [0-9]*-[0-9]*, the server sent another range" "$T/err" || fail "wrong-range message: $(cat "$T/err")"
[ -z "$(ls -A "$T/a")" ] || fail "a wrong-range pull left files: $(ls -A "$T/a")"
stop_proxy
stop_daemon
echo ok
