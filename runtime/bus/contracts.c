/*  contracts.c — what a peer knows of the services it calls: each one's
    contract as the bus announces it (docs/protocol.md 10, sys.describe),
    cached per peer, so that every caller acts on what the service
    declared without being told again.

    The first call to a service finds no entry: it starts a sys.describe
    lookup and waits for the answer (`contract_wait`, in the call table,
    not in `waiting`) within its own deadline, as a sealed call waits for
    its key; every call to that service meanwhile waits with it.  When the
    answer comes the waiting calls are released: a call to a method the
    service declares idempotent gets the idempotent flag (so a broker lost
    while it is in flight has it retried through another), and a call
    made with no timeout gets the method's timeout_ms.  Then they go out
    (unless they still wait for a sealing key).

    An answer is fresh for `contract_ttl_ms` (SB_CONTRACT_TTL_MS unless
    set); a call that finds its entry stale uses it all the same and asks
    again in the background.  A lookup that fails (no broker knows the
    service: each live one is asked once, as for any not_found; a timeout;
    the broker lost) leaves the entry as it was, or empty for a service
    never described, fresh for SB_CONTRACT_RETRY_MS only: calls never wait
    twice for the same service, and a service that appears later is
    learnt a moment after.

    The lookup is a plain call to `sys.describe` made idempotent (it reads
    only), so a broker lost while it is in flight has it asked again.  Its
    callback's argument is the cache entry, which lives as long as the
    peer: a peer destroyed meanwhile drops the call without calling back.
*/
#include "internal.h"
#include "peer_private.h"

#include <czmq.h>
#include <string.h>

/*  Bound on a lookup: a first call waits at most this long (and never
    past its own deadline) before it goes out without a contract.  */
#define S_LOOKUP_MS 2000

typedef struct {
    char name [SB_NAME_MAX + 1];
    uint32_t flags;                 /* SB_F_IDEMPOTENT */
    uint32_t timeout_ms;            /* 0: none declared */
} s_method_t;

typedef struct {
    sb_peer_t *peer;
    char service [SB_NAME_MAX + 1];
    bool known;                     /* an answer (or a failure) came: calls no longer wait */
    bool asking;                    /* a sys.describe is in flight */
    int64_t answered;               /* when the last answer (or failure) came */
    bool failed;                    /* it was a failure: fresh for SB_CONTRACT_RETRY_MS only */
    size_t nmethods;
    s_method_t methods [SB_CONTRACT_METHODS_MAX];
} s_contract_t;

static void
s_contract_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

int
sb__peer_contracts_init (sb_peer_t *self)
{
    self->contracts = zhashx_new ();
    if (!self->contracts)
        return -1;
    zhashx_set_destructor (self->contracts, s_contract_destroy);
    self->contract_ttl_ms = SB_CONTRACT_TTL_MS;
    return 0;
}

void
sb__peer_contracts_destroy (sb_peer_t *self)
{
    zhashx_destroy (&self->contracts);
}

void
sb_peer_set_contract_ttl (sb_peer_t *self, int ttl_ms)
{
    self->contract_ttl_ms = ttl_ms > 0 ? ttl_ms : SB_CONTRACT_TTL_MS;
}

size_t
sb_peer_contract_lookups (const sb_peer_t *self)
{
    return self->contract_lookups;
}

/*  The value of `key` in a map, or NULL.  */
static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
        &&  !memcmp (k->via.str.ptr, key, len))
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static uint32_t
s_uint (const msgpack_object *o, uint32_t max)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= max
         ? (uint32_t) o->via.u64 : 0;
}

/*  Reads a sys.describe answer into c.  0, or -1 (c untouched) when it
    is not one.  */
static int
s_parse (s_contract_t *c, const void *data, size_t size)
{
    if (size == 0 || sb_wire_check (data, size, SB_DEPTH_MAX))
        return -1;
    msgpack_unpacked u;
    msgpack_unpacked_init (&u);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&u, data, size, &offset) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *methods = s_get (&u.data, "methods");
        if (methods && methods->type == MSGPACK_OBJECT_ARRAY) {
            size_t n = 0;
            for (uint32_t i = 0; i < methods->via.array.size && n < SB_CONTRACT_METHODS_MAX; i++) {
                const msgpack_object *m = &methods->via.array.ptr [i];
                const msgpack_object *name = s_get (m, "name");
                if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size > SB_NAME_MAX)
                    continue;
                s_method_t *out = &c->methods [n++];
                memcpy (out->name, name->via.str.ptr, name->via.str.size);
                out->name [name->via.str.size] = 0;
                out->flags = s_uint (s_get (m, "flags"), UINT32_MAX) & SB_F_IDEMPOTENT;
                out->timeout_ms = s_uint (s_get (m, "timeout_ms"), SB_CONTRACT_MS_MAX);
            }
            c->nmethods = n;
            rc = 0;
        }
    }
    msgpack_unpacked_destroy (&u);
    return rc;
}

/*  Applies what c says of the call's method: the idempotent flag, and
    the method's timeout for a call made without one.  */
static void
s_apply (sb_peer_t *self, const s_contract_t *c, sb_call_t *call)
{
    for (size_t i = 0; i < c->nmethods; i++) {
        if (strcmp (c->methods [i].name, call->method) != 0)
            continue;
        call->flags |= c->methods [i].flags;
        if (!call->timeout_given && c->methods [i].timeout_ms > 0) {
            call->timeout_ms = (int) c->methods [i].timeout_ms;
            call->deadline = call->started + call->timeout_ms;
            if (call->deadline < self->next_deadline)
                self->next_deadline = call->deadline;
        }
        return;
    }
}

static void s_answer (const void *data, size_t size, const sb_error_t *err, void *arg);

/*  Sends the sys.describe lookup for c.  0, or -1.  */
static int
s_ask (sb_peer_t *self, s_contract_t *c)
{
    uint8_t body [16 + SB_NAME_MAX];
    size_t n = 0, len = strnlen (c->service, SB_NAME_MAX);
    body [n++] = 0x81;                              /* map of 1 */
    body [n++] = 0xa7;                              /* fixstr 7 */
    memcpy (body + n, "service", 7);
    n += 7;
    body [n++] = 0xd9;                              /* str 8 */
    body [n++] = (uint8_t) len;
    memcpy (body + n, c->service, len);
    n += len;
    sb_error_t err;
    if (sb__peer_call_flags (self, "sys", "describe", body, n, S_LOOKUP_MS,
                             SB_F_IDEMPOTENT | SB_CALL_LOOKUP,
                             NULL, s_answer, c, NULL, &err))
        return -1;
    c->asking = true;
    self->contract_lookups++;
    self->contract_asking++;
    return 0;
}

/*  The answer of a lookup: the entry is updated (or, on failure, kept
    and asked again soon), and the calls that waited for it are applied
    and sent.  Ids first: sending may answer calls.  */
static void
s_answer (const void *data, size_t size, const sb_error_t *err, void *arg)
{
    s_contract_t *c = arg;
    sb_peer_t *self = c->peer;
    int64_t now = zclock_mono ();
    c->asking = false;
    self->contract_asking--;
    c->failed = err || s_parse (c, data, size) != 0;
    c->answered = now;
    c->known = true;

    size_t count = 0;
    for (sb_call_t *call = zhashx_first (self->calls); call; call = zhashx_next (self->calls))
        count += call->contract_wait && streq (call->service, c->service);
    uint64_t *ids = count ? malloc (count * sizeof *ids) : NULL;
    size_t n = 0;
    for (sb_call_t *call = zhashx_first (self->calls); call && ids; call = zhashx_next (self->calls))
        if (call->contract_wait && streq (call->service, c->service) && n < count)
            ids [n++] = call->id;
    for (size_t i = 0; i < n; i++) {
        sb_call_t *call = zhashx_lookup (self->calls, &ids [i]);
        if (!call || !call->contract_wait)
            continue;
        call->contract_wait = false;
        s_apply (self, c, call);
        if (!call->key_wait)
            sb__peer_call_release (self, call, now);
    }
    free (ids);
}

bool
sb__peer_contract_wait (sb_peer_t *self, sb_call_t *call)
{
    s_contract_t *c = zhashx_lookup (self->contracts, call->service);
    if (!c) {
        c = calloc (1, sizeof *c);
        if (!c)
            return false;
        c->peer = self;
        strcpy (c->service, call->service);
        zhashx_insert (self->contracts, c->service, c);
        if (s_ask (self, c)) {
            c->known = c->failed = true;
            c->answered = zclock_mono ();
            return false;
        }
    }
    if (!c->known)
        return true;
    s_apply (self, c, call);
    int64_t fresh = c->failed ? SB_CONTRACT_RETRY_MS : self->contract_ttl_ms;
    if (!c->asking && zclock_mono () - c->answered >= fresh)
        s_ask (self, c);                /* in the background: this call goes on */
    return false;
}
