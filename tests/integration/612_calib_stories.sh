#!/usr/bin/env bash
# 612_calib_stories: on stories260K, imatrix Q4_K_M and GPTQ int4 g32 (as Q4_0 GGUF blocks) each give a lower mean
# KLD than round-to-nearest Q4_0 in `quant validate`, on a validation set disjoint from the calibration set (checked
# by --val); prints the figures and the ratios; the predicates record method, params and calibration.
. "$(dirname "$0")/../lib/common.sh"
M=$SHARED/models/stories260K.bin
if [ ! -f "$M" ]; then
    echo "../shared/models/stories260K.bin is absent"
    exit 77
fi
T=$WORK
CAL=sample:16:256:7

# validation set: 16 sequences of 256 tokens sampled with seed 42 (saved: every variant is scored on it)
"$QUANT" validate --ref "$M" --variant-type f32 --seqs 16 --len 256 --seed 42 --save-set "$T/val.bin" --json \
    > /dev/null 2>&1
[ -s "$T/val.bin" ] || fail "no validation set"
"$QUANT" quantize --in "$M" --type q4_0 --out "$T/rtn_q4_0.gguf" > /dev/null 2>&1 || fail "rtn q4_0"
"$QUANT" quantize --in "$M" --type q4_k_m --out "$T/rtn_q4_k_m.gguf" > /dev/null 2>&1 || fail "rtn q4_k_m"
"$QUANT" quantize --in "$M" --type q4_k_m --method imatrix --calib "$CAL" --val "$T/val.bin" \
    --out "$T/imatrix_q4_k_m.gguf" > "$T/o" 2> "$T/e" || fail "imatrix q4_k_m: $(cat "$T/e")"
"$QUANT" quantize --in "$M" --type q4_0 --method gptq --calib "$CAL" --act-order --val "$T/val.bin" \
    --out "$T/gptq_q4_0.gguf" > "$T/o" 2> "$T/e" || fail "gptq q4_0: $(cat "$T/e")"
grep -o "geometric mean [0-9.]*" "$T/e" | sed 's/^/gptq layer output error vs rtn: /'
for v in rtn_q4_0 rtn_q4_k_m imatrix_q4_k_m gptq_q4_0; do
    "$QUANT" validate --ref "$M" --variant "$T/$v.gguf" --set "$T/val.bin" --json --predicate "$T/$v.pred.json" \
        > "$T/$v.json" 2> /dev/null
    [ -s "$T/$v.json" ] || fail "validate $v"
done
python3 - "$T" "$ROOT/schemas/predicate-variant-v1.schema.json" <<'PY' || fail "figures"
import json, sys
t = sys.argv[1]
r = {v: json.load(open(f"{t}/{v}.json")) for v in ["rtn_q4_0", "rtn_q4_k_m", "imatrix_q4_k_m", "gptq_q4_0"]}
print("variant          bpw     mean KLD   p99 KLD   top-1")
for v, x in r.items():
    print(f"{v:15s} {x['variant_bpw']:6.3f}  {x['kld']['mean']:9.4f} {x['kld']['p99']:9.3f}  {x['same_top']['fraction']:.4f}")
base = r["rtn_q4_0"]["kld"]["mean"]
for v in ["imatrix_q4_k_m", "gptq_q4_0"]:
    ratio = r[v]["kld"]["mean"] / base
    print(f"mean KLD ratio {v} / rtn_q4_0 = {ratio:.3f}")
    assert ratio < 0.95, (v, ratio)
print(f"mean KLD ratio imatrix_q4_k_m / rtn_q4_k_m = {r['imatrix_q4_k_m']['kld']['mean'] / r['rtn_q4_k_m']['kld']['mean']:.3f}")
# the same file sizes: GPTQ changes values, not the layout
assert r["gptq_q4_0"]["variant_bpw"] == r["rtn_q4_0"]["variant_bpw"]
pg = json.load(open(f"{t}/gptq_q4_0.pred.json"))
pi = json.load(open(f"{t}/imatrix_q4_k_m.pred.json"))
pr = json.load(open(f"{t}/rtn_q4_0.pred.json"))
assert pg["recipe"]["method"] == "gptq" and pg["recipe"]["format"] == "Q4_0" and pg["recipe"]["group_size"] == 32
assert pg["recipe"]["params"] == {"act_order": True, "true_sequential": True, "damp": 0.01}, pg["recipe"]
assert pi["recipe"]["method"] == "imatrix" and pr["recipe"]["method"] == "rtn"
for p in (pg, pi):
    c = p["calibration"]
    assert c["class"] == "domain:self-sampled" and c["samples"] == 16 and c["tokens"] == 16 * 256, c
    assert c["dataset_digest"].startswith("sha256:") and c["dataset_digest"] != p["validation"]["set_digest"], c
assert pg["calibration"]["dataset_digest"] == pi["calibration"]["dataset_digest"]
assert pr["calibration"] == {"class": "none"}, pr["calibration"]
try:
    import jsonschema
    s = json.load(open(sys.argv[2]))
    for p in (pg, pi, pr):
        jsonschema.validate(p, s)
    print("predicates match their schema")
except ImportError:
    print("python3-jsonschema absent: schema not checked")
PY
# the calibration set may not overlap the validation set
"$QUANT" quantize --in "$M" --type q4_0 --method gptq --calib "$T/val.bin" --val "$T/val.bin" --out "$T/x.gguf" \
    > "$T/o" 2> "$T/e"
[ $? = 2 ] || fail "overlapping sets: exit $?"
grep -q "disjoint" "$T/e" || fail "overlap message: $(cat "$T/e")"
[ ! -e "$T/x.gguf" ] || fail "a variant was written from an overlapping set"
echo "612 ok"
