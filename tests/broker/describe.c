/*  broker_describe.t — the contract a READY carries (docs/protocol.md
    5.2: [name, flags, timeout_ms, cache_ttl_ms] per method, the schema
    text) and sys.describe answering it (section 10), spoken through raw
    DEALER sockets.  Old READYs ([name, flags]) stay valid; bad contract
    fields are bad_body.  */
#include "broker_peer.h"

/*  READY for `service` with capacity 4 and the body the caller packed. */
static void
s_ready_body (zsock_t *sock, const char *service, const msgpack_sbuffer *body)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_READY);
    sb_header_set_service (&h, service);
    h.capacity = 4;
    h.present |= SB_H_CAPACITY;
    bp_send (sock, &h, body->data, body->size);
}

static void
s_str (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body (pk, s, strlen (s));
}

/*  sys.describe {"service": name}: 0 with the answer unpacked into *u
    (REPLY), 1 with *code (ERROR), -1 when nothing came.  */
static int
s_describe (zsock_t *sock, const char *name, msgpack_unpacked *u, uint32_t *code, uint32_t *flags)
{
    static uint64_t id = 500;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    s_str (&pk, "service");
    s_str (&pk, name);
    bp_request (sock, ++id, "sys", "describe", 0, 0, buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
    bp_msg_t m;
    while (bp_recv (sock, &m, BP_WAIT) == 0) {
        if (m.h.request_id != id)
            continue;
        if (m.h.command == SB_CMD_ERROR) {
            *code = m.h.code;
            *flags = m.h.flags;
            return 1;
        }
        msgpack_unpacked_init (u);
        size_t offset = 0;
        if (msgpack_unpack_next (u, m.body, m.size, &offset) != MSGPACK_UNPACK_SUCCESS) {
            msgpack_unpacked_destroy (u);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int64_t
s_uint (const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t) o->via.u64 : -1;
}

/*  The method entry called `name` in a describe answer.  */
static const msgpack_object *
s_method (const msgpack_object *answer, const char *name)
{
    const msgpack_object *methods = bp_get (answer, "methods");
    for (uint32_t i = 0; methods && methods->type == MSGPACK_OBJECT_ARRAY
                         && i < methods->via.array.size; i++) {
        const msgpack_object *n = bp_get (&methods->via.array.ptr [i], "name");
        if (n && n->type == MSGPACK_OBJECT_STR && n->via.str.size == strlen (name)
        &&  !memcmp (n->via.str.ptr, name, n->via.str.size))
            return &methods->via.array.ptr [i];
    }
    return NULL;
}

int
main (void)
{
    sb_broker_t *broker = bp_broker (1000, 100);
    zsock_t *client = bp_connect (broker);
    zsock_t *worker = bp_connect (broker);
    static bp_msg_t m;
    tap_ok (bp_hello (client, "client", &m) == 0 && bp_hello (worker, "worker", &m) == 0,
            "client and worker welcomed");
    bp_keep (worker, true);

    /*  A READY with the whole contract.  */
    const char *schema = "{\"service\":\"svc\",\"methods\":{\"get\":{\"idempotent\":true}}}";
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 3);
    s_str (&pk, "version");
    s_str (&pk, "2.1.0");
    s_str (&pk, "methods");
    msgpack_pack_array (&pk, 2);
    msgpack_pack_array (&pk, 4);
    s_str (&pk, "get");
    msgpack_pack_uint32 (&pk, 1);
    msgpack_pack_uint32 (&pk, 1500);
    msgpack_pack_uint32 (&pk, 60000);
    msgpack_pack_array (&pk, 2);            /* an old-style entry among new ones */
    s_str (&pk, "put");
    msgpack_pack_uint32 (&pk, 0);
    s_str (&pk, "schema");
    s_str (&pk, schema);
    s_ready_body (worker, "svc", &body);
    bp_sync (worker);

    msgpack_unpacked u;
    uint32_t code = 0, flags = 0;
    int rc = s_describe (client, "svc", &u, &code, &flags);
    tap_is_int (rc, 0, "sys.describe of a service offered here is answered");
    if (rc == 0) {
        const msgpack_object *get = s_method (&u.data, "get");
        const msgpack_object *put = s_method (&u.data, "put");
        const msgpack_object *idem = bp_get (get, "idempotent");
        tap_ok (get && s_uint (bp_get (get, "flags")) == 1 && idem
                && idem->type == MSGPACK_OBJECT_BOOLEAN && idem->via.boolean,
                "get: flags 1, idempotent true");
        tap_ok (s_uint (bp_get (get, "timeout_ms")) == 1500
                && s_uint (bp_get (get, "cache_ttl_ms")) == 60000,
                "get: timeout_ms and cache_ttl_ms as announced");
        tap_ok (put && s_uint (bp_get (put, "flags")) == 0 && s_uint (bp_get (put, "timeout_ms")) == 0,
                "put (an old [name, flags] entry): flags 0, no timeout");
        const msgpack_object *text = bp_get (&u.data, "schema");
        tap_ok (text && text->type == MSGPACK_OBJECT_STR && text->via.str.size == strlen (schema)
                && !memcmp (text->via.str.ptr, schema, strlen (schema)),
                "the schema text comes back byte for byte");
        const msgpack_object *version = bp_get (&u.data, "version");
        tap_ok (version && version->type == MSGPACK_OBJECT_STR && version->via.str.size == 5,
                "with the service's version");
        msgpack_unpacked_destroy (&u);
    }
    else
        for (int i = 0; i < 5; i++)
            tap_ok (0, "no answer");

    /*  An old READY (no contract) of another service: valid, described
        with zero times and no schema.  */
    bp_ready (worker, "old", 1, "ping:1");
    bp_sync (worker);
    rc = s_describe (client, "old", &u, &code, &flags);
    tap_is_int (rc, 0, "a service whose READY carries no contract is described too");
    if (rc == 0) {
        const msgpack_object *ping = s_method (&u.data, "ping");
        const msgpack_object *text = bp_get (&u.data, "schema");
        tap_ok (ping && s_uint (bp_get (ping, "flags")) == 1 && s_uint (bp_get (ping, "timeout_ms")) == 0
                && text && text->type == MSGPACK_OBJECT_NIL,
                "its flags, no timeout, schema nil");
        msgpack_unpacked_destroy (&u);
    }
    else
        tap_ok (0, "no answer");

    /*  Unknown service: not_found, unrouted (the caller asks another
        broker); a bad body: bad_request.  */
    rc = s_describe (client, "nosuch", &u, &code, &flags);
    tap_ok (rc == 1 && code == SB_E_NOT_FOUND && (flags & SB_F_UNROUTED),
            "an unknown service: not_found, unrouted");
    bp_request (client, 77, "sys", "describe", 0, 0, "\x90", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR
            && m.h.code == SB_E_BAD_REQUEST, "a body that is not {\"service\": NAME}: bad_request");

    /*  Bad contract fields: bad_body, the service untouched.  */
    int64_t bad = bp_stat (client, "bad_frames", "bad_body");
    msgpack_sbuffer_clear (&body);
    msgpack_pack_map (&pk, 1);
    s_str (&pk, "methods");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_array (&pk, 3);
    s_str (&pk, "get");
    msgpack_pack_uint32 (&pk, 1);
    s_str (&pk, "soon");                    /* timeout_ms not an integer */
    s_ready_body (worker, "svc", &body);
    msgpack_sbuffer_clear (&body);
    msgpack_pack_map (&pk, 1);
    s_str (&pk, "methods");
    msgpack_pack_array (&pk, 1);
    msgpack_pack_array (&pk, 3);
    s_str (&pk, "get");
    msgpack_pack_uint32 (&pk, 1);
    msgpack_pack_uint64 (&pk, (uint64_t) SB_CONTRACT_MS_MAX + 1);
    s_ready_body (worker, "svc", &body);
    msgpack_sbuffer_clear (&body);
    msgpack_pack_map (&pk, 2);
    s_str (&pk, "methods");
    msgpack_pack_array (&pk, 0);
    s_str (&pk, "schema");
    msgpack_pack_uint32 (&pk, 7);           /* schema not a string */
    s_ready_body (worker, "svc", &body);
    bp_sync (worker);
    tap_is_int (bp_stat (client, "bad_frames", "bad_body") - bad, 3,
                "a timeout that is not an integer, one past the bound, a schema not a string: bad_body");
    rc = s_describe (client, "svc", &u, &code, &flags);
    tap_ok (rc == 0 && s_uint (bp_get (s_method (&u.data, "get"), "timeout_ms")) == 1500,
            "and the contract stays as it was");
    if (rc == 0)
        msgpack_unpacked_destroy (&u);

    msgpack_sbuffer_destroy (&body);
    bp_keep (worker, false);
    zsock_destroy (&worker);
    zsock_destroy (&client);
    sb_broker_destroy (&broker);
    return tap_done ();
}
