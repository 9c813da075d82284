#!/bin/bash
# spread.t — load spread across 3 instances of one service: every instance
# answers, and with a capacity of 1 each, six 1.5 s sleeps run three at a
# time (faster than in series, never faster than the credit allows).
. "$(dirname "$0")/lib.sh"

start_broker b1
start_run host --instances 3 --capacity 1 echo
wait_instances echo 3
ok $? "sys.services lists 3 instances of echo"
TABLE=$("$SB" services --connect "$BROKER")
like "$TABLE" 'echo +1\.0\.0 +3 +3 ' "3 instances with a capacity of 3 in all"

# Sequential calls: the broker picks the least-loaded instance each time,
# so every instance gets some of them.
SEEN=""
for i in $(seq 1 30); do
    OUT=$("$SB" call --connect "$BROKER" echo.whoami)
    SEEN="$SEEN $(json_get "$OUT" instance)"
done
DISTINCT=$(printf '%s\n' $SEEN | sort -u | tr '\n' ' ')
is "$DISTINCT" "0 1 2 " "30 calls were answered by instances 0, 1 and 2"

# Concurrent calls: 6 sleeps of 3 s, capacity 1 per instance.  While they
# run, the broker must show 3 in flight (one per instance), never more.
START=$(now_ms)
SLEEPERS=""
for i in $(seq 1 6); do
    "$SB" call --connect "$BROKER" --timeout 60000 echo.sleep '{"ms": 3000}' \
        > "$SB_TMP/sleep.$i" 2>&1 &
    SLEEPERS="$SLEEPERS $!"
done
MAX_IN_FLIGHT=0
for i in $(seq 1 40); do
    N=$("$SB" services --connect "$BROKER" --json | python3 -c '
import json, sys
print(sum(s["in_flight"] for s in json.load(sys.stdin)["services"] if s["name"] == "echo"))')
    [ "${N:-0}" -gt $MAX_IN_FLIGHT ] && MAX_IN_FLIGHT=$N
    [ $MAX_IN_FLIGHT -ge 3 ] && break
    sleep 0.1
done
wait_ok=0
for pid in $SLEEPERS; do
    wait "$pid" || wait_ok=1
done
ELAPSED=$(( $(now_ms) - START ))
ok $wait_ok "6 concurrent sleeps all answered"
is "$(cat "$SB_TMP"/sleep.* | sort -u)" '{"slept":3000}' "each with its reply"
is "$MAX_IN_FLIGHT" 3 "3 requests in flight at once: one per instance"
[ $ELAPSED -ge 5900 ]
ok $? "capacity 1 is respected: at most 3 at a time (${ELAPSED} ms >= 2 x 3000)"
[ $ELAPSED -lt 14000 ]
ok $? "and the 3 instances work in parallel (${ELAPSED} ms < 6 x 3000)"

done_testing
