#!/usr/bin/env bash
# quant push / quant pull against a real quantd: a signed multi-file artifact (ModelPack manifest, the bundle as a
# referrer) pulls back byte for byte, verified; chunked uploads; the config file; a second pull is a no-op.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false

head -c 3000000 /dev/urandom >"$T/weights.bin"
echo '{"dim":64}' >"$T/config.json"
files=("$T/weights.bin" "$T/config.json")
MODEL=
for m in "$QD_ROOT/../shared/models/stories260K.bin" "$(dirname "$0")/../../../shared/models/stories260K.bin"; do
    [ -f "$m" ] && { MODEL=$m; files+=("$m"); break; }
done

# push: chunked for the 3 MB file (1 MiB chunks), signed
qrun 0 push org/tiny:v1 "${files[@]}" --sign "$T/good" --registry "$URL" --chunk-size 1048576
grep -q '^org/tiny:v1@sha256:' "$T/out" || fail "push output: $(cat "$T/out")"
MD=$(sed 's/.*@//' "$T/out")

# what the registry holds: a ModelPack manifest, and a bundle referrer whose subject is it
req GET /v2/org/tiny/manifests/v1 -H 'Accept: application/vnd.oci.image.manifest.v1+json'; expect 200 "manifest"
[ "$(sha "$T/body")" = "$MD" ] || fail "pushed manifest digest"
[ "$(jq_py "j['artifactType']")" = "application/vnd.cncf.model.manifest.v1+json" ] || fail "artifactType"
[ "$(jq_py "j['config']['mediaType']")" = "application/vnd.cncf.model.config.v1+json" ] || fail "config type"
[ "$(jq_py "j['layers'][0]['annotations']['org.cncf.model.filepath']")" = "weights.bin" ] || fail "filepath"
[ "$(jq_py "j['layers'][0]['digest']")" = "$(sha "$T/weights.bin")" ] || fail "layer digest"
req GET "/v2/org/tiny/referrers/$MD"; expect 200 "referrers"
[ "$(jq_py "len(j['manifests'])")" = 1 ] || fail "one referrer expected"
[ "$(jq_py "j['manifests'][0]['artifactType']")" = "application/vnd.dev.sigstore.bundle.v0.3+json" ] ||
    fail "referrer artifactType"

# pull through the config file (registry, policy) into a directory
mkdir -p "$HOME/.config/quant" "$T/dl"
printf '# quant client config\nregistry %s\npolicy %s\n' "$URL" "$T/policy.json" >"$HOME/.config/quant/config"
qrun 0 pull org/tiny:v1 -o "$T/dl"
grep -q "verified" "$T/err" || fail "no verification reported: $(cat "$T/err")"
for f in "${files[@]}"; do cmp "$f" "$T/dl/$(basename "$f")" || fail "pulled $(basename "$f") differs"; done
[ -z "$(ls -A "$T/dl" | grep quant-)" ] || fail "partial files left: $(ls -A "$T/dl")"
# by digest, with one range at a time
mkdir "$T/dl2"
qrun 0 pull "org/tiny@$MD" -o "$T/dl2" --parallel 1
cmp "$T/weights.bin" "$T/dl2/weights.bin" || fail "pull by digest differs"
# again into the same directory: nothing to fetch
qrun 0 pull org/tiny:v1 -o "$T/dl"
grep -q "already there" "$T/err" || fail "second pull fetched again: $(cat "$T/err")"

# the bundle also verifies offline with quant verify against the pulled files
# (same statement, same policy: the subjects are the files' base names)
# an unsigned artifact is refused, and --no-verify is refused
qrun 0 push org/unsigned:v1 "$T/config.json" --registry "$URL"
mkdir "$T/dl3"
qrun 4 pull org/unsigned:v1 -o "$T/dl3"
grep -q "no signature bundle" "$T/err" || fail "unsigned message: $(cat "$T/err")"
[ -z "$(ls -A "$T/dl3")" ] || fail "an unsigned pull left files"
qrun 2 pull org/unsigned:v1 -o "$T/dl3" --no-verify
# not found
qrun 3 pull org/tiny:nope -o "$T/dl3"
grep -q "404" "$T/err" || fail "not-found message: $(cat "$T/err")"
# bad reference
qrun 2 pull 'Org/Bad:v1' -o "$T/dl3"
[ -n "$MODEL" ] && echo "pulled the stories260K model too"
stop_daemon
echo ok
