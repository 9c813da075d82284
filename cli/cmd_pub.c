/*  cmd_pub.c — `sb pub TOPIC 'JSON'`: publishes one event.

    Events are fire-and-forget on the wire, so to give scripts an honest
    exit status the command pings the broker first (the runtime publishes
    only on a live session) and again after the event on the same
    connection: the broker handles a peer's messages in order, so once the
    second ping is answered the event has been routed (or dropped and
    counted, when nobody subscribes).  */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb pub [--connect ENDPOINT] [--timeout MS] TOPIC ['JSON' | -]\n"
        "\n"
        "Publishes one event with the JSON body (default null) and waits until the\n"
        "broker has taken it.  Subscribers get it when their prefix matches TOPIC\n"
        "(words of [A-Za-z0-9_.-], at most 255 characters).\n"
        "\n"
        "options:\n"
        "  -c, --connect ENDPOINT  broker to use (default $SB_CONNECT, else %s)\n"
        SB_CLI_CLUSTER_HELP
        "  -t, --timeout MS        wait at most MS for the broker (default 5000)\n"
        "  -h, --help              this text\n"
        "\n"
        "exit status: 0 published; 1 failed; 2 usage error or invalid JSON;\n"
        "3 the broker did not answer in time.\n"
        "\n"
        "examples:\n"
        "  sb pub orders.created '{\"id\": 42}'\n"
        "  sb sub orders. --count 1 &  sb pub orders.paid '{\"id\": 42}'\n", SB_CONNECT_DEFAULT);
}

int
sb_cmd_pub (int argc, char **argv)
{
    static const struct option options [] = {
        { "connect", required_argument, NULL, 'c' },
        { "timeout", required_argument, NULL, 't' },
        SB_CLI_CLUSTER_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *connect = NULL;
    long timeout_ms = 5000;
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "c:t:h", options, NULL)) != -1) {
        if (opt == 'c')
            connect = optarg;
        else if (opt == 't') {
            if (sb_cli_int ("pub", "timeout", optarg, 1, 3600000, &timeout_ms) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt >= SB_CLI_OPT_CLUSTER && opt <= SB_CLI_OPT_BEACON_PORT) {
            if (sb_cli_cluster_option ("pub", opt, optarg) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb pub: see 'sb pub --help'\n");
            return SB_EXIT_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        fprintf (stderr, "sb pub: expected TOPIC ['JSON'] (see 'sb pub --help')\n");
        return SB_EXIT_USAGE;
    }
    const char *topic = argv [optind];
    if (!sb_name_valid (topic, SB_NAME_TOPIC)) {
        fprintf (stderr, "sb pub: '%.64s' is not a topic (1-255 of [A-Za-z0-9_.-])\n", topic);
        return SB_EXIT_USAGE;
    }
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    if (sb_cli_body ("pub", argc - optind == 2 ? argv [optind + 1] : NULL, &body) == -1) {
        msgpack_sbuffer_destroy (&body);
        return SB_EXIT_USAGE;
    }
    int status = SB_EXIT_FAILURE;
    sb_client_t *client = sb_cli_client ("pub", sb_cli_endpoints (connect), (int) timeout_ms);
    if (client) {
        /*  ping, publish, ping: the first ping waits for the session to
            the broker, the second for the event to have been routed.  */
        status = sb_cli_ping ("pub", client, (int) timeout_ms);
        if (status == SB_EXIT_OK && sb_client_publish (client, topic, body.data, body.size) == -1) {
            fprintf (stderr, "sb pub: cannot publish on '%s'\n", topic);
            status = SB_EXIT_FAILURE;
        }
        if (status == SB_EXIT_OK)
            status = sb_cli_ping ("pub", client, (int) timeout_ms);
        sb_client_destroy (&client);
    }
    msgpack_sbuffer_destroy (&body);
    return status;
}
