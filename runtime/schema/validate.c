/*  validate.c — validates a decoded MessagePack body against a compiled
    schema (node.h), without a JSON round trip.

    The walk goes down the msgpack_object and the node tree together and
    stops at the first violation, reported with its path:
    "$.values[2]: expected number, got string".  As in JSON Schema, a
    keyword applies only to values of its kind (minimum to numbers, items
    to arrays, ...); "type" says which kinds are allowed.  Deviations from
    JSON Schema, all on the side of being stricter (docs/schemas.md):
    "integer" means a MessagePack integer (a float 1.0 is a number, not an
    integer); "binary" is MessagePack bin; minLength/maxLength count code
    points in strings and bytes in binary; enum never matches binary.
*/
#include "internal.h"
#include "node.h"

#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        case MSGPACK_OBJECT_NIL: return SB_SCHEMA_T_NULL;
        case MSGPACK_OBJECT_BOOLEAN: return SB_SCHEMA_T_BOOLEAN;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return SB_SCHEMA_T_INTEGER;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: return SB_SCHEMA_T_NUMBER;
        case MSGPACK_OBJECT_STR: return SB_SCHEMA_T_STRING;
        case MSGPACK_OBJECT_BIN: return SB_SCHEMA_T_BINARY;
        case MSGPACK_OBJECT_ARRAY: return SB_SCHEMA_T_ARRAY;
        case MSGPACK_OBJECT_MAP: return SB_SCHEMA_T_OBJECT;
        default: return 0;
    }
}

static const char *
s_kind_name (unsigned kind)
{
    for (size_t t = 0; t < SB_SCHEMA_TYPE_COUNT; t++)
        if (sb__schema_types [t].bit == kind)
            return sb__schema_types [t].name;
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
                && sb__schema_name_compare (json_string_value (json), json_string_length (json),
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
s_check_number (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value)
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
s_check_length (checker_t *checker, const sb_schema_node_t *node, int64_t length, const char *unit)
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
s_check_string (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value)
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

static int s_check (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value);

static int
s_check_array (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value)
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
s_check_object (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value)
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
        const sb_schema_property_t *name = &node->required [r];
        uint32_t i = 0;
        while (i < count
               && sb__schema_name_compare (kv [i].key.via.str.ptr, kv [i].key.via.str.size,
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
        const sb_schema_property_t *property = sb__schema_node_property (node, key, key_size);
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
s_check (checker_t *checker, const sb_schema_node_t *node, const msgpack_object *value)
{
    unsigned kind = s_kind (value);
    if (node->types) {
        unsigned allowed = node->types;
        if (allowed & SB_SCHEMA_T_NUMBER)
            allowed |= SB_SCHEMA_T_INTEGER;
        if (!(kind & allowed)) {
            char expected [96] = "";
            for (size_t t = 0; t < SB_SCHEMA_TYPE_COUNT; t++)
                if (node->types & sb__schema_types [t].bit) {
                    if (*expected)
                        strcat (expected, " or ");
                    strcat (expected, sb__schema_types [t].name);
                }
            return s_fail (checker, "expected %s, got %s", expected, s_kind_name (kind));
        }
    }
    int rc = 0;
    switch (kind) {
        case SB_SCHEMA_T_INTEGER:
        case SB_SCHEMA_T_NUMBER: rc = s_check_number (checker, node, value); break;
        case SB_SCHEMA_T_STRING: rc = s_check_string (checker, node, value); break;
        case SB_SCHEMA_T_BINARY:
            rc = s_check_length (checker, node, value->via.bin.size, "bytes");
            break;
        case SB_SCHEMA_T_ARRAY: rc = s_check_array (checker, node, value); break;
        case SB_SCHEMA_T_OBJECT: rc = s_check_object (checker, node, value); break;
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

int
sb__schema_node_validate (const sb_schema_node_t *node, const msgpack_object *body, sb_code_t code,
                          const char *prefix, sb_error_t *err)
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
