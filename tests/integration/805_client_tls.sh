#!/usr/bin/env bash
# TLS: the client verifies the registry's certificate; a private CA works with --cacert (or 'cacert' in the config
# file) and is refused without it.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
command -v openssl >/dev/null || { echo "openssl is not installed"; exit 77; }
client_setup
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null || fail "openssl req"
start_daemon --auth=false --tls-cert="$T/tls.crt" --tls-key="$T/tls.key"
S="https://127.0.0.1:$PORT"
head -c 300000 /dev/urandom >"$T/w.bin"
# the system store does not know this CA: refused with a message that names --cacert
qrun 4 push org/t:v1 "$T/w.bin" --registry "$S" --sign "$T/good"
grep -q "cacert" "$T/err" || fail "TLS failure message: $(cat "$T/err")"
qrun 0 push org/t:v1 "$T/w.bin" --registry "$S" --sign "$T/good" --cacert "$T/tls.crt"
mkdir -p "$T/dl" "$HOME/.config/quant"
printf 'registry %s\ncacert %s\npolicy %s\n' "$S" "$T/tls.crt" "$T/policy.json" >"$HOME/.config/quant/config"
qrun 0 pull org/t:v1 -o "$T/dl"
cmp "$T/w.bin" "$T/dl/w.bin" || fail "pulled bytes differ over TLS"
stop_daemon
echo ok
