"""The event bus between services: protobuf `Event` envelopes on named streams
(`events.<service>`), consumer groups, ack after handling.

Two implementations with the same semantics: Redis Streams (XADD / XREADGROUP /
XACK, pending entries reclaimed with XAUTOCLAIM after `claim_idle` seconds) and
an in-process one for embedded mode. Delivery is at-least-once: consumers
dedupe on `Event.id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from google.protobuf.message import Message

from chatmesh.events.v1 import envelope_pb2

Handler = Callable[[envelope_pb2.Event], Awaitable[None]]
M = TypeVar("M", bound=Message)


def stream_name(source: str) -> str:
    """The stream a service's events go to."""
    return f"events.{source}"


def make_event(source: str, payload: Message) -> envelope_pb2.Event:
    """Wrap `payload` in an envelope with a fresh id and the current time."""
    raise NotImplementedError


def unpack(event: envelope_pb2.Event, message_type: type[M]) -> M | None:
    """The payload as `message_type`, or None if the event is of another type."""
    raise NotImplementedError


class EventBus(Protocol):
    async def publish(self, stream: str, event: envelope_pb2.Event) -> None: ...

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        stop: asyncio.Event,
    ) -> None:
        """Deliver each event of `stream` to one consumer of `group` until `stop` is set.

        An event is acked only after `handler` returns; if it raises, the event is
        redelivered later (Redis: reclaimed from the pending list).
        """
        ...

    async def close(self) -> None: ...


class InProcessEventBus:
    def __init__(self) -> None:
        raise NotImplementedError

    async def publish(self, stream: str, event: envelope_pb2.Event) -> None:
        raise NotImplementedError

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        stop: asyncio.Event,
    ) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RedisEventBus:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        claim_idle: float = 30.0,
        block_ms: int = 1000,
        maxlen: int = 100_000,
    ) -> None:
        raise NotImplementedError

    async def publish(self, stream: str, event: envelope_pb2.Event) -> None:
        raise NotImplementedError

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        stop: asyncio.Event,
    ) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
