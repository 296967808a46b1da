#!/usr/bin/env bash
# A full disk is a clear error (exit 8) and corrupts nothing: a store on a 24 MiB tmpfs takes a small file, refuses
# a 40 MiB one, stays fsck-clean with the small file intact, and keeps working once space is freed.
# Needs root to mount a tmpfs; skips (77) where that is not allowed.
. "$(dirname "$0")/../lib/common.sh"
M=$WORK/mnt
mkdir -p "$M"
if ! mount -t tmpfs -o size=24m tmpfs "$M" 2>/dev/null; then
    echo "skip: cannot mount a tmpfs here (needs root)"; exit 77
fi
trap 'umount "$M" 2>/dev/null; rm -rf "$WORK"' EXIT
S=$M/store
head -c 300000 /dev/urandom >"$WORK/small.bin"
head -c 40000000 /dev/urandom >"$WORK/big.bin"
d=$("$QUANT" store put "$WORK/small.bin" --store "$S") || fail "small put"
"$QUANT" store put "$WORK/big.bin" --store "$S" >"$WORK/out" 2>"$WORK/err"; rc=$?
[ $rc -eq 8 ] || { cat "$WORK/err"; fail "put on a full disk exited $rc, expected 8"; }
grep -q "no space left" "$WORK/err" || { cat "$WORK/err"; fail "the message does not say the disk is full"; }
"$QUANT" store fsck --store "$S" >"$WORK/fsck" || { cat "$WORK/fsck"; fail "fsck after a full disk"; }
"$QUANT" store get "$d" --store "$S" | cmp - "$WORK/small.bin" || fail "the small blob is damaged"
[ "$("$QUANT" store ls --json --store "$S" | grep -c '"digest"')" = 1 ] || fail "a partial blob is visible"
# space comes back: gc, then a put that fits goes through
"$QUANT" store gc --store "$S" >/dev/null || fail "gc on a full store"
head -c 100000 /dev/urandom >"$WORK/tiny.bin"
"$QUANT" store put "$WORK/tiny.bin" --store "$S" >/dev/null || fail "a small put after the full disk"
"$QUANT" store fsck --store "$S" >/dev/null || fail "fsck at the end"
echo "full disk: ok"
