#!/usr/bin/env bash
# 520_validate_gguf: real GGUF variants written by `quant quantize` from stories260K, put into a store and validated
# by digest (the bytes validated are the stored bytes); JSON report against its schema; Q4_K_M's mean KLD above
# Q8_0's; the variant predicate against schemas/predicate-variant-v1.schema.json and signed by `quant sign`; bad
# variants (truncated, garbage, another shape) give clear errors and exit codes.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
M=$ROOT/../shared/models/stories260K.bin
if [ ! -f "$M" ]; then
    echo "../shared/models/stories260K.bin is absent"
    exit 77
fi
if ! python3 -c 'import jsonschema' 2>/dev/null; then
    echo "python3-jsonschema is absent"
    exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/qd520.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect() { # exit-code pattern-in-stderr command...
    local want=$1 pat=$2; shift 2
    "$@" >"$T/o" 2>"$T/e"
    local rc=$?
    [ "$rc" = "$want" ] || fail "$* exited $rc, want $want: $(cat "$T/e")"
    grep -q -- "$pat" "$T/e" || fail "$*: stderr lacks '$pat': $(cat "$T/e")"
}
S=$T/store
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$1" "$2"; }

for r in Q8_0 Q4_K_M; do
    "$QUANT" quantize --in "$M" --type $r --out "$T/$r.gguf" 2>/dev/null >/dev/null || fail "quantize $r"
done
ref=$("$QUANT" store put --store "$S" "$M" | grep -o 'sha256:[0-9a-f]*' | head -n 1)
q8=$("$QUANT" store put --store "$S" "$T/Q8_0.gguf" | grep -o 'sha256:[0-9a-f]*' | head -n 1)
q4=$("$QUANT" store put --store "$S" "$T/Q4_K_M.gguf" | grep -o 'sha256:[0-9a-f]*' | head -n 1)
[ -n "$ref" ] && [ -n "$q8" ] && [ -n "$q4" ] || fail "store put"
[ "$q8" = "sha256:$(sha256sum "$T/Q8_0.gguf" | cut -c1-64)" ] || fail "q8 digest"

cat > "$T/policy.json" <<'P'
{"version": 1, "classes": [
  {"name": "8bit", "min_bits": 7.5, "max_mean_kld": 0.06, "min_tensor_sqnr_db": 30},
  {"name": "4bit", "min_bits": 4, "max_mean_kld": 0.5, "min_tensor_sqnr_db": 14}]}
P
# Q8_0 by digest: passes the test policy; the sampled set goes into the store and is reused for Q4_K_M
export SOURCE_DATE_EPOCH=1790000000
"$QUANT" validate --ref "$ref" --variant "$q8" --store "$S" --seqs 8 --len 128 --policy "$T/policy.json" --json \
    --predicate "$T/q8.pred.json" --target-hardware cpu-x86_64,cpu-aarch64 --builder quantd@test \
    --source-name stories/260k:base > "$T/q8.json" || fail "Q8_0 should pass the test policy: $(cat "$T/q8.json")"
set_d=$(jget "$T/q8.json" set.digest)
"$QUANT" validate --ref "$ref" --variant "$q4" --store "$S" --set "$set_d" --policy "$T/policy.json" --json \
    --predicate "$T/q4.pred.json" > "$T/q4.json"
rc=$?
[ $rc = 9 ] || fail "Q4_K_M should fail the 4bit class (mean KLD > 0.5) with exit 9, got $rc"
for f in q8 q4; do
    python3 "$ROOT/tests/lib/check_schema.py" "$ROOT/schemas/validation-report.schema.json" < "$T/$f.json" ||
        fail "$f report does not match its schema"
    python3 "$ROOT/tests/lib/check_schema.py" "$ROOT/schemas/predicate-variant-v1.schema.json" < "$T/$f.pred.json" ||
        fail "$f predicate does not match its schema"
done
python3 - "$T" "$ref" "$q8" "$q4" "$set_d" <<'PY' || fail "report / predicate contents"
import json, sys
t, ref, q8, q4, set_d = sys.argv[1:]
r8, r4 = (json.load(open(f"{t}/{n}.json")) for n in ("q8", "q4"))
p8, p4 = (json.load(open(f"{t}/{n}.pred.json")) for n in ("q8", "q4"))
k8, k4 = r8["kld"]["mean"], r4["kld"]["mean"]
print(f"Q8_0 mean KLD {k8:.5f} (bpw {r8['variant_bpw']:.3f}), Q4_K_M mean KLD {k4:.5f} (bpw {r4['variant_bpw']:.3f})")
assert 0 < k8 < k4, (k8, k4)
assert r8["variant"] == {"digest": q8, "format": "gguf"}, r8["variant"]
assert r8["reference"] == {"digest": ref, "format": "llama2c"}, r8["reference"]
assert r4["set"]["digest"] == set_d and not r4["set"]["sampled"]
# per-tensor metrics by GGUF name, the variant dequantized: output.weight (written by quantize) vs the tied embedding
names = {x["name"]: x for x in r4["tensors"]}
assert "output.weight" in names and "blk.4.ffn_down.weight" in names, list(names)[:5]
assert names["blk.4.ffn_down.weight"]["variant_type"] == "f16", names["blk.4.ffn_down.weight"]
for p, r, d, v in ((p8, r8, q8, "pass"), (p4, r4, q4, "fail")):
    assert p["source"]["digest"] == ref
    val = p["validation"]
    assert val["reference_digest"] == ref and val["set_digest"] == set_d and val["verdict"] == v, val
    assert abs(val["metrics"]["kld_mean"] - r["kld"]["mean"]) < 1e-9 * max(1, r["kld"]["mean"])
    assert abs(val["metrics"]["top1_agreement"] - r["same_top"]["fraction"]) < 1e-9
    assert val["metrics"]["tokens"] == r["tokens"], (val["metrics"], r["tokens"])
    assert p["calibration"] == {"class": "none"}
    assert p["converter"]["name"] == "quantd" and p["converter"]["kernel"] in ("scalar", "avx2", "avx512")
assert p8["recipe"]["format"] == "Q8_0" and p8["recipe"]["weight_bits"] == 8 and p8["recipe"]["method"] == "rtn"
assert p4["recipe"]["format"] == "Q4_K_M" and p4["recipe"]["method"] == "k-quant" and p4["recipe"]["weight_bits"] == 4
assert {"tensor": "blk.*.ffn_down.weight", "format": "F16"} in p4["recipe"]["overrides"], p4["recipe"]["overrides"]
assert p8["validation"]["thresholds"]["kld_mean_max"] == 0.06 and p4["validation"]["thresholds"]["kld_mean_max"] == 0.5
assert p8["target_hardware"] == ["cpu-x86_64", "cpu-aarch64"] and p8["builder"] == {"id": "quantd@test"}
assert p8["source"]["name"] == "stories/260k:base" and p8["created_at"] == "2026-09-21T14:13:20Z", p8["created_at"]
PY
# by path the numbers are the same as by digest
"$QUANT" validate --ref "$M" --variant "$T/Q8_0.gguf" --store "$S" --set "$set_d" --policy "$T/policy.json" --json \
    > "$T/q8p.json" || fail "Q8_0 by path"
[ "$(jget "$T/q8.json" kld.mean)" = "$(jget "$T/q8p.json" kld.mean)" ] || fail "path and digest differ"

# the predicate is signable as a variant statement over the validated bytes
"$QUANT" key gen --out "$T/k" >/dev/null 2>&1 || fail "key gen"
"$QUANT" sign --key "$T/k" --predicate-type https://quantd.dev/variant/v1 --predicate "$T/q8.pred.json" \
    --out "$T/q8.bundle" "$T/Q8_0.gguf" >/dev/null 2>"$T/e" || fail "sign: $(cat "$T/e")"
python3 - "$T/q8.bundle" "$q8" <<'PY' || fail "bundle"
import base64, json, sys
b = json.load(open(sys.argv[1]))
env = b.get("dsseEnvelope") or b
st = json.loads(base64.b64decode(env["payload"]))
assert st["predicateType"] == "https://quantd.dev/variant/v1"
assert "sha256:" + st["subject"][0]["digest"]["sha256"] == sys.argv[2]
assert st["predicate"]["validation"]["verdict"] == "pass"
PY

# quant run reads GGUF too: the F32 GGUF of the checkpoint decodes the same 32 tokens
"$QUANT" quantize --in "$M" --type F32 --out "$T/F32.gguf" >/dev/null 2>&1 || fail "quantize F32"
[ "$("$QUANT" run --model "$M" --tokens 32)" = "$("$QUANT" run --model "$T/F32.gguf" --tokens 32)" ] ||
    fail "F32 GGUF greedy differs from the checkpoint's"

# bad variants
head -c 4000 "$T/Q4_K_M.gguf" > "$T/trunc.gguf"
expect 4 'trunc.gguf' "$QUANT" validate --ref "$M" --variant "$T/trunc.gguf" --seqs 2 --len 16
python3 -c 'import sys; sys.stdout.buffer.write(b"GGUF\x03\0\0\0" + bytes((i * 151 + 7) % 256 for i in range(8192)))' \
    > "$T/junk.gguf"
bad=$("$QUANT" store put --store "$S" "$T/junk.gguf" | grep -o 'sha256:[0-9a-f]*' | head -n 1)
"$QUANT" validate --ref "$M" --variant "$bad" --store "$S" --seqs 2 --len 16 >/dev/null 2>"$T/e"
rc=$?
[ $rc = 4 ] || fail "garbage GGUF by digest exited $rc, want 4: $(cat "$T/e")"
grep -q "$bad" "$T/e" || fail "the error does not name the digest: $(cat "$T/e")"
expect 3 'not found\|No such\|no blob' "$QUANT" validate --ref "$M" --store "$S" --seqs 2 --len 16 \
    --variant sha256:0000000000000000000000000000000000000000000000000000000000000000
if [ -x "$TOOLS/gen_ckpt" ]; then
    "$TOOLS/gen_ckpt" --out "$T/other.gguf" --seed 3 --layers 5 --dim 64 --ff 128 --heads 8 --kv-heads 4 \
        --vocab 512 >/dev/null || fail "gen_ckpt"
    expect 2 'shape mismatch' "$QUANT" validate --ref "$M" --variant "$T/other.gguf" --seqs 2 --len 16
fi
expect 2 'predicate needs a real variant' "$QUANT" validate --ref "$M" --variant-type q8_0 --predicate "$T/x.json"
echo "520 ok"
