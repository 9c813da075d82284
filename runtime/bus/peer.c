/*  peer.c — a peer's links to brokers, and the loop that drives them.

    A peer is one class (peer.h) written in four files that share
    peer_private.h: this one (construction, links and their socket
    monitors, the trace context, the decoding zone, poll/handle/tick/
    wait), calls.c (the call table, deadlines, failover, unrouted,
    replies), events.c (subscriptions and events) and keys_lookup.c (the
    sys.keys lookups the sealer asks for).

    Links are an array in the order they were connected, each with the
    socket monitor that reports its connection dropping and whether it
    was alive when last looked at (`up`): sb__peer_check_links compares
    that with the link's state after every read and tick, and fails over
    the calls of a link that went from up to down.  Sends go round robin
    over the live links (sb__peer_pick_link).

    Work done on an answer or an event stays in its trace: the trace
    context (sb_peer_set_trace) is set around every callback, and fresh
    trace ids are drawn from a pool filled 32 at a time.
*/
#include "internal.h"
#include "peer_private.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

/*  Messages read from one link before looking at the others.  */
#define S_BATCH 256
/*  First chunk of a decoding zone: holds the objects of a body of a few
    hundred fields without another allocation.  */
#define S_ZONE_CHUNK 4096

static size_t
s_id_hash (const void *key)
{
    uint64_t id = *(const uint64_t *) key;
    return (size_t) (id ^ (id >> 29));
}

static int
s_id_compare (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void
s_sub_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void s_on_welcome (sb_link_t *link, void *arg);

sb_peer_t *
sb_peer_new (const char *endpoints, const char *name, sb_error_t *err)
{
    return sb_peer_new_secure (endpoints, name, NULL, err);
}

sb_peer_t *
sb_peer_new_secure (const char *endpoints, const char *name,
                    const sb_identity_t *identity, sb_error_t *err)
{
    if (!endpoints || !*endpoints) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no broker endpoint given");
        return NULL;
    }
    sb_peer_t *self = sb_peer_new_empty (name, err);
    if (!self)
        return NULL;
    if (sb_peer_set_identity (self, identity, err)) {
        sb_peer_destroy (&self);
        return NULL;
    }

    /*  Split the list on commas, skipping blanks around each endpoint.  */
    const char *p = endpoints;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn (p, ", ");
        if (len == 0)
            break;
        char endpoint [256];
        if (len >= sizeof endpoint) {
            sb_error_set (err, SB_E_BAD_REQUEST, "broker endpoint too long");
            sb_peer_destroy (&self);
            return NULL;
        }
        memcpy (endpoint, p, len);
        endpoint [len] = 0;
        if (sb_peer_connect (self, endpoint, err)) {
            sb_peer_destroy (&self);
            return NULL;
        }
        p += len;
    }
    if (self->nlinks == 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no broker endpoint given");
        sb_peer_destroy (&self);
    }
    return self;
}

sb_peer_t *
sb_peer_new_empty (const char *name, sb_error_t *err)
{
    if (sodium_init () < 0) {
        sb_error_set (err, SB_E_INTERNAL, "libsodium failed to initialise");
        return NULL;
    }
    if (!sb_name_valid (name, SB_NAME_MEMBER)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "bad peer name");
        return NULL;
    }
    sb_peer_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    strcpy (self->name, name);
    self->next_id = 1;
    self->next_link_id = 1;
    self->next_deadline = INT64_MAX;
    if (!msgpack_zone_init (&self->zone, S_ZONE_CHUNK)) {
        free (self);
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->calls = zhashx_new ();
    self->waiting = zlistx_new ();
    self->subs = zlistx_new ();
    self->idempotent = zhashx_new ();
    if (sb__peer_contracts_init (self)) {
        sb_peer_destroy (&self);
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    zhashx_set_key_hasher (self->calls, s_id_hash);
    zhashx_set_key_comparator (self->calls, s_id_compare);
    zhashx_set_key_duplicator (self->calls, NULL);
    zhashx_set_key_destructor (self->calls, NULL);
    zlistx_set_destructor (self->subs, s_sub_destroy);
    return self;
}

/*  Watches a link's connection: a socket monitor reports the connection
    dropping at once (a broker killed on this machine), where heartbeats
    take three intervals.  NULL if it cannot be set up; heartbeats still
    tell then.  */
static zsock_t *
s_monitor_new (sb_link_t *link)
{
    static int sequence;
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://sb-link-monitor-%d",
              __sync_fetch_and_add (&sequence, 1));
    if (zmq_socket_monitor (sb_link_handle (link), endpoint, ZMQ_EVENT_DISCONNECTED))
        return NULL;
    zsock_t *monitor = zsock_new (ZMQ_PAIR);
    if (monitor && zsock_connect (monitor, "%s", endpoint))
        zsock_destroy (&monitor);
    if (!monitor)
        zmq_socket_monitor (sb_link_handle (link), NULL, 0);
    return monitor;
}

static void
s_monitor_destroy (zsock_t **monitor_p, sb_link_t *link)
{
    if (*monitor_p) {
        zmq_socket_monitor (sb_link_handle (link), NULL, 0);
        zsock_destroy (monitor_p);
    }
}

/*  Reads the monitor's events (a bounded number); true if one says the
    connection dropped.  */
static bool
s_monitor_lost (zsock_t *monitor)
{
    bool lost = false;
    void *handle = zsock_resolve (monitor);
    for (int i = 0; i < 64; i++) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            break;
        }
        uint16_t event = 0;
        if (zmq_msg_size (&frame) >= sizeof event)
            memcpy (&event, zmq_msg_data (&frame), sizeof event);
        lost |= event == ZMQ_EVENT_DISCONNECTED;
        /*  The endpoint frame follows.  */
        while (zmq_msg_more (&frame)) {
            zmq_msg_close (&frame);
            zmq_msg_init (&frame);
            if (zmq_msg_recv (&frame, handle, 0) < 0)
                break;
        }
        zmq_msg_close (&frame);
    }
    return lost;
}

void
sb_peer_destroy (sb_peer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_peer_t *self = *self_p;
    for (size_t i = 0; i < self->nlinks; i++) {
        s_monitor_destroy (&self->monitors [i], self->links [i]);
        sb_link_destroy (&self->links [i]);
    }
    sb__peer_drop_sealer (self);
    zhashx_destroy (&self->idempotent);
    sb__peer_contracts_destroy (self);
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        sb__peer_call_free (self, call);
    zhashx_destroy (&self->calls);
    sb_call_t *spare;
    while ((spare = self->spares)) {
        self->spares = spare->next_spare;
        free (spare);
    }
    zlistx_destroy (&self->waiting);
    zlistx_destroy (&self->subs);
    msgpack_zone_destroy (&self->zone);
    free (self);
    *self_p = NULL;
}

void
sb_peer_set_worker (sb_peer_t *self, sb_link_welcome_fn *welcome,
                    sb_peer_request_fn *request, void *arg)
{
    self->worker_welcome = welcome;
    self->worker_request = request;
    self->worker_arg = arg;
}

int
sb_peer_set_identity (sb_peer_t *self, const sb_identity_t *identity, sb_error_t *err)
{
    self->identity = identity;
    return sb__peer_set_sealer (self, identity, err);
}

sb_sealer_t *
sb_peer__sealer (sb_peer_t *self)
{
    return self->sealer;
}

int
sb_peer_connect (sb_peer_t *self, const char *endpoint, sb_error_t *err)
{
    if (self->nlinks == SB_PEER_LINKS_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "more than %d brokers", SB_PEER_LINKS_MAX);
    sb_link_t *link = sb_link_new_secure (endpoint, self->name, self->next_link_id,
                                          self->identity, s_on_welcome, self, err);
    if (!link)
        return -1;
    self->next_link_id++;
    self->monitors [self->nlinks] = s_monitor_new (link);
    self->up [self->nlinks] = false;
    self->links [self->nlinks++] = link;
    return 0;
}

int
sb_peer_disconnect (sb_peer_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->nlinks; i++)
        if (streq (sb_link_endpoint (self->links [i]), endpoint)) {
            uint32_t id = sb_link_id (self->links [i]);
            char broker [SB_NAME_MAX + 1];
            snprintf (broker, sizeof broker, "%s", sb_link_broker (self->links [i]));
            s_monitor_destroy (&self->monitors [i], self->links [i]);
            sb_link_destroy (&self->links [i]);
            size_t after = self->nlinks - i - 1;
            memmove (&self->links [i], &self->links [i + 1], after * sizeof self->links [0]);
            memmove (&self->monitors [i], &self->monitors [i + 1], after * sizeof self->monitors [0]);
            memmove (&self->up [i], &self->up [i + 1], after * sizeof self->up [0]);
            self->nlinks--;
            sb__peer_failover (self, id, broker);
            return 0;
        }
    return -1;
}

sb_link_t *
sb_peer_link (sb_peer_t *self, uint32_t id)
{
    for (size_t i = 0; i < self->nlinks; i++)
        if (sb_link_id (self->links [i]) == id)
            return self->links [i];
    return NULL;
}

size_t
sb_peer_links (const sb_peer_t *self)
{
    return self->nlinks;
}

size_t
sb_peer_links_alive (const sb_peer_t *self)
{
    size_t alive = 0;
    for (size_t i = 0; i < self->nlinks; i++)
        alive += sb_link_alive (self->links [i]);
    return alive;
}

sb_link_t *
sb__peer_pick_link (sb_peer_t *self, size_t attempt)
{
    size_t alive_seen = 0;
    for (size_t i = 0; i < self->nlinks; i++) {
        sb_link_t *link = self->links [(self->next_link + i) % self->nlinks];
        if (sb_link_alive (link) && alive_seen++ == attempt)
            return link;
    }
    return NULL;
}

/*  --------------------------------------------------------------------
    The decoding zone (see sb__peer_zone_take).  */

msgpack_zone *
sb__peer_zone_take (sb_peer_t *self, msgpack_zone *spare)
{
    if (!self->zone_busy) {
        self->zone_busy = true;
        return &self->zone;
    }
    return msgpack_zone_init (spare, S_ZONE_CHUNK) ? spare : NULL;
}

void
sb__peer_zone_give (sb_peer_t *self, msgpack_zone *zone)
{
    if (zone == &self->zone) {
        msgpack_zone_clear (zone);
        self->zone_busy = false;
    }
    else
    if (zone)
        msgpack_zone_destroy (zone);
}

/*  --------------------------------------------------------------------
    Trace context.  */

void
sb_peer_set_trace (sb_peer_t *self, const uint8_t *trace)
{
    self->has_trace = trace != NULL;
    if (trace)
        memmove (self->trace, trace, sizeof self->trace);
}

bool
sb_peer_trace (const sb_peer_t *self, uint8_t *trace)
{
    if (self->has_trace && trace)
        memcpy (trace, self->trace, sizeof self->trace);
    return self->has_trace;
}

void
sb__peer_trace_for (sb_peer_t *self, uint8_t *trace)
{
    if (self->has_trace)
        memcpy (trace, self->trace, sizeof self->trace);
    else {
        /*  randombytes_buf is a getrandom(2) call: one per 32 ids rather
            than a syscall per call (trace ids are not secrets).  */
        if (self->trace_pool_left == 0) {
            randombytes_buf (self->trace_pool, sizeof self->trace_pool);
            self->trace_pool_left = sizeof self->trace_pool / sizeof self->trace;
        }
        self->trace_pool_left--;
        memcpy (trace, self->trace_pool + self->trace_pool_left * sizeof self->trace,
                sizeof self->trace);
    }
}

int
sb__peer_call_traced (sb_peer_t *peer, const char *trace,
                      const char *service, const char *method,
                      const void *body, size_t size, int timeout_ms,
                      sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                      uint64_t *id_p, sb_error_t *err)
{
    uint8_t given [SB_TRACE_SIZE], outer [SB_TRACE_SIZE];
    if (!trace)
        return sb_peer_call (peer, service, method, body, size, timeout_ms,
                             callback, raw, arg, id_p, err);
    if (sb_trace_parse (trace, given))
        return sb_error_set (err, SB_E_BAD_REQUEST,
                             "bad trace id '%.40s': want 32 hex digits, not all zero", trace);
    bool had_trace = sb_peer_trace (peer, outer);
    sb_peer_set_trace (peer, given);
    int rc = sb_peer_call (peer, service, method, body, size, timeout_ms,
                           callback, raw, arg, id_p, err);
    sb_peer_set_trace (peer, had_trace ? outer : NULL);
    return rc;
}

/*  --------------------------------------------------------------------
    Polling.  */

static void
s_on_welcome (sb_link_t *link, void *arg)
{
    sb_peer_t *self = arg;
    for (size_t i = 0; i < self->nlinks; i++)
        if (self->links [i] == link)
            self->up [i] = true;
    sb__peer_resubscribe (self, link);
    if (self->worker_welcome)
        self->worker_welcome (link, self->worker_arg);
    sb__peer_flush_waiting (self, zclock_mono ());
}

size_t
sb_peer_pollitems (sb_peer_t *self, zmq_pollitem_t *items, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nlinks && n < max; i++, n++)
        items [n] = (zmq_pollitem_t) { sb_link_handle (self->links [i]), 0, ZMQ_POLLIN, 0 };
    for (size_t i = 0; i < self->nlinks && n < max; i++)
        if (self->monitors [i])
            items [n++] = (zmq_pollitem_t) { zsock_resolve (self->monitors [i]), 0, ZMQ_POLLIN, 0 };
    return n;
}

static int
s_read_link (sb_peer_t *self, sb_link_t *link)
{
    int dispatched = 0;
    for (int i = 0; i < S_BATCH; i++) {
        sb_header_t h;
        zmq_msg_t body;
        zmq_msg_init (&body);
        int rc = sb_link_recv (link, &h, &body);
        if (rc == 1) {
            switch (h.command) {
                case SB_CMD_REPLY:
                case SB_CMD_ERROR:
                    dispatched += sb__peer_on_reply (self, &h, &body);
                    break;
                case SB_CMD_PUBLISH:
                    dispatched += sb__peer_on_event (self, &h, &body);
                    break;
                case SB_CMD_REQUEST:
                    if (self->worker_request)
                        self->worker_request (link, &h, &body, self->worker_arg);
                    break;
                default:
                    break;
            }
        }
        zmq_msg_close (&body);
        if (rc < 0)
            break;
    }
    return dispatched;
}

int
sb_peer_handle (sb_peer_t *self, const zmq_pollitem_t *items, size_t count)
{
    int dispatched = 0;
    for (size_t i = 0; i < count; i++) {
        if (!(items [i].revents & ZMQ_POLLIN))
            continue;
        for (size_t l = 0; l < self->nlinks; l++) {
            if (sb_link_handle (self->links [l]) == items [i].socket) {
                dispatched += s_read_link (self, self->links [l]);
                break;
            }
            if (self->monitors [l] && zsock_resolve (self->monitors [l]) == items [i].socket) {
                if (s_monitor_lost (self->monitors [l]))
                    sb_link_lost (self->links [l], zclock_mono ());
                break;
            }
        }
    }
    return dispatched + sb__peer_check_links (self);
}

int
sb_peer_timeout (sb_peer_t *self)
{
    int64_t now = zclock_mono ();
    int64_t next = self->next_deadline;
    for (size_t i = 0; i < self->nlinks; i++) {
        int64_t t = sb_link_next_tick (self->links [i]);
        if (t < next)
            next = t;
    }
    if (zlistx_size (self->waiting) && sb_peer_links_alive (self) && now + SB_PEER_RESEND_MS < next)
        next = now + SB_PEER_RESEND_MS;
    if (next <= now)
        return 0;
    return next - now > 60000 ? 60000 : (int) (next - now);
}

int
sb_peer_tick (sb_peer_t *self)
{
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < self->nlinks; i++)
        sb_link_tick (self->links [i], now);
    int failed_over = sb__peer_check_links (self);
    if (zlistx_size (self->waiting))
        sb__peer_flush_waiting (self, now);
    return failed_over + sb__peer_expire (self, now);
}

uint64_t
sb_peer_delivered (const sb_peer_t *self)
{
    return self->delivered;
}

int
sb_peer_wait (sb_peer_t *self, int timeout_ms)
{
    return sb_loop_wait (self, NULL, timeout_ms);
}
