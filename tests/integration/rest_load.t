#!/bin/bash
# rest_load.t — the REST bridge under concurrency: hundreds of parallel
# requests, each answered with its own body; slow requests in flight do
# not hold HTTP threads (fast ones pass them); clients that vanish in
# numbers leave the bridge serving and its in-flight gauge back at zero.
. "$(dirname "$0")/rest_lib.sh"
need curl jq xargs

start_broker
start_service echo --capacity 200 "$SB_PLUGINS/echo.so"
start_bridge load "    threads = 2
    connections = 2000"
echo_ready () { post /v1/echo/echo '1'; [ "$STATUS" = 200 ]; }
wait_for 20 echo_ready || bail "echo never answered through the bridge"

# 400 requests, 50 at a time, each with its own payload.
one () {
    local got
    got=$(curl -s --max-time 30 -H 'Content-Type: application/json' \
               --data-binary "{\"n\":$1,\"pad\":\"$(printf '%0*d' $(( $1 % 300 )) 0)\"}" \
               "$URL/v1/echo/echo")
    [ "$(printf '%s' "$got" | jq -r .n 2>/dev/null)" = "$1" ] && echo good || echo "bad $1 $got"
}
export -f one
export URL
seq 1 400 | xargs -P 50 -I{} bash -c 'one {}' > "$T_DIR/results"
is "$(grep -c '^good$' "$T_DIR/results")" 400 "400 parallel requests (50 at a time) all answered with their own body"
grep -v '^good$' "$T_DIR/results" | head -5 | sed 's/^/# /'

slow=""
# 100 slow calls in flight (2 HTTP threads): a fast call still passes.
for i in $(seq 100); do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 -H 'Content-Type: application/json' \
         --data-binary '{"ms":2000}' "$URL/v1/echo/sleep" >> "$T_DIR/slow" &
    slow="$slow $!"
done
sleep 0.5
t0=$(date +%s%N)
post /v1/echo/echo '"fast"'
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$STATUS/$BODY" '200/"fast"' "a fast call while 100 slow ones wait"
ok "$([ "$ms" -lt 1500 ]; echo $?)" "and it is not queued behind them (${ms} ms)"
wait $slow
is "$(grep -c '^200$' "$T_DIR/slow")" 100 "the 100 slow calls are all answered"

gone=""
# 50 clients that give up early.
for i in $(seq 50); do
    curl -s -o /dev/null --max-time 0.2 -H 'Content-Type: application/json' \
         --data-binary '{"ms":800}' "$URL/v1/echo/sleep" &
    gone="$gone $!"
done
wait $gone
settled () {
    call GET /metrics
    printf '%s' "$BODY" | grep -q '^sb_rest_requests_in_flight 1$'
}
ok "$(wait_for 15 settled; echo $?)" "in-flight gauge back to zero after 50 vanished clients"
call GET /metrics
like "$BODY" 'sb_rest_bridge_errors_total\{reason="client_gone"\} [1-9]' "their late replies were dropped and counted"
post /v1/echo/echo '"still"'
is "$STATUS/$BODY" '200/"still"' "the bridge still serves"

kill -TERM "$BRIDGE_PID"
wait "$BRIDGE_PID"
is "$?" 0 "the bridge stops cleanly after all that"
san_none "$BRIDGE_PID" "no sanitizer report from the bridge (when built with them)" "$T_DIR/load.log"

done_testing
