/*  cmd_bench.c — `sb bench`: request/reply throughput and latency.

    Runs everything in this one process, over TCP on loopback, so the two
    sides of a comparison share the machine at the same moment:

    - Switchboard: a broker (broker/broker.h), one instance of an in-process
      echo service (runtime/host/instance.h) and a client (switchboard.h) that
      keeps --inflight requests outstanding;
    - with --baseline, the bare libzmq equivalent: a ROUTER/DEALER
      zmq_proxy with a DEALER echo worker, and a DEALER client keeping the
      same number of requests outstanding.

    --secure measures the same again secure, after the plain run: a
    temporary keys directory (an authority and three members: the broker,
    the service, the client, each with a certificate) is made and removed
    by the bench; every link is a CURVE client of the broker, admitted by
    the broker's ZAP handler, and bodies are sealed end to end (sealer.h:
    a service instance with keys refuses plaintext requests, so a reply
    proves the request was sealed).  With --baseline the bare proxy is
    measured again with CURVE on both of its links (client to ROUTER,
    worker to DEALER), which is what secure Switchboard is compared with.
    The secure result line comes last:
    bench-secure: <req/s> req/s p50=<us>us p99=<us>us plain=<req/s>
                  secure/plain=<x> baseline_curve=<req/s> ratio=<x>

    Each side is measured pipelined (throughput) and with one request in
    flight (latency percentiles).  The last line is the one scripts read:
    bench: <req/s> req/s p50=<us>us p99=<us>us baseline=<req/s> ratio=<x>

    With --rounds N the two sides take turns N times (each round a share
    of the requests, set up anew), so that a change of load on a shared
    machine weighs on both alike rather than on whichever ran second; a
    side's rate is its requests over its summed pipelined time, its
    percentiles the mean of the rounds'.  The default is one round (as
    before): on a loaded 2-core machine 5 rounds gave the bare proxy
    higher rates than one long run did, which is not understood yet.
*/
#include "commands.h"
#include "broker/broker.h"
#include "host/instance.h"
#include "switchboard.h"

#include "security/cert.h"
#include "security/identity.h"
#include "bus/link.h"              /* SB_LINK_HWM, for the baseline */

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    long requests;          /* pipelined requests per side */
    long latency_requests;  /* single-in-flight requests per side */
    int inflight;
    size_t size;            /* request body bytes */
    bool baseline;
    bool secure;            /* also measure with CURVE and sealing */
    int rounds;             /* turns each side takes */
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
    Keys for --secure: a temporary directory holding authority.pub and,
    for each member, NAME.key and NAME.cert (docs/security.md 2.2).  */

#define S_BROKER_MEMBER "bench-broker"
#define S_SERVICE_MEMBER "bench-service"
#define S_CLIENT_MEMBER "bench-client"

typedef struct {
    char dir [PATH_MAX - 64];
} bench_keys_t;

static const struct {
    const char *name, *offer, *call;
} s_members [] = {
    { S_BROKER_MEMBER, NULL, "*" },
    { S_SERVICE_MEMBER, "bench", "sys" },
    { S_CLIENT_MEMBER, NULL, "bench,sys" },
};
#define S_MEMBERS (sizeof s_members / sizeof s_members [0])

static void
s_keys_remove (bench_keys_t *keys)
{
    if (!*keys->dir)
        return;
    char path [PATH_MAX];
    for (size_t i = 0; i < S_MEMBERS; i++) {
        snprintf (path, sizeof path, "%s/%s.key", keys->dir, s_members [i].name);
        unlink (path);
        snprintf (path, sizeof path, "%s/%s.cert", keys->dir, s_members [i].name);
        unlink (path);
    }
    snprintf (path, sizeof path, "%s/%s", keys->dir, SB_IDENTITY_AUTHORITY_FILE);
    unlink (path);
    rmdir (keys->dir);
    *keys->dir = 0;
}

/*  Makes the directory and its keys; 0, or -1 with err (nothing left).  */
static int
s_keys_make (bench_keys_t *keys, sb_error_t *err)
{
    const char *tmp = getenv ("TMPDIR");
    snprintf (keys->dir, sizeof keys->dir, "%s/sb-bench-keys.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp (keys->dir)) {
        *keys->dir = 0;
        return sb_error_set (err, SB_E_INTERNAL, "cannot make a keys directory: %s",
                             strerror (errno));
    }
    char path [PATH_MAX];
    sb_keys_t *authority = sb_keys_new_authority ("authority", err);
    sb_cert_t *cert = malloc (sizeof *cert);
    int rc = authority && cert ? 0 : -1;
    if (!cert)
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
    snprintf (path, sizeof path, "%s/%s", keys->dir, SB_IDENTITY_AUTHORITY_FILE);
    if (rc == 0)
        rc = sb_keys_save_public (authority, path, err);
    for (size_t i = 0; i < S_MEMBERS && rc == 0; i++) {
        sb_keys_t *member = sb_keys_new_member (s_members [i].name, err);
        snprintf (path, sizeof path, "%s/%s.key", keys->dir, s_members [i].name);
        rc = member ? sb_keys_save_secret (member, path, err) : -1;
        if (rc == 0)
            rc = sb_cert_init (cert, member, (uint64_t) time (NULL), 3600, err);
        if (rc == 0 && s_members [i].offer)
            rc = sb_cert_add_offer_list (cert, s_members [i].offer, err);
        if (rc == 0)
            rc = sb_cert_add_call_list (cert, s_members [i].call, err);
        snprintf (path, sizeof path, "%s/%s.cert", keys->dir, s_members [i].name);
        if (rc == 0)
            rc = sb_cert_sign (cert, authority, err) || sb_cert_save (cert, path, err) ? -1 : 0;
        sb_keys_destroy (&member);
    }
    free (cert);
    sb_keys_destroy (&authority);
    if (rc)
        s_keys_remove (keys);
    return rc;
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

/*  keys NULL: plaintext; else everyone secure with those keys.  */
static int
s_bench_switchboard (const bench_options_t *opt, const bench_keys_t *keys,
                     bench_result_t *result)
{
    sb_error_t err;
    sb_broker_config_t broker_config = { .bind = "tcp://127.0.0.1:*", .name = "bench" };
    if (keys) {
        broker_config.secure = true;
        broker_config.keys_dir = keys->dir;
        broker_config.member = S_BROKER_MEMBER;
    }
    sb_broker_t *broker = sb_broker_new (&broker_config, &err);
    if (!broker) {
        fprintf (stderr, "sb bench: broker: %s\n", err.text);
        return -1;
    }
    /*  Secure: "ENDPOINT#KEY", as clients take a broker's key.  */
    char endpoint [SB_ENDPOINT_MAX + 2 * SB_KEY_SIZE + 2];
    snprintf (endpoint, sizeof endpoint, "%s", sb_broker_endpoint (broker));
    if (keys) {
        size_t len = strlen (endpoint);
        endpoint [len] = '#';
        sodium_bin2hex (endpoint + len + 1, sizeof endpoint - len - 1,
                        sb_broker_public_key (broker), SB_KEY_SIZE);
    }
    sb_identity_t *service_identity = keys ? sb_identity_load (keys->dir, S_SERVICE_MEMBER, &err)
                                           : NULL;
    sb_instance_options_t instance_options = { .identity = service_identity };
    sb_instance_t *instance = !keys || service_identity
                            ? sb_instance_start_with (&s_bench_service, 0, NULL, endpoint,
                                                      opt->inflight * 2, &instance_options, &err)
                            : NULL;
    sb_client_options_t client_options = { .endpoints = endpoint, .name = "bench-client" };
    if (keys) {
        client_options.keys = keys->dir;
        client_options.member = S_CLIENT_MEMBER;
    }
    sb_client_t *client = instance ? sb_client_new (&client_options, &err) : NULL;
    if (!client) {
        fprintf (stderr, "sb bench: %s\n", err.text);
        sb_instance_stop (&instance);
        sb_identity_destroy (&service_identity);
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
    sb_identity_destroy (&service_identity);
    sb_broker_destroy (&broker);
    return rc;
}

/*  --------------------------------------------------------------------
    Baseline: bare libzmq.  Its own context, so that zmq_ctx_shutdown
    stops the proxy and worker threads when the client is done.  Like the
    Switchboard side it has four threads (client, proxy, worker, one
    libzmq I/O thread), and the same high-water marks: the broker's on the
    ROUTER (and the proxy's DEALER), the runtime's links' on the client
    and worker DEALERs.  */

#define S_BROKER_HWM 100000             /* broker/engine.h HWM */

static void
s_hwm (void *socket, int hwm)
{
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
}

typedef struct {
    void *ctx;
    char frontend [256];
    char backend [256];
    bool curve;                     /* CURVE on both links */
    char server_public [41];        /* Z85: the proxy's key, both sockets */
    char server_secret [41];
    int ready;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} baseline_t;

/*  Makes a socket a CURVE server (the proxy's two sockets).  */
static void
s_curve_server (const baseline_t *b, void *socket)
{
    int one = 1;
    zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, b->server_secret, 40);
}

/*  Makes a socket a CURVE client of the proxy with a fresh keypair.  */
static void
s_curve_client (const baseline_t *b, void *socket)
{
    char public_key [41], secret_key [41];
    zmq_curve_keypair (public_key, secret_key);
    zmq_setsockopt (socket, ZMQ_CURVE_SERVERKEY, b->server_public, 40);
    zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, public_key, 40);
    zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, secret_key, 40);
}

static void *
s_baseline_proxy (void *arg)
{
    baseline_t *b = arg;
    void *front = zmq_socket (b->ctx, ZMQ_ROUTER);
    void *back = zmq_socket (b->ctx, ZMQ_DEALER);
    s_hwm (front, S_BROKER_HWM);
    s_hwm (back, S_BROKER_HWM);
    if (b->curve) {
        s_curve_server (b, front);
        s_curve_server (b, back);
    }
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
    s_hwm (worker, SB_LINK_HWM);
    if (b->curve)
        s_curve_client (b, worker);
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

/*  curve: CURVE on both links of the proxy.  */
static int
s_bench_baseline (const bench_options_t *opt, bool curve, bench_result_t *result)
{
    baseline_t b = { .ctx = zmq_ctx_new (), .curve = curve };
    if (curve)
        zmq_curve_keypair (b.server_public, b.server_secret);
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
    s_hwm (client, SB_LINK_HWM);
    if (curve)
        s_curve_client (&b, client);
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
    Rounds: Switchboard (with keys when secure), then the baseline (with
    CURVE when secure), opt->rounds times over shares of the requests.  */

static int
s_bench_rounds (const bench_options_t *opt, const bench_keys_t *keys,
                bench_result_t *sb, bench_result_t *base)
{
    long rounds = opt->rounds < opt->requests ? opt->rounds : opt->requests;
    double sb_seconds = 0, base_seconds = 0;
    for (long round = 0; round < rounds; round++) {
        bench_options_t share = *opt;
        share.requests = opt->requests / rounds + (round < opt->requests % rounds);
        share.latency_requests = opt->latency_requests / rounds
                               + (round < opt->latency_requests % rounds);
        if (share.latency_requests < 1)
            share.latency_requests = 1;
        bench_result_t r = { 0 };
        if (s_bench_switchboard (&share, keys, &r))
            return -1;
        sb_seconds += share.requests / r.rate;
        sb->p50_us += r.p50_us / rounds;
        sb->p99_us += r.p99_us / rounds;
        sb->failed += r.failed;
        if (!opt->baseline)
            continue;
        r = (bench_result_t) { 0 };
        if (s_bench_baseline (&share, keys != NULL, &r)) {
            fprintf (stderr, "sb bench: the %sbaseline proxy did not answer\n", keys ? "CURVE " : "");
            return -1;
        }
        base_seconds += share.requests / r.rate;
        base->p50_us += r.p50_us / rounds;
        base->p99_us += r.p99_us / rounds;
    }
    sb->rate = opt->requests / sb_seconds;
    if (opt->baseline)
        base->rate = opt->requests / base_seconds;
    return 0;
}

/*  --------------------------------------------------------------------
    Command line.  */

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: sb bench [--baseline] [--secure] [--requests N] [--inflight N]\n"
        "                [--size BYTES] [--latency-requests N] [--rounds N]\n"
        "\n"
        "Measures broker-routed request/reply in this process over TCP loopback:\n"
        "pipelined throughput (N requests, --inflight outstanding) and latency with\n"
        "one request in flight.  --baseline also measures a bare libzmq ROUTER/DEALER\n"
        "proxy with an echo worker in the same run and prints the ratio.\n"
        "--secure then measures the same with CURVE on every link and bodies sealed\n"
        "end to end (keys made in a temporary directory and removed), and with\n"
        "--baseline the bare proxy with CURVE on both links; it prints secure/plain\n"
        "and secure/bare-CURVE ratios.  With --rounds N the sides take turns N times\n"
        "over shares of the requests, so that load from elsewhere weighs on both.\n"
        "\n"
        "defaults: --requests 200000 --inflight 100 --size 64 --latency-requests 5000\n"
        "          --rounds 1\n"
        "\n"
        "examples:\n"
        "  sb bench --baseline\n"
        "  sb bench --requests 20000 --inflight 10\n"
        "  sb bench --secure --baseline\n"
        "\n"
        "The last line is: bench: <req/s> req/s p50=<us>us p99=<us>us baseline=<req/s> ratio=<x>\n"
        "With --secure it is followed by: bench-secure: <req/s> req/s p50=<us>us p99=<us>us\n"
        "  plain=<req/s> secure/plain=<x> baseline_curve=<req/s> ratio=<x>\n");
}

/*  The --secure half, after the plain one (sb: its result).  */
static int
s_bench_secure (const bench_options_t *opt, const bench_result_t *sb)
{
    bench_keys_t keys = { "" };
    sb_error_t err = { 0 };
    if (s_keys_make (&keys, &err)) {
        fprintf (stderr, "sb bench: --secure: %s\n", err.text);
        return SB_EXIT_FAILURE;
    }
    bench_result_t secure = { 0 }, curve = { 0 };
    printf ("secure:      CURVE on every link, bodies sealed end to end\n");
    fflush (stdout);
    int rc = s_bench_rounds (opt, &keys, &secure, &curve);
    s_keys_remove (&keys);
    if (rc)
        return SB_EXIT_FAILURE;
    printf ("secure:      %.0f req/s pipelined, p50=%.1fus p99=%.1fus, %ld failed\n",
            secure.rate, secure.p50_us, secure.p99_us, secure.failed);
    if (opt->baseline) {
        printf ("curve base:  %.0f req/s pipelined, p50=%.1fus p99=%.1fus "
                "(libzmq ROUTER/DEALER proxy, CURVE on both links)\n",
                curve.rate, curve.p50_us, curve.p99_us);
    }
    printf ("bench-secure: %.0f req/s p50=%.0fus p99=%.0fus plain=%.0f secure/plain=%.2f "
            "baseline_curve=%.0f ratio=%.2f\n",
            secure.rate, secure.p50_us, secure.p99_us, sb->rate,
            sb->rate > 0 ? secure.rate / sb->rate : 0.0, curve.rate,
            curve.rate > 0 ? secure.rate / curve.rate : 0.0);
    return sb->failed || secure.failed ? SB_EXIT_FAILURE : SB_EXIT_OK;
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
    bench_options_t opt = { 200000, 5000, 100, 64, false, false, 1 };
    static const struct option options [] = {
        { "baseline", no_argument, NULL, 'b' },
        { "secure", no_argument, NULL, 'S' },
        { "requests", required_argument, NULL, 'n' },
        { "inflight", required_argument, NULL, 'i' },
        { "size", required_argument, NULL, 's' },
        { "latency-requests", required_argument, NULL, 'l' },
        { "rounds", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    long value;
    optind = 1;
    while ((c = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
            case 'b': opt.baseline = true; break;
            case 'S': opt.secure = true; break;
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
            case 'r':
                if (s_parse_long (optarg, 1, 100, &value))
                    goto bad_value;
                opt.rounds = (int) value;
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
    if (s_bench_rounds (&opt, NULL, &sb, &base))
        return SB_EXIT_FAILURE;
    printf ("switchboard: %.0f req/s pipelined, p50=%.1fus p99=%.1fus, %ld failed\n",
            sb.rate, sb.p50_us, sb.p99_us, sb.failed);
    if (opt.baseline) {
        printf ("baseline:    %.0f req/s pipelined, p50=%.1fus p99=%.1fus (libzmq ROUTER/DEALER proxy)\n",
                base.rate, base.p50_us, base.p99_us);
    }
    printf ("bench: %.0f req/s p50=%.0fus p99=%.0fus baseline=%.0f ratio=%.2f\n",
            sb.rate, sb.p50_us, sb.p99_us, base.rate, base.rate > 0 ? sb.rate / base.rate : 0.0);
    if (opt.secure)
        return s_bench_secure (&opt, &sb);
    return sb.failed ? SB_EXIT_FAILURE : SB_EXIT_OK;

bad_value:
    fprintf (stderr, "sb bench: bad option value '%s' (see sb bench --help)\n", optarg);
    return SB_EXIT_USAGE;
}
