"""Sending messages with group commit.

Every send appends to its room's log, and a room's seqs are handed out under
the room's row lock, so the sends of one busy room run one at a time. Instead of
one transaction each, the sends waiting for the same room in this process go
into ONE transaction: one seq range, batched inserts, one commit. When the room
is quiet a batch holds one send and costs what a lone transaction would; when
it is busy, batches grow and the room keeps up instead of building a queue.

Each send in a batch still gets its own answer: the message, the original one
for a retried `client_msg_id`, or its own refusal (not a member, unknown reply).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, bindparam, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.clock import Clock
from chatmesh.common.db import Database
from chatmesh.common.errors import ServiceError
from chatmesh.common.logging import get_logger
from chatmesh.common.outbox import add_event
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
        room = await session.get(models.Room, room_id)
        if room is None:
            return [errors.room_not_found()] * len(batch)
        plan = await self._plan(session, room, batch)
        mentionable = await self._mentionable(session, room_id, batch)
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
        """Insert the new messages with consecutive seqs; their views by batch index."""
        if not fresh:
            return {}
        now = self._clock()
        ids = [str(uuid.uuid4()) for _ in fresh]
        previous = {"last_message_id": room.last_message_id, "activity_time": room.activity_time}
        # The room lock is taken here (and held to the commit).
        last = await eventlog.allocate(
            session, room, len(fresh), last_message_id=ids[-1], activity_time=now
        )
        if not self._db.is_sqlite:
            # Membership as committed now, under the lock: someone removed while
            # this batch waited for it must not post (SQLite runs one transaction
            # at a time, so there the earlier read holds).
            still = await self._members(session, room.id, sorted({r.user_id for _, r in fresh}))
            kept = [
                (pair, mid)
                for pair, mid in zip(fresh, ids, strict=True)
                if pair[1].user_id in still
            ]
            if len(kept) < len(fresh):
                for index, request in fresh:
                    if request.user_id not in still:
                        outcomes[index] = _not_allowed(room)
                unused = len(fresh) - len(kept)
                fresh, ids = [pair for pair, _ in kept], [mid for _, mid in kept]
                # Give the unused seqs back: the lock is still ours, nobody took more.
                values = {"last_message_id": ids[-1]} if ids else previous
                last = await eventlog.allocate(session, room, -unused, **values)
                if not fresh:
                    return {}
        first = last - len(fresh) + 1
        new: list[_New] = []
        for offset, ((_, request), message_id) in enumerate(zip(fresh, ids, strict=True)):
            message = models.Message(
                id=message_id,
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

        # Plain inserts in the order the foreign keys need. A duplicate
        # (sender, client_msg_id) from another replica fails the first one.
        await session.exec(
            insert(models.MESSAGES),
            params=[
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
            ],
        )
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
        await eventlog.record_many(session, events, now=now)
        mentions = [
            {"message_id": n.message.id, "user_id": user_id} for n in new for user_id in n.mentioned
        ]
        if mentions:
            await session.exec(insert(models.MENTIONS), params=mentions)
        # Sending implies having read everything up to one's own message.
        read_up_to: dict[str, int] = {}
        for n in new:
            read_up_to[n.message.sender_id] = n.message.seq
        members = models.MEMBERS
        await session.exec(
            update(members)
            .where(
                members.c.room_id == bindparam("r"),
                members.c.user_id == bindparam("u"),
                members.c.last_read_seq < bindparam("s"),
            )
            .values(last_read_seq=bindparam("s")),
            params=[{"r": room.id, "u": user, "s": seq} for user, seq in read_up_to.items()],
        )
        for n in new:
            self._announce(session, room, n)
        return views_by_index

    @staticmethod
    def _announce(session: AsyncSession, room: models.Room, new: _New) -> None:
        message = new.message
        stamp = views.timestamp(message.create_time)
        add_event(
            session,
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
        for user_id in new.mentioned:
            add_event(
                session,
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


def _not_allowed(room: models.Room) -> ServiceError:
    """What a non-member learns: a private room does not exist for them."""
    if room.visibility == models.PUBLIC:
        return errors.not_a_member()
    return errors.room_not_found()
