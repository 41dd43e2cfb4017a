"""Build hook: compile the Go engine (gopy) while building the package.

All metadata is in pyproject.toml.  build_py first runs
tools/build/build_native.py (the same script `make build` runs) for the
interpreter doing the build, so `pip install .` ships
rate_limiter_go/_goext (one c-shared .so + gopy's .py wrappers) and the
Lua scripts copied from backends/redis/lua.

If Go or the native build fails, the install still succeeds with the
pure-Python engine and a WARNING is printed.  Environment switches:
  RATE_LIMITER_GO_NATIVE=skip     do not build the Go engine (Lua copy only)
  RATE_LIMITER_GO_NATIVE=require  a failed Go build fails the install
"""

import os
import shutil
import subprocess  # nosec B404 # runs the project's own tools/build/build_native.py
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(ROOT, "tools", "build", "build_native.py")


def _warn(msg):
    bar = "=" * 78
    # pip shows a successful build's output only with `pip install -v`;
    # at run time rate_limiter_go._native.native_unavailable_reason() says why.
    sys.stderr.write(f"\n{bar}\nWARNING: {msg}\n{bar}\n\n")
    sys.stderr.flush()


class BuildPyWithGo(build_py):
    def run(self):
        mode = os.environ.get("RATE_LIMITER_GO_NATIVE", "auto").lower()
        if not os.path.exists(SCRIPT):
            # building from an sdist/wheel tree without tools/: use what is there
            _warn("tools/build/build_native.py not found; packaging existing generated files only")
        elif mode == "skip" or self.editable_mode and mode != "require":
            # editable installs (make venv) build in place via `make build`
            subprocess.run([sys.executable, SCRIPT, "--lua-only"], check=True, cwd=ROOT)  # nosec B603 # fixed argv: this interpreter and the project's build script, no shell
        else:
            r = subprocess.run([sys.executable, SCRIPT, "--python", sys.executable], cwd=ROOT)  # nosec B603 # fixed argv: this interpreter and the project's build script, no shell
            if r.returncode != 0:
                if mode == "require":
                    raise SystemExit("rate_limiter_go: Go engine build failed and RATE_LIMITER_GO_NATIVE=require")
                _warn(
                    "rate_limiter_go: building the Go engine failed (see output above; needs Go >= 1.26, "
                    "gcc, Python headers, pybindgen). Installing with the pure-Python engine only."
                )
        # setuptools reuses build/lib* between builds: drop generated files a
        # previous build left there so a failed Go build cannot ship a stale .so
        for sub in ("_goext", "lua"):
            shutil.rmtree(os.path.join(self.build_lib, "rate_limiter_go", sub), ignore_errors=True)
        super().run()


class BinaryDistribution(Distribution):
    # the wheel may contain a CPython extension: tag it for this platform/ABI
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithGo}, distclass=BinaryDistribution)
