/*  schema.h — method schemas: loading schema files, validating requests.

    A schema set holds the methods of one or more services, each read from a
    file in the format of docs/schemas.md: service, version, and per method
    its flags (idempotent, timeout_ms, cache_ttl_ms) and its request and
    reply schemas in a small JSON Schema subset.  Each schema is compiled
    once at load time (patterns go through regcomp then), and validation
    walks a msgpack_object directly — no JSON round trip on the request
    path.  The first violation is reported with its path:
    "$.values[2]: expected number, got string".

    A set is immutable once loaded, so one set may be shared by threads
    that only find and validate.  Strings returned by accessors belong to
    the set and live as long as it does.

    Also here: the JSON path and UTF-8 helpers shared by json.c and
    schema.c (internal, sb__ prefix).
*/
#ifndef SB_SCHEMA_H_INCLUDED
#define SB_SCHEMA_H_INCLUDED

#include "switchboard.h"

#include <jansson.h>

typedef struct sb_schema_set sb_schema_set_t;
typedef struct sb_method_schema sb_method_schema_t;

/*  Largest schema file read, and deepest schema nesting accepted.  */
#define SB_SCHEMA_FILE_MAX (1024 * 1024)
#define SB_SCHEMA_DEPTH_MAX 32

/*  An empty set.  NULL only when out of memory.  */
sb_schema_set_t *sb_schema_set_new (void);

/*  Destroys the set and everything borrowed from it; NULLs *self_p; safe
    on NULL and twice.  */
void sb_schema_set_destroy (sb_schema_set_t **self_p);

/*  Loads every "*.json" file of dir (sorted by name, hidden files skipped)
    into a new set.  NULL with err (SB_E_BAD_REQUEST for a bad file, whose
    name and JSON path the text gives; SB_E_NOT_FOUND if dir cannot be
    read).  An empty directory gives an empty set.  */
sb_schema_set_t *sb_schema_set_load_dir (const char *dir, sb_error_t *err);

/*  Adds the service described by one file.  0, or -1 with err and the set
    unchanged.  A service already in the set is refused.  */
int sb_schema_set_load_file (sb_schema_set_t *self, const char *path, sb_error_t *err);

/*  Same, from JSON text in memory; `name` stands for the file in errors.  */
int sb_schema_set_load_buffer (sb_schema_set_t *self, const char *name,
                               const char *json, size_t size, sb_error_t *err);

/*  The method, or NULL if the set does not describe it.  O(log n).  */
const sb_method_schema_t *sb_schema_set_find (const sb_schema_set_t *self,
                                              const char *service, const char *method);

/*  Number of methods, and the method at index (sorted by service, then
    method name); NULL past the end.  */
size_t sb_schema_set_size (const sb_schema_set_t *self);
const sb_method_schema_t *sb_schema_set_method (const sb_schema_set_t *self, size_t index);

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

/*  Accessors.  Descriptions and versions are "" when the file has none.  */
const char *sb_method_schema_service (const sb_method_schema_t *self);
const char *sb_method_schema_name (const sb_method_schema_t *self);
const char *sb_method_schema_description (const sb_method_schema_t *self);
const char *sb_method_schema_service_version (const sb_method_schema_t *self);
const char *sb_method_schema_service_description (const sb_method_schema_t *self);
/*  SB_METHOD_* flags (SB_METHOD_IDEMPOTENT), as a plugin would declare.  */
unsigned sb_method_schema_flags (const sb_method_schema_t *self);
bool sb_method_schema_idempotent (const sb_method_schema_t *self);
/*  Call timeout in ms; 0 when the file gives none (use the default).  */
int sb_method_schema_timeout_ms (const sb_method_schema_t *self);
/*  How long a reply may be cached, in ms; 0 = not cacheable.  */
int sb_method_schema_cache_ttl_ms (const sb_method_schema_t *self);
/*  The request and reply schemas as written in the file (borrowed), or
    NULL when the file gives none (anything is accepted).  */
const json_t *sb_method_schema_request_json (const sb_method_schema_t *self);
const json_t *sb_method_schema_reply_json (const sb_method_schema_t *self);

/*  Validates a decoded request body.  0 if it conforms; -1 with err code
    SB_E_BAD_REQUEST and text "<path>: <why>" for the first violation.
    Cost linear in the parts of the body the schema constrains; allocates
    nothing, except a terminated copy of strings of 256 bytes or more that
    a pattern is matched against.  */
int sb_method_schema_validate_request (const sb_method_schema_t *self,
                                       const msgpack_object *body, sb_error_t *err)
    SB_WARN_UNUSED;

/*  Same for a reply; a violation is the service's fault, so the code is
    SB_E_INTERNAL and the text starts with "reply ".  */
int sb_method_schema_validate_reply (const sb_method_schema_t *self,
                                     const msgpack_object *body, sb_error_t *err)
    SB_WARN_UNUSED;

/*  --------------------------------------------------------------------
    Internal helpers shared by json.c and schema.c.  */

/*  A JSON path such as $.values[2]["odd key"], in a fixed buffer: pieces
    past SB__PATH_MAX characters are replaced by "...".  */
#define SB__PATH_MAX 128
typedef struct {
    char text [SB__PATH_MAX + 4];
    size_t size;
} sb__path_t;

void sb__path_init (sb__path_t *path);
void sb__path_index (sb__path_t *path, uint64_t index);
/*  .key for identifier-like keys, ["key"] (escaped, shortened) otherwise.  */
void sb__path_key (sb__path_t *path, const char *key, size_t size);
/*  Restores the path to an earlier size (path->size before a push).  */
void sb__path_cut (sb__path_t *path, size_t size);

/*  Length of the valid UTF-8 sequence starting at s (n bytes available),
    0 if invalid (overlong forms, surrogates, above U+10FFFF).  */
size_t sb__utf8_sequence (const unsigned char *s, size_t n);
/*  Number of code points of a UTF-8 string, or -1 if it is not valid.  */
int64_t sb__utf8_count (const char *data, size_t size);

#endif
