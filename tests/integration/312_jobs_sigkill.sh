#!/usr/bin/env bash
# SIGKILL in the middle of a job: the daemon comes back, queues the job again (attempt 2), finishes it, and fsck
# is clean. Then a running job is cancelled. The job needs to run for seconds, so the source is stories260K with each layer repeated 40 times
# (tile_llama2c.py; 9M weights, 37 MB).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }
python3 "$here/tile_llama2c.py" "$MODEL" "$T/tiled.bin" 40 || fail "tile the model"

start_daemon --auth=false --max-jobs=1 --job-threads=1
echo '{"config":{"format":"llama2c"}}' >"$T/config.json"
push_blob org/t "$T/config.json"
push_blob org/t "$T/tiled.bin"
make_manifest "$T/ckpt.json" "$T/config.json" "$T/tiled.bin"
req PUT /v2/org/t/manifests/base --data-binary @"$T/ckpt.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push the checkpoint"
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/t:base","recipe":"Q4_K_M"}'
expect 202 "queue a job"
J=$(sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")

# bounded poll (curl + grep, no python, to be quick) until the job is quantizing or validating, then SIGKILL
seen=
for _ in $(seq 1 400); do
    body=$(curl -sS --max-time 5 "$URL/v1/jobs/$J") || fail "poll"
    case $body in
    *'"state":"running"'*'"stage":"quantize"'* | *'"state":"running"'*'"stage":"validate"'*) seen=1; break ;;
    *'"state":"done"'* | *'"state":"failed"'*) break ;;
    esac
    sleep 0.02
done
[ -n "$seen" ] || fail "never saw the job running (it ended or never started): $body"
kill -KILL "$PID"
wait "$PID" 2>/dev/null
PID=

# the record still says running; a fresh daemon queues it again and finishes it
start_daemon --auth=false --max-jobs=1 --job-threads=1
grep -q "job=$J requeued after a restart" "$T/log" || fail "the job was not requeued at start"
st=
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$J"
    case $(cat "$T/body") in *'"state":"done"'* | *'"state":"failed"'* | *'"state":"cancelled"'*) break ;; esac
    sleep 0.1
done
[ "$(jq_py "j['state']")" = done ] || fail "the job did not finish after the restart: $(jq_py "j.get('error')")"
[ "$(jq_py "j['attempt']")" = 2 ] || fail "attempt should be 2"
man=$(jq_py "j['result']['manifest']")
req GET "/v2/org/t/manifests/$man"
expect 200 "the variant after the restart"
req GET "/v2/org/t/referrers/$man"
[ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "the variant's bundle referrer"
[ -z "$(ls -A "$T/store/jobs-tmp")" ] || fail "temp files left in jobs-tmp"

# cancelling a running job: 202, and it ends cancelled at its next check, with nothing published
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/t:base","recipe":"Q5_0"}'
expect 202 "queue a second job"
K=$(sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")
seen=
for _ in $(seq 1 400); do
    body=$(curl -sS --max-time 5 "$URL/v1/jobs/$K") || fail "poll"
    case $body in
    *'"state":"running"'*'"stage":"load"'* | *'"state":"running"'*'"stage":"quantize"'*) seen=1; break ;;
    *'"state":"done"'* | *'"state":"failed"'*) break ;;
    esac
    sleep 0.02
done
[ -n "$seen" ] || fail "never saw the second job running: $body"
req DELETE "/v1/jobs/$K"
expect 202 "cancel a running job"
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$K"
    case $(cat "$T/body") in *'"state":"done"'* | *'"state":"failed"'* | *'"state":"cancelled"'*) break ;; esac
    sleep 0.1
done
[ "$(jq_py "j['state']")" = cancelled ] || fail "the running job did not end cancelled: $(jq_py "j['state']")"
req GET "/v2/org/t/manifests/q5_0"
expect 404 "a cancelled job published a tag"
stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
echo "ok: 312 jobs sigkill"
