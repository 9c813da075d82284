#!/bin/bash
# validation.t — requests checked against the method schemas by the service
# runtime, through real processes: sb broker, sb run --schemas DIR echo and
# sb call.  A violating request fails with bad_request and the path of the
# first violation, on one line, whatever the client; a bad --schemas DIR
# stops sb run at once; a plugin that disagrees with its schema file is
# warned of once; without any schema directory echo's own schema (compiled
# into the plugin) validates; a plugin whose flags and own schema disagree
# is refused at load.
. "$(dirname "$0")/lib.sh"

SCHEMAS="$SB_TOP_SRCDIR/schemas"
start_broker b1
start_run host --schemas "$SCHEMAS" echo
HOST_PID=$RUN_PID
wait_instances echo 1 || bail "echo never registered"
is "$(cat "$SB_TMP/host.err")" "" "echo agrees with schemas/echo.json: nothing on stderr"

sb_call echo.reverse '{"text": "abc"}'
is "$OUT" '{"text":"cba"}' "a valid request is served"
sb_call echo.reverse '{"text": 5}'
is "$RC" 1 "a request violating the schema exits 1"
is "$ERR" 'sb call: bad_request: $.text: expected string, got integer' \
    "one line: bad_request and the path of the violation"
is "$OUT" "" "nothing on stdout"
sb_call echo.sleep '{"ms": 70000}'
like "$ERR" '^sb call: bad_request: \$\.ms: .*maximum' "a bound from the schema (sleep's maximum) is enforced"
sb_call echo.stats '{"values": [1, "two", 3]}'
is "$ERR" 'sb call: bad_request: $.values[1]: expected number, got string' "array items have their index in the path"
sb_call echo.reverse '{"text": "abc", "extra": 1}'
like "$ERR" '^sb call: bad_request: \$\.extra: ' "additionalProperties: false is enforced"
sb_call echo.echo '{"anything": [1, {"goes": null}]}'
is "$OUT" '{"anything":[1,{"goes":null}]}' "a method whose schema allows anything takes anything"
sb_call echo.reverse '{"text": "still here"}'
is "$OUT" '{"text":"ereh llits"}' "the instance keeps serving after refusals"

sb_run_refused 1 "^sb run: schemas: $SB_TMP/nodir: " "a --schemas DIR that does not exist" \
    --schemas "$SB_TMP/nodir" echo
mkdir "$SB_TMP/bad"
printf '{"service": "echo", "methods": {"reverse": {"request": {"type": "strin"}}}}\n' \
    > "$SB_TMP/bad/echo.json"
sb_run_refused 1 "^sb run: schemas: .*echo\.json" "a schema file that does not load names the file" \
    --schemas "$SB_TMP/bad" echo
SB_SCHEMAS="$SB_TMP/nodir" sb_run_exits 1 "^sb run: schemas: $SB_TMP/nodir: " "\$SB_SCHEMAS is explicit too" echo

# A schema file that disagrees with the plugin: one warning line, still serves.
mkdir "$SB_TMP/wrong"
python3 - "$SCHEMAS/echo.json" "$SB_TMP/wrong/echo.json" <<'EOF'
import json, sys
schema = json.load(open(sys.argv[1]))
schema["methods"]["sleep"]["idempotent"] = True
schema["methods"]["ghost"] = {"idempotent": True}
json.dump(schema, open(sys.argv[2], "w"))
EOF
start_run wrong --schemas "$SB_TMP/wrong" echo
ERR=$(cat "$SB_TMP/wrong.err")
is "$(printf '%s\n' "$ERR" | grep -c .)" 1 "a disagreeing schema file gives one line on stderr"
like "$ERR" '^sb run: warning: .*echo\.ghost: in the schema, not in the plugin; echo\.sleep: idempotent in the schema, not in the plugin$' \
    "naming the missing method and the idempotent flag"
kill -TERM $RUN_PID
wait $RUN_PID
is "$?" 0 "and it serves until SIGTERM"

# No schema directory at all: echo carries its own schema, so sb run says
# nothing and validates all the same.
DEFAULT=$("$SB" run --help | sed -n 's/.*else \(\/[^;]*\);.*/\1/p')
if [ -n "$DEFAULT" ] && [ ! -e "$DEFAULT" ]; then
    env -u SB_SCHEMAS "$SB" run --connect "$BROKER" echo > "$SB_TMP/none.out" 2> "$SB_TMP/none.err" &
    NONE_PID=$!
    sb_track $NONE_PID
    wait_for_line "$SB_TMP/none.out" '^sb run: serving ' 30
    ok $? "without a schema directory sb run serves"
    is "$(cat "$SB_TMP/none.err")" "" "and says nothing: echo carries its schema"
    kill -TERM $NONE_PID
    wait $NONE_PID
else
    ok 0 "# SKIP the default schema directory ${DEFAULT:-?} exists here"
    ok 0 "# SKIP the default schema directory exists here"
fi
kill -TERM $HOST_PID
wait $HOST_PID
start_run own echo
wait_instances echo 1 || bail "echo never registered"
sb_call echo.reverse '{"text": 5}'
is "$ERR" 'sb call: bad_request: $.text: expected string, got integer' \
    "with no --schemas, echo's own schema validates its requests"

# A plugin whose flags and embedded schema disagree does not load.
sb_run_refused 1 "^sb run: .*disagree\.so: the plugin's flags and its schema disagree: disagree\.ping: idempotent in the schema, not in the plugin$" \
    "a plugin whose flag and schema disagree" "$SB_TOP_BUILDDIR/tests/plugins/.libs/disagree.so"

done_testing
