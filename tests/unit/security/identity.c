/*  runtime_identity.c — loading a process's identity from a keys
    directory, as an operator lays it out with sb keygen and sb cert sign,
    and using it as a CURVE client over real loopback sockets.

    What a user would notice: a good directory loads (also through
    SB_KEYS / SB_MEMBER); an expired certificate, one from another
    authority, one for other keys, a key file of another member or a
    group-readable secret each stop the process with a clear error; an
    endpoint carries the broker's key after '#'; a CURVE client made from
    the identity talks to a CURVE server that expects it, and not to one
    with another key.  */
#include "security/identity.h"
#include "keys_dir.h"

#include <czmq.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

static char s_dir [256];

/*  Writes FILE.key, the secret of `keys`, and FILE.cert, a certificate
    for `cert_keys` (offer echo) signed by `authority`.  */
static int
s_member_files (const char *file, const sb_keys_t *keys, const sb_keys_t *cert_keys,
                const sb_keys_t *authority, uint64_t issued_at, uint64_t lifetime)
{
    char path [512], name [128];
    sb_error_t err = { 0 };
    snprintf (name, sizeof name, "%s.key", file);
    kd_path (path, sizeof path, s_dir, name);
    if (sb_keys_save_secret (keys, path, &err)) {
        tap_diag ("key file for %s: %s", file, err.text);
        return -1;
    }
    snprintf (name, sizeof name, "%s.cert", file);
    return kd_issue (s_dir, name, &(kd_cert_t) { .keys = cert_keys, .authority = authority,
        .issued_at = issued_at, .lifetime = lifetime, .offer = "echo" });
}

static void
s_refused (const char *member, const char *want, sb_code_t code, const char *what)
{
    sb_error_t err = { 0 };
    sb_identity_t *identity = sb_identity_load (s_dir, member, &err);
    tap_ok (identity == NULL && strstr (err.text, want) && err.code == code, "%s: %s", what, err.text);
    sb_identity_destroy (&identity);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    if (sodium_init () < 0)
        tap_skip_all ("libsodium cannot start");
    if (kd_make (s_dir, sizeof s_dir, "identity-test"))
        tap_skip_all ("cannot create a temporary directory");
    sb_error_t err = { 0 };
    char path [512];
    uint64_t now = (uint64_t) time (NULL);

    sb_keys_t *authority = sb_keys_new_authority ("authority", &err);
    sb_keys_t *other_authority = sb_keys_new_authority ("other", &err);
    sb_keys_t *alice = sb_keys_new_member ("alice", &err);
    sb_keys_t *old = sb_keys_new_member ("old", &err);
    sb_keys_t *eve = sb_keys_new_member ("eve", &err);
    sb_keys_t *mixed = sb_keys_new_member ("mixed", &err);
    sb_keys_t *mixed2 = sb_keys_new_member ("mixed", &err);
    sb_keys_t *loose = sb_keys_new_member ("loose", &err);
    sb_keys_t *bob = sb_keys_new_member ("bob", &err);
    sb_keys_t *broker = sb_keys_new_member ("broker1", &err);
    if (!authority || !other_authority || !alice || !old || !eve || !mixed || !mixed2 || !loose
    ||  !bob || !broker)
        tap_skip_all ("cannot make keys");
    kd_path (path, sizeof path, s_dir, "authority.pub");
    tap_ok (!sb_keys_save_public (authority, path, &err)
         && !s_member_files ("alice", alice, alice, authority, now - 60, 86400)
         && !s_member_files ("old", old, old, authority, now - 7200, 3600)
         && !s_member_files ("eve", eve, eve, other_authority, now - 60, 86400)
         && !s_member_files ("mixed", mixed, mixed2, authority, now - 60, 86400)
         && !s_member_files ("loose", loose, loose, authority, now - 60, 86400)
         && !s_member_files ("swapped", bob, bob, authority, now - 60, 86400),
         "keys directory laid out");
    kd_path (path, sizeof path, s_dir, "loose.key");
    chmod (path, 0640);

    /*  A good identity.  */
    sb_identity_t *identity = sb_identity_load (s_dir, "alice", &err);
    if (!tap_ok (identity != NULL, "alice's identity loads"))
        tap_diag ("%s", err.text);
    if (!identity)
        return tap_done ();
    tap_is_str (sb_identity_name (identity), "alice", "its name");
    tap_is_str (sb_identity_dir (identity), s_dir, "its directory");
    tap_ok (memcmp (sb_keys_curve_public (sb_identity_keys (identity)), sb_keys_curve_public (alice),
                    SB_KEY_SIZE) == 0 && sb_keys_has_secret (sb_identity_keys (identity)),
            "its keys, with the secret");
    tap_ok (memcmp (sb_identity_authority (identity), sb_keys_sign_public (authority), SB_KEY_SIZE) == 0,
            "the authority's key");
    tap_ok (sb_cert_may_offer (sb_identity_cert (identity), "echo")
            && !sb_cert_may_offer (sb_identity_cert (identity), "billing"), "its certificate's rights");
    size_t size = 0;
    const uint8_t *bytes = sb_identity_cert_bytes (identity, &size);
    sb_cert_t *cert = (sb_cert_t *) calloc (1, sizeof (sb_cert_t));
    tap_ok (size > 0 && sb_cert_check_peer (sb_identity_verifier (identity), bytes, size,
                                            sb_keys_curve_public (alice), now, cert, &err) == SB_CERT_OK,
            "its certificate bytes verify for its CURVE key (what a peer would check)");
    uint64_t left = sb_identity_expires_in (identity);
    tap_ok (left > 86000 && left <= 86400, "expires in about a day (%llu s)", (unsigned long long) left);

    /*  Environment defaults.  */
    setenv ("SB_KEYS", s_dir, 1);
    setenv ("SB_MEMBER", "alice", 1);
    sb_identity_t *from_env = sb_identity_load (NULL, NULL, &err);
    tap_ok (from_env && streq (sb_identity_name (from_env), "alice"), "SB_KEYS and SB_MEMBER are the defaults");
    sb_identity_destroy (&from_env);
    unsetenv ("SB_KEYS");
    from_env = sb_identity_load (NULL, "alice", &err);
    tap_ok (!from_env && strstr (err.text, "SB_KEYS"), "no directory: the error names SB_KEYS (%s)", err.text);
    unsetenv ("SB_MEMBER");
    from_env = sb_identity_load (s_dir, NULL, &err);
    tap_ok (!from_env && strstr (err.text, "SB_MEMBER"), "no name: the error names SB_MEMBER");

    /*  Refusals.  */
    s_refused ("old", "expired", SB_E_UNAUTHORIZED, "an expired certificate is refused");
    s_refused ("eve", "another authority", SB_E_UNAUTHORIZED, "a certificate of another authority is refused");
    s_refused ("mixed", "other keys", SB_E_UNAUTHORIZED, "a certificate for other keys is refused");
    s_refused ("loose", "too open", SB_E_BAD_REQUEST, "a group-readable secret key is refused");
    s_refused ("swapped", "holds the keys of 'bob'", SB_E_BAD_REQUEST, "another member's key file is refused");
    s_refused ("nobody", "nobody.key", SB_E_BAD_REQUEST, "a missing key file is named");
    s_refused ("../alice", "not a valid member name", SB_E_BAD_REQUEST, "a path as member name is refused");

    /*  Endpoints with the server's key.  */
    char endpoint [SB_ENDPOINT_MAX];
    uint8_t key [SB_KEY_SIZE];
    bool has_key = true;
    tap_ok (sb_identity_parse_endpoint ("tcp://127.0.0.1:7600", endpoint, key, &has_key, &err) == 0
            && streq (endpoint, "tcp://127.0.0.1:7600") && !has_key, "an endpoint without a key");
    char hex [65], spec [400], z85 [SB_Z85_KEY_SIZE];
    sodium_bin2hex (hex, sizeof hex, sb_keys_curve_public (broker), SB_KEY_SIZE);
    snprintf (spec, sizeof spec, "tcp://127.0.0.1:7600#%s", hex);
    memset (key, 0, sizeof key);
    tap_ok (sb_identity_parse_endpoint (spec, endpoint, key, &has_key, &err) == 0 && has_key
            && streq (endpoint, "tcp://127.0.0.1:7600")
            && memcmp (key, sb_keys_curve_public (broker), SB_KEY_SIZE) == 0, "a key in hex");
    if (sb_keys_curve_public_z85 (broker, z85))
        z85 [0] = '\0';
    snprintf (spec, sizeof spec, "tcp://127.0.0.1:7600#%s", z85);
    memset (key, 0, sizeof key);
    tap_ok (sb_identity_parse_endpoint (spec, endpoint, key, &has_key, &err) == 0 && has_key
            && memcmp (key, sb_keys_curve_public (broker), SB_KEY_SIZE) == 0, "a key in Z85");
    tap_ok (sb_identity_parse_endpoint ("tcp://127.0.0.1:7600#abc", endpoint, key, &has_key, &err) == -1
            && strstr (err.text, "64 hex"), "a short key is refused: %s", err.text);
    snprintf (spec, sizeof spec, "tcp://127.0.0.1:7600#%.63sg", hex);
    tap_ok (sb_identity_parse_endpoint (spec, endpoint, key, &has_key, &err) == -1, "a non-hex key is refused");
    char long_spec [400];
    memset (long_spec, 'a', sizeof long_spec - 1);
    long_spec [sizeof long_spec - 1] = '\0';
    tap_ok (sb_identity_parse_endpoint (long_spec, endpoint, key, &has_key, &err) == -1,
            "an overlong endpoint is refused");
    tap_ok (sb_identity_parse_endpoint ("#" "0000", endpoint, key, &has_key, &err) == -1,
            "a key without an endpoint is refused");

    /*  A CURVE client made from the identity.  */
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (router, 0);
    int one = 1;
    zmq_setsockopt (zsock_resolve (router), ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt (zsock_resolve (router), ZMQ_CURVE_SECRETKEY, sb_keys_curve_secret (broker), SB_KEY_SIZE);
    zsock_bind (router, "tcp://127.0.0.1:*");
    char *bound = zsock_last_endpoint (router);
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    tap_ok (sb_identity_curve_client (identity, zsock_resolve (dealer), sb_keys_curve_public (broker), &err) == 0,
            "sb_identity_curve_client sets the keys");
    zsock_connect (dealer, "%s", bound);
    zstr_send (dealer, "sealed in CURVE");
    zpoller_t *poller = zpoller_new (router, NULL);
    char *got = NULL;
    if (zpoller_wait (poller, 10000) == router) {
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *body = msg ? zmsg_last (msg) : NULL;
        got = body ? zframe_strdup (body) : NULL;
        zmsg_destroy (&msg);
    }
    tap_is_str (got, "sealed in CURVE", "the broker receives the client's message over CURVE");
    zstr_free (&got);
    zsock_destroy (&dealer);

    dealer = zsock_new (ZMQ_DEALER);
    zsock_set_linger (dealer, 0);
    tap_ok (sb_identity_curve_client (identity, zsock_resolve (dealer), sb_keys_curve_public (bob), &err) == 0,
            "a client for another server key");
    zsock_connect (dealer, "%s", bound);
    zstr_send (dealer, "wrong server");
    tap_ok (zpoller_wait (poller, 1500) == NULL, "gets nothing to a server with another key");
    tap_ok (sb_identity_curve_client (identity, NULL, sb_keys_curve_public (bob), &err) == -1,
            "no socket: an error, not a crash");
    zpoller_destroy (&poller);
    zsock_destroy (&dealer);
    zsock_destroy (&router);
    zstr_free (&bound);

    sb_identity_destroy (&identity);
    sb_identity_destroy (&identity);
    tap_ok (identity == NULL, "destroy NULLs and is safe twice");
    free (cert);
    sb_keys_destroy (&authority);
    sb_keys_destroy (&other_authority);
    sb_keys_destroy (&alice);
    sb_keys_destroy (&old);
    sb_keys_destroy (&eve);
    sb_keys_destroy (&mixed);
    sb_keys_destroy (&mixed2);
    sb_keys_destroy (&loose);
    sb_keys_destroy (&bob);
    sb_keys_destroy (&broker);
    kd_remove (s_dir);
    return tap_done ();
}
