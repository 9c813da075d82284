/*  limits.c — what one peer may make the broker hold or do
    (docs/operations.md, "Limits"), against the real engine in-process.

    What a user would notice:
    - a caller asking for a 49-day deadline gets the broker's cap: the
      worker sees at most --max-timeout left, and the clamp is counted;
    - one peer flooding 100,000 READYs with distinct names is refused past
      its limit (counted, answered `overloaded`) while another client's
      sys.ping stays fast;
    - a slow consumer (a DEALER that sends 1,200 requests of 1 MiB to an
      echoing worker and never reads) cannot pin the broker's memory: this
      process's RSS stays within the peer budget plus a margin, and falls
      back once the consumer disconnects.

    The echo worker and the READY flood run on threads of their own with
    their own sockets (the bp_ helpers are for the main thread only).
*/
#include "broker_peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Under AddressSanitizer the quarantine and the shadow memory are RSS
    too: the memory figures are printed, not checked.  */
#if defined (__SANITIZE_ADDRESS__)
#   define S_RSS_CHECKED 0
#elif defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define S_RSS_CHECKED 0
#   endif
#endif
#ifndef S_RSS_CHECKED
#   define S_RSS_CHECKED 1
#endif
#define S_RSS_SKIP "# SKIP RSS not measurable under AddressSanitizer: "

#define S_MIB (1024 * 1024)
#define S_FLOOD 100000
#define S_SLOW_REQUESTS 1200
#define S_PINGS 1000

/*  READY body {"version": "1", "methods": [["echo", 0]]}, by hand.  */
static const uint8_t s_ready_body [] = {
    0x82, 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xa1, '1',
    0xa7, 'm', 'e', 't', 'h', 'o', 'd', 's', 0x91, 0x92, 0xa4, 'e', 'c', 'h', 'o', 0x00
};

/*  This process's resident set, in bytes (VmRSS); 0 if unknown.  */
static size_t
s_rss (void)
{
    FILE *f = fopen ("/proc/self/status", "r");
    if (!f)
        return 0;
    char line [256];
    size_t kb = 0;
    while (fgets (line, sizeof line, f))
        if (sscanf (line, "VmRSS: %zu kB", &kb) == 1)
            break;
    fclose (f);
    return kb * 1024;
}

/*  Sends header h (and body as a frame of its own when not NULL) on a raw
    libzmq socket, with buffers of this thread.  */
static void
s_send (void *sock, const sb_header_t *h, const void *body, size_t size)
{
    uint8_t buf [SB_HEADER_MAX];
    size_t n = sb_header_encode (h, buf);
    zmq_send (sock, buf, n, body ? ZMQ_SNDMORE : 0);
    if (body)
        zmq_send (sock, body, size, 0);
}

/*  A worker offering echo.echo (capacity 16) that answers every request
    with its body; stops on $TERM.  arg: the broker's endpoint.  */
static void
s_echo_actor (zsock_t *pipe, void *arg)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_connect (dealer, "%s", (const char *) arg);
    void *sock = zsock_resolve (dealer);
    sb_header_t h;
    sb_header_init (&h, SB_CMD_HELLO);
    sb_header_set_name (&h, "echo-worker");
    s_send (sock, &h, NULL, 0);
    sb_header_init (&h, SB_CMD_READY);
    sb_header_set_service (&h, "echo");
    h.capacity = 16;
    h.present |= SB_H_CAPACITY;
    s_send (sock, &h, s_ready_body, sizeof s_ready_body);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, dealer, NULL);
    int64_t beat = zclock_mono ();
    while (true) {
        void *which = zpoller_wait (poller, 100);
        if (zclock_mono () - beat >= 200) {
            sb_header_init (&h, SB_CMD_HEARTBEAT);
            s_send (sock, &h, NULL, 0);
            beat = zclock_mono ();
        }
        if (which == pipe)
            break;
        if (which != dealer)
            continue;
        zmq_msg_t frames [2];
        zmq_msg_init (&frames [0]);
        zmq_msg_init (&frames [1]);
        int n = 0;
        if (zmq_msg_recv (&frames [0], sock, 0) >= 0) {
            n = 1;
            if (zmq_msg_more (&frames [0]) && zmq_msg_recv (&frames [1], sock, 0) >= 0)
                n = 2;
        }
        sb_header_t req;
        if (n >= 1
        &&  sb_header_decode (&req, zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0])) == SB_WIRE_OK
        &&  req.command == SB_CMD_REQUEST) {
            sb_header_t out;
            sb_header_init (&out, SB_CMD_REPLY);
            out.request_id = req.request_id;
            out.present |= SB_H_REQUEST_ID;
            uint8_t buf [SB_HEADER_MAX];
            size_t size = sb_header_encode (&out, buf);
            zmq_send (sock, buf, size, n == 2 ? ZMQ_SNDMORE : 0);
            if (n == 2)
                zmq_msg_send (&frames [1], sock, 0);
        }
        zmq_msg_close (&frames [0]);
        zmq_msg_close (&frames [1]);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
}

/*  Sends S_FLOOD READYs with distinct service names as fast as the
    socket takes them, then signals; arg: the broker's endpoint.  */
static void
s_flood_actor (zsock_t *pipe, void *arg)
{
    zsock_signal (pipe, 0);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    zsock_set_rcvhwm (dealer, 1);
    zsock_connect (dealer, "%s", (const char *) arg);
    void *sock = zsock_resolve (dealer);
    for (int i = 0; i < S_FLOOD; i++) {
        sb_header_t h;
        sb_header_init (&h, SB_CMD_READY);
        char name [32];
        snprintf (name, sizeof name, "flood%d", i);
        sb_header_set_service (&h, name);
        h.capacity = 1;
        h.present |= SB_H_CAPACITY;
        s_send (sock, &h, s_ready_body, sizeof s_ready_body);
    }
    zsock_signal (pipe, 0);
    char *term = zstr_recv (pipe);  /* $TERM */
    zstr_free (&term);
    zsock_destroy (&dealer);
}

static void
s_test_deadline_cap (void)
{
    sb_broker_t *broker = bp_broker (1000, 0);
    zsock_t *worker = bp_connect (broker);
    zsock_t *caller = bp_connect (broker);
    bp_msg_t m;
    bp_hello (worker, "w", &m);
    bp_ready (worker, "slow", 1, "wait:0");
    bp_sync (worker);
    uint32_t days49 = 49u * 24 * 3600 * 1000;
    bp_request (caller, 1, "slow", "wait", days49, 0, "x", 1);
    bool got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
    tap_ok (got && m.h.timeout_ms <= SB_BROKER_MAX_TIMEOUT_DEFAULT,
            "a 49-day deadline is clamped: the worker sees %u ms left (cap %d)",
            got ? m.h.timeout_ms : 0, SB_BROKER_MAX_TIMEOUT_DEFAULT);
    tap_ok (bp_stat (caller, "timeouts_clamped", NULL) == 1,
            "the clamp is counted (timeouts_clamped)");
    if (got)
        bp_reply (worker, m.h.request_id, "y", 1);
    tap_ok (bp_recv (caller, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY,
            "and the call is answered as usual");
    zsock_destroy (&caller);
    zsock_destroy (&worker);
    sb_broker_destroy (&broker);
}

static int
s_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static void
s_test_ready_flood (void)
{
    sb_broker_t *broker = bp_broker (1000, 0);
    zsock_t *client = bp_connect (broker);
    tap_ok (bp_sync (client) == 0, "client pings before the flood");
    zactor_t *flood = zactor_new (s_flood_actor, (void *) sb_broker_endpoint (broker));
    zsock_t *flood_pipe = zactor_sock (flood);
    /*  Pings while the flood is sent and until the broker has refused
        it all.  The bound is on the median (a ping may meet a scheduler
        hiccup on a loaded machine: the 90th percentile and the worst are
        reported).  */
    int64_t took [S_PINGS];
    int pings = 0;
    int64_t refused = -1;
    const int64_t want = S_FLOOD - SB_BROKER_PEER_SERVICES_DEFAULT;
    int64_t t_flood = zclock_usecs (), end = zclock_mono () + 30000;
    bool sent = false;
    while (pings < S_PINGS && refused < want && zclock_mono () < end) {
        int64_t t0 = zclock_usecs ();
        if (bp_sync (client))
            break;
        took [pings++] = zclock_usecs () - t0;
        sent = sent || (zsock_events (flood_pipe) & ZMQ_POLLIN);
        if (sent)
            refused = bp_stat (client, "directory_refused", NULL);
        zclock_sleep (2);
    }
    t_flood = zclock_usecs () - t_flood;
    qsort (took, (size_t) pings, sizeof took [0], s_compare);
    double median = pings ? took [pings / 2] / 1000.0 : 0;
    double p90 = pings ? took [pings * 9 / 10] / 1000.0 : 0;
    tap_ok (pings >= 5 && median < 10,
            "while %d READYs are sent and refused (%.0f ms), %d sys.ping: median %.2f ms, "
            "90th percentile %.2f ms, worst %.2f ms", S_FLOOD, t_flood / 1000.0, pings, median, p90,
            pings ? took [pings - 1] / 1000.0 : 0);
    zsock_wait (flood);             /* all sent */
    for (int i = 0; i < 300 && refused < want; i++) {
        refused = bp_stat (client, "directory_refused", NULL);
        if (refused < want)
            zclock_sleep (100);
    }
    tap_ok (refused == S_FLOOD - SB_BROKER_PEER_SERVICES_DEFAULT,
            "READYs past the per-peer limit are refused and counted (directory_refused %lld)",
            (long long) refused);
    tap_ok (bp_stat (client, "workers", NULL) == SB_BROKER_PEER_SERVICES_DEFAULT,
            "the peer keeps its first %d services", SB_BROKER_PEER_SERVICES_DEFAULT);
    zactor_destroy (&flood);
    zsock_destroy (&client);
    sb_broker_destroy (&broker);
}

static void
s_no_free (void *data, void *hint)
{
    (void) data;
    (void) hint;
}

static void
s_test_slow_consumer (void)
{
    sb_broker_t *broker = bp_broker (1000, 0);
    zactor_t *echo = zactor_new (s_echo_actor, (void *) sb_broker_endpoint (broker));
    zsock_t *client = bp_connect (broker);
    int64_t instances = -1;
    for (int i = 0; i < 100 && instances != 1; i++) {
        instances = bp_stat (client, "workers", NULL);
        if (instances != 1)
            zclock_sleep (20);
    }
    tap_ok (instances == 1, "the echo worker is ready");

    static uint8_t body [S_MIB];
    memset (body, 'b', sizeof body);
    /*  A raw DEALER that never reads: its own queues hold next to nothing
        (receive HWM 1, send HWM 4, bodies sent by reference), so what
        grows is the broker's.  */
    zsock_t *slow = zsock_new (ZMQ_DEALER);
    zsock_set_linger (slow, 0);
    zsock_set_rcvhwm (slow, 1);
    zsock_set_rcvbuf (slow, 65536);
    zsock_set_sndhwm (slow, 4);
    zsock_connect (slow, "%s", sb_broker_endpoint (broker));
    void *sock = zsock_resolve (slow);

    size_t before = s_rss (), peak = before;
    for (int i = 0; i < S_SLOW_REQUESTS; i++) {
        sb_header_t h;
        sb_header_init (&h, SB_CMD_REQUEST);
        h.request_id = (uint64_t) i + 1;
        h.present |= SB_H_REQUEST_ID;
        sb_header_set_service (&h, "echo");
        sb_header_set_method (&h, "echo");
        h.timeout_ms = 60000;
        uint8_t buf [SB_HEADER_MAX];
        size_t n = sb_header_encode (&h, buf);
        zmq_msg_t frame;
        zmq_msg_init_data (&frame, body, sizeof body, s_no_free, NULL);
        zmq_send (sock, buf, n, ZMQ_SNDMORE);
        zmq_msg_send (&frame, sock, 0);
        if (i % 50 == 0) {
            size_t now = s_rss ();
            peak = now > peak ? now : peak;
        }
    }
    for (int i = 0; i < 20; i++) {
        size_t now = s_rss ();
        peak = now > peak ? now : peak;
        zclock_sleep (100);
    }
    size_t budget = SB_BROKER_PEER_BUDGET_DEFAULT;
    tap_ok (!S_RSS_CHECKED || peak < before + budget + 100 * S_MIB,
            "%sslow consumer: RSS %zu MiB before, at most %zu MiB during (bound %zu MiB)",
            S_RSS_CHECKED ? "" : S_RSS_SKIP, before / S_MIB, peak / S_MIB,
            (before + budget + 100 * S_MIB) / S_MIB);
    int64_t over = bp_stat (client, "over_budget", NULL);
    tap_ok (over > 0, "what went over the consumer's budget is counted (over_budget %lld)",
            (long long) over);
    tap_ok (bp_sync (client) == 0, "other clients are still served");

    zsock_destroy (&slow);
    size_t after = s_rss ();
    for (int i = 0; i < (S_RSS_CHECKED ? 100 : 20) && after >= before + 32 * S_MIB; i++) {
        zclock_sleep (100);
        after = s_rss ();
    }
    tap_ok (!S_RSS_CHECKED || after < before + 32 * S_MIB,
            "%safter it disconnects the memory is released: RSS %zu MiB (before %zu MiB)",
            S_RSS_CHECKED ? "" : S_RSS_SKIP, after / S_MIB, before / S_MIB);
    zactor_destroy (&echo);
    zsock_destroy (&client);
    sb_broker_destroy (&broker);
}

int
main (void)
{
    zsys_init ();
    s_test_deadline_cap ();
    s_test_ready_flood ();
    s_test_slow_consumer ();
    return tap_done ();
}
