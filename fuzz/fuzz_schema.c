/*  fuzz_schema.c — libFuzzer target for the schema validator.

    A fixed schema using every keyword of the subset is loaded once; each
    input is then validated as a request and as a reply, read both as a
    MessagePack body (after the wire pre-scan, as a peer receives it) and,
    when it converts, as JSON text.  A refusal must carry the right code
    and a text that starts with the path ("$" or "reply $"); validation
    must give the same answer twice (it keeps no state).
*/
#include "schema.h"
#include "wire.h"

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
    return 0;
}
