/*  path.c — JSON paths and UTF-8 checks, shared by the JSON <-> MessagePack
    conversion (json.c) and schema loading and validation (compile.c,
    schema.c, validate.c): both report where a problem is as a path such as
    $.values[2]["odd key"], and both count or check UTF-8 themselves rather
    than trust their input.  A path lives in a fixed buffer, so building
    one never allocates.
*/
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void
sb__path_init (sb__path_t *path)
{
    strcpy (path->text, "$");
    path->size = 1;
}

static void
s_path_append (sb__path_t *path, const char *piece, size_t piece_size)
{
    if (path->size >= SB__PATH_MAX)
        return;
    if (path->size + piece_size > SB__PATH_MAX) {
        memcpy (path->text + path->size, "...", 4);
        path->size = SB__PATH_MAX;
        return;
    }
    memcpy (path->text + path->size, piece, piece_size);
    path->size += piece_size;
    path->text [path->size] = 0;
}

void
sb__path_index (sb__path_t *path, uint64_t index)
{
    char piece [32];
    int n = snprintf (piece, sizeof piece, "[%" PRIu64 "]", index);
    s_path_append (path, piece, (size_t) n);
}

void
sb__path_key (sb__path_t *path, const char *key, size_t size)
{
    bool plain = size > 0 && size <= 64;
    for (size_t i = 0; plain && i < size; i++) {
        unsigned char c = (unsigned char) key [i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$'
             || (i > 0 && c >= '0' && c <= '9');
    }
    if (plain) {
        s_path_append (path, ".", 1);
        s_path_append (path, key, size);
        return;
    }
    char piece [64 * 4 + 8];
    size_t n = 0;
    piece [n++] = '[';
    piece [n++] = '"';
    for (size_t i = 0; i < size && i < 64; i++) {
        unsigned char c = (unsigned char) key [i];
        if (c == '"' || c == '\\') {
            piece [n++] = '\\';
            piece [n++] = (char) c;
        }
        else
        if (c < 0x20 || c == 0x7f)
            n += (size_t) snprintf (piece + n, 5, "\\x%02x", c);
        else
            piece [n++] = (char) c;
    }
    if (size > 64) {
        memcpy (piece + n, "...", 3);
        n += 3;
    }
    piece [n++] = '"';
    piece [n++] = ']';
    s_path_append (path, piece, n);
}

void
sb__path_cut (sb__path_t *path, size_t size)
{
    path->size = size;
    path->text [size] = 0;
}

size_t
sb__utf8_sequence (const unsigned char *s, size_t n)
{
    unsigned c = s [0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
        cp = c & 0x1f;
    }
    else
    if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
        cp = c & 0x0f;
    }
    else
    if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
        cp = c & 0x07;
    }
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s [i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s [i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int64_t
sb__utf8_count (const char *data, size_t size)
{
    const unsigned char *s = (const unsigned char *) data;
    int64_t count = 0;
    for (size_t i = 0; i < size; count++) {
        if (s [i] < 0x80) {
            i++;
            continue;
        }
        size_t len = sb__utf8_sequence (s + i, size - i);
        if (len == 0)
            return -1;
        i += len;
    }
    return count;
}
