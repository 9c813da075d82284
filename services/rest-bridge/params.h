/*  params.h — typed alias parameters: a path parameter or query argument
    of a REST alias is text; the method's request schema says what it is
    (integer, number, boolean or string), and it goes on the bus as that,
    so that `GET /notes/{id}` calls notes.get with {"id": 7}, not "7".
    Text that does not read as the type goes as a string, and schema
    validation then names the mismatch.  One per request: the schema is
    read once, then each parameter is looked up.
*/
#ifndef SB_REST_PARAMS_H_INCLUDED
#define SB_REST_PARAMS_H_INCLUDED

#include "switchboard.h"

#include <jansson.h>

typedef struct {
    json_t *schema;                 /* the request schema, or NULL */
} sb_rest_types_t;

/*  Reads the request schema of service.method from schemas (NULL: none;
    every parameter is then a string).  */
void sb_rest_types_init (sb_rest_types_t *self, const sb_schema_set_t *schemas,
                         const char *service, const char *method);
/*  Packs `value` as the type its schema gives `name`.  */
void sb_rest_types_pack (const sb_rest_types_t *self, msgpack_packer *pk, const char *name,
                         const char *value);
void sb_rest_types_fini (sb_rest_types_t *self);

#endif
