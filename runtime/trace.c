/*  trace.c — trace ids: their text form, and calls under a given one.

    A trace id is the 16-byte trace-id of W3C Trace Context, shown as 32
    lowercase hex digits.  Every REQUEST and PUBLISH carries one
    (docs/protocol.md, section 3.2).  Which one a call carries is decided
    by the peer's trace context (peer.h): a handler's calls inherit its
    request's, and so on down the chain.  A caller that holds a trace id
    of its own (the REST bridge with a client's X-Request-Id, `sb call
    --trace`) sets the context for the one call and puts it back.
*/
#include "trace.h"

#include <errno.h>
#include <string.h>

static int
s_hex_digit (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
sb_trace_parse (const char *hex, uint8_t trace [SB_TRACE_SIZE])
{
    uint8_t out [SB_TRACE_SIZE];
    uint8_t any = 0;
    if (!hex || !trace || strnlen (hex, 2 * SB_TRACE_SIZE + 1) != 2 * SB_TRACE_SIZE) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < SB_TRACE_SIZE; i++) {
        int high = s_hex_digit (hex [2 * i]), low = s_hex_digit (hex [2 * i + 1]);
        if (high < 0 || low < 0) {
            errno = EINVAL;
            return -1;
        }
        out [i] = (uint8_t) (high << 4 | low);
        any |= out [i];
    }
    if (!any) {                     /* W3C: all zero is not a trace id */
        errno = EINVAL;
        return -1;
    }
    memcpy (trace, out, sizeof out);
    return 0;
}

void
sb_trace_format (const uint8_t trace [SB_TRACE_SIZE], char hex [SB_TRACE_HEX_SIZE])
{
    static const char digits [] = "0123456789abcdef";
    for (size_t i = 0; i < SB_TRACE_SIZE; i++) {
        hex [2 * i] = digits [trace [i] >> 4];
        hex [2 * i + 1] = digits [trace [i] & 15];
    }
    hex [2 * SB_TRACE_SIZE] = 0;
}

int
sb__peer_call_traced (sb_peer_t *peer, const char *trace,
                      const char *service, const char *method,
                      const void *body, size_t size, int timeout_ms,
                      sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                      uint64_t *id_p, sb_error_t *err)
{
    uint8_t given [SB_TRACE_SIZE], outer [SB_TRACE_SIZE];
    if (!trace)
        return sb_peer_call (peer, service, method, body, size, timeout_ms,
                             callback, raw, arg, id_p, err);
    if (sb_trace_parse (trace, given))
        return sb_error_set (err, SB_E_BAD_REQUEST,
                             "bad trace id '%.40s': want 32 hex digits, not all zero", trace);
    bool had_trace = sb_peer_trace (peer, outer);
    sb_peer_set_trace (peer, given);
    int rc = sb_peer_call (peer, service, method, body, size, timeout_ms,
                           callback, raw, arg, id_p, err);
    sb_peer_set_trace (peer, had_trace ? outer : NULL);
    return rc;
}
