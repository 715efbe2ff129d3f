"""Ephemeral fan-out (room events, typing, presence): publish bytes to a channel;
each process holds ONE multiplexed subscription and adds/removes channels on it.

Unlike the event bus (durable streams, consumer groups), pub/sub delivers only to
whoever is subscribed at that moment; durable history is the publisher's job
(e.g. the chat room event log, replayed on resume). Two implementations:
Redis (SUBSCRIBE on one connection per process, reconnecting and resubscribing
after Redis restarts) and in-process (embedded mode).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import redis.asyncio as aioredis


class Subscription(Protocol):
    async def add(self, channels: Iterable[str]) -> None: ...

    async def remove(self, channels: Iterable[str]) -> None: ...

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, data) pairs for the channels currently subscribed, until closed."""
        ...

    async def close(self) -> None: ...


class PubSub(Protocol):
    async def publish(self, channel: str, data: bytes) -> None: ...

    def subscription(self) -> Subscription: ...

    async def close(self) -> None: ...


class InProcessPubSub:
    def __init__(self) -> None:
        raise NotImplementedError

    async def publish(self, channel: str, data: bytes) -> None:
        raise NotImplementedError

    def subscription(self) -> Subscription:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RedisPubSub:
    def __init__(self, client: aioredis.Redis) -> None:
        raise NotImplementedError

    async def publish(self, channel: str, data: bytes) -> None:
        raise NotImplementedError

    def subscription(self) -> Subscription:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
