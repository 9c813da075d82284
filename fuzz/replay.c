/*  replay.c — runs a libFuzzer target over its corpus as a TAP test.

    Every fuzz target fuzz/fuzz_X.c defines LLVMFuzzerTestOneInput (and
    optionally LLVMFuzzerInitialize).  Linked with this file instead of
    libFuzzer, it becomes fuzz/X_replay.t under `make check`: the empty
    input, then every regular file of the corpus directory in name order,
    each fed once, one "ok" line per input.  A target signals a bug by
    crashing or aborting (as under libFuzzer), so a crash fails the test;
    under the sanitizer build ASan and UBSan report it.

    The corpus directory is, in order of preference: argv[1], the
    environment variable SB_FUZZ_CORPUS, or $SB_TOP_SRCDIR/fuzz/corpus/X
    where X is SB_FUZZ_NAME, defined when the replay program is compiled.
    Each input is copied into a buffer of exactly its size so that reads
    past its end are caught.
*/
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef SB_FUZZ_NAME
#   error "compile with -DSB_FUZZ_NAME='\"X\"' naming the target's corpus"
#endif

/*  Inputs larger than this are refused (libFuzzer's default -max_len is
    4096; seeds stay far below).  */
#define REPLAY_FILE_MAX (1024 * 1024)
#define REPLAY_FILES_MAX 100000

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv) __attribute__ ((weak));

static int
s_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

/*  Reads a whole file into an exact-size buffer; NULL if unreadable or
    too large.  */
static uint8_t *
s_read (const char *path, size_t *size_p)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    uint8_t *data = malloc (REPLAY_FILE_MAX + 1);
    size_t size = data ? fread (data, 1, REPLAY_FILE_MAX + 1, file) : 0;
    fclose (file);
    if (!data || size > REPLAY_FILE_MAX) {
        free (data);
        return NULL;
    }
    uint8_t *exact = malloc (size ? size : 1);
    if (exact)
        memcpy (exact, data, size);
    free (data);
    *size_p = size;
    return exact;
}

int
main (int argc, char *argv [])
{
    char dir [4096];
    const char *top = getenv ("SB_TOP_SRCDIR");
    if (argc > 1)
        snprintf (dir, sizeof dir, "%s", argv [1]);
    else
    if (getenv ("SB_FUZZ_CORPUS"))
        snprintf (dir, sizeof dir, "%s", getenv ("SB_FUZZ_CORPUS"));
    else
        snprintf (dir, sizeof dir, "%s/fuzz/corpus/%s", top ? top : ".", SB_FUZZ_NAME);

    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize (&argc, &argv);

    DIR *handle = opendir (dir);
    if (!handle) {
        printf ("1..0 # SKIP no corpus directory %s\n", dir);
        return 77;
    }
    char **names = calloc (REPLAY_FILES_MAX, sizeof (char *));
    size_t count = 0;
    struct dirent *entry;
    while (names && count < REPLAY_FILES_MAX && (entry = readdir (handle))) {
        char path [4096 + 256];
        struct stat st;
        snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
        if (entry->d_name [0] == '.' || stat (path, &st) || !S_ISREG (st.st_mode))
            continue;
        if ((names [count] = strdup (entry->d_name)))
            count++;
    }
    closedir (handle);
    if (!names) {
        printf ("Bail out! out of memory\n");
        return 1;
    }
    qsort (names, count, sizeof (char *), s_compare);

    printf ("1..%zu\n", count + 1);
    fflush (stdout);
    LLVMFuzzerTestOneInput ((const uint8_t *) "", 0);
    printf ("ok 1 - %s: empty input\n", SB_FUZZ_NAME);
    int failed = 0;
    for (size_t i = 0; i < count; i++) {
        char path [4096 + 256];
        snprintf (path, sizeof path, "%s/%s", dir, names [i]);
        size_t size = 0;
        uint8_t *data = s_read (path, &size);
        if (data)
            LLVMFuzzerTestOneInput (data, size);
        else
            failed = 1;
        printf ("%sok %zu - %s/%s (%zu bytes)\n", data ? "" : "not ", i + 2,
                SB_FUZZ_NAME, names [i], size);
        fflush (stdout);
        free (data);
        free (names [i]);
    }
    free (names);
    return failed;
}
