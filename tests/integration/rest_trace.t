#!/bin/bash
# rest_trace.t — request ids and trace ids from an HTTP client to the
# services and back.  The echo.trace method answers the trace id its
# instance saw (and, with hops, the ids seen by further echo.trace calls
# it makes over the bus), so each test compares what curl sent with what
# a service really saw.  Real processes: one broker, two echo hosts, two
# bridges (one with keys, for 401s); real curl; `sb call --trace`.
. "$(dirname "$0")/rest_lib.sh"
need curl jq b2sum

KEY=trace-secret-token

start_broker
start_service echo1 "$SB_PLUGINS/echo.so"
start_service echo2 "$SB_PLUGINS/echo.so"
start_bridge main "    schemas = \"$SB_TOP_SRCDIR/schemas\""
MAIN_URL=$URL

trace_ready () { post /v1/echo/trace '{}'; [ "$STATUS" = 200 ]; }
wait_for 20 trace_ready || bail "echo.trace never answered through the bridge"

# blake2b128 TEXT: the bus trace id the bridge derives from a request id
# that is not 32 hex digits (BLAKE2b with a 16-byte digest, as b2sum).
blake2b128 () {
    printf '%s' "$1" | b2sum -l 128 | cut -d' ' -f1
}

# --- the client's X-Request-Id reaches the service ------------------------
ID=4bf92f3577b34da6a3ce929d0e0e4736
post /v1/echo/trace '{}' -H "X-Request-Id: $ID"
is "$STATUS" 200 "POST /v1/echo/trace: 200"
is "$(header X-Request-Id)" "$ID" "a 32-hex X-Request-Id comes back as sent"
is "$(jget "$BODY" .trace)" "$ID" "the service saw it as its trace id"

post /v1/echo/trace '{}' -H "X-Request-Id: 4BF92F3577B34DA6A3CE929D0E0E4736"
is "$(header X-Request-Id)" 4BF92F3577B34DA6A3CE929D0E0E4736 "an upper-case one comes back unchanged"
is "$(jget "$BODY" .trace)" "$ID" "and the service saw the same 16 bytes (lower case)"

OTHER='order-1234:retry.2'
post /v1/echo/trace '{}' -H "X-Request-Id: $OTHER"
is "$(header X-Request-Id)" "$OTHER" "another valid X-Request-Id comes back as sent"
is "$(jget "$BODY" .trace)" "$(blake2b128 "$OTHER")" "the service saw its BLAKE2b-128 hash (b2sum -l 128)"
post /v1/echo/trace '{}' -H "X-Request-Id: $OTHER"
is "$(jget "$BODY" .trace)" "$(blake2b128 "$OTHER")" "the same id maps to the same trace id every time"

post /v1/echo/trace '{}'
GEN=$(header X-Request-Id)
like "$GEN" '^[0-9a-f]{32}$' "no X-Request-Id: a generated one"
is "$(jget "$BODY" .trace)" "$GEN" "the service saw the generated id"
post /v1/echo/trace '{}'
isnt_gen=$(header X-Request-Id)
ok "$([ "$isnt_gen" != "$GEN" ]; echo $?)" "each request gets its own generated id"

# --- W3C traceparent --------------------------------------------------------
TP_TRACE=0af7651916cd43dd8448eb211c80319c
TP="00-$TP_TRACE-b7ad6b7169203331-01"
post /v1/echo/trace '{}' -H "traceparent: $TP"
is "$(jget "$BODY" .trace)" "$TP_TRACE" "a traceparent's trace-id reaches the service"
is "$(header X-Request-Id)" "$TP_TRACE" "and is the answer's X-Request-Id"
post /v1/echo/trace '{}' -H "traceparent: $TP" -H "X-Request-Id: $OTHER"
is "$(jget "$BODY" .trace)" "$TP_TRACE" "with both headers the bus carries the traceparent's trace-id"
is "$(header X-Request-Id)" "$OTHER" "and the answer the client's X-Request-Id"
post /v1/echo/trace '{}' -H "traceparent: 01-$TP_TRACE-b7ad6b7169203331-01-future-field"
is "$(jget "$BODY" .trace)" "$TP_TRACE" "a later traceparent version with more fields is understood"

for bad in "ff-$TP_TRACE-b7ad6b7169203331-01" \
           "00-00000000000000000000000000000000-b7ad6b7169203331-01" \
           "00-$TP_TRACE-0000000000000000-01" \
           "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01" \
           "00-$TP_TRACE-b7ad6b7169203331-01-extra" \
           "00-$TP_TRACE-b7ad6b7169203331"; do
    post /v1/echo/trace '{}' -H "traceparent: $bad"
    got=$(jget "$BODY" .trace)
    ok "$([ "$STATUS" = 200 ] && [ "$got" != "$TP_TRACE" ] && [ "$got" = "$(header X-Request-Id)" ]; echo $?)" \
       "invalid traceparent '$bad' is ignored: generated id ($STATUS, $got)"
done

# --- invalid X-Request-Id: replaced by a generated one, nothing else ---------
long=$(head -c 65 /dev/zero | tr '\0' 'a')
edge=$(head -c 64 /dev/zero | tr '\0' 'b')
post /v1/echo/trace '{}' -H "X-Request-Id: $edge"
is "$(header X-Request-Id)" "$edge" "a 64-character X-Request-Id is kept"
for bad in "$long" $'abc\x01def' $'tab\there' 'semi;colon' 'quote"d' 'ünïcode' '<script>'; do
    post /v1/echo/trace '{}' -H "X-Request-Id: $bad"
    got=$(header X-Request-Id)
    shown=$(printf '%q' "$bad" | head -c 40)
    ok "$([ "$STATUS" = 200 ] && [ "$got" != "$bad" ] && printf '%s' "$got" | grep -Eq '^[0-9a-f]{32}$' \
          && [ "$(jget "$BODY" .trace)" = "$got" ]; echo $?)" \
       "invalid X-Request-Id $shown: answered 200 with a generated id the service saw ($STATUS, $got)"
done
call GET /metrics
like "$BODY" 'sb_rest_bridge_errors_total\{reason="bad_request_id"\} 7' "the 7 invalid X-Request-Ids were counted"
like "$BODY" 'sb_rest_bridge_errors_total\{reason="bad_traceparent"\} 6' "the 6 invalid traceparents were counted"

# --- a service calling another keeps the trace id ------------------------
post /v1/echo/trace '{"hops": 3}' -H "X-Request-Id: $ID"
is "$STATUS" 200 "echo.trace with 3 hops: 200"
is "$(jget "$BODY" '[.trace, .next.trace, .next.next.trace, .next.next.next.trace] | unique | join(",")')" \
   "$ID" "every hop of echo -> echo -> echo -> echo saw the client's id"
is "$(jget "$BODY" '.next.next.next | has("next")')" false "the last hop made no call"
post /v1/echo/trace '{"hops": 2}' -H "traceparent: $TP"
is "$(jget "$BODY" '[.trace, .next.trace, .next.next.trace] | unique | join(",")')" \
   "$TP_TRACE" "a traceparent's trace-id travels every hop too"
post /v1/echo/trace '{"hops": 1}'
is "$(jget "$BODY" '[.trace, .next.trace] | unique | join(",")')" "$(header X-Request-Id)" \
   "and so does a generated one"
post /v1/echo/trace '{"hops": 9}' -H "X-Request-Id: $ID"
is "$STATUS/$(jget "$BODY" .error.request_id)" "400/$ID" "hops past the schema's maximum: 400 with the request id"

# --- every answer carries X-Request-Id, errors carry it as request_id ------
# check_id DESCRIPTION WANT_STATUS: the last answer has the status, our id
# in X-Request-Id and, for a JSON error, in error.request_id.
RID=trace-check-42
check_id () {
    local rid_body
    rid_body=$(jget "$BODY" '.error.request_id // empty')
    ok "$([ "$STATUS" = "$2" ] && [ "$(header X-Request-Id)" = "$RID" ] \
          && { [ "$2" -lt 400 ] || [ "$rid_body" = "$RID" ]; }; echo $?)" \
       "$1: $2 with X-Request-Id$([ "$2" -ge 400 ] && echo ' and error.request_id') (got $STATUS, '$(header X-Request-Id)', '$rid_body')"
}
call GET /nowhere -H "X-Request-Id: $RID";                       check_id "unknown route" 404
post /v1/nosuch/thing '{}' -H "X-Request-Id: $RID";              check_id "unknown service (broker)" 404
post /v1/echo/fail '{"code":"not_found"}' -H "X-Request-Id: $RID"; check_id "a service's not_found" 404
post /v1/echo/fail '{"code":"internal"}' -H "X-Request-Id: $RID";  check_id "a service's internal" 500
post /v1/echo/trace '{"a": [1' -H "X-Request-Id: $RID";          check_id "malformed JSON" 400
call GET /v1/echo/trace -H "X-Request-Id: $RID";                 check_id "wrong method" 405
call POST /v1/echo/trace -H 'Content-Type: text/plain' --data-binary '{}' -H "X-Request-Id: $RID"
                                                                 check_id "wrong content type" 415
post /v1/echo/sleep '{"ms":1000}' -H 'X-Timeout-Ms: 200' -H "X-Request-Id: $RID"; check_id "past the deadline" 504
call GET /healthz -H "X-Request-Id: $RID";                       check_id "GET /healthz" 200
call GET /metrics -H "X-Request-Id: $RID";                       check_id "GET /metrics" 200
call GET /openapi.json -H "X-Request-Id: $RID";                  check_id "GET /openapi.json" 200
is "$(jget "$BODY" '.paths | has("/v1/echo/trace")')" true "the OpenAPI document describes echo.trace"
call GET /v1/services -H "X-Request-Id: $RID";                   check_id "GET /v1/services" 200

start_bridge keyed "    auth
        keys = \"k\"
        k
            hash = \"$(b2hash "$KEY")\"
            allow = \"echo.echo\""
post /v1/echo/trace '{}' -H "X-Request-Id: $RID";                check_id "no API key" 401
post /v1/echo/trace '{}' -H "X-Request-Id: $RID" -H "Authorization: Bearer $KEY"; check_id "outside the key's rights" 403
post /v1/echo/echo '1' -H "X-Request-Id: $RID" -H "Authorization: Bearer $KEY";    check_id "within them" 200
URL=$MAIN_URL

# --- sb call --trace ---------------------------------------------------------
out=$("$SB" call --connect "$BROKER" --trace "$ID" echo.trace '{"hops": 1}' 2>&1)
is "$(jget "$out" '[.trace, .next.trace] | unique | join(",")')" "$ID" "sb call --trace: both hops saw the given id"
out=$("$SB" call --connect "$BROKER" echo.trace 2>&1)
like "$(jget "$out" .trace)" '^[0-9a-f]{32}$' "sb call without --trace: a random trace id"
ok "$([ "$(jget "$out" .trace)" != "$ID" ]; echo $?)" "which is not the last one"
for bad in 4bf92f3577b34da6a3ce929d0e0e473 4bf92f3577b34da6a3ce929d0e0e4736ff \
           4bf92f3577b34da6a3ce929d0e0e473g 00000000000000000000000000000000; do
    "$SB" call --connect "$BROKER" --trace "$bad" echo.trace > "$T_DIR/out" 2> "$T_DIR/err"
    status=$?
    ok "$([ "$status" = 2 ] && grep -q -- '--trace' "$T_DIR/err"; echo $?)" \
       "sb call --trace $bad: usage error, exit 2 ($status: $(head -c 100 "$T_DIR/err"))"
done

done_testing
