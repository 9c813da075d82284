#!/bin/bash
# peer_discovery_lo.t — the peer side of discovery: real `sb run` and
# `sb call` processes find the two brokers of a cluster on this machine by
# loopback beacons alone (no --connect), ignore a foreign cluster's broker,
# drop a broker that leaves, and give up after a bounded wait when the
# cluster is empty.  The brokers run with --beacon off; tests/cluster/announce
# sends their beacons (on a free UDP port, with a cluster name of this test)
# so that the peer side is tested end to end whether or not `sb broker`
# announces itself.  The brokers' side (a real two-broker cluster, failover,
# events) is tests/integration/cluster_lo.t.
. "${SB_TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

ANNOUNCE="${SB_TOP_BUILDDIR:-.}/tests/cluster/announce"
[ -x "$ANNOUNCE" ] || bail "no $ANNOUNCE"
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SB_CLUSTER="cluster-lo-$$" SB_BEACON=lo SB_BEACON_PORT=$PORT

start_broker b1; B1=$BROKER
start_broker b2; B2=$BROKER
"$ANNOUNCE" "$SB_CLUSTER" "$PORT" 200 "$B1" > "$SB_TMP/a1.out" 2>&1 &
A1=$!; sb_track $A1
"$ANNOUNCE" "$SB_CLUSTER" "$PORT" 200 "$B2" > "$SB_TMP/a2.out" 2>&1 &
A2=$!; sb_track $A2
# A broker of another cluster on the same port: must never be used.  It
# listens below the ephemeral range, where no other test's host, still
# retrying a killed broker's random port, can reach it by chance.
P3=""
for _ in $(seq 200); do
    p=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then P3=$p; break; fi
done
start_broker b3 ${P3:+--bind tcp://127.0.0.1:$P3}; B3=$BROKER
diag "the foreign cluster's broker listens on $B3"
"$ANNOUNCE" "other-$$" "$PORT" 200 "$B3" > "$SB_TMP/a3.out" 2>&1 &
sb_track $!

# The host finds both brokers by beacon alone (no --connect).
"$SB" run echo > "$SB_TMP/run.out" 2> "$SB_TMP/run.err" &
sb_track $!
wait_for_line "$SB_TMP/run.out" '^sb run: serving echo' 30
ok $? "sb run --beacon lo (no --connect) starts"
BROKER=$B1; wait_instances echo 1 20; ok $? "echo registered with b1, found by beacon"
BROKER=$B2; wait_instances echo 1 20; ok $? "echo registered with b2, found by beacon"
BROKER=$B3; is "$(instances echo)" 0 "nothing registered with the foreign cluster's broker"
cat "$SB_TMP/run.out" "$SB_TMP/run.err" | grep -q "appeared, linked"; ok $? "sb run logs the brokers it linked"

# sb call with beacons only: waits for a broker, then calls.
out=$("$SB" call echo.reverse '{"text": "abc"}' 2>&1)
is "$out" '{"text":"cba"}' "sb call --beacon lo finds a broker and gets the reply"
# Twenty one-shot calls all succeed through the cluster's brokers.  Which
# broker a one-shot call uses is whichever it heard first: no promise of
# spread is made for single calls (long-lived clients use every link).
BROKER=$B1; r1=$(stat_value requests)
BROKER=$B2; r2=$(stat_value requests)
good=0
for i in $(seq 1 20); do
    [ "$("$SB" call echo.echo '1' 2>/dev/null)" = 1 ] && good=$((good + 1))
done
BROKER=$B1; d1=$(( $(stat_value requests) - r1 ))
BROKER=$B2; d2=$(( $(stat_value requests) - r2 ))
[ $good -eq 20 ] && [ $((d1 + d2)) -ge 20 ]
ok $? "20 one-shot calls answered through the cluster's brokers ($good ok; b1 +$d1, b2 +$d2)"

# A seed plus beacons: the seed is used even with beacons off.
out=$("$SB" call --beacon off --connect "$B2" echo.echo '"seed"' 2>&1)
is "$out" '"seed"' "--beacon off with --connect uses the seed"
"$SB" call --beacon off echo.echo > /dev/null 2>&1
is $? 1 "--beacon off without --connect fails with exit 1"

# b2 leaves: the host drops it, its instance disappears from b2.
kill -TERM $A2
wait_for_line "$SB_TMP/run.out" "left, unlinked" 10; ok $? "sb run logs b2 leaving"
BROKER=$B2; wait_instances echo 0 20; ok $? "the host unlinked b2 (no echo instance there)"
out=$("$SB" call echo.reverse '{"text": "xy"}' 2>&1)
is "$out" '{"text":"yx"}' "calls still succeed through b1"

# A beacon pointing at an endpoint nobody answers on: peers link to it and
# wait for it, calls go through the broker that answers, nothing hangs.
DEAD=tcp://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ANNOUNCE" "$SB_CLUSTER" "$PORT" 200 "$DEAD" > "$SB_TMP/a4.out" 2>&1 &
sb_track $!
heard=1
for i in $(seq 1 50); do
    cat "$SB_TMP/run.out" "$SB_TMP/run.err" | grep -q "at $DEAD appeared, linked" && { heard=0; break; }
    sleep 0.2
done
ok $heard "the host hears the beacon of a dead endpoint and links to it"
good=0
start=$(now_ms)
for i in $(seq 1 10); do
    [ "$("$SB" call --timeout 5000 echo.echo '2' 2>/dev/null)" = 2 ] && good=$((good + 1))
done
elapsed=$(( $(now_ms) - start ))
[ $good -eq 10 ]
ok $? "10 one-shot calls answered through b1 meanwhile ($good ok in $elapsed ms)"
BROKER=$B1; is "$(instances echo)" 1 "the host still serves through b1"

# No broker of the cluster at all: a bounded wait, exit 1.
start=$(now_ms)
"$SB" call --cluster "nobody-$$" echo.echo > /dev/null 2> "$SB_TMP/nobody.err"
is $? 1 "an empty cluster: sb call exits 1"
elapsed=$(( $(now_ms) - start ))
[ $elapsed -lt 10000 ]; ok $? "after a bounded wait ($elapsed ms)"
grep -q "no broker of cluster" "$SB_TMP/nobody.err"; ok $? "saying no broker answered"

done_testing
