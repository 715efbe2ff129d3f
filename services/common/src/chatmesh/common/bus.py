"""The event bus between services: protobuf `Event` envelopes on named streams
(`events.<service>`), consumer groups, ack after handling.

Two implementations with the same semantics: Redis Streams (XADD / XREADGROUP /
XACK, pending entries reclaimed with XAUTOCLAIM after `claim_idle` seconds) and
an in-process one for embedded mode. Delivery is at-least-once: consumers
dedupe on `Event.id`. A new consumer group starts at the oldest retained event,
so a consumer deployed after its producer still sees what was published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError, Message
from redis.exceptions import RedisError, ResponseError

from chatmesh.common.aio import wait_any
from chatmesh.common.logging import get_logger
from chatmesh.events.v1 import envelope_pb2

Handler = Callable[[envelope_pb2.Event], Awaitable[None]]
M = TypeVar("M", bound=Message)

log = get_logger("chatmesh.bus")

# The stream entry field that holds the serialized Event.
EVENT_FIELD = b"event"


def stream_name(source: str) -> str:
    """The stream a service's events go to."""
    return f"events.{source}"


def make_event(source: str, payload: Message) -> envelope_pb2.Event:
    """Wrap `payload` in an envelope with a fresh id and the current time."""
    event = envelope_pb2.Event(id=str(uuid.uuid4()), source=source)
    event.occur_time.GetCurrentTime()
    event.payload.Pack(payload)
    return event


def unpack(event: envelope_pb2.Event, message_type: type[M]) -> M | None:
    """The payload as `message_type`, or None if the event is of another type."""
    message = message_type()
    # Unpack checks the type URL and returns False on a mismatch.
    return message if event.payload.Unpack(message) else None


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


async def _deliver(handler: Handler, event: envelope_pb2.Event, **context: Any) -> bool:
    """Run `handler`; a failure is logged and reported, never raised into the loop."""
    try:
        await handler(event)
    except Exception as exc:
        log.warning("event_handler_failed", event_id=event.id, error=repr(exc), **context)
        return False
    return True


@dataclass
class _Stream:
    entries: deque[envelope_pb2.Event]
    # Absolute offset of the next event; entry i is at entries[i - (total - len)].
    total: int = 0
    # Replaced on every publish; waiting consumers watch the current one.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def get(self, offset: int) -> envelope_pb2.Event:
        return self.entries[offset - (self.total - len(self.entries))]

    @property
    def first(self) -> int:
        return self.total - len(self.entries)


@dataclass
class _Group:
    offset: int = 0
    # (due time, event) of events whose handler failed, oldest first.
    retries: deque[tuple[float, envelope_pb2.Event]] = field(default_factory=deque)


class InProcessEventBus:
    """One process's bus: per stream a bounded append log, per group an offset.

    Consumers of one group take events from the shared offset, so each event goes
    to one of them; an event whose handler raised is retried after `redeliver_delay`.
    """

    def __init__(self, *, redeliver_delay: float = 1.0, maxlen: int = 100_000) -> None:
        self._redeliver_delay = redeliver_delay
        self._maxlen = maxlen
        self._streams: dict[str, _Stream] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._closed = asyncio.Event()

    def _stream(self, name: str) -> _Stream:
        if name not in self._streams:
            self._streams[name] = _Stream(entries=deque(maxlen=self._maxlen))
        return self._streams[name]

    async def publish(self, stream: str, event: envelope_pb2.Event) -> None:
        stream_log = self._stream(stream)
        stream_log.entries.append(event)
        stream_log.total += 1
        stream_log.changed.set()
        stream_log.changed = asyncio.Event()

    def _take(self, stream_log: _Stream, group: _Group) -> envelope_pb2.Event | float | None:
        """The next event for `group`, else seconds until a retry is due (or None)."""
        if group.retries:
            due, event = group.retries[0]
            if due <= time.monotonic():
                group.retries.popleft()
                return event
        # Events trimmed by `maxlen` before the group read them are gone, as in Redis.
        group.offset = max(group.offset, stream_log.first)
        if group.offset < stream_log.total:
            event = stream_log.get(group.offset)
            group.offset += 1
            return event
        if group.retries:
            return max(0.0, group.retries[0][0] - time.monotonic())
        return None

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        stop: asyncio.Event,
    ) -> None:
        stream_log = self._stream(stream)
        state = self._groups.setdefault((stream, group), _Group())
        while not (stop.is_set() or self._closed.is_set()):
            item = self._take(stream_log, state)
            if isinstance(item, envelope_pb2.Event):
                try:
                    handled = await _deliver(handler, item, stream=stream, group=group)
                except asyncio.CancelledError:
                    # Not acked: whoever consumes this group next gets it first.
                    state.retries.appendleft((0.0, item))
                    raise
                if not handled:
                    due = time.monotonic() + self._redeliver_delay
                    state.retries.append((due, item))
                # Let other tasks run between events of a long backlog.
                await asyncio.sleep(0)
                continue
            await wait_any(stop, self._closed, stream_log.changed, within=item)

    async def close(self) -> None:
        """Stop every consumer; events not yet delivered are dropped with the process."""
        self._closed.set()


class RedisEventBus:
    """Redis Streams. The client belongs to the caller: `close` stops consumers only.

    `block_ms` must stay below the client's socket timeout (5 s with `create_redis`).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        claim_idle: float = 30.0,
        block_ms: int = 1000,
        maxlen: int = 100_000,
        batch_size: int = 50,
        max_backoff: float = 10.0,
    ) -> None:
        self._client = client
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._block_ms = block_ms
        self._maxlen = maxlen
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._closed = asyncio.Event()

    async def publish(self, stream: str, event: envelope_pb2.Event) -> None:
        # Approximate MAXLEN (~) lets Redis trim whole nodes: cheap and bounded.
        await self._client.xadd(
            stream,
            {EVENT_FIELD: event.SerializeToString()},
            maxlen=self._maxlen,
            approximate=True,
        )

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        stop: asyncio.Event,
    ) -> None:
        backoff = 0.1
        next_claim = 0.0
        group_ready = False
        while not (stop.is_set() or self._closed.is_set()):
            try:
                if not group_ready:
                    await self._create_group(stream, group)
                    group_ready = True
                if time.monotonic() >= next_claim:
                    # Also how this consumer retries its own failed events.
                    await self._reclaim(stream, group, consumer, handler)
                    next_claim = time.monotonic() + self._claim_idle_ms / 2000
                await self._read(stream, group, consumer, handler)
                backoff = 0.1
            except ResponseError as exc:
                # NOGROUP: the stream or group vanished (Redis restarted empty, or
                # was flushed); recreate it on the next turn.
                group_ready = False
                log.warning("event_bus_error", stream=stream, group=group, error=repr(exc))
                await wait_any(stop, self._closed, within=backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except (RedisError, OSError) as exc:
                log.warning("event_bus_unavailable", stream=stream, group=group, error=repr(exc))
                await wait_any(stop, self._closed, within=backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def close(self) -> None:
        """Stop every consumer of this bus (within `block_ms`); the client stays open."""
        self._closed.set()

    async def _create_group(self, stream: str, group: str) -> None:
        try:
            await self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(self, stream: str, group: str, consumer: str, handler: Handler) -> None:
        response: Any = await self._client.xreadgroup(
            group, consumer, {stream: ">"}, count=self._batch_size, block=self._block_ms
        )
        for entries in _entry_lists(response):
            await self._handle(stream, group, entries, handler)

    async def _reclaim(self, stream: str, group: str, consumer: str, handler: Handler) -> None:
        """Take over entries another consumer (or a failed handler) left pending."""
        start: bytes | str = "0-0"
        while True:
            reply: Any = await self._client.xautoclaim(
                stream,
                group,
                consumer,
                min_idle_time=self._claim_idle_ms,
                start_id=start,
                count=self._batch_size,
            )
            start, entries = reply[0], reply[1]
            await self._handle(stream, group, entries, handler)
            if start in (b"0-0", "0-0") or self._closed.is_set():
                return

    async def _handle(
        self,
        stream: str,
        group: str,
        entries: list[tuple[bytes, dict[bytes, bytes] | None]],
        handler: Handler,
    ) -> None:
        for entry_id, fields in entries:
            event = _decode(fields)
            if event is None:
                # Nothing can ever handle it: ack so it does not come back forever.
                log.error("event_undecodable", stream=stream, entry_id=entry_id)
                await self._client.xack(stream, group, entry_id)
                continue
            if await _deliver(handler, event, stream=stream, group=group):
                await self._client.xack(stream, group, entry_id)


def _entry_lists(response: Any) -> list[Any]:
    """The entry lists of an XREADGROUP reply: RESP2 `[[stream, entries]]` or
    RESP3 `{stream: [entries]}` (depends on the client's protocol)."""
    if not response:
        return []
    if isinstance(response, dict):
        return [entries for value in response.values() for entries in value]
    return [entries for _stream, entries in response]


def _decode(fields: dict[bytes, bytes] | None) -> envelope_pb2.Event | None:
    if not fields or EVENT_FIELD not in fields:
        return None
    try:
        return envelope_pb2.Event.FromString(fields[EVENT_FIELD])
    except DecodeError:
        return None
