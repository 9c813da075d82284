#!/bin/bash
# rest_bench.sh — the REST bridge's whole path against nginx, in one run.
#
#   wrk -> rest-bridge -> broker -> echo -> back      (POST small JSON to echo.echo)
#   wrk -> nginx returning a fixed JSON body          (the same POST)
#
# Both on this machine, same wrk settings (64 connections, 2 threads,
# DURATION seconds each, default 5).  Prints requests/s and p50/p99 of
# both and the ratio; the design goal is a ratio of at least 0.30.  The
# last line is for scripts:
#   rest-bench: bridge=<req/s> nginx=<req/s> ratio=<x> p99_bridge=<ms>ms p99_nginx=<ms>ms
#
# usage: bench/rest_bench.sh [BUILD_DIR]   (default: the current directory;
#        from the source tree after ./quickstart: bench/rest_bench.sh _build)
# env:   DURATION=5  CONNECTIONS=64  BRIDGE_THREADS=2  ECHO_INSTANCES=1
#        REST_BENCH_STRICT=1 makes a ratio under the goal exit 1.
# needs: wrk (Debian package wrk), nginx (nginx-light), curl.
set -u

BUILD=${1:-.}
SB=${SB:-$BUILD/sb}
PLUGINS=${SB_PLUGINS:-$BUILD/services/.libs}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
BRIDGE_THREADS=${BRIDGE_THREADS:-2}
ECHO_INSTANCES=${ECHO_INSTANCES:-1}
GOAL=0.30

# nginx lives in /usr/sbin, which is not on an ordinary user's PATH.
NGINX=$(PATH="$PATH:/usr/sbin:/sbin" command -v nginx) || NGINX=""
for tool in wrk curl; do
    command -v "$tool" >/dev/null || NGINX=""
done
[ -n "$NGINX" ] || {
    echo "rest_bench: needs wrk, nginx and curl (apt-get install wrk nginx-light curl)" >&2; exit 77; }
[ -x "$SB" ] || { echo "rest_bench: $SB not found: build first, or pass the build dir" >&2; exit 2; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/sb-rest-bench.XXXXXX")
PIDS=""
cleanup () {
    for pid in $PIDS; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in $PIDS; do kill -9 "$pid" 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT

wait_for () {   # wait_for SECONDS COMMAND...
    local limit=$(( $1 * 10 )); shift
    for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

free_port () {  # a loopback TCP port nobody listens on
    local port
    for _ in $(seq 100); do
        port=$(( 20000 + RANDOM % 40000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
    done
    return 1
}

# --- the bus and the bridge -----------------------------------------------
"$SB" broker --bind 'tcp://127.0.0.1:*' --beacon off --insecure > "$DIR/broker.out" 2> "$DIR/broker.log" &
PIDS="$PIDS $!"
wait_for 20 grep -q 'listening on' "$DIR/broker.out" || { echo "rest_bench: broker did not start" >&2; exit 1; }
BROKER=$(sed -n 's/.*listening on \(tcp:[^ ]*\).*/\1/p' "$DIR/broker.out" | head -1)

"$SB" run --connect "$BROKER" --instances "$ECHO_INSTANCES" --capacity 256 "$PLUGINS/echo.so" \
    > "$DIR/echo.log" 2>&1 &
PIDS="$PIDS $!"
cat > "$DIR/bridge.zpl" <<EOF
rest-bridge
    listen = "127.0.0.1:0"
    port_file = "$DIR/bridge.port"
    threads = $BRIDGE_THREADS
EOF
"$SB" run --connect "$BROKER" --config "$DIR/bridge.zpl" "$PLUGINS/rest-bridge.so" > "$DIR/bridge.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 20 test -s "$DIR/bridge.port" || { echo "rest_bench: bridge did not start" >&2; cat "$DIR/bridge.log" >&2; exit 1; }
BRIDGE_URL="http://127.0.0.1:$(cat "$DIR/bridge.port")/v1/echo/echo"
BODY='{"text":"hello","n":42}'
echo_ready () {
    [ "$(curl -s --max-time 2 -H 'Content-Type: application/json' --data-binary "$BODY" "$BRIDGE_URL")" = "$BODY" ]
}
wait_for 20 echo_ready || { echo "rest_bench: echo does not answer through the bridge" >&2; exit 1; }

# --- nginx, its own prefix and config, not a daemon -------------------------
NGINX_PORT=$(free_port) || { echo "rest_bench: no free port" >&2; exit 1; }
mkdir -p "$DIR/nginx/logs"
cat > "$DIR/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $DIR/nginx/body;
    proxy_temp_path $DIR/nginx/proxy;
    fastcgi_temp_path $DIR/nginx/fastcgi;
    uwsgi_temp_path $DIR/nginx/uwsgi;
    scgi_temp_path $DIR/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            default_type application/json;
            return 200 '$BODY';
        }
    }
}
EOF
"$NGINX" -p "$DIR/nginx" -c "$DIR/nginx/nginx.conf" -e "$DIR/nginx/logs/error.log" > "$DIR/nginx.out" 2>&1 &
PIDS="$PIDS $!"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/v1/echo/echo"
wait_for 20 curl -sf "$NGINX_URL" || { echo "rest_bench: nginx did not start" >&2; cat "$DIR/nginx.out" >&2; exit 1; }

# --- wrk --------------------------------------------------------------------
cat > "$DIR/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

run_wrk () {    # run_wrk NAME URL: prints "RPS P50_MS P99_MS NON2XX"
    wrk -t 2 -c "$CONNECTIONS" -d "${DURATION}s" --latency -s "$DIR/post.lua" "$2" > "$DIR/$1.wrk" 2>&1
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v
        }
        /Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s %.3f %.3f %d\n", rps, p50, p99, bad }' "$DIR/$1.wrk"
}

read -r B_RPS B_P50 B_P99 B_BAD <<< "$(run_wrk bridge "$BRIDGE_URL")"
read -r N_RPS N_P50 N_P99 N_BAD <<< "$(run_wrk nginx "$NGINX_URL")"
[ -n "$B_RPS" ] && [ -n "$N_RPS" ] || { echo "rest_bench: wrk gave no numbers" >&2; cat "$DIR"/*.wrk >&2; exit 1; }

RATIO=$(awk -v b="$B_RPS" -v n="$N_RPS" 'BEGIN { printf "%.2f", (n > 0) ? (b / n) : 0 }')
VERDICT=$(awk -v r="$RATIO" -v g="$GOAL" 'BEGIN { print (r >= g) ? "meets" : "BELOW" }')
echo "rest bench: wrk ${DURATION}s, $CONNECTIONS connections, POST $BODY"
printf '  %-44s %10s req/s  p50 %8s ms  p99 %8s ms  non-2xx %s\n' \
    "rest-bridge -> broker -> echo ($BRIDGE_THREADS threads)" "$B_RPS" "$B_P50" "$B_P99" "$B_BAD"
printf '  %-44s %10s req/s  p50 %8s ms  p99 %8s ms  non-2xx %s\n' \
    "nginx, fixed JSON body" "$N_RPS" "$N_P50" "$N_P99" "$N_BAD"
echo "  ratio $RATIO (goal >= $GOAL: $VERDICT)"
echo "rest-bench: bridge=$B_RPS nginx=$N_RPS ratio=$RATIO p99_bridge=${B_P99}ms p99_nginx=${N_P99}ms"
if [ "${REST_BENCH_STRICT:-0}" = 1 ] && [ "$VERDICT" != meets ]; then
    exit 1
fi
exit 0
