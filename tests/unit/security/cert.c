/*  runtime_cert.t — member certificates: issue, verify, every refusal,
    access patterns, certificate files, revocation lists.  */
#define _GNU_SOURCE
#include "security/cert.h"
#include "tap.h"

#include <sodium.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static sb_cert_t s_cert, s_out;
static uint8_t s_buf [SB_CERT_MAX + 80];

static sb_cert_status_t
s_parse_verify (const uint8_t *data, size_t size, const uint8_t *authority_pk, uint64_t now,
                sb_error_t *err)
{
    sb_cert_status_t status = sb_cert_parse (data, size, &s_out, err);
    return status != SB_CERT_OK ? status : sb_cert_verify (&s_out, authority_pk, now, err);
}

/*  Issues a certificate for member, now .. now + lifetime.  */
static size_t
s_issue (const sb_keys_t *ca, const sb_keys_t *member, uint64_t issued, uint64_t lifetime,
         const char *offer, const char *call)
{
    sb_error_t err;
    if (sb_cert_init (&s_cert, member, issued, lifetime, &err)
    ||  sb_cert_add_offer_list (&s_cert, offer, &err)
    ||  sb_cert_add_call_list (&s_cert, call, &err)
    ||  sb_cert_sign (&s_cert, ca, &err)) {
        tap_diag ("issue failed: %s", err.text);
        return 0;
    }
    return sb_cert_encode (&s_cert, s_buf, sizeof s_buf);
}

int
main (void)
{
    sb_error_t err = { 0 };
    uint64_t now = (uint64_t) time (NULL);
    sb_keys_t *ca = sb_keys_new_authority ("authority", &err);
    sb_keys_t *other_ca = sb_keys_new_authority ("other", &err);
    sb_keys_t *alice = sb_keys_new_member ("alice", &err);
    const uint8_t *ca_pk = sb_keys_sign_public (ca);

    size_t size = s_issue (ca, alice, now, 86400, "billing, echo", "echo,sys.*,kv*,audit.log");
    tap_ok (size > 100 && size < 600, "certificate issued and encoded (%zu bytes)", size);
    tap_is_int (sb_cert_parse (s_buf, size, &s_out, &err), SB_CERT_OK, "parses");
    tap_is_str (s_out.name, "alice", "name");
    tap_ok (memcmp (s_out.curve_pk, sb_keys_curve_public (alice), 32) == 0
            && memcmp (s_out.sign_pk, sb_keys_sign_public (alice), 32) == 0, "public keys");
    tap_ok (s_out.offer_count == 2 && !strcmp (s_out.offer [1], "echo"), "offer list");
    tap_ok (s_out.call_count == 4 && !strcmp (s_out.call [2], "kv*"), "call list");
    tap_ok (s_out.issued_at == now && s_out.expires_at == now + 86400, "issued-at and expiry");
    tap_is_int (sb_cert_verify (&s_out, ca_pk, now, &err), SB_CERT_OK, "verifies against its authority");

    /*  Refusals, each distinct.  */
    tap_is_int (s_parse_verify (s_buf, size, ca_pk, now + 86400, &err), SB_CERT_EXPIRED,
                "expired: %s", err.text);
    tap_ok (strstr (err.text, "expired") != NULL, "error says expired");
    size = s_issue (ca, alice, now + 7200, 3600, "echo", "*");
    tap_is_int (s_parse_verify (s_buf, size, ca_pk, now, &err), SB_CERT_NOT_YET_VALID,
                "not yet valid: %s", err.text);
    size = s_issue (ca, alice, now - 60, 3600, "echo", "*");
    tap_is_int (s_parse_verify (s_buf, size, sb_keys_sign_public (other_ca), now, &err),
                SB_CERT_WRONG_AUTHORITY, "wrong authority: %s", err.text);

    /*  Forged: signed by another authority, then the authority id patched in.  */
    size = s_issue (other_ca, alice, now - 60, 3600, "echo", "*");
    sb_cert_t forged = s_cert;
    sb_keys_id (ca, forged.authority_id);
    forged.signed_size = 0;
    /*  Re-encode the signed part by hand: sign with other_ca, swap the id.  */
    tap_ok (sb_cert_sign (&forged, other_ca, &err) == 0, "forgery prepared");
    uint8_t *id_at = NULL;
    uint8_t other_id [SB_KEY_ID_SIZE], real_id [SB_KEY_ID_SIZE];
    sb_keys_id (other_ca, other_id);
    sb_keys_id (ca, real_id);
    for (size_t i = 0; i + SB_KEY_ID_SIZE <= forged.signed_size; i++)
        if (memcmp (forged.signed_data + i, other_id, SB_KEY_ID_SIZE) == 0)
            id_at = forged.signed_data + i;
    if (id_at)
        memcpy (id_at, real_id, SB_KEY_ID_SIZE);
    size = sb_cert_encode (&forged, s_buf, sizeof s_buf);
    tap_is_int (s_parse_verify (s_buf, size, ca_pk, now, &err), SB_CERT_BAD_SIGNATURE,
                "forged signature: %s", err.text);

    /*  Tampered field: widen the call list after signing ("echo" -> "*").  */
    size = s_issue (ca, alice, now - 60, 3600, "echo", "ech*");
    uint8_t *p = memmem (s_buf, size, "ech*", 4);
    if (p)
        memcpy (p, "sys*", 4);
    tap_is_int (s_parse_verify (s_buf, size, ca_pk, now, &err), SB_CERT_BAD_SIGNATURE,
                "tampered call list: %s", err.text);

    /*  Truncated, garbage, oversized, other version.  */
    size = s_issue (ca, alice, now - 60, 3600, "echo", "*");
    int truncated_ok = 1;
    for (size_t cut = 0; cut < size; cut++)
        if (sb_cert_parse (s_buf, cut, &s_out, &err) != SB_CERT_MALFORMED)
            truncated_ok = 0;
    tap_ok (truncated_ok, "every truncation is refused as malformed: %s", err.text);
    tap_is_int (sb_cert_parse ("\x92\xc4\x01\x01\xc4\x00", 6, &s_out, &err), SB_CERT_MALFORMED,
                "garbage: %s", err.text);
    tap_is_int (sb_cert_parse (s_buf, SB_CERT_MAX + 81, &s_out, &err), SB_CERT_MALFORMED, "oversized");
    /*  [ [3], sig ] : a later format version.  */
    uint8_t v3 [72] = { 0x92, 0xc4, 0x02, 0x91, 0x03, 0xc4, 64 };
    tap_is_int (sb_cert_parse (v3, 71, &s_out, &err), SB_CERT_UNSUPPORTED, "other version: %s", err.text);
    tap_is_int (sb_cert_verify (&s_out, ca_pk, now, &err), SB_CERT_MALFORMED, "unparsed cert never verifies");

    /*  Patterns.  */
    size = s_issue (ca, alice, now, 3600, "billing,echo", "echo,sys.*,kv*,audit.log");
    tap_ok (sb_cert_parse (s_buf, size, &s_out, &err) == SB_CERT_OK, "reparsed");
    tap_ok (sb_cert_may_offer (&s_out, "echo") && sb_cert_may_offer (&s_out, "billing"), "may offer listed");
    tap_ok (!sb_cert_may_offer (&s_out, "echo2") && !sb_cert_may_offer (&s_out, "bill"), "not others");
    tap_ok (sb_cert_may_call (&s_out, "echo") && sb_cert_may_call (&s_out, "echo.reverse"),
            "a name covers its methods");
    tap_ok (!sb_cert_may_call (&s_out, "echoes"), "but not longer names");
    tap_ok (sb_cert_may_call (&s_out, "sys") && sb_cert_may_call (&s_out, "sys.ping"), "P.* covers P and P.x");
    tap_ok (!sb_cert_may_call (&s_out, "system"), "P.* does not cover Px");
    tap_ok (sb_cert_may_call (&s_out, "kv") && sb_cert_may_call (&s_out, "kv-store.get"), "P* is a prefix");
    tap_ok (sb_cert_may_call (&s_out, "audit.log") && !sb_cert_may_call (&s_out, "audit"),
            "service.method grants only that method");
    tap_ok (!sb_cert_may_call (&s_out, "billing"), "not listed, not allowed");
    tap_ok (sb_cert_pattern_match ("*", "anything.at_all"), "* matches everything");
    tap_ok (!sb_cert_valid_pattern ("a*b") && !sb_cert_valid_pattern ("a b")
            && !sb_cert_valid_pattern ("") && sb_cert_valid_pattern ("a.*"), "pattern syntax");
    sb_cert_t tmp;
    tap_ok (sb_cert_init (&tmp, alice, now, 10, &err) == 0
            && sb_cert_add_call_list (&tmp, "echo,,sys", &err) == -1, "empty list entry refused: %s", err.text);

    /*  Files and revocation.  */
    char dir [] = "/tmp/sb-cert-test-XXXXXX";
    if (!mkdtemp (dir))
        tap_skip_all ("cannot create a temporary directory");
    char cert_path [256], list_path [256];
    snprintf (cert_path, sizeof cert_path, "%s/alice.cert", dir);
    snprintf (list_path, sizeof list_path, "%s/revoked", dir);
    tap_ok (sb_cert_save (&s_cert, cert_path, &err) == 0, "certificate file written");
    tap_is_int (sb_cert_load (cert_path, &s_out, &err), SB_CERT_OK, "certificate file loads");
    tap_ok (sb_cert_verify (&s_out, ca_pk, now, &err) == SB_CERT_OK && !strcmp (s_out.name, "alice"),
            "loaded certificate verifies");

    FILE *f = fopen (list_path, "w");
    fprintf (f, "# revoked members\nmallory\n\n   eve   # compromised laptop\n");
    fclose (f);
    sb_revocation_t *revoked = sb_revocation_new (list_path, &err);
    tap_ok (revoked && sb_revocation_size (revoked) == 2, "revocation list read (2 entries)");
    tap_ok (!sb_revocation_has (revoked, &s_out), "alice not revoked");
    sb_cert_verifier_t verifier;
    memcpy (verifier.authority_pk, ca_pk, 32);
    verifier.revoked = revoked;
    sb_cert_t checked;
    tap_is_int (sb_cert_check (&verifier, s_buf, size, now, &checked, &err), SB_CERT_OK, "check passes");
    char id [SB_KEY_ID_HEX_SIZE];
    sb_cert_key_id_hex (&s_out, id);
    f = fopen (list_path, "a");
    fprintf (f, "%s\n", id);
    fclose (f);
    tap_ok (sb_revocation_reload (revoked, &err) == 0 && sb_revocation_size (revoked) == 3, "reloaded");
    tap_is_int (sb_cert_check (&verifier, s_buf, size, now, &checked, &err), SB_CERT_REVOKED,
                "revoked by key id: %s", err.text);
    f = fopen (list_path, "w");
    fprintf (f, "alice\nnot a name!\n");
    fclose (f);
    tap_ok (sb_revocation_reload (revoked, &err) == -1 && strstr (err.text, ":2:"),
            "bad line refused with its line number: %s", err.text);
    tap_ok (sb_revocation_size (revoked) == 3 && sb_revocation_has (revoked, &s_out),
            "a failed reload keeps the previous list");
    f = fopen (list_path, "w");
    fprintf (f, "alice\n");
    fclose (f);
    chmod (list_path, 0666);
    tap_ok (sb_revocation_reload (revoked, &err) == -1 && strstr (err.text, "un-revoke"),
            "world-writable list refused: %s", err.text);
    chmod (list_path, 0644);
    tap_ok (sb_revocation_reload (revoked, &err) == 0 && sb_revocation_has (revoked, &s_out),
            "revoked by name");

    /*  Beacon callback: alice is an ordinary member, so her valid
        certificate is "not a broker" (1), never believed.  */
    verifier.revoked = NULL;
    tap_ok (sb_cert_verify_beacon (s_buf, size, sb_keys_sign_public (alice), &verifier) == 1,
            "beacon callback: a valid member certificate without the broker role is not a broker");
    tap_is_int (sb_cert_check_broker (&verifier, s_buf, size, sb_keys_sign_public (alice), now,
                                      &checked, &err),
                SB_CERT_NOT_BROKER, "check_broker names the member: %s", err.text);
    tap_ok (strstr (err.text, "alice") != NULL, "the refusal names alice");

    /*  Roles: a broker certificate is version 2 and round-trips.  */
    sb_cert_t role = s_cert;
    tap_ok (sb_cert_add_roles (&role, 0x80, &err) == -1, "unknown role bits refused: %s", err.text);
    tap_ok (sb_cert_add_roles (&role, SB_CERT_ROLE_BROKER, &err) == 0
            && sb_cert_sign (&role, ca, &err) == 0, "broker role granted and signed");
    uint8_t role_buf [SB_CERT_MAX + 80];
    size_t role_size = sb_cert_encode (&role, role_buf, sizeof role_buf);
    tap_ok (role_size > 0 && sb_cert_parse (role_buf, role_size, &s_out, &err) == SB_CERT_OK
            && s_out.version == SB_CERT_VERSION_ROLES && sb_cert_is_broker (&s_out),
            "a broker certificate parses as version 2 with the broker role");
    tap_ok (sb_cert_parse (s_buf, size, &s_out, &err) == SB_CERT_OK
            && s_out.version == SB_CERT_VERSION && !sb_cert_is_broker (&s_out),
            "a certificate without roles is still version 1 (older certificates read as non-broker)");
    tap_ok (sb_cert_verify_beacon (role_buf, role_size, sb_keys_sign_public (alice), &verifier) == 0,
            "beacon callback accepts a valid broker certificate");
    tap_ok (sb_cert_verify_beacon (role_buf, role_size, sb_keys_curve_public (alice), &verifier) == -1,
            "beacon callback refuses another signing key");
    verifier.revoked = revoked;
    tap_ok (sb_cert_verify_beacon (role_buf, role_size, sb_keys_sign_public (alice), &verifier) == -1,
            "beacon callback refuses a revoked member");

    /*  check_peer: the certificate must be for the connection's CURVE key.  */
    verifier.revoked = NULL;
    tap_is_int (sb_cert_check_peer (&verifier, s_buf, size, sb_keys_curve_public (alice), now, &checked, &err),
                SB_CERT_OK, "check_peer with the right CURVE key");
    tap_is_int (sb_cert_check_peer (&verifier, s_buf, size, sb_keys_sign_public (alice), now, &checked, &err),
                SB_CERT_KEY_MISMATCH, "check_peer with another key: %s", err.text);

    /*  Certificate store, as a ZAP handler uses it.  */
    verifier.revoked = revoked;
    sb_cert_store_t *store = sb_cert_store_new (&verifier);
    size_t refused = 0;
    f = fopen (list_path, "w");
    fclose (f);
    tap_ok (sb_revocation_reload (revoked, &err) == 0 && sb_revocation_size (revoked) == 0, "list emptied");
    char junk_path [256];
    snprintf (junk_path, sizeof junk_path, "%s/junk.cert", dir);
    f = fopen (junk_path, "w");
    fprintf (f, "format = switchboard-cert 1\ncert = AAAA\n");
    fclose (f);
    tap_is_int (sb_cert_store_load_dir (store, dir, now, &refused, &err), 1, "store loads the valid .cert");
    tap_ok (refused == 1 && strstr (err.text, "junk.cert"), "and refuses the junk one: %s", err.text);
    sb_cert_status_t status;
    const sb_cert_t *found = sb_cert_store_lookup (store, sb_keys_curve_public (alice), now, &status, &err);
    tap_ok (found && !strcmp (found->name, "alice"), "lookup by CURVE key");
    tap_ok (!sb_cert_store_lookup (store, sb_keys_sign_public (alice), now, &status, &err)
            && status == SB_CERT_UNKNOWN, "unknown key: %s", err.text);
    tap_ok (!sb_cert_store_lookup (store, sb_keys_curve_public (alice), now + 7200, &status, &err)
            && status == SB_CERT_EXPIRED, "expired since it was stored");
    tap_ok (sb_revocation_add (revoked, "alice", &err) == 0
            && !sb_cert_store_lookup (store, sb_keys_curve_public (alice), now, &status, &err)
            && status == SB_CERT_REVOKED, "revoked since it was stored");
    size_t other = s_issue (other_ca, alice, now, 3600, "echo", "*");
    tap_is_int (sb_cert_store_add (store, s_buf, other, now, &err), SB_CERT_WRONG_AUTHORITY,
                "store refuses another authority's certificate");
    tap_is_int (sb_cert_store_size (store), 1, "store holds one certificate");
    sb_cert_store_destroy (&store);
    unlink (junk_path);

    sb_revocation_destroy (&revoked);
    unlink (cert_path);
    unlink (list_path);
    rmdir (dir);
    sb_keys_destroy (&ca);
    sb_keys_destroy (&other_ca);
    sb_keys_destroy (&alice);
    return tap_done ();
}
