/*  fake_broker.h — a fake broker for the runtime tests (runtime_client.t,
    runtime_failover.t): a ROUTER socket the test drives with the wire
    codec, to see exactly what a client or peer sends and to answer what a
    real broker would never send.  The code under test runs while the fake
    broker waits, through a pump the test passes (sb_client_dispatch or
    sb_peer_wait behind a one-line wrapper).  Also the integer bodies these
    tests send and check.  Every wait is bounded.
*/
#ifndef SB_FAKE_BROKER_H_INCLUDED
#define SB_FAKE_BROKER_H_INCLUDED

#include "wire/wire.h"
#include "tap.h"

#include <czmq.h>

#define FB_WAIT 5000            /* ms: generous, for a loaded machine */

/*  Lets the code under test run for up to `timeout_ms`.  */
typedef int (fb_pump_fn) (void *arg, int timeout_ms);

static inline void fb_send (zsock_t *router, zmsg_t *like, const sb_header_t *h,
                            const void *body, size_t size);

/*  With this set (the default), fb_recv answers the runtime's contract
    lookups (sys.describe) itself, as a broker whose workers declare
    nothing (an old READY): {"methods": []}.  Tests of the contract cache
    clear it to see and answer them.  */
static bool fb_answer_describe = true;

/*  Waits for one message on the router while pumping.  Returns 0 with the
    message (routing id, header, body frames) and its decoded header, or
    -1 after FB_WAIT ms.  Messages without a valid header are dropped, and
    sys.describe is answered (fb_answer_describe).  */
static inline int
fb_recv (zsock_t *router, fb_pump_fn *pump, void *arg, zmsg_t **msg_p, sb_header_t *h)
{
    int64_t end = zclock_mono () + FB_WAIT;
    while (zclock_mono () < end) {
        pump (arg, 5);
        zmq_pollitem_t item = { zsock_resolve (router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 5) == 1) {
            zmsg_t *msg = zmsg_recv (router);
            zmsg_first (msg);
            zframe_t *header = zmsg_next (msg);
            if (header && sb_header_decode (h, zframe_data (header), zframe_size (header)) == SB_WIRE_OK
            &&  fb_answer_describe && h->command == SB_CMD_REQUEST && streq (h->service, "sys")
            &&  streq (h->method, "describe")) {
                static const uint8_t none [] = { 0x81, 0xa7, 'm', 'e', 't', 'h', 'o', 'd', 's', 0x90 };
                sb_header_t out;
                sb_header_init (&out, SB_CMD_REPLY);
                out.request_id = h->request_id;
                out.present |= SB_H_REQUEST_ID;
                fb_send (router, msg, &out, none, sizeof none);
                zmsg_destroy (&msg);
                continue;
            }
            if (header && sb_header_decode (h, zframe_data (header), zframe_size (header)) == SB_WIRE_OK) {
                *msg_p = msg;
                return 0;
            }
            zmsg_destroy (&msg);
        }
    }
    return -1;
}

/*  Sends header (+ body) to the peer that sent `like` (its routing id).  */
static inline void
fb_send (zsock_t *router, zmsg_t *like, const sb_header_t *h, const void *body, size_t size)
{
    uint8_t buffer [SB_HEADER_MAX];
    size_t hsize = sb_header_encode (h, buffer);
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (zmsg_first (like)) });
    zmsg_addmem (msg, buffer, hsize);
    if (body)
        zmsg_addmem (msg, body, size);
    zmsg_send (&msg, router);
}

/*  Waits for HELLO and answers WELCOME with `name` and `heartbeat_ms`;
    whatever comes before HELLO is dropped.  0 when done, -1 on timeout.  */
static inline int
fb_welcome (zsock_t *router, fb_pump_fn *pump, void *arg, const char *name, uint32_t heartbeat_ms)
{
    zmsg_t *msg = NULL;
    sb_header_t h;
    int64_t end = zclock_mono () + FB_WAIT;
    while (zclock_mono () < end) {
        if (fb_recv (router, pump, arg, &msg, &h))
            return -1;
        if (h.command == SB_CMD_HELLO) {
            sb_header_t out;
            sb_header_init (&out, SB_CMD_WELCOME);
            sb_header_set_name (&out, name);
            out.heartbeat_ms = heartbeat_ms;
            fb_send (router, msg, &out, NULL, 0);
            zmsg_destroy (&msg);
            return 0;
        }
        zmsg_destroy (&msg);
    }
    return -1;
}

/*  --------------------------------------------------------------------
    Integer bodies.  */

/*  The integer in a body, -1 when it is none.  */
static inline int64_t
fb_int (const msgpack_object *obj)
{
    if (obj && obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t) obj->via.u64;
    if (obj && obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return obj->via.i64;
    return -1;
}

/*  Packs `value` into `buf` (at least 9 bytes); returns the size.  */
static inline size_t
fb_pack_int (char *buf, int64_t value)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_int64 (&pk, value);
    size_t size = sb.size;
    memcpy (buf, sb.data, size);
    msgpack_sbuffer_destroy (&sb);
    return size;
}

#endif
