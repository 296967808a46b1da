#!/usr/bin/env bash
# 202_openssl_interop.sh - the openssl command line checks our signatures over PAE bytes that this script builds
# itself (DSSE v1.0.2), and our verifier accepts bundles whose key, PAE and signature the openssl command line made.
. "$(dirname "$0")/verify_lib.sh"
command -v openssl >/dev/null || { echo "skip: no openssl command"; exit 77; }
T=application/vnd.in-toto+json

pae() { # PAYLOAD-FILE OUT : "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    printf 'DSSEv1 %d %s %d ' "${#T}" "$T" "$(stat -c %s "$1")" >"$2"
    cat "$1" >>"$2"
}
field() { # BUNDLE payload|sig OUT : decode a field of the bundle to raw bytes
    $PY -c '
import base64, json, sys
e = json.load(open(sys.argv[1]))["dsseEnvelope"]
v = e["payload"] if sys.argv[2] == "payload" else e["signatures"][0]["sig"]
open(sys.argv[3], "wb").write(base64.b64decode(v))' "$@"
}

head -c 3000 /dev/urandom >model.gguf
echo '{"origin":{"kind":"local","uri":"x"},"license":"MIT","precision":"f32","files":[]}' >pred.json

# 1. our signatures, checked by openssl over PAE built here
for alg in ed25519 ecdsa-p256; do
    "$Q" key gen --out "$alg" --type "$alg" >/dev/null
    "$Q" sign --key "$alg" --predicate-type https://quantd.dev/checkpoint/v1 --predicate pred.json \
        --out "$alg.bundle" model.gguf 2>/dev/null
    field "$alg.bundle" payload "$alg.payload"
    field "$alg.bundle" sig "$alg.sig"
    pae "$alg.payload" "$alg.pae"
    cp "$alg.pae" "$alg.bad.pae" && printf 'x' >>"$alg.bad.pae"
done
[ "$(stat -c %s ed25519.sig)" -eq 64 ] || { echo "FAIL: Ed25519 signature is not 64 raw bytes"; n_fail=$((n_fail + 1)); }
openssl asn1parse -inform DER -in ecdsa-p256.sig >/dev/null 2>&1 || { echo "FAIL: P-256 signature is not DER"; n_fail=$((n_fail + 1)); }
expect 0 'Signature Verified Successfully' openssl pkeyutl -verify -rawin -pubin -inkey ed25519.pub -in ed25519.pae -sigfile ed25519.sig
expect 1 'Signature Verification Failure' openssl pkeyutl -verify -rawin -pubin -inkey ed25519.pub -in ed25519.bad.pae -sigfile ed25519.sig
expect 0 'Verified OK' openssl dgst -sha256 -verify ecdsa-p256.pub -signature ecdsa-p256.sig ecdsa-p256.pae
expect 1 'Verification failure' openssl dgst -sha256 -verify ecdsa-p256.pub -signature ecdsa-p256.sig ecdsa-p256.bad.pae

# 2. keys, PAE and signatures made by openssl, verified by quant
openssl genpkey -algorithm ed25519 -out o-ed.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out o-ec.key 2>/dev/null
sha=$(sha256sum model.gguf | cut -d' ' -f1)
printf '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"model.gguf","digest":{"sha256":"%s"}}],"predicateType":"https://quantd.dev/checkpoint/v1","predicate":{"made":"by openssl"}}' "$sha" >o.stmt
pae o.stmt o.pae
for k in o-ed o-ec; do
    openssl pkey -in "$k.key" -pubout -out "$k.pub"
    id=$(openssl pkey -pubin -in "$k.pub" -pubout | sha256sum | cut -d' ' -f1)
    if [ "$k" = o-ed ]; then
        openssl pkeyutl -sign -rawin -inkey "$k.key" -in o.pae -out "$k.sig"
    else
        openssl dgst -sha256 -sign "$k.key" -out "$k.sig" o.pae
    fi
    for alphabet in std url; do
        $PY - o.stmt "$k.sig" "$id" "$k.$alphabet.bundle" "$alphabet" <<'PY'
import base64, json, sys
enc = base64.b64encode if sys.argv[5] == "std" else (lambda b: base64.urlsafe_b64encode(b).rstrip(b"="))
b64 = lambda p: enc(open(p, "rb").read()).decode()
json.dump({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
           "verificationMaterial": {"publicKey": {"hint": sys.argv[3]}, "tlogEntries": []},
           "dsseEnvelope": {"payload": b64(sys.argv[1]), "payloadType": "application/vnd.in-toto+json",
                            "signatures": [{"sig": b64(sys.argv[2]), "keyid": sys.argv[3]}]}}, open(sys.argv[4], "w"))
PY
    done
    "$Q" policy new --trust "$k.pub" --out "$k.policy"
    expect 0 "^verified: 1 file\(s\), predicate https://quantd.dev/checkpoint/v1, key\(s\) $id$" \
        "$Q" verify --policy "$k.policy" --bundle "$k.std.bundle" model.gguf
    expect 0 "key\(s\) $id$" "$Q" verify --policy "$k.policy" --bundle "$k.url.bundle" model.gguf
    expect 0 '"made":"by openssl"' "$Q" verify --policy "$k.policy" --bundle "$k.std.bundle" --print-payload model.gguf
done
# and a 2-of-2 policy over both openssl keys, from two bundles
"$Q" policy new --trust o-ed.pub --trust o-ec.pub --threshold 2 --out o-two.policy
expect 0 '' "$Q" verify --policy o-two.policy --bundle o-ed.std.bundle --bundle o-ec.url.bundle model.gguf
finish
