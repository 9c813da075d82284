/*  crashy.c — a test plugin that misbehaves on request, for the host's
    supervision (sb run --isolate) and drain tests:
      pid      answers {"pid": N}: which process serves it
      segv     dies of SIGSEGV, as a bad pointer does
      abort    calls abort() (SIGABRT)
      block    never returns (a handler stuck in a blocking call)
      hog      allocates and touches {"mb": N} megabytes; answers
               internal "allocation refused" when the memory limit says no
*/
#include "switchboard.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
s_pid (sb_request_t *req, const msgpack_object *body, void *state)
{
    msgpack_packer *pk = sb_reply_begin (req);
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "pid", 3);
    msgpack_pack_int64 (pk, (int64_t) getpid ());
    return sb_reply_send (req);
}

/*  The signal a bad pointer gets, raised directly: a real null
    dereference would be caught first by UBSan in a sanitizer build.  */
static int
s_segv (sb_request_t *req, const msgpack_object *body, void *state)
{
    raise (SIGSEGV);
    return -1;
}

static int
s_abort (sb_request_t *req, const msgpack_object *body, void *state)
{
    abort ();
    return 0;
}

static int
s_block (sb_request_t *req, const msgpack_object *body, void *state)
{
    for (;;)
        pause ();
    return 0;
}

static int
s_hog (sb_request_t *req, const msgpack_object *body, void *state)
{
    int64_t mb = 0;
    if (body->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < body->via.map.size; i++) {
            const msgpack_object_kv *kv = &body->via.map.ptr [i];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 2
            &&  memcmp (kv->key.via.str.ptr, "mb", 2) == 0
            &&  kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                mb = (int64_t) kv->val.via.u64;
        }
    if (mb < 1 || mb > 4096)
        return sb_request_error (req, SB_E_BAD_REQUEST, "want {\"mb\": 1..4096}");
    char *block = malloc ((size_t) mb * 1024 * 1024);
    if (!block)
        return sb_request_error (req, SB_E_INTERNAL, "allocation refused");
    memset (block, 1, (size_t) mb * 1024 * 1024);
    free (block);
    msgpack_pack_true (sb_reply_begin (req));
    return sb_reply_send (req);
}

static const sb_method_t s_methods [] = {
    { "pid", s_pid, SB_METHOD_IDEMPOTENT },
    { "segv", s_segv, 0 },
    { "abort", s_abort, 0 },
    { "block", s_block, 0 },
    { "hog", s_hog, 0 },
    { NULL, NULL, 0 }
};

SB_SERVICE = {
    .abi_version = SB_ABI_VERSION, .name = "crashy", .version = "1.0.0",
    .methods = s_methods
};
