/*  fuzz_beacon.c — libFuzzer target for beacon datagrams.

    Feeds each input to sb_beacon_parse and then, as a received datagram,
    to two socket-less beacons (mode "off"): one in plain mode and one in
    signed mode, so the replay table, conflict handling and signature path
    all see hostile input.  The beacons persist across inputs, as they
    would in a long-running broker.

    Invariants checked (abort on violation): a parsed endpoint is 1..255
    printable characters; an unsigned packet that parses re-encodes to the
    same bytes; the live-broker count never exceeds the table size.

    Seeds are in fuzz/corpus/beacon/; under `make check` the corpus replays
    through the shared driver.
*/
#include "bus/beacon.h"

#include <stdlib.h>
#include <string.h>

#define S_PEERS_MAX 8

static int
s_verify_cert (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg)
{
    (void) arg;
    /*  A test rule: the certificate must start with the signing key.  */
    return size >= 32 && memcmp (cert, signing_pk, 32) == 0 ? 0 : -1;
}

static sb_beacon_t *
s_listener (bool signed_mode)
{
    sb_beacon_config_t config = {
        .cluster = "fuzz", .mode = "off", .peers_max = S_PEERS_MAX,
        .verify_cert = signed_mode ? s_verify_cert : NULL, .max_skew_ms = -1
    };
    sb_error_t err;
    sb_beacon_t *beacon = sb_beacon_new (&config, &err);
    if (!beacon)
        abort ();
    return beacon;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static sb_beacon_t *plain, *signed_mode;
    static int64_t now;
    if (!plain) {
        plain = s_listener (false);
        signed_mode = s_listener (true);
    }
    sb_beacon_packet_t packet;
    if (sb_beacon_parse (data, size, &packet) == SB_BEACON_OK) {
        size_t length = strlen (packet.endpoint);
        if (length == 0 || length > SB_BEACON_ENDPOINT_MAX)
            abort ();
        for (size_t i = 0; i < length; i++)
            if (packet.endpoint [i] < 0x21 || packet.endpoint [i] > 0x7e)
                abort ();
        if (!(packet.flags & SB_BEACON_F_SIGNED)) {
            uint8_t buffer [SB_BEACON_PACKET_MAX];
            if (sb_beacon_encode (&packet, NULL, buffer) != size
            ||  memcmp (buffer, data, size) != 0)
                abort ();
        }
    }
    /*  Time moves 100 ms per input, so expiry runs too.  */
    now += 100;
    sb_beacon_event_t event, expired [S_PEERS_MAX];
    sb_beacon_handle (plain, data, size, "fuzz", now, &event);
    sb_beacon_handle (signed_mode, data, size, "fuzz", now, &event);
    sb_beacon_expire (plain, now, expired, S_PEERS_MAX);
    sb_beacon_expire (signed_mode, now, expired, S_PEERS_MAX);
    if (sb_beacon_size (plain) > S_PEERS_MAX || sb_beacon_size (signed_mode) > S_PEERS_MAX)
        abort ();
    return 0;
}
