"""A diagnostic cpex plugin for the rig: records what the gateway hands a plugin.

Used only by rig/discover.py to find out, inside the real gateway, which GlobalContext
``user`` / ``tenant_id`` a tool or prompt hook receives and how often plugin instances are
rebuilt. Identities are never written raw: each is recorded as the first 16 hex digits of its
SHA-256, which the discovery script compares with the hashes of the identities it used.

Config: ``out`` (path of a JSON-lines file to append to), ``block_after`` (optional int: from
the n-th tool call or prompt fetch of this process on, block with a 429 violation carrying X-Probe
headers, so the HTTP shape of a violation can be observed), ``tag`` (optional string, recorded with
every line of the instance: tells an instance built from the YAML from one built from a per-tool
binding stored in the gateway's database). ``request_id`` and ``server_id`` are recorded hashed
too, so the driver can tell whether they match what it sent and whether they are unique per call.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from typing import Any

from cpex.framework import (
    Plugin,
    PluginConfig,
    PluginContext,
    PluginViolation,
    PromptPrehookPayload,
    PromptPrehookResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)

_instances = itertools.count(1)
_calls = itertools.count(1)  # process-wide: survives the gateway's manager rebuilds
_write_lock = threading.Lock()


def _digest(value: object) -> str:
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _shape(value: Any) -> dict[str, Any]:
    """Type and hashed content of a context value, without the raw identity."""
    if value is None:
        return {"type": "None"}
    if isinstance(value, dict):
        return {
            "type": "dict",
            "keys": sorted(value),
            "hashed": {k: _digest(v) for k, v in value.items() if v is not None},
        }
    return {"type": type(value).__name__, "hash": _digest(value)}


class ProbePlugin(Plugin):
    """Appends one JSON line per hook call describing the contexts it was given."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        settings = config.config or {}
        out = settings.get("out")
        if not isinstance(out, str) or not out:
            raise ValueError("rig probe: config.out must be a file path")
        block_after = settings.get("block_after")
        if block_after is not None and (not isinstance(block_after, int) or block_after < 1):
            raise ValueError("rig probe: config.block_after must be a positive integer")
        tag = settings.get("tag", "yaml")
        if not isinstance(tag, str):
            raise ValueError("rig probe: config.tag must be a string")
        self._out = out
        self._block_after = block_after
        self._tag = tag
        self._instance = next(_instances)
        self._record({"event": "init"})

    def _record(self, doc: dict[str, Any]) -> None:
        doc.update(pid=os.getpid(), instance=self._instance, tag=self._tag, t=round(time.time(), 3))
        line = json.dumps(doc, sort_keys=True)
        with _write_lock, open(self._out, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _context_doc(self, hook: str, name: str, context: PluginContext) -> dict[str, Any]:
        gc = context.global_context
        return {
            "event": hook,
            "name": name,
            "user": _shape(gc.user),
            "tenant_id": _shape(gc.tenant_id),
            "server_id": _shape(gc.server_id),
            "request_id": _shape(gc.request_id),
            "has_user_context": getattr(gc, "user_context", None) is not None,
        }

    @staticmethod
    def _label(args: Any) -> str | None:
        """The driver's call label ("probe-call-<n>"), passed as the tool's ``text`` or the prompt's ``name``."""
        if isinstance(args, dict):
            for v in args.values():
                if isinstance(v, str) and v.startswith("probe-call-"):
                    return v
        return None

    def _violation(self, n: int) -> PluginViolation | None:
        if self._block_after is None or n < self._block_after:
            return None
        return PluginViolation(
            reason="Probe block",
            description="rig probe blocks this call",
            code="RIG_PROBE",
            details={"call": n},
            http_status_code=429,
            http_headers={"X-Probe-Call": str(n), "Retry-After": "1"},
        )

    async def tool_pre_invoke(self, payload: ToolPreInvokePayload, context: PluginContext) -> ToolPreInvokeResult:
        n = next(_calls)
        doc = self._context_doc("tool_pre_invoke", payload.name, context)
        self._record(doc | {"call": n, "label": self._label(payload.args)})
        violation = self._violation(n)
        if violation is not None:
            return ToolPreInvokeResult(continue_processing=False, violation=violation)
        return ToolPreInvokeResult(http_headers={"X-Probe-Admitted": str(n)})

    async def prompt_pre_fetch(self, payload: PromptPrehookPayload, context: PluginContext) -> PromptPrehookResult:
        n = next(_calls)
        doc = self._context_doc("prompt_pre_fetch", payload.prompt_id, context)
        self._record(doc | {"call": n, "label": self._label(payload.args)})
        violation = self._violation(n)
        if violation is not None:
            return PromptPrehookResult(continue_processing=False, violation=violation)
        return PromptPrehookResult(http_headers={"X-Probe-Admitted": str(n)})

    async def shutdown(self) -> None:
        self._record({"event": "shutdown"})
