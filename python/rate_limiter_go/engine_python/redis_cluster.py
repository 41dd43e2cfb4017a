"""Redis Cluster evaluation for the Python engine (docs/semantics.md §11.1).

A request's keys are grouped by hash slot; each group runs the §9 script on
its primary with the cluster clock's ``now_us``; groups run concurrently, and
when some group refuses, the groups that admitted run the give-back script.
The result is merged into one §9-shaped reply, so the engine above does not
know whether it talked to one Redis or to a Cluster.

Nothing here is sent twice after it may have run: the client has no retries
(``Retry(NoBackoff(), 0)``); redis-py follows MOVED and ASK, replies that
prove the command did not run, and NOSCRIPT is answered by loading the script
and calling it once more.
"""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import NoScriptError

__all__ = ["HASH_SLOTS", "ClusterClock", "GroupRunner", "key_slot", "slot_groups"]

#: Hash slots of a Redis Cluster.
HASH_SLOTS = 16384


def key_slot(key: str) -> int:
    """The Cluster hash slot of ``key``: CRC16 (XMODEM) of its hash tag, or of the key without one, mod 16384."""
    data = key.encode("utf-8", "surrogatepass")
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % HASH_SLOTS


def slot_groups(keys: Sequence[str]) -> list[list[int]]:
    """Indices of ``keys`` grouped by hash slot, groups in the order of their first key (§11.1)."""
    groups: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(index)
    return list(groups.values())


#: A kept cluster clock sample's round trip counts as grown by 1/AGING_PER_RTT of its age (1 ms per
#: second), so a newer sample replaces it once as good, allowing for drift (§11.1; Go: agingPerRTT).
AGING_PER_RTT = 1000


class ClusterClock:
    """The cluster clock of §11.1: Redis ``TIME`` of one primary, carried on the monotonic clock.

    ``sample`` awaits that primary's ``TIME`` in µs. A sample is taken when
    the last one is older than ``refresh_s``; requests meanwhile use the last
    offset, and only a caller with no offset at all waits for a sample. A new
    sample replaces the one in use only if its round trip is no longer than
    that one's, aged by 1 ms per second (AGING_PER_RTT): a round trip stretched
    by a busy event loop would otherwise shift the clock by up to half of it.
    The estimate never goes backwards. ``monotonic_ns`` is injectable for tests.
    """

    __slots__ = (
        "_sample", "_refresh_ns", "_monotonic_ns", "_offset_us", "_sampled_at_ns", "_last_us", "_refresh",
        "_rtt_ns", "_anchor_ns",
    )  # fmt: skip

    def __init__(
        self,
        sample: Callable[[], Awaitable[int]],
        refresh_s: float = 1.0,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._sample = sample
        self._refresh_ns = int(refresh_s * 1e9)
        self._monotonic_ns = monotonic_ns
        self._offset_us: int | None = None  # server µs minus local monotonic µs
        self._sampled_at_ns = 0
        self._last_us = 0
        self._refresh: asyncio.Task[None] | None = None
        self._rtt_ns = 0  # round trip of the sample in use
        self._anchor_ns = 0  # when the sample in use was taken

    async def _take_sample(self) -> None:
        before = self._monotonic_ns()
        server_us = await self._sample()
        after = self._monotonic_ns()
        self._sampled_at_ns = after
        rtt = after - before
        if self._offset_us is not None and rtt > self._rtt_ns + (after - self._anchor_ns) // AGING_PER_RTT:
            return  # the sample in use is the better one
        # The server read its clock somewhere within the round trip: assume the middle,
        # which is wrong by at most half the round trip.
        self._offset_us = server_us - (before + after) // 2000
        self._rtt_ns, self._anchor_ns = rtt, after

    async def now_us(self) -> int:
        """The cluster clock now, in Unix µs."""
        if self._offset_us is None:
            if self._refresh is None:
                self._refresh = asyncio.ensure_future(self._take_sample())
            refresh = self._refresh
            try:
                await asyncio.shield(refresh)
            finally:
                if refresh.done() and self._refresh is refresh:
                    self._refresh = None
        elif self._monotonic_ns() - self._sampled_at_ns >= self._refresh_ns and self._refresh is None:
            self._refresh = asyncio.ensure_future(self._take_sample())
            self._refresh.add_done_callback(self._refreshed)
        assert self._offset_us is not None  # nosec B101 # set by the sample awaited above
        now = max(self._monotonic_ns() // 1000 + self._offset_us, self._last_us)
        self._last_us = now
        return now

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        # A failed background sample keeps the old offset; the next request tries again.
        if not task.cancelled():
            task.exception()
        if self._refresh is task:
            self._refresh = None


class GroupRunner:
    """Runs one request's §9 script over its slot groups, with give-back (§11.1).

    ``call(script, keys, args)`` runs a script (by text; the caller owns the
    SHA cache and NOSCRIPT handling) on the primary of ``keys``' slot and
    returns its reply. ``give_backs_lost`` counts give-back calls that failed:
    each one holds a unit until its state recovers by itself (§11.1, Bounds).
    """

    __slots__ = ("_call", "give_backs_lost")

    def __init__(self, call: Callable[[str, Sequence[str], list[str]], Awaitable[list]]) -> None:
        self._call = call
        self.give_backs_lost = 0

    async def run(
        self, check: str, give_back: str, keys: Sequence[str], pairs: Sequence[tuple[str, str]], now_us: int
    ) -> list:
        """The merged §9 reply of ``keys`` (ARGV pairs ``pairs``) at ``now_us``; raises what a group call raised."""
        groups = slot_groups(keys)
        now = str(now_us)
        if len(groups) == 1:
            return await self._call(check, keys, [now, *[a for pair in pairs for a in pair]])
        calls = []
        for group in groups:
            args = [now]
            for i in group:
                args.extend(pairs[i])
            calls.append((group, [keys[i] for i in group], args))
        replies = await asyncio.gather(*(self._call(check, k, a) for _, k, a in calls), return_exceptions=True)
        failed = next((r for r in replies if isinstance(r, BaseException)), None)
        admitted_calls = [c for c, r in zip(calls, replies) if not isinstance(r, BaseException) and r[0] == 1]
        if failed is not None or len(admitted_calls) < len(calls):
            await self._give_back(give_back, admitted_calls)
        if failed is not None:
            raise failed
        merged: list = [1 if len(admitted_calls) == len(calls) else 0, now_us]
        per_key: list[list | None] = [None] * len(keys)
        for (group, _, _), reply in zip(calls, replies):
            assert not isinstance(reply, BaseException)  # nosec B101 # failures were raised above
            for j, i in enumerate(group):
                per_key[i] = reply[2 + 4 * j : 6 + 4 * j]
        for quad in per_key:
            merged.extend(quad or ())
        return merged

    async def _give_back(self, give_back: str, admitted_calls: list[tuple[list[int], list[str], list[str]]]) -> None:
        if not admitted_calls:
            return
        results = await asyncio.gather(*(self._call(give_back, k, a) for _, k, a in admitted_calls), return_exceptions=True)
        self.give_backs_lost += sum(1 for r in results if isinstance(r, BaseException))


async def call_script(client, cache: dict[str, str], text: str, keys: Sequence[str], args: list[str]) -> list:
    """EVALSHA ``text`` on the primary of ``keys``' slot through a redis-py cluster client.

    ``cache`` maps script text to its SHA once loaded. After NOSCRIPT (a
    failover to a replica, or SCRIPT FLUSH: the script cache is not
    replicated) the script is loaded again on every primary and called once more.
    """
    sha = cache.get(text)
    if sha is None:
        sha = await _load(client, cache, text)
    try:
        return await client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        sha = await _load(client, cache, text)
        return await client.evalsha(sha, len(keys), *keys, *args)


async def _load(client, cache: dict[str, str], text: str) -> str:
    sha = await client.script_load(text)
    if isinstance(sha, bytes):
        sha = sha.decode("ascii")
    cache[text] = sha
    return sha
