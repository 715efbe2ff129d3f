"""Small asyncio helpers the background loops share."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, within: float | None) -> None:
    """Return when one of `events` is set or `within` seconds have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
