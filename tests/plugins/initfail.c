/*  initfail.c — a test plugin whose init() fails with a message, as a
    service does when its database cannot be opened; the host must refuse
    to start and print the message.  Its config key "fail" = "no" lets it
    start, so tests can check that config reaches init().  */
#include "switchboard.h"

#include <string.h>

static int
s_ping (sb_request_t *req, const msgpack_object *body, void *state)
{
    return 0;
}

static int
s_init (sb_actor_t *actor, const sb_config_t *config, void **state, sb_error_t *err)
{
    const char *fail = sb_config_get_default (config, "fail", "yes");
    if (strcmp (fail, "no") != 0)
        return sb_error_set (err, SB_E_INTERNAL, "cannot open database %s",
                             sb_config_get_default (config, "db/path", "/nonexistent/initfail.db"));
    return 0;
}

static const sb_method_t s_methods [] = {
    { "ping", s_ping, SB_METHOD_IDEMPOTENT },
    { NULL, NULL, 0 }
};

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION, .name = "initfail", .version = "1.0.0",
    .methods = s_methods, .init = s_init
};
