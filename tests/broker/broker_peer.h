/*  broker_peer.h — a raw protocol peer for the broker tests.

    Speaks docs/protocol.md directly through a DEALER socket with the
    header codec of runtime/wire/wire.h, so the tests check the broker against
    the spec rather than against the runtime library.  Every receive has a
    timeout; HEARTBEAT messages are skipped unless asked for.
*/
#ifndef SB_BROKER_PEER_H_INCLUDED
#define SB_BROKER_PEER_H_INCLUDED

#include "broker/broker.h"
#include "wire/wire.h"
#include "tap.h"

#include <czmq.h>

#define BP_WAIT 5000            /* ms: generous, for a loaded machine */

typedef struct {
    sb_header_t h;
    size_t size;                /* body size; 0 and !has_body when absent */
    bool has_body;
    bool inline_body;           /* it came inside the header frame */
    char body [65536];
} bp_msg_t;

static inline sb_broker_t *
bp_broker (int heartbeat_ms, size_t queue_max)
{
    sb_broker_config_t config = { 0 };
    config.bind = "tcp://127.0.0.1:*";
    config.name = "test-broker";
    config.heartbeat_ms = heartbeat_ms;
    config.queue_max = queue_max;
    sb_error_t err;
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker) {
        printf ("Bail out! broker did not start: %s\n", err.text);
        exit (1);
    }
    return broker;
}

static inline zsock_t *
bp_connect (sb_broker_t *broker)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zsock_set_linger (sock, 0);
    zsock_set_rcvtimeo (sock, BP_WAIT);
    if (zsock_connect (sock, "%s", sb_broker_endpoint (broker))) {
        printf ("Bail out! cannot connect\n");
        exit (1);
    }
    return sock;
}

/*  Sends a header and an optional body as two frames (body NULL: one).  */
static inline int
bp_send_frames (zsock_t *sock, const sb_header_t *h, const void *body, size_t size)
{
    uint8_t buf [SB_HEADER_MAX];
    size_t n = sb_header_encode (h, buf);
    void *s = zsock_resolve (sock);
    if (zmq_send (s, buf, n, body ? ZMQ_SNDMORE : 0) < 0)
        return -1;
    if (body && zmq_send (s, body, size, 0) < 0)
        return -1;
    return 0;
}

/*  Sends a header and an optional body as a sender should: a body of
    1..SB_INLINE_MAX bytes inside the header frame, a larger one as a
    second frame.  */
static inline int
bp_send (zsock_t *sock, const sb_header_t *h, const void *body, size_t size)
{
    if (!body || size == 0 || size > SB_INLINE_MAX)
        return bp_send_frames (sock, h, body, size);
    static uint8_t frame [SB_FRAME_HEADER_MAX];
    size_t n = sb_header_encode_inline (h, size, frame);
    memcpy (frame + n, body, size);
    return zmq_send (zsock_resolve (sock), frame, n + size, 0) < 0 ? -1 : 0;
}

/*  Sends raw frames: count frames of given data and sizes.  */
static inline void
bp_send_raw (zsock_t *sock, int count, const void **data, const size_t *sizes)
{
    void *s = zsock_resolve (sock);
    for (int i = 0; i < count; i++)
        zmq_send (s, data [i], sizes [i], i + 1 < count ? ZMQ_SNDMORE : 0);
}

/*  Sockets kept alive while a test waits: each gets a HEARTBEAT every
    50 ms from inside bp_recv_any, as a real peer's runtime would send.  */
static zsock_t *bp_kept [8];
static int64_t bp_kept_at;

static inline void
bp_keep (zsock_t *sock, bool keep)
{
    for (int i = 0; i < 8; i++)
        if (keep ? !bp_kept [i] : bp_kept [i] == sock) {
            bp_kept [i] = keep ? sock : NULL;
            return;
        }
}

static inline void bp_simple (zsock_t *sock, sb_cmd_t command);

static inline void
bp_keep_beat (void)
{
    if (zclock_mono () - bp_kept_at < 50)
        return;
    bp_kept_at = zclock_mono ();
    for (int i = 0; i < 8; i++)
        if (bp_kept [i])
            bp_simple (bp_kept [i], SB_CMD_HEARTBEAT);
}

/*  Receives the next message other than HEARTBEAT within timeout_ms.
    0, or -1 on timeout or an undecodable message.  */
static inline int
bp_recv_any (zsock_t *sock, bp_msg_t *m, int timeout_ms, bool skip_heartbeats)
{
    void *s = zsock_resolve (sock);
    int64_t end = zclock_mono () + timeout_ms;
    for (;;) {
        int64_t left = end - zclock_mono ();
        if (left < 0)
            return -1;
        bp_keep_beat ();
        zmq_pollitem_t item = { s, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, left < 50 ? (long) left : 50) <= 0)
            continue;
        zmsg_t *msg = zmsg_recv (sock);
        if (!msg)
            return -1;
        zframe_t *header = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        int rc = sb_header_decode (&m->h, zframe_data (header), zframe_size (header)) == SB_WIRE_OK
                 ? 0 : -1;
        m->inline_body = rc == 0 && (m->h.present & SB_H_BODY);
        m->has_body = body != NULL || m->inline_body;
        m->size = 0;
        if (m->inline_body) {
            if (body)
                rc = -1;            /* both forms at once: not a valid message */
            m->size = m->h.body_size;
            memcpy (m->body, m->h.body, m->size);
        }
        else
        if (body && zframe_size (body) <= sizeof m->body) {
            m->size = zframe_size (body);
            memcpy (m->body, zframe_data (body), m->size);
        }
        m->h.body = NULL;           /* it pointed into the frame */
        zmsg_destroy (&msg);
        if (rc)
            return -1;
        if (skip_heartbeats && m->h.command == SB_CMD_HEARTBEAT)
            continue;
        return 0;
    }
}

static inline int
bp_recv (zsock_t *sock, bp_msg_t *m, int timeout_ms)
{
    return bp_recv_any (sock, m, timeout_ms, true);
}

/*  True if nothing but heartbeats arrives within ms.  */
static inline bool
bp_silent (zsock_t *sock, int ms)
{
    bp_msg_t m;
    return bp_recv (sock, &m, ms) == -1;
}

static inline int
bp_hello (zsock_t *sock, const char *name, bp_msg_t *welcome)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_HELLO);
    sb_header_set_name (&h, name);
    bp_send (sock, &h, NULL, 0);
    return bp_recv (sock, welcome, BP_WAIT) == 0 && welcome->h.command == SB_CMD_WELCOME ? 0 : -1;
}

/*  READY for service with capacity; methods is "name:flags,name:flags".  */
static inline void
bp_ready (zsock_t *sock, const char *service, uint32_t capacity, const char *methods)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    char copy [512];
    snprintf (copy, sizeof copy, "%s", methods);
    int n = 1;
    for (const char *c = copy; *c; c++)
        n += *c == ',';
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "version", 7);
    msgpack_pack_str_with_body (&pk, "1.0.0", 5);
    msgpack_pack_str_with_body (&pk, "methods", 7);
    msgpack_pack_array (&pk, n);
    char *save = NULL;
    for (char *tok = strtok_r (copy, ",", &save); tok; tok = strtok_r (NULL, ",", &save)) {
        char *colon = strchr (tok, ':');
        unsigned flags = 0;
        if (colon) {
            *colon = 0;
            flags = (unsigned) atoi (colon + 1);
        }
        msgpack_pack_array (&pk, 2);
        msgpack_pack_str_with_body (&pk, tok, strlen (tok));
        msgpack_pack_uint32 (&pk, flags);
    }
    sb_header_t h;
    sb_header_init (&h, SB_CMD_READY);
    sb_header_set_service (&h, service);
    h.capacity = capacity;
    h.present |= SB_H_CAPACITY;
    bp_send (sock, &h, buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
}

static inline void
bp_request (zsock_t *sock, uint64_t id, const char *service, const char *method,
            uint32_t timeout_ms, uint32_t flags, const void *body, size_t size)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = id;
    h.present |= SB_H_REQUEST_ID;
    sb_header_set_service (&h, service);
    sb_header_set_method (&h, method);
    h.timeout_ms = timeout_ms;
    h.flags = flags;
    bp_send (sock, &h, body, size);
}

/*  Answers a request received by a worker with REPLY and the given body. */
static inline void
bp_reply (zsock_t *sock, uint64_t broker_id, const void *body, size_t size)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_REPLY);
    h.request_id = broker_id;
    h.present |= SB_H_REQUEST_ID;
    bp_send (sock, &h, body, size);
}

static inline void
bp_simple (zsock_t *sock, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    bp_send (sock, &h, NULL, 0);
}

/*  Looks up key in a msgpack map; NULL if absent.  */
static inline const msgpack_object *
bp_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  !memcmp (k->via.str.ptr, key, k->via.str.size))
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

/*  Calls sys.METHOD on a fresh request id and unpacks the reply into
    *unpacked (caller destroys it).  0 or -1.  */
static inline int
bp_sys (zsock_t *sock, const char *method, msgpack_unpacked *unpacked)
{
    static uint64_t next_id = 900000;
    uint64_t id = ++next_id;
    bp_request (sock, id, "sys", method, 0, 0, NULL, 0);
    bp_msg_t m;
    int64_t end = zclock_mono () + BP_WAIT;
    while (zclock_mono () < end) {
        if (bp_recv (sock, &m, BP_WAIT))
            return -1;
        if (m.h.request_id != id)
            continue;
        if (m.h.command != SB_CMD_REPLY)
            return -1;
        msgpack_unpacked_init (unpacked);
        size_t offset = 0;
        if (msgpack_unpack_next (unpacked, m.body, m.size, &offset) != MSGPACK_UNPACK_SUCCESS) {
            msgpack_unpacked_destroy (unpacked);
            return -1;
        }
        return 0;
    }
    return -1;
}

/*  Returns once the broker has handled everything sock sent before (a
    connection's messages are handled in order).  Other messages arriving
    meanwhile on sock are lost.  */
static inline int
bp_sync (zsock_t *sock)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "ping", &u))
        return -1;
    msgpack_unpacked_destroy (&u);
    return 0;
}

/*  A counter from sys.stats: top-level key, or key/sub for a nested map
    (e.g. "bad_frames", "malformed").  Returns -1 if absent.  */
static inline int64_t
bp_stat (zsock_t *sock, const char *key, const char *sub)
{
    msgpack_unpacked u;
    if (bp_sys (sock, "stats", &u))
        return -1;
    const msgpack_object *v = bp_get (&u.data, key);
    if (v && sub)
        v = bp_get (v, sub);
    int64_t value = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t) v->via.u64 : -1;
    msgpack_unpacked_destroy (&u);
    return value;
}

/*  Polls a stat until it reaches want or the time runs out.  */
static inline int64_t
bp_stat_wait (zsock_t *sock, const char *key, const char *sub, int64_t want)
{
    int64_t end = zclock_mono () + BP_WAIT, value = -1;
    while (zclock_mono () < end) {
        value = bp_stat (sock, key, sub);
        if (value >= want)
            break;
        zclock_sleep (20);
    }
    return value;
}

#endif
