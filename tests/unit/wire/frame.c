/*  frame.t — a message as frames and back (runtime/wire/frame.h), over a
    pair of inproc sockets: the body inline up to SB_INLINE_MAX bytes and
    a frame of its own past that, a large body frame shared rather than
    copied, and the wrong shapes refused as the broker counts them.  */
#include "wire/frame.h"
#include "tap.h"

#include <errno.h>

static uint8_t s_bytes [2 * SB_INLINE_MAX];

/*  Sends header h with `size` bytes of s_bytes, built by sb_frame_build,
    and reads it back: the number of frames that went, or -1.  */
static int
s_round_trip (void *out, void *in, const sb_header_t *h, size_t size, sb_frames_t *got)
{
    sb_body_t body = { NULL, s_bytes, size };
    sb_frames_t frames;
    if (sb_frame_build (h, &body, &frames))
        return -1;
    int count = frames.count;
    if (sb_frame_send (&frames, out, ZMQ_DONTWAIT) || frames.count != 0
    ||  sb_frame_recv (got, in, 0))
        return -1;
    return count;
}

int
main (void)
{
    for (size_t i = 0; i < sizeof s_bytes; i++)
        s_bytes [i] = (uint8_t) (i * 7);
    void *context = zmq_ctx_new ();
    void *out = zmq_socket (context, ZMQ_PAIR);
    void *in = zmq_socket (context, ZMQ_PAIR);
    if (zmq_bind (in, "inproc://frame-test") || zmq_connect (out, "inproc://frame-test")) {
        printf ("Bail out! inproc pair: %s\n", zmq_strerror (errno));
        return 1;
    }
    sb_header_t h, d;
    sb_header_init (&h, SB_CMD_REPLY);
    h.request_id = 42;
    h.present |= SB_H_REQUEST_ID;
    sb_frames_t got;
    sb_body_t body;

    tap_ok (s_round_trip (out, in, &h, 0, &got) == 1 && got.received == 1
         && sb_frame_decode (&got, &d, &body) == SB_WIRE_OK && d.request_id == 42
         && body.frame == NULL && body.size == 0,
            "no body: one frame, and no body read back");
    sb_frame_close (&got);

    size_t sizes [] = { 1, 100, SB_INLINE_MAX };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes [0]; i++) {
        tap_ok (s_round_trip (out, in, &h, sizes [i], &got) == 1 && got.received == 1
             && sb_frame_decode (&got, &d, &body) == SB_WIRE_OK && body.frame == &got.frames [0]
             && body.size == sizes [i] && !memcmp (body.data, s_bytes, sizes [i])
             && body.data == d.body,
                "a body of %zu bytes travels inside the header frame", sizes [i]);
        sb_frame_close (&got);
    }
    tap_ok (s_round_trip (out, in, &h, SB_INLINE_MAX + 1, &got) == 2 && got.received == 2
         && sb_frame_decode (&got, &d, &body) == SB_WIRE_OK && body.frame == &got.frames [1]
         && body.size == SB_INLINE_MAX + 1 && !memcmp (body.data, s_bytes, SB_INLINE_MAX + 1)
         && !(d.present & SB_H_BODY),
            "a body of SB_INLINE_MAX + 1 bytes is a frame of its own");
    sb_frame_close (&got);
    tap_ok (got.count == 0, "closing leaves nothing held");
    sb_frame_close (&got);

    /*  A large body that is a whole frame goes out shared.  */
    zmq_msg_t big;
    zmq_msg_init_size (&big, sizeof s_bytes);
    memcpy (zmq_msg_data (&big), s_bytes, sizeof s_bytes);
    sb_body_t view = { &big, zmq_msg_data (&big), zmq_msg_size (&big) };
    sb_frames_t frames;
    tap_ok (sb_frame_build (&h, &view, &frames) == 0 && frames.count == 2
         && zmq_msg_data (&frames.frames [1]) == zmq_msg_data (&big),
            "a large body frame is shared, not copied");
    sb_frame_close (&frames);
    /*  Part of a frame is copied.  */
    view.data = (uint8_t *) zmq_msg_data (&big) + 1;
    view.size = zmq_msg_size (&big) - 1;
    tap_ok (sb_frame_build (&h, &view, &frames) == 0 && frames.count == 2
         && zmq_msg_data (&frames.frames [1]) != zmq_msg_data (&big)
         && !memcmp (zmq_msg_data (&frames.frames [1]), s_bytes + 1, view.size),
            "a large body that is part of a frame is copied");
    sb_frame_close (&frames);
    zmq_msg_close (&big);

    /*  Shapes a peer must not send.  */
    uint8_t header [SB_HEADER_MAX];
    size_t n = sb_header_encode (&h, header);
    zmq_send (out, header, n, ZMQ_SNDMORE);
    zmq_send (out, "a", 1, ZMQ_SNDMORE);
    zmq_send (out, "b", 1, 0);
    tap_ok (sb_frame_recv (&got, in, 0) == 0 && got.received == 3 && got.count == 2
         && sb_frame_decode (&got, &d, &body) == SB_FRAME_BAD_FRAMES,
            "three frames: bad_frames (the third read and dropped)");
    sb_frame_close (&got);
    uint8_t frame [SB_HEADER_MAX + 8];
    n = sb_header_encode_inline (&h, 2, frame);
    frame [n] = 'x';
    frame [n + 1] = 'y';
    zmq_send (out, frame, n + 2, ZMQ_SNDMORE);
    zmq_send (out, "body", 4, 0);
    tap_ok (sb_frame_recv (&got, in, 0) == 0
         && sb_frame_decode (&got, &d, &body) == SB_FRAME_BAD_FRAMES,
            "a body inline and a body frame: bad_frames");
    sb_frame_close (&got);
    zmq_send (out, "\x92\x01\x04", 3, 0);
    tap_ok (sb_frame_recv (&got, in, 0) == 0
         && sb_frame_decode (&got, &d, &body) == SB_WIRE_MALFORMED,
            "a header that does not decode: the decoder's reason");
    sb_frame_close (&got);
    tap_ok (sb_frame_recv (&got, in, ZMQ_DONTWAIT) == -1 && errno == EAGAIN && got.count == 0,
            "nothing waiting: -1 (EAGAIN), nothing held");

    zmq_close (out);
    zmq_close (in);
    zmq_ctx_term (context);
    return tap_done ();
}
