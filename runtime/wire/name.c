/*  name.c — the one rule for names on the bus (docs/protocol.md, section 3).

    A name is 1 to 64 characters of [A-Za-z0-9_.-]; a topic, 1 to 255; a
    service name has no '.', which separates it from the method in
    "SERVICE.METHOD" (sb call, REST routes).  Services, methods, groups,
    topics and member names (brokers, hosts, clients) all follow it, wherever they are checked: the header codec,
    the peer before it sends, the plugin loader, schema files, service
    configuration, `sb` options and the REST bridge's routes.  Checks
    cost one pass over the name and stop at its limit.
*/
#include "internal.h"

/*  The characters of a name (NUL is not one).  */
static const bool s_name_char [256] = {
    ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true,
    ['_'] = true, ['-'] = true, ['.'] = true
};
/*  The same without '.', for services.  */
static const bool s_service_char [256] = {
    ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true,
    ['_'] = true, ['-'] = true
};

static const bool *
s_chars (sb_name_kind_t kind)
{
    return kind == SB_NAME_SERVICE ? s_service_char : s_name_char;
}

size_t
sb__name_max (sb_name_kind_t kind)
{
    return kind == SB_NAME_TOPIC ? SB_TOPIC_MAX : SB_NAME_MAX;
}

bool
sb__name_valid_bytes (const void *data, size_t size, sb_name_kind_t kind)
{
    if (!data || size == 0 || size > sb__name_max (kind))
        return false;
    const uint8_t *c = data;
    const bool *chars = s_chars (kind);
    for (size_t i = 0; i < size; i++)
        if (!chars [c [i]])
            return false;
    return true;
}

bool
sb_name_valid (const char *name, sb_name_kind_t kind)
{
    size_t max = sb__name_max (kind);
    size_t len = 0;
    if (!name)
        return false;
    const bool *chars = s_chars (kind);
    for (const uint8_t *c = (const uint8_t *) name; *c; c++, len++)
        if (!chars [*c] || len >= max)
            return false;
    return len > 0;
}
