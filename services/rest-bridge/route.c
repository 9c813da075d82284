/*  route.c — route aliases of the REST bridge (see route.h).  */
#include "route.h"
#include "switchboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define S_ROUTES_MAX 256
#define S_SEGMENTS_MAX 16
#define S_SEGMENT_MAX SB_REST_PARAM_VALUE_MAX

typedef struct {
    char http_method [8];
    size_t segments_size;
    char segments [S_SEGMENTS_MAX][S_SEGMENT_MAX + 1];   /* "{name}" for a parameter */
    char names [S_SEGMENTS_MAX][S_SEGMENT_MAX + 1];      /* parameter name, without braces */
    char service [SB_NAME_MAX + 1];
    char method [SB_NAME_MAX + 1];
} s_route_t;

struct sb_rest_routes {
    size_t size;
    s_route_t routes [S_ROUTES_MAX];
};

static const char *s_methods [] = { "GET", "POST", "PUT", "PATCH", "DELETE", NULL };

bool
sb_rest_method_has_body (const char *http_method)
{
    return !strcmp (http_method, "POST") || !strcmp (http_method, "PUT")
        || !strcmp (http_method, "PATCH");
}

static bool
s_is_param (const char *segment)
{
    size_t length = strlen (segment);
    return length > 2 && segment [0] == '{' && segment [length - 1] == '}';
}

/*  Splits a path into segments; -1 if too many or too long.  */
static int
s_split (const char *path, char segments [][S_SEGMENT_MAX + 1], size_t *size)
{
    *size = 0;
    if (*path != '/')
        return -1;
    while (*path == '/') {
        path++;
        size_t length = strcspn (path, "/");
        if (length == 0 && *path == 0)
            break;                  /* trailing slash */
        if (length > S_SEGMENT_MAX || *size >= S_SEGMENTS_MAX)
            return -1;
        memcpy (segments [*size], path, length);
        segments [(*size)++][length] = 0;
        path += length;
    }
    return 0;
}

static int
s_parse_entry (s_route_t *route, const char *entry, size_t length, char *why)
{
    char text [1024];
    if (length >= sizeof text) {
        snprintf (why, 256, "alias too long");
        return -1;
    }
    memcpy (text, entry, length);
    text [length] = 0;
    char method [16], path [600], target [140];
    char extra;
    if (sscanf (text, " %15s %599s %139s %c", method, path, target, &extra) != 3) {
        snprintf (why, 256, "alias '%.160s' is not 'METHOD /path service.method'", text);
        return -1;
    }
    bool known = false;
    for (int i = 0; s_methods [i]; i++)
        if (!strcasecmp (method, s_methods [i])) {
            snprintf (route->http_method, sizeof route->http_method, "%s", s_methods [i]);
            known = true;
        }
    if (!known) {
        snprintf (why, 256, "alias '%.160s': method must be GET, POST, PUT, PATCH or DELETE", text);
        return -1;
    }
    if (s_split (path, route->segments, &route->segments_size) != 0
    ||  route->segments_size == 0) {
        snprintf (why, 256, "alias '%.160s': bad path", text);
        return -1;
    }
    size_t params = 0;
    for (size_t i = 0; i < route->segments_size; i++)
        if (s_is_param (route->segments [i])) {
            size_t name_size = strlen (route->segments [i]) - 2;
            memcpy (route->names [i], route->segments [i] + 1, name_size);
            route->names [i][name_size] = 0;
            params++;
        }
    if (params > SB_REST_PARAMS_MAX) {
        snprintf (why, 256, "alias '%.160s': too many parameters", text);
        return -1;
    }
    char *dot = strchr (target, '.');
    if (!dot || (size_t) (dot - target) > SB_NAME_MAX || strlen (dot + 1) > SB_NAME_MAX) {
        snprintf (why, 256, "alias '%.160s': target must be service.method", text);
        return -1;
    }
    *dot = 0;
    memcpy (route->service, target, (size_t) (dot - target) + 1);
    memcpy (route->method, dot + 1, strlen (dot + 1) + 1);
    if (!sb_name_valid (route->service, SB_NAME_SERVICE)
    ||  !sb_name_valid (route->method, SB_NAME_METHOD)) {
        snprintf (why, 256, "alias '%.160s': bad service or method name", text);
        return -1;
    }
    return 0;
}

sb_rest_routes_t *
sb_rest_routes_new (const char *aliases, char *why)
{
    sb_rest_routes_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (why, 256, "out of memory");
        return NULL;
    }
    const char *cursor = aliases ? aliases : "";
    while (*cursor) {
        cursor += strspn (cursor, "; \t\r\n");
        size_t length = strcspn (cursor, ";\n");
        if (length == 0)
            break;
        if (self->size >= S_ROUTES_MAX) {
            snprintf (why, 256, "too many aliases (at most %d)", S_ROUTES_MAX);
            sb_rest_routes_destroy (&self);
            return NULL;
        }
        if (s_parse_entry (&self->routes [self->size], cursor, length, why) != 0) {
            sb_rest_routes_destroy (&self);
            return NULL;
        }
        self->size++;
        cursor += length;
    }
    return self;
}

void
sb_rest_routes_destroy (sb_rest_routes_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

size_t
sb_rest_routes_size (const sb_rest_routes_t *self)
{
    return self->size;
}

int
sb_rest_routes_match (const sb_rest_routes_t *self, const char *http_method,
                      const char *path, sb_rest_match_t *match, char *allow)
{
    char segments [S_SEGMENTS_MAX][S_SEGMENT_MAX + 1];
    size_t size;
    if (self->size == 0 || s_split (path, segments, &size) != 0)
        return -1;
    int result = -1;
    allow [0] = 0;
    for (size_t r = 0; r < self->size; r++) {
        const s_route_t *route = &self->routes [r];
        if (route->segments_size != size)
            continue;
        size_t i;
        for (i = 0; i < size; i++)
            if (!s_is_param (route->segments [i]) && strcmp (route->segments [i], segments [i]))
                break;
        if (i < size)
            continue;
        if (strcmp (route->http_method, http_method)) {
            size_t used = strlen (allow);
            if (!strstr (allow, route->http_method) && used + 10 < 64)
                snprintf (allow + used, 64 - used, "%s%s", used ? ", " : "", route->http_method);
            if (result < 0)
                result = 0;
            continue;
        }
        match->service = route->service;
        match->method = route->method;
        match->params_size = 0;
        for (i = 0; i < size; i++) {
            if (!s_is_param (route->segments [i]))
                continue;
            match->names [match->params_size] = route->names [i];
            size_t length = strlen (segments [i]);     /* <= S_SEGMENT_MAX */
            memcpy (match->values [match->params_size], segments [i], length + 1);
            match->params_size++;
        }
        return 1;
    }
    return result;
}

void
sb_rest_routes_describe (const sb_rest_routes_t *self, size_t index,
                         char *http_method, char *path, char *target)
{
    const s_route_t *route = &self->routes [index];
    snprintf (http_method, 8, "%s", route->http_method);
    size_t used = 0;
    path [0] = 0;
    for (size_t i = 0; i < route->segments_size && used < 600; i++)
        used += (size_t) snprintf (path + used, 600 - used, "/%s", route->segments [i]);
    snprintf (target, 140, "%s.%s", route->service, route->method);
}
