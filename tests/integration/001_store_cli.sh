#!/usr/bin/env bash
# The offline store CLI end to end: put, get (whole, to a file, ranges), stat, ls, rm, fsck, gc, info, --json
# against schemas/, and every documented exit code for bad input.
. "$(dirname "$0")/../lib/common.sh"
S=$WORK/store
Q() { "$QUANT" store "$@" --store "$S"; }

head -c $((20 * 1024 * 1024 + 333)) /dev/urandom >"$WORK/a.bin"
want=sha256:$(sha256sum "$WORK/a.bin" | cut -d' ' -f1)
d=$(Q put "$WORK/a.bin") || fail "put"
[ "$d" = "$want" ] || fail "put printed $d, sha256sum says $want"
# the same file again: same digest, nothing new stored
before=$(Q info --json | check_schema store-cli.schema.json info && Q info --json | grep -o '"chunk_bytes": [0-9]*')
[ "$(Q put "$WORK/a.bin")" = "$want" ] || fail "second put"
after=$(Q info --json | grep -o '"chunk_bytes": [0-9]*')
[ "$before" = "$after" ] || fail "a second put of the same file stored more bytes ($before -> $after)"

# get: stdout, -o FILE (atomically: no partial file left), ranges
Q get "$d" | cmp - "$WORK/a.bin" || fail "get to stdout differs"
Q get "$d" -o "$WORK/out.bin" && cmp "$WORK/out.bin" "$WORK/a.bin" || fail "get -o differs"
ls "$WORK"/out.bin.part-* 2>/dev/null && fail "a partial file was left behind"
Q get "$d" --range 0-99 | cmp - <(head -c 100 "$WORK/a.bin") || fail "range 0-99"
Q get "$d" --range 20971000- | cmp - <(tail -c +20971001 "$WORK/a.bin") || fail "open range"
Q get "$d" --range 5000000-5000000 | cmp - <(tail -c +5000001 "$WORK/a.bin" | head -c 1) || fail "one byte"
expect_exit 2 Q get "$d" --range 99999999-
expect_exit 2 Q get "$d" --range 10-5
expect_exit 2 Q get "$d" --range abc

# stat / ls, text and JSON
Q stat "$d" | grep -q "^size       20971853 bytes" || fail "stat text"
Q stat "$d" --json | check_schema store-cli.schema.json stat
Q put "$WORK/a.bin" "$0" --json | check_schema store-cli.schema.json put
[ "$(Q ls --json | check_schema store-cli.schema.json ls && Q ls --json | grep -c '"digest"')" = 2 ] || fail "ls lists 2 blobs"

# bad input: each with its documented exit code, and the store unchanged afterwards
expect_exit 4 Q put "$WORK/a.bin" --expect sha256:0000000000000000000000000000000000000000000000000000000000000000
grep -q "expected sha256:0000" "$WORK/err" || fail "digest mismatch message"
expect_exit 2 Q put "$WORK/a.bin" --expect sha256:xyz
expect_exit 2 Q put "$WORK/a.bin" "$0" --expect "$d"
expect_exit 3 Q put "$WORK/does-not-exist"
expect_exit 3 Q get sha256:1111111111111111111111111111111111111111111111111111111111111111
expect_exit 2 Q get sha512:abcd
expect_exit 2 Q get not-a-digest
expect_exit 2 Q frobnicate
expect_exit 3 "$QUANT" store ls --store "$WORK/nowhere"
mkdir "$WORK/other" && echo hi >"$WORK/other/notes.txt"
expect_exit 7 "$QUANT" store put "$0" --store "$WORK/other"
grep -q "not a quantd store" "$WORK/err" || fail "not-a-store message"
[ "$(Q ls --json | grep -c '"digest"')" = 2 ] || fail "the refused operations changed the store"

# another process holding the writer lock: a clear refusal, readers still work
flock "$S/writer.lock" "$QUANT" store put "$0" --store "$S" >"$WORK/out" 2>"$WORK/err"; rc=$?
[ $rc -eq 6 ] || fail "put while another process writes exited $rc, expected 6"
grep -q "another process" "$WORK/err" || fail "busy message"
flock "$S/writer.lock" "$QUANT" store stat "$d" --store "$S" >/dev/null || fail "readers must not wait for the writer"

# fsck clean, rm, gc
Q fsck --json | check_schema store-cli.schema.json fsck
Q fsck | grep -q " - clean$" || fail "fsck not clean"
Q rm "$d" | grep -q "removed $d" || fail "rm"
expect_exit 3 Q rm "$d"
expect_exit 3 Q get "$d"
Q gc --json | check_schema store-cli.schema.json gc

# corruption is found by fsck and by a verified get
big=$(Q put "$WORK/a.bin")
/usr/bin/env python3 - "$S/data.mdb" "$WORK/a.bin" <<'PY' || fail "could not plant a corruption"
import sys
data = open(sys.argv[2], 'rb').read()
needle = data[8_000_000:8_000_064]
f = open(sys.argv[1], 'r+b'); m = f.read(); i = m.find(needle); n = 0
while i >= 0:  # freed pages may hold old copies too: flip them all
    f.seek(i + 7); f.write(bytes([m[i + 7] ^ 0x20])); n += 1; i = m.find(needle, i + 1)
assert n, "needle not found"
f.close()
PY
expect_exit 4 Q fsck
grep -q "^problem: " "$WORK/out" || fail "fsck names the problem"
expect_exit 4 Q get "$big" -o "$WORK/bad.bin"
[ ! -e "$WORK/bad.bin" ] || fail "a get that failed verification left a file"
echo "store CLI: ok"
