/*  call.c — calls a service makes: from an actor outside a handler
    (sb_actor_call_with) and from a handler with a continuation
    (sb_request_call).

    A continuation keeps its request deferred until the call is answered,
    then runs the author's `next` as if it were the handler again: with
    the request's trace set, able to answer, or to call once more.  The
    author keeps no heap bookkeeping: the context of the call is ours, and
    `next` always runs exactly once.  A request can be answered by the
    runtime meanwhile (its deadline passed: the broker and the backstop
    answered `timeout`); the context therefore finds its request again by
    its serial number among the actor's deferred requests, never by a
    pointer that may have been recycled, and a request freed at actor
    stop leaves `next` to run with `unavailable` and no request answer.
*/
#include "instance_private.h"

#include <stdarg.h>
#include <string.h>

typedef struct {
    sb_actor_t *actor;
    sb_request_t *req;          /* only dereferenced once found deferred */
    uint64_t serial;
    sb_continue_fn *next;
    void *arg;
} s_continuation_t;

int
sb_actor_call_with (sb_actor_t *actor, const char *service, const char *method,
                    const sb_call_options_t *options, sb_reply_fn *callback, void *arg,
                    sb_error_t *err, const char *fmt, ...)
{
    if (!actor || !actor->peer || !callback)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no actor or no callback");
    sb__body_t body;
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, options, fmt, ap, err);
    va_end (ap);
    if (rc == 0)
        rc = sb__peer_call_traced (actor->peer, options ? options->trace : NULL, service, method,
                                   body.data, body.size, options ? options->timeout_ms : 0,
                                   callback, NULL, arg, NULL, err);
    sb__body_free (&body);
    return rc;
}

static void
s_continue (const msgpack_object *reply, const sb_error_t *err, void *arg)
{
    s_continuation_t *c = arg;
    sb_request_t *req = sb__request_find (c->actor, c->req, c->serial);
    if (!req) {
        /*  The actor is stopping and let go of its requests.  */
        sb_error_t gone;
        sb_error_set (&gone, SB_E_UNAVAILABLE, "the service instance stopped");
        c->next (NULL, NULL, &gone, c->arg);
        free (c);
        return;
    }
    req->calls--;
    sb_actor_t *actor = c->actor;
    /*  Run like a handler: answers do not free the request under us.  */
    sb_peer_set_trace (actor->peer, req->has_trace ? req->trace : NULL);
    req->in_handler = true;
    int rc = c->next (req, reply, err, c->arg);
    req->in_handler = false;
    sb_peer_set_trace (actor->peer, NULL);
    free (c);
    if (req->calls > 0)
        return;                     /* next called again: still deferred */
    if (!req->closed) {
        char text [SB_TEXT_MAX + 1];
        snprintf (text, sizeof text, "%s.%s failed", actor->service->name, req->method->name);
        sb__request_answer (req, NULL, rc ? SB_E_INTERNAL : SB_OK, rc ? text : NULL);
        req->closed = true;
    }
    sb__request_free (req);
}

int
sb_request_call (sb_request_t *req, const char *service, const char *method,
                 const sb_call_options_t *options, sb_continue_fn *next, void *arg,
                 const char *fmt, ...)
{
    if (!req || req->closed || !next || req->shadow) {
        if (req && !req->closed)
            sb_request_error (req, SB_E_INTERNAL, req->shadow
                              ? "sb_request_call from a blocking handler (it runs off the actor)"
                              : "sb_request_call without a continuation");
        return -1;
    }
    int64_t left = sb_request_remaining_ms (req);
    if (req->deadline && left <= 0) {
        sb_request_error (req, SB_E_TIMEOUT, "no time left to call %s.%s",
                          service ? service : "", method ? method : "");
        return -1;
    }
    int timeout_ms = options && options->timeout_ms > 0 ? options->timeout_ms : 0;
    if (req->deadline && (timeout_ms <= 0 || timeout_ms > left))
        timeout_ms = (int) left;
    s_continuation_t *c = calloc (1, sizeof *c);
    if (!c) {
        sb_request_error (req, SB_E_INTERNAL, "out of memory");
        return -1;
    }
    *c = (s_continuation_t) { req->actor, req, req->serial, next, arg };
    sb__body_t body;
    sb_error_t err = { 0 };
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, options, fmt, ap, &err);
    va_end (ap);
    /*  Deferred before the call: a reply can only come on a later turn of
        the loop, but the request must be findable by then.  */
    sb_request_defer (req);
    if (rc == 0)
        rc = sb__peer_call_traced (req->actor->peer, options ? options->trace : NULL, service,
                                   method, body.data, body.size, timeout_ms, s_continue, NULL, c,
                                   NULL, &err);
    sb__body_free (&body);
    if (rc) {
        free (c);
        sb_request_error (req, err.code ? err.code : SB_E_INTERNAL, "calling %s.%s: %s",
                          service ? service : "", method ? method : "", err.text);
        return -1;
    }
    req->calls++;
    return 0;
}
