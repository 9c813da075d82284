/*  broker_security.c — a secure broker (CURVE server, ZAP, ACL) with real
    CURVE peers whose keys and certificates the test makes in a temporary
    keys directory, as an operator would with `sb keygen` / `sb cert sign`.

    What a user would notice: a member with a valid certificate offers and
    calls; a stranger, an expired certificate or a client without CURVE is
    refused at the handshake (counted by reason); a member may not offer or
    call outside its certificate (`forbidden`); revoking a member and
    reloading (what SIGHUP does) cuts it off, also on its open session; a
    broken revocation list keeps the old state.  The capture hook hands
    the test every body frame the broker receives (for the runtime's
    sealing test: with sealed bodies, a canary must not be found there).  */
#include "broker_peer.h"
#include "keys_dir.h"

#include <time.h>
#include <unistd.h>

static char s_dir [256];
static sb_keys_t *s_authority;
static sb_broker_t *s_broker;

/*  What the capture hook saw: every body frame, concatenated (bounded). */
static char s_seen [1 << 20];
static size_t s_seen_size;
static size_t s_seen_frames;

static void
s_capture (const void *body, size_t size, void *arg)
{
    (void) arg;
    s_seen_frames++;
    if (size <= sizeof s_seen - s_seen_size) {
        memcpy (s_seen + s_seen_size, body, size);
        s_seen_size += size;
    }
}

static bool
s_seen_has (const char *text)
{
    size_t n = strlen (text);
    for (size_t i = 0; i + n <= s_seen_size; i++)
        if (!memcmp (s_seen + i, text, n))
            return true;
    return false;
}

/*  A member: keys (secret file written for the broker), and a certificate
    in the keys directory valid from now + `from` for `lifetime` s.  */
static sb_keys_t *
s_member_roles (const char *name, const char *offer, const char *call, int64_t from,
                uint64_t lifetime, bool with_cert, uint32_t roles)
{
    sb_error_t err = { 0 };
    sb_keys_t *keys = sb_keys_new_member (name, &err);
    if (!keys || !with_cert)
        return keys;
    char file [128];
    snprintf (file, sizeof file, "%s.cert", name);
    if (kd_issue (s_dir, file, &(kd_cert_t) { .keys = keys, .authority = s_authority,
            .issued_at = (uint64_t) ((int64_t) time (NULL) + from), .lifetime = lifetime,
            .offer = offer, .call = call, .roles = roles }))
        sb_keys_destroy (&keys);
    return keys;
}

/*  An ordinary member (no role).  */
static sb_keys_t *
s_member (const char *name, const char *offer, const char *call, int64_t from, uint64_t lifetime,
          bool with_cert)
{
    return s_member_roles (name, offer, call, from, lifetime, with_cert, 0);
}

/*  Sends PEER as `name` and says whether the broker answered PEER.  */
static bool
s_peer_answered (zsock_t *sock, const char *name)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_PEER);
    sb_header_set_name (&h, name);
    bp_send (sock, &h, NULL, 0);
    bp_msg_t m;
    return bp_recv (sock, &m, 1000) == 0 && m.h.command == SB_CMD_PEER;
}

/*  A DEALER speaking CURVE with `keys` (NULL: no CURVE) to the broker.  */
static zsock_t *
s_connect (const sb_keys_t *keys)
{
    return kd_curve_dealer (keys, sb_broker_public_key (s_broker), sb_broker_endpoint (s_broker));
}

/*  A counter three levels down in sys.stats ("zap", "refused_by_reason", reason).  */
static int64_t
s_stat3 (zsock_t *sock, const char *a, const char *b, const char *c)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "stats", &u))
        return -1;
    const msgpack_object *v = bp_get (bp_get (bp_get (&u.data, a), b), c);
    int64_t value = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t) v->via.u64 : -1;
    msgpack_unpacked_destroy (&u);
    return value;
}

static int64_t
s_refused_wait (zsock_t *admin, const char *reason, int64_t want)
{
    int64_t value = -1;
    for (int i = 0; i < 200; i++) {
        value = s_stat3 (admin, "zap", "refused_by_reason", reason);
        if (value >= want)
            break;
        zclock_sleep (25);
    }
    return value;
}

/*  Instances of a service in sys.services (0 if absent).  */
static int64_t
s_instances (zsock_t *sock, const char *service)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "services", &u))
        return -1;
    int64_t n = 0;
    const msgpack_object *services = bp_get (&u.data, "services");
    for (uint32_t i = 0; services && services->type == MSGPACK_OBJECT_ARRAY && i < services->via.array.size; i++) {
        const msgpack_object *name = bp_get (&services->via.array.ptr [i], "name");
        const msgpack_object *count = bp_get (&services->via.array.ptr [i], "instances");
        if (name && name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (service)
        &&  !memcmp (name->via.str.ptr, service, name->via.str.size) && count)
            n = (int64_t) count->via.u64;
    }
    msgpack_unpacked_destroy (&u);
    return n;
}

/*  Expects an ERROR forbidden for request `id` (0: the READY error).  */
static bool
s_forbidden (zsock_t *sock)
{
    bp_msg_t m;
    return bp_recv (sock, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR && m.h.code == SB_E_FORBIDDEN;
}

/*  Stranger keys get nothing through: no WELCOME to HELLO.  */
static bool
s_shut_out (const sb_keys_t *keys)
{
    zsock_t *sock = s_connect (keys);
    sb_header_t h;
    sb_header_init (&h, SB_CMD_HELLO);
    bp_send (sock, &h, NULL, 0);
    bp_msg_t m;
    bool out = bp_recv (sock, &m, 1500) != 0;
    zsock_destroy (&sock);
    return out;
}

int
main (void)
{
    zsys_init ();
    if (kd_make (s_dir, sizeof s_dir, "broker-security")) {
        printf ("Bail out! no temporary directory\n");
        return 1;
    }
    sb_error_t err = { 0 };
    char path [512];
    s_authority = sb_keys_new_authority ("authority", &err);
    snprintf (path, sizeof path, "%s/authority.pub", s_dir);
    tap_ok (s_authority && sb_keys_save_public (s_authority, path, &err) == 0, "authority made");

    sb_keys_t *broker = s_member_roles ("broker1", "sys", "*", 0, 3600, true, SB_CERT_ROLE_BROKER);
    snprintf (path, sizeof path, "%s/broker1.key", s_dir);
    tap_ok (broker && sb_keys_save_secret (broker, path, &err) == 0, "broker identity made");
    sb_keys_t *alice = s_member ("alice", "echo", "echo,sys", 0, 3600, true);
    sb_keys_t *bob = s_member ("bob", "bobsvc", "echo,sys", 0, 3600, true);
    sb_keys_t *mallory = s_member ("mallory", "other", "sys", 0, 3600, true);
    sb_keys_t *old = s_member ("old", "echo", "*", -7200, 3600, true);
    sb_keys_t *stranger = s_member ("stranger", "", "", 0, 0, false);
    /*  wild may offer anything (the old rule for brokers was "may offer
        sys") but has no broker role; broker2 has the role and offers
        nothing.  */
    sb_keys_t *wild = s_member ("wild", "*", "sys", 0, 3600, true);
    sb_keys_t *broker2 = s_member_roles ("broker2", NULL, "sys", 0, 3600, true, SB_CERT_ROLE_BROKER);
    tap_ok (alice && bob && mallory && old && stranger && wild && broker2,
            "member keys and certificates made");
    tap_ok (kd_write (s_dir, "revoked", "# nobody yet\n", 0644) == 0, "empty revocation list");

    char revoked [512];
    snprintf (revoked, sizeof revoked, "%s/revoked", s_dir);
    sb_broker_config_t config = { 0 };
    config.bind = "tcp://127.0.0.1:*";
    config.name = "secure-broker";
    config.secure = true;
    config.keys_dir = s_dir;
    config.member = "broker1";
    config.revoked = revoked;
    config.capture = s_capture;
    s_broker = sb_broker_new (&config, &err);
    if (!s_broker) {
        printf ("Bail out! secure broker did not start: %s\n", err.text);
        return 1;
    }
    tap_ok (sb_broker_public_key (s_broker) != NULL, "a secure broker has a CURVE key");

    /*  Without keys a secure broker does not start: the error says why.  */
    sb_broker_config_t bad = config;
    bad.member = "nobody";
    sb_broker_t *none = sb_broker_new (&bad, &err);
    tap_ok (none == NULL, "a broker without its identity files refuses to start (%s)", err.text);

    /*  Admitted member: offers echo and calls it.  */
    zsock_t *admin = s_connect (alice);
    zsock_set_rcvtimeo (admin, BP_WAIT);
    zsock_t *worker = s_connect (alice);
    bp_msg_t m;
    tap_ok (bp_hello (worker, "alice-worker", &m) == 0, "admitted member: HELLO answered WELCOME");
    bp_keep (worker, true);
    bp_ready (worker, "echo", 4, "echo:1");
    bp_sync (worker);
    tap_ok (s_instances (admin, "echo") == 1, "admitted member offers echo");
    const char *canary = "CANARY-7f3e9a51-plaintext";
    bp_request (admin, 42, "echo", "echo", 3000, 0, canary, strlen (canary));
    bool got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
    tap_ok (got && m.size == strlen (canary) && !memcmp (m.body, canary, m.size),
            "admitted member calls echo; the worker gets the body");
    if (got)
        bp_reply (worker, m.h.request_id, m.body, m.size);
    tap_ok (bp_recv (admin, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY && m.h.request_id == 42,
            "and the caller gets the reply");
    tap_ok (s_seen_frames >= 3 && s_seen_has (canary),
            "capture hook: the broker's received body frames are handed to the test (%zu frames); "
            "unsealed, the canary is visible there", s_seen_frames);
    tap_ok (bp_stat (admin, "zap", "admitted") >= 2, "admissions counted");

    /*  Refused at the handshake, counted by reason.  */
    tap_ok (s_shut_out (stranger), "unknown key: nothing gets through");
    tap_ok (s_refused_wait (admin, "unknown", 1) >= 1, "unknown key counted as 'unknown'");
    tap_ok (s_shut_out (old), "expired certificate: nothing gets through");
    tap_ok (s_refused_wait (admin, "expired", 1) >= 1, "counted as 'expired'");
    tap_ok (s_shut_out (NULL), "a client without CURVE: nothing gets through");
    int64_t failed = -1;
    for (int i = 0; i < 200 && failed < 1; i++) {
        failed = bp_stat (admin, "zap", "handshakes_failed");
        if (failed < 1)
            zclock_sleep (25);
    }
    tap_ok (failed >= 1, "and counted as a failed handshake (zap.handshakes_failed %lld)",
            (long long) failed);

    /*  ACL: mallory may offer 'other' and call 'sys' only.  */
    zsock_t *mal = s_connect (mallory);
    tap_ok (bp_hello (mal, "mallory", &m) == 0, "mallory is admitted");
    bp_ready (mal, "echo", 1, "echo:1");
    tap_ok (s_forbidden (mal), "READY for a service outside the certificate: ERROR forbidden");
    tap_ok (s_instances (admin, "echo") == 1, "... and the service is not registered");
    bp_request (mal, 7, "echo", "echo", 3000, 0, "x", 1);
    tap_ok (s_forbidden (mal), "REQUEST outside the certificate: ERROR forbidden");
    tap_ok (bp_silent (worker, 200), "... and the worker never sees it");
    bp_request (mal, 8, "nosuch", "m", 3000, 0, NULL, 0);
    tap_ok (s_forbidden (mal), "a service it may not call is forbidden even if it does not exist");
    tap_ok (bp_sync (mal) == 0, "a call within the certificate (sys.ping) works");
    tap_ok (bp_stat (admin, "forbidden", NULL) == 3, "sys.stats counts 3 forbidden");
    tap_ok (bp_stat (admin, "errors", "forbidden") == 3, "and 3 forbidden errors");
    bp_ready (mal, "other", 1, "x:0");
    bp_sync (mal);
    tap_ok (s_instances (admin, "other") == 1, "mallory may offer what its certificate says");

    /*  Roles: only a member whose certificate has the broker role may
        speak PEER and DIRECTORY; others are ignored, counted, logged once. */
    zsock_t *wilds = s_connect (wild);
    zsock_set_rcvtimeo (wilds, BP_WAIT);
    tap_ok (!s_peer_answered (wilds, "wild"), "PEER from a member without the broker role: no answer");
    sb_header_t dh;
    sb_header_init (&dh, SB_CMD_DIRECTORY);
    bp_send (wilds, &dh, "\x80", 1);
    tap_ok (bp_sync (wilds) == 0, "the member itself is still served");
    tap_ok (bp_stat (admin, "not_broker", NULL) == 2,
            "sys.stats not_broker counts its PEER and DIRECTORY (%lld)",
            (long long) bp_stat (admin, "not_broker", NULL));
    tap_ok (bp_stat (admin, "directories", NULL) == 0, "no DIRECTORY accepted from it");
    zsock_t *b2 = s_connect (broker2);
    zsock_set_rcvtimeo (b2, BP_WAIT);
    tap_ok (s_peer_answered (b2, "broker2"), "PEER from a broker certificate is answered PEER");
    tap_ok (bp_stat (admin, "not_broker", NULL) == 2, "and not counted as refused");

    /*  Revocation: bob works, is revoked, reload: new sessions refused, the
        open one forbidden from its next request.  */
    zsock_t *bobs = s_connect (bob);
    bp_request (bobs, 1, "echo", "echo", 3000, 0, "b", 1);
    got = bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST;
    if (got)
        bp_reply (worker, m.h.request_id, m.body, m.size);
    tap_ok (got && bp_recv (bobs, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY, "bob calls echo before revocation");
    tap_ok (kd_write (s_dir, "revoked", "bob\n", 0644) == 0, "bob added to the revocation list");
    tap_ok (sb_broker_reload (s_broker, &err) == 0, "reload (what SIGHUP does) succeeds");
    tap_ok (s_shut_out (bob), "revoked member: a new session gets nothing through");
    tap_ok (s_refused_wait (admin, "revoked", 1) >= 1, "counted as 'revoked'");
    bp_request (bobs, 2, "echo", "echo", 3000, 0, "b", 1);
    tap_ok (s_forbidden (bobs), "revoked member's open session: its next request is forbidden");

    tap_ok (kd_write (s_dir, "revoked", "this is not a name!\n", 0644) == 0, "a broken revocation list");
    tap_ok (sb_broker_reload (s_broker, &err) == -1, "reload fails and says so (%s)", err.text);
    tap_ok (s_shut_out (bob), "the old list stays in force: bob still refused");
    tap_ok (bp_sync (admin) == 0, "alice still served");

    bp_keep (worker, false);
    zsock_destroy (&bobs);
    zsock_destroy (&b2);
    zsock_destroy (&wilds);
    zsock_destroy (&mal);
    zsock_destroy (&worker);
    zsock_destroy (&admin);
    sb_broker_destroy (&s_broker);
    sb_keys_destroy (&broker);
    sb_keys_destroy (&alice);
    sb_keys_destroy (&bob);
    sb_keys_destroy (&mallory);
    sb_keys_destroy (&old);
    sb_keys_destroy (&stranger);
    sb_keys_destroy (&wild);
    sb_keys_destroy (&broker2);
    sb_keys_destroy (&s_authority);
    kd_remove (s_dir);
    return tap_done ();
}
