/*  service_config.c — sb_config_t over CZMQ's zconfig (ZPL, rfc.zeromq.org/spec:4).

    A tree owns the zconfig root and the views handed to services; a view
    only names its section and reads the tree's current root, so loading
    a file after taking views is harmless.

    zconfig reports a syntax error by printing "(LINE) reason" on standard
    output, and returns NULL.  To turn that into one line a user can act
    on (and keep stdout clean), the parse runs with stdout pointed at an
    anonymous file, which is then read back.  That swaps a process-wide
    descriptor, so it is done before any service thread exists.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SB_CONFIG_ASSIGNMENT_MAX 4096

struct sb_config {
    zconfig_t *root;        /* tree only */
    zlistx_t *views;        /* tree only: sb_config_t *, destroyed with it */
    sb_config_t *tree;      /* view only: the tree it reads */
    char *service;          /* view only: its section */
};

sb_config_t *
sb_config_new (void)
{
    sb_config_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->root = zconfig_new ("root", NULL);
    self->views = zlistx_new ();
    if (!self->root || !self->views) {
        sb_config_destroy (&self);
        return NULL;
    }
    return self;
}

void
sb_config_destroy (sb_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_config_t *self = *self_p;
    if (self->views) {
        sb_config_t *view = (sb_config_t *) zlistx_first (self->views);
        while (view) {
            free (view->service);
            free (view);
            view = (sb_config_t *) zlistx_next (self->views);
        }
        zlistx_destroy (&self->views);
    }
    zconfig_destroy (&self->root);
    free (self);
    *self_p = NULL;
}

/*  Reads a whole file, bounded.  Returns a NUL-terminated buffer or NULL
    with err filled.  */
static char *
s_read_file (const char *path, sb_error_t *err)
{
    FILE *file = fopen (path, "rb");
    if (!file) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: %s", path,
                      errno == ENOENT ? "no such file" : strerror (errno));
        return NULL;
    }
    char *text = malloc (SB_CONFIG_FILE_MAX + 1);
    size_t size = text ? fread (text, 1, SB_CONFIG_FILE_MAX + 1, file) : 0;
    bool failed = !text || ferror (file);
    fclose (file);
    if (failed) {
        free (text);
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot read", path);
        return NULL;
    }
    if (size > SB_CONFIG_FILE_MAX) {
        free (text);
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: larger than %d bytes", path, SB_CONFIG_FILE_MAX);
        return NULL;
    }
    if (memchr (text, '\0', size)) {
        free (text);
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: binary data (a NUL byte) in a text file", path);
        return NULL;
    }
    text [size] = '\0';
    return text;
}

/*  Finds "(LINE) reason" in what zconfig logged.  */
static void
s_parse_error (const char *path, const char *log, sb_error_t *err)
{
    for (const char *p = log ? strchr (log, '(') : NULL; p; p = strchr (p + 1, '(')) {
        int line = 0, used = 0;
        if (sscanf (p, "(%d) %n", &line, &used) == 1 && used > 0) {
            const char *reason = p + used;
            int reason_len = (int) strcspn (reason, "\r\n");
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: line %d: %.*s", path, line, reason_len, reason);
            return;
        }
    }
    sb_error_set (err, SB_E_BAD_REQUEST, "%s: not valid ZPL", path);
}

/*  Parses ZPL text.  zconfig prints its syntax errors on standard output
    (zclock_log); they are caught in an anonymous file for the duration of
    the parse, and the first line of them returned in `log`.  */
static zconfig_t *
s_parse (char *text, char *log, size_t size)
{
    FILE *capture = tmpfile ();
    int saved = capture ? dup (STDOUT_FILENO) : -1;
    fflush (stdout);
    if (saved >= 0 && dup2 (fileno (capture), STDOUT_FILENO) == -1) {
        close (saved);
        saved = -1;
    }
    zconfig_t *root = zconfig_str_load (text);
    fflush (stdout);
    if (saved >= 0) {
        dup2 (saved, STDOUT_FILENO);
        close (saved);
        rewind (capture);
        if (!fgets (log, (int) size, capture))
            log [0] = '\0';
    }
    if (capture)
        fclose (capture);
    return root;
}

int
sb_config_load (sb_config_t *self, const char *path, sb_error_t *err)
{
    char *text = s_read_file (path, err);
    if (!text)
        return -1;
    char log [512] = "";
    zconfig_t *root = *text ? s_parse (text, log, sizeof log) : zconfig_new ("root", NULL);
    free (text);
    if (!root) {
        s_parse_error (path, log, err);
        return -1;
    }
    zconfig_destroy (&self->root);
    self->root = root;
    return 0;
}

/*  Path segments: the first is a service name (sb_name_valid); keys are
    1 to 64 of the characters ZPL allows in names.  */
static bool
s_valid_segment (const char *s, size_t len, bool service)
{
    if (service)
        return sb__name_valid_bytes (s, len, SB_NAME_SERVICE);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s [i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
               || strchr ("_-.$@&+", c);
        if (!ok)
            return false;
    }
    return true;
}

int
sb_config_set (sb_config_t *self, const char *assignment, sb_error_t *err)
{
    size_t len = assignment ? strnlen (assignment, SB_CONFIG_ASSIGNMENT_MAX + 1) : 0;
    if (len == 0 || len > SB_CONFIG_ASSIGNMENT_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "--set: expected service/key=value");
    const char *equals = strchr (assignment, '=');
    if (!equals)
        return sb_error_set (err, SB_E_BAD_REQUEST, "--set '%.64s': expected service/key=value", assignment);
    size_t path_len = (size_t) (equals - assignment);
    const char *segment = assignment;
    int segments = 0;
    while (segment < equals) {
        size_t seg_len = strcspn (segment, "/=");
        if (!s_valid_segment (segment, seg_len, segments == 0))
            return sb_error_set (err, SB_E_BAD_REQUEST,
                                 "--set '%.64s': '%.*s' is not a valid %s name", assignment,
                                 (int) (seg_len > 64 ? 64 : seg_len), segment,
                                 segments == 0 ? "service" : "key");
        segments++;
        segment += seg_len;
        if (*segment == '/')
            segment++;
    }
    if (segments < 2 || equals [-1] == '/')
        return sb_error_set (err, SB_E_BAD_REQUEST, "--set '%.64s': expected service/key=value", assignment);
    char *path = strndup (assignment, path_len);
    if (!path)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    zconfig_put (self->root, path, equals + 1);
    free (path);
    return 0;
}

const sb_config_t *
sb_config_view (sb_config_t *self, const char *service)
{
    sb_config_t *view = calloc (1, sizeof *view);
    if (!view)
        return NULL;
    view->tree = self;
    view->service = strdup (service);
    if (!view->service || !zlistx_add_end (self->views, view)) {
        free (view->service);
        free (view);
        return NULL;
    }
    return view;
}

const char *
sb_config_get (const sb_config_t *config, const char *path)
{
    if (!config || !path || !*path)
        return NULL;
    zconfig_t *section;
    if (config->tree) {
        section = zconfig_locate (config->tree->root, config->service);
        if (!section)
            return NULL;
    }
    else
        section = config->root;
    zconfig_t *item = zconfig_locate (section, path);
    return item ? zconfig_value (item) : NULL;
}

const char *
sb_config_get_default (const sb_config_t *config, const char *path, const char *default_value)
{
    const char *value = sb_config_get (config, path);
    return value ? value : default_value;
}
