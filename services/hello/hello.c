/*  hello.c — the smallest service, shown verbatim in README.md (call.t checks that).  */

#include <switchboard.h>

static int
hello (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_str_with_body (pk, "hello, world", 12);
    return sb_reply_send (req);
}

static const sb_method_t methods [] = {
    { "hello", hello, SB_METHOD_IDEMPOTENT }, { NULL, NULL, 0 }
};

SB_SERVICE = { .abi_version = SB_ABI_VERSION, .name = "hello",
               .version = "1.0.0", .methods = methods };
