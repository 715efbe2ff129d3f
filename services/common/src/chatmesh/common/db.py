"""The async database layer: SQLModel over asyncpg (PostgreSQL, one schema per
service via `search_path`) or aiosqlite (embedded; WAL, foreign keys on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession


class Database:
    def __init__(self, url: str, *, schema: str, echo: bool = False) -> None:
        """`schema` is the service's Postgres schema; ignored on SQLite."""
        raise NotImplementedError

    @property
    def engine(self) -> AsyncEngine:
        raise NotImplementedError

    @property
    def is_sqlite(self) -> bool:
        raise NotImplementedError

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: commits when the block ends, rolls back on error."""
        raise NotImplementedError
        yield  # pragma: no cover

    async def ping(self) -> None:
        """Raise if the database cannot answer `SELECT 1`."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def upgrade(url: str, *, schema: str, migrations: Path) -> None:
    """Run the service's Alembic migrations in `migrations` up to head (blocking;
    call with `asyncio.to_thread`). Creates the schema on PostgreSQL first."""
    raise NotImplementedError
