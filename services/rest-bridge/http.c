/*  http.c — the HTTP half of the REST bridge (see bridge.h).

    Runs on libmicrohttpd's epoll thread pool.  For each request the
    access handler is called several times: once when the headers are in
    (route, authenticate, check content type and declared size: anything
    refused here is answered at once, before the body is read), then with
    pieces of the body (accumulated up to max_body), then once with no
    data (convert the JSON to MessagePack and hand the request to the
    actor, suspending the connection), and once more after the actor
    resumed it (send the answer).

    Routes: POST /v1/{service}/{method}, GET /v1/services, GET /healthz,
    GET /metrics, GET /openapi.json, aliases from the configuration, and
    OPTIONS for CORS preflight.  Every answer carries X-Request-Id and,
    for an allowed Origin, the CORS headers.  Errors have the body
    {"error": {"code", "message", "request_id"}}.

    Framing (framing.c): a request whose body could be delimited in two
    ways (RFC 9112 section 6) is refused, 400 or 501, and its connection
    closed (libmicrohttpd closes a connection answered before its body is
    read; the answer says Connection: close).

    Slow and greedy clients: conns.c limits connections per client address
    and closes connections that take longer than header_timeout to send a
    request head; a body is refused as soon as it passes max_body
    (s_refuse_body), not when it ends.

    Request ids and trace ids: ids.c.
*/
#include "http.h"
#include "framing.h"
#include "ids.h"
#include "params.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_TOKEN_MAX 4096
#define S_ORIGIN_MAX 1024           /* an allowed Origin is one of cors_origins */

static int64_t
s_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/*  --------------------------------------------------------------------
    Requests.  */

static sb_rest_req_t *
s_req_new (sb_rest_bridge_t *bridge, struct MHD_Connection *connection)
{
    sb_rest_req_t *req = calloc (1, sizeof *req);
    if (!req)
        return NULL;
    req->bridge = bridge;
    req->connection = connection;
    req->refs = 1;
    req->start_us = s_now_us ();
    req->timeout_ms = bridge->timeout_ms;
    req->label_service = "_bridge";
    req->label_method = "not_found";
    msgpack_sbuffer_init (&req->body);
    sb_rest_metrics_in_flight (bridge->metrics, 1);
    return req;
}

void
sb_rest_req_unref (sb_rest_req_t *req)
{
    if (__atomic_sub_fetch (&req->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    msgpack_sbuffer_destroy (&req->body);
    free (req->alias);
    free (req->in);
    free (req->out);
    free (req);
}

/*  Appends `text` to out as the inside of a JSON string: quotes,
    backslashes and control characters escaped, bytes that are not valid
    UTF-8 replaced by '?'.  Returns the new length (bounded by size-1).  */
static size_t
s_json_escape (char *out, size_t size, size_t used, const char *text)
{
    const unsigned char *s = (const unsigned char *) text;
    while (*s && used + 8 < size) {
        unsigned char c = *s;
        size_t sequence = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        for (size_t i = 1; i < sequence; i++)
            if ((s [i] & 0xC0) != 0x80)
                sequence = 0;
        if (sequence == 0) {
            out [used++] = '?';
            s++;
        }
        else
        if (c == '"' || c == '\\') {
            out [used++] = '\\';
            out [used++] = (char) c;
            s++;
        }
        else
        if (c < 0x20)
            used += (size_t) snprintf (out + used, size - used, "\\u%04x", c), s++;
        else {
            memcpy (out + used, s, sequence);
            used += sequence;
            s += sequence;
        }
    }
    out [used] = 0;
    return used;
}

/*  A malloc'd error body; *size gets its length.  */
static char *
s_error_body (const char *code, const char *message, const char *request_id, size_t *size)
{
    size_t capacity = 3 * SB_ERROR_TEXT_MAX + 256;
    char *body = malloc (capacity);
    if (!body)
        return NULL;
    size_t used = (size_t) snprintf (body, capacity, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    used = s_json_escape (body, capacity - 64 - SB_REST_REQUEST_ID_MAX, used, message);
    used += (size_t) snprintf (body + used, capacity - used, "\",\"request_id\":\"%s\"}}", request_id);
    *size = used;
    return body;
}

void
sb_rest_req_fail (sb_rest_req_t *req, sb_code_t code, const char *message)
{
    free (req->out);
    req->status = sb_code_http_status (code);
    req->out = s_error_body (sb_code_name (code), message, req->request_id, &req->out_size);
}

/*  --------------------------------------------------------------------
    Sending answers.  */

static void
s_add_common_headers (sb_rest_req_t *req, struct MHD_Response *response, const char *type)
{
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, "X-Request-Id", req->request_id);
    if (req->cors_origin) {
        MHD_add_response_header (response, "Access-Control-Allow-Origin", req->cors_origin);
        MHD_add_response_header (response, "Access-Control-Expose-Headers", "X-Request-Id");
        if (strcmp (req->cors_origin, "*"))
            MHD_add_response_header (response, MHD_HTTP_HEADER_VARY, "Origin");
    }
    pthread_mutex_lock (&req->bridge->lock);
    bool stopping = req->bridge->stopping;
    pthread_mutex_unlock (&req->bridge->lock);
    if (stopping)
        MHD_add_response_header (response, MHD_HTTP_HEADER_CONNECTION, "close");
}

/*  Queues `body` (ownership taken: it is malloc'd, or NULL for none) with
    `status` and records the request in the metrics.  */
static enum MHD_Result
s_send_owned (sb_rest_req_t *req, int status, char *body, size_t size,
              const char *type, const char *extra_name, const char *extra_value)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        body ? size : 0, body ? body : (void *) "", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response) {
        free (body);
        return MHD_NO;
    }
    s_add_common_headers (req, response, type);
    if (extra_name)
        MHD_add_response_header (response, extra_name, extra_value);
    enum MHD_Result result = MHD_queue_response (req->connection, (unsigned) status, response);
    MHD_destroy_response (response);
    req->state = SB_REST_SENT;
    sb_rest_metrics_record (req->bridge->metrics,
                            req->kind == SB_REST_CALL ? req->service : req->label_service,
                            req->kind == SB_REST_CALL ? req->method : req->label_method,
                            status, s_now_us () - req->start_us);
    return result;
}

static enum MHD_Result
s_send_error (sb_rest_req_t *req, int status, const char *code, const char *message,
              const char *extra_name, const char *extra_value)
{
    size_t size = 0;
    char *body = s_error_body (code, message, req->request_id, &size);
    return s_send_owned (req, status, body, size, "application/json", extra_name, extra_value);
}

static enum MHD_Result
s_send_bus_error (sb_rest_req_t *req, sb_code_t code, const char *message)
{
    return s_send_error (req, sb_code_http_status (code), sb_code_name (code), message,
                         code == SB_E_UNAUTHORIZED ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL,
                         "Bearer realm=\"switchboard\"");
}

/*  --------------------------------------------------------------------
    Request checks.  */

/*  Sets cors_origin when the request's Origin is allowed.  */
static void
s_take_origin (sb_rest_req_t *req)
{
    const char *allowed = req->bridge->cors_origins;
    const char *origin = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND, "Origin");
    if (!origin || !*allowed)
        return;
    size_t length = strlen (origin);
    const char *cursor = allowed;
    while (*cursor) {
        cursor += strspn (cursor, " ,");
        size_t item = strcspn (cursor, " ,");
        if (item == 1 && *cursor == '*') {
            req->cors_origin = "*";
            return;
        }
        if (item == length && item > 0 && !strncmp (cursor, origin, length)) {
            req->cors_origin = origin;
            return;
        }
        cursor += item;
    }
}

/*  Checks credentials.  service NULL: any valid key will do.  Returns 0
    if the request may go on; otherwise the refusal was queued and the
    result of queueing is in *result.  */
static int
s_authorize (sb_rest_req_t *req, const char *service, const char *method, enum MHD_Result *result)
{
    sb_rest_bridge_t *bridge = req->bridge;
    if (sb_rest_auth_size (bridge->auth) == 0)
        return 0;
    const char *token = NULL;
    const char *header = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                      MHD_HTTP_HEADER_AUTHORIZATION);
    if (header && !strncasecmp (header, "Bearer ", 7)) {
        token = header + 7;
        token += strspn (token, " ");
    }
    if (!token)
        token = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND, "X-API-Key");
    size_t length = token ? strnlen (token, S_TOKEN_MAX + 1) : 0;
    const sb_rest_key_t *key = NULL;
    if (length > 0 && length <= S_TOKEN_MAX)
        key = sb_rest_auth_lookup (bridge->auth, token, length);
    if (!key) {
        sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_AUTH);
        *result = s_send_bus_error (req, SB_E_UNAUTHORIZED, token
            ? "invalid API key" : "an API key is required (Authorization: Bearer KEY or X-API-Key)");
        return -1;
    }
    if (service && !sb_rest_key_allows (key, service, method)) {
        sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_FORBIDDEN);
        char message [256];
        snprintf (message, sizeof message, "key '%s' may not call %s.%s",
                  sb_rest_key_name (key), service, method);
        *result = s_send_bus_error (req, SB_E_FORBIDDEN, message);
        return -1;
    }
    return 0;
}

/*  Checks Content-Type, declared length, and a client's X-Timeout-Ms;
    returns 0 or queues the refusal as s_authorize does.  */
static int
s_check_body_headers (sb_rest_req_t *req, bool require_json, enum MHD_Result *result)
{
    sb_rest_bridge_t *bridge = req->bridge;
    const char *type = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_CONTENT_TYPE);
    if (require_json || type) {
        size_t length = type ? strcspn (type, "; \t") : 0;
        if (!type || length != strlen ("application/json")
        ||  strncasecmp (type, "application/json", length)) {
            sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_CONTENT_TYPE);
            *result = s_send_error (req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                                    "Content-Type must be application/json", NULL, NULL);
            return -1;
        }
    }
    const char *declared = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (declared) {
        char *end;
        errno = 0;
        unsigned long long value = strtoull (declared, &end, 10);
        if (errno || *end || value > bridge->max_body) {
            sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_BODY_TOO_LARGE);
            char message [128];
            snprintf (message, sizeof message, "request body larger than %zu bytes", bridge->max_body);
            *result = s_send_error (req, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large",
                                    message, NULL, NULL);
            return -1;
        }
    }
    const char *timeout = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND, "X-Timeout-Ms");
    if (timeout) {
        char *end;
        long value = strtol (timeout, &end, 10);
        if (*end || value <= 0 || value > bridge->timeout_max_ms) {
            char message [128];
            snprintf (message, sizeof message, "X-Timeout-Ms must be 1..%d", bridge->timeout_max_ms);
            *result = s_send_bus_error (req, SB_E_BAD_REQUEST, message);
            return -1;
        }
        req->timeout_ms = (int) value;
        req->timeout_given = true;
    }
    return 0;
}

/*  Refuses a request whose body cannot be delimited without doubt
    (framing.c): 400 or 501, Connection: close.  Returns 0 if the framing
    is sound, else -1 with the refusal queued as s_authorize does.  */
static int
s_check_framing (sb_rest_req_t *req, const char *version, enum MHD_Result *result)
{
    char why [128];
    int status = sb_rest_framing_check (req->connection, version, why, sizeof why);
    if (status == 0)
        return 0;
    sb_rest_metrics_error (req->bridge->metrics, status == MHD_HTTP_NOT_IMPLEMENTED
                           ? SB_REST_ERR_TRANSFER_ENCODING : SB_REST_ERR_BAD_FRAMING);
    sb_rest_metrics_connection_closed (req->bridge->metrics, SB_REST_CLOSED_BAD_FRAMING);
    *result = s_send_error (req, status, status == MHD_HTTP_NOT_IMPLEMENTED
                            ? "not_implemented" : sb_code_name (SB_E_BAD_REQUEST),
                            why, MHD_HTTP_HEADER_CONNECTION, "close");
    return -1;
}

/*  --------------------------------------------------------------------
    Routing (first call of the access handler).  */

static enum MHD_Result
s_preflight (sb_rest_req_t *req)
{
    req->label_method = "preflight";
    const char *asked = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND,
                                                     "Access-Control-Request-Method");
    if (!asked) {
        return s_send_owned (req, MHD_HTTP_NO_CONTENT, NULL, 0, "application/json",
                             MHD_HTTP_HEADER_ALLOW, "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    }
    if (!req->cors_origin)
        return s_send_bus_error (req, SB_E_FORBIDDEN, "origin not allowed");
    struct MHD_Response *response = MHD_create_response_from_buffer (0, (void *) "",
                                                                     MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    s_add_common_headers (req, response, "application/json");
    MHD_add_response_header (response, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
    MHD_add_response_header (response, "Access-Control-Allow-Headers",
                             "Content-Type, Authorization, X-API-Key, X-Request-Id, X-Timeout-Ms, traceparent");
    MHD_add_response_header (response, "Access-Control-Max-Age", "600");
    enum MHD_Result result = MHD_queue_response (req->connection, MHD_HTTP_NO_CONTENT, response);
    MHD_destroy_response (response);
    req->state = SB_REST_SENT;
    sb_rest_metrics_record (req->bridge->metrics, req->label_service, req->label_method,
                            MHD_HTTP_NO_CONTENT, s_now_us () - req->start_us);
    return result;
}

static enum MHD_Result
s_not_allowed (sb_rest_req_t *req, const char *allow)
{
    sb_rest_metrics_error (req->bridge->metrics, SB_REST_ERR_NO_ROUTE);
    char message [128];
    snprintf (message, sizeof message, "method not allowed here; use %s", allow);
    return s_send_error (req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", message,
                         MHD_HTTP_HEADER_ALLOW, allow);
}

/*  Hands a request to the actor, its connection suspended; -1 if the
    bridge is shutting down (then nothing was suspended).  The actor's
    side of the queue is in bridge.c.  */
static int
s_hand_over (sb_rest_bridge_t *self, sb_rest_req_t *req)
{
    pthread_mutex_lock (&self->lock);
    if (self->stopping) {
        pthread_mutex_unlock (&self->lock);
        return -1;
    }
    req->state = SB_REST_WAITING;
    /*  Suspended before the actor can see it, so that its resume can never
        come first.  */
    MHD_suspend_connection (req->connection);
    __atomic_add_fetch (&req->refs, 1, __ATOMIC_ACQ_REL);
    req->next = NULL;
    bool was_empty = self->queue_head == NULL;
    if (self->queue_tail)
        self->queue_tail->next = req;
    else
        self->queue_head = req;
    self->queue_tail = req;
    pthread_mutex_unlock (&self->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t written = write (self->event_fd, &one, sizeof one);
        (void) written;         /* EAGAIN: the counter is already non-zero */
    }
    return 0;
}

static enum MHD_Result
s_submit (sb_rest_req_t *req)
{
    if (s_hand_over (req->bridge, req) == 0)
        return MHD_YES;
    sb_rest_metrics_error (req->bridge->metrics, SB_REST_ERR_SHUTDOWN);
    return s_send_bus_error (req, SB_E_UNAVAILABLE, "the bridge is shutting down");
}

static enum MHD_Result
s_route (sb_rest_req_t *req, const char *url, const char *http_method, const char *version)
{
    sb_rest_bridge_t *bridge = req->bridge;
    enum MHD_Result result = MHD_YES;
    bool get = !strcmp (http_method, MHD_HTTP_METHOD_GET);
    sb_rest_req_take_ids (req);
    s_take_origin (req);
    if (s_check_framing (req, version, &result))
        return result;

    if (!strcmp (http_method, MHD_HTTP_METHOD_OPTIONS))
        return s_preflight (req);

    if (!strcmp (url, "/healthz")) {
        req->label_method = "healthz";
        if (!get)
            return s_not_allowed (req, "GET");
        req->kind = SB_REST_HEALTH;
        return s_submit (req);
    }
    if (!strcmp (url, "/metrics")) {
        req->label_method = "metrics";
        if (!get)
            return s_not_allowed (req, "GET");
        size_t size = 0;
        char *text = sb_rest_metrics_render (bridge->metrics, &size);
        if (!text)
            return s_send_bus_error (req, SB_E_INTERNAL, "out of memory");
        return s_send_owned (req, MHD_HTTP_OK, text, size, "text/plain; version=0.0.4; charset=utf-8",
                             NULL, NULL);
    }
    if (!strcmp (url, "/openapi.json")) {
        req->label_method = "openapi";
        if (!get)
            return s_not_allowed (req, "GET");
        if (s_authorize (req, NULL, NULL, &result))
            return result;
        size_t size = 0;
        char *copy = sb_rest_catalog_openapi (bridge->catalog, &size);
        if (!copy)
            return s_send_bus_error (req, SB_E_INTERNAL, "out of memory");
        return s_send_owned (req, MHD_HTTP_OK, copy, size, "application/json", NULL, NULL);
    }
    if (!strcmp (url, "/v1/services")) {
        req->label_method = "services";
        if (!get)
            return s_not_allowed (req, "GET");
        if (s_authorize (req, NULL, NULL, &result))
            return result;
        req->kind = SB_REST_SERVICES;
        return s_submit (req);
    }
    if (!strncmp (url, "/v1/", 4)) {
        const char *service = url + 4;
        const char *slash = strchr (service, '/');
        size_t service_size = slash ? (size_t) (slash - service) : 0;
        const char *method = slash ? slash + 1 : "";
        if (slash && service_size <= SB_NAME_MAX) {
            memcpy (req->service, service, service_size);
            req->service [service_size] = 0;
        }
        if (!slash || service_size > SB_NAME_MAX
        ||  !sb_name_valid (req->service, SB_NAME_SERVICE)
        ||  !sb_name_valid (method, SB_NAME_METHOD)) {
            req->service [0] = 0;
            sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_NO_ROUTE);
            return s_send_bus_error (req, SB_E_NOT_FOUND, "no such route: use POST /v1/{service}/{method}");
        }
        snprintf (req->method, sizeof req->method, "%s", method);
        req->kind = SB_REST_CALL;
        if (strcmp (http_method, MHD_HTTP_METHOD_POST))
            return s_not_allowed (req, "POST");
        if (s_authorize (req, req->service, req->method, &result)
        ||  s_check_body_headers (req, true, &result))
            return result;
        req->state = SB_REST_BODY;
        return MHD_YES;
    }

    sb_rest_match_t match;
    char allow [64];
    int found = sb_rest_routes_match (bridge->routes, http_method, url, &match, allow);
    if (found == 0)
        return s_not_allowed (req, allow);
    if (found == 1) {
        req->alias = malloc (sizeof match);
        if (!req->alias)
            return s_send_bus_error (req, SB_E_INTERNAL, "out of memory");
        *req->alias = match;
        req->kind = SB_REST_CALL;
        snprintf (req->service, sizeof req->service, "%s", match.service);
        snprintf (req->method, sizeof req->method, "%s", match.method);
        if (s_authorize (req, req->service, req->method, &result)
        ||  s_check_body_headers (req, false, &result))
            return result;
        req->state = SB_REST_BODY;
        return MHD_YES;
    }
    sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_NO_ROUTE);
    return s_send_bus_error (req, SB_E_NOT_FOUND, "no such route");
}

/*  --------------------------------------------------------------------
    Bodies.  */

/*  Appends a piece of the body, which the caller checked against
    max_body.  0, or -1 if out of memory.  */
static int
s_append (sb_rest_req_t *req, const char *data, size_t size)
{
    if (req->in_size + size > req->in_capacity) {
        size_t capacity = req->in_capacity ? req->in_capacity : 4096;
        while (capacity < req->in_size + size)
            capacity *= 2;
        char *in = realloc (req->in, capacity);
        if (!in)
            return -1;
        req->in = in;
        req->in_capacity = capacity;
    }
    memcpy (req->in + req->in_size, data, size);
    req->in_size += size;
    return 0;
}

/*  A body passed max_body while it arrived (a chunked one: a declared
    Content-Length is checked with the head).  libmicrohttpd 0.9.75 queues
    an answer only before the body is read or after all of it
    (MHD_queue_response refuses in between), and the rest could be
    gigabytes sent as slowly as the client likes.  So the 413 is written
    to the socket here (framing.c), its sending side shut down, and MHD_NO
    makes libmicrohttpd close the connection.  Nothing else is being sent
    on it (an answer goes out only once its request is read), so the send
    buffer is empty and one non-blocking send() takes the answer.  Bytes the
    client sends after it make the kernel reset the connection on close;
    the 413 is in the client's receive buffer by then, and Linux lets it
    be read.  */
static enum MHD_Result
s_refuse_body (sb_rest_req_t *req)
{
    sb_rest_bridge_t *bridge = req->bridge;
    sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_BODY_TOO_LARGE);
    sb_rest_metrics_connection_closed (bridge->metrics, SB_REST_CLOSED_BODY_TOO_LARGE);
    req->state = SB_REST_SENT;
    req->closed_by_bridge = true;
    sb_rest_metrics_record (bridge->metrics,
                            req->kind == SB_REST_CALL ? req->service : req->label_service,
                            req->kind == SB_REST_CALL ? req->method : req->label_method,
                            MHD_HTTP_CONTENT_TOO_LARGE, s_now_us () - req->start_us);
    const union MHD_ConnectionInfo *info = MHD_get_connection_info (req->connection,
                                                                    MHD_CONNECTION_INFO_CONNECTION_FD);
    char message [128];
    snprintf (message, sizeof message, "request body larger than %zu bytes", bridge->max_body);
    size_t body_size = 0;
    char *body = s_error_body ("payload_too_large", message, req->request_id, &body_size);
    if (!info || !body) {
        free (body);
        return MHD_NO;
    }
    char headers [S_ORIGIN_MAX + 256];
    snprintf (headers, sizeof headers, "Content-Type: application/json\r\nX-Request-Id: %s\r\n",
              req->request_id);
    if (req->cors_origin)
        snprintf (headers + strlen (headers), sizeof headers - strlen (headers),
                  "Access-Control-Allow-Origin: %.*s\r\nAccess-Control-Expose-Headers: X-Request-Id\r\n%s",
                  S_ORIGIN_MAX, req->cors_origin,
                  strcmp (req->cors_origin, "*") ? "Vary: Origin\r\n" : "");
    sb_rest_framing_answer (info->connect_fd, MHD_HTTP_CONTENT_TOO_LARGE, "Content Too Large",
                            headers, body, body_size);
    free (body);
    return MHD_NO;
}

typedef struct {
    msgpack_packer *packer;
    const sb_rest_match_t *match;
    size_t count;
    bool counting;
    const sb_rest_types_t *types;
} s_args_t;

static bool
s_is_param (const sb_rest_match_t *match, const char *name, size_t size)
{
    for (size_t i = 0; i < match->params_size; i++)
        if (strlen (match->names [i]) == size && !memcmp (match->names [i], name, size))
            return true;
    return false;
}

static void
s_pack_str (msgpack_packer *packer, const char *text, size_t size)
{
    msgpack_pack_str (packer, size);
    msgpack_pack_str_body (packer, text, size);
}

static enum MHD_Result
s_query_arg (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    s_args_t *args = cls;
    if (!key || s_is_param (args->match, key, strlen (key)) || args->count >= 64)
        return MHD_YES;
    args->count++;
    if (!args->counting) {
        s_pack_str (args->packer, key, strlen (key));
        sb_rest_types_pack (args->types, args->packer, key, value ? value : "");
    }
    return MHD_YES;
}

/*  Builds the MessagePack body of an alias call: path parameters, then
    query arguments or the members of the JSON object body.  */
static int
s_alias_body (sb_rest_req_t *req, sb_error_t *err)
{
    const sb_rest_match_t *match = req->alias;
    msgpack_sbuffer json;
    msgpack_sbuffer_init (&json);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    const msgpack_object_map *members = NULL;
    int rc = 0;
    if (req->in_size > 0) {
        if (sb_json_to_msgpack (req->in, req->in_size, &json, err) != 0
        ||  msgpack_unpack_next (&unpacked, json.data, json.size, NULL) != MSGPACK_UNPACK_SUCCESS) {
            rc = -1;
            goto done;
        }
        if (unpacked.data.type != MSGPACK_OBJECT_MAP) {
            rc = sb_error_set (err, SB_E_BAD_REQUEST, "the body of this route must be a JSON object");
            goto done;
        }
        members = &unpacked.data.via.map;
    }
    msgpack_packer packer;
    msgpack_packer_init (&packer, &req->body, msgpack_sbuffer_write);
    sb_rest_types_t types;
    sb_rest_types_init (&types, sb_rest_catalog_hold (req->bridge->catalog), match->service,
                        match->method);
    sb_rest_catalog_release (req->bridge->catalog);
    s_args_t args = { &packer, match, 0, true, &types };
    size_t extra = 0;
    if (members) {
        for (uint32_t i = 0; i < members->size; i++) {
            const msgpack_object *key = &members->ptr [i].key;
            if (key->type != MSGPACK_OBJECT_STR || !s_is_param (match, key->via.str.ptr, key->via.str.size))
                extra++;
        }
    }
    else
        MHD_get_connection_values (req->connection, MHD_GET_ARGUMENT_KIND, s_query_arg, &args);
    msgpack_pack_map (&packer, match->params_size + extra + args.count);
    for (size_t i = 0; i < match->params_size; i++) {
        s_pack_str (&packer, match->names [i], strlen (match->names [i]));
        sb_rest_types_pack (&types, &packer, match->names [i], match->values [i]);
    }
    if (members) {
        for (uint32_t i = 0; i < members->size; i++) {
            const msgpack_object *key = &members->ptr [i].key;
            if (key->type == MSGPACK_OBJECT_STR && s_is_param (match, key->via.str.ptr, key->via.str.size))
                continue;
            msgpack_pack_object (&packer, *key);
            msgpack_pack_object (&packer, members->ptr [i].val);
        }
    }
    else {
        args.count = 0;
        args.counting = false;
        MHD_get_connection_values (req->connection, MHD_GET_ARGUMENT_KIND, s_query_arg, &args);
    }
    sb_rest_types_fini (&types);
done:
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&json);
    return rc;
}

/*  Checks the body against the method's schema, if the catalog (the bus,
    or a local directory) describes it, so that a bad request is refused
    before it crosses the bus; takes the method's timeout unless the
    client chose one.  */
static int s_validate_with (sb_rest_req_t *req, const sb_method_schema_t *schema, sb_error_t *err);

static int
s_validate (sb_rest_req_t *req, sb_error_t *err)
{
    const sb_schema_set_t *set = sb_rest_catalog_hold (req->bridge->catalog);
    const sb_method_schema_t *schema = sb_schema_set_find (set, req->service, req->method);
    int rc = schema ? s_validate_with (req, schema, err) : 0;
    sb_rest_catalog_release (req->bridge->catalog);
    return rc;
}

static int
s_validate_with (sb_rest_req_t *req, const sb_method_schema_t *schema, sb_error_t *err)
{
    int schema_timeout = sb_method_schema_timeout_ms (schema);
    if (!req->timeout_given && schema_timeout > 0)
        req->timeout_ms = schema_timeout < req->bridge->timeout_max_ms
                        ? schema_timeout : req->bridge->timeout_max_ms;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = 0;
    if (msgpack_unpack_next (&unpacked, req->body.data, req->body.size, NULL) != MSGPACK_UNPACK_SUCCESS)
        rc = sb_error_set (err, SB_E_BAD_REQUEST, "malformed request body");
    else
    if (sb_method_schema_validate_request (schema, &unpacked.data, err) != 0)
        rc = -1;
    msgpack_unpacked_destroy (&unpacked);
    if (rc != 0)
        sb_rest_metrics_error (req->bridge->metrics, SB_REST_ERR_SCHEMA);
    return rc;
}

/*  The whole body is in: convert it and hand the request over.  */
static enum MHD_Result
s_body_done (sb_rest_req_t *req)
{
    sb_rest_bridge_t *bridge = req->bridge;
    sb_error_t err = { SB_OK, "" };
    int rc;
    if (req->alias)
        rc = s_alias_body (req, &err);
    else
    if (req->in_size == 0) {
        msgpack_packer packer;
        msgpack_packer_init (&packer, &req->body, msgpack_sbuffer_write);
        rc = msgpack_pack_nil (&packer);
    }
    else
        rc = sb_json_to_msgpack (req->in, req->in_size, &req->body, &err);
    if (rc != 0) {
        sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_MALFORMED_JSON);
        return s_send_bus_error (req, SB_E_BAD_REQUEST, err.text [0] ? err.text : "malformed JSON");
    }
    free (req->in);
    req->in = NULL;
    req->in_size = req->in_capacity = 0;
    if (s_validate (req, &err) != 0)
        return s_send_bus_error (req, SB_E_BAD_REQUEST, err.text);
    return s_submit (req);
}

/*  --------------------------------------------------------------------
    libmicrohttpd callbacks.  */

/*  A suspended connection is not watched, so a client that left while
    its call was on the bus is only noticed here, when the answer is
    ready: the socket reads end-of-file (or an error).  Its answer is
    dropped and the request counted with nginx's status for it, 499.
    (A client that half-closes its side after the request is taken for
    gone too, as nginx does.)  */
#define S_STATUS_CLIENT_GONE 499

/*  The connection's record in the guard (conns.c), or NULL.  */
static sb_rest_conn_t *
s_conn (struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info (connection,
                                                                    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static bool
s_client_gone (sb_rest_req_t *req)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info (req->connection,
                                                                    MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return false;
    char byte;
    ssize_t got = recv (info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static enum MHD_Result
s_access (void *cls, struct MHD_Connection *connection, const char *url,
          const char *method, const char *version, const char *upload_data,
          size_t *upload_data_size, void **con_cls)
{
    sb_rest_bridge_t *bridge = cls;
    sb_rest_req_t *req = *con_cls;
    if (!req) {
        sb_rest_conns_head_done (bridge->conns, s_conn (connection));
        req = s_req_new (bridge, connection);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return s_route (req, url, method, version);
    }
    switch (req->state) {
        case SB_REST_BODY:
            if (*upload_data_size) {
                size_t size = *upload_data_size;
                *upload_data_size = 0;
                if (size > bridge->max_body - req->in_size)
                    return s_refuse_body (req);
                return s_append (req, upload_data, size) == 0 ? MHD_YES : MHD_NO;
            }
            return s_body_done (req);
        case SB_REST_ANSWERED: {
            if (s_client_gone (req)) {
                sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_CLIENT_GONE);
                req->state = SB_REST_SENT;
                req->gone_counted = true;
                sb_rest_metrics_record (bridge->metrics,
                                        req->kind == SB_REST_CALL ? req->service : req->label_service,
                                        req->kind == SB_REST_CALL ? req->method : req->label_method,
                                        S_STATUS_CLIENT_GONE, s_now_us () - req->start_us);
                return MHD_NO;
            }
            char *out = req->out;
            req->out = NULL;
            return s_send_owned (req, req->status, out, req->out_size, "application/json", NULL, NULL);
        }
        default:
            *upload_data_size = 0;
            return MHD_YES;
    }
}

static void
s_completed (void *cls, struct MHD_Connection *connection, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    sb_rest_bridge_t *bridge = cls;
    sb_rest_req_t *req = *con_cls;
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        sb_rest_conns_request_done (bridge->conns, s_conn (connection));
    if (!req)
        return;
    *con_cls = NULL;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN
    &&  !req->gone_counted && !req->closed_by_bridge)
        sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_CLIENT_GONE);
    sb_rest_metrics_in_flight (bridge->metrics, -1);
    sb_rest_req_unref (req);
}

/*  Connection notifications: the guard tracks each connection from its
    start to its close (reported before its socket is closed).  */
static void
s_notify_connection (void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode code)
{
    sb_rest_bridge_t *bridge = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info (connection,
                                                                      MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr = MHD_get_connection_info (connection,
                                                                        MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (fd)
            *socket_context = sb_rest_conns_opened (bridge->conns, fd->connect_fd,
                                                    addr ? addr->client_addr : NULL);
    }
    else
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        sb_rest_conns_closed (bridge->conns, *socket_context);
        *socket_context = NULL;
    }
}

static enum MHD_Result
s_accept_policy (void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void) addrlen;
    sb_rest_bridge_t *bridge = cls;
    return sb_rest_conns_admit (bridge->conns, addr) ? MHD_YES : MHD_NO;
}

/*  Parses "HOST:PORT" (IPv4, or [IPv6]:PORT) into addr.  */
static int
s_parse_listen (const char *listen, struct sockaddr_storage *addr, sb_error_t *err)
{
    char host [64];
    const char *colon = strrchr (listen, ':');
    if (!colon || (size_t) (colon - listen) >= sizeof host)
        return sb_error_set (err, SB_E_BAD_REQUEST, "listen '%s' must be HOST:PORT", listen);
    memcpy (host, listen, (size_t) (colon - listen));
    host [colon - listen] = 0;
    char *end;
    long port = strtol (colon + 1, &end, 10);
    if (*end || colon [1] == 0 || port < 0 || port > 65535)
        return sb_error_set (err, SB_E_BAD_REQUEST, "listen '%s': bad port", listen);
    memset (addr, 0, sizeof *addr);
    size_t length = strlen (host);
    if (length > 2 && host [0] == '[' && host [length - 1] == ']') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;
        host [length - 1] = 0;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons ((uint16_t) port);
        if (inet_pton (AF_INET6, host + 1, &in6->sin6_addr) != 1)
            return sb_error_set (err, SB_E_BAD_REQUEST, "listen '%s': bad IPv6 address", listen);
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *) addr;
    in->sin_family = AF_INET;
    in->sin_port = htons ((uint16_t) port);
    if (inet_pton (AF_INET, host, &in->sin_addr) != 1)
        return sb_error_set (err, SB_E_BAD_REQUEST, "listen '%s': bad IPv4 address", listen);
    return 0;
}

int
sb_rest_http_start (sb_rest_bridge_t *self, sb_error_t *err)
{
    struct sockaddr_storage addr;
    if (s_parse_listen (self->listen, &addr, err) != 0)
        return -1;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->conns = sb_rest_conns_new (self->metrics, self->connection_limit,
                                     self->connections_per_client, self->header_timeout_s);
    if (!self->conns)
        return sb_error_set (err, SB_E_INTERNAL, "rest-bridge: cannot start the connection guard");
    /*  The guard enforces the connection limit and counts its refusals;
        libmicrohttpd splits its own limit evenly among its threads, so it
        is set to the whole limit per thread and never refuses first.
        LISTENING_ADDRESS_REUSE: absent, libmicrohttpd sets SO_REUSEADDR
        (a restart binds at once, whatever is in TIME_WAIT); 1 adds
        SO_REUSEPORT; 0 would set neither.  */
    struct MHD_OptionItem options [] = {
        { MHD_OPTION_SOCK_ADDR, 0, &addr },
        { MHD_OPTION_THREAD_POOL_SIZE, self->threads, NULL },
        { MHD_OPTION_CONNECTION_LIMIT, (intptr_t) self->connection_limit * self->threads, NULL },
        { MHD_OPTION_CONNECTION_TIMEOUT, self->connection_timeout_s, NULL },
        { MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL },
        { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) s_completed, self },
        { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t) s_notify_connection, self },
        /*  Last: without reuse_port it ends the list.  */
        { self->reuse_port ? MHD_OPTION_LISTENING_ADDRESS_REUSE : MHD_OPTION_END, 1, NULL },
        { MHD_OPTION_END, 0, NULL }
    };
    self->daemon = MHD_start_daemon (flags, 0, s_accept_policy, self, s_access, self,
                                     MHD_OPTION_ARRAY, options, MHD_OPTION_END);
    if (!self->daemon) {
        sb_rest_conns_destroy (&self->conns);
        return sb_error_set (err, SB_E_UNAVAILABLE, "cannot listen on %s (port in use?)", self->listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info (self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : 0;
    return 0;
}

void
sb_rest_http_stop (sb_rest_bridge_t *self)
{
    if (!self->daemon)
        return;
    MHD_socket listener = MHD_quiesce_daemon (self->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close (listener);
    /*  Answers were given (or refused with 503) by the caller; give them
        drain_ms to reach their clients.  Idle keep-alive connections do
        not count: stopping the daemon closes them.  */
    int64_t deadline = s_now_us () + (int64_t) self->drain_ms * 1000;
    while (sb_rest_metrics_in_flight_now (self->metrics) > 0 && s_now_us () < deadline)
        usleep (5000);
    MHD_stop_daemon (self->daemon);
    self->daemon = NULL;
    sb_rest_conns_destroy (&self->conns);
}
