/*  broker_badinput.t — what a broker does with input it cannot use:
    garbage, too many frames, truncated, oversized and wrong-version
    headers, unknown commands, bad READY bodies, inline bodies of the
    wrong type or size, forged replies, and a frame past ZMQ_MAXMSGSIZE.  Each is counted in sys.stats and the broker
    keeps serving a well-behaved peer.  */
#include "broker_peer.h"

static zsock_t *admin, *client, *worker;

/*  A well-behaved request/reply round trip still works.  */
static bool
s_still_serving (void)
{
    static uint64_t id = 1000;
    bp_msg_t m;
    bp_request (client, ++id, "echo", "echo", 5000, 0, "\xa2ok", 3);
    if (bp_recv (worker, &m, BP_WAIT) || m.h.command != SB_CMD_REQUEST)
        return false;
    bp_reply (worker, m.h.request_id, m.body, m.size);
    return bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY
        && m.h.request_id == id && m.size == 3 && !memcmp (m.body, "\xa2ok", 3);
}

/*  Sends frames from a fresh socket, then checks the counter rose.  */
static void
s_bad (const char *what, const char *reason, int count, const void **data, const size_t *sizes,
       sb_broker_t *broker)
{
    int64_t before = bp_stat (admin, "bad_frames", reason);
    zsock_t *rogue = bp_connect (broker);
    bp_send_raw (rogue, count, data, sizes);
    int64_t after = bp_stat_wait (admin, "bad_frames", reason, before + 1);
    tap_ok (after == before + 1, "%s: dropped, counted as bad_frames.%s", what, reason);
    bp_msg_t m;
    bool answered = bp_recv (rogue, &m, 100) == 0 && m.h.command != SB_CMD_WELCOME;
    tap_ok (!answered, "%s: no answer to the sender (a session WELCOME at most)", what);
    tap_ok (s_still_serving (), "%s: broker still serves others", what);
    zsock_destroy (&rogue);
}

int
main (void)
{
    sb_broker_config_t config = { 0 };
    config.bind = "tcp://127.0.0.1:*";
    config.body_max = 64 * 1024;
    sb_error_t err;
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker) {
        printf ("Bail out! %s\n", err.text);
        return 1;
    }
    admin = bp_connect (broker);
    client = bp_connect (broker);
    worker = bp_connect (broker);
    bp_msg_t m;
    bp_hello (worker, "w", &m);
    bp_keep (worker, true);
    bp_ready (worker, "echo", 10, "echo:1");
    bp_stat_wait (admin, "workers", NULL, 1);
    tap_ok (s_still_serving (), "baseline round trip");

    uint8_t header [SB_HEADER_MAX];
    sb_header_t h;
    sb_header_init (&h, SB_CMD_HEARTBEAT);
    size_t hsize = sb_header_encode (&h, header);

    const void *d [4];
    size_t z [4];
    d [0] = "\x00\xff garbage \x13\x37";
    z [0] = 13;
    s_bad ("garbage frame", "malformed", 1, d, z, broker);

    d [0] = header; z [0] = hsize;
    d [1] = "body"; z [1] = 4;
    d [2] = "extra"; z [2] = 5;
    s_bad ("three frames", "frames", 3, d, z, broker);

    d [0] = header; z [0] = hsize - 1;
    s_bad ("truncated header", "malformed", 1, d, z, broker);

    static uint8_t big [SB_HEADER_MAX + 100];
    memset (big, 0xc0, sizeof big);
    d [0] = big; z [0] = sizeof big;
    s_bad ("oversized header", "oversized", 1, d, z, broker);

    d [0] = "\x82\x00\x02\x01\x0a"; z [0] = 5;
    s_bad ("protocol version 2", "bad_version", 1, d, z, broker);

    d [0] = "\x82\x00\x01\x01\x63"; z [0] = 5;
    s_bad ("unknown command 99", "bad_command", 1, d, z, broker);

    d [0] = "\x83\x00\x01\x01\x04\x03\x05"; z [0] = 7;
    s_bad ("service of the wrong type", "bad_field", 1, d, z, broker);

    d [0] = ""; z [0] = 0;
    s_bad ("empty header", "malformed", 1, d, z, broker);

    sb_header_init (&h, SB_CMD_WELCOME);
    hsize = sb_header_encode (&h, header);
    d [0] = header; z [0] = hsize;
    s_bad ("WELCOME sent to a broker", "unexpected", 1, d, z, broker);

    /*  READY with a body that lies about its size, and with no body.  */
    sb_header_init (&h, SB_CMD_READY);
    sb_header_set_service (&h, "liar");
    h.capacity = 1;
    hsize = sb_header_encode (&h, header);
    d [0] = header; z [0] = hsize;
    d [1] = "\x82\xa7methods\xdd\x7f\xff\xff\xff"; z [1] = 13;
    s_bad ("READY body claiming 2^31 methods", "bad_body", 2, d, z, broker);
    d [1] = "\x81\xa7methods\x91\x92\x05\x00"; z [1] = 13;
    s_bad ("READY with a method name that is not a string", "bad_body", 2, d, z, broker);
    s_bad ("READY without a body", "missing_field", 1, d, z, broker);
    sb_header_set_service (&h, "sys");
    z [0] = sb_header_encode (&h, header);
    d [1] = "\x81\xa7methods\x90"; z [1] = 10;
    s_bad ("READY for the reserved service sys", "reserved", 2, d, z, broker);

    /*  Inline bodies (the body field, key 19) that are not a bin of
        1..SB_INLINE_MAX bytes, or that come with a body frame too.  */
    static uint8_t frame [SB_FRAME_HEADER_MAX];
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = 4242;
    h.present |= SB_H_REQUEST_ID;
    sb_header_set_service (&h, "echo");
    sb_header_set_method (&h, "echo");
    size_t n = sb_header_encode_inline (&h, 2, frame);       /* ... 0x13 0xc4 0x02 */
    frame [n - 2] = 0xa2;                                   /* ... 0x13 0xa2 'h' 'i' */
    frame [n - 1] = 'h';
    frame [n] = 'i';
    d [0] = frame; z [0] = n + 1;
    s_bad ("inline body given as a str", "bad_field", 1, d, z, broker);
    n = sb_header_encode_inline (&h, 1, frame);             /* ... 0x13 0xc4 0x01 */
    frame [n - 1] = 0;
    d [0] = frame; z [0] = n;
    s_bad ("empty inline body", "bad_field", 1, d, z, broker);
    n = sb_header_encode_inline (&h, SB_INLINE_MAX, frame); /* ... 0x13 0xc5 0x10 0x00 */
    frame [n - 1] = 1;
    memset (frame + n, 0xc0, SB_INLINE_MAX + 1);
    d [0] = frame; z [0] = n + SB_INLINE_MAX + 1;
    s_bad ("inline body of SB_INLINE_MAX + 1 bytes", "bad_field", 1, d, z, broker);
    n = sb_header_encode_inline (&h, 1, frame);
    frame [n] = 0xc0;
    d [0] = frame; z [0] = n + 1;
    d [1] = "\xc0"; z [1] = 1;
    s_bad ("inline body and a body frame at once", "frames", 2, d, z, broker);

    /*  Both body forms are accepted; small bodies are passed on inline
        whichever way they came, large ones as a second frame.  */
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = 31;
    h.present |= SB_H_REQUEST_ID;
    sb_header_set_service (&h, "echo");
    sb_header_set_method (&h, "echo");
    h.timeout_ms = 5000;
    bp_send_frames (client, &h, "\xa3two", 4);
    bool got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
    tap_ok (got && m.inline_body && m.size == 4 && !memcmp (m.body, "\xa3two", 4),
            "a small body sent as a second frame reaches the worker inline");
    sb_header_init (&h, SB_CMD_REPLY);
    h.request_id = got ? m.h.request_id : 0;
    h.present |= SB_H_REQUEST_ID;
    bp_send_frames (worker, &h, "\xa3owt", 4);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 31 && m.inline_body
            && m.size == 4 && !memcmp (m.body, "\xa3owt", 4), "and so does a reply sent that way");
    static char large [SB_INLINE_MAX + 1000];
    large [0] = (char) 0xc5;                                /* bin 16 of the rest */
    large [1] = (char) ((sizeof large - 3) >> 8);
    large [2] = (char) ((sizeof large - 3) & 0xff);
    for (size_t i = 3; i < sizeof large; i++)
        large [i] = (char) i;
    bp_request (client, 32, "echo", "echo", 5000, 0, large, sizeof large);
    got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
    tap_ok (got && !m.inline_body && m.size == sizeof large && !memcmp (m.body, large, sizeof large),
            "a body past SB_INLINE_MAX travels as a second frame, byte for byte");
    bp_reply (worker, got ? m.h.request_id : 0, large, sizeof large);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 32 && !m.inline_body
            && m.size == sizeof large && !memcmp (m.body, large, sizeof large),
            "and its reply too");

    /*  A reply is passed on as received (its id rewritten in place) when
        its header is exactly what the caller must get; otherwise it is
        re-encoded with only the fields a REPLY carries to a caller.  Both
        must give the caller its own id, the trace and the body.  */
    for (int variant = 0; variant < 2; variant++) {
        uint64_t caller_id = variant ? 0x1234567890abULL : 7;
        bp_request (client, caller_id, "echo", "echo", 5000, 0, "\xa1x", 2);
        got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
        sb_header_init (&h, SB_CMD_REPLY);
        h.request_id = got ? m.h.request_id : 0;
        h.present |= SB_H_REQUEST_ID | SB_H_TRACE;
        memset (h.trace, 0x5a, sizeof h.trace);
        if (variant) {
            /*  A request-only flag, unrouted (the broker's alone) and a
                span: dropped by the re-encoding.  */
            h.flags = SB_F_RETRY | SB_F_UNROUTED | SB_F_SEALED;
            h.present |= SB_H_SPAN;
            memset (h.span, 0x33, sizeof h.span);
        }
        bp_send (worker, &h, "\xa1y", 2);
        bool ok = bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY;
        tap_ok (ok && m.h.request_id == caller_id && (m.h.present & SB_H_TRACE)
                && m.h.trace [0] == 0x5a && m.size == 2 && !memcmp (m.body, "\xa1y", 2),
                "%s reply: the caller's id, the trace and the body", variant ? "re-encoded" : "passed-on");
        tap_ok (ok && m.h.flags == (variant ? SB_F_SEALED : 0u) && !(m.h.present & SB_H_SPAN),
                "%s reply: no request-only or unrouted flag, no span", variant ? "re-encoded" : "passed-on");
    }

    /*  A REPLY for a request the sender does not hold.  */
    bp_request (client, 5, "echo", "echo", 5000, 0, "\xc0", 1);
    bp_recv (worker, &m, BP_WAIT);
    uint64_t real_id = m.h.request_id;
    zsock_t *forger = bp_connect (broker);
    bp_hello (forger, "forger", &m);
    int64_t before = bp_stat (admin, "bad_frames", "foreign_reply");
    bp_reply (forger, real_id, "\xa6" "forged", 7);
    tap_is_int (bp_stat_wait (admin, "bad_frames", "foreign_reply", before + 1), before + 1,
                "a REPLY for another worker's request is refused and counted");
    bp_reply (worker, real_id, "\xa4" "real", 5);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 5 && m.size == 5
            && !memcmp (m.body, "\xa4" "real", 5), "the caller gets the real worker's answer");
    before = bp_stat (admin, "late_replies", NULL);
    bp_reply (forger, 0x123456789ULL, "\xc0", 1);
    tap_is_int (bp_stat_wait (admin, "late_replies", NULL, before + 1), before + 1,
                "a REPLY with an unknown id is dropped and counted");
    zsock_destroy (&forger);

    /*  REQUEST without service or method: answered bad_request.  */
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = 77;
    bp_send (client, &h, NULL, 0);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.code == SB_E_BAD_REQUEST && m.h.request_id == 77,
            "REQUEST without a service: bad_request");

    /*  A frame past ZMQ_MAXMSGSIZE (body_max + header): the connection is
        cut by ZeroMQ, the broker is unharmed.  */
    zsock_t *flood = bp_connect (broker);
    size_t huge_size = 64 * 1024 + SB_HEADER_MAX + 1;
    char *huge = calloc (1, huge_size);
    bp_request (flood, 1, "echo", "echo", 1000, 0, huge, huge_size);
    free (huge);
    tap_ok (bp_recv (flood, &m, 300) == -1, "an over-long frame gets no answer");
    tap_ok (s_still_serving (), "broker still serves after an over-long frame");
    zsock_destroy (&flood);

    /*  Many garbage messages in a burst do not stall a well-behaved peer. */
    zsock_t *noisy = bp_connect (broker);
    for (int i = 0; i < 2000; i++)
        zmq_send (zsock_resolve (noisy), "\xc1\xc1", 2, 0);
    tap_ok (s_still_serving (), "a burst of 2000 garbage frames does not stall others");
    tap_ok (bp_stat_wait (admin, "bad_frames", "malformed", 2003) >= 2003, "and all are counted");
    zsock_destroy (&noisy);

    bp_keep (worker, false);
    sb_broker_destroy (&broker);
    zsock_destroy (&admin);
    zsock_destroy (&client);
    zsock_destroy (&worker);
    return tap_done ();
}
