/*  broker_death.t — heartbeats both ways and what happens when a worker
    goes: silence (heartbeat loss), BYE, or the last worker of a service.
    Runs the broker with a 100 ms heartbeat, so a peer is dead after 300 ms. */
#include "broker_peer.h"

int
main (void)
{
    sb_broker_t *broker = bp_broker (100, 100);
    zsock_t *admin = bp_connect (broker);
    zsock_t *client = bp_connect (broker);
    static bp_msg_t m, got [8];

    /*  The broker heartbeats an idle peer.  */
    zsock_t *idle = bp_connect (broker);
    bp_hello (idle, "idle", &m);
    int beats = 0;
    int64_t end = zclock_mono () + 2000;
    while (beats < 2 && zclock_mono () < end)
        if (bp_recv_any (idle, &m, 500, false) == 0 && m.h.command == SB_CMD_HEARTBEAT)
            beats++;
    tap_is_int (beats, 2, "an idle peer gets HEARTBEATs from the broker");

    /*  A peer the broker does not know gets WELCOME for HEARTBEAT.  */
    zsock_t *stranger = bp_connect (broker);
    bp_simple (stranger, SB_CMD_HEARTBEAT);
    tap_ok (bp_recv (stranger, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_WELCOME,
            "HEARTBEAT from an unknown peer is answered WELCOME");
    zsock_t *stranger2 = bp_connect (broker);
    bp_ready (stranger2, "late", 1, "go:0");
    tap_ok (bp_recv (stranger2, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_WELCOME,
            "READY from an unknown peer is answered WELCOME");
    bp_simple (stranger2, SB_CMD_BYE);
    int64_t left = -1;
    for (int i = 0; i < 100 && left != 0; i++) {
        left = bp_stat (admin, "workers", NULL);
        zclock_sleep (left ? 20 : 0);
    }
    tap_is_int (left, 0, "BYE withdraws the peer's service");
    zsock_destroy (&stranger2);

    /*  A silent peer is forgotten after 3 intervals, with its service.  */
    zsock_destroy (&stranger);
    bp_ready (idle, "idle", 1, "nap:0");
    int64_t offered = bp_stat_wait (admin, "workers", NULL, 1);
    tap_is_int (offered, 1, "idle peer offers a service");
    zsock_destroy (&idle);
    int64_t workers = 1;
    int64_t end2 = zclock_mono () + BP_WAIT;
    while (workers != 0 && zclock_mono () < end2) {
        zclock_sleep (50);
        workers = bp_stat (admin, "workers", NULL);
    }
    tap_is_int (workers, 0, "a silent worker is declared dead and its service withdrawn");

    /*  Worker death by heartbeat loss, with requests in flight.  */
    zsock_t *doomed = bp_connect (broker);
    zsock_t *survivor = bp_connect (broker);
    bp_hello (doomed, "doomed", &m);
    bp_hello (survivor, "survivor", &m);
    bp_keep (survivor, true);
    bp_ready (doomed, "calc", 2, "add:1,charge:0");
    bp_stat_wait (admin, "workers", NULL, 1);
    bp_request (client, 1, "calc", "add", 10000, 0, "\x01", 1);
    bp_request (client, 2, "calc", "charge", 10000, 0, "\x02", 1);
    int n = 0;
    while (n < 2 && bp_recv (doomed, &got [n], BP_WAIT) == 0)
        n += got [n].h.command == SB_CMD_REQUEST;
    tap_is_int (n, 2, "doomed worker holds an idempotent and a non-idempotent request");
    bp_ready (survivor, "calc", 2, "add:1,charge:0");
    bp_stat_wait (admin, "workers", NULL, 2);
    /*  The doomed worker goes silent; its socket stays open but answers
        nothing, as a hung process would.  */
    int64_t start = zclock_mono ();
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_ERROR
            && m.h.code == SB_E_UNAVAILABLE && m.h.request_id == 2,
            "non-idempotent request of a dead worker: unavailable");
    tap_ok (zclock_mono () - start < 2000, "death noticed within a few heartbeats (%d ms)",
            (int) (zclock_mono () - start));
    tap_ok (bp_recv (survivor, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST
            && m.size == 1 && m.body [0] == 1,
            "idempotent request re-dispatched to the surviving worker, body intact");
    bp_reply (survivor, m.h.request_id, "\x11", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REPLY
            && m.h.request_id == 1 && m.body [0] == 0x11,
            "caller gets the answer from the survivor");
    bp_reply (doomed, got [0].h.request_id, "\x99", 1);
    tap_ok (bp_silent (client, 200), "the dead worker's late answer goes nowhere");
    bp_simple (doomed, SB_CMD_HEARTBEAT);
    tap_ok (bp_recv (doomed, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_WELCOME,
            "a dead peer that speaks again is WELCOMEd (to re-announce)");
    zsock_destroy (&doomed);

    /*  BYE: the worker leaves at once; the last worker's queue is answered. */
    bp_request (client, 3, "calc", "charge", 10000, 0, "\x03", 1);
    bp_request (client, 4, "calc", "charge", 10000, 0, "\x04", 1);
    bp_request (client, 5, "calc", "charge", 10000, 0, "\x05", 1);
    n = 0;
    while (n < 2 && bp_recv (survivor, &got [n], BP_WAIT) == 0)
        n += got [n].h.command == SB_CMD_REQUEST;
    tap_is_int (n, 2, "survivor holds two, one waits in the queue");
    start = zclock_mono ();
    bp_keep (survivor, false);
    bp_simple (survivor, SB_CMD_BYE);
    int unavailable = 0;
    while (unavailable < 3 && bp_recv (client, &m, BP_WAIT) == 0)
        unavailable += m.h.command == SB_CMD_ERROR && m.h.code == SB_E_UNAVAILABLE;
    tap_is_int (unavailable, 3, "BYE of the last worker: in-flight and queued all get unavailable");
    tap_ok (zclock_mono () - start < 250, "BYE acts at once, not after heartbeats (%d ms)",
            (int) (zclock_mono () - start));
    bp_request (client, 6, "calc", "add", 1000, 0, "\x06", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.code == SB_E_UNAVAILABLE
            && (m.h.flags & SB_F_UNROUTED),
            "a service without workers now is unavailable (flag unrouted), not not_found");
    bp_request (client, 7, "never-offered", "add", 1000, 0, "\x06", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.code == SB_E_NOT_FOUND
            && (m.h.flags & SB_F_UNROUTED), "a service never offered is not_found");
    tap_is_int (bp_stat (admin, "workers", NULL), 0, "no workers left");

    /*  A caller that vanishes mid-request: the answer is dropped, the
        worker's credit is freed and the broker goes on serving.  */
    zsock_t *worker = bp_connect (broker);
    bp_hello (worker, "w", &m);
    bp_keep (worker, true);
    bp_ready (worker, "calc", 1, "add:1");
    bp_stat_wait (admin, "workers", NULL, 1);
    zsock_t *vanisher = bp_connect (broker);
    bp_request (vanisher, 7, "calc", "add", 10000, 0, "\x07", 1);
    tap_ok (bp_recv (worker, &got [0], BP_WAIT) == 0 && got [0].h.command == SB_CMD_REQUEST,
            "worker got the vanishing caller's request");
    zsock_destroy (&vanisher);
    bp_silent (client, 500);    /* time for ZeroMQ to notice the closed connection */
    bp_reply (worker, got [0].h.request_id, "\x77", 1);
    tap_ok (bp_stat_wait (admin, "unreachable", NULL, 1) >= 1
            || bp_stat (admin, "orphaned_replies", NULL) >= 1,
            "the answer for a vanished caller is counted, not delivered");
    bp_request (client, 8, "calc", "add", 10000, 0, "\x08", 1);
    tap_ok (bp_recv (worker, &m, BP_WAIT) == 0 && m.h.command == SB_CMD_REQUEST,
            "worker's credit was freed: the next caller is served");
    bp_reply (worker, m.h.request_id, "\x88", 1);
    tap_ok (bp_recv (client, &m, BP_WAIT) == 0 && m.h.request_id == 8 && m.body [0] == (char) 0x88,
            "and answered");

    bp_keep (worker, false);
    sb_broker_destroy (&broker);
    zsock_destroy (&worker);
    zsock_destroy (&admin);
    zsock_destroy (&client);
    zsock_destroy (&survivor);
    return tap_done ();
}
