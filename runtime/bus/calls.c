/*  calls.c — a peer's outstanding calls: the table, sending, waiting,
    deadlines, failover, unrouted answers and replies (peer.h,
    peer_private.h).

    Calls live in a hash keyed by request id.  Deadlines are checked
    lazily: the peer remembers the earliest deadline it has seen
    (`next_deadline`) and scans all calls only when that time comes,
    recomputing the minimum as it goes; with the few hundred calls a
    peer keeps in flight a scan costs microseconds, and a steady stream
    of answered calls costs nothing.  Answered calls are kept as spares
    for the next ones.

    Calls that could not be sent (no live broker, or its queue full) wait
    in FIFO order with their body and go out, with the time they have
    left, when a link is welcomed or on the next tick.

    Failover: each call remembers the link it went out on.  When a link
    dies (three silent intervals, BYE, the connection dropping as its
    socket monitor reports, or the link removed), sb__peer_check_links
    sees it go from up to down and sb__peer_failover handles its calls: an
    idempotent one (its service declares the method idempotent, as
    contracts.c learns, or the caller said so with sb_peer_set_idempotent)
    keeps its body
    and goes out again at once on another live link with SB_F_RETRY and
    the same request id, or waits for one, within its first deadline; the
    others are answered `unavailable`.  Whichever answer comes first is
    the one delivered: the call leaves the table then, and a later answer
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
    a replay.  sb__peer_on_reply opens the reply with the key and nonce
    of the last send.

    Places kept for later work:
    - retries with backoff: sb__peer_on_reply sees `unavailable` for a
      call that could be re-sent after a pause;
    - circuit breakers: sb_peer_call is where a per-service breaker
      refuses a call at once while its service keeps failing.
*/
#include "internal.h"
#include "peer_private.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>

/*  Answered calls kept for reuse: enough for a few hundred in flight.  */
#define S_SPARE_MAX 512

/*  A zeroed call, from the spares when there is one.  */
static sb_call_t *
s_call_new (sb_peer_t *self)
{
    sb_call_t *call = self->spares;
    if (!call)
        return calloc (1, sizeof (sb_call_t));
    self->spares = call->next_spare;
    self->nspares--;
    memset (call, 0, sizeof *call);
    return call;
}

void
sb__peer_call_free (sb_peer_t *self, sb_call_t *call)
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

int64_t
sb_peer_call_deadline (const sb_peer_t *self, uint64_t id)
{
    const sb_call_t *call = zhashx_lookup (self->calls, &id);
    return call ? call->deadline : 0;
}

size_t
sb_peer_pending (const sb_peer_t *self)
{
    return zhashx_size (self->calls) - self->contract_asking;
}

/*  True to pass over the broker that answered this call unrouted, while
    another link remains to try.  */
static bool
s_skip_unrouted (const sb_peer_t *self, const sb_call_t *call, sb_link_t *link, size_t attempt)
{
    return call->unrouted && sb_link_id (link) == call->unrouted_link
        && attempt + 1 < self->nlinks;
}

/*  s_send_call for a sealed call: the plaintext stays with the call
    until it has gone out (kept after, for an idempotent call's retry),
    and each send seals it afresh.  */
static int
s_send_sealed (sb_peer_t *self, sb_call_t *call, sb_header_t *h)
{
    h->flags |= SB_F_SEALED;
    memcpy (h->key_id, sb_sealer_key_id (self->sealer), SB_KEY_SIZE);
    h->key_id_size = SB_KEY_SIZE;
    h->present |= SB_H_KEY_ID;
    char context [2 * SB_NAME_MAX + 2];
    size_t length = sb_sealer_context (call->service, call->method, context);
    for (size_t attempt = 0; attempt < self->nlinks; attempt++) {
        sb_link_t *link = sb__peer_pick_link (self, attempt);
        if (!link)
            break;
        if (s_skip_unrouted (self, call, link, attempt))
            continue;
        zmq_msg_t body;
        sb_error_t err;
        if (sb_sealer_seal (self->sealer, call->seal_pk, context, length, h->timeout_ms,
                            call->has_body ? zmq_msg_data (&call->body) : NULL,
                            call->has_body ? zmq_msg_size (&call->body) : 0,
                            &body, call->nonce, &err))
            return -1;
        if (sb_link_send (link, h, &body) == 0) {
            if (!call->lookup)
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
s_send_call (sb_peer_t *self, sb_call_t *call, int64_t now)
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
        sb_link_t *link = sb__peer_pick_link (self, attempt);
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
            if (!call->lookup)
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

void
sb__peer_flush_waiting (sb_peer_t *self, int64_t now)
{
    sb_call_t *call;
    while ((call = zlistx_first (self->waiting))) {
        if (s_send_call (self, call, now))
            break;
        zlistx_detach (self->waiting, NULL);
        call->waiting = NULL;
    }
}

void
sb__peer_call_release (sb_peer_t *self, sb_call_t *call, int64_t now)
{
    if (zlistx_size (self->waiting) > 0 || s_send_call (self, call, now) != 0)
        call->waiting = zlistx_add_end (self->waiting, call);
}

int
sb_peer_call (sb_peer_t *self, const char *service, const char *method,
              const void *body, size_t size, int timeout_ms,
              sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
              uint64_t *id_p, sb_error_t *err)
{
    return sb__peer_call_flags (self, service, method, body, size, timeout_ms, 0,
                                callback, raw, arg, id_p, err);
}

int
sb__peer_call_flags (sb_peer_t *self, const char *service, const char *method,
                     const void *body, size_t size, int timeout_ms, uint32_t flags,
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
    bool timeout_given = timeout_ms > 0;
    if (!timeout_given)
        timeout_ms = SB_PEER_TIMEOUT_DEFAULT;
    /*  Circuit breakers go here: refuse at once while `service` fails.  */
    sb_call_t *call = s_call_new (self);
    if (!call)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    call->id = self->next_id++;
    call->timeout_ms = timeout_ms;
    call->timeout_given = timeout_given;
    int64_t now = zclock_mono ();
    call->started = now;
    call->deadline = now + timeout_ms;
    call->callback = callback;
    call->raw = raw;
    call->arg = arg;
    strcpy (call->service, service);
    strcpy (call->method, method);
    call->flags = flags & SB_F_IDEMPOTENT;
    call->lookup = (flags & SB_CALL_LOOKUP) != 0;
    if (s_idempotent (self, service, method))
        call->flags |= SB_F_IDEMPOTENT;
    sb__peer_trace_for (self, call->trace);
    if (size > 0) {
        if (zmq_msg_init_size (&call->body, size)) {
            sb__peer_call_free (self, call);
            return sb_error_set (err, SB_E_INTERNAL, "out of memory");
        }
        memcpy (zmq_msg_data (&call->body), body, size);
        call->has_body = true;
    }
    if (zhashx_insert (self->calls, &call->id, call)) {
        sb__peer_call_free (self, call);
        return sb_error_set (err, SB_E_INTERNAL, "request id in use");
    }
    /*  `sys` is the broker's own service: it must read its requests.  */
    call->seal = self->sealer && strcmp (service, "sys") != 0;
    if (call->seal && sb_sealer_service_key (self->sealer, service, call->seal_pk) == 0)
        call->key_wait = true;      /* goes out from sb__peer_keys_ready */
    /*  The service's contract (contracts.c): known, it is applied here;
        else the call waits for it and goes out from there.  */
    if (strcmp (service, "sys") != 0 && sb__peer_contract_wait (self, call))
        call->contract_wait = true;
    if (!call->key_wait && !call->contract_wait)
        sb__peer_call_release (self, call, now);
    if (call->deadline < self->next_deadline)
        self->next_deadline = call->deadline;
    if (id_p)
        *id_p = call->id;
    return 0;
}

/*  Takes a call out of every index; the caller then delivers and frees. */
static void
s_unlink_call (sb_peer_t *self, sb_call_t *call)
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
    sb_call_t *call = zhashx_lookup (self->calls, &id);
    if (call) {
        s_unlink_call (self, call);
        sb__peer_call_free (self, call);
    }
}

/*  Calls the call's callback once and frees it.  */
static void s_deliver (sb_peer_t *self, sb_call_t *call, const void *data, size_t size,
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
        for (sb_call_t *call = zhashx_first (self->calls); call && n < count;
             call = zhashx_next (self->calls))
            ids [n++] = call->id;
        for (size_t i = 0; i < n; i++) {
            sb_call_t *call = zhashx_lookup (self->calls, &ids [i]);
            if (call) {
                s_unlink_call (self, call);
                s_deliver (self, call, NULL, 0, err);
            }
        }
        free (ids);
    }
}

static void
s_deliver (sb_peer_t *self, sb_call_t *call, const void *data, size_t size, const sb_error_t *err)
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
        msgpack_zone *zone = sb__peer_zone_take (self, &spare);
        msgpack_object obj;
        if (!zone || sb_wire_decode_zone (data, size, zone, &obj)) {
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
        sb__peer_zone_give (self, zone);
    }
    sb_peer_set_trace (self, had_trace ? outer : NULL);
    sb__peer_call_free (self, call);
}

int
sb__peer_on_reply (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body)
{
    sb_call_t *call = zhashx_lookup (self->calls, &h->request_id);
    if (!call)
        return 0;                   /* late: answered locally already */
    if (h->command == SB_CMD_ERROR && (h->flags & SB_F_UNROUTED)
    &&  (h->code == SB_E_NOT_FOUND || h->code == SB_E_UNAVAILABLE)
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

/*  Ids are collected first: callbacks may make, answer or cancel
    calls.  */
void
sb__peer_keys_ready (sb_peer_t *self, const char *service)
{
    size_t count = 0;
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        count += call->key_wait && streq (call->service, service);
    uint64_t *ids = count ? malloc (count * sizeof *ids) : NULL;
    size_t n = 0;
    for (sb_call_t *call = zhashx_first (self->calls); call && ids; call = zhashx_next (self->calls))
        if (call->key_wait && streq (call->service, service))
            ids [n++] = call->id;
    int64_t now = zclock_mono ();
    for (size_t i = 0; i < n; i++) {
        sb_call_t *call = zhashx_lookup (self->calls, &ids [i]);
        if (!call || !call->key_wait)
            continue;
        call->key_wait = false;
        sb_code_t code;
        const char *why;
        if (sb_sealer_service_result (self->sealer, service, call->seal_pk, &code, &why) == 1) {
            if (!call->contract_wait)
                sb__peer_call_release (self, call, now);
            continue;
        }
        sb_error_t err;
        sb_error_set (&err, code, "%s", why);
        s_unlink_call (self, call);
        s_deliver (self, call, NULL, 0, &err);
    }
    free (ids);
}

/*  The calls that went out on a dead link: idempotent ones go out again
    (or wait for a live link) with the retry flag, the others are
    answered `unavailable`.  Ids are collected first: callbacks may make,
    answer or cancel calls.  Returns the number of calls answered, which
    the wait loops count as dispatched work (a blocking caller whose call
    was answered here must wake up).  */
int
sb__peer_failover (sb_peer_t *self, uint32_t link_id, const char *broker)
{
    size_t count = 0;
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        count += call->link_id == link_id && !call->waiting;
    if (count == 0)
        return 0;
    uint64_t *lost = malloc (count * sizeof *lost);
    size_t nlost = 0;
    int64_t now = zclock_mono ();
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls)) {
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
        sb_call_t *call = zhashx_lookup (self->calls, &lost [i]);
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

int
sb__peer_check_links (sb_peer_t *self)
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
        answered += sb__peer_failover (self, dead [i], names [i]);
    return answered;
}

int
sb__peer_expire (sb_peer_t *self, int64_t now)
{
    if (now < self->next_deadline)
        return 0;
    /*  Collect first, take them all out of the table, deliver after:
        callbacks may start new calls, or wait on the peer again (a
        blocking call made from an async callback), and that inner tick
        must not find, answer and free the calls still to be answered
        here.  */
    zlistx_t *expired = zlistx_new ();
    self->next_deadline = INT64_MAX;
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls)) {
        if (call->deadline <= now)
            zlistx_add_end (expired, call);
        else
        if (call->deadline < self->next_deadline)
            self->next_deadline = call->deadline;
    }
    for (sb_call_t *call = zlistx_first (expired); call; call = zlistx_next (expired))
        s_unlink_call (self, call);
    int answered = 0;
    sb_call_t *call;
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
