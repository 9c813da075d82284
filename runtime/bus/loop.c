/*  loop.c — the one poll loop that drives a peer (loop.h).

    A turn builds its poll set each time (links come and go with
    discovery), after the owner's own items in the owner's array, so
    nothing is copied.  What a turn dispatched is counted so that a
    blocking caller wakes up when its call may have been answered: the
    replies and events read, the calls answered by the tick (deadlines,
    failover), and those answered while discovery removed a link, which
    the peer's delivered counter shows.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>

int
sb_loop_turn (const sb_loop_t *loop, int64_t until)
{
    zmq_pollitem_t own [SB_LOOP_ITEMS];
    zmq_pollitem_t *items = loop->items ? loop->items : own;
    size_t first_link = loop->items ? loop->count : 0;
    size_t n = first_link + sb_peer_pollitems (loop->peer, items + first_link, SB_LOOP_ITEMS - 1);
    int fd = loop->discovery ? sb_discovery_fd (loop->discovery) : -1;
    if (fd >= 0)
        items [n] = (zmq_pollitem_t) { NULL, fd, ZMQ_POLLIN, 0 };

    int64_t now = zclock_mono ();
    int64_t wait = sb_peer_timeout (loop->peer);
    int beacon_wait = loop->discovery ? sb_discovery_timeout (loop->discovery, now) : -1;
    if (beacon_wait >= 0 && beacon_wait < wait)
        wait = beacon_wait;
    if (until - now < wait)
        wait = until - now < 0 ? 0 : until - now;
    if (zmq_poll (items, (int) n + (fd >= 0), (long) wait) < 0) {
        errno = zmq_errno ();
        return -1;
    }
    if (loop->on_items && loop->on_items (items, first_link, loop->arg)) {
        errno = ECANCELED;
        return -1;
    }
    int dispatched = sb_peer_handle (loop->peer, items + first_link, n - first_link);
    if (loop->discovery) {
        /*  A broker that left takes its calls with it: those answered
            then (unavailable) count as dispatched too.  */
        uint64_t delivered = sb_peer_delivered (loop->peer);
        now = zclock_mono ();
        if ((fd >= 0 && (items [n].revents & ZMQ_POLLIN))
        ||  sb_discovery_timeout (loop->discovery, now) == 0)
            sb_discovery_handle (loop->discovery, now);
        dispatched += (int) (sb_peer_delivered (loop->peer) - delivered);
    }
    return dispatched + sb_peer_tick (loop->peer);
}

int
sb_loop_wait (sb_peer_t *peer, sb_discovery_t *discovery, int timeout_ms)
{
    int64_t end = timeout_ms >= 0 ? zclock_mono () + timeout_ms : INT64_MAX;
    sb_loop_t loop = { peer, discovery, NULL, 0, NULL, NULL };
    while (true) {
        int dispatched = sb_loop_turn (&loop, end);
        if (dispatched < 0)
            return -1;
        if (dispatched > 0 || zclock_mono () >= end)
            return dispatched;
    }
}
