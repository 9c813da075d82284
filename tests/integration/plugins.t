#!/bin/bash
# plugins.t — sb run refuses to start, with exit 1 and one line naming the
# file and the reason, for each way a plugin can be broken; nothing is left
# serving.  Also: configuration reaches init(), bare names are found in
# SB_PLUGIN_DIR, and bad options exit 2.
. "$(dirname "$0")/lib.sh"

TESTPLUGINS="$SB_TOP_BUILDDIR/tests/plugins/.libs"
start_broker b1

printf 'not a plugin\n' > "$SB_TMP/text.so"
sb_run_refused 1 "^sb run: /nonexistent/x\.so: no such file$" "missing file" /nonexistent/x.so
sb_run_refused 1 "^sb run: $SB_TMP/text\.so: not a loadable shared object: " "not a shared object" "$SB_TMP/text.so"
sb_run_refused 1 "^sb run: $TESTPLUGINS/nosymbol\.so: no 'sb_service' symbol" "missing symbol" "$TESTPLUGINS/nosymbol.so"
sb_run_refused 1 "^sb run: $TESTPLUGINS/wrongabi\.so: wrong ABI version 99 \(this sb supports 1\)$" "wrong ABI version" "$TESTPLUGINS/wrongabi.so"
sb_run_refused 1 "^sb run: $TESTPLUGINS/badname\.so: invalid descriptor: service name" "invalid descriptor" "$TESTPLUGINS/badname.so"
sb_run_refused 1 "^sb run: $TESTPLUGINS/initfail\.so: instance 0 of 'initfail' failed to start: cannot open database /nonexistent/initfail\.db$" \
    "init fails" "$TESTPLUGINS/initfail.so"
sb_run_refused 1 "initfail.* cannot open database /srv/db$" "init fails, after a good plugin and with config" \
    --instances 2 --set initfail/db/path=/srv/db echo "$TESTPLUGINS/initfail.so"
sb_run_refused 1 "^sb run: nosuch: no such plugin in " "unknown bare name" nosuch
sb_run_refused 1 "service 'echo' is already loaded from " "the same service twice" echo "$SB_PLUGINS/echo.so"
printf 'echo\n    sleep_max_ms = 5\n  bad = indent\n' > "$SB_TMP/bad.cfg"
sb_run_refused 1 "^sb run: $SB_TMP/bad\.cfg: line 3: " "a bad config file names its line" --config "$SB_TMP/bad.cfg" echo
sb_run_refused 1 "sleep_max_ms must be 0\.\.60000" "a bad config value refused by init" --set echo/sleep_max_ms=lots echo
sb_run_refused 2 "^sb run: --set 'nosvc/key=1': no plugin provides service 'nosvc'$" "--set for an unknown service" --set nosvc/key=1 echo
sb_run_refused 2 "^sb run: --set 'echo': expected service/key=value$" "a malformed --set" --set echo echo
sb_run_refused 2 "^sb run: --instances: " "--instances 0" --instances 0 echo
sb_run_refused 2 "^sb run: expected 1 to 64 plugins" "no plugin at all"

# Nothing was left half-started.
OUT=$("$SB" services --connect "$BROKER" --json)
is "$(printf '%s' "$OUT" | jq -c '[.broker, .services, (.remote // [])]')" '["b1",[],[]]' \
   "the broker lists no service after all those refusals"

# Configuration reaches init(): the initfail plugin starts when told to.
printf 'initfail\n    fail = yes\n' > "$SB_TMP/good.cfg"
start_run cfg --config "$SB_TMP/good.cfg" --set initfail/fail=no "$TESTPLUGINS/initfail.so" echo
is "$(cat "$SB_TMP/cfg.out")" "sb run: serving initfail x1
sb run: serving echo x1" "--set overrides the file; one 'serving' line per service"
wait_instances initfail 1
ok $? "initfail serves"
"$SB" call --connect "$BROKER" --timeout 10000 initfail.ping > /dev/null
ok $? "and answers"
kill -TERM $RUN_PID
wait $RUN_PID
is "$?" 0 "SIGTERM stops sb run with exit 0"
wait_instances echo 0 10
ok $? "and its services leave the broker"

done_testing
