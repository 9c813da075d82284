#!/bin/bash
# kill.t — a service host killed with SIGKILL in the middle of a load.
#
# Two `sb run` processes serve echo.  Callers keep idempotent requests
# (echo.whoami) and non-idempotent ones (echo.sleep) going while host A is
# killed outright.  What a user must see: no call hangs past its timeout;
# every idempotent call succeeds (the broker re-dispatches the ones A held
# to host B once A's heartbeats stop); a non-idempotent call either
# succeeds or fails with `unavailable`, never anything else; and B alone
# serves afterwards.
. "$(dirname "$0")/lib.sh"

start_broker b1
start_run hostA --instances 2 --capacity 4 echo
PID_A=$RUN_PID
start_run hostB --instances 2 --capacity 4 echo
PID_B=$RUN_PID
wait_instances echo 4 || bail "echo never had 4 instances"
ok 0 "two hosts, 4 instances of echo"

# The load: 4 sleeps of 4 s (non-idempotent), then 4 callers of whoami
# (idempotent, 8 calls each) that keep going across the kill.
TIMEOUT=20000
CALLERS=""
for c in $(seq 1 4); do
    (
        S=$(now_ms)
        OUT=$("$SB" call --connect "$BROKER" --timeout $TIMEOUT echo.sleep '{"ms": 4000}' 2>&1)
        echo "$? $(( $(now_ms) - S )) $OUT"
    ) > "$SB_TMP/sleep.$c" &
    CALLERS="$CALLERS $!"
done
# Kill host A once the sleeps are in flight (some of them on A).
N=0
for i in $(seq 1 100); do
    N=$("$SB" services --connect "$BROKER" | awk '$1 == "echo" { print $5 }')
    [ "${N:-0}" -ge 4 ] && break
    sleep 0.1
done
for c in $(seq 1 4); do
    (
        for i in $(seq 1 8); do
            S=$(now_ms)
            OUT=$("$SB" call --connect "$BROKER" --timeout $TIMEOUT echo.whoami 2>&1)
            echo "$? $(( $(now_ms) - S )) $OUT"
        done
    ) > "$SB_TMP/idem.$c" &
    CALLERS="$CALLERS $!"
done
sleep 0.2
kill -KILL "$PID_A"
KILLED=$?
wait "$PID_A" 2>/dev/null
ok $KILLED "host A killed with SIGKILL while ${N:-0} requests were in flight and callers kept calling"
START=$(now_ms)

# Each call is bounded by its own timeout; the callers make up to 8 calls
# in a row, so allow them 8 timeouts in all before calling it a hang.
HUNG=0
for pid in $CALLERS; do
    while kill -0 "$pid" 2>/dev/null && [ $(( $(now_ms) - START )) -lt $((8 * TIMEOUT)) ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        HUNG=$((HUNG + 1))
        kill -KILL "$pid"
    fi
    wait "$pid" 2>/dev/null
done
is "$HUNG" 0 "every caller finished ($(( $(now_ms) - START )) ms after the kill)"

cat "$SB_TMP"/idem.* > "$SB_TMP/idem.all"
cat "$SB_TMP"/sleep.* > "$SB_TMP/sleep.all"
is "$(wc -l < "$SB_TMP/idem.all")" 32 "32 idempotent calls made"
is "$(grep -c '^0 ' "$SB_TMP/idem.all")" 32 "all 32 idempotent calls succeeded"
if grep -v '^0 ' "$SB_TMP/idem.all" > /dev/null; then
    grep -v '^0 ' "$SB_TMP/idem.all" | head -5 | sed 's/^/#   /'
fi
SLOWEST=$(awk '{ if ($2 > max) max = $2 } END { print max + 0 }' "$SB_TMP/idem.all" "$SB_TMP/sleep.all")
[ "$SLOWEST" -le $((TIMEOUT + 3000)) ]
ok $? "no call took longer than its timeout (slowest ${SLOWEST} ms, timeout ${TIMEOUT} ms)"

is "$(wc -l < "$SB_TMP/sleep.all")" 4 "4 non-idempotent calls made"
GOOD=$(grep -cE '^0 [0-9]+ \{"slept":4000\}$|^1 [0-9]+ sb call: unavailable: ' "$SB_TMP/sleep.all")
is "$GOOD" 4 "each non-idempotent call succeeded or got 'unavailable'"
diag "non-idempotent: $(grep -c '^0 ' "$SB_TMP/sleep.all") succeeded, $(grep -c 'unavailable' "$SB_TMP/sleep.all") unavailable"

wait_instances echo 2 15
ok $? "the broker dropped host A's instances"
ALL_B=0
for i in $(seq 1 5); do
    OUT=$("$SB" call --connect "$BROKER" --timeout 5000 echo.whoami)
    [ "$(json_get "$OUT" pid)" = "$PID_B" ] || ALL_B=1
done
ok $ALL_B "host B answers everything afterwards"

done_testing
