#!/usr/bin/env bash
# 451_quant_inspect_quantize_cli.sh - `quant inspect` on the three formats (text and --json), `quant quantize`
# summary line, identical output for -t 1 and -t 3, and exit codes for bad input.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
SRC=$ROOT/../shared/models/stories260K.bin
work=$(mktemp -d "${TMPDIR:-/tmp}/qd451.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$TOOLS/gen_ckpt" --out "$work/m.gguf" --seed 2 --layers 2 --dim 64 --ff 128 --heads 4 --kv-heads 2 || fail gen gguf
mkdir -p "$work/sh"
"$TOOLS/gen_ckpt" --out "$work/sh" --format safetensors --shards 2 --seed 2 --layers 2 --dim 64 --ff 128 \
    --heads 4 --kv-heads 2 --dtype f16 || fail gen safetensors

# inspect: text and JSON for GGUF and sharded safetensors
"$QUANT" inspect "$work/m.gguf" >"$work/i.txt" || fail "inspect gguf"
grep -q "^$work/m.gguf: gguf v3, alignment 32" "$work/i.txt" || fail "inspect header: $(head -n 1 "$work/i.txt")"
grep -q "21 tensors" "$work/i.txt" || fail "inspect tensor count"
"$QUANT" inspect --json "$work/sh" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "safetensors", j["format"]
assert j["tensor_count"] == 21
q = [t for t in j["tensors"] if t["name"] == "blk.1.attn_q.weight"][0]
assert q["source_name"] == "model.layers.1.self_attn.q_proj.weight" and q["type"] == "f16" and q["shape"] == [64, 64]
assert q["permute_heads"] == 4
assert j["hparams"]["n_head_kv"] == 2
' || fail "inspect --json safetensors"
if [ -f "$SRC" ]; then
    "$QUANT" inspect --json "$SRC" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "llama2c" and j["tensor_count"] == 48 and j["n_elements"] == 292800
assert j["hparams"]["n_vocab"] == 512 and j["hparams"]["has_tokenizer"] is False
' || fail "inspect --json llama2c"
fi

# quantize: summary line, thread-count independence, safetensors -> GGUF
"$QUANT" quantize --in "$work/sh" --type F16 --out "$work/a.gguf" -t 1 >"$work/s1.txt" || fail "quantize -t 1"
"$QUANT" quantize --in "$work/sh" --type F16 --out "$work/b.gguf" -t 3 >"$work/s3.txt" || fail "quantize -t 3"
cmp "$work/a.gguf" "$work/b.gguf" || fail "-t 1 and -t 3 differ"
grep -Eq "F16 [0-9]+ bytes .* bits per weight, 21 tensors .* s, 1 threads, kernels " "$work/s1.txt" || fail "summary: $(cat "$work/s1.txt")"
"$QUANT" quantize --in "$work/m.gguf" --type BF16 --out "$work/c.gguf" -t 2 >/dev/null || fail "quantize bf16"
"$QUANT" inspect "$work/c.gguf" | grep -q "general.file_type .* 32" || fail "file_type of BF16"

# exit codes
"$QUANT" inspect "$work/nope.gguf" 2>/dev/null; [ $? -eq 3 ] || fail "missing file must exit 3"
head -c 700 "$work/m.gguf" >"$work/t.gguf"
"$QUANT" inspect "$work/t.gguf" 2>"$work/e.txt"; rc=$?
[ $rc -eq 4 ] || fail "truncated GGUF must exit 4 (got $rc)"
grep -q "truncated\|past the end\|ends before" "$work/e.txt" || fail "truncated message: $(cat "$work/e.txt")"
"$QUANT" quantize --in "$work/m.gguf" --type Q4_K_X --out "$work/x.gguf" 2>/dev/null; [ $? -eq 2 ] || fail "bad recipe must exit 2"
"$QUANT" quantize --in "$work/m.gguf" --out "$work/x.gguf" 2>/dev/null; [ $? -eq 2 ] || fail "missing --type must exit 2"
[ ! -e "$work/x.gguf" ] && [ ! -e "$work/x.gguf.part" ] || fail "a failed quantize left a file"
echo ok
