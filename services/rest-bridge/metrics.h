/*  metrics.h — the REST bridge's Prometheus metrics.

    Counters and a latency histogram per (service, method), requests by
    HTTP status, an in-flight gauge, bridge errors by reason, and the
    connections: open, refused and closed by the bridge, by reason.  Written
    from the HTTP threads and read by GET /metrics, so every update takes
    one short mutex.  The number of (service, method) series is capped:
    names come from URLs, and an attacker must not be able to grow memory
    by asking for random services; past the cap they count under
    service="_other".
*/
#ifndef SB_REST_METRICS_H_INCLUDED
#define SB_REST_METRICS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct sb_rest_metrics sb_rest_metrics_t;

/*  Why the bridge itself failed or refused a request (not bus errors).  */
typedef enum {
    SB_REST_ERR_MALFORMED_JSON,     /* request body is not JSON */
    SB_REST_ERR_SCHEMA,             /* request body violates the method's schema */
    SB_REST_ERR_BODY_TOO_LARGE,     /* body past max_body */
    SB_REST_ERR_CONTENT_TYPE,       /* not application/json */
    SB_REST_ERR_AUTH,               /* missing or invalid credentials */
    SB_REST_ERR_FORBIDDEN,          /* credentials without the right */
    SB_REST_ERR_NO_ROUTE,           /* unknown route or method */
    SB_REST_ERR_CALL_FAILED,        /* the bus call could not be sent */
    SB_REST_ERR_BAD_REPLY,          /* the reply could not become JSON */
    SB_REST_ERR_CLIENT_GONE,        /* client left before its answer */
    SB_REST_ERR_SHUTDOWN,           /* refused while draining */
    SB_REST_ERR_BAD_REQUEST_ID,     /* invalid X-Request-Id, replaced by a generated one */
    SB_REST_ERR_BAD_TRACEPARENT,    /* invalid traceparent, ignored */
    SB_REST_ERR_BAD_FRAMING,        /* Content-Length and Transfer-Encoding disagree */
    SB_REST_ERR_TRANSFER_ENCODING,  /* a transfer coding other than chunked */
    SB_REST_ERR_MAX
} sb_rest_error_t;

/*  Why a connection was refused when it was accepted.  */
typedef enum {
    SB_REST_REFUSED_PER_CLIENT,     /* connections_per_client from its address */
    SB_REST_REFUSED_GLOBAL,         /* connections in all */
    SB_REST_REFUSED_MAX
} sb_rest_refused_t;

/*  Why the bridge closed a connection to protect itself.  */
typedef enum {
    SB_REST_CLOSED_HEADER_TIMEOUT,  /* no complete request head within header_timeout */
    SB_REST_CLOSED_BAD_FRAMING,     /* ambiguous framing: the rest of the stream cannot be trusted */
    SB_REST_CLOSED_BODY_TOO_LARGE,  /* a body past max_body, refused while it arrived */
    SB_REST_CLOSED_MAX
} sb_rest_closed_t;

sb_rest_metrics_t *sb_rest_metrics_new (void);
void sb_rest_metrics_destroy (sb_rest_metrics_t **self_p);

/*  Records one answered request: service and method (any strings; "" for
    routes that are not bus calls), HTTP status, and its duration.  */
void sb_rest_metrics_record (sb_rest_metrics_t *self, const char *service,
                             const char *method, int status, int64_t duration_us);
void sb_rest_metrics_error (sb_rest_metrics_t *self, sb_rest_error_t reason);
/*  In-flight gauge: +1 when a request arrives, -1 when it is done.  */
void sb_rest_metrics_in_flight (sb_rest_metrics_t *self, int delta);
int64_t sb_rest_metrics_in_flight_now (sb_rest_metrics_t *self);
/*  Connections: the open gauge (+1 accepted, -1 closed), refusals and
    closings by reason.  */
void sb_rest_metrics_connections (sb_rest_metrics_t *self, int delta);
void sb_rest_metrics_connection_refused (sb_rest_metrics_t *self, sb_rest_refused_t reason);
void sb_rest_metrics_connection_closed (sb_rest_metrics_t *self, sb_rest_closed_t reason);
uint64_t sb_rest_metrics_requests (sb_rest_metrics_t *self);

/*  Returns the Prometheus text exposition (format 0.0.4), malloc'd, and
    its length in *size; NULL if out of memory.  */
char *sb_rest_metrics_render (sb_rest_metrics_t *self, size_t *size);

#endif
