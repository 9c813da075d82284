/*  fuzz_header.c — libFuzzer target for the header decoder and the
    MessagePack pre-scan (runtime/wire.c), the first code to touch every
    frame a broker receives.

    Promises checked on every input (a broken one aborts):
    - neither sb_header_decode nor sb_wire_check crashes or reads past the
      input, at any depth limit;
    - a header that decodes is one well-formed MessagePack object (the
      pre-scan accepts it, one level deeper for the map itself);
    - re-encoding a decoded header and decoding that gives the same
      fields (the codec is a fixed point after one round), the inline
      body included: it lies inside the input, and comes back byte for
      byte from a frame built with sb_header_encode_inline.
*/
#include "wire/wire.h"

#include <stdlib.h>
#include <string.h>

static void
s_require (int condition)
{
    if (!condition)
        abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    for (int depth = 0; depth <= SB_DEPTH_MAX + 1; depth += 11)
        (void) !sb_wire_check (data, size, depth);

    sb_header_t h, again;
    sb_wire_reason_t reason = sb_header_decode (&h, data, size);
    s_require (reason < SB_WIRE_REASON_MAX);
    s_require (strcmp (sb_wire_reason_name (reason), "unknown") != 0);
    if (reason != SB_WIRE_OK)
        return 0;
    s_require (sb_wire_check (data, size, SB_DEPTH_MAX + 1) == 0);
    s_require (h.version == SB_PROTOCOL_VERSION);
    s_require (h.command >= 1 && h.command <= SB_CMD_MAX);

    bool with_body = (h.present & SB_H_BODY) != 0;
    s_require (with_body == (h.body != NULL));
    if (with_body)
        s_require (h.body_size >= 1 && h.body_size <= SB_INLINE_MAX
                   && h.body >= data && h.body + h.body_size <= data + size);
    else
        s_require (size <= SB_HEADER_MAX && h.body_size == 0);

    static uint8_t buffer [SB_FRAME_HEADER_MAX];
    size_t encoded = with_body ? sb_header_encode_inline (&h, h.body_size, buffer)
                               : sb_header_encode (&h, buffer);
    s_require (encoded > 0 && encoded <= SB_HEADER_MAX);
    if (with_body) {
        memcpy (buffer + encoded, h.body, h.body_size);
        encoded += h.body_size;
    }
    s_require (sb_header_decode (&again, buffer, encoded) == SB_WIRE_OK);
    s_require ((again.present & SB_H_BODY) == (h.present & SB_H_BODY));
    s_require (again.body_size == h.body_size
               && (!with_body || memcmp (again.body, h.body, h.body_size) == 0));
    s_require (again.command == h.command && again.request_id == h.request_id);
    s_require (again.timeout_ms == h.timeout_ms && again.flags == h.flags);
    s_require (again.code == h.code && again.capacity == h.capacity);
    s_require (again.heartbeat_ms == h.heartbeat_ms && again.hops == h.hops);
    s_require (again.instance == h.instance);
    s_require (!strcmp (again.service, h.service) && !strcmp (again.method, h.method));
    s_require (!strcmp (again.group, h.group) && !strcmp (again.name, h.name));
    s_require (!strcmp (again.topic, h.topic) && !strcmp (again.text, h.text));
    s_require ((again.present & SB_H_TRACE) == (h.present & SB_H_TRACE));
    s_require (memcmp (again.trace, h.trace, sizeof h.trace) == 0);
    s_require (memcmp (again.span, h.span, sizeof h.span) == 0);
    s_require (again.key_id_size == h.key_id_size
               && memcmp (again.key_id, h.key_id, h.key_id_size) == 0);
    return 0;
}
