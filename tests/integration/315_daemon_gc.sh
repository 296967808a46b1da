#!/usr/bin/env bash
# POST /v1/gc (admin) removes orphan blobs: in no repository, referenced by nothing, older than the grace period.
# The orphan here is a blob put into the store directly, the state a crash between storing an upload and linking
# it leaves. Blobs a repository holds (a lone layer, a manifest's config and layers, the manifest itself) stay;
# a recent orphan stays under the default grace; a dry run removes nothing; while a quantize job runs the
# collection is refused (409). Afterwards the repository still pulls and fsck is clean.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/daemon_lib.sh"

head -c 300000 /dev/urandom >"$T/orphan"
ORPHAN=$("$QUANT" store put "$T/orphan" --store "$T/store") || fail "store put"
ADMIN=$("$QUANT" token create --store "$T/store" --name a --scopes 'admin:*' 2>/dev/null) || fail "token create"
PUSH=$("$QUANT" token create --store "$T/store" --name p --scopes 'push:org/*' 2>/dev/null) || fail "token create"
AUTH="Authorization: Bearer $PUSH"
start_daemon --max-jobs=1 --job-threads=1

head -c 200000 /dev/urandom >"$T/lone"
head -c 250000 /dev/urandom >"$T/layer"
echo '{"config":{"format":"raw"}}' >"$T/config.json"
push_blob org/m "$T/lone"
push_blob org/m "$T/layer"
push_blob org/m "$T/config.json"
make_manifest "$T/m.json" "$T/config.json" "$T/layer"
req PUT /v2/org/m/manifests/v1 --data-binary @"$T/m.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    -H "$AUTH"
expect 201 "push a manifest"

req POST /v1/gc
expect 401 "gc without a token"
req POST /v1/gc -H "$AUTH"
expect 403 "gc with a push token"
req GET /v1/gc -H "Authorization: Bearer $ADMIN"
expect 405 "GET /v1/gc"
req POST "/v1/gc?grace=soon" -H "Authorization: Bearer $ADMIN"
expect 400 "a malformed grace"

# the default grace (an hour) keeps a blob stored seconds ago
req POST /v1/gc -H "Authorization: Bearer $ADMIN"
expect 200 "gc with the default grace"
[ "$(jq_py "len(j['removed'])")" = 0 ] || fail "a recent orphan was removed"
[ "$(jq_py "j['kept_recent']")" -ge 1 ] || fail "the recent orphan is not counted as kept"

# a dry run names the orphan and only it, and removes nothing
req POST "/v1/gc?grace=0&dry_run=1" -H "Authorization: Bearer $ADMIN"
expect 200 "dry run"
[ "$(jq_py "j['removed']")" = "['$ORPHAN']" ] || fail "dry run found $(jq_py "j['removed']"), expected [$ORPHAN]"
[ "$(jq_py "j['kept_held']")" -ge 1 ] || fail "the lone layer is not counted as held"
req POST "/v1/gc?grace=0&dry_run=1" -H "Authorization: Bearer $ADMIN"
[ "$(jq_py "j['removed']")" = "['$ORPHAN']" ] || fail "the dry run removed the orphan"

# while a job runs: refused
MODEL=$here/../../../shared/models/stories260K.bin
if [ -f "$MODEL" ]; then
    python3 "$here/tile_llama2c.py" "$MODEL" "$T/tiled.bin" 40 || fail "tile the model"
    push_blob org/c "$T/tiled.bin"
    push_blob org/c "$T/config.json"
    make_manifest "$T/ckpt.json" "$T/config.json" "$T/tiled.bin"
    req PUT /v2/org/c/manifests/base --data-binary @"$T/ckpt.json" \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' -H "$AUTH"
    expect 201 "push a checkpoint"
    req POST /v1/jobs -H 'Content-Type: application/json' --data-binary '{"source":"org/c:base","recipe":"Q8_0"}' \
        -H "Authorization: Bearer $ADMIN"
    expect 202 "queue a job"
    J=$(jq_py "j['id']")
    seen=
    for _ in $(seq 1 600); do
        body=$(curl -sS --max-time 5 -H "Authorization: Bearer $ADMIN" "$URL/v1/jobs/$J") || fail "poll"
        case $body in *'"state":"running"'*) seen=1; break ;; *'"state":"done"'* | *'"state":"failed"'*) break ;; esac
        sleep 0.02
    done
    [ -n "$seen" ] || fail "never saw the job running"
    req POST "/v1/gc?grace=0" -H "Authorization: Bearer $ADMIN"
    expect 409 "gc while a job runs"
    for _ in $(seq 1 600); do
        req GET "/v1/jobs/$J" -H "Authorization: Bearer $ADMIN"
        case $(cat "$T/body") in *'"state":"done"'* | *'"state":"failed"'*) break ;; esac
        sleep 0.1
    done
fi

req POST "/v1/gc?grace=0" -H "Authorization: Bearer $ADMIN"
expect 200 "gc"
[ "$(jq_py "j['removed']")" = "['$ORPHAN']" ] || fail "gc removed $(jq_py "j['removed']"), expected [$ORPHAN]"
[ "$(jq_py "j['removed_bytes']")" = 300000 ] || fail "removed_bytes"
grep -q "removed orphan blob $ORPHAN" "$T/log" || fail "no log line for the removed orphan"
req POST "/v1/gc?grace=0" -H "Authorization: Bearer $ADMIN"
[ "$(jq_py "len(j['removed'])")" = 0 ] || fail "a second gc removed more"

for f in lone layer config.json; do
    req GET "/v2/org/m/blobs/$(sha "$T/$f")"
    expect 200 "pull $f after gc"
    cmp -s "$T/body" "$T/$f" || fail "$f differs after gc"
done
req GET /v2/org/m/manifests/v1
expect 200 "pull the manifest after gc"
stop_daemon
"$QUANT" store stat "$ORPHAN" --store "$T/store" >/dev/null 2>&1 && fail "the orphan is still in the store"
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck after gc"; }
echo "ok"
