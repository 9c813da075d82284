/*  broker_request.t — sessions, request routing, credit, queues, deadlines
    and the sys service, spoken through raw DEALER sockets.  */
#include "broker_peer.h"

/*  Receives n REQUESTs on a worker; returns how many came.  */
static int
s_take (zsock_t *worker, bp_msg_t *got, int n, int timeout_ms)
{
    static bp_msg_t m;
    int count = 0;
    while (count < n && bp_recv (worker, &m, timeout_ms) == 0)
        if (m.h.command == SB_CMD_REQUEST)
            got [count++] = m;
    return count;
}

int
main (void)
{
    sb_broker_t *broker = bp_broker (1000, 5);
    tap_ok (strncmp (sb_broker_endpoint (broker), "tcp://127.0.0.1:", 16) == 0
            && !strstr (sb_broker_endpoint (broker), "*"),
            "broker reports its real endpoint (%s)", sb_broker_endpoint (broker));
    zsock_t *admin = bp_connect (broker);
    zsock_t *client = bp_connect (broker);
    static bp_msg_t m, w [18];

    /*  HELLO / WELCOME.  */
    tap_ok (bp_hello (client, "client-1", &m) == 0, "HELLO is answered with WELCOME");
    tap_is_str (m.h.name, "test-broker", "WELCOME carries the broker name");
    tap_is_int (m.h.heartbeat_ms, 1000, "WELCOME carries the heartbeat interval");

    /*  Unknown service, then a worker.  */
    bp_request (client, 1, "echo", "echo", 0, 0, "\xc0", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR
            && m.h.code == SB_E_NOT_FOUND && m.h.request_id == 1,
            "request to an unknown service: not_found with the caller's id");

    zsock_t *worker1 = bp_connect (broker);
    bp_hello (worker1, "worker-1", &m);
    bp_keep (worker1, true);
    bp_ready (worker1, "echo", 1, "echo:1,slow:0");
    bp_sync (worker1);
    bp_request (client, 2, "echo", "nosuch", 0, 0, "\xc0", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR
            && m.h.code == SB_E_BAD_REQUEST && m.h.request_id == 2,
            "request for an unknown method: bad_request");

    /*  Routing with the body intact, ids rewritten both ways.  */
    const char body [] = "\xc4\x06\x00\x01\xff\x7f\x00\x80";
    bp_request (client, 0xfedcba9876543210ULL, "echo", "echo", 2000, 0, body, sizeof body - 1);
    tap_ok (bp_recv (worker1, &w [0], BP_WAIT) == 0 && w [0].h.command == SB_CMD_REQUEST,
            "worker gets the REQUEST");
    tap_ok (w [0].size == sizeof body - 1 && !memcmp (w [0].body, body, sizeof body - 1),
            "request body arrives byte for byte");
    tap_ok (w [0].h.request_id != 0xfedcba9876543210ULL, "broker gives the request its own id");
    tap_ok (w [0].h.timeout_ms > 0 && w [0].h.timeout_ms <= 2000,
            "worker sees the time left (%u ms)", w [0].h.timeout_ms);
    tap_is_str (w [0].h.method, "echo", "method passed on");
    tap_ok (w [0].h.flags & SB_F_IDEMPOTENT, "idempotent method is flagged for the worker");
    const char reply [] = "\xa5hello\x00";
    bp_reply (worker1, w [0].h.request_id, reply, sizeof reply);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY
            && m.h.request_id == 0xfedcba9876543210ULL,
            "caller gets REPLY with its own 64-bit id");
    tap_ok (m.size == sizeof reply && !memcmp (m.body, reply, sizeof reply),
            "reply body arrives byte for byte");

    /*  Credit: capacity 1 means one in flight, the rest wait.  */
    bp_request (client, 10, "echo", "echo", 0, 0, "\x01", 1);
    bp_request (client, 11, "echo", "echo", 0, 0, "\x02", 1);
    tap_is_int (s_take (worker1, w, 1, BP_WAIT), 1, "first request dispatched");
    tap_ok (bp_silent (worker1, 300), "second is held: credit 1 is never exceeded");
    bp_reply (worker1, w [0].h.request_id, "\x01", 1);
    tap_ok (s_take (worker1, w + 1, 1, BP_WAIT) == 1 && w [1].body [0] == 2,
            "the reply frees the credit and the queued request follows");
    bp_reply (worker1, w [1].h.request_id, "\x02", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 10
            && bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 11,
            "both answered in order");

    /*  Spread across 3 workers, least loaded first.  */
    bp_ready (worker1, "echo", 4, "echo:1,slow:0");
    zsock_t *worker2 = bp_connect (broker), *worker3 = bp_connect (broker);
    bp_hello (worker2, "worker-2", &m);
    bp_hello (worker3, "worker-3", &m);
    bp_keep (worker2, true);
    bp_keep (worker3, true);
    bp_ready (worker2, "echo", 4, "echo:1,slow:0");
    bp_ready (worker3, "echo", 4, "echo:1,slow:0");
    bp_sync (worker1);
    bp_sync (worker2);
    bp_sync (worker3);
    bp_stat_wait (admin, "workers", NULL, 3);
    for (int i = 0; i < 6; i++)
        bp_request (client, 100 + i, "echo", "echo", 0, 0, "\xc0", 1);
    int n1 = s_take (worker1, w, 6, 500);
    int n2 = s_take (worker2, w + 6, 6, 500);
    int n3 = s_take (worker3, w + 12, 6, 500);
    tap_ok (n1 == 2 && n2 == 2 && n3 == 2, "6 requests spread 2/2/2 over 3 workers (%d/%d/%d)", n1, n2, n3);
    for (int i = 0; i < n1; i++)
        bp_reply (worker1, w [i].h.request_id, "\xc0", 1);
    for (int i = 0; i < n2; i++)
        bp_reply (worker2, w [6 + i].h.request_id, "\xc0", 1);
    for (int i = 0; i < n3; i++)
        bp_reply (worker3, w [12 + i].h.request_id, "\xc0", 1);
    int answered = 0;
    while (answered < 6 && bp_recv (client, &m, BP_WAIT) == 0)
        answered += m.h.command == SB_CMD_REPLY;
    tap_is_int (answered, 6, "all 6 answered");

    /*  Load decides: worker1 busy with 4, the next goes elsewhere.  */
    for (int i = 0; i < 12; i++)
        bp_request (client, 200 + i, "echo", "echo", 0, 0, "\xc0", 1);
    n1 = s_take (worker1, w, 6, 500);
    n2 = s_take (worker2, w + 6, 6, 500);
    n3 = s_take (worker3, w + 12, 6, 500);
    tap_ok (n1 == 4 && n2 == 4 && n3 == 4, "12 requests fill 3 workers of capacity 4 exactly (%d/%d/%d)",
            n1, n2, n3);

    /*  Queue bound (5): 5 wait, the 6th is refused.  */
    for (int i = 0; i < 6; i++)
        bp_request (client, 300 + i, "echo", "echo", 0, 0, "\xc0", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.code == SB_E_OVERLOADED && m.h.request_id == 305,
            "past the queue bound: overloaded");
    tap_ok (bp_silent (worker1, 200) && bp_silent (worker2, 1) && bp_silent (worker3, 1),
            "no worker got more than its credit");
    /*  Free everything: answer the 12, then the 5 queued flow and get answered. */
    for (int i = 0; i < n1; i++)
        bp_reply (worker1, w [i].h.request_id, "\xc0", 1);
    for (int i = 0; i < n2; i++)
        bp_reply (worker2, w [6 + i].h.request_id, "\xc0", 1);
    for (int i = 0; i < n3; i++)
        bp_reply (worker3, w [12 + i].h.request_id, "\xc0", 1);
    zsock_t *workers [3] = { worker1, worker2, worker3 };
    answered = 0;
    int64_t end = zclock_mono () + BP_WAIT;
    while (answered < 17 && zclock_mono () < end) {
        for (int k = 0; k < 3; k++)
            while (bp_recv (workers [k], &m, 10) == 0)
                if (m.h.command == SB_CMD_REQUEST)
                    bp_reply (workers [k], m.h.request_id, "\xc0", 1);
        while (bp_recv (client, &m, 10) == 0)
            answered += m.h.command == SB_CMD_REPLY;
    }
    tap_is_int (answered, 17, "queued requests flow once credit frees");

    /*  Deadline while queued: a service whose only worker has no credit. */
    zsock_t *slow = bp_connect (broker);
    bp_hello (slow, "slow-1", &m);
    bp_keep (slow, true);
    bp_ready (slow, "slow", 1, "wait:0");
    bp_stat_wait (admin, "workers", NULL, 4);
    bp_request (client, 400, "slow", "wait", 5000, 0, "\xc0", 1);
    tap_is_int (s_take (slow, w, 1, BP_WAIT), 1, "slow worker holds one request");
    int64_t start = zclock_mono ();
    bp_request (client, 401, "slow", "wait", 200, 0, "\xc0", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR
            && m.h.code == SB_E_TIMEOUT && m.h.request_id == 401,
            "deadline passes in the queue: timeout");
    int64_t took = zclock_mono () - start;
    tap_ok (took >= 190 && took < 2000, "timeout came after about 200 ms (%d ms)", (int) took);

    /*  Deadline in flight, then the late reply.  */
    bp_reply (slow, w [0].h.request_id, "\xc0", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 400, "held request answered");
    bp_request (client, 402, "slow", "wait", 200, 0, "\xc0", 1);
    tap_is_int (s_take (slow, w, 1, BP_WAIT), 1, "request in flight");
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.code == SB_E_TIMEOUT && m.h.request_id == 402,
            "deadline passes in flight: timeout, not silence");
    bp_request (client, 403, "slow", "wait", 5000, 0, "\xc0", 1);
    tap_ok (bp_silent (slow, 200), "expired request still holds the worker's credit");
    bp_reply (slow, w [0].h.request_id, "\xc0", 1);
    tap_ok (s_take (slow, w, 1, BP_WAIT) == 1, "late reply frees the credit: next request dispatched");
    tap_ok (bp_silent (client, 200), "late reply is not forwarded");
    tap_ok (bp_stat (admin, "late_replies", NULL) == 1, "late reply counted");
    tap_ok (bp_stat (admin, "timeouts", NULL) == 2, "timeouts counted");
    bp_reply (slow, w [0].h.request_id, "\xc0", 1);
    bp_recv (client, &m, BP_WAIT);

    /*  sys service.  */
    msgpack_unpacked u;
    tap_ok (bp_sys (admin, "ping", &u) == 0, "sys.ping answers");
    const msgpack_object *v = bp_get (&u.data, "pong");
    tap_ok (v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean, "pong: true");
    v = bp_get (&u.data, "broker");
    tap_ok (v && v->type == MSGPACK_OBJECT_STR && v->via.str.size == 11
            && !memcmp (v->via.str.ptr, "test-broker", 11), "ping names the broker");
    tap_ok (bp_get (&u.data, "uptime_ms") != NULL, "ping has uptime_ms");
    msgpack_unpacked_destroy (&u);

    tap_ok (bp_sys (admin, "services", &u) == 0, "sys.services answers");
    const msgpack_object *services = bp_get (&u.data, "services");
    bool found = false;
    for (uint32_t i = 0; services && services->type == MSGPACK_OBJECT_ARRAY
                         && i < services->via.array.size; i++) {
        const msgpack_object *s = &services->via.array.ptr [i];
        const msgpack_object *name = bp_get (s, "name");
        if (name && name->via.str.size == 4 && !memcmp (name->via.str.ptr, "echo", 4)) {
            const msgpack_object *instances = bp_get (s, "instances");
            const msgpack_object *capacity = bp_get (s, "capacity");
            const msgpack_object *methods = bp_get (s, "methods");
            found = instances && instances->via.u64 == 3 && capacity && capacity->via.u64 == 12
                 && methods && methods->type == MSGPACK_OBJECT_ARRAY && methods->via.array.size == 2
                 && bp_get (s, "version") && bp_get (s, "in_flight") && bp_get (s, "queued");
        }
    }
    tap_ok (found, "sys.services lists echo with 3 instances, capacity 12 and 2 methods");
    msgpack_unpacked_destroy (&u);

    tap_ok (bp_stat (admin, "errors", "overloaded") == 1, "sys.stats counts errors by code");
    tap_ok (bp_stat (admin, "errors", "not_found") == 1, "not_found counted");
    tap_ok (bp_stat (admin, "workers", NULL) == 4, "sys.stats counts workers");
    tap_ok (bp_stat (admin, "peers", NULL) >= 6, "sys.stats counts peers");
    tap_ok (bp_stat (admin, "replies", NULL) >= 30, "sys.stats counts replies");
    bp_request (admin, 1, "sys", "nosuch", 0, 0, NULL, 0);
    tap_ok (bp_recv (admin, &m, BP_WAIT) == 0 && m.h.code == SB_E_BAD_REQUEST,
            "unknown sys method: bad_request");

    /*  The broker says BYE when it stops.  */
    bp_keep (worker1, false);
    bp_keep (worker2, false);
    bp_keep (worker3, false);
    bp_keep (slow, false);
    sb_broker_destroy (&broker);
    tap_ok (broker == NULL, "destroy NULLs the pointer");
    sb_broker_destroy (&broker);
    bool bye = false;
    while (bp_recv (worker2, &m, 1000) == 0)
        bye |= m.h.command == SB_CMD_BYE;
    tap_ok (bye, "peers get BYE on shutdown");

    zsock_t *socks [] = { admin, client, worker1, worker2, worker3, slow };
    for (size_t i = 0; i < sizeof socks / sizeof socks [0]; i++)
        zsock_destroy (&socks [i]);
    return tap_done ();
}
