/*  envelope.h — what goes inside a sealed box before the body: the
    format, when the body was sealed, how long it may be accepted, and
    what it was sealed for.

    The sealer (sealer.h) puts this envelope inside the crypto_box of
    seal.h, so every field is encrypted and authenticated with the body:
    a broker can neither read nor change it.  Layout, format 2
    (docs/security.md 5.2; all integers big-endian):

        offset  size  field
        0       1     format: SB_ENVELOPE_FORMAT (2)
        1       8     sent: unix time in ms, the sender's clock, when sealed
        9       4     ttl: ms the sender gives the body (its call's timeout);
                      0: none (events, replies)
        13      1     context length n (0..255)
        14      n     context: "service.method", a request's nonce, a topic
        14 + n  ...   the body

    Format 1 (before the envelope) had no format byte, time or ttl; its
    bodies do not parse (they are refused as tampered or unsupported).

    Time rules (sb_envelope_check), against the receiver's own clock:
    a body sealed more than SB_ENVELOPE_SKEW_MS in the future is `future`;
    one older than min (ttl + SB_ENVELOPE_SKEW_MS, SB_ENVELOPE_MAX_AGE_MS)
    (ttl 0: SB_ENVELOPE_MAX_AGE_MS) is `stale`.  The header's timeout,
    which any broker on the path may rewrite, plays no part: a broker can
    make a request expire sooner, never later.

    Pure functions over bytes: no allocation, no clock (the caller passes
    `now`), so they are fuzzed as they are (fuzz/fuzz_envelope.c).
*/
#ifndef SB_ENVELOPE_H_INCLUDED
#define SB_ENVELOPE_H_INCLUDED

#include "wire/wire.h"

#define SB_ENVELOPE_FORMAT 2
#define SB_ENVELOPE_HEAD 14             /* bytes before the context */
#define SB_ENVELOPE_CONTEXT_MAX 255
#define SB_ENVELOPE_SKEW_MS 30000       /* clocks may differ by this much, either way */
#define SB_ENVELOPE_MAX_AGE_MS 60000    /* no body is accepted older than this */

typedef struct {
    uint64_t sent_ms;
    uint32_t ttl_ms;
    const uint8_t *context;             /* borrowed from the parsed bytes */
    size_t context_size;
    const uint8_t *body;                /* borrowed from the parsed bytes */
    size_t body_size;
} sb_envelope_t;

typedef enum {
    SB_ENVELOPE_OK = 0,
    SB_ENVELOPE_TRUNCATED,              /* shorter than its head and context */
    SB_ENVELOPE_UNSUPPORTED,            /* another format byte */
    SB_ENVELOPE_STALE,                  /* older than its acceptable age */
    SB_ENVELOPE_FUTURE                  /* sealed too far ahead of our clock */
} sb_envelope_status_t;

/*  Writes the head and the context (SB_ENVELOPE_HEAD + context_size
    bytes, context_size <= SB_ENVELOPE_CONTEXT_MAX) into out; the body
    goes right after.  */
void sb_envelope_write (uint8_t *out, uint64_t sent_ms, uint32_t ttl_ms,
                        const void *context, size_t context_size);

/*  Reads an envelope from `size` bytes; out borrows from data.  OK,
    TRUNCATED or UNSUPPORTED.  */
sb_envelope_status_t sb_envelope_parse (const uint8_t *data, size_t size,
                                        sb_envelope_t *out) SB_WARN_UNUSED;

/*  The time rules above at `now_ms`: OK, STALE or FUTURE.  */
sb_envelope_status_t sb_envelope_check (const sb_envelope_t *envelope,
                                        uint64_t now_ms) SB_WARN_UNUSED;

/*  Unix ms after which the body is stale (the end of its acceptance).  */
uint64_t sb_envelope_expires (const sb_envelope_t *envelope);

#endif
