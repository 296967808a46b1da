#!/usr/bin/env bash
# DELETE /v1/jobs/ID stops a job inside its quantize stage: the quantizer asks its cancel hook after every chunk
# of rows, so the job ends "cancelled" before the quantization is complete (its recorded progress stays below the
# end of the quantize stage, 0.55, which a quantizer that ran to completion would have reported), with no variant,
# no tag and no temp file left. Source: stories260K with each layer repeated 40 times (tile_llama2c.py, 110 MB);
# its 600 layers make about 5400 tensors, each at least one chunk: as many points to stop at.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }
python3 "$here/tile_llama2c.py" "$MODEL" "$T/tiled.bin" 120 || fail "tile the model"

start_daemon --auth=false --max-jobs=1 --job-threads=1 --job-memory=512M
echo '{"config":{"format":"llama2c"}}' >"$T/config.json"
push_blob org/c "$T/config.json"
push_blob org/c "$T/tiled.bin"
make_manifest "$T/ckpt.json" "$T/config.json" "$T/tiled.bin"
req PUT /v2/org/c/manifests/base --data-binary @"$T/ckpt.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "push the checkpoint"
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/c:base","recipe":"Q4_K_M"}'
expect 202 "queue a job"
J=$(sed -n 's/^{"id":"\([0-9a-f]*\)".*/\1/p' "$T/body")

# bounded poll until the quantizer has reported at least one chunk (progress past the stage's start, 0.1)
seen=
for _ in $(seq 1 1000); do
    body=$(curl -sS --max-time 5 "$URL/v1/jobs/$J") || fail "poll"
    case $body in
    *'"state":"running"'*'"stage":"quantize"'*'"progress":0.1'[1-9]* | \
        *'"state":"running"'*'"stage":"quantize"'*'"progress":0.2'*) seen=1; break ;;
    *'"state":"done"'* | *'"state":"failed"'*) break ;;
    esac
    sleep 0.01
done
[ -n "$seen" ] || fail "never saw the job early in its quantize stage: $body"
req DELETE "/v1/jobs/$J"
expect 202 "cancel the quantizing job"
for _ in $(seq 1 600); do
    req GET "/v1/jobs/$J"
    case $(cat "$T/body") in *'"state":"done"'* | *'"state":"failed"'* | *'"state":"cancelled"'*) break ;; esac
    sleep 0.05
done
[ "$(jq_py "j['state']")" = cancelled ] || fail "the job did not end cancelled: $(jq_py "j['state']")"
[ "$(jq_py "j['stage']")" = quantize ] || fail "the job ended in stage $(jq_py "j['stage']"), not quantize"
jq_py "0 if j['progress'] < 0.55 else 1/0" >/dev/null 2>&1 ||
    fail "the quantization ran to its end before stopping (progress $(jq_py "j['progress']"))"
grep -q "job=$J cancelled stage=quantize" "$T/log" || fail "no log line for the cancel in the quantize stage"
req GET /v2/org/c/manifests/q4_k_m
expect 404 "a cancelled job published a tag"
[ -z "$(ls -A "$T/store/jobs-tmp")" ] || fail "temp files left in jobs-tmp: $(ls -A "$T/store/jobs-tmp")"
# the runner is free again: a new job of the same source runs
req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/c:base","recipe":"Q8_0"}'
expect 202 "a job after the cancel"
stop_daemon
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
echo "ok"
