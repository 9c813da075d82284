/*  wrongabi.c — a test plugin built for a future ABI (version 99), which
    this `sb` must refuse.  */
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
    .abi_version = 99, .name = "wrongabi", .version = "1.0.0", .methods = s_methods
};
