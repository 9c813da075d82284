/*  run.h — what `sb run` (cmd_run.c) shares with its supervisor
    (run_supervisor.c): the options it parsed, and the supervisor's entry.
*/
#ifndef SB_CLI_RUN_H_INCLUDED
#define SB_CLI_RUN_H_INCLUDED

#include <signal.h>
#include <stdbool.h>

#define SB_RUN_SETS_MAX 256
#define SB_RUN_PLUGINS_MAX 64
#define SB_RUN_INSTANCES_MAX 64
/*  How long SIGTERM waits for the instances to finish by default.  */
#define SB_RUN_DRAIN_DEFAULT_MS 5000

typedef enum {
    SB_RUN_ISOLATE_NONE,
    SB_RUN_ISOLATE_SERVICE,     /* one process per service */
    SB_RUN_ISOLATE_INSTANCE     /* one process per instance */
} sb_run_isolate_t;

typedef struct {
    char endpoints [4096];      /* comma-separated; "" for beacons only */
    const char *config_file;
    char *sets [SB_RUN_SETS_MAX];
    int set_count;
    int instances;
    int first_instance;         /* number of the first instance (0) */
    int capacity;               /* 0: the default */
    const char *schema_dir;
    bool validate_replies;
    sb_run_isolate_t isolate;
    long memory_limit_mb;       /* 0: none (isolated processes only) */
    int drain_ms;
} sb_run_options_t;

/*  Runs each service (or instance) of `plugins` in a child process of its
    own and restarts those that die, until SIGINT or SIGTERM (in `signals`,
    already blocked); then stops them all within the drain bound.
    Returns the exit status.  */
int sb__run_supervise (const sb_run_options_t *options, int plugin_count, char **plugins,
                       const sigset_t *signals);

#endif
