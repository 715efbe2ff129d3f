"""The transactional outbox and its relay, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from chatmesh.common.bus import (
    Handler,
    InProcessEventBus,
    RedisEventBus,
    make_event,
    stream_name,
    unpack,
)
from chatmesh.common.clock import utcnow
from chatmesh.common.db import Database, upgrade
from chatmesh.common.outbox import OutboxEvent, OutboxRelay, add_event
from chatmesh.common.redis import create_redis
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2

MIGRATIONS = Path(__file__).parent / "migrations_fixture"
SCHEMA = "svc"


class FlakyBus:
    """A real in-process bus in front of which publishing can be switched off."""

    def __init__(self) -> None:
        self.inner = InProcessEventBus()
        self.published: list[envelope_pb2.Event] = []
        self.down = False
        # Fail exactly the n-th publish call (1-based), once.
        self.fail_call: int | None = None
        self._calls = 0

    async def publish(self, stream: str, event: envelope_pb2.Event) -> None:
        self._calls += 1
        await asyncio.sleep(0.001)  # a network round trip: lets other relays interleave
        if self.down or self._calls == self.fail_call:
            raise ConnectionError("bus unavailable")
        self.published.append(event)
        await self.inner.publish(stream, event)

    async def consume(
        self, stream: str, group: str, consumer: str, handler: Handler, *, stop: asyncio.Event
    ) -> None:
        await self.inner.consume(stream, group, consumer, handler, stop=stop)

    async def close(self) -> None:
        await self.inner.close()

    @property
    def ids(self) -> list[str]:
        return [event.id for event in self.published]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, db_url, schema=SCHEMA, migrations=MIGRATIONS)
    database = Database(db_url, schema=SCHEMA)
    yield database
    await database.close()


def registered(user_id: str) -> auth_events_pb2.UserRegistered:
    return auth_events_pb2.UserRegistered(user_id=user_id)


async def stage(db: Database, *user_ids: str) -> list[str]:
    """Commit one transaction with an event per user id; returns the event ids."""
    async with db.transaction() as session:
        return [add_event(session, "auth", registered(u)).id for u in user_ids]


async def unpublished(db: Database) -> int:
    async with db.transaction() as session:
        pending = select(OutboxEvent).where(col(OutboxEvent.publish_time).is_(None))
        return len((await session.exec(pending)).all())


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=3)


async def test_event_staged_in_a_rolled_back_transaction_is_never_published(
    db: Database,
) -> None:
    async def stage_then_fail() -> None:
        async with db.transaction() as session:
            add_event(session, "auth", registered("ghost"))
            raise RuntimeError("the state change failed")

    bus = FlakyBus()
    with pytest.raises(RuntimeError, match="state change"):
        await stage_then_fail()
    assert await OutboxRelay(db, bus).publish_pending() == 0
    assert bus.published == []


async def test_committed_events_are_published_once_in_create_order(db: Database) -> None:
    bus = FlakyBus()
    # Several events in one transaction keep their order too.
    ids = await stage(db, "a", "b", "c") + await stage(db, "d", "e")
    relay = OutboxRelay(db, bus, batch_size=2)
    assert await relay.publish_pending() == 5
    assert await relay.publish_pending() == 0
    assert bus.ids == ids
    assert {event.source for event in bus.published} == {"auth"}
    assert [unpack(e, auth_events_pb2.UserRegistered) for e in bus.published] == [
        registered(u) for u in "abcde"
    ]
    assert await unpublished(db) == 0


async def test_consumers_receive_what_the_relay_publishes(db: Database) -> None:
    bus = FlakyBus()
    got: list[str] = []

    async def handler(event: envelope_pb2.Event) -> None:
        got.append(event.id)

    stop = asyncio.Event()
    consumer = asyncio.create_task(
        bus.consume(stream_name("auth"), "mail", "m", handler, stop=stop)
    )
    ids = await stage(db, "a", "b")
    await OutboxRelay(db, bus).publish_pending()
    await eventually(lambda: len(got) == 2)
    stop.set()
    await consumer
    assert got == ids


async def test_events_wait_while_the_bus_is_down_and_go_out_once_it_recovers(
    db: Database,
) -> None:
    bus = FlakyBus()
    bus.down = True
    relay = OutboxRelay(db, bus, poll_interval=0.02, max_backoff=0.1)
    async with running(relay):
        ids = await stage(db, "a", "b", "c")
        relay.wake()
        await asyncio.sleep(0.5)  # several failed rounds
        assert bus.published == []
        assert await unpublished(db) == 3
        bus.down = False
        await eventually(lambda: len(bus.published) == 3)
        await asyncio.sleep(0.2)
    assert bus.ids == ids
    assert await unpublished(db) == 0


async def test_a_publish_failing_mid_batch_keeps_the_rest_pending(db: Database) -> None:
    bus = FlakyBus()
    bus.fail_call = 3
    ids = await stage(db, "a", "b", "c", "d", "e")
    relay = OutboxRelay(db, bus)
    with pytest.raises(ConnectionError):
        await relay.publish_pending()
    assert bus.ids == ids[:2]
    assert await unpublished(db) == 3
    assert await relay.publish_pending() == 3
    assert bus.ids == ids


async def test_wake_publishes_without_waiting_for_the_poll_interval(db: Database) -> None:
    bus = FlakyBus()
    relay = OutboxRelay(db, bus, poll_interval=60)
    async with running(relay):
        await asyncio.sleep(0.1)  # the first round found nothing and is now waiting
        ids = await stage(db, "a")
        relay.wake()
        await eventually(lambda: bus.ids == ids, within=2)


async def test_two_relays_on_postgres_never_publish_an_event_twice(postgres_url: str) -> None:
    await asyncio.to_thread(upgrade, postgres_url, schema=SCHEMA, migrations=MIGRATIONS)
    replicas = [Database(postgres_url, schema=SCHEMA), Database(postgres_url, schema=SCHEMA)]
    try:
        ids = await stage(replicas[0], *(f"u{i}" for i in range(200)))
        bus = FlakyBus()
        relays = [OutboxRelay(db, bus, batch_size=10) for db in replicas]
        counts = await asyncio.gather(*(relay.publish_pending() for relay in relays))
        assert sum(counts) == 200
        assert all(count > 0 for count in counts)  # both really worked concurrently
        assert sorted(bus.ids) == sorted(ids)
        assert await unpublished(replicas[0]) == 0
    finally:
        for db in replicas:
            await db.close()


async def test_prune_deletes_only_events_published_long_ago(db: Database) -> None:
    now = utcnow()
    old_published, recent_published, old_pending = (
        make_event("auth", registered(u)) for u in ("old", "recent", "pending")
    )
    async with db.transaction() as session:
        for event, created, published in (
            (old_published, now - timedelta(days=9), now - timedelta(days=8)),
            (recent_published, now - timedelta(days=2), now - timedelta(days=1)),
            (old_pending, now - timedelta(days=9), None),
        ):
            session.add(
                OutboxEvent(
                    id=event.id,
                    stream=stream_name("auth"),
                    payload=event.SerializeToString(),
                    create_time=created,
                    publish_time=published,
                )
            )
    assert await OutboxRelay(db, FlakyBus()).prune() == 1
    async with db.transaction() as session:
        left = set((await session.exec(select(OutboxEvent.id))).all())
    assert left == {recent_published.id, old_pending.id}


@pytest.mark.redis
async def test_outbox_to_redis_streams_end_to_end(db: Database, redis_url: str) -> None:
    client = create_redis(redis_url)
    bus = RedisEventBus(client, block_ms=100)
    got: list[envelope_pb2.Event] = []

    async def handler(event: envelope_pb2.Event) -> None:
        got.append(event)

    stop = asyncio.Event()
    consumer = asyncio.create_task(
        bus.consume(stream_name("auth"), "mail", "m", handler, stop=stop)
    )
    relay = OutboxRelay(db, bus, poll_interval=0.05)
    try:
        async with running(relay):
            ids = await stage(db, "a", "b")
            relay.wake()
            await eventually(lambda: len(got) == 2)
    finally:
        stop.set()
        await consumer
        await client.aclose()
    assert [event.id for event in got] == ids
    assert unpack(got[0], auth_events_pb2.UserRegistered) == registered("a")
