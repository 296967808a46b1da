#!/usr/bin/env bash
# --json of push, pull and card against schemas/client.schema.json (human output unchanged without it), and
# --allow-unsigned: off by default; with it an artifact with no signature at all is pulled with a loud warning and
# its files still checked against the manifest digests (a byte flipped in transit is refused); a bundle that does
# not verify is refused all the same; the config file cannot turn it on.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
. "$here/client_lib.sh"
pyj() { "$PYTHON" -c "import json; j=json.load(open('$T/out')); print($1)"; }
client_setup
start_daemon --auth=false
head -c 400000 /dev/urandom >"$T/w.bin"
echo '{"dim":8}' >"$T/c.json"
P=(--registry "$URL" --policy "$T/policy.json")

# ---- push --json, signed
qrun 0 push org/j:v1 "$T/w.bin" "$T/c.json" --sign "$T/good" --registry "$URL" --json
schema_keep push "$T/out"
[ "$(pyj "j['signed'], len(j['files']), j['files'][0]['already_present']")" = "True 2 False" ] ||
    fail "push json: $(cat "$T/out")"
MD=$(pyj "j['manifest']")
# human output unchanged
qrun 0 push org/j:v1 "$T/w.bin" "$T/c.json" --sign "$T/good" --registry "$URL"
[ "$(cat "$T/out")" = "org/j:v1@$MD" ] || fail "push human output: $(cat "$T/out")"

# ---- pull --json
mkdir "$T/a"
qrun 0 pull org/j:v1 -o "$T/a" "${P[@]}" --json
schema_keep pull "$T/out"
[ "$(pyj "j['manifest'], j['signed'], j['verified']['keys']")" = "$MD True 1" ] || fail "pull json: $(cat "$T/out")"
[ "$(pyj "sum(f['fetched'] for f in j['files']) >= 400000")" = True ] || fail "pull json fetched: $(cat "$T/out")"
cmp "$T/w.bin" "$T/a/w.bin" || fail "pulled bytes differ"
qrun 0 pull org/j:v1 -o "$T/a" "${P[@]}" --json
schema_keep pull "$T/out"
[ "$(pyj "all(f['already_present'] and f['fetched'] == 0 for f in j['files'])")" = True ] ||
    fail "second pull json: $(cat "$T/out")"
qrun 0 pull org/j:v1 -o "$T/a" "${P[@]}"
[ "$(cat "$T/out")" = "org/j@$MD" ] || fail "pull human output: $(cat "$T/out")"

# ---- card --json
qrun 0 card org/j:v1 "${P[@]}" --json
schema_keep card "$T/out"
[ "$(pyj "sorted(s['name'] for s in j['statement']['subject'])")" = "['c.json', 'w.bin']" ] ||
    fail "card json subjects: $(cat "$T/out")"
qrun 0 card org/j:v1 "${P[@]}"
grep -q '^# Model card: org/j:v1' "$T/out" || fail "card human output"

# ---- unsigned: refused by default, naming the option; pulled with --allow-unsigned and a warning
qrun 0 push org/u:v1 "$T/w.bin" --registry "$URL" --json
schema_keep push "$T/out"
[ "$(pyj "j['signed'], j['key_id'], j['bundle_manifest']")" = "False None None" ] || fail "unsigned push json"
mkdir "$T/u"
qrun 4 pull org/u:v1 -o "$T/u" "${P[@]}"
grep -q -- "--allow-unsigned" "$T/err" || fail "the refusal does not name --allow-unsigned: $(cat "$T/err")"
[ -z "$(ls -A "$T/u")" ] || fail "a refused pull left files"
qrun 0 pull org/u:v1 -o "$T/u" "${P[@]}" --allow-unsigned --json
schema_keep pull "$T/out"
[ "$(pyj "j['signed'], j['verified']")" = "False None" ] || fail "unsigned pull json: $(cat "$T/out")"
grep -q "WARNING: org/u@sha256:.* IS NOT SIGNED" "$T/err" || fail "no loud warning: $(cat "$T/err")"
cmp "$T/w.bin" "$T/u/w.bin" || fail "unsigned pull bytes"
# still checked against the manifest digest: a flipped byte is refused, nothing left
mkdir "$T/f"
start_proxy flip 1000
qrun 4 pull org/u:v1 -o "$T/f" --registry "$PURL" --policy "$T/policy.json" --allow-unsigned
stop_proxy
[ -z "$(ls -A "$T/f")" ] || fail "a tampered unsigned pull left files: $(ls -A "$T/f")"
# a signature that does not verify (untrusted key) is not "unsigned": refused even with --allow-unsigned
qrun 0 push org/o:v1 "$T/w.bin" --sign "$T/other" --registry "$URL"
mkdir "$T/o"
qrun 4 pull org/o:v1 -o "$T/o" "${P[@]}" --allow-unsigned
grep -q "no bundle verifies" "$T/err" || fail "untrusted message: $(cat "$T/err")"
[ -z "$(ls -A "$T/o")" ] || fail "an untrusted pull left files"
# the config file cannot switch it on
mkdir -p "$HOME/.config/quant"
printf 'allow-unsigned yes\n' >"$HOME/.config/quant/config"
qrun 2 pull org/u:v1 -o "$T/o" "${P[@]}"
grep -q "unknown key 'allow-unsigned'" "$T/err" || fail "config message: $(cat "$T/err")"
rm "$HOME/.config/quant/config"
schema_check_all
echo "ok"
