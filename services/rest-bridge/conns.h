/*  conns.h — the REST bridge's connection guard (conns.c): who may
    connect, and how long a connection may take to send a request head.

    libmicrohttpd calls these from its threads: sb_rest_conns_admit from
    its accept policy callback, _opened and _closed from its connection
    notifications, _head_done when a request's head is complete (first
    call of the access handler) and _request_done when a request was
    answered.  A thread of the guard's own closes the connections whose
    head is late.  All functions are thread-safe.
*/
#ifndef SB_REST_CONNS_H_INCLUDED
#define SB_REST_CONNS_H_INCLUDED

#include "metrics.h"

#include <stdbool.h>
#include <sys/socket.h>

typedef struct sb_rest_conns sb_rest_conns_t;
typedef struct sb_rest_conn sb_rest_conn_t;

/*  A guard for at most `limit` connections in all, `per_client` from one
    address, each given `header_timeout_s` seconds for a request head.
    Counts refusals and timeouts in metrics (borrowed; it must outlive the
    guard).  Starts the sweeping thread.  NULL if out of memory or no
    thread.  */
sb_rest_conns_t *sb_rest_conns_new (sb_rest_metrics_t *metrics, unsigned limit,
                                    unsigned per_client, unsigned header_timeout_s);
/*  Stops the thread and frees the guard; every connection must have been
    reported closed (stop the daemon first).  NULLs *self_p; safe twice. */
void sb_rest_conns_destroy (sb_rest_conns_t **self_p);

/*  Whether a connection from addr may be accepted: fewer than limit
    connections open, fewer than per_client from that address.  Counts a
    refusal.  Connections accepted at the same time on other threads are
    not seen yet, so either limit may be passed by up to the number of
    accepting threads less one.  */
bool sb_rest_conns_admit (sb_rest_conns_t *self, const struct sockaddr *addr);
/*  A connection was accepted on socket fd: its head deadline starts.
    Returns its record, or NULL if out of memory (then the connection is
    shut down at once).  */
sb_rest_conn_t *sb_rest_conns_opened (sb_rest_conns_t *self, int fd, const struct sockaddr *addr);
/*  The connection's request head is complete: no deadline until the
    request is answered.  conn may be NULL.  */
void sb_rest_conns_head_done (sb_rest_conns_t *self, sb_rest_conn_t *conn);
/*  The request was answered: the next head's deadline starts now.  */
void sb_rest_conns_request_done (sb_rest_conns_t *self, sb_rest_conn_t *conn);
/*  The connection is closed (its socket not yet): frees conn.  */
void sb_rest_conns_closed (sb_rest_conns_t *self, sb_rest_conn_t *conn);

#endif
