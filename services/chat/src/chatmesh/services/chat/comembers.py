"""Who shares a room with a user: the other members of the user's small rooms,
per room, for presence (the BFF streams the presence of friends and room
co-members). Large rooms are left out on purpose: watching every member of a
10,000-member public room would make presence cost grow with room size for
every connection."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from chatmesh.common.db import Database
from chatmesh.common.errors import InvalidArgument
from chatmesh.services.chat import models

DEFAULT_MAX_ROOM_SIZE = 50
MAX_ROOM_SIZE = 100
# Ids returned at most (summed over rooms): bounds one answer and the BFF's
# watch set per connection.
MAX_IDS = 5000
MAX_ROOM_IDS = 100
# Rooms looked at, most recently active first.
MAX_ROOMS = 1000


def _max_room_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument(
            "max_room_size cannot be negative",
            code="invalid_max_room_size",
            details={"field": "max_room_size"},
        )
    return DEFAULT_MAX_ROOM_SIZE if requested == 0 else min(requested, MAX_ROOM_SIZE)


async def list_co_members(
    db: Database, user_id: str, *, room_ids: Sequence[str], max_room_size: int
) -> tuple[list[tuple[str, list[str]]], bool]:
    """[(room id, other member ids)] of `user_id`'s rooms with at most
    `max_room_size` members, most recently active first, and whether rooms
    were left out because the id budget ran out. Two queries in all."""
    size = _max_room_size(max_room_size)
    wanted = list(dict.fromkeys(room_ids))
    if len(wanted) > MAX_ROOM_IDS:
        raise InvalidArgument(
            f"at most {MAX_ROOM_IDS} room ids",
            code="too_many_room_ids",
            details={"field": "room_ids"},
        )
    room, member = models.Room, models.Member
    rooms_query = (
        select(room.id, room.member_count)
        .join(member, col(member.room_id) == col(room.id))
        .where(col(member.user_id) == user_id, col(room.member_count) <= size)
        .order_by(col(room.activity_time).desc(), col(room.id).desc())
        .limit(MAX_ROOMS)
    )
    if wanted:
        rooms_query = rooms_query.where(col(room.id).in_(wanted))
    async with db.read() as session:
        chosen: list[str] = []
        budget = MAX_IDS
        truncated = False
        for room_id, count in (await session.exec(rooms_query)).all():
            if count - 1 > budget:
                truncated = True
                break
            budget -= count - 1
            chosen.append(room_id)
        if not chosen:
            return [], truncated
        rows = (
            await session.exec(
                select(member.room_id, member.user_id).where(
                    col(member.room_id).in_(chosen), col(member.user_id) != user_id
                )
            )
        ).all()
    by_room: dict[str, list[str]] = {room_id: [] for room_id in chosen}
    for room_id, other in rows:
        by_room[room_id].append(other)
    return [(room_id, sorted(ids)) for room_id, ids in by_room.items()], truncated
