#!/bin/bash
# call.t — request/reply through real processes: sb broker, sb run echo
# hello, and sb call / sb services as a user types them; exit codes and
# one-line errors as scripts rely on them.
. "$(dirname "$0")/lib.sh"

start_broker b1
start_run host --instances 2 echo hello
HOST_PID=$RUN_PID
wait_instances echo 2 || bail "echo never registered"
wait_instances hello 2 || bail "hello never registered"

sb_call echo.echo '{"a": [1, 2.5, "x", null, true], "b": {"c": -7}}'
is "$RC" 0 "echo.echo exits 0"
is "$OUT" '{"a":[1,2.5,"x",null,true],"b":{"c":-7}}' "echo.echo returns the body as JSON"
sb_call echo.echo
is "$OUT" "null" "no body sends null"
OUT=$(printf '[1, 2, 3]' | "$SB" call --connect "$BROKER" echo.echo -)
is "$OUT" "[1,2,3]" "'-' reads the body from stdin"
sb_call echo.reverse '{"text": "héllo, wörld ✓"}'
is "$OUT" '{"text":"✓ dlröw ,olléh"}' "echo.reverse reverses by code point"
sb_call echo.stats '{"values": [4, 1, 2.5, -3]}'
is "$RC" 0 "echo.stats exits 0"
is "$(json_get "$OUT" count)" 4 "stats count"
is "$(json_get "$OUT" sum)" 4.5 "stats sum"
is "$(json_get "$OUT" min)" -3.0 "stats min"
is "$(json_get "$OUT" max)" 4.0 "stats max"
is "$(json_get "$OUT" mean)" 1.125 "stats mean"
sb_call echo.stats '{"values": []}'
is "$OUT" '{"count":0,"sum":0.0,"min":null,"max":null,"mean":null}' "stats of nothing"
sb_call hello.hello
is "$OUT" '"hello, world"' "the README's hello plugin answers"
sb_call hello.hello '{"name": "you"}'
is "$OUT" '"hello, you"' "it reads its optional field with sb_request_unpack"
sb_call hello.hello '{"name": 5}'
like "$RC $ERR" '^1 .*bad_request: \$\.name: expected string, got integer$' "a field of the wrong type is refused with its path"
README_CODE=$(sed -n '/^```c$/,/^```$/p' "$SB_TOP_SRCDIR/README.md" | sed -n '2,/^```$/p' | sed '$d')
is "$README_CODE" "$(tail -n +3 "$SB_TOP_SRCDIR/services/hello/hello.c")" "README.md shows services/hello/hello.c verbatim"
DOC_CODE=$(sed -n '/^```c$/,/^```$/p' "$SB_TOP_SRCDIR/docs/writing-services.md" | sed -n '2,/^```$/p' | sed '$d')
is "$DOC_CODE" "$README_CODE" "docs/writing-services.md shows it too"

# Errors: exit 1 and one line 'sb call: CODE: TEXT'.
sb_call echo.fail '{"code": "not_found", "message": "no such order"}'
is "$RC" 1 "a service error exits 1"
is "$ERR" "sb call: not_found: no such order" "with one line: code and the service's text"
is "$OUT" "" "and nothing on stdout"
sb_call echo.fail '{"code": "unavailable"}'
like "$ERR" '^sb call: unavailable: ' "error codes pass through (unavailable)"
sb_call echo.reverse '{"text": 42}'
is "$RC" 1 "bad request exits 1"
like "$ERR" '^sb call: bad_request: ' "bad_request from the handler"
sb_call echo.nosuchmethod '{}'
is "$RC" 1 "unknown method exits 1"
like "$ERR" '^sb call: bad_request: ' "unknown method is bad_request"
sb_call nosuchservice.x '{}'
is "$RC" 1 "unknown service exits 1"
like "$ERR" '^sb call: not_found: ' "unknown service is not_found"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "errors are one line"

# Usage errors exit 2.
sb_call echo.echo '{"a": '
is "$RC" 2 "invalid JSON exits 2"
like "$ERR" '^sb call: invalid JSON' "and says so"
sb_call echo '{}'
is "$RC" 2 "a target without a method exits 2"
sb_call --timeout abc echo.echo
is "$RC" 2 "a bad --timeout exits 2"
sb_call "bad name.x"
is "$RC" 2 "a bad service name exits 2"
"$SB" call > /dev/null 2>&1
is "$?" 2 "no arguments exits 2"

# Timeout exits 3.
START=$(now_ms)
sb_call --timeout 500 echo.sleep '{"ms": 5000}'
ELAPSED=$(( $(now_ms) - START ))
is "$RC" 3 "a call past its --timeout exits 3"
like "$ERR" '^sb call: timeout: ' "with a timeout line"
[ $ELAPSED -lt 4000 ]
ok $? "and returns at its deadline, not the handler's (${ELAPSED} ms)"

# A broker that is not there: timeout, not a hang.
START=$(now_ms)
OUT=$("$SB" call --connect tcp://127.0.0.1:1 --timeout 300 sys.ping 2>/dev/null)
is "$?" 3 "no broker: exit 3"
[ $(( $(now_ms) - START )) -lt 5000 ]
ok $? "no broker: returns promptly"

# Built-ins and sb services.
sb_call sys.ping
like "$OUT" '"pong":true' "sys.ping through sb call"
TABLE=$("$SB" services --connect "$BROKER")
is "$?" 0 "sb services exits 0"
like "$TABLE" '^broker b1' "the table names the broker"
like "$TABLE" 'echo +1\.0\.0 +2 ' "echo is listed with its version and 2 instances"
like "$TABLE" 'reverse' "with its methods"
like "$("$SB" services --connect "$BROKER" --json)" '"name":"hello"' "--json gives the raw reply"

# A service that was offered but has no instance now is unavailable (503
# at the bridge), not not_found like a name nobody knows.
start_run lonely hello
LONELY=$RUN_PID
wait_instances hello 3 || diag "the second hello host did not register"
kill -TERM "$HOST_PID" "$LONELY"; wait "$HOST_PID" "$LONELY" 2>/dev/null
wait_instances hello 0 || diag "hello is still listed"
sb_call hello.hello
is "$RC $ERR" "1 sb call: unavailable: service 'hello' has no instance now" \
    "a service whose instances are all gone: unavailable, saying so"
sb_call nobody.hello
like "$RC $ERR" "^1 sb call: not_found: " "a service nobody ever offered: not_found"

# --help everywhere, with examples, exit 0.
for cmd in run call pub sub services; do
    HELP=$("$SB" "$cmd" --help)
    RC=$?
    [ $RC -eq 0 ] && printf '%s' "$HELP" | grep -q '^examples:'
    ok $? "sb $cmd --help exits 0 and shows examples"
done
"$SB" call --no-such-option > /dev/null 2>&1
is "$?" 2 "an unknown option exits 2"

done_testing
