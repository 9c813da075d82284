#!/bin/bash
# rest_http.t — the REST bridge's HTTP front against hostile clients, seen
# from the socket: request framing (RFC 9112 section 6: Content-Length
# with Transfer-Encoding, conflicting Content-Lengths, unknown transfer
# codings), a slow-header flood from one address while another client is
# served, a huge chunked body refused early, and a restart on the same
# port right after traffic.  Real processes on loopback; raw requests go
# through python3 sockets (curl cannot send malformed framing).  Every
# loop is bounded in count and time.
. "$(dirname "$0")/rest_lib.sh"
need curl jq python3 ss

# 2,000 client sockets and up to 1,000 on the bridge's side.
[ "$(ulimit -n)" -ge 8192 ] || ulimit -n 8192 2>/dev/null || { echo "1..0 # SKIP cannot raise the fd limit"; exit 0; }

# http_probe.py MODE ...: the raw-socket client.
#   raw HOST PORT          send stdin as is, print what came back as JSON:
#                          the status lines, whether the server closed, the
#                          first body
#   flood SRC HOST PORT N SECONDS STEP
#                          N connections from SRC, each trickling one byte
#                          of a never-ending request head every STEP s;
#                          print when each was closed by the server
#   upload HOST PORT TOTAL CHUNK
#                          stream a chunked body of TOTAL bytes, CHUNK at a
#                          time; print the bytes sent when the answer came
cat > "$T_DIR/http_probe.py" <<'EOF'
import json, os, selectors, socket, sys, time

def read_answer(sock, limit):
    """Reads until EOF or `limit` seconds; returns (data, closed)."""
    data, closed, end = b"", False, time.time() + limit
    sock.settimeout(0.2)
    while time.time() < end:
        try:
            got = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
        if not got:
            closed = True
            break
        data += got
    return data, closed

def summary(data, closed, **extra):
    """The answers in data, one after the other, by their Content-Length."""
    text, statuses, heads, bodies = data.decode("latin-1"), [], [], []
    while text.startswith("HTTP/1.") and "\r\n\r\n" in text:
        head, _, text = text.partition("\r\n\r\n")
        statuses.append(head.split(" ")[1])
        length = [int(l.split(":")[1]) for l in head.split("\r\n")
                  if l.lower().startswith("content-length:")]
        size = length[0] if length else len(text)
        heads.append(head)
        bodies.append(text[:size])
        text = text[size:]
    out = {"statuses": statuses, "closed": closed, "head": heads[0] if heads else "",
           "body": bodies[0] if bodies else "", "rest": text[:200]}
    out.update(extra)
    print(json.dumps(out))

mode = sys.argv[1]
if mode == "raw":
    host, port = sys.argv[2], int(sys.argv[3])
    sock = socket.create_connection((host, port), timeout=3)
    sock.sendall(sys.stdin.buffer.read())
    data, closed = read_answer(sock, 3)
    summary(data, closed)

elif mode == "flood":
    src, host, port, count, seconds, step = (sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                             int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    sel = selectors.DefaultSelector()
    start = time.time()
    conns = {}
    for i in range(count):
        s = socket.socket()
        s.bind((src, 0))
        s.setblocking(False)
        s.connect_ex((host, port))
        conns[s] = {"opened": time.time(), "sent": 0, "closed": None}
        sel.register(s, selectors.EVENT_READ)
    with open(os.environ["FLOOD_READY"], "w") as f:
        f.write("%.3f\n" % (time.time() - start))
    next_send = time.time()
    while time.time() - start < seconds and any(c["closed"] is None for c in conns.values()):
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                got = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                got = b""
            if not got:
                conns[s]["closed"] = time.time() - conns[s]["opened"]
                sel.unregister(s)
                s.close()
        if time.time() >= next_send:
            next_send += step
            for s, c in conns.items():
                if c["closed"] is None and c["sent"] < len(head):
                    try:
                        c["sent"] += s.send(head[c["sent"]:c["sent"] + 1])
                    except (BlockingIOError, OSError):
                        pass
    closed = [c["closed"] for c in conns.values() if c["closed"] is not None]
    # Refused: closed before the first trickled byte could matter (< 0.5 s);
    # timed out: closed later by the bridge.
    print(json.dumps({"opened": count,
                      "refused": sum(1 for t in closed if t < 0.5),
                      "timed_out": sum(1 for t in closed if t >= 0.5),
                      "open_at_end": count - len(closed),
                      "latest_close": max(closed) if closed else None,
                      "max_head_sent": max(c["sent"] for c in conns.values())}))

elif mode == "upload":
    host, port, total, chunk = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    sock = socket.create_connection((host, port), timeout=3)
    sock.sendall(b"POST /v1/echo/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n" % chunk + b" " * chunk + b"\r\n"
    sent, answer, sent_at_answer, end = 0, b"", None, time.time() + 30
    sock.setblocking(False)
    while sent < total and time.time() < end:
        try:
            got = sock.recv(65536)
            if got:
                answer += got
                if sent_at_answer is None:
                    sent_at_answer = sent
            else:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        if sent_at_answer is not None:
            break
        try:
            sock.sendall(piece)
            sent += chunk
        except BlockingIOError:
            pass
        except OSError:
            break
        time.sleep(0.002)
    if sent_at_answer is None:
        try:
            sock.setblocking(True)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
    sock.setblocking(True)
    data, closed = read_answer(sock, 3)
    if data and sent_at_answer is None:
        sent_at_answer = sent
    answer += data
    summary(answer, closed, sent=sent, sent_at_answer=sent_at_answer)
EOF

# raw REQUEST: sends REQUEST (printf format) to the bridge; sets RAW (JSON).
raw () {
    RAW=$(printf "$1" | timeout 10 python3 "$T_DIR/http_probe.py" raw 127.0.0.1 "$PORT")
}

MAX_BODY=65536
start_broker
start_service echo "$SB_PLUGINS/echo.so"
start_bridge main "    threads = 2
    max_body = $MAX_BODY
    connections = 1000
    connections_per_client = 500
    header_timeout = 2"
PORT=$(cat "$T_DIR/main.port")
echo_ready () { post /v1/echo/echo '1'; [ "$STATUS" = 200 ]; }
wait_for 20 echo_ready || bail "echo never answered through the bridge"

# --- 1. framing --------------------------------------------------------
H='Host: x\r\nContent-Type: application/json\r\n'
NEXT='GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n$NEXT"
is "$(jget "$RAW" '.statuses|join(",")')" 400 "Content-Length with Transfer-Encoding: one answer, 400 (the smuggled request is not answered)"
is "$(jget "$RAW" .closed)" true "... and the connection is closed"
like "$(jget "$RAW" .head)" '[Cc]onnection: close' "... and the answer says Connection: close"
is "$(jget "$(jget "$RAW" .body)" .error.code)" bad_request "... with the bridge's JSON error body"
like "$(jget "$(jget "$RAW" .body)" .error.message)" 'Transfer-Encoding' "... naming the reason"

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\n1${NEXT}"
is "$(jget "$RAW" '.statuses|join(",")')" 400 "two different Content-Lengths: one answer, 400"
is "$(jget "$RAW" .closed)" true "... and the connection is closed"
like "$(jget "$(jget "$RAW" .body)" .error.message)" 'Content-Length' "... naming the reason"

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: +1\r\n\r\n1${NEXT}"
is "$(jget "$RAW" '.statuses|join(",")')" 400 "a second Content-Length that is not plain decimal: one answer, 400"
is "$(jget "$RAW" .closed)" true "... and the connection is closed"

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Content-Length: 1x\r\n\r\n1${NEXT}"
# libmicrohttpd 0.9.75 answers this one itself, before the bridge sees the
# request, and writes its status line twice.
is "$(jget "$RAW" '.statuses[0]')" 400 "a Content-Length that is not plain decimal (libmicrohttpd's own answer): 400"
is "$(jget "$RAW" .closed)" true "... and the connection is closed"

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\n1"
is "$(jget "$RAW" '.statuses|join(",")')" 200 "two equal Content-Lengths are one (RFC 9110 section 8.6): 200"

for coding in 'gzip, chunked' identity foo; do
    raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Transfer-Encoding: $coding\r\n\r\n1\r\n1\r\n0\r\n\r\n$NEXT"
    is "$(jget "$RAW" '.statuses|join(",")')" 501 "Transfer-Encoding: $coding: one answer, 501"
    is "$(jget "$RAW" .closed)" true "... and the connection is closed"
done

raw "POST /v1/echo/echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\n1\r\n0\r\n\r\n$NEXT"
is "$(jget "$RAW" '.statuses|join(",")')" 200,200 "Transfer-Encoding: chunked alone, then a second request: both answered"

# header_timeout covers the head only: a call that outlasts it is answered.
post /v1/echo/sleep '{"ms":3000}'
is "$STATUS" 200 "a call of 3 s, longer than header_timeout (2 s), is answered"

# --- 2. a slow-header flood from 127.0.0.2 -------------------------------
# 2,000 connections, one header byte each every second: past
# connections_per_client (500) they are refused; the 500 admitted are
# closed at header_timeout (2 s), however they trickle.  Meanwhile a client
# from 127.0.0.1 is served.  Without the limit the flood would fill the
# 1,000 connections; without the timeout they would stay.
metric () { printf '%s\n' "$BODY" | awk -v m="$1" '$1 == m { print $2 }'; }
REFUSED='sb_rest_connections_refused_total{reason="per_client"}'
TIMED_OUT='sb_rest_connections_closed_total{reason="header_timeout"}'
sleep 2.5       # idle keep-alive connections of the checks above time out
call GET /metrics
refused_before=$(metric "$REFUSED") timed_out_before=$(metric "$TIMED_OUT")
export FLOOD_READY="$T_DIR/flood.ready"
timeout 30 python3 "$T_DIR/http_probe.py" flood 127.0.0.2 127.0.0.1 "$PORT" 2000 8 1 \
    > "$T_DIR/flood.json" 2> "$T_DIR/flood.err" &
FLOOD=$!
wait_for 15 test -s "$FLOOD_READY" || bail "the flood did not start: $(cat "$T_DIR/flood.err")"
served=0 slowest=0
for i in $(seq 12); do
    t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 5 "$URL/healthz")
    [ "${t% *}" = 200 ] && served=$((served + 1))
    slowest=$(printf '%s\n%s\n' "$slowest" "${t#* }" | sort -g | tail -1)
    sleep 0.4
done
is "$served" 12 "a client from 127.0.0.1 is served all through the flood ($served/12, slowest ${slowest}s)"
ok "$(awk -v s="$slowest" 'BEGIN { exit !(s < 1.0) }'; echo $?)" "... each answer within 1 s (slowest ${slowest}s)"
wait "$FLOOD"
FLOOD_RESULT=$(cat "$T_DIR/flood.json")
echo "# flood: $FLOOD_RESULT"
refused=$(jget "$FLOOD_RESULT" .refused)
timed_out=$(jget "$FLOOD_RESULT" .timed_out)
ok "$([ "${refused:-0}" -ge 1400 ] && [ "${refused:-0}" -le 1500 ]; echo $?)" "past connections_per_client the flood is refused ($refused of 2000)"
is "$(jget "$FLOOD_RESULT" .open_at_end)" 0 "every flood connection was closed by the bridge"
ok "$(awk -v s="$(jget "$FLOOD_RESULT" .latest_close)" 'BEGIN { exit !(s != "null" && s < 4.0) }'; echo $?)" \
   "... the admitted ones at header_timeout, though they kept trickling (latest after $(jget "$FLOOD_RESULT" .latest_close) s)"
call GET /metrics
is "$(metric "$REFUSED")" "$(( ${refused_before:-0} + refused ))" "/metrics counts the refused connections"
is "$(metric "$TIMED_OUT")" "$(( ${timed_out_before:-0} + timed_out ))" "/metrics counts the connections closed at header_timeout"
like "$BODY" '# TYPE sb_rest_connections_open gauge' "/metrics has an open-connections gauge"
if command -v promtool > /dev/null; then
    printf '%s\n' "$BODY" | promtool check metrics > "$T_DIR/promtool.out" 2>&1
    ok $? "promtool check metrics accepts /metrics"
else
    skip "promtool check metrics" "promtool missing (Debian package prometheus)"
fi

# --- 3. a 64 MiB chunked body, streamed ----------------------------------
UP=$(timeout 40 python3 "$T_DIR/http_probe.py" upload 127.0.0.1 "$PORT" $((64 << 20)) 32768)
echo "# upload: $(jget "$UP" '{statuses, closed, sent, sent_at_answer}')"
is "$(jget "$UP" '.statuses|join(",")')" 413 "a 64 MiB chunked body: 413"
at=$(jget "$UP" .sent_at_answer)
ok "$([ "$at" != null ] && [ "$at" -le $((4 * MAX_BODY)) ]; echo $?)" \
   "... before the client sent 4 x max_body (it had sent $at bytes)"
is "$(jget "$UP" .closed)" true "... and the connection is closed"
is "$(jget "$(jget "$UP" .body)" .error.code)" payload_too_large "... with the bridge's JSON error body"

# --- 4. restart on the same port right after traffic -----------------------
for i in $(seq 20); do
    curl -s -o /dev/null -H 'Connection: close' "$URL/healthz"
done
post /v1/echo/echo '1'
is "$STATUS" 200 "the bridge still serves after all this"
waiting=$(ss -Htan state time-wait "( sport = :$PORT )" | wc -l)
ok "$([ "$waiting" -gt 0 ]; echo $?)" "the bridge's port has connections in TIME_WAIT ($waiting)"
kill -TERM "$BRIDGE_PID"
wait_for 10 eval "! kill -0 $BRIDGE_PID" || bail "the bridge did not stop"
T_PIDS=${T_PIDS/ $BRIDGE_PID/}
printf 'rest-bridge\n    listen = "127.0.0.1:%s"\n    port_file = "%s"\n' \
    "$PORT" "$T_DIR/again.port" > "$T_DIR/again.zpl"
started=$(date +%s%N)
start_service again --config "$T_DIR/again.zpl" "$SB_PLUGINS/rest-bridge.so"
wait_for 3 test -s "$T_DIR/again.port"
is "$(cat "$T_DIR/again.port" 2>/dev/null)" "$PORT" \
   "restarted at once on the same port ($(( ($(date +%s%N) - started) / 1000000 )) ms)"
call GET /healthz
is "$STATUS" 200 "... and serves"

done_testing
