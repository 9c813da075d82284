/*  pool.c — blocking work off the actor: the handlers of methods flagged
    SB_METHOD_BLOCKING run on worker threads of their instance, so that a
    service can use a blocking library (SQLite, LMDB, a file) the simple
    way while its instance keeps serving its other methods and its
    timers.

    Each instance gets its pool on the first blocking request: `workers`
    threads (the service's configuration key, default 1, so that a
    service's blocking handlers run one at a time and need no locks
    between them) and a queue of at most S_QUEUE_MAX jobs; past it the
    request is answered `overloaded`.  A job carries a copy of the request
    body and a "shadow" request the handler reads and answers as usual;
    its answer is kept in the shadow, not sent.  A finished job goes on
    the done list, and an eventfd wakes the actor, which sends the answer
    for the original request (sealed as the request was) — or drops it if
    the request expired meanwhile, as a deferred request's late answer is.
    The original request waits in the actor's deferred list and is found
    again by its serial number.

    On a worker thread only the request API that reads and answers is
    meaningful: sb_request_actor returns NULL there and sb_request_defer
    and sb_request_call refuse, because the actor and its links belong to
    the actor's thread.  Stopping an instance joins its workers (each
    finishes the handler it runs) and drops the jobs not started.
*/
#include "instance_private.h"

#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define S_QUEUE_MAX 1024
#define S_WORKERS_MAX 64

typedef struct s_job s_job_t;
struct s_job {
    s_job_t *next;
    sb_request_t *req;          /* the original; only touched on the actor */
    uint64_t serial;
    sb_request_t *shadow;       /* what the handler sees and answers */
    void *body;                 /* the request body (a copy) */
    size_t size;
};

struct sb_pool {
    sb_actor_t *actor;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    s_job_t *head, *tail;       /* waiting */
    size_t queued;
    s_job_t *done;              /* finished, newest first */
    bool stop;
    int event_fd;
    pthread_t threads [S_WORKERS_MAX];
    int nthreads;
};

static void
s_job_free (s_job_t *job)
{
    if (job->shadow) {
        msgpack_sbuffer_destroy (&job->shadow->buffer);
        free (job->shadow);
    }
    free (job->body);
    free (job);
}

/*  Runs one job's handler on this worker thread.  */
static void
s_run (sb_pool_t *self, s_job_t *job)
{
    sb_request_t *shadow = job->shadow;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_object obj = { .type = MSGPACK_OBJECT_NIL };
    if (job->size && sb_wire_decode (job->body, job->size, &unpacked, &obj)) {
        sb__request_answer (shadow, NULL, SB_E_BAD_REQUEST, "request body is not valid MessagePack");
        shadow->closed = true;
    }
    else {
        shadow->in_handler = true;
        shadow->body = &obj;
        int rc = shadow->method->handler (shadow, &obj, self->actor->state);
        shadow->body = NULL;
        shadow->in_handler = false;
        if (!shadow->closed) {
            char text [SB_TEXT_MAX + 1];
            snprintf (text, sizeof text, "%s.%s failed", self->actor->service->name,
                      shadow->method->name);
            sb__request_answer (shadow, NULL, rc ? SB_E_INTERNAL : SB_OK, rc ? text : NULL);
            shadow->closed = true;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
}

static void *
s_worker (void *arg)
{
    sb_pool_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        s_job_t *job = self->head;
        if (!job) {
            pthread_cond_wait (&self->wake, &self->lock);
            continue;
        }
        self->head = job->next;
        if (!self->head)
            self->tail = NULL;
        self->queued--;
        pthread_mutex_unlock (&self->lock);
        s_run (self, job);
        pthread_mutex_lock (&self->lock);
        job->next = self->done;
        self->done = job;
        uint64_t one = 1;
        if (write (self->event_fd, &one, sizeof one) < 0) {
            /*  The counter is full (never with a drained eventfd): the
                actor is woken already.  */
        }
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

/*  The actor's side: answers the requests whose jobs are done.  */
static void
s_on_done (int fd, void *arg)
{
    sb_pool_t *self = arg;
    uint64_t count;
    if (read (fd, &count, sizeof count) < 0) {
        /*  Nothing to read: another wake-up took it.  */
    }
    pthread_mutex_lock (&self->lock);
    s_job_t *done = self->done;
    self->done = NULL;
    pthread_mutex_unlock (&self->lock);
    while (done) {
        s_job_t *job = done;
        done = job->next;
        sb_request_t *req = sb__request_find (self->actor, job->req, job->serial);
        if (req) {
            sb_request_t *shadow = job->shadow;
            if (!req->closed)
                sb__request_answer (req, shadow->shadow_code == SB_OK ? &shadow->buffer : NULL,
                                    shadow->shadow_code, shadow->shadow_text);
            req->closed = true;
            sb__request_free (req);
        }
        s_job_free (job);
    }
}

/*  The instance's pool, made on first use.  NULL when it cannot be.  */
static sb_pool_t *
s_pool (sb_actor_t *actor)
{
    if (actor->pool)
        return actor->pool;
    sb_pool_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->actor = actor;
    self->event_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->event_fd < 0 || sb_actor_watch_fd (actor, self->event_fd, s_on_done, self)) {
        if (self->event_fd >= 0)
            close (self->event_fd);
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    int want = actor->workers > 0 && actor->workers <= S_WORKERS_MAX ? actor->workers : 1;
    for (int i = 0; i < want; i++)
        if (pthread_create (&self->threads [self->nthreads], NULL, s_worker, self) == 0)
            self->nthreads++;
    actor->pool = self;
    return self;
}

int
sb__pool_submit (sb_actor_t *actor, sb_request_t *req, const void *body, size_t size)
{
    sb_pool_t *self = s_pool (actor);
    if (!self || self->nthreads == 0)
        return -1;
    s_job_t *job = calloc (1, sizeof *job);
    sb_request_t *shadow = calloc (1, sizeof *shadow);
    void *copy = size ? malloc (size) : NULL;
    if (!job || !shadow || (size && !copy)) {
        free (job);
        free (shadow);
        free (copy);
        return -1;
    }
    if (size)
        memcpy (copy, body, size);
    /*  The shadow is what a handler needs to read and answer: method,
        deadline, trace; answers stay in it (sb__request_answer).  */
    shadow->actor = actor;
    shadow->method = req->method;
    shadow->deadline = req->deadline;
    shadow->received = req->received;
    shadow->has_trace = req->has_trace;
    memcpy (shadow->trace, req->trace, sizeof shadow->trace);
    shadow->shadow = true;
    msgpack_sbuffer_init (&shadow->buffer);
    msgpack_packer_init (&shadow->packer, &shadow->buffer, msgpack_sbuffer_write);
    *job = (s_job_t) { NULL, req, req->serial, shadow, copy, size };
    pthread_mutex_lock (&self->lock);
    bool full = self->queued >= S_QUEUE_MAX;
    if (!full) {
        if (self->tail)
            self->tail->next = job;
        else
            self->head = job;
        self->tail = job;
        self->queued++;
        pthread_cond_signal (&self->wake);
    }
    pthread_mutex_unlock (&self->lock);
    if (full) {
        s_job_free (job);
        return -1;
    }
    return 0;
}

void
sb__pool_destroy (sb_pool_t **self_p)
{
    sb_pool_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_broadcast (&self->wake);
    pthread_mutex_unlock (&self->lock);
    for (int i = 0; i < self->nthreads; i++)
        pthread_join (self->threads [i], NULL);
    for (s_job_t *lists [2] = { self->head, self->done }, **l = lists; l < lists + 2; l++)
        while (*l) {
            s_job_t *job = *l;
            *l = job->next;
            s_job_free (job);
        }
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->wake);
    close (self->event_fd);
    free (self);
    *self_p = NULL;
}
