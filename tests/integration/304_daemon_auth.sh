#!/usr/bin/env bash
# Auth: tokens made with `quant token create` (offline, before the daemon starts), 401 with WWW-Authenticate and
# the OCI error body, 403 for a token without the scope, anonymous pull on and off, Basic auth carrying a token,
# revocation, and the per-token rate limit (429).
. "$(dirname "$0")/daemon_lib.sh"

mkdir -p "$T/store"
PUSHER=$("$QUANT" token create --store "$T/store" --name ci --scopes 'push:org/*' 2>/dev/null) || fail "token create"
READER=$("$QUANT" token create --store "$T/store" --name reader --scopes 'pull:org/m' 2>/dev/null) || fail "token create"
ADMIN=$("$QUANT" token create --store "$T/store" --name root --scopes 'admin:*' 2>/dev/null) || fail "token create"
[ "${#PUSHER}" = 68 ] && [ "${PUSHER#qdt_}" != "$PUSHER" ] || fail "token format: $PUSHER"
"$QUANT" token create --store "$T/store" --scopes 'fly:*' >/dev/null 2>&1 && fail "a bad scope was accepted"
"$QUANT" token list --store "$T/store" >"$T/list" || fail "token list"
[ "$(wc -l <"$T/list")" = 3 ] || fail "token list: $(cat "$T/list")"
grep -q "$PUSHER" "$T/list" && fail "token list shows a secret"
grep -q "$PUSHER" "$T/store/data.mdb" && fail "the token is stored in clear"

# --- anonymous pull off
start_daemon --anonymous-pull=false
req GET /v2/; expect 401 "anonymous /v2/"; expect_code UNAUTHORIZED
hdr WWW-Authenticate | grep -q '^Basic realm="quantd"' || fail "WWW-Authenticate: $(hdr WWW-Authenticate)"
req GET /v2/ -H "Authorization: Bearer $READER"; expect 200 "/v2/ with a token"
req GET /v2/ -H "Authorization: Bearer qdt_$(printf '0%.0s' $(seq 1 64))"; expect 401 "unknown token"
req GET /v2/ -H "Authorization: Basic !!!"; expect 401 "malformed Basic"

echo '{"format":"gguf"}' >"$T/config"
AUTH="Authorization: Bearer $PUSHER" push_blob org/m "$T/config"
req POST "/v2/org/m/blobs/uploads/?digest=$(sha "$T/config")" --data-binary @"$T/config"; expect 401 "unauthenticated push"
expect_code UNAUTHORIZED
req POST "/v2/org/m/blobs/uploads/?digest=$(sha "$T/config")" --data-binary @"$T/config" -H "Authorization: Bearer $READER"
expect 403 "push with a pull token"; expect_code DENIED
req POST "/v2/other/m/blobs/uploads/" -H "Authorization: Bearer $PUSHER"; expect 403 "push outside the token's namespace"
# Basic auth with the token as password (what docker and skopeo send)
req GET "/v2/org/m/blobs/$(sha "$T/config")" -u "anyone:$READER"; expect 200 "pull with Basic"
req GET "/v2/org/m/blobs/$(sha "$T/config")"; expect 401 "anonymous pull refused"
req GET "/v2/org/x/tags/list" -H "Authorization: Bearer $READER"; expect 403 "pull outside the reader's scope"
# push implies pull
req GET "/v2/org/m/blobs/$(sha "$T/config")" -H "Authorization: Bearer $PUSHER"; expect 200 "push implies pull"

# --- tokens over HTTP while the daemon runs (admin only)
req POST /v1/tokens -H "Authorization: Bearer $PUSHER" --data '{"name":"x","scopes":"pull:*"}'; expect 403 "non-admin"
req POST /v1/tokens -H "Authorization: Bearer $ADMIN" --data '{"name":"x","scopes":"steal:*"}'; expect 405 "bad scopes"
req POST /v1/tokens -H "Authorization: Bearer $ADMIN" --data '{"name":"live","scopes":"push:team/*"}'
expect 201 "create a token over HTTP"
LIVE=$(jq_py "j['token']"); LIVE_ID=$(jq_py "j['id']")
req POST /v2/team/x/blobs/uploads/ -H "Authorization: Bearer $LIVE"; expect 202 "the new token works at once"
req GET /v1/tokens -H "Authorization: Bearer $ADMIN"; expect 200 "list tokens"
[ "$(jq_py "sorted(t['name'] for t in j)")" = "['ci', 'live', 'reader', 'root']" ] || fail "token list: $(cat "$T/body")"
grep -q "$LIVE" "$T/body" && fail "the list shows a secret"
req DELETE "/v1/tokens/$LIVE_ID" -H "Authorization: Bearer $ADMIN"; expect 204 "revoke over HTTP"
req POST /v2/team/x/blobs/uploads/ -H "Authorization: Bearer $LIVE"; expect 401 "a revoked token is refused at once"
req DELETE "/v1/tokens/$LIVE_ID" -H "Authorization: Bearer $ADMIN"; expect 404 "revoke twice"
stop_daemon

# --- revoke (offline), then anonymous pull on and a rate limit
ID=$("$QUANT" token list --store "$T/store" --json | python3 -c "import json,sys; print([t['id'] for t in json.load(sys.stdin) if t['name']=='reader'][0])")
"$QUANT" token revoke --store "$T/store" "$ID" >/dev/null || fail "revoke"
"$QUANT" token revoke --store "$T/store" "$ID" >/dev/null 2>&1; [ $? = 3 ] || fail "revoking twice must be not found"
start_daemon --anonymous-pull=true --rate-limit=1 --rate-burst=5
req GET "/v2/org/m/blobs/$(sha "$T/config")" -H "Authorization: Bearer $READER"; expect 401 "revoked token"
req GET "/v2/org/m/blobs/$(sha "$T/config")"; expect 200 "anonymous pull allowed"
req POST "/v2/org/m/blobs/uploads/"; expect 401 "anonymous push still refused"
# the burst (5) is spent after a few requests within the same second: 429 with Retry-After
got429=0
for _ in 1 2 3 4 5 6 7 8; do
    req GET "/v2/org/m/tags/list" -H "Authorization: Bearer $PUSHER"
    [ "$STATUS" = 429 ] && { got429=1; break; }
done
[ $got429 = 1 ] || fail "no 429 after a burst"
expect_code TOOMANYREQUESTS
[ -n "$(hdr Retry-After)" ] || fail "Retry-After"
stop_daemon
grep -q "$PUSHER" "$T/log" && fail "a token appears in the log"
grep -q "token=" "$T/log" || fail "the log names token ids"
echo ok
