/*  broker_cluster.c — brokers of one cluster find each other by beacon on
    loopback (127.255.255.255, a free UDP port), link with PEER/DIRECTORY
    and list each other's brokers and services in sys.services.

    What a user would notice: two brokers started with the same cluster
    name see each other within a fraction of a second, `sb services` on
    either shows both brokers and the services of both; a broker that stops
    (leaving beacon) or falls silent is dropped within 3 beacon intervals;
    a broker of another cluster on the same port is never listed.  */
#include "broker_peer.h"
#include "bus/beacon.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define INTERVAL 100            /* ms: beacons and heartbeats, short for the test */

static int s_port;
static char s_cluster [64], s_foreign [64];

/*  A UDP port free right now on loopback.  */
static int
s_free_udp_port (void)
{
    int fd = socket (AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (fd >= 0 && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0
    &&  getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        port = ntohs (addr.sin_port);
    if (fd >= 0)
        close (fd);
    return port;
}

static sb_broker_t *
s_broker (const char *name, const char *cluster)
{
    sb_broker_config_t config = { 0 };
    config.bind = "tcp://127.0.0.1:*";
    config.name = name;
    config.heartbeat_ms = INTERVAL;
    config.cluster = cluster;
    config.beacon = "lo";
    config.beacon_port = s_port;
    config.beacon_interval_ms = INTERVAL;
    sb_error_t err;
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker) {
        printf ("Bail out! broker %s did not start: %s\n", name, err.text);
        exit (1);
    }
    return broker;
}

static bool
s_str_is (const msgpack_object *o, const char *text)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen (text)
        && !memcmp (o->via.str.ptr, text, o->via.str.size);
}

/*  Does sys.services through sock list broker `name` (and, if service is
    given, that service marked with broker `name`)?  */
static bool
s_lists (zsock_t *sock, const char *name, const char *service)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "services", &u))
        return false;
    bool broker = false, found = service == NULL;
    const msgpack_object *brokers = bp_get (&u.data, "brokers");
    for (uint32_t i = 0; brokers && brokers->type == MSGPACK_OBJECT_ARRAY && i < brokers->via.array.size; i++)
        if (s_str_is (bp_get (&brokers->via.array.ptr [i], "name"), name))
            broker = true;
    for (int list = 0; list < 2; list++) {
        const msgpack_object *services = bp_get (&u.data, list ? "remote" : "services");
        for (uint32_t i = 0; service && services && services->type == MSGPACK_OBJECT_ARRAY
                             && i < services->via.array.size; i++) {
            const msgpack_object *s = &services->via.array.ptr [i];
            if (s_str_is (bp_get (s, "name"), service) && s_str_is (bp_get (s, "broker"), name))
                found = true;
        }
    }
    msgpack_unpacked_destroy (&u);
    return broker && found;
}

/*  Number of entries of sys.services "brokers".  */
static int
s_brokers (zsock_t *sock)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "services", &u))
        return -1;
    const msgpack_object *brokers = bp_get (&u.data, "brokers");
    int n = brokers && brokers->type == MSGPACK_OBJECT_ARRAY ? (int) brokers->via.array.size : -1;
    msgpack_unpacked_destroy (&u);
    return n;
}

/*  Polls until s_lists gives `want`, at most ms; returns the time taken,
    or -1.  */
static int64_t
s_wait_lists (zsock_t *sock, const char *name, const char *service, bool want, int ms)
{
    int64_t start = zclock_mono ();
    while (zclock_mono () - start < ms) {
        if (s_lists (sock, name, service) == want)
            return zclock_mono () - start;
        zclock_sleep (10);
    }
    return -1;
}

int
main (void)
{
    zsys_init ();
    s_port = s_free_udp_port ();
    if (s_port <= 0) {
        printf ("1..0 # SKIP no free UDP port on loopback\n");
        return 0;
    }
    snprintf (s_cluster, sizeof s_cluster, "test-cluster-%d", (int) getpid ());
    snprintf (s_foreign, sizeof s_foreign, "other-cluster-%d", (int) getpid ());
    tap_diag ("beacon port %d, cluster %s", s_port, s_cluster);

    sb_broker_t *c1 = s_broker ("c1", s_cluster);
    sb_broker_t *c2 = s_broker ("c2", s_cluster);
    sb_broker_t *foreign = s_broker ("f1", s_foreign);

    /*  One worker on each broker (kept alive by heartbeats).  */
    zsock_t *w1 = bp_connect (c1), *w2 = bp_connect (c2);
    zsock_t *a1 = bp_connect (c1), *a2 = bp_connect (c2), *af = bp_connect (foreign);
    bp_msg_t m;
    tap_ok (bp_hello (w1, "w1", &m) == 0 && bp_hello (w2, "w2", &m) == 0, "workers welcomed");
    bp_keep (w1, true);
    bp_keep (w2, true);
    bp_ready (w1, "alpha", 2, "run:1");
    bp_ready (w2, "beta", 3, "go:0");
    bp_sync (w1);
    bp_sync (w2);

    int64_t t1 = s_wait_lists (a1, "c2", "beta", true, 2000);
    tap_ok (t1 >= 0, "c1 lists broker c2 and its service beta within 2 s (%lld ms)", (long long) t1);
    int64_t t2 = s_wait_lists (a2, "c1", "alpha", true, 2000);
    tap_ok (t2 >= 0, "c2 lists broker c1 and its service alpha within 2 s (%lld ms)", (long long) t2);
    tap_ok (s_lists (a1, "c1", "alpha"), "c1 lists its own service alpha, marked c1");
    msgpack_unpacked u;
    bool apart = false;
    if (bp_sys (a1, "services", &u) == 0) {
        const msgpack_object *local = bp_get (&u.data, "services");
        const msgpack_object *remote = bp_get (&u.data, "remote");
        apart = local && local->type == MSGPACK_OBJECT_ARRAY && local->via.array.size == 1
             && remote && remote->type == MSGPACK_OBJECT_ARRAY && remote->via.array.size == 1;
        msgpack_unpacked_destroy (&u);
    }
    tap_ok (apart, "its own services under 'services', the other broker's under 'remote'");
    tap_ok (s_brokers (a1) == 2 && s_brokers (a2) == 2, "each lists exactly 2 brokers (itself and the other)");

    /*  Another cluster on the same port: heard, counted, never listed.  */
    tap_ok (bp_stat_wait (a1, "beacons", "foreign_cluster", 1) >= 1,
            "c1 counts the foreign cluster's beacons");
    tap_ok (!s_lists (a1, "f1", NULL) && !s_lists (a2, "f1", NULL), "the foreign broker is not listed");
    tap_ok (s_brokers (af) == 1, "the foreign broker lists only itself");
    tap_ok (bp_stat (a1, "beacons", "sent") >= 1 && bp_stat (a1, "brokers", NULL) == 1,
            "sys.stats: beacons sent, 1 other broker");
    tap_ok (bp_stat (a2, "directories", NULL) >= 1, "sys.stats: DIRECTORY messages accepted");

    /*  A directory change travels at once (not only every 2 heartbeats).  */
    bp_ready (w1, "gamma", 1, "x:0");
    int64_t t3 = s_wait_lists (a2, "c1", "gamma", true, 2000);
    tap_ok (t3 >= 0, "a service added on c1 shows on c2 (%lld ms)", (long long) t3);
    bp_keep (w1, false);
    bp_simple (w1, SB_CMD_BYE);
    int64_t t4 = s_wait_lists (a2, "c1", "alpha", false, 2000);
    tap_ok (t4 >= 0, "a service withdrawn on c1 leaves c2's list (%lld ms)", (long long) t4);

    /*  A broker that falls silent (no leaving beacon): an announcer that
        stops without saying so is dropped after 3 of its intervals.  */
    uint8_t id [SB_BEACON_ID_SIZE] = { 0x5a, 0x5a };
    sb_beacon_config_t bc = { .cluster = s_cluster, .mode = "lo", .port = s_port,
                              .interval_ms = INTERVAL, .endpoint = "tcp://127.0.0.1:9", .broker_id = id };
    sb_error_t err;
    sb_beacon_t *ghost = sb_beacon_new (&bc, &err);
    tap_ok (ghost != NULL, "a silent announcer starts");
    int64_t start = zclock_mono ();
    bool seen = false;
    while (ghost && !seen && zclock_mono () - start < 3000) {
        sb_beacon_tick (ghost, zclock_mono ());
        seen = s_brokers (a1) == 3;
        zclock_sleep (20);
    }
    tap_ok (seen, "c1 lists the announcer while it beacons");
    sb_beacon_destroy (&ghost);
    start = zclock_mono ();
    while (s_brokers (a1) != 2 && zclock_mono () - start < 3000)
        zclock_sleep (10);
    int64_t silent = zclock_mono () - start;
    tap_ok (s_brokers (a1) == 2, "the silent announcer is dropped after %lld ms (3 intervals: %d ms)",
            (long long) silent, 3 * INTERVAL);
    tap_ok (silent <= 3 * INTERVAL + 700, "... within 3 intervals (with scheduling slack)");

    /*  c2 stops: leaving beacon and BYE on its link; c1 drops it and beta. */
    bp_keep (w2, false);
    zsock_destroy (&w2);
    zsock_destroy (&a2);
    sb_broker_destroy (&c2);
    start = zclock_mono ();
    while ((s_brokers (a1) != 1 || s_lists (a1, "c2", NULL)) && zclock_mono () - start < 3000)
        zclock_sleep (10);
    int64_t gone = zclock_mono () - start;
    tap_ok (s_brokers (a1) == 1, "a stopped broker is dropped from the other's list (%lld ms)", (long long) gone);
    tap_ok (gone <= 3 * INTERVAL + 700, "... within 3 intervals");
    bool beta = true;
    if (bp_sys (a1, "services", &u) == 0) {
        const msgpack_object *services = bp_get (&u.data, "remote");
        beta = services && services->type == MSGPACK_OBJECT_ARRAY && services->via.array.size > 0;
        msgpack_unpacked_destroy (&u);
    }
    tap_ok (!beta, "its services are gone from the list too");

    zsock_destroy (&w1);
    zsock_destroy (&a1);
    zsock_destroy (&af);
    sb_broker_destroy (&c1);
    sb_broker_destroy (&foreign);
    return tap_done ();
}
