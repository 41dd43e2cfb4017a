"""Each wheel in dist/ installs and runs the Go engine without any toolchain.

`make test-wheels` runs this file once (not once per engine), after `make
wheels`.  For every wheel: a fresh venv of the matching CPython, a PATH that
holds only that venv's bin/ (no Go, no gcc; pybindgen is not installed), a
plain `pip install <wheel>` (its dependencies come from the package index),
then a script that loads the plugin through cpex's PluginManager from YAML,
as the gateway does, with RATE_LIMITER_ENGINE=go, on the memory backend and on
a real redis-server, until it refuses.

The interpreters come from WHEEL_PYTHONS ("3.11=/path 3.12=/path ..."), set
by the Makefile; a wheel without an interpreter, or no wheel, is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("WHEEL_DIST", ROOT / "dist"))
WHEELS = sorted(DIST.glob("rate_limiter_go-*-manylinux*.whl"))
INTERPRETERS = dict(item.split("=", 1) for item in os.environ.get("WHEEL_PYTHONS", "").split())

_SMOKE = textwrap.dedent(
    """
    import asyncio, json, os, sys, tempfile
    import rate_limiter_go
    from rate_limiter_go import _native
    from cpex.framework import GlobalContext, PluginManager, ToolHookType, ToolPreInvokePayload

    async def burst(backend):
        extra = f"\\n      backend: redis\\n      redis_url: {sys.argv[1]}" if backend == "redis" else ""
        yaml = f'''plugins:
      - name: rl_{backend}
        kind: rate_limiter_go.plugin.RateLimiterPlugin
        hooks: [tool_pre_invoke]
        mode: enforce
        config:
          by_user: "2/h"
          algorithm: sliding_window{extra}
    plugin_dirs: []
    '''
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(yaml)
        PluginManager.reset()
        pm = PluginManager(f.name)
        await pm.initialize()
        assert pm.plugin_count == 1, pm.plugin_count
        engine = pm.get_plugin(f"rl_{backend}").engine.name
        outcomes = []
        for n in range(3):
            gc = GlobalContext(request_id=f"r{n}", user="wheel@example.com")
            result, _ = await pm.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, ToolPreInvokePayload(name="t", args={}),
                                             global_context=gc, violations_as_exceptions=False)
            outcomes.append("admitted" if result.continue_processing else result.violation.code)
        await pm.shutdown()
        PluginManager.reset()
        return {"engine": engine, "outcomes": outcomes}

    out = {"file": rate_limiter_go.__file__, "go_loaded_here": None}
    out["memory"] = asyncio.run(burst("memory"))
    out["redis"] = asyncio.run(burst("redis"))
    out["go_loaded_here"] = _native.loaded_in_pid() == os.getpid()
    print("SMOKE " + json.dumps(out))
    """
)


def _cp_version(wheel: Path) -> str:
    m = re.search(r"-cp(\d)(\d+)-", wheel.name)
    assert m, f"{wheel.name}: no cpXY tag"
    return f"{m.group(1)}.{m.group(2)}"


def test_dist_has_wheels() -> None:
    assert WHEELS, f"no manylinux wheel in {DIST}: run `make wheels`"
    assert {_cp_version(w) for w in WHEELS} >= set(INTERPRETERS), (
        f"wheels {[w.name for w in WHEELS]} do not cover WHEEL_PYTHONS {sorted(INTERPRETERS)}"
    )


@pytest.mark.parametrize("wheel", WHEELS, ids=[w.name for w in WHEELS])
def test_wheel_installs_and_runs_go_without_toolchain(wheel: Path, tmp_path: Path, redis_url: str) -> None:
    version = _cp_version(wheel)
    python = INTERPRETERS.get(version)
    assert python, f"no interpreter for CPython {version} in WHEEL_PYTHONS={os.environ.get('WHEEL_PYTHONS')!r}"
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    bindir = venv / "bin"
    env = {
        "PATH": str(bindir),  # nothing else: no go, gcc, cc, pybindgen on it
        "HOME": str(tmp_path),
        "RATE_LIMITER_ENGINE": "go",
        "RATE_LIMITER_GO_NATIVE": "require",  # had pip built from source, a missing Go would fail the install
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for tool in ("go", "gcc", "cc", "pybindgen"):
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is on the test PATH"

    pip = subprocess.run([str(bindir / "pip"), "install", "--only-binary", ":all:", str(wheel)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    nobind = subprocess.run([str(bindir / "python"), "-c", "import pybindgen"], env=env, capture_output=True)
    assert nobind.returncode != 0, "pybindgen is importable in the wheel's venv"

    run = subprocess.run([str(bindir / "python"), "-c", _SMOKE, redis_url], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("SMOKE ")]
    assert line, run.stdout[-3000:]
    out = json.loads(line[0][len("SMOKE "):])
    assert out["file"].startswith(str(venv)), out["file"]
    assert out["go_loaded_here"] is True
    for backend in ("memory", "redis"):
        assert out[backend] == {"engine": "go", "outcomes": ["admitted", "admitted", "RATE_LIMIT"]}, (backend, out)

