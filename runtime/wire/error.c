/*  error.c — error codes of the bus: names, HTTP statuses, sb_error_t.

    The codes are part of the wire protocol (docs/protocol.md); the table
    here is the single place that maps them to names and HTTP statuses.
*/
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int http_status;
} s_codes [SB_E_CODE_MAX + 1] = {
    [SB_OK] = { "ok", 200 },
    [SB_E_BAD_REQUEST] = { "bad_request", 400 },
    [SB_E_UNAUTHORIZED] = { "unauthorized", 401 },
    [SB_E_FORBIDDEN] = { "forbidden", 403 },
    [SB_E_NOT_FOUND] = { "not_found", 404 },
    [SB_E_OVERLOADED] = { "overloaded", 429 },
    [SB_E_INTERNAL] = { "internal", 500 },
    [SB_E_UNAVAILABLE] = { "unavailable", 503 },
    [SB_E_TIMEOUT] = { "timeout", 504 },
};

const char *
sb_code_name (sb_code_t code)
{
    return (unsigned) code <= SB_E_CODE_MAX ? s_codes [code].name : "unknown";
}

int
sb_code_http_status (sb_code_t code)
{
    return (unsigned) code <= SB_E_CODE_MAX ? s_codes [code].http_status : 500;
}

int
sb_code_from_name (const char *name)
{
    for (int code = 0; name && code <= SB_E_CODE_MAX; code++)
        if (strcmp (s_codes [code].name, name) == 0)
            return code;
    return -1;
}

int
sb_error_set (sb_error_t *err, sb_code_t code, const char *fmt, ...)
{
    if (err) {
        va_list args;
        va_start (args, fmt);
        err->code = code;
        vsnprintf (err->text, sizeof err->text, fmt, args);
        va_end (args);
    }
    return -1;
}
