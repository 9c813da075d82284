/*  announce.c — a stand-in for a broker's beacon, for cluster tests:
    announces each ENDPOINT on loopback broadcast (one broker id each)
    until SIGINT or SIGTERM, then sends a leaving beacon for each and
    exits.  SIGKILL makes it fall silent instead.

    usage: announce CLUSTER PORT INTERVAL_MS ENDPOINT...
*/
#include "bus/beacon.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define S_ENDPOINTS_MAX 8

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int signo)
{
    s_stop = 1;
}

int
main (int argc, char **argv)
{
    if (argc < 5 || argc - 4 > S_ENDPOINTS_MAX) {
        fprintf (stderr, "usage: announce CLUSTER PORT INTERVAL_MS ENDPOINT...\n");
        return 2;
    }
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);
    sb_beacon_t *beacons [S_ENDPOINTS_MAX];
    int count = argc - 4;
    for (int i = 0; i < count; i++) {
        sb_beacon_config_t config = { .cluster = argv [1], .mode = "lo", .port = atoi (argv [2]),
                                      .interval_ms = atoi (argv [3]), .endpoint = argv [4 + i] };
        sb_error_t err = { 0 };
        beacons [i] = sb_beacon_new (&config, &err);
        if (!beacons [i]) {
            fprintf (stderr, "announce: %s\n", err.text);
            return 1;
        }
    }
    printf ("announcing\n");
    fflush (stdout);
    while (!s_stop) {
        for (int i = 0; i < count; i++)
            sb_beacon_tick (beacons [i], zclock_mono ());
        zclock_sleep (5);
    }
    for (int i = 0; i < count; i++) {
        sb_beacon_leave (beacons [i]);
        sb_beacon_destroy (&beacons [i]);
    }
    return 0;
}
