/*  wire.c — header encoder/decoder and the MessagePack pre-scan.

    The header is encoded by writing MessagePack bytes straight into a
    caller's fixed buffer (every message on every hop is encoded, so no
    packer callbacks), and decoded by a small reader that walks the bytes
    directly: a flat map of integer keys needs no allocation, and walking
    it ourselves lets every length be checked against the bytes that are
    really there before anything is copied.  Bodies are left to msgpack-c,
    after sb_wire_check() has proved their declared sizes honest; an
    inline body is only located (pointer and size), never copied here.
*/
#include "internal.h"

#include <stddef.h>
#include <string.h>

/*  --------------------------------------------------------------------
    Reader over an untrusted buffer.  */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} reader_t;

static int
s_take (reader_t *r, size_t n, const uint8_t **out)
{
    if ((size_t) (r->end - r->p) < n)
        return -1;
    *out = r->p;
    r->p += n;
    return 0;
}

static uint64_t
s_be (const uint8_t *b, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | b [i];
    return v;
}

/*  Reads a big-endian length of n bytes.  */
static int
s_len (reader_t *r, int n, uint64_t *len)
{
    const uint8_t *b;
    if (s_take (r, (size_t) n, &b))
        return -1;
    *len = s_be (b, n);
    return 0;
}

/*  Skips one object, recursing at most depth levels.  Every declared
    count is checked against the bytes left: each element takes at least
    one byte, so a count larger than what remains is a lie.  */
static int
s_skip (reader_t *r, int depth)
{
    const uint8_t *b;
    if (depth < 0 || s_take (r, 1, &b))
        return -1;
    uint8_t t = *b;
    uint64_t n = 0, items = 0;
    size_t left;

    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        return 0;                                   /* fixint, nil, bool */
    if ((t & 0xe0) == 0xa0)
        n = t & 0x1f;                               /* fixstr */
    else
    if ((t & 0xf0) == 0x90)
        items = t & 0x0f;                           /* fixarray */
    else
    if ((t & 0xf0) == 0x80)
        items = (uint64_t) (t & 0x0f) * 2;          /* fixmap */
    else
    switch (t) {
        case 0xc4: case 0xd9: if (s_len (r, 1, &n)) return -1; break;   /* bin8, str8 */
        case 0xc5: case 0xda: if (s_len (r, 2, &n)) return -1; break;
        case 0xc6: case 0xdb: if (s_len (r, 4, &n)) return -1; break;
        case 0xcc: case 0xd0: n = 1; break;         /* uint8, int8 */
        case 0xcd: case 0xd1: n = 2; break;
        case 0xca: case 0xce: case 0xd2: n = 4; break;
        case 0xcb: case 0xcf: case 0xd3: n = 8; break;
        case 0xd4: n = 2; break;                    /* fixext: type + data */
        case 0xd5: n = 3; break;
        case 0xd6: n = 5; break;
        case 0xd7: n = 9; break;
        case 0xd8: n = 17; break;
        case 0xc7: if (s_len (r, 1, &n)) return -1; n += 1; break;  /* ext */
        case 0xc8: if (s_len (r, 2, &n)) return -1; n += 1; break;
        case 0xc9: if (s_len (r, 4, &n)) return -1; n += 1; break;
        case 0xdc: if (s_len (r, 2, &items)) return -1; break;
        case 0xdd: if (s_len (r, 4, &items)) return -1; break;
        case 0xde: if (s_len (r, 2, &items)) return -1; items *= 2; break;
        case 0xdf: if (s_len (r, 4, &items)) return -1; items *= 2; break;
        default: return -1;                         /* 0xc1: never used */
    }
    left = (size_t) (r->end - r->p);
    if (n > left || items > left)
        return -1;
    r->p += n;
    for (uint64_t i = 0; i < items; i++)
        if (s_skip (r, depth - 1))
            return -1;
    return 0;
}

int
sb_wire_check (const void *data, size_t size, int max_depth)
{
    if (!data || size == 0)
        return -1;
    reader_t r = { data, (const uint8_t *) data + size };
    if (s_skip (&r, max_depth))
        return -1;
    return r.p == r.end ? 0 : -1;
}

/*  Reads an unsigned integer of any width; negative ints are refused.  */
static int
s_read_uint_wide (reader_t *r, uint64_t *value)
{
    const uint8_t *b;
    if (s_take (r, 1, &b))
        return -1;
    uint8_t t = *b;
    int n;
    if (t <= 0x7f) {
        *value = t;
        return 0;
    }
    switch (t) {
        case 0xcc: n = 1; break;
        case 0xcd: n = 2; break;
        case 0xce: n = 4; break;
        case 0xcf: n = 8; break;
        default: return -1;
    }
    return s_len (r, n, value);
}

/*  The same, the common case inline: every key and most values are
    positive fixints, the byte itself.  */
static inline int
s_read_uint (reader_t *r, uint64_t *value)
{
    if (r->p < r->end && *r->p <= 0x7f) {
        *value = *r->p++;
        return 0;
    }
    return s_read_uint_wide (r, value);
}

/*  Reads a str (want_bin false) or bin (true) header; sets *data, *size.  */
static int
s_read_bytes (reader_t *r, bool want_bin, const uint8_t **data, size_t *size)
{
    const uint8_t *b;
    uint64_t n;
    if (s_take (r, 1, &b))
        return -1;
    uint8_t t = *b;
    if (!want_bin && (t & 0xe0) == 0xa0)
        n = t & 0x1f;
    else
    if ((!want_bin && t == 0xd9) || (want_bin && t == 0xc4)) {
        if (s_len (r, 1, &n))
            return -1;
    }
    else
    if ((!want_bin && t == 0xda) || (want_bin && t == 0xc5)) {
        if (s_len (r, 2, &n))
            return -1;
    }
    else
    if ((!want_bin && t == 0xdb) || (want_bin && t == 0xc6)) {
        if (s_len (r, 4, &n))           /* any width is allowed; s_take bounds it */
            return -1;
    }
    else
        return -1;
    if (s_take (r, (size_t) n, data))
        return -1;
    *size = (size_t) n;
    return 0;
}

/*  Copies a str field into dest (capacity max+1) if it is a valid name:
    checked on the frame's bytes, copied only when good.  */
static int
s_read_name (reader_t *r, char *dest, sb_name_kind_t kind)
{
    const uint8_t *data;
    size_t size;
    if (s_read_bytes (r, false, &data, &size) || !sb__name_valid_bytes (data, size, kind))
        return -1;
    memcpy (dest, data, size);
    dest [size] = 0;
    return 0;
}

/*  Clears a header for decoding: the scalars and the first byte of each
    string field.  Cheaper than zeroing the ~900 bytes of string buffers on
    every message, and equivalent for every reader (strings end at NUL).  */
static void
s_header_clear (sb_header_t *h)
{
    memset (h, 0, offsetof (sb_header_t, service));
    h->service [0] = h->method [0] = h->group [0] = 0;
    h->name [0] = h->topic [0] = h->text [0] = 0;
}

static sb_wire_reason_t s_decode (sb_header_t *h, const void *data, size_t size,
                                   size_t *body_field);

sb_wire_reason_t
sb_header_decode (sb_header_t *h, const void *data, size_t size)
{
    s_header_clear (h);
    if (size > SB_FRAME_HEADER_MAX)
        return SB_WIRE_OVERSIZED;
    size_t body_field = 0;
    sb_wire_reason_t reason = s_decode (h, data, size, &body_field);
    /*  Past SB_HEADER_MAX only an inline body field may take the room.  */
    if (size > SB_HEADER_MAX && size - body_field > SB_HEADER_MAX)
        return SB_WIRE_OVERSIZED;
    return reason;
}

/*  Decodes into a cleared header; *body_field is the size of the inline
    body field (key, tag and bytes) when there is one.  */
static sb_wire_reason_t
s_decode (sb_header_t *h, const void *data, size_t size, size_t *body_field)
{
    if (!data || size == 0)
        return SB_WIRE_MALFORMED;

    reader_t r = { data, (const uint8_t *) data + size };
    const uint8_t *b = r.p++;
    uint64_t pairs;
    if ((*b & 0xf0) == 0x80)
        pairs = *b & 0x0f;
    else
    if (*b == 0xde) {
        if (s_len (&r, 2, &pairs))
            return SB_WIRE_MALFORMED;
    }
    else
        return SB_WIRE_MALFORMED;
    if (pairs * 2 > (uint64_t) (r.end - r.p))
        return SB_WIRE_MALFORMED;

    bool have_version = false, have_command = false;
    for (uint64_t i = 0; i < pairs; i++) {
        uint64_t key, value;
        const uint8_t *bytes;
        size_t len;
        reader_t key_start = r;
        if (s_read_uint (&r, &key)) {
            /*  A key we cannot read as uint is not ours: skip it and its
                value, from the key's first byte.  */
            r = key_start;
            if (s_skip (&r, SB_DEPTH_MAX) || s_skip (&r, SB_DEPTH_MAX))
                return SB_WIRE_MALFORMED;
            continue;
        }
        /*  Remember where the value starts, so a malformed value can be told
            apart from a well-formed value of the wrong type.  */
        reader_t value_start = r;
        int rc = 0;
        switch (key) {
            case SB_K_VERSION:
                rc = s_read_uint (&r, &value);
                if (!rc) {
                    if (value != SB_PROTOCOL_VERSION)
                        return SB_WIRE_BAD_VERSION;
                    h->version = (uint32_t) value;
                    have_version = true;
                }
                break;
            case SB_K_COMMAND:
                rc = s_read_uint (&r, &value);
                if (!rc) {
                    if (value < 1 || value > SB_CMD_MAX)
                        return SB_WIRE_BAD_COMMAND;
                    h->command = (uint32_t) value;
                    have_command = true;
                }
                break;
            case SB_K_REQUEST_ID:
                h->request_id_at = (uint16_t) (r.p - (const uint8_t *) data);
                rc = s_read_uint (&r, &h->request_id);
                break;
            case SB_K_TIMEOUT:
            case SB_K_FLAGS:
            case SB_K_CODE:
            case SB_K_CAPACITY:
            case SB_K_HEARTBEAT:
            case SB_K_HOPS:
            case SB_K_INSTANCE:
                rc = s_read_uint (&r, &value);
                if (!rc && value > UINT32_MAX)
                    rc = -1;
                if (!rc) {
                    uint32_t v = (uint32_t) value;
                    if (key == SB_K_TIMEOUT) h->timeout_ms = v;
                    else if (key == SB_K_FLAGS) h->flags = v;
                    else if (key == SB_K_CODE) h->code = v;
                    else if (key == SB_K_CAPACITY) h->capacity = v;
                    else if (key == SB_K_HEARTBEAT) h->heartbeat_ms = v;
                    else if (key == SB_K_HOPS) h->hops = v;
                    else h->instance = v;
                }
                break;
            case SB_K_SERVICE:
                rc = s_read_name (&r, h->service, SB_NAME_SERVICE);
                break;
            case SB_K_METHOD:
                rc = s_read_name (&r, h->method, SB_NAME_METHOD);
                break;
            case SB_K_GROUP:
                rc = s_read_name (&r, h->group, SB_NAME_GROUP);
                break;
            case SB_K_NAME:
                rc = s_read_name (&r, h->name, SB_NAME_MEMBER);
                break;
            case SB_K_TOPIC:
                rc = s_read_name (&r, h->topic, SB_NAME_TOPIC);
                break;
            case SB_K_TEXT:
                rc = s_read_bytes (&r, false, &bytes, &len);
                if (!rc) {
                    if (len > SB_TEXT_MAX)
                        len = SB_TEXT_MAX;
                    memcpy (h->text, bytes, len);
                    h->text [len] = 0;
                }
                break;
            case SB_K_TRACE:
            case SB_K_SPAN:
                rc = s_read_bytes (&r, true, &bytes, &len);
                if (!rc && len != (key == SB_K_TRACE ? 16u : 8u))
                    rc = -1;
                if (!rc)
                    memcpy (key == SB_K_TRACE ? h->trace : h->span, bytes, len);
                break;
            case SB_K_BODY:
                rc = s_read_bytes (&r, true, &bytes, &len);
                /*  Measured even when its length is wrong, so that a
                    too-long body is a bad field rather than oversized.  */
                if (!rc)
                    *body_field = (size_t) (r.p - key_start.p);
                if (!rc && (len == 0 || len > SB_INLINE_MAX || (h->present & SB_H_BODY)))
                    rc = -1;
                if (!rc) {
                    h->body = bytes;
                    h->body_size = (uint32_t) len;
                }
                break;
            case SB_K_KEY_ID:
                rc = s_read_bytes (&r, true, &bytes, &len);
                if (!rc && (len == 0 || len > SB_KEYID_MAX))
                    rc = -1;
                if (!rc) {
                    memcpy (h->key_id, bytes, len);
                    h->key_id_size = (uint8_t) len;
                }
                break;
            default:
                if (s_skip (&r, SB_DEPTH_MAX))
                    return SB_WIRE_MALFORMED;
                continue;
        }
        if (rc) {
            /*  Wrong type or size for a field we know: if the value is at
                least well-formed MessagePack, say so precisely.  */
            r = value_start;
            return s_skip (&r, SB_DEPTH_MAX) ? SB_WIRE_MALFORMED : SB_WIRE_BAD_FIELD;
        }
        if (key < 32)
            h->present |= 1u << key;
    }
    if (r.p != r.end)
        return SB_WIRE_MALFORMED;
    if (!have_version)
        return SB_WIRE_BAD_VERSION;
    if (!have_command)
        return SB_WIRE_BAD_COMMAND;
    return SB_WIRE_OK;
}

/*  --------------------------------------------------------------------
    Encoder: MessagePack written byte by byte, smallest forms first (the
    same bytes msgpack-c's packer writes).  Field sizes are bounded, so a
    header always fits SB_HEADER_MAX and no write is checked.  */

static uint8_t *
s_put_uint (uint8_t *p, uint64_t v)
{
    if (v < 128)
        *p++ = (uint8_t) v;
    else
    if (v <= UINT8_MAX) {
        *p++ = 0xcc;
        *p++ = (uint8_t) v;
    }
    else
    if (v <= UINT16_MAX) {
        *p++ = 0xcd;
        *p++ = (uint8_t) (v >> 8);
        *p++ = (uint8_t) v;
    }
    else
    if (v <= UINT32_MAX) {
        *p++ = 0xce;
        for (int shift = 24; shift >= 0; shift -= 8)
            *p++ = (uint8_t) (v >> shift);
    }
    else {
        *p++ = 0xcf;
        for (int shift = 56; shift >= 0; shift -= 8)
            *p++ = (uint8_t) (v >> shift);
    }
    return p;
}

/*  The tag of a str (bin false) or bin of len bytes, len < 65536.  */
static uint8_t *
s_put_tag (uint8_t *p, bool bin, size_t len)
{
    if (!bin && len < 32)
        *p++ = (uint8_t) (0xa0 | len);
    else
    if (len <= UINT8_MAX) {
        *p++ = bin ? 0xc4 : 0xd9;
        *p++ = (uint8_t) len;
    }
    else {
        *p++ = bin ? 0xc5 : 0xda;
        *p++ = (uint8_t) (len >> 8);
        *p++ = (uint8_t) len;
    }
    return p;
}

static uint8_t *
s_put_key_uint (uint8_t *p, int key, uint64_t value)
{
    *p++ = (uint8_t) key;
    return s_put_uint (p, value);
}

static uint8_t *
s_put_key_bytes (uint8_t *p, int key, bool bin, const void *value, size_t len)
{
    *p++ = (uint8_t) key;
    p = s_put_tag (p, bin, len);
    memcpy (p, value, len);
    return p + len;
}

static uint8_t *
s_put_key_str (uint8_t *p, int key, const char *value)
{
    return s_put_key_bytes (p, key, false, value, strlen (value));
}

static size_t
s_encode (const sb_header_t *h, size_t body_size, uint8_t *buffer)
{
    /*  Count the pairs first: the map header comes before them.  */
    const uint32_t pr = h->present;
    unsigned pairs = 2 + (body_size > 0);
    pairs += (pr & SB_H_REQUEST_ID) || h->request_id;
    pairs += !!(pr & SB_H_SERVICE);
    pairs += !!(pr & SB_H_METHOD);
    pairs += (pr & SB_H_TIMEOUT) || h->timeout_ms;
    pairs += h->flags != 0;
    pairs += (pr & SB_H_CODE) || h->code;
    pairs += !!h->text [0];
    pairs += (pr & SB_H_CAPACITY) || h->capacity;
    pairs += !!(pr & SB_H_TOPIC);
    pairs += !!(pr & SB_H_GROUP);
    pairs += !!(pr & SB_H_NAME);
    pairs += !!(pr & SB_H_TRACE);
    pairs += !!(pr & SB_H_SPAN);
    pairs += h->key_id_size > 0;
    pairs += h->heartbeat_ms != 0;
    pairs += h->hops != 0;
    pairs += h->instance != 0;

    uint8_t *p = buffer;
    if (pairs < 16)
        *p++ = (uint8_t) (0x80 | pairs);
    else {
        *p++ = 0xde;
        *p++ = 0;
        *p++ = (uint8_t) pairs;
    }
    p = s_put_key_uint (p, SB_K_VERSION, h->version ? h->version : SB_PROTOCOL_VERSION);
    p = s_put_key_uint (p, SB_K_COMMAND, h->command);
    if ((pr & SB_H_REQUEST_ID) || h->request_id)
        p = s_put_key_uint (p, SB_K_REQUEST_ID, h->request_id);
    if (pr & SB_H_SERVICE)
        p = s_put_key_str (p, SB_K_SERVICE, h->service);
    if (pr & SB_H_METHOD)
        p = s_put_key_str (p, SB_K_METHOD, h->method);
    if ((pr & SB_H_TIMEOUT) || h->timeout_ms)
        p = s_put_key_uint (p, SB_K_TIMEOUT, h->timeout_ms);
    if (h->flags)
        p = s_put_key_uint (p, SB_K_FLAGS, h->flags);
    if ((pr & SB_H_CODE) || h->code)
        p = s_put_key_uint (p, SB_K_CODE, h->code);
    if (h->text [0])
        p = s_put_key_str (p, SB_K_TEXT, h->text);
    if ((pr & SB_H_CAPACITY) || h->capacity)
        p = s_put_key_uint (p, SB_K_CAPACITY, h->capacity);
    if (pr & SB_H_TOPIC)
        p = s_put_key_str (p, SB_K_TOPIC, h->topic);
    if (pr & SB_H_GROUP)
        p = s_put_key_str (p, SB_K_GROUP, h->group);
    if (pr & SB_H_NAME)
        p = s_put_key_str (p, SB_K_NAME, h->name);
    if (pr & SB_H_TRACE)
        p = s_put_key_bytes (p, SB_K_TRACE, true, h->trace, 16);
    if (pr & SB_H_SPAN)
        p = s_put_key_bytes (p, SB_K_SPAN, true, h->span, 8);
    if (h->key_id_size)
        p = s_put_key_bytes (p, SB_K_KEY_ID, true, h->key_id, h->key_id_size);
    if (h->heartbeat_ms)
        p = s_put_key_uint (p, SB_K_HEARTBEAT, h->heartbeat_ms);
    if (h->hops)
        p = s_put_key_uint (p, SB_K_HOPS, h->hops);
    if (h->instance)
        p = s_put_key_uint (p, SB_K_INSTANCE, h->instance);
    if (body_size) {
        /*  Last, so that the caller appends the bytes.  */
        *p++ = SB_K_BODY;
        p = s_put_tag (p, true, body_size);
    }
    return (size_t) (p - buffer);
}

size_t
sb_header_encode (const sb_header_t *h, uint8_t *buffer)
{
    return s_encode (h, 0, buffer);
}

size_t
sb_header_encode_inline (const sb_header_t *h, size_t body_size, uint8_t *buffer)
{
    return s_encode (h, body_size, buffer);
}

void
sb_header_init (sb_header_t *h, sb_cmd_t command)
{
    s_header_clear (h);
    h->version = SB_PROTOCOL_VERSION;
    h->command = command;
}

static int
s_set_name (sb_header_t *h, char *dest, sb_name_kind_t kind, uint32_t bit, const char *value)
{
    if (!sb_name_valid (value, kind))
        return -1;
    strcpy (dest, value);
    h->present |= bit;
    return 0;
}

int
sb_header_set_service (sb_header_t *h, const char *v)
{
    return s_set_name (h, h->service, SB_NAME_SERVICE, SB_H_SERVICE, v);
}

int
sb_header_set_method (sb_header_t *h, const char *v)
{
    return s_set_name (h, h->method, SB_NAME_METHOD, SB_H_METHOD, v);
}

int
sb_header_set_topic (sb_header_t *h, const char *v)
{
    return s_set_name (h, h->topic, SB_NAME_TOPIC, SB_H_TOPIC, v);
}

int
sb_header_set_group (sb_header_t *h, const char *v)
{
    return s_set_name (h, h->group, SB_NAME_GROUP, SB_H_GROUP, v);
}

int
sb_header_set_name (sb_header_t *h, const char *v)
{
    return s_set_name (h, h->name, SB_NAME_MEMBER, SB_H_NAME, v);
}

void
sb_header_set_text (sb_header_t *h, const char *text)
{
    /*  Truncate on a UTF-8 boundary so the field stays valid text.  */
    size_t len = strlen (text);
    if (len > SB_TEXT_MAX) {
        len = SB_TEXT_MAX;
        while (len > 0 && ((unsigned char) text [len] & 0xc0) == 0x80)
            len--;
    }
    memcpy (h->text, text, len);
    h->text [len] = 0;
}

const char *
sb_wire_reason_name (sb_wire_reason_t reason)
{
    static const char *names [SB_WIRE_REASON_MAX] = {
        "ok", "malformed", "oversized", "bad_version", "bad_command", "bad_field"
    };
    return reason < SB_WIRE_REASON_MAX ? names [reason] : "unknown";
}
