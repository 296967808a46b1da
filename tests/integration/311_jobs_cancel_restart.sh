#!/usr/bin/env bash
# Jobs live in the store: with max-jobs=0 a job stays queued (deterministically, no timing involved); it can be
# cancelled; a queued job survives a daemon restart and runs once the daemon starts with a runner; an identical
# request after a cancel makes a new job. Ends with fsck.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }

start_daemon --auth=false --max-jobs=0
cp "$MODEL" "$T/stories260K.bin"
echo '{"config":{"format":"llama2c"}}' >"$T/config.json"
push_blob org/m "$T/config.json"
push_blob org/m "$T/stories260K.bin"
make_manifest "$T/ckpt.json" "$T/config.json" "$T/stories260K.bin"
req PUT /v2/org/m/manifests/base --data-binary @"$T/ckpt.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push the checkpoint"

req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/m:base","recipe":"Q8_0"}'
expect 202 "queue a job"
A=$(jq_py "j['id']")
req GET "/v1/jobs/$A"
[ "$(jq_py "j['state']")" = queued ] || fail "the job should stay queued with max-jobs=0"
# the event stream of a queued job: its record now, then the change, then the end
curl -sS -N --max-time 20 "$URL/v1/jobs/$A/events" >"$T/events" &
CURL=$!
for _ in $(seq 1 100); do grep -q '"state":"queued"' "$T/events" 2>/dev/null && break; sleep 0.1; done
grep -q '^data: .*"state":"queued"' "$T/events" || fail "the stream did not send the queued record"
# cancel a queued job
req DELETE "/v1/jobs/$A"
expect 200 "cancel a queued job"
[ "$(jq_py "j['state']")" = cancelled ] || fail "cancel: state"
req GET "/v1/jobs/$A"
[ "$(jq_py "j['state']")" = cancelled ] || fail "the cancel did not stick"
req DELETE "/v1/jobs/$A"
expect 409 "cancel twice"
wait "$CURL" || fail "the event stream failed or did not end within 20 s"
grep -q '^data: .*"state":"cancelled"' "$T/events" || fail "the stream did not send the cancel"
tail -n 3 "$T/events" | grep -q '^event: end' || fail "the stream did not end with event: end"
# an identical request after a cancel is a new job
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/m:base","recipe":"Q8_0"}'
expect 202 "a new job after the cancel"
B=$(jq_py "j['id']")
[ "$A" != "$B" ] || fail "a cancelled job was reused"
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/m:base","recipe":"Q8_0"}'
expect 200 "identical request while queued"
[ "$(jq_py "j['id']")" = "$B" ] || fail "identical request while queued: another job"
[ "$(jq_py "j['state']")" = queued ] || fail "identical request: state"
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/m:base","recipe":"Q6_K"}'
expect 202 "a second queued job"
C=$(jq_py "j['id']")
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/m:base","recipe":"Q5_0"}'
expect 202 "a third queued job"
D=$(jq_py "j['id']")
cp "$T/body" "$T/jobD.json"
stop_daemon

# what a daemon killed in the middle of job D leaves behind: its record says "running" (written offline with
# the store API, so the state is exact rather than raced against a real job)
python3 - "$T/jobD.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["state"], j["stage"], j["progress"] = "running", "quantize", 0.3
open(sys.argv[1], "w").write(json.dumps(j))
PY
"$QD_TOOLS/job_put" "$T/store" "$D" "$T/jobD.json" || fail "job_put"

# restart with one runner: the queued jobs run, in order, and finish
start_daemon --auth=false --max-jobs=1
grep -q "job=$D requeued after a restart" "$T/log" || fail "the running job was not requeued at start"
for id in "$B" "$C" "$D"; do
    st=
    for _ in $(seq 1 600); do
        req GET "/v1/jobs/$id"
        expect 200 "GET job after restart"
        st=$(jq_py "j['state']")
        case $st in done | failed | cancelled) break ;; esac
        sleep 0.1
    done
    [ "$st" = done ] || fail "job $id after restart: state $st $(jq_py "j.get('error')")"
    man=$(jq_py "j['result']['manifest']")
    req GET "/v2/org/m/manifests/$man"
    expect 200 "the variant of $id"
done
req GET "/v1/jobs/$B"
VPATH=$(jq_py "j['validation']['path']")
echo "validation path of this build: $VPATH"
req GET "/v1/jobs/$D"
[ "$(jq_py "j['attempt']")" = 2 ] || fail "the interrupted job should be on its second attempt"
req GET "/v1/jobs/$A"
[ "$(jq_py "j['state']")" = cancelled ] || fail "the cancelled job came back"

# a GGUF source: with the runtime's model adapter linked in, the job validates the GGUF files and publishes;
# without it (the runtime loads llama2.c only) there is no verdict: the job fails at validate with the reason,
# and nothing is published. Which build this is shows in the Q8_0 job above (validation.path).
"$QD_TOOLS/gen_ckpt" --out "$T/tiny.gguf" --format gguf --dim 64 --ff 128 --layers 1 --vocab 64 --ctx 64 \
    >/dev/null || fail "gen_ckpt"
push_blob org/g "$T/config.json"
push_blob org/g "$T/tiny.gguf"
make_manifest "$T/g.json" "$T/config.json" "$T/tiny.gguf"
req PUT /v2/org/g/manifests/base --data-binary @"$T/g.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push a GGUF checkpoint"
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/g:base","recipe":"Q8_0"}'
expect 202 "a job on a GGUF source"
G=$(jq_py "j['id']")
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$G"
    st=$(jq_py "j['state']")
    case $st in done | failed | cancelled) break ;; esac
    sleep 0.1
done
if [ "${VPATH%%:*}" = gguf ]; then
    [ "$st" = done ] || fail "a GGUF source job should validate with the model adapter, got $st"
    [ "$(jq_py "j['validation']['path']")" = "$VPATH" ] || fail "GGUF job validation path"
    req GET "/v2/org/g/referrers/$(sha "$T/g.json")"
    [ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "the GGUF source's variant was not published"
else
    [ "$st" = failed ] || fail "a GGUF source job should fail at validation (no runtime adapter), got $st"
    [ "$(jq_py "j['stage']")" = validate ] || fail "the GGUF job failed elsewhere than validate"
    jq_py "j['error']['message']" | grep -q "validation unavailable" || fail "the failure does not say why"
    req GET "/v2/org/g/referrers/$(sha "$T/g.json")"
    [ "$(jq_py "len(j['manifests'])")" = 0 ] || fail "a variant without a verdict was published"
fi
stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
echo "ok: 311 jobs cancel and restart"
