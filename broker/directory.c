/*  directory.c — the directory of services and their workers, and
    credit-based dispatch.

    - A worker is one (peer, service) pair with a credit (capacity).  A
      service keeps its workers in an array, a union table of method
      names (a worker's methods are a bit mask over that table) and a
      FIFO queue of waiting requests.
    - A worker says READY with its methods (the one body the broker reads
      besides DIRECTORY); a service exists while it has a worker.  A
      request goes to the least-loaded worker with a free credit, or waits
      in its service's queue until one frees (requests.c holds the
      requests themselves).
    - Bounded work: a peer finds its worker for a service in its own hash
      (by_service), so READY costs O(1) whatever the peer offers, and the
      directory has limits: services per peer, services in the broker,
      instances per service (docs/operations.md).  A READY past one is
      answered ERROR `overloaded`, counted (directory_refused) and logged
      once per peer, before its body is read.
*/
#include "engine.h"

#include <stdio.h>
#include <string.h>

service_t *
sb__service_lookup (engine_t *self, const char *name)
{
    return (service_t *) zhashx_lookup (self->services, name);
}

int
sb__method_index (const service_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmethods; i++)
        if (!strcmp (s->methods [i].name, name))
            return (int) i;
    return -1;
}

/*  The least-loaded worker offering `method` with a free credit and its
    peer under its budget, or NULL.  Load compares in_flight/capacity by
    cross-multiplication; ties rotate. */
worker_t *
sb__pick_worker (engine_t *self, service_t *s, int method)
{
    worker_t *best = NULL;
    uint64_t bit = (uint64_t) 1 << method;
    size_t n = s->nworkers;
    for (size_t k = 0; k < n; k++) {
        worker_t *w = s->workers [(s->rr + k) % n];
        if (w->in_flight >= w->capacity || !(w->mask & bit) || w->peer->doomed
        ||  sb__over_budget (self, w->peer))
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
int
sb__dispatch_to (engine_t *self, req_t *r, worker_t *w)
{
    /*  The stored header is rewritten in place (the caller's id is kept in
        caller_id); a re-dispatch rewrites it again.  */
    sb_header_t *h = &r->header;
    h->request_id = sb__req_id (r);
    h->present |= SB_H_REQUEST_ID;
    int64_t left = r->deadline - self->now;
    h->timeout_ms = (uint32_t) (left > 0 ? left : 1);
    h->present |= SB_H_TIMEOUT;
    if (r->idempotent)
        h->flags |= SB_F_IDEMPOTENT;
    h->present &= ~(SB_H_GROUP | SB_H_TOPIC | SB_H_NAME | SB_H_CODE | SB_H_CAPACITY);
    h->capacity = h->code = h->heartbeat_ms = h->instance = 0;
    h->text [0] = 0;

    sb_body_t body = { &r->body, NULL, r->body_size };
    if (r->has_body)
        body.data = (const uint8_t *) zmq_msg_data (&r->body) + r->body_offset;
    if (sb__send (self, w->peer, h, r->has_body ? &body : NULL))
        return -1;
    if (!r->idempotent)
        sb__req_body_drop (r);
    r->state = REQ_INFLIGHT;
    r->worker = w;
    sb__req_list_push_back (&w->inflight, r);
    w->in_flight++;
    return 0;
}

/*  Sends queued requests to workers with free credit, in queue order.  */
void
sb__service_dispatch (engine_t *self, service_t *s)
{
    while (s->queue.head) {
        req_t *r = s->queue.head;
        worker_t *w = sb__pick_worker (self, s, r->method);
        if (!w)
            break;
        sb__req_list_remove (&s->queue, r);
        if (sb__dispatch_to (self, r, w) == 0)
            continue;
        if (sb__req_sendable (r))
            sb__req_list_push_front (&s->queue, r);
        else
            sb__req_fail (self, r, SB_E_UNAVAILABLE, "worker unreachable");
        if (!w->peer->doomed)
            break;              /* its send queue is full: try again later */
    }
}

/*  Tries every queue again (from the tick): workers whose send queue was
    full, or whose peer was over its budget, may take requests now.  */
void
sb__services_retry (engine_t *self)
{
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services))
        if (s->queue.head)
            sb__service_dispatch (self, s);
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
        sb__req_list_remove (&s->queue, r);
        sb__req_fail (self, r, SB_E_UNAVAILABLE, "service lost its last worker");
    }
    zhashx_delete (self->services, s->name);
    free (s->workers);
    free (s->schema);
    free (s);
}

/*  Removes a worker (its peer died, left, or is unreachable): in-flight
    idempotent requests go back to the front of the queue in their
    original order; the others are answered `unavailable`.  */
void
sb__worker_remove (engine_t *self, worker_t *w)
{
    service_t *s = w->service;
    while (w->inflight.tail) {
        req_t *r = w->inflight.tail;
        sb__req_list_remove (&w->inflight, r);
        r->worker = NULL;
        if (r->state == REQ_EXPIRED)
            sb__req_free (self, r);
        else
        if (r->idempotent && sb__req_sendable (r)) {
            r->state = REQ_QUEUED;
            sb__req_list_push_front (&s->queue, r);
        }
        else
            sb__req_fail (self, r, SB_E_UNAVAILABLE, "worker died with the request");
    }
    s->workers [w->index] = s->workers [--s->nworkers];
    s->workers [w->index]->index = w->index;
    self->nworkers--;
    w->peer->nworkers--;
    if (w->peer->by_service)
        zhashx_delete (w->peer->by_service, s->name);
    free (w);
    self->dir_dirty = true;
    s_service_recompute (s);
    if (s->nworkers == 0)
        s_service_destroy (self, s);
    else
        sb__service_dispatch (self, s);
}

/*  --------------------------------------------------------------------
    READY: a worker offers a service.  */

/*  True for an absent contract time, or one that is a uint32 within
    SB_CONTRACT_MS_MAX (protocol.md 5.2).  */
static bool
s_contract_ms_valid (const msgpack_object *m, uint32_t index)
{
    return m->via.array.size <= index
        || (m->via.array.ptr [index].type == MSGPACK_OBJECT_POSITIVE_INTEGER
            && m->via.array.ptr [index].via.u64 <= SB_CONTRACT_MS_MAX);
}

/*  Parses a READY body into methods of service s; fills *mask, and
    *schema with the schema text when the body has one that fits.  The
    body was pre-scanned by sb_wire_check.  0 or -1.  */
static int
s_parse_ready (service_t *s, const msgpack_object *o, uint64_t *mask, char *version,
               const msgpack_object **schema)
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
        else
        if (k->size == 6 && !memcmp (k->ptr, "schema", 6)) {
            if (kv->val.type != MSGPACK_OBJECT_STR)
                return -1;
            if (kv->val.via.str.size > 0 && kv->val.via.str.size <= SB_READY_SCHEMA_MAX)
                *schema = &kv->val;
        }
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
        if (!s_contract_ms_valid (m, 2) || !s_contract_ms_valid (m, 3))
            return -1;
        char name [SB_NAME_MAX + 1];
        memcpy (name, m->via.array.ptr [0].via.str.ptr, m->via.array.ptr [0].via.str.size);
        name [m->via.array.ptr [0].via.str.size] = 0;
        if (!sb_name_valid (name, SB_NAME_METHOD))
            return -1;
    }
    for (uint32_t i = 0; i < methods->via.array.size; i++) {
        const msgpack_object *m = &methods->via.array.ptr [i];
        char name [SB_NAME_MAX + 1];
        memcpy (name, m->via.array.ptr [0].via.str.ptr, m->via.array.ptr [0].via.str.size);
        name [m->via.array.ptr [0].via.str.size] = 0;
        uint32_t flags = m->via.array.size > 1 ? (uint32_t) m->via.array.ptr [1].via.u64 : 0;
        int index = sb__method_index (s, name);
        if (index < 0) {
            if (s->nmethods >= METHODS_MAX)
                return -1;
            index = (int) s->nmethods++;
            strcpy (s->methods [index].name, name);
        }
        s->methods [index].flags = flags;
        s->methods [index].timeout_ms = m->via.array.size > 2 ? (uint32_t) m->via.array.ptr [2].via.u64 : 0;
        s->methods [index].cache_ttl_ms = m->via.array.size > 3 ? (uint32_t) m->via.array.ptr [3].via.u64 : 0;
        *mask |= (uint64_t) 1 << index;
    }
    return 0;
}

/*  Answers a READY with ERROR (code, text) naming its service.  */
static void
s_ready_error (engine_t *self, peer_t *p, const sb_header_t *h, sb_code_t code, const char *text)
{
    self->stats.errors [code]++;
    sb_header_t e;
    sb_header_init (&e, SB_CMD_ERROR);
    e.code = code;
    e.present |= SB_H_CODE;
    sb_header_set_service (&e, h->service);
    sb_header_set_text (&e, text);
    sb__send (self, p, &e, NULL);
}

/*  The directory limit a new worker of p for service s (NULL: a new
    service) would pass, as a text; NULL when within them all.  */
static const char *
s_ready_limit (engine_t *self, peer_t *p, const service_t *s, char *text, size_t size)
{
    const sb_broker_config_t *c = &self->args->config;
    if (p->nworkers >= c->peer_services_max)
        snprintf (text, size, "this peer offers %zu services already, the most a peer may",
                  p->nworkers);
    else
    if (!s && zhashx_size (self->services) >= c->services_max)
        snprintf (text, size, "the broker lists %zu services already, the most it may",
                  c->services_max);
    else
    if (s && s->nworkers >= c->instances_max)
        snprintf (text, size, "service '%s' has %zu instances already, the most it may",
                  s->name, s->nworkers);
    else
        return NULL;
    return text;
}

void
sb__on_ready (engine_t *self, peer_t *p, const sb_header_t *h, const sb_body_t *body)
{
    if (!(h->present & SB_H_SERVICE) || !(h->present & SB_H_CAPACITY) || !body) {
        sb__bad (self, R_MISSING_FIELD);
        return;
    }
    if (!strncmp (h->service, "sys", 3)) {
        sb__bad (self, R_RESERVED);
        return;
    }
    char text [SB_TEXT_MAX + 1];
    if (self->secure && !sb__may_offer (self, p, h->service)) {
        self->stats.forbidden++;
        snprintf (text, sizeof text, "member '%s' may not offer '%s'",
                  p->cert ? p->cert->name : "(no valid certificate)", h->service);
        s_ready_error (self, p, h, SB_E_FORBIDDEN, text);
        return;
    }
    service_t *s = sb__service_lookup (self, h->service);
    worker_t *w = p->by_service ? zhashx_lookup (p->by_service, h->service) : NULL;
    if (!w && s_ready_limit (self, p, s, text, sizeof text)) {
        self->stats.directory_refused++;
        if (!p->limit_logged) {
            p->limit_logged = true;
            zsys_warning ("broker %s: READY of '%s' from peer '%s' refused: %s (logged once per peer)",
                          self->args->name, h->service, p->name [0] ? p->name : "(anonymous)", text);
        }
        s_ready_error (self, p, h, SB_E_OVERLOADED, text);
        return;
    }
    const char *data = (const char *) body->data;
    size_t size = body->size;
    if (sb_wire_check (data, size, SB_DEPTH_MAX)) {
        sb__bad (self, R_BAD_BODY);
        return;
    }
    bool created = false;
    if (!s) {
        s = calloc (1, sizeof *s);
        if (!s)
            return;
        strcpy (s->name, h->service);
        s->uid = ++self->service_uid;
        zhashx_insert (self->services, s->name, s);
        created = true;
        /*  Remembered, so that a service without instances for a while
            is `unavailable` to its callers, not `not_found` like a typo.  */
        if (zhashx_size (self->known) < KNOWN_MAX)
            zhashx_insert (self->known, s->name, (void *) 1);
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    uint64_t mask = 0;
    char version [SB_NAME_MAX + 1] = "";
    const msgpack_object *schema = NULL;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) == MSGPACK_UNPACK_SUCCESS)
        rc = s_parse_ready (s, &unpacked.data, &mask, version, &schema);
    /*  A READY without a schema leaves the one another worker gave.  */
    char *schema_text = rc == 0 && schema ? strndup (schema->via.str.ptr, schema->via.str.size) : NULL;
    if (schema_text) {
        free (s->schema);
        s->schema = schema_text;
    }
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && !w && !p->by_service)
        p->by_service = zhashx_new ();
    if (rc == 0 && !w) {
        w = calloc (1, sizeof *w);
        if (!w || !p->by_service || sb__grow ((void ***) &s->workers, s->nworkers, &s->walloc)) {
            free (w);
            w = NULL;
            rc = -1;
        }
    }
    if (rc) {
        sb__bad (self, R_BAD_BODY);
        if (created) {
            zhashx_delete (self->services, s->name);
            free (s->workers);
            free (s->schema);
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
        p->nworkers++;
        zhashx_insert (p->by_service, s->name, w);
    }
    w->capacity = h->capacity;
    w->instance = h->instance;
    w->mask = mask;
    if (version [0])
        strcpy (s->version, version);
    s_service_recompute (s);
    self->dir_dirty = true;
    sb__service_dispatch (self, s);
}
