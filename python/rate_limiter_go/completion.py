"""The bridge from the Go engine's completion eventfd to asyncio (docs/engine.md, "The asynchronous path").

With the Redis backend, ``GoEngine.check()`` submits a request to a goroutine
and gets a ticket back. When the goroutine ends, Go queues the ticket, keeps
its packed result and writes to one process-wide eventfd. This module turns
that into futures: every event loop that awaits a ticket watches the eventfd
and drains the queue, so a hook awaits its result without blocking the loop.

Nothing here knows what a packed result means; that is engine_go's job.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Callable

from rate_limiter_go.engine import EngineError

__all__ = ["CompletionBridge", "completions"]


class CompletionBridge:
    """Routes finished Submit tickets from the Go eventfd to asyncio futures.

    Every event loop that awaits a ticket registers a reader on the one
    eventfd; whichever loop drains a ticket resolves its future, directly when
    the future is its own, else with call_soon_threadsafe on the future's loop.
    So several loops (in several threads) work, and a loop that closes simply
    stops draining while the others carry on.
    """

    def __init__(self, mod: Any) -> None:
        """``mod``: the loaded gopy module (``_native.load_native()``), whose
        CompletionFD, NextCompletion and TakeResult this bridge uses."""
        fd = mod.CompletionFD()
        if fd < 0:
            raise EngineError("Go engine: cannot create the completion eventfd")
        self._fd: int = fd
        # The C entry points themselves, skipping gopy's Python-level wrappers
        # (one Python call less per crossing, two crossings per completion).
        raw = getattr(mod, "_pyext", None)
        self._next: Callable[[], int] = getattr(raw, "pyext_NextCompletion", None) or mod.NextCompletion
        self._take: Callable[[int], int] = getattr(raw, "pyext_TakeResult", None) or mod.TakeResult
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[asyncio.Future[int], asyncio.AbstractEventLoop]] = {}
        self._early: dict[int, int] = {}  # finished before anyone waited for them
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        # The loop of the last wait(), so that the usual case skips the WeakSet
        # lookup (a Python-level method); weak, so a closed loop is not kept.
        self._last_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def wait(self, ticket: int) -> asyncio.Future[int]:
        """A future of the running loop that resolves to the packed result of ``ticket``."""
        loop = asyncio.get_running_loop()
        last = self._last_loop
        if last is None or last() is not loop:
            if loop not in self._loops:
                self._watch(loop)
            self._last_loop = weakref.ref(loop)
        fut: asyncio.Future[int] = loop.create_future()
        with self._lock:
            packed = self._early.pop(ticket, None)
            if packed is None:
                self._waiting[ticket] = (fut, loop)
        if packed is not None:
            fut.set_result(packed)
        return fut

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if loop in self._loops:
                return
            self._loops.add(loop)
        loop.add_reader(self._fd, self._drain, loop)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        # Go writes to the eventfd when a completion finds its queue empty, so
        # reading it first and then popping until the queue is empty sees every
        # completion (one write per drain under load, not one per completion).
        try:
            os.read(self._fd, 8)  # reset the eventfd counter
        except BlockingIOError:
            pass  # another loop read it first; still drain below
        next_completion, take = self._next, self._take
        done: list[tuple[int, int]] = []
        while True:
            ticket = next_completion()
            if not ticket:
                break
            done.append((ticket, take(ticket)))
        resolved = []
        with self._lock:
            waiting, early = self._waiting, self._early
            for ticket, packed in done:
                waiter = waiting.pop(ticket, None)
                if waiter is None:
                    early[ticket] = packed
                else:
                    resolved.append((waiter, packed))
        for (fut, fut_loop), packed in resolved:
            if fut_loop is loop:
                if not fut.done():
                    fut.set_result(packed)
            else:
                try:
                    fut_loop.call_soon_threadsafe(_resolve, fut, packed)
                except RuntimeError:
                    pass  # that loop is closed: nobody awaits the future any more


def _resolve(fut: asyncio.Future[int], packed: int) -> None:
    if not fut.done():  # cancelled, e.g. by a hook timeout
        fut.set_result(packed)


_lock = threading.Lock()
_bridge: CompletionBridge | None = None


def completions(mod: Any) -> CompletionBridge:
    """The process's one bridge, created on first use from the loaded gopy module ``mod``."""
    global _bridge
    c = _bridge
    if c is None:
        with _lock:
            if _bridge is None:
                _bridge = CompletionBridge(mod)
            c = _bridge
    return c


def _after_fork_in_child() -> None:
    # The eventfd and the queue belong to the parent's Go runtime, which the child must not use.
    global _bridge
    _bridge = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
