#!/usr/bin/python3
"""check-shape.py — keeps the project's architecture as docs/architecture.md
draws it.  Prints TAP, one line per rule; exits 1 when a rule is broken.

    tools/check-shape.py --src SRCDIR [--build BUILDDIR]

Source rules (need only the tree):
  size         no C source or header over SIZE_MAX lines;
  cycles       no include cycle among the project's own files;
  internal     runtime/internal.h is included from runtime/ only;
  plugins      a bundled service includes switchboard.h and its own
               headers, nothing of the runtime or the broker.
Build rules (need a finished build):
  layers       an object of runtime/<layer>/ uses symbols of its own layer
               and of the layers before it only (LAYERS below);
  exports      libswitchboard.so exports exactly the functions that
               include/switchboard.h declares SB_EXPORT;
  imports      each bundled plugin exports only sb_service and imports
               from libswitchboard only what the header declares.
"""
import argparse
import os
import re
import subprocess
import sys

SIZE_MAX = 1000
# Runtime layers, lowest first: a layer may use the ones before it.
LAYERS = ["wire", "schema", "security", "bus", "host"]
SOURCE_DIRS = ["include", "runtime", "broker", "cli", "services", "tests", "fuzz", "bench"]
INCLUDE_PATH = ["include", "runtime", ".", "tests"]

results = []


def report(ok, name, problems):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    for p in problems[:40]:
        print("#   " + p)
    if len(problems) > 40:
        print("#   ... and %d more" % (len(problems) - 40))


def sources(src):
    for top in SOURCE_DIRS:
        for root, dirs, files in os.walk(os.path.join(src, top)):
            dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(root, f), src)


def includes(src, path):
    """The project files that `path` includes, resolved as the compiler does:
    the file's own directory first, then the -I path."""
    found = []
    with open(os.path.join(src, path), errors="replace") as f:
        for line in f:
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            name = m.group(1)
            for d in [os.path.dirname(path)] + INCLUDE_PATH:
                cand = os.path.normpath(os.path.join(d, name))
                if os.path.isfile(os.path.join(src, cand)):
                    found.append(cand)
                    break
    return found


def check_size(src, files):
    bad = []
    for p in files:
        with open(os.path.join(src, p), errors="replace") as f:
            n = sum(1 for _ in f)
        if n > SIZE_MAX:
            bad.append("%s: %d lines (limit %d)" % (p, n, SIZE_MAX))
    report(not bad, "size: no source file over %d lines" % SIZE_MAX, bad)


def check_cycles(src, graph):
    bad, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                bad.append(" -> ".join(cyc))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    report(not bad, "cycles: no include cycle", bad)


def check_internal(graph):
    bad = ["%s includes runtime/internal.h" % f for f in sorted(graph)
           if "runtime/internal.h" in graph[f] and not f.startswith("runtime/")]
    report(not bad, "internal: runtime/internal.h is included from runtime/ only", bad)


def check_plugin_includes(graph):
    bad = []
    for f in sorted(graph):
        if not f.startswith("services/"):
            continue
        home = f.split("/")[1]
        for inc in graph[f]:
            if inc != "include/switchboard.h" and not inc.startswith("services/%s/" % home):
                bad.append("%s includes %s" % (f, inc))
    report(not bad, "plugins: bundled services include only switchboard.h and their own headers", bad)


def nm(args, path):
    out = subprocess.run(["nm"] + args + [path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("nm %s: %s" % (path, out.stderr.strip()))
    return out.stdout.splitlines()


def public_functions(src):
    with open(os.path.join(src, "include/switchboard.h")) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    names = set()
    for decl in re.findall(r"SB_EXPORT\b([^;{]*)", text):
        m = re.search(r"\b(sb_\w+)\s*\(", decl)
        if m:
            names.add(m.group(1))
    return names


def runtime_objects(build):
    objs = {}
    for layer in LAYERS:
        d = os.path.join(build, "runtime", layer, ".libs")
        if not os.path.isdir(d):
            d = os.path.join(build, "runtime", layer)
        names = sorted(f for f in os.listdir(d) if f.endswith(".o")) if os.path.isdir(d) else []
        # The library's objects carry its name; others are stale (an older
        # build configuration in the same directory) or not the library's.
        ours = [f for f in names if f.startswith("libsbruntime_la-")]
        for f in ours or names:
            objs[os.path.join("runtime", layer, f)] = (layer, os.path.join(d, f))
    return objs


def check_layers(build):
    objs = runtime_objects(build)
    owner = {}
    for name, (layer, path) in objs.items():
        for line in nm(["--defined-only", "-g"], path):
            parts = line.split()
            if len(parts) == 3:
                owner[parts[2]] = (layer, name)
    bad = []
    for name, (layer, path) in sorted(objs.items()):
        for line in nm(["--undefined-only"], path):
            sym = line.split()[-1]
            if sym in owner:
                olayer, oname = owner[sym]
                if LAYERS.index(olayer) > LAYERS.index(layer):
                    bad.append("%s (%s) uses %s of %s (%s)" % (name, layer, sym, oname, olayer))
    ok = bool(objs) and not bad
    report(ok, "layers: each runtime layer uses only %s in that order" % ", ".join(LAYERS),
           bad if objs else ["no runtime objects under %s" % build])


def check_exports(src, build):
    lib = os.path.join(build, ".libs", "libswitchboard.so")
    public = public_functions(src)
    exported = set()
    for line in nm(["-D", "--defined-only"], lib):
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRVWiu":
            exported.add(parts[2])
    extra = sorted(s for s in exported - public if not s.startswith("_"))
    missing = sorted(public - exported)
    bad = ["exported, not in switchboard.h: %s" % s for s in extra] + \
          ["in switchboard.h, not exported: %s" % s for s in missing]
    report(not bad, "exports: libswitchboard.so exports exactly switchboard.h's %d functions"
           % len(public), bad)
    return public


def check_imports(build, public):
    bad = []
    plugins = os.path.join(build, "services", ".libs")
    sos = sorted(f for f in os.listdir(plugins) if f.endswith(".so")) if os.path.isdir(plugins) else []
    for so in sos:
        path = os.path.join(plugins, so)
        for line in nm(["-D", "--undefined-only"], path):
            sym = line.split()[-1].split("@")[0]
            if sym.startswith("sb") and sym not in public:
                bad.append("%s imports %s" % (so, sym))
        for line in nm(["-D", "--defined-only"], path):
            parts = line.split()
            if len(parts) == 3 and parts[2] != "sb_service" and not parts[2].startswith("_"):
                bad.append("%s exports %s" % (so, parts[2]))
    ok = bool(sos) and not bad
    report(ok, "imports: bundled plugins export sb_service and import only the public API",
           bad if sos else ["no plugins under %s" % plugins])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--build")
    a = ap.parse_args()
    files = list(sources(a.src))
    graph = {f: includes(a.src, f) for f in files}
    print("1..%d" % (4 + (3 if a.build else 0)))
    check_size(a.src, files)
    check_cycles(a.src, graph)
    check_internal(graph)
    check_plugin_includes(graph)
    if a.build:
        check_layers(a.build)
        public = check_exports(a.src, a.build)
        check_imports(a.build, public)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
