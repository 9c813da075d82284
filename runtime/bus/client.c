/*  client.c — sb_client_*: calls, events and replies for ordinary programs.

    A client is a peer (peer.h) driven from the caller's own thread: every
    blocking call and every sb_client_dispatch polls the client's links,
    runs the callbacks of whatever arrived, and does the session
    housekeeping (heartbeats, HELLO, deadlines).  A program that only
    makes asynchronous calls must therefore call sb_client_dispatch
    regularly, at least once per heartbeat interval, or its brokers will
    declare it dead.

    A blocking call is an ordinary call whose answer is copied into a
    slot on the caller's stack; the call waits for that slot to fill,
    dispatching everything else that arrives meanwhile.  Its deadline is
    kept by the peer, so it returns `timeout` even if no broker answers.
*/
#include "internal.h"

#include <stdarg.h>

#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#define S_TIMEOUT_DEFAULT 5000

struct sb_client {
    sb_peer_t *peer;
    sb_discovery_t *discovery;      /* NULL: fixed endpoints, no beacons */
    sb_identity_t *identity;        /* NULL: plaintext links */
    int timeout_ms;
    size_t blocking;                /* blocking calls in progress (nested) */
};

/*  What a blocking reply owns: the body bytes and the decoded object's
    zone.  `pub` comes first so that the public pointer is the struct.  */
typedef struct {
    sb_reply_t pub;
    msgpack_unpacked unpacked;
} s_reply_t;

sb_client_t *
sb_client_new (const sb_client_options_t *options, sb_error_t *err)
{
    static int counter;
    if (!options || (!options->endpoints && !options->beacon)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no broker endpoint given");
        return NULL;
    }
    char name [SB_NAME_MAX + 1];
    if (options->name)
        snprintf (name, sizeof name, "%s", options->name);
    else
        snprintf (name, sizeof name, "client-%d-%d", (int) getpid (),
                  __sync_fetch_and_add (&counter, 1));
    sb_client_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    /*  0: none given, each call takes its method's declared timeout
        (else 5000, the peer's default).  */
    self->timeout_ms = options->timeout_ms > 0 ? options->timeout_ms : 0;
    if (options->keys || options->member) {
        self->identity = sb_identity_load (options->keys, options->member, err);
        if (!self->identity) {
            free (self);
            return NULL;
        }
    }
    if (options->beacon) {
        /*  A cluster: seeds plus whatever the beacons announce.  */
        sb_discovery_config_t cluster = { .cluster = options->cluster, .beacon = options->beacon,
                                          .port = options->beacon_port,
                                          .seeds = options->endpoints,
                                          .identity = self->identity };
        self->peer = sb_peer_new_empty (name, err);
        if (self->peer && sb_peer_set_identity (self->peer, self->identity, err))
            sb_peer_destroy (&self->peer);
        if (self->peer)
            self->discovery = sb_discovery_new (&cluster, self->peer, err);
        if (!self->discovery)
            sb_peer_destroy (&self->peer);
    }
    else
        self->peer = sb_peer_new_secure (options->endpoints, name, self->identity, err);
    if (!self->peer) {
        sb_identity_destroy (&self->identity);
        free (self);
        return NULL;
    }
    return self;
}

void
sb_client_destroy (sb_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    /*  Async calls are answered exactly once, this way too.  */
    sb_error_t gone;
    sb_error_set (&gone, SB_E_UNAVAILABLE, "the client was destroyed with the call in flight");
    sb_peer_fail_all ((*self_p)->peer, &gone);
    sb_discovery_destroy (&(*self_p)->discovery);
    sb_peer_destroy (&(*self_p)->peer);
    sb_identity_destroy (&(*self_p)->identity);
    free (*self_p);
    *self_p = NULL;
}

void
sb_reply_destroy (sb_reply_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_reply_t *reply = (s_reply_t *) *self_p;
    msgpack_unpacked_destroy (&reply->unpacked);
    free ((void *) reply->pub.data);
    free (reply);
    *self_p = NULL;
}

/*  The slot a blocking call waits on.  */
typedef struct {
    bool done;
    bool failed;
    sb_error_t err;
    void *data;
    size_t size;
} s_slot_t;

static void
s_fill_slot (const void *data, size_t size, const sb_error_t *err, void *arg)
{
    s_slot_t *slot = arg;
    slot->done = true;
    if (err) {
        slot->failed = true;
        slot->err = *err;
        return;
    }
    slot->data = malloc (size ? size : 1);
    if (!slot->data) {
        slot->failed = true;
        sb_error_set (&slot->err, SB_E_INTERNAL, "out of memory for a reply of %zu bytes", size);
        return;
    }
    memcpy (slot->data, data, size);
    slot->size = size;
}

/*  A blocking call under the trace id `trace` (NULL: the default).  */
static int
s_call (sb_client_t *self, const char *service, const char *method,
        const void *body, size_t size, int timeout_ms,
        const char *trace, sb_reply_t **reply_p, sb_error_t *err)
{
    if (!self || !reply_p)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no client or no reply pointer");
    *reply_p = NULL;
    s_slot_t slot = { 0 };
    uint64_t id;
    if (sb__peer_call_traced (self->peer, trace, service, method, body, size,
                              timeout_ms > 0 ? timeout_ms : self->timeout_ms,
                              NULL, s_fill_slot, &slot, &id, err))
        return -1;
    self->blocking++;
    /*  The peer answers the call by its deadline at the latest.  The wait
        is bounded all the same (deadline plus a second of grace), so that
        a blocking caller can never wait forever whatever state the peer
        is in; a signal cuts it short too.  */
    int64_t give_up = zclock_mono () + S_TIMEOUT_DEFAULT + 1000;
    while (!slot.done) {
        /*  The call's deadline may move once its contract is known (the
            method's timeout, for a call made without one).  */
        int64_t deadline = sb_peer_call_deadline (self->peer, id);
        if (deadline)
            give_up = deadline + 1000;
        int64_t left = give_up - zclock_mono ();
        bool interrupted = left > 0 && sb_loop_wait (self->peer, self->discovery, (int) left) < 0;
        if (!slot.done && (interrupted || left <= 0)) {
            sb_peer_cancel (self->peer, id);
            self->blocking--;
            return sb_error_set (err, SB_E_TIMEOUT, "%s while calling %s.%s",
                                 interrupted ? "interrupted" : "no answer by the deadline",
                                 service, method);
        }
    }
    self->blocking--;
    if (slot.failed) {
        if (err)
            *err = slot.err;
        return -1;
    }
    s_reply_t *reply = calloc (1, sizeof *reply);
    if (!reply) {
        free (slot.data);
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    }
    msgpack_unpacked_init (&reply->unpacked);
    reply->pub.data = slot.data;
    reply->pub.size = slot.size;
    reply->pub.internal_ = reply;
    if (sb_wire_decode (slot.data, slot.size, &reply->unpacked, &reply->pub.body)) {
        sb_reply_destroy ((sb_reply_t **) &reply);
        return sb_error_set (err, SB_E_INTERNAL,
                             "%s.%s replied with a body that is not valid MessagePack", service, method);
    }
    *reply_p = &reply->pub;
    return 0;
}

int
sb_client_call (sb_client_t *self, const char *service, const char *method,
                const void *body, size_t size, int timeout_ms,
                sb_reply_t **reply_p, sb_error_t *err)
{
    return s_call (self, service, method, body, size, timeout_ms, NULL, reply_p, err);
}

/*  An asynchronous call under the trace id `trace` (NULL: the default). */
static int
s_call_async (sb_client_t *self, const char *service, const char *method,
              const void *body, size_t size, int timeout_ms,
              const char *trace, sb_reply_fn *callback, void *arg, sb_error_t *err)
{
    if (!self || !callback)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no client or no callback");
    return sb__peer_call_traced (self->peer, trace, service, method, body, size,
                                 timeout_ms > 0 ? timeout_ms : self->timeout_ms,
                                 callback, NULL, arg, NULL, err);
}

int
sb_client_call_async (sb_client_t *self, const char *service, const char *method,
                      const void *body, size_t size, int timeout_ms,
                      sb_reply_fn *callback, void *arg, sb_error_t *err)
{
    return s_call_async (self, service, method, body, size, timeout_ms, NULL, callback, arg, err);
}

int
sb_call (sb_client_t *self, const char *service, const char *method,
         const sb_call_options_t *options, sb_reply_t **reply_p, sb_error_t *err,
         const char *fmt, ...)
{
    sb__body_t body;
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, options, fmt, ap, err);
    va_end (ap);
    if (rc == 0)
        rc = s_call (self, service, method, body.data, body.size, options ? options->timeout_ms : 0,
                     options ? options->trace : NULL, reply_p, err);
    sb__body_free (&body);
    return rc;
}

int
sb_call_async (sb_client_t *self, const char *service, const char *method,
               const sb_call_options_t *options, sb_reply_fn *callback, void *arg,
               sb_error_t *err, const char *fmt, ...)
{
    sb__body_t body;
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, options, fmt, ap, err);
    va_end (ap);
    if (rc == 0)
        rc = s_call_async (self, service, method, body.data, body.size,
                           options ? options->timeout_ms : 0, options ? options->trace : NULL,
                           callback, arg, err);
    sb__body_free (&body);
    return rc;
}

int
sb_client_idempotent (sb_client_t *self, const char *service, const char *method)
{
    if (!self)
        return -1;
    return sb_peer_set_idempotent (self->peer, service, method);
}

int
sb_client_publish (sb_client_t *self, const char *topic, const void *body, size_t size)
{
    if (!self)
        return -1;
    return sb_peer_publish (self->peer, topic, body, size);
}

int
sb_client_subscribe (sb_client_t *self, const char *prefix, const char *group,
                     sb_event_fn *callback, void *arg)
{
    if (!self)
        return -1;
    return sb_peer_subscribe (self->peer, prefix, group, callback, arg);
}

int
sb_client_dispatch (sb_client_t *self, int timeout_ms)
{
    if (!self)
        return -1;
    return sb_loop_wait (self->peer, self->discovery, timeout_ms < 0 ? -1 : timeout_ms);
}

size_t
sb_client_pending (const sb_client_t *self)
{
    return self ? sb_peer_pending (self->peer) - self->blocking : 0;
}
