/*  auth.c — API keys of the REST bridge (see auth.h).  */
#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HASH_SIZE 32
#define S_RIGHTS_MAX 64
#define S_RIGHT_MAX 129             /* "service.method" */
#define S_KEYS_MAX 1024

struct sb_rest_key {
    char name [65];
    unsigned char hash [S_HASH_SIZE];
    size_t rights_size;
    char rights [S_RIGHTS_MAX][S_RIGHT_MAX + 1];
};

struct sb_rest_auth {
    sb_rest_key_t *keys;
    size_t size;
};

sb_rest_auth_t *
sb_rest_auth_new (void)
{
    if (sodium_init () < 0)
        return NULL;
    return calloc (1, sizeof (sb_rest_auth_t));
}

void
sb_rest_auth_destroy (sb_rest_auth_t **self_p)
{
    if (self_p && *self_p) {
        sb_rest_auth_t *self = *self_p;
        if (self->keys)
            sodium_memzero (self->keys, self->size * sizeof *self->keys);
        free (self->keys);
        free (self);
        *self_p = NULL;
    }
}

static int
s_fail (char *why, const char *fmt, const char *arg)
{
    snprintf (why, 256, fmt, arg);
    return -1;
}

int
sb_rest_auth_add (sb_rest_auth_t *self, const char *name, const char *hash_hex,
                  const char *rights, char *why)
{
    if (!name || !*name || strlen (name) > 64)
        return s_fail (why, "key name '%s' must be 1..64 characters", name ? name : "");
    if (self->size >= S_KEYS_MAX)
        return s_fail (why, "too many keys (at most 1024), '%s' refused", name);
    sb_rest_key_t key;
    memset (&key, 0, sizeof key);
    snprintf (key.name, sizeof key.name, "%s", name);
    size_t bin_size = 0;
    if (!hash_hex || strlen (hash_hex) != 2 * S_HASH_SIZE
    ||  sodium_hex2bin (key.hash, sizeof key.hash, hash_hex, strlen (hash_hex),
                        NULL, &bin_size, NULL) != 0
    ||  bin_size != S_HASH_SIZE)
        return s_fail (why, "key '%s': hash must be 64 hex characters (b2sum -l 256 of the secret)", name);
    const char *cursor = rights ? rights : "";
    while (*cursor) {
        size_t skip = strspn (cursor, ", \t");
        cursor += skip;
        size_t length = strcspn (cursor, ", \t");
        if (length == 0)
            break;
        if (length > S_RIGHT_MAX || key.rights_size >= S_RIGHTS_MAX)
            return s_fail (why, "key '%s': too many or too long rights", name);
        memcpy (key.rights [key.rights_size++], cursor, length);
        cursor += length;
    }
    if (key.rights_size == 0)
        return s_fail (why, "key '%s' has no rights (allow = \"*\", \"svc\" or \"svc.method\")", name);
    sb_rest_key_t *keys = realloc (self->keys, (self->size + 1) * sizeof *keys);
    if (!keys)
        return s_fail (why, "out of memory adding key '%s'", name);
    self->keys = keys;
    self->keys [self->size++] = key;
    sodium_memzero (&key, sizeof key);
    return 0;
}

size_t
sb_rest_auth_size (const sb_rest_auth_t *self)
{
    return self->size;
}

const sb_rest_key_t *
sb_rest_auth_lookup (const sb_rest_auth_t *self, const char *token, size_t size)
{
    unsigned char hash [S_HASH_SIZE];
    crypto_generichash (hash, sizeof hash, (const unsigned char *) token, size, NULL, 0);
    const sb_rest_key_t *found = NULL;
    /*  Every key is compared, whatever matched, so the time taken does not
        say which key (if any) was close.  */
    for (size_t i = 0; i < self->size; i++) {
        int differs = sodium_memcmp (hash, self->keys [i].hash, sizeof hash);
        if (differs == 0 && !found)
            found = &self->keys [i];
    }
    sodium_memzero (hash, sizeof hash);
    return found;
}

const char *
sb_rest_key_name (const sb_rest_key_t *key)
{
    return key->name;
}

bool
sb_rest_key_allows (const sb_rest_key_t *key, const char *service, const char *method)
{
    size_t service_size = strlen (service);
    for (size_t i = 0; i < key->rights_size; i++) {
        const char *right = key->rights [i];
        if (!strcmp (right, "*") || !strcmp (right, service))
            return true;
        if (!strncmp (right, service, service_size) && right [service_size] == '.'
        &&  !strcmp (right + service_size + 1, method))
            return true;
    }
    return false;
}
