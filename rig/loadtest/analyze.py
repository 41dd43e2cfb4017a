"""Check the admissions a load test observed against the limit, per key and per window.

The client only knows that each request was decided somewhere between sending it (``t0``) and
receiving the answer (``t1``), on the same host clock that Redis and the gateways use. Every check
therefore works with two counts: *certain* (decided inside the span whatever the exact instant)
and *possible* (could have been decided inside it). A proven over-admission is ``certain > limit``;
a proven under-admission is ``possible < limit - tolerance`` at an instant where the limiter refused
(tolerance = 1 % of the limit, rounded down). Requests whose outcome is unknown (infrastructure
errors) count as possible admissions only.

On a Redis Cluster the limiter decides at the cluster clock (docs/semantics.md §11.1), not at the
TIME of the node holding the key; it can be off this host's clock by up to ``clock_slack_s``. The
checks then take each decision to lie in ``[t0 - slack, t1 + slack]``: a wider span, so fewer certain
and more possible admissions near window boundaries (weaker checks, stated with the result).

Each run starts on fresh state (new Redis, new gateway processes), which is what makes the lower
bounds exact: a refusal by dimension X of a key means that key's state was full at that instant.

* Fixed window (docs/semantics.md §3.1): per epoch-aligned window, ``certain <= L``; in every window
  where the key refused, ``possible >= L - tol`` (it admitted its whole quota there).
* Sliding window (§3.2): no half-open span shorter than W holds more than L certain admissions; at
  every refusal, the W before it held at least ``L - tol`` possible admissions.
* Token bucket (§3.3): no span of length s <= W holds more than ``L + L*s/W`` certain admissions;
  across a run of refusals (bucket below one token at each, never able to reach its cap between
  them) admissions equal the refill ``L*dt/W`` within one token (and 1 % for the lower bound).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class Span:
    """One decision: made at some instant in [t0, t1] (seconds since the epoch)."""

    t0: float
    t1: float


@dataclass
class KeyObservations:
    """What was seen for one limiter key (one dimension of one identity, in one scope)."""

    admitted: list[Span] = field(default_factory=list)  # certainly admitted
    unknown: list[Span] = field(default_factory=list)  # outcome unknown: possibly admitted
    refused: list[Span] = field(default_factory=list)  # refused by this very key


@dataclass
class KeyReport:
    """The verdict for one key."""

    key: str
    limit: int
    window_s: int
    admitted: int = 0
    refused: int = 0
    checks: int = 0  # windows / refusal instants where a lower bound was checked
    exact: int = 0  # lower-bound checks where certain == possible == limit (or refill)
    over: list[str] = field(default_factory=list)
    under: list[str] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)  # fixed window only

    @property
    def ok(self) -> bool:
        return not self.over and not self.under


def tolerance(limit: int) -> int:
    """Allowed shortfall below the limit: 1 % rounded down (0 for limits below 100)."""
    return int(limit * TOLERANCE)


def check_key(key: str, obs: KeyObservations, algorithm: str, limit: int, window_s: int) -> KeyReport:
    """Run the checks of ``algorithm`` for one key."""
    rep = KeyReport(key=key, limit=limit, window_s=window_s, admitted=len(obs.admitted), refused=len(obs.refused))
    if algorithm == "fixed_window":
        _fixed_window(obs, limit, window_s, rep)
    elif algorithm == "sliding_window":
        _sliding_window(obs, limit, window_s, rep)
    elif algorithm == "token_bucket":
        _token_bucket(obs, limit, window_s, rep)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return rep


def _fixed_window(obs: KeyObservations, limit: int, w: float, rep: KeyReport) -> None:
    certain: dict[int, int] = defaultdict(int)
    possible: dict[int, int] = defaultdict(int)
    refused: dict[int, int] = defaultdict(int)
    for s in obs.admitted:
        a, b = math.floor(s.t0 / w), math.floor(s.t1 / w)
        if a == b:
            certain[a] += 1
        for k in range(a, b + 1):
            possible[k] += 1
    for s in obs.unknown:
        for k in range(math.floor(s.t0 / w), math.floor(s.t1 / w) + 1):
            possible[k] += 1
    for s in obs.refused:
        a, b = math.floor(s.t0 / w), math.floor(s.t1 / w)
        if a == b:
            refused[a] += 1
    tol = tolerance(limit)
    for k in sorted(set(certain) | set(possible) | set(refused)):
        c, p, r = certain[k], possible[k], refused[k]
        rep.windows.append({"window_start": int(k * w), "certain": c, "possible": p, "refused": r})
        if c > limit:
            rep.over.append(f"window starting {int(k * w)}: {c} certain admissions > limit {limit}")
        if r:
            rep.checks += 1
            if p < limit - tol:
                rep.under.append(f"window starting {int(k * w)}: refused with only {p} possible admissions < {limit}")
            elif c == p == limit:
                rep.exact += 1


def _max_certain_in_span(admitted: list[Span], span: float, allowance) -> tuple[int, float, float]:
    """Largest excess of certain admissions over ``allowance(length)`` in a half-open span starting
    at an admission's t0 and shorter than ``span``. Returns (excess, start, count)."""
    spans = sorted(admitted, key=lambda s: s.t0)
    worst = (-(10**9), 0.0, 0)
    for i, first in enumerate(spans):
        a = first.t0
        ends = []
        for s in spans[i:]:
            if s.t0 >= a + span:
                break
            if s.t1 < a + span:
                ends.append(s.t1)
        ends.sort()
        for n, end in enumerate(ends, start=1):
            excess = n - allowance(end - a)
            if excess > worst[0]:
                worst = (excess, a, n)
    return worst


def _sliding_window(obs: KeyObservations, limit: int, w: float, rep: KeyReport) -> None:
    excess, start, n = _max_certain_in_span(obs.admitted, w, lambda _length: limit)
    if excess > 0:
        rep.over.append(f"{n} certain admissions within {w} s from {start:.3f} > limit {limit}")
    starts = sorted(s.t0 for s in obs.admitted + obs.unknown)
    ends = sorted(s.t1 for s in obs.admitted + obs.unknown)
    tol = tolerance(limit)
    for r in obs.refused:
        # could be in (d - W, d] for some decision instant d in [r.t0, r.t1]
        possible = bisect.bisect_right(starts, r.t1) - bisect.bisect_right(ends, r.t0 - w)
        # surely in it for every such d: t0 > r.t1 - W and t1 <= r.t0
        certain = sum(1 for s in obs.admitted if s.t0 > r.t1 - w and s.t1 <= r.t0)
        rep.checks += 1
        if possible < limit - tol:
            rep.under.append(f"refused at {r.t0:.3f} with only {possible} possible admissions in the {w} s before")
        elif certain == possible == limit:
            rep.exact += 1


def _token_bucket(obs: KeyObservations, limit: int, w: float, rep: KeyReport) -> None:
    rate = limit / w  # tokens per second
    excess, start, n = _max_certain_in_span(obs.admitted, w, lambda length: limit + rate * length)
    if excess > 1e-9:
        rep.over.append(f"{n} certain admissions within a span from {start:.3f} > burst {limit} + refill")
    # Refusals whose order is certain. At each the bucket held less than one token. Between two
    # consecutive ones whose possible refill stays below limit - 1 the bucket cannot reach its cap,
    # so over a run of such refusals: admitted = refill + (tokens at first - tokens at last), i.e.
    # refill -+ 1, with the refill known up to the two end refusals' own spans.
    chain: list[Span] = []
    for r in sorted(obs.refused, key=lambda s: s.t0):
        if not chain or r.t0 >= chain[-1].t1:
            chain.append(r)
    segments: list[list[Span]] = []
    for r in chain:
        if segments and rate * (r.t1 - segments[-1][-1].t0) < limit - 1:
            segments[-1].append(r)
        else:
            segments.append([r])
    pos = obs.admitted + obs.unknown
    for seg in segments:
        if len(seg) < 2:
            continue
        first, last = seg[0], seg[-1]
        lo, hi = rate * (last.t0 - first.t1), rate * (last.t1 - first.t0)
        certain = sum(1 for s in obs.admitted if s.t0 >= first.t1 and s.t1 <= last.t0)
        possible = sum(1 for s in pos if s.t1 > first.t0 and s.t0 < last.t1)
        rep.checks += 1
        rep.windows.append(
            {"from": round(first.t0, 3), "to": round(last.t1, 3), "refill_lo": round(lo, 2),
             "refill_hi": round(hi, 2), "certain": certain, "possible": possible}
        )  # fmt: skip
        if certain > hi + 1:
            rep.over.append(
                f"{certain} certain admissions between refusals {first.t0:.3f}..{last.t0:.3f} > refill {hi:.2f} + 1"
            )
        slack = 1 + TOLERANCE * lo
        if possible < lo - slack:
            rep.under.append(
                f"{possible} possible admissions between refusals {first.t0:.3f}..{last.t0:.3f} < refill {lo:.2f} - {slack:.2f}"
            )
        elif abs((certain + possible) / 2 - (lo + hi) / 2) <= slack:
            rep.exact += 1  # the midpoints agree within one token + 1 %


# --------------------------------------------------------------------------- events -> keys


def build_observations(
    events: Iterable[dict[str, Any]],
    dimensions: dict[str, tuple[int, int]],
    users: list[dict[str, Any]],
    tool: str,
    tools_limited: set[str],
    per_gateway: bool,
    clock_slack_s: float = 0.0,
) -> dict[tuple[str, str], KeyObservations]:
    """Group events by (dimension, key). Keys are ``u<index>``, ``t<team index>``, the tool name,
    prefixed by the answering gateway when ``per_gateway`` (memory backend: one store per process).
    No identity (email, team id) appears in a key. ``clock_slack_s`` widens every span on both sides
    (the limiter's clock may be that far from this host's)."""
    teams: dict[str, int] = {}
    for u in users:
        if u.get("team") and u["team"] not in teams:
            teams[u["team"]] = len(teams)
    out: dict[tuple[str, str], KeyObservations] = defaultdict(KeyObservations)
    for e in events:
        u = users[e["user"]]
        keys = {}
        if "user" in dimensions:
            keys["user"] = f"u{e['user']}"
        if "tenant" in dimensions and u.get("team"):
            keys["tenant"] = f"t{teams[u['team']]}"
        if "tool" in dimensions and tool.strip().lower() in tools_limited:
            keys["tool"] = tool.strip().lower()
        scope = (e.get("up") or "?") + "/" if per_gateway else ""
        span = Span(e["t0"] - clock_slack_s, e["t1"] + clock_slack_s)
        cat = e["cat"]
        for dim, key in keys.items():
            obs = out[(dim, scope + key)]
            if cat in ("admitted", "tool_error"):
                obs.admitted.append(span)
            elif cat == "rate_limited":
                if e.get("dim") == dim:
                    obs.refused.append(span)
            elif per_gateway and not e.get("up"):
                pass  # never reached a gateway: consumed nothing anywhere
            else:
                obs.unknown.append(span)
    return out


def analyse(
    events: list[dict[str, Any]],
    algorithm: str,
    dimensions: dict[str, tuple[int, int]],
    users: list[dict[str, Any]],
    tool: str,
    tools_limited: set[str],
    per_gateway: bool = False,
    clock_slack_s: float = 0.0,
) -> list[KeyReport]:
    """Reports for every key seen, sorted by dimension and key."""
    obs = build_observations(events, dimensions, users, tool, tools_limited, per_gateway, clock_slack_s)
    reports = []
    for (dim, key), o in sorted(obs.items()):
        limit, window_s = dimensions[dim]
        reports.append(check_key(f"{dim}:{key}", o, algorithm, limit, window_s))
    return reports


def window_totals(events: list[dict[str, Any]], window_s: int) -> dict[tuple[int, int], dict[str, int]]:
    """Admissions per (user index, window start) summed over every gateway: shows the memory
    backend's N-fold leak (each process counts on its own)."""
    out: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: {"admitted": 0, "refused": 0})
    for e in events:
        if math.floor(e["t0"] / window_s) != math.floor(e["t1"] / window_s):
            continue
        k = (e["user"], int(math.floor(e["t0"] / window_s) * window_s))
        if e["cat"] in ("admitted", "tool_error"):
            out[k]["admitted"] += 1
        elif e["cat"] == "rate_limited":
            out[k]["refused"] += 1
    return dict(out)
