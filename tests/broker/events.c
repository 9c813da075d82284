/*  broker_events.t — publish/subscribe: prefixes, broadcast, balanced
    groups, at most once per broadcast subscriber, dropped events.  */
#include "broker_peer.h"

static void
s_subscribe (zsock_t *sock, sb_cmd_t command, const char *topic, const char *group)
{
    sb_header_t h;
    sb_header_init (&h, command);
    sb_header_set_topic (&h, topic);
    if (group)
        sb_header_set_group (&h, group);
    bp_send (sock, &h, NULL, 0);
}

static void
s_publish (zsock_t *sock, const char *topic, const void *body, size_t size)
{
    sb_header_t h;
    sb_header_init (&h, SB_CMD_PUBLISH);
    sb_header_set_topic (&h, topic);
    bp_send (sock, &h, body, size);
}

/*  Counts PUBLISH messages arriving within ms; the last one in *last.  */
static int
s_count (zsock_t *sock, int ms, bp_msg_t *last)
{
    int n = 0;
    while (bp_recv (sock, last, ms) == 0)
        n += last->h.command == SB_CMD_PUBLISH;
    return n;
}

int
main (void)
{
    sb_broker_t *broker = bp_broker (1000, 100);
    zsock_t *admin = bp_connect (broker);
    zsock_t *publisher = bp_connect (broker);
    zsock_t *all = bp_connect (broker), *orders = bp_connect (broker);
    zsock_t *g1 = bp_connect (broker), *g2 = bp_connect (broker), *g3 = bp_connect (broker);
    static bp_msg_t m;
    zsock_t *peers [] = { all, orders, g1, g2, g3 };
    for (int i = 0; i < 5; i++) {
        bp_hello (peers [i], "sub", &m);
        bp_keep (peers [i], true);
    }

    s_subscribe (all, SB_CMD_SUBSCRIBE, "orders", NULL);
    s_subscribe (all, SB_CMD_SUBSCRIBE, "orders.new", NULL);   /* overlapping prefix */
    s_subscribe (all, SB_CMD_SUBSCRIBE, "orders", NULL);       /* repeated: harmless */
    s_subscribe (orders, SB_CMD_SUBSCRIBE, "orders.new", NULL);
    s_subscribe (g1, SB_CMD_SUBSCRIBE, "orders", "billing");
    s_subscribe (g2, SB_CMD_SUBSCRIBE, "orders", "billing");
    s_subscribe (g3, SB_CMD_SUBSCRIBE, "orders.new", "billing");
    for (int i = 0; i < 5; i++)
        bp_sync (peers [i]);    /* the subscriptions have landed */

    const char body [] = "\x81\xa2id\x2a";
    s_publish (publisher, "orders.new.eu", body, sizeof body - 1);
    tap_is_int (s_count (all, 300, &m), 1, "broadcast subscriber with two matching prefixes gets it once");
    tap_ok (m.size == sizeof body - 1 && !memcmp (m.body, body, m.size), "event body intact");
    tap_is_str (m.h.topic, "orders.new.eu", "event carries its topic");
    tap_ok (!(m.h.present & SB_H_GROUP), "broadcast delivery carries no group");
    tap_is_int (s_count (orders, 100, &m), 1, "second broadcast subscriber gets it too");
    int n1 = s_count (g1, 100, &m), n2 = s_count (g2, 1, &m), n3 = s_count (g3, 1, &m);
    tap_is_int (n1 + n2 + n3, 1, "balanced group: exactly one member gets it");

    s_publish (publisher, "orders.old", "\xc0", 1);
    tap_is_int (s_count (all, 300, &m), 1, "prefix 'orders' matches orders.old");
    tap_is_int (s_count (orders, 100, &m), 0, "prefix 'orders.new' does not");
    n1 = s_count (g1, 100, &m);
    n2 = s_count (g2, 1, &m);
    tap_is_int (n1 + n2 + s_count (g3, 1, &m), 1, "and one group member whose prefix matches");

    /*  Round robin: 30 events matching every member.  */
    for (int i = 0; i < 30; i++)
        s_publish (publisher, "orders.new.x", "\xc0", 1);
    tap_is_int (s_count (all, 300, &m), 30, "broadcast subscriber gets all 30");
    n1 = s_count (g1, 200, &m);
    tap_is_str (m.h.group, "billing", "group delivery carries the group name");
    n2 = s_count (g2, 100, &m);
    n3 = s_count (g3, 100, &m);
    tap_ok (n1 + n2 + n3 == 30 && n1 == 10 && n2 == 10 && n3 == 10,
            "group members share 30 events round-robin (%d/%d/%d)", n1, n2, n3);
    s_count (orders, 100, &m);

    /*  Only members whose prefix matches take part.  */
    for (int i = 0; i < 4; i++)
        s_publish (publisher, "orders.paid", "\xc0", 1);
    s_count (all, 300, &m);
    n1 = s_count (g1, 100, &m);
    n2 = s_count (g2, 100, &m);
    n3 = s_count (g3, 100, &m);
    tap_ok (n1 == 2 && n2 == 2 && n3 == 0, "a member whose prefix does not match is skipped (%d/%d/%d)",
            n1, n2, n3);

    /*  Unsubscribe, then nobody listens: the event is dropped and counted. */
    s_subscribe (all, SB_CMD_UNSUBSCRIBE, "orders", NULL);
    s_subscribe (all, SB_CMD_UNSUBSCRIBE, "orders.new", NULL);
    bp_sync (all);
    s_publish (publisher, "orders.old", "\xc0", 1);
    tap_is_int (s_count (all, 300, &m), 0, "unsubscribed peer gets nothing");
    s_count (g1, 100, &m);
    s_count (g2, 1, &m);
    int64_t dropped = bp_stat (admin, "dropped_events", NULL);
    s_publish (publisher, "weather.today", "\xc0", 1);
    tap_is_int (bp_stat_wait (admin, "dropped_events", NULL, dropped + 1), dropped + 1,
                "an event nobody subscribed to is dropped and counted");

    /*  A subscriber that leaves no longer counts.  */
    bp_keep (g1, false);
    bp_simple (g1, SB_CMD_BYE);
    bp_sync (g1);               /* handled after the BYE, as a new peer */
    for (int i = 0; i < 4; i++)
        s_publish (publisher, "orders.new.y", "\xc0", 1);
    n2 = s_count (g2, 300, &m);
    n3 = s_count (g3, 100, &m);
    tap_ok (n2 + n3 == 4 && n2 == 2, "after BYE the group is the two others (%d/%d)", n2, n3);

    for (int i = 0; i < 5; i++)
        bp_keep (peers [i], false);
    sb_broker_destroy (&broker);
    zsock_destroy (&admin);
    zsock_destroy (&publisher);
    for (int i = 0; i < 5; i++)
        zsock_destroy (&peers [i]);
    return tap_done ();
}
