/*  body.c — the format API of schema/format.c where a service
    and a client meet the bus: unpacking the request a handler is running,
    replying and publishing with a format.  Failures are answered for the
    author: a request that does not match is refused bad_request with the
    path of the first mismatch, a reply whose format is wrong becomes an
    internal error, so a handler can simply `return -1`.
*/
#include "internal.h"

#include <stdarg.h>

int
sb_request_unpack (sb_request_t *req, const char *fmt, ...)
{
    const msgpack_object *body = sb__request_body (req);
    if (!body)
        return -1;
    /*  No body (nil) reads as an empty map, so that a call without
        arguments meets a format of optional keys.  */
    msgpack_object empty = { .type = MSGPACK_OBJECT_MAP };
    while (fmt && (*fmt == ' ' || *fmt == '\t'))
        fmt++;
    if (body->type == MSGPACK_OBJECT_NIL && fmt && *fmt == '{')
        body = &empty;
    sb_error_t err = { 0 };
    va_list ap;
    va_start (ap, fmt);
    int rc = sb_vunpack (body, &err, fmt, ap);
    va_end (ap);
    if (rc)
        sb_request_error (req, err.code, "%s", err.text);
    return rc;
}

int
sb_reply_pack (sb_request_t *req, const char *fmt, ...)
{
    msgpack_packer *pk = sb_reply_begin (req);
    if (!pk)
        return -1;
    sb_error_t err = { 0 };
    va_list ap;
    va_start (ap, fmt);
    int rc = sb_vpack (pk, &err, fmt, ap);
    va_end (ap);
    if (rc) {
        sb_request_error (req, SB_E_INTERNAL, "reply %s", err.text);
        return -1;
    }
    return sb_reply_send (req);
}

int
sb_actor_publish_pack (sb_actor_t *actor, const char *topic, const char *fmt, ...)
{
    sb__body_t body;
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, NULL, fmt, ap, NULL);
    va_end (ap);
    if (rc == 0)
        rc = sb_actor_publish (actor, topic, body.data, body.size);
    sb__body_free (&body);
    return rc;
}

int
sb_client_publish_pack (sb_client_t *self, const char *topic, const char *fmt, ...)
{
    sb__body_t body;
    va_list ap;
    va_start (ap, fmt);
    int rc = sb__body_make (&body, NULL, fmt, ap, NULL);
    va_end (ap);
    if (rc == 0)
        rc = sb_client_publish (self, topic, body.data, body.size);
    sb__body_free (&body);
    return rc;
}
