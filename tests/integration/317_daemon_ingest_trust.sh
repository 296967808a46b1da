#!/usr/bin/env bash
# Ingest signing under a trust policy (--trust): a checkpoint whose pusher pushed a bundle that verifies under the
# policy for exactly its files is left to its pusher; one whose bundle is signed by a key the policy does not trust,
# or covers other files, gets the daemon's signature too, and the daemon logs why the pusher's did not count.
. "$(dirname "$0")/daemon_lib.sh"
"$QUANT" key gen --out "$T/pk" >/dev/null || fail "key gen"
"$QUANT" key gen --out "$T/other" >/dev/null || fail "key gen"
"$QUANT" policy new --trust "$T/pk.pub" --out "$T/trust.json" >/dev/null || fail "policy new"
start_daemon --auth=false --ingest-sign-delay=3 --trust="$T/trust.json"

echo '{"config":{"format":"safetensors","precision":"f16"}}' >"$T/config.json"
# push checkpoint NAME with one weight file, then a bundle referrer signed by KEY over FILES
push_signed() { # NAME KEY FILE...
    local name=$1 key=$2
    shift 2
    head -c 40000 /dev/urandom >"$T/$name.bin"
    for f in config.json "$name.bin"; do push_blob "org/$name" "$T/$f"; done
    make_manifest "$T/$name.json" "$T/config.json" "$T/$name.bin"
    (cd "$T" && echo "{}" >pred.json &&
        "$QUANT" sign --key "$key" --predicate-type https://quantd.dev/test/v1 --predicate pred.json \
            --out "$name.bundle" "$@") >/dev/null || fail "sign $name"
    push_blob "org/$name" "$T/$name.bundle"
    SUBJECT="$(sha "$T/$name.json"),$(stat -c %s "$T/$name.json")" make_manifest "$T/$name.ref.json" \
        "$T/config.json" "$T/$name.bundle"
    req PUT "/v2/org/$name/manifests/v1" --data-binary @"$T/$name.json" \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
    expect 201 "push checkpoint $name"
    req PUT "/v2/org/$name/manifests/$(sha "$T/$name.ref.json")" --data-binary @"$T/$name.ref.json" \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
    expect 201 "push the bundle referrer of $name"
}
head -c 100 /dev/urandom >"$T/stray.bin"
push_signed good "$T/pk" good.bin
push_signed untrusted "$T/other" untrusted.bin
push_signed otherfiles "$T/pk" stray.bin
G=$(sha "$T/good.json") U=$(sha "$T/untrusted.json") O=$(sha "$T/otherfiles.json")

for _ in $(seq 1 300); do
    n=$(grep -c "checkpoint org/[a-z]*@sha256:[0-9a-f]* signed by" "$T/log" || true)
    [ "$n" -ge 3 ] && break
    sleep 0.1
done
grep -q "checkpoint org/good@$G signed by its pusher" "$T/log" || fail "the trusted pusher's bundle did not count"
grep -q "checkpoint org/untrusted@$U: the pusher's bundle is not accepted by the trust policy" "$T/log" ||
    fail "no reason logged for the untrusted key"
grep -q "checkpoint org/untrusted@$U signed by the daemon" "$T/log" || fail "untrusted: the daemon did not sign"
grep -q "checkpoint org/otherfiles@$O: the pusher's bundle is not accepted by the trust policy" "$T/log" ||
    fail "no reason logged for a bundle over other files"
grep -q "checkpoint org/otherfiles@$O signed by the daemon" "$T/log" || fail "otherfiles: the daemon did not sign"
for c in good:1 untrusted:2 otherfiles:2; do
    name=${c%%:*} want=${c##*:}
    req GET "/v2/org/$name/referrers/$(sha "$T/$name.json")"
    expect 200 "referrers of $name"
    [ "$(jq_py "len(j['manifests'])")" = "$want" ] || fail "$name has $(jq_py "len(j['manifests'])") referrers, want $want"
done
stop_daemon
echo "ok"
