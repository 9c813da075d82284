#!/bin/bash
# rest_api.t — the REST bridge seen by an HTTP client: every route, every
# error status of the table, auth, CORS, aliases, metrics, request ids,
# a client that leaves early, and a graceful stop.  Real processes: one
# broker, echo, two bridges (one with keys, one without); real curl.
. "$(dirname "$0")/rest_lib.sh"
need curl jq b2sum

ALL=all-secret-token
ECHO_ONLY=echo-only-secret
H_ALL="Authorization: Bearer $ALL"

# queue-max 2 and echo capacity 1 let the broker answer `overloaded`.
start_broker --queue-max 2
start_service echo --capacity 1 "$SB_PLUGINS/echo.so"
start_bridge main "    threads = 2
    max_body = 4096
    timeout_ms = 5000
    drain_ms = 3000
    schemas = \"$SB_TOP_SRCDIR/schemas\"
    cors_origins = \"https://app.example.com\"
    aliases = \"GET /users/{id} echo.echo; POST /things/{kind}/new echo.echo\"
    auth
        keys = \"all echo\"
        all
            hash = \"$(b2hash "$ALL")\"
            allow = \"*\"
        echo
            hash = \"$(b2hash "$ECHO_ONLY")\"
            allow = \"echo.echo, echo.sleep\""
MAIN_PID=$BRIDGE_PID
MAIN_URL=$URL

echo_ready () { post /v1/echo/echo '1' -H "$H_ALL"; [ "$STATUS" = 200 ]; }
wait_for 20 echo_ready || bail "echo never answered through the bridge"

# --- routes ------------------------------------------------------------
call GET /healthz
is "$STATUS" 200 "GET /healthz: 200 while the broker answers"
is "$(jget "$BODY" .status)" ok "/healthz says ok"

doc='{"i":-9007199254740993,"u":9223372036854775807,"f":1.5,"s":"h\u00e9llo \u2603","n":null,"b":true,"a":[1,[2,{"x":[]}]],"m":{}}'
post /v1/echo/echo "$doc" -H "$H_ALL"
is "$STATUS" 200 "POST /v1/echo/echo: 200"
is "$(jget "$BODY" -S)" "$(jget "$doc" -S)" "JSON in, same JSON out (integers, floats, unicode, nesting)"
like "$BODY" '9223372036854775807' "int64 max survives exactly"
like "$BODY" '-9007199254740993' "int64 beyond 2^53 survives exactly"
like "$(header Content-Type)" '^application/json' "reply is application/json"
like "$(header X-Request-Id)" '^[0-9a-f]{32}$' "a generated X-Request-Id"

post /v1/echo/reverse '{"text":"héllo"}' -H "$H_ALL" -H 'X-Request-Id: client-id-42'
is "$(jget "$BODY" .text)" "olléh" "echo.reverse through the bridge"
is "$(header X-Request-Id)" client-id-42 "the client's X-Request-Id is kept"
post /v1/echo/echo '1' -H "$H_ALL" -H 'X-Request-Id: bad id with spaces'
like "$(header X-Request-Id)" '^[0-9a-f]{32}$' "an invalid X-Request-Id is replaced"

call GET /v1/services -H "$H_ALL"
is "$STATUS" 200 "GET /v1/services: 200"
is "$(jget "$BODY" '[.services[].name] | index("echo") != null')" true "the directory lists echo"

call GET /openapi.json -H "$H_ALL"
is "$STATUS" 200 "GET /openapi.json: 200"
like "$(jget "$BODY" .openapi)" '^3\.1' "it is an OpenAPI 3.1 document"
is "$(jget "$BODY" '.paths | has("/v1/echo/reverse")')" true "it describes echo.reverse from schemas/"

# --- aliases -----------------------------------------------------------
call GET '/users/42?fields=name' -H "$H_ALL"
is "$STATUS" 200 "alias GET /users/{id}: 200"
is "$(jget "$BODY" -S)" '{"fields":"name","id":"42"}' "path parameter and query argument become the body"
post /things/book/new '{"title":"x","kind":"ignored"}' -H "$H_ALL"
is "$(jget "$BODY" -S)" '{"kind":"book","title":"x"}' "alias POST: path parameter wins over a body member"
call DELETE /users/42 -H "$H_ALL"
is "$STATUS" 405 "alias with another method: 405"
is "$(header Allow)" GET "405 says which method is allowed"

# --- errors: bridge-made ----------------------------------------------
post /v1/echo/echo '{"a": [1, 2' -H "$H_ALL"
is "$STATUS" 400 "malformed JSON: 400"
is "$(jget "$BODY" .error.code)" bad_request "error.code is bad_request"
is "$(jget "$BODY" .error.request_id)" "$(header X-Request-Id)" "error.request_id matches X-Request-Id"

post /v1/echo/reverse '{"text": 5}' -H "$H_ALL"
is "$STATUS" 400 "schema violation: 400"
like "$(jget "$BODY" .error.message)" '\$\.text' "the message gives the path of the violation"

post /v1/echo/echo '1'
is "$STATUS" 401 "no API key: 401"
like "$(header WWW-Authenticate)" '^Bearer' "401 carries WWW-Authenticate"
post /v1/echo/echo '1' -H 'Authorization: Bearer wrong'
is "$STATUS" 401 "invalid API key: 401"
post /v1/echo/echo '1' -H "X-API-Key: $ECHO_ONLY"
is "$STATUS" 200 "X-API-Key header works, within its rights"
post /v1/echo/reverse '{"text":"a"}' -H "X-API-Key: $ECHO_ONLY"
is "$STATUS" 403 "a call outside the key's rights: 403"
is "$(jget "$BODY" .error.code)" forbidden "error.code is forbidden"
call GET /v1/services
is "$STATUS" 401 "the directory needs a key too"

call GET /nowhere -H "$H_ALL"
is "$STATUS" 404 "unknown route: 404"
is "$(jget "$BODY" .error.code)" not_found "unknown route: error.code not_found"
post /v1/nosuch/thing '{}' -H "$H_ALL"
is "$STATUS" 404 "unknown service: 404 (from the broker)"

call GET /v1/echo/echo -H "$H_ALL"
is "$STATUS" 405 "GET on a call route: 405"
is "$(header Allow)" POST "Allow: POST"
call POST /healthz
is "$STATUS" 405 "POST /healthz: 405"

big=$(head -c 6000 /dev/zero | tr '\0' 'x')
post /v1/echo/echo "\"$big\"" -H "$H_ALL"
is "$STATUS" 413 "body over max_body (Content-Length): 413"
post /v1/echo/echo "\"$big\"" -H "$H_ALL" -H 'Transfer-Encoding: chunked'
is "$STATUS" 413 "body over max_body (chunked): 413"
post /v1/echo/echo '1' -H "$H_ALL"
is "$STATUS" 200 "still serving after refusing large bodies"

call POST /v1/echo/echo -H "$H_ALL" -H 'Content-Type: text/plain' --data-binary '1'
is "$STATUS" 415 "text/plain: 415"
call POST /v1/echo/echo -H "$H_ALL" --data-binary '1' -H 'Content-Type:'
is "$STATUS" 415 "no Content-Type: 415"
post /v1/echo/echo '1' -H "$H_ALL" -H 'X-Timeout-Ms: nonsense'
is "$STATUS" 400 "bad X-Timeout-Ms: 400"

# --- errors: every bus code maps to its HTTP status ---------------------
for pair in bad_request:400 unauthorized:401 forbidden:403 not_found:404 \
            overloaded:429 internal:500 unavailable:503 timeout:504; do
    code=${pair%:*} status=${pair#*:}
    post /v1/echo/fail "{\"code\":\"$code\",\"message\":\"made to fail\"}" -H "$H_ALL"
    is "$STATUS/$(jget "$BODY" .error.code)" "$status/$code" "bus error $code -> HTTP $status"
done

post /v1/echo/sleep '{"ms":1500}' -H "$H_ALL" -H 'X-Timeout-Ms: 300'
is "$STATUS" 504 "echo.sleep past the deadline: 504"
is "$(jget "$BODY" .error.code)" timeout "error.code timeout"

curls=""
# Overload: capacity 1 + queue 2, six slow calls at once: some get 429.
sleep 1.5
for i in 1 2 3 4 5 6; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 20 -H "$H_ALL" -H 'Content-Type: application/json' \
         --data-binary '{"ms":700}' "$URL/v1/echo/sleep" > "$T_DIR/over.$i" &
    curls="$curls $!"
done
wait $curls
codes=$(cat "$T_DIR"/over.* | sort | uniq -c | tr -s ' ' | tr '\n' ',')
like "$codes" ' 429' "queue full at the broker: 429 ($codes)"
like "$codes" ' 200' "the others are served ($codes)"

# --- CORS ----------------------------------------------------------------
call OPTIONS /v1/echo/echo -H 'Origin: https://app.example.com' \
     -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type'
is "$STATUS" 204 "CORS preflight from an allowed origin: 204"
is "$(header Access-Control-Allow-Origin)" https://app.example.com "preflight allows the origin"
like "$(header Access-Control-Allow-Headers)" 'Authorization' "preflight allows Authorization"
call OPTIONS /v1/echo/echo -H 'Origin: https://evil.example.com' -H 'Access-Control-Request-Method: POST'
is "$STATUS" 403 "preflight from another origin: 403"
post /v1/echo/echo '1' -H "$H_ALL" -H 'Origin: https://app.example.com'
is "$(header Access-Control-Allow-Origin)" https://app.example.com "a simple request gets Access-Control-Allow-Origin"
post /v1/echo/echo '1' -H "$H_ALL" -H 'Origin: https://evil.example.com'
is "$(header Access-Control-Allow-Origin)" "" "no CORS header for another origin"

# --- a client that leaves before its reply -------------------------------
curl -s -o /dev/null --max-time 0.3 -H "$H_ALL" -H 'Content-Type: application/json' \
     --data-binary '{"ms":1000}' "$URL/v1/echo/sleep"
is "$?" 28 "curl gave up before the reply (timeout 0.3 s)"
gone_counted () {
    call GET /metrics
    printf '%s' "$BODY" | grep -Eq 'sb_rest_bridge_errors_total\{reason="client_gone"\} [1-9]'
}
ok "$(wait_for 10 gone_counted; echo $?)" "the bridge counted the vanished client once its reply came"
post /v1/echo/echo '"after"' -H "$H_ALL"
is "$STATUS/$BODY" '200/"after"' "and keeps serving"

# --- metrics -------------------------------------------------------------
call GET /metrics
is "$STATUS" 200 "GET /metrics: 200"
like "$(header Content-Type)" '^text/plain; version=0.0.4' "Prometheus text format"
like "$BODY" 'sb_rest_requests_total\{service="echo",method="echo",code="200"\} [1-9]' "requests by service, method, status"
like "$BODY" 'sb_rest_requests_total\{service="echo",method="sleep",code="504"\} 1' "504s are counted"
like "$BODY" 'sb_rest_request_duration_seconds_bucket\{service="echo",method="echo",le="\+Inf"\}' "latency histogram"
like "$BODY" 'sb_rest_requests_in_flight 1' "in-flight gauge (this scrape)"
like "$BODY" 'sb_rest_bridge_errors_total\{reason="malformed_json"\} 1' "bridge errors by reason"
if command -v promtool >/dev/null; then
    curl -s -o "$T_DIR/metrics.txt" "$URL/metrics"
    promtool check metrics < "$T_DIR/metrics.txt" > "$T_DIR/promtool.out" 2>&1
    ok $? "promtool check metrics accepts /metrics"
    [ -s "$T_DIR/promtool.out" ] && sed 's/^/# /' "$T_DIR/promtool.out"
else
    skip "promtool check metrics" "promtool missing (Debian package prometheus)"
fi

# --- auth off ------------------------------------------------------------
start_bridge open ""
OPEN_URL=$URL
post /v1/echo/echo '"open"'
is "$STATUS/$BODY" '200/"open"' "without keys the bridge serves anyone"
like "$(cat "$T_DIR/open.log")" 'AUTHENTICATION IS OFF' "and says so loudly at start"
kill "$LAST_PID"

# --- the broker goes away: healthz 503, calls 503/504 --------------------
URL=$MAIN_URL
kill "$BROKER_PID"
wait "$BROKER_PID" 2>/dev/null
broker_gone () { call GET /healthz; [ "$STATUS" = 503 ]; }
ok "$(wait_for 20 broker_gone; echo $?)" "/healthz: 503 once the broker is gone"
call GET /healthz
is "$(jget "$BODY" .status)" unavailable "/healthz body says unavailable"
post /v1/echo/echo '1' -H "$H_ALL" -H 'X-Timeout-Ms: 500'
like "$STATUS" '^50[34]$' "a call without a broker: $STATUS, not a hang"

# --- graceful stop -------------------------------------------------------
start=$(date +%s%N)
curl -s -o "$T_DIR/drain.body" -w '%{http_code}' --max-time 20 -H "$H_ALL" \
     -H 'Content-Type: application/json' --data-binary '{"ms":5000}' \
     "$URL/v1/echo/sleep" > "$T_DIR/drain.status" &
curl_pid=$!
sleep 0.5
kill -TERM "$MAIN_PID"
wait "$curl_pid"
wait "$MAIN_PID"
is "$?" 0 "the bridge stops cleanly on SIGTERM"
san_none "$MAIN_PID" "no sanitizer report from the bridge (when built with them)" "$T_DIR/main.log"
is "$(cat "$T_DIR/drain.status")" 503 "a request in flight at stop gets 503"
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
ok "$([ "$elapsed" -lt 10000 ]; echo $?)" "and does not wait for its reply (${elapsed} ms)"

done_testing
