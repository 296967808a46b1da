#!/usr/bin/env bash
# skopeo (an unmodified OCI client) copies a quantd artifact (ModelPack media types) to an oci: layout and back
# into a second, empty quantd, with every digest preserved: manifest, config and layers.
. "$(dirname "$0")/daemon_lib.sh"
command -v skopeo >/dev/null || { echo "skopeo is not installed (make deps)"; exit 77; }
export HOME=$T # keep skopeo's per-user state inside the sandbox

start_daemon --auth=false
echo '{"format":"gguf","precision":"f16"}' >"$T/config"
head -c 3000000 /dev/urandom >"$T/weights"
head -c 1000 /dev/urandom >"$T/tokenizer"
push_blob org/model "$T/config"; push_blob org/model "$T/weights"; push_blob org/model "$T/tokenizer"
make_manifest "$T/m" "$T/config" "$T/weights" "$T/tokenizer"
MD=$(sha "$T/m")
req PUT /v2/org/model/manifests/v1 --data-binary @"$T/m" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
expect 201 "manifest"

timeout 120 skopeo copy --src-tls-verify=false "docker://127.0.0.1:$PORT/org/model:v1" "oci:$T/layout:v1" \
    >"$T/sk1" 2>&1 || { cat "$T/sk1"; fail "skopeo copy to oci:"; }
for f in m config weights tokenizer; do
    d=$(sha "$T/$f")
    cmp -s "$T/layout/blobs/sha256/${d#sha256:}" "$T/$f" || fail "oci layout lacks $f ($d)"
done
python3 -c "
import json; idx=json.load(open('$T/layout/index.json'))
assert idx['manifests'][0]['digest'] == '$MD', idx" || fail "oci index does not name the manifest digest"
stop_daemon

# a second daemon with an empty store: every blob is uploaded again by skopeo
mv "$T/store" "$T/store1"
start_daemon --auth=false
timeout 120 skopeo copy --dest-tls-verify=false "oci:$T/layout:v1" "docker://127.0.0.1:$PORT/copy/model:v1" \
    >"$T/sk2" 2>&1 || { cat "$T/sk2"; cat "$T/log"; fail "skopeo copy from oci:"; }
req GET /v2/copy/model/manifests/v1; expect 200 "copied manifest"
[ "$(hdr Docker-Content-Digest)" = "$MD" ] || fail "manifest digest changed: $(hdr Docker-Content-Digest)"
cmp -s "$T/body" "$T/m" || fail "manifest bytes changed"
for f in config weights tokenizer; do
    req GET "/v2/copy/model/blobs/$(sha "$T/$f")"; expect 200 "copied $f"
    cmp -s "$T/body" "$T/$f" || fail "$f bytes"
done
grep -q 'route=upload_put' "$T/log" || fail "skopeo did not upload through sessions"
"$QUANT" store fsck --store "$T/store" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "fsck"; }
stop_daemon
echo ok
