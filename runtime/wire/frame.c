/*  frame.c — a header and a body as ZeroMQ frames, and back (frame.h).

    Building costs one encode into a stack buffer and one allocation
    (zmq_msg_init_size) of the header frame, into which the header and an
    inline body are copied; a large body frame is shared, not copied.
    Reading costs the frames libzmq hands over, moved into the caller's
    sb_frames_t; the body is located, never copied.
*/
#include "internal.h"

#include <errno.h>
#include <string.h>

int
sb_frame_build (const sb_header_t *h, const sb_body_t *body, sb_frames_t *out)
{
    size_t size = body ? body->size : 0;
    size_t inline_size = size <= SB_INLINE_MAX ? size : 0;
    uint8_t header [SB_HEADER_MAX];
    size_t n = sb_header_encode_inline (h, inline_size, header);
    out->count = 0;
    out->received = 0;
    if (zmq_msg_init_size (&out->frames [0], n + inline_size))
        return -1;
    uint8_t *data = zmq_msg_data (&out->frames [0]);
    memcpy (data, header, n);
    if (inline_size)
        memcpy (data + n, body->data, inline_size);
    out->count = 1;
    if (size == 0 || inline_size)
        return 0;
    zmq_msg_t *frame = &out->frames [1];
    if (body->frame && body->data == zmq_msg_data (body->frame) && size == zmq_msg_size (body->frame)) {
        zmq_msg_init (frame);
        zmq_msg_copy (frame, body->frame);
    }
    else {
        if (zmq_msg_init_size (frame, size)) {
            sb_frame_close (out);
            errno = ENOMEM;
            return -1;
        }
        memcpy (zmq_msg_data (frame), body->data, size);
    }
    out->count = 2;
    return 0;
}

int
sb_frame_send (sb_frames_t *frames, void *socket, int flags)
{
    for (int i = 0; i < frames->count; i++) {
        int more = i + 1 < frames->count ? ZMQ_SNDMORE : 0;
        if (zmq_msg_send (&frames->frames [i], socket, (i == 0 ? flags : ZMQ_DONTWAIT) | more) < 0) {
            if (i == 0)
                return -1;
            /*  Not seen with libzmq, which queues a message whole once
                its first frame is in: the rest is dropped.  */
            for (int j = i; j < frames->count; j++)
                zmq_msg_close (&frames->frames [j]);
            break;
        }
    }
    frames->count = 0;
    return 0;
}

void
sb_frame_close (sb_frames_t *frames)
{
    for (int i = 0; i < frames->count; i++)
        zmq_msg_close (&frames->frames [i]);
    frames->count = 0;
}

int
sb_frame_recv (sb_frames_t *in, void *socket, int flags)
{
    in->count = 0;
    in->received = 0;
    zmq_msg_init (&in->frames [0]);
    if (zmq_msg_recv (&in->frames [0], socket, flags) < 0) {
        int saved = errno;
        zmq_msg_close (&in->frames [0]);
        errno = saved;
        return -1;
    }
    in->count = 1;
    in->received = 1;
    bool more = zmq_msg_more (&in->frames [0]);
    if (more) {
        zmq_msg_init (&in->frames [1]);
        in->count = 2;
        if (zmq_msg_recv (&in->frames [1], socket, ZMQ_DONTWAIT) < 0)
            return 0;
        in->received = 2;
        more = zmq_msg_more (&in->frames [1]);
    }
    /*  The rest of a multipart message is already here: drain it.  */
    while (more) {
        zmq_msg_t extra;
        zmq_msg_init (&extra);
        if (zmq_msg_recv (&extra, socket, ZMQ_DONTWAIT) < 0)
            more = false;
        else {
            more = zmq_msg_more (&extra);
            in->received++;
        }
        zmq_msg_close (&extra);
    }
    return 0;
}

int
sb_frame_decode (sb_frames_t *in, sb_header_t *h, sb_body_t *body)
{
    *body = (sb_body_t) { NULL, NULL, 0 };
    if (in->received < 1 || in->received > 2)
        return SB_FRAME_BAD_FRAMES;
    sb_wire_reason_t reason = sb_header_decode (h, zmq_msg_data (&in->frames [0]),
                                                zmq_msg_size (&in->frames [0]));
    if (reason != SB_WIRE_OK)
        return reason;
    if (h->present & SB_H_BODY) {
        if (in->received == 2)
            return SB_FRAME_BAD_FRAMES;
        *body = (sb_body_t) { &in->frames [0], h->body, h->body_size };
    }
    else
    if (in->received == 2)
        *body = (sb_body_t) { &in->frames [1], zmq_msg_data (&in->frames [1]),
                              zmq_msg_size (&in->frames [1]) };
    return SB_WIRE_OK;
}
