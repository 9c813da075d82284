/*  format.h — the runtime's side of bodies by format (format.c): the body
    of a call or event given either as a format and its arguments or as
    raw bytes in sb_call_options_t, built once for every API that takes
    one (sb_call, sb_request_call, sb_actor_publish_pack...).
*/
#ifndef SB_FORMAT_H_INCLUDED
#define SB_FORMAT_H_INCLUDED

#include "switchboard.h"

typedef struct {
    msgpack_sbuffer buffer;     /* holds a packed body */
    const void *data;           /* the body: buffer's, or the options' */
    size_t size;
} sb__body_t;

/*  fmt NULL: options->body (NULL options or body: none); else packs the
    format.  0, or -1 with err for a bad format.  Free it with
    sb__body_free in either case.  */
int sb__body_make (sb__body_t *self, const sb_call_options_t *options, const char *fmt, va_list ap,
                   sb_error_t *err);
void sb__body_free (sb__body_t *self);

#endif
