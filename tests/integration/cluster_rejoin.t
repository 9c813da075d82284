#!/bin/bash
# cluster_rejoin.t — a broker killed with SIGKILL and restarted on the SAME
# port is used again, by everyone linked to it through beacons and by a
# host that also has it as a static seed, without anyone being told.
#
# The ports are fixed and below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range), as a broker's port should be (the
# default 7600 is): a port inside that range may be taken, while its
# broker is down, by a peer's reconnection attempt that the kernel gives
# that same port as source, a TCP self-connect on loopback (libzmq issue
# 4588; docs/operations.md, "Ports").  The test checks that nothing holds
# the dead broker's port before it restarts, that the restart binds it,
# that both hosts re-offer echo there, and that a caller running across
# the kill and the restart sends calls through the restarted broker and
# loses none.  Every wait is bounded; lib.sh kills what is left.
. "$(dirname "$0")/lib.sh"

command -v ss > /dev/null || { echo "1..0 # SKIP no ss (iproute2)"; exit 0; }

port_free () {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
read -r EPH_LOW _ < /proc/sys/net/ipv4/ip_local_port_range
[ "${EPH_LOW:-0}" -gt 20100 ] || { echo "1..0 # SKIP ephemeral range starts at ${EPH_LOW:-?}"; exit 0; }
P1=""
for _ in $(seq 200); do
    p=$((20000 + RANDOM % (EPH_LOW - 20002)))
    if port_free $p && port_free $((p + 1)); then P1=$p; break; fi
done
[ -n "$P1" ] || bail "no free ports below $EPH_LOW"
P2=$((P1 + 1))
B1=tcp://127.0.0.1:$P1
B2=tcp://127.0.0.1:$P2

CLUSTER="rj$$"
BPORT=$(free_udp_port)
CL="--cluster $CLUSTER --beacon lo --beacon-port $BPORT"

# self_connected PORT: sockets connected from 127.0.0.1:PORT to itself.
self_connected () {
    ss -tanH 2>/dev/null | awk -v ep="127.0.0.1:$1" '$4 == ep && $5 == ep' | wc -l
}

BROKER=""
start_cluster_broker rj-b1 "$B1" --insecure || bail "no broker 1"
B1_PID=$CB_PID
start_cluster_broker rj-b2 "$B2" --insecure || bail "no broker 2"
diag "cluster $CLUSTER, brokers on $P1 and $P2 (ephemeral range starts at $EPH_LOW)"

# Host A knows only the cluster; host B also has both brokers as seeds.
"$SB" run $CL --instances 2 echo > "$SB_TMP/a.out" 2> "$SB_TMP/a.err" &
sb_track $!
"$SB" run $CL --connect "$B1" --connect "$B2" echo > "$SB_TMP/b.out" 2> "$SB_TMP/b.err" &
sb_track $!
wait_for_line "$SB_TMP/a.out" '^sb run: serving ' 30 && wait_for_line "$SB_TMP/b.out" '^sb run: serving ' 30 \
    || { sed 's/^/#   /' "$SB_TMP/a.err" "$SB_TMP/b.err"; bail "sb run did not start"; }
at_broker "$B1" wait_instances echo 3 15
ok $? "both hosts offer echo at broker 1 (3 instances)"
at_broker "$B2" wait_instances echo 3 15
ok $? "and at broker 2"

# A caller running across the kill and the restart (up to 60 s of calls,
# stopped once checked).
"$SB" call $CL --idempotent --count 3000 --interval 20 echo.echo '"rj"' \
    > "$SB_TMP/rj.out" 2> "$SB_TMP/rj.err" &
RJ_PID=$!
sb_track $RJ_PID
sleep 2

kill -KILL "$B1_PID"
wait "$B1_PID" 2>/dev/null
# Past 3 beacon intervals: the beacon-found links to it are dropped; host
# B's seed link keeps retrying the dead port all along.
sleep 4
is "$(self_connected $P1)" 0 "nobody holds broker 1's port while it is down (no TCP self-connect)"
start_cluster_broker rj-b1 "$B1" --insecure
ok $? "broker 1 restarts on the same port $P1"
at_broker "$B1" wait_instances echo 3 15
ok $? "both hosts (by beacon and by seed) offer echo at the restarted broker again"

# The running caller sends calls through the restarted broker: its counter
# grows by more than the two sys.stats calls that read it.
sleep 2
BEFORE=$(at_broker "$B1" stat_value requests)
sleep 3
AFTER=$(at_broker "$B1" stat_value requests)
THROUGH=$((AFTER - BEFORE - 1))
diag "restarted broker 1 routed $THROUGH calls of the running caller in 3 s"
[ "$THROUGH" -ge 10 ] && kill -0 $RJ_PID 2>/dev/null
ok $? "the running caller uses the restarted broker ($THROUGH calls in 3 s)"
# Stopped with SIGTERM: the call it was making then is reported
# "interrupted", which is not a failure of the cluster.
kill $RJ_PID 2>/dev/null
wait $RJ_PID 2>/dev/null
ANSWERED=$(grep -c '^"rj"$' "$SB_TMP/rj.out")
FAILED=$(grep -v 'interrupted while calling' "$SB_TMP/rj.err")
diag "the running caller: $ANSWERED calls answered before it was stopped"
[ -z "$FAILED" ] && [ "$ANSWERED" -gt 100 ]
ok $? "none of its calls failed across the kill and the restart ($(printf '%s' "$FAILED" | head -c 200))"

done_testing
