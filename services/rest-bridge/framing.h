/*  framing.h — how the REST bridge delimits request bodies (framing.c):
    the RFC 9112 checks made on every request head, and the answer written
    straight to the socket when a body must be cut off while it arrives.  */
#ifndef SB_REST_FRAMING_H_INCLUDED
#define SB_REST_FRAMING_H_INCLUDED

#include <microhttpd.h>
#include <stddef.h>

/*  Checks a request head's Content-Length and Transfer-Encoding fields
    (version: the request's HTTP version).  Returns 0 when its body can be
    delimited without doubt; else the status to answer, 400 (ambiguous
    framing) or 501 (a transfer coding other than chunked), with the
    reason in why (size bytes).  */
int sb_rest_framing_check (struct MHD_Connection *connection, const char *version,
                           char *why, size_t size);

/*  Writes a whole answer to socket fd: "HTTP/1.1 status reason", Date,
    Connection: close, the header lines in headers (each ending in CRLF),
    Content-Length and body; then shuts down the socket's sending side.
    One non-blocking send: for a socket with nothing else being sent on
    it, and a small answer.  */
void sb_rest_framing_answer (int fd, int status, const char *reason, const char *headers,
                             const char *body, size_t size);

#endif
