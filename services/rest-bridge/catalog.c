/*  catalog.c — the services of the bus as the REST bridge knows them
    (catalog.h): learnt with sys.services and sys.describe, published to
    the HTTP threads under a read-write lock.

    One refresh at a time, on the actor: sys.services, then one
    sys.describe per distinct service name (at most S_SERVICES_MAX), each
    answer kept in its slot; when the last one is in, the new set is
    built (the local directory first, then each service it does not
    describe, from the schema its plugin carries, or, for a plugin that
    carries none, a schema of its methods' flags and timeouts alone), the
    document rendered, both swapped in.  A describe that fails leaves its
    service out of this round.  Slots live in the catalog, so a callback
    never outlives what it writes to: the actor's calls are dropped
    without callback when it stops, before the catalog is destroyed.
*/
#include "catalog.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_SERVICES_MAX 256
#define S_LOOKUP_MS 3000
#define S_RETRY_MS 1000

typedef struct {
    sb_rest_catalog_t *owner;
    char name [SB_NAME_MAX + 1];
    char *text;                     /* the service's schema, JSON; NULL: none */
} s_slot_t;

struct sb_rest_catalog {
    /*  Published: read by HTTP threads under `lock`.  */
    pthread_rwlock_t lock;
    sb_schema_set_t *set;
    char *openapi;
    size_t openapi_size;
    /*  Actor side.  */
    sb_actor_t *actor;
    char *dir;                      /* local overrides, or NULL */
    int refresh_ms;
    sb_rest_catalog_render_fn *render;
    void *arg;
    s_slot_t slots [S_SERVICES_MAX];
    size_t nslots;
    size_t pending;                 /* describes not answered yet */
};

/*  Builds a set (the directory, then the slots) and its document and
    publishes both.  0, or -1 with err (what was published stays).  */
static int
s_publish (sb_rest_catalog_t *self, sb_error_t *err)
{
    sb_schema_set_t *set = self->dir ? sb_schema_set_load_dir (self->dir, err) : sb_schema_set_new ();
    if (!set)
        return -1;
    for (size_t i = 0; i < self->nslots; i++) {
        s_slot_t *slot = &self->slots [i];
        bool described = false;
        for (size_t k = 0; k < sb_schema_set_size (set) && !described; k++)
            described = !strcmp (sb_method_schema_service (sb_schema_set_method (set, k)), slot->name);
        sb_error_t why;
        if (slot->text && !described
        &&  sb_schema_set_load_buffer (set, slot->name, slot->text, strlen (slot->text), &why))
            fprintf (stderr, "rest-bridge: the contract of '%s' from the bus: %s\n", slot->name,
                     why.text);
    }
    char *openapi = self->render (self->arg, set, err);
    if (!openapi) {
        sb_schema_set_destroy (&set);
        return -1;
    }
    pthread_rwlock_wrlock (&self->lock);
    sb_schema_set_t *old_set = self->set;
    char *old_openapi = self->openapi;
    self->set = set;
    self->openapi = openapi;
    self->openapi_size = strlen (openapi);
    pthread_rwlock_unlock (&self->lock);
    sb_schema_set_destroy (&old_set);
    free (old_openapi);
    return 0;
}

static void s_refresh (void *arg);

static void
s_again (sb_rest_catalog_t *self, int ms)
{
    sb_actor_after (self->actor, ms, s_refresh, self);
}

/*  The value of `key` in a map, or NULL.  */
static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    size_t len = strlen (key);
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len && !memcmp (k->via.str.ptr, key, len))
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

static bool
s_str (const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return false;
    memcpy (out, o->via.str.ptr, o->via.str.size);
    out [o->via.str.size] = 0;
    return true;
}

static json_int_t
s_uint (const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= 86400000
         ? (json_int_t) o->via.u64 : 0;
}

/*  A schema of the methods' flags and times alone, for a service whose
    plugin carries none: its methods are listed, their bodies unchecked. */
static char *
s_schema_of_methods (const char *service, const msgpack_object *answer)
{
    char version [SB_NAME_MAX + 1] = "";
    s_str (s_get (answer, "version"), version, sizeof version);
    json_t *methods = json_object ();
    const msgpack_object *list = s_get (answer, "methods");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *m = &list->via.array.ptr [i];
        char name [SB_NAME_MAX + 1];
        if (!s_str (s_get (m, "name"), name, sizeof name))
            continue;
        json_object_set_new (methods, name, json_pack ("{s:b,s:I,s:I}",
            "idempotent", (int) (s_uint (s_get (m, "flags")) & SB_METHOD_IDEMPOTENT),
            "timeout_ms", s_uint (s_get (m, "timeout_ms")),
            "cache_ttl_ms", s_uint (s_get (m, "cache_ttl_ms"))));
    }
    if (json_object_size (methods) == 0) {
        json_decref (methods);
        return NULL;
    }
    json_t *doc = json_pack ("{s:s,s:s,s:o}", "service", service, "version", version,
                             "methods", methods);
    char *text = doc ? json_dumps (doc, JSON_COMPACT) : NULL;
    json_decref (doc);
    return text;
}

static void
s_on_describe (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    s_slot_t *slot = arg;
    sb_rest_catalog_t *self = slot->owner;
    if (!err) {
        const msgpack_object *schema = s_get (body, "schema");
        if (schema && schema->type == MSGPACK_OBJECT_STR)
            slot->text = strndup (schema->via.str.ptr, schema->via.str.size);
        else
            slot->text = s_schema_of_methods (slot->name, body);
    }
    if (--self->pending > 0)
        return;
    sb_error_t why;
    if (s_publish (self, &why))
        fprintf (stderr, "rest-bridge: catalog not refreshed: %s\n", why.text);
    s_again (self, self->refresh_ms);
}

static void
s_slots_clear (sb_rest_catalog_t *self)
{
    for (size_t i = 0; i < self->nslots; i++)
        free (self->slots [i].text);
    self->nslots = 0;
}

/*  Adds the names of a sys.services list, once each.  */
static void
s_add_names (sb_rest_catalog_t *self, const msgpack_object *list)
{
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        char name [SB_NAME_MAX + 1];
        if (self->nslots == S_SERVICES_MAX || !s_str (s_get (&list->via.array.ptr [i], "name"), name, sizeof name)
        ||  !sb_name_valid (name, SB_NAME_SERVICE))
            continue;
        bool seen = false;
        for (size_t k = 0; k < self->nslots && !seen; k++)
            seen = !strcmp (self->slots [k].name, name);
        if (!seen) {
            s_slot_t *slot = &self->slots [self->nslots++];
            slot->owner = self;
            strcpy (slot->name, name);
            slot->text = NULL;
        }
    }
}

static void
s_on_services (const msgpack_object *body, const sb_error_t *err, void *arg)
{
    sb_rest_catalog_t *self = arg;
    if (err) {
        s_again (self, S_RETRY_MS);
        return;
    }
    s_slots_clear (self);
    s_add_names (self, s_get (body, "services"));
    s_add_names (self, s_get (body, "remote"));
    for (size_t i = 0; i < self->nslots; i++) {
        msgpack_sbuffer buf;
        msgpack_sbuffer_init (&buf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
        sb_error_t why;
        if (sb_pack (&pk, &why, "{s:s}", "service", self->slots [i].name) == 0
        &&  sb_actor_call (self->actor, "sys", "describe", buf.data, buf.size, S_LOOKUP_MS,
                           s_on_describe, &self->slots [i], &why) == 0)
            self->pending++;
        msgpack_sbuffer_destroy (&buf);
    }
    if (self->pending == 0)
        s_again (self, S_RETRY_MS);     /* nothing on the bus yet */
}

static void
s_refresh (void *arg)
{
    static const char nil = (char) 0xc0;
    sb_rest_catalog_t *self = arg;
    if (self->pending > 0)
        return;                         /* a round is in flight; it schedules the next */
    sb_error_t err;
    if (sb_actor_call (self->actor, "sys", "services", &nil, 1, S_LOOKUP_MS,
                       s_on_services, self, &err))
        s_again (self, S_RETRY_MS);
}

sb_rest_catalog_t *
sb_rest_catalog_new (const char *dir, int refresh_ms, sb_rest_catalog_render_fn *render,
                     void *arg, sb_error_t *err)
{
    sb_rest_catalog_t *self = calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    pthread_rwlock_init (&self->lock, NULL);
    self->refresh_ms = refresh_ms;
    self->render = render;
    self->arg = arg;
    if ((dir && !(self->dir = strdup (dir))) || s_publish (self, err)) {
        if (dir && !self->dir)
            sb_error_set (err, SB_E_INTERNAL, "out of memory");
        sb_rest_catalog_destroy (&self);
    }
    return self;
}

void
sb_rest_catalog_destroy (sb_rest_catalog_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_rest_catalog_t *self = *self_p;
    s_slots_clear (self);
    sb_schema_set_destroy (&self->set);
    free (self->openapi);
    free (self->dir);
    pthread_rwlock_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

int
sb_rest_catalog_start (sb_rest_catalog_t *self, sb_actor_t *actor)
{
    self->actor = actor;
    return sb_actor_after (actor, 0, s_refresh, self);
}

const sb_schema_set_t *
sb_rest_catalog_hold (sb_rest_catalog_t *self)
{
    pthread_rwlock_rdlock (&self->lock);
    return self->set;
}

void
sb_rest_catalog_release (sb_rest_catalog_t *self)
{
    pthread_rwlock_unlock (&self->lock);
}

char *
sb_rest_catalog_openapi (sb_rest_catalog_t *self, size_t *size)
{
    pthread_rwlock_rdlock (&self->lock);
    char *copy = malloc (self->openapi_size);
    if (copy) {
        memcpy (copy, self->openapi, self->openapi_size);
        *size = self->openapi_size;
    }
    pthread_rwlock_unlock (&self->lock);
    return copy;
}
