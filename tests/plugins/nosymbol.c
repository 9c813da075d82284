/*  nosymbol.c — a test plugin that exports no `sb_service` descriptor
    (the name is misspelt), so `sb run` must refuse it.  */
#include "switchboard.h"

static int
s_ping (sb_request_t *req, const msgpack_object *body, void *state)
{
    return 0;
}

static const sb_method_t s_methods [] = {
    { "ping", s_ping, 0 },
    { NULL, NULL, 0 }
};

SB_EXPORT const sb_service_t sb_servic = {
    .abi_version = SB_ABI_VERSION, .name = "nosymbol", .version = "1.0.0", .methods = s_methods
};
