"""The mail service's own copy of what the digests need, built from events (no
other service's tables are read): people from auth's events; rooms, memberships,
read markers, recent messages and mentions from chat's events (`events.chat`).

Every write is idempotent and order-tolerant, because the bus delivers at least
once and a reclaimed event can arrive late: rows are inserted once (`ON CONFLICT
DO NOTHING`), read markers only move forward, and a membership change applies
only if its room seq is newer than the one already applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.bus import unpack
from chatmesh.common.clock import Clock, utcnow
from chatmesh.common.db import Database, dialect_insert
from chatmesh.events.v1 import chat_events_pb2 as chat_ev
from chatmesh.events.v1 import envelope_pb2
from chatmesh.services.mail.models import (
    ChatMention,
    ChatMessage,
    ChatRoom,
    Person,
    RoomMember,
)

CHAT_STREAM = "events.chat"
EXCERPT_LENGTH = 200


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


PEOPLE = _table(Person)
ROOMS = _table(ChatRoom)
MEMBERS = _table(RoomMember)
MESSAGES = _table(ChatMessage)
MENTIONS = _table(ChatMention)


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC) if stamp.seconds else datetime.now(UTC)


def _greater(new: ColumnElement[int], old: ColumnElement[int]) -> ColumnElement[int]:
    # GREATEST() on PostgreSQL, max() on SQLite: a CASE works on both.
    return case((new > old, new), else_=old)


class Projection:
    def __init__(self, db: Database, *, clock: Clock = utcnow) -> None:
        self._db = db
        self._clock = clock

    @property
    def db(self) -> Database:
        return self._db

    # --- auth: who people are --------------------------------------------------------------

    async def record_person(
        self, user_id: str, *, email: str, display_name: str, username: str = ""
    ) -> None:
        """The account's current address and name (newer events overwrite)."""
        if not user_id or not email:
            return
        values = {
            "user_id": user_id[:64],
            "email": email[:320],
            "display_name": display_name[:200],
            "username": username[:64],
            "update_time": self._clock(),
        }
        update = {"email": values["email"], "update_time": values["update_time"]}
        if display_name:
            update["display_name"] = values["display_name"]
        if username:
            update["username"] = values["username"]
        statement = dialect_insert(PEOPLE, is_sqlite=self._db.is_sqlite).values(values)
        async with self._db.transaction() as session:
            await session.exec(
                statement.on_conflict_do_update(index_elements=["user_id"], set_=update)
            )

    # --- chat: rooms, members, messages ----------------------------------------------------

    async def __call__(self, event: envelope_pb2.Event) -> None:
        """The `events.chat` consumer."""
        if (created := unpack(event, chat_ev.MessageCreated)) is not None:
            await self._message_created(created)
        elif (read := unpack(event, chat_ev.RoomRead)) is not None:
            async with self._db.transaction() as session:
                await self._member(session, read.room_id, read.user_id, last_read_seq=read.seq)
        elif (changed := unpack(event, chat_ev.RoomMembershipChanged)) is not None:
            await self._membership_changed(changed)
        elif (mention := unpack(event, chat_ev.MentionCreated)) is not None:
            await self._mention_created(mention)

    async def _message_created(self, created: chat_ev.MessageCreated) -> None:
        when = _time(created.create_time)
        async with self._db.transaction() as session:
            await self._room(session, created.room_id, created.room_name, created.direct)
            await session.exec(
                self._insert(MESSAGES)
                .values(
                    message_id=created.message_id,
                    room_id=created.room_id,
                    seq=created.seq,
                    sender_id=created.sender_id,
                    excerpt=created.body[:EXCERPT_LENGTH],
                    create_time=when,
                )
                .on_conflict_do_nothing(index_elements=["message_id"])
            )
            # Sending reads the room up to one's own message (as chat counts it).
            await self._member(session, created.room_id, created.sender_id, created.seq)
            for user_id in created.mention_user_ids:
                await self._mention(
                    session, created.room_id, created.message_id, created.seq, user_id, when
                )

    async def _mention_created(self, mention: chat_ev.MentionCreated) -> None:
        """Mentions added by an edit (new messages' mentions come with MessageCreated)."""
        async with self._db.transaction() as session:
            message = await session.get(ChatMessage, mention.message_id)
            if message is None:  # older than what the projection keeps
                return
            await self._mention(
                session,
                message.room_id,
                message.message_id,
                message.seq,
                mention.mentioned_user_id,
                _time(mention.create_time),
            )

    async def _membership_changed(self, changed: chat_ev.RoomMembershipChanged) -> None:
        insert = self._insert(MEMBERS)
        statement = insert.values(
            room_id=changed.room_id,
            user_id=changed.user_id,
            member=changed.member,
            change_seq=changed.seq,
            last_read_seq=0,
            notified_seq=0,
        ).on_conflict_do_update(
            index_elements=["room_id", "user_id"],
            set_={"member": insert.excluded.member, "change_seq": insert.excluded.change_seq},
            where=MEMBERS.c.change_seq < insert.excluded.change_seq,
        )
        async with self._db.transaction() as session:
            await self._room(session, changed.room_id, changed.room_name, changed.direct)
            await session.exec(statement)

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return dialect_insert(table, is_sqlite=self._db.is_sqlite)

    async def _room(self, session: AsyncSession, room_id: str, name: str, direct: bool) -> None:
        insert = self._insert(ROOMS)
        await session.exec(
            insert.values(room_id=room_id, name=name[:200], direct=direct).on_conflict_do_update(
                index_elements=["room_id"], set_={"name": insert.excluded.name}
            )
        )

    async def _member(
        self, session: AsyncSession, room_id: str, user_id: str, last_read_seq: int = 0
    ) -> None:
        """A member row (someone who reads, writes or is mentioned belongs to the
        room); the read marker only moves forward."""
        insert = self._insert(MEMBERS)
        await session.exec(
            insert.values(
                room_id=room_id,
                user_id=user_id,
                member=True,
                change_seq=0,
                last_read_seq=last_read_seq,
                notified_seq=0,
            ).on_conflict_do_update(
                index_elements=["room_id", "user_id"],
                set_={
                    "last_read_seq": _greater(
                        insert.excluded.last_read_seq, MEMBERS.c.last_read_seq
                    )
                },
            )
        )

    async def _mention(
        self,
        session: AsyncSession,
        room_id: str,
        message_id: str,
        seq: int,
        user_id: str,
        when: datetime,
    ) -> None:
        await self._member(session, room_id, user_id)
        await session.exec(
            self._insert(MENTIONS)
            .values(
                message_id=message_id, user_id=user_id, room_id=room_id, seq=seq, create_time=when
            )
            .on_conflict_do_nothing(index_elements=["message_id", "user_id"])
        )

    async def prune(self, before: datetime) -> None:
        """Forget messages and mentions older than `before` (digests look back a week)."""
        async with self._db.transaction() as session:
            await session.exec(MENTIONS.delete().where(MENTIONS.c.create_time < before))
            await session.exec(MESSAGES.delete().where(MESSAGES.c.create_time < before))
