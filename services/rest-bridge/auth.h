/*  auth.h — API keys of the REST bridge: who may call what.

    Each key has a name (for logs), the BLAKE2b-256 hash of its secret
    (crypto_generichash, 32 bytes; the same as `b2sum -l 256`), and a list
    of rights: "*" (everything), "svc" (every method of a service) or
    "svc.method".  Secrets themselves are never stored: a presented token
    is hashed and compared with every key's hash in constant time
    (sodium_memcmp), so neither the match nor its position leaks through
    timing.  The key table is built once at start and only read after, so
    the HTTP threads share it without locks.
*/
#ifndef SB_REST_AUTH_H_INCLUDED
#define SB_REST_AUTH_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef struct sb_rest_auth sb_rest_auth_t;
typedef struct sb_rest_key sb_rest_key_t;

sb_rest_auth_t *sb_rest_auth_new (void);
void sb_rest_auth_destroy (sb_rest_auth_t **self_p);

/*  Adds a key.  hash_hex: 64 hex characters; rights: names separated by
    commas or spaces.  Returns 0, or -1 with a reason in `why` (size 256).  */
int sb_rest_auth_add (sb_rest_auth_t *self, const char *name, const char *hash_hex,
                      const char *rights, char *why);
size_t sb_rest_auth_size (const sb_rest_auth_t *self);

/*  The key whose secret is `token` (length bounded by the caller), or NULL. */
const sb_rest_key_t *sb_rest_auth_lookup (const sb_rest_auth_t *self,
                                          const char *token, size_t size);
const char *sb_rest_key_name (const sb_rest_key_t *key);
/*  May this key call service.method?  */
bool sb_rest_key_allows (const sb_rest_key_t *key, const char *service, const char *method);

#endif
