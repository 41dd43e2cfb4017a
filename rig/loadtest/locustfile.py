"""Locust load for the rig: JSON-RPC tools/call through nginx, every response classified and logged.

Run by rig/loadtest/run.py (headless, bounded by -t). Settings come from the environment:

* ``RIG_JSON``: the run's rig.json (nginx URL, tool name, users and their API tokens).
* ``RIG_EVENTS``: JSON-lines file written at the end, one line per request:
  ``t0``/``t1`` (send/receive, epoch seconds), ``user`` (index into rig.json users), ``cat``
  (classify.py category), ``dim`` (refusing dimension), ``up`` (answering gateway), ``st``.
* ``RIG_TOOL_ERROR_EVERY``: every n-th call of a locust user asks the tool to fail (0: never),
  so that tool errors are exercised and shown to be classified apart from rate limiting.
* ``RIG_USER_OFFSET``: locust user i calls as rig user (i + offset) mod len(users).
* ``RIG_ROTATE_USERS=1``: instead, every call takes the next rig user in turn (many users, few
  concurrent clients: steady per-user demand without overloading a small machine).

Locust users wait for nothing between calls (closed loop): the load is set by their number.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

from locust import FastHttpUser, constant, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classify import classify  # noqa: E402

RIG = json.loads(Path(os.environ["RIG_JSON"]).read_text())
EVENTS_PATH = Path(os.environ["RIG_EVENTS"])
TOOL_ERROR_EVERY = int(os.environ.get("RIG_TOOL_ERROR_EVERY", "0"))
USER_OFFSET = int(os.environ.get("RIG_USER_OFFSET", "0"))
ROTATE_USERS = os.environ.get("RIG_ROTATE_USERS") == "1"

_records: list[dict] = []
_next_user = itertools.count()
_rotation = itertools.count()


def _caller(index: int) -> tuple[int, tuple[str, ...], dict[str, str]]:
    user = RIG["users"][index]
    identities = tuple(x for x in (user["email"], user.get("team")) if x)
    return index, identities, {"Authorization": f"Bearer {user['token']}", "Content-Type": "application/json"}


_CALLERS = [_caller(i) for i in range(len(RIG["users"]))]


class RigCaller(FastHttpUser):
    """One client of the gateway, calling the rig's test tool as one provisioned user."""

    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.caller = _CALLERS[(next(_next_user) + USER_OFFSET) % len(_CALLERS)]
        self.calls = 0

    @task
    def call_tool(self) -> None:
        self.calls += 1
        fail = TOOL_ERROR_EVERY > 0 and self.calls % TOOL_ERROR_EVERY == 0
        payload = {
            "jsonrpc": "2.0",
            "id": self.calls,
            "method": "tools/call",
            "params": {"name": RIG["tool"], "arguments": {"text": "load", "fail": fail}},
        }
        user_index, identities, headers_out = _CALLERS[next(_rotation) % len(_CALLERS)] if ROTATE_USERS else self.caller
        t0 = time.time()
        with self.client.post(
            "/rpc", data=json.dumps(payload), headers=headers_out, catch_response=True, name="tools/call"
        ) as resp:
            t1 = time.time()
            status = resp.status_code or 0
            headers = {k.lower(): v for k, v in (resp.headers or {}).items()} if status else {}
            err = repr(resp.error) if getattr(resp, "error", None) else None
            out = classify(status, headers, resp.content if status else None, err, identities)
            if out.infra:
                resp.failure(f"{out.category}: {out.detail}")
            else:
                resp.success()
        _records.append(
            {
                "t0": t0,
                "t1": t1,
                "user": user_index,
                "cat": out.category,
                "dim": out.dimension,
                "up": headers.get("x-rig-upstream"),
                "st": status,
                "lim": out.limit,
                "rem": out.remaining,
                "rst": out.reset_unix,
                "ra": out.retry_after_s,
                "det": out.detail if out.infra else None,
            }
        )


@events.test_stop.add_listener
def _write_events(**_kwargs) -> None:
    tmp = EVENTS_PATH.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in _records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(EVENTS_PATH)
