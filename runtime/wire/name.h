/*  name.h — the one rule for names on the bus, for the runtime's own use.

    The rule itself, sb_name_valid(), is public (include/switchboard.h,
    "Names"); this header adds the form the wire decoder needs, which
    checks a name in place in a frame, where it is not NUL-terminated.
*/
#ifndef SB_NAME_H_INCLUDED
#define SB_NAME_H_INCLUDED

#include "switchboard.h"

/*  The characters of a name, and of a service name (no '.').  */
extern const bool sb__name_chars [256];
extern const bool sb__service_chars [256];

/*  Longest name of this kind: SB_TOPIC_MAX for topics, SB_NAME_MAX for
    the others.  */
static inline size_t
sb__name_max (sb_name_kind_t kind)
{
    return kind == SB_NAME_TOPIC ? SB_TOPIC_MAX : SB_NAME_MAX;
}

/*  sb_name_valid() on `size` bytes that need not end with a NUL.  Inline:
    the header decoder checks every name of every message with it.  */
static inline bool
sb__name_valid_bytes (const void *data, size_t size, sb_name_kind_t kind)
{
    if (!data || size == 0 || size > sb__name_max (kind))
        return false;
    const bool *chars = kind == SB_NAME_SERVICE ? sb__service_chars : sb__name_chars;
    const uint8_t *c = data;
    for (size_t i = 0; i < size; i++)
        if (!chars [c [i]])
            return false;
    return true;
}

#endif
