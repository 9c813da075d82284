/*  switchboard.h — the one public header of Switchboard.

    Two audiences use it:

    - service authors, who write a handler plugin: a shared object that
      exports one `sb_service_t` descriptor named `sb_service` (use the
      SB_SERVICE macro).  `sb run` loads it and runs each instance of the
      service as an actor: its own thread and sockets, so the handlers of one
      instance never run concurrently and need no locks;
    - programs that call services (clients): `sb_client_t` gives blocking and
      asynchronous calls, publish and subscribe.

    Bodies are MessagePack.  A handler reads its request as a borrowed
    `msgpack_object` that lives only while the handler runs, and writes its
    reply with a `msgpack_packer` the runtime owns.  Return conventions:
    0 / -1 (constructors NULL); where a person must read why, an
    `sb_error_t` is filled.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0.  If a copy of the MPL was not distributed with this
    file, You can obtain one at https://mozilla.org/MPL/2.0/.
*/
#ifndef SWITCHBOARD_H_INCLUDED
#define SWITCHBOARD_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <msgpack.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_VERSION_MAJOR 0
#define SB_VERSION_MINOR 1
#define SB_VERSION_PATCH 0

/*  ABI version of the plugin descriptor.  `sb run` refuses a plugin whose
    descriptor carries another value.  */
#define SB_ABI_VERSION 1

#if defined(__GNUC__)
#   define SB_EXPORT __attribute__ ((visibility ("default")))
#   define SB_WARN_UNUSED __attribute__ ((warn_unused_result))
#else
#   define SB_EXPORT
#   define SB_WARN_UNUSED
#endif

/*  --------------------------------------------------------------------
    Errors.  The codes are those of the wire protocol (docs/protocol.md);
    the REST bridge maps them to HTTP statuses.  */

typedef enum {
    SB_OK = 0,
    SB_E_BAD_REQUEST = 1,   /* 400 */
    SB_E_UNAUTHORIZED = 2,  /* 401 */
    SB_E_FORBIDDEN = 3,     /* 403 */
    SB_E_NOT_FOUND = 4,     /* 404 */
    SB_E_OVERLOADED = 5,    /* 429 */
    SB_E_INTERNAL = 6,      /* 500 */
    SB_E_UNAVAILABLE = 7,   /* 503 */
    SB_E_TIMEOUT = 8,       /* 504 */
    SB_E_CODE_MAX = 8
} sb_code_t;

#define SB_ERROR_TEXT_MAX 256

typedef struct {
    sb_code_t code;
    char text [SB_ERROR_TEXT_MAX];
} sb_error_t;

/*  "bad_request", "timeout", ... ; "ok" for 0 and "unknown" past the table. */
SB_EXPORT const char *sb_code_name (sb_code_t code);
/*  400, 504, ... ; 200 for SB_OK. */
SB_EXPORT int sb_code_http_status (sb_code_t code);
/*  Parses "bad_request" etc. back into a code; -1 if unknown.  */
SB_EXPORT int sb_code_from_name (const char *name);
/*  Fills err (if not NULL) with code and printf-formatted text; returns -1
    so that callers can write `return sb_error_set (err, ...)`.  */
SB_EXPORT int sb_error_set (sb_error_t *err, sb_code_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/*  --------------------------------------------------------------------
    Trace ids.  A trace id names one piece of work across every service
    it touches: the 16-byte trace-id of W3C Trace Context, written as 32
    lowercase hex digits.  Every call and event carries one.  A call made
    without one given carries:
    - inside a handler: the trace id of the request being handled;
    - inside a reply callback: the trace id of the call being answered;
    - inside an event callback: the event's;
    - anywhere else (timers, fd watches, a client's own calls): a fresh
      random one.
    A call given `trace` in its options (sb_call_options_t) carries that
    one instead.  */

#define SB_TRACE_SIZE 16
#define SB_TRACE_HEX_SIZE (2 * SB_TRACE_SIZE + 1)   /* 32 digits and a NUL */

/*  Parses exactly 32 hex digits (either case).  0, or -1 (errno EINVAL)
    for anything else or for the all-zero id, which W3C declares invalid. */
SB_EXPORT int sb_trace_parse (const char *hex, uint8_t trace [SB_TRACE_SIZE]) SB_WARN_UNUSED;
/*  Writes the 32 lowercase hex digits of trace and a NUL.  */
SB_EXPORT void sb_trace_format (const uint8_t trace [SB_TRACE_SIZE], char hex [SB_TRACE_HEX_SIZE]);

/*  --------------------------------------------------------------------
    Names and limits.  Every name on the bus follows one rule
    (docs/protocol.md, section 3): 1 to SB_NAME_MAX characters of
    [A-Za-z0-9_.-]; a topic may have up to SB_TOPIC_MAX; a service name
    has no '.' (it ends the service in "SERVICE.METHOD").  Everything that
    checks a name (the runtime before it sends, brokers when they decode,
    `sb run` when it loads a plugin, schema files, the REST bridge) calls
    sb_name_valid, so they all agree.  A service name must also not start
    with "sys", the brokers' own service; `sb run` checks that.  */

#define SB_NAME_MAX 64              /* service, method, group, member names */
#define SB_TOPIC_MAX 255            /* event topics and subscription prefixes */
/*  Largest request, reply or event body (16 MiB): calls and publishes
    with a larger one are refused before they are sent.  */
#define SB_BODY_MAX_DEFAULT (16 * 1024 * 1024)

typedef enum {
    SB_NAME_SERVICE,        /* a service: "echo" */
    SB_NAME_METHOD,         /* a method of a service: "reverse" */
    SB_NAME_GROUP,          /* a balanced subscription group */
    SB_NAME_TOPIC,          /* an event topic or topic prefix: "orders.created" */
    SB_NAME_MEMBER          /* a member of a cluster: broker, host, client */
} sb_name_kind_t;

/*  True if `name` (NUL-terminated; NULL is not valid) is a valid name of
    that kind.  Pure and thread-safe; reads at most the kind's limit + 1
    characters.  */
SB_EXPORT bool sb_name_valid (const char *name, sb_name_kind_t kind);

/*  --------------------------------------------------------------------
    Plugin ABI: what a service exports.  */

typedef struct sb_request sb_request_t;   /* one incoming request */
typedef struct sb_actor sb_actor_t;       /* the service instance running it */
typedef struct sb_config sb_config_t;     /* the service's configuration */

/*  Method flags, announced to the broker.  */
#define SB_METHOD_IDEMPOTENT 0x01   /* safe to run twice: the bus may retry it */
/*  The handler blocks (a database, a file): it runs on a worker thread
    of its instance instead of the instance's own, which keeps serving
    its other methods, timers and calls meanwhile.  The service's config
    key `workers` (default 1) sets how many such handlers of one instance
    run at once; with more than 1 they share `state` concurrently, so
    protect it.  A blocking handler reads and answers its request as usual
    (unpack, reply, error) but cannot defer it, call or publish:
    sb_request_actor returns NULL there.  */
#define SB_METHOD_BLOCKING 0x02

/*  A handler.  `body` is the decoded request, borrowed from the frame: it
    is valid only until the handler returns (copy what you keep).  It is
    never NULL; an empty request body decodes as nil.  `state` is what
    init() returned.

    The handler must, before it returns, either reply (sb_reply_* or
    sb_request_error) or defer (sb_request_defer).  If it returns -1
    without having replied, the caller gets `internal`.  If it returns 0
    without replying or deferring, the runtime replies nil.  */
typedef int (sb_handler_fn) (sb_request_t *req, const msgpack_object *body, void *state);

typedef struct {
    const char *name;           /* method name (sb_name_valid, SB_NAME_METHOD) */
    sb_handler_fn *handler;
    unsigned flags;             /* SB_METHOD_* */
} sb_method_t;

/*  The descriptor.  `methods` ends with an entry whose name is NULL.
    init() (optional) runs once per instance on the instance's own thread
    before the first request; it may read `config` and set *state; it
    returns 0, or -1 with `err` filled (the host then refuses to start).
    fini() (optional) runs on the same thread when the instance stops.  */
typedef struct {
    uint32_t abi_version;       /* SB_ABI_VERSION */
    const char *name;           /* service name (SB_NAME_SERVICE), not "sys..." */
    const char *version;        /* free text, e.g. "1.2.0" */
    const sb_method_t *methods;
    int (*init) (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err);
    void (*fini) (void *state);
    /*  The service's contract (0.1 addition, in the room `reserved` had:
        the struct keeps its size and SB_ABI_VERSION stays 1): the JSON
        text of its schema file (docs/schemas.md), NUL-terminated, at most
        1 MiB, or NULL.  It declares per method the request and reply
        schemas, `idempotent`, `timeout_ms` and `cache_ttl_ms`, once, in
        the plugin; embed the file at build time (docs/writing-services.md).
        `sb run` refuses a plugin whose schema does not load, names another
        service, or says a method is idempotent that `flags` does not (or
        the reverse).  The host validates requests against it, and each
        instance announces it to its brokers (READY), which answer it to
        any caller (`sys.describe`): callers then mark calls to idempotent
        methods idempotent and use the method's timeout without being told.
        A schema file given with `sb run --schemas DIR` for the same
        service overrides it.  */
    const char *schema;
    void *reserved [7];         /* room for later ABI additions; keep zero */
} sb_service_t;

/*  Every plugin exports exactly this symbol.  */
#define SB_SERVICE_SYMBOL "sb_service"
#define SB_SERVICE SB_EXPORT const sb_service_t sb_service

/*  --------------------------------------------------------------------
    Inside a handler: the request.  */

SB_EXPORT const char *sb_request_service (const sb_request_t *req);
SB_EXPORT const char *sb_request_method (const sb_request_t *req);
/*  Milliseconds left before the caller's deadline, at the time of the call.  */
SB_EXPORT int64_t sb_request_remaining_ms (const sb_request_t *req);
/*  The W3C trace id (32 lowercase hex chars), or "" if the caller sent none.
    Calls the handler makes carry it unless told otherwise (see "Trace ids"
    above); pass it in sb_call_options_t.trace to keep it from a timer.  */
SB_EXPORT const char *sb_request_trace_id (const sb_request_t *req);
/*  The instance that received the request.  */
SB_EXPORT sb_actor_t *sb_request_actor (const sb_request_t *req);

/*  Replying.  sb_reply_begin returns a packer writing into the reply body;
    pack exactly one object, then call sb_reply_send.  sb_reply_bytes sends
    an already-encoded MessagePack body (copied).  Each request gets one
    reply or one error; a second answer returns -1.  After the handler has
    returned, these may only be used on a deferred request.  */
SB_EXPORT msgpack_packer *sb_reply_begin (sb_request_t *req);
SB_EXPORT int sb_reply_send (sb_request_t *req);
SB_EXPORT int sb_reply_bytes (sb_request_t *req, const void *data, size_t size);
SB_EXPORT int sb_request_error (sb_request_t *req, sb_code_t code, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/*  Deferring: keeps the request alive after the handler returns, to be
    answered later on the same actor (typically from the callback of a
    call to another service).  The deferred request is freed when it is
    answered.  If its deadline passes first, the caller gets `timeout`
    and the late answer is dropped: that sb_reply_* / sb_request_error
    call returns -1 and frees the request.  Deferred requests never
    answered are freed when the actor stops.  */
SB_EXPORT sb_request_t *sb_request_defer (sb_request_t *req);

/*  --------------------------------------------------------------------
    Inside a service: the actor's own bus access.  All of these run on
    the actor's thread only.  */

/*  A reply to an asynchronous call.  On success `body` is the decoded
    reply (borrowed for the callback's duration) and err is NULL; on
    failure `body` is NULL and err says why (err->code is never SB_OK).  */
typedef void (sb_reply_fn) (const msgpack_object *body, const sb_error_t *err, void *arg);

/*  Calls service.method with an encoded MessagePack body, without
    blocking the actor: `callback` runs later on this actor's thread.
    timeout_ms <= 0 means the method's timeout as its service declares it
    (sys.describe), else 5000.  Returns 0 if the request
    was sent, -1 (err filled) if it could not be.  */
SB_EXPORT int sb_actor_call (sb_actor_t *actor, const char *service, const char *method,
                             const void *body, size_t size, int timeout_ms,
                             sb_reply_fn *callback, void *arg, sb_error_t *err);

/*  Events.  Topics are dot-separated words (SB_NAME_TOPIC, see "Names");
    subscriptions match by prefix.  A NULL group subscribes this instance
    to every matching event (broadcast); a group name makes the instance
    one member of a balanced group: each event goes to one member.  */
typedef void (sb_event_fn) (const char *topic, const msgpack_object *body, void *arg);

SB_EXPORT int sb_actor_publish (sb_actor_t *actor, const char *topic,
                                const void *body, size_t size);
SB_EXPORT int sb_actor_subscribe (sb_actor_t *actor, const char *prefix, const char *group,
                                  sb_event_fn *callback, void *arg);

/*  Name of the service and instance number (0..N-1) of this actor.  */
SB_EXPORT const char *sb_actor_service (const sb_actor_t *actor);
SB_EXPORT int sb_actor_instance (const sb_actor_t *actor);

/*  One-shot timer: `callback` runs once on the actor's thread after at
    least delay_ms (>= 0), unless the actor stops first.  Lets a handler
    wait without blocking: defer the request, answer it from the
    callback.  Returns 0, or -1 (bad arguments, out of memory).  */
SB_EXPORT int sb_actor_after (sb_actor_t *actor, int delay_ms,
                              void (*callback) (void *arg), void *arg);

/*  Watches a file descriptor: whenever `fd` is readable (or has an
    error), `callback` runs on the actor's thread.  The watch lasts as
    long as the actor, except that an fd reporting an error without data
    is called back once more and then dropped.  The fd stays the
    caller's to close (after the actor stops).  At most 64 watches per
    actor.  Returns 0, or -1.  */
SB_EXPORT int sb_actor_watch_fd (sb_actor_t *actor, int fd,
                                 void (*callback) (int fd, void *arg), void *arg);

/*  Configuration given to init(): `sb run --config FILE` (ZPL) and
    `--set service/key=value`.  Paths are relative to the service's own
    section, e.g. "greeting" or "db/path".  NULL when absent.  */
SB_EXPORT const char *sb_config_get (const sb_config_t *config, const char *path);
SB_EXPORT const char *sb_config_get_default (const sb_config_t *config, const char *path,
                                             const char *default_value);

/*  --------------------------------------------------------------------
    Clients: ordinary programs that call services.  A client is not
    thread-safe: use one per thread.  */

typedef struct sb_client sb_client_t;

typedef struct {
    const char *endpoints;  /* comma-separated broker endpoints, e.g. "tcp://127.0.0.1:7600";
                               with `beacon` set: static seeds, never dropped (may be NULL) */
    const char *name;       /* shows in sys.services; NULL for a generated one */
    int timeout_ms;         /* default call timeout; <= 0: each method's declared one, else 5000 */
    /*  Cluster discovery (0.1 additions, in the room `reserved` had; the
        struct keeps its size on LP64 systems).  With `beacon` NULL the client uses
        `endpoints` only.  Otherwise it also links to every broker of
        `cluster` whose UDP beacon it hears, and drops it when it leaves.  */
    int beacon_port;        /* UDP beacon port; 0 means 7690 */
    const char *cluster;    /* cluster name; NULL means "default" */
    const char *beacon;     /* "lo", an interface name, "239.x.y.z[@IFACE]", "off" */
    /*  Security (docs/security.md).  With `keys` or `member` set the client
        loads that identity (keys directory DIR, member NAME; a NULL one
        means $SB_KEYS / $SB_MEMBER) and every link is a CURVE client: each
        endpoint must then carry its broker's public key,
        "tcp://host:port#KEY".  Both NULL: no identity, plaintext links,
        and an endpoint with a #KEY is refused.  */
    const char *keys;       /* keys directory */
    const char *member;     /* member name in it */
    void *reserved [4];     /* keep zero */
} sb_client_options_t;

SB_EXPORT sb_client_t *sb_client_new (const sb_client_options_t *options, sb_error_t *err);
SB_EXPORT void sb_client_destroy (sb_client_t **self_p);

/*  A reply as returned to a blocking caller: the raw MessagePack body
    (owned by the reply) and its decoded form, which borrows from it.  */
typedef struct {
    const void *data;
    size_t size;
    msgpack_object body;
    void *internal_;
} sb_reply_t;

SB_EXPORT void sb_reply_destroy (sb_reply_t **self_p);

/*  Blocking call.  Returns 0 and sets *reply_p (caller destroys it), or -1
    with err filled: a bus error (its code as sent by the broker or the
    service) or SB_E_TIMEOUT when no answer came within timeout_ms.
    Async replies and events that arrive meanwhile are dispatched.  */
SB_EXPORT int sb_client_call (sb_client_t *self, const char *service, const char *method,
                              const void *body, size_t size, int timeout_ms,
                              sb_reply_t **reply_p, sb_error_t *err) SB_WARN_UNUSED;

/*  Asynchronous call: callback runs from sb_client_dispatch() or a later
    blocking call, on the caller's thread.  Always answered exactly once,
    with a timeout error at the latest, or with SB_E_UNAVAILABLE from
    sb_client_destroy() when the client goes away first.  */
SB_EXPORT int sb_client_call_async (sb_client_t *self, const char *service, const char *method,
                                    const void *body, size_t size, int timeout_ms,
                                    sb_reply_fn *callback, void *arg, sb_error_t *err);

/*  Declares service.method safe to run twice (method "*": every method
    of the service): an override.  A client needs it only for a service
    that does not declare the method idempotent itself: a client learns
    each service's contract from the bus the first time it calls it
    (`sys.describe`, cached) and marks calls to the methods the service
    declares idempotent without being told.  Its calls then carry the
    idempotent flag, and a
    call whose broker is lost while it is in flight goes out again
    through another broker of the cluster (same request id, `retry`
    flag) within its deadline, and is answered once.  A call to a method
    not declared is answered `unavailable` when its broker is lost.
    Returns 0, or -1 for a bad name.  */
SB_EXPORT int sb_client_idempotent (sb_client_t *self, const char *service, const char *method);

SB_EXPORT int sb_client_publish (sb_client_t *self, const char *topic,
                                 const void *body, size_t size);
SB_EXPORT int sb_client_subscribe (sb_client_t *self, const char *prefix, const char *group,
                                   sb_event_fn *callback, void *arg);

/*  Waits up to timeout_ms (0 = do not wait, -1 = forever) for replies and
    events and runs their callbacks.  Returns the number dispatched, -1 on
    interrupt.  */
SB_EXPORT int sb_client_dispatch (sb_client_t *self, int timeout_ms);
/*  Number of asynchronous calls still waiting for their answer.  */
SB_EXPORT size_t sb_client_pending (const sb_client_t *self);

/*  --------------------------------------------------------------------
    Method schemas (docs/schemas.md): what a service's methods accept and
    return, read from JSON schema files, one file per service.  `sb run`
    validates requests and replies with them; the REST bridge validates at
    the edge and renders its OpenAPI document from them.

    A set is loaded once and immutable afterwards: any number of threads
    may find, read and validate through one set without locks, as long as
    none destroys it meanwhile.  Every schema is compiled when its file is
    loaded, so validating never parses JSON.  Strings returned by the
    accessors, and methods themselves, belong to the set and live until
    it is destroyed.  */

typedef struct sb_schema_set sb_schema_set_t;
typedef struct sb_method_schema sb_method_schema_t;

/*  An empty set (the caller destroys it).  NULL only when out of memory.  */
SB_EXPORT sb_schema_set_t *sb_schema_set_new (void);

/*  Destroys the set and every method and string borrowed from it; NULLs
    *self_p; safe on NULL and twice.  */
SB_EXPORT void sb_schema_set_destroy (sb_schema_set_t **self_p);

/*  Loads every "*.json" file of dir (sorted by name, hidden files skipped)
    into a new set (the caller destroys it).  NULL with err:
    SB_E_BAD_REQUEST for a bad file, whose name and JSON path the text
    gives; SB_E_NOT_FOUND if dir cannot be read.  An empty directory gives
    an empty set.  Costs a parse and a compile of each file.  */
SB_EXPORT sb_schema_set_t *sb_schema_set_load_dir (const char *dir, sb_error_t *err);

/*  Adds the service described by one schema file's JSON text (`size`
    bytes, copied; at most 1 MiB); `name` stands for the file in errors.
    0, or -1 with err and the set unchanged.  A service already in the set
    is refused.  Not while other threads use the set.  */
SB_EXPORT int sb_schema_set_load_buffer (sb_schema_set_t *self, const char *name,
                                         const char *json, size_t size, sb_error_t *err);

/*  The method, or NULL if the set does not describe it.  O(log n).  */
SB_EXPORT const sb_method_schema_t *sb_schema_set_find (const sb_schema_set_t *self,
                                                        const char *service,
                                                        const char *method);

/*  Number of methods, and the method at index (sorted by service, then
    method name); NULL past the end.  O(1).  */
SB_EXPORT size_t sb_schema_set_size (const sb_schema_set_t *self);
SB_EXPORT const sb_method_schema_t *sb_schema_set_method (const sb_schema_set_t *self,
                                                          size_t index);

/*  A method's names and texts; descriptions and the version are "" when
    the file has none.  */
SB_EXPORT const char *sb_method_schema_service (const sb_method_schema_t *self);
SB_EXPORT const char *sb_method_schema_name (const sb_method_schema_t *self);
SB_EXPORT const char *sb_method_schema_description (const sb_method_schema_t *self);
SB_EXPORT const char *sb_method_schema_service_version (const sb_method_schema_t *self);
SB_EXPORT const char *sb_method_schema_service_description (const sb_method_schema_t *self);
/*  Whether the file declares the method idempotent (SB_METHOD_IDEMPOTENT).  */
SB_EXPORT bool sb_method_schema_idempotent (const sb_method_schema_t *self);
/*  Call timeout in ms; 0 when the file gives none (use the default).  */
SB_EXPORT int sb_method_schema_timeout_ms (const sb_method_schema_t *self);
/*  How long a reply may be cached, in ms; 0 = not cacheable.  */
SB_EXPORT int sb_method_schema_cache_ttl_ms (const sb_method_schema_t *self);

/*  The request and reply schemas as compact JSON text, NUL-terminated,
    with the keys in the file's order; NULL when the file gives none
    (anything is accepted).  Parse it with any JSON library.  */
SB_EXPORT const char *sb_method_schema_request_text (const sb_method_schema_t *self);
SB_EXPORT const char *sb_method_schema_reply_text (const sb_method_schema_t *self);

/*  Validates a decoded request body (NULL counts as nil).  0 if it
    conforms; -1 with err code SB_E_BAD_REQUEST and text "<path>: <why>"
    for the first violation, e.g. "$.values[2]: expected number, got
    string".  Cost linear in the parts of the body the schema constrains;
    allocates nothing, except a terminated copy of strings of 256 bytes or
    more that a pattern is matched against.  */
SB_EXPORT int sb_method_schema_validate_request (const sb_method_schema_t *self,
                                                 const msgpack_object *body,
                                                 sb_error_t *err) SB_WARN_UNUSED;

/*  Same for a reply; a violation is the service's fault, so the code is
    SB_E_INTERNAL and the text starts with "reply ".  */
SB_EXPORT int sb_method_schema_validate_reply (const sb_method_schema_t *self,
                                               const msgpack_object *body,
                                               sb_error_t *err) SB_WARN_UNUSED;

/*  --------------------------------------------------------------------
    Calls with options: one way to call, from a client, from a handler
    (with a continuation) or from an actor's timer.  The body is built
    from a format (see "Bodies by format" below), or, with fmt NULL, is
    options->body (encoded MessagePack, copied; NULL: nil).  */

typedef struct {
    /*  <= 0: inside a handler, the time its request has left; else the
        client's default (5000).  A handler's call never outlives its
        request: a larger value is cut to what the request has left.  */
    int timeout_ms;
    /*  32 hex digits; NULL: inherited (see "Trace ids").  A malformed one
        is refused with bad_request.  */
    const char *trace;
    const void *body;           /* with fmt NULL */
    size_t body_size;
    void *reserved [6];         /* keep zero: metadata and flags to come */
} sb_call_options_t;

/*  Blocking call from a client: as sb_client_call.  options may be NULL.  */
SB_EXPORT int sb_call (sb_client_t *self, const char *service, const char *method,
                       const sb_call_options_t *options, sb_reply_t **reply_p, sb_error_t *err,
                       const char *fmt, ...) SB_WARN_UNUSED;
/*  Asynchronous call from a client: as sb_client_call_async.  */
SB_EXPORT int sb_call_async (sb_client_t *self, const char *service, const char *method,
                             const sb_call_options_t *options, sb_reply_fn *callback, void *arg,
                             sb_error_t *err, const char *fmt, ...);
/*  From an actor outside a handler (a timer, an fd watch): as
    sb_actor_call.  */
SB_EXPORT int sb_actor_call_with (sb_actor_t *actor, const char *service, const char *method,
                                  const sb_call_options_t *options, sb_reply_fn *callback,
                                  void *arg, sb_error_t *err, const char *fmt, ...);

/*  A continuation: runs on the actor's thread when the call a handler
    made with sb_request_call is answered (reply: the decoded body, err
    NULL; or reply NULL and err why).  The request is still open: answer
    it here (sb_reply_pack, sb_request_error...), or call again with
    sb_request_call.  As for a handler, returning 0 without answering or
    calling again replies nil, returning -1 answers internal.  */
typedef int (sb_continue_fn) (sb_request_t *req, const msgpack_object *reply,
                              const sb_error_t *err, void *arg);

/*  From inside a handler or a continuation: calls service.method for
    `req` and continues with next (req, reply, err, arg) when the answer
    comes.  The request is deferred for you; the call inherits its trace
    and its remaining time (options may shorten it); `next` always runs
    exactly once (with a timeout error at the latest), so `arg` can be
    freed there.  Returns 0, or -1 with the request answered (bad
    arguments: internal, naming why) so that a handler can `return -1`.
    If the request expired meanwhile, its caller has had `timeout`
    already and what `next` answers is dropped.  */
SB_EXPORT int sb_request_call (sb_request_t *req, const char *service, const char *method,
                               const sb_call_options_t *options, sb_continue_fn *next,
                               void *arg, const char *fmt, ...);

/*  --------------------------------------------------------------------
    Bodies by format: read a MessagePack body into C variables, or write
    one from them, in one call (the spirit of jansson's json_unpack and
    json_pack).  The format is a string of conversions; spaces and commas
    between them are ignored.  Arguments follow in the order of the format.

      {...}   a map; each entry is a key `s:` then a value.  The key is a
              `const char *` argument.  Unpacking: `s?:` marks the key
              optional (its variable is left as it was when the key is
              absent); `!` before the `}` refuses keys the format does not
              name.  Other keys are ignored.
      [...]   an array of exactly these items.
      s       unpack: a string copied into `char *buf, size_t size` (two
              arguments; longer than size - 1 bytes or holding a NUL is a
              mismatch).  pack: a `const char *` (NULL packs nil).
      S       a string with its length: unpack `const char **, size_t *`
              (borrowed from the body, not NUL-terminated); pack
              `const char *, size_t`.
      i  I    an integer: `int` / `int64_t` (unpack: `int *` / `int64_t *`;
              out of range is a mismatch).
      f       a number: `double` (unpack accepts integers too).
      b       a boolean: `int` (unpack: `bool *`).
      n       nil (no argument).
      o       any object: `const msgpack_object *` (unpack:
              `const msgpack_object **`, borrowed from the body).

    A mismatch of the data is SB_E_BAD_REQUEST with its path, e.g.
    "$.tags[1]: expected string, got integer"; a malformed format is
    SB_E_INTERNAL "format: ...".  Neither allocates.  */

SB_EXPORT int sb_unpack (const msgpack_object *obj, sb_error_t *err, const char *fmt, ...)
    SB_WARN_UNUSED;
SB_EXPORT int sb_vunpack (const msgpack_object *obj, sb_error_t *err, const char *fmt,
                          va_list ap) SB_WARN_UNUSED;
/*  Packs one object.  On -1 the packer holds a partial object: discard
    what it wrote.  */
SB_EXPORT int sb_pack (msgpack_packer *pk, sb_error_t *err, const char *fmt, ...);
SB_EXPORT int sb_vpack (msgpack_packer *pk, sb_error_t *err, const char *fmt, va_list ap);

/*  Inside a handler.  sb_request_unpack reads the request body; on a
    mismatch it answers the caller bad_request "<path>: <why>" itself and
    returns -1, so a handler can `return -1` at once; a request without a
    body (nil) reads as an empty map.  sb_reply_pack
    replies with the object the format builds (a bad format answers
    internal and returns -1).  sb_actor_publish_pack publishes one.  */
SB_EXPORT int sb_request_unpack (sb_request_t *req, const char *fmt, ...) SB_WARN_UNUSED;
SB_EXPORT int sb_reply_pack (sb_request_t *req, const char *fmt, ...);
SB_EXPORT int sb_actor_publish_pack (sb_actor_t *actor, const char *topic, const char *fmt, ...);
/*  The same for a client's events.  */
SB_EXPORT int sb_client_publish_pack (sb_client_t *self, const char *topic, const char *fmt, ...);

/*  --------------------------------------------------------------------
    JSON <-> MessagePack, shared by `sb call` and the REST bridge.
    Integers, floats, strings, booleans, null, arrays and maps convert
    exactly; MessagePack bin converts to {"$base64": "..."} and back.  */

/*  Appends the MessagePack form of `json` to `out`.  0, or -1 with err
    (SB_E_BAD_REQUEST, text says where).  */
SB_EXPORT int sb_json_to_msgpack (const char *json, size_t size, msgpack_sbuffer *out,
                                  sb_error_t *err) SB_WARN_UNUSED;
/*  Returns a malloc'd, NUL-terminated compact JSON text, or NULL with err.  */
SB_EXPORT char *sb_msgpack_to_json (const msgpack_object *obj, sb_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
