#!/usr/bin/env bash
# quant quantize NAME:TAG against a real quantd (POST /v1/jobs) and quant jobs ls|show|cancel|follow: a passing
# verdict exits 0 and prints the published variant, a failing one exits 9 (--follow reads the SSE event stream);
# deduplication; --json outputs against schemas/client.schema.json; cancel of a queued job ends its follower;
# the progress bar on a terminal (script(1) gives the client a pty); the local form of quant quantize still works
# (--in, or a local file as the operand), and NAME:TAG without a registry is a usage error.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"
. "$here/client_lib.sh"
MODEL=$(cd "$here/../.." && pwd)/../shared/models/stories260K.bin
[ -f "$MODEL" ] || { echo "stories260K.bin not found under ../shared/models"; exit 77; }
client_setup
cp "$MODEL" "$T/stories260K.bin"
# mean KLD at most 0.1: Q8_0 passes (about 0.02), Q4_K_M fails (about 1.0) on this 260K-parameter model
echo '{"version": 1, "classes": [{"name": "any", "min_bits": 0, "max_mean_kld": 0.1}]}' >"$T/vpolicy.json"
TOK=$("$QUANT" token create --store "$T/store" --name q --scopes 'push:org/*,quantize:org/*' 2>/dev/null) ||
    fail "token create"
PUSHONLY=$("$QUANT" token create --store "$T/store" --name p --scopes 'push:org/*' 2>/dev/null) || fail "token create"
export QUANT_TOKEN=$TOK
start_daemon --max-jobs=1 --job-threads=1 --validation-policy="$T/vpolicy.json"
qrun 0 push org/stories:ckpt "$T/stories260K.bin" --registry "$URL"

# ---- the local form is kept: --in, and a local file as the operand (with --recipe as --type)
qrun 0 quantize --in "$T/stories260K.bin" --type Q8_0 --out "$T/local1.gguf"
qrun 0 quantize "$T/stories260K.bin" --recipe Q8_0 --out "$T/local2.gguf"
cmp "$T/local1.gguf" "$T/local2.gguf" || fail "the two local forms made different files"
# NAME:TAG without a registry: usage, and the message names both ways
qrun 2 quantize org/stories:ckpt --recipe Q8_0
grep -q -- "--registry" "$T/err" && grep -q -- "--in SRC" "$T/err" || fail "no-registry message: $(cat "$T/err")"
qrun 2 quantize org/stories:ckpt --registry "$URL"
grep -q -- "--recipe" "$T/err" || fail "missing --recipe message: $(cat "$T/err")"
qrun 0 quantize org/stories:ckpt --help
grep -q "POST /v1/jobs" "$T/out" || fail "the registry form's help"
qrun 0 quantize --help
grep -q "local file or directory" "$T/out" || fail "the local help does not state the rule"

# ---- errors from the daemon map to exit codes
QUANT_TOKEN=$PUSHONLY qrun 1 quantize org/stories:ckpt --recipe Q8_0 --registry "$URL"
grep -q "403" "$T/err" || fail "403 message: $(cat "$T/err")"
qrun 2 quantize org/stories:ckpt --recipe Q9_X --registry "$URL"
grep -q "RECIPE_UNKNOWN" "$T/err" || fail "unknown recipe message: $(cat "$T/err")"
qrun 3 quantize org/stories:nope --recipe Q8_0 --registry "$URL"
qrun 5 quantize org/stories:ckpt --recipe Q8_0 --registry "http://127.0.0.1:1"

# ---- a passing job, followed: exit 0, the published variant on stdout; stages reported on stderr (no tty)
qrun 0 quantize org/stories:ckpt --recipe Q8_0 --hardware x86_64-avx2 --follow --registry "$URL"
grep -qE '^org/stories:[a-z0-9_.-]+@sha256:[0-9a-f]{64}$' "$T/out" || fail "follow output: $(cat "$T/out")"
VAR=$(cat "$T/out")
J8=$(sed -n 's/.*job \([0-9a-f]\{16\}\) queued.*/\1/p' "$T/err")
[ -n "$J8" ] || fail "no job id reported: $(cat "$T/err")"
grep -q "job $J8: done" "$T/err" || fail "the end was not reported: $(cat "$T/err")"
# the variant is really there, tagged as printed
TAGGED=${VAR%@*}
req GET "/v2/org/stories/manifests/${TAGGED#org/stories:}" -H "Authorization: Bearer $TOK"
expect 200 "the published variant's manifest"
[ "$(sha "$T/body")" = "${VAR#*@}" ] || fail "the printed digest is not the tag's manifest"

# ---- a failing verdict: exit 9, the untagged variant's digest on stdout
qrun 9 quantize org/stories:ckpt --recipe Q4_K_M --follow --registry "$URL"
grep -q "validation failed" "$T/err" || fail "failed verdict message: $(cat "$T/err")"
grep -qE '^org/stories@sha256:[0-9a-f]{64}$' "$T/out" || fail "failed verdict output: $(cat "$T/out")"
J4=$(sed -n 's/.*job \([0-9a-f]\{16\}\) queued.*/\1/p' "$T/err")

# ---- the same request again: deduplicated (same job), --json matches the schema
qrun 0 quantize org/stories:ckpt --recipe Q4_K_M --registry "$URL" --json
schema_keep job "$T/out"
"$PYTHON" -c "import json,sys; j=json.load(open('$T/out')); sys.exit(not (j['deduplicated'] and j['id']=='$J4'))" ||
    fail "not deduplicated: $(cat "$T/out")"
qrun 0 quantize org/stories:ckpt --recipe Q4_K_M --registry "$URL"
[ "$(cat "$T/out")" = "$J4" ] || fail "stdout should be the job id: $(cat "$T/out")"
# jobs follow of a finished job: its outcome again
qrun 9 jobs follow "$J4" --registry "$URL"
qrun 0 jobs follow "$J8" --registry "$URL" --json
schema_keep job "$T/out"

# ---- quant jobs ls / show
qrun 0 jobs --registry "$URL"
grep -q "^$J8 .*done.*Q8_0.*pass" "$T/out" || fail "jobs ls: $(cat "$T/out")"
grep -q "^$J4 .*done.*Q4_K_M.*fail" "$T/out" || fail "jobs ls: $(cat "$T/out")"
qrun 0 jobs ls --json --registry "$URL"
schema_keep job_list "$T/out"
[ "$("$PYTHON" -c "import json; print(len(json.load(open('$T/out'))))")" = 2 ] || fail "two jobs expected"
qrun 0 jobs ls --state running --json --registry "$URL"
[ "$(cat "$T/out" | tr -d ' \n')" = "[]" ] || fail "no running job expected: $(cat "$T/out")"
qrun 0 jobs show "$J8" --registry "$URL"
grep -q "^verdict  *pass" "$T/out" && grep -q "^tag  *${VAR%@*}" "$T/out" || fail "jobs show: $(cat "$T/out")"
qrun 0 jobs show "$J8" --json --registry "$URL"
schema_keep job "$T/out"
qrun 3 jobs show 0123456789abcdef --registry "$URL"
qrun 2 jobs show nothex --registry "$URL"
qrun 2 jobs frobnicate --registry "$URL"
# cancel a finished job: conflict
qrun 6 jobs cancel "$J8" --registry "$URL"
grep -q "already ended" "$T/err" || fail "cancel message: $(cat "$T/err")"
stop_daemon

# ---- max-jobs=0 keeps a job queued: follow it in the background, cancel it, the follower ends with exit 1
start_daemon --max-jobs=0
# a calibrated request (queued, then cancelled): the record carries the class and the dataset; a class without a
# dataset is refused with the registry's reason
qrun 0 quantize org/stories:ckpt --recipe Q4_K_M --calib sample:4:16:3 --calib-class code --registry "$URL" --json
JC=$("$PYTHON" -c "import json; c = json.load(open('$T/out'))['calibration']; assert c == {'class': 'code', 'dataset': 'sample:4:16:3'}, c; print(json.load(open('$T/out'))['id'])") ||
    fail "calibrated job record: $(cat "$T/out")"
qrun 0 jobs show "$JC" --registry "$URL"
grep -q "^calibration  code on sample:4:16:3$" "$T/out" || fail "jobs show calibration: $(cat "$T/out")"
qrun 0 jobs cancel "$JC" --registry "$URL"
qrun 2 quantize org/stories:ckpt --recipe Q4_K_M --calib code --registry "$URL"
grep -q "CALIBRATION_UNSUPPORTED" "$T/err" || fail "a class without a dataset: $(cat "$T/err")"
qrun 0 quantize org/stories:ckpt --recipe Q5_0 --registry "$URL" --json
JQ=$("$PYTHON" -c "import json; print(json.load(open('$T/out'))['id'])")
"$QUANT" jobs follow "$JQ" --registry "$URL" >"$T/fout" 2>"$T/ferr" &
FOLLOWER=$!
for _ in $(seq 1 200); do grep -q "job $JQ: queued" "$T/ferr" 2>/dev/null && break; sleep 0.05; done
grep -q "job $JQ: queued" "$T/ferr" || fail "the follower did not report the queued job: $(cat "$T/ferr")"
qrun 0 jobs cancel "$JQ" --registry "$URL"
grep -q "^$JQ cancelled$" "$T/out" || fail "cancel output: $(cat "$T/out")"
wait "$FOLLOWER"
rc=$?
[ "$rc" = 1 ] || fail "the follower of a cancelled job exited $rc: $(cat "$T/ferr")"
grep -q "cancelled" "$T/ferr" || fail "the follower did not report the cancel: $(cat "$T/ferr")"

# ---- the progress bar on a terminal: script(1) gives quant a pty; the bar redraws with \r and names the state
if command -v script >/dev/null; then
    qrun 0 quantize org/stories:ckpt --recipe Q6_K --registry "$URL"
    JB=$(cat "$T/out")
    "$QUANT" jobs follow "$JB" --registry "$URL" >/dev/null 2>"$T/berr" &
    B2=$!
    for _ in $(seq 1 200); do grep -q "job $JB: queued" "$T/berr" 2>/dev/null && break; sleep 0.05; done
    # the pty follower: its output (stdout and stderr together) goes to $T/typescript
    script -qfec "$QUANT jobs follow $JB --registry $URL" "$T/typescript" >/dev/null 2>&1 </dev/null &
    S=$!
    for _ in $(seq 1 200); do grep -q "queued" "$T/typescript" 2>/dev/null && break; sleep 0.05; done
    grep -q "queued" "$T/typescript" || fail "no bar on the pty: $(od -c "$T/typescript" | head)"
    qrun 0 jobs cancel "$JB" --registry "$URL"
    wait "$S"
    wait "$B2"
    grep -q $'\r\033\\[Kjob '"$JB queued" "$T/typescript" || fail "the bar is not redrawn with CR: $(od -c "$T/typescript" | head)"
    grep -q '\[>  ' "$T/typescript" || fail "the bar has no bar: $(od -c "$T/typescript" | head -20)"
fi
stop_daemon
schema_check_all
echo "ok"
