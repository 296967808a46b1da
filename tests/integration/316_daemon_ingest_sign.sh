#!/usr/bin/env bash
# Ingest signing: a checkpoint (ModelPack manifest, no subject) pushed without a signature gets, after
# ingest-sign-delay, a https://quantd.dev/checkpoint/v1 statement signed by the daemon key as a Sigstore bundle
# referrer; `quant verify` accepts it with a policy trusting the daemon key, and refuses a tampered file. The
# statement records the files (names from the layer annotations, digests, sizes), the precision from the ModelPack
# config, the origin and the daemon's key id. A checkpoint whose pusher pushed its own bundle referrer within the
# delay is left alone.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false --ingest-sign-delay=8

head -c 70000 /dev/urandom >"$T/w1.bin"
head -c 50000 /dev/urandom >"$T/w2.bin"
echo '{"config":{"format":"safetensors","precision":"f16"}}' >"$T/config.json"
for f in config.json w1.bin w2.bin; do push_blob org/a "$T/$f"; done
make_manifest "$T/a.json" "$T/config.json" "$T/w1.bin" "$T/w2.bin"
req PUT /v2/org/a/manifests/v1 --data-binary @"$T/a.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push an unsigned checkpoint"
A=$(sha "$T/a.json")

# ---- the pusher signs checkpoint b itself: everything is prepared first, so that its bundle referrer follows the
# manifest at once (well within the delay)
head -c 60000 /dev/urandom >"$T/w3.bin"
echo '{"pusher":"bundle"}' >"$T/pb.json"
for f in config.json w3.bin pb.json; do push_blob org/b "$T/$f"; done
make_manifest "$T/b.json" "$T/config.json" "$T/w3.bin"
B=$(sha "$T/b.json")
SUBJECT="$B,$(stat -c %s "$T/b.json")" make_manifest "$T/pref.json" "$T/config.json" "$T/pb.json"
req PUT /v2/org/b/manifests/v1 --data-binary @"$T/b.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push checkpoint b"
req PUT "/v2/org/b/manifests/$(sha "$T/pref.json")" --data-binary @"$T/pref.json" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push the pusher's bundle referrer for b"

# ---- bounded wait for both decisions (the daemon logs each)
for _ in $(seq 1 400); do
    grep -q "checkpoint org/a@$A signed by the daemon" "$T/log" && grep -q "checkpoint org/b@$B signed by its pusher" "$T/log" &&
        break
    sleep 0.1
done
grep -q "checkpoint org/a@$A signed by the daemon" "$T/log" || fail "checkpoint a was not signed by the daemon"
grep -q "checkpoint org/b@$B signed by its pusher" "$T/log" || fail "checkpoint b was not left to its pusher"

req GET "/v2/org/b/referrers/$B"
expect 200 "referrers of b"
[ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "checkpoint b has $(jq_py "len(j['manifests'])") referrers, expected the pusher's only"

req GET "/v2/org/a/referrers/$A"
expect 200 "referrers of a"
[ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "checkpoint a has $(jq_py "len(j['manifests'])") referrers"
[ "$(jq_py "j['manifests'][0]['artifactType']")" = application/vnd.dev.sigstore.bundle.v0.3+json ] || fail "artifactType"
[ "$(jq_py "j['manifests'][0]['annotations']['dev.quantd.signed-by']")" = daemon ] || fail "signed-by annotation"
REF=$(jq_py "j['manifests'][0]['digest']")
req GET "/v2/org/a/manifests/$REF"
expect 200 "the referrer manifest"
[ "$(jq_py "j['subject']['digest']")" = "$A" ] || fail "the referrer's subject"
BUNDLE=$(jq_py "j['layers'][0]['digest']")
req GET "/v2/org/a/blobs/$BUNDLE"
expect 200 "the bundle"
cp "$T/body" "$T/a.bundle"

"$QUANT" key export "$T/store/signing-key.pem" --out "$T/daemon.pub" || fail "export the daemon key"
KEYID=$("$QUANT" key show "$T/daemon.pub" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') ||
    fail "key show"
"$QUANT" policy new --trust "$T/daemon.pub" --out "$T/policy.json" >/dev/null || fail "policy new"
"$QUANT" verify --policy "$T/policy.json" --bundle "$T/a.bundle" "$T/w1.bin" "$T/w2.bin" >"$T/verify.out" 2>&1 ||
    { cat "$T/verify.out"; fail "quant verify of the daemon-signed checkpoint"; }
mkdir -p "$T/bad"
cp "$T/w2.bin" "$T/bad/w2.bin"
head -c 70000 /dev/urandom >"$T/bad/w1.bin"
"$QUANT" verify --policy "$T/policy.json" --bundle "$T/a.bundle" "$T/bad/w1.bin" "$T/bad/w2.bin" >/dev/null 2>&1 &&
    fail "quant verify accepted a tampered file"

python3 - "$T/a.bundle" "$A" "$KEYID" "$(sha "$T/w1.bin")" "$(sha "$T/w2.bin")" <<'PY' || fail "the statement"
import base64, json, sys
b = json.load(open(sys.argv[1]))
st = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
assert st["predicateType"] == "https://quantd.dev/checkpoint/v1", st["predicateType"]
p = st["predicate"]
assert p["origin"] == {"kind": "oci", "uri": "org/a@" + sys.argv[2]}, p["origin"]
assert p["precision"] == "f16", p["precision"]
assert p["license"] == "NOASSERTION"
assert [(f["name"], f["digest"], f["size"]) for f in p["files"]] == \
    [("w1.bin", sys.argv[4], 70000), ("w2.bin", sys.argv[5], 50000)], p["files"]
assert p["builder"]["key_id"] == sys.argv[3], p["builder"]
subj = {s["name"]: "sha256:" + s["digest"]["sha256"] for s in st["subject"]}
assert subj == {"w1.bin": sys.argv[4], "w2.bin": sys.argv[5]}, subj
PY
stop_daemon
echo "ok"
