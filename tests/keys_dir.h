/*  keys_dir.h — a temporary keys directory for the security tests
    (broker_zap.t, broker_security.t, runtime_identity.t), laid out as an
    operator lays it out with `sb keygen` / `sb cert sign`: made under
    /tmp, files written into it atomically with the mode asked for (the
    loaders check modes), certificates issued into it, removed at the end.
    Also the CURVE client socket these tests point at a broker.
*/
#ifndef SB_KEYS_DIR_H_INCLUDED
#define SB_KEYS_DIR_H_INCLUDED

#include "security/cert.h"
#include "security/keys.h"
#include "tap.h"

#include <czmq.h>
#include <sys/stat.h>

/*  Makes /tmp/sb-TAG.XXXXXX into `dir`; 0, or -1 when it cannot.  */
static inline int
kd_make (char *dir, size_t size, const char *tag)
{
    snprintf (dir, size, "/tmp/sb-%s.XXXXXX", tag);
    return mkdtemp (dir) ? 0 : -1;
}

static inline void
kd_path (char *out, size_t size, const char *dir, const char *name)
{
    snprintf (out, size, "%s/%s", dir, name);
}

/*  Writes `text` to DIR/NAME with `mode`, by rename so that a reload
    never sees half a file.  */
static inline int
kd_write (const char *dir, const char *name, const char *text, mode_t mode)
{
    char path [512], tmp [600];
    kd_path (path, sizeof path, dir, name);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen (tmp, "w");
    if (!file)
        return -1;
    fputs (text, file);
    fclose (file);
    chmod (tmp, mode);
    return rename (tmp, path);
}

/*  A certificate to issue.  */
typedef struct {
    const sb_keys_t *keys;          /* the member it is for */
    const sb_keys_t *authority;     /* who signs it */
    uint64_t issued_at;             /* valid from (Unix s) */
    uint64_t lifetime;              /* for this many seconds */
    const char *offer;              /* services it may offer, a list; NULL: none */
    const char *call;               /* services it may call, a list; NULL: none */
    uint32_t roles;                 /* SB_CERT_ROLE_* (SB_CERT_ROLE_BROKER for a broker) */
    bool forge;                     /* flip a signature bit after signing */
} kd_cert_t;

/*  Issues the certificate and saves it as DIR/FILE; 0, or -1 with the
    reason as a TAP comment.  */
static inline int
kd_issue (const char *dir, const char *file, const kd_cert_t *spec)
{
    sb_error_t err = { 0 };
    sb_cert_t *cert = (sb_cert_t *) calloc (1, sizeof (sb_cert_t));
    char path [512];
    kd_path (path, sizeof path, dir, file);
    int rc = -1;
    if (cert && !sb_cert_init (cert, spec->keys, spec->issued_at, spec->lifetime, &err)
    &&  !sb_cert_add_offer_list (cert, spec->offer, &err) && !sb_cert_add_call_list (cert, spec->call, &err)
    &&  !sb_cert_add_roles (cert, spec->roles, &err) && !sb_cert_sign (cert, spec->authority, &err)) {
        if (spec->forge)
            cert->signature [5] ^= 0x40;
        rc = sb_cert_save (cert, path, &err);
    }
    if (rc)
        tap_diag ("issuing %s: %s", file, err.text);
    free (cert);
    return rc;
}

/*  A DEALER that speaks CURVE with `keys` (NULL: no CURVE at all) to the
    server whose public key is `server_key`, connected to `endpoint`.  */
static inline zsock_t *
kd_curve_dealer (const sb_keys_t *keys, const uint8_t *server_key, const char *endpoint)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    void *handle = zsock_resolve (dealer);
    zsock_set_linger (dealer, 0);
    if (keys) {
        zmq_setsockopt (handle, ZMQ_CURVE_SERVERKEY, server_key, SB_KEY_SIZE);
        zmq_setsockopt (handle, ZMQ_CURVE_PUBLICKEY, sb_keys_curve_public (keys), SB_KEY_SIZE);
        zmq_setsockopt (handle, ZMQ_CURVE_SECRETKEY, sb_keys_curve_secret (keys), SB_KEY_SIZE);
    }
    zsock_connect (dealer, "%s", endpoint);
    return dealer;
}

/*  Removes the directory and all in it.  */
static inline void
kd_remove (const char *dir)
{
    char command [600];
    snprintf (command, sizeof command, "rm -rf '%s'", dir);
    if (system (command) != 0)
        tap_diag ("could not remove %s", dir);
}

#endif
