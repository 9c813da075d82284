/*  sb.c — the `sb` command: finds the subcommand and runs it.

    Subcommands live in cli/cmd_<name>.c (or beside the component they
    drive) and are listed in the table below.
*/
#include "commands.h"
#include "switchboard.h"

#include <stdio.h>
#include <string.h>

/*  Declared here rather than in a header: each is used only by this table. */
#define SB_DECLARE(fn) int fn (int argc, char **argv)

SB_DECLARE (sb_cmd_broker);
SB_DECLARE (sb_cmd_keygen);
SB_DECLARE (sb_cmd_cert);
SB_DECLARE (sb_cmd_bench);
SB_DECLARE (sb_cmd_run);
SB_DECLARE (sb_cmd_call);
SB_DECLARE (sb_cmd_pub);
SB_DECLARE (sb_cmd_sub);
SB_DECLARE (sb_cmd_services);

const sb_command_t sb_commands [] = {
    { "broker", sb_cmd_broker, "run a broker: peers connect to it, it routes requests and events" },
    { "run", sb_cmd_run, "host service plugins (.so): N instances each, until SIGINT/SIGTERM" },
    { "call", sb_cmd_call, "call SERVICE.METHOD with a JSON body and print the JSON reply" },
    { "pub", sb_cmd_pub, "publish one event (topic and JSON body)" },
    { "sub", sb_cmd_sub, "print events whose topic matches a prefix, one JSON line each" },
    { "services", sb_cmd_services, "list the services a broker routes to, with their load" },
    { "keygen", sb_cmd_keygen, "create the cluster authority key or a member's keys" },
    { "cert", sb_cmd_cert, "sign a member certificate with the authority key, or show one" },
    { "bench", sb_cmd_bench, "measure request/reply throughput and latency, against a bare libzmq baseline" },
    { NULL, NULL, NULL }
};

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: sb COMMAND [OPTIONS] ...\n"
        "\n"
        "Switchboard %d.%d.%d: an encrypted message bus for microservices.\n"
        "\n"
        "commands:\n", SB_VERSION_MAJOR, SB_VERSION_MINOR, SB_VERSION_PATCH);
    for (const sb_command_t *c = sb_commands; c->name; c++)
        fprintf (out, "  %-10s %s\n", c->name, c->summary);
    fprintf (out, "\nRun 'sb COMMAND --help' for the options and examples of each.\n");
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        s_usage (stderr);
        return 2;
    }
    if (!strcmp (argv [1], "--help") || !strcmp (argv [1], "-h") || !strcmp (argv [1], "help")) {
        s_usage (stdout);
        return 0;
    }
    if (!strcmp (argv [1], "--version")) {
        printf ("sb %d.%d.%d\n", SB_VERSION_MAJOR, SB_VERSION_MINOR, SB_VERSION_PATCH);
        return 0;
    }
    for (const sb_command_t *c = sb_commands; c->name; c++)
        if (!strcmp (c->name, argv [1]))
            return c->run (argc - 1, argv + 1);
    fprintf (stderr, "sb: unknown command '%s' (try 'sb --help')\n", argv [1]);
    return 2;
}
