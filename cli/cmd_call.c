/*  cmd_call.c — `sb call SERVICE.METHOD ['JSON']`: one request, the reply
    printed as JSON.  Meant for people and for scripts, so the exit status
    says what happened and errors are one line on stderr.  */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb call [--connect ENDPOINT] [--timeout MS] [--count N [--interval MS]]\n"
        "               [--trace ID] SERVICE.METHOD ['JSON' | -]\n"
        "\n"
        "Calls a method through the broker and prints the reply as one line of JSON.\n"
        "The request body is the JSON argument ('-' reads it from standard input;\n"
        "none sends null).  With --count the same call is made N times, one after\n"
        "the other through the same links, one reply per line; it stops at the\n"
        "first failure.\n"
        "\n"
        "options:\n"
        "  -c, --connect ENDPOINT  broker to use (default $SB_CONNECT, else %s)\n"
        SB_CLI_CLUSTER_HELP
        "  -t, --timeout MS        give up after MS milliseconds (default 5000)\n"
        "  -i, --idempotent        the method is safe to run twice: if the broker\n"
        "                          carrying the call is lost, send it through another\n"
        "                          one of the cluster (within the same deadline); an\n"
        "                          override, for a method its service does not declare\n"
        "                          idempotent (sys.describe: declared ones are anyway)\n"
        "  -n, --count N           make the call N times (default 1)\n"
        "      --interval MS       wait MS milliseconds between calls (default 0)\n"
        "  -T, --trace ID          carry this trace id (32 hex digits, the W3C trace-id,\n"
        "                          e.g. from an X-Request-Id in a bridge log) instead of\n"
        "                          a random one, to follow the call through the services\n"
        "  -h, --help              this text\n"
        "\n"
        "exit status: 0 reply printed; 1 the call failed (one line 'sb call: CODE: TEXT'\n"
        "on stderr, CODE being bad_request, not_found, internal, unavailable, ...);\n"
        "2 usage error or invalid JSON; 3 timeout (no answer within the deadline).\n"
        "\n"
        "examples:\n"
        "  sb call echo.reverse '{\"text\": \"hello\"}'\n"
        "  sb call echo.stats '{\"values\": [1, 2, 3.5]}'\n"
        "  echo '[1, 2]' | sb call echo.echo -\n"
        "  sb call --timeout 500 echo.sleep '{\"ms\": 2000}'     # exits 3\n"
        "  sb call --trace 4bf92f3577b34da6a3ce929d0e0e4736 echo.trace\n"
        "  sb call sys.stats\n"
        "  sb call --count 100 --interval 50 echo.echo '\"ping\"'   # 5 s of calls\n",
        SB_CONNECT_DEFAULT);
}

int
sb_cmd_call (int argc, char **argv)
{
    static const struct option options [] = {
        { "connect", required_argument, NULL, 'c' },
        { "timeout", required_argument, NULL, 't' },
        { "idempotent", no_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'n' },
        { "interval", required_argument, NULL, 'I' },
        { "trace", required_argument, NULL, 'T' },
        SB_CLI_CLUSTER_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *connect = NULL;
    long timeout_ms = 5000;
    bool idempotent = false;
    long count = 1, interval_ms = 0;
    const char *trace = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "c:t:in:T:h", options, NULL)) != -1) {
        if (opt == 'c')
            connect = optarg;
        else if (opt == 't') {
            if (sb_cli_int ("call", "timeout", optarg, 1, 3600000, &timeout_ms) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt >= SB_CLI_OPT_CLUSTER && opt <= SB_CLI_OPT_BEACON_PORT) {
            if (sb_cli_cluster_option ("call", opt, optarg) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'i')
            idempotent = true;
        else if (opt == 'n') {
            if (sb_cli_int ("call", "count", optarg, 1, 10000000, &count) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'I') {
            if (sb_cli_int ("call", "interval", optarg, 0, 3600000, &interval_ms) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'T') {
            uint8_t bytes [SB_TRACE_SIZE];
            if (sb_trace_parse (optarg, bytes) == -1) {
                fprintf (stderr, "sb call: --trace '%.40s' must be 32 hex digits, not all zero\n",
                         optarg);
                return SB_EXIT_USAGE;
            }
            trace = optarg;
        }
        else if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb call: see 'sb call --help'\n");
            return SB_EXIT_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        fprintf (stderr, "sb call: expected SERVICE.METHOD ['JSON'] (see 'sb call --help')\n");
        return SB_EXIT_USAGE;
    }
    const char *target = argv [optind];
    const char *dot = strchr (target, '.');
    char service [SB_NAME_MAX + 1] = "";
    if (dot && (size_t) (dot - target) <= SB_NAME_MAX)
        snprintf (service, sizeof service, "%.*s", (int) (dot - target), target);
    if (!sb_name_valid (service, SB_NAME_SERVICE) || !sb_name_valid (dot + 1, SB_NAME_METHOD)) {
        fprintf (stderr, "sb call: '%.140s' is not SERVICE.METHOD (names of [A-Za-z0-9_.-], "
                 "at most 64 each; the first dot ends the service)\n", target);
        return SB_EXIT_USAGE;
    }

    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    if (sb_cli_body ("call", argc - optind == 2 ? argv [optind + 1] : NULL, &body) == -1) {
        msgpack_sbuffer_destroy (&body);
        return SB_EXIT_USAGE;
    }
    int status = SB_EXIT_FAILURE;
    /*  Finding a broker by beacon comes out of the first call's time: a
        call never takes longer than --timeout in all.  */
    struct timespec started;
    clock_gettime (CLOCK_MONOTONIC, &started);
    sb_client_t *client = sb_cli_client ("call", sb_cli_endpoints (connect), (int) timeout_ms);
    if (client) {
        sb_reply_t *reply = NULL;
        sb_error_t err = { 0 };
        if (idempotent)
            sb_client_idempotent (client, service, dot + 1);
        status = SB_EXIT_OK;
        for (long i = 0; i < count && status == SB_EXIT_OK; i++) {
            if (i > 0 && interval_ms > 0)
                usleep ((useconds_t) interval_ms * 1000);
            long budget = timeout_ms;
            if (i == 0) {
                struct timespec now;
                clock_gettime (CLOCK_MONOTONIC, &now);
                budget -= (now.tv_sec - started.tv_sec) * 1000
                        + (now.tv_nsec - started.tv_nsec) / 1000000;
                if (budget < 1)
                    budget = 1;
            }
            sb_call_options_t options = { .timeout_ms = (int) budget, .trace = trace,
                                          .body = body.data, .body_size = body.size };
            if (sb_call (client, service, dot + 1, &options, &reply, &err, NULL) == 0) {
                status = sb_cli_print_json ("call", &reply->body) == 0
                       ? SB_EXIT_OK : SB_EXIT_FAILURE;
                sb_reply_destroy (&reply);
                fflush (stdout);
            }
            else
                status = sb_cli_fail ("call", &err);
        }
        sb_client_destroy (&client);
    }
    msgpack_sbuffer_destroy (&body);
    return status;
}
