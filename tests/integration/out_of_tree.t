#!/bin/bash
# out_of_tree.t — the README's "A service in a few lines", built the way
# the README says against an installed Switchboard: `make install` into a
# scratch DESTDIR, the README's C code and cc line (read from README.md at
# test time, so the README stays true) with pkg-config pointed into it,
# then the installed `sb` hosts it and `sb call hello.hello` prints what
# the README promises.  The plugin must import nothing but the public API.
# Everything is written under $SB_TMP, never into the source tree.
. "$(dirname "$0")/lib.sh"

README="$SB_TOP_SRCDIR/README.md"
DEST="$SB_TMP/dest"
WORK="$SB_TMP/hello"
mkdir -p "$WORK"

make -s -C "$SB_TOP_BUILDDIR" install DESTDIR="$DEST" > "$SB_TMP/install.log" 2>&1
status=$?
ok $status "make install DESTDIR=... succeeds"
[ $status -eq 0 ] || { sed 's/^/#   /' "$SB_TMP/install.log" | tail -n 20; bail "no install"; }

PC=$(find "$DEST" -name libswitchboard.pc | head -n 1)
LIB=$(find "$DEST" -name 'libswitchboard.so' | head -n 1)
INSTALLED_SB=$(find "$DEST" -path '*/bin/sb' -type f | head -n 1)
[ -n "$PC" ] && [ -n "$LIB" ] && [ -n "$INSTALLED_SB" ]
ok $? "installed: libswitchboard.pc, libswitchboard.so and sb"
[ -n "$PC" ] && [ -n "$LIB" ] && [ -n "$INSTALLED_SB" ] || bail "incomplete install"

# The C code block after "## A service in a few lines", and the cc line
# and the promised output of the "Build it out of tree" block.
awk '/^## A service in a few lines/ { in_section = 1 }
     in_section && /^```c$/ { in_code = 1; next }
     in_code && /^```$/ { exit }
     in_code { print }' "$README" > "$WORK/hello.c"
CC_LINE=$(grep -E '^cc -shared .*hello\.c' "$README" | head -n 1)
WANT=$(sed -n 's/^sb call hello\.hello *# prints "\(.*\)"$/\1/p' "$README" | head -n 1)
grep -q 'SB_SERVICE' "$WORK/hello.c" && [ -n "$CC_LINE" ] && [ -n "$WANT" ]
ok $? "README.md has the example, its cc line and what sb call prints ('$WANT')"

export PKG_CONFIG_PATH="$(dirname "$PC")"
export PKG_CONFIG_SYSROOT_DIR="$DEST"
(cd "$WORK" && eval "$CC_LINE") > "$SB_TMP/cc.log" 2>&1
status=$?
ok $status "the README's cc line builds hello.so against the installed headers and library"
[ $status -eq 0 ] || { sed 's/^/#   /' "$SB_TMP/cc.log"; bail "no plugin"; }

# Every sb* symbol hello.so imports is defined by the installed library,
# which exports exactly include/switchboard.h's functions (shape.t).
nm -D --defined-only "$LIB" | awk 'NF == 3 { print $3 }' | sort > "$SB_TMP/exported"
nm -D --undefined-only "$WORK/hello.so" | awk '{ print $NF }' | sed 's/@.*//' \
    | grep '^sb' | sort > "$SB_TMP/imported"
private=$(comm -23 "$SB_TMP/imported" "$SB_TMP/exported" | tr '\n' ' ')
[ -s "$SB_TMP/imported" ] && [ -z "$private" ]
ok $? "hello.so imports only public symbols ($(wc -l < "$SB_TMP/imported") imported${private:+; not public: $private})"

# The installed sb, with the installed library only.
SB="$INSTALLED_SB"
export LD_LIBRARY_PATH="$(dirname "$LIB")"
start_broker b1
start_run hello "$WORK/hello.so"
sb_call hello.hello
is "$RC:$OUT" "0:\"$WANT\"" "the installed sb hosts it: sb call hello.hello prints \"$WANT\""

done_testing
