# rest_lib.sh — helpers for the REST bridge integration tests (rest_*.t):
# TAP output, a real broker, echo and bridge on free loopback ports, curl
# wrappers.  Sourced, not run.  Everything started is killed on exit;
# sanitizer reports of the children are kept and fail the test
# (sanitizers.sh).

SB=${SB:-$SB_TOP_BUILDDIR/sb}
SB_PLUGINS=${SB_PLUGINS:-$SB_TOP_BUILDDIR/services/.libs}
SB_TOP_SRCDIR=${SB_TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}

. "$(dirname "${BASH_SOURCE[0]}")/sanitizers.sh"

T_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sb-rest.XXXXXX")
T_PIDS=""
T_COUNT=0
T_FAILED=0

# Stops everything started: SIGTERM, 5 s each to stop cleanly (a sanitizer
# build reports leaks at a clean exit), then SIGKILL.
t_stop_all () {
    for pid in $T_PIDS; do
        kill "$pid" 2>/dev/null
    done
    for pid in $T_PIDS; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    T_PIDS=""
}

t_cleanup () {
    local rc=$?
    t_stop_all
    # A report done_testing did not count (the test stopped early) fails it.
    if ! san_finish "$T_DIR" && { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
        rc=1
    fi
    rm -rf "$T_DIR"
    exit $rc
}
trap t_cleanup EXIT

ok () {     # ok CONDITION_STATUS DESCRIPTION
    T_COUNT=$((T_COUNT + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $T_COUNT - $2"
    else
        echo "not ok $T_COUNT - $2"
        T_FAILED=$((T_FAILED + 1))
    fi
}

is () {     # is GOT WANT DESCRIPTION
    if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got '$1', want '$2'"; fi
}

like () {   # like TEXT ERE DESCRIPTION
    if printf '%s' "$1" | grep -Eq -- "$2"; then ok 0 "$3"; else
        ok 1 "$3"; echo "#   '$(printf '%s' "$1" | head -c 600)' does not match /$2/"; fi
}

skip () {   # skip DESCRIPTION REASON
    T_COUNT=$((T_COUNT + 1))
    echo "ok $T_COUNT - $1 # SKIP $2"
}

# Ends the test: stops what it started, counts the children's sanitizer
# reports as failures, prints the plan.
done_testing () {
    t_stop_all
    san_check "$T_DIR"
    echo "1..$T_COUNT"
    [ "$T_FAILED" -eq 0 ]
}

bail () {
    echo "Bail out! $*"
    for f in "$T_DIR"/*.log; do [ -f "$f" ] && sed 's/^/# /' "$f" | tail -20; done
    exit 1
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s.
wait_for () {
    local limit=$(( $1 * 10 )); shift
    for _ in $(seq "$limit"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# start_broker [OPTIONS]: sets BROKER (its endpoint) and BROKER_PID.  The
# port is random ('!'), not the lowest free one ('*'): once a test kills its
# broker, the next broker anyone starts would get that port, and the
# bridge would reconnect to it.
start_broker () {
    "$SB" broker --bind 'tcp://127.0.0.1:!' --beacon off --insecure "$@" \
        > "$T_DIR/broker.out" 2> "$T_DIR/broker.log" &
    BROKER_PID=$!
    T_PIDS="$T_PIDS $BROKER_PID"
    wait_for 20 grep -q 'listening on' "$T_DIR/broker.out" || bail "broker did not start"
    BROKER=$(sed -n 's/.*listening on \(tcp:[^ ]*\).*/\1/p' "$T_DIR/broker.out" | head -1)
}

# start_service NAME [OPTIONS] PLUGIN: `sb run` against $BROKER; sets LAST_PID.
start_service () {
    local name=$1; shift
    "$SB" run --connect "$BROKER" "$@" > "$T_DIR/$name.log" 2>&1 &
    LAST_PID=$!
    T_PIDS="$T_PIDS $LAST_PID"
}

# start_bridge NAME CONFIG_TEXT: writes the ZPL config (listen and
# port_file are added), starts the bridge; sets URL and BRIDGE_PID.
start_bridge () {
    local name=$1 config=$2
    rm -f "$T_DIR/$name.port"
    {
        echo "rest-bridge"
        echo "    listen = \"127.0.0.1:0\""
        echo "    port_file = \"$T_DIR/$name.port\""
        printf '%s\n' "$config"
    } > "$T_DIR/$name.zpl"
    start_service "$name" --config "$T_DIR/$name.zpl" "$SB_PLUGINS/rest-bridge.so"
    BRIDGE_PID=$LAST_PID
    wait_for 20 test -s "$T_DIR/$name.port" || bail "bridge $name did not start"
    URL="http://127.0.0.1:$(cat "$T_DIR/$name.port")"
}

# call METHOD PATH [CURL ARGS...]: sets STATUS, BODY, HEADERS.
call () {
    local method=$1 path=$2; shift 2
    STATUS=$(curl -s -X "$method" -o "$T_DIR/body" -D "$T_DIR/headers" -w '%{http_code}' \
                  --max-time 20 "$@" "$URL$path")
    BODY=$(cat "$T_DIR/body" 2>/dev/null)
    HEADERS=$(tr -d '\r' < "$T_DIR/headers" 2>/dev/null)
}

# post PATH JSON [CURL ARGS...]: POST application/json.
post () {
    local path=$1 json=$2; shift 2
    call POST "$path" -H 'Content-Type: application/json' --data-binary "$json" "$@"
}

header () {     # header NAME: value of the last response's header
    printf '%s\n' "$HEADERS" | sed -n "s/^$1: //Ip" | tail -1
}

# jget JSON FILTER: one value out of a JSON text (jq).
jget () {
    printf '%s' "$1" | jq -c -r "$2" 2>/dev/null
}

# need COMMAND...: skip the whole test when a tool is missing.
need () {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "1..0 # SKIP $tool not installed"; exit 0; }
    done
}

# b2hash SECRET: the key hash the bridge wants (BLAKE2b-256, hex).
b2hash () {
    printf '%s' "$1" | b2sum -l 256 | cut -d' ' -f1
}
