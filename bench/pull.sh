#!/usr/bin/env bash
# bench/pull.sh - `quant pull` (signature check, 4 parallel Range requests, SHA-256 as bytes arrive, write, fsync,
# rename) of one blob against `curl -o /dev/null` of the same blob from the same daemon and `openssl dgst -sha256`
# of the same file, in the same run; reports MB/s and the ratio to the slower baseline.
#
#   bench/pull.sh [SIZE_MIB]      (default 1024: a 1 GiB blob)   - `make bench-pull`; not part of `make test`
set -eu
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
QUANTD=${QUANTD:-build/release/quantd} QUANT=${QUANT:-build/release/quant}
[ -x "$QUANTD" ] && [ -x "$QUANT" ] || { echo "build first: make"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/quantd-bench.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
export HOME=$T XDG_CACHE_HOME=$T/cache
unset QUANT_TOKEN QUANT_CONFIG QUANT_REGISTRY QUANT_POLICY

echo "making a ${SIZE_MIB} MiB random blob"
head -c $((SIZE_MIB * 1048576)) /dev/urandom >"$T/blob.bin"
DIGEST="sha256:$(sha256sum "$T/blob.bin" | cut -d' ' -f1)"
"$QUANT" key gen --out "$T/key" >/dev/null
"$QUANT" policy new --trust "$T/key.pub" --out "$T/policy.json" >/dev/null

"$QUANTD" --store="$T/store" --listen=127.0.0.1:0 --port-file="$T/port" --auth=false --log-file="$T/log" 2>"$T/err" &
PID=$!
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || { cat "$T/err"; echo "quantd did not start"; exit 1; }
URL="http://127.0.0.1:$(cat "$T/port")"
"$QUANT" push bench/blob:v1 "$T/blob.bin" --sign "$T/key" --registry "$URL" --chunk-size $((128 << 20)) >/dev/null 2>&1

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); python3 -c "print($t1 - $t0)"; }
mbs() { python3 -c "print(f'{$SIZE_MIB * 1048576 / $1 / 1e6:.0f}')"; }
pull_once() { rm -rf "$T/dl"; mkdir "$T/dl"; "$QUANT" pull bench/blob:v1 -o "$T/dl" --registry "$URL" --policy "$T/policy.json"; }
curl -s -o /dev/null "$URL/v2/bench/blob/blobs/$DIGEST" # warm the store's pages
best_curl=99999 best_ssl=99999 best_pull=99999 best_curlf=99999
curl_file() { rm -f "$T/curl.out"; curl -s -o "$T/curl.out" "$URL/v2/bench/blob/blobs/$DIGEST" && sync "$T/curl.out"; }
for _ in 1 2 3; do
    c=$(secs curl -s -o /dev/null "$URL/v2/bench/blob/blobs/$DIGEST")
    f=$(secs curl_file)
    s=$(secs openssl dgst -sha256 "$T/blob.bin")
    p=$(secs pull_once)
    cmp -s "$T/blob.bin" "$T/dl/blob.bin" || { echo "the pulled file differs"; exit 1; }
    best_curl=$(python3 -c "print(min($best_curl, $c))")
    best_ssl=$(python3 -c "print(min($best_ssl, $s))")
    best_curlf=$(python3 -c "print(min($best_curlf, $f))")
    best_pull=$(python3 -c "print(min($best_pull, $p))")
done
echo "curl -o /dev/null:        $(mbs "$best_curl") MB/s"
echo "curl -o FILE && sync FILE: $(mbs "$best_curlf") MB/s"
echo "openssl dgst -sha256:     $(mbs "$best_ssl") MB/s"
echo "quant pull (verified):    $(mbs "$best_pull") MB/s"
python3 -c "
slow = max($best_curl, $best_ssl)
print(f'ratio quant pull / slower of curl -o /dev/null and openssl: {slow / $best_pull:.2f} (target >= 0.9)')
print(f'ratio quant pull / curl -o FILE + sync: {$best_curlf / $best_pull:.2f}')"
