/*  node.h — a compiled schema, private to the schema layer.

    compile.c turns each request or reply schema of a file into a tree of
    sb_schema_node_t once, at load time; validate.c walks that tree beside
    a msgpack_object; schema.c owns the trees of a set's methods.  Nothing
    outside runtime/schema/ includes this header (the rest of the runtime
    sees only schema.h, and plugins the public "Method schemas").

    Strings, enum values and bounds are borrowed from the file's json_t,
    which the set keeps as long as it lives.
*/
#ifndef SB_SCHEMA_NODE_H_INCLUDED
#define SB_SCHEMA_NODE_H_INCLUDED

#include "switchboard.h"
#include "schema/path.h"

#include <jansson.h>
#include <regex.h>
#include <string.h>

/*  Value kinds, as type bits.  */
#define SB_SCHEMA_T_NULL 0x01
#define SB_SCHEMA_T_BOOLEAN 0x02
#define SB_SCHEMA_T_INTEGER 0x04
#define SB_SCHEMA_T_NUMBER 0x08
#define SB_SCHEMA_T_STRING 0x10
#define SB_SCHEMA_T_ARRAY 0x20
#define SB_SCHEMA_T_OBJECT 0x40
#define SB_SCHEMA_T_BINARY 0x80

/*  The type names of the subset and their bits (compile.c).  */
typedef struct {
    const char *name;
    unsigned bit;
} sb_schema_type_t;

#define SB_SCHEMA_TYPE_COUNT 8
extern const sb_schema_type_t sb__schema_types [SB_SCHEMA_TYPE_COUNT];

typedef struct sb_schema_node sb_schema_node_t;

typedef struct {
    const char *name;           /* borrowed from the file's json_t */
    size_t size;
    sb_schema_node_t *schema;
} sb_schema_property_t;

struct sb_schema_node {
    unsigned types;             /* SB_SCHEMA_T_* bits; 0 = any kind */
    sb_schema_property_t *properties;   /* sorted by (size, bytes) */
    size_t property_count;
    sb_schema_property_t *required;     /* names only (schema unused) */
    size_t required_count;
    bool closed;                /* additionalProperties: false */
    sb_schema_node_t *items;
    json_t *enum_values;        /* borrowed array, or NULL */
    json_t *minimum;            /* borrowed numbers, or NULL */
    json_t *maximum;
    int64_t min_length, max_length;     /* -1 when absent */
    int64_t min_items, max_items;
    bool has_pattern;
    regex_t pattern;
    const char *pattern_text;
};

/*  Where loading is, for its errors: "<file>: <path>: <why>".  */
typedef struct {
    const char *file;
    sb__path_t path;
    sb_error_t *err;
} sb_schema_loader_t;

/*  Fills loader->err (SB_E_BAD_REQUEST) with the file, path and why;
    returns -1.  */
int sb__schema_load_error (sb_schema_loader_t *loader, const char *why);

/*  Orders names by size, then bytes (how properties are sorted).  */
int sb__schema_name_compare (const char *a, size_t a_size, const char *b, size_t b_size);

/*  Compiles one schema object at nesting `depth`; NULL with loader->err
    filled (the path says where).  */
sb_schema_node_t *sb__schema_node_compile (sb_schema_loader_t *loader, json_t *schema, int depth);

/*  Frees a tree; NULLs *self_p; safe on NULL.  */
void sb__schema_node_destroy (sb_schema_node_t **self_p);

/*  The property schema of that name, or NULL.  O(log n).  */
const sb_schema_property_t *sb__schema_node_property (const sb_schema_node_t *node,
                                                      const char *name, size_t size);

/*  Validates body (NULL: nil) against node (NULL: anything).  0, or -1
    with err set to `code` and "<prefix><path>: <why>".  */
int sb__schema_node_validate (const sb_schema_node_t *node, const msgpack_object *body,
                              sb_code_t code, const char *prefix, sb_error_t *err);

/*  True if a JSON object key is exactly `name`.  */
static inline bool
s_is (const char *key, const char *name)
{
    return strcmp (key, name) == 0;
}

#endif
