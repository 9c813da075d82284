/*  schema.h — method schemas: the runtime's part beyond the public API.

    Schema sets (load, find, iterate, read, validate) are public: see
    include/switchboard.h, "Method schemas", for their contract.  What only
    the runtime and `sb` use is here: the limits of a file, loading one
    file by path, a method's flags as a plugin declares them, and the check
    of a plugin's descriptor against what the schemas say of it.  The
    implementation is in schema.c (sets and files), compile.c (schemas
    into node trees, node.h) and validate.c (bodies against them).
*/
#ifndef SB_SCHEMA_H_INCLUDED
#define SB_SCHEMA_H_INCLUDED

#include "switchboard.h"

/*  Largest schema file read, and deepest schema nesting accepted.  */
#define SB_SCHEMA_FILE_MAX (1024 * 1024)
#define SB_SCHEMA_DEPTH_MAX 32

/*  Adds the service described by one file.  0, or -1 with err and the set
    unchanged (SB_E_NOT_FOUND if the file cannot be read).  A service
    already in the set is refused.  */
int sb_schema_set_load_file (sb_schema_set_t *self, const char *path, sb_error_t *err);

/*  Compares a plugin's service with what the set says of it: a method the
    set describes that the service lacks, or an idempotent flag that
    differs, is a disagreement.  Methods without a schema are not one (they
    are just not validated).  Returns the number of disagreements (0 also
    when the set does not describe the service); when there are any, err
    (code SB_E_BAD_REQUEST) lists them on one line, cut with "..." if long:
    "echo.nosuch: in the schema, not in the plugin; echo.sleep: idempotent
    in the schema, not in the plugin".  */
int sb_schema_set_check_service (const sb_schema_set_t *self, const sb_service_t *service,
                                 sb_error_t *err);

/*  The whole file that described `service` in the set, as compact JSON
    text with the keys in the file's order (malloc'd, the caller frees),
    or NULL when the set does not describe it (or out of memory).  What an
    instance announces to its brokers (READY "schema").  */
char *sb_schema_set_service_json (const sb_schema_set_t *self, const char *service);

/*  SB_METHOD_* flags (SB_METHOD_IDEMPOTENT), as a plugin would declare.  */
unsigned sb_method_schema_flags (const sb_method_schema_t *self);

#endif
