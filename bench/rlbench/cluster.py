"""The Redis Cluster cells of a run: the deployment, and what a peer without Cluster support gets.

The Cluster is the project's one local launcher (tests_py/support/redis_cluster.py:
3 primaries + 3 replicas on loopback). Our plugin runs on it with
``redis_mode: cluster`` and ``redis_url`` = one seed node; a 3-dimension request
there is up to three slot groups run in parallel, plus give-backs when a group
refuses (docs/semantics.md §11.1).

A peer with no Cluster mode is configured as it would be by an operator (its
``redis_url`` = the seed node) and called once per request of the pool; the
outcome is what it did, not a time: how many results had the path's expected
shape, the errors it logged, and how many keys it left on the Cluster.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from support.redis_cluster import RedisCluster

from rlbench.measure import outcome_ok
from rlbench.redis_cost import Deployment
from rlbench.redis_counters import error_counts, error_delta

#: At most this many distinct error messages are kept per peer and scenario.
MAX_ERRORS = 3
#: Error messages are cut to this many characters.
MAX_ERROR_CHARS = 160


def deployment(cluster: RedisCluster) -> Deployment:
    """Counters of a running Cluster: its primaries counted, its replicas reported apart."""
    primaries, replicas = [], []
    for node in cluster.nodes:
        client = node.client()
        role = client.info("replication").get("role")
        (primaries if role == "master" else replicas).append(client)
    if len(primaries) != 3 or len(replicas) != 3:
        raise RuntimeError(f"cluster has {len(primaries)} primaries and {len(replicas)} replicas, want 3 and 3")
    dep = Deployment("cluster", cluster.url, primaries, replicas)
    dep.calibrate()
    return dep


class _Collect(logging.Handler):
    """Keeps the messages of WARNING and above records (a peer's backend errors)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            msg += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.messages.append(msg)


# Redis's reply (MOVED 1234 host:port) and redis-py's exceptions (MovedError: 1234 host:port).
_SLOT_ADDR = re.compile(r"\b(MOVED|ASK|MovedError:|AskError:) \d+ \S+")


def normalise_error(message: str) -> str:
    """One line, slot numbers and node addresses of MOVED/ASK folded, cut to MAX_ERROR_CHARS."""
    line = " ".join(message.split())
    line = _SLOT_ADDR.sub(lambda m: f"{m.group(1)} <slot> <node>", line)
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


@dataclass
class PeerOutcome:
    """What a peer did on the Cluster for one scenario.

    ``expected``: results with the path's shape (admitted with headers, or a
    RATE_LIMIT violation); ``other``: the rest (for example admitted without
    headers: failed open); ``raised``: exceptions out of the hook;
    ``errors_logged``: WARNING+ records; ``errors``: the most frequent
    distinct messages (exceptions and records), normalised; ``keys_written``:
    keys under the peer's prefix on the primaries afterwards; ``server_errors``:
    the error replies the Cluster's nodes sent meanwhile, by code (INFO
    errorstats), which names the error even when the peer logs only that it
    failed.
    """

    calls: int = 0
    expected: int = 0
    other: int = 0
    raised: int = 0
    errors_logged: int = 0
    errors: list[str] = field(default_factory=list)
    keys_written: int = 0
    server_errors: dict[str, int] = field(default_factory=dict)

    def verdict(self) -> str:
        """``runs`` when every call had the expected shape and nothing was logged; else ``fails``."""
        clean = not (self.raised or self.errors_logged or self.server_errors)
        return "runs" if self.expected == self.calls and clean else "fails"


def summarise(calls: int, results: list[Any], raised: list[BaseException], logged: list[str], admitted: bool,
              keys_written: int, server_errors: dict[str, int] | None = None) -> PeerOutcome:  # fmt: skip
    """The outcome of ``calls`` calls: ``results`` returned, ``raised`` exceptions, ``logged`` messages."""
    expected = sum(1 for r in results if outcome_ok(r, admitted))
    counts = Counter(normalise_error(m) for m in [*(f"{type(e).__name__}: {e}" for e in raised), *logged])
    return PeerOutcome(calls=calls, expected=expected, other=len(results) - expected, raised=len(raised),
                       errors_logged=len(logged), errors=[m for m, _ in counts.most_common(MAX_ERRORS)],
                       keys_written=keys_written, server_errors=dict(server_errors or {}))  # fmt: skip


async def peer_trial(plugin: Any, args: list[tuple[Any, Any]], admitted: bool, dep: Deployment,
                     key_prefix: str) -> dict[str, Any]:  # fmt: skip
    """Each request of the pool once through ``plugin.tool_pre_invoke``; see PeerOutcome."""
    nodes = [*dep.counted, *dep.replicas]
    errors_before = [error_counts(n.info("errorstats")) for n in nodes]
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    results: list[Any] = []
    raised: list[BaseException] = []
    try:
        for p, c in args:
            try:
                results.append(await plugin.tool_pre_invoke(p, c))
            except Exception as e:  # the outcome being measured
                raised.append(e)
    finally:
        root.removeHandler(handler)
    keys = sum(sum(1 for _ in node.scan_iter(match=f"{key_prefix}*", count=1000)) for node in dep.counted)
    server_errors: dict[str, int] = {}
    for node, before in zip(nodes, errors_before):
        for code, n in error_delta(before, error_counts(node.info("errorstats"))).items():
            server_errors[code] = server_errors.get(code, 0) + n
    outcome = summarise(len(args), results, raised, handler.messages, admitted, keys, server_errors)
    return {**asdict(outcome), "verdict": outcome.verdict()}
