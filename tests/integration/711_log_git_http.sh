#!/usr/bin/env bash
# The signed log over git's smart HTTP protocol (read-only upload-pack, served by the daemon from a worker thread):
# stock `git clone` and incremental `git fetch` (negotiation with ACK common/ready), libgit2's own fetch
# (quant log fetch) full and incremental, a gzip-encoded request, the clones verify (fsck, signatures, entries);
# pushes and bad requests are refused.
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
command -v git >/dev/null || { echo "git is not installed"; exit 77; }
start_daemon --auth=false
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1

echo '{"dim":8}' >"$T/config.json"
qrun 0 push org/m:v0 "$T/config.json" --sign "$T/good" --registry "$URL"
MD=$(sed 's/.*@//' "$T/out")
req GET "/v2/org/m/manifests/v0" -H 'Accept: application/vnd.oci.image.manifest.v1+json'; expect 200 manifest
cp "$T/body" "$T/manifest.json"
# N more tag moves through the OCI API (each one a log entry)
more_tags() {
    for i in $(seq "$1" "$2"); do
        req PUT "/v2/org/m/manifests/t$i" --data-binary @"$T/manifest.json" \
            -H 'Content-Type: application/vnd.oci.image.manifest.v1+json'
        expect 201 "tag t$i"
    done
}
more_tags 1 30
req GET /v1/log/key; expect 200 "log key"
jq_py "j['public_key']" >"$T/logkey.pub"
LOG="$T/store/log.git"
head_of() { git --git-dir="$1" rev-parse refs/heads/main; }

# the advertisement
req GET "/log.git/info/refs?service=git-upload-pack"; expect 200 "info/refs"
[ "$(hdr Content-Type)" = application/x-git-upload-pack-advertisement ] || fail "advertisement type"
grep -aq "multi_ack_detailed" "$T/body" || fail "multi_ack_detailed not advertised"
grep -aq "side-band-64k" "$T/body" && grep -aq "no-done" "$T/body" && grep -aq "ofs-delta" "$T/body" ||
    fail "capabilities"

# stock git: full clone
cd "$T" || fail cd
timeout 60 git clone -q --bare "$URL/log.git" clone.git 2>"$T/git.err" || fail "git clone: $(cat "$T/git.err")"
[ "$(head_of clone.git)" = "$(head_of "$LOG")" ] || fail "clone head differs"
git --git-dir=clone.git fsck --strict 2>"$T/git.err" || fail "fsck of the clone: $(cat "$T/git.err")"
qrun 0 log verify clone.git --log-key "$T/logkey.pub" --policy "$T/policy.json" --state "$T/vstate"

# libgit2: full fetch into a staging ref
qrun 0 log fetch "$URL/log.git" "$T/lg.git" refs/qd/staging
[ "$(cat "$T/out")" = "$(head_of "$LOG")" ] || fail "libgit2 fetch head"

# incremental: 30 more entries; git fetch negotiates (the client has 32 commits) and gets only the new ones
more_tags 31 60
GIT_TRACE_PACKET="$T/trace" timeout 60 git --git-dir=clone.git fetch -q origin '+refs/heads/main:refs/heads/main' \
    2>"$T/git.err" || fail "git fetch: $(cat "$T/git.err")"
[ "$(head_of clone.git)" = "$(head_of "$LOG")" ] || fail "fetched head differs"
grep -q "ACK [0-9a-f]* common" "$T/trace" || fail "no ACK common in the negotiation"
grep -q "ACK [0-9a-f]* ready" "$T/trace" || fail "no ACK ready in the negotiation"
objs=$(grep -ao "Total [0-9]*" "$T/git.err" | head -n1)
git --git-dir=clone.git fsck --strict 2>"$T/git.err" || fail "fsck after fetch: $(cat "$T/git.err")"
qrun 0 log verify clone.git --log-key "$T/logkey.pub" --policy "$T/policy.json" --state "$T/vstate"
# the pack of an incremental fetch holds the new commits only (30 entries: commit, tree(s), blob each),
# not the whole history (over 60 commits)
python3 - "$URL" "$(git --git-dir=clone.git rev-parse main~30)" "$(head_of "$LOG")" <<'PY' ||
import gzip, sys, urllib.request
url, have, want = sys.argv[1:4]
def pkt(s):
    b = s.encode()
    return b'%04x' % (len(b) + 4) + b
body = pkt('want %s multi_ack_detailed side-band-64k ofs-delta no-done\n' % want) + b'0000' + \
       pkt('have %s\n' % have) + pkt('done\n')
# gzip-encoded, as git sends large negotiation requests
req = urllib.request.Request(url + '/log.git/git-upload-pack', data=gzip.compress(body), method='POST',
                             headers={'Content-Type': 'application/x-git-upload-pack-request',
                                      'Content-Encoding': 'gzip'})
r = urllib.request.urlopen(req, timeout=30).read()
# ACK <have> common, ACK <have> (after done), then side-band packets of the pack
i, lines, pack = 0, [], b''
while i < len(r):
    n = int(r[i:i + 4], 16)
    if n == 0:
        i += 4; continue
    data = r[i + 4:i + n]; i += n
    if data[:1] == b'\x01':
        pack += data[1:]
    elif data[:1] in (b'\x02', b'\x03'):
        pass
    else:
        lines.append(data)
assert lines == [('ACK %s common\n' % have).encode(), ('ACK %s\n' % have).encode()], lines
assert pack[:4] == b'PACK', pack[:4]
nobj = int.from_bytes(pack[8:12], 'big')
assert 30 <= nobj <= 30 * 6, nobj
print('incremental pack objects', nobj)
PY
    fail "gzip-encoded incremental request"

# libgit2: incremental fetch, the staging ref fast-forwards, the repository checks out clean
qrun 0 log fetch "$URL/log.git" "$T/lg.git" refs/qd/staging
[ "$(cat "$T/out")" = "$(head_of "$LOG")" ] || fail "libgit2 incremental fetch head"
git --git-dir="$T/lg.git" fsck --strict 2>"$T/git.err" || fail "fsck of the libgit2 fetch: $(cat "$T/git.err")"
[ "$(git --git-dir="$T/lg.git" rev-list --count refs/qd/staging)" = "$(git --git-dir="$LOG" rev-list --count main)" ] ||
    fail "libgit2 fetch: commit count"

# read-only: a push and the receive-pack service are refused; garbage is a clear 400
req GET "/log.git/info/refs?service=git-receive-pack"; expect 403 "receive-pack"
req POST /log.git/git-receive-pack --data-binary 'x'; expect 403 "receive-pack POST"
git --git-dir=clone.git push -q "$URL/log.git" main:refs/heads/evil 2>/dev/null && fail "a push was accepted"
req POST /log.git/git-upload-pack --data-binary 'zzzz'; expect 400 "garbage upload-pack request"
req POST /log.git/git-upload-pack --data-binary "0032want $(printf '%040d' 0)\n00000009done\n"
expect 404 "a want that is not ours"
req POST /log.git/git-upload-pack --data-binary 'garbage' -H 'Content-Encoding: gzip'; expect 400 "bad gzip"
stop_daemon
echo "ok"
