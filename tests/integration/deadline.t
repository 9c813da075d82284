#!/bin/bash
# deadline.t — deadlines as a caller sees them: a call never waits past its
# --timeout, whether the handler is slow or the request is stuck in the
# broker's queue; a sleeping handler does not block its instance; late
# answers are dropped and counted, and the service keeps serving.
. "$(dirname "$0")/lib.sh"

start_broker b1
start_run host --capacity 1 echo
wait_instances echo 1 || bail "echo never registered"

# A slow handler: the caller gives up at its deadline, exit 3.  (The
# runtime answers `timeout` for the deferred request at its deadline; the
# handler's own answer comes later and is dropped.)
START=$(now_ms)
"$SB" call --connect "$BROKER" --timeout 1000 echo.sleep '{"ms": 4000}' > /dev/null 2> "$SB_TMP/err"
RC=$?
ELAPSED=$(( $(now_ms) - START ))
is "$RC" 3 "echo.sleep 4000 with --timeout 1000 exits 3"
like "$(cat "$SB_TMP/err")" '^sb call: timeout: ' "one timeout line"
[ $ELAPSED -lt 3500 ]
ok $? "returned near the deadline (${ELAPSED} ms)"

# The instance (capacity 1) is busy with a 3 s sleep that is allowed to
# finish: a new request waits in the broker's queue and gets `timeout`
# there, at its own deadline.
"$SB" call --connect "$BROKER" --timeout 20000 echo.sleep '{"ms": 3000}' > "$SB_TMP/long" 2>&1 &
LONG=$!
for i in $(seq 1 100); do
    [ "$("$SB" services --connect "$BROKER" | awk '$1 == "echo" { print $5 }')" = 1 ] && break
    sleep 0.1
done
START=$(now_ms)
"$SB" call --connect "$BROKER" --timeout 800 echo.echo '1' > /dev/null 2> "$SB_TMP/err"
is "$?" 3 "a request queued behind the busy instance times out (exit 3)"
[ $(( $(now_ms) - START )) -lt 2500 ]
ok $? "at its deadline"
wait $LONG
is "$?:$(cat "$SB_TMP/long")" '0:{"slept":3000}' "the long sleep itself completed"

# Once the late answer has come and gone, the instance serves again.
LATE=0
for i in $(seq 1 100); do
    LATE=$(stat_value late_replies)
    [ "${LATE:-0}" -ge 1 ] && break
    sleep 0.1
done
[ "${LATE:-0}" -ge 1 ]
ok $? "the late answer was dropped and counted (late_replies = $LATE)"
is "$("$SB" call --connect "$BROKER" --timeout 10000 echo.echo '"after"')" '"after"' "the service answers afterwards"
# Both callers got timeout.  The broker answered the slow call's at its
# deadline (the instance's own expiry comes 200 ms later, as the late reply
# above).  The queued call may have expired in its caller before it even
# reached the broker (a new client's session on a loaded machine), so at
# least the first is counted.
[ "$(stat_value errors.timeout)" -ge 1 ]
ok $? "sys.stats counts the timeouts (errors.timeout = $(stat_value errors.timeout))"

done_testing
