/*  runtime_client.t — the client API: calls, timeouts, events.

    First against a fake broker (a ROUTER socket driven by the test with
    the wire codec), to see exactly what the client sends and how it
    takes answers a real broker would never send; then against the real
    broker with an in-process `echo2` instance.  Every wait is bounded.
*/
#include "broker/broker.h"
#include "host/instance.h"
#include "fake_broker.h"

#include <czmq.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/*  --------------------------------------------------------------------
    A service to call.  */

static int
s_echo (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_pack_object (sb_reply_begin (req), *body);
    return sb_reply_send (req);
}

/*  Never answers: the request stays in flight until the actor stops.  */
static int
s_hold (sb_request_t *req, const msgpack_object *body, void *state)
{
    sb_request_defer (req);
    return 0;
}

static const sb_method_t s_methods [] = {
    { "echo", s_echo, SB_METHOD_IDEMPOTENT },
    { "hold", s_hold, 0 },
    { NULL, NULL, 0 }
};

static const sb_service_t s_echo2 = {
    .abi_version = SB_ABI_VERSION, .name = "echo2", .version = "1", .methods = s_methods
};

/*  --------------------------------------------------------------------
    Callbacks.  */

typedef struct {
    int calls;
    sb_error_t err;
    bool failed;
    int64_t value;
} answer_t;

static void
s_answer (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    answer_t *a = arg;
    a->calls++;
    a->failed = err != NULL;
    if (err)
        a->err = *err;
    else
        a->value = fb_int (body);
}

/*  An async callback that makes a blocking call of its own.  */
typedef struct {
    sb_client_t *client;
    int calls;
    sb_code_t inner_code;
} nested_t;

static void
s_nested_call (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    nested_t *self = arg;
    self->calls++;
    sb_reply_t *reply = NULL;
    sb_error_t inner = { 0 };
    if (sb_client_call (self->client, "echo2", "echo", NULL, 0, 50, &reply, &inner) == -1)
        self->inner_code = inner.code;
    sb_reply_destroy (&reply);
}

/*  A reply callback that makes a call of its own, with no trace id given. */
typedef struct {
    sb_client_t *client;
    answer_t inner;
    int calls;
} chain_t;

static void
s_chain (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    chain_t *chain = arg;
    chain->calls++;
    sb_client_call_async (chain->client, "svc", "next", NULL, 0, 4000, s_answer, &chain->inner, NULL);
}

#define MANY 1000
static int s_answers [MANY];
static int s_wrong;

static void
s_many (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    int i = (int) (intptr_t) arg;
    s_answers [i]++;
    if (err || fb_int (body) != i)
        s_wrong++;
}

/*  Destroys a broker from another thread after a pause.  */
typedef struct {
    sb_broker_t **broker;
    int after_ms;
} killer_t;

static void *
s_kill_broker (void *arg)
{
    killer_t *self = arg;
    zclock_sleep (self->after_ms);
    sb_broker_destroy (self->broker);
    return NULL;
}

typedef struct {
    int events;
    int64_t last;
} events_t;

static void
s_on_event (const char *topic, const msgpack_object *body, void *arg)
{
    events_t *e = arg;
    e->events++;
    e->last = fb_int (body);
}

/*  --------------------------------------------------------------------
    Fake broker (fake_broker.h): the client runs while it waits.  */

static int
s_pump (void *client, int timeout_ms)
{
    return sb_client_dispatch ((sb_client_t *) client, timeout_ms);
}

/*  fb_recv skipping HEARTBEATs: the next REQUEST.  */
static int
s_recv_request (zsock_t *router, sb_client_t *client, zmsg_t **msg_p, sb_header_t *h)
{
    for (int i = 0; i < 20; i++) {
        if (fb_recv (router, s_pump, client, msg_p, h))
            return -1;
        if (h->command == SB_CMD_REQUEST)
            return 0;
        zmsg_destroy (msg_p);
    }
    return -1;
}

static void
s_fake_broker_tests (void)
{
    zsock_t *router = zsock_new_router ("tcp://127.0.0.1:*");
    char *endpoint = zsock_last_endpoint (router);
    sb_error_t err = { 0 };
    sb_client_options_t options = { .endpoints = endpoint, .timeout_ms = 3000, .name = "fake-test" };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (client != NULL, "client for the fake broker");

    /*  A call made before the broker welcomed us waits and then goes out. */
    answer_t first = { 0 };
    char body [16];
    size_t size = fb_pack_int (body, 7);
    tap_ok (sb_client_call_async (client, "svc", "m", body, size, 4000, s_answer, &first, &err) == 0,
            "async call before WELCOME is accepted");
    zmsg_t *msg = NULL;
    sb_header_t h, out;
    tap_ok (fb_recv (router, s_pump, client, &msg, &h) == 0 && h.command == SB_CMD_HELLO,
            "the client says HELLO first");
    tap_ok ((h.present & SB_H_NAME) && strcmp (h.name, "fake-test") == 0, "HELLO carries the client's name");
    sb_header_init (&out, SB_CMD_WELCOME);
    sb_header_set_name (&out, "fake");
    out.heartbeat_ms = 200;
    fb_send (router, msg, &out, NULL, 0);
    zmsg_destroy (&msg);

    int rc = fb_recv (router, s_pump, client, &msg, &h);
    tap_ok (rc == 0 && h.command == SB_CMD_REQUEST, "the waiting call goes out after WELCOME");
    tap_ok (rc == 0 && strcmp (h.service, "svc") == 0 && strcmp (h.method, "m") == 0,
            "service and method in the header");
    tap_ok (rc == 0 && h.timeout_ms > 0 && h.timeout_ms <= 4000, "relative timeout in the header (%u)",
            h.timeout_ms);
    static const uint8_t zero [16];
    tap_ok (rc == 0 && (h.present & SB_H_TRACE) && memcmp (h.trace, zero, 16) != 0,
            "a random trace id is sent");
    /*  h.body points into the header frame, which msg still holds.  */
    tap_ok (rc == 0 && zmsg_size (msg) == 2 && (h.present & SB_H_BODY) && h.body_size == size
         && memcmp (h.body, body, size) == 0, "the small body travels inline in the header frame, unchanged");
    uint64_t first_id = h.request_id;
    uint8_t first_trace [16];
    memcpy (first_trace, h.trace, 16);

    /*  A reply whose body is not MessagePack is an error, not a crash.  */
    if (msg) {
        sb_header_init (&out, SB_CMD_REPLY);
        out.request_id = first_id;
        fb_send (router, msg, &out, "\xc1", 1);
        zmsg_destroy (&msg);
    }
    for (int i = 0; i < 100 && first.calls == 0; i++)
        sb_client_dispatch (client, 20);
    tap_ok (first.calls == 1 && first.failed && first.err.code == SB_E_INTERNAL,
            "a bad reply body is an internal error to the caller (%s)", first.err.text);

    /*  Second call: another id and trace; an unknown error code maps to
        internal; a reply to an unknown id and garbage frames are ignored. */
    answer_t second = { 0 };
    sb_client_call_async (client, "svc", "m", NULL, 0, 4000, s_answer, &second, &err);
    rc = fb_recv (router, s_pump, client, &msg, &h);
    tap_ok (rc == 0 && h.request_id != first_id && memcmp (h.trace, first_trace, 16) != 0,
            "each call has its own request id and trace id");
    tap_ok (rc == 0 && zmsg_size (msg) == 2, "an empty body sends no body frame");
    if (msg) {
        sb_header_init (&out, SB_CMD_REPLY);
        out.request_id = h.request_id + 1000;
        fb_send (router, msg, &out, "\x01", 1);
        zmsg_t *garbage = zmsg_new ();
        zmsg_append (garbage, &(zframe_t *) { zframe_dup (zmsg_first (msg)) });
        zmsg_addstr (garbage, "not a header");
        zmsg_send (&garbage, router);
        sb_header_init (&out, SB_CMD_ERROR);
        out.request_id = h.request_id;
        out.code = 99;
        sb_header_set_text (&out, "strange");
        fb_send (router, msg, &out, NULL, 0);
        zmsg_destroy (&msg);
    }
    for (int i = 0; i < 100 && second.calls == 0; i++)
        sb_client_dispatch (client, 20);
    tap_ok (second.calls == 1 && second.err.code == SB_E_INTERNAL && strcmp (second.err.text, "strange") == 0,
            "an unknown error code arrives as internal with its text");
    tap_is_int (sb_client_pending (client), 0, "nothing pending");

    /*  A call with a trace id given carries it; a call made from its reply
        callback inherits it; a malformed one is refused before sending.  */
    static const char hex [] = "4bf92f3577b34da6a3ce929d0e0e4736";
    uint8_t given [16];
    tap_ok (sb_trace_parse (hex, given) == 0, "sb_trace_parse: 32 hex digits");
    char formatted [SB_TRACE_HEX_SIZE];
    sb_trace_format (given, formatted);
    tap_ok (strcmp (formatted, hex) == 0, "sb_trace_format gives them back");
    uint8_t upper [16];
    tap_ok (sb_trace_parse ("4BF92F3577B34DA6A3CE929D0E0E4736", upper) == 0 && !memcmp (upper, given, 16),
            "sb_trace_parse: either case");
    tap_ok (sb_trace_parse ("00000000000000000000000000000000", upper) == -1
         && sb_trace_parse ("4bf92f3577b34da6a3ce929d0e0e473", upper) == -1
         && sb_trace_parse ("4bf92f3577b34da6a3ce929d0e0e47366", upper) == -1
         && sb_trace_parse ("4bf92f3577b34da6a3ce929d0e0e473x", upper) == -1
         && sb_trace_parse (NULL, upper) == -1, "sb_trace_parse refuses all zero, short, long, non-hex");
    answer_t refused = { 0 };
    sb_error_t bad = { 0 };
    sb_call_options_t bad_trace = { .timeout_ms = 4000, .trace = "xyz" };
    tap_ok (sb_call_async (client, "svc", "m", &bad_trace, s_answer, &refused, &bad, NULL) == -1
         && bad.code == SB_E_BAD_REQUEST && refused.calls == 0 && sb_client_pending (client) == 0,
            "a malformed trace id is refused at once (%s)", bad.text);
    chain_t chain = { client, { 0 }, 0 };
    sb_call_options_t traced = { .timeout_ms = 4000, .trace = hex };
    tap_ok (sb_call_async (client, "svc", "m", &traced, s_chain, &chain, &err, NULL) == 0,
            "traced async call accepted");
    rc = s_recv_request (router, client, &msg, &h);
    tap_ok (rc == 0 && !memcmp (h.trace, given, 16), "it carries the given trace id");
    if (msg) {
        sb_header_init (&out, SB_CMD_REPLY);
        out.request_id = h.request_id;
        fb_send (router, msg, &out, "\x01", 1);
        zmsg_destroy (&msg);
    }
    for (int i = 0; i < 100 && chain.calls == 0; i++)
        sb_client_dispatch (client, 20);
    rc = chain.calls == 1 ? s_recv_request (router, client, &msg, &h) : -1;
    tap_ok (rc == 0 && !strcmp (h.method, "next") && !memcmp (h.trace, given, 16),
            "a call made from its reply callback inherits it");
    if (msg) {
        sb_header_init (&out, SB_CMD_REPLY);
        out.request_id = h.request_id;
        fb_send (router, msg, &out, "\x02", 1);
        zmsg_destroy (&msg);
    }
    for (int i = 0; i < 100 && chain.inner.calls == 0; i++)
        sb_client_dispatch (client, 20);
    sb_client_call_async (client, "svc", "m", NULL, 0, 4000, s_answer, &refused, &err);
    rc = s_recv_request (router, client, &msg, &h);
    tap_ok (rc == 0 && memcmp (h.trace, given, 16) != 0, "the next call outside it gets a fresh one");
    if (msg) {
        sb_header_init (&out, SB_CMD_REPLY);
        out.request_id = h.request_id;
        fb_send (router, msg, &out, "\x03", 1);
        zmsg_destroy (&msg);
    }
    for (int i = 0; i < 100 && refused.calls == 0; i++)
        sb_client_dispatch (client, 20);
    tap_is_int (sb_client_pending (client), 0, "nothing pending after the traced calls");

    /*  The fake broker goes silent: the call still ends, locally.  */
    answer_t third = { 0 };
    sb_client_call_async (client, "svc", "m", NULL, 0, 300, s_answer, &third, &err);
    int64_t start = zclock_mono ();
    while (third.calls == 0 && zclock_mono () - start < 5000)
        sb_client_dispatch (client, 50);
    tap_ok (third.calls == 1 && third.err.code == SB_E_TIMEOUT, "silent broker: local timeout (%s)",
            third.err.text);

    /*  Session: HEARTBEAT while idle (interval 200 ms from WELCOME), and
        HELLO again once the broker has been silent for 3 intervals.  */
    bool heartbeat = false, hello = false;
    start = zclock_mono ();
    while (!hello && zclock_mono () - start < 5000 && fb_recv (router, s_pump, client, &msg, &h) == 0) {
        if (h.command == SB_CMD_HEARTBEAT)
            heartbeat = true;
        else
        if (h.command == SB_CMD_HELLO)
            hello = true;
        if (!hello)
            zmsg_destroy (&msg);
    }
    tap_ok (heartbeat, "an idle client sends HEARTBEAT");
    tap_ok (hello, "a silent broker is declared dead and greeted with HELLO again");
    if (hello) {
        sb_header_init (&out, SB_CMD_WELCOME);
        out.heartbeat_ms = 200;
        fb_send (router, msg, &out, NULL, 0);
        zmsg_destroy (&msg);
        answer_t fourth = { 0 };
        sb_client_call_async (client, "svc", "m", NULL, 0, 3000, s_answer, &fourth, &err);
        rc = -1;
        while (fb_recv (router, s_pump, client, &msg, &h) == 0) {
            if (h.command == SB_CMD_REQUEST) {
                sb_header_init (&out, SB_CMD_REPLY);
                out.request_id = h.request_id;
                fb_send (router, msg, &out, body, size);
                rc = 0;
            }
            zmsg_destroy (&msg);
            if (rc == 0)
                break;
        }
        for (int i = 0; i < 100 && fourth.calls == 0; i++)
            sb_client_dispatch (client, 20);
        tap_ok (fourth.calls == 1 && !fourth.failed && fourth.value == 7,
                "after a new WELCOME calls flow again");
    }

    sb_client_destroy (&client);
    tap_ok (client == NULL, "destroy NULLs the pointer");
    sb_client_destroy (&client);
    zstr_free (&endpoint);
    zsock_destroy (&router);
}

/*  --------------------------------------------------------------------
    Against nothing: deadlines are local.  */

static void
s_nobody_tests (void)
{
    /*  A TCP socket bound but not listening holds a port where nothing
        can listen (not even another test's broker) and connects fail.  */
    int holder = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    if (holder < 0 || bind (holder, (struct sockaddr *) &addr, sizeof addr)
    ||  getsockname (holder, (struct sockaddr *) &addr, &len))
        tap_skip_all ("cannot reserve a loopback port");
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", ntohs (addr.sin_port));

    sb_error_t err = { 0 };
    sb_client_options_t options = { .endpoints = endpoint };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (client != NULL, "a client can be created while no broker runs");
    sb_reply_t *reply = NULL;
    int64_t start = zclock_mono ();
    int rc = sb_client_call (client, "echo2", "echo", NULL, 0, 300, &reply, &err);
    int64_t took = zclock_mono () - start;
    tap_ok (rc == -1 && err.code == SB_E_TIMEOUT && reply == NULL, "no broker: blocking call times out");
    tap_ok (took >= 290 && took < 3000, "after its timeout (%lld ms)", (long long) took);

    answer_t a = { 0 };
    tap_ok (sb_client_call_async (client, "echo2", "echo", NULL, 0, 200, s_answer, &a, &err) == 0,
            "async call accepted");
    tap_is_int (sb_client_pending (client), 1, "one pending");
    start = zclock_mono ();
    while (zclock_mono () - start < 800)
        sb_client_dispatch (client, 100);
    tap_ok (a.calls == 1 && a.err.code == SB_E_TIMEOUT, "no broker: async callback once, with timeout");
    tap_is_int (sb_client_pending (client), 0, "none pending");

    tap_ok (sb_client_call (client, "echo2", "echo", "\xc1", 1, 100, &reply, &err) == -1
         && err.code == SB_E_BAD_REQUEST, "a body that is not MessagePack is refused locally");
    tap_ok (sb_client_call (client, "bad name", "echo", NULL, 0, 100, &reply, &err) == -1
         && err.code == SB_E_BAD_REQUEST, "a bad service name is refused locally");
    tap_ok (sb_client_publish (client, "news.x", NULL, 0) == -1, "publish with no live broker fails");
    /*  A callback that makes a blocking call while other calls time out
        in the same pass: each of those is still answered exactly once.  */
    nested_t nested = { .client = client };
    answer_t b = { 0 }, c = { 0 };
    tap_ok (sb_client_call_async (client, "echo2", "echo", NULL, 0, 100, s_nested_call, &nested, &err) == 0
         && sb_client_call_async (client, "echo2", "echo", NULL, 0, 100, s_answer, &b, &err) == 0
         && sb_client_call_async (client, "echo2", "echo", NULL, 0, 100, s_answer, &c, &err) == 0,
            "three async calls that time out together");
    zclock_sleep (150);
    start = zclock_mono ();
    while (zclock_mono () - start < 600)
        sb_client_dispatch (client, 50);
    tap_ok (nested.calls == 1 && nested.inner_code == SB_E_TIMEOUT && b.calls == 1 && c.calls == 1
         && b.err.code == SB_E_TIMEOUT && c.err.code == SB_E_TIMEOUT,
            "a blocking call inside a timeout callback: every call answered once (%d, %d, %d)",
            nested.calls, b.calls, c.calls);

    /*  Destroying the client answers what is still in flight.  */
    answer_t late1 = { 0 }, late2 = { 0 };
    tap_ok (sb_client_call_async (client, "echo2", "echo", NULL, 0, 60000, s_answer, &late1, &err) == 0
         && sb_client_call_async (client, "echo2", "echo", NULL, 0, 60000, s_answer, &late2, &err) == 0,
            "two async calls with a minute to go");
    sb_client_destroy (&client);
    tap_ok (late1.calls == 1 && late1.err.code == SB_E_UNAVAILABLE
         && late2.calls == 1 && late2.err.code == SB_E_UNAVAILABLE,
            "destroying the client answers each pending call once, unavailable (%s)", late1.err.text);

    options.endpoints = "nonsense://";
    tap_ok (sb_client_new (&options, &err) == NULL, "a bad endpoint is refused (%s)", err.text);
    zstr_free (&endpoint);
    close (holder);
}

/*  --------------------------------------------------------------------
    Against the real broker.  */

static int
s_wait_welcome (sb_client_t *client)
{
    /*  sys.ping answers once the broker is reachable.  */
    sb_error_t err;
    for (int i = 0; i < 50; i++) {
        sb_reply_t *reply = NULL;
        if (sb_client_call (client, "sys", "ping", NULL, 0, 500, &reply, &err) == 0) {
            sb_reply_destroy (&reply);
            return 0;
        }
    }
    return -1;
}

/*  Publishes until `e` has seen one event; 0 if it did within 10 s.  */
static int
s_publish_until (sb_client_t *pub, sb_client_t *sub, const char *topic, events_t *e)
{
    char body [16];
    size_t size = fb_pack_int (body, 3);
    int64_t start = zclock_mono ();
    int before = e->events;
    while (e->events == before && zclock_mono () - start < 10000) {
        sb_client_publish (pub, topic, body, size);
        sb_client_dispatch (pub, 0);
        sb_client_dispatch (sub, 50);
    }
    return e->events > before ? 0 : -1;
}

static void
s_broker_tests (void)
{
    sb_error_t err = { 0 };
    sb_broker_config_t config = { .bind = "tcp://127.0.0.1:*", .heartbeat_ms = 250 };
    sb_broker_t *broker = sb_broker_new (&config, &err);
    tap_ok (broker != NULL, "broker starts");
    if (!broker)
        return;
    char endpoint [256];
    snprintf (endpoint, sizeof endpoint, "%s", sb_broker_endpoint (broker));
    sb_instance_t *echo = sb_instance_start (&s_echo2, 0, NULL, endpoint, 50, &err);
    tap_ok (echo != NULL, "echo2 instance starts");

    sb_client_options_t options = { .endpoints = endpoint };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (s_wait_welcome (client) == 0, "client reaches the broker");

    /*  Blocking round trip (the instance may need a moment to announce). */
    char body [16];
    size_t size = fb_pack_int (body, 1234);
    sb_reply_t *reply = NULL;
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) {
        rc = sb_client_call (client, "echo2", "echo", body, size, 2000, &reply, &err);
        if (rc)
            zclock_sleep (50);
    }
    tap_ok (rc == 0 && fb_int (&reply->body) == 1234, "blocking call round trip");
    tap_ok (rc == 0 && reply->size == size && memcmp (reply->data, body, size) == 0,
            "the raw reply body is kept with the reply");
    sb_reply_destroy (&reply);
    tap_ok (reply == NULL, "sb_reply_destroy NULLs the pointer");

    rc = sb_client_call (client, "nosuch", "x", NULL, 0, 2000, &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_NOT_FOUND, "unknown service: not_found (%s)", err.text);

    /*  Many in flight.  */
    for (int i = 0; i < MANY; i++) {
        size = fb_pack_int (body, i);
        sb_client_call_async (client, "echo2", "echo", body, size, 20000, s_many, (void *) (intptr_t) i, &err);
    }
    tap_is_int (sb_client_pending (client), MANY, "%d calls pending", MANY);
    int64_t start = zclock_mono ();
    while (sb_client_pending (client) > 0 && zclock_mono () - start < 20000)
        sb_client_dispatch (client, 100);
    int once = 0;
    for (int i = 0; i < MANY; i++)
        once += s_answers [i] == 1;
    tap_is_int (once, MANY, "each async call answered exactly once");
    tap_is_int (s_wrong, 0, "each with its own body");

    /*  A blocking call dispatches async answers that arrive meanwhile.  */
    answer_t a = { 0 };
    size = fb_pack_int (body, 5);
    sb_client_call_async (client, "echo2", "echo", body, size, 5000, s_answer, &a, &err);
    rc = sb_client_call (client, "echo2", "echo", body, size, 5000, &reply, &err);
    sb_reply_destroy (&reply);
    for (int i = 0; i < 50 && a.calls == 0; i++)
        sb_client_dispatch (client, 20);
    tap_ok (rc == 0 && a.calls == 1 && a.value == 5, "async and blocking calls mixed");

    /*  Events: broadcast, then a balanced group of two.  */
    sb_client_t *sub = sb_client_new (&options, &err);
    sb_client_t *member1 = sb_client_new (&options, &err);
    sb_client_t *member2 = sb_client_new (&options, &err);
    events_t news = { 0 }, g1 = { 0 }, g2 = { 0 }, gprobe1 = { 0 }, gprobe2 = { 0 };
    sb_client_subscribe (sub, "news.", NULL, s_on_event, &news);
    sb_client_subscribe (member1, "jobs.work", "workers", s_on_event, &g1);
    sb_client_subscribe (member2, "jobs.work", "workers", s_on_event, &g2);
    sb_client_subscribe (member1, "jobs.probe", "probers", s_on_event, &gprobe1);
    sb_client_subscribe (member2, "jobs.probe", "probers", s_on_event, &gprobe2);
    tap_ok (sb_client_subscribe (sub, "bad topic", NULL, s_on_event, &news) == -1, "bad prefix refused");
    tap_ok (s_publish_until (client, sub, "news.today", &news) == 0 && news.last == 3,
            "broadcast event published by one client reaches another");

    /*  Both members are known to the broker once each got a probe.  */
    start = zclock_mono ();
    while ((gprobe1.events == 0 || gprobe2.events == 0) && zclock_mono () - start < 10000) {
        size = fb_pack_int (body, 0);
        sb_client_publish (client, "jobs.probe", body, size);
        sb_client_dispatch (member1, 10);
        sb_client_dispatch (member2, 10);
    }
    tap_ok (gprobe1.events > 0 && gprobe2.events > 0, "both group members subscribed");
    for (int i = 0; i < 20; i++) {
        size = fb_pack_int (body, i);
        sb_client_publish (client, "jobs.work.item", body, size);
    }
    start = zclock_mono ();
    while (g1.events + g2.events < 20 && zclock_mono () - start < 10000) {
        sb_client_dispatch (member1, 10);
        sb_client_dispatch (member2, 10);
    }
    tap_ok (g1.events + g2.events == 20 && g1.events > 0 && g2.events > 0,
            "group events are shared between members, each delivered once (%d + %d)",
            g1.events, g2.events);

    /*  The broker dies while a blocking call waits on it: the call is not
        idempotent, so the caller gets `unavailable` as soon as the link
        is seen dropping, not at its deadline.  */
    killer_t killer = { .broker = &broker, .after_ms = 300 };
    pthread_t killer_thread;
    pthread_create (&killer_thread, NULL, s_kill_broker, &killer);
    start = zclock_mono ();
    rc = sb_client_call (client, "echo2", "hold", NULL, 0, 20000, &reply, &err);
    int64_t took = zclock_mono () - start;
    pthread_join (killer_thread, NULL);
    tap_ok (rc == -1 && err.code == SB_E_UNAVAILABLE, "broker lost under a blocking call: unavailable (%s)",
            err.text);
    tap_ok (took < 5000, "at once, not at the 20 s deadline (%lld ms)", (long long) took);

    /*  Broker restart: subscriptions come back without the program's help. */
    sb_instance_stop (&echo);
    sb_broker_destroy (&broker);
    config.bind = endpoint;
    start = zclock_mono ();
    while (!broker && zclock_mono () - start < 5000)
        if (!(broker = sb_broker_new (&config, &err)))
            zclock_sleep (100);
    tap_ok (broker != NULL, "broker restarted on the same endpoint");
    /*  Keep the subscriber's session running while the publisher retries. */
    tap_ok (broker && s_publish_until (client, sub, "news.again", &news) == 0,
            "after the restart the subscription is re-sent and events flow again");

    sb_client_destroy (&sub);
    sb_client_destroy (&member1);
    sb_client_destroy (&member2);
    sb_client_destroy (&client);
    sb_broker_destroy (&broker);
}

int
main (void)
{
    zsys_handler_set (NULL);
    s_fake_broker_tests ();
    s_nobody_tests ();
    s_broker_tests ();
    return tap_done ();
}
