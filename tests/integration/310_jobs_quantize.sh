#!/usr/bin/env bash
# Quantize on demand: push stories260K as a checkpoint (a manifest with one weight layer), request Q8_0 and Q4_K_M
# through /v1/jobs, wait (bounded poll) for both, pull both variants, find each bundle through the referrers API,
# verify it with `quant verify` against a policy trusting the daemon key, and check what the statement records.
# Also: auth (quantize scope), bad requests, deduplication, the job list and the event stream; and a calibrated job
# (Q4_K_M with an importance matrix the daemon collects on sequences it samples from the source): method imatrix,
# the calibration set's digest, samples and tokens in the statement, the imatrix keys in the GGUF.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }

TOK=$("$QUANT" token create --store "$T/store" --name q --scopes 'push:org/*,quantize:org/*' 2>/dev/null) ||
    fail "token create"
PUSHONLY=$("$QUANT" token create --store "$T/store" --name p --scopes 'push:org/*' 2>/dev/null) || fail "token create"
AUTH="Authorization: Bearer $TOK"
# A validation policy for a 260K-parameter model (whose logits move far more under quantization than a real
# model's): mean KLD at most 0.1 for every class. Q8_0 measures about 0.02 and passes; Q4_K_M about 1.0 and fails,
# so both sides of the tag rule run. The verdict is the daemon's; the test only checks that the tag follows it.
cat >"$T/vpolicy.json" <<'POL'
{"version": 1, "classes": [{"name": "any", "min_bits": 0, "max_mean_kld": 0.1}]}
POL
start_daemon --max-jobs=2 --job-threads=1 --validation-policy="$T/vpolicy.json"

# ---- push the checkpoint
cp "$MODEL" "$T/stories260K.bin"
printf '{"descriptor":{"name":"stories260K"},"config":{"format":"llama2c","precision":"f32"},"modelfs":{"type":"layers","diffIds":["%s"]}}' \
    "$(sha "$T/stories260K.bin")" >"$T/config.json"
push_blob org/stories "$T/config.json"
push_blob org/stories "$T/stories260K.bin"
make_manifest "$T/ckpt.json" "$T/config.json" "$T/stories260K.bin"
req PUT /v2/org/stories/manifests/ckpt --data-binary @"$T/ckpt.json" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' -H "$AUTH"
expect 201 "push the checkpoint manifest"
CKPT=$(sha "$T/ckpt.json")

job() { # job BODY [curl args]: POST /v1/jobs
    local body=$1
    shift
    req POST /v1/jobs -H 'Content-Type: application/json' --data-binary "$body" "$@"
}

# ---- auth and bad input
job '{"source":"org/stories:ckpt","recipe":"Q8_0"}'
expect 401 "a job without a token"
job '{"source":"org/stories:ckpt","recipe":"Q8_0"}' -H "Authorization: Bearer $PUSHONLY"
expect 403 "a job with a push-only token"
job '{"source":"org/stories:ckpt",' -H "$AUTH"
expect 400 "malformed JSON"
job '{"source":"org/stories:ckpt","recipe":"Q9_X"}' -H "$AUTH"
expect 400 "an unknown recipe"
[ "$(jq_py "j['errors'][0]['code']")" = RECIPE_UNKNOWN ] || fail "unknown recipe code"
job '{"source":"org/stories:nope","recipe":"Q8_0"}' -H "$AUTH"
expect 404 "an unknown source"
job '{"source":"org/stories:ckpt","recipe":"Q8_0","calibration":{"class":"code"}}' -H "$AUTH"
expect 400 "a calibration class without a dataset"
[ "$(jq_py "j['errors'][0]['code']")" = CALIBRATION_UNSUPPORTED ] || fail "class without a dataset: code"
for bad in '{"dataset":"sample:0:32:7"}' '{"dataset":"sample:4:32"}' '{"dataset":"sample:4:2000:7"}' \
    '{"dataset":"sample: 4:32:7"}' '{"dataset":"sample:4:32:7x"}' '{"dataset":"/etc/passwd"}' \
    '{"class":"none","dataset":"sample:4:32:7"}' '{"class":"Domain X","dataset":"sample:4:32:7"}' \
    '{"dataset":"sample:4:32:7","extra":1}' '{"dataset":7}'; do
    job '{"source":"org/stories:ckpt","recipe":"Q4_K_M","calibration":'"$bad"'}' -H "$AUTH"
    expect 400 "calibration $bad"
    [ "$(jq_py "j['errors'][0]['code']")" = JOB_INVALID ] || fail "calibration $bad: code"
done
job '{"source":"org/stories:ckpt","recipe":"Q8_0","target_hardware":["Bad Name"]}' -H "$AUTH"
expect 400 "a bad target_hardware name"
job '{"source":"../etc:ckpt","recipe":"Q8_0"}' -H "$AUTH"
expect 400 "a path trick in the source"

# ---- two jobs
job '{"source":"org/stories:ckpt","recipe":"Q8_0","calibration":{"class":"none"},"target_hardware":["x86_64-avx2"]}' -H "$AUTH"
expect 202 "POST Q8_0 job"
J8=$(jq_py "j['id']")
[ "$(hdr Location)" = "/v1/jobs/$J8" ] || fail "Location of the job"
job '{"source":"org/stories@'"$CKPT"'","recipe":"Q4_K_M","calibration":"none","target_hardware":"x86_64-avx2"}' -H "$AUTH"
expect 202 "POST Q4_K_M job"
J4=$(jq_py "j['id']")
[ "$J8" != "$J4" ] || fail "two jobs share an id"
job '{"source":"org/stories:ckpt","recipe":"Q4_K_M","calibration":{"dataset":"sample:8:32:7"},"target_hardware":"x86_64-avx2"}' -H "$AUTH"
expect 202 "POST a calibrated Q4_K_M job"
JI=$(jq_py "j['id']")
[ "$JI" != "$J4" ] || fail "the calibrated job joined the plain one"
[ "$(jq_py "j['calibration']['class']")" = domain:self-sampled ] || fail "default class of a sampled set"

wait_job() { # wait_job ID: bounded poll until the job ends; leaves its record in $T/body
    local st
    for _ in $(seq 1 600); do
        req GET "/v1/jobs/$1" -H "$AUTH"
        expect 200 "GET job $1"
        st=$(jq_py "j['state']")
        case $st in done | failed | cancelled) return 0 ;; esac
        sleep 0.1
    done
    fail "job $1 did not end within 60 s (state $st)"
}

check_variant() { # check_variant JOB_ID RECIPE BITS METHOD [CALIBRATION_DATASET]
    local id=$1 recipe=$2 bits=$3 method=$4 cal=${5:-} lower man blob bman bundle
    lower=$(echo "$recipe" | tr 'A-Z' 'a-z')
    wait_job "$id"
    read -r man verdict < <(python3 - "$T/body" "$recipe" "$cal" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["state"] == "done", ("job", sys.argv[2], j.get("error"))
assert j["progress"] == 1.0, j["progress"]
for st in ("load", "quantize", "validate", "sign", "publish") + (("calibrate",) if sys.argv[3] else ()):
    assert j["timings"][st] >= 0, st
assert ("calibrate" in j["timings"]) == bool(sys.argv[3]), j["timings"]
print(j["result"]["manifest"], j["result"]["verdict"])
PY
) || fail "job $recipe record"
    [ -n "$verdict" ] || fail "job $recipe did not end done"
    cp "$T/body" "$T/job-$lower.json"
    # the variant manifest: by tag when the verdict passed, always by digest
    req GET "/v2/org/stories/manifests/$man" -H "$AUTH"
    expect 200 "GET variant manifest $recipe"
    [ "$(hdr Docker-Content-Digest)" = "$man" ] || fail "variant digest header"
    cp "$T/body" "$T/man-$lower.json"
    blob=$(python3 - "$T/body" "$CKPT" "$lower" <<'PY'
import json, sys
j, ckpt, lower = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
assert j["subject"]["digest"] == ckpt, "variant subject is not the checkpoint"
assert j["artifactType"] == "application/vnd.cncf.model.manifest.v1+json", j["artifactType"]
assert j["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json", j["config"]
l = j["layers"][0]
assert l["mediaType"] == "application/vnd.cncf.model.weight.v1.raw", l
assert l["annotations"]["org.cncf.model.filepath"] == "model-%s.gguf" % lower, l
print(l["digest"])
PY
) || fail "variant manifest of $recipe"
    req GET "/v2/org/stories/manifests/$lower" -H "$AUTH"
    if [ "$verdict" = pass ]; then
        expect 200 "tag $lower after a passing verdict"
        [ "$(hdr Docker-Content-Digest)" = "$man" ] || fail "tag $lower points elsewhere"
    else
        expect 404 "tag $lower must not move after a failing verdict"
    fi
    req GET "/v2/org/stories/blobs/$blob" -H "$AUTH"
    expect 200 "pull the variant blob"
    mv "$T/body" "$T/model-$lower.gguf"
    [ "$(sha "$T/model-$lower.gguf")" = "$blob" ] || fail "variant blob digest"
    [ "$(head -c 4 "$T/model-$lower.gguf")" = GGUF ] || fail "the variant is not a GGUF"
    # the bundle, found through the referrers API
    req GET "/v2/org/stories/referrers/$man?artifactType=application/vnd.dev.sigstore.bundle.v0.3%2Bjson" -H "$AUTH"
    expect 200 "referrers of the variant"
    [ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "expected one bundle referrer"
    bman=$(jq_py "j['manifests'][0]['digest']")
    req GET "/v2/org/stories/manifests/$bman" -H "$AUTH"
    expect 200 "GET bundle manifest"
    bundle=$(jq_py "j['layers'][0]['digest']")
    [ "$(jq_py "j['layers'][0]['mediaType']")" = application/vnd.dev.sigstore.bundle.v0.3+json ] || fail "bundle type"
    req GET "/v2/org/stories/blobs/$bundle" -H "$AUTH"
    expect 200 "pull the bundle"
    mv "$T/body" "$T/$lower.bundle"
    "$QUANT" verify --policy "$T/policy.json" --bundle "$T/$lower.bundle" "$T/model-$lower.gguf" >"$T/verify.out" 2>&1 ||
        { cat "$T/verify.out"; fail "quant verify $recipe"; }
    # a tampered variant must not verify
    cp "$T/model-$lower.gguf" "$T/bad/model-$lower.gguf"
    printf 'X' | dd of="$T/bad/model-$lower.gguf" bs=1 seek=100 conv=notrunc 2>/dev/null
    "$QUANT" verify --policy "$T/policy.json" --bundle "$T/$lower.bundle" "$T/bad/model-$lower.gguf" >/dev/null 2>&1 &&
        fail "a tampered variant verified"
    # what the statement records
    python3 - "$T/$lower.bundle" "$recipe" "$bits" "$method" "$CKPT" "$KEYID" "$blob" "$T/job-$lower.json" "$cal" <<'PY' ||
import base64, json, sys
b, recipe, bits, method, ckpt, keyid, blob, jobf, cal = sys.argv[1:]
st = json.loads(base64.b64decode(json.load(open(b))["dsseEnvelope"]["payload"]))
job = json.load(open(jobf))
p = st["predicate"]
assert st["predicateType"] == "https://quantd.dev/variant/v1", st["predicateType"]
assert st["subject"][0]["digest"]["sha256"] == blob.split(":")[1], st["subject"]
assert p["source"]["digest"] == ckpt, p["source"]
assert p["recipe"]["method"] == method and p["recipe"]["format"] == recipe, p["recipe"]
assert p["recipe"]["weight_bits"] == int(bits), p["recipe"]
c = p["calibration"]
if cal:
    n, length = int(cal.split(":")[1]), int(cal.split(":")[2])
    assert c["class"] == "domain:self-sampled", c
    assert c["samples"] == n and c["tokens"] == n * length, c
    assert c["dataset_digest"].startswith("sha256:") and len(c["dataset_digest"]) == 71, c
    assert c["dataset_digest"] == job["calibration"]["dataset_digest"], (c, job["calibration"])
    assert "dataset" not in c, c
    print("%s calibrated on %s: %d sequences, %d tokens, %s" % (recipe, cal, c["samples"], c["tokens"], c["dataset_digest"]))
else:
    assert c == {"class": "none"}, c
assert p["converter"]["name"] == "quantd" and p["converter"]["version"] == job["converter_version"].split(" ")[0], p["converter"]
assert p["converter"]["kernel"] in ("scalar", "avx2", "avx512", "neon", "cuda"), p["converter"]
assert p["target_hardware"] == ["x86_64-avx2"], p["target_hardware"]
v = p["validation"]
for k in ("kld_mean", "kld_p99", "top1_agreement", "ppl_ratio"):
    assert isinstance(v["metrics"][k], (int, float)) and v["metrics"][k] >= 0, (k, v)
assert v["metrics"]["tokens"] > 0, v
assert 0 < v["metrics"]["top1_agreement"] <= 1, v
assert v["verdict"] == job["result"]["verdict"], (v["verdict"], job["result"])
assert v["reference_digest"] == ckpt, v
assert p["builder"]["key_id"] == keyid, p["builder"]
print("%s: kld_mean=%.6f top1=%.4f ppl_ratio=%.5f verdict=%s" % (recipe, v["metrics"]["kld_mean"],
      v["metrics"]["top1_agreement"], v["metrics"]["ppl_ratio"], v["verdict"]))
PY
        fail "statement of $recipe"
    if command -v python3 >/dev/null && python3 -c 'import jsonschema' 2>/dev/null; then
        python3 - "$T/$lower.bundle" "$here/../../schemas/predicate-variant-v1.schema.json" <<'PY' || fail "predicate schema ($recipe)"
import base64, json, sys, jsonschema
st = json.loads(base64.b64decode(json.load(open(sys.argv[1]))["dsseEnvelope"]["payload"]))
jsonschema.validate(st["predicate"], json.load(open(sys.argv[2])))
PY
    fi
}

# the daemon key (made at first start, mode 0600) and a policy trusting it
[ -f "$T/store/signing-key.pem" ] || fail "no signing key was generated"
[ "$(stat -c %a "$T/store/signing-key.pem")" = 600 ] || fail "signing key mode"
"$QUANT" key export "$T/store/signing-key.pem" --out "$T/daemon.pub" || fail "export the daemon key"
KEYID=$("$QUANT" key show "$T/daemon.pub" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') ||
    fail "key id"
grep -q "key_id=$KEYID" "$T/log" || fail "the daemon did not log its key id"
"$QUANT" policy new --trust "$T/daemon.pub" --out "$T/policy.json" >/dev/null || fail "policy new"
mkdir -p "$T/bad"

check_variant "$J8" Q8_0 8 rtn
[ "$verdict" = pass ] || fail "Q8_0 of stories260K should pass mean KLD <= 0.1"
check_variant "$J4" Q4_K_M 4 k-quant
[ "$verdict" = fail ] || fail "Q4_K_M of stories260K should fail mean KLD <= 0.1 (kept untagged)"
cp "$T/model-q4_k_m.gguf" "$T/plain-q4_k_m.gguf"
check_variant "$JI" Q4_K_M 4 imatrix sample:8:32:7
"$QUANT" inspect "$T/model-q4_k_m.gguf" --json >"$T/inspect.json" || fail "inspect the calibrated variant"
python3 - "$T/inspect.json" <<'PY' || fail "the calibrated variant's imatrix keys"
import json, sys
j = json.load(open(sys.argv[1]))
kv = {m["key"]: m.get("value") for m in j["metadata"]} if isinstance(j.get("metadata"), list) else j.get("metadata", {})
assert kv.get("quantize.imatrix.dataset") == "sample:8:32:7", kv.get("quantize.imatrix.dataset")
assert kv.get("quantize.imatrix.chunks_count") == 8, kv.get("quantize.imatrix.chunks_count")
PY
cmp -s "$T/model-q4_k_m.gguf" "$T/plain-q4_k_m.gguf" && fail "the calibrated variant has the plain one's bytes"
# the same calibrated request joins its job
job '{"source":"org/stories:ckpt","recipe":"Q4_K_M","calibration":{"class":"domain:self-sampled","dataset":"sample:8:32:7"},"target_hardware":"x86_64-avx2"}' -H "$AUTH"
expect 200 "an identical calibrated request"
[ "$(jq_py "j['id']")" = "$JI" ] || fail "the identical calibrated request got another job"

# both variants are referrers of the checkpoint, and lineage is recorded in the job
req GET "/v2/org/stories/referrers/$CKPT" -H "$AUTH"
expect 200 "referrers of the checkpoint"
# (besides, once ingest-sign-delay has passed, the daemon's own bundle for the unsigned checkpoint: not counted)
[ "$(jq_py "len([m for m in j['manifests'] if m.get('artifactType') != 'application/vnd.dev.sigstore.bundle.v0.3+json'])")" = 3 ] ||
    fail "the checkpoint should have three variant referrers"

# ---- an identical request returns the existing job (and its variant)
job '{"source":"org/stories:ckpt","recipe":"q8_0","target_hardware":["x86_64-avx2"]}' -H "$AUTH"
expect 200 "identical request"
[ "$(jq_py "j['id']")" = "$J8" ] || fail "identical request got another job"
[ "$(jq_py "j['deduplicated']")" = True ] || fail "not marked deduplicated"
[ "$(jq_py "j['result']['manifest']")" = "$(python3 -c "import json; print(json.load(open('$T/job-q8_0.json'))['result']['manifest'])")" ] ||
    fail "identical request: another variant"

# ---- the list and the event stream
req GET /v1/jobs -H "$AUTH"
expect 200 "list jobs"
[ "$(jq_py "sorted(x['id'] for x in j)")" = "$(python3 -c "print(sorted(['$J8','$J4','$JI']))")" ] || fail "job list"
req GET "/v1/jobs?state=done" -H "$AUTH"
[ "$(jq_py "len(j)")" = 3 ] || fail "job list by state"
req GET /v1/jobs -H "Authorization: Bearer $PUSHONLY"
expect 403 "a push-only token lists no jobs"
curl -sS -N --max-time 10 -H "$AUTH" "$URL/v1/jobs/$J8/events" >"$T/events" || fail "event stream"
grep -q '^event: job' "$T/events" || fail "no job event"
grep -q '^event: end' "$T/events" || fail "the stream did not end"
req GET /v1/jobs/0123456789abcdef -H "$AUTH"
expect 404 "an unknown job"
req DELETE "/v1/jobs/$J8" -H "$AUTH"
expect 409 "cancel a finished job"

# job metrics
req GET /metrics
expect 200 "metrics"
grep -q '^quantd_validation_verdicts_total{verdict="pass"} 1$' "$T/body" || fail "metrics: pass verdicts"
grep -q '^quantd_validation_verdicts_total{verdict="fail"} 2$' "$T/body" || fail "metrics: fail verdicts"
grep -q '^quantd_job_stage_runs_total{stage="publish"} 3$' "$T/body" || fail "metrics: publish stages"
grep -q '^quantd_job_stage_runs_total{stage="calibrate"} 1$' "$T/body" || fail "metrics: calibrate stages"
grep -q '^quantd_jobs_ended_total{state="done"} 3$' "$T/body" || fail "metrics: jobs done"
grep -q '^quantd_jobs_queued 0$' "$T/body" || fail "metrics: queue depth"

stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
echo "ok: 310 jobs quantize"
