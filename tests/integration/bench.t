#!/bin/bash
# bench.t — `sb bench` still runs and says what the README promises: a
# short plain run and a short secure run, each with its same-run baseline,
# every request answered, and the last line in the documented form.  No
# figure is judged here (a test on a shared machine cannot); the numbers
# come from the benchmark run by hand (docs/operations.md section 10).
. "$(dirname "$0")/lib.sh"

num='[0-9]+(\.[0-9]+)?'

"$SB" bench --baseline --requests 3000 --latency-requests 200 > "$SB_TMP/plain" 2>&1
is "$?" 0 "sb bench --baseline exits 0"
grep -q ' 0 failed' "$SB_TMP/plain"
ok $? "every request answered ($(grep -m1 'req/s pipelined' "$SB_TMP/plain"))"
like "$(tail -n 1 "$SB_TMP/plain")" \
    "^bench: $num req/s p50=${num}us p99=${num}us baseline=$num ratio=$num\$" \
    "last line: $(tail -n 1 "$SB_TMP/plain")"

mkdir -p "$SB_TMP/benchtmp"
TMPDIR="$SB_TMP/benchtmp" "$SB" bench --secure --baseline --requests 3000 --latency-requests 200 \
    > "$SB_TMP/secure" 2>&1
is "$?" 0 "sb bench --secure --baseline exits 0"
grep '^secure: .*req/s pipelined' "$SB_TMP/secure" | grep -q ' 0 failed'
ok $? "every sealed request answered ($(grep -m1 '^secure: .*req/s pipelined' "$SB_TMP/secure"))"
like "$(tail -n 1 "$SB_TMP/secure")" \
    "^bench-secure: $num req/s p50=${num}us p99=${num}us plain=$num secure/plain=$num baseline_curve=$num ratio=$num\$" \
    "last line: $(tail -n 1 "$SB_TMP/secure")"
[ -z "$(ls -A "$SB_TMP/benchtmp")" ]
ok $? "the secure run's temporary keys directory is gone"

done_testing
