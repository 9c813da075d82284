/*  tap.h — a tiny Test Anything Protocol emitter for the C test programs.

    Each test program prints a plan and one "ok"/"not ok" line per check;
    automake's tap-driver.sh counts them.  Exit status is 0 when every
    check passed, 1 otherwise; tap_skip_all() exits 77 with a reason.
*/
#ifndef SB_TAP_H_INCLUDED
#define SB_TAP_H_INCLUDED

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count_;
static int tap_failed_;

static inline void
tap_plan (int n)
{
    printf ("1..%d\n", n);
    fflush (stdout);
}

/*  Records one check; returns its truth so callers can bail out early. */
static inline int
tap_ok (int pass, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    printf ("%sok %d - ", pass ? "" : "not ", ++tap_count_);
    vprintf (fmt, args);
    printf ("\n");
    va_end (args);
    if (!pass)
        tap_failed_++;
    fflush (stdout);
    return pass;
}

static inline void
tap_diag (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    printf ("# ");
    vprintf (fmt, args);
    printf ("\n");
    va_end (args);
    fflush (stdout);
}

#define tap_is_int(got, want, ...) \
    (tap_ok ((long long) (got) == (long long) (want), __VA_ARGS__) \
        || (tap_diag ("  got %lld, want %lld", (long long) (got), (long long) (want)), 0))
#define tap_is_str(got, want, ...) \
    (tap_ok ((got) && strcmp ((got), (want)) == 0, __VA_ARGS__) \
        || (tap_diag ("  got '%s', want '%s'", (got) ? (got) : "(null)", (want)), 0))

static inline void
tap_skip_all (const char *reason)
{
    printf ("1..0 # SKIP %s\n", reason);
    exit (77);
}

/*  Ends with the plan when none was given first (done_testing). */
static inline int
tap_done (void)
{
    printf ("1..%d\n", tap_count_);
    return tap_failed_ ? 1 : 0;
}

#endif
