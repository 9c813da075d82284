/*  sys.c — the built-in `sys` service (docs/protocol.md section 10).

    ping, services (this broker's services and those other brokers listed
    in their last DIRECTORY), describe (a service's contract, from its
    workers' READY), stats (the engine's counters) and keys (the
    certificates a caller needs to seal).  The answers are MessagePack
    written into the engine's reused buffer; the small packing and reading
    helpers here are also used for DIRECTORY (cluster.c).
*/
#include "engine.h"

#include <stdio.h>
#include <string.h>

/*  Names of the broker's own reasons for dropping a frame, in the order
    of their enum (engine.h); the decoder names its own.  */
static const char *s_reason_names [R_MAX - SB_WIRE_REASON_MAX] = {
    "frames", "bad_body", "missing_field", "unexpected", "reserved", "limit", "foreign_reply"
};

void
sb__pack_cstr (msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body (pk, s, strlen (s));
}

static void
s_pack_counter (msgpack_packer *pk, const char *key, uint64_t value)
{
    sb__pack_cstr (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static void
s_sys_ping (engine_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 3);
    sb__pack_cstr (pk, "pong");
    msgpack_pack_true (pk);
    sb__pack_cstr (pk, "broker");
    sb__pack_cstr (pk, self->args->name);
    s_pack_counter (pk, "uptime_ms", (uint64_t) (self->now - self->started));
}

/*  One local service as listed by sys.services and DIRECTORY.  */
void
sb__pack_service (engine_t *self, msgpack_packer *pk, const service_t *s)
{
    uint64_t capacity = 0, in_flight = 0;
    for (size_t i = 0; i < s->nworkers; i++) {
        capacity += s->workers [i]->capacity;
        in_flight += s->workers [i]->in_flight;
    }
    msgpack_pack_map (pk, 8);
    sb__pack_cstr (pk, "name");
    sb__pack_cstr (pk, s->name);
    sb__pack_cstr (pk, "version");
    sb__pack_cstr (pk, s->version);
    s_pack_counter (pk, "instances", s->nworkers);
    s_pack_counter (pk, "capacity", capacity);
    s_pack_counter (pk, "in_flight", in_flight);
    s_pack_counter (pk, "queued", s->queue.count);
    sb__pack_cstr (pk, "methods");
    size_t n = 0;
    for (size_t i = 0; i < s->nmethods; i++)
        n += (s->mask >> i) & 1;
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < s->nmethods; i++)
        if ((s->mask >> i) & 1)
            sb__pack_cstr (pk, s->methods [i].name);
    sb__pack_cstr (pk, "broker");
    sb__pack_cstr (pk, self->args->name);
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && !memcmp (key->via.str.ptr, name, len);
}

const msgpack_object *
sb__map_get (const msgpack_object *map, const char *name)
{
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (s_key_is (&map->via.map.ptr [i].key, name))
            return &map->via.map.ptr [i].val;
    return NULL;
}

/*  Copies a str object into out (size bytes with the NUL); 0 or -1.  */
int
sb__str_copy (const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return -1;
    memcpy (out, o->via.str.ptr, o->via.str.size);
    out [o->via.str.size] = 0;
    return 0;
}

/*  The services of another broker's DIRECTORY, each marked with its
    broker's name.  */
static void
s_pack_remote (msgpack_packer *pk, const remote_t *r)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    if (msgpack_unpack_next (&unpacked, (const char *) r->body, r->size, &offset)
        == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *services = sb__map_get (&unpacked.data, "services");
        for (uint32_t i = 0; i < r->nservices; i++) {
            const msgpack_object *entry = &services->via.array.ptr [i];
            uint32_t keep = 0;
            for (uint32_t k = 0; k < entry->via.map.size; k++)
                keep += !s_key_is (&entry->via.map.ptr [k].key, "broker");
            msgpack_pack_map (pk, keep + 1);
            for (uint32_t k = 0; k < entry->via.map.size; k++)
                if (!s_key_is (&entry->via.map.ptr [k].key, "broker")) {
                    msgpack_pack_object (pk, entry->via.map.ptr [k].key);
                    msgpack_pack_object (pk, entry->via.map.ptr [k].val);
                }
            sb__pack_cstr (pk, "broker");
            sb__pack_cstr (pk, r->name);
        }
    }
    msgpack_unpacked_destroy (&unpacked);
}

/*  The name another broker gave itself, from its link or its DIRECTORY.  */
static const char *
s_cbroker_name (engine_t *self, const cbroker_t *cb)
{
    if (cb->name [0])
        return cb->name;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir && !strcmp (p->dir->id, cb->idhex))
            return p->dir->name;
    return "";
}

static void
s_sys_services (engine_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, 4);
    sb__pack_cstr (pk, "broker");
    sb__pack_cstr (pk, self->args->name);
    sb__pack_cstr (pk, "brokers");
    msgpack_pack_array (pk, 1 + self->nbrokers);
    msgpack_pack_map (pk, 4);
    sb__pack_cstr (pk, "name");
    sb__pack_cstr (pk, self->args->name);
    sb__pack_cstr (pk, "id");
    sb__pack_cstr (pk, self->idhex);
    sb__pack_cstr (pk, "endpoint");
    sb__pack_cstr (pk, self->announce);
    sb__pack_cstr (pk, "self");
    msgpack_pack_true (pk);
    for (size_t i = 0; i < self->nbrokers; i++) {
        cbroker_t *cb = self->brokers [i];
        msgpack_pack_map (pk, 4);
        sb__pack_cstr (pk, "name");
        sb__pack_cstr (pk, s_cbroker_name (self, cb));
        sb__pack_cstr (pk, "id");
        sb__pack_cstr (pk, cb->idhex);
        sb__pack_cstr (pk, "endpoint");
        sb__pack_cstr (pk, cb->endpoint);
        sb__pack_cstr (pk, "self");
        msgpack_pack_false (pk);
    }
    sb__pack_cstr (pk, "services");
    msgpack_pack_array (pk, zhashx_size (self->services));
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services))
        sb__pack_service (self, pk, s);
    /*  Apart, so that counting a service's instances in "services" stays
        right: every host connects to every broker, so the same instances
        are usually listed by each broker.  */
    sb__pack_cstr (pk, "remote");
    size_t count = 0;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir)
            count += p->dir->nservices;
    msgpack_pack_array (pk, count);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir)
            s_pack_remote (pk, p->dir);
}

static void
s_sys_stats (engine_t *self, msgpack_packer *pk)
{
    const stats_t *st = &self->stats;
    msgpack_pack_map (pk, 26);
    sb__pack_cstr (pk, "broker");
    sb__pack_cstr (pk, self->args->name);
    s_pack_counter (pk, "uptime_ms", (uint64_t) (self->now - self->started));
    s_pack_counter (pk, "requests", st->requests);
    s_pack_counter (pk, "replies", st->replies);
    sb__pack_cstr (pk, "errors");
    msgpack_pack_map (pk, SB_E_CODE_MAX);
    for (int code = 1; code <= SB_E_CODE_MAX; code++)
        s_pack_counter (pk, sb_code_name ((sb_code_t) code), st->errors [code]);
    s_pack_counter (pk, "timeouts", st->timeouts);
    s_pack_counter (pk, "late_replies", st->late_replies);
    s_pack_counter (pk, "orphaned_replies", st->orphaned_replies);
    sb__pack_cstr (pk, "bad_frames");
    msgpack_pack_map (pk, R_MAX - 1);
    for (int reason = 1; reason < R_MAX; reason++)
        s_pack_counter (pk, reason < SB_WIRE_REASON_MAX
                            ? sb_wire_reason_name ((sb_wire_reason_t) reason)
                            : s_reason_names [reason - SB_WIRE_REASON_MAX],
                        st->bad [reason]);
    s_pack_counter (pk, "events", st->events);
    s_pack_counter (pk, "dropped_events", st->dropped_events);
    s_pack_counter (pk, "unreachable", st->unreachable);
    s_pack_counter (pk, "send_failures", st->send_failures);
    s_pack_counter (pk, "peers", zhashx_size (self->peers));
    s_pack_counter (pk, "workers", self->nworkers);
    s_pack_counter (pk, "live_requests", self->live);
    s_pack_counter (pk, "forbidden", st->forbidden);
    s_pack_counter (pk, "not_broker", st->not_broker);
    s_pack_counter (pk, "directories", st->directories);
    s_pack_counter (pk, "over_budget", st->over_budget);
    s_pack_counter (pk, "timeouts_clamped", st->timeouts_clamped);
    s_pack_counter (pk, "directory_refused", st->directory_refused);
    s_pack_counter (pk, "brokers", self->nbrokers);
    sb_beacon_counters_t bc;
    memset (&bc, 0, sizeof bc);
    if (self->beacon)
        sb_beacon_counters (self->beacon, &bc);
    sb__pack_cstr (pk, "beacons");
    msgpack_pack_map (pk, 6 + SB_BEACON_REASON_MAX - 1);
    s_pack_counter (pk, "sent", bc.sent);
    s_pack_counter (pk, "send_errors", bc.send_errors);
    s_pack_counter (pk, "received", bc.received);
    s_pack_counter (pk, "accepted", bc.accepted);
    s_pack_counter (pk, "own", bc.own);
    s_pack_counter (pk, "conflicts", bc.conflicts);
    for (int r = 1; r < SB_BEACON_REASON_MAX; r++)
        s_pack_counter (pk, sb_beacon_reason_name ((sb_beacon_reason_t) r), bc.ignored [r]);
    sb_zap_stats_t zs;
    memset (&zs, 0, sizeof zs);
    if (self->args->zap)
        sb_zap_stats (self->args->zap, &zs);
    sb__pack_cstr (pk, "zap");
    msgpack_pack_map (pk, 5);
    s_pack_counter (pk, "handshakes_failed", self->stats.handshakes_failed);
    s_pack_counter (pk, "admitted", zs.admitted);
    s_pack_counter (pk, "refused", zs.refused);
    s_pack_counter (pk, "certs", zs.certs);
    sb__pack_cstr (pk, "refused_by_reason");
    msgpack_pack_map (pk, SB_ZAP_REFUSED_MAX - 1);
    for (int r = 1; r < SB_ZAP_REFUSED_MAX; r++)
        s_pack_counter (pk, sb_zap_reason_name (r), zs.by_reason [r]);
    sb__pack_cstr (pk, "secure");
    if (self->secure)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

/*  sys.keys: the certificates a caller needs to seal (docs/protocol.md
    section 10): {"service": S} gives those of the members whose workers
    offer S here, {"key": bin 32} the one made out for that CURVE key.
    The broker only hands certificates out; callers verify them against
    the authority, so a broker cannot substitute a key.  -1 with `why`
    for a bad body.  */
#define KEYS_CERTS_MAX 16

static int
s_sys_keys (engine_t *self, msgpack_packer *pk, const sb_body_t *body, const char **why)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t offset = 0;
    size_t size = body ? body->size : 0;
    if (size == 0 || size > 4096 || sb_wire_check (body->data, size, 4)
    ||  msgpack_unpack_next (&u, (const char *) body->data, size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&u);
        *why = "sys.keys takes {\"service\": NAME} or {\"key\": 32 bytes}";
        return -1;
    }
    const msgpack_object *name = sb__map_get (&u.data, "service");
    const msgpack_object *key = sb__map_get (&u.data, "key");
    char service [SB_NAME_MAX + 1];
    if (name ? sb__str_copy (name, service, sizeof service) || !sb_name_valid (service, SB_NAME_SERVICE)
             : !key || key->type != MSGPACK_OBJECT_BIN || key->via.bin.size != SB_KEY_SIZE) {
        msgpack_unpacked_destroy (&u);
        *why = "sys.keys takes {\"service\": NAME} or {\"key\": 32 bytes}";
        return -1;
    }
    const sb_cert_t *found [KEYS_CERTS_MAX];
    size_t count = 0;
    sb_cert_t *looked = NULL;
    if (name) {
        service_t *s = sb__service_lookup (self, service);
        for (size_t i = 0; s && i < s->nworkers && count < KEYS_CERTS_MAX; i++) {
            const sb_cert_t *cert = s->workers [i]->peer->cert;
            bool seen = !cert;
            for (size_t k = 0; k < count && !seen; k++)
                seen = !memcmp (found [k]->curve_pk, cert->curve_pk, SB_KEY_SIZE);
            if (!seen)
                found [count++] = cert;
        }
    }
    else
    if (self->args->zap && (looked = malloc (sizeof *looked))) {
        sb_error_t err;
        if (sb_zap_lookup_key (self->args->zap, (const uint8_t *) key->via.bin.ptr, looked, &err) == 0)
            found [count++] = looked;
    }
    msgpack_unpacked_destroy (&u);
    msgpack_pack_map (pk, 1);
    sb__pack_cstr (pk, "certs");
    msgpack_pack_array (pk, count);
    uint8_t bytes [SB_CERT_MAX + 128];
    for (size_t i = 0; i < count; i++) {
        size_t n = sb_cert_encode (found [i], bytes, sizeof bytes);
        msgpack_pack_bin (pk, n);
        msgpack_pack_bin_body (pk, bytes, n);
    }
    free (looked);
    return 0;
}

/*  sys.describe {"service": S}: the contract of S as this broker's
    workers announced it in READY (docs/protocol.md section 10).  -1 with
    `why` and `code`: a bad body, or no such service here (not_found, which
    sb__send_error marks unrouted: the caller asks another broker).  */
static int
s_sys_describe (engine_t *self, msgpack_packer *pk, const sb_body_t *body, const char **why,
                sb_code_t *code)
{
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t offset = 0;
    size_t size = body ? body->size : 0;
    char name [SB_NAME_MAX + 1];
    *code = SB_E_BAD_REQUEST;
    *why = "sys.describe takes {\"service\": NAME}";
    int rc = -1;
    if (size > 0 && size <= 4096 && sb_wire_check (body->data, size, 4) == 0
    &&  msgpack_unpack_next (&u, (const char *) body->data, size, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  u.data.type == MSGPACK_OBJECT_MAP
    &&  sb__str_copy (sb__map_get (&u.data, "service"), name, sizeof name) == 0
    &&  sb_name_valid (name, SB_NAME_SERVICE))
        rc = 0;
    msgpack_unpacked_destroy (&u);
    if (rc)
        return -1;
    const service_t *s = sb__service_lookup (self, name);
    if (!s) {
        *code = SB_E_NOT_FOUND;
        *why = "no such service at this broker";
        return -1;
    }
    msgpack_pack_map (pk, 5);
    sb__pack_cstr (pk, "service");
    sb__pack_cstr (pk, s->name);
    sb__pack_cstr (pk, "version");
    sb__pack_cstr (pk, s->version);
    sb__pack_cstr (pk, "broker");
    sb__pack_cstr (pk, self->args->name);
    sb__pack_cstr (pk, "methods");
    size_t n = 0;
    for (size_t i = 0; i < s->nmethods; i++)
        n += (s->mask >> i) & 1;
    msgpack_pack_array (pk, n);
    for (size_t i = 0; i < s->nmethods; i++) {
        const method_t *m = &s->methods [i];
        if (!((s->mask >> i) & 1))
            continue;
        msgpack_pack_map (pk, 5);
        sb__pack_cstr (pk, "name");
        sb__pack_cstr (pk, m->name);
        s_pack_counter (pk, "flags", m->flags);
        sb__pack_cstr (pk, "idempotent");
        if (m->flags & SB_F_IDEMPOTENT)
            msgpack_pack_true (pk);
        else
            msgpack_pack_false (pk);
        s_pack_counter (pk, "timeout_ms", m->timeout_ms);
        s_pack_counter (pk, "cache_ttl_ms", m->cache_ttl_ms);
    }
    sb__pack_cstr (pk, "schema");
    if (s->schema)
        sb__pack_cstr (pk, s->schema);
    else
        msgpack_pack_nil (pk);
    return 0;
}

void
sb__on_sys (engine_t *self, peer_t *p, const sb_header_t *h, const sb_body_t *body)
{
    void (*method) (engine_t *, msgpack_packer *) = NULL;
    bool keys = !strcmp (h->method, "keys");
    bool describe = !strcmp (h->method, "describe");
    if (!strcmp (h->method, "ping"))
        method = s_sys_ping;
    else
    if (!strcmp (h->method, "services"))
        method = s_sys_services;
    else
    if (!strcmp (h->method, "stats"))
        method = s_sys_stats;
    if (!method && !keys && !describe) {
        sb__send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST,
                      "service 'sys' has no method '%s'", h->method);
        return;
    }
    msgpack_sbuffer_clear (&self->sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->sbuf, msgpack_sbuffer_write);
    const char *why = NULL;
    if (keys && s_sys_keys (self, &pk, body, &why)) {
        sb__send_error (self, p, h, h->request_id, SB_E_BAD_REQUEST, "%s", why);
        return;
    }
    sb_code_t code;
    if (describe && s_sys_describe (self, &pk, body, &why, &code)) {
        sb__send_error (self, p, h, h->request_id, code, "%s", why);
        return;
    }
    self->stats.replies++;
    if (h->flags & SB_F_NO_REPLY)
        return;
    if (method)
        method (self, &pk);
    zmq_msg_t frame;
    sb_body_t reply = { NULL, (const uint8_t *) self->sbuf.data, self->sbuf.size };
    if (reply.size > SB_INLINE_MAX) {
        if (zmq_msg_init_size (&frame, reply.size))
            return;
        memcpy (zmq_msg_data (&frame), reply.data, reply.size);
        reply.frame = &frame;
    }
    sb_header_t out;
    sb_header_init (&out, SB_CMD_REPLY);
    out.request_id = h->request_id;
    out.present |= SB_H_REQUEST_ID;
    if (h->present & SB_H_TRACE) {
        memcpy (out.trace, h->trace, sizeof out.trace);
        out.present |= SB_H_TRACE;
    }
    sb__send (self, p, &out, &reply);
    if (reply.frame)
        zmq_msg_close (&frame);
}
