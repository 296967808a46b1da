#!/usr/bin/env bash
# Audit queries against a real daemon, answered from its LMDB audit indexes: stories260K pushed as a checkpoint,
# three variants published by quantize jobs (Q8_0 passes, Q4_K_M and Q4_0 fail the tight validation policy), and one
# externally made variant of the Q8_0 variant pushed with a bundle signed by another key (the manifest PUT path).
# Then: "what did converter version V make", "what did key K sign", conjunctions, pagination with a cursor,
# namespace scopes, lineage up and down through HTTP and `quant audit` (table, tree, json, dot), bad input (400 with
# the OCI error body), and `quant audit reindex` on the stopped daemon's store giving the same index back.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
. "$here/client_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }
client_setup

TOK=$("$QUANT" token create --store "$T/store" --name q --scopes 'push:org/*,quantize:org/*' 2>/dev/null) ||
    fail "token create"
OTHER=$("$QUANT" token create --store "$T/store" --name o --scopes 'pull:other/*' 2>/dev/null) || fail "token create"
AUTH="Authorization: Bearer $TOK"
cat >"$T/vpolicy.json" <<'POL'
{"version": 1, "classes": [{"name": "any", "min_bits": 0, "max_mean_kld": 0.1}]}
POL
start_daemon --max-jobs=2 --job-threads=1 --validation-policy="$T/vpolicy.json" --anonymous-pull=false

# ---- the checkpoint and three jobs
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

submit() { # submit RECIPE: sets JOB
    req POST /v1/jobs -H 'Content-Type: application/json' -H "$AUTH" \
        --data-binary '{"source":"org/stories:ckpt","recipe":"'"$1"'","calibration":{"class":"none"},"target_hardware":["x86_64-avx2"]}'
    expect 202 "POST $1 job"
    JOB=$(grep -o '"id":"[0-9a-f]*"' "$T/body" | head -n 1 | cut -d'"' -f4)
    [ -n "$JOB" ] || fail "no job id"
}
wait_job() { # wait_job ID: bounded poll; prints the variant manifest digest
    local st
    for _ in $(seq 1 900); do
        req GET "/v1/jobs/$1" -H "$AUTH"
        st=$(grep -o '"state":"[a-z]*"' "$T/body" | cut -d'"' -f4)
        case $st in
        done) grep -o '"manifest":"sha256:[0-9a-f]*"' "$T/body" | cut -d'"' -f4; return 0 ;;
        failed | cancelled) fail "job $1 ended $st" ;;
        esac
        sleep 0.1
    done
    fail "job $1 did not end within 90 s"
}
submit Q8_0; J8=$JOB
submit Q4_K_M; J4K=$JOB
submit Q4_0; J40=$JOB
V8=$(wait_job "$J8") || exit 1
V4K=$(wait_job "$J4K") || exit 1
V40=$(wait_job "$J40") || exit 1

"$QUANT" key export "$T/store/signing-key.pem" --out "$T/daemon.pub" || fail "export the daemon key"
keyid() { "$QUANT" key show "$1" --json | grep -o '"id": "[0-9a-f]*"' | cut -d'"' -f4; }
DKEY=$(keyid "$T/daemon.pub")
GKEY=$(keyid "$T/good.pub")
[ ${#DKEY} = 64 ] && [ ${#GKEY} = 64 ] || fail "key ids"

# ---- an externally made variant of the Q8_0 variant, pushed with its own signed bundle (manifest PUT path)
head -c 4096 /dev/urandom >"$T/model-ext.gguf"
cat >"$T/pred.json" <<PRED
{"source":{"digest":"$V8"},"recipe":{"method":"gptq","format":"Q4_K_M","weight_bits":4,"symmetric":true,"seed":1},
 "calibration":{"class":"code"},"converter":{"name":"ext-quantizer","version":"9.9.9","build":"abc","kernel":"cuda"},
 "target_hardware":["cuda-sm90"],"validation":{"verdict":"pass"},"created_at":"2026-01-01T00:00:00Z","builder":"ext"}
PRED
"$QUANT" sign --key "$T/good" --predicate-type https://quantd.dev/variant/v1 --predicate "$T/pred.json" \
    --out "$T/ext.bundle" "$T/model-ext.gguf" >/dev/null || fail "quant sign"
echo '{}' >"$T/empty.json"
push_blob org/stories "$T/model-ext.gguf"
push_blob org/stories "$T/empty.json"
push_blob org/stories "$T/ext.bundle"
python3 - "$T" "$V8" <<'PY' || fail "make the external manifests"
import hashlib, json, os, sys
t, v8 = sys.argv[1], sys.argv[2]
def desc(p, mt):
    b = open(p, 'rb').read()
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)}
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.cncf.model.manifest.v1+json",
     "config": desc(t + "/empty.json", "application/vnd.cncf.model.config.v1+json"),
     "layers": [desc(t + "/model-ext.gguf", "application/vnd.cncf.model.weight.v1.raw")],
     "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": v8, "size": 1}}
open(t + "/ext.json", "w").write(json.dumps(m))
b = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "config": desc(t + "/empty.json", "application/vnd.oci.empty.v1+json"),
     "layers": [desc(t + "/ext.bundle", "application/vnd.dev.sigstore.bundle.v0.3+json")],
     "subject": dict(desc(t + "/ext.json", "application/vnd.oci.image.manifest.v1+json"))}
open(t + "/extb.json", "w").write(json.dumps(b))
PY
req PUT /v2/org/stories/manifests/ext --data-binary @"$T/ext.json" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' -H "$AUTH"
expect 201 "push the external variant"
VX=$(sha "$T/ext.json")
req PUT "/v2/org/stories/manifests/$(sha "$T/extb.json")" --data-binary @"$T/extb.json" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' -H "$AUTH"
expect 201 "push the external variant's bundle"

# ---- queries over HTTP (the token may pull org/*: push implies pull). Answers are saved, then checked by one
# python run (python starts slowly on a loaded machine).
save() { # save NAME PATH [curl args]: GET, expect 200, keep the body as $T/r-NAME.json
    local name=$1 path=$2
    shift 2
    req GET "$path" "$@"
    expect 200 "GET $path"
    cp "$T/body" "$T/r-$name.json"
}
save convver "/v1/audit/query?converter_version=0.1.0" -H "$AUTH"
save dkey "/v1/audit/query?key=$DKEY" -H "$AUTH"
save gkey "/v1/audit/query?key=$GKEY" -H "$AUTH"
save pass "/v1/audit/query?verdict=pass" -H "$AUTH"
save conj "/v1/audit/query?verdict=fail&converter=quantd&bits=4" -H "$AUTH"
save fm "/v1/audit/query?format=Q4_K_M&method=k-quant" -H "$AUTH"
save five "/v1/audit/query?format=Q4_K_M&converter_version=0.1.0&hardware=x86_64-avx2&namespace=org&calibration=none" -H "$AUTH"
save awq "/v1/audit/query?method=awq" -H "$AUTH"
save early "/v1/audit/query?since=1&until=2" -H "$AUTH"
save hour "/v1/audit/query?since=$(($(date +%s) - 3600))" -H "$AUTH"
save all "/v1/audit/query?namespace=org&limit=1000" -H "$AUTH"
# pagination: one per page, cursor to cursor
CUR=
for i in 1 2 3 4 5 6; do
    save "page$i" "/v1/audit/query?namespace=org&limit=1${CUR:+&cursor=$CUR}" -H "$AUTH"
    CUR=$(grep -o '"next_cursor":"[0-9a-f.]*"' "$T/body" | cut -d'"' -f4)
    [ -n "$CUR" ] || break
done
# scopes: a token for other/* sees nothing of org/*; no token is refused (anonymous pull is off)
save other "/v1/audit/query?namespace=org" -H "Authorization: Bearer $OTHER"
save otherlin "/v1/audit/lineage/$V8?direction=up" -H "Authorization: Bearer $OTHER"
req GET "/v1/audit/query?method=rtn"
expect 401 "a query without a token"
# lineage
save up "/v1/audit/lineage/$VX?direction=up&depth=5" -H "$AUTH"
save up1 "/v1/audit/lineage/$VX?direction=up&depth=1" -H "$AUTH"
save down "/v1/audit/lineage/$CKPT?direction=down&depth=2" -H "$AUTH"
python3 "$here/check_schemas.py" doc "$here/../../schemas/audit-query.schema.json" "$T/r-gkey.json" ||
    fail "query schema"
python3 "$here/check_schemas.py" doc "$here/../../schemas/audit-lineage.schema.json" "$T/r-up.json" ||
    fail "lineage schema"
python3 - "$T" "$V8" "$V4K" "$V40" "$VX" "$CKPT" <<'PY' || fail "the audit answers"
import json, os, sys
t, v8, v4k, v40, vx, ckpt = sys.argv[1:]
def r(name): return json.load(open(f"{t}/r-{name}.json"))
def ds(name): return sorted(e["manifest"] for e in r(name)["results"])
jobs = sorted([v8, v4k, v40])
assert ds("convver") == jobs, ("what did converter version 0.1.0 make", ds("convver"))
assert r("convver")["driver"] == "converter_version", r("convver")["driver"]
assert ds("dkey") == jobs, ("what did the daemon key sign", ds("dkey"))
assert ds("gkey") == [vx], ("what did the external key sign", ds("gkey"))
e = r("gkey")["results"][0]
assert e["source"] == v8 and e["repository"] == "org/stories" and e["verdict"] == "pass", e
assert (e["method"], e["format"], e["bits"], e["calibration"]) == ("gptq", "Q4_K_M", 4, "code"), e
assert (e["converter"], e["converter_version"], e["target_hardware"]) == ("ext-quantizer", "9.9.9", ["cuda-sm90"]), e
assert ds("pass") == sorted([v8, vx]), ("verdict=pass", ds("pass"))
assert ds("conj") == sorted([v4k, v40]), ("a conjunction", ds("conj"))
assert ds("fm") == [v4k], ds("fm")
assert ds("five") == [v4k], ds("five")
assert r("awq")["count"] == 0 and r("early")["count"] == 0
assert r("hour")["count"] == 4, r("hour")["count"]
whole = [e["manifest"] for e in r("all")["results"]]
paged = []
for i in range(1, 7):
    if os.path.exists(f"{t}/r-page{i}.json"):
        paged += [e["manifest"] for e in r(f"page{i}")["results"]]
assert paged == whole and len(whole) == 4, ("paging", paged, whole)
assert r("other")["count"] == 0, "a token for other/* sees org/*"
assert r("otherlin")["nodes"][0]["record"] is None, "a record of org/* shown to a token for other/*"
up = r("up")
assert [n["digest"] for n in up["nodes"]] == [vx, v8, ckpt], up["nodes"]
assert [n["depth"] for n in up["nodes"]] == [0, 1, 2]
assert up["nodes"][2]["record"] is None and up["nodes"][1]["record"]["format"] == "Q8_0"
assert up["edges"] == [{"child": vx, "parent": v8}, {"child": v8, "parent": ckpt}], up["edges"]
assert len(r("up1")["nodes"]) == 2
down = r("down")
assert sorted(n["digest"] for n in down["nodes"] if n["depth"] == 1) == jobs
assert [n["digest"] for n in down["nodes"] if n["depth"] == 2] == [vx]
assert len(down["edges"]) == 4
PY

# ---- bad input: 400 with the OCI error body
bad() { req GET "$1" -H "$AUTH"; expect 400 "$1"; grep -q "^{\"errors\":\[{\"code\":\"$2\"" "$T/body" || fail "$1: code"; }
bad "/v1/audit/query?colour=blue" QUERY_INVALID
bad "/v1/audit/query?method=rtn&method=gptq" QUERY_INVALID
bad "/v1/audit/query?limit=100000" PAGINATION_NUMBER_INVALID
bad "/v1/audit/query?limit=0" PAGINATION_NUMBER_INVALID
bad "/v1/audit/query?bits=banana" QUERY_INVALID
bad "/v1/audit/query?since=10&until=5" QUERY_INVALID
bad "/v1/audit/query?cursor=garbage" QUERY_INVALID
bad "/v1/audit/query?method=" QUERY_INVALID
bad "/v1/audit/lineage/sha256:1234?direction=up" DIGEST_INVALID
bad "/v1/audit/lineage/$V8?depth=0" QUERY_INVALID
bad "/v1/audit/lineage/$V8?depth=17" QUERY_INVALID
bad "/v1/audit/lineage/$V8?direction=sideways" QUERY_INVALID
bad "/v1/audit/lineage/$V8?deep=3" QUERY_INVALID
req GET "/v1/audit/lineage/sha256:$(printf '%064d' 0)" -H "$AUTH"
expect 404 "an unknown digest"

# ---- the client: each question is one call
export QUANT_REGISTRY=$URL QUANT_TOKEN=$TOK
qrun 0 audit query --converter-version 0.1.0 --format json
for v in "$V8" "$V4K" "$V40"; do grep -q "\"manifest\": \"$v\"" "$T/out" || fail "quant audit query --converter-version"; done
grep -q '"count": 3' "$T/out" || fail "quant audit query --converter-version: count"
qrun 0 audit query --key "$GKEY"
grep -q "ext-quantizer" "$T/out" || fail "quant audit query --key: table"
[ "$(wc -l <"$T/out")" = 2 ] || fail "the table: a header and one row"
qrun 0 audit query --type Q4_0 --verdict fail --limit 1
grep -q "Q4_0" "$T/out" || fail "quant audit query --type"
qrun 0 audit lineage "$VX" --depth 4
grep -q "$CKPT" "$T/out" || fail "quant audit lineage: tree reaches the checkpoint"
qrun 0 audit lineage "$CKPT" --down --format dot
grep -q "digraph lineage" "$T/out" || fail "dot output"
[ "$(grep -c -- '->' "$T/out")" = 4 ] || fail "dot: four edges down"
qrun 0 audit lineage "$CKPT" --down --format table --depth 1
[ "$(wc -l <"$T/out")" = 5 ] || fail "table: a header, the checkpoint and three children"
qrun 3 audit lineage "sha256:$(printf '%064d' 0)"
qrun 2 audit query --format dot
qrun 2 audit lineage "$V8" --depth 99

# ---- reindex on the stopped daemon's store gives the same index
stop_daemon
qrun 0 audit reindex --store "$T/store"
grep -q "indexed 4 artifacts" "$T/out" || fail "reindex count: $(cat "$T/out")"
grep -q "already complete" "$T/out" || fail "reindex differs from the incremental index: $(cat "$T/out")"
exit 0
