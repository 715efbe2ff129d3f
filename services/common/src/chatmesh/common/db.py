"""The async database layer: SQLModel over asyncpg (PostgreSQL, one schema per
service via `search_path`) or aiosqlite (embedded; WAL, foreign keys on)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool
from sqlmodel.ext.asyncio.session import AsyncSession

# Keys under which `upgrade` hands the URL and schema to `migrations.run_env`.
URL_ATTRIBUTE = "chatmesh.url"
SCHEMA_ATTRIBUTE = "chatmesh.schema"

# A pooled Postgres connection idle longer than this is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
# A writer waits this long for SQLite's lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Alembic keeps its `context`/`op` proxies in module globals: one upgrade per process at a time.
_UPGRADE_LOCK = threading.Lock()


def _check_schema(schema: str) -> str:
    # The name is interpolated into DDL (CREATE SCHEMA), so only plain identifiers pass.
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}: use lowercase letters, digits, _")
    return schema


# Plain URLs (as hosting providers hand them out) get the async driver we ship.
_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def async_url(url: str | URL) -> URL:
    """`url` with an asyncio driver: postgres(ql):// → asyncpg, sqlite:// → aiosqlite."""
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def is_sqlite_url(url: str | URL) -> bool:
    return async_url(url).get_backend_name() == "sqlite"


# Execution option naming how a SQLite transaction begins (IMMEDIATE or DEFERRED).
_SQLITE_BEGIN = "chatmesh_sqlite_begin"


def make_engine(
    url: str | URL, *, schema: str, echo: bool = False, foreign_keys: bool = True
) -> AsyncEngine:
    """The engine `Database` and the migrations use.

    PostgreSQL: `search_path` is the service's schema, so unqualified table names
    resolve to the service's own tables. SQLite: the file's directory is created;
    WAL, foreign keys and a busy timeout are set on every connection, and every
    transaction starts with BEGIN IMMEDIATE so concurrent writers queue up instead
    of failing half-way (SQLite has no SELECT … FOR UPDATE). Migrations pass
    `foreign_keys=False` because batch ALTERs recreate tables.
    """
    parsed = async_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_async_engine(
            parsed,
            echo=echo,
            pool_size=10,
            max_overflow=10,
            connect_args={"server_settings": {"search_path": _check_schema(schema)}},
        )
        _ping_after_idle(engine)
        return engine
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        parsed, echo=echo, **({"poolclass": StaticPool} if in_memory else {})
    )
    _configure_sqlite(engine, foreign_keys=foreign_keys)
    return engine


def _ping_after_idle(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle.

    `pool_pre_ping` pings on every checkout, and asyncpg's ping is three round
    trips (BEGIN, a query, ROLLBACK): more than the query it guards on a hot path
    like GET /me. A connection that was in use a moment ago is alive; one idle
    for `PING_AFTER_IDLE_SECONDS` may have been cut (a Postgres restart, a
    proxy's idle timeout), so it is pinged and, if dead, replaced before use.
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dbapi_connection.ping(False)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise DisconnectionError("idle connection is gone") from error


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take BEGIN out of the driver's hands (see `_on_begin`).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL: other readers (sqlite3 CLI, backups) never block the writer, and
            # synchronous=NORMAL is crash-safe with it and makes commits cheap.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY without waiting for the busy timeout.
        # Read-only transactions (Database.read) stay deferred so reads run in
        # parallel with each other and with the writer (WAL).
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    def __init__(self, url: str, *, schema: str, echo: bool = False) -> None:
        """`schema` is the service's Postgres schema; ignored on SQLite."""
        self._schema = _check_schema(schema)
        self._is_sqlite = is_sqlite_url(url)
        self._engine = make_engine(url, schema=schema, echo=echo)
        self._sessions = async_sessionmaker(
            self._engine, class_=AsyncSession, expire_on_commit=False
        )
        # Reads on Postgres run in autocommit: under READ COMMITTED every statement
        # takes its own snapshot anyway, so BEGIN/ROLLBACK would be two round
        # trips that buy nothing. SQLite reads get a deferred transaction (one
        # snapshot for the whole block, no write lock).
        read_options = (
            {_SQLITE_BEGIN: "DEFERRED"} if self._is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        )
        self._read_sessions = async_sessionmaker(
            self._engine.execution_options(**read_options),
            class_=AsyncSession,
            expire_on_commit=False,
        )
        # SQLite has one write lock. Tasks of this process that want it at once
        # queue here: SQLite's own busy handler makes losers sleep in growing
        # steps (up to 100 ms), which ruins latency under load, while an asyncio
        # lock hands the database over the moment it is free. Other processes
        # still wait through the busy timeout.
        self._sqlite_writer: asyncio.Lock | None = asyncio.Lock() if self._is_sqlite else None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self._is_sqlite

    @property
    def schema(self) -> str:
        return self._schema

    @asynccontextmanager
    async def _write_turn(self) -> AsyncIterator[None]:
        if self._sqlite_writer is None:
            yield
            return
        async with self._sqlite_writer:
            yield

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: commits when the block ends, rolls back on error.
        Do not open one inside another (on SQLite the second waits for the first)."""
        async with self._write_turn(), self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection in a write transaction (no ORM session), for bulk work."""
        async with self._write_turn(), self._engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only: on SQLite it does not take the write lock, so
        concurrent reads do not queue behind each other. Never write in it."""
        async with self._read_sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Raise if the database cannot answer `SELECT 1`."""
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()


def upgrade(url: str, *, schema: str, migrations: Path) -> None:
    """Run the service's Alembic migrations in `migrations` up to head (blocking;
    call with `asyncio.to_thread`). Creates the schema on PostgreSQL first.

    Idempotent, and safe to run from several processes at once: on PostgreSQL the
    migration runs under an advisory lock per schema, on SQLite in one write
    transaction (see `migrations.run_env`).
    """
    # Imported here: Alembic (with Mako and Pygments) is ~10 MB of RSS that a
    # serving process whose schema a migration job maintains never needs.
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    # ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("script_location", str(migrations).replace("%", "%%"))
    config.attributes[URL_ATTRIBUTE] = url
    config.attributes[SCHEMA_ATTRIBUTE] = _check_schema(schema)
    with _UPGRADE_LOCK:
        command.upgrade(config, "head")


def dialect_insert(table: Table, *, is_sqlite: bool) -> postgresql.Insert | sqlite.Insert:
    """INSERT into `table` with the dialect's `ON CONFLICT` clauses (the same API
    on PostgreSQL and SQLite), for idempotent writes such as event projections."""
    return sqlite.insert(table) if is_sqlite else postgresql.insert(table)
