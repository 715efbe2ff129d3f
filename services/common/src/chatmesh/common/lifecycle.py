"""What every long-running process owns besides its server: background loops
that stop together, closers that run in reverse order, and a settled heap.

Kept free of gRPC imports, so a process without a gRPC server (the mail
worker) can use it without paying for the gRPC stack.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable

from chatmesh.common.logging import get_logger

log = get_logger(__name__)


class Background:
    """Background loops get `stop_event`; `stop()` sets it, waits for every
    loop, then runs the closers in reverse order of registration."""

    def __init__(self) -> None:
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def spawn(self, loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run `loop(stop_event)` in the background until `stop()`."""

        async def guarded() -> None:
            await loop(self.stop_event)

        self._tasks.append(asyncio.create_task(guarded()))

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                log.exception("error while closing")


def settle_heap() -> None:
    """Collect once, then move every object that survived start-up (modules,
    classes, compiled statements) into the permanent generation: later full
    collections scan only what requests allocate, so their pauses (the worst
    of p99 latency) stay short."""
    gc.collect()
    gc.freeze()
