/*  plugin.h — loading a service plugin: a shared object exporting one
    `sb_service_t` descriptor named `sb_service` (see switchboard.h).

    The host (`sb run`) loads every plugin before it starts anything, so a
    bad plugin stops the host with a one-line reason instead of leaving it
    half-started.  Everything in a descriptor comes from outside the
    process and is validated completely before the host trusts it: ABI
    version, names, a bounded and terminated method table, handlers.

    Error texts have the form "PATH: reason" and fit on one line.
*/
#ifndef SB_PLUGIN_H_INCLUDED
#define SB_PLUGIN_H_INCLUDED

#include "switchboard.h"

/*  A method table longer than this is treated as unterminated.  */
#define SB_PLUGIN_METHODS_MAX 256

typedef struct sb_plugin sb_plugin_t;

/*  Loads the shared object at `path` (dlopen RTLD_NOW | RTLD_LOCAL), finds
    `sb_service` and validates it.  Returns NULL with err filled (code
    SB_E_BAD_REQUEST, text "PATH: reason") on a missing file, a file that
    is not a loadable shared object, a missing symbol, another ABI version
    or an invalid descriptor, and a schema (sb_service_t.schema) that
    does not load, describes another service or disagrees with the
    methods' flags ("PATH: the plugin's flags and its schema disagree:
    echo.sleep: idempotent in the schema, not in the plugin").  */
sb_plugin_t *sb_plugin_load (const char *path, sb_error_t *err);

/*  Unloads the plugin (dlclose) and NULLs *self_p; safe on NULL.  Every
    instance of its service must have stopped first.  */
void sb_plugin_destroy (sb_plugin_t **self_p);

/*  The validated descriptor, borrowed from the loaded object.  */
const sb_service_t *sb_plugin_service (const sb_plugin_t *self);

/*  The schema the descriptor carries (sb_service_t.schema), loaded and
    checked against the plugin's flags by sb_plugin_load: a set holding
    this one service, borrowed (lives as long as the plugin), or NULL
    when the plugin carries none.  */
const sb_schema_set_t *sb_plugin_schema (const sb_plugin_t *self);

/*  The path the plugin was loaded from.  */
const char *sb_plugin_path (const sb_plugin_t *self);

/*  Checks a descriptor without loading anything.  Returns 0, or -1 with
    `reason` (at most `size` bytes, one line) saying what is wrong.  */
int sb_plugin_validate (const sb_service_t *service, char *reason, size_t size);

/*  Turns what a user typed into a path.  A name with a '/' is a path and is
    returned as is; a bare name ("echo" or "echo.so") is looked up in the
    colon-separated directories of `search_path` (first match wins; with
    ".so" appended when missing).  Returns a new string (caller frees), or
    NULL with err filled when a bare name is found in no directory.  */
char *sb_plugin_resolve (const char *name, const char *search_path, sb_error_t *err);

#endif
