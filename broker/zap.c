/*  zap.c — the broker's ZAP handler for CURVE (see zap.h).

    Two parts share one sb_zap_t:

    - the certificate state (authority key, revocation list, certificate
      store, and the keys whose certificate files were refused, with the
      reason) behind a mutex.  A reload builds a complete new state from
      the files and swaps it in only if every file could be read;
    - a zactor owning a REP socket bound at inproc://zeromq.zap.01.  libzmq
      sends it one request per CURVE handshake (RFC 27 frames: version,
      request id, domain, address, routing id, mechanism, credentials);
      it answers 200 with the member name as user id and the client's key
      as metadata, or 400 with the reason.

    The handler exits only on $TERM from sb_zap_destroy, never on SIGINT:
    a CURVE server without its ZAP handler would let anyone in on a
    libzmq that cannot enforce the domain (ZMQ_ZAP_ENFORCE_DOMAIN is a
    draft option; sb_zap_curve_server sets it where available).
*/
#include "zap.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93       /* libzmq draft option, 4.2.3 and later */
#endif

#define S_HEX_KEY_SIZE (SB_KEY_SIZE * 2 + 1)
#define S_ENCODED_MAX (SB_CERT_MAX + 80)

/*  One complete certificate state; replaced whole on reload.  */
typedef struct {
    sb_revocation_t *revoked;
    sb_cert_store_t *store;
    zhashx_t *rejected;         /* hex curve key -> int * (sb_cert_status_t), owned */
    size_t certs_refused;
} s_state_t;

struct sb_zap {
    pthread_mutex_t lock;       /* guards everything below but actor */
    uint8_t authority_pk [SB_KEY_SIZE];
    char *certs_dir;            /* NULL: none */
    char *revocations_path;     /* NULL: none */
    s_state_t *state;
    zlistx_t *extra;            /* zchunk_t * of certificates added at run time */
    sb_zap_stats_t stats;
    zactor_t *actor;
    int bind_errno;             /* set by the actor when it cannot bind */
};

static const char *s_reason_names [SB_ZAP_REFUSED_MAX] = {
    [SB_ZAP_REFUSED_MECHANISM] = "mechanism",
    [SB_ZAP_REFUSED_DOMAIN] = "domain",
};

const char *
sb_zap_reason_name (int reason)
{
    if (reason < 0 || reason >= SB_ZAP_REFUSED_MAX)
        return "unknown";
    if (reason < (int) SB_CERT_STATUS_MAX)
        return sb_cert_status_name ((sb_cert_status_t) reason);
    return s_reason_names [reason];
}

/*  --------------------------------------------------------------------
    Certificate state.  */

static void
s_int_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static void
s_chunk_free (void **item_p)
{
    zchunk_destroy ((zchunk_t **) item_p);
}

static void
s_state_destroy (s_state_t **state_p)
{
    if (state_p && *state_p) {
        s_state_t *state = *state_p;
        sb_cert_store_destroy (&state->store);
        sb_revocation_destroy (&state->revoked);
        zhashx_destroy (&state->rejected);
        free (state);
        *state_p = NULL;
    }
}

/*  Remembers why a certificate for `curve_pk` was refused.  */
static void
s_state_reject (s_state_t *state, const uint8_t curve_pk [SB_KEY_SIZE], sb_cert_status_t status)
{
    char key [S_HEX_KEY_SIZE];
    int *reason = (int *) malloc (sizeof (int));
    if (!reason)
        return;
    *reason = (int) status;
    sodium_bin2hex (key, sizeof key, curve_pk, SB_KEY_SIZE);
    zhashx_update (state->rejected, key, reason);
}

/*  Adds one encoded certificate to a state; returns its status.  */
static sb_cert_status_t
s_state_add (s_state_t *state, const void *data, size_t size, uint64_t now, sb_error_t *err)
{
    sb_cert_status_t status = sb_cert_store_add (state->store, data, size, now, err);
    if (status != SB_CERT_OK) {
        /*  Parse once more only to learn the key the refusal is about.  */
        sb_cert_t *cert = (sb_cert_t *) malloc (sizeof (sb_cert_t));
        sb_error_t ignored;
        if (cert && sb_cert_parse (data, size, cert, &ignored) == SB_CERT_OK)
            s_state_reject (state, cert->curve_pk, status);
        free (cert);
    }
    else {
        /*  A good certificate for a key overrides an earlier refusal.  */
        sb_cert_t *cert = (sb_cert_t *) malloc (sizeof (sb_cert_t));
        sb_error_t ignored;
        if (cert && sb_cert_parse (data, size, cert, &ignored) == SB_CERT_OK) {
            char key [S_HEX_KEY_SIZE];
            sodium_bin2hex (key, sizeof key, cert->curve_pk, SB_KEY_SIZE);
            zhashx_delete (state->rejected, key);
        }
        free (cert);
    }
    return status;
}

/*  Builds a complete state from the files and the run-time certificates.
    Called with the lock held (reads self->extra).  NULL with err if a file
    cannot be read; refused certificate files are counted, not fatal.  */
static s_state_t *
s_state_load (sb_zap_t *self, sb_error_t *err)
{
    uint64_t now = (uint64_t) time (NULL);
    s_state_t *state = (s_state_t *) calloc (1, sizeof *state);
    if (!state) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    state->revoked = sb_revocation_new (self->revocations_path, err);
    state->rejected = zhashx_new ();
    if (!state->revoked || !state->rejected) {
        if (state->revoked)
            sb_error_set (err, SB_E_INTERNAL, "out of memory");
        s_state_destroy (&state);
        return NULL;
    }
    zhashx_set_destructor (state->rejected, s_int_free);
    sb_cert_verifier_t verifier = { .revoked = state->revoked };
    memcpy (verifier.authority_pk, self->authority_pk, SB_KEY_SIZE);
    state->store = sb_cert_store_new (&verifier);
    if (!state->store) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        s_state_destroy (&state);
        return NULL;
    }
    if (self->certs_dir) {
        DIR *dir = opendir (self->certs_dir);
        if (!dir) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot read certificate directory: %s",
                          self->certs_dir, strerror (errno));
            s_state_destroy (&state);
            return NULL;
        }
        sb_cert_t *cert = (sb_cert_t *) malloc (sizeof (sb_cert_t));
        uint8_t *encoded = (uint8_t *) malloc (S_ENCODED_MAX);
        struct dirent *entry;
        while (cert && encoded && (entry = readdir (dir))) {
            size_t len = strlen (entry->d_name);
            char path [4096];
            if (len <= 5 || strcmp (entry->d_name + len - 5, ".cert") != 0
            ||  snprintf (path, sizeof path, "%s/%s", self->certs_dir, entry->d_name) >= (int) sizeof path)
                continue;
            sb_error_t why = { 0 };
            sb_cert_status_t status = sb_cert_load (path, cert, &why);
            size_t size = status == SB_CERT_OK ? sb_cert_encode (cert, encoded, S_ENCODED_MAX) : 0;
            if (status == SB_CERT_OK)
                status = s_state_add (state, encoded, size, now, &why);
            if (status != SB_CERT_OK) {
                state->certs_refused++;
                zsys_warning ("zap: certificate %s refused: %s (%s)", path,
                              sb_cert_status_name (status), why.text);
            }
        }
        closedir (dir);
        bool oom = !cert || !encoded;
        free (cert);
        free (encoded);
        if (oom) {
            sb_error_set (err, SB_E_INTERNAL, "out of memory");
            s_state_destroy (&state);
            return NULL;
        }
    }
    zchunk_t *chunk = (zchunk_t *) zlistx_first (self->extra);
    for (; chunk; chunk = (zchunk_t *) zlistx_next (self->extra)) {
        sb_error_t why;
        s_state_add (state, zchunk_data (chunk), zchunk_size (chunk), now, &why);
    }
    return state;
}

/*  Decides on one CURVE key.  Called with the lock held.  Fills `name`
    on success; returns the reason (SB_CERT_OK = admit).  */
static int
s_decide (sb_zap_t *self, const uint8_t curve_pk [SB_KEY_SIZE], char name [SB_NAME_MAX + 1],
          sb_error_t *err)
{
    sb_cert_status_t status;
    const sb_cert_t *cert = sb_cert_store_lookup (self->state->store, curve_pk, (uint64_t) time (NULL),
                                                  &status, err);
    if (cert) {
        snprintf (name, SB_NAME_MAX + 1, "%s", cert->name);
        return SB_CERT_OK;
    }
    if (status == SB_CERT_UNKNOWN) {
        char key [S_HEX_KEY_SIZE];
        sodium_bin2hex (key, sizeof key, curve_pk, SB_KEY_SIZE);
        const int *reason = (const int *) zhashx_lookup (self->state->rejected, key);
        if (reason) {
            sb_error_set (err, SB_E_UNAUTHORIZED, "certificate for CURVE key %.16s... was refused: %s",
                          key, sb_cert_status_name ((sb_cert_status_t) *reason));
            return *reason;
        }
    }
    return (int) status;
}

/*  --------------------------------------------------------------------
    The handler actor.  */

static bool
s_frame_is (zframe_t *frame, const char *text)
{
    size_t len = strlen (text);
    return frame && zframe_size (frame) == len && memcmp (zframe_data (frame), text, len) == 0;
}

/*  Appends one ZMTP property (name-len:1, name, value-len:4 BE, value).  */
static size_t
s_put_property (uint8_t *out, const char *name, const char *value)
{
    size_t name_len = strlen (name), value_len = strlen (value);
    size_t at = 0;
    out [at++] = (uint8_t) name_len;
    memcpy (out + at, name, name_len);
    at += name_len;
    out [at++] = (uint8_t) (value_len >> 24);
    out [at++] = (uint8_t) (value_len >> 16);
    out [at++] = (uint8_t) (value_len >> 8);
    out [at++] = (uint8_t) value_len;
    memcpy (out + at, value, value_len);
    return at + value_len;
}

static void
s_reply (zsock_t *handler, zframe_t *request_id, const char *status, const char *text,
         const char *user_id, const uint8_t *metadata, size_t metadata_size)
{
    zmsg_t *reply = zmsg_new ();
    zmsg_addstr (reply, "1.0");
    if (request_id)
        zmsg_append (reply, &request_id);
    else
        zmsg_addmem (reply, NULL, 0);
    zmsg_addstr (reply, status);
    zmsg_addstr (reply, text);
    zmsg_addstr (reply, user_id);
    zmsg_addmem (reply, metadata, metadata_size);
    zmsg_send (&reply, handler);
}

static void
s_handle_request (sb_zap_t *self, zsock_t *handler)
{
    zmsg_t *request = zmsg_recv (handler);
    if (!request)
        return;
    zframe_t *version = zmsg_pop (request);
    zframe_t *request_id = zmsg_pop (request);
    zframe_t *domain = zmsg_pop (request);
    zframe_t *address = zmsg_pop (request);
    zframe_t *routing_id = zmsg_pop (request);
    zframe_t *mechanism = zmsg_pop (request);
    zframe_t *credentials = zmsg_pop (request);
    int reason = -1;
    char name [SB_NAME_MAX + 1] = "";
    char key [S_HEX_KEY_SIZE] = "";
    sb_error_t err = { 0 };

    pthread_mutex_lock (&self->lock);
    if (!s_frame_is (version, "1.0") || !mechanism) {
        self->stats.requests_malformed++;
        pthread_mutex_unlock (&self->lock);
        s_reply (handler, request_id, "500", "malformed ZAP request", "", NULL, 0);
        request_id = NULL;
        goto done;
    }
    if (!s_frame_is (domain, SB_ZAP_DOMAIN)) {
        reason = SB_ZAP_REFUSED_DOMAIN;
        sb_error_set (&err, SB_E_UNAUTHORIZED, "ZAP domain is not '" SB_ZAP_DOMAIN "'");
    }
    else
    if (!s_frame_is (mechanism, "CURVE") || zframe_size (credentials) != SB_KEY_SIZE) {
        reason = SB_ZAP_REFUSED_MECHANISM;
        sb_error_set (&err, SB_E_UNAUTHORIZED, "only CURVE is admitted");
    }
    else {
        reason = s_decide (self, zframe_data (credentials), name, &err);
        sodium_bin2hex (key, sizeof key, zframe_data (credentials), SB_KEY_SIZE);
    }
    if (reason == SB_CERT_OK)
        self->stats.admitted++;
    else {
        self->stats.refused++;
        self->stats.by_reason [reason]++;
    }
    pthread_mutex_unlock (&self->lock);

    if (reason == SB_CERT_OK) {
        uint8_t metadata [64 + S_HEX_KEY_SIZE];
        size_t size = s_put_property (metadata, SB_ZAP_KEY_PROPERTY, key);
        s_reply (handler, request_id, "200", "OK", name, metadata, size);
    }
    else {
        char *peer = address ? zframe_strdup (address) : NULL;
        zsys_info ("zap: refused %s (%s): %s", peer ? peer : "?", sb_zap_reason_name (reason), err.text);
        free (peer);
        s_reply (handler, request_id, "400", err.text, "", NULL, 0);
    }
    request_id = NULL;
done:
    zframe_destroy (&version);
    zframe_destroy (&request_id);
    zframe_destroy (&domain);
    zframe_destroy (&address);
    zframe_destroy (&routing_id);
    zframe_destroy (&mechanism);
    zframe_destroy (&credentials);
    zmsg_destroy (&request);
}

static void
s_handler_actor (zsock_t *pipe, void *args)
{
    sb_zap_t *self = (sb_zap_t *) args;
    zsock_t *handler = zsock_new (ZMQ_REP);
    if (!handler || zsock_bind (handler, "%s", SB_ZAP_ENDPOINT) != 0) {
        self->bind_errno = handler ? zmq_errno () : ENOMEM;
        if (!self->bind_errno)
            self->bind_errno = EADDRINUSE;
        zsock_destroy (&handler);
        zsock_signal (pipe, 1);
        return;
    }
    zsock_set_linger (handler, 0);
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, handler, NULL);
    zpoller_set_nonstop (poller, true);
    bool running = poller != NULL;
    while (running) {
        void *which = zpoller_wait (poller, 1000);
        if (which == handler)
            s_handle_request (self, handler);
        else
        if (which == pipe) {
            zmsg_t *msg = zmsg_recv (pipe);
            char *command = msg ? zmsg_popstr (msg) : NULL;
            if ((!msg && zmq_errno () == ETERM) || (command && streq (command, "$TERM")))
                running = false;
            free (command);
            zmsg_destroy (&msg);
        }
        else
        if (zpoller_terminated (poller))
            running = false;
    }
    zpoller_destroy (&poller);
    zsock_destroy (&handler);
}

/*  --------------------------------------------------------------------
    Public API.  */

sb_zap_t *
sb_zap_new (const char *authority_pub_path, const char *certs_dir, const char *revocations_path,
            sb_error_t *err)
{
    if (!authority_pub_path) {
        sb_error_set (err, SB_E_BAD_REQUEST, "the authority's public key file is required");
        return NULL;
    }
    sb_keys_t *authority = sb_keys_load (authority_pub_path, err);
    if (!authority)
        return NULL;
    if (sb_keys_kind (authority) != SB_KEYS_AUTHORITY) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not an authority key (made by 'sb keygen authority')",
                      authority_pub_path);
        sb_keys_destroy (&authority);
        return NULL;
    }
    sb_zap_t *self = (sb_zap_t *) calloc (1, sizeof *self);
    if (!self) {
        sb_keys_destroy (&authority);
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    memcpy (self->authority_pk, sb_keys_sign_public (authority), SB_KEY_SIZE);
    sb_keys_destroy (&authority);
    pthread_mutex_init (&self->lock, NULL);
    self->certs_dir = certs_dir ? strdup (certs_dir) : NULL;
    self->revocations_path = revocations_path ? strdup (revocations_path) : NULL;
    self->extra = zlistx_new ();
    if ((certs_dir && !self->certs_dir) || (revocations_path && !self->revocations_path) || !self->extra) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        sb_zap_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->extra, s_chunk_free);
    self->state = s_state_load (self, err);
    if (!self->state) {
        sb_zap_destroy (&self);
        return NULL;
    }
    self->stats.certs = sb_cert_store_size (self->state->store);
    self->stats.certs_refused = self->state->certs_refused;
    self->actor = zactor_new (s_handler_actor, self);
    if (!self->actor || self->bind_errno) {
        sb_error_set (err, SB_E_INTERNAL, "cannot bind the ZAP handler at " SB_ZAP_ENDPOINT ": %s",
                      self->bind_errno == EADDRINUSE ? "another handler is bound in this process"
                      : zmq_strerror (self->bind_errno ? self->bind_errno : zmq_errno ()));
        sb_zap_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_zap_destroy (sb_zap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_zap_t *self = *self_p;
    zactor_destroy (&self->actor);
    s_state_destroy (&self->state);
    zlistx_destroy (&self->extra);
    free (self->certs_dir);
    free (self->revocations_path);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

int
sb_zap_reload (sb_zap_t *self, sb_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    s_state_t *state = s_state_load (self, err);
    if (state) {
        s_state_destroy (&self->state);
        self->state = state;
        self->stats.certs = sb_cert_store_size (state->store);
        self->stats.certs_refused = state->certs_refused;
    }
    pthread_mutex_unlock (&self->lock);
    return state ? 0 : -1;
}

sb_cert_status_t
sb_zap_add_cert (sb_zap_t *self, const void *data, size_t size, sb_error_t *err)
{
    if (!data || size == 0 || size > S_ENCODED_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "certificate of %zu bytes refused", size);
        return SB_CERT_MALFORMED;
    }
    pthread_mutex_lock (&self->lock);
    sb_cert_status_t status = s_state_add (self->state, data, size, (uint64_t) time (NULL), err);
    if (status == SB_CERT_OK) {
        zchunk_t *chunk = zchunk_new (data, size);
        if (chunk)
            zlistx_add_end (self->extra, chunk);
        self->stats.certs = sb_cert_store_size (self->state->store);
    }
    pthread_mutex_unlock (&self->lock);
    return status;
}

int
sb_zap_lookup_key (sb_zap_t *self, const uint8_t curve_pk [SB_KEY_SIZE], sb_cert_t *out, sb_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    const sb_cert_t *cert = sb_cert_store_lookup (self->state->store, curve_pk, (uint64_t) time (NULL),
                                                  NULL, err);
    if (cert)
        memcpy (out, cert, sizeof *out);
    pthread_mutex_unlock (&self->lock);
    return cert ? 0 : -1;
}

int
sb_zap_lookup_name (sb_zap_t *self, const char *name, sb_cert_t *out, sb_error_t *err)
{
    pthread_mutex_lock (&self->lock);
    const sb_cert_t *cert = sb_cert_store_lookup_name (self->state->store, name, (uint64_t) time (NULL),
                                                       NULL, err);
    if (cert)
        memcpy (out, cert, sizeof *out);
    pthread_mutex_unlock (&self->lock);
    return cert ? 0 : -1;
}

void
sb_zap_stats (sb_zap_t *self, sb_zap_stats_t *stats)
{
    pthread_mutex_lock (&self->lock);
    *stats = self->stats;
    pthread_mutex_unlock (&self->lock);
}

uint64_t
sb_zap_refused (sb_zap_t *self, int reason)
{
    if (reason < 0 || reason >= SB_ZAP_REFUSED_MAX)
        return 0;
    pthread_mutex_lock (&self->lock);
    uint64_t count = self->stats.by_reason [reason];
    pthread_mutex_unlock (&self->lock);
    return count;
}

int
sb_zap_curve_server (void *zmq_socket, const sb_keys_t *broker_keys, sb_error_t *err)
{
    if (!zmq_socket || !broker_keys || sb_keys_kind (broker_keys) != SB_KEYS_MEMBER
    ||  !sb_keys_has_secret (broker_keys))
        return sb_error_set (err, SB_E_BAD_REQUEST, "a CURVE server needs member keys with their secret");
    int one = 1;
    if (zmq_setsockopt (zmq_socket, ZMQ_CURVE_SERVER, &one, sizeof one)
    ||  zmq_setsockopt (zmq_socket, ZMQ_CURVE_SECRETKEY, sb_keys_curve_secret (broker_keys), SB_KEY_SIZE)
    ||  zmq_setsockopt (zmq_socket, ZMQ_ZAP_DOMAIN, SB_ZAP_DOMAIN, strlen (SB_ZAP_DOMAIN)))
        return sb_error_set (err, SB_E_INTERNAL, "cannot make the socket a CURVE server: %s",
                             zmq_strerror (zmq_errno ()));
    /*  Refuse everyone, rather than admit everyone, if no handler answers.
        Only libzmq builds with the draft API know this option.  */
    zmq_setsockopt (zmq_socket, ZMQ_ZAP_ENFORCE_DOMAIN, &one, sizeof one);
    return 0;
}

int
sb_zap_frame_key (zframe_t *frame, uint8_t curve_pk [SB_KEY_SIZE])
{
    const char *hex = frame ? zframe_meta (frame, SB_ZAP_KEY_PROPERTY) : NULL;
    size_t len = 0;
    if (!hex || strlen (hex) != SB_KEY_SIZE * 2
    ||  sodium_hex2bin (curve_pk, SB_KEY_SIZE, hex, SB_KEY_SIZE * 2, NULL, &len, NULL) != 0
    ||  len != SB_KEY_SIZE)
        return -1;
    return 0;
}
