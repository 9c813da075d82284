#!/bin/bash
# notes.t — the worked example of docs/writing-services.md, as a user meets
# it: services/notes keeps notes in SQLite, publishes notes.created and
# calls echo.reverse.  Created, read through a REST alias with an integer
# path parameter, listed, deleted, the event seen by a subscriber, the data
# kept across a host restart.  Real broker, hosts, bridge, sb sub, curl.
. "$(dirname "$0")/rest_lib.sh"
need curl jq

DB="$T_DIR/notes.db"
start_broker
start_service echo "$SB_PLUGINS/echo.so"
start_service notes --set "notes/db=$DB" "$SB_PLUGINS/notes.so"
NOTES_PID=$LAST_PID
start_bridge bridge "    schemas = \"$SB_TOP_SRCDIR/schemas\"
    aliases = \"GET /notes notes.list; GET /notes/{id} notes.get; POST /notes notes.create; DELETE /notes/{id} notes.delete; GET /notes/{id}/shout notes.shout\""
"$SB" sub --connect "$BROKER" notes. > "$T_DIR/events.out" 2> "$T_DIR/events.err" &
T_PIDS="$T_PIDS $!"

notes_ready () { call GET /notes; [ "$STATUS" = 200 ]; }
wait_for 20 notes_ready || bail "notes never answered through the bridge"
sleep 0.5               # the subscriber is linked

post /notes '{"title": "buy milk", "body": "two litres"}'
is "$STATUS" 200 "POST /notes creates a note"
ID=$(jget "$BODY" .id)
like "$ID" '^[0-9]+$' "and answers its integer id ($ID)"
call GET "/notes/$ID"
is "$STATUS" 200 "GET /notes/$ID: the path parameter reaches notes.get as an integer"
is "$(jget "$BODY" .body)" "two litres" "the note comes back whole"
call GET /notes/seven
is "$STATUS" 400 "GET /notes/seven: 400"
like "$(jget "$BODY" .error.message)" 'id.*integer' "naming the field and the type"
post /notes '{"title": "call mum"}'
call GET /notes
is "$(jget "$BODY" 'map(.title) | join(",")')" "buy milk,call mum" "GET /notes lists both"
call GET "/notes/$ID/shout"
is "$(jget "$BODY" .title)" "klim yub" "notes.shout calls echo.reverse"
wait_for 10 grep -q 'call mum' "$T_DIR/events.out"
ok $? "a subscriber saw notes.created for both"
like "$(cat "$T_DIR/events.out")" '"title":"buy milk"' "with the note's title"

# Restart the host: the data is in its database.
kill -TERM "$NOTES_PID"; wait "$NOTES_PID" 2>/dev/null
start_service notes2 --set "notes/db=$DB" "$SB_PLUGINS/notes.so"
wait_for 20 notes_ready || bail "notes did not come back"
call GET "/notes/$ID"
is "$(jget "$BODY" .title)" "buy milk" "after a restart of its host the note is still there"
call DELETE "/notes/$ID"
is "$STATUS" 200 "DELETE /notes/$ID"
call GET "/notes/$ID"
is "$STATUS" 404 "then it is gone: 404"
like "$(jget "$BODY" .error.message)" "no note $ID" "saying which"
done_testing
