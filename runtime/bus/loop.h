/*  loop.h — the one poll loop that drives a peer.

    Every owner of a peer runs the same turn: poll its own items (if
    any), the peer's links and their socket monitors, and the beacon fd
    when in a cluster, for at most the earliest of the peer's timeout,
    the beacons' and the owner's own deadline; let the owner handle its
    items; read the links; apply the beacons (after the links: discovery
    may remove the links just polled); tick the peer.  A client waits
    with sb_loop_wait (through sb_peer_wait, sb_discovery_wait or its
    blocking calls); the instance actor (host/instance.c) calls
    sb_loop_turn with its pipe and watched fds as its items, and its
    timers and deferred requests as its deadline.

    Single-threaded like the peer: the loop runs on the peer's thread.
*/
#ifndef SB_LOOP_H_INCLUDED
#define SB_LOOP_H_INCLUDED

#include "bus/peer.h"
#include "bus/discovery.h"

/*  Poll items the loop adds after the owner's: every link, its monitor,
    the beacon fd.  */
#define SB_LOOP_ITEMS (2 * SB_PEER_LINKS_MAX + 1)

/*  Runs after the poll with the owner's items (revents set), before the
    links are read.  0 to go on; -1 ends the turn there (the owner is
    stopping).  */
typedef int (sb_loop_items_fn) (zmq_pollitem_t *items, size_t count, void *arg);

typedef struct {
    sb_peer_t *peer;
    sb_discovery_t *discovery;      /* NULL: no beacons */
    /*  The owner's items, polled first: items [0 .. count), in an array
        with room for count + SB_LOOP_ITEMS.  NULL and 0: none.  */
    zmq_pollitem_t *items;
    size_t count;
    sb_loop_items_fn *on_items;     /* NULL: none */
    void *arg;
} sb_loop_t;

/*  One turn, polling until something is readable, the peer or the
    beacons need time, or `until` (zclock_mono ms; INT64_MAX: no deadline
    of the owner's).  Returns the number of replies, events and calls
    answered otherwise (timeouts, failover, a link removed by discovery),
    or -1 with errno: the poll failed (EINTR: a signal; ETERM: the
    context is gone) or on_items ended the turn (ECANCELED).  */
int sb_loop_turn (const sb_loop_t *loop, int64_t until);

/*  Turns until something was dispatched or timeout_ms passed (-1: until
    something is dispatched).  Returns the number dispatched, -1 if
    interrupted (a signal, or the context gone).  */
int sb_loop_wait (sb_peer_t *peer, sb_discovery_t *discovery, int timeout_ms);

#endif
