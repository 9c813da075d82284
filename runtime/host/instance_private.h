/*  instance_private.h — what the files of a service instance share: the
    actor, the instance and the request as they are laid out, and the
    request functions that instance.c (the actor loop, request handling)
    calls in request.c (answers, the request API of switchboard.h).
    Private to runtime/host/.
*/
#ifndef SB_INSTANCE_PRIVATE_H_INCLUDED
#define SB_INSTANCE_PRIVATE_H_INCLUDED

#include "internal.h"

#include <czmq.h>

#define S_WATCH_MAX 64
#define S_METHODS_MAX 64                /* the broker takes at most 64 (protocol.md 5.2) */
/*  Freed requests kept for reuse, and the largest reply buffer a kept
    request may hold on to.  */
#define S_SPARE_MAX 32
#define S_SPARE_BUFFER_MAX 65536
/*  Replies up to this size are copied into the message and the buffer
    is kept; larger ones are moved.  */
#define S_COPY_MAX 8192
/*  First chunk of the decoding zone.  */
#define S_ZONE_CHUNK 4096

struct sb_request {
    sb_actor_t *actor;
    const sb_method_t *method;
    uint32_t link_id;
    uint64_t id;                    /* the broker's request id */
    int64_t received;
    int64_t deadline;               /* 0: none */
    bool has_trace;
    uint8_t trace [16];
    bool sealed;                    /* answer sealed for caller_pk, bound to nonce */
    uint8_t caller_pk [SB_KEY_SIZE];
    uint8_t nonce [SB_SEAL_NONCE_SIZE];
    char trace_hex [33];            /* formatted on first sb_request_trace_id */
    bool in_handler;
    const msgpack_object *body;     /* the decoded request, during the handler */
    bool deferred;
    uint64_t serial;                /* unique for the actor's life (continuations) */
    /*  A shadow is the copy a blocking handler answers on a worker
        thread (pool.c): its answer is kept here, not sent.  */
    bool shadow;
    sb_code_t shadow_code;
    char shadow_text [SB_TEXT_MAX + 1];
    int calls;                      /* sb_request_call continuations pending */
    bool closed;                    /* answered */
    bool expired;                   /* answered by the runtime for the plugin */
    void *deferred_handle;          /* in actor->deferred */
    bool begun;
    msgpack_sbuffer buffer;
    msgpack_packer packer;
    sb_request_t *next_spare;
};

typedef struct {
    int64_t due;
    uint64_t seq;
    void (*callback) (void *arg);
    void *arg;
} s_timer_t;

typedef struct {
    int fd;
    bool dropped;
    void (*callback) (int fd, void *arg);
    void *arg;
} s_watch_t;

struct sb_actor {
    const sb_service_t *service;
    int instance;
    int capacity;
    sb_peer_t *peer;
    sb_discovery_t *discovery;      /* NULL: fixed endpoints, no beacons */
    void *state;
    zlistx_t *timers;               /* s_timer_t, sorted by due */
    uint64_t timer_seq;
    s_watch_t watches [S_WATCH_MAX];
    size_t nwatches;
    zlistx_t *deferred;             /* sb_request_t */
    int64_t next_expiry;
    msgpack_sbuffer ready;          /* READY body, encoded once */
    /*  Per method (same index as service->methods): its schema or NULL. */
    const sb_method_schema_t *schemas [S_METHODS_MAX];
    bool validate_replies;
    msgpack_zone zone;              /* decodes request bodies */
    bool zone_ready;
    sb_request_t *spares;           /* freed requests, for reuse */
    uint64_t request_serial;
    int workers;                    /* threads of the blocking pool (config `workers`) */
    struct sb_pool *pool;           /* NULL until the first blocking request */
    size_t nspares;
};

struct sb_instance {
    zactor_t *zactor;
    const sb_service_t *service;
    const sb_config_t *config;
    const char *endpoints;
    int instance;
    int capacity;
    int start_rc;                   /* written by the actor before it signals */
    sb_sealer_t *sealer;            /* likewise; lives as long as the actor */
    sb_error_t start_err;
    sb_instance_options_t options;
};

/*  A request taken from the actor's spares, or a new one; NULL when out
    of memory.  */
sb_request_t *sb__request_new (sb_actor_t *self);
/*  The deferred request `req` if it is still held with this serial (it
    may have been answered, freed and recycled meanwhile), else NULL.
    Only compares the pointer until found: safe on a freed one.  */
sb_request_t *sb__request_find (sb_actor_t *actor, const sb_request_t *req, uint64_t serial);
/*  Gives the request back to the spares (or frees it).  */
void sb__request_free (sb_request_t *req);
/*  Sends the answer on the link the request came from: `buffer` (a reply
    body, sealed for the caller when the request was) with code SB_OK, or
    the error code and text.  */
void sb__request_answer (sb_request_t *req, msgpack_sbuffer *buffer, sb_code_t code,
                         const char *text);

/*  pool.c: runs a SB_METHOD_BLOCKING request's handler on a worker
    thread (a copy of its body); the answer comes back on the actor's
    thread for the deferred request `req`.  0, or -1 when the pool cannot
    take it (queue full, no thread).  */
typedef struct sb_pool sb_pool_t;
int sb__pool_submit (sb_actor_t *actor, sb_request_t *req, const void *body, size_t size);
/*  Joins the workers (each finishes its handler), drops what is left.  */
void sb__pool_destroy (sb_pool_t **self_p);

#endif
