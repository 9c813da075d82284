/*  schema.c — method schema sets: loading schema files, finding methods.

    A set holds the methods of one or more services, each read from a file
    in the format of docs/schemas.md: service, version, and per method its
    flags (idempotent, timeout_ms, cache_ttl_ms) and its request and reply
    schemas.  Loading parses a file with jansson, checks its structure,
    and has compile.c compile every schema; validation (validate.c) then
    walks a msgpack_object directly.  Methods are kept sorted by service
    and name, so finding one is a binary search.  A set is immutable once
    loaded (the public contract is in include/switchboard.h, "Method
    schemas").
*/
#include "internal.h"
#include "node.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sb_method_schema {
    char *service;              /* owned copies */
    char *name;
    const char *description;    /* borrowed from the file's json_t */
    const char *version;
    const char *service_description;
    bool idempotent;
    int timeout_ms;
    int cache_ttl_ms;
    char *request_text;         /* compact JSON of the schemas, owned; NULL: none */
    char *reply_text;
    sb_schema_node_t *request;  /* NULL = anything */
    sb_schema_node_t *reply;
    size_t file_index;          /* which file of the set described it */
};

struct sb_schema_set {
    sb_method_schema_t **methods;   /* sorted by service, then name */
    size_t size;
    json_t **files;                 /* roots of loaded files, owning the text */
    char **file_names;
    size_t file_count;
};

/*  --------------------------------------------------------------------
    Validation: the compiled schemas of a method  */

int
sb_method_schema_validate_request (const sb_method_schema_t *self, const msgpack_object *body,
                                   sb_error_t *err)
{
    return sb__schema_node_validate (self->request, body, SB_E_BAD_REQUEST, "", err);
}

int
sb_method_schema_validate_reply (const sb_method_schema_t *self, const msgpack_object *body,
                                 sb_error_t *err)
{
    return sb__schema_node_validate (self->reply, body, SB_E_INTERNAL, "reply ", err);
}

/*  --------------------------------------------------------------------
    Methods and files  */

static void
s_method_destroy (sb_method_schema_t **self_p)
{
    sb_method_schema_t *self = *self_p;
    if (!self)
        return;
    free (self->service);
    free (self->name);
    free (self->request_text);
    free (self->reply_text);
    sb__schema_node_destroy (&self->request);
    sb__schema_node_destroy (&self->reply);
    free (self);
    *self_p = NULL;
}

/*  Keeps the compact JSON text of a schema, for callers that render it
    (the REST bridge's OpenAPI document).  */
static int
s_keep_text (sb_schema_loader_t *loader, json_t *schema, char **text_p)
{
    *text_p = json_dumps (schema, JSON_COMPACT);
    return *text_p ? 0 : sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
}

/*  A millisecond count: an integer from 0 to one day.  */
static int
s_load_ms (sb_schema_loader_t *loader, json_t *value, int *ms)
{
    if (!json_is_integer (value) || json_integer_value (value) < 0
    ||  json_integer_value (value) > 86400000)
        return sb__schema_load_error (loader,
                                      "expected milliseconds, an integer from 0 to 86400000");
    *ms = (int) json_integer_value (value);
    return 0;
}

static sb_method_schema_t *
s_method_load (sb_schema_loader_t *loader, const char *service, const char *name, json_t *spec)
{
    if (!sb_name_valid (name, SB_NAME_METHOD)) {
        sb__schema_load_error (loader, "method names are 1 to 64 of A-Z a-z 0-9 _ . -");
        return NULL;
    }
    if (!json_is_object (spec)) {
        sb__schema_load_error (loader, "expected a method object");
        return NULL;
    }
    sb_method_schema_t *self = calloc (1, sizeof (sb_method_schema_t));
    if (!self || !(self->service = strdup (service)) || !(self->name = strdup (name))) {
        s_method_destroy (&self);
        sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->description = "";
    size_t mark = loader->path.size;
    const char *key;
    size_t key_size;
    json_t *value;
    int rc = 0;
    json_object_keylen_foreach (spec, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        if (s_is (key, "description")) {
            if (json_is_string (value))
                self->description = json_string_value (value);
            else
                rc = sb__schema_load_error (loader, "expected a string");
        }
        else
        if (s_is (key, "idempotent")) {
            if (json_is_boolean (value))
                self->idempotent = json_is_true (value);
            else
                rc = sb__schema_load_error (loader, "expected true or false");
        }
        else
        if (s_is (key, "timeout_ms"))
            rc = s_load_ms (loader, value, &self->timeout_ms);
        else
        if (s_is (key, "cache_ttl_ms"))
            rc = s_load_ms (loader, value, &self->cache_ttl_ms);
        else
        if (s_is (key, "request")) {
            self->request = sb__schema_node_compile (loader, value, 0);
            rc = self->request ? s_keep_text (loader, value, &self->request_text) : -1;
        }
        else
        if (s_is (key, "reply")) {
            self->reply = sb__schema_node_compile (loader, value, 0);
            rc = self->reply ? s_keep_text (loader, value, &self->reply_text) : -1;
        }
        else
        if (!s_is (key, "$comment"))
            rc = sb__schema_load_error (loader, "unknown method field (expected description, "
                                                "idempotent, timeout_ms, cache_ttl_ms, request, "
                                                "reply)");
        if (rc)
            break;
        sb__path_cut (&loader->path, mark);
    }
    if (rc)
        s_method_destroy (&self);
    return self;
}

static int
s_method_compare (const void *a, const void *b)
{
    const sb_method_schema_t *ma = *(sb_method_schema_t *const *) a;
    const sb_method_schema_t *mb = *(sb_method_schema_t *const *) b;
    int c = strcmp (ma->service, mb->service);
    return c ? c : strcmp (ma->name, mb->name);
}

/*  Checks the file's top level and loads its methods into a new array
    *methods_p of *count_p entries (the caller frees both, also on error).
    0 or -1.  */
static int
s_file_load (sb_schema_loader_t *loader, json_t *root, sb_method_schema_t ***methods_p,
             size_t *count_p)
{
    if (!json_is_object (root))
        return sb__schema_load_error (loader,
                                      "expected an object with service, version and methods");
    json_t *service = json_object_get (root, "service");
    json_t *methods = json_object_get (root, "methods");
    if (!json_is_string (service)
    ||  !sb_name_valid (json_string_value (service), SB_NAME_SERVICE)) {
        sb__path_key (&loader->path, "service", 7);
        return sb__schema_load_error (loader,
                                      "expected the service name, 1 to 64 of A-Z a-z 0-9 _ . -");
    }
    if (!json_is_object (methods) || json_object_size (methods) == 0) {
        sb__path_key (&loader->path, "methods", 7);
        return sb__schema_load_error (loader, "expected a non-empty object of methods");
    }
    const char *version = "", *description = "";
    const char *key;
    size_t key_size;
    json_t *value;
    json_object_keylen_foreach (root, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        if (s_is (key, "version") || s_is (key, "description")) {
            if (!json_is_string (value))
                return sb__schema_load_error (loader, "expected a string");
            if (s_is (key, "version"))
                version = json_string_value (value);
            else
                description = json_string_value (value);
        }
        else
        if (!s_is (key, "service") && !s_is (key, "methods") && !s_is (key, "$comment"))
            return sb__schema_load_error (loader, "unknown field (expected service, version, "
                                                  "description, methods)");
        sb__path_cut (&loader->path, 1);
    }
    size_t count = json_object_size (methods);
    sb_method_schema_t **list = calloc (count ? count : 1, sizeof (sb_method_schema_t *));
    if (!list)
        return sb_error_set (loader->err, SB_E_INTERNAL, "out of memory");
    *methods_p = list;
    *count_p = 0;
    sb__path_key (&loader->path, "methods", 7);
    size_t mark = loader->path.size;
    json_object_keylen_foreach (methods, key, key_size, value) {
        sb__path_key (&loader->path, key, key_size);
        sb_method_schema_t *method =
            s_method_load (loader, json_string_value (service), key, value);
        if (!method)
            return -1;
        method->version = version;
        method->service_description = description;
        list [(*count_p)++] = method;
        sb__path_cut (&loader->path, mark);
    }
    return 0;
}

int
sb_schema_set_load_buffer (sb_schema_set_t *self, const char *name, const char *json, size_t size,
                           sb_error_t *err)
{
    if (!self || !name || !json)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no schema text");
    if (size > SB_SCHEMA_FILE_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: larger than %d bytes",
                             name, SB_SCHEMA_FILE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb (json, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: line %d column %d: %s",
                             name, jerr.line, jerr.column, jerr.text);
    sb_schema_loader_t loader = { .file = name, .err = err };
    sb__path_init (&loader.path);
    sb_method_schema_t **methods = NULL;
    size_t count = 0;
    int rc = s_file_load (&loader, root, &methods, &count);
    if (rc == 0 && count > 0) {
        const char *service = methods [0]->service;
        for (size_t i = 0; i < self->size && rc == 0; i++)
            if (strcmp (self->methods [i]->service, service) == 0)
                rc = sb_error_set (err, SB_E_BAD_REQUEST,
                                   "%s: service \"%s\" is already described by %s", name, service,
                                   self->file_names [self->methods [i]->file_index]);
    }
    char *name_copy = rc == 0 ? strdup (name) : NULL;
    sb_method_schema_t **all = rc == 0
        ? realloc (self->methods, (self->size + count + 1) * sizeof (sb_method_schema_t *)) : NULL;
    if (all)
        self->methods = all;
    json_t **files = all ? realloc (self->files, (self->file_count + 1) * sizeof (json_t *)) : NULL;
    if (files)
        self->files = files;
    char **file_names = files
        ? realloc (self->file_names, (self->file_count + 1) * sizeof (char *)) : NULL;
    if (file_names)
        self->file_names = file_names;
    if (rc == 0 && !(name_copy && file_names))
        rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
    if (rc) {
        for (size_t i = 0; i < count; i++)
            s_method_destroy (&methods [i]);
        free (methods);
        free (name_copy);
        json_decref (root);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        methods [i]->file_index = self->file_count;
        self->methods [self->size++] = methods [i];
    }
    free (methods);
    self->files [self->file_count] = root;
    self->file_names [self->file_count++] = name_copy;
    qsort (self->methods, self->size, sizeof (sb_method_schema_t *), s_method_compare);
    return 0;
}

char *
sb_schema_set_service_json (const sb_schema_set_t *self, const char *service)
{
    for (size_t i = 0; self && service && i < self->size; i++)
        if (strcmp (self->methods [i]->service, service) == 0)
            return json_dumps (self->files [self->methods [i]->file_index],
                               JSON_COMPACT | JSON_PRESERVE_ORDER);
    return NULL;
}

int
sb_schema_set_load_file (sb_schema_set_t *self, const char *path, sb_error_t *err)
{
    if (!self || !path)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no schema file");
    FILE *file = fopen (path, "rb");
    if (!file)
        return sb_error_set (err, SB_E_NOT_FOUND, "%s: %s", path, strerror (errno));
    char *text = malloc (SB_SCHEMA_FILE_MAX + 1);
    if (!text) {
        fclose (file);
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    }
    size_t size = fread (text, 1, SB_SCHEMA_FILE_MAX + 1, file);
    int failed = ferror (file);
    fclose (file);
    int rc;
    if (failed)
        rc = sb_error_set (err, SB_E_NOT_FOUND, "%s: read error", path);
    else
        rc = sb_schema_set_load_buffer (self, path, text, size, err);
    free (text);
    return rc;
}

static int
s_string_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

sb_schema_set_t *
sb_schema_set_load_dir (const char *dir, sb_error_t *err)
{
    DIR *handle = dir ? opendir (dir) : NULL;
    if (!handle) {
        sb_error_set (err, SB_E_NOT_FOUND, "%s: %s", dir ? dir : "(null)",
                      dir ? strerror (errno) : "no directory");
        return NULL;
    }
    sb_schema_set_t *self = sb_schema_set_new ();
    char **names = NULL;
    size_t count = 0, max = 0;
    int rc = self ? 0 : sb_error_set (err, SB_E_INTERNAL, "out of memory");
    struct dirent *entry;
    while (rc == 0 && (entry = readdir (handle))) {
        size_t size = strlen (entry->d_name);
        if (entry->d_name [0] == '.' || size < 6 || strcmp (entry->d_name + size - 5, ".json"))
            continue;
        if (count == max) {
            max = max ? max * 2 : 16;
            char **grown = realloc (names, max * sizeof (char *));
            if (!grown) {
                rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
                break;
            }
            names = grown;
        }
        if (!(names [count] = strdup (entry->d_name)))
            rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
        else
            count++;
    }
    closedir (handle);
    if (names)
        qsort (names, count, sizeof (char *), s_string_compare);
    for (size_t i = 0; i < count && rc == 0; i++) {
        size_t size = strlen (dir) + strlen (names [i]) + 2;
        char *path = malloc (size);
        if (!path)
            rc = sb_error_set (err, SB_E_INTERNAL, "out of memory");
        else {
            snprintf (path, size, "%s/%s", dir, names [i]);
            rc = sb_schema_set_load_file (self, path, err);
            free (path);
        }
    }
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
    if (rc)
        sb_schema_set_destroy (&self);
    return self;
}

/*  --------------------------------------------------------------------
    The set  */

sb_schema_set_t *
sb_schema_set_new (void)
{
    return calloc (1, sizeof (sb_schema_set_t));
}

void
sb_schema_set_destroy (sb_schema_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sb_schema_set_t *self = *self_p;
    for (size_t i = 0; i < self->size; i++)
        s_method_destroy (&self->methods [i]);
    free (self->methods);
    for (size_t i = 0; i < self->file_count; i++) {
        json_decref (self->files [i]);
        free (self->file_names [i]);
    }
    free (self->files);
    free (self->file_names);
    free (self);
    *self_p = NULL;
}

const sb_method_schema_t *
sb_schema_set_find (const sb_schema_set_t *self, const char *service, const char *method)
{
    if (!self || !service || !method)
        return NULL;
    size_t lo = 0, hi = self->size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sb_method_schema_t *m = self->methods [mid];
        int c = strcmp (service, m->service);
        if (c == 0)
            c = strcmp (method, m->name);
        if (c == 0)
            return m;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/*  Appends "; " (unless first) and the formatted piece to text; once it
    is full, the end is replaced by "...".  */
static void
s_append (char *text, size_t size, const char *fmt, ...) __attribute__ ((format (printf, 3, 4)));

static void
s_append (char *text, size_t size, const char *fmt, ...)
{
    size_t used = strlen (text);
    if (used + 4 >= size)
        return;
    if (used) {
        snprintf (text + used, size - used, "; ");
        used += 2;
    }
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (text + used, size - used, fmt, args);
    va_end (args);
    if (n < 0 || (size_t) n >= size - used)
        memcpy (text + size - 4, "...", 4);
}

int
sb_schema_set_check_service (const sb_schema_set_t *self, const sb_service_t *service,
                             sb_error_t *err)
{
    if (!self || !service || !service->name)
        return 0;
    char text [SB_ERROR_TEXT_MAX] = "";
    int count = 0;
    for (size_t i = 0; i < self->size; i++) {
        const sb_method_schema_t *m = self->methods [i];
        if (strcmp (m->service, service->name) != 0)
            continue;
        const sb_method_t *method = NULL;
        for (const sb_method_t *p = service->methods; p && p->name; p++)
            if (strcmp (p->name, m->name) == 0) {
                method = p;
                break;
            }
        if (!method) {
            s_append (text, sizeof text, "%s.%s: in the schema, not in the plugin",
                      m->service, m->name);
            count++;
        }
        else
        if (m->idempotent != ((method->flags & SB_METHOD_IDEMPOTENT) != 0)) {
            s_append (text, sizeof text, "%s.%s: %sidempotent in the schema, %s in the plugin",
                      m->service, m->name, m->idempotent ? "" : "not ",
                      m->idempotent ? "not" : "idempotent");
            count++;
        }
    }
    if (count)
        sb_error_set (err, SB_E_BAD_REQUEST, "%s", text);
    return count;
}

size_t
sb_schema_set_size (const sb_schema_set_t *self)
{
    return self ? self->size : 0;
}

const sb_method_schema_t *
sb_schema_set_method (const sb_schema_set_t *self, size_t index)
{
    return self && index < self->size ? self->methods [index] : NULL;
}

const char *
sb_method_schema_service (const sb_method_schema_t *self)
{
    return self->service;
}

const char *
sb_method_schema_name (const sb_method_schema_t *self)
{
    return self->name;
}

const char *
sb_method_schema_description (const sb_method_schema_t *self)
{
    return self->description;
}

const char *
sb_method_schema_service_version (const sb_method_schema_t *self)
{
    return self->version;
}

const char *
sb_method_schema_service_description (const sb_method_schema_t *self)
{
    return self->service_description;
}

unsigned
sb_method_schema_flags (const sb_method_schema_t *self)
{
    return self->idempotent ? SB_METHOD_IDEMPOTENT : 0;
}

bool
sb_method_schema_idempotent (const sb_method_schema_t *self)
{
    return self->idempotent;
}

int
sb_method_schema_timeout_ms (const sb_method_schema_t *self)
{
    return self->timeout_ms;
}

int
sb_method_schema_cache_ttl_ms (const sb_method_schema_t *self)
{
    return self->cache_ttl_ms;
}

const char *
sb_method_schema_request_text (const sb_method_schema_t *self)
{
    return self->request_text;
}

const char *
sb_method_schema_reply_text (const sb_method_schema_t *self)
{
    return self->reply_text;
}

