/*  broker.c — the broker engine: one actor, one ROUTER socket.

    Everything here runs on the actor's thread, so nothing is locked.  The
    loop polls the ROUTER and the actor pipe, then drains up to a batch of
    messages with ZMQ_DONTWAIT, then expires deadlines and runs the
    heartbeat tick.  See docs/protocol.md for the behaviour; this comment
    is about how it is built.

    - Peers are found by routing id (hex-encoded, in a zhashx).  A peer
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
    - Bodies: the body frame received is moved into the request and sent
      on with zmq_msg_send.  Only an idempotent request keeps a zmq_msg_copy
      (reference-counted for large frames) for a re-dispatch.
*/
#include "broker.h"
#include "wire.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BATCH_MAX 512                   /* messages drained per poll */
#define METHODS_MAX 64                  /* per service: worker method sets are 64-bit masks */
#define SUBS_MAX 1024                   /* subscriptions per peer */
#define REQUESTS_MAX (1u << 22)         /* live request entries in the whole broker */
#define POOL_CHUNK 1024
#define HWM 100000

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
    bool with_body;                 /* the request came with a body frame */
    bool has_body;                  /* body holds it (queued, or idempotent copy) */
    zmq_msg_t body;
    sb_header_t header;             /* as received; re-encoded at dispatch */
};

typedef struct {
    req_t *head, *tail;
    size_t count;
} req_list_t;

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

struct peer_s {
    char key [2 * 255 + 1];
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
};

typedef struct {
    uint64_t requests, replies, timeouts, late_replies, orphaned_replies;
    uint64_t events, dropped_events, unreachable, send_failures;
    uint64_t errors [SB_E_CODE_MAX + 1];
    uint64_t bad [R_MAX];
} stats_t;

typedef struct {
    sb_broker_config_t config;
    char name [SB_NAME_MAX + 1];
    char bind [256];
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

/*  Sends header (+ body) to peer.  0 when sent (the body is consumed), or
    -1 when the peer is unreachable (it is then doomed) or its send queue
    is full; the body is then left to the caller.  */
static int
s_send (engine_t *self, peer_t *peer, const sb_header_t *h, zmq_msg_t *body)
{
    if (peer->doomed)
        return -1;
    size_t size = sb_header_encode (h, self->hbuf);
    int more = body ? ZMQ_SNDMORE : 0;
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
    zmq_send (self->sock, self->hbuf, size, more);
    if (body)
        zmq_msg_send (body, self->sock, 0);
    peer->last_sent = self->now;
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

    zmq_msg_t body;
    zmq_msg_t *bodyp = NULL;
    if (r->has_body) {
        bodyp = &body;
        zmq_msg_init (&body);
        if (r->idempotent)
            zmq_msg_copy (&body, &r->body);
        else {
            zmq_msg_move (&body, &r->body);
            zmq_msg_close (&r->body);
            r->has_body = false;
        }
    }
    if (s_send (self, w->peer, h, bodyp)) {
        if (bodyp && !r->has_body) {
            zmq_msg_init (&r->body);
            zmq_msg_move (&r->body, bodyp);
            r->has_body = true;
        }
        if (bodyp)
            zmq_msg_close (bodyp);
        return -1;
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

static void
s_peer_key (char *key, const uint8_t *id, size_t size)
{
    static const char hex [] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        key [2 * i] = hex [id [i] >> 4];
        key [2 * i + 1] = hex [id [i] & 15];
    }
    key [2 * size] = 0;
}

static peer_t *
s_peer_new (engine_t *self, const char *key, const uint8_t *id, size_t size)
{
    peer_t *p = calloc (1, sizeof *p);
    if (!p)
        return NULL;
    strcpy (p->key, key);
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
s_on_ready (engine_t *self, peer_t *p, const sb_header_t *h, zmq_msg_t *body)
{
    if (!(h->present & SB_H_SERVICE) || !(h->present & SB_H_CAPACITY) || !body) {
        s_bad (self, R_MISSING_FIELD);
        return;
    }
    if (!strncmp (h->service, "sys", 3)) {
        s_bad (self, R_RESERVED);
        return;
    }
    const char *data = zmq_msg_data (body);
    size_t size = zmq_msg_size (body);
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
    s_service_dispatch (self, s);
}

static void s_on_sys (engine_t *self, peer_t *p, const sb_header_t *h);

static void
s_on_request (engine_t *self, peer_t *p, sb_header_t *h, zmq_msg_t *body)
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
        s_on_sys (self, p, h);
        return;
    }
    service_t *s = s_service_lookup (self, h->service);
    if (!s) {
        s_send_error (self, p, h, h->request_id, SB_E_NOT_FOUND, "no service '%s'", h->service);
        return;
    }
    int method = s_method_index (s, h->method);
    if (method < 0 || !(s->mask & ((uint64_t) 1 << method))) {
        s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                      "service '%s' has no method '%s'", h->service, h->method);
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
    r->caller_id = h->request_id;
    r->service = s;
    r->method = method;
    r->idempotent = (h->flags & SB_F_IDEMPOTENT) || (s->methods [method].flags & SB_F_IDEMPOTENT);
    uint32_t timeout = h->timeout_ms ? h->timeout_ms : (uint32_t) self->args->config.default_timeout_ms;
    r->deadline = self->now + timeout;
    if (body) {
        r->with_body = r->has_body = true;
        zmq_msg_init (&r->body);
        zmq_msg_move (&r->body, body);
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

/*  REPLY or ERROR from a worker.  */
static void
s_on_answer (engine_t *self, peer_t *p, sb_header_t *h, zmq_msg_t *body)
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
    else {
        sb_header_t out;
        sb_header_init (&out, h->command);
        out.request_id = r->caller_id;
        out.present |= SB_H_REQUEST_ID;
        out.flags = h->flags & ~(uint32_t) (SB_F_IDEMPOTENT | SB_F_NO_REPLY | SB_F_RETRY);
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

/*  Sends the event to one peer, copying the body unless it is the last
    delivery (then moved).  */
static void
s_deliver (engine_t *self, peer_t *p, const sb_header_t *h, zmq_msg_t *body)
{
    if (body) {
        zmq_msg_t copy;
        zmq_msg_init (&copy);
        zmq_msg_copy (&copy, body);
        if (s_send (self, p, h, &copy))
            zmq_msg_close (&copy);
    }
    else
        s_send (self, p, h, NULL);
}

static void
s_on_publish (engine_t *self, const sb_header_t *h, zmq_msg_t *body)
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
        s_deliver (self, sub->peer, &out, body);
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
            s_deliver (self, sub->peer, &out, body);
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

static void
s_sys_services (engine_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 2);
    s_pack_cstr (pk, "broker");
    s_pack_cstr (pk, self->args->name);
    s_pack_cstr (pk, "services");
    msgpack_pack_array (pk, zhashx_size (self->services));
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services)) {
        uint64_t capacity = 0, in_flight = 0;
        for (size_t i = 0; i < s->nworkers; i++) {
            capacity += s->workers [i]->capacity;
            in_flight += s->workers [i]->in_flight;
        }
        msgpack_pack_map (pk, 7);
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
    }
}

static void
s_sys_stats (engine_t *self, msgpack_packer *pk)
{
    const stats_t *st = &self->stats;
    msgpack_pack_map (pk, 16);
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
}

static void
s_on_sys (engine_t *self, peer_t *p, const sb_header_t *h)
{
    void (*method) (engine_t *, msgpack_packer *) = NULL;
    if (!strcmp (h->method, "ping"))
        method = s_sys_ping;
    else
    if (!strcmp (h->method, "services"))
        method = s_sys_services;
    else
    if (!strcmp (h->method, "stats"))
        method = s_sys_stats;
    if (!method) {
        s_send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                      "service 'sys' has no method '%s'", h->method);
        return;
    }
    self->stats.replies++;
    if (h->flags & SB_F_NO_REPLY)
        return;
    msgpack_sbuffer_clear (&self->sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->sbuf, msgpack_sbuffer_write);
    method (self, &pk);
    zmq_msg_t body;
    if (zmq_msg_init_size (&body, self->sbuf.size))
        return;
    memcpy (zmq_msg_data (&body), self->sbuf.data, self->sbuf.size);
    sb_header_t out;
    sb_header_init (&out, SB_CMD_REPLY);
    out.request_id = h->request_id;
    out.present |= SB_H_REQUEST_ID;
    if (h->present & SB_H_TRACE) {
        memcpy (out.trace, h->trace, sizeof out.trace);
        out.present |= SB_H_TRACE;
    }
    if (s_send (self, p, &out, &body))
        zmq_msg_close (&body);
}

/*  --------------------------------------------------------------------
    Receiving.  */

/*  Handles one decoded message from peer p (NULL if unknown).  */
static void
s_handle (engine_t *self, peer_t *p, const char *key, zmq_msg_t *id, sb_header_t *h,
          zmq_msg_t *body)
{
    uint32_t command = h->command;
    if (!p) {
        /*  Unknown peers: only these commands make a session, or a
            one-off request/publication.  */
        if (command == SB_CMD_HELLO || command == SB_CMD_READY || command == SB_CMD_SUBSCRIBE
        ||  command == SB_CMD_HEARTBEAT || command == SB_CMD_REQUEST) {
            p = s_peer_new (self, key, zmq_msg_data (id), zmq_msg_size (id));
            if (!p)
                return;
            if (command != SB_CMD_REQUEST)
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
                     ||  command == SB_CMD_HEARTBEAT))
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

    char key [2 * 255 + 1];
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

    if (nframes < 1 || nframes > 2)
        s_bad (self, R_FRAMES);
    else {
        sb_header_t h;
        sb_wire_reason_t reason = sb_header_decode (&h, zmq_msg_data (&self->frames [0]),
                                                    zmq_msg_size (&self->frames [0]));
        if (reason != SB_WIRE_OK)
            s_bad (self, reason);
        else
            s_handle (self, p, key, &id, &h, nframes == 2 ? &self->frames [1] : NULL);
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
    if (zsock_bind (self->router, "%s", a->bind) < 0) {
        snprintf (a->error, sizeof a->error, "cannot bind %.160s: %.60s", a->bind,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    char *endpoint = zsock_last_endpoint (self->router);
    snprintf (a->endpoint, sizeof a->endpoint, "%s", endpoint ? endpoint : a->bind);
    zstr_free (&endpoint);
    return 0;
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
    self->services = zhashx_new ();
    self->groups = zhashx_new ();
    msgpack_sbuffer_init (&self->sbuf);

    if (!self->peers || !self->services || !self->groups || s_engine_bind (self)) {
        self->args->rc = -1;
        s_engine_destroy (self);
        zsock_signal (pipe, 0);
        return;
    }
    self->args->rc = 0;
    zsock_signal (pipe, 0);

    int tick = self->hb / 4 > 0 ? self->hb / 4 : 1;
    self->next_tick = self->now + tick;
    zmq_pollitem_t items [] = {
        { self->sock, 0, ZMQ_POLLIN, 0 },
        { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 }
    };
    while (!self->stop) {
        int64_t wake = self->next_tick;
        if (self->heap_size && self->heap [0]->deadline < wake)
            wake = self->heap [0]->deadline;
        long timeout = wake > self->now ? (long) (wake - self->now) : 0;
        if (zmq_poll (items, 2, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        self->now = zclock_mono ();
        if (items [1].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->stop = true;
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
        if (self->now >= self->next_tick) {
            s_tick (self);
            s_reap (self);
            self->next_tick = self->now + tick;
        }
    }
    s_engine_destroy (self);
}

/*  --------------------------------------------------------------------
    Public API.  */

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
    a->config = c;

    self->actor = zactor_new (s_broker_actor, a);
    if (!self->actor || a->rc) {
        sb_error_set (err, SB_E_UNAVAILABLE, "%s", self->actor ? a->error : "cannot start broker thread");
        zactor_destroy (&self->actor);
        free (self);
        return NULL;
    }
    return self;
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
    free (self);
    *self_p = NULL;
}
