#!/bin/bash
# cluster_netns.t — a broker cluster across three simulated hosts (network
# namespaces on a private bridge, 10.77.0.0/24, see netns.sh), found by
# real broadcast beacons on each host's own interface.
#
# Brokers run on hosts 1 and 2, the echo service on host 3; nobody is
# told an address.  What a user must see: the service reaches both
# brokers and a caller on host 3 reaches the service; each broker's
# directory names the other; host 2 cut off (its cable pulled) leaves the
# directory of host 1's broker within 3 s and comes back when plugged in
# again; a broker killed under a bounded load of idempotent calls loses
# none (numbers printed); a broker of another cluster on the same LAN is
# ignored.  Skipped (77) with the reason where namespaces cannot be made.
# Everything it creates (processes, namespaces) is removed on exit.
. "$(dirname "$0")/../integration/lib.sh"
. "${SB_TOP_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/netns.sh"

if ! netns_up; then
    trap sb_cleanup EXIT        # netns_up may have set netns_down alone
    netns_down
    echo "1..0 # SKIP $NETNS_WHY"
    exit 0
fi
# netns_up replaced lib.sh's EXIT trap: stop the processes (they live in
# the namespaces), then remove the namespaces, then lib.sh's cleanup.
trap 'rc=$?; for p in $SB_PIDS; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; netns_down; (exit $rc); sb_cleanup' EXIT

CLUSTER="ns$$"
BPORT=7690
CL="--cluster $CLUSTER --beacon sb0 --beacon-port $BPORT"
EP1="tcp://10.77.0.1:7600"
EP2="tcp://10.77.0.2:7600"

# host_broker HOST NAME ENDPOINT [CLUSTER]: a broker on a host; sets HB_PID.
host_broker () {
    local host=$1 name=$2 ep=$3 cluster=${4:-$CLUSTER}
    # `ip netns exec` execs the command: $! is the broker itself.
    ip netns exec "$(netns_ns "$host")" "$SB" broker --bind "$ep" --name "$name" --cluster "$cluster" \
        --beacon sb0 --beacon-port $BPORT --insecure > "$SB_TMP/$name.log" 2>&1 &
    HB_PID=$!
    sb_track $HB_PID
    if ! wait_for_line "$SB_TMP/$name.log" ' listening on tcp://' 20; then
        sed 's/^/#   /' "$SB_TMP/$name.log"
        bail "broker $name did not start on host $host"
    fi
}

# services_json HOST ENDPOINT: sys.services of that broker, asked from HOST.
services_json () {
    netns_exec "$1" "$SB" services --connect "$2" --json 2>/dev/null
}

# echo_instances HOST ENDPOINT
echo_instances () {
    services_json "$1" "$2" | python3 -c '
import json, sys
try:
    reply = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit(0)
print(sum(s.get("instances", 0) for s in reply.get("services", []) if s.get("name") == "echo"))
'
}

# until_ SECONDS COMMAND...: retries COMMAND every 0.1 s; 1 on timeout.
until_ () {
    local tries=$(($1 * 10))
    shift
    while [ $tries -gt 0 ]; do
        "$@" && return 0
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

names_broker () { services_json "$1" "$2" | grep -q "\"$3\""; }
lacks_broker () { services_json "$1" "$2" | grep -q '"services"' && ! services_json "$1" "$2" | grep -q "\"$3\""; }
echo_at () { [ "$(echo_instances "$1" "$2")" = "$3" ]; }

host_broker 1 ns-b1 "$EP1"
B1_PID=$HB_PID
host_broker 2 ns-b2 "$EP2"
B2_PID=$HB_PID

ip netns exec "$NETNS_H3" "$SB" run $CL echo > "$SB_TMP/run.out" 2> "$SB_TMP/run.err" &
sb_track $!
wait_for_line "$SB_TMP/run.out" '^sb run: serving ' 30 || { sed 's/^/#   /' "$SB_TMP/run.err"; bail "sb run did not start on host 3"; }
until_ 10 echo_at 1 "$EP1" 1
ok $? "echo on host 3 found the broker on host 1 by broadcast"
until_ 10 echo_at 2 "$EP2" 1
ok $? "and the broker on host 2"
until_ 10 names_broker 1 "$EP1" ns-b2
ok $? "host 1's broker names host 2's in its directory"
until_ 10 names_broker 2 "$EP2" ns-b1
ok $? "host 2's broker names host 1's"
OUT=$(netns_exec 3 "$SB" call $CL echo.reverse '{"text": "netns"}' 2>&1)
is "$OUT" '{"text":"snten"}' "a caller on host 3 reaches echo through the cluster"

# -- host 2 cut off and plugged in again ------------------------------------

CUT=$(now_ms)
netns_link 2 down
until_ 8 lacks_broker 1 "$EP1" ns-b2
GONE=$?
GONE_MS=$(( $(now_ms) - CUT ))
diag "host 2 cut off; host 1's broker dropped it after $GONE_MS ms"
[ $GONE = 0 ] && [ $GONE_MS -le 4000 ]
ok $? "host 2 leaves the directory within 3 s of the cut (1 s slack for a loaded machine: $GONE_MS ms)"
netns_link 2 up
BACK=$(now_ms)
until_ 10 names_broker 1 "$EP1" ns-b2
ok $? "and comes back when restored ($(( $(now_ms) - BACK )) ms)"
until_ 10 echo_at 2 "$EP2" 1
ok $? "echo is served through host 2 again"

# -- a broker killed under load ----------------------------------------------

LOAD=100
PAR=10
KILL_AT=30
mkdir -p "$SB_TMP/load"
one_call () {
    local i=$1 s
    s=$(now_ms)
    netns_exec 3 "$SB" call $CL --idempotent --timeout 10000 echo.echo "$i" \
        > "$SB_TMP/load/$i.out" 2> "$SB_TMP/load/$i.err"
    echo "$? $(( $(now_ms) - s ))" > "$SB_TMP/load/$i.rc"
}
KILLED=1
for i in $(seq 1 $LOAD); do
    while [ "$(jobs -rp | wc -l)" -ge $((PAR + 3)) ]; do
        wait -n 2>/dev/null || sleep 0.01
    done
    one_call "$i" &
    if [ "$i" = $KILL_AT ]; then
        sleep 0.3
        kill -KILL "$B2_PID"
        KILLED=$?
    fi
done
for i in $(seq 1 300); do
    [ "$(ls "$SB_TMP/load" | grep -c '\.rc$')" -ge $LOAD ] && break
    sleep 0.1
done
ok $KILLED "host 2's broker killed with SIGKILL under load"
ANSWERED=0
SLOWEST=0
for i in $(seq 1 $LOAD); do
    read -r rc ms < "$SB_TMP/load/$i.rc" 2>/dev/null || { rc=x; ms=0; }
    [ "$ms" -gt "$SLOWEST" ] && SLOWEST=$ms
    if [ "$rc" = 0 ] && [ "$(cat "$SB_TMP/load/$i.out")" = "$i" ]; then
        ANSWERED=$((ANSWERED + 1))
    elif [ $((LOAD - ANSWERED)) -gt 0 ]; then
        diag "call $i: rc $rc $(head -c 200 "$SB_TMP/load/$i.err")"
    fi
done
diag "failover load across hosts: sent $LOAD, answered $ANSWERED, lost $((LOAD - ANSWERED)), slowest $SLOWEST ms"
is "$((LOAD - ANSWERED))" 0 "no idempotent call lost ($ANSWERED of $LOAD answered)"

# -- another cluster on the same LAN ------------------------------------------

host_broker 2 ns-other "tcp://10.77.0.2:7601" "other$$"
sleep 3.5
is "$(echo_instances 2 tcp://10.77.0.2:7601)" 0 "echo did not join the broker of another cluster"
names_broker 1 "$EP1" ns-other
ok $((! $?)) "host 1's broker ignores the other cluster's beacons"
OUT=$(netns_exec 3 "$SB" call $CL echo.reverse '{"text": "ab"}' 2>&1)
is "$OUT" '{"text":"ba"}' "the cluster still serves through host 1"

done_testing
