/*  openapi.h — the OpenAPI 3.1 document the REST bridge serves.

    Built from a schema set, through the public API (switchboard.h,
    "Method schemas"): one `POST /v1/{service}/{method}` operation per
    method, with its request and reply schemas as components (translated
    from our subset: "binary" becomes the {"$base64": "..."} object that
    carries binary data in JSON), the error body and the HTTP status of
    every bus error code, and the bridge's fixed routes (GET /v1/services,
    /healthz, /metrics, /openapi.json).  Method flags appear as extensions
    x-switchboard-idempotent, -timeout-ms and -cache-ttl-ms.

    The document is a jansson json_t so that the bridge can add what only
    it knows (servers, security schemes, route aliases) before serving it.
*/
#ifndef SB_REST_OPENAPI_H_INCLUDED
#define SB_REST_OPENAPI_H_INCLUDED

#include "switchboard.h"

#include <jansson.h>

/*  Returns a new document (the caller json_decref's it), or NULL with err
    when out of memory.  title NULL means "Switchboard"; version NULL
    means the library's version.  An empty or NULL set still gives a valid
    document with the fixed routes.  */
json_t *sb_rest_openapi_build (const sb_schema_set_t *schemas, const char *title,
                               const char *version, sb_error_t *err);

/*  The same document as compact JSON text: malloc'd, NUL-terminated,
    the caller frees it.  NULL with err on failure.  */
char *sb_rest_openapi_dumps (const sb_schema_set_t *schemas, const char *title,
                             const char *version, sb_error_t *err);

#endif
