/*  http.h — the HTTP half of the REST bridge (http.c), as the actor half
    (bridge.c) uses it: start and stop the HTTP daemon, and answer or
    release a request handed over through the queue (bridge.h).  */
#ifndef SB_REST_HTTP_H_INCLUDED
#define SB_REST_HTTP_H_INCLUDED

#include "bridge.h"

/*  Starts libmicrohttpd on self->listen with self->threads threads.  0,
    or -1 with err.  */
int sb_rest_http_start (sb_rest_bridge_t *self, sb_error_t *err);
/*  Stops accepting, waits up to drain_ms for connections to finish, stops. */
void sb_rest_http_stop (sb_rest_bridge_t *self);
/*  Drops one reference; the last frees the request.  */
void sb_rest_req_unref (sb_rest_req_t *req);
/*  Fills the answer with a JSON error body.  */
void sb_rest_req_fail (sb_rest_req_t *req, sb_code_t code, const char *message);

#endif
