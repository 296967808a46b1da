#!/usr/bin/env bash
# If-Range on blob GETs (RFC 9110 13.1.5): the daemon sends ETag = the quoted digest; a Range with an If-Range that
# is that tag gets 206 and the range; any other validator (another tag, a weak tag, a date) gets 200 and the whole
# blob. The client's range requests, first and resumed, carry If-Range: "DIGEST".
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false
SIZE=3000000
push_random org/ir:v1 "$T/w.bin" $SIZE
D=$(sha "$T/w.bin")
B=/v2/org/ir/blobs/$D

req GET "$B"
expect 200 "whole blob"
[ "$(hdr ETag)" = "\"$D\"" ] || fail "ETag: $(hdr ETag)"
req HEAD "$B" -I
[ "$(hdr ETag)" = "\"$D\"" ] || fail "ETag on HEAD: $(hdr ETag)"
req GET "$B" -H 'Range: bytes=100-199' -H "If-Range: \"$D\""
expect 206 "Range with the matching If-Range"
[ "$(stat -c %s "$T/body")" = 100 ] || fail "206 body size"
cmp <(tail -c +101 "$T/w.bin" | head -c 100) "$T/body" || fail "206 bytes"
[ "$(hdr Content-Range)" = "bytes 100-199/$SIZE" ] || fail "Content-Range: $(hdr Content-Range)"
for v in '"sha256:0000000000000000000000000000000000000000000000000000000000000000"' "W/\"$D\"" \
    'Wed, 21 Oct 2015 07:28:00 GMT' "$D"; do
    req GET "$B" -H 'Range: bytes=100-199' -H "If-Range: $v"
    expect 200 "Range with If-Range $v"
    cmp "$T/w.bin" "$T/body" || fail "If-Range $v: not the whole blob"
    [ -z "$(hdr Content-Range)" ] || fail "If-Range $v: Content-Range on a 200"
done
# without If-Range the Range applies as before
req GET "$B" -H 'Range: bytes=0-9'
expect 206 "Range without If-Range"

# the client: a pull cut after 1 MB, then resumed; every range request names the digest in If-Range
mkdir "$T/dl"
start_proxy drop 1000000
qrun 5 pull org/ir:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json" --parallel 1
stop_proxy
mv "$COUNT.req" "$T/first.req"
start_proxy pass
qrun 0 pull org/ir:v1 -o "$T/dl" --registry "$PURL" --policy "$T/policy.json" --parallel 1
grep -q resuming "$T/err" || fail "did not resume: $(cat "$T/err")"
cmp "$T/w.bin" "$T/dl/w.bin" || fail "resumed file differs"
stop_proxy
for f in "$T/first.req" "$COUNT.req"; do
    [ -s "$f" ] || fail "no blob requests seen in $f"
    # only the weight blob (the bundle blob is fetched whole, without Range)
    grep '^bytes=' "$f" >"$f.ranges" || fail "no range requests in $f"
    if grep -v "|\"$D\"\$" "$f.ranges"; then fail "a range request without If-Range: \"$D\" ($f)"; fi
done
# the resumed ranges start past 0 for the part already on disk
grep -q '^bytes=0-' "$COUNT.req" && fail "the resumed pull asked for byte 0 again: $(cat "$COUNT.req")"
echo "ok"
