/*  metrics.c — the REST bridge's Prometheus metrics (see metrics.h).

    Storage is a fixed open-addressing table of series keyed by
    (service, method); each series keeps its counts by HTTP status (a
    small array: the bridge answers with a dozen statuses at most) and a
    latency histogram.  Rendering copies nothing out of the lock but
    formats under it: a scrape costs microseconds per series.
*/
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SERIES_MAX 256            /* distinct (service, method) pairs kept */
#define S_STATUS_MAX 16             /* distinct statuses kept per series */
#define S_NAME_MAX 64

/*  Upper bounds of the latency buckets, in microseconds: 0.5 ms to 10 s,
    which covers an in-memory echo as well as a call that times out.  */
static const int64_t s_bucket_us [] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000
};
#define S_BUCKETS (sizeof s_bucket_us / sizeof s_bucket_us [0])

static const char *s_error_names [SB_REST_ERR_MAX] = {
    [SB_REST_ERR_MALFORMED_JSON] = "malformed_json",
    [SB_REST_ERR_SCHEMA] = "schema_violation",
    [SB_REST_ERR_BODY_TOO_LARGE] = "body_too_large",
    [SB_REST_ERR_CONTENT_TYPE] = "content_type",
    [SB_REST_ERR_AUTH] = "unauthorized",
    [SB_REST_ERR_FORBIDDEN] = "forbidden",
    [SB_REST_ERR_NO_ROUTE] = "no_route",
    [SB_REST_ERR_CALL_FAILED] = "call_failed",
    [SB_REST_ERR_BAD_REPLY] = "bad_reply",
    [SB_REST_ERR_CLIENT_GONE] = "client_gone",
    [SB_REST_ERR_SHUTDOWN] = "shutdown",
    [SB_REST_ERR_BAD_REQUEST_ID] = "bad_request_id",
    [SB_REST_ERR_BAD_TRACEPARENT] = "bad_traceparent",
    [SB_REST_ERR_BAD_FRAMING] = "bad_framing",
    [SB_REST_ERR_TRANSFER_ENCODING] = "transfer_encoding",
};

static const char *s_refused_names [SB_REST_REFUSED_MAX] = {
    [SB_REST_REFUSED_PER_CLIENT] = "per_client",
    [SB_REST_REFUSED_GLOBAL] = "global",
};

static const char *s_closed_names [SB_REST_CLOSED_MAX] = {
    [SB_REST_CLOSED_HEADER_TIMEOUT] = "header_timeout",
    [SB_REST_CLOSED_BAD_FRAMING] = "bad_framing",
    [SB_REST_CLOSED_BODY_TOO_LARGE] = "body_too_large",
};

typedef struct {
    bool used;
    char service [S_NAME_MAX + 1];
    char method [S_NAME_MAX + 1];
    int statuses [S_STATUS_MAX];
    uint64_t status_counts [S_STATUS_MAX];
    uint64_t buckets [S_BUCKETS];  /* not cumulative; summed when rendered */
    uint64_t count;
    int64_t sum_us;
} s_series_t;

struct sb_rest_metrics {
    pthread_mutex_t lock;
    s_series_t series [S_SERIES_MAX];
    size_t series_used;
    uint64_t requests;
    int64_t in_flight;
    uint64_t errors [SB_REST_ERR_MAX];
    int64_t connections;
    uint64_t refused [SB_REST_REFUSED_MAX];
    uint64_t closed [SB_REST_CLOSED_MAX];
};

sb_rest_metrics_t *
sb_rest_metrics_new (void)
{
    sb_rest_metrics_t *self = calloc (1, sizeof *self);
    if (self && pthread_mutex_init (&self->lock, NULL) != 0) {
        free (self);
        return NULL;
    }
    return self;
}

void
sb_rest_metrics_destroy (sb_rest_metrics_t **self_p)
{
    if (self_p && *self_p) {
        pthread_mutex_destroy (&(*self_p)->lock);
        free (*self_p);
        *self_p = NULL;
    }
}

static uint32_t
s_hash (const char *service, const char *method)
{
    uint32_t hash = 2166136261u;
    for (const char *s = service; *s; s++)
        hash = (hash ^ (uint8_t) *s) * 16777619u;
    hash = (hash ^ '.') * 16777619u;
    for (const char *s = method; *s; s++)
        hash = (hash ^ (uint8_t) *s) * 16777619u;
    return hash;
}

/*  Finds or adds the series; past the cap, the shared "_other" series.
    Called with the lock held.  */
static s_series_t *
s_series (sb_rest_metrics_t *self, const char *service, const char *method)
{
    if (strlen (service) > S_NAME_MAX || strlen (method) > S_NAME_MAX
    ||  self->series_used >= S_SERIES_MAX - 1) {
        service = "_other";
        method = "_other";
    }
    uint32_t slot = s_hash (service, method) % S_SERIES_MAX;
    for (size_t probe = 0; probe < S_SERIES_MAX; probe++) {
        s_series_t *series = &self->series [(slot + probe) % S_SERIES_MAX];
        if (!series->used) {
            series->used = true;
            snprintf (series->service, sizeof series->service, "%s", service);
            snprintf (series->method, sizeof series->method, "%s", method);
            self->series_used++;
            return series;
        }
        if (!strcmp (series->service, service) && !strcmp (series->method, method))
            return series;
    }
    return NULL;                /* cannot happen: one slot is always kept free */
}

void
sb_rest_metrics_record (sb_rest_metrics_t *self, const char *service,
                        const char *method, int status, int64_t duration_us)
{
    if (duration_us < 0)
        duration_us = 0;
    pthread_mutex_lock (&self->lock);
    self->requests++;
    s_series_t *series = s_series (self, service, method);
    if (series) {
        for (size_t i = 0; i < S_STATUS_MAX; i++) {
            if (series->statuses [i] == status || series->statuses [i] == 0
            ||  i == S_STATUS_MAX - 1) {
                series->statuses [i] = series->statuses [i] ? series->statuses [i] : status;
                series->status_counts [i]++;
                break;
            }
        }
        size_t bucket = 0;
        while (bucket < S_BUCKETS && duration_us > s_bucket_us [bucket])
            bucket++;
        if (bucket < S_BUCKETS)
            series->buckets [bucket]++;
        series->count++;
        series->sum_us += duration_us;
    }
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_metrics_error (sb_rest_metrics_t *self, sb_rest_error_t reason)
{
    if ((unsigned) reason >= SB_REST_ERR_MAX)
        return;
    pthread_mutex_lock (&self->lock);
    self->errors [reason]++;
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_metrics_in_flight (sb_rest_metrics_t *self, int delta)
{
    pthread_mutex_lock (&self->lock);
    self->in_flight += delta;
    pthread_mutex_unlock (&self->lock);
}

int64_t
sb_rest_metrics_in_flight_now (sb_rest_metrics_t *self)
{
    pthread_mutex_lock (&self->lock);
    int64_t value = self->in_flight;
    pthread_mutex_unlock (&self->lock);
    return value;
}

void
sb_rest_metrics_connections (sb_rest_metrics_t *self, int delta)
{
    pthread_mutex_lock (&self->lock);
    self->connections += delta;
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_metrics_connection_refused (sb_rest_metrics_t *self, sb_rest_refused_t reason)
{
    if ((unsigned) reason >= SB_REST_REFUSED_MAX)
        return;
    pthread_mutex_lock (&self->lock);
    self->refused [reason]++;
    pthread_mutex_unlock (&self->lock);
}

void
sb_rest_metrics_connection_closed (sb_rest_metrics_t *self, sb_rest_closed_t reason)
{
    if ((unsigned) reason >= SB_REST_CLOSED_MAX)
        return;
    pthread_mutex_lock (&self->lock);
    self->closed [reason]++;
    pthread_mutex_unlock (&self->lock);
}

uint64_t
sb_rest_metrics_requests (sb_rest_metrics_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t value = self->requests;
    pthread_mutex_unlock (&self->lock);
    return value;
}

/*  A growing text buffer; on allocation failure it turns NULL and stays so. */
typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} s_text_t;

static void
s_printf (s_text_t *text, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

static void
s_printf (s_text_t *text, const char *fmt, ...)
{
    if (!text->data)
        return;
    while (true) {
        va_list args;
        va_start (args, fmt);
        int written = vsnprintf (text->data + text->size, text->capacity - text->size, fmt, args);
        va_end (args);
        if (written < 0) {
            free (text->data);
            text->data = NULL;
            return;
        }
        if ((size_t) written < text->capacity - text->size) {
            text->size += (size_t) written;
            return;
        }
        size_t capacity = text->capacity * 2 + (size_t) written;
        char *data = realloc (text->data, capacity);
        if (!data) {
            free (text->data);
            text->data = NULL;
            return;
        }
        text->data = data;
        text->capacity = capacity;
    }
}

char *
sb_rest_metrics_render (sb_rest_metrics_t *self, size_t *size)
{
    s_text_t text = { malloc (16384), 0, 16384 };
    pthread_mutex_lock (&self->lock);

    s_printf (&text,
        "# HELP sb_rest_requests_total HTTP requests answered by the REST bridge, "
        "by bus service, method and HTTP status.\n"
        "# TYPE sb_rest_requests_total counter\n");
    for (size_t i = 0; i < S_SERIES_MAX; i++) {
        s_series_t *series = &self->series [i];
        for (size_t s = 0; series->used && s < S_STATUS_MAX && series->statuses [s]; s++)
            s_printf (&text, "sb_rest_requests_total{service=\"%s\",method=\"%s\",code=\"%d\"} %llu\n",
                      series->service, series->method, series->statuses [s],
                      (unsigned long long) series->status_counts [s]);
    }

    s_printf (&text,
        "# HELP sb_rest_request_duration_seconds Time from the request's arrival to its answer.\n"
        "# TYPE sb_rest_request_duration_seconds histogram\n");
    for (size_t i = 0; i < S_SERIES_MAX; i++) {
        s_series_t *series = &self->series [i];
        if (!series->used)
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b < S_BUCKETS; b++) {
            cumulative += series->buckets [b];
            s_printf (&text, "sb_rest_request_duration_seconds_bucket{service=\"%s\",method=\"%s\",le=\"%g\"} %llu\n",
                      series->service, series->method, s_bucket_us [b] / 1e6,
                      (unsigned long long) cumulative);
        }
        s_printf (&text, "sb_rest_request_duration_seconds_bucket{service=\"%s\",method=\"%s\",le=\"+Inf\"} %llu\n",
                  series->service, series->method, (unsigned long long) series->count);
        s_printf (&text, "sb_rest_request_duration_seconds_sum{service=\"%s\",method=\"%s\"} %.6f\n",
                  series->service, series->method, series->sum_us / 1e6);
        s_printf (&text, "sb_rest_request_duration_seconds_count{service=\"%s\",method=\"%s\"} %llu\n",
                  series->service, series->method, (unsigned long long) series->count);
    }

    s_printf (&text,
        "# HELP sb_rest_requests_in_flight Requests received and not yet answered.\n"
        "# TYPE sb_rest_requests_in_flight gauge\n"
        "sb_rest_requests_in_flight %lld\n", (long long) self->in_flight);

    s_printf (&text,
        "# HELP sb_rest_bridge_errors_total Requests the bridge refused or could not complete, or whose tracing header it replaced, by reason.\n"
        "# TYPE sb_rest_bridge_errors_total counter\n");
    for (int reason = 0; reason < SB_REST_ERR_MAX; reason++)
        s_printf (&text, "sb_rest_bridge_errors_total{reason=\"%s\"} %llu\n",
                  s_error_names [reason], (unsigned long long) self->errors [reason]);

    s_printf (&text,
        "# HELP sb_rest_connections_open HTTP connections open now.\n"
        "# TYPE sb_rest_connections_open gauge\n"
        "sb_rest_connections_open %lld\n", (long long) self->connections);
    s_printf (&text,
        "# HELP sb_rest_connections_refused_total Connections closed as soon as accepted, by the limit they met.\n"
        "# TYPE sb_rest_connections_refused_total counter\n");
    for (int reason = 0; reason < SB_REST_REFUSED_MAX; reason++)
        s_printf (&text, "sb_rest_connections_refused_total{reason=\"%s\"} %llu\n",
                  s_refused_names [reason], (unsigned long long) self->refused [reason]);
    s_printf (&text,
        "# HELP sb_rest_connections_closed_total Connections the bridge closed to protect itself, by reason.\n"
        "# TYPE sb_rest_connections_closed_total counter\n");
    for (int reason = 0; reason < SB_REST_CLOSED_MAX; reason++)
        s_printf (&text, "sb_rest_connections_closed_total{reason=\"%s\"} %llu\n",
                  s_closed_names [reason], (unsigned long long) self->closed [reason]);

    pthread_mutex_unlock (&self->lock);
    if (text.data)
        *size = text.size;
    return text.data;
}
