/*  compile.c — compiles a schema of the subset (docs/schemas.md) into a
    tree of sb_schema_node_t: type bits, sorted properties, required
    names, bounds, a regcomp'd pattern.  Anything the subset does not know
    is refused with the file name and the JSON path of the offending
    keyword, so a typo never silently weakens a schema.  Compiling happens
    once, when a file is loaded (schema.c); validate.c walks the result.
*/
#include "internal.h"
#include "node.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const sb_schema_type_t sb__schema_types [SB_SCHEMA_TYPE_COUNT] = {
    { "null", SB_SCHEMA_T_NULL }, { "boolean", SB_SCHEMA_T_BOOLEAN },
    { "integer", SB_SCHEMA_T_INTEGER }, { "number", SB_SCHEMA_T_NUMBER },
    { "string", SB_SCHEMA_T_STRING }, { "array", SB_SCHEMA_T_ARRAY },
    { "object", SB_SCHEMA_T_OBJECT }, { "binary", SB_SCHEMA_T_BINARY },
};

void
sb__schema_node_destroy (sb_schema_node_t **self_p)
{
    sb_schema_node_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->property_count; i++)
        sb__schema_node_destroy (&self->properties [i].schema);
    free (self->properties);
    free (self->required);
    sb__schema_node_destroy (&self->items);
    if (self->has_pattern)
        regfree (&self->pattern);
    free (self);
    *self_p = NULL;
}

int
sb__schema_name_compare (const char *a, size_t a_size, const char *b, size_t b_size)
{
    if (a_size != b_size)
        return a_size < b_size ? -1 : 1;
    return a_size ? memcmp (a, b, a_size) : 0;
}

static int
s_property_compare (const void *a, const void *b)
{
    const sb_schema_property_t *pa = a, *pb = b;
    return sb__schema_name_compare (pa->name, pa->size, pb->name, pb->size);
}

const sb_schema_property_t *
sb__schema_node_property (const sb_schema_node_t *node, const char *name, size_t size)
{
    size_t lo = 0, hi = node->property_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sb_schema_property_t *p = &node->properties [mid];
        int c = sb__schema_name_compare (name, size, p->name, p->size);
        if (c == 0)
            return p;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int
sb__schema_load_error (sb_schema_loader_t *loader, const char *why)
{
    return sb_error_set (loader->err, SB_E_BAD_REQUEST, "%s: %s: %s",
                         loader->file, loader->path.text, why);
}

/*  A non-negative integer keyword into *value.  */
static int
s_load_count (sb_schema_loader_t *loader, json_t *value, int64_t *count)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0)
        return sb__schema_load_error (loader, "expected a non-negative integer");
    *count = json_integer_value (value);
    return 0;
}

static int
s_load_type (sb_schema_loader_t *loader, sb_schema_node_t *node, json_t *value)
{
    size_t count = json_is_array (value) ? json_array_size (value) : 1;
    if (!json_is_string (value) && !(json_is_array (value) && count > 0))
        return sb__schema_load_error (loader, "expected a type name or a non-empty array of them");
    for (size_t i = 0; i < count; i++) {
        json_t *name = json_is_array (value) ? json_array_get (value, i) : value;
        size_t t = 0;
        while (t < SB_SCHEMA_TYPE_COUNT
               && !(json_is_string (name)
                    && strcmp (json_string_value (name), sb__schema_types [t].name) == 0))
            t++;
        if (t == SB_SCHEMA_TYPE_COUNT)
            return sb__schema_load_error (loader, "unknown type (expected null, boolean, integer, "
                                                  "number, string, array, object or binary)");
        node->types |= sb__schema_types [t].bit;
    }
    return 0;
}

static int
s_load_properties (sb_schema_loader_t *loader, sb_schema_node_t *node, json_t *value, int depth)
{
    if (!json_is_object (value))
        return sb__schema_load_error (loader, "expected an object of schemas");
    size_t count = json_object_size (value);
    node->properties = calloc (count ? count : 1, sizeof (sb_schema_property_t));
    if (!node->properties)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    size_t mark = loader->path.size;
    const char *key;
    size_t key_size;
    json_t *member;
    json_object_keylen_foreach (value, key, key_size, member) {
        sb__path_key (&loader->path, key, key_size);
        sb_schema_property_t *p = &node->properties [node->property_count];
        p->name = key;
        p->size = key_size;
        p->schema = sb__schema_node_compile (loader, member, depth + 1);
        if (!p->schema)
            return -1;
        node->property_count++;
        sb__path_cut (&loader->path, mark);
    }
    qsort (node->properties, node->property_count, sizeof (sb_schema_property_t),
           s_property_compare);
    return 0;
}

static int
s_load_required (sb_schema_loader_t *loader, sb_schema_node_t *node, json_t *value)
{
    if (!json_is_array (value))
        return sb__schema_load_error (loader, "expected an array of property names");
    size_t count = json_array_size (value);
    node->required = calloc (count ? count : 1, sizeof (sb_schema_property_t));
    if (!node->required)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *name = json_array_get (value, i);
        if (!json_is_string (name)) {
            sb__path_index (&loader->path, i);
            return sb__schema_load_error (loader, "expected a property name");
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
s_load_pattern (sb_schema_loader_t *loader, sb_schema_node_t *node, json_t *value)
{
    if (!json_is_string (value) || strlen (json_string_value (value)) != json_string_length (value))
        return sb__schema_load_error (loader, "expected a regular expression (POSIX ERE) string");
    if (!s_pattern_affordable (json_string_value (value)))
        return sb__schema_load_error (loader, "pattern too costly (longer than 1024 characters, or "
                                              "repetition counts multiplying past 10000)");
    int rc = regcomp (&node->pattern, json_string_value (value), REG_EXTENDED | REG_NOSUB);
    if (rc) {
        char why [128], text [200];
        regerror (rc, &node->pattern, why, sizeof why);
        snprintf (text, sizeof text, "invalid regular expression: %s", why);
        return sb__schema_load_error (loader, text);
    }
    node->has_pattern = true;
    node->pattern_text = json_string_value (value);
    return 0;
}

sb_schema_node_t *
sb__schema_node_compile (sb_schema_loader_t *loader, json_t *schema, int depth)
{
    if (!json_is_object (schema)) {
        sb__schema_load_error (loader, "expected a schema object");
        return NULL;
    }
    if (depth >= SB_SCHEMA_DEPTH_MAX) {
        sb__schema_load_error (loader, "schema nested too deep");
        return NULL;
    }
    sb_schema_node_t *node = calloc (1, sizeof (sb_schema_node_t));
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
                rc = sb__schema_load_error (
                    loader, "expected true or false (schemas are not supported here)");
        }
        else
        if (s_is (key, "items")) {
            node->items = sb__schema_node_compile (loader, value, depth + 1);
            rc = node->items ? 0 : -1;
        }
        else
        if (s_is (key, "enum")) {
            if (json_is_array (value) && json_array_size (value) > 0)
                node->enum_values = value;
            else
                rc = sb__schema_load_error (loader, "expected a non-empty array of values");
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
                rc = sb__schema_load_error (loader, "expected a number");
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
                rc = sb__schema_load_error (loader, "expected a string");
        }
        else
        if (!s_is (key, "default") && !s_is (key, "examples"))
            rc = sb__schema_load_error (loader,
                                        "unknown keyword (see docs/schemas.md for the subset)");
        if (rc)
            break;
        sb__path_cut (&loader->path, mark);
    }
    if (rc == 0) {
        if (node->min_length >= 0 && node->max_length >= 0 && node->min_length > node->max_length)
            rc = sb__schema_load_error (loader, "minLength is greater than maxLength");
        else
        if (node->min_items >= 0 && node->max_items >= 0 && node->min_items > node->max_items)
            rc = sb__schema_load_error (loader, "minItems is greater than maxItems");
        else
        if (node->minimum && node->maximum
        &&  json_number_value (node->minimum) > json_number_value (node->maximum))
            rc = sb__schema_load_error (loader, "minimum is greater than maximum");
    }
    if (rc)
        sb__schema_node_destroy (&node);
    return node;
}
