/*  runtime_json.t — JSON <-> MessagePack conversion: every type both ways,
    integer and float edges, unicode, binary, and the refusals (malformed
    JSON, too deep, invalid UTF-8, non-string keys) with where they failed.  */
#include "switchboard.h"
#include "wire/wire.h"
#include "tap.h"

#include <float.h>
#include <math.h>

static sb_error_t err;

/*  A literal and its length, for texts without NUL bytes.  */
#define TEXT(s) s, strlen (s)

/*  JSON -> msgpack -> JSON; returns the JSON (caller frees) or NULL.  */
static char *
s_round_trip (const char *json)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    char *out = NULL;
    if (sb_json_to_msgpack (json, strlen (json), &sbuf, &err) == 0) {
        msgpack_unpacked result;
        msgpack_unpacked_init (&result);
        size_t offset = 0;
        if (msgpack_unpack_next (&result, sbuf.data, sbuf.size, &offset) == MSGPACK_UNPACK_SUCCESS
        &&  offset == sbuf.size)
            out = sb_msgpack_to_json (&result.data, &err);
        msgpack_unpacked_destroy (&result);
    }
    msgpack_sbuffer_destroy (&sbuf);
    return out;
}

static void
s_same (const char *json, const char *want)
{
    char *got = s_round_trip (json);
    if (!tap_is_str (got, want, "round trip %s", json))
        tap_diag ("  error: %s", err.text);
    free (got);
}

/*  JSON -> msgpack must fail with an error text containing `where`.  */
static void
s_refused (const char *json, size_t size, const char *where, const char *what)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    memset (&err, 0, sizeof err);
    int rc = sb_json_to_msgpack (json, size, &sbuf, &err);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST && strstr (err.text, where)
            && sbuf.size == 0, "refused: %s", what);
    if (rc == 0 || !strstr (err.text, where))
        tap_diag ("  error text: '%s', want it to contain '%s'", err.text, where);
    msgpack_sbuffer_destroy (&sbuf);
}

/*  Packs with `pack`, converts to JSON, compares (want NULL: must fail
    and the error must contain `where`).  */
typedef void (pack_fn) (msgpack_packer *pk);

static void
s_from_msgpack (pack_fn *pack, const char *want, const char *where, const char *what)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    pack (&pk);
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    msgpack_unpack_next (&result, sbuf.data, sbuf.size, &offset);
    memset (&err, 0, sizeof err);
    char *got = sb_msgpack_to_json (&result.data, &err);
    if (want)
        tap_is_str (got, want, "%s", what);
    else {
        tap_ok (got == NULL && err.code == SB_E_BAD_REQUEST && strstr (err.text, where),
                "%s", what);
        tap_diag ("  error: %s", err.text);
    }
    free (got);
    msgpack_unpacked_destroy (&result);
    msgpack_sbuffer_destroy (&sbuf);
}

static void s_pack_u64_max (msgpack_packer *pk) { msgpack_pack_uint64 (pk, UINT64_MAX); }
static void s_pack_i64_min (msgpack_packer *pk) { msgpack_pack_int64 (pk, INT64_MIN); }
static void s_pack_f32 (msgpack_packer *pk) { msgpack_pack_float (pk, 0.1f); }
static void s_pack_f32_big (msgpack_packer *pk) { msgpack_pack_float (pk, FLT_MAX); }
static void s_pack_f64_third (msgpack_packer *pk) { msgpack_pack_double (pk, 1.0 / 3.0); }
static void s_pack_f64_whole (msgpack_packer *pk) { msgpack_pack_double (pk, 3.0); }
static void s_pack_f64_tiny (msgpack_packer *pk) { msgpack_pack_double (pk, 4.9406564584124654e-324); }
static void s_pack_nan (msgpack_packer *pk) { msgpack_pack_double (pk, NAN); }
static void s_pack_inf (msgpack_packer *pk) { msgpack_pack_double (pk, -INFINITY); }

static void
s_pack_bin (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "data", 4);
    msgpack_pack_bin_with_body (pk, "\x00\x01\xff\xfe\x80", 5);
}

static void
s_pack_empty_bin (msgpack_packer *pk)
{
    msgpack_pack_bin_with_body (pk, "", 0);
}

static void
s_pack_bad_utf8 (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "a", 1);
    msgpack_pack_array (pk, 2);
    msgpack_pack_str_with_body (pk, "ok", 2);
    msgpack_pack_str_with_body (pk, "\xc3\x28", 2);
}

static void
s_pack_overlong (msgpack_packer *pk)
{
    msgpack_pack_str_with_body (pk, "\xc0\xaf", 2);
}

static void
s_pack_surrogate (msgpack_packer *pk)
{
    msgpack_pack_str_with_body (pk, "\xed\xa0\x80", 3);
}

static void
s_pack_int_key (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "outer", 5);
    msgpack_pack_map (pk, 1);
    msgpack_pack_int (pk, 7);
    msgpack_pack_nil (pk);
}

static void
s_pack_ext (msgpack_packer *pk)
{
    msgpack_pack_ext_with_body (pk, "abcd", 4, 5);
}

static void
s_pack_reserved (msgpack_packer *pk)
{
    msgpack_pack_map (pk, 1);
    msgpack_pack_str_with_body (pk, "$base64", 7);
    msgpack_pack_str_with_body (pk, "AAAA", 4);
}

static void
s_pack_control (msgpack_packer *pk)
{
    msgpack_pack_str_with_body (pk, "a\"b\\c\n\x01\x7f\0d", 10);
}


/*  Packs and checks that JSON gives exactly these msgpack bytes.  */
static void
s_bytes (const char *json, const char *bytes, size_t size, const char *what)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    int rc = sb_json_to_msgpack (json, strlen (json), &sbuf, &err);
    tap_ok (rc == 0 && sbuf.size == size && memcmp (sbuf.data, bytes, size) == 0, "%s", what);
    msgpack_sbuffer_destroy (&sbuf);
}

int
main (void)
{
    /*  Every type, both ways.  */
    s_same ("null", "null");
    s_same ("true", "true");
    s_same ("false", "false");
    s_same ("0", "0");
    s_same ("-1", "-1");
    s_same ("\"hello\"", "\"hello\"");
    s_same ("[]", "[]");
    s_same ("{}", "{}");
    s_same (" { \"b\" : 1 , \"a\" : [ 1 , 2.5 , \"x\" , null , true ] } ",
            "{\"b\":1,\"a\":[1,2.5,\"x\",null,true]}");
    s_same ("{\"z\":1,\"a\":2,\"m\":3}", "{\"z\":1,\"a\":2,\"m\":3}");
    s_same ("[[[[{\"deep\":[{}]}]]]]", "[[[[{\"deep\":[{}]}]]]]");

    /*  Integers: exact at the edges, encoded as integers.  */
    s_same ("9223372036854775807", "9223372036854775807");
    s_same ("-9223372036854775808", "-9223372036854775808");
    s_same ("4294967296", "4294967296");
    s_same ("9007199254740993", "9007199254740993");
    s_bytes ("9223372036854775807", "\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9,
             "INT64_MAX packs as uint64");
    s_bytes ("-9223372036854775808", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9,
             "INT64_MIN packs as int64");
    s_bytes ("5", "\x05", 1, "small integers pack as fixint");
    s_bytes ("1.0", "\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", 9, "1.0 stays a float64");
    s_from_msgpack (s_pack_u64_max, "18446744073709551615", NULL, "uint64 max prints exactly");
    s_from_msgpack (s_pack_i64_min, "-9223372036854775808", NULL, "int64 min prints exactly");
    s_refused ("18446744073709551616", 20, "line 1", "integer beyond 64 bits");

    /*  Floats: shortest round trip, always a real.  */
    s_same ("0.1", "0.1");
    s_same ("-0.0", "-0.0");
    s_same ("1e300", "1e+300");
    s_same ("2.5E-3", "0.0025");
    s_same ("1.7976931348623157e308", "1.7976931348623157e+308");
    s_same ("123456789.125", "123456789.125");
    s_from_msgpack (s_pack_f32, "0.1", NULL, "float32 0.1 prints as 0.1");
    s_from_msgpack (s_pack_f32_big, "3.4028235e+38", NULL, "float32 max, shortest");
    s_from_msgpack (s_pack_f64_third, "0.3333333333333333", NULL, "1/3 with 16 digits");
    s_from_msgpack (s_pack_f64_whole, "3.0", NULL, "whole float keeps .0");
    s_from_msgpack (s_pack_f64_tiny, "5e-324", NULL, "smallest denormal");
    s_from_msgpack (s_pack_nan, NULL, "NaN", "NaN refused");
    s_from_msgpack (s_pack_inf, NULL, "infinity", "infinity refused");

    /*  Strings and unicode.  */
    s_same ("\"caf\\u00e9 \\u00fc\\ud83d\\ude00\"", "\"café ü😀\"");
    s_same ("\"é日本😀\"", "\"é日本😀\"");
    s_same ("\"tab\\tnl\\nq\\\"bs\\\\ \\u0001\"", "\"tab\\tnl\\nq\\\"bs\\\\ \\u0001\"");
    s_same ("\"nul\\u0000inside\"", "\"nul\\u0000inside\"");
    s_refused ("{\"k\\u0000ey\":1}", 14, "line 1", "NUL in a key (jansson cannot hold it)");
    s_same ("\"\"", "\"\"");
    s_from_msgpack (s_pack_control, "\"a\\\"b\\\\c\\n\\u0001\x7f\\u0000d\"", NULL,
                    "control characters escaped");

    /*  Binary.  */
    s_same ("{\"$base64\":\"AAH//oA=\"}", "{\"$base64\":\"AAH//oA=\"}");
    s_same ("{\"$base64\":\"\"}", "{\"$base64\":\"\"}");
    s_bytes ("{\"$base64\":\"aGk=\"}", "\xc4\x02hi", 4, "base64 object packs as bin");
    s_same ("{\"$base64\":\"aGk=\",\"other\":1}", "{\"$base64\":\"aGk=\",\"other\":1}");
    s_from_msgpack (s_pack_bin, "{\"data\":{\"$base64\":\"AAH//oA=\"}}", NULL, "bin as $base64");
    s_from_msgpack (s_pack_empty_bin, "{\"$base64\":\"\"}", NULL, "empty bin");
    s_refused ("{\"x\":{\"$base64\":\"a!==\"}}", 24, "$.x.$base64: invalid base64", "bad base64");
    s_refused (TEXT ("{\"x\":{\"$base64\":\"aGk\"}}"), "$.x.$base64: invalid base64",
               "base64 without padding");
    s_refused ("[{\"$base64\":5}]", 15, "$[0].$base64: expected a base64 string",
               "$base64 with a number");
    s_from_msgpack (s_pack_reserved, NULL, "$: a map whose only key is \"$base64\"",
                    "a str map {\"$base64\": ...} is refused, not made ambiguous");

    /*  Malformed JSON says where.  */
    s_refused ("{\"a\": 1,}", 9, "line 1 column 9", "trailing comma");
    s_refused ("[1, 2", 5, "line 1", "unterminated array");
    s_refused ("{\"a\":1}\n{\"b\":2}", 15, "line 2", "trailing data");
    s_refused ("", 0, "line", "empty text");
    s_refused ("  ", 2, "line", "only blanks");
    s_refused ("{\"a\":1,\"a\":2}", 13, "duplicate", "duplicate key");
    s_refused ("[NaN]", 5, "line 1", "NaN literal");
    s_refused ("\"\\ud800\"", 8, "line 1", "lone surrogate escape");
    s_refused ("\"\xc3\x28\"", 4, "line 1", "invalid UTF-8 in JSON");
    s_refused ("\"\xed\xa0\x80\"", 5, "line 1", "UTF-8 encoded surrogate in JSON");
    s_refused ("[1]\0[2]", 7, "line 1", "NUL byte after the value");

    /*  Depth: SB_DEPTH_MAX containers pass, one more is refused with a path.  */
    char deep [2 * SB_DEPTH_MAX + 16];
    size_t n = 0;
    for (int i = 0; i < SB_DEPTH_MAX; i++)
        deep [n++] = '[';
    for (int i = 0; i < SB_DEPTH_MAX; i++)
        deep [n++] = ']';
    deep [n] = 0;
    char *ok = s_round_trip (deep);
    tap_ok (ok && strcmp (ok, deep) == 0, "%d nested arrays pass", SB_DEPTH_MAX);
    free (ok);
    n = 0;
    deep [n++] = '{';
    memcpy (deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < SB_DEPTH_MAX; i++)
        deep [n++] = '[';
    for (int i = 0; i < SB_DEPTH_MAX; i++)
        deep [n++] = ']';
    deep [n++] = '}';
    s_refused (deep, n, "$.a[0][0]", "one level too deep, with the path");
    char *huge = malloc (100001);
    memset (huge, '[', 100000);
    huge [100000] = 0;
    s_refused (huge, 100000, "line 1", "100000 open brackets");
    free (huge);
    /*  msgpack-c's unpacker stops at 32 levels itself: build the object.  */
    msgpack_object chain [SB_DEPTH_MAX + 2];
    for (int i = 0; i <= SB_DEPTH_MAX; i++) {
        chain [i].type = MSGPACK_OBJECT_ARRAY;
        chain [i].via.array.size = 1;
        chain [i].via.array.ptr = &chain [i + 1];
    }
    chain [SB_DEPTH_MAX + 1].type = MSGPACK_OBJECT_NIL;
    char *too_deep = sb_msgpack_to_json (&chain [0], &err);
    tap_ok (too_deep == NULL && strstr (err.text, "nested deeper"), "msgpack too deep for JSON");
    free (too_deep);
    too_deep = sb_msgpack_to_json (&chain [1], &err);
    tap_ok (too_deep && strlen (too_deep) == 2 * SB_DEPTH_MAX + 4, "%d levels convert",
            SB_DEPTH_MAX);
    free (too_deep);

    /*  Size bound.  */
    size_t big_size = SB_BODY_MAX_DEFAULT + 1;
    char *big = malloc (big_size);
    memset (big, ' ', big_size);
    big [0] = '1';
    s_refused (big, big_size, "larger than", "text above the body limit");
    free (big);

    /*  MessagePack that JSON cannot express.  */
    s_from_msgpack (s_pack_bad_utf8, NULL, "$.a[1]: string is not valid UTF-8",
                    "invalid UTF-8 refused with its path");
    s_from_msgpack (s_pack_overlong, NULL, "not valid UTF-8", "overlong UTF-8 refused");
    s_from_msgpack (s_pack_surrogate, NULL, "not valid UTF-8", "UTF-8 surrogate refused");
    s_from_msgpack (s_pack_int_key, NULL, "$.outer: map key 0 is not a string",
                    "integer map key refused");
    s_from_msgpack (s_pack_ext, NULL, "ext type 5", "ext refused");

    /*  Paths quote keys that are not identifiers.  */
    s_refused (TEXT ("{\"a b\":{\"q\\\"\":[0,{\"$base64\":1}]}}"),
               "$[\"a b\"][\"q\\\"\"][1].$base64", "odd keys quoted in the path");

    /*  Appends: existing bytes in the buffer are kept; failure leaves them.  */
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_sbuffer_write (&sbuf, "\x01", 1);
    tap_ok (sb_json_to_msgpack ("2", 1, &sbuf, &err) == 0 && sbuf.size == 2
            && memcmp (sbuf.data, "\x01\x02", 2) == 0, "appends to the buffer");
    tap_ok (sb_json_to_msgpack ("[1,{\"$base64\":\"!\"}]", 20, &sbuf, &err) == -1
            && sbuf.size == 2, "a failed conversion leaves the buffer as it was");
    msgpack_sbuffer_destroy (&sbuf);
    tap_ok (sb_json_to_msgpack (NULL, 0, NULL, &err) == -1, "NULL arguments refused");
    tap_ok (sb_msgpack_to_json (NULL, &err) == NULL, "NULL object refused");

    return tap_done ();
}
