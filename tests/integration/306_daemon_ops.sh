#!/usr/bin/env bash
# Operating the daemon: the config table (--dump-config, file < flags, file:line errors), /healthz, /metrics,
# SIGHUP reopening the log, TLS, and SIGTERM letting a running download finish.
. "$(dirname "$0")/daemon_lib.sh"

# --- config
"$QUANTD" --dump-config >"$T/dump" || fail "--dump-config"
for opt in listen store port-file log-file log-level workers tls-cert tls-key auth anonymous-pull rate-limit \
    rate-burst max-header-bytes max-body-bytes max-manifest-bytes timeout upload-ttl max-uploads; do
    grep -q "^#* *$opt " "$T/dump" || fail "--dump-config lacks $opt"
done
grep -q '^listen 127.0.0.1:8420$' "$T/dump" || fail "default listen address"
printf '# a comment\nworkers 3\n\nrate-limit 7   # trailing comment\n' >"$T/ok.conf"
"$QUANTD" --config "$T/ok.conf" --workers=5 --dump-config >"$T/dump2" || fail "config file"
grep -q '^workers 5$' "$T/dump2" || fail "flags override the file"
grep -q '^rate-limit 7$' "$T/dump2" || fail "file value"
printf 'workers 2\n\nworkers many\n' >"$T/bad.conf"
"$QUANTD" --config "$T/bad.conf" --dump-config >/dev/null 2>"$T/err"; [ $? = 2 ] || fail "bad config exit code"
grep -q "bad.conf:3: workers" "$T/err" || fail "error without file:line: $(cat "$T/err")"
printf 'no-such-option 1\n' >"$T/bad2.conf"
"$QUANTD" --config "$T/bad2.conf" >/dev/null 2>"$T/err"; [ $? = 2 ] || fail "unknown option exit code"
grep -q "bad2.conf:1: unknown option 'no-such-option'" "$T/err" || fail "unknown option: $(cat "$T/err")"
"$QUANTD" --workers=0 --dump-config >/dev/null 2>"$T/err" && fail "workers=0 accepted"
grep -q "outside 1..256" "$T/err" || fail "range error: $(cat "$T/err")"
"$QUANTD" --max-body-bytes=1G --dump-config | grep -q '^max-body-bytes 1073741824$' || fail "size suffix"

# --- health, metrics
start_daemon --auth=false
req GET /healthz; expect 200 "healthz"; [ "$(cat "$T/body")" = ok ] || fail "healthz body"
echo '{"a":1}' >"$T/c"; push_blob org/m "$T/c"
req GET "/v2/org/m/blobs/$(sha "$T/c")"; expect 200 "blob"
req GET /v2/org/m/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000; expect 404 "missing"
req GET /metrics; expect 200 "metrics"
grep -q '^# TYPE quantd_http_requests_total counter$' "$T/body" || fail "metrics TYPE line"
grep -q '^quantd_http_requests_total{route="blob_get",code="200"} 1$' "$T/body" || fail "blob_get 200 count"
grep -q '^quantd_http_requests_total{route="blob_get",code="404"} 1$' "$T/body" || fail "blob_get 404 count"
grep -q '^quantd_store_blobs 1$' "$T/body" || fail "store blobs gauge"
grep -q '^quantd_http_response_bytes_total [1-9]' "$T/body" || fail "bytes served"
[ "$(hdr Content-Type)" = "text/plain; version=0.0.4" ] || fail "metrics content type"
# every request line carries its id
grep -Eq '^[0-9T:.-]+Z info http req=[0-9]+ GET /healthz status=200 ' "$T/log" || fail "log line format"

# --- SIGHUP reopens the log file (log rotation)
mv "$T/log" "$T/log.1"
kill -HUP "$PID"
for _ in $(seq 1 200); do [ -s "$T/log" ] && break; sleep 0.05; done
[ -s "$T/log" ] || fail "no new log after SIGHUP"
req GET /healthz; expect 200 "healthz after HUP"
grep -q 'GET /healthz' "$T/log" || fail "requests after HUP go to the new log"

# --- SIGTERM: a running (throttled) download finishes, then the daemon exits 0
head -c 40000000 /dev/urandom >"$T/big"; push_blob org/m "$T/big"
curl -sS --limit-rate 20M -o "$T/dl" "$URL/v2/org/m/blobs/$(sha "$T/big")" &
CURL=$!
for _ in $(seq 1 200); do [ -s "$T/dl" ] && break; sleep 0.05; done
[ -s "$T/dl" ] || fail "download did not start"
stop_daemon
wait $CURL || fail "the download was cut by SIGTERM"
cmp -s "$T/dl" "$T/big" || fail "download bytes after SIGTERM"
grep -q 'stopping in_flight=1' "$T/log" || fail "shutdown did not see the running request"

# --- TLS
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 -subj /CN=127.0.0.1 \
        >/dev/null 2>&1 || fail "openssl req"
    start_daemon --auth=false --tls-cert="$T/cert.pem" --tls-key="$T/key.pem"
    STATUS=$(curl -sS --cacert "$T/cert.pem" -o "$T/body" -w '%{http_code}' "https://127.0.0.1:$PORT/v2/") ||
        fail "https request"
    expect 200 "GET /v2/ over TLS"
    STATUS=$(curl -sS --cacert "$T/cert.pem" -o "$T/body" -w '%{http_code}' \
        "https://127.0.0.1:$PORT/v2/org/m/blobs/$(sha "$T/big")") || fail "https blob"
    expect 200 "blob over TLS"; cmp -s "$T/body" "$T/big" || fail "TLS blob bytes"
    curl -sS -o /dev/null --max-time 5 "http://127.0.0.1:$PORT/v2/" 2>/dev/null && fail "plain HTTP on the TLS port"
    stop_daemon
    "$QUANTD" --store="$T/store2" --listen=127.0.0.1:0 --tls-cert="$T/cert.pem" --tls-key="$T/c" 2>"$T/err" &&
        fail "a bad key was accepted"
    grep -q "TLS" "$T/err" || fail "TLS error message: $(cat "$T/err")"
fi
echo ok
