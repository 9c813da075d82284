/*  seal_bench.c — micro-benchmark of end-to-end sealing (runtime/seal.c):
    seals/s and opens/s for 64-byte bodies (override with argv[1] bytes)
    over about one second of each, on one core.  Not a test: it prints
    numbers for people and for the secure benchmark's budget.

    Messages are sealed and opened in batches so every open is a fresh,
    in-order nonce, as on the bus.  */
#include "security/seal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BATCH 4096
#define RUN_NS 1000000000LL

static long long
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int
main (int argc, char **argv)
{
    size_t body = argc > 1 ? (size_t) strtoul (argv [1], NULL, 10) : 64;
    if (body == 0 || body > 65536) {
        fprintf (stderr, "seal_bench: body size must be 1..65536 bytes\n");
        return 2;
    }
    sb_error_t err;
    sb_keys_t *ka = sb_keys_new_member ("caller", &err);
    sb_keys_t *kb = sb_keys_new_member ("service", &err);
    sb_seal_t *a = ka ? sb_seal_new (ka, 0, &err) : NULL;
    sb_seal_t *b = kb ? sb_seal_new (kb, 0, &err) : NULL;
    size_t slot = body + SB_SEAL_OVERHEAD;
    uint8_t *sealed = malloc (BATCH * slot);
    uint8_t *plain = malloc (body);
    uint8_t *opened = malloc (body);
    if (!a || !b || !sealed || !plain || !opened
    ||  sb_seal_peer_add (a, sb_keys_curve_public (kb), &err)
    ||  sb_seal_peer_add (b, sb_keys_curve_public (ka), &err)) {
        fprintf (stderr, "seal_bench: setup failed\n");
        return 1;
    }
    for (size_t i = 0; i < body; i++)
        plain [i] = (uint8_t) i;

    long long seal_ns = 0, open_ns = 0, count = 0;
    size_t size;
    while (seal_ns < RUN_NS || open_ns < RUN_NS) {
        long long t0 = s_now_ns ();
        for (int i = 0; i < BATCH; i++)
            if (sb_seal_box (a, sb_keys_curve_public (kb), plain, body, sealed + i * slot, slot, &size,
                             &err) != SB_SEAL_OK) {
                fprintf (stderr, "seal_bench: seal failed: %s\n", err.text);
                return 1;
            }
        long long t1 = s_now_ns ();
        for (int i = 0; i < BATCH; i++)
            if (sb_seal_open (b, sb_seal_key_id (a), SB_SEAL_KEY_ID_SIZE, sealed + i * slot, slot,
                              opened, body, &size, &err) != SB_SEAL_OK) {
                fprintf (stderr, "seal_bench: open failed: %s\n", err.text);
                return 1;
            }
        long long t2 = s_now_ns ();
        seal_ns += t1 - t0;
        open_ns += t2 - t1;
        count += BATCH;
    }
    printf ("body %zu bytes, %lld messages\n", body, count);
    printf ("seal: %.0f/s (%.0f ns each)\n", count * 1e9 / seal_ns, (double) seal_ns / count);
    printf ("open: %.0f/s (%.0f ns each)\n", count * 1e9 / open_ns, (double) open_ns / count);
    free (sealed);
    free (plain);
    free (opened);
    sb_seal_destroy (&a);
    sb_seal_destroy (&b);
    sb_keys_destroy (&ka);
    sb_keys_destroy (&kb);
    return 0;
}
