"""Row-level steps the domain operations are made of. Each takes the open
transaction's session; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.db import dialect_insert
from chatmesh.common.errors import NotFound
from chatmesh.services.user.models import Block, Profile, Relationship


def user_not_found() -> NotFound:
    # Also what a user who blocked the caller looks like: a block is never revealed.
    return NotFound("no such user", code="user_not_found", details={"field": "user_id"})


def pair_key(a: str, b: str) -> tuple[str, str]:
    """The canonical (lower, higher) key of a pair of users."""
    return (a, b) if a < b else (b, a)


async def insert_ignoring_conflict(
    session: AsyncSession,
    model: type[SQLModel],
    values: dict[str, Any],
    *,
    conflict: Sequence[str],
    is_sqlite: bool,
) -> bool:
    """INSERT … ON CONFLICT (conflict) DO NOTHING; whether a row was inserted."""
    statement = (
        dialect_insert(model.__table__, is_sqlite=is_sqlite)  # type: ignore[attr-defined]
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(conflict))
    )
    result = await session.exec(statement)
    return bool(result.rowcount)


async def lock_profiles(
    session: AsyncSession, user_ids: Sequence[str], *, is_sqlite: bool
) -> dict[str, Profile]:
    """The profiles of `user_ids`, locked until the transaction ends.

    Every operation on a pair of users (requests, accepts of blocks) locks both
    profiles first, always in id order, so concurrent operations on one pair run
    one after the other and never deadlock. (SQLite: BEGIN IMMEDIATE already
    serialises writers.)
    """
    query = (
        select(Profile)
        .where(col(Profile.user_id).in_(sorted(set(user_ids))))
        .order_by(col(Profile.user_id))
    )
    if not is_sqlite:
        query = query.with_for_update()
    rows = (await session.exec(query)).all()
    return {row.user_id: row for row in rows}


async def get_relationship(session: AsyncSession, a: str, b: str) -> Relationship | None:
    low, high = pair_key(a, b)
    return await session.get(Relationship, (low, high))


async def blocks_between(session: AsyncSession, a: str, b: str) -> list[Block]:
    query = select(Block).where(
        or_(
            and_(col(Block.blocker_id) == a, col(Block.blocked_id) == b),
            and_(col(Block.blocker_id) == b, col(Block.blocked_id) == a),
        )
    )
    return list((await session.exec(query)).all())


def involves(user_id: str) -> ColumnElement[bool]:
    """Relationship rows that have `user_id` on either side."""
    return or_(col(Relationship.user_low_id) == user_id, col(Relationship.user_high_id) == user_id)


def not_blocked_with(user_id: str, other: Any) -> ColumnElement[bool]:
    """Neither `user_id` blocked the user in column `other`, nor the other way round."""
    blocked_by_me = (
        select(Block.blocker_id)
        .where(col(Block.blocker_id) == user_id, col(Block.blocked_id) == other)
        .exists()
    )
    blocked_me = (
        select(Block.blocker_id)
        .where(col(Block.blocker_id) == other, col(Block.blocked_id) == user_id)
        .exists()
    )
    return and_(~blocked_by_me, ~blocked_me)
