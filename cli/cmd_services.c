/*  cmd_services.c — `sb services`: what the broker knows (sys.services),
    as a table for people or as raw JSON (--json) for scripts.  */
#include "common.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb services [--connect ENDPOINT] [--timeout MS] [--json]\n"
        "\n"
        "Lists the services the broker routes to: version, instances, capacity,\n"
        "requests in flight and queued, methods (* = idempotent).  In a cluster,\n"
        "also the other brokers and the services they route (from their directories).\n"
        "\n"
        "options:\n"
        "  -c, --connect ENDPOINT  broker to ask (default $SB_CONNECT, else %s)\n"
        SB_CLI_CLUSTER_HELP
        "  -t, --timeout MS        wait at most MS for the answer (default 5000)\n"
        "  -j, --json              print the sys.services reply as JSON\n"
        "  -h, --help              this text\n"
        "\n"
        "exit status: 0 listed; 1 failed; 2 usage error; 3 no answer in time.\n"
        "\n"
        "examples:\n"
        "  sb services\n"
        "  sb services --json | python3 -m json.tool\n", SB_CONNECT_DEFAULT);
}

/*  The value of `key` in a map, or NULL.  */
static const msgpack_object *
s_field (const msgpack_object *map, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len && memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

/*  Prints a short string or number field into a column.  */
static void
s_print_cell (const msgpack_object *value, int width)
{
    if (value && value->type == MSGPACK_OBJECT_STR)
        printf ("%-*.*s ", width, value->via.str.size > 64 ? 64 : (int) value->via.str.size, value->via.str.ptr);
    else if (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        printf ("%-*llu ", width, (unsigned long long) value->via.u64);
    else
        printf ("%-*s ", width, "-");
}

/*  Methods are names, or [name, flags] pairs.  */
static void
s_print_methods (const msgpack_object *methods)
{
    for (uint32_t i = 0; methods && methods->type == MSGPACK_OBJECT_ARRAY && i < methods->via.array.size; i++) {
        const msgpack_object *m = &methods->via.array.ptr [i], *name = m;
        bool idempotent = false;
        if (m->type == MSGPACK_OBJECT_ARRAY && m->via.array.size >= 1) {
            name = &m->via.array.ptr [0];
            idempotent = m->via.array.size >= 2 && m->via.array.ptr [1].type == MSGPACK_OBJECT_POSITIVE_INTEGER
                      && (m->via.array.ptr [1].via.u64 & SB_METHOD_IDEMPOTENT);
        }
        if (name->type == MSGPACK_OBJECT_STR)
            printf ("%s%.*s%s", i ? " " : "", name->via.str.size > 64 ? 64 : (int) name->via.str.size,
                    name->via.str.ptr, idempotent ? "*" : "");
    }
}

static uint32_t
s_array_size (const msgpack_object *array)
{
    return array && array->type == MSGPACK_OBJECT_ARRAY ? array->via.array.size : 0;
}

/*  The service entries of `services` routed by `broker` (NULL: all).  */
static void
s_print_services (const msgpack_object *services, const msgpack_object *broker)
{
    printf ("%-20s %-10s %-9s %-8s %-9s %-6s %s\n",
            "SERVICE", "VERSION", "INSTANCES", "CAPACITY", "IN-FLIGHT", "QUEUED", "METHODS");
    for (uint32_t i = 0; i < s_array_size (services); i++) {
        const msgpack_object *service = &services->via.array.ptr [i];
        const msgpack_object *owner = s_field (service, "broker");
        if (broker && !(owner && owner->type == MSGPACK_OBJECT_STR && broker->type == MSGPACK_OBJECT_STR
                        && owner->via.str.size == broker->via.str.size
                        && memcmp (owner->via.str.ptr, broker->via.str.ptr, broker->via.str.size) == 0))
            continue;
        s_print_cell (s_field (service, "name"), 20);
        s_print_cell (s_field (service, "version"), 10);
        s_print_cell (s_field (service, "instances"), 9);
        s_print_cell (s_field (service, "capacity"), 8);
        s_print_cell (s_field (service, "in_flight"), 9);
        s_print_cell (s_field (service, "queued"), 6);
        s_print_methods (s_field (service, "methods"));
        printf ("\n");
    }
}

static void
s_print_table (const msgpack_object *reply)
{
    const msgpack_object *broker = s_field (reply, "broker");
    if (broker && broker->type == MSGPACK_OBJECT_STR)
        printf ("broker %.*s\n", broker->via.str.size > 64 ? 64 : (int) broker->via.str.size, broker->via.str.ptr);
    /*  The cluster's brokers, this one first (sys.services `brokers`).  */
    const msgpack_object *brokers = s_field (reply, "brokers");
    if (s_array_size (brokers) > 1) {
        printf ("cluster of %u brokers:\n", s_array_size (brokers));
        printf ("%-20s %s\n", "BROKER", "ENDPOINT");
        for (uint32_t i = 0; i < s_array_size (brokers); i++) {
            const msgpack_object *entry = &brokers->via.array.ptr [i];
            const msgpack_object *self = s_field (entry, "self");
            s_print_cell (s_field (entry, "name"), 20);
            s_print_cell (s_field (entry, "endpoint"), 0);
            printf ("%s\n", self && self->type == MSGPACK_OBJECT_BOOLEAN && self->via.boolean
                            ? "(answering)" : "");
        }
        printf ("\n");
    }
    const msgpack_object *services = s_field (reply, "services");
    if (s_array_size (services) == 0)
        printf ("no services\n");
    else
        s_print_services (services, NULL);
    /*  The other brokers' services, from their directories.  */
    const msgpack_object *remote = s_field (reply, "remote");
    for (uint32_t i = 1; i < s_array_size (brokers); i++) {
        const msgpack_object *name = s_field (&brokers->via.array.ptr [i], "name");
        if (!name || name->type != MSGPACK_OBJECT_STR || name->via.str.size == 0)
            continue;
        printf ("\nrouted by broker %.*s\n", name->via.str.size > 64 ? 64 : (int) name->via.str.size,
                name->via.str.ptr);
        s_print_services (remote, name);
    }
}

int
sb_cmd_services (int argc, char **argv)
{
    static const struct option options [] = {
        { "connect", required_argument, NULL, 'c' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, 'j' },
        SB_CLI_CLUSTER_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *connect = NULL;
    long timeout_ms = 5000;
    bool json = false;
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "c:t:jh", options, NULL)) != -1) {
        if (opt == 'c')
            connect = optarg;
        else if (opt == 't') {
            if (sb_cli_int ("services", "timeout", optarg, 1, 3600000, &timeout_ms) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'j')
            json = true;
        else if (opt >= SB_CLI_OPT_CLUSTER && opt <= SB_CLI_OPT_BEACON_PORT) {
            if (sb_cli_cluster_option ("services", opt, optarg) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb services: see 'sb services --help'\n");
            return SB_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf (stderr, "sb services: unexpected argument '%.64s'\n", argv [optind]);
        return SB_EXIT_USAGE;
    }
    sb_client_t *client = sb_cli_client ("services", sb_cli_endpoints (connect), (int) timeout_ms);
    if (!client)
        return SB_EXIT_FAILURE;
    int status = SB_EXIT_OK;
    sb_reply_t *reply = NULL;
    sb_error_t err = { 0 };
    if (sb_client_call (client, "sys", "services", "\xc0", 1, (int) timeout_ms, &reply, &err) == -1)
        status = sb_cli_fail ("services", &err);
    else if (json)
        status = sb_cli_print_json ("services", &reply->body) == 0 ? SB_EXIT_OK : SB_EXIT_FAILURE;
    else
        s_print_table (&reply->body);
    sb_reply_destroy (&reply);
    sb_client_destroy (&client);
    return status;
}
