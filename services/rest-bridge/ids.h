/*  ids.h — request ids and trace ids of the REST bridge's requests
    (ids.c).  */
#ifndef SB_REST_IDS_H_INCLUDED
#define SB_REST_IDS_H_INCLUDED

#include "bridge.h"

/*  Sets req's request_id (the answer's X-Request-Id) and trace (its bus
    call's trace id) from its traceparent and X-Request-Id headers.  An
    invalid header costs nothing but a count in the metrics: the request
    goes on with a generated id.  Called on an HTTP thread, once, when
    the request head is in.  */
void sb_rest_req_take_ids (sb_rest_req_t *req);

#endif
