/*  identity.c — a process's security identity from a keys directory
    (see identity.h and docs/security.md, "Keys directory").

    Loading is all-or-nothing: every file is read and cross-checked (the
    key file is a member's secret keys with the expected name, the
    certificate verifies against the authority now and names exactly
    those keys) before an identity exists.  Keys stay in the sodium_malloc
    memory of sb_keys_t; the certificate is public.  */
#include "internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct sb_identity {
    char *dir;
    sb_keys_t *keys;
    sb_cert_t cert;
    uint8_t cert_bytes [SB_CERT_MAX + 80];
    size_t cert_size;
    sb_cert_verifier_t verifier;   /* authority key; no revocation list */
};

static int
s_join (char *out, size_t size, const char *dir, const char *name, const char *suffix, sb_error_t *err)
{
    if (snprintf (out, size, "%s/%s%s", dir, name, suffix) >= (int) size)
        return sb_error_set (err, SB_E_BAD_REQUEST, "keys directory path too long");
    return 0;
}

sb_identity_t *
sb_identity_load (const char *keys_dir, const char *member_name, sb_error_t *err)
{
    if (!keys_dir || !*keys_dir)
        keys_dir = getenv (SB_IDENTITY_KEYS_ENV);
    if (!member_name || !*member_name)
        member_name = getenv (SB_IDENTITY_MEMBER_ENV);
    if (!keys_dir || !*keys_dir) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no keys directory: give one (--keys DIR) or set "
                      SB_IDENTITY_KEYS_ENV);
        return NULL;
    }
    if (!member_name || !*member_name) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no member name: give one (--member NAME) or set "
                      SB_IDENTITY_MEMBER_ENV);
        return NULL;
    }
    if (!sb_keys_valid_name (member_name)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "'%.64s' is not a valid member name ([A-Za-z0-9_.-]{1,64})",
                      member_name);
        return NULL;
    }
    char authority_path [4096], key_path [4096], cert_path [4096];
    if (s_join (authority_path, sizeof authority_path, keys_dir, SB_IDENTITY_AUTHORITY_FILE, "", err)
    ||  s_join (key_path, sizeof key_path, keys_dir, member_name, ".key", err)
    ||  s_join (cert_path, sizeof cert_path, keys_dir, member_name, ".cert", err))
        return NULL;

    sb_identity_t *self = (sb_identity_t *) calloc (1, sizeof *self);
    sb_keys_t *authority = NULL;
    if (!self || !(self->dir = strdup (keys_dir))) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        goto failed;
    }
    if (!(authority = sb_keys_load (authority_path, err)))
        goto failed;
    if (sb_keys_kind (authority) != SB_KEYS_AUTHORITY) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not the authority's public key (made by 'sb keygen authority')",
                      authority_path);
        goto failed;
    }
    memcpy (self->verifier.authority_pk, sb_keys_sign_public (authority), SB_KEY_SIZE);
    sb_keys_destroy (&authority);

    if (!(self->keys = sb_keys_load (key_path, err)))
        goto failed;
    if (sb_keys_kind (self->keys) != SB_KEYS_MEMBER || !sb_keys_has_secret (self->keys)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not a member's secret key file (made by 'sb keygen member')",
                      key_path);
        goto failed;
    }
    if (strcmp (sb_keys_name (self->keys), member_name) != 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: holds the keys of '%s', not of '%s'", key_path,
                      sb_keys_name (self->keys), member_name);
        goto failed;
    }

    sb_error_t why = { 0 };
    if (sb_cert_load (cert_path, &self->cert, &why) != SB_CERT_OK) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s", why.text);
        goto failed;
    }
    sb_cert_status_t status = sb_cert_verify (&self->cert, self->verifier.authority_pk,
                                              (uint64_t) time (NULL), &why);
    if (status != SB_CERT_OK) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "%s: %s%s", cert_path, why.text,
                      status == SB_CERT_EXPIRED ? "; ask for a new one ('sb cert sign')" : "");
        goto failed;
    }
    if (memcmp (self->cert.curve_pk, sb_keys_curve_public (self->keys), SB_KEY_SIZE) != 0
    ||  memcmp (self->cert.sign_pk, sb_keys_sign_public (self->keys), SB_KEY_SIZE) != 0) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "%s: made out for other keys than %s (%s)", cert_path,
                      key_path, sb_cert_status_name (SB_CERT_KEY_MISMATCH));
        goto failed;
    }
    if (strcmp (self->cert.name, member_name) != 0) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "%s: made out for '%s', not '%s'", cert_path,
                      self->cert.name, member_name);
        goto failed;
    }
    self->cert_size = sb_cert_encode (&self->cert, self->cert_bytes, sizeof self->cert_bytes);
    if (self->cert_size == 0) {
        sb_error_set (err, SB_E_INTERNAL, "%s: cannot re-encode the certificate", cert_path);
        goto failed;
    }
    return self;

failed:
    sb_keys_destroy (&authority);
    sb_identity_destroy (&self);
    return NULL;
}

void
sb_identity_destroy (sb_identity_t **self_p)
{
    if (self_p && *self_p) {
        sb_identity_t *self = *self_p;
        sb_keys_destroy (&self->keys);
        free (self->dir);
        free (self);
        *self_p = NULL;
    }
}

const char *
sb_identity_name (const sb_identity_t *self)
{
    return sb_keys_name (self->keys);
}

const char *
sb_identity_dir (const sb_identity_t *self)
{
    return self->dir;
}

const sb_keys_t *
sb_identity_keys (const sb_identity_t *self)
{
    return self->keys;
}

const sb_cert_t *
sb_identity_cert (const sb_identity_t *self)
{
    return &self->cert;
}

const uint8_t *
sb_identity_cert_bytes (const sb_identity_t *self, size_t *size)
{
    if (size)
        *size = self->cert_size;
    return self->cert_bytes;
}

const uint8_t *
sb_identity_authority (const sb_identity_t *self)
{
    return self->verifier.authority_pk;
}

const sb_cert_verifier_t *
sb_identity_verifier (const sb_identity_t *self)
{
    return &self->verifier;
}

uint64_t
sb_identity_expires_in (const sb_identity_t *self)
{
    uint64_t now = (uint64_t) time (NULL);
    return self->cert.expires_at > now ? self->cert.expires_at - now : 0;
}

int
sb_identity_curve_client (const sb_identity_t *self, void *zmq_socket,
                          const uint8_t server_public [SB_KEY_SIZE], sb_error_t *err)
{
    if (!self || !zmq_socket || !server_public)
        return sb_error_set (err, SB_E_BAD_REQUEST, "a CURVE client needs an identity, a socket and the server's key");
    if (zmq_setsockopt (zmq_socket, ZMQ_CURVE_SERVERKEY, server_public, SB_KEY_SIZE)
    ||  zmq_setsockopt (zmq_socket, ZMQ_CURVE_PUBLICKEY, sb_keys_curve_public (self->keys), SB_KEY_SIZE)
    ||  zmq_setsockopt (zmq_socket, ZMQ_CURVE_SECRETKEY, sb_keys_curve_secret (self->keys), SB_KEY_SIZE))
        return sb_error_set (err, SB_E_INTERNAL, "cannot make the socket a CURVE client: %s",
                             zmq_strerror (zmq_errno ()));
    return 0;
}

int
sb_identity_parse_endpoint (const char *spec, char endpoint [SB_ENDPOINT_MAX],
                            uint8_t server_public [SB_KEY_SIZE], bool *has_key, sb_error_t *err)
{
    *has_key = false;
    if (!spec || !*spec)
        return sb_error_set (err, SB_E_BAD_REQUEST, "empty endpoint");
    const char *hash = strchr (spec, '#');
    size_t len = hash ? (size_t) (hash - spec) : strlen (spec);
    if (len == 0 || len >= SB_ENDPOINT_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "endpoint '%.40s' is empty or longer than %d characters",
                             spec, SB_ENDPOINT_MAX - 1);
    memcpy (endpoint, spec, len);
    endpoint [len] = '\0';
    if (!hash)
        return 0;
    const char *key = hash + 1;
    size_t key_len = strlen (key);
    size_t bin_len = 0;
    bool ok = false;
    if (key_len == SB_KEY_SIZE * 2)
        ok = sodium_hex2bin (server_public, SB_KEY_SIZE, key, key_len, NULL, &bin_len, NULL) == 0
          && bin_len == SB_KEY_SIZE;
    else
    if (key_len == SB_Z85_KEY_SIZE - 1)
        ok = zmq_z85_decode (server_public, key) != NULL;
    if (!ok)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: the server key after '#' must be 64 hex digits "
                             "or 40 Z85 characters", endpoint);
    *has_key = true;
    return 0;
}
