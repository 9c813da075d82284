/*  runtime_keys.t — key generation and key files: permissions on write,
    refusal of unsafe or broken files with a clear one-line error.  */
#include "security/keys.h"
#include "tap.h"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir [] = "/tmp/sb-keys-test-XXXXXX";

static const char *
s_path (const char *name)
{
    static char paths [8][256];
    static int next;
    char *p = paths [next++ % 8];
    snprintf (p, 256, "%s/%s", s_dir, name);
    return p;
}

static unsigned
s_mode (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 ? (unsigned) (st.st_mode & 07777) : 0xffff;
}

static void
s_write (const char *path, const char *text, unsigned mode)
{
    FILE *f = fopen (path, "w");
    if (f) {
        fputs (text, f);
        fclose (f);
    }
    chmod (path, mode);
}

/*  The load fails and the error names the file and contains `needle`.  */
static void
s_refused (const char *path, const char *needle, const char *what)
{
    sb_error_t err = { 0 };
    sb_keys_t *keys = sb_keys_load (path, &err);
    tap_ok (keys == NULL && strstr (err.text, path) && strstr (err.text, needle)
            && !strchr (err.text, '\n'), "%s: refused with '%s'", what, err.text);
    sb_keys_destroy (&keys);
}

int
main (void)
{
    if (!mkdtemp (s_dir))
        tap_skip_all ("cannot create a temporary directory");
    sb_error_t err = { 0 };

    sb_keys_t *alice = sb_keys_new_member ("alice", &err);
    tap_ok (alice != NULL, "member keys generated");
    tap_ok (sb_keys_curve_public (alice) && sb_keys_curve_secret (alice)
            && sb_keys_sign_public (alice) && sb_keys_sign_secret (alice), "member has all four keys");
    tap_ok (sb_keys_save_secret (alice, s_path ("alice.key"), &err) == 0, "secret file written");
    tap_is_int (s_mode (s_path ("alice.key")), 0600, "secret file is 0600");
    tap_ok (sb_keys_save_public (alice, s_path ("alice.pub"), &err) == 0, "public file written");
    tap_is_int (s_mode (s_path ("alice.pub")), 0644, "public file is 0644");
    tap_ok (sb_keys_save_secret (alice, s_path ("alice.key"), &err) == -1
            && strstr (err.text, "already exists"), "existing file never overwritten: %s", err.text);

    sb_keys_t *loaded = sb_keys_load (s_path ("alice.key"), &err);
    tap_ok (loaded && sb_keys_has_secret (loaded)
            && memcmp (sb_keys_curve_secret (loaded), sb_keys_curve_secret (alice), 32) == 0
            && memcmp (sb_keys_sign_secret (loaded), sb_keys_sign_secret (alice), 64) == 0
            && strcmp (sb_keys_name (loaded), "alice") == 0, "secret file loads back identical");
    sb_keys_t *pub = sb_keys_load (s_path ("alice.pub"), &err);
    tap_ok (pub && !sb_keys_has_secret (pub) && !sb_keys_curve_secret (pub)
            && memcmp (sb_keys_curve_public (pub), sb_keys_curve_public (alice), 32) == 0,
            "public file loads without secrets");
    char id1 [SB_KEY_ID_HEX_SIZE], id2 [SB_KEY_ID_HEX_SIZE];
    sb_keys_id_hex (alice, id1);
    sb_keys_id_hex (pub, id2);
    tap_ok (strlen (id1) == 32 && strcmp (id1, id2) == 0, "key id is stable: %s", id1);
    char z85 [SB_Z85_KEY_SIZE];
    tap_ok (sb_keys_curve_public_z85 (alice, z85) == 0 && strlen (z85) == 40, "Z85 export for ZMQ");
    tap_ok (sb_keys_curve_secret_z85 (pub, z85) == -1, "no Z85 secret from public keys");
    sb_keys_destroy (&loaded);
    sb_keys_destroy (&pub);

    sb_keys_t *ca = sb_keys_new_authority ("authority", &err);
    tap_ok (ca && !sb_keys_curve_public (ca) && sb_keys_sign_secret (ca), "authority has only signing keys");
    tap_ok (sb_keys_save_secret (ca, s_path ("authority.key"), &err) == 0, "authority file written");
    loaded = sb_keys_load (s_path ("authority.key"), &err);
    tap_ok (loaded && sb_keys_kind (loaded) == SB_KEYS_AUTHORITY, "authority file loads back");
    sb_keys_destroy (&loaded);
    sb_keys_destroy (&ca);

    /*  Refusals.  */
    chmod (s_path ("alice.key"), 0644);
    s_refused (s_path ("alice.key"), "too open", "world-readable secret");
    chmod (s_path ("alice.key"), 0640);
    s_refused (s_path ("alice.key"), "chmod 600", "group-readable secret");
    chmod (s_path ("alice.key"), 0600);
    if (symlink (s_path ("alice.key"), s_path ("link.key")) != 0)
        tap_diag ("symlink failed");
    s_refused (s_path ("link.key"), "symbolic link", "symbolic link to a secret");
    chmod (s_path ("alice.pub"), 0666);
    s_refused (s_path ("alice.pub"), "let anyone change", "world-writable public key");
    chmod (s_path ("alice.pub"), 0644);
    s_refused (s_path ("missing.key"), "cannot open", "missing file");
    mkdir (s_path ("dir.key"), 0700);
    s_refused (s_path ("dir.key"), "not a regular file", "directory");
    if (geteuid () != 0) {
        chmod (s_path ("alice.key"), 0000);
        s_refused (s_path ("alice.key"), "Permission denied", "unreadable file");
        chmod (s_path ("alice.key"), 0600);
    }
    else
        tap_ok (1, "unreadable file # SKIP root reads anything");
    s_write (s_path ("garbage.key"), "\x7f" "ELF\x01\x02 random bytes\n", 0600);
    s_refused (s_path ("garbage.key"), "expected 'key = value'", "garbage file");
    s_write (s_path ("other.key"), "format = something-else 3\nkind = member\nname = x\n", 0600);
    s_refused (s_path ("other.key"), "not a Switchboard key file", "other format");
    s_write (s_path ("short.key"), "format = switchboard-key 1\nkind = member\nname = bob\n"
             "curve-public = 00ff\nsign-public = 00\n", 0600);
    s_refused (s_path ("short.key"), "must be 64 hex digits", "key of the wrong length");

    /*  A secret that does not belong to its public key.  */
    sb_keys_t *bob = sb_keys_new_member ("bob", &err);
    char a [65], b [65];
    sodium_bin2hex (a, sizeof a, sb_keys_curve_public (alice), 32);
    sodium_bin2hex (b, sizeof b, sb_keys_curve_secret (bob), 32);
    char text [1024];
    char sp [65], ss [65];
    sodium_bin2hex (sp, sizeof sp, sb_keys_sign_public (bob), 32);
    sodium_bin2hex (ss, sizeof ss, sb_keys_sign_secret (bob), 32);
    snprintf (text, sizeof text, "format = switchboard-key 1\nkind = member\nname = mix\n"
              "curve-public = %s\ncurve-secret = %s\nsign-public = %s\nsign-secret = %s\n", a, b, sp, ss);
    s_write (s_path ("mix.key"), text, 0600);
    s_refused (s_path ("mix.key"), "does not match", "mismatched keypair");
    sb_keys_destroy (&bob);

    tap_ok (sb_keys_new_member ("bad name", &err) == NULL && strstr (err.text, "invalid key name"),
            "names with spaces refused");
    tap_ok (sb_keys_new_member ("0123456789abcdef0123456789abcdef", &err) == NULL,
            "names that look like key ids refused");
    sb_keys_destroy (&alice);
    sb_keys_destroy (&alice);
    tap_ok (alice == NULL, "destroy is safe twice");

    const char *files [] = { "alice.key", "alice.pub", "authority.key", "link.key", "garbage.key",
                             "other.key", "short.key", "mix.key", NULL };
    for (int i = 0; files [i]; i++)
        unlink (s_path (files [i]));
    rmdir (s_path ("dir.key"));
    rmdir (s_dir);
    return tap_done ();
}
