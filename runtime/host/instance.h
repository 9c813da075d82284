/*  instance.h — running one instance of a service as an actor.

    `sb run` (and tests) start each instance of a loaded service with
    sb_instance_start: the instance gets its own thread, its own links to
    every broker in `endpoints`, runs the plugin's init() on that thread,
    then offers the service (READY with `capacity`) to each broker that
    welcomes it, again after every broker restart.  Requests are handled
    one at a time on that thread, so the handlers of one instance never
    run concurrently.  See instance.c.
*/
#ifndef SB_INSTANCE_H_INCLUDED
#define SB_INSTANCE_H_INCLUDED

#include "switchboard.h"
#include "schema/schema.h"
#include "security/identity.h"
#include "security/sealer.h"

typedef struct sb_instance sb_instance_t;

/*  Requests one instance holds at once when capacity <= 0.  */
#define SB_INSTANCE_CAPACITY_DEFAULT 100

/*  Starts one actor for the service: its thread, its DEALER(s) to the
    comma-separated endpoints, runs init() on that thread, sends READY
    with `capacity`.  `service` and `config` are borrowed and must
    outlive the instance.  Returns NULL with err filled if the
    descriptor is invalid, an endpoint is bad or init() fails (its own
    error text is passed on); nothing is left running then.  */
sb_instance_t *sb_instance_start (const sb_service_t *service, int instance,
                                  const sb_config_t *config, const char *endpoints,
                                  int capacity, sb_error_t *err);

/*  What sb_instance_start_with adds; all zero is sb_instance_start.  */
typedef struct {
    /*  Method schemas (schema.h), borrowed: must outlive the instance.
        Each method's schema is looked up once, at start.  A request to a
        method the set describes is validated after decoding; the first
        violation is answered bad_request "<path>: <why>" and the handler
        never runs.  Methods the set does not describe are not checked.
        NULL: no validation.  */
    const sb_schema_set_t *schemas;
    /*  Debug: also validate each reply a handler sends (sb_reply_send,
        sb_reply_bytes) against the reply schema; one that does not conform
        is answered internal "reply <path>: <why>" instead.  Costs a decode
        per reply, so off by default.  */
    bool validate_replies;
    /*  Cluster discovery (discovery.h).  With `beacon` set the instance
        also links to every broker of `cluster` whose beacon it hears, and
        drops it when it leaves or falls silent; `endpoints` are then
        static seeds (never dropped) and may be NULL.  `beacon` is "lo",
        an interface name, "239.x.y.z[@IFACE]" or "off" (seeds only).
        NULL: `endpoints` only, no beacons.  Strings are borrowed.  */
    const char *cluster;            /* NULL: "default" */
    const char *beacon;
    int beacon_port;                /* 0: 7690 */
    /*  Security (identity.h, docs/security.md): with an identity every
        link is a CURVE client and every endpoint must carry its broker's
        key ("tcp://host:port#KEY"); NULL: plaintext links, and an
        endpoint with a key is refused.  Borrowed: must outlive the
        instance.  */
    const sb_identity_t *identity;
} sb_instance_options_t;

/*  sb_instance_start with options (NULL: none).  */
sb_instance_t *sb_instance_start_with (const sb_service_t *service, int instance,
                                       const sb_config_t *config, const char *endpoints,
                                       int capacity, const sb_instance_options_t *options,
                                       sb_error_t *err);

/*  The instance's end-to-end sealing counters (sealer.h): what it sealed,
    opened and refused, by reason.  All zero without an identity.  May be
    called from any thread while the instance runs.  */
void sb_instance_seal_counters (sb_instance_t *self, sb_sealer_counters_t *out);

/*  Says BYE to the brokers, stops the thread after running fini() on it,
    frees everything and NULLs *self_p.  Safe on NULL and twice.  */
void sb_instance_stop (sb_instance_t **self_p);

/*  The decoded body of a request whose handler is running, else NULL
    (host/body.c reads it for sb_request_unpack).  */
const msgpack_object *sb__request_body (const sb_request_t *req);

#endif
