#!/usr/bin/env bash
# 510_oracle: llama.cpp as the oracle of the reference runtime. stories260K as an F32 GGUF, loaded by node-llama-cpp
# 3.21.1 (tests/llama/, prebuilt binaries, child process): its next-token probabilities after every token of a
# 200-token sequence sampled from the model must agree with `quant run --probs` within 1e-4 absolute, and the greedy
# continuations of 32 tokens must be identical. Both sides use an f32 KV cache (QD_ORACLE_KV=f16 compares f16).
#
# The GGUF comes from `quant quantize --type F32`, the engine's own GGUF writer.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
M=$ROOT/../shared/models/stories260K.bin
O=$ROOT/tests/llama
[ -f "$M" ] || { echo "../shared/models/stories260K.bin is absent"; exit 77; }
command -v node >/dev/null || { echo "node is not installed"; exit 77; }
[ -d "$O/node_modules/node-llama-cpp" ] || { echo "node-llama-cpp is not installed in tests/llama (make deps)"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/qd510.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$QUANT" quantize --in "$M" --type F32 --out "$T/m.gguf" 2>/dev/null || fail "quant quantize --type F32"
"$QUANT" validate --ref "$M" --variant-type q8_0 --seqs 1 --len 200 --save-set "$T/set.bin" --class 16bit \
    >/dev/null 2>&1
[ -s "$T/set.bin" ] || fail "no sampled sequence"
TOK=$(python3 - "$T/set.bin" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n, ns = struct.unpack("<II", b[12:20])
L = struct.unpack("<I", b[24:28])[0]
off = 24 + 4 * n
for _ in range(ns):
    nl = struct.unpack("<I", b[off + 8:off + 12])[0]
    off += 12 + ((nl + 3) & ~3)
print(",".join(str(x) for x in struct.unpack("<%dI" % L, b[off:off + 4 * L])))
PY
)
kv=${QD_ORACLE_KV:-f32}
"$QUANT" run --model "$M" --prompt "$TOK" --probs --tokens 32 --kv "$kv" > "$T/ours.json" || fail "quant run --probs"
QD_ORACLE_KV=$kv node "$O/probs.mjs" "$T/m.gguf" "$TOK" 32 > "$T/llama.json" || fail "llama.cpp (node-llama-cpp)"
python3 "$O/oracle_compare.py" "$T/ours.json" "$T/llama.json" 1e-4 || fail "runtime and llama.cpp disagree"
# greedy from BOS alone
"$QUANT" run --model "$M" --prompt 1 --probs --tokens 32 --kv "$kv" > "$T/o1.json" || fail "run from BOS"
QD_ORACLE_KV=$kv node "$O/probs.mjs" "$T/m.gguf" 1 32 > "$T/l1.json" || fail "llama.cpp from BOS"
python3 "$O/oracle_compare.py" "$T/o1.json" "$T/l1.json" 1e-4 || fail "from BOS: disagree"
