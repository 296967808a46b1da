#!/usr/bin/env bash
# 200_verify_cli.sh - quant key/policy/sign/verify end to end: round trips for both algorithms, thresholds,
# validity windows, revocations, requirements, namespaces, model-signing layout, and bad input with exit 4 and a
# one-line reason naming the key and the subject.
. "$(dirname "$0")/verify_lib.sh"

head -c 20000 /dev/urandom >model.gguf
printf 'tokenizer\n' >tok.json
cp "$HERE/../../schemas/examples/valid/variant-v1.q4_k_m.json" pass.json
sed 's/"verdict": "pass"/"verdict": "fail"/' pass.json >fail.json
VT=https://quantd.dev/variant/v1

# keys
expect 0 '^[0-9a-f]{64} ed25519$' "$Q" key gen --out ed
expect 0 '^[0-9a-f]{64} ecdsa-p256$' "$Q" key gen --out ec --type ecdsa-p256
expect 0 '' "$Q" key gen --out ed2
expect 0 '' "$Q" key gen --out ed3
[ "$(stat -c %a ed)" = 600 ] || { echo "FAIL: private key mode $(stat -c %a ed), want 600"; n_fail=$((n_fail + 1)); }
expect 6 'exists' "$Q" key gen --out ed
expect 2 'unknown key algorithm' "$Q" key gen --out rsa --type rsa
ED=$("$Q" key show --json ed | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
EC=$("$Q" key show --json ec | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ED2=$("$Q" key show --json ed2 | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# the key id is the SHA-256 of the SPKI PEM text, computed here by openssl, for both algorithms and from a
# PEM file that was re-wrapped (the id comes from the key, not from the file's layout)
for k in ed ec; do
    want=$(openssl pkey -pubin -in $k.pub -pubout | sha256sum | cut -d' ' -f1)
    got=$("$Q" key show --json $k.pub | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    [ "$got" = "$want" ] || { echo "FAIL: $k key id $got != sha256(SPKI PEM) $want"; n_fail=$((n_fail + 1)); }
done
{ echo "-----BEGIN PUBLIC KEY-----"; grep -v -- ----- ed.pub | tr -d '\n' | fold -w 40; echo; echo "-----END PUBLIC KEY-----"; } >ed.rewrapped.pub
expect 0 "^id: +$ED$" "$Q" key show ed.rewrapped.pub
expect 0 "private: +no" "$Q" key show ed.pub
# OpenSSH lines out and in give the same key id; ssh-keygen (when present) reads our lines
for k in ed ec; do
    "$Q" key export "$k" --format openssh >"$k.ssh"
    expect 0 "^$("$Q" key show --json $k | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])') " \
        "$Q" key import "$k.ssh" --out "$k.imported.pub"
    cmp -s "$k.pub" "$k.imported.pub" || { echo "FAIL: $k: SPKI after OpenSSH round trip differs"; n_fail=$((n_fail + 1)); }
    if command -v ssh-keygen >/dev/null; then
        ssh-keygen -l -f "$k.ssh" >/dev/null 2>&1 || { echo "FAIL: ssh-keygen rejects $k.ssh"; n_fail=$((n_fail + 1)); }
    fi
done
# import of an openssl-made PKCS#8 key
openssl genpkey -algorithm ed25519 -out ossl.pem 2>/dev/null
expect 0 'ed25519 private' "$Q" key import ossl.pem --out ossl
[ "$(stat -c %a ossl)" = 600 ] || { echo "FAIL: imported private key mode"; n_fail=$((n_fail + 1)); }
openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024 -out rsa.pem 2>/dev/null
expect 1 'unsupported key type RSA' "$Q" key show rsa.pem
echo "not a key" >junk.pem
expect 2 'not a key' "$Q" key show junk.pem

# sign and verify, both algorithms
for k in ed ec; do
    expect 0 '' "$Q" sign --key "$k" --predicate-type "$VT" --predicate pass.json --out "$k.bundle" model.gguf tok.json
    "$Q" policy new --trust "$k.pub" --out "$k.policy" || n_fail=$((n_fail + 1))
    expect 0 "^verified: 2 file" "$Q" verify --policy "$k.policy" --bundle "$k.bundle" model.gguf tok.json
done
expect 0 '"verdict": "pass"' "$Q" verify --policy ed.policy --bundle ed.bundle --json model.gguf tok.json

# a changed file: exit 4, one line naming the key and the subject
cp model.gguf m2 && mkdir -p t && cp tok.json t/ && printf 'x' >>m2 && mv m2 t/model.gguf
expect 4 "^quant: verify: FAILED key $ED subject model.gguf: digest mismatch" \
    "$Q" verify --policy ed.policy --bundle ed.bundle t/model.gguf t/tok.json
n_lines=$("$Q" verify --policy ed.policy --bundle ed.bundle t/model.gguf t/tok.json 2>&1 | wc -l)
[ "$n_lines" -eq 1 ] || { echo "FAIL: failure output is $n_lines lines, want 1"; n_fail=$((n_fail + 1)); }
expect 4 "subject tok.json: no file of that name" "$Q" verify --policy ed.policy --bundle ed.bundle model.gguf
cp tok.json extra.txt
expect 4 "subject extra.txt: this file is not a subject" \
    "$Q" verify --policy ed.policy --bundle ed.bundle model.gguf tok.json extra.txt
# the wrong key
expect 4 "FAILED key $ED subject model.gguf \(\+1 more, unverified\): the key is not in the policy" \
    "$Q" verify --policy ec.policy --bundle ed.bundle model.gguf tok.json

# thresholds: 2 of 2, several signatures in one envelope or several bundles
"$Q" policy new --trust ed.pub --trust ec.pub --threshold 2 --out two.policy
expect 0 '' "$Q" sign --key ed --key ec --predicate-type "$VT" --predicate pass.json --out both.bundle model.gguf tok.json
expect 0 "^verified: .*key\(s\) [0-9a-f]{64},[0-9a-f]{64}$" \
    "$Q" verify --policy two.policy --bundle both.bundle model.gguf tok.json
expect 4 'threshold not met: 1 of 2' "$Q" verify --policy two.policy --bundle ed.bundle model.gguf tok.json
# separate bundles over the same statement count together; the same key twice does not
"$Q" sign --key ec --predicate-type "$VT" --predicate pass.json --out ec2.bundle model.gguf tok.json 2>/dev/null
"$Q" sign --key ed --predicate-type "$VT" --predicate pass.json --out ed.again model.gguf tok.json 2>/dev/null
expect 0 '' "$Q" verify --policy two.policy --bundle ed.bundle --bundle ec2.bundle model.gguf tok.json
expect 4 'signed more than once and counts once; threshold not met: 1 of 2' \
    "$Q" verify --policy two.policy --bundle ed.bundle --bundle ed.again model.gguf tok.json
expect 0 '' "$Q" sign --key ed --key ed --predicate-type "$VT" --predicate pass.json --out dup.bundle model.gguf tok.json
expect 4 "FAILED key $ED .*counts once; threshold not met" \
    "$Q" verify --policy two.policy --bundle dup.bundle model.gguf tok.json
"$Q" sign --key ed --predicate-type "$VT" --predicate fail.json --out other.bundle model.gguf tok.json 2>/dev/null
expect 4 'different payloads' "$Q" verify --policy two.policy --bundle ed.bundle --bundle other.bundle model.gguf tok.json

# validity windows and revocation
"$Q" policy new --trust ed.pub --valid-from 2020-01-01T00:00:00Z --valid-until 2021-01-01T00:00:00Z --out old.policy
expect 4 "FAILED key $ED subject model.gguf \(\+1 more, unverified\): the key expired at 2021-01-01T00:00:00Z" \
    "$Q" verify --policy old.policy --bundle ed.bundle model.gguf tok.json
"$Q" policy new --trust ed.pub --valid-from 2099-01-01T00:00:00Z --out future.policy
expect 4 "the key is not yet valid \(valid from 2099-01-01T00:00:00Z\)" \
    "$Q" verify --policy future.policy --bundle ed.bundle model.gguf tok.json
$PY - ed.policy revoked.policy "$ED" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); p["revoked"] = [sys.argv[3]]; json.dump(p, open(sys.argv[2], "w"))
PY
expect 4 "FAILED key $ED subject model.gguf \(\+1 more, unverified\): the key is revoked" \
    "$Q" verify --policy revoked.policy --bundle ed.bundle model.gguf tok.json

# requirements: predicate types and a passing validation verdict
"$Q" policy new --trust ed.pub --require-predicate https://quantd.dev/checkpoint/v1 --out ckpt.policy
expect 4 "subject model.gguf: predicate type https://quantd.dev/variant/v1 is not one the policy accepts" \
    "$Q" verify --policy ckpt.policy --bundle ed.bundle model.gguf tok.json
"$Q" policy new --trust ed.pub --require-predicate "$VT" --require-validation-pass --out strict.policy
expect 0 '' "$Q" verify --policy strict.policy --bundle ed.bundle model.gguf tok.json
expect 4 "validation verdict is 'fail'; the policy requires 'pass'" \
    "$Q" verify --policy strict.policy --bundle other.bundle model.gguf tok.json

# namespaces: first matching rule wins
"$Q" policy new --trust ed.pub --namespace 'acme/*' --out ns.policy
expect 0 '' "$Q" verify --policy ns.policy --namespace acme/llama --bundle ed.bundle model.gguf tok.json
expect 4 "no namespace rule of the policy matches 'evil/llama'" \
    "$Q" verify --policy ns.policy --namespace evil/llama --bundle ed.bundle model.gguf tok.json

# OpenSSF model-signing layout
expect 0 '' "$Q" sign --key ed --predicate-type https://model_signing/signature/v1.0 --name tiny --out ms.bundle \
    tok.json model.gguf
expect 0 'model_signing/signature/v1.0' "$Q" verify --policy ed.policy --bundle ms.bundle model.gguf tok.json
$PY - ms.bundle model.gguf tok.json <<'PY' || n_fail=$((n_fail + 1))
# the root digest is SHA-256 over the per-file digests sorted by name, recomputed here independently
import base64, hashlib, json, sys
st = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["dsseEnvelope"]["payload"]))
files = sorted(sys.argv[2:])
root = hashlib.sha256(b"".join(hashlib.sha256(open(f, "rb").read()).digest() for f in files)).hexdigest()
res = st["predicate"]["resources"]
assert [r["name"] for r in res] == files, res
assert st["subject"] == [{"name": "tiny", "digest": {"sha256": root}}], st["subject"]
assert st["predicate"]["serialization"]["method"] == "files"
PY
expect 4 'subject model.gguf: digest mismatch' "$Q" verify --policy ed.policy --bundle ms.bundle t/model.gguf t/tok.json

# bad input: bundles
tamper() { # IN OUT PYTHON-EXPR-ON-b (b is the bundle dict, st the decoded statement or None)
    $PY - "$@" <<'PY'
import base64, json, sys
b = json.load(open(sys.argv[1]))
env = b["dsseEnvelope"]
exec(sys.argv[3])
json.dump(b, open(sys.argv[2], "w"))
PY
}
restatement() { # IN OUT PYTHON-ON-st : change the statement and re-encode (the signature no longer matches)
    tamper "$1" "$2" "st = json.loads(base64.b64decode(env['payload'])); $3; env['payload'] = base64.b64encode(json.dumps(st).encode()).decode()"
}
head -c 100 ed.bundle >trunc.bundle
expect 4 'invalid JSON' "$Q" verify --policy ed.policy --bundle trunc.bundle model.gguf tok.json
printf '\x00\xff garbage' >garbage.bundle
expect 4 'invalid JSON' "$Q" verify --policy ed.policy --bundle garbage.bundle model.gguf tok.json
tamper ed.bundle wrongtype.bundle "env['payloadType'] = 'text/plain'"
expect 4 "payloadType is 'text/plain', expected application/vnd.in-toto\+json" \
    "$Q" verify --policy ed.policy --bundle wrongtype.bundle model.gguf tok.json
tamper ed.bundle b64.bundle "env['payload'] = env['payload'][:10] + '!' + env['payload'][11:]"
expect 4 'dsseEnvelope.payload: bad base64: character 10' "$Q" verify --policy ed.policy --bundle b64.bundle model.gguf tok.json
tamper ed.bundle nosig.bundle "env['signatures'] = []"
expect 4 'dsseEnvelope.signatures: no signatures' "$Q" verify --policy ed.policy --bundle nosig.bundle model.gguf tok.json
tamper ed.bundle hint.bundle "b['verificationMaterial']['publicKey']['hint'] = '$EC'"
expect 4 'publicKey.hint .* does not match' "$Q" verify --policy ed.policy --bundle hint.bundle model.gguf tok.json
tamper ed.bundle urlsafe.bundle "env['payload'] = env['payload'].replace('+', '-').replace('/', '_').rstrip('='); env['signatures'][0]['sig'] = env['signatures'][0]['sig'].replace('+', '-').replace('/', '_').rstrip('=')"
expect 0 '' "$Q" verify --policy ed.policy --bundle urlsafe.bundle model.gguf tok.json
tamper ed.bundle sig.bundle "s = bytearray(base64.b64decode(env['signatures'][0]['sig'])); s[5] ^= 1; env['signatures'][0]['sig'] = base64.b64encode(bytes(s)).decode()"
expect 4 "FAILED key $ED subject model.gguf \(\+1 more, unverified\): the signature does not verify" \
    "$Q" verify --policy ed.policy --bundle sig.bundle model.gguf tok.json
restatement ed.bundle subj.bundle "st['subject'][0]['digest']['sha256'] = '0' * 64"
expect 4 "FAILED key $ED subject model.gguf \(\+1 more, unverified\): the signature does not verify" \
    "$Q" verify --policy ed.policy --bundle subj.bundle model.gguf tok.json
tamper ed.bundle cert.bundle "b['verificationMaterial'] = {'certificate': {'rawBytes': 'AA=='}, 'tlogEntries': []}"
expect 4 'certificate-based bundles are not supported' "$Q" verify --policy ed.policy --bundle cert.bundle model.gguf tok.json
# oversized payload: a policy limit below the statement size
$PY - ed.policy small.policy <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); p["max_payload_bytes"] = 64; json.dump(p, open(sys.argv[2], "w"))
PY
expect 4 'over the limit' "$Q" verify --policy small.policy --bundle ed.bundle model.gguf tok.json

# statements without subjects or with another digest algorithm, correctly signed (the signature must not hide them)
printf '{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"%s","predicate":{}}' "$VT" >nosubj.json
printf '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"model.gguf","digest":{"sha512":"%s"}}],"predicateType":"%s","predicate":{}}' \
    "$(sha512sum model.gguf | cut -d' ' -f1)" "$VT" >sha512.json
for s in nosubj sha512; do
    $PY - "$s.json" "$s.pae" <<'PY'
import sys
body = open(sys.argv[1], "rb").read(); t = b"application/vnd.in-toto+json"
open(sys.argv[2], "wb").write(b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body))
PY
    openssl pkeyutl -sign -rawin -inkey ed -in "$s.pae" -out "$s.sig" 2>/dev/null
    $PY - "$s.json" "$s.sig" "$ED" "$s.bundle" <<'PY'
import base64, json, sys
b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
json.dump({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
           "verificationMaterial": {"publicKey": {"hint": sys.argv[3]}, "tlogEntries": []},
           "dsseEnvelope": {"payload": b64(sys.argv[1]), "payloadType": "application/vnd.in-toto+json",
                            "signatures": [{"sig": b64(sys.argv[2]), "keyid": sys.argv[3]}]}}, open(sys.argv[4], "w"))
PY
done
expect 4 "FAILED key $ED subject -: the statement has no subjects" \
    "$Q" verify --policy ed.policy --bundle nosubj.bundle model.gguf
expect 4 "FAILED key $ED subject model.gguf: unsupported digest algorithm 'sha512'" \
    "$Q" verify --policy ed.policy --bundle sha512.bundle model.gguf

# bad input: policies
$PY - ed.policy <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
def w(name, q): json.dump(q, open(name, "w"))
q = json.loads(json.dumps(p)); q["trusted"] = []; w("unknown.policy", q)
q = json.loads(json.dumps(p)); q["namespaces"][0]["threshold"] = "1"; w("type.policy", q)
q = json.loads(json.dumps(p)); q["keys"][0]["id"] = "0" * 64; w("keyid.policy", q)
q = json.loads(json.dumps(p)); q["namespaces"][0]["threshold"] = 2; w("th.policy", q)
q = json.loads(json.dumps(p)); q["keys"][0]["valid_from"] = "yesterday"; w("time.policy", q)
q = json.loads(json.dumps(p)); q["namespaces"][0]["keys"] = ["1" * 64]; w("ref.policy", q)
PY
expect 2 "unknown field 'trusted'" "$Q" verify --policy unknown.policy --bundle ed.bundle model.gguf tok.json
expect 2 'namespaces\[0\].threshold: not an integer' "$Q" policy check type.policy
expect 2 "keys\[0\].id: 0{64} does not match the key \(its id is $ED\)" "$Q" policy check keyid.policy
expect 2 'threshold: 2 cannot be met with 1 key' "$Q" policy check th.policy
expect 2 'valid_from: not a time' "$Q" policy check time.policy
expect 2 'is not listed in keys' "$Q" policy check ref.policy
cp ed ed.priv && $PY - ed.policy priv.policy ed.priv <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); p["keys"][0]["public_key"] = open(sys.argv[3]).read(); json.dump(p, open(sys.argv[2], "w"))
PY
expect 2 'holds a PRIVATE key' "$Q" policy check priv.policy
expect 0 '^ok$' "$Q" policy check two.policy
expect 3 'No such file' "$Q" verify --policy nope.policy --bundle ed.bundle model.gguf

finish
