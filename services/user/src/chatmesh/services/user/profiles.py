"""Profiles: created from registrations, read one or many, updated by their
owner, searched by name. Plain async methods, no gRPC."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.clock import as_utc, utcnow
from chatmesh.common.db import Database
from chatmesh.common.errors import InvalidArgument, PermissionDenied
from chatmesh.common.logging import get_logger
from chatmesh.common.tokens import AccessClaims
from chatmesh.services.user import records, validation
from chatmesh.services.user.accounts import AccountSource
from chatmesh.services.user.models import FRIENDS, ProcessedEvent, Profile
from chatmesh.services.user.paging import PageSize, decode_token, encode_token
from chatmesh.services.user.search import LIKE_ESCAPE, fold, normalize_query, prefix_patterns

log = get_logger(__name__)

SEARCH_PAGE = PageSize(default=20, maximum=100)

# What an owner may change, and how each value is checked and normalised.
EDITABLE: Mapping[str, Callable[[str], str]] = {
    "display_name": validation.normalize_display_name,
    "bio": validation.normalize_bio,
    "avatar_url": validation.normalize_avatar_url,
    "status_text": validation.normalize_status_text,
    "status_emoji": validation.normalize_status_emoji,
    "time_zone": validation.normalize_time_zone,
}


class Relation(enum.Enum):
    """How the caller and another user are related."""

    NONE = "none"
    SELF = "self"
    FRIEND = "friend"
    REQUEST_SENT = "request_sent"
    REQUEST_RECEIVED = "request_received"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class ProfileWithRelation:
    profile: Profile
    relation: Relation
    # The pending request between the two (REQUEST_SENT / REQUEST_RECEIVED).
    request_id: str = ""


def new_profile(*, user_id: str, username: str, display_name: str, now: datetime) -> Profile:
    return Profile(
        user_id=user_id,
        username=username,
        display_name=display_name,
        search_username=fold(username),
        search_name=fold(display_name),
        create_time=now,
        update_time=now,
    )


class ProfileService:
    def __init__(self, *, db: Database, accounts: AccountSource) -> None:
        self._db = db
        self._accounts = accounts

    async def create_from_registration(
        self, *, event_id: str, user_id: str, username: str, display_name: str
    ) -> bool:
        """Create the profile of a new account once; False for a repeated event or user."""
        now = utcnow()
        async with self._db.transaction() as session:
            first_time = await records.insert_ignoring_conflict(
                session,
                ProcessedEvent,
                {"event_id": event_id, "process_time": now},
                conflict=["event_id"],
                is_sqlite=self._db.is_sqlite,
            )
            if not first_time:
                return False
            return await self._insert(
                session,
                new_profile(
                    user_id=user_id,
                    username=username,
                    display_name=_registered_display_name(display_name, username),
                    now=now,
                ),
            )

    async def _insert(self, session: AsyncSession, profile: Profile) -> bool:
        # The id decides: a second event for the same account changes nothing.
        return await records.insert_ignoring_conflict(
            session,
            Profile,
            profile.model_dump(),
            conflict=["user_id"],
            is_sqlite=self._db.is_sqlite,
        )

    async def ensure_own(self, claims: AccessClaims) -> Profile:
        """The caller's profile, created from their account if the event is late."""
        async with self._db.read() as session:
            profile = await session.get(Profile, claims.user_id)
        if profile is not None:
            return profile
        account = await self._accounts.own_account(claims.token)
        if account.user_id != claims.user_id:
            raise PermissionDenied("the account does not match the token", code="wrong_account")
        log.info("profile_created_on_demand", user_id=claims.user_id)
        async with self._db.transaction() as session:
            await self._insert(
                session,
                new_profile(
                    user_id=account.user_id,
                    username=account.username,
                    display_name=_registered_display_name(account.display_name, account.username),
                    now=utcnow(),
                ),
            )
            profile = await session.get(Profile, claims.user_id)
        assert profile is not None
        return profile

    async def get(self, claims: AccessClaims, user_id: str) -> ProfileWithRelation:
        """One profile with its relation to the caller; "" is the caller."""
        me = claims.user_id
        if not user_id or user_id == me:
            return ProfileWithRelation(await self.ensure_own(claims), Relation.SELF)
        validation.check_user_id(user_id)
        async with self._db.read() as session:
            profile = await session.get(Profile, user_id)
            if profile is None:
                raise records.user_not_found()
            blocks = await records.blocks_between(session, me, user_id)
            if any(block.blocker_id == user_id for block in blocks):
                raise records.user_not_found()
            if blocks:
                return ProfileWithRelation(profile, Relation.BLOCKED)
            relationship = await records.get_relationship(session, me, user_id)
        if relationship is None:
            return ProfileWithRelation(profile, Relation.NONE)
        if relationship.state == FRIENDS:
            return ProfileWithRelation(profile, Relation.FRIEND)
        sent = relationship.requester_id == me
        return ProfileWithRelation(
            profile,
            Relation.REQUEST_SENT if sent else Relation.REQUEST_RECEIVED,
            relationship.request_id,
        )

    async def batch_get(self, user_ids: Sequence[str]) -> list[Profile]:
        """Profiles in the order asked for; unknown ids left out."""
        ids = validation.check_user_ids(user_ids)
        if not ids:
            return []
        async with self._db.read() as session:
            rows = (await session.exec(select(Profile).where(col(Profile.user_id).in_(ids)))).all()
        by_id = {row.user_id: row for row in rows}
        return [by_id[user_id] for user_id in ids if user_id in by_id]

    async def update_own(
        self, claims: AccessClaims, *, user_id: str, changes: Mapping[str, str]
    ) -> Profile:
        """Apply `changes` (field → new value) to the caller's profile.

        `user_id` is the profile the client meant to change: empty or the caller's.
        """
        if user_id and user_id != claims.user_id:
            raise PermissionDenied(
                "you can only change your own profile",
                code="not_own_profile",
                details={"field": "user_id"},
            )
        if not changes:
            raise InvalidArgument(
                "name at least one field to change in update_mask",
                code="invalid_update_mask",
                details={"field": "update_mask"},
            )
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise InvalidArgument(
                f"these fields cannot be changed: {', '.join(unknown)}",
                code="invalid_update_mask",
                details={"field": "update_mask", "fields": unknown},
            )
        normalized = {field: EDITABLE[field](value) for field, value in changes.items()}
        await self.ensure_own(claims)
        async with self._db.transaction() as session:
            profile = await session.get(Profile, claims.user_id, with_for_update=True)
            assert profile is not None  # ensure_own created it; profiles are never deleted
            for field, value in normalized.items():
                setattr(profile, field, value)
            if "display_name" in normalized:
                profile.search_name = fold(profile.display_name)
            profile.update_time = utcnow()
            session.add(profile)
        return profile

    async def search(
        self, claims: AccessClaims, *, query: str, page_size: int, page_token: str
    ) -> tuple[list[Profile], str]:
        """Prefix matches on username, display name or a word of it; by username."""
        folded = normalize_query(query)
        size = SEARCH_PAGE.resolve(page_size)
        after = decode_token(page_token, "search", size=1, scope=folded)
        whole, word = prefix_patterns(folded)
        statement = (
            select(Profile)
            .where(
                or_(
                    col(Profile.search_username).like(whole, escape=LIKE_ESCAPE),
                    col(Profile.search_name).like(whole, escape=LIKE_ESCAPE),
                    col(Profile.search_name).like(word, escape=LIKE_ESCAPE),
                ),
                records.not_blocked_with(claims.user_id, col(Profile.user_id)),
            )
            .order_by(col(Profile.username))
            .limit(size + 1)
        )
        if after is not None:
            statement = statement.where(col(Profile.username) > after[0])
        async with self._db.read() as session:
            rows = list((await session.exec(statement)).all())
        if len(rows) <= size:
            return rows, ""
        page = rows[:size]
        return page, encode_token("search", [page[-1].username], scope=folded)

    async def record_last_seen(self, seen: Mapping[str, datetime]) -> None:
        """Persist when users were last connected (users without a profile are skipped)."""
        if not seen:
            return
        async with self._db.transaction() as session:
            rows = (
                await session.exec(select(Profile).where(col(Profile.user_id).in_(sorted(seen))))
            ).all()
            for row in rows:
                value = seen[row.user_id]
                if row.last_seen_time is None or as_utc(row.last_seen_time) < value:
                    row.last_seen_time = value
                    session.add(row)

    async def last_seen(self, user_ids: Sequence[str]) -> dict[str, datetime]:
        if not user_ids:
            return {}
        statement = select(Profile.user_id, Profile.last_seen_time).where(
            col(Profile.user_id).in_(list(user_ids)),
            col(Profile.last_seen_time).is_not(None),
        )
        async with self._db.read() as session:
            rows = (await session.exec(statement)).all()
        return {user_id: as_utc(seen) for user_id, seen in rows if seen is not None}


def _registered_display_name(display_name: str, username: str) -> str:
    """Auth validated the name already; fall back to the username if it is unusable here."""
    try:
        return validation.normalize_display_name(display_name)
    except InvalidArgument:
        return username
