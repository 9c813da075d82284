/*  format.c — MessagePack bodies read and written from a format string, in
    the spirit of jansson's json_unpack / json_pack, so that a service
    author does not walk msgpack_object trees or drive a packer by hand.

        char title [256];
        int64_t priority = 0;
        sb_unpack (body, &err, "{s:s, s?:I}", "title", title, sizeof title,
                   "priority", &priority);
        sb_pack (pk, &err, "{s:I, s:s, s:[s,s]}", "id", id, "title", title,
                 "tags", "a", "b");

    The format language is in include/switchboard.h ("Bodies by format").
    Both walk the format once, left to right, taking their arguments from
    the va_list in the same order; a value that is absent (an optional key)
    still consumes its arguments, so the argument list always lines up with
    the format.  Unpacking reports the first mismatch with its path
    ("$.tags[1]: expected string, got integer"), as schema validation does;
    a malformed format is a programming error reported as such
    ("format: ..."), never a crash.  Nothing allocates: strings are copied
    into the caller's buffers (bounded) or borrowed with their length.
*/
#include "internal.h"

#include <stdarg.h>
#include <string.h>

#define S_DEPTH_MAX 32

typedef struct {
    const char *fmt;            /* next character of the format */
    va_list ap;
    sb__path_t path;
    sb_error_t *err;
    sb_code_t code;             /* what a mismatch of the data is */
} s_walk_t;

static void
s_skip_space (s_walk_t *w)
{
    while (*w->fmt == ' ' || *w->fmt == '\t' || *w->fmt == '\n' || *w->fmt == ',')
        w->fmt++;
}

static int
s_bad_format (s_walk_t *w, const char *why)
{
    return sb_error_set (w->err, SB_E_INTERNAL, "format: %s at '%.16s'", why, w->fmt);
}

static const char *
s_type_name (const msgpack_object *o)
{
    switch (o->type) {
        case MSGPACK_OBJECT_NIL: return "nil";
        case MSGPACK_OBJECT_BOOLEAN: return "boolean";
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "integer";
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64: return "number";
        case MSGPACK_OBJECT_STR: return "string";
        case MSGPACK_OBJECT_ARRAY: return "array";
        case MSGPACK_OBJECT_MAP: return "map";
        case MSGPACK_OBJECT_BIN: return "binary";
        default: return "extension";
    }
}

static int
s_mismatch (s_walk_t *w, const msgpack_object *o, const char *want)
{
    return sb_error_set (w->err, w->code, "%s: expected %s, got %s",
                         w->path.text, want, s_type_name (o));
}

/*  Integers as int64_t: 0, or -1 when `o` is not one or does not fit.  */
static int
s_int64 (const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t) o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    return -1;
}

static int s_unpack_value (s_walk_t *w, const msgpack_object *o, int depth);

/*  One map, after its '{'.  `o` NULL: consume the arguments only.  */
static int
s_unpack_map (s_walk_t *w, const msgpack_object *o, int depth)
{
    if (o && o->type != MSGPACK_OBJECT_MAP)
        return s_mismatch (w, o, "map");
    size_t matched = 0;
    bool strict = false;
    for (;;) {
        s_skip_space (w);
        if (*w->fmt == '}') {
            w->fmt++;
            break;
        }
        if (*w->fmt == '!') {
            strict = true;
            w->fmt++;
            continue;
        }
        if (*w->fmt != 's')
            return s_bad_format (w, "expected 's' for a key");
        w->fmt++;
        bool optional = *w->fmt == '?';
        if (optional)
            w->fmt++;
        if (*w->fmt != ':')
            return s_bad_format (w, "expected ':' after a key");
        w->fmt++;
        const char *key = va_arg (w->ap, const char *);
        if (!key)
            return s_bad_format (w, "NULL key");
        const msgpack_object *value = NULL;
        size_t key_len = strlen (key);
        for (uint32_t i = 0; o && i < o->via.map.size && !value; i++) {
            const msgpack_object *k = &o->via.map.ptr [i].key;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len
            &&  memcmp (k->via.str.ptr, key, key_len) == 0)
                value = &o->via.map.ptr [i].val;
        }
        size_t mark = w->path.size;
        sb__path_key (&w->path, key, key_len);
        if (o && !value && !optional) {
            sb_error_set (w->err, w->code, "%s: missing", w->path.text);
            return -1;
        }
        matched += value != NULL;
        if (s_unpack_value (w, value, depth + 1))
            return -1;
        sb__path_cut (&w->path, mark);
    }
    if (o && strict && matched != o->via.map.size)
        return sb_error_set (w->err, w->code, "%s: %u keys, %zu expected", w->path.text,
                             (unsigned) o->via.map.size, matched);
    return 0;
}

/*  One array, after its '['.  */
static int
s_unpack_array (s_walk_t *w, const msgpack_object *o, int depth)
{
    if (o && o->type != MSGPACK_OBJECT_ARRAY)
        return s_mismatch (w, o, "array");
    uint32_t index = 0;
    for (;;) {
        s_skip_space (w);
        if (*w->fmt == ']') {
            w->fmt++;
            break;
        }
        if (!*w->fmt)
            return s_bad_format (w, "unclosed '['");
        const msgpack_object *item = o && index < o->via.array.size ? &o->via.array.ptr [index] : NULL;
        size_t mark = w->path.size;
        sb__path_index (&w->path, index);
        if (o && !item)
            return sb_error_set (w->err, w->code, "%s: missing (the array has %u items)",
                                 w->path.text, (unsigned) o->via.array.size);
        if (s_unpack_value (w, item, depth + 1))
            return -1;
        sb__path_cut (&w->path, mark);
        index++;
    }
    if (o && index != o->via.array.size)
        return sb_error_set (w->err, w->code, "%s: %u items, %u expected", w->path.text,
                             (unsigned) o->via.array.size, (unsigned) index);
    return 0;
}

/*  One value of the format into its arguments.  `o` NULL: consume them.  */
static int
s_unpack_value (s_walk_t *w, const msgpack_object *o, int depth)
{
    if (depth > S_DEPTH_MAX)
        return s_bad_format (w, "nested too deep");
    s_skip_space (w);
    char c = *w->fmt++;
    switch (c) {
        case '{':
            return s_unpack_map (w, o, depth);
        case '[':
            return s_unpack_array (w, o, depth);
        case 's': {
            char *buf = va_arg (w->ap, char *);
            size_t size = va_arg (w->ap, size_t);
            if (!o)
                return 0;
            if (o->type != MSGPACK_OBJECT_STR)
                return s_mismatch (w, o, "string");
            if (!buf || o->via.str.size >= size)
                return sb_error_set (w->err, w->code, "%s: longer than %zu bytes", w->path.text,
                                     size ? size - 1 : 0);
            if (memchr (o->via.str.ptr, 0, o->via.str.size))
                return sb_error_set (w->err, w->code, "%s: contains a NUL byte", w->path.text);
            memcpy (buf, o->via.str.ptr, o->via.str.size);
            buf [o->via.str.size] = 0;
            return 0;
        }
        case 'S': {
            const char **ptr = va_arg (w->ap, const char **);
            size_t *len = va_arg (w->ap, size_t *);
            if (!o)
                return 0;
            if (o->type != MSGPACK_OBJECT_STR)
                return s_mismatch (w, o, "string");
            *ptr = o->via.str.ptr;
            *len = o->via.str.size;
            return 0;
        }
        case 'i': {
            int *out = va_arg (w->ap, int *);
            int64_t v;
            if (!o)
                return 0;
            if (s_int64 (o, &v) || v < INT32_MIN || v > INT32_MAX)
                return s_mismatch (w, o, "integer (32 bits)");
            *out = (int) v;
            return 0;
        }
        case 'I': {
            int64_t *out = va_arg (w->ap, int64_t *);
            if (o && s_int64 (o, out))
                return s_mismatch (w, o, "integer");
            return 0;
        }
        case 'f': {
            double *out = va_arg (w->ap, double *);
            if (!o)
                return 0;
            int64_t v;
            if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
                *out = o->via.f64;
            else if (s_int64 (o, &v) == 0)
                *out = (double) v;
            else
                return s_mismatch (w, o, "number");
            return 0;
        }
        case 'b': {
            bool *out = va_arg (w->ap, bool *);
            if (!o)
                return 0;
            if (o->type != MSGPACK_OBJECT_BOOLEAN)
                return s_mismatch (w, o, "boolean");
            *out = o->via.boolean;
            return 0;
        }
        case 'n':
            if (o && o->type != MSGPACK_OBJECT_NIL)
                return s_mismatch (w, o, "nil");
            return 0;
        case 'o': {
            const msgpack_object **out = va_arg (w->ap, const msgpack_object **);
            if (o)
                *out = o;
            return 0;
        }
        default:
            w->fmt--;
            return s_bad_format (w, "unknown conversion");
    }
}

int
sb_vunpack (const msgpack_object *obj, sb_error_t *err, const char *fmt, va_list ap)
{
    if (!obj || !fmt)
        return sb_error_set (err, SB_E_INTERNAL, "format: NULL body or format");
    /*  A dry pass first (no data: arguments consumed, nothing written), so
        that a malformed format never writes through arguments it has
        misread, whatever the data.  */
    int rc = -1;
    for (int pass = 0; pass < 2; pass++) {
        s_walk_t w = { .fmt = fmt, .err = err, .code = SB_E_BAD_REQUEST };
        va_copy (w.ap, ap);
        sb__path_init (&w.path);
        rc = s_unpack_value (&w, pass ? obj : NULL, 0);
        if (rc == 0) {
            s_skip_space (&w);
            if (*w.fmt)
                rc = s_bad_format (&w, "text after the value");
        }
        va_end (w.ap);
        if (rc)
            break;
    }
    return rc;
}

int
sb_unpack (const msgpack_object *obj, sb_error_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int rc = sb_vunpack (obj, err, fmt, ap);
    va_end (ap);
    return rc;
}

/*  --------------------------------------------------------------------
    Packing.  */

/*  Items of the map or array that starts at fmt (after its opening
    bracket): commas at its own depth, plus one unless it is empty.  */
static int
s_count_items (const char *fmt, uint32_t *count)
{
    int depth = 0;
    bool any = false;
    uint32_t n = 0;
    for (const char *p = fmt; *p; p++) {
        if (*p == '{' || *p == '[') {
            depth++;
            any = true;
        }
        else if (*p == '}' || *p == ']') {
            if (depth == 0) {
                *count = any ? n + 1 : 0;
                return 0;
            }
            depth--;
        }
        else if (*p == ',' && depth == 0)
            n++;
        else if (*p != ' ' && *p != '\t' && *p != '\n')
            any = true;
    }
    return -1;
}

static int s_pack_value (s_walk_t *w, msgpack_packer *pk, int depth);

static int
s_pack_container (s_walk_t *w, msgpack_packer *pk, int depth, bool map)
{
    uint32_t count;
    if (s_count_items (w->fmt, &count))
        return s_bad_format (w, map ? "unclosed '{'" : "unclosed '['");
    if (map)
        msgpack_pack_map (pk, count);
    else
        msgpack_pack_array (pk, count);
    for (uint32_t i = 0; i < count; i++) {
        s_skip_space (w);
        if (map) {
            if (w->fmt [0] != 's' || w->fmt [1] != ':')
                return s_bad_format (w, "expected 's:' for a key");
            w->fmt += 2;
            const char *key = va_arg (w->ap, const char *);
            if (!key)
                return s_bad_format (w, "NULL key");
            msgpack_pack_str_with_body (pk, key, strlen (key));
        }
        if (s_pack_value (w, pk, depth + 1))
            return -1;
    }
    s_skip_space (w);
    if (*w->fmt != (map ? '}' : ']'))
        return s_bad_format (w, map ? "expected '}'" : "expected ']'");
    w->fmt++;
    return 0;
}

static int
s_pack_value (s_walk_t *w, msgpack_packer *pk, int depth)
{
    if (depth > S_DEPTH_MAX)
        return s_bad_format (w, "nested too deep");
    s_skip_space (w);
    char c = *w->fmt++;
    switch (c) {
        case '{':
            return s_pack_container (w, pk, depth, true);
        case '[':
            return s_pack_container (w, pk, depth, false);
        case 's': {
            const char *s = va_arg (w->ap, const char *);
            if (s)
                msgpack_pack_str_with_body (pk, s, strlen (s));
            else
                msgpack_pack_nil (pk);
            return 0;
        }
        case 'S': {
            const char *s = va_arg (w->ap, const char *);
            size_t len = va_arg (w->ap, size_t);
            if (!s && len)
                return s_bad_format (w, "NULL string with a length");
            msgpack_pack_str_with_body (pk, s ? s : "", len);
            return 0;
        }
        case 'i':
            msgpack_pack_int64 (pk, va_arg (w->ap, int));
            return 0;
        case 'I':
            msgpack_pack_int64 (pk, va_arg (w->ap, int64_t));
            return 0;
        case 'f':
            msgpack_pack_double (pk, va_arg (w->ap, double));
            return 0;
        case 'b':
            if (va_arg (w->ap, int))
                msgpack_pack_true (pk);
            else
                msgpack_pack_false (pk);
            return 0;
        case 'n':
            msgpack_pack_nil (pk);
            return 0;
        case 'o': {
            const msgpack_object *o = va_arg (w->ap, const msgpack_object *);
            if (o)
                msgpack_pack_object (pk, *o);
            else
                msgpack_pack_nil (pk);
            return 0;
        }
        default:
            w->fmt--;
            return s_bad_format (w, "unknown conversion");
    }
}

/*  The syntax of a pack format, checked before any argument is read:
    0, or -1 with err.  */
static int
s_pack_syntax (s_walk_t *w, int depth)
{
    if (depth > S_DEPTH_MAX)
        return s_bad_format (w, "nested too deep");
    s_skip_space (w);
    char c = *w->fmt++;
    if (c == '{' || c == '[') {
        for (;;) {
            s_skip_space (w);
            if (*w->fmt == (c == '{' ? '}' : ']')) {
                w->fmt++;
                return 0;
            }
            if (!*w->fmt)
                return s_bad_format (w, c == '{' ? "unclosed '{'" : "unclosed '['");
            if (c == '{') {
                if (w->fmt [0] != 's' || w->fmt [1] != ':')
                    return s_bad_format (w, "expected 's:' for a key");
                w->fmt += 2;
            }
            if (s_pack_syntax (w, depth + 1))
                return -1;
        }
    }
    if (c && strchr ("sSiIfbno", c))
        return 0;
    w->fmt--;
    return s_bad_format (w, "unknown conversion");
}

int
sb_vpack (msgpack_packer *pk, sb_error_t *err, const char *fmt, va_list ap)
{
    if (!pk || !fmt)
        return sb_error_set (err, SB_E_INTERNAL, "format: NULL packer or format");
    s_walk_t check = { .fmt = fmt, .err = err, .code = SB_E_INTERNAL };
    if (s_pack_syntax (&check, 0))
        return -1;
    s_skip_space (&check);
    if (*check.fmt)
        return s_bad_format (&check, "text after the value");
    s_walk_t w = { .fmt = fmt, .err = err, .code = SB_E_INTERNAL };
    va_copy (w.ap, ap);
    int rc = s_pack_value (&w, pk, 0);
    va_end (w.ap);
    return rc;
}

int
sb_pack (msgpack_packer *pk, sb_error_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start (ap, fmt);
    int rc = sb_vpack (pk, err, fmt, ap);
    va_end (ap);
    return rc;
}

/*  --------------------------------------------------------------------
    Bodies of calls and events given by options or a format.  */

int
sb__body_make (sb__body_t *self, const sb_call_options_t *options, const char *fmt, va_list ap,
               sb_error_t *err)
{
    msgpack_sbuffer_init (&self->buffer);
    if (!fmt) {
        self->data = options ? options->body : NULL;
        self->size = options && options->body ? options->body_size : 0;
        return 0;
    }
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->buffer, msgpack_sbuffer_write);
    if (sb_vpack (&pk, err, fmt, ap))
        return -1;
    self->data = self->buffer.data;
    self->size = self->buffer.size;
    return 0;
}

void
sb__body_free (sb__body_t *self)
{
    msgpack_sbuffer_destroy (&self->buffer);
}
