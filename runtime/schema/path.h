/*  path.h — JSON paths and UTF-8 checks for the schema layer (path.c):
    where a conversion or a validation failed, as "$.values[2]", and
    whether bytes are valid UTF-8.  Internal to the runtime.
*/
#ifndef SB_PATH_H_INCLUDED
#define SB_PATH_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

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
