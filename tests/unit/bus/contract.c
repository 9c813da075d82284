/*  runtime_contract.t — the peer's cache of contracts (bus/contracts.c),
    against a fake broker that the test drives: the first call to a
    service asks sys.describe and waits for the answer; then a call to a
    method the answer declares idempotent carries the flag and one made
    without a timeout gets the method's timeout_ms, with nobody telling
    the caller; later calls use the cache without asking; a stale entry is
    used and asked again in the background; a service no broker knows is
    asked once and its calls go out as they are.  Every wait is bounded.
*/
#include "bus/peer.h"
#include "fake_broker.h"

#include <czmq.h>

static int
s_pump (void *peer, int timeout_ms)
{
    return sb_peer_wait ((sb_peer_t *) peer, timeout_ms);
}

static int s_answers;

static void
s_answer (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    s_answers++;
}

/*  The service named in a sys.describe request's body ("" if none).  */
static void
s_described (const sb_header_t *h, zmsg_t *msg, char *out, size_t size)
{
    out [0] = 0;
    const void *data = h->body;
    size_t length = h->body_size;
    zframe_t *frame = zmsg_last (msg);
    if (!(h->present & SB_H_BODY) && zmsg_size (msg) == 3) {
        data = zframe_data (frame);
        length = zframe_size (frame);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t offset = 0;
    if (data && msgpack_unpack_next (&u, data, length, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 1
    &&  u.data.via.map.ptr [0].val.type == MSGPACK_OBJECT_STR)
        snprintf (out, size, "%.*s", (int) u.data.via.map.ptr [0].val.via.str.size,
                  u.data.via.map.ptr [0].val.via.str.ptr);
    msgpack_unpacked_destroy (&u);
}

/*  Answers a sys.describe: methods `get` (idempotent, 1234 ms) and
    `put` (neither).  */
static void
s_answer_describe (zsock_t *router, zmsg_t *msg, const sb_header_t *h)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "service", 7);
    msgpack_pack_str_with_body (&pk, "svc", 3);
    msgpack_pack_str_with_body (&pk, "methods", 7);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_map (&pk, 3);
    msgpack_pack_str_with_body (&pk, "name", 4);
    msgpack_pack_str_with_body (&pk, "get", 3);
    msgpack_pack_str_with_body (&pk, "flags", 5);
    msgpack_pack_uint32 (&pk, 1);
    msgpack_pack_str_with_body (&pk, "timeout_ms", 10);
    msgpack_pack_uint32 (&pk, 1234);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "name", 4);
    msgpack_pack_str_with_body (&pk, "put", 3);
    msgpack_pack_str_with_body (&pk, "flags", 5);
    msgpack_pack_uint32 (&pk, 0);
    sb_header_t out;
    sb_header_init (&out, SB_CMD_REPLY);
    out.request_id = h->request_id;
    out.present |= SB_H_REQUEST_ID;
    fb_send (router, msg, &out, buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
}

static bool
s_is (const sb_header_t *h, const char *service, const char *method)
{
    return h->command == SB_CMD_REQUEST && streq (h->service, service) && streq (h->method, method);
}

int
main (void)
{
    fb_answer_describe = false;
    zsock_t *router = zsock_new_router ("tcp://127.0.0.1:*");
    sb_error_t err = { 0 };
    char *endpoint = zsock_last_endpoint (router);
    sb_peer_t *peer = sb_peer_new (endpoint, "contract-test", &err);
    zstr_free (&endpoint);
    tap_ok (peer && fb_welcome (router, s_pump, peer, "fake", 1000) == 0,
            "a peer welcomed by a fake broker");
    for (int i = 0; i < 100 && sb_peer_links_alive (peer) < 1; i++)
        sb_peer_wait (peer, 10);

    /*  First call: the lookup goes first, the call waits for its answer. */
    uint64_t id = 0;
    tap_ok (sb_peer_call (peer, "svc", "get", NULL, 0, 0, s_answer, NULL, NULL, &id, &err) == 0,
            "a call to svc.get, no timeout, nothing declared");
    zmsg_t *msg = NULL;
    sb_header_t h;
    char described [SB_NAME_MAX + 1] = "";
    int rc = fb_recv (router, s_pump, peer, &msg, &h);
    if (rc == 0)
        s_described (&h, msg, described, sizeof described);
    tap_ok (rc == 0 && s_is (&h, "sys", "describe") && streq (described, "svc"),
            "the broker first gets sys.describe {\"service\": \"svc\"} (%s)", described);
    tap_ok (rc == 0 && (h.flags & SB_F_IDEMPOTENT), "the lookup is idempotent (it only reads)");
    tap_is_int (sb_peer_pending (peer), 1, "the lookup is not counted as pending");
    /*  Nothing else comes while the lookup is unanswered.  */
    zmsg_t *early = NULL;
    sb_header_t eh;
    int64_t until = zclock_mono () + 300;
    bool quiet = true;
    while (zclock_mono () < until && quiet) {
        sb_peer_wait (peer, 20);
        zmq_pollitem_t item = { zsock_resolve (router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 0) == 1 && fb_recv (router, s_pump, peer, &early, &eh) == 0) {
            quiet = eh.command != SB_CMD_REQUEST;
            zmsg_destroy (&early);
        }
    }
    tap_ok (quiet, "the call waits for the contract");
    if (msg) {
        s_answer_describe (router, msg, &h);
        zmsg_destroy (&msg);
    }
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    tap_ok (rc == 0 && s_is (&h, "svc", "get") && h.request_id == id,
            "then svc.get goes out");
    tap_ok (rc == 0 && (h.flags & SB_F_IDEMPOTENT),
            "with the idempotent flag the service declared (flags %u)", rc == 0 ? h.flags : 0);
    /*  Counted from the call, not from the answer: the 300 ms it waited
        are gone.  */
    tap_ok (rc == 0 && h.timeout_ms > 400 && h.timeout_ms <= 934,
            "and the method's timeout, 1234 ms from the call (%u left)", rc == 0 ? h.timeout_ms : 0);
    zmsg_destroy (&msg);

    /*  Cached: no second lookup; put is not idempotent; a given timeout
        stands.  */
    tap_ok (sb_peer_call (peer, "svc", "put", NULL, 0, 3000, s_answer, NULL, NULL, &id, &err) == 0,
            "a call to svc.put with a timeout of 3000 ms");
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    tap_ok (rc == 0 && s_is (&h, "svc", "put") && !(h.flags & SB_F_IDEMPOTENT)
            && h.timeout_ms > 2500 && h.timeout_ms <= 3000,
            "goes out at once, not idempotent, with its own timeout (%u)", rc == 0 ? h.timeout_ms : 0);
    zmsg_destroy (&msg);
    tap_is_int (sb_peer_contract_lookups (peer), 1, "one lookup for two calls");

    /*  An override still adds the flag.  */
    sb_peer_set_idempotent (peer, "svc", "put");
    sb_peer_call (peer, "svc", "put", NULL, 0, 3000, s_answer, NULL, NULL, &id, &err);
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    tap_ok (rc == 0 && s_is (&h, "svc", "put") && (h.flags & SB_F_IDEMPOTENT),
            "sb_peer_set_idempotent overrides the contract");
    zmsg_destroy (&msg);

    /*  Stale: used at once, asked again in the background.  */
    sb_peer_set_contract_ttl (peer, 50);
    zclock_sleep (120);
    sb_peer_call (peer, "svc", "get", NULL, 0, 0, s_answer, NULL, NULL, &id, &err);
    bool asked = false, flagged = false;
    for (int i = 0; i < 2 && fb_recv (router, s_pump, peer, &msg, &h) == 0; i++) {
        if (s_is (&h, "sys", "describe")) {
            asked = true;
            s_answer_describe (router, msg, &h);
        }
        if (s_is (&h, "svc", "get"))
            flagged = (h.flags & SB_F_IDEMPOTENT) != 0;
        zmsg_destroy (&msg);
    }
    tap_ok (flagged, "a stale contract is still applied to the call");
    tap_ok (asked && sb_peer_contract_lookups (peer) == 2, "and asked for again in the background");

    /*  A service no broker knows: asked once, the call goes out as is.  */
    sb_peer_call (peer, "ghost", "x", NULL, 0, 2000, s_answer, NULL, NULL, &id, &err);
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    if (rc == 0 && s_is (&h, "sys", "describe")) {
        sb_header_t out;
        sb_header_init (&out, SB_CMD_ERROR);
        out.request_id = h.request_id;
        out.present |= SB_H_REQUEST_ID;
        out.code = SB_E_NOT_FOUND;
        out.flags = SB_F_UNROUTED;
        fb_send (router, msg, &out, NULL, 0);
    }
    zmsg_destroy (&msg);
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    tap_ok (rc == 0 && s_is (&h, "ghost", "x") && !(h.flags & SB_F_IDEMPOTENT),
            "a service the broker does not know: its call goes out after the not_found, unflagged");
    zmsg_destroy (&msg);
    sb_peer_call (peer, "ghost", "x", NULL, 0, 2000, s_answer, NULL, NULL, &id, &err);
    rc = fb_recv (router, s_pump, peer, &msg, &h);
    tap_ok (rc == 0 && s_is (&h, "ghost", "x"), "and the next one does not wait again");
    zmsg_destroy (&msg);

    sb_peer_destroy (&peer);
    zsock_destroy (&router);
    return tap_done ();
}
