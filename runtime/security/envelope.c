/*  envelope.c — the head of a sealed body: format, time sealed, ttl and
    context.  See envelope.h for the layout and the time rules.

    Every length is checked before it is read; nothing is allocated.  The
    time arithmetic saturates, so a made-up `sent` near UINT64_MAX (which
    only a holder of the keys could seal) cannot wrap into acceptance.
*/
#include "internal.h"

#include <string.h>

static void
s_put_be (uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p [i] = (uint8_t) v;
        v >>= 8;
    }
}

static uint64_t
s_get_be (const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | p [i];
    return v;
}

void
sb_envelope_write (uint8_t *out, uint64_t sent_ms, uint32_t ttl_ms,
                   const void *context, size_t context_size)
{
    out [0] = SB_ENVELOPE_FORMAT;
    s_put_be (out + 1, sent_ms, 8);
    s_put_be (out + 9, ttl_ms, 4);
    out [13] = (uint8_t) context_size;
    if (context_size)
        memcpy (out + SB_ENVELOPE_HEAD, context, context_size);
}

sb_envelope_status_t
sb_envelope_parse (const uint8_t *data, size_t size, sb_envelope_t *out)
{
    memset (out, 0, sizeof *out);
    if (!data || size < 1)
        return SB_ENVELOPE_TRUNCATED;
    if (data [0] != SB_ENVELOPE_FORMAT)
        return SB_ENVELOPE_UNSUPPORTED;
    if (size < SB_ENVELOPE_HEAD || size - SB_ENVELOPE_HEAD < data [13])
        return SB_ENVELOPE_TRUNCATED;
    out->sent_ms = s_get_be (data + 1, 8);
    out->ttl_ms = (uint32_t) s_get_be (data + 9, 4);
    out->context_size = data [13];
    out->context = data + SB_ENVELOPE_HEAD;
    out->body = out->context + out->context_size;
    out->body_size = size - SB_ENVELOPE_HEAD - out->context_size;
    return SB_ENVELOPE_OK;
}

uint64_t
sb_envelope_expires (const sb_envelope_t *envelope)
{
    uint64_t life = SB_ENVELOPE_MAX_AGE_MS;
    if (envelope->ttl_ms && (uint64_t) envelope->ttl_ms + SB_ENVELOPE_SKEW_MS < life)
        life = (uint64_t) envelope->ttl_ms + SB_ENVELOPE_SKEW_MS;
    return envelope->sent_ms > UINT64_MAX - life ? UINT64_MAX : envelope->sent_ms + life;
}

sb_envelope_status_t
sb_envelope_check (const sb_envelope_t *envelope, uint64_t now_ms)
{
    uint64_t horizon = now_ms > UINT64_MAX - SB_ENVELOPE_SKEW_MS ? UINT64_MAX
                                                                : now_ms + SB_ENVELOPE_SKEW_MS;
    if (envelope->sent_ms > horizon)
        return SB_ENVELOPE_FUTURE;
    if (now_ms > sb_envelope_expires (envelope))
        return SB_ENVELOPE_STALE;
    return SB_ENVELOPE_OK;
}
