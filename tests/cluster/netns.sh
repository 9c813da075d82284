#!/bin/bash
# netns.sh — three simulated hosts on a private LAN, for cluster tests.
#
# Creates four network namespaces: a "switch" holding a bridge, and hosts
# h1, h2, h3, each with one veth interface named sb0 plugged into the
# bridge, addresses 10.77.0.1..3/24 (broadcast 10.77.0.255), lo up.
# Nothing is created in the caller's namespace: the machine's own
# interfaces (eth0) are never touched and no traffic can leave.
# Namespace names carry the caller's pid, so concurrent runs do not clash.
#
# Use from a test script:
#     . "$SB_TOP_SRCDIR/tests/cluster/netns.sh"
#     netns_up || skip "$NETNS_WHY"      # sets NETNS_H1 NETNS_H2 NETNS_H3
#     netns_exec 1 some command           # runs in h1
#     netns_link 2 down                   # cuts h2 off; "up" restores it
# netns_up installs an EXIT trap that calls netns_down, which removes
# everything (also after a partial setup).
#
# Run directly: `netns.sh check` exits 0 if namespaces can be used here,
# 77 with the reason otherwise; `netns.sh demo` sets up, shows the
# addresses, and tears down.
#
# Sourced, it also sends the sanitizer reports of whatever the test runs in
# the hosts to a kept directory (tests/integration/sanitizers.sh): the test
# calls san_check before its plan and san_finish at exit.

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    . "$(dirname "${BASH_SOURCE[0]}")/../integration/sanitizers.sh"
fi

NETNS_PREFIX="sbt$$"
NETNS_SWITCH="$NETNS_PREFIX-sw"
NETNS_H1="$NETNS_PREFIX-h1"
NETNS_H2="$NETNS_PREFIX-h2"
NETNS_H3="$NETNS_PREFIX-h3"
NETNS_SUBNET="10.77.0"
NETNS_WHY=""

# Removes every namespace of this run; deleting a namespace deletes its
# veth ends and the bridge with it.
netns_down () {
    local ns
    for ns in "$NETNS_H1" "$NETNS_H2" "$NETNS_H3" "$NETNS_SWITCH"; do
        ip netns del "$ns" 2>/dev/null
    done
    return 0
}

# Whether this machine lets us create namespaces; sets NETNS_WHY if not.
netns_check () {
    if ! command -v ip >/dev/null 2>&1; then
        NETNS_WHY="the ip command (iproute2) is not installed"
        return 1
    fi
    if [ "$(id -u)" != 0 ]; then
        NETNS_WHY="creating network namespaces needs root"
        return 1
    fi
    if ! ip netns add "$NETNS_PREFIX-probe" 2>/dev/null; then
        NETNS_WHY="ip netns add failed (no namespace support or no permission)"
        return 1
    fi
    if ! ip -n "$NETNS_PREFIX-probe" link add sbprobe type bridge 2>/dev/null; then
        ip netns del "$NETNS_PREFIX-probe" 2>/dev/null
        NETNS_WHY="cannot create a bridge inside a namespace"
        return 1
    fi
    ip netns del "$NETNS_PREFIX-probe"
    return 0
}

netns_ns () {
    case "$1" in
        1) echo "$NETNS_H1" ;;
        2) echo "$NETNS_H2" ;;
        3) echo "$NETNS_H3" ;;
        *) return 1 ;;
    esac
}

netns_up () {
    netns_check || return 1
    trap netns_down EXIT
    ip netns add "$NETNS_SWITCH" || { NETNS_WHY="cannot add the switch namespace"; return 1; }
    ip -n "$NETNS_SWITCH" link add br0 type bridge || { NETNS_WHY="no bridge"; return 1; }
    ip -n "$NETNS_SWITCH" link set br0 up
    ip -n "$NETNS_SWITCH" link set lo up
    local i ns
    for i in 1 2 3; do
        ns=$(netns_ns $i)
        ip netns add "$ns" || { NETNS_WHY="cannot add namespace $ns"; return 1; }
        ip -n "$ns" link set lo up
        ip -n "$ns" link add sb0 type veth peer name "port$i" netns "$NETNS_SWITCH" \
            || { NETNS_WHY="cannot create a veth pair"; return 1; }
        ip -n "$ns" addr add "$NETNS_SUBNET.$i/24" broadcast "$NETNS_SUBNET.255" dev sb0
        ip -n "$ns" link set sb0 up
        ip -n "$NETNS_SWITCH" link set "port$i" master br0
        ip -n "$NETNS_SWITCH" link set "port$i" up
    done
    return 0
}

# netns_exec N COMMAND...: runs COMMAND in host N.
netns_exec () {
    local ns
    ns=$(netns_ns "$1") || return 1
    shift
    ip netns exec "$ns" "$@"
}

# netns_link N up|down: plugs host N in or out (the bridge side of its cable).
netns_link () {
    ip -n "$NETNS_SWITCH" link set "port$1" "$2"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "$1" in
        check)
            netns_check && exit 0
            echo "skip: $NETNS_WHY"
            exit 77 ;;
        demo)
            netns_up || { echo "skip: $NETNS_WHY"; exit 77; }
            for i in 1 2 3; do
                netns_exec $i ip -brief addr show dev sb0
            done
            exit 0 ;;
        *)
            echo "usage: $0 check|demo (or source it from a test)" >&2
            exit 2 ;;
    esac
fi
