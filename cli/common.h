/*  common.h — what the bus commands of `sb` (call, pub, sub, services,
    run) share: the broker endpoint, number parsing, a client, a JSON body,
    and the exit status for a failed call.

    Exit statuses (also in each command's --help): 0 success, 1 the call
    failed (the service or broker answered an error, or nothing could be
    reached), 2 usage error (bad option, invalid JSON), 3 timeout (no
    answer within the deadline).
*/
#ifndef SB_CLI_COMMON_H_INCLUDED
#define SB_CLI_COMMON_H_INCLUDED

#include "commands.h"
#include "switchboard.h"
#include "security/identity.h"

#define SB_EXIT_TIMEOUT 3

/*  The broker when neither --connect nor SB_CONNECT says otherwise.  */
#define SB_CONNECT_DEFAULT "tcp://127.0.0.1:7600"

/*  `option` if given, else $SB_CONNECT if set, else the default.  */
const char *sb_cli_endpoint (const char *option);

/*  Parses a decimal integer in [min, max]; 0, or -1 after printing
    "sb CMD: --NAME: ..." on stderr.  */
int sb_cli_int (const char *cmd, const char *name, const char *text, long min, long max, long *value);

/*  Cluster options shared by run, call, pub, sub and services.  Each
    command adds SB_CLI_CLUSTER_OPTIONS to its getopt_long table, lets
    sb_cli_cluster_option look at every option first, and puts
    SB_CLI_CLUSTER_HELP in its --help.  Without --beacon (or $SB_BEACON)
    nothing changes: the broker is --connect, else $SB_CONNECT, else the
    default.  With a beacon the --connect endpoints (or $SB_CONNECT) are
    static seeds, and without them the brokers are found by beacon only.  */
#define SB_CLI_OPT_CLUSTER 0x101
#define SB_CLI_OPT_BEACON 0x102
#define SB_CLI_OPT_KEYS 0x103
#define SB_CLI_OPT_MEMBER 0x104
#define SB_CLI_OPT_INSECURE 0x105
/*  Last: commands pass every option in [SB_CLI_OPT_CLUSTER,
    SB_CLI_OPT_BEACON_PORT] to sb_cli_cluster_option.  */
#define SB_CLI_OPT_BEACON_PORT 0x106
#define SB_CLI_CLUSTER_OPTIONS \
    { "cluster", required_argument, NULL, SB_CLI_OPT_CLUSTER }, \
    { "beacon", required_argument, NULL, SB_CLI_OPT_BEACON }, \
    { "beacon-port", required_argument, NULL, SB_CLI_OPT_BEACON_PORT }, \
    { "keys", required_argument, NULL, SB_CLI_OPT_KEYS }, \
    { "member", required_argument, NULL, SB_CLI_OPT_MEMBER }, \
    { "insecure", no_argument, NULL, SB_CLI_OPT_INSECURE }
#define SB_CLI_CLUSTER_HELP \
    "      --cluster NAME      cluster to join (default $SB_CLUSTER, else 'default')\n" \
    "      --beacon MODE       find the cluster's brokers by UDP beacon: lo (this\n" \
    "                          machine), an interface name, 239.x.y.z[@IFACE]\n" \
    "                          (multicast) or off (default $SB_BEACON, else no\n" \
    "                          beacons); --connect endpoints are then static seeds\n" \
    "      --beacon-port PORT  UDP beacon port (default $SB_BEACON_PORT, else 7690)\n" \
    "      --keys DIR          keys directory of this member (default $SB_KEYS);\n" \
    "                          links are then CURVE and each endpoint carries its\n" \
    "                          broker's key: tcp://HOST:PORT#KEY\n" \
    "      --member NAME       member name in DIR (default $SB_MEMBER)\n" \
    "      --insecure          no identity, plaintext links (ignore $SB_KEYS and\n" \
    "                          $SB_MEMBER); without keys this is the default, and\n" \
    "                          an endpoint with a #KEY is then refused\n"

/*  How long a one-shot command waits for the first broker found by
    beacon: 1.5 default beacon intervals, plus the HELLO/WELCOME.  */
#define SB_CLI_DISCOVERY_MS 2000

typedef struct {
    const char *cluster;        /* NULL: "default" */
    const char *beacon;         /* NULL: no beacons */
    int port;                   /* 0: default */
} sb_cli_cluster_t;

/*  1 if `opt` was a cluster option (recorded), 0 if it was not, -1 after
    printing "sb CMD: ..." for a bad value.  */
int sb_cli_cluster_option (const char *cmd, int opt, const char *arg);

/*  The cluster settings: the options, else $SB_CLUSTER, $SB_BEACON,
    $SB_BEACON_PORT (a bad port in the environment is ignored).  */
sb_cli_cluster_t sb_cli_cluster (void);

/*  Security settings (--keys, --member, --insecure; recorded by
    sb_cli_cluster_option): the options, else $SB_KEYS and $SB_MEMBER,
    both NULL with --insecure or when neither is set (no identity).  */
typedef struct {
    const char *keys;
    const char *member;
} sb_cli_security_t;
sb_cli_security_t sb_cli_security (void);

/*  For sb run: loads the identity sb_cli_security names, once per
    process, kept until sb_cli_identity_free.  0 with *identity NULL when
    there is none, 0 with it set, or -1 after printing "sb CMD: ..."  */
int sb_cli_identity (const char *cmd, const sb_identity_t **identity);
void sb_cli_identity_free (void);

/*  The endpoints to use for --connect `option`: the option, else
    $SB_CONNECT, else the default when no beacon is set, else NULL
    (brokers found by beacon only).  */
const char *sb_cli_endpoints (const char *option);

/*  Connects a client; NULL after printing "sb CMD: ..." on stderr.
    With a beacon set and `endpoints` NULL it first waits up to
    `timeout_ms` (SB_CLI_DISCOVERY_MS if 0) for a broker of the cluster
    to answer sys.ping, and says so if none does.  */
sb_client_t *sb_cli_client (const char *cmd, const char *endpoints, int timeout_ms);

/*  Converts a JSON argument into MessagePack: NULL means nil, "-" reads
    standard input (at most 16 MiB).  0, or -1 after printing
    "sb CMD: invalid JSON: ..." on stderr.  */
int sb_cli_body (const char *cmd, const char *json, msgpack_sbuffer *out);

/*  Prints "sb CMD: CODE: TEXT" on stderr; returns the exit status that
    goes with the code (3 for timeout, else 1).  */
int sb_cli_fail (const char *cmd, const sb_error_t *err);

/*  Round trip to the broker (sys.ping) on the client's connection.
    Returns 0, or the exit status after printing why.  */
int sb_cli_ping (const char *cmd, sb_client_t *client, int timeout_ms);

/*  Prints a decoded MessagePack object as one line of JSON on stdout.
    0, or -1 after printing why on stderr.  */
int sb_cli_print_json (const char *cmd, const msgpack_object *obj);

#endif
