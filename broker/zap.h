/*  zap.h — the broker's ZAP handler (ZeroMQ RFC 27) for CURVE.

    The broker's ROUTER is a CURVE server (sb_zap_curve_server).  On every
    CURVE handshake libzmq asks the ZAP handler bound at
    inproc://zeromq.zap.01 in the same zmq context — CZMQ's global context,
    the one every zsock uses — whether to admit the client, giving only
    the client's CURVE public key.  This handler admits the key iff the
    broker knows a certificate for it that is signed by the cluster
    authority, valid now and not revoked (runtime/security/cert.h); other brokers
    of the cluster are members too and are admitted the same way.
    Everything else is refused (status 400) and counted by reason.

    An admitted connection carries, on every message received from it,
    the ZAP reply's properties (zmq_msg_gets, or CZMQ zframe_meta):
      "User-Id"      the member name from the certificate;
      "X-Curve-Key"  the client's CURVE public key, 64 lowercase hex digits.
    The broker takes the certificate for its ACL checks from there:
    sb_zap_lookup_key with the key (exact) or sb_zap_lookup_name.

    Certificates come from a directory of `*.cert` files (the broker's
    certificate store), plus any added at run time (sb_zap_add_cert, e.g.
    from signed beacons).  A certificate file that fails verification when
    loaded (bad signature, other authority, expired, revoked) is not
    admitted, but its key is remembered with the reason, so a client
    presenting that key is refused as "bad_signature", "expired" ... rather
    than "unknown".

    Threads: the handler runs as a zactor.  sb_zap_reload, the lookups
    and the counters may be called from any thread: the certificate state
    is swapped whole under a mutex; a failed reload keeps the old state.
    Lookups copy the certificate out (about 8 KiB), so call them once per
    session rather than per message.  */
#ifndef SB_ZAP_H_INCLUDED
#define SB_ZAP_H_INCLUDED

#include "security/cert.h"

#include <czmq.h>

#define SB_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define SB_ZAP_DOMAIN "switchboard"
#define SB_ZAP_KEY_PROPERTY "X-Curve-Key"

typedef struct sb_zap sb_zap_t;

/*  Why a handshake was refused; sb_zap_refused takes one of these.  The
    certificate reasons are sb_cert_status_t values (SB_CERT_UNKNOWN,
    SB_CERT_EXPIRED, SB_CERT_REVOKED, SB_CERT_BAD_SIGNATURE, ...);
    SB_ZAP_REFUSED_MECHANISM counts requests for another mechanism than
    CURVE (NULL, PLAIN) and SB_ZAP_REFUSED_DOMAIN those for another ZAP
    domain than "switchboard".  */
#define SB_ZAP_REFUSED_MECHANISM ((int) SB_CERT_STATUS_MAX)
#define SB_ZAP_REFUSED_DOMAIN ((int) SB_CERT_STATUS_MAX + 1)
#define SB_ZAP_REFUSED_MAX ((int) SB_CERT_STATUS_MAX + 2)

typedef struct {
    uint64_t admitted;
    uint64_t refused;                       /* total */
    uint64_t by_reason [SB_ZAP_REFUSED_MAX]; /* index: sb_cert_status_t or SB_ZAP_REFUSED_* */
    uint64_t requests_malformed;            /* ZAP requests that broke RFC 27 (no reply possible) */
    size_t certs;                           /* certificates held */
    size_t certs_refused;                   /* certificate files refused at the last (re)load */
} sb_zap_stats_t;

/*  Loads the authority's public key (an authority .pub file), the
    revocation list (`revocations_path`, may be NULL) and every `*.cert`
    file of `certs_dir` (may be NULL: start empty), then starts the
    handler and binds it.  Returns NULL with err if a file cannot be read
    or the ZAP endpoint is already bound in this context (one handler per
    process).  Refused certificate files do not fail it (see
    sb_zap_stats_t.certs_refused and the log line it prints).  */
sb_zap_t *sb_zap_new (const char *authority_pub_path, const char *certs_dir,
                      const char *revocations_path, sb_error_t *err);
/*  Stops the handler and unbinds it; NULLs *self_p; safe on NULL.  */
void sb_zap_destroy (sb_zap_t **self_p);

/*  Re-reads the certificate directory and the revocation list (the broker
    does on SIGHUP).  On any error the previous state stays in force and
    -1 is returned with err.  Certificates added with sb_zap_add_cert are
    kept (re-checked against the new revocation list).  */
int sb_zap_reload (sb_zap_t *self, sb_error_t *err) SB_WARN_UNUSED;

/*  Verifies an encoded certificate now and adds it; the status says why
    not (SB_CERT_OK when added).  */
sb_cert_status_t sb_zap_add_cert (sb_zap_t *self, const void *data, size_t size, sb_error_t *err);

/*  Copies into *out the certificate valid now for a CURVE key / a member
    name (the newest valid one if several share it).  0, or -1 with err
    when there is none (unknown, expired, revoked).  */
int sb_zap_lookup_key (sb_zap_t *self, const uint8_t curve_pk [SB_KEY_SIZE], sb_cert_t *out,
                       sb_error_t *err) SB_WARN_UNUSED;
int sb_zap_lookup_name (sb_zap_t *self, const char *name, sb_cert_t *out, sb_error_t *err)
    SB_WARN_UNUSED;

/*  A snapshot of the counters.  */
void sb_zap_stats (sb_zap_t *self, sb_zap_stats_t *stats);
/*  One counter: refusals for `reason` (see above).  */
uint64_t sb_zap_refused (sb_zap_t *self, int reason);
/*  "unknown", "expired", ..., "mechanism", "domain".  */
const char *sb_zap_reason_name (int reason);

/*  Makes a socket (a libzmq handle: zsock_resolve of a zsock_t) a CURVE
    server with the broker's member keys, in ZAP domain "switchboard".
    Call before bind.  0, or -1 with err (keys without a secret).  */
int sb_zap_curve_server (void *zmq_socket, const sb_keys_t *broker_keys, sb_error_t *err)
    SB_WARN_UNUSED;

/*  The client's CURVE key from a received frame's "X-Curve-Key" property.
    0, or -1 if absent or malformed (connection not admitted by this
    handler).  */
int sb_zap_frame_key (zframe_t *frame, uint8_t curve_pk [SB_KEY_SIZE]) SB_WARN_UNUSED;

#endif
