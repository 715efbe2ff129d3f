"""What a service's Alembic `env.py` calls, so each env.py is two lines:

from chatmesh.common.migrations import run_env
run_env(target_metadata=None)
"""

from __future__ import annotations

import asyncio
import hashlib

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from chatmesh.common.db import SCHEMA_ATTRIBUTE, URL_ATTRIBUTE, make_engine

OUTBOX_TABLE = "outbox"


def run_env(target_metadata: MetaData | None = None) -> None:
    """Run migrations online with the URL/schema that `db.upgrade` put into the config.

    Run by hand (`alembic upgrade head` with an alembic.ini), the URL comes from
    `sqlalchemy.url` and the schema from the `chatmesh.schema` main option.
    """
    config = context.config
    url = config.attributes.get(URL_ATTRIBUTE) or config.get_main_option("sqlalchemy.url")
    schema = config.attributes.get(SCHEMA_ATTRIBUTE) or config.get_main_option(SCHEMA_ATTRIBUTE)
    if not url or not schema:
        raise RuntimeError("migrations need a database URL and a schema (use db.upgrade)")
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported")
    asyncio.run(_run_online(url, schema, target_metadata))


async def _run_online(url: str, schema: str, target_metadata: MetaData | None) -> None:
    # Foreign keys off: SQLite batch migrations drop and recreate tables, which
    # would otherwise cascade or fail; `_check_foreign_keys` verifies at the end.
    engine = make_engine(url, schema=schema, foreign_keys=False)
    try:
        async with engine.connect() as connection:
            # One transaction for the lock, the schema, every revision and the
            # version row: a concurrent upgrade waits, then finds nothing to do.
            await connection.begin()
            if connection.dialect.name == "postgresql":
                await _lock_schema(connection, schema)
            await connection.run_sync(_run_migrations, schema, target_metadata)
            if connection.dialect.name == "sqlite":
                await _check_foreign_keys(connection)
            await connection.commit()
    finally:
        await engine.dispose()


def advisory_lock_key(schema: str) -> int:
    """A stable signed 64-bit key per schema, so services migrate in parallel."""
    digest = hashlib.sha256(f"chatmesh.migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _lock_schema(connection: AsyncConnection, schema: str) -> None:
    # Transaction-scoped: released by the commit (or by the server if we die).
    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key(schema)}
    )
    await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def _run_migrations(connection: Connection, schema: str, target_metadata: MetaData | None) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # alembic_version lives with the service's tables, not in `public`.
        version_table_schema=None if sqlite else schema,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _check_foreign_keys(connection: AsyncConnection) -> None:
    violations = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
    if violations:
        raise RuntimeError(f"migration left foreign key violations: {violations[:5]}")


def create_outbox_table() -> None:
    """`op.create_table` for the outbox; call from a service's first migration."""
    op.create_table(
        OUTBOX_TABLE,
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        # Aware timestamps, as SQLModel maps `datetime` fields (TIMESTAMPTZ on PostgreSQL).
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("publish_time", sa.DateTime(timezone=True), nullable=True),
    )
    # Same name SQLModel gives `Field(index=True)`, so autogenerate sees no drift.
    op.create_index("ix_outbox_publish_time", OUTBOX_TABLE, ["publish_time"])


def drop_outbox_table() -> None:
    op.drop_index("ix_outbox_publish_time", table_name=OUTBOX_TABLE)
    op.drop_table(OUTBOX_TABLE)
