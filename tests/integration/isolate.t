#!/bin/bash
# isolate.t — supervised hosts: `sb run --isolate` keeps a crashing or
# aborting plugin from taking its neighbours down, restarts it, answers its
# in-flight call, ends on SIGTERM even with a handler stuck; a plain host
# ends within --drain-timeout too; --memory-limit bounds an isolated
# process.  The plugin tests/plugins/crashy.so misbehaves on request.
. "$(dirname "$0")/lib.sh"

CRASHY="$SB_TOP_BUILDDIR/tests/plugins/.libs/crashy.so"
# Let the crashes be the kernel's: a sanitizer would report them as its own.
export ASAN_OPTIONS="$ASAN_OPTIONS:handle_segv=0:handle_abort=0"

start_broker b1
start_run sup --isolate echo "$CRASHY"
SUP=$RUN_PID
wait_instances echo 1 && wait_instances crashy 1
ok $? "sb run --isolate: echo and crashy both offered"
like "$(cat "$SB_TMP/sup.out")" "supervising 2 processes \(service isolation\)" "the supervisor says what it runs"

crashy_pid () { sb_call --timeout 5000 crashy.pid; [ $RC -eq 0 ] && json_get "$OUT" pid; }
P1=$(crashy_pid)
[ -n "$P1" ] && [ "$P1" != "$SUP" ] && kill -0 "$P1" 2>/dev/null
ok $? "crashy runs in a process of its own (pid $P1, supervisor $SUP)"

# crash SIGNAME METHOD: the call in flight is answered, the neighbour keeps
# answering throughout, the supervisor says what happened and restarts it.
crash () {
    local sig=$1 method=$2 before
    before=$(crashy_pid)
    ( for i in $(seq 1 20); do
          "$SB" call --connect "$BROKER" --timeout 5000 echo.echo '{"n": 1}' >/dev/null 2>&1 \
              || echo "failed $i"
          sleep 0.05
      done ) > "$SB_TMP/neighbour.$sig" &
    local loop=$!
    local start; start=$(now_ms)
    sb_call --timeout 20000 "crashy.$method"
    local took=$(( $(now_ms) - start ))
    [ $RC -ne 0 ] && grep -q 'unavailable' <<<"$ERR"
    ok $? "$method: the call in flight is answered unavailable in ${took} ms ($ERR)"
    [ $took -lt 5000 ]
    ok $? "$method: answered well before its 20 s deadline (${took} ms)"
    wait_for_line "$SB_TMP/sup.err" "crashy.so \(pid $before, instances 0-0\) killed by signal [0-9]+ \(SIG$sig\); restarting in [0-9]+ ms"
    ok $? "$method: the supervisor logs pid $before killed by SIG$sig and restarts it"
    wait $loop
    [ ! -s "$SB_TMP/neighbour.$sig" ]
    ok $? "$method: echo answered all 20 calls meanwhile ($(wc -l < "$SB_TMP/neighbour.$sig") failed)"
    local after="" tries=100
    while [ $tries -gt 0 ]; do
        after=$(crashy_pid)
        [ -n "$after" ] && [ "$after" != "$before" ] && break
        sleep 0.1; tries=$((tries - 1))
    done
    [ -n "$after" ] && [ "$after" != "$before" ]
    ok $? "$method: crashy answers again from a new process ($before -> $after)"
}
crash SEGV segv
crash ABRT abort

# SIGTERM with a handler stuck: the supervisor ends anyway, within the
# drain bound and its grace second.
kill -TERM $SUP; wait $SUP 2>/dev/null
start_run sup2 --isolate --drain-timeout 1000 echo "$CRASHY"
SUP=$RUN_PID
wait_instances crashy 1 || bail "crashy not offered"
"$SB" call --connect "$BROKER" --timeout 60000 crashy.block >/dev/null 2>&1 &
sleep 1
START=$(now_ms)
kill -TERM $SUP
tries=100
while kill -0 $SUP 2>/dev/null && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
TOOK=$(( $(now_ms) - START ))
! kill -0 $SUP 2>/dev/null
ok $? "--isolate: SIGTERM with a handler stuck ends the supervisor in ${TOOK} ms (bound 1 s drain + 1 s grace)"
wait $SUP 2>/dev/null
is "$?" 0 "the supervisor exits 0 after SIGTERM"
grep -q 'still busy 1000 ms after the signal' "$SB_TMP/sup2.err"
ok $? "the stuck child says why it exits without waiting"

# The same for a plain host.
start_run plain --drain-timeout 1000 "$CRASHY"
PLAIN=$RUN_PID
wait_instances crashy 1 || bail "crashy not offered"
"$SB" call --connect "$BROKER" --timeout 60000 crashy.block >/dev/null 2>&1 &
sleep 1
START=$(now_ms)
kill -TERM $PLAIN
tries=100
while kill -0 $PLAIN 2>/dev/null && [ $tries -gt 0 ]; do sleep 0.1; tries=$((tries - 1)); done
TOOK=$(( $(now_ms) - START ))
! kill -0 $PLAIN 2>/dev/null
ok $? "plain host: SIGTERM with a handler stuck ends it in ${TOOK} ms (drain bound 1 s)"
wait $PLAIN 2>/dev/null
is "$?" 1 "and it exits 1, saying the instances did not drain"

# One process per instance.
start_run perinst --isolate=instance --instances 2 "$CRASHY"
PERINST=$RUN_PID
wait_instances crashy 2 || bail "crashy never had 2 instances"
PIDS=$(for i in $(seq 1 12); do crashy_pid; done | sort -u | wc -l)
is "$PIDS" 2 "--isolate=instance --instances 2: calls are served by 2 processes"
kill -TERM $PERINST; wait $PERINST 2>/dev/null

# Memory limit (not under AddressSanitizer, which reserves terabytes of
# address space for itself).
if ldd "$SB" 2>/dev/null | grep -q libasan; then
    ok 0 "# SKIP --memory-limit under AddressSanitizer"
    ok 0 "# SKIP --memory-limit under AddressSanitizer"
else
    start_run limited --isolate --memory-limit 256 "$CRASHY"
    wait_instances crashy 1
    sb_call --timeout 10000 crashy.hog '{"mb": 16}'
    is "$OUT" "true" "--memory-limit 256: 16 MB allocated and touched"
    sb_call --timeout 10000 crashy.hog '{"mb": 1024}'
    like "$ERR" "internal: allocation refused" "--memory-limit 256: 1 GB refused to the handler"
fi

sb_run_refused 2 "^sb run: --memory-limit applies to isolated processes: add --isolate$" \
    "--memory-limit without --isolate" --memory-limit 100 echo
done_testing
