#!/usr/bin/env bash
# shape.t — the project's shape rules (tools/check-shape.py) on this tree and
# this build: file sizes, include cycles, runtime layers, the exported ABI
# and the bundled plugins' imports.  Its TAP is the tool's own.
exec python3 "$SB_TOP_SRCDIR/tools/check-shape.py" --src "$SB_TOP_SRCDIR" --build "$SB_TOP_BUILDDIR"
