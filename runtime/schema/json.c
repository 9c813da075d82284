/*  json.c — JSON <-> MessagePack conversion for `sb call` and the REST bridge.

    JSON text is parsed by jansson (duplicate keys refused, trailing garbage
    refused, integers kept as integers) and walked into a msgpack_packer.
    The other way, a msgpack_object is written to JSON by our own small
    emitter rather than through jansson, because jansson can hold neither
    an unsigned 64-bit integer above INT64_MAX nor print a float in its
    shortest round-trip form; both must convert exactly.

    Mapping (the same both ways):

        JSON null, true, false   <->  nil, bool
        JSON integer             <->  int (int64 range; uint64 above INT64_MAX
                                      is printed exactly but cannot come back)
        JSON real                 ->  float64; float32 and float64 print in the
                                      shortest form that reads back to the same
                                      value, always with a '.' or exponent
        JSON string              <->  str (valid UTF-8 only, both ways)
        JSON array / object      <->  array / map (map keys must be str)
        {"$base64": "..."}       <->  bin (standard alphabet with padding)

    A map whose only key is "$base64" would be read back as bin (or
    refused), so converting one to JSON is refused instead of being silently
    inexact.  NaN and infinities have no JSON form and are refused; so is
    ext.  Nesting is bounded by SB_DEPTH_MAX (as on the wire) and input
    text by SB_JSON_MAX.  Errors carry where: "line 1 column 7: ..." for
    JSON syntax, a path such as "$.a[3]" for everything else.
*/
#include "internal.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Largest JSON text accepted: the default body limit.  */
#define SB_JSON_MAX SB_BODY_MAX_DEFAULT

/*  --------------------------------------------------------------------
    JSON -> MessagePack  */

/*  An object that stands for binary data: exactly {"$base64": "..."}.  */
static bool
s_is_base64_object (json_t *value)
{
    return json_is_object (value) && json_object_size (value) == 1
        && json_object_get (value, "$base64") != NULL;
}

static int
s_pack_base64 (json_t *value, msgpack_packer *pk, sb__path_t *path, sb_error_t *err)
{
    json_t *text = json_object_get (value, "$base64");
    sb__path_key (path, "$base64", 7);
    if (!json_is_string (text))
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: expected a base64 string", path->text);
    const char *b64 = json_string_value (text);
    size_t b64_size = json_string_length (text);
    if (b64_size % 4)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: invalid base64 (length is not a "
                             "multiple of 4)", path->text);
    size_t max = b64_size / 4 * 3 + 3;
    unsigned char *bin = malloc (max ? max : 1);
    if (!bin)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    size_t bin_size = 0;
    const char *end = NULL;
    if (sodium_base642bin (bin, max, b64, b64_size, NULL, &bin_size, &end,
                           sodium_base64_VARIANT_ORIGINAL) != 0
    ||  end != b64 + b64_size) {
        free (bin);
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: invalid base64", path->text);
    }
    if (bin_size > UINT32_MAX) {
        free (bin);
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: binary too large", path->text);
    }
    msgpack_pack_bin (pk, bin_size);
    msgpack_pack_bin_body (pk, bin, bin_size);
    free (bin);
    return 0;
}

static int
s_pack_json (json_t *value, msgpack_packer *pk, int depth, sb__path_t *path, sb_error_t *err)
{
    size_t mark = path->size;
    switch (json_typeof (value)) {
        case JSON_NULL:
            msgpack_pack_nil (pk);
            return 0;
        case JSON_TRUE:
            msgpack_pack_true (pk);
            return 0;
        case JSON_FALSE:
            msgpack_pack_false (pk);
            return 0;
        case JSON_INTEGER:
            msgpack_pack_int64 (pk, (int64_t) json_integer_value (value));
            return 0;
        case JSON_REAL:
            msgpack_pack_double (pk, json_real_value (value));
            return 0;
        case JSON_STRING: {
            size_t size = json_string_length (value);
            if (size > UINT32_MAX)
                return sb_error_set (err, SB_E_BAD_REQUEST, "%s: string too long", path->text);
            msgpack_pack_str (pk, size);
            msgpack_pack_str_body (pk, json_string_value (value), size);
            return 0;
        }
        case JSON_ARRAY: {
            if (depth >= SB_DEPTH_MAX)
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: nested deeper than %d levels", path->text, SB_DEPTH_MAX);
            size_t count = json_array_size (value);
            msgpack_pack_array (pk, count);
            for (size_t i = 0; i < count; i++) {
                sb__path_index (path, i);
                if (s_pack_json (json_array_get (value, i), pk, depth + 1, path, err))
                    return -1;
                sb__path_cut (path, mark);
            }
            return 0;
        }
        case JSON_OBJECT: {
            if (s_is_base64_object (value))
                return s_pack_base64 (value, pk, path, err);
            if (depth >= SB_DEPTH_MAX)
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: nested deeper than %d levels", path->text, SB_DEPTH_MAX);
            msgpack_pack_map (pk, json_object_size (value));
            const char *key;
            size_t key_size;
            json_t *member;
            json_object_keylen_foreach (value, key, key_size, member) {
                msgpack_pack_str (pk, key_size);
                msgpack_pack_str_body (pk, key, key_size);
                sb__path_key (path, key, key_size);
                if (s_pack_json (member, pk, depth + 1, path, err))
                    return -1;
                sb__path_cut (path, mark);
            }
            return 0;
        }
    }
    return sb_error_set (err, SB_E_INTERNAL, "%s: unknown JSON type", path->text);
}

int
sb_json_to_msgpack (const char *json, size_t size, msgpack_sbuffer *out, sb_error_t *err)
{
    if (!json || !out)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no JSON text");
    if (size > SB_JSON_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "JSON text of %zu bytes is larger than %d",
                             size, SB_JSON_MAX);
    json_error_t jerr;
    json_t *root = json_loadb (json, size,
                               JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return sb_error_set (err, SB_E_BAD_REQUEST, "line %d column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    sb__path_t path;
    sb__path_init (&path);
    int rc = s_pack_json (root, &pk, 0, &path, err);
    json_decref (root);
    if (rc)
        out->size = start;      /* leave nothing half-written */
    return rc;
}

/*  --------------------------------------------------------------------
    MessagePack -> JSON  */

typedef struct {
    char *data;
    size_t size;
    size_t max;
    bool failed;                /* out of memory */
} text_t;

static void
s_text_put (text_t *text, const char *data, size_t size)
{
    if (text->failed)
        return;
    if (text->size + size + 1 > text->max) {
        size_t max = text->max ? text->max : 256;
        while (max < text->size + size + 1) {
            if (max > SIZE_MAX / 2) {
                text->failed = true;
                return;
            }
            max *= 2;
        }
        char *data_new = realloc (text->data, max);
        if (!data_new) {
            text->failed = true;
            return;
        }
        text->data = data_new;
        text->max = max;
    }
    if (size)
        memcpy (text->data + text->size, data, size);
    text->size += size;
    text->data [text->size] = 0;
}

static void
s_text_putc (text_t *text, char c)
{
    s_text_put (text, &c, 1);
}

/*  Writes a JSON string; -1 (nothing useful written) if not valid UTF-8.  */
static int
s_put_string (text_t *text, const char *data, size_t size)
{
    if (size == 0) {
        s_text_put (text, "\"\"", 2);      /* msgpack-c gives NULL for "" */
        return 0;
    }
    const unsigned char *s = (const unsigned char *) data;
    s_text_putc (text, '"');
    size_t run = 0;             /* start of bytes copied as they are */
    for (size_t i = 0; i < size;) {
        unsigned char c = s [i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = sb__utf8_sequence (s + i, size - i);
            if (len == 0)
                return -1;
            i += len;
            continue;
        }
        s_text_put (text, data + run, i - run);
        char escape [8];
        switch (c) {
            case '"': s_text_put (text, "\\\"", 2); break;
            case '\\': s_text_put (text, "\\\\", 2); break;
            case '\n': s_text_put (text, "\\n", 2); break;
            case '\r': s_text_put (text, "\\r", 2); break;
            case '\t': s_text_put (text, "\\t", 2); break;
            case '\b': s_text_put (text, "\\b", 2); break;
            case '\f': s_text_put (text, "\\f", 2); break;
            default:
                snprintf (escape, sizeof escape, "\\u%04x", c);
                s_text_put (text, escape, 6);
        }
        i++;
        run = i;
    }
    s_text_put (text, data + run, size - run);
    s_text_putc (text, '"');
    return 0;
}

/*  True if `digits` significant digits print value so that it reads back
    (strtod, or strtof for float32) to exactly the same value.  */
static bool
s_real_fits (char *buf, size_t size, double value, bool single, int digits)
{
    snprintf (buf, size, "%.*g", digits, value);
    return single ? strtof (buf, NULL) == (float) value : strtod (buf, NULL) == value;
}

/*  Shortest decimal form that reads back to the same value; always marked
    as a real.  Fitting is monotonic in the digit count (a correctly
    rounded d+1 digit form is never farther than the d digit one), so a
    binary search over 1..9 (float32) or 1..17 (float64) finds it in at
    most five tries.  */
static void
s_put_real (text_t *text, double value, bool single)
{
    char buf [40];
    int lo = 1, hi = single ? 9 : 17;  /* FLT_DECIMAL_DIG, DBL_DECIMAL_DIG (C11) */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s_real_fits (buf, sizeof buf, value, single, mid))
            hi = mid;
        else
            lo = mid + 1;
    }
    s_real_fits (buf, sizeof buf, value, single, lo);
    if (!strpbrk (buf, ".e"))
        strcat (buf, ".0");
    s_text_put (text, buf, strlen (buf));
}

static int
s_put_object (text_t *text, const msgpack_object *obj, int depth, sb__path_t *path, sb_error_t *err)
{
    char buf [32];
    size_t mark = path->size;
    switch (obj->type) {
        case MSGPACK_OBJECT_NIL:
            s_text_put (text, "null", 4);
            return 0;
        case MSGPACK_OBJECT_BOOLEAN:
            if (obj->via.boolean)
                s_text_put (text, "true", 4);
            else
                s_text_put (text, "false", 5);
            return 0;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            s_text_put (text, buf, (size_t) snprintf (buf, sizeof buf, "%" PRIu64, obj->via.u64));
            return 0;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            s_text_put (text, buf, (size_t) snprintf (buf, sizeof buf, "%" PRId64, obj->via.i64));
            return 0;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            if (!isfinite (obj->via.f64))
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: NaN and infinity have no JSON form", path->text);
            s_put_real (text, obj->via.f64, obj->type == MSGPACK_OBJECT_FLOAT32);
            return 0;
        case MSGPACK_OBJECT_STR:
            if (s_put_string (text, obj->via.str.ptr, obj->via.str.size))
                return sb_error_set (err, SB_E_BAD_REQUEST, "%s: string is not valid UTF-8",
                                     path->text);
            return 0;
        case MSGPACK_OBJECT_BIN: {
            size_t b64_max = sodium_base64_ENCODED_LEN (obj->via.bin.size,
                                                        sodium_base64_VARIANT_ORIGINAL);
            char *b64 = malloc (b64_max);
            if (!b64)
                return sb_error_set (err, SB_E_INTERNAL, "out of memory");
            sodium_bin2base64 (b64, b64_max, (const unsigned char *) obj->via.bin.ptr,
                               obj->via.bin.size, sodium_base64_VARIANT_ORIGINAL);
            s_text_put (text, "{\"$base64\":\"", 12);
            s_text_put (text, b64, strlen (b64));
            s_text_put (text, "\"}", 2);
            free (b64);
            return 0;
        }
        case MSGPACK_OBJECT_ARRAY:
            if (depth >= SB_DEPTH_MAX)
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: nested deeper than %d levels", path->text, SB_DEPTH_MAX);
            s_text_putc (text, '[');
            for (uint32_t i = 0; i < obj->via.array.size; i++) {
                if (i)
                    s_text_putc (text, ',');
                sb__path_index (path, i);
                if (s_put_object (text, &obj->via.array.ptr [i], depth + 1, path, err))
                    return -1;
                sb__path_cut (path, mark);
            }
            s_text_putc (text, ']');
            return 0;
        case MSGPACK_OBJECT_MAP: {
            if (depth >= SB_DEPTH_MAX)
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: nested deeper than %d levels", path->text, SB_DEPTH_MAX);
            const msgpack_object_kv *kv = obj->via.map.ptr;
            if (obj->via.map.size == 1 && kv [0].key.type == MSGPACK_OBJECT_STR
            &&  kv [0].key.via.str.size == 7 && memcmp (kv [0].key.via.str.ptr, "$base64", 7) == 0)
                return sb_error_set (err, SB_E_BAD_REQUEST,
                                     "%s: a map whose only key is \"$base64\" is reserved for "
                                     "binary data", path->text);
            s_text_putc (text, '{');
            for (uint32_t i = 0; i < obj->via.map.size; i++) {
                if (kv [i].key.type != MSGPACK_OBJECT_STR)
                    return sb_error_set (err, SB_E_BAD_REQUEST,
                                         "%s: map key %" PRIu32 " is not a string", path->text, i);
                if (i)
                    s_text_putc (text, ',');
                sb__path_key (path, kv [i].key.via.str.ptr, kv [i].key.via.str.size);
                if (s_put_string (text, kv [i].key.via.str.ptr, kv [i].key.via.str.size))
                    return sb_error_set (err, SB_E_BAD_REQUEST, "%s: key is not valid UTF-8",
                                         path->text);
                s_text_putc (text, ':');
                if (s_put_object (text, &kv [i].val, depth + 1, path, err))
                    return -1;
                sb__path_cut (path, mark);
            }
            s_text_putc (text, '}');
            return 0;
        }
        case MSGPACK_OBJECT_EXT:
            return sb_error_set (err, SB_E_BAD_REQUEST, "%s: ext type %d has no JSON form",
                                 path->text, obj->via.ext.type);
    }
    return sb_error_set (err, SB_E_BAD_REQUEST, "%s: unknown MessagePack type %d", path->text,
                         (int) obj->type);
}

char *
sb_msgpack_to_json (const msgpack_object *obj, sb_error_t *err)
{
    if (!obj) {
        sb_error_set (err, SB_E_BAD_REQUEST, "no object");
        return NULL;
    }
    text_t text = { NULL, 0, 0, false };
    sb__path_t path;
    sb__path_init (&path);
    int rc = s_put_object (&text, obj, 0, &path, err);
    if (rc == 0 && text.failed)
        rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
    if (rc) {
        free (text.data);
        return NULL;
    }
    return text.data;
}
