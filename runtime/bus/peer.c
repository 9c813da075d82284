/*  peer.c — links to brokers, outstanding calls and subscriptions.

    Calls live in a hash keyed by request id.  Deadlines are checked
    lazily: the peer remembers the earliest deadline it has seen
    (`next_deadline`) and scans all calls only when that time comes,
    recomputing the minimum as it goes; with the few hundred calls a
    peer keeps in flight a scan costs microseconds, and a steady stream
    of answered calls costs nothing.

    Calls that could not be sent (no live broker, or its queue full) wait
    in FIFO order with their body and go out, with the time they have
    left, when a link is welcomed or on the next tick.

    Failover: each call remembers the link it went out on.  When a link
    dies (three silent intervals, BYE, the connection dropping as its
    socket monitor reports, or the link removed), s_check_links sees it
    go from up to down and s_failover handles its calls: an idempotent
    one (declared with sb_peer_set_idempotent) keeps its body and goes
    out again at once on another live link with SB_F_RETRY and the same
    request id, or waits for one, within its first deadline; the others
    are answered `unavailable`.  Whichever answer comes first is the
    one delivered: the call leaves the table then, and a later answer
    for its id finds nothing.

    Unrouted: a broker's own not_found (flag SB_F_UNROUTED) means no
    service saw the call, so with several links any call, idempotent or
    not, keeps its body and goes once to each other broker before the
    not_found is delivered: a broker that has just (re)started is found
    by callers and hosts at the same time, and hears of the services a
    moment after the first calls arrive.

    Sealing (sealer.h): with an identity, a call to any service but
    `sys` is sealed for the service's key.  The call waits (`key_wait`,
    in the table, not in `waiting`) until the sealer has the key, and
    keeps its plaintext body: s_send_call seals it afresh for each send,
    so a retry after failover carries a new nonce and is not taken for
    a replay.  s_on_reply opens the reply with the key and nonce of the
    last send; events are sealed for the cluster event key.

    Places kept for later work:
    - retries with backoff: s_on_reply sees `unavailable` for a call
      that could be re-sent after a pause;
    - circuit breakers: sb_peer_call is where a per-service breaker
      refuses a call at once while its service keeps failing.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

/*  Messages read from one link before looking at the others.  */
#define S_BATCH 256
/*  Retry pause for calls that wait while a broker is alive but its
    queue is full.  */
#define S_RESEND_MS 10
/*  First chunk of a decoding zone: holds the objects of a body of a few
    hundred fields without another allocation.  */
#define S_ZONE_CHUNK 4096
/*  Answered calls kept for reuse: enough for a few hundred in flight.  */
#define S_SPARE_MAX 512

typedef struct {
    uint64_t id;
    int64_t deadline;
    int timeout_ms;
    sb_reply_fn *callback;
    sb_peer_raw_fn *raw;
    void *arg;
    void *waiting;                  /* handle in self->waiting, or NULL once sent */
    zmq_msg_t body;                 /* kept while waiting */
    bool has_body;
    uint8_t trace [16];
    uint32_t flags;                 /* SB_F_IDEMPOTENT, SB_F_RETRY */
    uint32_t link_id;               /* link it went out on; 0 while waiting */
    uint32_t unrouted_link;         /* link whose broker knew no such service */
    int unrouted;                   /* brokers that answered that */
    bool body_given;                /* the body went to a link: no resend */
    bool seal;                      /* body sealed for seal_pk at each send */
    bool key_wait;                  /* waiting for the sealer to learn the key */
    uint8_t seal_pk [SB_KEY_SIZE];
    uint8_t nonce [SB_SEAL_NONCE_SIZE];     /* of the last send: the reply is bound to it */
    char service [SB_NAME_MAX + 1];
    char method [SB_NAME_MAX + 1];
    void *next_spare;
} s_call_t;

typedef struct {
    char prefix [SB_TOPIC_MAX + 1];
    char group [SB_NAME_MAX + 1];
    sb_event_fn *callback;
    void *arg;
} s_sub_t;

struct sb_peer {
    char name [SB_NAME_MAX + 1];
    sb_link_t *links [SB_PEER_LINKS_MAX];
    zsock_t *monitors [SB_PEER_LINKS_MAX];  /* per link, NULL if none */
    bool up [SB_PEER_LINKS_MAX];    /* per link: alive when last looked at */
    size_t nlinks;
    size_t next_link;               /* round robin */
    uint32_t next_link_id;
    uint64_t next_id;
    zhashx_t *calls;                /* &call->id -> s_call_t */
    zlistx_t *waiting;              /* s_call_t not sent yet, FIFO */
    zlistx_t *subs;                 /* s_sub_t, owned */
    int64_t next_deadline;
    uint64_t bad_bodies;
    zhashx_t *idempotent;           /* keys "service/method"; method "*" for all */
    uint64_t retries;
    uint64_t delivered;             /* calls answered, by any path: wait loops watch it */
    msgpack_zone zone;              /* decodes replies and events */
    bool zone_busy;                 /* a callback holds it */
    s_call_t *spares;               /* answered calls, for reuse */
    size_t nspares;
    sb_link_welcome_fn *worker_welcome;
    sb_peer_request_fn *worker_request;
    void *worker_arg;
    const sb_identity_t *identity;  /* borrowed; NULL: plaintext links */
    sb_sealer_t *sealer;            /* with an identity: end-to-end sealing */
    bool has_trace;                 /* trace context, see sb_peer_set_trace */
    uint8_t trace [16];
    uint8_t trace_pool [32 * 16];   /* fresh trace ids, drawn 32 at a time */
    size_t trace_pool_left;
};

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
    zhashx_set_key_hasher (self->calls, s_id_hash);
    zhashx_set_key_comparator (self->calls, s_id_compare);
    zhashx_set_key_duplicator (self->calls, NULL);
    zhashx_set_key_destructor (self->calls, NULL);
    zlistx_set_destructor (self->subs, s_sub_destroy);
    return self;
}

/*  A zeroed call, from the spares when there is one.  */
static s_call_t *
s_call_new (sb_peer_t *self)
{
    s_call_t *call = self->spares;
    if (!call)
        return calloc (1, sizeof (s_call_t));
    self->spares = call->next_spare;
    self->nspares--;
    memset (call, 0, sizeof *call);
    return call;
}

static void
s_call_free (sb_peer_t *self, s_call_t *call)
{
    if (call->has_body)
        zmq_msg_close (&call->body);
    if (self->nspares < S_SPARE_MAX) {
        call->next_spare = self->spares;
        self->spares = call;
        self->nspares++;
    }
    else
        free (call);
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
    zhashx_destroy (&self->idempotent);
    for (s_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        s_call_free (self, call);
    zhashx_destroy (&self->calls);
    s_call_t *spare;
    while ((spare = self->spares)) {
        self->spares = spare->next_spare;
        free (spare);
    }
    zlistx_destroy (&self->waiting);
    zlistx_destroy (&self->subs);
    msgpack_zone_destroy (&self->zone);
    sb_sealer_destroy (&self->sealer);
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
    sb_sealer_destroy (&self->sealer);
    if (identity && !(self->sealer = sb_sealer_new (identity, self, err)))
        return -1;
    return 0;
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

static int s_failover (sb_peer_t *self, uint32_t link_id, const char *broker);

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
            s_failover (self, id, broker);
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

int
sb_peer_set_idempotent (sb_peer_t *self, const char *service, const char *method)
{
    if (!sb_name_valid (service, SB_NAME_SERVICE)
    ||  !method || (strcmp (method, "*") != 0 && !sb_name_valid (method, SB_NAME_METHOD))) {
        errno = EINVAL;
        return -1;
    }
    char key [2 * SB_NAME_MAX + 2];
    snprintf (key, sizeof key, "%s/%s", service, method);
    if (!zhashx_lookup (self->idempotent, key))
        zhashx_insert (self->idempotent, key, self);
    return 0;
}

/*  Whether calls to service.method may be sent twice.  */
static bool
s_idempotent (sb_peer_t *self, const char *service, const char *method)
{
    if (zhashx_size (self->idempotent) == 0)
        return false;
    char key [2 * SB_NAME_MAX + 2];
    snprintf (key, sizeof key, "%s/%s", service, method);
    if (zhashx_lookup (self->idempotent, key))
        return true;
    snprintf (key, sizeof key, "%s/*", service);
    return zhashx_lookup (self->idempotent, key) != NULL;
}

uint64_t
sb_peer_retries (const sb_peer_t *self)
{
    return self->retries;
}

size_t
sb_peer_pending (const sb_peer_t *self)
{
    return zhashx_size (self->calls);
}

int
sb_peer_decode (const void *data, size_t size, msgpack_unpacked *unpacked, msgpack_object *obj)
{
    /*  The same decoder as sb_peer_decode_zone, into the unpacked's own
        zone, so that the object lives as long as `unpacked`.  */
    if (!unpacked->zone)
        unpacked->zone = msgpack_zone_new (MSGPACK_ZONE_CHUNK_SIZE);
    if (!unpacked->zone || sb_peer_decode_zone (data, size, unpacked->zone, obj))
        return -1;
    unpacked->data = *obj;
    return 0;
}

int
sb_peer_decode_zone (const void *data, size_t size, msgpack_zone *zone, msgpack_object *obj)
{
    if (size == 0) {
        memset (obj, 0, sizeof *obj);
        obj->type = MSGPACK_OBJECT_NIL;
        return 0;
    }
    if (size > SB_BODY_MAX_DEFAULT || sb_wire_check (data, size, SB_DEPTH_MAX))
        return -1;
    size_t offset = 0;
    if (msgpack_unpack (data, size, &offset, zone, obj) != MSGPACK_UNPACK_SUCCESS
    ||  offset != size)
        return -1;
    return 0;
}

/*  The peer's decoding zone, or `spare` (initialised here) when a
    callback that is still running holds the peer's: a callback may
    dispatch again (a blocking call made from an async callback).  */
static msgpack_zone *
s_zone_take (sb_peer_t *self, msgpack_zone *spare)
{
    if (!self->zone_busy) {
        self->zone_busy = true;
        return &self->zone;
    }
    return msgpack_zone_init (spare, S_ZONE_CHUNK) ? spare : NULL;
}

static void
s_zone_give (sb_peer_t *self, msgpack_zone *zone)
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

/*  The trace id of a new call or event: the context's, else a fresh one. */
static void
s_trace_for (sb_peer_t *self, uint8_t *trace)
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
    Calls.  */

/*  The next live link after the last one used, or NULL.  */
static sb_link_t *
s_pick_link (sb_peer_t *self, size_t attempt)
{
    size_t alive_seen = 0;
    for (size_t i = 0; i < self->nlinks; i++) {
        sb_link_t *link = self->links [(self->next_link + i) % self->nlinks];
        if (sb_link_alive (link) && alive_seen++ == attempt)
            return link;
    }
    return NULL;
}

/*  True to pass over the broker that answered this call unrouted, while
    another link remains to try.  */
static bool
s_skip_unrouted (const sb_peer_t *self, const s_call_t *call, sb_link_t *link, size_t attempt)
{
    return call->unrouted && sb_link_id (link) == call->unrouted_link
        && attempt + 1 < self->nlinks;
}

/*  s_send_call for a sealed call: the plaintext stays with the call
    until it has gone out (kept after, for an idempotent call's retry),
    and each send seals it afresh.  */
static int
s_send_sealed (sb_peer_t *self, s_call_t *call, sb_header_t *h)
{
    h->flags |= SB_F_SEALED;
    memcpy (h->key_id, sb_sealer_key_id (self->sealer), SB_KEY_SIZE);
    h->key_id_size = SB_KEY_SIZE;
    h->present |= SB_H_KEY_ID;
    char context [2 * SB_NAME_MAX + 2];
    size_t length = sb_sealer_context (call->service, call->method, context);
    for (size_t attempt = 0; attempt < self->nlinks; attempt++) {
        sb_link_t *link = s_pick_link (self, attempt);
        if (!link)
            break;
        if (s_skip_unrouted (self, call, link, attempt))
            continue;
        zmq_msg_t body;
        sb_error_t err;
        if (sb_sealer_seal (self->sealer, call->seal_pk, context, length,
                            call->has_body ? zmq_msg_data (&call->body) : NULL,
                            call->has_body ? zmq_msg_size (&call->body) : 0,
                            &body, call->nonce, &err))
            return -1;
        if (sb_link_send (link, h, &body) == 0) {
            self->next_link = (self->next_link + 1) % self->nlinks;
            call->link_id = sb_link_id (link);
            if (call->has_body && !(call->flags & SB_F_IDEMPOTENT) && self->nlinks < 2) {
                zmq_msg_close (&call->body);
                call->has_body = false;
                call->body_given = true;
            }
            return 0;
        }
        zmq_msg_close (&body);
    }
    return -1;
}

/*  Tries each live link once.  0 when sent.  An idempotent call sends a
    copy of its body (shared, not duplicated) and keeps it for a retry;
    the others give theirs to the link.  */
static int
s_send_call (sb_peer_t *self, s_call_t *call, int64_t now)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = call->id;
    h.flags = call->flags;
    h.present |= SB_H_REQUEST_ID | SB_H_TIMEOUT | SB_H_TRACE;
    strcpy (h.service, call->service);
    strcpy (h.method, call->method);
    h.present |= SB_H_SERVICE | SB_H_METHOD;
    int64_t left = call->deadline - now;
    h.timeout_ms = left < 1 ? 1 : (uint32_t) left;
    memcpy (h.trace, call->trace, 16);
    if (call->seal)
        return s_send_sealed (self, call, &h);
    for (size_t attempt = 0; attempt < self->nlinks; attempt++) {
        sb_link_t *link = s_pick_link (self, attempt);
        if (!link)
            break;
        if (s_skip_unrouted (self, call, link, attempt))
            continue;
        /*  With several brokers any call keeps its body: one that has
            just started may answer not_found (unrouted) and the call
            goes to another.  */
        bool keep = call->has_body && ((call->flags & SB_F_IDEMPOTENT) || self->nlinks > 1);
        zmq_msg_t copy;
        if (keep && (zmq_msg_init (&copy) || zmq_msg_copy (&copy, &call->body))) {
            zmq_msg_close (&copy);
            return -1;
        }
        zmq_msg_t *body = keep ? &copy : call->has_body ? &call->body : NULL;
        if (sb_link_send (link, &h, body) == 0) {
            self->next_link = (self->next_link + 1) % self->nlinks;
            call->link_id = sb_link_id (link);
            if (keep)
                zmq_msg_close (&copy);
            else
            if (call->has_body) {
                zmq_msg_close (&call->body);
                call->has_body = false;
                call->body_given = true;
            }
            return 0;
        }
        if (keep)
            zmq_msg_close (&copy);
    }
    return -1;
}

/*  Sends waiting calls in order until one cannot go.  */
static void
s_flush_waiting (sb_peer_t *self, int64_t now)
{
    s_call_t *call;
    while ((call = zlistx_first (self->waiting))) {
        if (s_send_call (self, call, now))
            break;
        zlistx_detach (self->waiting, NULL);
        call->waiting = NULL;
    }
}

int
sb_peer_call (sb_peer_t *self, const char *service, const char *method,
              const void *body, size_t size, int timeout_ms,
              sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
              uint64_t *id_p, sb_error_t *err)
{
    if (!sb_name_valid (service, SB_NAME_SERVICE))
        return sb_error_set (err, SB_E_BAD_REQUEST, "bad service name '%s'", service ? service : "");
    if (!sb_name_valid (method, SB_NAME_METHOD))
        return sb_error_set (err, SB_E_BAD_REQUEST, "bad method name '%s'", method ? method : "");
    if (size > SB_BODY_MAX_DEFAULT)
        return sb_error_set (err, SB_E_BAD_REQUEST, "request body of %zu bytes is too large", size);
    if (size > 0 && (!body || sb_wire_check (body, size, SB_DEPTH_MAX)))
        return sb_error_set (err, SB_E_BAD_REQUEST, "request body is not one valid MessagePack object");
    if (!callback == !raw)
        return sb_error_set (err, SB_E_BAD_REQUEST, "a call needs exactly one callback");
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    /*  Circuit breakers go here: refuse at once while `service` fails.  */
    s_call_t *call = s_call_new (self);
    if (!call)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    call->id = self->next_id++;
    call->timeout_ms = timeout_ms;
    int64_t now = zclock_mono ();
    call->deadline = now + timeout_ms;
    call->callback = callback;
    call->raw = raw;
    call->arg = arg;
    strcpy (call->service, service);
    strcpy (call->method, method);
    if (s_idempotent (self, service, method))
        call->flags = SB_F_IDEMPOTENT;
    s_trace_for (self, call->trace);
    if (size > 0) {
        if (zmq_msg_init_size (&call->body, size)) {
            s_call_free (self, call);
            return sb_error_set (err, SB_E_INTERNAL, "out of memory");
        }
        memcpy (zmq_msg_data (&call->body), body, size);
        call->has_body = true;
    }
    if (zhashx_insert (self->calls, &call->id, call)) {
        s_call_free (self, call);
        return sb_error_set (err, SB_E_INTERNAL, "request id in use");
    }
    /*  `sys` is the broker's own service: it must read its requests.  */
    call->seal = self->sealer && strcmp (service, "sys") != 0;
    if (call->seal && sb_sealer_service_key (self->sealer, service, call->seal_pk) == 0)
        call->key_wait = true;      /* goes out from sb_peer__keys_ready */
    else
    if (zlistx_size (self->waiting) > 0 || s_send_call (self, call, now) != 0)
        call->waiting = zlistx_add_end (self->waiting, call);
    if (call->deadline < self->next_deadline)
        self->next_deadline = call->deadline;
    if (id_p)
        *id_p = call->id;
    return 0;
}

/*  Takes a call out of every index; the caller then delivers and frees. */
static void
s_unlink_call (sb_peer_t *self, s_call_t *call)
{
    zhashx_delete (self->calls, &call->id);
    if (call->waiting) {
        zlistx_detach (self->waiting, call->waiting);
        call->waiting = NULL;
    }
}

void
sb_peer_cancel (sb_peer_t *self, uint64_t id)
{
    s_call_t *call = zhashx_lookup (self->calls, &id);
    if (call) {
        s_unlink_call (self, call);
        s_call_free (self, call);
    }
}

/*  Calls the call's callback once and frees it.  */
static void s_deliver (sb_peer_t *self, s_call_t *call, const void *data, size_t size,
                       const sb_error_t *err);

void
sb_peer_fail_all (sb_peer_t *self, const sb_error_t *err)
{
    /*  Ids first: a callback may make, answer or cancel calls.  */
    for (int round = 0; round < 4 && zhashx_size (self->calls) > 0; round++) {
        size_t count = zhashx_size (self->calls), n = 0;
        uint64_t *ids = malloc (count * sizeof *ids);
        if (!ids)
            return;
        for (s_call_t *call = zhashx_first (self->calls); call && n < count;
             call = zhashx_next (self->calls))
            ids [n++] = call->id;
        for (size_t i = 0; i < n; i++) {
            s_call_t *call = zhashx_lookup (self->calls, &ids [i]);
            if (call) {
                s_unlink_call (self, call);
                s_deliver (self, call, NULL, 0, err);
            }
        }
        free (ids);
    }
}

static void
s_deliver (sb_peer_t *self, s_call_t *call, const void *data, size_t size, const sb_error_t *err)
{
    self->delivered++;
    /*  Work done on an answer stays in the call's trace.  */
    uint8_t outer [16];
    bool had_trace = sb_peer_trace (self, outer);
    sb_peer_set_trace (self, call->trace);
    if (call->raw)
        call->raw (data, size, err, call->arg);
    else
    if (err)
        call->callback (NULL, err, call->arg);
    else {
        msgpack_zone spare;
        msgpack_zone *zone = s_zone_take (self, &spare);
        msgpack_object obj;
        if (!zone || sb_peer_decode_zone (data, size, zone, &obj)) {
            sb_error_t bad;
            if (zone)
                sb_error_set (&bad, SB_E_INTERNAL, "%s.%s replied with a body that is not valid MessagePack",
                              call->service, call->method);
            else
                sb_error_set (&bad, SB_E_INTERNAL, "out of memory decoding the reply of %s.%s",
                              call->service, call->method);
            call->callback (NULL, &bad, call->arg);
        }
        else
            call->callback (&obj, NULL, call->arg);
        s_zone_give (self, zone);
    }
    sb_peer_set_trace (self, had_trace ? outer : NULL);
    s_call_free (self, call);
}

static int
s_on_reply (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body)
{
    s_call_t *call = zhashx_lookup (self->calls, &h->request_id);
    if (!call)
        return 0;                   /* late: answered locally already */
    if (h->command == SB_CMD_ERROR && h->code == SB_E_NOT_FOUND && (h->flags & SB_F_UNROUTED)
    &&  !call->body_given && call->unrouted + 1 < (int) sb_peer_links_alive (self)) {
        /*  No service saw it: another broker may know the service (one
            just restarted has not heard from it yet).  Each broker once,
            within the call's deadline.  */
        call->unrouted++;
        call->unrouted_link = call->link_id;
        call->link_id = 0;
        if (s_send_call (self, call, zclock_mono ()) != 0)
            call->waiting = zlistx_add_end (self->waiting, call);
        return 0;
    }
    s_unlink_call (self, call);
    if (h->command == SB_CMD_ERROR) {
        /*  Retries go here: `unavailable` for an idempotent call may be
            re-sent on another live link instead of delivered.  */
        sb_error_t err;
        sb_code_t code = h->code >= 1 && h->code <= SB_E_CODE_MAX ? (sb_code_t) h->code
                                                                   : SB_E_INTERNAL;
        sb_error_set (&err, code, "%s", h->text [0] ? h->text : sb_code_name (code));
        s_deliver (self, call, NULL, 0, &err);
    }
    else
    if (call->seal) {
        /*  Opened with the key and nonce it was sealed for: the broker
            does not carry the replier's key id, and may not choose it.  */
        sb_error_t err;
        zmq_msg_t plain;
        if (sb_sealer_open_reply (self->sealer, h, body, call->seal_pk, call->nonce, &plain, &err))
            s_deliver (self, call, NULL, 0, &err);
        else {
            s_deliver (self, call, zmq_msg_data (&plain), zmq_msg_size (&plain), NULL);
            zmq_msg_close (&plain);
        }
    }
    else
    if (h->flags & SB_F_SEALED) {
        sb_error_t err;
        sb_error_set (&err, SB_E_INTERNAL, "sealed reply from %s.%s but this caller has no keys",
                      call->service, call->method);
        s_deliver (self, call, NULL, 0, &err);
    }
    else
        s_deliver (self, call, zmq_msg_data (body), zmq_msg_size (body), NULL);
    return 1;
}

/*  The sealer learnt the key of `service`, or failed to: the calls that
    waited for it go out, or are answered with the reason.  Ids are
    collected first: callbacks may make, answer or cancel calls.  */
void
sb_peer__keys_ready (sb_peer_t *self, const char *service)
{
    size_t count = 0;
    for (s_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        count += call->key_wait && streq (call->service, service);
    uint64_t *ids = count ? malloc (count * sizeof *ids) : NULL;
    size_t n = 0;
    for (s_call_t *call = zhashx_first (self->calls); call && ids; call = zhashx_next (self->calls))
        if (call->key_wait && streq (call->service, service))
            ids [n++] = call->id;
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < n; i++) {
        s_call_t *call = zhashx_lookup (self->calls, &ids [i]);
        if (!call || !call->key_wait)
            continue;
        call->key_wait = false;
        sb_code_t code;
        const char *why;
        if (sb_sealer_service_result (self->sealer, service, call->seal_pk, &code, &why) == 1) {
            if (zlistx_size (self->waiting) > 0 || s_send_call (self, call, now) != 0)
                call->waiting = zlistx_add_end (self->waiting, call);
            continue;
        }
        sb_error_t err;
        sb_error_set (&err, code, "%s", why);
        s_unlink_call (self, call);
        s_deliver (self, call, NULL, 0, &err);
    }
    free (ids);
}

void
sb_peer__request_again (sb_peer_t *self, uint32_t link_id, const sb_header_t *h, zmq_msg_t *body)
{
    sb_link_t *link = sb_peer_link (self, link_id);
    if (link && self->worker_request)
        self->worker_request (link, h, body, self->worker_arg);
}

/*  The calls that went out on a dead link: idempotent ones go out again
    (or wait for a live link) with the retry flag, the others are
    answered `unavailable`.  Ids are collected first: callbacks may make,
    answer or cancel calls.  Returns the number of calls answered, which
    the wait loops count as dispatched work (a blocking caller whose call
    was answered here must wake up).  */
static int
s_failover (sb_peer_t *self, uint32_t link_id, const char *broker)
{
    size_t count = 0;
    for (s_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        count += call->link_id == link_id && !call->waiting;
    if (count == 0)
        return 0;
    uint64_t *lost = malloc (count * sizeof *lost);
    size_t nlost = 0;
    int64_t now = zclock_mono ();
    for (s_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls)) {
        if (call->link_id != link_id || call->waiting)
            continue;
        call->link_id = 0;
        if (call->flags & SB_F_IDEMPOTENT) {
            call->flags |= SB_F_RETRY;
            self->retries++;
            if (s_send_call (self, call, now))
                call->waiting = zlistx_add_end (self->waiting, call);
        }
        else
        if (lost)
            lost [nlost++] = call->id;
    }
    int answered = 0;
    for (size_t i = 0; i < nlost; i++) {
        s_call_t *call = zhashx_lookup (self->calls, &lost [i]);
        if (!call)
            continue;
        s_unlink_call (self, call);
        answered++;
        sb_error_t err;
        sb_error_set (&err, SB_E_UNAVAILABLE, "broker %s was lost with %s.%s in flight "
                      "(not idempotent, so not retried)", broker [0] ? broker : "(unnamed)",
                      call->service, call->method);
        s_deliver (self, call, NULL, 0, &err);
    }
    free (lost);
    return answered;
}

/*  Fails over the calls of every link that died since the last look;
    returns the number of calls answered meanwhile.  */
static int
s_check_links (sb_peer_t *self)
{
    uint32_t dead [SB_PEER_LINKS_MAX];
    char names [SB_PEER_LINKS_MAX][SB_NAME_MAX + 1];
    size_t ndead = 0;
    for (size_t i = 0; i < self->nlinks; i++) {
        bool alive = sb_link_alive (self->links [i]);
        if (self->up [i] && !alive) {
            dead [ndead] = sb_link_id (self->links [i]);
            snprintf (names [ndead], sizeof names [0], "%s", sb_link_broker (self->links [i]));
            ndead++;
        }
        self->up [i] = alive;
    }
    int answered = 0;
    for (size_t i = 0; i < ndead; i++)
        answered += s_failover (self, dead [i], names [i]);
    return answered;
}

/*  --------------------------------------------------------------------
    Events.  */

static bool
s_valid_group (const char *group)
{
    return !group || sb_name_valid (group, SB_NAME_GROUP);
}

static void
s_send_subscribe (sb_link_t *link, const s_sub_t *sub)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_SUBSCRIBE);
    sb_header_set_topic (&h, sub->prefix);
    if (sub->group [0])
        sb_header_set_group (&h, sub->group);
    sb_link_send (link, &h, NULL);
}

int
sb_peer_subscribe (sb_peer_t *self, const char *prefix, const char *group,
                   sb_event_fn *callback, void *arg)
{
    if (!callback || !sb_name_valid (prefix, SB_NAME_TOPIC) || !s_valid_group (group)) {
        errno = EINVAL;
        return -1;
    }
    s_sub_t *sub = calloc (1, sizeof *sub);
    if (!sub)
        return -1;
    strcpy (sub->prefix, prefix);
    if (group)
        strcpy (sub->group, group);
    sub->callback = callback;
    sub->arg = arg;
    zlistx_add_end (self->subs, sub);
    for (size_t i = 0; i < self->nlinks; i++)
        if (sb_link_alive (self->links [i]))
            s_send_subscribe (self->links [i], sub);
    return 0;
}

int
sb_peer_publish (sb_peer_t *self, const char *topic, const void *body, size_t size)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_PUBLISH);
    if (sb_header_set_topic (&h, topic)
    ||  size > SB_BODY_MAX_DEFAULT
    ||  (size > 0 && (!body || sb_wire_check (body, size, SB_DEPTH_MAX)))) {
        errno = EINVAL;
        return -1;
    }
    s_trace_for (self, h.trace);
    h.present |= SB_H_TRACE;
    zmq_msg_t sealed;
    bool seal = self->sealer && sb_sealer_has_events (self->sealer);
    if (seal) {
        sb_error_t err;
        if (sb_sealer_seal_event (self->sealer, topic, body, size, &sealed, &err)) {
            errno = ENOMEM;
            return -1;
        }
        h.flags |= SB_F_SEALED;
        memcpy (h.key_id, sb_sealer_key_id (self->sealer), SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        h.present |= SB_H_KEY_ID;
        body = zmq_msg_data (&sealed);
        size = zmq_msg_size (&sealed);
    }
    int rc = -1;
    for (size_t attempt = 0; attempt < self->nlinks; attempt++) {
        sb_link_t *link = s_pick_link (self, attempt);
        if (!link)
            break;
        if (sb_link_send_bytes (link, &h, body, size) == 0) {
            self->next_link = (self->next_link + 1) % self->nlinks;
            rc = 0;
            break;
        }
    }
    if (seal)
        zmq_msg_close (&sealed);
    if (rc)
        errno = EAGAIN;
    return rc;
}

static int
s_on_event (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body)
{
    if (!(h->present & SB_H_TOPIC))
        return 0;
    msgpack_zone spare;
    msgpack_zone *zone = s_zone_take (self, &spare);
    msgpack_object obj;
    int dispatched = 0;
    /*  A sealed event is opened into `plain`; a refused one is counted
        and logged by the sealer and dropped.  */
    zmq_msg_t plain;
    zmq_msg_init (&plain);
    sb_error_t err;
    int opened = self->sealer ? sb_sealer_open_event (self->sealer, h, body, &plain, &err)
                              : (h->flags & SB_F_SEALED) ? -1 : 0;
    if (opened == 1)
        body = &plain;
    if (!zone || opened < 0
    ||  sb_peer_decode_zone (zmq_msg_data (body), zmq_msg_size (body), zone, &obj))
        self->bad_bodies++;
    else {
        /*  Work done on an event stays in the publisher's trace.  */
        uint8_t outer [16];
        bool had_trace = sb_peer_trace (self, outer);
        sb_peer_set_trace (self, (h->present & SB_H_TRACE) ? h->trace : NULL);
        bool grouped = (h->present & SB_H_GROUP) != 0;
        for (s_sub_t *sub = zlistx_first (self->subs); sub; sub = zlistx_next (self->subs)) {
            if (strncmp (h->topic, sub->prefix, strlen (sub->prefix)) != 0)
                continue;
            if (grouped ? strcmp (sub->group, h->group) != 0 : sub->group [0] != 0)
                continue;
            sub->callback (h->topic, &obj, sub->arg);
            dispatched++;
        }
        sb_peer_set_trace (self, had_trace ? outer : NULL);
    }
    s_zone_give (self, zone);
    zmq_msg_close (&plain);
    return dispatched;
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
    for (s_sub_t *sub = zlistx_first (self->subs); sub; sub = zlistx_next (self->subs))
        s_send_subscribe (link, sub);
    if (self->worker_welcome)
        self->worker_welcome (link, self->worker_arg);
    s_flush_waiting (self, zclock_mono ());
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
                    dispatched += s_on_reply (self, &h, &body);
                    break;
                case SB_CMD_PUBLISH:
                    dispatched += s_on_event (self, &h, &body);
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
    return dispatched + s_check_links (self);
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
    if (zlistx_size (self->waiting) && sb_peer_links_alive (self) && now + S_RESEND_MS < next)
        next = now + S_RESEND_MS;
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
    int failed_over = s_check_links (self);
    if (zlistx_size (self->waiting))
        s_flush_waiting (self, now);
    if (now < self->next_deadline)
        return failed_over;

    /*  Collect first, take them all out of the table, deliver after:
        callbacks may start new calls, or wait on the peer again (a
        blocking call made from an async callback), and that inner tick
        must not find, answer and free the calls still to be answered
        here.  */
    zlistx_t *expired = zlistx_new ();
    self->next_deadline = INT64_MAX;
    for (s_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls)) {
        if (call->deadline <= now)
            zlistx_add_end (expired, call);
        else
        if (call->deadline < self->next_deadline)
            self->next_deadline = call->deadline;
    }
    for (s_call_t *call = zlistx_first (expired); call; call = zlistx_next (expired))
        s_unlink_call (self, call);
    int answered = failed_over;
    s_call_t *call;
    while ((call = zlistx_detach (expired, NULL))) {
        sb_error_t err;
        sb_error_set (&err, SB_E_TIMEOUT, "no answer from %s.%s within %d ms",
                      call->service, call->method, call->timeout_ms);
        s_deliver (self, call, NULL, 0, &err);
        answered++;
    }
    zlistx_destroy (&expired);
    return answered;
}

uint64_t
sb_peer_delivered (const sb_peer_t *self)
{
    return self->delivered;
}

int
sb_peer_wait (sb_peer_t *self, int timeout_ms)
{
    int64_t end = timeout_ms >= 0 ? zclock_mono () + timeout_ms : INT64_MAX;
    while (true) {
        zmq_pollitem_t items [SB_PEER_LINKS_MAX];
        size_t n = sb_peer_pollitems (self, items, SB_PEER_LINKS_MAX);
        int64_t now = zclock_mono ();
        int64_t wait = sb_peer_timeout (self);
        if (end - now < wait)
            wait = end - now < 0 ? 0 : end - now;
        if (zmq_poll (items, (int) n, (long) wait) < 0 && zmq_errno () == EINTR)
            return -1;
        int dispatched = sb_peer_handle (self, items, n) + sb_peer_tick (self);
        if (dispatched > 0 || zclock_mono () >= end)
            return dispatched;
    }
}
