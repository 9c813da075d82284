#!/bin/bash
# secure.t — a secure cluster end to end, as real processes: a broker with
# keys (no --insecure), the echo service and callers connecting as CURVE
# clients with "ENDPOINT#KEY" (docs/security.md).  A caller allowed to call
# echo gets answers; one without the right is answered `forbidden`; a
# client without keys never gets in (refused at the handshake, counted by
# the broker); a member revoked and the broker sent SIGHUP is refused on
# its next connection; an expired certificate is refused.  Bodies are sealed
# end to end (docs/security.md 5): sb run says so, calls through it are
# sealed and opened (its exit summary counts them), events between members
# holding the cluster event key are sealed too.
. "$(dirname "$0")/lib.sh"

K="$SB_TMP/keys"

quiet () {
    "$SB" "$@" > /dev/null 2> "$SB_TMP/setup.err" || {
        sed 's/^/#   /' "$SB_TMP/setup.err"
        bail "setup failed: sb $*"
    }
}

# call MEMBER ENDPOINT ARGS...: sb call as MEMBER ("" for no keys); sets OUT,
# ERR and RC.
call () {
    local member=$1 endpoint=$2
    shift 2
    if [ -n "$member" ]; then
        OUT=$("$SB" call --keys "$K" --member "$member" --connect "$endpoint" "$@" \
              2> "$SB_TMP/call.err")
    else
        OUT=$("$SB" call --connect "$endpoint" "$@" 2> "$SB_TMP/call.err")
    fi
    RC=$?
    ERR=$(cat "$SB_TMP/call.err")
}

# -- keys: an authority, the broker, the echo host and three callers ------

quiet keygen authority "$K"
for m in broker echo alice nobody mallory events; do
    quiet keygen member "$m" "$K"
done
sign () {
    local member=$1
    shift
    quiet cert sign --authority "$K/authority.key" --member "$K/$member.pub" \
        --out "$K/$member.cert" "$@"
}
sign broker --call 'sys'
sign echo --offer echo
sign alice --call 'echo,sys'
sign nobody
sign mallory --call 'echo'
KEY=$(sed -n 's/^curve-public = //p' "$K/broker.pub")
[ ${#KEY} -eq 64 ] || bail "no broker curve key in broker.pub"
: > "$SB_TMP/revoked"

# -- a secure broker ------------------------------------------------------

"$SB" broker --bind 'tcp://127.0.0.1:*' --name secure --beacon off \
    --keys "$K" --member broker --revoked "$SB_TMP/revoked" > "$SB_TMP/broker.log" 2>&1 &
BROKER_PID=$!
sb_track $BROKER_PID
wait_for_line "$SB_TMP/broker.log" ' listening on tcp://' 20 || {
    sed 's/^/#   /' "$SB_TMP/broker.log"
    bail "no secure broker"
}
SECURE=$(sed -n 's/.* listening on \(tcp:[^ ]*\).*/\1/p' "$SB_TMP/broker.log" | head -n 1)
PLAIN=${SECURE%%#*}
like "$SECURE" "#$KEY\$" "the secure broker prints its endpoint with its CURVE key"
grep -qi 'insecure' "$SB_TMP/broker.log"
ok $((! $?)) "and does not say it is insecure"

# stat PATH: a counter from the broker's sys.stats, asked as alice.
stat () {
    "$SB" call --keys "$K" --member alice --connect "$SECURE" sys.stats 2>/dev/null | python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value.get(part, 0) if isinstance(value, dict) else 0
print(value)
' "$1"
}

# -- the echo service as a member ----------------------------------------

"$SB" run --keys "$K" --member echo --connect "$SECURE" "$SB_PLUGINS/echo.so" \
    > "$SB_TMP/echo.out" 2> "$SB_TMP/echo.err" &
ECHO_PID=$!
sb_track $ECHO_PID
wait_for_line "$SB_TMP/echo.out" '^sb run: serving echo' 30 || {
    sed 's/^/#   /' "$SB_TMP/echo.err"
    bail "the echo member did not start"
}

# -- allowed, forbidden ----------------------------------------------------

# The instance is welcomed a moment after 'serving': retry briefly.
for i in $(seq 1 50); do
    call alice "$SECURE" echo.reverse '{"text":"secret"}'
    [ "$RC" -eq 0 ] && break
    sleep 0.2
done
is "$RC" 0 "a member allowed to call echo gets an answer over CURVE"
is "$OUT" '{"text":"terces"}' "and the right one"

call nobody "$SECURE" echo.reverse '{"text":"x"}'
is "$RC" 1 "a member without the right to call echo: exit 1"
like "$ERR" 'forbidden' "and it is told 'forbidden'"

# -- sealed end to end -----------------------------------------------------

like "$(cat "$SB_TMP/echo.out")" 'bodies sealed end to end as member echo; events sealed' \
    "sb run says it seals bodies end to end, events for the cluster event key"
call alice "$SECURE" echo.echo '{"note":"sealed-canary-31"}'
is "$OUT" '{"note":"sealed-canary-31"}' "sb call -> broker -> sb run: a sealed request and reply"

"$SB" sub --keys "$K" --member alice --connect "$SECURE" --count 1 --timeout 10000 news \
    > "$SB_TMP/sub.out" 2> "$SB_TMP/sub.err" &
SUB_PID=$!
sb_track $SUB_PID
wait_for_line "$SB_TMP/sub.err" 'subscribed to news' 10
for i in $(seq 1 20); do
    "$SB" pub --keys "$K" --member alice --connect "$SECURE" news.flash '{"n":1}' 2>/dev/null
    kill -0 $SUB_PID 2>/dev/null || break
    sleep 0.3
done
wait $SUB_PID
is "$?" 0 "a sealed event from sb pub reaches sb sub (both hold the event key)"
like "$(cat "$SB_TMP/sub.out")" '"body":\{"n":1\}' "and is shown opened"

chmod 644 "$K/events.key"
call alice "$SECURE" echo.echo '{}'
is "$RC" 1 "an event key that others may read is refused when a member starts (exit 1)"
like "$ERR" 'events.key.*too open' "and the error names the file and the fix"
chmod 600 "$K/events.key"

# -- no keys: refused at the handshake ------------------------------------

call "" "$SECURE" echo.reverse '{"text":"x"}'
is "$RC" 1 "a client without keys refuses an endpoint with a #KEY (exit 1)"
like "$ERR" 'no identity' "and says it has no identity"

call "" "$PLAIN" --timeout 1500 echo.reverse '{"text":"x"}'
is "$RC" 3 "a plaintext client of the secure broker gets no answer (timeout, exit 3)"

# A stranger: keys and a certificate from another authority.
KS="$SB_TMP/stranger-keys"
quiet keygen authority "$KS"
quiet keygen member stranger "$KS"
quiet cert sign --authority "$KS/authority.key" --member "$KS/stranger.pub" --call '*' \
    --out "$KS/stranger.cert"
BEFORE=$(stat zap.refused)
OUT=$("$SB" call --keys "$KS" --member stranger --connect "$SECURE" --timeout 1500 \
      echo.reverse '{"text":"x"}' 2> "$SB_TMP/call.err")
is "$?" 3 "a member of another authority gets no answer (timeout, exit 3)"
REFUSED=$BEFORE
for i in $(seq 1 25); do
    REFUSED=$(stat zap.refused)
    [ "$REFUSED" -gt "$BEFORE" ] && break
    sleep 0.2
done
ok $((! (REFUSED > BEFORE))) "sys.stats counts it as a ZAP refusal ($BEFORE -> $REFUSED)"

call alice "$PLAIN" echo.reverse '{"text":"x"}'
is "$RC" 1 "a member given an endpoint without the broker's key: exit 1"
like "$ERR" 'no #KEY' "and says the key is missing"

# -- revocation on SIGHUP --------------------------------------------------

call mallory "$SECURE" echo.reverse '{"text":"ab"}'
is "$RC" 0 "mallory may call echo before being revoked"
echo mallory > "$SB_TMP/revoked"
kill -HUP $BROKER_PID
REVOKED=0
for i in $(seq 1 25); do
    call mallory "$SECURE" --timeout 1000 echo.reverse '{"text":"ab"}'
    if [ "$RC" -eq 3 ]; then
        REVOKED=1
        break
    fi
    sleep 0.2
done
is "$REVOKED" 1 "after revocation and SIGHUP mallory's next connection gets no answer"
ok $(( $(stat zap.refused_by_reason.revoked) > 0 ? 0 : 1 )) "counted as revoked in sys.stats"
call alice "$SECURE" echo.reverse '{"text":"ok"}'
is "$OUT" '{"text":"ko"}' "other members are not affected"

# -- an expired certificate -----------------------------------------------

# 'brief' holds a valid certificate in its own keys directory, but the
# broker's copy (the one ZAP checks) lived one second.
quiet keygen member brief "$K"
sign brief --call echo --seconds 1
K2="$SB_TMP/brief-keys"
mkdir -m 700 "$K2"
cp -p "$K/authority.pub" "$K/brief.key" "$K2/"
quiet cert sign --authority "$K/authority.key" --member "$K/brief.pub" --call echo \
    --out "$K2/brief.cert"
kill -HUP $BROKER_PID
sleep 2
OUT=$("$SB" call --keys "$K" --member brief --connect "$SECURE" echo.reverse '{"text":"x"}' \
      2> "$SB_TMP/call.err")
RC=$?
ERR=$(cat "$SB_TMP/call.err")
is "$RC" 1 "a member whose own certificate expired is stopped before connecting (exit 1)"
like "$ERR" 'expire' "and is told the certificate expired"

BEFORE=$(stat zap.refused_by_reason.expired)
OUT=$("$SB" call --keys "$K2" --member brief --connect "$SECURE" --timeout 1500 \
      echo.reverse '{"text":"x"}' 2> "$SB_TMP/call.err")
is "$?" 3 "the broker refuses a certificate that expired (no answer, exit 3)"
AFTER=$BEFORE
for i in $(seq 1 25); do
    AFTER=$(stat zap.refused_by_reason.expired)
    [ "$AFTER" -gt "$BEFORE" ] && break
    sleep 0.2
done
ok $((! (AFTER > BEFORE))) "counted as expired in sys.stats ($BEFORE -> $AFTER)"

# -- the echo host's sealing summary -----------------------------------------

kill -TERM $ECHO_PID
wait $ECHO_PID
SUMMARY=$(grep '^sb run: sealing:' "$SB_TMP/echo.err")
like "$SUMMARY" 'sealing: [1-9][0-9]* opened, [1-9][0-9]* sealed' \
    "on exit sb run counts the requests it opened and the replies it sealed ($SUMMARY)"

# A sanitizer build reports to stderr: none of the processes above may have.
REPORTS=$(grep -l 'Sanitizer\|runtime error:' "$SB_TMP"/*.err "$SB_TMP"/*.log 2>/dev/null)
is "$REPORTS" "" "no sanitizer report in the logs of the processes started here"

done_testing
