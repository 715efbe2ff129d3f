"""The database layer on real SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from chatmesh.common.db import Database, upgrade
from chatmesh.common.testing import free_port

MIGRATIONS = Path(__file__).parent / "migrations_fixture"
SCHEMA = "svc"


class Item(SQLModel, table=True):
    __tablename__ = "item"

    id: int | None = Field(default=None, primary_key=True)
    name: str


class ItemTag(SQLModel, table=True):
    __tablename__ = "item_tag"

    id: int | None = Field(default=None, primary_key=True)
    item_id: int = Field(foreign_key="item.id")
    tag: str


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    await asyncio.to_thread(upgrade, db_url, schema=SCHEMA, migrations=MIGRATIONS)
    database = Database(db_url, schema=SCHEMA)
    yield database
    await database.close()


async def item_names(db: Database) -> list[str]:
    async with db.transaction() as session:
        return sorted((await session.exec(select(Item.name))).all())


async def test_committed_transaction_is_visible_afterwards(db: Database) -> None:
    async with db.transaction() as session:
        item = Item(name="a")
        session.add(item)
    # expire_on_commit=False: the object stays usable after the block.
    assert item.id is not None
    assert await item_names(db) == ["a"]


async def test_exception_rolls_back_everything(db: Database) -> None:
    async def write_then_fail() -> None:
        async with db.transaction() as session:
            item = Item(name="a")
            session.add(item)
            await session.flush()
            assert item.id is not None
            session.add(ItemTag(item_id=item.id, tag="t"))
            await session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await write_then_fail()
    assert await item_names(db) == []
    async with db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(ItemTag))).one() == 0


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            session.add(ItemTag(item_id=999, tag="orphan"))
    async with db.transaction() as session:
        assert (await session.exec(select(func.count()).select_from(ItemTag))).one() == 0


async def test_ping(db: Database) -> None:
    await db.ping()
    unreachable = Database(
        f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none", schema=SCHEMA
    )
    with pytest.raises(ConnectionRefusedError):
        await unreachable.ping()
    await unreachable.close()


def test_schema_names_that_are_not_plain_identifiers_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid schema"):
        Database("postgresql+asyncpg://postgres@127.0.0.1/x", schema='a"; DROP TABLE x; --')


async def tables_in(db: Database, schema: str) -> set[str]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": schema},
        )
        return {row[0] for row in rows}


async def alembic_versions(db: Database) -> list[str]:
    async with db.engine.connect() as connection:
        return [row[0] for row in await connection.execute(text("SELECT * FROM alembic_version"))]


async def test_postgres_upgrade_keeps_each_service_in_its_own_schema(postgres_url: str) -> None:
    for schema in ("svc", "other"):
        await asyncio.to_thread(upgrade, postgres_url, schema=schema, migrations=MIGRATIONS)
    svc, other = Database(postgres_url, schema="svc"), Database(postgres_url, schema="other")
    try:
        expected = {"alembic_version", "item", "item_tag", "outbox"}
        assert await tables_in(svc, "svc") == expected
        assert await tables_in(svc, "other") == expected
        assert await tables_in(svc, "public") == set()

        async with svc.transaction() as session:
            session.add(Item(name="only-in-svc"))
        assert await item_names(svc) == ["only-in-svc"]
        assert await item_names(other) == []

        # A second run finds everything at head and changes nothing.
        await asyncio.to_thread(upgrade, postgres_url, schema="svc", migrations=MIGRATIONS)
        assert await alembic_versions(svc) == ["v1"]
        assert await item_names(svc) == ["only-in-svc"]
    finally:
        await svc.close()
        await other.close()


async def test_sqlite_upgrade_creates_the_directory_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'svc.db'}"
    await asyncio.to_thread(upgrade, url, schema=SCHEMA, migrations=MIGRATIONS)
    db = Database(url, schema=SCHEMA)
    try:
        async with db.transaction() as session:
            session.add(Item(name="kept"))
        await asyncio.to_thread(upgrade, url, schema=SCHEMA, migrations=MIGRATIONS)
        assert await alembic_versions(db) == ["v1"]
        assert await item_names(db) == ["kept"]
        async with db.engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
        assert mode == "wal"
    finally:
        await db.close()


async def test_concurrent_upgrades_from_two_processes_are_serialized(postgres_url: str) -> None:
    # The migration pauses inside its transaction; without a lock the second
    # process would try to create the same tables and fail.
    script = (
        "import sys; from pathlib import Path; from chatmesh.common.db import upgrade; "
        "upgrade(sys.argv[1], schema='svc', migrations=Path(sys.argv[2]))"
    )
    env = {**os.environ, "CM_TEST_MIGRATION_PAUSE": "1"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            postgres_url,
            str(MIGRATIONS),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [await process.communicate() for process in processes]
    errors = [stderr.decode() for _, stderr in results]
    assert [process.returncode for process in processes] == [0, 0], errors
    db = Database(postgres_url, schema="svc")
    try:
        assert await alembic_versions(db) == ["v1"]
    finally:
        await db.close()


async def test_sqlite_concurrent_read_then_write_transactions_do_not_fail(tmp_path: Path) -> None:
    # Two engines (as two processes would have) doing read-modify-write at once:
    # every transaction must wait its turn, none may fail with "database is locked"
    # or act on a stale read.
    url = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    await asyncio.to_thread(upgrade, url, schema=SCHEMA, migrations=MIGRATIONS)
    engines = [Database(url, schema=SCHEMA), Database(url, schema=SCHEMA)]

    async def add_next(db: Database) -> None:
        async with db.transaction() as session:
            count = (await session.exec(select(func.count()).select_from(Item))).one()
            await asyncio.sleep(0.005)
            session.add(Item(name=f"item-{count}"))

    try:
        await asyncio.gather(*(add_next(engines[i % 2]) for i in range(30)))
        assert await item_names(engines[0]) == sorted(f"item-{i}" for i in range(30))
    finally:
        for db in engines:
            await db.close()


async def test_plain_urls_get_the_async_driver(db_url: str) -> None:
    # postgresql:// and sqlite:// as a hosting provider would hand them out.
    plain = db_url.replace("+asyncpg", "").replace("+aiosqlite", "")
    await asyncio.to_thread(upgrade, plain, schema=SCHEMA, migrations=MIGRATIONS)
    db = Database(plain, schema=SCHEMA)
    try:
        async with db.transaction() as session:
            session.add(Item(name="a"))
        assert await item_names(db) == ["a"]
    finally:
        await db.close()


async def test_reads_do_not_wait_for_a_writer_holding_the_lock(db: Database) -> None:
    # A long write transaction (e.g. a slow migration step or bulk import) must
    # not stall every request that only reads; reads see the last committed state.
    async with db.transaction() as session:
        session.add(Item(name="committed"))
    writer_holds_lock = asyncio.Event()
    release = asyncio.Event()

    async def slow_writer() -> None:
        async with db.transaction() as session:
            session.add(Item(name="pending"))
            await session.flush()
            writer_holds_lock.set()
            await release.wait()

    writer = asyncio.create_task(slow_writer())
    await writer_holds_lock.wait()
    try:
        async with asyncio.timeout(2), db.read() as session:
            names = sorted((await session.exec(select(Item.name))).all())
        assert names == ["committed"]
    finally:
        release.set()
        await writer
    assert await item_names(db) == ["committed", "pending"]


async def test_sqlite_writes_in_one_process_take_turns(tmp_path: Path) -> None:
    # Many tasks of one service doing read-modify-write at once (ORM sessions and
    # plain connections mixed) queue for SQLite's single write lock: each sees the
    # previous commit and none fails with "database is locked".
    url = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    await asyncio.to_thread(upgrade, url, schema=SCHEMA, migrations=MIGRATIONS)
    db = Database(url, schema=SCHEMA)

    async def add_next(i: int) -> None:
        if i % 2:
            async with db.transaction() as session:
                count = (await session.exec(select(func.count()).select_from(Item))).one()
                await asyncio.sleep(0.002)
                session.add(Item(name=f"item-{count}"))
        else:
            async with db.connection() as connection:
                count = (await connection.execute(text("SELECT COUNT(*) FROM item"))).scalar_one()
                await asyncio.sleep(0.002)
                await connection.execute(
                    text("INSERT INTO item (name) VALUES (:name)"), {"name": f"item-{count}"}
                )

    try:
        await asyncio.gather(*(add_next(i) for i in range(20)))
        assert await item_names(db) == sorted(f"item-{i}" for i in range(20))
    finally:
        await db.close()


async def backend_pid(db: Database) -> int:
    async with db.read() as session:
        connection = await session.connection()
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid


async def test_a_postgres_connection_cut_while_idle_is_replaced_before_use(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url, schema=SCHEMA)
    admin = Database(postgres_url, schema=SCHEMA)
    try:
        first = await backend_pid(db)
        # What a Postgres restart or a proxy's idle timeout does to a pooled connection.
        async with admin.transaction() as session:
            connection = await session.connection()
            await connection.execute(text(f"SELECT pg_terminate_backend({first})"))
        # The pooled connection counts as idle now (the threshold is seconds in production).
        monkeypatch.setattr("chatmesh.common.db.PING_AFTER_IDLE_SECONDS", 0.0)
        second = await backend_pid(db)
        assert second != first
    finally:
        await db.close()
        await admin.close()
