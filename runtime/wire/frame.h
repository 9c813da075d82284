/*  frame.h — one message as ZeroMQ frames, both ways.

    A message is a header frame and, for a body of more than
    SB_INLINE_MAX bytes, a body frame (docs/protocol.md section 2); a
    smaller body travels inside the header frame as its last field, so
    that most messages cost one frame on every hop.  This is the one
    place that framing is written: a link builds and reads its messages
    here, and so can the broker, which moves frames without copying them
    and patches request ids in place.

    Sending: sb_frame_build makes the frames of a header and a body given
    as bytes (sb_body_t).  A small body is copied into the header frame
    (at most SB_INLINE_MAX bytes); a large one that is exactly the
    contents of a frame goes out as a reference-counted copy of that
    frame (no bytes copied), else as a new frame holding a copy.  The
    caller sends them with sb_frame_send, after any frames of its own (a
    ROUTER's routing id).

    Receiving: sb_frame_recv reads the frames of one message, keeping the
    first two; sb_frame_decode decodes the header and says where the body
    is, whatever the framing: inside the header frame, or all of the
    second.  The body is a view into the received frames, valid until
    they are closed; a caller that keeps it moves the frame it names.

    The frames live in an sb_frames_t, on the caller's stack or in its
    struct: nothing here allocates but the frames themselves.
*/
#ifndef SB_FRAME_H_INCLUDED
#define SB_FRAME_H_INCLUDED

#include "wire/wire.h"
#include <zmq.h>

/*  sb_frame_decode's answer for a message that is not one or two frames,
    or has a body both inline and as a frame: just past the header
    decoder's reasons (sb_wire_reason_t), so that a counter table indexed
    by reason can count it too.  */
#define SB_FRAME_BAD_FRAMES SB_WIRE_REASON_MAX

/*  A body: size bytes at data, held by `frame` (a received frame, the
    header frame for an inline body) or, when frame is NULL, by the
    caller.  size 0: no body.  */
typedef struct {
    zmq_msg_t *frame;
    const uint8_t *data;
    size_t size;
} sb_body_t;

/*  The frames of one message: frames [0] the header frame, frames [1]
    the body frame if any.  count: frames initialised here (closed by
    sb_frame_close); received: frames the message had (sb_frame_recv;
    those past the second were read and dropped).  */
typedef struct {
    zmq_msg_t frames [2];
    int count;
    size_t received;
} sb_frames_t;

/*  Builds the frames of header h and body (NULL or size 0: none) into
    out.  Reads the body only.  0, or -1 (errno ENOMEM) with nothing
    initialised.  */
int sb_frame_build (const sb_header_t *h, const sb_body_t *body, sb_frames_t *out)
    SB_WARN_UNUSED;

/*  Sends the frames on socket, the first with `flags` (ZMQ_DONTWAIT, or
    ZMQ_SNDMORE'd frames of the caller's own before them, as it needs)
    and ZMQ_SNDMORE between them.  0: sent, the frames are consumed
    (count 0).  -1 with errno when the first frame was refused (EAGAIN:
    not connected, or the queue is full): nothing was sent and the frames
    are the caller's to send again or close.  Once the first frame is
    accepted libzmq takes the whole message.  */
int sb_frame_send (sb_frames_t *frames, void *socket, int flags);

/*  Closes the frames still held; safe twice.  */
void sb_frame_close (sb_frames_t *frames);

/*  Reads one message, or the rest of one whose first frames the caller
    read (a ROUTER's routing id), from socket: the first frame with
    `flags`, the rest without waiting (they are already there).  0 with
    in filled (close it with sb_frame_close), or -1 with errno when
    nothing was read (EAGAIN: nothing waiting).  */
int sb_frame_recv (sb_frames_t *in, void *socket, int flags);

/*  Decodes the header frame of `in` into h and points body at the body,
    inline or the second frame (body->frame NULL: none).  Returns
    SB_WIRE_OK, the header decoder's reason, or SB_FRAME_BAD_FRAMES.
    h->body, when set, points into in->frames [0] like body->data.  */
int sb_frame_decode (sb_frames_t *in, sb_header_t *h, sb_body_t *body) SB_WARN_UNUSED;

#endif
