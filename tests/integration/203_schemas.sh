#!/usr/bin/env bash
# 203_schemas.sh - schemas/ checked with python3-jsonschema: valid examples pass, invalid ones fail; what quant
# writes (policies, signed predicates) passes its schema; and our C policy parser refuses the invalid policies too.
PY_NEEDS=jsonschema . "$(dirname "$0")/verify_lib.sh"
S=$HERE/../../schemas
if ! "$PY" -c 'import jsonschema' 2>/dev/null; then
    echo "skip: python3-jsonschema is not installed (make deps)"
    exit 77
fi
CHK="$PY $HERE/check_schemas.py"

expect 0 'ok   invalid/policy.unknown-field.json' $CHK examples "$S"
for f in "$S"/examples/invalid/policy.*.json; do
    expect 2 'policy: ' "$Q" policy check "$f"
done

"$Q" key gen --out k >/dev/null
"$Q" key gen --out k2 --type ecdsa-p256 >/dev/null
"$Q" policy new --trust k.pub --trust k2.pub --namespace 'acme/*' --threshold 2 --valid-until 2030-01-01T00:00:00Z \
    --require-predicate https://quantd.dev/variant/v1 --require-validation-pass --out p.json
expect 0 '' $CHK doc "$S/policy.schema.json" p.json

head -c 1000 /dev/urandom >m.gguf
"$Q" policy new --trust k.pub --out k.policy
for ex in variant-v1.q4_k_m checkpoint-v1.hf; do
    kind=${ex%%.*}
    "$Q" sign --key k --predicate-type "https://quantd.dev/${kind%-v1}/v1" --predicate "$S/examples/valid/$ex.json" \
        --out "$ex.bundle" m.gguf 2>/dev/null
    "$Q" verify --policy k.policy --bundle "$ex.bundle" --print-payload m.gguf >"$ex.stmt" || n_fail=$((n_fail + 1))
    $PY -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["predicate"], open(sys.argv[2], "w"))' \
        "$ex.stmt" "$ex.pred"
    expect 0 '' $CHK doc "$S/predicate-$kind.schema.json" "$ex.pred"
done
"$Q" sign --key k --predicate-type https://model_signing/signature/v1.0 --out ms.bundle m.gguf 2>/dev/null
"$Q" verify --policy k.policy --bundle ms.bundle --print-payload m.gguf >ms.stmt || n_fail=$((n_fail + 1))
$PY -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["predicate"], open(sys.argv[2], "w"))' ms.stmt ms.pred
expect 0 '' $CHK doc "$S/predicate-model-signing-v1.0.schema.json" ms.pred
# and a predicate that breaks its schema is caught by the checker (the oracle can fail)
expect 1 'FAIL' $CHK doc "$S/predicate-variant-v1.schema.json" "$S/examples/invalid/variant-v1.bad-verdict.json"
finish
