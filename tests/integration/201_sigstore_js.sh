#!/usr/bin/env bash
# 201_sigstore_js.sh - npm @sigstore/verify (pinned in tests/package.json, installed by `make deps`) accepts our
# Ed25519 and P-256 bundles with only our public key as trusted material and no transparency log, and rejects
# bundles whose payload, signature or subject digest was changed.
. "$(dirname "$0")/verify_lib.sh"
NM=$HERE/../node_modules
if ! command -v node >/dev/null || [ ! -d "$NM/@sigstore/verify" ]; then
    echo "skip: @sigstore/verify is not installed (run make deps, which runs npm ci in tests/)"
    exit 77
fi
JS="node $HERE/sigstore_verify.js"

head -c 5000 /dev/urandom >model.gguf
printf 'tok\n' >tok.json
echo '{"origin":{"kind":"local","uri":"x"},"license":"MIT","precision":"f32","files":[]}' >pred.json
for alg in ed25519 ecdsa-p256; do
    "$Q" key gen --out "$alg" --type "$alg" >/dev/null
    "$Q" sign --key "$alg" --predicate-type https://quantd.dev/checkpoint/v1 --predicate pred.json \
        --out "$alg.bundle" model.gguf tok.json 2>/dev/null
    expect 0 '^ok: verified by @sigstore/verify' $JS "$alg.bundle" "$alg.pub" model.gguf tok.json
    # the model-signing layout too
    "$Q" sign --key "$alg" --predicate-type https://model_signing/signature/v1.0 --out "$alg.ms" model.gguf 2>/dev/null
    expect 0 '^ok' $JS "$alg.ms" "$alg.pub"

    $PY - "$alg.bundle" <<'PY'
import base64, json, sys
src = sys.argv[1]
def load(): return json.load(open(src))
def save(b, name): json.dump(b, open(name, "w"))
# payload: one byte of the statement changed, signature kept
b = load(); env = b["dsseEnvelope"]
p = bytearray(base64.b64decode(env["payload"])); p[-3] ^= 0x01
env["payload"] = base64.b64encode(bytes(p)).decode(); save(b, src + ".payload")
# signature: one bit flipped
b = load(); env = b["dsseEnvelope"]
s = bytearray(base64.b64decode(env["signatures"][0]["sig"])); s[len(s) // 2] ^= 0x10
env["signatures"][0]["sig"] = base64.b64encode(bytes(s)).decode(); save(b, src + ".sig")
# subject digest: replaced in the statement, statement re-encoded, signature kept
b = load(); env = b["dsseEnvelope"]
st = json.loads(base64.b64decode(env["payload"])); st["subject"][0]["digest"]["sha256"] = "ab" * 32
env["payload"] = base64.b64encode(json.dumps(st).encode()).decode(); save(b, src + ".subject")
PY
    for t in payload sig subject; do
        expect 1 'rejected: SIGNATURE_ERROR' $JS "$alg.bundle.$t" "$alg.pub"
    done
done
# the wrong key, and a changed file against an intact bundle
expect 1 'rejected: PUBLIC_KEY_ERROR' $JS ed25519.bundle ecdsa-p256.pub
printf 'x' >>model.gguf
expect 1 'subject model.gguf: digest mismatch' $JS ed25519.bundle ed25519.pub model.gguf
finish
