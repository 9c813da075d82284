/*  bridge.h — the state shared by the REST bridge's two halves: the
    bridge and its requests.  http.c's functions are in http.h; bridge.c
    (the actor) uses them, and http.c uses nothing of bridge.c but the
    hand-over queue declared here.

    http.c runs on libmicrohttpd's threads: it parses, authenticates and
    converts each HTTP request, then suspends its connection and hands the
    request to the service actor through a mutex-protected queue and an
    eventfd (`sb_actor_watch_fd`).  bridge.c runs on the actor's thread:
    it makes the bus call, and the reply callback stores the answer and
    resumes the connection, on which http.c then sends it.  No thread
    waits for the bus, so thousands of requests in flight need no more
    threads than the HTTP pool.

    A request is shared by the two sides and reference counted: one
    reference for its HTTP connection (dropped when libmicrohttpd reports
    it completed, including when the client vanished), one while the
    actor holds it (dropped when its bus call is answered).  The late
    answer to a client that left is simply discarded.
*/
#ifndef SB_REST_BRIDGE_H_INCLUDED
#define SB_REST_BRIDGE_H_INCLUDED

#include "switchboard.h"
#include "auth.h"
#include "catalog.h"
#include "conns.h"
#include "metrics.h"
#include "route.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>

#define SB_REST_REQUEST_ID_MAX 64

typedef enum {
    SB_REST_CALL,               /* a bus call: POST /v1/s/m or an alias */
    SB_REST_HEALTH,             /* GET /healthz: sys.ping */
    SB_REST_SERVICES            /* GET /v1/services: sys.services */
} sb_rest_kind_t;

typedef enum {
    SB_REST_NEW,                /* headers seen, route decided */
    SB_REST_BODY,               /* accumulating the body */
    SB_REST_WAITING,            /* suspended, handed to the actor */
    SB_REST_ANSWERED,           /* answer stored, connection resumed */
    SB_REST_SENT                /* response queued on the connection */
} sb_rest_state_t;

typedef struct sb_rest_bridge sb_rest_bridge_t;
typedef struct sb_rest_req sb_rest_req_t;

struct sb_rest_req {
    sb_rest_req_t *next;                /* in the hand-over queue */
    sb_rest_req_t *prev_active;         /* in the actor's in-flight list */
    sb_rest_req_t *next_active;
    sb_rest_bridge_t *bridge;
    struct MHD_Connection *connection;
    int refs;                           /* atomic */
    sb_rest_kind_t kind;
    sb_rest_state_t state;
    int64_t start_us;
    char request_id [SB_REST_REQUEST_ID_MAX + 1];    /* X-Request-Id of the answer */
    char trace [SB_TRACE_HEX_SIZE];     /* bus trace id of its call, 32 hex digits */
    const char *cors_origin;            /* value for Access-Control-Allow-Origin, or NULL */
    char service [SB_NAME_MAX + 1];     /* for a call, and the metrics labels */
    char method [SB_NAME_MAX + 1];
    const char *label_service;          /* metrics labels for non-call routes */
    const char *label_method;
    sb_rest_match_t *alias;             /* alias parameters, or NULL */
    bool gone_counted;                  /* client_gone already counted */
    bool closed_by_bridge;              /* refused mid-body, the connection closed */
    char *in;                           /* request body as received */
    size_t in_size;
    size_t in_capacity;
    msgpack_sbuffer body;               /* request body as MessagePack */
    int timeout_ms;
    bool timeout_given;                 /* by the client, X-Timeout-Ms */
    /*  The answer, written by the actor before it resumes the connection. */
    int status;
    char *out;                          /* malloc'd JSON */
    size_t out_size;
};

struct sb_rest_bridge {
    sb_actor_t *actor;
    struct MHD_Daemon *daemon;
    sb_rest_conns_t *conns;             /* admission and head deadlines */
    sb_rest_metrics_t *metrics;
    sb_rest_auth_t *auth;               /* no keys: auth off */
    sb_rest_routes_t *routes;
    sb_rest_catalog_t *catalog;         /* schemas and OpenAPI, from the bus (catalog.h) */
    /*  Settings.  */
    char listen [128];
    unsigned threads;
    size_t max_body;
    int timeout_ms;                     /* default bus call timeout */
    int timeout_max_ms;                 /* cap for a client's X-Timeout-Ms */
    unsigned connection_limit;
    unsigned connection_timeout_s;
    unsigned connections_per_client;
    unsigned header_timeout_s;          /* for a complete request head */
    int drain_ms;
    bool reuse_port;                    /* SO_REUSEPORT: instances share the port */
    char cors_origins [1024];           /* space-separated; "*" for any; "" off */
    /*  Hand-over queue, HTTP threads -> actor.  */
    pthread_mutex_t lock;
    sb_rest_req_t *queue_head;
    sb_rest_req_t *queue_tail;
    bool stopping;                      /* under lock: no more hand-overs */
    int event_fd;
    /*  Requests the actor has called for and not yet seen answered
        (actor thread only).  */
    sb_rest_req_t *active;
    size_t active_size;
    uint16_t port;                      /* the bound port */
    uint64_t request_prefix;            /* random, drawn at start: request ids */
    uint64_t request_count;             /* atomic */
};

#endif
