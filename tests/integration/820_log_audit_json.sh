#!/usr/bin/env bash
# --json of `quant log` (every subcommand, on a log made here by quant log itself) and of `quant audit` (offline over
# that log, and against a daemon with one pushed, signed variant): each output validates against its $defs in
# schemas/client.schema.json (the daemon's lineage against audit-lineage.schema.json, each query result against
# audit-query.schema.json $defs/entry), carries the same facts as the human output, and failures still exit with
# their codes, nothing on stdout. quant audit reindex --json on the stopped daemon's store too.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
. "$here/client_lib.sh"
command -v git >/dev/null || { echo "git not installed"; exit 77; }
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || "$PYTHON" -c 'import jsonschema' 2>/dev/null ||
    { echo "python3-jsonschema is not installed (make deps)"; exit 77; }
pyj() { "$PYTHON" -c "import json; j=json.load(open('$T/out')); print($1)"; }
J() { # J DEF ARGS...: quant ARGS must exit 0 with its JSON on stdout, kept for the schema check at the end
    local def=$1
    shift
    qrun 0 "$@"
    schema_keep "$def" "$T/out"
}
client_setup
L=$T/log.git
VT=https://quantd.dev/variant/v1
PRED=$here/../../schemas/examples/valid/variant-v1.q4_k_m.json
"$QUANT" key gen --out "$T/logk" >/dev/null || fail "key gen"
printf 'weights\n' >"$T/a.gguf"
qrun 0 sign --key "$T/good" --predicate-type $VT --predicate "$PRED" --out "$T/a.bundle" "$T/a.gguf"
MA=sha256:$(printf 'manifest-a' | sha256sum | cut -c1-64)
SRC=$("$PYTHON" -c "import json; print(json.load(open('$PRED'))['source']['digest'])")

# ---- quant log
J log_init log init "$L" --origin example.test/log --json
[ "$(pyj "j['dir'], j['origin']")" = "$L example.test/log" ] || fail "init json: $(cat "$T/out")"
qrun 6 log init "$L" --origin example.test/log --json
[ ! -s "$T/out" ] || fail "a failed init printed on stdout"
J log_append log publish "$L" --key "$T/logk" --name acme/llama --manifest $MA --bundle "$T/a.bundle" \
    --policy "$T/policy.json" --json
[ "$(pyj "j['kind'], j['index']")" = "publish 0" ] || fail "publish json: $(cat "$T/out")"
J log_append log tag "$L" --key "$T/logk" --name acme/llama:q4 --manifest $MA --json
[ "$(pyj "j['index'], j['head'] == '$(git --git-dir="$L" rev-parse main)'")" = "1 True" ] || fail "tag json"
J log_append log key-add "$L" --key "$T/logk" --subject "$T/good.pub" --json
J log_append log key-revoke "$L" --key "$T/logk" --subject "$T/other.pub" --json
HEAD=$(pyj "j['head']")
[ "$(pyj "j['kind'], j['index']")" = "key-revoke 3" ] || fail "key-revoke json: $(cat "$T/out")"

J log_show log show "$L" --json
[ "$(pyj "j['size'], ' '.join(e['kind'] for e in j['entries'])")" = "4 publish tag key-add key-revoke" ] ||
    fail "show json: $(cat "$T/out")"
J log_show log show "$L" --index 1 --json
"$QUANT" log show "$L" --index 1 >"$T/entry1.txt" || fail "log show"
[ "$(pyj "json.dumps(j['entries'][0], sort_keys=True, separators=(',', ':'))")" = "$(cat "$T/entry1.txt")" ] ||
    fail "show --index json vs text"
qrun 3 log show "$L" --index 9 --json
[ ! -s "$T/out" ] || fail "a failed show printed on stdout"

J log_note log checkpoint "$L" --key "$T/logk" --json
ROOT=$(pyj "j['root']")
"$QUANT" log checkpoint "$L" --key "$T/logk" >"$T/cp.note" || fail "checkpoint"
"$PYTHON" -c "import json,sys; sys.exit(json.load(open('$T/out'))['note'] != open('$T/cp.note').read())" ||
    fail "checkpoint json note differs from the text note"
[ "$(pyj "j['size'], j['origin']")" = "4 example.test/log" ] || fail "checkpoint json"
NOW=1800000000
J log_note log timestamp "$L" --key "$T/logk" --now $NOW --ttl 300 --json
"$PYTHON" -c "import json; open('$T/ts.note', 'w').write(json.load(open('$T/out'))['note'])"
J log_vkey log vkey "$L" --key "$T/logk" --json
[ "$(pyj "j['vkey']")" = "$("$QUANT" log vkey "$L" --key "$T/logk")" ] || fail "vkey json vs text"
J log_allowed_signers log allowed-signers --key "$T/logk" --json
[ "$(pyj "j['line']")" = "$("$QUANT" log allowed-signers --key "$T/logk")" ] || fail "allowed-signers json vs text"
J log_inclusion log prove "$L" --index 1 --json
[ "$(pyj "j['root'] == '$ROOT', j['leaf']")" = "True $(printf '\0%s' "$(cat "$T/entry1.txt")" | sha256sum | cut -c1-64)" ] ||
    fail "prove json: $(cat "$T/out")"
J log_consistency log consistency "$L" --from 2 --json
[ "$(pyj "j['from'], j['size'], j['root'] == '$ROOT'")" = "2 4 True" ] || fail "consistency json"

J log_verify log verify "$L" --log-key "$T/logk.pub" --policy "$T/policy.json" --state "$T/st" --json
[ "$(pyj "j['size'], j['head'], j['root']")" = "4 $HEAD $ROOT" ] || fail "verify json: $(cat "$T/out")"
qrun 4 log verify "$L" --log-key "$T/good.pub" --json
[ ! -s "$T/out" ] && grep -q 'another key' "$T/err" || fail "a refused verify: stdout $(cat "$T/out"), stderr $(cat "$T/err")"
J log_check_timestamp log check-timestamp "$T/ts.note" --log-key "$T/logk.pub" --origin example.test/log \
    --state "$T/fresh" --now $((NOW + 5)) --match "$T/st" --json
[ "$(pyj "j['size'], j['issued'], j['expires']")" = "4 $NOW $((NOW + 300))" ] || fail "check-timestamp json"
qrun 4 log check-timestamp "$T/ts.note" --log-key "$T/logk.pub" --origin example.test/log --state "$T/fresh" \
    --now $((NOW + 301)) --json
[ ! -s "$T/out" ] && grep -q freeze "$T/err" || fail "an expired timestamp: $(cat "$T/out") $(cat "$T/err")"

git init -q --bare "$T/mirror.git" || fail "git init"
J log_fetch log fetch "file://$L" "$T/mirror.git" --json
[ "$(pyj "j['head'], j['ref']")" = "$HEAD refs/heads/main" ] || fail "fetch json: $(cat "$T/out")"
[ "$(git --git-dir="$T/mirror.git" rev-parse main)" = "$HEAD" ] || fail "fetch did not write the ref"

# ---- quant audit over the log (offline)
J audit_log_query audit query "$L" --json
[ "$(pyj "len(j), j[0]['manifest'], j[0]['source'], j[0]['index']")" = "1 $MA $SRC 0" ] || fail "audit query: $(cat "$T/out")"
J audit_log_query audit query "$L" --method gptq --json
[ "$(cat "$T/out")" = "[]" ] || fail "a query matching nothing: $(cat "$T/out")"
J audit_log_lineage audit lineage "$L" $MA --json
[ "$(pyj "j['direction'], [n['digest'] for n in j['nodes']] == ['$MA', '$SRC'], j['nodes'][1]['record']")" = "up True None" ] ||
    fail "audit lineage json: $(cat "$T/out")"

# ---- quant audit against a daemon: one signed variant pushed
start_daemon --auth=false
qrun 0 push org/v:q4 "$T/a.gguf" --sign "$T/good" --predicate-type $VT --predicate "$PRED" --registry "$URL"
MD=$(sed 's/.*@//' "$T/out")
J audit_query audit query --registry "$URL" --json
cp "$T/out" "$T/q.json"
[ "$(pyj "j['count'], j['results'][0]['manifest'], j['results'][0]['repository'], j['next_cursor']")" = "1 $MD org/v None" ] ||
    fail "audit query json: $(cat "$T/out")"
qrun 0 audit query --registry "$URL" --format json
cmp -s "$T/out" "$T/q.json" || fail "--json and --format json differ"
"$PYTHON" -c "import json; print(json.dumps(json.load(open('$T/q.json'))['results'][0]))" >"$T/entry.json"
qrun 0 audit lineage "$MD" --registry "$URL" --json
cp "$T/out" "$T/lin.json"
[ "$(pyj "j['digest'], j['direction'], len(j['nodes']) >= 2, j['nodes'][1]['digest']")" = "$MD up True $SRC" ] ||
    fail "audit lineage json: $(cat "$T/out")"
qrun 3 audit lineage sha256:$(printf x | sha256sum | cut -c1-64) --registry "$URL" --json
[ ! -s "$T/out" ] || fail "an unknown lineage digest printed on stdout"
stop_daemon
J audit_reindex audit reindex --store "$T/store" --json
[ "$(pyj "j['indexed'], j['rebuilt'], j['before'] == j['after']")" = "1 False True" ] || fail "reindex json: $(cat "$T/out")"

PY=$PYTHON
/usr/bin/python3 -c 'import jsonschema' 2>/dev/null && PY=/usr/bin/python3
S=$here/../../schemas
"$PY" "$here/../lib/check_schema.py" "$S/audit-lineage.schema.json" <"$T/lin.json" || fail "lineage vs audit-lineage.schema.json"
"$PY" "$here/../lib/check_schema.py" "$S/audit-query.schema.json" entry <"$T/entry.json" ||
    fail "query result vs audit-query.schema.json \$defs/entry"
# the check can fail: an output with a field too many is refused
"$PYTHON" -c "import json; j=json.load(open('$T/lin.json')); j['extra']=1; print(json.dumps(j))" >"$T/bad.json"
! "$PY" "$here/../lib/check_schema.py" "$S/audit-lineage.schema.json" <"$T/bad.json" 2>/dev/null || fail "a bad lineage passed"
schema_keep log_verify "$T/bad.json" # (a lineage is no log_verify: schema_check_all must refuse it, checked below)
if (schema_check_all) >/dev/null 2>&1; then fail "schema_check_all accepted a wrong shape"; fi
rm "$T/schema-kept/$SCHEMA_KEPT.log_verify.json"
schema_check_all
echo "ok"
