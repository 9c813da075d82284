/*  hello.c — the smallest service, shown verbatim in README.md (call.t checks that).  */

#include <switchboard.h>
#include <stdio.h>

static int
hello (sb_request_t *req, const msgpack_object *body, void *state)
{
    char name [64] = "world", text [80];
    if (sb_request_unpack (req, "{s?:s}", "name", name, sizeof name))
        return -1;              /* answered: bad_request "$.name: ..." */
    snprintf (text, sizeof text, "hello, %s", name);
    return sb_reply_pack (req, "s", text);
}

static const sb_method_t methods [] = {
    { "hello", hello, SB_METHOD_IDEMPOTENT }, { NULL, NULL, 0 }
};

SB_SERVICE = { .abi_version = SB_ABI_VERSION, .name = "hello",
               .version = "1.0.0", .methods = methods };
