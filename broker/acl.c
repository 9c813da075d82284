/*  acl.c — access control (secure brokers only; docs/security.md).

    The ROUTER is a CURVE server (broker/zap).  A peer's certificate is
    looked up once (by the "X-Curve-Key" property of its first message)
    and again after a reload; REQUEST decisions are cached per peer in a
    small table keyed by (service, method), so the hot path costs a
    compare when allowed.
*/
#include "engine.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

/*  Looks the peer's certificate up, once per reload epoch, by the CURVE
    key the ZAP handler attached to the message being handled (and checks
    its User-Id against the certificate's name).  No certificate: the peer
    may do nothing that is checked.  */
static void
s_acl_refresh (engine_t *self, peer_t *p)
{
    if (p->acl_epoch == self->acl_epoch)
        return;
    p->acl_epoch = self->acl_epoch;
    memset (p->acl, 0, sizeof p->acl);
    p->call_any = false;
    const char *hex = zmq_msg_gets (&self->in.frames [0], SB_ZAP_KEY_PROPERTY);
    const char *user = zmq_msg_gets (&self->in.frames [0], "User-Id");
    uint8_t key [SB_KEY_SIZE];
    bool have_key = hex && strlen (hex) == 2 * SB_KEY_SIZE
                 && sodium_hex2bin (key, sizeof key, hex, 2 * SB_KEY_SIZE, NULL, NULL, NULL) == 0;
    if (!p->cert)
        p->cert = malloc (sizeof (sb_cert_t));
    sb_error_t err;
    int rc = -1;
    if (p->cert && have_key)
        rc = sb_zap_lookup_key (self->args->zap, key, p->cert, &err);
    if (rc == 0 && user && strcmp (user, p->cert->name))
        rc = -1;
    if (rc) {
        free (p->cert);
        p->cert = NULL;
        return;
    }
    for (size_t i = 0; i < p->cert->call_count; i++)
        if (!strcmp (p->cert->call [i], "*"))
            p->call_any = true;
}

bool
sb__may_offer (engine_t *self, peer_t *p, const char *service)
{
    s_acl_refresh (self, p);
    return p->cert && sb_cert_may_offer (p->cert, service);
}

/*  Has the peer's certificate the broker role (PEER, DIRECTORY)?  */
bool
sb__is_broker (engine_t *self, peer_t *p)
{
    s_acl_refresh (self, p);
    return sb_cert_is_broker (p->cert);
}

/*  May the peer call service.method?  s (NULL for `sys` or a service
    that does not exist) and method key the per-peer cache.  */
bool
sb__may_call (engine_t *self, peer_t *p, const service_t *s, int method, const sb_header_t *h)
{
    s_acl_refresh (self, p);
    if (!p->cert)
        return false;
    if (p->call_any)
        return true;
    acl_entry_t *entry = NULL;
    uint64_t key = 0;
    if (s) {
        key = s->uid << 8 | (uint64_t) (method + 1);
        entry = &p->acl [(s->uid * 67 + (uint64_t) method) % ACL_CACHE];
        if (entry->key == key)
            return entry->allowed;
    }
    char full [2 * SB_NAME_MAX + 2];
    snprintf (full, sizeof full, "%s.%s", h->service, h->method);
    bool allowed = sb_cert_may_call (p->cert, full);
    if (entry) {
        entry->key = key;
        entry->allowed = allowed;
    }
    return allowed;
}

/*  Answers a REQUEST the caller may not make.  */
void
sb__forbid_call (engine_t *self, peer_t *p, const sb_header_t *h)
{
    self->stats.forbidden++;
    sb__send_error (self, p, h, h->request_id, SB_E_FORBIDDEN, "member '%s' may not call '%s.%s'",
                  p->cert ? p->cert->name : "(no valid certificate)", h->service, h->method);
}
