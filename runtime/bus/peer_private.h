/*  peer_private.h — what the files of the peer share, and nothing else
    includes: the peer's struct, a call, a subscription, and the
    functions one part of the peer calls in another.

    The peer is one class (bus/peer.h) written in five files, one concern
    each:

        peer.c         construction, links and their monitors, the trace
                       context, the decoding zone, poll/handle/tick/wait;
        calls.c        the call table: send (plain or sealed), waiting
                       calls, deadlines, failover, unrouted, replies;
        events.c       subscriptions, PUBLISH out and events in;
        keys_lookup.c  the sealer's owner: sys.keys lookups sent for it,
                       with the next broker asked when one knew nothing;
        contracts.c    the services' contracts (sys.describe), cached,
                       applied to the calls made to them.

    Everything here runs on the peer's one thread.
*/
#ifndef SB_PEER_PRIVATE_H_INCLUDED
#define SB_PEER_PRIVATE_H_INCLUDED

#include "internal.h"

#include <czmq.h>

/*  Retry pause for calls that wait while a broker is alive but its
    queue is full.  */
#define SB_PEER_RESEND_MS 10
/*  Timeout of a call made without one, when its method declares none.  */
#define SB_PEER_TIMEOUT_DEFAULT 5000
/*  Methods of a service a contract holds (the broker's limit too).  */
#define SB_CONTRACT_METHODS_MAX 64
/*  A failed contract lookup is tried again this long after.  */
#define SB_CONTRACT_RETRY_MS 1000

typedef struct sb_call {
    uint64_t id;
    int64_t deadline;
    int timeout_ms;
    sb_reply_fn *callback;
    sb_peer_raw_fn *raw;
    void *arg;
    void *waiting;                  /* handle in self->waiting, or NULL once sent */
    zmq_msg_t body;                 /* kept while waiting */
    bool has_body;
    uint8_t trace [16];
    uint32_t flags;                 /* SB_F_IDEMPOTENT, SB_F_RETRY */
    uint32_t link_id;               /* link it went out on; 0 while waiting */
    uint32_t unrouted_link;         /* link whose broker knew no such service */
    int unrouted;                   /* brokers that answered that */
    bool body_given;                /* the body went to a link: no resend */
    bool seal;                      /* body sealed for seal_pk at each send */
    bool key_wait;                  /* waiting for the sealer to learn the key */
    bool contract_wait;             /* waiting for the service's contract (contracts.c) */
    bool lookup;                    /* the runtime's own lookup: not counted by the round robin */
    bool timeout_given;             /* else the method's timeout_ms applies, when declared */
    int64_t started;
    uint8_t seal_pk [SB_KEY_SIZE];
    uint8_t nonce [SB_SEAL_NONCE_SIZE];     /* of the last send: the reply is bound to it */
    char service [SB_NAME_MAX + 1];
    char method [SB_NAME_MAX + 1];
    struct sb_call *next_spare;
} sb_call_t;

typedef struct {
    char prefix [SB_TOPIC_MAX + 1];
    char group [SB_NAME_MAX + 1];
    sb_event_fn *callback;
    void *arg;
} sb_sub_t;

struct sb_peer {
    char name [SB_NAME_MAX + 1];
    sb_link_t *links [SB_PEER_LINKS_MAX];
    zsock_t *monitors [SB_PEER_LINKS_MAX];  /* per link, NULL if none */
    bool up [SB_PEER_LINKS_MAX];    /* per link: alive when last looked at */
    size_t nlinks;
    size_t next_link;               /* round robin */
    uint32_t next_link_id;
    uint64_t next_id;
    zhashx_t *calls;                /* &call->id -> sb_call_t */
    zlistx_t *waiting;              /* sb_call_t not sent yet, FIFO */
    zlistx_t *subs;                 /* sb_sub_t, owned */
    int64_t next_deadline;
    uint64_t bad_bodies;
    zhashx_t *idempotent;           /* keys "service/method"; method "*" for all */
    uint64_t retries;
    uint64_t delivered;             /* calls answered, by any path: wait loops watch it */
    msgpack_zone zone;              /* decodes replies and events */
    bool zone_busy;                 /* a callback holds it */
    sb_call_t *spares;              /* answered calls, for reuse */
    size_t nspares;
    sb_link_welcome_fn *worker_welcome;
    sb_peer_request_fn *worker_request;
    void *worker_arg;
    const sb_identity_t *identity;  /* borrowed; NULL: plaintext links */
    sb_sealer_t *sealer;            /* with an identity: end-to-end sealing */
    zlistx_t *lookups;              /* sys.keys lookups in flight (keys_lookup.c) */
    zhashx_t *contracts;            /* service -> its contract (contracts.c) */
    int contract_ttl_ms;
    size_t contract_lookups;        /* sys.describe lookups sent */
    size_t contract_asking;         /* of which in flight: not counted as pending */
    bool has_trace;                 /* trace context, see sb_peer_set_trace */
    uint8_t trace [16];
    uint8_t trace_pool [32 * 16];   /* fresh trace ids, drawn 32 at a time */
    size_t trace_pool_left;
};

/*  peer.c  */
/*  The live link `attempt` places after the last one used (round robin),
    or NULL.  */
sb_link_t *sb__peer_pick_link (sb_peer_t *self, size_t attempt);
/*  The trace id of a new call or event: the context's, else a fresh one. */
void sb__peer_trace_for (sb_peer_t *self, uint8_t *trace);
/*  The peer's decoding zone, or `spare` (initialised here) when a
    callback that is still running holds the peer's: a callback may
    dispatch again (a blocking call made from an async callback).  Given
    back (cleared, or destroyed) with sb__peer_zone_give.  */
msgpack_zone *sb__peer_zone_take (sb_peer_t *self, msgpack_zone *spare);
void sb__peer_zone_give (sb_peer_t *self, msgpack_zone *zone);

/*  calls.c  */
/*  Frees a call taken out of every index (kept as a spare when there is
    room).  */
void sb__peer_call_free (sb_peer_t *self, sb_call_t *call);
/*  A REPLY or ERROR: delivers it to its call, or sends the call to the
    next broker when this one knew no such service.  Returns 1 when a
    call was answered.  */
int sb__peer_on_reply (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body);
/*  sb_peer_call with request flags (SB_F_IDEMPOTENT) set from the start,
    and SB_CALL_LOOKUP for the runtime's own lookups, which do not move
    the round robin of the links (so they do not shift where calls go). */
#define SB_CALL_LOOKUP 0x10000
int sb__peer_call_flags (sb_peer_t *self, const char *service, const char *method,
                         const void *body, size_t size, int timeout_ms, uint32_t flags,
                         sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                         uint64_t *id_p, sb_error_t *err);
/*  Sends a call that no longer waits for a key or a contract, or queues
    it in `waiting` behind those already there.  */
void sb__peer_call_release (sb_peer_t *self, sb_call_t *call, int64_t now);
/*  Sends waiting calls in order until one cannot go.  */
void sb__peer_flush_waiting (sb_peer_t *self, int64_t now);
/*  The calls that went out on link `link_id` (broker `broker`), which is
    dead or gone: idempotent ones go out again (or wait for a live link)
    with the retry flag, the others are answered `unavailable`.  Returns
    the number answered.  */
int sb__peer_failover (sb_peer_t *self, uint32_t link_id, const char *broker);
/*  Fails over the calls of every link that died since the last look;
    returns the number of calls answered meanwhile.  */
int sb__peer_check_links (sb_peer_t *self);
/*  Answers `timeout` the calls whose deadline is past; returns how many. */
int sb__peer_expire (sb_peer_t *self, int64_t now);
/*  The sealer's lookup for `service` ended: the calls that waited for
    its key go out, or are answered with the reason.  */
void sb__peer_keys_ready (sb_peer_t *self, const char *service);

/*  events.c  */
/*  Sends every subscription on a link just welcomed.  */
void sb__peer_resubscribe (sb_peer_t *self, sb_link_t *link);
/*  A PUBLISH: opened if sealed, decoded, handed to the matching
    subscriptions.  Returns how many ran.  */
int sb__peer_on_event (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body);

/*  contracts.c  */
/*  The cache of contracts, made and destroyed with the peer.  */
int sb__peer_contracts_init (sb_peer_t *self);
void sb__peer_contracts_destroy (sb_peer_t *self);
/*  Applies the call's service's contract to it (idempotent flag, the
    method's timeout when none was given) and returns false; or, for a
    service not described yet, starts (or joins) its lookup and returns
    true: the call waits, and goes out when the answer comes.  */
bool sb__peer_contract_wait (sb_peer_t *self, sb_call_t *call);

/*  keys_lookup.c  */
/*  Replaces the peer's sealer with one for `identity` (NULL: none),
    whose lookups this peer sends; lookups of the old one in flight are
    cancelled.  0, or -1 with err.  */
int sb__peer_set_sealer (sb_peer_t *self, const sb_identity_t *identity, sb_error_t *err);
/*  Destroys the sealer and forgets its lookups (the peer is going).  */
void sb__peer_drop_sealer (sb_peer_t *self);

#endif
