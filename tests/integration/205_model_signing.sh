#!/usr/bin/env bash
# 205_model_signing.sh - our OpenSSF model-signing bundles (P-256 keys: model-signing's key mode is EC only) pass
# the checks the model-signing verifier makes, re-done with python3-cryptography in model_signing_check.py: hint =
# SHA-256 of the SPKI PEM, ECDSA over PAE, statement layout, root digest, files of the model directory.
PY_NEEDS=cryptography . "$(dirname "$0")/verify_lib.sh"
if ! "$PY" -c 'import cryptography' 2>/dev/null; then
    echo "skip: python3-cryptography is not installed (make deps)"
    exit 77
fi
CHK="$PY $HERE/model_signing_check.py"
mkdir model
head -c 4000 /dev/urandom >model/model.safetensors
echo '{"architectures":["LlamaForCausalLM"]}' >model/config.json
printf 'tok' >model/tokenizer.json
"$Q" key gen --out ec --type ecdsa-p256 >/dev/null
"$Q" sign --key ec --predicate-type https://model_signing/signature/v1.0 --name model --out model.sig \
    model/model.safetensors model/config.json model/tokenizer.json 2>/dev/null
expect 0 '^ok: accepted' $CHK model.sig ec.pub model
"$Q" policy new --trust ec.pub --out ec.policy
expect 0 '^verified' "$Q" verify --policy ec.policy --bundle model.sig model/*
# the checker can reject: another key, a changed file
"$Q" key gen --out ec2 --type ecdsa-p256 >/dev/null
expect 1 'key mismatch' $CHK model.sig ec2.pub model
printf 'x' >>model/config.json
expect 1 'do not match' $CHK model.sig ec.pub model
expect 4 'subject config.json: digest mismatch' "$Q" verify --policy ec.policy --bundle model.sig model/*

# a model directory with a subfolder: names are paths relative to --root, as model-signing names them
mkdir -p m2/tokenizer && head -c 3000 /dev/urandom >m2/weights.bin && printf 'v' >m2/tokenizer/vocab.txt
"$Q" sign --key ec --predicate-type https://model_signing/signature/v1.0 --name m2 --root m2 --out m2.sig \
    m2/weights.bin m2/tokenizer/vocab.txt 2>/dev/null
expect 0 '^ok: accepted' $CHK m2.sig ec.pub m2
expect 0 '^verified: 2 file' "$Q" verify --policy ec.policy --bundle m2.sig --root m2 m2/weights.bin m2/tokenizer/vocab.txt
expect 4 'subject tokenizer/vocab.txt: no file of that name' \
    "$Q" verify --policy ec.policy --bundle m2.sig m2/weights.bin m2/tokenizer/vocab.txt
expect 2 'is not inside --root' "$Q" verify --policy ec.policy --bundle m2.sig --root m2 model/config.json
finish
