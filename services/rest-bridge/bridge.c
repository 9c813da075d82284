/*  bridge.c — the REST bridge service: plugin descriptor, configuration,
    and the actor half (see bridge.h for how the halves meet).

    Configuration (section `rest-bridge` of `sb run --config FILE`, or
    `--set rest-bridge/KEY=VALUE`):

        listen = 127.0.0.1:8080     HOST:PORT or [IPv6]:PORT; port 0 = any
        threads = 2                 HTTP thread pool size
        max_body = 1048576          bytes; larger bodies get 413
        timeout_ms = 5000           default bus call timeout (a method's
                                    declared timeout_ms wins; a client may
                                    ask for less or more with X-Timeout-Ms,
                                    up to timeout_max_ms)
        timeout_max_ms = 60000
        connections = 10000         simultaneous connections accepted
        connections_per_client = 256  of those, from one client address
        header_timeout = 10         seconds for a complete request head
        connection_timeout = 30     seconds of silence before a client is dropped
        drain_ms = 2000             on shutdown, time given to answers in flight
        reuse_port = false          let several instances share the port
        schemas = DIR               local schema files, overriding what the bus
                                    says of the same services (catalog.h)
        catalog_refresh_ms = 10000  how often the services of the bus and
                                    their contracts are asked for again
        cors_origins = "https://app.example.com https://admin.example.com"  or "*"
        aliases = "GET /users/{id} users.get; POST /users users.create"
        port_file = PATH            write the bound port there (for scripts)
        auth
            keys = "ci ops"         names of the keys below; none: auth off
            ci
                hash = 64 hex chars, `printf %s SECRET | b2sum -l 256`
                allow = "echo, kv.get"   "*", service, or service.method

    The actor watches an eventfd: HTTP threads append requests to a
    queue and write the eventfd when the queue was empty (http.c), the
    actor reads the eventfd first and then takes the whole queue, so no
    wake-up is lost and a burst costs one system call on each side.
*/
#include "bridge.h"
#include "http.h"
#include "openapi.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*  --------------------------------------------------------------------
    The actor side.  */

static void
s_active_add (sb_rest_bridge_t *self, sb_rest_req_t *req)
{
    req->prev_active = NULL;
    req->next_active = self->active;
    if (self->active)
        self->active->prev_active = req;
    self->active = req;
    self->active_size++;
}

static void
s_active_remove (sb_rest_bridge_t *self, sb_rest_req_t *req)
{
    if (req->prev_active)
        req->prev_active->next_active = req->next_active;
    else
        self->active = req->next_active;
    if (req->next_active)
        req->next_active->prev_active = req->prev_active;
    req->prev_active = req->next_active = NULL;
    self->active_size--;
}

/*  The answer is stored: let the HTTP thread send it, and let go.  */
static void
s_resume (sb_rest_req_t *req)
{
    req->state = SB_REST_ANSWERED;
    MHD_resume_connection (req->connection);
    sb_rest_req_unref (req);
}

/*  A failed health check: 503 whatever the bus said (that is what load
    balancers and orchestrators look at), with status and error in the
    body.  */
static void
s_health_failed (sb_rest_req_t *req)
{
    req->status = 503;
    if (!req->out || req->out [0] != '{')
        return;
    const char *prefix = "{\"status\":\"unavailable\",";
    size_t size = strlen (prefix) + req->out_size - 1;     /* the brace is shared */
    char *out = malloc (size + 1);
    if (!out)
        return;
    snprintf (out, size + 1, "%s%s", prefix, req->out + 1);
    free (req->out);
    req->out = out;
    req->out_size = size;
}

static void
s_on_reply (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    sb_rest_req_t *req = arg;
    sb_rest_bridge_t *self = req->bridge;
    s_active_remove (self, req);
    if (err)
        sb_rest_req_fail (req, err->code, err->text);
    else {
        sb_error_t conversion = { SB_OK, "" };
        char *json = sb_msgpack_to_json (body, &conversion);
        if (!json) {
            sb_rest_metrics_error (self->metrics, SB_REST_ERR_BAD_REPLY);
            char message [SB_ERROR_TEXT_MAX + 64];
            snprintf (message, sizeof message, "the reply cannot be given as JSON: %s", conversion.text);
            sb_rest_req_fail (req, SB_E_INTERNAL, message);
        }
        else
        if (req->kind == SB_REST_HEALTH) {
            size_t size = strlen (json) + 64;
            req->out = malloc (size);
            if (req->out) {
                req->out_size = (size_t) snprintf (req->out, size, "{\"status\":\"ok\",\"broker\":%s}", json);
                req->status = 200;
            }
            else
                sb_rest_req_fail (req, SB_E_INTERNAL, "out of memory");
            free (json);
        }
        else {
            req->status = 200;
            req->out = json;
            req->out_size = strlen (json);
        }
    }
    if (err && req->kind == SB_REST_HEALTH)
        s_health_failed (req);
    s_resume (req);
}

static void
s_dispatch (sb_rest_bridge_t *self, sb_rest_req_t *req)
{
    static const char nil = (char) 0xc0;
    const char *service = req->service, *method = req->method;
    const void *body = req->body.data;
    size_t size = req->body.size;
    int timeout_ms = req->timeout_ms;
    if (req->kind != SB_REST_CALL) {
        service = "sys";
        method = req->kind == SB_REST_HEALTH ? "ping" : "services";
        body = &nil;
        size = 1;
        if (req->kind == SB_REST_HEALTH && timeout_ms > 2000)
            timeout_ms = 2000;
    }
    sb_error_t err = { SB_OK, "" };
    s_active_add (self, req);
    sb_call_options_t options = { .timeout_ms = timeout_ms, .trace = req->trace,
                                  .body = body, .body_size = size };
    if (sb_actor_call_with (self->actor, service, method, &options, s_on_reply, req, &err,
                            NULL) != 0) {
        s_active_remove (self, req);
        sb_rest_metrics_error (self->metrics, SB_REST_ERR_CALL_FAILED);
        sb_rest_req_fail (req, err.code != SB_OK ? err.code : SB_E_INTERNAL,
                          err.text [0] ? err.text : "the call could not be sent");
        if (req->kind == SB_REST_HEALTH)
            s_health_failed (req);
        s_resume (req);
    }
}

/*  Takes everything queued; the caller owns the returned chain.  */
static sb_rest_req_t *
s_take_queue (sb_rest_bridge_t *self, bool stop)
{
    pthread_mutex_lock (&self->lock);
    sb_rest_req_t *head = self->queue_head;
    self->queue_head = self->queue_tail = NULL;
    if (stop)
        self->stopping = true;
    pthread_mutex_unlock (&self->lock);
    return head;
}

static void
s_on_event (int fd, void *arg)
{
    sb_rest_bridge_t *self = arg;
    uint64_t count;
    ssize_t got = read (self->event_fd, &count, sizeof count);
    (void) got;                 /* EAGAIN: a spurious wake-up, still drain */
    sb_rest_req_t *req = s_take_queue (self, false);
    while (req) {
        sb_rest_req_t *next = req->next;
        req->next = NULL;
        s_dispatch (self, req);
        req = next;
    }
}

/*  --------------------------------------------------------------------
    Configuration.  */

static int
s_config_uint (const sb_config_t *config, const char *key, long long min, long long max,
               long long fallback, long long *value, sb_error_t *err)
{
    const char *text = sb_config_get (config, key);
    if (!text) {
        *value = fallback;
        return 0;
    }
    char *end;
    errno = 0;
    long long parsed = strtoll (text, &end, 10);
    if (errno || *end || end == text || parsed < min || parsed > max)
        return sb_error_set (err, SB_E_BAD_REQUEST, "rest-bridge: %s = '%s' must be %lld..%lld",
                             key, text, min, max);
    *value = parsed;
    return 0;
}

static bool
s_config_bool (const sb_config_t *config, const char *key)
{
    const char *text = sb_config_get (config, key);
    return text && (!strcmp (text, "true") || !strcmp (text, "yes") || !strcmp (text, "1"));
}

static int
s_load_keys (sb_rest_bridge_t *self, const sb_config_t *config, sb_error_t *err)
{
    const char *names = sb_config_get (config, "auth/keys");
    const char *cursor = names ? names : "";
    while (*cursor) {
        cursor += strspn (cursor, " ,\t");
        size_t length = strcspn (cursor, " ,\t");
        if (length == 0)
            break;
        char name [65], path [160];
        if (length >= sizeof name)
            return sb_error_set (err, SB_E_BAD_REQUEST, "rest-bridge: key name too long in auth/keys");
        memcpy (name, cursor, length);
        name [length] = 0;
        cursor += length;
        snprintf (path, sizeof path, "auth/%s/hash", name);
        const char *hash = sb_config_get (config, path);
        snprintf (path, sizeof path, "auth/%s/allow", name);
        const char *allow = sb_config_get (config, path);
        char why [256];
        if (sb_rest_auth_add (self->auth, name, hash, allow, why) != 0)
            return sb_error_set (err, SB_E_BAD_REQUEST, "rest-bridge: %s", why);
    }
    return 0;
}

/*  The OpenAPI document of a set (the catalog's, catalog.h): engineer
    C's generator, plus what only the bridge knows: where it listens, how
    clients authenticate, and the aliases.  */
static char *
s_render_openapi (void *arg, const sb_schema_set_t *set, sb_error_t *err)
{
    sb_rest_bridge_t *self = arg;
    sb_error_t why = { SB_OK, "" };
    json_t *doc = sb_rest_openapi_build (set, "Switchboard REST bridge", NULL, &why);
    if (!doc) {
        sb_error_set (err, SB_E_INTERNAL, "rest-bridge: openapi: %s", why.text);
        return NULL;
    }
    char url [160];
    snprintf (url, sizeof url, "http://%s", self->listen);
    json_object_set_new (doc, "servers", json_pack ("[{s:s}]", "url", url));
    if (sb_rest_auth_size (self->auth) > 0) {
        json_t *components = json_object_get (doc, "components");
        if (!components) {
            components = json_object ();
            json_object_set_new (doc, "components", components);
        }
        json_object_set_new (components, "securitySchemes", json_pack (
            "{s:{s:s,s:s},s:{s:s,s:s,s:s}}",
            "bearer", "type", "http", "scheme", "bearer",
            "apiKey", "type", "apiKey", "in", "header", "name", "X-API-Key"));
        json_object_set_new (doc, "security", json_pack ("[{s:[]},{s:[]}]", "bearer", "apiKey"));
    }
    json_t *paths = json_object_get (doc, "paths");
    for (size_t i = 0; paths && i < sb_rest_routes_size (self->routes); i++) {
        char http_method [8], path [600], target [140];
        sb_rest_routes_describe (self->routes, i, http_method, path, target);
        for (char *c = http_method; *c; c++)
            *c = (char) (*c - 'A' + 'a');
        json_t *item = json_object_get (paths, path);
        if (!item) {
            item = json_object ();
            json_object_set_new (paths, path, item);
        }
        char summary [200];
        snprintf (summary, sizeof summary, "Alias of POST /v1/%s", target);
        *strchr (summary + strlen ("Alias of POST /v1/"), '.') = '/';
        json_t *parameters = json_array ();
        for (const char *open = strchr (path, '{'); open; open = strchr (open + 1, '{')) {
            const char *close = strchr (open, '}');
            if (!close)
                break;
            json_array_append_new (parameters, json_pack ("{s:s%,s:s,s:b,s:{s:s}}",
                "name", open + 1, (size_t) (close - open - 1), "in", "path",
                "required", 1, "schema", "type", "string"));
        }
        json_object_set_new (item, http_method, json_pack (
            "{s:s,s:s,s:o,s:{s:{s:s}}}", "summary", summary, "x-switchboard-target", target,
            "parameters", parameters,
            "responses", "200", "description", "the reply of the target method, as JSON"));
    }
    char *text = json_dumps (doc, JSON_COMPACT);
    json_decref (doc);
    if (!text)
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
    return text;
}

static void s_bridge_destroy (sb_rest_bridge_t **self_p);

static int
s_configure (sb_rest_bridge_t *self, const sb_config_t *config, sb_error_t *err)
{
    long long value;
    snprintf (self->listen, sizeof self->listen, "%s",
              sb_config_get_default (config, "listen", "127.0.0.1:8080"));
    if (s_config_uint (config, "threads", 1, 256, 2, &value, err))
        return -1;
    self->threads = (unsigned) value;
    if (s_config_uint (config, "max_body", 1, SB_BODY_MAX_DEFAULT, 1024 * 1024, &value, err))
        return -1;
    self->max_body = (size_t) value;
    if (s_config_uint (config, "timeout_max_ms", 1, 3600 * 1000, 60000, &value, err))
        return -1;
    self->timeout_max_ms = (int) value;
    if (s_config_uint (config, "timeout_ms", 1, self->timeout_max_ms, 5000, &value, err))
        return -1;
    self->timeout_ms = (int) value;
    if (s_config_uint (config, "connections", 1, 1000000, 10000, &value, err))
        return -1;
    self->connection_limit = (unsigned) value;
    if (s_config_uint (config, "connections_per_client", 1, 1000000, 256, &value, err))
        return -1;
    self->connections_per_client = (unsigned) value;
    if (s_config_uint (config, "header_timeout", 1, 3600, 10, &value, err))
        return -1;
    self->header_timeout_s = (unsigned) value;
    if (s_config_uint (config, "connection_timeout", 1, 3600, 30, &value, err))
        return -1;
    self->connection_timeout_s = (unsigned) value;
    if (s_config_uint (config, "drain_ms", 0, 60000, 2000, &value, err))
        return -1;
    self->drain_ms = (int) value;
    self->reuse_port = s_config_bool (config, "reuse_port");
    const char *origins = sb_config_get_default (config, "cors_origins", "");
    if (strlen (origins) >= sizeof self->cors_origins)
        return sb_error_set (err, SB_E_BAD_REQUEST, "rest-bridge: cors_origins too long");
    snprintf (self->cors_origins, sizeof self->cors_origins, "%s", origins);
    char why [256] = "";
    self->routes = sb_rest_routes_new (sb_config_get (config, "aliases"), why);
    if (!self->routes)
        return sb_error_set (err, SB_E_BAD_REQUEST, "rest-bridge: aliases: %s", why);
    if (s_load_keys (self, config, err))
        return -1;
    if (s_config_uint (config, "catalog_refresh_ms", 100, 3600 * 1000, 10000, &value, err))
        return -1;
    sb_error_t failed = { SB_OK, "" };
    self->catalog = sb_rest_catalog_new (sb_config_get (config, "schemas"), (int) value,
                                         s_render_openapi, self, &failed);
    if (!self->catalog)
        return sb_error_set (err, failed.code, "rest-bridge: schemas: %s", failed.text);
    return 0;
}

static void
s_bridge_destroy (sb_rest_bridge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_rest_bridge_t *self = *self_p;
    sb_rest_metrics_destroy (&self->metrics);
    sb_rest_auth_destroy (&self->auth);
    sb_rest_routes_destroy (&self->routes);
    sb_rest_catalog_destroy (&self->catalog);
    if (self->event_fd >= 0)
        close (self->event_fd);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

/*  --------------------------------------------------------------------
    The service.  */

static int
s_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    if (sodium_init () < 0)
        return sb_error_set (err, SB_E_INTERNAL, "rest-bridge: libsodium cannot start");
    sb_rest_bridge_t *self = calloc (1, sizeof *self);
    if (!self)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    self->actor = actor;
    self->event_fd = -1;
    randombytes_buf (&self->request_prefix, sizeof self->request_prefix);
    pthread_mutex_init (&self->lock, NULL);
    self->metrics = sb_rest_metrics_new ();
    self->auth = sb_rest_auth_new ();
    if (!self->metrics || !self->auth) {
        s_bridge_destroy (&self);
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    }
    if (s_configure (self, config, err) != 0) {
        s_bridge_destroy (&self);
        return -1;
    }
    self->event_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->event_fd < 0
    ||  sb_actor_watch_fd (actor, self->event_fd, s_on_event, self) != 0) {
        s_bridge_destroy (&self);
        return sb_error_set (err, SB_E_INTERNAL, "rest-bridge: cannot watch the hand-over eventfd");
    }
    if (sb_rest_catalog_start (self->catalog, actor) != 0) {
        s_bridge_destroy (&self);
        return sb_error_set (err, SB_E_INTERNAL, "rest-bridge: cannot start learning the catalog");
    }
    if (sb_rest_http_start (self, err) != 0) {
        s_bridge_destroy (&self);
        return -1;
    }
    const char *port_file = sb_config_get (config, "port_file");
    if (port_file) {
        FILE *file = fopen (port_file, "w");
        if (file) {
            fprintf (file, "%u\n", self->port);
            fclose (file);
        }
    }
    if (sb_rest_auth_size (self->auth) == 0)
        fprintf (stderr, "rest-bridge: WARNING: no API keys configured (auth/keys): "
                 "AUTHENTICATION IS OFF, anyone who reaches %s may call every service\n", self->listen);
    fprintf (stderr, "rest-bridge: listening on port %u (%s), %u threads, %zu keys, %zu aliases\n",
             self->port, self->listen, self->threads, sb_rest_auth_size (self->auth),
             sb_rest_routes_size (self->routes));
    *state = self;
    return 0;
}

/*  Drain: refuse new hand-overs, answer what is queued or waiting for the
    bus with 503 (the bus answers cannot come any more: the actor stops),
    give the answers drain_ms to leave, then stop the HTTP server.  */
static void
s_fini (void *state)
{
    sb_rest_bridge_t *self = state;
    sb_rest_req_t *req = s_take_queue (self, true);
    while (req) {
        sb_rest_req_t *next = req->next;
        sb_rest_metrics_error (self->metrics, SB_REST_ERR_SHUTDOWN);
        sb_rest_req_fail (req, SB_E_UNAVAILABLE, "the bridge is shutting down");
        s_resume (req);
        req = next;
    }
    while (self->active) {
        req = self->active;
        s_active_remove (self, req);
        sb_rest_metrics_error (self->metrics, SB_REST_ERR_SHUTDOWN);
        sb_rest_req_fail (req, SB_E_UNAVAILABLE, "the bridge is shutting down");
        s_resume (req);
    }
    sb_rest_http_stop (self);
    s_bridge_destroy (&self);
}

/*  rest-bridge.stats: what the bridge is doing, for `sb call`.  */
static int
s_stats (sb_request_t *request, const msgpack_object *body, void *state)
{
    sb_rest_bridge_t *self = state;
    msgpack_packer *packer = sb_reply_begin (request);
    if (!packer)
        return -1;
    msgpack_pack_map (packer, 4);
    msgpack_pack_str_with_body (packer, "port", 4);
    msgpack_pack_unsigned_int (packer, self->port);
    msgpack_pack_str_with_body (packer, "requests", 8);
    msgpack_pack_uint64 (packer, sb_rest_metrics_requests (self->metrics));
    msgpack_pack_str_with_body (packer, "in_flight", 9);
    msgpack_pack_int64 (packer, sb_rest_metrics_in_flight_now (self->metrics));
    msgpack_pack_str_with_body (packer, "waiting_for_bus", 15);
    msgpack_pack_uint64 (packer, self->active_size);
    return sb_reply_send (request);
}

static const sb_method_t s_methods [] = {
    { "stats", s_stats, SB_METHOD_IDEMPOTENT },
    { NULL, NULL, 0 }
};

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION,
    .name = "rest-bridge",
    .version = "0.1.0",
    .methods = s_methods,
    .init = s_init,
    .fini = s_fini,
};
