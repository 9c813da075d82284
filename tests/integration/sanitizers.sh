# sanitizers.sh — sanitizer reports of the processes a shell test starts,
# sourced by lib.sh, rest_lib.sh and tests/cluster/netns.sh.
#
# In a build with --enable-sanitizers each sb (and test helper) writes its
# reports to its stderr, which a test sends to its scratch directory and
# deletes: a leak or undefined behaviour in a child would pass unseen.  So:
# - ASan and LeakSanitizer reports go to files SB_SAN_DIR/san.PID instead
#   (log_path);
# - UBSan reports stay on stderr (GCC's separate libubsan does not take
#   log_path when ASan is linked too; clang's combined runtime does, and
#   UBSAN_OPTIONS sets it), so the scratch files are searched for report
#   text, and a file with one is copied to SB_SAN_DIR before it goes.
# SB_SAN_DIR is under the build tree when there is one, and kept: removed
# at exit only when empty.  A plain build writes nothing there.
#
#   san_check SCRATCH  a TAP not-ok (the sourcing file's `ok`) naming each
#                    report not yet counted, with its first lines; call it
#                    once the children have stopped (LeakSanitizer reports
#                    at exit), before the plan
#   san_none PID|all DESCRIPTION [LOG...]  one check that this process (or
#                    any) wrote no report so far, to a file or in LOGs
#   san_finish [SCRATCH]  at exit: reports not counted yet are listed as
#                    comments and fail the test (returns 1)

if [ -z "${SB_SAN_SOURCED:-}" ]; then
    SB_SAN_SOURCED=1
    SB_SAN_DIR="${SB_TOP_BUILDDIR:-${TMPDIR:-/tmp}}/tests/sanitizer-reports/$(basename "$0" .t).$$"
    mkdir -p "$SB_SAN_DIR"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$SB_SAN_DIR/san"
    export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:log_path=$SB_SAN_DIR/san"
    SB_SAN_COUNTED=" "
fi
# What a report looks like in a log.
SB_SAN_TEXT=': runtime error: |ERROR: [A-Za-z]+Sanitizer|SUMMARY: [A-Za-z]+Sanitizer'

# san_count PID|all [LOG|DIR...]: sets SAN_NEW to the reports not counted
# yet, report files of PID (or of any process) and LOGs (or files under
# DIRs) with report text, which are copied to SB_SAN_DIR; counts them (not
# in a subshell, so that they stay counted).
san_count () {
    local pid=$1 file copy
    shift
    [ "$pid" = all ] && pid='*'
    SAN_NEW=""
    local logs=""
    [ $# -gt 0 ] && logs=$(grep -rlIE -- "$SB_SAN_TEXT" "$@" 2>/dev/null)
    for file in "$SB_SAN_DIR"/san.$pid $logs; do
        [ -s "$file" ] || continue
        case "$SB_SAN_COUNTED" in *" $file "*) continue ;; esac
        SB_SAN_COUNTED="$SB_SAN_COUNTED$file "
        case "$file" in
            "$SB_SAN_DIR"/*) copy=$file ;;
            *) copy="$SB_SAN_DIR/stderr.$(basename "$file")"
               cp "$file" "$copy" ;;
        esac
        SAN_NEW="$SAN_NEW $copy"
    done
}

# The first lines of a report, as TAP comments.
san_show () {
    grep -m 1 -A 40 -E -- "$SB_SAN_TEXT|^==[0-9]+==" "$1" | sed 's/^/#   /'
}

san_none () {
    local pid=$1 what=$2 file
    shift 2
    san_count "$pid" "$@"
    [ -z "$SAN_NEW" ]
    ok $? "$what"
    for file in $SAN_NEW; do
        echo "# sanitizer report: $file"
        san_show "$file"
    done
}

san_check () {
    local file
    san_count all "$@"
    for file in $SAN_NEW; do
        ok 1 "no sanitizer report from a child process: $file"
        san_show "$file"
    done
}

san_finish () {
    local file rc=0
    san_count all "$@"
    for file in $SAN_NEW; do
        echo "# sanitizer report from a child process: $file"
        san_show "$file"
        rc=1
    done
    rmdir "$SB_SAN_DIR" 2>/dev/null
    return $rc
}
