/*  runtime_beacon.t — UDP beacons on loopback broadcast (127.255.255.255).

    Real sockets only on loopback, each group of checks on its own free UDP
    port and cluster name so that concurrent test runs do not hear each
    other.  Waits poll for the expected condition with generous deadlines.
*/
#include "beacons.h"
#include "security/cert.h"
#include "security/keys.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOG_MAX 512
#define WAIT_MS 10000

typedef struct {
    const char *name;
    sb_beacon_t *beacon;
    sb_beacon_event_t log [LOG_MAX];
    size_t logged;
} node_t;

static char s_cluster [64];

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_log (node_t *node, const sb_beacon_event_t *event)
{
    if (event->type != SB_BEACON_NONE && node->logged < LOG_MAX)
        node->log [node->logged++] = *event;
}

/*  Runs every node's tick/recv/expire for up to ms milliseconds, or until
    done (node, arg) holds.  Returns whether it held.  */
typedef bool (done_fn) (void *arg);

static bool
s_pump (node_t **nodes, size_t count, int ms, done_fn *done, void *arg)
{
    int64_t end = s_now () + ms;
    while (true) {
        if (done && done (arg))
            return true;
        int64_t now = s_now ();
        if (now >= end)
            return false;
        struct pollfd items [8];
        for (size_t i = 0; i < count; i++) {
            sb_beacon_tick (nodes [i]->beacon, now);
            items [i] = (struct pollfd) { .fd = sb_beacon_fd (nodes [i]->beacon),
                                          .events = POLLIN };
        }
        poll (items, count, 10);
        now = s_now ();
        for (size_t i = 0; i < count; i++) {
            sb_beacon_event_t event;
            for (int n = 0; n < 100 && sb_beacon_recv (nodes [i]->beacon, now, &event) == 0; n++)
                s_log (nodes [i], &event);
            sb_beacon_event_t expired [8];
            size_t gone = sb_beacon_expire (nodes [i]->beacon, now, expired, 8);
            for (size_t e = 0; e < gone; e++)
                s_log (nodes [i], &expired [e]);
        }
    }
}

/*  How many events of `type` about broker `id` the node logged.  */
static size_t
s_seen (const node_t *node, sb_beacon_event_type_t type, const uint8_t *id)
{
    size_t count = 0;
    for (size_t i = 0; i < node->logged; i++)
        if (node->log [i].type == type
        &&  (!id || memcmp (node->log [i].broker_id, id, SB_BEACON_ID_SIZE) == 0))
            count++;
    return count;
}

static const sb_beacon_event_t *
s_last (const node_t *node, sb_beacon_event_type_t type, const uint8_t *id)
{
    for (size_t i = node->logged; i-- > 0;)
        if (node->log [i].type == type
        &&  (!id || memcmp (node->log [i].broker_id, id, SB_BEACON_ID_SIZE) == 0))
            return &node->log [i];
    return NULL;
}

/*  Conditions for s_pump.  */
typedef struct {
    node_t *node;
    sb_beacon_event_type_t type;
    const uint8_t *id;
    size_t count;
    node_t *node2;
    const uint8_t *id2;
} want_t;

static bool
s_want (void *arg)
{
    want_t *w = arg;
    return s_seen (w->node, w->type, w->id) >= w->count
        && (!w->node2 || s_seen (w->node2, w->type, w->id2) >= w->count);
}

typedef struct {
    node_t *node;
    sb_beacon_reason_t reason;
    uint64_t count;
} want_ignored_t;

static bool
s_want_ignored (void *arg)
{
    want_ignored_t *w = arg;
    sb_beacon_counters_t counters;
    sb_beacon_counters (w->node->beacon, &counters);
    return counters.ignored [w->reason] >= w->count;
}

typedef struct {
    node_t *node;
    uint64_t count;
} want_received_t;

static bool
s_want_received (void *arg)
{
    want_received_t *w = arg;
    sb_beacon_counters_t counters;
    sb_beacon_counters (w->node->beacon, &counters);
    return counters.received >= w->count;
}

/*  --------------------------------------------------------------------
    Raw datagrams, as a stranger on the network would send them.  */

static int s_raw_fd = -1;

static void
s_raw_send (int port, const void *data, size_t size)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                               .sin_addr = { htonl (0x7fffffff) } };
    if (sendto (s_raw_fd, data, size, 0, (struct sockaddr *) &sin, sizeof sin) != (ssize_t) size)
        tap_diag ("raw sendto failed");
}

static void
s_packet (sb_beacon_packet_t *packet, const char *cluster, uint8_t id_byte, uint64_t sequence,
          const char *endpoint)
{
    memset (packet, 0, sizeof *packet);
    sb_beacon_cluster_id (cluster, packet->cluster_id);
    memset (packet->broker_id, id_byte, SB_BEACON_ID_SIZE);
    packet->sequence = sequence;
    packet->timestamp_ms = (uint64_t) time (NULL) * 1000;
    packet->interval_ms = 100;
    snprintf (packet->endpoint, sizeof packet->endpoint, "%s", endpoint);
}

/*  Encodes and sends a packet; returns its size.  */
static size_t
s_raw_packet (int port, const sb_beacon_packet_t *packet, const uint8_t *sk, uint8_t *buffer)
{
    size_t size = sb_beacon_encode (packet, sk, buffer);
    s_raw_send (port, buffer, size);
    return size;
}

/*  --------------------------------------------------------------------
    Test certificates: "the authority signed this signing key".  */

static uint8_t s_authority_pk [crypto_sign_PUBLICKEYBYTES];
static uint8_t s_authority_sk [crypto_sign_SECRETKEYBYTES];

static void
s_make_cert (const uint8_t *authority_sk, const uint8_t *member_pk, uint8_t cert [64])
{
    crypto_sign_detached (cert, NULL, member_pk, crypto_sign_PUBLICKEYBYTES, authority_sk);
}

static int
s_verify_cert (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg)
{
    int *calls = arg;
    (*calls)++;
    if (size != 64)
        return -1;
    return crypto_sign_verify_detached (cert, signing_pk, 32, s_authority_pk);
}

/*  --------------------------------------------------------------------  */

static void
s_test_codec (void)
{
    sb_beacon_packet_t in, out;
    uint8_t buffer [SB_BEACON_PACKET_MAX], copy [SB_BEACON_PACKET_MAX + 8];
    s_packet (&in, "codec", 0x11, 0x0102030405060708ULL, "tcp://127.0.0.1:7600");
    memset (in.public_key, 0xcd, 32);
    in.flags = SB_BEACON_F_LEAVING;
    size_t size = sb_beacon_encode (&in, NULL, buffer);
    tap_is_int (size, SB_BEACON_FIXED_SIZE + strlen ("tcp://127.0.0.1:7600"),
                "unsigned beacon is 91 bytes + endpoint");
    tap_is_int (sb_beacon_parse (buffer, size, &out), SB_BEACON_OK, "parses");
    tap_ok (out.sequence == in.sequence && out.timestamp_ms == in.timestamp_ms
            && out.interval_ms == 100 && out.flags == SB_BEACON_F_LEAVING
            && memcmp (out.broker_id, in.broker_id, 16) == 0
            && memcmp (out.cluster_id, in.cluster_id, 16) == 0
            && memcmp (out.public_key, in.public_key, 32) == 0, "every field round-trips");
    tap_is_str (out.endpoint, "tcp://127.0.0.1:7600", "endpoint");

    uint8_t pk [32], sk [64], cert [SB_BEACON_CERT_MAX];
    crypto_sign_keypair (pk, sk);
    memset (cert, 0x5a, sizeof cert);
    in.cert = cert;
    in.cert_size = SB_BEACON_CERT_MAX;
    memset (in.endpoint, 'x', SB_BEACON_ENDPOINT_MAX);
    in.endpoint [SB_BEACON_ENDPOINT_MAX] = 0;
    size = sb_beacon_encode (&in, sk, buffer);
    tap_is_int (size, SB_BEACON_PACKET_MAX, "largest signed beacon is %d bytes",
                SB_BEACON_PACKET_MAX);
    tap_is_int (sb_beacon_parse (buffer, size, &out), SB_BEACON_OK, "signed beacon parses");
    tap_ok ((out.flags & SB_BEACON_F_SIGNED) && memcmp (out.signing_key, pk, 32) == 0
            && out.cert_size == SB_BEACON_CERT_MAX && memcmp (out.cert, cert, out.cert_size) == 0
            && crypto_sign_verify_detached (out.signature, buffer, out.signed_size, pk) == 0,
            "signing key, certificate and signature");

    /*  Refusals: every strict prefix, extra bytes, bad fields.  */
    int prefixes_ok = 1;
    for (size_t n = 0; n < size; n++)
        if (sb_beacon_parse (buffer, n, &out) == SB_BEACON_OK)
            prefixes_ok = 0;
    tap_ok (prefixes_ok, "no strict prefix of a signed beacon parses");
    memcpy (copy, buffer, size);
    copy [size] = 0;
    tap_is_int (sb_beacon_parse (copy, size + 1, &out), SB_BEACON_BAD_SIZE, "trailing byte");
    tap_is_int (sb_beacon_parse ("SBB", 3, &out), SB_BEACON_BAD_MAGIC, "short magic");
    tap_is_int (sb_beacon_parse ("SBBC", 4, &out), SB_BEACON_BAD_SIZE, "magic alone");
    memcpy (copy, buffer, size);
    copy [4] = 2;
    tap_is_int (sb_beacon_parse (copy, size, &out), SB_BEACON_BAD_VERSION, "version 2");
    s_packet (&in, "codec", 0x11, 1, "tcp://a:1");
    size = sb_beacon_encode (&in, NULL, buffer);
    memcpy (copy, buffer, size);
    copy [SB_BEACON_FIXED_SIZE + 3] = '\n';
    tap_is_int (sb_beacon_parse (copy, size, &out), SB_BEACON_BAD_FIELD,
                "control char in endpoint");
    memcpy (copy, buffer, size);
    copy [90] = 0;
    tap_is_int (sb_beacon_parse (copy, SB_BEACON_FIXED_SIZE, &out), SB_BEACON_BAD_FIELD,
                "empty endpoint");
    memcpy (copy, buffer, size);
    copy [57] = 5;
    copy [56] = 0;
    tap_is_int (sb_beacon_parse (copy, size, &out), SB_BEACON_BAD_FIELD, "interval 5 ms");
    in.interval_ms = 0;
    tap_is_int (sb_beacon_encode (&in, NULL, buffer), 0, "encoder refuses interval 0");
}

static void
s_test_config (void)
{
    sb_error_t err;
    sb_beacon_config_t config = { .mode = "10.1.2.3" };
    tap_ok (!sb_beacon_new (&config, &err) && strstr (err.text, "multicast"),
            "unicast address as mode refused: %s", err.text);
    config.mode = "nosuchif0";
    tap_ok (!sb_beacon_new (&config, &err) && strstr (err.text, "nosuchif0"),
            "unknown interface refused: %s", err.text);
    config = (sb_beacon_config_t) { .interval_ms = 5 };
    tap_ok (!sb_beacon_new (&config, &err), "interval 5 ms refused: %s", err.text);
    config = (sb_beacon_config_t) { .endpoint = "tcp://bad endpoint" };
    tap_ok (!sb_beacon_new (&config, &err), "endpoint with a space refused: %s", err.text);
    config = (sb_beacon_config_t) { .mode = "off", .endpoint = "tcp://127.0.0.1:1" };
    sb_beacon_t *off = sb_beacon_new (&config, &err);
    tap_ok (off && sb_beacon_fd (off) == -1 && sb_beacon_tick (off, s_now ()) == 0,
            "mode off: no fd, sends nothing");
    sb_beacon_destroy (&off);
    sb_beacon_destroy (&off);
    tap_ok (off == NULL, "destroy NULLs the pointer and is safe twice");
}

static void
s_test_discovery (void)
{
    int port = bt_free_port ();
    node_t a = { .name = "a" }, b = { .name = "b" }, c = { .name = "c" };
    node_t listener = { .name = "listener" };
    a.beacon = bt_beacon (port, s_cluster, "tcp://127.0.0.1:7601", 100);
    b.beacon = bt_beacon (port, s_cluster, "tcp://127.0.0.1:7602", 100);
    listener.beacon = bt_beacon (port, s_cluster, NULL, 100);
    if (!tap_ok (a.beacon && b.beacon && listener.beacon,
                 "three beacons share UDP port %d", port))
        exit (1);
    const uint8_t *id_a = sb_beacon_id (a.beacon), *id_b = sb_beacon_id (b.beacon);
    node_t *all [] = { &a, &b, &listener };
    want_t w = { &a, SB_BEACON_APPEARED, id_b, 1, &b, id_a };
    tap_ok (s_pump (all, 3, WAIT_MS, s_want, &w), "a and b see each other");
    w = (want_t) { &listener, SB_BEACON_APPEARED, id_a, 1, &listener, id_b };
    tap_ok (s_pump (all, 3, WAIT_MS, s_want, &w), "a listener sees both");
    const sb_beacon_event_t *event = s_last (&listener, SB_BEACON_APPEARED, id_b);
    tap_ok (event && strcmp (event->endpoint, "tcp://127.0.0.1:7602") == 0
            && strncmp (event->from, "127.", 4) == 0,
            "event carries b's endpoint, from loopback (%s)", event ? event->from : "-");
    sb_beacon_counters_t counters;
    sb_beacon_counters (a.beacon, &counters);
    tap_ok (counters.own > 0 && s_seen (&a, SB_BEACON_APPEARED, id_a) == 0,
            "a hears its own beacons (%llu) and ignores them",
            (unsigned long long) counters.own);
    s_pump (all, 3, 400, NULL, NULL);
    tap_ok (s_seen (&listener, SB_BEACON_APPEARED, NULL) == 2
            && s_seen (&listener, SB_BEACON_GONE, NULL) == 0,
            "steady beacons: no duplicate or spurious events");
    tap_is_int (sb_beacon_size (listener.beacon), 2, "listener knows 2 brokers");
    int64_t now = s_now ();
    sb_beacon_tick (a.beacon, now);
    int timeout = sb_beacon_timeout (a.beacon, now);
    tap_ok (timeout >= 0 && timeout <= 100 && sb_beacon_tick (a.beacon, now) == 0,
            "after a send, timeout says when the next is due (%d ms)", timeout);

    /*  Leaving.  */
    tap_is_int (sb_beacon_leave (b.beacon), 0, "b sends a leaving beacon");
    w = (want_t) { &listener, SB_BEACON_GONE, id_b, 1, &a, id_b };
    tap_ok (s_pump (all, 3, WAIT_MS, s_want, &w), "a and the listener see b gone");
    event = s_last (&listener, SB_BEACON_GONE, id_b);
    tap_ok (event && event->leaving, "reported as leaving, not as silence");
    tap_is_int (sb_beacon_tick (b.beacon, s_now () + 10000), 0, "b sends nothing after leaving");

    /*  Silence: c appears, then vanishes without a word.  */
    c.beacon = bt_beacon (port, s_cluster, "tcp://127.0.0.1:7603", 100);
    const uint8_t *id_c = sb_beacon_id (c.beacon);
    node_t *with_c [] = { &a, &listener, &c };
    w = (want_t) { &listener, SB_BEACON_APPEARED, id_c, 1, NULL, NULL };
    tap_ok (s_pump (with_c, 3, WAIT_MS, s_want, &w), "c appears");
    uint8_t id_c_copy [16];
    memcpy (id_c_copy, id_c, 16);
    sb_beacon_destroy (&c.beacon);
    int64_t silent_since = s_now ();
    node_t *without_c [] = { &a, &listener };
    w = (want_t) { &listener, SB_BEACON_GONE, id_c_copy, 1, &a, id_c_copy };
    tap_ok (s_pump (without_c, 2, WAIT_MS, s_want, &w),
            "silent c reported gone by a and the listener");
    int64_t took = s_now () - silent_since;
    event = s_last (&listener, SB_BEACON_GONE, id_c_copy);
    tap_ok (event && !event->leaving && took >= 200 && took < WAIT_MS,
            "after about 3 intervals of silence (%lld ms)", (long long) took);

    /*  Another cluster on the same port.  */
    node_t foreign = { .name = "foreign" };
    foreign.beacon = bt_beacon (port, "another-cluster", "tcp://127.0.0.1:7604", 100);
    node_t *with_foreign [] = { &a, &listener, &foreign };
    want_ignored_t wi = { &listener, SB_BEACON_FOREIGN, 3 };
    tap_ok (s_pump (with_foreign, 3, WAIT_MS, s_want_ignored, &wi),
            "beacons of another cluster are counted as foreign");
    tap_ok (s_seen (&listener, SB_BEACON_APPEARED, sb_beacon_id (foreign.beacon)) == 0
            && s_seen (&foreign, SB_BEACON_APPEARED, NULL) == 0,
            "and never appear, either way");
    sb_beacon_destroy (&foreign.beacon);
    sb_beacon_destroy (&a.beacon);
    sb_beacon_destroy (&b.beacon);
    sb_beacon_destroy (&listener.beacon);
}

static void
s_test_signed (void)
{
    int port = bt_free_port ();
    int calls = 0;
    uint8_t good_pk [32], good_sk [64], good_cert [64];
    uint8_t bad_pk [32], bad_sk [64], bad_cert [64];
    uint8_t other_authority_pk [32], other_authority_sk [64];
    crypto_sign_keypair (good_pk, good_sk);
    crypto_sign_keypair (bad_pk, bad_sk);
    crypto_sign_keypair (other_authority_pk, other_authority_sk);
    s_make_cert (s_authority_sk, good_pk, good_cert);
    s_make_cert (other_authority_sk, bad_pk, bad_cert);

    uint8_t curve_pk [32];
    memset (curve_pk, 0x42, sizeof curve_pk);
    sb_error_t err;
    sb_beacon_config_t config = {
        .cluster = s_cluster, .port = port, .interval_ms = 100,
        .endpoint = "tcp://127.0.0.1:7611", .public_key = curve_pk,
        .signing_secret_key = good_sk, .cert = good_cert, .cert_size = 64,
        .verify_cert = s_verify_cert, .verify_arg = &calls
    };
    node_t good = { .name = "good" }, bad = { .name = "bad" }, plain = { .name = "plain" };
    node_t listener = { .name = "listener" };
    good.beacon = sb_beacon_new (&config, &err);
    config.endpoint = "tcp://127.0.0.1:7612";
    config.signing_secret_key = bad_sk;
    config.cert = bad_cert;
    bad.beacon = sb_beacon_new (&config, &err);
    plain.beacon = bt_beacon (port, s_cluster, "tcp://127.0.0.1:7613", 100);
    config.endpoint = NULL;
    config.signing_secret_key = NULL;
    config.cert = NULL;
    config.cert_size = 0;
    listener.beacon = sb_beacon_new (&config, &err);
    if (!tap_ok (good.beacon && bad.beacon && plain.beacon && listener.beacon,
                 "signed-mode beacons start"))
        exit (1);
    node_t *all [] = { &good, &bad, &plain, &listener };
    want_t w = { &listener, SB_BEACON_APPEARED, sb_beacon_id (good.beacon), 1, NULL, NULL };
    tap_ok (s_pump (all, 4, WAIT_MS, s_want, &w), "a correctly signed beacon appears");
    const sb_beacon_event_t *event = s_last (&listener, SB_BEACON_APPEARED,
                                             sb_beacon_id (good.beacon));
    tap_ok (event && memcmp (event->public_key, curve_pk, 32) == 0,
            "with the broker's CURVE public key");
    want_ignored_t wi = { &listener, SB_BEACON_UNSIGNED, 3 };
    tap_ok (s_pump (all, 4, WAIT_MS, s_want_ignored, &wi), "unsigned beacons counted");
    wi = (want_ignored_t) { &listener, SB_BEACON_BAD_CERT, 3 };
    tap_ok (s_pump (all, 4, WAIT_MS, s_want_ignored, &wi),
            "a beacon whose certificate another authority signed is counted");

    /*  A good beacon with one byte changed after signing.  */
    sb_beacon_packet_t packet;
    uint8_t buffer [SB_BEACON_PACKET_MAX];
    s_packet (&packet, s_cluster, 0x77, 1, "tcp://127.0.0.1:7666");
    packet.cert = good_cert;
    packet.cert_size = 64;
    size_t size = sb_beacon_encode (&packet, good_sk, buffer);
    buffer [SB_BEACON_FIXED_SIZE + 10] ^= 1;
    s_raw_send (port, buffer, size);
    wi = (want_ignored_t) { &listener, SB_BEACON_BAD_SIGNATURE, 1 };
    tap_ok (s_pump (&all [3], 1, WAIT_MS, s_want_ignored, &wi),
            "a tampered signed beacon is counted as bad_signature");
    /*  A good signature with a timestamp an hour old.  */
    s_packet (&packet, s_cluster, 0x78, 1, "tcp://127.0.0.1:7667");
    packet.cert = good_cert;
    packet.cert_size = 64;
    packet.timestamp_ms -= 3600 * 1000;
    s_raw_packet (port, &packet, good_sk, buffer);
    wi = (want_ignored_t) { &listener, SB_BEACON_STALE, 1 };
    tap_ok (s_pump (&all [3], 1, WAIT_MS, s_want_ignored, &wi),
            "a signed beacon an hour old is counted as stale");
    s_pump (all, 4, 300, NULL, NULL);
    tap_ok (s_seen (&listener, SB_BEACON_APPEARED, NULL) == 1,
            "only the good broker ever appeared");
    tap_ok (calls > 0, "the certificate callback was used (%d calls)", calls);
    for (size_t i = 0; i < 4; i++)
        sb_beacon_destroy (&all [i]->beacon);
}

/*  Signed mode with real member certificates (runtime/security/cert.c) and its
    beacon callback, through sb_beacon_handle: no sockets needed.  */
static sb_beacon_event_type_t
s_handle_signed (sb_beacon_t *listener, uint8_t id_byte, const char *endpoint,
                 const uint8_t *cert, size_t cert_size, const uint8_t *sign_sk,
                 sb_beacon_event_t *event)
{
    sb_beacon_packet_t packet;
    uint8_t buffer [SB_BEACON_PACKET_MAX];
    s_packet (&packet, s_cluster, id_byte, 1, endpoint);
    packet.cert = cert;
    packet.cert_size = cert_size;
    size_t size = sb_beacon_encode (&packet, sign_sk, buffer);
    sb_beacon_handle (listener, buffer, size, NULL, s_now (), event);
    return event->type;
}

static size_t
s_issue (const sb_keys_t *member, const sb_keys_t *authority, uint32_t roles, uint8_t *out,
         size_t out_max)
{
    sb_cert_t *cert = calloc (1, sizeof *cert);
    sb_error_t err;
    size_t size = 0;
    if (cert && sb_cert_init (cert, member, (uint64_t) time (NULL) - 60, 3600, &err) == 0
    &&  sb_cert_add_roles (cert, roles, &err) == 0 && sb_cert_sign (cert, authority, &err) == 0)
        size = sb_cert_encode (cert, out, out_max);
    free (cert);
    return size;
}

static void
s_test_real_certs (void)
{
    sb_error_t err;
    sb_keys_t *authority = sb_keys_new_authority ("authority", &err);
    sb_keys_t *stranger_authority = sb_keys_new_authority ("stranger", &err);
    sb_keys_t *broker = sb_keys_new_member ("broker1", &err);
    sb_keys_t *other = sb_keys_new_member ("broker2", &err);
    uint8_t cert [SB_CERT_MAX + 80], foreign_cert [SB_CERT_MAX + 80];
    sb_keys_t *member = sb_keys_new_member ("cli", &err);
    uint8_t member_cert [SB_CERT_MAX + 80];
    size_t cert_size = s_issue (broker, authority, SB_CERT_ROLE_BROKER, cert, sizeof cert);
    size_t foreign_size = s_issue (other, stranger_authority, SB_CERT_ROLE_BROKER, foreign_cert,
                                   sizeof foreign_cert);
    size_t member_size = s_issue (member, authority, 0, member_cert, sizeof member_cert);
    if (!tap_ok (cert_size > 0 && cert_size <= SB_BEACON_CERT_MAX && foreign_size > 0,
                 "a member certificate fits in a beacon (%zu bytes)", cert_size))
        exit (1);
    sb_cert_verifier_t verifier;
    memset (&verifier, 0, sizeof verifier);
    memcpy (verifier.authority_pk, sb_keys_sign_public (authority), SB_KEY_SIZE);
    sb_beacon_config_t config = { .cluster = s_cluster, .mode = "off",
                                  .verify_cert = sb_cert_verify_beacon, .verify_arg = &verifier };
    sb_beacon_t *listener = sb_beacon_new (&config, &err);
    sb_beacon_event_t event;
    tap_is_int (s_handle_signed (listener, 0x51, "tcp://127.0.0.1:7651", cert, cert_size,
                                 sb_keys_sign_secret (broker), &event),
                SB_BEACON_APPEARED, "sb_cert_verify_beacon: the broker's signed beacon appears");
    s_handle_signed (listener, 0x52, "tcp://127.0.0.1:7652", cert, cert_size,
                     sb_keys_sign_secret (other), &event);
    tap_ok (event.type == SB_BEACON_IGNORED && event.reason == SB_BEACON_BAD_CERT,
            "another key signing with that member's certificate: bad_cert");
    s_handle_signed (listener, 0x53, "tcp://127.0.0.1:7653", foreign_cert, foreign_size,
                     sb_keys_sign_secret (other), &event);
    tap_ok (event.type == SB_BEACON_IGNORED && event.reason == SB_BEACON_BAD_CERT,
            "a certificate from another authority: bad_cert");
    /*  An ordinary member posing as a broker: its own key, its own valid
        certificate, its own endpoint; the certificate has no broker role.  */
    s_handle_signed (listener, 0x54, "tcp://127.0.0.1:7654", member_cert, member_size,
                     sb_keys_sign_secret (member), &event);
    tap_ok (event.type == SB_BEACON_IGNORED && event.reason == SB_BEACON_NOT_BROKER,
            "a member's own valid certificate without the broker role: not_broker");
    sb_beacon_counters_t counters;
    sb_beacon_counters (listener, &counters);
    tap_ok (counters.ignored [SB_BEACON_NOT_BROKER] == 1 && sb_beacon_size (listener) == 1,
            "counted as not_broker; only the real broker is known");
    sb_beacon_destroy (&listener);
    sb_keys_destroy (&member);
    sb_keys_destroy (&authority);
    sb_keys_destroy (&stranger_authority);
    sb_keys_destroy (&broker);
    sb_keys_destroy (&other);
}

static void
s_test_bad_input (void)
{
    int port = bt_free_port ();
    node_t listener = { .name = "listener" };
    listener.beacon = bt_beacon (port, s_cluster, NULL, 100);
    node_t *all [] = { &listener };
    sb_beacon_packet_t packet;
    uint8_t buffer [SB_BEACON_PACKET_MAX], big [4096];

    /*  Replays.  */
    s_packet (&packet, s_cluster, 0x21, 5, "tcp://127.0.0.1:7621");
    size_t size = s_raw_packet (port, &packet, NULL, buffer);
    want_t w = { &listener, SB_BEACON_APPEARED, packet.broker_id, 1, NULL, NULL };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want, &w), "raw beacon with sequence 5 appears");
    s_raw_send (port, buffer, size);
    packet.sequence = 4;
    s_raw_packet (port, &packet, NULL, buffer);
    want_ignored_t wi = { &listener, SB_BEACON_REPLAYED, 2 };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want_ignored, &wi),
            "the same packet again and sequence 4 are counted as replayed");

    /*  Malformed datagrams: none may produce anything but IGNORED.  */
    size_t before = listener.logged;
    sb_beacon_counters_t counters;
    sb_beacon_counters (listener.beacon, &counters);
    uint64_t received = counters.received;
    s_packet (&packet, s_cluster, 0x22, 1, "tcp://127.0.0.1:7622");
    size = sb_beacon_encode (&packet, NULL, buffer);
    s_raw_send (port, "hello", 5);
    s_raw_send (port, "", 0);
    s_raw_send (port, buffer, size - 1);
    s_raw_send (port, buffer, 40);
    memcpy (big, buffer, size);
    memset (big + size, 0xee, sizeof big - size);
    s_raw_send (port, big, size + 1);
    s_raw_send (port, big, sizeof big);
    big [4] = 9;
    s_raw_send (port, big, size);
    memcpy (big, buffer, size);
    big [90] = 200;
    s_raw_send (port, big, size);
    want_received_t wr = { &listener, received + 8 };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want_received, &wr), "8 malformed datagrams received");
    sb_beacon_counters (listener.beacon, &counters);
    tap_is_int (counters.ignored [SB_BEACON_BAD_MAGIC], 2, "2 counted as bad_magic");
    tap_is_int (counters.ignored [SB_BEACON_BAD_SIZE], 5,
                "5 counted as bad_size (truncated, oversized, trailing, endpoint past the end)");
    tap_is_int (counters.ignored [SB_BEACON_BAD_VERSION], 1, "1 counted as bad_version");
    int only_ignored = 1;
    for (size_t i = before; i < listener.logged; i++)
        if (listener.log [i].type != SB_BEACON_IGNORED)
            only_ignored = 0;
    tap_ok (only_ignored && listener.logged - before == 8,
            "each gave one IGNORED event, nothing else");

    /*  Two ids, one endpoint; one id, a new endpoint.  */
    s_packet (&packet, s_cluster, 0x31, 1, "tcp://127.0.0.1:7631");
    s_raw_packet (port, &packet, NULL, buffer);
    s_packet (&packet, s_cluster, 0x32, 1, "tcp://127.0.0.1:7631");
    s_raw_packet (port, &packet, NULL, buffer);
    w = (want_t) { &listener, SB_BEACON_CONFLICT, packet.broker_id, 1, NULL, NULL };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want, &w), "a second id claiming an endpoint is a conflict");
    const sb_beacon_event_t *event = s_last (&listener, SB_BEACON_CONFLICT, NULL);
    uint8_t first [16];
    memset (first, 0x31, 16);
    tap_ok (event && memcmp (event->other_id, first, 16) == 0
            && strcmp (event->endpoint, "tcp://127.0.0.1:7631") == 0,
            "naming the id that holds the endpoint");
    packet.sequence = 2;
    s_raw_packet (port, &packet, NULL, buffer);
    s_pump (all, 1, 200, NULL, NULL);
    tap_ok (s_seen (&listener, SB_BEACON_CONFLICT, NULL) == 1
            && s_seen (&listener, SB_BEACON_APPEARED, packet.broker_id) == 0,
            "reported once; the claimant does not appear");
    s_packet (&packet, s_cluster, 0x31, 2, "tcp://127.0.0.1:7632");
    s_raw_packet (port, &packet, NULL, buffer);
    w = (want_t) { &listener, SB_BEACON_CHANGED, packet.broker_id, 1, NULL, NULL };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want, &w), "an id with a new endpoint is reported changed");
    event = s_last (&listener, SB_BEACON_CHANGED, NULL);
    tap_ok (event && strcmp (event->old_endpoint, "tcp://127.0.0.1:7631") == 0
            && strcmp (event->endpoint, "tcp://127.0.0.1:7632") == 0, "old and new endpoints");
    sb_beacon_counters (listener.beacon, &counters);
    tap_is_int (counters.conflicts, 2, "2 conflicts counted");
    /*  Once the holder falls silent the claimant appears.  */
    s_packet (&packet, s_cluster, 0x32, 3, "tcp://127.0.0.1:7631");
    s_raw_packet (port, &packet, NULL, buffer);
    w = (want_t) { &listener, SB_BEACON_APPEARED, packet.broker_id, 1, NULL, NULL };
    tap_ok (s_pump (all, 1, WAIT_MS, s_want, &w), "the endpoint freed, the claimant appears");
    sb_beacon_destroy (&listener.beacon);

    /*  A full table: further ids are refused and counted.  */
    sb_beacon_config_t config = { .cluster = s_cluster, .port = port, .peers_max = 2 };
    sb_error_t err;
    sb_beacon_t *small = sb_beacon_new (&config, &err);
    sb_beacon_event_t ev;
    for (uint8_t i = 1; i <= 3; i++) {
        char endpoint [32];
        snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", 7640 + i);
        s_packet (&packet, s_cluster, (uint8_t) (0x40 + i), 1, endpoint);
        size = sb_beacon_encode (&packet, NULL, buffer);
        sb_beacon_handle (small, buffer, size, NULL, s_now (), &ev);
    }
    tap_ok (ev.type == SB_BEACON_IGNORED && ev.reason == SB_BEACON_FULL
            && sb_beacon_size (small) == 2, "peers_max 2: the third broker is refused");
    /*  A live broker (0x42, port 7642) switching to the endpoint of
        another live one (0x41, port 7641): one report, it keeps its own.  */
    int conflicts = 0;
    for (uint64_t seq = 2; seq <= 4; seq++) {
        s_packet (&packet, s_cluster, 0x42, seq, "tcp://127.0.0.1:7641");
        size = sb_beacon_encode (&packet, NULL, buffer);
        sb_beacon_handle (small, buffer, size, NULL, s_now (), &ev);
        conflicts += ev.type == SB_BEACON_CONFLICT;
    }
    sb_beacon_counters (small, &counters);
    tap_ok (conflicts == 1 && counters.conflicts == 1 && sb_beacon_size (small) == 2,
            "a live broker claiming a taken endpoint is reported once, not per beacon");
    s_packet (&packet, s_cluster, 0x42, 5, "tcp://127.0.0.1:7642");
    size = sb_beacon_encode (&packet, NULL, buffer);
    sb_beacon_handle (small, buffer, size, NULL, s_now (), &ev);
    tap_is_int (ev.type, SB_BEACON_NONE, "back on its own endpoint: nothing changed");

    /*  Someone else using our broker id.  */
    uint8_t own_id [16];
    memset (own_id, 0x61, sizeof own_id);
    config = (sb_beacon_config_t) { .cluster = s_cluster, .mode = "off", .broker_id = own_id,
                                    .endpoint = "tcp://127.0.0.1:7661" };
    sb_beacon_t *self = sb_beacon_new (&config, &err);
    s_packet (&packet, s_cluster, 0x61, 1, "tcp://127.0.0.1:7661");
    size = sb_beacon_encode (&packet, NULL, buffer);
    sb_beacon_handle (self, buffer, size, NULL, s_now (), &ev);
    tap_is_int (ev.type, SB_BEACON_NONE, "our own beacon heard back: nothing");
    conflicts = 0;
    for (uint64_t seq = 2; seq <= 3; seq++) {
        s_packet (&packet, s_cluster, 0x61, seq, "tcp://127.0.0.1:7662");
        size = sb_beacon_encode (&packet, NULL, buffer);
        sb_beacon_handle (self, buffer, size, NULL, s_now (), &ev);
        conflicts += ev.type == SB_BEACON_CONFLICT && memcmp (ev.other_id, own_id, 16) == 0;
    }
    tap_ok (conflicts == 1 && sb_beacon_size (self) == 0,
            "another endpoint using our id is reported once as a conflict");
    sb_beacon_destroy (&self);
    sb_beacon_destroy (&small);
}

int
main (void)
{
    if (sodium_init () < 0)
        tap_skip_all ("libsodium cannot initialise");
    snprintf (s_cluster, sizeof s_cluster, "test-%d-%ld", (int) getpid (), (long) time (NULL));
    crypto_sign_keypair (s_authority_pk, s_authority_sk);
    s_raw_fd = socket (AF_INET, SOCK_DGRAM, 0);
    int on = 1;
    setsockopt (s_raw_fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on);

    s_test_codec ();
    s_test_config ();
    s_test_discovery ();
    s_test_signed ();
    s_test_real_certs ();
    s_test_bad_input ();
    close (s_raw_fd);
    return tap_done ();
}
