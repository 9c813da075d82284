#!/bin/bash
# cluster_secure.t — a secure two-broker cluster on loopback found by
# signed beacons only (no --connect anywhere), as real processes with the
# keys of tools/demo-keys.sh.
#
# What a user must see: `sb run` hosting echo and `sb call` / `sb services`
# naming only the cluster reach both secure brokers, as CURVE clients of
# the keys the brokers' signed beacons carry; a broker of the same cluster
# name that is --insecure (unsigned beacons) or whose certificate comes
# from another authority is ignored by the secure members (nobody links to
# it, the secure brokers count its beacons as refused) and does not disturb
# them.  An ordinary member (cli, whose certificate has no broker role)
# running a broker with its own keys is no broker either: hosts, callers
# and brokers ignore its signed beacons (counted as beacons.not_broker),
# and the brokers refuse its PEER (sys.stats not_broker).  Every wait is
# bounded; lib.sh kills what is left.
. "$(dirname "$0")/lib.sh"

DEMO_KEYS=${SB_TOP_SRCDIR:-}/tools/demo-keys.sh
[ -x "$DEMO_KEYS" ] || { echo "1..0 # SKIP no tools/demo-keys.sh (SB_TOP_SRCDIR)"; exit 0; }

K="$SB_TMP/keys"
OTHER="$SB_TMP/other-keys"
"$DEMO_KEYS" "$K" "$SB" > "$SB_TMP/keys.out" 2>&1 || { sed 's/^/#   /' "$SB_TMP/keys.out"; bail "demo-keys.sh failed"; }
"$DEMO_KEYS" "$OTHER" "$SB" > /dev/null 2>&1 || bail "demo-keys.sh (other authority) failed"

CLUSTER="sec$$"
BPORT=$(free_udp_port)
CL="--cluster $CLUSTER --beacon lo --beacon-port $BPORT"
AS_CLI="--keys $K --member cli"

# services_json ENDPOINT [KEYS ARGS]: sys.services of one broker.
services_json () {
    local ep=$1
    shift
    "$SB" services --connect "$ep" --json "$@" 2>/dev/null
}

# echo_instances JSON: instances of echo the broker routes itself.
echo_instances () {
    printf '%s' "$1" | python3 -c '
import json, sys
try:
    reply = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit(0)
print(sum(s.get("instances", 0) for s in reply.get("services", []) if s.get("name") == "echo"))
'
}

# wait_echo ENDPOINT N SECONDS KEYS ARGS...: until that broker lists N echo instances.
wait_echo () {
    local ep=$1 want=$2 tries=$(($3 * 5))
    shift 3
    while [ $tries -gt 0 ]; do
        [ "$(echo_instances "$(services_json "$ep" "$@")")" = "$want" ] && return 0
        sleep 0.2
        tries=$((tries - 1))
    done
    return 1
}

# top_stat ENDPOINT NAME: a top-level sys.stats counter of a secure broker.
top_stat () {
    "$SB" call $AS_CLI --connect "$1" sys.stats 2>/dev/null | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin).get(sys.argv[1], -1))
except ValueError:
    print(-1)
' "$2"
}

# beacon_stat ENDPOINT NAME: a beacons.* counter of a secure broker.
beacon_stat () {
    "$SB" call $AS_CLI --connect "$1" sys.stats 2>/dev/null | python3 -c '
import json, sys
try:
    print(json.load(sys.stdin).get("beacons", {}).get(sys.argv[1], 0))
except ValueError:
    print(-1)
' "$2"
}

start_cluster_broker sec-b1 'tcp://127.0.0.1:*' --keys "$K" --member broker1 || bail "no broker sec-b1"
B1=$CB_EP
start_cluster_broker sec-b2 'tcp://127.0.0.1:*' --keys "$K" --member broker2 || bail "no broker sec-b2"
B2=$CB_EP
like "$B1" '#[0-9a-f]{64}$' "secure broker 1 prints its endpoint with its key"
diag "cluster $CLUSTER, beacons on 127.255.255.255:$BPORT, brokers ${B1%%#*} ${B2%%#*}"

# The service host knows only the cluster and its keys.
"$SB" run $CL --keys "$K" --member echo --instances 2 echo > "$SB_TMP/run.out" 2> "$SB_TMP/run.err" &
sb_track $!
wait_for_line "$SB_TMP/run.out" '^sb run: serving ' 30 || { sed 's/^/#   /' "$SB_TMP/run.err"; bail "sb run did not start"; }
wait_echo "$B1" 2 15 $AS_CLI
ok $? "the echo host found secure broker 1 by its signed beacon (2 instances listed there)"
wait_echo "$B2" 2 15 $AS_CLI
ok $? "and secure broker 2"
like "$(cat "$SB_TMP/run.out" "$SB_TMP/run.err")" "broker at ${B1%%#*}#[0-9a-f]{64} appeared, linked" \
    "the host linked to broker 1 with the key from its beacon"

OUT=$("$SB" call $CL $AS_CLI echo.reverse '{"text": "secure"}' 2>&1)
is "$OUT" '{"text":"eruces"}' "sb call by discovery reaches echo through the secure cluster"
TABLE=$("$SB" services $CL $AS_CLI 2>&1)
like "$TABLE" '^echo +[^ ]+ +2 ' "sb services by discovery lists echo x2"
like "$TABLE" 'cluster of 2 brokers' "and the two brokers"

# Without keys, the same call by discovery finds no broker it may use.
OUT=$("$SB" call $CL --insecure --timeout 2000 echo.reverse '{"text": "x"}' 2>&1)
RC=$?
ok $((RC == 0)) "an insecure sb call by discovery gets nothing from the secure cluster (exit $RC)"

# -- an insecure broker and a foreign-authority broker join the cluster name --

start_cluster_broker plain-b3 'tcp://127.0.0.1:*' --insecure || bail "no broker plain-b3"
B3=$CB_EP
start_cluster_broker foreign-b4 'tcp://127.0.0.1:*' --keys "$OTHER" --member broker1 || bail "no broker foreign-b4"
B4=$CB_EP
diag "insecure broker ${B3}, foreign broker ${B4%%#*}"
# Until both secure brokers have refused beacons of each kind.
refused=0
for _ in $(seq 50); do
    if [ "$(beacon_stat "$B1" unsigned)" -gt 0 ] && [ "$(beacon_stat "$B2" unsigned)" -gt 0 ] \
    && [ "$(beacon_stat "$B1" bad_cert)" -gt 0 ] && [ "$(beacon_stat "$B2" bad_cert)" -gt 0 ]; then
        refused=1
        break
    fi
    sleep 0.2
done
ok $((1 - refused)) "the secure brokers count the unsigned and foreign beacons (beacons.unsigned, beacons.bad_cert)"
# A new secure caller and the running host: several beacon intervals
# later, still only the two secure brokers.
sleep 3
TABLE=$("$SB" services $CL $AS_CLI 2>&1)
like "$TABLE" 'cluster of 2 brokers' "sb services by discovery still sees 2 brokers"
cat "$SB_TMP/run.out" "$SB_TMP/run.err" | grep -Eq "${B3}|${B4%%#*}"
ok $((! $?)) "the echo host never linked to the insecure or the foreign broker"
is "$(echo_instances "$(services_json "$B3" --insecure)")" 0 "the insecure broker has no echo instance"
is "$(echo_instances "$(services_json "$B4" --keys "$OTHER" --member cli)")" 0 \
    "the foreign-authority broker has no echo instance"
good=0
for i in $(seq 1 10); do
    [ "$("$SB" call $CL $AS_CLI --timeout 5000 echo.echo "$i" 2>/dev/null)" = "$i" ] && good=$((good + 1))
done
is "$good" 10 "10 secure calls by discovery answered beside the insecure and foreign brokers"

# -- an ordinary member poses as a broker --------------------------------------
# cli may only call; a broker run with cli's keys signs its beacons with
# cli's own valid certificate and announces its own endpoint.
start_cluster_broker fake-b5 'tcp://127.0.0.1:*' --keys "$K" --member cli || bail "no broker fake-b5"
B5=$CB_EP
grep -q "has no broker role" "$SB_TMP/fake-b5.log"
ok $? "a broker started with a certificate without the broker role warns"
refused=0
for _ in $(seq 50); do
    if [ "$(beacon_stat "$B1" not_broker)" -gt 0 ] && [ "$(beacon_stat "$B2" not_broker)" -gt 0 ]; then
        refused=1
        break
    fi
    sleep 0.2
done
ok $((1 - refused)) "the secure brokers refuse the member's beacons (beacons.not_broker)"
# The member's broker links to the real brokers (their beacons are good):
# its PEER is refused and counted.
refused=0
for _ in $(seq 50); do
    if [ "$(top_stat "$B1" not_broker)" -gt 0 ] && [ "$(top_stat "$B2" not_broker)" -gt 0 ]; then
        refused=1
        break
    fi
    sleep 0.2
done
ok $((1 - refused)) "the secure brokers refuse the member's PEER (sys.stats not_broker)"
grep -q "member 'cli' is not a broker" "$SB_TMP/sec-b1.log"
ok $? "and log it with the member's name"
is "$(grep -c "member 'cli' is not a broker" "$SB_TMP/sec-b1.log")" 1 "once"
sleep 3
TABLE=$("$SB" services $CL $AS_CLI 2>&1)
like "$TABLE" 'cluster of 2 brokers' "sb services by discovery still sees 2 brokers"
fake=0
for i in $(seq 1 10); do
    OUT=$("$SB" call $CL $AS_CLI --timeout 5000 sys.ping 2>/dev/null)
    case $OUT in *fake-b5*) fake=$((fake + 1)) ;; esac
done
is "$fake" 0 "secure callers by discovery never reach the member's broker (10 sys.ping)"
cat "$SB_TMP/run.out" "$SB_TMP/run.err" | grep -q "${B5%%#*}"
ok $((! $?)) "the echo host never linked to the member's broker"
is "$(echo_instances "$(services_json "$B5" $AS_CLI)")" 0 "the member's broker has no echo instance"
is "$(top_stat "$B5" directories)" 0 "no broker sent the member's broker a DIRECTORY"

done_testing
