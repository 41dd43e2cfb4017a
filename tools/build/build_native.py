#!/usr/bin/env python3
"""Build the Go engine into the CPython extension and stage package data.

This is the ONE build script: `make build` and setup.py (`pip install .`)
both run it.  Steps:

1. copy backends/redis/lua/*.lua  ->  python/rate_limiter_go/lua/
   (the Go files embed the originals with go:embed; the Python package
   gets a copy, which is gitignored).  Done even when Go is missing,
   because the pure-Python Redis backend needs the scripts too.
2. build gopy and goimports from the versions pinned in go.mod
   (`tool` lines) into .build/bin  (gopy calls `goimports` from PATH).
3. `gopy build -vm=<python> -name=pyext ./pyext` into .build/gopy
   (must be inside the Go module: gopy runs `go build -mod=mod` there;
   a leading '.' keeps it out of `./...` patterns), with -dynamic-link so
   the extension does not link libpython (checked after the build).
3b. add the hand-written request entry points (tools/build/fastpath/:
   evaluate_fast, submit_fast, add_fast; docs/engine.md, "Binding surface") to gopy's
   output: copy the C and Go files in, add the functions to the method
   table of the generated pyext.c, and relink the extension with the same
   go build command and cgo flags gopy used, plus profile-guided
   optimisation from pyext/default.pgo (PGO_PROFILE; docs/engine.md,
   "Profile-guided optimisation").
4. copy only the files needed at run time into
   python/rate_limiter_go/_goext/ : __init__.py, pyext.py, go.py and the
   single c-shared library _pyext.<EXT_SUFFIX>.  pyext.py/go.py are
   patched to drop gopy's os.chdir() around the import (process-wide
   side effect, not needed since there is no second .so to dlopen).
5. smoke test in a subprocess: import it and call ABIVersion()/Add().
   (A subprocess, because importing starts the Go runtime.)

Usage:  python tools/build/build_native.py [--python PY] [--lua-only] [--no-smoke]
Exit status is non-zero on any failure; callers decide if that is fatal.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess  # nosec B404 # a build script: runs go, gopy and the target Python
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "python", "rate_limiter_go")
LUA_SRC = os.path.join(ROOT, "backends", "redis", "lua")
LUA_DST = os.path.join(PKG, "lua")
BUILD = os.path.join(ROOT, ".build")
BIN = os.path.join(BUILD, "bin")
GOPY_OUT = os.path.join(BUILD, "gopy")
GOEXT = os.path.join(PKG, "_goext")
GO_PACKAGE = "./pyext"
MODULE_NAME = "pyext"  # -> rate_limiter_go._goext.pyext

# gopy's generated wrappers chdir into their own directory while importing
# the extension so that dlopen finds a sibling .so; we ship one .so that
# needs no such help, and chdir in a (possibly threaded) host process is a
# hazard.  These exact lines are replaced by `pass`.
CHDIR_LINES = ("os.chdir(currentdir)", "os.chdir(cwd)")

FASTPATH = os.path.join(ROOT, "tools", "build", "fastpath")
# The CPU profile the Go compiler optimises the engine's hot path with (PGO):
# `make pgo-profile` (write_pgo_profile) writes it from PGO_BENCHMARKS;
# bench/rlbench/engine.py builds the core benchmarks with the same file.
PGO_PROFILE = os.path.join(ROOT, "pyext", "default.pgo")
# The core's memory-path benchmarks (core/bench_test.go): a hot key with 1,
# 3 and 4 dimensions, a refused client and 100,000 users, in every
# algorithm: the paths a gateway's requests take through the engine. The
# parallel benchmarks take the same paths under lock contention; a profile
# with them gave the others no fewer instructions (bench/results/pgo/).
PGO_BENCHMARKS = "HotKey|Blocked|ManyKeys"
# The method table gopy generates in pyext.c, and the entries added to it.
METHOD_TABLE = "static PyMethodDef _pyext_functions[] = {\n"
METHOD_TABLE_END = "    {NULL, NULL, 0, NULL}\n};"
FAST_DECLS = (
    "PyObject *rl_fast_evaluate(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);\n"
    "PyObject *rl_fast_submit(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);\n"
    "PyObject *rl_fast_add(PyObject *, PyObject *const *, Py_ssize_t);\n"
)
FAST_ENTRIES = (
    '    {"evaluate_fast", (PyCFunction)(void (*)(void))rl_fast_evaluate, METH_FASTCALL | METH_KEYWORDS, '
    '"evaluate_fast(ctx, handle, user, tenant, tool, now_us=0, server=None) -> Decision (int without ctx)"},\n'
    '    {"submit_fast", (PyCFunction)(void (*)(void))rl_fast_submit, METH_FASTCALL | METH_KEYWORDS, '
    '"submit_fast(ctx, handle, user, tenant, tool, now_us=0, server=None) -> Decision or ticket (int without ctx)"},\n'
    '    {"add_fast", (PyCFunction)(void (*)(void))rl_fast_add, METH_FASTCALL, "add_fast(a, b) -> a + b"},\n'
)


def log(msg: str) -> None:
    print(f"[build_native] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=kw.pop("cwd", ROOT), **kw)  # nosec B603 # argv lists built by this script from its own options, no shell


def copy_lua() -> None:
    srcs = sorted(glob.glob(os.path.join(LUA_SRC, "*.lua")))
    os.makedirs(LUA_DST, exist_ok=True)
    # remove stale copies of scripts that no longer exist in the source
    keep = {os.path.basename(s) for s in srcs}
    for old in glob.glob(os.path.join(LUA_DST, "*.lua")):
        if os.path.basename(old) not in keep:
            os.remove(old)
    for s in srcs:
        shutil.copy2(s, os.path.join(LUA_DST, os.path.basename(s)))
    log(f"copied {len(srcs)} lua script(s) from backends/redis/lua to python/rate_limiter_go/lua")


def go_exe() -> str:
    if os.environ.get("GO"):  # explicit override, e.g. GO=/opt/go/bin/go
        return os.environ["GO"]
    go = shutil.which("go")
    if go is None and os.path.exists("/usr/local/go/bin/go"):
        go = "/usr/local/go/bin/go"
    if go is None:
        raise RuntimeError("Go toolchain not found (no `go` on PATH or /usr/local/go/bin/go)")
    return go


def build_tools(go: str, env: dict[str, str]) -> None:
    os.makedirs(BIN, exist_ok=True)
    # versions come from go.mod's `tool` block; the Go build cache makes
    # repeated runs cheap.
    run([go, "build", "-o", BIN + os.sep, "github.com/go-python/gopy", "golang.org/x/tools/cmd/goimports"], env=env)


def check_pybindgen(python: str) -> None:
    r = subprocess.run([python, "-c", "import pybindgen"], capture_output=True, text=True)  # nosec B603 # the --python interpreter with a fixed -c, no shell
    if r.returncode != 0:
        raise RuntimeError(
            f"{python} cannot import pybindgen (gopy needs it): pip install pybindgen\n{r.stderr.strip()}"
        )


def ext_suffix(python: str) -> str:
    out = subprocess.run(  # nosec B603 # the --python interpreter with a fixed -c, no shell
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def patch_chdir(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        src = f.read()
    for line in CHDIR_LINES:
        if line not in src:
            raise RuntimeError(f"gopy output changed: {line!r} not found in {path}; review tools/build/build_native.py")
        src = src.replace(line, "pass  # (removed by tools/build/build_native.py) " + line)
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)


def gopy_build(go: str, python: str, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Run gopy build; return the extension's file name and the cgo flags gopy linked it with."""
    shutil.rmtree(GOPY_OUT, ignore_errors=True)
    gomod = os.path.join(ROOT, "go.mod")
    gosum = os.path.join(ROOT, "go.sum")
    before = [open(p, "rb").read() if os.path.exists(p) else b"" for p in (gomod, gosum)]
    cmd = [
            os.path.join(BIN, "gopy"),
            "build",
            f"-vm={python}",
            # Link the extension WITHOUT libpython: the interpreter that loads it
            # provides the Python symbols, as for any CPython extension.  Needed
            # for manylinux wheels (auditwheel refuses libpython) and for
            # statically linked interpreters.
            "-dynamic-link=true",
            f"-output={os.path.relpath(GOPY_OUT, ROOT)}",
            f"-name={MODULE_NAME}",
            GO_PACKAGE,
    ]
    log("$ " + " ".join(cmd))
    out = subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, text=True).stdout  # nosec B603 # argv built above, no shell
    print(out, end="", flush=True)
    # gopy prints the cgo flags of its final link; the fast path relinks with the same.
    cgo = {k: v for k, _, v in (ln.partition("=") for ln in out.splitlines()) if k in ("CGO_CFLAGS", "CGO_LDFLAGS")}
    if len(cgo) != 2:
        raise RuntimeError("gopy output changed: no CGO_CFLAGS=/CGO_LDFLAGS= lines; review tools/build/build_native.py")
    after = [open(p, "rb").read() if os.path.exists(p) else b"" for p in (gomod, gosum)]
    if before != after:
        log("WARNING: gopy's `go build -mod=mod` changed go.mod/go.sum; review and commit (or run `go mod tidy`)")
    sofile = f"_{MODULE_NAME}{ext_suffix(python)}"
    so = os.path.join(GOPY_OUT, sofile)
    if not os.path.exists(so):
        raise RuntimeError(f"gopy did not produce {sofile}; files: {sorted(os.listdir(GOPY_OUT))}")
    return sofile, cgo


def add_fastpath(go: str, env: dict[str, str], sofile: str, cgo: dict[str, str]) -> None:
    """Add tools/build/fastpath's entry points to the extension gopy built, and relink it."""
    shutil.copy2(os.path.join(FASTPATH, "fastpath.c"), os.path.join(GOPY_OUT, "fastpath.c"))
    shutil.copy2(os.path.join(FASTPATH, "fastpath_export.go.in"), os.path.join(GOPY_OUT, "fastpath_export.go"))
    cfile = os.path.join(GOPY_OUT, f"{MODULE_NAME}.c")
    with open(cfile, encoding="utf-8") as f:
        src = f.read()
    start = src.find(METHOD_TABLE)
    end = src.find(METHOD_TABLE_END, start)
    if start < 0 or end < 0 or src.count(METHOD_TABLE) != 1:
        raise RuntimeError(f"gopy output changed: method table not found in {cfile}; review tools/build/build_native.py")
    src = src[:start] + FAST_DECLS + src[start:end] + FAST_ENTRIES + src[end:]
    with open(cfile, "w", encoding="utf-8") as f:
        f.write(src)
    os.remove(os.path.join(GOPY_OUT, sofile))
    # gopy's final link, as it runs it (cmd_build.go): the same command and
    # flags, plus the PGO profile (which recompiles every package it touches).
    if not os.path.isfile(PGO_PROFILE):
        raise RuntimeError(f"no PGO profile at {PGO_PROFILE}: restore it from git or run `make pgo-profile`")
    run([go, "build", "-mod=mod", "-buildmode=c-shared", "-ldflags=-s -w", f"-pgo={PGO_PROFILE}", "-o", sofile, "."],
        cwd=GOPY_OUT, env={**env, **cgo})
    if not os.path.exists(os.path.join(GOPY_OUT, sofile)):
        raise RuntimeError(f"relinking with the fast path did not produce {sofile}")
    log("added evaluate_fast, submit_fast and add_fast (tools/build/fastpath) to " + sofile)


def elf_needed(so: str) -> list[str]:
    """The shared libraries an ELF file names as NEEDED (readelf, from binutils)."""
    out = subprocess.run(["readelf", "-d", so], check=True, capture_output=True, text=True).stdout  # nosec B603 B607 # fixed argv (readelf -d on the built .so), readelf from PATH
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def check_no_libpython(so: str) -> None:
    """Fail if the extension links libpython (see gopy_build's -dynamic-link)."""
    if shutil.which("readelf") is None:  # binutils come with gcc, which cgo needed; be lenient anyway
        log("readelf not found: skipped the libpython link check")
        return
    needed = elf_needed(so)
    if any(n.startswith("libpython") for n in needed):
        raise RuntimeError(f"{os.path.basename(so)} links libpython ({needed}); gopy -dynamic-link did not apply")
    log(f"{os.path.basename(so)} needs only {needed}")


def install_runtime_files(sofile: str) -> None:
    wanted = ["__init__.py", f"{MODULE_NAME}.py", "go.py", sofile]
    stage = GOEXT + ".tmp"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    for name in wanted:
        shutil.copy2(os.path.join(GOPY_OUT, name), os.path.join(stage, name))
    with open(os.path.join(stage, "__init__.py"), "w", encoding="utf-8") as f:
        f.write(
            '"""Generated by tools/build/build_native.py from gopy output. Do not edit.\n\n'
            "Import only through rate_limiter_go._native.load_native(): importing\n"
            'the extension starts the Go runtime, which does not survive fork()."""\n'
        )
    patch_chdir(os.path.join(stage, f"{MODULE_NAME}.py"))
    patch_chdir(os.path.join(stage, "go.py"))
    shutil.rmtree(GOEXT, ignore_errors=True)
    os.rename(stage, GOEXT)
    log("installed into python/rate_limiter_go/_goext: " + ", ".join(sorted(os.listdir(GOEXT))))


def smoke(python: str) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from rate_limiter_go._goext import pyext;"
        "assert pyext.Add(2, 40) == 42, pyext.Add(2, 40);"
        "assert pyext._pyext.add_fast(2, 40) == 42;"
        "print('ABIVersion', pyext.ABIVersion())"
    )
    run([python, "-c", code, os.path.join(ROOT, "python")])


def write_pgo_profile() -> None:
    """Write PGO_PROFILE: the CPU profile of PGO_BENCHMARKS, built without PGO so that
    the profile does not depend on the one it replaces."""
    go = go_exe()
    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "cpu.pprof")
        run([go, "test", "-run", "^$", "-bench", PGO_BENCHMARKS, "-benchtime", "1s", "-pgo=off",
             "-o", os.path.join(tmp, "core.test"), "-cpuprofile", prof, "./core"], cwd=ROOT)
        shutil.copyfile(prof, PGO_PROFILE)
    log(f"wrote {os.path.relpath(PGO_PROFILE, ROOT)} from go test -bench '{PGO_BENCHMARKS}' ./core")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable, help="interpreter the extension is built for")
    ap.add_argument("--lua-only", action="store_true", help="only copy the Lua scripts")
    ap.add_argument("--no-smoke", action="store_true", help="skip the import test")
    ap.add_argument("--write-pgo-profile", action="store_true", help="only write the PGO profile (make pgo-profile)")
    args = ap.parse_args()
    if args.write_pgo_profile:
        write_pgo_profile()
        return 0

    copy_lua()
    if args.lua_only:
        return 0

    t0 = time.monotonic()
    # never leave a stale extension behind if this build fails
    shutil.rmtree(GOEXT, ignore_errors=True)
    python = args.python
    go = go_exe()
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + os.path.dirname(go) + os.pathsep + env.get("PATH", "")
    env.setdefault("CGO_ENABLED", "1")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false").strip()
    check_pybindgen(python)
    build_tools(go, env)
    sofile, cgo = gopy_build(go, python, env)
    add_fastpath(go, env, sofile, cgo)
    check_no_libpython(os.path.join(GOPY_OUT, sofile))
    install_runtime_files(sofile)
    if not args.no_smoke:
        smoke(python)
    log(f"native build done in {time.monotonic() - t0:.1f}s (python {python}, {sysconfig.get_platform()})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        log(f"FAILED: {e}")
        sys.exit(1)
