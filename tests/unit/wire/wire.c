/*  runtime_wire.t — the header codec and the MessagePack pre-scan.  */
#include "wire/wire.h"
#include "tap.h"

static sb_wire_reason_t
s_decode_bytes (const char *bytes, size_t size)
{
    sb_header_t h;
    return sb_header_decode (&h, bytes, size);
}

int
main (void)
{
    uint8_t buf [SB_HEADER_MAX];
    sb_header_t in, out;

    /*  Round trip of every field.  */
    sb_header_init (&in, SB_CMD_REQUEST);
    in.request_id = 0x1122334455667788ULL;
    tap_ok (sb_header_set_service (&in, "echo") == 0, "set service");
    tap_ok (sb_header_set_method (&in, "reverse") == 0, "set method");
    in.timeout_ms = 2500;
    in.present |= SB_H_TIMEOUT;
    in.flags = SB_F_IDEMPOTENT;
    memset (in.trace, 0xab, 16);
    in.present |= SB_H_TRACE;
    in.key_id_size = 4;
    memcpy (in.key_id, "abcd", 4);
    size_t size = sb_header_encode (&in, buf);
    tap_ok (size > 0 && size < 100, "request header encodes small (%zu bytes)", size);
    tap_ok (sb_wire_check (buf, size, SB_DEPTH_MAX) == 0, "encoded header passes the pre-scan");
    tap_is_int (sb_header_decode (&out, buf, size), SB_WIRE_OK, "decodes");
    tap_is_int (out.command, SB_CMD_REQUEST, "command");
    tap_ok (out.request_id == in.request_id, "request id (64-bit)");
    tap_is_str (out.service, "echo", "service");
    tap_is_str (out.method, "reverse", "method");
    tap_is_int (out.timeout_ms, 2500, "timeout");
    tap_is_int (out.flags, SB_F_IDEMPOTENT, "flags");
    tap_ok (memcmp (out.trace, in.trace, 16) == 0 && (out.present & SB_H_TRACE), "trace id");
    tap_ok (out.key_id_size == 4 && memcmp (out.key_id, "abcd", 4) == 0, "key id");

    sb_header_init (&in, SB_CMD_ERROR);
    in.code = SB_E_TIMEOUT;
    sb_header_set_text (&in, "deadline passed");
    size = sb_header_encode (&in, buf);
    tap_is_int (sb_header_decode (&out, buf, size), SB_WIRE_OK, "error header decodes");
    tap_ok (out.code == SB_E_TIMEOUT && strcmp (out.text, "deadline passed") == 0, "code and text");

    /*  Refusals.  */
    tap_ok (sb_header_set_service (&in, "bad name") == -1, "names with spaces refused");
    tap_ok (sb_header_set_service (&in, "") == -1, "empty names refused");
    tap_is_int (s_decode_bytes ("", 0), SB_WIRE_MALFORMED, "empty frame");
    tap_is_int (s_decode_bytes ("\x92\x01\x04", 3), SB_WIRE_MALFORMED, "array instead of map");
    tap_is_int (s_decode_bytes ("\x82\x00\x01", 3), SB_WIRE_MALFORMED, "truncated map");
    tap_is_int (s_decode_bytes ("\x82\x00\x02\x01\x04", 5), SB_WIRE_BAD_VERSION, "version 2 refused");
    tap_is_int (s_decode_bytes ("\x81\x01\x04", 3), SB_WIRE_BAD_VERSION, "missing version");
    tap_is_int (s_decode_bytes ("\x82\x00\x01\x01\x63", 5), SB_WIRE_BAD_COMMAND, "unknown command 99");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\x03\x05", 7), SB_WIRE_BAD_FIELD,
                "service given as an integer");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\x03\xa3\x61\x20\x62", 10), SB_WIRE_BAD_FIELD,
                "service with a space");
    tap_is_int (s_decode_bytes ("\x82\x00\x01\x01\x04\xc0", 6), SB_WIRE_MALFORMED, "trailing bytes");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\x3f\x91\xc0", 8), SB_WIRE_OK,
                "unknown key 63 with an array value is skipped");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\xa1k\x05", 8), SB_WIRE_OK,
                "a string key is skipped with its value");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\xcd\x30", 7), SB_WIRE_MALFORMED,
                "a truncated uint16 key is malformed, not skipped from its middle");
    tap_is_int (s_decode_bytes ("\x83\x00\x01\x01\x04\x91\x0d\xc4", 8), SB_WIRE_MALFORMED,
                "an array key followed by a truncated bin value is malformed");
    tap_is_int (s_decode_bytes ("\xdf\xff\xff\xff\xff\x00\x01", 7), SB_WIRE_MALFORMED,
                "map claiming 4 billion pairs");
    char big [SB_HEADER_MAX + 1];
    memset (big, 0, sizeof big);
    tap_is_int (s_decode_bytes (big, sizeof big), SB_WIRE_OVERSIZED, "oversized frame");

    /*  Inline bodies: the body field comes last, the caller appends it.  */
    static uint8_t frame [SB_FRAME_HEADER_MAX + 16];
    uint8_t body [SB_INLINE_MAX + 1];
    for (size_t i = 0; i < sizeof body; i++)
        body [i] = (uint8_t) (i * 7);
    sb_header_init (&in, SB_CMD_REPLY);
    in.request_id = 9;
    size = sb_header_encode_inline (&in, 64, frame);
    memcpy (frame + size, body, 64);
    tap_is_int (sb_header_decode (&out, frame, size + 64), SB_WIRE_OK, "inline body of 64 bytes decodes");
    tap_ok ((out.present & SB_H_BODY) && out.body_size == 64 && out.body == frame + size
            && out.request_id == 9, "the body is located in place, not copied (%u bytes)", out.body_size);
    tap_ok (sb_wire_check (frame, size + 64, SB_DEPTH_MAX) == 0, "an inline frame is one MessagePack map");
    size = sb_header_encode_inline (&in, SB_INLINE_MAX, frame);
    memcpy (frame + size, body, SB_INLINE_MAX);
    tap_ok (size + SB_INLINE_MAX > SB_HEADER_MAX
            && sb_header_decode (&out, frame, size + SB_INLINE_MAX) == SB_WIRE_OK
            && out.body_size == SB_INLINE_MAX && !memcmp (out.body, body, SB_INLINE_MAX),
            "a body of SB_INLINE_MAX bytes: the frame may pass SB_HEADER_MAX");
    size = sb_header_encode (&in, buf);
    tap_ok (sb_header_decode (&out, buf, size) == SB_WIRE_OK && !(out.present & SB_H_BODY)
            && out.body == NULL && out.body_size == 0, "no body field: no body");

    /*  {0: 1, 1: 5, 19: <value>} by hand.  */
    static const uint8_t head [] = { 0x83, 0x00, 0x01, 0x01, 0x05, 0x13 };
    memcpy (frame, head, sizeof head);
    frame [6] = 0xa2; frame [7] = 'h'; frame [8] = 'i';
    tap_is_int (sb_header_decode (&out, frame, 9), SB_WIRE_BAD_FIELD, "inline body as a str: bad_field");
    frame [6] = 0x05;
    tap_is_int (sb_header_decode (&out, frame, 7), SB_WIRE_BAD_FIELD, "inline body as an int: bad_field");
    frame [6] = 0xc4; frame [7] = 0;
    tap_is_int (sb_header_decode (&out, frame, 8), SB_WIRE_BAD_FIELD, "empty inline body: bad_field");
    frame [6] = 0xc5; frame [7] = (SB_INLINE_MAX + 1) >> 8; frame [8] = (SB_INLINE_MAX + 1) & 0xff;
    memset (frame + 9, 0, SB_INLINE_MAX + 1);
    tap_is_int (sb_header_decode (&out, frame, 9 + SB_INLINE_MAX + 1), SB_WIRE_BAD_FIELD,
                "inline body of SB_INLINE_MAX + 1 bytes: bad_field");
    tap_is_int (sb_header_decode (&out, frame, 9 + 100), SB_WIRE_MALFORMED,
                "inline body claiming more bytes than the frame has: malformed");
    frame [6] = 0xc6; frame [7] = 0; frame [8] = 0; frame [9] = 0; frame [10] = 3;
    memcpy (frame + 11, "abc", 3);
    tap_ok (sb_header_decode (&out, frame, 14) == SB_WIRE_OK && out.body_size == 3
            && !memcmp (out.body, "abc", 3), "a bin 32 tag is accepted too");
    /*  Two body fields.  */
    static const uint8_t twice [] = { 0x84, 0x00, 0x01, 0x01, 0x05, 0x13, 0xc4, 0x01, 0x61,
                                      0x13, 0xc4, 0x01, 0x62 };
    tap_is_int (sb_header_decode (&out, twice, sizeof twice), SB_WIRE_BAD_FIELD, "two body fields: bad_field");
    /*  The header proper may not grow past SB_HEADER_MAX beside a body:
        an unknown key 63 with 2100 bytes of str, then a 10-byte body.  */
    uint8_t *p = frame;
    *p++ = 0x84; *p++ = 0x00; *p++ = 0x01; *p++ = 0x01; *p++ = 0x05;
    *p++ = 0x3f; *p++ = 0xda; *p++ = 2100 >> 8; *p++ = 2100 & 0xff;
    memset (p, 'x', 2100);
    p += 2100;
    *p++ = 0x13; *p++ = 0xc4; *p++ = 10;
    memset (p, 1, 10);
    p += 10;
    tap_is_int (sb_header_decode (&out, frame, (size_t) (p - frame)), SB_WIRE_OVERSIZED,
                "2100 bytes of header beside an inline body: oversized");
    memset (frame, 0x90, SB_FRAME_HEADER_MAX + 1);
    tap_is_int (sb_header_decode (&out, frame, SB_FRAME_HEADER_MAX + 1), SB_WIRE_OVERSIZED,
                "a frame past SB_FRAME_HEADER_MAX: oversized");
    tap_is_int (sb_header_decode (&out, frame, SB_HEADER_MAX + 100), SB_WIRE_OVERSIZED,
                "past SB_HEADER_MAX without a body field: oversized");

    /*  Pre-scan.  */
    tap_ok (sb_wire_check ("\xdd\x7f\xff\xff\xff\x01", 6, 32) == -1, "array claiming 2^31 items");
    tap_ok (sb_wire_check ("\xdb\x00\x01\x00\x00x", 6, 32) == -1, "str claiming 64 KiB");
    tap_ok (sb_wire_check ("\x91\x91\x91\xc0", 4, 2) == -1, "nesting past the limit");
    tap_ok (sb_wire_check ("\x91\x91\x91\xc0", 4, 3) == 0, "nesting at the limit");
    tap_ok (sb_wire_check ("\xc1", 1, 3) == -1, "reserved byte 0xc1");
    tap_ok (sb_wire_check ("\xc0\xc0", 2, 3) == -1, "two objects where one is expected");
    tap_ok (sb_wire_check ("\xc7\x02\x01\xaa\xbb", 5, 3) == 0, "ext 8");

    tap_is_str (sb_code_name (SB_E_OVERLOADED), "overloaded", "code names");
    tap_is_int (sb_code_http_status (SB_E_TIMEOUT), 504, "timeout is 504");
    tap_is_int (sb_code_from_name ("forbidden"), SB_E_FORBIDDEN, "name to code");
    return tap_done ();
}
