# mirror_lib.sh - several daemons at once for the mirror tests (71x_*.sh); sourced after daemon_lib.sh and
# client_lib.sh.
#
# start_node NAME [--flag=value ...]   start $QUANTD with the store $T/NAME/store; sets NAME_URL, NAME_PID (vars)
# kill_node NAME [SIG]                 stop it (TERM by default) and wait
# node_logkey NAME                     write the node's log public key to $T/NAME.logkey (from /v1/log/key)
# log_size URL                         the size in the node's current checkpoint
# wait_synced MIRROR_URL UPSTREAM_URL  poll /v1/mirror/status (bounded) until the mirror applied all the upstream
#                                      has; fails on timeout
# mstatus URL EXPR                     a python expression over the first upstream of /v1/mirror/status (j)
NODES=()
start_node() {
    local name=$1
    shift
    mkdir -p "$T/$name"
    rm -f "$T/$name/port"
    "$QUANTD" --store="$T/$name/store" --listen=127.0.0.1:0 --port-file="$T/$name/port" --log-file="$T/$name/log" \
        --auth=false --log-origin="$name.test/log" "$@" 2>>"$T/$name/stderr" &
    local pid=$!
    eval "${name}_PID=$pid"
    NODES+=("$name")
    for _ in $(seq 1 200); do
        [ -s "$T/$name/port" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$T/$name/stderr"; fail "quantd $name exited during start"; }
        sleep 0.05
    done
    [ -s "$T/$name/port" ] || fail "quantd $name did not start"
    eval "${name}_URL=http://127.0.0.1:$(cat "$T/$name/port")"
}
kill_node() {
    local name=$1 sig=${2:-TERM} pid
    pid=$(eval echo "\${${name}_PID:-}")
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    eval "${name}_PID="
}
cleanup_nodes() {
    for n in "${NODES[@]}"; do kill_node "$n" KILL; done
}
trap 'cleanup_nodes; stop_proxy; cleanup' EXIT
node_logkey() {
    curl -sf "$(eval echo "\$${1}_URL")/v1/log/key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["public_key"])' \
        >"$T/$1.logkey" || fail "log key of $1"
}
log_size() { curl -sf "$1/v1/log/checkpoint" | sed -n 2p; }
mstatus() {
    curl -sf "$1/v1/mirror/status" | python3 -c "import json,sys; j=json.load(sys.stdin)['upstreams'][0]; print($2)"
}
# the applied count of the first upstream, without python (polled in tight loops)
mapplied() { curl -sf "$1/v1/mirror/status" | grep -o '"applied":[0-9]*' | head -n1 | cut -d: -f2; }
wait_synced() {
    local want got
    for _ in $(seq 1 1200); do
        want=$(log_size "$2")
        got=$(mstatus "$1" "j['applied'] if j['verified'] == $want else -1" 2>/dev/null)
        [ -n "$want" ] && [ "$got" = "$want" ] && return 0
        sleep 0.1
    done
    curl -s "$1/v1/mirror/status"; echo
    fail "the mirror $1 did not catch up with $2 (size $want) within 120 s"
}
