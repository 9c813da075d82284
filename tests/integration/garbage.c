/*  garbage.c — sends a broker what a stranger or a broken peer might:
    frames that are not Switchboard messages at all, malformed and
    oversized headers, wrong versions, unknown commands, too many frames,
    then a well-formed request from a caller that vanishes before the
    answer.  Used by badinput.t, which checks that the broker drops and
    counts each of these and keeps serving.

    usage: garbage ENDPOINT     (exit 0 once everything was sent)
*/
#include "wire/wire.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/*  Sends `count` frames given as (data, size) pairs.  */
static int
s_send (void *socket, int count, const void **frames, const size_t *sizes)
{
    for (int i = 0; i < count; i++)
        if (zmq_send (socket, frames [i], sizes [i], i < count - 1 ? ZMQ_SNDMORE : 0) == -1)
            return -1;
    return 0;
}

static int
s_send1 (void *socket, const void *data, size_t size)
{
    return s_send (socket, 1, &data, &size);
}

int
main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: garbage ENDPOINT\n");
        return 2;
    }
    void *context = zmq_ctx_new ();
    void *socket = zmq_socket (context, ZMQ_DEALER);
    int linger = 2000;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (socket, argv [1]) == -1) {
        fprintf (stderr, "garbage: cannot connect to %s\n", argv [1]);
        return 1;
    }
    int rc = 0;
    rc |= s_send1 (socket, "", 0);                                      /* empty header */
    rc |= s_send1 (socket, "GET / HTTP/1.1\r\n\r\n", 18);               /* not MessagePack */
    rc |= s_send1 (socket, "\x92\x01\x04", 3);                          /* an array, not a map */
    rc |= s_send1 (socket, "\x82\x00\x01", 3);                          /* truncated map */
    rc |= s_send1 (socket, "\xdf\xff\xff\xff\xff\x00\x01", 7);          /* map claiming 4 G pairs */
    rc |= s_send1 (socket, "\x82\x00\x02\x01\x04", 5);                  /* protocol version 2 */
    rc |= s_send1 (socket, "\x82\x00\x01\x01\x63", 5);                  /* command 99 */
    rc |= s_send1 (socket, "\x83\x00\x01\x01\x04\x03\x05", 7);          /* service as an integer */
    static char big [SB_HEADER_MAX + 100];
    memset (big, 0x90, sizeof big);
    rc |= s_send1 (socket, big, sizeof big);                            /* oversized header */

    /*  A valid REQUEST header with three frames, and one whose body claims
        more than it holds.  */
    sb_header_t h;
    uint8_t header [SB_HEADER_MAX];
    sb_header_init (&h, SB_CMD_REQUEST);
    h.request_id = 1;
    h.present |= SB_H_REQUEST_ID;
    sb_header_set_service (&h, "echo");
    sb_header_set_method (&h, "echo");
    size_t size = sb_header_encode (&h, header);
    const void *three [3] = { header, "\xc0", "\xc0" };
    const size_t three_sizes [3] = { size, 1, 1 };
    rc |= s_send (socket, 3, three, three_sizes);
    const void *lying [2] = { header, "\xdd\x7f\xff\xff\xff\x01" };     /* array claiming 2^31 items */
    const size_t lying_sizes [2] = { size, 6 };
    rc |= s_send (socket, 2, lying, lying_sizes);

    /*  A caller that asks for a slow answer and vanishes at once.  */
    sb_header_set_method (&h, "sleep");
    h.request_id = 2;
    h.timeout_ms = 5000;
    h.present |= SB_H_TIMEOUT;
    size = sb_header_encode (&h, header);
    const void *request [2] = { header, "\x81\xa2ms\xcd\x01\xf4" };      /* {"ms": 500} */
    const size_t request_sizes [2] = { size, 7 };
    rc |= s_send (socket, 2, request, request_sizes);

    zmq_close (socket);
    zmq_ctx_term (context);
    return rc ? 1 : 0;
}
