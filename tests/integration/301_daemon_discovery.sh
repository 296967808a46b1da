#!/usr/bin/env bash
# Content discovery: tags list with pagination (n, last, Link), the referrers API (an empty index when there are
# none, artifactType filter, OCI-Filters-Applied), cross-repository mount, and tag moves.
. "$(dirname "$0")/daemon_lib.sh"
# referrer lists are checked exactly here: no daemon-signed ingest referrers (316 tests those)
start_daemon --auth=false --ingest-sign-delay=-1

echo '{"format":"safetensors"}' >"$T/config"
head -c 5000 /dev/urandom >"$T/w"
push_blob org/base "$T/config"
push_blob org/base "$T/w"
make_manifest "$T/m" "$T/config" "$T/w"
MD=$(sha "$T/m"); MSIZE=$(stat -c %s "$T/m")
for tag in v1 alpha beta v2 latest q4_k_m q8_0; do
    req PUT "/v2/org/base/manifests/$tag" --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
    expect 201 "tag $tag"
done

# --- tags: all, then pages of 3
req GET /v2/org/base/tags/list; expect 200 "tags list"
[ "$(jq_py "','.join(j['tags'])")" = "alpha,beta,latest,q4_k_m,q8_0,v1,v2" ] || fail "tags: $(cat "$T/body")"
[ "$(jq_py "j['name']")" = "org/base" ] || fail "tags list name"
[ -z "$(hdr Link)" ] || fail "Link header on the last page"
req GET '/v2/org/base/tags/list?n=3'; expect 200 "page 1"
[ "$(jq_py "','.join(j['tags'])")" = "alpha,beta,latest" ] || fail "page 1: $(cat "$T/body")"
LINK=$(hdr Link)
[ "$LINK" = '</v2/org/base/tags/list?n=3&last=latest>; rel="next"' ] || fail "Link: $LINK"
NEXT=$(echo "$LINK" | sed 's/^<\([^>]*\)>.*/\1/')
req GET "$NEXT"; expect 200 "page 2"
[ "$(jq_py "','.join(j['tags'])")" = "q4_k_m,q8_0,v1" ] || fail "page 2: $(cat "$T/body")"
req GET '/v2/org/base/tags/list?n=3&last=v1'; expect 200 "page 3"
[ "$(jq_py "','.join(j['tags'])")" = "v2" ] || fail "page 3: $(cat "$T/body")"
[ -z "$(hdr Link)" ] || fail "Link header on the last page"
req GET '/v2/org/base/tags/list?n=0'; expect 200 "n=0"
[ "$(jq_py "len(j['tags'])")" = 0 ] || fail "n=0 gives no tags"
req GET /v2/org/nothing/tags/list; expect 404 "unknown repository"; expect_code NAME_UNKNOWN
req GET '/v2/org/base/tags/list?n=abc'; expect 400 "bad n"; expect_code PAGINATION_NUMBER_INVALID

# --- referrers: none yet -> an empty index, never 404
req GET "/v2/org/base/referrers/$MD"; expect 200 "empty referrers"
[ "$(jq_py "(j['schemaVersion'], j['mediaType'], len(j['manifests']))")" = \
    "(2, 'application/vnd.oci.image.index.v1+json', 0)" ] || fail "empty index: $(cat "$T/body")"
[ "$(hdr Content-Type)" = "application/vnd.oci.image.index.v1+json" ] || fail "referrers Content-Type"

# two referrers of different artifact types (a signature bundle and a variant)
echo '{}' >"$T/empty"
echo '{"bundle":1}' >"$T/bundle"
push_blob org/base "$T/empty"
push_blob org/base "$T/bundle"
SUBJECT="$MD,$MSIZE" ARTIFACT_TYPE=application/vnd.dev.sigstore.bundle.v0.3+json make_manifest "$T/r1" "$T/empty" "$T/bundle"
req PUT "/v2/org/base/manifests/$(sha "$T/r1")" --data-binary @"$T/r1" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "referrer 1"
[ "$(hdr OCI-Subject)" = "$MD" ] || fail "OCI-Subject header: $(hdr OCI-Subject)"
SUBJECT="$MD,$MSIZE" ARTIFACT_TYPE=application/vnd.cncf.model.manifest.v1+json make_manifest "$T/r2" "$T/config" "$T/w"
req PUT /v2/org/base/manifests/variant --data-binary @"$T/r2" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "referrer 2"
req GET "/v2/org/base/referrers/$MD"; expect 200 "referrers"
[ "$(jq_py "sorted(m['digest'] for m in j['manifests']) == sorted(['$(sha "$T/r1")', '$(sha "$T/r2")'])")" = True ] ||
    fail "referrers: $(cat "$T/body")"
[ "$(jq_py "[m for m in j['manifests'] if m['digest']=='$(sha "$T/r1")'][0]['annotations']['org.opencontainers.image.created']")" = \
    2026-11-27T00:00:00Z ] || fail "annotations in the referrers index"
[ "$(jq_py "sorted(m['size'] for m in j['manifests']) == sorted([$(stat -c %s "$T/r1"), $(stat -c %s "$T/r2")])")" = True ] ||
    fail "sizes in the referrers index"
req GET "/v2/org/base/referrers/$MD?artifactType=application/vnd.dev.sigstore.bundle.v0.3%2Bjson"
expect 200 "filtered referrers"
[ "$(jq_py "[m['digest'] for m in j['manifests']]")" = "['$(sha "$T/r1")']" ] || fail "filter: $(cat "$T/body")"
[ "$(hdr OCI-Filters-Applied)" = artifactType ] || fail "OCI-Filters-Applied"
# referrers are per repository
req GET "/v2/org/elsewhere/referrers/$MD"; expect 200 "referrers in another repository"
[ "$(jq_py "len(j['manifests'])")" = 0 ] || fail "referrers leaked across repositories"
req GET "/v2/org/base/referrers/sha256:abc"; expect 400 "bad digest"; expect_code DIGEST_INVALID

# --- cross-repository mount
req POST "/v2/team/copy/blobs/uploads/?mount=$(sha "$T/w")&from=org/base"; expect 201 "mount"
[ "$(hdr Location)" = "/v2/team/copy/blobs/$(sha "$T/w")" ] || fail "mount Location"
req GET "/v2/team/copy/blobs/$(sha "$T/w")"; expect 200 "mounted blob"
cmp -s "$T/body" "$T/w" || fail "mounted bytes"
# a mount from a repository without the blob falls back to an upload session (202)
req POST "/v2/team/copy/blobs/uploads/?mount=$(sha "$T/w")&from=org/none"; expect 202 "mount fallback"
[ -n "$(hdr Docker-Upload-UUID)" ] || fail "fallback session UUID"
req DELETE "$(hdr Location)"; expect 204 "cancel the fallback session"

# --- a tag moves to another manifest
req PUT /v2/org/base/manifests/latest --data-binary @"$T/r2" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "move latest"
req GET /v2/org/base/manifests/latest; expect 200 "moved tag"
[ "$(hdr Docker-Content-Digest)" = "$(sha "$T/r2")" ] || fail "latest did not move"
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
echo ok
