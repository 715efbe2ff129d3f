"""The chat service's handle on its database.

On SQLite every transaction takes the single write lock (BEGIN IMMEDIATE); when
several tasks of this process want it at once, SQLite's busy handler makes the
losers sleep in growing steps (up to 100 ms each), which ruins latency under
load. Queueing them on an asyncio lock first hands the database over the moment
it is free. PostgreSQL transactions are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from chatmesh.common.db import Database


class ChatDatabase(Database):
    def __init__(self, url: str, *, schema: str, echo: bool = False) -> None:
        super().__init__(url, schema=schema, echo=echo)
        self._turn = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        if not self.is_sqlite:
            async with super().transaction() as session:
                yield session
            return
        async with self._turn, super().transaction() as session:
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection in a transaction (no ORM session), for bulk work."""
        if not self.is_sqlite:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._turn, self.engine.begin() as connection:
            yield connection
