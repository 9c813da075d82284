#!/bin/bash
# cluster_lo.t — a two-broker cluster on one machine, found by beacons on
# loopback (real `sb` processes, nothing given but the cluster name).
#
# What a user must see: a service host and callers that name only the
# cluster reach both brokers; each broker's directory shows the other;
# SIGKILL of a broker under a bounded load of idempotent calls loses none
# of them (the numbers are printed); new calls succeed within 2 s of the
# kill; the broker restarted on its old endpoint is used again without
# anyone being told; events reach each subscriber once although it is
# linked to both brokers.  Every wait is bounded; lib.sh kills what is
# left.
. "$(dirname "$0")/lib.sh"

BROKER=${BROKER:-}
CLUSTER="lo$$"
# A free UDP port for the beacons of this test alone.
BPORT=$(free_udp_port)
CL="--cluster $CLUSTER --beacon lo --beacon-port $BPORT"

start_cluster_broker lo-b1 'tcp://127.0.0.1:*' --insecure || bail "no broker lo-b1"
B1=$CB_EP
B1_PID=$CB_PID
start_cluster_broker lo-b2 'tcp://127.0.0.1:*' --insecure || bail "no broker lo-b2"
B2=$CB_EP
B2_PID=$CB_PID
diag "cluster $CLUSTER, beacons on 127.255.255.255:$BPORT, brokers $B1 $B2"

# The service host knows only the cluster.
"$SB" run $CL --instances 2 echo > "$SB_TMP/run.out" 2> "$SB_TMP/run.err" &
sb_track $!
wait_for_line "$SB_TMP/run.out" '^sb run: serving ' 30 || { sed 's/^/#   /' "$SB_TMP/run.err"; bail "sb run did not start"; }
at_broker "$B1" wait_instances echo 2 10
ok $? "the echo host found broker 1 by beacon (2 instances listed there)"
at_broker "$B2" wait_instances echo 2 10
ok $? "and broker 2 (2 instances listed there)"

# Each broker's directory shows the whole cluster.
seen=0
for i in $(seq 1 50); do
    J1=$("$SB" services --connect "$B1" --json 2>/dev/null)
    J2=$("$SB" services --connect "$B2" --json 2>/dev/null)
    if printf '%s' "$J1" | grep -q '"lo-b2"' && printf '%s' "$J2" | grep -q '"lo-b1"'; then
        seen=1
        break
    fi
    sleep 0.2
done
ok $((1 - seen)) "sys.services of each broker names the other (directory exchange)"
[ $seen = 1 ] || { diag "broker 1 says: $J1"; diag "broker 2 says: $J2"; }
TABLE=$("$SB" services $CL 2>&1)
like "$TABLE" 'echo' "sb services by discovery lists echo"
printf '%s' "$TABLE" | grep -q 'lo-b1' && printf '%s' "$TABLE" | grep -q 'lo-b2'
both=$?
ok $both "sb services by discovery shows both brokers"
[ $both = 0 ] || printf '%s\n' "$TABLE" | sed 's/^/#   /'

OUT=$("$SB" call $CL echo.reverse '{"text": "abc"}' 2>&1)
is "$OUT" '{"text":"cba"}' "sb call by discovery reaches echo"

# -- failover under load --------------------------------------------------

# LOAD idempotent calls, PAR at a time, each with its own 10 s deadline;
# broker 1 is killed with SIGKILL once a quarter have been started.
LOAD=100
PAR=20
KILL_AT=25
mkdir -p "$SB_TMP/load"
one_call () {
    local i=$1 s
    s=$(now_ms)
    "$SB" call $CL --idempotent --timeout 10000 echo.echo "$i" > "$SB_TMP/load/$i.out" 2> "$SB_TMP/load/$i.err"
    echo "$? $(( $(now_ms) - s ))" > "$SB_TMP/load/$i.rc"
}
LOAD_START=$(now_ms)
KILLED_AT=0
for i in $(seq 1 $LOAD); do
    while [ "$(jobs -rp | wc -l)" -ge $PAR ]; do
        wait -n 2>/dev/null || sleep 0.01
    done
    one_call "$i" &
    if [ "$i" = $KILL_AT ]; then
        sleep 0.3
        kill -KILL "$B1_PID"
        KILLED_AT=$(now_ms)
    fi
done
# Every caller ends by its deadline; 30 s is a generous bound for the rest.
for i in $(seq 1 300); do
    [ "$(ls "$SB_TMP/load" | grep -c '\.rc$')" -ge $LOAD ] && break
    sleep 0.1
done
wait_for_callers=0
while [ "$(jobs -rp | wc -l)" -gt 0 ] && [ $wait_for_callers -lt 100 ]; do
    sleep 0.1
    wait_for_callers=$((wait_for_callers + 1))
done
ok $((KILLED_AT == 0)) "broker 1 killed with SIGKILL under load"
SENT=$LOAD
ANSWERED=0
FAILED=""
SLOWEST=0
for i in $(seq 1 $LOAD); do
    read -r rc ms < "$SB_TMP/load/$i.rc" 2>/dev/null || { rc=x; ms=0; }
    [ "$ms" -gt "$SLOWEST" ] && SLOWEST=$ms
    if [ "$rc" = 0 ] && [ "$(cat "$SB_TMP/load/$i.out")" = "$i" ]; then
        ANSWERED=$((ANSWERED + 1))
    else
        FAILED="$FAILED $i"
    fi
done
LOST=$((SENT - ANSWERED))
diag "failover load: sent $SENT, answered $ANSWERED, lost $LOST ($PAR in parallel, broker 1 killed after call $KILL_AT, slowest call $SLOWEST ms, load took $(( $(now_ms) - LOAD_START )) ms)"
is "$LOST" 0 "no idempotent call lost when a broker is killed ($ANSWERED of $SENT answered)"
for i in $(echo $FAILED | cut -d' ' -f1-5); do
    diag "call $i: rc $(cut -d' ' -f1 "$SB_TMP/load/$i.rc" 2>/dev/null) $(head -c 200 "$SB_TMP/load/$i.err")"
done
[ "$SLOWEST" -le 11000 ]
ok $? "no call waited past its deadline (slowest $SLOWEST ms, deadline 10000)"

# Broker 1 restarts (on a new port: while nobody listens on the old one,
# the peers' reconnection attempts to it may hold it, a loopback TCP
# self-connect) and must be used again without anyone being told: by the
# echo host, and by a caller that was already running before the restart
# (one client, calls spread over its live links in turn).  Which broker a
# one-shot `sb call` uses is whichever beacon it hears first, so only a
# long-lived caller can show this.  Then broker 2 is killed and the first
# new call that succeeds is timed.
"$SB" call $CL --idempotent --count 5000 --interval 20 echo.echo '"rr"' \
    > "$SB_TMP/rr.out" 2> "$SB_TMP/rr.err" &
RR_PID=$!
sb_track $RR_PID
start_cluster_broker lo-b1 'tcp://127.0.0.1:*' --insecure || bail "no broker lo-b1"
B1=$CB_EP
B1_PID=$CB_PID
at_broker "$B1" wait_instances echo 2 10
ok $? "the echo host rejoined the restarted broker by itself"
# Until the running caller's calls reach broker 1 (bounded: 10 s).  Each
# sys.stats read is itself a request: those are taken off.
BEFORE=$(at_broker "$B1" stat_value requests)
AFTER=$BEFORE
READS=0
for i in $(seq 1 50); do
    sleep 0.2
    AFTER=$(at_broker "$B1" stat_value requests)
    READS=$((READS + 1))
    [ $((AFTER - BEFORE - READS)) -ge 10 ] && break
done
GREW=$((AFTER - BEFORE - READS))
diag "restarted broker 1: $GREW requests from others while a caller runs ($BEFORE -> $AFTER, $READS stats reads)"
[ "$GREW" -ge 10 ] && kill -0 $RR_PID 2>/dev/null
ok $? "a running caller uses the restarted broker again ($GREW calls there)"
# SIGKILL: a SIGTERM would interrupt its call in progress, which it reports.
kill -KILL $RR_PID 2>/dev/null
wait $RR_PID 2>/dev/null
RR_ANSWERED=$(grep -c '^"rr"$' "$SB_TMP/rr.out")
diag "the running caller: $RR_ANSWERED calls answered before it was stopped"
[ ! -s "$SB_TMP/rr.err" ] && [ "$RR_ANSWERED" -gt 0 ]
ok $? "none of its calls failed across the restart ($(head -c 200 "$SB_TMP/rr.err"))"

kill -KILL "$B2_PID"
KILL2=$(now_ms)
FIRST_OK=""
for i in $(seq 1 40); do
    if [ "$("$SB" call $CL --idempotent --timeout 2000 echo.echo '"after"' 2>/dev/null)" = '"after"' ]; then
        FIRST_OK=$(now_ms)
        break
    fi
done
DELAY=$(( ${FIRST_OK:-999999} - KILL2 ))
diag "broker 2 killed; first new call answered after $DELAY ms"
[ -n "$FIRST_OK" ] && [ $DELAY -le 2000 ]
ok $? "new calls succeed within 2 s of the kill ($DELAY ms)"

# -- events with two brokers -----------------------------------------------

start_cluster_broker lo-b2 'tcp://127.0.0.1:*' --insecure || bail "no broker lo-b2"
B2=$CB_EP
B2_PID=$CB_PID
at_broker "$B2" wait_instances echo 2 10 || diag "echo did not rejoin broker 2"
# A broadcast subscriber and a balanced group of two, all linked to both.
for name in all g1 g2; do
    group=""
    [ $name != all ] && group="--group billing"
    "$SB" sub $CL $group ev. > "$SB_TMP/$name.out" 2> "$SB_TMP/$name.err" &
    sb_track $!
done
# Until a probe sent to each broker reaches the broadcast subscriber.
linked=0
for i in $(seq 1 50); do
    "$SB" pub --connect "$B1" ev.probe '"b1"' 2>/dev/null
    "$SB" pub --connect "$B2" ev.probe '"b2"' 2>/dev/null
    if grep -q '"b1"' "$SB_TMP/all.out" && grep -q '"b2"' "$SB_TMP/all.out"; then
        linked=1
        break
    fi
    sleep 0.2
done
ok $((1 - linked)) "the subscribers found both brokers"
sleep 1.5
EVENTS=40
for i in $(seq 1 $EVENTS); do
    if [ $((i % 2)) = 0 ]; then EP=$B1; else EP=$B2; fi
    "$SB" pub --connect "$EP" ev.data "$i" || diag "sb pub $i failed"
done
for i in $(seq 1 50); do
    [ "$(grep -c ev.data "$SB_TMP/all.out")" -ge $EVENTS ] && break
    sleep 0.1
done
sleep 1
GOT=$(grep -c ev.data "$SB_TMP/all.out")
DISTINCT=$(grep ev.data "$SB_TMP/all.out" | sort -u | wc -l)
diag "events: published $EVENTS (alternating brokers), broadcast subscriber got $GOT ($DISTINCT distinct)"
is "$GOT" $EVENTS "the broadcast subscriber got every event"
is "$DISTINCT" $EVENTS "once each (no duplicates through the second broker)"
G=$(cat "$SB_TMP/g1.out" "$SB_TMP/g2.out" | grep -c ev.data)
GD=$(cat "$SB_TMP/g1.out" "$SB_TMP/g2.out" | grep ev.data | sort -u | wc -l)
is "$G" $EVENTS "the balanced group got each event once ($G delivered, $GD distinct)"
"$SB" sub $CL --count 1 --timeout 10000 once. > "$SB_TMP/once.out" 2> "$SB_TMP/once.err" &
ONCE=$!
sb_track $ONCE
sleep 2.5
"$SB" pub $CL once.x '"one"'
wait $ONCE
is "$?" 0 "sb sub --count 1 by discovery gets the event"
is "$(cat "$SB_TMP/once.out")" '{"topic":"once.x","body":"one"}' "exactly once"

done_testing
