"""Friends and blocks between users. Plain async methods, no gRPC.

A pair of users has at most one `Relationship` row, keyed by (lower id, higher
id): a pending request (with its direction in `requester_id`) or a friendship.
Every operation that creates or removes a pair's row locks both profiles first,
so two users asking each other at the same moment end up as one friendship,
and a block can never race with a request into "blocked and friends".
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.clock import as_utc, utcnow
from chatmesh.common.db import Database
from chatmesh.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from chatmesh.common.tokens import AccessClaims
from chatmesh.services.user import records, validation
from chatmesh.services.user.models import FRIENDS, PENDING, Block, Profile, Relationship
from chatmesh.services.user.paging import PageSize, decode_token, encode_token
from chatmesh.services.user.profiles import ProfileService

LIST_PAGE = PageSize(default=100, maximum=1000)
REQUEST_ID_MAX_LENGTH = 64


class Direction(enum.Enum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


@dataclass(frozen=True, slots=True)
class FriendView:
    profile: Profile
    since: datetime


@dataclass(frozen=True, slots=True)
class FriendRequestView:
    id: str
    requester_id: str
    recipient_id: str
    direction: Direction
    # The other user's profile.
    profile: Profile
    created: datetime


@dataclass(frozen=True, slots=True)
class BlockedView:
    profile: Profile
    created: datetime


def _request_not_found() -> NotFound:
    return NotFound(
        "no such pending friend request",
        code="friend_request_not_found",
        details={"field": "request_id"},
    )


def _request_view(row: Relationship, me: str, other: Profile) -> FriendRequestView:
    outgoing = row.requester_id == me
    return FriendRequestView(
        id=row.request_id,
        requester_id=row.requester_id,
        recipient_id=row.other(row.requester_id),
        direction=Direction.OUTGOING if outgoing else Direction.INCOMING,
        profile=other,
        created=as_utc(row.create_time),
    )


def _check_request_id(request_id: str) -> str:
    if not request_id or len(request_id) > REQUEST_ID_MAX_LENGTH:
        raise InvalidArgument(
            "a friend request id is required",
            code="invalid_request_id",
            details={"field": "request_id"},
        )
    return request_id


def _other_column(me: str) -> object:
    """SQL: the id on the other side of a relationship row of `me`."""
    return case(
        (col(Relationship.user_low_id) == me, col(Relationship.user_high_id)),
        else_=col(Relationship.user_low_id),
    )


class RelationService:
    def __init__(self, *, db: Database, profiles: ProfileService) -> None:
        self._db = db
        self._profiles = profiles

    async def _lock_pair(self, session: AsyncSession, me: str, other: str) -> Profile:
        """Lock both profiles; the other's profile, NOT_FOUND if it does not exist."""
        found = await records.lock_profiles(session, [me, other], is_sqlite=self._db.is_sqlite)
        if other not in found:
            raise records.user_not_found()
        return found[other]

    # --- friends -----------------------------------------------------------

    async def send_request(
        self, claims: AccessClaims, user_id: str
    ) -> FriendRequestView | FriendView:
        """A pending request, or a friendship when the other had asked first."""
        me = claims.user_id
        validation.check_user_id(user_id)
        if user_id == me:
            raise InvalidArgument(
                "you cannot send a friend request to yourself",
                code="cannot_befriend_self",
                details={"field": "user_id"},
            )
        await self._profiles.ensure_own(claims)
        async with self._db.transaction() as session:
            other = await self._lock_pair(session, me, user_id)
            blocks = await records.blocks_between(session, me, user_id)
            if any(block.blocker_id == user_id for block in blocks):
                raise records.user_not_found()
            if blocks:
                raise FailedPrecondition(
                    "you blocked this user: unblock them first",
                    code="user_blocked",
                    details={"field": "user_id"},
                )
            now = utcnow()
            row = await records.get_relationship(session, me, user_id)
            if row is None:
                low, high = records.pair_key(me, user_id)
                row = Relationship(
                    user_low_id=low,
                    user_high_id=high,
                    request_id=str(uuid.uuid4()),
                    state=PENDING,
                    requester_id=me,
                    create_time=now,
                )
                session.add(row)
                return _request_view(row, me, other)
            if row.state == FRIENDS:
                raise AlreadyExists(
                    "you are already friends", code="already_friends", details={"field": "user_id"}
                )
            if row.requester_id == me:
                return _request_view(row, me, other)  # sent before: nothing changes
            # They asked first: asking back is accepting.
            row.state = FRIENDS
            row.accept_time = now
            session.add(row)
            return FriendView(profile=other, since=now)

    async def _pending_for(
        self, session: AsyncSession, me: str, request_id: str, *, as_requester: bool
    ) -> Relationship:
        query = select(Relationship).where(
            col(Relationship.request_id) == _check_request_id(request_id),
            col(Relationship.state) == PENDING,
            records.involves(me),
        )
        if not self._db.is_sqlite:
            query = query.with_for_update()
        row = (await session.exec(query)).first()
        if row is None or (row.requester_id == me) != as_requester:
            raise _request_not_found()
        return row

    async def accept(self, claims: AccessClaims, request_id: str) -> FriendView:
        me = claims.user_id
        async with self._db.transaction() as session:
            row = await self._pending_for(session, me, request_id, as_requester=False)
            now = utcnow()
            row.state = FRIENDS
            row.accept_time = now
            session.add(row)
            requester = await session.get(Profile, row.requester_id)
            assert requester is not None  # a foreign key
            return FriendView(profile=requester, since=now)

    async def decline(self, claims: AccessClaims, request_id: str) -> None:
        async with self._db.transaction() as session:
            row = await self._pending_for(session, claims.user_id, request_id, as_requester=False)
            await session.delete(row)

    async def cancel(self, claims: AccessClaims, request_id: str) -> None:
        async with self._db.transaction() as session:
            row = await self._pending_for(session, claims.user_id, request_id, as_requester=True)
            await session.delete(row)

    async def remove_friend(self, claims: AccessClaims, user_id: str) -> None:
        me = claims.user_id
        validation.check_user_id(user_id)
        async with self._db.transaction() as session:
            row = await records.get_relationship(session, me, user_id)
            if row is None or row.state != FRIENDS:
                raise NotFound(
                    "this user is not your friend", code="not_friends", details={"field": "user_id"}
                )
            await session.delete(row)

    async def list_friends(
        self, claims: AccessClaims, *, page_size: int, page_token: str
    ) -> tuple[list[FriendView], str]:
        me = claims.user_id
        size = LIST_PAGE.resolve(page_size)
        after = decode_token(page_token, "friends", size=1)
        statement = (
            select(Profile, Relationship.accept_time)
            .join(Relationship, col(Profile.user_id) == _other_column(me))
            .where(records.involves(me), col(Relationship.state) == FRIENDS)
            .order_by(col(Profile.username))
            .limit(size + 1)
        )
        if after is not None:
            statement = statement.where(col(Profile.username) > after[0])
        async with self._db.read() as session:
            rows = (await session.exec(statement)).all()
        friends = [
            FriendView(profile=profile, since=as_utc(since or profile.create_time))
            for profile, since in rows
        ]
        if len(friends) <= size:
            return friends, ""
        page = friends[:size]
        return page, encode_token("friends", [page[-1].profile.username])

    async def list_requests(
        self,
        claims: AccessClaims,
        *,
        direction: Direction | None,
        page_size: int,
        page_token: str,
    ) -> tuple[list[FriendRequestView], str]:
        """Pending requests, newest first; `direction=None` lists both."""
        me = claims.user_id
        size = LIST_PAGE.resolve(page_size)
        scope = direction.value if direction else "both"
        after = decode_token(page_token, "requests", size=2, scope=scope)
        statement = (
            select(Relationship, Profile)
            .join(Profile, col(Profile.user_id) == _other_column(me))
            .where(records.involves(me), col(Relationship.state) == PENDING)
            .order_by(col(Relationship.create_time).desc(), col(Relationship.request_id).desc())
            .limit(size + 1)
        )
        if direction is Direction.OUTGOING:
            statement = statement.where(col(Relationship.requester_id) == me)
        elif direction is Direction.INCOMING:
            statement = statement.where(col(Relationship.requester_id) != me)
        if after is not None:
            created, request_id = _parse_time(after[0]), after[1]
            statement = statement.where(
                or_(
                    col(Relationship.create_time) < created,
                    and_(
                        col(Relationship.create_time) == created,
                        col(Relationship.request_id) < request_id,
                    ),
                )
            )
        async with self._db.read() as session:
            rows = (await session.exec(statement)).all()
        requests = [_request_view(row, me, other) for row, other in rows]
        if len(requests) <= size:
            return requests, ""
        page = requests[:size]
        last = page[-1]
        return page, encode_token("requests", [last.created.isoformat(), last.id], scope=scope)

    # --- blocks ------------------------------------------------------------

    async def block(self, claims: AccessClaims, user_id: str) -> BlockedView:
        """Block (idempotent): the pair's friendship or pending request goes away."""
        me = claims.user_id
        validation.check_user_id(user_id)
        if user_id == me:
            raise InvalidArgument(
                "you cannot block yourself", code="cannot_block_self", details={"field": "user_id"}
            )
        await self._profiles.ensure_own(claims)
        async with self._db.transaction() as session:
            other = await self._lock_pair(session, me, user_id)
            low, high = records.pair_key(me, user_id)
            await session.exec(
                delete(Relationship).where(
                    col(Relationship.user_low_id) == low, col(Relationship.user_high_id) == high
                )
            )
            await records.insert_ignoring_conflict(
                session,
                Block,
                {"blocker_id": me, "blocked_id": user_id, "create_time": utcnow()},
                conflict=["blocker_id", "blocked_id"],
                is_sqlite=self._db.is_sqlite,
            )
            block = await session.get(Block, (me, user_id))
            assert block is not None
            return BlockedView(profile=other, created=as_utc(block.create_time))

    async def unblock(self, claims: AccessClaims, user_id: str) -> None:
        """Lift a block (idempotent); NOT_FOUND only for a user that does not exist."""
        me = claims.user_id
        validation.check_user_id(user_id)
        async with self._db.transaction() as session:
            if await session.get(Profile, user_id) is None:
                raise records.user_not_found()
            await session.exec(
                delete(Block).where(col(Block.blocker_id) == me, col(Block.blocked_id) == user_id)
            )

    async def list_blocked(
        self, claims: AccessClaims, *, page_size: int, page_token: str
    ) -> tuple[list[BlockedView], str]:
        size = LIST_PAGE.resolve(page_size)
        after = decode_token(page_token, "blocks", size=1)
        statement = (
            select(Profile, Block.create_time)
            .join(Block, col(Block.blocked_id) == col(Profile.user_id))
            .where(col(Block.blocker_id) == claims.user_id)
            .order_by(col(Profile.username))
            .limit(size + 1)
        )
        if after is not None:
            statement = statement.where(col(Profile.username) > after[0])
        async with self._db.read() as session:
            rows = (await session.exec(statement)).all()
        blocked = [
            BlockedView(profile=profile, created=as_utc(created)) for profile, created in rows
        ]
        if len(blocked) <= size:
            return blocked, ""
        page = blocked[:size]
        return page, encode_token("blocks", [page[-1].profile.username])

    async def check_blocks(self, claims: AccessClaims, user_ids: Sequence[str]) -> list[str]:
        """Which of `user_ids` the caller blocked or was blocked by (request order)."""
        me = claims.user_id
        ids = validation.check_user_ids(user_ids)
        if not ids:
            return []
        statement = select(Block.blocker_id, Block.blocked_id).where(
            or_(
                and_(col(Block.blocker_id) == me, col(Block.blocked_id).in_(ids)),
                and_(col(Block.blocked_id) == me, col(Block.blocker_id).in_(ids)),
            )
        )
        async with self._db.read() as session:
            rows = (await session.exec(statement)).all()
        others = {blocked if blocker == me else blocker for blocker, blocked in rows}
        return [user_id for user_id in ids if user_id in others]


def _parse_time(value: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidArgument(
            "the page token is invalid or belongs to another query",
            code="invalid_page_token",
            details={"field": "page_token"},
        ) from None
