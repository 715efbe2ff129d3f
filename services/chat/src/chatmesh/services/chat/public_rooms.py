"""The public room directory (`ListPublicRooms`): public group rooms by name,
with an optional name prefix, in keyset pages.

Ordered by the lower-cased name, then the id, so pages are stable while rooms
are created or gain members (a member count is not a usable page key). The
prefix match uses the database's `lower()` (Unicode on PostgreSQL, ASCII on
SQLite) on both sides, the same expression the order uses.
"""

from __future__ import annotations

from sqlalchemy import and_, func, literal, or_
from sqlmodel import col, select

from chatmesh.chat.v1 import chat_service_pb2 as api
from chatmesh.common.db import Database
from chatmesh.common.errors import InvalidArgument
from chatmesh.services.chat import models, paging, views

MAX_QUERY_LENGTH = 80  # the longest room name
PAGE_KIND = "public_rooms"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class PublicRoomDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(
        self, user_id: str, *, query: str, page_size: int, page_token: str
    ) -> tuple[list[api.PublicRoom], str]:
        """One page of public rooms (whose name starts with `query`) and the next token."""
        prefix = query.strip()
        if len(prefix) > MAX_QUERY_LENGTH:
            raise InvalidArgument(
                f"query is at most {MAX_QUERY_LENGTH} characters",
                code="invalid_query",
                details={"field": "query"},
            )
        size = paging.page_size(page_size, default=20, maximum=100)
        room, member = models.Room, models.Member
        sort_name = func.lower(col(room.name))
        statement = (
            # The sort key as the database computes it (its lower(), not Python's).
            select(room, member.user_id, sort_name)
            .outerjoin(
                member,
                and_(col(member.room_id) == col(room.id), col(member.user_id) == user_id),
            )
            .where(col(room.type) == models.ROOM_GROUP, col(room.visibility) == models.PUBLIC)
            .order_by(sort_name, col(room.id))
            .limit(size + 1)
        )
        if prefix:
            # lower() by the database on both sides; LIKE wildcards in the prefix are literal.
            pattern = func.lower(literal(_escape_like(prefix))).concat("%")
            statement = statement.where(sort_name.like(pattern, escape="\\"))
        if page_token:
            token = paging.decode_token(page_token, PAGE_KIND)
            # A token is only valid for the query it was made for.
            if paging.field(token, "q", str) != prefix:
                raise paging.invalid_token()
            after_name = paging.field(token, "n", str)
            after_id = paging.field(token, "i", str)
            statement = statement.where(
                or_(sort_name > after_name, and_(sort_name == after_name, col(room.id) > after_id))
            )
        async with self._db.transaction() as session:
            rows = list((await session.exec(statement)).all())
        more = len(rows) > size
        rows = rows[:size]
        entries = [
            api.PublicRoom(room=views.room(r), is_member=member_id is not None)
            for r, member_id, _ in rows
        ]
        next_token = ""
        if more:
            last, _, last_key = rows[-1]
            next_token = paging.encode_token(PAGE_KIND, q=prefix, n=last_key, i=last.id)
        return entries, next_token
