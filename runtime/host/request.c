/*  request.c — a request as its handler sees it: answering it (reply,
    reply bytes, error, each once), deferring it, and what it tells of
    itself (service, method, time left, trace id).  Answers go back
    through sb__request_answer, sealed for the caller when the request
    was; requests are recycled through the actor's spares.  The actor
    loop and the handling of incoming requests are in instance.c.
*/
#include "instance_private.h"

#include <stdarg.h>
#include <string.h>

/*  --------------------------------------------------------------------
    Answers.  */

static int s_error (sb_request_t *req, sb_code_t code, const char *text);

/*  Debug mode only: -1 (and the request answered internal) if the reply
    body does not conform to the method's reply schema.  */
static int
s_reply_invalid (sb_request_t *req, const void *data, size_t size)
{
    sb_actor_t *self = req->actor;
    const sb_method_schema_t *schema = self->validate_replies
                                     ? self->schemas [req->method - self->service->methods] : NULL;
    if (!schema)
        return 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = 0;
    sb_error_t err = { 0 };
    if (size && msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS)
        rc = sb_error_set (&err, SB_E_INTERNAL, "reply is not MessagePack");
    else
        rc = sb_method_schema_validate_reply (schema, size ? &unpacked.data : NULL, &err);
    msgpack_unpacked_destroy (&unpacked);
    if (rc)
        s_error (req, SB_E_INTERNAL, err.text);
    return rc;
}

/*  A request as new (all zero, an empty reply buffer), from the spares
    when there is one.  */
sb_request_t *
sb__request_new (sb_actor_t *self)
{
    sb_request_t *req = self->spares;
    if (req) {
        self->spares = req->next_spare;
        self->nspares--;
        msgpack_sbuffer buffer = req->buffer;
        memset (req, 0, sizeof *req);
        req->buffer = buffer;
        msgpack_sbuffer_clear (&req->buffer);
    }
    else {
        req = calloc (1, sizeof *req);
        if (!req)
            return NULL;
        msgpack_sbuffer_init (&req->buffer);
    }
    req->actor = self;
    req->serial = ++self->request_serial;
    msgpack_packer_init (&req->packer, &req->buffer, msgpack_sbuffer_write);
    return req;
}

void
sb__request_free (sb_request_t *req)
{
    sb_actor_t *self = req->actor;
    if (req->deferred_handle)
        zlistx_detach (self->deferred, req->deferred_handle);
    if (self->nspares < S_SPARE_MAX) {
        if (req->buffer.alloc > S_SPARE_BUFFER_MAX) {
            msgpack_sbuffer_destroy (&req->buffer);
            msgpack_sbuffer_init (&req->buffer);
        }
        req->deferred_handle = NULL;
        req->next_spare = self->spares;
        self->spares = req;
        self->nspares++;
        return;
    }
    msgpack_sbuffer_destroy (&req->buffer);
    free (req);
}

static void
s_free_sbuffer (void *data, void *hint)
{
    free (data);
}

/*  Sends REPLY (body from `buffer` when not NULL, moved) or ERROR.  */
void
sb__request_answer (sb_request_t *req, msgpack_sbuffer *buffer, sb_code_t code, const char *text)
{
    if (req->shadow) {
        req->shadow_code = code;
        snprintf (req->shadow_text, sizeof req->shadow_text, "%s", text ? text : "");
        if (code == SB_OK && buffer && buffer != &req->buffer) {
            msgpack_sbuffer_clear (&req->buffer);
            msgpack_sbuffer_write (&req->buffer, buffer->data, buffer->size);
        }
        if (code == SB_OK && !buffer)
            msgpack_sbuffer_clear (&req->buffer);
        return;
    }
    sb_link_t *link = sb_peer_link (req->actor->peer, req->link_id);
    if (!link)
        return;                     /* broker gone: it answers for us */
    sb_header_t h;
    sb_header_init (&h, code ? SB_CMD_ERROR : SB_CMD_REPLY);
    h.request_id = req->id;
    h.present |= SB_H_REQUEST_ID;
    if (req->has_trace) {
        memcpy (h.trace, req->trace, 16);
        h.present |= SB_H_TRACE;
    }
    if (code) {
        h.code = code;
        h.present |= SB_H_CODE;
        sb_header_set_text (&h, text);
        sb_header_set_service (&h, req->actor->service->name);
        sb_link_send (link, &h, NULL);
        return;
    }
    if (req->sealed) {
        /*  Even an empty reply is sealed: the caller requires it.  */
        sb_sealer_t *sealer = sb_peer__sealer (req->actor->peer);
        zmq_msg_t body;
        sb_error_t err;
        bool has = buffer && buffer->size;
        if (sb_sealer_seal (sealer, req->caller_pk, req->nonce, SB_SEAL_NONCE_SIZE, 0,
                            has ? buffer->data : NULL, has ? buffer->size : 0, &body, NULL, &err))
            return;
        h.flags |= SB_F_SEALED;
        memcpy (h.key_id, sb_sealer_key_id (sealer), SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        h.present |= SB_H_KEY_ID;
        if (sb_link_send (link, &h, &body))
            zmq_msg_close (&body);
        return;
    }
    if (buffer && buffer->size <= SB_INLINE_MAX)
        /*  Copied once, straight into the frame; the buffer stays.  */
        sb_link_send_bytes (link, &h, buffer->data, buffer->size);
    else
    if (buffer) {
        /*  A small body is copied, so the buffer stays for the next
            request; a large one is moved.  */
        zmq_msg_t body;
        size_t size = buffer->size;
        if (size <= S_COPY_MAX) {
            if (zmq_msg_init_size (&body, size))
                return;
            memcpy (zmq_msg_data (&body), buffer->data, size);
        }
        else {
            char *data = msgpack_sbuffer_release (buffer);
            if (zmq_msg_init_data (&body, data, size, s_free_sbuffer, NULL)) {
                free (data);
                return;
            }
        }
        sb_link_send (link, &h, &body);
        zmq_msg_close (&body);
    }
    else
        sb_link_send (link, &h, NULL);
}

/*  Common gate of every answer: -1 if the request cannot be answered
    now.  An expired deferred request is freed here (the plugin's late
    answer is the last it will do with it).  */
static int
s_answer_gate (sb_request_t *req)
{
    if (!req) {
        errno = EINVAL;
        return -1;
    }
    if (req->expired) {
        if (!req->in_handler)
            sb__request_free (req);
        errno = ETIMEDOUT;
        return -1;
    }
    if (req->closed) {
        errno = EALREADY;
        return -1;
    }
    return 0;
}

/*  After an answer: a deferred request answered outside its handler is
    done with.  */
static void
s_answered (sb_request_t *req)
{
    req->closed = true;
    if (req->deferred && !req->in_handler)
        sb__request_free (req);
}

static int
s_error (sb_request_t *req, sb_code_t code, const char *text)
{
    if (code < 1 || code > SB_E_CODE_MAX)
        code = SB_E_INTERNAL;
    sb__request_answer (req, NULL, code, text);
    s_answered (req);
    return 0;
}

msgpack_packer *
sb_reply_begin (sb_request_t *req)
{
    if (!req || (req->closed && !req->expired))
        return NULL;
    if (req->begun)
        msgpack_sbuffer_clear (&req->buffer);
    req->begun = true;
    return &req->packer;
}

int
sb_reply_send (sb_request_t *req)
{
    if (s_answer_gate (req))
        return -1;
    if (!req->begun || sb_wire_check (req->buffer.data, req->buffer.size, SB_DEPTH_MAX)) {
        s_error (req, SB_E_INTERNAL, "the handler packed no valid MessagePack reply");
        return -1;
    }
    if (req->buffer.size > SB_BODY_MAX_DEFAULT) {
        s_error (req, SB_E_INTERNAL, "reply too large");
        return -1;
    }
    if (s_reply_invalid (req, req->buffer.data, req->buffer.size))
        return -1;
    sb__request_answer (req, &req->buffer, SB_OK, NULL);
    s_answered (req);
    return 0;
}

int
sb_reply_bytes (sb_request_t *req, const void *data, size_t size)
{
    if (s_answer_gate (req))
        return -1;
    if (size > SB_BODY_MAX_DEFAULT || (size > 0 && (!data || sb_wire_check (data, size, SB_DEPTH_MAX)))) {
        s_error (req, SB_E_INTERNAL, "the handler's reply is not one valid MessagePack object");
        return -1;
    }
    if (s_reply_invalid (req, data, size))
        return -1;
    msgpack_sbuffer_clear (&req->buffer);
    if (size)
        msgpack_sbuffer_write (&req->buffer, data, size);
    sb__request_answer (req, &req->buffer, SB_OK, NULL);
    s_answered (req);
    return 0;
}

int
sb_request_error (sb_request_t *req, sb_code_t code, const char *fmt, ...)
{
    if (s_answer_gate (req))
        return -1;
    char text [SB_TEXT_MAX + 1];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt ? fmt : "", args);
    va_end (args);
    return s_error (req, code, text);
}

const msgpack_object *
sb__request_body (const sb_request_t *req)
{
    return req && req->in_handler ? req->body : NULL;
}

sb_request_t *
sb__request_find (sb_actor_t *actor, const sb_request_t *req, uint64_t serial)
{
    for (sb_request_t *r = zlistx_first (actor->deferred); r; r = zlistx_next (actor->deferred))
        if (r == req && r->serial == serial)
            return r;
    return NULL;
}

sb_request_t *
sb_request_defer (sb_request_t *req)
{
    if (!req || req->closed || req->shadow)
        return NULL;
    req->deferred = true;
    return req;
}

const char *
sb_request_service (const sb_request_t *req)
{
    return req->actor->service->name;
}

const char *
sb_request_method (const sb_request_t *req)
{
    return req->method->name;
}

int64_t
sb_request_remaining_ms (const sb_request_t *req)
{
    if (!req->deadline)
        return INT64_MAX;
    int64_t left = req->deadline - zclock_mono ();
    return left > 0 ? left : 0;
}

const char *
sb_request_trace_id (const sb_request_t *req)
{
    /*  Formatted here rather than per request: few handlers ask.  The
        request is never a const object, the const only promises callers
        that nothing they can see changes.  */
    static const char digits [] = "0123456789abcdef";
    sb_request_t *self = (sb_request_t *) req;
    if (self->has_trace && !self->trace_hex [0]) {
        for (int i = 0; i < 16; i++) {
            self->trace_hex [2 * i] = digits [self->trace [i] >> 4];
            self->trace_hex [2 * i + 1] = digits [self->trace [i] & 15];
        }
        self->trace_hex [32] = 0;
    }
    return self->trace_hex;
}

sb_actor_t *
sb_request_actor (const sb_request_t *req)
{
    return req && !req->shadow ? req->actor : NULL;
}

