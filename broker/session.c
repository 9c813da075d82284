/*  session.c — the broker's peers: their sessions, heartbeats and sending.

    - Peers are found by routing id (its bytes, in a zhashx).  A peer
      that said HELLO (or was welcomed after READY, SUBSCRIBE, HEARTBEAT)
      gets heartbeats and is declared dead after 3 silent intervals.  A
      peer that only sends REQUEST or PUBLISH is "anonymous": it is
      forgotten when it has been silent for 3 intervals and has no request
      outstanding.
    - A peer that cannot be reached, said BYE or fell silent is "doomed":
      it is destroyed by sb__reap after the batch or the tick, not in the
      middle of a handler that may still hold it.
    - Bodies are never decoded (READY and DIRECTORY aside, which are for
      the broker).  A body of at most SB_INLINE_MAX bytes travels inside
      the header frame: a request keeps the whole received frame (moved,
      not copied) and remembers where its body lies; each send builds one
      frame of the new header and the body bytes (one copy of at most
      4 KiB).  A larger body is a frame of its own, sent on as a
      zmq_msg_copy (reference-counted: no bytes copied).  Whatever is
      received small as a second frame goes out inline.  A request keeps
      its body until sent, an idempotent one until answered (re-dispatch).
      The framing is the runtime's (wire/frame.h), shared with every
      link: the broker and its peers cannot disagree on it.
*/
#include "engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*  --------------------------------------------------------------------
    Sending.  */

void
sb__doom (engine_t *self, peer_t *peer)
{
    peer->doomed = true;
    self->doomed = true;
}

/*  Sends the frames of a message to peer, after its routing id: 0 when
    sent (the frames are consumed), or -1 when the peer is unreachable (it
    is then doomed) or its send queue is full (the frames are untouched). */
int
sb__send_frames (engine_t *self, peer_t *peer, zmq_msg_t *frames, int nframes)
{
    if (zmq_send (self->sock, peer->id, peer->id_size, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (errno == EHOSTUNREACH) {
            self->stats.unreachable++;
            sb__doom (self, peer);
        }
        else
            self->stats.send_failures++;
        return -1;
    }
    /*  Once the routing id is accepted the rest of the message is too.  */
    for (int i = 0; i < nframes; i++)
        zmq_msg_send (&frames [i], self->sock, i + 1 < nframes ? ZMQ_SNDMORE : 0);
    peer->last_sent = self->now;
    return 0;
}

/*  Sends header (+ body) to peer.  The body is only read: a small one is
    copied into the header frame, a large frame goes out as a reference-
    counted copy.  0 when sent, or -1 when the peer is unreachable (it is
    then doomed) or its send queue is full.  */
int
sb__send (engine_t *self, peer_t *peer, const sb_header_t *h, const sb_body_t *body)
{
    if (peer->doomed)
        return -1;
    if (body && body->size == 0)
        body = NULL;
    /*  The whole message is built before the routing id goes: once that is
        accepted the rest must follow.  */
    sb_frames_t out;
    if (sb_frame_build (h, body, &out))
        return -1;
    if (sb__send_frames (self, peer, out.frames, out.count)) {
        sb_frame_close (&out);
        return -1;
    }
    return 0;
}

void
sb__send_simple (engine_t *self, peer_t *peer, sb_cmd_t command)
{
    sb_header_t h;
    sb_header_init (&h, command);
    if (command == SB_CMD_WELCOME) {
        sb_header_set_name (&h, self->args->name);
        h.heartbeat_ms = (uint32_t) self->hb;
    }
    sb__send (self, peer, &h, NULL);
}

/*  Answers a caller's request with an error (unless it asked for no reply). */
void
sb__send_error (engine_t *self, peer_t *caller, const sb_header_t *req, uint64_t request_id,
              sb_code_t code, const char *fmt, ...)
{
    self->stats.errors [code]++;
    if (!caller || (req->flags & SB_F_NO_REPLY))
        return;
    sb_header_t h;
    sb_header_init (&h, SB_CMD_ERROR);
    h.request_id = request_id;
    h.present |= SB_H_REQUEST_ID;
    h.code = code;
    /*  not_found is only ever this broker's own answer, before any
        dispatch: the caller's runtime may try another broker (a broker
        that has just started may not have heard from the service yet).  */
    if (code == SB_E_NOT_FOUND)
        h.flags = SB_F_UNROUTED;
    if (req->present & SB_H_SERVICE)
        sb_header_set_service (&h, req->service);
    if (req->present & SB_H_TRACE) {
        memcpy (h.trace, req->trace, sizeof h.trace);
        h.present |= SB_H_TRACE;
    }
    char text [SB_TEXT_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    sb_header_set_text (&h, text);
    sb__send (self, caller, &h, NULL);
}

/*  --------------------------------------------------------------------
    Peers.  */

/*  The peers table is keyed by routing id bytes, length first: one
    lookup per message, so no hex and no strings (FNV-1a, memcmp).  */
void
sb__peer_key (uint8_t *key, const uint8_t *id, size_t size)
{
    key [0] = (uint8_t) size;
    memcpy (key + 1, id, size);
}

size_t
sb__peer_key_hash (const void *key)
{
    const uint8_t *k = key;
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i <= k [0]; i++)
        hash = (hash ^ k [i]) * 16777619u;
    return hash;
}

int
sb__peer_key_compare (const void *a, const void *b)
{
    const uint8_t *x = a, *y = b;
    return x [0] != y [0] ? 1 : memcmp (x + 1, y + 1, x [0]);
}

peer_t *
sb__peer_new (engine_t *self, const uint8_t *key, const uint8_t *id, size_t size)
{
    peer_t *p = calloc (1, sizeof *p);
    if (!p)
        return NULL;
    memcpy (p->key, key, 1 + (size_t) key [0]);
    memcpy (p->id, id, size);
    p->id_size = size;
    p->last_heard = p->last_sent = self->now;
    zhashx_insert (self->peers, p->key, p);
    return p;
}

/*  Forgets a peer: its workers (section 7.6), subscriptions, and its own
    requests (queued ones are dropped; in-flight ones lose their caller, so
    their answers are dropped when they come).  */
void
sb__peer_destroy (engine_t *self, peer_t *p)
{
    while (p->workers) {
        worker_t *w = p->workers;
        p->workers = w->peer_next;
        sb__worker_remove (self, w);
    }
    while (p->subs) {
        sub_t *sub = p->subs;
        p->subs = sub->peer_next;
        sb__sub_remove (self, sub);
    }
    while (p->calls) {
        req_t *r = p->calls;
        sb__caller_unlink (r);
        if (r->state == REQ_QUEUED) {
            sb__req_list_remove (&r->service->queue, r);
            sb__req_free (self, r);
        }
    }
    sb__remote_free (&p->dir);
    free (p->cert);
    zhashx_delete (self->peers, p->key);
    free (p);
}

/*  Destroys every doomed peer.  */
void
sb__reap (engine_t *self)
{
    if (!self->doomed)
        return;
    self->doomed = false;
    zlistx_t *dead = zlistx_new ();
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers))
        if (p->doomed)
            zlistx_add_end (dead, p);
    for (peer_t *p = zlistx_first (dead); p; p = zlistx_next (dead))
        sb__peer_destroy (self, p);
    zlistx_destroy (&dead);
}

/*  Registers the peer as a session member and answers WELCOME.  */
void
sb__welcome (engine_t *self, peer_t *p, const sb_header_t *h)
{
    p->welcomed = true;
    if (h->present & SB_H_NAME)
        strcpy (p->name, h->name);
    sb__send_simple (self, p, SB_CMD_WELCOME);
}

/*  --------------------------------------------------------------------
    Heartbeats.  */

/*  Heartbeats out, dead peers found.  */
void
sb__peers_tick (engine_t *self)
{
    int64_t dead_after = 3 * (int64_t) self->hb;
    for (peer_t *p = zhashx_first (self->peers); p; p = zhashx_next (self->peers)) {
        int64_t silent = self->now - p->last_heard;
        if (p->welcomed) {
            if (silent >= dead_after)
                sb__doom (self, p);
            else
            if (self->now - p->last_sent >= self->hb)
                sb__send_simple (self, p, SB_CMD_HEARTBEAT);
        }
        else
        if (silent >= dead_after && !p->calls)
            sb__doom (self, p);
    }
}
