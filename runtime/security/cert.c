/*  cert.c — member certificates: issue, encode, parse, verify, access
    patterns, certificate files, the one-call checks and the certificate
    store.  See cert.h; revocation lists are in revocation.c.

    The encoder writes MessagePack with msgpack-c's packer into a fixed
    buffer (no allocation).  The parser pre-scans with sb_wire_check so that
    msgpack-c never allocates for sizes the input does not hold, then checks
    every element's type, size and content; it copies what it keeps into
    the fixed fields of sb_cert_t and frees its zone before returning.
*/
#include "internal.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CERT_FIELDS 9                   /* version 1; version 2 adds roles */
#define CERT_FORMAT_LINE "switchboard-cert 1"

static const char *s_status_names [SB_CERT_STATUS_MAX] = {
    [SB_CERT_OK] = "ok",
    [SB_CERT_MALFORMED] = "malformed",
    [SB_CERT_UNSUPPORTED] = "unsupported",
    [SB_CERT_WRONG_AUTHORITY] = "wrong_authority",
    [SB_CERT_BAD_SIGNATURE] = "bad_signature",
    [SB_CERT_NOT_YET_VALID] = "not_yet_valid",
    [SB_CERT_EXPIRED] = "expired",
    [SB_CERT_REVOKED] = "revoked",
    [SB_CERT_KEY_MISMATCH] = "key_mismatch",
    [SB_CERT_UNKNOWN] = "unknown",
    [SB_CERT_NOT_BROKER] = "not_broker",
};

const char *
sb_cert_status_name (sb_cert_status_t status)
{
    return (unsigned) status < SB_CERT_STATUS_MAX ? s_status_names [status] : "unknown";
}

/*  --------------------------------------------------------------------
    Patterns.  */

bool
sb_cert_valid_pattern (const char *pattern)
{
    if (!pattern)
        return false;
    size_t len = strlen (pattern);
    if (len == 0 || len > SB_CERT_PATTERN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = pattern [i];
        if (c == '*') {
            if (i != len - 1)
                return false;
        }
        else
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool
sb_cert_pattern_match (const char *pattern, const char *service)
{
    if (!pattern || !service || !*service)
        return false;
    size_t plen = strlen (pattern);
    size_t slen = strlen (service);
    if (plen && pattern [plen - 1] == '*') {
        size_t prefix = plen - 1;
        if (slen >= prefix && memcmp (pattern, service, prefix) == 0)
            return true;
        /*  "P.*" also covers P itself.  */
        return prefix >= 2 && pattern [prefix - 1] == '.' && slen == prefix - 1
            && memcmp (pattern, service, slen) == 0;
    }
    /*  An exact name covers its methods: "echo" matches "echo.reverse".  */
    return strncmp (pattern, service, plen) == 0
        && (service [plen] == 0 || service [plen] == '.');
}

static bool
s_match_list (const char list [][SB_CERT_PATTERN_MAX + 1], size_t count, const char *service)
{
    for (size_t i = 0; i < count; i++)
        if (sb_cert_pattern_match (list [i], service))
            return true;
    return false;
}

bool
sb_cert_may_offer (const sb_cert_t *cert, const char *service)
{
    return cert && s_match_list (cert->offer, cert->offer_count, service);
}

bool
sb_cert_may_call (const sb_cert_t *cert, const char *service)
{
    return cert && s_match_list (cert->call, cert->call_count, service);
}

bool
sb_cert_is_broker (const sb_cert_t *cert)
{
    return cert && (cert->roles & SB_CERT_ROLE_BROKER);
}

/*  --------------------------------------------------------------------
    Issuing.  */

int
sb_cert_init (sb_cert_t *cert, const sb_keys_t *member, uint64_t issued_at, uint64_t lifetime,
              sb_error_t *err)
{
    memset (cert, 0, sizeof *cert);
    if (!member || sb_keys_kind (member) != SB_KEYS_MEMBER)
        return sb_error_set (err, SB_E_BAD_REQUEST, "a certificate is issued for member keys");
    if (lifetime == 0 || issued_at > UINT64_MAX - lifetime)
        return sb_error_set (err, SB_E_BAD_REQUEST, "certificate lifetime must be at least one second");
    cert->version = SB_CERT_VERSION;
    snprintf (cert->name, sizeof cert->name, "%s", sb_keys_name (member));
    memcpy (cert->curve_pk, sb_keys_curve_public (member), SB_KEY_SIZE);
    memcpy (cert->sign_pk, sb_keys_sign_public (member), SB_KEY_SIZE);
    cert->issued_at = issued_at;
    cert->expires_at = issued_at + lifetime;
    return 0;
}

static int
s_add (char list [][SB_CERT_PATTERN_MAX + 1], size_t *count, const char *pattern,
       const char *what, sb_error_t *err)
{
    if (!sb_cert_valid_pattern (pattern))
        return sb_error_set (err, SB_E_BAD_REQUEST,
                             "invalid %s pattern '%.70s': use NAME, PREFIX* or *", what,
                             pattern ? pattern : "");
    if (*count >= SB_CERT_LIST_MAX)
        return sb_error_set (err, SB_E_BAD_REQUEST, "too many %s patterns (at most %d)", what,
                             SB_CERT_LIST_MAX);
    snprintf (list [*count], SB_CERT_PATTERN_MAX + 1, "%s", pattern);
    (*count)++;
    return 0;
}

int
sb_cert_add_offer (sb_cert_t *cert, const char *pattern, sb_error_t *err)
{
    cert->signed_size = 0;
    return s_add (cert->offer, &cert->offer_count, pattern, "offer", err);
}

int
sb_cert_add_call (sb_cert_t *cert, const char *pattern, sb_error_t *err)
{
    cert->signed_size = 0;
    return s_add (cert->call, &cert->call_count, pattern, "call", err);
}

static int
s_add_list (sb_cert_t *cert, const char *list, bool offer, sb_error_t *err)
{
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        const char *comma = strchr (p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen (p);
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p [len - 1] == ' ' || p [len - 1] == '\t'))
            len--;
        char entry [SB_CERT_PATTERN_MAX + 2];
        if (len == 0 || len > SB_CERT_PATTERN_MAX)
            return sb_error_set (err, SB_E_BAD_REQUEST, "invalid %s list '%.70s': empty or overlong entry",
                                 offer ? "offer" : "call", list);
        memcpy (entry, p, len);
        entry [len] = 0;
        if ((offer ? sb_cert_add_offer (cert, entry, err) : sb_cert_add_call (cert, entry, err)) != 0)
            return -1;
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',')
            p++;
        else
        if (*p)
            return sb_error_set (err, SB_E_BAD_REQUEST, "invalid %s list '%.70s'", offer ? "offer" : "call", list);
    }
    return 0;
}

int
sb_cert_add_offer_list (sb_cert_t *cert, const char *list, sb_error_t *err)
{
    return s_add_list (cert, list, true, err);
}

int
sb_cert_add_call_list (sb_cert_t *cert, const char *list, sb_error_t *err)
{
    return s_add_list (cert, list, false, err);
}

/*  msgpack-c packer writing into a fixed buffer; overflow is sticky.  */
typedef struct {
    uint8_t *data;
    size_t size;
    size_t max;
    bool overflow;
} fixed_buffer_t;

static int
s_fixed_write (void *data, const char *buf, size_t len)
{
    fixed_buffer_t *fb = (fixed_buffer_t *) data;
    if (fb->overflow || len > fb->max - fb->size) {
        fb->overflow = true;
        return -1;
    }
    memcpy (fb->data + fb->size, buf, len);
    fb->size += len;
    return 0;
}

static void
s_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

static void
s_pack_bin (msgpack_packer *pk, const uint8_t *data, size_t size)
{
    msgpack_pack_bin (pk, size);
    msgpack_pack_bin_body (pk, data, size);
}

int
sb_cert_add_roles (sb_cert_t *cert, uint32_t roles, sb_error_t *err)
{
    if (roles & ~(uint32_t) SB_CERT_ROLES_KNOWN)
        return sb_error_set (err, SB_E_BAD_REQUEST, "unknown certificate role bits 0x%x",
                             (unsigned) (roles & ~(uint32_t) SB_CERT_ROLES_KNOWN));
    cert->signed_size = 0;
    cert->roles |= roles;
    return 0;
}

int
sb_cert_sign (sb_cert_t *cert, const sb_keys_t *authority, sb_error_t *err)
{
    if (!authority || sb_keys_kind (authority) != SB_KEYS_AUTHORITY || !sb_keys_has_secret (authority))
        return sb_error_set (err, SB_E_BAD_REQUEST, "signing needs the authority's secret key");
    if (!sb_keys_valid_name (cert->name) || cert->expires_at <= cert->issued_at)
        return sb_error_set (err, SB_E_BAD_REQUEST, "certificate has no valid name or lifetime");
    /*  Without roles, exactly the version 1 encoding older builds read.  */
    cert->version = cert->roles ? SB_CERT_VERSION_ROLES : SB_CERT_VERSION;
    sb_keys_id (authority, cert->authority_id);

    fixed_buffer_t fb = { cert->signed_data, 0, sizeof cert->signed_data, false };
    msgpack_packer pk;
    msgpack_packer_init (&pk, &fb, s_fixed_write);
    msgpack_pack_array (&pk, CERT_FIELDS + (cert->roles ? 1 : 0));
    msgpack_pack_uint32 (&pk, cert->version);
    s_pack_str (&pk, cert->name);
    s_pack_bin (&pk, cert->curve_pk, SB_KEY_SIZE);
    s_pack_bin (&pk, cert->sign_pk, SB_KEY_SIZE);
    msgpack_pack_array (&pk, cert->offer_count);
    for (size_t i = 0; i < cert->offer_count; i++)
        s_pack_str (&pk, cert->offer [i]);
    msgpack_pack_array (&pk, cert->call_count);
    for (size_t i = 0; i < cert->call_count; i++)
        s_pack_str (&pk, cert->call [i]);
    msgpack_pack_uint64 (&pk, cert->issued_at);
    msgpack_pack_uint64 (&pk, cert->expires_at);
    s_pack_bin (&pk, cert->authority_id, SB_KEY_ID_SIZE);
    if (cert->roles)
        msgpack_pack_uint32 (&pk, cert->roles);
    if (fb.overflow) {
        cert->signed_size = 0;
        return sb_error_set (err, SB_E_INTERNAL, "certificate does not fit in %d bytes", SB_CERT_MAX);
    }
    cert->signed_size = fb.size;
    crypto_sign_detached (cert->signature, NULL, cert->signed_data, cert->signed_size,
                          sb_keys_sign_secret (authority));
    return 0;
}

size_t
sb_cert_encode (const sb_cert_t *cert, uint8_t *out, size_t out_max)
{
    if (!cert || cert->signed_size == 0 || cert->signed_size > SB_CERT_MAX)
        return 0;
    fixed_buffer_t fb = { out, 0, out_max, false };
    msgpack_packer pk;
    msgpack_packer_init (&pk, &fb, s_fixed_write);
    msgpack_pack_array (&pk, 2);
    s_pack_bin (&pk, cert->signed_data, cert->signed_size);
    s_pack_bin (&pk, cert->signature, SB_CERT_SIGNATURE_SIZE);
    return fb.overflow ? 0 : fb.size;
}

/*  --------------------------------------------------------------------
    Parsing.  */

static sb_cert_status_t
s_malformed (sb_error_t *err, const char *what)
{
    sb_error_set (err, SB_E_UNAUTHORIZED, "malformed certificate: %s", what);
    return SB_CERT_MALFORMED;
}

static bool
s_get_bin (const msgpack_object *o, uint8_t *out, size_t size)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != size)
        return false;
    memcpy (out, o->via.bin.ptr, size);
    return true;
}

static bool
s_get_str (const msgpack_object *o, char *out, size_t max)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
        return false;
    memcpy (out, o->via.str.ptr, o->via.str.size);
    out [o->via.str.size] = 0;
    return strlen (out) == o->via.str.size;     /* no embedded NUL */
}

static bool
s_get_list (const msgpack_object *o, char list [][SB_CERT_PATTERN_MAX + 1], size_t *count)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > SB_CERT_LIST_MAX)
        return false;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (!s_get_str (&o->via.array.ptr [i], list [i], SB_CERT_PATTERN_MAX)
        ||  !sb_cert_valid_pattern (list [i]))
            return false;
    *count = o->via.array.size;
    return true;
}

/*  Unpacks exactly one object covering the whole buffer.  */
static bool
s_unpack_one (msgpack_unpacked *result, const void *data, size_t size)
{
    if (sb_wire_check (data, size, 3) != 0)
        return false;
    size_t off = 0;
    return msgpack_unpack_next (result, (const char *) data, size, &off) == MSGPACK_UNPACK_SUCCESS
        && off == size;
}

sb_cert_status_t
sb_cert_parse (const void *data, size_t size, sb_cert_t *out, sb_error_t *err)
{
    memset (out, 0, sizeof *out);
    if (!data || size == 0)
        return s_malformed (err, "empty");
    if (size > SB_CERT_MAX + 80)
        return s_malformed (err, "too large");

    msgpack_unpacked outer;
    msgpack_unpacked_init (&outer);
    sb_cert_status_t status = SB_CERT_OK;
    if (!s_unpack_one (&outer, data, size)) {
        status = s_malformed (err, "not one MessagePack object, or truncated");
        goto done;
    }
    const msgpack_object *o = &outer.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2) {
        status = s_malformed (err, "expected [signed, signature]");
        goto done;
    }
    const msgpack_object *tbs = &o->via.array.ptr [0];
    if (tbs->type != MSGPACK_OBJECT_BIN || tbs->via.bin.size == 0 || tbs->via.bin.size > SB_CERT_MAX) {
        status = s_malformed (err, "signed part missing or oversized");
        goto done;
    }
    if (!s_get_bin (&o->via.array.ptr [1], out->signature, SB_CERT_SIGNATURE_SIZE)) {
        status = s_malformed (err, "signature must be 64 bytes");
        goto done;
    }
    memcpy (out->signed_data, tbs->via.bin.ptr, tbs->via.bin.size);
    out->signed_size = tbs->via.bin.size;

    msgpack_unpacked inner;
    msgpack_unpacked_init (&inner);
    if (!s_unpack_one (&inner, out->signed_data, out->signed_size)) {
        status = s_malformed (err, "signed part is not one MessagePack object");
        goto done_inner;
    }
    const msgpack_object *f = inner.data.via.array.ptr;
    uint32_t n = inner.data.via.array.size;
    if (inner.data.type != MSGPACK_OBJECT_ARRAY || n < 1) {
        status = s_malformed (err, "signed part must be an array");
        goto done_inner;
    }
    if (f [0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        status = s_malformed (err, "version must be an unsigned integer");
        goto done_inner;
    }
    if (f [0].via.u64 != SB_CERT_VERSION && f [0].via.u64 != SB_CERT_VERSION_ROLES) {
        sb_error_set (err, SB_E_UNAUTHORIZED,
                      "unsupported certificate version %llu (this build reads %d and %d)",
                      (unsigned long long) f [0].via.u64, SB_CERT_VERSION, SB_CERT_VERSION_ROLES);
        status = SB_CERT_UNSUPPORTED;
        goto done_inner;
    }
    out->version = (uint32_t) f [0].via.u64;
    uint32_t fields = out->version == SB_CERT_VERSION ? CERT_FIELDS : CERT_FIELDS + 1;
    if (n != fields)
        status = s_malformed (err, out->version == SB_CERT_VERSION ? "expected 9 fields"
                                                                    : "expected 10 fields");
    else
    if (out->version == SB_CERT_VERSION_ROLES
    &&  (f [9].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f [9].via.u64 == 0
         || (f [9].via.u64 & ~(uint64_t) SB_CERT_ROLES_KNOWN)))
        status = s_malformed (err, "roles must be a non-empty set of known role bits");
    else
    if (!s_get_str (&f [1], out->name, SB_NAME_MAX) || !sb_keys_valid_name (out->name))
        status = s_malformed (err, "invalid member name");
    else
    if (!s_get_bin (&f [2], out->curve_pk, SB_KEY_SIZE))
        status = s_malformed (err, "curve public key must be 32 bytes");
    else
    if (!s_get_bin (&f [3], out->sign_pk, SB_KEY_SIZE))
        status = s_malformed (err, "signing public key must be 32 bytes");
    else
    if (!s_get_list (&f [4], out->offer, &out->offer_count))
        status = s_malformed (err, "invalid offer list");
    else
    if (!s_get_list (&f [5], out->call, &out->call_count))
        status = s_malformed (err, "invalid call list");
    else
    if (f [6].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f [7].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        status = s_malformed (err, "issued-at and expiry must be unsigned integers");
    else
    if (f [7].via.u64 <= f [6].via.u64)
        status = s_malformed (err, "expires before it is issued");
    else
    if (!s_get_bin (&f [8], out->authority_id, SB_KEY_ID_SIZE))
        status = s_malformed (err, "authority key id must be 16 bytes");
    else {
        out->issued_at = f [6].via.u64;
        out->expires_at = f [7].via.u64;
        out->roles = out->version == SB_CERT_VERSION_ROLES ? (uint32_t) f [9].via.u64 : 0;
    }
done_inner:
    msgpack_unpacked_destroy (&inner);
done:
    msgpack_unpacked_destroy (&outer);
    if (status != SB_CERT_OK) {
        memset (out, 0, sizeof *out);
        out->signed_size = 0;
    }
    return status;
}

/*  --------------------------------------------------------------------
    Verifying.  */

static void
s_format_time (uint64_t t, char *out, size_t size)
{
    time_t tt = (time_t) t;
    struct tm tm;
    if (t > (uint64_t) 253402300799ULL || !gmtime_r (&tt, &tm)
    ||  strftime (out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf (out, size, "@%llu", (unsigned long long) t);
}

sb_cert_status_t
sb_cert_verify (const sb_cert_t *cert, const uint8_t authority_pk [SB_KEY_SIZE], uint64_t now,
                sb_error_t *err)
{
    if (!cert || cert->signed_size == 0 || cert->signed_size > SB_CERT_MAX) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate is not signed");
        return SB_CERT_MALFORMED;
    }
    uint8_t id [SB_KEY_ID_SIZE];
    sb_key_id (NULL, authority_pk, id);
    if (sodium_memcmp (id, cert->authority_id, SB_KEY_ID_SIZE) != 0) {
        char want [SB_KEY_ID_HEX_SIZE], got [SB_KEY_ID_HEX_SIZE];
        sodium_bin2hex (want, sizeof want, id, SB_KEY_ID_SIZE);
        sodium_bin2hex (got, sizeof got, cert->authority_id, SB_KEY_ID_SIZE);
        sb_error_set (err, SB_E_UNAUTHORIZED,
                      "certificate of '%s' is from another authority (%s, expected %s)",
                      cert->name, got, want);
        return SB_CERT_WRONG_AUTHORITY;
    }
    if (crypto_sign_verify_detached (cert->signature, cert->signed_data, cert->signed_size,
                                     authority_pk) != 0) {
        sb_error_set (err, SB_E_UNAUTHORIZED,
                      "certificate of '%s' has a bad signature (forged or altered)", cert->name);
        return SB_CERT_BAD_SIGNATURE;
    }
    char when [40];
    if (now + SB_CERT_CLOCK_SKEW < cert->issued_at) {
        s_format_time (cert->issued_at, when, sizeof when);
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' is not yet valid (issued for %s)",
                      cert->name, when);
        return SB_CERT_NOT_YET_VALID;
    }
    if (now >= cert->expires_at) {
        s_format_time (cert->expires_at, when, sizeof when);
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' expired at %s", cert->name, when);
        return SB_CERT_EXPIRED;
    }
    return SB_CERT_OK;
}

void
sb_cert_key_id (const sb_cert_t *cert, uint8_t id [SB_KEY_ID_SIZE])
{
    sb_key_id (cert->curve_pk, cert->sign_pk, id);
}

void
sb_cert_key_id_hex (const sb_cert_t *cert, char hex [SB_KEY_ID_HEX_SIZE])
{
    uint8_t id [SB_KEY_ID_SIZE];
    sb_cert_key_id (cert, id);
    sodium_bin2hex (hex, SB_KEY_ID_HEX_SIZE, id, SB_KEY_ID_SIZE);
}

/*  --------------------------------------------------------------------
    Certificate files: '#' comment lines (informative only, never trusted),
    `format = switchboard-cert 1` and `cert = BASE64` (standard alphabet,
    padded) of the encoding.  */

static void
s_put_list (char *text, size_t *len, size_t max, const char *label,
            const char list [][SB_CERT_PATTERN_MAX + 1], size_t count)
{
    *len += (size_t) snprintf (text + *len, max - *len, "# %s:", label);
    for (size_t i = 0; i < count && *len < max; i++)
        *len += (size_t) snprintf (text + *len, max - *len, "%s %s", i ? "," : "", list [i]);
    if (*len < max)
        *len += (size_t) snprintf (text + *len, max - *len, "%s\n", count ? "" : " (none)");
}

int
sb_cert_save (const sb_cert_t *cert, const char *path, sb_error_t *err)
{
    uint8_t encoded [SB_CERT_MAX + 80];
    size_t size = sb_cert_encode (cert, encoded, sizeof encoded);
    if (size == 0)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: certificate is not signed", path);
    char *text = (char *) malloc (SB_CERT_FILE_MAX);
    if (!text)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    char id [SB_KEY_ID_HEX_SIZE], issued [40], expires [40];
    sb_cert_key_id_hex (cert, id);
    s_format_time (cert->issued_at, issued, sizeof issued);
    s_format_time (cert->expires_at, expires, sizeof expires);
    size_t len = (size_t) snprintf (text, SB_CERT_FILE_MAX,
        "# Switchboard member certificate (public). Format: docs/security.md.\n"
        "# The lines starting with '#' are for people; only 'cert' is read.\n"
        "# name: %s\n# key id: %s\n# issued: %s\n# expires: %s\n",
        cert->name, id, issued, expires);
    s_put_list (text, &len, SB_CERT_FILE_MAX, "offer", cert->offer, cert->offer_count);
    s_put_list (text, &len, SB_CERT_FILE_MAX, "call", cert->call, cert->call_count);
    len += (size_t) snprintf (text + len, SB_CERT_FILE_MAX - len, "# roles: %s\n",
                              sb_cert_is_broker (cert) ? "broker" : "(none)");
    len += (size_t) snprintf (text + len, SB_CERT_FILE_MAX - len, "format = " CERT_FORMAT_LINE "\ncert = ");
    size_t b64 = sodium_base64_ENCODED_LEN (size, sodium_base64_VARIANT_ORIGINAL);
    int rc = -1;
    if (len + b64 + 1 < SB_CERT_FILE_MAX) {
        sodium_bin2base64 (text + len, b64, encoded, size, sodium_base64_VARIANT_ORIGINAL);
        len += b64 - 1;
        text [len++] = '\n';
        rc = sb__file_write (path, text, len, 0644, err);
    }
    else
        sb_error_set (err, SB_E_INTERNAL, "%s: certificate text too large", path);
    free (text);
    return rc;
}

sb_cert_status_t
sb_cert_load (const char *path, sb_cert_t *out, sb_error_t *err)
{
    memset (out, 0, sizeof *out);
    size_t size = 0;
    char *text = sb__file_read (path, SB_CERT_FILE_MAX, &size, NULL, err);
    if (!text)
        return SB_CERT_MALFORMED;
    sb_cert_status_t status = SB_CERT_MALFORMED;
    bool format_ok = false;
    const char *b64 = NULL;
    size_t b64_len = 0;
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        size_t len = strlen (line);
        while (len && (line [len - 1] == '\r' || line [len - 1] == ' '))
            line [--len] = 0;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == 0 || *line == '#')
            continue;
        if (strcmp (line, "format = " CERT_FORMAT_LINE) == 0)
            format_ok = true;
        else
        if (strncmp (line, "cert = ", 7) == 0 && !b64) {
            b64 = line + 7;
            b64_len = strlen (b64);
        }
        else {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: unexpected line '%.40s'", path, line);
            goto done;
        }
    }
    if (!format_ok || !b64) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: not a Switchboard certificate file (needs 'format = " CERT_FORMAT_LINE "' and 'cert = ...')",
                      path);
        goto done;
    }
    uint8_t encoded [SB_CERT_MAX + 80];
    size_t encoded_size = 0;
    if (sodium_base642bin (encoded, sizeof encoded, b64, b64_len, NULL, &encoded_size, NULL,
                           sodium_base64_VARIANT_ORIGINAL) != 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: 'cert' is not valid base64 (or too long)", path);
        goto done;
    }
    status = sb_cert_parse (encoded, encoded_size, out, err);
    if (status != SB_CERT_OK && err) {
        char reason [SB_ERROR_TEXT_MAX];
        snprintf (reason, sizeof reason, "%s", err->text);
        sb_error_set (err, err->code, "%s: %s", path, reason);
    }
done:
    sodium_free (text);
    return status;
}

/*  --------------------------------------------------------------------
    One-call checks.  */

sb_cert_status_t
sb_cert_check (const sb_cert_verifier_t *verifier, const void *data, size_t size, uint64_t now,
               sb_cert_t *out, sb_error_t *err)
{
    sb_cert_status_t status = sb_cert_parse (data, size, out, err);
    if (status == SB_CERT_OK)
        status = sb_cert_verify (out, verifier->authority_pk, now, err);
    if (status == SB_CERT_OK && sb_revocation_has (verifier->revoked, out)) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' is revoked", out->name);
        status = SB_CERT_REVOKED;
    }
    return status;
}

sb_cert_status_t
sb_cert_check_broker (const sb_cert_verifier_t *verifier, const void *data, size_t size,
                      const uint8_t signing_pk [SB_KEY_SIZE], uint64_t now, sb_cert_t *out,
                      sb_error_t *err)
{
    sb_cert_status_t status = sb_cert_check (verifier, data, size, now, out, err);
    if (status != SB_CERT_OK)
        return status;
    if (sodium_memcmp (out->sign_pk, signing_pk, SB_KEY_SIZE) != 0) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' is not for the key that signed",
                      out->name);
        return SB_CERT_KEY_MISMATCH;
    }
    if (!sb_cert_is_broker (out)) {
        sb_error_set (err, SB_E_FORBIDDEN, "certificate of '%s' has no broker role", out->name);
        return SB_CERT_NOT_BROKER;
    }
    return SB_CERT_OK;
}

int
sb_cert_verify_beacon (const uint8_t *cert, size_t size, const uint8_t signing_pk [32], void *arg)
{
    const sb_cert_verifier_t *verifier = (const sb_cert_verifier_t *) arg;
    if (!verifier || !cert || !signing_pk)
        return -1;
    sb_cert_t *decoded = (sb_cert_t *) malloc (sizeof (sb_cert_t));
    if (!decoded)
        return -1;
    sb_cert_status_t status = sb_cert_check_broker (verifier, cert, size, signing_pk,
                                                    (uint64_t) time (NULL), decoded, NULL);
    free (decoded);
    return status == SB_CERT_OK ? 0 : status == SB_CERT_NOT_BROKER ? 1 : -1;
}

sb_cert_status_t
sb_cert_check_peer (const sb_cert_verifier_t *verifier, const void *data, size_t size,
                    const uint8_t curve_pk [SB_KEY_SIZE], uint64_t now, sb_cert_t *out, sb_error_t *err)
{
    sb_cert_status_t status = sb_cert_check (verifier, data, size, now, out, err);
    if (status == SB_CERT_OK && sodium_memcmp (out->curve_pk, curve_pk, SB_KEY_SIZE) != 0) {
        sb_error_set (err, SB_E_UNAUTHORIZED,
                      "certificate of '%s' is for another key than the connection's", out->name);
        status = SB_CERT_KEY_MISMATCH;
    }
    return status;
}

/*  --------------------------------------------------------------------
    Certificate store.  */

struct sb_cert_store {
    sb_cert_verifier_t verifier;
    zhashx_t *certs;            /* hex curve key -> sb_cert_t * (owned) */
};

static void
s_cert_free (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

sb_cert_store_t *
sb_cert_store_new (const sb_cert_verifier_t *verifier)
{
    sb_cert_store_t *self = (sb_cert_store_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->verifier = *verifier;
    self->certs = zhashx_new ();
    if (!self->certs) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->certs, s_cert_free);
    return self;
}

void
sb_cert_store_destroy (sb_cert_store_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy (&(*self_p)->certs);
        free (*self_p);
        *self_p = NULL;
    }
}

sb_cert_status_t
sb_cert_store_add (sb_cert_store_t *self, const void *data, size_t size, uint64_t now, sb_error_t *err)
{
    sb_cert_t *cert = (sb_cert_t *) malloc (sizeof (sb_cert_t));
    if (!cert) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return SB_CERT_MALFORMED;
    }
    sb_cert_status_t status = sb_cert_check (&self->verifier, data, size, now, cert, err);
    if (status != SB_CERT_OK) {
        free (cert);
        return status;
    }
    char key [SB_KEY_SIZE * 2 + 1];
    sodium_bin2hex (key, sizeof key, cert->curve_pk, SB_KEY_SIZE);
    zhashx_update (self->certs, key, cert);
    return SB_CERT_OK;
}

int
sb_cert_store_load_dir (sb_cert_store_t *self, const char *dir, uint64_t now, size_t *refused,
                        sb_error_t *err)
{
    if (refused)
        *refused = 0;
    DIR *handle = opendir (dir);
    if (!handle)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot read directory: %s", dir, strerror (errno));
    sb_cert_t *cert = (sb_cert_t *) malloc (sizeof (sb_cert_t));
    uint8_t *encoded = (uint8_t *) malloc (SB_CERT_MAX + 80);
    int added = 0;
    struct dirent *entry;
    while (cert && encoded && (entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len <= 5 || strcmp (entry->d_name + len - 5, ".cert") != 0)
            continue;
        char path [4096];
        if (snprintf (path, sizeof path, "%s/%s", dir, entry->d_name) >= (int) sizeof path)
            continue;
        sb_cert_status_t status = sb_cert_load (path, cert, err);
        size_t size = status == SB_CERT_OK ? sb_cert_encode (cert, encoded, SB_CERT_MAX + 80) : 0;
        if (status == SB_CERT_OK)
            status = sb_cert_store_add (self, encoded, size, now, err);
        if (status == SB_CERT_OK)
            added++;
        else
        if (refused)
            (*refused)++;
    }
    closedir (handle);
    free (encoded);
    bool oom = !cert;
    free (cert);
    if (oom)
        return sb_error_set (err, SB_E_INTERNAL, "out of memory");
    return added;
}

const sb_cert_t *
sb_cert_store_lookup (sb_cert_store_t *self, const uint8_t curve_pk [SB_KEY_SIZE], uint64_t now,
                      sb_cert_status_t *status, sb_error_t *err)
{
    char key [SB_KEY_SIZE * 2 + 1];
    sodium_bin2hex (key, sizeof key, curve_pk, SB_KEY_SIZE);
    const sb_cert_t *cert = (const sb_cert_t *) zhashx_lookup (self->certs, key);
    sb_cert_status_t result = SB_CERT_OK;
    if (!cert) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "no certificate known for CURVE key %.16s...", key);
        result = SB_CERT_UNKNOWN;
    }
    else
    if (now >= cert->expires_at) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' has expired", cert->name);
        result = SB_CERT_EXPIRED;
    }
    else
    if (sb_revocation_has (self->verifier.revoked, cert)) {
        sb_error_set (err, SB_E_UNAUTHORIZED, "certificate of '%s' is revoked", cert->name);
        result = SB_CERT_REVOKED;
    }
    if (status)
        *status = result;
    return result == SB_CERT_OK ? cert : NULL;
}

size_t
sb_cert_store_size (const sb_cert_store_t *self)
{
    return self ? zhashx_size (self->certs) : 0;
}

const sb_cert_t *
sb_cert_store_lookup_name (sb_cert_store_t *self, const char *name, uint64_t now,
                           sb_cert_status_t *status, sb_error_t *err)
{
    const sb_cert_t *best = NULL;
    const sb_cert_t *cert = (const sb_cert_t *) zhashx_first (self->certs);
    for (; cert; cert = (const sb_cert_t *) zhashx_next (self->certs)) {
        if (!name || strcmp (cert->name, name) != 0 || now >= cert->expires_at
        ||  sb_revocation_has (self->verifier.revoked, cert))
            continue;
        if (!best || cert->issued_at > best->issued_at)
            best = cert;
    }
    if (!best)
        sb_error_set (err, SB_E_UNAUTHORIZED, "no valid certificate known for member '%.64s'",
                      name ? name : "");
    if (status)
        *status = best ? SB_CERT_OK : SB_CERT_UNKNOWN;
    return best;
}
