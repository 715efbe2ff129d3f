"""What the digest emails say, read from the mail service's projection of chat
(projection.py): who has missed direct messages or mentions, and each user's
week in their rooms. Deciding *when* to send is the scheduler's job."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import ColumnElement, and_, exists, false, func, or_, true, update
from sqlalchemy.orm import Mapped, aliased
from sqlmodel import col, select

from chatmesh.common.clock import as_utc
from chatmesh.common.db import Database
from chatmesh.services.mail.models import (
    ChatMention,
    ChatMessage,
    ChatRoom,
    Person,
    Preferences,
    RoomMember,
)

DEFAULT_DIGEST_DAY = 1  # Monday, as PreferenceValues
DIRECT_ROOM_NAME = "Direct message"


@dataclass(frozen=True)
class MissedMessage:
    room_id: str
    room_name: str
    message_id: str
    seq: int
    sender_name: str
    excerpt: str
    create_time: datetime
    # "dm" or "mention"
    reason: str


@dataclass(frozen=True)
class MissedMessages:
    user_id: str
    email: str
    display_name: str
    # The oldest unread ones first, at most `max_listed`.
    messages: Sequence[MissedMessage]
    # All unread, unmailed DMs and mentions (listed or not).
    total: int
    # Highest seq per room included: the next digest starts after these, so the
    # same messages are never mailed twice.
    through_seq: dict[str, int]


@dataclass(frozen=True)
class RoomActivity:
    room_id: str
    room_name: str
    message_count: int
    unread_count: int
    top_senders: Sequence[str]


@dataclass(frozen=True)
class WeeklyActivity:
    user_id: str
    email: str
    display_name: str
    period_start: datetime
    period_end: datetime
    # Busiest first; only rooms with messages in the period or unread ones.
    rooms: Sequence[RoomActivity]

    @property
    def total_messages(self) -> int:
        return sum(room.message_count for room in self.rooms)

    @property
    def total_unread(self) -> int:
        return sum(room.unread_count for room in self.rooms)


@dataclass(frozen=True)
class Recipient:
    user_id: str
    email: str
    display_name: str


def _name(person_display: str | None, person_username: str | None) -> str:
    return person_display or person_username or "Someone"


def _wants(flag: Mapped[bool], day: int | None = None) -> ColumnElement[bool]:
    """The user has not turned the category off (no preferences row: defaults)."""
    no_row = col(Preferences.user_id).is_(None)
    if day is None:
        return or_(no_row, flag == true())
    return or_(
        and_(no_row, true() if day == DEFAULT_DIGEST_DAY else false()),
        and_(flag == true(), col(Preferences.digest_day) == day),
    )


class DigestQueries:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- missed messages ---------------------------------------------------------------

    @staticmethod
    def _unmailed_unread() -> ColumnElement[bool]:
        """A message a member has neither read nor been mailed about, that is a
        DM to them or mentions them."""
        member, message = RoomMember, ChatMessage
        mentioned = exists().where(
            col(ChatMention.message_id) == col(message.message_id),
            col(ChatMention.user_id) == col(member.user_id),
        )
        return and_(
            col(member.member) == true(),
            col(message.seq) > col(member.last_read_seq),
            col(message.seq) > col(member.notified_seq),
            col(message.sender_id) != col(member.user_id),
            or_(col(ChatRoom.direct) == true(), mentioned),
        )

    async def missed_candidates(
        self, *, older_than: datetime, after_user_id: str, limit: int
    ) -> list[str]:
        """Users (by id, after `after_user_id`) with a missed message sent before
        `older_than`, who have an address and want these emails."""
        member, message = RoomMember, ChatMessage
        query = (
            select(member.user_id)
            .join(message, col(message.room_id) == col(member.room_id))
            .join(ChatRoom, col(ChatRoom.room_id) == col(member.room_id))
            .join(Person, col(Person.user_id) == col(member.user_id))
            .outerjoin(Preferences, col(Preferences.user_id) == col(member.user_id))
            .where(self._unmailed_unread())
            .where(col(message.create_time) <= older_than)
            .where(col(member.user_id) > after_user_id)
            .where(_wants(col(Preferences.missed_messages)))
            .group_by(col(member.user_id))
            .order_by(col(member.user_id))
            .limit(limit)
        )
        async with self._db.read() as session:
            return list((await session.exec(query)).all())

    async def missed_messages(
        self, user_ids: Sequence[str], *, max_listed: int
    ) -> list[MissedMessages]:
        """Every unread, unmailed DM and mention of each user (newer ones too, so
        one email covers them all)."""
        if not user_ids:
            return []
        member, message = RoomMember, ChatMessage
        sender = aliased(Person)
        mentioned = exists().where(
            col(ChatMention.message_id) == col(message.message_id),
            col(ChatMention.user_id) == col(member.user_id),
        )
        query = (
            sa.select(
                col(member.user_id),
                col(message.room_id),
                col(ChatRoom.name),
                col(ChatRoom.direct),
                col(message.message_id),
                col(message.seq),
                col(message.excerpt),
                col(message.create_time),
                col(sender.display_name),
                col(sender.username),
                mentioned.label("mentioned"),
            )
            .select_from(member)
            .join(message, col(message.room_id) == col(member.room_id))
            .join(ChatRoom, col(ChatRoom.room_id) == col(member.room_id))
            .outerjoin(sender, col(sender.user_id) == col(message.sender_id))
            .where(col(member.user_id).in_(user_ids))
            .where(self._unmailed_unread())
            .order_by(col(member.user_id), col(message.create_time), col(message.seq))
        )
        async with self._db.read() as session:
            # A plain Core select (more columns than SQLModel's `select` types).
            connection = await session.connection()
            rows = (await connection.execute(query)).mappings().all()
            people = {
                p.user_id: p
                for p in (
                    await session.exec(select(Person).where(col(Person.user_id).in_(user_ids)))
                ).all()
            }
        by_user: dict[str, list[MissedMessage]] = defaultdict(list)
        for row in rows:
            by_user[row["user_id"]].append(
                MissedMessage(
                    room_id=row["room_id"],
                    room_name=row["name"] or DIRECT_ROOM_NAME,
                    message_id=row["message_id"],
                    seq=row["seq"],
                    sender_name=_name(row["display_name"], row["username"]),
                    excerpt=row["excerpt"],
                    create_time=as_utc(row["create_time"]),
                    reason="mention" if row["mentioned"] and not row["direct"] else "dm",
                )
            )
        result = []
        for user_id, messages in by_user.items():
            person = people.get(user_id)
            if person is None:
                continue
            through: dict[str, int] = {}
            for missed in messages:
                through[missed.room_id] = max(through.get(missed.room_id, 0), missed.seq)
            result.append(
                MissedMessages(
                    user_id=user_id,
                    email=person.email,
                    display_name=person.display_name or person.username,
                    messages=messages[:max_listed],
                    total=len(messages),
                    through_seq=through,
                )
            )
        return result

    async def mark_notified(self, user_id: str, through_seq: dict[str, int]) -> None:
        """Remember what a missed-messages email covered."""
        async with self._db.transaction() as session:
            for room_id, seq in through_seq.items():
                await session.exec(
                    update(RoomMember)
                    .where(col(RoomMember.room_id) == room_id)
                    .where(col(RoomMember.user_id) == user_id)
                    .where(col(RoomMember.notified_seq) < seq)
                    .values(notified_seq=seq)
                )

    # --- weekly activity ---------------------------------------------------------------

    async def weekly_recipients(
        self, *, digest_day: int, after_user_id: str, limit: int
    ) -> list[Recipient]:
        """People whose digest day is `digest_day` and who want the digest."""
        query = (
            select(Person)
            .outerjoin(Preferences, col(Preferences.user_id) == col(Person.user_id))
            .where(_wants(col(Preferences.weekly_digest), digest_day))
            .where(col(Person.user_id) > after_user_id)
            .order_by(col(Person.user_id))
            .limit(limit)
        )
        async with self._db.read() as session:
            people = (await session.exec(query)).all()
        return [Recipient(p.user_id, p.email, p.display_name or p.username) for p in people]

    async def weekly_activity(
        self,
        recipients: Sequence[Recipient],
        *,
        period_start: datetime,
        period_end: datetime,
        max_rooms: int = 10,
        top_senders: int = 3,
    ) -> list[WeeklyActivity]:
        """Each recipient's rooms: messages in the period, unread now, who talked most."""
        if not recipients:
            return []
        user_ids = [r.user_id for r in recipients]
        member, message = RoomMember, ChatMessage
        async with self._db.read() as session:
            memberships = (
                await session.exec(
                    select(member.user_id, member.room_id, ChatRoom.name, ChatRoom.direct)
                    .join(ChatRoom, col(ChatRoom.room_id) == col(member.room_id))
                    .where(col(member.user_id).in_(user_ids))
                    .where(col(member.member) == true())
                )
            ).all()
            room_ids = sorted({room_id for _, room_id, _, _ in memberships})
            if not room_ids:
                return []
            in_period = and_(
                col(message.room_id).in_(room_ids),
                col(message.create_time) >= period_start,
                col(message.create_time) < period_end,
            )
            senders = (
                await session.exec(
                    select(message.room_id, message.sender_id, func.count())
                    .where(in_period)
                    .group_by(col(message.room_id), col(message.sender_id))
                )
            ).all()
            unread = (
                await session.exec(
                    select(member.user_id, member.room_id, func.count())
                    .join(
                        message,
                        and_(
                            col(message.room_id) == col(member.room_id),
                            col(message.seq) > col(member.last_read_seq),
                            col(message.sender_id) != col(member.user_id),
                        ),
                    )
                    .where(col(member.user_id).in_(user_ids))
                    .where(col(member.member) == true())
                    .group_by(col(member.user_id), col(member.room_id))
                )
            ).all()
            direct_ids = [room_id for _, room_id, _, direct in memberships if direct]
            direct_members = (
                (
                    await session.exec(
                        select(member.room_id, member.user_id)
                        .where(col(member.room_id).in_(direct_ids))
                        .where(col(member.member) == true())
                    )
                ).all()
                if direct_ids
                else []
            )
            named = {user_id for _, user_id, _ in senders} | {u for _, u in direct_members}
            names = {
                p.user_id: _name(p.display_name, p.username)
                for p in (
                    await session.exec(select(Person).where(col(Person.user_id).in_(named)))
                ).all()
            }
        per_room: dict[str, Counter[str]] = defaultdict(Counter)
        for room_id, sender_id, count in senders:
            per_room[room_id][sender_id] += int(count)
        unread_of = {(user_id, room_id): int(count) for user_id, room_id, count in unread}
        dm_members: dict[str, list[str]] = defaultdict(list)
        for room_id, user_id in direct_members:
            dm_members[room_id].append(user_id)

        rooms_of: dict[str, list[RoomActivity]] = defaultdict(list)
        for user_id, room_id, room_name, direct in memberships:
            counts = per_room.get(room_id, Counter())
            activity = RoomActivity(
                room_id=room_id,
                room_name=(
                    _direct_name(dm_members[room_id], user_id, names) if direct else room_name
                ),
                message_count=sum(counts.values()),
                unread_count=unread_of.get((user_id, room_id), 0),
                # Most messages first; ties by name, so the order is stable.
                top_senders=[
                    names.get(sender_id, "Someone")
                    for sender_id, _ in sorted(
                        counts.items(), key=lambda item: (-item[1], names.get(item[0], ""))
                    )[:top_senders]
                ],
            )
            if activity.message_count or activity.unread_count:
                rooms_of[user_id].append(activity)
        result = []
        for recipient in recipients:
            rooms = sorted(
                rooms_of.get(recipient.user_id, []),
                key=lambda r: (-r.message_count, -r.unread_count, r.room_name),
            )
            if rooms:
                result.append(
                    WeeklyActivity(
                        user_id=recipient.user_id,
                        email=recipient.email,
                        display_name=recipient.display_name,
                        period_start=period_start,
                        period_end=period_end,
                        rooms=rooms[:max_rooms],
                    )
                )
        return result


def _direct_name(members: Sequence[str], me: str, names: dict[str, str]) -> str:
    others = [names.get(user_id, "Someone") for user_id in members if user_id != me]
    return f"{DIRECT_ROOM_NAME} with {', '.join(sorted(others))}" if others else DIRECT_ROOM_NAME
