/*  fuzz_envelope.c — libFuzzer target for what a receiver reads out of
    a sealed body (runtime/security/envelope.c) and for the sealed box
    around it (runtime/security/seal.c).

    Promises checked on every input (a broken one aborts):
    - sb_envelope_parse never reads past the input; an envelope that
      parses has its context and body inside the input, in order, making
      up the rest of it, and writing its head back gives the same bytes;
    - the time rules are consistent at any clock: never both stale and
      future, acceptable at the moment it was sealed, the acceptable age
      at most SB_ENVELOPE_MAX_AGE_MS, no wrap-around near UINT64_MAX;
    - the input as a sealed body from a known peer is refused without a
      crash (forging a tag is not the fuzzer's job), and the input as a
      body sealed in an envelope opens to exactly the same envelope.
*/
#include "security/envelope.h"
#include "security/seal.h"

#include <stdlib.h>
#include <string.h>

static sb_keys_t *s_a, *s_b;
static sb_seal_t *s_from, *s_to;
static uint8_t s_box [70000], s_inner [70000];

static void
s_require (int condition)
{
    if (!condition)
        abort ();
}

/*  The contexts live in sodium_malloc memory, which LeakSanitizer does
    not scan: freed at exit, so what they point to is not reported.  */
static void
s_cleanup (void)
{
    sb_seal_destroy (&s_from);
    sb_seal_destroy (&s_to);
    sb_keys_destroy (&s_a);
    sb_keys_destroy (&s_b);
}

int LLVMFuzzerInitialize (int *argc, char ***argv);
int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    (void) argc;
    (void) argv;
    sb_error_t err;
    s_a = sb_keys_new_member ("a", &err);
    s_b = sb_keys_new_member ("b", &err);
    s_from = s_a ? sb_seal_new (s_a, 4, &err) : NULL;
    s_to = s_b ? sb_seal_new (s_b, 4, &err) : NULL;
    s_require (s_from && s_to && sb_seal_peer_add (s_from, sb_keys_curve_public (s_b), &err) == 0
               && sb_seal_peer_add (s_to, sb_keys_curve_public (s_a), &err) == 0);
    atexit (s_cleanup);
    return 0;
}

static void
s_check_envelope (const uint8_t *data, size_t size)
{
    sb_envelope_t e;
    sb_envelope_status_t status = sb_envelope_parse (data, size, &e);
    s_require (status == SB_ENVELOPE_OK || status == SB_ENVELOPE_TRUNCATED
               || status == SB_ENVELOPE_UNSUPPORTED);
    if (status != SB_ENVELOPE_OK)
        return;
    s_require (e.context == data + SB_ENVELOPE_HEAD && e.body == e.context + e.context_size
               && SB_ENVELOPE_HEAD + e.context_size + e.body_size == size);
    uint8_t head [SB_ENVELOPE_HEAD + SB_ENVELOPE_CONTEXT_MAX];
    sb_envelope_write (head, e.sent_ms, e.ttl_ms, e.context, e.context_size);
    s_require (memcmp (head, data, SB_ENVELOPE_HEAD + e.context_size) == 0);

    uint64_t expires = sb_envelope_expires (&e);
    s_require (expires >= e.sent_ms && expires - e.sent_ms <= SB_ENVELOPE_MAX_AGE_MS);
    s_require (sb_envelope_check (&e, e.sent_ms) == SB_ENVELOPE_OK);
    uint64_t nows [] = { 0, e.sent_ms - 1, e.sent_ms + 1, expires, expires + 1,
                         e.sent_ms - SB_ENVELOPE_SKEW_MS - 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof nows / sizeof nows [0]; i++) {
        sb_envelope_status_t at = sb_envelope_check (&e, nows [i]);
        s_require (at == SB_ENVELOPE_OK || at == SB_ENVELOPE_STALE || at == SB_ENVELOPE_FUTURE);
        if (at == SB_ENVELOPE_STALE)
            s_require (nows [i] > expires);
        if (at == SB_ENVELOPE_FUTURE)
            s_require (e.sent_ms > nows [i] && e.sent_ms - nows [i] > SB_ENVELOPE_SKEW_MS);
    }
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_check_envelope (data, size);

    /*  The input as a sealed body that arrived from a.  */
    size_t opened = 0;
    sb_seal_status_t status = sb_seal_open (s_to, sb_keys_curve_public (s_a), SB_SEAL_KEY_ID_SIZE,
                                            data, size, s_inner, sizeof s_inner, &opened, NULL);
    s_require (status != SB_SEAL_OK);

    /*  The input as the body of an envelope, sealed and opened again.  */
    if (size > sizeof s_inner - SB_ENVELOPE_HEAD - SB_ENVELOPE_CONTEXT_MAX - SB_SEAL_OVERHEAD)
        return 0;
    size_t context = size ? data [0] : 0;
    if (context > size)
        context = size;
    uint64_t sent = 0;
    for (size_t i = 0; i < 8 && i < size; i++)
        sent = (sent << 8) | data [i];
    uint8_t plain [sizeof s_inner];
    sb_envelope_write (plain, sent, (uint32_t) size, data, context);
    memcpy (plain + SB_ENVELOPE_HEAD + context, data, size);
    size_t inner = SB_ENVELOPE_HEAD + context + size, boxed = 0;
    s_require (sb_seal_box (s_from, sb_keys_curve_public (s_b), plain, inner, s_box, sizeof s_box,
                            &boxed, NULL) == SB_SEAL_OK);
    s_require (sb_seal_open (s_to, sb_keys_curve_public (s_a), SB_SEAL_KEY_ID_SIZE, s_box, boxed,
                             s_inner, sizeof s_inner, &opened, NULL) == SB_SEAL_OK
               && opened == inner && memcmp (s_inner, plain, inner) == 0);
    sb_envelope_t e;
    s_require (sb_envelope_parse (s_inner, opened, &e) == SB_ENVELOPE_OK && e.sent_ms == sent
               && e.ttl_ms == (uint32_t) size && e.context_size == context && e.body_size == size
               && memcmp (e.body, data, size) == 0);
    s_check_envelope (s_inner, opened);
    return 0;
}
