/*  name.h — the one rule for names on the bus, for the runtime's own use.

    The rule itself, sb_name_valid(), is public (include/switchboard.h,
    "Names"); this header adds the form the wire decoder needs, which
    checks a name in place in a frame, where it is not NUL-terminated.
*/
#ifndef SB_NAME_H_INCLUDED
#define SB_NAME_H_INCLUDED

#include "switchboard.h"

/*  Longest name of this kind: SB_TOPIC_MAX for topics, SB_NAME_MAX for
    the others.  */
size_t sb__name_max (sb_name_kind_t kind);

/*  sb_name_valid() on `size` bytes that need not end with a NUL.  */
bool sb__name_valid_bytes (const void *data, size_t size, sb_name_kind_t kind);

#endif
