/*  session.c — the broker's peers: their sessions, heartbeats and sending.

    - Peers are found by routing id (its bytes, in a zhashx).  A peer
      that said HELLO (or was welcomed after READY, SUBSCRIBE, HEARTBEAT)
      gets heartbeats and is declared dead after 3 silent intervals.  A
      peer that only sends REQUEST or PUBLISH is "anonymous": it is
      forgotten when it has been silent for 3 intervals and has no request
      outstanding.
    - A peer that cannot be reached, said BYE or fell silent is "doomed":
      it is destroyed by sb__reap after the batch or the tick, not in the
      middle of a handler that may still hold it.
    - Bodies are never decoded (READY and DIRECTORY aside, which are for
      the broker).  A body of at most SB_INLINE_MAX bytes travels inside
      the header frame: a request keeps the whole received frame (moved,
      not copied) and remembers where its body lies; each send builds one
      frame of the new header and the body bytes (one copy of at most
      4 KiB).  A larger body is a frame of its own, sent on as a
      zmq_msg_copy (reference-counted: no bytes copied).  Whatever is
      received small as a second frame goes out inline.  A request keeps
      its body until sent, an idempotent one until answered (re-dispatch).
      The framing is the runtime's (wire/frame.h), shared with every
      link: the broker and its peers cannot disagree on it.
    - Budgets: libzmq's queues count messages, not bytes, and a peer that
      does not read lets them grow.  So a large body goes to libzmq as a
      zmq_msg_init_data frame whose free function (run on libzmq's I/O
      thread once the bytes are written out, or dropped with the
      connection) takes them off the peer's account_t.  A peer whose
      bytes in transit plus the bodies of its own requests the broker
      keeps (requests.c) reach --peer-budget gets no more large bodies
      (counted over_budget) and its new requests are answered
      `overloaded`; small messages are bounded by the HWM.  Cost: one
      malloc and two atomic adds per large body.  When many large bodies
      were let go (a slow consumer left), the tick hands the freed memory
      back to the system (glibc's malloc_trim): otherwise the allocator
      may keep it, and the broker's RSS with it.
*/
#include "engine.h"

#include <errno.h>
#if defined (__GLIBC__)
#   include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*  --------------------------------------------------------------------
    Budgets.  */

/*  A large body on its way out: the received frame it lies in (a
    reference-counted copy) and the account it is charged to.  */
typedef struct {
    zmq_msg_t frame;
    account_t *account;
    size_t size;
} transit_t;

static void
s_account_release (account_t *account)
{
    if (__atomic_sub_fetch (&account->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free (account);
}

/*  Bytes of large bodies let go since the last trim, process-wide (a
    hint only: several brokers in one process share it).  */
static size_t s_released;
#define S_TRIM_AFTER ((size_t) 16 * 1024 * 1024)

/*  libzmq's free function for a body in transit: any thread.  */
static void
s_transit_free (void *data, void *hint)
{
    (void) data;
    transit_t *t = (transit_t *) hint;
    __atomic_add_fetch (&s_released, t->size, __ATOMIC_RELAXED);
    __atomic_sub_fetch (&t->account->bytes, t->size, __ATOMIC_RELAXED);
    zmq_msg_close (&t->frame);
    s_account_release (t->account);
    free (t);
}

/*  From the tick: once at least S_TRIM_AFTER bytes of large bodies were
    let go, gives free memory back to the system.  */
void
sb__trim (void)
{
    if (__atomic_load_n (&s_released, __ATOMIC_RELAXED) < S_TRIM_AFTER)
        return;
    __atomic_store_n (&s_released, 0, __ATOMIC_RELAXED);
#if defined (__GLIBC__)
    malloc_trim (0);
#endif
}

size_t
sb__in_transit (const peer_t *peer)
{
    return peer->account ? __atomic_load_n (&peer->account->bytes, __ATOMIC_RELAXED) : 0;
}

/*  True when what the broker holds for the peer (its kept request bodies
    and large bodies in transit to it) has reached the budget.  Logs the
    first time, once per peer.  */
bool
sb__over_budget (engine_t *self, peer_t *peer)
{
    size_t held = peer->held + sb__in_transit (peer);
    if (held < self->args->config.peer_budget)
        return false;
    if (!peer->over_logged) {
        peer->over_logged = true;
        zsys_warning ("broker %s: peer '%s' holds %zu bytes, over its budget of %zu: its requests "
                      "are answered 'overloaded' and large bodies to it dropped until it reads",
                      self->args->name, peer->name [0] ? peer->name : "(anonymous)", held,
                      self->args->config.peer_budget);
    }
    return true;
}

/*  frame := a frame of its own for the large body in src, charged to the
    peer until libzmq is done with it.  0, or -1 (frame not initialised). */
static int
s_transit_frame (peer_t *peer, zmq_msg_t *frame, const sb_body_t *src)
{
    transit_t *t = malloc (sizeof *t);
    if (!t)
        return -1;
    zmq_msg_init (&t->frame);
    zmq_msg_copy (&t->frame, src->frame);
    t->account = peer->account;
    t->size = src->size;
    if (zmq_msg_init_data (frame, (void *) src->data, src->size, s_transit_free, t)) {
        zmq_msg_close (&t->frame);
        free (t);
        return -1;
    }
    __atomic_add_fetch (&t->account->refs, 1, __ATOMIC_ACQ_REL);
    __atomic_add_fetch (&t->account->bytes, t->size, __ATOMIC_RELAXED);
    return 0;
}

/*  --------------------------------------------------------------------
    Sending.  */

void
sb__doom (engine_t *self, peer_t *peer)
{
    peer->doomed = true;
    self->doomed = true;
}

/*  Sends the frames of a message to peer, after its routing id: 0 when
    sent (the frames are consumed), or -1 when the peer is unreachable (it
    is then doomed) or its send queue is full (the frames are untouched). */
int
sb__send_frames (engine_t *self, peer_t *peer, zmq_msg_t *frames, int nframes)
{
    if (zmq_send (self->sock, peer->id, peer->id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno == EHOSTUNREACH) {
            self->stats.unreachable++;
            sb__doom (self, peer);
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
    counted copy charged to the peer's budget.  0 when sent, or -1 when
    the peer is unreachable (it is then doomed), its send queue is full,
    or a large body would go to a peer over its budget (counted
    over_budget).  */
int
sb__send (engine_t *self, peer_t *peer, const sb_header_t *h, const sb_body_t *body)
{
    if (peer->doomed)
        return -1;
    if (body && body->size == 0)
        body = NULL;
    if (body && body->size > SB_INLINE_MAX && sb__over_budget (self, peer)) {
        self->stats.over_budget++;
        return -1;
    }
    /*  The whole message is built before the routing id goes: once that is
        accepted the rest must follow.  */
    sb_frames_t out;
    if (sb_frame_build (h, body, &out))
        return -1;
    if (out.count == 2 && body->frame) {
        /*  The body frame goes out charged to the peer's budget.  */
        zmq_msg_close (&out.frames [1]);
        out.count = 1;
        if (s_transit_frame (peer, &out.frames [1], body)) {
            sb_frame_close (&out);
            return -1;
        }
        out.count = 2;
    }
    if (sb__send_frames (self, peer, out.frames, out.count)) {
        sb_frame_close (&out);
        return -1;
    }
    return 0;
}

void
sb__send_simple (engine_t *self, peer_t *peer, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_WELCOME) {
        sb_header_set_name (&h, self->args->name);
        h.heartbeat_ms = (uint32_t) self->hb;
    }
    sb__send (self, peer, &h, NULL);
}

/*  Answers a caller's request with an error (unless it asked for no
    reply), with the given flags.  */
static void
s_send_error_v (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
                sb_code_t code, uint32_t flags, const char *fmt, va_list args)
{
    self->stats.errors [code]++;
    if (!caller || (req->flags & SB_F_NO_REPLY))
        return;
    sb_header_t h;
    sb_header_init (&h, SB_CMD_ERROR);
    h.request_id = request_id;
    h.present |= SB_H_REQUEST_ID;
    h.code = code;
    h.flags = flags;
    if (req->present & SB_H_SERVICE)
        sb_header_set_service (&h, req->service);
    if (req->present & SB_H_TRACE) {
        memcpy (h.trace, req->trace, sizeof h.trace);
        h.present |= SB_H_TRACE;
    }
    char text [SB_TEXT_MAX + 1];
    vsnprintf (text, sizeof text, fmt, args);
    sb_header_set_text (&h, text);
    sb__send (self, caller, &h, NULL);
}

void
sb__send_error (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
              sb_code_t code, const char *fmt, ...)
{
    /*  not_found is only ever this broker's own answer, before any
        dispatch: the caller's runtime may try another broker (a broker
        that has just started may not have heard from the service yet).  */
    va_list args;
    va_start (args, fmt);
    s_send_error_v (self, caller, req, request_id, code,
                    code == SB_E_NOT_FOUND ? SB_F_UNROUTED : 0, fmt, args);
    va_end (args);
}

void
sb__send_unrouted (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
                   sb_code_t code, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_send_error_v (self, caller, req, request_id, code, SB_F_UNROUTED, fmt, args);
    va_end (args);
}

/*  --------------------------------------------------------------------
    Peers.  */

/*  The peers table is keyed by routing id bytes, length first: one
    lookup per message, so no hex and no strings (FNV-1a, memcmp).  */
void
sb__peer_key (uint8_t *key, const uint8_t *id, size_t size)
{
    key [0] = (uint8_t) size;
    memcpy (key + 1, id, size);
}

size_t
sb__peer_key_hash (const void *key)
{
    const uint8_t *k = key;
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i <= k [0]; i++)
        hash = (hash ^ k [i]) * 16777619u;
    return hash;
}

int
sb__peer_key_compare (const void *a, const void *b)
{
    const uint8_t *x = a, *y = b;
    return x [0] != y [0] ? 1 : memcmp (x + 1, y + 1, x [0]);
}

peer_t *
sb__peer_new (engine_t *self, const uint8_t *key, const uint8_t *id, size_t size)
{
    peer_t *p = calloc (1, sizeof *p);
    if (!p)
        return NULL;
    p->account = calloc (1, sizeof *p->account);
    if (!p->account) {
        free (p);
        return NULL;
    }
    p->account->refs = 1;
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
void
sb__peer_destroy (engine_t *self, peer_t *p)
{
    while (p->workers) {
        worker_t *w = p->workers;
        p->workers = w->peer_next;
        sb__worker_remove (self, w);
    }
    while (p->subs) {
        sub_t *sub = p->subs;
        p->subs = sub->peer_next;
        sb__sub_remove (self, sub);
    }
    while (p->calls) {
        req_t *r = p->calls;
        sb__caller_unlink (r);
        if (r->state == REQ_QUEUED) {
            sb__req_list_remove (&r->service->queue, r);
            sb__req_free (self, r);
        }
    }
    sb__remote_free (&p->dir);
    zhashx_destroy (&p->by_service);
    s_account_release (p->account);
    free (p->cert);
    zhashx_delete (self->peers, p->key);
    free (p);
}

/*  Destroys every doomed peer.  */
void
sb__reap (engine_t *self)
{
    if (!self->doomed)
        return;
    self->doomed = false;
    zlistx_t *dead = zlistx_new ();
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->doomed)
            zlistx_add_end (dead, p);
    for (peer_t *p = zlistx_first (dead); p; p = zlistx_next (dead))
        sb__peer_destroy (self, p);
    zlistx_destroy (&dead);
}

/*  Registers the peer as a session member and answers WELCOME.  */
void
sb__welcome (engine_t *self, peer_t *p, const sb_header_t *h)
{
    p->welcomed = true;
    if (h->present & SB_H_NAME)
        strcpy (p->name, h->name);
    sb__send_simple (self, p, SB_CMD_WELCOME);
}

/*  --------------------------------------------------------------------
    Heartbeats.  */

/*  Heartbeats out, dead peers found.  */
void
sb__peers_tick (engine_t *self)
{
    int64_t dead_after = 3 * (int64_t) self->hb;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers)) {
        int64_t silent = self->now - p->last_heard;
        if (p->welcomed) {
            if (silent >= dead_after)
                sb__doom (self, p);
            else
            if (self->now - p->last_sent >= self->hb)
                sb__send_simple (self, p, SB_CMD_HEARTBEAT);
        }
        else
        if (silent >= dead_after && !p->calls)
            sb__doom (self, p);
    }
}
