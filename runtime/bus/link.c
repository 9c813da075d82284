/*  link.c — one session with one broker over one DEALER socket.

    The session state is three timestamps: when we last heard from the
    broker (every valid message counts), when we last sent to it (every
    message counts as a heartbeat), and, while it is not alive, when to
    send the next HELLO.  Before the TCP connection exists a send fails
    with EAGAIN (ZMQ_IMMEDIATE); HELLO is then retried after a short
    pause rather than a whole interval, so a fresh peer is welcomed as
    soon as the broker is reachable.

    With an identity the DEALER is a CURVE client of the broker whose key
    follows the endpoint ("tcp://host:port#KEY"); a broker's ZAP handler
    that refuses us simply never answers, and HELLO keeps being retried.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>

/*  Pause between HELLO attempts while the broker is not even connected.  */
#define S_HELLO_RETRY_MS 50
/*  Bounds on the heartbeat interval a broker may ask for.  */
#define S_INTERVAL_MIN 20
#define S_INTERVAL_MAX 60000

struct sb_link {
    zsock_t *sock;
    void *handle;
    char *endpoint;
    char name [SB_NAME_MAX + 1];
    char broker [SB_NAME_MAX + 1];
    uint32_t id;
    bool alive;
    int interval;
    int64_t last_recv;
    int64_t last_send;
    int64_t hello_at;
    uint64_t bad_frames;
    sb_link_welcome_fn *welcome;
    void *arg;
};

sb_link_t *
sb_link_new (const char *endpoint, const char *name, uint32_t id,
             sb_link_welcome_fn *welcome, void *arg, sb_error_t *err)
{
    return sb_link_new_secure (endpoint, name, id, NULL, welcome, arg, err);
}

sb_link_t *
sb_link_new_secure (const char *endpoint, const char *name, uint32_t id,
                    const sb_identity_t *identity,
                    sb_link_welcome_fn *welcome, void *arg, sb_error_t *err)
{
    if (!endpoint || !*endpoint || strlen (endpoint) > 255) {
        sb_error_set (err, SB_E_BAD_REQUEST, "bad broker endpoint");
        return NULL;
    }
    /*  "ENDPOINT#KEY": the broker's CURVE key travels with its address.  */
    char address [SB_ENDPOINT_MAX];
    uint8_t server_key [SB_KEY_SIZE];
    bool has_key;
    if (sb_identity_parse_endpoint (endpoint, address, server_key, &has_key, err))
        return NULL;
    if (identity && !has_key) {
        sb_error_set (err, SB_E_BAD_REQUEST, "broker endpoint '%s' has no #KEY: a member "
                      "(--keys/--member) needs the broker's public key as ENDPOINT#KEY", address);
        return NULL;
    }
    if (!identity && has_key) {
        sb_error_set (err, SB_E_BAD_REQUEST, "broker endpoint '%s' is secure (#KEY) but no "
                      "identity was given: use --keys DIR --member NAME (or $SB_KEYS, $SB_MEMBER)",
                      address);
        return NULL;
    }
    if (!sb_name_valid (name, SB_NAME_MEMBER)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "bad peer name '%s'", name ? name : "");
        return NULL;
    }
    sb_link_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->sock = zsock_new (ZMQ_DEALER);
    self->endpoint = strdup (endpoint);
    if (!self->sock || !self->endpoint) {
        sb_error_set (err, SB_E_INTERNAL, "cannot create a socket: %s", zmq_strerror (zmq_errno ()));
        sb_link_destroy (&self);
        return NULL;
    }
    self->handle = zsock_resolve (self->sock);
    int64_t maxmsg = SB_BODY_MAX_DEFAULT + SB_HEADER_MAX;
    int zero = 0, one = 1, hwm = SB_LINK_HWM;
    zmq_setsockopt (self->handle, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt (self->handle, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (self->handle, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (self->handle, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->handle, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (identity && sb_identity_curve_client (identity, self->handle, server_key, err)) {
        sb_link_destroy (&self);
        return NULL;
    }
    if (zmq_connect (self->handle, address)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "cannot connect to '%s': %s",
                      address, zmq_strerror (zmq_errno ()));
        sb_link_destroy (&self);
        return NULL;
    }
    strcpy (self->name, name);
    self->id = id;
    self->interval = SB_LINK_INTERVAL_DEFAULT;
    self->welcome = welcome;
    self->arg = arg;
    self->hello_at = zclock_mono ();
    self->last_recv = self->last_send = self->hello_at;
    return self;
}

void
sb_link_destroy (sb_link_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_link_t *self = *self_p;
    if (self->alive) {
        sb_header_t h;
        sb_header_init (&h, SB_CMD_BYE);
        sb_link_send (self, &h, NULL);
    }
    zsock_destroy (&self->sock);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

void *
sb_link_handle (sb_link_t *self)
{
    return self->handle;
}

const char *
sb_link_endpoint (const sb_link_t *self)
{
    return self->endpoint;
}

uint32_t
sb_link_id (const sb_link_t *self)
{
    return self->id;
}

bool
sb_link_alive (const sb_link_t *self)
{
    return self->alive;
}

const char *
sb_link_broker (const sb_link_t *self)
{
    return self->broker;
}

uint64_t
sb_link_bad_frames (const sb_link_t *self)
{
    return self->bad_frames;
}

/*  Frames header and body (wire/frame.h) and sends them without
    waiting.  0, or -1 with errno and nothing sent.  */
static int
s_send (sb_link_t *self, const sb_header_t *header, const sb_body_t *body)
{
    sb_frames_t frames;
    if (sb_frame_build (header, body, &frames))
        return -1;
    if (sb_frame_send (&frames, self->handle, ZMQ_DONTWAIT)) {
        sb_frame_close (&frames);
        return -1;
    }
    self->last_send = zclock_mono ();
    return 0;
}

int
sb_link_send (sb_link_t *self, const sb_header_t *header, zmq_msg_t *body)
{
    size_t size = body ? zmq_msg_size (body) : 0;
    sb_body_t view = { body, size ? zmq_msg_data (body) : NULL, size };
    if (s_send (self, header, &view))
        return -1;
    /*  Sent: the frames hold what they need of the body (a copy, or a
        reference), so it is consumed like a sent frame and the caller's
        close stays harmless.  */
    if (body) {
        zmq_msg_close (body);
        zmq_msg_init (body);
    }
    return 0;
}

int
sb_link_send_bytes (sb_link_t *self, const sb_header_t *header, const void *data, size_t size)
{
    sb_body_t view = { NULL, data, size };
    return s_send (self, header, &view);
}

static int
s_send_control (sb_link_t *self, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_HELLO)
        sb_header_set_name (&h, self->name);
    return sb_link_send (self, &h, NULL);
}

int
sb_link_recv (sb_link_t *self, sb_header_t *header, zmq_msg_t *body)
{
    sb_frames_t in;
    if (sb_frame_recv (&in, self->handle, ZMQ_DONTWAIT))
        return -1;
    sb_body_t view;
    int reason = sb_frame_decode (&in, header, &view);
    /*  The owner gets the body as a frame of its own whatever the
        framing: the body frame moved, or an inline body copied (at most
        SB_INLINE_MAX bytes).  */
    if (reason == SB_WIRE_OK && view.frame == &in.frames [1])
        zmq_msg_move (body, &in.frames [1]);
    else
    if (reason == SB_WIRE_OK && view.frame) {
        zmq_msg_close (body);
        if (zmq_msg_init_size (body, view.size)) {
            zmq_msg_init (body);
            reason = SB_WIRE_MALFORMED;
        }
        else
            memcpy (zmq_msg_data (body), view.data, view.size);
    }
    header->body = NULL;            /* it pointed into the frame */
    sb_frame_close (&in);
    if (reason != SB_WIRE_OK) {
        self->bad_frames++;
        return 0;
    }
    int64_t now = zclock_mono ();
    self->last_recv = now;
    switch (header->command) {
        case SB_CMD_WELCOME:
            if (header->heartbeat_ms)
                self->interval = header->heartbeat_ms < S_INTERVAL_MIN ? S_INTERVAL_MIN
                               : header->heartbeat_ms > S_INTERVAL_MAX ? S_INTERVAL_MAX
                               : (int) header->heartbeat_ms;
            strcpy (self->broker, (header->present & SB_H_NAME) ? header->name : "");
            self->alive = true;
            if (self->welcome)
                self->welcome (self, self->arg);
            return 0;
        case SB_CMD_HEARTBEAT:
            return 0;
        case SB_CMD_BYE:
            self->alive = false;
            self->hello_at = now + self->interval;
            return 0;
        default:
            return 1;
    }
}

void
sb_link_lost (sb_link_t *self, int64_t now)
{
    if (self->alive) {
        self->alive = false;
        self->hello_at = now;
    }
}

void
sb_link_tick (sb_link_t *self, int64_t now)
{
    if (self->alive && now - self->last_recv >= (int64_t) SB_LINK_LIVENESS * self->interval) {
        self->alive = false;
        self->hello_at = now;
    }
    if (!self->alive) {
        if (now >= self->hello_at)
            self->hello_at = s_send_control (self, SB_CMD_HELLO) == 0
                           ? now + self->interval : now + S_HELLO_RETRY_MS;
    }
    else
    if (now - self->last_send >= self->interval) {
        /*  A heartbeat that cannot go out still counts as the attempt:
            silence from the broker will tell, not a busy retry.  */
        if (s_send_control (self, SB_CMD_HEARTBEAT))
            self->last_send = now;
    }
}

int64_t
sb_link_next_tick (const sb_link_t *self)
{
    if (!self->alive)
        return self->hello_at;
    int64_t beat = self->last_send + self->interval;
    int64_t dead = self->last_recv + (int64_t) SB_LINK_LIVENESS * self->interval;
    return beat < dead ? beat : dead;
}
