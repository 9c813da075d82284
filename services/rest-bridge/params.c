/*  params.c — typed alias parameters (params.h).  */
#include "params.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
sb_rest_types_init (sb_rest_types_t *self, const sb_schema_set_t *schemas,
                    const char *service, const char *method)
{
    self->schema = NULL;
    const sb_method_schema_t *m = schemas ? sb_schema_set_find (schemas, service, method) : NULL;
    const char *text = m ? sb_method_schema_request_text (m) : NULL;
    if (text)
        self->schema = json_loads (text, 0, NULL);
}

void
sb_rest_types_fini (sb_rest_types_t *self)
{
    json_decref (self->schema);
    self->schema = NULL;
}

void
sb_rest_types_pack (const sb_rest_types_t *self, msgpack_packer *pk, const char *name,
                    const char *value)
{
    json_t *property = json_object_get (json_object_get (self->schema, "properties"), name);
    const char *type = json_string_value (json_object_get (property, "type"));
    char *end = NULL;
    errno = 0;
    if (type && strcmp (type, "integer") == 0 && *value) {
        long long n = strtoll (value, &end, 10);
        if (!*end && errno == 0) {
            msgpack_pack_int64 (pk, n);
            return;
        }
    }
    else
    if (type && strcmp (type, "number") == 0 && *value) {
        double d = strtod (value, &end);
        if (!*end && errno == 0 && isfinite (d)) {
            msgpack_pack_double (pk, d);
            return;
        }
    }
    else
    if (type && strcmp (type, "boolean") == 0 && (!strcmp (value, "true") || !strcmp (value, "false"))) {
        if (value [0] == 't')
            msgpack_pack_true (pk);
        else
            msgpack_pack_false (pk);
        return;
    }
    msgpack_pack_str_with_body (pk, value, strlen (value));
}
