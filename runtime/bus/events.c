/*  events.c — a peer's subscriptions and events (peer.h,
    peer_private.h).

    Subscriptions are a list the peer owns; each goes to every live link
    when made, and again to each link at every WELCOME (a broker that
    restarted has forgotten them).  PUBLISH goes out on one live link,
    round robin, sealed for the cluster event key when the peer has one
    (sealer.h).  An event in is opened if sealed, decoded once into the
    peer's zone and handed to every subscription whose prefix matches
    (and whose group is the event's, for a grouped delivery), inside the
    publisher's trace.
*/
#include "internal.h"
#include "peer_private.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>

static bool
s_valid_group (const char *group)
{
    return !group || sb_name_valid (group, SB_NAME_GROUP);
}

static void
s_send_subscribe (sb_link_t *link, const sb_sub_t *sub)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_SUBSCRIBE);
    sb_header_set_topic (&h, sub->prefix);
    if (sub->group [0])
        sb_header_set_group (&h, sub->group);
    sb_link_send (link, &h, NULL);
}

void
sb__peer_resubscribe (sb_peer_t *self, sb_link_t *link)
{
    for (sb_sub_t *sub = zlistx_first (self->subs); sub; sub = zlistx_next (self->subs))
        s_send_subscribe (link, sub);
}

int
sb_peer_subscribe (sb_peer_t *self, const char *prefix, const char *group,
                   sb_event_fn *callback, void *arg)
{
    if (!callback || !sb_name_valid (prefix, SB_NAME_TOPIC) || !s_valid_group (group)) {
        errno = EINVAL;
        return -1;
    }
    sb_sub_t *sub = calloc (1, sizeof *sub);
    if (!sub)
        return -1;
    strcpy (sub->prefix, prefix);
    if (group)
        strcpy (sub->group, group);
    sub->callback = callback;
    sub->arg = arg;
    zlistx_add_end (self->subs, sub);
    for (size_t i = 0; i < self->nlinks; i++)
        if (sb_link_alive (self->links [i]))
            s_send_subscribe (self->links [i], sub);
    return 0;
}

int
sb_peer_publish (sb_peer_t *self, const char *topic, const void *body, size_t size)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_PUBLISH);
    if (sb_header_set_topic (&h, topic)
    ||  size > SB_BODY_MAX_DEFAULT
    ||  (size > 0 && (!body || sb_wire_check (body, size, SB_DEPTH_MAX)))) {
        errno = EINVAL;
        return -1;
    }
    sb__peer_trace_for (self, h.trace);
    h.present |= SB_H_TRACE;
    zmq_msg_t sealed;
    bool seal = self->sealer && sb_sealer_has_events (self->sealer);
    if (seal) {
        sb_error_t err;
        if (sb_sealer_seal_event (self->sealer, topic, body, size, &sealed, &err)) {
            errno = ENOMEM;
            return -1;
        }
        h.flags |= SB_F_SEALED;
        memcpy (h.key_id, sb_sealer_key_id (self->sealer), SB_KEY_SIZE);
        h.key_id_size = SB_KEY_SIZE;
        h.present |= SB_H_KEY_ID;
        body = zmq_msg_data (&sealed);
        size = zmq_msg_size (&sealed);
    }
    int rc = -1;
    for (size_t attempt = 0; attempt < self->nlinks; attempt++) {
        sb_link_t *link = sb__peer_pick_link (self, attempt);
        if (!link)
            break;
        if (sb_link_send_bytes (link, &h, body, size) == 0) {
            self->next_link = (self->next_link + 1) % self->nlinks;
            rc = 0;
            break;
        }
    }
    if (seal)
        zmq_msg_close (&sealed);
    if (rc)
        errno = EAGAIN;
    return rc;
}

int
sb__peer_on_event (sb_peer_t *self, const sb_header_t *h, zmq_msg_t *body)
{
    if (!(h->present & SB_H_TOPIC))
        return 0;
    msgpack_zone spare;
    msgpack_zone *zone = sb__peer_zone_take (self, &spare);
    msgpack_object obj;
    int dispatched = 0;
    /*  A sealed event is opened into `plain`; a refused one is counted
        and logged by the sealer and dropped.  */
    zmq_msg_t plain;
    zmq_msg_init (&plain);
    sb_error_t err;
    int opened = self->sealer ? sb_sealer_open_event (self->sealer, h, body, &plain, &err)
                              : (h->flags & SB_F_SEALED) ? -1 : 0;
    if (opened == 1)
        body = &plain;
    if (!zone || opened < 0
    ||  sb_wire_decode_zone (zmq_msg_data (body), zmq_msg_size (body), zone, &obj))
        self->bad_bodies++;
    else {
        /*  Work done on an event stays in the publisher's trace.  */
        uint8_t outer [16];
        bool had_trace = sb_peer_trace (self, outer);
        sb_peer_set_trace (self, (h->present & SB_H_TRACE) ? h->trace : NULL);
        bool grouped = (h->present & SB_H_GROUP) != 0;
        for (sb_sub_t *sub = zlistx_first (self->subs); sub; sub = zlistx_next (self->subs)) {
            if (strncmp (h->topic, sub->prefix, strlen (sub->prefix)) != 0)
                continue;
            if (grouped ? strcmp (sub->group, h->group) != 0 : sub->group [0] != 0)
                continue;
            sub->callback (h->topic, &obj, sub->arg);
            dispatched++;
        }
        sb_peer_set_trace (self, had_trace ? outer : NULL);
    }
    sb__peer_zone_give (self, zone);
    zmq_msg_close (&plain);
    return dispatched;
}
