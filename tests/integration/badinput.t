#!/bin/bash
# badinput.t — bad input to the broker from outside: a stranger speaking
# HTTP to the port, ZeroMQ peers sending garbage frames, malformed,
# oversized and wrong-version headers, unknown commands, lying bodies, and
# a caller that vanishes mid-request.  Each is dropped or answered and
# counted in sys.stats; the broker and its other clients carry on.
. "$(dirname "$0")/lib.sh"

GARBAGE="$SB_TOP_BUILDDIR/tests/integration/garbage"
[ -x "$GARBAGE" ] || bail "tests/integration/garbage is not built"

start_broker b1
start_run host echo
wait_instances echo 1 || bail "echo never registered"
BEFORE=$(stat_value bad_frames.malformed)

# Not ZeroMQ at all: an HTTP request and random bytes on the raw port.
PORT=${BROKER##*:}
if exec 3<>"/dev/tcp/127.0.0.1/$PORT"; then
    printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >&3
    head -c 4096 /dev/urandom >&3
    exec 3>&-
fi
ok 0 "sent HTTP and random bytes to the broker's port"

for round in 1 2 3; do
    "$GARBAGE" "$BROKER"
    ok $? "garbage sender round $round ran"
done

# Give the broker a bounded moment to count everything.
for i in $(seq 1 50); do
    [ "$(stat_value bad_frames.malformed)" -ge $((BEFORE + 9)) ] && break
    sleep 0.1
done
STATS=$("$SB" call --connect "$BROKER" sys.stats)
ok $? "the broker still answers sys.stats"
diag "bad_frames: $(json_get "$STATS" bad_frames)"
[ "$(json_get "$STATS" bad_frames.malformed)" -ge $((BEFORE + 9)) ]
ok $? "malformed headers are counted ($(json_get "$STATS" bad_frames.malformed))"
[ "$(json_get "$STATS" bad_frames.oversized)" -ge 3 ]
ok $? "oversized headers are counted"
[ "$(json_get "$STATS" bad_frames.bad_version)" -ge 3 ]
ok $? "wrong protocol versions are counted"
[ "$(json_get "$STATS" bad_frames.bad_command)" -ge 3 ]
ok $? "unknown commands are counted"
[ "$(json_get "$STATS" bad_frames.bad_field)" -ge 3 ]
ok $? "fields of the wrong type are counted"
TOTAL=$(printf '%s' "$STATS" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["bad_frames"].values()))')
[ "$TOTAL" -ge 30 ]
ok $? "at least 10 bad messages per round counted in all ($TOTAL)"

# The vanished callers' requests were answered into the void: no harm.
sleep 1
is "$("$SB" call --connect "$BROKER" --timeout 10000 echo.reverse '{"text": "still here"}')" \
    '{"text":"ereh llits"}' "the service still answers through the broker"
is "$("$SB" call --connect "$BROKER" --timeout 10000 sys.ping | python3 -c 'import json,sys; print(json.load(sys.stdin)["pong"])')" \
    "True" "sys.ping still answers"
kill -0 "$BROKER_PID"
ok $? "the broker process is alive"

done_testing
