/*  pubsub.c — subscriptions, groups and PUBLISH.

    A subscription is a topic prefix held by one peer, either broadcast
    (in one array: every matching peer gets an event once) or in a named
    group (the group's matching members take turns).  Events are passed
    on as they came, header re-encoded, body never read.
*/
#include "engine.h"

#include <string.h>

void
sb__sub_remove (engine_t *self, sub_t *sub)
{
    if (sub->group) {
        group_t *g = sub->group;
        g->members [sub->index] = g->members [--g->n];
        g->members [sub->index]->index = sub->index;
        if (g->n == 0) {
            zhashx_delete (self->groups, g->name);
            free (g->members);
            free (g);
        }
    }
    else {
        self->bcast [sub->index] = self->bcast [--self->nbcast];
        self->bcast [sub->index]->index = sub->index;
    }
    free (sub);
}

void
sb__on_subscribe (engine_t *self, peer_t *p, const sb_header_t *h, bool subscribe)
{
    if (!(h->present & SB_H_TOPIC)) {
        sb__bad (self, R_MISSING_FIELD);
        return;
    }
    const char *group = (h->present & SB_H_GROUP) ? h->group : NULL;
    sub_t **link = &p->subs;
    while (*link) {
        sub_t *sub = *link;
        bool same_group = group ? (sub->group && !strcmp (sub->group->name, group)) : !sub->group;
        if (same_group && !strcmp (sub->prefix, h->topic))
            break;
        link = &sub->peer_next;
    }
    if (!subscribe) {
        if (*link) {
            sub_t *sub = *link;
            *link = sub->peer_next;
            p->nsubs--;
            sb__sub_remove (self, sub);
        }
        return;
    }
    if (*link)
        return;                 /* already subscribed: re-announcements are harmless */
    if (p->nsubs >= SUBS_MAX) {
        sb__bad (self, R_LIMIT);
        return;
    }
    sub_t *sub = calloc (1, sizeof *sub);
    if (!sub)
        return;
    sub->peer = p;
    strcpy (sub->prefix, h->topic);
    sub->len = strlen (sub->prefix);
    if (group) {
        group_t *g = zhashx_lookup (self->groups, group);
        if (!g) {
            g = calloc (1, sizeof *g);
            if (!g) {
                free (sub);
                return;
            }
            strcpy (g->name, group);
            zhashx_insert (self->groups, g->name, g);
        }
        if (sb__grow ((void ***) &g->members, g->n, &g->alloc)) {
            if (g->n == 0) {
                zhashx_delete (self->groups, g->name);
                free (g);
            }
            free (sub);
            return;
        }
        sub->group = g;
        sub->index = g->n;
        g->members [g->n++] = sub;
    }
    else {
        if (sb__grow ((void ***) &self->bcast, self->nbcast, &self->bcast_alloc)) {
            free (sub);
            return;
        }
        sub->index = self->nbcast;
        self->bcast [self->nbcast++] = sub;
    }
    sub->peer_next = p->subs;
    p->subs = sub;
    p->nsubs++;
}

static bool
s_matches (const sub_t *sub, const char *topic)
{
    return !strncmp (topic, sub->prefix, sub->len);
}

void
sb__on_publish (engine_t *self, const sb_header_t *h, const sb_body_t *body)
{
    if (!(h->present & SB_H_TOPIC)) {
        sb__bad (self, R_MISSING_FIELD);
        return;
    }
    self->stats.events++;
    sb_header_t out;
    sb_header_init (&out, SB_CMD_PUBLISH);
    sb_header_set_topic (&out, h->topic);
    out.flags = h->flags;
    memcpy (out.trace, h->trace, sizeof out.trace);
    memcpy (out.span, h->span, sizeof out.span);
    memcpy (out.key_id, h->key_id, sizeof out.key_id);
    out.key_id_size = h->key_id_size;
    out.present |= h->present & (SB_H_TRACE | SB_H_SPAN | SB_H_KEY_ID);
    out.hops = h->hops;

    size_t delivered = 0;
    uint64_t seq = ++self->event_seq;
    for (size_t i = 0; i < self->nbcast; i++) {
        sub_t *sub = self->bcast [i];
        if (sub->peer->event_seq == seq || !s_matches (sub, h->topic))
            continue;
        sub->peer->event_seq = seq;
        sb__send (self, sub->peer, &out, body);
        delivered++;
    }
    for (group_t *g = zhashx_first (self->groups); g; g = zhashx_next (self->groups)) {
        for (size_t k = 0; k < g->n; k++) {
            size_t index = (g->rr + k) % g->n;
            sub_t *sub = g->members [index];
            if (!s_matches (sub, h->topic) || sub->peer->doomed)
                continue;
            g->rr = index + 1;
            sb_header_set_group (&out, g->name);
            sb__send (self, sub->peer, &out, body);
            delivered++;
            break;
        }
    }
    if (!delivered)
        self->stats.dropped_events++;
}
