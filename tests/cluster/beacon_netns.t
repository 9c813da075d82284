#!/bin/bash
# beacon_netns.t — beacons over real broadcast and multicast between three
# simulated hosts (network namespaces joined by a bridge, see netns.sh).
# Skipped, with the reason, where namespaces cannot be created.
. "${SB_TOP_SRCDIR:-$(dirname "$0")/../..}/tests/cluster/netns.sh"

PROBE="${SB_TOP_BUILDDIR:-.}/tests/cluster/beacon_probe"
PORT=7690
TMP=$(mktemp -d)
n=0
failed=0

ok () {
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi
}

now_ms () { echo $(( $(date +%s%N) / 1000000 )); }

# At exit: the namespaces and scratch files go; a sanitizer report not
# counted by san_check (the test stopped early) fails the test.
cleanup () {
    local rc=$?
    netns_down
    if ! san_finish "$TMP" && { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
        rc=1
    fi
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT

if [ ! -x "$PROBE" ]; then
    echo "1..0 # SKIP $PROBE not built"
    exit 0
fi
netns_up
up=$?
trap cleanup EXIT       # netns_up set netns_down alone; cleanup calls it
if [ $up != 0 ]; then
    echo "1..0 # SKIP $NETNS_WHY"
    exit 0
fi

# Broadcast on sb0: h1 and h2 announce, h3 only listens.
netns_exec 1 "$PROBE" sb0 $PORT tcp://10.77.0.1:7600 3000 200 > "$TMP/h1" 2>&1 &
netns_exec 2 "$PROBE" sb0 $PORT tcp://10.77.0.2:7600 3000 200 > "$TMP/h2" 2>&1 &
netns_exec 3 "$PROBE" sb0 $PORT - 3000 200 > "$TMP/h3" 2>&1 &
wait
grep -q "appeared tcp://10.77.0.2:7600" "$TMP/h1"
ok $? "h1 discovers h2 by broadcast"
grep -q "appeared tcp://10.77.0.1:7600" "$TMP/h2"
ok $? "h2 discovers h1 by broadcast"
[ "$(grep -c ' appeared ' "$TMP/h3")" = 2 ]
ok $? "listener h3 discovers both, once each"
sed 's/^/# h3: /' "$TMP/h3"

# Link down: h3 drops h1 within 3 s, and finds it again when restored.
netns_exec 1 "$PROBE" sb0 $PORT tcp://10.77.0.1:7600 9000 1000 > "$TMP/h1" 2>&1 &
netns_exec 3 "$PROBE" sb0 $PORT - 9000 1000 > "$TMP/h3" 2>&1 &
for i in $(seq 1 50); do
    grep -q "appeared tcp://10.77.0.1" "$TMP/h3" && break
    sleep 0.1
done
down_at=$(now_ms)
netns_link 1 down
for i in $(seq 1 60); do
    grep -q "gone tcp://10.77.0.1" "$TMP/h3" && break
    sleep 0.1
done
netns_link 1 up
wait
gone_at=$(awk '$2 == "gone" { print $1; exit }' "$TMP/h3")
gone_how=$(awk '$2 == "gone" { print $4; exit }' "$TMP/h3")
sed 's/^/# h3: /' "$TMP/h3"
echo "# link down at ${down_at} ms, gone reported at ${gone_at:-never} ms (wall clock)"
[ -n "$gone_at" ] && [ -z "$gone_how" ]
ok $? "h1 cut off is reported gone (silence, not leaving)"
[ -n "$gone_at" ] && [ $((gone_at - down_at)) -le 4000 ]
ok $? "within 3 s of the cut, 1 s slack for a loaded machine ($((${gone_at:-99999} - down_at)) ms)"
[ "$(grep -c ' appeared tcp://10.77.0.1' "$TMP/h3")" = 2 ]
ok $? "h1 appears again when the link is restored"

# Multicast group on sb0.
netns_exec 1 "$PROBE" 239.77.0.1@sb0 $PORT tcp://10.77.0.1:7600 3000 200 > "$TMP/h1" 2>&1 &
netns_exec 2 "$PROBE" 239.77.0.1@sb0 $PORT tcp://10.77.0.2:7600 3000 200 > "$TMP/h2" 2>&1 &
wait
grep -q "appeared tcp://10.77.0.2:7600" "$TMP/h1" && grep -q "appeared tcp://10.77.0.1:7600" "$TMP/h2"
ok $? "h1 and h2 discover each other through multicast group 239.77.0.1"
[ "$failed" = 0 ] || sed 's/^/# h1: /' "$TMP/h1"

# Another cluster on the same LAN and port.
netns_exec 2 "$PROBE" sb0 $PORT tcp://10.77.0.2:7600 2000 200 other > "$TMP/h2" 2>&1 &
netns_exec 3 "$PROBE" sb0 $PORT - 2000 200 > "$TMP/h3" 2>&1 &
wait
! grep -q " appeared " "$TMP/h3"
ok $? "a broker of another cluster never appears"
grep -q "ignored foreign_cluster from 10.77.0.2" "$TMP/h3"
ok $? "its beacons are counted as foreign_cluster"
# Every probe has ended (wait above): their sanitizer reports are complete.
san_check "$TMP"
echo "1..$n"
exit $failed
