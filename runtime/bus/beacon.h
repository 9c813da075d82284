/*  beacon.h — UDP beacons: how brokers announce themselves and are found.

    A broker sends a small datagram every interval (default 1 s) saying
    "broker <id> of cluster <hash> is at <endpoint>, CURVE key <key>".
    Brokers and peers listen on the same UDP port (default 7690) and learn
    which brokers exist; a broker silent for 3 of its intervals, or one that
    sent a "leaving" beacon, is reported gone.  The packet format is in
    docs/protocol.md section 12; sb_beacon_encode/sb_beacon_parse implement
    it and must change with it.

    Transports ("mode"):
    - "lo" (the default): broadcast to 127.255.255.255 — every process on
      this machine hears it, nothing leaves the machine;
    - an interface name ("eth1", "br0"): IPv4 broadcast to that
      interface's broadcast address;
    - "239.x.y.z" or "239.x.y.z@IFACE": IPv4 multicast to that group, TTL 1,
      looped back to this machine;
    - "off": no socket; every call is a no-op.

    The module is not a thread.  Its owner polls sb_beacon_fd() (zmq_poll
    and zpoller accept raw fds) and calls sb_beacon_recv() when it is
    readable, sb_beacon_tick() to send when due and sb_beacon_expire() to
    learn which brokers fell silent; sb_beacon_timeout() says how long the
    poll may sleep.  Time is the caller's monotonic clock in ms
    (zclock_mono ()), passed to every call that needs it.

    Signed mode: when the cluster has an authority key the owner passes
    verify_cert; then only signed beacons whose Ed25519 signature verifies
    and whose certificate verify_cert accepts for the signing key (a
    certificate with the broker role) are believed.  A sender signs when it is given signing_secret_key.

    Everything received is validated; bad datagrams are counted by reason
    and reported as SB_BEACON_IGNORED, never asserted on.
*/
#ifndef SB_BEACON_H_INCLUDED
#define SB_BEACON_H_INCLUDED

#include "switchboard.h"

#define SB_BEACON_PORT_DEFAULT 7690
#define SB_BEACON_INTERVAL_DEFAULT 1000     /* ms */
#define SB_BEACON_INTERVAL_MIN 10           /* ms, in packets and config */
#define SB_BEACON_INTERVAL_MAX 60000
#define SB_BEACON_SILENT_INTERVALS 3        /* gone after this many silent intervals */
#define SB_BEACON_SKEW_DEFAULT 300000       /* ms, signed mode timestamp window */
#define SB_BEACON_PEERS_DEFAULT 256

#define SB_BEACON_VERSION 1
#define SB_BEACON_ID_SIZE 16
#define SB_BEACON_KEY_SIZE 32               /* CURVE public key, Ed25519 public key */
#define SB_BEACON_SIG_SIZE 64
#define SB_BEACON_ENDPOINT_MAX 255
#define SB_BEACON_CERT_MAX 1024
#define SB_BEACON_CLUSTER_MAX 255
#define SB_BEACON_FIXED_SIZE 91             /* bytes before the endpoint */
/*  Largest valid packet: 1468 bytes (fits one Ethernet frame).  */
#define SB_BEACON_PACKET_MAX (SB_BEACON_FIXED_SIZE + SB_BEACON_ENDPOINT_MAX \
                              + SB_BEACON_KEY_SIZE + 2 + SB_BEACON_CERT_MAX + SB_BEACON_SIG_SIZE)

/*  Packet flags.  */
#define SB_BEACON_F_LEAVING 0x01    /* the broker is shutting down */
#define SB_BEACON_F_SIGNED 0x02     /* signing key, certificate, signature follow */

/*  Why a datagram was ignored (also the counters' names).  */
typedef enum {
    SB_BEACON_OK = 0,
    SB_BEACON_BAD_MAGIC,        /* not a Switchboard beacon */
    SB_BEACON_BAD_VERSION,      /* a beacon of another version */
    SB_BEACON_BAD_SIZE,         /* truncated, oversized, or bytes after the end */
    SB_BEACON_BAD_FIELD,        /* empty or non-printable endpoint, interval out of range */
    SB_BEACON_FOREIGN,          /* another cluster */
    SB_BEACON_UNSIGNED,         /* signed mode: the beacon carries no signature */
    SB_BEACON_BAD_SIGNATURE,    /* signed mode: signature does not verify */
    SB_BEACON_BAD_CERT,         /* signed mode: verify_cert refused the certificate */
    SB_BEACON_NOT_BROKER,       /* signed mode: a valid member certificate without the broker role */
    SB_BEACON_REPLAYED,         /* sequence not newer than the last seen from that id */
    SB_BEACON_STALE,            /* signed mode: timestamp outside the skew window */
    SB_BEACON_FULL,             /* peer table full of live brokers */
    SB_BEACON_REASON_MAX
} sb_beacon_reason_t;

const char *sb_beacon_reason_name (sb_beacon_reason_t reason);

/*  A decoded packet.  Owns no memory: `cert` and `signed_size` point into
    / measure the buffer given to sb_beacon_parse, which must outlive it.  */
typedef struct {
    uint8_t version;
    uint8_t flags;                                  /* SB_BEACON_F_* */
    uint8_t cluster_id [SB_BEACON_ID_SIZE];
    uint8_t broker_id [SB_BEACON_ID_SIZE];
    uint64_t sequence;
    uint64_t timestamp_ms;                          /* sender's wall clock, Unix epoch */
    uint32_t interval_ms;
    uint8_t public_key [SB_BEACON_KEY_SIZE];        /* all zero: insecure broker */
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    /*  Only when flags has SB_BEACON_F_SIGNED:  */
    uint8_t signing_key [SB_BEACON_KEY_SIZE];
    const uint8_t *cert;
    size_t cert_size;
    uint8_t signature [SB_BEACON_SIG_SIZE];
    size_t signed_size;                             /* bytes the signature covers */
} sb_beacon_packet_t;

/*  Parses one datagram.  Pure: no state, no allocation, any input.
    Returns SB_BEACON_OK or BAD_MAGIC, BAD_VERSION, BAD_SIZE, BAD_FIELD.
    Does not check the cluster or the signature.  */
sb_beacon_reason_t sb_beacon_parse (const void *data, size_t size, sb_beacon_packet_t *out)
    SB_WARN_UNUSED;

/*  Encodes `packet` into buffer (SB_BEACON_PACKET_MAX bytes).  When
    signing_secret_key (64 bytes, crypto_sign) is given, sets the signed
    flag, the signing key derived from it, cert/cert_size from `packet`,
    and signs.  Returns the size, or 0 if a field is out of range.  */
size_t sb_beacon_encode (const sb_beacon_packet_t *packet, const uint8_t *signing_secret_key,
                         uint8_t *buffer);

/*  The 16-byte cluster id of a cluster name (BLAKE2b-128 of its bytes).  */
void sb_beacon_cluster_id (const char *cluster, uint8_t id [SB_BEACON_ID_SIZE]);

/*  Certificate check supplied by the owner in signed mode: 0 if `cert`
    is a valid broker certificate for the Ed25519 key `signing_pk`; 1 if
    it is a valid member certificate without the broker role (ignored as
    SB_BEACON_NOT_BROKER); anything else: ignored as SB_BEACON_BAD_CERT.  */
typedef int (sb_beacon_verify_fn) (const uint8_t *cert, size_t size,
                                   const uint8_t signing_pk [SB_BEACON_KEY_SIZE], void *arg);

typedef struct {
    const char *cluster;            /* cluster name; NULL: "default" */
    const char *mode;               /* "lo" (NULL), "off", IFACE, "239.x.y.z[@IFACE]" */
    int port;                       /* UDP port; 0: SB_BEACON_PORT_DEFAULT */
    int interval_ms;                /* 0: SB_BEACON_INTERVAL_DEFAULT */
    /*  What this node announces; endpoint NULL: listen only.  */
    const char *endpoint;           /* the broker's ZeroMQ endpoint */
    const uint8_t *broker_id;       /* 16 bytes; NULL: random */
    const uint8_t *public_key;      /* 32-byte CURVE public key; NULL: insecure */
    const uint8_t *signing_secret_key; /* 64-byte Ed25519 secret key; NULL: unsigned */
    const uint8_t *cert;            /* certificate sent with signed beacons */
    size_t cert_size;               /* <= SB_BEACON_CERT_MAX */
    /*  Signed mode (only signed, verified beacons are believed).  */
    sb_beacon_verify_fn *verify_cert;
    void *verify_arg;
    int max_skew_ms;                /* signed mode: 0: SB_BEACON_SKEW_DEFAULT; < 0: no check */
    size_t peers_max;               /* 0: SB_BEACON_PEERS_DEFAULT */
} sb_beacon_config_t;

typedef enum {
    SB_BEACON_NONE = 0,         /* nothing new (known broker, our own beacon) */
    SB_BEACON_APPEARED,         /* a broker to connect to (new, or back after gone) */
    SB_BEACON_CHANGED,          /* a live broker id now announces another endpoint or key */
    SB_BEACON_GONE,             /* silent for 3 intervals, or leaving */
    SB_BEACON_CONFLICT,         /* another id claims the endpoint of a live broker, or
                                   another sender uses our own id: ignored, reported once */
    SB_BEACON_IGNORED           /* a datagram refused; reason says why */
} sb_beacon_event_type_t;

typedef struct {
    sb_beacon_event_type_t type;
    sb_beacon_reason_t reason;                      /* IGNORED */
    uint8_t broker_id [SB_BEACON_ID_SIZE];
    char endpoint [SB_BEACON_ENDPOINT_MAX + 1];
    uint8_t public_key [SB_BEACON_KEY_SIZE];
    bool leaving;                                   /* GONE: it said so (else: silent) */
    char old_endpoint [SB_BEACON_ENDPOINT_MAX + 1]; /* CHANGED */
    uint8_t other_id [SB_BEACON_ID_SIZE];           /* CONFLICT: the id holding the endpoint */
    char from [48];                                 /* sender's address "a.b.c.d:port" */
} sb_beacon_event_t;

typedef struct {
    uint64_t received;          /* datagrams read */
    uint64_t accepted;          /* believed (own beacons excluded) */
    uint64_t sent;
    uint64_t send_errors;
    uint64_t own;               /* our own beacons heard back */
    uint64_t ignored [SB_BEACON_REASON_MAX];    /* by reason; [0] unused */
    uint64_t conflicts;         /* CHANGED and CONFLICT events */
} sb_beacon_counters_t;

typedef struct sb_beacon sb_beacon_t;

/*  Opens the sockets (config NULL: all defaults, listen only on "lo").
    NULL with err filled on a bad config or when the interface or port
    cannot be used.  Copies what it keeps from config.  */
sb_beacon_t *sb_beacon_new (const sb_beacon_config_t *config, sb_error_t *err);
/*  Closes the sockets (sending nothing: call sb_beacon_leave first) and
    wipes keys.  NULLs *self_p; safe on NULL.  */
void sb_beacon_destroy (sb_beacon_t **self_p);

/*  The fd to poll for input; -1 in mode "off".  */
int sb_beacon_fd (const sb_beacon_t *self);
/*  The broker id announced (random unless given).  */
const uint8_t *sb_beacon_id (const sb_beacon_t *self);

/*  Sends a beacon when one is due (the first at once).  1 if sent, 0 if
    not due (or listen only, off, left), -1 if sending failed (counted;
    the next one is still scheduled).  */
int sb_beacon_tick (sb_beacon_t *self, int64_t now_ms);
/*  Sends one leaving beacon now; later ticks send nothing.  0 or -1.  */
int sb_beacon_leave (sb_beacon_t *self);

/*  Reads one datagram, if any, and fills *event.  0 when a datagram was
    handled (event->type may be SB_BEACON_NONE), -1 when there was none
    (errno EAGAIN) or on error.  Never blocks.  */
int sb_beacon_recv (sb_beacon_t *self, int64_t now_ms, sb_beacon_event_t *event);

/*  Handles one datagram as sb_beacon_recv would (for tests and fuzzing;
    `from` may be NULL).  */
void sb_beacon_handle (sb_beacon_t *self, const void *data, size_t size, const char *from,
                       int64_t now_ms, sb_beacon_event_t *event);

/*  Reports brokers silent for 3 of their intervals as GONE: up to max
    events into `events`; returns how many.  Call again if it returns max.  */
size_t sb_beacon_expire (sb_beacon_t *self, int64_t now_ms, sb_beacon_event_t *events, size_t max);

/*  Milliseconds until the next send or expiry is due (0: now); -1 when
    nothing is scheduled.  */
int sb_beacon_timeout (const sb_beacon_t *self, int64_t now_ms);

/*  Number of live brokers known (ours excluded).  */
size_t sb_beacon_size (const sb_beacon_t *self);

void sb_beacon_counters (const sb_beacon_t *self, sb_beacon_counters_t *counters);

/*  "appeared", "gone", ...  */
const char *sb_beacon_event_name (sb_beacon_event_type_t type);

#endif
