"""Transactional outbox: an event is written in the same transaction as the state
change, and a relay publishes it to the bus afterwards. A crash between commit
and publish loses nothing; the relay retries until the bus accepts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Table, delete
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.aio import wait_any
from chatmesh.common.bus import EventBus, make_event, stream_name
from chatmesh.common.clock import utcnow
from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.events.v1 import envelope_pb2

log = get_logger("chatmesh.outbox")

# Published rows are kept this long (for debugging and replays), then pruned.
RETENTION = timedelta(days=7)


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox"

    id: str = Field(primary_key=True, max_length=36)
    stream: str = Field(max_length=100)
    payload: bytes
    # Aware UTC (SQLModel stores `datetime` as TIMESTAMPTZ / UTC text on SQLite).
    create_time: datetime
    publish_time: datetime | None = Field(default=None, index=True)


class _CreateClock:
    """Strictly increasing create times, so events staged in one transaction (same
    microsecond) are still published in the order they were added."""

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        self._last = max(utcnow(), self._last + timedelta(microseconds=1))
        return self._last


_create_clock = _CreateClock()
# The Core table, for plain INSERTs (see `outbox_row`).
OUTBOX: Table = OutboxEvent.__table__  # type: ignore[attr-defined]


def add_event(session: AsyncSession, source: str, payload: Message) -> envelope_pb2.Event:
    """Stage `payload` for stream `events.<source>` in the caller's transaction."""
    event = make_event(source, payload)
    session.add(OutboxEvent(**_row(source, event)))
    return event


def outbox_row(source: str, payload: Message) -> dict[str, Any]:
    """The values of an `outbox` row staging `payload`, for a hot path that
    inserts many rows in one statement (OUTBOX) instead of `add_event`."""
    return _row(source, make_event(source, payload))


def _row(source: str, event: envelope_pb2.Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "stream": stream_name(source),
        "payload": event.SerializeToString(),
        "create_time": _create_clock.now(),
    }


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        poll_interval: float = 0.5,
        batch_size: int = 100,
        max_backoff: float = 30.0,
        retention: timedelta = RETENTION,
        prune_interval: float = 3600.0,
    ) -> None:
        self._db = db
        self._bus = bus
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        self._retention = retention
        self._prune_interval = prune_interval
        self._wakeup = asyncio.Event()

    async def publish_pending(self) -> int:
        """Publish unpublished events in order; returns how many were published."""
        total = 0
        while True:
            published, full = await self._publish_batch()
            total += published
            if not full:
                return total

    async def _publish_batch(self) -> tuple[int, bool]:
        """One batch in one transaction; returns (published, whether the batch was full)."""
        query = (
            select(OutboxEvent)
            .where(col(OutboxEvent.publish_time).is_(None))
            .order_by(col(OutboxEvent.create_time), col(OutboxEvent.id))
            .limit(self._batch_size)
        )
        if not self._db.is_sqlite:
            # Another relay replica skips the rows this one holds instead of
            # publishing them a second time. (SQLite: BEGIN IMMEDIATE serializes.)
            query = query.with_for_update(skip_locked=True)
        failure: Exception | None = None
        published = 0
        async with self._db.transaction() as session:
            rows = (await session.exec(query)).all()
            for row in rows:
                try:
                    await self._bus.publish(row.stream, envelope_pb2.Event.FromString(row.payload))
                except Exception as exc:
                    # Keep what went out marked; the rest stays pending, in order.
                    failure = exc
                    break
                row.publish_time = utcnow()
                published += 1
        if failure is not None:
            raise failure
        return published, len(rows) == self._batch_size

    async def prune(self, older_than: timedelta | None = None) -> int:
        """Delete events published more than `older_than` (default: retention) ago."""
        cutoff = utcnow() - (older_than if older_than is not None else self._retention)
        async with self._db.transaction() as session:
            result = await session.exec(
                delete(OutboxEvent).where(col(OutboxEvent.publish_time) < cutoff)
            )
            return int(result.rowcount)

    def wake(self) -> None:
        """Nudge the relay right after a commit so events go out without poll delay."""
        self._wakeup.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; bus errors are logged and retried with backoff."""
        failures = 0
        next_prune = 0.0
        while not stop.is_set():
            # Cleared before publishing: a wake() during the round triggers another.
            self._wakeup.clear()
            try:
                await self.publish_pending()
                if time.monotonic() >= next_prune:
                    await self.prune()
                    next_prune = time.monotonic() + self._prune_interval
            except Exception as exc:
                failures += 1
                delay = min(self._max_backoff, self._poll_interval * 2 ** min(failures, 16))
                log.warning("outbox_relay_failed", error=repr(exc), retry_in=delay)
                # wake() is ignored while backing off: every commit would hammer a dead bus.
                await wait_any(stop, within=delay)
                continue
            failures = 0
            await wait_any(stop, self._wakeup, within=self._poll_interval)
