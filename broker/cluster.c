/*  cluster.c — the broker's cluster: beacons, links, PEER and DIRECTORY.

    - The actor embeds a beacon (runtime/bus/beacon.h) polled with the
      ROUTER.  Every broker it hears of gets a DEALER "link" from this
      broker: PEER first, HEARTBEAT when idle, DIRECTORY (our local
      services) when the directory changes and every 2 heartbeats.  What
      other brokers send over their links arrives on the ROUTER as from a
      peer flagged `broker`; its last DIRECTORY body is kept (validated)
      and listed by sys.services.  Requests are never forwarded: every
      service host connects to every broker (docs/protocol.md section 9).
*/
#include "engine.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*  --------------------------------------------------------------------
    Other brokers' sessions with us (ROUTER side).  */

void
sb__remote_free (remote_t **remote_p)
{
    if (*remote_p) {
        free ((*remote_p)->body);
        free (*remote_p);
        *remote_p = NULL;
    }
}

/*  Logs, once per member name, that a member without the broker role
    tried to act as one (`what`: its beacon, PEER, DIRECTORY).  At most
    REFUSED_NAMES_MAX names are remembered; past that refusals are only
    counted.  */
void
sb__not_broker_once (engine_t *self, const char *member, const char *what)
{
    if (!self->refused_names || zhashx_size (self->refused_names) >= REFUSED_NAMES_MAX
    ||  zhashx_insert (self->refused_names, member, (void *) 1))
        return;
    zsys_warning ("broker %s: member '%s' is not a broker (its certificate has no broker role): "
                  "its %s and every later one is ignored", self->args->name, member, what);
}

/*  May this peer speak for a broker?  Insecure: anyone; secure: a member
    whose certificate has the broker role (docs/protocol.md section 9).
    Refusals are counted (sys.stats not_broker) and logged once per member. */
static bool
s_cluster_member (engine_t *self, peer_t *p, const char *what)
{
    if (!self->secure || sb__is_broker (self, p))
        return true;
    self->stats.not_broker++;
    sb__not_broker_once (self, p->cert ? p->cert->name : "(no valid certificate)", what);
    return false;
}

/*  PEER from another broker's link: a session like HELLO, answered PEER.  */
void
sb__on_peer (engine_t *self, peer_t *p, const sb_header_t *h)
{
    if (!s_cluster_member (self, p, "PEER"))
        return;
    p->welcomed = true;
    p->broker = true;
    if (h->present & SB_H_NAME)
        strcpy (p->name, h->name);
    sb_header_t out;
    sb_header_init (&out, SB_CMD_PEER);
    sb_header_set_name (&out, self->args->name);
    sb__send (self, p, &out, NULL);
}

static bool
s_valid_hex_id (const char *text)
{
    if (strlen (text) != 2 * SB_BEACON_ID_SIZE)
        return false;
    for (const char *c = text; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

static bool
s_printable (const char *text)
{
    if (!*text)
        return false;
    for (const unsigned char *c = (const unsigned char *) text; *c; c++)
        if (*c < 0x21 || *c > 0x7e)
            return false;
    return true;
}

/*  Checks a DIRECTORY body (section 9) and fills r's fields; 0 or -1.  */
static int
s_directory_parse (const msgpack_object *o, remote_t *r)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return -1;
    if (sb__str_copy (sb__map_get (o, "broker"), r->name, sizeof r->name)
    ||  !sb_name_valid (r->name, SB_NAME_MEMBER)
    ||  sb__str_copy (sb__map_get (o, "id"), r->id, sizeof r->id) || !s_valid_hex_id (r->id)
    ||  sb__str_copy (sb__map_get (o, "endpoint"), r->endpoint, sizeof r->endpoint)
    ||  !s_printable (r->endpoint))
        return -1;
    const msgpack_object *services = sb__map_get (o, "services");
    if (!services || services->type != MSGPACK_OBJECT_ARRAY
    ||  services->via.array.size > DIRECTORY_SERVICES_MAX)
        return -1;
    for (uint32_t i = 0; i < services->via.array.size; i++) {
        const msgpack_object *entry = &services->via.array.ptr [i];
        char name [SB_NAME_MAX + 1];
        if (entry->type != MSGPACK_OBJECT_MAP || entry->via.map.size > 16
        ||  sb__str_copy (sb__map_get (entry, "name"), name, sizeof name)
        ||  !sb_name_valid (name, SB_NAME_SERVICE))
            return -1;
        for (uint32_t k = 0; k < entry->via.map.size; k++)
            if (entry->via.map.ptr [k].key.type != MSGPACK_OBJECT_STR)
                return -1;
    }
    r->nservices = services->via.array.size;
    return 0;
}

/*  DIRECTORY: replaces what we know of that broker's services.  */
void
sb__on_directory (engine_t *self, peer_t *p, const sb_body_t *body)
{
    if (!s_cluster_member (self, p, "DIRECTORY"))
        return;
    if (!body || body->size > DIRECTORY_MAX
    ||  sb_wire_check (body->data, body->size, SB_DEPTH_MAX)) {
        sb__bad (self, body ? R_BAD_BODY : R_MISSING_FIELD);
        return;
    }
    remote_t *r = calloc (1, sizeof *r);
    if (!r)
        return;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, (const char *) body->data, body->size, &offset)
        == MSGPACK_UNPACK_SUCCESS)
        rc = s_directory_parse (&unpacked.data, r);
    msgpack_unpacked_destroy (&unpacked);
    if (rc == 0 && !strcmp (r->id, self->idhex))
        rc = -1;                /* our own id: not another broker */
    if (rc == 0) {
        r->size = body->size;
        r->body = malloc (r->size);
        if (!r->body)
            rc = -1;
    }
    if (rc) {
        if (!r->body)
            sb__bad (self, R_BAD_BODY);
        sb__remote_free (&r);
        return;
    }
    memcpy (r->body, body->data, r->size);
    /*  The same broker over an older session: forget that copy.  */
    for (peer_t *q = zhashx_first (self->peers); q; q = zhashx_next (self->peers))
        if (q != p && q->dir && !strcmp (q->dir->id, r->id))
            sb__remote_free (&q->dir);
    sb__remote_free (&p->dir);
    p->dir = r;
    p->broker = true;
    self->stats.directories++;
}

/*  --------------------------------------------------------------------
    Beacons and our links to other brokers (DEALER side).  */

static void
s_hex (char *out, const uint8_t *data, size_t size)
{
    sodium_bin2hex (out, 2 * size + 1, data, size);
}

static int
s_link_send (engine_t *self, cbroker_t *cb, const sb_header_t *h, const void *body, size_t size)
{
    if (!cb->link)
        return -1;
    sb_body_t bytes = { NULL, body, body ? size : 0 };
    sb_frames_t out;
    if (sb_frame_build (h, &bytes, &out))
        return -1;
    if (sb_frame_send (&out, zsock_resolve (cb->link), ZMQ_DONTWAIT)) {
        sb_frame_close (&out);
        return -1;
    }
    cb->link_sent = self->now;
    return 0;
}

static void
s_link_simple (engine_t *self, cbroker_t *cb, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_PEER)
        sb_header_set_name (&h, self->args->name);
    s_link_send (self, cb, &h, NULL, 0);
}

/*  Encodes our DIRECTORY body into self->dbuf.  */
static void
s_directory_encode (engine_t *self)
{
    msgpack_sbuffer_clear (&self->dbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->dbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    sb__pack_cstr (&pk, "broker");
    sb__pack_cstr (&pk, self->args->name);
    sb__pack_cstr (&pk, "id");
    sb__pack_cstr (&pk, self->idhex);
    sb__pack_cstr (&pk, "endpoint");
    sb__pack_cstr (&pk, self->announce);
    sb__pack_cstr (&pk, "services");
    msgpack_pack_array (&pk, zhashx_size (self->services));
    for (service_t *s = zhashx_first (self->services); s; s = zhashx_next (self->services))
        sb__pack_service (self, &pk, s);
}

static void
s_link_directory (engine_t *self, cbroker_t *cb)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_DIRECTORY);
    s_link_send (self, cb, &h, self->dbuf.data, self->dbuf.size);
}

/*  PEER then DIRECTORY: what a link says first, and again when the other
    broker answers WELCOME (it restarted or forgot us).  */
static void
s_link_hello (engine_t *self, cbroker_t *cb)
{
    s_link_simple (self, cb, SB_CMD_PEER);
    s_directory_encode (self);
    s_link_directory (self, cb);
}

void
sb__link_close (engine_t *self, cbroker_t *cb)
{
    if (!cb->link)
        return;
    s_link_simple (self, cb, SB_CMD_BYE);
    zsock_set_linger (cb->link, 100);
    zsock_destroy (&cb->link);
}

static bool
s_key_zero (const uint8_t *key)
{
    uint8_t zero [SB_BEACON_KEY_SIZE] = { 0 };
    return !memcmp (key, zero, sizeof zero);
}

/*  Opens the DEALER to a broker heard of.  A secure broker links only to
    brokers that announce a CURVE key (their beacon was signed and
    verified); an insecure one only to insecure brokers.  */
static void
s_link_open (engine_t *self, cbroker_t *cb)
{
    if (self->secure == s_key_zero (cb->key))
        return;
    cb->link = zsock_new (ZMQ_DEALER);
    if (!cb->link)
        return;
    zsock_set_linger (cb->link, 0);
    zsock_set_sndhwm (cb->link, 1000);
    zsock_set_maxmsgsize (cb->link, (int) (self->args->config.body_max + SB_HEADER_MAX));
    sb_error_t err;
    if ((self->secure
         && sb_identity_curve_client (self->args->identity, zsock_resolve (cb->link), cb->key, &err))
    ||  zsock_connect (cb->link, "%s", cb->endpoint)) {
        zsock_destroy (&cb->link);
        return;
    }
    s_link_hello (self, cb);
}

/*  Reads what the other broker sends over our link: PEER (its name),
    WELCOME (announce again), HEARTBEAT, BYE.  */
void
sb__link_recv (engine_t *self, cbroker_t *cb)
{
    void *sock = zsock_resolve (cb->link);
    for (int n = 0; n < 64; n++) {
        sb_frames_t in;
        if (sb_frame_recv (&in, sock, ZMQ_DONTWAIT))
            return;
        sb_header_t h;
        sb_body_t body;
        bool ok = sb_frame_decode (&in, &h, &body) == SB_WIRE_OK;
        sb_frame_close (&in);
        if (!ok)
            continue;
        if (h.command == SB_CMD_PEER && (h.present & SB_H_NAME))
            strcpy (cb->name, h.name);
        else
        if (h.command == SB_CMD_WELCOME)
            s_link_hello (self, cb);
    }
}

static cbroker_t *
s_cbroker_find (engine_t *self, const uint8_t *id, size_t *index)
{
    for (size_t i = 0; i < self->nbrokers; i++)
        if (!memcmp (self->brokers [i]->id, id, SB_BEACON_ID_SIZE)) {
            if (index)
                *index = i;
            return self->brokers [i];
        }
    return NULL;
}

/*  A broker appeared, or changed endpoint or key: (re)open the link.  */
static void
s_cbroker_set (engine_t *self, const sb_beacon_event_t *e)
{
    cbroker_t *cb = s_cbroker_find (self, e->broker_id, NULL);
    if (!cb) {
        if (self->nbrokers >= BROKERS_MAX
        ||  sb__grow ((void ***) &self->brokers, self->nbrokers, &self->balloc))
            return;
        cb = calloc (1, sizeof *cb);
        if (!cb)
            return;
        memcpy (cb->id, e->broker_id, SB_BEACON_ID_SIZE);
        s_hex (cb->idhex, cb->id, SB_BEACON_ID_SIZE);
        self->brokers [self->nbrokers++] = cb;
    }
    sb__link_close (self, cb);
    snprintf (cb->endpoint, sizeof cb->endpoint, "%s", e->endpoint);
    memcpy (cb->key, e->public_key, SB_BEACON_KEY_SIZE);
    s_link_open (self, cb);
}

/*  A broker is gone (silent or leaving): forget it and its services.  */
static void
s_cbroker_gone (engine_t *self, const uint8_t *id)
{
    size_t index;
    cbroker_t *cb = s_cbroker_find (self, id, &index);
    if (!cb)
        return;
    sb__link_close (self, cb);
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->dir && !strcmp (p->dir->id, cb->idhex))
            sb__remote_free (&p->dir);
    self->brokers [index] = self->brokers [--self->nbrokers];
    free (cb);
}

static void
s_beacon_event (engine_t *self, const sb_beacon_event_t *e)
{
    if (e->type == SB_BEACON_APPEARED || e->type == SB_BEACON_CHANGED)
        s_cbroker_set (self, e);
    else
    if (e->type == SB_BEACON_GONE)
        s_cbroker_gone (self, e->broker_id);
}

/*  Beacons in, beacons out, silent brokers out.  */
void
sb__beacon_work (engine_t *self, bool readable)
{
    if (!self->beacon)
        return;
    sb_beacon_event_t event;
    for (int n = 0; readable && n < 64; n++) {
        if (sb_beacon_recv (self->beacon, self->now, &event))
            break;
        s_beacon_event (self, &event);
    }
    sb_beacon_tick (self->beacon, self->now);
    sb_beacon_event_t gone [8];
    size_t count;
    do {
        count = sb_beacon_expire (self->beacon, self->now, gone, 8);
        for (size_t i = 0; i < count; i++)
            s_beacon_event (self, &gone [i]);
    } while (count == 8);
}

/*  Heartbeats and DIRECTORY over our links (from the heartbeat tick).  */
void
sb__links_tick (engine_t *self)
{
    if (!self->nbrokers)
        return;
    bool directory = self->dir_dirty || self->now >= self->next_dir;
    if (directory) {
        s_directory_encode (self);
        self->dir_dirty = false;
        self->next_dir = self->now + 2 * (int64_t) self->hb;
    }
    for (size_t i = 0; i < self->nbrokers; i++) {
        cbroker_t *cb = self->brokers [i];
        if (directory)
            s_link_directory (self, cb);
        else
        if (self->now - cb->link_sent >= self->hb)
            s_link_simple (self, cb, SB_CMD_HEARTBEAT);
    }
}

/*  The beacon's certificate check (signed mode, sb_cert_check_broker): a
    valid certificate with the broker role for the signing key, then known
    to our ZAP handler, so that the broker it names may link to us.  A
    member without the role is logged once; the beacon counts it as
    not_broker.  Returns as beacon.h's verify_cert.  */
static int
s_verify_beacon (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg)
{
    engine_t *self = (engine_t *) arg;
    sb_cert_t *decoded = malloc (sizeof *decoded);
    if (!decoded)
        return -1;
    sb_cert_status_t status = sb_cert_check_broker (&self->args->verifier, cert, size, signing_pk,
                                                    (uint64_t) time (NULL), decoded, NULL);
    if (status == SB_CERT_NOT_BROKER)
        sb__not_broker_once (self, decoded->name, "beacon");
    free (decoded);
    if (status != SB_CERT_OK)
        return status == SB_CERT_NOT_BROKER ? 1 : -1;
    sb_error_t err;
    sb_zap_add_cert (self->args->zap, cert, size, &err);
    return 0;
}

/*  The address of an interface (IPv4), for announcing a wildcard bind.  */
static int
s_iface_address (const char *iface, char *out, size_t size)
{
    struct ifaddrs *list;
    if (getifaddrs (&list))
        return -1;
    int rc = -1;
    for (struct ifaddrs *i = list; i && rc; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && !strcmp (i->ifa_name, iface))
            if (inet_ntop (AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, out, (socklen_t) size))
                rc = 0;
    freeifaddrs (list);
    return rc;
}

/*  What the beacon announces: the bound endpoint, with a wildcard host
    replaced by the address of the beacon's interface.  0, or -1 with
    a->error.  */
static int
s_announce (engine_t *self)
{
    args_t *a = self->args;
    const char *ep = a->endpoint;
    const char *host = strstr (ep, "://");
    const char *colon = strrchr (ep, ':');
    snprintf (self->announce, sizeof self->announce, "%s", ep);
    if (!host || colon <= host + 3)
        return 0;
    host += 3;
    size_t hlen = (size_t) (colon - host);
    bool wildcard = (hlen == 7 && !memcmp (host, "0.0.0.0", 7)) || (hlen == 1 && *host == '*')
                 || (hlen == 4 && !memcmp (host, "[::]", 4));
    if (!wildcard || !strcmp (a->beacon, "off"))
        return 0;
    const char *iface = NULL;
    const char *at = strchr (a->beacon, '@');
    if (!strcmp (a->beacon, "lo"))
        iface = "lo";
    else
    if (at)
        iface = at + 1;
    else
    if (!(*a->beacon >= '0' && *a->beacon <= '9'))
        iface = a->beacon;
    char address [INET_ADDRSTRLEN];
    if (!iface) {
        snprintf (a->error, sizeof a->error,
                  "bound to a wildcard address, beacon '%.60s' names no interface whose address to announce "
                  "(use --beacon GROUP@IFACE or bind one address)", a->beacon);
        return -1;
    }
    if (!strcmp (a->beacon, "lo"))
        strcpy (address, "127.0.0.1");
    else
    if (s_iface_address (iface, address, sizeof address)) {
        snprintf (a->error, sizeof a->error,
                  "bound to a wildcard address, and interface '%.40s' has no IPv4 address to announce "
                  "(bind one address, or pick another --beacon)", iface);
        return -1;
    }
    snprintf (self->announce, sizeof self->announce, "%.*s%s%s", (int) (host - ep), ep, address, colon);
    return 0;
}

/*  Our id, the announced endpoint, and the beacon (unless "off").  */
int
sb__cluster_start (engine_t *self)
{
    args_t *a = self->args;
    randombytes_buf (self->id, sizeof self->id);
    s_hex (self->idhex, self->id, sizeof self->id);
    if (s_announce (self))
        return -1;
    if (!strcmp (a->beacon, "off"))
        return 0;
    sb_beacon_config_t bc;
    memset (&bc, 0, sizeof bc);
    bc.cluster = a->cluster;
    bc.mode = a->beacon;
    bc.port = a->config.beacon_port;
    bc.interval_ms = a->config.beacon_interval_ms;
    bc.endpoint = self->announce;
    bc.broker_id = self->id;
    if (a->identity) {
        const sb_keys_t *keys = sb_identity_keys (a->identity);
        bc.public_key = sb_keys_curve_public (keys);
        bc.signing_secret_key = sb_keys_sign_secret (keys);
        bc.cert = sb_identity_cert_bytes (a->identity, &bc.cert_size);
        bc.verify_cert = s_verify_beacon;
        bc.verify_arg = self;
    }
    sb_error_t err;
    self->beacon = sb_beacon_new (&bc, &err);
    if (!self->beacon) {
        snprintf (a->error, sizeof a->error, "beacon: %.200s", err.text);
        return -1;
    }
    return 0;
}
