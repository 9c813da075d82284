/*  cmd_keygen.c — `sb keygen`: creates the cluster authority key or a
    member's keys, as files (formats in docs/security.md).

    Secret files are created 0600 and exclusively: an existing file is
    never overwritten, so a key cannot be lost by a slip of the shell
    history.  Either both files of a pair are written or neither.  */
#include "commands.h"
#include "security/keys.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb keygen authority DIR [--name NAME]\n"
        "       sb keygen member NAME DIR\n"
        "\n"
        "Creates keys for a Switchboard cluster (docs/security.md).\n"
        "\n"
        "  authority  the cluster authority: an Ed25519 signing key that signs member\n"
        "             certificates.  Writes DIR/authority.key (secret, mode 0600) and\n"
        "             DIR/authority.pub.  Keep authority.key offline if you can.\n"
        "  member     a member (broker, service host, client, REST bridge): Curve25519\n"
        "             keys for CURVE and sealing plus an Ed25519 key for beacons.  Writes\n"
        "             DIR/NAME.key (secret, 0600) and DIR/NAME.pub; sign NAME.pub with\n"
        "             'sb cert sign' to give the member its rights.\n"
        "\n"
        "DIR is created (mode 0700) if missing.  Existing files are never overwritten.\n"
        "NAME: 1-64 characters of [A-Za-z0-9_.-].\n"
        "\n"
        "options:\n"
        "  -n, --name NAME  name recorded in the authority key (default 'authority')\n"
        "  -h, --help       this text\n"
        "\n"
        "exit status: 0 keys written; 1 failure (one line on stderr); 2 usage error.\n"
        "\n"
        "examples:\n"
        "  sb keygen authority ./keys\n"
        "  sb keygen member broker1 ./keys\n"
        "  sb keygen member billing ./keys\n"
        "  sb cert sign --authority keys/authority.key --member keys/billing.pub \\\n"
        "      --offer billing --call 'echo,sys' --days 90 --out keys/billing.cert\n");
}

static int
s_make_dir (const char *dir)
{
    if (mkdir (dir, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat (dir, &st) == 0 && S_ISDIR (st.st_mode))
            return 0;
        fprintf (stderr, "sb keygen: %s: not a directory\n", dir);
        return -1;
    }
    fprintf (stderr, "sb keygen: %s: cannot create directory: %s\n", dir, strerror (errno));
    return -1;
}

/*  Writes DIR/BASE.key and DIR/BASE.pub, or neither.  */
static int
s_write_pair (const sb_keys_t *keys, const char *dir, const char *base)
{
    char secret_path [4096], public_path [4096];
    if (snprintf (secret_path, sizeof secret_path, "%s/%s.key", dir, base) >= (int) sizeof secret_path
    ||  snprintf (public_path, sizeof public_path, "%s/%s.pub", dir, base) >= (int) sizeof public_path) {
        fprintf (stderr, "sb keygen: directory path too long\n");
        return SB_EXIT_FAILURE;
    }
    struct stat st;
    const char *exists = lstat (secret_path, &st) == 0 ? secret_path
                       : lstat (public_path, &st) == 0 ? public_path : NULL;
    if (exists) {
        fprintf (stderr, "sb keygen: %s: already exists; refusing to overwrite it\n", exists);
        return SB_EXIT_FAILURE;
    }
    sb_error_t err = { 0 };
    if (sb_keys_save_secret (keys, secret_path, &err) != 0) {
        fprintf (stderr, "sb keygen: %s\n", err.text);
        return SB_EXIT_FAILURE;
    }
    if (sb_keys_save_public (keys, public_path, &err) != 0) {
        fprintf (stderr, "sb keygen: %s\n", err.text);
        unlink (secret_path);
        return SB_EXIT_FAILURE;
    }
    char id [SB_KEY_ID_HEX_SIZE];
    sb_keys_id_hex (keys, id);
    printf ("%s key '%s' (key id %s)\n  secret: %s (mode 0600, keep it private)\n  public: %s\n",
            sb_keys_kind (keys) == SB_KEYS_AUTHORITY ? "authority" : "member",
            sb_keys_name (keys), id, secret_path, public_path);
    return SB_EXIT_OK;
}

int
sb_cmd_keygen (int argc, char **argv)
{
    static const struct option options [] = {
        { "name", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *name = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long (argc, argv, "n:h", options, NULL)) != -1) {
        if (opt == 'n')
            name = optarg;
        else
        if (opt == 'h') {
            s_help (stdout);
            return SB_EXIT_OK;
        }
        else {
            fprintf (stderr, "sb keygen: unknown option or missing value '%.40s' (see 'sb keygen --help')\n",
                     argv [optind - 1]);
            return SB_EXIT_USAGE;
        }
    }
    /*  GNU getopt has moved the operands after the options.  */
    int rest = argc - optind;
    char **args = argv + optind;
    if (rest >= 1 && !strcmp (args [0], "authority")) {
        if (rest != 2) {
            fprintf (stderr, "sb keygen: expected 'sb keygen authority DIR' (see 'sb keygen --help')\n");
            return SB_EXIT_USAGE;
        }
        const char *dir = args [1];
        if (!name)
            name = "authority";
        if (!sb_keys_valid_name (name)) {
            fprintf (stderr, "sb keygen: invalid name '%.70s' (1-64 of [A-Za-z0-9_.-])\n", name);
            return SB_EXIT_USAGE;
        }
        if (s_make_dir (dir) != 0)
            return SB_EXIT_FAILURE;
        sb_error_t err = { 0 };
        sb_keys_t *keys = sb_keys_new_authority (name, &err);
        if (!keys) {
            fprintf (stderr, "sb keygen: %s\n", err.text);
            return SB_EXIT_FAILURE;
        }
        int rc = s_write_pair (keys, dir, "authority");
        sb_keys_destroy (&keys);
        return rc;
    }
    if (name) {
        fprintf (stderr, "sb keygen: --name is for 'authority'; a member's name is its NAME argument\n");
        return SB_EXIT_USAGE;
    }
    if (rest >= 1 && !strcmp (args [0], "member")) {
        if (rest != 3) {
            fprintf (stderr, "sb keygen: expected 'sb keygen member NAME DIR' (see 'sb keygen --help')\n");
            return SB_EXIT_USAGE;
        }
        const char *member = args [1];
        const char *dir = args [2];
        if (!sb_keys_valid_name (member)) {
            fprintf (stderr, "sb keygen: invalid member name '%.70s' (1-64 of [A-Za-z0-9_.-], "
                     "not a 32-hex-digit key id)\n", member);
            return SB_EXIT_USAGE;
        }
        if (s_make_dir (dir) != 0)
            return SB_EXIT_FAILURE;
        sb_error_t err = { 0 };
        sb_keys_t *keys = sb_keys_new_member (member, &err);
        if (!keys) {
            fprintf (stderr, "sb keygen: %s\n", err.text);
            return SB_EXIT_FAILURE;
        }
        int rc = s_write_pair (keys, dir, member);
        sb_keys_destroy (&keys);
        return rc;
    }
    if (rest == 0)
        fprintf (stderr, "sb keygen: expected 'authority DIR' or 'member NAME DIR' (see 'sb keygen --help')\n");
    else
        fprintf (stderr, "sb keygen: unknown kind '%.40s': use 'authority' or 'member'\n", args [0]);
    return SB_EXIT_USAGE;
}
