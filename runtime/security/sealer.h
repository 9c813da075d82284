/*  sealer.h — end-to-end sealing as the runtime applies it: for which key
    a body is sealed, where that key comes from, and what is refused.
    runtime/security/seal.h does the cryptography; this file decides policy
    (docs/security.md section 5).

    A peer with an identity (a client with keys, a service instance of
    `sb run`, the REST bridge) owns one sealer.  Then:

    - a REQUEST to any service but `sys` is sealed for the key of the
      member that offers the service.  The key is learnt from the broker
      (`sys.keys {"service": S}`) as that member's certificate, and is
      used only if the certificate verifies against the authority this
      process trusts, is valid now, and may offer S: a broker handing
      out another key is refused, not believed.  Known keys are looked up
      again after SB_SEALER_KEY_TTL_MS, in the background;
    - a REPLY is sealed back for the caller's key, bound to the nonce of
      the request it answers;
    - a worker opens a sealed REQUEST only from a caller whose
      certificate it fetched (`sys.keys {"key": K}`), verified and found
      allowed to call service.method; requests from an unknown caller
      wait (bounded) for that lookup, which is made again after
      SB_SEALER_KEY_TTL_MS (a revoked member is then refused within that
      time, since brokers no longer hand out its certificate).  A
      plaintext REQUEST is refused:
      a worker with keys requires sealing;
    - events are sealed for the cluster event key (DIR/events.key, a
      member key file named "events" that members hold and brokers do
      not): the publisher seals with its own key for the event key's
      public half, a subscriber opens with the event key's secret half.
      A member with the event key drops plaintext events.

    Inside the box the body is prefixed by an envelope (envelope.h):
    the format, when it was sealed, how long it may be accepted and what
    it was sealed for, so a broker cannot move a sealed body to another
    method, topic or call, nor deliver it late:

        format (1) || sent ms (8) || ttl ms (4) || context length (1)
        || context || body

    context = "service.method" for a request, the request's 24-byte
    nonce for a reply, the topic for an event.  A request or an event
    sealed too far ahead of the receiver's clock is refused as `future`,
    one older than its acceptable age as `stale` (envelope.h), before the
    replay window is consulted; so a body captured before a receiver
    restarted (and forgot its window) is refused once it is older than
    that age.  A reply is matched to a call in flight by the request's
    nonce and needs no time check.

    Every refusal is counted by reason (sb_sealer_counters), logged
    (rate-limited) and, where there is a caller, answered with a code and
    a one-line text.  Not thread-safe: one sealer per peer, used from the
    peer's thread; counters may be read from any thread.

    The sealer never talks to a broker itself.  Its owner (the peer,
    runtime/bus/keys_lookup.c) gives it a narrow interface at
    sb_sealer_new, sb_sealer_owner_t: `lookup` sends a sys.keys lookup for
    a service or a caller's key, and the owner hands the answer back with
    sb_sealer_lookup_answer; `keys_ready` says that calls waiting for a
    service's key may go out (or be answered with the reason), and
    `release` hands back a request that waited for its caller's
    certificate.  So the policy runs, and is tested, without sockets
    (tests/unit/security/sealer_policy.c).
*/
#ifndef SB_SEALER_H_INCLUDED
#define SB_SEALER_H_INCLUDED

#include "wire/wire.h"
#include "security/identity.h"
#include "security/seal.h"
#include "security/envelope.h"
#include <zmq.h>

#define SB_SEALER_EVENTS_FILE "events.key"
#define SB_SEALER_KEY_TTL_MS 60000      /* service keys and callers looked up again after */
#define SB_SEALER_HELD_MAX 1024         /* requests waiting for a caller's certificate */
#define SB_SEALER_LOOKUP_MS 5000        /* deadline of a sys.keys lookup */

typedef struct sb_sealer sb_sealer_t;

/*  Why a sealed (or unsealed) body was refused.  */
typedef enum {
    SB_SEALER_TRUNCATED = 0,    /* shorter than nonce + tag, or no context */
    SB_SEALER_TAMPERED,         /* tag or context does not verify */
    SB_SEALER_REPLAYED,
    SB_SEALER_UNKNOWN_KEY,      /* key id not a verified member's key */
    SB_SEALER_PLAINTEXT,        /* not sealed where sealing is required */
    SB_SEALER_FORBIDDEN,        /* caller's certificate may not call the method */
    SB_SEALER_NO_KEY,           /* no certificate for the service verified */
    SB_SEALER_STALE,            /* sealed longer ago than it may be accepted */
    SB_SEALER_FUTURE,           /* sealed too far ahead of our clock */
    SB_SEALER_REFUSED_MAX
} sb_sealer_reason_t;

const char *sb_sealer_reason_name (sb_sealer_reason_t reason);

typedef struct {
    uint64_t sealed;                /* bodies sealed */
    uint64_t opened;                /* bodies opened */
    uint64_t lookups;               /* sys.keys lookups sent */
    uint64_t refused [SB_SEALER_REFUSED_MAX];
} sb_sealer_counters_t;

/*  What a lookup asks for: the certificates (sys.keys) of the member
    that offers `service`, or of the member with the curve key `key`.
    The sealer owns it; it stays valid until the owner has handed its
    answer back, or the sealer is destroyed.  */
typedef enum {
    SB_SEALER_LOOKUP_SERVICE,
    SB_SEALER_LOOKUP_CALLER
} sb_sealer_lookup_kind_t;

typedef struct {
    sb_sealer_lookup_kind_t kind;
    char service [SB_NAME_MAX + 1];     /* SERVICE */
    uint8_t key [SB_KEY_SIZE];          /* CALLER */
    /*  Brokers that knew no such service, this lookup: the owner counts
        them when it asks again (the sealer sets 0 when a lookup starts). */
    unsigned empty;
} sb_sealer_lookup_t;

/*  Sends the sys.keys lookup for `lookup` (protocol.md 7: body
    {"service": S} or {"key": K}).  Its answer, or why there is none,
    comes back through sb_sealer_lookup_answer exactly once, never from
    inside this call.  0, or -1 with err (the sealer then treats the
    lookup as failed with err).  */
typedef int (sb_sealer_lookup_fn) (sb_sealer_lookup_t *lookup, void *arg, sb_error_t *err);
/*  The lookup for `service`'s key ended (sb_sealer_service_result says
    how): calls that waited for it go out or are answered.  */
typedef void (sb_sealer_ready_fn) (const char *service, void *arg);
/*  A request that waited for its caller's certificate, handed back to
    be handled again (sb_sealer_open_request now opens or refuses it).
    h and body are valid during the call only; body may be moved away. */
typedef void (sb_sealer_release_fn) (uint32_t link_id, const sb_header_t *h, zmq_msg_t *body,
                                     void *arg);

typedef struct {
    sb_sealer_lookup_fn *lookup;
    sb_sealer_ready_fn *keys_ready;
    sb_sealer_release_fn *release;
    void *arg;                          /* passed to each */
} sb_sealer_owner_t;

/*  A sealer for the member with `identity` (borrowed; must outlive the
    sealer), which asks `owner` (copied) for what it lacks.  Loads
    DIR/events.key when it exists (same file rules as every key file:
    0600, no symbolic link); NULL with err if it exists but cannot be
    used.  */
sb_sealer_t *sb_sealer_new (const sb_identity_t *identity, const sb_sealer_owner_t *owner,
                            sb_error_t *err);
void sb_sealer_destroy (sb_sealer_t **self_p);

/*  Counters, copied (may be called from another thread).  */
void sb_sealer_counters (const sb_sealer_t *self, sb_sealer_counters_t *out);
/*  Our key id (the header's key_id): our curve public key.  */
const uint8_t *sb_sealer_key_id (const sb_sealer_t *self);
bool sb_sealer_has_events (const sb_sealer_t *self);

/*  The answer to `lookup`: the sys.keys reply body (data, size), or err
    when there is none (timeout, no broker).  The certificates in it are
    verified here.  Returns SB_SEALER_ASK_AGAIN when no broker knew the
    service and `last` is false (another broker may have just heard of
    it, protocol.md 7): the owner counts lookup->empty and sends the
    lookup again to another broker; else 0, and the outcome reaches the
    owner through keys_ready or release.  */
#define SB_SEALER_ASK_AGAIN 1
int sb_sealer_lookup_answer (sb_sealer_t *self, sb_sealer_lookup_t *lookup,
                             const void *data, size_t size, const sb_error_t *err, bool last);

/*  Caller side.  1 with pk filled when the service's key is known;
    0 when not yet: a lookup is in flight (started here if needed) and
    the owner hears of its outcome through keys_ready.  */
int sb_sealer_service_key (sb_sealer_t *self, const char *service, uint8_t pk [SB_KEY_SIZE]);
/*  In keys_ready, without starting a lookup: 1 with pk filled
    when the key is known, else 0 with the code and text to answer the
    waiting calls with.  */
int sb_sealer_service_result (sb_sealer_t *self, const char *service, uint8_t pk [SB_KEY_SIZE],
                              sb_code_t *code, const char **why);

/*  A request's context, "service.method", into out; returns its length. */
size_t sb_sealer_context (const char *service, const char *method, char out [2 * SB_NAME_MAX + 2]);

/*  Seals the envelope (now, ttl_ms, context) and plain for pk into *out
    (initialised here).  ttl_ms: how long the body may be accepted (a
    call's timeout; 0: SB_ENVELOPE_MAX_AGE_MS).  nonce (may be NULL)
    gets the nonce used.  0, or -1 with err.  */
int sb_sealer_seal (sb_sealer_t *self, const uint8_t pk [SB_KEY_SIZE],
                    const void *context, size_t context_size, uint32_t ttl_ms,
                    const void *plain, size_t size, zmq_msg_t *out,
                    uint8_t nonce [SB_SEAL_NONCE_SIZE], sb_error_t *err);

/*  Opens a REPLY to a call sealed for pk with this nonce into *plain
    (initialised here on success).  -1 with err (counted, logged).  */
int sb_sealer_open_reply (sb_sealer_t *self, const sb_header_t *h, zmq_msg_t *body,
                          const uint8_t pk [SB_KEY_SIZE], const uint8_t nonce [SB_SEAL_NONCE_SIZE],
                          zmq_msg_t *plain, sb_error_t *err);

/*  Worker side: a REQUEST for this peer that came on link `link_id`.
    1: opened, *plain holds the body (initialised here), caller_pk and
    nonce what the reply is sealed for; 0: held until the caller's
    certificate is looked up, after which it comes back through the
    owner's release with link_id (body moved away); -1: refused, err
    says the code and text to answer (counted, logged).  */
int sb_sealer_open_request (sb_sealer_t *self, uint32_t link_id, const sb_header_t *h,
                            zmq_msg_t *body, zmq_msg_t *plain, uint8_t caller_pk [SB_KEY_SIZE],
                            uint8_t nonce [SB_SEAL_NONCE_SIZE], sb_error_t *err);

/*  Events: seal a PUBLISH body for the event key (-1 without one), and
    open one: 1 opened into *plain, 0 plaintext accepted (no event key),
    -1 refused (counted, logged).  */
int sb_sealer_seal_event (sb_sealer_t *self, const char *topic, const void *plain, size_t size,
                          zmq_msg_t *out, sb_error_t *err);
int sb_sealer_open_event (sb_sealer_t *self, const sb_header_t *h, zmq_msg_t *body,
                          zmq_msg_t *plain, sb_error_t *err);

/*  Tests only: every sealer of the process reads its clock (unix ms)
    as the real one plus offset_ms, so that a test can seal "a minute
    ago" or open "a minute later" without sleeping.  Thread-safe.  */
void sb__sealer_set_clock_offset (int64_t offset_ms);

#endif
