/*  host_config.t — service configuration: ZPL files, --set overrides,
    per-service views, and one-line errors for bad files.  */
#include "host/config.h"
#include "tap.h"

#include <stdlib.h>
#include <unistd.h>

static char s_path [] = "/tmp/sb-host-config-XXXXXX";

/*  Writes `text` to the scratch file.  */
static void
s_write (const char *text)
{
    FILE *file = fopen (s_path, "w");
    if (file) {
        fputs (text, file);
        fclose (file);
    }
}

int
main (void)
{
    int fd = mkstemp (s_path);
    if (fd < 0)
        tap_skip_all ("cannot create a file in /tmp");
    close (fd);

    sb_error_t err = { 0 };
    sb_config_t *config = sb_config_new ();
    const sb_config_t *echo = sb_config_view (config, "echo");
    const sb_config_t *kv = sb_config_view (config, "kv");
    tap_ok (config && echo && kv, "a tree and two views");
    tap_ok (sb_config_get (echo, "greeting") == NULL, "empty config: key absent");
    tap_is_str (sb_config_get_default (echo, "greeting", "hi"), "hi", "empty config: default used");

    s_write ("#   Switchboard services\n"
             "echo\n"
             "    greeting = \"hello there\"\n"
             "    db\n"
             "        path = /var/lib/echo\n"
             "kv\n"
             "    greeting = kv-hi\n");
    tap_is_int (sb_config_load (config, s_path, &err), 0, "a ZPL file loads");
    tap_is_str (sb_config_get (echo, "greeting"), "hello there", "echo sees its greeting");
    tap_is_str (sb_config_get (echo, "db/path"), "/var/lib/echo", "nested path");
    tap_is_str (sb_config_get (kv, "greeting"), "kv-hi", "kv sees its own greeting");
    tap_ok (sb_config_get (kv, "db/path") == NULL, "kv does not see echo's keys");
    tap_ok (sb_config_get (echo, "kv/greeting") == NULL, "a view cannot climb out of its section");
    tap_ok (sb_config_get (echo, "nope") == NULL, "absent key is NULL");
    tap_ok (sb_config_get (echo, NULL) == NULL && sb_config_get (NULL, "x") == NULL, "NULLs are NULL");

    tap_is_int (sb_config_set (config, "echo/greeting=overridden", &err), 0, "--set overrides");
    tap_is_str (sb_config_get (echo, "greeting"), "overridden", "the override wins");
    tap_is_int (sb_config_set (config, "new-svc/a/b=deep=value", &err), 0, "--set creates sections");
    const sb_config_t *fresh = sb_config_view (config, "new-svc");
    tap_is_str (sb_config_get (fresh, "a/b"), "deep=value", "value keeps its own '='");
    tap_is_int (sb_config_set (config, "echo/empty=", &err), 0, "--set with an empty value");
    tap_is_str (sb_config_get (echo, "empty"), "", "empty value reads as \"\"");

    const char *bad_sets [] = { "noslash=1", "echo/=1", "/key=1", "echo/key", "ec ho/key=1",
                                "echo//key=1", "echo/a b=1", "", NULL };
    for (int i = 0; bad_sets [i]; i++) {
        memset (&err, 0, sizeof err);
        tap_ok (sb_config_set (config, bad_sets [i], &err) == -1 && err.text [0] && !strchr (err.text, '\n'),
                "--set '%s' refused: %s", bad_sets [i], err.text);
    }

    /*  Bad files: one line naming the file and the line.  */
    s_write ("echo\n    greeting = hi\n  db = 2\n");
    memset (&err, 0, sizeof err);
    tap_is_int (sb_config_load (config, s_path, &err), -1, "bad indentation refused");
    char want [128];
    snprintf (want, sizeof want, "%s: line 3: ", s_path);
    tap_ok (strncmp (err.text, want, strlen (want)) == 0 && !strchr (err.text, '\n'),
            "one line with file and line: %s", err.text);
    tap_is_str (sb_config_get (echo, "greeting"), "overridden", "a refused file leaves the config as it was");

    s_write ("echo\n    = nameless\n");
    tap_is_int (sb_config_load (config, s_path, &err), -1, "value without a name refused");
    snprintf (want, sizeof want, "%s: line 2: ", s_path);
    tap_ok (strncmp (err.text, want, strlen (want)) == 0, "names line 2: %s", err.text);

    FILE *file = fopen (s_path, "wb");
    if (file) {
        fwrite ("echo\n\0x\n", 1, 8, file);
        fclose (file);
    }
    tap_is_int (sb_config_load (config, s_path, &err), -1, "binary file refused");
    tap_ok (strstr (err.text, "NUL") != NULL, "says why: %s", err.text);

    tap_is_int (sb_config_load (config, "/nonexistent/sb.cfg", &err), -1, "missing file refused");
    tap_is_str (err.text, "/nonexistent/sb.cfg: no such file", "says so");

    file = fopen (s_path, "w");
    if (file) {
        for (int i = 0; i < SB_CONFIG_FILE_MAX / 16 + 10; i++)
            fputs ("# padding line \n", file);
        fclose (file);
    }
    tap_is_int (sb_config_load (config, s_path, &err), -1, "a file over 1 MiB refused");

    s_write ("");
    tap_is_int (sb_config_load (config, s_path, &err), 0, "an empty file is an empty config");
    tap_ok (sb_config_get (echo, "greeting") == NULL, "and replaces what was there");

    unlink (s_path);
    sb_config_destroy (&config);
    tap_ok (config == NULL, "destroy NULLs the pointer");
    sb_config_destroy (&config);
    return tap_done ();
}
