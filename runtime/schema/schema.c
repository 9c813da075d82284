/*  schema.c — loads method schemas and validates MessagePack bodies.

    Loading parses a schema file with jansson, checks its structure
    (service, version, methods and their flags), and compiles every request
    and reply schema into a tree of node_t: type bits, sorted properties,
    required names, bounds, a regcomp'd pattern.  Anything the subset does
    not know is refused at load time with the file name and the JSON path
    of the offending keyword, so a typo never silently weakens a schema.

    Validation walks the msgpack_object and the node tree together and stops
    at the first violation.  As in JSON Schema, a keyword applies only to
    values of its kind (minimum to numbers, items to arrays, ...); "type"
    says which kinds are allowed.  Deviations from JSON Schema, all on the
    side of being stricter (see docs/schemas.md): "integer" means a
    MessagePack integer (a float 1.0 is a number, not an integer); "binary"
    is MessagePack bin; minLength/maxLength count code points in strings
    and bytes in binary; enum never matches binary.
*/
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Value kinds, as type bits.  */
#define T_NULL 0x01
#define T_BOOLEAN 0x02
#define T_INTEGER 0x04
#define T_NUMBER 0x08
#define T_STRING 0x10
#define T_ARRAY 0x20
#define T_OBJECT 0x40
#define T_BINARY 0x80

static const struct {
    const char *name;
    unsigned bit;
} s_types [] = {
    { "null", T_NULL }, { "boolean", T_BOOLEAN }, { "integer", T_INTEGER },
    { "number", T_NUMBER }, { "string", T_STRING }, { "array", T_ARRAY },
    { "object", T_OBJECT }, { "binary", T_BINARY },
};
#define TYPE_COUNT (sizeof s_types / sizeof s_types [0])

typedef struct s_node node_t;

typedef struct {
    const char *name;           /* borrowed from the file's json_t */
    size_t size;
    node_t *schema;
} property_t;

struct s_node {
    unsigned types;             /* T_* bits; 0 = any kind */
    property_t *properties;     /* sorted by (size, bytes) */
    size_t property_count;
    property_t *required;       /* names only (schema unused) */
    size_t required_count;
    bool closed;                /* additionalProperties: false */
    node_t *items;
    json_t *enum_values;        /* borrowed array, or NULL */
    json_t *minimum;            /* borrowed numbers, or NULL */
    json_t *maximum;
    int64_t min_length, max_length;     /* -1 when absent */
    int64_t min_items, max_items;
    bool has_pattern;
    regex_t pattern;
    const char *pattern_text;
};

struct sb_method_schema {
    char *service;              /* owned copies */
    char *name;
    const char *description;    /* borrowed from the file's json_t */
    const char *version;
    const char *service_description;
    bool idempotent;
    int timeout_ms;
    int cache_ttl_ms;
    json_t *request_json;       /* borrowed */
    json_t *reply_json;
    node_t *request;            /* NULL = anything */
    node_t *reply;
    size_t file_index;          /* which file of the set described it */
};

struct sb_schema_set {
    sb_method_schema_t **methods;   /* sorted by service, then name */
    size_t size;
    json_t **files;                 /* roots of loaded files, owning the text */
    char **file_names;
    size_t file_count;
};

/*  --------------------------------------------------------------------
    Nodes  */

static void
s_node_destroy (node_t **self_p)
{
    node_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->property_count; i++)
        s_node_destroy (&self->properties [i].schema);
    free (self->properties);
    free (self->required);
    s_node_destroy (&self->items);
    if (self->has_pattern)
        regfree (&self->pattern);
    free (self);
    *self_p = NULL;
}

static int
s_name_compare (const char *a, size_t a_size, const char *b, size_t b_size)
{
    if (a_size != b_size)
        return a_size < b_size ? -1 : 1;
    return a_size ? memcmp (a, b, a_size) : 0;
}

static int
s_property_compare (const void *a, const void *b)
{
    const property_t *pa = a, *pb = b;
    return s_name_compare (pa->name, pa->size, pb->name, pb->size);
}

static const property_t *
s_property_find (const node_t *node, const char *name, size_t size)
{
    size_t lo = 0, hi = node->property_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const property_t *p = &node->properties [mid];
        int c = s_name_compare (name, size, p->name, p->size);
        if (c == 0)
            return p;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static bool
s_is (const char *key, const char *name)
{
    return strcmp (key, name) == 0;
}

/*  Load errors: "<file>: <path>: <why>".  */
typedef struct {
    const char *file;
    sb__path_t path;
    sb_error_t *err;
} loader_t;

static int
s_load_error (loader_t *loader, const char *why)
{
    return sb_error_set (loader->err, SB_E_BAD_REQUEST, "%s: %s: %s",
                         loader->file, loader->path.text, why);
}

/*  A non-negative integer keyword into *value.  */
static int
s_load_count (loader_t *loader, json_t *value, int64_t *count)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0)
        return s_load_error (loader, "expected a non-negative integer");
    *count = json_integer_value (value);
    return 0;
}

static node_t *s_node_load (loader_t *loader, json_t *schema, int depth);

static int
s_load_type (loader_t *loader, node_t *node, json_t *value)
{
    size_t count = json_is_array (value) ? json_array_size (value) : 1;
    if (!json_is_string (value) && !(json_is_array (value) && count > 0))
        return s_load_error (loader, "expected a type name or a non-empty array of them");
    for (size_t i = 0; i < count; i++) {
        json_t *name = json_is_array (value) ? json_array_get (value, i) : value;
        size_t t = 0;
        while (t < TYPE_COUNT && !(json_is_string (name)
                                   && strcmp (json_string_value (name), s_types [t].name) == 0))
            t++;
        if (t == TYPE_COUNT)
            return s_load_error (loader, "unknown type (expected null, boolean, integer, "
                                         "number, string, array, object or binary)");
        node->types |= s_types [t].bit;
    }
    return 0;
}

static int
s_load_properties (loader_t *loader, node_t *node, json_t *value, int depth)
{
    if (!json_is_object (value))
        return s_load_error (loader, "expected an object of schemas");
    size_t count = json_object_size (value);
    node->properties = calloc (count ? count : 1, sizeof (property_t));
    if (!node->properties)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    size_t mark = loader->path.size;
    const char *key;
    size_t key_size;
    json_t *member;
    json_object_keylen_foreach (value, key, key_size, member) {
        sb__path_key (&loader->path, key, key_size);
        property_t *p = &node->properties [node->property_count];
        p->name = key;
        p->size = key_size;
        p->schema = s_node_load (loader, member, depth + 1);
        if (!p->schema)
            return -1;
        node->property_count++;
        sb__path_cut (&loader->path, mark);
    }
    qsort (node->properties, node->property_count, sizeof (property_t), s_property_compare);
    return 0;
}

static int
s_load_required (loader_t *loader, node_t *node, json_t *value)
{
    if (!json_is_array (value))
        return s_load_error (loader, "expected an array of property names");
    size_t count = json_array_size (value);
    node->required = calloc (count ? count : 1, sizeof (property_t));
    if (!node->required)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *name = json_array_get (value, i);
        if (!json_is_string (name)) {
            sb__path_index (&loader->path, i);
            return s_load_error (loader, "expected a property name");
        }
        node->required [i].name = json_string_value (name);
        node->required [i].size = json_string_length (name);
    }
    node->required_count = count;
    return 0;
}

/*  glibc's regcomp expands bounded repetitions into copies, so nested
    ones multiply: "((a{100}){100}){100}" costs a million states.  This
    bounds the product of all repetition counts of a pattern (and its
    length) before regcomp sees it.  Bracket expressions and escapes are
    skipped; a malformed brace is left for regcomp to refuse.  */
#define PATTERN_SIZE_MAX 1024
#define PATTERN_REPEAT_MAX 10000

static bool
s_pattern_affordable (const char *pattern)
{
    if (strlen (pattern) > PATTERN_SIZE_MAX)
        return false;
    unsigned long cost = 1;
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\' && p [1])
            p++;
        else
        if (*p == '[') {
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p && *p != ']')
                p++;
            if (!*p)
                return true;
        }
        else
        if (*p == '{') {
            unsigned long bound = 0;
            for (p++; *p && *p != '}'; p++)
                if (*p >= '0' && *p <= '9') {
                    unsigned long n = strtoul (p, NULL, 10);
                    if (n > PATTERN_REPEAT_MAX)
                        return false;
                    bound = n > bound ? n : bound;
                    while (p [1] >= '0' && p [1] <= '9')
                        p++;
                }
            if (!*p)
                return true;
            cost *= bound ? bound : 1;
            if (cost > PATTERN_REPEAT_MAX)
                return false;
        }
    }
    return true;
}

static int
s_load_pattern (loader_t *loader, node_t *node, json_t *value)
{
    if (!json_is_string (value) || strlen (json_string_value (value)) != json_string_length (value))
        return s_load_error (loader, "expected a regular expression (POSIX ERE) string");
    if (!s_pattern_affordable (json_string_value (value)))
        return s_load_error (loader, "pattern too costly (longer than 1024 characters, or "
                                     "repetition counts multiplying past 10000)");
    int rc = regcomp (&node->pattern, json_string_value (value), REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why [128], text [200];
        regerror (rc, &node->pattern, why, sizeof why);
        snprintf (text, sizeof text, "invalid regular expression: %s", why);
        return s_load_error (loader, text);
    }
    node->has_pattern = true;
    node->pattern_text = json_string_value (value);
    return 0;
}

/*  Compiles one schema object; NULL with loader->err filled.  */
static node_t *
s_node_load (loader_t *loader, json_t *schema, int depth)
{
    if (!json_is_object (schema)) {
        s_load_error (loader, "expected a schema object");
        return NULL;
    }
    if (depth >= SB_SCHEMA_DEPTH_MAX) {
        s_load_error (loader, "schema nested too deep");
        return NULL;
    }
    node_t *node = calloc (1, sizeof (node_t));
    if (!node) {
        sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    node->min_length = node->max_length = node->min_items = node->max_items = -1;
    size_t mark = loader->path.size;
    const char *key;
    size_t key_size;
    json_t *value;
    int rc = 0;
    json_object_keylen_foreach (schema, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        if (s_is (key, "type"))
            rc = s_load_type (loader, node, value);
        else
        if (s_is (key, "properties"))
            rc = s_load_properties (loader, node, value, depth);
        else
        if (s_is (key, "required"))
            rc = s_load_required (loader, node, value);
        else
        if (s_is (key, "additionalProperties")) {
            if (json_is_boolean (value))
                node->closed = !json_is_true (value);
            else
                rc = s_load_error (loader,
                                   "expected true or false (schemas are not supported here)");
        }
        else
        if (s_is (key, "items")) {
            node->items = s_node_load (loader, value, depth + 1);
            rc = node->items ? 0 : -1;
        }
        else
        if (s_is (key, "enum")) {
            if (json_is_array (value) && json_array_size (value) > 0)
                node->enum_values = value;
            else
                rc = s_load_error (loader, "expected a non-empty array of values");
        }
        else
        if (s_is (key, "minimum") || s_is (key, "maximum")) {
            if (json_is_number (value)) {
                if (s_is (key, "minimum"))
                    node->minimum = value;
                else
                    node->maximum = value;
            }
            else
                rc = s_load_error (loader, "expected a number");
        }
        else
        if (s_is (key, "minLength"))
            rc = s_load_count (loader, value, &node->min_length);
        else
        if (s_is (key, "maxLength"))
            rc = s_load_count (loader, value, &node->max_length);
        else
        if (s_is (key, "minItems"))
            rc = s_load_count (loader, value, &node->min_items);
        else
        if (s_is (key, "maxItems"))
            rc = s_load_count (loader, value, &node->max_items);
        else
        if (s_is (key, "pattern"))
            rc = s_load_pattern (loader, node, value);
        else
        if (s_is (key, "description") || s_is (key, "title")
        ||  s_is (key, "$comment")) {
            if (!json_is_string (value))
                rc = s_load_error (loader, "expected a string");
        }
        else
        if (!s_is (key, "default") && !s_is (key, "examples"))
            rc = s_load_error (loader, "unknown keyword (see docs/schemas.md for the subset)");
        if (rc)
            break;
        sb__path_cut (&loader->path, mark);
    }
    if (rc == 0) {
        if (node->min_length >= 0 && node->max_length >= 0 && node->min_length > node->max_length)
            rc = s_load_error (loader, "minLength is greater than maxLength");
        else
        if (node->min_items >= 0 && node->max_items >= 0 && node->min_items > node->max_items)
            rc = s_load_error (loader, "minItems is greater than maxItems");
        else
        if (node->minimum && node->maximum
        &&  json_number_value (node->minimum) > json_number_value (node->maximum))
            rc = s_load_error (loader, "minimum is greater than maximum");
    }
    if (rc)
        s_node_destroy (&node);
    return node;
}

/*  --------------------------------------------------------------------
    Validation  */

typedef struct {
    sb__path_t path;
    sb_error_t *err;
    sb_code_t code;
    const char *prefix;         /* "" for requests, "reply " for replies */
} checker_t;

static int
s_fail (checker_t *checker, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_fail (checker_t *checker, const char *fmt, ...)
{
    char why [SB_ERROR_TEXT_MAX];
    va_list args;
    va_start (args, fmt);
    vsnprintf (why, sizeof why, fmt, args);
    va_end (args);
    return sb_error_set (checker->err, checker->code, "%s%s: %s",
                         checker->prefix, checker->path.text, why);
}

static unsigned
s_kind (const msgpack_object *value)
{
    switch (value->type) {
        case MSGPACK_OBJECT_NIL: return T_NULL;
        case MSGPACK_OBJECT_BOOLEAN: return T_BOOLEAN;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return T_INTEGER;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: return T_NUMBER;
        case MSGPACK_OBJECT_STR: return T_STRING;
        case MSGPACK_OBJECT_BIN: return T_BINARY;
        case MSGPACK_OBJECT_ARRAY: return T_ARRAY;
        case MSGPACK_OBJECT_MAP: return T_OBJECT;
        default: return 0;
    }
}

static const char *
s_kind_name (unsigned kind)
{
    for (size_t t = 0; t < TYPE_COUNT; t++)
        if (s_types [t].bit == kind)
            return s_types [t].name;
    return "ext";
}

/*  Every value a long double holds exactly (int64, uint64 and double on
    x86-64 and aarch64), so bounds compare without rounding.  */
static long double
s_number (const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (long double) value->via.u64;
    if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return (long double) value->via.i64;
    return (long double) value->via.f64;
}

static long double
s_json_number (const json_t *value)
{
    if (json_is_integer (value))
        return (long double) json_integer_value (value);
    return (long double) json_real_value (value);
}

/*  Equality of a MessagePack value and a JSON value from an enum.  */
static bool
s_equal (const msgpack_object *value, const json_t *json)
{
    switch (value->type) {
        case MSGPACK_OBJECT_NIL:
            return json_is_null (json);
        case MSGPACK_OBJECT_BOOLEAN:
            return json_is_boolean (json) && value->via.boolean == json_is_true (json);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return json_is_number (json) && s_number (value) == s_json_number (json);
        case MSGPACK_OBJECT_STR:
            return json_is_string (json)
                && s_name_compare (json_string_value (json), json_string_length (json),
                                   value->via.str.ptr, value->via.str.size) == 0;
        case MSGPACK_OBJECT_ARRAY:
            if (!json_is_array (json) || json_array_size (json) != value->via.array.size)
                return false;
            for (uint32_t i = 0; i < value->via.array.size; i++)
                if (!s_equal (&value->via.array.ptr [i], json_array_get (json, i)))
                    return false;
            return true;
        case MSGPACK_OBJECT_MAP:
            if (!json_is_object (json) || json_object_size (json) != value->via.map.size)
                return false;
            for (uint32_t i = 0; i < value->via.map.size; i++) {
                const msgpack_object *key = &value->via.map.ptr [i].key;
                if (key->type != MSGPACK_OBJECT_STR)
                    return false;
                json_t *member = json_object_getn (json, key->via.str.ptr, key->via.str.size);
                if (!member || !s_equal (&value->via.map.ptr [i].val, member))
                    return false;
            }
            return true;
        default:
            return false;           /* bin and ext match no enum value */
    }
}

static void
s_print_number (char *buf, size_t size, const msgpack_object *value)
{
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf (buf, size, "%" PRIu64, value->via.u64);
    else
    if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf (buf, size, "%" PRId64, value->via.i64);
    else
        snprintf (buf, size, "%.17g", value->via.f64);
}

static void
s_print_json_number (char *buf, size_t size, const json_t *value)
{
    if (json_is_integer (value))
        snprintf (buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
    else
        snprintf (buf, size, "%.17g", json_real_value (value));
}

static int
s_check_number (checker_t *checker, const node_t *node, const msgpack_object *value)
{
    if (!node->minimum && !node->maximum)
        return 0;
    char got [40], bound [40];
    long double number = s_number (value);
    s_print_number (got, sizeof got, value);
    if (number != number)
        return s_fail (checker, "NaN is not within the bounds");
    if (node->minimum && number < s_json_number (node->minimum)) {
        s_print_json_number (bound, sizeof bound, node->minimum);
        return s_fail (checker, "%s is less than minimum %s", got, bound);
    }
    if (node->maximum && number > s_json_number (node->maximum)) {
        s_print_json_number (bound, sizeof bound, node->maximum);
        return s_fail (checker, "%s is greater than maximum %s", got, bound);
    }
    return 0;
}

/*  Matches against a NUL-terminated copy of the string (small ones on the
    stack): msgpack strings are not terminated, and although glibc honours
    REG_STARTEND, sanitizer interceptors of regexec read up to a NUL.
    REG_STARTEND still lets a NUL inside the string take part.  */
static bool
s_matches (const regex_t *pattern, const char *data, size_t size)
{
    char small [256];
    char *copy = size < sizeof small ? small : malloc (size + 1);
    if (!copy)
        return false;
    if (size)
        memcpy (copy, data, size);
    copy [size] = 0;
#ifdef REG_STARTEND
    regmatch_t match [1];
    match [0].rm_so = 0;
    match [0].rm_eo = (regoff_t) size;
    bool matched = regexec (pattern, copy, 1, match, REG_STARTEND) == 0;
#else
    bool matched = regexec (pattern, copy, 0, NULL, 0) == 0;
#endif
    if (copy != small)
        free (copy);
    return matched;
}

static int
s_check_length (checker_t *checker, const node_t *node, int64_t length, const char *unit)
{
    if (node->min_length >= 0 && length < node->min_length)
        return s_fail (checker, "%" PRId64 " %s, fewer than minLength %" PRId64,
                       length, unit, node->min_length);
    if (node->max_length >= 0 && length > node->max_length)
        return s_fail (checker, "%" PRId64 " %s, more than maxLength %" PRId64,
                       length, unit, node->max_length);
    return 0;
}

static int
s_check_string (checker_t *checker, const node_t *node, const msgpack_object *value)
{
    int64_t length = sb__utf8_count (value->via.str.ptr, value->via.str.size);
    if (length < 0)
        return s_fail (checker, "string is not valid UTF-8");
    if (s_check_length (checker, node, length, "characters"))
        return -1;
    if (node->has_pattern && !s_matches (&node->pattern, value->via.str.ptr, value->via.str.size))
        return s_fail (checker, "does not match pattern %s", node->pattern_text);
    return 0;
}

static int s_check (checker_t *checker, const node_t *node, const msgpack_object *value);

static int
s_check_array (checker_t *checker, const node_t *node, const msgpack_object *value)
{
    int64_t count = value->via.array.size;
    if (node->min_items >= 0 && count < node->min_items)
        return s_fail (checker, "%" PRId64 " items, fewer than minItems %" PRId64,
                       count, node->min_items);
    if (node->max_items >= 0 && count > node->max_items)
        return s_fail (checker, "%" PRId64 " items, more than maxItems %" PRId64,
                       count, node->max_items);
    if (node->items) {
        size_t mark = checker->path.size;
        for (uint32_t i = 0; i < value->via.array.size; i++) {
            sb__path_index (&checker->path, i);
            if (s_check (checker, node->items, &value->via.array.ptr [i]))
                return -1;
            sb__path_cut (&checker->path, mark);
        }
    }
    return 0;
}

static int
s_check_object (checker_t *checker, const node_t *node, const msgpack_object *value)
{
    const msgpack_object_kv *kv = value->via.map.ptr;
    uint32_t count = value->via.map.size;
    if (node->required_count == 0 && node->property_count == 0 && !node->closed)
        return 0;
    for (uint32_t i = 0; i < count; i++)
        if (kv [i].key.type != MSGPACK_OBJECT_STR)
            return s_fail (checker, "key %" PRIu32 " is %s, not a string",
                           i, s_kind_name (s_kind (&kv [i].key)));
    for (size_t r = 0; r < node->required_count; r++) {
        const property_t *name = &node->required [r];
        uint32_t i = 0;
        while (i < count && s_name_compare (kv [i].key.via.str.ptr, kv [i].key.via.str.size,
                                            name->name, name->size) != 0)
            i++;
        if (i == count)
            return s_fail (checker, "missing required property \"%.*s\"",
                           (int) (name->size > 64 ? 64 : name->size), name->name);
    }
    size_t mark = checker->path.size;
    for (uint32_t i = 0; i < count; i++) {
        const char *key = kv [i].key.via.str.ptr;
        size_t key_size = kv [i].key.via.str.size;
        const property_t *property = s_property_find (node, key, key_size);
        sb__path_key (&checker->path, key, key_size);
        if (property) {
            if (s_check (checker, property->schema, &kv [i].val))
                return -1;
        }
        else
        if (node->closed)
            return s_fail (checker, "property not allowed (additionalProperties is false)");
        sb__path_cut (&checker->path, mark);
    }
    return 0;
}

static int
s_check (checker_t *checker, const node_t *node, const msgpack_object *value)
{
    unsigned kind = s_kind (value);
    if (node->types) {
        unsigned allowed = node->types;
        if (allowed & T_NUMBER)
            allowed |= T_INTEGER;
        if (!(kind & allowed)) {
            char expected [96] = "";
            for (size_t t = 0; t < TYPE_COUNT; t++)
                if (node->types & s_types [t].bit) {
                    if (*expected)
                        strcat (expected, " or ");
                    strcat (expected, s_types [t].name);
                }
            return s_fail (checker, "expected %s, got %s", expected, s_kind_name (kind));
        }
    }
    int rc = 0;
    switch (kind) {
        case T_INTEGER:
        case T_NUMBER: rc = s_check_number (checker, node, value); break;
        case T_STRING: rc = s_check_string (checker, node, value); break;
        case T_BINARY:
            rc = s_check_length (checker, node, value->via.bin.size, "bytes");
            break;
        case T_ARRAY: rc = s_check_array (checker, node, value); break;
        case T_OBJECT: rc = s_check_object (checker, node, value); break;
        default: break;
    }
    if (rc == 0 && node->enum_values) {
        size_t i;
        json_t *allowed;
        json_array_foreach (node->enum_values, i, allowed)
            if (s_equal (value, allowed))
                return 0;
        char *list = json_dumps (node->enum_values, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = s_fail (checker, "not one of %.100s%s", list ? list : "the allowed values",
                     list && strlen (list) > 100 ? "..." : "");
        free (list);
    }
    return rc;
}

static int
s_validate (const node_t *node, const msgpack_object *body, sb_code_t code, const char *prefix,
            sb_error_t *err)
{
    if (!node)
        return 0;
    checker_t checker = { .err = err, .code = code, .prefix = prefix };
    sb__path_init (&checker.path);
    if (!body) {
        msgpack_object nil = { .type = MSGPACK_OBJECT_NIL };
        return s_check (&checker, node, &nil);
    }
    return s_check (&checker, node, body);
}

int
sb_method_schema_validate_request (const sb_method_schema_t *self, const msgpack_object *body,
                                   sb_error_t *err)
{
    return s_validate (self->request, body, SB_E_BAD_REQUEST, "", err);
}

int
sb_method_schema_validate_reply (const sb_method_schema_t *self, const msgpack_object *body,
                                 sb_error_t *err)
{
    return s_validate (self->reply, body, SB_E_INTERNAL, "reply ", err);
}

/*  --------------------------------------------------------------------
    Methods and files  */

static void
s_method_destroy (sb_method_schema_t **self_p)
{
    sb_method_schema_t *self = *self_p;
    if (!self)
        return;
    free (self->service);
    free (self->name);
    s_node_destroy (&self->request);
    s_node_destroy (&self->reply);
    free (self);
    *self_p = NULL;
}

/*  Names of services are [a-z0-9_-], of methods [A-Za-z0-9_-], 1..64.  */
static bool
s_valid_name (const char *name, bool upper)
{
    size_t size = strlen (name);
    if (size == 0 || size > 64)
        return false;
    for (size_t i = 0; i < size; i++) {
        char c = name [i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
              || (upper && c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

/*  A millisecond count: an integer from 0 to one day.  */
static int
s_load_ms (loader_t *loader, json_t *value, int *ms)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0
    ||  json_integer_value (value) > 86400000)
        return s_load_error (loader, "expected milliseconds, an integer from 0 to 86400000");
    *ms = (int) json_integer_value (value);
    return 0;
}

static sb_method_schema_t *
s_method_load (loader_t *loader, const char *service, const char *name, json_t *spec)
{
    if (!s_valid_name (name, true)) {
        s_load_error (loader, "method names are 1 to 64 of A-Z a-z 0-9 _ -");
        return NULL;
    }
    if (!json_is_object (spec)) {
        s_load_error (loader, "expected a method object");
        return NULL;
    }
    sb_method_schema_t *self = calloc (1, sizeof (sb_method_schema_t));
    if (!self || !(self->service = strdup (service)) || !(self->name = strdup (name))) {
        s_method_destroy (&self);
        sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->description = "";
    size_t mark = loader->path.size;
    const char *key;
    size_t key_size;
    json_t *value;
    int rc = 0;
    json_object_keylen_foreach (spec, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        if (s_is (key, "description")) {
            if (json_is_string (value))
                self->description = json_string_value (value);
            else
                rc = s_load_error (loader, "expected a string");
        }
        else
        if (s_is (key, "idempotent")) {
            if (json_is_boolean (value))
                self->idempotent = json_is_true (value);
            else
                rc = s_load_error (loader, "expected true or false");
        }
        else
        if (s_is (key, "timeout_ms"))
            rc = s_load_ms (loader, value, &self->timeout_ms);
        else
        if (s_is (key, "cache_ttl_ms"))
            rc = s_load_ms (loader, value, &self->cache_ttl_ms);
        else
        if (s_is (key, "request")) {
            self->request_json = value;
            self->request = s_node_load (loader, value, 0);
            rc = self->request ? 0 : -1;
        }
        else
        if (s_is (key, "reply")) {
            self->reply_json = value;
            self->reply = s_node_load (loader, value, 0);
            rc = self->reply ? 0 : -1;
        }
        else
        if (!s_is (key, "$comment"))
            rc = s_load_error (loader, "unknown method field (expected description, idempotent, "
                                       "timeout_ms, cache_ttl_ms, request, reply)");
        if (rc)
            break;
        sb__path_cut (&loader->path, mark);
    }
    if (rc)
        s_method_destroy (&self);
    return self;
}

static int
s_method_compare (const void *a, const void *b)
{
    const sb_method_schema_t *ma = *(sb_method_schema_t *const *) a;
    const sb_method_schema_t *mb = *(sb_method_schema_t *const *) b;
    int c = strcmp (ma->service, mb->service);
    return c ? c : strcmp (ma->name, mb->name);
}

/*  Checks the file's top level and loads its methods into a new array
    *methods_p of *count_p entries (the caller frees both, also on error).
    0 or -1.  */
static int
s_file_load (loader_t *loader, json_t *root, sb_method_schema_t ***methods_p, size_t *count_p)
{
    if (!json_is_object (root))
        return s_load_error (loader, "expected an object with service, version and methods");
    json_t *service = json_object_get (root, "service");
    json_t *methods = json_object_get (root, "methods");
    if (!json_is_string (service) || !s_valid_name (json_string_value (service), false)) {
        sb__path_key (&loader->path, "service", 7);
        return s_load_error (loader, "expected the service name, 1 to 64 of a-z 0-9 _ -");
    }
    if (!json_is_object (methods) || json_object_size (methods) == 0) {
        sb__path_key (&loader->path, "methods", 7);
        return s_load_error (loader, "expected a non-empty object of methods");
    }
    const char *version = "", *description = "";
    const char *key;
    size_t key_size;
    json_t *value;
    json_object_keylen_foreach (root, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        if (s_is (key, "version") || s_is (key, "description")) {
            if (!json_is_string (value))
                return s_load_error (loader, "expected a string");
            if (s_is (key, "version"))
                version = json_string_value (value);
            else
                description = json_string_value (value);
        }
        else
        if (!s_is (key, "service") && !s_is (key, "methods") && !s_is (key, "$comment"))
            return s_load_error (loader, "unknown field (expected service, version, "
                                         "description, methods)");
        sb__path_cut (&loader->path, 1);
    }
    size_t count = json_object_size (methods);
    sb_method_schema_t **list = calloc (count ? count : 1, sizeof (sb_method_schema_t *));
    if (!list)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    *methods_p = list;
    *count_p = 0;
    sb__path_key (&loader->path, "methods", 7);
    size_t mark = loader->path.size;
    json_object_keylen_foreach (methods, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        sb_method_schema_t *method =
            s_method_load (loader, json_string_value (service), key, value);
        if (!method)
            return -1;
        method->version = version;
        method->service_description = description;
        list [(*count_p)++] = method;
        sb__path_cut (&loader->path, mark);
    }
    return 0;
}

int
sb_schema_set_load_buffer (sb_schema_set_t *self, const char *name, const char *json, size_t size,
                           sb_error_t *err)
{
    if (!self || !name || !json)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no schema text");
    if (size > SB_SCHEMA_FILE_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: larger than %d bytes",
                             name, SB_SCHEMA_FILE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb (json, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: line %d column %d: %s",
                             name, jerr.line, jerr.column, jerr.text);
    loader_t loader = { .file = name, .err = err };
    sb__path_init (&loader.path);
    sb_method_schema_t **methods = NULL;
    size_t count = 0;
    int rc = s_file_load (&loader, root, &methods, &count);
    if (rc == 0 && count > 0) {
        const char *service = methods [0]->service;
        for (size_t i = 0; i < self->size && rc == 0; i++)
            if (strcmp (self->methods [i]->service, service) == 0)
                rc = sb_error_set (err, SB_E_BAD_REQUEST,
                                   "%s: service \"%s\" is already described by %s", name, service,
                                   self->file_names [self->methods [i]->file_index]);
    }
    char *name_copy = rc == 0 ? strdup (name) : NULL;
    sb_method_schema_t **all = rc == 0
        ? realloc (self->methods, (self->size + count + 1) * sizeof (sb_method_schema_t *)) : NULL;
    if (all)
        self->methods = all;
    json_t **files = all ? realloc (self->files, (self->file_count + 1) * sizeof (json_t *)) : NULL;
    if (files)
        self->files = files;
    char **file_names = files
        ? realloc (self->file_names, (self->file_count + 1) * sizeof (char *)) : NULL;
    if (file_names)
        self->file_names = file_names;
    if (rc == 0 && !(name_copy && file_names))
        rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
    if (rc) {
        for (size_t i = 0; i < count; i++)
            s_method_destroy (&methods [i]);
        free (methods);
        free (name_copy);
        json_decref (root);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        methods [i]->file_index = self->file_count;
        self->methods [self->size++] = methods [i];
    }
    free (methods);
    self->files [self->file_count] = root;
    self->file_names [self->file_count++] = name_copy;
    qsort (self->methods, self->size, sizeof (sb_method_schema_t *), s_method_compare);
    return 0;
}

int
sb_schema_set_load_file (sb_schema_set_t *self, const char *path, sb_error_t *err)
{
    if (!self || !path)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no schema file");
    FILE *file = fopen (path, "rb");
    if (!file)
        return sb_error_set (err, SB_E_NOT_FOUND, "%s: %s", path, strerror (errno));
    char *text = malloc (SB_SCHEMA_FILE_MAX + 1);
    if (!text) {
        fclose (file);
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    }
    size_t size = fread (text, 1, SB_SCHEMA_FILE_MAX + 1, file);
    int failed = ferror (file);
    fclose (file);
    int rc;
    if (failed)
        rc = sb_error_set (err, SB_E_NOT_FOUND, "%s: read error", path);
    else
        rc = sb_schema_set_load_buffer (self, path, text, size, err);
    free (text);
    return rc;
}

static int
s_string_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

sb_schema_set_t *
sb_schema_set_load_dir (const char *dir, sb_error_t *err)
{
    DIR *handle = dir ? opendir (dir) : NULL;
    if (!handle) {
        sb_error_set (err, SB_E_NOT_FOUND, "%s: %s", dir ? dir : "(null)",
                      dir ? strerror (errno) : "no directory");
        return NULL;
    }
    sb_schema_set_t *self = sb_schema_set_new ();
    char **names = NULL;
    size_t count = 0, max = 0;
    int rc = self ? 0 : sb_error_set (err, SB_E_INTERNAL, "out of memory");
    struct dirent *entry;
    while (rc == 0 && (entry = readdir (handle))) {
        size_t size = strlen (entry->d_name);
        if (entry->d_name [0] == '.' || size < 6 || strcmp (entry->d_name + size - 5, ".json"))
            continue;
        if (count == max) {
            max = max ? max * 2 : 16;
            char **grown = realloc (names, max * sizeof (char *));
            if (!grown) {
                rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
                break;
            }
            names = grown;
        }
        if (!(names [count] = strdup (entry->d_name)))
            rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
        else
            count++;
    }
    closedir (handle);
    if (names)
        qsort (names, count, sizeof (char *), s_string_compare);
    for (size_t i = 0; i < count && rc == 0; i++) {
        size_t size = strlen (dir) + strlen (names [i]) + 2;
        char *path = malloc (size);
        if (!path)
            rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
        else {
            snprintf (path, size, "%s/%s", dir, names [i]);
            rc = sb_schema_set_load_file (self, path, err);
            free (path);
        }
    }
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
    if (rc)
        sb_schema_set_destroy (&self);
    return self;
}

/*  --------------------------------------------------------------------
    The set  */

sb_schema_set_t *
sb_schema_set_new (void)
{
    return calloc (1, sizeof (sb_schema_set_t));
}

void
sb_schema_set_destroy (sb_schema_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_schema_set_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        s_method_destroy (&self->methods [i]);
    free (self->methods);
    for (size_t i = 0; i < self->file_count; i++) {
        json_decref (self->files [i]);
        free (self->file_names [i]);
    }
    free (self->files);
    free (self->file_names);
    free (self);
    *self_p = NULL;
}

const sb_method_schema_t *
sb_schema_set_find (const sb_schema_set_t *self, const char *service, const char *method)
{
    if (!self || !service || !method)
        return NULL;
    size_t lo = 0, hi = self->size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sb_method_schema_t *m = self->methods [mid];
        int c = strcmp (service, m->service);
        if (c == 0)
            c = strcmp (method, m->name);
        if (c == 0)
            return m;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*  Appends "; " (unless first) and the formatted piece to text; once it
    is full, the end is replaced by "...".  */
static void
s_append (char *text, size_t size, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
s_append (char *text, size_t size, const char *fmt, ...)
{
    size_t used = strlen (text);
    if (used + 4 >= size)
        return;
    if (used) {
        snprintf (text + used, size - used, "; ");
        used += 2;
    }
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (text + used, size - used, fmt, args);
    va_end (args);
    if (n < 0 || (size_t) n >= size - used)
        memcpy (text + size - 4, "...", 4);
}

int
sb_schema_set_check_service (const sb_schema_set_t *self, const sb_service_t *service,
                             sb_error_t *err)
{
    if (!self || !service || !service->name)
        return 0;
    char text [SB_ERROR_TEXT_MAX] = "";
    int count = 0;
    for (size_t i = 0; i < self->size; i++) {
        const sb_method_schema_t *m = self->methods [i];
        if (strcmp (m->service, service->name) != 0)
            continue;
        const sb_method_t *method = NULL;
        for (const sb_method_t *p = service->methods; p && p->name; p++)
            if (strcmp (p->name, m->name) == 0) {
                method = p;
                break;
            }
        if (!method) {
            s_append (text, sizeof text, "%s.%s: in the schema, not in the plugin",
                      m->service, m->name);
            count++;
        }
        else
        if (m->idempotent != ((method->flags & SB_METHOD_IDEMPOTENT) != 0)) {
            s_append (text, sizeof text, "%s.%s: %sidempotent in the schema, %s in the plugin",
                      m->service, m->name, m->idempotent ? "" : "not ",
                      m->idempotent ? "not" : "idempotent");
            count++;
        }
    }
    if (count)
        sb_error_set (err, SB_E_BAD_REQUEST, "%s", text);
    return count;
}

size_t
sb_schema_set_size (const sb_schema_set_t *self)
{
    return self ? self->size : 0;
}

const sb_method_schema_t *
sb_schema_set_method (const sb_schema_set_t *self, size_t index)
{
    return self && index < self->size ? self->methods [index] : NULL;
}

const char *
sb_method_schema_service (const sb_method_schema_t *self)
{
    return self->service;
}

const char *
sb_method_schema_name (const sb_method_schema_t *self)
{
    return self->name;
}

const char *
sb_method_schema_description (const sb_method_schema_t *self)
{
    return self->description;
}

const char *
sb_method_schema_service_version (const sb_method_schema_t *self)
{
    return self->version;
}

const char *
sb_method_schema_service_description (const sb_method_schema_t *self)
{
    return self->service_description;
}

unsigned
sb_method_schema_flags (const sb_method_schema_t *self)
{
    return self->idempotent ? SB_METHOD_IDEMPOTENT : 0;
}

bool
sb_method_schema_idempotent (const sb_method_schema_t *self)
{
    return self->idempotent;
}

int
sb_method_schema_timeout_ms (const sb_method_schema_t *self)
{
    return self->timeout_ms;
}

int
sb_method_schema_cache_ttl_ms (const sb_method_schema_t *self)
{
    return self->cache_ttl_ms;
}

const json_t *
sb_method_schema_request_json (const sb_method_schema_t *self)
{
    return self->request_json;
}

const json_t *
sb_method_schema_reply_json (const sb_method_schema_t *self)
{
    return self->reply_json;
}
