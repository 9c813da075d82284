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
    /*  Limits on what one peer may make the broker hold or do
        (docs/operations.md, "Limits").  */
    int max_timeout_ms;      /* largest deadline taken; longer ones are clamped (default 300000) */
    size_t peer_budget;      /* bytes held for one peer: bodies of its requests the broker
                                keeps, and bodies sent to it not yet written out
                                (default 64 MiB) */
    size_t peer_services_max;/* services one peer may offer (default 256) */
    size_t services_max;     /* services in the broker's directory (default 4096) */
    size_t instances_max;    /* workers (instances) of one service (default 1024) */
    /*  Cluster (docs/protocol.md sections 9 and 12).  */
    const char *cluster;     /* default "default" */
    const char *beacon;      /* "lo", IFACE, "239.x.y.z[@IFACE]" or "off"; NULL: "off"
                                (`sb broker` defaults to "lo") */
    int beacon_port;         /* default SB_BEACON_PORT_DEFAULT (7690) */
    int beacon_interval_ms;  /* default SB_BEACON_INTERVAL_DEFAULT (1000) */
    /*  Security (docs/security.md).  secure false: plain TCP, no ACL.
        secure true: loads the identity DIR/NAME.key + DIR/NAME.cert +
        DIR/authority.pub (keys_dir NULL: $SB_KEYS, member NULL:
        $SB_MEMBER), makes the ROUTER a CURVE server whose ZAP handler
        admits members with a certificate in certs_dir (NULL: keys_dir)
        that is signed by the authority, valid and not in the revocation
        list `revoked` (NULL: none); enforces offer/call rights; signs
        beacons and believes only signed ones.  One secure broker per
        process (one ZAP handler per zmq context).  */
    bool secure;
    const char *keys_dir;
    const char *member;
    const char *certs_dir;
    const char *revoked;
    /*  Capture hook: when set, called on the broker's thread with every
        body the broker receives (frame 2, or the inline body field of a
        header that decodes), before it is handled;
        the data is valid only during the call.  For tests that prove
        what the broker can see (e.g. that sealed bodies hide a canary).
        NULL (the default) costs one branch per message.  */
    void (*capture) (const void *body, size_t size, void *arg);
    void *capture_arg;
} sb_broker_config_t;

#define SB_BROKER_BIND_DEFAULT "tcp://127.0.0.1:7600"
#define SB_BROKER_HEARTBEAT_DEFAULT 1000
#define SB_BROKER_QUEUE_DEFAULT 10000
#define SB_BROKER_TIMEOUT_DEFAULT 30000
#define SB_BROKER_MAX_TIMEOUT_DEFAULT 300000
#define SB_BROKER_PEER_BUDGET_DEFAULT ((size_t) 64 * 1024 * 1024)
#define SB_BROKER_PEER_SERVICES_DEFAULT 256
#define SB_BROKER_SERVICES_DEFAULT 4096
#define SB_BROKER_INSTANCES_DEFAULT 1024

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

/*  Re-reads the certificate directory and the revocation list (what
    `sb broker` does on SIGHUP); the broker then re-checks the rights of
    every connected peer on its next READY or REQUEST.  On error the old
    state stays in force and -1 is returned with err.  0 (nothing to do)
    for an insecure broker.  */
int sb_broker_reload (sb_broker_t *self, sb_error_t *err);

/*  The broker's CURVE public key (32 bytes), NULL when insecure.  */
const uint8_t *sb_broker_public_key (sb_broker_t *self);

/*  Sends BYE to every peer, stops the actor, closes the socket and NULLs
    *self_p.  Safe on NULL and twice.  */
void sb_broker_destroy (sb_broker_t **self_p);

#endif
