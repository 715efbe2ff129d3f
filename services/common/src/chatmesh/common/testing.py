"""pytest plugin with fixtures for real infrastructure.

- `postgres_url`: a fresh database on CHATMESH_TEST_POSTGRES_URL's server
  (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), dropped after.
- `redis_url`: CHATMESH_TEST_REDIS_URL (default redis://127.0.0.1:6379/15), flushed first.
- `db_url`: each test runs twice, on a SQLite file and on a fresh PostgreSQL database.
- `free_port()`: a free TCP port on 127.0.0.1.

When the server is missing the test is skipped locally but FAILS when CI is set.
The fixtures are synchronous (their async work runs on a private thread), so they
work in sync and async tests alike and never touch the tests' event loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
import redis
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _missing(what: str, error: BaseException) -> NoReturn:
    # CI must never turn a broken service container into a green (skipped) run.
    message = f"{what} is not reachable: {type(error).__name__}: {error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers their fixtures need, so `-m "not postgres"` works."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "postgres_url" in names:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in names:
            item.add_marker(pytest.mark.redis)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh loop in a worker thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _server_url() -> URL:
    return make_url(os.environ.get("CHATMESH_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)).set(
        drivername="postgresql+asyncpg"
    )


async def _admin(server: URL, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_async_engine(
        server, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 5}
    )
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _fresh_postgres_database() -> Iterator[str]:
    server = _server_url()
    name = f"cm_test_{uuid.uuid4().hex[:16]}"
    try:
        _run(_admin(server, f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError) as error:
        _missing(f"PostgreSQL at {server.render_as_string(hide_password=True)}", error)
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        _run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy (asyncpg) URL of a new, empty database, dropped after the test."""
    yield from _fresh_postgres_database()


@pytest.fixture
def redis_url() -> str:
    """The URL of an empty Redis database (FLUSHDB before the test)."""
    url = os.environ.get("CHATMESH_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.flushdb()
    except redis.RedisError as error:
        _missing(f"Redis at {url}", error)
    finally:
        client.close()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL, once per backend: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        yield from _fresh_postgres_database()
