/*  catalog.h — what the REST bridge knows of the services of the bus:
    the schema set it validates requests with and the OpenAPI document it
    serves, both learnt from the bus.

    The actor asks its broker for the services (sys.services: this
    broker's and the other brokers' of the cluster), then for the
    contract of each (sys.describe: the schema its plugin carries, or
    just its methods' flags and timeouts when it carries none), builds a
    new set and document, and publishes them; again every `refresh_ms`,
    and every second while the bus lists no service or does not answer.
    A local schema directory (`schemas = DIR`) stays possible: its files,
    read again at each refresh, override what the bus says of the same
    services.

    HTTP threads read the published set and document under a read lock;
    the actor swaps them under the write lock, so a request validated
    while a refresh lands sees one set or the other, whole.
*/
#ifndef SB_REST_CATALOG_H_INCLUDED
#define SB_REST_CATALOG_H_INCLUDED

#include "switchboard.h"

typedef struct sb_rest_catalog sb_rest_catalog_t;

/*  Renders the OpenAPI document of a set (the bridge adds what only it
    knows): malloc'd JSON text, or NULL with err.  */
typedef char *(sb_rest_catalog_render_fn) (void *arg, const sb_schema_set_t *set, sb_error_t *err);

/*  A catalog publishing at once what `dir` (NULL: none) describes.  NULL
    with err when dir does not load or out of memory.  */
sb_rest_catalog_t *sb_rest_catalog_new (const char *dir, int refresh_ms,
                                        sb_rest_catalog_render_fn *render, void *arg,
                                        sb_error_t *err);
/*  After the actor stopped (no callback is pending then).  */
void sb_rest_catalog_destroy (sb_rest_catalog_t **self_p);

/*  Starts learning from the bus, on the actor's thread: the first
    lookup at once.  0, or -1.  */
int sb_rest_catalog_start (sb_rest_catalog_t *self, sb_actor_t *actor);

/*  Any thread.  The published set, read-locked until _release: find and
    validate through it, then release.  */
const sb_schema_set_t *sb_rest_catalog_hold (sb_rest_catalog_t *self);
void sb_rest_catalog_release (sb_rest_catalog_t *self);
/*  A copy of the published OpenAPI document (the caller frees it), its
    length in *size; NULL when out of memory.  */
char *sb_rest_catalog_openapi (sb_rest_catalog_t *self, size_t *size);

#endif
