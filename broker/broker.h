/*  broker.h — the Switchboard broker engine.

    A broker is one actor (a CZMQ zactor: its own thread) that owns one
    ROUTER socket and implements docs/protocol.md: sessions and heartbeats,
    the directory of services and their workers, credit-based dispatch,
    bounded per-service queues, deadlines, publish/subscribe and the
    built-in `sys` service.  `sb broker` is a thin command around it; tests
    start it in-process.

    The engine decodes headers only: bodies are moved between sockets as
    zmq_msg_t frames, never copied or read (except READY bodies, which list
    a worker's methods, and copies kept of idempotent requests so that they
    can be sent again if their worker dies).
*/
#ifndef SB_BROKER_H_INCLUDED
#define SB_BROKER_H_INCLUDED

#include "switchboard.h"

typedef struct sb_broker sb_broker_t;

/*  Zero or NULL in a field means its default.  */
typedef struct {
    const char *bind;        /* default "tcp://127.0.0.1:7600"; "tcp://127.0.0.1:*" allowed */
    const char *name;        /* default "broker-<pid>" */
    int heartbeat_ms;        /* default 1000 */
    size_t queue_max;        /* per service, default 10000 */
    size_t body_max;         /* default SB_BODY_MAX_DEFAULT */
    int default_timeout_ms;  /* default 30000 */
} sb_broker_config_t;

#define SB_BROKER_BIND_DEFAULT "tcp://127.0.0.1:7600"
#define SB_BROKER_HEARTBEAT_DEFAULT 1000
#define SB_BROKER_QUEUE_DEFAULT 10000
#define SB_BROKER_TIMEOUT_DEFAULT 30000

/*  Starts the broker actor and returns once its socket is bound.  config
    may be NULL (all defaults).  Returns NULL with err filled (code
    SB_E_BAD_REQUEST for a bad configuration, SB_E_UNAVAILABLE when the
    endpoint cannot be bound).  The caller destroys the result.  */
sb_broker_t *sb_broker_new (const sb_broker_config_t *config, sb_error_t *err);

/*  The endpoint really bound, e.g. "tcp://127.0.0.1:43121" when the port
    was "*".  Borrowed; valid until the broker is destroyed.  */
const char *sb_broker_endpoint (sb_broker_t *self);

/*  The broker's name (given or generated).  Borrowed.  */
const char *sb_broker_name (sb_broker_t *self);

/*  Sends BYE to every peer, stops the actor, closes the socket and NULLs
    *self_p.  Safe on NULL and twice.  */
void sb_broker_destroy (sb_broker_t **self_p);

#endif
