/*  ids.c — the REST bridge's request ids and trace ids (see ids.h).

    The bus call carries a 16-byte trace id that every service on its way
    sees and passes on.  It is a W3C traceparent's trace-id when the
    client sent a valid one; else the client's X-Request-Id itself when
    that is 32 hex digits, or its BLAKE2b-128 hash (`b2sum -l 128`) when
    it is another valid id; else a generated one, which is also the
    answer's X-Request-Id.
*/
#include "ids.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static bool
s_valid_request_id (const char *id)
{
    size_t length = strlen (id);
    if (length == 0 || length > SB_REST_REQUEST_ID_MAX)
        return false;
    return strspn (id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == length;
}

/*  W3C Trace Context: "VV-TRACEID-PARENTID-FF", 2, 32, 16 and 2
    lowercase hex digits.  Version ff is invalid; version 00 is exactly
    these 55 characters, a later one may add fields after another '-'.
    Neither id may be all zero.  Takes the trace-id into trace.  */
static int
s_parse_traceparent (const char *text, uint8_t trace [SB_TRACE_SIZE])
{
    static const char hex [] = "0123456789abcdef";
    size_t length = strnlen (text, 513);
    if (length < 55 || length > 512
    ||  text [2] != '-' || text [35] != '-' || text [52] != '-'
    ||  strspn (text, hex) != 2 || strspn (text + 3, hex) != 32
    ||  strspn (text + 36, hex) != 16 || strspn (text + 53, hex) != 2
    ||  !strncmp (text, "ff", 2)
    ||  (!strncmp (text, "00", 2) ? length != 55 : length > 55 && text [55] != '-')
    ||  strspn (text + 36, "0") >= 16)
        return -1;
    char trace_id [SB_TRACE_HEX_SIZE];
    memcpy (trace_id, text + 3, 32);
    trace_id [32] = 0;
    return sb_trace_parse (trace_id, trace);     /* refuses all zero */
}

/*  Sets the answer's X-Request-Id and the call's trace id (see the file
    comment).  An invalid header costs nothing but a count: the request
    goes on with a generated id.  */
void
sb_rest_req_take_ids (sb_rest_req_t *req)
{
    sb_rest_bridge_t *bridge = req->bridge;
    uint8_t trace [SB_TRACE_SIZE];
    bool traced = false;
    const char *parent = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND, "traceparent");
    if (parent) {
        traced = s_parse_traceparent (parent, trace) == 0;
        if (!traced)
            sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_BAD_TRACEPARENT);
    }
    const char *given = MHD_lookup_connection_value (req->connection, MHD_HEADER_KIND, "X-Request-Id");
    if (given && s_valid_request_id (given)) {
        snprintf (req->request_id, sizeof req->request_id, "%s", given);
        if (!traced && sb_trace_parse (given, trace) != 0)
            crypto_generichash (trace, sizeof trace, (const unsigned char *) given, strlen (given),
                                NULL, 0);
    }
    else {
        if (given)
            sb_rest_metrics_error (bridge->metrics, SB_REST_ERR_BAD_REQUEST_ID);
        if (!traced) {
            /*  Unique, not secret: a random prefix drawn at start and a
                counter, so that a request costs no getrandom() call.  */
            uint64_t count = __atomic_add_fetch (&bridge->request_count, 1, __ATOMIC_RELAXED);
            for (int i = 0; i < 8; i++) {
                trace [i] = (uint8_t) (bridge->request_prefix >> (56 - 8 * i));
                trace [8 + i] = (uint8_t) (count >> (56 - 8 * i));
            }
        }
        sb_trace_format (trace, req->request_id);
    }
    sb_trace_format (trace, req->trace);
}
