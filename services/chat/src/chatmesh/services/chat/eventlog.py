"""The room event log (ARCHITECTURE §5): every change to a room gets the room's
next seq in the transaction that makes the change, and a relay publishes the
committed events to pub/sub (`room.<id>`, and `user.<id>` for membership
changes) by reading the log, never from memory.

A crash between commit and publish loses nothing: the event's row in
`room_event_queue` is deleted only in the transaction that published it, so a
restarted relay (or another replica's) publishes it then. Publishing can thus
repeat an event; subscribers drop seqs they already have.

The log stores each event whole, with the message as it was right after the
change, so publishing and replaying are plain reads. When a message is deleted,
`scrub` replaces its copies in earlier events with the tombstone: the log keeps
no deleted text.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import and_, delete, func, update
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.aio import wait_any
from chatmesh.common.db import Database
from chatmesh.common.logging import get_logger
from chatmesh.common.pubsub import PubSub
from chatmesh.services.chat import models, views

log = get_logger("chatmesh.chat.eventlog")

PUBLISHED = Counter(
    "chat_room_events_published_total", "Room events the relay published to pub/sub."
)
PUBLISH_DELAY = Histogram(
    "chat_room_event_publish_delay_seconds",
    "Time from an event's creation to its publication by the relay.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

ROOM_CHANNEL_PREFIX = "room."
USER_CHANNEL_PREFIX = "user."


def room_channel(room_id: str) -> str:
    return ROOM_CHANNEL_PREFIX + room_id


def user_channel(user_id: str) -> str:
    return USER_CHANNEL_PREFIX + user_id


async def allocate(
    session: AsyncSession, room: models.Room, count: int = 1, **room_values: Any
) -> int:
    """Take the room's next `count` seqs; returns the last one.

    `UPDATE rooms SET last_seq = last_seq + count ... RETURNING` also locks the
    room row until commit, so seqs are gapless and commit in order. While the
    lock is held, a negative `count` gives back seqs not used after all.
    `room_values` are other room columns to set in the same statement; `room`
    (the ORM row) is brought up to date without another write.
    """
    table = models.Room
    statement = (
        update(table)
        .where(col(table.id) == room.id)
        .values(last_seq=col(table.last_seq) + count, **room_values)
        .returning(col(table.last_seq))
        # A plain SQL UPDATE: the ORM row is synchronised below, not reloaded.
        .execution_options(synchronize_session=False)
    )
    last = int((await session.exec(statement)).scalar_one())
    set_committed_value(room, "last_seq", last)
    for name, value in room_values.items():
        set_committed_value(room, name, value)
    return last


async def lock_room(session: AsyncSession, room_id: str) -> models.Room | None:
    """The room row, locked until commit (PostgreSQL `FOR UPDATE`; SQLite's
    transactions hold the database's write lock from the start). While it is
    held nobody else appends to the room: its next seq is `last_seq + 1`, and
    what the transaction reads afterwards (membership) is current."""
    return await session.get(models.Room, room_id, with_for_update=True, populate_existing=True)


def stamp(event: pb.RoomEvent, room_id: str, seq: int, now: datetime) -> None:
    event.room_id = room_id
    event.seq = seq
    event.create_time.CopyFrom(views.timestamp(now))


async def reserve(
    session: AsyncSession,
    room: models.Room,
    event: pb.RoomEvent,
    *,
    now: datetime,
    **room_values: Any,
) -> int:
    """Give `event` the room's next seq (and its room id and time); `record` it
    once its payload is complete, in the same transaction."""
    seq = await allocate(session, room, 1, **room_values)
    stamp(event, room.id, seq, now)
    return seq


async def record(session: AsyncSession, event: pb.RoomEvent, *, now: datetime) -> None:
    """Store a reserved event in the log; a trigger queues it for the relay."""
    await record_many(session, [event], now=now)


async def record_many(
    session: AsyncSession, events: Sequence[pb.RoomEvent], *, now: datetime
) -> None:
    await session.exec(sa_insert(_LOG), params=log_rows(events, now=now))


def log_rows(events: Sequence[pb.RoomEvent], *, now: datetime) -> list[dict[str, Any]]:
    """The `room_events` rows of stamped events (a trigger queues each for the relay)."""
    return [
        {
            "room_id": event.room_id,
            "seq": event.seq,
            "message_id": message_id_of(event) or None,
            "payload": event.SerializeToString(),
            "create_time": now,
        }
        for event in events
    ]


async def append(
    session: AsyncSession,
    room: models.Room,
    event: pb.RoomEvent,
    *,
    now: datetime,
    **room_values: Any,
) -> int:
    """`reserve` + `record`, for an event whose payload does not need its seq."""
    seq = await reserve(session, room, event, now=now, **room_values)
    await record(session, event, now=now)
    return seq


def message_id_of(event: pb.RoomEvent) -> str:
    kind = event.WhichOneof("payload")
    if kind == "message_created":
        return event.message_created.message.id
    if kind == "message_updated":
        return event.message_updated.message.id
    if kind == "message_deleted":
        return event.message_deleted.message_id
    if kind == "reaction_updated":
        return event.reaction_updated.message_id
    return ""


async def scrub(session: AsyncSession, room_id: str, tombstone: pb.Message) -> None:
    """Replace the deleted message's copies in the log with its tombstone."""
    rows = (
        await session.exec(
            select(models.RoomEventRow).where(
                col(models.RoomEventRow.room_id) == room_id,
                col(models.RoomEventRow.message_id) == tombstone.id,
            )
        )
    ).all()
    for row in rows:
        event = pb.RoomEvent.FromString(row.payload)
        kind = event.WhichOneof("payload")
        if kind == "message_created":
            event.message_created.message.CopyFrom(tombstone)
        elif kind == "message_updated":
            event.message_updated.message.CopyFrom(tombstone)
        elif kind == "message_deleted":
            event.message_deleted.message.CopyFrom(tombstone)
        elif kind == "reaction_updated":
            del event.reaction_updated.reactions[:]
        else:  # pragma: no cover
            continue
        row.payload = event.SerializeToString()


async def load_messages(session: AsyncSession, ids: Iterable[str]) -> dict[str, pb.Message]:
    """The messages (with reactions and mentions) as they are now, by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.exec(select(models.Message).where(col(models.Message.id).in_(wanted)))
    messages = list(rows.all())
    reactions = (
        await session.exec(
            select(models.Reaction)
            .where(col(models.Reaction.message_id).in_(wanted))
            .order_by(col(models.Reaction.create_time), col(models.Reaction.user_id))
        )
    ).all()
    mentions = (
        await session.exec(
            select(models.Mention)
            .where(col(models.Mention.message_id).in_(wanted))
            .order_by(col(models.Mention.user_id))
        )
    ).all()
    by_message: dict[str, list[models.Reaction]] = {}
    for reaction in reactions:
        by_message.setdefault(reaction.message_id, []).append(reaction)
    mentioned: dict[str, list[str]] = {}
    for mention in mentions:
        mentioned.setdefault(mention.message_id, []).append(mention.user_id)
    return {
        row.id: views.message(
            row, reaction_rows=by_message.get(row.id, ()), mention_ids=mentioned.get(row.id, ())
        )
        for row in messages
    }


async def events_after(
    session: AsyncSession, room_id: str, after_seq: int, limit: int
) -> list[pb.RoomEvent]:
    rows = (
        await session.exec(
            select(models.RoomEventRow.payload)
            .where(col(models.RoomEventRow.room_id) == room_id)
            .where(col(models.RoomEventRow.seq) > after_seq)
            .order_by(col(models.RoomEventRow.seq))
            .limit(limit)
        )
    ).all()
    return [pb.RoomEvent.FromString(payload) for payload in rows]


def channels_for(event: pb.RoomEvent) -> list[str]:
    """Where an event is published: its room, and for a membership change also
    the user's own channel (so that a user added to a room hears of it)."""
    channels = [room_channel(event.room_id)]
    if event.WhichOneof("payload") == "member_changed":
        channels.append(user_channel(event.member_changed.user_id))
    return channels


def _advisory_key() -> int:
    digest = hashlib.sha256(b"chatmesh.chat.room_event_relay").digest()
    return int.from_bytes(digest[:8], "big", signed=True)


RELAY_LOCK_KEY = _advisory_key()
_QUEUE = models.ROOM_EVENT_QUEUE
_LOG = models.ROOM_EVENTS


class RoomEventRelay:
    """Publishes committed room events, per room in seq order.

    On PostgreSQL one replica at a time publishes (a transaction-scoped advisory
    lock); the others find the lock taken and try again shortly, so an event
    committed anywhere goes out within a few milliseconds of a wake-up.
    """

    def __init__(
        self,
        db: Database,
        pubsub: PubSub,
        *,
        poll_interval: float = 0.25,
        batch_size: int = 200,
        busy_retry: float = 0.01,
        max_backoff: float = 10.0,
    ) -> None:
        self._db = db
        self._pubsub = pubsub
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._busy_retry = busy_retry
        self._max_backoff = max_backoff
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Nudge the relay right after a commit so events go out without poll delay."""
        self._wakeup.set()

    async def publish_pending(self) -> int | None:
        """Publish everything pending; the count, or None if another relay holds the lock."""
        total = 0
        while True:
            published = await self._publish_batch()
            if published is None:
                return None if total == 0 else total
            total += published
            if published < self._batch_size:
                return total

    async def _publish_batch(self) -> int | None:
        queue, log_ = _QUEUE, _LOG
        async with self._db.connection() as connection:
            if not self._db.is_sqlite:
                locked = await connection.execute(
                    sa_select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY))
                )
                got: object = locked.scalar_one()
                if got is not True:
                    return None
            pending = (
                await connection.execute(
                    sa_select(queue.c.room_id, queue.c.seq, log_.c.payload)
                    .join(log_, and_(log_.c.room_id == queue.c.room_id, log_.c.seq == queue.c.seq))
                    .order_by(queue.c.room_id, queue.c.seq)
                    .limit(self._batch_size)
                )
            ).all()
            if not pending:
                return 0
            # Per room the pending seqs are a contiguous prefix of what is unpublished
            # (seqs commit in order): deleting up to the highest one clears the batch.
            highest: dict[str, int] = {}
            payloads: list[bytes] = []
            for row in pending:
                highest[str(row[0])] = int(row[1])
                payloads.append(bytes(row[2]))
            now = time.time()
            for payload in payloads:
                event = pb.RoomEvent.FromString(payload)
                for channel in channels_for(event):
                    await self._pubsub.publish(channel, payload)
                PUBLISH_DELAY.observe(max(0.0, now - event.create_time.ToMicroseconds() / 1e6))
            for room_id, high in highest.items():
                await connection.execute(
                    delete(queue).where(queue.c.room_id == room_id, queue.c.seq <= high)
                )
            PUBLISHED.inc(len(payloads))
            return len(pending)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; failures are logged and retried with backoff."""
        failures = 0
        while not stop.is_set():
            self._wakeup.clear()
            try:
                published = await self.publish_pending()
            except Exception as exc:
                failures += 1
                delay = min(self._max_backoff, 0.1 * 2 ** min(failures, 16))
                log.warning("room_event_relay_failed", error=repr(exc), retry_in=delay)
                await wait_any(stop, within=delay)
                continue
            failures = 0
            if published is None:
                # Another replica is publishing; it may have read its batch before
                # our commit, so look again soon rather than at the next poll.
                await wait_any(stop, within=self._busy_retry)
                continue
            # A commit during the batch has set the wake-up again: no waiting then.
            await wait_any(stop, self._wakeup, within=self._poll_interval)
