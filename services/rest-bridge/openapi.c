/*  openapi.c — builds the OpenAPI 3.1 document from a schema set.

    The bridge reads the set through the public API only: each method's
    request and reply schemas come as JSON text, parsed here with jansson
    (once, when the bridge starts).  The document is assembled as jansson
    values.  Allocation failures are not checked call by call: each builder
    records them in a `failed` flag (jansson functions return NULL or -1
    and take no ownership on NULL input), and the whole document is dropped
    at the end if one happened.

    Schemas of our subset are JSON Schema already, so translation copies
    them, except "binary", which on the HTTP side is the object
    {"$base64": "<standard base64 with padding>"}: its minLength and
    maxLength (bytes) become bounds on the base64 text (4 * ceil(n / 3)).
*/
#include "openapi.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    bool failed;
} builder_t;

/*  obj[key] = value (stolen); records failure.  */
static void
s_set (builder_t *b, json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new (obj, key, value))
        b->failed = true;
}

static void
s_append (builder_t *b, json_t *array, json_t *value)
{
    if (!value || json_array_append_new (array, value))
        b->failed = true;
}

static json_t *
s_object (builder_t *b)
{
    json_t *obj = json_object ();
    if (!obj)
        b->failed = true;
    return obj;
}

static json_t *
s_ref (builder_t *b, const char *kind, const char *name)
{
    char ref [256];
    snprintf (ref, sizeof ref, "#/components/%s/%s", kind, name);
    json_t *obj = s_object (b);
    if (obj)
        s_set (b, obj, "$ref", json_string (ref));
    return obj;
}

/*  The JSON form of binary data, with byte bounds from the schema.  */
static json_t *
s_binary_schema (builder_t *b, const json_t *schema)
{
    json_t *text = s_object (b);
    json_t *result = s_object (b);
    if (!text || !result) {
        json_decref (text);
        json_decref (result);
        return NULL;
    }
    s_set (b, text, "type", json_string ("string"));
    s_set (b, text, "contentEncoding", json_string ("base64"));
    json_t *min = json_object_get (schema, "minLength");
    json_t *max = json_object_get (schema, "maxLength");
    if (json_is_integer (min))
        s_set (b, text, "minLength", json_integer ((json_integer_value (min) + 2) / 3 * 4));
    if (json_is_integer (max))
        s_set (b, text, "maxLength", json_integer ((json_integer_value (max) + 2) / 3 * 4));
    s_set (b, result, "type", json_string ("object"));
    json_t *properties = s_object (b);
    if (properties)
        s_set (b, properties, "$base64", text);
    else
        json_decref (text);
    s_set (b, result, "properties", properties);
    s_set (b, result, "required", json_pack ("[s]", "$base64"));
    s_set (b, result, "additionalProperties", json_false ());
    return result;
}

static json_t *s_translate (builder_t *b, const json_t *schema);

/*  Copies a schema object, translating nested schemas; `types` replaces
    the type keyword when not NULL (stolen).  */
static json_t *
s_copy (builder_t *b, const json_t *schema, json_t *types)
{
    json_t *copy = s_object (b);
    if (!copy) {
        json_decref (types);
        return NULL;
    }
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) schema, key, value) {
        if (strcmp (key, "type") == 0 && types)
            continue;
        if (strcmp (key, "items") == 0)
            s_set (b, copy, key, s_translate (b, value));
        else
        if (strcmp (key, "properties") == 0 && json_is_object (value)) {
            json_t *properties = s_object (b);
            const char *name;
            json_t *property;
            json_object_foreach (value, name, property)
                if (properties)
                    s_set (b, properties, name, s_translate (b, property));
            s_set (b, copy, key, properties);
        }
        else
            s_set (b, copy, key, json_deep_copy (value));
    }
    if (types)
        s_set (b, copy, "type", types);
    return copy;
}

static json_t *
s_translate (builder_t *b, const json_t *schema)
{
    if (!json_is_object (schema))
        return json_deep_copy (schema);
    json_t *type = json_object_get (schema, "type");
    if (json_is_string (type) && strcmp (json_string_value (type), "binary") == 0) {
        json_t *result = s_binary_schema (b, schema);
        json_t *description = json_object_get (schema, "description");
        if (result && description)
            s_set (b, result, "description", json_deep_copy (description));
        return result;
    }
    if (!json_is_array (type))
        return s_copy (b, schema, NULL);
    /*  A type list with "binary": anyOf the other types and the binary form.  */
    json_t *others = json_array ();
    bool binary = false;
    size_t i;
    json_t *name;
    json_array_foreach (type, i, name) {
        if (json_is_string (name) && strcmp (json_string_value (name), "binary") == 0)
            binary = true;
        else
        if (others)
            s_append (b, others, json_deep_copy (name));
    }
    if (!others) {
        b->failed = true;
        return NULL;
    }
    if (!binary) {
        json_decref (others);
        return s_copy (b, schema, NULL);
    }
    json_t *binary_form = s_binary_schema (b, schema);
    if (json_array_size (others) == 0) {
        json_decref (others);
        return binary_form;
    }
    json_t *result = s_object (b);
    json_t *any_of = json_array ();
    if (!result || !any_of) {
        json_decref (result);
        json_decref (any_of);
        json_decref (binary_form);
        json_decref (others);
        b->failed = true;
        return NULL;
    }
    s_append (b, any_of, s_copy (b, schema, others));
    s_append (b, any_of, binary_form);
    s_set (b, result, "anyOf", any_of);
    return result;
}

/*  {"description": d, "content": {media: {"schema": schema}}}  */
static json_t *
s_response (builder_t *b, const char *description, const char *media, json_t *schema)
{
    json_t *response = json_pack ("{s:s, s:{s:{s:o}}}", "description", description,
                                  "content", media, "schema", schema);
    if (!response)
        b->failed = true;
    return response;
}

/*  The error statuses every route may answer, as references.  */
static void
s_error_responses (builder_t *b, json_t *responses)
{
    for (int code = SB_E_BAD_REQUEST; code <= SB_E_CODE_MAX; code++) {
        char status [8];
        snprintf (status, sizeof status, "%d", sb_code_http_status ((sb_code_t) code));
        s_set (b, responses, status, s_ref (b, "responses", sb_code_name ((sb_code_t) code)));
    }
}

static json_t *
s_components (builder_t *b)
{
    json_t *components = s_object (b);
    json_t *schemas = s_object (b);
    json_t *responses = s_object (b);
    json_t *codes = json_array ();
    if (!components || !schemas || !responses || !codes) {
        json_decref (components);
        json_decref (schemas);
        json_decref (responses);
        json_decref (codes);
        b->failed = true;
        return NULL;
    }
    for (int code = SB_E_BAD_REQUEST; code <= SB_E_CODE_MAX; code++)
        s_append (b, codes, json_string (sb_code_name ((sb_code_t) code)));
    s_set (b, schemas, "Error", json_pack (
        "{s:s, s:[s], s:b, s:{s:{s:s, s:[s,s,s], s:b, s:{s:{s:s, s:o}, s:{s:s}, s:{s:s}}}}}",
        "type", "object", "required", "error", "additionalProperties", 0,
        "properties", "error",
        "type", "object", "required", "code", "message", "request_id",
        "additionalProperties", 0,
        "properties", "code", "type", "string", "enum", codes,
        "message", "type", "string",
        "request_id", "type", "string"));
    for (int code = SB_E_BAD_REQUEST; code <= SB_E_CODE_MAX; code++) {
        char description [96];
        snprintf (description, sizeof description, "%s: the error body says why",
                  sb_code_name ((sb_code_t) code));
        s_set (b, responses, sb_code_name ((sb_code_t) code),
               s_response (b, description, "application/json", s_ref (b, "schemas", "Error")));
    }
    s_set (b, components, "schemas", schemas);
    s_set (b, components, "responses", responses);
    return components;
}

/*  The component schema for a method's request or reply schema text
    (NULL: anything, the empty schema).  */
static json_t *
s_component (builder_t *b, const char *text)
{
    if (!text)
        return json_object ();
    json_t *schema = json_loads (text, 0, NULL);
    if (!schema) {
        b->failed = true;
        return NULL;
    }
    json_t *result = s_translate (b, schema);
    json_decref (schema);
    return result;
}

/*  POST /v1/service/method and its two component schemas.  */
static void
s_add_method (builder_t *b, json_t *paths, json_t *schemas, const sb_method_schema_t *method)
{
    const char *service = sb_method_schema_service (method);
    const char *name = sb_method_schema_name (method);
    char path [160], request [160], reply [160], operation_id [160];
    snprintf (path, sizeof path, "/v1/%s/%s", service, name);
    snprintf (request, sizeof request, "%s.%s.request", service, name);
    snprintf (reply, sizeof reply, "%s.%s.reply", service, name);
    snprintf (operation_id, sizeof operation_id, "%s.%s", service, name);

    s_set (b, schemas, request, s_component (b, sb_method_schema_request_text (method)));
    s_set (b, schemas, reply, s_component (b, sb_method_schema_reply_text (method)));

    json_t *responses = s_object (b);
    if (!responses)
        return;
    s_set (b, responses, "200", s_response (b, "The method's reply", "application/json",
                                            s_ref (b, "schemas", reply)));
    s_error_responses (b, responses);
    const char *description = sb_method_schema_description (method);
    json_t *post = json_pack ("{s:s, s:s, s:[s], s:[{s:s, s:s, s:b, s:s, s:{s:s}}],"
                              " s:{s:b, s:{s:{s:o}}}, s:o, s:b, s:i, s:i}",
                              "operationId", operation_id,
                              "summary", *description ? description : operation_id,
                              "tags", service,
                              "parameters", "name", "X-Request-Id", "in", "header",
                              "required", 0, "description",
                              "Request id; echoed in the reply and carried on the bus",
                              "schema", "type", "string",
                              "requestBody", "required", 1, "content", "application/json",
                              "schema", s_ref (b, "schemas", request),
                              "responses", responses,
                              "x-switchboard-idempotent", sb_method_schema_idempotent (method),
                              "x-switchboard-timeout-ms", sb_method_schema_timeout_ms (method),
                              "x-switchboard-cache-ttl-ms", sb_method_schema_cache_ttl_ms (method));
    json_t *item = s_object (b);
    if (item)
        s_set (b, item, "post", post);
    else
        json_decref (post);
    s_set (b, paths, path, item);
}

/*  GET route with one success response.  */
static void
s_add_get (builder_t *b, json_t *paths, const char *path, const char *id, const char *summary,
           const char *media, json_t *schema)
{
    json_t *responses = s_object (b);
    if (!responses) {
        json_decref (schema);
        return;
    }
    s_set (b, responses, "200", s_response (b, summary, media, schema));
    s_error_responses (b, responses);
    s_set (b, paths, path, json_pack ("{s:{s:s, s:s, s:[s], s:o}}", "get", "operationId", id,
                                      "summary", summary, "tags", "bridge",
                                      "responses", responses));
}

json_t *
sb_rest_openapi_build (const sb_schema_set_t *schemas, const char *title, const char *version,
                       sb_error_t *err)
{
    builder_t b = { false };
    char library_version [32];
    snprintf (library_version, sizeof library_version, "%d.%d.%d",
              SB_VERSION_MAJOR, SB_VERSION_MINOR, SB_VERSION_PATCH);
    json_t *doc = s_object (&b);
    json_t *paths = s_object (&b);
    json_t *tags = json_array ();
    json_t *components = s_components (&b);
    json_t *component_schemas = components ? json_object_get (components, "schemas") : NULL;
    if (!doc || !paths || !tags || !component_schemas) {
        json_decref (doc);
        json_decref (paths);
        json_decref (tags);
        json_decref (components);
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    s_set (&b, doc, "openapi", json_string ("3.1.0"));
    s_set (&b, doc, "info", json_pack ("{s:s, s:s, s:s}",
                                       "title", title ? title : "Switchboard",
                                       "version", version ? version : library_version,
                                       "description",
                                       "Services on the Switchboard bus, through the REST bridge. "
                                       "Bodies are JSON; binary data is {\"$base64\": \"...\"}."));
    const char *last_service = "";
    for (size_t i = 0; i < sb_schema_set_size (schemas); i++) {
        const sb_method_schema_t *method = sb_schema_set_method (schemas, i);
        const char *service = sb_method_schema_service (method);
        if (strcmp (service, last_service) != 0) {
            char description [512];
            snprintf (description, sizeof description, "%s%sversion %s",
                      sb_method_schema_service_description (method),
                      *sb_method_schema_service_description (method) ? " — " : "",
                      *sb_method_schema_service_version (method)
                          ? sb_method_schema_service_version (method) : "unknown");
            s_append (&b, tags, json_pack ("{s:s, s:s}", "name", service,
                                           "description", description));
            last_service = service;
        }
        s_add_method (&b, paths, component_schemas, method);
    }
    s_append (&b, tags, json_pack ("{s:s, s:s}", "name", "bridge",
                                   "description", "Routes of the bridge itself"));
    s_add_get (&b, paths, "/v1/services", "sys.services", "The cluster's directory of services",
               "application/json", json_pack ("{s:s}", "type", "object"));
    s_add_get (&b, paths, "/healthz", "healthz", "Bridge and broker reachability",
               "application/json", json_pack ("{s:s}", "type", "object"));
    s_add_get (&b, paths, "/metrics", "metrics", "Prometheus text exposition format",
               "text/plain; version=0.0.4", json_pack ("{s:s}", "type", "string"));
    s_add_get (&b, paths, "/openapi.json", "openapi", "This document",
               "application/json", json_pack ("{s:s}", "type", "object"));
    s_set (&b, doc, "tags", tags);
    s_set (&b, doc, "paths", paths);
    s_set (&b, doc, "components", components);
    if (b.failed) {
        json_decref (doc);
        sb_error_set (err, SB_E_INTERNAL, "out of memory building the OpenAPI document");
        return NULL;
    }
    return doc;
}

char *
sb_rest_openapi_dumps (const sb_schema_set_t *schemas, const char *title, const char *version,
                       sb_error_t *err)
{
    json_t *doc = sb_rest_openapi_build (schemas, title, version, err);
    if (!doc)
        return NULL;
    char *text = json_dumps (doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (doc);
    if (!text)
        sb_error_set (err, SB_E_INTERNAL, "out of memory serializing the OpenAPI document");
    return text;
}
