/*  fuzz_schema.c — libFuzzer target for the schema validator.

    A fixed schema using every keyword of the subset is loaded once; each
    input is then validated as a request and as a reply, read both as a
    MessagePack body (after the wire pre-scan, as a peer receives it) and,
    when it converts, as JSON text.  A refusal must carry the right code
    and a text that starts with the path ("$" or "reply $"); validation
    must give the same answer twice (it keeps no state).

    The input is also loaded as a schema file: a file that loads must give
    an OpenAPI document (the REST bridge's openapi.c, built in), and a few fixed bodies are validated against
    every method it describes.
*/
#include "openapi.h"
#include "wire/wire.h"

#include <stdlib.h>
#include <string.h>

static const char s_schema [] =
    "{\"service\":\"fuzz\",\"version\":\"1\",\"methods\":{\"m\":{"
    "\"idempotent\":true,\"timeout_ms\":100,"
    "\"request\":{\"type\":\"object\",\"additionalProperties\":false,"
    "  \"required\":[\"s\"],"
    "  \"properties\":{"
    "    \"s\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":8,\"pattern\":\"^[a-z]+(-[0-9]+)?$\"},"
    "    \"n\":{\"type\":\"number\",\"minimum\":-1.5,\"maximum\":1e6},"
    "    \"i\":{\"type\":[\"integer\",\"null\"],\"minimum\":0,\"maximum\":9223372036854775807},"
    "    \"b\":{\"type\":\"boolean\"},"
    "    \"e\":{\"enum\":[\"x\",1,2.5,null,[1,{\"k\":\"v\"}],{\"a\":[true]}]},"
    "    \"a\":{\"type\":\"array\",\"minItems\":0,\"maxItems\":4,"
    "          \"items\":{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"binary\",\"maxLength\":3}},"
    "                     \"required\":[\"q\"]}},"
    "    \"deep\":{\"items\":{\"items\":{\"items\":{\"type\":\"string\",\"pattern\":\"é|a*b\"}}}},"
    "    \"any\":{}"
    "  }},"
    "\"reply\":{\"type\":[\"array\",\"string\",\"binary\"],\"maxLength\":2,\"maxItems\":2,"
    "  \"items\":{\"enum\":[0,\"z\"]}}"
    "}}}";

static sb_schema_set_t *s_set;
static const sb_method_schema_t *s_method;

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    sb_error_t err;
    s_set = sb_schema_set_new ();
    if (!s_set || sb_schema_set_load_buffer (s_set, "fuzz.json", s_schema, strlen (s_schema), &err))
        abort ();
    s_method = sb_schema_set_find (s_set, "fuzz", "m");
    if (!s_method)
        abort ();
    return 0;
}

static void
s_validate (const msgpack_object *body)
{
    sb_error_t err = { SB_OK, "" }, again = { SB_OK, "" };
    int rc = sb_method_schema_validate_request (s_method, body, &err);
    if (rc != sb_method_schema_validate_request (s_method, body, &again))
        abort ();
    if (rc && (err.code != SB_E_BAD_REQUEST || err.text [0] != '$'
               || strcmp (err.text, again.text) != 0))
        abort ();
    rc = sb_method_schema_validate_reply (s_method, body, &err);
    if (rc && (err.code != SB_E_INTERNAL || strncmp (err.text, "reply $", 7) != 0))
        abort ();
}

static void
s_validate_bytes (const char *data, size_t size)
{
    if (sb_wire_check (data, size, SB_DEPTH_MAX) != 0)
        return;
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    if (msgpack_unpack_next (&result, data, size, &offset) == MSGPACK_UNPACK_SUCCESS)
        s_validate (&result.data);
    msgpack_unpacked_destroy (&result);
}

/*  The input as a schema file.  */
static void
s_load (const uint8_t *data, size_t size)
{
    static const char *bodies [] = {
        "null", "{\"s\":\"abc\",\"n\":[1,2.5,{\"$base64\":\"AAE=\"}]}", "[\"x\",-7,true]",
        "{\"a\":{\"b\":{\"c\":\"\"}}}", "\"\u00e9t\u00e9\"", "18446744073",
    };
    sb_error_t err = { SB_OK, "" };
    sb_schema_set_t *set = sb_schema_set_new ();
    if (!set)
        abort ();
    if (sb_schema_set_load_buffer (set, "input.json", (const char *) data, size, &err) == 0) {
        json_t *doc = sb_rest_openapi_build (set, NULL, NULL, &err);
        if (!doc)
            abort ();
        json_decref (doc);
        for (size_t i = 0; i < sb_schema_set_size (set); i++) {
            const sb_method_schema_t *method = sb_schema_set_method (set, i);
            if (sb_schema_set_find (set, sb_method_schema_service (method),
                                    sb_method_schema_name (method)) != method)
                abort ();
            for (size_t b = 0; b < sizeof bodies / sizeof bodies [0]; b++) {
                msgpack_sbuffer sbuf;
                msgpack_sbuffer_init (&sbuf);
                if (sb_json_to_msgpack (bodies [b], strlen (bodies [b]), &sbuf, &err) != 0)
                    abort ();
                msgpack_unpacked result;
                msgpack_unpacked_init (&result);
                size_t offset = 0;
                msgpack_unpack_next (&result, sbuf.data, sbuf.size, &offset);
                if (sb_method_schema_validate_request (method, &result.data, &err)
                &&  (err.code != SB_E_BAD_REQUEST || err.text [0] != '$'))
                    abort ();
                msgpack_unpacked_destroy (&result);
                msgpack_sbuffer_destroy (&sbuf);
            }
        }
    }
    else
    if (err.code == SB_OK || strncmp (err.text, "input.json: ", 12) != 0)
        abort ();
    sb_schema_set_destroy (&set);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_method)
        LLVMFuzzerInitialize (NULL, NULL);
    s_validate_bytes ((const char *) data, size);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    sb_error_t err;
    if (sb_json_to_msgpack ((const char *) data, size, &sbuf, &err) == 0)
        s_validate_bytes (sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
    s_load (data, size);
    return 0;
}
