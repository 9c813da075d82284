/*  body.c — decoding a body: one MessagePack object, checked first.

    Bodies come from other members and from brokers, so they are never
    trusted: sb_wire_check pre-scans the bytes (declared sizes within the
    buffer, bounded nesting, one pass, no allocation) before msgpack-c is
    allowed to allocate anything for them.  The decoded object borrows
    from the body bytes and from a zone, as msgpack-c's zero-copy unpacker
    does.  Every reader of a body (replies, events, requests, sys.keys
    answers) decodes through here.
*/
#include "internal.h"

#include <string.h>

int
sb_wire_decode (const void *data, size_t size, msgpack_unpacked *unpacked, msgpack_object *obj)
{
    /*  The same decoder as sb_wire_decode_zone, into the unpacked's own
        zone, so that the object lives as long as `unpacked`.  */
    if (!unpacked->zone)
        unpacked->zone = msgpack_zone_new (MSGPACK_ZONE_CHUNK_SIZE);
    if (!unpacked->zone || sb_wire_decode_zone (data, size, unpacked->zone, obj))
        return -1;
    unpacked->data = *obj;
    return 0;
}

int
sb_wire_decode_zone (const void *data, size_t size, msgpack_zone *zone, msgpack_object *obj)
{
    if (size == 0) {
        memset (obj, 0, sizeof *obj);
        obj->type = MSGPACK_OBJECT_NIL;
        return 0;
    }
    if (size > SB_BODY_MAX_DEFAULT || sb_wire_check (data, size, SB_DEPTH_MAX))
        return -1;
    size_t offset = 0;
    if (msgpack_unpack (data, size, &offset, zone, obj) != MSGPACK_UNPACK_SUCCESS
    ||  offset != size)
        return -1;
    return 0;
}
