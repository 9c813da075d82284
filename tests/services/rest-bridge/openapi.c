/*  openapi.t — the REST bridge's OpenAPI 3.1 document built from a schema set:
    valid JSON, every method as POST /v1/service/method with its request
    and reply component schemas (binary translated to its JSON form), the
    error body and every error status, the bridge's fixed routes, and the
    project's own schemas/ directory.  */
#include "openapi.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static const char *s_schema_text =
    "{ \"service\": \"files\", \"version\": \"1.2.0\", \"description\": \"file store\","
    "  \"methods\": {"
    "    \"put\": { \"description\": \"store a blob\", \"idempotent\": true,"
    "      \"timeout_ms\": 3000, \"cache_ttl_ms\": 0,"
    "      \"request\": { \"type\": \"object\", \"required\": [\"name\", \"data\"],"
    "        \"additionalProperties\": false,"
    "        \"properties\": {"
    "          \"name\": { \"type\": \"string\", \"pattern\": \"^[a-z]+$\", \"maxLength\": 32 },"
    "          \"data\": { \"type\": \"binary\", \"minLength\": 1, \"maxLength\": 10,"
    "                      \"description\": \"the bytes\" },"
    "          \"meta\": { \"type\": [\"string\", \"binary\", \"null\"] },"
    "          \"tags\": { \"type\": \"array\", \"items\": { \"type\": \"binary\" } }"
    "        } },"
    "      \"reply\": { \"type\": \"object\", \"properties\": { \"size\": { \"type\": \"integer\" } } } },"
    "    \"list\": { \"cache_ttl_ms\": 500 }"
    "  } }";

/*  Follows a path of object keys; NULL if any is missing.  */
static json_t *
s_get (json_t *root, const char *k1, const char *k2, const char *k3, const char *k4)
{
    const char *keys [] = { k1, k2, k3, k4 };
    json_t *node = root;
    for (int i = 0; i < 4 && node && keys [i]; i++)
        node = json_object_get (node, keys [i]);
    return node;
}

static const char *
s_str (json_t *value)
{
    return json_is_string (value) ? json_string_value (value) : "(none)";
}

int
main (void)
{
    sb_error_t err;
    sb_schema_set_t *set = sb_schema_set_new ();
    if (!tap_ok (sb_schema_set_load_buffer (set, "files.json", s_schema_text,
                                            strlen (s_schema_text), &err) == 0, "schema loads"))
        tap_diag ("  %s", err.text);

    char *text = sb_rest_openapi_dumps (set, "Test API", "9.9.9", &err);
    tap_ok (text != NULL, "document serializes");
    json_error_t jerr;
    json_t *doc = text ? json_loads (text, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    tap_ok (json_is_object (doc), "document is valid JSON");
    free (text);

    tap_is_str (s_str (json_object_get (doc, "openapi")), "3.1.0", "openapi 3.1.0");
    tap_is_str (s_str (s_get (doc, "info", "title", NULL, NULL)), "Test API", "title");
    tap_is_str (s_str (s_get (doc, "info", "version", NULL, NULL)), "9.9.9", "version");

    /*  Every method, as POST, with its flags.  */
    json_t *put = s_get (doc, "paths", "/v1/files/put", "post", NULL);
    json_t *list = s_get (doc, "paths", "/v1/files/list", "post", NULL);
    tap_ok (put && list, "both methods have a POST path");
    tap_is_int (json_object_size (json_object_get (doc, "paths")), 2 + 4,
                "two methods and four fixed routes");
    tap_is_str (s_str (json_object_get (put, "operationId")), "files.put", "operationId");
    tap_is_str (s_str (json_object_get (put, "summary")), "store a blob", "summary from description");
    tap_is_str (s_str (json_array_get (json_object_get (put, "tags"), 0)), "files", "tagged by service");
    tap_ok (json_is_true (json_object_get (put, "x-switchboard-idempotent")), "idempotent flag");
    tap_is_int (json_integer_value (json_object_get (put, "x-switchboard-timeout-ms")), 3000,
                "timeout extension");
    tap_is_int (json_integer_value (json_object_get (list, "x-switchboard-cache-ttl-ms")), 500,
                "cache ttl extension");
    tap_is_str (s_str (s_get (put, "requestBody", "content", "application/json", NULL) ?
                       s_get (s_get (put, "requestBody", "content", "application/json", NULL),
                              "schema", "$ref", NULL, NULL) : NULL),
                "#/components/schemas/files.put.request", "request body references its schema");
    tap_is_str (s_str (s_get (s_get (put, "responses", "200", "content", "application/json"),
                              "schema", "$ref", NULL, NULL)),
                "#/components/schemas/files.put.reply", "200 references the reply schema");

    /*  Every error status, referencing the Error body.  */
    const char *statuses [] = { "400", "401", "403", "404", "429", "500", "503", "504" };
    const char *names [] = { "bad_request", "unauthorized", "forbidden", "not_found",
                             "overloaded", "internal", "unavailable", "timeout" };
    int all = 1;
    for (int i = 0; i < 8; i++) {
        char want [96];
        snprintf (want, sizeof want, "#/components/responses/%s", names [i]);
        json_t *ref = s_get (put, "responses", statuses [i], "$ref", NULL);
        if (!ref || strcmp (s_str (ref), want) != 0 || !s_get (doc, "components", "responses", names [i], NULL)) {
            tap_diag ("  status %s: %s", statuses [i], s_str (ref));
            all = 0;
        }
    }
    tap_ok (all, "statuses 400 401 403 404 429 500 503 504 with their responses");
    json_t *error = s_get (doc, "components", "schemas", "Error", NULL);
    json_t *inner = s_get (error, "properties", "error", "properties", NULL);
    tap_ok (inner && json_object_get (inner, "code") && json_object_get (inner, "message")
            && json_object_get (inner, "request_id"), "Error body has code, message, request_id");
    tap_is_int (json_array_size (s_get (inner, "code", "enum", NULL, NULL)), 8, "eight error codes");
    tap_is_str (s_str (s_get (doc, "components", "responses", "timeout", NULL) ?
                       s_get (s_get (doc, "components", "responses", "timeout", "content"),
                              "application/json", "schema", "$ref", NULL) : NULL),
                "#/components/schemas/Error", "error responses use the Error schema");

    /*  Component schemas: copied, binary translated.  */
    json_t *request = s_get (doc, "components", "schemas", "files.put.request", NULL);
    json_t *props = json_object_get (request, "properties");
    tap_is_str (s_str (s_get (props, "name", "pattern", NULL, NULL)), "^[a-z]+$", "pattern kept");
    tap_is_int (json_integer_value (s_get (props, "name", "maxLength", NULL, NULL)), 32, "maxLength kept");
    tap_ok (json_is_false (json_object_get (request, "additionalProperties")),
            "additionalProperties kept");
    tap_is_int (json_array_size (json_object_get (request, "required")), 2, "required kept");
    json_t *data = json_object_get (props, "data");
    tap_is_str (s_str (json_object_get (data, "type")), "object", "binary is a JSON object");
    tap_is_str (s_str (s_get (data, "properties", "$base64", "contentEncoding", NULL)), "base64",
                "with a base64 string");
    tap_is_int (json_integer_value (s_get (data, "properties", "$base64", "maxLength", NULL)), 16,
                "10 bytes: at most 16 base64 characters");
    tap_is_int (json_integer_value (s_get (data, "properties", "$base64", "minLength", NULL)), 4,
                "1 byte: at least 4 base64 characters");
    tap_is_str (s_str (json_object_get (data, "description")), "the bytes", "description kept");
    json_t *meta = json_object_get (props, "meta");
    json_t *any_of = json_object_get (meta, "anyOf");
    tap_ok (json_array_size (any_of) == 2
            && json_array_size (s_get (json_array_get (any_of, 0), "type", NULL, NULL, NULL)) == 2
            && json_object_get (json_object_get (json_array_get (any_of, 1), "properties"), "$base64"),
            "type list with binary becomes anyOf");
    tap_is_str (s_str (s_get (props, "tags", "items", "type", NULL)), "object", "binary items translated");
    tap_is_str (s_str (s_get (doc, "components", "schemas", "files.put.reply", NULL) ?
                       s_get (s_get (doc, "components", "schemas", "files.put.reply", NULL),
                              "properties", "size", "type", NULL) : NULL),
                "integer", "reply schema");
    tap_ok (json_object_size (s_get (doc, "components", "schemas", "files.list.request", NULL)) == 0,
            "a method without schema accepts anything ({})");

    /*  Fixed routes.  */
    tap_ok (s_get (doc, "paths", "/v1/services", "get", NULL) != NULL, "GET /v1/services");
    tap_ok (s_get (doc, "paths", "/healthz", "get", NULL) != NULL, "GET /healthz");
    tap_ok (s_get (s_get (doc, "paths", "/metrics", "get", "responses"), "200", "content",
                   "text/plain; version=0.0.4", NULL) != NULL, "GET /metrics is Prometheus text");
    tap_ok (s_get (doc, "paths", "/openapi.json", "get", NULL) != NULL, "GET /openapi.json");
    json_decref (doc);

    /*  An empty set still gives a document.  */
    doc = sb_rest_openapi_build (NULL, NULL, NULL, &err);
    tap_ok (doc && json_object_size (json_object_get (doc, "paths")) == 4
            && strcmp (s_str (s_get (doc, "info", "title", NULL, NULL)), "Switchboard") == 0,
            "empty set: fixed routes, default title");
    json_decref (doc);
    sb_schema_set_destroy (&set);

    /*  The project's schemas: every method described.  */
    const char *top = getenv ("SB_TOP_SRCDIR");
    if (top) {
        char path [512];
        snprintf (path, sizeof path, "%s/schemas", top);
        set = sb_schema_set_load_dir (path, &err);
        doc = set ? sb_rest_openapi_build (set, NULL, NULL, &err) : NULL;
        size_t found = 0;
        for (size_t i = 0; i < sb_schema_set_size (set); i++) {
            const sb_method_schema_t *m = sb_schema_set_method (set, i);
            snprintf (path, sizeof path, "/v1/%s/%s", sb_method_schema_service (m),
                      sb_method_schema_name (m));
            if (s_get (doc, "paths", path, "post", NULL))
                found++;
        }
        tap_ok (doc && found == sb_schema_set_size (set),
                "schemas/: all %zu methods in the document", found);
        json_decref (doc);
        sb_schema_set_destroy (&set);
    }
    return tap_done ();
}
