/*  cmd_cert.c — `sb cert sign` issues a member certificate with the
    cluster authority's key; `sb cert show` prints one and, given the
    authority's public key, verifies it.  Formats: docs/security.md.  */
#include "commands.h"
#include "security/cert.h"

#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
s_help (FILE *out)
{
    fprintf (out,
        "usage: sb cert sign --authority AUTHORITY.key --member NAME.pub [--offer LIST]\n"
        "                    [--call LIST] [--broker] [--days N | --seconds N] --out FILE\n"
        "       sb cert show [--authority-pub AUTHORITY.pub] FILE\n"
        "\n"
        "sign  issues a member certificate: the member's name and public keys, the\n"
        "      services it may offer and call, valid from now for N days (default 365),\n"
        "      signed by the cluster authority.  FILE is created (never overwritten).\n"
        "show  prints a certificate's fields; with --authority-pub it also verifies the\n"
        "      signature and the dates, and exits 1 if the certificate is not valid now.\n"
        "\n"
        "LIST is comma-separated patterns, each matched against a service name or\n"
        "SERVICE.METHOD:  NAME (the service and all its methods), SERVICE.METHOD,\n"
        "PREFIX* (names starting with PREFIX), PREFIX.* (PREFIX and PREFIX.anything),\n"
        "* (everything).\n"
        "\n"
        "options:\n"
        "  -a, --authority FILE      the authority's secret key (sign)\n"
        "  -m, --member FILE         the member's public (or secret) key file (sign)\n"
        "  -o, --offer LIST          services the member may offer (default: none)\n"
        "  -c, --call LIST           services the member may call (default: none)\n"
        "  -b, --broker              the member may act as a broker: its beacons are\n"
        "                            believed, other brokers take its PEER and DIRECTORY\n"
        "                            (default: an ordinary member)\n"
        "  -d, --days N              lifetime in days, 1..3650 (default 365)\n"
        "  -s, --seconds N           lifetime in seconds instead, 1..315360000 (short-lived\n"
        "                            certificates, tests of expiry)\n"
        "  -O, --out FILE            where to write the certificate (sign)\n"
        "  -p, --authority-pub FILE  the authority's public key, to verify (show)\n"
        "  -h, --help                this text\n"
        "\n"
        "exit status: 0 done (show: valid, or not verified); 1 failure or invalid\n"
        "certificate (one line on stderr); 2 usage error.\n"
        "\n"
        "examples:\n"
        "  sb cert sign --authority keys/authority.key --member keys/billing.pub \\\n"
        "      --offer billing --call 'echo,sys,audit.*' --days 90 --out keys/billing.cert\n"
        "  sb cert sign -a keys/authority.key -m keys/admin.pub --call '*' -O keys/admin.cert\n"
        "  sb cert sign -a keys/authority.key -m keys/broker1.pub --broker --call sys \\\n"
        "      -O keys/broker1.cert\n"
        "  sb cert show keys/billing.cert\n"
        "  sb cert show --authority-pub keys/authority.pub keys/billing.cert\n");
}

static void
s_print_list (const char *label, const char list [][SB_CERT_PATTERN_MAX + 1], size_t count)
{
    printf ("%-12s", label);
    for (size_t i = 0; i < count; i++)
        printf ("%s%s", i ? ", " : "", list [i]);
    printf ("%s\n", count ? "" : "(none)");
}

static void
s_print_time (const char *label, uint64_t t)
{
    time_t tt = (time_t) t;
    struct tm tm;
    char text [64];
    if (t <= 253402300799ULL && gmtime_r (&tt, &tm) && strftime (text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm))
        printf ("%-12s%s (%llu)\n", label, text, (unsigned long long) t);
    else
        printf ("%-12s%llu\n", label, (unsigned long long) t);
}

static void
s_print (const sb_cert_t *cert)
{
    char hex [65];
    char id [SB_KEY_ID_HEX_SIZE];
    sb_cert_key_id_hex (cert, id);
    printf ("%-12s%s\n", "name:", cert->name);
    printf ("%-12s%u\n", "version:", cert->version);
    printf ("%-12s%s\n", "key id:", id);
    sodium_bin2hex (hex, sizeof hex, cert->curve_pk, SB_KEY_SIZE);
    printf ("%-12s%s\n", "curve key:", hex);
    sodium_bin2hex (hex, sizeof hex, cert->sign_pk, SB_KEY_SIZE);
    printf ("%-12s%s\n", "sign key:", hex);
    s_print_list ("offer:", cert->offer, cert->offer_count);
    s_print_list ("call:", cert->call, cert->call_count);
    printf ("%-12s%s\n", "roles:", sb_cert_is_broker (cert) ? "broker" : "(none)");
    s_print_time ("issued:", cert->issued_at);
    s_print_time ("expires:", cert->expires_at);
    sodium_bin2hex (hex, sizeof hex, cert->authority_id, SB_KEY_ID_SIZE);
    printf ("%-12s%s\n", "authority:", hex);
}

static int
s_sign (const char *authority_path, const char *member_path, const char *offer, const char *call,
        bool broker, uint64_t lifetime, const char *out_path)
{
    sb_error_t err = { 0 };
    sb_keys_t *authority = NULL, *member = NULL;
    sb_cert_t *cert = (sb_cert_t *) calloc (1, sizeof (sb_cert_t));
    int rc = SB_EXIT_FAILURE;
    if (!cert) {
        fprintf (stderr, "sb cert: out of memory\n");
        return rc;
    }
    if (!(authority = sb_keys_load (authority_path, &err))
    ||  !(member = sb_keys_load (member_path, &err))) {
        fprintf (stderr, "sb cert: %s\n", err.text);
        goto done;
    }
    if (sb_keys_kind (authority) != SB_KEYS_AUTHORITY || !sb_keys_has_secret (authority)) {
        fprintf (stderr, "sb cert: %s: not an authority secret key (made by 'sb keygen authority')\n",
                 authority_path);
        goto done;
    }
    if (sb_keys_kind (member) != SB_KEYS_MEMBER) {
        fprintf (stderr, "sb cert: %s: not a member key (made by 'sb keygen member')\n", member_path);
        goto done;
    }
    if (sb_cert_init (cert, member, (uint64_t) time (NULL), lifetime, &err)
    ||  sb_cert_add_offer_list (cert, offer, &err)
    ||  sb_cert_add_call_list (cert, call, &err)
    ||  sb_cert_add_roles (cert, broker ? SB_CERT_ROLE_BROKER : 0, &err)) {
        fprintf (stderr, "sb cert: %s\n", err.text);
        rc = SB_EXIT_USAGE;
        goto done;
    }
    if (sb_cert_sign (cert, authority, &err) || sb_cert_save (cert, out_path, &err)) {
        fprintf (stderr, "sb cert: %s\n", err.text);
        goto done;
    }
    printf ("certificate written to %s\n", out_path);
    s_print (cert);
    rc = SB_EXIT_OK;
done:
    sb_keys_destroy (&authority);
    sb_keys_destroy (&member);
    free (cert);
    return rc;
}

static int
s_show (const char *path, const char *authority_pub)
{
    sb_error_t err = { 0 };
    sb_cert_t *cert = (sb_cert_t *) calloc (1, sizeof (sb_cert_t));
    if (!cert) {
        fprintf (stderr, "sb cert: out of memory\n");
        return SB_EXIT_FAILURE;
    }
    int rc = SB_EXIT_FAILURE;
    sb_keys_t *authority = NULL;
    if (sb_cert_load (path, cert, &err) != SB_CERT_OK) {
        fprintf (stderr, "sb cert: %s\n", err.text);
        goto done;
    }
    if (authority_pub) {
        authority = sb_keys_load (authority_pub, &err);
        if (!authority) {
            fprintf (stderr, "sb cert: %s\n", err.text);
            goto done;
        }
        if (sb_keys_kind (authority) != SB_KEYS_AUTHORITY) {
            fprintf (stderr, "sb cert: %s: not an authority key\n", authority_pub);
            goto done;
        }
    }
    s_print (cert);
    if (authority) {
        sb_cert_status_t status = sb_cert_verify (cert, sb_keys_sign_public (authority),
                                                  (uint64_t) time (NULL), &err);
        if (status != SB_CERT_OK) {
            printf ("%-12sINVALID (%s)\n", "verified:", sb_cert_status_name (status));
            fflush (stdout);
            fprintf (stderr, "sb cert: %s: %s\n", path, err.text);
            goto done;
        }
        printf ("%-12sok (signed by %s, valid now)\n", "verified:", sb_keys_name (authority));
    }
    else
        printf ("%-12snot checked (give --authority-pub to verify)\n", "verified:");
    rc = SB_EXIT_OK;
done:
    sb_keys_destroy (&authority);
    free (cert);
    return rc;
}

int
sb_cmd_cert (int argc, char **argv)
{
    static const struct option options [] = {
        { "authority", required_argument, NULL, 'a' },
        { "member", required_argument, NULL, 'm' },
        { "offer", required_argument, NULL, 'o' },
        { "call", required_argument, NULL, 'c' },
        { "broker", no_argument, NULL, 'b' },
        { "days", required_argument, NULL, 'd' },
        { "seconds", required_argument, NULL, 's' },
        { "out", required_argument, NULL, 'O' },
        { "authority-pub", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *authority = NULL, *member = NULL, *offer = NULL, *call = NULL;
    const char *out = NULL, *authority_pub = NULL;
    long days = 365, seconds = 0;
    bool days_given = false, broker = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long (argc, argv, "a:m:o:c:bd:s:O:p:h", options, NULL)) != -1) {
        switch (opt) {
            case 'a': authority = optarg; break;
            case 'm': member = optarg; break;
            case 'o': offer = optarg; break;
            case 'c': call = optarg; break;
            case 'b': broker = true; break;
            case 'O': out = optarg; break;
            case 'p': authority_pub = optarg; break;
            case 'd': {
                char *end = NULL;
                days = strtol (optarg, &end, 10);
                if (!*optarg || *end || days < 1 || days > 3650) {
                    fprintf (stderr, "sb cert: --days must be a whole number from 1 to 3650, not '%.40s'\n",
                             optarg);
                    return SB_EXIT_USAGE;
                }
                days_given = true;
                break;
            }
            case 's': {
                char *end = NULL;
                seconds = strtol (optarg, &end, 10);
                if (!*optarg || *end || seconds < 1 || seconds > 315360000L) {
                    fprintf (stderr, "sb cert: --seconds must be a whole number from 1 to 315360000, not '%.40s'\n",
                             optarg);
                    return SB_EXIT_USAGE;
                }
                break;
            }
            case 'h':
                s_help (stdout);
                return SB_EXIT_OK;
            default:
                fprintf (stderr, "sb cert: unknown option or missing value '%.40s' (see 'sb cert --help')\n",
                         argv [optind - 1]);
                return SB_EXIT_USAGE;
        }
    }
    int rest = argc - optind;
    char **args = argv + optind;
    if (rest >= 1 && !strcmp (args [0], "sign")) {
        if (rest != 1 || !authority || !member || !out) {
            fprintf (stderr, "sb cert: sign needs --authority, --member and --out, and no other "
                     "arguments (see 'sb cert --help')\n");
            return SB_EXIT_USAGE;
        }
        if (authority_pub) {
            fprintf (stderr, "sb cert: --authority-pub is for 'show'; sign with --authority\n");
            return SB_EXIT_USAGE;
        }
        if (days_given && seconds) {
            fprintf (stderr, "sb cert: give --days or --seconds, not both\n");
            return SB_EXIT_USAGE;
        }
        return s_sign (authority, member, offer, call, broker,
                       seconds ? (uint64_t) seconds : (uint64_t) days * 86400, out);
    }
    if (rest >= 1 && !strcmp (args [0], "show")) {
        if (rest != 2) {
            fprintf (stderr, "sb cert: expected 'sb cert show [--authority-pub FILE] FILE'\n");
            return SB_EXIT_USAGE;
        }
        if (authority || member || offer || call || broker || out) {
            fprintf (stderr, "sb cert: show takes only --authority-pub (see 'sb cert --help')\n");
            return SB_EXIT_USAGE;
        }
        return s_show (args [1], authority_pub);
    }
    if (rest == 0)
        fprintf (stderr, "sb cert: expected 'sign' or 'show' (see 'sb cert --help')\n");
    else
        fprintf (stderr, "sb cert: unknown action '%.40s': use 'sign' or 'show'\n", args [0]);
    return SB_EXIT_USAGE;
}
