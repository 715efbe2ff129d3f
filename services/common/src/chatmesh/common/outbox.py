"""Transactional outbox: an event is written in the same transaction as the state
change, and a relay publishes it to the bus afterwards. A crash between commit
and publish loses nothing; the relay retries until the bus accepts."""

from __future__ import annotations

import asyncio
from datetime import datetime

from google.protobuf.message import Message
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.bus import EventBus
from chatmesh.common.db import Database
from chatmesh.events.v1 import envelope_pb2


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox"

    id: str = Field(primary_key=True, max_length=36)
    stream: str = Field(max_length=100)
    payload: bytes
    create_time: datetime
    publish_time: datetime | None = Field(default=None, index=True)


def add_event(session: AsyncSession, source: str, payload: Message) -> envelope_pb2.Event:
    """Stage `payload` for stream `events.<source>` in the caller's transaction."""
    raise NotImplementedError


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        poll_interval: float = 0.5,
        batch_size: int = 100,
    ) -> None:
        raise NotImplementedError

    async def publish_pending(self) -> int:
        """Publish unpublished events in order; returns how many were published."""
        raise NotImplementedError

    def wake(self) -> None:
        """Nudge the relay right after a commit so events go out without poll delay."""
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; bus errors are logged and retried with backoff."""
        raise NotImplementedError
