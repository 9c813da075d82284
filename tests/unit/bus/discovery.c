/*  runtime_discovery.t — clients and service instances find the brokers
    of their cluster by beacon, keep static seeds, and drop brokers that
    leave or fall silent.

    In-process brokers on free loopback ports; each broker's beacon is
    sent by an announcer thread of this test (brokers do not announce by
    themselves yet) on loopback broadcast, on a free UDP port and with a
    cluster name of this process, at 100 ms intervals so that a silent
    broker is gone after 300 ms.  Which broker a call went through is
    read from the `broker` name sys.stats answers with, and per broker
    from its own sys.stats counters.
*/
#include "beacons.h"
#include "broker/broker.h"
#include "bus/discovery.h"
#include "host/instance.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define INTERVAL_MS 100
#define WAIT_MS 10000

static char s_cluster [64];
static int s_port;

/*  --------------------------------------------------------------------
    Announcers: one thread each, sending a broker's beacon.  */

typedef struct {
    sb_beacon_t *beacon;
    pthread_t thread;
    volatile int stop;              /* 1: fall silent, 2: send leaving */
} announcer_t;

static void *
s_announce (void *arg)
{
    announcer_t *self = arg;
    while (!__atomic_load_n (&self->stop, __ATOMIC_ACQUIRE)) {
        sb_beacon_tick (self->beacon, zclock_mono ());
        zclock_sleep (5);
    }
    if (self->stop == 2)
        sb_beacon_leave (self->beacon);
    return NULL;
}

static announcer_t *
s_announcer_new (const char *cluster, const char *endpoint)
{
    announcer_t *self = calloc (1, sizeof *self);
    self->beacon = bt_beacon (s_port, cluster, endpoint, INTERVAL_MS);
    if (!self->beacon) {
        free (self);
        return NULL;
    }
    pthread_create (&self->thread, NULL, s_announce, self);
    return self;
}

/*  Stops announcing; `leaving` sends a leaving beacon, else it just
    falls silent.  */
static void
s_announcer_stop (announcer_t **self_p, bool leaving)
{
    announcer_t *self = *self_p;
    if (!self)
        return;
    __atomic_store_n (&self->stop, leaving ? 2 : 1, __ATOMIC_RELEASE);
    pthread_join (self->thread, NULL);
    sb_beacon_destroy (&self->beacon);
    free (self);
    *self_p = NULL;
}

/*  --------------------------------------------------------------------
    Brokers, a service, and which broker answers.  */

static sb_broker_t *
s_broker (const char *name)
{
    sb_broker_config_t config = { .bind = "tcp://127.0.0.1:*", .name = name,
                                  .heartbeat_ms = 200 };
    sb_error_t err = { 0 };
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker)
        tap_diag ("broker %s: %s", name, err.text);
    return broker;
}

static int
s_ping (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_str_with_body (pk, "pong", 4);
    return sb_reply_send (req);
}

static const sb_method_t s_methods [] = {
    { "ping", s_ping, SB_METHOD_IDEMPOTENT },
    { NULL, NULL, 0 }
};

static const sb_service_t s_pinger = {
    .abi_version = SB_ABI_VERSION, .name = "pinger", .version = "1", .methods = s_methods
};

/*  A string value of a decoded map, into out ("" if absent).  */
static void
s_map_str (const msgpack_object *map, const char *key, char *out, size_t size)
{
    out [0] = 0;
    if (map->type != MSGPACK_OBJECT_MAP)
        return;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, strlen (key)) == 0
        &&  kv->val.type == MSGPACK_OBJECT_STR)
            snprintf (out, size, "%.*s", (int) kv->val.via.str.size, kv->val.via.str.ptr);
    }
}

static int64_t
s_map_uint (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, strlen (key)) == 0
        &&  kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return (int64_t) kv->val.via.u64;
    }
    return -1;
}

/*  The name of the broker that answered one sys.stats call ("" on error). */
static void
s_which (sb_client_t *client, char *name, size_t size)
{
    sb_reply_t *reply = NULL;
    sb_error_t err = { 0 };
    name [0] = 0;
    if (sb_client_call (client, "sys", "stats", NULL, 0, 2000, &reply, &err) == 0) {
        s_map_str (&reply->body, "broker", name, size);
        sb_reply_destroy (&reply);
    }
}

/*  Makes up to `calls` sys.stats calls, 10 ms apart (so that beacons
    have time to arrive), for WAIT_MS at most; counts how many went
    through each named broker (names [i] -> counts [i]).  Stops early
    when every broker got `enough`.  */
static void
s_spread (sb_client_t *client, int calls, int enough, const char **names, int *counts, int count)
{
    for (int i = 0; i < count; i++)
        counts [i] = 0;
    int64_t end = zclock_mono () + WAIT_MS;
    for (int c = 0; c < calls && zclock_mono () < end; c++) {
        if (c > 0)
            sb_client_dispatch (client, 10);
        char name [80];
        s_which (client, name, sizeof name);
        bool all = true;
        for (int i = 0; i < count; i++) {
            if (streq (name, names [i]))
                counts [i]++;
            all = all && counts [i] >= enough;
        }
        if (all)
            return;
    }
}

/*  Waits (dispatching) for up to ms.  */
static void
s_idle (sb_client_t *client, int ms)
{
    int64_t end = zclock_mono () + ms;
    while (zclock_mono () < end)
        sb_client_dispatch (client, 20);
}

/*  The `requests` counter of one broker, asked directly.  */
static int64_t
s_requests (sb_broker_t *broker)
{
    sb_client_options_t options = { .endpoints = sb_broker_endpoint (broker), .timeout_ms = 3000 };
    sb_error_t err = { 0 };
    sb_client_t *client = sb_client_new (&options, &err);
    int64_t requests = -1;
    sb_reply_t *reply = NULL;
    if (client && sb_client_call (client, "sys", "stats", NULL, 0, 3000, &reply, &err) == 0) {
        requests = s_map_uint (&reply->body, "requests");
        sb_reply_destroy (&reply);
    }
    sb_client_destroy (&client);
    return requests;
}

/*  --------------------------------------------------------------------
    Tests.  */

static void
s_test_config (void)
{
    sb_error_t err = { 0 };
    sb_peer_t *peer = sb_peer_new_empty ("config-test", &err);
    sb_discovery_config_t off = { .cluster = s_cluster, .beacon = "off" };
    tap_ok (sb_discovery_new (&off, peer, &err) == NULL && err.code == SB_E_BAD_REQUEST,
            "beacons off and no seed is refused: %s", err.text);
    off.seeds = "tcp://127.0.0.1:1, tcp://127.0.0.1:2,tcp://127.0.0.1:1";
    sb_discovery_t *discovery = sb_discovery_new (&off, peer, &err);
    tap_ok (discovery && sb_discovery_fd (discovery) == -1 && sb_discovery_beacon (discovery) == NULL,
            "beacons off with seeds: no socket");
    tap_is_int (sb_peer_links (peer), 2, "each seed linked once");
    sb_discovery_destroy (&discovery);
    sb_discovery_config_t bad = { .cluster = s_cluster, .beacon = "no-such-iface0", .port = s_port };
    tap_ok (sb_discovery_new (&bad, peer, &err) == NULL, "an unknown interface is refused: %s", err.text);
    sb_client_options_t options = { .timeout_ms = 100 };
    tap_ok (sb_client_new (&options, &err) == NULL, "a client without endpoints nor beacons is refused");
    sb_peer_destroy (&peer);
}

/*  A client of the cluster uses both brokers, loses the one that leaves,
    gets it back when it announces again, loses it again when it falls
    silent.  A service instance found by beacons serves through both.  */
static void
s_test_two_brokers (void)
{
    sb_broker_t *b1 = s_broker ("disc-b1");
    sb_broker_t *b2 = s_broker ("disc-b2");
    if (!b1 || !b2) {
        tap_ok (false, "brokers start");
        sb_broker_destroy (&b1);
        sb_broker_destroy (&b2);
        return;
    }
    announcer_t *a1 = s_announcer_new (s_cluster, sb_broker_endpoint (b1));
    announcer_t *a2 = s_announcer_new (s_cluster, sb_broker_endpoint (b2));
    tap_ok (a1 && a2, "announcers start");

    sb_client_options_t options = { .cluster = s_cluster, .beacon = "lo", .beacon_port = s_port,
                                    .timeout_ms = 3000, .name = "disc-client" };
    sb_error_t err = { 0 };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (client != NULL, "client with beacons only starts: %s", err.text);
    if (!client)
        return;
    const char *names [2] = { "disc-b1", "disc-b2" };
    int counts [2];
    s_spread (client, 200, 3, names, counts, 2);
    tap_ok (counts [0] >= 3 && counts [1] >= 3, "calls go through both discovered brokers (%d, %d)",
            counts [0], counts [1]);

    /*  A service instance of the cluster (no endpoints at all).  */
    sb_instance_options_t inst_options = { .cluster = s_cluster, .beacon = "lo",
                                           .beacon_port = s_port };
    sb_instance_t *pinger = sb_instance_start_with (&s_pinger, 0, NULL, NULL, 10, &inst_options, &err);
    tap_ok (pinger != NULL, "instance with beacons only starts: %s", err.text);
    int64_t before1 = s_requests (b1), before2 = s_requests (b2);
    int ok = 0;
    int64_t end = zclock_mono () + WAIT_MS;
    for (int i = 0; i < 400 && zclock_mono () < end && ok < 40; i++) {
        sb_reply_t *reply = NULL;
        if (sb_client_call (client, "pinger", "ping", NULL, 0, 2000, &reply, &err) == 0) {
            ok++;
            sb_reply_destroy (&reply);
        }
        else
            zclock_sleep (20);      /* the instance is still being found */
    }
    int64_t after1 = s_requests (b1), after2 = s_requests (b2);
    tap_is_int (ok, 40, "the instance found by beacons answers");
    tap_ok (after1 - before1 >= 10 && after2 - before2 >= 10,
            "both brokers carried requests (%lld, %lld)",
            (long long) (after1 - before1), (long long) (after2 - before2));

    /*  b2 leaves: the client stops using it at once.  */
    s_announcer_stop (&a2, true);
    s_idle (client, 3 * INTERVAL_MS);
    s_spread (client, 20, 20, names, counts, 2);
    tap_ok (counts [0] == 20 && counts [1] == 0, "after b2's leaving beacon only b1 is used (%d, %d)",
            counts [0], counts [1]);
    /*  The instance dropped b2 too: pinger calls still all succeed.  */
    ok = 0;
    for (int i = 0; i < 20; i++) {
        sb_reply_t *reply = NULL;
        if (sb_client_call (client, "pinger", "ping", NULL, 0, 2000, &reply, &err) == 0) {
            ok++;
            sb_reply_destroy (&reply);
        }
    }
    tap_is_int (ok, 20, "the instance still answers through b1");

    /*  b2 announces again (a new broker id, as after a restart).  */
    a2 = s_announcer_new (s_cluster, sb_broker_endpoint (b2));
    s_spread (client, 200, 3, names, counts, 2);
    tap_ok (counts [1] >= 3, "b2 is used again once it announces (%d, %d)", counts [0], counts [1]);

    /*  b2 falls silent: gone after 3 intervals.  */
    s_announcer_stop (&a2, false);
    s_idle (client, 6 * INTERVAL_MS);
    s_spread (client, 20, 20, names, counts, 2);
    tap_ok (counts [0] == 20 && counts [1] == 0, "after b2 falls silent only b1 is used (%d, %d)",
            counts [0], counts [1]);

    sb_instance_stop (&pinger);
    sb_client_destroy (&client);
    s_announcer_stop (&a1, true);
    sb_broker_destroy (&b1);
    sb_broker_destroy (&b2);
}

/*  A seed plus beacons: the seed's own beacon leaving does not drop it. */
static void
s_test_seed (void)
{
    sb_broker_t *b1 = s_broker ("seed-b1");
    sb_broker_t *b2 = s_broker ("seed-b2");
    if (!b1 || !b2) {
        tap_ok (false, "brokers start");
        sb_broker_destroy (&b1);
        sb_broker_destroy (&b2);
        return;
    }
    char seed [256];
    snprintf (seed, sizeof seed, "%s", sb_broker_endpoint (b2));
    announcer_t *a1 = s_announcer_new (s_cluster, sb_broker_endpoint (b1));
    announcer_t *a2 = s_announcer_new (s_cluster, seed);
    sb_client_options_t options = { .endpoints = seed, .cluster = s_cluster, .beacon = "lo",
                                    .beacon_port = s_port, .timeout_ms = 3000 };
    sb_error_t err = { 0 };
    sb_client_t *client = sb_client_new (&options, &err);
    tap_ok (client != NULL, "client with a seed and beacons starts");
    if (!client)
        return;
    const char *names [2] = { "seed-b1", "seed-b2" };
    int counts [2];
    s_spread (client, 200, 3, names, counts, 2);
    tap_ok (counts [0] >= 3 && counts [1] >= 3, "seed and discovered broker both used (%d, %d)",
            counts [0], counts [1]);
    s_announcer_stop (&a2, true);
    s_announcer_stop (&a1, true);
    s_idle (client, 3 * INTERVAL_MS);
    s_spread (client, 20, 20, names, counts, 2);
    tap_ok (counts [1] == 20, "the seed stays after its beacon left; the discovered one goes (%d, %d)",
            counts [0], counts [1]);
    sb_client_destroy (&client);
    sb_broker_destroy (&b1);
    sb_broker_destroy (&b2);
}

/*  Foreign clusters, non-tcp endpoints and wildcard hosts, seen through
    the discovery API directly.  */
static void
s_test_foreign (void)
{
    sb_broker_t *b1 = s_broker ("own-b1");
    sb_broker_t *b3 = s_broker ("foreign-b3");
    if (!b1 || !b3) {
        tap_ok (false, "brokers start");
        sb_broker_destroy (&b1);
        sb_broker_destroy (&b3);
        return;
    }
    /*  Our broker announces a wildcard host: linked at the sender address. */
    const char *own = sb_broker_endpoint (b1);
    char wildcard [256];
    snprintf (wildcard, sizeof wildcard, "tcp://0.0.0.0%s", strrchr (own, ':'));
    char other [80];
    snprintf (other, sizeof other, "%s-other", s_cluster);
    announcer_t *a1 = s_announcer_new (s_cluster, wildcard);
    announcer_t *a3 = s_announcer_new (other, sb_broker_endpoint (b3));
    announcer_t *a4 = s_announcer_new (s_cluster, "ipc:///tmp/sb-discovery-nowhere");

    sb_error_t err = { 0 };
    sb_peer_t *peer = sb_peer_new_empty ("foreign-test", &err);
    sb_discovery_config_t config = { .cluster = s_cluster, .port = s_port };
    sb_discovery_t *discovery = sb_discovery_new (&config, peer, &err);
    tap_ok (discovery != NULL, "discovery starts: %s", err.text);
    if (!discovery)
        return;
    sb_discovery_counters_t counters;
    sb_beacon_counters_t beacon;
    int64_t end = zclock_mono () + WAIT_MS;
    do {
        sb_discovery_wait (discovery, 50);
        sb_discovery_counters (discovery, &counters);
        sb_beacon_counters (sb_discovery_beacon (discovery), &beacon);
    } while (zclock_mono () < end
          && !(sb_peer_links_alive (peer) == 1 && counters.refused >= 1
               && beacon.ignored [SB_BEACON_FOREIGN] >= 3));
    tap_is_int (sb_peer_links_alive (peer), 1, "the wildcard broker is linked at the sender address");
    tap_is_int (sb_peer_links (peer), 1, "the foreign cluster's broker is not linked");
    tap_ok (beacon.ignored [SB_BEACON_FOREIGN] >= 3, "foreign beacons are counted as ignored");
    tap_ok (counters.refused >= 1, "a non-tcp endpoint is refused");
    tap_is_int (sb_discovery_brokers (discovery), 1, "one broker known");

    /*  The broker is found again after a falling silent and coming back:
        counters show the round trip.  */
    s_announcer_stop (&a1, false);
    end = zclock_mono () + WAIT_MS;
    while (zclock_mono () < end && sb_peer_links (peer) > 0)
        sb_discovery_wait (discovery, 50);
    sb_discovery_counters (discovery, &counters);
    tap_ok (sb_peer_links (peer) == 0 && counters.gone == 1 && counters.disconnected == 1,
            "silent broker unlinked (gone %llu, disconnected %llu)",
            (unsigned long long) counters.gone, (unsigned long long) counters.disconnected);

    sb_discovery_destroy (&discovery);
    sb_peer_destroy (&peer);
    s_announcer_stop (&a3, true);
    s_announcer_stop (&a4, true);
    sb_broker_destroy (&b1);
    sb_broker_destroy (&b3);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    snprintf (s_cluster, sizeof s_cluster, "discovery-test-%d", (int) getpid ());
    s_port = bt_free_port ();
    tap_ok (s_port > 0, "a free UDP port");
    s_test_config ();
    s_test_two_brokers ();
    s_test_seed ();
    s_test_foreign ();
    return tap_done ();
}
