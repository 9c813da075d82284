/*  broker.c — the broker engine: one actor, one ROUTER socket.

    Everything here runs on the actor's thread, so nothing is locked.  The
    loop polls the ROUTER and the actor pipe, then drains up to a batch of
    messages with ZMQ_DONTWAIT, then expires deadlines and runs the
    heartbeat tick.  See docs/protocol.md for the behaviour; this comment
    is about how it is built.

    - Peers are found by routing id (its bytes, in a zhashx).  A peer
      that said HELLO (or was welcomed after READY, SUBSCRIBE, HEARTBEAT)
      gets heartbeats and is declared dead after 3 silent intervals.  A
      peer that only sends REQUEST or PUBLISH is "anonymous": it is
      forgotten when it has been silent for 3 intervals and has no request
      outstanding.
    - A worker is one (peer, service) pair with a credit (capacity).  A
      service keeps its workers in an array, a union table of method
      names (a worker's methods are a bit mask over that table) and a
      FIFO queue of waiting requests.
    - Requests live in a pool of fixed entries (chunks that never move,
      with a free list).  The id the broker gives a request is
      (generation << 32 | slot): looking up a REPLY is an array index and
      a generation compare, and a stale id (late, or forged) never matches
      a reused slot.  Each live request is in one list (its service's
      queue, or its worker's in-flight list), in its caller's list, and in
      a binary min-heap ordered by deadline.
    - A request whose deadline passes in flight is answered `timeout` but
      keeps its entry (state EXPIRED) so that the worker's credit stays
      taken until its late answer arrives; if no answer comes within a
      grace period (the default timeout) the credit is reclaimed.
    - Bodies are never decoded (READY and DIRECTORY aside, which are for
      the broker).  A body of at most SB_INLINE_MAX bytes travels inside
      the header frame: a request keeps the whole received frame (moved,
      not copied) and remembers where its body lies; each send builds one
      frame of the new header and the body bytes (one copy of at most
      4 KiB).  A larger body is a frame of its own, sent on as a
      zmq_msg_copy (reference-counted: no bytes copied).  Whatever is
      received small as a second frame goes out inline.  A request keeps
      its body until sent, an idempotent one until answered (re-dispatch).
    - Cluster: the actor embeds a beacon (runtime/bus/beacon.h) polled with
      the ROUTER.  Every broker it hears of gets a DEALER "link" from this
      broker: PEER first, HEARTBEAT when idle, DIRECTORY (our local
      services) when the directory changes and every 2 heartbeats.  What
      other brokers send over their links arrives on the ROUTER as from a
      peer flagged `broker`; its last DIRECTORY body is kept (validated)
      and listed by sys.services.  Requests are never forwarded: every
      service host connects to every broker (docs/protocol.md section 9).
    - Security: the ROUTER is a CURVE server (broker/zap).  A peer's
      certificate is looked up once (by the "X-Curve-Key" property of its
      first message) and again after a reload; REQUEST decisions are cached
      per peer in a small table keyed by (service, method), so the hot
      path costs a compare when allowed.
*/
#include "broker.h"
#include "wire/wire.h"
#include "bus/beacon.h"
#include "security/identity.h"
#include "zap.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BATCH_MAX 512                   /* messages drained per poll */
#define METHODS_MAX 64                  /* per service: worker method sets are 64-bit masks */
#define SUBS_MAX 1024                   /* subscriptions per peer */
#define REQUESTS_MAX (1u << 22)         /* live request entries in the whole broker */
#define POOL_CHUNK 1024
#define HWM 100000
#define ACL_CACHE 16                    /* per-peer cached call decisions */
#define DIRECTORY_MAX (1024 * 1024)     /* bytes of a DIRECTORY body kept */
#define DIRECTORY_SERVICES_MAX 4096     /* services in one DIRECTORY */
#define BROKERS_MAX 256                 /* cluster brokers linked to */

/*  Reasons a frame is dropped: the decoder's, then the broker's own.  */
enum {
    R_FRAMES = SB_WIRE_REASON_MAX,      /* not 1 or 2 frames */
    R_BAD_BODY,                         /* READY body not the documented map */
    R_MISSING_FIELD,                    /* a command without a field it needs */
    R_UNEXPECTED,                       /* a command a broker does not accept */
    R_RESERVED,                         /* READY for a reserved service name */
    R_LIMIT,                            /* past a per-peer or per-service limit */
    R_FOREIGN_REPLY,                    /* REPLY/ERROR for a request its sender does not hold */
    R_MAX
};

static const char *s_reason_names [R_MAX - SB_WIRE_REASON_MAX] = {
    "frames", "bad_body", "missing_field", "unexpected", "reserved", "limit", "foreign_reply"
};

typedef struct peer_s peer_t;
typedef struct worker_s worker_t;
typedef struct service_s service_t;
typedef struct req_s req_t;
typedef struct sub_s sub_t;
typedef struct group_s group_t;

enum { REQ_FREE, REQ_QUEUED, REQ_INFLIGHT, REQ_EXPIRED };

struct req_s {
    uint32_t slot;
    uint32_t gen;
    int state;
    req_t *next, *prev;             /* service queue, or worker in-flight list */
    req_t *cnext, *cprev;           /* caller's list */
    size_t heap_pos;                /* SIZE_MAX when not in the deadline heap */
    int64_t deadline;
    peer_t *caller;                 /* NULL once the caller is gone */
    uint64_t caller_id;             /* the caller's request_id */
    service_t *service;
    worker_t *worker;
    int method;                     /* index in service->methods */
    bool idempotent;
    bool with_body;                 /* the request came with a body */
    bool has_body;                  /* body holds it (queued, or idempotent copy) */
    zmq_msg_t body;                 /* the frame holding the body... */
    uint32_t body_offset;           /* ...at this offset (inline: in the header frame) */
    uint32_t body_size;
    sb_header_t header;             /* as received; re-encoded at dispatch */
};

typedef struct {
    req_t *head, *tail;
    size_t count;
} req_list_t;

/*  A received body: size bytes at data, held by frame (the body frame,
    or the header frame for an inline body; NULL for bytes of our own of
    at most SB_INLINE_MAX).  */
typedef struct {
    zmq_msg_t *frame;
    const uint8_t *data;
    size_t size;
} body_t;

struct worker_s {
    peer_t *peer;
    service_t *service;
    uint32_t capacity;
    uint32_t in_flight;
    uint32_t instance;
    uint64_t mask;                  /* methods offered, bits over service->methods */
    req_list_t inflight;
    size_t index;                   /* in service->workers */
    worker_t *peer_next;
};

typedef struct {
    char name [SB_NAME_MAX + 1];
    uint32_t flags;
} method_t;

struct service_s {
    uint64_t uid;                   /* unique for the broker's life (ACL cache key) */
    char name [SB_NAME_MAX + 1];
    char version [SB_NAME_MAX + 1];
    worker_t **workers;
    size_t nworkers, walloc;
    method_t methods [METHODS_MAX];
    size_t nmethods;
    uint64_t mask;                  /* union of the workers' masks */
    req_list_t queue;
    size_t rr;                      /* rotates ties between equally loaded workers */
};

struct group_s {
    char name [SB_NAME_MAX + 1];
    sub_t **members;
    size_t n, alloc;
    size_t rr;
};

struct sub_s {
    peer_t *peer;
    char prefix [SB_TOPIC_MAX + 1];
    size_t len;
    group_t *group;                 /* NULL for broadcast */
    size_t index;                   /* in the broadcast array or group members */
    sub_t *peer_next;
};

/*  Another broker's last DIRECTORY (docs/protocol.md section 9).  */
typedef struct {
    char name [SB_NAME_MAX + 1];
    char id [2 * SB_BEACON_ID_SIZE + 1];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t *body;                  /* validated msgpack map */
    size_t size;
    size_t nservices;
} remote_t;

typedef struct {
    uint64_t key;                   /* service uid << 8 | method + 1; 0: empty */
    bool allowed;
} acl_entry_t;

struct peer_s {
    uint8_t key [256];              /* the routing id, its length first (s_peer_key) */
    uint8_t id [255];
    size_t id_size;
    char name [SB_NAME_MAX + 1];
    bool welcomed;
    bool doomed;                    /* unreachable or dead: reaped after the batch */
    int64_t last_heard;
    int64_t last_sent;
    worker_t *workers;
    sub_t *subs;
    size_t nsubs;
    req_t *calls;                   /* requests it made that are still live */
    uint64_t event_seq;             /* last event delivered by broadcast */
    bool broker;                    /* a broker of the cluster: it sent PEER */
    remote_t *dir;                  /* its last DIRECTORY */
    uint32_t acl_epoch;             /* certificate looked up at this epoch; 0: never */
    sb_cert_t *cert;                /* NULL: no valid certificate, all is forbidden */
    bool call_any;                  /* the certificate may call '*' */
    acl_entry_t acl [ACL_CACHE];
};

/*  A broker of the cluster heard through beacons, and our link to it.  */
typedef struct {
    uint8_t id [SB_BEACON_ID_SIZE];
    char idhex [2 * SB_BEACON_ID_SIZE + 1];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t key [SB_BEACON_KEY_SIZE];
    char name [SB_NAME_MAX + 1];    /* from its PEER answer; "" until then */
    zsock_t *link;                  /* DEALER to it; NULL if we cannot speak to it */
    int64_t link_sent;
} cbroker_t;

typedef struct {
    uint64_t requests, replies, timeouts, late_replies, orphaned_replies;
    uint64_t handshakes_failed;     /* refused by libzmq before ZAP (secure only) */
    uint64_t events, dropped_events, unreachable, send_failures;
    uint64_t errors [SB_E_CODE_MAX + 1];
    uint64_t bad [R_MAX];
    uint64_t forbidden;
    uint64_t directories;           /* DIRECTORY messages accepted */
} stats_t;

typedef struct {
    sb_broker_config_t config;
    char name [SB_NAME_MAX + 1];
    char bind [256];
    char cluster [SB_NAME_MAX + 1];
    char beacon [128];
    /*  Security (NULL when insecure), owned by sb_broker_t.  */
    sb_identity_t *identity;
    sb_zap_t *zap;
    sb_revocation_t *revoked;
    sb_cert_verifier_t verifier;    /* beacons: authority + revocation list */
    /*  Filled by the actor before it signals.  */
    int rc;
    char endpoint [256];
    char error [SB_ERROR_TEXT_MAX];
} args_t;

struct sb_broker {
    zactor_t *actor;
    args_t args;
};

typedef struct {
    args_t *args;
    zsock_t *pipe;
    zsock_t *router;
    void *sock;                     /* the router's libzmq handle */
    zsock_t *monitor;               /* the router's failed handshakes (secure only) */
    int64_t now, started, next_tick;
    int hb;
    bool stop;
    zhashx_t *peers;                /* key -> peer_t */
    zhashx_t *services;             /* name -> service_t */
    zhashx_t *groups;               /* name -> group_t */
    sub_t **bcast;
    size_t nbcast, bcast_alloc;
    uint64_t event_seq;
    size_t nworkers;
    /*  Request pool and deadline heap.  */
    req_t **chunks;
    size_t nchunks;
    req_t *free_list;
    size_t live;
    req_t **heap;
    size_t heap_size, heap_alloc;
    bool doomed;                    /* some peer waits to be reaped */
    stats_t stats;
    uint8_t hbuf [SB_HEADER_MAX];
    msgpack_sbuffer sbuf;
    zmq_msg_t frames [2];
    /*  Cluster.  */
    uint8_t id [SB_BEACON_ID_SIZE];
    char idhex [2 * SB_BEACON_ID_SIZE + 1];
    char announce [SB_BEACON_ENDPOINT_MAX + 1];
    sb_beacon_t *beacon;
    int64_t beacon_due;             /* when the beacon needs a tick or expiry */
    cbroker_t **brokers;
    size_t nbrokers, balloc;
    bool dir_dirty;
    int64_t next_dir, last_dir;
    msgpack_sbuffer dbuf;
    zmq_pollitem_t *items;
    cbroker_t **owners;             /* the link of each poll item */
    size_t items_alloc;
    /*  Security.  */
    bool secure;
    uint32_t acl_epoch;
    uint64_t service_uid;
} engine_t;

/*  --------------------------------------------------------------------
    Small helpers: lists, growing arrays.  */

static void
s_list_push_back (req_list_t *l, req_t *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->count++;
}

static void
s_list_push_front (req_list_t *l, req_t *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head)
        l->head->prev = r;
    else
        l->tail = r;
    l->head = r;
    l->count++;
}

static void
s_list_remove (req_list_t *l, req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->next = r->prev = NULL;
    l->count--;
}

static void
s_caller_link (peer_t *p, req_t *r)
{
    r->caller = p;
    r->cprev = NULL;
    r->cnext = p->calls;
    if (p->calls)
        p->calls->cprev = r;
    p->calls = r;
}

static void
s_caller_unlink (req_t *r)
{
    if (!r->caller)
        return;
    if (r->cprev)
        r->cprev->cnext = r->cnext;
    else
        r->caller->calls = r->cnext;
    if (r->cnext)
        r->cnext->cprev = r->cprev;
    r->cnext = r->cprev = NULL;
    r->caller = NULL;
}

/*  Makes room for one more pointer in *array; 0 or -1 (out of memory).  */
static int
s_grow (void ***array, size_t count, size_t *alloc)
{
    if (count < *alloc)
        return 0;
    size_t n = *alloc ? *alloc * 2 : 8;
    void **a = realloc (*array, n * sizeof (void *));
    if (!a)
        return -1;
    *array = a;
    *alloc = n;
    return 0;
}

/*  --------------------------------------------------------------------
    Deadline heap (min-heap of requests by deadline).  */

static void
s_heap_set (engine_t *self, size_t pos, req_t *r)
{
    self->heap [pos] = r;
    r->heap_pos = pos;
}

static void
s_heap_up (engine_t *self, size_t pos)
{
    req_t *r = self->heap [pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (self->heap [parent]->deadline <= r->deadline)
            break;
        s_heap_set (self, pos, self->heap [parent]);
        pos = parent;
    }
    s_heap_set (self, pos, r);
}

static void
s_heap_down (engine_t *self, size_t pos)
{
    req_t *r = self->heap [pos];
    size_t n = self->heap_size;
    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= n)
            break;
        if (child + 1 < n && self->heap [child + 1]->deadline < self->heap [child]->deadline)
            child++;
        if (self->heap [child]->deadline >= r->deadline)
            break;
        s_heap_set (self, pos, self->heap [child]);
        pos = child;
    }
    s_heap_set (self, pos, r);
}

static int
s_heap_push (engine_t *self, req_t *r)
{
    if (s_grow ((void ***) &self->heap, self->heap_size, &self->heap_alloc))
        return -1;
    self->heap [self->heap_size] = r;
    r->heap_pos = self->heap_size++;
    s_heap_up (self, r->heap_pos);
    return 0;
}

static void
s_heap_remove (engine_t *self, req_t *r)
{
    size_t pos = r->heap_pos;
    if (pos == SIZE_MAX)
        return;
    r->heap_pos = SIZE_MAX;
    req_t *last = self->heap [--self->heap_size];
    if (pos == self->heap_size)
        return;
    s_heap_set (self, pos, last);
    if (pos > 0 && self->heap [(pos - 1) / 2]->deadline > last->deadline)
        s_heap_up (self, pos);
    else
        s_heap_down (self, pos);
}

/*  --------------------------------------------------------------------
    Request pool.  */

static req_t *
s_req_new (engine_t *self)
{
    if (!self->free_list) {
        size_t total = self->nchunks * POOL_CHUNK;
        if (total >= REQUESTS_MAX)
            return NULL;
        req_t **chunks = realloc (self->chunks, (self->nchunks + 1) * sizeof (req_t *));
        if (!chunks)
            return NULL;
        self->chunks = chunks;
        req_t *chunk = calloc (POOL_CHUNK, sizeof (req_t));
        if (!chunk)
            return NULL;
        self->chunks [self->nchunks++] = chunk;
        for (size_t i = POOL_CHUNK; i-- > 0;) {
            chunk [i].slot = (uint32_t) (total + i);
            chunk [i].gen = 1;
            chunk [i].next = self->free_list;
            self->free_list = &chunk [i];
        }
    }
    req_t *r = self->free_list;
    self->free_list = r->next;
    r->next = r->prev = r->cnext = r->cprev = NULL;
    r->heap_pos = SIZE_MAX;
    r->caller = NULL;
    r->worker = NULL;
    r->service = NULL;
    r->has_body = false;
    r->with_body = false;
    r->state = REQ_QUEUED;
    self->live++;
    return r;
}

static uint64_t
s_req_id (const req_t *r)
{
    return ((uint64_t) r->gen << 32) | r->slot;
}

static req_t *
s_req_lookup (engine_t *self, uint64_t id)
{
    uint64_t slot = id & 0xffffffffu;
    uint32_t gen = (uint32_t) (id >> 32);
    if (slot >= self->nchunks * POOL_CHUNK)
        return NULL;
    req_t *r = &self->chunks [slot / POOL_CHUNK][slot % POOL_CHUNK];
    return r->state != REQ_FREE && r->gen == gen ? r : NULL;
}

/*  Frees the entry: unlinks it from its caller and the heap (the caller
    must already have taken it off its queue or in-flight list).  */
static void
s_req_free (engine_t *self, req_t *r)
{
    s_caller_unlink (r);
    s_heap_remove (self, r);
    if (r->has_body)
        zmq_msg_close (&r->body);
    r->has_body = false;
    r->state = REQ_FREE;
    r->gen = r->gen + 1 ? r->gen + 1 : 1;
    r->next = self->free_list;
    self->free_list = r;
    self->live--;
}

/*  --------------------------------------------------------------------
    Sending.  */

static void
s_doom (engine_t *self, peer_t *peer)
{
    peer->doomed = true;
    self->doomed = true;
}

/*  Sends the frames of a message to peer, after its routing id: 0 when
    sent (the frames are consumed), or -1 when the peer is unreachable (it
    is then doomed) or its send queue is full (the frames are untouched). */
static int
s_send_frames (engine_t *self, peer_t *peer, zmq_msg_t *frames, int nframes)
{
    if (zmq_send (self->sock, peer->id, peer->id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno == EHOSTUNREACH) {
            self->stats.unreachable++;
            s_doom (self, peer);
        }
        else
            self->stats.send_failures++;
        return -1;
    }
    /*  Once the routing id is accepted the rest of the message is too.  */
    for (int i = 0; i < nframes; i++)
        zmq_msg_send (&frames [i], self->sock, i + 1 < nframes ? ZMQ_SNDMORE : 0);
    peer->last_sent = self->now;
    return 0;
}

/*  Sends header (+ body) to peer.  The body is only read: a small one is
    copied into the header frame, a large frame goes out as a reference-
    counted copy.  0 when sent, or -1 when the peer is unreachable (it is
    then doomed) or its send queue is full.  */
static int
s_send (engine_t *self, peer_t *peer, const sb_header_t *h, const body_t *body)
{
    if (peer->doomed)
        return -1;
    if (body && body->size == 0)
        body = NULL;
    /*  The whole message is built before the routing id goes: once that is
        accepted the rest must follow.  */
    zmq_msg_t frames [2];
    int nframes = 1;
    size_t inline_size = body && body->size <= SB_INLINE_MAX ? body->size : 0;
    size_t n = sb_header_encode_inline (h, inline_size, self->hbuf);
    if (zmq_msg_init_size (&frames [0], n + inline_size))
        return -1;
    uint8_t *data = zmq_msg_data (&frames [0]);
    memcpy (data, self->hbuf, n);
    if (inline_size)
        memcpy (data + n, body->data, inline_size);
    else
    if (body) {
        zmq_msg_init (&frames [1]);
        zmq_msg_copy (&frames [1], body->frame);
        nframes = 2;
    }
    if (s_send_frames (self, peer, frames, nframes)) {
        for (int i = 0; i < nframes; i++)
            zmq_msg_close (&frames [i]);
        return -1;
    }
    return 0;
}

static void
s_send_simple (engine_t *self, peer_t *peer, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_WELCOME) {
        sb_header_set_name (&h, self->args->name);
        h.heartbeat_ms = (uint32_t) self->hb;
    }
    s_send (self, peer, &h, NULL);
}

/*  Answers a caller's request with an error (unless it asked for no reply). */
static void
s_send_error (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
              sb_code_t code, const char *fmt, ...)
{
    self->stats.errors [code]++;
    if (!caller || (req->flags & SB_F_NO_REPLY))
        return;
    sb_header_t h;
    sb_header_init (&h, SB_CMD_ERROR);
    h.request_id = request_id;
    h.present |= SB_H_REQUEST_ID;
    h.code = code;
    /*  not_found is only ever this broker's own answer, before any
        dispatch: the caller's runtime may try another broker (a broker
        that has just started may not have heard from the service yet).  */
    if (code == SB_E_NOT_FOUND)
        h.flags = SB_F_UNROUTED;
    if (req->present & SB_H_SERVICE)
        sb_header_set_service (&h, req->service);
    if (req->present & SB_H_TRACE) {
        memcpy (h.trace, req->trace, sizeof h.trace);
        h.present |= SB_H_TRACE;
    }
    char text [SB_TEXT_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    sb_header_set_text (&h, text);
    s_send (self, caller, &h, NULL);
}

/*  Answers a live request with an error and frees it (the caller must
    have taken it off its queue or in-flight list).  */
static void
s_req_fail (engine_t *self, req_t *r, sb_code_t code, const char *text)
{
    s_send_error (self, r->caller, &r->header, r->caller_id, code, "%s", text);
    s_req_free (self, r);
}

/*  --------------------------------------------------------------------
    Services and dispatch.  */

static service_t *
s_service_lookup (engine_t *self, const char *name)
{
    return (service_t *) zhashx_lookup (self->services, name);
}

static int
s_method_index (const service_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (!strcmp (s->methods [i].name, name))
            return (int) i;
    return -1;
}

/*  The least-loaded worker offering `method` with a free credit, or NULL.
    Load compares in_flight/capacity by cross-multiplication; ties rotate. */
static worker_t *
s_pick_worker (service_t *s, int method)
{
    worker_t *best = NULL;
    uint64_t bit = (uint64_t) 1 << method;
    size_t n = s->nworkers;
    for (size_t k = 0; k < n; k++) {
        worker_t *w = s->workers [(s->rr + k) % n];
        if (w->in_flight >= w->capacity || !(w->mask & bit) || w->peer->doomed)
            continue;
        if (!best || (uint64_t) w->in_flight * best->capacity
                   < (uint64_t) best->in_flight * w->capacity)
            best = w;
    }
    s->rr++;
    return best;
}

/*  Sends a request (state QUEUED, off any list) to worker w.  0, or -1 when
    the worker could not take it (the request is untouched).  */
static int
s_dispatch_to (engine_t *self, req_t *r, worker_t *w)
{
    /*  The stored header is rewritten in place (the caller's id is kept in
        caller_id); a re-dispatch rewrites it again.  */
    sb_header_t *h = &r->header;
    h->request_id = s_req_id (r);
    h->present |= SB_H_REQUEST_ID;
    int64_t left = r->deadline - self->now;
    h->timeout_ms = (uint32_t) (left > 0 ? left : 1);
    h->present |= SB_H_TIMEOUT;
    if (r->idempotent)
        h->flags |= SB_F_IDEMPOTENT;
    h->present &= ~(SB_H_GROUP | SB_H_TOPIC | SB_H_NAME | SB_H_CODE | SB_H_CAPACITY);
    h->capacity = h->code = h->heartbeat_ms = h->instance = 0;
    h->text [0] = 0;

    body_t body = { &r->body, NULL, r->body_size };
    if (r->has_body)
        body.data = (const uint8_t *) zmq_msg_data (&r->body) + r->body_offset;
    if (s_send (self, w->peer, h, r->has_body ? &body : NULL))
        return -1;
    if (r->has_body && !r->idempotent) {
        zmq_msg_close (&r->body);
        r->has_body = false;
    }
    r->state = REQ_INFLIGHT;
    r->worker = w;
    s_list_push_back (&w->inflight, r);
    w->in_flight++;
    return 0;
}

/*  True when the request can still be sent (again): it has no body, or
    the body is still held.  */
static bool
s_req_sendable (const req_t *r)
{
    return !r->with_body || r->has_body;
}

/*  Sends queued requests to workers with free credit, in queue order.  */
static void
s_service_dispatch (engine_t *self, service_t *s)
{
    while (s->queue.head) {
        req_t *r = s->queue.head;
        worker_t *w = s_pick_worker (s, r->method);
        if (!w)
            break;
        s_list_remove (&s->queue, r);
        if (s_dispatch_to (self, r, w) == 0)
            continue;
        if (s_req_sendable (r))
            s_list_push_front (&s->queue, r);
        else
            s_req_fail (self, r, SB_E_UNAVAILABLE, "worker unreachable");
        if (!w->peer->doomed)
            break;              /* its send queue is full: try again later */
    }
}

static void
s_service_recompute (service_t *s)
{
    s->mask = 0;
    for (size_t i = 0; i < s->nworkers; i++)
        s->mask |= s->workers [i]->mask;
}

/*  Forgets a service that has no worker left: its queue is answered
    `unavailable`.  */
static void
s_service_destroy (engine_t *self, service_t *s)
{
    while (s->queue.head) {
        req_t *r = s->queue.head;
        s_list_remove (&s->queue, r);
        s_req_fail (self, r, SB_E_UNAVAILABLE, "service lost its last worker");
    }
    zhashx_delete (self->services, s->name);
    free (s->workers);
    free (s);
}

/*  Removes a worker (its peer died, left, or is unreachable): in-flight
    idempotent requests go back to the front of the queue in their
    original order; the others are answered `unavailable`.  */
static void
s_worker_remove (engine_t *self, worker_t *w)
{
    service_t *s = w->service;
    while (w->inflight.tail) {
        req_t *r = w->inflight.tail;
        s_list_remove (&w->inflight, r);
        r->worker = NULL;
        if (r->state == REQ_EXPIRED)
            s_req_free (self, r);
        else
        if (r->idempotent && s_req_sendable (r)) {
            r->state = REQ_QUEUED;
            s_list_push_front (&s->queue, r);
        }
        else
            s_req_fail (self, r, SB_E_UNAVAILABLE, "worker died with the request");
    }
    s->workers [w->index] = s->workers [--s->nworkers];
    s->workers [w->index]->index = w->index;
    self->nworkers--;
    free (w);
    self->dir_dirty = true;
    s_service_recompute (s);
    if (s->nworkers == 0)
        s_service_destroy (self, s);
    else
        s_service_dispatch (self, s);
}

/*  --------------------------------------------------------------------
    Subscriptions.  */

static void
s_sub_remove (engine_t *self, sub_t *sub)
{
    if (sub->group) {
        group_t *g = sub->group;
        g->members [sub->index] = g->members [--g->n];
        g->members [sub->index]->index = sub->index;
        if (g->n == 0) {
            zhashx_delete (self->groups, g->name);
            free (g->members);
            free (g);
        }
    }
    else {
        self->bcast [sub->index] = self->bcast [--self->nbcast];
        self->bcast [sub->index]->index = sub->index;
    }
    free (sub);
}

/*  --------------------------------------------------------------------
    Peers.  */

/*  The peers table is keyed by routing id bytes, length first: one
    lookup per message, so no hex and no strings (FNV-1a, memcmp).  */
static void
s_peer_key (uint8_t *key, const uint8_t *id, size_t size)
{
    key [0] = (uint8_t) size;
    memcpy (key + 1, id, size);
}

static size_t
s_peer_key_hash (const void *key)
{
    const uint8_t *k = key;
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i <= k [0]; i++)
        hash = (hash ^ k [i]) * 16777619u;
    return hash;
}

static int
s_peer_key_compare (const void *a, const void *b)
{
    const uint8_t *x = a, *y = b;
    return x [0] != y [0] ? 1 : memcmp (x + 1, y + 1, x [0]);
}

static void
s_remote_free (remote_t **remote_p)
{
    if (*remote_p) {
        free ((*remote_p)->body);
        free (*remote_p);
        *remote_p = NULL;
    }
}

static peer_t *
s_peer_new (engine_t *self, const uint8_t *key, const uint8_t *id, size_t size)
{
    peer_t *p = calloc (1, sizeof *p);
    if (!p)
        return NULL;
    memcpy (p->key, key, 1 + (size_t) key [0]);
    memcpy (p->id, id, size);
    p->id_size = size;
    p->last_heard = p->last_sent = self->now;
    zhashx_insert (self->peers, p->key, p);
    return p;
}

/*  Forgets a peer: its workers (section 7.6), subscriptions, and its own
    requests (queued ones are dropped; in-flight ones lose their caller, so
    their answers are dropped when they come).  */
static void
s_peer_destroy (engine_t *self, peer_t *p)
{
    while (p->workers) {
        worker_t *w = p->workers;
        p->workers = w->peer_next;
        s_worker_remove (self, w);
    }
    while (p->subs) {
        sub_t *sub = p->subs;
        p->subs = sub->peer_next;
        s_sub_remove (self, sub);
    }
    while (p->calls) {
        req_t *r = p->calls;
        s_caller_unlink (r);
        if (r->state == REQ_QUEUED) {
            s_list_remove (&r->service->queue, r);
            s_req_free (self, r);
        }
    }
    s_remote_free (&p->dir);
    free (p->cert);
    zhashx_delete (self->peers, p->key);
    free (p);
}

/*  Destroys every doomed peer.  */
static void
s_reap (engine_t *self)
{
    if (!self->doomed)
        return;
    self->doomed = false;
    zlistx_t *dead = zlistx_new ();
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->doomed)
            zlistx_add_end (dead, p);
    for (peer_t *p = zlistx_first (dead); p; p = zlistx_next (dead))
        s_peer_destroy (self, p);
    zlistx_destroy (&dead);
}

/*  --------------------------------------------------------------------
    Commands.  */

static void
s_bad (engine_t *self, int reason)
{
    self->stats.bad [reason]++;
}

/*  Registers the peer as a session member and answers WELCOME.  */
static void
s_welcome (engine_t *self, peer_t *p, const sb_header_t *h)
{
    p->welcomed = true;
    if (h->present & SB_H_NAME)
        strcpy (p->name, h->name);
    s_send_simple (self, p, SB_CMD_WELCOME);
}

/*  --------------------------------------------------------------------
    Access control (secure brokers only; docs/security.md).  */

/*  Looks the peer's certificate up, once per reload epoch, by the CURVE
    key the ZAP handler attached to the message being handled (and checks
    its User-Id against the certificate's name).  No certificate: the peer
    may do nothing that is checked.  */
static void
s_acl_refresh (engine_t *self, peer_t *p)
{
    if (p->acl_epoch == self->acl_epoch)
        return;
    p->acl_epoch = self->acl_epoch;
    memset (p->acl, 0, sizeof p->acl);
    p->call_any = false;
    const char *hex = zmq_msg_gets (&self->frames [0], SB_ZAP_KEY_PROPERTY);
    const char *user = zmq_msg_gets (&self->frames [0], "User-Id");
    uint8_t key [SB_KEY_SIZE];
    bool have_key = hex && strlen (hex) == 2 * SB_KEY_SIZE
                 && sodium_hex2bin (key, sizeof key, hex, 2 * SB_KEY_SIZE, NULL, NULL, NULL) == 0;
    if (!p->cert)
        p->cert = malloc (sizeof (sb_cert_t));
    sb_error_t err;
    int rc = -1;
    if (p->cert && have_key)
        rc = sb_zap_lookup_key (self->args->zap, key, p->cert, &err);
    if (rc == 0 && user && strcmp (user, p->cert->name))
        rc = -1;
    if (rc) {
        free (p->cert);
        p->cert = NULL;
        return;
    }
    for (size_t i = 0; i < p->cert->call_count; i++)
        if (!strcmp (p->cert->call [i], "*"))
            p->call_any = true;
}

static bool
s_may_offer (engine_t *self, peer_t *p, const char *service)
{
    s_acl_refresh (self, p);
    return p->cert && sb_cert_may_offer (p->cert, service);
}

/*  May the peer call service.method?  s (NULL for `sys` or a service
    that does not exist) and method key the per-peer cache.  */
static bool
s_may_call (engine_t *self, peer_t *p, const service_t *s, int method, const sb_header_t *h)
{
    s_acl_refresh (self, p);
    if (!p->cert)
        return false;
    if (p->call_any)
        return true;
    acl_entry_t *entry = NULL;
    uint64_t key = 0;
    if (s) {
        key = s->uid << 8 | (uint64_t) (method + 1);
        entry = &p->acl [(s->uid * 67 + (uint64_t) method) % ACL_CACHE];
        if (entry->key == key)
            return entry->allowed;
    }
    char full [2 * SB_NAME_MAX + 2];
    snprintf (full, sizeof full, "%s.%s", h->service, h->method);
    bool allowed = sb_cert_may_call (p->cert, full);
    if (entry) {
        entry->key = key;
        entry->allowed = allowed;
    }
    return allowed;
}

/*  Answers a REQUEST the caller may not make.  */
static void
s_forbid_call (engine_t *self, peer_t *p, const sb_header_t *h)
{
    self->stats.forbidden++;
    s_send_error (self, p, h, h->request_id, SB_E_FORBIDDEN, "member '%s' may not call '%s.%s'",
                  p->cert ? p->cert->name : "(no valid certificate)", h->service, h->method);
}

/*  Parses a READY body into methods of service s; fills *mask.  The body
    was pre-scanned by sb_wire_check.  0 or -1.  */
static int
s_parse_ready (service_t *s, const msgpack_object *o, uint64_t *mask, char *version)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return -1;
    *mask = 0;
    const msgpack_object *methods = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr [i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        const msgpack_object_str *k = &kv->key.via.str;
        if (k->size == 7 && !memcmp (k->ptr, "version", 7)) {
            if (kv->val.type != MSGPACK_OBJECT_STR || kv->val.via.str.size > SB_NAME_MAX)
                return -1;
            memcpy (version, kv->val.via.str.ptr, kv->val.via.str.size);
            version [kv->val.via.str.size] = 0;
        }
        else
        if (k->size == 7 && !memcmp (k->ptr, "methods", 7))
            methods = &kv->val;
    }
    if (!methods || methods->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    /*  Validate every entry before touching the service's table.  */
    for (uint32_t i = 0; i < methods->via.array.size; i++) {
        const msgpack_object *m = &methods->via.array.ptr [i];
        if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size < 1
        ||  m->via.array.ptr [0].type != MSGPACK_OBJECT_STR
        ||  m->via.array.ptr [0].via.str.size > SB_NAME_MAX)
            return -1;
        if (m->via.array.size > 1 && m->via.array.ptr [1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return -1;
        char name [SB_NAME_MAX + 1];
        memcpy (name, m->via.array.ptr [0].via.str.ptr, m->via.array.ptr [0].via.str.size);
        name [m->via.array.ptr [0].via.str.size] = 0;
        if (!sb_wire_valid_name (name, SB_NAME_MAX))
            return -1;
    }
    for (uint32_t i = 0; i < methods->via.array.size; i++) {
        const msgpack_object *m = &methods->via.array.ptr [i];
        char name [SB_NAME_MAX + 1];
        memcpy (name, m->via.array.ptr [0].via.str.ptr, m->via.array.ptr [0].via.str.size);
        name [m->via.array.ptr [0].via.str.size] = 0;
        uint32_t flags = m->via.array.size > 1 ? (uint32_t) m->via.array.ptr [1].via.u64 : 0;
        int index = s_method_index (s, name);
        if (index < 0) {
            if (s->nmethods >= METHODS_MAX)
                return -1;
            index = (int) s->nmethods++;
            strcpy (s->methods [index].name, name);
        }
        s->methods [index].flags = flags;
        *mask |= (uint64_t) 1 << index;
    }
    return 0;
}

static void
s_on_ready (engine_t *self, peer_t *p, const sb_header_t *h, const body_t *body)
{
    if (!(h->present & SB_H_SERVICE) || !(h->present & SB_H_CAPACITY) || !body) {
        s_bad (self, R_MISSING_FIELD);
        return;
    }
    if (!strncmp (h->service, "sys", 3)) {
        s_bad (self, R_RESERVED);
        return;
    }
    if (self->secure && !s_may_offer (self, p, h->service)) {
        self->stats.forbidden++;
        self->stats.errors [SB_E_FORBIDDEN]++;
        sb_header_t e;
        sb_header_init (&e, SB_CMD_ERROR);
        e.code = SB_E_FORBIDDEN;
        e.present |= SB_H_CODE;
        sb_header_set_service (&e, h->service);
        char text [SB_TEXT_MAX + 1];
        snprintf (text, sizeof text, "member '%s' may not offer '%s'",
                  p->cert ? p->cert->name : "(no valid certificate)", h->service);
        sb_header_set_text (&e, text);
        s_send (self, p, &e, NULL);
        return;
    }
    const char *data = (const char *) body->data;
    size_t size = body->size;
    if (sb_wire_check (data, size, SB_DEPTH_MAX)) {
        s_bad (self, R_BAD_BODY);
        return;
    }
    service_t *s = s_service_lookup (self, h->service);
    bool created = false;
    if (!s) {
        s = calloc (1, sizeof *s);
        if (!s)
            return;
        strcpy (s->name, h->service);
        s->uid = ++self->service_uid;
        zhashx_insert (self->services, s->name, s);
        created = true;
    }
    worker_t *w = p->workers;
    while (w && w->service != s)
        w = w->peer_next;

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    uint64_t mask = 0;
    char version [SB_NAME_MAX + 1] = "";
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) == MSGPACK_UNPACK_SUCCESS)
        rc = s_parse_ready (s, &unpacked.data, &mask, version);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && !w) {
        w = calloc (1, sizeof *w);
        if (!w || s_grow ((void ***) &s->workers, s->nworkers, &s->walloc)) {
            free (w);
            rc = -1;
        }
    }
    if (rc) {
        s_bad (self, R_BAD_BODY);
        if (created) {
            zhashx_delete (self->services, s->name);
            free (s->workers);
            free (s);
        }
        return;
    }
    if (!w->service) {
        w->peer = p;
        w->service = s;
        w->index = s->nworkers;
        s->workers [s->nworkers++] = w;
        w->peer_next = p->workers;
        p->workers = w;
        self->nworkers++;
    }
    w->capacity = h->capacity;
    w->instance = h->instance;
    w->mask = mask;
    if (version [0])
        strcpy (s->version, version);
    s_service_recompute (s);
    self->dir_dirty = true;
    s_service_dispatch (self, s);
}

static void s_on_sys (engine_t *self, peer_t *p, const sb_header_t *h, const body_t *body);

static void
s_on_request (engine_t *self, peer_t *p, sb_header_t *h, const body_t *body)
{
    self->stats.requests++;
    if (!(h->present & SB_H_REQUEST_ID)) {
        s_bad (self, R_MISSING_FIELD);
        return;
    }
    if (!(h->present & SB_H_SERVICE) || !(h->present & SB_H_METHOD)) {
        s_bad (self, R_MISSING_FIELD);
        s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST, "REQUEST needs service and method");
        return;
    }
    if (!strcmp (h->service, "sys")) {
        /*  Certificates are public and every member needs them to seal
            (docs/security.md 5.1): sys.keys is open to all admitted.  */
        if (self->secure && strcmp (h->method, "keys") && !s_may_call (self, p, NULL, 0, h))
            s_forbid_call (self, p, h);
        else
            s_on_sys (self, p, h, body);
        return;
    }
    service_t *s = s_service_lookup (self, h->service);
    if (!s) {
        if (self->secure && !s_may_call (self, p, NULL, 0, h))
            s_forbid_call (self, p, h);
        else
            s_send_error (self, p, h, h->request_id, SB_E_NOT_FOUND, "no service '%s'", h->service);
        return;
    }
    int method = s_method_index (s, h->method);
    if (method < 0 || !(s->mask & ((uint64_t) 1 << method))) {
        if (self->secure && !s_may_call (self, p, NULL, 0, h))
            s_forbid_call (self, p, h);
        else
            s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                          "service '%s' has no method '%s'", h->service, h->method);
        return;
    }
    if (self->secure && !s_may_call (self, p, s, method, h)) {
        s_forbid_call (self, p, h);
        return;
    }
    worker_t *w = s->queue.head ? NULL : s_pick_worker (s, method);
    if (!w && s->queue.count >= self->args->config.queue_max) {
        s_send_error (self, p, h, h->request_id, SB_E_OVERLOADED,
                      "queue of '%s' is full", h->service);
        return;
    }
    req_t *r = s_req_new (self);
    if (!r) {
        s_send_error (self, p, h, h->request_id, SB_E_OVERLOADED, "broker is full");
        return;
    }
    r->header = *h;
    r->header.body = NULL;          /* it points into the frame */
    r->caller_id = h->request_id;
    r->service = s;
    r->method = method;
    r->idempotent = (h->flags & SB_F_IDEMPOTENT) || (s->methods [method].flags & SB_F_IDEMPOTENT);
    uint32_t timeout = h->timeout_ms ? h->timeout_ms : (uint32_t) self->args->config.default_timeout_ms;
    r->deadline = self->now + timeout;
    if (body) {
        /*  Keep the frame that holds it (moved, not copied); the offset
            survives the move, a pointer would not (small frames live
            inside the zmq_msg_t itself).  */
        r->with_body = r->has_body = true;
        r->body_offset = (uint32_t) (body->data - (const uint8_t *) zmq_msg_data (body->frame));
        r->body_size = (uint32_t) body->size;
        zmq_msg_init (&r->body);
        zmq_msg_move (&r->body, body->frame);
    }
    s_caller_link (p, r);
    if (s_heap_push (self, r)) {
        s_req_fail (self, r, SB_E_OVERLOADED, "broker is full");
        return;
    }
    if (w && s_dispatch_to (self, r, w) == 0)
        return;
    if (!s_req_sendable (r))
        s_req_fail (self, r, SB_E_UNAVAILABLE, "worker unreachable");
    else
        s_list_push_back (&s->queue, r);
}

/*  Flags a worker's answer never passes on: the request-only ones, and
    unrouted (only the broker may say a request reached no service).  */
#define S_NOT_FROM_WORKERS (SB_F_IDEMPOTENT | SB_F_NO_REPLY | SB_F_RETRY | SB_F_UNROUTED)

/*  Forwards a REPLY whose header frame already says what the caller must
    get, but for the request id: the frame itself goes on, its id value
    overwritten in place with the caller's (as a uint64, a width any id
    may use).  The busiest path then encodes nothing and builds no frame.
    That holds when the whole message is that one frame, its map is
    version, command, request_id (as a uint64), and at most flags without
    S_NOT_FROM_WORKERS, trace and an inline body, each once.  Returns
    1 when it does not hold (the caller re-encodes), else what the send
    returned (0, or -1 as s_send_frames).  */
static int
s_forward_reply (engine_t *self, peer_t *caller, const sb_header_t *h, const body_t *body,
                 uint64_t caller_id)
{
    zmq_msg_t *frame = &self->frames [0];
    const uint32_t allowed = (1u << SB_K_VERSION) | (1u << SB_K_COMMAND) | SB_H_REQUEST_ID
                           | (1u << SB_K_FLAGS) | SB_H_TRACE | SB_H_BODY;
    if ((body && body->frame != frame) || (h->present & ~allowed) || (h->flags & S_NOT_FROM_WORKERS))
        return 1;
    uint8_t *data = zmq_msg_data (frame);
    size_t size = zmq_msg_size (frame), at = h->request_id_at;
    if ((data [0] & 0xf0) != 0x80 || (data [0] & 0x0f) != (unsigned) __builtin_popcount (h->present)
    ||  at == 0 || at + 9 > size || data [at] != 0xcf)
        return 1;
    if (caller->doomed)
        return -1;
    for (int i = 0; i < 8; i++)
        data [at + 1 + i] = (uint8_t) (caller_id >> (56 - 8 * i));
    return s_send_frames (self, caller, frame, 1);
}

/*  REPLY or ERROR from a worker.  */
static void
s_on_answer (engine_t *self, peer_t *p, sb_header_t *h, const body_t *body)
{
    req_t *r = (h->present & SB_H_REQUEST_ID) ? s_req_lookup (self, h->request_id) : NULL;
    if (!r) {
        self->stats.late_replies++;
        return;
    }
    if (r->state == REQ_QUEUED || r->worker->peer != p) {
        s_bad (self, R_FOREIGN_REPLY);
        return;
    }
    worker_t *w = r->worker;
    s_list_remove (&w->inflight, r);
    w->in_flight--;
    if (r->state == REQ_EXPIRED) {
        self->stats.late_replies++;
        s_req_free (self, r);
    }
    else
    if (!r->caller) {
        self->stats.orphaned_replies++;
        s_req_free (self, r);
    }
    else
    if (h->command == SB_CMD_REPLY && !(r->header.flags & SB_F_NO_REPLY)
    &&  s_forward_reply (self, r->caller, h, body, r->caller_id) <= 0) {
        self->stats.replies++;      /* sent, or counted as a send failure */
        s_req_free (self, r);
    }
    else {
        sb_header_t out;
        sb_header_init (&out, h->command);
        out.request_id = r->caller_id;
        out.present |= SB_H_REQUEST_ID;
        out.flags = h->flags & ~(uint32_t) S_NOT_FROM_WORKERS;
        if (h->present & SB_H_TRACE) {
            memcpy (out.trace, h->trace, sizeof out.trace);
            out.present |= SB_H_TRACE;
        }
        if (h->command == SB_CMD_ERROR) {
            out.code = h->code >= 1 && h->code <= SB_E_CODE_MAX ? h->code : SB_E_INTERNAL;
            out.present |= SB_H_CODE;
            strcpy (out.text, h->text);
            sb_header_set_service (&out, r->service->name);
            self->stats.errors [out.code]++;
            body = NULL;
        }
        else
            self->stats.replies++;
        if (!(r->header.flags & SB_F_NO_REPLY))
            s_send (self, r->caller, &out, body);
        s_req_free (self, r);
    }
    s_service_dispatch (self, w->service);
}

static void
s_on_subscribe (engine_t *self, peer_t *p, const sb_header_t *h, bool subscribe)
{
    if (!(h->present & SB_H_TOPIC)) {
        s_bad (self, R_MISSING_FIELD);
        return;
    }
    const char *group = (h->present & SB_H_GROUP) ? h->group : NULL;
    sub_t **link = &p->subs;
    while (*link) {
        sub_t *sub = *link;
        bool same_group = group ? (sub->group && !strcmp (sub->group->name, group)) : !sub->group;
        if (same_group && !strcmp (sub->prefix, h->topic))
            break;
        link = &sub->peer_next;
    }
    if (!subscribe) {
        if (*link) {
            sub_t *sub = *link;
            *link = sub->peer_next;
            p->nsubs--;
            s_sub_remove (self, sub);
        }
        return;
    }
    if (*link)
        return;                 /* already subscribed: re-announcements are harmless */
    if (p->nsubs >= SUBS_MAX) {
        s_bad (self, R_LIMIT);
        return;
    }
    sub_t *sub = calloc (1, sizeof *sub);
    if (!sub)
        return;
    sub->peer = p;
    strcpy (sub->prefix, h->topic);
    sub->len = strlen (sub->prefix);
    if (group) {
        group_t *g = zhashx_lookup (self->groups, group);
        if (!g) {
            g = calloc (1, sizeof *g);
            if (!g) {
                free (sub);
                return;
            }
            strcpy (g->name, group);
            zhashx_insert (self->groups, g->name, g);
        }
        if (s_grow ((void ***) &g->members, g->n, &g->alloc)) {
            if (g->n == 0) {
                zhashx_delete (self->groups, g->name);
                free (g);
            }
            free (sub);
            return;
        }
        sub->group = g;
        sub->index = g->n;
        g->members [g->n++] = sub;
    }
    else {
        if (s_grow ((void ***) &self->bcast, self->nbcast, &self->bcast_alloc)) {
            free (sub);
            return;
        }
        sub->index = self->nbcast;
        self->bcast [self->nbcast++] = sub;
    }
    sub->peer_next = p->subs;
    p->subs = sub;
    p->nsubs++;
}

static bool
s_matches (const sub_t *sub, const char *topic)
{
    return !strncmp (topic, sub->prefix, sub->len);
}

static void
s_on_publish (engine_t *self, const sb_header_t *h, const body_t *body)
{
    if (!(h->present & SB_H_TOPIC)) {
        s_bad (self, R_MISSING_FIELD);
        return;
    }
    self->stats.events++;
    sb_header_t out;
    sb_header_init (&out, SB_CMD_PUBLISH);
    sb_header_set_topic (&out, h->topic);
    out.flags = h->flags;
    memcpy (out.trace, h->trace, sizeof out.trace);
    memcpy (out.span, h->span, sizeof out.span);
    memcpy (out.key_id, h->key_id, sizeof out.key_id);
    out.key_id_size = h->key_id_size;
    out.present |= h->present & (SB_H_TRACE | SB_H_SPAN | SB_H_KEY_ID);
    out.hops = h->hops;

    size_t delivered = 0;
    uint64_t seq = ++self->event_seq;
    for (size_t i = 0; i < self->nbcast; i++) {
        sub_t *sub = self->bcast [i];
        if (sub->peer->event_seq == seq || !s_matches (sub, h->topic))
            continue;
        sub->peer->event_seq = seq;
        s_send (self, sub->peer, &out, body);
        delivered++;
    }
    for (group_t *g = zhashx_first (self->groups); g; g = zhashx_next (self->groups)) {
        for (size_t k = 0; k < g->n; k++) {
            size_t index = (g->rr + k) % g->n;
            sub_t *sub = g->members [index];
            if (!s_matches (sub, h->topic) || sub->peer->doomed)
                continue;
            g->rr = index + 1;
            sb_header_set_group (&out, g->name);
            s_send (self, sub->peer, &out, body);
            delivered++;
            break;
        }
    }
    if (!delivered)
        self->stats.dropped_events++;
}

/*  --------------------------------------------------------------------
    The built-in `sys` service (protocol section 10).  */

static void
s_pack_cstr (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body (pk, s, strlen (s));
}

static void
s_pack_counter (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_cstr (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static void
s_sys_ping (engine_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 3);
    s_pack_cstr (pk, "pong");
    msgpack_pack_true (pk);
    s_pack_cstr (pk, "broker");
    s_pack_cstr (pk, self->args->name);
    s_pack_counter (pk, "uptime_ms", (uint64_t) (self->now - self->started));
}

/*  One local service as listed by sys.services and DIRECTORY.  */
static void
s_pack_service (engine_t *self, msgpack_packer *pk, const service_t *s)
{
    uint64_t capacity = 0, in_flight = 0;
    for (size_t i = 0; i < s->nworkers; i++) {
        capacity += s->workers [i]->capacity;
        in_flight += s->workers [i]->in_flight;
    }
    msgpack_pack_map (pk, 8);
    s_pack_cstr (pk, "name");
    s_pack_cstr (pk, s->name);
    s_pack_cstr (pk, "version");
    s_pack_cstr (pk, s->version);
    s_pack_counter (pk, "instances", s->nworkers);
    s_pack_counter (pk, "capacity", capacity);
    s_pack_counter (pk, "in_flight", in_flight);
    s_pack_counter (pk, "queued", s->queue.count);
    s_pack_cstr (pk, "methods");
    size_t n = 0;
    for (size_t i = 0; i < s->nmethods; i++)
        n += (s->mask >> i) & 1;
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < s->nmethods; i++)
        if ((s->mask >> i) & 1)
            s_pack_cstr (pk, s->methods [i].name);
    s_pack_cstr (pk, "broker");
    s_pack_cstr (pk, self->args->name);
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && !memcmp (key->via.str.ptr, name, len);
}

static const msgpack_object *
s_map_get (const msgpack_object *map, const char *name)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (s_key_is (&map->via.map.ptr [i].key, name))
            return &map->via.map.ptr [i].val;
    return NULL;
}

/*  Copies a str object into out (size bytes with the NUL); 0 or -1.  */
static int
s_str_copy (const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return -1;
    memcpy (out, o->via.str.ptr, o->via.str.size);
    out [o->via.str.size] = 0;
    return 0;
}

/*  The services of another broker's DIRECTORY, each marked with its
    broker's name.  */
static void
s_pack_remote (msgpack_packer *pk, const remote_t *r)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    if (msgpack_unpack_next (&unpacked, (const char *) r->body, r->size, &offset)
        == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *services = s_map_get (&unpacked.data, "services");
        for (uint32_t i = 0; i < r->nservices; i++) {
            const msgpack_object *entry = &services->via.array.ptr [i];
            uint32_t keep = 0;
            for (uint32_t k = 0; k < entry->via.map.size; k++)
                keep += !s_key_is (&entry->via.map.ptr [k].key, "broker");
            msgpack_pack_map (pk, keep + 1);
            for (uint32_t k = 0; k < entry->via.map.size; k++)
                if (!s_key_is (&entry->via.map.ptr [k].key, "broker")) {
                    msgpack_pack_object (pk, entry->via.map.ptr [k].key);
                    msgpack_pack_object (pk, entry->via.map.ptr [k].val);
                }
            s_pack_cstr (pk, "broker");
            s_pack_cstr (pk, r->name);
        }
    }
    msgpack_unpacked_destroy (&unpacked);
}

/*  The name another broker gave itself, from its link or its DIRECTORY.  */
static const char *
s_cbroker_name (engine_t *self, const cbroker_t *cb)
{
    if (cb->name [0])
        return cb->name;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir && !strcmp (p->dir->id, cb->idhex))
            return p->dir->name;
    return "";
}

static void
s_sys_services (engine_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    s_pack_cstr (pk, "broker");
    s_pack_cstr (pk, self->args->name);
    s_pack_cstr (pk, "brokers");
    msgpack_pack_array (pk, 1 + self->nbrokers);
    msgpack_pack_map (pk, 4);
    s_pack_cstr (pk, "name");
    s_pack_cstr (pk, self->args->name);
    s_pack_cstr (pk, "id");
    s_pack_cstr (pk, self->idhex);
    s_pack_cstr (pk, "endpoint");
    s_pack_cstr (pk, self->announce);
    s_pack_cstr (pk, "self");
    msgpack_pack_true (pk);
    for (size_t i = 0; i < self->nbrokers; i++) {
        cbroker_t *cb = self->brokers [i];
        msgpack_pack_map (pk, 4);
        s_pack_cstr (pk, "name");
        s_pack_cstr (pk, s_cbroker_name (self, cb));
        s_pack_cstr (pk, "id");
        s_pack_cstr (pk, cb->idhex);
        s_pack_cstr (pk, "endpoint");
        s_pack_cstr (pk, cb->endpoint);
        s_pack_cstr (pk, "self");
        msgpack_pack_false (pk);
    }
    s_pack_cstr (pk, "services");
    msgpack_pack_array (pk, zhashx_size (self->services));
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services))
        s_pack_service (self, pk, s);
    /*  Apart, so that counting a service's instances in "services" stays
        right: every host connects to every broker, so the same instances
        are usually listed by each broker.  */
    s_pack_cstr (pk, "remote");
    size_t count = 0;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir)
            count += p->dir->nservices;
    msgpack_pack_array (pk, count);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir)
            s_pack_remote (pk, p->dir);
}

static void
s_sys_stats (engine_t *self, msgpack_packer *pk)
{
    const stats_t *st = &self->stats;
    msgpack_pack_map (pk, 22);
    s_pack_cstr (pk, "broker");
    s_pack_cstr (pk, self->args->name);
    s_pack_counter (pk, "uptime_ms", (uint64_t) (self->now - self->started));
    s_pack_counter (pk, "requests", st->requests);
    s_pack_counter (pk, "replies", st->replies);
    s_pack_cstr (pk, "errors");
    msgpack_pack_map (pk, SB_E_CODE_MAX);
    for (int code = 1; code <= SB_E_CODE_MAX; code++)
        s_pack_counter (pk, sb_code_name ((sb_code_t) code), st->errors [code]);
    s_pack_counter (pk, "timeouts", st->timeouts);
    s_pack_counter (pk, "late_replies", st->late_replies);
    s_pack_counter (pk, "orphaned_replies", st->orphaned_replies);
    s_pack_cstr (pk, "bad_frames");
    msgpack_pack_map (pk, R_MAX - 1);
    for (int reason = 1; reason < R_MAX; reason++)
        s_pack_counter (pk, reason < SB_WIRE_REASON_MAX
                            ? sb_wire_reason_name ((sb_wire_reason_t) reason)
                            : s_reason_names [reason - SB_WIRE_REASON_MAX],
                        st->bad [reason]);
    s_pack_counter (pk, "events", st->events);
    s_pack_counter (pk, "dropped_events", st->dropped_events);
    s_pack_counter (pk, "unreachable", st->unreachable);
    s_pack_counter (pk, "send_failures", st->send_failures);
    s_pack_counter (pk, "peers", zhashx_size (self->peers));
    s_pack_counter (pk, "workers", self->nworkers);
    s_pack_counter (pk, "live_requests", self->live);
    s_pack_counter (pk, "forbidden", st->forbidden);
    s_pack_counter (pk, "directories", st->directories);
    s_pack_counter (pk, "brokers", self->nbrokers);
    sb_beacon_counters_t bc;
    memset (&bc, 0, sizeof bc);
    if (self->beacon)
        sb_beacon_counters (self->beacon, &bc);
    s_pack_cstr (pk, "beacons");
    msgpack_pack_map (pk, 6 + SB_BEACON_REASON_MAX - 1);
    s_pack_counter (pk, "sent", bc.sent);
    s_pack_counter (pk, "send_errors", bc.send_errors);
    s_pack_counter (pk, "received", bc.received);
    s_pack_counter (pk, "accepted", bc.accepted);
    s_pack_counter (pk, "own", bc.own);
    s_pack_counter (pk, "conflicts", bc.conflicts);
    for (int r = 1; r < SB_BEACON_REASON_MAX; r++)
        s_pack_counter (pk, sb_beacon_reason_name ((sb_beacon_reason_t) r), bc.ignored [r]);
    sb_zap_stats_t zs;
    memset (&zs, 0, sizeof zs);
    if (self->args->zap)
        sb_zap_stats (self->args->zap, &zs);
    s_pack_cstr (pk, "zap");
    msgpack_pack_map (pk, 5);
    s_pack_counter (pk, "handshakes_failed", self->stats.handshakes_failed);
    s_pack_counter (pk, "admitted", zs.admitted);
    s_pack_counter (pk, "refused", zs.refused);
    s_pack_counter (pk, "certs", zs.certs);
    s_pack_cstr (pk, "refused_by_reason");
    msgpack_pack_map (pk, SB_ZAP_REFUSED_MAX - 1);
    for (int r = 1; r < SB_ZAP_REFUSED_MAX; r++)
        s_pack_counter (pk, sb_zap_reason_name (r), zs.by_reason [r]);
    s_pack_cstr (pk, "secure");
    if (self->secure)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

/*  sys.keys: the certificates a caller needs to seal (docs/protocol.md
    section 10): {"service": S} gives those of the members whose workers
    offer S here, {"key": bin 32} the one made out for that CURVE key.
    The broker only hands certificates out; callers verify them against
    the authority, so a broker cannot substitute a key.  -1 with `why`
    for a bad body.  */
#define KEYS_CERTS_MAX 16

static int
s_sys_keys (engine_t *self, msgpack_packer *pk, const body_t *body, const char **why)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t offset = 0;
    size_t size = body ? body->size : 0;
    if (size == 0 || size > 4096 || sb_wire_check (body->data, size, 4)
    ||  msgpack_unpack_next (&u, (const char *) body->data, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&u);
        *why = "sys.keys takes {\"service\": NAME} or {\"key\": 32 bytes}";
        return -1;
    }
    const msgpack_object *name = s_map_get (&u.data, "service");
    const msgpack_object *key = s_map_get (&u.data, "key");
    char service [SB_NAME_MAX + 1];
    if (name ? s_str_copy (name, service, sizeof service) || !sb_wire_valid_name (service, SB_NAME_MAX)
             : !key || key->type != MSGPACK_OBJECT_BIN || key->via.bin.size != SB_KEY_SIZE) {
        msgpack_unpacked_destroy (&u);
        *why = "sys.keys takes {\"service\": NAME} or {\"key\": 32 bytes}";
        return -1;
    }
    const sb_cert_t *found [KEYS_CERTS_MAX];
    size_t count = 0;
    sb_cert_t *looked = NULL;
    if (name) {
        service_t *s = s_service_lookup (self, service);
        for (size_t i = 0; s && i < s->nworkers && count < KEYS_CERTS_MAX; i++) {
            const sb_cert_t *cert = s->workers [i]->peer->cert;
            bool seen = !cert;
            for (size_t k = 0; k < count && !seen; k++)
                seen = !memcmp (found [k]->curve_pk, cert->curve_pk, SB_KEY_SIZE);
            if (!seen)
                found [count++] = cert;
        }
    }
    else
    if (self->args->zap && (looked = malloc (sizeof *looked))) {
        sb_error_t err;
        if (sb_zap_lookup_key (self->args->zap, (const uint8_t *) key->via.bin.ptr, looked, &err) == 0)
            found [count++] = looked;
    }
    msgpack_unpacked_destroy (&u);
    msgpack_pack_map (pk, 1);
    s_pack_cstr (pk, "certs");
    msgpack_pack_array (pk, count);
    uint8_t bytes [SB_CERT_MAX + 128];
    for (size_t i = 0; i < count; i++) {
        size_t n = sb_cert_encode (found [i], bytes, sizeof bytes);
        msgpack_pack_bin (pk, n);
        msgpack_pack_bin_body (pk, bytes, n);
    }
    free (looked);
    return 0;
}

static void
s_on_sys (engine_t *self, peer_t *p, const sb_header_t *h, const body_t *body)
{
    void (*method) (engine_t *, msgpack_packer *) = NULL;
    bool keys = !strcmp (h->method, "keys");
    if (!strcmp (h->method, "ping"))
        method = s_sys_ping;
    else
    if (!strcmp (h->method, "services"))
        method = s_sys_services;
    else
    if (!strcmp (h->method, "stats"))
        method = s_sys_stats;
    if (!method && !keys) {
        s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                      "service 'sys' has no method '%s'", h->method);
        return;
    }
    msgpack_sbuffer_clear (&self->sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->sbuf, msgpack_sbuffer_write);
    const char *why = NULL;
    if (keys && s_sys_keys (self, &pk, body, &why)) {
        s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST, "%s", why);
        return;
    }
    self->stats.replies++;
    if (h->flags & SB_F_NO_REPLY)
        return;
    if (method)
        method (self, &pk);
    zmq_msg_t frame;
    body_t reply = { NULL, (const uint8_t *) self->sbuf.data, self->sbuf.size };
    if (reply.size > SB_INLINE_MAX) {
        if (zmq_msg_init_size (&frame, reply.size))
            return;
        memcpy (zmq_msg_data (&frame), reply.data, reply.size);
        reply.frame = &frame;
    }
    sb_header_t out;
    sb_header_init (&out, SB_CMD_REPLY);
    out.request_id = h->request_id;
    out.present |= SB_H_REQUEST_ID;
    if (h->present & SB_H_TRACE) {
        memcpy (out.trace, h->trace, sizeof out.trace);
        out.present |= SB_H_TRACE;
    }
    s_send (self, p, &out, &reply);
    if (reply.frame)
        zmq_msg_close (&frame);
}

/*  --------------------------------------------------------------------
    Cluster: other brokers' sessions with us (ROUTER side).  */

/*  May this peer speak for a broker?  Insecure: anyone; secure: a member
    whose certificate may offer `sys` (docs/protocol.md section 9).  */
static bool
s_cluster_member (engine_t *self, peer_t *p)
{
    if (!self->secure || s_may_offer (self, p, "sys"))
        return true;
    self->stats.forbidden++;
    return false;
}

/*  PEER from another broker's link: a session like HELLO, answered PEER.  */
static void
s_on_peer (engine_t *self, peer_t *p, const sb_header_t *h)
{
    if (!s_cluster_member (self, p))
        return;
    p->welcomed = true;
    p->broker = true;
    if (h->present & SB_H_NAME)
        strcpy (p->name, h->name);
    sb_header_t out;
    sb_header_init (&out, SB_CMD_PEER);
    sb_header_set_name (&out, self->args->name);
    s_send (self, p, &out, NULL);
}

static bool
s_valid_hex_id (const char *text)
{
    if (strlen (text) != 2 * SB_BEACON_ID_SIZE)
        return false;
    for (const char *c = text; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

static bool
s_printable (const char *text)
{
    if (!*text)
        return false;
    for (const unsigned char *c = (const unsigned char *) text; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            return false;
    return true;
}

/*  Checks a DIRECTORY body (section 9) and fills r's fields; 0 or -1.  */
static int
s_directory_parse (const msgpack_object *o, remote_t *r)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return -1;
    if (s_str_copy (s_map_get (o, "broker"), r->name, sizeof r->name)
    ||  !sb_wire_valid_name (r->name, SB_NAME_MAX)
    ||  s_str_copy (s_map_get (o, "id"), r->id, sizeof r->id) || !s_valid_hex_id (r->id)
    ||  s_str_copy (s_map_get (o, "endpoint"), r->endpoint, sizeof r->endpoint)
    ||  !s_printable (r->endpoint))
        return -1;
    const msgpack_object *services = s_map_get (o, "services");
    if (!services || services->type != MSGPACK_OBJECT_ARRAY
    ||  services->via.array.size > DIRECTORY_SERVICES_MAX)
        return -1;
    for (uint32_t i = 0; i < services->via.array.size; i++) {
        const msgpack_object *entry = &services->via.array.ptr [i];
        char name [SB_NAME_MAX + 1];
        if (entry->type != MSGPACK_OBJECT_MAP || entry->via.map.size > 16
        ||  s_str_copy (s_map_get (entry, "name"), name, sizeof name)
        ||  !sb_wire_valid_name (name, SB_NAME_MAX))
            return -1;
        for (uint32_t k = 0; k < entry->via.map.size; k++)
            if (entry->via.map.ptr [k].key.type != MSGPACK_OBJECT_STR)
                return -1;
    }
    r->nservices = services->via.array.size;
    return 0;
}

/*  DIRECTORY: replaces what we know of that broker's services.  */
static void
s_on_directory (engine_t *self, peer_t *p, const body_t *body)
{
    if (!s_cluster_member (self, p))
        return;
    if (!body || body->size > DIRECTORY_MAX
    ||  sb_wire_check (body->data, body->size, SB_DEPTH_MAX)) {
        s_bad (self, body ? R_BAD_BODY : R_MISSING_FIELD);
        return;
    }
    remote_t *r = calloc (1, sizeof *r);
    if (!r)
        return;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, (const char *) body->data, body->size, &offset)
        == MSGPACK_UNPACK_SUCCESS)
        rc = s_directory_parse (&unpacked.data, r);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && !strcmp (r->id, self->idhex))
        rc = -1;                /* our own id: not another broker */
    if (rc == 0) {
        r->size = body->size;
        r->body = malloc (r->size);
        if (!r->body)
            rc = -1;
    }
    if (rc) {
        if (!r->body)
            s_bad (self, R_BAD_BODY);
        s_remote_free (&r);
        return;
    }
    memcpy (r->body, body->data, r->size);
    /*  The same broker over an older session: forget that copy.  */
    for (peer_t *q = zhashx_first (self->peers); q; q = zhashx_next (self->peers))
        if (q != p && q->dir && !strcmp (q->dir->id, r->id))
            s_remote_free (&q->dir);
    s_remote_free (&p->dir);
    p->dir = r;
    p->broker = true;
    self->stats.directories++;
}

/*  --------------------------------------------------------------------
    Cluster: beacons and our links to other brokers (DEALER side).  */

static void
s_hex (char *out, const uint8_t *data, size_t size)
{
    sodium_bin2hex (out, 2 * size + 1, data, size);
}

static int
s_link_send (engine_t *self, cbroker_t *cb, const sb_header_t *h, const void *body, size_t size)
{
    if (!cb->link)
        return -1;
    void *sock = zsock_resolve (cb->link);
    size_t inline_size = body && size <= SB_INLINE_MAX ? size : 0;
    size_t n = sb_header_encode_inline (h, inline_size, self->hbuf);
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, n + inline_size))
        return -1;
    memcpy (zmq_msg_data (&frame), self->hbuf, n);
    if (inline_size)
        memcpy ((uint8_t *) zmq_msg_data (&frame) + n, body, inline_size);
    bool more = body && !inline_size;
    if (zmq_msg_send (&frame, sock, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0) {
        zmq_msg_close (&frame);
        return -1;
    }
    if (more)
        zmq_send (sock, body, size, 0);
    cb->link_sent = self->now;
    return 0;
}

static void
s_link_simple (engine_t *self, cbroker_t *cb, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_PEER)
        sb_header_set_name (&h, self->args->name);
    s_link_send (self, cb, &h, NULL, 0);
}

/*  Encodes our DIRECTORY body into self->dbuf.  */
static void
s_directory_encode (engine_t *self)
{
    msgpack_sbuffer_clear (&self->dbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->dbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    s_pack_cstr (&pk, "broker");
    s_pack_cstr (&pk, self->args->name);
    s_pack_cstr (&pk, "id");
    s_pack_cstr (&pk, self->idhex);
    s_pack_cstr (&pk, "endpoint");
    s_pack_cstr (&pk, self->announce);
    s_pack_cstr (&pk, "services");
    msgpack_pack_array (&pk, zhashx_size (self->services));
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services))
        s_pack_service (self, &pk, s);
}

static void
s_link_directory (engine_t *self, cbroker_t *cb)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_DIRECTORY);
    s_link_send (self, cb, &h, self->dbuf.data, self->dbuf.size);
}

/*  PEER then DIRECTORY: what a link says first, and again when the other
    broker answers WELCOME (it restarted or forgot us).  */
static void
s_link_hello (engine_t *self, cbroker_t *cb)
{
    s_link_simple (self, cb, SB_CMD_PEER);
    s_directory_encode (self);
    s_link_directory (self, cb);
}

static void
s_link_close (engine_t *self, cbroker_t *cb)
{
    if (!cb->link)
        return;
    s_link_simple (self, cb, SB_CMD_BYE);
    zsock_set_linger (cb->link, 100);
    zsock_destroy (&cb->link);
}

static bool
s_key_zero (const uint8_t *key)
{
    uint8_t zero [SB_BEACON_KEY_SIZE] = { 0 };
    return !memcmp (key, zero, sizeof zero);
}

/*  Opens the DEALER to a broker heard of.  A secure broker links only to
    brokers that announce a CURVE key (their beacon was signed and
    verified); an insecure one only to insecure brokers.  */
static void
s_link_open (engine_t *self, cbroker_t *cb)
{
    if (self->secure == s_key_zero (cb->key))
        return;
    cb->link = zsock_new (ZMQ_DEALER);
    if (!cb->link)
        return;
    zsock_set_linger (cb->link, 0);
    zsock_set_sndhwm (cb->link, 1000);
    zsock_set_maxmsgsize (cb->link, (int) (self->args->config.body_max + SB_HEADER_MAX));
    sb_error_t err;
    if ((self->secure
         && sb_identity_curve_client (self->args->identity, zsock_resolve (cb->link), cb->key, &err))
    ||  zsock_connect (cb->link, "%s", cb->endpoint)) {
        zsock_destroy (&cb->link);
        return;
    }
    s_link_hello (self, cb);
}

/*  Reads what the other broker sends over our link: PEER (its name),
    WELCOME (announce again), HEARTBEAT, BYE.  */
static void
s_link_recv (engine_t *self, cbroker_t *cb)
{
    void *sock = zsock_resolve (cb->link);
    for (int n = 0; n < 64; n++) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            return;
        }
        sb_header_t h;
        bool ok = sb_header_decode (&h, zmq_msg_data (&frame), zmq_msg_size (&frame)) == SB_WIRE_OK;
        while (zmq_msg_more (&frame)) {
            zmq_msg_close (&frame);
            zmq_msg_init (&frame);
            if (zmq_msg_recv (&frame, sock, 0) < 0)
                break;
        }
        zmq_msg_close (&frame);
        if (!ok)
            continue;
        if (h.command == SB_CMD_PEER && (h.present & SB_H_NAME))
            strcpy (cb->name, h.name);
        else
        if (h.command == SB_CMD_WELCOME)
            s_link_hello (self, cb);
    }
}

static cbroker_t *
s_cbroker_find (engine_t *self, const uint8_t *id, size_t *index)
{
    for (size_t i = 0; i < self->nbrokers; i++)
        if (!memcmp (self->brokers [i]->id, id, SB_BEACON_ID_SIZE)) {
            if (index)
                *index = i;
            return self->brokers [i];
        }
    return NULL;
}

/*  A broker appeared, or changed endpoint or key: (re)open the link.  */
static void
s_cbroker_set (engine_t *self, const sb_beacon_event_t *e)
{
    cbroker_t *cb = s_cbroker_find (self, e->broker_id, NULL);
    if (!cb) {
        if (self->nbrokers >= BROKERS_MAX
        ||  s_grow ((void ***) &self->brokers, self->nbrokers, &self->balloc))
            return;
        cb = calloc (1, sizeof *cb);
        if (!cb)
            return;
        memcpy (cb->id, e->broker_id, SB_BEACON_ID_SIZE);
        s_hex (cb->idhex, cb->id, SB_BEACON_ID_SIZE);
        self->brokers [self->nbrokers++] = cb;
    }
    s_link_close (self, cb);
    snprintf (cb->endpoint, sizeof cb->endpoint, "%s", e->endpoint);
    memcpy (cb->key, e->public_key, SB_BEACON_KEY_SIZE);
    s_link_open (self, cb);
}

/*  A broker is gone (silent or leaving): forget it and its services.  */
static void
s_cbroker_gone (engine_t *self, const uint8_t *id)
{
    size_t index;
    cbroker_t *cb = s_cbroker_find (self, id, &index);
    if (!cb)
        return;
    s_link_close (self, cb);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir && !strcmp (p->dir->id, cb->idhex))
            s_remote_free (&p->dir);
    self->brokers [index] = self->brokers [--self->nbrokers];
    free (cb);
}

static void
s_beacon_event (engine_t *self, const sb_beacon_event_t *e)
{
    if (e->type == SB_BEACON_APPEARED || e->type == SB_BEACON_CHANGED)
        s_cbroker_set (self, e);
    else
    if (e->type == SB_BEACON_GONE)
        s_cbroker_gone (self, e->broker_id);
}

/*  Beacons in, beacons out, silent brokers out.  */
static void
s_beacon_work (engine_t *self, bool readable)
{
    if (!self->beacon)
        return;
    sb_beacon_event_t event;
    for (int n = 0; readable && n < 64; n++) {
        if (sb_beacon_recv (self->beacon, self->now, &event))
            break;
        s_beacon_event (self, &event);
    }
    sb_beacon_tick (self->beacon, self->now);
    sb_beacon_event_t gone [8];
    size_t count;
    do {
        count = sb_beacon_expire (self->beacon, self->now, gone, 8);
        for (size_t i = 0; i < count; i++)
            s_beacon_event (self, &gone [i]);
    } while (count == 8);
}

/*  Heartbeats and DIRECTORY over our links (from the heartbeat tick).  */
static void
s_links_tick (engine_t *self)
{
    if (!self->nbrokers)
        return;
    bool directory = self->dir_dirty || self->now >= self->next_dir;
    if (directory) {
        s_directory_encode (self);
        self->dir_dirty = false;
        self->next_dir = self->now + 2 * (int64_t) self->hb;
    }
    for (size_t i = 0; i < self->nbrokers; i++) {
        cbroker_t *cb = self->brokers [i];
        if (directory)
            s_link_directory (self, cb);
        else
        if (self->now - cb->link_sent >= self->hb)
            s_link_simple (self, cb, SB_CMD_HEARTBEAT);
    }
}

/*  The beacon's certificate check (signed mode): valid member certificate
    for the signing key, and then known to our ZAP handler, so that the
    broker it names may link to us.  */
static int
s_verify_beacon (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg)
{
    args_t *a = (args_t *) arg;
    if (sb_cert_verify_beacon (cert, size, signing_pk, &a->verifier))
        return -1;
    sb_error_t err;
    sb_zap_add_cert (a->zap, cert, size, &err);
    return 0;
}

/*  The address of an interface (IPv4), for announcing a wildcard bind.  */
static int
s_iface_address (const char *iface, char *out, size_t size)
{
    struct ifaddrs *list;
    if (getifaddrs (&list))
        return -1;
    int rc = -1;
    for (struct ifaddrs *i = list; i && rc; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp (i->ifa_name, iface))
            if (inet_ntop (AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, out, (socklen_t) size))
                rc = 0;
    freeifaddrs (list);
    return rc;
}

/*  What the beacon announces: the bound endpoint, with a wildcard host
    replaced by the address of the beacon's interface.  0, or -1 with
    a->error.  */
static int
s_announce (engine_t *self)
{
    args_t *a = self->args;
    const char *ep = a->endpoint;
    const char *host = strstr (ep, "://");
    const char *colon = strrchr (ep, ':');
    snprintf (self->announce, sizeof self->announce, "%s", ep);
    if (!host || colon <= host + 3)
        return 0;
    host += 3;
    size_t hlen = (size_t) (colon - host);
    bool wildcard = (hlen == 7 && !memcmp (host, "0.0.0.0", 7)) || (hlen == 1 && *host == '*')
                 || (hlen == 4 && !memcmp (host, "[::]", 4));
    if (!wildcard || !strcmp (a->beacon, "off"))
        return 0;
    const char *iface = NULL;
    const char *at = strchr (a->beacon, '@');
    if (!strcmp (a->beacon, "lo"))
        iface = "lo";
    else
    if (at)
        iface = at + 1;
    else
    if (!(*a->beacon >= '0' && *a->beacon <= '9'))
        iface = a->beacon;
    char address [INET_ADDRSTRLEN];
    if (!iface) {
        snprintf (a->error, sizeof a->error,
                  "bound to a wildcard address, beacon '%.60s' names no interface whose address to announce "
                  "(use --beacon GROUP@IFACE or bind one address)", a->beacon);
        return -1;
    }
    if (!strcmp (a->beacon, "lo"))
        strcpy (address, "127.0.0.1");
    else
    if (s_iface_address (iface, address, sizeof address)) {
        snprintf (a->error, sizeof a->error,
                  "bound to a wildcard address, and interface '%.40s' has no IPv4 address to announce "
                  "(bind one address, or pick another --beacon)", iface);
        return -1;
    }
    snprintf (self->announce, sizeof self->announce, "%.*s%s%s", (int) (host - ep), ep, address, colon);
    return 0;
}

/*  Our id, the announced endpoint, and the beacon (unless "off").  */
static int
s_cluster_start (engine_t *self)
{
    args_t *a = self->args;
    randombytes_buf (self->id, sizeof self->id);
    s_hex (self->idhex, self->id, sizeof self->id);
    if (s_announce (self))
        return -1;
    if (!strcmp (a->beacon, "off"))
        return 0;
    sb_beacon_config_t bc;
    memset (&bc, 0, sizeof bc);
    bc.cluster = a->cluster;
    bc.mode = a->beacon;
    bc.port = a->config.beacon_port;
    bc.interval_ms = a->config.beacon_interval_ms;
    bc.endpoint = self->announce;
    bc.broker_id = self->id;
    if (a->identity) {
        const sb_keys_t *keys = sb_identity_keys (a->identity);
        bc.public_key = sb_keys_curve_public (keys);
        bc.signing_secret_key = sb_keys_sign_secret (keys);
        bc.cert = sb_identity_cert_bytes (a->identity, &bc.cert_size);
        bc.verify_cert = s_verify_beacon;
        bc.verify_arg = a;
    }
    sb_error_t err;
    self->beacon = sb_beacon_new (&bc, &err);
    if (!self->beacon) {
        snprintf (a->error, sizeof a->error, "beacon: %.200s", err.text);
        return -1;
    }
    return 0;
}

/*  --------------------------------------------------------------------
    Receiving.  */

/*  Handles one decoded message from peer p (NULL if unknown).  */
static void
s_handle (engine_t *self, peer_t *p, const uint8_t *key, zmq_msg_t *id, sb_header_t *h,
          const body_t *body)
{
    uint32_t command = h->command;
    if (!p) {
        /*  Unknown peers: only these commands make a session, or a
            one-off request/publication.  */
        if (command == SB_CMD_HELLO || command == SB_CMD_READY || command == SB_CMD_SUBSCRIBE
        ||  command == SB_CMD_HEARTBEAT || command == SB_CMD_REQUEST || command == SB_CMD_PEER
        ||  command == SB_CMD_DIRECTORY) {
            p = s_peer_new (self, key, zmq_msg_data (id), zmq_msg_size (id));
            if (!p)
                return;
            if (command != SB_CMD_REQUEST && command != SB_CMD_PEER)
                s_welcome (self, p, h);
        }
        else
        if (command == SB_CMD_PUBLISH) {
            s_on_publish (self, h, body);
            return;
        }
        else
        if (command == SB_CMD_REPLY || command == SB_CMD_ERROR) {
            self->stats.late_replies++;
            return;
        }
        else
        if (command == SB_CMD_BYE || command == SB_CMD_UNSUBSCRIBE)
            return;
        else {
            s_bad (self, R_UNEXPECTED);
            return;
        }
        if (command == SB_CMD_HELLO || command == SB_CMD_HEARTBEAT)
            return;
    }
    else
    if (!p->welcomed && (command == SB_CMD_READY || command == SB_CMD_SUBSCRIBE
                     ||  command == SB_CMD_HEARTBEAT || command == SB_CMD_DIRECTORY))
        s_welcome (self, p, h);

    switch (command) {
        case SB_CMD_HELLO:
            s_welcome (self, p, h);
            break;
        case SB_CMD_READY:
            s_on_ready (self, p, h, body);
            break;
        case SB_CMD_REQUEST:
            s_on_request (self, p, h, body);
            break;
        case SB_CMD_REPLY:
        case SB_CMD_ERROR:
            s_on_answer (self, p, h, body);
            break;
        case SB_CMD_PUBLISH:
            s_on_publish (self, h, body);
            break;
        case SB_CMD_SUBSCRIBE:
            s_on_subscribe (self, p, h, true);
            break;
        case SB_CMD_UNSUBSCRIBE:
            s_on_subscribe (self, p, h, false);
            break;
        case SB_CMD_HEARTBEAT:
            break;
        case SB_CMD_BYE:
            s_doom (self, p);
            break;
        case SB_CMD_PEER:
            s_on_peer (self, p, h);
            break;
        case SB_CMD_DIRECTORY:
            s_on_directory (self, p, body);
            break;
        default:
            s_bad (self, R_UNEXPECTED);
            break;
    }
}

/*  Receives and handles one message.  Returns -1 when nothing is waiting.  */
static int
s_recv_one (engine_t *self)
{
    zmq_msg_t id;
    zmq_msg_init (&id);
    if (zmq_msg_recv (&id, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&id);
        return -1;
    }
    size_t nframes = 0;
    bool more = zmq_msg_more (&id);
    while (more) {
        zmq_msg_t *frame = &self->frames [nframes < 2 ? nframes : 1];
        if (nframes >= 2)
            zmq_msg_close (frame);
        zmq_msg_init (frame);
        if (zmq_msg_recv (frame, self->sock, 0) < 0) {
            if (nframes < 2)
                zmq_msg_close (frame);
            break;
        }
        more = zmq_msg_more (frame);
        nframes++;
    }
    size_t held = nframes < 2 ? nframes : 2;

    uint8_t key [256];
    size_t id_size = zmq_msg_size (&id);
    if (id_size > 255)
        id_size = 255;
    s_peer_key (key, zmq_msg_data (&id), id_size);
    peer_t *p = zhashx_lookup (self->peers, key);
    if (p && p->doomed) {
        /*  It said BYE (or was declared dead) earlier in this batch and
            speaks again: forget it now, so this message starts afresh.  */
        s_peer_destroy (self, p);
        p = NULL;
    }
    if (p)
        p->last_heard = self->now;

    void (*capture) (const void *, size_t, void *) = self->args->config.capture;
    if (capture && nframes == 2)
        capture (zmq_msg_data (&self->frames [1]), zmq_msg_size (&self->frames [1]),
                 self->args->config.capture_arg);
    if (nframes < 1 || nframes > 2)
        s_bad (self, R_FRAMES);
    else {
        sb_header_t h;
        sb_wire_reason_t reason = sb_header_decode (&h, zmq_msg_data (&self->frames [0]),
                                                    zmq_msg_size (&self->frames [0]));
        body_t body = { NULL, NULL, 0 };
        if (reason == SB_WIRE_OK && (h.present & SB_H_BODY)) {
            body = (body_t) { &self->frames [0], h.body, h.body_size };
            if (capture)
                capture (body.data, body.size, self->args->config.capture_arg);
        }
        else
        if (nframes == 2)
            body = (body_t) { &self->frames [1], zmq_msg_data (&self->frames [1]),
                              zmq_msg_size (&self->frames [1]) };
        if (reason != SB_WIRE_OK)
            s_bad (self, reason);
        else
        if ((h.present & SB_H_BODY) && nframes == 2)
            s_bad (self, R_FRAMES);         /* an inline body and a body frame */
        else
            s_handle (self, p, key, &id, &h, body.frame ? &body : NULL);
    }
    for (size_t i = 0; i < held; i++)
        zmq_msg_close (&self->frames [i]);
    zmq_msg_close (&id);
    return 0;
}

/*  --------------------------------------------------------------------
    Time: deadlines and heartbeats.  */

static void
s_expire (engine_t *self)
{
    while (self->heap_size && self->heap [0]->deadline <= self->now) {
        req_t *r = self->heap [0];
        s_heap_remove (self, r);
        if (r->state == REQ_QUEUED) {
            self->stats.timeouts++;
            s_list_remove (&r->service->queue, r);
            s_req_fail (self, r, SB_E_TIMEOUT, "deadline passed while queued");
        }
        else
        if (r->state == REQ_INFLIGHT) {
            /*  Keep the entry, and the worker's credit, until the late
                answer comes or a grace period passes.  */
            self->stats.timeouts++;
            s_send_error (self, r->caller, &r->header, r->caller_id, SB_E_TIMEOUT,
                          "deadline passed in service '%s'", r->service->name);
            s_caller_unlink (r);
            if (r->has_body)
                zmq_msg_close (&r->body);
            r->has_body = false;
            r->state = REQ_EXPIRED;
            r->deadline = self->now + self->args->config.default_timeout_ms;
            s_heap_push (self, r);
        }
        else {
            /*  Expired and never answered: give the credit back.  */
            worker_t *w = r->worker;
            s_list_remove (&w->inflight, r);
            w->in_flight--;
            s_req_free (self, r);
            s_service_dispatch (self, w->service);
        }
    }
}

/*  Heartbeats out, dead peers found.  */
static void
s_tick (engine_t *self)
{
    int64_t dead_after = 3 * (int64_t) self->hb;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers)) {
        int64_t silent = self->now - p->last_heard;
        if (p->welcomed) {
            if (silent >= dead_after)
                s_doom (self, p);
            else
            if (self->now - p->last_sent >= self->hb)
                s_send_simple (self, p, SB_CMD_HEARTBEAT);
        }
        else
        if (silent >= dead_after && !p->calls)
            s_doom (self, p);
    }
}

/*  --------------------------------------------------------------------
    The actor.  */

static void
s_engine_destroy (engine_t *self)
{
    /*  Tell the cluster first: a leaving beacon and BYE on every link.  */
    if (self->beacon)
        sb_beacon_leave (self->beacon);
    sb_beacon_destroy (&self->beacon);
    for (size_t i = 0; i < self->nbrokers; i++) {
        s_link_close (self, self->brokers [i]);
        free (self->brokers [i]);
    }
    free (self->brokers);
    free (self->items);
    free (self->owners);
    msgpack_sbuffer_destroy (&self->dbuf);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->welcomed)
            s_send_simple (self, p, SB_CMD_BYE);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        s_doom (self, p);
    s_reap (self);
    for (size_t i = 0; i < self->nchunks; i++)
        free (self->chunks [i]);
    free (self->chunks);
    free (self->heap);
    free (self->bcast);
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->services);
    zhashx_destroy (&self->groups);
    msgpack_sbuffer_destroy (&self->sbuf);
    if (self->monitor) {
        zmq_socket_monitor (self->sock, NULL, 0);
        zsock_destroy (&self->monitor);
    }
    if (self->router) {
        /*  Give the BYEs a moment to leave, never more.  */
        zsock_set_linger (self->router, 100);
        zsock_destroy (&self->router);
    }
}

static int
s_engine_bind (engine_t *self)
{
    args_t *a = self->args;
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router) {
        snprintf (a->error, sizeof a->error, "cannot create socket: %s", zmq_strerror (zmq_errno ()));
        return -1;
    }
    self->sock = zsock_resolve (self->router);
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_maxmsgsize (self->router, (int) (a->config.body_max + SB_HEADER_MAX));
    zsock_set_sndhwm (self->router, HWM);
    zsock_set_rcvhwm (self->router, HWM);
    zsock_set_linger (self->router, 0);
    sb_error_t err;
    if (a->identity && sb_zap_curve_server (self->sock, sb_identity_keys (a->identity), &err)) {
        snprintf (a->error, sizeof a->error, "%s", err.text);
        return -1;
    }
    if (zsock_bind (self->router, "%s", a->bind) < 0) {
        snprintf (a->error, sizeof a->error, "cannot bind %.160s: %.60s", a->bind,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    char *endpoint = zsock_last_endpoint (self->router);
    snprintf (a->endpoint, sizeof a->endpoint, "%s", endpoint ? endpoint : a->bind);
    zstr_free (&endpoint);
    if (self->secure) {
        /*  A client that fails the CURVE handshake before ZAP is asked (a
            plaintext client, a wrong server key, garbage) is refused by
            libzmq alone: a socket monitor is the only way to count it.
            ZAP's own refusals (HANDSHAKE_FAILED_AUTH) are counted by zap.c. */
        char monitor [64];
        snprintf (monitor, sizeof monitor, "inproc://sb-broker-handshakes-%p", (void *) self);
        if (zmq_socket_monitor (self->sock, monitor, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0) {
            self->monitor = zsock_new (ZMQ_PAIR);
            if (self->monitor && zsock_connect (self->monitor, "%s", monitor) < 0)
                zsock_destroy (&self->monitor);
        }
    }
    return 0;
}

/*  Counts the failed handshakes the monitor reports (two frames each:
    event number and value, then the peer's address).  */
static void
s_monitor_recv (engine_t *self)
{
    for (int i = 0; i < 64; i++) {
        zmsg_t *event = zmsg_recv_nowait (self->monitor);
        if (!event)
            break;
        zframe_t *head = zmsg_first (event);
        if (head && zframe_size (head) >= 2)
            self->stats.handshakes_failed++;
        zmsg_destroy (&event);
    }
}

static void
s_broker_actor (zsock_t *pipe, void *arg)
{
    engine_t engine, *self = &engine;
    memset (self, 0, sizeof *self);
    self->args = arg;
    self->pipe = pipe;
    self->hb = self->args->config.heartbeat_ms;
    self->now = self->started = zclock_mono ();
    self->peers = zhashx_new ();
    if (self->peers) {
        /*  Keys live in their peer_t: neither copied nor freed here.  */
        zhashx_set_key_hasher (self->peers, s_peer_key_hash);
        zhashx_set_key_comparator (self->peers, s_peer_key_compare);
        zhashx_set_key_duplicator (self->peers, NULL);
        zhashx_set_key_destructor (self->peers, NULL);
    }
    self->services = zhashx_new ();
    self->groups = zhashx_new ();
    self->secure = self->args->identity != NULL;
    self->acl_epoch = 1;
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_sbuffer_init (&self->dbuf);

    if (!self->peers || !self->services || !self->groups || s_engine_bind (self)
    ||  s_cluster_start (self)) {
        self->args->rc = -1;
        s_engine_destroy (self);
        zsock_signal (pipe, 0);
        return;
    }
    self->args->rc = 0;
    zsock_signal (pipe, 0);

    int tick = self->hb / 4 > 0 ? self->hb / 4 : 1;
    self->next_tick = self->now + tick;
    self->next_dir = self->now;
    int beacon_fd = self->beacon ? sb_beacon_fd (self->beacon) : -1;
    while (!self->stop) {
        int64_t wake = self->next_tick;
        if (self->heap_size && self->heap [0]->deadline < wake)
            wake = self->heap [0]->deadline;
        if (self->beacon && self->beacon_due < wake)
            wake = self->beacon_due;
        long timeout = wake > self->now ? (long) (wake - self->now) : 0;
        /*  ROUTER, pipe, the beacon if any, then one item per open link
            (owners [i] says whose).  */
        size_t nitems = 4 + self->nbrokers;
        if (nitems > self->items_alloc) {
            zmq_pollitem_t *items = realloc (self->items, nitems * sizeof *items);
            cbroker_t **owners = realloc (self->owners, nitems * sizeof *owners);
            if (items)
                self->items = items;
            if (owners)
                self->owners = owners;
            if (!items || !owners)
                break;
            self->items_alloc = nitems;
        }
        zmq_pollitem_t *items = self->items;
        cbroker_t **owners = self->owners;
        int count = 0;
        items [count++] = (zmq_pollitem_t) { self->sock, 0, ZMQ_POLLIN, 0 };
        items [count++] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
        int beacon_item = -1;
        if (beacon_fd >= 0) {
            beacon_item = count;
            items [count++] = (zmq_pollitem_t) { NULL, beacon_fd, ZMQ_POLLIN, 0 };
        }
        int monitor_item = -1;
        if (self->monitor) {
            monitor_item = count;
            items [count++] = (zmq_pollitem_t) { zsock_resolve (self->monitor), 0, ZMQ_POLLIN, 0 };
        }
        int first_link = count;
        for (size_t i = 0; i < self->nbrokers; i++)
            if (self->brokers [i]->link) {
                owners [count] = self->brokers [i];
                items [count++] = (zmq_pollitem_t) { zsock_resolve (self->brokers [i]->link), 0, ZMQ_POLLIN, 0 };
            }
        if (zmq_poll (items, count, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        self->now = zclock_mono ();
        if (items [1].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->stop = true;
            else
            if (streq (command, "RELOAD")) {
                sb_error_t err;
                int rc = 0;
                if (self->args->revoked && sb_revocation_reload (self->args->revoked, &err))
                    rc = -1;
                self->acl_epoch = self->acl_epoch + 1 ? self->acl_epoch + 1 : 1;
                zsock_signal (pipe, (byte) (rc ? 1 : 0));
            }
            zstr_free (&command);
        }
        for (int n = 0; n < BATCH_MAX; n++) {
            if (s_recv_one (self))
                break;
            if ((n & 63) == 63)
                self->now = zclock_mono ();
        }
        s_reap (self);
        self->now = zclock_mono ();
        s_expire (self);
        if (monitor_item >= 0 && (items [monitor_item].revents & ZMQ_POLLIN))
            s_monitor_recv (self);
        /*  Links before beacons: a beacon event may close a link.  */
        for (int i = first_link; i < count; i++)
            if (items [i].revents & ZMQ_POLLIN)
                s_link_recv (self, owners [i]);
        if (self->beacon) {
            bool readable = beacon_item >= 0 && (items [beacon_item].revents & ZMQ_POLLIN);
            if (readable || self->now >= self->beacon_due) {
                s_beacon_work (self, readable);
                int due = sb_beacon_timeout (self->beacon, self->now);
                self->beacon_due = self->now + (due >= 0 ? due : 1000);
            }
        }
        if (self->now >= self->next_tick) {
            s_tick (self);
            s_links_tick (self);
            s_reap (self);
            self->next_tick = self->now + tick;
        }
    }
    s_engine_destroy (self);
}

/*  --------------------------------------------------------------------
    Public API.  */

static void
s_broker_free (sb_broker_t *self)
{
    sb_zap_destroy (&self->args.zap);
    sb_revocation_destroy (&self->args.revoked);
    sb_identity_destroy (&self->args.identity);
    free (self);
}

/*  Cluster settings, checked and copied into a.  */
static int
s_cluster_config (sb_broker_config_t *c, args_t *a, sb_error_t *err)
{
    const char *cluster = c->cluster ? c->cluster : "default";
    const char *beacon = c->beacon ? c->beacon : "off";
    if (!sb_wire_valid_name (cluster, SB_NAME_MAX))
        return sb_error_set (err, SB_E_BAD_REQUEST, "cluster name '%.64s' is not a valid name", cluster);
    if (!*beacon || strlen (beacon) >= sizeof a->beacon)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon mode '%.64s' is empty or too long", beacon);
    if (c->beacon_port < 0 || c->beacon_port > 65535)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon port %d is not 0..65535", c->beacon_port);
    if (c->beacon_interval_ms
    &&  (c->beacon_interval_ms < SB_BEACON_INTERVAL_MIN || c->beacon_interval_ms > SB_BEACON_INTERVAL_MAX))
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon interval must be %d..%d ms",
                             SB_BEACON_INTERVAL_MIN, SB_BEACON_INTERVAL_MAX);
    strcpy (a->cluster, cluster);
    strcpy (a->beacon, beacon);
    c->cluster = a->cluster;
    c->beacon = a->beacon;
    return 0;
}

/*  Loads the identity, the ZAP handler and the revocation list.  */
static int
s_security_load (sb_broker_config_t *c, args_t *a, sb_error_t *err)
{
    a->identity = sb_identity_load (c->keys_dir, c->member, err);
    if (!a->identity)
        return -1;
    const char *dir = sb_identity_dir (a->identity);
    char authority [PATH_MAX];
    if (snprintf (authority, sizeof authority, "%s/%s", dir, SB_IDENTITY_AUTHORITY_FILE)
        >= (int) sizeof authority)
        return sb_error_set (err, SB_E_BAD_REQUEST, "keys directory path too long");
    a->zap = sb_zap_new (authority, c->certs_dir ? c->certs_dir : dir, c->revoked, err);
    if (!a->zap)
        return -1;
    if (c->revoked) {
        a->revoked = sb_revocation_new (c->revoked, err);
        if (!a->revoked)
            return -1;
    }
    memcpy (a->verifier.authority_pk, sb_identity_authority (a->identity), SB_KEY_SIZE);
    a->verifier.revoked = a->revoked;
    return 0;
}

sb_broker_t *
sb_broker_new (const sb_broker_config_t *config, sb_error_t *err)
{
    sb_broker_config_t c = { 0 };
    if (config)
        c = *config;
    if (c.heartbeat_ms < 0 || c.default_timeout_ms < 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "heartbeat and timeout must not be negative");
        return NULL;
    }
    if (c.body_max > (size_t) INT32_MAX - SB_HEADER_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "body_max too large");
        return NULL;
    }
    sb_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    args_t *a = &self->args;
    if (c.name) {
        if (!sb_wire_valid_name (c.name, SB_NAME_MAX)) {
            free (self);
            sb_error_set (err, SB_E_BAD_REQUEST, "broker name '%s' is not a valid name", c.name);
            return NULL;
        }
        snprintf (a->name, sizeof a->name, "%s", c.name);
    }
    else
        snprintf (a->name, sizeof a->name, "broker-%d", (int) getpid ());
    const char *bind = c.bind ? c.bind : SB_BROKER_BIND_DEFAULT;
    if (strlen (bind) >= sizeof a->bind) {
        free (self);
        sb_error_set (err, SB_E_BAD_REQUEST, "endpoint too long");
        return NULL;
    }
    strcpy (a->bind, bind);
    c.bind = a->bind;
    c.name = a->name;
    if (!c.heartbeat_ms)
        c.heartbeat_ms = SB_BROKER_HEARTBEAT_DEFAULT;
    if (!c.queue_max)
        c.queue_max = SB_BROKER_QUEUE_DEFAULT;
    if (!c.body_max)
        c.body_max = SB_BODY_MAX_DEFAULT;
    if (!c.default_timeout_ms)
        c.default_timeout_ms = SB_BROKER_TIMEOUT_DEFAULT;
    if (s_cluster_config (&c, a, err) || (c.secure && s_security_load (&c, a, err))) {
        s_broker_free (self);
        return NULL;
    }
    a->config = c;

    self->actor = zactor_new (s_broker_actor, a);
    if (!self->actor || a->rc) {
        sb_error_set (err, SB_E_UNAVAILABLE, "%s", self->actor ? a->error : "cannot start broker thread");
        zactor_destroy (&self->actor);
        s_broker_free (self);
        return NULL;
    }
    return self;
}

int
sb_broker_reload (sb_broker_t *self, sb_error_t *err)
{
    if (!self || !self->args.zap)
        return 0;
    if (sb_zap_reload (self->args.zap, err))
        return -1;
    zstr_send (self->actor, "RELOAD");
    if (zsock_wait (self->actor) != 0)
        return sb_error_set (err, SB_E_BAD_REQUEST, "revocation list %s could not be re-read; "
                             "the previous list stays in force", self->args.config.revoked);
    return 0;
}

const uint8_t *
sb_broker_public_key (sb_broker_t *self)
{
    return self && self->args.identity
         ? sb_keys_curve_public (sb_identity_keys (self->args.identity)) : NULL;
}

const char *
sb_broker_endpoint (sb_broker_t *self)
{
    return self ? self->args.endpoint : NULL;
}

const char *
sb_broker_name (sb_broker_t *self)
{
    return self ? self->args.name : NULL;
}

void
sb_broker_destroy (sb_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_broker_t *self = *self_p;
    zactor_destroy (&self->actor);
    s_broker_free (self);
    *self_p = NULL;
}
