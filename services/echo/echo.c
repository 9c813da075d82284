/*  echo.c — the example service, and the one the tests lean on.

    echo.echo     any body, returned as is
    echo.reverse  {"text": S} -> {"text": S reversed by UTF-8 code point}
    echo.stats    {"values": [numbers]} -> {"count", "sum", "min", "max", "mean"}
    echo.sleep    {"ms": N} -> {"slept": N} after N ms; the request is deferred
                  and a timer answers it, so the instance keeps serving meanwhile
    echo.fail     {"code": "not_found", "message": S} -> that error
    echo.whoami   -> {"instance": I, "pid": P}: which instance answered
    echo.trace    {"hops": N} -> {"trace": T, "next": ...}: T is the trace id
                  this instance saw; with N > 0 it first calls echo.trace
                  {"hops": N-1} over the bus (the call inherits T) and puts
                  that reply in "next", so a test sees the id at every hop

    Config: `sleep_max_ms` (default and ceiling 60000).  Contract:
    schemas/echo.json, compiled in as `s_schema` (echo_schema.h, made by
    tools/embed-schema.sh) and carried by the descriptor.
*/
#include <switchboard.h>

#include "echo_schema.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pending pending_t;
typedef struct echo echo_t;
struct pending {                    /* a deferred sleep */
    sb_request_t *req;
    int64_t ms;
    echo_t *owner;
    pending_t *next;
};

struct echo {
    int64_t sleep_max_ms;
    pending_t *pending;             /* freed by fini if the instance stops first */
};

/*  The value of `key` in a map body, or NULL.  */
static const msgpack_object *
s_field (const msgpack_object *body, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; body->type == MSGPACK_OBJECT_MAP && i < body->via.map.size; i++) {
        const msgpack_object *k = &body->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len && !memcmp (k->via.str.ptr, key, len))
            return &body->via.map.ptr [i].val;
    }
    return NULL;
}

static void
s_pack_key (msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
}

static int
s_echo (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_pack_object (sb_reply_begin (req), *body);
    return sb_reply_send (req);
}

static int
s_reverse (sb_request_t *req, const msgpack_object *body, void *state)
{
    const msgpack_object *text = s_field (body, "text");
    if (!text || text->type != MSGPACK_OBJECT_STR)
        return sb_request_error (req, SB_E_BAD_REQUEST, "expected {\"text\": string}");
    const unsigned char *in = (const unsigned char *) text->via.str.ptr;
    uint32_t size = text->via.str.size, at = 0;
    char *out = malloc (size + 1);
    if (!out)
        return sb_request_error (req, SB_E_INTERNAL, "out of memory");
    while (at < size) {             /* copy each code point to the mirrored position */
        uint32_t len = in [at] < 0x80 ? 1 : (in [at] >> 5) == 0x6 ? 2 : (in [at] >> 4) == 0xe ? 3
                     : (in [at] >> 3) == 0x1e ? 4 : 0;
        for (uint32_t i = 1; len && i < len; i++)
            if (at + i >= size || (in [at + i] & 0xc0) != 0x80)
                len = 0;
        if (!len) {
            free (out);
            return sb_request_error (req, SB_E_BAD_REQUEST, "text is not valid UTF-8 (byte %u)", at);
        }
        memcpy (out + size - at - len, in + at, len);
        at += len;
    }
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 1);
    s_pack_key (pk, "text");
    msgpack_pack_str_with_body (pk, out, size);
    free (out);
    return sb_reply_send (req);
}

static int
s_stats (sb_request_t *req, const msgpack_object *body, void *state)
{
    const msgpack_object *values = s_field (body, "values");
    if (!values || values->type != MSGPACK_OBJECT_ARRAY)
        return sb_request_error (req, SB_E_BAD_REQUEST, "expected {\"values\": [numbers]}");
    uint32_t count = values->via.array.size;
    double sum = 0, min = 0, max = 0, x;
    for (uint32_t i = 0; i < count; i++) {
        const msgpack_object *v = &values->via.array.ptr [i];
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            x = (double) v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            x = (double) v->via.i64;
        else if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
            x = v->via.f64;
        else
            return sb_request_error (req, SB_E_BAD_REQUEST, "values[%u] is not a number", i);
        sum += x;
        min = i == 0 || x < min ? x : min;
        max = i == 0 || x > max ? x : max;
    }
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 5);
    s_pack_key (pk, "count"); msgpack_pack_uint32 (pk, count);
    s_pack_key (pk, "sum"); msgpack_pack_double (pk, sum);
    s_pack_key (pk, "min"); count ? msgpack_pack_double (pk, min) : msgpack_pack_nil (pk);
    s_pack_key (pk, "max"); count ? msgpack_pack_double (pk, max) : msgpack_pack_nil (pk);
    s_pack_key (pk, "mean"); count ? msgpack_pack_double (pk, sum / count) : msgpack_pack_nil (pk);
    return sb_reply_send (req);
}

/*  Unlinks and frees a pending sleep once it is answered.  */
static void
s_forget (pending_t *p)
{
    for (pending_t **link = &p->owner->pending; *link; link = &(*link)->next)
        if (*link == p) {
            *link = p->next;
            break;
        }
    free (p);
}

/*  The timer fired: answers the deferred request, on the instance's thread. */
static void
s_wake (void *arg)
{
    pending_t *p = (pending_t *) arg;
    msgpack_packer *pk = sb_reply_begin (p->req);
    msgpack_pack_map (pk, 1);
    s_pack_key (pk, "slept");
    msgpack_pack_int64 (pk, p->ms);
    sb_reply_send (p->req);
    s_forget (p);
}

static int
s_sleep (sb_request_t *req, const msgpack_object *body, void *state)
{
    echo_t *self = (echo_t *) state;
    const msgpack_object *ms = s_field (body, "ms");
    if (!ms || ms->type != MSGPACK_OBJECT_POSITIVE_INTEGER || ms->via.u64 > (uint64_t) self->sleep_max_ms)
        return sb_request_error (req, SB_E_BAD_REQUEST, "expected {\"ms\": 0..%lld}",
                                 (long long) self->sleep_max_ms);
    pending_t *p = calloc (1, sizeof *p);
    if (!p)
        return sb_request_error (req, SB_E_INTERNAL, "out of memory");
    *p = (pending_t) { sb_request_defer (req), (int64_t) ms->via.u64, self, self->pending };
    self->pending = p;
    if (sb_actor_after (sb_request_actor (p->req), (int) p->ms, s_wake, p) == -1) {
        sb_request_error (p->req, SB_E_INTERNAL, "cannot start a timer");
        s_forget (p);
    }
    return 0;
}

static int
s_whoami (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 2);
    s_pack_key (pk, "instance");
    msgpack_pack_int (pk, sb_actor_instance (sb_request_actor (req)));
    s_pack_key (pk, "pid");
    msgpack_pack_int64 (pk, (int64_t) getpid ());
    return sb_reply_send (req);
}

/*  The reply of the next hop: answers the deferred echo.trace request
    (the argument), which lives until it is answered.  */
static void
s_trace_next (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    sb_request_t *req = (sb_request_t *) arg;
    if (err) {
        sb_request_error (req, err->code, "next hop: %s", err->text);
        return;
    }
    const char *trace = sb_request_trace_id (req);
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 2);
    s_pack_key (pk, "trace");
    msgpack_pack_str_with_body (pk, trace, strlen (trace));
    s_pack_key (pk, "next");
    msgpack_pack_object (pk, *body);
    sb_reply_send (req);
}

static int
s_trace (sb_request_t *req, const msgpack_object *body, void *state)
{
    const msgpack_object *hops = s_field (body, "hops");
    uint64_t count = hops && hops->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? hops->via.u64 : 0;
    if ((hops && hops->type != MSGPACK_OBJECT_POSITIVE_INTEGER) || count > 4)
        return sb_request_error (req, SB_E_BAD_REQUEST, "expected {\"hops\": 0..4}");
    const char *trace = sb_request_trace_id (req);
    if (count == 0) {
        msgpack_packer *pk = sb_reply_begin (req);
        msgpack_pack_map (pk, 1);
        s_pack_key (pk, "trace");
        msgpack_pack_str_with_body (pk, trace, strlen (trace));
        return sb_reply_send (req);
    }
    /*  No trace id passed: the call inherits this request's.  */
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    s_pack_key (&pk, "hops");
    msgpack_pack_uint64 (&pk, count - 1);
    int64_t left = sb_request_remaining_ms (req);
    sb_error_t err;
    sb_request_t *deferred = sb_request_defer (req);
    int rc = sb_actor_call (sb_request_actor (req), "echo", "trace", buffer.data, buffer.size,
                            left < 1 ? 1 : left > 60000 ? 60000 : (int) left,
                            s_trace_next, deferred, &err);
    msgpack_sbuffer_destroy (&buffer);
    if (rc != 0)
        return sb_request_error (deferred, err.code, "next hop: %s", err.text);
    return 0;
}

static int
s_fail (sb_request_t *req, const msgpack_object *body, void *state)
{
    const msgpack_object *code = s_field (body, "code"), *message = s_field (body, "message");
    char name [32] = "";
    if (code && code->type == MSGPACK_OBJECT_STR && code->via.str.size < sizeof name)
        memcpy (name, code->via.str.ptr, code->via.str.size);
    int value = sb_code_from_name (name);
    if (value <= 0)
        return sb_request_error (req, SB_E_BAD_REQUEST, "expected {\"code\": \"not_found\", ...}");
    if (message && message->type == MSGPACK_OBJECT_STR)
        return sb_request_error (req, (sb_code_t) value, "%.*s",
                                 message->via.str.size > 255 ? 255 : (int) message->via.str.size,
                                 message->via.str.ptr);
    return sb_request_error (req, (sb_code_t) value, "failed on request");
}

static int
s_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    const char *value = sb_config_get_default (config, "sleep_max_ms", "60000");
    char *end;
    long long max = strtoll (value, &end, 10);
    if (*end || end == value || max < 0 || max > 60000)
        return sb_error_set (err, SB_E_BAD_REQUEST, "sleep_max_ms must be 0..60000, not '%.32s'", value);
    echo_t *self = calloc (1, sizeof *self);
    if (!self)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    self->sleep_max_ms = max;
    *state = self;
    return 0;
}

static void
s_fini (void *state)
{
    echo_t *self = (echo_t *) state;
    while (self->pending) {
        pending_t *next = self->pending->next;
        free (self->pending);
        self->pending = next;
    }
    free (self);
}

static const sb_method_t s_methods [] = {
    { "echo", s_echo, SB_METHOD_IDEMPOTENT },
    { "reverse", s_reverse, SB_METHOD_IDEMPOTENT },
    { "stats", s_stats, SB_METHOD_IDEMPOTENT },
    { "sleep", s_sleep, 0 },
    { "fail", s_fail, 0 },
    { "whoami", s_whoami, SB_METHOD_IDEMPOTENT },
    { "trace", s_trace, SB_METHOD_IDEMPOTENT },
    { NULL, NULL, 0 }
};

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION, .name = "echo", .version = "1.0.0",
    .methods = s_methods, .init = s_init, .fini = s_fini, .schema = s_schema
};
