#!/usr/bin/env bash
# bench/pull.sh - `quant pull` (signature check, then the blob in 8 MiB Range chunks, hashed from memory as they
# complete, written with O_DIRECT, made durable as it goes, renamed) of one blob, with 4 chunks in flight (the
# default) and with 1, against `curl -o /dev/null` of the same blob from the same daemon and `openssl dgst -sha256`
# of the same file, in the same run; reports MB/s, CPU seconds per GiB, and the ratios to the slower baseline.
# For scale it also times two things that do less than a pull: `curl -o FILE && sync` (download and make durable,
# no hash) and `dd oflag=direct conv=fsync` of the file (what this disk writes durably).
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

# one timed run: prints "WALL CPU" (seconds; CPU = user + sys of the command and its children, from bash's time)
run() { local TIMEFORMAT='%R %U %S' out; out=$({ time "$@" >/dev/null 2>&1; } 2>&1) || { echo "failed: $*" >&2; exit 1; }
    set -- $out; python3 -c "print($1, $2 + $3)"; }
pull_once() { rm -rf "$T/dl"; mkdir "$T/dl"; "$QUANT" pull bench/blob:v1 -o "$T/dl" --registry "$URL" --policy "$T/policy.json" "$@"; }
curl_file() { rm -f "$T/curl.out"; curl -s -o "$T/curl.out" "$URL/v2/bench/blob/blobs/$DIGEST" && sync "$T/curl.out"; }
curl -s -o /dev/null "$URL/v2/bench/blob/blobs/$DIGEST" # warm the store's pages
dd_direct() { rm -f "$T/dd.out"; dd if="$T/blob.bin" of="$T/dd.out" bs=8M oflag=direct conv=fsync status=none; }
NAMES=("curl -o /dev/null" "curl -o FILE && sync" "openssl dgst -sha256" "quant pull --parallel 4" "quant pull --parallel 1"
    "dd oflag=direct conv=fsync")
declare -A WALL CPU
for _ in 1 2 3; do # interleaved, best of 3: the machine is shared, so absolute figures are noisy
    for k in 0 1 2 3 4 5; do
        case $k in
        0) r=$(run curl -s -o /dev/null "$URL/v2/bench/blob/blobs/$DIGEST") ;;
        1) r=$(run curl_file) ;;
        2) r=$(run openssl dgst -sha256 "$T/blob.bin") ;;
        3) r=$(run pull_once --parallel 4) ;;
        4) r=$(run pull_once --parallel 1) ;;
        5) r=$(run dd_direct) ;;
        esac
        set -- $r
        WALL[$k]=$(python3 -c "print(min(${WALL[$k]:-1e9}, $1))")
        CPU[$k]=$(python3 -c "print(min(${CPU[$k]:-1e9}, $2))")
        if [ "$k" -ge 3 ] && [ "$k" -le 4 ]; then cmp -s "$T/blob.bin" "$T/dl/blob.bin" || { echo "the pulled file differs"; exit 1; }; fi
    done
done
rm -f "$T/dd.out" "$T/curl.out"
for k in 0 1 2 3 4 5; do
    python3 -c "n = $SIZE_MIB * 1048576; print(f'{\"${NAMES[$k]}\":<26} {n / ${WALL[$k]} / 1e6:6.0f} MB/s   CPU {${CPU[$k]} / n * 2**30:5.2f} s/GiB')"
done
python3 -c "
slow = max(${WALL[0]}, ${WALL[2]})
for k, name in ((3, 'quant pull --parallel 4'), (4, 'quant pull --parallel 1')):
    w = (${WALL[3]}, ${WALL[4]})[k - 3]
    print(f'ratio {name} / slower of curl -o /dev/null and openssl: {slow / w:.2f} (target >= 0.9); '
          f'/ curl -o FILE + sync: {${WALL[1]} / w:.2f}; / the disk (dd direct + fsync): {${WALL[5]} / w:.2f}')
print(f'CPU: quant pull --parallel 1 uses {${CPU[4]} / (${CPU[0]} + ${CPU[2]}):.2f}x the CPU of curl -o /dev/null + openssl together, '
      f'--parallel 4 {${CPU[3]} / (${CPU[0]} + ${CPU[2]}):.2f}x')"
