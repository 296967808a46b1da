#!/usr/bin/env bash
# Bad input gets the right OCI error code and body, nothing is stored, and the daemon keeps serving:
# names and path tricks, tags, digest mismatches, manifests (malformed, missing blobs, oversized), oversized
# headers and bodies, wrong methods.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false --max-manifest-bytes=4096 --max-body-bytes=65536 --max-header-bytes=4096

# --- names and path tricks (curl --path-as-is keeps dot segments as sent)
for p in /v2/Org/m/tags/list /v2/org/../etc/tags/list /v2/org/./m/tags/list /v2/org%2fm/tags/list \
    /v2/org//m/tags/list /v2/-org/m/tags/list /v2/org/m-/tags/list /v2/org/m/tags/list/extra \
    '/v2/org/m%00/tags/list' /v2/org/m..x/tags/list /v2/org/__m/tags/list; do
    req GET "$p" --path-as-is; expect 400 "path $p"; expect_code NAME_INVALID
done
LONG=$(printf 'a%.0s' $(seq 1 300))
req GET "/v2/org/$LONG/tags/list"; expect 400 "a 300-character name"; expect_code NAME_INVALID
# valid names with every separator are accepted (unknown, so 404)
req GET /v2/a.b/c_d/e__f/g--h/tags/list; expect 404 "valid separators"; expect_code NAME_UNKNOWN

# --- tags and digests
echo '{"format":"gguf"}' >"$T/config"
push_blob org/m "$T/config"
make_manifest "$T/m" "$T/config"
for tag in -bad .bad "$(printf 'x%.0s' $(seq 1 129))"; do
    req PUT "/v2/org/m/manifests/$tag" --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
    expect 400 "tag '$tag'"; expect_code TAG_INVALID
done
req GET /v2/org/m/manifests/sha256:1234; expect 400 "short digest"; expect_code DIGEST_INVALID
req GET "/v2/org/m/blobs/md5:$(printf '0%.0s' $(seq 1 32))"; expect 400 "other algorithm"; expect_code DIGEST_INVALID

# --- digest mismatch on upload: nothing stored
head -c 5000 /dev/urandom >"$T/x"
WRONG=sha256:$(printf '1%.0s' $(seq 1 64))
req POST "/v2/org/m/blobs/uploads/?digest=$WRONG" --data-binary @"$T/x" -H 'Content-Type: application/octet-stream'
expect 400 "monolithic mismatch"; expect_code DIGEST_INVALID
req GET "/v2/org/m/blobs/$(sha "$T/x")"; expect 404 "mismatched blob not stored"
req POST /v2/org/m/blobs/uploads/; expect 202 "session"; LOC=$(hdr Location)
req PUT "$LOC?digest=$WRONG" --data-binary @"$T/x" -H 'Content-Type: application/octet-stream'
expect 400 "session mismatch"; expect_code DIGEST_INVALID
req GET "/v2/org/m/blobs/$(sha "$T/x")"; expect 404 "mismatched session blob not stored"
req PUT "$LOC" --data-binary @"$T/x"; expect 404 "PUT without digest on a closed session"
req POST /v2/org/m/blobs/uploads/; expect 202 "session 2"; LOC=$(hdr Location)
req PUT "$LOC" --data-binary @"$T/x" -H 'Content-Type: application/octet-stream'; expect 400 "PUT without digest"
expect_code DIGEST_INVALID
req PATCH "$LOC" --data-binary @"$T/x" -H 'Content-Range: 0-10' -H 'Content-Type: application/octet-stream'
expect 416 "Content-Range that does not match the body"
req PATCH "/v2/org/m/blobs/uploads/0123456789abcdef0123456789abcdef" --data-binary @"$T/x"; expect 404 "unknown session"
expect_code BLOB_UPLOAD_UNKNOWN
req PATCH "/v2/org/other/blobs/uploads/${LOC##*/}" --data-binary @"$T/x"; expect 404 "session of another repository"

# --- manifests
printf '{"schemaVersion":2,' >"$T/bad.json"
req PUT /v2/org/m/manifests/t --data-binary @"$T/bad.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 400 "malformed JSON"; expect_code MANIFEST_INVALID
echo '{"schemaVersion":1}' >"$T/v1.json"
req PUT /v2/org/m/manifests/t --data-binary @"$T/v1.json" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 400 "schemaVersion 1"; expect_code MANIFEST_INVALID
req PUT /v2/org/m/manifests/t --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.index.v1+json'
expect 400 "Content-Type differs from mediaType"; expect_code MANIFEST_INVALID
make_manifest "$T/missing" "$T/config" "$T/x"
req PUT /v2/org/m/manifests/t --data-binary @"$T/missing" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 400 "a layer that was never pushed"; expect_code MANIFEST_BLOB_UNKNOWN
req GET "/v2/org/m/manifests/$(sha "$T/missing")"; expect 404 "refused manifest not stored"
req GET /v2/org/m/manifests/t; expect 404 "refused manifest not tagged"
req PUT "/v2/org/m/manifests/$WRONG" --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 400 "manifest digest mismatch"; expect_code DIGEST_INVALID
python3 -c "
import json; m=json.load(open('$T/m')); m['annotations']={'pad':'x'*5000}; open('$T/big','w').write(json.dumps(m))"
req PUT /v2/org/m/manifests/big --data-binary @"$T/big" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 413 "oversized manifest"

# --- oversized header and body: refused by the HTTP layer
req GET /v2/ -H "X-Big: $(printf 'h%.0s' $(seq 1 5000))"
[ "$STATUS" = 400 ] || [ "$STATUS" = 413 ] || [ "$STATUS" = 431 ] || fail "oversized header: $STATUS"
head -c 100000 /dev/urandom >"$T/big.bin"
req POST /v2/org/m/blobs/uploads/; LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/big.bin" -H 'Content-Type: application/octet-stream'; expect 413 "oversized body"
req GET "$LOC"; expect 204 "session survives a refused chunk"; [ "$(hdr Range)" = "0-0" ] || fail "nothing appended"

# --- methods
req PATCH /v2/org/m/manifests/t; expect 405 "PATCH a manifest"; expect_code UNSUPPORTED
req POST /v2/; expect 405 "POST /v2/"
req GET /nowhere; expect 404 "unknown endpoint"

# the daemon still serves, and only the good blob and nothing else is stored
req GET /v2/; expect 200 "still serving"
[ "$("$QUANT" store ls --store "$T/store" | grep -c sha256:)" = 1 ] || { "$QUANT" store ls --store "$T/store"; fail "stored blobs"; }
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
echo ok
