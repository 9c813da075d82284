#!/usr/bin/env bash
# demo.t — `./quickstart demo` does what the README promises: it starts two
# brokers, echo and the REST bridge, prints a ready banner with curl and
# `sb call` lines, and every printed line works as printed (the lines are
# parsed from its output and run).  The demo is secure without a flag: its
# keys are made in the build directory (tools/demo-keys.sh), every process
# runs with them and nobody without them gets an answer.  The README's copy of the lines is the
# same text.  SIGTERM stops the demo and every process it started.
#
# The demo runs on free ports against this build (SB_DEMO_BUILD_DIR: no
# package installation, no build) with its own cluster name.

. "$(dirname "$0")/lib.sh"

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "1..0 # SKIP $tool not installed"; exit 0; }
done
QUICKSTART=${SB_TOP_SRCDIR:-}/quickstart
README=${SB_TOP_SRCDIR:-}/README.md
[ -x "$QUICKSTART" ] && [ -f "$README" ] || { echo "1..0 # SKIP no quickstart (SB_TOP_SRCDIR)"; exit 0; }
[ -n "${SB_TOP_BUILDDIR:-}" ] || { echo "1..0 # SKIP SB_TOP_BUILDDIR not set"; exit 0; }

port_free () {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Two consecutive free ports for the brokers and one for HTTP, below the
# ranges the kernel and CZMQ ('tcp://127.0.0.1:*') hand out, so that no
# other test's broker takes them the moment the demo lets them go.
BPORT=""
for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    h=$((20000 + RANDOM % 12000))
    if port_free $p && port_free $((p + 1)) && port_free $h && [ $h -ne $p ] && [ $h -ne $((p + 1)) ]; then
        BPORT=$p
        HPORT=$h
        break
    fi
done
[ -n "$BPORT" ] || bail "no free ports"

# -- start the demo as a user would, from the build directory ---------------

cd "$SB_TOP_BUILDDIR" || bail "no build dir"
env -u SB_SCHEMAS -u SB_PLUGIN_DIR -u SB_CONNECT \
    SB_DEMO_BUILD_DIR="$SB_TOP_BUILDDIR" SB_DEMO_BROKER_PORT=$BPORT SB_DEMO_HTTP_PORT=$HPORT \
    SB_DEMO_LOG_DIR="$SB_TMP/logs" SB_DEMO_CLUSTER="demo-t-$$" \
    "$QUICKSTART" demo > "$SB_TMP/demo.out" 2> "$SB_TMP/demo.err" &
QS=$!
sb_track $QS

ready=1
for _ in $(seq 900); do
    grep -q '^Press Ctrl-C to stop' "$SB_TMP/demo.out" && { ready=0; break; }
    kill -0 $QS 2>/dev/null || break
    sleep 0.1
done
ok $ready "the demo prints its ready banner (within 90 s)"
if [ $ready -ne 0 ]; then
    sed 's/^/#   /' "$SB_TMP/demo.out" "$SB_TMP/demo.err"
    for f in "$SB_TMP"/logs/*.log; do [ -f "$f" ] && sed "s|^|#   $(basename "$f"): |" "$f"; done
    bail "demo did not start"
fi

KIDS=$(ps -o pid=,comm= --ppid $QS | awk '$2 != "sleep" { print $1 }')
for pid in $KIDS; do sb_track "$pid"; done
KID_ARGS=$(for pid in $KIDS; do ps -o args= -p "$pid"; done)
is "$(printf '%s\n' "$KID_ARGS" | grep -c ' broker ')" 2 "it runs two brokers"
is "$(printf '%s\n' "$KID_ARGS" | grep -c ' run .*echo\.so')" 1 "it runs one echo host"
is "$(printf '%s\n' "$KID_ARGS" | grep -c ' run .*rest-bridge\.so')" 1 "it runs one REST bridge host"
like "$(cat "$SB_TMP/logs/rest-bridge.log")" 'AUTHENTICATION IS OFF' "the bridge warns loudly that it has no keys"

# Secure without a flag: no process runs --insecure, the brokers print
# their keys, and a caller without keys gets nothing.
is "$(printf '%s\n' "$KID_ARGS" | grep -c -- '--insecure')" 0 "no demo process runs --insecure"
KEYS="$SB_TOP_BUILDDIR/demo-keys"
[ -f "$KEYS/authority.pub" ] && [ -f "$KEYS/cli.cert" ]
ok $? "the demo made its keys in the build directory (demo-keys)"
BROKER2=$(sed -n 's/.* listening on \(tcp:[^ ]*\).*/\1/p' "$SB_TMP/logs/broker2.log" | head -n 1)
like "$BROKER2" "^tcp://127\.0\.0\.1:$((BPORT + 1))#[0-9a-f]{64}\$" "broker 2 is secure (prints its endpoint with its CURVE key)"
"$SB" call --insecure --connect "tcp://127.0.0.1:$((BPORT + 1))" --timeout 1000 sys.ping > /dev/null 2>&1
ok $((! $?)) "a plaintext caller without keys gets no answer from the demo's brokers"

# Every host is known to both brokers.
seen=""
for _ in $(seq 100); do
    seen=$("$SB" services --keys "$KEYS" --member cli --connect "$BROKER2" 2>/dev/null)
    printf '%s\n' "$seen" | grep -Eq '^echo +[^ ]+ +2 ' \
        && printf '%s\n' "$seen" | grep -Eq '^rest-bridge +[^ ]+ +1 ' && break
    sleep 0.2
done
like "$seen" '^echo +[^ ]+ +2 ' "the second broker lists echo with 2 instances"
like "$seen" '^rest-bridge +[^ ]+ +1 ' "the second broker lists the bridge"

# -- run every printed line -------------------------------------------------

sed -n '/ Try:$/,/^Press Ctrl-C/p' "$SB_TMP/demo.out" | grep '^  ' | sed 's/^  //' > "$SB_TMP/lines"
KINDS=""
while IFS= read -r line; do
    out=$(timeout 60 bash -c "$line" 2>&1 < /dev/null)
    rc=$?
    case $line in
        *'"txt"'*)
            KINDS="$KINDS error"
            like "$out" '^HTTP/1\.1 400 ' "error example answers 400: $line"
            is "$(printf '%s\n' "$out" | tail -n 1 | jq -r .error.code)" bad_request "... with code bad_request"
            ;;
        curl*/v1/echo/reverse*)
            KINDS="$KINDS reverse"
            is "$out" '{"text":"draobhctiws ,olleh"}' "$line"
            ;;
        curl*/v1/echo/stats*)
            KINDS="$KINDS stats"
            is "$(printf '%s' "$out" | jq -c '[.count, .mean]')" '[8,3.875]' "$line"
            ;;
        curl*/v1/services*)
            KINDS="$KINDS services"
            # one entry per broker of the cluster (or one, before clusters)
            is "$(printf '%s' "$out" | jq -c '[.services[] | select(.name == "echo") | .instances] | unique')" \
                '[2]' "$line"
            ;;
        curl*/healthz*)
            KINDS="$KINDS healthz"
            is "$(printf '%s' "$out" | jq -r .status)" ok "$line"
            ;;
        curl*/metrics*)
            KINDS="$KINDS metrics"
            like "$out" 'sb_rest_requests_total\{service="echo",method="reverse",code="200"\} [1-9]' "$line"
            ;;
        curl*/openapi.json*)
            KINDS="$KINDS openapi"
            like "$out" '"/v1/echo/reverse"' "$line"
            ;;
        *' call '*echo.sleep*)
            KINDS="$KINDS call-timeout"
            [ $rc -ne 0 ] && printf '%s' "$out" | grep -q timeout
            ok $? "exits non-zero with a timeout: $line"
            ;;
        *' call '*echo.reverse*)
            KINDS="$KINDS call"
            is "$out" '{"text":"draobhctiws ,olleh"}' "$line"
            ;;
        *' call '*echo.stats*)
            is "$(printf '%s' "$out" | jq -c '[.count, .mean]')" '[8,3.875]' "$line"
            ;;
        *' call '*sys.stats*)
            is "$(printf '%s' "$out" | jq -r '.broker | length > 0')" true "$line"
            ;;
        *' services'*)
            like "$out" '^echo +[^ ]+ +2 ' "$line"
            ;;
        *)
            ok 1 "no expectation for the printed line: $line"
            ;;
    esac
    [ $rc -eq 0 ] || [[ $line == *echo.sleep* ]] || diag "exit $rc: $(printf '%s' "$out" | head -c 300)"
done < "$SB_TMP/lines"
is "$KINDS" " reverse stats services healthz metrics openapi error call call-timeout" \
    "it printed the curl and sb call lines the README promises"

# -- the README shows the same lines (for the default ports, from the top) --

awk '/^<!-- quickstart demo lines/ { on = 1; next }
     on && /^```sh$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$README" > "$SB_TMP/readme.lines"
sed -e "s#127\.0\.0\.1:$HPORT#127.0.0.1:8080#g" -e "s# --cluster demo-t-$$ # --cluster demo #" \
    -e 's# --keys \./demo-keys # --keys _build/demo-keys #' \
    -e 's#^\./sb #_build/sb #' "$SB_TMP/lines" > "$SB_TMP/printed.lines"
diff -u "$SB_TMP/readme.lines" "$SB_TMP/printed.lines" > "$SB_TMP/readme.diff"
ok $? "README.md shows the lines the demo prints"
[ -s "$SB_TMP/readme.diff" ] && sed 's/^/#   /' "$SB_TMP/readme.diff"

# -- SIGTERM stops everything -------------------------------------------------

kill -TERM $QS
for _ in $(seq 300); do
    kill -0 $QS 2>/dev/null || break
    sleep 0.1
done
! kill -0 $QS 2>/dev/null
ok $? "the demo exits on SIGTERM (within 30 s)"
wait $QS
is $? 0 "... with status 0"
left=""
for pid in $KIDS; do
    kill -0 "$pid" 2>/dev/null && left="$left $pid"
done
is "$left" "" "every process it started is gone"
port_free $BPORT && port_free $((BPORT + 1)) && port_free $HPORT
ok $? "its ports are closed"
like "$(cat "$SB_TMP/demo.err")" 'demo stopped' "it says it stopped"
san_none all "no sanitizer report from the demo's processes (when built with them)" "$SB_TMP/logs"

done_testing
