#!/bin/sh
# demo-keys.sh — the keys of the quick start's secure demo cluster
# (docs/security.md, "Setting up a cluster"): an authority and the members
# broker1, broker2 (brokers: certificates with the broker role), echo (offers echo), rest-bridge (offers
# rest-bridge, calls everything) and cli (calls everything), each with a
# certificate signed by the authority, and the cluster event key events.key,
# all in DIR (created 0700).
#
# usage: tools/demo-keys.sh DIR [SB]
#   SB: the sb binary (default: $SB, else `sb` on PATH)
# Prints one line per broker: 'BROKER CURVE-PUBLIC-KEY' (hex), which
# clients append to the broker's endpoint: tcp://HOST:PORT#KEY.
# An existing DIR/authority.key is reused (keys are never overwritten), so
# the script may run again on the same DIR.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 DIR [SB]" >&2
    exit 2
fi
DIR=$1
SB=${2:-${SB:-sb}}

[ -f "$DIR/authority.key" ] || "$SB" keygen authority "$DIR" > /dev/null

member () {
    name=$1
    shift
    [ -f "$DIR/$name.key" ] || "$SB" keygen member "$name" "$DIR" > /dev/null
    [ -f "$DIR/$name.cert" ] || "$SB" cert sign --authority "$DIR/authority.key" \
        --member "$DIR/$name.pub" --days 30 --out "$DIR/$name.cert" "$@" > /dev/null
}

member broker1 --broker --call '*'
member broker2 --broker --call '*'
member echo --offer echo --call 'sys'
member rest-bridge --offer 'rest-bridge' --call '*'
member cli --call '*'
# The cluster event key (docs/security.md 5.4): members seal events for it.
# In a real cluster it goes to members only, not to the brokers; here all
# share one directory, which is fine for a demo on one machine.
[ -f "$DIR/events.key" ] || "$SB" keygen member events "$DIR" > /dev/null

for b in broker1 broker2; do
    echo "$b $(sed -n 's/^curve-public = //p' "$DIR/$b.pub")"
done
