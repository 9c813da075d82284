/*  disagree.c — a test plugin whose embedded schema says a method is
    idempotent that its flags do not: `sb run` must refuse it at load,
    naming both (tests/integration/validation.t).  */
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

static const char s_schema [] =
    "{\"service\": \"disagree\", \"version\": \"1.0.0\",\n"
    " \"methods\": {\"ping\": {\"idempotent\": true, \"timeout_ms\": 1000}}}\n";

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION, .name = "disagree", .version = "1.0.0",
    .methods = s_methods, .schema = s_schema
};
