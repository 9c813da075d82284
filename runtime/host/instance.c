/*  instance.c — a service instance: one thread running one plugin's handlers.

    The actor is a CZMQ zactor.  Its thread owns a peer (peer.h: one link
    per broker) and turns the peer's loop (bus/loop.h) over the actor
    pipe, the fds that handlers asked to watch and the links, with a
    timeout set by the earliest of: link housekeeping, call deadlines,
    timers and deferred requests' deadlines.  Everything a handler can reach (requests,
    replies, calls, timers, watches) runs on that thread, so handlers need
    no locks and never run concurrently.

    A request's life: REQUEST arrives on a link; the method is looked up
    (unknown: bad_request), the body pre-scanned and decoded (bad:
    bad_request, empty: nil), the handler runs.  After it returns the
    request is answered (reply nil if the handler said nothing, internal
    if it failed without answering) and freed, unless it was deferred:
    then it waits in `deferred` until answered.  A deferred request whose
    deadline passes (plus S_EXPIRY_GRACE_MS) is answered `timeout` by the
    runtime (so the broker's credit is freed even if the plugin forgets
    it) and the plugin's late
    answer is dropped and frees it.  Answers go back on the link the
    request came from (the request id is that broker's), looked up by
    link id so that a link removed meanwhile is simply gone.

    Sealing (sealer.h): an instance with an identity opens sealed
    requests in s_on_request (refusing plaintext ones, and holding those
    whose caller's certificate is being looked up: they come back
    through the same callback) and seals its replies in s_send_answer
    for the caller's key, bound to the request's nonce.  Schema
    validation (runtime/schema/schema.h) runs in s_on_request between decoding
    and the handler when the host gave a schema set: each method's schema
    is found once at start, a violation is answered bad_request with its
    path and the handler never runs.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

/*  The broker owns the caller's deadline and answers it; the runtime's
    own expiry of a deferred request is a backstop that frees the
    broker's credit, S_EXPIRY_GRACE_MS later, so that the two never race
    and the caller always gets the broker's answer (the backstop's then
    counts as a late reply there).  */
#define S_EXPIRY_GRACE_MS 200

#define S_WATCH_MAX 64
#define S_METHODS_MAX 64                /* the broker takes at most 64 (protocol.md 5.2) */
/*  Freed requests kept for reuse, and the largest reply buffer a kept
    request may hold on to.  */
#define S_SPARE_MAX 32
#define S_SPARE_BUFFER_MAX 65536
/*  Replies up to this size are copied into the message and the buffer
    is kept; larger ones are moved.  */
#define S_COPY_MAX 8192
/*  First chunk of the decoding zone.  */
#define S_ZONE_CHUNK 4096

struct sb_request {
    sb_actor_t *actor;
    const sb_method_t *method;
    uint32_t link_id;
    uint64_t id;                    /* the broker's request id */
    int64_t received;
    int64_t deadline;               /* 0: none */
    bool has_trace;
    uint8_t trace [16];
    bool sealed;                    /* answer sealed for caller_pk, bound to nonce */
    uint8_t caller_pk [SB_KEY_SIZE];
    uint8_t nonce [SB_SEAL_NONCE_SIZE];
    char trace_hex [33];            /* formatted on first sb_request_trace_id */
    bool in_handler;
    const msgpack_object *body;     /* the decoded request, during the handler */
    bool deferred;
    bool closed;                    /* answered */
    bool expired;                   /* answered by the runtime for the plugin */
    void *deferred_handle;          /* in actor->deferred */
    bool begun;
    msgpack_sbuffer buffer;
    msgpack_packer packer;
    sb_request_t *next_spare;
};

typedef struct {
    int64_t due;
    uint64_t seq;
    void (*callback) (void *arg);
    void *arg;
} s_timer_t;

typedef struct {
    int fd;
    bool dropped;
    void (*callback) (int fd, void *arg);
    void *arg;
} s_watch_t;

struct sb_actor {
    const sb_service_t *service;
    int instance;
    int capacity;
    sb_peer_t *peer;
    sb_discovery_t *discovery;      /* NULL: fixed endpoints, no beacons */
    void *state;
    zlistx_t *timers;               /* s_timer_t, sorted by due */
    uint64_t timer_seq;
    s_watch_t watches [S_WATCH_MAX];
    size_t nwatches;
    zlistx_t *deferred;             /* sb_request_t */
    int64_t next_expiry;
    msgpack_sbuffer ready;          /* READY body, encoded once */
    /*  Per method (same index as service->methods): its schema or NULL. */
    const sb_method_schema_t *schemas [S_METHODS_MAX];
    bool validate_replies;
    msgpack_zone zone;              /* decodes request bodies */
    bool zone_ready;
    sb_request_t *spares;           /* freed requests, for reuse */
    size_t nspares;
};

struct sb_instance {
    zactor_t *zactor;
    const sb_service_t *service;
    const sb_config_t *config;
    const char *endpoints;
    int instance;
    int capacity;
    int start_rc;                   /* written by the actor before it signals */
    sb_sealer_t *sealer;            /* likewise; lives as long as the actor */
    sb_error_t start_err;
    sb_instance_options_t options;
};

/*  --------------------------------------------------------------------
    Answers.  */

static int s_error (sb_request_t *req, sb_code_t code, const char *text);

/*  Debug mode only: -1 (and the request answered internal) if the reply
    body does not conform to the method's reply schema.  */
static int
s_reply_invalid (sb_request_t *req, const void *data, size_t size)
{
    sb_actor_t *self = req->actor;
    const sb_method_schema_t *schema = self->validate_replies
                                     ? self->schemas [req->method - self->service->methods] : NULL;
    if (!schema)
        return 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = 0;
    sb_error_t err = { 0 };
    if (size && msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS)
        rc = sb_error_set (&err, SB_E_INTERNAL, "reply is not MessagePack");
    else
        rc = sb_method_schema_validate_reply (schema, size ? &unpacked.data : NULL, &err);
    msgpack_unpacked_destroy (&unpacked);
    if (rc)
        s_error (req, SB_E_INTERNAL, err.text);
    return rc;
}

/*  A request as new (all zero, an empty reply buffer), from the spares
    when there is one.  */
static sb_request_t *
s_request_new (sb_actor_t *self)
{
    sb_request_t *req = self->spares;
    if (req) {
        self->spares = req->next_spare;
        self->nspares--;
        msgpack_sbuffer buffer = req->buffer;
        memset (req, 0, sizeof *req);
        req->buffer = buffer;
        msgpack_sbuffer_clear (&req->buffer);
    }
    else {
        req = calloc (1, sizeof *req);
        if (!req)
            return NULL;
        msgpack_sbuffer_init (&req->buffer);
    }
    req->actor = self;
    msgpack_packer_init (&req->packer, &req->buffer, msgpack_sbuffer_write);
    return req;
}

static void
s_request_free (sb_request_t *req)
{
    sb_actor_t *self = req->actor;
    if (req->deferred_handle)
        zlistx_detach (self->deferred, req->deferred_handle);
    if (self->nspares < S_SPARE_MAX) {
        if (req->buffer.alloc > S_SPARE_BUFFER_MAX) {
            msgpack_sbuffer_destroy (&req->buffer);
            msgpack_sbuffer_init (&req->buffer);
        }
        req->deferred_handle = NULL;
        req->next_spare = self->spares;
        self->spares = req;
        self->nspares++;
        return;
    }
    msgpack_sbuffer_destroy (&req->buffer);
    free (req);
}

static void
s_free_sbuffer (void *data, void *hint)
{
    free (data);
}

/*  Sends REPLY (body from `buffer` when not NULL, moved) or ERROR.  */
static void
s_send_answer (sb_request_t *req, msgpack_sbuffer *buffer, sb_code_t code, const char *text)
{
    sb_link_t *link = sb_peer_link (req->actor->peer, req->link_id);
    if (!link)
        return;                     /* broker gone: it answers for us */
    sb_header_t h;
    sb_header_init (&h, code ? SB_CMD_ERROR : SB_CMD_REPLY);
    h.request_id = req->id;
    h.present |= SB_H_REQUEST_ID;
    if (req->has_trace) {
        memcpy (h.trace, req->trace, 16);
        h.present |= SB_H_TRACE;
    }
    if (code) {
        h.code = code;
        h.present |= SB_H_CODE;
        sb_header_set_text (&h, text);
        sb_header_set_service (&h, req->actor->service->name);
        sb_link_send (link, &h, NULL);
        return;
    }
    if (req->sealed) {
        /*  Even an empty reply is sealed: the caller requires it.  */
        sb_sealer_t *sealer = sb_peer__sealer (req->actor->peer);
        zmq_msg_t body;
        sb_error_t err;
        bool has = buffer && buffer->size;
        if (sb_sealer_seal (sealer, req->caller_pk, req->nonce, SB_SEAL_NONCE_SIZE,
                            has ? buffer->data : NULL, has ? buffer->size : 0, &body, NULL, &err))
            return;
        h.flags |= SB_F_SEALED;
        memcpy (h.key_id, sb_sealer_key_id (sealer), SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        h.present |= SB_H_KEY_ID;
        if (sb_link_send (link, &h, &body))
            zmq_msg_close (&body);
        return;
    }
    if (buffer && buffer->size <= SB_INLINE_MAX)
        /*  Copied once, straight into the frame; the buffer stays.  */
        sb_link_send_bytes (link, &h, buffer->data, buffer->size);
    else
    if (buffer) {
        /*  A small body is copied, so the buffer stays for the next
            request; a large one is moved.  */
        zmq_msg_t body;
        size_t size = buffer->size;
        if (size <= S_COPY_MAX) {
            if (zmq_msg_init_size (&body, size))
                return;
            memcpy (zmq_msg_data (&body), buffer->data, size);
        }
        else {
            char *data = msgpack_sbuffer_release (buffer);
            if (zmq_msg_init_data (&body, data, size, s_free_sbuffer, NULL)) {
                free (data);
                return;
            }
        }
        sb_link_send (link, &h, &body);
        zmq_msg_close (&body);
    }
    else
        sb_link_send (link, &h, NULL);
}

/*  Common gate of every answer: -1 if the request cannot be answered
    now.  An expired deferred request is freed here (the plugin's late
    answer is the last it will do with it).  */
static int
s_answer_gate (sb_request_t *req)
{
    if (!req) {
        errno = EINVAL;
        return -1;
    }
    if (req->expired) {
        if (!req->in_handler)
            s_request_free (req);
        errno = ETIMEDOUT;
        return -1;
    }
    if (req->closed) {
        errno = EALREADY;
        return -1;
    }
    return 0;
}

/*  After an answer: a deferred request answered outside its handler is
    done with.  */
static void
s_answered (sb_request_t *req)
{
    req->closed = true;
    if (req->deferred && !req->in_handler)
        s_request_free (req);
}

static int
s_error (sb_request_t *req, sb_code_t code, const char *text)
{
    if (code < 1 || code > SB_E_CODE_MAX)
        code = SB_E_INTERNAL;
    s_send_answer (req, NULL, code, text);
    s_answered (req);
    return 0;
}

msgpack_packer *
sb_reply_begin (sb_request_t *req)
{
    if (!req || (req->closed && !req->expired))
        return NULL;
    if (req->begun)
        msgpack_sbuffer_clear (&req->buffer);
    req->begun = true;
    return &req->packer;
}

int
sb_reply_send (sb_request_t *req)
{
    if (s_answer_gate (req))
        return -1;
    if (!req->begun || sb_wire_check (req->buffer.data, req->buffer.size, SB_DEPTH_MAX)) {
        s_error (req, SB_E_INTERNAL, "the handler packed no valid MessagePack reply");
        return -1;
    }
    if (req->buffer.size > SB_BODY_MAX_DEFAULT) {
        s_error (req, SB_E_INTERNAL, "reply too large");
        return -1;
    }
    if (s_reply_invalid (req, req->buffer.data, req->buffer.size))
        return -1;
    s_send_answer (req, &req->buffer, SB_OK, NULL);
    s_answered (req);
    return 0;
}

int
sb_reply_bytes (sb_request_t *req, const void *data, size_t size)
{
    if (s_answer_gate (req))
        return -1;
    if (size > SB_BODY_MAX_DEFAULT || (size > 0 && (!data || sb_wire_check (data, size, SB_DEPTH_MAX)))) {
        s_error (req, SB_E_INTERNAL, "the handler's reply is not one valid MessagePack object");
        return -1;
    }
    if (s_reply_invalid (req, data, size))
        return -1;
    msgpack_sbuffer_clear (&req->buffer);
    if (size)
        msgpack_sbuffer_write (&req->buffer, data, size);
    s_send_answer (req, &req->buffer, SB_OK, NULL);
    s_answered (req);
    return 0;
}

int
sb_request_error (sb_request_t *req, sb_code_t code, const char *fmt, ...)
{
    if (s_answer_gate (req))
        return -1;
    char text [SB_TEXT_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt ? fmt : "", args);
    va_end (args);
    return s_error (req, code, text);
}

const msgpack_object *
sb__request_body (const sb_request_t *req)
{
    return req && req->in_handler ? req->body : NULL;
}

sb_request_t *
sb_request_defer (sb_request_t *req)
{
    if (!req || req->closed)
        return NULL;
    req->deferred = true;
    return req;
}

const char *
sb_request_service (const sb_request_t *req)
{
    return req->actor->service->name;
}

const char *
sb_request_method (const sb_request_t *req)
{
    return req->method->name;
}

int64_t
sb_request_remaining_ms (const sb_request_t *req)
{
    if (!req->deadline)
        return INT64_MAX;
    int64_t left = req->deadline - zclock_mono ();
    return left > 0 ? left : 0;
}

const char *
sb_request_trace_id (const sb_request_t *req)
{
    /*  Formatted here rather than per request: few handlers ask.  The
        request is never a const object, the const only promises callers
        that nothing they can see changes.  */
    static const char digits [] = "0123456789abcdef";
    sb_request_t *self = (sb_request_t *) req;
    if (self->has_trace && !self->trace_hex [0]) {
        for (int i = 0; i < 16; i++) {
            self->trace_hex [2 * i] = digits [self->trace [i] >> 4];
            self->trace_hex [2 * i + 1] = digits [self->trace [i] & 15];
        }
        self->trace_hex [32] = 0;
    }
    return self->trace_hex;
}

sb_actor_t *
sb_request_actor (const sb_request_t *req)
{
    return req->actor;
}

/*  --------------------------------------------------------------------
    Requests.  */

static void
s_refuse (sb_actor_t *self, sb_link_t *link, const sb_header_t *h, sb_code_t code, const char *text)
{
    sb_request_t req = { .actor = self, .link_id = sb_link_id (link), .id = h->request_id,
                         .has_trace = (h->present & SB_H_TRACE) != 0 };
    memcpy (req.trace, h->trace, 16);
    s_send_answer (&req, NULL, code, text);
}

static void
s_on_request (sb_link_t *link, const sb_header_t *h, zmq_msg_t *body, void *arg)
{
    sb_actor_t *self = arg;
    if (!streq (h->service, self->service->name)) {
        s_refuse (self, link, h, SB_E_NOT_FOUND, "this worker does not offer that service");
        return;
    }
    const sb_method_t *method = NULL;
    for (const sb_method_t *m = self->service->methods; m->name; m++)
        if (streq (m->name, h->method)) {
            method = m;
            break;
        }
    if (!method) {
        char text [SB_TEXT_MAX + 1];
        snprintf (text, sizeof text, "%s has no method '%s'", self->service->name, h->method);
        s_refuse (self, link, h, SB_E_BAD_REQUEST, text);
        return;
    }
    sb_sealer_t *sealer = sb_peer__sealer (self->peer);
    if (!sealer && (h->flags & SB_F_SEALED)) {
        s_refuse (self, link, h, SB_E_BAD_REQUEST,
                  "this worker has no keys: it cannot open sealed bodies");
        return;
    }
    /*  Opened into `plain`, which the decoded object borrows from until
        the handler has run.  */
    zmq_msg_t plain;
    zmq_msg_init (&plain);
    uint8_t caller_pk [SB_KEY_SIZE], nonce [SB_SEAL_NONCE_SIZE];
    if (sealer) {
        sb_error_t err;
        int opened = sb_sealer_open_request (sealer, sb_link_id (link), h, body, &plain, caller_pk, nonce, &err);
        if (opened <= 0) {
            if (opened < 0)
                s_refuse (self, link, h, err.code, err.text);
            zmq_msg_close (&plain);
            return;
        }
        body = &plain;
    }
    /*  Handlers never dispatch the actor's own links, so one zone
        serves every request; it is cleared after each.  */
    msgpack_object obj;
    if (sb_wire_decode_zone (zmq_msg_data (body), zmq_msg_size (body), &self->zone, &obj)) {
        msgpack_zone_clear (&self->zone);
        zmq_msg_close (&plain);
        s_refuse (self, link, h, SB_E_BAD_REQUEST, "request body is not valid MessagePack");
        return;
    }
    const sb_method_schema_t *schema = self->schemas [method - self->service->methods];
    if (schema) {
        sb_error_t err;
        if (sb_method_schema_validate_request (schema, &obj, &err)) {
            msgpack_zone_clear (&self->zone);
            zmq_msg_close (&plain);
            s_refuse (self, link, h, SB_E_BAD_REQUEST, err.text);
            return;
        }
    }
    sb_request_t *req = s_request_new (self);
    if (!req) {
        msgpack_zone_clear (&self->zone);
        zmq_msg_close (&plain);
        s_refuse (self, link, h, SB_E_INTERNAL, "out of memory");
        return;
    }
    if (sealer) {
        req->sealed = true;
        memcpy (req->caller_pk, caller_pk, SB_KEY_SIZE);
        memcpy (req->nonce, nonce, SB_SEAL_NONCE_SIZE);
    }
    req->method = method;
    req->link_id = sb_link_id (link);
    req->id = h->request_id;
    req->received = zclock_mono ();
    if (h->timeout_ms)
        req->deadline = req->received + h->timeout_ms;
    if (h->present & SB_H_TRACE) {
        req->has_trace = true;
        memcpy (req->trace, h->trace, 16);
    }

    /*  Calls the handler makes stay in the request's trace.  */
    sb_peer_set_trace (self->peer, req->has_trace ? req->trace : NULL);
    req->in_handler = true;
    req->body = &obj;
    int rc = method->handler (req, &obj, self->state);
    req->body = NULL;
    req->in_handler = false;
    sb_peer_set_trace (self->peer, NULL);
    msgpack_zone_clear (&self->zone);
    zmq_msg_close (&plain);

    if (!req->closed) {
        if (rc != 0) {
            char text [SB_TEXT_MAX + 1];
            snprintf (text, sizeof text, "%s.%s failed", self->service->name, method->name);
            s_send_answer (req, NULL, SB_E_INTERNAL, text);
            req->closed = true;
            req->expired = req->deferred;
        }
        else
        if (!req->deferred) {
            s_send_answer (req, NULL, SB_OK, NULL);
            req->closed = true;
        }
    }
    if (req->deferred && (!req->closed || req->expired)) {
        req->deferred_handle = zlistx_add_end (self->deferred, req);
        if (req->deadline && req->deadline + S_EXPIRY_GRACE_MS < self->next_expiry)
            self->next_expiry = req->deadline + S_EXPIRY_GRACE_MS;
    }
    else
        s_request_free (req);
}

/*  Answers deferred requests past their deadline; see the file comment. */
static void
s_expire_deferred (sb_actor_t *self, int64_t now)
{
    if (now < self->next_expiry)
        return;
    self->next_expiry = INT64_MAX;
    for (sb_request_t *req = zlistx_first (self->deferred); req; req = zlistx_next (self->deferred)) {
        if (req->closed || !req->deadline)
            continue;
        int64_t expiry = req->deadline + S_EXPIRY_GRACE_MS;
        if (expiry <= now) {
            s_send_answer (req, NULL, SB_E_TIMEOUT, "the service did not answer in time");
            req->closed = req->expired = true;
        }
        else
        if (expiry < self->next_expiry)
            self->next_expiry = expiry;
    }
}

/*  --------------------------------------------------------------------
    The actor's own bus access.  */

static void
s_on_welcome (sb_link_t *link, void *arg)
{
    sb_actor_t *self = arg;
    sb_header_t h;
    sb_header_init (&h, SB_CMD_READY);
    sb_header_set_service (&h, self->service->name);
    h.capacity = (uint32_t) self->capacity;
    h.present |= SB_H_CAPACITY;
    h.instance = (uint32_t) self->instance;
    sb_link_send_bytes (link, &h, self->ready.data, self->ready.size);
}

int
sb_actor_call (sb_actor_t *actor, const char *service, const char *method,
               const void *body, size_t size, int timeout_ms,
               sb_reply_fn *callback, void *arg, sb_error_t *err)
{
    if (!actor || !actor->peer || !callback)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no actor or no callback");
    return sb_peer_call (actor->peer, service, method, body, size, timeout_ms,
                         callback, NULL, arg, NULL, err);
}

int
sb_actor_call_traced (sb_actor_t *actor, const char *service, const char *method,
                      const void *body, size_t size, int timeout_ms, const char *trace,
                      sb_reply_fn *callback, void *arg, sb_error_t *err)
{
    if (!actor || !actor->peer || !callback)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no actor or no callback");
    return sb__peer_call_traced (actor->peer, trace, service, method, body, size, timeout_ms,
                                 callback, NULL, arg, NULL, err);
}

int
sb_actor_publish (sb_actor_t *actor, const char *topic, const void *body, size_t size)
{
    if (!actor || !actor->peer)
        return -1;
    return sb_peer_publish (actor->peer, topic, body, size);
}

int
sb_actor_subscribe (sb_actor_t *actor, const char *prefix, const char *group,
                    sb_event_fn *callback, void *arg)
{
    if (!actor || !actor->peer)
        return -1;
    return sb_peer_subscribe (actor->peer, prefix, group, callback, arg);
}

const char *
sb_actor_service (const sb_actor_t *actor)
{
    return actor->service->name;
}

int
sb_actor_instance (const sb_actor_t *actor)
{
    return actor->instance;
}

static int
s_timer_compare (const void *a, const void *b)
{
    const s_timer_t *x = a, *y = b;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void
s_timer_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

int
sb_actor_after (sb_actor_t *actor, int delay_ms, void (*callback) (void *arg), void *arg)
{
    if (!actor || !callback || delay_ms < 0) {
        errno = EINVAL;
        return -1;
    }
    s_timer_t *timer = calloc (1, sizeof *timer);
    if (!timer)
        return -1;
    timer->due = zclock_mono () + delay_ms;
    timer->seq = actor->timer_seq++;
    timer->callback = callback;
    timer->arg = arg;
    zlistx_insert (actor->timers, timer, false);
    return 0;
}

int
sb_actor_watch_fd (sb_actor_t *actor, int fd, void (*callback) (int fd, void *arg), void *arg)
{
    if (!actor || !callback || fd < 0 || actor->nwatches == S_WATCH_MAX) {
        errno = EINVAL;
        return -1;
    }
    actor->watches [actor->nwatches++] = (s_watch_t) { fd, false, callback, arg };
    return 0;
}

/*  --------------------------------------------------------------------
    The thread.  */

static int
s_encode_ready (sb_actor_t *self, sb_error_t *err)
{
    const sb_service_t *service = self->service;
    size_t count = 0;
    for (const sb_method_t *m = service->methods; m->name; m++, count++) {
        if (count == S_METHODS_MAX)
            return sb_error_set (err, SB_E_BAD_REQUEST, "%s has more than %d methods",
                                 service->name, S_METHODS_MAX);
        if (!sb_name_valid (m->name, SB_NAME_METHOD) || !m->handler)
            return sb_error_set (err, SB_E_BAD_REQUEST, "%s: bad method '%s' or no handler",
                                 service->name, m->name);
    }
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->ready, msgpack_sbuffer_write);
    const char *version = service->version ? service->version : "";
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "version", 7);
    msgpack_pack_str_with_body (&pk, version, strnlen (version, SB_TEXT_MAX));
    msgpack_pack_str_with_body (&pk, "methods", 7);
    msgpack_pack_array (&pk, count);
    for (const sb_method_t *m = service->methods; m->name; m++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_str_with_body (&pk, m->name, strlen (m->name));
        msgpack_pack_unsigned_int (&pk, m->flags & SB_METHOD_IDEMPOTENT);
    }
    return 0;
}

static sb_actor_t *
s_actor_new (sb_instance_t *inst, sb_error_t *err)
{
    const sb_service_t *service = inst->service;
    if (!service || service->abi_version != SB_ABI_VERSION || !service->methods
    ||  !sb_name_valid (service->name, SB_NAME_SERVICE) || strncmp (service->name, "sys", 3) == 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "invalid service descriptor");
        return NULL;
    }
    sb_actor_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->service = service;
    self->instance = inst->instance;
    self->capacity = inst->capacity > 0 ? inst->capacity : SB_INSTANCE_CAPACITY_DEFAULT;
    self->next_expiry = INT64_MAX;
    self->timers = zlistx_new ();
    zlistx_set_comparator (self->timers, s_timer_compare);
    zlistx_set_destructor (self->timers, s_timer_destroy);
    self->deferred = zlistx_new ();
    msgpack_sbuffer_init (&self->ready);
    self->zone_ready = msgpack_zone_init (&self->zone, S_ZONE_CHUNK);
    if (!self->zone_ready) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return self;                /* caller sees err via peer == NULL */
    }
    if (s_encode_ready (self, err))
        return self;                /* caller sees err via peer == NULL */
    for (size_t i = 0; inst->options.schemas && service->methods [i].name; i++)
        self->schemas [i] = sb_schema_set_find (inst->options.schemas, service->name,
                                                service->methods [i].name);
    self->validate_replies = inst->options.validate_replies;

    /*  Peer name: service-instance-pid, cut to a wire name's length.  */
    char name [SB_NAME_MAX + 32];
    snprintf (name, sizeof name, "%s-%d-%d", service->name, inst->instance, (int) getpid ());
    name [SB_NAME_MAX] = 0;
    if (inst->options.beacon) {
        /*  A cluster: seeds plus whatever the beacons announce.  */
        sb_discovery_config_t cluster = { .cluster = inst->options.cluster,
                                          .beacon = inst->options.beacon,
                                          .port = inst->options.beacon_port,
                                          .seeds = inst->endpoints, .log = inst->instance == 0,
                                          .identity = inst->options.identity };
        self->peer = sb_peer_new_empty (name, err);
        if (self->peer && sb_peer_set_identity (self->peer, inst->options.identity, err))
            sb_peer_destroy (&self->peer);
        if (self->peer)
            self->discovery = sb_discovery_new (&cluster, self->peer, err);
        if (!self->discovery)
            sb_peer_destroy (&self->peer);
    }
    else
        self->peer = sb_peer_new_secure (inst->endpoints, name, inst->options.identity, err);
    return self;
}

static void
s_actor_destroy (sb_actor_t **self_p)
{
    sb_actor_t *self = *self_p;
    if (!self)
        return;
    sb_discovery_destroy (&self->discovery);
    sb_peer_destroy (&self->peer);
    zlistx_destroy (&self->timers);
    sb_request_t *req;
    while ((req = zlistx_first (self->deferred))) {
        zlistx_detach (self->deferred, NULL);
        req->deferred_handle = NULL;
        s_request_free (req);
    }
    zlistx_destroy (&self->deferred);
    while ((req = self->spares)) {
        self->spares = req->next_spare;
        msgpack_sbuffer_destroy (&req->buffer);
        free (req);
    }
    msgpack_sbuffer_destroy (&self->ready);
    if (self->zone_ready)
        msgpack_zone_destroy (&self->zone);
    free (self);
    *self_p = NULL;
}

static void
s_run_timers (sb_actor_t *self, int64_t now)
{
    s_timer_t *timer;
    while ((timer = zlistx_first (self->timers)) && timer->due <= now) {
        zlistx_detach (self->timers, NULL);
        timer->callback (timer->arg);
        free (timer);
    }
}

/*  What the loop hands back to the actor each turn: its pipe, and which
    watch each polled fd is.  */
typedef struct {
    sb_actor_t *self;
    zsock_t *pipe;
    size_t watch_of [S_WATCH_MAX];
} s_turn_t;

/*  The actor's own items, after the poll: $TERM on the pipe ends the
    loop; watched fds that are ready (or broken: dropped) run their
    callbacks.  */
static int
s_on_items (zmq_pollitem_t *items, size_t count, void *arg)
{
    s_turn_t *turn = arg;
    if (items [0].revents & ZMQ_POLLIN) {
        char *command = zstr_recv (turn->pipe);
        bool term = !command || streq (command, "$TERM");
        zstr_free (&command);
        if (term)
            return -1;
    }
    for (size_t i = 1; i < count; i++) {
        if (!items [i].revents)
            continue;
        s_watch_t *watch = &turn->self->watches [turn->watch_of [i - 1]];
        if (!(items [i].revents & ZMQ_POLLIN))
            watch->dropped = true;
        watch->callback (watch->fd, watch->arg);
    }
    return 0;
}

/*  The peer's loop (bus/loop.h) with the pipe and the watched fds first,
    and timers and deferred requests' deadlines as the actor's own.  */
static void
s_loop (sb_actor_t *self, zsock_t *pipe)
{
    zmq_pollitem_t items [1 + S_WATCH_MAX + SB_LOOP_ITEMS];
    s_turn_t turn = { .self = self, .pipe = pipe };
    sb_loop_t loop = { self->peer, self->discovery, items, 0, s_on_items, &turn };
    while (true) {
        size_t n = 0;
        items [n++] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
        for (size_t i = 0; i < self->nwatches; i++)
            if (!self->watches [i].dropped) {
                turn.watch_of [n - 1] = i;
                items [n++] = (zmq_pollitem_t) { NULL, self->watches [i].fd, ZMQ_POLLIN, 0 };
            }
        loop.count = n;
        int64_t until = self->next_expiry;
        s_timer_t *timer = zlistx_first (self->timers);
        if (timer && timer->due < until)
            until = timer->due;
        if (sb_loop_turn (&loop, until) < 0 && errno != EINTR)
            break;                  /* $TERM, or the context terminated */
        int64_t now = zclock_mono ();
        s_run_timers (self, now);
        s_expire_deferred (self, now);
    }
}

static void
s_actor_task (zsock_t *pipe, void *args)
{
    sb_instance_t *inst = args;
    sb_error_t err = { 0 };
    sb_actor_t *self = s_actor_new (inst, &err);
    int rc = self && self->peer ? 0 : -1;
    if (rc == 0 && inst->service->init
    &&  inst->service->init (self, inst->config, &self->state, &err) != 0) {
        rc = -1;
        if (!err.text [0])
            sb_error_set (&err, SB_E_INTERNAL, "init failed");
    }
    inst->start_rc = rc;
    inst->start_err = err;
    if (rc == 0) {
        sb_peer_set_worker (self->peer, s_on_welcome, s_on_request, self);
        inst->sealer = sb_peer__sealer (self->peer);
    }
    zsock_signal (pipe, 0);

    if (rc == 0) {
        s_loop (self, pipe);
        /*  BYE first, so brokers stop sending while fini() runs.  */
        sb_discovery_destroy (&self->discovery);
        sb_peer_destroy (&self->peer);
        if (inst->service->fini)
            inst->service->fini (self->state);
    }
    else {
        /*  Wait for sb_instance_start to stop us, as zactor expects.  */
        char *command = zstr_recv (pipe);
        zstr_free (&command);
    }
    s_actor_destroy (&self);
}

sb_instance_t *
sb_instance_start (const sb_service_t *service, int instance,
                   const sb_config_t *config, const char *endpoints,
                   int capacity, sb_error_t *err)
{
    return sb_instance_start_with (service, instance, config, endpoints, capacity, NULL, err);
}

sb_instance_t *
sb_instance_start_with (const sb_service_t *service, int instance,
                        const sb_config_t *config, const char *endpoints,
                        int capacity, const sb_instance_options_t *options,
                        sb_error_t *err)
{
    if (!service || (!endpoints && !(options && options->beacon)) || instance < 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no service or no endpoints");
        return NULL;
    }
    sb_instance_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->service = service;
    self->config = config;
    self->endpoints = endpoints;
    self->instance = instance;
    self->capacity = capacity;
    if (options)
        self->options = *options;
    self->zactor = zactor_new (s_actor_task, self);
    if (!self->zactor || self->start_rc) {
        if (err) {
            if (!self->zactor)
                sb_error_set (err, SB_E_INTERNAL, "cannot start the actor thread");
            else
                *err = self->start_err;
        }
        zactor_destroy (&self->zactor);
        free (self);
        return NULL;
    }
    return self;
}

void
sb_instance_seal_counters (sb_instance_t *self, sb_sealer_counters_t *out)
{
    sb_sealer_counters (self ? self->sealer : NULL, out);
}

void
sb_instance_stop (sb_instance_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zactor_destroy (&(*self_p)->zactor);
    free (*self_p);
    *self_p = NULL;
}
