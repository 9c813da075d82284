/*  engine.h — what the broker's files share: the engine's state and the
    functions they call across each other.  Private to broker/: the rest
    of the project sees only broker/broker.h.

    The broker is one actor with one ROUTER socket (docs/protocol.md is the
    behaviour; these files say how it is built).  Everything runs on the
    actor's thread, so nothing is locked.  Each file holds one concern:

    - engine.c     the actor: its loop, receiving, dispatch by command, and
                   the public API of broker/broker.h;
    - session.c    peers, their sessions and heartbeats, and sending
                   (with the framing of a header and an inline body);
    - requests.c   the request pool, deadlines, REQUEST and its answers;
    - directory.c  services, workers, their credit, and dispatch (READY);
    - pubsub.c     subscriptions, groups, PUBLISH;
    - acl.c        access control on a secure broker;
    - sys.c        the built-in `sys` service;
    - cluster.c    beacons, links to other brokers, PEER and DIRECTORY;
    - zap.c        the ZAP handler admitting members by certificate.

    Internal functions shared by these files are named sb__<what>; statics
    keep s_.
*/
#ifndef SB_BROKER_ENGINE_H_INCLUDED
#define SB_BROKER_ENGINE_H_INCLUDED

#include "broker.h"
#include "wire/wire.h"
#include "wire/frame.h"
#include "bus/beacon.h"
#include "security/identity.h"
#include "zap.h"

#include <czmq.h>

#define BATCH_MAX 512                   /* messages drained per poll */
#define METHODS_MAX 64                  /* per service: worker method sets are 64-bit masks */
#define SUBS_MAX 1024                   /* subscriptions per peer */
#define REQUESTS_MAX (1u << 22)         /* live request entries in the whole broker */
#define POOL_CHUNK 1024
/*  Messages libzmq may queue toward (and from) one peer.  Large bodies
    are bounded in bytes by the peer budget (session.c); this bounds the
    small ones: at most HWM x (SB_HEADER_MAX + SB_INLINE_MAX), 60 MiB.  */
#define HWM 10000
#define ACL_CACHE 16                    /* per-peer cached call decisions */
#define DIRECTORY_MAX (1024 * 1024)     /* bytes of a DIRECTORY body kept */
#define DIRECTORY_SERVICES_MAX 4096     /* services in one DIRECTORY */
#define KNOWN_MAX 16384                 /* service names remembered once seen */
#define BROKERS_MAX 256                 /* cluster brokers linked to */
#define REFUSED_NAMES_MAX 1024          /* members posing as brokers, logged once each */

/*  Reasons a frame is dropped: the decoder's, then the broker's own.  */
enum {
    R_FRAMES = SB_FRAME_BAD_FRAMES,     /* not 1 or 2 frames, or a body both ways */
    R_BAD_BODY,                         /* READY body not the documented map */
    R_MISSING_FIELD,                    /* a command without a field it needs */
    R_UNEXPECTED,                       /* a command a broker does not accept */
    R_RESERVED,                         /* READY for a reserved service name */
    R_LIMIT,                            /* past a per-peer or per-service limit */
    R_FOREIGN_REPLY,                    /* REPLY/ERROR for a request its sender does not hold */
    R_MAX
};

/*  Bytes of large bodies handed to libzmq for one peer and not yet
    written out (session.c).  libzmq releases a body on its I/O thread,
    so both fields are atomic; the struct lives until the peer and every
    body it counts are gone.  */
typedef struct {
    size_t bytes;                   /* __atomic */
    int refs;                       /* __atomic: the peer, and each body in transit */
} account_t;

typedef struct peer_s peer_t;
typedef struct worker_s worker_t;
typedef struct service_s service_t;
typedef struct req_s req_t;
typedef struct sub_s sub_t;
typedef struct group_s group_t;

enum { REQ_FREE, REQ_QUEUED, REQ_INFLIGHT, REQ_EXPIRED };

struct req_s {
    uint32_t slot;
    uint32_t gen;
    int state;
    req_t *next, *prev;             /* service queue, or worker in-flight list */
    req_t *cnext, *cprev;           /* caller's list */
    size_t heap_pos;                /* SIZE_MAX when not in the deadline heap */
    int64_t deadline;
    peer_t *caller;                 /* NULL once the caller is gone */
    uint64_t caller_id;             /* the caller's request_id */
    service_t *service;
    worker_t *worker;
    int method;                     /* index in service->methods */
    bool idempotent;
    bool with_body;                 /* the request came with a body */
    bool has_body;                  /* body holds it (queued, or idempotent copy) */
    zmq_msg_t body;                 /* the frame holding the body... */
    uint32_t body_offset;           /* ...at this offset (inline: in the header frame) */
    uint32_t body_size;
    sb_header_t header;             /* as received; re-encoded at dispatch */
};

typedef struct {
    req_t *head, *tail;
    size_t count;
} req_list_t;

struct worker_s {
    peer_t *peer;
    service_t *service;
    uint32_t capacity;
    uint32_t in_flight;
    uint32_t instance;
    uint64_t mask;                  /* methods offered, bits over service->methods */
    req_list_t inflight;
    size_t index;                   /* in service->workers */
    worker_t *peer_next;
};

typedef struct {
    char name [SB_NAME_MAX + 1];
    uint32_t flags;
    uint32_t timeout_ms;            /* the contract from READY: 0 when not given */
    uint32_t cache_ttl_ms;
} method_t;

struct service_s {
    uint64_t uid;                   /* unique for the broker's life (ACL cache key) */
    char name [SB_NAME_MAX + 1];
    char version [SB_NAME_MAX + 1];
    char *schema;                   /* schema text of the last READY that had one; NULL: none */
    worker_t **workers;
    size_t nworkers, walloc;
    method_t methods [METHODS_MAX];
    size_t nmethods;
    uint64_t mask;                  /* union of the workers' masks */
    req_list_t queue;
    size_t rr;                      /* rotates ties between equally loaded workers */
};

struct group_s {
    char name [SB_NAME_MAX + 1];
    sub_t **members;
    size_t n, alloc;
    size_t rr;
};

struct sub_s {
    peer_t *peer;
    char prefix [SB_TOPIC_MAX + 1];
    size_t len;
    group_t *group;                 /* NULL for broadcast */
    size_t index;                   /* in the broadcast array or group members */
    sub_t *peer_next;
};

/*  Another broker's last DIRECTORY (docs/protocol.md section 9).  */
typedef struct {
    char name [SB_NAME_MAX + 1];
    char id [2 * SB_BEACON_ID_SIZE + 1];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t *body;                  /* validated msgpack map */
    size_t size;
    size_t nservices;
} remote_t;

typedef struct {
    uint64_t key;                   /* service uid << 8 | method + 1; 0: empty */
    bool allowed;
} acl_entry_t;

struct peer_s {
    uint8_t key [256];              /* the routing id, its length first (sb__peer_key) */
    uint8_t id [255];
    size_t id_size;
    char name [SB_NAME_MAX + 1];
    bool welcomed;
    bool doomed;                    /* unreachable or dead: reaped after the batch */
    int64_t last_heard;
    int64_t last_sent;
    worker_t *workers;
    sub_t *subs;
    size_t nsubs;
    req_t *calls;                   /* requests it made that are still live */
    size_t held;                    /* body bytes of those the broker keeps (requests.c) */
    account_t *account;             /* bodies sent to it, not yet written out */
    bool over_logged;               /* "over its budget" logged once */
    zhashx_t *by_service;           /* service name -> its worker_t (NULL until READY) */
    size_t nworkers;                /* services it offers */
    bool limit_logged;              /* "past a directory limit" logged once */
    uint64_t event_seq;             /* last event delivered by broadcast */
    bool broker;                    /* a broker of the cluster: it sent PEER */
    remote_t *dir;                  /* its last DIRECTORY */
    uint32_t acl_epoch;             /* certificate looked up at this epoch; 0: never */
    sb_cert_t *cert;                /* NULL: no valid certificate, all is forbidden */
    bool call_any;                  /* the certificate may call '*' */
    acl_entry_t acl [ACL_CACHE];
};

/*  A broker of the cluster heard through beacons, and our link to it.  */
typedef struct {
    uint8_t id [SB_BEACON_ID_SIZE];
    char idhex [2 * SB_BEACON_ID_SIZE + 1];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t key [SB_BEACON_KEY_SIZE];
    char name [SB_NAME_MAX + 1];    /* from its PEER answer; "" until then */
    zsock_t *link;                  /* DEALER to it; NULL if we cannot speak to it */
    int64_t link_sent;
} cbroker_t;

typedef struct {
    uint64_t requests, replies, timeouts, late_replies, orphaned_replies;
    uint64_t handshakes_failed;     /* refused by libzmq before ZAP (secure only) */
    uint64_t events, dropped_events, unreachable, send_failures;
    uint64_t errors [SB_E_CODE_MAX + 1];
    uint64_t bad [R_MAX];
    uint64_t forbidden;
    uint64_t not_broker;            /* PEER/DIRECTORY from members without the broker role */
    uint64_t directories;           /* DIRECTORY messages accepted */
    uint64_t over_budget;           /* REQUESTs refused, messages not sent: peer over budget */
    uint64_t timeouts_clamped;      /* REQUESTs whose deadline was cut to max_timeout_ms */
    uint64_t directory_refused;     /* READYs past a directory limit */
} stats_t;

typedef struct {
    sb_broker_config_t config;
    char name [SB_NAME_MAX + 1];
    char bind [256];
    char cluster [SB_NAME_MAX + 1];
    char beacon [128];
    /*  Security (NULL when insecure), owned by sb_broker_t.  */
    sb_identity_t *identity;
    sb_zap_t *zap;
    sb_revocation_t *revoked;
    sb_cert_verifier_t verifier;    /* beacons: authority + revocation list */
    /*  Filled by the actor before it signals.  */
    int rc;
    char endpoint [256];
    char error [SB_ERROR_TEXT_MAX];
} args_t;

typedef struct {
    args_t *args;
    zsock_t *pipe;
    zsock_t *router;
    void *sock;                     /* the router's libzmq handle */
    zsock_t *monitor;               /* the router's failed handshakes (secure only) */
    int64_t now, started, next_tick;
    int hb;
    bool stop;
    zhashx_t *peers;                /* key -> peer_t */
    zhashx_t *services;             /* name -> service_t */
    zhashx_t *known;                /* names of every service seen offered (bounded) */
    zhashx_t *groups;               /* name -> group_t */
    sub_t **bcast;
    size_t nbcast, bcast_alloc;
    uint64_t event_seq;
    size_t nworkers;
    /*  Request pool and deadline heap.  */
    req_t **chunks;
    size_t nchunks;
    req_t *free_list;
    size_t live;
    req_t **heap;
    size_t heap_size, heap_alloc;
    bool doomed;                    /* some peer waits to be reaped */
    stats_t stats;
    msgpack_sbuffer sbuf;
    sb_frames_t in;                 /* the message being handled (wire/frame.h) */
    /*  Cluster.  */
    uint8_t id [SB_BEACON_ID_SIZE];
    char idhex [2 * SB_BEACON_ID_SIZE + 1];
    char announce [SB_BEACON_ENDPOINT_MAX + 1];
    sb_beacon_t *beacon;
    int64_t beacon_due;             /* when the beacon needs a tick or expiry */
    cbroker_t **brokers;
    size_t nbrokers, balloc;
    bool dir_dirty;
    int64_t next_dir, last_dir;
    msgpack_sbuffer dbuf;
    zmq_pollitem_t *items;
    cbroker_t **owners;             /* the link of each poll item */
    size_t items_alloc;
    /*  Security.  */
    bool secure;
    uint32_t acl_epoch;
    uint64_t service_uid;
    zhashx_t *refused_names;        /* members refused as brokers, logged once (cluster.c) */
} engine_t;

/*  --------------------------------------------------------------------
    Functions the broker's files call across each other, by the file that
    defines them (each states its contract there).  */

/*  engine.c  */
int sb__grow (void ***array, size_t count, size_t *alloc);
void sb__bad (engine_t *self, int reason);

/*  session.c  */
void sb__doom (engine_t *self, peer_t *peer);
int sb__send_frames (engine_t *self, peer_t *peer, zmq_msg_t *frames, int nframes);
int sb__send (engine_t *self, peer_t *peer, const sb_header_t *h, const sb_body_t *body);
void sb__send_simple (engine_t *self, peer_t *peer, sb_cmd_t command);
void sb__send_error (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
                    sb_code_t code, const char *fmt, ...);
/*  The same with the flag unrouted whatever the code: this broker's own
    answer, given before any dispatch.  */
void sb__send_unrouted (engine_t *self, peer_t *caller, const sb_header_t *req,
                        uint64_t request_id, sb_code_t code, const char *fmt, ...);
void sb__peer_key (uint8_t *key, const uint8_t *id, size_t size);
size_t sb__peer_key_hash (const void *key);
int sb__peer_key_compare (const void *a, const void *b);
peer_t *sb__peer_new (engine_t *self, const uint8_t *key, const uint8_t *id, size_t size);
void sb__peer_destroy (engine_t *self, peer_t *p);
void sb__reap (engine_t *self);
void sb__welcome (engine_t *self, peer_t *p, const sb_header_t *h);
void sb__peers_tick (engine_t *self);
bool sb__over_budget (engine_t *self, peer_t *peer);
size_t sb__in_transit (const peer_t *peer);
void sb__trim (void);

/*  requests.c  */
void sb__req_list_push_back (req_list_t *l, req_t *r);
void sb__req_list_push_front (req_list_t *l, req_t *r);
void sb__req_list_remove (req_list_t *l, req_t *r);
void sb__caller_unlink (req_t *r);
uint64_t sb__req_id (const req_t *r);
void sb__req_free (engine_t *self, req_t *r);
void sb__req_fail (engine_t *self, req_t *r, sb_code_t code, const char *text);
bool sb__req_sendable (const req_t *r);
void sb__req_body_drop (req_t *r);
void sb__on_request (engine_t *self, peer_t *p, sb_header_t *h, const sb_body_t *body);
void sb__on_answer (engine_t *self, peer_t *p, sb_header_t *h, const sb_body_t *body);
void sb__expire (engine_t *self);

/*  directory.c  */
service_t *sb__service_lookup (engine_t *self, const char *name);
int sb__method_index (const service_t *s, const char *name);
worker_t *sb__pick_worker (engine_t *self, service_t *s, int method);
int sb__dispatch_to (engine_t *self, req_t *r, worker_t *w);
void sb__service_dispatch (engine_t *self, service_t *s);
void sb__services_retry (engine_t *self);
void sb__worker_remove (engine_t *self, worker_t *w);
void sb__on_ready (engine_t *self, peer_t *p, const sb_header_t *h, const sb_body_t *body);

/*  pubsub.c  */
void sb__sub_remove (engine_t *self, sub_t *sub);
void sb__on_subscribe (engine_t *self, peer_t *p, const sb_header_t *h, bool subscribe);
void sb__on_publish (engine_t *self, const sb_header_t *h, const sb_body_t *body);

/*  acl.c  */
bool sb__may_offer (engine_t *self, peer_t *p, const char *service);
bool sb__is_broker (engine_t *self, peer_t *p);
bool sb__may_call (engine_t *self, peer_t *p, const service_t *s, int method, const sb_header_t *h);
void sb__forbid_call (engine_t *self, peer_t *p, const sb_header_t *h);

/*  sys.c  */
void sb__pack_cstr (msgpack_packer *pk, const char *s);
void sb__pack_service (engine_t *self, msgpack_packer *pk, const service_t *s);
const msgpack_object *sb__map_get (const msgpack_object *map, const char *name);
int sb__str_copy (const msgpack_object *o, char *out, size_t size);
void sb__on_sys (engine_t *self, peer_t *p, const sb_header_t *h, const sb_body_t *body);

/*  cluster.c  */
void sb__remote_free (remote_t **remote_p);
void sb__not_broker_once (engine_t *self, const char *member, const char *what);
void sb__on_peer (engine_t *self, peer_t *p, const sb_header_t *h);
void sb__on_directory (engine_t *self, peer_t *p, const sb_body_t *body);
void sb__link_close (engine_t *self, cbroker_t *cb);
void sb__link_recv (engine_t *self, cbroker_t *cb);
void sb__beacon_work (engine_t *self, bool readable);
void sb__links_tick (engine_t *self);
int sb__cluster_start (engine_t *self);

#endif
