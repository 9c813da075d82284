/*  discovery.c — seeds and beacons applied to a peer's links; see
    discovery.h.

    Discovered brokers live in a fixed table (one entry per broker id,
    at most SB_PEER_LINKS_MAX) that remembers the endpoint really linked
    (after wildcard rewriting) and whether discovery made that link, so
    that GONE removes only links discovery added: never a seed, never a
    link another id's entry made first.

    Secure peers: the beacon calls s_verify for every signed beacon
    before it reports the event of that beacon; only a certificate with
    the broker role passes (a member posing as a broker is logged once by
    name and counted by the beacon as not_broker), and the CURVE key the
    certificate names is noted there and compared with the announced key
    when the event is applied (the beacon module treats certificates as
    opaque bytes).  Links are "tcp://HOST:PORT#HEXKEY"; endpoints are
    compared without the key, so a seed given with its key and the same
    broker found by beacon make one link.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

/*  Datagrams read per sb_discovery_handle, and expiry events per batch. */
#define S_RECV_BATCH 256
#define S_EXPIRE_BATCH 16
/*  Members whose beacons were refused for lacking the broker role, each
    logged once: at most this many names are remembered (then no more
    lines; the beacon still counts every refusal).  */
#define S_REFUSED_NAMES 32
/*  A linked endpoint: the announced one and "#" and the key in hex.  */
#define S_ENDPOINT_SIZE (SB_BEACON_ENDPOINT_MAX + 2 + 2 * SB_BEACON_KEY_SIZE)

typedef struct {
    bool used;
    bool owns_link;                 /* discovery connected it */
    uint8_t id [SB_BEACON_ID_SIZE];
    char endpoint [S_ENDPOINT_SIZE];
} s_broker_t;

struct sb_discovery {
    sb_peer_t *peer;
    sb_beacon_t *beacon;            /* NULL: off */
    const sb_identity_t *identity;  /* NULL: insecure */
    bool certified;                 /* the beacon being handled passed s_verify */
    uint8_t certified_key [SB_BEACON_KEY_SIZE];     /* and its certificate's CURVE key */
    char refused [S_REFUSED_NAMES][SB_NAME_MAX + 1];  /* members posing as brokers, logged */
    size_t nrefused;
    bool log;
    char cluster [SB_BEACON_CLUSTER_MAX + 1];
    char seeds [SB_PEER_LINKS_MAX][SB_BEACON_ENDPOINT_MAX + 1];
    size_t nseeds;
    s_broker_t brokers [SB_PEER_LINKS_MAX];
    sb_discovery_counters_t counters;
};

/*  Same address, whatever key follows the '#'.  */
static bool
s_same_address (const char *a, const char *b)
{
    size_t a_len = strcspn (a, "#");
    return a_len == strcspn (b, "#") && memcmp (a, b, a_len) == 0;
}

static bool
s_is_seed (const sb_discovery_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->nseeds; i++)
        if (s_same_address (self->seeds [i], endpoint))
            return true;
    return false;
}

/*  True when some link to `endpoint` exists already.  */
static bool
s_linked (const sb_discovery_t *self, const char *endpoint)
{
    if (s_is_seed (self, endpoint))
        return true;
    for (size_t i = 0; i < SB_PEER_LINKS_MAX; i++)
        if (self->brokers [i].used && self->brokers [i].owns_link
        &&  s_same_address (self->brokers [i].endpoint, endpoint))
            return true;
    return false;
}

static s_broker_t *
s_find (sb_discovery_t *self, const uint8_t *id)
{
    for (size_t i = 0; i < SB_PEER_LINKS_MAX; i++)
        if (self->brokers [i].used && memcmp (self->brokers [i].id, id, SB_BEACON_ID_SIZE) == 0)
            return &self->brokers [i];
    return NULL;
}

/*  The endpoint to link to for an announced one: tcp:// only, with a
    wildcard host replaced by the sender's address.  0, or -1 if it is
    not usable.  */
static int
s_endpoint (const char *announced, const char *from, char *out, size_t size)
{
    if (strncmp (announced, "tcp://", 6) != 0)
        return -1;
    const char *host = announced + 6;
    const char *colon = strrchr (host, ':');
    if (!colon || colon == host || !colon [1])
        return -1;
    size_t host_len = (size_t) (colon - host);
    bool wildcard = (host_len == 1 && *host == '*')
                 || (host_len == 7 && strncmp (host, "0.0.0.0", 7) == 0);
    if (!wildcard) {
        if (strlen (announced) >= size)
            return -1;
        strcpy (out, announced);
        return 0;
    }
    if (!from || !*from)
        return -1;
    size_t from_len = strcspn (from, ":");
    int written = snprintf (out, size, "tcp://%.*s%s", (int) from_len, from, colon);
    return written > 0 && (size_t) written < size ? 0 : -1;
}

/*  Logs, once per member, that its beacons are refused: its certificate
    is valid but has no broker role.  */
static void
s_refused_once (sb_discovery_t *self, const char *member)
{
    for (size_t i = 0; i < self->nrefused; i++)
        if (streq (self->refused [i], member))
            return;
    if (self->nrefused == S_REFUSED_NAMES)
        return;
    strcpy (self->refused [self->nrefused++], member);
    if (self->log)
        zsys_warning ("cluster %s: member '%s' announces itself as a broker but its certificate "
                      "has no broker role: its beacons are ignored", self->cluster, member);
}

/*  The beacon's certificate check for secure peers (sb_cert_check_broker):
    a broker certificate of our authority, valid now, for the key that
    signed the beacon.  Notes the CURVE key it certifies for s_appeared.
    Returns as beacon.h's verify_cert.  */
static int
s_verify (const uint8_t *cert, size_t size, const uint8_t signing_pk [SB_BEACON_KEY_SIZE],
          void *arg)
{
    sb_discovery_t *self = (sb_discovery_t *) arg;
    self->certified = false;
    sb_cert_t *decoded = malloc (sizeof *decoded);
    if (!decoded)
        return -1;
    int rc = -1;
    sb_cert_status_t status = sb_cert_check_broker (sb_identity_verifier (self->identity), cert,
                                                    size, signing_pk, (uint64_t) time (NULL),
                                                    decoded, NULL);
    if (status == SB_CERT_OK) {
        memcpy (self->certified_key, decoded->curve_pk, SB_BEACON_KEY_SIZE);
        self->certified = true;
        rc = 0;
    }
    else
    if (status == SB_CERT_NOT_BROKER) {
        s_refused_once (self, decoded->name);
        rc = 1;
    }
    free (decoded);
    return rc;
}

static bool
s_key_zero (const uint8_t *key)
{
    uint8_t zero [SB_BEACON_KEY_SIZE] = { 0 };
    return memcmp (key, zero, sizeof zero) == 0;
}

/*  Secure peers link with the key of the broker's certificate; insecure
    ones only to insecure brokers.  Appends "#HEXKEY" to endpoint when
    secure.  0, or -1 (counted, logged) when the broker is not to be used. */
static int
s_key (sb_discovery_t *self, const sb_beacon_event_t *event, char *endpoint, size_t size)
{
    const char *why = NULL;
    if (!self->identity) {
        if (!s_key_zero (event->public_key))
            why = "is secure (announces a CURVE key) and this peer has no identity "
                  "(--keys/--member)";
    }
    else
    if (!self->certified || s_key_zero (event->public_key)
    ||  sodium_memcmp (event->public_key, self->certified_key, SB_BEACON_KEY_SIZE) != 0)
        why = "announces a CURVE key that is not its certificate's";
    else {
        size_t len = strlen (endpoint);
        if (size - len < 2 + 2 * SB_BEACON_KEY_SIZE)
            why = "has too long an endpoint";
        else {
            endpoint [len] = '#';
            sodium_bin2hex (endpoint + len + 1, size - len - 1, event->public_key,
                            SB_BEACON_KEY_SIZE);
        }
    }
    if (!why)
        return 0;
    self->counters.refused++;
    if (self->log)
        zsys_warning ("cluster %s: broker at %s ignored: it %s", self->cluster, event->endpoint, why);
    return -1;
}

/*  A broker of the cluster is there: link to it.  1 if a link was added. */
static int
s_appeared (sb_discovery_t *self, const sb_beacon_event_t *event)
{
    char endpoint [S_ENDPOINT_SIZE];
    if (s_endpoint (event->endpoint, event->from, endpoint, SB_BEACON_ENDPOINT_MAX + 1)) {
        self->counters.refused++;
        if (self->log)
            zsys_warning ("cluster %s: broker at '%s' ignored (not a tcp:// endpoint)",
                          self->cluster, event->endpoint);
        return 0;
    }
    if (s_key (self, event, endpoint, sizeof endpoint))
        return 0;
    s_broker_t *broker = s_find (self, event->broker_id);
    if (!broker)
        for (size_t i = 0; i < SB_PEER_LINKS_MAX && !broker; i++)
            if (!self->brokers [i].used)
                broker = &self->brokers [i];
    if (!broker) {
        self->counters.refused++;
        return 0;
    }
    if (broker->used && broker->owns_link) {
        if (streq (broker->endpoint, endpoint))
            return 0;               /* already linked there */
        sb_peer_disconnect (self->peer, broker->endpoint);
        self->counters.disconnected++;
    }
    bool linked = s_linked (self, endpoint);
    *broker = (s_broker_t) { .used = true };
    memcpy (broker->id, event->broker_id, SB_BEACON_ID_SIZE);
    strcpy (broker->endpoint, endpoint);
    if (linked)
        return 0;                   /* a seed or another id holds the link */
    sb_error_t err = { 0 };
    if (sb_peer_connect (self->peer, endpoint, &err)) {
        self->counters.refused++;
        if (self->log)
            zsys_warning ("cluster %s: cannot link to broker at %s: %s",
                          self->cluster, endpoint, err.text);
        return 0;
    }
    broker->owns_link = true;
    self->counters.connected++;
    if (self->log)
        zsys_info ("cluster %s: broker at %s appeared, linked", self->cluster, endpoint);
    return 1;
}

/*  A broker left or fell silent: drop the link discovery made for it.
    1 if a link was removed.  */
static int
s_gone (sb_discovery_t *self, const uint8_t *id, bool leaving)
{
    s_broker_t *broker = s_find (self, id);
    if (!broker)
        return 0;
    int removed = 0;
    if (broker->owns_link && !s_is_seed (self, broker->endpoint)
    &&  sb_peer_disconnect (self->peer, broker->endpoint) == 0) {
        self->counters.disconnected++;
        removed = 1;
    }
    if (self->log)
        zsys_info ("cluster %s: broker at %s %s%s", self->cluster, broker->endpoint,
                   leaving ? "left" : "fell silent", removed ? ", unlinked" : "");
    broker->used = false;
    /*  Another id announcing the same endpoint keeps it linked.  */
    if (removed)
        for (size_t i = 0; i < SB_PEER_LINKS_MAX; i++) {
            s_broker_t *other = &self->brokers [i];
            if (other->used && !other->owns_link && s_same_address (other->endpoint, broker->endpoint)
            &&  sb_peer_connect (self->peer, other->endpoint, NULL) == 0) {
                other->owns_link = true;
                self->counters.connected++;
                removed = 0;
                break;
            }
        }
    return removed;
}

static int
s_apply (sb_discovery_t *self, const sb_beacon_event_t *event)
{
    switch (event->type) {
        case SB_BEACON_APPEARED:
            self->counters.appeared++;
            return s_appeared (self, event);
        case SB_BEACON_GONE:
            self->counters.gone++;
            return s_gone (self, event->broker_id, event->leaving);
        case SB_BEACON_CHANGED: {
            self->counters.changed++;
            int changes = s_gone (self, event->broker_id, false);
            return changes + s_appeared (self, event);
        }
        default:
            return 0;
    }
}

sb_discovery_t *
sb_discovery_new (const sb_discovery_config_t *config, sb_peer_t *peer, sb_error_t *err)
{
    sb_discovery_config_t defaults = { 0 };
    if (!config)
        config = &defaults;
    if (!peer) {
        sb_error_set (err, SB_E_BAD_REQUEST, "discovery needs a peer");
        return NULL;
    }
    const char *cluster = config->cluster ? config->cluster : "default";
    if (!*cluster || strlen (cluster) > SB_BEACON_CLUSTER_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "cluster name must have 1 to %d bytes",
                      SB_BEACON_CLUSTER_MAX);
        return NULL;
    }
    sb_discovery_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->peer = peer;
    self->identity = config->identity;
    self->log = config->log;
    strcpy (self->cluster, cluster);

    const char *p = config->seeds ? config->seeds : "";
    while (*p) {
        p += strspn (p, ", ");
        size_t len = strcspn (p, ", ");
        if (len == 0)
            break;
        if (len > SB_BEACON_ENDPOINT_MAX || self->nseeds == SB_PEER_LINKS_MAX) {
            sb_error_set (err, SB_E_BAD_REQUEST, "seed endpoint too long, or more than %d seeds",
                          SB_PEER_LINKS_MAX);
            sb_discovery_destroy (&self);
            return NULL;
        }
        char *seed = self->seeds [self->nseeds];
        memcpy (seed, p, len);
        seed [len] = 0;
        p += len;
        if (s_is_seed (self, seed))
            continue;               /* given twice */
        if (sb_peer_connect (peer, seed, err)) {
            sb_discovery_destroy (&self);
            return NULL;
        }
        self->nseeds++;
    }
    const char *mode = config->beacon ? config->beacon : "lo";
    if (streq (mode, "off")) {
        if (self->nseeds == 0) {
            sb_error_set (err, SB_E_BAD_REQUEST, "beacons are off and no broker endpoint is given");
            sb_discovery_destroy (&self);
        }
        return self;
    }
    sb_beacon_config_t beacon_config = { .cluster = cluster, .mode = mode, .port = config->port };
    if (self->identity) {
        beacon_config.verify_cert = s_verify;
        beacon_config.verify_arg = self;
    }
    self->beacon = sb_beacon_new (&beacon_config, err);
    if (!self->beacon)
        sb_discovery_destroy (&self);
    return self;
}

void
sb_discovery_destroy (sb_discovery_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_beacon_destroy (&(*self_p)->beacon);
    free (*self_p);
    *self_p = NULL;
}

int
sb_discovery_fd (const sb_discovery_t *self)
{
    return self->beacon ? sb_beacon_fd (self->beacon) : -1;
}

int
sb_discovery_timeout (const sb_discovery_t *self, int64_t now_ms)
{
    return self->beacon ? sb_beacon_timeout (self->beacon, now_ms) : -1;
}

int
sb_discovery_handle (sb_discovery_t *self, int64_t now_ms)
{
    if (!self->beacon)
        return 0;
    int changes = 0;
    for (int i = 0; i < S_RECV_BATCH; i++) {
        sb_beacon_event_t event;
        self->certified = false;
        if (sb_beacon_recv (self->beacon, now_ms, &event))
            break;
        changes += s_apply (self, &event);
    }
    sb_beacon_event_t events [S_EXPIRE_BATCH];
    size_t count;
    do {
        count = sb_beacon_expire (self->beacon, now_ms, events, S_EXPIRE_BATCH);
        for (size_t i = 0; i < count; i++)
            changes += s_apply (self, &events [i]);
    } while (count == S_EXPIRE_BATCH);
    return changes;
}

int
sb_discovery_wait (sb_discovery_t *self, int timeout_ms)
{
    return sb_loop_wait (self->peer, self, timeout_ms);
}

size_t
sb_discovery_brokers (const sb_discovery_t *self)
{
    size_t count = 0;
    for (size_t i = 0; i < SB_PEER_LINKS_MAX; i++)
        count += self->brokers [i].used;
    return count;
}

void
sb_discovery_counters (const sb_discovery_t *self, sb_discovery_counters_t *counters)
{
    *counters = self->counters;
}

sb_beacon_t *
sb_discovery_beacon (sb_discovery_t *self)
{
    return self->beacon;
}
