/*  cmd_broker.c — `sb broker`: runs one broker until SIGINT or SIGTERM.

    The engine is broker/broker.[ch]; this file parses options, prints the
    one line scripts and tests wait for ("sb broker: NAME listening on
    ENDPOINT"), and waits for a signal with sigwait() (the signals are
    blocked before any thread starts, so only this thread takes them).
    SIGHUP reloads certificates and the revocation list.
*/
#include "commands.h"
#include "broker/broker.h"
#include "bus/beacon.h"
#include "security/identity.h"
#include "wire/wire.h"

#include <sodium.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb broker [OPTIONS]\n"
        "\n"
        "Runs a Switchboard broker: peers connect to it, services offer their\n"
        "methods through it, callers' requests and events are routed by it.\n"
        "Runs until SIGINT or SIGTERM, then says BYE to every peer and exits 0.\n"
        "\n"
        "options:\n"
        "  --bind ENDPOINT     where to listen (default " SB_BROKER_BIND_DEFAULT ")\n"
        "  --name NAME         broker name shown to peers (default broker-<pid>)\n"
        "  --heartbeat MS      heartbeat interval; peers silent for 3 are dead (default 1000)\n"
        "  --queue-max N       requests waiting per service before 'overloaded' (default 10000)\n"
        "  --timeout MS        deadline of requests that carry none (default 30000)\n"
        "  --max-timeout MS    longest deadline taken; longer ones are clamped to it\n"
        "                      (default 300000)\n"
        "  --peer-budget BYTES bytes held for one peer (its requests' bodies, what is\n"
        "                      sent to it and not yet written out); past it its requests\n"
        "                      are answered 'overloaded' (default 67108864, 64 MiB)\n"
        "  --peer-services N   services one peer may offer (default 256)\n"
        "  --services-max N    services in the directory (default 4096)\n"
        "  --instances-max N   instances (workers) of one service (default 1024)\n"
        "  --cluster NAME      cluster this broker belongs to (default 'default')\n"
        "  --beacon MODE       where to announce the broker and hear the others:\n"
        "                      lo (127.255.255.255, the default), an interface name,\n"
        "                      a multicast group 239.x.y.z[@IFACE], or off\n"
        "  --beacon-port N     UDP port of the beacons (default 7690)\n"
        "  --keys DIR          keys directory: authority.pub, NAME.key, NAME.cert\n"
        "                      (default $SB_KEYS; see docs/security.md)\n"
        "  --member NAME       this broker's member name in DIR (default $SB_MEMBER)\n"
        "  --certs DIR         certificates of the members to admit (default: the keys DIR)\n"
        "  --revoked FILE      revocation list (reloaded on SIGHUP, with the certificates)\n"
        "  --insecure          run without CURVE encryption (local experiments only)\n"
        "  --help              this text\n"
        "\n"
        "Secure by default: without keys it refuses to start unless --insecure.\n"
        "Once bound it prints one line: 'sb broker: NAME listening on ENDPOINT'\n"
        "(secure: ENDPOINT#KEY, the broker's CURVE public key in hex, as clients take it).\n"
        "\n"
        "examples:\n"
        "  sb broker --keys ./keys --member broker1\n"
        "  sb broker --insecure\n"
        "  sb broker --bind tcp://127.0.0.1:7601 --name b1 --insecure\n"
        "  sb broker --bind 'tcp://127.0.0.1:*' --heartbeat 250 --queue-max 1000 --insecure\n");
}

/*  Parses a decimal number in [min, max]; 0 or -1.  */
static int
s_number (const char *text, long min, long max, long *value)
{
    char *end;
    errno = 0;
    long v = strtol (text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *value = v;
    return 0;
}

/*  Never runs (the signals are blocked and taken by sigwait); it only
    replaces an inherited SIG_IGN.  */
static void
s_on_signal (int sig)
{
    (void) sig;
}

int
sb_cmd_broker (int argc, char **argv)
{
    static const struct option options [] = {
        { "bind", required_argument, NULL, 'b' },
        { "name", required_argument, NULL, 'n' },
        { "heartbeat", required_argument, NULL, 'H' },
        { "queue-max", required_argument, NULL, 'q' },
        { "timeout", required_argument, NULL, 't' },
        { "cluster", required_argument, NULL, 'c' },
        { "beacon", required_argument, NULL, 'B' },
        { "insecure", no_argument, NULL, 'i' },
        { "beacon-port", required_argument, NULL, 'P' },
        { "keys", required_argument, NULL, 'k' },
        { "member", required_argument, NULL, 'm' },
        { "certs", required_argument, NULL, 'C' },
        { "revoked", required_argument, NULL, 'r' },
        { "max-timeout", required_argument, NULL, 'T' },
        { "peer-budget", required_argument, NULL, 'u' },
        { "peer-services", required_argument, NULL, 'S' },
        { "services-max", required_argument, NULL, 's' },
        { "instances-max", required_argument, NULL, 'I' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    sb_broker_config_t config = { 0 };
    const char *cluster = NULL, *beacon = "lo", *keys = NULL, *member = NULL;
    const char *certs = NULL, *revoked = NULL;
    int beacon_port = 0;
    bool insecure = false;
    long value;

    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'b':
                config.bind = optarg;
                break;
            case 'n':
                if (!sb_name_valid (optarg, SB_NAME_MEMBER)) {
                    fprintf (stderr, "sb broker: --name '%s' must be 1..64 of [A-Za-z0-9_.-]\n", optarg);
                    return SB_EXIT_USAGE;
                }
                config.name = optarg;
                break;
            case 'H':
                if (s_number (optarg, 10, 3600000, &value)) {
                    fprintf (stderr, "sb broker: --heartbeat '%s' must be 10..3600000 ms\n", optarg);
                    return SB_EXIT_USAGE;
                }
                config.heartbeat_ms = (int) value;
                break;
            case 'q':
                if (s_number (optarg, 1, 100000000, &value)) {
                    fprintf (stderr, "sb broker: --queue-max '%s' must be 1..100000000\n", optarg);
                    return SB_EXIT_USAGE;
                }
                config.queue_max = (size_t) value;
                break;
            case 't':
                if (s_number (optarg, 1, INT_MAX, &value)) {
                    fprintf (stderr, "sb broker: --timeout '%s' must be a positive number of ms\n", optarg);
                    return SB_EXIT_USAGE;
                }
                config.default_timeout_ms = (int) value;
                break;
            case 'T':
                if (s_number (optarg, 1, INT_MAX, &value)) {
                    fprintf (stderr, "sb broker: --max-timeout '%s' must be a positive number of ms\n",
                             optarg);
                    return SB_EXIT_USAGE;
                }
                config.max_timeout_ms = (int) value;
                break;
            case 'u':
                if (s_number (optarg, 65536, LONG_MAX, &value)) {
                    fprintf (stderr, "sb broker: --peer-budget '%s' must be at least 65536 bytes\n",
                             optarg);
                    return SB_EXIT_USAGE;
                }
                config.peer_budget = (size_t) value;
                break;
            case 'S':
            case 's':
            case 'I':
                if (s_number (optarg, 1, 100000000, &value)) {
                    fprintf (stderr, "sb broker: %s '%s' must be 1..100000000\n",
                             opt == 'S' ? "--peer-services" : opt == 's' ? "--services-max"
                                                                          : "--instances-max", optarg);
                    return SB_EXIT_USAGE;
                }
                if (opt == 'S')
                    config.peer_services_max = (size_t) value;
                else
                if (opt == 's')
                    config.services_max = (size_t) value;
                else
                    config.instances_max = (size_t) value;
                break;
            case 'c':
                if (!sb_name_valid (optarg, SB_NAME_MEMBER)) {
                    fprintf (stderr, "sb broker: --cluster '%s' must be 1..64 of [A-Za-z0-9_.-]\n", optarg);
                    return SB_EXIT_USAGE;
                }
                cluster = optarg;
                break;
            case 'B':
                if (!*optarg) {
                    fprintf (stderr, "sb broker: --beacon needs lo, an interface name, or off\n");
                    return SB_EXIT_USAGE;
                }
                beacon = optarg;
                break;
            case 'i':
                insecure = true;
                break;
            case 'P':
                if (s_number (optarg, 1, 65535, &value)) {
                    fprintf (stderr, "sb broker: --beacon-port '%s' must be 1..65535\n", optarg);
                    return SB_EXIT_USAGE;
                }
                beacon_port = (int) value;
                break;
            case 'k':
                keys = optarg;
                break;
            case 'm':
                member = optarg;
                break;
            case 'C':
                certs = optarg;
                break;
            case 'r':
                revoked = optarg;
                break;
            case 'h':
                s_help (stdout);
                return SB_EXIT_OK;
            default:
                fprintf (stderr, "sb broker: bad option '%s' or missing value (try --help)\n",
                         argv [optind - 1]);
                return SB_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "sb broker: unexpected argument '%s' (try --help)\n", argv [optind]);
        return SB_EXIT_USAGE;
    }
    config.cluster = cluster;
    config.beacon = beacon;
    config.beacon_port = beacon_port;
    if (insecure && (keys || member || certs || revoked))
        fprintf (stderr, "sb broker: --insecure given: --keys, --member, --certs and --revoked are ignored\n");
    if (!keys)
        keys = getenv (SB_IDENTITY_KEYS_ENV);
    if (insecure) {
        fprintf (stderr, "sb broker: WARNING: --insecure: traffic is neither encrypted nor "
                         "authenticated, and anyone may offer or call anything\n");
    }
    else {
        if (!keys || !*keys) {
            fprintf (stderr, "sb broker: no keys: run 'sb keygen' (docs/security.md) and pass "
                             "--keys DIR --member NAME (or set SB_KEYS, SB_MEMBER), or pass --insecure\n");
            return SB_EXIT_USAGE;
        }
        config.secure = true;
        config.keys_dir = keys;
        config.member = member;
        config.certs_dir = certs;
        config.revoked = revoked;
    }

    /*  Block the signals before any thread exists: every thread inherits
        the mask, and sigwait() below is the only taker.  A handler is set
        first because a shell starts background jobs with SIGINT ignored,
        and an ignored signal never reaches sigwait().  */
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    sigaction (SIGHUP, &action, NULL);
    sigaddset (&signals, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);

    sb_error_t err;
    sb_broker_t *broker = sb_broker_new (&config, &err);
    if (!broker) {
        fprintf (stderr, "sb broker: %s\n", err.text);
        return err.code == SB_E_BAD_REQUEST ? SB_EXIT_USAGE : SB_EXIT_FAILURE;
    }
    const uint8_t *key = sb_broker_public_key (broker);
    if (key) {
        char hex [2 * 32 + 1];
        sodium_bin2hex (hex, sizeof hex, key, 32);
        printf ("sb broker: %s listening on %s#%s\n", sb_broker_name (broker), sb_broker_endpoint (broker), hex);
    }
    else
        printf ("sb broker: %s listening on %s\n", sb_broker_name (broker), sb_broker_endpoint (broker));
    fflush (stdout);

    for (;;) {
        int sig = 0;
        if (sigwait (&signals, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        if (sb_broker_reload (broker, &err))
            fprintf (stderr, "sb broker: SIGHUP: reload failed, the previous certificates and "
                             "revocations stay in force: %s\n", err.text);
        else
            fprintf (stderr, "sb broker: SIGHUP: certificates and revocations reloaded\n");
    }
    sb_broker_destroy (&broker);
    return SB_EXIT_OK;
}
