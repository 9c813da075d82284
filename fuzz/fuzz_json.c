/*  fuzz_json.c — libFuzzer target for the JSON <-> MessagePack converter.

    Each input is tried both ways:

    - as JSON text: if sb_json_to_msgpack accepts it, the result must be
      well-formed MessagePack within the wire's depth limit, must convert
      back to JSON, and that JSON must convert to exactly the same bytes
      (the conversion is exact, so the round trip is a fixed point);
      if it refuses, the error must carry code and text;
    - as MessagePack (after the wire pre-scan, as a broker would): if
      sb_msgpack_to_json accepts it, the JSON must convert back to an
      equal value (float32 compared as float32; uint64 above INT64_MAX
      and keys holding NUL may be refused on the way back, with an error).

    Any broken promise aborts, which libFuzzer and the replay test report.
*/
#include "switchboard.h"
#include "wire/wire.h"

#include <stdlib.h>
#include <string.h>

static void
s_check_error (int rc, const sb_error_t *err)
{
    if (rc == 0)
        return;
    if (err->code == SB_OK || err->text [0] == 0)
        abort ();
}

/*  Equality after a MessagePack -> JSON -> MessagePack trip.  */
static bool
s_same (const msgpack_object *a, const msgpack_object *b)
{
    if (a->type == MSGPACK_OBJECT_FLOAT32)
        return b->type == MSGPACK_OBJECT_FLOAT64 && (float) b->via.f64 == (float) a->via.f64;
    if (a->type != b->type)
        return false;
    switch (a->type) {
        case MSGPACK_OBJECT_NIL:
            return true;
        case MSGPACK_OBJECT_BOOLEAN:
            return a->via.boolean == b->via.boolean;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            return a->via.u64 == b->via.u64;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return a->via.i64 == b->via.i64;
        case MSGPACK_OBJECT_FLOAT64:
            return memcmp (&a->via.f64, &b->via.f64, sizeof (double)) == 0;
        case MSGPACK_OBJECT_STR:
        case MSGPACK_OBJECT_BIN:
            return a->via.str.size == b->via.str.size
                && (a->via.str.size == 0
                    || memcmp (a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0);
        case MSGPACK_OBJECT_ARRAY:
            if (a->via.array.size != b->via.array.size)
                return false;
            for (uint32_t i = 0; i < a->via.array.size; i++)
                if (!s_same (&a->via.array.ptr [i], &b->via.array.ptr [i]))
                    return false;
            return true;
        case MSGPACK_OBJECT_MAP:
            if (a->via.map.size != b->via.map.size)
                return false;
            for (uint32_t i = 0; i < a->via.map.size; i++)
                if (!s_same (&a->via.map.ptr [i].key, &b->via.map.ptr [i].key)
                ||  !s_same (&a->via.map.ptr [i].val, &b->via.map.ptr [i].val))
                    return false;
            return true;
        default:
            return false;
    }
}

static void
s_as_json (const uint8_t *data, size_t size)
{
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init (&first);
    msgpack_sbuffer_init (&second);
    sb_error_t err = { SB_OK, "" };
    int rc = sb_json_to_msgpack ((const char *) data, size, &first, &err);
    s_check_error (rc, &err);
    if (rc == 0) {
        if (sb_wire_check (first.data, first.size, SB_DEPTH_MAX) != 0)
            abort ();
        msgpack_unpacked result;
        msgpack_unpacked_init (&result);
        size_t offset = 0;
        if (msgpack_unpack_next (&result, first.data, first.size, &offset)
                != MSGPACK_UNPACK_SUCCESS || offset != first.size)
            abort ();
        char *json = sb_msgpack_to_json (&result.data, &err);
        if (!json)
            abort ();
        if (sb_json_to_msgpack (json, strlen (json), &second, &err) != 0
        ||  second.size != first.size || memcmp (second.data, first.data, first.size) != 0)
            abort ();
        free (json);
        msgpack_unpacked_destroy (&result);
    }
    msgpack_sbuffer_destroy (&first);
    msgpack_sbuffer_destroy (&second);
}

static void
s_as_msgpack (const uint8_t *data, size_t size)
{
    if (sb_wire_check (data, size, SB_DEPTH_MAX) != 0)
        return;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    if (msgpack_unpack_next (&result, (const char *) data, size, &offset)
            != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy (&result);
        return;
    }
    sb_error_t err = { SB_OK, "" };
    char *json = sb_msgpack_to_json (&result.data, &err);
    s_check_error (json ? 0 : -1, &err);
    if (json) {
        msgpack_sbuffer back;
        msgpack_sbuffer_init (&back);
        int rc = sb_json_to_msgpack (json, strlen (json), &back, &err);
        s_check_error (rc, &err);
        if (rc == 0) {
            msgpack_unpacked again;
            msgpack_unpacked_init (&again);
            size_t again_offset = 0;
            if (msgpack_unpack_next (&again, back.data, back.size, &again_offset)
                    != MSGPACK_UNPACK_SUCCESS
            ||  !s_same (&result.data, &again.data))
                abort ();
            msgpack_unpacked_destroy (&again);
        }
        msgpack_sbuffer_destroy (&back);
        free (json);
    }
    msgpack_unpacked_destroy (&result);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    s_as_json (data, size);
    s_as_msgpack (data, size);
    return 0;
}
