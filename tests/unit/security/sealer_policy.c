/*  sealer_policy.t — the sealer's policy without sockets.

    The sealer (runtime/security/sealer.h) is driven through its owner
    interface by this test, which plays the peer: it records the sys.keys
    lookups the sealer asks for and answers them with made-up replies
    built from real certificates (signed by the test's authority, by
    another authority, expired, for another service or another key).

    What a user would notice: a call waits for its service's key and goes
    out once a certificate that verifies comes back; a broker that knew
    no such service makes the lookup go to the next one; a certificate
    that does not verify, is for another service or another key, or is
    no longer handed out (revoked) is refused with the reason said and
    counted; a lookup that got no answer is asked again; a request from
    an unknown caller waits for the caller's certificate and is then
    opened or refused.  No broker, no thread, no socket.
*/
#include "security/sealer.h"
#include "tap.h"

#include <czmq.h>
#include <inttypes.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

static char s_dir [256];
static sb_keys_t *s_authority;

/*  A member with a certificate: keys and certificate saved in s_dir (so
    that an identity can be loaded), the encoded certificate kept.  With
    `keys` the member has those keys (borrowed) and nothing is saved: a
    second certificate for a member, as a broker might hand out.  */
typedef struct {
    sb_keys_t *keys;
    uint8_t cert [SB_CERT_MAX + 80];
    size_t cert_size;
} s_member_t;

static bool
s_member (s_member_t *m, const sb_keys_t *keys, const sb_keys_t *authority, const char *name,
          const char *offer, const char *call, int64_t issued_ago)
{
    sb_error_t err = { 0 };
    sb_cert_t cert;
    char path [512];
    memset (m, 0, sizeof *m);
    const sb_keys_t *own = keys ? keys : (m->keys = sb_keys_new_member (name, &err));
    snprintf (path, sizeof path, "%s/%s.cert", s_dir, name);
    if (!own || sb_cert_init (&cert, own, (uint64_t) (time (NULL) - issued_ago), 3600, &err)
    ||  sb_cert_add_offer_list (&cert, offer, &err) || sb_cert_add_call_list (&cert, call, &err)
    ||  sb_cert_sign (&cert, authority, &err) || (!keys && sb_cert_save (&cert, path, &err))) {
        tap_diag ("member %s: %s", name, err.text);
        return false;
    }
    m->cert_size = sb_cert_encode (&cert, m->cert, sizeof m->cert);
    snprintf (path, sizeof path, "%s/%s.key", s_dir, name);
    if (!keys && sb_keys_save_secret (m->keys, path, &err)) {
        tap_diag ("member %s: %s", name, err.text);
        return false;
    }
    return m->cert_size > 0;
}

/*  A sys.keys answer: {"certs": [bin, ...]} with the members' certificates. */
static void
s_answer_body (msgpack_sbuffer *buffer, const s_member_t **members, size_t count)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "certs", 5);
    msgpack_pack_array (&pk, count);
    for (size_t i = 0; i < count; i++)
        msgpack_pack_bin_with_body (&pk, members [i]->cert, members [i]->cert_size);
}

/*  --------------------------------------------------------------------
    The owner: records what the sealer asks for.  */

#define S_MAX 32

typedef struct {
    sb_identity_t *identity;            /* the sealer borrows it */
    sb_sealer_t *sealer;
    bool refuse_lookups;                /* the next lookup cannot be sent */
    sb_sealer_lookup_t *lookups [S_MAX];
    size_t nlookups;
    char ready [S_MAX][SB_NAME_MAX + 1];
    size_t nready;
    /*  Requests handed back, opened again as the peer does.  */
    size_t released;
    uint32_t released_link;
    int reopened [S_MAX];
    sb_error_t reopen_err [S_MAX];
    char plain [S_MAX][64];
} s_owner_t;

static int
s_lookup (sb_sealer_lookup_t *lookup, void *arg, sb_error_t *err)
{
    s_owner_t *owner = arg;
    if (owner->refuse_lookups) {
        owner->refuse_lookups = false;
        return sb_error_set (err, SB_E_UNAVAILABLE, "no broker to ask");
    }
    if (owner->nlookups < S_MAX)
        owner->lookups [owner->nlookups++] = lookup;
    return 0;
}

static void
s_keys_ready (const char *service, void *arg)
{
    s_owner_t *owner = arg;
    if (owner->nready < S_MAX)
        snprintf (owner->ready [owner->nready++], SB_NAME_MAX + 1, "%s", service);
}

static void
s_release (uint32_t link_id, const sb_header_t *h, zmq_msg_t *body, void *arg)
{
    s_owner_t *owner = arg;
    size_t i = owner->released++;
    owner->released_link = link_id;
    if (i >= S_MAX)
        return;
    zmq_msg_t plain;
    uint8_t caller_pk [SB_KEY_SIZE], nonce [SB_SEAL_NONCE_SIZE];
    owner->reopened [i] = sb_sealer_open_request (owner->sealer, link_id, h, body, &plain,
                                                  caller_pk, nonce, &owner->reopen_err [i]);
    if (owner->reopened [i] == 1) {
        snprintf (owner->plain [i], sizeof owner->plain [i], "%.*s", (int) zmq_msg_size (&plain),
                  (const char *) zmq_msg_data (&plain));
        zmq_msg_close (&plain);
    }
}

static sb_sealer_t *
s_sealer_new (const char *name, s_owner_t *owner)
{
    sb_error_t err = { 0 };
    memset (owner, 0, sizeof *owner);
    owner->identity = sb_identity_load (s_dir, name, &err);
    if (!owner->identity) {
        tap_diag ("identity %s: %s", name, err.text);
        return NULL;
    }
    sb_sealer_owner_t callbacks = { s_lookup, s_keys_ready, s_release, owner };
    owner->sealer = sb_sealer_new (owner->identity, &callbacks, &err);
    if (!owner->sealer)
        tap_diag ("sealer %s: %s", name, err.text);
    return owner->sealer;
}

static void
s_sealer_destroy (s_owner_t *owner)
{
    sb_sealer_destroy (&owner->sealer);
    sb_identity_destroy (&owner->identity);
}

/*  The last lookup asked, if it is for this service (NULL: a caller's). */
static sb_sealer_lookup_t *
s_last_lookup (s_owner_t *owner, const char *service)
{
    if (owner->nlookups == 0)
        return NULL;
    sb_sealer_lookup_t *lookup = owner->lookups [owner->nlookups - 1];
    if (service ? lookup->kind != SB_SEALER_LOOKUP_SERVICE || strcmp (lookup->service, service)
                : lookup->kind != SB_SEALER_LOOKUP_CALLER)
        return NULL;
    return lookup;
}

static int
s_answer (s_owner_t *owner, sb_sealer_lookup_t *lookup, const s_member_t **members,
          size_t count, bool last)
{
    msgpack_sbuffer buffer;
    s_answer_body (&buffer, members, count);
    int rc = sb_sealer_lookup_answer (owner->sealer, lookup, buffer.data, buffer.size, NULL, last);
    msgpack_sbuffer_destroy (&buffer);
    return rc;
}

/*  Why calls to `service` cannot be sealed (NULL: its key is known), and
    the code they are answered with.  */
static const char *
s_why (sb_sealer_t *sealer, const char *service, sb_code_t *code)
{
    uint8_t pk [SB_KEY_SIZE];
    const char *why = NULL;
    return sb_sealer_service_result (sealer, service, pk, code, &why) == 1 ? NULL : why;
}

static uint64_t
s_refused (sb_sealer_t *sealer, sb_sealer_reason_t reason)
{
    sb_sealer_counters_t c;
    sb_sealer_counters (sealer, &c);
    return c.refused [reason];
}

/*  A sealed REQUEST for vault.put from `from` to the service key pk,
    sealed with a ttl of ttl_ms; the header says the same.  */
static int
s_request_ttl (sb_sealer_t *from, const uint8_t pk [SB_KEY_SIZE], const char *text,
               uint32_t ttl_ms, sb_header_t *h, zmq_msg_t *body)
{
    sb_error_t err;
    sb_header_init (h, SB_CMD_REQUEST);
    if (sb_header_set_service (h, "vault") || sb_header_set_method (h, "put"))
        return -1;
    h->flags |= SB_F_SEALED;
    memcpy (h->key_id, sb_sealer_key_id (from), SB_KEY_SIZE);
    h->key_id_size = SB_KEY_SIZE;
    h->present |= SB_H_KEY_ID;
    h->timeout_ms = ttl_ms;
    h->present |= SB_H_TIMEOUT;
    char context [2 * SB_NAME_MAX + 2];
    size_t length = sb_sealer_context ("vault", "put", context);
    return sb_sealer_seal (from, pk, context, length, ttl_ms, text, strlen (text), body, NULL, &err);
}

static int
s_request (sb_sealer_t *from, const uint8_t pk [SB_KEY_SIZE], const char *text,
           sb_header_t *h, zmq_msg_t *body)
{
    return s_request_ttl (from, pk, text, 3000, h, body);
}

/*  A copy of a body, as a broker's capture would keep it.  */
static void
s_capture (zmq_msg_t *copy, zmq_msg_t *body)
{
    zmq_msg_init_size (copy, zmq_msg_size (body));
    memcpy (zmq_msg_data (copy), zmq_msg_data (body), zmq_msg_size (body));
}

/*  Opens a request; 1, 0 or -1 as sb_sealer_open_request, err filled.  */
static int
s_open (sb_sealer_t *sealer, const sb_header_t *h, zmq_msg_t *body, char *text, size_t text_size,
        sb_error_t *err)
{
    zmq_msg_t plain;
    uint8_t caller_pk [SB_KEY_SIZE], nonce [SB_SEAL_NONCE_SIZE];
    int rc = sb_sealer_open_request (sealer, 7, h, body, &plain, caller_pk, nonce, err);
    if (rc == 1) {
        snprintf (text, text_size, "%.*s", (int) zmq_msg_size (&plain), (const char *) zmq_msg_data (&plain));
        zmq_msg_close (&plain);
    }
    return rc;
}

int
main (void)
{
    if (sodium_init () < 0)
        tap_skip_all ("libsodium does not start");
    zsys_init ();
    zsys_set_logstream (NULL);
    snprintf (s_dir, sizeof s_dir, "/tmp/sb-sealer-policy-XXXXXX");
    if (!mkdtemp (s_dir)) {
        printf ("Bail out! mkdtemp\n");
        return 1;
    }
    sb_error_t err = { 0 };
    char path [512];
    s_authority = sb_keys_new_authority ("authority", &err);
    sb_keys_t *other_authority = sb_keys_new_authority ("other", &err);
    snprintf (path, sizeof path, "%s/authority.pub", s_dir);
    s_member_t svc, alice, bob, mallory, carol, erin, forged, erin_forged, old;
    if (!s_authority || !other_authority || sb_keys_save_public (s_authority, path, &err)
    ||  !s_member (&svc, NULL, s_authority, "svc", "vault", "", 0)
    ||  !s_member (&alice, NULL, s_authority, "alice", "", "vault", 0)
    ||  !s_member (&bob, NULL, s_authority, "bob", "", "ledger", 0)
    ||  !s_member (&mallory, NULL, s_authority, "mallory", "", "vault", 0)
    ||  !s_member (&carol, NULL, s_authority, "carol", "", "vault", 0)
    ||  !s_member (&erin, NULL, s_authority, "erin", "", "vault", 0)
    ||  !s_member (&forged, NULL, other_authority, "forged", "vault", "", 0)
    ||  !s_member (&erin_forged, erin.keys, other_authority, "erin", "", "vault", 0)
    ||  !s_member (&old, NULL, s_authority, "old", "vault", "", 7200)) {
        printf ("Bail out! keys: %s\n", err.text);
        return 1;
    }

    /*  ----------------------------------------------------------------
        Caller side: alice's sealer learns the key of vault.  */
    s_owner_t caller;
    sb_sealer_t *sealer = s_sealer_new ("alice", &caller);
    tap_ok (sealer != NULL, "alice's sealer, with an owner of made-up answers");
    if (!sealer)
        return tap_done ();
    uint8_t pk [SB_KEY_SIZE];
    tap_ok (sb_sealer_service_key (sealer, "vault", pk) == 0 && caller.nlookups == 1
         && s_last_lookup (&caller, "vault"),
            "a call to vault waits for its key, and a sys.keys lookup for vault is asked");
    tap_ok (sb_sealer_service_key (sealer, "vault", pk) == 0 && caller.nlookups == 1,
            "a second call waits for the same lookup (none asked again)");
    sb_sealer_lookup_t *lookup = s_last_lookup (&caller, "vault");
    tap_ok (s_answer (&caller, lookup, NULL, 0, false) == SB_SEALER_ASK_AGAIN && caller.nready == 0,
            "a broker that knew no such service: the owner is told to ask the next one");
    const s_member_t *one [1] = { &svc };
    tap_ok (s_answer (&caller, lookup, one, 1, true) == 0 && caller.nready == 1
         && streq (caller.ready [0], "vault"),
            "an answer with svc's certificate: the calls waiting for vault are let go");
    sb_code_t code;
    const char *why = s_why (sealer, "vault", &code);
    sb_sealer_service_key (sealer, "vault", pk);
    tap_ok (!why && !memcmp (pk, sb_keys_curve_public (svc.keys), SB_KEY_SIZE),
            "the key they are sealed for is svc's curve key");
    size_t asked = caller.nlookups;
    tap_ok (sb_sealer_service_key (sealer, "vault", pk) == 1 && caller.nlookups == asked,
            "the next call has the key at once, without a lookup");
    sb_sealer_counters_t counters;
    sb_sealer_counters (sealer, &counters);
    tap_ok (counters.lookups == 2, "lookups counted: %" PRIu64 " (the first and the next broker)",
            counters.lookups);

    /*  Refusals, each with the reason said and counted.  */
    sb_sealer_service_key (sealer, "ledger", pk);
    one [0] = &forged;
    s_answer (&caller, s_last_lookup (&caller, "ledger"), one, 1, true);
    why = s_why (sealer, "ledger", &code);
    tap_ok (why && code == SB_E_UNAUTHORIZED && strstr (why, "another authority"),
            "a certificate signed by another authority is refused: %s", why);
    tap_ok (caller.nready == 2 && streq (caller.ready [1], "ledger"),
            "and the calls waiting for ledger are told (to be answered with it)");
    tap_is_int ((int) s_refused (sealer, SB_SEALER_NO_KEY), 1, "counted as no_key");

    sb_sealer_service_key (sealer, "billing", pk);
    one [0] = &svc;
    s_answer (&caller, s_last_lookup (&caller, "billing"), one, 1, true);
    why = s_why (sealer, "billing", &code);
    tap_ok (why && code == SB_E_UNAUTHORIZED && strstr (why, "does not allow it to offer billing"),
            "a certificate that does not offer the service is refused: %s", why);

    sb_sealer_service_key (sealer, "archive", pk);
    one [0] = &old;
    s_answer (&caller, s_last_lookup (&caller, "archive"), one, 1, true);
    why = s_why (sealer, "archive", &code);
    tap_ok (why && code == SB_E_UNAUTHORIZED && strstr (why, "expired"),
            "an expired certificate is refused: %s", why);

    sb_sealer_service_key (sealer, "gone", pk);
    int rc = s_answer (&caller, s_last_lookup (&caller, "gone"), NULL, 0, true);
    why = s_why (sealer, "gone", &code);
    tap_ok (rc == 0 && why && code == SB_E_NOT_FOUND && strstr (why, "no service 'gone'"),
            "no certificate from the last broker asked: not_found (%s)", why);
    tap_is_int ((int) s_refused (sealer, SB_SEALER_NO_KEY), 4, "each counted as no_key");

    /*  No answer: the lookup is asked again by the next call.  */
    sb_sealer_service_key (sealer, "late", pk);
    sb_error_t timeout;
    sb_error_set (&timeout, SB_E_TIMEOUT, "no answer from sys.keys within 5000 ms");
    sb_sealer_lookup_answer (sealer, s_last_lookup (&caller, "late"), NULL, 0, &timeout, false);
    why = s_why (sealer, "late", &code);
    tap_ok (why && code == SB_E_TIMEOUT,
            "a lookup with no answer: the waiting calls time out (%s)", why);
    asked = caller.nlookups;
    tap_ok (sb_sealer_service_key (sealer, "late", pk) == 0 && caller.nlookups == asked + 1
         && s_last_lookup (&caller, "late"),
            "the next call to it asks the lookup again");
    one [0] = &svc;
    s_answer (&caller, s_last_lookup (&caller, "late"), one, 1, true);
    why = s_why (sealer, "late", &code);
    tap_ok (why && strstr (why, "does not allow it to offer late"),
            "and its answer is judged like any other");

    /*  A lookup that cannot even be sent ends at once.  */
    caller.refuse_lookups = true;
    size_t ready = caller.nready;
    rc = sb_sealer_service_key (sealer, "down", pk);
    why = s_why (sealer, "down", &code);
    tap_ok (rc == 0 && caller.nready == ready + 1 && why && code == SB_E_UNAVAILABLE && strstr (why, "no broker to ask"),
            "a lookup the owner cannot send: the calls are told at once (%s)", why);

    /*  A refresh in flight when the sealer goes: nothing leaks.  */
    sb_sealer_service_key (sealer, "pending", pk);

    /*  ----------------------------------------------------------------
        Worker side: svc's sealer opens requests from callers it looks up. */
    s_owner_t worker;
    sb_sealer_t *vault = s_sealer_new ("svc", &worker);
    tap_ok (vault != NULL, "svc's sealer");
    if (!vault)
        return tap_done ();
    uint8_t vault_pk [SB_KEY_SIZE];
    memcpy (vault_pk, sb_keys_curve_public (svc.keys), SB_KEY_SIZE);

    sb_header_t h1, h2, h;
    zmq_msg_t b1, b2, b;
    char text [64] = "";
    tap_ok (s_request (sealer, vault_pk, "first", &h1, &b1) == 0
         && s_request (sealer, vault_pk, "second", &h2, &b2) == 0,
            "alice seals two requests for vault");
    tap_ok (s_open (vault, &h1, &b1, text, sizeof text, &err) == 0 && worker.nlookups == 1
         && s_last_lookup (&worker, NULL)
         && !memcmp (s_last_lookup (&worker, NULL)->key, sb_keys_curve_public (alice.keys), SB_KEY_SIZE),
            "a request from an unknown caller waits, and her certificate is looked up by key");
    tap_ok (s_open (vault, &h2, &b2, text, sizeof text, &err) == 0 && worker.nlookups == 1,
            "a second one from her waits for the same lookup");
    zmq_msg_close (&b1);
    zmq_msg_close (&b2);
    one [0] = &alice;
    s_answer (&worker, s_last_lookup (&worker, NULL), one, 1, true);
    tap_ok (worker.released == 2 && worker.released_link == 7,
            "her certificate verifies: both requests are handed back on their link");
    tap_ok (worker.reopened [0] == 1 && worker.reopened [1] == 1
         && streq (worker.plain [0], "first") && streq (worker.plain [1], "second"),
            "and now open, in order (%s, %s)", worker.plain [0], worker.plain [1]);
    s_request (sealer, vault_pk, "third", &h, &b);
    tap_ok (s_open (vault, &h, &b, text, sizeof text, &err) == 1 && streq (text, "third")
         && worker.nlookups == 1,
            "her next request opens at once");
    zmq_msg_close (&b);

    /*  A body altered in flight.  */
    s_request (sealer, vault_pk, "fourth", &h, &b);
    ((uint8_t *) zmq_msg_data (&b)) [zmq_msg_size (&b) - 3] ^= 1;
    tap_ok (s_open (vault, &h, &b, text, sizeof text, &err) == -1 && err.code == SB_E_BAD_REQUEST
         && s_refused (vault, SB_SEALER_TAMPERED) == 1,
            "an altered body is refused and counted as tampered: %s", err.text);
    zmq_msg_close (&b);

    /*  A plaintext request.  */
    sb_header_init (&h, SB_CMD_REQUEST);
    if (sb_header_set_service (&h, "vault") || sb_header_set_method (&h, "put"))
        tap_diag ("bad names");
    zmq_msg_init (&b);
    tap_ok (s_open (vault, &h, &b, text, sizeof text, &err) == -1
         && s_refused (vault, SB_SEALER_PLAINTEXT) == 1,
            "a plaintext request is refused and counted: %s", err.text);
    zmq_msg_close (&b);

    /*  Callers refused once their lookup ends; each a sealer of its own.  */
    struct {
        const char *name;
        const s_member_t *answer;       /* NULL: no certificate handed out */
        sb_sealer_reason_t reason;
        sb_code_t code;
        const char *says;
        const char *what;
    } callers [] = {
        { "bob", &bob, SB_SEALER_FORBIDDEN, SB_E_FORBIDDEN, "may not call vault.put",
          "a caller whose certificate does not allow the method" },
        { "mallory", NULL, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, "no certificate is known",
          "a caller no broker hands out a certificate for (unknown, or revoked)" },
        { "carol", &alice, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, "is for another key",
          "a caller answered with another member's certificate" },
        { "erin", &erin_forged, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, "another authority",
          "a caller answered with a certificate from another authority" },
    };
    for (size_t i = 0; i < sizeof callers / sizeof callers [0]; i++) {
        s_owner_t other;
        sb_sealer_t *them = s_sealer_new (callers [i].name, &other);
        if (!them) {
            tap_ok (false, "%s's sealer", callers [i].name);
            continue;
        }
        size_t released = worker.released;
        uint64_t before = s_refused (vault, callers [i].reason);
        s_request (them, vault_pk, "hello", &h, &b);
        int held = s_open (vault, &h, &b, text, sizeof text, &err);
        zmq_msg_close (&b);
        one [0] = callers [i].answer;
        s_answer (&worker, s_last_lookup (&worker, NULL), one, callers [i].answer ? 1 : 0, true);
        size_t r = worker.released - 1;
        tap_ok (held == 0 && worker.released == released + 1
             && worker.reopened [r] == -1 && worker.reopen_err [r].code == callers [i].code
             && strstr (worker.reopen_err [r].text, callers [i].says)
             && s_refused (vault, callers [i].reason) == before + 1,
                "%s is refused once the lookup ends, counted as %s: %s", callers [i].what,
                sb_sealer_reason_name (callers [i].reason), worker.reopen_err [r].text);
        s_sealer_destroy (&other);
    }
    /*  A refused caller is not looked up again at once.  */
    s_owner_t again;
    sb_sealer_t *mallory_sealer = s_sealer_new ("mallory", &again);
    size_t lookups = worker.nlookups;
    s_request (mallory_sealer, vault_pk, "again", &h, &b);
    tap_ok (s_open (vault, &h, &b, text, sizeof text, &err) == -1 && worker.nlookups == lookups
         && strstr (err.text, "no certificate is known"),
            "a refused caller's next request is refused at once, without a lookup");
    zmq_msg_close (&b);
    s_sealer_destroy (&again);

    sb_sealer_counters (vault, &counters);
    tap_ok (counters.opened == 3 && counters.lookups == 5,
            "svc opened 3 requests after 5 caller lookups (%" PRIu64 ", %" PRIu64 ")",
            counters.opened, counters.lookups);

    /*  ----------------------------------------------------------------
        Replay across a restart.  Bodies captured in flight, opened by
        svc when they were sealed, are replayed to svc's sealer made
        anew (a restarted service: its replay window is empty).  The
        clock moves by sb__sealer_set_clock_offset, for every sealer.  */
    sb_header_t hc [4];
    zmq_msg_t bc [4], captured [4];
    const char *sent [4] = { "a minute ago", "long ttl", "lengthened", "fresh" };
    int64_t ago [4] = { 61000, 61000, 40000, 0 };
    uint32_t ttls [4] = { 3000, 600000, 2000, 3000 };
    int opened_then = 0;
    for (int i = 0; i < 4; i++) {
        sb__sealer_set_clock_offset (-ago [i]);
        s_request_ttl (sealer, vault_pk, sent [i], ttls [i], &hc [i], &bc [i]);
        s_capture (&captured [i], &bc [i]);
        opened_then += s_open (vault, &hc [i], &bc [i], text, sizeof text, &err) == 1;
        zmq_msg_close (&bc [i]);
    }
    sb__sealer_set_clock_offset (120000);
    s_request (sealer, vault_pk, "ahead", &h, &b);
    sb__sealer_set_clock_offset (0);
    tap_ok (opened_then == 4, "svc opened 4 requests when they were sealed (61, 61, 40 and 0 s ago)");
    hc [2].timeout_ms = 600000;         /* the broker lengthens the header's deadline */

    zmq_msg_t recopy;                   /* the fresh one, to replay once more */
    s_capture (&recopy, &captured [3]);
    s_owner_t restarted;
    sb_sealer_t *fresh = s_sealer_new ("svc", &restarted);
    int held = 0;
    for (int i = 0; i < 4; i++)
        held += fresh && s_open (fresh, &hc [i], &captured [i], text, sizeof text, &err) == 0;
    held += fresh && s_open (fresh, &h, &b, text, sizeof text, &err) == 0;
    zmq_msg_close (&b);
    one [0] = &alice;
    if (fresh)
        s_answer (&restarted, s_last_lookup (&restarted, NULL), one, 1, true);
    tap_ok (held == 5 && restarted.released == 5,
            "the restarted svc holds the 5 replayed requests for alice's certificate, then opens them");
    tap_ok (restarted.reopened [0] == -1 && strstr (restarted.reopen_err [0].text, "stale")
         && restarted.reopen_err [0].code == SB_E_BAD_REQUEST,
            "a request captured 61 s ago is refused after the restart: %s", restarted.reopen_err [0].text);
    tap_ok (restarted.reopened [1] == -1 && strstr (restarted.reopen_err [1].text, "stale"),
            "so is one sealed with a 10-minute timeout (max age %d s): %s",
            SB_ENVELOPE_MAX_AGE_MS / 1000, restarted.reopen_err [1].text);
    tap_ok (restarted.reopened [2] == -1 && strstr (restarted.reopen_err [2].text, "stale"),
            "a 2 s request captured 40 s ago, its header deadline lengthened to 10 minutes by the "
            "broker, is refused: %s", restarted.reopen_err [2].text);
    tap_ok (restarted.reopened [3] == 1 && streq (restarted.plain [3], "fresh"),
            "a request sealed just now opens in the restarted svc");
    tap_ok (restarted.reopened [4] == -1 && strstr (restarted.reopen_err [4].text, "future"),
            "a request sealed 120 s ahead of svc's clock is refused: %s", restarted.reopen_err [4].text);
    tap_ok (fresh && s_refused (fresh, SB_SEALER_STALE) == 3 && s_refused (fresh, SB_SEALER_FUTURE) == 1
         && streq (sb_sealer_reason_name (SB_SEALER_STALE), "stale")
         && streq (sb_sealer_reason_name (SB_SEALER_FUTURE), "future"),
            "counted as stale (3) and future (1)");
    tap_ok (fresh && s_open (fresh, &hc [3], &recopy, text, sizeof text, &err) == -1
         && strstr (err.text, "replayed") && s_refused (fresh, SB_SEALER_REPLAYED) == 1,
            "the fresh one replayed again is refused by the new window: %s", err.text);
    for (int i = 0; i < 4; i++)
        zmq_msg_close (&captured [i]);
    zmq_msg_close (&recopy);
    s_sealer_destroy (&restarted);

    /*  A request waiting when the sealer goes: its body is freed.  */
    s_owner_t dave_owner;
    s_member_t dave;
    tap_ok (s_member (&dave, NULL, s_authority, "dave", "", "vault", 0), "dave joins");
    sb_sealer_t *dave_sealer = s_sealer_new ("dave", &dave_owner);
    s_request (dave_sealer, vault_pk, "pending", &h, &b);
    tap_ok (s_open (vault, &h, &b, text, sizeof text, &err) == 0,
            "a request left waiting for its caller's lookup when the sealer goes");
    zmq_msg_close (&b);
    s_sealer_destroy (&dave_owner);
    sb_keys_destroy (&dave.keys);

    s_sealer_destroy (&worker);
    s_sealer_destroy (&caller);
    tap_ok (caller.sealer == NULL && worker.sealer == NULL,
            "sealers destroyed with lookups in flight");
    sb_sealer_destroy (&caller.sealer);
    tap_ok (caller.sealer == NULL, "destroying twice is harmless");

    s_member_t *all [] = { &svc, &alice, &bob, &mallory, &carol, &erin, &forged, &old };
    for (size_t i = 0; i < sizeof all / sizeof all [0]; i++)
        sb_keys_destroy (&all [i]->keys);
    sb_keys_destroy (&s_authority);
    sb_keys_destroy (&other_authority);
    char command [600];
    snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
    if (system (command) != 0)
        tap_diag ("could not remove %s", s_dir);
    return tap_done ();
}
