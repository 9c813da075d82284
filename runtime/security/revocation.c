/*  revocation.c — revocation lists: a text file of member names and key
    ids (cert.h says the format and the API; docs/security.md section 4
    the use).  The list is a hash of its entries, so a lookup is two hash
    probes; a reload reads the whole file into a new hash and swaps it in
    only when every line is good, so a broken file leaves the previous
    list in force.
*/
#include "internal.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define REVOCATION_FILE_MAX (1024 * 1024)

struct sb_revocation {
    char *path;
    zhashx_t *entries;      /* name or lowercase hex key id -> "" */
};

static bool
s_is_key_id (const char *entry)
{
    if (strlen (entry) != SB_KEY_ID_SIZE * 2)
        return false;
    for (const char *p = entry; *p; p++)
        if (!strchr ("0123456789abcdefABCDEF", *p))
            return false;
    return true;
}

static int
s_revocation_insert (zhashx_t *entries, const char *entry, sb_error_t *err)
{
    char key [SB_NAME_MAX + 1];
    if (s_is_key_id (entry)) {
        for (size_t i = 0; i <= SB_KEY_ID_SIZE * 2; i++)
            key [i] = (char) (entry [i] >= 'A' && entry [i] <= 'F' ? entry [i] + 32 : entry [i]);
    }
    else
    if (sb_name_valid (entry, SB_NAME_MEMBER))
        snprintf (key, sizeof key, "%s", entry);
    else
        return sb_error_set (err, SB_E_BAD_REQUEST,
                             "'%.70s' is neither a member name nor a 32-hex-digit key id", entry);
    zhashx_insert (entries, key, (void *) "");
    return 0;
}

static zhashx_t *
s_revocation_read (const char *path, sb_error_t *err)
{
    size_t size = 0;
    unsigned mode = 0;
    char *text = sb__file_read (path, REVOCATION_FILE_MAX, &size, &mode, err);
    if (!text)
        return NULL;
    if (mode & 002) {
        sodium_free (text);
        sb_error_set (err, SB_E_BAD_REQUEST,
                      "%s: permissions %04o let anyone un-revoke a member; run chmod 644 %s", path, mode, path);
        return NULL;
    }
    zhashx_t *entries = zhashx_new ();
    if (!entries) {
        sodium_free (text);
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    int line_no = 0;
    char *p = text;
    while (p && *p) {
        line_no++;
        char *nl = strchr (p, '\n');
        if (nl)
            *nl = 0;
        char *hash = strchr (p, '#');
        if (hash)
            *hash = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t len = strlen (p);
        while (len && (p [len - 1] == ' ' || p [len - 1] == '\t' || p [len - 1] == '\r'))
            p [--len] = 0;
        if (len && s_revocation_insert (entries, p, err) != 0) {
            char reason [SB_ERROR_TEXT_MAX];
            snprintf (reason, sizeof reason, "%s", err ? err->text : "");
            sb_error_set (err, SB_E_BAD_REQUEST, "%s:%d: %s", path, line_no, reason);
            zhashx_destroy (&entries);
            break;
        }
        p = nl ? nl + 1 : NULL;
    }
    sodium_free (text);
    return entries;
}

sb_revocation_t *
sb_revocation_new (const char *path, sb_error_t *err)
{
    sb_revocation_t *self = (sb_revocation_t *) calloc (1, sizeof *self);
    if (!self) {
        sb_error_set (err, SB_E_INTERNAL, "out of memory");
        return NULL;
    }
    self->entries = path ? s_revocation_read (path, err) : zhashx_new ();
    self->path = path ? strdup (path) : NULL;
    if (!self->entries || (path && !self->path)) {
        if (self->entries && path)
            sb_error_set (err, SB_E_INTERNAL, "out of memory");
        sb_revocation_destroy (&self);
    }
    return self;
}

void
sb_revocation_destroy (sb_revocation_t **self_p)
{
    if (self_p && *self_p) {
        sb_revocation_t *self = *self_p;
        zhashx_destroy (&self->entries);
        free (self->path);
        free (self);
        *self_p = NULL;
    }
}

int
sb_revocation_reload (sb_revocation_t *self, sb_error_t *err)
{
    if (!self->path)
        return sb_error_set (err, SB_E_BAD_REQUEST, "this revocation list has no file to reload");
    zhashx_t *entries = s_revocation_read (self->path, err);
    if (!entries)
        return -1;
    zhashx_destroy (&self->entries);
    self->entries = entries;
    return 0;
}

int
sb_revocation_add (sb_revocation_t *self, const char *entry, sb_error_t *err)
{
    if (!entry)
        return sb_error_set (err, SB_E_BAD_REQUEST, "no revocation entry");
    return s_revocation_insert (self->entries, entry, err);
}

size_t
sb_revocation_size (const sb_revocation_t *self)
{
    return self ? zhashx_size (self->entries) : 0;
}

bool
sb_revocation_has (const sb_revocation_t *self, const sb_cert_t *cert)
{
    if (!self || !cert)
        return false;
    char id [SB_KEY_ID_HEX_SIZE];
    sb_cert_key_id_hex (cert, id);
    return zhashx_lookup (self->entries, id) || zhashx_lookup (self->entries, cert->name);
}
