"""Sending messages with group commit.

Every send appends to its room's log, and a room's seqs are handed out under
the room's row lock, so the sends of one busy room run one at a time. Instead of
one transaction each, the sends waiting for the same room in this process go
into ONE transaction: one seq range, batched inserts, one commit. When the room
is quiet a batch holds one send and costs what a lone transaction would; when
it is busy, batches grow and the room keeps up instead of building a queue.

Each send in a batch still gets its own answer: the message, the original one
for a retried `client_msg_id`, or its own refusal (not a member, unknown reply).

A batch costs few round trips to the database: lock the room row (its next seq
is then known and the memberships read next are current), read the retries and
memberships, then write everything — room counter, messages, log events,
mentions, read markers, outbox events — in ONE statement on PostgreSQL (writable
CTEs). On SQLite the writes are separate statements (no network in between).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    Table,
    Text,
    TypeDecorator,
    Update,
    and_,
    bindparam,
    func,
    insert,
    or_,
    update,
)
from sqlalchemy import select as select_core
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.clock import Clock
from chatmesh.common.db import Database
from chatmesh.common.errors import ServiceError
from chatmesh.common.logging import get_logger
from chatmesh.common.outbox import OUTBOX, outbox_row
from chatmesh.events.v1 import chat_events_pb2 as ev
from chatmesh.services.chat import errors, eventlog, models, views
from chatmesh.services.chat.mentions import mentioned_usernames

log = get_logger("chatmesh.chat.sending")

SOURCE = "chat"
EXCERPT_LENGTH = 200
# Sends per transaction at most (the rest wait for the next batch).
MAX_BATCH = 100
ATTEMPTS = 3

Sent = tuple[pb.Message, bool]
_ROOMS = models.table_of(models.Room)


@dataclass
class SendRequest:
    user_id: str
    room_id: str
    body: str  # validated
    client_msg_id: str  # validated
    reply_to: str
    future: asyncio.Future[Sent] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def key(self) -> tuple[str, str]:
        return self.user_id, self.client_msg_id


@dataclass
class _New:
    """A send that becomes a new message in this batch."""

    request: SendRequest
    message: models.Message
    mentioned: list[str]


@dataclass
class _Plan:
    outcomes: list[Sent | BaseException | None]
    fresh: list[tuple[int, SendRequest]] = field(default_factory=list)
    # batch index → the stored message it retries / the earlier index it repeats
    retries: dict[int, models.Message] = field(default_factory=dict)
    repeats: dict[int, int] = field(default_factory=dict)


class MessageSender:
    def __init__(self, *, db: Database, clock: Clock, on_commit: Callable[[], None]) -> None:
        self._db = db
        self._clock = clock
        self._on_commit = on_commit
        self._queues: dict[str, deque[SendRequest]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def send(self, request: SendRequest) -> Sent:
        queue = self._queues.setdefault(request.room_id, deque())
        queue.append(request)
        if request.room_id not in self._workers:
            self._workers[request.room_id] = asyncio.create_task(
                self._work(request.room_id), name=f"chat-send-{request.room_id}"
            )
        # shield: a caller that goes away must not cancel the batch it is part of.
        return await asyncio.shield(request.future)

    async def drain(self) -> None:
        """Wait for the batches in flight (at shutdown, before the database closes)."""
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _work(self, room_id: str) -> None:
        queue = self._queues[room_id]
        try:
            while queue:
                batch = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
                await self._run(room_id, batch)
        finally:
            # No await between the last look at the queue and here: a send that
            # comes later finds no worker and starts one.
            del self._workers[room_id]
            del self._queues[room_id]
            for request in queue:  # only when cancelled (shutdown)
                if not request.future.done():
                    request.future.set_exception(errors.unavailable())

    async def _run(self, room_id: str, batch: list[SendRequest]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                async with self._db.transaction() as session:
                    outcomes = await self._batch(session, room_id, batch)
            except IntegrityError:
                # Another replica inserted one of these client_msg_ids meanwhile:
                # the next attempt finds it and answers with the original.
                if attempt < ATTEMPTS - 1:
                    continue
                log.exception("send_batch_failed", room_id=room_id, size=len(batch))
                outcomes = [errors.internal_error()] * len(batch)
            except Exception as exc:
                outcomes = [exc] * len(batch)
            break
        self._on_commit()
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    async def _batch(
        self, session: AsyncSession, room_id: str, batch: list[SendRequest]
    ) -> list[Sent | BaseException]:
        # Locked first: memberships read below are as committed now, so someone
        # removed while this batch waited for the lock cannot post.
        room = await eventlog.lock_room(session, room_id)
        if room is None:
            return [errors.room_not_found()] * len(batch)
        plan = await self._plan(session, room, batch)
        mentionable = await self._mentionable(session, room_id, [r for _, r in plan.fresh])
        outcomes = plan.outcomes
        created = await self._create(session, room, plan.fresh, mentionable, outcomes)
        if plan.retries:
            loaded = await eventlog.load_messages(session, [m.id for m in plan.retries.values()])
            for index, original in plan.retries.items():
                outcomes[index] = (loaded[original.id], False)
        for index, first in plan.repeats.items():
            outcomes[index] = (created[first], False) if first in created else outcomes[first]
        assert all(outcome is not None for outcome in outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _plan(
        self, session: AsyncSession, room: models.Room, batch: list[SendRequest]
    ) -> _Plan:
        """Sort the batch: new messages, retries of stored ones, repeats within the
        batch, and refusals (their outcome set right away)."""
        plan = _Plan(outcomes=[None] * len(batch))
        existing = await self._existing(session, batch)
        parents = await self._reply_rooms(session, batch)
        members = await self._members(session, room.id, sorted({r.user_id for r in batch}))
        first_of: dict[tuple[str, str], int] = {}
        for index, request in enumerate(batch):
            original = existing.get(request.key)
            if original is not None:
                if original.room_id != room.id:
                    plan.outcomes[index] = errors.client_msg_id_conflict()
                else:
                    plan.retries[index] = original
            elif request.key in first_of:
                plan.repeats[index] = first_of[request.key]  # the same send twice in one batch
            elif request.user_id not in members:
                plan.outcomes[index] = _not_allowed(room)
            elif request.reply_to and parents.get(request.reply_to) != room.id:
                plan.outcomes[index] = errors.reply_to_not_found()
            else:
                first_of[request.key] = index
                plan.fresh.append((index, request))
        return plan

    async def _create(
        self,
        session: AsyncSession,
        room: models.Room,
        fresh: list[tuple[int, SendRequest]],
        mentionable: dict[str, str],
        outcomes: list[Sent | BaseException | None],
    ) -> dict[int, pb.Message]:
        """Insert the new messages with the room's next seqs (the room row is
        locked); their views by batch index."""
        if not fresh:
            return {}
        now = self._clock()
        first = room.last_seq + 1
        new: list[_New] = []
        for offset, (_, request) in enumerate(fresh):
            message = models.Message(
                id=str(uuid.uuid4()),
                room_id=room.id,
                seq=first + offset,
                sender_id=request.user_id,
                client_msg_id=request.client_msg_id,
                body=request.body,
                reply_to=request.reply_to or None,
                create_time=now,
            )
            mentioned = [
                mentionable[name]
                for name in mentioned_usernames(request.body)
                if name in mentionable and mentionable[name] != request.user_id
            ]
            new.append(_New(request, message, mentioned))

        views_by_index: dict[int, pb.Message] = {}
        events = []
        for (index, _), n in zip(fresh, new, strict=True):
            view = views.message(n.message, mention_ids=sorted(n.mentioned))
            views_by_index[index] = view
            outcomes[index] = (view, True)
            event = pb.RoomEvent(
                actor_id=n.message.sender_id,
                message_created=pb.RoomEvent.MessageCreated(message=view),
            )
            eventlog.stamp(event, room.id, n.message.seq, now)
            events.append(event)
        await self._write(session, room, new, events, now)
        return views_by_index

    async def _write(
        self,
        session: AsyncSession,
        room: models.Room,
        new: list[_New],
        events: list[pb.RoomEvent],
        now: datetime,
    ) -> None:
        """Every write of a batch. A duplicate (sender, client_msg_id) from
        another replica fails it (IntegrityError: the batch is retried and finds
        the original)."""
        messages = [
            {
                "id": n.message.id,
                "room_id": room.id,
                "seq": n.message.seq,
                "sender_id": n.message.sender_id,
                "client_msg_id": n.message.client_msg_id,
                "body": n.message.body,
                "reply_to": n.message.reply_to,
                "create_time": now,
            }
            for n in new
        ]
        mentions = [
            {"message_id": n.message.id, "user_id": user_id} for n in new for user_id in n.mentioned
        ]
        # Sending implies having read everything up to one's own message.
        read_up_to: dict[str, int] = {}
        for n in new:
            read_up_to[n.message.sender_id] = n.message.seq
        reads = [{"user_id": user, "seq": seq} for user, seq in read_up_to.items()]
        # (table, rows) in the order the foreign keys need
        inserts = [
            (models.MESSAGES, messages),
            (models.ROOM_EVENTS, eventlog.log_rows(events, now=now)),
            (models.MENTIONS, mentions),
            (OUTBOX, self._announcements(room, new)),
        ]
        if self._db.is_sqlite:
            # In-process: one statement each costs no round trips.
            for table, rows in inserts:
                if rows:
                    await session.exec(insert(table), params=rows)
            await session.exec(
                _read_markers_sqlite(),
                params=[{"r": room.id, "u": r["user_id"], "s": r["seq"]} for r in reads],
            )
            await session.exec(
                update(_ROOMS)
                .where(_ROOMS.c.id == room.id)
                .values(
                    last_seq=_ROOMS.c.last_seq + len(new),
                    last_message_id=new[-1].message.id,
                    activity_time=now,
                )
            )
            return
        # PostgreSQL: ONE statement (writable CTEs; foreign keys are checked at
        # its end). Rows travel as arrays (`unnest`), so the statement is the
        # same for any batch size: built, compiled and prepared once.
        params: dict[str, Any] = {
            # (no key may be a column name of rooms or members: SQLAlchemy
            # would turn it into a SET clause)
            "batch_room": room.id,
            "batch_count": len(new),
            "batch_last_message": new[-1].message.id,
            "batch_time": now,
            "read_users": [r["user_id"] for r in reads],
            "read_seqs": [r["seq"] for r in reads],
        }
        for table, rows in inserts:
            for column in _PG_COLUMNS[table.name] if rows else ():
                params[f"{table.name}_{column}"] = [row[column] for row in rows]
        # Core, not the ORM session: nothing here maps to loaded objects.
        connection = await session.connection()
        await connection.execute(_pg_batch_write(with_mentions=bool(mentions)), params)

    @staticmethod
    def _announce(room: models.Room, new: _New) -> list[dict[str, Any]]:
        """The outbox rows of one new message: MessageCreated, then its mentions."""
        message = new.message
        stamp = views.timestamp(message.create_time)
        rows = [
            outbox_row(
                SOURCE,
                ev.MessageCreated(
                    message_id=message.id,
                    room_id=room.id,
                    seq=message.seq,
                    sender_id=message.sender_id,
                    body=message.body,
                    reply_to=message.reply_to or "",
                    mention_user_ids=new.mentioned,
                    direct=room.type == models.ROOM_DIRECT,
                    room_name=room.name,
                    create_time=stamp,
                ),
            )
        ]
        for user_id in new.mentioned:
            rows.append(
                outbox_row(
                    SOURCE,
                    ev.MentionCreated(
                        message_id=message.id,
                        room_id=room.id,
                        sender_id=message.sender_id,
                        mentioned_user_id=user_id,
                        excerpt=message.body[:EXCERPT_LENGTH],
                        room_name=room.name,
                        create_time=stamp,
                    ),
                )
            )
        return rows

    def _announcements(self, room: models.Room, new: list[_New]) -> list[dict[str, Any]]:
        return [row for n in new for row in self._announce(room, n)]

    @staticmethod
    async def _existing(
        session: AsyncSession, batch: list[SendRequest]
    ) -> dict[tuple[str, str], models.Message]:
        keys = sorted({request.key for request in batch})
        message = models.Message
        rows = await session.exec(
            select(message).where(
                or_(
                    *(
                        and_(col(message.sender_id) == user, col(message.client_msg_id) == key)
                        for user, key in keys
                    )
                )
            )
        )
        return {(row.sender_id, row.client_msg_id): row for row in rows.all()}

    @staticmethod
    async def _reply_rooms(session: AsyncSession, batch: list[SendRequest]) -> dict[str, str]:
        wanted = sorted({request.reply_to for request in batch if request.reply_to})
        if not wanted:
            return {}
        rows = await session.exec(
            select(models.Message.id, models.Message.room_id).where(
                col(models.Message.id).in_(wanted)
            )
        )
        return dict(rows.all())

    @staticmethod
    async def _members(session: AsyncSession, room_id: str, user_ids: list[str]) -> set[str]:
        rows = await session.exec(
            select(models.Member.user_id).where(
                col(models.Member.room_id) == room_id, col(models.Member.user_id).in_(user_ids)
            )
        )
        return set(rows.all())

    @staticmethod
    async def _mentionable(
        session: AsyncSession, room_id: str, batch: list[SendRequest]
    ) -> dict[str, str]:
        """username → user id of the room members the batch's bodies mention."""
        names = sorted({name for r in batch for name in mentioned_usernames(r.body)})
        if not names:
            return {}
        user, member = models.User, models.Member
        rows = await session.exec(
            select(user.username, user.id)
            .join(member, and_(col(member.user_id) == col(user.id), col(member.room_id) == room_id))
            .where(col(user.username).in_(names))
        )
        return dict(rows.all())


def _read_markers_sqlite() -> Update:
    """Raise a member's read marker to their own message (executemany)."""
    members = models.MEMBERS
    return (
        update(members)
        .where(
            members.c.room_id == bindparam("r"),
            members.c.user_id == bindparam("u"),
            members.c.last_read_seq < bindparam("s"),
        )
        .values(last_read_seq=bindparam("s"))
    )


# Array types for `unnest`, per column type of the chat tables.
def _array_of(column: Column[Any]) -> ARRAY[Any]:
    kind = column.type
    if isinstance(kind, TypeDecorator):  # SQLModel's AutoString, UTCDateTime
        kind = kind.impl_instance
    if isinstance(kind, DateTime):
        return ARRAY(DateTime(timezone=True))
    if isinstance(kind, LargeBinary):
        return ARRAY(LargeBinary())
    if isinstance(kind, Integer):  # BigInteger too
        return ARRAY(BigInteger())
    return ARRAY(Text())


# The columns each batch insert fills (the keys of its rows).
_PG_COLUMNS = {
    "messages": (
        "id",
        "room_id",
        "seq",
        "sender_id",
        "client_msg_id",
        "body",
        "reply_to",
        "create_time",
    ),
    "room_events": ("room_id", "seq", "message_id", "payload", "create_time"),
    "mentions": ("message_id", "user_id"),
    "outbox": ("id", "stream", "payload", "create_time"),
}


def _unnest_insert(table: Table) -> UpdateBase:
    """`INSERT INTO t (c1, c2, …) SELECT … FROM unnest(:t_c1, :t_c2, …)`."""
    names = list(_PG_COLUMNS[table.name])
    arrays = [
        bindparam(f"{table.name}_{column}", type_=_array_of(table.c[column])) for column in names
    ]
    rows = func.unnest(*arrays).table_valued(*names).render_derived(name="rows")
    return insert(table).from_select(names, select_core(*(rows.c[c] for c in names)))


@functools.cache
def _pg_batch_write(*, with_mentions: bool) -> Update:
    """A batch's writes as one statement (parameters: see `_write`)."""
    tables = [models.MESSAGES, models.ROOM_EVENTS, OUTBOX]
    if with_mentions:
        tables.insert(2, models.MENTIONS)
    members = models.MEMBERS
    marker = (
        func.unnest(
            bindparam("read_users", type_=ARRAY(Text())),
            bindparam("read_seqs", type_=ARRAY(BigInteger())),
        )
        .table_valued("user_id", "seq")
        .render_derived(name="marker")
    )
    # Sending implies having read everything up to one's own message.
    reads = (
        update(members)
        .where(
            members.c.room_id == bindparam("batch_room"),
            members.c.user_id == marker.c.user_id,
            members.c.last_read_seq < marker.c.seq,
        )
        .values(last_read_seq=marker.c.seq)
    )
    ctes = [_unnest_insert(table).cte(f"insert_{table.name}") for table in tables]
    return (
        update(_ROOMS)
        .where(_ROOMS.c.id == bindparam("batch_room"))
        .values(
            last_seq=_ROOMS.c.last_seq + bindparam("batch_count", type_=BigInteger()),
            last_message_id=bindparam("batch_last_message"),
            activity_time=bindparam("batch_time", type_=DateTime(timezone=True)),
        )
        .add_cte(*ctes, reads.cte("read_markers"))
    )


def _not_allowed(room: models.Room) -> ServiceError:
    """What a non-member learns: a private room does not exist for them."""
    if room.visibility == models.PUBLIC:
        return errors.not_a_member()
    return errors.room_not_found()
