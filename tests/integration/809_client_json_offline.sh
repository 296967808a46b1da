#!/usr/bin/env bash
# --json of the offline commands (kernels, version, key show, policy new|check, sign, verify, token create|list,
# inspect, quantize (GGUF and Hugging Face layouts), rows, run): each output validates against its $defs in
# schemas/client.schema.json, carries the same facts as the human output, and the human output is unchanged.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/common.sh"
MODEL=$SHARED/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }
PY=$(schema_python) || { echo "python3-jsonschema is not installed (make deps)"; exit 77; }
W=$WORK
N=0
mkdir "$W/kept"
J() { # J DEF CMD...: run quant CMD (exit 0); stdout stays in $W/out and is kept for the schema check at the end
    local def=$1
    shift
    "$QUANT" "$@" >"$W/out" 2>"$W/err" || { cat "$W/err" >&2; fail "quant $* failed"; }
    N=$((N + 1))
    cp "$W/out" "$W/kept/$N.$def.json"
}
check_all() { # every kept output against its $defs, in one python run (importing jsonschema is slow)
    "$PY" - "$ROOT/schemas/client.schema.json" "$W/kept" <<'PY' || fail "an output does not match its schema"
import json, os, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
for f in sorted(os.listdir(sys.argv[2]), key=lambda s: int(s.split(".")[0])):
    d = f.split(".")[1]
    try:
        jsonschema.validate(json.load(open(os.path.join(sys.argv[2], f))), {"$ref": "#/$defs/" + d, "$defs": schema["$defs"]},
                            cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        sys.exit("%s: schema violation of $defs/%s: %s at %s" % (f, d, e.message, list(e.absolute_path)))
print("%d outputs match schemas/client.schema.json" % len(os.listdir(sys.argv[2])))
PY
}
pyj() { "$PY" -c "import json; j=json.load(open('$W/out')); print($1)"; }

J kernels kernels --json
[ "$(pyj "j['kernels']")" = "$("$QUANT" kernels | sed -n 's/^kernels: //p')" ] || fail "kernels json vs text"
J version version --json
[ "quant $(pyj "j['version']")" = "$("$QUANT" version)" ] || fail "version json vs text"

J key_show key gen --out "$W/k" --json
KID=$(pyj "j['id']")
J key_show key show "$W/k" --json
[ "$(pyj "j['id'], j['private']")" = "$KID True" ] || fail "key show json"
J key_export key export "$W/k" --format openssh --json
[ "$(pyj "j['public_key']")" = "$("$QUANT" key export "$W/k" --format openssh)" ] || fail "key export json"
J key_show key import "$W/k.pub" --out "$W/imported" --json
[ "$(pyj "j['id'], j['private']")" = "$KID False" ] || fail "key import json"
J policy_new policy new --trust "$W/k.pub" --out "$W/p.json" --json
[ "$(pyj "j['keys'][0]")" = "$KID" ] || fail "policy new json key"
J policy_check policy check "$W/p.json" --json
expect_exit 0 "$QUANT" policy check "$W/p.json"
[ "$(cat "$W/out")" = ok ] || fail "policy check human output changed"
expect_exit 2 "$QUANT" policy new --trust "$W/k.pub" --out - --json

head -c 5000 /dev/urandom >"$W/f.bin"
echo '{"note":"x"}' >"$W/pred.json"
J sign sign --key "$W/k" --predicate-type https://example.com/p/v1 --predicate "$W/pred.json" --out "$W/b.json" \
    "$W/f.bin" --json
[ "$(pyj "j['files'][0]['digest']")" = "sha256:$(sha256sum "$W/f.bin" | cut -d' ' -f1)" ] || fail "sign json digest"
J verify verify --policy "$W/p.json" --bundle "$W/b.json" "$W/f.bin" --json
[ "$(pyj "j['keys'][0]")" = "$KID" ] || fail "verify json key"

J token_create token create --store "$W/store" --name t1 --scopes 'pull:*' --json
J token_list token list --store "$W/store" --json
[ "$(pyj "j[0]['name']")" = t1 ] || fail "token list json"
TID=$(pyj "j[0]['id']")
J token_revoke token revoke "$TID" --store "$W/store" --json
[ "$(pyj "j['revoked']")" = "$TID" ] || fail "token revoke json"

J inspect inspect "$MODEL" --json
J quantize quantize --in "$MODEL" --type Q8_0 --out "$W/m.gguf" --json
[ "$(pyj "j['file_bytes']")" = "$(stat -c %s "$W/m.gguf")" ] || fail "quantize json file_bytes"
J inspect inspect "$W/m.gguf" --json
[ "$(pyj "j['format']")" = gguf ] || fail "inspect gguf format: $(pyj "j['format']")"
expect_exit 0 "$QUANT" quantize --in "$MODEL" --type Q8_0 --out "$W/m2.gguf"
grep -q "^$W/m2.gguf: Q8_0 " "$W/out" || fail "quantize human output changed: $(cat "$W/out")"
if "$QUANT" quantize --in "$MODEL" --format bnb --type nf4 --out "$W/hf" >/dev/null 2>&1; then
    rm -rf "$W/hf"
    J quantize_hf quantize --in "$MODEL" --format bnb --type nf4 --out "$W/hf" --json
fi

"$PY" -c "import struct,random; random.seed(1); open('$W/rows.f32','wb').write(struct.pack('<512f', *[random.uniform(-1,1) for _ in range(512)]))"
J rows rows quantize --type q8_0 --cols 256 "$W/rows.f32" "$W/rows.q8" --json
[ "$(pyj "j['rows'], j['bytes_out']")" = "2 $(stat -c %s "$W/rows.q8")" ] || fail "rows json"

J run run --model "$MODEL" --tokens 5 --json
[ "$(pyj "' '.join(map(str, j['greedy']))")" = "$("$QUANT" run --model "$MODEL" --tokens 5)" ] || fail "run json vs text"
J run run --model "$MODEL" --tokens 3 --prompt 1,2 --probs
check_all
echo "ok"
