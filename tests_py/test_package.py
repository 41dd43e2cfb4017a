"""What the installed package tells the gateway and cpex tooling about itself.

Gateway 1.1.0's plugin page shows author, description, version and license
from the installed distribution's metadata; cpex tooling reads the plugin
manifest shipped in the package. Under `make test-py` the package is the
installed wheel, so this checks the shipped metadata.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.resources

import rate_limiter_go
import yaml
from rate_limiter_go.config import parse_config
from rate_limiter_go.plugin import RateLimiterPlugin


def _manifest() -> dict:
    text = importlib.resources.files("rate_limiter_go").joinpath("plugin-manifest.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_distribution_metadata() -> None:
    meta = md.metadata("rate_limiter_go")
    assert meta["Version"] == rate_limiter_go.__version__
    assert meta["Summary"] and "ContextForge" in meta["Summary"]
    assert meta["Author"] not in (None, "", "Unknown")
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(f.name == "LICENSE" and "licenses" in f.parts for f in md.files("rate_limiter_go") or [])
    assert set(meta["Requires-Python"].split(",")) == {">=3.11", "<3.14"}, meta["Requires-Python"]
    classifiers = set(meta.get_all("Classifier") or [])
    assert {f"Programming Language :: Python :: 3.{m}" for m in (11, 12, 13)} <= classifiers


def test_cpex_entry_point_names_the_plugin_class() -> None:
    (entry,) = [e for e in md.entry_points(group="cpex.plugins") if e.dist and e.dist.name == "rate_limiter_go"]
    assert entry.load() is RateLimiterPlugin


def test_manifest_matches_the_code() -> None:
    manifest = _manifest()
    assert manifest["version"] == rate_limiter_go.__version__
    assert manifest["author"] == md.metadata("rate_limiter_go")["Author"]
    module, _, cls = manifest["kind"].rpartition(".")
    assert getattr(importlib.import_module(module), cls) is RateLimiterPlugin
    assert manifest["available_hooks"] and all(callable(getattr(RateLimiterPlugin, h)) for h in manifest["available_hooks"])
    defaults = parse_config(manifest["default_configs"])  # the plugin's own validation accepts them
    assert defaults.by_user is not None and defaults.by_user_per_server is None
