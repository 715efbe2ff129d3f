"""The chat domain: rooms, memberships, messages, reactions, read markers,
history, search. Plain async methods taking the caller's user id; no gRPC.

Every change to a room runs in one transaction that holds the room's row lock
(taken by `SELECT ... FOR UPDATE`, or by the seq bump in `eventlog.allocate`;
on SQLite every transaction is exclusive anyway), so membership and role checks
cannot race with the changes they guard, and the room's events get consecutive
seqs in commit order. Sends go through `sending.MessageSender`, which commits
the sends waiting for one room together. Service events (`MessageCreated`,
`MentionCreated`) go into the outbox in the same transaction.

Blocks (asked of the user service through `blocks.BlockChecker`; a block in
either direction counts, and a failed check refuses with UNAVAILABLE):
- 1:1 DM: neither side can open it (get-or-create) nor post in it.
- Group DM: it cannot be *created* with someone the caller has a block with
  (that would route around the block). An existing group DM stays usable by
  all its members: a block between two of them must not silence the group, and
  the caller only learns about their own blocks. Group rooms are not checked.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, delete, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.chat.v1 import resources_pb2 as pb
from chatmesh.common.clock import Clock, as_utc, utcnow
from chatmesh.common.db import Database
from chatmesh.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from chatmesh.common.outbox import add_event
from chatmesh.events.v1 import chat_events_pb2 as ev
from chatmesh.services.chat import (
    comembers,
    errors,
    eventlog,
    models,
    paging,
    search,
    validation,
    views,
)
from chatmesh.services.chat.blocks import AllowAll, BlockChecker
from chatmesh.services.chat.mentions import mentioned_usernames
from chatmesh.services.chat.sending import MessageSender, SendRequest

SOURCE = "chat"
# Rooms whose DM-or-not status is remembered (see `_direct_pair`).
PAIR_CACHE_SIZE = 10_000
EXCERPT_LENGTH = 200

T = TypeVar("T")

_ROLE_NAMES = {pb.MEMBER_ROLE_ADMIN: models.ROLE_ADMIN, pb.MEMBER_ROLE_MEMBER: models.ROLE_MEMBER}
_MANAGERS = (models.ROLE_OWNER, models.ROLE_ADMIN)


def direct_key(user_ids: Iterable[str]) -> str:
    """The same key for the same set of users, whatever the order."""
    return hashlib.sha256("\n".join(sorted(set(user_ids))).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Page:
    """Messages or events of one page plus what continues it."""

    next_page_token: str
    latest_seq: int


@dataclass(frozen=True, slots=True)
class SubscribeCheck:
    rooms: list[str]
    # (room id, code, message)
    failures: list[tuple[str, str, str]]
    # Every room the user is a member of, with the seq of the event that made it so.
    memberships: dict[str, int]


class ChatService:
    def __init__(
        self,
        *,
        db: Database,
        blocks: BlockChecker | None = None,
        clock: Clock = utcnow,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._blocks = blocks or AllowAll()
        self._clock = clock
        # Called after every committed write (the room event relay's wake-up).
        self._on_commit = on_commit
        self._pairs: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._sender = MessageSender(db=db, clock=clock, on_commit=on_commit)

    async def drain(self) -> None:
        """Let sends in flight finish (call before closing the database)."""
        await self._sender.drain()

    # --- plumbing ---------------------------------------------------------------------

    async def _write(self, operation: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `operation` in a transaction, again if a unique constraint raced
        (two concurrent sends of one client_msg_id, two creates of one DM)."""
        attempts = 3
        for attempt in range(attempts):
            try:
                async with self._db.transaction() as session:
                    result = await operation(session)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
                continue
            self._on_commit()
            return result
        raise AssertionError("unreachable")

    @staticmethod
    async def _member(session: AsyncSession, room_id: str, user_id: str) -> models.Member | None:
        return await session.get(models.Member, (room_id, user_id))

    async def _visible(
        self, session: AsyncSession, room_id: str, user_id: str, *, lock: bool = False
    ) -> tuple[models.Room, models.Member | None]:
        """The room and the caller's membership (one query); a private room is
        NOT_FOUND to non-members. `lock` takes the room row lock first."""
        room_, member_ = models.Room, models.Member
        query = (
            select(room_, member_)
            .outerjoin(
                member_,
                and_(col(member_.room_id) == col(room_.id), col(member_.user_id) == user_id),
            )
            .where(col(room_.id) == room_id)
        )
        if lock:
            query = query.with_for_update(of=room_)
        found = (await session.exec(query)).first()
        if found is None:
            raise errors.room_not_found()
        room = found[0]
        member: models.Member | None = found[1]  # None from the outer join
        if member is None and room.visibility != models.PUBLIC:
            raise errors.room_not_found()
        return room, member

    async def _membership(
        self, session: AsyncSession, room_id: str, user_id: str, *, lock: bool = False
    ) -> tuple[models.Room, models.Member]:
        room, member = await self._visible(session, room_id, user_id, lock=lock)
        if member is None:
            raise errors.not_a_member()
        return room, member

    async def _message(
        self, session: AsyncSession, message_id: str, user_id: str, *, lock: bool = False
    ) -> tuple[models.Message, models.Room, models.Member]:
        """A message the caller may read (member of its room); its room locked if asked."""
        message = (
            await session.exec(select(models.Message).where(col(models.Message.id) == message_id))
        ).first()
        if message is None:
            raise errors.message_not_found()
        try:
            room, member = await self._membership(session, message.room_id, user_id, lock=lock)
        except NotFound:
            raise errors.message_not_found() from None
        if lock:
            # Re-read under the room lock: a concurrent edit/delete committed meanwhile.
            await session.refresh(message)
        return message, room, member

    @staticmethod
    async def _still_member(session: AsyncSession, room_id: str, user_id: str) -> bool:
        """Membership as committed now (a fresh read, not the session's cached row)."""
        found = await session.exec(
            select(models.Member.user_id).where(
                col(models.Member.room_id) == room_id, col(models.Member.user_id) == user_id
            )
        )
        return found.first() is not None

    @staticmethod
    async def _member_ids(session: AsyncSession, room_id: str) -> list[str]:
        rows = await session.exec(
            select(models.Member.user_id)
            .where(col(models.Member.room_id) == room_id)
            .order_by(col(models.Member.join_seq), col(models.Member.user_id))
        )
        return list(rows.all())

    async def _snapshot(self, session: AsyncSession, room: models.Room) -> pb.Room:
        """The room as every member sees it (for events)."""
        member_ids = await self._member_ids(session, room.id) if room.type == "direct" else []
        return views.room(room, member_ids=member_ids)

    @staticmethod
    async def _unread_counts(
        session: AsyncSession, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, int]:
        if not room_ids:
            return {}
        message, member = models.Message, models.Member
        rows = await session.exec(
            select(message.room_id, func.count())
            .join(
                member,
                and_(col(member.room_id) == col(message.room_id), col(member.user_id) == user_id),
            )
            .where(col(message.room_id).in_(room_ids))
            .where(col(message.seq) > col(member.last_read_seq))
            .where(col(message.sender_id) != user_id)
            .where(col(message.delete_time).is_(None))
            .group_by(col(message.room_id))
        )
        return {room_id: int(count) for room_id, count in rows.all()}

    async def _views(
        self,
        session: AsyncSession,
        user_id: str,
        pairs: Sequence[tuple[models.Room, models.Member]],
    ) -> list[pb.Room]:
        """The caller's view of several rooms: unread counts, last messages, DM members."""
        room_ids = [room.id for room, _ in pairs]
        unread = await self._unread_counts(session, user_id, room_ids)
        last = await eventlog.load_messages(
            session, [room.last_message_id for room, _ in pairs if room.last_message_id]
        )
        direct = [room.id for room, _ in pairs if room.type == models.ROOM_DIRECT]
        member_ids: dict[str, list[str]] = {}
        if direct:
            rows = await session.exec(
                select(models.Member.room_id, models.Member.user_id)
                .where(col(models.Member.room_id).in_(direct))
                .order_by(col(models.Member.join_seq), col(models.Member.user_id))
            )
            for room_id, member_id in rows.all():
                member_ids.setdefault(room_id, []).append(member_id)
        return [
            views.room(
                room,
                member_ids=member_ids.get(room.id, ()),
                membership=views.membership(member, unread_count=unread.get(room.id, 0)),
                last_message=last.get(room.last_message_id or ""),
            )
            for room, member in pairs
        ]

    async def _view(
        self, session: AsyncSession, user_id: str, room: models.Room, member: models.Member | None
    ) -> pb.Room:
        if member is None:
            return await self._snapshot(session, room)
        return (await self._views(session, user_id, [(room, member)]))[0]

    async def _append_member_change(
        self,
        session: AsyncSession,
        room: models.Room,
        *,
        actor_id: str,
        user_id: str,
        change: pb.MemberChange.ValueType,
        role: str | None,
        now: datetime,
        **room_values: object,
    ) -> int:
        event = pb.RoomEvent(
            actor_id=actor_id,
            member_changed=pb.RoomEvent.MemberChanged(
                user_id=user_id,
                change=change,
                role=views.ROLES[role] if role else pb.MEMBER_ROLE_UNSPECIFIED,
            ),
        )
        seq = await eventlog.reserve(session, room, event, now=now, **room_values)
        # The snapshot is taken after the seq bump, so room.last_seq is this event.
        event.member_changed.room.CopyFrom(await self._snapshot(session, room))
        await eventlog.record(session, event, now=now)
        if change != pb.MEMBER_CHANGE_ROLE_CHANGED:
            # For notifications: who is in which room (DM recipients, digests).
            add_event(
                session,
                SOURCE,
                ev.RoomMembershipChanged(
                    room_id=room.id,
                    user_id=user_id,
                    member=change in (pb.MEMBER_CHANGE_JOINED, pb.MEMBER_CHANGE_ADDED),
                    direct=room.type == models.ROOM_DIRECT,
                    room_name=room.name,
                    seq=seq,
                    change_time=views.timestamp(now),
                ),
            )
        return seq

    # --- rooms ------------------------------------------------------------------------

    async def create_room(
        self, user_id: str, *, name: str, topic: str, visibility: pb.Visibility.ValueType
    ) -> pb.Room:
        name = validation.room_name(name)
        topic = validation.room_topic(topic)
        if visibility == pb.VISIBILITY_UNSPECIFIED:
            visibility = pb.VISIBILITY_PUBLIC
        names = {value: key for key, value in views.VISIBILITIES.items()}
        if visibility not in names:
            raise InvalidArgument(
                "visibility is public or private",
                code="invalid_visibility",
                details={"field": "visibility"},
            )

        async def operation(session: AsyncSession) -> pb.Room:
            now = self._clock()
            room = models.Room(
                id=str(uuid.uuid4()),
                type=models.ROOM_GROUP,
                visibility=names[visibility],
                name=name,
                topic=topic,
                creator_id=user_id,
                member_count=0,
                create_time=now,
                activity_time=now,
            )
            session.add(room)
            await session.flush()
            created = pb.RoomEvent(actor_id=user_id, room_created=pb.RoomEvent.RoomCreated())
            await eventlog.reserve(session, room, created, now=now)
            created.room_created.room.CopyFrom(await self._snapshot(session, room))
            await eventlog.record(session, created, now=now)
            member = models.Member(
                room_id=room.id, user_id=user_id, role=models.ROLE_OWNER, join_time=now, join_seq=0
            )
            session.add(member)
            member.join_seq = await self._append_member_change(
                session,
                room,
                actor_id=user_id,
                user_id=user_id,
                change=pb.MEMBER_CHANGE_JOINED,
                role=models.ROLE_OWNER,
                now=now,
                member_count=1,
            )
            return await self._view(session, user_id, room, member)

        return await self._write(operation)

    async def get_room(self, user_id: str, room_id: str) -> pb.Room:
        async with self._db.transaction() as session:
            room, member = await self._visible(session, room_id, user_id)
            return await self._view(session, user_id, room, member)

    async def list_rooms(
        self, user_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[pb.Room], str]:
        size = paging.page_size(page_size, default=50, maximum=200)
        room, member = models.Room, models.Member
        query = (
            select(room, member)
            .join(member, col(member.room_id) == col(room.id))
            .where(col(member.user_id) == user_id)
            .order_by(col(room.activity_time).desc(), col(room.id).desc())
            .limit(size + 1)
        )
        if page_token:
            token = paging.decode_token(page_token, "rooms")
            try:
                after_time = datetime.fromisoformat(paging.field(token, "t", str))
            except ValueError:
                raise paging.invalid_token() from None
            after_id = paging.field(token, "i", str)
            query = query.where(
                or_(
                    col(room.activity_time) < after_time,
                    and_(col(room.activity_time) == after_time, col(room.id) < after_id),
                )
            )
        async with self._db.transaction() as session:
            rows = list((await session.exec(query)).all())
            more = len(rows) > size
            rows = rows[:size]
            rooms = await self._views(session, user_id, rows)
        next_token = ""
        if more:
            last = rows[-1][0]
            next_token = paging.encode_token(
                "rooms", t=as_utc(last.activity_time).isoformat(), i=last.id
            )
        return rooms, next_token

    async def update_room(
        self, user_id: str, room_id: str, *, name: str | None, topic: str | None
    ) -> pb.Room:
        new_name = validation.room_name(name) if name is not None else None
        new_topic = validation.room_topic(topic) if topic is not None else None

        async def operation(session: AsyncSession) -> pb.Room:
            room, member = await self._membership(session, room_id, user_id, lock=True)
            if room.type == models.ROOM_DIRECT:
                raise FailedPrecondition(
                    "a direct conversation has no name or topic", code="direct_room"
                )
            if member.role not in _MANAGERS:
                raise errors.insufficient_role("owner or admins")
            changed = False
            if new_name is not None and new_name != room.name:
                room.name, changed = new_name, True
            if new_topic is not None and new_topic != room.topic:
                room.topic, changed = new_topic, True
            if changed:
                await session.flush()
                now = self._clock()
                updated = pb.RoomEvent(actor_id=user_id, room_updated=pb.RoomEvent.RoomUpdated())
                await eventlog.reserve(session, room, updated, now=now)
                updated.room_updated.room.CopyFrom(await self._snapshot(session, room))
                await eventlog.record(session, updated, now=now)
            return await self._view(session, user_id, room, member)

        return await self._write(operation)

    async def join_room(self, user_id: str, room_id: str) -> pb.Room:
        async def operation(session: AsyncSession) -> pb.Room:
            room, member = await self._visible(session, room_id, user_id, lock=True)
            if member is None:
                if room.type != models.ROOM_GROUP:  # pragma: no cover (direct rooms are private)
                    raise errors.room_not_found()
                now = self._clock()
                member = models.Member(
                    room_id=room.id,
                    user_id=user_id,
                    role=models.ROLE_MEMBER,
                    join_time=now,
                    join_seq=0,
                )
                session.add(member)
                member.join_seq = await self._append_member_change(
                    session,
                    room,
                    actor_id=user_id,
                    user_id=user_id,
                    change=pb.MEMBER_CHANGE_JOINED,
                    role=models.ROLE_MEMBER,
                    now=now,
                    member_count=room.member_count + 1,
                )
            return await self._view(session, user_id, room, member)

        return await self._write(operation)

    async def leave_room(self, user_id: str, room_id: str) -> None:
        async def operation(session: AsyncSession) -> None:
            room, member = await self._membership(session, room_id, user_id, lock=True)
            if room.type == models.ROOM_DIRECT:
                raise errors.direct_room()
            now = self._clock()
            was_owner = member.role == models.ROLE_OWNER
            await session.delete(member)
            await self._append_member_change(
                session,
                room,
                actor_id=user_id,
                user_id=user_id,
                change=pb.MEMBER_CHANGE_LEFT,
                role=None,
                now=now,
                member_count=room.member_count - 1,
            )
            if was_owner:
                await self._hand_over(session, room, actor_id=user_id, now=now)

        await self._write(operation)

    async def _hand_over(
        self, session: AsyncSession, room: models.Room, *, actor_id: str, now: datetime
    ) -> None:
        """Make the oldest admin (else the oldest member) the owner of `room`."""
        member = models.Member
        heir = (
            await session.exec(
                select(member)
                .where(col(member.room_id) == room.id)
                .order_by(
                    (col(member.role) == models.ROLE_ADMIN).desc(),
                    col(member.join_seq),
                    col(member.user_id),
                )
                .limit(1)
            )
        ).first()
        if heir is None:
            return
        heir.role = models.ROLE_OWNER
        await self._append_member_change(
            session,
            room,
            actor_id=actor_id,
            user_id=heir.user_id,
            change=pb.MEMBER_CHANGE_ROLE_CHANGED,
            role=models.ROLE_OWNER,
            now=now,
        )

    async def add_member(self, user_id: str, room_id: str, target_id: str) -> pb.Member:
        async def operation(session: AsyncSession) -> pb.Member:
            room, member = await self._membership(session, room_id, user_id, lock=True)
            if room.type == models.ROOM_DIRECT:
                raise errors.direct_room()
            if room.visibility == models.PRIVATE and member.role not in _MANAGERS:
                raise errors.insufficient_role("owner or admins")
            target = await session.get(models.User, target_id)
            if target is None:
                raise NotFound(
                    "user not found", code="user_not_found", details={"user_id": target_id}
                )
            added = await self._member(session, room.id, target_id)
            if added is None:
                now = self._clock()
                added = models.Member(
                    room_id=room.id,
                    user_id=target_id,
                    role=models.ROLE_MEMBER,
                    join_time=now,
                    join_seq=0,
                )
                session.add(added)
                added.join_seq = await self._append_member_change(
                    session,
                    room,
                    actor_id=user_id,
                    user_id=target_id,
                    change=pb.MEMBER_CHANGE_ADDED,
                    role=models.ROLE_MEMBER,
                    now=now,
                    member_count=room.member_count + 1,
                )
            return views.member(added, username=target.username)

        return await self._write(operation)

    async def remove_member(self, user_id: str, room_id: str, target_id: str) -> None:
        async def operation(session: AsyncSession) -> None:
            room, member = await self._membership(session, room_id, user_id, lock=True)
            if room.type == models.ROOM_DIRECT:
                raise errors.direct_room()
            if member.role not in _MANAGERS:
                raise errors.insufficient_role("owner or admins")
            if target_id == user_id:
                raise FailedPrecondition("to leave a room, use leave", code="remove_self")
            target = await self._member(session, room.id, target_id)
            if target is None:
                raise NotFound("member not found", code="member_not_found")
            if target.role == models.ROLE_OWNER:
                raise PermissionDenied("the owner cannot be removed", code="cannot_remove_owner")
            if target.role == models.ROLE_ADMIN and member.role != models.ROLE_OWNER:
                raise errors.insufficient_role("owner")
            await session.delete(target)
            await self._append_member_change(
                session,
                room,
                actor_id=user_id,
                user_id=target_id,
                change=pb.MEMBER_CHANGE_REMOVED,
                role=None,
                now=self._clock(),
                member_count=room.member_count - 1,
            )

        await self._write(operation)

    async def update_member_role(
        self, user_id: str, room_id: str, target_id: str, role: pb.MemberRole.ValueType
    ) -> pb.Member:
        new_role = _ROLE_NAMES.get(role)
        if new_role is None:
            raise InvalidArgument(
                "a role is admin or member (ownership passes only when the owner leaves)",
                code="invalid_role",
                details={"field": "role"},
            )

        async def operation(session: AsyncSession) -> pb.Member:
            room, member = await self._membership(session, room_id, user_id, lock=True)
            if room.type == models.ROOM_DIRECT:
                raise errors.direct_room()
            if member.role != models.ROLE_OWNER:
                raise errors.insufficient_role("owner")
            target = await self._member(session, room.id, target_id)
            if target is None:
                raise NotFound("member not found", code="member_not_found")
            if target.role == models.ROLE_OWNER:
                raise FailedPrecondition("the owner's role cannot change", code="owner_role")
            if target.role != new_role:
                target.role = new_role
                await self._append_member_change(
                    session,
                    room,
                    actor_id=user_id,
                    user_id=target_id,
                    change=pb.MEMBER_CHANGE_ROLE_CHANGED,
                    role=new_role,
                    now=self._clock(),
                )
            user = await session.get(models.User, target_id)
            return views.member(target, username=user.username if user else "")

        return await self._write(operation)

    async def list_members(
        self, user_id: str, room_id: str, *, page_size: int, page_token: str
    ) -> tuple[list[pb.Member], str]:
        size = paging.page_size(page_size, default=100, maximum=500)
        member, user = models.Member, models.User
        query = (
            select(member, user.username)
            .outerjoin(user, col(user.id) == col(member.user_id))
            .where(col(member.room_id) == room_id)
            .order_by(col(member.join_seq), col(member.user_id))
            .limit(size + 1)
        )
        if page_token:
            token = paging.decode_token(page_token, "members")
            if paging.field(token, "r", str) != room_id:
                raise paging.invalid_token()
            after_seq = paging.field(token, "s", int)
            after_user = paging.field(token, "u", str)
            query = query.where(
                or_(
                    col(member.join_seq) > after_seq,
                    and_(col(member.join_seq) == after_seq, col(member.user_id) > after_user),
                )
            )
        async with self._db.transaction() as session:
            await self._membership(session, room_id, user_id)
            rows = list((await session.exec(query)).all())
        more = len(rows) > size
        rows = rows[:size]
        next_token = ""
        if more:
            last = rows[-1][0]
            next_token = paging.encode_token("members", r=room_id, s=last.join_seq, u=last.user_id)
        return [views.member(row, username=name or "") for row, name in rows], next_token

    async def list_co_members(
        self, user_id: str, *, room_ids: Sequence[str], max_room_size: int
    ) -> tuple[list[tuple[str, list[str]]], bool]:
        """The other members of the caller's small rooms (see `comembers`)."""
        return await comembers.list_co_members(
            self._db, user_id, room_ids=room_ids, max_room_size=max_room_size
        )

    async def get_or_create_direct_room(
        self, user_id: str, user_ids: Sequence[str]
    ) -> tuple[pb.Room, bool]:
        others = sorted({other for other in user_ids if other and other != user_id})
        if not others or len(others) > validation.DIRECT_MAX_OTHERS:
            raise InvalidArgument(
                f"a direct conversation has 1 to {validation.DIRECT_MAX_OTHERS} other users",
                code="invalid_direct_users",
                details={"field": "user_ids"},
            )
        key = direct_key([user_id, *others])
        async with self._db.transaction() as session:
            existing = (
                await session.exec(select(models.Room).where(col(models.Room.direct_key) == key))
            ).first()
            existing_id = existing.id if existing is not None else None
            if existing is not None and len(others) > 1:
                # An existing group DM stays open to its members (module docstring).
                member = await self._member(session, existing.id, user_id)
                return await self._view(session, user_id, existing, member), False
            known = set(
                (
                    await session.exec(
                        select(models.User.id).where(col(models.User.id).in_(others))
                    )
                ).all()
            )
        unknown = [other for other in others if other not in known]
        if unknown and existing_id is None:
            raise NotFound("user not found", code="user_not_found", details={"user_id": unknown[0]})
        await self._refuse_blocked(user_id, others)
        if existing_id is not None:
            async with self._db.transaction() as session:
                room = await session.get(models.Room, existing_id)
                if room is not None:
                    member = await self._member(session, room.id, user_id)
                    return await self._view(session, user_id, room, member), False

        async def operation(session: AsyncSession) -> tuple[pb.Room, bool]:
            existing = (
                await session.exec(select(models.Room).where(col(models.Room.direct_key) == key))
            ).first()
            if existing is not None:
                member = await self._member(session, existing.id, user_id)
                return await self._view(session, user_id, existing, member), False
            now = self._clock()
            room = models.Room(
                id=str(uuid.uuid4()),
                type=models.ROOM_DIRECT,
                visibility=models.PRIVATE,
                name="",
                topic="",
                creator_id=user_id,
                direct_key=key,
                member_count=0,
                create_time=now,
                activity_time=now,
            )
            session.add(room)
            # The unique direct_key fails here for the loser of a concurrent create;
            # `_write` runs this again and it finds the winner's room.
            await session.flush()
            created = pb.RoomEvent(actor_id=user_id, room_created=pb.RoomEvent.RoomCreated())
            await eventlog.reserve(session, room, created, now=now)
            mine: models.Member | None = None
            for count, member_id in enumerate([user_id, *others], start=1):
                member = models.Member(
                    room_id=room.id,
                    user_id=member_id,
                    role=models.ROLE_MEMBER,
                    join_time=now,
                    join_seq=0,
                )
                session.add(member)
                member.join_seq = await self._append_member_change(
                    session,
                    room,
                    actor_id=user_id,
                    user_id=member_id,
                    change=(
                        pb.MEMBER_CHANGE_JOINED if member_id == user_id else pb.MEMBER_CHANGE_ADDED
                    ),
                    role=models.ROLE_MEMBER,
                    now=now,
                    member_count=count,
                )
                mine = mine or member
            created.room_created.room.CopyFrom(await self._snapshot(session, room))
            await eventlog.record(session, created, now=now)
            assert mine is not None
            return await self._view(session, user_id, room, mine), True

        return await self._write(operation)

    # --- messages ---------------------------------------------------------------------

    async def _direct_pair(self, room_id: str) -> tuple[str, ...]:
        """The two members of a 1:1 DM, or () for any other room. Cached: a room's
        type and a DM's members never change."""
        cached = self._pairs.get(room_id)
        if cached is not None:
            self._pairs.move_to_end(room_id)
            return cached
        pair: tuple[str, ...] = ()
        async with self._db.transaction() as session:
            room = await session.get(models.Room, room_id)
            if room is None:
                return ()  # the send reports it
            if room.type == models.ROOM_DIRECT and room.member_count == 2:
                pair = tuple(await self._member_ids(session, room_id))
        self._pairs[room_id] = pair
        if len(self._pairs) > PAIR_CACHE_SIZE:
            self._pairs.popitem(last=False)
        return pair

    async def _refuse_blocked(self, user_id: str, others: Sequence[str]) -> None:
        """PERMISSION_DENIED when `user_id` and any of `others` blocked the other
        (either direction); UNAVAILABLE when the user service cannot tell."""
        blocked = await self._blocks.blocked_among(user_id, others)
        if blocked:
            raise PermissionDenied(
                "you cannot message this user: one of you has blocked the other",
                code="blocked",
                details={"user_id": sorted(blocked)[0]},
            )

    async def _check_direct_block(self, user_id: str, room_id: str) -> None:
        """A 1:1 DM: no block between the sender and the other member. Group
        DMs and rooms are not checked (module docstring)."""
        pair = await self._direct_pair(room_id)
        if user_id not in pair:
            return  # not a DM, or not the sender's (the send reports that)
        await self._refuse_blocked(user_id, [other for other in pair if other != user_id])

    @staticmethod
    async def _resolve_mentions(
        session: AsyncSession, room_id: str, sender_id: str, body: str
    ) -> list[str]:
        """Room members mentioned in `body` (never the sender), in mention order."""
        names = mentioned_usernames(body)
        if not names:
            return []
        user, member = models.User, models.Member
        rows = await session.exec(
            select(user.username, user.id)
            .join(member, and_(col(member.user_id) == col(user.id), col(member.room_id) == room_id))
            .where(col(user.username).in_(names))
        )
        by_name = dict(rows.all())
        return [by_name[name] for name in names if name in by_name and by_name[name] != sender_id]

    def _mention_events(
        self,
        session: AsyncSession,
        message: models.Message,
        room: models.Room,
        user_ids: Iterable[str],
    ) -> None:
        for mentioned in user_ids:
            add_event(
                session,
                SOURCE,
                ev.MentionCreated(
                    message_id=message.id,
                    room_id=room.id,
                    sender_id=message.sender_id,
                    mentioned_user_id=mentioned,
                    excerpt=message.body[:EXCERPT_LENGTH],
                    room_name=room.name,
                    create_time=views.timestamp(self._clock()),
                ),
            )

    async def send_message(
        self, user_id: str, room_id: str, *, body: str, client_msg_id: str, reply_to: str
    ) -> tuple[pb.Message, bool]:
        body = validation.message_body(body)
        client_msg_id = validation.client_msg_id(client_msg_id)
        await self._check_direct_block(user_id, room_id)
        request = SendRequest(
            user_id=user_id,
            room_id=room_id,
            body=body,
            client_msg_id=client_msg_id,
            reply_to=reply_to,
        )
        return await self._sender.send(request)

    async def get_message(self, user_id: str, message_id: str) -> pb.Message:
        async with self._db.transaction() as session:
            message, _, _ = await self._message(session, message_id, user_id)
            return (await eventlog.load_messages(session, [message.id]))[message.id]

    async def edit_message(self, user_id: str, message_id: str, *, body: str) -> pb.Message:
        body = validation.message_body(body)

        async def operation(session: AsyncSession) -> pb.Message:
            message, room, _ = await self._message(session, message_id, user_id, lock=True)
            if message.sender_id != user_id:
                raise PermissionDenied(
                    "only the sender can edit a message", code="not_message_sender"
                )
            if message.delete_time is not None:
                raise FailedPrecondition("the message was deleted", code="message_deleted")
            if message.body != body:
                now = self._clock()
                message.body = body
                message.edit_time = now
                before = set(
                    (
                        await session.exec(
                            select(models.Mention.user_id).where(
                                col(models.Mention.message_id) == message.id
                            )
                        )
                    ).all()
                )
                mentioned = await self._resolve_mentions(session, room.id, user_id, body)
                await session.exec(
                    delete(models.Mention).where(
                        col(models.Mention.message_id) == message.id,
                        col(models.Mention.user_id).not_in(mentioned),
                    )
                )
                for mentioned_id in mentioned:
                    if mentioned_id not in before:
                        session.add(models.Mention(message_id=message.id, user_id=mentioned_id))
                self._mention_events(
                    session, message, room, [m for m in mentioned if m not in before]
                )
                updated = pb.RoomEvent(
                    actor_id=user_id,
                    message_updated=pb.RoomEvent.MessageUpdated(message=pb.Message(id=message.id)),
                )
                await eventlog.reserve(session, room, updated, now=now)
                current = (await eventlog.load_messages(session, [message.id]))[message.id]
                updated.message_updated.message.CopyFrom(current)
                await eventlog.record(session, updated, now=now)
                return current
            return (await eventlog.load_messages(session, [message.id]))[message.id]

        return await self._write(operation)

    async def delete_message(self, user_id: str, message_id: str) -> pb.Message:
        async def operation(session: AsyncSession) -> pb.Message:
            message, room, member = await self._message(session, message_id, user_id, lock=True)
            if message.sender_id != user_id and member.role not in _MANAGERS:
                raise PermissionDenied(
                    "only the sender or a room admin can delete a message",
                    code="not_message_sender",
                )
            if message.delete_time is None:
                now = self._clock()
                message.body = ""
                message.delete_time = now
                for table in (models.Reaction, models.Mention):
                    await session.exec(delete(table).where(col(table.message_id) == message.id))
                deleted = pb.RoomEvent(
                    actor_id=user_id,
                    message_deleted=pb.RoomEvent.MessageDeleted(message_id=message.id),
                )
                await eventlog.reserve(session, room, deleted, now=now)
                tombstone = (await eventlog.load_messages(session, [message.id]))[message.id]
                deleted.message_deleted.message.CopyFrom(tombstone)
                await eventlog.record(session, deleted, now=now)
                await eventlog.scrub(session, room.id, tombstone)
                return tombstone
            return (await eventlog.load_messages(session, [message.id]))[message.id]

        return await self._write(operation)

    async def list_messages(
        self,
        user_id: str,
        room_id: str,
        *,
        page_size: int,
        page_token: str,
        before_seq: int | None,
        after_seq: int | None,
    ) -> tuple[list[pb.Message], Page]:
        size = paging.page_size(page_size, default=50, maximum=100)
        async with self._db.transaction() as session:
            room, _ = await self._membership(session, room_id, user_id)
            if page_token:
                token = paging.decode_token(page_token, "messages")
                if paging.field(token, "r", str) != room_id:
                    raise paging.invalid_token()
                forward = paging.field(token, "d", str) == "f"
                lower = paging.field(token, "a", int)
                upper = paging.field(token, "b", int)
            else:
                if before_seq is not None:
                    validation.seq_value(
                        before_seq, "before_seq", last_seq=room.last_seq, allow_next=True
                    )
                if after_seq is not None:
                    validation.seq_value(after_seq, "after_seq", last_seq=room.last_seq)
                forward = after_seq is not None
                lower = after_seq if after_seq is not None else -1
                upper = before_seq if before_seq is not None else room.last_seq + 1
            seq = col(models.Message.seq)
            query = (
                select(models.Message)
                .where(col(models.Message.room_id) == room_id, seq > lower, seq < upper)
                .order_by(seq if forward else seq.desc())
                .limit(size + 1)
            )
            rows = list((await session.exec(query)).all())
            more = len(rows) > size
            rows = rows[:size]
            if not forward:
                rows.reverse()
            loaded = await eventlog.load_messages(session, [row.id for row in rows])
        next_token = ""
        if more and rows:
            if forward:
                next_token = paging.encode_token(
                    "messages", r=room_id, d="f", a=rows[-1].seq, b=upper
                )
            else:
                next_token = paging.encode_token(
                    "messages", r=room_id, d="b", a=lower, b=rows[0].seq
                )
        messages = [loaded[row.id] for row in rows]
        return messages, Page(next_page_token=next_token, latest_seq=room.last_seq)

    async def _react(self, user_id: str, message_id: str, emoji: str, *, add: bool) -> pb.Message:
        emoji = validation.emoji(emoji)

        async def operation(session: AsyncSession) -> pb.Message:
            message, room, _ = await self._message(session, message_id, user_id, lock=True)
            if message.delete_time is not None:
                raise FailedPrecondition("the message was deleted", code="message_deleted")
            existing = await session.get(models.Reaction, (message.id, user_id, emoji))
            now = self._clock()
            if add and existing is None:
                session.add(
                    models.Reaction(
                        message_id=message.id, user_id=user_id, emoji=emoji, create_time=now
                    )
                )
            elif not add and existing is not None:
                await session.delete(existing)
            else:
                return (await eventlog.load_messages(session, [message.id]))[message.id]
            await session.flush()
            reacted = pb.RoomEvent(
                actor_id=user_id,
                reaction_updated=pb.RoomEvent.ReactionUpdated(
                    message_id=message.id, emoji=emoji, user_id=user_id, added=add
                ),
            )
            await eventlog.reserve(session, room, reacted, now=now)
            current = (await eventlog.load_messages(session, [message.id]))[message.id]
            reacted.reaction_updated.reactions.extend(current.reactions)
            await eventlog.record(session, reacted, now=now)
            return current

        return await self._write(operation)

    async def add_reaction(self, user_id: str, message_id: str, emoji: str) -> pb.Message:
        return await self._react(user_id, message_id, emoji, add=True)

    async def remove_reaction(self, user_id: str, message_id: str, emoji: str) -> pb.Message:
        return await self._react(user_id, message_id, emoji, add=False)

    # --- read markers -----------------------------------------------------------------

    async def mark_read(self, user_id: str, room_id: str, seq: int) -> tuple[int, int]:
        """(last_read_seq, unread_count) after moving the marker to the latest
        message at or before `seq`; a receipt event only when it moved."""

        async def operation(session: AsyncSession) -> tuple[int, int]:
            # Most calls move nothing (clients report reads often): they take no lock.
            room, member = await self._membership(session, room_id, user_id)
            validation.seq_value(seq, "seq", last_seq=room.last_seq)
            # The marker counts messages, so reading up to a receipt (or any
            # other non-message event) never produces a receipt of its own.
            target = (
                await session.exec(
                    select(func.max(models.Message.seq)).where(
                        col(models.Message.room_id) == room_id, col(models.Message.seq) <= seq
                    )
                )
            ).one() or 0
            last_read = member.last_read_seq
            if target > last_read:
                receipt = pb.RoomEvent(
                    actor_id=user_id,
                    read_marker_updated=pb.RoomEvent.ReadMarkerUpdated(
                        user_id=user_id, last_read_seq=target
                    ),
                )
                now = self._clock()
                # Room lock first (the seq), then the member row: the order sends use.
                await eventlog.reserve(session, room, receipt, now=now)
                moved = await session.exec(
                    update(models.MEMBERS)
                    .where(
                        models.MEMBERS.c.room_id == room_id,
                        models.MEMBERS.c.user_id == user_id,
                        models.MEMBERS.c.last_read_seq < target,
                    )
                    .values(last_read_seq=target)
                )
                if moved.rowcount == 0 and not await self._still_member(session, room_id, user_id):
                    raise errors.not_a_member()
                await eventlog.record(session, receipt, now=now)
                # For notifications (the mail service drops what was read).
                add_event(
                    session,
                    SOURCE,
                    ev.RoomRead(
                        room_id=room_id,
                        user_id=user_id,
                        seq=target,
                        read_time=views.timestamp(now),
                    ),
                )
                last_read = max(last_read, target)
            unread = await self._unread_counts(session, user_id, [room_id])
            return last_read, unread.get(room_id, 0)

        return await self._write(operation)

    # --- search -----------------------------------------------------------------------

    async def search_messages(
        self, user_id: str, *, query: str, room_id: str, page_size: int, page_token: str
    ) -> tuple[list[pb.SearchResult], str]:
        query = query.strip()
        if not query or len(query) > search.QUERY_MAX_LENGTH:
            raise InvalidArgument(
                f"a search has 1 to {search.QUERY_MAX_LENGTH} characters",
                code="invalid_query",
                details={"field": "query"},
            )
        size = paging.page_size(page_size, default=20, maximum=50)
        fingerprint = hashlib.sha256(f"{room_id}\n{query}".encode()).hexdigest()[:16]
        offset = 0
        if page_token:
            token = paging.decode_token(page_token, "search")
            if paging.field(token, "q", str) != fingerprint:
                raise paging.invalid_token()
            offset = paging.field(token, "o", int)
        async with self._db.transaction() as session:
            if room_id:
                await self._membership(session, room_id, user_id)
            hits = await search.search(
                session,
                sqlite=self._db.is_sqlite,
                user_id=user_id,
                query=query,
                room_id=room_id,
                limit=size + 1,
                offset=offset,
            )
            more = len(hits) > size
            hits = hits[:size]
            messages = await eventlog.load_messages(session, [hit.message_id for hit in hits])
        results = [
            pb.SearchResult(
                message=messages[hit.message_id], highlight=hit.highlight, score=hit.score
            )
            for hit in hits
            if hit.message_id in messages
        ]
        next_token = paging.encode_token("search", q=fingerprint, o=offset + size) if more else ""
        return results, next_token

    # --- the event log ----------------------------------------------------------------

    async def list_room_events(
        self, user_id: str, room_id: str, *, after_seq: int, page_size: int, page_token: str
    ) -> tuple[list[pb.RoomEvent], Page]:
        size = paging.page_size(page_size, default=200, maximum=1000)
        async with self._db.transaction() as session:
            room, _ = await self._membership(session, room_id, user_id)
            if page_token:
                token = paging.decode_token(page_token, "events")
                if paging.field(token, "r", str) != room_id:
                    raise paging.invalid_token()
                after_seq = paging.field(token, "s", int)
            else:
                validation.seq_value(after_seq, "after_seq", last_seq=room.last_seq)
            events = await eventlog.events_after(session, room_id, after_seq, size + 1)
        more = len(events) > size
        events = events[:size]
        next_token = paging.encode_token("events", r=room_id, s=events[-1].seq) if more else ""
        return events, Page(next_page_token=next_token, latest_seq=room.last_seq)

    # --- for live streams (no caller token: the stream checked it) --------------------

    async def subscribable(
        self, user_id: str, room_ids: Sequence[str], *, all_rooms: bool
    ) -> SubscribeCheck:
        """Which rooms `user_id` may subscribe to (members only), and why not the rest."""
        requested = sorted(set(room_ids))
        memberships = await self.memberships(user_id)
        rooms = set(memberships) if all_rooms else set(requested) & set(memberships)
        missing = [room_id for room_id in requested if room_id not in memberships]
        public: set[str] = set()
        if missing:
            async with self._db.transaction() as session:
                rows = await session.exec(
                    select(models.Room.id).where(
                        col(models.Room.id).in_(missing),
                        col(models.Room.visibility) == models.PUBLIC,
                    )
                )
                public = set(rows.all())
        failures = [
            (room_id, "not_a_member", "you are not a member of this room")
            if room_id in public
            else (room_id, "room_not_found", "room not found")
            for room_id in missing
        ]
        return SubscribeCheck(rooms=sorted(rooms), failures=failures, memberships=memberships)

    async def memberships(self, user_id: str) -> dict[str, int]:
        """The rooms `user_id` is a member of, each with its join seq."""
        async with self._db.transaction() as session:
            rows = await session.exec(
                select(models.Member.room_id, models.Member.join_seq).where(
                    col(models.Member.user_id) == user_id
                )
            )
            return {room_id: int(seq) for room_id, seq in rows.all()}

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        if not room_ids:
            return {}
        async with self._db.transaction() as session:
            rows = await session.exec(
                select(models.Room.id, models.Room.last_seq).where(
                    col(models.Room.id).in_(sorted(set(room_ids)))
                )
            )
            return {room_id: int(seq) for room_id, seq in rows.all()}

    async def events_after(self, room_id: str, after_seq: int, limit: int) -> list[pb.RoomEvent]:
        async with self._db.transaction() as session:
            return await eventlog.events_after(session, room_id, after_seq, limit)
