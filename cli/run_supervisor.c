/*  run_supervisor.c — `sb run --isolate`: each service (or each instance)
    in a child process of its own, watched over by the `sb run` that
    started it.

    A handler that crashes (SIGSEGV, abort) or runs out of memory takes
    down only its own child: the other services go on serving, and the
    supervisor restarts the dead child after a pause that doubles with
    each quick death (S_BACKOFF_FIRST_MS up to S_BACKOFF_MAX_MS; a child
    that lived S_STABLE_MS counts as healthy again).  Each death is said on
    stderr in one line with the child's pid and signal or exit status.
    Brokers notice the dropped connection and answer the dead child's
    in-flight requests themselves (docs/operations.md, "Isolated hosts").

    A child is this same `sb` program run again as a plain host, `sb run
    ... PLUGIN`, with the parent's options rebuilt explicitly (never the
    supervisor's own: --isolate, --memory-limit), so it behaves exactly as
    a host started by hand.  --memory-limit caps its address space
    (RLIMIT_AS) before exec.

    SIGTERM or SIGINT: every child gets SIGTERM and drains as a plain host
    does (--drain-timeout); a child still alive after that bound and a
    second of grace is killed with SIGKILL, so the supervisor always ends.
*/
#define _GNU_SOURCE         /* sigabbrev_np */
#include "common.h"
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_BACKOFF_FIRST_MS 200
#define S_BACKOFF_MAX_MS 10000
#define S_STABLE_MS 10000
#define S_ARGS_MAX (2 * SB_RUN_SETS_MAX + 40)

typedef struct {
    const char *plugin;         /* path or bare name, as given */
    int first_instance;         /* instance numbers it runs: first.. */
    int instances;              /* ..first + instances - 1 */
    pid_t pid;                  /* 0: not running */
    int64_t started;            /* when it was (re)started */
    int64_t restart_at;         /* when to start it again (pid 0) */
    int backoff_ms;
    unsigned restarts;
} child_t;

static int64_t
s_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  The child's argument vector, rebuilt from what the parent parsed.
    Strings are borrowed from `options` and `child`; numbers are written
    into `numbers`.  */
static void
s_child_argv (const sb_run_options_t *options, const child_t *child, const char **argv,
              char numbers [5][32])
{
    int n = 0;
    static char exe [4096];
    ssize_t len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    exe [len > 0 ? len : 0] = 0;
    argv [n++] = len > 0 ? exe : "sb";
    argv [n++] = "run";
    if (*options->endpoints) {
        argv [n++] = "--connect";
        argv [n++] = options->endpoints;
    }
    sb_cli_cluster_t cluster = sb_cli_cluster ();
    if (cluster.cluster) {
        argv [n++] = "--cluster";
        argv [n++] = cluster.cluster;
    }
    if (cluster.beacon) {
        argv [n++] = "--beacon";
        argv [n++] = cluster.beacon;
    }
    if (cluster.port) {
        snprintf (numbers [0], sizeof numbers [0], "%d", cluster.port);
        argv [n++] = "--beacon-port";
        argv [n++] = numbers [0];
    }
    sb_cli_security_t security = sb_cli_security ();
    if (!security.keys && !security.member)
        argv [n++] = "--insecure";
    if (security.keys) {
        argv [n++] = "--keys";
        argv [n++] = security.keys;
    }
    if (security.member) {
        argv [n++] = "--member";
        argv [n++] = security.member;
    }
    if (options->config_file) {
        argv [n++] = "--config";
        argv [n++] = options->config_file;
    }
    for (int i = 0; i < options->set_count; i++) {
        argv [n++] = "--set";
        argv [n++] = options->sets [i];
    }
    snprintf (numbers [1], sizeof numbers [1], "%d", child->instances);
    argv [n++] = "--instances";
    argv [n++] = numbers [1];
    snprintf (numbers [2], sizeof numbers [2], "%d", child->first_instance);
    argv [n++] = "--first-instance";
    argv [n++] = numbers [2];
    if (options->capacity > 0) {
        snprintf (numbers [3], sizeof numbers [3], "%d", options->capacity);
        argv [n++] = "--capacity";
        argv [n++] = numbers [3];
    }
    if (options->schema_dir) {
        argv [n++] = "--schemas";
        argv [n++] = options->schema_dir;
    }
    if (options->validate_replies)
        argv [n++] = "--validate-replies";
    snprintf (numbers [4], sizeof numbers [4], "%d", options->drain_ms);
    argv [n++] = "--drain-timeout";
    argv [n++] = numbers [4];
    argv [n++] = child->plugin;
    argv [n] = NULL;
}

/*  Starts one child; 0, or -1 (said on stderr) if fork failed.  */
static int
s_spawn (const sb_run_options_t *options, child_t *child, const sigset_t *blocked)
{
    const char *argv [S_ARGS_MAX];
    char numbers [5][32];
    s_child_argv (options, child, argv, numbers);
    fflush (NULL);
    pid_t pid = fork ();
    if (pid == -1) {
        fprintf (stderr, "sb run: cannot start a process for %s: %s\n", child->plugin,
                 strerror (errno));
        return -1;
    }
    if (pid == 0) {
        if (options->memory_limit_mb > 0) {
            rlim_t bytes = (rlim_t) options->memory_limit_mb * 1024 * 1024;
            struct rlimit limit = { bytes, bytes };
            if (setrlimit (RLIMIT_AS, &limit) == -1)
                fprintf (stderr, "sb run: %s: cannot set the memory limit: %s\n",
                         child->plugin, strerror (errno));
        }
        sigprocmask (SIG_UNBLOCK, blocked, NULL);
        execv (argv [0], (char **) argv);
        fprintf (stderr, "sb run: cannot run %s: %s\n", argv [0], strerror (errno));
        _exit (127);
    }
    child->pid = pid;
    child->started = s_now_ms ();
    return 0;
}

/*  One line saying how a child ended.  */
static void
s_describe_end (char *out, size_t size, int status)
{
    if (WIFSIGNALED (status)) {
        int signo = WTERMSIG (status);
        const char *abbrev = sigabbrev_np (signo);
        snprintf (out, size, "killed by signal %d (SIG%s)", signo, abbrev ? abbrev : "?");
    }
    else
        snprintf (out, size, "exited with status %d", WEXITSTATUS (status));
}

/*  Collects dead children; schedules their restart unless stopping.  */
static void
s_reap (child_t *children, int count, bool stopping)
{
    int status;
    pid_t pid;
    while ((pid = waitpid (-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < count; i++) {
            child_t *child = &children [i];
            if (child->pid != pid)
                continue;
            child->pid = 0;
            char how [64];
            s_describe_end (how, sizeof how, status);
            if (stopping) {
                fprintf (stderr, "sb run: %s (pid %d) %s\n", child->plugin, (int) pid, how);
                break;
            }
            int64_t now = s_now_ms ();
            if (now - child->started >= S_STABLE_MS)
                child->backoff_ms = S_BACKOFF_FIRST_MS;
            child->restart_at = now + child->backoff_ms;
            child->restarts++;
            fprintf (stderr, "sb run: %s (pid %d, instances %d-%d) %s; restarting in %d ms "
                     "(restart %u)\n", child->plugin, (int) pid, child->first_instance,
                     child->first_instance + child->instances - 1, how, child->backoff_ms,
                     child->restarts);
            child->backoff_ms = child->backoff_ms * 2 > S_BACKOFF_MAX_MS
                              ? S_BACKOFF_MAX_MS : child->backoff_ms * 2;
            break;
        }
    }
}

static int
s_running (const child_t *children, int count)
{
    int running = 0;
    for (int i = 0; i < count; i++)
        running += children [i].pid != 0;
    return running;
}

/*  Sends SIGTERM to every child, waits for them up to the drain bound
    and a second of grace, then SIGKILLs what is left.  */
static void
s_stop_all (child_t *children, int count, int drain_ms)
{
    for (int i = 0; i < count; i++)
        if (children [i].pid)
            kill (children [i].pid, SIGTERM);
    int64_t give_up = s_now_ms () + drain_ms + 1000;
    while (s_running (children, count) && s_now_ms () < give_up) {
        s_reap (children, count, true);
        usleep (10 * 1000);
    }
    for (int i = 0; i < count; i++)
        if (children [i].pid) {
            fprintf (stderr, "sb run: %s (pid %d) did not stop within %d ms; killing it\n",
                     children [i].plugin, (int) children [i].pid, drain_ms + 1000);
            kill (children [i].pid, SIGKILL);
        }
    while (s_running (children, count)) {
        if (waitpid (-1, NULL, 0) == -1 && errno == ECHILD)
            break;
        s_reap (children, count, true);
    }
}

int
sb__run_supervise (const sb_run_options_t *options, int plugin_count, char **plugins,
                   const sigset_t *signals)
{
    int count = options->isolate == SB_RUN_ISOLATE_INSTANCE
              ? plugin_count * options->instances : plugin_count;
    child_t *children = calloc ((size_t) count, sizeof *children);
    if (!children) {
        fprintf (stderr, "sb run: out of memory\n");
        return SB_EXIT_FAILURE;
    }
    for (int p = 0, c = 0; p < plugin_count; p++) {
        int per_child = options->isolate == SB_RUN_ISOLATE_INSTANCE ? 1 : options->instances;
        for (int first = 0; first < options->instances; first += per_child, c++) {
            children [c].plugin = plugins [p];
            children [c].first_instance = options->first_instance + first;
            children [c].instances = per_child;
            children [c].backoff_ms = S_BACKOFF_FIRST_MS;
        }
    }
    /*  SIGCHLD joins the blocked signals so that sigtimedwait sees it.  */
    sigset_t wait_set = *signals;
    sigaddset (&wait_set, SIGCHLD);
    sigprocmask (SIG_BLOCK, &wait_set, NULL);
    int status = SB_EXIT_OK;
    for (int i = 0; i < count; i++)
        if (s_spawn (options, &children [i], &wait_set) == -1) {
            status = SB_EXIT_FAILURE;
            break;
        }
    if (status == SB_EXIT_OK) {
        printf ("sb run: supervising %d process%s (%s isolation)\n", count,
                count == 1 ? "" : "es",
                options->isolate == SB_RUN_ISOLATE_INSTANCE ? "instance" : "service");
        fflush (stdout);
    }
    while (status == SB_EXIT_OK) {
        int64_t now = s_now_ms (), wake = now + 1000;
        for (int i = 0; i < count; i++) {
            child_t *child = &children [i];
            if (child->pid == 0 && child->restart_at <= now)
                s_spawn (options, child, &wait_set);
            if (child->pid == 0 && child->restart_at < wake)
                wake = child->restart_at;
        }
        int64_t wait_ms = wake > now ? wake - now : 0;
        struct timespec timeout = { wait_ms / 1000, (wait_ms % 1000) * 1000000 };
        int signo = sigtimedwait (&wait_set, NULL, &timeout);
        if (signo == SIGINT || signo == SIGTERM) {
            fprintf (stderr, "sb run: %s, stopping %d process%s\n",
                     signo == SIGINT ? "SIGINT" : "SIGTERM", s_running (children, count),
                     s_running (children, count) == 1 ? "" : "es");
            break;
        }
        s_reap (children, count, false);
    }
    s_stop_all (children, count, options->drain_ms);
    free (children);
    return status;
}
