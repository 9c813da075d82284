/*  beacons.h — beacons on loopback for the discovery tests
    (runtime_beacon.t, runtime_discovery.t): a UDP port nobody uses right
    now, so that each test hears only its own beacons, and a beacon on
    loopback broadcast (127.255.255.255) for that port.
*/
#ifndef SB_BEACONS_H_INCLUDED
#define SB_BEACONS_H_INCLUDED

#include "bus/beacon.h"
#include "tap.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/*  A UDP port nobody uses right now on loopback; -1 when none.  */
static inline int
bt_free_port (void)
{
    int fd = socket (AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = { htonl (INADDR_LOOPBACK) } };
    socklen_t size = sizeof sin;
    if (fd < 0 || bind (fd, (struct sockaddr *) &sin, sizeof sin)
    ||  getsockname (fd, (struct sockaddr *) &sin, &size)) {
        if (fd >= 0)
            close (fd);
        return -1;
    }
    close (fd);
    return ntohs (sin.sin_port);
}

/*  A loopback beacon of `cluster` on `port`, announcing `endpoint` every
    `interval_ms` (NULL endpoint: it only listens); NULL, said as a TAP
    comment, when it cannot start.  */
static inline sb_beacon_t *
bt_beacon (int port, const char *cluster, const char *endpoint, int interval_ms)
{
    sb_beacon_config_t config = {
        .cluster = cluster, .mode = "lo", .port = port, .interval_ms = interval_ms, .endpoint = endpoint
    };
    sb_error_t err = { 0 };
    sb_beacon_t *beacon = sb_beacon_new (&config, &err);
    if (!beacon)
        tap_diag ("sb_beacon_new: %s", err.text);
    return beacon;
}

#endif
