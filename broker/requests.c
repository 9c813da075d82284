/*  requests.c — requests: their pool, ids, deadlines, and REQUEST with
    the REPLY or ERROR that answers it.

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
    - A request keeps the frame its body came in (session.c says how
      bodies travel); which worker gets it is directory.c's choice.  The
      bytes of the bodies kept are charged to the caller (peer->held)
      while it is there: with what is in transit to it, they make the
      caller's budget (session.c), past which its requests are answered
      `overloaded` at once.
    - A deadline longer than --max-timeout is clamped to it (counted):
      nobody holds a queue slot or a worker's credit for 49 days.
*/
#include "engine.h"

#include <string.h>

/*  --------------------------------------------------------------------
    Request lists: a service's queue, a worker's in-flight list, a caller's requests.  */

void
sb__req_list_push_back (req_list_t *l, req_t *r)
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

void
sb__req_list_push_front (req_list_t *l, req_t *r)
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

void
sb__req_list_remove (req_list_t *l, req_t *r)
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

void
sb__caller_unlink (req_t *r)
{
    if (!r->caller)
        return;
    if (r->has_body)
        r->caller->held -= r->body_size;
    if (r->cprev)
        r->cprev->cnext = r->cnext;
    else
        r->caller->calls = r->cnext;
    if (r->cnext)
        r->cnext->cprev = r->cprev;
    r->cnext = r->cprev = NULL;
    r->caller = NULL;
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
    if (sb__grow ((void ***) &self->heap, self->heap_size, &self->heap_alloc))
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

uint64_t
sb__req_id (const req_t *r)
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
/*  Lets go of the body the request keeps, if any (and of its charge to
    the caller).  */
void
sb__req_body_drop (req_t *r)
{
    if (!r->has_body)
        return;
    if (r->caller)
        r->caller->held -= r->body_size;
    zmq_msg_close (&r->body);
    r->has_body = false;
}

void
sb__req_free (engine_t *self, req_t *r)
{
    sb__caller_unlink (r);
    s_heap_remove (self, r);
    sb__req_body_drop (r);
    r->state = REQ_FREE;
    r->gen = r->gen + 1 ? r->gen + 1 : 1;
    r->next = self->free_list;
    self->free_list = r;
    self->live--;
}

/*  Answers a live request with an error and frees it (the caller must
    have taken it off its queue or in-flight list).  */
void
sb__req_fail (engine_t *self, req_t *r, sb_code_t code, const char *text)
{
    sb__send_error (self, r->caller, &r->header, r->caller_id, code, "%s", text);
    sb__req_free (self, r);
}

/*  True when the request can still be sent (again): it has no body, or
    the body is still held.  */
bool
sb__req_sendable (const req_t *r)
{
    return !r->with_body || r->has_body;
}

/*  --------------------------------------------------------------------
    REQUEST, and the REPLY or ERROR that answers it.  */

void
sb__on_request (engine_t *self, peer_t *p, sb_header_t *h, const sb_body_t *body)
{
    self->stats.requests++;
    if (!(h->present & SB_H_REQUEST_ID)) {
        sb__bad (self, R_MISSING_FIELD);
        return;
    }
    if (!(h->present & SB_H_SERVICE) || !(h->present & SB_H_METHOD)) {
        sb__bad (self, R_MISSING_FIELD);
        sb__send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST, "REQUEST needs service and method");
        return;
    }
    if (!strcmp (h->service, "sys")) {
        /*  Certificates are public and every member needs them to seal
            (docs/security.md 5.1): sys.keys is open to all admitted; so
            is sys.describe, which every caller asks for the contract of
            what it calls.  */
        if (self->secure && strcmp (h->method, "keys") && strcmp (h->method, "describe")
        &&  !sb__may_call (self, p, NULL, 0, h))
            sb__forbid_call (self, p, h);
        else
            sb__on_sys (self, p, h, body);
        return;
    }
    service_t *s = sb__service_lookup (self, h->service);
    if (!s) {
        if (self->secure && !sb__may_call (self, p, NULL, 0, h))
            sb__forbid_call (self, p, h);
        else
        if (zhashx_lookup (self->known, h->service))
            sb__send_unrouted (self, p, h, h->request_id, SB_E_UNAVAILABLE,
                               "service '%s' has no instance now", h->service);
        else
            sb__send_error (self, p, h, h->request_id, SB_E_NOT_FOUND, "no service '%s'",
                            h->service);
        return;
    }
    int method = sb__method_index (s, h->method);
    if (method < 0 || !(s->mask & ((uint64_t) 1 << method))) {
        if (self->secure && !sb__may_call (self, p, NULL, 0, h))
            sb__forbid_call (self, p, h);
        else
            sb__send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                          "service '%s' has no method '%s'", h->service, h->method);
        return;
    }
    if (self->secure && !sb__may_call (self, p, s, method, h)) {
        sb__forbid_call (self, p, h);
        return;
    }
    if (sb__over_budget (self, p)) {
        self->stats.over_budget++;
        sb__send_error (self, p, h, h->request_id, SB_E_OVERLOADED,
                        "caller holds %zu bytes in this broker, its budget is %zu: read the answers",
                        p->held + sb__in_transit (p), self->args->config.peer_budget);
        return;
    }
    worker_t *w = s->queue.head ? NULL : sb__pick_worker (self, s, method);
    if (!w && s->queue.count >= self->args->config.queue_max) {
        sb__send_error (self, p, h, h->request_id, SB_E_OVERLOADED,
                      "queue of '%s' is full", h->service);
        return;
    }
    req_t *r = s_req_new (self);
    if (!r) {
        sb__send_error (self, p, h, h->request_id, SB_E_OVERLOADED, "broker is full");
        return;
    }
    r->header = *h;
    r->header.body = NULL;          /* it points into the frame */
    r->caller_id = h->request_id;
    r->service = s;
    r->method = method;
    r->idempotent = (h->flags & SB_F_IDEMPOTENT) || (s->methods [method].flags & SB_F_IDEMPOTENT);
    uint32_t timeout = h->timeout_ms ? h->timeout_ms : (uint32_t) self->args->config.default_timeout_ms;
    if (timeout > (uint32_t) self->args->config.max_timeout_ms) {
        timeout = (uint32_t) self->args->config.max_timeout_ms;
        self->stats.timeouts_clamped++;
    }
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
    if (r->has_body)
        p->held += r->body_size;
    if (s_heap_push (self, r)) {
        sb__req_fail (self, r, SB_E_OVERLOADED, "broker is full");
        return;
    }
    if (w && sb__dispatch_to (self, r, w) == 0)
        return;
    if (!sb__req_sendable (r))
        sb__req_fail (self, r, SB_E_UNAVAILABLE, "worker unreachable");
    else
        sb__req_list_push_back (&s->queue, r);
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
    returned (0, or -1 as sb__send_frames).  */
static int
s_forward_reply (engine_t *self, peer_t *caller, const sb_header_t *h, const sb_body_t *body,
                 uint64_t caller_id)
{
    zmq_msg_t *frame = &self->in.frames [0];
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
    return sb__send_frames (self, caller, frame, 1);
}

/*  REPLY or ERROR from a worker.  */
void
sb__on_answer (engine_t *self, peer_t *p, sb_header_t *h, const sb_body_t *body)
{
    req_t *r = (h->present & SB_H_REQUEST_ID) ? s_req_lookup (self, h->request_id) : NULL;
    if (!r) {
        self->stats.late_replies++;
        return;
    }
    if (r->state == REQ_QUEUED || r->worker->peer != p) {
        sb__bad (self, R_FOREIGN_REPLY);
        return;
    }
    worker_t *w = r->worker;
    sb__req_list_remove (&w->inflight, r);
    w->in_flight--;
    if (r->state == REQ_EXPIRED) {
        self->stats.late_replies++;
        sb__req_free (self, r);
    }
    else
    if (!r->caller) {
        self->stats.orphaned_replies++;
        sb__req_free (self, r);
    }
    else
    if (h->command == SB_CMD_REPLY && !(r->header.flags & SB_F_NO_REPLY)
    &&  s_forward_reply (self, r->caller, h, body, r->caller_id) <= 0) {
        self->stats.replies++;      /* sent, or counted as a send failure */
        sb__req_free (self, r);
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
            sb__send (self, r->caller, &out, body);
        sb__req_free (self, r);
    }
    sb__service_dispatch (self, w->service);
}

/*  --------------------------------------------------------------------
    Deadlines.  */

void
sb__expire (engine_t *self)
{
    while (self->heap_size && self->heap [0]->deadline <= self->now) {
        req_t *r = self->heap [0];
        s_heap_remove (self, r);
        if (r->state == REQ_QUEUED) {
            self->stats.timeouts++;
            sb__req_list_remove (&r->service->queue, r);
            sb__req_fail (self, r, SB_E_TIMEOUT, "deadline passed while queued");
        }
        else
        if (r->state == REQ_INFLIGHT) {
            /*  Keep the entry, and the worker's credit, until the late
                answer comes or a grace period passes.  */
            self->stats.timeouts++;
            sb__send_error (self, r->caller, &r->header, r->caller_id, SB_E_TIMEOUT,
                          "deadline passed in service '%s'", r->service->name);
            sb__req_body_drop (r);
            sb__caller_unlink (r);
            r->state = REQ_EXPIRED;
            r->deadline = self->now + self->args->config.default_timeout_ms;
            s_heap_push (self, r);
        }
        else {
            /*  Expired and never answered: give the credit back.  */
            worker_t *w = r->worker;
            sb__req_list_remove (&w->inflight, r);
            w->in_flight--;
            sb__req_free (self, r);
            sb__service_dispatch (self, w->service);
        }
    }
}
