/*  badname.c — a test plugin whose service name has characters a name
    may not have.  */
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

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION, .name = "Bad Name!", .version = "1.0.0", .methods = s_methods
};
