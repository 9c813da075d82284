/*  cmd_bench.c — `sb bench`: request/reply throughput and latency.

    Runs everything in this one process, over TCP on loopback, so the two
    sides of a comparison share the machine at the same moment:

    - Switchboard: a broker (broker/broker.h), one instance of an in-process
      echo service (runtime/instance.h) and a client (switchboard.h) that
      keeps --inflight requests outstanding;
    - with --baseline, the bare libzmq equivalent: a ROUTER/DEALER
      zmq_proxy with a DEALER echo worker, and a DEALER client keeping the
      same number of requests outstanding.

    Each side is measured pipelined (throughput) and with one request in
    flight (latency percentiles).  The last line is the one scripts read:
    bench: <req/s> req/s p50=<us>us p99=<us>us baseline=<req/s> ratio=<x>
*/
#include "commands.h"
#include "broker.h"
#include "instance.h"
#include "switchboard.h"

#include <czmq.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    long requests;          /* pipelined requests per side */
    long latency_requests;  /* single-in-flight requests per side */
    int inflight;
    size_t size;            /* request body bytes */
    bool baseline;
} bench_options_t;

typedef struct {
    double rate;            /* requests per second, pipelined */
    double p50_us, p99_us;  /* single in flight */
    long failed;
} bench_result_t;

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
s_compare_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

/*  Sorts the samples (ns) and fills the percentiles (us).  */
static void
s_percentiles (int64_t *samples, long count, bench_result_t *result)
{
    qsort (samples, (size_t) count, sizeof *samples, s_compare_i64);
    result->p50_us = samples [count / 2] / 1000.0;
    result->p99_us = samples [(long) ((count - 1) * 0.99)] / 1000.0;
}

/*  --------------------------------------------------------------------
    Switchboard side.  */

static int
s_echo (sb_request_t *req, const msgpack_object *body, void *state)
{
    /*  The body is a bin object; send it back as it came.  */
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_object (pk, *body);
    return sb_reply_send (req);
}

static const sb_method_t s_bench_methods [] = {
    { "echo", s_echo, SB_METHOD_IDEMPOTENT },
    { NULL, NULL, 0 }
};

static const sb_service_t s_bench_service = {
    .abi_version = SB_ABI_VERSION,
    .name = "bench",
    .version = "1.0.0",
    .methods = s_bench_methods,
};

typedef struct {
    long done;
    long failed;
} pipeline_state_t;

static void
s_on_reply (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    pipeline_state_t *state = arg;
    state->done++;
    if (err)
        state->failed++;
}

static int
s_bench_switchboard (const bench_options_t *opt, bench_result_t *result)
{
    sb_error_t err;
    sb_broker_config_t broker_config = { .bind = "tcp://127.0.0.1:*", .name = "bench" };
    sb_broker_t *broker = sb_broker_new (&broker_config, &err);
    if (!broker) {
        fprintf (stderr, "sb bench: broker: %s\n", err.text);
        return -1;
    }
    const char *endpoint = sb_broker_endpoint (broker);
    sb_instance_t *instance = sb_instance_start (&s_bench_service, 0, NULL, endpoint,
                                                 opt->inflight * 2, &err);
    sb_client_options_t client_options = { .endpoints = endpoint, .name = "bench-client" };
    sb_client_t *client = instance ? sb_client_new (&client_options, &err) : NULL;
    if (!client) {
        fprintf (stderr, "sb bench: %s\n", err.text);
        sb_instance_stop (&instance);
        sb_broker_destroy (&broker);
        return -1;
    }

    /*  The body: one MessagePack bin object of exactly opt->size bytes.  */
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    size_t payload = opt->size > 5 ? opt->size - (opt->size - 2 > 255 ? 3 : 2) : 1;
    char *bytes = calloc (1, payload);
    msgpack_pack_bin_with_body (&pk, bytes, payload);
    free (bytes);

    /*  Wait until the service is routable: a call succeeds.  */
    int rc = -1;
    for (int attempt = 0; attempt < 50 && rc; attempt++) {
        sb_reply_t *reply = NULL;
        rc = sb_client_call (client, "bench", "echo", body.data, body.size, 200, &reply, &err);
        sb_reply_destroy (&reply);
        if (rc)
            zclock_sleep (50);
    }
    if (rc) {
        fprintf (stderr, "sb bench: the bench service never became reachable: %s\n", err.text);
        goto done;
    }

    pipeline_state_t state = { 0, 0 };
    long sent = 0;
    int64_t start = s_now_ns ();
    while (state.done < opt->requests) {
        while (sent < opt->requests && sent - state.done < opt->inflight) {
            if (sb_client_call_async (client, "bench", "echo", body.data, body.size, 30000,
                                      s_on_reply, &state, &err)) {
                fprintf (stderr, "sb bench: call: %s\n", err.text);
                goto done;
            }
            sent++;
        }
        if (sb_client_dispatch (client, 1000) < 0)
            goto done;
    }
    result->rate = opt->requests / ((s_now_ns () - start) / 1e9);
    result->failed = state.failed;

    int64_t *samples = malloc ((size_t) opt->latency_requests * sizeof *samples);
    for (long i = 0; i < opt->latency_requests; i++) {
        sb_reply_t *reply = NULL;
        int64_t t0 = s_now_ns ();
        if (sb_client_call (client, "bench", "echo", body.data, body.size, 5000, &reply, &err))
            result->failed++;
        samples [i] = s_now_ns () - t0;
        sb_reply_destroy (&reply);
    }
    s_percentiles (samples, opt->latency_requests, result);
    free (samples);
    rc = 0;
done:
    msgpack_sbuffer_destroy (&body);
    sb_client_destroy (&client);
    sb_instance_stop (&instance);
    sb_broker_destroy (&broker);
    return rc;
}

/*  --------------------------------------------------------------------
    Baseline: bare libzmq.  Its own context, so that zmq_ctx_shutdown
    stops the proxy and worker threads when the client is done.  */

typedef struct {
    void *ctx;
    char frontend [256];
    char backend [256];
    int ready;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} baseline_t;

static void *
s_baseline_proxy (void *arg)
{
    baseline_t *b = arg;
    void *front = zmq_socket (b->ctx, ZMQ_ROUTER);
    void *back = zmq_socket (b->ctx, ZMQ_DEALER);
    size_t len = sizeof b->frontend;
    zmq_bind (front, "tcp://127.0.0.1:*");
    zmq_getsockopt (front, ZMQ_LAST_ENDPOINT, b->frontend, &len);
    len = sizeof b->backend;
    zmq_bind (back, "tcp://127.0.0.1:*");
    zmq_getsockopt (back, ZMQ_LAST_ENDPOINT, b->backend, &len);
    pthread_mutex_lock (&b->lock);
    b->ready = 1;
    pthread_cond_broadcast (&b->cond);
    pthread_mutex_unlock (&b->lock);
    zmq_proxy (front, back, NULL);          /* returns on context shutdown */
    zmq_close (front);
    zmq_close (back);
    return NULL;
}

static void *
s_baseline_worker (void *arg)
{
    baseline_t *b = arg;
    void *worker = zmq_socket (b->ctx, ZMQ_DEALER);
    zmq_connect (worker, b->backend);
    /*  Echo every message, all frames (routing id + payload), as it came. */
    while (true) {
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, worker, 0) < 0) {
            zmq_msg_close (&msg);
            break;
        }
        int more = zmq_msg_more (&msg);
        if (zmq_msg_send (&msg, worker, more ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close (&msg);
            break;
        }
    }
    zmq_close (worker);
    return NULL;
}

static int
s_bench_baseline (const bench_options_t *opt, bench_result_t *result)
{
    baseline_t b = { .ctx = zmq_ctx_new () };
    pthread_mutex_init (&b.lock, NULL);
    pthread_cond_init (&b.cond, NULL);
    pthread_t proxy, worker;
    pthread_create (&proxy, NULL, s_baseline_proxy, &b);
    pthread_mutex_lock (&b.lock);
    while (!b.ready)
        pthread_cond_wait (&b.cond, &b.lock);
    pthread_mutex_unlock (&b.lock);
    pthread_create (&worker, NULL, s_baseline_worker, &b);

    void *client = zmq_socket (b.ctx, ZMQ_DEALER);
    zmq_connect (client, b.frontend);
    char *payload = calloc (1, opt->size);
    char reply [4096];
    int timeout = 5000;
    zmq_setsockopt (client, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int rc = -1;

    /*  Warm up: the first exchange also waits for the connections.  */
    if (zmq_send (client, payload, opt->size, 0) < 0
    ||  zmq_recv (client, reply, sizeof reply, 0) < 0)
        goto done;

    long sent = 0, done = 0;
    int64_t start = s_now_ns ();
    while (done < opt->requests) {
        while (sent < opt->requests && sent - done < opt->inflight) {
            zmq_send (client, payload, opt->size, 0);
            sent++;
        }
        if (zmq_recv (client, reply, sizeof reply, 0) < 0)
            goto done;
        done++;
    }
    result->rate = opt->requests / ((s_now_ns () - start) / 1e9);

    int64_t *samples = malloc ((size_t) opt->latency_requests * sizeof *samples);
    for (long i = 0; i < opt->latency_requests; i++) {
        int64_t t0 = s_now_ns ();
        zmq_send (client, payload, opt->size, 0);
        if (zmq_recv (client, reply, sizeof reply, 0) < 0)
            result->failed++;
        samples [i] = s_now_ns () - t0;
    }
    s_percentiles (samples, opt->latency_requests, result);
    free (samples);
    rc = 0;
done:
    free (payload);
    zmq_close (client);
    zmq_ctx_shutdown (b.ctx);
    pthread_join (worker, NULL);
    pthread_join (proxy, NULL);
    zmq_ctx_term (b.ctx);
    pthread_mutex_destroy (&b.lock);
    pthread_cond_destroy (&b.cond);
    return rc;
}

/*  --------------------------------------------------------------------
    Command line.  */

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: sb bench [--baseline] [--requests N] [--inflight N] [--size BYTES]\n"
        "                [--latency-requests N]\n"
        "\n"
        "Measures broker-routed request/reply in this process over TCP loopback:\n"
        "pipelined throughput (N requests, --inflight outstanding) and latency with\n"
        "one request in flight.  --baseline also measures a bare libzmq ROUTER/DEALER\n"
        "proxy with an echo worker in the same run and prints the ratio.\n"
        "\n"
        "defaults: --requests 200000 --inflight 100 --size 64 --latency-requests 5000\n"
        "\n"
        "examples:\n"
        "  sb bench --baseline\n"
        "  sb bench --requests 20000 --inflight 10\n"
        "\n"
        "The last line is: bench: <req/s> req/s p50=<us>us p99=<us>us baseline=<req/s> ratio=<x>\n");
}

static int
s_parse_long (const char *text, long min, long max, long *value)
{
    char *end;
    long v = strtol (text, &end, 10);
    if (*text == 0 || *end || v < min || v > max)
        return -1;
    *value = v;
    return 0;
}

int
sb_cmd_bench (int argc, char **argv)
{
    bench_options_t opt = { 200000, 5000, 100, 64, false };
    static const struct option options [] = {
        { "baseline", no_argument, NULL, 'b' },
        { "requests", required_argument, NULL, 'n' },
        { "inflight", required_argument, NULL, 'i' },
        { "size", required_argument, NULL, 's' },
        { "latency-requests", required_argument, NULL, 'l' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    long value;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
            case 'b': opt.baseline = true; break;
            case 'n':
                if (s_parse_long (optarg, 1, 100000000, &opt.requests))
                    goto bad_value;
                break;
            case 'i':
                if (s_parse_long (optarg, 1, 10000, &value))
                    goto bad_value;
                opt.inflight = (int) value;
                break;
            case 's':
                if (s_parse_long (optarg, 8, 4096, &value))
                    goto bad_value;
                opt.size = (size_t) value;
                break;
            case 'l':
                if (s_parse_long (optarg, 1, 10000000, &opt.latency_requests))
                    goto bad_value;
                break;
            case 'h': s_usage (stdout); return SB_EXIT_OK;
            default: s_usage (stderr); return SB_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "sb bench: unexpected argument '%s'\n", argv [optind]);
        return SB_EXIT_USAGE;
    }

    bench_result_t sb = { 0 }, base = { 0 };
    printf ("switchboard: %ld requests, %d in flight, %zu-byte body\n",
            opt.requests, opt.inflight, opt.size);
    fflush (stdout);
    if (s_bench_switchboard (&opt, &sb))
        return SB_EXIT_FAILURE;
    printf ("switchboard: %.0f req/s pipelined, p50=%.1fus p99=%.1fus, %ld failed\n",
            sb.rate, sb.p50_us, sb.p99_us, sb.failed);
    if (opt.baseline) {
        if (s_bench_baseline (&opt, &base)) {
            fprintf (stderr, "sb bench: the baseline proxy did not answer\n");
            return SB_EXIT_FAILURE;
        }
        printf ("baseline:    %.0f req/s pipelined, p50=%.1fus p99=%.1fus (libzmq ROUTER/DEALER proxy)\n",
                base.rate, base.p50_us, base.p99_us);
    }
    printf ("bench: %.0f req/s p50=%.0fus p99=%.0fus baseline=%.0f ratio=%.2f\n",
            sb.rate, sb.p50_us, sb.p99_us, base.rate, base.rate > 0 ? sb.rate / base.rate : 0.0);
    return sb.failed ? SB_EXIT_FAILURE : SB_EXIT_OK;

bad_value:
    fprintf (stderr, "sb bench: bad option value '%s' (see sb bench --help)\n", optarg);
    return SB_EXIT_USAGE;
}
