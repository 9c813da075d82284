/*  keys.h — Switchboard key material: cluster authority and member keys.

    Two kinds of keypair exist (docs/security.md, "Keys"):

    - the cluster **authority**: one Ed25519 signing keypair.  It signs
      member certificates (runtime/security/cert.h) and nothing else; its secret
      file should live offline, on the machine where `sb cert sign` runs;
    - a **member** (broker, service host, client, REST bridge): a
      Curve25519 keypair, used both for CurveZMQ (the raw 32-byte keys are
      what zmq_curve_keypair() produces and what ZMQ_CURVE_PUBLICKEY /
      ZMQ_CURVE_SECRETKEY accept) and for end-to-end sealing with
      crypto_box (runtime/security/seal.h), plus an Ed25519 signing keypair for
      signed beacons.

    Every sb_keys_t lives in sodium_malloc memory (guard pages, locked,
    never swapped) which is made read-only once filled and wiped by
    sodium_free on destroy and on every error path.  Files are parsed from a
    sodium_malloc buffer too, so secret bytes never sit in ordinary heap.

    Files are small `key = value` text (format in docs/security.md).
    Secret files are created 0600 with O_EXCL|O_NOFOLLOW and are refused on
    load when they are not a regular file or give any permission to group
    or others.  Public files are 0644.

    Key ids: BLAKE2b-128 over the public keys (authority: its signing key;
    member: curve key then signing key), shown as 32 lowercase hex digits.
    Certificates name their authority by its key id; revocation lists may
    name members by key id.

    Thread safety: an sb_keys_t is immutable after construction and may be
    read from any thread.
*/
#ifndef SB_KEYS_H_INCLUDED
#define SB_KEYS_H_INCLUDED

#include "switchboard.h"

#define SB_KEY_SIZE 32                  /* Curve25519 and Ed25519 public keys */
#define SB_SIGN_SECRET_SIZE 64          /* libsodium Ed25519 secret key (seed || public) */
#define SB_KEY_ID_SIZE 16               /* BLAKE2b-128 of the public keys */
#define SB_KEY_ID_HEX_SIZE (SB_KEY_ID_SIZE * 2 + 1)
#define SB_Z85_KEY_SIZE 41              /* Z85 text of a 32-byte key, with NUL */
#define SB_KEY_FILE_MAX 4096            /* a key file is refused past this size */

typedef enum {
    SB_KEYS_AUTHORITY = 1,
    SB_KEYS_MEMBER = 2
} sb_keys_kind_t;

typedef struct sb_keys sb_keys_t;

/*  Generates a fresh authority (Ed25519) or member (Curve25519 + Ed25519)
    keypair.  `name` is [A-Za-z0-9_.-]{1,64} and not exactly 32 hex digits
    (those are key ids in revocation lists).  NULL with err on a bad name or
    if secure memory is exhausted.  */
sb_keys_t *sb_keys_new_authority (const char *name, sb_error_t *err);
sb_keys_t *sb_keys_new_member (const char *name, sb_error_t *err);

/*  Public-only member keys from raw public keys (e.g. taken from a
    verified certificate).  */
sb_keys_t *sb_keys_new_public (const char *name, const uint8_t curve_pk [SB_KEY_SIZE],
                               const uint8_t sign_pk [SB_KEY_SIZE], sb_error_t *err);

/*  Loads a secret (.key) or public (.pub) file; the file says which.
    Secret files must be regular files without group/other permissions
    and not symbolic links.  Errors are one line, naming the file, e.g.
    "alice.key: permissions 0644 are too open (group/world may read it); run chmod 600 alice.key".  */
sb_keys_t *sb_keys_load (const char *path, sb_error_t *err);

/*  Parses the text of a key file held in memory (no permission checks).
    Used by sb_keys_load and by the tests.  */
sb_keys_t *sb_keys_parse (const char *text, size_t size, const char *what, sb_error_t *err);

/*  Writes the secret file (mode 0600, created exclusively: an existing
    file or symbolic link is never overwritten) or the public file (0644,
    also exclusive).  On failure nothing is left behind.  */
int sb_keys_save_secret (const sb_keys_t *self, const char *path, sb_error_t *err) SB_WARN_UNUSED;
int sb_keys_save_public (const sb_keys_t *self, const char *path, sb_error_t *err) SB_WARN_UNUSED;

/*  Wipes and frees; NULLs *self_p; safe on NULL and twice.  */
void sb_keys_destroy (sb_keys_t **self_p);

sb_keys_kind_t sb_keys_kind (const sb_keys_t *self);
const char *sb_keys_name (const sb_keys_t *self);
/*  True if the secret halves are present (loaded from a .key file).  */
bool sb_keys_has_secret (const sb_keys_t *self);

/*  Raw keys, borrowed from self (read-only memory).  NULL when absent:
    authorities have no curve keys; public-only keys have no secrets.
    sb_keys_sign_secret returns libsodium's 64-byte Ed25519 secret key.  */
const uint8_t *sb_keys_curve_public (const sb_keys_t *self);
const uint8_t *sb_keys_curve_secret (const sb_keys_t *self);
const uint8_t *sb_keys_sign_public (const sb_keys_t *self);
const uint8_t *sb_keys_sign_secret (const sb_keys_t *self);

/*  The key id (see above) as bytes, and as 32 hex digits + NUL.  */
void sb_keys_id (const sb_keys_t *self, uint8_t id [SB_KEY_ID_SIZE]);
void sb_keys_id_hex (const sb_keys_t *self, char hex [SB_KEY_ID_HEX_SIZE]);

/*  Key id of a member from its two public keys; of an authority from its
    signing key (pass curve_pk NULL).  */
void sb_key_id (const uint8_t *curve_pk, const uint8_t sign_pk [SB_KEY_SIZE],
                uint8_t id [SB_KEY_ID_SIZE]);

/*  Z85 text of the curve keys for zmq_setsockopt (ZMQ also accepts the raw
    32 bytes).  0, or -1 if the key is absent.  The caller should wipe a
    secret it exported (sodium_memzero) when done.  */
int sb_keys_curve_public_z85 (const sb_keys_t *self, char z85 [SB_Z85_KEY_SIZE]);
int sb_keys_curve_secret_z85 (const sb_keys_t *self, char z85 [SB_Z85_KEY_SIZE]);

/*  Member names: [A-Za-z0-9_.-]{1,64}, not exactly 32 hex digits.  */
bool sb_keys_valid_name (const char *name);

/*  Internal, shared with cert.c.  sb__file_read reads a whole regular file
    (never through a symbolic link, at most `max` bytes) into sodium_malloc
    memory, NUL-terminated, and gives its permission bits; the caller
    sodium_free()s it.  sb__file_write creates `path` exclusively with
    exactly `mode` and removes it again if writing fails.  */
char *sb__file_read (const char *path, size_t max, size_t *size_p, unsigned *mode_p,
                     sb_error_t *err);
int sb__file_write (const char *path, const void *data, size_t size, unsigned mode,
                    sb_error_t *err);

#endif
