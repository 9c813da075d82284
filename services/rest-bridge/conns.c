/*  conns.c — the REST bridge's connection guard (see conns.h).

    Two defences against clients that hold connections without using them.

    Admission.  libmicrohttpd's own connection limit is one number for all
    clients: one address opening as many connections as it may locks
    everyone else out.  The guard counts open connections per client
    address in a small chained hash table (an entry lives while its address
    has connections, so its size is bounded by the connection limit) and
    refuses a client past `per_client`, keeping the rest of the global
    `limit` for others.  It also checks the global limit, so that both
    refusals are counted by reason; libmicrohttpd's limit is set above it
    (http.c) and only backs it up.

    Head deadlines.  libmicrohttpd's connection timeout restarts at every
    byte, so a client that trickles a header byte every few seconds keeps
    its connection for ever.  Every connection waiting for a request head
    (a new one, or one whose last request was answered) is in a list in
    the order its deadline started, which is the order of the deadlines;
    a thread wakes four times a second and shuts down (shutdown(2)) the
    sockets at the front of the list whose head is late, which makes
    libmicrohttpd close them.  A sweep costs one step per late connection
    plus one.  The list and the table share one mutex.  libmicrohttpd
    reports a connection closed before it closes the socket, so a socket
    found in the list under the mutex is still that connection's.

    A connection whose head is complete is out of the list until its
    request is answered: its body and its call are limited by max_body,
    connection_timeout and the call's timeout.  An idle keep-alive
    connection is in the list again, so it is closed after header_timeout
    unless it sends its next request.
*/
#include "conns.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_BUCKETS 1024
#define S_SWEEP_MS 250

typedef struct s_client s_client_t;
struct s_client {
    s_client_t *next;                   /* in its bucket */
    uint8_t addr [16];                  /* IPv4 (4 bytes) or IPv6 (16) */
    uint8_t size;
    unsigned count;                     /* open connections */
};

struct sb_rest_conn {
    sb_rest_conn_t *prev;               /* in the waiting list */
    sb_rest_conn_t *next;
    bool waiting;                       /* in the list: its head is due */
    int fd;
    int64_t head_start_us;
    s_client_t *client;                 /* NULL for an address not IP */
};

struct sb_rest_conns {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool stop;                          /* under lock */
    sb_rest_metrics_t *metrics;
    unsigned limit;
    unsigned per_client;
    int64_t header_timeout_us;
    unsigned open;
    sb_rest_conn_t *head;               /* waiting for a head, oldest first */
    sb_rest_conn_t *tail;
    s_client_t *buckets [S_BUCKETS];
};

static int64_t
s_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/*  The key of an address: its IP (an IPv4-mapped IPv6 address counts as
    the IPv4 one).  Returns the size, 0 for anything else.  */
static uint8_t
s_key (const struct sockaddr *addr, uint8_t key [16])
{
    if (!addr)
        return 0;
    if (addr->sa_family == AF_INET) {
        memcpy (key, &((const struct sockaddr_in *) addr)->sin_addr, 4);
        return 4;
    }
    if (addr->sa_family == AF_INET6) {
        const uint8_t *ip = ((const struct sockaddr_in6 *) addr)->sin6_addr.s6_addr;
        static const uint8_t mapped [12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (!memcmp (ip, mapped, 12)) {
            memcpy (key, ip + 12, 4);
            return 4;
        }
        memcpy (key, ip, 16);
        return 16;
    }
    return 0;
}

static s_client_t **
s_bucket (sb_rest_conns_t *self, const uint8_t *key, uint8_t size)
{
    uint32_t hash = 2166136261u;
    for (uint8_t i = 0; i < size; i++)
        hash = (hash ^ key [i]) * 16777619u;
    return &self->buckets [hash % S_BUCKETS];
}

/*  The client with this address, or NULL.  Called with the lock held. */
static s_client_t *
s_client_find (sb_rest_conns_t *self, const uint8_t *key, uint8_t size)
{
    for (s_client_t *client = *s_bucket (self, key, size); client; client = client->next)
        if (client->size == size && !memcmp (client->addr, key, size))
            return client;
    return NULL;
}

static void
s_wait_append (sb_rest_conns_t *self, sb_rest_conn_t *conn, int64_t now_us)
{
    conn->head_start_us = now_us;
    conn->waiting = true;
    conn->next = NULL;
    conn->prev = self->tail;
    if (self->tail)
        self->tail->next = conn;
    else
        self->head = conn;
    self->tail = conn;
}

static void
s_wait_remove (sb_rest_conns_t *self, sb_rest_conn_t *conn)
{
    if (!conn->waiting)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        self->head = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    else
        self->tail = conn->prev;
    conn->prev = conn->next = NULL;
    conn->waiting = false;
}

/*  The sweeping thread: shuts down the connections whose head is late. */
static void *
s_sweep (void *arg)
{
    sb_rest_conns_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        struct timespec until;
        clock_gettime (CLOCK_MONOTONIC, &until);
        until.tv_nsec += S_SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!self->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait (&self->wake, &self->lock, &until);
        int64_t due = s_now_us () - self->header_timeout_us;
        while (self->head && self->head->head_start_us <= due) {
            sb_rest_conn_t *late = self->head;
            s_wait_remove (self, late);
            shutdown (late->fd, SHUT_RDWR);
            sb_rest_metrics_connection_closed (self->metrics, SB_REST_CLOSED_HEADER_TIMEOUT);
        }
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

sb_rest_conns_t *
sb_rest_conns_new (sb_rest_metrics_t *metrics, unsigned limit, unsigned per_client,
                   unsigned header_timeout_s)
{
    sb_rest_conns_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->limit = limit;
    self->per_client = per_client;
    self->header_timeout_us = (int64_t) header_timeout_s * 1000000;
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);
    if (rc != 0) {
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    if (pthread_create (&self->thread, NULL, s_sweep, self) != 0) {
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
        free (self);
        return NULL;
    }
    return self;
}

void
sb_rest_conns_destroy (sb_rest_conns_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_rest_conns_t *self = *self_p;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    for (size_t i = 0; i < S_BUCKETS; i++) {
        while (self->buckets [i]) {
            s_client_t *next = self->buckets [i]->next;
            free (self->buckets [i]);
            self->buckets [i] = next;
        }
    }
    pthread_cond_destroy (&self->wake);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

bool
sb_rest_conns_admit (sb_rest_conns_t *self, const struct sockaddr *addr)
{
    uint8_t key [16];
    uint8_t size = s_key (addr, key);
    pthread_mutex_lock (&self->lock);
    bool global = self->open >= self->limit;
    s_client_t *client = global || size == 0 ? NULL : s_client_find (self, key, size);
    bool per_client = client && client->count >= self->per_client;
    pthread_mutex_unlock (&self->lock);
    if (global)
        sb_rest_metrics_connection_refused (self->metrics, SB_REST_REFUSED_GLOBAL);
    else
    if (per_client)
        sb_rest_metrics_connection_refused (self->metrics, SB_REST_REFUSED_PER_CLIENT);
    return !global && !per_client;
}

sb_rest_conn_t *
sb_rest_conns_opened (sb_rest_conns_t *self, int fd, const struct sockaddr *addr)
{
    uint8_t key [16];
    uint8_t size = s_key (addr, key);
    sb_rest_conn_t *conn = calloc (1, sizeof *conn);
    pthread_mutex_lock (&self->lock);
    s_client_t *client = size && conn ? s_client_find (self, key, size) : NULL;
    if (size && conn && !client) {
        client = calloc (1, sizeof *client);
        if (client) {
            memcpy (client->addr, key, size);
            client->size = size;
            s_client_t **bucket = s_bucket (self, key, size);
            client->next = *bucket;
            *bucket = client;
        }
        else {
            free (conn);
            conn = NULL;
        }
    }
    if (conn) {
        conn->fd = fd;
        conn->client = client;
        if (client)
            client->count++;
        self->open++;
        s_wait_append (self, conn, s_now_us ());
        sb_rest_metrics_connections (self->metrics, 1);
    }
    pthread_mutex_unlock (&self->lock);
    if (!conn)
        shutdown (fd, SHUT_RDWR);
    return conn;
}

void
sb_rest_conns_head_done (sb_rest_conns_t *self, sb_rest_conn_t *conn)
{
    if (!conn)
        return;
    pthread_mutex_lock (&self->lock);
    s_wait_remove (self, conn);
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_conns_request_done (sb_rest_conns_t *self, sb_rest_conn_t *conn)
{
    if (!conn)
        return;
    pthread_mutex_lock (&self->lock);
    s_wait_remove (self, conn);
    s_wait_append (self, conn, s_now_us ());
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_conns_closed (sb_rest_conns_t *self, sb_rest_conn_t *conn)
{
    if (!conn)
        return;
    pthread_mutex_lock (&self->lock);
    s_wait_remove (self, conn);
    s_client_t *client = conn->client;
    if (client && --client->count == 0) {
        s_client_t **link = s_bucket (self, client->addr, client->size);
        while (*link != client)
            link = &(*link)->next;
        *link = client->next;
        free (client);
    }
    self->open--;
    sb_rest_metrics_connections (self->metrics, -1);
    pthread_mutex_unlock (&self->lock);
    free (conn);
}
