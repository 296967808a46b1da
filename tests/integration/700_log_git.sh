#!/usr/bin/env bash
# 700_log_git.sh - the signed log against stock git and independent checks: `git verify-commit` (gpg.format=ssh,
# an allowed-signers file) accepts every commit and refuses them under another key; `git clone` of the bare log and
# `git fsck --strict`; `quant log verify` refuses a rewritten history, a rollback and a modified blob; checkpoint
# notes and inclusion/consistency proofs checked by a Python implementation written here (RFC 9162 verification,
# C2SP note key hash, Ed25519 via python3-cryptography); freshness refuses freeze and rollback; audit query/lineage.
. "$(dirname "$0")/verify_lib.sh"

command -v git >/dev/null || { echo "skip: git not installed"; exit 77; }
command -v ssh-keygen >/dev/null || { echo "skip: ssh-keygen (openssh-client) not installed: git needs it for gpg.format=ssh"; exit 77; }

VT=https://quantd.dev/variant/v1
EX="$HERE/../../schemas/examples/valid"
expect 0 '' "$Q" key gen --out logk
expect 0 '' "$Q" key gen --out other
expect 0 '' "$Q" key gen --out signer
expect 0 '' "$Q" key gen --out stranger
expect 0 '' "$Q" policy new --trust signer.pub --out policy.json
printf 'weights-a\n' >a.gguf
printf 'weights-b\n' >b.gguf
expect 0 '' "$Q" sign --key signer --predicate-type $VT --predicate "$EX/variant-v1.q4_k_m.json" --out a.bundle a.gguf
# b derives from a: its predicate's source is a's manifest digest
MA=sha256:$(printf 'manifest-a' | sha256sum | cut -c1-64)
MB=sha256:$(printf 'manifest-b' | sha256sum | cut -c1-64)
$PY - "$EX/variant-v1.gptq-calibrated.json" "$MA" >b.pred.json <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1])); p["source"]["digest"] = sys.argv[2]; print(json.dumps(p))
PYEOF
expect 0 '' "$Q" sign --key signer --predicate-type $VT --predicate b.pred.json --out b.bundle b.gguf
expect 0 '' "$Q" sign --key stranger --predicate-type $VT --predicate b.pred.json --out evil.bundle b.gguf

# a log with four entries
expect 0 '^ok' "$Q" log init log.git --origin example.test/log
expect 6 'already there' "$Q" log init log.git --origin example.test/log
expect 0 '^0 [0-9a-f]{40}$' "$Q" log publish log.git --key logk --name acme/llama --manifest $MA --bundle a.bundle --policy policy.json
expect 0 '^1 ' "$Q" log publish log.git --key logk --name acme/llama --manifest $MB --bundle b.bundle --policy policy.json
expect 4 'no key|threshold|signature' "$Q" log publish log.git --key logk --name acme/llama --manifest $MB --bundle evil.bundle --policy policy.json
expect 0 '^2 ' "$Q" log tag log.git --key logk --name acme/llama:q4 --manifest $MB
expect 0 '^3 ' "$Q" log key-add log.git --key logk --subject signer.pub
expect 2 'tag' "$Q" log tag log.git --key logk --name acme/llama --manifest $MB

# stock git: every commit verifies under the log key, none under another
"$Q" log allowed-signers --key logk >allowed
"$Q" log allowed-signers --key other >allowed.other
n=0
for c in $(git --git-dir=log.git rev-list main); do
    n=$((n + 1))
    expect 0 'Good "git" signature' git --git-dir=log.git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=allowed verify-commit -v "$c"
    expect 1 '' git --git-dir=log.git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=allowed.other verify-commit "$c"
done
[ $n = 4 ] || { echo "FAIL: $n commits, want 4"; n_fail=$((n_fail + 1)); }
expect 0 '' git --git-dir=log.git fsck --strict
expect 0 '' git clone -q --no-local log.git clone
expect 0 '' git -C clone fsck --strict
[ -f clone/manifests/sha256/${MB#sha256:}.json ] && [ "$(cat clone/tags/acme/llama/q4)" = "$MB" ] \
    || { echo "FAIL: the clone lacks the bundle or the tag file"; n_fail=$((n_fail + 1)); }
expect 0 'ok: 4 entries' "$Q" log verify clone --log-key logk.pub --policy policy.json
expect 4 'signature' "$Q" log verify clone --log-key other.pub

# checkpoint and proofs, checked independently in Python
"$Q" log checkpoint log.git --key logk >cp.note
"$Q" log vkey log.git --key logk >vkey
"$Q" log show log.git --index 1 | tr -d '\n' >entry1
"$Q" log prove log.git --index 1 >incl.json
"$Q" log consistency log.git --from 3 >cons.json
"$Q" log consistency log.git --from 3 --size 3 >/dev/null
cat >check.py <<'PYEOF'
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
H = lambda b: hashlib.sha256(b).digest()
node = lambda l, r: H(b"\x01" + l + r)
note = open("cp.note", "rb").read()
text, sigs = note.rsplit(b"\n\n", 1)
text += b"\n"
name, khash, kb64 = open("vkey").read().strip().split("+", 2)
pub = base64.b64decode(kb64)
assert pub[0] == 1 and len(pub) == 33
assert H(name.encode() + b"\n" + pub)[:4].hex() == khash, "key hash"
line = sigs.decode().strip()
assert line.startswith("\u2014 " + name + " "), line
sig = base64.b64decode(line.split(" ")[2])
assert sig[:4].hex() == khash
Ed25519PublicKey.from_public_bytes(pub[1:]).verify(sig[4:], text)  # raises when bad
origin, size, root = text.decode().splitlines()[:3]
assert origin == name == "example.test/log" and size == "4"
root = base64.b64decode(root)
inc = json.load(open("incl.json"))
leaf = H(b"\x00" + open("entry1", "rb").read())
assert leaf.hex() == inc["leaf"]
# RFC 9162 2.1.3.2
fn, sn, r = inc["index"], inc["size"] - 1, leaf
for p in map(bytes.fromhex, inc["proof"]):
    assert sn != 0
    if fn & 1 or fn == sn:
        r = node(p, r)
        while not fn & 1 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        r = node(r, p)
    fn >>= 1; sn >>= 1
assert sn == 0 and r == root, "inclusion"
# RFC 9162 2.1.4.2
c = json.load(open("cons.json"))
first, second = c["from"], c["size"]
proof = [bytes.fromhex(x) for x in c["proof"]]
r1 = bytes.fromhex(c["from_root"])
if first & (first - 1) == 0:
    proof = [r1] + proof
fn, sn = first - 1, second - 1
while fn & 1:
    fn >>= 1; sn >>= 1
fr = sr = proof[0]
for p in proof[1:]:
    assert sn != 0
    if fn & 1 or fn == sn:
        fr = node(p, fr); sr = node(p, sr)
        while not fn & 1 and fn != 0:
            fn >>= 1; sn >>= 1
    else:
        sr = node(sr, p)
    fn >>= 1; sn >>= 1
assert sn == 0 and fr == r1 and sr == root, "consistency"
print("python: note, inclusion and consistency ok")
PYEOF
expect 0 'python: note, inclusion and consistency ok' $PY check.py

# fast-forward only: state after 4 entries, then attacks on copies of the log
expect 0 'ok: 4 entries' "$Q" log verify log.git --log-key logk.pub --policy policy.json --state st
expect 0 '^4 ' "$Q" log tag log.git --key logk --name acme/llama:latest --manifest $MA
cp -a log.git rollback.git
cp -a log.git rewrite.git
cp -a log.git tamper.git
expect 0 'ok: 5 entries' "$Q" log verify log.git --log-key logk.pub --policy policy.json --state st
expect 0 'ok: 5 entries' "$Q" log verify log.git --log-key logk.pub --policy policy.json --state st
# rollback: the upstream serves an older log
git --git-dir=rollback.git update-ref refs/heads/main main~2
expect 4 'rollback' "$Q" log verify rollback.git --log-key logk.pub --policy policy.json --state st
# rewrite: the last two entries replaced by one made (and validly signed) elsewhere
git --git-dir=rewrite.git update-ref refs/heads/main main~2
rm -rf rewrite.git/qd-merkle
expect 0 '^3 ' "$Q" log tag rewrite.git --key logk --name acme/llama:q4 --manifest $MA
expect 0 '^4 ' "$Q" log tag rewrite.git --key logk --name acme/llama:q4 --manifest $MB
expect 4 'rewritten' "$Q" log verify rewrite.git --log-key logk.pub --policy policy.json --state st
# a modified bundle blob: the loose object replaced by other content under the same name
oid=$(git --git-dir=tamper.git rev-parse main:manifests/sha256/${MA#sha256:}.json)
$PY - tamper.git/objects/${oid:0:2}/${oid:2} <<'PYEOF'
import os, sys, zlib
p = sys.argv[1]
raw = zlib.decompress(open(p, "rb").read())
hdr, body = raw.split(b"\0", 1)
body = body.replace(b"\"payload\"", b"\"payload\" ", 1)
os.chmod(p, 0o644)
open(p, "wb").write(zlib.compress(b"blob %d\0" % len(body) + body))
PYEOF
expect 4 "corrupt|hash|match|object" "$Q" log verify tamper.git --log-key logk.pub --policy policy.json
# the state did not move on any refusal
expect 0 'ok: 5 entries' "$Q" log verify log.git --log-key logk.pub --policy policy.json --state st

# commits made outside quantd, signed by a Python SSHSIG encoder written here with the log key: one that changes only
# its entry's path verifies (our verifier reads an independent encoder), one that also swaps a bundle is refused
cat >resign.py <<'PYEOF'
import base64, hashlib, struct, subprocess, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
gitdir, oid, keyfile = sys.argv[1:4]
raw = subprocess.run(["git", "--git-dir=" + gitdir, "cat-file", "commit", oid], check=True, capture_output=True).stdout
key = load_pem_private_key(open(keyfile, "rb").read(), None)
s = lambda b: struct.pack(">I", len(b)) + b
pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
signed = b"SSHSIG" + s(b"git") + s(b"") + s(b"sha256") + s(hashlib.sha256(raw).digest())
blob = b"SSHSIG" + struct.pack(">I", 1) + s(s(b"ssh-ed25519") + s(pub)) + s(b"git") + s(b"") + s(b"sha256") \
    + s(s(b"ssh-ed25519") + s(key.sign(signed)))
b64 = base64.b64encode(blob).decode()
arm = "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(b64[i:i + 70] for i in range(0, len(b64), 70)) \
    + "\n-----END SSH SIGNATURE-----"
head, body = raw.split(b"\n\n", 1)
out = head + b"\ngpgsig " + arm.replace("\n", "\n ").encode() + b"\n\n" + body
r = subprocess.run(["git", "--git-dir=" + gitdir, "hash-object", "-t", "commit", "-w", "--stdin"], input=out,
                   check=True, capture_output=True)
print(r.stdout.decode().strip())
PYEOF
craft() { # craft GITDIR SMUGGLE(0/1): append a tag entry made with git plumbing, signed in Python
    local g=$1 seq tree blob c
    seq=$(git --git-dir=$g rev-list --count main)
    blob=$(printf '%s\n' $MB | git --git-dir=$g hash-object -w --stdin)
    GIT_INDEX_FILE=$W/idx.$$ git --git-dir=$g read-tree main
    GIT_INDEX_FILE=$W/idx.$$ git --git-dir=$g update-index --add --cacheinfo 100644,$blob,tags/acme/llama/evil
    if [ "$2" = 1 ]; then
        blob=$(printf '{"not":"the signed bundle"}' | git --git-dir=$g hash-object -w --stdin)
        GIT_INDEX_FILE=$W/idx.$$ git --git-dir=$g update-index --cacheinfo 100644,$blob,manifests/sha256/${MA#sha256:}.json
    fi
    tree=$(GIT_INDEX_FILE=$W/idx.$$ git --git-dir=$g write-tree)
    rm -f $W/idx.$$
    c=$(printf 'tag acme/llama:evil\n\n{"kind":"tag","manifest":"%s","name":"acme/llama:evil","origin":"example.test/log","seq":%s,"time":1800000000,"v":1}\n' $MB $seq |
        GIT_AUTHOR_NAME=x GIT_AUTHOR_EMAIL=x@x GIT_COMMITTER_NAME=x GIT_COMMITTER_EMAIL=x@x git --git-dir=$g commit-tree $tree -p main)
    c=$($PY resign.py $g $c logk)
    git --git-dir=$g update-ref refs/heads/main $c
}
cp -a log.git ok.git
cp -a log.git smuggle.git
craft ok.git 0
craft smuggle.git 1
expect 0 'ok: 6 entries' "$Q" log verify ok.git --log-key logk.pub --policy policy.json
expect 0 'Good "git" signature' git --git-dir=ok.git -c gpg.format=ssh -c gpg.ssh.allowedSignersFile=allowed verify-commit -v main
expect 4 'changes more than' "$Q" log verify smuggle.git --log-key logk.pub --policy policy.json

# freshness
NOW=1800000000
"$Q" log timestamp log.git --key logk --now $NOW --ttl 300 >ts1
expect 0 'ok: size 5' "$Q" log check-timestamp ts1 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 5))
expect 4 'freeze' "$Q" log check-timestamp ts1 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 301))
"$Q" log timestamp log.git --key logk --now $((NOW + 60)) --ttl 300 >ts2
expect 0 'ok' "$Q" log check-timestamp ts2 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 61))
expect 4 'rollback' "$Q" log check-timestamp ts1 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 62))
# the timestamp must describe the log verified into st (5 entries): ts2 does; after one more entry it is stale
expect 0 'ok' "$Q" log check-timestamp ts2 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 62)) --match st
expect 0 '' "$Q" log tag log.git --key logk --name acme/llama:latest --manifest $MB
expect 0 'ok: 6 entries' "$Q" log verify log.git --log-key logk.pub --policy policy.json --state st
expect 4 'stale' "$Q" log check-timestamp ts2 --log-key logk.pub --origin example.test/log --state fresh --now $((NOW + 63)) --match st
expect 4 '' "$Q" log check-timestamp ts2 --log-key other.pub --origin example.test/log --state fresh --now $((NOW + 62))

# audit
expect 0 '"method":"gptq"' "$Q" audit query log.git --converter-version 0.1.0 --method gptq --json
SID=$("$Q" key show --json signer | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
n=$("$Q" audit query log.git --key-id "$SID" --json | $PY -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 2 ] || { echo "FAIL: key $SID signed $n published variants, want 2"; n_fail=$((n_fail + 1)); }
expect 0 "\"$MB\" -> \"$MA\"" "$Q" audit lineage log.git $MB --output dot
expect 0 "$MB" "$Q" audit lineage log.git $MA --down --output tree
expect 3 'no log entry' "$Q" audit lineage log.git sha256:$(printf x | sha256sum | cut -c1-64)
expect 2 '' "$Q" audit lineage log.git not-a-digest
finish
