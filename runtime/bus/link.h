/*  link.h — one session between a peer and one broker.

    A link owns one DEALER socket connected to one broker endpoint and
    runs the session of docs/protocol.md section 5.1 on it: HELLO until
    the broker answers WELCOME, HEARTBEAT whenever nothing else was sent
    for one interval, the broker declared dead after three silent
    intervals, then HELLO again each interval until a new WELCOME.  Each
    WELCOME (the first one and every later one, e.g. after the broker
    restarted) calls the owner's callback so that it announces itself
    again (READY, SUBSCRIBE).

    A link has no thread of its own: its owner (a client, or a service
    instance's actor) polls the socket, calls sb_link_recv when it is
    readable and sb_link_tick when sb_link_next_tick says so.  A peer
    talking to several brokers holds one link per broker (see peer.h).

    Sockets use ZMQ_IMMEDIATE, so nothing is queued for a broker that is
    not connected: a send then fails at once (errno EAGAIN) and the owner
    decides what to do with the message.
*/
#ifndef SB_LINK_H_INCLUDED
#define SB_LINK_H_INCLUDED

#include "wire/wire.h"
#include "security/identity.h"
#include <zmq.h>

typedef struct sb_link sb_link_t;

/*  Called from sb_link_recv on every WELCOME.  */
typedef void (sb_link_welcome_fn) (sb_link_t *link, void *arg);

/*  Heartbeat interval used until the broker's WELCOME says otherwise.  */
#define SB_LINK_INTERVAL_DEFAULT 1000
/*  Silent intervals after which the broker is declared dead.  */
#define SB_LINK_LIVENESS 3
/*  Send high-water mark, each way: a bound on what one socket queues.  */
#define SB_LINK_HWM 10000

/*  Creates the socket and connects it; the first HELLO goes out on the
    first sb_link_tick.  `name` is sent in HELLO (a valid wire name).
    Returns NULL with err filled on a bad endpoint.  */
sb_link_t *sb_link_new (const char *endpoint, const char *name, uint32_t id,
                        sb_link_welcome_fn *welcome, void *arg, sb_error_t *err);
/*  The same as a CURVE client when `identity` is given (borrowed; must
    outlive the link).  `endpoint` may carry the broker's CURVE public key
    as "ENDPOINT#KEY" (identity.h).  With an identity the key is required;
    without one an endpoint with a key is refused, so that a secure
    broker is never tried in plaintext by mistake (docs/security.md,
    "Insecure mode").  sb_link_endpoint returns `endpoint` as given.  */
sb_link_t *sb_link_new_secure (const char *endpoint, const char *name, uint32_t id,
                               const sb_identity_t *identity,
                               sb_link_welcome_fn *welcome, void *arg, sb_error_t *err);
/*  Sends BYE if the broker is alive, closes the socket (linger 0).  */
void sb_link_destroy (sb_link_t **self_p);

/*  The libzmq socket, for zmq_poll.  */
void *sb_link_handle (sb_link_t *self);
const char *sb_link_endpoint (const sb_link_t *self);
/*  The number the owner gave the link (stable while the link exists).  */
uint32_t sb_link_id (const sb_link_t *self);
/*  True between a WELCOME and the broker's death or BYE.  */
bool sb_link_alive (const sb_link_t *self);
/*  The broker's name from its last WELCOME ("" before).  */
const char *sb_link_broker (const sb_link_t *self);
/*  Frames received that were not valid messages (dropped).  */
uint64_t sb_link_bad_frames (const sb_link_t *self);

/*  Sends one message without blocking.  `body` (may be NULL) is moved
    into libzmq on success and left untouched on failure.  A body of at
    most SB_INLINE_MAX bytes goes inside the header frame (copied; the msg
    is emptied on success), a larger one as a second frame.  Returns 0, or
    -1 with errno (EAGAIN: broker not connected or queue full).  */
int sb_link_send (sb_link_t *self, const sb_header_t *header, zmq_msg_t *body);
/*  Same with a body copied from bytes (size 0: no body frame).  */
int sb_link_send_bytes (sb_link_t *self, const sb_header_t *header,
                        const void *data, size_t size);

/*  Reads one message without blocking.  `body` must be initialised
    (zmq_msg_init) by the caller, who closes it afterwards; it receives
    the body whether it came inline or as a second frame.  Returns 1
    with header and body filled when the message is for the owner;
    0 when a message was read and handled here (WELCOME, HEARTBEAT, BYE)
    or dropped (bad frames); -1 when nothing was waiting.  */
int sb_link_recv (sb_link_t *self, sb_header_t *header, zmq_msg_t *body);

/*  The connection to the broker dropped (the owner's socket monitor
    saw it): the broker counts as dead at once, without waiting for three
    silent intervals, and HELLO goes out again until a new WELCOME.  */
void sb_link_lost (sb_link_t *self, int64_t now);

/*  Session housekeeping: HELLO, HEARTBEAT, liveness.  `now` is
    zclock_mono () in ms.  */
void sb_link_tick (sb_link_t *self, int64_t now);
/*  When the next sb_link_tick is due (zclock_mono time, ms).  */
int64_t sb_link_next_tick (const sb_link_t *self);

#endif
