/*  beacon_probe.c — a beacon for a fixed time, printing what it hears.

    Used by the namespace tests (tests/cluster/beacon_netns.t), one per simulated host:

        beacon_probe MODE PORT ENDPOINT|- DURATION_MS [INTERVAL_MS [CLUSTER]]

    announces ENDPOINT (or only listens, with "-") through the given beacon
    mode for DURATION_MS, and prints one line per event on stdout:

        <wall clock ms since the epoch> <event> <endpoint>

    e.g. "1790000001012 appeared tcp://10.77.0.2:7600" (wall clock, so a
    script can compare it with the times of its own actions).  On exit it prints the
    counters as "counters received=N accepted=N ...".  Exit 0, or 2 with
    a message on stderr if the beacon cannot start.
*/
#include "bus/beacon.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_print (const sb_beacon_event_t *event)
{
    long long wall = (long long) s_wall_ms ();
    if (event->type == SB_BEACON_NONE)
        return;
    if (event->type == SB_BEACON_IGNORED)
        printf ("%lld ignored %s from %s\n", wall,
                sb_beacon_reason_name (event->reason), event->from);
    else
        printf ("%lld %s %s%s\n", wall, sb_beacon_event_name (event->type),
                event->endpoint, event->leaving ? " leaving" : "");
    fflush (stdout);
}

int
main (int argc, char *argv [])
{
    if (argc < 5 || argc > 7) {
        fprintf (stderr, "usage: %s MODE PORT ENDPOINT|- DURATION_MS [INTERVAL_MS [CLUSTER]]\n",
                 argv [0]);
        return 2;
    }
    sb_beacon_config_t config = {
        .mode = argv [1],
        .port = atoi (argv [2]),
        .endpoint = strcmp (argv [3], "-") == 0 ? NULL : argv [3],
        .interval_ms = argc > 5 ? atoi (argv [5]) : 0,
        .cluster = argc > 6 ? argv [6] : NULL
    };
    int64_t duration = atoll (argv [4]);
    sb_error_t err;
    sb_beacon_t *beacon = sb_beacon_new (&config, &err);
    if (!beacon) {
        fprintf (stderr, "%s\n", err.text);
        return 2;
    }
    signal (SIGTERM, s_on_signal);
    signal (SIGINT, s_on_signal);
    int64_t end = s_now () + duration;
    while (!s_stop) {
        int64_t now = s_now ();
        if (now >= end)
            break;
        sb_beacon_tick (beacon, now);
        int timeout = sb_beacon_timeout (beacon, now);
        if (timeout < 0 || timeout > end - now)
            timeout = (int) (end - now);
        struct pollfd item = { .fd = sb_beacon_fd (beacon), .events = POLLIN };
        if (poll (&item, 1, timeout) < 0 && errno != EINTR)
            break;
        now = s_now ();
        sb_beacon_event_t event, expired [16];
        for (int n = 0; n < 1000 && sb_beacon_recv (beacon, now, &event) == 0; n++)
            s_print (&event);
        size_t gone = sb_beacon_expire (beacon, now, expired, 16);
        for (size_t i = 0; i < gone; i++)
            s_print (&expired [i]);
    }
    sb_beacon_leave (beacon);
    sb_beacon_counters_t c;
    sb_beacon_counters (beacon, &c);
    printf ("counters received=%llu accepted=%llu sent=%llu send_errors=%llu own=%llu"
            " foreign_cluster=%llu conflicts=%llu\n",
            (unsigned long long) c.received, (unsigned long long) c.accepted,
            (unsigned long long) c.sent, (unsigned long long) c.send_errors,
            (unsigned long long) c.own, (unsigned long long) c.ignored [SB_BEACON_FOREIGN],
            (unsigned long long) c.conflicts);
    sb_beacon_destroy (&beacon);
    return 0;
}
