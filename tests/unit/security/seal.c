/*  runtime_seal.t — end-to-end sealing: round trip both ways, and each
    refusal (tampered, truncated, replayed, unknown or wrong key).  */
#define _GNU_SOURCE
#include "security/seal.h"
#include "tap.h"

#include <sodium.h>

#define N_UNIQUE 20000

static uint8_t s_sealed [4096], s_plain [4096];
static size_t s_sealed_size, s_plain_size;

static sb_seal_status_t
s_open (sb_seal_t *to, sb_seal_t *from, const uint8_t *data, size_t size, sb_error_t *err)
{
    return sb_seal_open (to, sb_seal_key_id (from), SB_SEAL_KEY_ID_SIZE, data, size,
                         s_plain, sizeof s_plain, &s_plain_size, err);
}

int
main (void)
{
    sb_error_t err = { 0 };
    sb_keys_t *ka = sb_keys_new_member ("caller", &err);
    sb_keys_t *kb = sb_keys_new_member ("service", &err);
    sb_keys_t *km = sb_keys_new_member ("mallory", &err);
    sb_seal_t *a = sb_seal_new (ka, 0, &err);
    sb_seal_t *b = sb_seal_new (kb, 16, &err);
    sb_seal_t *m = sb_seal_new (km, 16, &err);
    tap_ok (a && b && m, "sealing contexts created");
    const uint8_t *pa = sb_keys_curve_public (ka), *pb = sb_keys_curve_public (kb);
    tap_ok (sb_seal_peer_add (a, pb, &err) == 0 && sb_seal_peer_add (b, pa, &err) == 0
            && sb_seal_peer_add (m, pb, &err) == 0, "peers registered");
    tap_ok (memcmp (sb_seal_key_id (a), pa, 32) == 0, "key id is the curve public key");

    /*  Round trip, request and reply.  */
    const char *canary = "{\"text\":\"CANARY-7f3a\"}";
    size_t len = strlen (canary);
    tap_is_int (sb_seal_box (a, pb, canary, len, s_sealed, sizeof s_sealed, &s_sealed_size, &err),
                SB_SEAL_OK, "request sealed");
    tap_is_int (s_sealed_size, len + SB_SEAL_OVERHEAD, "overhead is %d bytes", SB_SEAL_OVERHEAD);
    tap_ok (memmem (s_sealed, s_sealed_size, "CANARY", 6) == NULL, "no plaintext in the sealed frame");
    tap_is_int (s_open (b, a, s_sealed, s_sealed_size, &err), SB_SEAL_OK, "service opens it");
    tap_ok (s_plain_size == len && memcmp (s_plain, canary, len) == 0, "same bytes");
    tap_is_int (sb_seal_box (b, pa, "ok", 2, s_sealed, sizeof s_sealed, &s_sealed_size, &err),
                SB_SEAL_OK, "reply sealed");
    tap_is_int (s_open (a, b, s_sealed, s_sealed_size, &err), SB_SEAL_OK, "caller opens the reply");
    tap_ok (sb_seal_box (a, pb, "", 0, s_sealed, sizeof s_sealed, &s_sealed_size, &err) == SB_SEAL_OK
            && s_open (b, a, s_sealed, s_sealed_size, &err) == SB_SEAL_OK && s_plain_size == 0,
            "empty body round trip");

    /*  Replay: the same frame twice.  */
    uint8_t frame [256];
    size_t frame_size;
    tap_ok (sb_seal_box (a, pb, canary, len, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK, "sealed");
    tap_is_int (s_open (b, a, frame, frame_size, &err), SB_SEAL_OK, "first delivery opens");
    tap_is_int (s_open (b, a, frame, frame_size, &err), SB_SEAL_REPLAYED, "replay refused: %s", err.text);

    /*  Tampering: flip each byte position in turn; every one is refused.  */
    tap_ok (sb_seal_box (a, pb, canary, len, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK, "sealed");
    int all_refused = 1;
    for (size_t i = SB_SEAL_NONCE_SIZE; i < frame_size; i++) {
        frame [i] ^= 0x01;
        if (s_open (b, a, frame, frame_size, &err) != SB_SEAL_TAMPERED)
            all_refused = 0;
        frame [i] ^= 0x01;
    }
    tap_ok (all_refused, "every flipped ciphertext/tag bit refused: %s", err.text);
    tap_is_int (s_open (b, a, frame, frame_size, &err), SB_SEAL_OK, "the untouched frame still opens");

    /*  Truncation.  */
    tap_is_int (s_open (b, a, frame, SB_SEAL_OVERHEAD - 1, &err), SB_SEAL_TRUNCATED,
                "shorter than nonce + tag: %s", err.text);
    tap_ok (sb_seal_box (a, pb, canary, len, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK, "sealed");
    tap_is_int (s_open (b, a, frame, frame_size - 1, &err), SB_SEAL_TAMPERED, "one byte cut off");

    /*  Out of order within the window is accepted; beyond it refused.  */
    static uint8_t batch [SB_SEAL_WINDOW + 10][128];
    size_t sizes [SB_SEAL_WINDOW + 10];
    int sealed_ok = 1;
    for (int i = 0; i < SB_SEAL_WINDOW + 10; i++)
        if (sb_seal_box (a, pb, "x", 1, batch [i], sizeof batch [i], &sizes [i], &err) != SB_SEAL_OK)
            sealed_ok = 0;
    tap_ok (sealed_ok, "%d messages sealed", SB_SEAL_WINDOW + 10);
    tap_is_int (s_open (b, a, batch [20], sizes [20], &err), SB_SEAL_OK, "message 20 first");
    tap_is_int (s_open (b, a, batch [5], sizes [5], &err), SB_SEAL_OK, "then 5 (out of order)");
    tap_is_int (s_open (b, a, batch [19], sizes [19], &err), SB_SEAL_OK, "then 19");
    tap_is_int (s_open (b, a, batch [5], sizes [5], &err), SB_SEAL_REPLAYED, "5 again is a replay");
    tap_is_int (s_open (b, a, batch [SB_SEAL_WINDOW + 9], sizes [SB_SEAL_WINDOW + 9], &err), SB_SEAL_OK,
                "the newest");
    tap_is_int (s_open (b, a, batch [6], sizes [6], &err), SB_SEAL_REPLAYED,
                "older than the window: %s", err.text);
    tap_is_int (s_open (b, a, batch [SB_SEAL_WINDOW], sizes [SB_SEAL_WINDOW], &err), SB_SEAL_OK,
                "still inside the window");

    /*  Reflection: our own sealed request sent back to us.  */
    tap_ok (sb_seal_box (a, pb, "x", 1, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK, "sealed");
    tap_is_int (s_open (a, b, frame, frame_size, &err), SB_SEAL_REPLAYED, "reflected back: %s", err.text);

    /*  A restarted sender (new context, same key) is a new stream.  */
    sb_seal_t *a2 = sb_seal_new (ka, 0, &err);
    tap_ok (a2 && sb_seal_peer_add (a2, pb, &err) == 0, "sender restarted");
    tap_ok (sb_seal_box (a2, pb, "y", 1, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK
            && s_open (b, a2, frame, frame_size, &err) == SB_SEAL_OK, "its first message opens");
    sb_seal_destroy (&a2);

    /*  Keys: unknown sender, wrong recipient, bad key id.  */
    tap_ok (sb_seal_box (m, pb, "z", 1, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK, "mallory seals");
    tap_is_int (s_open (b, m, frame, frame_size, &err), SB_SEAL_UNKNOWN_KEY, "unknown key: %s", err.text);
    tap_is_int (err.code, SB_E_UNAUTHORIZED, "as unauthorized");
    tap_is_int (sb_seal_open (b, sb_seal_key_id (a), 31, frame, frame_size, s_plain, sizeof s_plain,
                              &s_plain_size, &err), SB_SEAL_UNKNOWN_KEY, "31-byte key id");
    /*  Mallory claims to be the caller: the tag cannot verify.  */
    tap_is_int (s_open (b, a, frame, frame_size, &err), SB_SEAL_TAMPERED, "wrong key: %s", err.text);
    tap_is_int (sb_seal_box (a, sb_keys_curve_public (km), "z", 1, frame, sizeof frame, &frame_size, &err),
                SB_SEAL_UNKNOWN_KEY, "cannot seal for an unregistered key");
    tap_is_int (sb_seal_box (a, pb, canary, len, frame, len + 10, &frame_size, &err), SB_SEAL_NO_ROOM,
                "output buffer too small");

    /*  Peer removal (revocation) and the table bound.  */
    tap_ok (sb_seal_peer_remove (b, pa) == 0 && !sb_seal_peer_known (b, pa), "peer removed");
    tap_ok (sb_seal_box (a, pb, "x", 1, frame, sizeof frame, &frame_size, &err) == SB_SEAL_OK
            && s_open (b, a, frame, frame_size, &err) == SB_SEAL_UNKNOWN_KEY, "removed peer is unknown");
    int added = 0;
    for (int i = 0; i < 20; i++) {
        uint8_t pk [32], sk [32];
        crypto_box_keypair (pk, sk);
        if (sb_seal_peer_add (b, pk, &err) == 0)
            added++;
    }
    tap_is_int (added, 16, "table holds its 16 peers, then refuses: %s", err.text);

    /*  Nonces are unique over many messages.  */
    static uint8_t nonces [N_UNIQUE][SB_SEAL_NONCE_SIZE];
    int unique = 1;
    for (int i = 0; i < N_UNIQUE; i++) {
        if (sb_seal_box (a, pb, "n", 1, frame, sizeof frame, &frame_size, &err) != SB_SEAL_OK)
            unique = 0;
        memcpy (nonces [i], frame, SB_SEAL_NONCE_SIZE);
        if (i && memcmp (nonces [i] + 16, nonces [i - 1] + 16, 8) <= 0)
            unique = 0;     /* the counter part strictly increases */
    }
    tap_ok (unique, "%d nonces strictly increasing, hence unique", N_UNIQUE);
    tap_ok (memcmp (nonces [0], nonces [1], 16) == 0, "one stream prefix per context");

    tap_is_str (sb_seal_status_name (SB_SEAL_REPLAYED), "replayed", "status names");
    sb_seal_destroy (&a);
    sb_seal_destroy (&b);
    sb_seal_destroy (&m);
    sb_seal_destroy (&m);
    sb_keys_destroy (&ka);
    sb_keys_destroy (&kb);
    sb_keys_destroy (&km);
    return tap_done ();
}
