/*  trace.h — calls under a given trace id, shared by clients and actors.

    The public side (sb_trace_parse, sb_trace_format, the *_traced calls)
    is in switchboard.h; the trace context it rests on is the peer's
    (sb_peer_set_trace in peer.h).
*/
#ifndef SB_TRACE_H_INCLUDED
#define SB_TRACE_H_INCLUDED

#include "peer.h"

/*  sb_peer_call under the trace id `trace` (32 hex digits), or under the
    peer's current trace context when trace is NULL.  The context is put
    back as it was before returning.  -1 with err (bad_request) for a
    trace that is not 32 hex digits or is all zero; else as sb_peer_call. */
int sb__peer_call_traced (sb_peer_t *peer, const char *trace,
                          const char *service, const char *method,
                          const void *body, size_t size, int timeout_ms,
                          sb_reply_fn *callback, sb_peer_raw_fn *raw, void *arg,
                          uint64_t *id_p, sb_error_t *err);

#endif
