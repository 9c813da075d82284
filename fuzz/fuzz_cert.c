/*  fuzz_cert.c — fuzz target for certificate decoding (runtime/cert.c)
    and, on the same bytes, the key file parser (runtime/keys.c).

    Certificates reach the broker from the network (ZAP metadata,
    beacons), so sb_cert_parse must refuse any input cleanly.  Beyond "no
    crash", the target checks invariants and aborts when one breaks:
    - a certificate that parses re-encodes to bytes that parse to the
      same fields;
    - verification against an unrelated authority never succeeds;
    - every pattern matches its own text (less a trailing '*');
    - access checks and key ids work on whatever parsed.
*/
#include "security/cert.h"

#include <stdlib.h>
#include <string.h>

static sb_cert_t s_cert, s_again;
static uint8_t s_encoded [SB_CERT_MAX + 80];

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    sb_error_t err;
    sb_cert_status_t status = sb_cert_parse (data, size, &s_cert, &err);
    if (status >= SB_CERT_STATUS_MAX)
        abort ();
    if (status == SB_CERT_OK) {
        size_t encoded = sb_cert_encode (&s_cert, s_encoded, sizeof s_encoded);
        if (encoded == 0 || sb_cert_parse (s_encoded, encoded, &s_again, &err) != SB_CERT_OK)
            abort ();
        if (strcmp (s_cert.name, s_again.name) != 0
        ||  s_cert.offer_count != s_again.offer_count || s_cert.call_count != s_again.call_count
        ||  s_cert.issued_at != s_again.issued_at || s_cert.expires_at != s_again.expires_at
        ||  memcmp (s_cert.curve_pk, s_again.curve_pk, SB_KEY_SIZE) != 0
        ||  memcmp (s_cert.signature, s_again.signature, SB_CERT_SIGNATURE_SIZE) != 0)
            abort ();
        uint8_t stranger [SB_KEY_SIZE];
        memset (stranger, 0x5a, sizeof stranger);
        if (sb_cert_verify (&s_cert, stranger, 1700000000, &err) == SB_CERT_OK)
            abort ();
        char id [SB_KEY_ID_HEX_SIZE];
        sb_cert_key_id_hex (&s_cert, id);
        (void) sb_cert_may_offer (&s_cert, "echo");
        (void) sb_cert_may_call (&s_cert, "echo.reverse");
        /*  Every pattern matches its own text without the trailing '*'.  */
        for (size_t i = 0; i < s_cert.call_count; i++) {
            char name [SB_CERT_PATTERN_MAX + 1];
            strcpy (name, s_cert.call [i]);
            size_t len = strlen (name);
            if (len && name [len - 1] == '*')
                name [--len] = 0;
            if (len && !sb_cert_pattern_match (s_cert.call [i], name))
                abort ();
        }
    }
    /*  The same bytes as a key file: refused or accepted, never a crash.  */
    sb_keys_t *keys = sb_keys_parse ((const char *) data, size, "fuzz", &err);
    sb_keys_destroy (&keys);
    return 0;
}
