/*  peer.h — the caller side of the bus, shared by clients and actors.

    A peer holds one link per broker (link.h) and everything that must
    survive the loss of any one of them:

    - outstanding calls, keyed by request id (unique per peer), each with
      its own deadline.  A request goes out on a live link chosen round
      robin; its answer is matched by request id whatever link brings it.
      A call made while no broker is alive waits (its body kept) and goes
      out when a link is welcomed.  When the deadline passes the call is
      answered `timeout` locally, even if no broker is left to say so;
    - subscriptions, sent again on every link at each WELCOME;
    - for a worker (the actor), a callback for REQUEST and one for
      WELCOME so that it announces its service again.

    A peer is not thread-safe: its owner polls it from one thread, with
    the one loop of bus/loop.h: sb_peer_wait (clients), or sb_loop_turn
    with the owner's own poll items (actors).  That loop polls
    sb_peer_pollitems, feeds readable items to sb_peer_handle, and calls
    sb_peer_tick when sb_peer_timeout says so.
*/
#ifndef SB_PEER_H_INCLUDED
#define SB_PEER_H_INCLUDED

#include "bus/link.h"
#include "security/sealer.h"

typedef struct sb_peer sb_peer_t;

/*  Links a peer may hold at once.  */
#define SB_PEER_LINKS_MAX 64

/*  A worker's view of an incoming REQUEST: header and body frame, both
    valid only during the call.  */
typedef void (sb_peer_request_fn) (sb_link_t *link, const sb_header_t *header,
                                   zmq_msg_t *body, void *arg);
/*  Undecoded answer to a call: on success err is NULL and data/size is
    the reply body (size 0: empty); else err says why.  */
typedef void (sb_peer_raw_fn) (const void *data, size_t size, const sb_error_t *err, void *arg);

/*  Connects one link per endpoint of the comma-separated list (at least
    one).  `name` is sent in HELLO.  NULL with err on a bad endpoint.  */
sb_peer_t *sb_peer_new (const char *endpoints, const char *name, sb_error_t *err);
/*  A peer with no link yet: brokers come later with sb_peer_connect (a
    cluster's beacons, see discovery.h).  Calls made meanwhile wait.  */
sb_peer_t *sb_peer_new_empty (const char *name, sb_error_t *err);
/*  sb_peer_new whose links are CURVE clients with `identity` (borrowed;
    must outlive the peer; NULL: plaintext).  Each endpoint then carries
    its broker's key, "ENDPOINT#KEY" (link.h, sb_link_new_secure).  */
sb_peer_t *sb_peer_new_secure (const char *endpoints, const char *name,
                               const sb_identity_t *identity, sb_error_t *err);
/*  The identity links made from now on use (sb_peer_new_empty, then
    this, then sb_peer_connect or discovery).  With an identity the peer
    also seals end to end (sealer.h): calls to services other than `sys`,
    their replies, events.  -1 with err if the identity's event key
    (DIR/events.key) exists but cannot be used.  */
int sb_peer_set_identity (sb_peer_t *self, const sb_identity_t *identity, sb_error_t *err)
    SB_WARN_UNUSED;
/*  Says BYE on live links, drops outstanding calls without calling back. */
void sb_peer_destroy (sb_peer_t **self_p);

/*  The peer's sealer (sealer.h), NULL without an identity: a worker
    opens requests and seals replies with it.  Lives until the identity
    changes or the peer is destroyed.  */
sb_sealer_t *sb_peer__sealer (sb_peer_t *self);

/*  Makes the peer a worker: `welcome` runs after each WELCOME (after the
    peer re-sent its subscriptions on that link), `request` for each
    REQUEST.  */
void sb_peer_set_worker (sb_peer_t *self, sb_link_welcome_fn *welcome,
                         sb_peer_request_fn *request, void *arg);

/*  Adds / removes a broker (the cluster's beacons will call these).
    Calls sent through a removed link are handled as for a dead broker
    (sb_peer_set_idempotent).  */
int sb_peer_connect (sb_peer_t *self, const char *endpoint, sb_error_t *err);
int sb_peer_disconnect (sb_peer_t *self, const char *endpoint);
/*  The link with this id, or NULL if it was removed.  */
sb_link_t *sb_peer_link (sb_peer_t *self, uint32_t id);
size_t sb_peer_links (const sb_peer_t *self);
size_t sb_peer_links_alive (const sb_peer_t *self);

/*  Sends a REQUEST.  Exactly one of `callback` (decoded body) and `raw`
    is called exactly once, from sb_peer_handle or sb_peer_tick, never
    from inside this function.  `body` (size may be 0) is copied and must
    be one valid MessagePack object.  timeout_ms <= 0: the method's
    declared timeout, else 5000 (see "Contracts").  Returns 0 and sets
    *id_p (if not NULL) to the request id, or -1 with err filled (bad
    names, bad body). */
int sb_peer_call (sb_peer_t *self, const char *service, const char *method,
                  const void *body, size_t size, int timeout_ms,
                  sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                  uint64_t *id_p, sb_error_t *err);
/*  Declares service.method idempotent (method "*": every method of the
    service).  Its calls then carry the idempotent flag, and when the
    broker a call went through is lost (three silent intervals, BYE, the
    connection dropping, or the link removed) the call goes out again at
    once through another live broker, or the next one welcomed, with the
    retry flag and the same request id, within its first deadline; it is
    answered once, by whichever answer comes first.  Calls to methods not
    declared are answered `unavailable` when their broker is lost.
    0, or -1 (errno EINVAL) for a bad name.  */
int sb_peer_set_idempotent (sb_peer_t *self, const char *service, const char *method);
/*  Calls sent again because their broker was lost.  */
uint64_t sb_peer_retries (const sb_peer_t *self);

/*  Contracts (contracts.c).  The first call to a service asks the bus for
    its contract (sys.describe) and waits for it within its own deadline;
    calls to methods the service declares idempotent then carry the flag
    as if declared with sb_peer_set_idempotent, and a call made with
    timeout_ms <= 0 gets the method's timeout_ms (else 5000).  The answer
    is cached for `ttl_ms` (<= 0: SB_CONTRACT_TTL_MS), then asked again
    in the background by the next call.  */
#define SB_CONTRACT_TTL_MS 30000
void sb_peer_set_contract_ttl (sb_peer_t *self, int ttl_ms);
/*  sys.describe lookups sent so far.  */
size_t sb_peer_contract_lookups (const sb_peer_t *self);

/*  The trace context.  While it is set, calls and events sent carry its
    trace id (16 bytes, copied) instead of a fresh random one each.  The
    actor sets it to a request's trace id while the handler runs; the peer
    sets it to a call's trace id while that call's callback runs, and to
    an event's while its subscribers run, then puts back what was there:
    work done on an answer or an event stays in its trace.  NULL clears
    it.  sb_peer_trace copies the current one into trace (if not NULL)
    and says whether there is one.  */
void sb_peer_set_trace (sb_peer_t *self, const uint8_t *trace);
bool sb_peer_trace (const sb_peer_t *self, uint8_t *trace);

/*  The deadline (zclock_mono ms) of an outstanding call, 0 once it was
    answered or forgotten.  */
int64_t sb_peer_call_deadline (const sb_peer_t *self, uint64_t id);

/*  Forgets a call without calling it back (a blocking caller that was
    interrupted).  */
void sb_peer_cancel (sb_peer_t *self, uint64_t id);

/*  Answers every outstanding call with `err`, each callback once (calls
    the callbacks make meanwhile are answered too, up to a few rounds).
    For a client going away: its async callers still hear back.  */
void sb_peer_fail_all (sb_peer_t *self, const sb_error_t *err);
size_t sb_peer_pending (const sb_peer_t *self);
/*  Calls answered so far, by any path (reply, error, timeout, failover,
    a link removed): a wait loop compares it before and after to know a
    caller may have been answered.  */
uint64_t sb_peer_delivered (const sb_peer_t *self);

/*  PUBLISH on one live link (round robin).  -1 if none is alive or the
    topic or body is invalid.  */
int sb_peer_publish (sb_peer_t *self, const char *topic, const void *body, size_t size);
/*  Registers a subscription and sends SUBSCRIBE on every live link.  */
int sb_peer_subscribe (sb_peer_t *self, const char *prefix, const char *group,
                       sb_event_fn *callback, void *arg);

/*  Fills items with the links' sockets (ZMQ_POLLIN), then, room
    permitting, one socket monitor per link that reports a dropped
    connection at once; returns how many.  Pass them all to
    sb_peer_handle.  */
size_t sb_peer_pollitems (sb_peer_t *self, zmq_pollitem_t *items, size_t max);
/*  Reads what the polled items say is waiting and runs the callbacks.
    Returns the number of replies and events dispatched.  */
int sb_peer_handle (sb_peer_t *self, const zmq_pollitem_t *items, size_t count);
/*  Milliseconds until sb_peer_tick must run (>= 0).  */
int sb_peer_timeout (sb_peer_t *self);
/*  Heartbeats, HELLO retries, waiting calls, expired deadlines.
    Returns the number of calls answered (timeouts).  */
int sb_peer_tick (sb_peer_t *self);
/*  Polls the links for up to timeout_ms (-1: until something is
    dispatched) and dispatches (sb_loop_wait without beacons).  Returns
    the number dispatched, -1 if interrupted.  */
int sb_peer_wait (sb_peer_t *self, int timeout_ms);

/*  sb_peer_call under the trace id `trace` (32 hex digits), or under the
    peer's current trace context when trace is NULL.  The context is put
    back as it was before returning.  -1 with err (bad_request) for a
    trace that is not 32 hex digits or is all zero; else as sb_peer_call. */
int sb__peer_call_traced (sb_peer_t *peer, const char *trace,
                          const char *service, const char *method,
                          const void *body, size_t size, int timeout_ms,
                          sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                          uint64_t *id_p, sb_error_t *err);


#endif
