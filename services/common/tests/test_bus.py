"""Both event buses (in-process and real Redis Streams) give the same guarantees."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.common.bus import (
    EventBus,
    Handler,
    InProcessEventBus,
    RedisEventBus,
    make_event,
    stream_name,
    unpack,
)
from chatmesh.common.redis import create_redis
from chatmesh.common.testing import free_port
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2

STREAM = stream_name("auth")
CLAIM_IDLE = 0.3


def registered(user_id: str) -> envelope_pb2.Event:
    return make_event("auth", auth_events_pb2.UserRegistered(user_id=user_id))


class Collector:
    """A handler that records what it got (optionally failing some first deliveries)."""

    def __init__(self, fail_first: set[str] | None = None) -> None:
        self.events: list[envelope_pb2.Event] = []
        self.attempts: list[str] = []
        self._fail_first = set(fail_first or ())

    async def __call__(self, event: envelope_pb2.Event) -> None:
        self.attempts.append(event.id)
        if event.id in self._fail_first:
            self._fail_first.discard(event.id)
            raise RuntimeError("handler failed")
        self.events.append(event)

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.events]

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"got {len(self.events)} of {count} events"
            await asyncio.sleep(0.01)


@asynccontextmanager
async def consuming(
    bus: EventBus, group: str, consumer: str, handler: Handler
) -> AsyncIterator[None]:
    """Run a consumer for the block; it must return promptly once stop is set."""
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume(STREAM, group, consumer, handler, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        memory = InProcessEventBus(redeliver_delay=CLAIM_IDLE)
        yield memory
        await memory.close()
        return
    client = create_redis(request.getfixturevalue("redis_url"))
    redis_bus = RedisEventBus(client, claim_idle=CLAIM_IDLE, block_ms=100)
    yield redis_bus
    await redis_bus.close()
    await client.aclose()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = create_redis(redis_url)
    yield client
    await client.aclose()


def test_make_event_wraps_the_payload_and_unpack_checks_its_type() -> None:
    payload = auth_events_pb2.UserRegistered(user_id="u1", email="a@example.com")
    first, second = make_event("auth", payload), make_event("auth", payload)
    assert first.id != second.id
    assert first.source == "auth"
    assert abs(first.occur_time.ToSeconds() - Timestamp(seconds=int(time.time())).seconds) < 5
    assert unpack(first, auth_events_pb2.UserRegistered) == payload
    assert unpack(first, auth_events_pb2.PasswordResetRequested) is None


async def test_every_group_gets_every_event_once_in_order(bus: EventBus) -> None:
    # Published before any consumer exists: a group created later still gets them.
    early = [registered(f"early-{i}") for i in range(3)]
    for event in early:
        await bus.publish(STREAM, event)
    mail, search = Collector(), Collector()
    async with consuming(bus, "mail", "mail-1", mail), consuming(bus, "search", "s-1", search):
        late = [registered(f"late-{i}") for i in range(2)]
        for event in late:
            await bus.publish(STREAM, event)
        await mail.wait_for(5)
        await search.wait_for(5)
        # Give a wrong redelivery time to show up.
        await asyncio.sleep(CLAIM_IDLE * 2)
    expected = [event.id for event in early + late]
    assert mail.ids == expected
    assert search.ids == expected
    assert unpack(mail.events[0], auth_events_pb2.UserRegistered) == (
        auth_events_pb2.UserRegistered(user_id="early-0")
    )


async def test_consumers_of_one_group_share_the_events(bus: EventBus) -> None:
    first, second = Collector(), Collector()
    events = [registered(f"u{i}") for i in range(30)]
    async with consuming(bus, "mail", "mail-1", first), consuming(bus, "mail", "mail-2", second):
        for event in events:
            await bus.publish(STREAM, event)
        deadline = time.monotonic() + 5
        while len(first.events) + len(second.events) < 30:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(CLAIM_IDLE * 2)
    delivered = first.ids + second.ids
    assert sorted(delivered) == sorted(event.id for event in events)


async def test_an_event_whose_handler_failed_is_delivered_again(bus: EventBus) -> None:
    events = [registered(f"u{i}") for i in range(3)]
    handler = Collector(fail_first={events[1].id})
    async with consuming(bus, "mail", "mail-1", handler):
        for event in events:
            await bus.publish(STREAM, event)
        await handler.wait_for(3)
        # Once handled it is acked: no further deliveries.
        await asyncio.sleep(CLAIM_IDLE * 3)
    assert sorted(handler.ids) == sorted(event.id for event in events)
    assert handler.attempts.count(events[1].id) == 2
    assert len(handler.attempts) == 4


@pytest.mark.redis
async def test_pending_events_of_a_dead_consumer_are_reclaimed(
    redis_client: aioredis.Redis,
) -> None:
    bus = RedisEventBus(redis_client, claim_idle=CLAIM_IDLE, block_ms=100)
    await redis_client.xgroup_create(STREAM, "mail", id="0", mkstream=True)
    event = registered("u1")
    await bus.publish(STREAM, event)
    # A consumer reads the entry and dies before acking it.
    taken: Any = await redis_client.xreadgroup("mail", "dead", {STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 1

    survivor = Collector()
    async with consuming(bus, "mail", "alive", survivor):
        await survivor.wait_for(1)
        await asyncio.sleep(0.2)
    assert survivor.ids == [event.id]
    pending = await redis_client.xpending(STREAM, "mail")
    assert pending["pending"] == 0


@pytest.mark.redis
async def test_consumer_keeps_running_while_redis_is_unreachable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    bus = RedisEventBus(client, claim_idle=CLAIM_IDLE, block_ms=100)
    handler = Collector()
    # consuming() fails the test if consume raised or did not return on stop.
    async with consuming(bus, "mail", "mail-1", handler):
        await asyncio.sleep(0.5)
    await client.aclose()
    assert handler.events == []


@pytest.mark.redis
async def test_consumer_recovers_when_the_stream_and_group_vanish(
    redis_client: aioredis.Redis,
) -> None:
    bus = RedisEventBus(redis_client, claim_idle=CLAIM_IDLE, block_ms=100)
    handler = Collector()
    async with consuming(bus, "mail", "mail-1", handler):
        await bus.publish(STREAM, registered("before"))
        await handler.wait_for(1)
        # Redis restarted without persistence: stream and group are gone.
        await redis_client.flushdb()
        after = registered("after")
        await bus.publish(STREAM, after)
        await handler.wait_for(2)
    assert handler.ids[-1] == after.id


async def test_in_process_bus_stops_consumers_on_close() -> None:
    bus = InProcessEventBus()
    task = asyncio.create_task(bus.consume(STREAM, "g", "c", Collector(), stop=asyncio.Event()))
    await asyncio.sleep(0.05)
    await bus.close()
    await asyncio.wait_for(task, timeout=1)


async def test_in_process_event_interrupted_by_cancellation_is_not_lost() -> None:
    bus = InProcessEventBus()
    started, never = asyncio.Event(), asyncio.Event()

    async def stuck(event: envelope_pb2.Event) -> None:
        started.set()
        await never.wait()

    event = registered("u1")
    await bus.publish(STREAM, event)
    task = asyncio.create_task(bus.consume(STREAM, "mail", "old", stuck, stop=asyncio.Event()))
    await asyncio.wait_for(started.wait(), timeout=1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    replacement = Collector()
    async with consuming(bus, "mail", "new", replacement):
        await replacement.wait_for(1)
    assert replacement.ids == [event.id]
