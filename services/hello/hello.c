/*  hello.c — the smallest Switchboard service: `sb call hello.greet '"Ada"'`.  */
#include <switchboard.h>
#include <stdio.h>

static int
s_greet (sb_request_t *req, const msgpack_object *body, void *state)
{
    if (body->type != MSGPACK_OBJECT_STR)
        return sb_request_error (req, SB_E_BAD_REQUEST, "send a name, e.g. \"Ada\"");
    char text [100];
    int size = snprintf (text, sizeof text, "hello, %.*s",
                         body->via.str.size > 80 ? 80 : (int) body->via.str.size, body->via.str.ptr);
    msgpack_pack_str_with_body (sb_reply_begin (req), text, size);
    return sb_reply_send (req);
}

static const sb_method_t s_methods [] = { { "greet", s_greet, SB_METHOD_IDEMPOTENT }, { NULL, NULL, 0 } };

SB_SERVICE = { .abi_version = SB_ABI_VERSION, .name = "hello", .version = "1.0.0", .methods = s_methods };
