#!/usr/bin/env bash
# Content management: deleting tags, manifests and blobs, and the deletes that must be refused (a blob that a
# manifest of the repository references). The store stays fsck-clean throughout.
. "$(dirname "$0")/daemon_lib.sh"
start_daemon --auth=false

echo '{"format":"gguf"}' >"$T/config"
head -c 70000 /dev/urandom >"$T/w"
push_blob org/m "$T/config"
push_blob org/m "$T/w"
make_manifest "$T/m" "$T/config" "$T/w"
MD=$(sha "$T/m")
req PUT /v2/org/m/manifests/v1 --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "manifest"
req PUT /v2/org/m/manifests/v2 --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "second tag"

# a referenced layer cannot be deleted
req DELETE "/v2/org/m/blobs/$(sha "$T/w")"; expect 409 "delete a referenced blob"; expect_code DENIED
req GET "/v2/org/m/blobs/$(sha "$T/w")"; expect 200 "the refused blob is still there"

# delete a tag: the manifest and the other tag stay
req DELETE /v2/org/m/manifests/v1; expect 202 "delete tag"
req GET /v2/org/m/manifests/v1; expect 404 "deleted tag"; expect_code MANIFEST_UNKNOWN
req GET /v2/org/m/manifests/v2; expect 200 "other tag stays"
req DELETE /v2/org/m/manifests/v1; expect 404 "delete a deleted tag"

# delete the manifest: its tags go with it, then its blobs can be deleted
req DELETE "/v2/org/m/manifests/$MD"; expect 202 "delete manifest"
req GET "/v2/org/m/manifests/$MD"; expect 404 "deleted manifest"; expect_code MANIFEST_UNKNOWN
req GET /v2/org/m/manifests/v2; expect 404 "tag of a deleted manifest"
req DELETE "/v2/org/m/manifests/$MD"; expect 404 "delete twice"; expect_code MANIFEST_UNKNOWN
req DELETE "/v2/org/m/blobs/$(sha "$T/w")"; expect 202 "delete unreferenced blob"
req GET "/v2/org/m/blobs/$(sha "$T/w")"; expect 404 "deleted blob"; expect_code BLOB_UNKNOWN
req DELETE "/v2/org/m/blobs/$(sha "$T/w")"; expect 404 "delete a deleted blob"; expect_code BLOB_UNKNOWN
"$QUANT" store stat --store "$T/store" "$(sha "$T/w")" >/dev/null 2>&1 && fail "the blob is still in the store"

# a blob that two repositories hold survives deletion from one of them
push_blob org/a "$T/config"
req POST "/v2/org/b/blobs/uploads/?mount=$(sha "$T/config")&from=org/a"; expect 201 "mount"
req DELETE "/v2/org/a/blobs/$(sha "$T/config")"; expect 202 "delete from a"
req GET "/v2/org/b/blobs/$(sha "$T/config")"; expect 200 "still in b"
req GET "/v2/org/a/blobs/$(sha "$T/config")"; expect 404 "gone from a"

# a cancelled upload leaves nothing behind
req POST /v2/org/m/blobs/uploads/; expect 202 "session"; LOC=$(hdr Location)
req PATCH "$LOC" --data-binary @"$T/w" -H 'Content-Type: application/octet-stream'; expect 202 "patch"
req DELETE "$LOC"; expect 204 "cancel upload"
req GET "$LOC"; expect 404 "cancelled session"; expect_code BLOB_UPLOAD_UNKNOWN
[ -z "$(ls "$T/store/uploads")" ] || fail "upload files left: $(ls "$T/store/uploads")"

# a manifest in org/b references the config: after the daemon stops, the store itself refuses to remove it
make_manifest "$T/mb" "$T/config"
req PUT /v2/org/b/manifests/keep --data-binary @"$T/mb" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "manifest in b"
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
"$QUANT" store rm --store "$T/store" "$(sha "$T/config")" >"$T/rm" 2>&1
[ $? -eq 6 ] || { cat "$T/rm"; fail "the store let a referenced blob go"; }
grep -q referenced "$T/rm" || { cat "$T/rm"; fail "rm refused for another reason"; }
echo ok
