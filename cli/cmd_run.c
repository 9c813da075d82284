/*  cmd_run.c — `sb run PLUGIN...`: the service host.

    Everything that can fail is done before anything serves: every plugin
    is loaded and validated, the configuration parsed, and every instance
    started (which runs its init()).  The first failure stops whatever was
    already started and exits 1 with one line naming the file and the
    reason; the host never runs half a deployment.

    SIGINT and SIGTERM are blocked before the first thread exists, so every
    thread inherits the mask and the main thread alone takes them with
    sigwait(); then the instances stop in reverse order (each says BYE to
    its brokers and runs fini()), and only then are the plugins unloaded.

    SIGTERM drains within a bound (--drain-timeout): a handler that never
    returns cannot keep the host alive past it; the host then says which
    instance is stuck and exits 1.  With --isolate, this process becomes
    the supervisor of one child host per service or instance
    (run_supervisor.c).

    Requests are validated against each plugin's own schema
    (sb_service_t.schema), or the file for its service in --schemas DIR,
    which overrides it (schema.h), before any handler runs; a plugin that
    disagrees with such a file (a method it lacks, another idempotent
    flag) is warned of, one that disagrees with its own schema does not
    load.
*/
#include "common.h"
#include "run.h"
#include "host/config.h"
#include "host/instance.h"
#include "host/plugin.h"
#include "schema/schema.h"

#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct {
    sb_plugin_t *plugins [SB_RUN_PLUGINS_MAX];
    int plugin_count;
    sb_instance_t *instances [SB_RUN_PLUGINS_MAX * SB_RUN_INSTANCES_MAX];
    int instance_count;
    sb_config_t *config;
    sb_schema_set_t *schemas;       /* NULL: no validation */
} run_t;

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb run [--connect ENDPOINT]... [--config FILE] [--set SERVICE/KEY=VALUE]...\n"
        "              [--instances N] [--capacity N] [--schemas DIR]\n"
        "              [--isolate[=service|instance]] [--memory-limit MB]\n"
        "              [--drain-timeout MS] PLUGIN...\n"
        "\n"
        "Hosts service plugins: loads each PLUGIN (a path, or a bare name such as 'echo'\n"
        "looked up in $SB_PLUGIN_DIR, a colon-separated list, else %s),\n"
        "starts N instances of each service (an actor each: its own thread and broker\n"
        "connections) and serves until SIGINT or SIGTERM.  Prints 'sb run: serving\n"
        "SERVICE xN' for each service once all are started.  If any plugin fails to\n"
        "load or any instance fails to start, nothing is left running.\n"
        "\n"
        "options:\n"
        "  -c, --connect ENDPOINT   broker(s) to serve through; repeat or separate with\n"
        "                           commas (default $SB_CONNECT, else %s)\n"
        SB_CLI_CLUSTER_HELP
        "  -f, --config FILE        ZPL configuration, one section per service name\n"
        "  -s, --set SVC/KEY=VALUE  set or override one configuration value\n"
        "  -n, --instances N        instances per service (default 1, at most %d)\n"
        "  -C, --capacity N         requests one instance holds at once (default %d)\n"
        "  -S, --schemas DIR        schema files (*.json) overriding the plugins' own\n"
        "                           (default $SB_SCHEMAS, else %s;\n"
        "                           that one may be missing)\n"
        "      --validate-replies   debug: also check every reply against its schema\n"
        "      --isolate[=WHAT]     run each service (WHAT=service, the default) or each\n"
        "                           instance (WHAT=instance) in a process of its own;\n"
        "                           a process that dies is restarted with backoff and\n"
        "                           the others are untouched\n"
        "      --memory-limit MB    with --isolate: address space of each process\n"
        "      --drain-timeout MS   on SIGINT/SIGTERM, time the instances get to finish\n"
        "                           what they hold before the host exits anyway\n"
        "                           (default %d)\n"
        "      --first-instance N   number of the first instance (default 0)\n"
        "  -h, --help               this text\n"
        "\n"
        "exit status: 0 stopped by a signal; 1 a plugin, the schemas or an instance\n"
        "could not load or start, or the instances did not stop within the drain\n"
        "timeout; 2 usage error.\n"
        "\n"
        "examples:\n"
        "  sb run echo\n"
        "  sb run --instances 3 ./build/services/.libs/echo.so\n"
        "  sb run --connect tcp://10.0.0.1:7600 --connect tcp://10.0.0.2:7600 echo\n"
        "  sb run --config services.cfg --set echo/sleep_max_ms=1000 echo ./my_service.so\n"
        "  sb run --isolate echo ./my_service.so\n",
        SB_PLUGIN_DIR, SB_CONNECT_DEFAULT, SB_RUN_INSTANCES_MAX, SB_INSTANCE_CAPACITY_DEFAULT,
        SB_SCHEMA_DIR, SB_RUN_DRAIN_DEFAULT_MS);
}

/*  Stops every instance (newest first), then unloads the plugins.  */
static void
s_shutdown (run_t *self)
{
    while (self->instance_count > 0)
        sb_instance_stop (&self->instances [--self->instance_count]);
    while (self->plugin_count > 0)
        sb_plugin_destroy (&self->plugins [--self->plugin_count]);
    sb_config_destroy (&self->config);
    sb_schema_set_destroy (&self->schemas);
}

/*  With keys, what the instances sealed, opened and refused (the
    refusals were logged as they happened): one line on stderr.  */
static void
s_seal_summary (run_t *self)
{
    sb_sealer_counters_t total = { 0 };
    for (int i = 0; i < self->instance_count; i++) {
        sb_sealer_counters_t one;
        sb_instance_seal_counters (self->instances [i], &one);
        total.sealed += one.sealed;
        total.opened += one.opened;
        for (int r = 0; r < SB_SEALER_REFUSED_MAX; r++)
            total.refused [r] += one.refused [r];
    }
    const sb_identity_t *identity = NULL;
    if (sb_cli_identity ("run", &identity) || !identity)
        return;
    char refused [512] = "";
    size_t used = 0;
    for (int r = 0; r < SB_SEALER_REFUSED_MAX && used < sizeof refused; r++)
        used += (size_t) snprintf (refused + used, sizeof refused - used, " %s=%" PRIu64,
                                   sb_sealer_reason_name ((sb_sealer_reason_t) r), total.refused [r]);
    fprintf (stderr, "sb run: sealing: %" PRIu64 " opened, %" PRIu64 " sealed, refused:%s\n",
             total.opened, total.sealed, refused);
}

/*  Appends an endpoint (or a comma-separated list) to `list`.  */
static int
s_add_endpoints (char *list, size_t size, const char *endpoints)
{
    size_t used = strlen (list);
    size_t len = strlen (endpoints);
    if (len == 0 || used + len + 2 > size)
        return -1;
    snprintf (list + used, size - used, "%s%s", used ? "," : "", endpoints);
    return 0;
}

/*  Loads every plugin named on the command line.  */
static int
s_load_plugins (run_t *self, int count, char **names)
{
    const char *search = getenv ("SB_PLUGIN_DIR");
    if (!search || !*search)
        search = SB_PLUGIN_DIR;
    for (int i = 0; i < count; i++) {
        sb_error_t err = { 0 };
        char *path = sb_plugin_resolve (names [i], search, &err);
        sb_plugin_t *plugin = path ? sb_plugin_load (path, &err) : NULL;
        free (path);
        if (!plugin) {
            fprintf (stderr, "sb run: %s\n", err.text);
            return -1;
        }
        const char *name = sb_plugin_service (plugin)->name;
        for (int j = 0; j < self->plugin_count; j++)
            if (strcmp (sb_plugin_service (self->plugins [j])->name, name) == 0) {
                fprintf (stderr, "sb run: %s: service '%s' is already loaded from %s\n",
                         sb_plugin_path (plugin), name, sb_plugin_path (self->plugins [j]));
                sb_plugin_destroy (&plugin);
                return -1;
            }
        self->plugins [self->plugin_count++] = plugin;
    }
    return 0;
}

/*  A --set for a service no plugin provides is almost certainly a typo.  */
static int
s_check_sets (run_t *self, int count, char **sets)
{
    for (int i = 0; i < count; i++) {
        size_t len = strcspn (sets [i], "/");
        bool known = false;
        for (int j = 0; j < self->plugin_count && !known; j++) {
            const char *name = sb_plugin_service (self->plugins [j])->name;
            known = strlen (name) == len && strncmp (name, sets [i], len) == 0;
        }
        if (!known) {
            fprintf (stderr, "sb run: --set '%.64s': no plugin provides service '%.*s'\n",
                     sets [i], (int) (len > 64 ? 64 : len), sets [i]);
            return -1;
        }
    }
    return 0;
}

/*  The schema set the instances validate with and announce: each
    plugin's own schema (sb_service_t.schema, checked against its flags
    when it loaded), unless the directory `dir` (--schemas, $SB_SCHEMAS;
    failing to load it is an error) or the installed one (which may be
    missing) has a file for that service, which then overrides it; a file
    that disagrees with its plugin is warned of.  A plugin with no schema
    anywhere is not validated.  */
static int
s_load_schemas (run_t *self, const char *dir)
{
    sb_error_t err = { 0 };
    if (!dir || !*dir) {
        dir = SB_SCHEMA_DIR;
        self->schemas = access (dir, F_OK) == 0 ? sb_schema_set_load_dir (dir, &err)
                                                : sb_schema_set_new ();
    }
    else
        self->schemas = sb_schema_set_load_dir (dir, &err);
    if (!self->schemas) {
        fprintf (stderr, "sb run: schemas: %s\n", err.text);
        return -1;
    }
    for (int i = 0; i < self->plugin_count; i++) {
        const sb_service_t *service = sb_plugin_service (self->plugins [i]);
        bool described = false;
        for (size_t k = 0; k < sb_schema_set_size (self->schemas) && !described; k++)
            described = strcmp (sb_method_schema_service (sb_schema_set_method (self->schemas, k)),
                                service->name) == 0;
        if (described) {
            if (sb_schema_set_check_service (self->schemas, service, &err))
                fprintf (stderr, "sb run: warning: %s disagrees with %s: %s\n",
                         sb_plugin_path (self->plugins [i]), dir, err.text);
        }
        else
        if (sb_plugin_schema (self->plugins [i])
        &&  sb_schema_set_load_buffer (self->schemas, sb_plugin_path (self->plugins [i]),
                                       service->schema, strlen (service->schema), &err)) {
            fprintf (stderr, "sb run: %s\n", err.text);
            return -1;
        }
    }
    return 0;
}

/*  Configuration and plugins: everything that can be checked before any
    thread starts.  Returns an exit status (0 to go on).  */
static int
s_prepare (run_t *self, const char *config_file, int set_count, char **sets,
           int plugin_count, char **plugins, const char *schema_dir)
{
    sb_error_t err = { 0 };
    if (config_file && sb_config_load (self->config, config_file, &err) == -1) {
        fprintf (stderr, "sb run: %s\n", err.text);
        return SB_EXIT_FAILURE;
    }
    if (s_load_plugins (self, plugin_count, plugins) == -1)
        return SB_EXIT_FAILURE;
    for (int i = 0; i < set_count; i++)
        if (sb_config_set (self->config, sets [i], &err) == -1) {
            fprintf (stderr, "sb run: %s\n", err.text);
            return SB_EXIT_USAGE;
        }
    if (s_check_sets (self, set_count, sets) == -1)
        return SB_EXIT_USAGE;
    if (s_load_schemas (self, schema_dir) == -1)
        return SB_EXIT_FAILURE;
    return SB_EXIT_OK;
}

static int
s_start_instances (run_t *self, const sb_run_options_t *o)
{
    const char *endpoints = o->endpoints;
    sb_cli_cluster_t cluster = sb_cli_cluster ();
    const sb_identity_t *identity = NULL;
    if (sb_cli_identity ("run", &identity) == -1)
        return -1;
    sb_instance_options_t options = { .schemas = self->schemas,
                                      .validate_replies = o->validate_replies,
                                      .cluster = cluster.cluster, .beacon = cluster.beacon,
                                      .beacon_port = cluster.port, .identity = identity };
    for (int i = 0; i < self->plugin_count; i++) {
        const sb_service_t *service = sb_plugin_service (self->plugins [i]);
        const sb_config_t *view = sb_config_view (self->config, service->name);
        if (!view) {
            fprintf (stderr, "sb run: out of memory\n");
            return -1;
        }
        for (int n = o->first_instance; n < o->first_instance + o->instances; n++) {
            sb_error_t err = { 0 };
            sb_instance_t *instance = sb_instance_start_with (service, n, view,
                                                              *endpoints ? endpoints : NULL,
                                                              o->capacity, &options, &err);
            if (!instance) {
                fprintf (stderr, "sb run: %s: instance %d of '%s' failed to start: %s\n",
                         sb_plugin_path (self->plugins [i]), n, service->name, err.text);
                return -1;
            }
            self->instances [self->instance_count++] = instance;
        }
    }
    return 0;
}

/*  Ends the host once the drain bound has passed: a handler that never
    returns keeps its instance from stopping, and nothing can stop a
    thread safely from outside.  */
static void *
s_drain_watchdog (void *arg)
{
    const sb_run_options_t *o = arg;
    struct timespec pause = { o->drain_ms / 1000, (o->drain_ms % 1000) * 1000000L };
    while (nanosleep (&pause, &pause) == -1)
        ;
    fprintf (stderr, "sb run: instances still busy %d ms after the signal (a handler that "
             "never returns?); exiting without waiting for them\n", o->drain_ms);
    fflush (stderr);
    _exit (SB_EXIT_FAILURE);
    return NULL;
}

/*  --isolate[=service|instance]  */
static int
s_isolate_option (const char *arg, sb_run_isolate_t *isolate)
{
    if (!arg || strcmp (arg, "service") == 0)
        *isolate = SB_RUN_ISOLATE_SERVICE;
    else if (strcmp (arg, "instance") == 0)
        *isolate = SB_RUN_ISOLATE_INSTANCE;
    else {
        fprintf (stderr, "sb run: --isolate=%.32s: expected 'service' or 'instance'\n", arg);
        return -1;
    }
    return 0;
}

int
sb_cmd_run (int argc, char **argv)
{
    static const struct option options [] = {
        { "connect", required_argument, NULL, 'c' },
        { "config", required_argument, NULL, 'f' },
        { "set", required_argument, NULL, 's' },
        { "instances", required_argument, NULL, 'n' },
        { "capacity", required_argument, NULL, 'C' },
        { "schemas", required_argument, NULL, 'S' },
        { "validate-replies", no_argument, NULL, 'R' },
        { "isolate", optional_argument, NULL, 'I' },
        { "memory-limit", required_argument, NULL, 'M' },
        { "drain-timeout", required_argument, NULL, 'D' },
        { "first-instance", required_argument, NULL, 'F' },
        SB_CLI_CLUSTER_OPTIONS,
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    /*  A shell starts background jobs with SIGINT ignored, and an ignored
        signal never reaches sigwait(): restore the default first (it never
        runs while the signals are blocked).  */
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);

    static sb_run_options_t o;
    memset (&o, 0, sizeof o);
    o.drain_ms = SB_RUN_DRAIN_DEFAULT_MS;
    o.schema_dir = getenv ("SB_SCHEMAS");
    long instances = 1, capacity = 0, number = 0;
    int opt;
    optind = 1;
    while ((opt = getopt_long (argc, argv, "c:f:s:n:C:S:h", options, NULL)) != -1) {
        if (opt == 'c') {
            if (s_add_endpoints (o.endpoints, sizeof o.endpoints, optarg) == -1) {
                fprintf (stderr, "sb run: --connect: empty, or too many endpoints\n");
                return SB_EXIT_USAGE;
            }
        }
        else if (opt == 'f')
            o.config_file = optarg;
        else if (opt == 's') {
            if (o.set_count == SB_RUN_SETS_MAX) {
                fprintf (stderr, "sb run: --set: at most %d\n", SB_RUN_SETS_MAX);
                return SB_EXIT_USAGE;
            }
            o.sets [o.set_count++] = optarg;
        }
        else if (opt == 'n') {
            if (sb_cli_int ("run", "instances", optarg, 1, SB_RUN_INSTANCES_MAX, &instances) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'C') {
            if (sb_cli_int ("run", "capacity", optarg, 1, 100000, &capacity) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'S') {
            if (!*optarg) {
                fprintf (stderr, "sb run: --schemas: empty directory name\n");
                return SB_EXIT_USAGE;
            }
            o.schema_dir = optarg;
        }
        else if (opt == 'R')
            o.validate_replies = true;
        else if (opt == 'I') {
            if (s_isolate_option (optarg, &o.isolate) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'M') {
            if (sb_cli_int ("run", "memory-limit", optarg, 16, 1 << 20, &o.memory_limit_mb) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'D') {
            if (sb_cli_int ("run", "drain-timeout", optarg, 0, 3600 * 1000, &number) == -1)
                return SB_EXIT_USAGE;
            o.drain_ms = (int) number;
        }
        else if (opt == 'F') {
            if (sb_cli_int ("run", "first-instance", optarg, 0, 1 << 20, &number) == -1)
                return SB_EXIT_USAGE;
            o.first_instance = (int) number;
        }
        else if (opt >= SB_CLI_OPT_CLUSTER && opt <= SB_CLI_OPT_BEACON_PORT) {
            if (sb_cli_cluster_option ("run", opt, optarg) == -1)
                return SB_EXIT_USAGE;
        }
        else if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb run: see 'sb run --help'\n");
            return SB_EXIT_USAGE;
        }
    }
    int plugin_count = argc - optind;
    if (plugin_count < 1 || plugin_count > SB_RUN_PLUGINS_MAX) {
        fprintf (stderr, "sb run: expected 1 to %d plugins (see 'sb run --help')\n", SB_RUN_PLUGINS_MAX);
        return SB_EXIT_USAGE;
    }
    if (o.memory_limit_mb && o.isolate == SB_RUN_ISOLATE_NONE) {
        fprintf (stderr, "sb run: --memory-limit applies to isolated processes: add --isolate\n");
        return SB_EXIT_USAGE;
    }
    o.instances = (int) instances;
    o.capacity = (int) capacity;
    /*  Still empty with beacons only: the brokers are all found by beacon. */
    if (!*o.endpoints && sb_cli_endpoints (NULL))
        snprintf (o.endpoints, sizeof o.endpoints, "%s", sb_cli_endpoints (NULL));

    run_t *self = calloc (1, sizeof *self);
    if (!self || !(self->config = sb_config_new ())) {
        fprintf (stderr, "sb run: out of memory\n");
        free (self);
        return SB_EXIT_FAILURE;
    }
    int status = s_prepare (self, o.config_file, o.set_count, o.sets, plugin_count,
                            argv + optind, o.schema_dir);
    if (status == SB_EXIT_OK && o.isolate != SB_RUN_ISOLATE_NONE) {
        /*  Everything checked here; each child loads its own plugin.  */
        s_shutdown (self);
        sb_cli_identity_free ();
        free (self);
        return sb__run_supervise (&o, plugin_count, argv + optind, &signals);
    }
    if (status == SB_EXIT_OK && s_start_instances (self, &o) == -1)
        status = SB_EXIT_FAILURE;
    if (status == SB_EXIT_OK) {
        for (int p = 0; p < self->plugin_count; p++)
            printf ("sb run: serving %s x%ld\n", sb_plugin_service (self->plugins [p])->name, instances);
        const sb_identity_t *identity = NULL;
        if (sb_cli_identity ("run", &identity) == 0 && identity) {
            char events [1024];
            snprintf (events, sizeof events, "%s/%s", sb_identity_dir (identity), SB_SEALER_EVENTS_FILE);
            printf ("sb run: bodies sealed end to end as member %s; events %s\n",
                    sb_identity_name (identity),
                    access (events, F_OK) == 0 ? "sealed for the cluster event key"
                                               : "in plaintext (no events.key)");
        }
        fflush (stdout);
        int signo = 0;
        sigwait (&signals, &signo);
        fprintf (stderr, "sb run: %s, stopping\n", signo == SIGINT ? "SIGINT" : "SIGTERM");
        pthread_t watchdog;
        if (pthread_create (&watchdog, NULL, s_drain_watchdog, &o) == 0)
            pthread_detach (watchdog);
        s_seal_summary (self);
    }
    s_shutdown (self);
    sb_cli_identity_free ();
    free (self);
    return status;
}
