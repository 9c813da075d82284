/*  name.c — the one rule for names on the bus (docs/protocol.md, section 3).

    A name is 1 to 64 characters of [A-Za-z0-9_.-]; a topic, 1 to 255; a
    service name has no '.', which separates it from the method in
    "SERVICE.METHOD" (sb call, REST routes).  Services, methods, groups,
    topics and member names (brokers, hosts, clients) all follow it,
    wherever they are checked: the header codec (name.h's inline form),
    the peer before it sends, the plugin loader, schema files, service
    configuration, `sb` options and the REST bridge's routes.  Checks
    cost one pass over the name and stop at its limit.
*/
#include "internal.h"

/*  The characters of a name (NUL is not one).  */
const bool sb__name_chars [256] = {
    ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true,
    ['_'] = true, ['-'] = true, ['.'] = true
};
/*  The same without '.', for services.  */
const bool sb__service_chars [256] = {
    ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true,
    ['_'] = true, ['-'] = true
};

bool
sb_name_valid (const char *name, sb_name_kind_t kind)
{
    size_t max = sb__name_max (kind);
    size_t len = 0;
    if (!name)
        return false;
    const bool *chars = kind == SB_NAME_SERVICE ? sb__service_chars : sb__name_chars;
    for (const uint8_t *c = (const uint8_t *) name; *c; c++, len++)
        if (!chars [*c] || len >= max)
            return false;
    return len > 0;
}
