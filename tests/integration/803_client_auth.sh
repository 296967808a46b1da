#!/usr/bin/env bash
# Tokens: QUANT_TOKEN or 'token' in the config file; a wrong token gives a clear 401 message; a pull-only token
# cannot push (403); nothing listening gives exit 5.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
mkdir -p "$T/store"
PUSHER=$("$QUANT" token create --store "$T/store" --name ci --scopes 'push:org/*' 2>/dev/null) || fail "token create"
READER=$("$QUANT" token create --store "$T/store" --name rd --scopes 'pull:org/*' 2>/dev/null) || fail "token create"
start_daemon --auth=true --anonymous-pull=false
head -c 100000 /dev/urandom >"$T/w.bin"

# no token, a wrong token: 401 with a message that says what to do
qrun 1 push org/a:v1 "$T/w.bin" --registry "$URL"
grep -q "401" "$T/err" && grep -q "QUANT_TOKEN" "$T/err" || fail "401 message: $(cat "$T/err")"
QUANT_TOKEN="qdt_$(printf '0%.0s' $(seq 1 64))" qrun 1 push org/a:v1 "$T/w.bin" --registry "$URL"
grep -q "401 Unauthorized" "$T/err" || fail "wrong-token message: $(cat "$T/err")"
# a pull token cannot push
QUANT_TOKEN=$READER qrun 1 push org/a:v1 "$T/w.bin" --registry "$URL"
grep -q "403" "$T/err" || fail "403 message: $(cat "$T/err")"
# the token from the environment, then from the config file
QUANT_TOKEN=$PUSHER qrun 0 push org/a:v1 "$T/w.bin" --registry "$URL" --sign "$T/good"
mkdir -p "$HOME/.config/quant" "$T/dl"
printf 'registry %s\ntoken %s\npolicy %s\n' "$URL" "$READER" "$T/policy.json" >"$HOME/.config/quant/config"
qrun 0 pull org/a:v1 -o "$T/dl"
cmp "$T/w.bin" "$T/dl/w.bin" || fail "pulled bytes differ"
# a malformed config line is named
printf 'registry\n' >"$HOME/.config/quant/config"
qrun 2 pull org/a:v1 -o "$T/dl"
grep -q "config:1" "$T/err" || fail "config error message: $(cat "$T/err")"
rm "$HOME/.config/quant/config"
stop_daemon
# nothing listens there any more: exit 5
qrun 5 pull org/a:v1 -o "$T/dl" --registry "$URL" --policy "$T/policy.json"
grep -q "cannot reach the registry" "$T/err" || fail "unreachable message: $(cat "$T/err")"
qrun 5 push org/a:v1 "$T/w.bin" --registry "$URL"
echo ok
