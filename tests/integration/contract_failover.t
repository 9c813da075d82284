#!/bin/bash
# contract_failover.t — a service's contract, declared once in its plugin,
# protects every caller: two brokers, echo (which declares echo.echo
# idempotent in its own schema) and the REST bridge linked to both, HTTP
# load on POST /v1/echo/echo, broker 1 SIGKILLed in the middle.  Nobody
# tells the bridge that echo.echo is idempotent: it learns it from the
# bus (sys.describe), so every request is answered 2xx (the numbers are
# printed).  Also: `sb call sys.describe` shows echo's contract as both
# brokers know it, and the bridge's /openapi.json lists echo's methods
# and validates requests without any schema directory.  Every wait is bounded; everything started is killed.
. "$(dirname "$0")/rest_lib.sh"
need curl jq xargs

# Two brokers on random loopback ports.
start_one_broker () {   # NAME: sets EP and PID
    "$SB" broker --name "$1" --bind 'tcp://127.0.0.1:!' --beacon off --insecure \
        > "$T_DIR/$1.out" 2> "$T_DIR/$1.log" &
    PID=$!
    T_PIDS="$T_PIDS $PID"
    wait_for 20 grep -q 'listening on' "$T_DIR/$1.out" || bail "broker $1 did not start"
    EP=$(sed -n 's/.*listening on \(tcp:[^ ]*\).*/\1/p' "$T_DIR/$1.out" | head -1)
}
start_one_broker cf-b1
B1=$EP
B1_PID=$PID
start_one_broker cf-b2
B2=$EP
BROKER="$B1,$B2"
echo "# brokers $B1 (killed later) and $B2"

start_service echo --instances 2 --capacity 100 "$SB_PLUGINS/echo.so"
both_routed () {
    for b in "$B1" "$B2"; do
        "$SB" services --connect "$b" --json 2>/dev/null \
            | jq -e '.services[] | select(.name == "echo") | .instances == 2' >/dev/null || return 1
    done
}
wait_for 20 both_routed || bail "echo not listed by both brokers"

# sys.describe: echo's contract, from its plugin, as each broker knows it.
for b in "$B1" "$B2"; do
    D=$("$SB" call --connect "$b" sys.describe '{"service": "echo"}' 2>&1)
    is "$(jget "$D" '[.methods[] | select(.name == "echo" or .name == "sleep") | [.name, .idempotent, .timeout_ms]]')" \
        '[["echo",true,5000],["sleep",false,65000]]' "sys.describe at $b: echo.echo idempotent, echo.sleep not, with their timeouts"
    is "$(jget "$D" '.schema | fromjson | .methods.reverse.request.required')" '["text"]' \
        "and the schema text the plugin carries"
done
"$SB" call --connect "$B2" sys.describe '{"service": "nosuch"}' > /dev/null 2> "$T_DIR/nosuch.err"
like "$(cat "$T_DIR/nosuch.err")" '^sb call: not_found: ' "sys.describe of an unknown service: not_found"

# The bridge: no idempotency, no schema directory configured.
start_bridge cf "    threads = 4"
echo_ready () { post /v1/echo/echo '0'; [ "$STATUS" = 200 ]; }
wait_for 20 echo_ready || bail "echo never answered through the bridge"

# Its OpenAPI document lists the services of the bus, from their contracts.
openapi_has_echo () {
    call GET /openapi.json
    [ "$(jget "$BODY" '.paths | has("/v1/echo/reverse")')" = true ]
}
wait_for 15 openapi_has_echo
ok $? "/openapi.json lists echo's methods with no schema directory configured"
is "$(jget "$BODY" '.paths["/v1/echo/echo"].post["x-switchboard-idempotent"]')" true \
    "echo.echo is idempotent there, as echo's plugin declares"
is "$(jget "$BODY" '.components.schemas["echo.reverse.request"].required')" '["text"]' \
    "with echo.reverse's request schema"
post /v1/echo/reverse '{"text": 5}'
is "$STATUS" 400 "a request violating echo's schema is refused at the edge"
like "$BODY" 'expected string' "with the path of the violation"

# The load: REQUESTS POSTs, PAR at a time, each with its own body and a
# 10 s bound; broker 1 is SIGKILLed once the load has run for a while.
REQUESTS=400
PAR=16
one () {
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
         -H 'Content-Type: application/json' --data-binary "{\"n\":$1}" "$URL/v1/echo/echo"
}
export -f one
export URL
T0=$(date +%s%N)
seq 1 $REQUESTS | xargs -P $PAR -I{} bash -c 'one {}' > "$T_DIR/statuses" &
LOAD=$!
# Kill once a quarter of the requests are answered (bounded: 20 s).
for _ in $(seq 200); do
    [ "$(wc -l < "$T_DIR/statuses")" -ge $((REQUESTS / 4)) ] && break
    sleep 0.1
done
BEFORE=$(wc -l < "$T_DIR/statuses")
kill -KILL "$B1_PID"
wait "$B1_PID" 2>/dev/null
KILL_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
wait $LOAD
MS=$(( ($(date +%s%N) - T0) / 1000000 ))
TOTAL=$(wc -l < "$T_DIR/statuses")
GOOD=$(grep -c '^2' "$T_DIR/statuses")
BAD=$((TOTAL - GOOD))
echo "# $TOTAL requests in $MS ms, $PAR at a time; broker 1 SIGKILLed at $KILL_MS ms after $BEFORE answers; non-2xx: $BAD"
grep -v '^2' "$T_DIR/statuses" | sort | uniq -c | sed 's/^/#   status /'
is "$TOTAL" "$REQUESTS" "every request got an answer"
is "$BAD" 0 "0 non-2xx answers with broker 1 killed under load (the bridge was told nothing)"
ok "$([ "$BEFORE" -lt "$REQUESTS" ]; echo $?)" "broker 1 died while requests were still coming ($BEFORE of $REQUESTS answered)"

done_testing
