/*  trace.c — trace ids in their text form.

    A trace id is the 16-byte trace-id of W3C Trace Context, shown as 32
    lowercase hex digits.  Every REQUEST and PUBLISH carries one
    (docs/protocol.md, section 3.2).  Which one a call carries is decided
    by the peer's trace context (bus/peer.h): a handler's calls inherit
    its request's, and so on down the chain.
*/
#include "internal.h"

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
