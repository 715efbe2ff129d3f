"""The chat service's copy of the user directory (id, username, display name),
kept from auth's `UserRegistered` events. It resolves @mentions and checks that
the users a DM or a room add names exist; no other service's tables are read.

Handling is idempotent (an upsert keyed by the user id), so redelivered events
and replays from the start of the stream are harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from sqlmodel import col, select

from chatmesh.common.bus import EventBus, stream_name, unpack
from chatmesh.common.clock import as_utc
from chatmesh.common.db import Database, dialect_insert
from chatmesh.common.logging import get_logger
from chatmesh.events.v1 import auth_events_pb2, envelope_pb2
from chatmesh.services.chat import models

log = get_logger("chatmesh.chat.directory")

CONSUMER_GROUP = "chat"


class UserDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def handle(self, event: envelope_pb2.Event) -> None:
        """A bus handler for `events.auth`; ignores the event types it does not need."""
        registered = unpack(event, auth_events_pb2.UserRegistered)
        if registered is None or not registered.user_id:
            return
        values = {
            "id": registered.user_id,
            "username": registered.username,
            "display_name": registered.display_name,
            "register_time": as_utc(registered.register_time.ToDatetime()),
        }
        table = models.User.__table__  # type: ignore[attr-defined]
        statement = dialect_insert(table, is_sqlite=self._db.is_sqlite).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"username": values["username"], "display_name": values["display_name"]},
        )
        async with self._db.transaction() as session:
            await session.exec(statement)
        log.debug("user_registered", user_id=registered.user_id)

    async def consume(self, bus: EventBus, consumer: str, stop: asyncio.Event) -> None:
        await bus.consume(stream_name("auth"), CONSUMER_GROUP, consumer, self.handle, stop=stop)

    async def known(self, user_ids: Iterable[str]) -> set[str]:
        """Which of `user_ids` exist."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return set()
        async with self._db.transaction() as session:
            rows = await session.exec(select(models.User.id).where(col(models.User.id).in_(wanted)))
            return set(rows.all())
