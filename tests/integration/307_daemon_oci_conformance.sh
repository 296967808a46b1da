#!/usr/bin/env bash
# The OCI distribution-spec conformance suite's test list (pull, push, content discovery, content management,
# referrers), ported to curl against a real quantd. Each case is named after the suite's test it mirrors
# ("<workflow> / <container> / <test>"); the checks are our own, written from the spec.
. "$(dirname "$0")/daemon_lib.sh"
# referrer lists are checked exactly here: no daemon-signed ingest referrers (316 tests those)
start_daemon --auth=false --ingest-sign-delay=-1
N=0
t() { CASE="$*"; N=$((N + 1)); }
fail_case() { fail "[$CASE] $*"; }
ok_status() { # allowed statuses...
    for s in "$@"; do [ "$STATUS" = "$s" ] && return 0; done
    fail_case "status $STATUS, expected one of $*"
}
R=conformance/repo
R2=conformance/cross
MT=application/vnd.oci.image.manifest.v1+json

printf '{"architecture":"amd64","os":"linux"}' >"$T/config"
head -c 4096 /dev/urandom >"$T/layer"
head -c 3000 /dev/urandom >"$T/chunked"
head -c 1500 "$T/chunked" >"$T/chunk1"; tail -c 1500 "$T/chunked" >"$T/chunk2"
CD=$(sha "$T/config"); LD=$(sha "$T/layer"); KD=$(sha "$T/chunked")
NOPE=sha256:$(printf 'f%.0s' $(seq 1 64))

# ---------------------------------------------------------------------------------------------------- 01 pull
t "Pull / Setup / Populate registry with test blob"
push_blob $R "$T/config"
t "Pull / Setup / Populate registry with test layer"
push_blob $R "$T/layer"
t "Pull / Setup / Populate registry with test manifest"
make_manifest "$T/manifest" "$T/config" "$T/layer"; MD=$(sha "$T/manifest")
req PUT "/v2/$R/manifests/tagtest0" --data-binary @"$T/manifest" -H "Content-Type: $MT"; ok_status 201
t "Pull / Pull blobs / HEAD request to nonexistent blob should result in 404 response"
req HEAD "/v2/$R/blobs/$NOPE" -I; ok_status 404
t "Pull / Pull blobs / HEAD request to existing blob should yield 200"
req HEAD "/v2/$R/blobs/$CD" -I; ok_status 200
[ "$(hdr Docker-Content-Digest)" = "$CD" ] || fail_case "Docker-Content-Digest"
t "Pull / Pull blobs / GET nonexistent blob should result in 404 response"
req GET "/v2/$R/blobs/$NOPE"; ok_status 404
t "Pull / Pull blobs / GET request to existing blob URL should yield 200"
req GET "/v2/$R/blobs/$CD"; ok_status 200; cmp -s "$T/body" "$T/config" || fail_case "bytes"
t "Pull / Pull manifests / HEAD request to nonexistent manifest should return 404"
req HEAD "/v2/$R/manifests/$NOPE" -I; ok_status 404
t "Pull / Pull manifests / HEAD request to manifest path (digest) should yield 200 response"
req HEAD "/v2/$R/manifests/$MD" -I; ok_status 200
[ "$(hdr Docker-Content-Digest)" = "$MD" ] || fail_case "Docker-Content-Digest"
t "Pull / Pull manifests / HEAD request to manifest path (tag) should yield 200 response"
req HEAD "/v2/$R/manifests/tagtest0" -I; ok_status 200
t "Pull / Pull manifests / GET nonexistent manifest should return 404"
req GET "/v2/$R/manifests/$NOPE"; ok_status 404
t "Pull / Pull manifests / GET request to manifest path (digest) should yield 200 response"
req GET "/v2/$R/manifests/$MD"; ok_status 200; cmp -s "$T/body" "$T/manifest" || fail_case "bytes"
t "Pull / Pull manifests / GET request to manifest path (tag) should yield 200 response"
req GET "/v2/$R/manifests/tagtest0"; ok_status 200; cmp -s "$T/body" "$T/manifest" || fail_case "bytes"
t "Pull / Error codes / 400 response body should contain OCI-conforming JSON message"
req PUT "/v2/$R/manifests/sha256:totallywrong" --data-binary @"$T/manifest" -H "Content-Type: $MT"; ok_status 400
python3 -c "
import json; j=json.load(open('$T/body'))
codes={'BLOB_UNKNOWN','BLOB_UPLOAD_INVALID','BLOB_UPLOAD_UNKNOWN','DIGEST_INVALID','MANIFEST_BLOB_UNKNOWN',
 'MANIFEST_INVALID','MANIFEST_UNKNOWN','NAME_INVALID','NAME_UNKNOWN','SIZE_INVALID','UNAUTHORIZED','DENIED',
 'UNSUPPORTED','TOOMANYREQUESTS'}
e=j['errors'][0]; assert e['code'] in codes and isinstance(e['message'], str), e" || fail_case "error body"

# ---------------------------------------------------------------------------------------------------- 02 push
t "Push / Blob Upload Streamed / PATCH request with blob in body should yield 202 response"
req POST "/v2/$R/blobs/uploads/"; ok_status 202; LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/layer" -H 'Content-Type: application/octet-stream'; ok_status 202; LOC=$(hdr Location)
t "Push / Blob Upload Streamed / PUT request to session URL with digest should yield 201 response"
req PUT "$LOC?digest=$LD" -H 'Content-Type: application/octet-stream'; ok_status 201
[ "$(hdr Location)" = "/v2/$R/blobs/$LD" ] || fail_case "Location"
t "Push / Blob Upload Monolithic / GET nonexistent blob should result in 404 response"
req GET "/v2/$R/blobs/$NOPE"; ok_status 404
t "Push / Blob Upload Monolithic / POST request with digest and blob should yield a 201 or 202"
req POST "/v2/$R/blobs/uploads/?digest=$CD" --data-binary @"$T/config" -H 'Content-Type: application/octet-stream'
ok_status 201 202
t "Push / Blob Upload Monolithic / GET request to blob URL from prior request should yield 200 or 404 based on response code"
req GET "/v2/$R/blobs/$CD"; ok_status 200
t "Push / Blob Upload Monolithic / POST request should yield a session ID"
req POST "/v2/$R/blobs/uploads/"; ok_status 202; LOC=$(hdr Location)
[ -n "$LOC" ] || fail_case "no Location"
t "Push / Blob Upload Monolithic / PUT upload of a blob should yield a 201 Response"
req PUT "$LOC?digest=$CD" --data-binary @"$T/config" -H 'Content-Type: application/octet-stream'; ok_status 201
t "Push / Blob Upload Monolithic / GET request to existing blob should yield 200 response"
req GET "/v2/$R/blobs/$CD"; ok_status 200
t "Push / Blob Upload Monolithic / PUT upload of a layer blob should yield a 201 Response"
req POST "/v2/$R/blobs/uploads/"; LOC=$(hdr Location)
req PUT "$LOC?digest=$LD" --data-binary @"$T/layer" -H 'Content-Type: application/octet-stream'; ok_status 201
t "Push / Blob Upload Monolithic / GET request to existing layer should yield 200 response"
req GET "/v2/$R/blobs/$LD"; ok_status 200; cmp -s "$T/body" "$T/layer" || fail_case "bytes"
t "Push / Blob Upload Chunked / PATCH request with first chunk should return 202"
req POST "/v2/$R/blobs/uploads/"; LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/chunk1" -H 'Content-Range: 0-1499' -H 'Content-Type: application/octet-stream'
ok_status 202; LOC=$(hdr Location)
[ "$(hdr Range)" = "0-1499" ] || fail_case "Range $(hdr Range)"
t "Push / Blob Upload Chunked / Out-of-order blob upload should return 416"
req PATCH "$LOC" --data-binary @"$T/chunk2" -H 'Content-Range: 1501-3000' -H 'Content-Type: application/octet-stream'
ok_status 416
t "Push / Blob Upload Chunked / PATCH request with second chunk should return 202"
req PATCH "$LOC" --data-binary @"$T/chunk2" -H 'Content-Range: 1500-2999' -H 'Content-Type: application/octet-stream'
ok_status 202; [ "$(hdr Range)" = "0-2999" ] || fail_case "Range $(hdr Range)"
t "Push / Blob Upload Chunked / PUT request with final chunk should return 201"
req PUT "$LOC?digest=$KD" -H 'Content-Type: application/octet-stream'; ok_status 201
t "Push / Blob Upload Chunked / GET request to blob URL from prior request should yield 200"
req GET "/v2/$R/blobs/$KD"; ok_status 200; cmp -s "$T/body" "$T/chunked" || fail_case "bytes"
t "Push / Cross-Repository Blob Mount / Cross-mounting of a blob without the from argument should yield session id"
req POST "/v2/$R2/blobs/uploads/?mount=$CD"; ok_status 202; [ -n "$(hdr Docker-Upload-UUID)" ] || fail_case "uuid"
t "Push / Cross-Repository Blob Mount / POST request to mount another repository's blob should return 201 or 202"
req POST "/v2/$R2/blobs/uploads/?mount=$CD&from=$R"; ok_status 201 202
t "Push / Cross-Repository Blob Mount / GET request to test digest within cross-mount namespace should return 200"
req GET "/v2/$R2/blobs/$CD"; ok_status 200
t "Push / Cross-Repository Blob Mount / Cross-mounting of nonexistent blob should yield session id"
req POST "/v2/$R2/blobs/uploads/?mount=$NOPE&from=$R"; ok_status 202; [ -n "$(hdr Location)" ] || fail_case "Location"
t "Push / Manifest Upload / GET nonexistent manifest should return 404"
req GET "/v2/$R/manifests/$NOPE"; ok_status 404
t "Push / Manifest Upload / PUT should accept a manifest upload"
for tag in tagtest0 tagtest1 tagtest2 tagtest3; do
    req PUT "/v2/$R/manifests/$tag" --data-binary @"$T/manifest" -H "Content-Type: $MT"; ok_status 201
done
t "Push / Manifest Upload / Registry should accept a manifest upload with no layers"
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}' \
    "$MT" "$CD" "$(stat -c %s "$T/config")" >"$T/empty-manifest"
req PUT "/v2/$R/manifests/emptylayer" --data-binary @"$T/empty-manifest" -H "Content-Type: $MT"; ok_status 201
t "Push / Manifest Upload / GET request to manifest URL (digest) should yield 200 response"
req GET "/v2/$R/manifests/$(sha "$T/empty-manifest")"; ok_status 200

# ---------------------------------------------------------------------------------------- 03 content discovery
t "Content Discovery / Setup / Populate registry with test tags"
for i in 4 5 6; do req PUT "/v2/$R/manifests/tagtest$i" --data-binary @"$T/manifest" -H "Content-Type: $MT"; ok_status 201; done
t "Content Discovery / Test content discovery endpoints (listing tags) / GET request to list tags should yield 200 response"
req GET "/v2/$R/tags/list"; ok_status 200
ALL=$(jq_py "len(j['tags'])"); [ "$ALL" -ge 8 ] || fail_case "only $ALL tags"
t "Content Discovery / Test content discovery endpoints (listing tags) / GET number of tags should be limited by \`n\` query parameter"
req GET "/v2/$R/tags/list?n=3"; ok_status 200; [ "$(jq_py "len(j['tags'])")" = 3 ] || fail_case "n=3"
t "Content Discovery / Test content discovery endpoints (listing tags) / GET start of tag is set by \`last\` query parameter"
req GET "/v2/$R/tags/list?n=3&last=tagtest2"; ok_status 200
[ "$(jq_py "','.join(j['tags'])")" = "tagtest3,tagtest4,tagtest5" ] || fail_case "$(cat "$T/body")"

# ---------------------------------------------------------------------------------------------- referrers
echo '{}' >"$T/emptycfg"; push_blob $R "$T/emptycfg"
echo 'sig-a' >"$T/sa"; push_blob $R "$T/sa"
echo 'sig-b' >"$T/sb"; push_blob $R "$T/sb"
SUBJECT="$MD,$(stat -c %s "$T/manifest")" ARTIFACT_TYPE=application/vnd.example.sbom make_manifest "$T/ra" "$T/emptycfg" "$T/sa"
SUBJECT="$MD,$(stat -c %s "$T/manifest")" ARTIFACT_TYPE=application/vnd.example.signature make_manifest "$T/rb" "$T/emptycfg" "$T/sb"
t "Content Discovery / Test content discovery endpoints (listing references) / PUT Manifest with subject should yield 201 and OCI-Subject"
req PUT "/v2/$R/manifests/$(sha "$T/ra")" --data-binary @"$T/ra" -H "Content-Type: $MT"; ok_status 201
[ "$(hdr OCI-Subject)" = "$MD" ] || fail_case "OCI-Subject"
req PUT "/v2/$R/manifests/$(sha "$T/rb")" --data-binary @"$T/rb" -H "Content-Type: $MT"; ok_status 201
t "Content Discovery / Test content discovery endpoints (listing references) / GET request to nonexistent blob should result in empty 200 response"
req GET "/v2/$R/referrers/$NOPE"; ok_status 200; [ "$(jq_py "len(j['manifests'])")" = 0 ] || fail_case "not empty"
t "Content Discovery / Test content discovery endpoints (listing references) / GET request to existing blob should yield 200"
req GET "/v2/$R/referrers/$MD"; ok_status 200; [ "$(jq_py "len(j['manifests'])")" = 2 ] || fail_case "$(cat "$T/body")"
[ "$(hdr Content-Type)" = application/vnd.oci.image.index.v1+json ] || fail_case "Content-Type"
t "Content Discovery / Test content discovery endpoints (listing references) / GET request to existing blob with filter should yield 200"
req GET "/v2/$R/referrers/$MD?artifactType=application/vnd.example.sbom"; ok_status 200
[ "$(jq_py "[m['artifactType'] for m in j['manifests']]")" = "['application/vnd.example.sbom']" ] || fail_case "filter"
[ "$(hdr OCI-Filters-Applied)" = artifactType ] || fail_case "OCI-Filters-Applied"

# --------------------------------------------------------------------------------------- 04 content management
t "Content Management / Manifest delete / DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)"
req DELETE "/v2/$R/manifests/tagtest0"; ok_status 202 400 405
t "Content Management / Manifest delete / DELETE request to manifest (digest) should yield 202 response unless already deleted"
req DELETE "/v2/$R/manifests/$MD"; ok_status 202
t "Content Management / Manifest delete / GET request to deleted manifest URL should yield 404 response, unless delete is disallowed"
req GET "/v2/$R/manifests/$MD"; ok_status 404
t "Content Management / Manifest delete / GET request to tags list should yield 200 response"
req GET "/v2/$R/tags/list"; ok_status 200
[ "$(jq_py "[x for x in j['tags'] if x.startswith('tagtest')]")" = "[]" ] || fail_case "tags of the deleted manifest remain"
t "Content Management / Blob delete / DELETE request to blob URL should yield 202 response"
req DELETE "/v2/$R/blobs/$KD"; ok_status 202
t "Content Management / Blob delete / GET request to deleted blob URL should yield 404 response"
req GET "/v2/$R/blobs/$KD"; ok_status 404

"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
echo "ok: $N conformance cases"
