/*  common.h — what the bus commands of `sb` (call, pub, sub, services,
    run) share: the broker endpoint, number parsing, a client, a JSON body,
    and the exit status for a failed call.

    Exit statuses (also in each command's --help): 0 success, 1 the call
    failed (the service or broker answered an error, or nothing could be
    reached), 2 usage error (bad option, invalid JSON), 3 timeout (no
    answer within the deadline).
*/
#ifndef SB_CLI_COMMON_H_INCLUDED
#define SB_CLI_COMMON_H_INCLUDED

#include "commands.h"
#include "switchboard.h"

#define SB_EXIT_TIMEOUT 3

/*  The broker when neither --connect nor SB_CONNECT says otherwise.  */
#define SB_CONNECT_DEFAULT "tcp://127.0.0.1:7600"

/*  `option` if given, else $SB_CONNECT if set, else the default.  */
const char *sb_cli_endpoint (const char *option);

/*  Parses a decimal integer in [min, max]; 0, or -1 after printing
    "sb CMD: --NAME: ..." on stderr.  */
int sb_cli_int (const char *cmd, const char *name, const char *text, long min, long max, long *value);

/*  True for [A-Za-z0-9_-]{1,64} (service and method names).  */
bool sb_cli_valid_name (const char *name, size_t len);

/*  Connects a client; NULL after printing "sb CMD: ..." on stderr.  */
sb_client_t *sb_cli_client (const char *cmd, const char *endpoints, int timeout_ms);

/*  Converts a JSON argument into MessagePack: NULL means nil, "-" reads
    standard input (at most 16 MiB).  0, or -1 after printing
    "sb CMD: invalid JSON: ..." on stderr.  */
int sb_cli_body (const char *cmd, const char *json, msgpack_sbuffer *out);

/*  Prints "sb CMD: CODE: TEXT" on stderr; returns the exit status that
    goes with the code (3 for timeout, else 1).  */
int sb_cli_fail (const char *cmd, const sb_error_t *err);

/*  Round trip to the broker (sys.ping) on the client's connection.
    Returns 0, or the exit status after printing why.  */
int sb_cli_ping (const char *cmd, sb_client_t *client, int timeout_ms);

/*  Prints a decoded MessagePack object as one line of JSON on stdout.
    0, or -1 after printing why on stderr.  */
int sb_cli_print_json (const char *cmd, const msgpack_object *obj);

#endif
