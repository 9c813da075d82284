# lib.sh — shared by the integration tests (tests/integration/*.t): TAP
# output, and real `sb broker` / `sb run` processes on free loopback ports.
#
# Every process a test starts is recorded and killed when the test exits,
# whatever the reason (normal end, failed check, error, signal); the scratch
# directory goes with them.  Brokers bind tcp://127.0.0.1:! (a random free port, so a port
# freed by a killed broker is not handed straight to the next one) and report the
# port the kernel chose, so tests never collide on a port.  Every wait is
# bounded.  $SB (the sb binary) and $SB_PLUGINS (the built plugins) come
# from the environment make check sets (Makefile.am).  Sanitizer reports of
# the children go to a kept directory (sanitizers.sh): done_testing stops
# the children and fails the test for each report.

set -u

if [ -z "${SB:-}" ] || [ -z "${SB_PLUGINS:-}" ] || [ ! -x "$SB" ]; then
    echo "1..0 # SKIP SB and SB_PLUGINS are not set (run through make check)"
    exit 0
fi
unset SB_CONNECT
# In the build tree $SB is libtool's wrapper script, which costs a shell
# start on every call; run the real binary beside it instead.
SB_DIR=$(dirname "$SB")
if [ -x "$SB_DIR/.libs/sb" ] && [ -d "$SB_DIR/.libs" ] && head -c 2 "$SB" | grep -q '^#!'; then
    export LD_LIBRARY_PATH="$SB_DIR/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    SB="$SB_DIR/.libs/sb"
fi
export SB_PLUGIN_DIR="$SB_PLUGINS"
# Validate requests against the source tree's schemas, as an installed
# host does against the installed ones.
if [ -n "${SB_TOP_SRCDIR:-}" ] && [ -d "$SB_TOP_SRCDIR/schemas" ]; then
    export SB_SCHEMAS="$SB_TOP_SRCDIR/schemas"
fi

. "$(dirname "${BASH_SOURCE[0]}")/sanitizers.sh"

SB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sb-it.XXXXXX")
SB_PIDS=""
T_COUNT=0
T_FAILED=0

# -- cleanup -------------------------------------------------------------

# Stops every recorded process: SIGTERM, 5 s to stop cleanly (a sanitizer
# build reports leaks at a clean exit), then SIGKILL for what is left.
sb_stop_all () {
    local pid tries=0
    for pid in $SB_PIDS; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in $SB_PIDS; do
        while kill -0 "$pid" 2>/dev/null && [ $tries -lt 50 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    SB_PIDS=""
}

sb_cleanup () {
    local rc=$?
    sb_stop_all
    wait 2>/dev/null
    # A report done_testing did not count (the test stopped early) fails it.
    if ! san_finish "$SB_TMP" && { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
        rc=1
    fi
    rm -rf "$SB_TMP"
    exit $rc
}
trap sb_cleanup EXIT
trap 'exit 1' INT TERM HUP

# Records a background process so that it is killed on exit.
sb_track () {
    SB_PIDS="$SB_PIDS $1"
}

# -- TAP -----------------------------------------------------------------

# ok STATUS DESCRIPTION: passes when STATUS is 0 (use: `cmd; ok $? "..."`).
ok () {
    local status=$1
    shift
    T_COUNT=$((T_COUNT + 1))
    if [ "$status" -eq 0 ]; then
        echo "ok $T_COUNT - $*"
    else
        echo "not ok $T_COUNT - $*"
        T_FAILED=$((T_FAILED + 1))
    fi
}

# is GOT WANT DESCRIPTION
is () {
    local got=$1 want=$2
    shift 2
    [ "$got" = "$want" ]
    ok $? "$@"
    if [ "$got" != "$want" ]; then
        diag "  got:  '$got'"
        diag "  want: '$want'"
    fi
}

# like GOT PATTERN DESCRIPTION (grep -E pattern)
like () {
    local got=$1 pattern=$2
    shift 2
    printf '%s' "$got" | grep -Eq -- "$pattern"
    local status=$?
    ok $status "$@"
    if [ $status -ne 0 ]; then
        diag "  got:  '$got'"
        diag "  want: /$pattern/"
    fi
}

diag () {
    echo "# $*"
}

# Ends the test: stops the processes it started, counts their sanitizer
# reports as failures, prints the plan; the exit status says whether all
# passed.
done_testing () {
    sb_stop_all
    san_check "$SB_TMP"
    echo "1..$T_COUNT"
    [ $T_FAILED -eq 0 ] && exit 0
    exit 1
}

# Stops the test at once (a precondition failed), keeping what was printed.
bail () {
    echo "Bail out! $*"
    exit 1
}

# -- waiting -------------------------------------------------------------

# wait_for_line FILE PATTERN [SECONDS]: waits until FILE has a line matching
# the extended regular expression.  Returns 1 on timeout.
wait_for_line () {
    local file=$1 pattern=$2 seconds=${3:-20}
    local tries=$((seconds * 10))
    while [ $tries -gt 0 ]; do
        grep -Eq -- "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
        tries=$((tries - 1))
    done
    return 1
}

# now_ms: a monotonic-enough clock in milliseconds.
now_ms () {
    echo $(( $(date +%s%N) / 1000000 ))
}

# -- processes -----------------------------------------------------------

# start_broker NAME [ARGS...]: starts a broker on a free loopback port; sets
# BROKER (its endpoint) and BROKER_PID.  Its output is in $SB_TMP/NAME.log.
start_broker () {
    local name=$1
    shift
    "$SB" broker --bind 'tcp://127.0.0.1:!' --name "$name" --beacon off --insecure "$@" \
        > "$SB_TMP/$name.log" 2>&1 &
    BROKER_PID=$!
    sb_track $BROKER_PID
    if ! wait_for_line "$SB_TMP/$name.log" ' listening on tcp://' 20; then
        diag "broker $name did not start:"
        sed 's/^/#   /' "$SB_TMP/$name.log"
        bail "no broker"
    fi
    BROKER=$(sed -n 's/.* listening on \(tcp:[^ ]*\).*/\1/p' "$SB_TMP/$name.log" | head -n 1)
}

# start_run NAME ARGS...: starts `sb run --connect $BROKER ARGS...`, waits
# for its 'serving' lines; sets RUN_PID.  Output in $SB_TMP/NAME.out/.err.
start_run () {
    local name=$1
    shift
    "$SB" run --connect "$BROKER" "$@" > "$SB_TMP/$name.out" 2> "$SB_TMP/$name.err" &
    RUN_PID=$!
    sb_track $RUN_PID
    if ! wait_for_line "$SB_TMP/$name.out" '^sb run: serving ' 30; then
        diag "sb run $name did not start:"
        sed 's/^/#   /' "$SB_TMP/$name.err"
        bail "no service host"
    fi
}

# sb_call ARGS...: `sb call --connect $BROKER ARGS...`; sets OUT (stdout),
# ERR (stderr) and RC (exit status).
sb_call () {
    OUT=$("$SB" call --connect "$BROKER" "$@" 2> "$SB_TMP/call.err")
    RC=$?
    ERR=$(cat "$SB_TMP/call.err")
}

# sb_run_refused EXIT PATTERN DESCRIPTION ARGS...: `sb run --connect
# $BROKER ARGS...` must exit with EXIT at once (within 20 s), printing
# nothing on stdout and exactly one line on stderr, matching PATTERN.
sb_run_refused () {
    local want=$1 pattern=$2 what=$3
    shift 3
    "$SB" run --connect "$BROKER" "$@" > "$SB_TMP/refused.out" 2> "$SB_TMP/refused.err" &
    local pid=$!
    local tries=200
    while kill -0 $pid 2>/dev/null && [ $tries -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
    if kill -0 $pid 2>/dev/null; then
        kill -KILL $pid
        ok 1 "$what: sb run refuses to start (it kept running)"
        return
    fi
    wait $pid
    local rc=$? err
    err=$(cat "$SB_TMP/refused.err")
    [ $rc -eq $want ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] \
        && printf '%s' "$err" | grep -Eq -- "$pattern" && [ ! -s "$SB_TMP/refused.out" ]
    ok $? "$what: exit $want, one line: $err"
}

# instances SERVICE: how many instances the broker lists for the service.
instances () {
    "$SB" services --connect "$BROKER" --json 2>/dev/null | python3 -c '
import json, sys
name = sys.argv[1]
try:
    reply = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit(0)
print(sum(s.get("instances", 0) for s in reply.get("services", []) if s.get("name") == name))
' "$1"
}

# wait_instances SERVICE N [SECONDS]: until the broker lists N instances.
wait_instances () {
    local service=$1 want=$2 seconds=${3:-20}
    local tries=$((seconds * 5))
    while [ $tries -gt 0 ]; do
        [ "$(instances "$service")" = "$want" ] && return 0
        sleep 0.2
        tries=$((tries - 1))
    done
    return 1
}

# stat_value PATH: a counter from sys.stats, e.g. "bad_frames.malformed".
stat_value () {
    "$SB" call --connect "$BROKER" sys.stats 2>/dev/null | python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value.get(part, 0) if isinstance(value, dict) else 0
print(value)
' "$1"
}

# -- clusters ------------------------------------------------------------

# free_udp_port: a UDP port on 127.0.0.1 nobody uses now (one test's beacons).
free_udp_port () {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster_broker NAME BIND [ARGS...]: a broker of the test's cluster
# ($CL: --cluster, --beacon, --beacon-port) bound to BIND; sets CB_PID and
# CB_EP (the endpoint it reports, with #KEY when secure).  Returns 1, after
# showing its log, when it did not start.  Output in $SB_TMP/NAME.log.
start_cluster_broker () {
    local name=$1 bind=$2
    shift 2
    "$SB" broker --bind "$bind" --name "$name" $CL "$@" > "$SB_TMP/$name.log" 2>&1 &
    CB_PID=$!
    sb_track $CB_PID
    if ! wait_for_line "$SB_TMP/$name.log" ' listening on tcp://' 20; then
        diag "broker $name did not start on $bind:"
        sed 's/^/#   /' "$SB_TMP/$name.log"
        return 1
    fi
    CB_EP=$(sed -n 's/.* listening on \(tcp:[^ ]*\).*/\1/p' "$SB_TMP/$name.log" | tail -n 1)
}

# at_broker ENDPOINT COMMAND [ARGS...]: runs one of the queries above
# (instances, wait_instances, stat_value) against that broker.
at_broker () {
    local saved=$BROKER rc
    BROKER=$1
    shift
    "$@"
    rc=$?
    BROKER=$saved
    return $rc
}

# json_get JSON PATH: one field of a JSON text ("a.b"), printed as JSON.
json_get () {
    printf '%s' "$1" | python3 -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value[part]
print(json.dumps(value, separators=(",", ":")))
' "$2"
}
