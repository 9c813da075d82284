/*  sealer.c — the runtime's end-to-end sealing: what to look up,
    verification of the answers against the authority, sealing with
    context, refusals.  See sealer.h for the policy and docs/security.md
    section 5.

    Keys learnt live in two tables that only grow (bounded by what a
    process talks to): services by name, callers by key.  Each entry
    starts with the sb_sealer_lookup_t that the owner is given to send
    (runtime/bus/keys_lookup.c) and hands back with the answer, so a
    lookup in flight points into a table the sealer owns, and an owner
    destroyed with a lookup outstanding leaks nothing.  Requests waiting
    for a caller's certificate are held, with their body, in a bounded
    list and handed back to the owner (`release`) when the lookup ends.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_RETRY_MS 10000                /* a caller that failed verification is looked up again after */
#define S_LOG_FIRST 10                  /* refusals logged per reason before thinning out */
#define S_SCRATCH_KEEP (1024 * 1024)    /* a larger scratch buffer is freed after use */
#define S_CALLERS_MAX 4096              /* caller keys remembered (verified or not) */

enum { S_NONE, S_LOOKUP, S_KNOWN, S_FAILED };

/*  A service's key.  lookup first: a lookup in flight is its entry.  */
typedef struct {
    sb_sealer_lookup_t lookup;      /* kind SERVICE; service: its name */
    int state;
    bool refreshing;                /* a lookup in flight for a known key */
    uint8_t pk [SB_KEY_SIZE];
    int64_t learnt;
    sb_code_t code;                 /* S_FAILED: why */
    char error [SB_TEXT_MAX + 1];
} s_service_t;

/*  A caller's certificate.  lookup first, as above.  */
typedef struct {
    sb_sealer_lookup_t lookup;      /* kind CALLER; key: its curve key */
    int state;
    int64_t when;                   /* learnt or failed */
    sb_cert_t *cert;                /* S_KNOWN */
    char error [SB_TEXT_MAX + 1];
} s_caller_t;

typedef struct {
    uint8_t pk [SB_KEY_SIZE];
    uint32_t link_id;
    sb_header_t h;
    zmq_msg_t body;
} s_held_t;

struct sb_sealer {
    const sb_identity_t *identity;
    sb_sealer_owner_t owner;
    char who [SB_NAME_MAX + 1];
    sb_seal_t *seal;                /* our member keys */
    sb_seal_t *events;              /* the event key; NULL without one */
    uint8_t events_pk [SB_KEY_SIZE];
    zhashx_t *services;             /* name -> s_service_t */
    zhashx_t *callers;              /* key hex -> s_caller_t */
    zlistx_t *held;                 /* s_held_t */
    s_caller_t *last_caller;        /* the last one whose request opened */
    uint8_t *scratch;
    size_t scratch_size;
    sb_sealer_counters_t counters;  /* updated with relaxed atomics */
};

static const char *s_reason_names [SB_SEALER_REFUSED_MAX] = {
    [SB_SEALER_TRUNCATED] = "truncated",
    [SB_SEALER_TAMPERED] = "tampered",
    [SB_SEALER_REPLAYED] = "replayed",
    [SB_SEALER_UNKNOWN_KEY] = "unknown_key",
    [SB_SEALER_PLAINTEXT] = "plaintext",
    [SB_SEALER_FORBIDDEN] = "forbidden",
    [SB_SEALER_NO_KEY] = "no_key",
    [SB_SEALER_STALE] = "stale",
    [SB_SEALER_FUTURE] = "future",
};

const char *
sb_sealer_reason_name (sb_sealer_reason_t reason)
{
    return (unsigned) reason < SB_SEALER_REFUSED_MAX ? s_reason_names [reason] : "unknown";
}

static int64_t s_clock_offset_ms;     /* tests only (sb__sealer_set_clock_offset) */

void
sb__sealer_set_clock_offset (int64_t offset_ms)
{
    __atomic_store_n (&s_clock_offset_ms, offset_ms, __ATOMIC_RELAXED);
}

/*  Unix time in ms: what the envelope's `sent` is and is checked against. */
static uint64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000
               + __atomic_load_n (&s_clock_offset_ms, __ATOMIC_RELAXED);
    return ms > 0 ? (uint64_t) ms : 0;
}

static void
s_count (uint64_t *counter)
{
    __atomic_add_fetch (counter, 1, __ATOMIC_RELAXED);
}

static void
s_entry_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_caller_destroy (void **item)
{
    s_caller_t *caller = *item;
    if (caller)
        free (caller->cert);
    free (caller);
    *item = NULL;
}

static void
s_held_destroy (void **item)
{
    s_held_t *held = *item;
    if (held)
        zmq_msg_close (&held->body);
    free (held);
    *item = NULL;
}

sb_sealer_t *
sb_sealer_new (const sb_identity_t *identity, const sb_sealer_owner_t *owner, sb_error_t *err)
{
    sb_sealer_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->identity = identity;
    self->owner = *owner;
    snprintf (self->who, sizeof self->who, "%s", sb_identity_name (identity));
    self->seal = sb_seal_new (sb_identity_keys (identity), 0, err);
    self->services = zhashx_new ();
    self->callers = zhashx_new ();
    self->held = zlistx_new ();
    if (!self->seal || !self->services || !self->callers || !self->held) {
        if (self->seal)
            sb_error_set (err, SB_E_INTERNAL, "out of memory");
        sb_sealer_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->services, s_entry_destroy);
    zhashx_set_destructor (self->callers, s_caller_destroy);
    zlistx_set_destructor (self->held, s_held_destroy);

    /*  The cluster event key, if this member was given one.  */
    char path [1024];
    snprintf (path, sizeof path, "%s/%s", sb_identity_dir (identity), SB_SEALER_EVENTS_FILE);
    if (access (path, F_OK) == 0 || errno != ENOENT) {
        sb_keys_t *keys = sb_keys_load (path, err);
        if (keys && (sb_keys_kind (keys) != SB_KEYS_MEMBER || !sb_keys_has_secret (keys))) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: not a member secret key file "
                          "(make it with 'sb keygen member events DIR')", path);
            sb_keys_destroy (&keys);
        }
        if (keys) {
            memcpy (self->events_pk, sb_keys_curve_public (keys), SB_KEY_SIZE);
            self->events = sb_seal_new (keys, 0, err);
        }
        sb_keys_destroy (&keys);
        if (!self->events || sb_seal_peer_add (self->seal, self->events_pk, err)) {
            sb_sealer_destroy (&self);
            return NULL;
        }
    }
    return self;
}

void
sb_sealer_destroy (sb_sealer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_sealer_t *self = *self_p;
    sb_seal_destroy (&self->seal);
    sb_seal_destroy (&self->events);
    zhashx_destroy (&self->services);
    zhashx_destroy (&self->callers);
    zlistx_destroy (&self->held);
    if (self->scratch)
        sodium_memzero (self->scratch, self->scratch_size);
    free (self->scratch);
    free (self);
    *self_p = NULL;
}

void
sb_sealer_counters (const sb_sealer_t *self, sb_sealer_counters_t *out)
{
    memset (out, 0, sizeof *out);
    if (!self)
        return;
    out->sealed = __atomic_load_n (&self->counters.sealed, __ATOMIC_RELAXED);
    out->opened = __atomic_load_n (&self->counters.opened, __ATOMIC_RELAXED);
    out->lookups = __atomic_load_n (&self->counters.lookups, __ATOMIC_RELAXED);
    for (int i = 0; i < SB_SEALER_REFUSED_MAX; i++)
        out->refused [i] = __atomic_load_n (&self->counters.refused [i], __ATOMIC_RELAXED);
}

const uint8_t *
sb_sealer_key_id (const sb_sealer_t *self)
{
    return sb_seal_key_id (self->seal);
}

bool
sb_sealer_has_events (const sb_sealer_t *self)
{
    return self->events != NULL;
}

/*  Counts and logs a refusal (the first few of each reason, then one in
    a thousand, so that a flood of bad frames does not flood the log),
    fills err with code and the text.  Returns -1.  */
static int
s_refuse (sb_sealer_t *self, sb_sealer_reason_t reason, sb_code_t code, sb_error_t *err,
          const char *fmt, ...)
{
    char text [SB_TEXT_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    uint64_t n = __atomic_add_fetch (&self->counters.refused [reason], 1, __ATOMIC_RELAXED);
    if (n <= S_LOG_FIRST || n % 1000 == 0)
        zsys_warning ("%s: sealing: %s (%s: %" PRIu64 " so far)", self->who, text,
                      s_reason_names [reason], n);
    sb_error_set (err, code, "%s", text);
    return -1;
}

static sb_sealer_reason_t
s_reason (sb_seal_status_t status)
{
    switch (status) {
        case SB_SEAL_TRUNCATED: return SB_SEALER_TRUNCATED;
        case SB_SEAL_REPLAYED: return SB_SEALER_REPLAYED;
        case SB_SEAL_UNKNOWN_KEY: return SB_SEALER_UNKNOWN_KEY;
        default: return SB_SEALER_TAMPERED;
    }
}

static uint8_t *
s_scratch (sb_sealer_t *self, size_t need)
{
    if (need > self->scratch_size) {
        uint8_t *bigger = realloc (self->scratch, need);
        if (!bigger)
            return NULL;
        self->scratch = bigger;
        self->scratch_size = need;
    }
    return self->scratch;
}

/*  After a large body: the buffer is wiped (it held plaintext) and, past
    S_SCRATCH_KEEP, given back rather than kept for the process's life.  */
static void
s_scratch_done (sb_sealer_t *self)
{
    if (self->scratch_size > S_SCRATCH_KEEP) {
        sodium_memzero (self->scratch, self->scratch_size);
        free (self->scratch);
        self->scratch = NULL;
        self->scratch_size = 0;
    }
}

static void
s_hex (const uint8_t pk [SB_KEY_SIZE], char hex [2 * SB_KEY_SIZE + 1])
{
    sodium_bin2hex (hex, 2 * SB_KEY_SIZE + 1, pk, SB_KEY_SIZE);
}

/*  --------------------------------------------------------------------
    Sealing and opening with a context.  */

size_t
sb_sealer_context (const char *service, const char *method, char out [2 * SB_NAME_MAX + 2])
{
    size_t a = strnlen (service, SB_NAME_MAX), b = strnlen (method, SB_NAME_MAX);
    memcpy (out, service, a);
    out [a] = '.';
    memcpy (out + a + 1, method, b);
    out [a + 1 + b] = 0;
    return a + 1 + b;
}

int
sb_sealer_seal (sb_sealer_t *self, const uint8_t pk [SB_KEY_SIZE],
                const void *context, size_t context_size, uint32_t ttl_ms,
                const void *plain, size_t size, zmq_msg_t *out,
                uint8_t nonce [SB_SEAL_NONCE_SIZE], sb_error_t *err)
{
    if (context_size > SB_ENVELOPE_CONTEXT_MAX)
        return sb_error_set (err, SB_E_INTERNAL, "sealing context too long");
    size_t head = SB_ENVELOPE_HEAD + context_size;
    size_t inner = head + size;
    uint8_t *buffer = s_scratch (self, inner);
    if (!buffer || zmq_msg_init_size (out, inner + SB_SEAL_OVERHEAD))
        return sb_error_set (err, SB_E_INTERNAL, "out of memory sealing %zu bytes", size);
    sb_envelope_write (buffer, s_now_ms (), ttl_ms, context, context_size);
    if (size)
        memcpy (buffer + head, plain, size);
    size_t sealed_size = 0;
    sb_seal_status_t status = sb_seal_box (self->seal, pk, buffer, inner, zmq_msg_data (out),
                                           zmq_msg_size (out), &sealed_size, err);
    s_scratch_done (self);
    if (status != SB_SEAL_OK) {
        zmq_msg_close (out);
        return -1;
    }
    if (nonce)
        memcpy (nonce, zmq_msg_data (out), SB_SEAL_NONCE_SIZE);
    s_count (&self->counters.sealed);
    return 0;
}

static const char *
s_what (char *text, const char *what, const char *name)
{
    snprintf (text, SB_TOPIC_MAX + 64, what, name);
    return text;
}

/*  The envelope's time against our clock: 0, or -1 refused (stale or
    future, counted, with the ages in the text).  */
static int
s_check_time (sb_sealer_t *self, const sb_envelope_t *envelope, const char *what, sb_error_t *err)
{
    uint64_t now = s_now_ms ();
    sb_envelope_status_t status = sb_envelope_check (envelope, now);
    if (status == SB_ENVELOPE_FUTURE)
        return s_refuse (self, SB_SEALER_FUTURE, SB_E_BAD_REQUEST, err,
                         "%s refused: future: sealed %.1f s ahead of this host's clock "
                         "(at most %d s of clock skew)", what,
                         (double) (envelope->sent_ms - now) / 1000, SB_ENVELOPE_SKEW_MS / 1000);
    if (status == SB_ENVELOPE_STALE)
        return s_refuse (self, SB_SEALER_STALE, SB_E_BAD_REQUEST, err,
                         "%s refused: stale: sealed %.1f s ago, acceptable for %.1f s "
                         "(its timeout of %" PRIu32 " ms plus %d s of clock skew, at most %d s)",
                         what, (double) (now - envelope->sent_ms) / 1000,
                         (double) (sb_envelope_expires (envelope) - envelope->sent_ms) / 1000,
                         envelope->ttl_ms, SB_ENVELOPE_SKEW_MS / 1000,
                         SB_ENVELOPE_MAX_AGE_MS / 1000);
    return 0;
}

/*  Opens body from `pk` with `seal`, checks the envelope's format and
    context and, if `timed`, its time; copies the body proper into
    *plain.  `what` ("sealed request from '%s'") and `name` name the
    message in errors; the text is only made for one.  */
static int
s_open (sb_sealer_t *self, sb_seal_t *seal, const uint8_t pk [SB_KEY_SIZE],
        zmq_msg_t *body, const void *context, size_t context_size, bool timed,
        zmq_msg_t *plain, const char *what, const char *name, sb_error_t *err)
{
    char text [SB_TOPIC_MAX + 64];
    size_t size = zmq_msg_size (body);
    uint8_t *buffer = s_scratch (self, size > SB_SEAL_OVERHEAD ? size - SB_SEAL_OVERHEAD : 1);
    if (!buffer)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory opening %zu bytes", size);
    size_t inner = 0;
    sb_error_t why;
    sb_seal_status_t status = sb_seal_open (seal, pk, SB_KEY_SIZE, zmq_msg_data (body), size,
                                            buffer, self->scratch_size, &inner, &why);
    if (status != SB_SEAL_OK) {
        s_scratch_done (self);
        sb_sealer_reason_t reason = s_reason (status);
        return s_refuse (self, reason, reason == SB_SEALER_UNKNOWN_KEY ? SB_E_UNAUTHORIZED
                                                                       : SB_E_BAD_REQUEST,
                         err, "%s refused: %s: %s", s_what (text, what, name),
                         s_reason_names [reason], why.text);
    }
    sb_envelope_t envelope;
    sb_envelope_status_t parsed = sb_envelope_parse (buffer, inner, &envelope);
    if (parsed == SB_ENVELOPE_UNSUPPORTED) {
        s_scratch_done (self);
        return s_refuse (self, SB_SEALER_TAMPERED, SB_E_BAD_REQUEST, err,
                         "%s refused: tampered (sealed in format %u; this process reads format "
                         "%d: is the sender an older Switchboard?)", s_what (text, what, name),
                         buffer [0], SB_ENVELOPE_FORMAT);
    }
    if (parsed != SB_ENVELOPE_OK || envelope.context_size != context_size
    ||  memcmp (envelope.context, context, context_size) != 0) {
        s_scratch_done (self);
        return s_refuse (self, SB_SEALER_TAMPERED, SB_E_BAD_REQUEST, err,
                         "%s refused: tampered (sealed for another %s)", s_what (text, what, name),
                         context_size == SB_SEAL_NONCE_SIZE ? "request" : "name");
    }
    if (timed && s_check_time (self, &envelope, s_what (text, what, name), err)) {
        s_scratch_done (self);
        return -1;
    }
    size_t n = envelope.body_size;
    int rc = zmq_msg_init_size (plain, n);
    if (rc == 0 && n)
        memcpy (zmq_msg_data (plain), envelope.body, n);
    s_scratch_done (self);
    if (rc)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    s_count (&self->counters.opened);
    return 0;
}

int
sb_sealer_open_reply (sb_sealer_t *self, const sb_header_t *h, zmq_msg_t *body,
                      const uint8_t pk [SB_KEY_SIZE], const uint8_t nonce [SB_SEAL_NONCE_SIZE],
                      zmq_msg_t *plain, sb_error_t *err)
{
    (void) h;
    if (!(h->flags & SB_F_SEALED))
        return s_refuse (self, SB_SEALER_PLAINTEXT, SB_E_UNAUTHORIZED, err,
                         "a plaintext reply to a sealed request was refused");
    return s_open (self, self->seal, pk, body, nonce, SB_SEAL_NONCE_SIZE, false, plain,
                   "sealed reply%s", "", err);
}

/*  --------------------------------------------------------------------
    Lookups (sys.keys).  */

/*  The certificate in `data` (bin), parsed and verified now; for a
    service it must be allowed to offer it.  0, or -1 with why.  */
static int
s_verify (sb_sealer_t *self, const msgpack_object *item, const char *service,
          const uint8_t *pk, sb_cert_t *cert, char *why, size_t why_size)
{
    sb_error_t err = { 0 };
    if (item->type != MSGPACK_OBJECT_BIN) {
        snprintf (why, why_size, "the broker sent something that is not a certificate");
        return -1;
    }
    if (sb_cert_parse (item->via.bin.ptr, item->via.bin.size, cert, &err) != SB_CERT_OK
    ||  sb_cert_verify (cert, sb_identity_authority (self->identity), (uint64_t) time (NULL), &err)
        != SB_CERT_OK) {
        snprintf (why, why_size, "%s", err.text);
        return -1;
    }
    if (service && !sb_cert_may_offer (cert, service)) {
        snprintf (why, why_size, "the certificate of '%s' does not allow it to offer %s",
                  cert->name, service);
        return -1;
    }
    if (pk && memcmp (cert->curve_pk, pk, SB_KEY_SIZE)) {
        snprintf (why, why_size, "the certificate of '%s' is for another key", cert->name);
        return -1;
    }
    return 0;
}

/*  The "certs" array of a sys.keys reply, or NULL.  */
static const msgpack_object *
s_certs (const void *data, size_t size, msgpack_unpacked *unpacked)
{
    if (sb_wire_decode (data, size, unpacked, &unpacked->data)
    ||  unpacked->data.type != MSGPACK_OBJECT_MAP)
        return NULL;
    const msgpack_object_map *map = &unpacked->data.via.map;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr [i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 5
        &&  !memcmp (key->via.str.ptr, "certs", 5) && map->ptr [i].val.type == MSGPACK_OBJECT_ARRAY)
            return &map->ptr [i].val;
    }
    return NULL;
}

/*  Asks the owner to send `lookup`; a lookup that cannot be sent ends
    at once with the owner's reason.  */
static void
s_ask (sb_sealer_t *self, sb_sealer_lookup_t *lookup)
{
    sb_error_t err;
    s_count (&self->counters.lookups);
    if (self->owner.lookup (lookup, self->owner.arg, &err))
        sb_sealer_lookup_answer (self, lookup, NULL, 0, &err, true);
}

static int
s_service_answer (sb_sealer_t *self, s_service_t *entry, const void *data, size_t size,
                  const sb_error_t *err, bool last)
{
    const char *name = entry->lookup.service;
    bool refreshing = entry->refreshing;
    entry->refreshing = false;
    char why [SB_TEXT_MAX + 1] = "";
    sb_code_t code = SB_E_UNAUTHORIZED;
    bool found = false;
    if (err) {
        code = err->code == SB_E_TIMEOUT ? SB_E_TIMEOUT : SB_E_UNAVAILABLE;
        snprintf (why, sizeof why, "cannot look up the key of %s: %.150s", name, err->text);
    }
    else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        const msgpack_object *certs = s_certs (data, size, &unpacked);
        sb_cert_t *cert = malloc (sizeof *cert);
        if (!certs || !cert)
            snprintf (why, sizeof why, "bad sys.keys answer for %s", name);
        else
        if (certs->via.array.size == 0 && !refreshing && !last) {
            /*  A broker that has just started may not know the service
                yet: the owner asks the next one, as calls do (protocol.md
                7).  */
            free (cert);
            msgpack_unpacked_destroy (&unpacked);
            s_count (&self->counters.lookups);
            return SB_SEALER_ASK_AGAIN;
        }
        else
        if (certs->via.array.size == 0) {
            code = SB_E_NOT_FOUND;
            snprintf (why, sizeof why, "no service '%s' (no certificate to seal for)", name);
        }
        for (uint32_t i = 0; cert && certs && i < certs->via.array.size && !found; i++) {
            char one [SB_TEXT_MAX + 1];
            if (s_verify (self, &certs->via.array.ptr [i], name, NULL, cert, one, sizeof one) == 0)
                found = true;
            else
                snprintf (why, sizeof why, "no certificate for %s verifies: %.150s", name, one);
        }
        if (found) {
            sb_error_t add;
            if (sb_seal_peer_add (self->seal, cert->curve_pk, &add)) {
                found = false;
                code = SB_E_INTERNAL;
                snprintf (why, sizeof why, "%s", add.text);
            }
            else {
                if (entry->state == S_KNOWN && memcmp (entry->pk, cert->curve_pk, SB_KEY_SIZE))
                    zsys_info ("%s: sealing: %s now has the key of '%s'", self->who, name, cert->name);
                memcpy (entry->pk, cert->curve_pk, SB_KEY_SIZE);
            }
        }
        free (cert);
        msgpack_unpacked_destroy (&unpacked);
    }
    if (found) {
        entry->state = S_KNOWN;
        entry->learnt = zclock_mono ();
        entry->error [0] = 0;
    }
    else
    if (refreshing) {
        /*  Keep the key we have: the refresh only looks for a newer one. */
        zsys_warning ("%s: sealing: %s", self->who, why);
        return 0;
    }
    else {
        entry->state = S_FAILED;
        entry->code = code;
        snprintf (entry->error, sizeof entry->error, "%s", why);
        sb_error_t counted;
        s_refuse (self, SB_SEALER_NO_KEY, code, &counted, "%s", why);
    }
    if (!refreshing)
        self->owner.keys_ready (name, self->owner.arg);
    return 0;
}

int
sb_sealer_service_key (sb_sealer_t *self, const char *service, uint8_t pk [SB_KEY_SIZE])
{
    s_service_t *entry = zhashx_lookup (self->services, service);
    if (!entry) {
        entry = calloc (1, sizeof *entry);
        if (!entry)
            return 0;
        entry->lookup.kind = SB_SEALER_LOOKUP_SERVICE;
        snprintf (entry->lookup.service, sizeof entry->lookup.service, "%s", service);
        zhashx_insert (self->services, service, entry);
    }
    if (entry->state == S_KNOWN) {
        if (!entry->refreshing && zclock_mono () - entry->learnt > SB_SEALER_KEY_TTL_MS) {
            entry->refreshing = true;
            s_ask (self, &entry->lookup);
        }
        memcpy (pk, entry->pk, SB_KEY_SIZE);
        return 1;
    }
    if (entry->state != S_LOOKUP) {
        entry->state = S_LOOKUP;
        entry->lookup.empty = 0;
        s_ask (self, &entry->lookup);
    }
    return 0;
}

int
sb_sealer_service_result (sb_sealer_t *self, const char *service, uint8_t pk [SB_KEY_SIZE],
                          sb_code_t *code, const char **why)
{
    s_service_t *entry = zhashx_lookup (self->services, service);
    if (entry && entry->state == S_KNOWN) {
        memcpy (pk, entry->pk, SB_KEY_SIZE);
        return 1;
    }
    bool failed = entry && entry->state == S_FAILED;
    *code = failed ? entry->code : SB_E_UNAUTHORIZED;
    *why = failed ? entry->error : "no key to seal for";
    return 0;
}

/*  --------------------------------------------------------------------
    Worker side.  */

static void
s_caller_answer (sb_sealer_t *self, s_caller_t *caller, const void *data, size_t size,
                 const sb_error_t *err)
{
    const uint8_t *pk = caller->lookup.key;
    char hex [2 * SB_KEY_SIZE + 1];
    s_hex (pk, hex);
    char why [SB_TEXT_MAX + 1] = "";
    sb_cert_t *cert = malloc (sizeof *cert);
    bool found = false;
    if (err)
        snprintf (why, sizeof why, "cannot look up the certificate of caller %.16s...: %.150s", hex, err->text);
    else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        const msgpack_object *certs = s_certs (data, size, &unpacked);
        if (!certs || !cert)
            snprintf (why, sizeof why, "bad sys.keys answer for caller %.16s...", hex);
        else
        if (certs->via.array.size == 0)
            snprintf (why, sizeof why, "no certificate is known for caller key %.16s...", hex);
        for (uint32_t i = 0; cert && certs && i < certs->via.array.size && !found; i++) {
            char one [SB_TEXT_MAX + 1];
            if (s_verify (self, &certs->via.array.ptr [i], NULL, pk, cert, one, sizeof one) == 0)
                found = true;
            else
                snprintf (why, sizeof why, "caller key %.16s... does not verify: %.150s", hex, one);
        }
        msgpack_unpacked_destroy (&unpacked);
    }
    sb_error_t add;
    if (found && sb_seal_peer_add (self->seal, pk, &add)) {
        found = false;
        snprintf (why, sizeof why, "%s", add.text);
    }
    caller->when = zclock_mono ();
    free (caller->cert);
    caller->cert = NULL;
    if (found) {
        caller->state = S_KNOWN;
        caller->cert = cert;
        cert = NULL;
    }
    else {
        caller->state = S_FAILED;
        snprintf (caller->error, sizeof caller->error, "%s", why);
    }
    free (cert);

    /*  Hand the requests that waited for this key back to the owner; they
        are detached first, since handling them may hold new ones.  */
    zlistx_t *ready = zlistx_new ();
    s_held_t *held;
    for (held = zlistx_first (self->held); held; held = zlistx_next (self->held))
        if (!memcmp (held->pk, pk, SB_KEY_SIZE)) {
            zlistx_detach_cur (self->held);     /* the cursor steps back */
            zlistx_add_end (ready, held);
        }
    zlistx_set_destructor (ready, s_held_destroy);
    while ((held = zlistx_first (ready))) {
        zlistx_detach_cur (ready);
        self->owner.release (held->link_id, &held->h, &held->body, self->owner.arg);
        s_held_destroy ((void **) &held);
    }
    zlistx_destroy (&ready);
}

int
sb_sealer_lookup_answer (sb_sealer_t *self, sb_sealer_lookup_t *lookup,
                         const void *data, size_t size, const sb_error_t *err, bool last)
{
    if (lookup->kind == SB_SEALER_LOOKUP_SERVICE)
        return s_service_answer (self, (s_service_t *) lookup, data, size, err, last);
    s_caller_answer (self, (s_caller_t *) lookup, data, size, err);
    return 0;
}

/*  True when the caller table is full even after forgetting the keys
    that failed verification or were never looked up (a request for
    them could not be held), since keys made up by a member or a broker must
    not grow it without bound; entries being looked up are in the
    owner's hands and stay).  */
static bool
s_callers_full (sb_sealer_t *self)
{
    if (zhashx_size (self->callers) < S_CALLERS_MAX)
        return false;
    zlistx_t *failed = zlistx_new ();
    for (s_caller_t *caller = zhashx_first (self->callers); caller; caller = zhashx_next (self->callers))
        if (caller->state == S_FAILED || caller->state == S_NONE)
            zlistx_add_end (failed, (void *) zhashx_cursor (self->callers));
    for (const char *key = zlistx_first (failed); key; key = zlistx_next (failed)) {
        if (self->last_caller == zhashx_lookup (self->callers, key))
            self->last_caller = NULL;
        zhashx_delete (self->callers, key);
    }
    zlistx_destroy (&failed);
    return zhashx_size (self->callers) >= S_CALLERS_MAX;
}

static int
s_hold (sb_sealer_t *self, uint32_t link_id, const sb_header_t *h, zmq_msg_t *body, sb_error_t *err)
{
    if (zlistx_size (self->held) >= SB_SEALER_HELD_MAX)
        return sb_error_set (err, SB_E_OVERLOADED, "too many requests waiting for their callers' certificates");
    s_held_t *held = calloc (1, sizeof *held);
    if (!held)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    memcpy (held->pk, h->key_id, SB_KEY_SIZE);
    held->link_id = link_id;
    held->h = *h;
    zmq_msg_init (&held->body);
    zmq_msg_move (&held->body, body);
    zlistx_add_end (self->held, held);
    return 0;
}

int
sb_sealer_open_request (sb_sealer_t *self, uint32_t link_id, const sb_header_t *h,
                        zmq_msg_t *body, zmq_msg_t *plain, uint8_t caller_pk [SB_KEY_SIZE],
                        uint8_t nonce [SB_SEAL_NONCE_SIZE], sb_error_t *err)
{
    if (!(h->flags & SB_F_SEALED))
        return s_refuse (self, SB_SEALER_PLAINTEXT, SB_E_UNAUTHORIZED, err,
                         "%s requires sealed requests (end to end); a plaintext request was refused",
                         h->service);
    if (!(h->present & SB_H_KEY_ID) || h->key_id_size != SB_KEY_SIZE)
        return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, err,
                         "sealed request refused: no caller key id");
    /*  Most requests come from the caller of the one before.  */
    char hex [2 * SB_KEY_SIZE + 1] = "";
    s_caller_t *caller = self->last_caller;
    if (!caller || memcmp (caller->lookup.key, h->key_id, SB_KEY_SIZE)) {
        s_hex (h->key_id, hex);
        caller = zhashx_lookup (self->callers, hex);
    }
    int64_t now = zclock_mono ();
    /*  A known caller is looked up again after the TTL, so that a member
        the brokers revoked (their lookups then find nothing) is refused
        here too within that time; its replay window is kept meanwhile. */
    bool expired = caller && caller->state == S_KNOWN
                && (uint64_t) time (NULL) >= caller->cert->expires_at;
    bool stale = caller && caller->state == S_KNOWN && now - caller->when > SB_SEALER_KEY_TTL_MS;
    if (!caller || caller->state == S_NONE || expired || stale
    ||  (caller->state == S_FAILED && now - caller->when > S_RETRY_MS)) {
        if (!caller && s_callers_full (self))
            return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAVAILABLE, err,
                             "sealed request refused: %d caller keys are being looked up", S_CALLERS_MAX);
        if (!caller) {
            caller = calloc (1, sizeof *caller);
            if (!caller)
                return sb_error_set (err, SB_E_INTERNAL, "out of memory");
            caller->lookup.kind = SB_SEALER_LOOKUP_CALLER;
            memcpy (caller->lookup.key, h->key_id, SB_KEY_SIZE);
            s_hex (h->key_id, hex);
            zhashx_insert (self->callers, hex, caller);
        }
        if (expired)
            sb_seal_peer_remove (self->seal, caller->lookup.key);
        if (s_hold (self, link_id, h, body, err))
            return -1;
        caller->state = S_LOOKUP;
        caller->lookup.empty = 0;
        s_ask (self, &caller->lookup);
        return 0;
    }
    if (caller->state == S_LOOKUP)
        return s_hold (self, link_id, h, body, err) ? -1 : 0;
    if (caller->state == S_FAILED)
        return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, err,
                         "sealed request refused: %s", caller->error);
    char full [2 * SB_NAME_MAX + 2];
    size_t length = sb_sealer_context (h->service, h->method, full);
    if (!sb_cert_may_call (caller->cert, full))
        return s_refuse (self, SB_SEALER_FORBIDDEN, SB_E_FORBIDDEN, err,
                         "member '%s' may not call %s (its certificate)", caller->cert->name, full);
    if (s_open (self, self->seal, h->key_id, body, full, length, true, plain,
                "sealed request from '%s'", caller->cert->name, err))
        return -1;
    memcpy (caller_pk, h->key_id, SB_KEY_SIZE);
    memcpy (nonce, zmq_msg_data (body), SB_SEAL_NONCE_SIZE);
    self->last_caller = caller;
    return 1;
}

/*  --------------------------------------------------------------------
    Events.  */

int
sb_sealer_seal_event (sb_sealer_t *self, const char *topic, const void *plain, size_t size,
                      zmq_msg_t *out, sb_error_t *err)
{
    if (!self->events)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no event key");
    return sb_sealer_seal (self, self->events_pk, topic, strlen (topic), 0, plain, size, out, NULL, err);
}

int
sb_sealer_open_event (sb_sealer_t *self, const sb_header_t *h, zmq_msg_t *body,
                      zmq_msg_t *plain, sb_error_t *err)
{
    bool sealed = (h->flags & SB_F_SEALED) != 0;
    if (!self->events) {
        if (!sealed)
            return 0;
        return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, err,
                         "sealed event on '%s' dropped: this member has no event key (%s)",
                         h->topic, SB_SEALER_EVENTS_FILE);
    }
    if (!sealed)
        return s_refuse (self, SB_SEALER_PLAINTEXT, SB_E_UNAUTHORIZED, err,
                         "plaintext event on '%s' dropped (events must be sealed)", h->topic);
    if (!(h->present & SB_H_KEY_ID) || h->key_id_size != SB_KEY_SIZE)
        return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, err,
                         "sealed event on '%s' dropped: no sender key id", h->topic);
    /*  A sender's key is registered when first seen (one X25519); if its
        first event does not open, it is forgotten again, so keys made up
        by a broker cost it nothing but our time.  */
    bool added = !sb_seal_peer_known (self->events, h->key_id);
    if (added && sb_seal_peer_add (self->events, h->key_id, err))
        return s_refuse (self, SB_SEALER_UNKNOWN_KEY, SB_E_UNAUTHORIZED, err,
                         "sealed event on '%s' dropped: %s", h->topic, err->text);
    int rc = s_open (self, self->events, h->key_id, body, h->topic, strlen (h->topic), true, plain,
                     "sealed event on '%s'", h->topic, err);
    if (rc && added)
        sb_seal_peer_remove (self->events, h->key_id);
    return rc ? -1 : 1;
}
