/*  common.c — helpers shared by the bus commands of `sb`; see common.h.  */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SB_CLI_STDIN_MAX (16 * 1024 * 1024)

const char *
sb_cli_endpoint (const char *option)
{
    if (option && *option)
        return option;
    const char *env = getenv ("SB_CONNECT");
    return env && *env ? env : SB_CONNECT_DEFAULT;
}

int
sb_cli_int (const char *cmd, const char *name, const char *text, long min, long max, long *value)
{
    char *end = NULL;
    errno = 0;
    long parsed = text ? strtol (text, &end, 10) : 0;
    if (!text || !*text || *end || errno || parsed < min || parsed > max) {
        fprintf (stderr, "sb %s: --%s: expected a number from %ld to %ld, not '%.32s'\n",
                 cmd, name, min, max, text ? text : "");
        return -1;
    }
    *value = parsed;
    return 0;
}

/*  Cluster options given on the command line (one command per process). */
static sb_cli_cluster_t s_cluster_options;
/*  Security options, and sb run's identity.  */
static sb_cli_security_t s_security_options;
static bool s_insecure;
static sb_identity_t *s_identity;

int
sb_cli_cluster_option (const char *cmd, int opt, const char *arg)
{
    if (opt == SB_CLI_OPT_CLUSTER) {
        if (!*arg || strlen (arg) > 255) {
            fprintf (stderr, "sb %s: --cluster: expected a name of 1 to 255 bytes\n", cmd);
            return -1;
        }
        s_cluster_options.cluster = arg;
        return 1;
    }
    if (opt == SB_CLI_OPT_BEACON) {
        if (!*arg) {
            fprintf (stderr, "sb %s: --beacon: expected lo, an interface name, 239.x.y.z "
                     "or off\n", cmd);
            return -1;
        }
        s_cluster_options.beacon = arg;
        return 1;
    }
    if (opt == SB_CLI_OPT_KEYS || opt == SB_CLI_OPT_MEMBER) {
        if (!*arg || strlen (arg) > 1024) {
            fprintf (stderr, "sb %s: --%s: expected 1 to 1024 bytes\n", cmd,
                     opt == SB_CLI_OPT_KEYS ? "keys" : "member");
            return -1;
        }
        if (opt == SB_CLI_OPT_KEYS)
            s_security_options.keys = arg;
        else
            s_security_options.member = arg;
        return 1;
    }
    if (opt == SB_CLI_OPT_INSECURE) {
        s_insecure = true;
        return 1;
    }
    if (opt == SB_CLI_OPT_BEACON_PORT) {
        long port;
        if (sb_cli_int (cmd, "beacon-port", arg, 1, 65535, &port) == -1)
            return -1;
        s_cluster_options.port = (int) port;
        return 1;
    }
    return 0;
}

sb_cli_cluster_t
sb_cli_cluster (void)
{
    sb_cli_cluster_t cluster = s_cluster_options;
    const char *env;
    if (!cluster.cluster && (env = getenv ("SB_CLUSTER")) && *env)
        cluster.cluster = env;
    if (!cluster.beacon && (env = getenv ("SB_BEACON")) && *env)
        cluster.beacon = env;
    if (!cluster.port && (env = getenv ("SB_BEACON_PORT")) && *env) {
        char *end = NULL;
        long port = strtol (env, &end, 10);
        if (*end == 0 && port >= 1 && port <= 65535)
            cluster.port = (int) port;
    }
    return cluster;
}

sb_cli_security_t
sb_cli_security (void)
{
    sb_cli_security_t security = { NULL, NULL };
    if (s_insecure)
        return security;
    security = s_security_options;
    const char *env;
    if (!security.keys && (env = getenv (SB_IDENTITY_KEYS_ENV)) && *env)
        security.keys = env;
    if (!security.member && (env = getenv (SB_IDENTITY_MEMBER_ENV)) && *env)
        security.member = env;
    return security;
}

int
sb_cli_identity (const char *cmd, const sb_identity_t **identity)
{
    sb_cli_security_t security = sb_cli_security ();
    if (!s_identity && (security.keys || security.member)) {
        sb_error_t err = { 0 };
        s_identity = sb_identity_load (security.keys, security.member, &err);
        if (!s_identity) {
            fprintf (stderr, "sb %s: %s\n", cmd, err.text);
            return -1;
        }
    }
    *identity = s_identity;
    return 0;
}

void
sb_cli_identity_free (void)
{
    sb_identity_destroy (&s_identity);
}

const char *
sb_cli_endpoints (const char *option)
{
    if (option && *option)
        return option;
    const char *env = getenv ("SB_CONNECT");
    if (env && *env)
        return env;
    return sb_cli_cluster ().beacon ? NULL : SB_CONNECT_DEFAULT;
}

sb_client_t *
sb_cli_client (const char *cmd, const char *endpoints, int timeout_ms)
{
    sb_cli_cluster_t cluster = sb_cli_cluster ();
    sb_cli_security_t security = sb_cli_security ();
    sb_client_options_t options = { .endpoints = endpoints, .timeout_ms = timeout_ms,
                                    .cluster = cluster.cluster, .beacon = cluster.beacon,
                                    .beacon_port = cluster.port,
                                    .keys = security.keys, .member = security.member };
    sb_error_t err = { 0 };
    sb_client_t *client = sb_client_new (&options, &err);
    if (!client) {
        if (endpoints)
            fprintf (stderr, "sb %s: cannot connect to %s: %s\n", cmd, endpoints, err.text);
        else
            fprintf (stderr, "sb %s: cannot join cluster '%s': %s\n", cmd,
                     cluster.cluster ? cluster.cluster : "default", err.text);
        return NULL;
    }
    if (cluster.beacon && !endpoints) {
        /*  Beacons only: wait for the first broker, within the command's
            own timeout (a loaded machine, or a broker killed just then,
            can take more than the usual few milliseconds).  The ping
            changes nothing, so a broker lost while it is in flight has it
            retried on another broker, not failed.  */
        int wait_ms = timeout_ms > 0 ? timeout_ms : SB_CLI_DISCOVERY_MS;
        sb_reply_t *reply = NULL;
        sb_client_idempotent (client, "sys", "ping");
        if (sb_client_call (client, "sys", "ping", "\xc0", 1, wait_ms, &reply, &err) == -1) {
            fprintf (stderr, "sb %s: no broker of cluster '%s' answered within %d ms "
                     "(beacon %s): %s\n", cmd, cluster.cluster ? cluster.cluster : "default",
                     wait_ms, cluster.beacon, err.text);
            sb_client_destroy (&client);
            return NULL;
        }
        sb_reply_destroy (&reply);
    }
    return client;
}

/*  Reads all of standard input, bounded.  */
static char *
s_read_stdin (size_t *size_p)
{
    size_t size = 0, room = 4096;
    char *text = malloc (room);
    while (text) {
        size_t got = fread (text + size, 1, room - size, stdin);
        size += got;
        if (got == 0 || size > SB_CLI_STDIN_MAX)
            break;
        if (size == room) {
            char *bigger = realloc (text, room * 2);
            if (!bigger)
                break;
            text = bigger;
            room *= 2;
        }
    }
    if (text && (ferror (stdin) || size > SB_CLI_STDIN_MAX || size == room)) {
        free (text);
        return NULL;
    }
    *size_p = size;
    return text;
}

int
sb_cli_body (const char *cmd, const char *json, msgpack_sbuffer *out)
{
    if (!json) {
        msgpack_packer pk;
        msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
        msgpack_pack_nil (&pk);
        return 0;
    }
    char *input = NULL;
    size_t size = strlen (json);
    if (strcmp (json, "-") == 0) {
        input = s_read_stdin (&size);
        if (!input) {
            fprintf (stderr, "sb %s: cannot read the body from standard input (at most 16 MiB)\n", cmd);
            return -1;
        }
        json = input;
    }
    sb_error_t err = { 0 };
    int rc = sb_json_to_msgpack (json, size, out, &err);
    if (rc == -1)
        fprintf (stderr, "sb %s: invalid JSON: %s\n", cmd, err.text);
    free (input);
    return rc;
}

int
sb_cli_fail (const char *cmd, const sb_error_t *err)
{
    fprintf (stderr, "sb %s: %s: %s\n", cmd, sb_code_name (err->code), err->text);
    return err->code == SB_E_TIMEOUT ? SB_EXIT_TIMEOUT : SB_EXIT_FAILURE;
}

int
sb_cli_print_json (const char *cmd, const msgpack_object *obj)
{
    sb_error_t err = { 0 };
    char *json = sb_msgpack_to_json (obj, &err);
    if (!json) {
        fprintf (stderr, "sb %s: the reply cannot be shown as JSON: %s\n", cmd, err.text);
        return -1;
    }
    printf ("%s\n", json);
    fflush (stdout);
    free (json);
    return 0;
}

int
sb_cli_ping (const char *cmd, sb_client_t *client, int timeout_ms)
{
    sb_reply_t *reply = NULL;
    sb_error_t err = { 0 };
    if (sb_client_call (client, "sys", "ping", "\xc0", 1, timeout_ms, &reply, &err) == -1)
        return sb_cli_fail (cmd, &err);
    sb_reply_destroy (&reply);
    return SB_EXIT_OK;
}
