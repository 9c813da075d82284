/*  runtime_schema.t — schema files and the validator: every keyword of the
    subset passing and failing (with the path and reason a caller sees),
    method flags, bad schema files refused with file name and path, and
    loading a directory.  Bodies are written as JSON for readability and
    converted with sb_json_to_msgpack; msgpack-only kinds (binary, float32,
    non-string keys, invalid UTF-8) are packed by hand.  */
#include "schema/schema.h"
#include "tap.h"

#include <jansson.h>

#include <unistd.h>

static sb_error_t err;

static const char *s_schema_text =
    "{ \"service\": \"demo\", \"version\": \"2.1.0\", \"description\": \"demo service\","
    "  \"methods\": {"
    "    \"all\": {"
    "      \"description\": \"every keyword\", \"idempotent\": true, \"timeout_ms\": 2500,"
    "      \"cache_ttl_ms\": 1000,"
    "      \"request\": { \"type\": \"object\", \"additionalProperties\": false,"
    "        \"required\": [\"name\", \"values\"],"
    "        \"properties\": {"
    "          \"name\": { \"type\": \"string\", \"minLength\": 2, \"maxLength\": 5,"
    "                    \"pattern\": \"^[a-zé]+$\" },"
    "          \"values\": { \"type\": \"array\", \"items\": { \"type\": \"number\" },"
    "                      \"minItems\": 1, \"maxItems\": 3 },"
    "          \"count\": { \"type\": \"integer\", \"minimum\": -5, \"maximum\": 10 },"
    "          \"ratio\": { \"type\": \"number\", \"minimum\": 0.5, \"maximum\": 1.5 },"
    "          \"flag\": { \"type\": \"boolean\" },"
    "          \"nothing\": { \"type\": \"null\" },"
    "          \"maybe\": { \"type\": [\"string\", \"null\"] },"
    "          \"color\": { \"enum\": [\"red\", \"green\", 3, null, [1, 2], {\"a\": 1}] },"
    "          \"blob\": { \"type\": \"binary\", \"minLength\": 1, \"maxLength\": 4 },"
    "          \"any\": { \"description\": \"anything goes\" },"
    "          \"open\": { \"type\": \"object\", \"properties\": { \"x\": { \"type\": \"integer\" } } },"
    "          \"big\": { \"type\": \"integer\", \"maximum\": 9223372036854775807 },"
    "          \"odd key\": { \"type\": \"string\" }"
    "        } },"
    "      \"reply\": { \"type\": \"object\", \"required\": [\"ok\"] }"
    "    },"
    "    \"free\": { }"
    "  } }";

static const sb_method_schema_t *s_method;

/*  Validates a JSON body against demo.all; want NULL = must pass, else the
    error text must equal want.  */
static void
s_check (const char *json, const char *want)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    if (sb_json_to_msgpack (json, strlen (json), &sbuf, &err)) {
        tap_ok (0, "test body %s is valid JSON: %s", json, err.text);
        msgpack_sbuffer_destroy (&sbuf);
        return;
    }
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    msgpack_unpack_next (&result, sbuf.data, sbuf.size, &offset);
    memset (&err, 0, sizeof err);
    int rc = sb_method_schema_validate_request (s_method, &result.data, &err);
    if (!want) {
        if (!tap_ok (rc == 0, "passes: %s", json))
            tap_diag ("  error: %s", err.text);
    }
    else {
        tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST, "fails: %s", json);
        tap_is_str (err.text, want, "  with the path and reason");
    }
    msgpack_unpacked_destroy (&result);
    msgpack_sbuffer_destroy (&sbuf);
}

/*  Validates a hand-packed body.  */
static void
s_check_packed (msgpack_sbuffer *sbuf, const char *want, const char *what)
{
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    msgpack_unpack_next (&result, sbuf->data, sbuf->size, &offset);
    memset (&err, 0, sizeof err);
    int rc = sb_method_schema_validate_request (s_method, &result.data, &err);
    if (!want) {
        if (!tap_ok (rc == 0, "passes: %s", what))
            tap_diag ("  error: %s", err.text);
    }
    else
    if (!tap_ok (rc == -1 && strcmp (err.text, want) == 0, "fails: %s", what))
        tap_diag ("  got '%s', want '%s'", err.text, want);
    msgpack_unpacked_destroy (&result);
    msgpack_sbuffer_clear (sbuf);
}

/*  A body {"name": "ab", "values": [1], KEY: <packed by caller>}.  */
static void
s_begin (msgpack_packer *pk, size_t extra)
{
    msgpack_pack_map (pk, 2 + extra);
    msgpack_pack_str_with_body (pk, "name", 4);
    msgpack_pack_str_with_body (pk, "ab", 2);
    msgpack_pack_str_with_body (pk, "values", 6);
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, 1);
}

/*  Loading must fail with text containing `want`.  */
static void
s_bad (const char *json, const char *want)
{
    sb_schema_set_t *set = sb_schema_set_new ();
    memset (&err, 0, sizeof err);
    int rc = sb_schema_set_load_buffer (set, "bad.json", json, strlen (json), &err);
    if (!tap_ok (rc == -1 && strstr (err.text, want) && sb_schema_set_size (set) == 0,
            "bad schema refused: %s", want))
        tap_diag ("  got '%s'", err.text);
    sb_schema_set_destroy (&set);
}

#define METHOD(body) "{\"service\":\"x\",\"methods\":{\"m\":" body "}}"
#define REQUEST(schema) METHOD ("{\"request\":" schema "}")

int
main (void)
{
    sb_schema_set_t *set = sb_schema_set_new ();
    if (!tap_ok (set && sb_schema_set_load_buffer (set, "demo.json", s_schema_text,
                                              strlen (s_schema_text), &err) == 0,
            "demo schema loads"))
        tap_diag ("  %s", err.text);
    tap_is_int (sb_schema_set_size (set), 2, "two methods");
    s_method = sb_schema_set_find (set, "demo", "all");
    tap_ok (s_method != NULL, "find demo.all");
    tap_ok (sb_schema_set_find (set, "demo", "nope") == NULL, "unknown method not found");
    tap_ok (sb_schema_set_find (set, "other", "all") == NULL, "unknown service not found");
    tap_is_str (sb_method_schema_service (s_method), "demo", "service name");
    tap_is_str (sb_method_schema_name (s_method), "all", "method name");
    tap_is_str (sb_method_schema_description (s_method), "every keyword", "description");
    tap_is_str (sb_method_schema_service_version (s_method), "2.1.0", "version");
    tap_is_str (sb_method_schema_service_description (s_method), "demo service",
                "service description");
    tap_ok (sb_method_schema_idempotent (s_method), "idempotent");
    tap_is_int (sb_method_schema_flags (s_method), SB_METHOD_IDEMPOTENT, "flags");
    tap_is_int (sb_method_schema_timeout_ms (s_method), 2500, "timeout_ms");
    tap_is_int (sb_method_schema_cache_ttl_ms (s_method), 1000, "cache_ttl_ms");
    const char *request_text = sb_method_schema_request_text (s_method);
    json_t *request_json = request_text ? json_loads (request_text, 0, NULL) : NULL;
    tap_ok (json_is_object (request_json) && json_object_get (request_json, "properties"),
            "request schema as JSON text");
    json_decref (request_json);
    tap_ok (sb_method_schema_reply_text (s_method) != NULL, "reply schema as JSON text");
    const sb_method_schema_t *free_method = sb_schema_set_method (set, 1);
    tap_is_str (sb_method_schema_name (sb_schema_set_method (set, 0)), "all", "sorted: all first");
    tap_ok (free_method && !sb_method_schema_idempotent (free_method)
            && sb_method_schema_timeout_ms (free_method) == 0
            && sb_method_schema_request_text (free_method) == NULL
            && sb_method_schema_reply_text (free_method) == NULL, "defaults of an empty method");
    tap_ok (sb_schema_set_method (set, 2) == NULL, "index past the end");
    msgpack_object nil = { .type = MSGPACK_OBJECT_NIL };
    tap_ok (sb_method_schema_validate_request (free_method, &nil, &err) == 0,
            "a method without schema accepts anything");

    /*  type, required, additionalProperties.  */
    s_check ("{\"name\":\"ab\",\"values\":[1]}", NULL);
    s_check ("[1]", "$: expected object, got array");
    s_check ("null", "$: expected object, got null");
    s_check ("{\"values\":[1]}", "$: missing required property \"name\"");
    s_check ("{\"name\":\"ab\"}", "$: missing required property \"values\"");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"extra\":1}",
             "$.extra: property not allowed (additionalProperties is false)");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"open\":{\"x\":1,\"y\":\"free\"}}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"open\":{\"x\":\"1\"}}",
             "$.open.x: expected integer, got string");

    /*  string: minLength, maxLength (code points), pattern.  */
    s_check ("{\"name\":\"éé\",\"values\":[1]}", NULL);
    s_check ("{\"name\":\"ééééé\",\"values\":[1]}", NULL);
    s_check ("{\"name\":\"a\",\"values\":[1]}", "$.name: 1 characters, fewer than minLength 2");
    s_check ("{\"name\":\"abcdef\",\"values\":[1]}", "$.name: 6 characters, more than maxLength 5");
    s_check ("{\"name\":\"ab1\",\"values\":[1]}", "$.name: does not match pattern ^[a-zé]+$");
    s_check ("{\"name\":5,\"values\":[1]}", "$.name: expected string, got integer");

    /*  array: items, minItems, maxItems; number accepts integers.  */
    s_check ("{\"name\":\"ab\",\"values\":[1,2.5,-3]}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1,2,\"x\"]}", "$.values[2]: expected number, got string");
    s_check ("{\"name\":\"ab\",\"values\":[]}", "$.values: 0 items, fewer than minItems 1");
    s_check ("{\"name\":\"ab\",\"values\":[1,2,3,4]}", "$.values: 4 items, more than maxItems 3");
    s_check ("{\"name\":\"ab\",\"values\":{}}", "$.values: expected array, got object");

    /*  integer and number: minimum, maximum; integer refuses floats.  */
    s_check ("{\"name\":\"ab\",\"values\":[1],\"count\":-5}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"count\":10}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"count\":11}", "$.count: 11 is greater than maximum 10");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"count\":-6}", "$.count: -6 is less than minimum -5");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"count\":1.0}", "$.count: expected integer, got number");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"ratio\":1}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"ratio\":0.5}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"ratio\":0.49}", "$.ratio: 0.48999999999999999 is less than minimum 0.5");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"ratio\":2}", "$.ratio: 2 is greater than maximum 1.5");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"big\":9223372036854775807}", NULL);

    /*  boolean, null, type arrays.  */
    s_check ("{\"name\":\"ab\",\"values\":[1],\"flag\":false}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"flag\":0}", "$.flag: expected boolean, got integer");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"nothing\":null}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"nothing\":false}", "$.nothing: expected null, got boolean");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"maybe\":null}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"maybe\":\"s\"}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"maybe\":[]}", "$.maybe: expected null or string, got array");

    /*  enum: strings, numbers (1 == 3.0 mathematically), null, arrays, objects.  */
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":\"green\"}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":3.0}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":null}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":[1,2]}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":{\"a\":1}}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":\"blue\"}",
             "$.color: not one of [\"red\",\"green\",3,null,[1,2],{\"a\":1}]");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":[2,1]}",
             "$.color: not one of [\"red\",\"green\",3,null,[1,2],{\"a\":1}]");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"color\":{\"a\":2}}",
             "$.color: not one of [\"red\",\"green\",3,null,[1,2],{\"a\":1}]");

    /*  binary: minLength, maxLength in bytes.  */
    s_check ("{\"name\":\"ab\",\"values\":[1],\"blob\":{\"$base64\":\"AAE=\"}}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"blob\":{\"$base64\":\"\"}}",
             "$.blob: 0 bytes, fewer than minLength 1");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"blob\":{\"$base64\":\"AAECAwQ=\"}}",
             "$.blob: 5 bytes, more than maxLength 4");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"blob\":\"AAE=\"}", "$.blob: expected binary, got string");
    s_check ("{\"name\":\"ab\",\"values\":[1],\"any\":{\"$base64\":\"AAE=\"}}", NULL);
    s_check ("{\"name\":\"ab\",\"values\":[1],\"odd key\":1}", "$[\"odd key\"]: expected string, got integer");

    /*  MessagePack-only cases.  */
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    s_begin (&pk, 1);
    msgpack_pack_int (&pk, 7);
    msgpack_pack_nil (&pk);
    s_check_packed (&sbuf, "$: key 2 is integer, not a string", "integer map key");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "maybe", 5);
    msgpack_pack_str_with_body (&pk, "\xff", 1);
    s_check_packed (&sbuf, "$.maybe: string is not valid UTF-8", "invalid UTF-8 string");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "ratio", 5);
    msgpack_pack_float (&pk, 1.25f);
    s_check_packed (&sbuf, NULL, "float32 is a number");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "big", 3);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    s_check_packed (&sbuf, "$.big: 18446744073709551615 is greater than maximum 9223372036854775807",
                    "uint64 beyond an int64 maximum");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "ratio", 5);
    msgpack_pack_double (&pk, 0.0 / 0.0);
    s_check_packed (&sbuf, "$.ratio: NaN is not within the bounds", "NaN against bounds");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "color", 5);
    msgpack_pack_bin_with_body (&pk, "red", 3);
    s_check_packed (&sbuf, "$.color: not one of [\"red\",\"green\",3,null,[1,2],{\"a\":1}]",
                    "binary never equals an enum string");
    s_begin (&pk, 1);
    msgpack_pack_str_with_body (&pk, "name", 4);
    msgpack_pack_str_with_body (&pk, "ab\0c", 4);
    s_check_packed (&sbuf, "$.name: does not match pattern ^[a-zé]+$", "NUL inside a string");
    msgpack_sbuffer_destroy (&sbuf);
    tap_ok (sb_method_schema_validate_request (s_method, NULL, &err) == -1
            && strcmp (err.text, "$: expected object, got null") == 0, "NULL body is nil");

    /*  Replies: the service's fault.  */
    msgpack_object empty_map = { .type = MSGPACK_OBJECT_MAP };
    if (!tap_ok (sb_method_schema_validate_reply (s_method, &empty_map, &err) == -1
            && err.code == SB_E_INTERNAL
            && strcmp (err.text, "reply $: missing required property \"ok\"") == 0,
            "reply violation is internal"))
        tap_diag ("  %s", err.text);

    /*  A second file for the same service is refused.  */
    if (!tap_ok (sb_schema_set_load_buffer (set, "again.json", s_schema_text, strlen (s_schema_text),
                                       &err) == -1
            && strstr (err.text, "again.json: service \"demo\" is already described by demo.json")
            && sb_schema_set_size (set) == 2, "duplicate service refused, set unchanged"))
        tap_diag ("  %s", err.text);
    sb_schema_set_destroy (&set);
    sb_schema_set_destroy (&set);
    tap_ok (set == NULL, "destroy NULLs and is safe twice");

    /*  Bad schema files: file name, path, reason.  */
    s_bad ("{\"service\":", "bad.json: line 1 column");
    s_bad ("[]", "bad.json: $: expected an object");
    s_bad ("{\"methods\":{\"m\":{}}}", "bad.json: $.service: expected the service name");
    s_bad ("{\"service\":\"Bad Name\",\"methods\":{\"m\":{}}}", "$.service: expected the service name");
    s_bad ("{\"service\":\"x\"}", "$.methods: expected a non-empty object of methods");
    s_bad ("{\"service\":\"x\",\"methods\":{}}", "$.methods: expected a non-empty object");
    s_bad ("{\"service\":\"x\",\"methods\":{\"m\":{}},\"extra\":1}", "$.extra: unknown field");
    s_bad ("{\"service\":\"x\",\"version\":1,\"methods\":{\"m\":{}}}", "$.version: expected a string");
    s_bad ("{\"service\":\"x\",\"methods\":{\"a b\":{}}}", "$.methods[\"a b\"]: method names");
    s_bad (METHOD ("[]"), "$.methods.m: expected a method object");
    s_bad (METHOD ("{\"idempotent\":1}"), "$.methods.m.idempotent: expected true or false");
    s_bad (METHOD ("{\"timeout_ms\":-1}"), "$.methods.m.timeout_ms: expected milliseconds");
    s_bad (METHOD ("{\"cache_ttl_ms\":1.5}"), "$.methods.m.cache_ttl_ms: expected milliseconds");
    s_bad (METHOD ("{\"retries\":3}"), "$.methods.m.retries: unknown method field");
    s_bad (REQUEST ("3"), "$.methods.m.request: expected a schema object");
    s_bad (REQUEST ("{\"type\":\"float\"}"), "$.methods.m.request.type: unknown type");
    s_bad (REQUEST ("{\"type\":[]}"), "$.methods.m.request.type: expected a type name");
    s_bad (REQUEST ("{\"type\":[\"string\",5]}"), "$.methods.m.request.type: unknown type");
    s_bad (REQUEST ("{\"properties\":[]}"), "$.methods.m.request.properties: expected an object");
    s_bad (REQUEST ("{\"properties\":{\"a\":{\"items\":{\"minLength\":-1}}}}"),
           "$.methods.m.request.properties.a.items.minLength: expected a non-negative integer");
    s_bad (REQUEST ("{\"required\":\"a\"}"), "$.methods.m.request.required: expected an array");
    s_bad (REQUEST ("{\"required\":[\"a\",2]}"), "$.methods.m.request.required[1]: expected a property name");
    s_bad (REQUEST ("{\"additionalProperties\":{}}"),
           "$.methods.m.request.additionalProperties: expected true or false");
    s_bad (REQUEST ("{\"items\":true}"), "$.methods.m.request.items: expected a schema object");
    s_bad (REQUEST ("{\"enum\":[]}"), "$.methods.m.request.enum: expected a non-empty array");
    s_bad (REQUEST ("{\"minimum\":\"1\"}"), "$.methods.m.request.minimum: expected a number");
    s_bad (REQUEST ("{\"maximum\":null}"), "$.methods.m.request.maximum: expected a number");
    s_bad (REQUEST ("{\"maxLength\":1.0}"), "$.methods.m.request.maxLength: expected a non-negative");
    s_bad (REQUEST ("{\"minItems\":\"2\"}"), "$.methods.m.request.minItems: expected a non-negative");
    s_bad (REQUEST ("{\"maxItems\":-2}"), "$.methods.m.request.maxItems: expected a non-negative");
    s_bad (REQUEST ("{\"pattern\":\"a(\"}"), "$.methods.m.request.pattern: invalid regular expression");
    s_bad (REQUEST ("{\"pattern\":\"((a{100}){100}){100}\"}"), "$.methods.m.request.pattern: pattern too costly");
    s_bad (REQUEST ("{\"pattern\":\"a{1,20000}\"}"), "$.methods.m.request.pattern: pattern too costly");
    {
        const char *ok = REQUEST ("{\"pattern\":\"^[{]?[a-z]{1,8}(-[0-9]{1,4})?\\\\{$\"}");
        sb_schema_set_t *one = sb_schema_set_new ();
        if (!tap_ok (sb_schema_set_load_buffer (one, "ok.json", ok, strlen (ok), &err) == 0,
                     "affordable bounded repetitions load"))
            tap_diag ("  %s", err.text);
        sb_schema_set_destroy (&one);
    }
    s_bad (REQUEST ("{\"pattern\":7}"), "$.methods.m.request.pattern: expected a regular expression");
    s_bad (REQUEST ("{\"minLength\":3,\"maxLength\":2}"), "minLength is greater than maxLength");
    s_bad (REQUEST ("{\"minItems\":3,\"maxItems\":2}"), "minItems is greater than maxItems");
    s_bad (REQUEST ("{\"minimum\":3,\"maximum\":2.5}"), "minimum is greater than maximum");
    s_bad (REQUEST ("{\"description\":3}"), "$.methods.m.request.description: expected a string");
    s_bad (REQUEST ("{\"oneOf\":[]}"), "$.methods.m.request.oneOf: unknown keyword");
    s_bad (METHOD ("{\"reply\":{\"type\":\"any\"}}"), "$.methods.m.reply.type: unknown type");
    s_bad ("{\"service\":\"x\",\"methods\":{\"m\":{},\"m\":{}}}", "duplicate object key");
    char deep [2048] = "";
    strcat (deep, REQUEST (""));
    deep [strlen (deep) - 3] = 0;           /* cut the closing "}}}" */
    for (int i = 0; i < SB_SCHEMA_DEPTH_MAX + 1; i++)
        strcat (deep, "{\"items\":");
    strcat (deep, "{}");
    for (int i = 0; i < SB_SCHEMA_DEPTH_MAX + 1; i++)
        strcat (deep, "}");
    strcat (deep, "}}}");
    s_bad (deep, "schema nested too deep");

    /*  Files and directories.  */
    char dir [] = "/tmp/sb-schema-XXXXXX";
    tap_ok (mkdtemp (dir) != NULL, "temporary directory");
    char path [256];
    snprintf (path, sizeof path, "%s/b.json", dir);
    FILE *file = fopen (path, "w");
    fputs (s_schema_text, file);
    fclose (file);
    snprintf (path, sizeof path, "%s/a.json", dir);
    file = fopen (path, "w");
    fputs ("{\"service\":\"alpha\",\"methods\":{\"go\":{\"request\":{\"type\":\"integer\"}}}}", file);
    fclose (file);
    snprintf (path, sizeof path, "%s/notes.txt", dir);
    file = fopen (path, "w");
    fputs ("not json", file);
    fclose (file);
    set = sb_schema_set_load_dir (dir, &err);
    if (!tap_ok (set && sb_schema_set_size (set) == 3, "directory: 3 methods from 2 .json files"))
        tap_diag ("  %s", err.text);
    tap_ok (sb_schema_set_find (set, "alpha", "go") && sb_schema_set_find (set, "demo", "free"),
            "both services found");
    tap_is_str (sb_method_schema_service (sb_schema_set_method (set, 0)), "alpha", "sorted by service");
    sb_schema_set_destroy (&set);
    snprintf (path, sizeof path, "%s/c.json", dir);
    file = fopen (path, "w");
    fputs ("{\"service\":\"gamma\",\"methods\":{\"go\":{\"request\":{\"typo\":1}}}}", file);
    fclose (file);
    set = sb_schema_set_load_dir (dir, &err);
    char want [300];
    snprintf (want, sizeof want, "%s/c.json: $.methods.go.request.typo: unknown keyword", dir);
    if (!tap_ok (set == NULL && strstr (err.text, want), "a bad file fails the directory, named"))
        tap_diag ("  %s", err.text);
    unlink (path);
    snprintf (path, sizeof path, "%s/missing.json", dir);
    set = sb_schema_set_new ();
    tap_ok (sb_schema_set_load_file (set, path, &err) == -1 && err.code == SB_E_NOT_FOUND
            && strstr (err.text, "missing.json"), "missing file: not_found, named");
    sb_schema_set_destroy (&set);
    tap_ok (sb_schema_set_load_dir ("/nonexistent/schemas", &err) == NULL
            && err.code == SB_E_NOT_FOUND, "missing directory");
    snprintf (path, sizeof path, "%s/a.json", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/b.json", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/notes.txt", dir);
    unlink (path);
    rmdir (dir);

    /*  The project's own schema files load, if the tree is at hand.  */
    const char *top = getenv ("SB_TOP_SRCDIR");
    if (top) {
        snprintf (path, sizeof path, "%s/schemas", top);
        set = sb_schema_set_load_dir (path, &err);
        if (!tap_ok (set != NULL, "schemas/ of the source tree loads (%zu methods)",
                sb_schema_set_size (set)))
            tap_diag ("  %s", err.text);
        sb_schema_set_destroy (&set);
    }
    return tap_done ();
}
