/*  route.h — route aliases of the REST bridge.

    Besides the fixed `POST /v1/{service}/{method}`, an operator can map
    friendlier routes onto bus calls with the `aliases` configuration key:
    entries separated by ';' or new lines, each

        METHOD /path/with/{param}/segments service.method

    for example `GET /users/{id} users.get; POST /users users.create`.
    A request that matches calls service.method with a JSON object body
    made of its path parameters (typed by the method's request schema,
    params.h), then, for GET and DELETE,
    its query arguments, or for POST, PUT and PATCH, the members of its
    JSON object body; path parameters win over members of the same name.
    The table is built once at start and only read after.
*/
#ifndef SB_REST_ROUTE_H_INCLUDED
#define SB_REST_ROUTE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define SB_REST_PARAMS_MAX 16
#define SB_REST_PARAM_VALUE_MAX 128

typedef struct sb_rest_routes sb_rest_routes_t;

typedef struct {
    const char *service;            /* borrowed from the table */
    const char *method;
    size_t params_size;
    const char *names [SB_REST_PARAMS_MAX];  /* borrowed from the table */
    char values [SB_REST_PARAMS_MAX][SB_REST_PARAM_VALUE_MAX + 1];
} sb_rest_match_t;

/*  Parses the `aliases` text (NULL or "" gives an empty table).  Returns
    NULL with a reason in `why` (256 bytes) if an entry is malformed.  */
sb_rest_routes_t *sb_rest_routes_new (const char *aliases, char *why);
void sb_rest_routes_destroy (sb_rest_routes_t **self_p);
size_t sb_rest_routes_size (const sb_rest_routes_t *self);

/*  Looks up an HTTP method and (unescaped) path.  Returns 1 and fills
    `match` if an alias matches both; 0 if an alias matches the path but
    not the method (so the answer is 405; `allow` gets the methods that
    would match, e.g. "GET, POST", 64 bytes); -1 if no alias has this
    path.  */
int sb_rest_routes_match (const sb_rest_routes_t *self, const char *http_method,
                          const char *path, sb_rest_match_t *match, char *allow);

/*  Describes alias `index` (< size) for documentation: its HTTP method
    (8 bytes), its path as configured (600 bytes) and "service.method"
    (140 bytes).  */
void sb_rest_routes_describe (const sb_rest_routes_t *self, size_t index,
                              char *http_method, char *path, char *target);

/*  Does this HTTP method carry a JSON body for an alias?  */
bool sb_rest_method_has_body (const char *http_method);

#endif
