/*  host_plugin.t — loading plugins: the descriptor checks, and the one-line
    reason a user gets for each way a plugin can be broken.  The broken
    plugins are built from tests/plugins/; the good one is services/echo.  */
#include "host/plugin.h"
#include "host/config.h"
#include "tap.h"

#include <stdlib.h>
#include <unistd.h>

static int
s_handler (sb_request_t *req, const msgpack_object *body, void *state)
{
    return 0;
}

static const sb_method_t s_good_methods [] = {
    { "one", s_handler, SB_METHOD_IDEMPOTENT },
    { "two", s_handler, 0 },
    { NULL, NULL, 0 }
};

static char s_reason [SB_ERROR_TEXT_MAX];

/*  Validates a copy of the good descriptor changed by the caller.  */
static int
s_check (const sb_service_t *service)
{
    s_reason [0] = '\0';
    return sb_plugin_validate (service, s_reason, sizeof s_reason);
}

static bool
s_contains (const char *text, const char *part)
{
    return text && strstr (text, part) && !strchr (text, '\n');
}

/*  Loads a plugin that must fail and checks the one-line reason.  */
static void
s_load_fails (const char *path, const char *part, const char *what)
{
    sb_error_t err = { 0 };
    sb_plugin_t *plugin = sb_plugin_load (path, &err);
    tap_ok (plugin == NULL && s_contains (err.text, path) && s_contains (err.text, part),
            "%s: refused, one line naming the file and '%s'", what, part);
    if (plugin || !s_contains (err.text, part))
        tap_diag ("  got: %s", err.text);
    sb_plugin_destroy (&plugin);
}

int
main (void)
{
    const char *top = getenv ("SB_TOP_BUILDDIR");
    const char *plugins = getenv ("SB_PLUGINS");
    if (!top || !plugins)
        tap_skip_all ("SB_TOP_BUILDDIR and SB_PLUGINS are not set (run through make check)");

    /*  Descriptor validation.  */
    const sb_service_t good = {
        .abi_version = SB_ABI_VERSION, .name = "good-svc_1", .version = "1.2.0", .methods = s_good_methods
    };
    sb_service_t d = good;
    tap_is_int (s_check (&d), 0, "a good descriptor passes");
    d.abi_version = 2;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "wrong ABI version 2"), "other ABI version refused");
    d = good; d.name = NULL;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "service name"), "no name refused");
    d.name = "Upper_v2";
    tap_is_int (s_check (&d), 0, "service name of the protocol's rule ([A-Za-z0-9_-]) accepted");
    d.name = "orders.v2";
    tap_ok (s_check (&d) == -1, "service name with a '.' refused (it ends the service in SERVICE.METHOD)");
    d.name = "has space";
    tap_ok (s_check (&d) == -1, "service name with a space refused");
    d.name = "a/b";
    tap_ok (s_check (&d) == -1, "service name with a slash refused");
    d.name = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm";
    tap_ok (s_check (&d) == -1, "65-character service name refused");
    d.name = "system";
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "reserved"), "service name starting with sys refused");
    d = good; d.version = NULL;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "version"), "missing version refused");
    d.version = "";
    tap_ok (s_check (&d) == -1, "empty version refused");
    d = good; d.methods = NULL;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "no methods"), "NULL method table refused");
    const sb_method_t none [] = { { NULL, NULL, 0 } };
    d.methods = none;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "no methods"), "empty method table refused");
    sb_method_t *endless = calloc (SB_PLUGIN_METHODS_MAX + 10, sizeof *endless);
    for (int i = 0; i < SB_PLUGIN_METHODS_MAX + 10; i++)
        endless [i] = (sb_method_t) { "m", s_handler, 0 };
    d.methods = endless;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "not terminated"), "unterminated method table refused");
    free (endless);
    const sb_method_t bad_method [] = { { "a b", s_handler, 0 }, { NULL, NULL, 0 } };
    d.methods = bad_method;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "method 0"), "bad method name refused");
    const sb_method_t no_handler [] = { { "ok", s_handler, 0 }, { "nohandler", NULL, 0 }, { NULL, NULL, 0 } };
    d.methods = no_handler;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "'nohandler' has no handler"), "NULL handler refused");
    const sb_method_t twice [] = { { "x", s_handler, 0 }, { "y", s_handler, 0 }, { "x", s_handler, 0 },
                                   { NULL, NULL, 0 } };
    d.methods = twice;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "'x' is listed twice"), "duplicate method refused");
    const sb_method_t flags [] = { { "x", s_handler, 0x80 }, { NULL, NULL, 0 } };
    d.methods = flags;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "unknown flags"), "unknown method flags refused");
    d = good; d.reserved [3] = &d;
    tap_ok (s_check (&d) == -1 && s_contains (s_reason, "reserved"), "non-zero reserved field refused");

    /*  Loading broken plugins.  */
    char path [1024];
    s_load_fails ("/nonexistent/plugin.so", "no such file", "missing file");
    char text_file [] = "/tmp/sb-host-plugin-XXXXXX";
    int fd = mkstemp (text_file);
    if (fd >= 0) {
        tap_ok (write (fd, "not an ELF file\n", 16) == 16, "wrote a text file");
        close (fd);
    }
    s_load_fails (text_file, "not a loadable shared object", "a text file");
    unlink (text_file);
    s_load_fails (top, "not a regular file", "a directory");
    snprintf (path, sizeof path, "%s/tests/plugins/.libs/nosymbol.so", top);
    s_load_fails (path, "no 'sb_service' symbol", "missing symbol");
    snprintf (path, sizeof path, "%s/tests/plugins/.libs/wrongabi.so", top);
    s_load_fails (path, "wrong ABI version 99", "wrong ABI version");
    snprintf (path, sizeof path, "%s/tests/plugins/.libs/badname.so", top);
    s_load_fails (path, "invalid descriptor: service name", "bad service name");

    /*  A plugin that loads, and whose init() fails unless configured.  */
    sb_error_t err = { 0 };
    snprintf (path, sizeof path, "%s/tests/plugins/.libs/initfail.so", top);
    sb_plugin_t *plugin = sb_plugin_load (path, &err);
    if (tap_ok (plugin != NULL, "initfail.so loads (%s)", plugin ? "ok" : err.text)) {
        const sb_service_t *service = sb_plugin_service (plugin);
        tap_is_str (service->name, "initfail", "its descriptor is readable");
        tap_is_str (sb_plugin_path (plugin), path, "its path is kept");
        sb_config_t *config = sb_config_new ();
        const sb_config_t *view = sb_config_view (config, "initfail");
        void *state = NULL;
        memset (&err, 0, sizeof err);
        tap_ok (service->init (NULL, view, &state, &err) == -1
                && s_contains (err.text, "cannot open database /nonexistent/initfail.db"),
                "init fails with its own message");
        tap_ok (sb_config_set (config, "initfail/fail=no", &err) == 0, "--set initfail/fail=no");
        tap_ok (service->init (NULL, view, &state, &err) == 0, "init sees its config and succeeds");
        sb_config_destroy (&config);
        sb_plugin_destroy (&plugin);
        tap_ok (plugin == NULL, "destroy NULLs the pointer");
        sb_plugin_destroy (&plugin);
    }

    /*  The example services load.  */
    snprintf (path, sizeof path, "%s/echo.so", plugins);
    plugin = sb_plugin_load (path, &err);
    tap_ok (plugin && strcmp (sb_plugin_service (plugin)->name, "echo") == 0, "echo.so loads");
    sb_plugin_destroy (&plugin);
    snprintf (path, sizeof path, "%s/hello.so", plugins);
    plugin = sb_plugin_load (path, &err);
    tap_ok (plugin && strcmp (sb_plugin_service (plugin)->name, "hello") == 0, "hello.so loads");
    sb_plugin_destroy (&plugin);

    /*  Bare names are looked up in the plugin directories.  */
    char search [1100];
    snprintf (search, sizeof search, "/nonexistent:%s", plugins);
    char *resolved = sb_plugin_resolve ("echo", search, &err);
    tap_ok (resolved && strcmp (resolved, path) != 0 && strstr (resolved, "/echo.so"),
            "bare name 'echo' found in the second directory");
    free (resolved);
    resolved = sb_plugin_resolve ("echo.so", search, &err);
    tap_ok (resolved && strstr (resolved, plugins) == resolved, "'echo.so' found too");
    free (resolved);
    resolved = sb_plugin_resolve ("./echo.so", search, &err);
    tap_is_str (resolved, "./echo.so", "a name with a slash is a path");
    free (resolved);
    resolved = sb_plugin_resolve ("nosuch", search, &err);
    tap_ok (!resolved && s_contains (err.text, "nosuch: no such plugin in"), "unknown bare name: one-line error");
    free (resolved);
    return tap_done ();
}
