/*  runtime_sealing.t — end-to-end sealing through a real secure broker.

    A secure broker (CURVE, ZAP, ACLs) runs in-process with its capture
    hook on: the test sees every body frame the broker receives, and uses
    the same hook as a compromised broker would, to alter or replay a
    frame in flight.  The `vault` service runs as an instance with member
    keys; `alice` calls it through a client with keys; `mallory` speaks
    the protocol by hand through a raw link (a member, but not a
    well-behaved one); a fake broker hands out substituted keys.

    What a user would notice: canary strings sent in a request, a reply
    and an event reach the service and the caller but appear in no frame
    the broker receives; a body altered or replayed in flight, a truncated
    sealed body, an unknown key, a plaintext request or event are refused
    with a clear error, counted by the receiver, and the next call works;
    a broker handing out a key that the authority did not certify for the
    service is not believed.  Every wait is bounded.
*/
#define _GNU_SOURCE                     /* memmem */
#include "broker/broker.h"
#include "security/cert.h"
#include "host/instance.h"
#include "security/sealer.h"
#include "bus/link.h"
#include "tap.h"
#include "broker/zap.h"

#include <czmq.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_REQ_CANARY "CANARY-req-5e1d93c07b"
#define S_REPLY_CANARY "CANARY-reply-a8c2f4e619"
#define S_EVENT_CANARY "CANARY-event-0b7d6e25ac"
#define S_BIG 60                        /* sealed bodies are at least this long here */

static char s_dir [256];
static sb_keys_t *s_authority;

/*  --------------------------------------------------------------------
    What the broker receives: recorded, and altered on demand.  */

enum { S_WATCH, S_TAMPER, S_REPLAY };

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_seen [1 << 20];
static size_t s_seen_size;
static size_t s_seen_frames;
static int s_mode = S_WATCH;
static int s_skip;                      /* S_TAMPER: big bodies to let pass first */
static int s_altered;                   /* frames altered so far */
static uint8_t s_recorded [4096];       /* S_REPLAY: the first big body */
static size_t s_recorded_size;
static bool s_big_leak;                 /* a frame too large to record showed BIG-CANARY */

/*  The broker's thread, for every body frame it receives.  The frame is
    the broker's own received message, so writing to it is what a broker
    that alters bodies would do.  */
static void
s_capture (const void *body, size_t size, void *arg)
{
    (void) arg;
    pthread_mutex_lock (&s_lock);
    s_seen_frames++;
    if (size <= sizeof s_seen - s_seen_size) {
        memcpy (s_seen + s_seen_size, body, size);
        s_seen_size += size;
    }
    else
    if (memmem (body, size, "BIG-CANARY", 10))
        s_big_leak = true;
    uint8_t *bytes = (uint8_t *) body;
    if (size >= S_BIG && s_mode == S_TAMPER) {
        if (s_skip-- == 0) {
            bytes [size / 2] ^= 0x20;
            s_altered++;
            s_mode = S_WATCH;
        }
    }
    else
    if (size >= S_BIG && s_mode == S_REPLAY && size <= sizeof s_recorded) {
        if (s_recorded_size == 0) {
            memcpy (s_recorded, body, size);
            s_recorded_size = size;
        }
        else
        if (size == s_recorded_size) {
            memcpy (bytes, s_recorded, size);
            s_altered++;
            s_mode = S_WATCH;
        }
    }
    pthread_mutex_unlock (&s_lock);
}

static bool
s_seen_has (const char *text)
{
    size_t n = strlen (text);
    bool found = false;
    pthread_mutex_lock (&s_lock);
    for (size_t i = 0; i + n <= s_seen_size && !found; i++)
        found = !memcmp (s_seen + i, text, n);
    pthread_mutex_unlock (&s_lock);
    return found;
}

static void
s_set_mode (int mode, int skip)
{
    pthread_mutex_lock (&s_lock);
    s_mode = mode;
    s_skip = skip;
    s_recorded_size = 0;
    pthread_mutex_unlock (&s_lock);
}

static int
s_altered_count (void)
{
    pthread_mutex_lock (&s_lock);
    int n = s_altered;
    pthread_mutex_unlock (&s_lock);
    return n;
}

/*  --------------------------------------------------------------------
    Keys: an authority, members with certificates, in a temp directory.  */

static sb_cert_t s_last_cert;

static sb_keys_t *
s_member (const sb_keys_t *authority, const char *dir, const char *name, const char *offer,
          const char *call)
{
    sb_error_t err = { 0 };
    sb_keys_t *keys = sb_keys_new_member (name, &err);
    char path [512];
    snprintf (path, sizeof path, "%s/%s.cert", dir, name);
    sb_cert_t *cert = &s_last_cert;
    memset (cert, 0, sizeof *cert);
    if (!keys || sb_cert_init (cert, keys, (uint64_t) time (NULL), 3600, &err)
    ||  sb_cert_add_offer_list (cert, offer, &err) || sb_cert_add_call_list (cert, call, &err)
    ||  sb_cert_sign (cert, authority, &err) || sb_cert_save (cert, path, &err)) {
        tap_diag ("member %s: %s", name, err.text);
        sb_keys_destroy (&keys);
        return NULL;
    }
    snprintf (path, sizeof path, "%s/%s.key", dir, name);
    if (sb_keys_save_secret (keys, path, &err)) {
        tap_diag ("member %s: %s", name, err.text);
        sb_keys_destroy (&keys);
    }
    return keys;
}

/*  --------------------------------------------------------------------
    The vault service: remembers what it was sent (the service's view).  */

static pthread_mutex_t s_view_lock = PTHREAD_MUTEX_INITIALIZER;
static char s_view [65536];
static size_t s_view_size;
static int s_events_seen;

static void
s_view_add (const char *data, size_t size)
{
    pthread_mutex_lock (&s_view_lock);
    if (size < sizeof s_view - s_view_size - 1) {
        memcpy (s_view + s_view_size, data, size);
        s_view_size += size;
        s_view [s_view_size++] = '\n';
    }
    pthread_mutex_unlock (&s_view_lock);
}

static bool
s_view_has (const char *text)
{
    pthread_mutex_lock (&s_view_lock);
    s_view [s_view_size] = 0;
    bool found = strstr (s_view, text) != NULL;
    pthread_mutex_unlock (&s_view_lock);
    return found;
}

static int
s_events_count (void)
{
    pthread_mutex_lock (&s_view_lock);
    int n = s_events_seen;
    pthread_mutex_unlock (&s_view_lock);
    return n;
}

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key)
        &&  memcmp (k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static int
s_put (sb_request_t *req, const msgpack_object *body, void *state)
{
    (void) state;
    const msgpack_object *secret = s_get (body, "secret");
    if (!secret || secret->type != MSGPACK_OBJECT_STR)
        return sb_request_error (req, SB_E_BAD_REQUEST, "put takes {\"secret\": text}");
    s_view_add (secret->via.str.ptr, secret->via.str.size);
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 2);
    msgpack_pack_str_with_body (pk, "echo", 4);
    msgpack_pack_str_with_body (pk, secret->via.str.ptr, secret->via.str.size);
    msgpack_pack_str_with_body (pk, "note", 4);
    msgpack_pack_str_with_body (pk, S_REPLY_CANARY, strlen (S_REPLY_CANARY));
    return sb_reply_send (req);
}

static int
s_get_method (sb_request_t *req, const msgpack_object *body, void *state)
{
    (void) body;
    (void) state;
    return sb_reply_bytes (req, "\xc3", 1);     /* true */
}

static void
s_on_news (const char *topic, const msgpack_object *body, void *arg)
{
    (void) topic;
    (void) arg;
    const msgpack_object *text = s_get (body, "text");
    if (text && text->type == MSGPACK_OBJECT_STR)
        s_view_add (text->via.str.ptr, text->via.str.size);
    pthread_mutex_lock (&s_view_lock);
    s_events_seen++;
    pthread_mutex_unlock (&s_view_lock);
}

static int
s_vault_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    (void) config;
    (void) state;
    if (sb_actor_subscribe (actor, "news", NULL, s_on_news, NULL))
        return sb_error_set (err, SB_E_INTERNAL, "cannot subscribe");
    return 0;
}

static const sb_method_t s_vault_methods [] = {
    { "put", s_put, 0 },
    { "get", s_get_method, 0 },
    { NULL, NULL, 0 }
};

static const sb_service_t s_vault = {
    .abi_version = SB_ABI_VERSION, .name = "vault", .version = "1.0",
    .methods = s_vault_methods, .init = s_vault_init
};

/*  --------------------------------------------------------------------
    Calls and bodies.  */

static size_t
s_pack_secret (char *out, size_t max, const char *key, const char *text)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, key, strlen (key));
    msgpack_pack_str_with_body (&pk, text, strlen (text));
    size_t n = buf.size <= max ? buf.size : 0;
    memcpy (out, buf.data, n);
    msgpack_sbuffer_destroy (&buf);
    return n;
}

/*  Calls vault.put {"secret": text}; 0 and the reply, or -1 and err.  */
static int
s_call_put (sb_client_t *client, const char *text, sb_reply_t **reply, sb_error_t *err)
{
    char body [512];
    size_t size = s_pack_secret (body, sizeof body, "secret", text);
    return sb_client_call (client, "vault", "put", body, size, 3000, reply, err);
}

static sb_sealer_counters_t
s_counters (sb_instance_t *inst)
{
    sb_sealer_counters_t c;
    sb_instance_seal_counters (inst, &c);
    return c;
}

/*  Waits (bounded) until the service counted one more refusal of `reason`. */
static bool
s_refused_wait (sb_instance_t *inst, sb_sealer_reason_t reason, uint64_t before)
{
    for (int i = 0; i < 200; i++) {
        if (s_counters (inst).refused [reason] > before)
            return true;
        zclock_sleep (10);
    }
    return false;
}

/*  --------------------------------------------------------------------
    Mallory: a member speaking the protocol by hand over a raw link.  */

static void
s_raw_welcome (sb_link_t *link, void *arg)
{
    (void) link;
    *(bool *) arg = true;
}

/*  Runs the link until `stop` or an answer to `id` arrives (3 s).  */
static int
s_raw_run (sb_link_t *link, bool *stop, uint64_t id, sb_header_t *answer, zmq_msg_t *body)
{
    int64_t end = zclock_mono () + 3000;
    while (zclock_mono () < end && !(stop && *stop)) {
        sb_link_tick (link, zclock_mono ());
        zmq_pollitem_t item = { sb_link_handle (link), 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 10);
        int rc;
        do {
            zmq_msg_close (body);
            zmq_msg_init (body);
            rc = sb_link_recv (link, answer, body);
            if (rc == 1 && !stop && answer->request_id == id
            &&  (answer->command == SB_CMD_REPLY || answer->command == SB_CMD_ERROR))
                return 0;
        } while (rc >= 0);
    }
    return stop && *stop ? 0 : -1;
}

/*  Sends a REQUEST to vault.METHOD with this body and flags, key id
    `key` (NULL: none); returns the answer's command (ERROR's code and
    text in answer).  */
static int
s_raw_request (sb_link_t *link, uint64_t id, const char *method, const void *data, size_t size,
               bool sealed, const uint8_t *key, sb_header_t *answer, zmq_msg_t *body)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = id;
    h.timeout_ms = 3000;
    h.present |= SB_H_REQUEST_ID | SB_H_TIMEOUT;
    sb_header_set_service (&h, "vault");
    sb_header_set_method (&h, method);
    if (sealed)
        h.flags |= SB_F_SEALED;
    if (key) {
        memcpy (h.key_id, key, SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        h.present |= SB_H_KEY_ID;
    }
    if (sb_link_send_bytes (link, &h, data, size))
        return -1;
    if (s_raw_run (link, NULL, id, answer, body))
        return -1;
    return (int) answer->command;
}

/*  A body sealed by hand as docs/security.md 5.2 says: the envelope
    (format 2, unix ms now, ttl 3000 ms, the context "service.method"),
    then the body, in a crypto_box.  */
static size_t
s_hand_seal (sb_seal_t *seal, const uint8_t *pk, const char *context, const void *plain, size_t size,
             uint8_t *out, size_t max)
{
    uint8_t inner [1024];
    size_t n = strlen (context);
    uint64_t now = (uint64_t) time (NULL) * 1000;
    inner [0] = 2;
    for (int i = 0; i < 8; i++)
        inner [1 + i] = (uint8_t) (now >> (56 - 8 * i));
    memcpy (inner + 9, "\x00\x00\x0b\xb8", 4);
    inner [13] = (uint8_t) n;
    memcpy (inner + 14, context, n);
    memcpy (inner + 14 + n, plain, size);
    size_t sealed = 0;
    sb_error_t err;
    if (sb_seal_box (seal, pk, inner, 14 + n + size, out, max, &sealed, &err) != SB_SEAL_OK)
        return 0;
    return sealed;
}

/*  --------------------------------------------------------------------
    A fake broker that hands out certificates of its choosing.  */

typedef struct {
    bool done;
    sb_code_t code;
    char text [SB_TEXT_MAX + 1];
} s_outcome_t;

static void
s_outcome (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    (void) body;
    s_outcome_t *out = arg;
    out->done = true;
    out->code = err ? err->code : SB_OK;
    snprintf (out->text, sizeof out->text, "%s", err ? err->text : "");
}

static void
s_fake_send (zsock_t *router, zframe_t *to, const sb_header_t *h, const void *body, size_t size)
{
    uint8_t buffer [SB_HEADER_MAX];
    size_t hsize = sb_header_encode (h, buffer);
    zmsg_t *msg = zmsg_new ();
    zmsg_append (msg, &(zframe_t *) { zframe_dup (to) });
    zmsg_addmem (msg, buffer, hsize);
    if (body)
        zmsg_addmem (msg, body, size);
    zmsg_send (&msg, router);
}

/*  One call through the fake broker, which answers sys.keys with `cert`
    (encoded).  *reached says whether a vault REQUEST got to it, *leaked
    whether that request showed the canary.  */
static void
s_through_fake (zsock_t *router, sb_client_t *client, const uint8_t *cert, size_t cert_size,
                s_outcome_t *out, bool *reached, bool *leaked)
{
    memset (out, 0, sizeof *out);
    *reached = *leaked = false;
    char body [256];
    size_t size = s_pack_secret (body, sizeof body, "secret", S_REQ_CANARY);
    sb_error_t err;
    if (sb_client_call_async (client, "vault", "put", body, size, 3000, s_outcome, out, &err)) {
        tap_diag ("call: %s", err.text);
        return;
    }
    int64_t end = zclock_mono () + 5000;
    while (!out->done && zclock_mono () < end) {
        sb_client_dispatch (client, 5);
        zmq_pollitem_t item = { zsock_resolve (router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 5) != 1)
            continue;
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *from = zmsg_first (msg);
        zframe_t *header = zmsg_next (msg);
        zframe_t *frame = zmsg_next (msg);
        sb_header_t h;
        if (!header || sb_header_decode (&h, zframe_data (header), zframe_size (header)) != SB_WIRE_OK) {
            zmsg_destroy (&msg);
            continue;
        }
        sb_header_t answer;
        if (h.command == SB_CMD_HELLO) {
            sb_header_init (&answer, SB_CMD_WELCOME);
            sb_header_set_name (&answer, "fake");
            answer.heartbeat_ms = 1000;
            s_fake_send (router, from, &answer, NULL, 0);
        }
        else
        if (h.command == SB_CMD_REQUEST && streq (h.service, "sys") && streq (h.method, "keys")) {
            msgpack_sbuffer buf;
            msgpack_sbuffer_init (&buf);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, 1);
            msgpack_pack_str_with_body (&pk, "certs", 5);
            msgpack_pack_array (&pk, 1);
            msgpack_pack_bin_with_body (&pk, cert, cert_size);
            sb_header_init (&answer, SB_CMD_REPLY);
            answer.request_id = h.request_id;
            answer.present |= SB_H_REQUEST_ID;
            s_fake_send (router, from, &answer, buf.data, buf.size);
            msgpack_sbuffer_destroy (&buf);
        }
        else
        if (h.command == SB_CMD_REQUEST && streq (h.service, "sys") && streq (h.method, "describe")) {
            /*  The runtime's contract lookup: this broker knows no service.  */
            sb_header_init (&answer, SB_CMD_ERROR);
            answer.request_id = h.request_id;
            answer.code = SB_E_NOT_FOUND;
            answer.flags = SB_F_UNROUTED;
            answer.present |= SB_H_REQUEST_ID | SB_H_CODE;
            s_fake_send (router, from, &answer, NULL, 0);
        }
        else
        if (h.command == SB_CMD_REQUEST) {
            *reached = true;
            const char *canary = S_REQ_CANARY;
            size_t n = strlen (canary);
            for (size_t i = 0; frame && i + n <= zframe_size (frame); i++)
                if (!memcmp (zframe_data (frame) + i, canary, n))
                    *leaked = true;
            sb_header_init (&answer, SB_CMD_ERROR);
            answer.request_id = h.request_id;
            answer.code = SB_E_UNAVAILABLE;
            answer.present |= SB_H_REQUEST_ID | SB_H_CODE;
            sb_header_set_text (&answer, (h.flags & SB_F_SEALED) ? "fake: sealed" : "fake: plaintext");
            s_fake_send (router, from, &answer, NULL, 0);
        }
        zmsg_destroy (&msg);
    }
}

/*  --------------------------------------------------------------------  */

int
main (void)
{
    zsys_init ();
    zsys_set_logsystem (false);
    if (sodium_init () < 0) {
        printf ("Bail out! libsodium\n");
        return 1;
    }
    snprintf (s_dir, sizeof s_dir, "/tmp/sb-sealing.XXXXXX");
    if (!mkdtemp (s_dir)) {
        printf ("Bail out! no temporary directory\n");
        return 1;
    }
    sb_error_t err = { 0 };
    char path [512];
    s_authority = sb_keys_new_authority ("authority", &err);
    snprintf (path, sizeof path, "%s/authority.pub", s_dir);
    if (!s_authority || sb_keys_save_public (s_authority, path, &err)) {
        printf ("Bail out! authority: %s\n", err.text);
        return 1;
    }
    sb_keys_t *broker_keys = s_member (s_authority, s_dir, "broker1", "sys", "*");
    uint8_t broker_cert [SB_CERT_MAX + 128];
    size_t broker_cert_size = sb_cert_encode (&s_last_cert, broker_cert, sizeof broker_cert);
    sb_keys_t *svc_keys = s_member (s_authority, s_dir, "svc", "vault", "");
    sb_cert_t svc_cert = s_last_cert;
    sb_keys_t *alice_keys = s_member (s_authority, s_dir, "alice", "", "vault");
    sb_keys_t *mallory_keys = s_member (s_authority, s_dir, "mallory", "", "vault");
    sb_keys_t *events = sb_keys_new_member ("events", &err);
    snprintf (path, sizeof path, "%s/%s", s_dir, SB_SEALER_EVENTS_FILE);
    if (!broker_keys || !svc_keys || !alice_keys || !mallory_keys || !events
    ||  sb_keys_save_secret (events, path, &err)) {
        printf ("Bail out! member keys: %s\n", err.text);
        return 1;
    }

    sb_broker_config_t config = { 0 };
    config.bind = "tcp://127.0.0.1:*";
    config.name = "sealing-broker";
    config.secure = true;
    config.keys_dir = s_dir;
    config.member = "broker1";
    config.capture = s_capture;
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker) {
        printf ("Bail out! secure broker: %s\n", err.text);
        return 1;
    }
    char key_hex [2 * SB_KEY_SIZE + 1];
    sodium_bin2hex (key_hex, sizeof key_hex, sb_broker_public_key (broker), SB_KEY_SIZE);
    char endpoint [512];
    snprintf (endpoint, sizeof endpoint, "%s#%s", sb_broker_endpoint (broker), key_hex);

    /*  The service, as member svc.  */
    sb_identity_t *svc_id = sb_identity_load (s_dir, "svc", &err);
    sb_instance_options_t options = { .identity = svc_id };
    sb_instance_t *vault = svc_id ? sb_instance_start_with (&s_vault, 0, NULL, endpoint, 10,
                                                            &options, &err) : NULL;
    if (!vault) {
        printf ("Bail out! vault instance: %s\n", err.text);
        return 1;
    }
    sb_client_options_t copts = { .endpoints = endpoint, .keys = s_dir, .member = "alice",
                                  .timeout_ms = 3000 };
    sb_client_t *alice = sb_client_new (&copts, &err);
    tap_ok (alice != NULL, "alice's client loads her identity and the event key (%s)", err.text);
    if (!alice)
        return tap_done ();

    /*  1. The canary: request, reply and event.  The first call may come
        before the instance is welcomed: retry briefly.  */
    sb_reply_t *reply = NULL;
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) {
        rc = s_call_put (alice, S_REQ_CANARY, &reply, &err);
        if (rc)
            zclock_sleep (100);
    }
    tap_ok (rc == 0, "alice calls vault.put through the secure broker (%s)", rc ? err.text : "ok");
    const msgpack_object *echo = reply ? s_get (&reply->body, "echo") : NULL;
    const msgpack_object *note = reply ? s_get (&reply->body, "note") : NULL;
    tap_ok (echo && echo->type == MSGPACK_OBJECT_STR && echo->via.str.size == strlen (S_REQ_CANARY)
            && note && note->type == MSGPACK_OBJECT_STR
            && note->via.str.size == strlen (S_REPLY_CANARY)
            && !memcmp (note->via.str.ptr, S_REPLY_CANARY, note->via.str.size),
            "alice reads the service's reply in clear (request and reply canaries)");
    sb_reply_destroy (&reply);
    tap_ok (s_view_has (S_REQ_CANARY), "the service saw the request canary");

    char event [256];
    size_t event_size = s_pack_secret (event, sizeof event, "text", S_EVENT_CANARY);
    for (int i = 0; i < 100 && !s_view_has (S_EVENT_CANARY); i++) {
        sb_client_publish (alice, "news.flash", event, event_size);
        sb_client_dispatch (alice, 30);
    }
    tap_ok (s_view_has (S_EVENT_CANARY), "the service's subscriber saw the event canary");

    tap_ok (s_seen_frames >= 4 && s_seen_has ("vault"),
            "the capture hook saw %zu body frames, the plaintext sys.keys query among them",
            s_seen_frames);
    tap_ok (!s_seen_has (S_REQ_CANARY), "the request canary is in no frame the broker received");
    tap_ok (!s_seen_has (S_REPLY_CANARY), "the reply canary is in no frame the broker received");
    tap_ok (!s_seen_has (S_EVENT_CANARY), "the event canary is in no frame the broker received");
    sb_sealer_counters_t c = s_counters (vault);
    tap_ok (c.opened >= 2 && c.sealed >= 1 && c.lookups >= 1,
            "the service counted opened %" PRIu64 ", sealed %" PRIu64 ", lookups %" PRIu64,
            c.opened, c.sealed, c.lookups);

    /*  2. A body altered in flight: the request, then the reply.  */
    uint64_t before = s_counters (vault).refused [SB_SEALER_TAMPERED];
    s_set_mode (S_TAMPER, 0);
    rc = s_call_put (alice, "tamper me", &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && strstr (err.text, "tampered"),
            "a request altered by the broker is refused: %s", err.text);
    tap_ok (s_altered_count () == 1 && s_refused_wait (vault, SB_SEALER_TAMPERED, before),
            "and the service counted it as tampered");
    tap_ok (!s_view_has ("tamper me"), "the handler never saw the altered request");
    s_set_mode (S_TAMPER, 1);
    rc = s_call_put (alice, "tamper the reply", &reply, &err);
    tap_ok (rc == -1 && strstr (err.text, "sealed reply refused: tampered"),
            "a reply altered by the broker is refused by the caller: %s", err.text);
    tap_ok (s_altered_count () == 2 && s_view_has ("tamper the reply"),
            "(the request itself went through)");
    rc = s_call_put (alice, "after tampering", &reply, &err);
    tap_ok (rc == 0, "the next call works");
    sb_reply_destroy (&reply);

    /*  A large body (2 MiB) is sealed and opened both ways too.  */
    size_t big = 2 * 1024 * 1024;
    char *text = malloc (big + 1);
    char *packed = malloc (big + 64);
    if (text && packed) {
        memset (text, 'x', big);
        memcpy (text + big / 2, "BIG-CANARY", 10);
        text [big] = 0;
        size_t size = s_pack_secret (packed, big + 64, "secret", text);
        rc = sb_client_call (alice, "vault", "put", packed, size, 10000, &reply, &err);
    }
    echo = reply ? s_get (&reply->body, "echo") : NULL;
    tap_ok (rc == 0 && echo && echo->type == MSGPACK_OBJECT_STR && echo->via.str.size == big
            && !memcmp (echo->via.str.ptr + big / 2, "BIG-CANARY", 10) && !s_big_leak
            && !s_seen_has ("BIG-CANARY"),
            "a 2 MiB body goes both ways sealed (%s)", rc ? err.text : "ok");
    sb_reply_destroy (&reply);
    free (text);
    free (packed);

    /*  3. A request replayed by the broker: the same sealed bytes again. */
    before = s_counters (vault).refused [SB_SEALER_REPLAYED];
    s_set_mode (S_REPLAY, 0);
    rc = s_call_put (alice, "replay", &reply, &err);
    sb_reply_destroy (&reply);
    tap_ok (rc == 0, "a first call goes through (and is recorded)");
    rc = s_call_put (alice, "replay", &reply, &err);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && strstr (err.text, "replayed"),
            "the broker replaying it instead of the next one is refused: %s", err.text);
    tap_ok (s_altered_count () == 3 && s_refused_wait (vault, SB_SEALER_REPLAYED, before),
            "and the service counted it as replayed");
    rc = s_call_put (alice, "after replay", &reply, &err);
    tap_ok (rc == 0, "the next call works");
    sb_reply_destroy (&reply);

    /*  3b. A request the broker captured, replayed after the service
        restarted (a new instance, its replay window empty) and a minute
        went by (every sealer's clock moved on): refused as stale.  */
    s_set_mode (S_REPLAY, 0);
    rc = s_call_put (alice, "captured-1", &reply, &err);
    sb_reply_destroy (&reply);
    sb_instance_stop (&vault);
    vault = sb_instance_start_with (&s_vault, 0, NULL, endpoint, 10, &options, &err);
    rc = -1;
    for (int i = 0; vault && i < 50 && rc; i++) {
        rc = s_call_put (alice, "after the restart", &reply, &err);
        sb_reply_destroy (&reply);
        if (rc)
            zclock_sleep (100);
    }
    tap_ok (rc == 0, "a call captured, the service restarted, and a call to the new instance works");
    sb__sealer_set_clock_offset (61000);
    rc = vault ? s_call_put (alice, "captured-2", &reply, &err) : -1;
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && strstr (err.text, "stale"),
            "61 s later, the captured request replayed to the new instance is refused: %s", err.text);
    tap_ok (vault && s_altered_count () == 4 && s_refused_wait (vault, SB_SEALER_STALE, 0),
            "and the new instance counted it as stale");
    rc = vault ? s_call_put (alice, "a minute later", &reply, &err) : -1;
    tap_ok (rc == 0, "a call sealed then is fresh, and works");
    sb_reply_destroy (&reply);
    sb__sealer_set_clock_offset (0);
    if (!vault)
        return tap_done ();

    /*  4. Mallory by hand: plaintext, unknown key, truncated, replay,
        a body sealed for another method.  */
    sb_identity_t *mallory_id = sb_identity_load (s_dir, "mallory", &err);
    bool welcomed = false;
    sb_link_t *link = mallory_id ? sb_link_new_secure (endpoint, "mallory-raw", 1, mallory_id,
                                                        s_raw_welcome, &welcomed, &err) : NULL;
    sb_header_t answer;
    zmq_msg_t body;
    zmq_msg_init (&body);
    tap_ok (link && s_raw_run (link, &welcomed, 0, &answer, &body) == 0 && welcomed,
            "mallory's raw link is welcomed by the secure broker");
    if (!link)
        return tap_done ();
    char plain [256];
    size_t plain_size = s_pack_secret (plain, sizeof plain, "secret", "raw");
    before = s_counters (vault).refused [SB_SEALER_PLAINTEXT];
    rc = s_raw_request (link, 1, "put", plain, plain_size, false, NULL, &answer, &body);
    tap_ok (rc == SB_CMD_ERROR && answer.code == SB_E_UNAUTHORIZED && strstr (answer.text, "requires sealed"),
            "a plaintext request to a service with keys is refused: %s", answer.text);
    tap_ok (s_counters (vault).refused [SB_SEALER_PLAINTEXT] == before + 1, "and counted");

    uint8_t stranger [SB_KEY_SIZE];
    randombytes_buf (stranger, sizeof stranger);
    uint8_t junk [S_BIG];
    randombytes_buf (junk, sizeof junk);
    rc = s_raw_request (link, 2, "put", junk, sizeof junk, true, stranger, &answer, &body);
    tap_ok (rc == SB_CMD_ERROR && answer.code == SB_E_UNAUTHORIZED && strstr (answer.text, "no certificate"),
            "a body sealed with a key no certificate is known for: %s", answer.text);

    const uint8_t *mallory_pk = sb_keys_curve_public (mallory_keys);
    before = s_counters (vault).refused [SB_SEALER_TRUNCATED];
    rc = s_raw_request (link, 3, "put", junk, 20, true, mallory_pk, &answer, &body);
    tap_ok (rc == SB_CMD_ERROR && answer.code == SB_E_BAD_REQUEST && strstr (answer.text, "truncated"),
            "a truncated sealed body (20 bytes) is refused: %s", answer.text);
    tap_ok (s_counters (vault).refused [SB_SEALER_TRUNCATED] == before + 1, "and counted as truncated");

    sb_seal_t *seal = sb_seal_new (mallory_keys, 0, &err);
    tap_ok (seal && sb_seal_peer_add (seal, svc_cert.curve_pk, &err) == 0, "mallory seals by hand");
    uint8_t sealed [1024];
    size_t sealed_size = s_hand_seal (seal, svc_cert.curve_pk, "vault.put", plain, plain_size,
                                      sealed, sizeof sealed);
    rc = s_raw_request (link, 4, "put", sealed, sealed_size, true, mallory_pk, &answer, &body);
    bool opened = false;
    if (rc == SB_CMD_REPLY && (answer.flags & SB_F_SEALED)) {
        uint8_t inner [1024];
        size_t inner_size = 0;
        sb_error_t why;
        opened = sb_seal_open (seal, svc_cert.curve_pk, SB_KEY_SIZE, zmq_msg_data (&body),
                               zmq_msg_size (&body), inner, sizeof inner, &inner_size, &why) == SB_SEAL_OK
              && inner_size > 14 + SB_SEAL_NONCE_SIZE && inner [0] == 2
              && inner [13] == SB_SEAL_NONCE_SIZE && !memcmp (inner + 14, sealed, SB_SEAL_NONCE_SIZE);
    }
    tap_ok (opened, "a body sealed by hand as documented is answered with a reply sealed "
            "back and bound to the request's nonce");
    before = s_counters (vault).refused [SB_SEALER_REPLAYED];
    rc = s_raw_request (link, 5, "put", sealed, sealed_size, true, mallory_pk, &answer, &body);
    tap_ok (rc == SB_CMD_ERROR && answer.code == SB_E_BAD_REQUEST && strstr (answer.text, "replayed"),
            "the same sealed bytes sent again are refused: %s", answer.text);
    tap_ok (s_counters (vault).refused [SB_SEALER_REPLAYED] == before + 1, "and counted as replayed");
    sealed_size = s_hand_seal (seal, svc_cert.curve_pk, "vault.get", plain, plain_size, sealed, sizeof sealed);
    rc = s_raw_request (link, 6, "put", sealed, sealed_size, true, mallory_pk, &answer, &body);
    tap_ok (rc == SB_CMD_ERROR && strstr (answer.text, "tampered"),
            "a body sealed for vault.get delivered as vault.put is refused: %s", answer.text);

    /*  A flood of sealed requests under made-up keys: each costs the
        worker a lookup, every one is answered `unauthorized`, and the
        worker goes on serving.  */
    int flood = 200, answered = 0, refused = 0;
    for (int i = 0; i < flood; i++) {
        sb_header_t h;
        sb_header_init (&h, SB_CMD_REQUEST);
        h.request_id = 1000 + (uint64_t) i;
        h.timeout_ms = 10000;
        h.flags = SB_F_SEALED;
        h.present |= SB_H_REQUEST_ID | SB_H_TIMEOUT | SB_H_KEY_ID;
        sb_header_set_service (&h, "vault");
        sb_header_set_method (&h, "put");
        randombytes_buf (h.key_id, SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        sb_link_send_bytes (link, &h, junk, sizeof junk);
    }
    int64_t flood_end = zclock_mono () + 15000;
    while (answered < flood && zclock_mono () < flood_end) {
        sb_link_tick (link, zclock_mono ());
        zmq_pollitem_t item = { sb_link_handle (link), 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 10);
        while (true) {
            zmq_msg_close (&body);
            zmq_msg_init (&body);
            int got = sb_link_recv (link, &answer, &body);
            if (got < 0)
                break;
            if (got == 1 && answer.command == SB_CMD_ERROR && answer.request_id >= 1000) {
                answered++;
                refused += answer.code == SB_E_UNAUTHORIZED;
            }
        }
    }
    tap_ok (answered == flood && refused == flood,
            "%d sealed requests under made-up keys: %d answered, %d unauthorized", flood, answered, refused);

    /*  A plaintext event injected on a topic the service hears.  */
    before = s_counters (vault).refused [SB_SEALER_PLAINTEXT];
    int events_before = s_events_count ();
    sb_header_t pub;
    sb_header_init (&pub, SB_CMD_PUBLISH);
    sb_header_set_topic (&pub, "news.fake");
    size_t fake_size = s_pack_secret (plain, sizeof plain, "text", "injected");
    sb_link_send_bytes (link, &pub, plain, fake_size);
    tap_ok (s_refused_wait (vault, SB_SEALER_PLAINTEXT, before) && s_events_count () == events_before
            && !s_view_has ("injected"),
            "a plaintext event is dropped by a subscriber with the event key, and counted");
    rc = s_call_put (alice, "still fine", &reply, &err);
    tap_ok (rc == 0, "after all that, alice's calls still work");
    sb_reply_destroy (&reply);
    zmq_msg_close (&body);
    sb_link_destroy (&link);
    sb_seal_destroy (&seal);

    /*  5. A broker that substitutes keys.  */
    sb_keys_t *fake_keys = sb_keys_new_member ("fake", &err);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (router, 0);
    int port = -1;
    if (fake_keys && router && sb_zap_curve_server (zsock_resolve (router), fake_keys, &err) == 0)
        port = zsock_bind (router, "tcp://127.0.0.1:*");
    char fake_hex [2 * SB_KEY_SIZE + 1];
    sodium_bin2hex (fake_hex, sizeof fake_hex, sb_keys_curve_public (fake_keys), SB_KEY_SIZE);
    char fake_endpoint [512];
    snprintf (fake_endpoint, sizeof fake_endpoint, "tcp://127.0.0.1:%d#%s", port, fake_hex);
    sb_client_options_t fopts = { .endpoints = fake_endpoint, .keys = s_dir, .member = "alice" };
    sb_client_t *victim = port > 0 ? sb_client_new (&fopts, &err) : NULL;
    tap_ok (victim != NULL, "alice connects to a broker that lies about keys");

    s_outcome_t out;
    bool reached = false, leaked = false;
    if (victim)
        s_through_fake (router, victim, broker_cert, broker_cert_size, &out, &reached, &leaked);
    tap_ok (out.done && out.code == SB_E_UNAUTHORIZED && strstr (out.text, "offer vault") && !reached,
            "the broker's own (valid) certificate for vault is refused: %s", out.text);

    /*  svc's certificate with the fake key written into it.  */
    uint8_t forged [SB_CERT_MAX + 128];
    size_t forged_size = sb_cert_encode (&svc_cert, forged, sizeof forged);
    for (size_t i = 0; i + SB_KEY_SIZE <= forged_size; i++)
        if (!memcmp (forged + i, svc_cert.curve_pk, SB_KEY_SIZE)) {
            memcpy (forged + i, sb_keys_curve_public (fake_keys), SB_KEY_SIZE);
            break;
        }
    if (victim)
        s_through_fake (router, victim, forged, forged_size, &out, &reached, &leaked);
    tap_ok (out.done && out.code == SB_E_UNAUTHORIZED && strstr (out.text, "signature") && !reached,
            "the service's certificate with the broker's key written in is refused: %s", out.text);

    /*  A certificate for vault, signed by another authority.  */
    sb_keys_t *other = sb_keys_new_authority ("other", &err);
    char other_dir [300];
    snprintf (other_dir, sizeof other_dir, "%s/other", s_dir);
    mkdir (other_dir, 0700);
    sb_keys_t *svc2 = other ? s_member (other, other_dir, "svc", "vault", "") : NULL;
    uint8_t foreign [SB_CERT_MAX + 128];
    size_t foreign_size = svc2 ? sb_cert_encode (&s_last_cert, foreign, sizeof foreign) : 0;
    if (victim && foreign_size)
        s_through_fake (router, victim, foreign, foreign_size, &out, &reached, &leaked);
    tap_ok (out.done && out.code == SB_E_UNAUTHORIZED && strstr (out.text, "authority") && !reached,
            "a certificate signed by another authority is refused: %s", out.text);

    /*  Control: with the genuine certificate the request does go out,
        sealed, and the lying broker still reads nothing.  */
    uint8_t genuine [SB_CERT_MAX + 128];
    size_t genuine_size = sb_cert_encode (&svc_cert, genuine, sizeof genuine);
    if (victim)
        s_through_fake (router, victim, genuine, genuine_size, &out, &reached, &leaked);
    tap_ok (out.done && reached && !leaked && strstr (out.text, "fake: sealed"),
            "with the genuine certificate the request reaches that broker sealed, canary hidden (%s)",
            out.text);

    sb_client_destroy (&victim);

    /*  6. A cluster where one broker knows no vault worker yet (it has
        just started): its empty sys.keys answer sends the lookup on to
        the other broker, and its unrouted not_found sends the call on.  */
    char both [1100];
    snprintf (both, sizeof both, "%s,%s", fake_endpoint, endpoint);
    sb_client_options_t bopts = { .endpoints = both, .keys = s_dir, .member = "alice" };
    sb_client_t *pair = port > 0 ? sb_client_new (&bopts, &err) : NULL;
    int empty_answers = 0;
    memset (&out, 0, sizeof out);
    int64_t start = zclock_mono (), end = start + 8000;
    bool called = false;
    while (pair && !out.done && zclock_mono () < end) {
        /*  Both links welcomed first, so the lookup may go to either.  */
        if (!called && zclock_mono () - start > 300) {
            size_t n = s_pack_secret (event, sizeof event, "secret", "via the cluster");
            called = sb_client_call_async (pair, "vault", "put", event, n, 5000, s_outcome, &out, &err) == 0;
        }
        sb_client_dispatch (pair, 5);
        zmq_pollitem_t item = { zsock_resolve (router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 5) != 1)
            continue;
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *from = zmsg_first (msg);
        zframe_t *header = zmsg_next (msg);
        sb_header_t h, reply_h;
        if (header && sb_header_decode (&h, zframe_data (header), zframe_size (header)) == SB_WIRE_OK) {
            if (h.command == SB_CMD_HELLO) {
                sb_header_init (&reply_h, SB_CMD_WELCOME);
                sb_header_set_name (&reply_h, "new");
                reply_h.heartbeat_ms = 1000;
                s_fake_send (router, from, &reply_h, NULL, 0);
            }
            else
            if (h.command == SB_CMD_REQUEST && streq (h.service, "sys") && streq (h.method, "keys")) {
                empty_answers++;
                sb_header_init (&reply_h, SB_CMD_REPLY);
                reply_h.request_id = h.request_id;
                reply_h.present |= SB_H_REQUEST_ID;
                s_fake_send (router, from, &reply_h, "\x81\xa5" "certs" "\x90", 8);
            }
            else
            if (h.command == SB_CMD_REQUEST) {
                sb_header_init (&reply_h, SB_CMD_ERROR);
                reply_h.request_id = h.request_id;
                reply_h.code = SB_E_NOT_FOUND;
                reply_h.flags = SB_F_UNROUTED;
                reply_h.present |= SB_H_REQUEST_ID | SB_H_CODE;
                sb_header_set_text (&reply_h, "no service 'vault'");
                s_fake_send (router, from, &reply_h, NULL, 0);
            }
        }
        zmsg_destroy (&msg);
    }
    tap_ok (out.done && out.code == SB_OK && empty_answers >= 1,
            "a broker that knows no vault yet answers the key lookup empty (%d), the other "
            "broker's answer is used and the call succeeds (%s)", empty_answers,
            out.code ? out.text : "ok");
    sb_client_destroy (&pair);
    zsock_destroy (&router);
    sb_client_destroy (&alice);
    sb_instance_stop (&vault);
    sb_broker_destroy (&broker);
    sb_identity_destroy (&svc_id);
    sb_identity_destroy (&mallory_id);
    sb_keys_destroy (&svc2);
    sb_keys_destroy (&other);
    sb_keys_destroy (&fake_keys);
    sb_keys_destroy (&events);
    sb_keys_destroy (&broker_keys);
    sb_keys_destroy (&svc_keys);
    sb_keys_destroy (&alice_keys);
    sb_keys_destroy (&mallory_keys);
    sb_keys_destroy (&s_authority);
    char command [400];
    snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
    if (system (command) != 0)
        tap_diag ("could not remove %s", s_dir);
    return tap_done ();
}
