/*  cert.h — member certificates signed by the cluster authority, the
    access rules they carry, and revocation lists.

    A certificate binds a member's name and public keys (Curve25519 for
    CURVE and sealing, Ed25519 for beacons) to what it may do on the bus:
    the services it may offer and the services it may call, for a time
    window.  The authority (keys.h) signs it with Ed25519.

    Encoding (docs/security.md, "Certificates"): a MessagePack array of two
    bin items, [signed, signature].  `signed` is the exact byte string the
    signature covers; it is itself a MessagePack array in fixed order:

        [ version, name, curve_pk (bin 32), sign_pk (bin 32),
          offer [str...], call [str...], issued_at, expires_at,
          authority_id (bin 16) (, roles) ]

    Version 1 has the first nine fields and no roles; version 2 adds
    `roles`, a uint bit set (SB_CERT_ROLE_*; other bits are refused as
    malformed).  A certificate with no role is signed as version 1, byte
    for byte what older builds issued and read; one with a role as
    version 2.  Roles grant what patterns cannot: SB_CERT_ROLE_BROKER
    lets the member announce itself as a broker (beacons) and speak PEER
    and DIRECTORY to other brokers.

    Verifying never re-encodes: it checks the signature over those bytes.

    Access patterns (offer and call lists), matched against a service name
    or "service.method":
      `*`        anything;
      `P*`       anything starting with P (so `billing.*` matches
                 "billing.charge", and `bill*` matches "billing");
      `P.*`      additionally matches P itself ("billing");
      `NAME`     exactly NAME, and every method of it ("NAME.x").
    Patterns are 1-65 characters: [A-Za-z0-9_.-] with at most one `*`,
    which must come last.

    sb_cert_parse is pure (no allocation that outlives it, no global
    state), bounded (SB_CERT_MAX bytes) and safe on any input: it is the
    fuzz target fuzz/fuzz_cert.c.

    Revocation list: a text file, one entry per line — a member name, or a
    member key id (32 hex digits, as printed by `sb cert show`) — with `#`
    comments.  sb_revocation_reload re-reads it (the broker does on SIGHUP);
    a failed reload keeps the previous list.
*/
#ifndef SB_CERT_H_INCLUDED
#define SB_CERT_H_INCLUDED

#include "security/keys.h"
#include "wire/wire.h"

#define SB_CERT_VERSION 1               /* without roles */
#define SB_CERT_VERSION_ROLES 2         /* with the roles field */
#define SB_CERT_ROLE_BROKER 0x01        /* may act as a broker of the cluster */
#define SB_CERT_ROLES_KNOWN SB_CERT_ROLE_BROKER
#define SB_CERT_MAX 4096                /* encoded certificate, bytes */
#define SB_CERT_LIST_MAX 32             /* entries in the offer and call lists */
#define SB_CERT_PATTERN_MAX 65          /* characters in one pattern */
#define SB_CERT_SIGNATURE_SIZE 64
#define SB_CERT_CLOCK_SKEW 300          /* seconds a certificate may be "early" */
#define SB_CERT_FILE_MAX 16384          /* text file holding a certificate */

/*  Outcome of parsing and verifying.  */
typedef enum {
    SB_CERT_OK = 0,
    SB_CERT_MALFORMED,          /* not a certificate, truncated, bad field */
    SB_CERT_UNSUPPORTED,        /* another format version */
    SB_CERT_WRONG_AUTHORITY,    /* signed by another authority (key id differs) */
    SB_CERT_BAD_SIGNATURE,      /* authority matches, signature does not: forged or altered */
    SB_CERT_NOT_YET_VALID,      /* issued_at is in the future (beyond the skew allowance) */
    SB_CERT_EXPIRED,            /* expires_at has passed */
    SB_CERT_REVOKED,            /* name or key id on the revocation list */
    SB_CERT_KEY_MISMATCH,       /* the certificate is for other keys than presented */
    SB_CERT_UNKNOWN,            /* no certificate known for this key (sb_cert_store) */
    SB_CERT_NOT_BROKER,         /* valid, but without the broker role (sb_cert_check_broker) */
    SB_CERT_STATUS_MAX
} sb_cert_status_t;

/*  "ok", "malformed", "expired", ... — for logs and counters.  */
const char *sb_cert_status_name (sb_cert_status_t status);

/*  A decoded certificate.  Owns no memory: it may be copied, kept, and
    freed by its holder.  `signed_data` is a copy of the signed bytes.  */
typedef struct {
    uint32_t version;
    uint32_t roles;             /* SB_CERT_ROLE_* */
    char name [SB_NAME_MAX + 1];
    uint8_t curve_pk [SB_KEY_SIZE];
    uint8_t sign_pk [SB_KEY_SIZE];
    size_t offer_count;
    char offer [SB_CERT_LIST_MAX][SB_CERT_PATTERN_MAX + 1];
    size_t call_count;
    char call [SB_CERT_LIST_MAX][SB_CERT_PATTERN_MAX + 1];
    uint64_t issued_at;         /* unix seconds */
    uint64_t expires_at;        /* unix seconds, > issued_at */
    uint8_t authority_id [SB_KEY_ID_SIZE];
    uint8_t signature [SB_CERT_SIGNATURE_SIZE];
    size_t signed_size;         /* 0 until signed or parsed */
    uint8_t signed_data [SB_CERT_MAX];
} sb_cert_t;

/*  Issuing, in three steps:
      sb_cert_init: a blank certificate for a member's public keys, valid
        from `issued_at` for `lifetime` seconds;
      sb_cert_add_offer / sb_cert_add_call: one pattern each (checked);
      sb_cert_sign: stamps version and authority id, encodes, signs.
    Each returns 0, or -1 with err.  */
int sb_cert_init (sb_cert_t *cert, const sb_keys_t *member, uint64_t issued_at,
                  uint64_t lifetime, sb_error_t *err) SB_WARN_UNUSED;
int sb_cert_add_offer (sb_cert_t *cert, const char *pattern, sb_error_t *err) SB_WARN_UNUSED;
int sb_cert_add_call (sb_cert_t *cert, const char *pattern, sb_error_t *err) SB_WARN_UNUSED;
/*  Adds each entry of a comma-separated list ("echo,sys,billing.*").  */
int sb_cert_add_offer_list (sb_cert_t *cert, const char *list, sb_error_t *err) SB_WARN_UNUSED;
int sb_cert_add_call_list (sb_cert_t *cert, const char *list, sb_error_t *err) SB_WARN_UNUSED;
/*  Grants roles (SB_CERT_ROLE_* bits); unknown bits: -1 with err.  */
int sb_cert_add_roles (sb_cert_t *cert, uint32_t roles, sb_error_t *err) SB_WARN_UNUSED;
int sb_cert_sign (sb_cert_t *cert, const sb_keys_t *authority, sb_error_t *err) SB_WARN_UNUSED;

/*  Writes the encoding of a signed certificate into out; returns its size,
    or 0 if the certificate is not signed or out is smaller than needed
    (at most SB_CERT_MAX + 80 bytes).  */
size_t sb_cert_encode (const sb_cert_t *cert, uint8_t *out, size_t out_max);

/*  Decodes an encoded certificate; checks structure only (not the
    signature nor the dates).  Returns SB_CERT_OK, SB_CERT_MALFORMED or
    SB_CERT_UNSUPPORTED; err says where.  *out is fully written either way. */
sb_cert_status_t sb_cert_parse (const void *data, size_t size, sb_cert_t *out, sb_error_t *err)
    SB_WARN_UNUSED;

/*  Checks a decoded certificate against the authority's signing public
    key and a time (unix seconds; pass time (NULL) normally).  In order:
    wrong authority, bad signature, not yet valid, expired.  */
sb_cert_status_t sb_cert_verify (const sb_cert_t *cert, const uint8_t authority_pk [SB_KEY_SIZE],
                                 uint64_t now, sb_error_t *err) SB_WARN_UNUSED;

/*  Access checks.  `service` is a service name or "service.method".  */
bool sb_cert_may_offer (const sb_cert_t *cert, const char *service);
bool sb_cert_may_call (const sb_cert_t *cert, const char *service);
/*  May the member act as a broker (beacons, PEER, DIRECTORY)?  */
bool sb_cert_is_broker (const sb_cert_t *cert);
/*  One pattern against one name (the rule above), for callers with their
    own lists.  */
bool sb_cert_pattern_match (const char *pattern, const char *service);
bool sb_cert_valid_pattern (const char *pattern);

/*  The member's key id (keys.h) computed from the certificate's keys.  */
void sb_cert_key_id (const sb_cert_t *cert, uint8_t id [SB_KEY_ID_SIZE]);
void sb_cert_key_id_hex (const sb_cert_t *cert, char hex [SB_KEY_ID_HEX_SIZE]);

/*  Certificate files: text, see docs/security.md.  Save creates the file
    exclusively (0644; a certificate is public).  Load reads and parses
    (structure only; verify afterwards).  */
int sb_cert_save (const sb_cert_t *cert, const char *path, sb_error_t *err) SB_WARN_UNUSED;
sb_cert_status_t sb_cert_load (const char *path, sb_cert_t *out, sb_error_t *err) SB_WARN_UNUSED;

/*  --------------------------------------------------------------------
    Revocation lists.  */

typedef struct sb_revocation sb_revocation_t;

/*  An empty list; `path` (may be NULL) is the file sb_revocation_reload
    reads.  sb_revocation_new with a path loads it at once and fails (NULL,
    err) if it cannot be read.  */
sb_revocation_t *sb_revocation_new (const char *path, sb_error_t *err);
void sb_revocation_destroy (sb_revocation_t **self_p);

/*  Re-reads the file given to sb_revocation_new.  On error the previous
    list stays in force and -1 is returned with err.  */
int sb_revocation_reload (sb_revocation_t *self, sb_error_t *err) SB_WARN_UNUSED;
/*  Adds one entry (name or 32-hex key id) in memory.  */
int sb_revocation_add (sb_revocation_t *self, const char *entry, sb_error_t *err) SB_WARN_UNUSED;
size_t sb_revocation_size (const sb_revocation_t *self);
/*  True if the certificate's name or key id is listed.  */
bool sb_revocation_has (const sb_revocation_t *self, const sb_cert_t *cert);

/*  --------------------------------------------------------------------
    One-call checks for the broker (ZAP) and beacons.  */

typedef struct {
    uint8_t authority_pk [SB_KEY_SIZE];   /* the cluster authority's signing key */
    sb_revocation_t *revoked;              /* optional, borrowed */
} sb_cert_verifier_t;

/*  Parses, verifies at `now`, and checks revocation; fills *out.  */
sb_cert_status_t sb_cert_check (const sb_cert_verifier_t *verifier, const void *data, size_t size,
                                uint64_t now, sb_cert_t *out, sb_error_t *err) SB_WARN_UNUSED;

/*  The same, and the certificate must be made out for `curve_pk` (the
    CURVE key the connection authenticated with, e.g. the ZAP request's
    key or a message's "User-Id"): SB_CERT_KEY_MISMATCH otherwise.  */
sb_cert_status_t sb_cert_check_peer (const sb_cert_verifier_t *verifier, const void *data, size_t size,
                                     const uint8_t curve_pk [SB_KEY_SIZE], uint64_t now,
                                     sb_cert_t *out, sb_error_t *err) SB_WARN_UNUSED;

/*  What a beacon's certificate must be, for brokers and peers alike:
    sb_cert_check at `now`, made out for `signing_pk` (the key that signed
    the beacon; SB_CERT_KEY_MISMATCH otherwise), and with the broker role
    (SB_CERT_NOT_BROKER otherwise; *out is then the valid certificate, so
    the caller can name the member).  */
sb_cert_status_t sb_cert_check_broker (const sb_cert_verifier_t *verifier, const void *data,
                                       size_t size, const uint8_t signing_pk [SB_KEY_SIZE],
                                       uint64_t now, sb_cert_t *out, sb_error_t *err) SB_WARN_UNUSED;

/*  The beacon module's verify_cert callback (beacon.h): `arg` is a
    const sb_cert_verifier_t *.  sb_cert_check_broker now: 0 when it
    passes, 1 when the only fault is a missing broker role, -1 otherwise. */
int sb_cert_verify_beacon (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg);

/*  --------------------------------------------------------------------
    Certificate store: the certificates a broker knows, by CURVE key.  A
    ZAP request for CURVE carries only the client's public key, so the
    broker's ZAP handler looks the key up here and admits it only if its
    certificate is (still) valid and not revoked.  Not thread-safe: one
    owner (the ZAP handler's thread).  */

typedef struct sb_cert_store sb_cert_store_t;

/*  `verifier` is copied; its revocation list stays borrowed (reload it in
    place and the store sees the change).  */
sb_cert_store_t *sb_cert_store_new (const sb_cert_verifier_t *verifier);
void sb_cert_store_destroy (sb_cert_store_t **self_p);

/*  Verifies an encoded certificate at `now` and keeps it (replacing one for
    the same CURVE key).  Returns the verification status; only SB_CERT_OK
    stores.  */
sb_cert_status_t sb_cert_store_add (sb_cert_store_t *self, const void *data, size_t size,
                                    uint64_t now, sb_error_t *err);

/*  Adds every `*.cert` file of `dir`.  Returns how many were added, or -1
    if the directory cannot be read; *refused (if not NULL) counts files
    that were refused, and err describes the last refusal.  */
int sb_cert_store_load_dir (sb_cert_store_t *self, const char *dir, uint64_t now,
                            size_t *refused, sb_error_t *err);

/*  The certificate for a CURVE key, re-checked for expiry and revocation
    at `now`; NULL with *status (SB_CERT_UNKNOWN, SB_CERT_EXPIRED,
    SB_CERT_REVOKED) and err otherwise.  The result is borrowed from the
    store: valid until the next add or destroy.  */
const sb_cert_t *sb_cert_store_lookup (sb_cert_store_t *self, const uint8_t curve_pk [SB_KEY_SIZE],
                                       uint64_t now, sb_cert_status_t *status, sb_error_t *err);
size_t sb_cert_store_size (const sb_cert_store_t *self);

/*  The same by member name: of the certificates with that name that are
    valid at `now` and not revoked, the most recently issued one (during a
    key rotation two keypairs may share a name).  NULL with *status
    SB_CERT_UNKNOWN when there is none.  Cost: one pass over the store.  */
const sb_cert_t *sb_cert_store_lookup_name (sb_cert_store_t *self, const char *name, uint64_t now,
                                            sb_cert_status_t *status, sb_error_t *err);

#endif
