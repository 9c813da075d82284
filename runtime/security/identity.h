/*  identity.h — a process's security identity: who it is on the bus
    (member name, keys, certificate) and whom it trusts (the authority).

    Every process (sb run, sb call, the REST bridge, a broker) loads its
    identity the same way, from a keys directory (docs/security.md,
    "Keys directory"):

        DIR/authority.pub   the cluster authority's public key
        DIR/NAME.key        the member's secret keys (mode 0600)
        DIR/NAME.cert       the member's certificate, signed by the authority

    DIR defaults to $SB_KEYS and NAME to $SB_MEMBER.  Loading checks that
    the certificate is signed by that authority, valid now, and made out
    for exactly these keys, so a process never starts with an identity the
    brokers would refuse; the error says which file and why.

    Servers' keys: a CURVE client must know the broker's public key before
    it connects.  It is given with the endpoint, after a '#':

        tcp://127.0.0.1:7600#<broker CURVE public key, 64 hex digits or 40 Z85>

    (`sb cert show` and `sb keygen` print the curve key in hex).  A list of
    endpoints carries one key per endpoint.  sb_identity_parse_endpoint
    splits the two; brokers found through beacons take the key from the
    beacon's verified certificate instead.

    Thread safety: an identity is immutable after loading and may be read
    from any thread.  */
#ifndef SB_IDENTITY_H_INCLUDED
#define SB_IDENTITY_H_INCLUDED

#include "security/cert.h"

#define SB_IDENTITY_KEYS_ENV "SB_KEYS"
#define SB_IDENTITY_MEMBER_ENV "SB_MEMBER"
#define SB_IDENTITY_AUTHORITY_FILE "authority.pub"
#define SB_ENDPOINT_MAX 256                 /* endpoint text without the key */

typedef struct sb_identity sb_identity_t;

/*  Loads DIR/authority.pub, DIR/NAME.key and DIR/NAME.cert and checks
    them (see above).  NULL `keys_dir` / `member_name` mean $SB_KEYS /
    $SB_MEMBER.  NULL with err (SB_E_UNAUTHORIZED for a certificate that
    is expired, not yet valid, from another authority, forged or for
    other keys; SB_E_BAD_REQUEST for missing or unreadable files or
    settings).  */
sb_identity_t *sb_identity_load (const char *keys_dir, const char *member_name, sb_error_t *err);
/*  Wipes the keys and frees; NULLs *self_p; safe on NULL and twice.  */
void sb_identity_destroy (sb_identity_t **self_p);

const char *sb_identity_name (const sb_identity_t *self);
const char *sb_identity_dir (const sb_identity_t *self);
/*  The member keys (with secrets), borrowed.  */
const sb_keys_t *sb_identity_keys (const sb_identity_t *self);
/*  The verified certificate, decoded, and its encoding (to send to a
    peer or put in a beacon), borrowed.  */
const sb_cert_t *sb_identity_cert (const sb_identity_t *self);
const uint8_t *sb_identity_cert_bytes (const sb_identity_t *self, size_t *size);
/*  The authority's Ed25519 public key (32 bytes), and a verifier for the
    certificates of others (no revocation list), borrowed.  */
const uint8_t *sb_identity_authority (const sb_identity_t *self);
const sb_cert_verifier_t *sb_identity_verifier (const sb_identity_t *self);
/*  Seconds until the certificate expires (0 if it already has).  */
uint64_t sb_identity_expires_in (const sb_identity_t *self);

/*  Makes a socket (libzmq handle: zsock_resolve of a zsock_t) a CURVE
    client of the server with `server_public` (32 bytes), with this
    member's keys.  Call before connect.  0, or -1 with err.  */
int sb_identity_curve_client (const sb_identity_t *self, void *zmq_socket,
                              const uint8_t server_public [SB_KEY_SIZE], sb_error_t *err)
    SB_WARN_UNUSED;

/*  Splits "ENDPOINT#KEY" into the endpoint text (NUL-terminated, at most
    SB_ENDPOINT_MAX bytes with the NUL) and the 32-byte key (64 hex digits
    or 40 Z85 characters).  *has_key says whether a key was given (an
    endpoint without '#' is valid and has none).  0, or -1 with err on a
    malformed key or an overlong endpoint.  */
int sb_identity_parse_endpoint (const char *spec, char endpoint [SB_ENDPOINT_MAX],
                                uint8_t server_public [SB_KEY_SIZE], bool *has_key, sb_error_t *err)
    SB_WARN_UNUSED;

#endif
