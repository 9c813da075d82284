#!/bin/sh
# bench-callgrind.sh — instructions per request of `sb bench`, counted by
# callgrind, for the Switchboard side (all threads, and the broker thread
# alone) and for the bare libzmq proxy of --baseline.  Wall-clock rates on
# a shared, loaded machine move by 2x from run to run; instruction counts
# repeat to a few per request, so they tell whether a change helped.
#
# usage: tools/bench-callgrind.sh BUILD_DIR [OUT_DIR]
#   BUILD_DIR: a configured and built tree (holds ./sb and ./libtool)
#   OUT_DIR:   where the callgrind files go (default: a new temp dir);
#              open one with callgrind_annotate to see where the time goes.
# Needs valgrind (apt-get install valgrind) and python3.  Takes a few
# minutes: four runs (10000 and 30000 requests, with and without
# --baseline); the differences cancel start-up costs.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BUILD_DIR [OUT_DIR]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/sb-callgrind.XXXXXX")}
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "$0: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

run () {
    name=$1
    shift
    rm -f "$out/$name".*
    "$build/libtool" --mode=execute valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$out/$name.%p" "$build/sb" bench --latency-requests 1 "$@" \
        > "$out/$name.log" 2>&1
}
run sb10 --requests 10000
run sb30 --requests 30000
run bl10 --requests 10000 --baseline
run bl30 --requests 30000 --baseline

python3 - "$out" <<'EOF'
import glob, subprocess, sys
out = sys.argv[1]

def files(name):
    return glob.glob(f"{out}/{name}.*-*")

def total(name):
    count = 0
    for path in files(name):
        for line in open(path):
            if line.startswith("totals:"):
                count += int(line.split()[1])
    return count

def broker(name):
    # the broker thread: inclusive cost of its actor function
    count = 0
    for path in files(name):
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", path],
                              capture_output=True, text=True).stdout
        for line in text.splitlines():
            if "s_broker_actor" in line:
                count += int(line.split()[0].replace(",", ""))
                break
    return count

switchboard = (total("sb30") - total("sb10")) / 20000
bare = ((total("bl30") - total("sb30")) - (total("bl10") - total("sb10"))) / 20000
broker_thread = (broker("sb30") - broker("sb10")) / 20000
print(f"callgrind: switchboard={switchboard:.0f} broker_thread={broker_thread:.0f} "
      f"baseline={bare:.0f} instructions/request baseline/switchboard={bare / switchboard:.2f}")
print(f"files: {out}")
EOF
