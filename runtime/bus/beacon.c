/*  beacon.c — UDP beacons for broker discovery (see beacon.h and
    docs/protocol.md section 12).

    Two sockets: a receive socket bound to the destination address itself
    (127.255.255.255, the interface's broadcast address, or the multicast
    group) on the beacon port with SO_REUSEADDR + SO_REUSEPORT, so every
    process of the machine gets every beacon and nothing else; and a send
    socket bound to an ephemeral port (a socket bound to a broadcast
    address cannot be a source).  Both are non-blocking.

    Known brokers live in a small table (peers_max entries, linear search:
    a cluster has a handful of brokers and a beacon a second each).  An
    entry outlives its broker's departure so the last sequence number seen
    from that id keeps rejecting replays; gone entries are reused oldest
    first when the table is full.
*/
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

static const uint8_t s_magic [4] = { 'S', 'B', 'B', 'C' };

static const char *s_reason_names [SB_BEACON_REASON_MAX] = {
    [SB_BEACON_OK] = "ok",
    [SB_BEACON_BAD_MAGIC] = "bad_magic",
    [SB_BEACON_BAD_VERSION] = "bad_version",
    [SB_BEACON_BAD_SIZE] = "bad_size",
    [SB_BEACON_BAD_FIELD] = "bad_field",
    [SB_BEACON_FOREIGN] = "foreign_cluster",
    [SB_BEACON_UNSIGNED] = "unsigned",
    [SB_BEACON_BAD_SIGNATURE] = "bad_signature",
    [SB_BEACON_BAD_CERT] = "bad_cert",
    [SB_BEACON_NOT_BROKER] = "not_broker",
    [SB_BEACON_REPLAYED] = "replayed",
    [SB_BEACON_STALE] = "stale",
    [SB_BEACON_FULL] = "table_full",
};

const char *
sb_beacon_reason_name (sb_beacon_reason_t reason)
{
    return (unsigned) reason < SB_BEACON_REASON_MAX ? s_reason_names [reason] : "unknown";
}

const char *
sb_beacon_event_name (sb_beacon_event_type_t type)
{
    switch (type) {
        case SB_BEACON_NONE: return "none";
        case SB_BEACON_APPEARED: return "appeared";
        case SB_BEACON_CHANGED: return "changed";
        case SB_BEACON_GONE: return "gone";
        case SB_BEACON_CONFLICT: return "conflict";
        case SB_BEACON_IGNORED: return "ignored";
    }
    return "unknown";
}

void
sb_beacon_cluster_id (const char *cluster, uint8_t id [SB_BEACON_ID_SIZE])
{
    crypto_generichash (id, SB_BEACON_ID_SIZE, (const unsigned char *) cluster,
                        strlen (cluster), NULL, 0);
}

/*  --------------------------------------------------------------------
    Packet codec.  Big-endian integers, fixed offsets up to the endpoint.  */

static void
s_put64 (uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p [i] = (uint8_t) v;
}

static uint64_t
s_get64 (const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p [i];
    return v;
}

static bool
s_valid_endpoint (const char *text, size_t size)
{
    if (size == 0 || size > SB_BEACON_ENDPOINT_MAX)
        return false;
    for (size_t i = 0; i < size; i++)
        if (text [i] < 0x21 || text [i] > 0x7e)
            return false;
    return true;
}

sb_beacon_reason_t
sb_beacon_parse (const void *data, size_t size, sb_beacon_packet_t *out)
{
    const uint8_t *p = data;
    memset (out, 0, sizeof *out);
    if (size < 4 || memcmp (p, s_magic, 4) != 0)
        return SB_BEACON_BAD_MAGIC;
    if (size < 5)
        return SB_BEACON_BAD_SIZE;
    out->version = p [4];
    if (out->version != SB_BEACON_VERSION)
        return SB_BEACON_BAD_VERSION;
    if (size < SB_BEACON_FIXED_SIZE || size > SB_BEACON_PACKET_MAX)
        return SB_BEACON_BAD_SIZE;
    out->flags = p [5];
    memcpy (out->cluster_id, p + 6, SB_BEACON_ID_SIZE);
    memcpy (out->broker_id, p + 22, SB_BEACON_ID_SIZE);
    out->sequence = s_get64 (p + 38);
    out->timestamp_ms = s_get64 (p + 46);
    out->interval_ms = ((uint32_t) p [54] << 24) | ((uint32_t) p [55] << 16)
                     | ((uint32_t) p [56] << 8) | p [57];
    memcpy (out->public_key, p + 58, SB_BEACON_KEY_SIZE);
    size_t endpoint_size = p [90];
    size_t at = SB_BEACON_FIXED_SIZE;
    if (size - at < endpoint_size)
        return SB_BEACON_BAD_SIZE;
    if (!s_valid_endpoint ((const char *) p + at, endpoint_size))
        return SB_BEACON_BAD_FIELD;
    memcpy (out->endpoint, p + at, endpoint_size);
    out->endpoint [endpoint_size] = 0;
    at += endpoint_size;
    if (out->interval_ms < SB_BEACON_INTERVAL_MIN || out->interval_ms > SB_BEACON_INTERVAL_MAX)
        return SB_BEACON_BAD_FIELD;
    if (out->flags & SB_BEACON_F_SIGNED) {
        if (size - at < SB_BEACON_KEY_SIZE + 2)
            return SB_BEACON_BAD_SIZE;
        memcpy (out->signing_key, p + at, SB_BEACON_KEY_SIZE);
        at += SB_BEACON_KEY_SIZE;
        size_t cert_size = ((size_t) p [at] << 8) | p [at + 1];
        at += 2;
        if (cert_size > SB_BEACON_CERT_MAX)
            return SB_BEACON_BAD_FIELD;
        if (size - at < cert_size + SB_BEACON_SIG_SIZE)
            return SB_BEACON_BAD_SIZE;
        out->cert = p + at;
        out->cert_size = cert_size;
        at += cert_size;
        out->signed_size = at;
        memcpy (out->signature, p + at, SB_BEACON_SIG_SIZE);
        at += SB_BEACON_SIG_SIZE;
    }
    if (at != size)
        return SB_BEACON_BAD_SIZE;
    return SB_BEACON_OK;
}

size_t
sb_beacon_encode (const sb_beacon_packet_t *packet, const uint8_t *signing_secret_key,
                  uint8_t *buffer)
{
    size_t endpoint_size = strnlen (packet->endpoint, sizeof packet->endpoint);
    if (!s_valid_endpoint (packet->endpoint, endpoint_size)
    ||  packet->interval_ms < SB_BEACON_INTERVAL_MIN
    ||  packet->interval_ms > SB_BEACON_INTERVAL_MAX
    ||  (signing_secret_key && (packet->cert_size > SB_BEACON_CERT_MAX
                                || (packet->cert_size && !packet->cert))))
        return 0;
    uint8_t flags = packet->flags & (uint8_t) ~SB_BEACON_F_SIGNED;
    if (signing_secret_key)
        flags |= SB_BEACON_F_SIGNED;
    memcpy (buffer, s_magic, 4);
    buffer [4] = SB_BEACON_VERSION;
    buffer [5] = flags;
    memcpy (buffer + 6, packet->cluster_id, SB_BEACON_ID_SIZE);
    memcpy (buffer + 22, packet->broker_id, SB_BEACON_ID_SIZE);
    s_put64 (buffer + 38, packet->sequence);
    s_put64 (buffer + 46, packet->timestamp_ms);
    buffer [54] = (uint8_t) (packet->interval_ms >> 24);
    buffer [55] = (uint8_t) (packet->interval_ms >> 16);
    buffer [56] = (uint8_t) (packet->interval_ms >> 8);
    buffer [57] = (uint8_t) packet->interval_ms;
    memcpy (buffer + 58, packet->public_key, SB_BEACON_KEY_SIZE);
    buffer [90] = (uint8_t) endpoint_size;
    size_t at = SB_BEACON_FIXED_SIZE;
    memcpy (buffer + at, packet->endpoint, endpoint_size);
    at += endpoint_size;
    if (signing_secret_key) {
        crypto_sign_ed25519_sk_to_pk (buffer + at, signing_secret_key);
        at += SB_BEACON_KEY_SIZE;
        buffer [at++] = (uint8_t) (packet->cert_size >> 8);
        buffer [at++] = (uint8_t) packet->cert_size;
        if (packet->cert_size)
            memcpy (buffer + at, packet->cert, packet->cert_size);
        at += packet->cert_size;
        crypto_sign_detached (buffer + at, NULL, buffer, at, signing_secret_key);
        at += SB_BEACON_SIG_SIZE;
    }
    return at;
}

/*  --------------------------------------------------------------------
    The beacon object.  */

typedef enum {
    S_FREE = 0,         /* unused slot */
    S_GONE,             /* known id, not live: remembers its sequence */
    S_ALIVE,            /* live broker, reported APPEARED */
    S_CONFLICT          /* live, but its endpoint belongs to another live id */
} s_state_t;

typedef struct {
    s_state_t state;
    uint8_t id [SB_BEACON_ID_SIZE];
    uint64_t sequence;
    int64_t heard_ms;
    uint32_t interval_ms;
    bool claiming;      /* its last beacon claimed another live id's endpoint */
    uint8_t public_key [SB_BEACON_KEY_SIZE];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
} s_peer_t;

struct sb_beacon {
    int recv_fd;
    int send_fd;
    struct sockaddr_in dest;
    uint8_t cluster_id [SB_BEACON_ID_SIZE];
    uint8_t id [SB_BEACON_ID_SIZE];
    bool announcing;                /* has an endpoint and has not left */
    bool id_claimed;                /* another sender used our id: reported */
    uint32_t interval_ms;
    int64_t next_send_ms;           /* 0: at the first tick */
    uint64_t sequence;
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t public_key [SB_BEACON_KEY_SIZE];
    uint8_t *signing_sk;            /* sodium_malloc'd, 64 bytes, or NULL */
    uint8_t cert [SB_BEACON_CERT_MAX];
    size_t cert_size;
    sb_beacon_verify_fn *verify_cert;
    void *verify_arg;
    int64_t max_skew_ms;            /* < 0: no check */
    s_peer_t *peers;
    size_t peers_max;
    sb_beacon_counters_t counters;
};

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
s_socket (sb_error_t *err)
{
    int fd = socket (AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        sb_error_set (err, SB_E_INTERNAL, "beacon: socket: %s", strerror (errno));
    return fd;
}

static int
s_setopt (int fd, int level, int name, int value, const char *what, sb_error_t *err)
{
    if (setsockopt (fd, level, name, &value, sizeof value) == 0)
        return 0;
    return sb_error_set (err, SB_E_INTERNAL, "beacon: %s: %s", what, strerror (errno));
}

/*  The receive socket: bound to `addr`, shared with the machine's other
    beacon users.  */
static int
s_open_recv (sb_beacon_t *self, struct in_addr addr, int port, sb_error_t *err)
{
    self->recv_fd = s_socket (err);
    if (self->recv_fd < 0)
        return -1;
    if (s_setopt (self->recv_fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", err)
    ||  s_setopt (self->recv_fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", err))
        return -1;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                               .sin_addr = addr };
    if (bind (self->recv_fd, (struct sockaddr *) &sin, sizeof sin)) {
        char text [INET_ADDRSTRLEN];
        inet_ntop (AF_INET, &addr, text, sizeof text);
        return sb_error_set (err, SB_E_INTERNAL, "beacon: cannot listen on %s:%d: %s",
                             text, port, strerror (errno));
    }
    return 0;
}

/*  The send socket: an ephemeral port on `source`.  */
static int
s_open_send (sb_beacon_t *self, struct in_addr source, sb_error_t *err)
{
    self->send_fd = s_socket (err);
    if (self->send_fd < 0)
        return -1;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = source };
    if (bind (self->send_fd, (struct sockaddr *) &sin, sizeof sin))
        return sb_error_set (err, SB_E_INTERNAL, "beacon: bind send socket: %s",
                             strerror (errno));
    return 0;
}

static int
s_open_loopback (sb_beacon_t *self, int port, sb_error_t *err)
{
    struct in_addr broadcast = { htonl (0x7fffffff) };
    struct in_addr source = { htonl (INADDR_LOOPBACK) };
    self->dest.sin_addr = broadcast;
    if (s_open_recv (self, broadcast, port, err) || s_open_send (self, source, err))
        return -1;
    return s_setopt (self->send_fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST", err);
}

/*  Finds the IPv4 address (and broadcast address) of an interface.  */
static int
s_interface (const char *name, struct in_addr *address, struct in_addr *broadcast,
             sb_error_t *err)
{
    struct ifaddrs *list;
    if (getifaddrs (&list))
        return sb_error_set (err, SB_E_INTERNAL, "beacon: getifaddrs: %s", strerror (errno));
    int rc = sb_error_set (err, SB_E_BAD_REQUEST,
                           "beacon: interface '%s' has no IPv4 address", name);
    for (struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
        if (strcmp (ifa->ifa_name, name) != 0 || !ifa->ifa_addr
        ||  ifa->ifa_addr->sa_family != AF_INET)
            continue;
        *address = ((struct sockaddr_in *) ifa->ifa_addr)->sin_addr;
        if (!broadcast)
            rc = 0;
        else
        if ((ifa->ifa_flags & IFF_BROADCAST) && ifa->ifa_broadaddr) {
            *broadcast = ((struct sockaddr_in *) ifa->ifa_broadaddr)->sin_addr;
            rc = 0;
        }
        else
            rc = sb_error_set (err, SB_E_BAD_REQUEST,
                               "beacon: interface '%s' has no IPv4 broadcast address", name);
        if (rc == 0)
            break;
    }
    freeifaddrs (list);
    return rc;
}

static int
s_open_interface (sb_beacon_t *self, const char *name, int port, sb_error_t *err)
{
    struct in_addr address, broadcast;
    if (strlen (name) >= IFNAMSIZ)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon: bad interface name '%s'", name);
    if (s_interface (name, &address, &broadcast, err))
        return -1;
    self->dest.sin_addr = broadcast;
    if (s_open_recv (self, broadcast, port, err) || s_open_send (self, address, err))
        return -1;
    /*  Pins the sends to the device; needs CAP_NET_RAW on old kernels,
        and binding to the interface's address already routes them there.  */
    setsockopt (self->send_fd, SOL_SOCKET, SO_BINDTODEVICE, name, (socklen_t) strlen (name));
    return s_setopt (self->send_fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST", err);
}

static int
s_open_multicast (sb_beacon_t *self, struct in_addr group, const char *name, int port,
                  sb_error_t *err)
{
    struct ip_mreqn mreq = { .imr_multiaddr = group };
    struct in_addr source = { htonl (INADDR_ANY) };
    if (name) {
        mreq.imr_ifindex = (int) if_nametoindex (name);
        if (mreq.imr_ifindex == 0)
            return sb_error_set (err, SB_E_BAD_REQUEST, "beacon: no interface '%s'", name);
        if (s_interface (name, &source, NULL, err))
            return -1;
    }
    self->dest.sin_addr = group;
    if (s_open_recv (self, group, port, err))
        return -1;
    if (setsockopt (self->recv_fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mreq, sizeof mreq))
        return sb_error_set (err, SB_E_INTERNAL, "beacon: join multicast group: %s",
                             strerror (errno));
    if (s_setopt (self->recv_fd, IPPROTO_IP, IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL", err)
    ||  s_open_send (self, source, err))
        return -1;
    struct ip_mreqn ifreq = { .imr_ifindex = mreq.imr_ifindex };
    if (setsockopt (self->send_fd, IPPROTO_IP, IP_MULTICAST_IF, &ifreq, sizeof ifreq))
        return sb_error_set (err, SB_E_INTERNAL, "beacon: IP_MULTICAST_IF: %s",
                             strerror (errno));
    return s_setopt (self->send_fd, IPPROTO_IP, IP_MULTICAST_LOOP, 1, "IP_MULTICAST_LOOP", err)
        || s_setopt (self->send_fd, IPPROTO_IP, IP_MULTICAST_TTL, 1, "IP_MULTICAST_TTL", err);
}

/*  Chooses the transport from the mode string and opens it.  */
static int
s_open (sb_beacon_t *self, const char *mode, int port, sb_error_t *err)
{
    self->dest.sin_family = AF_INET;
    self->dest.sin_port = htons ((uint16_t) port);
    if (strcmp (mode, "off") == 0)
        return 0;
    if (strcmp (mode, "lo") == 0)
        return s_open_loopback (self, port, err);
    char text [INET_ADDRSTRLEN + IFNAMSIZ + 1];
    if (strlen (mode) >= sizeof text)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon: bad mode '%.64s'", mode);
    strcpy (text, mode);
    char *at = strchr (text, '@');
    if (at)
        *at++ = 0;
    struct in_addr group;
    if (inet_pton (AF_INET, text, &group) == 1) {
        if (!IN_MULTICAST (ntohl (group.s_addr)))
            return sb_error_set (err, SB_E_BAD_REQUEST,
                                 "beacon: '%s' is not a multicast group (224.0.0.0/4)", text);
        return s_open_multicast (self, group, at, port, err);
    }
    if (at)
        return sb_error_set (err, SB_E_BAD_REQUEST, "beacon: bad mode '%s'", mode);
    return s_open_interface (self, mode, port, err);
}

sb_beacon_t *
sb_beacon_new (const sb_beacon_config_t *config, sb_error_t *err)
{
    static const sb_beacon_config_t defaults;
    if (!config)
        config = &defaults;
    if (sodium_init () < 0) {
        sb_error_set (err, SB_E_INTERNAL, "beacon: libsodium failed to initialise");
        return NULL;
    }
    const char *cluster = config->cluster ? config->cluster : "default";
    const char *mode = config->mode ? config->mode : "lo";
    int port = config->port ? config->port : SB_BEACON_PORT_DEFAULT;
    int interval = config->interval_ms ? config->interval_ms : SB_BEACON_INTERVAL_DEFAULT;
    if (*cluster == 0 || strlen (cluster) > SB_BEACON_CLUSTER_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "beacon: cluster name must have 1..%d bytes",
                      SB_BEACON_CLUSTER_MAX);
        return NULL;
    }
    if (port < 1 || port > 65535) {
        sb_error_set (err, SB_E_BAD_REQUEST, "beacon: bad UDP port %d", port);
        return NULL;
    }
    if (interval < SB_BEACON_INTERVAL_MIN || interval > SB_BEACON_INTERVAL_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "beacon: interval must be %d..%d ms",
                      SB_BEACON_INTERVAL_MIN, SB_BEACON_INTERVAL_MAX);
        return NULL;
    }
    if (config->endpoint
    &&  !s_valid_endpoint (config->endpoint, strlen (config->endpoint))) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "beacon: endpoint must be 1..%d printable characters",
                      SB_BEACON_ENDPOINT_MAX);
        return NULL;
    }
    if (config->cert_size > SB_BEACON_CERT_MAX || (config->cert_size && !config->cert)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "beacon: certificate larger than %d bytes",
                      SB_BEACON_CERT_MAX);
        return NULL;
    }
    sb_beacon_t *self = calloc (1, sizeof *self);
    size_t peers_max = config->peers_max ? config->peers_max : SB_BEACON_PEERS_DEFAULT;
    if (self)
        self->peers = calloc (peers_max, sizeof (s_peer_t));
    if (!self || !self->peers) {
        free (self);
        sb_error_set (err, SB_E_INTERNAL, "beacon: out of memory");
        return NULL;
    }
    self->recv_fd = self->send_fd = -1;
    self->peers_max = peers_max;
    self->interval_ms = (uint32_t) interval;
    sb_beacon_cluster_id (cluster, self->cluster_id);
    if (config->broker_id)
        memcpy (self->id, config->broker_id, SB_BEACON_ID_SIZE);
    else
        randombytes_buf (self->id, SB_BEACON_ID_SIZE);
    if (config->endpoint) {
        self->announcing = true;
        strcpy (self->endpoint, config->endpoint);
    }
    if (config->public_key)
        memcpy (self->public_key, config->public_key, SB_BEACON_KEY_SIZE);
    if (config->signing_secret_key) {
        self->signing_sk = sodium_malloc (crypto_sign_SECRETKEYBYTES);
        if (!self->signing_sk) {
            sb_error_set (err, SB_E_INTERNAL, "beacon: out of secure memory");
            sb_beacon_destroy (&self);
            return NULL;
        }
        memcpy (self->signing_sk, config->signing_secret_key, crypto_sign_SECRETKEYBYTES);
        if (config->cert_size)
            memcpy (self->cert, config->cert, config->cert_size);
        self->cert_size = config->cert_size;
    }
    self->verify_cert = config->verify_cert;
    self->verify_arg = config->verify_arg;
    self->max_skew_ms = config->max_skew_ms == 0 ? SB_BEACON_SKEW_DEFAULT
                      : config->max_skew_ms < 0 ? -1 : config->max_skew_ms;
    if (strcmp (mode, "off") == 0)
        self->announcing = false;
    if (s_open (self, mode, port, err)) {
        sb_beacon_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_beacon_destroy (sb_beacon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_beacon_t *self = *self_p;
    if (self->recv_fd >= 0)
        close (self->recv_fd);
    if (self->send_fd >= 0)
        close (self->send_fd);
    sodium_free (self->signing_sk);
    sodium_memzero (self->cert, sizeof self->cert);
    free (self->peers);
    free (self);
    *self_p = NULL;
}

int
sb_beacon_fd (const sb_beacon_t *self)
{
    return self->recv_fd;
}

const uint8_t *
sb_beacon_id (const sb_beacon_t *self)
{
    return self->id;
}

/*  Builds and sends one beacon with the given flags.  */
static int
s_send (sb_beacon_t *self, uint8_t flags)
{
    sb_beacon_packet_t packet;
    memset (&packet, 0, sizeof packet);
    packet.flags = flags;
    memcpy (packet.cluster_id, self->cluster_id, SB_BEACON_ID_SIZE);
    memcpy (packet.broker_id, self->id, SB_BEACON_ID_SIZE);
    packet.sequence = ++self->sequence;
    packet.timestamp_ms = (uint64_t) s_wall_ms ();
    packet.interval_ms = self->interval_ms;
    memcpy (packet.public_key, self->public_key, SB_BEACON_KEY_SIZE);
    strcpy (packet.endpoint, self->endpoint);
    packet.cert = self->cert;
    packet.cert_size = self->cert_size;
    uint8_t buffer [SB_BEACON_PACKET_MAX];
    size_t size = sb_beacon_encode (&packet, self->signing_sk, buffer);
    ssize_t rc = size ? sendto (self->send_fd, buffer, size, 0, (struct sockaddr *) &self->dest,
                                sizeof self->dest)
                      : -1;
    if (rc != (ssize_t) size || size == 0) {
        self->counters.send_errors++;
        return -1;
    }
    self->counters.sent++;
    return 0;
}

int
sb_beacon_tick (sb_beacon_t *self, int64_t now_ms)
{
    if (!self->announcing || self->send_fd < 0)
        return 0;
    if (self->next_send_ms && now_ms < self->next_send_ms)
        return 0;
    self->next_send_ms = now_ms + self->interval_ms;
    return s_send (self, 0) == 0 ? 1 : -1;
}

int
sb_beacon_leave (sb_beacon_t *self)
{
    if (!self->announcing || self->send_fd < 0)
        return 0;
    self->announcing = false;
    return s_send (self, SB_BEACON_F_LEAVING);
}

static s_peer_t *
s_find (sb_beacon_t *self, const uint8_t *id)
{
    for (size_t i = 0; i < self->peers_max; i++)
        if (self->peers [i].state != S_FREE
        &&  memcmp (self->peers [i].id, id, SB_BEACON_ID_SIZE) == 0)
            return &self->peers [i];
    return NULL;
}

/*  A slot for a new id: a free one, else the gone one heard longest ago.  */
static s_peer_t *
s_slot (sb_beacon_t *self)
{
    s_peer_t *oldest = NULL;
    for (size_t i = 0; i < self->peers_max; i++) {
        s_peer_t *peer = &self->peers [i];
        if (peer->state == S_FREE)
            return peer;
        if (peer->state == S_GONE && (!oldest || peer->heard_ms < oldest->heard_ms))
            oldest = peer;
    }
    return oldest;
}

/*  The live broker other than `self_peer` that announces `endpoint`.  */
static s_peer_t *
s_holder (sb_beacon_t *self, const s_peer_t *self_peer, const char *endpoint)
{
    for (size_t i = 0; i < self->peers_max; i++) {
        s_peer_t *peer = &self->peers [i];
        if (peer != self_peer && peer->state == S_ALIVE && strcmp (peer->endpoint, endpoint) == 0)
            return peer;
    }
    return NULL;
}

static void
s_ignore (sb_beacon_t *self, sb_beacon_event_t *event, sb_beacon_reason_t reason)
{
    event->type = SB_BEACON_IGNORED;
    event->reason = reason;
    self->counters.ignored [reason]++;
}

static void
s_describe (sb_beacon_event_t *event, sb_beacon_event_type_t type, const s_peer_t *peer)
{
    event->type = type;
    memcpy (event->broker_id, peer->id, SB_BEACON_ID_SIZE);
    strcpy (event->endpoint, peer->endpoint);
    memcpy (event->public_key, peer->public_key, SB_BEACON_KEY_SIZE);
}

/*  Checks the signature and certificate in signed mode.  */
static sb_beacon_reason_t
s_check_signed (sb_beacon_t *self, const uint8_t *data, const sb_beacon_packet_t *packet)
{
    if (!(packet->flags & SB_BEACON_F_SIGNED))
        return SB_BEACON_UNSIGNED;
    if (crypto_sign_verify_detached (packet->signature, data, packet->signed_size,
                                     packet->signing_key) != 0)
        return SB_BEACON_BAD_SIGNATURE;
    int rc = self->verify_cert (packet->cert, packet->cert_size, packet->signing_key,
                                self->verify_arg);
    return rc == 0 ? SB_BEACON_OK : rc == 1 ? SB_BEACON_NOT_BROKER : SB_BEACON_BAD_CERT;
}

void
sb_beacon_handle (sb_beacon_t *self, const void *data, size_t size, const char *from,
                  int64_t now_ms, sb_beacon_event_t *event)
{
    memset (event, 0, sizeof *event);
    if (from)
        snprintf (event->from, sizeof event->from, "%s", from);
    self->counters.received++;
    sb_beacon_packet_t packet;
    sb_beacon_reason_t reason = sb_beacon_parse (data, size, &packet);
    if (reason != SB_BEACON_OK) {
        s_ignore (self, event, reason);
        return;
    }
    if (memcmp (packet.cluster_id, self->cluster_id, SB_BEACON_ID_SIZE) != 0) {
        s_ignore (self, event, SB_BEACON_FOREIGN);
        return;
    }
    memcpy (event->broker_id, packet.broker_id, SB_BEACON_ID_SIZE);
    strcpy (event->endpoint, packet.endpoint);
    memcpy (event->public_key, packet.public_key, SB_BEACON_KEY_SIZE);
    if (memcmp (packet.broker_id, self->id, SB_BEACON_ID_SIZE) == 0) {
        /*  Our own beacon coming back, or someone else using our id with
            another endpoint or key: that is reported, once.  */
        self->counters.own++;
        if ((strcmp (packet.endpoint, self->endpoint) != 0
             || memcmp (packet.public_key, self->public_key, SB_BEACON_KEY_SIZE) != 0)
        &&  !self->id_claimed) {
            self->id_claimed = true;
            self->counters.conflicts++;
            event->type = SB_BEACON_CONFLICT;
            memcpy (event->other_id, self->id, SB_BEACON_ID_SIZE);
        }
        return;
    }
    s_peer_t *peer = s_find (self, packet.broker_id);
    if (peer && packet.sequence <= peer->sequence) {
        s_ignore (self, event, SB_BEACON_REPLAYED);
        return;
    }
    if (self->verify_cert) {
        reason = s_check_signed (self, data, &packet);
        if (reason == SB_BEACON_OK && self->max_skew_ms >= 0) {
            int64_t wall = s_wall_ms ();
            if (packet.timestamp_ms > (uint64_t) (wall + self->max_skew_ms)
            ||  (int64_t) packet.timestamp_ms < wall - self->max_skew_ms)
                reason = SB_BEACON_STALE;
        }
        if (reason != SB_BEACON_OK) {
            s_ignore (self, event, reason);
            return;
        }
    }
    if (!peer) {
        peer = s_slot (self);
        if (!peer) {
            s_ignore (self, event, SB_BEACON_FULL);
            return;
        }
        memset (peer, 0, sizeof *peer);
        memcpy (peer->id, packet.broker_id, SB_BEACON_ID_SIZE);
        peer->state = S_GONE;
    }
    /*  Believed from here on.  */
    self->counters.accepted++;
    peer->sequence = packet.sequence;
    peer->heard_ms = now_ms;
    peer->interval_ms = packet.interval_ms;
    if (packet.flags & SB_BEACON_F_LEAVING) {
        peer->claiming = false;
        if (peer->state == S_ALIVE) {
            s_describe (event, SB_BEACON_GONE, peer);
            event->leaving = true;
        }
        peer->state = S_GONE;
        return;
    }
    s_peer_t *holder = s_holder (self, peer, packet.endpoint);
    if (holder) {
        /*  Another live id has this endpoint: the first claimant keeps it;
            this one is reported once and tracked until it falls silent.  */
        if (!peer->claiming) {
            peer->claiming = true;
            self->counters.conflicts++;
            event->type = SB_BEACON_CONFLICT;
            memcpy (event->other_id, holder->id, SB_BEACON_ID_SIZE);
        }
        if (peer->state != S_ALIVE) {
            peer->state = S_CONFLICT;
            strcpy (peer->endpoint, packet.endpoint);
            memcpy (peer->public_key, packet.public_key, SB_BEACON_KEY_SIZE);
        }
        return;
    }
    peer->claiming = false;
    if (peer->state == S_ALIVE) {
        if (strcmp (peer->endpoint, packet.endpoint) != 0
        ||  memcmp (peer->public_key, packet.public_key, SB_BEACON_KEY_SIZE) != 0) {
            self->counters.conflicts++;
            strcpy (event->old_endpoint, peer->endpoint);
            strcpy (peer->endpoint, packet.endpoint);
            memcpy (peer->public_key, packet.public_key, SB_BEACON_KEY_SIZE);
            s_describe (event, SB_BEACON_CHANGED, peer);
        }
        return;
    }
    peer->state = S_ALIVE;
    strcpy (peer->endpoint, packet.endpoint);
    memcpy (peer->public_key, packet.public_key, SB_BEACON_KEY_SIZE);
    s_describe (event, SB_BEACON_APPEARED, peer);
}

int
sb_beacon_recv (sb_beacon_t *self, int64_t now_ms, sb_beacon_event_t *event)
{
    if (self->recv_fd < 0) {
        errno = EAGAIN;
        return -1;
    }
    uint8_t buffer [SB_BEACON_PACKET_MAX + 1];
    struct sockaddr_in sin;
    socklen_t sin_size = sizeof sin;
    /*  MSG_TRUNC: the real size of an oversized datagram, to refuse it.  */
    ssize_t size = recvfrom (self->recv_fd, buffer, sizeof buffer, MSG_TRUNC,
                             (struct sockaddr *) &sin, &sin_size);
    if (size < 0)
        return -1;
    char from [48] = "";
    if (sin_size >= sizeof sin && sin.sin_family == AF_INET) {
        char text [INET_ADDRSTRLEN];
        inet_ntop (AF_INET, &sin.sin_addr, text, sizeof text);
        snprintf (from, sizeof from, "%s:%u", text, ntohs (sin.sin_port));
    }
    if ((size_t) size > sizeof buffer) {
        memset (event, 0, sizeof *event);
        strcpy (event->from, from);
        self->counters.received++;
        s_ignore (self, event, SB_BEACON_BAD_SIZE);
        return 0;
    }
    sb_beacon_handle (self, buffer, (size_t) size, from, now_ms, event);
    return 0;
}

static int64_t
s_deadline (const s_peer_t *peer)
{
    return peer->heard_ms + (int64_t) SB_BEACON_SILENT_INTERVALS * peer->interval_ms;
}

size_t
sb_beacon_expire (sb_beacon_t *self, int64_t now_ms, sb_beacon_event_t *events, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < self->peers_max; i++) {
        s_peer_t *peer = &self->peers [i];
        if ((peer->state != S_ALIVE && peer->state != S_CONFLICT) || now_ms < s_deadline (peer))
            continue;
        peer->claiming = false;
        if (peer->state == S_CONFLICT) {
            peer->state = S_GONE;
            continue;
        }
        if (count == max)
            break;
        memset (&events [count], 0, sizeof events [count]);
        s_describe (&events [count++], SB_BEACON_GONE, peer);
        peer->state = S_GONE;
    }
    return count;
}

int
sb_beacon_timeout (const sb_beacon_t *self, int64_t now_ms)
{
    int64_t next = -1;
    if (self->announcing && self->send_fd >= 0)
        next = self->next_send_ms;
    for (size_t i = 0; i < self->peers_max; i++) {
        const s_peer_t *peer = &self->peers [i];
        if (peer->state == S_ALIVE || peer->state == S_CONFLICT) {
            int64_t deadline = s_deadline (peer);
            if (next < 0 || deadline < next)
                next = deadline;
        }
    }
    if (next < 0)
        return -1;
    return next <= now_ms ? 0 : (int) (next - now_ms > INT32_MAX ? INT32_MAX : next - now_ms);
}

size_t
sb_beacon_size (const sb_beacon_t *self)
{
    size_t count = 0;
    for (size_t i = 0; i < self->peers_max; i++)
        if (self->peers [i].state == S_ALIVE)
            count++;
    return count;
}

void
sb_beacon_counters (const sb_beacon_t *self, sb_beacon_counters_t *counters)
{
    *counters = self->counters;
}
