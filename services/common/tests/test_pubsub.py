"""Both pub/sub implementations (in-process and real Redis) give the same guarantees:
active-when-add-returns, per-channel order, one subscription multiplexing many
channels, and a resync notice whenever messages may have been lost."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from chatmesh.common.errors import Unavailable
from chatmesh.common.pubsub import InProcessPubSub, PubSub, RedisPubSub, Subscription
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port

# Channels are server-wide (not per database): keep this run's apart from others'.
P = f"test.{uuid.uuid4().hex[:8]}."


class Received:
    """Reads a subscription's messages in the background."""

    def __init__(self, subscription: Subscription) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.resyncs = 0
        self.finished = False
        self._subscription = subscription
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self._subscription.messages():
            self.items.append(item)
        self.finished = True

    def on(self, channel: str) -> list[bytes]:
        return [data for name, data in self.items if name == channel]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; received {self.items[-5:]}"
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def make_pubsub(kind: str, redis_url: str | None) -> AsyncIterator[PubSub]:
    if kind == "memory":
        pubsub: PubSub = InProcessPubSub()
        try:
            yield pubsub
        finally:
            await pubsub.close()
        return
    assert redis_url is not None
    client = create_redis(redis_url)
    pubsub = RedisPubSub(client)
    try:
        yield pubsub
    finally:
        await pubsub.close()
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def pubsub_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "redis":
        request.getfixturevalue("redis_url")
    return kind


@pytest.fixture
def url_for(request: pytest.FixtureRequest, pubsub_kind: str) -> str | None:
    return request.getfixturevalue("redis_url") if pubsub_kind == "redis" else None


async def test_a_message_published_right_after_add_returns_is_delivered(
    pubsub_kind: str, url_for: str | None
) -> None:
    # The race a subscriber relies on: read the durable state after add() and
    # nothing published later can slip through. Many fresh channels, no sleeps.
    async with make_pubsub(pubsub_kind, url_for) as pubsub:
        subscription = pubsub.subscription()
        received = Received(subscription)
        channels = [P + f"room.{n}" for n in range(30)]
        for channel in channels:
            await subscription.add([channel])
            await pubsub.publish(channel, channel.encode())
        await received.wait_for(lambda: len(received.items) == len(channels))
        assert received.items == [(c, c.encode()) for c in channels]
        await received.stop()


async def test_one_subscription_multiplexes_channels_in_publish_order(
    pubsub_kind: str, url_for: str | None
) -> None:
    async with make_pubsub(pubsub_kind, url_for) as pubsub:
        subscription = pubsub.subscription()
        received = Received(subscription)
        await subscription.add([P + "room.a", P + "room.b"])
        for n in range(100):
            await pubsub.publish(P + "room.a" if n % 2 else P + "room.b", str(n).encode())
        await pubsub.publish(P + "room.other", b"not subscribed")
        await received.wait_for(lambda: len(received.items) == 100)
        assert received.on(P + "room.a") == [str(n).encode() for n in range(1, 100, 2)]
        assert received.on(P + "room.b") == [str(n).encode() for n in range(0, 100, 2)]
        assert received.on(P + "room.other") == []
        await received.stop()


async def test_removed_channels_stop_and_other_subscriptions_are_independent(
    pubsub_kind: str, url_for: str | None
) -> None:
    async with make_pubsub(pubsub_kind, url_for) as pubsub:
        first, second = pubsub.subscription(), pubsub.subscription()
        got_first, got_second = Received(first), Received(second)
        await first.add([P + "room.x"])
        await second.add([P + "room.x"])
        await pubsub.publish(P + "room.x", b"1")
        await got_first.wait_for(lambda: got_first.on(P + "room.x") == [b"1"])
        await got_second.wait_for(lambda: got_second.on(P + "room.x") == [b"1"])

        await first.remove([P + "room.x"])
        await pubsub.publish(P + "room.x", b"2")
        await got_second.wait_for(lambda: got_second.on(P + "room.x") == [b"1", b"2"])
        # Anything for the removed channel would have arrived before the later one.
        await first.add([P + "room.marker"])
        await pubsub.publish(P + "room.marker", b"m")
        await got_first.wait_for(lambda: got_first.on(P + "room.marker") == [b"m"])
        assert got_first.on(P + "room.x") == [b"1"]

        # Re-adding a removed channel works again.
        await first.add([P + "room.x"])
        await pubsub.publish(P + "room.x", b"3")
        await got_first.wait_for(lambda: got_first.on(P + "room.x") == [b"1", b"3"])
        await got_first.stop()
        await got_second.stop()


async def test_close_ends_the_message_iterator(pubsub_kind: str, url_for: str | None) -> None:
    async with make_pubsub(pubsub_kind, url_for) as pubsub:
        subscription = pubsub.subscription()
        received = Received(subscription)
        await subscription.add([P + "room.z"])
        await subscription.close()
        await received.wait_for(lambda: received.finished)
        await pubsub.publish(P + "room.z", b"after close")
        await asyncio.sleep(0.05)
        assert received.items == []


async def test_in_process_overflow_drops_and_asks_for_a_resync() -> None:
    resyncs: list[float] = []
    pubsub = InProcessPubSub(buffer_size=5)
    subscription = pubsub.subscription(on_resync=lambda: resyncs.append(time.monotonic()))
    await subscription.add([P + "room.slow"])
    for n in range(8):  # nobody reads: 5 fit, 3 are dropped
        await pubsub.publish(P + "room.slow", str(n).encode())
    assert resyncs == []
    received = Received(subscription)
    await received.wait_for(lambda: len(received.items) == 5)
    # The next message that fits again comes with the notice to resync first.
    await pubsub.publish(P + "room.slow", b"8")
    await received.wait_for(lambda: len(received.items) == 6)
    assert [d for _, d in received.items] == [b"0", b"1", b"2", b"3", b"4", b"8"]
    assert len(resyncs) == 1
    await received.stop()
    await pubsub.close()


@pytest.mark.redis
async def test_redis_connection_loss_resubscribes_and_asks_for_a_resync(redis_url: str) -> None:
    # Named, so that only this test's connection is cut (others may share the server).
    name = f"test-pubsub-{uuid.uuid4().hex[:8]}"
    client = aioredis.from_url(redis_url, client_name=name)
    admin = aioredis.from_url(redis_url)
    pubsub = RedisPubSub(client)
    resyncs: list[float] = []
    subscription = pubsub.subscription(on_resync=lambda: resyncs.append(time.monotonic()))
    received = Received(subscription)
    try:
        await subscription.add([P + "room.r1", P + "room.r2"])
        await pubsub.publish(P + "room.r1", b"before")
        await received.wait_for(lambda: received.on(P + "room.r1") == [b"before"])

        # What a Redis restart or a network cut looks like to the subscriber.
        victims = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
        assert len(victims) == 1
        assert await admin.client_kill_filter(_id=victims[0]["id"]) == 1

        async def resubscribed() -> bool:
            return len(resyncs) >= 1

        deadline = time.monotonic() + 10
        while not await resubscribed():
            assert time.monotonic() < deadline, "no resync after the connection was killed"
            await asyncio.sleep(0.02)
        assert len(resyncs) == 1
        # Once the resync notice came, both channels are live again.
        await pubsub.publish(P + "room.r1", b"after")
        await pubsub.publish(P + "room.r2", b"after")
        await received.wait_for(
            lambda: received.on(P + "room.r1") == [b"before", b"after"]
            and received.on(P + "room.r2") == [b"after"]
        )
    finally:
        await received.stop()
        await pubsub.close()
        await client.aclose()
        await admin.aclose()


async def test_redis_down_fails_fast_with_unavailable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    pubsub = RedisPubSub(client, confirm_timeout=0.5)
    try:
        with pytest.raises(Unavailable):
            await pubsub.publish(P + "room.q", b"x")
        subscription = pubsub.subscription()
        with pytest.raises(Unavailable):
            await subscription.add([P + "room.q"])
    finally:
        await pubsub.close()
        await client.aclose()
