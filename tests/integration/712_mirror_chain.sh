#!/usr/bin/env bash
# Mirrors chained A -> B -> C on 127.0.0.1: N artifacts published on the origin A arrive on B and on C (which
# mirrors B's own log) and pull-verify there, with --require-log against each mirror's own log; B killed with
# SIGKILL again and again in the middle of a sync converges each time, and its store passes fsck.
# N defaults to 6 (make test); QD_MIRROR_N=50 runs the issue's figure. QD_MIRROR_KILLS (default 2; issue: 10).
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
. "$(dirname "$0")/mirror_lib.sh"
client_setup
N=${QD_MIRROR_N:-6}
KILLS=${QD_MIRROR_KILLS:-2}
t0=$(date +%s)

start_node A
node_logkey A
start_node B --mirror-of="$A_URL" --mirror-log-key="$T/A.logkey" --trust="$T/policy.json" --mirror-interval=1
BPORT=$(cat "$T/B/port")
node_logkey B
start_node C --mirror-of="$B_URL" --mirror-log-key="$T/B.logkey" --trust="$T/policy.json" --mirror-interval=1

for i in $(seq 1 "$N"); do
    head -c $((3000 + i * 97)) /dev/urandom >"$T/w$i.bin"
    qrun 0 push "org/m$((i % 4)):v$i" "$T/w$i.bin" --sign "$T/good" --registry "$A_URL"
done
wait_synced "$B_URL" "$A_URL"
wait_synced "$C_URL" "$B_URL"
echo "N=$N: origin log $(log_size "$A_URL") entries, B $(log_size "$B_URL"), C $(log_size "$C_URL"); $(( $(date +%s) - t0 )) s"
[ "$(mstatus "$B_URL" "j['stale'], j['last_error'], j['lag_entries']")" = "False None 0" ] || fail "B status"
# every artifact pulls and verifies on both mirrors, and is in each mirror's own log
for node in B C; do
    url=$(eval echo "\$${node}_URL")
    [ "$node" = C ] && node_logkey C
    for i in $(seq 1 "$N"); do
        mkdir -p "$T/dl$node$i"
        qrun 0 pull "org/m$((i % 4)):v$i" -o "$T/dl$node$i" --policy "$T/policy.json" --registry "$url" \
            --require-log --log-key "$T/$node.logkey"
        cmp "$T/w$i.bin" "$T/dl$node$i/w$i.bin" || fail "$node: artifact $i differs"
    done
done
# the mirrors' logs verify offline like the origin's
for node in B C; do
    qrun 0 log verify "$T/$node/store/log.git" --log-key "$T/$node.logkey" --policy "$T/policy.json"
done

# SIGKILL B in the middle of syncs: publish more on A, kill B as soon as it has applied part of them, restart
midsync=0
for k in $(seq 1 "$KILLS"); do
    before=$(mapplied "$B_URL")
    for i in 1 2 3; do
        qrun 0 push "org/k$k:v$i" "$T/w$i.bin" --sign "$T/good" --registry "$A_URL"
    done
    target=$(log_size "$A_URL")
    for _ in $(seq 1 3000); do # until B has started applying the new entries
        now=$(mapplied "$B_URL") || now=$before
        [ -n "$now" ] && [ "$now" -gt "$before" ] && break
        sleep 0.01
    done
    [ -n "$now" ] && [ "$now" -lt "$target" ] && midsync=$((midsync + 1))
    kill_node B KILL
    # the same port: C follows B's URL
    start_node B --listen="127.0.0.1:$BPORT" --mirror-of="$A_URL" --mirror-log-key="$T/A.logkey" --trust="$T/policy.json" --mirror-interval=1
    wait_synced "$B_URL" "$A_URL"
    [ "$(mstatus "$B_URL" "j['applied']")" = "$target" ] || fail "kill $k: B did not converge"
done
wait_synced "$C_URL" "$B_URL"
for k in $(seq 1 "$KILLS"); do
    mkdir -p "$T/dk$k"
    qrun 0 pull "org/k$k:v2" -o "$T/dk$k" --policy "$T/policy.json" --registry "$C_URL"
done
kill_node C
kill_node B
# fsck of B's store, and its log verifies
"$QUANT" store fsck --store "$T/B/store" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "fsck of B after the kills"; }
qrun 0 log verify "$T/B/store/log.git" --log-key "$T/B.logkey" --policy "$T/policy.json"
echo "ok ($(( $(date +%s) - t0 )) s, N=$N, kills=$KILLS, of which $midsync landed with entries still to apply)"
