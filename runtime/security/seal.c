/*  seal.c — end-to-end sealing: peer table, nonces, replay windows.
    See seal.h for the format and the guarantees.

    Peers live in a fixed array in sodium_malloc memory (they hold shared
    keys), found through an open-addressing index keyed by a SipHash
    (crypto_shorthash, random key per context) of the peer's public key;
    removal uses backward-shift deletion, so lookups never meet tombstones.
    The load factor stays at or below one half.

    Each peer keeps SB_SEAL_STREAMS receive streams.  A stream's window is
    a ring bitmap indexed by counter % SB_SEAL_WINDOW, plus the highest
    counter seen.
*/
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define WINDOW_WORDS (SB_SEAL_WINDOW / 64)

typedef struct {
    uint8_t id [8];
    uint64_t start_ns;
    uint64_t top;                       /* highest counter accepted */
    uint64_t bitmap [WINDOW_WORDS];
} stream_t;

typedef struct {
    bool used;
    uint32_t home;                      /* index slot the hash points at */
    uint8_t pk [SB_KEY_SIZE];
    uint8_t shared [crypto_box_BEFORENMBYTES];
    uint64_t send_counter;
    uint64_t floor_ns;                  /* streams starting at or before this are refused */
    uint32_t stream_count;
    stream_t streams [SB_SEAL_STREAMS];
} peer_t;

struct sb_seal {
    uint8_t own_pk [SB_KEY_SIZE];
    uint8_t own_sk [SB_KEY_SIZE];
    uint8_t stream_id [8];
    uint64_t start_ns;
    uint8_t hash_key [crypto_shorthash_KEYBYTES];
    size_t max_peers;
    size_t peer_count;
    uint32_t mask;                      /* index size - 1 */
    uint32_t *index;                    /* 0 = empty, else peer number + 1 */
    peer_t *peers;                      /* max_peers entries, secure memory */
};

static const char *s_status_names [SB_SEAL_STATUS_MAX] = {
    [SB_SEAL_OK] = "ok",
    [SB_SEAL_TRUNCATED] = "truncated",
    [SB_SEAL_TAMPERED] = "tampered",
    [SB_SEAL_REPLAYED] = "replayed",
    [SB_SEAL_UNKNOWN_KEY] = "unknown_key",
    [SB_SEAL_NO_ROOM] = "no_room",
};

const char *
sb_seal_status_name (sb_seal_status_t status)
{
    return (unsigned) status < SB_SEAL_STATUS_MAX ? s_status_names [status] : "unknown";
}

static void
s_put_be64 (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p [i] = (uint8_t) v;
        v >>= 8;
    }
}

static uint64_t
s_get_be64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p [i];
    return v;
}

sb_seal_t *
sb_seal_new (const sb_keys_t *own, size_t max_peers, sb_error_t *err)
{
    if (sodium_init () < 0) {
        sb_error_set (err, SB_E_INTERNAL, "libsodium failed to initialise");
        return NULL;
    }
    if (!own || !sb_keys_curve_secret (own)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "sealing needs member keys with their secret half");
        return NULL;
    }
    if (max_peers == 0)
        max_peers = SB_SEAL_PEERS_DEFAULT;
    if (max_peers > (1u << 20)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "too many peers for a sealing context (%zu)", max_peers);
        return NULL;
    }
    sb_seal_t *self = (sb_seal_t *) sodium_malloc (sizeof (sb_seal_t));
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of secure memory");
        return NULL;
    }
    memset (self, 0, sizeof *self);
    memcpy (self->own_pk, sb_keys_curve_public (own), SB_KEY_SIZE);
    memcpy (self->own_sk, sb_keys_curve_secret (own), SB_KEY_SIZE);
    randombytes_buf (self->stream_id, sizeof self->stream_id);
    crypto_shorthash_keygen (self->hash_key);
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    self->start_ns = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
    self->max_peers = max_peers;
    uint32_t slots = 2;
    while (slots < 2 * max_peers)
        slots <<= 1;
    self->mask = slots - 1;
    self->index = (uint32_t *) calloc (slots, sizeof (uint32_t));
    self->peers = (peer_t *) sodium_allocarray (max_peers, sizeof (peer_t));
    if (!self->index || !self->peers) {
        sb_seal_destroy (&self);
        sb_error_set (err, SB_E_INTERNAL, "out of secure memory for %zu peers", max_peers);
        return NULL;
    }
    memset (self->peers, 0, max_peers * sizeof (peer_t));
    return self;
}

void
sb_seal_destroy (sb_seal_t **self_p)
{
    if (self_p && *self_p) {
        sb_seal_t *self = *self_p;
        free (self->index);
        if (self->peers)
            sodium_free (self->peers);
        sodium_free (self);
        *self_p = NULL;
    }
}

const uint8_t *
sb_seal_key_id (const sb_seal_t *self)
{
    return self->own_pk;
}

static uint32_t
s_home (const sb_seal_t *self, const uint8_t *pk)
{
    uint8_t hash [crypto_shorthash_BYTES];
    crypto_shorthash (hash, pk, SB_KEY_SIZE, self->hash_key);
    uint32_t h;
    memcpy (&h, hash, sizeof h);
    return h & self->mask;
}

/*  Index slot of the peer, or of the empty slot where it would go.  */
static uint32_t
s_find_slot (const sb_seal_t *self, const uint8_t *pk)
{
    uint32_t slot = s_home (self, pk);
    while (self->index [slot]) {
        const peer_t *peer = &self->peers [self->index [slot] - 1];
        if (memcmp (peer->pk, pk, SB_KEY_SIZE) == 0)
            break;
        slot = (slot + 1) & self->mask;
    }
    return slot;
}

static peer_t *
s_find (const sb_seal_t *self, const uint8_t *pk)
{
    uint32_t slot = s_find_slot (self, pk);
    return self->index [slot] ? &self->peers [self->index [slot] - 1] : NULL;
}

bool
sb_seal_peer_known (const sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE])
{
    return self && peer_pk && s_find (self, peer_pk) != NULL;
}

size_t
sb_seal_peer_count (const sb_seal_t *self)
{
    return self ? self->peer_count : 0;
}

int
sb_seal_peer_add (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE], sb_error_t *err)
{
    uint32_t slot = s_find_slot (self, peer_pk);
    if (self->index [slot])
        return 0;
    if (self->peer_count >= self->max_peers)
        return sb_error_set (err, SB_E_OVERLOADED, "sealing peer table is full (%zu peers)",
                             self->max_peers);
    size_t n = 0;
    while (self->peers [n].used)
        n++;                            /* a free entry exists: count < max */
    peer_t *peer = &self->peers [n];
    memset (peer, 0, sizeof *peer);
    if (crypto_box_beforenm (peer->shared, peer_pk, self->own_sk) != 0) {
        sodium_memzero (peer, sizeof *peer);
        return sb_error_set (err, SB_E_BAD_REQUEST, "peer public key is invalid (low order point)");
    }
    memcpy (peer->pk, peer_pk, SB_KEY_SIZE);
    peer->used = true;
    peer->home = s_home (self, peer_pk);
    self->index [slot] = (uint32_t) n + 1;
    self->peer_count++;
    return 0;
}

int
sb_seal_peer_remove (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE])
{
    uint32_t hole = s_find_slot (self, peer_pk);
    if (!self->index [hole])
        return -1;
    sodium_memzero (&self->peers [self->index [hole] - 1], sizeof (peer_t));
    self->index [hole] = 0;
    self->peer_count--;
    /*  Backward-shift: move later entries of the cluster into the hole
        unless their home lies cyclically in (hole, slot].  */
    uint32_t slot = hole;
    while (true) {
        slot = (slot + 1) & self->mask;
        if (!self->index [slot])
            break;
        uint32_t home = self->peers [self->index [slot] - 1].home;
        bool stays = hole <= slot ? (hole < home && home <= slot) : (hole < home || home <= slot);
        if (!stays) {
            self->index [hole] = self->index [slot];
            self->index [slot] = 0;
            hole = slot;
        }
    }
    return 0;
}

sb_seal_status_t
sb_seal_box (sb_seal_t *self, const uint8_t peer_pk [SB_KEY_SIZE], const void *plain, size_t size,
             uint8_t *out, size_t out_max, size_t *out_size, sb_error_t *err)
{
    peer_t *peer = peer_pk ? s_find (self, peer_pk) : NULL;
    if (!peer) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "cannot seal: recipient key is not a known peer");
        return SB_SEAL_UNKNOWN_KEY;
    }
    if (size > SIZE_MAX - SB_SEAL_OVERHEAD || out_max < size + SB_SEAL_OVERHEAD) {
        sb_error_set (err, SB_E_INTERNAL, "cannot seal %zu bytes into a %zu-byte buffer", size, out_max);
        return SB_SEAL_NO_ROOM;
    }
    /*  A 64-bit counter does not wrap in practice; if it ever did, a new
        stream would be needed, which is the caller making a new context.  */
    if (peer->send_counter == UINT64_MAX) {
        sb_error_set (err, SB_E_INTERNAL, "nonce counter exhausted: create a new sealing context");
        return SB_SEAL_NO_ROOM;
    }
    peer->send_counter++;
    memcpy (out, self->stream_id, 8);
    s_put_be64 (out + 8, self->start_ns);
    s_put_be64 (out + 16, peer->send_counter);
    crypto_box_easy_afternm (out + SB_SEAL_NONCE_SIZE, (const uint8_t *) plain, size, out, peer->shared);
    *out_size = size + SB_SEAL_OVERHEAD;
    return SB_SEAL_OK;
}

static bool
s_bit (const stream_t *s, uint64_t counter)
{
    uint64_t bit = counter % SB_SEAL_WINDOW;
    return (s->bitmap [bit / 64] >> (bit % 64)) & 1;
}

/*  Marks counter as seen, sliding the window forward if it is new.  */
static void
s_mark (stream_t *s, uint64_t counter)
{
    if (counter > s->top) {
        uint64_t ahead = counter - s->top;
        if (ahead >= SB_SEAL_WINDOW)
            memset (s->bitmap, 0, sizeof s->bitmap);
        else
            for (uint64_t c = s->top + 1; c <= counter; c++) {
                uint64_t bit = c % SB_SEAL_WINDOW;
                s->bitmap [bit / 64] &= ~(1ULL << (bit % 64));
            }
        s->top = counter;
    }
    uint64_t bit = counter % SB_SEAL_WINDOW;
    s->bitmap [bit / 64] |= 1ULL << (bit % 64);
}

sb_seal_status_t
sb_seal_open (sb_seal_t *self, const uint8_t *key_id, size_t key_id_size,
              const void *sealed, size_t size, uint8_t *out, size_t out_max, size_t *out_size,
              sb_error_t *err)
{
    const uint8_t *data = (const uint8_t *) sealed;
    if (!data || size < SB_SEAL_OVERHEAD) {
        sb_error_set (err, SB_E_BAD_REQUEST, "sealed body truncated (%zu bytes, at least %d needed)",
                      data ? size : 0, SB_SEAL_OVERHEAD);
        return SB_SEAL_TRUNCATED;
    }
    peer_t *peer = key_id && key_id_size == SB_SEAL_KEY_ID_SIZE ? s_find (self, key_id) : NULL;
    if (!peer) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "sealed body from an unknown key");
        return SB_SEAL_UNKNOWN_KEY;
    }
    size_t plain_size = size - SB_SEAL_OVERHEAD;
    if (out_max < plain_size) {
        sb_error_set (err, SB_E_INTERNAL, "cannot open %zu bytes into a %zu-byte buffer", plain_size, out_max);
        return SB_SEAL_NO_ROOM;
    }
    uint64_t start_ns = s_get_be64 (data + 8);
    uint64_t counter = s_get_be64 (data + 16);
    if (memcmp (data, self->stream_id, 8) == 0 && start_ns == self->start_ns) {
        sb_error_set (err, SB_E_BAD_REQUEST, "sealed body replayed (our own message reflected back)");
        return SB_SEAL_REPLAYED;
    }
    stream_t *stream = NULL;
    for (uint32_t i = 0; i < peer->stream_count; i++)
        if (memcmp (peer->streams [i].id, data, 8) == 0 && peer->streams [i].start_ns == start_ns) {
            stream = &peer->streams [i];
            break;
        }
    if (!stream && start_ns <= peer->floor_ns) {
        sb_error_set (err, SB_E_BAD_REQUEST, "sealed body replayed (from a sender session older than the replay window)");
        return SB_SEAL_REPLAYED;
    }
    if (counter == 0
    ||  (stream && counter <= stream->top
         && (stream->top - counter >= SB_SEAL_WINDOW || s_bit (stream, counter)))) {
        sb_error_set (err, SB_E_BAD_REQUEST, "sealed body replayed (nonce already seen or too old)");
        return SB_SEAL_REPLAYED;
    }
    if (crypto_box_open_easy_afternm (out, data + SB_SEAL_NONCE_SIZE, size - SB_SEAL_NONCE_SIZE,
                                      data, peer->shared) != 0) {
        sodium_memzero (out, plain_size);
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "sealed body failed authentication (altered in transit, or sealed for another key)");
        return SB_SEAL_TAMPERED;
    }
    if (!stream) {
        if (peer->stream_count < SB_SEAL_STREAMS)
            stream = &peer->streams [peer->stream_count++];
        else {
            stream = &peer->streams [0];
            for (uint32_t i = 1; i < SB_SEAL_STREAMS; i++)
                if (peer->streams [i].start_ns < stream->start_ns)
                    stream = &peer->streams [i];
            if (stream->start_ns > peer->floor_ns)
                peer->floor_ns = stream->start_ns;
        }
        memset (stream, 0, sizeof *stream);
        memcpy (stream->id, data, 8);
        stream->start_ns = start_ns;
    }
    s_mark (stream, counter);
    *out_size = plain_size;
    return SB_SEAL_OK;
}
