#!/usr/bin/env bash
# The OCI push and pull paths against a real quantd: monolithic and chunked blob uploads, resume through the
# upload status, manifests by tag and digest, HEAD, Range reads (206, 416, suffix ranges).
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false

# --- base
req GET /v2/; expect 200 "GET /v2/"
[ "$(hdr Docker-Distribution-API-Version)" = "registry/2.0" ] || fail "API version header"

# --- monolithic blob push
head -c 300000 /dev/urandom >"$T/layer1"
echo '{"format":"gguf","precision":"f16"}' >"$T/config"
push_blob org/model "$T/config"
[ "$(hdr Docker-Content-Digest)" = "$(sha "$T/config")" ] || fail "Docker-Content-Digest on monolithic push"
push_blob org/model "$T/layer1"

# --- chunked upload: POST, PATCH, PATCH, status, PUT
head -c 2500000 /dev/urandom >"$T/layer2"
head -c 1000000 "$T/layer2" >"$T/c1"
tail -c +1000001 "$T/layer2" | head -c 1000000 >"$T/c2"
tail -c +2000001 "$T/layer2" >"$T/c3"
req POST /v2/org/model/blobs/uploads/; expect 202 "start upload"
LOC=$(hdr Location); UUID=$(hdr Docker-Upload-UUID)
[ -n "$UUID" ] && [ "$LOC" = "/v2/org/model/blobs/uploads/$UUID" ] || fail "Location/UUID: $LOC / $UUID"
req PATCH "$LOC" --data-binary @"$T/c1" -H 'Content-Range: 0-999999' -H 'Content-Type: application/octet-stream'
expect 202 "PATCH chunk 1"
[ "$(hdr Range)" = "0-999999" ] || fail "Range after chunk 1: $(hdr Range)"
# out of order: a chunk that does not start where the upload ends
req PATCH "$LOC" --data-binary @"$T/c3" -H "Content-Range: 2000000-$((2000000 + $(stat -c %s "$T/c3") - 1))" \
    -H 'Content-Type: application/octet-stream'
expect 416 "out-of-order chunk"
[ "$(hdr Range)" = "0-999999" ] || fail "Range after refused chunk: $(hdr Range)"
# resume: ask where the upload stands, continue from there
req GET "$LOC"; expect 204 "upload status"
[ "$(hdr Range)" = "0-999999" ] || fail "status Range: $(hdr Range)"
req PATCH "$LOC" --data-binary @"$T/c2" -H 'Content-Range: 1000000-1999999' -H 'Content-Type: application/octet-stream'
expect 202 "PATCH chunk 2"
# the last chunk comes with the PUT
req PUT "$LOC?digest=$(sha "$T/layer2")" --data-binary @"$T/c3" -H 'Content-Type: application/octet-stream'
expect 201 "finish upload"
[ "$(hdr Location)" = "/v2/org/model/blobs/$(sha "$T/layer2")" ] || fail "Location after PUT"
req GET "$LOC"; expect 404 "a finished session is gone"; expect_code BLOB_UPLOAD_UNKNOWN

# --- blob GET / HEAD / Range
req GET "/v2/org/model/blobs/$(sha "$T/layer2")"; expect 200 "blob GET"
cmp -s "$T/body" "$T/layer2" || fail "blob GET returned other bytes"
[ "$(hdr Docker-Content-Digest)" = "$(sha "$T/layer2")" ] || fail "blob digest header"
req HEAD "/v2/org/model/blobs/$(sha "$T/layer2")" -I; expect 200 "blob HEAD"
[ "$(hdr Content-Length)" = "2500000" ] || fail "HEAD Content-Length $(hdr Content-Length)"
req GET "/v2/org/model/blobs/$(sha "$T/layer2")" -H 'Range: bytes=1000-1999'; expect 206 "Range"
head -c 2000 "$T/layer2" | tail -c 1000 | cmp -s - "$T/body" || fail "Range bytes differ"
[ "$(hdr Content-Range)" = "bytes 1000-1999/2500000" ] || fail "Content-Range $(hdr Content-Range)"
req GET "/v2/org/model/blobs/$(sha "$T/layer2")" -H 'Range: bytes=-100'; expect 206 "suffix Range"
tail -c 100 "$T/layer2" | cmp -s - "$T/body" || fail "suffix Range bytes differ"
req GET "/v2/org/model/blobs/$(sha "$T/layer2")" -H 'Range: bytes=2499990-'; expect 206 "open Range"
[ "$(stat -c %s "$T/body")" = 10 ] || fail "open range length"
req GET "/v2/org/model/blobs/$(sha "$T/layer2")" -H 'Range: bytes=2500000-2500010'; expect 416 "unsatisfiable Range"
[ "$(hdr Content-Range)" = "bytes */2500000" ] || fail "416 Content-Range"
req GET "/v2/other/repo/blobs/$(sha "$T/layer2")"; expect 404 "blob of another repository"; expect_code BLOB_UNKNOWN

# --- manifests by tag and by digest
make_manifest "$T/manifest" "$T/config" "$T/layer1" "$T/layer2"
MD=$(sha "$T/manifest")
req PUT /v2/org/model/manifests/v1 --data-binary @"$T/manifest" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "manifest PUT by tag"
[ "$(hdr Docker-Content-Digest)" = "$MD" ] || fail "manifest digest header"
[ "$(hdr Location)" = "/v2/org/model/manifests/$MD" ] || fail "manifest Location"
req GET /v2/org/model/manifests/v1; expect 200 "manifest GET by tag"
cmp -s "$T/body" "$T/manifest" || fail "manifest bytes differ"
[ "$(hdr Content-Type)" = "application/vnd.oci.image.manifest.v1+json" ] || fail "manifest Content-Type"
[ "$(hdr Docker-Content-Digest)" = "$MD" ] || fail "GET digest header"
req GET "/v2/org/model/manifests/$MD"; expect 200 "manifest GET by digest"
cmp -s "$T/body" "$T/manifest" || fail "manifest bytes by digest differ"
req HEAD /v2/org/model/manifests/v1 -I; expect 200 "manifest HEAD"
[ "$(hdr Content-Length)" = "$(stat -c %s "$T/manifest")" ] || fail "HEAD manifest length"
# push by digest (no tag)
make_manifest "$T/manifest2" "$T/config" "$T/layer1"
req PUT "/v2/org/model/manifests/$(sha "$T/manifest2")" --data-binary @"$T/manifest2" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "manifest PUT by digest"
req GET /v2/org/model/manifests/nosuchtag; expect 404 "unknown tag"; expect_code MANIFEST_UNKNOWN

# --- the store is consistent while the daemon runs (fsck opens it read-only)
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck found problems"; }
stop_daemon
grep -q ' req=[0-9]* PUT /v2/org/model/manifests/v1 status=201' "$T/log" || fail "no request log line for the PUT"
echo "ok"
