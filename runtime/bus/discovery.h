/*  discovery.h — the peer side of a cluster: which brokers to be linked to.

    A service instance or a client is linked to every broker of its
    cluster: the static seeds it was given (--connect) and every broker
    whose beacon it hears (beacon.h, listen only).  Discovery applies the
    beacon's events to a peer (peer.h):

    - APPEARED: sb_peer_connect to the announced endpoint, unless a link
      to that endpoint exists already (a seed, or another id);
    - GONE (silent for 3 intervals, or leaving): sb_peer_disconnect, unless
      the endpoint is a seed: seeds are never removed, their links keep
      retrying HELLO until the broker is back;
    - CHANGED: the old endpoint is dropped as for GONE, the new one
      connected as for APPEARED.

    Secure peers (config.identity set, the cluster has an authority)
    believe only signed beacons whose signature verifies and whose
    certificate is signed by the identity's authority, valid now, has the
    broker role (sb_cert_check_broker), and is made out for both the
    signing key and the CURVE key announced; they
    link as CURVE clients of that key ("tcp://HOST:PORT#HEXKEY", link.h).
    Unsigned, forged and foreign beacons are ignored and counted by the
    beacon (sb_beacon_counters).  Insecure peers (no identity) link only
    to brokers that announce no key: a secure broker would refuse their
    plaintext handshake anyway.

    Only "tcp://" endpoints are taken from beacons (a beacon is input
    from the network, and ipc:// or inproc:// would point elsewhere).  A
    broker announcing a wildcard host (`*` or 0.0.0.0, as in "tcp://" "*:7600")
    is linked at the address its beacon came from.

    Like the beacon, discovery is not a thread: the peer's loop
    (loop.h) polls sb_discovery_fd() with the peer's sockets and calls
    sb_discovery_handle() when the fd is readable or
    sb_discovery_timeout() has passed.  Owners that only ever wait on the
    peer (clients) call sb_discovery_wait() instead of sb_peer_wait().
*/
#ifndef SB_DISCOVERY_H_INCLUDED
#define SB_DISCOVERY_H_INCLUDED

#include "bus/beacon.h"
#include "security/identity.h"
#include "bus/peer.h"

typedef struct sb_discovery sb_discovery_t;

typedef struct {
    const char *cluster;        /* cluster name; NULL: "default" */
    const char *beacon;         /* beacon mode (beacon.h); NULL: "lo"; "off": seeds only */
    int port;                   /* UDP beacon port; 0: SB_BEACON_PORT_DEFAULT */
    const char *seeds;          /* comma-separated static endpoints; NULL or "": none */
    bool log;                   /* one zsys_info line per broker linked or dropped */
    /*  Borrowed, must outlive discovery; NULL: insecure.  With it only
        beacons signed by members of its authority are believed.  */
    const sb_identity_t *identity;
} sb_discovery_config_t;

typedef struct {
    uint64_t appeared;          /* brokers heard of (APPEARED events) */
    uint64_t gone;              /* GONE events */
    uint64_t changed;           /* CHANGED events */
    uint64_t connected;         /* links added for discovered brokers */
    uint64_t disconnected;      /* links removed */
    uint64_t refused;           /* announced endpoints not used (not tcp://, bad, too many,
                                   key missing or not the certificate's, secure
                                   broker seen by an insecure peer) */
} sb_discovery_counters_t;

/*  Connects `peer` (borrowed; must outlive discovery) to every seed and
    opens the beacon listener.  NULL with err filled when a seed is bad,
    the beacon cannot listen, or beacons are off and there is no seed.  */
sb_discovery_t *sb_discovery_new (const sb_discovery_config_t *config, sb_peer_t *peer,
                                  sb_error_t *err);
/*  Closes the beacon socket; leaves the peer's links as they are.  */
void sb_discovery_destroy (sb_discovery_t **self_p);

/*  The fd to poll for input; -1 when beacons are off.  */
int sb_discovery_fd (const sb_discovery_t *self);
/*  Milliseconds until sb_discovery_handle must run (0: now), -1: only
    when the fd is readable.  */
int sb_discovery_timeout (const sb_discovery_t *self, int64_t now_ms);
/*  Reads waiting beacons, expires silent brokers and updates the peer's
    links.  Returns the number of links added or removed.  */
int sb_discovery_handle (sb_discovery_t *self, int64_t now_ms);

/*  sb_peer_wait with the beacon fd in the poll set (sb_loop_wait with
    beacons): polls up to timeout_ms (-1: until something is dispatched)
    and dispatches.  Returns the number dispatched, -1 if interrupted.  */
int sb_discovery_wait (sb_discovery_t *self, int timeout_ms);

/*  Brokers known from beacons and alive (seeds not counted).  */
size_t sb_discovery_brokers (const sb_discovery_t *self);
void sb_discovery_counters (const sb_discovery_t *self, sb_discovery_counters_t *counters);
/*  The beacon listener (counters of ignored datagrams); NULL when off.  */
sb_beacon_t *sb_discovery_beacon (sb_discovery_t *self);

#endif
