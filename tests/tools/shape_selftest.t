#!/usr/bin/env bash
# shape_selftest.t — tools/check-shape.py fails on each kind of violation it
# exists to catch, shown on a small tree made here: a file over the size
# limit, an include cycle, internal.h included from outside runtime/, a
# plugin including a runtime header, a runtime layer using a later one, a
# library exporting a symbol its header does not declare, and a plugin
# importing one.  And it passes on the same tree once they are fixed.
set -u
tool="$SB_TOP_SRCDIR/tools/check-shape.py"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
src=$tmp/src build=$tmp/build
mkdir -p "$src"/include "$src"/runtime/wire "$src"/runtime/bus "$src"/services/demo \
    "$build"/.libs "$build"/runtime/wire/.libs "$build"/runtime/bus/.libs "$build"/services/.libs
n=0
ok () { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
# expect RULE TEXT: the tool fails, its line for RULE is "not ok" and names TEXT.
expect () {
    local out; out=$(python3 "$tool" --src "$src" --build "$build" 2>&1)
    local rc=$?
    if [ $rc -ne 0 ] && grep -q "^not ok .* - $1" <<<"$out" && grep -qF -- "$2" <<<"$out"; then
        ok 0 "$1 violation found: $2"
    else
        ok 1 "$1 violation found: $2"; sed 's/^/# /' <<<"$out"
    fi
}

cat >"$src"/include/switchboard.h <<'H'
#define SB_EXPORT __attribute__ ((visibility ("default")))
SB_EXPORT int sb_public (void);
H
echo '#include "switchboard.h"' >"$src"/runtime/internal.h
cat >"$src"/runtime/wire/a.c <<'C'
#include "internal.h"
int sb_wire_low (void) { return 1; }
C
cat >"$src"/runtime/bus/b.c <<'C'
#include "internal.h"
int sb_wire_low (void);
__attribute__ ((visibility ("default"))) int sb_public (void) { return sb_wire_low (); }
C
echo '#include "switchboard.h"' >"$src"/services/demo/demo.c
build_all () {
    cc -c -fPIC -fvisibility=hidden -I"$src"/include -I"$src"/runtime "$src"/runtime/wire/a.c \
        -o "$build"/runtime/wire/.libs/a.o &&
    cc -c -fPIC -fvisibility=hidden -I"$src"/include -I"$src"/runtime "$src"/runtime/bus/b.c \
        -o "$build"/runtime/bus/.libs/b.o &&
    cc -shared "$build"/runtime/wire/.libs/a.o "$build"/runtime/bus/.libs/b.o \
        -o "$build"/.libs/libswitchboard.so &&
    printf 'int sb_public (void);\n%s\nint sb_service = 1;\nint f (void) { return sb_public (); }\n' "${1:-}" \
        | cc -shared -fPIC -x c - -o "$build"/services/.libs/demo.so \
            -Wl,--unresolved-symbols=ignore-all -Wl,--version-script=<(echo '{ global: sb_service; local: *; };')
}
build_all || { echo "1..0 # SKIP no C compiler"; exit 0; }
echo "1..8"
out=$(python3 "$tool" --src "$src" --build "$build" 2>&1); rc=$?
ok $rc "a clean tree passes"; [ $rc -eq 0 ] || sed 's/^/# /' <<<"$out"

seq 1 1001 | sed 's/.*/\/\/ line/' >"$src"/runtime/wire/big.h
expect size "runtime/wire/big.h: 1001 lines"
rm "$src"/runtime/wire/big.h

echo '#include "y.h"' >"$src"/runtime/wire/x.h; echo '#include "x.h"' >"$src"/runtime/wire/y.h
expect cycles "runtime/wire/x.h -> runtime/wire/y.h -> runtime/wire/x.h"
rm "$src"/runtime/wire/x.h "$src"/runtime/wire/y.h

echo '#include "internal.h"' >"$src"/services/demo/sneak.c
expect internal "services/demo/sneak.c includes runtime/internal.h"
expect plugins "services/demo/sneak.c includes runtime/internal.h"
rm "$src"/services/demo/sneak.c

cat >"$src"/runtime/wire/a.c <<'C'
#include "internal.h"
int sb_public (void);
int sb_wire_low (void) { return 1; }
int sb_wire_up (void) { return sb_public (); }
C
build_all; expect layers "runtime/wire/a.o (wire) uses sb_public"
cat >"$src"/runtime/wire/a.c <<'C'
#include "internal.h"
__attribute__ ((visibility ("default"))) int sb_wire_low (void) { return 1; }
C
build_all; expect exports "exported, not in switchboard.h: sb_wire_low"
build_all 'int sb_wire_low (void); int g (void) { return sb_wire_low (); }'
expect imports "demo.so imports sb_wire_low"
