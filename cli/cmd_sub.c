/*  cmd_sub.c — `sb sub PREFIX`: prints events as they arrive, one JSON
    line each: {"topic": ..., "body": ...}.

    SUBSCRIBE has no acknowledgement on the wire, so the command pings the
    broker before subscribing (to have a live session) and after (on the
    same connection, so the broker has handled the SUBSCRIBE when the
    answer comes back); then "sb sub: subscribed to PREFIX" goes to stderr.
    Scripts wait for that line before publishing.  */
#include "common.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t s_stop;

static void
s_on_signal (int signo)
{
    s_stop = 1;
}

typedef struct {
    long received;
    bool failed;
} sub_t;

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb sub [--connect ENDPOINT] [--group NAME] [--count N] [--timeout MS] PREFIX\n"
        "\n"
        "Subscribes to every event whose topic starts with PREFIX and prints each as one\n"
        "line of JSON: {\"topic\": TOPIC, \"body\": BODY}.  Runs until SIGINT/SIGTERM, N\n"
        "events or MS milliseconds.  With --group, this subscriber is one member of a\n"
        "balanced group: each event goes to one member of the group only.\n"
        "\n"
        "options:\n"
        "  -c, --connect ENDPOINT  broker to use (default $SB_CONNECT, else %s)\n"
        SB_CLI_CLUSTER_HELP
        "  -g, --group NAME        join the balanced group NAME\n"
        "  -n, --count N           exit after N events\n"
        "  -t, --timeout MS        exit after MS milliseconds\n"
        "  -h, --help              this text\n"
        "\n"
        "exit status: 0 done (N events, interrupted, or MS passed without --count);\n"
        "1 failed; 2 usage error; 3 MS passed before N events arrived.\n"
        "\n"
        "examples:\n"
        "  sb sub orders.                         # every orders.* event\n"
        "  sb sub --group billing orders.paid     # share the work with other members\n"
        "  sb sub --count 1 --timeout 5000 jobs.done\n", SB_CONNECT_DEFAULT);
}

/*  Prints a string as a JSON string: topics are plain names, but they
    come from the network, so anything else is escaped.  */
static void
s_print_string (const char *text)
{
    putchar ('"');
    for (const unsigned char *c = (const unsigned char *) text; *c; c++) {
        if (*c == '"' || *c == '\\')
            printf ("\\%c", *c);
        else if (*c < 0x20)
            printf ("\\u%04x", *c);
        else
            putchar (*c);
    }
    putchar ('"');
}

static void
s_on_event (const char *topic, const msgpack_object *body, void *arg)
{
    sub_t *self = (sub_t *) arg;
    sb_error_t err = { 0 };
    char *json = sb_msgpack_to_json (body, &err);
    if (!json) {
        fprintf (stderr, "sb sub: event on '%s' cannot be shown as JSON: %s\n", topic, err.text);
        return;
    }
    printf ("{\"topic\":");
    s_print_string (topic);
    printf (",\"body\":%s}\n", json);
    if (fflush (stdout) == EOF)
        self->failed = true;        /* the reader went away */
    free (json);
    self->received++;
}

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
sb_cmd_sub (int argc, char **argv)
{
    static const struct option options [] = {
        { "connect", required_argument, NULL, 'c' },
        { "group", required_argument, NULL, 'g' },
        { "count", required_argument, NULL, 'n' },
        { "timeout", required_argument, NULL, 't' },
        SB_CLI_CLUSTER_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *connect = NULL, *group = NULL;
    long count = 0, timeout_ms = 0;
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "c:g:n:t:h", options, NULL)) != -1) {
        if (opt == 'c')
            connect = optarg;
        else if (opt == 'g') {
            group = optarg;
            if (!sb_name_valid (group, SB_NAME_GROUP)) {
                fprintf (stderr, "sb sub: --group: '%.64s' is not a name (1-64 of [A-Za-z0-9_.-])\n", group);
                return SB_EXIT_USAGE;
            }
        }
        else if (opt == 'n') {
            if (sb_cli_int ("sub", "count", optarg, 1, 1000000000, &count) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 't') {
            if (sb_cli_int ("sub", "timeout", optarg, 1, 2000000000, &timeout_ms) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt >= SB_CLI_OPT_CLUSTER && opt <= SB_CLI_OPT_BEACON_PORT) {
            if (sb_cli_cluster_option ("sub", opt, optarg) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb sub: see 'sb sub --help'\n");
            return SB_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf (stderr, "sb sub: expected one PREFIX (see 'sb sub --help')\n");
        return SB_EXIT_USAGE;
    }
    const char *prefix = argv [optind];
    if (!sb_name_valid (prefix, SB_NAME_TOPIC)) {
        fprintf (stderr, "sb sub: '%.64s' is not a topic prefix (1-255 of [A-Za-z0-9_.-])\n", prefix);
        return SB_EXIT_USAGE;
    }
    int64_t deadline = timeout_ms > 0 ? s_now_ms () + timeout_ms : 0;
    sb_client_t *client = sb_cli_client ("sub", sb_cli_endpoints (connect), 5000);
    if (!client)
        return SB_EXIT_FAILURE;
    struct sigaction action = { .sa_handler = s_on_signal };
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);

    sub_t sub = { 0 };
    int status = sb_cli_ping ("sub", client, 5000);
    if (status == SB_EXIT_OK && sb_client_subscribe (client, prefix, group, s_on_event, &sub) == -1) {
        fprintf (stderr, "sb sub: cannot subscribe to '%s'\n", prefix);
        status = SB_EXIT_FAILURE;
    }
    if (status == SB_EXIT_OK)
        status = sb_cli_ping ("sub", client, 5000);
    if (status == SB_EXIT_OK)
        fprintf (stderr, "sb sub: subscribed to %s%s%s\n", prefix, group ? " in group " : "", group ? group : "");
    while (status == SB_EXIT_OK && !s_stop && !sub.failed && (count == 0 || sub.received < count)) {
        int wait = 200;
        if (deadline) {
            int64_t left = deadline - s_now_ms ();
            if (left <= 0) {
                if (count > 0) {
                    fprintf (stderr, "sb sub: timeout: %ld of %ld events in %ld ms\n",
                             sub.received, count, timeout_ms);
                    status = SB_EXIT_TIMEOUT;
                }
                break;
            }
            wait = left < wait ? (int) left : wait;
        }
        sb_client_dispatch (client, wait);     /* -1: a signal; the loop checks s_stop */
    }
    sb_client_destroy (&client);
    return status == SB_EXIT_OK && sub.failed ? SB_EXIT_FAILURE : status;
}
