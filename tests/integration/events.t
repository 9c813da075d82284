#!/bin/bash
# events.t — sb pub / sb sub between real processes: broadcast (every
# subscriber gets every matching event), balanced groups (each event goes
# to one member), prefixes that do not match, and exit codes.
. "$(dirname "$0")/lib.sh"

start_broker b1

# start_sub NAME ARGS...: a background `sb sub`, ready once subscribed.
start_sub () {
    local name=$1
    shift
    "$SB" sub --connect "$BROKER" "$@" > "$SB_TMP/$name.out" 2> "$SB_TMP/$name.err" &
    sb_track $!
    eval "PID_$name=$!"
    wait_for_line "$SB_TMP/$name.err" '^sb sub: subscribed to ' 20 || bail "sb sub $name did not subscribe"
}

start_sub all1 orders.
start_sub all2 orders.
start_sub g1 --group billing orders.paid
start_sub g2 --group billing orders.paid
start_sub other shipments.

for i in $(seq 1 6); do
    "$SB" pub --connect "$BROKER" orders.paid "{\"id\": $i}"
    ok $? "sb pub orders.paid #$i exits 0"
done
"$SB" pub --connect "$BROKER" orders.created '{"id": 100, "items": ["a", "b"]}'
ok $? "sb pub orders.created exits 0"

# Publishing is confirmed with a ping; delivery to other peers follows at once,
# but give the subscribers a bounded moment to print.
for name in all1 all2; do
    for i in $(seq 1 50); do
        [ "$(wc -l < "$SB_TMP/$name.out")" -ge 7 ] && break
        sleep 0.1
    done
done
sleep 0.5

is "$(wc -l < "$SB_TMP/all1.out")" 7 "broadcast subscriber 1 got all 7 events"
is "$(wc -l < "$SB_TMP/all2.out")" 7 "broadcast subscriber 2 got all 7 events"
is "$(head -n 1 "$SB_TMP/all1.out")" '{"topic":"orders.paid","body":{"id":1}}' "events print as {topic, body} JSON lines"
is "$(tail -n 1 "$SB_TMP/all2.out")" '{"topic":"orders.created","body":{"id":100,"items":["a","b"]}}' "in order, bodies intact"
G1=$(wc -l < "$SB_TMP/g1.out")
G2=$(wc -l < "$SB_TMP/g2.out")
is "$((G1 + G2))" 6 "the balanced group got each orders.paid event once ($G1 + $G2)"
[ "$G1" -ge 1 ] && [ "$G2" -ge 1 ]
ok $? "both members of the group got some"
is "$(sort "$SB_TMP/g1.out" "$SB_TMP/g2.out" | uniq -d)" "" "no event went to both members"
! grep -q orders.created "$SB_TMP/g1.out" "$SB_TMP/g2.out"
ok $? "orders.created does not match the group's prefix orders.paid"
is "$(wc -l < "$SB_TMP/other.out")" 0 "a subscriber to shipments. got nothing"

# --count and --timeout.
"$SB" sub --connect "$BROKER" --count 1 --timeout 20000 jobs. > "$SB_TMP/one.out" 2> "$SB_TMP/one.err" &
ONE=$!
sb_track $ONE
wait_for_line "$SB_TMP/one.err" '^sb sub: subscribed' 20
"$SB" pub --connect "$BROKER" jobs.done '"x"'
wait $ONE
is "$?" 0 "sb sub --count 1 exits 0 after one event"
is "$(cat "$SB_TMP/one.out")" '{"topic":"jobs.done","body":"x"}' "and printed it"
"$SB" sub --connect "$BROKER" --count 1 --timeout 300 nothing. > /dev/null 2> "$SB_TMP/none.err"
is "$?" 3 "sb sub --count with nothing arriving exits 3 at --timeout"
like "$(cat "$SB_TMP/none.err")" 'timeout: 0 of 1 events' "and says so"

# SIGTERM ends a subscriber cleanly.
kill -TERM "$PID_all1"
wait "$PID_all1"
is "$?" 0 "SIGTERM ends sb sub with exit 0"

# Usage errors.
"$SB" pub --connect "$BROKER" 'bad topic' '1' 2> /dev/null
is "$?" 2 "sb pub with a bad topic exits 2"
"$SB" pub --connect "$BROKER" orders.x '{oops' 2> /dev/null
is "$?" 2 "sb pub with invalid JSON exits 2"
"$SB" sub --connect "$BROKER" 2> /dev/null
is "$?" 2 "sb sub without a prefix exits 2"
"$SB" pub --connect tcp://127.0.0.1:1 --timeout 300 orders.x '1' 2> /dev/null
is "$?" 3 "sb pub with no broker exits 3"

done_testing
