#!/usr/bin/env bash
# 450_llama_load.sh - GGUF files `quant quantize` writes from ../shared/models/stories260K.bin load and generate in
# llama.cpp itself (node-llama-cpp 3.21.1's prebuilt binary, CPU only, never downloading or building).
#
# For every recipe quant offers: quantize (a recipe this build cannot make, e.g. a type without kernels, prints
# "unsupported" and is skipped), then in a separate node process per file load it, greedy-decode 32 tokens from BOS,
# and check that llama.cpp reports the vocabulary size and tensor count `quant inspect` reports for the file.
# Skips (77) without node, without tests/llama/node_modules (run `make deps`), or without the shared model.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
SRC=$ROOT/../shared/models/stories260K.bin
command -v node >/dev/null || { echo "skip: node is not installed"; exit 77; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "skip: node-llama-cpp 3.21.1 needs node >= 20 (have $(node --version))"; exit 77; }
[ -d "$ROOT/tests/llama/node_modules/node-llama-cpp" ] || { echo "skip: tests/llama/node_modules is absent (make deps)"; exit 77; }
[ -f "$SRC" ] || { echo "skip: ../shared/models/stories260K.bin is absent"; exit 77; }
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

work=$(mktemp -d "${TMPDIR:-/tmp}/qd450.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Each file loads in its own node process (about 10 s each here), so `make test` takes one recipe of every kind of
# choice (plain types, legacy blocks with and without the refused-tensor fallback, each K-quant family, the
# IQ4s); QD_LLAMA_ALL=1 runs all of them.
recipes="F32 F16 Q8_0 Q4_0 Q2_K Q3_K_M Q4_K_M Q5_K_S Q6_K IQ4_NL IQ4_XS"
[ -n "${QD_LLAMA_ALL:-}" ] && recipes="F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS"
# the oracle for F32: a plain-Python llama2.c forward pass of the source checkpoint
ref=$(python3 "$ROOT/tests/llama/llama2c_ref.py" "$SRC" 32) || { echo "FAIL: reference decode"; exit 1; }
echo "reference greedy ids (llama2.c forward in Python): $ref"
loaded=0 skipped=() failed=0
for r in $recipes; do
    out=$work/stories-$r.gguf
    if ! "$QUANT" quantize --in "$SRC" --type "$r" --out "$out" -t 2 >"$work/q.log" 2>&1; then
        if grep -q "unsupported" "$work/q.log"; then
            skipped+=("$r")
            continue
        fi
        echo "FAIL $r: quant quantize failed:"; cat "$work/q.log"; failed=$((failed + 1)); continue
    fi
    want=$("$QUANT" inspect --json "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["hparams"]["n_vocab"], j["tensor_count"])')
    # a child process per file: llama.cpp may abort the whole process on a file it rejects
    if ! timeout 300 node "$ROOT/tests/llama/load_gguf.mjs" "$out" 32 >"$work/n.out" 2>"$work/n.err"; then
        echo "FAIL $r: llama.cpp could not load or run the file:"; tail -n 20 "$work/n.err"; failed=$((failed + 1)); continue
    fi
    got=$(tail -n 1 "$work/n.out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
toks = j["tokens"]
assert len(toks) == 32, "decoded %d tokens" % len(toks)
assert all(0 <= t < j["vocab"] for t in toks), "token id out of range"
print(j["vocab"], j["tensors"])') || { echo "FAIL $r: bad result $(cat "$work/n.out")"; failed=$((failed + 1)); continue; }
    if [ "$got" != "$want" ]; then
        echo "FAIL $r: llama.cpp reports vocab/tensors '$got', quant inspect '$want'"; failed=$((failed + 1)); continue
    fi
    if [ "$r" = F32 ]; then
        ids=$(tail -n 1 "$work/n.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
        if [ "$ids" != "$ref" ]; then
            echo "FAIL F32: llama.cpp decoded $ids, the reference $ref"; failed=$((failed + 1)); continue
        fi
    fi
    echo "ok   $r: $(head -n 1 "$work/q.log" | sed 's/^[^:]*: //')"
    echo "     llama.cpp: vocab/tensors $got, tokens $(tail -n 1 "$work/n.out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"][:12])')..."
    loaded=$((loaded + 1))
done
[ ${#skipped[@]} -gt 0 ] && echo "not made by this build (unsupported): ${skipped[*]}"
echo "$loaded recipe(s) loaded and generated in llama.cpp, $failed failed"
[ "$failed" -eq 0 ] && [ "$loaded" -ge 1 ]
