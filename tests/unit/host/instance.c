/*  runtime_actor.t — service instances (actors) against a real broker.

    Two services run in-process as instances: `calc` (answers in every way
    a handler can: reply, nil, error, failure, deferred with a timer,
    double answers, fd watching, events) and `front` (calls calc from
    inside its handler with sb_actor_call).  A client calls them through
    an in-process broker on a free loopback port.  Every wait is bounded.
*/
#include "broker/broker.h"
#include "host/instance.h"
#include "tap.h"

#include <czmq.h>
#include <unistd.h>

/*  --------------------------------------------------------------------
    Helpers.  */

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static int64_t
s_int (const msgpack_object *obj)
{
    if (!obj)
        return -1;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t) obj->via.u64;
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return obj->via.i64;
    return -1;
}

static bool
s_str_is (const msgpack_object *obj, const char *want)
{
    return obj && obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == strlen (want)
        && memcmp (obj->via.str.ptr, want, obj->via.str.size) == 0;
}

/*  Packs {key: value} into buf.  */
static void
s_pack_int (msgpack_sbuffer *buf, const char *key, int64_t value)
{
    msgpack_sbuffer_clear (buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, key, strlen (key));
    msgpack_pack_int64 (&pk, value);
}

/*  --------------------------------------------------------------------
    The calc service.  */

typedef struct {
    sb_actor_t *actor;
    int pipe [2];
    int fd_bytes;
    int twice_rc;
    int active;                     /* handlers running now */
    int max_active;
    void *sleepers [8];             /* timers not fired yet, freed by fini */
} calc_state_t;

static volatile int s_fini_ran;
static volatile int s_pipe_write = -1;     /* calc's watched pipe, for the test */

static int
s_echo (sb_request_t *req, const msgpack_object *body, void *state)
{
    calc_state_t *self = state;
    if (++self->active > self->max_active)
        self->max_active = self->active;
    msgpack_pack_object (sb_reply_begin (req), *body);
    int rc = sb_reply_send (req);
    self->active--;
    return rc;
}

static int
s_nothing (sb_request_t *req, const msgpack_object *body, void *state)
{
    return 0;
}

static int
s_fail (sb_request_t *req, const msgpack_object *body, void *state)
{
    return sb_request_error (req, SB_E_NOT_FOUND, "no such thing: %d", 42);
}

static int
s_crash (sb_request_t *req, const msgpack_object *body, void *state)
{
    return -1;
}

static int
s_twice (sb_request_t *req, const msgpack_object *body, void *state)
{
    calc_state_t *self = state;
    msgpack_pack_str_with_body (sb_reply_begin (req), "first", 5);
    sb_reply_send (req);
    self->twice_rc = sb_request_error (req, SB_E_INTERNAL, "second answer");
    return 0;
}

static int
s_stats (sb_request_t *req, const msgpack_object *body, void *state)
{
    calc_state_t *self = state;
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 3);
    msgpack_pack_str_with_body (pk, "twice_rc", 8);
    msgpack_pack_int (pk, self->twice_rc);
    msgpack_pack_str_with_body (pk, "fd_bytes", 8);
    msgpack_pack_int (pk, self->fd_bytes);
    msgpack_pack_str_with_body (pk, "max_active", 10);
    msgpack_pack_int (pk, self->max_active);
    return sb_reply_send (req);
}

static int
s_info (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_packer *pk = sb_reply_begin (req);
    const char *trace = sb_request_trace_id (req);
    msgpack_pack_map (pk, 5);
    msgpack_pack_str_with_body (pk, "trace", 5);
    msgpack_pack_str_with_body (pk, trace, strlen (trace));
    msgpack_pack_str_with_body (pk, "remaining", 9);
    msgpack_pack_int64 (pk, sb_request_remaining_ms (req));
    msgpack_pack_str_with_body (pk, "service", 7);
    msgpack_pack_str_with_body (pk, sb_request_service (req), strlen (sb_request_service (req)));
    msgpack_pack_str_with_body (pk, "method", 6);
    msgpack_pack_str_with_body (pk, sb_request_method (req), strlen (sb_request_method (req)));
    msgpack_pack_str_with_body (pk, "instance", 8);
    msgpack_pack_int (pk, sb_actor_instance (sb_request_actor (req)));
    return sb_reply_send (req);
}

typedef struct {
    sb_request_t *req;
    int ms;
    calc_state_t *state;
    int slot;
} sleeper_t;

static void
s_wake (void *arg)
{
    sleeper_t *sleeper = arg;
    sleeper->state->sleepers [sleeper->slot] = NULL;
    msgpack_packer *pk = sb_reply_begin (sleeper->req);
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "slept", 5);
    msgpack_pack_int (pk, sleeper->ms);
    sb_reply_send (sleeper->req);
    free (sleeper);
}

static int
s_sleep (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t ms = s_int (s_get (body, "ms"));
    if (ms < 0 || ms > 60000)
        return sb_request_error (req, SB_E_BAD_REQUEST, "ms must be 0..60000");
    calc_state_t *self = state;
    int slot = 0;
    while (slot < 8 && self->sleepers [slot])
        slot++;
    if (slot == 8)
        return sb_request_error (req, SB_E_OVERLOADED, "too many sleepers");
    sleeper_t *sleeper = malloc (sizeof *sleeper);
    sleeper->req = sb_request_defer (req);
    sleeper->ms = (int) ms;
    sleeper->state = self;
    sleeper->slot = slot;
    self->sleepers [slot] = sleeper;
    return sb_actor_after (sb_request_actor (req), (int) ms, s_wake, sleeper);
}

static void
s_on_fd (int fd, void *arg)
{
    calc_state_t *self = arg;
    char buf [64];
    ssize_t n = read (fd, buf, sizeof buf);
    if (n > 0)
        self->fd_bytes += (int) n;
}

static void
s_on_ping (const char *topic, const msgpack_object *body, void *arg)
{
    calc_state_t *self = arg;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *body);
    sb_actor_publish (self->actor, "pong.calc", buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
}

static int
s_calc_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    calc_state_t *self = calloc (1, sizeof *self);
    self->actor = actor;
    if (pipe (self->pipe)) {
        free (self);
        return sb_error_set (err, SB_E_INTERNAL, "pipe failed");
    }
    sb_actor_watch_fd (actor, self->pipe [0], s_on_fd, self);
    s_pipe_write = self->pipe [1];
    sb_actor_subscribe (actor, "ping.", NULL, s_on_ping, self);
    *state = self;
    return 0;
}

static void
s_calc_fini (void *state)
{
    calc_state_t *self = state;
    close (self->pipe [0]);
    close (self->pipe [1]);
    for (int i = 0; i < 8; i++)
        free (self->sleepers [i]);
    free (self);
    s_fini_ran = 1;
}

/*  calc.block {"ms": N} -> {"slept": N, "actor": false}: a blocking
    handler (SB_METHOD_BLOCKING) that really blocks, on a worker thread;
    "actor" says whether it was given the actor (it must not be).  */
static int
s_block (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t ms = 0;
    if (sb_request_unpack (req, "{s:I}", "ms", &ms))
        return -1;
    if (ms < 0 || ms > 10000)
        return sb_request_error (req, SB_E_BAD_REQUEST, "ms must be 0..10000");
    usleep ((useconds_t) ms * 1000);
    return sb_reply_pack (req, "{s:I, s:b}", "slept", ms, "actor", sb_request_actor (req) != NULL);
}

typedef struct {
    int calls;
    sb_code_t code;
    int64_t slept;
    bool actor;
} blocked_t;

static void
s_blocked (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    blocked_t *b = arg;
    b->calls++;
    b->code = err ? err->code : SB_OK;
    if (!err && sb_unpack (body, NULL, "{s:I, s:b}", "slept", &b->slept, "actor", &b->actor))
        b->code = SB_E_INTERNAL;
}

static const sb_method_t s_calc_methods [] = {
    { "block", s_block, SB_METHOD_BLOCKING },
    { "echo", s_echo, SB_METHOD_IDEMPOTENT },
    { "nothing", s_nothing, 0 },
    { "fail", s_fail, 0 },
    { "crash", s_crash, 0 },
    { "twice", s_twice, 0 },
    { "stats", s_stats, 0 },
    { "info", s_info, 0 },
    { "sleep", s_sleep, 0 },
    { NULL, NULL, 0 }
};

static const sb_service_t s_calc = {
    .abi_version = SB_ABI_VERSION, .name = "calc", .version = "1.0.0",
    .methods = s_calc_methods, .init = s_calc_init, .fini = s_calc_fini
};

/*  --------------------------------------------------------------------
    The front service: relays to calc.echo from inside its handler.  */

static void
s_relayed (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    sb_request_t *req = arg;
    if (err) {
        sb_request_error (req, err->code, "relay: %s", err->text);
        return;
    }
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "relayed", 7);
    msgpack_pack_object (pk, *body);
    sb_reply_send (req);
}

static int
s_relay (sb_request_t *req, const msgpack_object *body, void *state)
{
    const msgpack_object *target = s_get (body, "to");
    char service [65] = "calc";
    if (target && target->type == MSGPACK_OBJECT_STR && target->via.str.size < sizeof service) {
        memcpy (service, target->via.str.ptr, target->via.str.size);
        service [target->via.str.size] = 0;
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *body);
    sb_error_t err;
    int rc = sb_actor_call (sb_request_actor (req), service, "echo", buf.data, buf.size, 3000,
                            s_relayed, sb_request_defer (req), &err);
    msgpack_sbuffer_destroy (&buf);
    if (rc)
        return sb_request_error (req, err.code, "%s", err.text);
    return 0;
}

/*  front.trace {"how": H} -> {"mine": T, "theirs": U}: T is the trace id
    front saw, U the one calc.info saw when called, with H "inherit",
    from the handler (no trace id given); "timer", from a timer (none
    given); "timer_traced", from a timer with T given.  */
typedef struct {
    sb_request_t *req;
    bool traced;
} later_t;

static void
s_traced_reply (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    sb_request_t *req = arg;
    if (err) {
        sb_request_error (req, err->code, "trace: %s", err->text);
        return;
    }
    const char *mine = sb_request_trace_id (req);
    const msgpack_object *theirs = s_get (body, "trace");
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 2);
    msgpack_pack_str_with_body (pk, "mine", 4);
    msgpack_pack_str_with_body (pk, mine, strlen (mine));
    msgpack_pack_str_with_body (pk, "theirs", 6);
    if (theirs)
        msgpack_pack_object (pk, *theirs);
    else
        msgpack_pack_nil (pk);
    sb_reply_send (req);
}

static void
s_trace_later (void *arg)
{
    later_t *later = arg;
    sb_request_t *req = later->req;
    sb_error_t err;
    sb_call_options_t options = { .timeout_ms = 2000,
                                  .trace = later->traced ? sb_request_trace_id (req) : NULL };
    int rc = sb_actor_call_with (sb_request_actor (req), "calc", "info", &options,
                                 s_traced_reply, req, &err, NULL);
    if (rc)
        sb_request_error (req, err.code, "%s", err.text);
    free (later);
}

static int
s_trace (sb_request_t *req, const msgpack_object *body, void *state)
{
    if (s_str_is (s_get (body, "how"), "inherit")) {
        sb_error_t err;
        if (sb_actor_call (sb_request_actor (req), "calc", "info", NULL, 0, 2000,
                           s_traced_reply, sb_request_defer (req), &err))
            return sb_request_error (req, err.code, "%s", err.text);
        return 0;
    }
    later_t *later = malloc (sizeof *later);
    later->req = sb_request_defer (req);
    later->traced = s_str_is (s_get (body, "how"), "timer_traced");
    return sb_actor_after (sb_request_actor (req), 1, s_trace_later, later);
}

/*  front.chain {"x": N, "to": S?, "sleep": MS?} -> {"x": N, "hops": 2}:
    calls S.echo (default calc) with sb_request_call, then from the
    continuation calls it again with the reply, then answers; with
    "sleep" it first calls calc.sleep, so the request's own deadline
    cuts the inner call short.  Everything by format, no heap of ours. */
static int
s_chain_second (sb_request_t *req, const msgpack_object *reply, const sb_error_t *err, void *arg)
{
    if (err)
        return sb_request_error (req, err->code, "second hop: %s", err->text);
    int64_t x = 0;
    if (sb_unpack (reply, NULL, "{s:I}", "x", &x))
        return -1;
    return sb_reply_pack (req, "{s:I, s:i}", "x", x, "hops", 2);
}

static int
s_chain_first (sb_request_t *req, const msgpack_object *reply, const sb_error_t *err, void *arg)
{
    if (err)
        return sb_request_error (req, err->code, "first hop: %s", err->text);
    int64_t x = 0;
    if (sb_unpack (reply, NULL, "{s:I}", "x", &x))
        return -1;
    return sb_request_call (req, "calc", "echo", NULL, s_chain_second, NULL,
                            "{s:I}", "x", x);
}

static int
s_chain (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t x = 0, sleep_ms = -1;
    char to [65] = "calc";
    if (sb_request_unpack (req, "{s:I, s?:s, s?:I}", "x", &x, "to", to, sizeof to,
                           "sleep", &sleep_ms))
        return -1;
    if (sleep_ms >= 0)
        return sb_request_call (req, "calc", "sleep", NULL, s_chain_first, NULL,
                                "{s:I}", "ms", sleep_ms);
    return sb_request_call (req, to, "echo", NULL, s_chain_first, NULL, "{s:I}", "x", x);
}

static const sb_method_t s_front_methods [] = {
    { "relay", s_relay, 0 },
    { "chain", s_chain, 0 },
    { "trace", s_trace, 0 },
    { NULL, NULL, 0 }
};

static const sb_service_t s_front = {
    .abi_version = SB_ABI_VERSION, .name = "front", .version = "0.1",
    .methods = s_front_methods
};

/*  A service whose init fails.  */
static int
s_bad_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    return sb_error_set (err, SB_E_BAD_REQUEST, "no database configured");
}

static const sb_service_t s_broken = {
    .abi_version = SB_ABI_VERSION, .name = "broken", .version = "0",
    .methods = s_front_methods, .init = s_bad_init
};

/*  --------------------------------------------------------------------
    Test driver.  */

/*  Calls until it works or `ms` pass (the service may not be announced
    yet).  Returns the reply or NULL.  */
static sb_reply_t *
s_call_until (sb_client_t *client, const char *service, const char *method,
              const void *body, size_t size, int ms, sb_error_t *err)
{
    int64_t end = zclock_mono () + ms;
    while (zclock_mono () < end) {
        sb_reply_t *reply = NULL;
        if (sb_client_call (client, service, method, body, size, 1000, &reply, err) == 0)
            return reply;
        if (err->code != SB_E_NOT_FOUND && err->code != SB_E_TIMEOUT
        &&  err->code != SB_E_UNAVAILABLE)
            return NULL;
        zclock_sleep (50);
    }
    return NULL;
}

typedef struct {
    int answered;
    int failed;
    int64_t last;
} tally_t;

static void
s_count (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    tally_t *tally = arg;
    tally->answered++;
    if (err)
        tally->failed++;
    else
        tally->last = s_int (body);
}

static int s_pongs;

static void
s_on_pong (const char *topic, const msgpack_object *body, void *arg)
{
    if (strcmp (topic, "pong.calc") == 0 && s_int (s_get (body, "n")) == 7)
        s_pongs++;
}

int
main (void)
{
    zsys_handler_set (NULL);
    sb_error_t err = { 0 };
    sb_broker_config_t config = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 250 };
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker)
        tap_skip_all ("cannot start a broker");
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", sb_broker_endpoint (broker));
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);

    /*  init failure.  */
    sb_instance_t *broken = sb_instance_start (&s_broken, 0, NULL, endpoint, 0, &err);
    tap_ok (broken == NULL, "init failure: sb_instance_start returns NULL");
    tap_is_str (err.text, "no database configured", "init failure: the plugin's text is passed on");
    tap_is_int (err.code, SB_E_BAD_REQUEST, "init failure: the plugin's code is passed on");
    sb_service_t bad_descriptor = s_calc;
    bad_descriptor.abi_version = 99;
    tap_ok (sb_instance_start (&bad_descriptor, 0, NULL, endpoint, 0, &err) == NULL,
            "a descriptor with another ABI version is refused");

    sb_instance_t *calc = sb_instance_start (&s_calc, 3, NULL, endpoint, 10, &err);
    tap_ok (calc != NULL, "calc instance starts");
    sb_instance_t *front = sb_instance_start (&s_front, 0, NULL, endpoint, 10, &err);
    tap_ok (front != NULL, "front instance starts");
    if (!calc || !front)
        return tap_done ();

    sb_client_options_t options = { .endpoints = endpoint, .timeout_ms = 3000 };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (client != NULL, "client connects");

    /*  Plain reply, once the instance has announced itself.  */
    s_pack_int (&buf, "x", 5);
    sb_reply_t *reply = s_call_until (client, "calc", "echo", buf.data, buf.size, 10000, &err);
    tap_ok (reply && s_int (s_get (&reply->body, "x")) == 5, "calc.echo answers its body");
    sb_reply_destroy (&reply);

    /*  Accessors.  */
    int rc = sb_client_call (client, "calc", "info", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == 0, "calc.info answers");
    if (rc == 0) {
        const msgpack_object *trace = s_get (&reply->body, "trace");
        tap_ok (trace && trace->type == MSGPACK_OBJECT_STR && trace->via.str.size == 32,
                "the handler sees the caller's 32-hex-digit trace id");
        int64_t remaining = s_int (s_get (&reply->body, "remaining"));
        tap_ok (remaining > 0 && remaining <= 2000, "remaining time within the caller's timeout (%lld)",
                (long long) remaining);
        tap_ok (s_str_is (s_get (&reply->body, "service"), "calc")
             && s_str_is (s_get (&reply->body, "method"), "info"), "service and method names");
        tap_is_int (s_int (s_get (&reply->body, "instance")), 3, "instance number");
        sb_reply_destroy (&reply);
    }
    else
        tap_diag ("%s", err.text);

    /*  Every way of answering.  */
    rc = sb_client_call (client, "calc", "nothing", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == 0 && reply->body.type == MSGPACK_OBJECT_NIL, "a handler that says nothing replies nil");
    sb_reply_destroy (&reply);
    rc = sb_client_call (client, "calc", "fail", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_NOT_FOUND, "handler error reaches the caller with its code");
    tap_is_str (err.text, "no such thing: 42", "and its text");
    rc = sb_client_call (client, "calc", "crash", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_INTERNAL, "a handler returning -1 gives internal (%s)", err.text);
    rc = sb_client_call (client, "calc", "nosuch", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST, "unknown method is bad_request (%s)", err.text);
    rc = sb_client_call (client, "calc", "twice", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == 0 && s_str_is (&reply->body, "first"), "the first of two answers is delivered");
    sb_reply_destroy (&reply);

    /*  Deferred reply through a timer; the actor keeps serving meanwhile. */
    tally_t slow = { 0 };
    s_pack_int (&buf, "ms", 1500);
    int64_t start = zclock_mono ();
    sb_client_call_async (client, "calc", "sleep", buf.data, buf.size, 5000, s_count, &slow, &err);
    rc = sb_client_call (client, "calc", "echo", NULL, 0, 2000, &reply, &err);
    int64_t took = zclock_mono () - start;
    tap_ok (rc == 0 && took < 1000 && slow.answered == 0,
            "a sleeping (deferred) request does not block the actor (%lld ms)", (long long) took);
    sb_reply_destroy (&reply);
    while (slow.answered == 0 && zclock_mono () - start < 6000)
        sb_client_dispatch (client, 100);
    took = zclock_mono () - start;
    tap_ok (slow.answered == 1 && slow.failed == 0 && took >= 1450,
            "the deferred reply comes after the timer (%lld ms)", (long long) took);

    /*  A deferred request whose deadline passes.  */
    s_pack_int (&buf, "ms", 3000);
    rc = sb_client_call (client, "calc", "sleep", buf.data, buf.size, 500, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_TIMEOUT, "a deferred request past its deadline times out");

    /*  Many in flight, handlers never concurrent.  */
    tally_t many = { 0 };
    for (int i = 0; i < 300; i++) {
        msgpack_sbuffer_clear (&buf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_int (&pk, i);
        sb_client_call_async (client, "calc", "echo", buf.data, buf.size, 10000, s_count, &many, &err);
    }
    start = zclock_mono ();
    while (many.answered < 300 && zclock_mono () - start < 15000)
        sb_client_dispatch (client, 100);
    tap_ok (many.answered == 300 && many.failed == 0, "300 async calls answered (%d, %d failed)",
            many.answered, many.failed);

    /*  Watched fd: bytes written to it reach the actor's callback.  */
    tap_ok (write (s_pipe_write, "abc", 3) == 3, "write to the watched pipe");
    start = zclock_mono ();
    int64_t fd_bytes = 0;
    while (fd_bytes != 3 && zclock_mono () - start < 5000) {
        if (sb_client_call (client, "calc", "stats", NULL, 0, 2000, &reply, &err) == 0) {
            fd_bytes = s_int (s_get (&reply->body, "fd_bytes"));
            sb_reply_destroy (&reply);
        }
        if (fd_bytes != 3)
            zclock_sleep (20);
    }
    tap_is_int (fd_bytes, 3, "the actor read the watched fd on its thread");

    rc = sb_client_call (client, "calc", "stats", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == 0 && s_int (s_get (&reply->body, "twice_rc")) == -1,
            "a second answer to one request returns -1");
    tap_ok (rc == 0 && s_int (s_get (&reply->body, "max_active")) == 1,
            "handlers of one instance never run concurrently");
    sb_reply_destroy (&reply);

    /*  sb_actor_call from inside a handler.  */
    s_pack_int (&buf, "x", 9);
    rc = sb_client_call (client, "front", "relay", buf.data, buf.size, 3000, &reply, &err);
    tap_ok (rc == 0 && s_int (s_get (s_get (&reply->body, "relayed"), "x")) == 9,
            "front.relay calls calc.echo from its handler and answers with it");
    sb_reply_destroy (&reply);
    msgpack_sbuffer_clear (&buf);
    {
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1);
        msgpack_pack_str_with_body (&pk, "to", 2);
        msgpack_pack_str_with_body (&pk, "nobody", 6);
    }
    rc = sb_client_call (client, "front", "relay", buf.data, buf.size, 3000, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_NOT_FOUND, "an error of the inner call reaches the outer caller (%s)",
            err.text);

    /*  A blocking handler runs off the actor: calc keeps answering.  */
    {
        blocked_t slow = { 0, SB_OK, 0, true };
        int64_t t0 = zclock_mono ();
        rc = sb_call_async (client, "calc", "block", NULL, s_blocked, &slow, &err, "{s:I}", "ms", (int64_t) 800);
        tap_ok (rc == 0, "calc.block (800 ms, blocking) sent");
        sb_reply_t *quick = NULL;
        rc = sb_call (client, "calc", "echo", NULL, &quick, &err, "{s:i}", "x", 1);
        int64_t quick_ms = zclock_mono () - t0;
        tap_ok (rc == 0 && quick_ms < 600,
                "calc.echo answers in %lld ms while calc.block blocks its worker", (long long) quick_ms);
        if (rc == 0)
            sb_reply_destroy (&quick);
        while (slow.calls == 0 && zclock_mono () - t0 < 5000)
            sb_client_dispatch (client, 100);
        tap_ok (slow.calls == 1 && slow.code == SB_OK && slow.slept == 800 && !slow.actor,
                "calc.block answers from its worker thread, where the actor is not reachable");
    }

    /*  sb_request_call: two hops by continuation, formats both ways.  */
    rc = sb_call (client, "front", "chain", NULL, &reply, &err, "{s:I}", "x", (int64_t) 41);
    int64_t got_x = 0, hops = 0;
    tap_ok (rc == 0 && sb_unpack (&reply->body, &err, "{s:I, s:I}", "x", &got_x, "hops", &hops) == 0
            && got_x == 41 && hops == 2,
            "front.chain calls calc.echo twice by continuation and answers (%s)", rc ? err.text : "ok");
    if (rc == 0)
        sb_reply_destroy (&reply);
    rc = sb_call (client, "front", "chain", NULL, &reply, &err, "{s:I, s:s}", "x", (int64_t) 1,
                  "to", "nobody");
    tap_ok (rc == -1 && err.code == SB_E_NOT_FOUND && strstr (err.text, "first hop"),
            "the continuation gets the inner call's error and answers with it (%s)", err.text);
    rc = sb_call (client, "front", "chain", NULL, &reply, &err, "{s:s}", "x", "one");
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && strcmp (err.text, "$.x: expected integer, got string") == 0,
            "sb_request_unpack answered bad_request with the path (%s)", err.text);
    int64_t chain_started = zclock_mono ();
    sb_call_options_t short_call = { .timeout_ms = 500 };
    rc = sb_call (client, "front", "chain", &short_call, &reply, &err, "{s:I, s:I}", "x", (int64_t) 1,
                  "sleep", (int64_t) 3000);
    int64_t chain_took = zclock_mono () - chain_started;
    tap_ok (rc == -1 && err.code == SB_E_TIMEOUT && chain_took < 2500,
            "the inner call inherits the request's 500 ms: timeout after %lld ms (%s)",
            (long long) chain_took, err.text);

    /*  Trace ids: a given one reaches the handler; the calls it makes
        inherit it, those made from a timer do not unless given it.  */
    static const char hex [] = "0af7651916cd43dd8448eb211c80319c";
    sb_call_options_t traced = { .timeout_ms = 2000, .trace = hex };
    rc = sb_call (client, "calc", "info", &traced, &reply, &err, NULL);
    tap_ok (rc == 0 && s_str_is (s_get (&reply->body, "trace"), hex),
            "sb_call with a trace: the handler sees the given trace id");
    sb_reply_destroy (&reply);
    sb_call_options_t bad_trace = { .timeout_ms = 2000, .trace = "0af7" };
    rc = sb_call (client, "calc", "info", &bad_trace, &reply, &err, NULL);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && reply == NULL,
            "a malformed trace id is refused (%s)", err.text);
    const char *hows [] = { "inherit", "timer", "timer_traced" };
    for (int i = 0; i < 3; i++) {
        msgpack_sbuffer_clear (&buf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1);
        msgpack_pack_str_with_body (&pk, "how", 3);
        msgpack_pack_str_with_body (&pk, hows [i], strlen (hows [i]));
        sb_call_options_t options = { .timeout_ms = 3000, .trace = hex,
                                      .body = buf.data, .body_size = buf.size };
        rc = sb_call (client, "front", "trace", &options, &reply, &err, NULL);
        const msgpack_object *theirs = rc == 0 ? s_get (&reply->body, "theirs") : NULL;
        tap_ok (rc == 0 && s_str_is (s_get (&reply->body, "mine"), hex)
             && theirs && theirs->type == MSGPACK_OBJECT_STR && theirs->via.str.size == 32
             && s_str_is (theirs, hex) == (i != 1),
                "front.trace %s: calc.info saw %s trace id", hows [i],
                i != 1 ? "the caller's" : "another");
        sb_reply_destroy (&reply);
    }

    /*  Events: calc subscribed to ping. in init and answers pong.calc.  */
    sb_client_subscribe (client, "pong.", NULL, s_on_pong, NULL);
    s_pack_int (&buf, "n", 7);
    start = zclock_mono ();
    while (s_pongs == 0 && zclock_mono () - start < 10000) {
        sb_client_publish (client, "ping.now", buf.data, buf.size);
        sb_client_dispatch (client, 100);
    }
    tap_ok (s_pongs > 0, "an actor's subscription gets events and its publish reaches a client");

    /*  Broker restart: the instance and the client find the new broker,
        the instance announces itself again and serves.  */
    sb_broker_destroy (&broker);
    config.bind = endpoint;
    start = zclock_mono ();
    while (!broker && zclock_mono () - start < 5000) {
        broker = sb_broker_new (&config, &err);
        if (!broker)
            zclock_sleep (100);
    }
    tap_ok (broker != NULL, "a new broker binds the same endpoint");
    s_pack_int (&buf, "x", 11);
    reply = broker ? s_call_until (client, "calc", "echo", buf.data, buf.size, 15000, &err) : NULL;
    tap_ok (reply && s_int (s_get (&reply->body, "x")) == 11,
            "after the restart calc is announced again and answers");
    sb_reply_destroy (&reply);

    sb_client_destroy (&client);
    sb_instance_stop (&front);
    sb_instance_stop (&calc);
    tap_ok (s_fini_ran, "fini ran at stop");
    sb_broker_destroy (&broker);
    msgpack_sbuffer_destroy (&buf);
    return tap_done ();
}
