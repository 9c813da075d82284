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
    through the same callback) and seals its replies in sb__request_answer
    (request.c) for the caller's key, bound to the request's nonce.  Schema
    validation (runtime/schema/schema.h) runs in s_on_request between decoding
    and the handler when the host gave a schema set: each method's schema
    is found once at start, a violation is answered bad_request with its
    path and the handler never runs.
*/
#include "instance_private.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/*  The broker owns the caller's deadline and answers it; the runtime's
    own expiry of a deferred request is a backstop that frees the
    broker's credit, S_EXPIRY_GRACE_MS later, so that the two never race
    and the caller always gets the broker's answer (the backstop's then
    counts as a late reply there).  */
#define S_EXPIRY_GRACE_MS 200

/*  --------------------------------------------------------------------
    Requests.  */

static void
s_refuse (sb_actor_t *self, sb_link_t *link, const sb_header_t *h, sb_code_t code, const char *text)
{
    sb_request_t req = { .actor = self, .link_id = sb_link_id (link), .id = h->request_id,
                         .has_trace = (h->present & SB_H_TRACE) != 0 };
    memcpy (req.trace, h->trace, 16);
    sb__request_answer (&req, NULL, code, text);
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
    sb_request_t *req = sb__request_new (self);
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
    int rc = 0;
    if (method->flags & SB_METHOD_BLOCKING) {
        /*  Off to the pool with a copy of its body; answered from there. */
        if (sb__pool_submit (self, req, zmq_msg_data (body), zmq_msg_size (body)) == 0)
            req->deferred = true;
        else {
            sb__request_answer (req, NULL, SB_E_OVERLOADED, "the blocking work queue is full");
            req->closed = true;
        }
    }
    else {
        sb_peer_set_trace (self->peer, req->has_trace ? req->trace : NULL);
        req->in_handler = true;
        req->body = &obj;
        rc = method->handler (req, &obj, self->state);
        req->body = NULL;
        req->in_handler = false;
        sb_peer_set_trace (self->peer, NULL);
    }
    msgpack_zone_clear (&self->zone);
    zmq_msg_close (&plain);

    if (!req->closed) {
        if (rc != 0) {
            char text [SB_TEXT_MAX + 1];
            snprintf (text, sizeof text, "%s.%s failed", self->service->name, method->name);
            sb__request_answer (req, NULL, SB_E_INTERNAL, text);
            req->closed = true;
            req->expired = req->deferred;
        }
        else
        if (!req->deferred) {
            sb__request_answer (req, NULL, SB_OK, NULL);
            req->closed = true;
        }
    }
    if (req->deferred && (!req->closed || req->expired)) {
        req->deferred_handle = zlistx_add_end (self->deferred, req);
        if (req->deadline && req->deadline + S_EXPIRY_GRACE_MS < self->next_expiry)
            self->next_expiry = req->deadline + S_EXPIRY_GRACE_MS;
    }
    else
        sb__request_free (req);
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
            sb__request_answer (req, NULL, SB_E_TIMEOUT, "the service did not answer in time");
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

/*  The READY body (docs/protocol.md 5.2), encoded once: the version,
    each method as [name, flags, timeout_ms, cache_ttl_ms] (flags as the
    plugin declares them, which its schema agrees with; the times from the
    method's schema, 0 without one) and the service's schema text, when
    the host gave one of at most SB_READY_SCHEMA_MAX bytes (a longer one
    is validated with, but not announced).  */
static int
s_encode_ready (sb_actor_t *self, const sb_schema_set_t *schemas, sb_error_t *err)
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
    char *schema = sb_schema_set_service_json (schemas, service->name);
    if (schema && strlen (schema) > SB_READY_SCHEMA_MAX) {
        if (self->instance == 0)
            fprintf (stderr, "sb run: %s: schema of %zu bytes, more than %d: not announced\n",
                     service->name, strlen (schema), SB_READY_SCHEMA_MAX);
        free (schema);
        schema = NULL;
    }
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->ready, msgpack_sbuffer_write);
    const char *version = service->version ? service->version : "";
    msgpack_pack_map (&pk, schema ? 3 : 2);
    msgpack_pack_str_with_body (&pk, "version", 7);
    msgpack_pack_str_with_body (&pk, version, strnlen (version, SB_TEXT_MAX));
    msgpack_pack_str_with_body (&pk, "methods", 7);
    msgpack_pack_array (&pk, count);
    for (const sb_method_t *m = service->methods; m->name; m++) {
        const sb_method_schema_t *ms = sb_schema_set_find (schemas, service->name, m->name);
        msgpack_pack_array (&pk, 4);
        msgpack_pack_str_with_body (&pk, m->name, strlen (m->name));
        msgpack_pack_unsigned_int (&pk, m->flags & SB_METHOD_IDEMPOTENT);
        msgpack_pack_unsigned_int (&pk, ms ? (unsigned) sb_method_schema_timeout_ms (ms) : 0);
        msgpack_pack_unsigned_int (&pk, ms ? (unsigned) sb_method_schema_cache_ttl_ms (ms) : 0);
    }
    if (schema) {
        msgpack_pack_str_with_body (&pk, "schema", 6);
        msgpack_pack_str_with_body (&pk, schema, strlen (schema));
        free (schema);
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
    if (s_encode_ready (self, inst->options.schemas, err))
        return self;                /* caller sees err via peer == NULL */
    for (size_t i = 0; inst->options.schemas && service->methods [i].name; i++)
        self->schemas [i] = sb_schema_set_find (inst->options.schemas, service->name,
                                                service->methods [i].name);
    self->validate_replies = inst->options.validate_replies;
    const char *workers = inst->config ? sb_config_get (inst->config, "workers") : NULL;
    self->workers = workers ? atoi (workers) : 1;

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
    sb__pool_destroy (&self->pool);
    /*  Calls still out are answered now, so that every callback and
        continuation runs once (and frees what it holds).  */
    if (self->peer) {
        sb_error_t gone;
        sb_error_set (&gone, SB_E_UNAVAILABLE, "the service instance stopped");
        sb_peer_fail_all (self->peer, &gone);
    }
    sb_discovery_destroy (&self->discovery);
    sb_peer_destroy (&self->peer);
    zlistx_destroy (&self->timers);
    sb_request_t *req;
    while ((req = zlistx_first (self->deferred))) {
        zlistx_detach (self->deferred, NULL);
        req->deferred_handle = NULL;
        sb__request_free (req);
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
