/*  commands.h — the subcommands of `sb`, one function each.

    Each takes the arguments after the subcommand name (argv[0] is the
    subcommand) and returns the process exit status: 0 success, 1 a
    runtime failure (one line on stderr says why), 2 a usage error.
*/
#ifndef SB_COMMANDS_H_INCLUDED
#define SB_COMMANDS_H_INCLUDED

#define SB_EXIT_OK 0
#define SB_EXIT_FAILURE 1
#define SB_EXIT_USAGE 2

typedef int (sb_command_fn) (int argc, char **argv);

typedef struct {
    const char *name;
    sb_command_fn *run;
    const char *summary;
} sb_command_t;

/*  The table, in cli/sb.c.  */
extern const sb_command_t sb_commands [];

#endif
