/*  broker_zap.c — the broker's ZAP handler with real sockets: a ROUTER
    made a CURVE server by sb_zap_curve_server, DEALER clients with
    various keys, certificates in a directory as an operator makes them.

    What a user would notice: a member with a valid certificate gets its
    messages through and the broker sees its name; a stranger, an expired
    or forged certificate, a revoked member (after SIGHUP-style reload) or
    a client without CURVE gets nothing through, and the refusal is
    counted under the right reason.  */
#include "broker/zap.h"
#include "keys_dir.h"

#include <sodium.h>
#include <time.h>
#include <unistd.h>

static char s_dir [256];
static sb_keys_t *s_authority, *s_broker;
static zsock_t *s_router;

static sb_keys_t *
s_member (const char *name)
{
    sb_error_t err;
    sb_keys_t *keys = sb_keys_new_member (name, &err);
    if (!keys)
        tap_diag ("keys for %s: %s", name, err.text);
    return keys;
}

/*  Issues certs/FILE for `member` (offer echo, call sys and echo) valid
    from `issued_at` for `lifetime` seconds, signed by `authority`, with a
    signature bit flipped if `forge`.  */
static int
s_issue (const sb_keys_t *member, const sb_keys_t *authority, uint64_t issued_at, uint64_t lifetime,
         bool forge, const char *file)
{
    char name [128];
    snprintf (name, sizeof name, "certs/%s", file);
    return kd_issue (s_dir, name, &(kd_cert_t) { .keys = member, .authority = authority,
        .issued_at = issued_at, .lifetime = lifetime, .offer = "echo", .call = "sys,echo", .forge = forge });
}

/*  A CURVE client (kd_curve_dealer; NULL keys: no CURVE) of the broker
    that has already queued one message.  */
static zsock_t *
s_client (const sb_keys_t *keys, const char *endpoint, const char *text)
{
    zsock_t *dealer = kd_curve_dealer (keys, sb_keys_curve_public (s_broker), endpoint);
    zstr_send (dealer, text);
    return dealer;
}

/*  Receives one message at the router within `ms`: returns the body frame
    (caller destroys) or NULL.  */
static zframe_t *
s_router_recv (int ms)
{
    zpoller_t *poller = zpoller_new (s_router, NULL);
    zframe_t *body = NULL;
    if (zpoller_wait (poller, ms) == s_router) {
        zmsg_t *msg = zmsg_recv (s_router);
        if (msg && zmsg_size (msg) == 2) {
            zframe_t *routing_id = zmsg_pop (msg);
            body = zmsg_pop (msg);
            zframe_destroy (&routing_id);
        }
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    return body;
}

/*  Waits (bounded) until the refusals for `reason` exceed `before`.  */
static bool
s_wait_refused (sb_zap_t *zap, int reason, uint64_t before)
{
    for (int i = 0; i < 200; i++) {
        if (sb_zap_refused (zap, reason) > before)
            return true;
        zclock_sleep (50);
    }
    return false;
}

/*  A client with these keys is refused for `reason` and nothing of it
    reaches the broker.  */
static void
s_check_refused (sb_zap_t *zap, const sb_keys_t *keys, const char *endpoint, int reason, const char *what)
{
    uint64_t before = sb_zap_refused (zap, reason);
    zsock_t *dealer = s_client (keys, endpoint, what);
    tap_ok (s_wait_refused (zap, reason, before), "%s: refused as '%s'", what, sb_zap_reason_name (reason));
    zframe_t *body = s_router_recv (500);
    tap_ok (body == NULL, "%s: no message gets through", what);
    zframe_destroy (&body);
    zsock_destroy (&dealer);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    if (sodium_init () < 0)
        tap_skip_all ("libsodium cannot start");
    if (kd_make (s_dir, sizeof s_dir, "zap-test"))
        tap_skip_all ("cannot create a temporary directory");
    char path [512], certs [512], authority_pub [512], revocations [512];
    kd_path (certs, sizeof certs, s_dir, "certs");
    kd_path (authority_pub, sizeof authority_pub, s_dir, "authority.pub");
    kd_path (revocations, sizeof revocations, s_dir, "revoked");
    mkdir (certs, 0700);
    sb_error_t err = { 0 };
    uint64_t now = (uint64_t) time (NULL);

    s_authority = sb_keys_new_authority ("authority", &err);
    sb_keys_t *stranger_authority = sb_keys_new_authority ("other", &err);
    s_broker = s_member ("broker1");
    sb_keys_t *alice = s_member ("alice"), *bob = s_member ("bob"), *old = s_member ("old");
    sb_keys_t *mallory = s_member ("mallory"), *forger = s_member ("forger"), *eve = s_member ("eve");
    sb_keys_t *broker2 = s_member ("broker2");
    if (!s_authority || !stranger_authority || !s_broker || !alice || !bob || !old || !mallory
    ||  !forger || !eve || !broker2 || sb_keys_save_public (s_authority, authority_pub, &err))
        tap_skip_all ("cannot make keys");
    tap_ok (!s_issue (alice, s_authority, now - 60, 3600, false, "alice.cert")
         && !s_issue (bob, s_authority, now - 60, 3600, false, "bob.cert")
         && !s_issue (broker2, s_authority, now - 60, 3600, false, "broker2.cert")
         && !s_issue (old, s_authority, now - 7200, 3600, false, "old.cert")
         && !s_issue (forger, s_authority, now - 60, 3600, true, "forger.cert")
         && !s_issue (eve, stranger_authority, now - 60, 3600, false, "eve.cert")
         && !kd_write (s_dir, "revoked", "# nobody yet\n", 0644),
         "certificates issued (alice, bob, broker2 valid; old expired; forger altered; eve foreign)");
    kd_write (s_dir, "certs/notes.txt", "not a certificate\n", 0644);

    /*  The handler.  */
    sb_zap_t *zap = sb_zap_new (authority_pub, certs, revocations, &err);
    if (!tap_ok (zap != NULL, "sb_zap_new loads the store and binds the handler"))
        tap_diag ("%s", err.text);
    if (!zap)
        return tap_done ();
    sb_zap_stats_t stats;
    sb_zap_stats (zap, &stats);
    tap_is_int (stats.certs, 3, "three certificates admitted to the store");
    tap_is_int (stats.certs_refused, 3, "three certificate files refused at load");
    sb_error_t err2 = { 0 };
    sb_zap_t *second = sb_zap_new (authority_pub, certs, revocations, &err2);
    tap_ok (second == NULL && strstr (err2.text, "another handler"),
            "a second handler in the same process is refused (%s)", err2.text);
    sb_zap_destroy (&second);
    kd_path (path, sizeof path, s_dir, "nonexistent.pub");
    tap_ok (sb_zap_new (path, certs, NULL, &err2) == NULL && strstr (err2.text, "nonexistent.pub"),
            "a missing authority key is a clear error");

    /*  The CURVE server.  */
    s_router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (s_router, 0);
    tap_ok (sb_zap_curve_server (zsock_resolve (s_router), s_broker, &err) == 0,
            "sb_zap_curve_server accepts the broker keys");
    sb_keys_t *public_only = sb_keys_new_public ("x", sb_keys_curve_public (alice),
                                                 sb_keys_sign_public (alice), &err);
    zsock_t *spare = zsock_new (ZMQ_ROUTER);
    tap_ok (sb_zap_curve_server (zsock_resolve (spare), public_only, &err2) == -1,
            "keys without a secret cannot make a CURVE server");
    zsock_destroy (&spare);
    sb_keys_destroy (&public_only);
    zsock_bind (s_router, "tcp://127.0.0.1:*");
    char *endpoint = zsock_last_endpoint (s_router);

    /*  A member with a valid certificate.  */
    zsock_t *alice_dealer = s_client (alice, endpoint, "hello from alice");
    zframe_t *body = s_router_recv (10000);
    tap_ok (body && zframe_streq (body, "hello from alice"), "alice (valid certificate) gets through");
    const char *user = body ? zframe_meta (body, "User-Id") : NULL;
    tap_is_str (user, "alice", "User-Id of her messages is her member name");
    uint8_t key [SB_KEY_SIZE] = { 0 };
    tap_ok (body && sb_zap_frame_key (body, key) == 0
            && memcmp (key, sb_keys_curve_public (alice), SB_KEY_SIZE) == 0,
            "X-Curve-Key of her messages is her CURVE key");
    sb_cert_t *cert = (sb_cert_t *) calloc (1, sizeof (sb_cert_t));
    tap_ok (sb_zap_lookup_key (zap, key, cert, &err) == 0 && streq (cert->name, "alice")
            && sb_cert_may_offer (cert, "echo") && !sb_cert_may_offer (cert, "billing"),
            "the key finds her certificate and its rights");
    tap_ok (sb_zap_lookup_name (zap, "alice", cert, &err) == 0
            && memcmp (cert->curve_pk, sb_keys_curve_public (alice), SB_KEY_SIZE) == 0,
            "so does her name");
    tap_ok (sb_zap_lookup_name (zap, "mallory", cert, &err) == -1, "no certificate for a stranger's name");
    zframe_destroy (&body);
    sb_zap_stats (zap, &stats);
    tap_ok (stats.admitted >= 1, "admitted counter counts her (%llu)", (unsigned long long) stats.admitted);

    /*  Another broker of the cluster is a member like any other.  */
    zsock_t *broker2_dealer = s_client (broker2, endpoint, "hello from broker2");
    body = s_router_recv (10000);
    tap_ok (body && zframe_streq (body, "hello from broker2"), "a peer broker with a certificate gets through");
    user = body ? zframe_meta (body, "User-Id") : NULL;
    tap_is_str (user, "broker2", "with its name as User-Id");
    zframe_destroy (&body);
    zsock_destroy (&broker2_dealer);

    /*  Refusals.  */
    s_check_refused (zap, mallory, endpoint, SB_CERT_UNKNOWN, "unknown key");
    s_check_refused (zap, old, endpoint, SB_CERT_EXPIRED, "expired certificate");
    s_check_refused (zap, forger, endpoint, SB_CERT_BAD_SIGNATURE, "altered certificate");
    s_check_refused (zap, eve, endpoint, SB_CERT_WRONG_AUTHORITY, "certificate of another authority");

    /*  No CURVE at all: the handshake fails before ZAP is asked.  */
    zsock_t *plain = s_client (NULL, endpoint, "plain text");
    body = s_router_recv (1500);
    tap_ok (body == NULL, "a client without CURVE gets nothing through");
    zframe_destroy (&body);
    zsock_destroy (&plain);

    /*  Bob is admitted, then revoked and the broker reloads.  */
    zsock_t *bob_dealer = s_client (bob, endpoint, "bob before");
    body = s_router_recv (10000);
    tap_ok (body && zframe_streq (body, "bob before"), "bob gets through before revocation");
    zframe_destroy (&body);
    zsock_destroy (&bob_dealer);
    tap_ok (kd_write (s_dir, "revoked", "bob\n", 0644) == 0 && sb_zap_reload (zap, &err) == 0,
            "revocation list reloaded");
    s_check_refused (zap, bob, endpoint, SB_CERT_REVOKED, "revoked member after reload");
    tap_ok (sb_zap_lookup_name (zap, "bob", cert, &err) == -1, "bob's certificate no longer looks up");

    /*  A bad reload keeps the previous state.  */
    kd_write (s_dir, "revoked", "bob\nnot a valid entry!\n", 0644);
    tap_ok (sb_zap_reload (zap, &err) == -1 && strstr (err.text, "revoked"),
            "a revocation list with a bad line is refused (%s)", err.text);
    kd_write (s_dir, "revoked", "bob\n", 0666);
    tap_ok (sb_zap_reload (zap, &err) == -1, "a world-writable revocation list is refused");
    tap_ok (sb_zap_lookup_key (zap, sb_keys_curve_public (alice), cert, &err) == 0
            && sb_zap_lookup_key (zap, sb_keys_curve_public (bob), cert, &err) == -1,
            "the previous state stays in force (alice in, bob revoked)");
    zstr_send (alice_dealer, "alice again");
    body = s_router_recv (10000);
    tap_ok (body && zframe_streq (body, "alice again"), "alice's session keeps working");
    zframe_destroy (&body);

    /*  A certificate learnt at run time (e.g. from a beacon).  */
    sb_keys_t *carol = s_member ("carol");
    uint8_t encoded [SB_CERT_MAX + 80];
    size_t size = 0;
    if (carol && !sb_cert_init (cert, carol, now - 10, 3600, &err) && !sb_cert_add_call (cert, "*", &err)
    &&  !sb_cert_sign (cert, s_authority, &err))
        size = sb_cert_encode (cert, encoded, sizeof encoded);
    tap_ok (size > 0 && sb_zap_add_cert (zap, encoded, size, &err) == SB_CERT_OK,
            "sb_zap_add_cert takes a valid certificate");
    encoded [size - 1] ^= 1;
    tap_ok (sb_zap_add_cert (zap, encoded, size, &err) == SB_CERT_BAD_SIGNATURE,
            "and refuses an altered one");
    zsock_t *carol_dealer = s_client (carol, endpoint, "hello from carol");
    body = s_router_recv (10000);
    user = body ? zframe_meta (body, "User-Id") : NULL;
    tap_is_str (user, "carol", "carol gets through with her name");
    zframe_destroy (&body);
    kd_write (s_dir, "revoked", "# empty\n", 0644);
    tap_ok (sb_zap_reload (zap, &err) == 0 && sb_zap_lookup_name (zap, "carol", cert, &err) == 0
            && sb_zap_lookup_name (zap, "bob", cert, &err) == 0,
            "a reload keeps run-time certificates and un-revokes bob");

    sb_zap_stats (zap, &stats);
    tap_ok (stats.refused >= 5 && stats.by_reason [SB_CERT_UNKNOWN] >= 1
            && stats.by_reason [SB_CERT_REVOKED] >= 1,
            "refused counters: total %llu", (unsigned long long) stats.refused);
    tap_is_str (sb_zap_reason_name (SB_ZAP_REFUSED_MECHANISM), "mechanism", "reason names");

    zsock_destroy (&carol_dealer);
    zsock_destroy (&alice_dealer);
    zsock_destroy (&s_router);
    zstr_free (&endpoint);
    sb_zap_destroy (&zap);
    sb_zap_destroy (&zap);
    tap_ok (zap == NULL, "destroy NULLs and is safe twice");
    free (cert);
    sb_keys_destroy (&carol);
    sb_keys_destroy (&alice);
    sb_keys_destroy (&bob);
    sb_keys_destroy (&old);
    sb_keys_destroy (&mallory);
    sb_keys_destroy (&forger);
    sb_keys_destroy (&eve);
    sb_keys_destroy (&broker2);
    sb_keys_destroy (&s_broker);
    sb_keys_destroy (&s_authority);
    sb_keys_destroy (&stranger_authority);
    kd_remove (s_dir);
    return tap_done ();
}
