/*  service_config.h — the configuration `sb run` hands to services.

    One tree (CZMQ zconfig, ZPL syntax) holds everything: a file given with
    `--config FILE`, then `--set service/key=value` overrides applied in
    order.  The top-level sections are service names:

        echo
            greeting = "hello"
            db
                path = /var/lib/echo

    Each service sees only its own section, through a view (the
    `sb_config_t` its init() receives): `sb_config_get (config, "db/path")`.

    Threads: build the tree and take the views first, then start the
    instances; after that the tree is only read, from any thread.
*/
#ifndef SB_SERVICE_CONFIG_H_INCLUDED
#define SB_SERVICE_CONFIG_H_INCLUDED

#include "switchboard.h"

/*  Files longer than this are refused (a config is not a database).  */
#define SB_CONFIG_FILE_MAX (1024 * 1024)

/*  An empty configuration.  NULL only when out of memory.  */
sb_config_t *sb_config_new (void);

/*  Destroys the tree and every view taken from it; NULLs *self_p.  */
void sb_config_destroy (sb_config_t **self_p);

/*  Loads a ZPL file, replacing what the tree held.  Returns 0, or -1 with
    err filled, one line: "FILE: line N: reason" for a syntax error,
    "FILE: reason" when it cannot be read.  */
int sb_config_load (sb_config_t *self, const char *path, sb_error_t *err);

/*  Applies one "service/key=value" assignment (key may be a path:
    "db/path").  Returns 0, or -1 with err filled when malformed.  */
int sb_config_set (sb_config_t *self, const char *assignment, sb_error_t *err);

/*  The section of one service, as its init() sees it: paths are relative
    to the section, an absent section reads as empty.  The view belongs to
    `self` and lives until it is destroyed.  NULL only when out of memory. */
const sb_config_t *sb_config_view (sb_config_t *self, const char *service);

#endif
