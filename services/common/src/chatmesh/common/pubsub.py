"""Ephemeral fan-out (room events, typing, presence): publish bytes to a channel;
each process holds ONE multiplexed subscription and adds/removes channels on it.

Unlike the event bus (durable streams, consumer groups), pub/sub delivers only to
whoever is subscribed at that moment; durable history is the publisher's job
(e.g. the chat room event log, replayed on resume). Two implementations:
Redis (SUBSCRIBE on one connection per process, reconnecting and resubscribing
after Redis restarts) and in-process (embedded mode).

Guarantees a consumer can build on:

- when `Subscription.add` returns, the subscription is active: every message
  published to those channels afterwards is delivered (Redis: the SUBSCRIBE was
  confirmed by the server, not merely sent);
- messages of one channel arrive in publish order;
- whenever messages may have been lost (the connection to Redis was
  re-established, or the local buffer overflowed), `on_resync` is called once
  the subscription is active again, so the consumer can re-read its durable
  source for whatever it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub as RedisPubSubConnection
from redis.exceptions import RedisError

from chatmesh.common.errors import Unavailable
from chatmesh.common.logging import get_logger

log = get_logger("chatmesh.pubsub")

# Called (synchronously, from the subscription's task) when messages may have been lost.
ResyncCallback = Callable[[], None]

# Messages buffered per subscription before the consumer reads them; beyond this
# they are dropped and the consumer is told to resync.
DEFAULT_BUFFER_SIZE = 100_000


class Subscription(Protocol):
    async def add(self, channels: Iterable[str]) -> None: ...

    async def remove(self, channels: Iterable[str]) -> None: ...

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, data) pairs for the channels currently subscribed, until closed."""
        ...

    async def close(self) -> None: ...


class PubSub(Protocol):
    async def publish(self, channel: str, data: bytes) -> None: ...

    def subscription(self, *, on_resync: ResyncCallback | None = None) -> Subscription: ...

    async def close(self) -> None: ...


_CLOSED = None


class _Buffer:
    """The queue between the receiving side and `messages()`; bounded, lossy with notice."""

    def __init__(self, size: int, on_resync: ResyncCallback | None) -> None:
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._size = size
        self._on_resync = on_resync
        self._overflowed = False
        self.closed = False

    def put(self, channel: str, data: bytes) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._size:
            # Dropping is pub/sub semantics for a consumer that cannot keep up;
            # the notice lets it recover what it lost from its durable source.
            if not self._overflowed:
                self._overflowed = True
                log.warning("pubsub_buffer_overflow", size=self._size)
            return
        if self._overflowed:
            self._overflowed = False
            notify(self._on_resync)
        self._queue.put_nowait((channel, data))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(_CLOSED)

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            item = await self._queue.get()
            if item is None:
                # Leave the marker for any other reader of a closed subscription.
                self._queue.put_nowait(_CLOSED)
                return
            yield item


def notify(callback: ResyncCallback | None) -> None:
    if callback is None:
        return
    try:
        callback()
    except Exception:
        log.exception("pubsub_resync_callback_failed")


class InProcessPubSub:
    """Embedded mode: channels are a dict of subscriber sets in this process."""

    def __init__(self, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self._buffer_size = buffer_size
        self._channels: dict[str, set[_LocalSubscription]] = {}
        self._subscriptions: set[_LocalSubscription] = set()

    async def publish(self, channel: str, data: bytes) -> None:
        for subscription in tuple(self._channels.get(channel, ())):
            subscription.deliver(channel, data)

    def subscription(self, *, on_resync: ResyncCallback | None = None) -> Subscription:
        subscription = _LocalSubscription(self, _Buffer(self._buffer_size, on_resync))
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in tuple(self._subscriptions):
            await subscription.close()

    def _add(self, subscription: _LocalSubscription, channels: Iterable[str]) -> None:
        for channel in channels:
            self._channels.setdefault(channel, set()).add(subscription)

    def _remove(self, subscription: _LocalSubscription, channels: Iterable[str]) -> None:
        for channel in channels:
            members = self._channels.get(channel)
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self._channels[channel]

    def _forget(self, subscription: _LocalSubscription) -> None:
        self._subscriptions.discard(subscription)


class _LocalSubscription:
    def __init__(self, hub: InProcessPubSub, buffer: _Buffer) -> None:
        self._hub = hub
        self._buffer = buffer
        self._channels: set[str] = set()

    def deliver(self, channel: str, data: bytes) -> None:
        self._buffer.put(channel, data)

    async def add(self, channels: Iterable[str]) -> None:
        if self._buffer.closed:
            raise RuntimeError("subscription is closed")
        new = set(channels) - self._channels
        self._channels |= new
        self._hub._add(self, new)

    async def remove(self, channels: Iterable[str]) -> None:
        gone = set(channels) & self._channels
        self._channels -= gone
        self._hub._remove(self, gone)

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._buffer.messages()

    async def close(self) -> None:
        self._hub._remove(self, self._channels)
        self._channels.clear()
        self._hub._forget(self)
        self._buffer.close()


class RedisPubSub:
    """Redis PUBLISH / SUBSCRIBE. The client belongs to the caller; `close` closes
    the subscriptions made here (each holds one dedicated connection)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        confirm_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._client = client
        self._buffer_size = buffer_size
        self._confirm_timeout = confirm_timeout
        self._max_backoff = max_backoff
        self._subscriptions: set[_RedisSubscription] = set()

    async def publish(self, channel: str, data: bytes) -> None:
        try:
            await self._client.publish(channel, data)
        except (RedisError, OSError) as exc:
            raise Unavailable("pub/sub unavailable", code="pubsub_unavailable") from exc

    def subscription(self, *, on_resync: ResyncCallback | None = None) -> Subscription:
        subscription = _RedisSubscription(
            self._client,
            _Buffer(self._buffer_size, on_resync),
            on_resync=on_resync,
            confirm_timeout=self._confirm_timeout,
            max_backoff=self._max_backoff,
            forget=self._subscriptions.discard,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        for subscription in tuple(self._subscriptions):
            await subscription.close()


class _RedisSubscription:
    """One Redis connection in subscribe mode, owned by a reader task.

    `add` sends SUBSCRIBE and waits for the server's confirmation, which the
    reader task receives. If the connection breaks, the reader opens a new one,
    subscribes every wanted channel again and calls `on_resync` once the server
    confirmed. redis-py may also reconnect on its own inside a read (its retry
    policy); that shows up as a confirmation for a channel already confirmed,
    and is reported the same way.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        buffer: _Buffer,
        *,
        on_resync: ResyncCallback | None,
        confirm_timeout: float,
        max_backoff: float,
        forget: Callable[[_RedisSubscription], None],
    ) -> None:
        self._client = client
        self._buffer = buffer
        self._on_resync = on_resync
        self._confirm_timeout = confirm_timeout
        self._max_backoff = max_backoff
        self._forget = forget
        # Channels the consumer wants, and those the server confirmed.
        self._wanted: set[str] = set()
        self._confirmed: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._connection: RedisPubSubConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._has_channels = asyncio.Event()
        # Set after a reconnect: the next confirmation triggers on_resync.
        self._resync_on_confirm = False
        self._closed = False

    async def add(self, channels: Iterable[str]) -> None:
        if self._closed:
            raise RuntimeError("subscription is closed")
        requested = set(channels)
        async with self._lock:
            new = sorted(requested - self._wanted)
            self._wanted.update(new)
            loop = asyncio.get_running_loop()
            waits = [
                self._waiter(channel, loop)
                for channel in requested
                if channel not in self._confirmed
            ]
            if new:
                self._has_channels.set()
                if self._connection is not None:
                    try:
                        await self._connection.subscribe(*new)
                    except (RedisError, OSError) as exc:
                        # A fresh connection subscribes everything wanted; the
                        # waiters resolve when the server confirms.
                        log.warning("pubsub_subscribe_failed", error=repr(exc))
                        await self._restart()
            self._ensure_reader()
        if not waits:
            return
        try:
            async with asyncio.timeout(self._confirm_timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            raise Unavailable(
                "pub/sub subscription not confirmed", code="pubsub_unavailable"
            ) from None

    async def remove(self, channels: Iterable[str]) -> None:
        async with self._lock:
            gone = sorted(set(channels) & self._wanted)
            if not gone:
                return
            self._wanted.difference_update(gone)
            self._confirmed.difference_update(gone)
            if self._connection is not None:
                try:
                    await self._connection.unsubscribe(*gone)
                except (RedisError, OSError) as exc:
                    # A new connection subscribes only what is still wanted.
                    log.warning("pubsub_unsubscribe_failed", error=repr(exc))
                    await self._restart()

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._buffer.messages()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._forget(self)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._drop_connection()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiters.clear()
        self._buffer.close()

    # --- internals -------------------------------------------------------------------

    def _waiter(self, channel: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(channel, []).append(future)
        return future

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name="pubsub-reader")

    async def _restart(self) -> None:
        """Throw the connection away and let a new reader start over (lock held)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._drop_connection()
        self._confirmed.clear()
        self._resync_on_confirm = True
        self._ensure_reader()

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.aclose()  # type: ignore[no-untyped-call]

    async def _connect(self) -> None:
        async with self._lock:
            connection = self._client.pubsub()
            try:
                if self._wanted:
                    await connection.subscribe(*sorted(self._wanted))
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.aclose()  # type: ignore[no-untyped-call]
                raise
            self._connection = connection

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                if self._connection is None:
                    if not self._wanted:
                        self._has_channels.clear()
                        await self._has_channels.wait()
                        continue
                    await self._connect()
                assert self._connection is not None
                message = await self._connection.get_message(timeout=None)
                backoff = 0.05
                if message is not None:
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("pubsub_connection_lost", error=repr(exc), retry_in=backoff)
                await self._drop_connection()
                self._confirmed.clear()
                self._resync_on_confirm = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel"))
        if kind == "message":
            data = message.get("data")
            if channel in self._wanted and isinstance(data, bytes):
                self._buffer.put(channel, data)
        elif kind == "subscribe":
            self._confirm(channel)

    def _confirm(self, channel: str) -> None:
        if channel not in self._wanted:
            return  # removed meanwhile; its unsubscribe is on the way
        resubscribed = channel in self._confirmed and channel not in self._waiters
        if resubscribed:
            # redis-py reconnected inside a read and subscribed every channel in
            # one command: the others' confirmations follow; report once.
            self._confirmed = {channel}
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
        if resubscribed or self._resync_on_confirm:
            # A (re)connection subscribes every channel in one command, so the
            # first confirmation means the server is listening on all of them.
            self._resync_on_confirm = False
            log.info("pubsub_resubscribed")
            notify(self._on_resync)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value) if value is not None else ""
