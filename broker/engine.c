/*  engine.c — the broker engine: one actor, one ROUTER socket.

    Everything here runs on the actor's thread, so nothing is locked.  The
    loop polls the ROUTER and the actor pipe, then drains up to a batch of
    messages with ZMQ_DONTWAIT, then expires deadlines and runs the
    heartbeat tick.  See docs/protocol.md for the behaviour; engine.h says
    which file does what.

    This file is the actor itself: it binds the ROUTER (a CURVE server on
    a secure broker, with a socket monitor counting the handshakes libzmq
    refuses before ZAP is asked), receives each message, finds its peer,
    and hands it to the file that handles its command.  It also holds the
    public API (broker/broker.h): the configuration is checked and copied
    before the actor starts, and the actor reports whether it could bind.
*/
#include "engine.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct sb_broker {
    zactor_t *actor;
    args_t args;
};

/*  --------------------------------------------------------------------
    Small helpers shared by the broker's files.  */

/*  Makes room for one more pointer in *array; 0 or -1 (out of memory).  */
int
sb__grow (void ***array, size_t count, size_t *alloc)
{
    if (count < *alloc)
        return 0;
    size_t n = *alloc ? *alloc * 2 : 8;
    void **a = realloc (*array, n * sizeof (void *));
    if (!a)
        return -1;
    *array = a;
    *alloc = n;
    return 0;
}

/*  Counts a frame dropped for reason (sys.stats bad_frames).  */
void
sb__bad (engine_t *self, int reason)
{
    self->stats.bad [reason]++;
}

/*  --------------------------------------------------------------------
    Receiving.  */

/*  Handles one decoded message from peer p (NULL if unknown).  */
static void
s_handle (engine_t *self, peer_t *p, const uint8_t *key, zmq_msg_t *id, sb_header_t *h,
          const sb_body_t *body)
{
    uint32_t command = h->command;
    if (!p) {
        /*  Unknown peers: only these commands make a session, or a
            one-off request/publication.  */
        if (command == SB_CMD_HELLO || command == SB_CMD_READY || command == SB_CMD_SUBSCRIBE
        ||  command == SB_CMD_HEARTBEAT || command == SB_CMD_REQUEST || command == SB_CMD_PEER
        ||  command == SB_CMD_DIRECTORY) {
            p = sb__peer_new (self, key, zmq_msg_data (id), zmq_msg_size (id));
            if (!p)
                return;
            if (command != SB_CMD_REQUEST && command != SB_CMD_PEER)
                sb__welcome (self, p, h);
        }
        else
        if (command == SB_CMD_PUBLISH) {
            sb__on_publish (self, h, body);
            return;
        }
        else
        if (command == SB_CMD_REPLY || command == SB_CMD_ERROR) {
            self->stats.late_replies++;
            return;
        }
        else
        if (command == SB_CMD_BYE || command == SB_CMD_UNSUBSCRIBE)
            return;
        else {
            sb__bad (self, R_UNEXPECTED);
            return;
        }
        if (command == SB_CMD_HELLO || command == SB_CMD_HEARTBEAT)
            return;
    }
    else
    if (!p->welcomed && (command == SB_CMD_READY || command == SB_CMD_SUBSCRIBE
                     ||  command == SB_CMD_HEARTBEAT || command == SB_CMD_DIRECTORY))
        sb__welcome (self, p, h);

    switch (command) {
        case SB_CMD_HELLO:
            sb__welcome (self, p, h);
            break;
        case SB_CMD_READY:
            sb__on_ready (self, p, h, body);
            break;
        case SB_CMD_REQUEST:
            sb__on_request (self, p, h, body);
            break;
        case SB_CMD_REPLY:
        case SB_CMD_ERROR:
            sb__on_answer (self, p, h, body);
            break;
        case SB_CMD_PUBLISH:
            sb__on_publish (self, h, body);
            break;
        case SB_CMD_SUBSCRIBE:
            sb__on_subscribe (self, p, h, true);
            break;
        case SB_CMD_UNSUBSCRIBE:
            sb__on_subscribe (self, p, h, false);
            break;
        case SB_CMD_HEARTBEAT:
            break;
        case SB_CMD_BYE:
            sb__doom (self, p);
            break;
        case SB_CMD_PEER:
            sb__on_peer (self, p, h);
            break;
        case SB_CMD_DIRECTORY:
            sb__on_directory (self, p, body);
            break;
        default:
            sb__bad (self, R_UNEXPECTED);
            break;
    }
}

/*  Receives and handles one message.  Returns -1 when nothing is waiting.  */
static int
s_recv_one (engine_t *self)
{
    zmq_msg_t id;
    zmq_msg_init (&id);
    if (zmq_msg_recv (&id, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&id);
        return -1;
    }
    /*  A routing id alone (no frame after it) is a message of 0 frames. */
    self->in.count = 0;
    self->in.received = 0;
    if (zmq_msg_more (&id))
        sb_frame_recv (&self->in, self->sock, 0);

    uint8_t key [256];
    size_t id_size = zmq_msg_size (&id);
    if (id_size > 255)
        id_size = 255;
    sb__peer_key (key, zmq_msg_data (&id), id_size);
    peer_t *p = zhashx_lookup (self->peers, key);
    if (p && p->doomed) {
        /*  It said BYE (or was declared dead) earlier in this batch and
            speaks again: forget it now, so this message starts afresh.  */
        sb__peer_destroy (self, p);
        p = NULL;
    }
    if (p)
        p->last_heard = self->now;

    void (*capture) (const void *, size_t, void *) = self->args->config.capture;
    if (capture && self->in.received == 2)
        capture (zmq_msg_data (&self->in.frames [1]), zmq_msg_size (&self->in.frames [1]),
                 self->args->config.capture_arg);
    sb_header_t h;
    sb_body_t body;
    int reason = sb_frame_decode (&self->in, &h, &body);
    if (reason == SB_WIRE_OK && capture && body.frame == &self->in.frames [0])
        capture (body.data, body.size, self->args->config.capture_arg);
    if (reason != SB_WIRE_OK)
        sb__bad (self, reason);         /* SB_FRAME_BAD_FRAMES is R_FRAMES */
    else
        s_handle (self, p, key, &id, &h, body.frame ? &body : NULL);
    sb_frame_close (&self->in);
    zmq_msg_close (&id);
    return 0;
}

/*  --------------------------------------------------------------------
    The actor.  */

static void
s_engine_destroy (engine_t *self)
{
    /*  Tell the cluster first: a leaving beacon and BYE on every link.  */
    if (self->beacon)
        sb_beacon_leave (self->beacon);
    sb_beacon_destroy (&self->beacon);
    for (size_t i = 0; i < self->nbrokers; i++) {
        sb__link_close (self, self->brokers [i]);
        free (self->brokers [i]);
    }
    free (self->brokers);
    free (self->items);
    free (self->owners);
    msgpack_sbuffer_destroy (&self->dbuf);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->welcomed)
            sb__send_simple (self, p, SB_CMD_BYE);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        sb__doom (self, p);
    sb__reap (self);
    for (size_t i = 0; i < self->nchunks; i++)
        free (self->chunks [i]);
    free (self->chunks);
    free (self->heap);
    free (self->bcast);
    zhashx_destroy (&self->peers);
    zhashx_destroy (&self->services);
    zhashx_destroy (&self->known);
    zhashx_destroy (&self->groups);
    zhashx_destroy (&self->refused_names);
    msgpack_sbuffer_destroy (&self->sbuf);
    if (self->monitor) {
        zmq_socket_monitor (self->sock, NULL, 0);
        zsock_destroy (&self->monitor);
    }
    if (self->router) {
        /*  Give the BYEs a moment to leave, never more.  */
        zsock_set_linger (self->router, 100);
        zsock_destroy (&self->router);
    }
}

static int
s_engine_bind (engine_t *self)
{
    args_t *a = self->args;
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->router) {
        snprintf (a->error, sizeof a->error, "cannot create socket: %s", zmq_strerror (zmq_errno ()));
        return -1;
    }
    self->sock = zsock_resolve (self->router);
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_maxmsgsize (self->router, (int) (a->config.body_max + SB_HEADER_MAX));
    zsock_set_sndhwm (self->router, HWM);
    zsock_set_rcvhwm (self->router, HWM);
    zsock_set_linger (self->router, 0);
    sb_error_t err;
    if (a->identity && sb_zap_curve_server (self->sock, sb_identity_keys (a->identity), &err)) {
        snprintf (a->error, sizeof a->error, "%s", err.text);
        return -1;
    }
    if (zsock_bind (self->router, "%s", a->bind) < 0) {
        snprintf (a->error, sizeof a->error, "cannot bind %.160s: %.60s", a->bind,
                  zmq_strerror (zmq_errno ()));
        return -1;
    }
    char *endpoint = zsock_last_endpoint (self->router);
    snprintf (a->endpoint, sizeof a->endpoint, "%s", endpoint ? endpoint : a->bind);
    zstr_free (&endpoint);
    if (self->secure) {
        /*  A client that fails the CURVE handshake before ZAP is asked (a
            plaintext client, a wrong server key, garbage) is refused by
            libzmq alone: a socket monitor is the only way to count it.
            ZAP's own refusals (HANDSHAKE_FAILED_AUTH) are counted by zap.c. */
        char monitor [64];
        snprintf (monitor, sizeof monitor, "inproc://sb-broker-handshakes-%p", (void *) self);
        if (zmq_socket_monitor (self->sock, monitor, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0) {
            self->monitor = zsock_new (ZMQ_PAIR);
            if (self->monitor && zsock_connect (self->monitor, "%s", monitor) < 0)
                zsock_destroy (&self->monitor);
        }
    }
    return 0;
}

/*  Counts the failed handshakes the monitor reports (two frames each:
    event number and value, then the peer's address).  */
static void
s_monitor_recv (engine_t *self)
{
    for (int i = 0; i < 64; i++) {
        zmsg_t *event = zmsg_recv_nowait (self->monitor);
        if (!event)
            break;
        zframe_t *head = zmsg_first (event);
        if (head && zframe_size (head) >= 2)
            self->stats.handshakes_failed++;
        zmsg_destroy (&event);
    }
}

static void
s_broker_actor (zsock_t *pipe, void *arg)
{
    engine_t engine, *self = &engine;
    memset (self, 0, sizeof *self);
    self->args = arg;
    self->pipe = pipe;
    self->hb = self->args->config.heartbeat_ms;
    self->now = self->started = zclock_mono ();
    self->peers = zhashx_new ();
    if (self->peers) {
        /*  Keys live in their peer_t: neither copied nor freed here.  */
        zhashx_set_key_hasher (self->peers, sb__peer_key_hash);
        zhashx_set_key_comparator (self->peers, sb__peer_key_compare);
        zhashx_set_key_duplicator (self->peers, NULL);
        zhashx_set_key_destructor (self->peers, NULL);
    }
    self->services = zhashx_new ();
    self->known = zhashx_new ();
    self->groups = zhashx_new ();
    self->refused_names = zhashx_new ();
    self->secure = self->args->identity != NULL;
    self->acl_epoch = 1;
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_sbuffer_init (&self->dbuf);

    if (!self->peers || !self->services || !self->groups || s_engine_bind (self)
    ||  sb__cluster_start (self)) {
        self->args->rc = -1;
        s_engine_destroy (self);
        zsock_signal (pipe, 0);
        return;
    }
    self->args->rc = 0;
    zsock_signal (pipe, 0);

    int tick = self->hb / 4 > 0 ? self->hb / 4 : 1;
    self->next_tick = self->now + tick;
    self->next_dir = self->now;
    int beacon_fd = self->beacon ? sb_beacon_fd (self->beacon) : -1;
    while (!self->stop) {
        int64_t wake = self->next_tick;
        if (self->heap_size && self->heap [0]->deadline < wake)
            wake = self->heap [0]->deadline;
        if (self->beacon && self->beacon_due < wake)
            wake = self->beacon_due;
        long timeout = wake > self->now ? (long) (wake - self->now) : 0;
        /*  ROUTER, pipe, the beacon if any, then one item per open link
            (owners [i] says whose).  */
        size_t nitems = 4 + self->nbrokers;
        if (nitems > self->items_alloc) {
            zmq_pollitem_t *items = realloc (self->items, nitems * sizeof *items);
            cbroker_t **owners = realloc (self->owners, nitems * sizeof *owners);
            if (items)
                self->items = items;
            if (owners)
                self->owners = owners;
            if (!items || !owners)
                break;
            self->items_alloc = nitems;
        }
        zmq_pollitem_t *items = self->items;
        cbroker_t **owners = self->owners;
        int count = 0;
        items [count++] = (zmq_pollitem_t) { self->sock, 0, ZMQ_POLLIN, 0 };
        items [count++] = (zmq_pollitem_t) { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 };
        int beacon_item = -1;
        if (beacon_fd >= 0) {
            beacon_item = count;
            items [count++] = (zmq_pollitem_t) { NULL, beacon_fd, ZMQ_POLLIN, 0 };
        }
        int monitor_item = -1;
        if (self->monitor) {
            monitor_item = count;
            items [count++] = (zmq_pollitem_t) { zsock_resolve (self->monitor), 0, ZMQ_POLLIN, 0 };
        }
        int first_link = count;
        for (size_t i = 0; i < self->nbrokers; i++)
            if (self->brokers [i]->link) {
                owners [count] = self->brokers [i];
                items [count++] = (zmq_pollitem_t) { zsock_resolve (self->brokers [i]->link), 0, ZMQ_POLLIN, 0 };
            }
        if (zmq_poll (items, count, timeout) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        self->now = zclock_mono ();
        if (items [1].revents & ZMQ_POLLIN) {
            char *command = zstr_recv (pipe);
            if (!command || streq (command, "$TERM"))
                self->stop = true;
            else
            if (streq (command, "RELOAD")) {
                sb_error_t err;
                int rc = 0;
                if (self->args->revoked && sb_revocation_reload (self->args->revoked, &err))
                    rc = -1;
                self->acl_epoch = self->acl_epoch + 1 ? self->acl_epoch + 1 : 1;
                zsock_signal (pipe, (byte) (rc ? 1 : 0));
            }
            zstr_free (&command);
        }
        for (int n = 0; n < BATCH_MAX; n++) {
            if (s_recv_one (self))
                break;
            if ((n & 63) == 63)
                self->now = zclock_mono ();
        }
        sb__reap (self);
        self->now = zclock_mono ();
        sb__expire (self);
        if (monitor_item >= 0 && (items [monitor_item].revents & ZMQ_POLLIN))
            s_monitor_recv (self);
        /*  Links before beacons: a beacon event may close a link.  */
        for (int i = first_link; i < count; i++)
            if (items [i].revents & ZMQ_POLLIN)
                sb__link_recv (self, owners [i]);
        if (self->beacon) {
            bool readable = beacon_item >= 0 && (items [beacon_item].revents & ZMQ_POLLIN);
            if (readable || self->now >= self->beacon_due) {
                sb__beacon_work (self, readable);
                int due = sb_beacon_timeout (self->beacon, self->now);
                self->beacon_due = self->now + (due >= 0 ? due : 1000);
            }
        }
        if (self->now >= self->next_tick) {
            sb__peers_tick (self);
            sb__services_retry (self);
            sb__links_tick (self);
            sb__reap (self);
            sb__trim ();
            self->next_tick = self->now + tick;
        }
    }
    s_engine_destroy (self);
}

/*  --------------------------------------------------------------------
    Public API.  */

static void
s_broker_free (sb_broker_t *self)
{
    sb_zap_destroy (&self->args.zap);
    sb_revocation_destroy (&self->args.revoked);
    sb_identity_destroy (&self->args.identity);
    free (self);
}

/*  Cluster settings, checked and copied into a.  */
static int
s_cluster_config (sb_broker_config_t *c, args_t *a, sb_error_t *err)
{
    const char *cluster = c->cluster ? c->cluster : "default";
    const char *beacon = c->beacon ? c->beacon : "off";
    if (!sb_name_valid (cluster, SB_NAME_MEMBER))
        return sb_error_set (err, SB_E_BAD_REQUEST, "cluster name '%.64s' is not a valid name", cluster);
    if (!*beacon || strlen (beacon) >= sizeof a->beacon)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon mode '%.64s' is empty or too long", beacon);
    if (c->beacon_port < 0 || c->beacon_port > 65535)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon port %d is not 0..65535", c->beacon_port);
    if (c->beacon_interval_ms
    &&  (c->beacon_interval_ms < SB_BEACON_INTERVAL_MIN || c->beacon_interval_ms > SB_BEACON_INTERVAL_MAX))
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon interval must be %d..%d ms",
                             SB_BEACON_INTERVAL_MIN, SB_BEACON_INTERVAL_MAX);
    strcpy (a->cluster, cluster);
    strcpy (a->beacon, beacon);
    c->cluster = a->cluster;
    c->beacon = a->beacon;
    return 0;
}

/*  Loads the identity, the ZAP handler and the revocation list.  */
static int
s_security_load (sb_broker_config_t *c, args_t *a, sb_error_t *err)
{
    a->identity = sb_identity_load (c->keys_dir, c->member, err);
    if (!a->identity)
        return -1;
    if (!sb_cert_is_broker (sb_identity_cert (a->identity)))
        zsys_warning ("broker %s: the certificate of '%s' has no broker role: other members and "
                      "brokers ignore its beacons and its PEER (sign it with 'sb cert sign --broker')",
                      a->name, sb_identity_name (a->identity));
    const char *dir = sb_identity_dir (a->identity);
    char authority [PATH_MAX];
    if (snprintf (authority, sizeof authority, "%s/%s", dir, SB_IDENTITY_AUTHORITY_FILE)
        >= (int) sizeof authority)
        return sb_error_set (err, SB_E_BAD_REQUEST, "keys directory path too long");
    a->zap = sb_zap_new (authority, c->certs_dir ? c->certs_dir : dir, c->revoked, err);
    if (!a->zap)
        return -1;
    if (c->revoked) {
        a->revoked = sb_revocation_new (c->revoked, err);
        if (!a->revoked)
            return -1;
    }
    memcpy (a->verifier.authority_pk, sb_identity_authority (a->identity), SB_KEY_SIZE);
    a->verifier.revoked = a->revoked;
    return 0;
}

sb_broker_t *
sb_broker_new (const sb_broker_config_t *config, sb_error_t *err)
{
    sb_broker_config_t c = { 0 };
    if (config)
        c = *config;
    if (c.heartbeat_ms < 0 || c.default_timeout_ms < 0 || c.max_timeout_ms < 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "heartbeat and timeouts must not be negative");
        return NULL;
    }
    if (c.body_max > (size_t) INT32_MAX - SB_HEADER_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "body_max too large");
        return NULL;
    }
    sb_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    args_t *a = &self->args;
    if (c.name) {
        if (!sb_name_valid (c.name, SB_NAME_MEMBER)) {
            free (self);
            sb_error_set (err, SB_E_BAD_REQUEST, "broker name '%s' is not a valid name", c.name);
            return NULL;
        }
        snprintf (a->name, sizeof a->name, "%s", c.name);
    }
    else
        snprintf (a->name, sizeof a->name, "broker-%d", (int) getpid ());
    const char *bind = c.bind ? c.bind : SB_BROKER_BIND_DEFAULT;
    if (strlen (bind) >= sizeof a->bind) {
        free (self);
        sb_error_set (err, SB_E_BAD_REQUEST, "endpoint too long");
        return NULL;
    }
    strcpy (a->bind, bind);
    c.bind = a->bind;
    c.name = a->name;
    if (!c.heartbeat_ms)
        c.heartbeat_ms = SB_BROKER_HEARTBEAT_DEFAULT;
    if (!c.queue_max)
        c.queue_max = SB_BROKER_QUEUE_DEFAULT;
    if (!c.body_max)
        c.body_max = SB_BODY_MAX_DEFAULT;
    if (!c.default_timeout_ms)
        c.default_timeout_ms = SB_BROKER_TIMEOUT_DEFAULT;
    if (!c.max_timeout_ms)
        c.max_timeout_ms = SB_BROKER_MAX_TIMEOUT_DEFAULT;
    if (c.default_timeout_ms > c.max_timeout_ms)
        c.default_timeout_ms = c.max_timeout_ms;
    if (!c.peer_budget)
        c.peer_budget = SB_BROKER_PEER_BUDGET_DEFAULT;
    if (!c.peer_services_max)
        c.peer_services_max = SB_BROKER_PEER_SERVICES_DEFAULT;
    if (!c.services_max)
        c.services_max = SB_BROKER_SERVICES_DEFAULT;
    if (!c.instances_max)
        c.instances_max = SB_BROKER_INSTANCES_DEFAULT;
    if (s_cluster_config (&c, a, err) || (c.secure && s_security_load (&c, a, err))) {
        s_broker_free (self);
        return NULL;
    }
    a->config = c;

    self->actor = zactor_new (s_broker_actor, a);
    if (!self->actor || a->rc) {
        sb_error_set (err, SB_E_UNAVAILABLE, "%s", self->actor ? a->error : "cannot start broker thread");
        zactor_destroy (&self->actor);
        s_broker_free (self);
        return NULL;
    }
    return self;
}

int
sb_broker_reload (sb_broker_t *self, sb_error_t *err)
{
    if (!self || !self->args.zap)
        return 0;
    if (sb_zap_reload (self->args.zap, err))
        return -1;
    zstr_send (self->actor, "RELOAD");
    if (zsock_wait (self->actor) != 0)
        return sb_error_set (err, SB_E_BAD_REQUEST, "revocation list %s could not be re-read; "
                             "the previous list stays in force", self->args.config.revoked);
    return 0;
}

const uint8_t *
sb_broker_public_key (sb_broker_t *self)
{
    return self && self->args.identity
         ? sb_keys_curve_public (sb_identity_keys (self->args.identity)) : NULL;
}

const char *
sb_broker_endpoint (sb_broker_t *self)
{
    return self ? self->args.endpoint : NULL;
}

const char *
sb_broker_name (sb_broker_t *self)
{
    return self ? self->args.name : NULL;
}

void
sb_broker_destroy (sb_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_broker_t *self = *self_p;
    zactor_destroy (&self->actor);
    s_broker_free (self);
    *self_p = NULL;
}

