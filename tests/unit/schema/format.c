/*  format.c — bodies by format (runtime/schema/format.c): sb_pack builds
    what a hand-driven packer would, sb_unpack reads it back into C
    variables, mismatches name their path, bad formats are refused without
    a crash, and argument lists stay aligned past absent optional keys.  */
#include "tap.h"
#include "switchboard.h"

#include <string.h>

/*  Packs with the format into buf; the decoded object in *obj.  */
static msgpack_unpacked s_unpacked;
static msgpack_sbuffer s_buffer;

static const msgpack_object *
s_decode (void)
{
    msgpack_unpacked_destroy (&s_unpacked);
    msgpack_unpacked_init (&s_unpacked);
    size_t off = 0;
    if (msgpack_unpack_next (&s_unpacked, s_buffer.data, s_buffer.size, &off) != MSGPACK_UNPACK_SUCCESS
    ||  off != s_buffer.size)
        return NULL;
    return &s_unpacked.data;
}

int
main (void)
{
    msgpack_sbuffer_init (&s_buffer);
    msgpack_unpacked_init (&s_unpacked);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &s_buffer, msgpack_sbuffer_write);
    sb_error_t err = { 0 };

    /*  Packing.  */
    int rc = sb_pack (&pk, &err, "{s:I, s:s, s:[s, s], s:b, s:f, s:n, s:{}}",
                      "id", (int64_t) 42, "title", "buy milk", "tags", "home", "urgent",
                      "done", 0, "weight", 1.5, "owner", "extra");
    tap_ok (rc == 0, "sb_pack builds a map of 7 entries");
    msgpack_sbuffer hand;
    msgpack_sbuffer_init (&hand);
    msgpack_packer hp;
    msgpack_packer_init (&hp, &hand, msgpack_sbuffer_write);
    msgpack_pack_map (&hp, 7);
    msgpack_pack_str_with_body (&hp, "id", 2); msgpack_pack_int64 (&hp, 42);
    msgpack_pack_str_with_body (&hp, "title", 5); msgpack_pack_str_with_body (&hp, "buy milk", 8);
    msgpack_pack_str_with_body (&hp, "tags", 4); msgpack_pack_array (&hp, 2);
    msgpack_pack_str_with_body (&hp, "home", 4); msgpack_pack_str_with_body (&hp, "urgent", 6);
    msgpack_pack_str_with_body (&hp, "done", 4); msgpack_pack_false (&hp);
    msgpack_pack_str_with_body (&hp, "weight", 6); msgpack_pack_double (&hp, 1.5);
    msgpack_pack_str_with_body (&hp, "owner", 5); msgpack_pack_nil (&hp);
    msgpack_pack_str_with_body (&hp, "extra", 5); msgpack_pack_map (&hp, 0);
    tap_ok (hand.size == s_buffer.size && memcmp (hand.data, s_buffer.data, hand.size) == 0,
            "the bytes are those of the same object packed by hand (%zu bytes)", hand.size);
    msgpack_sbuffer_destroy (&hand);
    const msgpack_object *body = s_decode ();
    tap_ok (body != NULL, "one object, nothing after it");

    /*  Unpacking.  */
    int64_t id = 0;
    char title [16] = "", tag0 [8] = "", tag1 [8] = "";
    bool done = true;
    double weight = 0;
    int missing = 7;
    const msgpack_object *extra = NULL;
    rc = sb_unpack (body, &err, "{s:I, s:s, s:[s, s], s:b, s:f, s?:i, s:o, s:n}",
                    "id", &id, "title", title, sizeof title, "tags", tag0, sizeof tag0,
                    tag1, sizeof tag1, "done", &done, "weight", &weight, "nope", &missing,
                    "extra", &extra, "owner");
    tap_ok (rc == 0, "sb_unpack reads it back (%s)", rc ? err.text : "ok");
    tap_ok (id == 42 && strcmp (title, "buy milk") == 0 && strcmp (tag0, "home") == 0
            && strcmp (tag1, "urgent") == 0 && !done && weight == 1.5,
            "every variable holds its value");
    tap_is_int (missing, 7, "an absent optional key leaves its variable alone");
    tap_ok (extra && extra->type == MSGPACK_OBJECT_MAP, "o borrows the object");
    const char *ptr = NULL;
    size_t len = 0;
    rc = sb_unpack (body, &err, "{s:S}", "title", &ptr, &len);
    tap_ok (rc == 0 && len == 8 && memcmp (ptr, "buy milk", 8) == 0, "S borrows a string with its length");

    /*  Mismatches, with their paths.  */
    rc = sb_unpack (body, &err, "{s:s}", "id", title, sizeof title);
    tap_ok (rc == -1 && err.code == SB_E_BAD_REQUEST
            && strcmp (err.text, "$.id: expected string, got integer") == 0,
            "type mismatch: bad_request naming the path (%s)", err.text);
    rc = sb_unpack (body, &err, "{s:[s, I]}", "tags", tag0, sizeof tag0, &id);
    tap_ok (rc == -1 && strcmp (err.text, "$.tags[1]: expected integer, got string") == 0,
            "inside an array (%s)", err.text);
    rc = sb_unpack (body, &err, "{s:s}", "who", title, sizeof title);
    tap_ok (rc == -1 && strcmp (err.text, "$.who: missing") == 0, "a required key missing (%s)", err.text);
    char tiny [4];
    rc = sb_unpack (body, &err, "{s:s}", "title", tiny, sizeof tiny);
    tap_ok (rc == -1 && strcmp (err.text, "$.title: longer than 3 bytes") == 0,
            "a string longer than its buffer is refused, not cut (%s)", err.text);
    rc = sb_unpack (body, &err, "{s:I, !}", "id", &id);
    tap_ok (rc == -1 && strstr (err.text, "7 keys, 1 expected"), "! refuses other keys (%s)", err.text);
    rc = sb_unpack (body, &err, "{s:[s]}", "tags", tag0, sizeof tag0);
    tap_ok (rc == -1 && strstr (err.text, "$.tags: 2 items, 1 expected"), "arrays have their exact size (%s)", err.text);
    rc = sb_unpack (body, &err, "[s]", tag0, sizeof tag0);
    tap_ok (rc == -1 && strcmp (err.text, "$: expected array, got map") == 0, "the top level too (%s)", err.text);

    /*  Integers at their limits.  */
    msgpack_sbuffer_clear (&s_buffer);
    rc = sb_pack (&pk, &err, "[I, I]", INT64_MAX, (int64_t) 3000000000);
    body = s_decode ();
    int small = 0;
    rc = sb_unpack (body, &err, "[I, i]", &id, &small);
    tap_ok (rc == -1 && id == INT64_MAX && strstr (err.text, "$[1]: expected integer (32 bits)"),
            "int64 reads INT64_MAX; int refuses 3e9 (%s)", err.text);

    /*  Bad formats: refused, no crash.  */
    const char *bad [] = { "{s:I", "{x:I}", "{s I}", "[I", "Q", "{s:I} extra" };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        rc = sb_unpack (body, &err, bad [i], "k", &id);
        tap_ok (rc == -1 && strncmp (err.text, "format: ", 8) == 0,
                "unpack format '%s' refused (%s)", bad [i], err.text);
    }
    msgpack_sbuffer_clear (&s_buffer);
    rc = sb_pack (&pk, &err, "{s:I", "k", (int64_t) 1);
    tap_ok (rc == -1 && strncmp (err.text, "format: ", 8) == 0, "pack format '{s:I' refused (%s)", err.text);
    rc = sb_pack (&pk, &err, "[s, s]", NULL, "x");
    tap_ok (rc == 0, "pack: a NULL string is nil");

    msgpack_unpacked_destroy (&s_unpacked);
    msgpack_sbuffer_destroy (&s_buffer);
    return tap_done ();
}
