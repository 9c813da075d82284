/*  keys.c — authority and member keys: generation, files, accessors.

    See keys.h for the model and docs/security.md for the file format.
    Everything that holds a secret — the sb_keys_t itself, the text of a
    key file being read or written, hex conversions — is in sodium_malloc
    memory and is released with sodium_free, which wipes it.  An sb_keys_t
    is made read-only (sodium_mprotect_readonly) as soon as it is filled.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define FORMAT_LINE "switchboard-key 1"

struct sb_keys {
    sb_keys_kind_t kind;
    bool has_secret;
    char name [SB_NAME_MAX + 1];
    uint8_t curve_pk [SB_KEY_SIZE];
    uint8_t curve_sk [SB_KEY_SIZE];
    uint8_t sign_pk [SB_KEY_SIZE];
    uint8_t sign_sk [SB_SIGN_SECRET_SIZE];
};

bool
sb_keys_valid_name (const char *name)
{
    if (!name || !sb_name_valid (name, SB_NAME_MEMBER))
        return false;
    size_t len = strlen (name);
    if (len != SB_KEY_ID_SIZE * 2)
        return true;
    for (size_t i = 0; i < len; i++)
        if (!strchr ("0123456789abcdefABCDEF", name [i]))
            return true;
    return false;           /* looks like a key id */
}

/*  A zeroed, writable sb_keys_t in secure memory.  */
static sb_keys_t *
s_alloc (sb_keys_kind_t kind, const char *name, sb_error_t *err)
{
    if (sodium_init () < 0) {
        sb_error_set (err, SB_E_INTERNAL, "libsodium failed to initialise");
        return NULL;
    }
    if (!sb_keys_valid_name (name)) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "invalid key name '%.64s': use 1-64 of [A-Za-z0-9_.-], not a 32-hex-digit key id",
                      name ? name : "");
        return NULL;
    }
    sb_keys_t *self = (sb_keys_t *) sodium_malloc (sizeof (sb_keys_t));
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of secure memory for keys");
        return NULL;
    }
    memset (self, 0, sizeof *self);
    self->kind = kind;
    snprintf (self->name, sizeof self->name, "%s", name);
    return self;
}

static sb_keys_t *
s_seal (sb_keys_t *self)
{
    sodium_mprotect_readonly (self);
    return self;
}

sb_keys_t *
sb_keys_new_authority (const char *name, sb_error_t *err)
{
    sb_keys_t *self = s_alloc (SB_KEYS_AUTHORITY, name, err);
    if (!self)
        return NULL;
    crypto_sign_keypair (self->sign_pk, self->sign_sk);
    self->has_secret = true;
    return s_seal (self);
}

sb_keys_t *
sb_keys_new_member (const char *name, sb_error_t *err)
{
    sb_keys_t *self = s_alloc (SB_KEYS_MEMBER, name, err);
    if (!self)
        return NULL;
    crypto_box_keypair (self->curve_pk, self->curve_sk);
    crypto_sign_keypair (self->sign_pk, self->sign_sk);
    self->has_secret = true;
    return s_seal (self);
}

sb_keys_t *
sb_keys_new_public (const char *name, const uint8_t curve_pk [SB_KEY_SIZE],
                    const uint8_t sign_pk [SB_KEY_SIZE], sb_error_t *err)
{
    sb_keys_t *self = s_alloc (SB_KEYS_MEMBER, name, err);
    if (!self)
        return NULL;
    memcpy (self->curve_pk, curve_pk, SB_KEY_SIZE);
    memcpy (self->sign_pk, sign_pk, SB_KEY_SIZE);
    return s_seal (self);
}

void
sb_keys_destroy (sb_keys_t **self_p)
{
    if (self_p && *self_p) {
        sodium_free (*self_p);      /* makes it writable, wipes, unmaps */
        *self_p = NULL;
    }
}

/*  --------------------------------------------------------------------
    Parsing: `key = value` lines, '#' comments, blank lines.  Values are
    decoded straight into the (secure) sb_keys_t; nothing is copied.  */

typedef enum {
    F_FORMAT, F_KIND, F_NAME, F_CURVE_PUBLIC, F_CURVE_SECRET, F_SIGN_PUBLIC, F_SIGN_SECRET, F_COUNT
} field_t;

static const char *s_field_names [F_COUNT] = {
    "format", "kind", "name", "curve-public", "curve-secret", "sign-public", "sign-secret"
};

static int
s_hex_field (const char *value, size_t len, uint8_t *out, size_t out_size,
             const char *what, const char *field, sb_error_t *err)
{
    size_t bin_len = 0;
    if (len != out_size * 2
    ||  sodium_hex2bin (out, out_size, value, len, NULL, &bin_len, NULL) != 0
    ||  bin_len != out_size)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: field '%s' must be %zu hex digits",
                             what, field, out_size * 2);
    return 0;
}

sb_keys_t *
sb_keys_parse (const char *text, size_t size, const char *what, sb_error_t *err)
{
    if (!what)
        what = "key file";
    if (size > SB_KEY_FILE_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: too large for a key file (%zu bytes)", what, size);
        return NULL;
    }
    if (sodium_init () < 0) {
        sb_error_set (err, SB_E_INTERNAL, "libsodium failed to initialise");
        return NULL;
    }
    /*  Scratch in secure memory: the secret seed is expanded here.  */
    sb_keys_t *self = (sb_keys_t *) sodium_malloc (sizeof (sb_keys_t));
    uint8_t *seed = (uint8_t *) sodium_malloc (crypto_sign_SEEDBYTES);
    if (!self || !seed) {
        sb_error_set (err, SB_E_INTERNAL, "out of secure memory for keys");
        goto fail;
    }
    memset (self, 0, sizeof *self);

    const char *value_of [F_COUNT] = { NULL };
    size_t len_of [F_COUNT] = { 0 };
    size_t pos = 0;
    int line_no = 0;
    while (pos < size) {
        line_no++;
        const char *line = text + pos;
        const char *nl = memchr (line, '\n', size - pos);
        size_t line_len = nl ? (size_t) (nl - line) : size - pos;
        pos += line_len + (nl ? 1 : 0);
        while (line_len && (line [line_len - 1] == '\r' || line [line_len - 1] == ' '
                            || line [line_len - 1] == '\t'))
            line_len--;
        size_t start = 0;
        while (start < line_len && (line [start] == ' ' || line [start] == '\t'))
            start++;
        if (start == line_len || line [start] == '#')
            continue;
        const char *eq = memchr (line + start, '=', line_len - start);
        if (!eq) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s:%d: expected 'key = value'", what, line_no);
            goto fail;
        }
        size_t key_len = (size_t) (eq - (line + start));
        while (key_len && (line [start + key_len - 1] == ' ' || line [start + key_len - 1] == '\t'))
            key_len--;
        const char *value = eq + 1;
        size_t value_len = (size_t) (line + line_len - value);
        while (value_len && (*value == ' ' || *value == '\t')) {
            value++;
            value_len--;
        }
        int field = -1;
        for (int f = 0; f < F_COUNT; f++)
            if (strlen (s_field_names [f]) == key_len
            &&  memcmp (s_field_names [f], line + start, key_len) == 0)
                field = f;
        if (field < 0) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s:%d: unknown field '%.*s'", what, line_no,
                          (int) (key_len > 40 ? 40 : key_len), line + start);
            goto fail;
        }
        if (value_of [field]) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s:%d: field '%s' given twice", what, line_no,
                          s_field_names [field]);
            goto fail;
        }
        value_of [field] = value;
        len_of [field] = value_len;
    }

    if (!value_of [F_FORMAT] || len_of [F_FORMAT] != strlen (FORMAT_LINE)
    ||  memcmp (value_of [F_FORMAT], FORMAT_LINE, len_of [F_FORMAT]) != 0) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: not a Switchboard key file (expected 'format = " FORMAT_LINE "')", what);
        goto fail;
    }
    if (value_of [F_KIND] && len_of [F_KIND] == 9 && !memcmp (value_of [F_KIND], "authority", 9))
        self->kind = SB_KEYS_AUTHORITY;
    else
    if (value_of [F_KIND] && len_of [F_KIND] == 6 && !memcmp (value_of [F_KIND], "member", 6))
        self->kind = SB_KEYS_MEMBER;
    else {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: field 'kind' must be 'authority' or 'member'", what);
        goto fail;
    }
    if (!value_of [F_NAME] || len_of [F_NAME] > SB_NAME_MAX) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: missing or too long field 'name'", what);
        goto fail;
    }
    memcpy (self->name, value_of [F_NAME], len_of [F_NAME]);
    self->name [len_of [F_NAME]] = 0;
    if (!sb_keys_valid_name (self->name)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: invalid name '%s'", what, self->name);
        goto fail;
    }
    bool member = self->kind == SB_KEYS_MEMBER;
    if (!value_of [F_SIGN_PUBLIC] || (member && !value_of [F_CURVE_PUBLIC])) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: missing field '%s'", what,
                      value_of [F_SIGN_PUBLIC] ? "curve-public" : "sign-public");
        goto fail;
    }
    if (!member && (value_of [F_CURVE_PUBLIC] || value_of [F_CURVE_SECRET])) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: an authority key has no curve keys", what);
        goto fail;
    }
    bool has_secret = value_of [F_SIGN_SECRET] != NULL;
    if (has_secret != (member ? value_of [F_CURVE_SECRET] != NULL : has_secret)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: needs both or neither of curve-secret and sign-secret", what);
        goto fail;
    }
    if (s_hex_field (value_of [F_SIGN_PUBLIC], len_of [F_SIGN_PUBLIC], self->sign_pk,
                     SB_KEY_SIZE, what, "sign-public", err))
        goto fail;
    if (member && s_hex_field (value_of [F_CURVE_PUBLIC], len_of [F_CURVE_PUBLIC], self->curve_pk,
                               SB_KEY_SIZE, what, "curve-public", err))
        goto fail;
    if (has_secret) {
        uint8_t derived [SB_KEY_SIZE];
        if (s_hex_field (value_of [F_SIGN_SECRET], len_of [F_SIGN_SECRET], seed,
                         crypto_sign_SEEDBYTES, what, "sign-secret", err))
            goto fail;
        crypto_sign_seed_keypair (derived, self->sign_sk, seed);
        if (sodium_memcmp (derived, self->sign_pk, SB_KEY_SIZE) != 0) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: sign-secret does not match sign-public", what);
            goto fail;
        }
        if (member) {
            if (s_hex_field (value_of [F_CURVE_SECRET], len_of [F_CURVE_SECRET], self->curve_sk,
                             SB_KEY_SIZE, what, "curve-secret", err))
                goto fail;
            if (crypto_scalarmult_base (derived, self->curve_sk) != 0
            ||  sodium_memcmp (derived, self->curve_pk, SB_KEY_SIZE) != 0) {
                sb_error_set (err, SB_E_BAD_REQUEST, "%s: curve-secret does not match curve-public", what);
                goto fail;
            }
        }
        self->has_secret = true;
    }
    sodium_free (seed);
    return s_seal (self);

fail:
    sodium_free (seed);
    sodium_free (self);
    return NULL;
}

/*  --------------------------------------------------------------------
    Files.  */

/*  Reads a whole file into sodium_malloc memory (NUL-terminated), without
    following a symbolic link, refusing anything but a regular file of at
    most `max` bytes.  Sets *mode_p to the permission bits.  The caller
    sodium_free()s the result.  */
char *
sb__file_read (const char *path, size_t max, size_t *size_p, unsigned *mode_p, sb_error_t *err)
{
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP)
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: is a symbolic link; refusing to follow it", path);
        else
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot open: %s", path, strerror (errno));
        return NULL;
    }
    struct stat st;
    char *buffer = NULL;
    if (fstat (fd, &st) != 0) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot stat: %s", path, strerror (errno));
        goto done;
    }
    if (!S_ISREG (st.st_mode)) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: not a regular file", path);
        goto done;
    }
    if ((size_t) st.st_size > max) {
        sb_error_set (err, SB_E_BAD_REQUEST, "%s: too large (%lld bytes, at most %zu)", path,
                      (long long) st.st_size, max);
        goto done;
    }
    if (sodium_init () < 0 || !(buffer = (char *) sodium_malloc (max + 1))) {
        sb_error_set (err, SB_E_INTERNAL, "%s: out of secure memory", path);
        goto done;
    }
    size_t size = 0;
    while (size < max) {
        ssize_t got = read (fd, buffer + size, max - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot read: %s", path, strerror (errno));
            sodium_free (buffer);
            buffer = NULL;
            goto done;
        }
        if (got == 0)
            break;
        size += (size_t) got;
    }
    buffer [size] = 0;
    *size_p = size;
    if (mode_p)
        *mode_p = (unsigned) (st.st_mode & 07777);
done:
    close (fd);
    return buffer;
}

/*  Creates `path` exclusively (never follows or replaces anything), with
    exactly `mode`, and writes `data`.  On failure removes what it made.  */
int
sb__file_write (const char *path, const void *data, size_t size, unsigned mode, sb_error_t *err)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, (mode_t) mode);
    if (fd < 0) {
        if (errno == EEXIST)
            return sb_error_set (err, SB_E_BAD_REQUEST, "%s: already exists; refusing to overwrite it", path);
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot create: %s", path, strerror (errno));
    }
    const char *p = (const char *) data;
    size_t done = 0;
    int rc = fchmod (fd, (mode_t) mode);        /* the umask may have taken bits away */
    while (rc == 0 && done < size) {
        ssize_t put = write (fd, p + done, size - done);
        if (put < 0 && errno == EINTR)
            continue;
        if (put <= 0)
            rc = -1;
        else
            done += (size_t) put;
    }
    if (rc == 0)
        rc = fsync (fd);
    int saved = errno;
    if (close (fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        unlink (path);
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: cannot write: %s", path, strerror (saved));
    }
    return 0;
}

sb_keys_t *
sb_keys_load (const char *path, sb_error_t *err)
{
    size_t size = 0;
    unsigned mode = 0;
    char *text = sb__file_read (path, SB_KEY_FILE_MAX, &size, &mode, err);
    if (!text)
        return NULL;
    sb_keys_t *self = sb_keys_parse (text, size, path, err);
    sodium_free (text);
    if (self && !self->has_secret && (mode & 002)) {
        /*  A world-writable authority.pub would let anyone swap the trust anchor.  */
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: permissions %04o let anyone change this key; run chmod 644 %s", path, mode, path);
        sb_keys_destroy (&self);
    }
    if (self && self->has_secret && (mode & 077)) {
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: permissions %04o are too open for a secret key (group/others may use it); "
                      "run chmod 600 %s", path, mode, path);
        sb_keys_destroy (&self);
    }
    return self;
}

typedef struct {
    char text [SB_KEY_FILE_MAX];
    size_t size;
    char hex [SB_SIGN_SECRET_SIZE * 2 + 1];
} writer_t;

static void
s_put (writer_t *w, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    int n = vsnprintf (w->text + w->size, sizeof w->text - w->size, fmt, args);
    va_end (args);
    if (n > 0)
        w->size += (size_t) n < sizeof w->text - w->size ? (size_t) n : sizeof w->text - w->size - 1;
}

static void
s_put_hex (writer_t *w, const char *field, const uint8_t *bin, size_t size)
{
    sodium_bin2hex (w->hex, sizeof w->hex, bin, size);
    s_put (w, "%s = %s\n", field, w->hex);
}

static int
s_save (const sb_keys_t *self, const char *path, bool secret, sb_error_t *err)
{
    if (!self || !path)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no keys or no path");
    if (secret && !self->has_secret)
        return sb_error_set (err, SB_E_BAD_REQUEST, "%s: these keys have no secret half to save", path);
    writer_t *w = (writer_t *) sodium_malloc (sizeof (writer_t));
    if (!w)
        return sb_error_set (err, SB_E_INTERNAL, "out of secure memory");
    w->size = 0;
    bool member = self->kind == SB_KEYS_MEMBER;
    if (secret)
        s_put (w, "# Switchboard %s SECRET key '%s'. Keep it private (mode 0600);\n"
                  "# share %s.pub instead. Format: docs/security.md.\n",
               member ? "member" : "authority", self->name, self->name);
    else
        s_put (w, "# Switchboard %s public key '%s'. Format: docs/security.md.\n",
               member ? "member" : "authority", self->name);
    char id [SB_KEY_ID_HEX_SIZE];
    sb_keys_id_hex (self, id);
    s_put (w, "# key id: %s\n", id);
    s_put (w, "format = " FORMAT_LINE "\n");
    s_put (w, "kind = %s\n", member ? "member" : "authority");
    s_put (w, "name = %s\n", self->name);
    if (member)
        s_put_hex (w, "curve-public", self->curve_pk, SB_KEY_SIZE);
    s_put_hex (w, "sign-public", self->sign_pk, SB_KEY_SIZE);
    if (secret) {
        if (member)
            s_put_hex (w, "curve-secret", self->curve_sk, SB_KEY_SIZE);
        /*  libsodium's Ed25519 secret key starts with the 32-byte seed.  */
        s_put_hex (w, "sign-secret", self->sign_sk, crypto_sign_SEEDBYTES);
    }
    int rc = sb__file_write (path, w->text, w->size, secret ? 0600 : 0644, err);
    sodium_free (w);
    return rc;
}

int
sb_keys_save_secret (const sb_keys_t *self, const char *path, sb_error_t *err)
{
    return s_save (self, path, true, err);
}

int
sb_keys_save_public (const sb_keys_t *self, const char *path, sb_error_t *err)
{
    return s_save (self, path, false, err);
}

/*  --------------------------------------------------------------------
    Accessors.  */

sb_keys_kind_t
sb_keys_kind (const sb_keys_t *self)
{
    return self->kind;
}

const char *
sb_keys_name (const sb_keys_t *self)
{
    return self->name;
}

bool
sb_keys_has_secret (const sb_keys_t *self)
{
    return self->has_secret;
}

const uint8_t *
sb_keys_curve_public (const sb_keys_t *self)
{
    return self->kind == SB_KEYS_MEMBER ? self->curve_pk : NULL;
}

const uint8_t *
sb_keys_curve_secret (const sb_keys_t *self)
{
    return self->kind == SB_KEYS_MEMBER && self->has_secret ? self->curve_sk : NULL;
}

const uint8_t *
sb_keys_sign_public (const sb_keys_t *self)
{
    return self->sign_pk;
}

const uint8_t *
sb_keys_sign_secret (const sb_keys_t *self)
{
    return self->has_secret ? self->sign_sk : NULL;
}

void
sb_key_id (const uint8_t *curve_pk, const uint8_t sign_pk [SB_KEY_SIZE], uint8_t id [SB_KEY_ID_SIZE])
{
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, SB_KEY_ID_SIZE);
    if (curve_pk)
        crypto_generichash_update (&state, curve_pk, SB_KEY_SIZE);
    crypto_generichash_update (&state, sign_pk, SB_KEY_SIZE);
    crypto_generichash_final (&state, id, SB_KEY_ID_SIZE);
}

void
sb_keys_id (const sb_keys_t *self, uint8_t id [SB_KEY_ID_SIZE])
{
    sb_key_id (sb_keys_curve_public (self), self->sign_pk, id);
}

void
sb_keys_id_hex (const sb_keys_t *self, char hex [SB_KEY_ID_HEX_SIZE])
{
    uint8_t id [SB_KEY_ID_SIZE];
    sb_keys_id (self, id);
    sodium_bin2hex (hex, SB_KEY_ID_HEX_SIZE, id, SB_KEY_ID_SIZE);
}

int
sb_keys_curve_public_z85 (const sb_keys_t *self, char z85 [SB_Z85_KEY_SIZE])
{
    const uint8_t *key = sb_keys_curve_public (self);
    return key && zmq_z85_encode (z85, key, SB_KEY_SIZE) ? 0 : -1;
}

int
sb_keys_curve_secret_z85 (const sb_keys_t *self, char z85 [SB_Z85_KEY_SIZE])
{
    const uint8_t *key = sb_keys_curve_secret (self);
    return key && zmq_z85_encode (z85, key, SB_KEY_SIZE) ? 0 : -1;
}
