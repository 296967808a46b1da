#!/usr/bin/env bash
# 630_awq_smoothquant.sh - AWQ and SmoothQuant W8A8 end to end on stories260K (../shared; skipped when absent) and on
# an outlier version of it (tests/tools/outlier_model: the same function, 4 residual channels 32x larger):
#   - calibration and validation sets sampled with different seeds, checked disjoint by quant quantize;
#   - AWQ Q4_0 (GGUF) beats RTN Q4_0 on mean KLD; AWQ int4 g32 (AutoAWQ folder) beats round to nearest on the same
#     grid; the folder validated through `quant validate` gives the KLD the quantizer measured in memory (the file
#     is what was run);
#   - SmoothQuant W8A8 (compressed-tensors folder) validates, and on the outlier model beats plain W8A8;
#   - the variant predicates carry method, params and calibration {class, dataset digest, tokens} and pass the
#     schema (when python3-jsonschema is there).
# Prints every figure (mean KLD, p99, top-1, bpw) and the ratios.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
Q=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
M=$ROOT/../shared/models/stories260K.bin
[ -f "$M" ] || { echo "skip: ../shared/models/stories260K.bin is absent"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/qd630.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
n_fail=0
fail() { echo "FAIL: $*"; n_fail=$((n_fail + 1)); }

# "mean p99 top1 bpw" of a validation run (exit 0 pass or 9 policy fail both report)
figures() {
    "$Q" validate "$@" 2>/dev/null | awk '
        /^variant:/ { bpw = $2 }
        /^Mean KLD/ { mean = $3; for (i = 1; i <= NF; i++) if ($i == "p99") p99 = $(i + 1) }
        /^Same top p:/ { top = $4 / 100 }
        END { if (mean == "") exit 1; printf "%s %s %.4f %s\n", mean, p99, top, bpw }'
}
show() { # label "mean p99 top1 bpw"
    set -- "$1" $2
    printf '  %-28s mean KLD %-10s p99 %-10s top-1 %-7s bpw %s\n' "$1" "$2" "$3" "$4" "$5"
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

"$TOOLS/outlier_model" --in "$M" --out outliers.gguf --channels 4 --factor 32 || { echo "FAIL: outlier_model"; exit 1; }

for model in stories outliers; do
    ref=$M
    [ "$model" = outliers ] && ref=$work/outliers.gguf
    echo "== $model"
    "$Q" validate --ref "$ref" --variant-type q8_0 --seqs 32 --len 128 --seed 7 --save-set cal.$model.set \
        >/dev/null 2>&1
    "$Q" validate --ref "$ref" --variant-type q8_0 --seqs 16 --len 128 --seed 42 --save-set val.$model.set \
        >/dev/null 2>&1
    cal=cal.$model.set val=val.$model.set
    [ -s "$cal" ] && [ -s "$val" ] || { fail "sets for $model"; continue; }
    common=(--in "$ref" --calib "$cal" --calib-class domain:self-sampled)

    # --- AWQ into GGUF (Q4_0 blocks) against RTN Q4_0
    "$Q" quantize --method awq "${common[@]}" --out awq.$model.gguf >/dev/null || fail "awq q4_0 $model"
    rtn=$(figures --ref "$ref" --variant-type q4_0 --set "$val")
    awq=$(figures --ref "$ref" --variant awq.$model.gguf --set "$val" --predicate awq.$model.pred.json)
    show "RTN Q4_0" "$rtn"
    show "AWQ Q4_0 (g32)" "$awq"
    echo "  AWQ/RTN Q4_0 mean KLD ratio $(ratio "${awq%% *}" "${rtn%% *}")"
    lt "${awq%% *}" "${rtn%% *}" || fail "$model: AWQ Q4_0 mean KLD ${awq%% *} is not below RTN ${rtn%% *}"

    # --- AWQ int4 g32 asymmetric (AutoAWQ layout) against round to nearest on the same grid
    a_log=$("$Q" quantize --method awq "${common[@]}" --format autoawq --group 32 --out awq32.$model --val "$val") ||
        fail "autoawq $model"
    r_log=$("$Q" quantize --method awq "${common[@]}" --format autoawq --group 32 --out rtn32.$model --val "$val" \
        --n-grid 1 --no-clip) || fail "rtn int4 $model"
    a_mem=$(grep '^awq:' <<<"$a_log" | awk '{print $4}')
    r_mem=$(grep '^awq:' <<<"$r_log" | awk '{print $4}')
    a_bpw=$(grep '^awq:' <<<"$a_log" | awk '{print $11}')
    a32=$(figures --ref "$ref" --variant awq32.$model --set "$val")
    r32=$(figures --ref "$ref" --variant rtn32.$model --set "$val")
    show "RTN int4 g32 (AutoAWQ grid)" "${r32% *} $a_bpw"
    show "AWQ int4 g32 (AutoAWQ)" "${a32% *} $a_bpw"
    echo "  AWQ/RTN int4 g32 mean KLD ratio $(ratio "${a32%% *}" "${r32%% *}") (bpw: int4 + f16 scale + 4-bit zero" \
         "per 32 on the quantized linears, the rest f32)"
    [ "$a_mem" = "${a32%% *}" ] || fail "$model: the AutoAWQ folder validates to ${a32%% *}, the quantizer ran $a_mem"
    [ "$r_mem" = "${r32%% *}" ] || fail "$model: the RTN int4 folder validates to ${r32%% *}, in memory $r_mem"
    lt "${a32%% *}" "${r32%% *}" || fail "$model: AWQ int4 g32 ${a32%% *} is not below RTN ${r32%% *}"

    # --- W8A8: plain (round to nearest, compressed-tensors int8) and SmoothQuant (alpha 0.5)
    "$Q" quantize --in "$ref" --format compressed-tensors --type int8 --out w8a8.$model >/dev/null ||
        fail "plain w8a8 $model"
    "$Q" quantize --method smoothquant "${common[@]}" --format compressed-tensors --out sq.$model >/dev/null ||
        fail "smoothquant $model"
    w8=$(figures --ref "$ref" --variant w8a8.$model --set "$val")
    sq=$(figures --ref "$ref" --variant sq.$model --set "$val" --predicate sq.$model.pred.json)
    show "W8A8 (no smoothing)" "$w8"
    show "SmoothQuant W8A8 (alpha 0.5)" "$sq"
    echo "  SmoothQuant/plain W8A8 mean KLD ratio $(ratio "${sq%% *}" "${w8%% *}")"
    [ -n "$sq" ] || fail "$model: SmoothQuant W8A8 did not validate"
    if [ "$model" = outliers ]; then
        lt "${sq%% *}" "${w8%% *}" || fail "outliers: SmoothQuant ${sq%% *} is not below plain W8A8 ${w8%% *}"
    fi

    # --- predicates: method, params, calibration
    for p in awq.$model.pred.json sq.$model.pred.json; do
        [ -s "$p" ] || { fail "no predicate $p"; continue; }
        grep -q '"dataset_digest":"sha256:' "$p" && grep -q '"class":"domain:self-sampled"' "$p" &&
            grep -q '"tokens":4096' "$p" && grep -q '"params":' "$p" || fail "$p lacks the calibration record"
    done
    grep -q '"method":"awq"' awq.$model.pred.json || fail "awq predicate method"
    grep -q '"method":"smoothquant"' sq.$model.pred.json && grep -q '"activation_bits":8' sq.$model.pred.json &&
        grep -q '"alpha":0.5' sq.$model.pred.json || fail "smoothquant predicate"
    if python3 -c 'import jsonschema' 2>/dev/null; then
        for p in awq.$model.pred.json sq.$model.pred.json; do
            python3 "$ROOT/tests/integration/check_schemas.py" doc "$ROOT/schemas/predicate-variant-v1.schema.json" \
                "$p" >/dev/null || fail "$p does not pass the schema"
        done
    fi
done

# the AutoAWQ layout read by a reader we did not write in C: numpy decodes qweight/qzeros (AWQ_ORDER nibbles along
# the output dimension) and scales, and compares them with AutoAWQ's asymmetric int4 formula applied to the source
# weights (round to nearest: --n-grid 1 --no-clip leaves the weights unscaled) on a gen_ckpt safetensors model
PY=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then PY=$p; break; fi
done
if [ -n "$PY" ] && [ -x "$TOOLS/gen_ckpt" ]; then
    mkdir -p src
    "$TOOLS/gen_ckpt" --out src/model.safetensors --format safetensors --seed 3 --layers 2 --dim 64 --ff 128         --heads 4 --kv-heads 2 >/dev/null || fail "gen_ckpt"
    "$Q" validate --ref src --variant-type q8_0 --seqs 8 --len 32 --seed 7 --save-set cal.src.set >/dev/null 2>&1
    "$Q" quantize --method awq --in src --calib cal.src.set --format autoawq --group 32 --n-grid 1 --no-clip         --out rtn.src >/dev/null || fail "autoawq rtn on gen_ckpt"
    "$PY" - "$work" <<'PYEOF' || fail "numpy check of the AutoAWQ layout"
import json, struct, sys
import numpy as np
work = sys.argv[1]
DT = {"F32": np.float32, "F16": np.float16, "I32": np.int32}
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n].decode("utf-8"))
    hdr.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             dtype=DT[v["dtype"]]).reshape(v["shape"]) for k, v in hdr.items()}
src, q = load(work + "/src/model.safetensors"), load(work + "/rtn.src/model.safetensors")
cfg = json.load(open(work + "/rtn.src/config.json"))["quantization_config"]
assert cfg == {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True, "version": "gemm"}, cfg
order = [0, 2, 4, 6, 1, 3, 5, 7]
g, n = 32, 0
for name, w in src.items():
    if not name.endswith("_proj.weight"):
        continue
    w = w.astype(np.float32)
    out, inp = w.shape
    pre = name[:-len("weight")]
    qw, qz, sc = q[pre + "qweight"], q[pre + "qzeros"], q[pre + "scales"]
    assert qw.shape == (inp, out // 8) and qz.shape == (inp // g, out // 8) and sc.shape == (inp // g, out), pre
    def unpack(a):  # int32 [r, out/8] -> int [r, out]
        u = a.view(np.uint32)
        r = np.zeros((a.shape[0], out), dtype=np.int64)
        for k in range(8):
            r[:, np.arange(out // 8) * 8 + order[k]] = (u >> np.uint32(4 * k)) & np.uint32(15)
        return r
    iq, iz = unpack(qw), unpack(qz)          # [in, out], [in/g, out]
    wg = w.T.reshape(inp // g, g, out)       # groups along the input
    mx, mn = wg.max(axis=1), wg.min(axis=1)
    s = np.maximum((mx - mn) / np.float32(15), np.float32(1e-5)).astype(np.float16)
    assert np.array_equal(s.view(np.uint16), sc.view(np.uint16)), pre + "scales"
    s32 = s.astype(np.float32)
    z = np.clip(-np.round(mn / s32), 0, 15).astype(np.int64)
    assert np.array_equal(z, iz), pre + "qzeros"
    want = np.clip(np.round(wg / s32[:, None, :]) + z[:, None, :], 0, 15).astype(np.int64).reshape(inp, out)
    assert np.array_equal(want, iq), pre + "qweight"
    n += 1
assert n == 14, n
print("numpy: %d AutoAWQ modules decode to AutoAWQ's int4 grid of the source weights" % n)
PYEOF
else
    echo "(numpy check of the AutoAWQ layout skipped: no python3 with numpy or no gen_ckpt)"
fi

# the AWQ GGUF runs in llama.cpp itself (node-llama-cpp's prebuilt binary) when tests/llama/node_modules is there
if command -v node >/dev/null && [ -d "$ROOT/tests/llama/node_modules/node-llama-cpp" ]; then
    if timeout 300 node "$ROOT/tests/llama/load_gguf.mjs" awq.stories.gguf 16 >n.out 2>n.err &&
        grep -q '"vocab":512' n.out; then
        echo "llama.cpp loads and runs awq.stories.gguf: $(tail -n 1 n.out | cut -c1-100)"
    else
        fail "llama.cpp could not run awq.stories.gguf: $(tail -n 3 n.err)"
    fi
else
    echo "(llama.cpp check skipped: no node or tests/llama/node_modules)"
fi

# bad input: a calibration set that overlaps the validation set, a missing set, a bad alpha
if "$Q" quantize --method smoothquant --in "$M" --calib val.stories.set --val val.stories.set \
    --format compressed-tensors --out x 2>err.txt; then
    fail "overlapping calibration and validation sets accepted"
fi
grep -q disjoint err.txt || fail "no disjointness message: $(cat err.txt)"
"$Q" quantize --method awq --in "$M" --calib nonexistent.set --out x.gguf 2>/dev/null
[ $? -eq 3 ] || fail "a missing calibration set is not exit 3"
"$Q" quantize --method smoothquant --in "$M" --calib cal.stories.set --alpha 2 --format compressed-tensors \
    --out x 2>/dev/null
[ $? -eq 2 ] || fail "--alpha 2 is not a usage error"

[ "$n_fail" -eq 0 ] || { echo "$n_fail failure(s)"; exit 1; }
echo "ok"
