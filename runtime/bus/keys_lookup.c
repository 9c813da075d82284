/*  keys_lookup.c — the peer as its sealer's owner (sealer.h,
    sb_sealer_owner_t): it sends the sys.keys lookups the sealer asks
    for and hands their answers back, lets the calls that waited for a
    service's key go out, and hands requests that waited for their
    caller's certificate back to the worker.

    A lookup is an ordinary call to `sys.keys` (docs/protocol.md 7),
    {"service": S} or {"key": K}, under SB_SEALER_LOOKUP_MS.  When a
    broker knew no such service the sealer says so (SB_SEALER_ASK_AGAIN)
    and the lookup goes to the next broker, as calls do, until every
    live broker was asked once: one that has just started may not have
    heard of the service yet.

    Lookups in flight are listed here (`lookups`), each naming the
    sealer's own sb_sealer_lookup_t and the call's request id, so that a
    sealer replaced by sb_peer_set_identity has its lookups cancelled
    rather than answered into freed memory, and a peer destroyed with
    lookups outstanding leaks nothing.
*/
#include "internal.h"
#include "peer_private.h"

#include <czmq.h>
#include <string.h>

typedef struct {
    sb_peer_t *peer;
    sb_sealer_lookup_t *lookup;     /* the sealer's */
    uint64_t call_id;
    void *handle;                   /* in peer->lookups */
} s_lookup_t;

static void
s_lookup_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void s_answer (const void *data, size_t size, const sb_error_t *err, void *arg);

/*  Sends the sys.keys call for pending->lookup.  0, or -1 with err.  */
static int
s_send (sb_peer_t *self, s_lookup_t *pending, sb_error_t *err)
{
    const sb_sealer_lookup_t *lookup = pending->lookup;
    uint8_t body [16 + SB_NAME_MAX + SB_KEY_SIZE];
    size_t n = 0;
    body [n++] = 0x81;                              /* map of 1 */
    if (lookup->kind == SB_SEALER_LOOKUP_SERVICE) {
        size_t len = strnlen (lookup->service, SB_NAME_MAX);
        body [n++] = 0xa7;                          /* fixstr 7 */
        memcpy (body + n, "service", 7);
        n += 7;
        body [n++] = 0xd9;                          /* str 8 */
        body [n++] = (uint8_t) len;
        memcpy (body + n, lookup->service, len);
        n += len;
    }
    else {
        body [n++] = 0xa3;                          /* fixstr 3 */
        memcpy (body + n, "key", 3);
        n += 3;
        body [n++] = 0xc4;                          /* bin 8 */
        body [n++] = SB_KEY_SIZE;
        memcpy (body + n, lookup->key, SB_KEY_SIZE);
        n += SB_KEY_SIZE;
    }
    return sb_peer_call (self, "sys", "keys", body, n, SB_SEALER_LOOKUP_MS,
                         NULL, s_answer, pending, &pending->call_id, err);
}

static int
s_lookup (sb_sealer_lookup_t *lookup, void *arg, sb_error_t *err)
{
    sb_peer_t *self = arg;
    s_lookup_t *pending = calloc (1, sizeof *pending);
    if (!pending)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    pending->peer = self;
    pending->lookup = lookup;
    if (s_send (self, pending, err)) {
        free (pending);
        return -1;
    }
    pending->handle = zlistx_add_end (self->lookups, pending);
    return 0;
}

/*  The answer of a sys.keys call: to the sealer, which may want the
    next broker asked.  */
static void
s_answer (const void *data, size_t size, const sb_error_t *err, void *arg)
{
    s_lookup_t *pending = arg;
    sb_peer_t *self = pending->peer;
    sb_sealer_lookup_t *lookup = pending->lookup;
    bool last = (size_t) lookup->empty + 1 >= sb_peer_links_alive (self);
    zlistx_delete (self->lookups, pending->handle);
    if (sb_sealer_lookup_answer (self->sealer, lookup, data, size, err, last) == SB_SEALER_ASK_AGAIN) {
        lookup->empty++;
        sb_error_t again;
        if (s_lookup (lookup, self, &again))
            sb_sealer_lookup_answer (self->sealer, lookup, NULL, 0, &again, true);
    }
}

static void
s_keys_ready (const char *service, void *arg)
{
    sb__peer_keys_ready ((sb_peer_t *) arg, service);
}

static void
s_release (uint32_t link_id, const sb_header_t *h, zmq_msg_t *body, void *arg)
{
    sb_peer_t *self = arg;
    sb_link_t *link = sb_peer_link (self, link_id);
    if (link && self->worker_request)
        self->worker_request (link, h, body, self->worker_arg);
}

int
sb__peer_set_sealer (sb_peer_t *self, const sb_identity_t *identity, sb_error_t *err)
{
    sb__peer_drop_sealer (self);
    if (!identity)
        return 0;
    self->lookups = zlistx_new ();
    if (!self->lookups)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    zlistx_set_destructor (self->lookups, s_lookup_destroy);
    sb_sealer_owner_t owner = { s_lookup, s_keys_ready, s_release, self };
    self->sealer = sb_sealer_new (identity, &owner, err);
    return self->sealer ? 0 : -1;
}

void
sb__peer_drop_sealer (sb_peer_t *self)
{
    if (self->lookups)
        for (s_lookup_t *pending = zlistx_first (self->lookups); pending;
             pending = zlistx_next (self->lookups))
            sb_peer_cancel (self, pending->call_id);
    zlistx_destroy (&self->lookups);
    sb_sealer_destroy (&self->sealer);
}
