/*  seal.h — end-to-end sealing of message bodies between two members.

    A caller seals a request body for a service's Curve25519 key; the
    service opens it with the caller's key, and seals its reply the same
    way back.  Brokers carry the sealed bytes untouched and can neither
    read nor alter them.  Cryptography: libsodium crypto_box
    (X25519 + XSalsa20-Poly1305) with the shared key precomputed once per
    peer (crypto_box_beforenm) and cached, so sealing a message costs one
    XSalsa20-Poly1305 pass and no allocation.

    Sealed body (docs/security.md, "Sealed bodies"):

        nonce (24 bytes) || ciphertext with its 16-byte Poly1305 tag

    so SB_SEAL_OVERHEAD = 40 bytes.  The nonce is
        stream id (8 random bytes) || stream start (8 bytes, big-endian unix ns)
        || counter (8 bytes, big-endian, per peer, from 1).
    A "stream" is one sb_seal_t: created per actor/thread, with a fresh
    random id, so nonces never repeat for a key pair even when several
    processes share one member key.  The header (runtime/wire/wire.h) carries
    the sender's curve public key as key_id (32 bytes) and the flag
    SB_F_SEALED.

    Replay window: for each peer the receiver remembers up to
    SB_SEAL_STREAMS sender streams, and for each the highest counter and a
    bitmap of the last SB_SEAL_WINDOW counters.  A repeated counter, one
    older than the window, a stream older than one already forgotten, or a
    message carrying the receiver's own stream (reflected back) is refused
    as replayed.  The window is updated only after the tag verifies, so
    forgeries cannot advance it.  The window lives in memory: across a
    receiver restart, the time sealed inside the box (the sealer's
    envelope, envelope.h) bounds what could be replayed.

    Peers must be registered (sb_seal_peer_add) — the runtime does so
    after verifying the peer's certificate — otherwise `unknown key`.

    Not thread-safe: one sb_seal_t per actor/thread (that is also what
    makes its stream id unique).  The context, shared keys and windows live
    in sodium_malloc memory and are wiped on removal and destroy.
*/
#ifndef SB_SEAL_H_INCLUDED
#define SB_SEAL_H_INCLUDED

#include "security/keys.h"

#define SB_SEAL_NONCE_SIZE 24
#define SB_SEAL_MAC_SIZE 16
#define SB_SEAL_OVERHEAD (SB_SEAL_NONCE_SIZE + SB_SEAL_MAC_SIZE)
#define SB_SEAL_KEY_ID_SIZE 32          /* key_id in the header: sender's curve public key */
#define SB_SEAL_WINDOW 1024             /* counters remembered per sender stream */
#define SB_SEAL_STREAMS 16              /* sender streams remembered per peer */
#define SB_SEAL_PEERS_DEFAULT 256      /* about 2.5 KiB of secure memory each */

typedef enum {
    SB_SEAL_OK = 0,
    SB_SEAL_TRUNCATED,          /* shorter than nonce + tag */
    SB_SEAL_TAMPERED,           /* tag does not verify: altered, or sealed with another key */
    SB_SEAL_REPLAYED,           /* nonce already seen, too old, or reflected */
    SB_SEAL_UNKNOWN_KEY,        /* key id not a registered peer (or not 32 bytes) */
    SB_SEAL_NO_ROOM,            /* output buffer too small */
    SB_SEAL_STATUS_MAX
} sb_seal_status_t;

/*  "ok", "truncated", "tampered", "replayed", "unknown_key", "no_room".  */
const char *sb_seal_status_name (sb_seal_status_t status);

typedef struct sb_seal sb_seal_t;

/*  A sealing context for `own` (member keys with their secret).  Copies
    the curve secret into secure memory; `own` may be destroyed after.
    max_peers 0 means SB_SEAL_PEERS_DEFAULT.  */
sb_seal_t *sb_seal_new (const sb_keys_t *own, size_t max_peers, sb_error_t *err);
void sb_seal_destroy (sb_seal_t **self_p);

/*  Our key id for the header's key_id field (SB_SEAL_KEY_ID_SIZE bytes).  */
const uint8_t *sb_seal_key_id (const sb_seal_t *self);

/*  Registers a peer's curve public key: computes and caches the shared
    key.  Adding a known peer again is a no-op (its window is kept).
    -1 with err if the table is full or the key is invalid.  */
int sb_seal_peer_add (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE], sb_error_t *err);
/*  Forgets a peer (e.g. revoked): wipes its shared key and window.  */
int sb_seal_peer_remove (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE]);
bool sb_seal_peer_known (const sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE]);
size_t sb_seal_peer_count (const sb_seal_t *self);

/*  Seals `size` bytes for the peer into out (needs size + SB_SEAL_OVERHEAD
    bytes); sets *out_size.  Cost: one XSalsa20-Poly1305 pass.  */
sb_seal_status_t sb_seal_box (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE],
                              const void *plain, size_t size,
                              uint8_t *out, size_t out_max, size_t *out_size,
                              sb_error_t *err) SB_WARN_UNUSED;

/*  Opens a sealed body from the peer named by key_id (the header field)
    into out (needs size - SB_SEAL_OVERHEAD bytes); sets *out_size.
    Checks length, peer, replay window, then the tag; only a message that
    passes everything moves the window.  err (if not NULL) gets one line:
    code SB_E_UNAUTHORIZED for an unknown key, SB_E_BAD_REQUEST for the
    others.  */
sb_seal_status_t sb_seal_open (sb_seal_t *self, const uint8_t *key_id, size_t key_id_size,
                               const void *sealed, size_t size,
                               uint8_t *out, size_t out_max, size_t *out_size,
                               sb_error_t *err) SB_WARN_UNUSED;

#endif
