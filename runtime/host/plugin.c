/*  plugin.c — loads a service plugin and validates its descriptor.

    A plugin is untrusted input until proven otherwise: its descriptor is
    read field by field with every string bounded (strnlen) and the method
    table walked at most SB_PLUGIN_METHODS_MAX entries, so a descriptor
    with a missing terminator or garbage names is refused with a reason
    instead of being followed into the weeds.  What a plugin does once it
    runs is its own business: it shares our address space.
*/
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sb_plugin {
    void *handle;                   /* from dlopen */
    const sb_service_t *service;    /* inside the loaded object */
    char *path;
    sb_schema_set_t *schema;        /* the descriptor's `schema`, loaded; NULL if none */
};

/*  Loads the schema the descriptor carries (already validated) and checks
    that it describes this service and agrees with its flags.  NULL with
    err ("PATH: reason", one line), or when there is none (err untouched). */
static sb_schema_set_t *
s_load_schema (const char *path, const sb_service_t *service, sb_error_t *err)
{
    if (!service->schema)
        return NULL;
    sb_schema_set_t *set = sb_schema_set_new ();
    sb_error_t why = { 0 };
    if (!set) {
        sb_error_set (err, SB_E_INTERNAL, "%s: out of memory", path);
        return NULL;
    }
    char name [SB_NAME_MAX + 32];
    snprintf (name, sizeof name, "%s's schema", service->name);
    if (sb_schema_set_load_buffer (set, name, service->schema, strlen (service->schema), &why))
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: %s", path, why.text);
    else
    if (sb_schema_set_size (set) == 0
    ||  strcmp (sb_method_schema_service (sb_schema_set_method (set, 0)), service->name) != 0)
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: its schema describes service '%s', not '%s'",
                      path, sb_schema_set_size (set)
                            ? sb_method_schema_service (sb_schema_set_method (set, 0)) : "",
                      service->name);
    else
    if (sb_schema_set_check_service (set, service, &why))
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: the plugin's flags and its schema disagree: %s",
                      path, why.text);
    else
        return set;
    sb_schema_set_destroy (&set);
    return NULL;
}

/*  A version is free text of 1 to 64 characters of [A-Za-z0-9._+~:-]
    (it is shown, never parsed).  */
static bool
s_valid_version (const char *s)
{
    if (!s)
        return false;
    size_t len = strnlen (s, 65);
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || strchr ("._+~:-", c)))
            return false;
    }
    return true;
}

int
sb_plugin_validate (const sb_service_t *service, char *reason, size_t size)
{
    if (!service) {
        snprintf (reason, size, "descriptor is NULL");
        return -1;
    }
    if (service->abi_version != SB_ABI_VERSION) {
        snprintf (reason, size, "wrong ABI version %u (this sb supports %d)",
                  (unsigned) service->abi_version, SB_ABI_VERSION);
        return -1;
    }
    if (!sb_name_valid (service->name, SB_NAME_SERVICE)) {
        snprintf (reason, size, "invalid descriptor: service name must be 1-64 of [A-Za-z0-9_.-]");
        return -1;
    }
    if (strncmp (service->name, "sys", 3) == 0) {
        snprintf (reason, size, "invalid descriptor: service name '%s' is reserved (starts with 'sys')",
                  service->name);
        return -1;
    }
    if (!s_valid_version (service->version)) {
        snprintf (reason, size, "invalid descriptor: service '%s' has no valid version "
                  "(1-64 of [A-Za-z0-9._+~:-])", service->name);
        return -1;
    }
    if (service->schema && strnlen (service->schema, SB_SCHEMA_FILE_MAX + 1) > SB_SCHEMA_FILE_MAX) {
        snprintf (reason, size, "invalid descriptor: schema longer than %d bytes",
                  SB_SCHEMA_FILE_MAX);
        return -1;
    }
    for (size_t i = 0; i < sizeof service->reserved / sizeof service->reserved [0]; i++)
        if (service->reserved [i]) {
            snprintf (reason, size, "invalid descriptor: reserved field %zu is not zero", i);
            return -1;
        }
    if (!service->methods) {
        snprintf (reason, size, "invalid descriptor: service '%s' has no methods", service->name);
        return -1;
    }
    size_t count = 0;
    while (count < SB_PLUGIN_METHODS_MAX && service->methods [count].name)
        count++;
    if (count == SB_PLUGIN_METHODS_MAX) {
        snprintf (reason, size, "invalid descriptor: method table not terminated within %d entries",
                  SB_PLUGIN_METHODS_MAX);
        return -1;
    }
    if (count == 0) {
        snprintf (reason, size, "invalid descriptor: service '%s' has no methods", service->name);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const sb_method_t *method = &service->methods [i];
        if (!sb_name_valid (method->name, SB_NAME_METHOD)) {
            snprintf (reason, size, "invalid descriptor: method %zu: name must be 1-64 of [A-Za-z0-9_.-]", i);
            return -1;
        }
        if (!method->handler) {
            snprintf (reason, size, "invalid descriptor: method '%s' has no handler", method->name);
            return -1;
        }
        if (method->flags & ~(unsigned) (SB_METHOD_IDEMPOTENT | SB_METHOD_BLOCKING)) {
            snprintf (reason, size, "invalid descriptor: method '%s' has unknown flags 0x%x",
                      method->name, method->flags);
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp (service->methods [j].name, method->name) == 0) {
                snprintf (reason, size, "invalid descriptor: method '%s' is listed twice", method->name);
                return -1;
            }
    }
    return 0;
}

/*  dlerror() texts often start with the path we already print, and may
    hold newlines; keep one line, without the repetition.  */
static void
s_dlerror_text (const char *path, char *out, size_t size)
{
    const char *text = dlerror ();
    if (!text)
        text = "unknown dlopen error";
    size_t path_len = strlen (path);
    if (strncmp (text, path, path_len) == 0 && text [path_len] == ':')
        text += path_len + 1;
    while (*text == ' ')
        text++;
    snprintf (out, size, "%s", text);
    for (char *c = out; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

sb_plugin_t *
sb_plugin_load (const char *path, sb_error_t *err)
{
    char reason [SB_ERROR_TEXT_MAX];
    struct stat st;
    if (!path || !*path) {
        sb_error_set (err, SB_E_BAD_REQUEST, "(empty plugin path)");
        return NULL;
    }
    if (stat (path, &st) == -1) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: %s", path,
                      errno == ENOENT ? "no such file" : strerror (errno));
        return NULL;
    }
    if (!S_ISREG (st.st_mode)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not a regular file", path);
        return NULL;
    }
    /*  dlopen searches the library path for names without a slash: make
        sure it opens this very file.  */
    char *full = strchr (path, '/') ? strdup (path) : NULL;
    if (!full) {
        size_t n = strlen (path) + 3;
        full = malloc (n);
        if (full)
            snprintf (full, n, "./%s", path);
    }
    if (!full) {
        sb_error_set (err, SB_E_INTERNAL, "%s: out of memory", path);
        return NULL;
    }
    dlerror ();
    void *handle = dlopen (full, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        s_dlerror_text (full, reason, sizeof reason);
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not a loadable shared object: %s", path, reason);
        free (full);
        return NULL;
    }
    dlerror ();
    const sb_service_t *service = (const sb_service_t *) dlsym (handle, SB_SERVICE_SYMBOL);
    if (!service) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: no '%s' symbol: not a Switchboard plugin (use SB_SERVICE)",
                      path, SB_SERVICE_SYMBOL);
        dlclose (handle);
        free (full);
        return NULL;
    }
    if (sb_plugin_validate (service, reason, sizeof reason) == -1) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: %s", path, reason);
        dlclose (handle);
        free (full);
        return NULL;
    }
    sb_error_t why = { 0 };
    sb_schema_set_t *schema = s_load_schema (path, service, &why);
    sb_plugin_t *self = (schema || !service->schema) ? calloc (1, sizeof *self) : NULL;
    if (!self) {
        if (service->schema && !schema) {
            if (err)
                *err = why;
        }
        else
            sb_error_set (err, SB_E_INTERNAL, "%s: out of memory", path);
        sb_schema_set_destroy (&schema);
        dlclose (handle);
        free (full);
        return NULL;
    }
    self->schema = schema;
    self->handle = handle;
    self->service = service;
    self->path = full;
    return self;
}

void
sb_plugin_destroy (sb_plugin_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_plugin_t *self = *self_p;
    sb_schema_set_destroy (&self->schema);
    dlclose (self->handle);
    free (self->path);
    free (self);
    *self_p = NULL;
}

const sb_service_t *
sb_plugin_service (const sb_plugin_t *self)
{
    return self->service;
}

const sb_schema_set_t *
sb_plugin_schema (const sb_plugin_t *self)
{
    return self->schema;
}

const char *
sb_plugin_path (const sb_plugin_t *self)
{
    return self->path;
}

char *
sb_plugin_resolve (const char *name, const char *search_path, sb_error_t *err)
{
    if (!name || !*name) {
        sb_error_set (err, SB_E_BAD_REQUEST, "(empty plugin name)");
        return NULL;
    }
    if (strchr (name, '/'))
        return strdup (name);
    size_t name_len = strlen (name);
    bool has_suffix = name_len > 3 && strcmp (name + name_len - 3, ".so") == 0;
    const char *dirs = search_path ? search_path : "";
    const char *dir = dirs;
    while (*dir) {
        size_t dir_len = strcspn (dir, ":");
        if (dir_len > 0 && dir_len < 4096) {
            size_t size = dir_len + name_len + 8;
            char *candidate = malloc (size);
            if (!candidate) {
                sb_error_set (err, SB_E_INTERNAL, "%s: out of memory", name);
                return NULL;
            }
            snprintf (candidate, size, "%.*s/%s%s", (int) dir_len, dir, name, has_suffix ? "" : ".so");
            if (access (candidate, F_OK) == 0)
                return candidate;
            free (candidate);
        }
        dir += dir_len;
        if (*dir == ':')
            dir++;
    }
    sb_error_set (err, SB_E_BAD_REQUEST, "%s: no such plugin in %s (give a path, e.g. ./%s%s)",
                  name, *dirs ? dirs : "(no plugin directory)", name, has_suffix ? "" : ".so");
    return NULL;
}
